"""The governor every outbound call of one principal goes through.

It stacks the limits a platform sets, as its quota profile describes them:

* a token bucket paced to the platform's rate (at our share of it, with half its
  burst);
* a concurrency cap that halves on throttles and grows back while calls go
  through cleanly, with a sub-cap for heavy calls;
* sliding windows of requests and execution time (Dataverse);
* rolling allocations of calls or credits per day, hour or minute (Salesforce,
  Zoho, Freshsales), which stop the run — resumable — when the wait for them to
  free up would be longer than the profile allows;
* a shared pause that a throttle answer sets, so that no other request hammers
  the platform while it has asked us to wait — when the throttle is about our rate.
  One that is not (``ratelimit.throttle``: an isolated 429 while our own calls are
  well inside the platform's bucket) delays only the call it refused.

Admission is one FIFO queue per principal that never polls: every
limit is asked, the call sleeps exactly as long as the slowest says, and all of
them count it at once. A call counts as in flight until its answer arrives and
from then on as made at that moment — the latest the platform can have counted
it — so a window's room is never reused before the platform has freed it.

Counting is on ``clock`` (``time.monotonic``), sleeping on the loop: uvloop's
loop time ticks in cached whole milliseconds, and an answer stamped a millisecond
early would free its room in a window that much before the platform does.

The profile's ``time_scale`` runs all of it faster: every period is divided by
it and the rate multiplied, so a client and a time-scaled simulator given the
same profile count the same windows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from adapters.errors import QuotaExhausted
from ratelimit.allowance import DAY, HOUR, MINUTE, Allowance, allowances
from ratelimit.backoff import RetryPolicy
from ratelimit.bucket import Pace, TokenBucket
from ratelimit.concurrency import AdaptiveConcurrency
from ratelimit.limits import Call, Limit
from ratelimit.profiles import QuotaProfile
from ratelimit.throttle import ThrottleJudge, Verdict
from ratelimit.window import WindowBudget, WindowLimits

log = structlog.get_logger(__name__)

__all__ = ["DAY", "HOUR", "MINUTE", "Governor", "GovernorStats", "allowances", "window_limits"]
THROTTLE_STATUSES = frozenset({429, 503})
"""Answers that mean "too much": the adaptive concurrency cap halves on them, unless a
429 is judged a hiccup (a 503 is the platform's maintenance: everyone waits)."""


@dataclass(slots=True)
class GovernorStats:
    """What the governor let through, for progress lines and the bench."""

    requests: int = 0
    throttled: int = 0
    """Throttles that paused every caller."""
    hiccups: int = 0
    """429s judged not about our rate: only the refused call waited."""
    retries: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def observed_rate(self) -> float:
        """Requests per second between the first and the last request."""
        if self.first_at is None or self.last_at is None or self.last_at <= self.first_at:
            return 0.0
        return self.requests / (self.last_at - self.first_at)


def window_limits(profile: QuotaProfile, utilization: float | None = None) -> WindowLimits | None:
    """The profile's sliding windows (Dataverse), on the wall clock of its ``time_scale``;
    None when it states none. ``utilization`` as in :func:`allowances`."""
    p = profile
    if not (p.window_seconds and p.window_requests and p.window_execution_ms):
        return None
    return WindowLimits(
        p.wall(p.window_seconds),
        p.window_requests,
        p.window_execution_ms,
        p.execution_ms_per_operation,
        p.utilization if utilization is None else utilization,
    )


@dataclass
class Governor:
    """Paces, caps and pauses the calls of one principal on one platform."""

    profile: QuotaProfile
    stats: GovernorStats = field(default_factory=GovernorStats)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    """Seconds on a monotonic clock: what every limit counts with."""

    def __post_init__(self) -> None:
        p = self.profile
        # Half the platform's burst: the other half absorbs the jitter between
        # when we send and when the server counts, so pacing never trips it.
        capacity = max(1.0, p.burst / 2)
        self.pace = Pace(TokenBucket(p.effective_rate * p.time_scale, capacity))
        self.concurrency = AdaptiveConcurrency(p.concurrency, p.heavy_concurrency)
        self._resume_at = 0.0
        windows = window_limits(p)
        self.windows: WindowBudget | None = WindowBudget(windows) if windows else None
        self.allowances: list[Allowance] = allowances(p)
        self.limits: list[Limit] = [
            self.pace,
            *([self.windows] if self.windows else []),
            *self.allowances,
        ]
        self._admission = asyncio.Lock()
        self.judge = throttle_judge(p)

    @asynccontextmanager
    async def slot(
        self, cost: float = 1.0, operations: int = 1, credits: float = 0.0, heavy: bool = False
    ) -> AsyncIterator[None]:
        """Hold a place in flight and every allowance one request needs.

        ``cost`` is its weight against the rate, ``operations`` what it carries (a
        ``$batch`` many: its server time grows with them), ``credits`` what the
        platform charges for it, ``heavy`` whether it counts against the heavy cap.
        """
        call = Call(cost, operations, credits, heavy)
        async with self.concurrency.slot(heavy):
            await self._wait_out_pause()
            await self._admit(call)
            try:
                await self._wait_out_pause()
                now = self.clock()
                self.stats.requests += 1
                if self.stats.first_at is None:
                    self.stats.first_at = now
                self.stats.last_at = now
                yield
            finally:
                # Answered, failed or cancelled: the platform counted it by now at the
                # latest, so from now on it counts as made now.
                now = self.clock()
                for each in self.limits:
                    each.release(now, call)
        self.concurrency.succeeded()

    async def _admit(self, call: Call) -> None:
        async with self._admission:
            while True:
                now = self.clock()
                wait, limit = max(((lim.wait(now, call), lim) for lim in self.limits), key=_first)
                if wait <= 0:
                    for each in self.limits:
                        each.hold(now, call)
                    self.judge.admitted(now, call.requests)
                    return
                if wait > self.profile.wall(self.profile.max_quota_wait):
                    raise self._exhausted(limit, wait)
                await asyncio.sleep(wait)

    def _exhausted(self, limit: Limit, wait: float) -> QuotaExhausted:
        frees = datetime.now(UTC) + timedelta(seconds=wait)
        return QuotaExhausted(
            f"{self.profile.platform}: the {limit.name} allocation is spent; the next call "
            f"fits at {frees:%Y-%m-%d %H:%M} UTC ({wait / 3600:.1f} h from now). The run "
            "stopped without calling the platform again and can be resumed then"
        )

    def completed(self, operations: int, remaining_execution_ms: float | None) -> None:
        """A request's answer arrived; the platform's count of the window's execution
        time left (Dataverse) calibrates what an operation costs."""
        if self.windows is not None:
            now = self.clock()
            self.windows.completed(now, operations, remaining_execution_ms)

    def observe(self, limit_name: str, used: float) -> None:
        """The platform reported ``used`` of an allocation (Salesforce's
        ``Sforce-Limit-Info``): count what we had not seen."""
        now = self.clock()
        for allowance in self.allowances:
            if allowance.name == limit_name:
                allowance.observe(now, used)

    async def back_off(
        self,
        policy: RetryPolicy,
        attempt: int,
        retry_after: float | None,
        *,
        status: int,
        what: str,
        rng: random.Random,
        platform_says_ours: bool = False,
    ) -> None:
        """Wait before retry ``attempt`` as the policy says.

        A throttle about our rate that names its wait (429/503 + Retry-After) pauses
        every caller of this governor, not just this one: the platform asked us all;
        and it halves the concurrency cap. A 429 judged a hiccup delays this call only
        and trims the cap by one place at most. ``platform_says_ours``: the answer's
        rate headers report our allowance spent.
        """
        delay = policy.delay(attempt, retry_after, rng)
        verdict = None
        if status in THROTTLE_STATUSES:
            pause = delay if retry_after is not None else None
            verdict = self._throttled(status, pause, platform_says_ours)
        self.stats.retries += 1
        log.info(
            "http.retry", platform=self.profile.platform, what=what, status=status,
            attempt=attempt, wait=round(delay, 3), concurrency=self.concurrency.limit,
            throttle=verdict.value if verdict else None,
        )  # fmt: skip
        await asyncio.sleep(delay)

    def _throttled(self, status: int, pause: float | None, platform_says_ours: bool) -> Verdict:
        verdict = self.judge.judge(self.clock(), platform_says_ours=platform_says_ours)
        if status == 429 and verdict is Verdict.HICCUP:
            self.stats.hiccups += 1
            self.concurrency.hiccup()
            return verdict
        self.concurrency.throttled()
        if pause is not None:
            self.pause(pause)
        return Verdict.TOO_FAST

    def pause(self, seconds: float) -> None:
        """The platform said wait: hold every new request for ``seconds``."""
        self.stats.throttled += 1
        resume_at = self.clock() + seconds
        self._resume_at = max(self._resume_at, resume_at)

    async def _wait_out_pause(self) -> None:
        # A deadline, not a poll: each sleep ends exactly when the pause does,
        # and loops only if another throttle extended it meanwhile.
        while (remaining := self._resume_at - self.clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)


def throttle_judge(profile: QuotaProfile) -> ThrottleJudge:
    """A judge of the profile's throttles: one that models the platform's bucket when
    the platform enforces the profile's rate (BackDocket), else one that takes every
    throttle as ours (Dataverse's windows, Zoho's credits: their 429s are about us)."""
    p = profile
    if not p.rate_enforced:
        return ThrottleJudge(rate=None)
    return ThrottleJudge(rate=p.rate * p.time_scale, burst=p.burst, horizon=p.wall(1.0))


def _first(pair: tuple[float, Limit]) -> float:
    return pair[0]
