"""An operator's destination org is wiped or refreshed between two runs (issue 10, item 4).

The id map says every record is there with the same hash, so the second run used
to call them all "unchanged" while the org held none of them. Now a rerun checks,
in bulk, that the records it would skip still exist, writes the missing ones again
(as created), and a changed org identity (a sandbox refresh: same URL, another org)
sets the old id map aside with a note in the report.

Everything is real but the platforms, which are our simulators on loopback.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import generate_tenant
from adapters.dynamics.client import DataverseClient, DataverseConfig
from adapters.dynamics.keys import decode_key
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.salesforce.ids import normalize
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.salesforce.sim_store import RecordError
from journal import Journal, JournalSettings
from journal.operations import retired_scope
from service.mapping import backdocket_dynamics, backdocket_salesforce
from service.migrate import MigrateOutcome, id_map_scope, run_migrate
from service.plan import MigrationPlan, parse_plan

ADMIN = "admin@firm.example"
SF_KEY = "Source_System_ID__c"
DV_KEY = "crm_sourceid"


@dataclass
class World:
    """A small BackDocket tenant, one destination simulator, and the operator's plan."""

    plan: MigrationPlan
    salesforce: SalesforceSim | None = None
    dataverse: DataverseSim | None = None


def _plan(raw_destination: dict[str, Any], bd_url: str, name: str, tmp: Path,
          journal_settings: JournalSettings) -> MigrationPlan:  # fmt: skip
    raw: dict[str, Any] = {
        "migration": {"name": name, "output_dir": str(tmp / "reports")},
        "source": {"platform": "backdocket", "base_url": bd_url, "client_id": "crmlift",
                   "client_secret": {"env": "TEST_BD_SECRET"},
                   "quota": {"rate": 1000, "burst": 100}},
        "extract": {"window_records": 200},
        "destination": raw_destination,
    }  # fmt: skip
    if raw_destination["platform"] == "dynamics":
        raw["mapping"] = {"publisher_prefix": "crm"}
    env = {
        **os.environ,
        "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
        "CRMLIFT_DATA_DIR": str(journal_settings.data_dir),
    }
    return parse_plan(raw, env=env, base=tmp)


@pytest.fixture(params=["salesforce", "dynamics"])
async def world(
    request: pytest.FixtureRequest, journal_settings: JournalSettings, tmp_path: Path
) -> AsyncIterator[World]:
    tenant = generate_tenant(120, seed=7)
    org_users = (
        ("Firm Admin", ADMIN),
        *dict.fromkeys((u["name"], u["email"]) for u in tenant.records["users"] if u.get("email")),
    )
    definitions = tenant.records["custom_field_definitions"]
    bd_runner, bd_url = await serve(BackDocketSim(tenant, SimSettings(rate=1000, burst=100)))
    os.environ["TEST_BD_SECRET"], os.environ["TEST_SF_SECRET"] = "s3cret", "s3cret"
    runner = None
    try:
        if request.param == "salesforce":
            sf = SalesforceSim(
                backdocket_salesforce.schema_plan(definitions),
                SfSimSettings(users=org_users, bulk_records_per_second=200_000),
            )
            runner, sf_url = await serve_salesforce(sf)
            destination = {"platform": "salesforce", "login_url": sf_url, "client_id": "crmlift",
                           "client_secret": {"env": "TEST_SF_SECRET"},
                           "fallback_owner_email": ADMIN, "bulk_threshold": 150}  # fmt: skip
            plan = _plan(destination, bd_url, "firm-to-sf", tmp_path, journal_settings)
            yield World(plan, salesforce=sf)
        else:
            dv = DataverseSim(
                backdocket_dynamics.schema_plan(definitions),
                replace(DataverseSimSettings(), users=org_users),
            )
            runner, dv_url = await serve_dataverse(dv)
            os.environ["TEST_DV_SECRET"] = dv.settings.client_secret
            destination = {
                "platform": "dynamics", "environment_url": dv.settings.org_url,
                "api_url": dv_url, "authority_url": dv_url, "tenant_id": dv.settings.tenant_id,
                "client_id": dv.settings.client_id, "client_secret": {"env": "TEST_DV_SECRET"},
                "fallback_owner_email": ADMIN, "batch_size": 50,
            }  # fmt: skip
            plan = _plan(destination, bd_url, "firm-to-dv", tmp_path, journal_settings)
            yield World(plan, dataverse=dv)
    finally:
        await bd_runner.cleanup()
        if runner is not None:
            await runner.cleanup()


def wipe(world: World) -> set[str]:
    """Delete every record the migration wrote, as an admin (or a reset) would; return
    the external ids of the records gone. Salesforce files stay: a ContentVersion is
    not deletable on its own."""
    if world.salesforce is not None:
        org = world.salesforce.org
        gone: set[str] = set()
        for table in org.tables.values():
            for record_id, row in list(table.rows.items()):
                if row.get(SF_KEY) and table.name != "ContentVersion":
                    gone.add(row[SF_KEY])
                    with contextlib.suppress(RecordError):  # cascaded with its parent
                        org.delete(record_id, hard=True)
        return gone
    assert world.dataverse is not None
    gone = set()
    for table in world.dataverse.tables.values():
        for ident, row in list(table.rows.items()):
            if row.get(DV_KEY):
                gone.add(decode_key(row[DV_KEY]))
                table.remove(ident)
    return gone


