"""Wires a plan to its parts: journal, governed source, extractor, reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

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


Command = Literal["extract", "migrate"]


def lock_scope(plan: MigrationPlan) -> str:
    """What one process at a time may work on: the migration into its org.

    The id map is kept per migration and org (``migrate.id_map_scope``), so this is
    exactly what two processes must not share; an extract-only plan has no org.
    """
    org = plan.destination.config.org_url if plan.destination is not None else "(no destination)"
    return f"{plan.name} into {org}"


def plan_fingerprint(plan: MigrationPlan) -> dict[str, Any]:
    """What a run must keep pointing at across resumes: source, destination org, mapping.

    A resume against another tenant would mix two sources in one staging area, or
    write one org's id map against another; page sizes and quotas may change freely.
    """
    destination = plan.destination
    return {
        "source": f"backdocket {_public_url(plan.source.base_url)}",
        "destination": None
        if destination is None
        else f"{destination.platform} {_public_url(destination.config.org_url)}",
        "mapping": {} if destination is None else dict(destination.mapping),
    }


def _public_url(url: str) -> str:
    """The URL without any user:password part, so a fingerprint never holds a secret."""
    parts = urlsplit(url.rstrip("/"))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@asynccontextmanager
async def running(
    journal: Journal,
    plan: MigrationPlan,
    resume: str | None,
    command: Command,
    *,
    destination: str | None = None,
) -> AsyncIterator[Run]:
    """A new or resumed run, held by this process alone until the block ends.

    The lock is taken before the run is created or touched, so a second process
    (``migrate``, ``extract`` or a second ``--resume``) stops with RunLocked (exit 2)
    naming the holder, before it reads or writes anything.
    """
    async with journal.runs.locked(lock_scope(plan)) as lock:
        run = await start_or_resume(journal, plan, resume, command, destination=destination)
        await lock.claim(run)
        yield run


async def start_or_resume(
    journal: Journal,
    plan: MigrationPlan,
    resume: str | None,
    command: Command = "migrate",
    *,
    destination: str | None = None,
) -> Run:
    """A new run of the plan, or the named run put back to work (callers hold its lock)."""
    fingerprint = plan_fingerprint(plan)
    if resume is None:
        return await journal.runs.create(
            migration=plan.name,
            source="backdocket",
            destination=destination,
            settings=plan.public_settings(),
            fingerprint=fingerprint,
        )
    run = await journal.runs.get(resume)
    if run.migration != plan.name:
        raise ConfigError(f"run {resume} belongs to migration {run.migration!r}, not {plan.name!r}")
    await journal.runs.check_fingerprint(run, fingerprint)
    if command == "extract" and run.status == "completed":
        # Refused rather than left alone: re-extracting a finished run stages records
        # no load will read, and calling it `extracted` would hide that it was loaded.
        raise ConfigError(
            f"run {resume} is completed (extracted and loaded); `extract --resume` would "
            "undo that status. Start a new run (or `migrate` for what changed since)"
        )
    await journal.runs.set_status(run.run_id, "running")
    return run


async def extract_into(
    journal: Journal,
    plan: MigrationPlan,
    run: Run,
    progress: ProgressBoard | None,
    since: dict[str, datetime] | None = None,
) -> tuple[ExtractSummary, Governor]:
    """Extract whatever the run still lacks and write the extraction report; with
    ``since`` only what changed from then (``Extractor.run_since``, delta pickup)."""
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
        summary = await (extractor.run(run) if since is None else extractor.run_since(run, since))
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
    async with (
        open_journal(plan.journal) as journal,
        running(journal, plan, resume, "extract") as run,
    ):
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        async with guarded(journal, run, "extract"):
            summary, governor = await extract_into(journal, plan, run, progress)
        await journal.runs.set_status(run.run_id, "extracted")
        out = run_dir(plan, run.run_id)
        reports = (out / "extract-summary.json", out / "extract-summary.md")
        return ExtractOutcome(run=run, summary=summary, reports=reports, governor=governor)


async def load_run(journal: Journal, plan: MigrationPlan, run_id: str, doing: str) -> Run:
    """The load run ``run_id`` of this plan's migration, which ``doing`` (rollback,
    reconcile) acts on; a run of another migration, an extraction or a rollback is
    refused by name (exit 2)."""
    run = await journal.runs.get(run_id)
    if run.migration != plan.name or run.destination is None:
        raise ConfigError(f"run {run_id} is not a load of migration {plan.name!r}")
    if run.settings.get("rollback_of"):
        raise ConfigError(f"run {run_id} is itself a rollback; {doing} the load it undid")
    return run
