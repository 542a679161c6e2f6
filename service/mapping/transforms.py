"""Platform-neutral value transforms shared by every mapping module.

Each function is pure: it reads only its arguments (never the clock or a file)
and either returns the converted value or raises ``ValueError`` saying why the
value does not convert, so the caller can decide between a note and a rejection.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from html.parser import HTMLParser

KEPT_CONTROLS = frozenset("\t\n\r")
"""Control characters that are layout, not noise: kept in text."""

_REMOVED_CATEGORIES = frozenset({"Cc", "Cs"})
_REMOVED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
"""Exactly the code points of ``_REMOVED_CATEGORIES`` but tab and newlines, as one
regex: the per-character category lookup was the transform's hottest loop."""
"""Control characters and lone surrogates: invisible, and lone surrogates cannot be
encoded as UTF-8, so a destination would reject the whole record."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CENT = Decimal("0.01")

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off"})
"""Spellings of a boolean that exports and spreadsheets commonly produce."""


# --- text ------------------------------------------------------------------------------


def clean_text(value: str) -> tuple[str, int]:
    """``value`` without control characters other than tab and newlines.

    Emoji, RTL text and every other printable code point are kept. Returns the
    cleaned text and how many characters were removed, so callers can note it.
    """
    return _REMOVED.subn("", value)


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: how Java-based platforms count field lengths."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def truncate(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` UTF-16 code units.

    Never splits a surrogate pair, and drops a trailing zero-width joiner so a cut
    emoji sequence does not leave half a glyph.
    """
    used = 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return text[:index].rstrip("\u200d")
    return text


def humanize(code: str) -> str:
    """``"closed_won"`` → ``"Closed Won"``: a readable label for an unmapped code."""
    words = re.split(r"[_\s]+", code.strip())
    return " ".join(w[:1].upper() + w[1:] for w in words if w)


def split_name(full: str) -> tuple[str, str]:
    """(first, last) from a full name: the first word, then the rest.

    The rest keeps particles together ("van der Berg", "Ó Súilleabháin"); a single
    word is a last name, because that is the part CRMs require.
    """
    words = full.split()
    if len(words) < 2:
        return "", " ".join(words)
    return words[0], " ".join(words[1:])


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, one line per block element."""

    BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    )
    HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self, image: Callable[[str], str | None] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.image = image
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "img" and self.image is not None:
            line = self.image(dict(attrs).get("src") or "")
            if line:
                self.parts.append(f"\n{line}\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(markup: str, image: Callable[[str], str | None] | None = None) -> str:
    """The readable text of an HTML fragment: tags dropped, entities decoded, blocks as lines.

    ``image`` turns an ``<img src>`` into a line of text (None drops it), so an
    inline image survives as a reference instead of vanishing.
    """
    extractor = _TextExtractor(image)
    extractor.feed(markup)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def website(domain: str) -> str:
    """A URL for a bare domain (``acme.com`` → ``https://acme.com``); URLs pass unchanged."""
    domain = domain.strip()
    return domain if _URL_SCHEME.match(domain) else f"https://{domain}"


def is_email(value: str) -> bool:
    """Whether ``value`` has the shape of one address (local@domain.tld), nothing more."""
    return _EMAIL.fullmatch(value) is not None


def email_key(value: object) -> str | None:
    """The matching form of an email address: trimmed and lowercased; None when blank."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    return key or None


# --- dates and times -------------------------------------------------------------------


def parse_date(value: object) -> date:
    """A calendar date from ``YYYY-MM-DD``; anything else (``31/02/2024``) is a ValueError."""
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        return date.fromisoformat(value.strip())
    raise ValueError(f"{value!r} is not a YYYY-MM-DD date")


def parse_datetime(value: object) -> datetime:
    """An aware UTC datetime from ISO-8601; a timestamp without offset is read as UTC.

    The source contracts promise UTC, so a missing offset is an omission, not a
    different zone.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp")
    text = value.strip()
    if not _DATE.match(text) or len(text) <= 10:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_date(day: date) -> str:
    """``YYYY-MM-DD``."""
    return day.isoformat()


def iso_datetime(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset, to the millisecond CRMs store."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# --- numbers ---------------------------------------------------------------------------


def parse_decimal(value: object) -> Decimal:
    """An exact decimal from a decimal string (``"12500.00"``), a JSON number or a Decimal.

    Currency symbols, thousands separators and words are refused rather than
    guessed at: ``"$12,500 USD"`` is a ValueError.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return Decimal(repr(value))
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return Decimal(value.strip())
    raise ValueError(f"{value!r} is not a number")


def quantize_money(amount: Decimal) -> Decimal:
    """``amount`` to the cent, rounding half away from zero as invoices do."""
    try:
        return amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"{amount} has too many digits to hold to the cent") from exc


def money(value: object) -> float:
    """A money amount as the float a JSON API wants, exact to the cent.

    The float is produced from the quantized Decimal and checked to read back as
    the same Decimal, so ``"12500.00"`` arrives as exactly 12500.0 and an amount
    with more significant digits than a float holds is a ValueError, never a
    silently shifted cent.
    """
    amount = quantize_money(parse_decimal(value))
    as_float = float(amount)
    if quantize_money(Decimal(repr(as_float))) != amount:
        raise ValueError(f"{value!r} has more significant digits than a float keeps exactly")
    return as_float


def parse_number(value: object) -> int | float:
    """A number from a JSON number or a plain decimal string; integers stay integers."""
    amount = parse_decimal(value)
    if amount == amount.to_integral_value() and "." not in str(value) and "e" not in str(value):
        return int(amount)
    return float(amount)


def parse_bool(value: object) -> bool:
    """A boolean from JSON true/false, 0/1, or a common spelling (``"yes"``, ``"off"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{value!r} is not a boolean")
