"""An operator rolls back a second run on Dataverse: every row it updated gets the values
it held before, lookups included: a re-pointed one is bound back to its old parent, and
one the run set where there was none is emptied again ("To disassociate, set the value to null",
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api).
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from typing import Any

from adapters.salesforce.client import SalesforceClient
from journal import Journal
from service.migrate import run_migrate
from service.rollback import run_rollback, run_rollback_to_before
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import (  # noqa: F401  (fixtures)
    by_source_id,
    org_schema_edit,
    sim_settings,
)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import NoJobs, World, by_ext, org, world  # noqa: F401


def contacts(world: DvWorld) -> dict[str, dict[str, Any]]:
    return by_source_id(world.dataverse.records("contacts"))


async def test_a_dataverse_rollback_binds_a_repointed_contact_back_and_clears_a_new_link(
    dv_world: DvWorld, journal: Journal
) -> None:
    await run_migrate(dv_world.plan)
    loaded = contacts(dv_world)
    accounts = by_source_id(dv_world.dataverse.records("accounts"))
    people = [c for c in dv_world.tenant.records["contacts"] if c["id"] in loaded]
    moved = next(c for c in people if c.get("company_links"))
    linked = next(c for c in people if not c.get("company_links"))
    old_parent = loaded[moved["id"]]["_parentcustomerid_value"]
    assert old_parent is not None
    assert loaded[linked["id"]].get("_parentcustomerid_value") is None
    new_company = next(
        a for a in dv_world.tenant.records["companies"]
        if a["id"] in accounts and accounts[a["id"]]["accountid"] != old_parent
    )  # fmt: skip
    # At the source, one contact moves to another company and one gets its first company.
    link = [{"company_id": new_company["id"], "linked_at": "2026-11-30T09:00:00+00:00"}]
    dv_world.backdocket.edit("contacts", moved["id"], company_links=link)
    dv_world.backdocket.edit("contacts", linked["id"], company_links=link)
    second = await run_migrate(dv_world.plan)
    after_second = contacts(dv_world)
    new_parent = accounts[new_company["id"]]["accountid"]
    assert after_second[moved["id"]]["_parentcustomerid_value"] == new_parent
    assert after_second[linked["id"]]["_parentcustomerid_value"] == new_parent

    undone = await run_rollback(dv_world.plan, second.run.run_id)

    assert undone.report.failures == 0, undone.report
    assert undone.report.objects["contact"].restored >= 2
    restored = contacts(dv_world)
    assert restored[moved["id"]]["_parentcustomerid_value"] == old_parent
    assert restored[linked["id"]].get("_parentcustomerid_value") is None


async def test_an_edit_in_the_same_second_as_the_load_is_still_someone_elses_work(
    dv_world: DvWorld, journal: Journal
) -> None:
    """Dataverse stamps ``modifiedon`` to the second, so an edit made in the load's own
    second carries the load's time; the values it changed still tell it apart."""
    run_id = (await run_migrate(dv_world.plan)).run.run_id
    table = dv_world.dataverse.tables["accounts"]
    company = next(c for c in dv_world.tenant.records["companies"]
                   if c["id"] in by_source_id(dv_world.dataverse.records("accounts")))  # fmt: skip
    row = next(r for r in table.rows.values() if r.get("crm_sourceid") == company["id"])
    stamped = row["modifiedon"]
    row["name"] = "Renamed Within The Second"  # the same modifiedon: only the value differs
    assert row["modifiedon"] == stamped

    undone = await run_rollback(dv_world.plan, run_id)

    [conflict] = undone.report.objects["account"].conflicts
    assert conflict["destination_id"] == row["accountid"]
    assert "name holds 'Renamed Within The Second'" in conflict["reason"]
    assert row["accountid"] in table.rows
    assert undone.report.failures == 0


async def test_a_hand_edit_a_later_run_overwrote_comes_back_and_is_kept_as_a_conflict(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    """Undoing the second run gives the account the hand edit back (its pre-image); the
    first run's undo then finds a name it never wrote, though the last write was ours."""
    first = (await run_migrate(world.plan)).run.run_id
    company = next(c for c in world.tenant.records["companies"]
                   if c["id"] in by_ext(world.salesforce.records("Account")))  # fmt: skip
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": company["id"], "Name": "Edited By Hand"}], NoJobs()
    )
    assert edited.ok
    world.backdocket.edit("companies", company["id"], name="Renamed At The Source")
    second = (await run_migrate(world.plan)).run.run_id

    undone = await run_rollback_to_before(world.plan, first)

    newest, oldest = undone.outcomes
    assert newest.report.target_run_id == second
    assert newest.report.objects["Account"].restored >= 1
    assert newest.report.conflicts == 0
    [conflict] = oldest.report.objects["Account"].conflicts
    assert conflict["destination_id"] == edited.destination_id
    assert "Name holds 'Edited By Hand'" in conflict["reason"]
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] == "Edited By Hand"
