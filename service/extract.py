"""Extraction: every collection split into windows read at once, staged page by page.

A collection is counted, cut into ``updated_at`` windows of about
``window_records`` records, and its windows are queued for a fixed pool of
readers, so the governor — not the number of collections — decides how many
calls are in flight. Each page is staged together with its window's cursor;
a killed run resumes at the next unread page of every window.

After the main windows, a catch-up pass reads everything updated since the
run's snapshot (one window per collection) and the deletion feed; then document
content. A firm keeps working while it is read, so passes follow, each reading
what changed since the previous one began, until a pass finds nothing new (the
staged state is then consistent with the source as of that pass's start) or
``catchup_passes`` passes were made. A pass is a set of catch-up windows starting
at its ``since``: it is checkpointed like any window, and a resumed run always
reads again from the newest pass's ``since``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog

from adapters.backdocket.client import parse_timestamp
from adapters.base import (
    CursorRejected,
    NotFound,
    Record,
    Source,
    Window,
    canonical_json,
    digest,
)
from adapters.errors import PlatformRefused
from journal import Journal
from journal.blobs import ContentMismatch
from journal.checkpoints import WindowCheckpoint
from journal.issues import RecordIssue
from journal.runs import Run
from journal.staging import NUL, StagedRow, escape_nuls
from service.plan import ExtractSettings
from service.progress import ProgressBoard

log = structlog.get_logger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PHASE = "extract"
FILES_TRACK = "files"
MAX_SPLIT_DEPTH = 6
MAX_ID_LENGTH = 255
"""Longer source ids are refused as records: no CRM key holds one, and a staging index
entry must fit a PostgreSQL page."""
SHOWN = 120
"""Characters of a bad value an issue quotes."""
CLOCK_MARGIN = timedelta(seconds=5)
"""A pass reads from this long before the previous pass began: the source stamps
changes with its own clock, which may lag ours. Re-read records cost calls only."""
VERSIONS_CHASED = 3
"""How often a document whose bytes changed under the download is re-read and
fetched again before it is journaled as failing (a file being edited right now)."""
"""How often a window far over target is halved again: skewed data stays parallel."""


@dataclass(slots=True)
class CollectionSummary:
    """What one collection's extraction produced."""

    collection: str
    expected: int = 0
    staged: int = 0
    windows: int = 0
    pages: int = 0
    issues: int = 0


@dataclass(slots=True)
class ExtractSummary:
    """What one run's extraction produced, for the report and the CLI.

    A resumed run is read by several processes: the run's totals come from the
    journal, while ``read``, ``pages_read`` and ``elapsed`` are this process's
    own work, so the rate never divides a whole run by one process's time.
    """

    run_id: str
    collections: list[CollectionSummary] = field(default_factory=list)
    deletions: int = 0
    files_stored: int = 0
    files_failed: int = 0
    elapsed: float = 0.0
    """Seconds this process spent extracting."""
    read: int = 0
    """Records this process read from the source and staged."""
    pages_read: int = 0
    """Pages this process read from the source."""
    resumed: bool = False
    """An earlier process of this run had already planned (and maybe read) windows."""
    tokens_fetched: int = 0
    """Access tokens this process was granted, the first one included."""
    token_renewals: int = 0
    """Tokens fetched again because the source refused an expired one."""
    files_deleted: int = 0
    """Documents deleted at the source before their content could be fetched."""
    catchup_passes: int = 0
    """Passes over the changes this process made after the main windows."""
    consistent_as_of: datetime | None = None
    """Start of the last pass that found nothing new: the staged state is the source's
    as of that moment. None when the passes stopped at the bound."""
    changes_arriving: int = 0
    """Changes the last pass still found when the bound stopped the passes."""

    @property
    def staged(self) -> int:
        """Records of the whole run in staging, whichever process read them."""
        return sum(c.staged for c in self.collections)

    @property
    def issues(self) -> int:
        return sum(c.issues for c in self.collections)

    @property
    def rate(self) -> float:
        """Records per second this process read."""
        return self.read / self.elapsed if self.elapsed > 0 else 0.0


@runtime_checkable
class ReadsRecords(Protocol):
    """A source that reads one record by id (BackDocket: ``GET /api/v1/{collection}/{id}``)."""

    async def record(self, collection: str, ident: str) -> Record:
        """The record as it is now; NotFound once deleted."""
        ...


@runtime_checkable
class CountsTokens(Protocol):
    """A source that says how many access tokens it fetched (BackDocket's OAuth does)."""

    token_fetches: int
    token_renewals: int


