"""The operator's commands as they run them: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import generate_tenant
from adapters.salesforce.schema import OrgSchema
from journal import Journal
from service.cli import main
from tests.test_extract import assert_staged_exactly

SECRET_ENV = "CRMLIFT_TEST_BACKDOCKET_SECRET"


def plan_text(url: str, *, rate: int = 40) -> str:
    return f"""
[migration]
name = "cli-test"
output_dir = "reports"

[source]
platform = "backdocket"
base_url = "{url}"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
page_size = 50

[source.quota]
rate = {rate}
burst = 40
concurrency = 4

[extract]
window_records = 300
"""


@pytest.fixture
async def slow_source() -> AsyncIterator[tuple[BackDocketSim, str]]:
    """A tenant served slowly enough that a run can be stopped half-way."""
    sim = BackDocketSim(
        generate_tenant(2500, seed=21),
        SimSettings(rate=40, burst=40, latency_min=0.03, latency_max=0.06),
    )
    runner, url = await serve(sim)
    try:
        yield sim, url
    finally:
        await runner.cleanup()


def cli_env(database_dsn: str) -> dict[str, str]:
    return {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, SECRET_ENV: "s3cret"}


async def start_extract(plan: Path, env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "extract",
        "--plan",
        str(plan),
        "--no-progress",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_pages(journal: Journal, pages: int) -> str:
    """The run id, once the running extraction has staged ``pages`` pages."""
    for _ in range(600):
        runs = await journal.runs.recent("cli-test")
        if runs:
            windows = await journal.checkpoints.windows(runs[0].run_id)
            if sum(w.pages for w in windows) >= pages:
                return runs[0].run_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"the extraction never reached {pages} pages")


async def test_a_killed_extraction_resumes_and_stages_every_record_once(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    sim, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    first = await start_extract(plan, env)
    run_id = await wait_for_pages(journal, 12)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert (await journal.runs.get(run_id)).status == "running"  # it never got to say goodbye

    second = await start_extract(plan, env, "--resume", run_id)
    stdout, stderr = await second.communicate()
    assert second.returncode == 0, stderr.decode()
    assert run_id in stdout.decode()

    await assert_staged_exactly(journal, run_id, sim)
    windows = await journal.checkpoints.windows(run_id)
    assert all(w.done for w in windows)
    # Each page was staged exactly once across both processes: the windows'
    # record tallies add up to the staged total, with nothing read twice.
    staged = sum((await journal.staging.counts(run_id)).values())
    assert sum(w.records for w in windows) == staged
    assert (await journal.runs.get(run_id)).status == "extracted"
    assert (tmp_path / "reports" / run_id / "extract-summary.md").exists()


async def crmlift_runs(plan: Path, env: dict[str, str]) -> str:
    """``crmlift runs`` as the operator types it; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "runs", "--plan", str(plan),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_runs_shows_a_sigkilled_run_as_interrupted_and_resumable(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    proc = await start_extract(plan, env)
    try:
        run_id = await wait_for_pages(journal, 6)
        run = await journal.runs.get(run_id)
        assert run.process is not None
        assert run.process.pid == proc.pid  # the journal knows which process runs it
        assert f"running (pid {proc.pid})" in await crmlift_runs(plan, env)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)  # this test's own child, by its pid
        await asyncio.wait_for(proc.wait(), timeout=60)

    assert (await journal.runs.get(run_id)).status == "running"  # it never said goodbye
    resumable = f"resumable: crmlift extract --resume {run_id}"
    shown = await crmlift_runs(plan, env)
    assert f"{run_id}: interrupted (process gone, {resumable})" in shown

    resumed = await start_extract(plan, env, "--resume", run_id)
    stdout, stderr = await asyncio.wait_for(resumed.communicate(), timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    # The resumed process reports its own records and time, and the run's total apart.
    staged = sum((await journal.staging.counts(run_id)).values())
    summary = orjson.loads((tmp_path / "reports" / run_id / "extract-summary.json").read_bytes())
    assert summary["resumed"] is True
    assert summary["run_total"]["staged"] == staged
    assert 0 < summary["this_process"]["records_read"] < staged
    text = " ".join(stdout.decode().split())
    assert f"Run total: {staged} records staged" in text
    read = summary["this_process"]["records_read"]
    assert f"This process (resumed run): {read} records read" in text
    assert "gone" not in await crmlift_runs(plan, env)


async def test_sigterm_stops_gracefully_and_says_how_to_resume(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    sim, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    proc = await start_extract(plan, env)
    run_id = await wait_for_pages(journal, 6)
    proc.send_signal(signal.SIGTERM)
    _, stderr = await proc.communicate()
    assert proc.returncode == 75
    last_line = stderr.decode().strip().splitlines()[-1]
    assert f"--resume {run_id}" in last_line
    assert (await journal.runs.get(run_id)).status == "interrupted"

    resumed = await start_extract(plan, env, "--resume", run_id)
    _, stderr = await resumed.communicate()
    assert resumed.returncode == 0, stderr.decode()
    await assert_staged_exactly(journal, run_id, sim)


async def test_refused_credentials_are_one_clear_line_and_exit_3(
    database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = {**cli_env(database_dsn), SECRET_ENV: "wrong-secret"}
    proc = await start_extract(plan, env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 3
    text = stderr.decode()
    assert "credentials refused (invalid_client)" in text
    assert "wrong-secret" not in text


def test_a_bad_plan_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text("http://127.0.0.1:9").replace("page_size = 50", "page_size = 900"))
    os.environ.setdefault(SECRET_ENV, "s3cret-x")
    assert main(["extract", "--plan", str(plan)]) == 2
    assert "page_size must be 1..500" in capsys.readouterr().err


def test_help_explains_every_command_and_the_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in ("extract", "runs", "sim", "demo", "exit codes", "75"):
        assert word in result.stdout
    # Exit 7 says what it covers: a missing custom object only makes its records wait.
    exit_codes = " ".join(result.stdout.split())
    assert "a missing custom object does not stop the run: its records wait" in exit_codes
    assert "org setting" in exit_codes


DESTINATIONS = {
    "salesforce": f"""
[destination]
platform = "salesforce"
login_url = "https://firm.my.salesforce.com"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
fallback_owner_email = "admin@firm.example"
""",
    "dynamics": f"""
[destination]
platform = "dynamics"
environment_url = "https://firm.crm.dynamics.com"
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
fallback_owner_email = "admin@firm.example"

[mapping]
publisher_prefix = "hw"
""",
}


@pytest.mark.parametrize("destination", sorted(DESTINATIONS))
async def test_schema_writes_the_plan_the_admin_deploys(
    database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path, destination: str
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url) + DESTINATIONS[destination])
    out = tmp_path / "schema-plan.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "schema", "--plan", str(plan), "--out", str(out),
        env=cli_env(database_dsn), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    if destination == "salesforce":
        schema = OrgSchema.load(out)
        matter = schema.get("Case_Matter__c")
        assert matter is not None
        assert matter.field("Source_System_ID__c") is not None
        objects = len(schema.objects)
    else:
        tables = orjson.loads(out.read_bytes())["tables"]
        assert "hw_sourceid" in tables["hw_matter"]["columns"]
        assert tables["contact"]["alternate_keys"] == ["hw_sourceid"]
        objects = len(tables)
    assert stdout.decode().startswith(f"schema plan: {objects} objects")
    # The org settings the admin switches on are in the plan and on screen.
    settings = orjson.loads(out.read_bytes())["org_settings"]
    matter = "Case_Matter__c" if destination == "salesforce" else "hw_matter"
    wanted = {"enableActivities"} if destination == "salesforce" else {"HasActivities", "HasNotes"}
    assert {s["setting"] for s in settings[matter]} >= wanted
    for setting in wanted:
        assert f"org setting for {matter}: {setting}" in stdout.decode()
