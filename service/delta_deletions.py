"""What a delta cycle does with the source's deletion feed: ``[delta] deletions``.

``flag`` reports each record the source deleted and leaves its destination copy.
``delete`` deletes it, journaling its full image first-hand (fields as crmlift sent them,
lookups as source references, the id-map hash), so a rollback re-creates it by upserting
that image on its external id. ``archive`` sets the plan's ``archive_field`` to true, an
update journaled with its pre-image like any other (rollback restores it). A file is
only ever flagged: its content cannot be re-created from a field image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from journal import Journal
from journal.deltas import DeletedImage, Deltas, MappedRecord
from journal.issues import RecordIssue
from journal.operations import Operation
from journal.runs import Run
from service.delta_merge import Bases
from service.load import dependency_levels
from service.pairs import DestinationClient, Pair
from service.plan import DeltaSettings
from service.readback import held, same
from service.reports.delta import DeletionOutcome

log = structlog.get_logger(__name__)

PHASE = "delta"
CHUNK = 200
"""Records per delete or archive call (the sObject Collections cap)."""


class _NoJobs:
    """Deletions and archives are a handful of records: synchronous calls, no jobs."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        log.info("delta.job_opened", job_id=job_id, object=sobject, records=records)

    async def job_uploaded(self, job_id: str) -> None:
        log.info("delta.job_uploaded", job_id=job_id)


