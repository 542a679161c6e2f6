"""Dataverse service protection limits as pure arithmetic (destinations.md §2.5).

Three independent measures per user: requests and combined execution time in a
sliding window, and concurrent requests. Time here is *platform* seconds; the
simulator scales the wall clock by ``time_scale`` before asking.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

REQUESTS_CODE = "0x80072322"
EXECUTION_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"


def requests_message(limit: int, window: float) -> str:
    return (
        f"Number of requests exceeded the limit of {limit} over time window of {window:g} seconds."
    )


def execution_message(limit_ms: int, window: float) -> str:
    return (
        f"Combined execution time of incoming requests exceeded limit of {limit_ms:,} "
        f"milliseconds over time window of {window:g} seconds. Decrease number of concurrent "
        "requests or reduce the duration of requests and try again later."
    )


def concurrency_message(limit: int) -> str:
    return f"Number of concurrent requests exceeded the limit of {limit}."


@dataclass(slots=True)
class SlidingWindow:
    """Amounts recorded at instants; only those newer than ``window`` seconds count.

    Exact (an event log, not buckets), so ``wait`` is the precise moment enough old
    amounts fall out — what a server should put in ``Retry-After``.
    """

    limit: float
    window: float
    _events: deque[tuple[float, float]] = field(default_factory=deque)
    _total: float = 0.0

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.window <= 0:
            raise ValueError("limit and window must be positive")

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window:
            self._total -= self._events.popleft()[1]
        if not self._events:
            self._total = 0.0

    def total(self, now: float) -> float:
        """The sum recorded in ``(now - window, now]``."""
        self._expire(now)
        return self._total

    def add(self, now: float, amount: float = 1.0) -> None:
        self._expire(now)
        self._events.append((now, amount))
        self._total += amount

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until ``total + amount <= limit``; 0 if that holds now."""
        excess = self.total(now) + amount - self.limit
        if excess <= 0:
            return 0.0
        if amount > self.limit:
            return self.window
        for moment, recorded in self._events:
            excess -= recorded
            if excess <= 0:
                return moment + self.window - now
        return self.window

    def try_add(self, now: float, amount: float = 1.0) -> float:
        """Record ``amount`` and return 0 if it fits, else return the wait and record nothing."""
        wait = self.wait(now, amount)
        if wait == 0:
            self.add(now, amount)
        return wait
