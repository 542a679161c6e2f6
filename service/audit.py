"""``crmlift audit``: before any record moves, what the source holds and what the
destination will refuse or lack for it.

It extracts the source into a new journaled run (as ``crmlift extract`` does) or reuses
a run's staging (``--run``), reads the destination's metadata and users, and writes
``audit.json``, ``audit.md`` and ``audit.html`` into that run's report dir. Nothing is
written to the destination. ``migrate`` runs the same checks (``service.audit_run``)
as its first step, and stops on what blocks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog

from adapters.errors import ConfigError
from journal import Journal, open_journal
from journal.runs import Run
from service.audit_findings import AuditReport
from service.audit_run import audit_run
from service.context import run_context
from service.migrate import check_destination, id_map_scope, schema_gaps
from service.pairs import pair_for
from service.pipeline import extract_into, guarded, run_dir, running
from service.plan import MigrationPlan
from service.progress import ProgressBoard
from service.reports.audit import write_audit_report

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """A finished audit and where its reports are."""

    run: Run
    report: AuditReport
    reports: list[Path]


async def run_audit(
    plan: MigrationPlan, *, run_id: str | None = None, progress: ProgressBoard | None = None
) -> AuditOutcome:
    """Audit the plan's source against its destination: a new extraction, or the staging
    of ``run_id`` (a run of this plan's migration)."""
    destination = plan.destination
    if destination is None:
        raise ConfigError(
            "the plan has no [destination] table; an audit checks the data against one"
        )
    pair = pair_for(destination.platform)
    async with open_journal(plan.journal) as journal:
        run = await _staged_run(journal, plan, run_id, progress)
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        async with pair.open_client(destination.config, destination.quota) as client:
            await check_destination(client, destination)
            built = await run_context(
                journal, run, pair, destination, await client.users_by_email()
            )
            objects = pair.objects(destination.mapping)
            described = await asyncio.gather(*(client.describe(o) for o in objects))
        schema = dict(zip(objects, described, strict=True))
        wanted = pair.schema_plan(built.definitions, destination.mapping)
        report = await audit_run(
            journal, run, pair, destination, built, schema,
            migration=id_map_scope(plan, destination), gaps=schema_gaps(schema, wanted),
            acknowledged=plan.audit_acknowledge,
        )  # fmt: skip
    out_dir = run_dir(plan, run.run_id)
    (out_dir / "schema-plan.json").write_bytes(wanted.document)
    return AuditOutcome(run, report, write_audit_report(report, out_dir))


async def _staged_run(
    journal: Journal, plan: MigrationPlan, run_id: str | None, progress: ProgressBoard | None
) -> Run:
    """The run whose staging is audited: ``run_id``'s, or a new extraction's."""
    if run_id is not None:
        run = await journal.runs.get(run_id)
        if run.migration != plan.name:
            raise ConfigError(
                f"run {run_id} belongs to migration {run.migration!r}, not {plan.name!r}"
            )
        if not await journal.staging.counts(run_id):
            raise ConfigError(f"run {run_id} has nothing staged; audit without --run to extract")
        return run
    async with running(journal, plan, None, "extract") as run:
        async with guarded(journal, run, "audit"):
            await extract_into(journal, plan, run, progress)
        await journal.runs.set_status(run.run_id, "extracted")
    log.info("audit.extracted", run_id=run.run_id)
    return run
