"""What a run wrote, as rollback reads it, and what each rollback did (``rollback_ops``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson

Kind = Literal["delete", "restore", "recreate"]
Outcome = Literal["pending", "deleted", "restored", "recreated", "conflict", "failed"]
FINAL: tuple[Outcome, ...] = ("deleted", "restored", "recreated")
"""Outcomes a rerun never acts on again."""


@dataclass(frozen=True, slots=True)
class Written:
    """One destination record a run created or updated, as the rollback undoes it."""

    collection: str
    object: str
    destination_id: str
    external_id: str | None
    source_id: str
    kind: Kind
    """``delete`` for a record the run created; ``restore`` for one it only updated."""
    pre_image: dict[str, Any] | None
    """The values before the run's first update of the record (None: never captured)."""
    written_at: datetime
    """When the run journaled its last write of the record: later changes are not ours."""
    first_op: int


@dataclass(frozen=True, slots=True)
class Done:
    """One rollback outcome, for the journal and the report."""

    object: str
    destination_id: str
    kind: Kind
    outcome: Outcome
    reason: str | None = None


_WRITTEN = """
SELECT collection, object, destination_id, max(external_id) AS external_id,
       max(source_id) AS source_id,
       bool_or(action = 'created') AS created,
       coalesce(jsonb_agg(pre_image ORDER BY op_id) FILTER (WHERE pre_image IS NOT NULL),
                '[]'::jsonb) AS pre_images,
       max(created_at) AS written_at, min(op_id) AS first_op
FROM operations
WHERE run_id = $1 AND action IN ('created', 'updated')
  AND object IS NOT NULL AND destination_id IS NOT NULL
  AND ($2::text[] IS NULL OR object = ANY($2::text[]))
GROUP BY collection, object, destination_id
ORDER BY first_op"""


