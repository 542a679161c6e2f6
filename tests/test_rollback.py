"""An operator undoes a migration into Salesforce: what the run created goes, what it
updated gets its pre-image back, and a record someone changed since is left and named.

Salesforce behaviour the rollback relies on (delete by id, LastModifiedDate) is the
simulator's, cited there: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/
api_rest/resources_composite_sobjects_collections_delete.htm
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import orjson

from adapters.salesforce.client import SalesforceClient
from journal import Journal
from service.migrate import run_migrate
from service.rollback import RollbackOptions, run_rollback
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    NoJobs,
    World,
    by_ext,
    org,
    org_schema_edit,
    world,
)

LOADED = ("Account", "Contact", "Task", "Case_Matter__c")


def counts(world: World) -> dict[str, int]:
    return {name: len(world.salesforce.records(name)) for name in LOADED}


async def test_rollback_deletes_what_the_run_created_but_keeps_a_hand_changed_record(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    before = counts(world)
    run_id = (await run_migrate(world.plan)).run.run_id
    assert counts(world)["Account"] > before["Account"]
    # After the load, someone at the firm edits one account by hand.
    company = world.tenant.records["companies"][0]
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": company["id"], "Name": "Renamed By Hand"}], NoJobs()
    )
    assert edited.ok

    first = await run_rollback(world.plan, run_id)

    accounts = by_ext(world.salesforce.records("Account"))
    assert list(accounts) == [company["id"]]
    assert accounts[company["id"]]["Name"] == "Renamed By Hand"
    for name in ("Contact", "Task", "Case_Matter__c"):
        assert world.salesforce.records(name) == [], name
    [conflict] = first.report.objects["Account"].conflicts
    assert conflict["destination_id"] == edited.destination_id
    summary = orjson.loads(first.reports[0].read_bytes())
    assert summary["objects"]["Account"]["conflicts"][0]["destination_id"] == edited.destination_id
    assert first.reports[0].name == "rollback-summary.json"

    # The same command again: nothing is deleted twice, the conflict is still named.
    second = await run_rollback(world.plan, run_id)
    assert all(t.deleted == 0 and t.restored == 0 for t in second.report.objects.values())
    assert second.report.objects["Contact"].already_done == first.report.objects["Contact"].deleted
    assert len(second.report.objects["Account"].conflicts) == 1
    runs = await journal.pool.fetch(
        "SELECT run_id, status FROM runs WHERE settings->>'rollback_of' = $1", run_id
    )
    assert [r["status"] for r in runs] == ["completed"]  # one rollback run, continued

    # --force reverts the conflict too.
    forced = await run_rollback(world.plan, run_id, RollbackOptions(force=True))
    assert forced.report.objects["Account"].deleted == 1
    assert by_ext(world.salesforce.records("Account")) == {}


async def test_a_dry_run_lists_what_it_would_do_and_writes_nothing(
    world: World, journal: Journal
) -> None:
    run_id = (await run_migrate(world.plan)).run.run_id
    loaded = counts(world)

    dry = await run_rollback(world.plan, run_id, RollbackOptions(dry_run=True, objects=("Task",)))

    assert counts(world) == loaded
    assert set(dry.report.objects) == {"Task"}
    assert dry.report.objects["Task"].deleted == loaded["Task"]
    assert dry.reports[0].name == "rollback-dry-run.json"
    assert await journal.pool.fetchval("SELECT count(*) FROM rollback_ops") == 0


async def test_a_second_runs_updates_get_their_pre_images_back(world: World) -> None:
    await run_migrate(world.plan)
    company = next(
        c for c in world.tenant.records["companies"]
        if c["id"] in by_ext(world.salesforce.records("Account"))
    )  # fmt: skip
    name_before = by_ext(world.salesforce.records("Account"))[company["id"]]["Name"]
    world.backdocket.edit("companies", company["id"], name="Renamed At The Source")
    second = await run_migrate(world.plan)
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] != name_before

    undone = await run_rollback(world.plan, second.run.run_id)

    assert undone.report.objects["Account"].restored >= 1
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] == name_before


async def test_a_kept_child_holds_back_its_parents_which_would_take_it_with_them(
    world: World, org: SalesforceClient
) -> None:
    """Deleting an Account deletes its Contacts with it (Salesforce cascades; so does
    Dataverse): with a hand-changed Contact kept, the accounts are held, not deleted."""
    run_id = (await run_migrate(world.plan)).run.run_id
    contact = world.tenant.records["contacts"][0]
    [edited] = await org.upsert(
        "Contact", [{"Source_System_ID__c": contact["id"], "LastName": "Edited By Hand"}], NoJobs()
    )
    assert edited.ok

    outcome = await run_rollback(world.plan, run_id)

    assert world.salesforce.records("Task") == []  # children of contacts: deleted
    assert [c["LastName"] for c in world.salesforce.records("Contact")] == ["Edited By Hand"]
    held = outcome.report.objects["Account"].conflicts
    assert held
    assert all(c["reason"].startswith("held: a changed Contact record is kept") for c in held)
    assert len(world.salesforce.records("Account")) == len(held)
