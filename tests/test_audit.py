"""Before any record moves, the operator audits the tenant against the destination: every
dirty record the tenant holds is named, a clean tenant raises none of them, and what the
destination would refuse stops migrate before any write until it is fixed or acknowledged.

Everything is real but the platforms, which are our simulators on loopback (the world
fixtures of the migrate tests): the journal is PostgreSQL, every call is HTTP. The
planted dirty records come from the tenant generator's own list, never from this file.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import DIRTY_CASES, Tenant, generate_tenant
from adapters.salesforce.schema import OrgSchema
from journal import Journal
from service.audit import run_audit
from service.audit_findings import AuditBlocked, AuditReport
from service.mapping import transforms as tx
from service.migrate import run_migrate
from service.plan import MigrationPlan
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    ADMIN,
    World,
    crmlift,
    org_schema_edit,
    plan_toml,
    world,
)

CASE_KINDS: dict[str, str] = {
    "contact_no_email": "contact_no_email",
    "contact_duplicate_email": "duplicate_contact_email",
    "contact_no_company": "contact_no_company",
    "contact_five_companies": "contact_many_companies",
    "company_parent_cycle": "company_parent_cycle",
    "user_no_email": "user_no_email",
    "user_duplicate_email": "duplicate_user_email",
    "document_over_25mb": "file_over_limit",
    "task_deleted_matter": "orphan",
    "custom_field_unparseable": "custom_field_unparseable",
    "unknown_extra_keys": "unknown_keys",
}
"""Each dirty case the generator plants → the kind of finding that names its records."""

DIRTY_KINDS = {*CASE_KINDS.values(), "invalid_email", "invalid_date"}

DROPPED = "Français"
"""The preferred-language value the admin left out of the org's picklist."""


@dataclass
class Firm:
    """One world seen the same way whatever the destination: the tenant, the plan, and how
    many records each destination table holds."""

    tenant: Tenant
    backdocket: BackDocketSim
    plan: MigrationPlan
    rows: Callable[[], dict[str, int]]


def salesforce_firm(world: World) -> Firm:
    tables = world.salesforce.org.tables
    return Firm(
        world.tenant,
        world.backdocket,
        world.plan,
        lambda: {name: len(t.rows) for name, t in tables.items() if name != "user"},
    )


def dataverse_firm(world: DvWorld) -> Firm:
    dv = world.dataverse
    return Firm(
        world.tenant,
        world.backdocket,
        world.plan,
        lambda: {name: len(t.rows) for name, t in dv.tables.items()},
    )


def named(report: AuditReport, kind: str) -> list[str]:
    """Source ids the findings of ``kind`` name, every one listed (the count says so)."""
    found = report.of_kind(kind)
    for f in found:
        assert len(f.records) == f.count, f"{f.id} lists {len(f.records)} of {f.count}"
    return [r.source_id for f in found for r in f.records]


# -- the dirty tenant, and a clean one --------------------------------------------------------


async def audit_finds_every_planted_case(firm: Firm) -> None:
    outcome = await run_audit(firm.plan)
    report = outcome.report
    assert set(CASE_KINDS) == set(DIRTY_CASES)
    for case, kind in CASE_KINDS.items():
        planted = firm.tenant.dirty_cases[case]
        assert planted, f"the dirty tenant plants {case}"
        ids = named(report, kind)
        assert sorted(set(ids)) == sorted(planted), case
    # The orphans are the tasks of deleted matters, through their matter_id.
    assert {f.id for f in report.of_kind("orphan")} == {"orphan:tasks.matter_id"}
    # Staff without a destination user: a warning by default, named one by one.
    [owners] = report.of_kind("owner_unresolved")
    assert owners.severity == "warning"
    assert {r.source_id for r in owners.records} >= set(firm.tenant.dirty_cases["user_no_email"])
    # Nothing here blocks: migrate would start.
    assert report.blocking == []
    # The profile counts every live record of every collection.
    for collection, rows in firm.tenant.records.items():
        assert report.profile[collection].records == len(rows), collection
    contacts = report.profile["contacts"]
    with_email = sum(1 for c in firm.tenant.records["contacts"] if c.get("email"))
    assert contacts.filled["email"] == with_email
    # The three reports are where the operator is told they are.
    assert [p.name for p in outcome.reports] == ["audit.json", "audit.md", "audit.html"]
    document = orjson.loads(outcome.reports[0].read_bytes())
    assert {f["id"] for f in document["findings"]} == {f.id for f in report.findings}


