"""Delta pickup's three-way merge, per record and field.

base = what crmlift last wrote (the id map names the run that wrote the record; its
payload is rebuilt from that run's staging), theirs = what the destination holds now
(the pre-images the loader reads before an update), ours = the source now (the new
staged version, transformed). A field only the source changed is written; a field the
destination changed since our write is never clobbered silently: where the source left
it alone the destination's value stands, and where both changed it the plan's
``[delta] conflicts`` decides (keep-destination, prefer-source, or stop the cycle
before any write). Every such field is journaled and reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from adapters.base import ObjectInfo
from adapters.errors import FatalError
from journal import Journal
from journal.deltas import Deltas, FieldConflict, MappedRecord, Resolution
from journal.runs import Run
from service.context import RunContext, run_context
from service.expected import Expected, Rebuilder
from service.load import PendingWrite
from service.pairs import Pair
from service.plan import DestinationSettings
from service.readback import held, same

log = structlog.get_logger(__name__)

Key = tuple[str, str]
"""(destination object, external id)."""

NAMED = 5
"""Conflicts a refusal names on its one line (all of them are in the report)."""


class DeltaConflicts(FatalError):
    """``[delta] conflicts = "stop"`` and fields were changed on both sides: the cycle is
    refused before any write. Exit 10: neither a bad plan nor a platform's refusal, but
    the destination's people and the source disagreeing, which an operator settles."""

    exit_code = 10

    def __init__(self, platform: str, conflicts: Sequence[FieldConflict], report: str) -> None:
        named = "; ".join(
            f"{c.collection}/{c.source_id} {c.object}.{c.field}: crmlift wrote {c.base!r}, "
            f"{platform} holds {c.theirs!r}, the source now says {c.ours!r}"
            for c in conflicts[:NAMED]
        )
        more = f" and {len(conflicts) - NAMED} more" if len(conflicts) > NAMED else ""
        super().__init__(
            f"delta refused before any write: {len(conflicts)} field(s) changed both in "
            f'{platform} and at the source ([delta] conflicts = "stop"): {named}{more}; '
            f"see {report}"
        )
        self.conflicts = list(conflicts)


@dataclass(frozen=True, slots=True)
class Base:
    """What crmlift last wrote into one destination record."""

    mapped: MappedRecord
    expected: Expected
    """The payload rebuilt over the run that wrote it: its fields, lookups, file."""

    @property
    def fields(self) -> Mapping[str, Any]:
        return self.expected.fields


