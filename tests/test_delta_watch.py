"""The operator watches the cutover window with `crmlift delta --watch` and stops it with
SIGTERM between two cycles: the watch ends cleanly (exit 0), every cycle it ran is a
completed run, and none is left running."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from journal import Journal
from service.migrate import run_migrate
from tests.test_migrate_salesforce import World, org_schema_edit, plan_toml, world  # noqa: F401


async def deltas(journal: Journal) -> list[str]:
    rows = await journal.pool.fetch(
        "SELECT status FROM runs WHERE settings->>'command' = 'delta' ORDER BY started_at"
    )
    return [r["status"] for r in rows]


async def test_sigterm_between_cycles_ends_the_watch_cleanly(
    world: World, tmp_path: Path, journal: Journal
) -> None:
    await run_migrate(world.plan)
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(world))
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": world.plan.journal.dsn or ""}
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "delta", "--plan", str(plan), "--no-progress",
        "--watch", "2m", "--until", until, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # The first cycle completes; the next is two minutes away: the watch is waiting.
    while proc.returncode is None and "completed" not in await deltas(journal):
        with suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=0.05)
    assert proc.returncode is None, "the watch ended on its own"

    proc.send_signal(signal.SIGTERM)
    _, stderr = await proc.communicate()

    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert await deltas(journal) == ["completed"]
