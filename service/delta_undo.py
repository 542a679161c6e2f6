"""Rollback of a delta's deletions: each record the delta deleted is created again by
upserting its journaled image on its external id (a new destination id, put back in the
id map), parents before children, after the run's own deletes and restores.

A record the org holds again under that external id (someone re-created it, a later
migrate loaded it) is someone else's now: a conflict, left alone unless ``--force``.
Each re-creation is journaled ``pending`` before it is sent, so a rerun after a crash
that finds the record by its external id knows it was ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from journal import Journal
from journal.deltas import DeletedImage, Deltas
from journal.rollback import FINAL, Done
from service.load import dependency_levels
from service.pairs import DestinationClient, Pair
from service.reports.rollback import RollbackReport

log = structlog.get_logger(__name__)

CHUNK = 200
"""Records per upsert call (the sObject Collections cap)."""


class Options(Protocol):
    @property
    def dry_run(self) -> bool: ...

    @property
    def force(self) -> bool: ...

    @property
    def objects(self) -> tuple[str, ...] | None: ...


class _NoJobs:
    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        log.info("rollback.job_opened", job_id=job_id, object=sobject, records=records)

    async def job_uploaded(self, job_id: str) -> None:
        log.info("rollback.job_uploaded", job_id=job_id)


class Recreate:
    """Re-creates what one target run deleted (``operations`` action ``deleted``)."""

    def __init__(
        self,
        journal: Journal,
        client: DestinationClient,
        migration: str,
        options: Options,
        report: RollbackReport,
        done: Mapping[tuple[str, str], Done],
        record: Callable[[list[Done]], Awaitable[None]],
    ) -> None:
        self.journal, self.client, self.migration = journal, client, migration
        self.options, self.report, self.done, self.record = options, report, done, record
        self.deltas = Deltas(journal.pool)

    async def all(self, pair: Pair, target_run_id: str) -> None:
        images = await self.deltas.deleted(target_run_id, self.options.objects)
        for group in _parents_first(pair, images):
            for i in range(0, len(group), CHUNK):
                await self.record(await self._chunk(group[i : i + CHUNK]))

    async def _chunk(self, chunk: Sequence[DeletedImage]) -> list[Done]:
        tally = self.report.tally(chunk[0].object)
        todo = []
        for image in chunk:
            earlier = self.done.get((image.object, image.destination_id))
            if earlier is not None and earlier.outcome in FINAL:
                tally.already_done += 1
            else:
                todo.append(image)
        if not todo:
            return []
        sobject = todo[0].object
        found = await self.client.find(sobject, [i.external_id for i in todo])
        links = [tuple(v) for i in todo for v in i.image.get("links", {}).values()]
        refs = await self.journal.operations.resolve(
            self.migration, [(str(c), str(s), o) for c, s, o in links]
        )
        done: list[Done] = []
        rows: list[tuple[DeletedImage, dict[str, Any]]] = []
        for image in todo:
            again = found.get(image.external_id)
            earlier = self.done.get((image.object, image.destination_id))
            if again is not None and earlier is not None and earlier.outcome == "pending":
                # Our own re-creation, sent before a crash and never journaled.
                await self.deltas.remap(self.migration, image, again)
                tally.restored += 1
                done.append(Done(sobject, image.destination_id, "recreate", "recreated"))
                continue
            if again is not None and not self.options.force:
                reason = f"{sobject} {again} carries external id {image.external_id} again"
                tally.conflicts.append({"destination_id": image.destination_id,
                                        "external_id": image.external_id,
                                        "action": "recreate", "reason": reason})  # fmt: skip
                done.append(Done(sobject, image.destination_id, "recreate", "conflict", reason))
                continue
            fields = dict(image.image.get("fields", {}))
            for name, (c, s, o) in image.image.get("links", {}).items():
                fields[name] = refs.get((c, s, o))
            rows.append((image, {self.client.external_id_field: image.external_id, **fields}))
        if self.options.dry_run:
            tally.restored += len(rows)
            return done
        await self.record(
            [Done(sobject, image.destination_id, "recreate", "pending") for image, _ in rows]
        )
        results = await self.client.upsert(sobject, [row for _, row in rows], _NoJobs())
        for (image, _), result in zip(rows, results, strict=True):
            if result.ok and result.destination_id is not None:
                await self.deltas.remap(self.migration, image, result.destination_id)
                tally.restored += 1
                done.append(Done(sobject, image.destination_id, "recreate", "recreated"))
                continue
            reason = (
                f"{self.client.platform} refused the re-creation "
                f"({result.error_code}: {result.error_message})"
            )
            tally.failures.append({"destination_id": image.destination_id,
                                   "external_id": image.external_id, "action": "recreate",
                                   "reason": reason})  # fmt: skip
            done.append(Done(sobject, image.destination_id, "recreate", "failed", reason))
        return done


def _parents_first(pair: Pair, images: Sequence[DeletedImage]) -> list[list[DeletedImage]]:
    """Images grouped by (collection, object) in the pair's dependency order, so a
    child's lookups find its re-created parent in the id map."""
    order = list(dict.fromkeys([*pair.load_order, *sorted({i.collection for i in images})]))
    level = {c: n for n, cs in enumerate(dependency_levels(order, pair.depends_on)) for c in cs}
    groups: dict[tuple[str, str], list[DeletedImage]] = {}
    for image in images:
        groups.setdefault((image.collection, image.object), []).append(image)
    return [groups[k] for k in sorted(groups, key=lambda k: (level.get(k[0], 0), k))]