def field_changes(
    base: Mapping[str, Any],
    theirs: Mapping[str, Any],
    ours: Mapping[str, Any],
    skip: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """(field, kind) of every field of ``ours`` the destination changed since ``base``:
    ``conflict`` when the source changed it too, to another value; ``destination-only``
    when the source left it as written. A field absent from ``base`` (newly mapped) or
    from ``theirs`` (not read) is not judged; values compare in the platform's form."""
    skipped = frozenset(skip)
    found = []
    for name, value in ours.items():
        if name in skipped or name not in base or name not in theirs:
            continue
        was, now = base[name], theirs[name]
        if same(was, now) or same(value, now):
            continue
        found.append((name, "destination-only" if same(value, was) else "conflict"))
    return found


def resolution(kind: str, policy: str) -> Resolution:
    """What a cycle does with a changed field under ``[delta] conflicts``."""
    if kind == "conflict" and policy == "prefer-source":
        return "written"
    return "kept"


class Bases:
    """Rebuilds what crmlift last wrote, one run's context at a time (cached)."""

    def __init__(
        self,
        journal: Journal,
        migration: str,
        pair: Pair,
        destination: DestinationSettings,
        users: dict[str, str],
    ) -> None:
        self.journal, self.migration, self.pair = journal, migration, pair
        self.destination, self.users = destination, users
        self._contexts: dict[str, RunContext] = {}

    async def of(self, rows: Sequence[MappedRecord]) -> dict[Key, Base]:
        """The base of every id-map row, rebuilt over the run that last wrote it."""
        by_run: dict[str, list[MappedRecord]] = defaultdict(list)
        for row in rows:
            by_run[row.run_id].append(row)
        bases: dict[Key, Base] = {}
        for run_id, group in by_run.items():
            run = await self.journal.runs.get(run_id)
            wanted = {(r.object, r.external_id): r for r in group}
            async for expected in self.rebuilt(run, group):
                hit = wanted.get((expected.object, expected.external_id))
                if hit is not None:
                    bases[(hit.object, hit.external_id)] = Base(hit, expected)
        return bases

    async def rebuilt(self, run: Run, rows: Sequence[MappedRecord]) -> AsyncIterator[Expected]:
        """The payloads of ``rows``' source records as ``run`` sent them."""
        context = self._contexts.get(run.run_id)
        if context is None:
            context = await run_context(self.journal, run, self.pair, self.destination, self.users)
            self._contexts[run.run_id] = context
        rebuilder = Rebuilder(self.journal, self.migration, run, self.pair, context.mapping)
        for collection in sorted({r.collection for r in rows}):
            ids = {r.source_id for r in rows if r.collection == collection}
            async for batch in rebuilder.collection(collection, ids):
                for item in batch:
                    if isinstance(item, Expected):
                        yield item


class DeltaMerge:
    """The loader's merge hook for one delta cycle (``service.load.MergeHook``)."""

    def __init__(self, deltas: Deltas, run: Run, policy: str, bases: Mapping[Key, Base]) -> None:
        self.deltas, self.run, self.policy, self.bases = deltas, run, policy, bases
        self.found: list[FieldConflict] = []

    async def __call__(
        self,
        info: ObjectInfo,
        writes: Sequence[PendingWrite],
        pre_images: Mapping[str, Mapping[str, Any]],
    ) -> Mapping[str, frozenset[str]]:
        keep: dict[str, frozenset[str]] = {}
        found: list[FieldConflict] = []
        for w in writes:
            base = self.bases.get((info.name, w.payload.external_id))
            theirs = pre_images.get(w.mapped.destination_id) if w.mapped else None
            if base is None or theirs is None or w.mapped is None:
                continue
            changes = field_changes(base.fields, theirs, w.payload.fields, info.create_only)
            for name, kind in changes:
                found.append(
                    FieldConflict(w.collection, w.source_id, info.name, w.payload.external_id,
                                  w.mapped.destination_id, name, kind,  # type: ignore[arg-type]
                                  resolution(kind, self.policy), base.fields[name],
                                  theirs[name], w.payload.fields[name])
                )  # fmt: skip
            kept = {n for n, k in changes if resolution(k, self.policy) == "kept"}
            # A field the destination already holds as the source has it needs no write.
            kept |= {n for n, v in w.payload.fields.items() if n in theirs and same(v, theirs[n])}
            if kept:
                keep[w.payload.external_id] = frozenset(kept)
        if found:
            # Journaled before the write is sent: the report and a rollback of this cycle
            # know which destination values it chose to keep.
            await self.deltas.record_conflicts(self.run.run_id, found)
            self.found += found
            log.warning("delta.conflicts", run_id=self.run.run_id, phase="delta",
                        object=info.name, fields=len(found))  # fmt: skip
        return keep


async def refusals(
    client: Any,
    pair: Pair,
    rebuilder: Rebuilder,
    only: Mapping[str, frozenset[str]],
    bases: Mapping[Key, Base],
    schema: Mapping[str, ObjectInfo | None],
) -> list[FieldConflict]:
    """For ``conflicts = "stop"``, before anything is written: every field changed both in
    the destination and at the source, read from the destination now (one read per object
    and chunk of records, as the loader's pre-images would be)."""
    found: list[FieldConflict] = []
    for collection in pair.load_order:
        ids = only.get(collection)
        if not ids:
            continue
        ours: list[Expected] = []
        async for batch in rebuilder.collection(collection, ids):
            ours += [
                e for e in batch
                if isinstance(e, Expected) and e.file is None
                and (e.object, e.external_id) in bases
            ]  # fmt: skip
        for sobject in sorted({e.object for e in ours}):
            info = schema.get(sobject)
            mine = [e for e in ours if e.object == sobject]
            if info is None or not mine:
                continue
            fields = sorted({f for e in mine for f in e.fields})
            ids_now = [bases[(e.object, e.external_id)].mapped.destination_id for e in mine]
            theirs = await held(client, sobject, ids_now, fields)
            for e in mine:
                base = bases[(e.object, e.external_id)]
                now = theirs.get(base.mapped.destination_id)
                if now is None:
                    continue
                for name, kind in field_changes(base.fields, now, e.fields, info.create_only):
                    if kind == "conflict":
                        found.append(
                            FieldConflict(collection, e.source_id, sobject, e.external_id,
                                          base.mapped.destination_id, name, "conflict",
                                          "refused", base.fields[name], now[name],
                                          e.fields[name])
                        )  # fmt: skip
    return found
