"""Quota benchmark: how close the governor runs to a platform's quota without tripping it.

Two scenarios against simulators with time-scaled limits, each its own process
on 127.0.0.1, each driven by concurrent callers through one ``Governor`` whose
profile states the same limits at the same ``time_scale``:

* **Dataverse-style** — the Dataverse simulator's service protection (a request
  window and an execution-time window, destinations.md §2.5), with the 300-second
  window passing in ``300 / time_scale`` seconds. Callers send ``$batch`` requests
  of ``--ops`` GETs; the server charges ``--op-ms`` platform ms per operation, so
  the execution budget binds (not this machine's CPU), and the client's estimate
  of that cost starts at the profile's 10 ms and calibrates from the
  ``x-ms-ratelimit-time-remaining-xrm-requests`` header.
* **Freshsales-style** — the quota simulator enforcing ``freshsales_profile(plan)``
  (requests per hour and per minute, account-wide, §4) server-side through
  ``ratelimit.enforce``, with an hour passing in ``3600 / time_scale`` seconds.

For each it prints requests sent, admitted and throttled, and the achieved rate as
a share of the quota-bound ideal over the run (a whole number of windows or hours
from a fresh quota, so no first-window bonus flatters it):

    Dataverse:  ideal ops/s = min(requests per window * ops, budget ms / ms per op) / window
    Freshsales: ideal req/s = min(hourly / 3600, per minute / 60) * time_scale

    ./dev bench quota [--callers 32] [--windows 4] [--hours 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson
import uvloop

from adapters.dynamics.batch import BatchRequest, encode_batch
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.quota_sim import RECORDS_PATH, QuotaSim, QuotaSimSettings
from adapters.simserver import ADMIN_HEADER, serve_app
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.governor import Governor
from ratelimit.profiles import QuotaProfile, freshsales_profile, profile_for

TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"
POLICY = RetryPolicy()


# -- the simulators, each in its own process ---------------------------------------


def _serve(build: Callable[[], Any], conn: Connection) -> None:
    """Child process: serve the simulator ``build`` makes until the parent says stop."""

    async def main() -> None:
        sim = build()
        runner, url = await serve_app(sim.app())
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        conn.send(url)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(conn.fileno())
            await runner.cleanup()

    uvloop.run(main())


class Child:
    """A simulator in a child process (spawned, so it shares nothing with this one)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(build, child_conn), daemon=True)

    def __enter__(self) -> str:
        self._process.start()
        if not self._conn.poll(60):
            self._process.kill()
            raise RuntimeError("the simulator did not start")
        url: str = self._conn.recv()
        return url

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


@dataclass(frozen=True)
class DataverseBuild:
    settings: DataverseSimSettings

    def __call__(self) -> DataverseSim:
        return DataverseSim(settings=self.settings)


@dataclass(frozen=True)
class QuotaBuild:
    settings: QuotaSimSettings

    def __call__(self) -> QuotaSim:
        return QuotaSim(self.settings)


# -- the load -------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    admitted: int = 0
    throttled: int = 0


Send = Callable[[aiohttp.ClientSession], Awaitable[tuple[int, dict[str, str]]]]


