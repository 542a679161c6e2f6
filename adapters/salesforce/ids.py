"""Salesforce record ids: 15-character case-sensitive ids and their 18-character case-safe form.

The simulator mints real-shaped ids so that client code which slices key prefixes,
compares 15- and 18-character forms or lower-cases ids (as spreadsheets do) meets the
same ids it will meet in a real org.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The digits of an id's counter part, in Salesforce's order."""

CASE_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
"""The 32 characters a 5-bit uppercase mask maps to in the 3-character suffix."""

PREFIX_LENGTH = 3
"""Key prefix length: which object an id belongs to (destinations.md §6: 001 Account…)."""

_BODY_LENGTH = 12
_CHUNK = 5
_ALNUM = frozenset(BASE62)


def _suffix(id15: str) -> str:
    """The case-safe suffix: per 5-char chunk, bit i set when char i is an uppercase A-Z."""
    suffix = []
    for start in range(0, 15, _CHUNK):
        chunk = id15[start : start + _CHUNK]
        flags = sum(1 << i for i, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix.append(CASE_SAFE[flags])
    return "".join(suffix)


def to_18(id15: str) -> str:
    """The 18-character form of a 15-character id (an 18-character id comes back as given)."""
    if len(id15) == 18:
        return id15
    if len(id15) != 15 or not set(id15) <= _ALNUM:
        raise ValueError(f"not a 15-character Salesforce id: {id15!r}")
    return id15 + _suffix(id15)


def _restore_case(id18: str) -> str | None:
    """The 15-character id an 18-character id encodes, whatever case it arrived in."""
    body, suffix = id18[:15], id18[15:].upper()
    chars = []
    for chunk_index, flag_char in enumerate(suffix):
        flags = CASE_SAFE.find(flag_char)
        if flags < 0:
            return None
        for offset in range(_CHUNK):
            char = body[chunk_index * _CHUNK + offset]
            chars.append(char.upper() if flags & (1 << offset) else char.lower())
    return "".join(chars)


def normalize(raw: str) -> str | None:
    """The canonical 18-character id for a 15- or 18-character id, or None when malformed.

    An 18-character id is case-insensitive, as in Salesforce: its suffix says which
    letters are uppercase, so ``001a0000006vm9riac`` is the same record as
    ``001A0000006Vm9rIAC``.
    """
    if len(raw) not in (15, 18) or not set(raw) <= _ALNUM:
        return None
    if len(raw) == 15:
        return raw + _suffix(raw)
    restored = _restore_case(raw)
    if restored is None:
        return None
    return restored + _suffix(restored)


def key_prefix(record_id: str) -> str:
    """The three characters naming the object an id belongs to."""
    return record_id[:PREFIX_LENGTH]


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    if len(digits) > width:
        raise OverflowError("id counter exhausted")
    return "".join(reversed(digits)).rjust(width, "0")


@dataclass(slots=True)
class IdMint:
    """Hands out ids unique within one org: key prefix plus one org-wide counter."""

    _counter: int = field(default=0)

    def next(self, prefix: str) -> str:
        """A fresh 18-character id for an object with key prefix ``prefix``."""
        if len(prefix) != PREFIX_LENGTH or not set(prefix) <= _ALNUM:
            raise ValueError(f"bad key prefix: {prefix!r}")
        self._counter += 1
        return to_18(prefix + _base62(self._counter, _BODY_LENGTH))
