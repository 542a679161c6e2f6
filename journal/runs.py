"""Runs: one row per migration attempt, the anchor of everything journaled."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
import psutil

from adapters.errors import ConfigError

RunStatus = Literal["running", "interrupted", "failed", "extracted", "completed"]

START_TIME_TOLERANCE = 1.0
"""Seconds two readings of one process's start time may differ (clock-tick rounding)."""


@dataclass(frozen=True, slots=True)
class RunProcess:
    """The process that last started or resumed a run.

    A run killed with SIGKILL never says goodbye, so its status stays ``running``;
    the pid alone cannot prove it is gone (pids are reused), but the pid with the
    process's start time can.
    """

    pid: int
    host: str
    started_at: datetime
    """When the OS started that process (not when the run started)."""

    @classmethod
    def current(cls) -> RunProcess:
        me = psutil.Process()
        return cls(me.pid, socket.gethostname(), datetime.fromtimestamp(me.create_time(), UTC))

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it ran on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            created = process.create_time()
            if process.status() == psutil.STATUS_ZOMBIE:
                return False  # dead, only not yet reaped by its parent
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # it exists and we may not inspect it: never call a live run gone
        return abs(created - self.started_at.timestamp()) <= START_TIME_TOLERANCE


@dataclass(frozen=True, slots=True)
class Run:
    """A run as the journal holds it."""

    run_id: str
    migration: str
    source: str
    destination: str | None
    status: RunStatus
    snapshot_at: datetime
    settings: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    process: RunProcess | None = None
    """Who last started or resumed it; None for runs journaled before crmlift recorded it."""

    @property
    def process_gone(self) -> bool:
        """The run says ``running`` but the process that ran it is known to be dead."""
        return (
            self.status == "running" and self.process is not None and self.process.alive() is False
        )


def new_run_id(now: datetime) -> str:
    """Sortable, readable and unique: ``r20261125-182233-3f9a``."""
    return f"r{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class Runs:
    """Create, find and move runs through their statuses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        *,
        migration: str,
        source: str,
        destination: str | None,
        settings: dict[str, Any],
        snapshot_at: datetime | None = None,
    ) -> Run:
        """Start a run; its snapshot bounds what the main extraction reads."""
        snapshot = snapshot_at or datetime.now(UTC)
        run_id = new_run_id(snapshot)
        me = RunProcess.current()
        await self._pool.execute(
            """INSERT INTO runs
                   (run_id, migration, source, destination, status, snapshot_at, settings,
                    pid, host, process_started_at)
               VALUES ($1, $2, $3, $4, 'running', $5, $6::jsonb, $7, $8, $9)""",
            run_id,
            migration,
            source,
            destination,
            snapshot,
            orjson.dumps(settings).decode(),
            me.pid,
            me.host,
            me.started_at,
        )
        return await self.get(run_id)

    async def get(self, run_id: str) -> Run:
        """The run, or a ConfigError naming the id the operator gave."""
        row = await self._pool.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        if row is None:
            raise ConfigError(f"no run {run_id!r} in the journal (see `crmlift runs`)")
        return _run_from_row(row)

    async def recent(self, migration: str | None = None, limit: int = 20) -> list[Run]:
        """Newest runs first, optionally of one migration."""
        rows = await self._pool.fetch(
            """SELECT * FROM runs WHERE $1::text IS NULL OR migration = $1
               ORDER BY started_at DESC LIMIT $2""",
            migration,
            limit,
        )
        return [_run_from_row(r) for r in rows]

    async def set_status(self, run_id: str, status: RunStatus, message: str | None = None) -> None:
        """Move a run to ``status``; a final status also stamps ``finished_at``.

        ``running`` (a resume) records this process as the one working on the run.
        """
        final = status in ("failed", "extracted", "completed")
        me = RunProcess.current() if status == "running" else None
        await self._pool.execute(
            """UPDATE runs SET status = $2, message = $3, updated_at = now(),
                   finished_at = CASE WHEN $4 THEN now() ELSE NULL END,
                   pid = COALESCE($5, pid), host = COALESCE($6, host),
                   process_started_at = COALESCE($7, process_started_at)
               WHERE run_id = $1""",
            run_id,
            status,
            message,
            final,
            None if me is None else me.pid,
            None if me is None else me.host,
            None if me is None else me.started_at,
        )


def _run_from_row(row: asyncpg.Record) -> Run:
    return Run(
        run_id=row["run_id"],
        migration=row["migration"],
        source=row["source"],
        destination=row["destination"],
        status=row["status"],
        snapshot_at=row["snapshot_at"],
        settings=orjson.loads(row["settings"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        message=row["message"],
        process=None
        if row["pid"] is None
        else RunProcess(row["pid"], row["host"], row["process_started_at"]),
    )
