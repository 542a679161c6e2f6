"""An operator migrates a dirty BackDocket tenant into Dynamics 365 Sales (Dataverse).

The same commands, reports and guarantees as the Salesforce pair: everything is
real but the two SaaS platforms, which are our simulators on loopback — the
journal is PostgreSQL, the calls are HTTP, every write is a ``$batch`` upsert
on the alternate key, and the service protection limits are enforced.
"""

from __future__ import annotations

import base64
import hashlib
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
from adapters.base import FileUpload, WriteResult
from adapters.dynamics.client import DataverseClient, DataverseConfig, UnknownLookup
from adapters.dynamics.keys import encode_key, row_id
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


# --- what a real Dataverse environment needs (issue 9) ----------------------------------------


class NoJobs:
    """A ledger for direct client calls: nothing to journal."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        return None

    async def job_uploaded(self, job_id: str) -> None:
        return None


@pytest.fixture
async def org(world: World) -> AsyncIterator[DataverseClient]:
    destination = world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    async with DataverseClient(destination.config, destination.quota) as client:
        yield client


async def test_describe_speaks_the_mappings_lookup_names_create_only_and_settings(
    org: DataverseClient,
) -> None:
    """Lookups by column and by ``column.target`` from ManyToOneRelationships; create-only
    columns from IsValidForUpdate false; table settings from EntityDefinitions."""
    matter = await org.describe("crm_matter")
    task = await org.describe("task")
    assert matter is not None
    assert task is not None
    assert "overriddencreatedon" in matter.create_only
    assert {"HasActivities", "HasNotes"} <= matter.settings
    assert task.references["regardingobjectid.crm_matter"] == ("crm_matter",)
    assert "crm_matter" in task.references["regardingobjectid"]
    assert not hasattr(org, "create_only_fields")


async def test_a_custom_lookup_binds_by_its_case_sensitive_navigation_property(
    org: DataverseClient, world: World
) -> None:
    """``crm_MatterId@odata.bind``: the nav name ManyToOneRelationships reports
    (learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api)."""
    [matter] = await org.upsert("crm_matter", [{"crm_sourceid": "mt_x", "crm_name": "M"}], NoJobs())
    assert matter.ok
    [claim] = await org.upsert(
        "crm_claim",
        [{"crm_sourceid": "cl_x", "crm_name": "C", "crm_matterid": matter.destination_id}],
        NoJobs(),
    )
    assert claim.ok, claim
    [row] = [c for c in world.dataverse.records("crm_claims") if c["crm_sourceid"] == "cl_x"]
    assert row["_crm_matterid_value"] == matter.destination_id


async def test_a_lookup_the_metadata_does_not_know_is_never_sent(
    org: DataverseClient, world: World
) -> None:
    with pytest.raises(UnknownLookup, match=r"task\.regardingobjectid\.crm_claim"):
        await org.upsert(
            "task",
            [{"crm_sourceid": "tk_x", "subject": "S", "regardingobjectid.crm_claim": OTHER_ID}],
            NoJobs(),
        )
    assert [t for t in world.dataverse.records("tasks") if t.get("crm_sourceid") == "tk_x"] == []


OTHER_ID = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9"


def matter_without_activities(schema: dict[str, Any]) -> dict[str, Any]:
    """The admin created the matter table but did not tick "Activities"."""
    matter = {**schema["tables"]["crm_matter"], "HasActivities": False}
    return {**schema, "tables": {**schema["tables"], "crm_matter": matter}}


@pytest.mark.parametrize("org_schema_edit", [matter_without_activities], indirect=True)
async def test_a_matter_table_without_activities_stops_the_run_before_any_write(
    world: World,
) -> None:
    with pytest.raises(SchemaMissing) as caught:
        await run_migrate(world.plan)
    assert "task.regardingobjectid.crm_matter" in str(caught.value)
    assert "crm_matter: HasActivities" in str(caught.value)
    assert world.dataverse.records("accounts") == []


async def test_a_completed_task_is_created_open_then_closed_and_reopened_to_change(
    org: DataverseClient, world: World
) -> None:
    """No create in a closed state (400 0x80048408) and closed activities are read-only."""
    done = {"crm_sourceid": "tk_done", "subject": "Filed", "statecode": 1, "statuscode": 5}
    [first] = await org.upsert("task", [done], NoJobs())
    assert first.ok, first
    assert first.created
    [second] = await org.upsert("task", [{**done, "subject": "Filed late"}], NoJobs())
    assert second.ok, second
    assert second.created is False
    [row] = [t for t in world.dataverse.records("tasks") if t.get("crm_sourceid") == "tk_done"]
    assert (row["subject"], row["statecode"], row["statuscode"]) == ("Filed late", 1, 5)
    [reopened] = await org.upsert("task", [{**done, "statecode": 0, "statuscode": 3}], NoJobs())
    assert reopened.ok, reopened
    [row] = [t for t in world.dataverse.records("tasks") if t.get("crm_sourceid") == "tk_done"]
    assert (row["statecode"], row["statuscode"]) == (0, 3)


async def test_keys_with_colons_are_encoded_in_the_column_and_the_url(
    org: DataverseClient, world: World
) -> None:
    """define-alternate-keys-portal: key values with / # < > * % & : \\ ? + fail in a URL."""
    [written] = await org.upsert(
        "task", [{"crm_sourceid": "esign:esr_1", "subject": "Sign"}], NoJobs()
    )
    assert written.ok
    assert written.external_id == "esign:esr_1"
    [row] = [t for t in world.dataverse.records("tasks") if t.get("subject") == "Sign"]
    assert row["crm_sourceid"] == encode_key("esign:esr_1") == "esign~3Aesr_1"
    assert await org.find("task", ["esign:esr_1"]) == {"esign:esr_1": written.destination_id}


