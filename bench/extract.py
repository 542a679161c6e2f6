"""Extraction benchmark: a 100k-record BackDocket tenant at 20 req/s with real latency.

Starts the simulator as its own process (so it does not share this process's
CPU time or memory), extracts the tenant into a fresh embedded journal (or
CRMLIFT_JOURNAL_DSN), and prints records/s, requests/s, the share of the
source's rate limit used, and this process's peak RSS.

    ./dev bench extract [--records 100000] [--latency-ms 50-150] [--throttle 0.05] [--retry-after 1]
        [--no-files]

``--throttle`` is the share of calls the simulator answers 429 (with its
``Retry-After``, ``--retry-after`` seconds) whatever our rate: another client on
the same tenant. The governor should take those as hiccups and keep the rate near
the limit (issue 11: at least 90% of it).
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import tempfile
from pathlib import Path

import aiohttp
import orjson
import uvloop

from adapters.simserver import ADMIN_HEADER, ADMIN_TOKEN_ENV, new_admin_token
from service.commands import simulator
from service.logs import configure_logging
from service.pipeline import run_extract
from service.plan import parse_plan

RATE = 20.0
SIM_ADMIN = {ADMIN_HEADER: os.environ.setdefault(ADMIN_TOKEN_ENV, new_admin_token())}
"""The admin token the simulator starts with (it reads it from the environment)."""


async def bench(
    records: int, latency: str, files: bool, window: int, throttle: float, retry_after: float
) -> None:
    secret = secrets.token_urlsafe(16)
    env_name = "CRMLIFT_BENCH_SECRET"
    os.environ[env_name] = secret
    sim_args = (
        "--records",
        str(records),
        "--seed",
        "11",
        "--latency-ms",
        latency,
        "--rate",
        str(RATE),
        "--burst",
        "40",
        "--client-secret-env",
        env_name,
        "--fault-429",
        str(throttle),
        "--fault-retry-after",
        str(retry_after),
    )
    with tempfile.TemporaryDirectory(prefix="crmlift-bench-") as tmp:
        async with simulator("backdocket", *sim_args, env={env_name: secret}) as url:
            raw = {
                "migration": {"name": "bench-extract", "output_dir": str(Path(tmp) / "out")},
                "source": {
                    "platform": "backdocket",
                    "base_url": url,
                    "client_id": "crmlift",
                    "client_secret": {"env": env_name},
                    "page_size": 500,
                },
                "extract": {"files": files, "window_records": window},
                "journal": {"data_dir": str(Path(tmp) / "data")},
            }
            plan = parse_plan(raw, env=os.environ, base=Path(tmp))
            configure_logging(Path(tmp) / "bench.log.jsonl")
            outcome = await run_extract(plan)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{url}/_sim/state", headers=SIM_ADMIN) as r,
            ):
                state = orjson.loads(await r.read())

    s, g = outcome.summary, outcome.governor.stats
    served = state["stats"]
    elapsed = s.elapsed
    client_rps = g.requests / elapsed
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"tenant            {records} records requested, {s.staged} staged, "
        f"{s.files_stored} files ({'on' if files else 'off'})"
    )
    print(f"elapsed           {elapsed:.1f} s")
    print(f"records/s         {s.staged / elapsed:.0f}")
    print(f"requests          {g.requests} sent, {served.get('requests')} served by the simulator")
    print(f"requests/s        {client_rps:.2f}")
    print(f"rate limit used   {client_rps / RATE:.1%} of {RATE:.0f} req/s")
    print(
        f"throttled (429)   {served.get('throttled_429')} served "
        f"({served.get('injected_429')} injected); {g.retries} retries"
    )
    print(f"hiccups           {g.hiccups} (only the refused call waited); {g.throttled} pauses")
    print(f"peak RSS          {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency-ms", default="50-150")
    parser.add_argument("--window-records", type=int, default=5000)
    parser.add_argument("--no-files", action="store_true")
    parser.add_argument(
        "--throttle", type=float, default=0.0, help="share of calls the simulator answers 429"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="seconds a throttled answer asks to wait"
    )
    args = parser.parse_args()
    files = not args.no_files
    uvloop.run(
        bench(
            args.records,
            args.latency_ms,
            files,
            args.window_records,
            args.throttle,
            args.retry_after,
        )
    )


if __name__ == "__main__":
    main()
