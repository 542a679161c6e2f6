"""What delta pickup reads and writes in the journal: the watermark it starts from, the
id map of the records it touches, the conflicts it found and the records it deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson

ConflictKind = Literal["conflict", "destination-only"]
Resolution = Literal["kept", "written", "refused"]


@dataclass(frozen=True, slots=True)
class Watermark:
    """Where the newest completed load of a migration into an org left the source."""

    run_id: str
    at: datetime
    """Its snapshot, or for a full run the start of its last catch-up pass: every change
    made before this moment is in the destination."""
    command: str
    """``migrate`` or ``delta``."""


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """An id-map row of one source record: where it went and which run last wrote it."""

    object: str
    external_id: str
    collection: str
    source_id: str
    destination_id: str
    payload_hash: str
    run_id: str


@dataclass(frozen=True, slots=True)
class FieldConflict:
    """One field the destination changed since crmlift last wrote it."""

    collection: str
    source_id: str
    object: str
    external_id: str
    destination_id: str
    field: str
    kind: ConflictKind
    """``conflict``: the source changed it too, to another value; ``destination-only``:
    the source did not (the destination's edit stands whatever the policy)."""
    resolution: Resolution
    base: Any
    theirs: Any
    ours: Any


@dataclass(frozen=True, slots=True)
class DeletedImage:
    """A record a delta deleted in the destination, as a rollback re-creates it."""

    collection: str
    source_id: str
    object: str
    external_id: str
    destination_id: str
    """The id it had (the rollback journal's key; a re-created record gets a new one)."""
    image: dict[str, Any]
    """``fields`` as sent, ``links`` (field → [collection, source id, object]) resolved
    again at re-creation, ``payload_hash`` and ``written_by`` for the id map."""


# The newest completed load into the org, samples, rollbacks and fully undone loads left out.
_WATERMARK = """
SELECT r.run_id, coalesce(r.settings->>'command', 'migrate') AS command,
       coalesce((SELECT max(c.window_start) FROM checkpoints c
                 WHERE c.run_id = r.run_id AND c.kind = 'catchup'), r.snapshot_at) AS at
FROM runs r
WHERE r.migration = $1 AND r.destination = $2 AND r.status = 'completed'
  AND coalesce(r.settings->>'command', 'migrate') IN ('migrate', 'delta')
  AND r.settings->'sample' IS NULL AND r.settings->>'rollback_of' IS NULL
  AND rtrim(coalesce(r.settings->'destination'->>'login_url',
                     r.settings->'destination'->>'environment_url', ''), '/') = $3
  AND NOT EXISTS (SELECT 1 FROM runs u WHERE u.settings->>'rollback_of' = r.run_id
                  AND u.status = 'completed')
ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1"""


class Deltas:
    """Journal queries of delta pickup."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def watermark(self, migration: str, platform: str, org_url: str) -> Watermark | None:
        """The newest completed full or delta load of ``migration`` into the org, unless a
        rollback undid it (its changes are then picked up again)."""
        row = await self._pool.fetchrow(_WATERMARK, migration, platform, org_url.rstrip("/"))
        if row is None:
            return None
        return Watermark(row["run_id"], row["at"], row["command"])

    async def changed(self, run_id: str, since: datetime) -> dict[str, frozenset[str]]:
        """collection → source ids the run staged with ``updated_at`` at or after ``since``:
        what a delta loads (collections read whole for the mapping context included)."""
        rows = await self._pool.fetch(
            """SELECT collection, array_agg(source_id) AS ids FROM staged_records
               WHERE run_id = $1 AND updated_at >= $2 GROUP BY collection""",
            run_id,
            since,
        )
        return {r["collection"]: frozenset(r["ids"]) for r in rows}

    async def deletions(self, run_id: str) -> list[tuple[str, str, datetime]]:
        """(collection, source id, deleted_at) of the deletion feed the run staged."""
        rows = await self._pool.fetch(
            """SELECT collection, source_id, deleted_at FROM source_deletions
               WHERE run_id = $1 ORDER BY deleted_at, collection, source_id""",
            run_id,
        )
        return [(r["collection"], r["source_id"], r["deleted_at"]) for r in rows]

    async def mapped(self, migration: str, keys: Sequence[tuple[str, str]]) -> list[MappedRecord]:
        """Id-map rows of these (collection, source id): every object each one became."""
        if not keys:
            return []
        rows = await self._pool.fetch(
            """SELECT m.object, m.external_id, m.collection, m.source_id, m.destination_id,
                      m.payload_hash, m.run_id
               FROM id_map m
               JOIN unnest($2::text[], $3::text[]) AS k (collection, source_id)
                 ON m.collection = k.collection AND m.source_id = k.source_id
               WHERE m.migration = $1
               ORDER BY m.collection, m.source_id, m.object, m.external_id""",
            migration,
            [c for c, _ in keys],
            [s for _, s in keys],
        )
        return [MappedRecord(**dict(r)) for r in rows]

    async def record_conflicts(self, run_id: str, conflicts: Sequence[FieldConflict]) -> None:
        """Journal conflicts (a resumed cycle finding one again keeps the newest word)."""
        if not conflicts:
            return
        await self._pool.executemany(
            """INSERT INTO delta_conflicts (run_id, object, external_id, field, collection,
                   source_id, destination_id, kind, resolution, base, theirs, ours)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb)
               ON CONFLICT (run_id, object, external_id, field) DO UPDATE
               SET kind = EXCLUDED.kind, resolution = EXCLUDED.resolution,
                   base = EXCLUDED.base, theirs = EXCLUDED.theirs, ours = EXCLUDED.ours""",
            [
                (run_id, c.object, c.external_id, c.field, c.collection, c.source_id,
                 c.destination_id, c.kind, c.resolution, _json(c.base), _json(c.theirs),
                 _json(c.ours))
                for c in conflicts
            ],
        )  # fmt: skip

    async def conflicts(self, run_id: str) -> list[FieldConflict]:
        """Every conflict the run journaled, by record and field."""
        rows = await self._pool.fetch(
            """SELECT collection, source_id, object, external_id, destination_id, field, kind,
                      resolution, base::text, theirs::text, ours::text
               FROM delta_conflicts WHERE run_id = $1
               ORDER BY collection, source_id, object, field""",
            run_id,
        )
        return [
            FieldConflict(
                r["collection"], r["source_id"], r["object"], r["external_id"],
                r["destination_id"], r["field"], r["kind"], r["resolution"],
                _value(r["base"]), _value(r["theirs"]), _value(r["ours"]),
            )
            for r in rows
        ]  # fmt: skip

    async def kept_fields(self, run_id: str, sobject: str) -> dict[str, frozenset[str]]:
        """destination id → fields the run left as the destination held them: the values
        there are not the ones the run's payload carries, by the run's own choice."""
        rows = await self._pool.fetch(
            """SELECT destination_id, array_agg(field) AS fields FROM delta_conflicts
               WHERE run_id = $1 AND object = $2 AND resolution = 'kept'
               GROUP BY destination_id""",
            run_id,
            sobject,
        )
        return {r["destination_id"]: frozenset(r["fields"]) for r in rows}

    async def record_deleted(
        self, run_id: str, migration: str, image: DeletedImage, message: str
    ) -> None:
        """Journal a delete the destination carried out, with the record's image, and drop
        its id-map row, in one transaction: the record is gone, and nothing resolves a
        lookup to it any more."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO operations (run_id, collection, source_id, object, external_id,
                       action, destination_id, reason_code, message, pre_image)
                   VALUES ($1, $2, $3, $4, $5, 'deleted', $6, 'deleted_at_source', $7,
                           $8::jsonb)""",
                run_id, image.collection, image.source_id, image.object, image.external_id,
                image.destination_id, message, orjson.dumps(image.image, default=str).decode(),
            )  # fmt: skip
            await conn.execute(
                "DELETE FROM id_map WHERE migration = $1 AND object = $2 AND external_id = $3",
                migration,
                image.object,
                image.external_id,
            )

    async def deleted(self, run_id: str, objects: Sequence[str] | None) -> list[DeletedImage]:
        """Every record ``run_id`` deleted in the destination (of ``objects``; None: all)."""
        rows = await self._pool.fetch(
            """SELECT collection, source_id, object, external_id, destination_id,
                      pre_image::text AS image
               FROM operations WHERE run_id = $1 AND action = 'deleted'
                 AND ($2::text[] IS NULL OR object = ANY($2::text[]))
               ORDER BY op_id""",
            run_id,
            None if objects is None else list(objects),
        )
        return [
            DeletedImage(
                r["collection"], r["source_id"], r["object"], r["external_id"],
                r["destination_id"], orjson.loads(r["image"] or "{}"),
            )
            for r in rows
        ]  # fmt: skip

    async def remap(self, migration: str, image: DeletedImage, destination_id: str) -> None:
        """Put a re-created record back in the id map under its new destination id."""
        await self._pool.execute(
            """INSERT INTO id_map (migration, object, external_id, collection, source_id,
                                   destination_id, payload_hash, run_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (migration, object, external_id) DO UPDATE
               SET destination_id = EXCLUDED.destination_id,
                   payload_hash = EXCLUDED.payload_hash, run_id = EXCLUDED.run_id,
                   updated_at = now()""",
            migration, image.object, image.external_id, image.collection, image.source_id,
            destination_id, str(image.image.get("payload_hash") or ""),
            str(image.image.get("written_by") or ""),
        )  # fmt: skip


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _value(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)
