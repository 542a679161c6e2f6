"""Sporadic throttles must not starve a reader (issue 11 item 4).

An operator extracts from BackDocket (20 req/s, burst 40 per token:
../shared/sources/backdocket-api.md, "Transport and auth") while another client on
the same tenant makes the platform answer 429 now and then. Those 429s are not
about our rate: each refused call honours its ``Retry-After`` and the rest keep
going at full concurrency. When the 429s are about us — several close together,
our own calls draining the platform's bucket, or the platform saying so — every
caller pauses and the cap halves, as before.

Every governor here runs on a fake clock: nothing sleeps longer than the policy's
few milliseconds of jitter, and no test asserts a duration.
"""

from __future__ import annotations

import random

from ratelimit.backoff import RetryPolicy
from ratelimit.concurrency import AdaptiveConcurrency
from ratelimit.governor import Governor
from ratelimit.profiles import BACKDOCKET, DYNAMICS, QuotaProfile
from ratelimit.throttle import ThrottleJudge, Verdict

NO_WAIT = RetryPolicy(attempts=3)


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _answer(governor: Governor, clock: FakeClock, gap: float, status: int | None) -> None:
    """One call through the governor, answered ``status`` (None: 200), ``gap`` s after
    the previous one; a throttle says ``Retry-After: 0``."""
    async with governor.slot():
        pass
    if status is not None:
        await governor.back_off(
            NO_WAIT, 1, 0.0, status=status, what="list matters", rng=random.Random(1)
        )
    # The policy's jitter adds at most 50 ms to a pause: move past it.
    clock.now += max(gap, 0.06) if status is not None else gap


def _governor(profile: QuotaProfile = BACKDOCKET) -> tuple[Governor, FakeClock]:
    clock = FakeClock()
    return Governor(profile, clock=clock), clock


async def test_isolated_429s_at_a_low_own_rate_keep_concurrency_high() -> None:
    governor, clock = _governor()
    lowest = governor.concurrency.limit
    for n in range(1, 201):  # 10 req/s, half the limit; one answer in 20 is a 429
        await _answer(governor, clock, 0.1, 429 if n % 20 == 10 else None)
        lowest = min(lowest, governor.concurrency.limit)
    assert governor.stats.hiccups == 10
    assert governor.stats.throttled == 0  # nobody else was paused
    assert lowest >= BACKDOCKET.concurrency - 1
    assert governor.concurrency.limit == BACKDOCKET.concurrency


async def test_isolated_429s_at_the_limit_pace_are_still_hiccups() -> None:
    governor, clock = _governor()
    lowest = governor.concurrency.limit
    for n in range(1, 401):  # 20 req/s, the pace the governor keeps: 5% are 429
        await _answer(governor, clock, 0.05, 429 if n % 20 == 7 else None)
        lowest = min(lowest, governor.concurrency.limit)
    assert governor.stats.hiccups == 20
    assert lowest >= BACKDOCKET.concurrency - 1


async def test_a_burst_of_429s_at_our_rate_cuts_concurrency_and_pauses_everyone() -> None:
    governor, clock = _governor()
    for _ in range(6):  # every call refused, one after another
        await _answer(governor, clock, 0.05, 429)
    assert governor.stats.throttled >= 3  # from the third on: a pattern, not a hiccup
    assert governor.concurrency.limit <= BACKDOCKET.concurrency // 4


async def test_concurrency_recovers_quickly_after_a_hiccup() -> None:
    governor, clock = _governor()
    await _answer(governor, clock, 0.1, 429)
    trimmed = governor.concurrency.limit
    assert trimmed == BACKDOCKET.concurrency - 1
    for _ in range(trimmed):  # a cap's worth of clean calls gives it all back
        await _answer(governor, clock, 0.1, None)
    assert governor.concurrency.limit == BACKDOCKET.concurrency


def test_a_hiccup_gives_back_every_place_it_took_but_a_cut_grows_one_by_one() -> None:
    cap = AdaptiveConcurrency(8)
    cap.hiccup()
    cap.hiccup()
    assert cap.limit == 6
    for _ in range(6):
        cap.succeeded()
    assert cap.limit == 8
    cap.throttled()
    for _ in range(4):
        cap.succeeded()
    assert cap.limit == 5


def test_our_own_calls_near_the_platforms_limit_make_a_429_ours() -> None:
    judge = ThrottleJudge(rate=20.0, burst=40.0)
    for _ in range(38):  # the platform's bucket holds 2 of 40 by our own count
        judge.admitted(0.0)
    assert judge.judge(0.0) is Verdict.TOO_FAST
    calm = ThrottleJudge(rate=20.0, burst=40.0)
    for _ in range(5):
        calm.admitted(0.0)
    assert calm.judge(0.0) is Verdict.HICCUP


def test_the_platforms_word_makes_a_429_ours() -> None:
    judge = ThrottleJudge(rate=20.0, burst=40.0)
    judge.admitted(0.0)
    assert judge.judge(0.0, platform_says_ours=True) is Verdict.TOO_FAST


async def test_a_platform_without_a_modelled_bucket_takes_every_429_as_ours() -> None:
    # Dataverse's 429s are its per-user service protection limits: always about us
    # (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits).
    governor, clock = _governor(DYNAMICS)
    await _answer(governor, clock, 0.1, 429)
    assert governor.stats.throttled == 1
    assert governor.stats.hiccups == 0
    assert governor.concurrency.limit == DYNAMICS.concurrency // 2


async def test_maintenance_still_pauses_every_caller() -> None:
    # backdocket-api.md: "503 with Retry-After during maintenance" — the platform is
    # down for everyone, not refusing one call.
    governor, clock = _governor()
    await _answer(governor, clock, 0.1, 503)
    assert governor.stats.throttled == 1
    assert governor.concurrency.limit == BACKDOCKET.concurrency // 2
