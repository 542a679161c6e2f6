"""After the full run the firm keeps working in BackDocket while people edit the new
Salesforce org by hand; ``crmlift delta`` brings over exactly what changed at the
source, and never clobbers what someone changed in the org since crmlift wrote it.

Everything is real but the platforms (simulators on loopback): the journal is
PostgreSQL, every call is HTTP.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.errors import SchemaMissing
from adapters.salesforce.client import SalesforceClient
from adapters.salesforce.schema import FieldSpec, OrgSchema
from journal import Journal
from service.delta import run_delta, run_watch
from service.delta_merge import DeltaConflicts
from service.estimate import run_estimate
from service.migrate import run_migrate
from service.plan import DeltaSettings, MigrationPlan
from service.reports.estimate import estimate_lines
from service.rollback import run_rollback_to_before
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    NoJobs,
    World,
    by_ext,
    org,
    org_schema_edit,
    plan_toml,
    world,
)

HAND = "Renamed By Hand"
ARCHIVE = "Source_Deleted__c"


def with_delta(plan: MigrationPlan, **settings: Any) -> MigrationPlan:
    return replace(plan, delta=DeltaSettings(**settings))


def loaded(world: World, collection: str, sobject: str, n: int) -> list[dict[str, Any]]:
    """``n`` source records of ``collection`` the full run loaded into ``sobject``."""
    there = by_ext(world.salesforce.records(sobject))
    return [r for r in world.tenant.records[collection] if r["id"] in there][:n]


def writes(world: World) -> int:
    """Write calls the org has served (REST, Collections, Bulk): anything but reads."""
    return sum(
        n for label, n in world.salesforce.stats.by_endpoint.items()
        if label.split(" ")[0] in ("POST", "PATCH", "PUT", "DELETE")
        and "oauth" not in label and "query" not in label
    )  # fmt: skip


async def actions(journal: Journal, run_id: str) -> dict[str, int]:
    rows = await journal.pool.fetch(
        "SELECT action, count(*) AS n FROM operations WHERE run_id = $1 GROUP BY 1", run_id
    )
    return {r["action"]: r["n"] for r in rows}


async def hand_edit(org: SalesforceClient, source_id: str, name: str = HAND) -> None:
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": source_id, "Name": name}], NoJobs()
    )
    assert edited.ok


async def test_a_delta_applies_exactly_the_source_changes_and_keeps_a_hand_edit(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    await run_migrate(world.plan)
    clash, renamed = loaded(world, "companies", "Account", 2)
    [task] = loaded(world, "tasks", "Task", 1)
    # The firm works on: a company renamed, a new one, a task deleted; and the same
    # company renamed at the source that someone renamed in Salesforce by hand.
    bd = world.backdocket
    bd.edit("companies", renamed["id"], name="Renamed At The Source")
    created = bd.create("companies")
    assert created is not None
    bd.delete("tasks", task["id"])
    written_name = by_ext(world.salesforce.records("Account"))[clash["id"]]["Name"]
    await hand_edit(org, clash["id"])
    bd.edit("companies", clash["id"], name="Also Renamed At The Source")
    accounts_before = by_ext(world.salesforce.records("Account"))

    outcome = await run_delta(world.plan)

    accounts = by_ext(world.salesforce.records("Account"))
    assert accounts[renamed["id"]]["Name"] == "Renamed At The Source"
    assert created["id"] in accounts
    assert created["id"] not in accounts_before
    assert accounts[clash["id"]]["Name"] == HAND  # keep-destination: never clobbered
    assert task["id"] in by_ext(world.salesforce.records("Task"))  # flagged, not deleted
    untouched = {k: v for k, v in accounts_before.items() if k not in (renamed["id"], clash["id"])}
    assert {k: accounts[k] for k in untouched} == untouched
    report = outcome.report
    [conflict] = report.true_conflicts
    assert (conflict.source_id, conflict.object, conflict.field) == (clash["id"], "Account", "Name")
    assert (conflict.theirs, conflict.ours, conflict.resolution) == (
        HAND, "Also Renamed At The Source", "kept"
    )  # fmt: skip
    assert conflict.base == written_name != HAND
    [deleted] = report.deletions
    assert (deleted.collection, deleted.source_id, deleted.action) == (
        "tasks",
        task["id"],
        "flagged",
    )
    done = await actions(journal, outcome.run.run_id)
    assert (done.get("created"), done.get("updated")) == (1, 1), done
    summary = orjson.loads(outcome.reports[0].read_bytes())
    assert summary["conflicts"][0]["field"] == "Name"
    assert "Also Renamed At The Source" in outcome.reports[1].read_text()

    # Nothing changed at the source since: the next cycle writes nothing at all.
    calls = writes(world)
    state = world.salesforce.records("Account")
    second = await run_delta(world.plan)
    assert writes(world) == calls
    assert world.salesforce.records("Account") == state
    done = await actions(journal, second.run.run_id)
    assert (done.get("created", 0), done.get("updated", 0)) == (0, 0), done
    assert second.report.base_run_id == outcome.run.run_id


async def test_prefer_source_overwrites_the_hand_edit_and_still_reports_it(
    world: World, org: SalesforceClient
) -> None:
    await run_migrate(world.plan)
    [clash] = loaded(world, "companies", "Account", 1)
    await hand_edit(org, clash["id"])
    world.backdocket.edit("companies", clash["id"], name="The Source Wins")

    outcome = await run_delta(with_delta(world.plan, conflicts="prefer-source"))

    assert by_ext(world.salesforce.records("Account"))[clash["id"]]["Name"] == "The Source Wins"
    [conflict] = outcome.report.true_conflicts
    assert (conflict.theirs, conflict.resolution) == (HAND, "written")


async def test_stop_refuses_the_cycle_before_any_write_naming_the_conflict(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    await run_migrate(world.plan)
    clash, other = loaded(world, "companies", "Account", 2)
    await hand_edit(org, clash["id"])
    world.backdocket.edit("companies", clash["id"], name="Stopped At The Source")
    world.backdocket.edit("companies", other["id"], name="Would Have Been Written")
    calls = writes(world)

    with pytest.raises(DeltaConflicts) as refused:
        await run_delta(with_delta(world.plan, conflicts="stop"))

    assert refused.value.exit_code == 10
    assert clash["id"] in str(refused.value)
    assert "Account.Name" in str(refused.value)
    assert writes(world) == calls
    accounts = by_ext(world.salesforce.records("Account"))
    assert accounts[other["id"]]["Name"] != "Would Have Been Written"
    status = await journal.pool.fetchval(
        "SELECT status FROM runs WHERE settings->>'command' = 'delta'"
    )
    assert status == "failed"


async def test_a_record_deleted_in_the_destination_is_not_created_again(
    world: World, org: SalesforceClient
) -> None:
    await run_migrate(world.plan)
    [company] = loaded(world, "companies", "Account", 1)
    account_id = by_ext(world.salesforce.records("Account"))[company["id"]]["Id"]
    [gone] = await org.delete("Account", [account_id])
    assert gone.error_code is None
    world.backdocket.edit("companies", company["id"], name="Edited After Its Deletion")

    kept_out = await run_delta(world.plan)

    assert company["id"] not in by_ext(world.salesforce.records("Account"))
    assert [g.source_id for g in kept_out.report.gone] == [company["id"]]
    assert not kept_out.report.gone[0].recreated

    again = await run_delta(with_delta(world.plan, recreate_deleted=True))
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] == (
        "Edited After Its Deletion"
    )
    assert again.report.gone[0].recreated


async def test_a_deltas_delete_is_undone_by_rollback_to_before_it(
    world: World, journal: Journal
) -> None:
    await run_migrate(world.plan)
    [task] = loaded(world, "tasks", "Task", 1)
    before = by_ext(world.salesforce.records("Task"))[task["id"]]
    world.backdocket.delete("tasks", task["id"])

    outcome = await run_delta(with_delta(world.plan, deletions="delete"))

    assert task["id"] not in by_ext(world.salesforce.records("Task"))
    assert [d.action for d in outcome.report.deletions] == ["deleted"]
    undone = await run_rollback_to_before(world.plan, outcome.run.run_id)
    [rolled] = undone.outcomes
    assert rolled.report.objects["Task"].restored == 1
    back = by_ext(world.salesforce.records("Task"))[task["id"]]
    assert back["Id"] != before["Id"]
    for name in ("Subject", "WhoId", "WhatId", "OwnerId", "Status"):
        assert back.get(name) == before.get(name), name
    mapped = await journal.pool.fetchval(
        "SELECT destination_id FROM id_map WHERE external_id = $1 AND object = 'Task'", task["id"]
    )
    assert mapped == back["Id"]


async def test_watch_runs_a_cycle_per_interval_and_stops_at_until(world: World) -> None:
    await run_migrate(world.plan)
    until = datetime.now(UTC) + timedelta(seconds=3)

    watched = await run_watch(world.plan, every=timedelta(seconds=1), until=until)

    assert len(watched.cycles) >= 2
    assert not watched.stopped
    starts = [c.run.started_at for c in watched.cycles]
    assert all(start < until for start in starts)
    assert starts[-1] + timedelta(seconds=1) >= until  # no cycle left that could start in time
    bases = [c.report.base_run_id for c in watched.cycles[1:]]
    assert bases == [c.run.run_id for c in watched.cycles[:-1]]


async def test_the_operator_runs_a_delta_from_the_command_line(
    world: World, tmp_path: Path, journal: Journal
) -> None:
    await run_migrate(world.plan)
    [company] = loaded(world, "companies", "Account", 1)
    world.backdocket.edit("companies", company["id"], name="Changed For The CLI")
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(world) + '\n[delta]\nconflicts = "keep-destination"\n')
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": world.plan.journal.dsn or ""}

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "delta", "--plan", str(plan), "--no-progress",
        "--overlap", "10m", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()

    assert proc.returncode == 0, stderr.decode()
    assert "delta-summary.md" in stdout.decode()
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] == (
        "Changed For The CLI"
    )
    overlap = await journal.pool.fetchval(
        "SELECT settings->'delta'->>'overlap_seconds' FROM runs "
        "WHERE settings->>'command' = 'delta'"
    )
    assert float(overlap) == 600.0


async def test_the_estimate_prices_a_delta_window_by_the_records_changed_in_it(
    world: World,
) -> None:
    changed = world.tenant.records["companies"][:3]
    for company in changed:
        world.backdocket.edit("companies", company["id"], name=f"{company['name']} (new)")

    delta = await run_estimate(world.plan, timedelta(hours=24))
    full = await run_estimate(world.plan)

    assert delta.counts["companies"] == len(changed)
    assert delta.counts["contacts"] == 0
    assert delta.counts["users"] == full.counts["users"]  # read whole every cycle
    accounts = {o.object: o.records for o in delta.objects}
    assert accounts.get("Account", 0) <= len(changed) + 1  # + the Unassigned Account
    assert delta.total.requests < full.total.requests
    assert any("delta window" in line and "24 h" in line for line in estimate_lines(delta))


def with_archive_field(schema: OrgSchema) -> OrgSchema:
    """The admin deployed the plan's archive checkbox on every object."""
    flag = FieldSpec("Source_Deleted__c", "boolean", "Source Deleted")
    return OrgSchema(
        {name: replace(o, fields=(*o.fields, flag)) for name, o in schema.objects.items()},
        schema.state_country_picklists,
    )


