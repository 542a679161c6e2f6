"""An operator migrates a dirty BackDocket tenant into Dynamics 365 Sales (Dataverse).

The same commands, reports and guarantees as the Salesforce pair: everything is
real but the two SaaS platforms, which are our simulators on loopback — the
journal is PostgreSQL, the calls are HTTP, every write is a ``$batch`` upsert
on the alternate key, and the service protection limits are enforced.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.dynamics.client import DataverseConfig
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.errors import SchemaMissing
from journal import Journal, JournalSettings
from service.mapping.backdocket_dynamics import base64_size, is_organization, schema_plan
from service.migrate import run_migrate
from service.plan import MigrationPlan, parse_plan

ADMIN = "admin@firm.example"
SECOND_APP = ("9c0a3f7e-2b1d-4e55-8f11-7d2a6c3b9e20", "s3cond")
SchemaEdit = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class World:
    """The firm's BackDocket tenant, its Dataverse environment, and the operator's plan."""

    tenant: Tenant
    backdocket: BackDocketSim
    dataverse: DataverseSim
    plan: MigrationPlan
    unmatched_users: set[str]


@pytest.fixture
def org_schema_edit(request: pytest.FixtureRequest) -> SchemaEdit:
    """How the admin provisioned the schema plan: in full unless a test says otherwise."""
    edit: SchemaEdit = getattr(request, "param", lambda schema: schema)
    return edit


@pytest.fixture
def sim_settings(request: pytest.FixtureRequest) -> DataverseSimSettings:
    """The environment's limits: Dataverse's defaults unless a test says otherwise."""
    settings: DataverseSimSettings = getattr(request, "param", DataverseSimSettings())
    return settings


@pytest.fixture
async def world(
    journal_settings: JournalSettings,
    tmp_path: Path,
    org_schema_edit: SchemaEdit,
    sim_settings: DataverseSimSettings,
) -> AsyncIterator[World]:
    tenant = generate_tenant(1200, seed=31, dirty=True)
    users = tenant.records["users"]
    unmatched = {u["id"] for i, u in enumerate(users) if i % 3 == 2 or not u.get("email")}
    licensed = (
        ("Firm Admin", ADMIN),
        *dict.fromkeys((u["name"], u["email"]) for u in users if u["id"] not in unmatched),
    )
    backdocket = BackDocketSim(tenant, SimSettings(rate=1000, burst=100))
    dataverse = DataverseSim(
        org_schema_edit(schema_plan(tenant.records["custom_field_definitions"])),
        replace(sim_settings, users=licensed, applications=(SECOND_APP,)),
    )
    bd_runner, bd_url = await serve(backdocket)
    dv_runner, dv_url = await serve_dataverse(dataverse)
    os.environ["TEST_BD_SECRET"] = "s3cret"
    os.environ["TEST_DV_SECRET"] = dataverse.settings.client_secret
    os.environ["TEST_DV_SECRET_2"] = SECOND_APP[1]
    raw: dict[str, Any] = {
        "migration": {"name": "firm-to-dynamics", "output_dir": str(tmp_path / "reports")},
        "source": {"platform": "backdocket", "base_url": bd_url, "client_id": "crmlift",
                   "client_secret": {"env": "TEST_BD_SECRET"},
                   "quota": {"rate": 1000, "burst": 100}},
        "extract": {"window_records": 200},
        "destination": {
            "platform": "dynamics", "environment_url": dataverse.settings.org_url,
            "api_url": dv_url, "authority_url": dv_url,
            "tenant_id": dataverse.settings.tenant_id,
            "client_id": dataverse.settings.client_id,
            "client_secret": {"env": "TEST_DV_SECRET"},
            "applications": [{"client_id": SECOND_APP[0],
                              "client_secret": {"env": "TEST_DV_SECRET_2"}}],
            "fallback_owner_email": ADMIN, "batch_size": 50,
        },
        "mapping": {"publisher_prefix": "crm"},
    }  # fmt: skip
    env = {
        **os.environ,
        "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
        "CRMLIFT_DATA_DIR": str(journal_settings.data_dir),
    }
    plan = parse_plan(raw, env=env, base=tmp_path)
    try:
        yield World(tenant, backdocket, dataverse, plan, unmatched)
    finally:
        await bd_runner.cleanup()
        await dv_runner.cleanup()


def by_source_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["crm_sourceid"]: r for r in rows if r.get("crm_sourceid")}


def user_id(dv: DataverseSim, email: str) -> str:
    """The systemuserid the environment gave the user with this email."""
    wanted = email.strip().lower()
    [found] = [
        u["systemuserid"]
        for u in dv.records("systemusers")
        if str(u.get("internalemailaddress", "")).lower() == wanted
    ]
    return str(found)


def dataverse_time(stamp: str) -> str:
    """A source timestamp as Dataverse keeps ``createdon``: whole seconds, UTC."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_dirty_tenant_lands_in_dataverse_with_every_record_accounted_for(
    world: World, journal: Journal
) -> None:
    outcome = await run_migrate(world.plan)
    run_id = outcome.run.run_id
    dv, records = world.dataverse, world.tenant.records

    # Every staged source record ends as loaded, skipped or failed, with the reason.
    unaccounted = await journal.pool.fetch(
        """SELECT collection, source_id FROM staged_records WHERE run_id = $1
           EXCEPT SELECT collection, source_id FROM operations WHERE run_id = $1""",
        run_id,
    )
    assert unaccounted == []
    for failure in outcome.report.failures:
        assert failure.reason_code
        assert failure.message

    accounts = by_source_id(dv.records("accounts"))
    contacts = by_source_id(dv.records("contacts"))
    matters = by_source_id(dv.records("crm_matters"))
    admin = user_id(dv, ADMIN)

    # Organization contacts became accounts, created before the people who point at them;
    # people point at their most recently linked company.
    for contact in records["contacts"]:
        if is_organization(contact):
            assert f"contact:{contact['id']}" in accounts
            assert contact["id"] not in contacts
            continue
        loaded = contacts.get(contact["id"])
        if loaded is None:
            continue
        links = contact["company_links"]
        if links:
            latest = max(link["linked_at"] for link in links)
            primary = next(lk["company_id"] for lk in links if lk["linked_at"] == latest)
            if primary in accounts:
                assert loaded["_parentcustomerid_value"] == accounts[primary]["accountid"]
        if contact.get("email") and "@" in str(contact["email"]):
            assert loaded["emailaddress1"] == str(contact["email"]).strip()

    # The account hierarchy, set in the second pass.
    for company in records["companies"]:
        parent = company.get("parent_company_id")
        if parent and parent != company["id"] and parent in accounts and company["id"] in accounts:
            assert (
                accounts[company["id"]]["_parentaccountid_value"] == accounts[parent]["accountid"]
            )

    # Original creation times survive; owners resolve by email or fall back.
    users = {u["id"]: u for u in records["users"]}
    licensed = {str(u["internalemailaddress"]).lower() for u in dv.records("systemusers")}
    for matter in records["matters"]:
        loaded = matters[matter["id"]]
        assert loaded["createdon"] == dataverse_time(matter["created_at"])
        attorney = users.get(matter.get("assigned_attorney_id") or "")
        email = str((attorney or {}).get("email") or "").strip().lower()
        expected = user_id(dv, email) if email in licensed else admin
        assert loaded["_ownerid_value"] == expected

    # Claims: revenue-generating ones are opportunities, the rest claims under their matter.
    opportunities = by_source_id(dv.records("opportunities"))
    claims = by_source_id(dv.records("crm_claims"))
    for claim in records["claims"]:
        if not claim.get("matter_id"):
            continue
        if claim.get("revenue_generating") is True:
            assert claim["id"] in opportunities
        elif claim["matter_id"] in matters:
            loaded = claims[claim["id"]]
            assert loaded["_crm_matterid_value"] == matters[claim["matter_id"]]["crm_matterid"]

    # Tasks regard their matter, else their contact; a matter that does not exist in
    # BackDocket leaves the task unlinked, and the notes say so.
    tasks = by_source_id(dv.records("tasks"))
    notes_by_record: dict[tuple[str, str], list[str]] = {}
    for note in outcome.report.notes:
        notes_by_record.setdefault((note.collection, note.source_id), []).append(note.message)
    for task in records["tasks"]:
        loaded = tasks.get(task["id"])
        if loaded is None:
            continue
        regarding = loaded.get("_regardingobjectid_value")
        if task.get("matter_id") in matters:
            assert regarding == matters[task["matter_id"]]["crm_matterid"]
        elif task.get("matter_id"):
            assert regarding is None
            assert any("was not migrated" in m for m in notes_by_record[("tasks", task["id"])])
        elif task.get("contact_id") in contacts:
            assert regarding == contacts[task["contact_id"]]["contactid"]

    # Documents within the attachment limit are notes carrying the file; larger ones wait
    # in staging for SharePoint, reported by name.
    notes = by_source_id(dv.records("annotations"))
    for document in records["documents"]:
        if base64_size(document["size_bytes"]) > 5 * 1024 * 1024:
            assert document["id"] not in notes
            [held] = [f for f in outcome.report.failures if f.source_id == document["id"]]
            assert held.reason_code == "deferred_to_sharepoint"
            assert document["filename"] in (held.message or "")
            continue
        loaded = notes.get(document["id"])
        if loaded is None:
            continue
        assert loaded["filename"] == document["filename"]
        content = world.tenant.document_content(document["id"])
        assert base64.b64decode(loaded["documentbody"]) == content

    # Both application users carried the load.
    state = dv.stats.as_dict()
    assert state["throttled"] == {}
    assert len(outcome.destination_governors) == 2
    assert all(g.stats.requests > 0 for g in outcome.destination_governors)
    for path in outcome.reports:
        assert path.exists()
    # Workflows do not migrate: the admin gets their definitions to rebuild in Power Automate.
    exported = orjson.loads((outcome.reports[0].parent / "workflows.json").read_bytes())
    assert [w["id"] for w in exported] == sorted(w["id"] for w in records["workflows"])