class Rollbacks:
    """Read a run's writes; journal the rollback's outcomes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def written(self, run_id: str, objects: Sequence[str] | None) -> list[Written]:
        """Every record ``run_id`` created or updated (of ``objects``, None: all)."""
        rows = await self._pool.fetch(_WRITTEN, run_id, None if objects is None else list(objects))
        return [_written(r) for r in rows]

    async def find_run(self, target_run_id: str) -> str | None:
        """The newest rollback run of ``target_run_id``, which a rerun continues."""
        value = await self._pool.fetchval(
            """SELECT run_id FROM runs WHERE settings->>'rollback_of' = $1
               ORDER BY started_at DESC LIMIT 1""",
            target_run_id,
        )
        return None if value is None else str(value)

    async def outcomes(self, target_run_id: str) -> dict[tuple[str, str], Done]:
        """(object, destination id) → what the rollbacks of ``target_run_id`` last did."""
        rows = await self._pool.fetch(
            """SELECT object, destination_id, action, outcome, reason FROM rollback_ops
               WHERE target_run_id = $1""",
            target_run_id,
        )
        return {
            (r["object"], r["destination_id"]): Done(
                r["object"], r["destination_id"], r["action"], r["outcome"], r["reason"]
            )
            for r in rows
        }

    async def touched(self, sobject: str, ids: Sequence[str]) -> dict[str, datetime]:
        """When crmlift's own rollbacks (of any run) last restored or deleted each of these
        records: a later destination timestamp up to then is our write, not someone else's
        (undoing a newer run restores a record an older run wrote)."""
        rows = await self._pool.fetch(
            """SELECT destination_id, max(updated_at) AS at FROM rollback_ops
               WHERE object = $1 AND destination_id = ANY($2::text[])
                 AND outcome IN ('restored', 'deleted')
               GROUP BY destination_id""",
            sobject,
            list(ids),
        )
        return {r["destination_id"]: r["at"] for r in rows}

    async def written_by(
        self, run_ids: Sequence[str], sobject: str, ids: Sequence[str]
    ) -> dict[str, datetime]:
        """When any of ``run_ids`` last journaled a write of each of these records."""
        if not run_ids:
            return {}
        rows = await self._pool.fetch(
            """SELECT destination_id, max(created_at) AS at FROM operations
               WHERE run_id = ANY($1::text[]) AND action IN ('created', 'updated')
                 AND object = $2 AND destination_id = ANY($3::text[])
               GROUP BY destination_id""",
            list(run_ids),
            sobject,
            list(ids),
        )
        return {r["destination_id"]: r["at"] for r in rows}

    async def loads_since(
        self, migration: str, platform: str, org_url: str, first_run_id: str
    ) -> list[str]:
        """Load runs of ``migration`` into the org at ``org_url`` started at or after
        ``first_run_id``, newest first: what ``--to-before`` undoes. Rollback runs are never
        among them. The org is read from the plan journaled with each run (its
        ``[destination]`` URL), the id map's own scope (``service.migrate.id_map_scope``)."""
        rows = await self._pool.fetch(
            """SELECT run_id FROM runs
               WHERE migration = $1 AND destination = $2
                 AND settings->>'rollback_of' IS NULL
                 AND rtrim(coalesce(settings->'destination'->>'login_url',
                                    settings->'destination'->>'environment_url', ''), '/') = $3
                 AND started_at >= (SELECT started_at FROM runs WHERE run_id = $4)
               ORDER BY started_at DESC, run_id DESC""",
            migration,
            platform,
            org_url.rstrip("/"),
            first_run_id,
        )
        return [str(r["run_id"]) for r in rows]

    async def left(self, target_run_id: str, objects: Sequence[str] | None) -> int:
        """Records ``target_run_id`` wrote or deleted (of ``objects``) that no rollback has
        deleted, restored or re-created yet: 0 means it is fully rolled back."""
        value = await self._pool.fetchval(
            """SELECT count(*) FROM (
                   SELECT DISTINCT object, destination_id FROM operations
                   WHERE run_id = $1 AND action IN ('created', 'updated', 'deleted')
                     AND object IS NOT NULL AND destination_id IS NOT NULL
                     AND ($2::text[] IS NULL OR object = ANY($2::text[]))
               ) w
               WHERE NOT EXISTS (
                   SELECT 1 FROM rollback_ops r
                   WHERE r.target_run_id = $1 AND r.object = w.object
                     AND r.destination_id = w.destination_id
                     AND r.outcome IN ('deleted', 'restored', 'recreated'))""",
            target_run_id,
            None if objects is None else list(objects),
        )
        return int(value or 0)

    async def record(self, rollback_run_id: str, target_run_id: str, done: Sequence[Done]) -> None:
        """Journal outcomes; a final one (deleted, restored) is never overwritten."""
        if not done:
            return
        await self._pool.executemany(
            """INSERT INTO rollback_ops (target_run_id, object, destination_id, rollback_run_id,
                                         action, outcome, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (target_run_id, object, destination_id) DO UPDATE
               SET rollback_run_id = EXCLUDED.rollback_run_id, outcome = EXCLUDED.outcome,
                   reason = EXCLUDED.reason, updated_at = now()
               WHERE rollback_ops.outcome NOT IN ('deleted', 'restored', 'recreated')""",
            [
                (target_run_id, d.object, d.destination_id, rollback_run_id, d.kind, d.outcome,
                 d.reason)
                for d in done
            ],
        )  # fmt: skip


def _written(row: asyncpg.Record) -> Written:
    merged: dict[str, Any] = {}
    for image in orjson.loads(row["pre_images"]):
        for field, value in image.items():
            merged.setdefault(field, value)  # the first pre-image holds the pre-run value
    created = bool(row["created"])
    return Written(
        collection=row["collection"],
        object=row["object"],
        destination_id=row["destination_id"],
        external_id=row["external_id"],
        source_id=row["source_id"],
        kind="delete" if created else "restore",
        pre_image=merged or None,
        written_at=row["written_at"],
        first_op=row["first_op"],
    )
