"""An operator migrates a dirty BackDocket tenant into Salesforce, then runs it again.

Everything is real but the two SaaS platforms, which are our simulators on
loopback: the journal is PostgreSQL, the calls are HTTP, the Bulk jobs run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.base import FileUpload, WriteResult
from adapters.errors import SchemaMissing
from adapters.salesforce.client import SalesforceClient, SalesforceConfig
from adapters.salesforce.schema import ObjectSpec, OrgSchema
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.secrets import Secret
from journal import Journal, JournalSettings
from ratelimit.governor import Governor
from ratelimit.profiles import SALESFORCE
from service.mapping.backdocket_salesforce import external_id, schema_plan
from service.migrate import MigrateOutcome, run_migrate
from service.plan import MigrationPlan, parse_plan, salesforce_config

ADMIN = "admin@firm.example"


@dataclass
class World:
    """The firm's BackDocket tenant, its Salesforce org, and the operator's plan."""

    tenant: Tenant
    backdocket: BackDocketSim
    salesforce: SalesforceSim
    plan: MigrationPlan
    unmatched_users: set[str]


SchemaEdit = Callable[[OrgSchema], OrgSchema]


@pytest.fixture
def org_schema_edit(request: pytest.FixtureRequest) -> SchemaEdit:
    """How the org's admin deployed the schema plan: in full unless a test says otherwise."""
    edit: SchemaEdit = getattr(request, "param", lambda schema: schema)
    return edit


