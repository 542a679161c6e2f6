"""The id map and the operations log, written together so they never disagree.

Every load outcome is one operation row; every record that exists in the
destination because of us has one id-map row carrying the hash of what we last
wrote, so a rerun can tell "unchanged" without asking the destination.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson

Action = Literal["created", "updated", "unchanged", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Operation:
    """What happened to one record in one run."""

    collection: str
    source_id: str
    action: Action
    object: str | None = None
    external_id: str | None = None
    destination_id: str | None = None
    reason_code: str | None = None
    message: str | None = None
    pre_image: dict[str, Any] | None = None
    """The destination record as it was before we updated it: what rollback restores."""
    payload_hash: str | None = None
    content_sha256: str | None = None
    """A file record's content as written (None: not a file)."""


@dataclass(frozen=True, slots=True)
class Mapped:
    """An id-map entry: where a record went and what we last wrote there."""

    destination_id: str
    payload_hash: str
    content_sha256: str | None = None
    """A file record's content as last written; None for records and older entries."""


_ID_MAP_COLUMNS = [
    "migration", "object", "external_id", "collection", "source_id", "destination_id",
    "payload_hash", "run_id", "content_sha256",
]  # fmt: skip
_INCOMING_ID_MAP = """CREATE TEMP TABLE IF NOT EXISTS incoming_id_map
    (LIKE id_map INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
_MERGE_ID_MAP = """INSERT INTO id_map (migration, object, external_id, collection, source_id,
                                    destination_id, payload_hash, run_id, content_sha256)
SELECT DISTINCT ON (migration, object, external_id)
       migration, object, external_id, collection, source_id, destination_id, payload_hash,
       run_id, content_sha256
FROM incoming_id_map
ON CONFLICT (migration, object, external_id) DO UPDATE
SET destination_id = EXCLUDED.destination_id, payload_hash = EXCLUDED.payload_hash,
    run_id = EXCLUDED.run_id, updated_at = now(),
    content_sha256 = coalesce(EXCLUDED.content_sha256, id_map.content_sha256)"""


@dataclass(frozen=True, slots=True)
class OrgBinding:
    """What the journal knew of the org an id-map scope points into."""

    previous: str | None
    """The identity recorded before this run (None: first run of the scope)."""
    retired: int = 0
    """Id-map rows set aside because the identity changed."""


def retired_scope(migration: str, identity: str) -> str:
    """Where an id map goes when its org's identity changes: kept, never read by a load."""
    return f"{migration}#org:{identity}"


RefKey = tuple[str, str, str | None]
"""(source collection, source id, destination object or None for any)."""


