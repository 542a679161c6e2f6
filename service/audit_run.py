"""The audit of one run's staging against one destination, shared by ``crmlift audit`` and
the first step of every ``migrate`` (so an unaudited run cannot skip it): every check,
the reports, and the gate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from adapters.base import ObjectInfo
from journal import Journal
from journal.runs import Run
from service.audit_destination import owner_findings, schema_findings, transformed_checks
from service.audit_findings import AuditReport, Findings, acknowledge, gate
from service.audit_queries import company_cycles, duplicate_emails, orphans
from service.audit_source import SourceChecks
from service.context import RunContext
from service.expected import Rebuilder
from service.pairs import Pair
from service.plan import DestinationSettings
from service.reports.audit import write_audit_report

log = structlog.get_logger(__name__)

PHASE = "audit"


async def audit_run(
    journal: Journal,
    run: Run,
    pair: Pair,
    destination: DestinationSettings,
    built: RunContext,
    schema: Mapping[str, ObjectInfo | None],
    *,
    migration: str,
    gaps: Sequence[str] = (),
    acknowledged: Sequence[str] = (),
) -> AuditReport:
    """Every check of the run's staging, with ``schema`` (each object the pair writes,
    described) and ``gaps`` (``service.migrate.schema_gaps`` of it); ``migration`` is the
    id-map scope the transforms' lookups resolve through."""
    started = time.perf_counter()
    findings = Findings()
    collections = sorted(await journal.staging.counts(run.run_id))
    source = SourceChecks(findings, built.definitions)
    await source.run(journal, run, collections)
    await duplicate_emails(journal, run, findings)
    await orphans(journal, run, findings)
    await company_cycles(journal, run, findings)
    rebuilder = Rebuilder(journal, migration, run, pair, built.mapping)
    await transformed_checks(findings, rebuilder, pair, schema)
    owner_findings(findings, built.owners, strict=destination.owners == "strict")
    schema_findings(findings, gaps)
    report = AuditReport(
        run_id=run.run_id,
        destination=destination.platform,
        profile=source.profile,
        findings=findings.sorted(),
        acknowledged=tuple(acknowledged),
    )
    acknowledge(report.findings, acknowledged)
    log.info(
        "audit.done",
        phase=PHASE,
        findings=len(report.findings),
        blocking=len(report.blocking),
        seconds=round(time.perf_counter() - started, 2),
    )
    for stale in report.stale_acknowledgements:
        log.warning("audit.acknowledged_but_not_found", phase=PHASE, finding=stale)
    return report


async def audit_gate(
    journal: Journal,
    run: Run,
    pair: Pair,
    destination: DestinationSettings,
    built: RunContext,
    schema: Mapping[str, ObjectInfo | None],
    *,
    migration: str,
    acknowledged: Sequence[str],
    out_dir: Path,
) -> AuditReport:
    """``migrate``'s first step after the schema gate: audit, write the reports beside the
    run's others, and stop before any write (AuditBlocked, exit 7) on a blocking finding
    the plan does not acknowledge."""
    report = await audit_run(
        journal, run, pair, destination, built, schema,
        migration=migration, acknowledged=acknowledged,
    )  # fmt: skip
    paths = write_audit_report(report, out_dir)
    gate(report, paths[1])
    return report