async def test_the_audit_of_the_dirty_tenant_names_every_planted_record_in_salesforce(
    world: World,
) -> None:
    await audit_finds_every_planted_case(salesforce_firm(world))


async def test_the_audit_of_the_dirty_tenant_names_every_planted_record_in_dataverse(
    dv_world: DvWorld,
) -> None:
    await audit_finds_every_planted_case(dataverse_firm(dv_world))


async def clean_tenant_has_no_dirty_finding(firm: Firm) -> None:
    """The same org, the same seed, a tenant generated clean."""
    clean = BackDocketSim(generate_tenant(1200, seed=31, dirty=False), SimSettings(rate=1000))
    runner, url = await serve(clean)
    try:
        plan = replace(firm.plan, source=replace(firm.plan.source, base_url=url))
        report = (await run_audit(plan)).report
    finally:
        await runner.cleanup()
    assert [f.id for f in report.findings if f.kind in DIRTY_KINDS] == []
    assert report.blocking == []


async def test_a_clean_tenant_raises_no_dirty_case_in_salesforce(world: World) -> None:
    await clean_tenant_has_no_dirty_finding(salesforce_firm(world))


async def test_a_clean_tenant_raises_no_dirty_case_in_dataverse(dv_world: DvWorld) -> None:
    await clean_tenant_has_no_dirty_finding(dataverse_firm(dv_world))


# -- a restricted picklist without a value the data uses ----------------------------------------


def without_french_salesforce(schema: OrgSchema) -> OrgSchema:
    """The admin deployed the preferred-language picklist (restricted) without one value."""
    contact = schema.objects["Contact"]
    fields = tuple(
        replace(f, picklist_values=tuple(v for v in f.picklist_values if v != DROPPED))
        if DROPPED in f.picklist_values
        else f
        for f in contact.fields
    )
    return OrgSchema({**schema.objects, "Contact": replace(contact, fields=fields)})


def without_french_dataverse(schema: dict[str, Any]) -> dict[str, Any]:
    """The same, on the Dataverse choice column (choices are always restricted)."""
    edited: dict[str, Any] = orjson.loads(orjson.dumps(schema))
    for column in edited["tables"]["contact"]["columns"].values():
        options = column.get("options") or []
        column["options"] = [o for o in options if o.get("label") != DROPPED]
    return edited


async def a_missing_restricted_value_blocks_until_acknowledged(
    firm: Firm, journal: Journal
) -> None:
    speakers = {
        c["id"]
        for c in firm.tenant.records["contacts"]
        if (c.get("custom_fields") or {}).get("cf_preferred_language") == DROPPED
    }
    assert speakers
    before = firm.rows()
    with pytest.raises(AuditBlocked, match=r"picklist_value:.*audit\.md") as stopped:
        await run_migrate(firm.plan)
    assert stopped.value.exit_code == 7
    assert firm.rows() == before, "nothing was written to the destination"
    run = (await journal.runs.recent(firm.plan.name))[0]
    assert run.status == "failed"
    audit = orjson.loads((firm.plan.output_dir / run.run_id / "audit.json").read_bytes())
    [blocking] = audit["blocking"]
    [finding] = [f for f in audit["findings"] if f["id"] == blocking]
    assert finding["severity"] == "blocking"
    assert {r["source_id"] for r in finding["records"]} == speakers
    assert finding["count"] == len(speakers)

    acknowledged = replace(firm.plan, audit_acknowledge=(blocking,))
    outcome = await run_migrate(acknowledged)
    failed = {f.source_id for f in outcome.report.failures if f.collection == "contacts"}
    assert speakers <= failed, "acknowledged: they load, and the destination refuses each one"
    assert sum(firm.rows().values()) > sum(before.values())


