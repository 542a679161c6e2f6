"""Load: staged records → transform → resolve lookups → upsert, in dependency waves.

Each source collection is a wave; a wave's lookups point only at earlier waves
(or, for self-references, at a second pass after the wave). Every record ends
as an operation in the journal — created, updated, unchanged, skipped or
failed with the reason — and every written record in the id map with the hash
of what was written, so a rerun or a resumed run writes nothing that is
already there and never duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import structlog

from adapters.base import (
    Destination,
    FileUpload,
    ObjectInfo,
    WriteResult,
    canonical_json,
    digest,
)
from adapters.errors import Interrupted
from journal import Journal
from journal.deletions import DELETED_AT_SOURCE
from journal.issues import RecordIssue
from journal.load_jobs import LoadJob, LoadJobs
from journal.operations import Action, Mapped, Operation, RefKey
from journal.runs import Run
from journal.staging import LoadRow
from service.mapping.base import MappingContext, Payload, Ref, Rejection, TransformResult
from service.progress import ProgressBoard
from service.shutdown import Shutdown

log = structlog.get_logger(__name__)

PHASE = "load"

Transform = Callable[[str, dict[str, Any], MappingContext], TransformResult]


SWEEP_PAGE = 2_000
"""Id-map rows checked for existence per round (the clients chunk it to their limits)."""

MIN_BATCH_RECORDS = 500
"""Below this a batch's fixed costs (lookups, journal writes, a job) outweigh overlap."""


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How the loader batches and overlaps its writes."""

    batch_records: int = 2_500
    """Staged records transformed and written together; a Bulk job holds at most this many."""
    batches_in_flight: int = 24
    """Batches written at once across the waves running together; bounds memory."""


@dataclass(slots=True)
class PendingWrite:
    """A payload ready to write: lookups resolved, hash computed, fate decided."""

    payload: Payload
    source_id: str
    collection: str
    payload_hash: str
    mapped: Mapped | None = None


Deferred = tuple[str, str, Payload]
"""A payload whose self-references wait for its wave: (collection, source id, payload)."""


class MergeHook(Protocol):
    """Delta pickup's three-way merge, consulted for the updates of each batch once their
    pre-images (the destination's values now) are read: external id → the fields to leave
    as the destination holds them. A full run has none and writes every field."""

    async def __call__(
        self,
        info: ObjectInfo,
        writes: Sequence[PendingWrite],
        pre_images: Mapping[str, Mapping[str, Any]],
    ) -> Mapping[str, frozenset[str]]: ...


class Loader:
    """Loads one run's staging into one destination through one pair's mapping."""

    def __init__(
        self,
        *,
        destination: Destination,
        journal: Journal,
        run: Run,
        migration: str,
        transform: Transform,
        load_order: Sequence[str],
        depends_on: Mapping[str, Sequence[str]],
        context: MappingContext,
        schema: Mapping[str, ObjectInfo | None],
        settings: LoadSettings | None = None,
        progress: ProgressBoard | None = None,
        shutdown: Shutdown | None = None,
        only: Mapping[str, frozenset[str]] | None = None,
        merge: MergeHook | None = None,
        sweep: bool = True,
    ) -> None:
        self.destination = destination
        self.journal = journal
        self.run = run
        self.migration = migration
        self.transform = transform
        self.load_order = load_order
        self.levels = dependency_levels(load_order, depends_on)
        self.context = context
        self.schema = schema
        self.settings = settings or LoadSettings()
        self.progress = progress or ProgressBoard()
        self.shutdown = shutdown or Shutdown()
        self.only = only
        """Collection → the staged source ids to load (a sample run); None: every one."""
        self.merge = merge
        self.sweep = sweep
        """Check before each wave that mapped records still exist (``_sweep``); a caller
        that checked ``only``'s records itself (delta pickup) turns it off."""
        self.jobs = LoadJobs(journal.pool, run.run_id)
        self._slots = asyncio.Semaphore(self.settings.batches_in_flight)
        self.timings: dict[str, float] = defaultdict(float)
        """Seconds spent per kind of work (summed over concurrent batches)."""
        self.missing: dict[tuple[str, str], int] = defaultdict(int)
        """(collection, object) → mapped records found deleted in the destination."""

    @contextmanager
    def _timed(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[kind] += time.perf_counter() - started

    # -- the run ------------------------------------------------------------

    async def load(self, extra: Sequence[tuple[str, Payload]] = ()) -> None:
        """Check the org is the one the id map knows, recover journaled jobs, write
        ``extra`` payloads, then every wave in order."""
        await self._check_org()
        await self._recover_jobs()
        if extra:
            await self._sweep_extra(extra)
            await self._write_batch([(collection, p.external_id, [p]) for collection, p in extra])
        staged = await self.journal.staging.counts(self.run.run_id)
        if self.only is not None:
            staged = {c: len(self.only.get(c, ())) for c in staged}
        for collection in self.load_order:
            self.progress.track(f"load:{collection}", staged.get(collection, 0))
        for level in self.levels:
            size = level_batch_size(sum(staged.get(c, 0) for c in level), self.settings)
            async with asyncio.TaskGroup() as tg:
                for collection in level:
                    tg.create_task(self._wave(collection, size), name=f"wave:{collection}")
            if self.shutdown.requested:
                # Every batch that started is journaled; the rest waits for --resume.
                raise Interrupted(f"run {self.run.run_id} stopped between batches")
        for collection in staged:
            if collection not in self.load_order:
                await self._skip_collection(collection)
        await self._note_missing()

    # -- is the id map still true? ------------------------------------------

    async def _check_org(self) -> None:
        """A reset or refreshed org keeps its URL but not its identity nor a single id:
        the id map of the old one is set aside, and every record loads as new."""
        identity = await self.destination.org_identity()
        bound = await self.journal.operations.bind_org(self.migration, identity)
        if bound.previous is None or bound.previous == identity:
            return
        platform = self.destination.platform
        message = (
            f"the {platform} org at this URL is now {identity}, not {bound.previous} as "
            f"when this migration last loaded it (an org reset or sandbox refresh): its id "
            f"map ({bound.retired} records) no longer applies and was set aside; this run "
            "treats the org as new and loads every record again"
        )
        log.warning("load.org_changed", run_id=self.run.run_id, phase=PHASE, platform=platform,
                    previous=bound.previous, identity=identity, retired=bound.retired)  # fmt: skip
        await self.journal.issues.record(
            self.run.run_id, RecordIssue(PHASE, "-", identity, "warning", "org_changed", message)
        )

    async def _sweep(self, collection: str) -> None:
        """Before a wave, check in bulk that the records the id map holds for what is
        staged still exist, and forget the ones that do not: they are then written as
        new, and no lookup (a self-reference, a later wave's parent) resolves to a
        deleted id. One existence call per chunk of ids (SOQL ``Id IN``, a ``$batch``)."""
        after = ("", "")
        while True:
            page = await self.journal.operations.mapped_page(
                self.migration, self.run.run_id, collection, after, SWEEP_PAGE
            )
            if not page:
                return
            by_object: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for sobject, ext, dest in page:
                by_object[sobject].append((ext, dest))
            for sobject, pairs in by_object.items():
                await self._forget_gone(collection, sobject, pairs)
            after = page[-1][:2]

    async def _sweep_extra(self, extra: Sequence[tuple[str, Payload]]) -> None:
        """The same check for the payloads the pair adds itself (the unassigned account)."""
        for collection, p in extra:
            found = await self.journal.operations.existing(
                self.migration, p.object, [p.external_id]
            )
            await self._forget_gone(
                collection, p.object, [(e, m.destination_id) for e, m in found.items()]
            )

    async def _forget_gone(
        self, collection: str, sobject: str, pairs: list[tuple[str, str]]
    ) -> None:
        """Forget the (external id, destination id) pairs whose record no longer exists."""
        if not pairs:
            return
        with self._timed("destination"):
            there = await self.destination.existing_ids(sobject, [d for _, d in pairs])
        gone = [ext for ext, dest in pairs if dest not in there]
        if gone:
            self.missing[(collection, sobject)] += len(gone)
            await self.journal.operations.forget(self.migration, sobject, gone)

    async def _note_missing(self) -> None:
        """One warning per object: how many records the id map held that were gone."""
        platform = self.destination.platform
        notes = [
            RecordIssue(PHASE, collection, sobject, "warning", f"missing:{sobject}",
                        f"{n} {sobject} record(s) this migration wrote no longer existed in "
                        f"{platform} (deleted since); written again as new")
            for (collection, sobject), n in sorted(self.missing.items())
        ]  # fmt: skip
        for note in notes:
            log.warning("load.missing_in_destination", run_id=self.run.run_id, phase=PHASE,
                        platform=platform, collection=note.collection, object=note.source_id,
                        message=note.message)  # fmt: skip
        if notes:
            await self.journal.issues.record_many(self.run.run_id, notes)

    async def _wave(self, collection: str, batch_records: int) -> None:
        bound = log.bind(run_id=self.run.run_id, phase=PHASE, collection=collection)
        started = time.perf_counter()
        deferred: list[Deferred] = []  # payloads whose self-references wait for the wave
        slots = self._slots
        if self.sweep:
            await self._sweep(collection)

        async def write(batch: list[tuple[str, str]]) -> None:
            try:
                with self._timed("transform"):
                    transformed = []
                    for source_id, raw in batch:
                        record = orjson.loads(raw)
                        result = self.transform(collection, record, self.context)
                        transformed.append((collection, source_id, result))
                await self._write_batch(transformed, deferred)
                self.progress.advance(f"load:{collection}", len(batch))
            finally:
                slots.release()

        # A batch takes its slot before it is handed over, so memory holds at most
        # ``batches_in_flight`` batches plus the one being read, whatever the size.
        async with asyncio.TaskGroup() as tg:
            batch: list[tuple[str, str]] = []
            gone: list[LoadRow] = []  # deleted at the source since staged: journaled, not sent
            staged = self.journal.staging.for_load(self.run.run_id, collection)
            # aclosing: a stop leaves the loop early, and the cursor's connection must
            # go back to the pool now, not whenever the generator is collected.
            async with contextlib.aclosing(staged):
                async for row in staged:
                    if not self._taken(collection, row.source_id):
                        continue
                    if row.payload is None:
                        gone.append(row)
                        if len(gone) >= batch_records:
                            await self._skip_deleted(collection, gone)
                            gone = []
                        continue
                    batch.append((row.source_id, row.payload))
                    if len(batch) >= batch_records:
                        await slots.acquire()
                        if self.shutdown.requested:
                            slots.release()
                            batch = []
                            break
                        tg.create_task(write(batch), name=f"load:{collection}")
                        batch = []
            if batch and not self.shutdown.requested:
                await slots.acquire()
                tg.create_task(write(batch), name=f"load:{collection}")
            await self._skip_deleted(collection, gone)
        if deferred and not self.shutdown.requested:
            await self._second_pass(deferred)
        self.progress.finish(f"load:{collection}")
        bound.info(
            "load.wave_done",
            deferred=len(deferred),
            seconds=round(time.perf_counter() - started, 2),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        )

    async def _skip_collection(self, collection: str) -> None:
        """Staged collections the mapping does not load still end in the journal."""
        ops = []
        async for row in self.journal.staging.for_load(self.run.run_id, collection):
            if not self._taken(collection, row.source_id):
                continue
            if row.payload is None:
                ops.append(self._deleted_op(collection, row))
                continue
            result = self.transform(collection, orjson.loads(row.payload), self.context)
            if isinstance(result, Rejection):
                ops.append(_rejected(collection, row.source_id, result))
        await self.journal.operations.record(self.run.run_id, self.migration, ops)

    def _taken(self, collection: str, source_id: str) -> bool:
        """Whether this run loads the staged record (a sample loads only its selection)."""
        return self.only is None or source_id in self.only.get(collection, ())

    async def _skip_deleted(self, collection: str, rows: Sequence[LoadRow]) -> None:
        """Journal staged records the source deleted since: skipped, so every source
        record is still accounted for. Nothing is deleted at the destination: a record
        an earlier run loaded stays until delta pickup / reconciliation acts on it."""
        if not rows:
            return
        ops = [self._deleted_op(collection, row) for row in rows]
        with self._timed("journal"):
            await self.journal.operations.record(self.run.run_id, self.migration, ops)
        self.progress.advance(f"load:{collection}", len(rows))
        log.info("load.deleted_at_source", run_id=self.run.run_id, phase=PHASE,
                 platform=self.destination.platform, collection=collection,
                 records=len(rows))  # fmt: skip

    def _deleted_op(self, collection: str, row: LoadRow) -> Operation:
        deleted = row.deleted_at.isoformat() if row.deleted_at else "an unknown time"
        message = (
            f"{collection}/{row.source_id} was deleted in {self.run.source} at {deleted}, "
            f"after the staged version; not loaded into {self.destination.platform} "
            "(a copy an earlier run loaded is left for delta pickup / reconciliation)"
        )
        return Operation(collection, row.source_id, "skipped", reason_code=DELETED_AT_SOURCE,
                         message=message)  # fmt: skip

    # -- one batch ----------------------------------------------------------

    async def _write_batch(
        self,
        transformed: Iterable[tuple[str, str, TransformResult]],
        deferred: list[Deferred] | None = None,
    ) -> None:
        ops: list[Operation] = []
        notes: list[RecordIssue] = []
        by_object: dict[str, list[tuple[str, str, Payload]]] = defaultdict(list)
        for collection, source_id, result in transformed:
            if isinstance(result, Rejection):
                ops.append(_rejected(collection, source_id, result))
                continue
            for payload in result:
                if payload.notes:
                    notes.append(
                        RecordIssue(PHASE, collection, payload.external_id, "warning",
                                    f"transform:{payload.object}", "; ".join(payload.notes))
                    )  # fmt: skip
                by_object[payload.object].append((collection, source_id, payload))
                if payload.deferred_refs and deferred is not None:
                    deferred.append((collection, source_id, payload))
        with self._timed("journal"):
            await self.journal.operations.record(self.run.run_id, self.migration, ops)
            if notes:
                await self.journal.issues.record_many(self.run.run_id, notes)
        # Objects in the order the mapping emitted them: a later object's lookups
        # (an AccountContactRelation's ContactId) resolve through the id map, so
        # each object's outcomes are journaled before the next is written.
        for sobject, items in by_object.items():
            ledgers: list[_Ledger] = []
            written = await self._write_object(sobject, items, ledgers)
            with self._timed("journal"):
                await self.journal.operations.record(self.run.run_id, self.migration, written)
                for ledger in ledgers:  # only now are the jobs' outcomes durable
                    await ledger.done()

    async def _write_object(
        self,
        sobject: str,
        items: list[tuple[str, str, Payload]],
        ledgers: list[_Ledger],
    ) -> list[Operation]:
        info = self.schema.get(sobject)
        if info is None:
            return [
                Operation(collection, source_id, "skipped", sobject, p.external_id,
                          reason_code="schema_missing",
                          message=f"{sobject} does not exist in the destination yet; "
                          "queued until the admin deploys the schema plan, then rerun")
                for collection, source_id, p in items
            ]  # fmt: skip
        with self._timed("journal"):
            refs = await self.journal.operations.resolve(
                self.migration,
                (
                    ref_key(r)
                    for *_, p in items
                    for r in (*p.refs.values(), *p.deferred_refs.values())
                ),
            )
        ops: list[Operation] = []
        pending: list[PendingWrite] = []
        dangling: list[RecordIssue] = []
        for collection, source_id, payload in items:
            resolved = _resolve(payload, refs, info)
            if isinstance(resolved, str):
                ops.append(Operation(collection, source_id, "failed", sobject, payload.external_id,
                                     reason_code="parent_missing", message=resolved))  # fmt: skip
                continue
            fields, deferred, full_hash = resolved
            dangling += [
                RecordIssue(PHASE, collection, source_id, "warning", f"lookup:{sobject}",
                            f"{name} points at {ref.collection}/{ref.source_id}, which was not "
                            "migrated (yet); left empty")
                for name, ref in payload.refs.items() if fields.get(name) is None
            ]  # fmt: skip
            # A self-reference whose target already exists (an earlier batch, an earlier
            # run) travels now, so the hash — which counts it — says what was written; one
            # still missing is left out (not cleared) for the wave's second pass.
            fields.update((k, v) for k, v in deferred.items() if v is not None)
            written = replace(payload, fields=fields, refs={})
            pending.append(PendingWrite(written, source_id, collection, full_hash))
        with self._timed("journal"):
            if dangling:
                await self.journal.issues.record_many(self.run.run_id, dangling)
            existing = await self.journal.operations.existing(
                self.migration, sobject, [w.payload.external_id for w in pending]
            )
        to_write: list[PendingWrite] = []
        for w in pending:
            w.mapped = existing.get(w.payload.external_id)
            if w.mapped is not None and w.mapped.payload_hash == w.payload_hash:
                ops.append(_op(w, "unchanged", w.mapped.destination_id))
            else:
                to_write.append(w)
        if to_write:
            ops.extend(await self._send(info, to_write, ledgers))
        return ops

    async def _send(
        self, info: ObjectInfo, writes: list[PendingWrite], ledgers: list[_Ledger]
    ) -> list[Operation]:
        sobject = info.name
        pre_images = await self._pre_images(sobject, writes)
        held: list[Operation] = []
        if self.merge is not None:
            writes, held = await self._merged(info, writes, pre_images)
        await self._note_create_only_changes(info, writes, pre_images)
        files = [w for w in writes if w.payload.file is not None]
        records = [w for w in writes if w.payload.file is None]
        results: dict[str, WriteResult] = {}
        if records:
            members = [(w.payload.external_id, w.source_id, w.payload_hash) for w in records]
            before = {
                w.payload.external_id: pre_images[w.mapped.destination_id]
                for w in records
                if w.mapped is not None and w.mapped.destination_id in pre_images
            }
            ledger = _Ledger(
                self.jobs, self.destination.platform, records[0].collection, members, before
            )
            ledgers.append(ledger)
            rows = [self._row(info, w) for w in records]
            with self._timed("destination"):
                answers = await self.destination.upsert(sobject, rows, ledger)
            results.update((r.external_id, r) for r in answers)
        if files:
            with self._timed("destination"):
                results.update(await self._upload_files(info, files, ledgers))
        ops = []
        strangers: list[RecordIssue] = []
        for w in writes:
            result = results.get(w.payload.external_id)
            if result is None or not result.ok:
                code = result.error_code if result else "NO_RESULT"
                message = result.error_message if result else "the destination returned no result"
                ops.append(_op(w, "failed", None, code, message))
            elif result.created or (w.mapped is None and result.created is not False):
                # created although mapped: the record was deleted since, so made anew
                ops.append(_op(w, "created", result.destination_id))
            else:
                pre = pre_images.get(result.destination_id or "")
                ops.append(_op(w, "updated", result.destination_id, pre_image=pre))
                if w.mapped is None:
                    strangers.append(_stranger(w, sobject, result.destination_id))
        if strangers:
            await self.journal.issues.record_many(self.run.run_id, strangers)
        return held + ops

    async def _merged(
        self, info: ObjectInfo, writes: list[PendingWrite], pre_images: Mapping[str, Any]
    ) -> tuple[list[PendingWrite], list[Operation]]:
        """The writes less the fields the merge hook keeps as the destination holds them;
        an update left with nothing to send is journaled unchanged (its hash moves: the
        source's version is merged, the destination's values stand)."""
        assert self.merge is not None
        updates = [w for w in writes if w.mapped is not None and w.payload.file is None]
        keep = await self.merge(info, updates, pre_images) if updates else {}
        sent: list[PendingWrite] = []
        held: list[Operation] = []
        for w in writes:
            left_out = keep.get(w.payload.external_id)
            if not left_out or w.mapped is None:
                sent.append(w)
                continue
            fields = {k: v for k, v in w.payload.fields.items() if k not in left_out}
            if not fields.keys() - info.create_only:
                held.append(_op(w, "unchanged", w.mapped.destination_id))
                continue
            sent.append(replace(w, payload=replace(w.payload, fields=fields)))
        return sent, held

    async def _pre_images(
        self, sobject: str, writes: list[PendingWrite]
    ) -> dict[str, dict[str, Any]]:
        """What rollback will restore: current values of records we are about to update."""
        updates = [w for w in writes if w.mapped is not None]
        if not updates:
            return {}
        fields = sorted({f for w in updates for f in w.payload.fields})
        ids = [w.mapped.destination_id for w in updates if w.mapped is not None]
        with self._timed("destination"):
            return await self.destination.fetch(sobject, ids, fields)

    def _row(self, info: ObjectInfo, w: PendingWrite) -> dict[str, Any]:
        """What the destination is sent for one write: an update leaves out the fields
        the platform takes only on create (it would refuse the whole record)."""
        fields = w.payload.fields
        if w.mapped is not None and info.create_only:
            fields = {k: v for k, v in fields.items() if k not in info.create_only}
        return {self.destination.external_id_field: w.payload.external_id, **fields}

    async def _note_create_only_changes(
        self, info: ObjectInfo, writes: list[PendingWrite], pre_images: Mapping[str, Any]
    ) -> None:
        """Name every update whose source changed a field the platform will not change:
        the record keeps its old value, and the operator should know which and why."""
        notes = []
        for w in writes:
            if w.mapped is None or not info.create_only:
                continue
            before = pre_images.get(w.mapped.destination_id) or {}
            changed = sorted(
                f for f in info.create_only & w.payload.fields.keys()
                if f in before and _differs(before[f], w.payload.fields[f])
            )  # fmt: skip
            if changed:
                notes.append(
                    RecordIssue(PHASE, w.collection, w.source_id, "warning",
                                f"create_only:{info.name}",
                                f"{', '.join(changed)} changed in the source, but "
                                f"{self.destination.platform} sets "
                                f"{'it' if len(changed) == 1 else 'them'} only when "
                                f"{info.name} {w.mapped.destination_id} is created; "
                                "the record keeps the old value")
                )  # fmt: skip
        if notes:
            await self.journal.issues.record_many(self.run.run_id, notes)

    async def _upload_files(
        self, info: ObjectInfo, writes: list[PendingWrite], ledgers: list[_Ledger]
    ) -> dict[str, WriteResult]:
        """Upload file records; a file that already exists (a crash after upload) is found,
        not uploaded twice; a file whose content changed since the last run uploads as a
        new version of the one written then."""
        sobject = info.name
        new = [w.payload.external_id for w in writes if w.mapped is None]
        found = await self.destination.find(sobject, new) if new else {}
        results: dict[str, WriteResult] = {}
        metadata_only: list[PendingWrite] = []
        uploads: list[FileUpload] = []
        for w in writes:
            ext, file = w.payload.external_id, w.payload.file
            assert file is not None
            path = self.journal.blobs.path_for(file.sha256)
            replaces = None
            if ext in found:
                results[ext] = WriteResult(ext, found[ext], True)
                continue
            if w.mapped is not None:
                if w.mapped.content_sha256 in (None, file.sha256):
                    metadata_only.append(w)
                    continue
                replaces = w.mapped.destination_id
            if not path.exists():
                results[ext] = WriteResult(
                    ext, None, None, "content_missing",
                    f"{file.filename}: content was not extracted (see the extract report)",
                )  # fmt: skip
            else:
                # A new file or a new version of one: a record created, so every field.
                fields = {self.destination.external_id_field: ext, **w.payload.fields}
                uploads.append(FileUpload(fields, path, file.filename, file.mime_type,
                                          file.size_bytes, replaces))  # fmt: skip
        if uploads:
            for r in await self.destination.upload_files(sobject, uploads):
                results[r.external_id] = r
        if metadata_only:
            # Same content: a changed record updates its fields, the create-only left out.
            rows = [self._row(info, w) for w in metadata_only]
            ledger = _Ledger(self.jobs, self.destination.platform, metadata_only[0].collection, [])
            ledgers.append(ledger)
            for r in await self.destination.upsert(sobject, rows, ledger):
                results[r.external_id] = r
        return results

    # -- second pass: self-references --------------------------------------

    async def _second_pass(self, deferred: list[Deferred]) -> None:
        """Set the self-references of a wave's records once every record of it exists.

        These are updates like any other: each is journaled with its pre-image (what
        rollback restores) and moves the id map's hash; a failure is a record issue.
        """
        by_object: dict[str, list[Deferred]] = defaultdict(list)
        for item in deferred:
            by_object[item[2].object].append(item)
        for sobject, items in by_object.items():
            info = self.schema.get(sobject)
            if info is None:
                continue
            keys = [
                ref_key(r) for *_, p in items for r in (*p.refs.values(), *p.deferred_refs.values())
            ]
            refs = await self.journal.operations.resolve(self.migration, keys)
            existing = await self.journal.operations.existing(
                self.migration, sobject, [p.external_id for *_, p in items]
            )
            writes: list[tuple[PendingWrite, dict[str, Any]]] = []
            for collection, source_id, p in items:
                mapped = existing.get(p.external_id)
                resolved = _resolve(p, refs, info)
                if mapped is None or isinstance(resolved, str):
                    continue  # the record itself failed; its operation says why
                _, values, full_hash = resolved
                if full_hash == mapped.payload_hash:
                    continue
                w = PendingWrite(replace(p, fields=values, refs={}, deferred_refs={}),
                                 source_id, collection, full_hash, mapped)  # fmt: skip
                writes.append((w, values))
            if writes:
                await self._second_pass_write(sobject, writes)

    async def _second_pass_write(
        self, sobject: str, writes: list[tuple[PendingWrite, dict[str, Any]]]
    ) -> None:
        pre_images = await self._pre_images(sobject, [w for w, _ in writes])
        info = self.schema.get(sobject)
        if self.merge is not None and info is not None:
            # Delta pickup: a self-reference someone set in the destination stands too.
            keep = await self.merge(info, [w for w, _ in writes], pre_images)
            writes = [
                (
                    w,
                    {
                        k: v
                        for k, v in values.items()
                        if k not in keep.get(w.payload.external_id, ())
                    },
                )
                for w, values in writes
            ]
            writes = [(w, values) for w, values in writes if values]
            if not writes:
                return
        rows = [{self.destination.external_id_field: w.payload.external_id, **values}
                for w, values in writes]  # fmt: skip
        ledger = _Ledger(self.jobs, self.destination.platform, writes[0][0].collection, [])
        results = {r.external_id: r for r in await self.destination.upsert(sobject, rows, ledger)}
        ops, issues = [], []
        for w, _ in writes:
            assert w.mapped is not None
            r = results.get(w.payload.external_id)
            if r is not None and r.ok:
                ops.append(_op(w, "updated", w.mapped.destination_id,
                               pre_image=pre_images.get(w.mapped.destination_id)))  # fmt: skip
                continue
            message = r.error_message if r else "the destination returned no result"
            issues.append(
                RecordIssue(PHASE, w.collection, w.source_id, "warning", f"second_pass:{sobject}",
                            f"self-references not set: {message}")
            )  # fmt: skip
        await self.journal.operations.record(self.run.run_id, self.migration, ops)
        if issues:
            await self.journal.issues.record_many(self.run.run_id, issues)
        await ledger.done()

    # -- recovery -------------------------------------------------------------

    async def _recover_jobs(self) -> None:
        """Journal the results of jobs a crash left behind, instead of loading them again."""
        for job in await self.jobs.unfinished():
            external_ids = [ext for ext, _, _ in job.members]
            results = await self.destination.recover(job.job_id, job.object, external_ids)
            if results is None:
                await self.jobs.moved(job.job_id, "aborted")
                continue
            by_ext = {r.external_id: r for r in results}
            # Where the platform cannot say whether it created a record, the id map
            # can: a record it did not hold before the crash was created by the job.
            mapped = await self.journal.operations.existing(
                self.migration, job.object, external_ids
            )
            ops = []
            for ext, source_id, payload_hash in job.members:
                r = by_ext.get(ext)
                if r is None or not r.ok:
                    continue  # the waves will try it again
                created = r.created if r.created is not None else ext not in mapped
                action: Action = "created" if created else "updated"
                before = None if created else job.pre_images.get(ext)
                ops.append(Operation(job.collection, source_id, action, job.object, ext,
                                     r.destination_id, payload_hash=payload_hash,
                                     pre_image=before))  # fmt: skip
            await self.journal.operations.record(self.run.run_id, self.migration, ops)
            await self.jobs.moved(job.job_id, "done")
            log.info("load.job_recovered", job_id=job.job_id, records=len(ops))


def level_batch_size(level_records: int, settings: LoadSettings) -> int:
    """Records per batch for a level: small levels split finer so every slot works.

    Throughput is records in flight over a batch's round trip; a level of
    10,000 records in 2,500-record batches would leave half the slots idle.
    """
    spread = -(-level_records // settings.batches_in_flight)
    return max(MIN_BATCH_RECORDS, min(settings.batch_records, spread))


def dependency_levels(
    order: Sequence[str], depends_on: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """Group collections into levels whose dependencies all sit in earlier levels.

    Collections of one level load at the same time; ``order`` names what to load
    and orders each level. A cycle is a mapping bug and is refused.
    """
    placed: dict[str, int] = {}
    remaining = list(order)
    while remaining:
        ready = [
            c for c in remaining
            if all(d in placed or d not in order for d in depends_on.get(c, ()))
        ]  # fmt: skip
        if not ready:
            raise ValueError(f"collections depend on each other in a cycle: {remaining}")
        for c in ready:
            deps = [placed[d] for d in depends_on.get(c, ()) if d in placed]
            placed[c] = 1 + max(deps, default=-1)
        remaining = [c for c in remaining if c not in placed]
    levels: list[list[str]] = [[] for _ in range(max(placed.values(), default=-1) + 1)]
    for c in order:
        levels[placed[c]].append(c)
    return levels


class _Ledger:
    """Journals a Bulk job the moment it exists, with the records it carries."""

    def __init__(
        self,
        jobs: LoadJobs,
        platform: str,
        collection: str,
        members: list[tuple[str, str, str]],
        pre_images: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._jobs = jobs
        self._platform = platform
        self._collection = collection
        self._members = members
        self._pre_images = pre_images or {}
        self._open: list[str] = []

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        self._open.append(job_id)
        await self._jobs.opened(
            LoadJob(job_id, self._platform, sobject, self._collection, "open", records,
                    self._members, self._pre_images)
        )  # fmt: skip

    async def job_uploaded(self, job_id: str) -> None:
        await self._jobs.moved(job_id, "uploaded")

    async def done(self) -> None:
        """The batch's outcomes are about to be journaled: its jobs need no recovery."""
        for job_id in self._open:
            await self._jobs.moved(job_id, "done")


def ref_key(ref: Ref) -> RefKey:
    """The id-map key a lookup resolves by (the rebuild of a run's payloads uses it too)."""
    return (ref.collection, ref.source_id, ref.object)


def _resolve(
    payload: Payload, refs: Mapping[RefKey, str], info: ObjectInfo
) -> tuple[dict[str, Any], dict[str, Any], str] | str:
    """Fields with lookups filled in, the deferred lookups' values, and the hash of
    everything the record should hold; or why it cannot be written (a required
    parent is missing)."""
    fields = dict(payload.fields)
    for name, ref in payload.refs.items():
        target = refs.get(ref_key(ref))
        if target is None and name in info.required:
            return f"{name} points at {ref.collection}/{ref.source_id}, which was not migrated"
        fields[name] = target
    deferred = {name: refs.get(ref_key(ref)) for name, ref in payload.deferred_refs.items()}
    file = payload.file.sha256 if payload.file else None
    everything = {"o": payload.object, "f": fields, "d": deferred, "c": file}
    return fields, deferred, digest(canonical_json(everything))


def _op(
    w: PendingWrite,
    action: Any,
    destination_id: str | None,
    code: str | None = None,
    message: str | None = None,
    pre_image: dict[str, Any] | None = None,
) -> Operation:
    return Operation(
        collection=w.collection, source_id=w.source_id, action=action, object=w.payload.object,
        external_id=w.payload.external_id, destination_id=destination_id, reason_code=code,
        message=message, pre_image=pre_image,
        payload_hash=w.payload_hash if action in ("created", "updated", "unchanged") else None,
        content_sha256=w.payload.file.sha256 if w.payload.file else None,
    )  # fmt: skip


def _stranger(w: PendingWrite, sobject: str, destination_id: str | None) -> RecordIssue:
    """An update of a record this migration's id map did not hold: the org had it under
    our external id already (another tool, a lost journal), so no pre-image was read."""
    return RecordIssue(
        PHASE, w.collection, w.source_id, "warning", f"no_pre_image:{sobject}",
        f"{sobject} {destination_id} already carried external id {w.payload.external_id} "
        "though this migration never wrote it; updated without a pre-image (rollback "
        "cannot restore it)",
    )  # fmt: skip


def _differs(before: Any, after: Any) -> bool:
    """Whether a destination value and the one we would write differ (case-insensitive
    for ids: Salesforce answers 18-character ids where we may hold 15)."""
    if before is None or after is None:
        return before is not after
    a, b = str(before), str(after)
    return a != b and not (len(a) in (15, 18) and a[:15].lower() == b[:15].lower())


def _rejected(collection: str, source_id: str, rejection: Rejection) -> Operation:
    return Operation(collection, source_id, rejection.outcome, reason_code=rejection.code,
                     message=rejection.reason)  # fmt: skip
