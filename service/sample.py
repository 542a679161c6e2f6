"""The sample run: a small, representative slice of the tenant loaded first (usually into
a sandbox), read back and diffed, then approved before the full run may start.

Selection is seeded by the run id, so it is the same every time for one run, and it is
journaled when chosen, so a resumed sample loads exactly what it started with. A slice
spans every collection the pair loads, carries every parent its records point at (the
transform's refs and deferred refs, transitively: a sample never fails for a parent it
left out), and adds the dirty cases the transforms and owner resolution reveal.

Its approval (``service.approval``) binds the mapping, not the data.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from adapters.base import Destination, Record
from adapters.errors import ConfigError
from journal import Journal
from journal.approvals import Samples, Selection
from journal.runs import Run
from journal.staging import Staging
from service.approval import mapping_fingerprint, require_approved_sample
from service.context import RunContext
from service.mapping.base import Payload, Rejection
from service.mapping.provenance import source_value, sources
from service.pairs import Pair, pair_for
from service.pipeline import lock_scope, plan_fingerprint, run_dir, running, start_or_resume
from service.plan import DestinationSettings, MigrationPlan
from service.reports.sample import write_sample_report
from service.sample_diff import FLAGS, SampleDiff, build_diff

log = structlog.get_logger(__name__)

DIRTY_SHARE = 4
"""At most 1/DIRTY_SHARE of the sample's seeds are dirty cases; the rest is representative."""

DUPLICATE_GROUPS = 2
"""Contacts-sharing-an-email groups a sample shows (each with at most 3 contacts)."""

TRANSFORM_BATCH = 500
"""Records transformed between two existence checks of their lookups' targets."""

Key = tuple[str, str]
"""(collection, source id) of a staged record."""


# -- the sample's run ---------------------------------------------------------------------


def sample_destination(plan: MigrationPlan) -> DestinationSettings:
    """Where a sample loads: ``[sample_destination]`` (a sandbox) when the plan has one."""
    destination = plan.sample_destination or plan.destination
    if destination is None:
        raise ConfigError("the plan has no [destination] table; a sample loads into one")
    return destination


def loaded_into(plan: MigrationPlan, run: Run) -> DestinationSettings:
    """The destination ``run`` loaded into: a sample's, or the plan's. Rollback and
    reconcile of a sample must reach the sandbox it loaded, never production."""
    if run.settings.get("sample"):
        return sample_destination(plan)
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table")
    return plan.destination


def org_label(destination: DestinationSettings) -> str:
    return f"{destination.platform} {destination.config.org_url}"


async def sample_size(journal: Journal, resume: str | None, asked: int | None) -> int | None:
    """The sample size a (resumed) run works with; None for a full run.

    A resumed run keeps what it is: a sample continues as the sample it started as
    (whatever ``--sample`` says now), a full run cannot become a sample.
    """
    if resume is None:
        return asked
    found = await Samples(journal.pool).get(resume)
    if found is not None:
        return found.requested
    if asked is not None:
        raise ConfigError(f"run {resume} is a full run, not a sample; resume it without --sample")
    return None


@asynccontextmanager
async def sample_running(
    journal: Journal, plan: MigrationPlan, resume: str | None, requested: int
) -> AsyncIterator[Run]:
    """A new or resumed sample run, held by this process alone (as ``pipeline.running``).

    A new run's settings say it is a sample of ``requested`` records and where it loads.
    """
    destination = sample_destination(plan)
    async with journal.runs.locked(lock_scope(plan)) as lock:
        if resume is not None:
            run = await start_or_resume(journal, plan, resume, destination=destination.platform)
        else:
            run = await journal.runs.create(
                migration=plan.name,
                source="backdocket",
                destination=destination.platform,
                settings={
                    **plan.public_settings(),
                    "sample": {"records": requested, "destination": org_label(destination)},
                },
                fingerprint=plan_fingerprint(plan),
            )
            await Samples(journal.pool).start(run.run_id, requested, org_label(destination))
        await lock.claim(run)
        yield run


