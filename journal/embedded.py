"""The private PostgreSQL a journal uses when no DSN is given.

pgserver ships the PostgreSQL binaries in a wheel, so a fresh machine needs
nothing but pip. The data directory is kept and reused across runs; the server
stops when the last crmlift process using it exits.

pgserver logs every command it runs, initdb's and pg_ctl's output included, at
INFO on the ``pgserver`` logger. That is the server's business, not the run's:
it goes to ``postgres.log`` beside the data directory, never to crmlift's audit log.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import psutil

from adapters.errors import ConfigError, JournalUnavailable
from journal.blobs import PRIVATE_FILE_MODE, private_dir


def _load_pgserver() -> Any:
    # pgserver computes a runtime dir at import; without XDG_RUNTIME_DIR
    # platformdirs warns about the fallback, which is harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


PGSERVER_LOGGER = "pgserver"


class _PostgresLog(logging.FileHandler):
    """The file pgserver's own log lines (and initdb's output) are kept in."""


def route_pgserver_log(path: Path) -> None:
    """Send the ``pgserver`` logger to ``path`` only, not up to the root's handlers.

    One file at a time: starting another embedded server moves the lines there.
    """
    logger = logging.getLogger(PGSERVER_LOGGER)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    target = str(path.absolute())
    for handler in list(logger.handlers):
        if isinstance(handler, _PostgresLog):
            if handler.baseFilename == target:
                return
            logger.removeHandler(handler)
            handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    # initdb's output names the data directory and users: owner-only, like the data.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE))
    path.chmod(PRIVATE_FILE_MODE)
    handler = _PostgresLog(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of crmlift processes that died without saying goodbye.

    pgserver stops the server when its last registered user exits; a process
    killed with SIGKILL never unregisters, and would keep the server alive for
    ever. A dead pid is not a user.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        handles.unlink(missing_ok=True)
        return
    live = [pid for pid in pids if psutil.pid_exists(pid)]
    if live != pids:
        handles.write_text(json.dumps(live))


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir``, started on demand."""

    data_dir: Path
    _server: Any = field(default=None, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        """pgserver's log lines and initdb's output: ``postgres.log`` beside the data."""
        return self.data_dir.parent / "postgres.log"

    async def start(self) -> str:
        """Start (or join) the server and return a DSN for it."""
        return await anyio.to_thread.run_sync(self._start_blocking)

    def _start_blocking(self) -> str:
        try:
            route_pgserver_log(self.log_file)
            # The crmlift data dir holds the journal, its log and client documents: owner only.
            # PostgreSQL itself refuses a data directory others can read (initdb makes it 0700).
            private_dir(self.data_dir.parent)
            private_dir(self.data_dir)
            _forget_dead_handles(self.data_dir)
        except OSError as exc:
            # A data dir that is a file, or on a read-only filesystem, is the plan's mistake.
            raise ConfigError(
                f"data dir {self.data_dir.parent} is not a writable directory "
                f"({exc.strerror or exc}); set [journal] data_dir or CRMLIFT_DATA_DIR"
            ) from exc
        pgserver = _load_pgserver()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        except Exception as exc:
            logs = [p for p in (self.data_dir / "log", self.log_file) if p.exists()]
            hint = f"; see {' and '.join(map(str, logs))}" if logs else ""
            raise JournalUnavailable(
                f"could not start the embedded PostgreSQL in {self.data_dir}: {exc}{hint}"
            ) from exc
        return str(self._server.get_uri())

    async def stop(self) -> None:
        """Leave the server; it stops once no other crmlift process uses it."""
        if self._server is not None:
            server, self._server = self._server, None
            await anyio.to_thread.run_sync(server.cleanup)