@pytest.fixture
async def world(
    journal_settings: JournalSettings, tmp_path: Path, org_schema_edit: SchemaEdit
) -> AsyncIterator[World]:
    tenant = generate_tenant(1200, seed=31, dirty=True)
    users = tenant.records["users"]
    unmatched = {u["id"] for i, u in enumerate(users) if i % 3 == 2 or not u.get("email")}
    org_users = (
        ("Firm Admin", ADMIN),
        *dict.fromkeys((u["name"], u["email"]) for u in users if u["id"] not in unmatched),
    )
    backdocket = BackDocketSim(tenant, SimSettings(rate=1000, burst=100))
    salesforce = SalesforceSim(
        org_schema_edit(schema_plan(tenant.records["custom_field_definitions"])),
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
    plan = parse_plan(raw, env=env, base=tmp_path)
    try:
        yield World(tenant, backdocket, salesforce, plan, unmatched)
    finally:
        await bd_runner.cleanup()
        await sf_runner.cleanup()


def by_ext(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["Source_System_ID__c"]: r for r in rows if r.get("Source_System_ID__c")}


async def test_a_dirty_tenant_lands_in_salesforce_with_every_record_accounted_for(
    world: World, journal: Journal
) -> None:
    outcome = await run_migrate(world.plan)
    run_id = outcome.run.run_id

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

    sf = world.salesforce
    accounts = by_ext(sf.records("Account"))
    contacts = by_ext(sf.records("Contact"))
    matters = by_ext(sf.records("Case_Matter__c"))
    users = {u["id"]: u for u in world.tenant.records["users"]}

    # Contact → Account: the most recently linked company, else the Unassigned Account.
    acr = sf.records("AccountContactRelation")
    for contact in world.tenant.records["contacts"]:
        loaded = contacts.get(contact["id"])
        if loaded is None:
            continue
        links = contact["company_links"]
        # The most recently linked company; a tie goes to the one BackDocket lists first.
        latest = max((link["linked_at"] for link in links), default=None)
        primary = next(
            (link["company_id"] for link in links if link["linked_at"] == latest),
            "crmlift:unassigned-account",
        )
        assert loaded["AccountId"] == accounts[primary]["Id"]
        related = {r["AccountId"] for r in acr if r["ContactId"] == loaded["Id"]}
        assert related == {accounts[link["company_id"]]["Id"] for link in links} or (
            not links and related == {accounts[primary]["Id"]}
        )

    # Account hierarchy from the second pass.
    for company in world.tenant.records["companies"]:
        parent = company.get("parent_company_id")
        if parent and parent in accounts and company["id"] in accounts:
            assert accounts[company["id"]]["ParentId"] == accounts[parent]["Id"]

    # Tasks point at their contact and matter; owners resolve by email or fall back.
    admin_id = sf.user_id(ADMIN)
    tasks = by_ext(sf.records("Task"))
    for task in world.tenant.records["tasks"]:
        loaded = tasks.get(task["id"])
        if loaded is None:
            continue
        if task.get("contact_id") in contacts:
            assert loaded["WhoId"] == contacts[task["contact_id"]]["Id"]
        if task.get("matter_id") in matters:
            assert loaded["WhatId"] == matters[task["matter_id"]]["Id"]
        assignee = users.get(task.get("assignee_id") or "")
        if assignee is not None:
            email = (assignee.get("email") or "").strip().lower()
            assert loaded["OwnerId"] == (sf.user_id(email) if email else None) or admin_id

    # Files: uploaded with their names and linked to their matter or contact;
    # the one over 25 MB is reported, not loaded.
    versions = by_ext(sf.records("ContentVersion"))
    links = sf.records("ContentDocumentLink")
    for document in world.tenant.records["documents"]:
        if document["size_bytes"] > 25 * 1024 * 1024:
            assert document["id"] not in versions
            skipped = [f for f in outcome.report.failures if f.source_id == document["id"]]
            assert skipped[0].reason_code == "file_too_large"
            assert document["filename"] in (skipped[0].message or "")
            continue
        version = versions[document["id"]]
        assert version["PathOnClient"] == document["filename"]
        target = matters.get(document.get("matter_id") or "") or contacts.get(
            document.get("contact_id") or ""
        )
        if target is not None:
            assert any(
                link["ContentDocumentId"] == version["ContentDocumentId"]
                and link["LinkedEntityId"] == target["Id"]
                for link in links
            )

    # The reports are where the operator is told they are, the audit's among them.
    for path in outcome.reports:
        assert path.exists()
    assert "audit.html" in {path.name for path in outcome.reports}


async def test_a_second_run_of_the_same_plan_creates_nothing(world: World) -> None:
    first = await run_migrate(world.plan)
    counts = {name: len(world.salesforce.records(name)) for name in ("Account", "Contact", "Task")}
    second: MigrateOutcome = await run_migrate(world.plan)
    assert second.report.created == 0
    assert sum(r.updated for r in second.report.rows) == 0
    assert {n: len(world.salesforce.records(n)) for n in counts} == counts
    loaded_first = sum(r.created + r.updated for r in first.report.rows)
    assert sum(r.unchanged for r in second.report.rows) == loaded_first


class Crash(Exception):
    """Stands in for the process dying: nothing after it runs."""


def die_in_first_bulk_job(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The process dies while its first Bulk job processes (its data uploaded, its results
    not read); the list names that job once it has happened."""
    real_results = SalesforceClient._job_results
    crashed: list[str] = []

    async def die_once(self: SalesforceClient, job_id: str, *args: Any) -> list[WriteResult]:
        if not crashed:
            crashed.append(job_id)
            raise Crash(f"killed while job {job_id} was processing")
        return await real_results(self, job_id, *args)

    monkeypatch.setattr(SalesforceClient, "_job_results", die_once)
    return crashed


async def test_a_crash_after_a_bulk_upload_recovers_the_jobs_results_instead_of_reloading(
    world: World, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = die_in_first_bulk_job(monkeypatch)
    with pytest.raises(Crash):
        await run_migrate(world.plan)
    run = (await journal.runs.recent(world.plan.name))[0]
    assert run.status == "failed"
    journaled = await journal.pool.fetchrow(
        "SELECT state, object, records FROM load_jobs WHERE job_id = $1", crashed[0]
    )
    assert journaled["state"] == "uploaded"

    resumed = await run_migrate(world.plan, resume=run.run_id)

    # The crashed job's records were journaled from its results, as created,
    # and were not sent again: no duplicates, no second job for them.
    assert resumed.run.run_id == run.run_id
    state = await journal.pool.fetchval("SELECT state FROM load_jobs WHERE job_id = $1", crashed[0])
    assert state == "done"
    created = await journal.pool.fetchval(
        """SELECT count(DISTINCT external_id) FROM operations
           WHERE run_id = $1 AND object = $2 AND action = 'created'""",
        run.run_id,
        journaled["object"],
    )
    rows = world.salesforce.records(journaled["object"])
    assert created == len(by_ext(rows))
    assert len({r["Source_System_ID__c"] for r in rows}) == len(rows)
    actions = await journal.pool.fetch(
        "SELECT DISTINCT action FROM operations WHERE run_id = $1 AND object = $2",
        run.run_id,
        journaled["object"],
    )
    assert {a["action"] for a in actions} == {"created", "unchanged"}
    assert resumed.report.failed == 0


async def test_a_crash_during_a_bulk_update_still_journals_what_each_update_replaced(
    world: World, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rollback needs the pre-image of every update, those recovered from a Bulk job whose
    process died included: they are journaled with the job, before its data is sent."""
    await run_migrate(world.plan)
    contacts = world.tenant.records["contacts"]
    for contact in contacts:
        world.backdocket.edit(
            "contacts", contact["id"], last_name=f"{contact['last_name']}-Renamed"
        )
    crashed = die_in_first_bulk_job(monkeypatch)
    with pytest.raises(Crash):
        await run_migrate(world.plan)
    run = (await journal.runs.recent(world.plan.name))[0]
    await run_migrate(world.plan, resume=run.run_id)

    recovered = await journal.pool.fetch(
        """SELECT o.action, o.pre_image FROM operations o
           JOIN load_jobs j ON j.run_id = o.run_id AND j.job_id = $2
           WHERE o.run_id = $1 AND o.object = j.object AND o.action = 'updated'
             AND EXISTS (SELECT 1 FROM jsonb_array_elements(j.members) m
                         WHERE m->>0 = o.external_id)""",
        run.run_id,
        crashed[0],
    )
    assert len(recovered) >= 150  # the whole job, a Bulk one (bulk_threshold = 150)
    names = [orjson.loads(r["pre_image"]).get("LastName") for r in recovered]
    assert all(name and not name.endswith("-Renamed") for name in names)


def without_case_matters(schema: OrgSchema) -> OrgSchema:
    """The admin has not created Case_Matter__c (nor its children) yet."""
    gone = {"Case_Matter__c", "Case_Party__c", "Claim__c"}
    return OrgSchema({k: v for k, v in schema.objects.items() if k not in gone})


def without_bar_number(schema: OrgSchema) -> OrgSchema:
    """The admin forgot one field of the plan."""
    contact = schema.objects["Contact"]
    fields = tuple(f for f in contact.fields if f.name != "Bar_Number__c")
    kept = ObjectSpec(contact.name, contact.label, contact.custom, fields, contact.key_prefix)
    return OrgSchema({**schema.objects, "Contact": kept})


@pytest.mark.parametrize("org_schema_edit", [without_case_matters], indirect=True)
async def test_matters_wait_for_their_custom_object_while_everything_else_loads(
    world: World,
) -> None:
    outcome = await run_migrate(world.plan)
    waiting = [f for f in outcome.report.failures if f.reason_code == "schema_missing"]
    matters = {f.source_id for f in waiting if f.collection == "matters"}
    assert matters == {m["id"] for m in world.tenant.records["matters"]}
    assert "Case_Matter__c" in outcome.report.schema_missing
    assert len(world.salesforce.records("Contact")) == len(world.tenant.records["contacts"])
    tasks = world.salesforce.records("Task")
    assert tasks
    assert all(t.get("WhatId") is None for t in tasks if t["Source_System_ID__c"].startswith("tk_"))


@pytest.mark.parametrize("org_schema_edit", [without_bar_number], indirect=True)
async def test_a_missing_field_stops_the_run_before_any_write_naming_the_field(
    world: World,
) -> None:
    with pytest.raises(SchemaMissing, match=r"Contact\.Bar_Number__c") as caught:
        await run_migrate(world.plan)
    assert caught.value.exit_code == 7
    assert world.salesforce.records("Contact") == []


async def test_the_same_plan_into_another_org_loads_everything_again(
    world: World, journal_settings: JournalSettings, tmp_path: Path
) -> None:
    """A sandbox sample run, then production: each org has its own id map."""
    sandbox = await run_migrate(world.plan)
    production = SalesforceSim(
        schema_plan(world.tenant.records["custom_field_definitions"]),
        SfSimSettings(users=(("Firm Admin", ADMIN),), bulk_records_per_second=200_000),
    )
    runner, url = await serve_salesforce(production)
    try:
        assert world.plan.destination is not None
        config = replace(world.plan.destination.config, login_url=url)
        plan = replace(world.plan, destination=replace(world.plan.destination, config=config))
        outcome = await run_migrate(plan)
    finally:
        await runner.cleanup()
    assert outcome.report.created == sandbox.report.created
    assert len(production.records("Contact")) == len(world.tenant.records["contacts"])


# --- what a real org refuses, and how crmlift stays clear of it ---------------------------


class NoJobs:
    """A ledger for calls under the Bulk threshold: they open no job."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        raise AssertionError("no Bulk job expected")

    async def job_uploaded(self, job_id: str) -> None:
        raise AssertionError("no Bulk job expected")


@pytest.fixture
async def org(world: World) -> AsyncIterator[SalesforceClient]:
    """crmlift's client on the firm's (simulated) org, as a run opens it."""
    assert world.plan.destination is not None
    url = world.plan.destination.config.login_url
    config = SalesforceConfig(login_url=url, client_id="crmlift", client_secret=Secret("s3cret"))
    async with SalesforceClient(config, Governor(SALESFORCE)) as client:
        yield client


async def test_describe_says_which_fields_only_a_create_sets_and_what_the_org_has_on(
    org: SalesforceClient,
) -> None:
    """create_only = createable and not updateable (describeSObject field properties);
    Allow Activities = listed in Task.WhatId's referenceTo (Object Reference, Task)."""
    version = await org.describe("ContentVersion")
    relation = await org.describe("AccountContactRelation")
    party = await org.describe("Case_Party__c")
    claim = await org.describe("Claim__c")
    matter = await org.describe("Case_Matter__c")
    account = await org.describe("Account")
    assert version is not None
    assert relation is not None
    assert party is not None
    assert claim is not None
    assert matter is not None
    assert account is not None
    assert {"PathOnClient", "VersionData", "FirstPublishLocationId"} <= version.create_only
    assert {"AccountId", "ContactId"} <= relation.create_only
    assert "Case_Matter__c" in party.create_only
    assert "Case_Matter__c" in claim.create_only
    assert "Name" not in matter.create_only
    assert "enableActivities" in matter.settings
    assert "enableActivities" not in party.settings
    assert "StateCountryText" in account.settings
    assert not hasattr(org, "create_only_fields")


async def test_a_bad_value_fails_only_its_record_naming_record_and_field(
    org: SalesforceClient, world: World
) -> None:
    """One bad value would fail a whole Collections request (400 JSON_PARSER_ERROR,
    https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_upsert.htm):
    crmlift checks values against describe first, so only that record fails."""
    rows = [
        {"Source_System_ID__c": "co_ok1", "Name": "Good One", "NumberOfEmployees": "12"},
        {"Source_System_ID__c": "co_bad", "Name": "Bad", "AnnualRevenue": "lots"},
        {"Source_System_ID__c": "co_ok2", "Name": "Good Two", "AnnualRevenue": 1000},
    ]
    results = {r.external_id: r for r in await org.upsert("Account", rows, NoJobs())}
    assert results["co_ok1"].ok
    assert results["co_ok2"].ok
    bad = results["co_bad"]
    assert not bad.ok
    assert bad.error_code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert "co_bad" in (bad.error_message or "")
    assert "AnnualRevenue" in (bad.error_message or "")
    loaded = by_ext(world.salesforce.records("Account"))
    assert set(loaded) == {"co_ok1", "co_ok2"}
    assert loaded["co_ok1"]["NumberOfEmployees"] == 12


async def test_a_request_the_org_cannot_parse_is_split_until_only_the_bad_record_fails(
    org: SalesforceClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a bad value get past the checks, the 400 JSON_PARSER_ERROR is bisected."""

    async def unchecked(
        sobject: str, records: Any
    ) -> tuple[list[WriteResult], list[dict[str, Any]]]:
        return [], [dict(r) for r in records]

    monkeypatch.setattr(org, "_conformed", unchecked)
    rows = [{"Source_System_ID__c": f"co_{i}", "Name": f"Firm {i}"} for i in range(7)]
    rows[5]["NumberOfEmployees"] = "many"
    results = {r.external_id: r for r in await org.upsert("Account", rows, NoJobs())}
    assert [e for e, r in results.items() if not r.ok] == ["co_5"]
    assert results["co_5"].error_code == "JSON_PARSER_ERROR"
    assert len(by_ext(world.salesforce.records("Account"))) == 6


async def test_two_rows_with_one_external_id_never_share_a_request_and_the_last_wins(
    org: SalesforceClient, world: World
) -> None:
    """Duplicate external ids in one request fail both (DUPLICATE_VALUE)."""
    rows = [
        {"Source_System_ID__c": "co_twice", "Name": "First"},
        {"Source_System_ID__c": "co_once", "Name": "Only"},
        {"Source_System_ID__c": "co_twice", "Name": "Second"},
    ]
    results = await org.upsert("Account", rows, NoJobs())
    assert all(r.ok for r in results)
    loaded = by_ext(world.salesforce.records("Account"))
    assert loaded["co_twice"]["Name"] == "Second"
    assert len(loaded) == 2


async def test_an_activity_source_id_the_org_holds_twice_is_reported_and_not_written(
    org: SalesforceClient, world: World
) -> None:
    """Activity source ids cannot be unique: crmlift never picks one of two or adds a third."""
    first = await org._json("POST", "sobjects/Task", "t", json={"Subject": "A",
                            "Source_System_ID__c": "tk_dup"})  # fmt: skip
    second = await org._json("POST", "sobjects/Task", "t", json={"Subject": "B",
                             "Source_System_ID__c": "tk_dup"})  # fmt: skip
    rows = [
        {"Source_System_ID__c": "tk_dup", "Subject": "C"},
        {"Source_System_ID__c": "tk_new", "Subject": "D"},
    ]
    results = {r.external_id: r for r in await org.upsert("Task", rows, NoJobs())}
    assert results["tk_new"].ok
    refused = results["tk_dup"]
    assert refused.error_code == "DUPLICATE_EXTERNAL_ID"
    assert first["id"] in (refused.error_message or "")
    assert second["id"] in (refused.error_message or "")
    tasks = world.salesforce.records("Task")
    assert sorted(t["Subject"] for t in tasks) == ["A", "B", "D"]


async def test_a_changed_file_uploads_as_the_next_version_of_the_same_document(
    org: SalesforceClient, world: World, tmp_path: Path
) -> None:
    """PathOnClient and VersionData are create-only: a new ContentVersion with the old one's
    ContentDocumentId (Object Reference, ContentVersion). The source id moves to it."""
    old, new = tmp_path / "v1.txt", tmp_path / "v2.txt"
    old.write_bytes(b"first draft")
    new.write_bytes(b"signed final")
    fields = {"Source_System_ID__c": "doc_1", "Title": "Retainer", "PathOnClient": "r.txt"}
    (v1,) = await org.upload_files(
        "ContentVersion", [FileUpload(fields, old, "r.txt", "text/plain", 11)]
    )
    assert v1.ok
    (v2,) = await org.upload_files(
        "ContentVersion",
        [FileUpload({**fields, "PathOnClient": "r2.txt"}, new, "r2.txt", "text/plain", 12,
                    replaces=v1.destination_id)],
    )  # fmt: skip
    assert v2.ok
    assert v2.destination_id != v1.destination_id
    versions = {v["Id"]: v for v in world.salesforce.records("ContentVersion")}
    assert (
        versions[v2.destination_id or ""]["ContentDocumentId"]
        == (versions[v1.destination_id or ""]["ContentDocumentId"])
    )
    assert versions[v2.destination_id or ""]["Source_System_ID__c"] == "doc_1"
    assert versions[v1.destination_id or ""].get("Source_System_ID__c") is None
    assert await org.find("ContentVersion", ["doc_1"]) == {"doc_1": v2.destination_id}
    assert len(world.salesforce.records("ContentDocument")) == 1


def with_state_country_picklists(schema: OrgSchema) -> OrgSchema:
    """The org has State and Country/Territory Picklists on, as most orgs do."""
    return replace(schema, state_country_picklists=True)


@pytest.mark.parametrize("org_schema_edit", [with_state_country_picklists], indirect=True)
async def test_an_org_with_address_picklists_stops_a_plan_that_does_not_expect_them(
    world: World,
) -> None:
    with pytest.raises(SchemaMissing, match=r"Account: StateCountryText") as caught:
        await run_migrate(world.plan)
    assert caught.value.exit_code == 7
    assert world.salesforce.records("Account") == []


@pytest.mark.parametrize("org_schema_edit", [with_state_country_picklists], indirect=True)
async def test_with_the_setting_addresses_load_as_iso_codes(world: World) -> None:
    """https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm"""
    plan = replace(world.plan, destination=replace(
        world.plan.destination, mapping={**world.plan.destination.mapping,  # type: ignore[union-attr]
                                         "state_country_picklists": True}))  # fmt: skip
    outcome = await run_migrate(plan)
    accounts = by_ext(world.salesforce.records("Account"))
    for company in world.tenant.records["companies"]:
        loaded = accounts.get(company["id"])
        country = (company.get("billing_address") or {}).get("country")
        if loaded is None or not country:
            continue
        assert loaded["BillingCountryCode"] == country
    assert not [f for f in outcome.report.failures if "Country" in (f.message or "")]


async def test_a_rerun_after_users_changed_a_file_a_parent_company_and_a_partys_matter(
    world: World, journal: Journal
) -> None:
    """Between runs the firm kept working: a new version of a document, a company moved
    under another parent, a party moved to another matter. The rerun loads what a real
    org accepts, and rollback has every pre-image it needs."""
    first = await run_migrate(world.plan)
    # The first run's second pass set parents the wave had not created yet: updates too,
    # each with its pre-image.
    second_pass = await journal.pool.fetch(
        """SELECT pre_image FROM operations WHERE run_id = $1 AND object = 'Account'
           AND action = 'updated'""",
        first.run.run_id,
    )
    assert second_pass
    assert all("ParentId" in orjson.loads(r["pre_image"]) for r in second_pass)
    sf, records = world.salesforce, world.tenant.records
    versions = by_ext(sf.records("ContentVersion"))
    document = next(
        d for d in records["documents"] if external_id("documents", d["id"]) in versions
    )
    doc_ext = external_id("documents", document["id"])
    before = versions[doc_ext]
    accounts = by_ext(sf.records("Account"))
    companies = [c for c in records["companies"] if c["id"] in accounts]
    child, parent = companies[0], companies[-1]
    parties = by_ext(sf.records("Case_Party__c"))
    party = next(p for p in records["matter_parties"] if p["id"] in parties)
    other_matter = next(m["id"] for m in records["matters"] if m["id"] != party["matter_id"])

    world.backdocket.upload_new_version(document["id"])
    world.backdocket.edit("companies", child["id"], parent_company_id=parent["id"])
    world.backdocket.edit("matter_parties", party["id"], matter_id=other_matter)
    second = await run_migrate(world.plan)

    # The file: a new version of the same document, which now carries the external id.
    after = by_ext(sf.records("ContentVersion"))[doc_ext]
    assert after["Id"] != before["Id"]
    assert after["ContentDocumentId"] == before["ContentDocumentId"]
    # The parent: journaled as an update with what it replaced, for rollback.
    moved = await journal.pool.fetchrow(
        """SELECT action, pre_image FROM operations
           WHERE run_id = $1 AND object = 'Account' AND external_id = $2 AND pre_image IS NOT NULL
             AND pre_image ? 'ParentId'""",
        second.run.run_id,
        child["id"],
    )
    assert moved is not None
    assert moved["action"] == "updated"
    assert by_ext(sf.records("Account"))[child["id"]]["ParentId"] == accounts[parent["id"]]["Id"]
    # The party: master-detail without reparenting keeps its matter, and says so.
    assert (
        by_ext(sf.records("Case_Party__c"))[party["id"]]["Case_Matter__c"]
        == (parties[party["id"]]["Case_Matter__c"])
    )
    notes = [n for n in second.report.notes if n.source_id == party["id"]]
    assert any(n.code == "create_only:Case_Party__c" and "Case_Matter__c" in n.message
               for n in notes), notes  # fmt: skip
    assert second.report.failed <= first.report.failed


async def test_a_record_the_org_already_held_under_our_id_is_updated_and_named(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    """Another tool (or a lost journal) left a contact carrying our external id: the run
    updates it rather than duplicating it, and says rollback has no pre-image for it."""
    contact = world.tenant.records["contacts"][0]
    [held] = await org.upsert(
        "Contact",
        [{"Source_System_ID__c": contact["id"], "LastName": "Loaded-By-Someone-Else"}],
        NoJobs(),
    )
    outcome = await run_migrate(world.plan)
    action = await journal.pool.fetchval(
        """SELECT action FROM operations WHERE run_id = $1 AND object = 'Contact'
           AND external_id = $2""",
        outcome.run.run_id,
        contact["id"],
    )
    assert action == "updated"
    [note] = [n for n in outcome.report.notes if n.code == "no_pre_image:Contact"]
    assert note.source_id == contact["id"]
    assert held.destination_id in note.message


# -- the operator's plan file and command line, for tests that run crmlift itself


def plan_toml(world: World, extra: str = "") -> str:
    """The world's plan as the operator's file (``extra``: more ``[migration]`` keys)."""
    assert world.plan.destination is not None
    return f"""
[migration]
name = "firm-to-salesforce"
output_dir = "{world.plan.output_dir}"
{extra}

[source]
platform = "backdocket"
base_url = "{world.plan.source.base_url}"
client_id = "crmlift"
client_secret = {{ env = "TEST_BD_SECRET" }}
quota = {{ rate = 1000, burst = 100 }}

[extract]
window_records = 200

[destination]
platform = "salesforce"
login_url = "{salesforce_config(world.plan.destination.config).login_url}"
client_id = "crmlift"
client_secret = {{ env = "TEST_SF_SECRET" }}
fallback_owner_email = "{ADMIN}"
bulk_threshold = 150

[mapping]
max_file_bytes = {25 * 1024 * 1024}
"""


async def crmlift(env: dict[str, str], *argv: str) -> tuple[int | None, str, str]:
    """``crmlift …`` as the operator types it (``python -m service.cli``, i.e. ``main``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()
