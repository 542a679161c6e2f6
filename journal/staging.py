"""Staged records: source data exactly as extracted, written with COPY."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from journal.checkpoints import WindowCheckpoint, advance


@dataclass(frozen=True, slots=True)
class StagedRow:
    """One record ready for staging: its key, its version and its canonical JSON."""

    collection: str
    source_id: str
    updated_at: datetime
    payload: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class LoadRow:
    """A staged record as the load reads it: its payload, or the deletion that retires it."""

    source_id: str
    payload: str | None
    """The source's JSON text; None when the record was deleted at the source."""
    deleted_at: datetime | None
    """When the source deleted the staged version (None: it is live)."""


NUL = "\x00"
NUL_MARK = "_crmlift_nul_escaped"
"""Key of a staged payload listing where NULs were escaped.

PostgreSQL's jsonb and text cannot hold U+0000, so a source string holding one is
staged escaped (``\\`` → ``\\\\``, NUL → ``\\0``) and the places are listed
under this key; ``payloads`` puts every NUL back, so the mapping sees the source's
text exactly.
"""
_ESCAPED = re.compile(r"\\([\\0])")
Path = list[str | int]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(NUL, "\\0")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: NUL if m.group(1) == "0" else "\\", text)


def escape_nuls(record: Any) -> tuple[Any, list[str]]:
    """``record`` with every NUL escaped, and the fields that held one (for the journal).

    Records without a NUL come back as they are.
    """
    values: list[Path] = []
    keys: list[Path] = []
    escaped = _escape_in(record, [], values, keys)
    if not values and not keys:
        return record, []
    assert isinstance(escaped, dict)  # a top-level string record has no id to stage
    escaped[NUL_MARK] = {"values": values, "keys": keys}
    fields = [_dotted(p) for p in values + keys]
    return escaped, fields


def _escape_in(value: Any, path: Path, values: list[Path], keys: list[Path]) -> Any:
    if isinstance(value, str):
        if NUL in value:
            values.append(path)
            return _escape(value)
        return value
    if isinstance(value, list):
        return [_escape_in(v, [*path, i], values, keys) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key
            if NUL in key:
                name = _escape(key)
                keys.append([*path, name])
            out[name] = _escape_in(item, [*path, name], values, keys)
        return out
    return value


def restore_nuls(payload: str) -> str:
    """The source's JSON text of a staged payload: escaped NULs put back."""
    if NUL_MARK not in payload:
        return payload
    record = orjson.loads(payload)
    mark = record.pop(NUL_MARK, None) if isinstance(record, dict) else None
    if not isinstance(mark, dict):
        return payload
    for path in mark["values"]:
        parent, last = _parent(record, path)
        parent[last] = _unescape(parent[last])
    for path in sorted(mark["keys"], key=len, reverse=True):  # deepest first: paths stay valid
        parent, last = _parent(record, path)
        parent[_unescape(str(last))] = parent.pop(last)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


def _parent(record: Any, path: Path) -> tuple[Any, Any]:
    node = record
    for step in path[:-1]:
        node = node[step]
    return node, path[-1]


def _dotted(path: Path) -> str:
    return ".".join(_escape(str(p)) for p in path) or "(record)"


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
                await _merge(conn, run_id, rows)
            await advance(conn, run_id, window, cursor=next_cursor, records=len(rows))

    async def stage_rows(self, run_id: str, rows: Sequence[StagedRow]) -> None:
        """Stage records read outside any window (a document re-read after it changed)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await _merge(conn, run_id, rows)

    async def hashes_of(self, run_id: str, collection: str, ids: Sequence[str]) -> dict[str, str]:
        """source id → content hash of the named staged records (absent: not staged)."""
        rows = await self._pool.fetch(
            """SELECT source_id, content_hash FROM staged_records
               WHERE run_id = $1 AND collection = $2 AND source_id = ANY($3::text[])""",
            run_id,
            collection,
            list(ids),
        )
        return {r["source_id"]: r["content_hash"] for r in rows}

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
                yield row["source_id"], restore_nuls(row["payload"])

    async def live(
        self, run_id: str, collection: str, source_ids: Sequence[str]
    ) -> list[tuple[str, str]]:
        """(source id, payload JSON) of the named staged records still live at the source
        (the load's rule: a deletion at or after the staged version retires it)."""
        rows = await self._pool.fetch(
            """SELECT s.source_id, s.payload::text AS payload FROM staged_records s
               WHERE s.run_id = $1 AND s.collection = $2 AND s.source_id = ANY($3::text[])
                 AND NOT EXISTS (
                     SELECT 1 FROM source_deletions d
                     WHERE d.run_id = s.run_id AND d.collection = s.collection
                       AND d.source_id = s.source_id AND d.deleted_at >= s.updated_at)
               ORDER BY s.source_id""",
            run_id,
            collection,
            list(source_ids),
        )
        return [(r["source_id"], restore_nuls(r["payload"])) for r in rows]

    async def live_among(
        self, run_id: str, keys: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Which (collection, source id) of ``keys`` are staged and live in the run."""
        if not keys:
            return set()
        rows = await self._pool.fetch(
            """SELECT s.collection, s.source_id FROM staged_records s
               JOIN unnest($2::text[], $3::text[]) AS k (collection, source_id)
                 ON k.collection = s.collection AND k.source_id = s.source_id
               WHERE s.run_id = $1 AND NOT EXISTS (
                     SELECT 1 FROM source_deletions d
                     WHERE d.run_id = s.run_id AND d.collection = s.collection
                       AND d.source_id = s.source_id AND d.deleted_at >= s.updated_at)""",
            run_id,
            [c for c, _ in keys],
            [s for _, s in keys],
        )
        return {(r["collection"], r["source_id"]) for r in rows}

    async def for_load(
        self, run_id: str, collection: str, *, batch: int = 1000
    ) -> AsyncGenerator[LoadRow, None]:
        """A staged collection with its source deletions, in one streamed anti-join.

        The ordering rule: a deletion retires the staged version when ``deleted_at >=
        updated_at``. A record's ``updated_at`` is its last write, so a deletion at or
        after it came after the version staged (a tie goes to the deletion, the last
        thing a record undergoes: loading a deleted record is the harm to avoid). A
        version written after the deletion is a record restored under its id and loads.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor(
                """SELECT s.source_id, d.deleted_at,
                          CASE WHEN d.deleted_at IS NULL THEN s.payload::text END AS payload
                   FROM staged_records s
                   LEFT JOIN source_deletions d
                     ON d.run_id = s.run_id AND d.collection = s.collection
                    AND d.source_id = s.source_id AND d.deleted_at >= s.updated_at
                   WHERE s.run_id = $1 AND s.collection = $2 ORDER BY s.source_id""",
                run_id,
                collection,
                prefetch=batch,
            ):
                payload = row["payload"]
                yield LoadRow(
                    row["source_id"],
                    None if payload is None else restore_nuls(payload),
                    row["deleted_at"],
                )


async def _merge(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    run_id: str,
    rows: Sequence[StagedRow],
) -> None:
    """COPY ``rows`` into a temporary table, then merge them into staging in one statement."""
    await conn.execute(_INCOMING)
    await conn.copy_records_to_table(
        "incoming_records",
        records=[
            (r.collection, r.source_id, r.updated_at, r.payload, r.content_hash) for r in rows
        ],
        columns=["collection", "source_id", "updated_at", "payload", "content_hash"],
    )
    await conn.execute(_MERGE, run_id)