async def test_notes_upsert_and_are_found_by_a_derived_primary_key(
    org: DataverseClient, world: World, tmp_path: Path
) -> None:
    """Notes take no custom column, so no alternate key: PATCH annotations(<uuid5>)."""
    note = {"crm_sourceid": "note:nt_1", "subject": "Call", "notetext": "Spoke to client"}
    [first] = await org.upsert("annotation", [note], NoJobs())
    [again] = await org.upsert("annotation", [{**note, "notetext": "Spoke twice"}], NoJobs())
    expected = row_id("annotation", "note:nt_1")
    assert (first.destination_id, first.created) == (expected, True)
    assert (again.destination_id, again.created) == (expected, False)
    assert await org.find("annotation", ["note:nt_1"]) == {"note:nt_1": expected}
    assert await org.recover("job", "annotation", ["note:nt_1"]) == [
        WriteResult("note:nt_1", expected, None)
    ]
    [row] = world.dataverse.records("annotations")
    assert "crm_sourceid" not in row
    # A changed file is a new body of the same note, its create-only columns left out.
    old, new = tmp_path / "a.txt", tmp_path / "b.txt"
    old.write_bytes(b"draft")
    new.write_bytes(b"signed")
    fields = {"crm_sourceid": "doc_1", "subject": "Retainer", "isdocument": True,
              "overriddencreatedon": "2024-01-02T03:04:05Z"}  # fmt: skip
    [v1] = await org.upload_files("annotation", [FileUpload(fields, old, "a.txt", "text/plain", 5)])
    assert v1.ok, v1
    [v2] = await org.upload_files(
        "annotation",
        [FileUpload(fields, new, "b.txt", "text/plain", 6, replaces=v1.destination_id)],
    )
    assert v2.ok, v2
    assert v2.destination_id == v1.destination_id
    [file_row] = [a for a in world.dataverse.records("annotations") if a.get("filename")]
    assert base64.b64decode(file_row["documentbody"]) == b"signed"
    assert file_row["filename"] == "b.txt"


SITE = "https://hartwell.sharepoint.com/sites/matters"
"""The firm's SharePoint site for Dynamics document management."""