class Operations:
    """Record outcomes; look up the id map."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, run_id: str, migration: str, ops: Sequence[Operation]) -> None:
        """Journal a batch of outcomes and move the id map with them, atomically."""
        if not ops:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "operations",
                records=[
                    (
                        run_id,
                        op.collection,
                        op.source_id,
                        op.object,
                        op.external_id,
                        op.action,
                        op.destination_id,
                        op.reason_code,
                        op.message,
                        None if op.pre_image is None else orjson.dumps(op.pre_image).decode(),
                    )
                    for op in ops
                ],
                columns=[
                    "run_id", "collection", "source_id", "object", "external_id", "action",
                    "destination_id", "reason_code", "message", "pre_image",
                ],
            )  # fmt: skip
            mapped = [
                (migration, op.object, op.external_id, op.collection, op.source_id,
                 op.destination_id, op.payload_hash, run_id, op.content_sha256)
                for op in ops
                if op.action in ("created", "updated", "unchanged")
                and op.destination_id and op.object and op.external_id and op.payload_hash
            ]  # fmt: skip
            if mapped:
                # COPY then one merge: a batch of 10,000 outcomes is two statements.
                await conn.execute(_INCOMING_ID_MAP)
                await conn.copy_records_to_table(
                    "incoming_id_map", records=mapped, columns=_ID_MAP_COLUMNS
                )
                await conn.execute(_MERGE_ID_MAP)

    async def bind_org(self, migration: str, identity: str) -> OrgBinding:
        """Record the identity of the org ``migration``'s id map points into.

        A different identity for the same scope (same org URL) means the org was
        reset or refreshed: none of the mapped ids exist there, so the id map moves
        aside (to ``retired_scope``) in the same transaction and the scope starts empty.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            previous = await conn.fetchval(
                "SELECT identity FROM org_identity WHERE migration = $1 FOR UPDATE", migration
            )
            retired = 0
            if previous is not None and previous != identity:
                retired = await _retire_id_map(conn, migration, retired_scope(migration, previous))
            await conn.execute(
                """INSERT INTO org_identity (migration, identity) VALUES ($1, $2)
                   ON CONFLICT (migration) DO UPDATE
                   SET identity = EXCLUDED.identity, recorded_at = now()""",
                migration,
                identity,
            )
        return OrgBinding(previous, retired)

    async def mapped_page(
        self, migration: str, run_id: str, collection: str, after: tuple[str, str], limit: int
    ) -> list[tuple[str, str, str]]:
        """(object, external id, destination id) of id-map rows of the records staged in
        this run for ``collection``, after ``after`` = (object, external id), in key order:
        what a rerun would otherwise trust without asking the destination."""
        rows = await self._pool.fetch(
            """SELECT m.object, m.external_id, m.destination_id FROM id_map m
               JOIN staged_records s ON s.run_id = $2 AND s.collection = m.collection
                                    AND s.source_id = m.source_id
               WHERE m.migration = $1 AND m.collection = $3 AND (m.object, m.external_id) > ($4, $5)
               ORDER BY m.object, m.external_id LIMIT $6""",
            migration, run_id, collection, after[0], after[1], limit,
        )  # fmt: skip
        return [(r["object"], r["external_id"], r["destination_id"]) for r in rows]

    async def forget(self, migration: str, sobject: str, external_ids: Sequence[str]) -> None:
        """Drop id-map rows of records gone from the destination: the next write creates
        them again and nothing resolves a lookup to an id that no longer exists."""
        await self._pool.execute(
            """DELETE FROM id_map WHERE migration = $1 AND object = $2
               AND external_id = ANY($3::text[])""",
            migration,
            sobject,
            list(external_ids),
        )

    async def existing(
        self, migration: str, sobject: str, external_ids: Sequence[str]
    ) -> dict[str, Mapped]:
        """Id-map entries of these external ids of one object."""
        rows = await self._pool.fetch(
            """SELECT external_id, destination_id, payload_hash, content_sha256 FROM id_map
               WHERE migration = $1 AND object = $2 AND external_id = ANY($3::text[])""",
            migration,
            sobject,
            list(external_ids),
        )
        return {
            r["external_id"]: Mapped(r["destination_id"], r["payload_hash"], r["content_sha256"])
            for r in rows
        }

    async def resolve(self, migration: str, refs: Iterable[RefKey]) -> dict[RefKey, str]:
        """Destination ids of the source records these lookups point to."""
        wanted = list(set(refs))
        if not wanted:
            return {}
        rows = await self._pool.fetch(
            """SELECT m.collection, m.source_id, m.object, m.destination_id
               FROM id_map m
               JOIN unnest($2::text[], $3::text[]) AS w(collection, source_id)
                 ON m.collection = w.collection AND m.source_id = w.source_id
               WHERE m.migration = $1""",
            migration,
            [c for c, _, _ in wanted],
            [s for _, s, _ in wanted],
        )
        found: dict[RefKey, str] = {}
        for r in rows:
            found[(r["collection"], r["source_id"], r["object"])] = r["destination_id"]
            found.setdefault((r["collection"], r["source_id"], None), r["destination_id"])
        return {key: found[key] for key in wanted if key in found}

    async def summary(self, run_id: str) -> dict[tuple[str, str], dict[str, int]]:
        """(collection, object) → action → count of the records of one run.

        A resumed run meets records it already wrote and journals them again as
        unchanged; a record counts once, by what was done to it (created before
        updated: a record created, then given its self-references in the second
        pass, was created). Records that became no destination object are counted
        under object ``-``.
        """
        rows = await self._pool.fetch(
            """WITH outcome AS (
                   SELECT DISTINCT ON (collection, object, coalesce(external_id, source_id))
                          collection, coalesce(object, '-') AS object, action
                   FROM operations WHERE run_id = $1
                   ORDER BY collection, object, coalesce(external_id, source_id),
                            CASE action WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END,
                            op_id DESC)
               SELECT collection, object, action, count(*) AS n FROM outcome GROUP BY 1, 2, 3""",
            run_id,
        )
        result: dict[tuple[str, str], dict[str, int]] = {}
        for r in rows:
            result.setdefault((r["collection"], r["object"]), {})[r["action"]] = r["n"]
        return result

    async def not_written(self, run_id: str, collection: str) -> dict[OutcomeKey, NotWritten]:
        """The collection's records whose last outcome in the run is skipped or failed, as
        reconcile and the sample diff explain them: one collection's, never the run's."""
        rows = await self._pool.fetch(_NOT_WRITTEN, run_id, collection)
        return {
            (r["source_id"], r["object"], r["external_id"]): NotWritten(
                r["action"], r["reason_code"], r["message"]
            )
            for r in rows
        }

    async def failures(self, run_id: str) -> list[Operation]:
        """Every failed or skipped operation of a run, for failures.csv."""
        rows = await self._pool.fetch(
            """SELECT * FROM (
                   SELECT DISTINCT ON (collection, object, coalesce(external_id, source_id))
                          collection, source_id, action, object, external_id, reason_code,
                          message
                   FROM operations WHERE run_id = $1
                   ORDER BY collection, object, coalesce(external_id, source_id),
                            (action IN ('created', 'updated')) DESC, op_id DESC) last
               WHERE action IN ('failed', 'skipped') ORDER BY collection, source_id""",
            run_id,
        )
        return [Operation(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class NotWritten:
    """A record a run skipped or failed to write, with the journaled reason."""

    action: str
    code: str | None
    message: str | None


OutcomeKey = tuple[str, str | None, str | None]
"""(source id, destination object, external id); object and external id are None for a
record the transform refused as a whole."""

# A record counts once, by its last word: written (in any attempt of the run) wins over
# an earlier failure, else the newest outcome. Only the ones not written come back.
_NOT_WRITTEN = """
SELECT source_id, object, external_id, action, reason_code, message FROM (
    SELECT DISTINCT ON (source_id, coalesce(object, '-'), coalesce(external_id, source_id))
           source_id, object, external_id, action, reason_code, message
    FROM operations WHERE run_id = $1 AND collection = $2
    ORDER BY source_id, coalesce(object, '-'), coalesce(external_id, source_id),
             (action IN ('created', 'updated', 'unchanged')) DESC, op_id DESC) last
WHERE action IN ('failed', 'skipped')"""


async def _retire_id_map(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, migration: str, archive: str
) -> int:
    """Move a scope's id map to ``archive`` (replacing an older archive of that org)."""
    await conn.execute("DELETE FROM id_map WHERE migration = $1", archive)
    status = await conn.execute(
        "UPDATE id_map SET migration = $2, updated_at = now() WHERE migration = $1",
        migration,
        archive,
    )
    return int(status.split()[-1])
