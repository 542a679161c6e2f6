"""Time-scaled profiles, the server-side enforcer built from them, and the quota simulator.

The client's governor and the simulators' enforcer are made of the same limits
from the same profile; these tests hold the enforcer to the profile's limits
under any traffic, hold both sides to one time scale, and check over loopback
that a governed client and the quota simulator agree: no throttles.
"""

from __future__ import annotations

import asyncio
import copy
import math
from dataclasses import replace

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.errors import ConfigError, QuotaExhausted
from adapters.quota_sim import RECORDS_PATH, QuotaSim, QuotaSimSettings, retry_after_header, serve
from adapters.simserver import ADMIN_HEADER
from ratelimit.allowance import Allowance
from ratelimit.enforce import QuotaEnforcer
from ratelimit.governor import Governor
from ratelimit.limits import Call
from ratelimit.profiles import (
    BACKDOCKET,
    DYNAMICS,
    FRESHSALES,
    QuotaProfile,
    freshsales_profile,
    profile_for,
)
from ratelimit.window import SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def heaviest_window(times: list[float], window: float) -> int:
    """The most instants within any half-open ``window`` seconds."""
    times = sorted(times)
    heaviest, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        heaviest = max(heaviest, end - start + 1)
    return heaviest


# -- time scale -------------------------------------------------------------------------


def test_time_scale_defaults_to_real_time_and_must_be_positive() -> None:
    assert FRESHSALES.time_scale == 1.0
    assert profile_for("freshsales", {"time_scale": 60}).wall(3600) == 60
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ConfigError, match="time_scale"):
            profile_for("freshsales", {"time_scale": bad})


def test_the_governor_divides_every_period_and_multiplies_the_rate() -> None:
    scaled = Governor(replace(DYNAMICS, time_scale=300, utilization=0.5))
    assert scaled.windows is not None
    assert scaled.windows.limits.window_seconds == pytest.approx(1.0)
    assert scaled.pace.bucket.rate == pytest.approx(20 * 0.5 * 300)
    hourly = Governor(replace(freshsales_profile("pro"), time_scale=3600))
    periods = {a.name: (a.period, a.limit) for a in hourly.allowances}
    assert periods == {"requests per hour": (1.0, 2000), "requests per minute": (60 / 3600, 400)}
    daily = Governor(profile_for("salesforce", {"time_scale": 86_400}))
    assert [a.period for a in daily.allowances] == [1.0]


async def test_a_scaled_minute_passes_in_a_scaled_wall_time() -> None:
    # 4 requests per minute, a minute passing in 0.1 s: 10 requests take two minutes.
    profile = QuotaProfile("t", rate=1000, burst=10, concurrency=4, requests_per_minute=4)
    governor = Governor(replace(profile, time_scale=600))
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def call() -> None:
        async with governor.slot():
            sent.append(loop.time())

    started = loop.time()
    async with asyncio.TaskGroup() as tg:
        for _ in range(10):
            tg.create_task(call())
    assert sent[-1] - started >= 0.2 - 0.005
    assert heaviest_window(sent, 0.1 - 0.002) <= 4


async def test_the_scaled_quota_wait_limit_stops_the_run() -> None:
    profile = QuotaProfile(
        "t", rate=1000, burst=10, concurrency=1, requests_per_hour=1, max_quota_wait=600
    )
    governor = Governor(replace(profile, time_scale=3600))  # the hour: 1 s; the limit: 1/6 s
    async with governor.slot():
        pass
    with pytest.raises(QuotaExhausted, match="requests per hour"):
        async with governor.slot():
            pass


async def test_a_call_counts_until_a_window_after_its_answer() -> None:
    # One request per 0.1 s; the first one's answer takes 0.15 s. The server may have
    # counted it just before answering, so the next goes 0.1 s after the answer.
    profile = QuotaProfile("t", rate=1000, burst=10, concurrency=2, requests_per_minute=1)
    governor = Governor(replace(profile, time_scale=600))
    loop = asyncio.get_running_loop()
    async with governor.slot():
        await asyncio.sleep(0.15)
    answered = loop.time()
    async with governor.slot():
        second = loop.time()
    assert second - answered >= 0.1 - 0.002


def test_a_held_amount_counts_until_a_window_after_its_release() -> None:
    window = SlidingWindow(2, 10.0)
    window.hold(1)
    window.add(0.0, 1)
    assert window.total(0.0) == 2
    assert window.wait(5.0) == pytest.approx(5.0)  # the recorded one leaves at 10
    assert window.wait(50.0) == 0  # the held one leaves room for one more
    assert window.wait(50.0, 2) == 10.0  # only its release makes room for two: a window on
    window.release(50.0, 1)
    assert window.held == 0
    assert window.wait(50.0) == 0
    window.add(50.0)
    assert window.wait(55.0) == pytest.approx(5.0)


