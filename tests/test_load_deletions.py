"""An operator extracts a firm's BackDocket tenant while the firm keeps working: some
records are deleted before the load. Resuming the run into Salesforce must not
create what the source has deleted, and must say where every record went.

The source's deletion feed (``GET /api/v1/deletions``,
../shared/sources/backdocket-api.md) is the only way a deletion reaches the journal
here: the simulator deletes, the resumed run reads the feed again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from journal import Journal, JournalSettings
from journal.checkpoints import WindowCheckpoint
from journal.staging import StagedRow
from service.mapping.backdocket_salesforce import external_id, schema_plan
from service.migrate import run_migrate
from service.pipeline import run_extract
from service.plan import MigrationPlan, parse_plan

ADMIN = "admin@firm.example"
DELETED = {"companies": 2, "contacts": 4, "matters": 2, "tasks": 3, "notes": 2}
"""How many records of each collection the firm deletes between extract and load."""


@dataclass
class World:
    tenant: Tenant
    backdocket: BackDocketSim
    salesforce: SalesforceSim
    plan: MigrationPlan


@pytest.fixture
async def world(journal_settings: JournalSettings, tmp_path: Path) -> AsyncIterator[World]:
    tenant = generate_tenant(400, seed=11, dirty=False)
    org_users = (
        ("Firm Admin", ADMIN),
        *dict.fromkeys((u["name"], u["email"]) for u in tenant.records["users"] if u["email"]),
    )
    backdocket = BackDocketSim(tenant, SimSettings(rate=1000, burst=100))
    salesforce = SalesforceSim(
        schema_plan(tenant.records["custom_field_definitions"]),
        SfSimSettings(users=org_users, bulk_records_per_second=200_000),
    )
    bd_runner, bd_url = await serve(backdocket)
    sf_runner, sf_url = await serve_salesforce(salesforce)
    os.environ["TEST_BD_SECRET"], os.environ["TEST_SF_SECRET"] = "s3cret", "s3cret"
    raw: dict[str, Any] = {
        "migration": {"name": "firm-to-salesforce", "output_dir": str(tmp_path / "reports")},
        "source": {"platform": "backdocket", "base_url": bd_url, "client_id": "crmlift",
                   "client_secret": {"env": "TEST_BD_SECRET"},
                   "quota": {"rate": 1000, "burst": 100}},
        "extract": {"window_records": 200},
        "destination": {"platform": "salesforce", "login_url": sf_url, "client_id": "crmlift",
                        "client_secret": {"env": "TEST_SF_SECRET"},
                        "fallback_owner_email": ADMIN, "bulk_threshold": 150},
        "mapping": {"max_file_bytes": 25 * 1024 * 1024},
    }  # fmt: skip
    env = {
        **os.environ,
        "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
        "CRMLIFT_DATA_DIR": str(journal_settings.data_dir),
    }
    try:
        yield World(tenant, backdocket, salesforce, parse_plan(raw, env=env, base=tmp_path))
    finally:
        await bd_runner.cleanup()
        await sf_runner.cleanup()


def external_ids_in_org(sf: SalesforceSim) -> set[str]:
    """Every Source_System_ID__c the org holds, whatever the object."""
    return {
        row["Source_System_ID__c"]
        for table in sf.org.tables.values()
        for row in table.rows.values()
        if row.get("Source_System_ID__c")
    }


async def test_records_deleted_at_the_source_after_staging_are_not_loaded(
    world: World, journal: Journal
) -> None:
    extracted = await run_extract(world.plan)
    run_id = extracted.run.run_id

    # The firm keeps working: it deletes a few records the run has already staged.
    deleted: set[tuple[str, str]] = set()
    for collection, n in DELETED.items():
        for record in world.backdocket.current_records(collection)[:n]:
            world.backdocket.delete(collection, record["id"])
            deleted.add((collection, record["id"]))
    staged = {
        (r["collection"], r["source_id"])
        for r in await journal.pool.fetch(
            "SELECT collection, source_id FROM staged_records WHERE run_id = $1", run_id
        )
    }
    assert deleted <= staged

    outcome = await run_migrate(world.plan, resume=run_id)

    # The deletions reached the journal through the source's deletion feed...
    fed = await journal.pool.fetch(
        "SELECT collection, source_id FROM source_deletions WHERE run_id = $1", run_id
    )
    assert deleted <= {(r["collection"], r["source_id"]) for r in fed}
    # ...so nothing the firm deleted exists in Salesforce...
    in_org = external_ids_in_org(world.salesforce)
    assert not {external_id(c, i) for c, i in deleted} & in_org
    # ...while the records kept alongside them were loaded.
    kept = world.backdocket.current_records("contacts")[:5]
    assert {external_id("contacts", r["id"]) for r in kept} <= in_org

    # Each deleted record is journaled as skipped, and it is the only thing journaled for it.
    ops = await journal.pool.fetch(
        """SELECT collection, source_id, action, reason_code, message FROM operations
           WHERE run_id = $1""",
        run_id,
    )
    for collection, source_id in deleted:
        mine = [o for o in ops if (o["collection"], o["source_id"]) == (collection, source_id)]
        assert mine, f"{collection}/{source_id} is not accounted for"
        assert {(o["action"], o["reason_code"]) for o in mine} == {("skipped", "deleted_at_source")}
        assert all("deleted in backdocket" in o["message"] for o in mine)
    # Every staged record is still accounted for.
    assert staged <= {(o["collection"], o["source_id"]) for o in ops}

    # The operator reads it in the summary, with what this run did not do.
    assert outcome.report.deleted_at_source == DELETED
    run_reports = world.plan.output_dir / run_id
    summary = orjson.loads((run_reports / "summary.json").read_bytes())
    assert summary["deleted_at_source"] == DELETED
    markdown = (run_reports / "summary.md").read_text(encoding="utf-8")
    assert "## Deleted at the source (not loaded)" in markdown
    assert "- contacts: 4" in markdown
    assert "delta pickup / reconciliation" in markdown
    reasons = {(f.collection, f.source_id): f.reason_code for f in outcome.report.failures}
    assert all(reasons[key] == "deleted_at_source" for key in deleted)


async def stage_one(journal: Journal, run_id: str, source_id: str, updated_at: datetime) -> None:
    window = WindowCheckpoint(
        collection="contacts", kind="main", start=updated_at - timedelta(days=1), end=None,
        expected=None, cursor=None, pages=0, records=0, done=False,
    )  # fmt: skip
    row = StagedRow(
        "contacts", source_id, updated_at, orjson.dumps({"id": source_id}).decode(), "h"
    )
    await journal.staging.stage_page(run_id, window, [row], next_cursor=None)


async def test_a_deletion_retires_the_staged_version_only_when_it_is_not_older(
    journal: Journal,
) -> None:
    """The ordering rule: deleted_at >= updated_at retires the staged version (a tie
    goes to the deletion); a version written after the deletion is a restored record and
    loads; a record deleted, restored and deleted again keeps its latest deletion."""
    run = await journal.runs.create(
        migration="m", source="backdocket", destination="salesforce", settings={},
        fingerprint={},
    )  # fmt: skip
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for source_id in ("tie", "later", "restored", "twice", "live"):
        await stage_one(journal, run.run_id, source_id, at)
    await journal.deletions.stage(run.run_id, [
        ("contacts", "tie", at),
        ("contacts", "later", at + timedelta(microseconds=1)),
        ("contacts", "restored", at - timedelta(microseconds=1)),
        ("contacts", "twice", at - timedelta(hours=1)),
        ("contacts", "twice", at + timedelta(hours=1)),
    ])  # fmt: skip

    rows = {r.source_id: r async for r in journal.staging.for_load(run.run_id, "contacts")}

    assert {i for i, r in rows.items() if r.payload is None} == {"tie", "later", "twice"}
    assert rows["twice"].deleted_at == at + timedelta(hours=1)
    assert rows["restored"].deleted_at is None
    assert orjson.loads(rows["restored"].payload or "null") == {"id": "restored"}
    assert rows["live"].payload is not None


async def test_a_migration_while_the_firm_keeps_working_creates_no_deleted_record(
    world: World, journal: Journal
) -> None:
    """The firm edits, creates and deletes records while the migration reads (listings,
    counts and downloads alike): the extraction converges on the source's final state and
    the load creates nothing the source deleted."""
    world.backdocket.settings = replace(world.backdocket.settings, churn_every=4, churn_max=80)
    outcome = await run_migrate(world.plan)
    assert world.backdocket.stats.churn > 20  # the firm really worked during the run
    deleted = world.backdocket.deleted()
    assert deleted
    in_org = external_ids_in_org(world.salesforce)
    assert not {external_id(c, i) for c, i in deleted} & in_org
    # Every record the source still has was staged as it is now.
    for collection in ("companies", "contacts", "matters", "tasks"):
        live = {r["id"] for r in world.backdocket.current_records(collection)}
        staged = {
            source_id
            async for source_id, _ in journal.staging.payloads(outcome.run.run_id, collection)
        }
        assert live <= staged, collection
