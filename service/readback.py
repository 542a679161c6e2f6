"""Read written records back and compare them with what crmlift sent.

The destination answers in its own forms: Salesforce gives datetimes as
``2024-05-01T10:00:00.000+0000`` and multi-select picklists as ``a;b``, Dataverse
``…Z`` and ``1,2``; both answer numbers as floats and empty text as null. ``same``
compares in the platform's terms, so a difference it reports is a value the
destination really holds differently, never a formatting artefact.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.base import Destination
from service.expected import Expected


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """One sent field against the value the destination holds."""

    field: str
    sent: Any
    held: Any
    equal: bool


async def held(
    client: Destination, sobject: str, ids: Sequence[str], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Values the destination holds for ``fields`` of the records ``ids``, by id as given
    (the platform may answer another form of it: 18 characters for 15, other case); a
    record absent from the answer is gone. The clients chunk and govern the reads."""
    if not ids:
        return {}
    answer = await client.fetch(sobject, list(ids), list(fields))
    by_form: dict[str, dict[str, Any]] = {}
    for ident, values in answer.items():
        for form in _forms(ident):
            by_form.setdefault(form, values)
    found: dict[str, dict[str, Any]] = {}
    for ident in ids:
        match = next((f for f in _forms(ident) if f in by_form), None)
        if match is not None:
            found[ident] = by_form[match]
    return found


def check(
    expected: Expected, values: Mapping[str, Any], skip: Collection[str] = ()
) -> list[FieldCheck]:
    """Every field crmlift sends for ``expected`` against what the destination holds."""
    return [
        FieldCheck(name, sent, values.get(name), same(sent, values.get(name)))
        for name, sent in expected.fields.items()
        if name not in skip
    ]


def same(sent: Any, held: Any) -> bool:
    """Whether the destination holds ``sent`` (in its own form)."""
    if _empty(sent) or _empty(held):
        return _empty(sent) and _empty(held)
    if isinstance(sent, bool) or isinstance(held, bool):
        return _truth(sent) == _truth(held)
    if isinstance(sent, list | tuple) or isinstance(held, list | tuple):
        return _choices(sent) == _choices(held)
    if isinstance(sent, int | float) or isinstance(held, int | float):
        return _number(sent) is not None and _number(sent) == _number(held)
    a, b = str(sent), str(held)
    if a == b or _same_record_id(a, b):
        return True
    when_a, when_b = _instant(a), _instant(b)
    if when_a is None or when_b is None:
        return False
    if isinstance(when_a, datetime) and isinstance(when_b, datetime) and "." not in b:
        # Held without fractional seconds: the platform keeps datetimes to the second
        # (Dataverse: "Date and time ... seconds", milliseconds dropped).
        when_a = when_a.replace(microsecond=0)
    return when_a == when_b


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1": True, "0": False}.get(text)


def _choices(value: Any) -> frozenset[str]:
    """A multi-select value as a set: a list, or ``a;b`` (Salesforce), ``1,2`` (Dataverse)."""
    if isinstance(value, list | tuple):
        return frozenset(str(v).strip() for v in value)
    text = str(value)
    separator = ";" if ";" in text else ","
    return frozenset(part.strip() for part in text.split(separator) if part.strip())


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).normalize()
    except InvalidOperation:
        return None


def _instant(text: str) -> datetime | date | None:
    """A datetime as an instant (naive read as UTC), or a date; None for other text."""
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _same_record_id(a: str, b: str) -> bool:
    """A Salesforce id in its 15- and 18-character forms, or a GUID in other case."""
    if len(a) in (15, 18) and len(b) in (15, 18) and a.isalnum() and b.isalnum():
        return a[:15] == b[:15]
    return len(a) == len(b) == 36 and a.lower() == b.lower()


def _forms(ident: str) -> tuple[str, ...]:
    """The forms an id may come back in, most exact first."""
    forms = [ident, ident.lower()]
    if len(ident) in (15, 18) and ident.isalnum():
        forms.append(ident[:15])
    return tuple(forms)
