"""Destination jobs journaled before their data is sent: the crash-recovery ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import orjson

JobState = Literal["open", "uploaded", "done", "aborted"]


@dataclass(frozen=True, slots=True)
class LoadJob:
    """An asynchronous destination job and how far we know it got."""

    job_id: str
    platform: str
    object: str
    collection: str
    state: JobState
    records: int
    members: list[tuple[str, str, str]]
    """(external id, source id, payload hash) of every record in the job."""
    pre_images: dict[str, dict[str, Any]] = field(default_factory=dict)
    """External id → the record as it was before the job updates it (rollback's)."""


class LoadJobs:
    """Open, advance and find unfinished destination jobs."""

    def __init__(self, pool: asyncpg.Pool, run_id: str) -> None:
        self._pool = pool
        self.run_id = run_id

    async def opened(self, job: LoadJob) -> None:
        """The job exists on the platform; nothing is uploaded yet."""
        await self._pool.execute(
            """INSERT INTO load_jobs
                   (job_id, run_id, platform, object, collection, state, records, members,
                    pre_images)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
               ON CONFLICT (job_id) DO NOTHING""",
            job.job_id,
            self.run_id,
            job.platform,
            job.object,
            job.collection,
            job.state,
            job.records,
            orjson.dumps(job.members).decode(),
            orjson.dumps(job.pre_images).decode(),
        )

    async def moved(self, job_id: str, state: JobState) -> None:
        """The job reached ``state``."""
        await self._pool.execute(
            "UPDATE load_jobs SET state = $2, updated_at = now() WHERE job_id = $1",
            job_id,
            state,
        )

    async def unfinished(self) -> list[LoadJob]:
        """Jobs of this run whose results were never journaled."""
        rows = await self._pool.fetch(
            """SELECT job_id, platform, object, collection, state, records, members::text,
                      pre_images::text
               FROM load_jobs
               WHERE run_id = $1 AND state IN ('open', 'uploaded') ORDER BY created_at""",
            self.run_id,
        )
        return [
            LoadJob(
                job_id=r["job_id"],
                platform=r["platform"],
                object=r["object"],
                collection=r["collection"],
                state=r["state"],
                records=r["records"],
                members=[tuple(m) for m in orjson.loads(r["members"])],
                pre_images=orjson.loads(r["pre_images"] or "{}"),
            )
            for r in rows
        ]