class Deletions:
    """Applies one cycle's deletion feed to the destination under the plan's policy."""

    def __init__(
        self,
        journal: Journal,
        run: Run,
        migration: str,
        client: DestinationClient,
        pair: Pair,
        settings: DeltaSettings,
        bases: Bases,
        archivable: frozenset[str],
    ) -> None:
        self.journal, self.run, self.migration = journal, run, migration
        self.client, self.pair, self.settings, self.bases = client, pair, settings, bases
        self.deltas = Deltas(journal.pool)
        self.archivable = archivable
        """Objects that carry ``archive_field`` (the others are flagged)."""
        self.outcomes: list[DeletionOutcome] = []

    async def apply(self) -> list[DeletionOutcome]:
        """Act on every record the feed deleted that this migration wrote and that the
        run did not stage again as live (a record restored under its id is no deletion)."""
        feed = await self.deltas.deletions(self.run.run_id)
        deleted_at = {(c, s): at for c, s, at in feed}
        live = await self.journal.staging.live_among(self.run.run_id, list(deleted_at))
        keys = [k for k in deleted_at if k not in live]
        rows = await self.deltas.mapped(self.migration, keys)
        for group in self._ordered(rows):
            for i in range(0, len(group), CHUNK):
                await self._act(group[i : i + CHUNK], deleted_at)
        return self.outcomes

    def _ordered(self, rows: Sequence[MappedRecord]) -> list[list[MappedRecord]]:
        """Rows grouped by object, children before parents (the reverse of the pair's
        dependency levels), so a delete never reaches a parent before its children."""
        order = [*self.pair.load_order, *sorted({r.collection for r in rows})]
        order = list(dict.fromkeys(order))
        levels = dependency_levels(order, self.pair.depends_on)
        level = {c: i for i, cs in enumerate(levels) for c in cs}
        groups: dict[tuple[str, str], list[MappedRecord]] = {}
        for r in rows:
            groups.setdefault((r.collection, r.object), []).append(r)
        return [groups[k] for k in sorted(groups, key=lambda k: (-level.get(k[0], 0), k))]

    async def _act(
        self, rows: Sequence[MappedRecord], deleted_at: Mapping[tuple[str, str], datetime]
    ) -> None:
        sobject = rows[0].object
        there = await self.client.existing_ids(sobject, [r.destination_id for r in rows])
        present = []
        for r in rows:
            if r.destination_id in there:
                present.append(r)
            else:
                self._outcome(r, "already gone", "not in the destination any more")
        if not present:
            return
        policy = self.settings.deletions
        if policy == "delete":
            await self._delete(present, deleted_at)
        elif policy == "archive" and sobject in self.archivable:
            await self._archive(present, deleted_at)
        else:
            why = "" if policy == "flag" else f"{sobject} has no {self.settings.archive_field}"
            await self._flag(present, deleted_at, why)

    async def _flag(
        self,
        rows: Sequence[MappedRecord],
        deleted_at: Mapping[tuple[str, str], datetime],
        why: str = "",
    ) -> None:
        issues = []
        for r in rows:
            at = deleted_at[(r.collection, r.source_id)].isoformat()
            detail = f"deleted at the source at {at}; left in the destination" + (
                f" ({why})" if why else ""
            )
            self._outcome(r, "flagged", detail)
            issues.append(RecordIssue(PHASE, r.collection, r.source_id, "warning",
                                      f"deleted_at_source:{r.object}",
                                      f"{r.object} {r.destination_id}: {detail}"))  # fmt: skip
        await self.journal.issues.record_many(self.run.run_id, issues)

    async def _delete(
        self, rows: Sequence[MappedRecord], deleted_at: Mapping[tuple[str, str], datetime]
    ) -> None:
        """Journal each record's image, delete, and journal the outcome with the image."""
        rebuilt = await self._images(rows)
        go = [r for r in rows if (r.object, r.external_id) in rebuilt]
        files = [r for r in rows if (r.object, r.external_id) not in rebuilt]
        if files:
            await self._flag(files, deleted_at, "a file or a record with no image to "
                             "re-create it from is never deleted")  # fmt: skip
        if not go:
            return
        answers = await self.client.delete(rows[0].object, [r.destination_id for r in go])
        results = {a.external_id: a for a in answers}
        for r in go:
            result = results.get(r.destination_id)
            if result is None or result.error_code is not None:
                why = (
                    "no answer"
                    if result is None
                    else f"{result.error_code}: {result.error_message}"
                )
                self._outcome(r, "failed", f"{self.client.platform} refused the delete ({why})")
                issue = RecordIssue(PHASE, r.collection, r.source_id, "failed",
                                    f"delete:{r.object}", why)  # fmt: skip
                await self.journal.issues.record(self.run.run_id, issue)
                continue
            at = deleted_at[(r.collection, r.source_id)]
            image = DeletedImage(r.collection, r.source_id, r.object, r.external_id,
                                 r.destination_id, {**rebuilt[(r.object, r.external_id)],
                                                    "deleted_at": at.isoformat()})  # fmt: skip
            message = (
                f"{r.collection}/{r.source_id} was deleted at the source at {at.isoformat()}; "
                f'{r.object} {r.destination_id} deleted ([delta] deletions = "delete"); a '
                "rollback of this run re-creates it"
            )
            await self.deltas.record_deleted(self.run.run_id, self.migration, image, message)
            self._outcome(r, "deleted")

    async def _images(self, rows: Sequence[MappedRecord]) -> dict[tuple[str, str], dict[str, Any]]:
        """What a rollback needs to re-create each record: the fields crmlift last sent
        (rebuilt over the run that wrote it), lookups as source references resolved again
        at re-creation, the id-map hash and that run. Files have none."""
        images: dict[tuple[str, str], dict[str, Any]] = {}
        for key, base in (await self.bases.of(rows)).items():
            expected = base.expected
            if expected.file is not None:
                continue
            images[key] = {
                "fields": {k: v for k, v in expected.fields.items() if k not in expected.links},
                "links": {
                    name: [ref.collection, ref.source_id, ref.object]
                    for name, ref in expected.links.items()
                },
                "payload_hash": base.mapped.payload_hash,
                "written_by": base.mapped.run_id,
            }
        return images

    async def _archive(
        self, rows: Sequence[MappedRecord], deleted_at: Mapping[tuple[str, str], datetime]
    ) -> None:
        """Set the archive field where it is not set yet, each an update with its pre-image."""
        field = str(self.settings.archive_field)
        sobject = rows[0].object
        now = await held(self.client, sobject, [r.destination_id for r in rows], [field])
        todo = [r for r in rows if not same(True, now.get(r.destination_id, {}).get(field))]
        for r in rows:
            if r not in todo:
                self._outcome(r, "already archived", f"{field} is already true")
        if not todo:
            return
        ext_field = self.client.external_id_field
        answers = await self.client.upsert(
            sobject, [{ext_field: r.external_id, field: True} for r in todo], _NoJobs()
        )
        ops = []
        for r, result in zip(todo, answers, strict=True):
            at = deleted_at[(r.collection, r.source_id)].isoformat()
            if not result.ok:
                why = f"{result.error_code}: {result.error_message}"
                self._outcome(r, "failed", f"{self.client.platform} refused the archive ({why})")
                ops.append(Operation(r.collection, r.source_id, "failed", sobject, r.external_id,
                                     r.destination_id, "archive_failed", why))  # fmt: skip
                continue
            before = {field: now.get(r.destination_id, {}).get(field)}
            ops.append(Operation(r.collection, r.source_id, "updated", sobject, r.external_id,
                                 r.destination_id, "archived_at_source",
                                 f"deleted at the source at {at}; {field} set to true",
                                 pre_image=before))  # fmt: skip
            self._outcome(r, "archived", f"{field} = true")
        await self.journal.operations.record(self.run.run_id, self.migration, ops)

    def _outcome(self, r: MappedRecord, action: str, detail: str = "") -> None:
        self.outcomes.append(
            DeletionOutcome(r.collection, r.source_id, r.object, r.destination_id, action, detail)
        )
