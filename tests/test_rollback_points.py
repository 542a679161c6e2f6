"""An operator undoes several runs into one org at once: ``--to-before FIRST`` takes the
org back to the moment before the first run, newest run first, without calling crmlift's
own restores someone else's work; a large object goes through journaled Bulk API 2.0
delete jobs, and a rollback killed in the middle of one finishes on rerun without a
second job for the same records.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import ConfigError
from adapters.salesforce.client import SalesforceClient
from journal import Journal
from service import rollback
from service.cli import main
from service.migrate import run_migrate
from service.rollback import RollbackOptions, run_rollback, run_rollback_to_before
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    NoJobs,
    World,
    by_ext,
    org,
    org_schema_edit,
    world,
)

LOADED = ("Account", "Contact", "Task", "Case_Matter__c", "ContentVersion")


def ids(world: World) -> dict[str, set[str]]:
    return {name: {r["Id"] for r in world.salesforce.records(name)} for name in LOADED}


def values(world: World, sobject: str) -> dict[str, dict[str, Any]]:
    """Records by id with the fields a person reads (not the audit stamps)."""
    stamps = {"LastModifiedDate", "SystemModstamp", "LastModifiedById"}
    return {
        r["Id"]: {k: v for k, v in r.items() if k not in stamps}
        for r in world.salesforce.records(sobject)
    }


async def second_run_changes(world: World) -> str:
    """At the source, the firm renames a company and a contact the first run loaded; the
    second run writes those updates. Returns the second run's id."""
    accounts = by_ext(world.salesforce.records("Account"))
    company = next(c for c in world.tenant.records["companies"] if c["id"] in accounts)
    world.backdocket.edit("companies", company["id"], name="Renamed At The Source")
    contacts = by_ext(world.salesforce.records("Contact"))
    person = next(c for c in world.tenant.records["contacts"] if c["id"] in contacts)
    world.backdocket.edit("contacts", person["id"], last_name="Renamed-At-Source")
    second = await run_migrate(world.plan)
    assert by_ext(world.salesforce.records("Account"))[company["id"]]["Name"] == (
        "Renamed At The Source"
    )
    return second.run.run_id


async def test_undoing_two_runs_returns_the_org_to_before_the_first_with_no_false_conflicts(
    world: World, journal: Journal
) -> None:
    before = ids(world)
    first = (await run_migrate(world.plan)).run.run_id
    second = await second_run_changes(world)

    undone = await run_rollback_to_before(world.plan, first)

    assert [o.report.target_run_id for o in undone.outcomes] == [second, first]
    # The second run's updates were restored first: crmlift's own restore is no conflict
    # for the first run, whose records it then deletes.
    assert undone.outcomes[0].report.objects["Account"].restored >= 1
    assert all(o.report.conflicts == 0 and o.report.failures == 0 for o in undone.outcomes)
    assert ids(world) == before
    # Each run has its own completed rollback run.
    rows = await journal.pool.fetch(
        "SELECT settings->>'rollback_of' AS target, status FROM runs "
        "WHERE settings->>'rollback_of' IS NOT NULL ORDER BY started_at"
    )
    assert [(r["target"], r["status"]) for r in rows] == [(second, "completed"),
                                                          (first, "completed")]  # fmt: skip

    # The same command again: both runs are fully undone, nothing is touched.
    again = await run_rollback_to_before(world.plan, first)
    assert again.outcomes == []
    assert again.skipped == [second, first]


async def test_a_hand_edit_between_the_runs_is_still_reported_and_kept(
    world: World, org: SalesforceClient
) -> None:
    before = ids(world)
    first = (await run_migrate(world.plan)).run.run_id
    # Between the runs, someone at the firm edits an account the second run leaves alone.
    untouched = world.tenant.records["companies"][-1]
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": untouched["id"], "Name": "Edited By Hand"}], NoJobs()
    )
    assert edited.ok
    second = await second_run_changes(world)

    undone = await run_rollback_to_before(world.plan, first)

    newest, oldest = undone.outcomes
    assert newest.report.target_run_id == second
    assert newest.report.conflicts == 0
    [conflict] = oldest.report.objects["Account"].conflicts
    assert conflict["destination_id"] == edited.destination_id
    assert oldest.report.conflicts == 1
    assert oldest.report.failures == 0
    after = ids(world)
    assert after["Account"] == before["Account"] | {str(edited.destination_id)}
    assert {n: after[n] for n in LOADED if n != "Account"} == {
        n: before[n] for n in LOADED if n != "Account"
    }
    assert by_ext(world.salesforce.records("Account"))[untouched["id"]]["Name"] == "Edited By Hand"

    # A rerun skips the second run (fully undone) and still names the first run's conflict.
    again = await run_rollback_to_before(world.plan, first)
    assert again.skipped == [second]
    [still] = again.outcomes
    assert len(still.report.objects["Account"].conflicts) == 1