def with_document_management(schema: dict[str, Any]) -> dict[str, Any]:
    """The admin ran the document management setup: the plan with a SharePoint site (the
    tables it regards carry IsDocumentManagementEnabled), and the site itself."""
    shared = schema_plan([], sharepoint=True)["tables"]
    tables = {
        name: {**spec, **{k: v for k, v in shared[name].items() if k in ("lookups",
               "IsDocumentManagementEnabled")}}
        for name, spec in schema["tables"].items()
    }  # fmt: skip
    return {**schema, "tables": tables, "sharepoint_site": SITE}


def with_sharepoint(plan: MigrationPlan, **mapping: Any) -> MigrationPlan:
    """The operator's plan names the site (``[mapping] sharepoint_site``); SharePoint's
    REST calls go to the simulator (``destination.sharepoint_url``), which also issues
    the token (its scope: that address's ``/.default``)."""
    destination = plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    raw = {
        **plan.raw,
        "destination": {**plan.raw["destination"], "sharepoint_url": destination.config.api_url},
        "mapping": {**plan.raw["mapping"], "sharepoint_site": SITE, **mapping},
    }
    env = {
        **os.environ,
        "CRMLIFT_JOURNAL_DSN": plan.journal.dsn or "",
        "CRMLIFT_DATA_DIR": str(plan.journal.data_dir),
    }
    assert plan.path is None
    return parse_plan(raw, env=env, base=plan.output_dir.parent)


def oversized(world: World) -> dict[str, Any]:
    [document] = [
        d
        for d in world.tenant.records["documents"]
        if base64_size(d["size_bytes"]) > 5 * 1024 * 1024
    ]
    return document


@pytest.mark.parametrize("org_schema_edit", [with_document_management], indirect=True)
async def test_a_file_over_the_attachment_limit_lands_in_its_records_sharepoint_folder(
    world: World, journal: Journal
) -> None:
    """Issue 9 (Dataverse 9): with a site configured, a file over the attachment limit is
    uploaded into its matter's folder (site → the table's library location → the record's
    folder, learn.microsoft.com "Manage your documents using SharePoint"; upload with
    SharePoint REST Files/add, sharepoint/dev/sp-add-ins/working-with-folders-and-files-with-rest)
    and journaled as loaded with its server-relative URL; a rerun writes nothing; a new
    version of the file overwrites it."""
    plan = with_sharepoint(world.plan)
    document = oversized(world)
    first = await run_migrate(plan)
    assert not [f for f in first.report.failures if f.source_id == document["id"]]

    # The matter's folder row hangs off the crm_matter library location, regarding the matter.
    dv = world.dataverse
    matter = by_source_id(dv.records("crm_matters"))[document["matter_id"]]
    locations = dv.records("sharepointdocumentlocations")
    [library] = [
        r for r in locations if r["relativeurl"] == "crm_matter" and not r.get("crm_sourceid")
    ]
    [folder] = [
        r
        for r in locations
        if r.get("crm_sourceid") == encode_key(f"folder:crm_matter:{document['matter_id']}")
    ]
    assert folder["_parentsiteorlocation_value"] == library["sharepointdocumentlocationid"]
    assert folder["_regardingobjectid_value"] == matter["crm_matterid"]
    assert folder["relativeurl"] == f"crm_matter_{document['matter_id']}"

    # The bytes are in that folder in SharePoint, named uniquely, and journaled as loaded.
    path = (
        f"/sites/matters/crm_matter/crm_matter_{document['matter_id']}/"
        f"{document['id']}_{document['filename']}"
    )
    files = dv.sharepoint_files()
    assert hashlib.sha256(files[path]).hexdigest() == document["sha256"]
    assert files[path] == world.tenant.document_content(document["id"])
    loaded = await journal.pool.fetchrow(
        """SELECT action, object, destination_id FROM operations
           WHERE run_id = $1 AND object = 'sharepointdocument' AND source_id = $2""",
        first.run.run_id,
        document["id"],
    )
    assert dict(loaded) == {"action": "created", "object": "sharepointdocument",
                            "destination_id": path}  # fmt: skip
    assert document["id"] not in by_source_id(dv.records("annotations"))

    # A rerun writes nothing: the file in SharePoint is the one uploaded first.
    assert dv.sharepoint is not None
    uploaded = dv.sharepoint.files[path.lower()]
    second = await run_migrate(plan)
    assert second.report.created == 0
    assert sum(r.updated for r in second.report.rows) == 0
    assert dv.sharepoint.files[path.lower()] is uploaded

    # The firm uploads a new version: the rerun overwrites the same file.
    changed = world.backdocket.upload_new_version(document["id"])
    third = await run_migrate(plan)
    files = dv.sharepoint_files()
    assert hashlib.sha256(files[path]).hexdigest() == changed["sha256"] != document["sha256"]
    assert dv.sharepoint.files[path.lower()].unique_id == uploaded.unique_id
    assert len([p for p in files if document["id"] in p]) == 1
    updated = await journal.pool.fetchrow(
        """SELECT action, destination_id FROM operations
           WHERE run_id = $1 AND object = 'sharepointdocument' AND source_id = $2""",
        third.run.run_id,
        document["id"],
    )
    assert dict(updated) == {"action": "updated", "destination_id": path}


