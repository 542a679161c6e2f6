"""Deletions the source reported, kept so the load, delta pickup and the audit act on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

DELETED_AT_SOURCE = "deleted_at_source"
"""Reason code of a staged record the load skipped because the source deleted it."""


class Deletions:
    """Stage the source's deletion feed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stage(self, run_id: str, rows: Sequence[tuple[str, str, datetime]]) -> None:
        """Record (collection, source id, deleted_at) rows; repeats are harmless.

        A record deleted, restored and deleted again keeps its latest deletion: the
        load compares it with the staged version, and an earlier one would let a
        record deleted since its restore through.
        """
        await self._pool.executemany(
            """INSERT INTO source_deletions (run_id, collection, source_id, deleted_at)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (run_id, collection, source_id) DO UPDATE
               SET deleted_at = EXCLUDED.deleted_at
               WHERE source_deletions.deleted_at < EXCLUDED.deleted_at""",
            [(run_id, c, i, at) for c, i, at in rows],
        )

    async def count(self, run_id: str) -> int:
        """How many deletions the run staged."""
        n = await self._pool.fetchval(
            "SELECT count(*) FROM source_deletions WHERE run_id = $1", run_id
        )
        return int(n)

    async def not_loaded(self, run_id: str) -> dict[str, int]:
        """collection → staged records whose last outcome in the run is the skip for a
        source deletion (one restored and loaded by a later resume no longer counts)."""
        rows = await self._pool.fetch(
            """SELECT collection, count(*) AS n FROM (
                   SELECT DISTINCT ON (collection, source_id) collection, reason_code
                   FROM operations WHERE run_id = $1
                   ORDER BY collection, source_id, op_id DESC) last
               WHERE reason_code = $2 GROUP BY collection""",
            run_id,
            DELETED_AT_SOURCE,
        )
        return {r["collection"]: int(r["n"]) for r in rows}
