"""The reconcile command: read the destination back and say go or no-go for a run.

What the run should have written is rebuilt from its staging and the id map
(``service.expected``), collection by collection in bounded batches; the destination
is read back through the Destination protocol (``fetch``, ``existing_ids``,
``file_facts``), so every destination has it without code of its own. Read-only:
nothing is written to the destination nor to the journal, so it is cheap to rerun.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from adapters.errors import ConfigError
from journal import Journal, open_journal
from journal.approvals import Samples
from journal.operations import NotWritten, OutcomeKey
from journal.runs import Run
from service.context import run_context
from service.expected import Expected, Rebuilder, Rebuilt, Rejected
from service.migrate import id_map_scope
from service.pairs import DestinationClient, Pair, pair_for
from service.pipeline import load_run, run_dir
from service.plan import MigrationPlan
from service.readback import check, held
from service.reconcile_checks import Reservoir, add_totals, blob_md5, check_file, check_links
from service.reports.reconcile import (
    Difference,
    DifferenceKind,
    FieldDiff,
    ReconcileReport,
    Sampled,
    write_reconcile_report,
)
from service.sample import loaded_into

log = structlog.get_logger(__name__)

PHASE = "reconcile"
NO_GO_EXIT = 9
"""Exit code of ``crmlift reconcile`` when the verdict is no-go."""
BATCH = 2_000
"""Staged records rebuilt and read back together; the clients chunk the reads."""
QUEUED = "schema_missing"
"""The load's reason code for records waiting for an object the org lacks."""


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    """What the operator asked for."""

    sample_size: int = 25
    """Records per object compared field by field."""
    seed: int = 0
    """Seed of the sample: the same seed samples the same records."""


@dataclass(frozen=True, slots=True)
class ReconcileOutcome:
    report: ReconcileReport
    reports: list[Path]


@dataclass(slots=True)
class _Sample:
    """One sampled record's field comparison."""

    record: Expected
    diffs: list[FieldDiff]
    fields: int


