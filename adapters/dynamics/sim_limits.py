"""Dataverse service protection limits as pure arithmetic (destinations.md §2.5).

Three independent measures per user: requests and combined execution time in a
sliding window, and concurrent requests. The windows are ``ratelimit.window``'s, the
ones the client's governor counts with, so both sides agree by construction. Time
here is *platform* seconds; the simulator scales the wall clock by ``time_scale``
before asking.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratelimit.window import SlidingWindow

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
class Caller:
    """Service protection state of one authenticated caller (a token's client id)."""

    requests: SlidingWindow
    execution: SlidingWindow
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not admitted: the 429's error code, message and platform wait."""

    code: str
    message: str
    wait: float


@dataclass(frozen=True, slots=True)
class ServiceProtection:
    """The three per-user measures of destinations.md §2.5, on platform time.

    ``execution_ms_per_operation`` is the floor charged per operation: the in-memory
    store answers in microseconds where Dataverse spends milliseconds in SQL, plug-ins
    and auditing, so without it a ``$batch`` of 1,000 writes would look free and the
    execution-time limit — the one a batching loader actually meets — would never bite.
    """

    requests_per_window: int
    execution_ms_per_window: int
    window_seconds: float
    max_concurrent: int
    execution_ms_per_operation: float

    def caller(self) -> Caller:
        return Caller(
            SlidingWindow(self.requests_per_window, self.window_seconds),
            SlidingWindow(self.execution_ms_per_window, self.window_seconds),
        )

    def admit(self, caller: Caller, now: float) -> Refusal | None:
        """Concurrency first (immediate), then execution time, then requests (recorded)."""
        if caller.in_flight >= self.max_concurrent:
            return Refusal(CONCURRENCY_CODE, concurrency_message(self.max_concurrent), 1.0)
        wait = caller.execution.wait(now, self.execution_ms_per_operation)
        if wait > 0:
            message = execution_message(self.execution_ms_per_window, self.window_seconds)
            return Refusal(EXECUTION_CODE, message, wait)
        wait = caller.requests.try_add(now)
        if wait > 0:
            message = requests_message(self.requests_per_window, self.window_seconds)
            return Refusal(REQUESTS_CODE, message, wait)
        return None

    def charge(self, caller: Caller, now: float, elapsed_ms: float, operations: int) -> None:
        """Record a finished request's execution time: measured, or the per-operation floor."""
        caller.execution.add(now, max(elapsed_ms, self.execution_ms_per_operation * operations))

    def remaining(self, caller: Caller, now: float) -> tuple[int, float]:
        """Requests and execution milliseconds left in the window (never negative)."""
        requests = self.requests_per_window - caller.requests.total(now)
        time_left = self.execution_ms_per_window - caller.execution.total(now)
        return max(0, int(requests)), max(0.0, time_left)


def time_remaining_header(milliseconds: float) -> str:
    """``x-ms-ratelimit-time-remaining-xrm-requests`` as live environments send it.

    Traces show ``1,200.00`` on a fresh 20-minute budget and ``1,199.46`` a few calls
    later: *seconds*, with a thousands separator and two decimals (not milliseconds).
    """
    return f"{milliseconds / 1000:,.2f}"
