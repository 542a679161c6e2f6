"""The mapping contract: a staged record in, destination payloads or a rejection out.

Transforms are pure. A lookup to another migrated record is a ``Ref`` — the
source record it points to — which the loader resolves through the id map when
it writes, so a transform never does I/O and never needs load order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JsonValue = str | int | float | bool | None | list[str]


@dataclass(frozen=True, slots=True)
class Ref:
    """A lookup to the destination record made from source ``collection``/``source_id``.

    ``object`` names the destination object when one source collection feeds
    several (intake submissions → Lead or Case_Matter__c).
    """

    collection: str
    source_id: str
    object: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """One destination record, keyed by its external id so every write is an upsert."""

    object: str
    """Destination object API name, e.g. ``Contact``."""
    external_id: str
    """Value of the external-id field (``Source_System_ID__c``)."""
    fields: Mapping[str, JsonValue]
    """Destination field → value, already in the destination's types."""
    refs: Mapping[str, Ref] = field(default_factory=dict)
    """Lookup field → the source record it points to; resolved at load time."""
    deferred_refs: Mapping[str, Ref] = field(default_factory=dict)
    """Lookups set in a second pass, after every record of the wave exists
    (self-references such as Account.ParentId)."""
    file: FileRef | None = None
    """Content to upload with this record (ContentVersion)."""
    notes: tuple[str, ...] = ()
    """Reviewable facts about the transform (a value mapped to a fallback, a flag set)."""


@dataclass(frozen=True, slots=True)
class FileRef:
    """Document content in the blob store, to upload with its payload."""

    sha256: str
    size_bytes: int
    filename: str
    mime_type: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a source record does not become a destination record."""

    outcome: Literal["skipped", "failed"]
    """``skipped``: by design (metadata, out of scope); ``failed``: bad data."""
    code: str
    """Machine-readable reason, e.g. ``file_too_large``, ``no_destination_object``."""
    reason: str
    """What an operator reads: names the field and the value where it helps."""


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Everything a transform may know besides the record itself. Built once per run."""

    owners: Mapping[str, str]
    """BackDocket user id → destination user id (fallbacks already applied)."""
    fallback_owner: str
    """Destination user id for records whose owner did not resolve."""
    custom_fields: Mapping[str, tuple[Mapping[str, Any], ...]]
    """BackDocket entity (``contacts``…) → its custom field definitions."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Pair-specific settings from the plan (file size limit, intake routing…)."""


TransformResult = list[Payload] | Rejection
