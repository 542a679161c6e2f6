"""Deletions the source reported, kept so delta pickup and the audit can act on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg


class Deletions:
    """Stage the source's deletion feed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stage(self, run_id: str, rows: Sequence[tuple[str, str, datetime]]) -> None:
        """Record (collection, source id, deleted_at) rows; repeats are harmless."""
        await self._pool.executemany(
            """INSERT INTO source_deletions (run_id, collection, source_id, deleted_at)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(run_id, c, i, at) for c, i, at in rows],
        )

    async def count(self, run_id: str) -> int:
        """How many deletions the run staged."""
        n = await self._pool.fetchval(
            "SELECT count(*) FROM source_deletions WHERE run_id = $1", run_id
        )
        return int(n)
