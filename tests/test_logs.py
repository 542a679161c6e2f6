"""The audit log (crmlift.log.jsonl) holds crmlift's own events: the embedded
PostgreSQL's chatter (pgserver's INFO lines, initdb's and pg_ctl's output) goes to
postgres.log in the state directory instead."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from journal.embedded import EmbeddedPostgres
from service.logs import OWN_LOGGERS, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging rewires the root logger: give pytest its handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
async def test_a_fresh_embedded_journal_keeps_initdb_out_of_the_audit_log(tmp_path: Path) -> None:
    audit = tmp_path / "reports" / "crmlift.log.jsonl"
    configure_logging(audit)
    state = tmp_path / "state"
    server = EmbeddedPostgres(state / "postgres")
    await server.start()  # a fresh data dir: initdb runs
    try:
        structlog.get_logger("service.extract").info("extract.start", run_id="r1")
        logging.getLogger("some.library").info("library chatter")
        logging.getLogger("some.library").warning("library trouble")
    finally:
        await server.stop()
    for handler in logging.getLogger().handlers:
        handler.flush()

    events = [orjson.loads(line) for line in audit.read_text().splitlines()]
    loggers = {e["logger"] for e in events}
    assert {e["event"] for e in events} >= {"extract.start", "library trouble"}
    assert all(name.split(".")[0] in OWN_LOGGERS for name in loggers - {"some.library"})
    assert "library chatter" not in audit.read_text()
    assert "initdb" not in audit.read_text()
    assert "pgserver" not in audit.read_text()
    # The server's lines are kept, where an operator debugging the journal looks.
    postgres_log = state / "postgres.log"
    assert server.log_file == postgres_log
    assert "initdb" in postgres_log.read_text()
