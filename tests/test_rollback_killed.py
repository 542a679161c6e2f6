"""A rollback's container dies again and again; the operator reruns the same command.

A real ``crmlift rollback`` process is SIGKILLed at seeded random points of its deletes,
then started again with the same arguments until it finishes. The org must end exactly as
it was before the migration: nothing the run created left behind, nothing of the org's
own gone, and no rollback outcome journaled twice.
"""

# ruff: noqa: F811  (the source fixture is imported, and the test takes it by name)
from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from pathlib import Path

import pytest

from adapters.backdocket.tenant import Tenant
from journal import Journal
from service.migrate import run_migrate
from service.plan import load_plan
from tests.test_crash_resume import ORGS, SECRET, contents, plan_text, source  # noqa: F401


async def rollback(plan: Path, env: dict[str, str], run_id: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "rollback", "--plan", str(plan), "--run", run_id,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def undone(journal: Journal, run_id: str) -> int:
    """Records the rollbacks of ``run_id`` have journaled as deleted or restored."""
    value = await journal.pool.fetchval(
        """SELECT count(*) FROM rollback_ops WHERE target_run_id = $1
           AND outcome IN ('deleted', 'restored')""",
        run_id,
    )
    return int(value)


async def run_until(
    proc: asyncio.subprocess.Process, reached: Callable[[], Awaitable[bool]]
) -> bool:
    """Poll until ``reached()``; False if the process ended first."""
    while proc.returncode is None:
        if await reached():
            return True
        with suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=0.01)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("destination", sorted(ORGS))
async def test_a_rollback_killed_at_random_points_and_rerun_leaves_the_org_as_before(
    destination: str,
    source: tuple[Tenant, str],
    journal: Journal,
    database_dsn: str,
    tmp_path: Path,
) -> None:
    tenant, source_url = source
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    os.environ["TEST_SECRET"] = SECRET
    async with AsyncExitStack() as stack:
        org = await stack.enter_async_context(ORGS[destination](tenant))
        plan = tmp_path / "plan.toml"
        plan.write_text(plan_text("killed-rollback", source_url, org, tmp_path / "out"))
        before = contents(org)
        run_id = (await run_migrate(load_plan(plan, env))).run.run_id
        written = int(
            await journal.pool.fetchval(
                """SELECT count(DISTINCT (object, destination_id)) FROM operations
                   WHERE run_id = $1 AND action IN ('created', 'updated')""",
                run_id,
            )
        )
        assert contents(org) != before
        rng = random.Random(f"rollback-kills:{destination}")
        kills = sorted(rng.uniform(0.1, 0.9) * written for _ in range(3))

        proc = await rollback(plan, env, run_id)
        killed = 0
        for at in kills:

            async def reached(at: float = at) -> bool:
                return await undone(journal, run_id) >= at

            if not await run_until(proc, reached):
                break
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed += 1
            proc = await rollback(plan, env, run_id)
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert killed >= 2, "the rollback finished before the kills could land"
        after = contents(org)

    assert after == before
    # One rollback run continued throughout, and every record undone exactly once.
    runs = await journal.pool.fetch(
        "SELECT status FROM runs WHERE settings->>'rollback_of' = $1", run_id
    )
    assert [r["status"] for r in runs] == ["completed"]
    assert await undone(journal, run_id) == written
