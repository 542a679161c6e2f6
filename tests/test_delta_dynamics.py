"""The delta story on Dynamics 365 (Dataverse): the source's changes arrive, a row
edited by hand through the Web API keeps its value and is reported, a second cycle
with nothing new writes nothing, and a delta's delete is undone by rollback."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from dataclasses import replace
from typing import Any

from adapters.dynamics.client import DataverseClient, DataverseConfig
from journal import Journal
from service.delta import run_delta
from service.migrate import run_migrate
from service.plan import DeltaSettings
from service.rollback import run_rollback_to_before
from tests.test_migrate_dynamics import (  # noqa: F401  (fixtures)
    NoJobs,
    World,
    by_source_id,
    org_schema_edit,
    sim_settings,
)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)

HAND = "Renamed By Hand"
TABLES = ("accounts", "contacts", "tasks", "crm_matters")


def loaded(world: World, collection: str, table: str, n: int) -> list[dict[str, Any]]:
    there = by_source_id(world.dataverse.records(table))
    return [r for r in world.tenant.records[collection] if r["id"] in there][:n]


def rows(world: World) -> dict[str, list[dict[str, Any]]]:
    return {name: world.dataverse.records(name) for name in TABLES}


async def actions(journal: Journal, run_id: str) -> dict[str, int]:
    found = await journal.pool.fetch(
        "SELECT action, count(*) AS n FROM operations WHERE run_id = $1 GROUP BY 1", run_id
    )
    return {r["action"]: r["n"] for r in found}


async def test_a_dataverse_delta_keeps_a_hand_edit_and_a_second_one_writes_nothing(
    dv_world: World, journal: Journal
) -> None:
    world = dv_world
    await run_migrate(world.plan)
    clash, renamed = loaded(world, "companies", "accounts", 2)
    written_name = by_source_id(world.dataverse.records("accounts"))[clash["id"]]["name"]
    destination = world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    async with DataverseClient(destination.config, destination.quota) as client:
        [edited] = await client.upsert(
            "account", [{"crm_sourceid": clash["id"], "name": HAND}], NoJobs()
        )
    assert edited.ok
    world.backdocket.edit("companies", clash["id"], name="Also Renamed At The Source")
    world.backdocket.edit("companies", renamed["id"], name="Renamed At The Source")
    created = world.backdocket.create("contacts")
    assert created is not None

    outcome = await run_delta(world.plan)

    accounts = by_source_id(world.dataverse.records("accounts"))
    assert accounts[clash["id"]]["name"] == HAND
    assert accounts[renamed["id"]]["name"] == "Renamed At The Source"
    assert created["id"] in by_source_id(world.dataverse.records("contacts"))
    [conflict] = outcome.report.true_conflicts
    assert (conflict.object, conflict.field, conflict.base, conflict.theirs, conflict.ours) == (
        "account", "name", written_name, HAND, "Also Renamed At The Source"
    )  # fmt: skip

    state = rows(world)
    second = await run_delta(world.plan)
    assert rows(world) == state  # not a row written, modifiedon included
    done = await actions(journal, second.run.run_id)
    assert (done.get("created", 0), done.get("updated", 0)) == (0, 0), done


async def test_a_dataverse_deltas_delete_is_undone_by_rollback(dv_world: World) -> None:
    world = dv_world
    await run_migrate(world.plan)
    [task] = loaded(world, "tasks", "tasks", 1)
    before = by_source_id(world.dataverse.records("tasks"))[task["id"]]
    world.backdocket.delete("tasks", task["id"])

    outcome = await run_delta(replace(world.plan, delta=DeltaSettings(deletions="delete")))

    assert task["id"] not in by_source_id(world.dataverse.records("tasks"))
    assert [d.action for d in outcome.report.deletions] == ["deleted"]
    await run_rollback_to_before(world.plan, outcome.run.run_id)
    back = by_source_id(world.dataverse.records("tasks"))[task["id"]]
    for name in ("subject", "_regardingobjectid_value", "_ownerid_value", "description"):
        assert back.get(name) == before.get(name), name
