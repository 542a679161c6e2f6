"""Delta benchmark: a delta cycle of 1% changed records against a full rerun.

The Salesforce simulator runs as its own process; the BackDocket tenant (100k records by
default) is served from a thread of this process, on its own event loop, so the bench
can change it as a firm would between runs (``BackDocketSim.mutate``, a simulator-only
hook: BackDocket's API is read-only). After the full migration, 1% of the loaded records
change at the source and ``crmlift delta`` picks them up; then another 1% change and
``crmlift migrate`` runs again (it writes only changes, but reads the whole tenant).
Prints wall time, source calls and destination API calls of both, and what each wrote.

    ./dev bench delta [--records 100000] [--source-rate 100] [--share 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from bench_plan import ADMIN, salesforce_plan

from adapters.backdocket.client import BackDocketConfig
from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import generate_tenant
from adapters.secrets import Secret
from adapters.simserver import ADMIN_TOKEN_ENV, sim_state
from service.commands import prepare_org, simulator
from service.delta import run_delta
from service.logs import configure_logging
from service.mapping.backdocket_salesforce import LOAD_ORDER
from service.migrate import run_migrate

T = TypeVar("T")


class ThreadedSource:
    """The BackDocket simulator on its own loop in a thread: its latency and rate limit
    cost the bench's loop nothing, and its tenant can be changed between runs."""

    def __init__(self, sim: BackDocketSim) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="backdocket-sim", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner, self.url = self.loop.run_until_complete(serve(self.sim))
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def start(self) -> str:
        self._thread.start()
        self._ready.wait()
        return self.url

    async def call(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the simulator's loop (its state is that loop's alone)."""

        async def wrapped() -> T:
            return work()

        future = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)


def mutate_share(sim: BackDocketSim, share: float, seed: int) -> int:
    """Edit ``share`` of the loaded collections' records, spread by collection size."""
    rng = random.Random(seed)
    sizes = {c: len(sim.current_records(c)) for c in LOAD_ORDER}
    total = sum(sizes.values())
    wanted = max(1, round(total * share))
    names = list(sizes)
    for collection in rng.choices(names, weights=[sizes[c] for c in names], k=wanted):
        sim.mutate(collection)
    return wanted


def spent(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(API calls, Bulk jobs) the org served between two states."""
    b, a = before["stats"], after["stats"]
    return a["api_requests"] - b["api_requests"], a["bulk_jobs"] - b["bulk_jobs"]


async def timed(
    source: ThreadedSource, sf_url: str, token: str, run: Callable[[], Awaitable[T]]
) -> tuple[T, float, int, int, int]:
    """(outcome, seconds, source calls, destination calls, Bulk jobs) of one run."""
    before = await sim_state(sf_url, token)
    calls = await source.call(lambda: source.sim.stats.requests)
    started = time.perf_counter()
    outcome = await run()
    seconds = time.perf_counter() - started
    after = await sim_state(sf_url, token)
    source_calls = await source.call(lambda: source.sim.stats.requests) - calls
    api, jobs = spent(before, after)
    return outcome, seconds, source_calls, api, jobs


async def bench(records: int, source_rate: float, share: float, log: Path | None) -> None:
    token = secrets.token_urlsafe(16)
    secret = secrets.token_urlsafe(16)
    env = {"BENCH_BD_SECRET": secret, "BENCH_SF_SECRET": secrets.token_urlsafe(16),
           ADMIN_TOKEN_ENV: token}  # fmt: skip
    os.environ.update({k: v for k, v in env.items() if k != ADMIN_TOKEN_ENV})
    tenant = await asyncio.to_thread(generate_tenant, records, 11, dirty=True)
    settings = SimSettings(client_secret=secret, rate=source_rate, burst=source_rate * 2,
                           latency_min=0.05, latency_max=0.15, fault_seed=11)  # fmt: skip
    source = ThreadedSource(BackDocketSim(tenant, settings))
    bd_url = source.start()
    try:
        with tempfile.TemporaryDirectory(prefix="crmlift-bench-") as tmp:
            work = Path(tmp)
            async with AsyncExitStack() as stack:
                config = BackDocketConfig(bd_url, "crmlift", Secret(secret))
                schema_path, users_path = await prepare_org(config, work, ADMIN)
                sf_args = ("--schema", str(schema_path), "--users", str(users_path),
                           "--client-secret-env", "BENCH_SF_SECRET")  # fmt: skip
                sf_url = await stack.enter_async_context(simulator("salesforce", *sf_args, env=env))
                plan = salesforce_plan(
                    "bench-delta", work, bd_url, sf_url, source_rate, dict(os.environ)
                )
                configure_logging(log or work / "bench.log.jsonl")
                full, full_s, full_src, full_api, full_jobs = await timed(
                    source, sf_url, token, lambda: run_migrate(plan)
                )
                changed = await source.call(lambda: mutate_share(source.sim, share, 1))
                delta, delta_s, delta_src, delta_api, delta_jobs = await timed(
                    source, sf_url, token, lambda: run_delta(plan)
                )
                await source.call(lambda: mutate_share(source.sim, share, 2))
                rerun, rerun_s, rerun_src, rerun_api, rerun_jobs = await timed(
                    source, sf_url, token, lambda: run_migrate(plan)
                )
    finally:
        source.stop()
    delta_written = delta.report.written
    rerun_written = sum(r.created + r.updated for r in rerun.report.rows)
    first_written = sum(r.created + r.updated for r in full.report.rows)
    print(f"tenant            {full.extract.staged:,} source records; {changed:,} changed "
          f"({share:.1%}) before each of the delta and the rerun")  # fmt: skip
    print(f"{'':18}{'first load':>14}{'delta':>14}{'full rerun':>14}")
    print(f"{'records written':18}{first_written:>14,}{delta_written:>14,}{rerun_written:>14,}")
    print(f"{'wall time (s)':18}{full_s:>14.1f}{delta_s:>14.1f}{rerun_s:>14.1f}")
    print(f"{'source calls':18}{full_src:>14,}{delta_src:>14,}{rerun_src:>14,}")
    print(f"{'destination API':18}{full_api:>14,}{delta_api:>14,}{rerun_api:>14,}")
    print(f"{'Bulk jobs':18}{full_jobs:>14,}{delta_jobs:>14,}{rerun_jobs:>14,}")
    conflicts = len(delta.report.true_conflicts)
    print(f"delta             {delta.report.changed:,} changed records in its window "
          f"(since {delta.report.since}), {conflicts} conflicts")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--source-rate", type=float, default=100.0)
    parser.add_argument("--share", type=float, default=0.01, help="share of records changed")
    parser.add_argument("--log", type=Path, help="keep the runs' JSON log here")
    args = parser.parse_args()
    uvloop.run(bench(args.records, args.source_rate, args.share, args.log))


if __name__ == "__main__":
    main()
