"""Retries as a declared, bounded policy: full-jitter backoff that honours Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: integer, decimal or HTTP date.

    Returns None when the header is absent or unreadable, so the caller falls
    back to its own backoff instead of guessing.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one idempotent call."""

    attempts: int = 8
    """Total tries, the first one included."""
    base: float = 0.25
    """Backoff ceiling of the first retry, in seconds; it doubles each retry."""
    cap: float = 30.0
    """Largest backoff ceiling, in seconds."""
    max_retry_after: float = 300.0
    """A server asking for a longer wait than this is treated as unavailable."""

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = first retry).

        A server's Retry-After is obeyed exactly (plus a little jitter so many
        workers do not return in the same instant); otherwise full jitter over
        an exponentially growing ceiling.
        """
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + rng.uniform(0.0, 0.05)
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return rng.uniform(0.0, ceiling)
