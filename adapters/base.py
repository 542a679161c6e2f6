"""Contracts shared by every source and destination adapter."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import orjson

T = TypeVar("T")

Record = dict[str, Any]
"""A source record exactly as the platform sent it, unknown keys included."""


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Serialise a record the same way every time, whatever its key order."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def digest(payload: bytes) -> str:
    """Hex sha256 of bytes already serialised by ``canonical_json``."""
    return hashlib.sha256(payload).hexdigest()


def content_hash(record: Mapping[str, Any]) -> str:
    """The sha256 of a record's canonical JSON: equal hashes mean equal content."""
    return digest(canonical_json(record))


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open ``[start, end)`` range of ``updated_at`` in one collection.

    ``end`` None reads to the newest record (the catch-up window).
    """

    collection: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a window and the cursor that reads the next one (None: done)."""

    records: list[Record]
    next_cursor: str | None


class Source(Protocol):
    """A system we extract from, read as windows of pages."""

    platform: str

    async def first_updated_at(self, collection: str) -> datetime | None:
        """``updated_at`` of the oldest record; None for an empty collection."""
        ...

    async def count(self, collection: str, start: datetime, end: datetime | None) -> int:
        """Exact number of records updated in ``[start, end)``."""
        ...

    def pages(self, window: Window, cursor: str | None) -> AsyncIterator[Page]:
        """Pages of ``window`` from ``cursor`` (None: the window's start).

        Raises CursorRejected when a saved cursor is no longer accepted.
        """
        ...

    def deletions(self, since: datetime) -> AsyncIterator[list[Record]]:
        """The source's deletion feed since ``since``, page by page."""
        ...

    async def download(
        self, document_id: str, sink: Callable[[AsyncIterator[bytes]], Awaitable[T]]
    ) -> T:
        """Stream a document's bytes into ``sink``; raises NotFound if it has none."""
        ...


class CursorRejected(Exception):
    """The source no longer accepts a saved cursor; the window restarts from its start."""


class NotFound(Exception):
    """The source has no such record or content."""
