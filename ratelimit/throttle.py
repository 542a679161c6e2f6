"""Whose doing a throttle is: our own pace, or the platform's hiccup.

A 429 answers two different situations. When we are too fast, every caller should
stop for the ``Retry-After`` and fewer calls should be in flight. When the platform
refused one call for reasons of its own (another client on the same tenant, a busy
node), honouring ``Retry-After`` for that call is enough: cutting concurrency on
each such answer starved the reader (issue 11: 5% of them took an extraction at a
20 req/s limit down to 5.4 req/s with one call in flight).

A throttle is ours when any of these holds:

* the platform says so (its rate headers report nothing left);
* several throttles came close together: at least ``close_together`` of them, and
  at least ``share`` of our calls, within the last ``horizon``;
* our own calls have nearly drained the platform's bucket: a shadow of its published
  bucket (rate and burst), fed only with what we admitted, holds less than
  ``near_share`` of its burst.

A platform whose throttles count limits we do not model as one bucket (Dataverse's
per-user windows, Zoho's credits) gives no ``rate``: every throttle of it is ours,
which is what their docs say a 429 means.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from ratelimit.bucket import TokenBucket


class Verdict(Enum):
    """What a throttle means for the rest of the run."""

    TOO_FAST = "too_fast"
    """We pushed too hard: pause every caller and cut concurrency."""
    HICCUP = "hiccup"
    """The platform refused one call for its own reasons: that call waits, no more."""


@dataclass(slots=True)
class ThrottleJudge:
    """Tells "we are too fast" from "the platform hiccupped", on wall seconds."""

    rate: float | None
    """The platform's enforced rate per wall second; None when it enforces none we
    can model, and every throttle is then ours."""
    burst: float = 1.0
    """The platform's enforced burst."""
    horizon: float = 1.0
    """Wall seconds over which throttles count as close together."""
    close_together: int = 3
    """Throttles within ``horizon`` that make a pattern rather than a hiccup..."""
    share: float = 0.25
    """...when they are also at least this share of the calls we sent in it."""
    near_share: float = 0.1
    """Share of the platform's burst left, by our own count, below which we are at
    its limit."""
    _shadow: TokenBucket | None = field(init=False, default=None)
    _calls: deque[float] = field(init=False, default_factory=deque)
    _throttles: deque[float] = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        if self.rate is not None:
            self._shadow = TokenBucket(self.rate, self.burst)

    def admitted(self, now: float, cost: float = 1.0) -> None:
        """We sent a call at ``now``: the platform's bucket spends it too."""
        self._calls.append(now)
        if self._shadow is not None and (left := self._shadow.available(now)) > 0:
            # Past empty the platform refuses: the shadow just stays drained.
            self._shadow.try_take(now, min(cost, left))
        self._forget(now)

    def judge(self, now: float, *, platform_says_ours: bool = False) -> Verdict:
        """Count a throttle answered at ``now`` and say whose doing it is."""
        self._throttles.append(now)
        self._forget(now)
        if self._shadow is None or platform_says_ours:
            return Verdict.TOO_FAST
        if self._bunched() or self._near_limit(now):
            return Verdict.TOO_FAST
        return Verdict.HICCUP

    def _bunched(self) -> bool:
        throttles = len(self._throttles)
        return throttles >= self.close_together and throttles >= self.share * len(self._calls)

    def _near_limit(self, now: float) -> bool:
        assert self._shadow is not None
        return self._shadow.available(now) < self.near_share * self.burst

    def _forget(self, now: float) -> None:
        for times in (self._calls, self._throttles):
            while times and times[0] < now - self.horizon:
                times.popleft()
