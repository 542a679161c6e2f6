"""A container dies mid-migration, again and again; the operator resumes each time.

A real ``crmlift migrate`` process is SIGKILLed at seeded random points of the
extraction and of the load, then resumed with ``--resume RUN_ID`` until it
finishes. The destination must then hold exactly what an uninterrupted run puts
there: no record missing, none twice. A SIGTERM mid-load stops gracefully:
in-flight batches finish and are journaled, exit 75, and the last line says how
to resume.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.errors import ConfigError
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from journal import Journal
from service.mapping import backdocket_dynamics, backdocket_salesforce
from service.migrate import run_migrate
from service.pipeline import run_extract
from service.plan import load_plan

ADMIN = "admin@firm.example"
SECRET = "s3cret"


@dataclass
class Org:
    """A destination org the test can read back: its records by external id, per object."""

    destination: str
    objects: tuple[str, ...]
    external_ids: Callable[[str], list[str]]
    plan: str


def licensed(tenant: Tenant) -> tuple[tuple[str, str], ...]:
    users = tenant.records["users"]
    return (("Firm Admin", ADMIN), *dict.fromkeys((u["name"], u["email"]) for u in users[::2]))


@asynccontextmanager
async def salesforce_org(tenant: Tenant) -> AsyncIterator[Org]:
    sim = SalesforceSim(
        backdocket_salesforce.schema_plan(tenant.records["custom_field_definitions"]),
        SfSimSettings(users=licensed(tenant), bulk_records_per_second=20_000),
    )
    runner, url = await serve_salesforce(sim)
    objects = ("Account", "Contact", "Case_Matter__c", "Task", "Event", "ContentVersion")
    plan = f"""
[destination]
platform = "salesforce"
login_url = "{url}"
client_id = "crmlift"
client_secret = {{ env = "TEST_SECRET" }}
fallback_owner_email = "{ADMIN}"
bulk_threshold = 120
"""
    try:
        yield Org(
            "salesforce",
            objects,
            lambda name: [str(r["Source_System_ID__c"]) for r in sim.records(name)],
            plan,
        )
    finally:
        await runner.cleanup()


@asynccontextmanager
async def dynamics_org(tenant: Tenant) -> AsyncIterator[Org]:
    # Every org its own URL: id maps are kept per org, and these are two orgs.
    org_url = f"https://firm-{secrets.token_hex(4)}.crm.dynamics.com"
    settings = DataverseSimSettings(users=licensed(tenant), client_secret=SECRET, org_url=org_url)
    sim = DataverseSim(
        backdocket_dynamics.schema_plan(tenant.records["custom_field_definitions"]), settings
    )
    runner, url = await serve_dataverse(sim)
    objects = ("accounts", "contacts", "crm_matters", "tasks", "appointments", "annotations")
    plan = f"""
[destination]
platform = "dynamics"
environment_url = "{settings.org_url}"
api_url = "{url}"
authority_url = "{url}"
tenant_id = "{settings.tenant_id}"
client_id = "{settings.client_id}"
client_secret = {{ env = "TEST_SECRET" }}
fallback_owner_email = "{ADMIN}"
batch_size = 40
"""
    try:
        yield Org(
            "dynamics",
            objects,
            lambda name: [dataverse_key(name, r) for r in sim.records(name)],
            plan,
        )
    finally:
        await runner.cleanup()


def dataverse_key(table: str, row: dict[str, Any]) -> str:
    """What makes a row the same record on a rerun: its alternate key, or for a note
    (annotation takes no custom column, so no crm_sourceid) its deterministic primary key.
    https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation
    """
    return str(row["annotationid"] if table == "annotations" else row["crm_sourceid"])


ORGS = {"salesforce": salesforce_org, "dynamics": dynamics_org}


@dataclass(frozen=True)
class KillPoint:
    """Kill once ``at`` records are staged (extract) or have outcomes (load)."""

    phase: str
    at: float

    def reached(self, staged: int, done: int) -> bool:
        return (staged if self.phase == "extract" else done) >= self.at


def plan_text(name: str, source_url: str, org: Org, out: Path) -> str:
    return f"""
[migration]
name = "{name}"
output_dir = "{out}"

