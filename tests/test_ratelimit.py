"""The governor and its parts keep every platform's limit, whatever the load."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.errors import ConfigError
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.bucket import TokenBucket
from ratelimit.governor import Governor
from ratelimit.profiles import BACKDOCKET, profile_for


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=500),
    burst=st.integers(min_value=1, max_value=100),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
    window=st.floats(min_value=0.01, max_value=5),
)
def test_bucket_never_admits_more_than_burst_plus_refill_in_any_window(
    rate: float, burst: int, gaps: list[float], window: float
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.try_take(now) == 0.0:
            admitted.append(now)
    for i, start in enumerate(admitted):
        inside = sum(1 for t in admitted[i:] if t - start <= window)
        assert inside <= burst + rate * window + 1e-6


@given(rate=st.floats(min_value=0.5, max_value=100), burst=st.integers(min_value=1, max_value=50))
def test_bucket_wait_is_exactly_long_enough(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    for _ in range(burst):
        assert bucket.try_take(0.0) == 0.0
    wait = bucket.try_take(0.0)
    assert wait == pytest.approx(1 / rate)
    assert bucket.try_take(wait * 0.99) > 0
    assert bucket.try_take(wait) == 0.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.25", 0.25), (" 1.5 ", 1.5), ("-4", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_reads_seconds_and_decimals(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_reads_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(later, now=now) == pytest.approx(90)


@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers())
def test_backoff_is_full_jitter_under_a_cap(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base=0.1, cap=5.0)
    delay = policy.delay(attempt, None, random.Random(seed))
    assert 0 <= delay <= min(5.0, 0.1 * 2 ** (attempt - 1))


def test_backoff_obeys_retry_after_but_not_beyond_its_limit() -> None:
    policy = RetryPolicy(max_retry_after=10)
    rng = random.Random(1)
    assert 2.0 <= policy.delay(1, 2.0, rng) <= 2.05
    assert policy.delay(1, 500.0, rng) <= 10.05


def test_operators_override_a_profile_but_not_with_nonsense() -> None:
    tuned = profile_for("backdocket", {"rate": 10, "concurrency": 4})
    assert (tuned.rate, tuned.burst, tuned.concurrency) == (10, BACKDOCKET.burst, 4)
    with pytest.raises(ConfigError, match="unknown setting"):
        profile_for("backdocket", {"rps": 10})
    with pytest.raises(ConfigError, match="positive"):
        profile_for("backdocket", {"rate": 0})
    with pytest.raises(ConfigError, match="no quota profile"):
        profile_for("nowhere")


async def test_governor_paces_to_the_rate_and_caps_concurrency() -> None:
    governor = Governor(profile_for("backdocket", {"rate": 200, "burst": 10, "concurrency": 3}))
    in_flight, peak = 0, 0
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def call() -> None:
        nonlocal in_flight, peak
        async with governor.slot():
            sent.append(loop.time())
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(60):
            tg.create_task(call())
    assert peak <= 3
    assert governor.stats.requests == 60
    # Never more than the burst plus what the rate refills, over any stretch.
    for i, start in enumerate(sent):
        inside = sum(1 for t in sent[i:] if t - start <= 0.1)
        assert inside <= 10 + 200 * 0.1 + 1


async def test_a_throttle_pauses_every_caller() -> None:
    governor = Governor(profile_for("backdocket", {"rate": 1000, "burst": 100}))
    loop = asyncio.get_running_loop()
    async with governor.slot():
        pass
    governor.pause(0.2)
    started = loop.time()
    async with governor.slot():
        waited = loop.time() - started
    assert waited >= 0.19
    assert governor.stats.throttled == 1