# -- the enforcer --------------------------------------------------------------------


def test_freshsales_hourly_and_minute_limits_refuse_with_the_wall_wait() -> None:
    clock = Clock()
    profile = replace(freshsales_profile("growth"), time_scale=3600)  # an hour per second
    enforcer = QuotaEnforcer(profile, clock)
    for i in range(400):
        clock.now = i * 1e-5
        assert enforcer.admit("acct") is None
    refusal = enforcer.admit("acct")
    assert refusal is not None
    assert refusal.limit == "requests per minute"
    # The first request leaves the minute (1/60 s wall, counted in slices of 0.1
    # platform s) 1/60 s after it came.
    frees = clock.now + refusal.retry_after
    assert 1 / 60 <= frees <= 1 / 60 + 0.1 / 3600 + 1e-9
    assert enforcer.admit("other") is None  # principals are independent
    for minute in range(1, 3):
        clock.now = minute * 0.025  # a minute (1/60 s) after the last one's slice
        for _ in range(300):
            enforcer.admit("acct")
    refusal = enforcer.admit("acct")
    assert refusal is not None
    assert refusal.limit == "requests per hour"
    assert enforcer.principals["acct"].admitted == 1000
    clock.now = 1.0 + 0.001  # an hour later: room again
    assert enforcer.admit("acct") is None


def test_a_rate_is_enforced_only_where_the_platform_refuses_beyond_it() -> None:
    clock = Clock()
    backdocket = QuotaEnforcer(replace(BACKDOCKET, time_scale=2), clock)
    for _ in range(40):
        assert backdocket.admit("token") is None
    refusal = backdocket.admit("token")
    assert refusal is not None
    assert refusal.limit == "request rate"
    assert refusal.retry_after == pytest.approx(1 / 40)
    # Dataverse's 20/s is only the client's pace: the server lets a burst through.
    dataverse = QuotaEnforcer(DYNAMICS, clock)
    assert all(dataverse.admit("user") is None for _ in range(500))


def test_the_server_enforces_the_whole_limit_whatever_the_client_s_share() -> None:
    clock = Clock()
    profile = QuotaProfile(
        "t", rate=1, burst=1, concurrency=1, requests_per_hour=10, utilization=0.5
    )
    enforcer = QuotaEnforcer(profile, clock)
    assert sum(enforcer.admit("p") is None for _ in range(20)) == 10
    assert [a.limit for a in Governor(profile).allowances] == [5]


def test_dataverse_windows_count_requests_and_charged_execution_time() -> None:
    clock = Clock()
    profile = profile_for(
        "dynamics", {"window_requests": 3, "window_execution_ms": 1000, "time_scale": 300}
    )
    enforcer = QuotaEnforcer(profile, clock)
    for t in (0.0, 0.1, 0.2):
        clock.now = t
        assert enforcer.admit("user", Call(operations=5)) is None
    refusal = enforcer.admit("user")
    assert refusal is not None
    assert refusal.limit == "requests per window"
    assert refusal.retry_after == pytest.approx(0.8)  # the first leaves 300 s (1 s) on
    clock.now = 1.05
    enforcer.charge("user", 600)
    assert enforcer.remaining_execution_ms("user") == 400
    enforcer.charge("user", 500)  # it ran over; the next request is refused
    refusal = enforcer.admit("user")
    assert refusal is not None
    assert refusal.limit == "execution time per window"
    assert refusal.retry_after == pytest.approx(1.0)
    clock.now = 2.06
    assert enforcer.admit("user") is None


profiles = st.builds(
    lambda hourly, minutely, window, rate, burst, enforced, scale: QuotaProfile(
        "prop",
        rate=rate,
        burst=burst,
        concurrency=1,
        requests_per_hour=hourly,
        requests_per_minute=minutely,
        window_seconds=None if window is None else 300.0,
        window_requests=window,
        window_execution_ms=None if window is None else 1e12,
        rate_enforced=enforced,
        time_scale=scale,
    ),
    hourly=st.one_of(st.none(), st.integers(1, 40)),
    minutely=st.one_of(st.none(), st.integers(1, 15)),
    window=st.one_of(st.none(), st.integers(1, 20)),
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 10),
    enforced=st.booleans(),
    scale=st.sampled_from([1.0, 60.0, 300.0, 3600.0]),
)


