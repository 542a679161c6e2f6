"""The rollback command: undo one run in its destination, journaled and resumable.

Records the run created are deleted, children before parents (the reverse of the
pair's dependency levels); records it only updated get their pre-image back. A
record changed in the destination after the run wrote it is someone else's work:
it is reported as a conflict and left alone unless ``force``. Every outcome lands in
``rollback_ops`` keyed by the rolled-back run, so a rerun never acts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from adapters.dynamics.keys import SHAREPOINT_FILES
from adapters.errors import ConfigError
from journal import Journal, open_journal
from journal.rollback import FINAL, Done, Rollbacks, Written
from journal.runs import Run
from service.load import dependency_levels
from service.pairs import DestinationClient, Pair, pair_for
from service.pipeline import guarded, lock_scope, plan_fingerprint, run_dir
from service.plan import MigrationPlan
from service.reports.rollback import RollbackReport, write_rollback_report

log = structlog.get_logger(__name__)

PHASE = "rollback"
CHUNK = 200
"""Records per destination call: the sObject Collections cap (the largest common batch)."""
UNLISTED = frozenset({SHAREPOINT_FILES})
"""Objects ``modified`` never lists (files have no row): absence there says nothing."""
SYSTEM_FIELDS = frozenset({"Id", "attributes"})
"""Keys a fetched pre-image may carry that are not fields to write back."""


@dataclass(frozen=True, slots=True)
class RollbackOptions:
    """What the operator asked for."""

    dry_run: bool = False
    """Report what would be done; call no write API and journal nothing."""
    force: bool = False
    """Revert records changed after the run wrote them too (conflicts)."""
    objects: tuple[str, ...] | None = None
    """Destination objects to roll back; None: all."""


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    report: RollbackReport
    reports: list[Path]


class _NoJobs:
    """A restore is journaled as ``pending`` before it is sent, which is all a crash
    needs: the rerun compares the record with its pre-image (see ``_settle_pending``)."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        log.info("rollback.job_opened", job_id=job_id, object=sobject, records=records)

    async def job_uploaded(self, job_id: str) -> None:
        log.info("rollback.job_uploaded", job_id=job_id)


async def run_rollback(
    plan: MigrationPlan, target_run_id: str, options: RollbackOptions = RollbackOptions()
) -> RollbackOutcome:
    """Undo ``target_run_id`` in the plan's destination (or, dry, say what that would do)."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: there is nothing to roll back")
    pair = pair_for(plan.destination.platform)
    async with (
        open_journal(plan.journal) as journal,
        journal.runs.locked(lock_scope(plan)) as lock,
    ):
        target = await _target(journal, plan, target_run_id)
        run = None if options.dry_run else await _rollback_run(journal, plan, target)
        report = RollbackReport(
            target.run_id, None if run is None else run.run_id, options.dry_run, options.force
        )
        if run is not None:
            await lock.claim(run)
            structlog.contextvars.bind_contextvars(run_id=run.run_id)
        async with pair.open_client(plan.destination.config, plan.destination.quota) as client:
            undo = _Undo(journal, Rollbacks(journal.pool), client, target, run, options, report)
            if run is None:
                await undo.all(pair)
            else:
                async with guarded(journal, run, PHASE):
                    await undo.all(pair)
                await journal.runs.set_status(run.run_id, "completed")
        paths = write_rollback_report(report, run_dir(plan, target.run_id))
        log.info("rollback.done", target=target.run_id, conflicts=report.conflicts,
                 failures=report.failures, dry_run=options.dry_run)  # fmt: skip
        return RollbackOutcome(report, paths)


async def _target(journal: Journal, plan: MigrationPlan, run_id: str) -> Run:
    run = await journal.runs.get(run_id)
    if run.migration != plan.name or run.destination is None:
        raise ConfigError(f"run {run_id} is not a load of migration {plan.name!r}")
    if run.settings.get("rollback_of"):
        raise ConfigError(f"run {run_id} is itself a rollback; roll back the load it undid")
    return run


async def _rollback_run(journal: Journal, plan: MigrationPlan, target: Run) -> Run:
    """The rollback's own run: the one an interrupted attempt left, or a new one."""
    earlier = await Rollbacks(journal.pool).find_run(target.run_id)
    if earlier is not None:
        await journal.runs.set_status(earlier, "running")
        return await journal.runs.get(earlier)
    return await journal.runs.create(
        migration=plan.name,
        source=target.source,
        destination=target.destination,
        settings={"command": "rollback", "rollback_of": target.run_id},
        fingerprint=plan_fingerprint(plan),
    )