@dataclass(slots=True)
class Sampling:
    """A migrate run in sample mode: where it loads, what it loads, what it reports."""

    requested: int
    destination: DestinationSettings
    reports: list[Path] = field(default_factory=list)

    async def only(
        self, journal: Journal, run: Run, pair: Pair, context: RunContext
    ) -> dict[str, frozenset[str]]:
        """The loader's filter: the run's (journaled) selection."""
        return only(await chosen(journal, run, pair, context, self.requested))

    async def check(
        self,
        journal: Journal,
        plan: MigrationPlan,
        pair: Pair,
        run: Run,
        client: Destination,
        context: RunContext,
        migration: str,
    ) -> None:
        """Read the sample back, write diff.csv and diff.html, and record the mapping
        fingerprint the sample was checked with (what ``crmlift approve`` vouches for)."""
        selection = await chosen(journal, run, pair, context, self.requested)
        diff = SampleDiff(run.run_id, org_label(self.destination), self.requested)
        await build_diff(journal, run, pair, client, context.mapping, migration, selection, diff)
        fingerprint = mapping_fingerprint(pair, self.destination.mapping, context.definitions)
        self.reports = write_sample_report(diff, fingerprint, run_dir(plan, run.run_id))
        await Samples(journal.pool).checked(run.run_id, fingerprint)
        log.info("sample.checked", run_id=run.run_id, phase="sample", records=diff.records,
                 **{k.replace(" ", "_"): v for k, v in diff.counts().items()})  # fmt: skip


@asynccontextmanager
async def starting(
    journal: Journal, plan: MigrationPlan, resume: str | None, sample: int | None
) -> AsyncIterator[tuple[Run, Sampling | None]]:
    """The run ``migrate`` works on, and its sample mode if it is a sample.

    A new full run with ``[migration] require_approved_sample`` is refused here unless
    a sample of its mapping was approved; a resumed run is never blocked.
    """
    requested = await sample_size(journal, resume, sample)
    if requested is None:
        assert plan.destination is not None
        if resume is None and plan.require_approved_sample:
            await require_approved_sample(journal, plan, pair_for(plan.destination.platform))
        async with running(
            journal, plan, resume, "migrate", destination=plan.destination.platform
        ) as run:
            yield run, None
        return
    async with sample_running(journal, plan, resume, requested) as run:
        yield run, Sampling(requested, sample_destination(plan))


# -- selection ----------------------------------------------------------------------------


async def chosen(
    journal: Journal, run: Run, pair: Pair, context: RunContext, requested: int
) -> dict[str, dict[str, str]]:
    """The run's sample: the journaled one, or a new one chosen and journaled now."""
    samples = Samples(journal.pool)
    saved = await samples.selection(run.run_id)
    if saved is not None:
        return saved
    picked = await select(journal, run, pair, context, requested)
    await samples.save_selection(run.run_id, picked)
    log.info("sample.selected", run_id=run.run_id, phase="sample", requested=requested,
             selected=sum(len(p) for p in picked.values()))  # fmt: skip
    return {c: dict(p) for c, p in picked.items()}


def only(selection: Selection) -> dict[str, frozenset[str]]:
    """The selection as the loader's ``only`` filter."""
    return {collection: frozenset(picks) for collection, picks in selection.items()}


@dataclass(slots=True)
class _Seen:
    """What one streaming pass over staging keeps: bounded candidates, not the tenant."""

    counts: dict[str, int]
    candidates: dict[str, list[tuple[int, str]]]
    """Collection → max-heap (negated hash) of its ``requested`` smallest-hash records."""
    dirty: dict[str, tuple[int, str, str]]
    """Dirty-case tag → (hash, collection, source id) of its smallest-hash record."""
    emails: dict[str, list[tuple[int, str]]]
    """Contact de-duplication key → (hash, source id) of the contacts sharing it."""