async def test_a_second_run_of_the_same_plan_creates_nothing(world: World) -> None:
    first = await run_migrate(world.plan)
    counts = {name: len(world.dataverse.records(name)) for name in ("accounts", "contacts")}
    second = await run_migrate(world.plan)
    assert second.report.created == 0
    assert sum(r.updated for r in second.report.rows) == 0
    assert {n: len(world.dataverse.records(n)) for n in counts} == counts
    loaded_first = sum(r.created + r.updated for r in first.report.rows)
    assert sum(r.unchanged for r in second.report.rows) == loaded_first


def without_custom_tables(schema: dict[str, Any]) -> dict[str, Any]:
    """The admin has not created the matter and claim tables yet."""
    tables = {k: v for k, v in schema["tables"].items() if not v["custom"]}
    return {**schema, "tables": tables}


def without_bar_number(schema: dict[str, Any]) -> dict[str, Any]:
    """The admin forgot one column of the plan."""
    contact = schema["tables"]["contact"]
    columns = {k: v for k, v in contact["columns"].items() if k != "crm_barnumber"}
    return {**schema, "tables": {**schema["tables"], "contact": {**contact, "columns": columns}}}


@pytest.mark.parametrize("org_schema_edit", [without_custom_tables], indirect=True)
async def test_matters_wait_for_their_custom_table_while_everything_else_loads(
    world: World,
) -> None:
    outcome = await run_migrate(world.plan)
    waiting = [f for f in outcome.report.failures if f.reason_code == "schema_missing"]
    assert {f.source_id for f in waiting if f.collection == "matters"} == {
        m["id"] for m in world.tenant.records["matters"]
    }
    assert "crm_matter" in outcome.report.schema_missing
    people = [c for c in world.tenant.records["contacts"] if not is_organization(c)]
    assert len(world.dataverse.records("contacts")) == len(people)


