"""Runs: one row per migration attempt, the anchor of everything journaled."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson

from adapters.errors import ConfigError

RunStatus = Literal["running", "interrupted", "failed", "extracted", "completed"]


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
        await self._pool.execute(
            """INSERT INTO runs
                   (run_id, migration, source, destination, status, snapshot_at, settings)
               VALUES ($1, $2, $3, $4, 'running', $5, $6::jsonb)""",
            run_id,
            migration,
            source,
            destination,
            snapshot,
            orjson.dumps(settings).decode(),
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
        """Move a run to ``status``; a final status also stamps ``finished_at``."""
        final = status in ("failed", "extracted", "completed")
        await self._pool.execute(
            """UPDATE runs SET status = $2, message = $3, updated_at = now(),
                   finished_at = CASE WHEN $4 THEN now() ELSE NULL END
               WHERE run_id = $1""",
            run_id,
            status,
            message,
            final,
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
    )