async def run_reconcile(
    plan: MigrationPlan, run_id: str, options: ReconcileOptions = ReconcileOptions()
) -> ReconcileOutcome:
    """Compare run ``run_id`` with what its destination holds now, and write the reports."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: there is nothing to reconcile")
    async with open_journal(plan.journal) as journal:
        run = await load_run(journal, plan, run_id, "reconcile")
        destination = loaded_into(plan, run)
        pair = pair_for(destination.platform)
        # A sample run answers for the records it selected, not for the whole staging.
        selection = await Samples(journal.pool).selection(run.run_id)
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        report = ReconcileReport(run.run_id, destination.platform, options.sample_size,
                                 options.seed)  # fmt: skip
        async with pair.open_client(destination.config, destination.quota) as client:
            built = await run_context(
                journal, run, pair, destination, await client.users_by_email()
            )
            rebuilder = Rebuilder(
                journal, id_map_scope(plan, destination), run, pair, built.mapping
            )
            check = _Check(journal, run, client, rebuilder, report, options, selection)
            await check.all(pair)
        paths = write_reconcile_report(report, run_dir(plan, run.run_id))
        log.info("reconcile.done", phase=PHASE, platform=destination.platform, go=report.go,
                 reasons=report.reasons)  # fmt: skip
        return ReconcileOutcome(report, paths)


class _Check:
    """One pass over a run's staged records, collection by collection."""

    def __init__(
        self,
        journal: Journal,
        run: Run,
        client: DestinationClient,
        rebuilder: Rebuilder,
        report: ReconcileReport,
        options: ReconcileOptions,
        selection: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.journal, self.run, self.client = journal, run, client
        self.selection = selection
        self.rebuilder, self.report, self.options = rebuilder, report, options
        self.samples: dict[str, Reservoir[_Sample]] = {}
        self.outcomes: dict[OutcomeKey, NotWritten] = {}

    async def all(self, pair: Pair) -> None:
        staged = await self.journal.staging.counts(self.run.run_id)
        order = [*pair.load_order, *sorted(set(staged) - set(pair.load_order))]
        for collection in order:
            if not staged.get(collection):
                continue
            only = None if self.selection is None else set(self.selection.get(collection, {}))
            if only is not None and not only:
                continue
            self.outcomes = await self.journal.operations.not_written(self.run.run_id, collection)
            loaded = collection in pair.load_order
            async for batch in self.rebuilder.collection(collection, only, batch=BATCH):
                await self._batch(batch, loaded)
            log.info("reconcile.collection_done", phase=PHASE, platform=self.client.platform,
                     collection=collection)  # fmt: skip
        for sobject, reservoir in sorted(self.samples.items()):
            tally = self.report.sampled.setdefault(sobject, Sampled())
            for s in reservoir.items:
                tally.records += 1
                tally.fields += s.fields
                tally.differing_records += bool(s.diffs)
                tally.ids.append(str(s.record.destination_id))
                self.report.field_diffs.extend(s.diffs)

    async def _batch(self, batch: Sequence[Rebuilt], loaded: bool) -> None:
        by_object: dict[str, list[Expected]] = defaultdict(list)
        for item in batch:
            if isinstance(item, Rejected):
                self._rejected(item)
            elif not loaded:
                self._difference("skipped", item, "the mapping's load order does not load "
                                 f"{item.collection}")  # fmt: skip
            else:
                by_object[item.object].append(item)
        for sobject, records in by_object.items():
            await self._object(sobject, records)

    def _rejected(self, r: Rejected) -> None:
        """A record the transform refuses as a whole: skipped by design, or bad data."""
        row = self.report.row(r.collection, "-")
        row.source += 1
        journaled = self.outcomes.get((r.source_id, None, None))
        code = journaled.code if journaled and journaled.code else r.code
        message = journaled.message if journaled and journaled.message else r.message
        kind: DifferenceKind = "failed" if r.outcome == "failed" else "skipped"
        if kind == "failed":
            row.expected += 1
            row.failed += 1
        else:
            row.skipped += 1
        self.report.differences.append(
            Difference(kind, r.collection, "-", r.source_id, None, None, f"{code}: {message}")
        )

    def _difference(self, kind: DifferenceKind, e: Expected, reason: str) -> None:
        row = self.report.row(e.collection, e.object)
        setattr(row, kind, getattr(row, kind) + 1)
        self.report.differences.append(
            Difference(kind, e.collection, e.object, e.source_id, e.external_id,
                       e.destination_id, reason)
        )  # fmt: skip

    async def _object(self, sobject: str, records: list[Expected]) -> None:
        """Explain the records not written, then read the written ones back."""
        written: list[Expected] = []
        for e in records:
            row = self.report.row(e.collection, sobject)
            row.source += 1
            outcome = self.outcomes.get((e.source_id, e.object, e.external_id))
            if outcome is not None and outcome.action == "skipped":
                why: DifferenceKind = "queued" if outcome.code == QUEUED else "skipped"
                self._difference(why, e, f"{outcome.code}: {outcome.message}")
                continue
            row.expected += 1
            if outcome is not None:  # failed
                self._difference("failed", e, f"{outcome.code}: {outcome.message}")
                if e.destination_id is None:
                    continue
            if e.destination_id is None:
                self._difference("missing", e, "not written by the run: no id-map entry and "
                                 "no journaled outcome (an interrupted run?)")  # fmt: skip
                continue
            written.append(e)
        if written:
            await self._read_back(sobject, written)

    async def _read_back(self, sobject: str, written: list[Expected]) -> None:
        ids = [str(e.destination_id) for e in written]
        fields = sorted({name for e in written for name in e.fields})
        values = await held(self.client, sobject, ids, fields)
        absent = [i for i in ids if i not in values]
        # A record the platform cannot read field by field (a SharePoint file) may still
        # exist: the existence check, asked only for those, decides.
        there = await self.client.existing_ids(sobject, absent) if absent else set()
        files: list[Expected] = []
        for e in written:
            assert e.destination_id is not None
            row = self.report.row(e.collection, sobject)
            current = values.get(e.destination_id)
            if current is None:
                if e.destination_id in there:
                    row.found += 1
                    row.unreadable += 1
                    if e.file is not None:
                        files.append(e)
                    continue
                self._difference("missing", e, f"in the id map as {e.destination_id}, "
                                 f"but {self.client.platform} no longer has it")  # fmt: skip
                continue
            row.found += 1
            check_links(self.report, e, current)
            add_totals(self.report, e, current)
            self._offer_sample(e, current)
            if e.file is not None:
                files.append(e)
        if files:
            await self._files(sobject, files)

    def _offer_sample(self, e: Expected, current: dict[str, Any]) -> None:
        reservoir = self.samples.get(e.object)
        if reservoir is None:
            rng = random.Random(f"{self.options.seed}|{e.object}")
            reservoir = self.samples[e.object] = Reservoir(self.options.sample_size, rng)
        index = reservoir.slot()
        if index is None:
            return
        checks = check(e, current)
        diffs = [
            FieldDiff(e.object, str(e.destination_id), e.external_id, c.field, c.sent, c.held)
            for c in checks
            if not c.equal
        ]
        reservoir.put(index, _Sample(e, diffs, len(checks)))

    async def _files(self, sobject: str, files: list[Expected]) -> None:
        facts = await self.client.file_facts(sobject, [str(e.destination_id) for e in files])
        for e in files:
            assert e.file is not None
            found = facts.get(str(e.destination_id))
            md5 = None
            if found is not None and found.md5 is not None:
                # Read off the loop: a blob may be hundreds of megabytes.
                md5 = await asyncio.to_thread(blob_md5, self.journal.blobs.path_for(e.file.sha256))
            check_file(self.report, e, found, md5)