@pytest.mark.parametrize("org_schema_edit", [without_bar_number], indirect=True)
async def test_a_missing_column_stops_the_run_before_any_write_naming_it(world: World) -> None:
    with pytest.raises(SchemaMissing, match=r"contact\.crm_barnumber") as caught:
        await run_migrate(world.plan)
    assert caught.value.exit_code == 7
    assert world.dataverse.records("contacts") == []


TIGHT_WINDOW = DataverseSimSettings(requests_per_window=30, window_seconds=300, time_scale=100)
"""The 300-second window passes in 3 s and holds 30 requests: 10 a second, half the pace
of the published profile, and far fewer than the run needs."""


@pytest.mark.parametrize("sim_settings", [TIGHT_WINDOW], indirect=True)
async def test_a_run_that_outgrows_the_request_window_waits_as_told_and_loses_nothing(
    world: World, journal: Journal
) -> None:
    """The plan's profile does not know this environment's limit: the platform throttles,
    the client waits as Retry-After says, and every record still lands exactly once."""
    destination = world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    small = replace(destination.config, batch_size=10)
    outcome = await run_migrate(replace(world.plan, destination=replace(destination, config=small)))
    throttled = world.dataverse.stats.as_dict()["throttled"]
    assert sum(throttled.values()) > 0
    assert sum(g.stats.throttled for g in outcome.destination_governors) > 0
    unaccounted = await journal.pool.fetchval(
        """SELECT count(*) FROM (SELECT collection, source_id FROM staged_records
           WHERE run_id = $1 EXCEPT SELECT collection, source_id FROM operations
           WHERE run_id = $1) AS missing""",
        outcome.run.run_id,
    )
    assert unaccounted == 0
    contacts = world.dataverse.records("contacts")
    assert len({c["crm_sourceid"] for c in contacts}) == len(contacts)
    failed = [f for f in outcome.report.failures if f.action == "failed"]
    assert not [f for f in failed if "429" in (f.message or "")]


@pytest.mark.parametrize("sim_settings", [TIGHT_WINDOW], indirect=True)
async def test_a_profile_that_knows_the_window_is_never_throttled(world: World) -> None:
    assert world.plan.destination is not None
    destination = world.plan.destination
    quota = replace(destination.quota, window_requests=30, window_seconds=3.0, rate=10.0, burst=4.0)
    plan = replace(world.plan, destination=replace(destination, quota=quota))
    outcome = await run_migrate(plan)
    assert world.dataverse.stats.as_dict()["throttled"] == {}
    assert outcome.report.created > 1000