async def drive(
    governor: Governor,
    send: Send,
    *,
    callers: int,
    seconds: float,
    operations: int = 1,
    after: Callable[[int, dict[str, str]], None] | None = None,
) -> Tally:
    """``callers`` loops sending through ``governor`` until ``seconds`` have passed;
    a throttle is backed off as the client would (Retry-After, shared pause)."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=governor.profile.concurrency + 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        end = loop.time() + seconds

        async def caller() -> None:
            while True:
                async with governor.slot(operations=operations):
                    if loop.time() >= end:
                        return
                    tally.sent += 1
                    status, headers = await send(http)
                    if status == 200:
                        tally.admitted += 1
                        if after is not None:
                            after(operations, headers)
                if status == 429:
                    tally.throttled += 1
                    retry_after = parse_retry_after(headers.get("Retry-After"))
                    await governor.back_off(
                        POLICY, 1, retry_after, status=status, what="bench", rng=rng
                    )
                elif status != 200:
                    raise RuntimeError(f"unexpected HTTP {status}")

        async with asyncio.TaskGroup() as tasks:
            for i in range(callers):
                tasks.create_task(caller(), name=f"caller-{i}")
    return tally


def report(title: str, tally: Tally, achieved: float, ideal: float, unit: str) -> None:
    print(title)
    print(f"  requests sent    {tally.sent}")
    print(f"  admitted         {tally.admitted}")
    print(f"  throttled        {tally.throttled} = {tally.throttled / max(1, tally.sent):.2%}")
    print(f"  achieved         {achieved:.1f} {unit} = {achieved / ideal:.1%} of the quota-bound "
          f"ideal {ideal:.1f} {unit}")  # fmt: skip


# -- Dataverse-style ---------------------------------------------------------------


async def dataverse(args: argparse.Namespace) -> float:
    window = 300.0
    settings = DataverseSimSettings(
        requests_per_window=args.window_requests,
        execution_ms_per_window=1_200_000,
        window_seconds=window,
        time_scale=args.dataverse_scale,
        execution_ms_per_operation=args.op_ms,
    )
    # The operator's profile for this environment: the published limits (a request
    # window overridden to the simulator's), the same time scale, and a pace that
    # spreads the window's requests evenly. Execution cost: the profile's first guess.
    profile = profile_for(
        "dynamics",
        {
            "window_requests": settings.requests_per_window,
            "rate": settings.requests_per_window / window,
            "time_scale": settings.time_scale,
        },
    )
    governor = Governor(profile)
    assert governor.windows is not None
    wall_window = profile.wall(window)
    boundary = "batch_bench"
    groups = [[BatchRequest("GET", "systemusers?$select=fullname")] for _ in range(args.ops)]
    content_type, body = encode_batch(groups, boundary)

    with Child(DataverseBuild(settings)) as url:
        async with aiohttp.ClientSession() as http:
            form = {
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
                "scope": f"{settings.org_url}/.default",
            }
            async with http.post(f"{url}/{settings.tenant_id}/oauth2/v2.0/token", data=form) as r:
                token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}

        async def send(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
            async with http.post(f"{url}/api/data/v9.2/$batch", data=body, headers=headers) as r:
                await r.read()
                return r.status, dict(r.headers)

        def calibrate(operations: int, answer: dict[str, str]) -> None:
            text = answer.get(TIME_REMAINING)
            remaining = float(text.replace(",", "")) * 1000 if text else None
            governor.completed(operations, remaining)

        seconds = args.windows * wall_window
        started = time.perf_counter()
        tally = await drive(
            governor, send, callers=args.callers, seconds=seconds,
            operations=args.ops, after=calibrate,
        )  # fmt: skip
        elapsed = time.perf_counter() - started

    per_window = min(settings.requests_per_window * args.ops, 1_200_000 / args.op_ms)
    ideal = per_window / wall_window
    achieved = tally.admitted * args.ops / seconds
    report(
        f"Dataverse-style: {settings.requests_per_window} requests and 1,200,000 ms per "
        f"300-s window, {args.op_ms:g} ms/operation, time scale {args.dataverse_scale:g} "
        f"(window {wall_window:.1f} s); {args.windows} windows, {args.callers} callers, "
        f"$batch of {args.ops} ({elapsed:.1f} s)",
        tally, achieved, ideal, "operations/s",
    )  # fmt: skip
    print(f"  calibrated cost  {governor.windows.ms_per_operation:.1f} ms/operation "
          f"(profile's first guess {profile.execution_ms_per_operation:g}, server charges "
          f"{args.op_ms:g})")  # fmt: skip
    return achieved / ideal


# -- Freshsales-style --------------------------------------------------------------


async def freshsales(args: argparse.Namespace) -> float:
    profile: QuotaProfile = replace(freshsales_profile(args.plan), time_scale=args.hour_scale)
    assert profile.requests_per_hour is not None
    account = "bench-account"
    settings = QuotaSimSettings(profile, principals=frozenset({account}))
    governor = Governor(profile)
    hour = profile.wall(3600.0)
    per_second = profile.requests_per_hour / 3600
    if profile.requests_per_minute is not None:
        per_second = min(per_second, profile.requests_per_minute / 60)
    ideal = per_second * profile.time_scale

    with Child(QuotaBuild(settings)) as url:
        headers = {"Authorization": f"Token token={account}", "Content-Type": "application/json"}
        payload = orjson.dumps({"contact": {"first_name": "Ada"}})

        async def send(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
            async with http.post(url + RECORDS_PATH, data=payload, headers=headers) as r:
                await r.read()
                return r.status, dict(r.headers)

        seconds = args.hours * hour
        started = time.perf_counter()
        tally = await drive(governor, send, callers=args.callers, seconds=seconds)
        elapsed = time.perf_counter() - started
        admin = {ADMIN_HEADER: settings.admin_token}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/_sim/state", headers=admin) as r,
        ):
            state = orjson.loads(await r.read())

    server = state["principals"].get(account, {})
    achieved = tally.admitted / seconds
    minute = f" + {profile.requests_per_minute}/min" if profile.requests_per_minute else ""
    report(
        f"Freshsales-style ({args.plan}): {profile.requests_per_hour}/h{minute} per account, "
        f"time scale {args.hour_scale:g} (hour {hour:.1f} s); {args.hours:g} hours, "
        f"{args.callers} callers ({elapsed:.1f} s)",
        tally, achieved, ideal, "requests/s",
    )  # fmt: skip
    print(f"  server counted   {server.get('admitted', 0)} admitted, "
          f"{server.get('throttled', 0)} throttled {server.get('refused_by', {})}")  # fmt: skip
    return achieved / ideal


async def bench(args: argparse.Namespace) -> None:
    shares = []
    if args.scenario in ("all", "dataverse"):
        shares.append(await dataverse(args))
    if args.scenario in ("all", "freshsales"):
        shares.append(await freshsales(args))
    print(f"target: >= 95% of the ideal with <= 1% throttled; lowest share {min(shares):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("all", "dataverse", "freshsales"), default="all")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--windows", type=int, default=4, help="Dataverse windows to run")
    parser.add_argument("--dataverse-scale", type=float, default=50.0)
    parser.add_argument("--window-requests", type=int, default=1200)
    parser.add_argument("--ops", type=int, default=20, help="GETs per $batch")
    parser.add_argument("--op-ms", type=float, default=100.0)
    parser.add_argument("--hours", type=float, default=2.0, help="Freshsales hours to run")
    parser.add_argument("--hour-scale", type=float, default=180.0)
    parser.add_argument("--plan", default="enterprise")
    args = parser.parse_args()
    uvloop.run(bench(args))


if __name__ == "__main__":
    main()