class Extractor:
    """Reads one source into one run's staging."""

    def __init__(
        self,
        source: Source,
        journal: Journal,
        settings: ExtractSettings,
        *,
        readers: int,
        progress: ProgressBoard | None = None,
    ) -> None:
        self.source = source
        self.journal = journal
        self.settings = settings
        self.readers = readers
        self.progress = progress or ProgressBoard()
        self._read = 0
        self._pages = 0
        self._changes = 0
        self._files = {"stored": 0, "failed": 0, "deleted": 0}
        self._floor: dict[str, datetime] = {}
        """Collection → the oldest ``updated_at`` to read (``run_since``); absent: all."""

    async def run(self, run: Run) -> ExtractSummary:
        """Extract everything the run still lacks; safe to call again after a crash."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        bound = log.bind(run_id=run.run_id, phase=PHASE, platform=self.source.platform)
        bound.info("extract.start", snapshot=run.snapshot_at.isoformat())
        for collection in self.settings.collections:
            self.progress.track(collection, 0)  # bars appear in the plan's order
        self._read = self._pages = 0
        resumed = await self._restore_progress(run)

        await self._read_windows(run, "main")
        resumed_passes = bool(await self.journal.checkpoints.windows(run.run_id, "catchup"))
        first_started = _now()
        await self._pass(run, run.snapshot_at, deletions_since=EPOCH, again=False)
        await self._fetch_files(run)
        since = None if resumed_passes else first_started - CLOCK_MARGIN
        passes, as_of, arriving = await self._converge(run, since)

        summary = await self.summarise(run.run_id)
        summary.deletions = await self.journal.deletions.count(run.run_id)
        summary.files_stored, summary.files_failed = self._files["stored"], self._files["failed"]
        summary.files_deleted = self._files["deleted"]
        summary.catchup_passes, summary.consistent_as_of = passes, as_of
        summary.changes_arriving = arriving
        summary.elapsed = loop.time() - started
        summary.read, summary.pages_read, summary.resumed = self._read, self._pages, resumed
        if isinstance(self.source, CountsTokens):
            summary.tokens_fetched = self.source.token_fetches
            summary.token_renewals = self.source.token_renewals
        bound.info(
            "extract.done",
            run_staged=summary.staged,
            read_by_this_process=summary.read,
            resumed=resumed,
            issues=summary.issues,
            files=summary.files_stored,
            passes=passes,
            consistent_as_of=None if as_of is None else as_of.isoformat(),
            changes_arriving=arriving,
            renewals=summary.token_renewals,
            elapsed=round(summary.elapsed, 2),
        )
        return summary

    async def run_since(self, run: Run, since: dict[str, datetime]) -> ExtractSummary:
        """Extract only what changed: each collection named in ``since`` from that moment
        to the run's snapshot (the others whole), the deletion feed since the earliest of
        them, then document content. Delta pickup reads this way; the next cycle starts
        where this one's snapshot ends, so no catch-up passes are made. Resumable like
        ``run``: windows are planned once and checkpointed page by page."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._floor = dict(since)
        for collection in self.settings.collections:
            self.progress.track(collection, 0)
        self._read = self._pages = 0
        resumed = await self._restore_progress(run)
        await self._read_windows(run, "main")
        await self._stage_deletions(run, min(since.values(), default=EPOCH))
        await self._fetch_files(run)
        summary = await self.summarise(run.run_id)
        summary.deletions = await self.journal.deletions.count(run.run_id)
        summary.files_stored, summary.files_failed = self._files["stored"], self._files["failed"]
        summary.files_deleted = self._files["deleted"]
        summary.elapsed = loop.time() - started
        summary.read, summary.pages_read, summary.resumed = self._read, self._pages, resumed
        if isinstance(self.source, CountsTokens):
            summary.tokens_fetched = self.source.token_fetches
            summary.token_renewals = self.source.token_renewals
        log.info("extract.since_done", run_id=run.run_id, phase=PHASE,
                 platform=self.source.platform, staged=summary.staged, read=summary.read,
                 deletions=summary.deletions, elapsed=round(summary.elapsed, 2))  # fmt: skip
        return summary

    # -- windows ----------------------------------------------------------

    async def _restore_progress(self, run: Run) -> bool:
        """Show what earlier processes of the run read; True when there were any."""
        windows = await self.journal.checkpoints.windows(run.run_id)
        for w in windows:
            self.progress.restore(w.collection, w.records, w.expected or 0)
        return bool(windows)

    async def _read_windows(self, run: Run, kind: str) -> None:
        """Plan what is unplanned and read every unfinished window of ``kind``."""
        queue: asyncio.Queue[WindowCheckpoint | None] = asyncio.Queue(maxsize=self.readers * 2)
        known = await self.journal.checkpoints.windows(run.run_id)
        planned = {w.collection for w in known if w.kind == "main"}

        async def feed() -> None:
            # Biggest windows first: the pool's tail is then short ones.
            pending = sorted(
                (w for w in known if w.kind == kind and not w.done),
                key=lambda w: -(w.expected or 0),
            )
            for w in pending:
                await queue.put(w)
            if kind == "main":
                async with asyncio.TaskGroup() as planners:
                    for collection in self.settings.collections:
                        if collection not in planned:
                            planners.create_task(
                                self._plan_collection(run, collection, queue),
                                name=f"plan:{collection}",
                            )
            for _ in range(self.readers):
                await queue.put(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed(), name=f"feed:{kind}")
            for i in range(self.readers):
                tg.create_task(self._reader(run, queue), name=f"reader:{kind}:{i}")

    async def _reader(self, run: Run, queue: asyncio.Queue[WindowCheckpoint | None]) -> None:
        while (window := await queue.get()) is not None:
            await self._read_window(run, window)

    async def _plan_collection(
        self, run: Run, collection: str, queue: asyncio.Queue[WindowCheckpoint | None]
    ) -> None:
        """Cut a collection into windows near ``window_records`` each and persist them."""
        first = await self.source.first_updated_at(collection)
        snapshot = run.snapshot_at
        floor = self._floor.get(collection)
        if floor is not None and first is not None:
            first = max(first, floor)
        if first is None or first >= snapshot:
            ranges = [(EPOCH if first is None else min(first, snapshot), snapshot, 0)]
        else:
            total = await self.source.count(collection, first, snapshot)
            ranges = await self._split(collection, first, snapshot, total)
        windows = [
            WindowCheckpoint(
                collection=collection,
                kind="main",
                start=start,
                end=end,
                expected=n,
                cursor=None,
                pages=0,
                records=0,
                done=n == 0,
            )
            for start, end, n in ranges
        ]
        await self.journal.checkpoints.plan(run.run_id, windows)
        self.progress.add_total(collection, sum(n for _, _, n in ranges))
        for w in windows:
            if not w.done:
                await queue.put(w)

    async def _split(
        self, collection: str, start: datetime, end: datetime, total: int
    ) -> list[tuple[datetime, datetime, int]]:
        """Equal time slices sized from the count, halving any slice far over target."""
        target = self.settings.window_records
        pieces = max(1, math.ceil(total / target))
        if pieces == 1:
            return [(start, end, total)]
        bounds = _slice(start, end, pieces)
        counts = await asyncio.gather(*(self.source.count(collection, a, b) for a, b in bounds))
        ranges: list[tuple[datetime, datetime, int]] = []
        for (a, b), n in zip(bounds, counts, strict=True):
            ranges.extend(await self._refine(collection, a, b, n, MAX_SPLIT_DEPTH))
        return ranges

    async def _refine(
        self, collection: str, start: datetime, end: datetime, n: int, depth: int
    ) -> list[tuple[datetime, datetime, int]]:
        if (
            n <= 2 * self.settings.window_records
            or depth == 0
            or end - start < timedelta(milliseconds=2)
        ):
            return [(start, end, n)]
        middle = start + (end - start) / 2
        left = await self.source.count(collection, start, middle)
        return [
            *await self._refine(collection, start, middle, left, depth - 1),
            *await self._refine(collection, middle, end, n - left, depth - 1),
        ]

    # -- catch-up passes ----------------------------------------------------

    async def _converge(self, run: Run, since: datetime | None) -> tuple[int, datetime | None, int]:
        """Pass after pass until one finds nothing new or the bound is reached.

        ``since`` None (a resumed run: when the newest pass began is unknown) reads
        again from the newest pass's ``since``. Returns (passes, consistent as of,
        changes still arriving at the bound).
        """
        changes = 0
        for number in range(1, self.settings.catchup_passes + 1):
            if since is None:
                since = await self._newest_since(run)
            started = _now()
            changes = await self._pass(run, since, deletions_since=since, again=True)
            log.info(
                "extract.catchup_pass",
                run_id=run.run_id,
                phase=PHASE,
                platform=self.source.platform,
                number=number,
                since=since.isoformat(),
                changes=changes,
            )
            if changes == 0:
                return number, started, 0
            await self._fetch_files(run)
            since = started - CLOCK_MARGIN
        log.warning(
            "extract.still_changing",
            run_id=run.run_id,
            phase=PHASE,
            platform=self.source.platform,
            passes=self.settings.catchup_passes,
            changes=changes,
        )
        return self.settings.catchup_passes, None, changes

    async def _newest_since(self, run: Run) -> datetime:
        windows = await self.journal.checkpoints.windows(run.run_id, "catchup")
        return max((w.start for w in windows), default=run.snapshot_at)

    async def _pass(
        self, run: Run, since: datetime, *, deletions_since: datetime, again: bool
    ) -> int:
        """Read every change since ``since`` (listings, then the deletion feed) and say
        how many differed from staging. ``again`` re-reads windows an earlier pass at the
        same ``since`` finished; otherwise unfinished ones resume at their cursors."""
        self._changes = 0
        windows = [
            WindowCheckpoint(c, "catchup", since, None, None, None, 0, 0, False)
            for c in self.settings.collections
        ]
        await self.journal.checkpoints.plan(run.run_id, windows)
        if again:
            for w in await self.journal.checkpoints.windows(run.run_id, "catchup"):
                if w.start == since and w.done:
                    await self.journal.checkpoints.restart(run.run_id, w)
        await self._read_windows(run, "catchup")
        return self._changes + await self._stage_deletions(run, deletions_since)

    async def _count_changes(self, run: Run, collection: str, rows: list[StagedRow]) -> None:
        """Count the rows a catch-up page brings that staging does not hold as they are."""
        staged = await self.journal.staging.hashes_of(
            run.run_id, collection, [r.source_id for r in rows]
        )
        self._changes += sum(staged.get(r.source_id) != r.content_hash for r in rows)

    async def _read_window(
        self, run: Run, checkpoint: WindowCheckpoint, *, restarted: bool = False
    ) -> None:
        """Stage a window page by page from its saved cursor.

        A rejected cursor rewinds the window once; a source that rejects the
        rewound window's cursors too would be rewound forever, so it is refused.
        """
        window = Window(checkpoint.collection, checkpoint.start, checkpoint.end)
        cursor = checkpoint.cursor
        page_no = checkpoint.pages
        try:
            async for page in self.source.pages(window, cursor):
                rows, issues = _rows(checkpoint.collection, page.records, window, page_no)
                if checkpoint.kind == "catchup" and rows:
                    await self._count_changes(run, checkpoint.collection, rows)
                await self.journal.staging.stage_page(
                    run.run_id, checkpoint, rows, next_cursor=page.next_cursor
                )
                for issue in issues:
                    await self.journal.issues.record(run.run_id, issue)
                self.progress.advance(checkpoint.collection, len(page.records))
                self._read += len(page.records)
                self._pages += 1
                page_no += 1
        except CursorRejected as exc:
            if restarted or (cursor is None and page_no == checkpoint.pages):
                where = f"{checkpoint.collection} window from {checkpoint.start.isoformat()}"
                reason = f"the source rejected the cursor it handed out ({exc})"
                raise PlatformRefused(self.source.platform, where, reason) from exc
            # Staging merges on the source id, so re-reading from the start
            # costs calls but never doubles a record.
            log.warning(
                "extract.cursor_rejected",
                run_id=run.run_id,
                collection=checkpoint.collection,
                window_start=checkpoint.start.isoformat(),
            )
            rewound = await self.journal.checkpoints.restart(run.run_id, checkpoint)
            self.progress.advance(checkpoint.collection, -checkpoint.records)
            await self._read_window(run, rewound, restarted=True)

    # -- deletions and files ---------------------------------------------

    async def _stage_deletions(self, run: Run, since: datetime) -> int:
        """Stage the deletion feed since ``since``; return how many deletions were new."""
        before = await self.journal.deletions.count(run.run_id)
        async for page in self.source.deletions(since):
            rows, issues = _deletion_rows(page)
            await self.journal.deletions.stage(run.run_id, rows)
            for issue in issues:
                await self.journal.issues.record(run.run_id, issue)
        return await self.journal.deletions.count(run.run_id) - before

    def _wants_files(self) -> bool:
        return self.settings.files and "documents" in self.settings.collections

    async def _fetch_files(self, run: Run) -> None:
        """Download every staged document whose content is not yet in the blob store."""
        if not self._wants_files():
            return
        missing = await self.journal.blobs.missing_for_run(run.run_id)
        self.progress.track(FILES_TRACK, len(missing))
        queue: asyncio.Queue[tuple[str, str | None, int | None] | None] = asyncio.Queue(
            maxsize=self.readers * 2
        )

        async def fetcher() -> None:
            while (item := await queue.get()) is not None:
                self._files[await self._fetch_file(run, *item)] += 1
                self.progress.advance(FILES_TRACK)

        async with asyncio.TaskGroup() as tg:
            for i in range(self.readers):
                tg.create_task(fetcher(), name=f"files:{i}")
            for item in missing:
                await queue.put(item)
            for _ in range(self.readers):
                await queue.put(None)
        self.progress.finish(FILES_TRACK)

    async def _fetch_file(
        self, run: Run, document_id: str, sha256: str | None, size: int | None
    ) -> str:
        """Store one document's content: "stored", "failed" (journaled) or "deleted".

        Bytes that do not match the staged checksum are a newer version uploaded
        since staging: the document's metadata is read again, staged, and the new
        version fetched, a few times at most.
        """

        def fail(code: str, message: str) -> RecordIssue:
            return RecordIssue(PHASE, "documents", document_id, "failed", code, message)

        for _ in range(VERSIONS_CHASED):
            if sha256 is None or size is None:
                message = "document has no sha256 or size_bytes to verify content"
                await self.journal.issues.record(run.run_id, fail("no_checksum", message))
                return "failed"
            try:
                await self.source.download(
                    document_id, functools.partial(self.journal.blobs.store, sha256, size)
                )
            except NotFound:
                if await self._reread_document(run, document_id, (sha256, size)) is None:
                    return await self._deleted_document(run, document_id)
                message = "the source has no content for this document"
                issue = fail("content_missing", message)
            except ContentMismatch as exc:
                issue = fail("checksum_mismatch", f"content does not match metadata: {exc}")
                fresh = await self._reread_document(run, document_id, (sha256, size))
                if fresh is None:
                    return await self._deleted_document(run, document_id)
                if fresh != (sha256, size):
                    sha256, size = fresh
                    continue
            else:
                await self.journal.issues.resolve(run.run_id, PHASE, "documents", document_id)
                return "stored"
            await self.journal.issues.record(run.run_id, issue)
            return "failed"
        message = f"content changed {VERSIONS_CHASED} times while it was fetched"
        await self.journal.issues.record(run.run_id, fail("checksum_mismatch", message))
        return "failed"

    async def _reread_document(
        self, run: Run, document_id: str, known: tuple[str, int]
    ) -> tuple[str | None, int | None] | None:
        """Stage a document's metadata as it is now; its (sha256, size), None once deleted.

        A source that cannot read one record gives back nothing new: ``known``.
        """
        if not isinstance(self.source, ReadsRecords):
            return known
        try:
            record = await self.source.record("documents", document_id)
        except NotFound:
            return None
        window = Window("documents", EPOCH, None)
        rows, issues = _rows("documents", [record], window, 0)
        if rows:
            await self.journal.staging.stage_rows(run.run_id, rows)
        for issue in issues:
            await self.journal.issues.record(run.run_id, issue)
        sha256, size = record.get("sha256"), record.get("size_bytes")
        return (
            sha256 if isinstance(sha256, str) else None,
            size if isinstance(size, int) and not isinstance(size, bool) else None,
        )

    async def _deleted_document(self, run: Run, document_id: str) -> str:
        """The document went while its content was fetched: the deletion feed says so."""
        message = "deleted at the source before its content was fetched"
        issue = RecordIssue(
            PHASE, "documents", document_id, "warning", "deleted_at_source", message
        )
        await self.journal.issues.record(run.run_id, issue)
        return "deleted"

    # -- summary ----------------------------------------------------------

    async def summarise(self, run_id: str) -> ExtractSummary:
        """Per-collection figures from the journal, not from memory."""
        staged = await self.journal.staging.counts(run_id)
        issues = await self.journal.issues.list(run_id, PHASE)
        by_collection = {c: CollectionSummary(c) for c in self.settings.collections}
        for w in await self.journal.checkpoints.windows(run_id):
            s = by_collection.setdefault(w.collection, CollectionSummary(w.collection))
            s.expected += w.expected or 0
            s.windows += 1
            s.pages += w.pages
        for issue in issues:
            if issue.collection in by_collection and issue.outcome != "warning":
                by_collection[issue.collection].issues += 1
        for name, s in by_collection.items():
            s.staged = staged.get(name, 0)
        return ExtractSummary(run_id=run_id, collections=list(by_collection.values()))