async def test_rolling_back_only_the_first_run_calls_the_second_runs_writes_conflicts(
    world: World,
) -> None:
    """``--run FIRST`` alone would throw away the second run's writes: they are not the
    first run's, so they are someone else's as far as that rollback can tell."""
    first = (await run_migrate(world.plan)).run.run_id
    await second_run_changes(world)
    loaded = values(world, "Account")

    dry = await run_rollback(world.plan, first, RollbackOptions(dry_run=True))

    assert len(dry.report.objects["Account"].conflicts) >= 1
    assert values(world, "Account") == loaded


async def test_a_dry_run_of_the_point_in_time_undo_sees_the_newer_runs_writes_as_ours(
    world: World,
) -> None:
    first = (await run_migrate(world.plan)).run.run_id
    second = await second_run_changes(world)
    loaded = ids(world)

    dry = await run_rollback_to_before(world.plan, first, RollbackOptions(dry_run=True))

    assert [o.report.target_run_id for o in dry.outcomes] == [second, first]
    assert all(o.report.conflicts == 0 for o in dry.outcomes)
    assert ids(world) == loaded


async def test_a_rollback_run_is_no_point_in_time_to_go_back_to(world: World) -> None:
    first = (await run_migrate(world.plan)).run.run_id
    undone = await run_rollback(world.plan, first)
    assert undone.report.rollback_run_id is not None
    with pytest.raises(ConfigError, match="is itself a rollback"):
        await run_rollback_to_before(world.plan, undone.report.rollback_run_id)


class Crash(Exception):
    """The rollback process dies (power cut, OOM kill) while a delete job is out."""


@pytest.mark.parametrize("seed", [3, 5, 23, 8])
async def test_a_rollback_killed_around_a_bulk_delete_job_finishes_with_no_job_sent_twice(
    world: World, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects this size go through Bulk API 2.0 delete jobs (the world's bulk_threshold is
    150; the rollback hands them over whole once they reach ``JOB_RECORDS``). The process
    dies once a job is opened (no data yet), once it is closed, or once its results are
    read but not journaled."""
    monkeypatch.setattr(rollback, "JOB_RECORDS", 150)
    before = ids(world)
    first = (await run_migrate(world.plan)).run.run_id
    jobs_before = set(world.salesforce.bulk.jobs)
    rng = random.Random(seed)
    point = rng.choice(["opened", "uploaded", "answered"])
    die_at = rng.randint(1, 2)  # which delete job
    seen = 0
    owner: Any = {"opened": rollback._DeleteLedger, "uploaded": rollback._DeleteLedger,
                  "answered": SalesforceClient}[point]  # fmt: skip
    attr = {"opened": "job_opened", "uploaded": "job_uploaded",
            "answered": "_delete_job_results"}[point]  # fmt: skip
    real = getattr(owner, attr)

    async def dying(self: Any, *args: Any) -> Any:
        nonlocal seen
        answer = await real(self, *args)
        seen += 1
        if seen == die_at:
            raise Crash(f"died once delete job {seen} was {point}")
        return answer

    monkeypatch.setattr(owner, attr, dying)
    with pytest.raises(Crash):
        await run_rollback(world.plan, first)
    monkeypatch.setattr(owner, attr, real)

    rerun = await run_rollback(world.plan, first)

    assert ids(world) == before
    assert rerun.report.failures == 0
    assert rerun.report.conflicts == 0
    deletes = [j for i, j in world.salesforce.bulk.jobs.items()
               if i not in jobs_before and j.operation in ("delete", "hardDelete")]  # fmt: skip
    assert len(deletes) >= 2
    # No record is deleted by two jobs: a closed job is read back, an unclosed one aborted.
    deleted = [row[0] for j in deletes for row in j.successes]
    assert len(deleted) == len(set(deleted))
    aborted = [j for j in deletes if j.state == "Aborted"]
    assert len(aborted) == (1 if point == "opened" else 0)
    assert all(j.state == "JobComplete" for j in deletes if j not in aborted)


@pytest.mark.parametrize(
    "which", [["--run", "r1", "--to-before", "r2"], []], ids=["both", "neither"]
)
def test_the_operator_names_either_one_run_or_a_point_in_time(
    which: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[migration]\nname = "firm"\n[source]\nplatform = "backdocket"\n'
        'base_url = "http://127.0.0.1:9"\nclient_id = "crmlift"\n'
        'client_secret = { env = "CRMLIFT_TEST_ROLLBACK_SECRET" }\n'
    )
    with pytest.raises(SystemExit) as stopped:
        main(["rollback", "--plan", str(plan), *which])
    assert stopped.value.code == 2
    assert "--to-before" in capsys.readouterr().err
