"""``crmlift delta``: pick up what changed at the source since the last load, never
clobbering what people changed in the destination since.

A cycle is its own journaled run (settings: ``command = "delta"``, its base run, the
window it reads), so it resumes like a migration and ``rollback --to-before`` undoes it.
It reads each collection's records updated from the watermark of the newest completed
load of this migration into this org (less an overlap, for clock skew and tied
timestamps) to its own snapshot, plus the deletion feed since then; the collections the
mapping context is built from (users, custom field definitions, the pair's ``needs``)
are read whole. The same Loader writes creates and updates, with the three-way merge
(``service.delta_merge``) as its merge hook; deletions follow ``[delta] deletions``
(``service.delta_deletions``). ``--watch`` repeats cycles until a time or a signal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from adapters.base import ObjectInfo
from adapters.errors import ConfigError, Interrupted
from journal import Journal, open_journal
from journal.deltas import Deltas
from journal.operations import Operation
from journal.runs import Run
from ratelimit.governor import Governor
from service.context import run_context
from service.delta_deletions import Deletions
from service.delta_merge import Bases, DeltaConflicts, DeltaMerge, refusals
from service.expected import Rebuilder
from service.extract import ExtractSummary
from service.load import Loader, LoadSettings
from service.migrate import check_destination, gate_schema, id_map_scope
from service.pairs import DestinationClient, Pair, SchemaPlan, pair_for, with_archive_field
from service.pipeline import (
    extract_into,
    guarded,
    lock_scope,
    plan_fingerprint,
    run_dir,
    start_or_resume,
)
from service.plan import DestinationSettings, MigrationPlan
from service.progress import ProgressBoard
from service.reports.delta import DeltaReport, GoneRecord, write_delta_report
from service.reports.migrate import build_rows
from service.shutdown import Shutdown

log = structlog.get_logger(__name__)

PHASE = "delta"
DEFAULT_OVERLAP = timedelta(minutes=5)
CONTEXT_COLLECTIONS = ("users", "custom_field_definitions")
"""Read whole every cycle: owners and custom fields are resolved from all of them."""


@dataclass(frozen=True, slots=True)
class DeltaOutcome:
    """One finished cycle and where its reports are."""

    run: Run
    report: DeltaReport
    extract: ExtractSummary
    reports: list[Path]
    source_governor: Governor
    destination_governors: list[Governor]
    seconds: float


@dataclass(slots=True)
class WatchOutcome:
    """``--watch``: the cycles run, and how the watch ended."""

    cycles: list[DeltaOutcome] = field(default_factory=list)
    stopped: bool = False
    """A signal ended the watch between cycles (not at ``--until``)."""


def context_collections(pair: Pair) -> tuple[str, ...]:
    return (*CONTEXT_COLLECTIONS, *pair.needs)


async def run_delta(
    plan: MigrationPlan,
    *,
    overlap: timedelta = DEFAULT_OVERLAP,
    resume: str | None = None,
    progress: ProgressBoard | None = None,
    shutdown: Shutdown | None = None,
) -> DeltaOutcome:
    """One delta cycle: a new run from the newest watermark, or ``resume`` continued."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table; a delta loads into one")
    destination = plan.destination
    pair = pair_for(destination.platform)
    started = time.perf_counter()
    async with (
        open_journal(plan.journal) as journal,
        journal.runs.locked(lock_scope(plan)) as lock,
    ):
        run = await _delta_run(journal, plan, destination, overlap, resume)
        await lock.claim(run)
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        cycle = _Cycle(journal, plan, destination, pair, run, progress or ProgressBoard(),
                       shutdown or Shutdown())  # fmt: skip
        async with (
            guarded(journal, run, PHASE),
            pair.open_client(destination.config, destination.quota) as client,
        ):
            report, extracted, governor = await cycle.execute(client)
        await journal.runs.set_status(run.run_id, "completed")
        paths = write_delta_report(report, run_dir(plan, run.run_id))
        log.info("delta.done", run_id=run.run_id, phase=PHASE, changed=report.changed,
                 written=report.written, conflicts=len(report.true_conflicts),
                 deletions=len(report.deletions))  # fmt: skip
        return DeltaOutcome(run, report, extracted, paths, governor, client.governors,
                            time.perf_counter() - started)  # fmt: skip


