"""What each CLI command does, on the event loop; ``cli.py`` only parses and exits."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from adapters.backdocket.sim import SimSettings, run_forever
from adapters.errors import ConfigError, PlatformUnavailable
from journal import open_journal
from service.logs import configure_logging
from service.pipeline import ExtractOutcome, run_extract
from service.plan import MigrationPlan, load_plan
from service.progress import ProgressBoard

console = Console(stderr=True)
out = Console()


async def extract(args: argparse.Namespace) -> int:
    """``crmlift extract``: run (or resume) an extraction with progress bars."""
    plan: MigrationPlan = args.loaded_plan
    outcome = await _extract_with_progress(plan, args.resume, show=not args.no_progress)
    _print_extract_summary(outcome)
    return 0


async def runs(args: argparse.Namespace) -> int:
    """``crmlift runs``: the plan's recent runs."""
    plan: MigrationPlan = args.loaded_plan
    table = Table(title=f"runs of {plan.name}")
    for column in ("run", "status", "started (UTC)", "finished (UTC)", "message"):
        table.add_column(column)
    async with open_journal(plan.journal) as journal:
        for run in await journal.runs.recent(plan.name):
            table.add_row(
                run.run_id,
                run.status,
                f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
                run.message or "",
            )
    out.print(table)
    return 0


async def sim(args: argparse.Namespace) -> int:
    """``crmlift sim backdocket``: serve a generated tenant until stopped."""
    secret = os.environ.get(args.client_secret_env)
    if not secret:
        raise ConfigError(f"set {args.client_secret_env} to the secret the simulator accepts")
    low, high = parse_latency(args.latency_ms)
    settings = SimSettings(
        client_id=args.client_id,
        client_secret=secret,
        token_ttl=args.token_ttl,
        rate=args.rate,
        burst=args.burst,
        latency_min=low,
        latency_max=high,
        fault_503_rate=args.fault_503,
        fault_429_rate=args.fault_429,
        mutate_every=args.mutate_every,
        fault_seed=args.seed,
    )

    def ready(url: str) -> None:
        # The first stdout line is the contract with whoever started us.
        print(f"READY {url}", flush=True)

    with contextlib.suppress(asyncio.CancelledError):
        await run_forever(
            records=args.records,
            seed=args.seed,
            dirty=args.dirty,
            settings=settings,
            host=args.host,
            port=args.port,
            on_ready=ready,
        )
    return 0


async def demo(args: argparse.Namespace) -> int:
    """``crmlift demo``: simulator + embedded journal + extraction + report, then clean up."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    env_name = "CRMLIFT_DEMO_BACKDOCKET_SECRET"
    os.environ[env_name] = secret
    console.print(f"[bold]crmlift demo[/]: generating a {args.records}-record BackDocket tenant…")
    async with backdocket_simulator(
        "--records",
        str(args.records),
        "--seed",
        str(args.seed),
        "--dirty",
        "--client-secret-env",
        env_name,
        "--latency-ms",
        "30-150",
        "--mutate-every",
        "50",
        env={env_name: secret},
    ) as base_url:
        plan_path = workdir / "plan.toml"
        plan_path.write_text(demo_plan(base_url, env_name), encoding="utf-8")
        console.print(f"simulator at {base_url}; plan written to {plan_path}")
        plan = load_plan(plan_path)
        configure_logging(plan.output_dir / "crmlift.log.jsonl")
        outcome = await _extract_with_progress(plan, None, show=True)
    _print_extract_summary(outcome)
    console.print(f"log: {plan.output_dir / 'crmlift.log.jsonl'}")
    return 0


def demo_plan(base_url: str, secret_env: str) -> str:
    """The plan the demo writes: the embedded journal and the simulator as source."""
    return f"""# Written by `crmlift demo`.
[migration]
name = "demo-backdocket"
output_dir = "reports"

[source]
platform = "backdocket"
base_url = "{base_url}"
client_id = "crmlift"
client_secret = {{ env = "{secret_env}" }}
page_size = 500

[source.quota]
rate = 20
burst = 40
concurrency = 8

[extract]
window_records = 2000
files = true
"""


@contextlib.asynccontextmanager
async def backdocket_simulator(*sim_args: str, env: dict[str, str]) -> AsyncIterator[str]:
    """Start ``crmlift sim backdocket`` as a child process; yield its URL; stop it by PID."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "sim",
        "backdocket",
        *sim_args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
        text = line.decode().strip()
        if not text.startswith("READY "):
            raise PlatformUnavailable("backdocket-sim", "start", f"said {text!r}")
        yield text.removeprefix("READY ")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _extract_with_progress(
    plan: MigrationPlan, resume: str | None, *, show: bool
) -> ExtractOutcome:
    board = ProgressBoard()
    if not show:
        return await run_extract(plan, resume=resume, progress=board)
    columns = (
        TextColumn("[bold]{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as bars:
        drawer = asyncio.create_task(_draw(board, bars), name="progress:draw")
        try:
            return await run_extract(plan, resume=resume, progress=board)
        finally:
            drawer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drawer
            _sync(board, bars, {})


async def _draw(board: ProgressBoard, bars: Progress) -> None:
    ids: dict[str, TaskID] = {}
    while True:
        _sync(board, bars, ids)
        await asyncio.sleep(0.25)


def _sync(board: ProgressBoard, bars: Progress, ids: dict[str, TaskID]) -> None:
    for track in list(board.tracks.values()):
        if track.name not in ids:
            ids[track.name] = bars.add_task(track.name, total=track.total, rate=0.0)
        bars.update(
            ids[track.name],
            completed=track.done,
            total=track.total or None,
            rate=track.rate(),
        )


def _print_extract_summary(outcome: ExtractOutcome) -> None:
    s = outcome.summary
    table = Table(title=f"extraction {outcome.run.run_id}")
    for column in ("collection", "expected", "staged", "windows", "pages", "issues"):
        table.add_column(column, justify="left" if column == "collection" else "right")
    for c in s.collections:
        table.add_row(
            c.collection,
            str(c.expected),
            str(c.staged),
            str(c.windows),
            str(c.pages),
            str(c.issues),
        )
    table.add_row(
        "[bold]total",
        str(sum(c.expected for c in s.collections)),
        f"[bold]{s.staged}",
        "",
        "",
        str(s.issues),
    )
    out.print(table)
    g = outcome.governor.stats
    out.print(
        f"{s.staged} records staged in {s.elapsed:.1f} s "
        f"({s.staged / max(s.elapsed, 1e-9):.0f}/s); "
        f"{g.requests} requests ({g.observed_rate():.1f}/s), {g.throttled} throttled, "
        f"{g.retries} retries; {s.deletions} deletions; files stored {s.files_stored}, "
        f"failed {s.files_failed}"
    )
    out.print(f"reports: {outcome.reports[0]}  {outcome.reports[1]}")


def parse_latency(text: str) -> tuple[float, float]:
    """``30-250`` (ms) → (0.03, 0.25) seconds."""
    try:
        low, _, high = text.partition("-")
        lo, hi = float(low), float(high or low)
    except ValueError as exc:
        raise ConfigError(f"--latency-ms {text!r} must look like 30-250") from exc
    if lo < 0 or hi < lo:
        raise ConfigError(f"--latency-ms {text!r} must be a non-negative, ascending range")
    return lo / 1000, hi / 1000
