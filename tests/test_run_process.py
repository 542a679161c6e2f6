"""`crmlift runs` tells a live run from one whose process was killed: the journal keeps
the pid, the host and the process's start time, so a reused pid is not mistaken for it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from journal import Journal
from journal.runs import Run, RunProcess
from service.commands import run_status_text


def test_this_process_is_alive_and_a_reused_pid_is_not() -> None:
    me = RunProcess.current()
    assert me.pid == os.getpid()
    assert me.alive() is True
    # Same pid, another start time: the pid was reused by an unrelated process.
    reused = dataclasses.replace(me, started_at=me.started_at - timedelta(minutes=5))
    assert reused.alive() is False
    # Another host's process cannot be checked from here: never called gone.
    elsewhere = dataclasses.replace(me, host=f"{me.host}-elsewhere")
    assert elsewhere.alive() is None


async def test_a_resume_records_the_resuming_process(journal: Journal) -> None:
    run = await journal.runs.create(
        migration="m", source="backdocket", destination="salesforce", settings={}
    )
    assert run.process == RunProcess.current()
    gone = dataclasses.replace(RunProcess.current(), started_at=run.started_at - timedelta(days=1))
    await journal.pool.execute(
        "UPDATE runs SET process_started_at = $2 WHERE run_id = $1", run.run_id, gone.started_at
    )
    crashed = await journal.runs.get(run.run_id)
    assert crashed.process_gone
    assert run_status_text(crashed) == (
        f"interrupted (process gone, resumable: crmlift migrate --resume {run.run_id})"
    )

    await journal.runs.set_status(run.run_id, "running")  # what --resume does
    resumed = await journal.runs.get(run.run_id)
    assert resumed.process == RunProcess.current()
    assert not resumed.process_gone
    assert run_status_text(resumed) == f"running (pid {os.getpid()})"


def test_an_interrupted_delta_or_rollback_says_the_command_that_continues_it() -> None:
    load = Run("r-load", "firm", "backdocket", "salesforce", "interrupted",
               datetime.now(UTC), {}, datetime.now(UTC), None, None)  # fmt: skip
    assert run_status_text(load) == "interrupted (resumable: crmlift migrate --resume r-load)"
    delta = replace(load, run_id="r-delta", settings={"command": "delta"})
    assert run_status_text(delta) == "interrupted (resumable: crmlift delta --resume r-delta)"
    undo = replace(load, run_id="r-undo", settings={"command": "rollback", "rollback_of": "r-load"})
    assert run_status_text(undo) == "interrupted (resumable: crmlift rollback --run r-load)"