async def run_watch(
    plan: MigrationPlan,
    *,
    every: timedelta,
    until: datetime,
    overlap: timedelta = DEFAULT_OVERLAP,
    progress: ProgressBoard | None = None,
    shutdown: Shutdown | None = None,
) -> WatchOutcome:
    """A cycle now and then one every ``every`` until ``until``. A signal while a cycle
    runs cuts it short as any run (Interrupted, exit 75, resumable); one while waiting
    for the next cycle ends the watch cleanly."""
    stop = shutdown or Shutdown()
    outcome = WatchOutcome()
    while True:
        began = datetime.now(UTC)
        if began >= until:
            return outcome
        outcome.cycles.append(
            await run_delta(plan, overlap=overlap, progress=progress, shutdown=stop)
        )
        if stop.requested:
            raise Interrupted("stopped after a delta cycle")
        wait = min(began + every, until) - datetime.now(UTC)
        if began + every >= until:
            return outcome
        try:
            await asyncio.sleep(max(0.0, wait.total_seconds()))
        except asyncio.CancelledError:
            # The operator's signal between cycles (the wait drains nothing, so the
            # shutdown cancels it): every cycle is complete; a clean end.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            log.info("delta.watch_stopped", cycles=len(outcome.cycles))
            outcome.stopped = True
            return outcome


async def _delta_run(
    journal: Journal,
    plan: MigrationPlan,
    destination: DestinationSettings,
    overlap: timedelta,
    resume: str | None,
) -> Run:
    """The cycle's run: the named one continued, or a new one from the watermark."""
    if resume is not None:
        run = await start_or_resume(journal, plan, resume, destination=destination.platform)
        if run.settings.get("command") != "delta":
            raise ConfigError(f"run {resume} is not a delta cycle; resume it with its command")
        return run
    org = destination.config.org_url
    mark = await Deltas(journal.pool).watermark(plan.name, destination.platform, org)
    if mark is None:
        raise ConfigError(
            f"no completed load of migration {plan.name!r} into {org} to pick up from; "
            "run `crmlift migrate` first"
        )
    since = mark.at - overlap
    return await journal.runs.create(
        migration=plan.name,
        source="backdocket",
        destination=destination.platform,
        settings={
            **plan.public_settings(),
            "command": "delta",
            "delta": {
                "base_run": mark.run_id,
                "watermark": mark.at.isoformat(),
                "overlap_seconds": overlap.total_seconds(),
                "since": since.isoformat(),
            },
        },
        fingerprint=plan_fingerprint(plan),
    )