@pytest.mark.parametrize("org_schema_edit", [without_french_salesforce], indirect=True)
async def test_a_value_missing_from_a_restricted_salesforce_picklist_blocks_migrate(
    world: World, journal: Journal
) -> None:
    await a_missing_restricted_value_blocks_until_acknowledged(salesforce_firm(world), journal)


@pytest.mark.parametrize("org_schema_edit", [without_french_dataverse], indirect=True)
async def test_a_value_missing_from_a_dataverse_choice_column_blocks_migrate(
    dv_world: DvWorld, journal: Journal
) -> None:
    await a_missing_restricted_value_blocks_until_acknowledged(dataverse_firm(dv_world), journal)


@pytest.mark.parametrize("org_schema_edit", [without_french_salesforce], indirect=True)
async def test_the_operator_audits_and_migrates_through_the_cli_until_acknowledged(
    world: World, journal_settings: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
        "CRMLIFT_DATA_DIR": str(journal_settings.data_dir),
    }
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(world), encoding="utf-8")
    code, out, err = await crmlift(env, "audit", "--plan", str(plan), "--no-progress")
    assert code == 7, err
    assert "BLOCKED" in out
    audit_json = next(world.plan.output_dir.glob("*/audit.json"))
    [blocking] = orjson.loads(audit_json.read_bytes())["blocking"]
    assert blocking in out

    code, _, err = await crmlift(env, "migrate", "--plan", str(plan), "--no-progress")
    assert code == 7
    [line] = [x for x in err.splitlines() if x.startswith("crmlift: ")]
    assert line.startswith("crmlift: the audit of run")
    assert blocking in line
    assert "audit.md" in line
    assert "Traceback" not in err
    assert world.salesforce.records("Contact") == []

    run_id = audit_json.parent.name
    plan.write_text(plan_toml(world) + f'\n[audit]\nacknowledge = ["{blocking}"]\n', "utf-8")
    code, out, err = await crmlift(env, "audit", "--plan", str(plan), "--run", run_id,
                                   "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "READY" in out
    assert "acknowledged" in out


# -- owners, and what the report shows -----------------------------------------------------------


async def strict_owners_block_on_unmatched_staff(firm: Firm, org_emails: set[str]) -> None:
    assert firm.plan.destination is not None
    strict = replace(firm.plan, destination=replace(firm.plan.destination, owners="strict"))
    before = firm.rows()
    with pytest.raises(AuditBlocked, match="owner_unresolved"):
        await run_migrate(strict)
    assert firm.rows() == before
    report = (await run_audit(strict)).report
    [owners] = report.blocking
    unmatched = {
        u["id"]
        for u in firm.tenant.records["users"]
        if tx.email_key(u.get("email")) not in org_emails
    }
    assert unmatched
    assert {r.source_id for r in owners.records} == unmatched


async def test_strict_owners_stop_migrate_on_staff_without_a_salesforce_user(
    world: World,
) -> None:
    emails = {e.lower() for _, e in world.salesforce.settings.users}
    await strict_owners_block_on_unmatched_staff(salesforce_firm(world), emails)


async def test_strict_owners_stop_migrate_on_staff_without_a_dataverse_user(
    dv_world: DvWorld,
) -> None:
    emails = {e.lower() for _, e in dv_world.dataverse.settings.users}
    await strict_owners_block_on_unmatched_staff(dataverse_firm(dv_world), emails)


async def test_the_html_report_escapes_a_hostile_source_value(world: World) -> None:
    contact = world.tenant.records["contacts"][0]
    hostile = '<script>alert("owned")</script>'
    world.backdocket.edit("contacts", contact["id"], email=hostile, **{"<img src=x>": 1})
    outcome = await run_audit(world.plan)
    [invalid] = outcome.report.of_kind("invalid_email")
    assert [r.source_id for r in invalid.records] == [contact["id"]]
    page = outcome.reports[2].read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "<img src=x>" not in page
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x&gt;" in page
    markdown = outcome.reports[1].read_text(encoding="utf-8")
    assert "<script>" not in markdown
