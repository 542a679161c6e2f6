"""The governor every outbound call of one principal goes through.

It combines three limits: a leaky bucket paced to the platform's rate
(aiolimiter, fair and loop-time based), a concurrency cap, and a shared pause
that a throttle answer sets so that no other request hammers the platform
while it has asked us to wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from aiolimiter import AsyncLimiter

from ratelimit.backoff import RetryPolicy
from ratelimit.profiles import QuotaProfile

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class GovernorStats:
    """What the governor let through, for progress lines and the bench."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    first_at: float | None = None
    last_at: float | None = None

    def observed_rate(self) -> float:
        """Requests per second between the first and the last request."""
        if self.first_at is None or self.last_at is None or self.last_at <= self.first_at:
            return 0.0
        return self.requests / (self.last_at - self.first_at)


@dataclass
class Governor:
    """Paces, caps and pauses the calls of one principal on one platform."""

    profile: QuotaProfile
    stats: GovernorStats = field(default_factory=GovernorStats)

    def __post_init__(self) -> None:
        rate = self.profile.effective_rate
        # Half the platform's burst: the other half absorbs the jitter between
        # when we send and when the server counts, so pacing never trips it.
        capacity = max(1.0, self.profile.burst / 2)
        self._limiter = AsyncLimiter(capacity, capacity / rate)
        self._slots = asyncio.Semaphore(self.profile.concurrency)
        self._resume_at = 0.0

    @asynccontextmanager
    async def slot(self, cost: float = 1.0) -> AsyncIterator[None]:
        """Hold a concurrency slot and ``cost`` rate tokens for one request."""
        async with self._slots:
            await self._wait_out_pause()
            await self._limiter.acquire(cost)
            await self._wait_out_pause()
            loop = asyncio.get_running_loop()
            now = loop.time()
            self.stats.requests += 1
            if self.stats.first_at is None:
                self.stats.first_at = now
            self.stats.last_at = now
            yield

    async def back_off(
        self,
        policy: RetryPolicy,
        attempt: int,
        retry_after: float | None,
        *,
        status: int,
        what: str,
        rng: random.Random,
    ) -> None:
        """Wait before retry ``attempt`` as the policy says.

        A throttle answer that names its wait (429/503 + Retry-After) pauses every
        caller of this governor, not just this one: the platform asked us all.
        """
        delay = policy.delay(attempt, retry_after, rng)
        if status in (429, 503) and retry_after is not None:
            self.pause(delay)
        self.stats.retries += 1
        log.info(
            "http.retry", platform=self.profile.platform, what=what, status=status,
            attempt=attempt, wait=round(delay, 3),
        )  # fmt: skip
        await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """The platform said wait: hold every new request for ``seconds``."""
        self.stats.throttled += 1
        resume_at = asyncio.get_running_loop().time() + seconds
        self._resume_at = max(self._resume_at, resume_at)

    async def _wait_out_pause(self) -> None:
        loop = asyncio.get_running_loop()
        # A deadline, not a poll: each sleep ends exactly when the pause does,
        # and loops only if another throttle extended it meanwhile.
        while (remaining := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
