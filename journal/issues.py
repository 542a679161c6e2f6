"""Record issues: every record skipped or failed, with the reason, never lost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

Outcome = Literal["skipped", "failed", "warning"]


@dataclass(frozen=True, slots=True)
class RecordIssue:
    """Why one record was not taken as it is."""

    phase: str
    collection: str
    source_id: str
    outcome: Outcome
    code: str
    message: str


class Issues:
    """Journal record issues idempotently: a resumed run does not double them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, run_id: str, issue: RecordIssue) -> None:
        """Write or refresh one issue."""
        await self._pool.execute(
            """INSERT INTO record_issues
                   (run_id, phase, collection, source_id, outcome, code, message)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (run_id, phase, collection, source_id, code)
               DO UPDATE SET outcome = EXCLUDED.outcome, message = EXCLUDED.message""",
            run_id,
            issue.phase,
            issue.collection,
            issue.source_id,
            issue.outcome,
            issue.code,
            issue.message,
        )

    async def record_many(self, run_id: str, issues: list[RecordIssue]) -> None:
        """Write or refresh many issues in one round trip."""
        await self._pool.executemany(
            """INSERT INTO record_issues
                   (run_id, phase, collection, source_id, outcome, code, message)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (run_id, phase, collection, source_id, code)
               DO UPDATE SET outcome = EXCLUDED.outcome, message = EXCLUDED.message""",
            [
                (run_id, i.phase, i.collection, i.source_id, i.outcome, i.code, i.message)
                for i in issues
            ],
        )

    async def resolve(self, run_id: str, phase: str, collection: str, source_id: str) -> None:
        """Forget a record's issues in a phase once a retry has taken it."""
        await self._pool.execute(
            """DELETE FROM record_issues
               WHERE run_id = $1 AND phase = $2 AND collection = $3 AND source_id = $4""",
            run_id,
            phase,
            collection,
            source_id,
        )

    async def list(self, run_id: str, phase: str | None = None) -> list[RecordIssue]:
        """Every issue of a run (of one phase if given), grouped by collection."""
        rows = await self._pool.fetch(
            """SELECT phase, collection, source_id, outcome, code, message FROM record_issues
               WHERE run_id = $1 AND ($2::text IS NULL OR phase = $2)
               ORDER BY collection, source_id, code""",
            run_id,
            phase,
        )
        return [RecordIssue(**dict(r)) for r in rows]
