"""A platform's quota enforced server-side, per principal, from its quota profile.

The simulators refuse what the platform would refuse with the very limits the
client governor keeps under (``ratelimit.governor``), built from the same
profile by the same functions: rolling allowances per day, hour and minute
(Salesforce, Zoho, Freshsales), a sliding window of requests and one of
execution time (Dataverse), and a token bucket where the platform refuses
beyond a rate (``QuotaProfile.rate_enforced``; elsewhere the rate is only the
client's pace). A server enforces the whole of each limit — a profile's
``utilization`` is the client's share — and counts a request the moment it
arrives.

Everything runs on the wall clock of the profile's ``time_scale``: an hour of a
profile scaled by 180 passes in 20 seconds, and the wait a refusal names is in
wall seconds, what a ``Retry-After`` header carries. Pure: the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ratelimit.allowance import Allowance, allowances
from ratelimit.bucket import Pace, TokenBucket
from ratelimit.governor import window_limits
from ratelimit.limits import Call, Limit
from ratelimit.profiles import QuotaProfile
from ratelimit.window import SlidingWindow

ONE_REQUEST = Call()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused, and when it would fit."""

    limit: str
    """The limit that is spent, as an operator reads it: ``requests per hour``."""
    retry_after: float
    """Wall seconds until the request would fit, if nothing else is admitted meanwhile."""


@dataclass(slots=True)
class ExecutionTime:
    """Server execution time per sliding window (Dataverse), as a ``Limit``.

    What a request costs is known only once it has run, so it is charged
    afterwards (``charge``); a request is admitted while the window has a
    millisecond left. The window may thus run over briefly, as Dataverse's does
    (destinations.md §2.5), by what the requests admitted last go on to cost.
    """

    window: SlidingWindow
    name: str = "execution time per window"

    def wait(self, now: float, call: Call) -> float:
        return self.window.wait(now, 1.0)

    def take(self, now: float, call: Call) -> None:
        """Nothing yet: the time is charged once the request has run."""

    def hold(self, now: float, call: Call) -> None:
        """Nothing yet: the time is charged once the request has run."""

    def release(self, now: float, call: Call) -> None:
        """Nothing: see :meth:`charge`."""

    def charge(self, now: float, milliseconds: float) -> None:
        self.window.add(now, milliseconds)

    def remaining(self, now: float) -> float:
        """Milliseconds left in the window (never negative)."""
        return max(0.0, self.window.limit - self.window.total(now))


@dataclass(slots=True)
class Principal:
    """The limits of one principal (a user, an org, an account), and what it was told."""

    limits: list[Limit]
    execution: ExecutionTime | None
    admitted: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def server_limits(profile: QuotaProfile) -> tuple[list[Limit], ExecutionTime | None]:
    """Every limit the platform sets on one principal, at full size, on the wall clock."""
    limits: list[Limit] = []
    if profile.rate_enforced:
        bucket = TokenBucket(profile.rate * profile.time_scale, profile.burst)
        limits.append(Pace(bucket))
    execution = None
    windows = window_limits(profile, utilization=1.0)
    if windows is not None:
        requests = Allowance(
            "requests per window", windows.requests, windows.window_seconds, resolution=0.0
        )
        limits.append(requests)
        execution = ExecutionTime(SlidingWindow(windows.execution_ms, windows.window_seconds))
        limits.append(execution)
    limits.extend(allowances(profile, utilization=1.0))
    return limits, execution


class QuotaEnforcer:
    """Admits or refuses each request of each principal as the platform would."""

    def __init__(self, profile: QuotaProfile, clock: Callable[[], float] = time.monotonic) -> None:
        self.profile = profile
        self._clock = clock
        self.principals: dict[str, Principal] = {}

    def principal(self, name: str) -> Principal:
        found = self.principals.get(name)
        if found is None:
            limits, execution = server_limits(self.profile)
            found = self.principals[name] = Principal(limits, execution)
        return found

    def admit(self, principal: str, call: Call = ONE_REQUEST) -> Refusal | None:
        """Count ``call`` and return None if every limit has room for it; else count
        nothing and say which limit is spent and how long until the call would fit."""
        state = self.principal(principal)
        now = self._clock()
        wait, limit = 0.0, ""
        for each in state.limits:
            needed = each.wait(now, call)
            if needed > wait:
                wait, limit = needed, each.name
        if wait > 0:
            state.refused[limit] = state.refused.get(limit, 0) + 1
            return Refusal(limit, wait)
        for each in state.limits:
            each.take(now, call)
        state.admitted += 1
        return None

    def charge(self, principal: str, execution_ms: float) -> None:
        """A request of ``principal`` has run and cost the server ``execution_ms``
        platform milliseconds (counted where the profile sets an execution budget)."""
        state = self.principal(principal)
        if state.execution is not None:
            state.execution.charge(self._clock(), execution_ms)

    def remaining_execution_ms(self, principal: str) -> float | None:
        """Execution milliseconds left in ``principal``'s window; None without one."""
        state = self.principal(principal)
        if state.execution is None:
            return None
        return state.execution.remaining(self._clock())

    def used(self, principal: str) -> dict[str, float]:
        """What each rolling allowance of ``principal`` has counted, by name."""
        state = self.principal(principal)
        now = self._clock()
        return {each.name: each.used(now) for each in state.limits if isinstance(each, Allowance)}
