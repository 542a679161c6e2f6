"""Sliding-window limits: the pure arithmetic and the per-principal budget built on it.

Dataverse counts each user's requests and execution time over a sliding
five-minute window (destinations.md §2.5), Salesforce an org's calls over a
rolling 24 hours (§1.6), Freshsales an account's calls per hour and per minute
(§4). The simulators enforce those windows with :class:`SlidingWindow`; the
clients stay under them with limits made of the same windows, so both sides
agree by construction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ratelimit.limits import Call

_EPSILON = 1e-9


@dataclass(slots=True)
class SlidingWindow:
    """Amounts recorded at instants; only those newer than ``window`` seconds count.

    An event log, so ``wait`` is the precise moment enough old amounts fall out —
    what a server should put in ``Retry-After``. ``resolution`` > 0 merges the
    amounts of one such slice of time into one event (a day of calls stays
    small) and makes the window that much more conservative.

    A client may also ``hold`` amounts — requests in flight — which count at once
    but start their window only when released (``release``): a server counts a request
    somewhere between its sending and its answer, so the client's count of it must
    last until a full window after the answer, or the client reuses the room
    before the server has freed it.
    """

    limit: float
    window: float
    resolution: float = 0.0
    _events: deque[list[float]] = field(default_factory=deque)
    _total: float = 0.0
    _held: float = 0.0

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.window <= 0 or self.resolution < 0:
            raise ValueError("limit and window must be positive")

    def _expire(self, now: float) -> None:
        # The epsilon: a caller who waited exactly the wait we named must get through.
        while self._events and self._events[0][0] <= now - self.window + _EPSILON:
            self._total -= self._events.popleft()[1]
        if not self._events:
            self._total = 0.0

    def total(self, now: float) -> float:
        """The sum recorded in ``(now - window, now]``, and what is held."""
        self._expire(now)
        return self._total + self._held

    @property
    def held(self) -> float:
        """What is held (in flight), not yet released."""
        return self._held

    def hold(self, amount: float = 1.0) -> None:
        """Count ``amount`` from now until a window after its ``release``."""
        self._held += amount

    def release(self, now: float, amount: float = 1.0) -> None:
        """``amount`` held is done: it counts for one window from ``now``."""
        self._held = max(0.0, self._held - amount)
        self.add(now, amount)

    def add(self, now: float, amount: float = 1.0) -> None:
        self._expire(now)
        moment = now
        if self.resolution:
            # The slice's end: an amount leaves the window no earlier than it really may.
            moment = math.ceil(now / self.resolution) * self.resolution
        if self._events and self._events[-1][0] == moment:
            self._events[-1][1] += amount
        else:
            self._events.append([moment, amount])
        self._total += amount

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until ``total + amount <= limit``; 0 if that holds now.

        An amount larger than the whole limit fits only into an empty window. When
        only the release of held amounts would make room, the wait is a whole window
        (they count that long once released): a lower bound, to ask again after.
        """
        total = self.total(now)
        excess = total + min(amount, self.limit) - self.limit
        if excess <= _EPSILON:
            return 0.0
        for moment, recorded in self._events:
            excess -= recorded
            if excess <= _EPSILON:
                return max(0.0, moment + self.window - now)
        if self._held > 0:
            return self.window
        return max(0.0, self._events[-1][0] + self.window - now) if self._events else 0.0

    def try_add(self, now: float, amount: float = 1.0) -> float:
        """Record ``amount`` and return 0 if it fits, else return the wait and record nothing."""
        wait = self.wait(now, amount)
        if wait == 0:
            self.add(now, amount)
        return wait


@dataclass(frozen=True, slots=True)
class WindowLimits:
    """A principal's allowance per sliding window (Dataverse service protection)."""

    window_seconds: float
    requests: float
    """Requests per window."""
    execution_ms: float
    """Server execution time per window, in the platform's milliseconds."""
    execution_ms_per_operation: float
    """First estimate of the server time one operation costs; calibrated from the
    platform's remaining-time header as answers arrive."""
    utilization: float = 1.0
    """Share of each allowance we aim for; below 1 leaves the rest to other tools
    that call as the same principal. (Requests in flight need no share of their own:
    the budget holds them until their answer, see :meth:`WindowBudget.hold`.)"""


class WindowBudget:
    """Keeps one principal under its requests and execution-time windows (a ``Limit``).

    Execution time cannot be known before the server has spent it, so operations
    are admitted against an estimate per operation, and the estimate follows what
    the server reports it charged (``completed``).
    """

    name = "requests and execution time per window"

    def __init__(self, limits: WindowLimits) -> None:
        if min(limits.window_seconds, limits.requests, limits.execution_ms) <= 0:
            raise ValueError("window limits must be positive")
        self.limits = limits
        window = limits.window_seconds
        self._requests = SlidingWindow(limits.requests * limits.utilization, window)
        self._operations = SlidingWindow(1.0, window)
        self._completed = SlidingWindow(math.inf, window)
        self.ms_per_operation = limits.execution_ms_per_operation
        self._set_operation_limit()

    def _set_operation_limit(self) -> None:
        budget = self.limits.execution_ms * self.limits.utilization
        self._operations.limit = max(1.0, budget / max(self.ms_per_operation, 1e-6))

    def wait(self, now: float, call: Call) -> float:
        return max(
            self._requests.wait(now, call.requests), self._operations.wait(now, call.operations)
        )

    def take(self, now: float, call: Call) -> None:
        self._requests.add(now, call.requests)
        self._operations.add(now, call.operations)

    def hold(self, now: float, call: Call) -> None:
        self._requests.hold(call.requests)
        self._operations.hold(call.operations)

    def release(self, now: float, call: Call) -> None:
        self._requests.release(now, call.requests)
        self._operations.release(now, call.operations)

    def completed(self, now: float, operations: int, remaining_ms: float | None) -> None:
        """A request's answer arrived; ``remaining_ms`` is the server's count of the
        window's execution time left (None when it did not say)."""
        self._completed.add(now, operations)
        if remaining_ms is None:
            return
        done = self._completed.total(now)
        used = self.limits.execution_ms - remaining_ms
        if done >= 1 and used > 0:
            self.ms_per_operation = 0.7 * self.ms_per_operation + 0.3 * used / done
            self._set_operation_limit()

    @property
    def operations_per_window(self) -> float:
        """Operations the execution budget allows per window at the current estimate."""
        return self._operations.limit
