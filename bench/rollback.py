"""Rollback benchmark: the bench migration into the Salesforce simulator, then undone.

Both simulators run as their own processes. The migration loads a generated BackDocket
tenant (100k records by default); ``crmlift rollback`` of that run then deletes what it
created. Prints wall time, API calls and Bulk API jobs of the load and of the rollback
side by side (as the simulator counted them), and the org's record counts before the
run and after the rollback, which must be equal.

    ./dev bench rollback [--records 100000] [--source-rate 100] [--no-files] [--hard-delete]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from bench_plan import ADMIN, salesforce_plan

from adapters.backdocket.client import BackDocketConfig
from adapters.secrets import Secret
from adapters.simserver import ADMIN_HEADER, ADMIN_TOKEN_ENV, sim_state
from service.commands import prepare_org, simulator
from service.logs import configure_logging
from service.migrate import run_migrate
from service.rollback import run_rollback


async def grant_hard_delete(url: str, token: str) -> None:
    """As an admin assigning the "Bulk API Hard Delete" permission set."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/_sim/permissions",
            json={"PermissionsBulkApiHardDelete": True},
            headers={ADMIN_HEADER: token},
        ) as resp,
    ):
        resp.raise_for_status()


def spent(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int, int]:
    """(API calls, Bulk jobs, Bulk batches) between two states."""
    b, a = before["stats"], after["stats"]
    return (
        a["api_requests"] - b["api_requests"],
        a["bulk_jobs"] - b["bulk_jobs"],
        a["bulk_batches"] - b["bulk_batches"],
    )


async def bench(
    records: int, source_rate: float, files: bool, hard_delete: bool, log: Path | None
) -> None:
    token = secrets.token_urlsafe(16)
    env = {"BENCH_BD_SECRET": secrets.token_urlsafe(16),
           "BENCH_SF_SECRET": secrets.token_urlsafe(16), ADMIN_TOKEN_ENV: token}  # fmt: skip
    os.environ.update({k: v for k, v in env.items() if k != ADMIN_TOKEN_ENV})
    with tempfile.TemporaryDirectory(prefix="crmlift-bench-") as tmp:
        work = Path(tmp)
        bd_args = ("--records", str(records), "--seed", "11", "--dirty", "--latency-ms",
                   "50-150", "--rate", str(source_rate), "--burst", str(source_rate * 2),
                   "--client-secret-env", "BENCH_BD_SECRET")  # fmt: skip
        async with AsyncExitStack() as stack:
            bd_url = await stack.enter_async_context(simulator("backdocket", *bd_args, env=env))
            source = BackDocketConfig(bd_url, "crmlift", Secret(env["BENCH_BD_SECRET"]))
            schema_path, users_path = await prepare_org(source, work, ADMIN)
            sf_args = ("--schema", str(schema_path), "--users", str(users_path),
                       "--client-secret-env", "BENCH_SF_SECRET")  # fmt: skip
            sf_url = await stack.enter_async_context(simulator("salesforce", *sf_args, env=env))
            if hard_delete:
                await grant_hard_delete(sf_url, token)
            plan = salesforce_plan(
                "bench-rollback", work, bd_url, sf_url, source_rate, dict(os.environ), files=files
            )
            configure_logging(log or work / "bench.log.jsonl")

            empty = await sim_state(sf_url, token)
            started = time.perf_counter()
            outcome = await run_migrate(plan)
            load_seconds = time.perf_counter() - started
            loaded = await sim_state(sf_url, token)
            started = time.perf_counter()
            undone = await run_rollback(plan, outcome.run.run_id)
            rollback_seconds = time.perf_counter() - started
            after = await sim_state(sf_url, token)

    rows = outcome.report.rows
    written = sum(r.created + r.updated for r in rows)
    report = undone.report
    deleted = sum(t.deleted for t in report.objects.values())
    restored = sum(t.restored for t in report.objects.values())
    load_calls, load_jobs, load_batches = spent(empty, loaded)
    undo_calls, undo_jobs, undo_batches = spent(loaded, after)
    mode = "hardDelete (granted)" if hard_delete else "delete (Recycle Bin: no permission)"
    print(f"tenant            {outcome.extract.staged} source records, files "
          f"{'on' if files else 'off'}; Bulk delete jobs as {mode}")  # fmt: skip
    print(f"{'':18}{'load':>14}{'rollback':>14}")
    print(f"{'records':18}{written:>14,}{deleted + restored:>14,}")
    print(f"{'wall time (s)':18}{load_seconds:>14.1f}{rollback_seconds:>14.1f}")
    print(f"{'API calls':18}{load_calls:>14,}{undo_calls:>14,}")
    print(f"{'Bulk jobs':18}{load_jobs:>14,}{undo_jobs:>14,}")
    print(f"{'Bulk batches':18}{load_batches:>14,}{undo_batches:>14,}")
    print(f"rollback          {deleted:,} deleted, {restored:,} restored, "
          f"{report.conflicts} conflicts, {report.failures} failures")  # fmt: skip
    changed = {
        name: (count, after["objects"].get(name, 0))
        for name, count in empty["objects"].items()
        if after["objects"].get(name, 0) != count
    }
    extra = {n: c for n, c in after["objects"].items() if n not in empty["objects"] and c}
    total_before, total_after = sum(empty["objects"].values()), sum(after["objects"].values())
    verdict = "back to its pre-run counts" if not changed and not extra else "NOT restored"
    print(f"org               {total_before:,} records before the run, "
          f"{sum(loaded['objects'].values()):,} loaded, {total_after:,} after the rollback: "
          f"{verdict}")  # fmt: skip
    for name, (was, now) in sorted(changed.items()):
        print(f"  {name}: {was} before, {now} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--source-rate", type=float, default=100.0)
    parser.add_argument("--no-files", action="store_true")
    parser.add_argument(
        "--hard-delete", action="store_true",
        help="grant the org's users Bulk API Hard Delete first (records skip the Recycle Bin)",
    )  # fmt: skip
    parser.add_argument("--log", type=Path, help="keep the runs' JSON log here")
    args = parser.parse_args()
    uvloop.run(bench(args.records, args.source_rate, not args.no_files, args.hard_delete,
                     args.log))  # fmt: skip


if __name__ == "__main__":
    main()
