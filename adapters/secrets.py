"""Secrets that cannot be printed by accident."""

from __future__ import annotations

from dataclasses import dataclass, field

_KNOWN_VALUES: set[str] = set()


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential: its repr never shows the value; ``reveal()`` is the only way in."""

    _value: str = field(repr=False)
    source: str = "inline"
    """Where it came from (``env:NAME``), safe to print."""

    def __post_init__(self) -> None:
        if self._value:
            _KNOWN_VALUES.add(self._value)

    def reveal(self) -> str:
        """The value, for the one place that sends it on the wire."""
        return self._value

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


def redact(text: str) -> str:
    """Replace every known secret value in ``text`` with ``***``."""
    for value in _KNOWN_VALUES:
        if value in text:
            text = text.replace(value, "***")
    return text