def _now() -> datetime:
    return datetime.now(UTC)


def _slice(start: datetime, end: datetime, pieces: int) -> list[tuple[datetime, datetime]]:
    step = (end - start) / pieces
    edges = [start + step * i for i in range(pieces)] + [end]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _rows(
    collection: str, records: Iterable[Record], window: Window, page_no: int
) -> tuple[list[StagedRow], list[RecordIssue]]:
    """Staging rows for a page, and an issue for every record that is not well formed.

    A record is kept whenever it can be named: a bad ``updated_at`` falls back
    to the window's start (the source still ordered it into this window), and a
    NUL is escaped in staging (restored on load) rather than refusing the page.
    """
    rows: list[StagedRow] = []
    issues: list[RecordIssue] = []
    for index, record in enumerate(records):
        source_id = record.get("id") if isinstance(record, dict) else None
        problem = _id_problem(source_id)
        if problem is not None or not isinstance(source_id, str):
            name = f"?page{page_no}#{index}@{window.start.isoformat()}"
            message = f"record {problem or 'has no string id'}, cannot be tracked: "
            issues.append(
                RecordIssue(
                    PHASE, collection, name, "failed", "missing_id", message + _shown(record)
                )
            )
            continue
        updated_at, note = _updated_at(record.get("updated_at"), window)
        if note is not None:
            issues.append(RecordIssue(PHASE, collection, source_id, "warning", *note))
        payload = canonical_json(record)
        staged, fields = escape_nuls(record)
        if fields:
            message = (
                f"field(s) {', '.join(fields)[:SHOWN]} hold NUL characters: staged escaped"
                " (PostgreSQL text cannot hold them) and restored on load"
            )
            issues.append(
                RecordIssue(PHASE, collection, source_id, "warning", "nul_escaped", message)
            )
        text = canonical_json(staged).decode() if fields else payload.decode()
        rows.append(StagedRow(collection, source_id, updated_at, text, digest(payload)))
    return rows, issues