class _Cycle:
    """The work of one delta run once it is held: extract, gate, merge, load, deletions."""

    def __init__(
        self,
        journal: Journal,
        plan: MigrationPlan,
        destination: DestinationSettings,
        pair: Pair,
        run: Run,
        progress: ProgressBoard,
        shutdown: Shutdown,
    ) -> None:
        self.journal, self.plan, self.destination, self.pair = journal, plan, destination, pair
        self.run, self.progress, self.shutdown = run, progress, shutdown
        self.migration = id_map_scope(plan, destination)
        self.deltas = Deltas(journal.pool)
        settings: Mapping[str, Any] = run.settings["delta"]
        self.since = datetime.fromisoformat(settings["since"])
        self.base_run = str(settings["base_run"])
        self.watermark = str(settings["watermark"])

    async def execute(
        self, client: DestinationClient
    ) -> tuple[DeltaReport, ExtractSummary, Governor]:
        await check_destination(client, self.destination)
        whole = set(context_collections(self.pair))
        floors = {c: self.since for c in self.plan.extract.collections if c not in whole}
        extracted, governor = await extract_into(
            self.journal, self.plan, self.run, self.progress, since=floors
        )
        users = await client.users_by_email()
        built = await run_context(self.journal, self.run, self.pair, self.destination, users)
        schema = await self._gate(client, built.definitions)
        only = await self.deltas.changed(self.run.run_id, self.since)
        report = self._report()
        report.changed = sum(len(v) for c, v in only.items() if c in self.pair.load_order)
        only = await self._without_gone(client, only, report)
        bases = Bases(self.journal, self.migration, self.pair, self.destination, users)
        mapped = await self.deltas.mapped(
            self.migration, [(c, s) for c, ids in only.items() for s in ids]
        )
        known = await bases.of(mapped)
        settings = self.plan.delta
        if settings.conflicts == "stop":
            rebuilder = Rebuilder(self.journal, self.migration, self.run, self.pair, built.mapping)
            refused = await refusals(client, self.pair, rebuilder, only, known, schema)
            if refused:
                await self.deltas.record_conflicts(self.run.run_id, refused)
                report.conflicts = refused
                paths = write_delta_report(report, run_dir(self.plan, self.run.run_id))
                raise DeltaConflicts(client.platform, refused, str(paths[1]))
        merge = DeltaMerge(self.deltas, self.run, settings.conflicts, known)
        loader = Loader(
            destination=client, journal=self.journal, run=self.run, migration=self.migration,
            transform=self.pair.transform, load_order=self.pair.load_order,
            depends_on=self.pair.depends_on, context=built.mapping, schema=schema,
            settings=LoadSettings(batch_records=self.destination.batch_records,
                                  batches_in_flight=self.destination.batches_in_flight),
            progress=self.progress, shutdown=self.shutdown, only=only, merge=merge, sweep=False,
        )  # fmt: skip
        self.shutdown.draining(True)
        try:
            await loader.load()
        finally:
            self.shutdown.draining(False)
        archivable = frozenset(
            name for name, info in schema.items()
            if info is not None and settings.archive_field in info.fields
        )  # fmt: skip
        deletions = Deletions(self.journal, self.run, self.migration, client, self.pair,
                              settings, bases, archivable)  # fmt: skip
        report.deletions = await deletions.apply()
        report.conflicts = await self.deltas.conflicts(self.run.run_id)
        staged = await self.journal.staging.counts(self.run.run_id)
        report.rows = build_rows(
            staged, await self.journal.operations.summary(self.run.run_id), self.pair.load_order
        )
        return report, extracted, governor

    def _report(self) -> DeltaReport:
        settings = self.plan.delta
        policy: dict[str, Any] = {"conflicts": settings.conflicts, "deletions": settings.deletions,
                                  "recreate_deleted": settings.recreate_deleted}  # fmt: skip
        if settings.archive_field:
            policy["archive_field"] = settings.archive_field
        return DeltaReport(
            run_id=self.run.run_id, destination=self.destination.platform,
            base_run_id=self.base_run, watermark=self.watermark, since=self.since.isoformat(),
            until=self.run.snapshot_at.isoformat(), policy=policy,
        )  # fmt: skip

    async def _gate(
        self, client: DestinationClient, definitions: list[dict[str, Any]]
    ) -> dict[str, ObjectInfo | None]:
        """The migration's schema gate, with the archive field where the plan archives."""
        wanted: SchemaPlan = self.pair.schema_plan(definitions, self.destination.mapping)
        settings = self.plan.delta
        if settings.deletions == "archive" and settings.archive_field:
            wanted = with_archive_field(wanted, settings.archive_field, self.destination.platform)
        out = run_dir(self.plan, self.run.run_id)
        out.mkdir(parents=True, exist_ok=True)
        (out / "schema-plan.json").write_bytes(wanted.document)
        objects = self.pair.objects(self.destination.mapping)
        return await gate_schema(client, objects, wanted, out, "run the delta again")

    async def _without_gone(
        self,
        client: DestinationClient,
        only: dict[str, frozenset[str]],
        report: DeltaReport,
    ) -> dict[str, frozenset[str]]:
        """Changed records whose destination copy was deleted since crmlift wrote it are
        left out (journaled skipped, reported) unless ``[delta] recreate_deleted``, which
        forgets their id-map rows so the loader creates them again."""
        keys = [(c, s) for c, ids in only.items() for s in ids]
        rows = await self.deltas.mapped(self.migration, keys)
        gone = []
        for sobject in sorted({r.object for r in rows}):
            mine = [r for r in rows if r.object == sobject]
            there = await client.existing_ids(sobject, [r.destination_id for r in mine])
            gone += [r for r in mine if r.destination_id not in there]
        if not gone:
            return only
        recreate = self.plan.delta.recreate_deleted
        report.gone = [GoneRecord(r.collection, r.source_id, r.object, r.destination_id, recreate)
                       for r in gone]  # fmt: skip
        if recreate:
            for sobject in sorted({r.object for r in gone}):
                await self.journal.operations.forget(
                    self.migration, sobject, [r.external_id for r in gone if r.object == sobject]
                )
            return only
        skipped = {(r.collection, r.source_id) for r in gone}
        await self.journal.operations.record(self.run.run_id, self.migration, [
            Operation(r.collection, r.source_id, "skipped", r.object, r.external_id,
                      r.destination_id, "deleted_in_destination",
                      f"{r.object} {r.destination_id} was deleted in {client.platform} since "
                      "crmlift wrote it; not re-created ([delta] recreate_deleted = false)")
            for r in gone
        ])  # fmt: skip
        log.warning("delta.deleted_in_destination", run_id=self.run.run_id, phase=PHASE,
                    platform=client.platform, records=len(skipped))  # fmt: skip
        return {c: frozenset(s for s in ids if (c, s) not in skipped) for c, ids in only.items()}