async def select(
    journal: Journal, run: Run, pair: Pair, context: RunContext, requested: int
) -> dict[str, dict[str, str]]:
    """Choose about ``requested`` staged records and the parents they need.

    One streamed pass transforms every staged record of the pair's collections and keeps,
    per collection, the records of smallest seeded hash (the representative candidates)
    and, per dirty case, one record showing it. The candidates' lookups are then closed
    over (parents read by id), and seeds are taken — one per collection, the dirty cases,
    then the representatives in proportion to each collection's size — as long as a seed
    and its missing parents fit in ``requested``.
    """
    seen = await _stream(journal, run, pair, context, requested)
    graph = await _close(journal, run, pair, context, _candidate_keys(seen))
    picks = _Picker(graph, requested)
    by_hash = {c: sorted((-h, s) for h, s in heap) for c, heap in seen.candidates.items()}
    for collection in reversed(pair.load_order):  # leaves first: they bring their parents
        ranked = by_hash.get(collection, [])
        loadable = [s for _, s in ranked if graph.get((collection, s), _REJECTED).loadable]
        first = (loadable or [s for _, s in ranked])[:1]
        for source_id in first:
            picks.add((collection, source_id), "representative (spans its collection)", force=True)
    budget = max(1, requested // DIRTY_SHARE)
    for tag in dirty_order(seen.dirty)[:budget]:
        _, collection, source_id = seen.dirty[tag]
        picks.add((collection, source_id), f"dirty case: {tag}", force=True)
    groups = sorted((min(m), e, m) for e, m in seen.emails.items() if len(m) > 1)
    for _, email, members in groups[:DUPLICATE_GROUPS]:
        for _, source_id in sorted(members)[:3]:
            picks.add(("contacts", source_id), f"dirty case: contacts share email {email}", True)
    ranked_all = sorted(
        ((rank + 1) / seen.counts[c], c, s)
        for c, ranked in by_hash.items()
        for rank, (_, s) in enumerate(ranked)
    )
    for _, collection, source_id in ranked_all:
        picks.add((collection, source_id), "representative")
    return picks.selection()


async def _stream(
    journal: Journal, run: Run, pair: Pair, context: RunContext, requested: int
) -> _Seen:
    counts = await journal.staging.counts(run.run_id)
    seen = _Seen(counts, defaultdict(list), {}, defaultdict(list))
    extra = _extra_keys(pair, context)
    fell_back = {user_id for user_id, *_ in context.owners.fell_back}
    seed = run.run_id
    for collection in pair.load_order:
        if not counts.get(collection):
            continue
        batch: list[tuple[str, dict[str, Any]]] = []
        async for source_id, raw in journal.staging.payloads(run.run_id, collection):
            batch.append((source_id, orjson.loads(raw)))
            if len(batch) >= TRANSFORM_BATCH:
                await _observe(seen, journal.staging, run, pair, context, collection, batch, seed,
                               requested, extra, fell_back)  # fmt: skip
                batch = []
        if batch:
            await _observe(seen, journal.staging, run, pair, context, collection, batch, seed,
                           requested, extra, fell_back)  # fmt: skip
    return seen


async def _observe(
    seen: _Seen,
    staging: Staging,
    run: Run,
    pair: Pair,
    context: RunContext,
    collection: str,
    batch: list[tuple[str, dict[str, Any]]],
    seed: str,
    requested: int,
    extra: set[Key],
    fell_back: set[str],
) -> None:
    """Take one batch of a collection's records into the candidates and the dirty cases."""
    results = [(s, r, pair.transform(collection, r, context.mapping)) for s, r in batch]
    targets = {
        key
        for *_, result in results
        if not isinstance(result, Rejection)
        for key in _refs(result)
        if key not in extra
    }
    present = await staging.live_among(run.run_id, sorted(targets))
    for source_id, record, result in results:
        h = seeded_hash(seed, collection, source_id)
        heap = seen.candidates[collection]
        if len(heap) < requested:
            heapq.heappush(heap, (-h, source_id))
        elif -heap[0][0] > h:
            heapq.heapreplace(heap, (-h, source_id))
        for tag in _dirty_tags(pair, collection, record, result, context, present, extra,
                               fell_back):  # fmt: skip
            if tag not in seen.dirty or seen.dirty[tag][0] > h:
                seen.dirty[tag] = (h, collection, source_id)
        if collection == "contacts":
            email = pair.dedupe_key(record)
            if email is not None:
                seen.emails[email].append((h, source_id))


DIRTY_KINDS = ("rejected", "points at a record", "owner fell back", "note:")
"""The kinds of dirty case, in the order a small sample takes them (each kind before a
second case of any kind)."""


def dirty_order(tags: Iterable[str]) -> list[str]:
    """Dirty-case tags round-robin over their kinds, so a small sample shows every kind."""
    by_kind: dict[int, list[str]] = defaultdict(list)
    for tag in sorted(tags):
        kind = next((i for i, k in enumerate(DIRTY_KINDS) if k in tag), len(DIRTY_KINDS))
        by_kind[kind].append(tag)
    rounds = max((len(v) for v in by_kind.values()), default=0)
    return [
        by_kind[kind][i]
        for i in range(rounds)
        for kind in sorted(by_kind)
        if i < len(by_kind[kind])
    ]


def _dirty_tags(
    pair: Pair,
    collection: str,
    record: Record,
    result: list[Payload] | Rejection,
    context: RunContext,
    present: set[Key],
    extra: set[Key],
    fell_back: set[str],
) -> set[str]:
    """The dirty cases a record shows, as the audit would name them: a rejection, a
    transform note (by object, field and kind), a lookup to a record the source does not
    have, an owner who fell back to the fallback owner."""
    if isinstance(result, Rejection):
        return {f"{collection} rejected ({result.code})"}
    tags: set[str] = set()
    for p in result:
        for note in p.notes:
            tags.add(f"{p.object} note: {note_kind(note)}")
        for name, ref in {**p.refs, **p.deferred_refs}.items():
            key = (ref.collection, ref.source_id)
            if key not in present and key not in extra:
                tags.add(f"{p.object}.{name} points at a record the source does not have")
        for name, value in p.fields.items():
            if value != context.fallback:
                continue
            paths = sources(pair.destination, collection, p.object, name, context.mapping) or ()
            owners = [source_value(record, (path,)) for path in paths]
            if any(str(o) in fell_back for o in owners if o is not None):
                tags.add(f"{p.object}.{name} owner fell back (user not in the destination)")
    return tags


def note_kind(note: str) -> str:
    """A transform note as a dirty-case kind: ``Name: truncated`` (field and what happened)."""
    head = note.split(":", 1)[0] if ":" in note else ""
    field = head if head and " " not in head.strip() else "record"
    kind = next((k for k, pattern in FLAGS if pattern.search(note)), "noted")
    return f"{field}: {kind}"


def _refs(result: list[Payload]) -> set[Key]:
    return {
        (ref.collection, ref.source_id)
        for p in result
        for ref in (*p.refs.values(), *p.deferred_refs.values())
    }


def _extra_keys(pair: Pair, context: RunContext) -> set[Key]:
    """Records the pair loads itself before any wave (the Unassigned Account): always there."""
    return {(c, p.external_id) for c, p in pair.first_payloads(context.fallback)}


def seeded_hash(seed: str, collection: str, source_id: str) -> int:
    """A record's place in the run's random order: stable for a run, unrelated to ids."""
    raw = hashlib.blake2b(f"{seed}|{collection}|{source_id}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big")


def _candidate_keys(seen: _Seen) -> set[Key]:
    keys = {(c, s) for c, heap in seen.candidates.items() for _, s in heap}
    keys |= {(c, s) for _, c, s in seen.dirty.values()}
    keys |= {("contacts", s) for members in seen.emails.values() for _, s in members[:3]
             if len(members) > 1}  # fmt: skip
    return keys


@dataclass(frozen=True, slots=True)
class _Node:
    """A staged record in the selection's graph: what it points at, whether it loads."""

    parents: frozenset[Key]
    loadable: bool


_REJECTED = _Node(frozenset(), False)


async def _close(
    journal: Journal, run: Run, pair: Pair, context: RunContext, keys: Iterable[Key]
) -> dict[Key, _Node]:
    """The lookup graph of ``keys`` and, transitively, of every staged record they point
    at; a target the source does not have (or deleted) gets no node."""
    extra = _extra_keys(pair, context)
    graph: dict[Key, _Node] = {}
    todo = set(keys)
    asked: set[Key] = set()
    while todo:
        asked |= todo
        by_collection: dict[str, list[str]] = defaultdict(list)
        for collection, source_id in sorted(todo):
            by_collection[collection].append(source_id)
        found: set[Key] = set()
        for collection, ids in by_collection.items():
            for source_id, raw in await journal.staging.live(run.run_id, collection, ids):
                result = pair.transform(collection, orjson.loads(raw), context.mapping)
                if isinstance(result, Rejection):
                    graph[(collection, source_id)] = _REJECTED
                else:
                    parents = frozenset(_refs(result) - extra)
                    graph[(collection, source_id)] = _Node(parents, True)
                found.add((collection, source_id))
        todo = {p for k in found for p in graph[k].parents if p not in graph} - asked
    return graph


class _Picker:
    """Adds seeds with their closure while the sample has room."""

    def __init__(self, graph: Mapping[Key, _Node], requested: int) -> None:
        self.graph = graph
        self.requested = requested
        self.picked: dict[Key, str] = {}

    def closure(self, key: Key) -> list[Key]:
        order: list[Key] = []
        stack, seen = [key], {key}
        while stack:
            current = stack.pop()
            order.append(current)
            node = self.graph.get(current)
            for parent in sorted(node.parents) if node is not None else ():
                if parent not in seen and parent in self.graph:
                    seen.add(parent)
                    stack.append(parent)
        return order

    def add(self, key: Key, reason: str, force: bool = False) -> None:
        if key in self.picked or key not in self.graph:
            return
        needed = [k for k in self.closure(key) if k not in self.picked]
        if not force and len(self.picked) + len(needed) > self.requested:
            return
        self.picked[key] = reason
        for parent in needed[1:]:
            self.picked[parent] = f"parent of {key[0]}/{key[1]}"

    def selection(self) -> dict[str, dict[str, str]]:
        chosen: dict[str, dict[str, str]] = defaultdict(dict)
        for (collection, source_id), reason in sorted(self.picked.items()):
            chosen[collection][source_id] = reason
        return dict(chosen)
