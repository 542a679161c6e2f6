"""Staged records: source data exactly as extracted, written with COPY."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from journal.checkpoints import WindowCheckpoint, advance


@dataclass(frozen=True, slots=True)
class StagedRow:
    """One record ready for staging: its key, its version and its canonical JSON."""

    collection: str
    source_id: str
    updated_at: datetime
    payload: str
    content_hash: str


_INCOMING = """CREATE TEMP TABLE IF NOT EXISTS incoming_records (
    collection text, source_id text, updated_at timestamptz, payload jsonb, content_hash text
) ON COMMIT DELETE ROWS"""

# The newest version wins: a record read twice (it moved between windows while
# the run read them) is kept once, at its latest updated_at.
_MERGE = """INSERT INTO staged_records
    (run_id, collection, source_id, updated_at, payload, content_hash)
SELECT DISTINCT ON (collection, source_id)
    $1, collection, source_id, updated_at, payload, content_hash
FROM incoming_records ORDER BY collection, source_id, updated_at DESC
ON CONFLICT (run_id, collection, source_id) DO UPDATE
SET updated_at = EXCLUDED.updated_at, payload = EXCLUDED.payload,
    content_hash = EXCLUDED.content_hash, staged_at = now()
WHERE staged_records.updated_at <= EXCLUDED.updated_at"""


class Staging:
    """Write pages into staging and read staged records back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stage_page(
        self,
        run_id: str,
        window: WindowCheckpoint,
        rows: Sequence[StagedRow],
        *,
        next_cursor: str | None,
    ) -> None:
        """Stage a page and advance its window's cursor in one transaction.

        The cursor moves only with the data it covers, so a crash at any point
        resumes at a page boundary with nothing lost and nothing doubled.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.execute(_INCOMING)
                await conn.copy_records_to_table(
                    "incoming_records",
                    records=[
                        (r.collection, r.source_id, r.updated_at, r.payload, r.content_hash)
                        for r in rows
                    ],
                    columns=["collection", "source_id", "updated_at", "payload", "content_hash"],
                )
                await conn.execute(_MERGE, run_id)
            await advance(conn, run_id, window, cursor=next_cursor, records=len(rows))

    async def counts(self, run_id: str) -> dict[str, int]:
        """Staged records per collection."""
        rows = await self._pool.fetch(
            "SELECT collection, count(*) AS n FROM staged_records WHERE run_id = $1 GROUP BY 1",
            run_id,
        )
        return {r["collection"]: r["n"] for r in rows}

    async def hashes(self, run_id: str, collection: str) -> dict[str, str]:
        """source id → content hash of one staged collection."""
        rows = await self._pool.fetch(
            """SELECT source_id, content_hash FROM staged_records
               WHERE run_id = $1 AND collection = $2""",
            run_id,
            collection,
        )
        return {r["source_id"]: r["content_hash"] for r in rows}

    async def payloads(
        self, run_id: str, collection: str, *, batch: int = 1000
    ) -> AsyncGenerator[tuple[str, str], None]:
        """(source id, payload JSON) of a staged collection, streamed by a server cursor."""
        async with self._pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor(
                """SELECT source_id, payload::text AS payload FROM staged_records
                   WHERE run_id = $1 AND collection = $2 ORDER BY source_id""",
                run_id,
                collection,
                prefetch=batch,
            ):
                yield row["source_id"], row["payload"]
