"""Sample runs and their approvals: which records a sample loads, the mapping it was made
with, and who approved it (``sample_runs``, ``sample_records``, ``sample_approvals``).

The selection is journaled once, when the sample is chosen, so a resumed sample loads
and reads back exactly the records it started with, whatever the catch-up staged since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class SampleRun:
    """A run that loads a sample, as the journal holds it."""

    run_id: str
    requested: int
    """About how many records the operator asked for (``--sample N``)."""
    destination: str
    """Where it loads (platform and org URL): a sandbox, or the plan's destination."""
    mapping_fingerprint: str | None
    """The mapping the sample was checked with; None until its diff is written."""


@dataclass(frozen=True, slots=True)
class Approval:
    """An operator's approval of a sample, for one mapping fingerprint."""

    migration: str
    run_id: str
    mapping_fingerprint: str
    approved_by: str
    approved_at: datetime


Selection = Mapping[str, Mapping[str, str]]
"""Collection → source id → why it is in the sample."""


class Samples:
    """Journal sample runs, their selections and their approvals."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def start(self, run_id: str, requested: int, destination: str) -> None:
        """Mark ``run_id`` as a sample of about ``requested`` records into ``destination``."""
        await self._pool.execute(
            """INSERT INTO sample_runs (run_id, requested, destination) VALUES ($1, $2, $3)
               ON CONFLICT (run_id) DO NOTHING""",
            run_id,
            requested,
            destination,
        )

    async def get(self, run_id: str) -> SampleRun | None:
        """The sample run ``run_id``, or None when the run is not a sample."""
        row = await self._pool.fetchrow("SELECT * FROM sample_runs WHERE run_id = $1", run_id)
        if row is None:
            return None
        return SampleRun(
            row["run_id"], row["requested"], row["destination"], row["mapping_fingerprint"]
        )

    async def save_selection(self, run_id: str, selection: Selection) -> None:
        """Journal the chosen records, once: a selection already saved is kept."""
        rows = [
            (run_id, collection, source_id, reason)
            for collection, picks in selection.items()
            for source_id, reason in picks.items()
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(
                "SELECT 1 FROM sample_records WHERE run_id = $1 LIMIT 1", run_id
            ):
                return
            await conn.executemany(
                """INSERT INTO sample_records (run_id, collection, source_id, reason)
                   VALUES ($1, $2, $3, $4)""",
                rows,
            )

    async def selection(self, run_id: str) -> dict[str, dict[str, str]] | None:
        """The journaled selection of a sample run; None before it was chosen."""
        rows = await self._pool.fetch(
            """SELECT collection, source_id, reason FROM sample_records WHERE run_id = $1
               ORDER BY collection, source_id""",
            run_id,
        )
        if not rows:
            return None
        chosen: dict[str, dict[str, str]] = {}
        for r in rows:
            chosen.setdefault(r["collection"], {})[r["source_id"]] = r["reason"]
        return chosen

    async def checked(self, run_id: str, fingerprint: str) -> None:
        """Record the mapping fingerprint the sample's diff was made with."""
        await self._pool.execute(
            "UPDATE sample_runs SET mapping_fingerprint = $2 WHERE run_id = $1", run_id, fingerprint
        )

    async def approve(
        self, migration: str, run_id: str, fingerprint: str, approved_by: str
    ) -> Approval:
        """Journal the operator's approval of sample ``run_id`` for ``fingerprint``."""
        row = await self._pool.fetchrow(
            """INSERT INTO sample_approvals (migration, run_id, mapping_fingerprint, approved_by)
               VALUES ($1, $2, $3, $4) RETURNING *""",
            migration,
            run_id,
            fingerprint,
            approved_by,
        )
        assert row is not None
        return _approval(row)

    async def approval(self, migration: str, fingerprint: str) -> Approval | None:
        """The latest approval of a sample of ``migration`` made with ``fingerprint``."""
        row = await self._pool.fetchrow(
            """SELECT * FROM sample_approvals WHERE migration = $1 AND mapping_fingerprint = $2
               ORDER BY approved_at DESC, approval_id DESC LIMIT 1""",
            migration,
            fingerprint,
        )
        return None if row is None else _approval(row)


def _approval(row: asyncpg.Record) -> Approval:
    return Approval(
        row["migration"],
        row["run_id"],
        row["mapping_fingerprint"],
        row["approved_by"],
        row["approved_at"],
    )
