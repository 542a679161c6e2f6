"""Contracts shared by every source and destination adapter."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The destination's answer for one record of a write."""

    external_id: str
    destination_id: str | None
    created: bool | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.destination_id is not None


ColumnKind = str
"""``text``, ``textarea``, ``email``, ``phone``, ``url``, ``number``, ``currency``,
``percent``, ``boolean``, ``date``, ``datetime``, ``picklist``, ``multipicklist``,
``lookup``, ``id`` or ``other``."""


@dataclass(frozen=True, slots=True)
class Column:
    """What the destination's metadata says one field holds: the audit checks values
    against it and the mapping proposal matches source fields to it."""

    kind: ColumnKind
    length: int | None = None
    """Most characters a text kind holds (None: no limit given)."""
    choices: tuple[str, ...] = ()
    """A picklist's values as a write takes them (Salesforce: the API value; Dataverse:
    the option's Value, as text)."""
    labels: tuple[str, ...] = ()
    """Their display labels, in the same order."""
    restricted: bool = False
    """The platform refuses a value not among ``choices`` (Salesforce restricted
    picklists; Dataverse choices always)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the destination says an object accepts."""

    name: str
    fields: frozenset[str]
    required: frozenset[str]
    """Fields an insert must carry."""
    references: Mapping[str, tuple[str, ...]]
    """Lookup field → objects it may point to."""
    create_only: frozenset[str] = frozenset()
    """Fields an update must leave out: the platform takes them only on create
    (Salesforce describe: createable, not updateable; Dataverse: IsValidForUpdate false)."""
    settings: frozenset[str] = frozenset()
    """Org settings switched on for the object, named as the platform's metadata names
    them (Salesforce ``enableActivities``; Dataverse ``HasActivities``, ``HasNotes``,
    ``IsDocumentManagementEnabled``), checked against the plan's by the schema gate."""
    columns: Mapping[str, Column] = field(default_factory=dict)
    """Every field's kind, length and picklist values, from the metadata."""


@dataclass(frozen=True, slots=True)
class FileUpload:
    """One file record to create, its content streamed from the blob store."""

    fields: Mapping[str, Any]
    """The record's fields, the external id included."""
    content: Path
    filename: str
    mime_type: str
    size_bytes: int
    replaces: str | None = None
    """Destination id of the file record this content supersedes (the source changed the
    file after an earlier run): a new version of it, not a second file."""


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a destination says of a stored file's content: what reconcile compares with
    the blob the run uploaded."""

    size_bytes: int | None
    """The content's size in bytes; None where the platform does not say."""
    md5: str | None = None
    """Hex MD5 of the content where the platform keeps one (Salesforce
    ContentVersion.Checksum); None elsewhere."""


def pack(
    items: Sequence[T], size: Callable[[T], int], max_bytes: int, max_count: int
) -> list[list[T]]:
    """``items`` in order, in requests of at most ``max_count`` items and ``max_bytes`` of
    ``size``; an item larger than ``max_bytes`` travels alone. How clients batch files, and
    how the estimate counts those requests."""
    batches: list[list[T]] = []
    total = 0
    for item in items:
        if not batches or len(batches[-1]) >= max_count or total + size(item) > max_bytes:
            batches.append([])
            total = 0
        batches[-1].append(item)
        total += size(item)
    return batches


class JobLedger(Protocol):
    """Where a destination journals its asynchronous jobs before sending data."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        """The job exists on the platform; nothing is uploaded yet."""
        ...

    async def job_uploaded(self, job_id: str) -> None:
        """The job's data is uploaded and it is processing."""
        ...


class Destination(Protocol):
    """A CRM we load into. Every write is an upsert on ``external_id_field``."""

    platform: str
    external_id_field: str

    async def describe(self, sobject: str) -> ObjectInfo | None:
        """The object's fields, or None when the org does not have it."""
        ...

    async def users_by_email(self) -> dict[str, str]:
        """Active users' lowercased email → user id, for owner resolution."""
        ...

    async def upsert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], ledger: JobLedger
    ) -> list[WriteResult]:
        """Upsert records (each carries the external id field); one result per record."""
        ...

    async def recover(
        self, job_id: str, sobject: str, external_ids: Sequence[str]
    ) -> list[WriteResult] | None:
        """Results of a job journaled before a crash (``external_ids`` are the records it
        carried); None if it never ran (redo it). ``created`` None: the platform cannot
        tell whether the job created or updated the record."""
        ...

    async def fetch(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Current values of records by destination id (pre-images)."""
        ...

    async def find(self, sobject: str, external_ids: Sequence[str]) -> dict[str, str]:
        """Destination ids of records carrying these external ids."""
        ...

    async def existing_ids(self, sobject: str, ids: Sequence[str]) -> set[str]:
        """Which of these destination ids (as given) still exist: the id map's rows are
        checked before a rerun calls them unchanged, since someone may have deleted them.
        Ids of records the platform cannot look up cheaply count as existing."""
        ...

    async def delete(
        self, sobject: str, ids: Sequence[str], ledger: JobLedger | None = None
    ) -> list[WriteResult]:
        """Delete records by destination id; one result per id (``external_id`` holds the
        destination id). A record already gone is a success (``created`` None): deleting
        twice after a crash is harmless. With a ``ledger`` the platform may delete through
        asynchronous jobs, journaled there before their data is sent (``recover`` reads
        them back after a crash); without one it makes only synchronous calls."""
        ...

    async def modified(self, sobject: str, ids: Sequence[str]) -> dict[str, datetime]:
        """Last-modified time of each existing record by destination id (Salesforce
        LastModifiedDate, Dataverse modifiedon); ids that no longer exist are absent."""
        ...

    async def org_identity(self) -> str:
        """The org's own id (not its URL): a sandbox refresh or a reset keeps the URL
        and changes this, and every id the id map holds for the org with it."""
        ...

    async def upload_files(self, sobject: str, uploads: Sequence[FileUpload]) -> list[WriteResult]:
        """Create file records with their content; one result per upload.

        Not idempotent: after a lost answer the caller looks the files up by
        external id (``find``) before trying again.
        """
        ...

    async def file_facts(self, sobject: str, ids: Sequence[str]) -> dict[str, FileFacts]:
        """Size (and checksum, where kept) of file records' content by destination id (as
        given); an id that is absent is gone. Read-only: reconcile's file check."""
        ...


class CursorRejected(Exception):
    """The source no longer accepts a saved cursor; the window restarts from its start."""


class NotFound(Exception):
    """The source has no such record or content."""
