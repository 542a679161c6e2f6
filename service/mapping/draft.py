"""The record builder every pair's mapping shares: fields, lookups and notes.

A pair subclasses ``Draft`` for what is platform-specific (picklists or option
sets, how a lookup and an owner are written, how the payload is keyed); the
text, date, timestamp and owner rules are the same everywhere, so they live here
once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.base import Record
from service.mapping import transforms as tx
from service.mapping.base import (
    FileRef,
    JsonValue,
    MappingContext,
    Payload,
    Ref,
    Rejection,
    TransformResult,
)

UNKNOWN_NAME = "(unknown)"
"""The last name of a person BackDocket knows no name for."""


def plain(value: Any) -> str | None:
    """The cleaned, stripped text of a scalar value; None when there is none."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return tx.clean_text(str(value))[0].strip() or None


def blank(value: Any) -> bool:
    """True when a value carries no text at all."""
    return plain(value) is None


@dataclass
class Draft:
    """One destination record being built: fields, lookups and the notes they produced."""

    object: str
    fields: dict[str, JsonValue] = field(default_factory=dict)
    refs: dict[str, Ref] = field(default_factory=dict)
    deferred_refs: dict[str, Ref] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def field_length(self, name: str) -> int | None:
        """The destination's maximum length of text field ``name``, if it has one."""
        return None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def put(self, name: str, value: JsonValue) -> None:
        """Set a field unless the value is empty."""
        if value is not None and value != "" and value != []:
            self.fields[name] = value

    def text(self, name: str, value: Any, limit: int | None = None) -> str | None:
        """Set a text field: control characters removed and the field length kept, with notes.

        Lengths are UTF-16 code units, as both Salesforce (Java) and Dataverse (.NET)
        count them; a character is at most two, so most text needs no exact count.
        """
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.note(f"{name}: {value!r} is not text; left empty")
            return None
        cleaned, removed = tx.clean_text(str(value))
        if removed:
            self.note(f"{name}: removed {removed} control character(s)")
        cleaned = cleaned.strip()
        limit = limit or self.field_length(name)
        if limit is not None and len(cleaned) * 2 > limit and tx.utf16_length(cleaned) > limit:
            self.note(f"{name}: truncated from {tx.utf16_length(cleaned)} to {limit} characters")
            cleaned = tx.truncate(cleaned, limit).rstrip()
        self.put(name, cleaned)
        return cleaned or None

    def date(self, name: str, value: Any) -> None:
        """Set a date field from ``YYYY-MM-DD``; an unparseable date is left empty with a note."""
        if value is None or value == "":
            return
        try:
            self.put(name, tx.iso_date(tx.parse_date(value)))
        except ValueError:
            self.note(f"{name}: {value!r} is not a valid date (YYYY-MM-DD); left empty")

    def timestamp(self, name: str, value: Any, *, as_date: bool = False) -> None:
        """Set a datetime field (or a date field from a timestamp's UTC day)."""
        if value is None or value == "":
            return
        try:
            moment = tx.parse_datetime(value)
        except ValueError:
            self.note(f"{name}: {value!r} is not a valid ISO-8601 timestamp; left empty")
            return
        self.put(name, tx.iso_date(moment.date()) if as_date else tx.iso_datetime(moment))

    def email(self, name: str, value: Any, limit: int) -> None:
        """Set an email field; a malformed or overlong address is dropped with a note."""
        if value is None or value == "":
            return
        email = value.strip() if isinstance(value, str) else ""
        if not tx.is_email(email):
            self.note(f"{name}: {value!r} is not a valid email address; left empty")
        elif len(email) > limit:
            self.note(f"{name}: {email!r} is longer than {limit} characters; left empty")
        else:
            self.put(name, email)

    def names(self, first: Any, last: Any, *, first_field: str, last_field: str) -> None:
        """A person's first and last name; the last name, which destinations require, is
        filled from the first name or ``(unknown)`` when BackDocket has none."""
        if plain(last) is not None:
            self.text(first_field, first)
            self.text(last_field, last)
        elif plain(first) is not None:
            self.note(f"{last_field}: missing in BackDocket; used the first name")
            self.text(last_field, first)
        else:
            self.note(f"{last_field}: missing in BackDocket; set to {UNKNOWN_NAME!r}")
            self.text(last_field, UNKNOWN_NAME)

    def required_text(self, name: str, value: Any, default: str) -> None:
        """A text field the destination requires: ``default``, with a note, when empty."""
        if self.text(name, value) is None:
            self.note(f"{name}: missing in BackDocket; set to {default!r}")
            self.put(name, default)

    def resolve_owner(self, ctx: MappingContext, user_id: Any, role: str, name: str) -> str:
        """The destination user for a BackDocket user id; the fallback owner, with a note
        naming field ``name``, when it does not resolve."""
        if blank(user_id):
            return ctx.fallback_owner
        resolved = ctx.owners.get(str(user_id))
        if resolved is None:
            self.note(f"{name}: {role} {user_id} is not a BackDocket user; fallback owner used")
            return ctx.fallback_owner
        return resolved

    def payload(
        self,
        external: str,
        *,
        fields: dict[str, JsonValue] | None = None,
        file: FileRef | None = None,
    ) -> Payload:
        """The finished record, keyed by its external id."""
        return Payload(
            object=self.object,
            external_id=external,
            fields=dict(self.fields if fields is None else fields),
            refs=dict(self.refs),
            deferred_refs=dict(self.deferred_refs),
            file=file,
            notes=tuple(self.notes),
        )


RecordTransform = Callable[[Record, MappingContext], TransformResult]
"""One collection's transform."""


def not_loaded(code: str, reason: str) -> RecordTransform:
    """A transform for a collection that becomes no destination record, by design."""

    def reject(record: Record, ctx: MappingContext) -> TransformResult:
        return Rejection("skipped", code, reason)

    return reject


def dispatch(
    transforms: Mapping[str, RecordTransform],
    collection: str,
    record: Record,
    ctx: MappingContext,
) -> TransformResult:
    """Run the collection's transform; a record without an id, or of a collection the
    pair does not map, is rejected with the reason instead."""
    handler = transforms.get(collection)
    if handler is None:
        return Rejection(
            "skipped", "no_destination_object", f"collection {collection!r} is not mapped"
        )
    if blank(record.get("id")):
        return Rejection("failed", "missing_id", f"{collection} record without an id")
    return handler(record, ctx)