def held(world: World) -> set[str]:
    """External ids the destination holds now."""
    if world.salesforce is not None:
        tables = world.salesforce.org.tables.values()
        return {r[SF_KEY] for t in tables for r in t.rows.values() if r.get(SF_KEY)}
    assert world.dataverse is not None
    tables = world.dataverse.tables.values()
    return {decode_key(r[DV_KEY]) for t in tables for r in t.rows.values() if r.get(DV_KEY)}


def refresh_org(world: World) -> None:
    """A sandbox refresh: the same URL now serves another org, with another id."""
    if world.salesforce is not None:
        org = world.salesforce.org
        org.org_id = normalize("00D" + uuid.uuid4().hex[:12].upper()) or org.org_id
    else:
        assert world.dataverse is not None
        world.dataverse.organization_id = str(uuid.uuid4())


async def actions(journal: Journal, outcome: MigrateOutcome) -> dict[str, set[str]]:
    """Action → external ids of one run's outcomes."""
    rows = await journal.pool.fetch(
        "SELECT action, external_id FROM operations WHERE run_id = $1 AND external_id IS NOT NULL",
        outcome.run.run_id,
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["action"], set()).add(r["external_id"])
    return found


async def test_records_deleted_in_the_destination_are_loaded_again_and_counted_as_created(
    world: World, journal: Journal
) -> None:
    first = await run_migrate(world.plan)
    loaded = held(world)
    assert loaded

    gone = wipe(world)
    assert gone
    assert not (held(world) & gone)
    second = await run_migrate(world.plan)

    # Everything is back, and the summary says so: created, not unchanged.
    assert held(world) >= loaded
    done = await actions(journal, second)
    assert gone <= done["created"]
    assert not (gone & done.get("unchanged", set()))
    # The report names how many were missing, per object.
    missing = [n for n in second.report.notes if n.code.startswith("missing:")]
    assert missing
    assert sum(int(n.message.split()[0]) for n in missing) >= len(gone)
    assert first.run.run_id != second.run.run_id


async def test_an_untouched_org_stays_unchanged_on_a_rerun(world: World, journal: Journal) -> None:
    await run_migrate(world.plan)
    second = await run_migrate(world.plan)

    done = await actions(journal, second)
    assert "created" not in done
    assert not [n for n in second.report.notes if n.code.startswith(("missing:", "org_changed"))]


async def test_a_refreshed_org_sets_the_old_id_map_aside_and_loads_everything_as_new(
    world: World, journal: Journal
) -> None:
    await run_migrate(world.plan)
    assert world.plan.destination is not None
    scope = id_map_scope(world.plan, world.plan.destination)
    old_identity = await journal.pool.fetchval(
        "SELECT identity FROM org_identity WHERE migration = $1", scope
    )
    mapped = await journal.pool.fetchval("SELECT count(*) FROM id_map WHERE migration = $1", scope)
    assert old_identity
    assert mapped

    gone = wipe(world)
    refresh_org(world)
    second = await run_migrate(world.plan)

    [note] = [n for n in second.report.notes if n.code == "org_changed"]
    assert old_identity in note.message
    assert f"({mapped} records)" in note.message
    assert "treats the org as new" in note.message
    # The old org's map is kept aside, never read again; the new one is the org's.
    aside = await journal.pool.fetchval(
        "SELECT count(*) FROM id_map WHERE migration = $1", retired_scope(scope, old_identity)
    )
    assert aside == mapped
    done = await actions(journal, second)
    assert gone <= done["created"]
    assert not (gone & done.get("unchanged", set()))
    assert not [n for n in second.report.notes if n.code.startswith("missing:")]


@pytest.mark.parametrize("world", ["dynamics"], indirect=True)
async def test_checking_which_dataverse_rows_still_exist_costs_one_request_per_hundred_ids(
    world: World, journal: Journal
) -> None:
    """A rerun's existence check asks ``Microsoft.Dynamics.CRM.In`` about 100 ids per GET
    (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/in),
    so service protection (api-limits) is charged ids/100 requests, not one per id."""
    await run_migrate(world.plan)
    assert world.dataverse is not None
    contacts = world.dataverse.tables["contacts"]
    there = sorted(contacts.rows)
    deleted = there[: len(there) // 3]
    for ident in deleted:
        contacts.remove(ident)
    never = [str(uuid.uuid4()) for _ in range(300)]
    asked = [i.upper() for i in there] + never
    destination = world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    async with DataverseClient(destination.config, destination.quota) as client:
        await client.existing_ids("contact", asked[:1])  # metadata read once, not counted
        before = world.dataverse.stats.operations
        found = await client.existing_ids("contact", asked)
        spent = world.dataverse.stats.operations - before

    assert found == {i.upper() for i in there[len(deleted) :]}
    assert len(asked) > 300
    assert spent == -(-len(asked) // 100)