def _id_problem(source_id: object) -> str | None:
    """Why ``source_id`` cannot key a staged record, or None when it can."""
    if not isinstance(source_id, str) or not source_id:
        return "has no string id"
    if NUL in source_id:
        return "has an id holding a NUL character"
    if len(source_id) > MAX_ID_LENGTH:
        return f"has an id of {len(source_id)} characters (more than {MAX_ID_LENGTH})"
    return None


def _updated_at(value: object, window: Window) -> tuple[datetime, tuple[str, str] | None]:
    """The record's version time, and a (code, message) note when it had to be guessed."""
    parsed = parse_timestamp(value)
    if parsed is None:
        shown = _shown(value)
        return window.start, ("bad_updated_at", f"updated_at {shown} is not ISO-8601")
    if isinstance(value, str) and datetime.fromisoformat(value).tzinfo is None:
        return parsed, (
            "naive_updated_at",
            f"updated_at {value[:SHOWN]!r} has no offset: read as UTC",
        )
    return parsed, None


def _deletion_rows(
    page: Iterable[object],
) -> tuple[list[tuple[str, str, datetime]], list[RecordIssue]]:
    """Rows of a deletion page; an entry that names no record or no time is journaled."""
    rows: list[tuple[str, str, datetime]] = []
    issues: list[RecordIssue] = []
    for index, entry in enumerate(page):
        item = entry if isinstance(entry, dict) else {}
        collection, source_id = item.get("collection"), item.get("id")
        deleted_at = parse_timestamp(item.get("deleted_at"))
        if (
            not isinstance(collection, str)
            or not isinstance(source_id, str)
            or _id_problem(collection) is not None
            or _id_problem(source_id) is not None
        ):
            collection, source_id, reason = "deletions", f"?deletion#{index}", "no usable id"
        elif deleted_at is not None:
            rows.append((collection, source_id, deleted_at))
            continue
        else:
            reason = "invalid deleted_at"
        issues.append(
            RecordIssue(
                PHASE, collection, source_id, "failed", "bad_deletion", f"{reason}: {_shown(entry)}"
            )
        )
    return rows, issues


def _shown(value: object) -> str:
    """A bad value as an issue quotes it: JSON, short, NUL-free (PostgreSQL text)."""
    try:
        text = canonical_json(value).decode(errors="replace")  # type: ignore[arg-type]
    except TypeError:
        text = repr(value)
    return text[:SHOWN].replace(NUL, "\\u0000")
