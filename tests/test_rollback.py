"""An operator undoes a migration into Salesforce: what the run created goes, what it
updated gets its pre-image back, and a record someone changed since is left and named.

Salesforce behaviour the rollback relies on (delete by id, LastModifiedDate) is the
simulator's, cited there: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/
api_rest/resources_composite_sobjects_collections_delete.htm
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest

from adapters.base import WriteResult
from adapters.dynamics.client import DataverseClient, DataverseConfig
from adapters.salesforce.client import SalesforceClient
from journal import Journal
from service.migrate import run_migrate
from service.rollback import RollbackOptions, run_rollback
from tests.test_migrate_dynamics import NoJobs as DvNoJobs
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import by_source_id, sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
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
    for name in ("Contact", "Task", "Case_Matter__c", "ContentVersion"):
        assert world.salesforce.records(name) == [], name
    assert first.report.failures == 0
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


DV_LOADED = ("accounts", "contacts", "tasks", "crm_matters")


def dv_ids(world: DvWorld) -> dict[str, set[str]]:
    """Primary ids per loaded Dataverse table."""
    out: dict[str, set[str]] = {}
    for name in DV_LOADED:
        key = world.dataverse.tables[name].primary_id
        out[name] = {str(r[key]) for r in world.dataverse.records(name)}
    return out


async def test_dataverse_rollback_deletes_what_the_run_created_but_keeps_a_hand_changed_row(
    dv_world: DvWorld, journal: Journal
) -> None:
    """The Salesforce story on Dataverse: delete is ``DELETE <set>(<id>)`` and the
    conflict check reads ``modifiedon`` (both cited in adapters/dynamics/client.py)."""
    before = dv_ids(dv_world)
    run_id = (await run_migrate(dv_world.plan)).run.run_id
    loaded = dv_ids(dv_world)
    assert all(loaded[n] > before[n] for n in ("accounts", "contacts")), loaded.keys()
    company = next(
        c for c in dv_world.tenant.records["companies"]
        if c["id"] in by_source_id(dv_world.dataverse.records("accounts"))
    )  # fmt: skip
    destination = dv_world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    # Dataverse stamps modifiedon to the second: the hand edit comes in a later second than
    # the load's writes, as a person's would (an edit within the load's own second cannot
    # be told from it by time alone).
    await asyncio.sleep(1.05 - datetime.now(UTC).microsecond / 1_000_000)
    async with DataverseClient(destination.config, destination.quota) as client:
        # After the load, someone edits one account by hand: a PATCH through the Web API.
        [edited] = await client.upsert(
            "account", [{"crm_sourceid": company["id"], "name": "Renamed By Hand"}], DvNoJobs()
        )
    assert edited.ok

    first = await run_rollback(dv_world.plan, run_id)

    after = dv_ids(dv_world)
    assert after["accounts"] == before["accounts"] | {str(edited.destination_id)}
    for name in ("contacts", "tasks", "crm_matters"):
        assert after[name] == before[name], name
    accounts = by_source_id(dv_world.dataverse.records("accounts"))
    assert accounts[company["id"]]["name"] == "Renamed By Hand"
    [conflict] = first.report.objects["account"].conflicts
    assert conflict["destination_id"] == edited.destination_id
    assert first.report.failures == 0

    second = await run_rollback(dv_world.plan, run_id)
    assert all(t.deleted == 0 and t.restored == 0 for t in second.report.objects.values())
    assert second.report.objects["contact"].already_done == first.report.objects["contact"].deleted
    assert len(second.report.objects["account"].conflicts) == 1
    assert dv_ids(dv_world) == after


class Crash(Exception):
    """The rollback process dies (power cut, OOM kill) in the middle of its deletes."""


@pytest.mark.parametrize("seed", [3, 11, 29])
async def test_a_rollback_that_dies_mid_way_finishes_on_rerun_deleting_nothing_twice(
    world: World, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {name: {r["Id"] for r in world.salesforce.records(name)} for name in LOADED}
    run_id = (await run_migrate(world.plan)).run.run_id
    dry = await run_rollback(world.plan, run_id, RollbackOptions(dry_run=True))
    calls = sum(math.ceil(t.deleted / 200) for t in dry.report.objects.values())
    rng = random.Random(seed)
    die_at, after_sending = rng.randint(1, calls), rng.random() < 0.5
    sent: Counter[str] = Counter()  # ids in a delete call, however it ended
    deleted: Counter[str] = Counter()  # ids the destination deleted in that call
    made = 0
    real_delete = SalesforceClient.delete

    async def delete(self: SalesforceClient, sobject: str, ids: Sequence[str]) -> list[WriteResult]:
        nonlocal made
        if sobject == "ContentDocument":  # how a ContentVersion's delete is carried out
            return await real_delete(self, sobject, ids)
        made += 1
        if made == die_at and not after_sending:
            raise Crash(f"died before delete call {made}")
        sent.update(ids)
        results = await real_delete(self, sobject, ids)
        deleted.update(r.external_id for r in results if r.ok and r.created is False)
        if made == die_at:
            raise Crash(f"died after delete call {made}, before journaling it")
        return results

    monkeypatch.setattr(SalesforceClient, "delete", delete)
    with pytest.raises(Crash):
        await run_rollback(world.plan, run_id)

    rerun = await run_rollback(world.plan, run_id)

    assert {name: {r["Id"] for r in world.salesforce.records(name)} for name in LOADED} == before
    # Files go by their ContentDocument (a ContentVersion itself cannot be deleted).
    assert rerun.report.failures == 0
    assert rerun.report.conflicts == 0
    assert sum(deleted.values()) == sum(t.deleted for t in dry.report.objects.values())
    # Nothing deleted is sent again: the rerun sees it gone.
    assert [i for i, n in sent.items() if n > 1 and i in deleted] == []
