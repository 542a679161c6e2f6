"""Structured logs: JSON lines to a file for machines, short lines on stderr for people.

Secrets never reach either: values under secret-looking keys are masked and any
known secret value inside a string is replaced.

The JSON file is the run's audit log: crmlift's own events only. Libraries'
INFO chatter stays out of it (their warnings and errors get in); the embedded
PostgreSQL's lines go to their own ``postgres.log`` (``journal.embedded``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from adapters.secrets import redact

_SECRET_KEYS = ("secret", "token", "password", "authorization", "dsn", "api_key")


def _redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = redact(value)
    return event


def _redact_rendered(_: Any, __: str, line: Any) -> Any:
    """Last pass over the rendered line: tracebacks are rendered after the event."""
    return redact(line) if isinstance(line, str) else line


OWN_LOGGERS = ("service", "adapters", "journal", "ratelimit", "bench", "__main__")
"""Top-level logger names of crmlift's own code: their events are the audit log."""
FOREIGN_QUIET = ("pgserver",)
"""Libraries whose lines never belong in the audit log, whatever their level."""


def is_own_event(record: logging.LogRecord) -> bool:
    """Whether a log record belongs in the audit log."""
    top = record.name.split(".", 1)[0]
    if top in OWN_LOGGERS:
        return True
    return top not in FOREIGN_QUIET and record.levelno >= logging.WARNING


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _redact_secrets,
]


def configure_logging(log_file: Path | None, *, console_level: int = logging.WARNING) -> None:
    """Send every event to ``log_file`` as JSON and the important ones to stderr."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(
                    colors=sys.stderr.isatty(),
                    exception_formatter=structlog.dev.plain_traceback,
                ),
                _redact_rendered,
            ],
            foreign_pre_chain=_SHARED,
        )
    )
    root.addHandler(console)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setLevel(logging.INFO)
        to_file.addFilter(is_own_event)
        to_file.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                    _redact_rendered,
                ],
                foreign_pre_chain=_SHARED,
            )
        )
        root.addHandler(to_file)
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