async def test_archive_needs_the_field_in_the_org_before_any_write(world: World) -> None:
    await run_migrate(world.plan)
    [task] = loaded(world, "tasks", "Task", 1)
    world.backdocket.delete("tasks", task["id"])
    calls = writes(world)

    with pytest.raises(SchemaMissing) as missing:
        await run_delta(with_delta(world.plan, deletions="archive", archive_field=ARCHIVE))

    assert "Account.Source_Deleted__c" in str(missing.value)
    assert missing.value.exit_code == 7
    assert writes(world) == calls


@pytest.mark.parametrize("org_schema_edit", [with_archive_field], indirect=True)
async def test_an_archived_deletion_is_marked_and_rollback_clears_the_mark(world: World) -> None:
    await run_migrate(world.plan)
    [task] = loaded(world, "tasks", "Task", 1)
    world.backdocket.delete("tasks", task["id"])
    plan = with_delta(world.plan, deletions="archive", archive_field=ARCHIVE)

    outcome = await run_delta(plan)

    assert by_ext(world.salesforce.records("Task"))[task["id"]][ARCHIVE] is True
    assert [d.action for d in outcome.report.deletions] == ["archived"]
    again = await run_delta(plan)  # the overlap reads the deletion again: nothing to do
    assert [d.action for d in again.report.deletions] == ["already archived"]
    await run_rollback_to_before(world.plan, outcome.run.run_id)
    assert by_ext(world.salesforce.records("Task"))[task["id"]][ARCHIVE] in (False, None)
