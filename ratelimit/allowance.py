"""Rolling allocations: calls or credits per period, counted on our side.

Salesforce allows an org so many API calls per rolling 24 hours, Zoho so many
credits, Freshsales so many calls per hour and per minute. Counting them
ourselves means we stop (or wait) before the platform refuses, instead of
learning about the limit from a refusal and burning calls on it. The platform's
own usage report, where it sends one, corrects our count: other tools share the
allocation and earlier runs used it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ratelimit.limits import Call
from ratelimit.profiles import QuotaProfile
from ratelimit.window import SlidingWindow

Measure = Callable[[Call], float]
DAY, HOUR, MINUTE = 86_400.0, 3_600.0, 60.0


def requests(call: Call) -> float:
    return call.requests


def credits(call: Call) -> float:
    return call.credits


@dataclass
class Allowance:
    """``limit`` units (measured from each call) per rolling ``period`` seconds (a ``Limit``)."""

    name: str
    limit: float
    period: float
    measure: Measure = requests
    resolution: float = 1.0
    """Calls within one such slice are counted together: a busy day stays small."""
    _window: SlidingWindow = field(init=False)

    def __post_init__(self) -> None:
        self._window = SlidingWindow(self.limit, self.period, self.resolution)

    def wait(self, now: float, call: Call) -> float:
        return self._window.wait(now, self.measure(call))

    def take(self, now: float, call: Call) -> None:
        self._window.add(now, self.measure(call))

    def hold(self, now: float, call: Call) -> None:
        self._window.hold(self.measure(call))

    def release(self, now: float, call: Call) -> None:
        self._window.release(now, self.measure(call))

    def used(self, now: float) -> float:
        return self._window.total(now)

    def observe(self, now: float, used: float) -> None:
        """The platform says ``used`` units of the period are spent; count the ones we
        did not see (other tools, earlier runs) as spent now — the cautious reading."""
        unseen = used - self._window.total(now)
        if unseen > 0:
            self._window.add(now, unseen)


def allowances(profile: QuotaProfile, utilization: float | None = None) -> list[Allowance]:
    """The rolling allocations a profile states, on the wall clock of its ``time_scale``.

    ``utilization`` is the share of each one to count up to: the profile's own for a
    client keeping under them, 1 for a server enforcing them.
    """
    share = profile.utilization if utilization is None else utilization
    found = []
    for name, limit, period, resolution in (
        ("daily API requests", profile.daily_requests, DAY, 1.0),
        ("requests per hour", profile.requests_per_hour, HOUR, 1.0),
        ("requests per minute", profile.requests_per_minute, MINUTE, 0.1),
    ):
        if limit is not None:
            found.append(
                Allowance(
                    name,
                    _share(limit, share),
                    profile.wall(period),
                    resolution=profile.wall(resolution),
                )
            )
    if profile.daily_credits is not None:
        found.append(
            Allowance(
                "daily credits",
                _share(profile.daily_credits, share),
                profile.wall(DAY),
                credits,
                resolution=profile.wall(1.0),
            )
        )
    return found


def _share(limit: int, utilization: float) -> float:
    return max(1.0, math.floor(limit * utilization))
