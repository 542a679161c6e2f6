"""Two operators start the same migration at once; only one may work on it.

A second ``crmlift migrate``, ``extract`` or ``--resume`` of a migration into the
same org exits 2 and names the process that holds it (run id, pid, host), before
it touches the journal or a platform. The lock dies with its process: after a
SIGKILL the run resumes without anyone clearing anything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from journal import Journal
from journal.runs import RunLocked
from service.pipeline import running
from service.plan import load_plan
from tests.test_crash_resume import SECRET, plan_text, progress, salesforce_org

DEADLINE = 120.0
"""Seconds any one process of these tests may take before the test gives up on it."""


@pytest.fixture
async def slow_source() -> AsyncIterator[tuple[Tenant, str]]:
    """A tenant served slowly enough that the first run is still extracting when the
    second process starts."""
    tenant = generate_tenant(300, seed=23)
    sim = BackDocketSim(tenant, SimSettings(rate=2, burst=2))
    runner, url = await serve(sim)
    try:
        yield tenant, url
    finally:
        await runner.cleanup()


def throttled(text: str) -> str:
    """The plan's source quota at 2 calls/s, so extraction takes many seconds."""
    return text.replace("rate = 150", "rate = 2").replace("burst = 30", "burst = 2")


async def crmlift(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *args, "--no-progress",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finished(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """Exit code and stderr, killing the process if it overruns the deadline."""
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


async def until(journal: Journal, name: str, proc: asyncio.subprocess.Process) -> str:
    """Wait until ``proc`` has staged records of migration ``name``; its run id."""
    async with asyncio.timeout(DEADLINE):
        while True:
            run_id, staged, _ = await progress(journal, name)
            if run_id is not None and staged > 0:
                return run_id
            if proc.returncode is not None:
                _, stderr = await proc.communicate()
                pytest.fail(f"the first run ended before the second started: {stderr[-2000:]!r}")
            with suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)


async def taken_over(journal: Journal, run_id: str, proc: asyncio.subprocess.Process) -> None:
    """Wait until the journal says ``proc`` is the process working on the run."""
    async with asyncio.timeout(DEADLINE):
        while True:
            process = (await journal.runs.get(run_id)).process
            if process is not None and process.pid == proc.pid:
                return
            if proc.returncode is not None:
                _, stderr = await proc.communicate()
                pytest.fail(f"the resume ended without taking the run over: {stderr[-2000:]!r}")
            with suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)


@pytest.mark.slow
async def test_second_process_on_one_migration_exits_2_naming_the_first(
    slow_source: tuple[Tenant, str], journal: Journal, database_dsn: str, tmp_path: Path
) -> None:
    tenant, source_url = slow_source
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    async with salesforce_org(tenant) as org:
        plan = tmp_path / "plan.toml"
        plan.write_text(throttled(plan_text("busy", source_url, org, tmp_path / "out")))
        first = await crmlift(env, "migrate", "--plan", str(plan))
        try:
            run_id = await until(journal, "busy", first)
            # The operator's colleague starts it again, resumes it, and extracts it.
            contenders = [
                await crmlift(env, "migrate", "--plan", str(plan)),
                await crmlift(env, "migrate", "--plan", str(plan), "--resume", run_id),
                await crmlift(env, "extract", "--plan", str(plan), "--resume", run_id),
                await crmlift(env, "extract", "--plan", str(plan)),
            ]
            outcomes = [await finished(p) for p in contenders]
            assert first.returncode is None, "the first run must not be disturbed"
        finally:
            if first.returncode is None:
                first.send_signal(signal.SIGKILL)
            await first.wait()

        for code, stderr in outcomes:
            assert code == 2, stderr[-2000:]
            assert "Traceback" not in stderr
            assert f"in use by run {run_id} (pid {first.pid} on host " in stderr
        # Only the first run exists: the refused processes created nothing.
        assert [r.run_id for r in await journal.runs.recent("busy")] == [run_id]

        # The SIGKILLed holder's lock died with it: a resume takes the run over.
        resumed = await crmlift(env, "migrate", "--plan", str(plan), "--resume", run_id)
        try:
            await taken_over(journal, run_id, resumed)
        finally:
            if resumed.returncode is None:
                resumed.send_signal(signal.SIGKILL)
            await resumed.wait()


async def test_two_resumes_of_one_run_the_second_is_refused_until_the_first_ends(
    journal: Journal, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(
        f"""
[migration]
name = "twice"
output_dir = "{tmp_path / "out"}"

[source]
base_url = "http://127.0.0.1:9/api"
client_id = "crmlift"
client_secret = {{ env = "TEST_SECRET" }}
"""
    )
    plan = load_plan(plan_file, {"TEST_SECRET": SECRET})
    async with running(journal, plan, None, "extract") as started:
        pass
    async with running(journal, plan, started.run_id, "extract"):
        with pytest.raises(RunLocked) as refused:
            async with running(journal, plan, started.run_id, "extract"):
                pytest.fail("a second resume of a held run must not start")
        assert f"in use by run {started.run_id} (pid {os.getpid()} on host " in str(refused.value)
        assert refused.value.exit_code == 2
    # Released when the first resume ends: the run can be resumed again.
    async with running(journal, plan, started.run_id, "extract") as again:
        assert again.run_id == started.run_id
