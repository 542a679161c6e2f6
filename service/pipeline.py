"""Wires a plan to its parts: journal, governed source, extractor, reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from adapters.backdocket.client import BackDocketClient
from adapters.errors import ConfigError, CrmliftError, Interrupted, first_error
from journal import Journal, open_journal
from journal.runs import Run
from ratelimit.governor import Governor
from service.extract import PHASE as EXTRACT_PHASE
from service.extract import Extractor, ExtractSummary
from service.plan import MigrationPlan
from service.progress import ProgressBoard
from service.reports.extract import write_extract_report

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ExtractOutcome:
    """A finished extraction and where its reports are."""

    run: Run
    summary: ExtractSummary
    reports: tuple[Path, Path]
    governor: Governor


def run_dir(plan: MigrationPlan, run_id: str) -> Path:
    """Where a run's reports go."""
    return plan.output_dir / run_id


async def start_or_resume(
    journal: Journal, plan: MigrationPlan, resume: str | None, *, destination: str | None = None
) -> Run:
    """A new run of the plan, or the named run put back to work."""
    if resume is None:
        return await journal.runs.create(
            migration=plan.name,
            source="backdocket",
            destination=destination,
            settings=plan.public_settings(),
        )
    run = await journal.runs.get(resume)
    if run.migration != plan.name:
        raise ConfigError(f"run {resume} belongs to migration {run.migration!r}, not {plan.name!r}")
    await journal.runs.set_status(run.run_id, "running")
    return run


async def extract_into(
    journal: Journal, plan: MigrationPlan, run: Run, progress: ProgressBoard | None
) -> tuple[ExtractSummary, Governor]:
    """Extract whatever the run still lacks and write the extraction report."""
    governor = Governor(plan.source_quota)
    client = BackDocketClient(plan.source, governor)
    extractor = Extractor(
        client,
        journal,
        plan.extract,
        readers=plan.source_quota.concurrency,
        progress=progress,
    )
    async with client:
        summary = await extractor.run(run)
    issues = await journal.issues.list(run.run_id, EXTRACT_PHASE)
    write_extract_report(summary, issues, run_dir(plan, run.run_id))
    return summary, governor


@asynccontextmanager
async def guarded(journal: Journal, run: Run, phase: str) -> AsyncIterator[None]:
    """Whatever stops the run, its status in the journal says so.

    SIGINT/SIGTERM (a cancelled task) leaves it ``interrupted``; an error leaves
    it ``failed`` with the reason. Both are resumable with ``--resume``.
    """
    try:
        yield
    except (asyncio.CancelledError, Interrupted):
        await asyncio.shield(journal.runs.set_status(run.run_id, "interrupted", "stopped"))
        raise Interrupted(f"run {run.run_id} stopped; resume with --resume {run.run_id}") from None
    except BaseException as exc:
        error = first_error(exc)
        if isinstance(error, CrmliftError):
            log.error(f"{phase}.failed", error=str(error), kind=type(error).__name__)
        else:
            log.error(f"{phase}.crashed", error=repr(error), exc_info=exc)
        await journal.runs.set_status(run.run_id, "failed", str(error))
        raise error from exc


async def run_extract(
    plan: MigrationPlan,
    *,
    resume: str | None = None,
    progress: ProgressBoard | None = None,
) -> ExtractOutcome:
    """Extract the plan's source into a new (or resumed) run and write the report."""
    async with open_journal(plan.journal) as journal:
        run = await start_or_resume(journal, plan, resume)
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        async with guarded(journal, run, "extract"):
            summary, governor = await extract_into(journal, plan, run, progress)
        await journal.runs.set_status(run.run_id, "extracted")
        out = run_dir(plan, run.run_id)
        reports = (out / "extract-summary.json", out / "extract-summary.md")
        return ExtractOutcome(run=run, summary=summary, reports=reports, governor=governor)