[source]
platform = "backdocket"
base_url = "{source_url}"
client_id = "crmlift"
client_secret = {{ env = "TEST_SECRET" }}
page_size = 50

[source.quota]
rate = 150
burst = 30
concurrency = 4

[extract]
window_records = 150

[load]
batch_records = 150
batches_in_flight = 4
{org.plan}"""


def contents(org: Org) -> dict[str, Counter[str]]:
    return {name: Counter(org.external_ids(name)) for name in org.objects}


async def start(plan: Path, env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "migrate", "--plan", str(plan), "--no-progress",
        *extra, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def progress(journal: Journal, name: str) -> tuple[str | None, int, int]:
    """The run, its staged records and its journaled outcomes so far."""
    runs = await journal.runs.recent(name)
    if not runs:
        return None, 0, 0
    run_id = runs[0].run_id
    staged = await journal.pool.fetchval(
        "SELECT count(*) FROM staged_records WHERE run_id = $1", run_id
    )
    done = await journal.pool.fetchval("SELECT count(*) FROM operations WHERE run_id = $1", run_id)
    return run_id, int(staged), int(done)


async def run_until(
    proc: asyncio.subprocess.Process,
    journal: Journal,
    name: str,
    reached: Callable[[int, int], bool],
) -> bool:
    """Poll the journal until ``reached(staged, done)``; False if the process ended first."""
    while proc.returncode is None:
        _, staged, done = await progress(journal, name)
        if reached(staged, done):
            return True
        with suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=0.01)
    return False


@pytest.fixture
async def source() -> AsyncIterator[tuple[Tenant, str]]:
    tenant = generate_tenant(900, seed=17, dirty=True)
    settings = SimSettings(rate=150, burst=30, latency_min=0.005, latency_max=0.02)
    sim = BackDocketSim(tenant, settings)
    runner, url = await serve(sim)
    try:
        yield tenant, url
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("destination", sorted(ORGS))
async def test_killed_at_random_points_and_resumed_the_destination_is_exact(
    destination: str,
    source: tuple[Tenant, str],
    journal: Journal,
    database_dsn: str,
    tmp_path: Path,
) -> None:
    tenant, source_url = source
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    os.environ["TEST_SECRET"] = SECRET
    total = sum(len(rows) for rows in tenant.records.values())
    rng = random.Random(f"kills:{destination}")
    # One kill while extracting, two while loading, at seeded random depths.
    kills = [
        KillPoint("extract", rng.uniform(0.2, 0.8) * total),
        KillPoint("load", rng.uniform(0.05, 0.45) * total),
        KillPoint("load", rng.uniform(0.5, 0.9) * total),
    ]
    async with AsyncExitStack() as stack:
        reference = await stack.enter_async_context(ORGS[destination](tenant))
        clean = tmp_path / "clean.toml"
        clean.write_text(plan_text("uninterrupted", source_url, reference, tmp_path / "r1"))
        await run_migrate(load_plan(clean, env))
        expected = contents(reference)

        org = await stack.enter_async_context(ORGS[destination](tenant))
        plan = tmp_path / "crashing.toml"
        plan.write_text(plan_text("crashing", source_url, org, tmp_path / "r2"))
        proc = await start(plan, env)
        killed = 0
        for point in kills:
            if not await run_until(proc, journal, "crashing", point.reached):
                break
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed += 1
            run_id, _, _ = await progress(journal, "crashing")
            assert run_id is not None
            proc = await start(plan, env, "--resume", run_id)
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert killed >= 2, "the run finished before the kills could land"
        got = contents(org)

    for name in expected:
        assert got[name] == expected[name], name
        assert all(n == 1 for n in got[name].values()), f"{name} has duplicates"
    run_id, _, _ = await progress(journal, "crashing")
    unaccounted = await journal.pool.fetchval(
        """SELECT count(*) FROM (SELECT collection, source_id FROM staged_records WHERE run_id = $1
           EXCEPT SELECT collection, source_id FROM operations WHERE run_id = $1) AS missing""",
        run_id,
    )
    assert unaccounted == 0
    assert (await journal.runs.get(str(run_id))).status == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("destination", sorted(ORGS))
async def test_sigterm_mid_load_drains_and_resumes(
    destination: str,
    source: tuple[Tenant, str],
    journal: Journal,
    database_dsn: str,
    tmp_path: Path,
) -> None:
    tenant, source_url = source
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    total = sum(len(rows) for rows in tenant.records.values())
    async with ORGS[destination](tenant) as org:
        plan = tmp_path / "plan.toml"
        plan.write_text(plan_text("stopping", source_url, org, tmp_path / "out"))
        proc = await start(plan, env)
        assert await run_until(proc, journal, "stopping", lambda s, done: done >= total * 0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await proc.communicate()
        run_id, _, done = await progress(journal, "stopping")
        assert proc.returncode == 75, stderr.decode()[-2000:]
        assert f"--resume {run_id}" in stderr.decode().strip().splitlines()[-1]
        assert (await journal.runs.get(str(run_id))).status == "interrupted"
        # Every batch that started was journaled: no job is left waiting for recovery.
        open_jobs = await journal.pool.fetchval(
            "SELECT count(*) FROM load_jobs WHERE run_id = $1 AND state IN ('open', 'uploaded')",
            run_id,
        )
        assert open_jobs == 0
        assert done < total

        resumed = await start(plan, env, "--resume", str(run_id))
        _, stderr = await resumed.communicate()
        assert resumed.returncode == 0, stderr.decode()[-2000:]
        for name, counts in contents(org).items():
            assert all(n == 1 for n in counts.values()), f"{name} has duplicates"


@pytest.fixture
async def two_sources() -> AsyncIterator[tuple[Tenant, str, str]]:
    """Two BackDocket tenants (two firms) on two loopback simulators."""
    tenant = generate_tenant(60, seed=5)
    runners = []
    urls = []
    for t in (tenant, generate_tenant(60, seed=6)):
        runner, url = await serve(BackDocketSim(t, SimSettings()))
        runners.append(runner)
        urls.append(url)
    try:
        yield tenant, urls[0], urls[1]
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_resume_refuses_a_plan_edited_to_another_source_or_mapping(
    two_sources: tuple[Tenant, str, str], journal: Journal, database_dsn: str, tmp_path: Path
) -> None:
    tenant, firm_a, firm_b = two_sources
    env = {"CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    async with salesforce_org(tenant) as org:
        plan = tmp_path / "plan.toml"
        text = plan_text("edited", firm_a, org, tmp_path / "out")
        plan.write_text(text)
        run = (await run_extract(load_plan(plan, env))).run
        staged = await journal.staging.counts(run.run_id)

        # Someone points the plan at another firm and resumes: two tenants in one staging.
        plan.write_text(text.replace(firm_a, firm_b))
        with pytest.raises(ConfigError) as other_source:
            await run_migrate(load_plan(plan, env), resume=run.run_id)
        assert f"source changed from 'backdocket {firm_a}' to 'backdocket {firm_b}'" in str(
            other_source.value
        )
        assert other_source.value.exit_code == 2

        # Or changes a mapping setting the loaded records already followed.
        plan.write_text(f"{text}\n[mapping]\nmax_file_bytes = 1024\n")
        with pytest.raises(ConfigError, match=r"mapping changed \(mapping\.max_file_bytes\)"):
            await run_extract(load_plan(plan, env), resume=run.run_id)

    assert await journal.staging.counts(run.run_id) == staged
    assert (await journal.runs.get(run.run_id)).status == "extracted"


async def test_extract_resume_of_a_completed_migration_is_refused_and_stays_completed(
    two_sources: tuple[Tenant, str, str], journal: Journal, database_dsn: str, tmp_path: Path
) -> None:
    tenant, firm_a, _ = two_sources
    env = {"CRMLIFT_JOURNAL_DSN": database_dsn, "TEST_SECRET": SECRET}
    async with salesforce_org(tenant) as org:
        plan = tmp_path / "plan.toml"
        plan.write_text(plan_text("done", firm_a, org, tmp_path / "out"))
        run = (await run_migrate(load_plan(plan, env))).run
        assert (await journal.runs.get(run.run_id)).status == "completed"

        # Refused, not merely left alone: a re-extraction would stage records no load reads.
        with pytest.raises(ConfigError, match=rf"run {run.run_id} is completed"):
            await run_extract(load_plan(plan, env), resume=run.run_id)

    assert (await journal.runs.get(run.run_id)).status == "completed"