@settings(max_examples=150, deadline=None)
@given(
    profile=profiles,
    gaps=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=150),
    spread=st.sampled_from([0.001, 0.01, 0.1, 1.0]),
)
def test_the_enforcer_never_admits_more_than_the_profile_allows_in_any_window(
    profile: QuotaProfile, gaps: list[float], spread: float
) -> None:
    clock = Clock()
    enforcer = QuotaEnforcer(profile, lambda: clock.now)  # a copy reads the same clock
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap * spread
        refusal = enforcer.admit("p")
        if refusal is None:
            admitted.append(clock.now)
            continue
        # The wait it names is enough: then the request fits (asked of a copy).
        later = copy.deepcopy(enforcer)
        clock_then = clock.now
        clock.now += refusal.retry_after
        assert later.admit("p") is None
        clock.now = clock_then
    for limit, period in (
        (profile.requests_per_hour, 3600.0),
        (profile.requests_per_minute, 60.0),
        (profile.window_requests, profile.window_seconds),
    ):
        if limit is not None and period is not None:
            assert heaviest_window(admitted, profile.wall(period)) <= limit
    if profile.rate_enforced:
        rate = profile.rate * profile.time_scale
        for i, start in enumerate(admitted):
            for end in admitted[i:]:
                inside = sum(1 for t in admitted if start <= t <= end)
                assert inside <= profile.burst + rate * (end - start) + 1e-6


def test_allowances_built_for_client_and_server_are_the_same_windows() -> None:
    profile = replace(freshsales_profile(), time_scale=180)
    server = QuotaEnforcer(profile).principal("p").limits
    client = Governor(profile).allowances
    shape = [(a.name, a.limit, a.period, a.resolution) for a in client]
    assert shape == [
        (a.name, a.limit, a.period, a.resolution) for a in server if isinstance(a, Allowance)
    ]


# -- the quota simulator over loopback ---------------------------------------------------


def test_retry_after_is_decimal_wall_seconds_never_zero() -> None:
    assert retry_after_header(0.0) == "0.001"
    assert retry_after_header(0.1234) == "0.124"
    assert retry_after_header(2.0) == "2.000"


async def test_the_quota_sim_answers_429_with_retry_after_per_principal() -> None:
    profile = QuotaProfile(
        "freshsales", rate=1, burst=1, concurrency=1, requests_per_minute=3, time_scale=6
    )
    sim = QuotaSim(QuotaSimSettings(profile, principals=frozenset({"a", "b"})))
    runner, url = await serve(sim)
    try:
        async with aiohttp.ClientSession() as http:

            async def post(token: str) -> tuple[int, dict[str, str], bytes]:
                headers = {"Authorization": token}
                async with http.post(url + RECORDS_PATH, json=[{}, {}], headers=headers) as r:
                    return r.status, dict(r.headers), await r.read()

            assert [(await post("Bearer a"))[0] for _ in range(3)] == [200, 200, 200]
            status, headers, body = await post("Token token=a")
            assert status == 429
            # A minute at 6x: 10 s from the first request (counted in slices of 0.1 platform s).
            assert 9.0 < float(headers["Retry-After"]) <= 10.0 + 0.1 / 6 + 0.001
            assert b"requests per minute" in body
            assert (await post("Bearer b"))[0] == 200
            assert (await post("Bearer c"))[0] == 401
            async with http.get(url + "/_sim/state") as r:
                assert r.status == 401  # the debug endpoint is the admin's
            admin = {ADMIN_HEADER: sim.settings.admin_token}
            async with http.get(url + "/_sim/state", headers=admin) as r:
                state = orjson.loads(await r.read())
    finally:
        await runner.cleanup()
    a = state["principals"]["a"]
    assert (a["admitted"], a["throttled"], a["operations"]) == (3, 1, 6)
    assert a["refused_by"] == {"requests per minute": 1}
    assert state["unauthorized"] == 1


async def test_a_governed_client_and_the_quota_sim_agree_on_a_scaled_profile() -> None:
    # 30 requests per minute and 50 per hour, the hour passing in 0.6 s: 80 requests
    # from 8 callers take more than one hour and are never refused.
    profile = QuotaProfile(
        "t", rate=50 / 3600, burst=1, concurrency=4, requests_per_hour=50,
        requests_per_minute=30, time_scale=6000,
    )  # fmt: skip
    profile = replace(profile, rate=1000 / profile.time_scale, burst=10)
    sim = QuotaSim(QuotaSimSettings(profile))
    governor = Governor(profile)
    runner, url = await serve(sim)
    loop = asyncio.get_running_loop()
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:

            async def caller() -> None:
                for _ in range(10):
                    async with (
                        governor.slot(),
                        http.post(url + RECORDS_PATH, headers={"Authorization": "Bearer x"}) as r,
                    ):
                        statuses.append(r.status)

            started = loop.time()
            async with asyncio.TaskGroup() as tg:
                for _ in range(8):
                    tg.create_task(caller())
            elapsed = loop.time() - started
    finally:
        await runner.cleanup()
    assert statuses == [200] * 80
    assert elapsed >= profile.wall(3600) - 0.01
    assert sim.enforcer.principals["x"].refused == {}
