"""The rollback command: undo one run in its destination, journaled and resumable.

Records the run created are deleted, children before parents (the reverse of the
pair's dependency levels); records it only updated get their pre-image back. A
record changed in the destination after the run wrote it is someone else's work:
it is reported as a conflict and left alone unless ``force``. Every outcome lands in
``rollback_ops`` keyed by the rolled-back run, so a rerun never acts twice.

Point-in-time undo (``--to-before``) rolls back every load of the migration into the
same org started at or after a run, newest first, each as its own journaled rollback.
A large object is deleted through the destination's asynchronous jobs (Salesforce Bulk
API 2.0), journaled in ``load_jobs`` under the rollback's own run before their data is
sent: a rerun reads a job the crash left behind instead of sending it again.
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
from journal.deltas import Deltas
from journal.load_jobs import LoadJob, LoadJobs
from journal.rollback import FINAL, Done, Rollbacks, Written
from journal.runs import Run, RunLock
from service.context import run_context
from service.delta_undo import Recreate
from service.expected import Expected, Rebuilder
from service.load import dependency_levels
from service.migrate import id_map_scope
from service.pairs import DestinationClient, Pair, pair_for
from service.pipeline import guarded, load_run, lock_scope, plan_fingerprint, run_dir
from service.plan import MigrationPlan
from service.readback import check, held
from service.reports.rollback import RollbackReport, write_rollback_report
from service.sample import loaded_into

log = structlog.get_logger(__name__)

PHASE = "rollback"
CHUNK = 200
"""Records per destination call: the sObject Collections cap (the largest common batch)."""
JOB_RECORDS = 2_000
"""An object with at least this many records to delete is handed to the destination
``JOB_CHUNK`` ids a call, with a job ledger, so the platform may run an asynchronous job
(Salesforce: Bulk API 2.0 once the call also reaches the plan's ``bulk_threshold``). The
break-even: a job costs about ten API calls (create, upload, close, polls, results),
⌈2,000/200⌉ Collections deletes as many. Smaller objects go ``CHUNK`` a call, never a job."""
JOB_CHUNK = 10_000
"""Ids per delete call that may become a job: one Bulk API internal batch."""
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


@dataclass(frozen=True, slots=True)
class PointInTimeOutcome:
    """``--to-before``: the runs undone (newest first) and those already fully undone."""

    first_run_id: str
    outcomes: list[RollbackOutcome]
    skipped: list[str]
    """Runs an earlier rollback already undid completely: not touched again."""


def delete_call_size(records: int) -> int:
    """Ids per destination delete call for an object with ``records`` to delete (the
    estimate counts rollback costs with it too)."""
    return JOB_CHUNK if records >= JOB_RECORDS else CHUNK


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
    pair = _pair(plan)
    async with (
        open_journal(plan.journal) as journal,
        journal.runs.locked(lock_scope(plan)) as lock,
    ):
        target = await load_run(journal, plan, target_run_id, "roll back")
        destination = loaded_into(plan, target)  # a sample's sandbox, or the plan's org
        async with pair.open_client(destination.config, destination.quota) as client:
            return await _undo_run(journal, lock, client, plan, pair, target, (), options)


async def run_rollback_to_before(
    plan: MigrationPlan, first_run_id: str, options: RollbackOptions = RollbackOptions()
) -> PointInTimeOutcome:
    """Undo every load of the plan's migration into the plan's org started at or after
    ``first_run_id``, newest first, each as its own rollback run: the org as it was just
    before ``first_run_id``. Rerun after a crash, it skips the runs already fully undone
    and continues the rollback that was under way."""
    pair = _pair(plan)
    assert plan.destination is not None
    async with (
        open_journal(plan.journal) as journal,
        journal.runs.locked(lock_scope(plan)) as lock,
    ):
        first = await load_run(journal, plan, first_run_id, "roll back")
        rollbacks = Rollbacks(journal.pool)
        org = plan.destination.config.org_url
        runs = await rollbacks.loads_since(plan.name, plan.destination.platform, org, first.run_id)
        if first.run_id not in runs:
            raise ConfigError(
                f"run {first.run_id} did not load into {org}, the org of this plan's [destination]"
            )
        outcomes: list[RollbackOutcome] = []
        skipped: list[str] = []
        async with pair.open_client(plan.destination.config, plan.destination.quota) as client:
            for i, run_id in enumerate(runs):
                if await rollbacks.left(run_id, options.objects) == 0:
                    skipped.append(run_id)
                    log.info("rollback.already_undone", target=run_id)
                    continue
                target = await journal.runs.get(run_id)
                # Runs newer than this one are undone (or being undone) too: their writes
                # of its records are ours, not someone else's.
                newer = tuple(runs[:i])
                outcomes.append(
                    await _undo_run(journal, lock, client, plan, pair, target, newer, options)
                )
        return PointInTimeOutcome(first.run_id, outcomes, skipped)


def _pair(plan: MigrationPlan) -> Pair:
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: there is nothing to roll back")
    return pair_for(plan.destination.platform)


async def _undo_run(
    journal: Journal,
    lock: RunLock,
    client: DestinationClient,
    plan: MigrationPlan,
    pair: Pair,
    target: Run,
    newer: tuple[str, ...],
    options: RollbackOptions,
) -> RollbackOutcome:
    """One target run's rollback: its own journaled run (continued if one was left)."""
    run = None if options.dry_run else await _rollback_run(journal, plan, target)
    report = RollbackReport(
        target.run_id, None if run is None else run.run_id, options.dry_run, options.force
    )
    if run is not None:
        await lock.claim(run)
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
    destination = loaded_into(plan, target)
    users = await client.users_by_email()
    built = await run_context(journal, target, pair, destination, users)
    rebuilder = Rebuilder(journal, id_map_scope(plan, destination), target, pair, built.mapping)
    undo = _Undo(
        journal, Rollbacks(journal.pool), client, target, run, options, report, newer, rebuilder
    )
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


def _chunks(items: Sequence[Written], size: int = CHUNK) -> Iterator[Sequence[Written]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _DeleteLedger:
    """Journals a delete job in ``load_jobs`` under the rollback's own run the moment it
    exists (members: destination id, external id, collection), so a rerun recovers it."""

    def __init__(self, jobs: LoadJobs, platform: str, chunk: Sequence[Written]) -> None:
        self._jobs, self._platform, self._chunk = jobs, platform, chunk
        self.opened: list[str] = []

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        self.opened.append(job_id)
        members = [(w.destination_id, w.external_id or "", w.collection) for w in self._chunk]
        job = LoadJob(job_id, self._platform, sobject, self._chunk[0].collection, "open",
                      records, members)  # fmt: skip
        await asyncio.shield(self._jobs.opened(job))
        log.info("rollback.job_opened", job_id=job_id, object=sobject, records=records)

    async def job_uploaded(self, job_id: str) -> None:
        await asyncio.shield(self._jobs.moved(job_id, "uploaded"))

    async def done(self) -> None:
        """The jobs' outcomes are journaled: no rerun needs to read them again."""
        for job_id in self.opened:
            await asyncio.shield(self._jobs.moved(job_id, "done"))


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
        newer: tuple[str, ...],
        rebuilder: Rebuilder,
    ) -> None:
        self.journal, self.rollbacks, self.client = journal, rollbacks, client
        self.target, self.own_run, self.options, self.report = target, run, options, report
        self.newer = newer
        """Load runs newer than the target, undone before it (``--to-before``)."""
        self.rebuilder = rebuilder
        """What the target run sent, rebuilt from its staging: the values it wrote."""
        self.done: dict[tuple[str, str], Done] = {}

    async def all(self, pair: Pair) -> None:
        written = await self.rollbacks.written(self.target.run_id, self.options.objects)
        if self.own_run is not None:
            await self._recover_jobs()
        self.done = await self.rollbacks.outcomes(self.target.run_id)
        kept: str | None = None  # the first object where a conflicting record stays
        for group in delete_order(pair, written):
            if kept is not None and not self.options.force:
                # A kept child would go with its parent (Salesforce and Dataverse cascade
                # deletes), so the objects deleted after it — its parents — are held too.
                await self._journal([self._hold(w, kept) for w in self._todo(group)])
                continue
            size = delete_call_size(len(group))
            for chunk in _chunks(group, size):
                done = await self._delete(chunk, jobs=size > CHUNK)
                if kept is None and any(d.outcome == "conflict" for d in done):
                    kept = group[0].object
        for group in restore_groups(written):
            create_only = await self._create_only(group[0].object)
            for chunk in _chunks(group):
                await self._journal(await self._restore(chunk, create_only))
        # What a delta deleted (the source deleted it) is created again from its image.
        again = Recreate(self.journal, self.client, self.rebuilder.migration, self.options,
                         self.report, self.done, self._journal)  # fmt: skip
        await again.all(pair, self.target.run_id)

    async def _recover_jobs(self) -> None:
        """Delete jobs an interrupted attempt journaled: a job that never got its data
        closed is aborted by ``recover`` (None: it deleted nothing, the pass below sends its
        records again); one that did runs to its end on the platform, and its results are
        journaled here, so nothing of it is sent twice."""
        assert self.own_run is not None
        jobs = LoadJobs(self.journal.pool, self.own_run.run_id)
        for job in await jobs.unfinished():
            ids = [m[0] for m in job.members]
            results = await self.client.recover(job.job_id, job.object, ids)
            if results is None:
                await jobs.moved(job.job_id, "aborted")
                log.info("rollback.job_aborted", job_id=job.job_id, object=job.object)
                continue
            by_id = {r.external_id: r for r in results}
            done = [
                Done(job.object, i, "delete", "deleted", None if r.created is False else
                     "already gone")
                for i in ids if (r := by_id.get(i)) is not None and r.ok
            ]  # fmt: skip
            await self._journal(done)
            self.report.tally(job.object).deleted += len(done)
            await jobs.moved(job.job_id, "done")
            log.info("rollback.job_recovered", job_id=job.job_id, object=job.object,
                     deleted=len(done), records=len(ids))  # fmt: skip

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

    async def _ours(self, sobject: str, ids: Sequence[str]) -> dict[str, datetime]:
        """Per record, the latest write crmlift itself made after the target's: a restore
        or delete by any rollback, and a write by a newer run being undone with it."""
        touched = await self.rollbacks.touched(sobject, ids)
        later = await self.rollbacks.written_by(self.newer, sobject, ids)
        return {i: max(t for t in (touched.get(i), later.get(i)) if t is not None)
                for i in {*touched, *later}}  # fmt: skip

    def _conflict(
        self,
        w: Written,
        modified: Mapping[str, datetime],
        ours: Mapping[str, datetime],
        changed: Mapping[str, str],
    ) -> Done | None:
        """Someone changed ``w`` after crmlift last wrote it: reported, and left unless
        forced. Two signs, either one enough: a modified time after crmlift's last write
        (the run's own, or a later one of ours, ``_ours``: undoing a newer run first
        restores records this run wrote, and that restore is not someone else's work),
        or a field holding another value than the run wrote (``_changed``: an edit in the
        same second as our write, which a timestamp to the second cannot tell apart)."""
        at = modified.get(w.destination_id)
        last = max(w.written_at, ours.get(w.destination_id, w.written_at))
        if at is not None and at > last:
            reason = f"modified at {at.isoformat()}, after the run wrote it at {last.isoformat()}"
        elif w.destination_id in changed:
            reason = changed[w.destination_id]
        else:
            return None
        self.report.tally(w.object).conflicts.append(
            {"destination_id": w.destination_id, "external_id": w.external_id or "",
             "action": w.kind, "reason": reason}
        )  # fmt: skip
        if self.options.force:
            return None
        return Done(w.object, w.destination_id, w.kind, "conflict", reason)

    async def _changed(
        self, sobject: str, todo: Sequence[Written], create_only: frozenset[str] = frozenset()
    ) -> dict[str, str]:
        """Records holding another value than the target run wrote, with the first such
        field named: the run's payloads rebuilt from its staging and the id map, compared
        with the destination's values as the platform stores them (``readback.same``).
        A file, or a record the run's staging no longer rebuilds, is judged by time alone;
        create-only fields of an update were never sent by it. Costs one read per chunk
        (the same as the modified times)."""
        by_id = {w.destination_id: w for w in todo}
        if self.options.dry_run and self.newer:
            # Not undone for real, a newer run's writes still stand in these records; the
            # real rollback restores them first, and only then may values be compared.
            for i in await self.rollbacks.written_by(self.newer, sobject, list(by_id)):
                by_id.pop(i, None)
        expected: list[Expected] = []
        for collection in sorted({w.collection for w in todo}):
            ids = {w.source_id for w in todo if w.collection == collection}
            async for batch in self.rebuilder.collection(collection, ids):
                expected += [
                    e for e in batch
                    if isinstance(e, Expected) and e.object == sobject and e.file is None
                    and e.destination_id in by_id
                ]  # fmt: skip
        if not expected:
            return {}
        fields = sorted({f for e in expected for f in e.fields})
        values = await held(self.client, sobject, [str(e.destination_id) for e in expected], fields)
        # A delta that kept the destination's value of a field (a conflict) never wrote it.
        kept = await Deltas(self.journal.pool).kept_fields(self.target.run_id, sobject)
        changed: dict[str, str] = {}
        for e in expected:
            now = values.get(str(e.destination_id))
            if now is None:
                continue
            skip = create_only if by_id[str(e.destination_id)].kind == "restore" else frozenset()
            skip |= kept.get(str(e.destination_id), frozenset())
            first = next((c for c in check(e, now, skip) if not c.equal), None)
            if first is not None:
                changed[str(e.destination_id)] = (
                    f"{first.field} holds {first.held!r}, not the {first.sent!r} the run wrote"
                )
        return changed

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

    async def _delete(self, chunk: Sequence[Written], jobs: bool = False) -> list[Done]:
        """Delete the chunk's records that are still ours; journal every outcome. With
        ``jobs`` the destination may run an asynchronous job, journaled as it opens."""
        todo = self._todo(chunk)
        if not todo:
            return []
        sobject = todo[0].object
        modified = await self.client.modified(sobject, [w.destination_id for w in todo])
        ours = await self._ours(sobject, [w.destination_id for w in todo])
        changed = await self._changed(sobject, todo)
        done: list[Done] = []
        go: list[Written] = []
        tally = self.report.tally(sobject)
        for w in todo:
            conflict = self._conflict(w, modified, ours, changed)
            if conflict is not None:
                done.append(conflict)
            elif w.destination_id not in modified and sobject not in UNLISTED:
                # Already gone: an attempt that died before journaling its delete sent it
                # (or someone deleted it by hand); never send a delete twice.
                tally.already_done += 1
                done.append(Done(sobject, w.destination_id, "delete", "deleted", "already gone"))
            else:
                go.append(w)
        if self.options.dry_run or not go:
            tally.deleted += len(go)
            await self._journal(done)
            return done
        ids = [w.destination_id for w in go]
        ledger = None
        if jobs and self.own_run is not None:
            ledger = _DeleteLedger(
                LoadJobs(self.journal.pool, self.own_run.run_id), self.client.platform, go
            )
        # A call of a small object opens no job: nothing to journal.
        answer = await (
            self.client.delete(sobject, ids)
            if ledger is None
            else self.client.delete(sobject, ids, ledger)
        )
        results = {r.external_id: r for r in answer}
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
        await self._journal(done)
        if ledger is not None:
            await ledger.done()  # after the outcomes: a crash in between recovers the job
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
        ours = await self._ours(sobject, [w.destination_id for w in todo])
        changed = await self._changed(sobject, todo, create_only)
        rows: list[tuple[Written, dict[str, Any]]] = []
        for w in todo:
            if w.destination_id not in modified:
                done.append(self._failed(w, "the record no longer exists in the destination"))
            elif w.pre_image is None or w.external_id is None:
                done.append(self._failed(w, "the run journaled no pre-image for this update"))
            elif (conflict := self._conflict(w, modified, ours, changed)) is not None:
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
