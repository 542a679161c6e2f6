"""No governor ever lets more through than its limit, in any window, whatever the traffic.

Property tests over the pure limits (any schedule of attempts, checked against
every window the schedule spans), and over the async governor with many callers
at once on a real event loop with short windows.
"""

from __future__ import annotations

import asyncio
import copy
import math
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit.allowance import Allowance, credits
from ratelimit.bucket import TokenBucket
from ratelimit.credits import zoho_credits
from ratelimit.governor import Governor
from ratelimit.limits import Call
from ratelimit.profiles import DYNAMICS, profile_for
from ratelimit.window import SlidingWindow, WindowBudget, WindowLimits

steps = st.lists(
    st.tuples(st.floats(0, 3, allow_nan=False), st.integers(1, 7)), min_size=1, max_size=120
)


def heaviest_window(taken: list[tuple[float, float]], window: float) -> float:
    """The largest sum of amounts taken within any ``window`` seconds (half-open)."""
    heaviest = 0.0
    for start, _ in taken:
        heaviest = max(heaviest, sum(a for t, a in taken if start <= t < start + window))
    return heaviest


@given(
    steps=steps,
    limit=st.integers(1, 20),
    window=st.floats(0.5, 10),
    resolution=st.sampled_from([0.0, 0.25, 1.0]),
)
def test_a_sliding_window_never_holds_more_than_its_limit(
    steps: list[tuple[float, int]], limit: int, window: float, resolution: float
) -> None:
    sliding = SlidingWindow(limit, window, resolution)
    now, taken = 0.0, []
    for gap, wanted in steps:
        now += gap
        amount = min(wanted, limit)
        wait = sliding.try_add(now, amount)
        if wait == 0:
            taken.append((now, float(amount)))
        else:
            # The wait it names is enough: at that moment the amount fits. (Asked of a
            # copy: time only moves forward, and asking expires what has left.)
            assert copy.deepcopy(sliding).wait(now + wait, amount) == 0
    assert heaviest_window(taken, window) <= limit


@given(steps=steps, rate=st.floats(0.5, 20), burst=st.integers(1, 10))
def test_a_token_bucket_never_lets_more_than_burst_plus_rate(
    steps: list[tuple[float, int]], rate: float, burst: int
) -> None:
    bucket = TokenBucket(rate, burst)
    now, taken = 0.0, []
    for gap, amount in steps:
        now += gap
        if amount <= burst and bucket.try_take(now, amount) == 0:
            taken.append((now, amount))
    for i, (start, _) in enumerate(taken):
        for end, _ in taken[i:]:
            inside = sum(a for t, a in taken if start <= t <= end)
            assert inside <= burst + rate * (end - start) + 1e-6


@given(
    calls=st.lists(
        st.tuples(
            st.floats(0, 2000, allow_nan=False),
            st.sampled_from(["insert", "upsert", "coql", "bulk_write", "get"]),
            st.integers(1, 100),
        ),
        min_size=1,
        max_size=80,
    ),
    limit=st.integers(500, 3000),
)
def test_a_credit_budget_never_spends_more_than_its_credits_per_day(
    calls: list[tuple[float, str, int]], limit: int
) -> None:
    day = 86_400.0
    budget = Allowance("daily credits", limit, day, credits)
    now, spent = 0.0, []
    for gap, operation, records in calls:
        now += gap * 60
        call = Call(credits=zoho_credits(operation, records))
        if budget.wait(now, call) == 0:
            budget.take(now, call)
            spent.append((now, call.credits))
    assert heaviest_window(spent, day) <= limit


@given(
    steps=st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.integers(1, 50), st.floats(1, 30)),
        min_size=1,
        max_size=100,
    )
)
def test_dataverse_budget_keeps_requests_and_estimated_time_inside_each_window(
    steps: list[tuple[float, int, float]],
) -> None:
    limits = WindowLimits(5.0, 10, 2_000, 10.0, utilization=0.9)
    budget = WindowBudget(limits)
    now = 0.0
    requests: list[tuple[float, float]] = []
    operations: list[tuple[float, float]] = []
    for gap, ops, charged_ms in steps:
        now += gap
        call = Call(operations=ops)
        if budget.wait(now, call) == 0:
            recent = sum(o for t, o in operations if t > now - 5.0)
            # Inside the execution budget as estimated now, or alone in an empty window.
            assert recent + ops <= budget.operations_per_window + 1e-6 or recent == 0
            budget.take(now, call)
            requests.append((now, 1.0))
            operations.append((now, float(ops)))
            used = sum(o for t, o in operations if t > now - 5.0) * charged_ms
            budget.completed(now, ops, max(0.0, 2_000 - used))
    assert heaviest_window(requests, 5.0) <= math.floor(10 * 0.9)


async def _traffic(governor: Governor, callers: int, seed: int) -> list[tuple[float, int]]:
    """Many callers at once; each records when the governor let it go and holds its
    place a while, as a request would."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    admitted: list[tuple[float, int]] = []
    in_flight = 0
    peak = 0

    async def caller(operations: int, hold: float) -> None:
        nonlocal in_flight, peak
        async with governor.slot(operations=operations):
            admitted.append((loop.time(), operations))
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(hold)
            in_flight -= 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller(rng.randint(1, 20), rng.uniform(0, 0.02)))
    assert peak <= governor.profile.concurrency
    return admitted


@settings(max_examples=8, deadline=None)
@given(
    callers=st.integers(5, 40),
    window_requests=st.integers(3, 12),
    concurrency=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_a_window_governor_under_concurrency_stays_inside_every_window(
    callers: int, window_requests: int, concurrency: int, seed: int
) -> None:
    window = 0.15
    profile = replace(
        DYNAMICS,
        rate=1000.0,
        burst=100.0,
        concurrency=concurrency,
        window_seconds=window,
        window_requests=window_requests,
        window_execution_ms=1e9,
    )
    admitted = asyncio.run(_traffic(Governor(profile), callers, seed))
    assert len(admitted) == callers
    times = [(t, 1.0) for t, _ in admitted]
    # The loop's clock ticks in milliseconds: a hair of slack for its rounding.
    allowed = math.floor(window_requests * profile.utilization)
    assert heaviest_window(times, window - 0.002) <= allowed


@settings(max_examples=6, deadline=None)
@given(callers=st.integers(10, 60), rate=st.floats(50, 400), seed=st.integers(0, 1000))
def test_a_paced_governor_never_runs_ahead_of_its_rate(
    callers: int, rate: float, seed: int
) -> None:
    profile = profile_for("backdocket", {"rate": rate, "burst": 4, "concurrency": 8})
    admitted = asyncio.run(_traffic(Governor(profile), callers, seed))
    times = sorted(t for t, _ in admitted)
    span = times[-1] - times[0]
    # The pace lets half the burst through at once, then goes at the rate.
    assert len(times) <= 2 + rate * span * 1.05 + 1