@pytest.mark.parametrize("org_schema_edit", [with_document_management], indirect=True)
async def test_a_sharepoint_refusal_fails_the_file_with_its_reason_never_silently(
    world: World,
) -> None:
    """SharePoint refuses a folder whose library does not exist (404 File Not Found): the
    file ends as failed, naming SharePoint's reason, and nothing is dropped."""
    assert world.dataverse.sharepoint is not None
    world.dataverse.sharepoint.folders.pop("/sites/matters/crm_matter")
    document = oversized(world)
    outcome = await run_migrate(with_sharepoint(world.plan))
    [failed] = [f for f in outcome.report.failures if f.source_id == document["id"]]
    assert failed.reason_code == "sharepoint_refused"
    assert "File Not Found" in (failed.message or "")
    assert world.dataverse.sharepoint_files() == {}


@pytest.mark.parametrize("org_schema_edit", [with_document_management], indirect=True)
async def test_a_missing_library_location_is_created_under_the_site_found_by_its_url(
    world: World,
) -> None:
    """No GUID to type: the site row is found by its absoluteurl; a table whose library
    location row is missing gets one, under the site, as the document management setup
    makes it, and the matters' folders hang off it."""
    dv = world.dataverse
    locations = dv.tables["sharepointdocumentlocations"]
    [seeded] = [k for k, r in locations.rows.items() if r.get("relativeurl") == "crm_matter"]
    del locations.rows[seeded]
    await run_migrate(with_sharepoint(world.plan))
    [site] = dv.records("sharepointsites")
    rows = dv.records("sharepointdocumentlocations")
    [made] = [r for r in rows if r["relativeurl"] == "crm_matter"]
    assert made["sharepointdocumentlocationid"] != seeded
    assert made["_parentsiteorlocation_value"] == site["sharepointsiteid"]
    prefix = encode_key("folder:crm_matter:")
    folders = [r for r in rows if str(r.get("crm_sourceid") or "").startswith(prefix)]
    assert folders
    assert {r["_parentsiteorlocation_value"] for r in folders} == {
        made["sharepointdocumentlocationid"]
    }


@pytest.mark.parametrize("org_schema_edit", [with_document_management], indirect=True)
async def test_a_site_the_org_does_not_know_stops_the_run_before_any_write(world: World) -> None:
    plan = with_sharepoint(world.plan, sharepoint_site="https://hartwell.sharepoint.com/sites/x")
    with pytest.raises(SchemaMissing, match="sites/x") as caught:
        await run_migrate(plan)
    assert caught.value.exit_code == 7
    assert world.dataverse.records("contacts") == []
