"""What crmlift sends for a run's staged records, rebuilt from the journal.

Transforms are pure and lookups resolve through the id map, so the values a run wrote
can be rebuilt at any time from its staging and the id map: reconcile compares them
with what the destination holds, the sample run diffs them field by field, rollback
tells its own values from someone else's edit. Nothing here calls the destination.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

import orjson

from journal import Journal
from journal.runs import Run
from service.load import ref_key
from service.mapping.base import FileRef, MappingContext, Ref, Rejection
from service.pairs import Pair


@dataclass(frozen=True, slots=True)
class Expected:
    """One destination record as crmlift sends it for one staged source record."""

    collection: str
    source_id: str
    object: str
    external_id: str
    destination_id: str | None
    """The id map's (None: never written into this org)."""
    fields: dict[str, Any]
    """What crmlift sends: the transform's fields, lookups (second-pass ones too)
    resolved through the id map, None where the target is not in it."""
    links: dict[str, Ref]
    """Lookup field → the source record it must point at."""
    source: dict[str, Any]
    """The staged source record."""
    notes: tuple[str, ...]
    """The transform's notes (a fallback applied, a value dropped)."""
    file: FileRef | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A staged record the transform does not turn into a destination record, and why."""

    collection: str
    source_id: str
    outcome: str
    """``skipped`` (by design) or ``failed`` (bad data)."""
    code: str
    message: str


Rebuilt = Expected | Rejected


class Rebuilder:
    """Rebuilds a run's payloads, collection by collection, in bounded batches."""

    def __init__(
        self, journal: Journal, migration: str, run: Run, pair: Pair, context: MappingContext
    ) -> None:
        self.journal = journal
        self.migration = migration
        """The id-map scope (``service.migrate.id_map_scope``)."""
        self.run = run
        self.pair = pair
        self.context = context

    async def collection(
        self, collection: str, source_ids: Collection[str] | None = None, batch: int = 2000
    ) -> AsyncIterator[list[Rebuilt]]:
        """The run's staged records of ``collection`` (all, or those of ``source_ids``),
        rebuilt; records the source deleted since they were staged are left out, as the
        load leaves them out."""
        if source_ids is not None:
            wanted = sorted(source_ids)
            for i in range(0, len(wanted), batch):
                rows = await self.journal.staging.live(
                    self.run.run_id, collection, wanted[i : i + batch]
                )
                if rows:
                    yield await self._rebuild(collection, rows)
            return
        rows = []
        staged = self.journal.staging.for_load(self.run.run_id, collection)
        async with contextlib.aclosing(staged):
            async for row in staged:
                if row.payload is None or (
                    source_ids is not None and row.source_id not in source_ids
                ):
                    continue
                rows.append((row.source_id, row.payload))
                if len(rows) >= batch:
                    yield await self._rebuild(collection, rows)
                    rows = []
        if rows:
            yield await self._rebuild(collection, rows)

    async def _rebuild(self, collection: str, rows: list[tuple[str, str]]) -> list[Rebuilt]:
        built: list[Rebuilt] = []
        payloads = []
        for source_id, raw in rows:
            record = orjson.loads(raw)
            result = self.pair.transform(collection, record, self.context)
            if isinstance(result, Rejection):
                built.append(
                    Rejected(collection, source_id, result.outcome, result.code, result.reason)
                )
                continue
            payloads += [(source_id, record, p) for p in result]
        refs = await self.journal.operations.resolve(
            self.migration,
            (
                ref_key(r)
                for *_, p in payloads
                for r in (*p.refs.values(), *p.deferred_refs.values())
            ),
        )
        mapped: dict[tuple[str, str], str] = {}
        for sobject in {p.object for *_, p in payloads}:
            ext = [p.external_id for *_, p in payloads if p.object == sobject]
            found = await self.journal.operations.existing(self.migration, sobject, ext)
            mapped.update(((sobject, e), m.destination_id) for e, m in found.items())
        for source_id, record, p in payloads:
            links = {**p.refs, **p.deferred_refs}
            fields = {**p.fields, **{name: refs.get(ref_key(ref)) for name, ref in links.items()}}
            built.append(
                Expected(
                    collection=collection,
                    source_id=source_id,
                    object=p.object,
                    external_id=p.external_id,
                    destination_id=mapped.get((p.object, p.external_id)),
                    fields=fields,
                    links=dict(links),
                    source=record,
                    notes=p.notes,
                    file=p.file,
                )
            )
        return built
