"""Dataverse benchmark: a 100k-record BackDocket tenant into the Dataverse simulator.

Both simulators run as their own processes. Dataverse's service protection is
time-scaled (a 300-second window passes in ``300 / time_scale`` seconds) and each
operation costs the server ``--op-ms`` platform milliseconds, so the load is
bound by the quota, not by this machine. The same tenant is migrated with 1 and
with 3 application users, each into a fresh environment; for each the bench
prints operations/s as a share of the quota-bound ideal

    ideal = users * min(requests per window * batch size,
                        execution budget per window / ms per operation) / window

the share of requests the platform throttled, and peak RSS. A sliding window lets
its first window's allowance go at once, so a run of D seconds can move up to
D / window + 1 windows' worth: the bench prints that maximum's share as well.

The default time scale (10: a 30-second window) keeps the window long next to a
request's round trip, as it is in production (300 s against about a second):
the platform frees a window's room a window after each answer, so at 30x the
unscaled latency alone would cost a tenth of the quota.

    ./dev bench dynamics [--records 100000] [--users 1 --users 3] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import uvloop

from adapters.backdocket.client import BackDocketConfig
from adapters.secrets import Secret
from adapters.simserver import ADMIN_HEADER, ADMIN_TOKEN_ENV, new_admin_token
from service.commands import dynamics_schema, prepare_org, simulator
from service.logs import configure_logging
from service.migrate import MigrateOutcome, run_migrate
from service.plan import parse_plan

SIM_ADMIN = {ADMIN_HEADER: os.environ.setdefault(ADMIN_TOKEN_ENV, new_admin_token())}
"""The admin token the bench's simulators start with (they read it from the environment)."""

ADMIN = "admin@bench-firm.example"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
WINDOW_SECONDS = 300.0
REQUESTS_PER_WINDOW = 6000
EXECUTION_MS_PER_WINDOW = 1_200_000


async def sim_state(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/_sim/state", headers=SIM_ADMIN) as resp,
    ):
        state: dict[str, Any] = orjson.loads(await resp.read())
        return state


async def one_run(
    *,
    users: int,
    args: argparse.Namespace,
    bd_url: str,
    schema: Path,
    licensed: Path,
    work: Path,
    env: dict[str, str],
) -> tuple[MigrateOutcome, dict[str, Any], float, float]:
    """Migrate the tenant into a fresh environment with ``users`` application users."""
    org = f"https://bench-{users}u-{secrets.token_hex(3)}.crm.dynamics.com"
    apps = [f"bench-app-{i}" for i in range(users)]
    dv_args = [
        "--schema", str(schema), "--users", str(licensed), "--org-url", org,
        "--client-id", apps[0], "--client-secret-env", "BENCH_DV_SECRET",
        "--time-scale", str(args.time_scale),
        "--execution-ms-per-operation", str(args.op_ms),
        *[a for app in apps[1:] for a in ("--application", f"{app}:BENCH_DV_SECRET")],
    ]  # fmt: skip
    window = WINDOW_SECONDS / args.time_scale
    async with simulator("dynamics", *dv_args, env=env) as dv_url:
        raw = {
            "migration": {"name": f"bench-dynamics-{users}u", "output_dir": str(work / "out")},
            "source": {"platform": "backdocket", "base_url": bd_url, "client_id": "crmlift",
                       "client_secret": {"env": "BENCH_BD_SECRET"},
                       "quota": {"rate": args.source_rate, "burst": args.source_rate * 2}},
            "extract": {"files": True},
            "destination": {
                "platform": "dynamics", "environment_url": org, "api_url": dv_url,
                "authority_url": dv_url, "tenant_id": TENANT,
                "client_id": apps[0], "client_secret": {"env": "BENCH_DV_SECRET"},
                "applications": [{"client_id": a, "client_secret": {"env": "BENCH_DV_SECRET"}}
                                 for a in apps[1:]],
                "fallback_owner_email": ADMIN, "batch_size": args.batch_size,
                # The published profile, per user, on the environment's (scaled) clock.
                "quota": {"time_scale": args.time_scale},
            },
            "journal": {"data_dir": str(work / "data")},
        }  # fmt: skip
        plan = parse_plan(raw, env=os.environ, base=work)
        cpu_before = cpu_seconds()
        outcome = await run_migrate(plan)
        state = await sim_state(dv_url)
        # Counted before the simulator stops: a finished process has no CPU to ask about.
        cpu_after = cpu_seconds()
    cpu = sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after)
    return outcome, state, window, cpu


def cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of this process and every process it started (the simulators)."""
    me = psutil.Process()
    seconds = {}
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = float(times.user + times.system)
    return seconds


def report(
    users: int, outcome: MigrateOutcome, state: dict[str, Any], window: float, args: Any
) -> float:
    """Print one run's figures; return its operations per second."""
    ops = state["stats"]["operations"]
    requests = state["stats"]["requests"]
    throttled = sum(state["stats"]["throttled"].values())
    seconds = outcome.phase_seconds["load"]
    rate = ops / seconds
    per_window = min(REQUESTS_PER_WINDOW * args.batch_size, EXECUTION_MS_PER_WINDOW / args.op_ms)
    ideal = users * per_window / window
    loaded = sum(r.created + r.updated for r in outcome.report.rows)
    estimates = [
        round(g.windows.ms_per_operation, 1) for g in outcome.destination_governors if g.windows
    ]
    print(f"users {users}: {loaded} records loaded, {ops} operations in {requests} requests, "
          f"load {seconds:.1f} s (extract {outcome.extract.elapsed:.1f} s)")  # fmt: skip
    most = users * per_window * (seconds / window + 1)
    print(f"  operations/s     {rate:.0f} = {rate / ideal:.1%} of the quota-bound ideal "
          f"{ideal:.0f}/s; {ops / most:.1%} of the most the windows allow in "
          f"{seconds:.0f} s")  # fmt: skip
    print(f"  throttled        {throttled} of {requests} requests = "
          f"{throttled / max(1, requests):.2%} {state['stats']['throttled'] or ''}")  # fmt: skip
    print(f"  calibrated cost  {estimates} ms/operation (server charges {args.op_ms})")
    print(f"  failed records   {outcome.report.failed}")
    return rate


async def bench(args: argparse.Namespace) -> None:
    env = {
        "BENCH_BD_SECRET": secrets.token_urlsafe(16),
        "BENCH_DV_SECRET": secrets.token_urlsafe(16),
    }
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="crmlift-bench-") as tmp:
        work = Path(tmp)
        configure_logging(args.log or work / "bench.log.jsonl")
        bd_args = ("--records", str(args.records), "--seed", "11", "--dirty",
                   "--latency-ms", "0-5", "--rate", str(args.source_rate),
                   "--burst", str(args.source_rate * 2),
                   "--client-secret-env", "BENCH_BD_SECRET")  # fmt: skip
        rates: dict[int, float] = {}
        async with AsyncExitStack() as stack:
            bd_url = await stack.enter_async_context(simulator("backdocket", *bd_args, env=env))
            source = BackDocketConfig(bd_url, "crmlift", Secret(env["BENCH_BD_SECRET"]))
            schema, licensed = await prepare_org(source, work, ADMIN, dynamics_schema)
            print(f"tenant {args.records} records; window {WINDOW_SECONDS:.0f} s / "
                  f"{args.time_scale:g} = {WINDOW_SECONDS / args.time_scale:.1f} s; "
                  f"{args.op_ms:g} ms per operation; batch size {args.batch_size}")  # fmt: skip
            for users in args.users:
                started = time.perf_counter()
                outcome, state, window, cpu = await one_run(
                    users=users, args=args, bd_url=bd_url, schema=schema,
                    licensed=licensed, work=work, env=env,
                )  # fmt: skip
                wall = time.perf_counter() - started
                rates[users] = report(users, outcome, state, window, args)
                print(f"  wall             {wall:.1f} s; CPU of crmlift and the simulators "
                      f"{cpu:.1f} s = {cpu / wall / (os.cpu_count() or 1):.0%} of "
                      f"{os.cpu_count()} cores (the journal's PostgreSQL not counted)")  # fmt: skip
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS          {rss:.0f} MB (crmlift, over all runs)")
        if len(rates) > 1:
            low, high = min(rates), max(rates)
            print(f"scaling           {high} users / {low} user: "
                  f"{rates[high] / rates[low]:.2f}x throughput")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, action="append", help="repeatable (default 1, 3)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--op-ms", type=float, default=130.0,
                        help="server time per operation, platform ms")  # fmt: skip
    parser.add_argument("--source-rate", type=float, default=2000.0)
    parser.add_argument("--log", type=Path, help="keep the runs' JSON log here")
    args = parser.parse_args()
    args.users = args.users or [1, 3]
    uvloop.run(bench(args))


if __name__ == "__main__":
    main()
