"""Extraction checkpoints: the windows of each collection and how far each was read."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import asyncpg

WindowKind = Literal["main", "catchup"]
NUL_CURSOR = "crmlift-nul:"
"""Prefix of a stored cursor that held a NUL (PostgreSQL text cannot): the rest is the
cursor with ``\\`` doubled and NUL written ``\\0``. A cursor that starts with the
prefix on its own is stored the same way, so reading back is never ambiguous."""


def store_cursor(cursor: str | None) -> str | None:
    """A source's opaque cursor as a text column can hold it."""
    if cursor is None or ("\x00" not in cursor and not cursor.startswith(NUL_CURSOR)):
        return cursor
    return NUL_CURSOR + cursor.replace("\\", "\\\\").replace("\x00", "\\0")


def load_cursor(stored: str | None) -> str | None:
    """The source's cursor exactly as it was handed out."""
    if stored is None or not stored.startswith(NUL_CURSOR):
        return stored
    text = stored.removeprefix(NUL_CURSOR)
    return re.sub(r"\\([\\0])", lambda m: "\x00" if m.group(1) == "0" else "\\", text)


@dataclass(frozen=True, slots=True)
class WindowCheckpoint:
    """One window of a collection and its read position.

    ``end`` is None for a catch-up window, which reads everything updated since
    the run's snapshot so that records changed mid-run are staged at their
    latest version.
    """

    collection: str
    kind: WindowKind
    start: datetime
    end: datetime | None
    expected: int | None
    cursor: str | None
    pages: int
    records: int
    done: bool


class Checkpoints:
    """Plan windows once per collection; read them back on resume."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def plan(self, run_id: str, windows: Sequence[WindowCheckpoint]) -> None:
        """Persist a collection's windows in one transaction, so a collection is
        either wholly planned or not planned at all."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO checkpoints
                       (run_id, collection, kind, window_start, window_end, expected,
                        cursor, pages, records, done)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT DO NOTHING""",
                [
                    (
                        run_id,
                        w.collection,
                        w.kind,
                        w.start,
                        w.end,
                        w.expected,
                        store_cursor(w.cursor),
                        w.pages,
                        w.records,
                        w.done,
                    )
                    for w in windows
                ],
            )

    async def windows(self, run_id: str, kind: WindowKind | None = None) -> list[WindowCheckpoint]:
        """Every window of the run (of one kind if given), oldest first."""
        rows = await self._pool.fetch(
            """SELECT * FROM checkpoints WHERE run_id = $1 AND ($2::text IS NULL OR kind = $2)
               ORDER BY collection, window_start""",
            run_id,
            kind,
        )
        return [
            WindowCheckpoint(
                collection=r["collection"],
                kind=r["kind"],
                start=r["window_start"],
                end=r["window_end"],
                expected=r["expected"],
                cursor=load_cursor(r["cursor"]),
                pages=r["pages"],
                records=r["records"],
                done=r["done"],
            )
            for r in rows
        ]

    async def restart(self, run_id: str, window: WindowCheckpoint) -> WindowCheckpoint:
        """Rewind a window to its start (its cursor was rejected); tallies start over."""
        await self._pool.execute(
            """UPDATE checkpoints SET cursor = NULL, pages = 0, records = 0, done = false,
                   updated_at = now()
               WHERE run_id = $1 AND collection = $2 AND kind = $3 AND window_start = $4""",
            run_id,
            window.collection,
            window.kind,
            window.start,
        )
        return replace(window, cursor=None, pages=0, records=0, done=False)


async def advance(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    run_id: str,
    window: WindowCheckpoint,
    *,
    cursor: str | None,
    records: int,
) -> None:
    """Move a window's cursor past a page; called inside the page's staging transaction."""
    await conn.execute(
        """UPDATE checkpoints
           SET cursor = $5, pages = pages + 1, records = records + $6,
               done = ($5::text IS NULL), updated_at = now()
           WHERE run_id = $1 AND collection = $2 AND kind = $3 AND window_start = $4""",
        run_id,
        window.collection,
        window.kind,
        window.start,
        store_cursor(cursor),
        records,
    )