def delete_order(pair: Pair, written: Sequence[Written]) -> list[list[Written]]:
    """Created records grouped by (collection, object), children before parents: the
    reverse of the dependency levels, and within a collection the objects written last
    (relations, second-pass links) first."""
    order = [*pair.load_order, *sorted({w.collection for w in written} - set(pair.load_order))]
    level = {c: i for i, cs in enumerate(dependency_levels(order, pair.depends_on)) for c in cs}
    groups: dict[tuple[str, str], list[Written]] = {}
    for w in written:
        if w.kind == "delete":
            groups.setdefault((w.collection, w.object), []).append(w)
    return sorted(
        groups.values(),
        key=lambda g: (-level.get(g[0].collection, len(level)), -max(w.first_op for w in g)),
    )


def restore_groups(written: Sequence[Written]) -> list[list[Written]]:
    groups: dict[str, list[Written]] = {}
    for w in written:
        if w.kind == "restore":
            groups.setdefault(w.object, []).append(w)
    return [groups[name] for name in sorted(groups)]


def _chunks(items: Sequence[Written]) -> Iterator[Sequence[Written]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


class _Undo:
    """One pass over a run's writes; every destination call is preceded by the check
    for someone else's changes and followed by the journal write of its outcomes."""

    def __init__(
        self,
        journal: Journal,
        rollbacks: Rollbacks,
        client: DestinationClient,
        target: Run,
        run: Run | None,
        options: RollbackOptions,
        report: RollbackReport,
    ) -> None:
        self.journal, self.rollbacks, self.client = journal, rollbacks, client
        self.target, self.own_run, self.options, self.report = target, run, options, report
        self.done: dict[tuple[str, str], Done] = {}

    async def all(self, pair: Pair) -> None:
        written = await self.rollbacks.written(self.target.run_id, self.options.objects)
        self.done = await self.rollbacks.outcomes(self.target.run_id)
        kept: str | None = None  # the first object where a conflicting record stays
        for group in delete_order(pair, written):
            if kept is not None and not self.options.force:
                # A kept child would go with its parent (Salesforce and Dataverse cascade
                # deletes), so the objects deleted after it — its parents — are held too.
                await self._journal([self._hold(w, kept) for w in self._todo(group)])
                continue
            for chunk in _chunks(group):
                done = await self._delete(chunk)
                await self._journal(done)
                if kept is None and any(d.outcome == "conflict" for d in done):
                    kept = group[0].object
        for group in restore_groups(written):
            create_only = await self._create_only(group[0].object)
            for chunk in _chunks(group):
                await self._journal(await self._restore(chunk, create_only))

    async def _journal(self, done: list[Done]) -> None:
        if self.own_run is not None and done:
            # Shielded: an outcome the destination already carries out must reach the journal.
            record = self.rollbacks.record(self.own_run.run_id, self.target.run_id, done)
            await asyncio.shield(record)

    def _todo(self, chunk: Sequence[Written]) -> list[Written]:
        """The chunk less what an earlier attempt finished."""
        todo = []
        for w in chunk:
            earlier = self.done.get((w.object, w.destination_id))
            if earlier is not None and earlier.outcome in FINAL:
                self.report.tally(w.object).already_done += 1
            else:
                todo.append(w)
        return todo

    def _conflict(self, w: Written, modified: Mapping[str, datetime]) -> Done | None:
        """Someone changed ``w`` after the run wrote it: reported, and left unless forced."""
        at = modified.get(w.destination_id)
        if at is None or at <= w.written_at:
            return None
        reason = (
            f"modified at {at.isoformat()}, after the run wrote it at {w.written_at.isoformat()}"
        )
        self.report.tally(w.object).conflicts.append(
            {"destination_id": w.destination_id, "external_id": w.external_id or "",
             "action": w.kind, "reason": reason}
        )  # fmt: skip
        if self.options.force:
            return None
        return Done(w.object, w.destination_id, w.kind, "conflict", reason)

    def _hold(self, w: Written, kept: str) -> Done:
        """Not deleted: a record of ``kept`` stays (a conflict) and may be its child."""
        reason = (
            f"held: a changed {kept} record is kept and may depend on it (a delete would "
            "cascade to it); resolve the conflicts, then rerun, or --force"
        )
        self.report.tally(w.object).conflicts.append(
            {"destination_id": w.destination_id, "external_id": w.external_id or "",
             "action": w.kind, "reason": reason}
        )  # fmt: skip
        return Done(w.object, w.destination_id, w.kind, "conflict", reason)

    def _failed(self, w: Written, reason: str) -> Done:
        self.report.tally(w.object).failures.append(
            {"destination_id": w.destination_id, "external_id": w.external_id or "",
             "action": w.kind, "reason": reason}
        )  # fmt: skip
        return Done(w.object, w.destination_id, w.kind, "failed", reason)

    async def _delete(self, chunk: Sequence[Written]) -> list[Done]:
        todo = self._todo(chunk)
        if not todo:
            return []
        sobject = todo[0].object
        modified = await self.client.modified(sobject, [w.destination_id for w in todo])
        done: list[Done] = []
        go: list[Written] = []
        tally = self.report.tally(sobject)
        for w in todo:
            conflict = self._conflict(w, modified)
            if conflict is not None:
                done.append(conflict)
            elif w.destination_id not in modified and sobject not in UNLISTED:
                # Already gone: an attempt that died before journaling its delete sent it
                # (or someone deleted it by hand); never send a delete twice.
                tally.already_done += 1
                done.append(Done(sobject, w.destination_id, "delete", "deleted", "already gone"))
            else:
                go.append(w)
        if self.options.dry_run:
            tally.deleted += len(go)
            return done
        results = {
            r.external_id: r
            for r in await self.client.delete(sobject, [w.destination_id for w in go])
        }
        for w in go:
            result = results.get(w.destination_id)
            if result is not None and result.error_code is None:
                tally.deleted += 1
                done.append(Done(sobject, w.destination_id, "delete", "deleted"))
            else:
                why = (
                    "no answer"
                    if result is None
                    else f"{result.error_code}: {result.error_message}"
                )
                done.append(self._failed(w, f"{self.client.platform} refused the delete ({why})"))
        return done

    async def _create_only(self, sobject: str) -> frozenset[str]:
        info = await self.client.describe(sobject)
        return frozenset() if info is None else info.create_only

    async def _restore(self, chunk: Sequence[Written], create_only: frozenset[str]) -> list[Done]:
        todo = self._todo(chunk)
        if not todo:
            return []
        sobject = todo[0].object
        done: list[Done] = []
        todo, settled = await self._settle_pending(sobject, todo)
        done += settled
        modified = await self.client.modified(sobject, [w.destination_id for w in todo])
        rows: list[tuple[Written, dict[str, Any]]] = []
        for w in todo:
            if w.destination_id not in modified:
                done.append(self._failed(w, "the record no longer exists in the destination"))
            elif w.pre_image is None or w.external_id is None:
                done.append(self._failed(w, "the run journaled no pre-image for this update"))
            elif (conflict := self._conflict(w, modified)) is not None:
                done.append(conflict)
            else:
                fields = {
                    k: v for k, v in w.pre_image.items() if k not in SYSTEM_FIELDS | create_only
                }
                rows.append((w, {self.client.external_id_field: w.external_id, **fields}))
        tally = self.report.tally(sobject)
        if self.options.dry_run:
            tally.restored += len(rows)
            return done
        await self._journal(
            [Done(sobject, w.destination_id, "restore", "pending") for w, _ in rows]
        )
        results = await self.client.upsert(sobject, [row for _, row in rows], _NoJobs())
        for (w, _), result in zip(rows, results, strict=True):
            if result.ok:
                tally.restored += 1
                done.append(Done(sobject, w.destination_id, "restore", "restored"))
            else:
                why = f"{result.error_code}: {result.error_message}"
                done.append(self._failed(w, f"{self.client.platform} refused the restore ({why})"))
        return done

    async def _settle_pending(
        self, sobject: str, todo: list[Written]
    ) -> tuple[list[Written], list[Done]]:
        """Restores an interrupted attempt sent but did not journal: a record that already
        holds its pre-image was restored (by us); the others are judged as usual."""
        pending = [w for w in todo if (k := self.done.get((w.object, w.destination_id)))
                   and k.outcome == "pending" and w.pre_image]  # fmt: skip
        if not pending:
            return todo, []
        fields = sorted({f for w in pending for f in (w.pre_image or {})} - SYSTEM_FIELDS)
        now = await self.client.fetch(sobject, [w.destination_id for w in pending], fields)
        settled = {
            w.destination_id for w in pending
            if all(now.get(w.destination_id, {}).get(f) == v for f, v in (w.pre_image or {}).items()
                   if f in fields)
        }  # fmt: skip
        self.report.tally(sobject).restored += len(settled)
        done = [Done(sobject, i, "restore", "restored") for i in sorted(settled)]
        return [w for w in todo if w.destination_id not in settled], done
