"""The budget planner: what a migration will cost its destination, before it runs.

Counts come from the source (``/count`` per collection, over all time); how each
collection splits into destination objects comes from the pair's pure transform
run over a sample (the first page of each collection), scaled to the count. Each
object's cost is the destination's own rule (``adapters/*/costs.py``) applied to the
batches the loader will hand it, and its time is what the destination's quotas
allow (``service/budget.py``). Beside each object's load stands what rolling that load
back would cost (every record it creates deleted again, in the calls ``crmlift
rollback`` makes), so the operator knows the way back fits the window too.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters.backdocket.client import MAX_PAGE_SIZE, BackDocketClient
from adapters.base import Record, Window
from adapters.costs import LoadCost
from adapters.errors import ConfigError
from ratelimit.governor import Governor
from service.budget import (
    BudgetWarning,
    PlatformBudget,
    allocation_days,
    budget_warnings,
    load_seconds,
)
from service.extract import EPOCH
from service.load import LoadSettings, dependency_levels, level_batch_size
from service.mapping.base import MappingContext, Rejection
from service.pairs import Pair, pair_for
from service.plan import DestinationSettings, MigrationPlan
from service.rollback import delete_call_size

SAMPLE_RECORDS = MAX_PAGE_SIZE
"""Records read per collection to learn its split: one page."""
PLACEHOLDER_OWNER = "crmlift:estimate-owner"
"""Owner of every sampled record: owners decide no object, and none are resolved here."""
FIRST_PAYLOADS = "(before the waves)"
"""Collection label of the records a pair loads before any wave (Unassigned Account)."""


@dataclass(frozen=True, slots=True)
class SourceFigures:
    """What the source says before any extraction: counts, and a page of each collection."""

    counts: Mapping[str, int]
    samples: Mapping[str, Sequence[Record]]


@dataclass(frozen=True, slots=True)
class Share:
    """The part of one collection that becomes one destination object, scaled to its count."""

    collection: str
    object: str
    records: int
    per_call: int
    """Records of this object in each upsert the loader makes (its batch × the share)."""
    deferred: int = 0
    """Records written again in the wave's second pass (self-references)."""
    file_sizes: tuple[int, ...] | None = None
    """The sample's file sizes when these records carry files; None for plain records."""


@dataclass(frozen=True, slots=True)
class ObjectEstimate:
    """One destination object: its records, what they cost, and how long the quota allows."""

    object: str
    records: int
    cost: LoadCost
    seconds: float
    daily_share: float | None
    """Share of the destination's 24 h allocation; None when it counts none."""
    rollback: LoadCost
    """Deleting the records the load creates (``crmlift rollback`` of a first run)."""
    rollback_seconds: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """The budget of one plan's migration."""

    plan: str
    destination: str
    counts: Mapping[str, int]
    """Source collection → records (all time)."""
    rejected: Mapping[str, Mapping[str, int]]
    """Source collection → reason code → records the transform will not load (scaled)."""
    objects: list[ObjectEstimate]
    total: LoadCost
    extract_requests: int
    extract_seconds: float
    load_seconds: float
    allocation_days: float | None
    cutover_hours: float | None
    warnings: list[BudgetWarning]
    rollback_total: LoadCost
    rollback_seconds: float
    """Rolling the whole load back, at the pace the quotas allow (a day's wait per
    allocation it uses up, as for the load)."""
    delta_window_hours: float | None = None
    """``--delta-window``: the counts are the records changed in the last this many hours
    (what one ``crmlift delta`` cycle over such a window loads); None: the full load."""

    @property
    def total_seconds(self) -> float:
        return self.extract_seconds + self.load_seconds

    def to_json(self) -> bytes:
        """``estimate.json``: every figure above, for a runbook or a ticket."""
        data = {**asdict(self), "total_seconds": self.total_seconds}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)


async def run_estimate(plan: MigrationPlan, delta_window: timedelta | None = None) -> Estimate:
    """Read counts and samples from the plan's source and work out the load's budget; with
    ``delta_window``, a delta cycle's: the records changed in that last window, counted
    over ``[now - window, now)`` (the collections a delta reads whole, counted whole)."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: an estimate is a destination's")
    pair = pair_for(plan.destination.platform)  # an unknown platform fails before any call
    wanted = (*pair.load_order, *pair.needs, "custom_field_definitions")
    sampled = [c for c in dict.fromkeys(wanted) if c in plan.extract.collections]
    since: dict[str, datetime] = {}
    if delta_window is not None:
        start = datetime.now(UTC) - delta_window
        whole = {"users", "custom_field_definitions", *pair.needs}
        since = {c: start for c in plan.extract.collections if c not in whole}
    figures = await read_source(plan, sampled, since)
    if delta_window is None:
        return plan_estimate(plan, figures)
    # The whole collections a delta reads cost extraction calls but load nothing new.
    loaded = {c: n for c, n in figures.counts.items() if c in since}
    estimate = plan_estimate(plan, replace(figures, counts=loaded))
    return replace(
        estimate,
        counts=dict(figures.counts),
        extract_requests=extraction_requests(plan, figures.counts),
        delta_window_hours=delta_window.total_seconds() / 3600,
    )


async def read_source(
    plan: MigrationPlan, sampled: Sequence[str], since: Mapping[str, datetime] | None = None
) -> SourceFigures:
    """Count every collection the plan extracts (updated from ``since[c]`` where given,
    else all time) and read the first page of ``sampled``."""
    config = replace(plan.source, page_size=SAMPLE_RECORDS)
    client = BackDocketClient(config, Governor(plan.source_quota))
    start = since or {}
    async with client, asyncio.TaskGroup() as tg:
        counts = {
            c: tg.create_task(client.count(c, start.get(c, EPOCH), None), name=f"count:{c}")
            for c in plan.extract.collections
        }
        samples = {c: tg.create_task(_first_page(client, c), name=f"sample:{c}") for c in sampled}
    return SourceFigures(
        {c: t.result() for c, t in counts.items()}, {c: t.result() for c, t in samples.items()}
    )


async def _first_page(client: BackDocketClient, collection: str) -> list[Record]:
    pages = client.pages(Window(collection, EPOCH, None), None)
    try:
        page = await anext(pages, None)
    finally:
        if isinstance(pages, AsyncGenerator):
            await pages.aclose()
    return page.records if page is not None else []


def plan_estimate(plan: MigrationPlan, figures: SourceFigures) -> Estimate:
    """The budget from the source's figures; pure."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: an estimate is a destination's")
    destination = plan.destination
    pair = pair_for(destination.platform)
    budget = pair.budget
    batches = loader_batches(pair, figures.counts, destination)
    shares, rejected = split(pair, _context(pair, destination, figures), figures, batches)
    objects = _objects(shares, destination, budget)
    total = sum((o.cost for o in objects), LoadCost())
    extract_requests = extraction_requests(plan, figures.counts)
    extract_seconds = extract_requests / plan.source_quota.effective_rate
    loading = load_seconds(total, destination.quota, destination.config, budget)
    undoing = sum((o.rollback for o in objects), LoadCost())
    return Estimate(
        plan=plan.name,
        destination=destination.platform,
        counts=dict(figures.counts),
        rejected=rejected,
        objects=objects,
        total=total,
        extract_requests=extract_requests,
        extract_seconds=extract_seconds,
        load_seconds=loading,
        allocation_days=allocation_days(total, destination.quota, budget),
        cutover_hours=plan.cutover_hours,
        warnings=budget_warnings(
            total,
            destination.quota,
            budget,
            extract_seconds=extract_seconds,
            load_seconds=loading,
            cutover_hours=plan.cutover_hours,
        ),
        rollback_total=undoing,
        rollback_seconds=load_seconds(undoing, destination.quota, destination.config, budget),
    )


def loader_batches(
    pair: Pair, counts: Mapping[str, int], destination: DestinationSettings
) -> dict[str, int]:
    """Source records per loader batch, per collection: the loader's own rule
    (``level_batch_size``), which decides Collections vs Bulk."""
    settings = LoadSettings(destination.batch_records, destination.batches_in_flight)
    sizes: dict[str, int] = {}
    for level in dependency_levels(pair.load_order, pair.depends_on):
        size = level_batch_size(sum(counts.get(c, 0) for c in level), settings)
        sizes.update(dict.fromkeys(level, size))
    return sizes


def _context(
    pair: Pair, destination: DestinationSettings, figures: SourceFigures
) -> MappingContext:
    definitions: defaultdict[str, list[Record]] = defaultdict(list)
    for d in figures.samples.get("custom_field_definitions", ()):
        definitions[str(d.get("entity"))].append(d)
    needs = {c: figures.samples.get(c, ()) for c in pair.needs}
    return MappingContext(
        owners={},
        fallback_owner=PLACEHOLDER_OWNER,
        custom_fields={entity: tuple(rows) for entity, rows in definitions.items()},
        settings={**destination.mapping, **pair.context_settings(needs)},
    )


def split(
    pair: Pair, context: MappingContext, figures: SourceFigures, batches: Mapping[str, int]
) -> tuple[list[Share], dict[str, dict[str, int]]]:
    """Each loaded collection's sample through the transform, scaled to its count: the
    shares of destination objects, and the records the transform rejects, by reason."""
    shares = [
        Share(FIRST_PAYLOADS, obj, n, n)
        for obj, n in Counter(p.object for _, p in pair.first_payloads(PLACEHOLDER_OWNER)).items()
    ]
    rejected: dict[str, dict[str, int]] = {}
    for collection in pair.load_order:
        sample = figures.samples.get(collection, ())
        count = figures.counts.get(collection, 0)
        if not sample or not count:
            continue
        scale = count / len(sample)
        payloads: Counter[tuple[str, bool]] = Counter()
        deferred: Counter[tuple[str, bool]] = Counter()
        sizes: defaultdict[str, list[int]] = defaultdict(list)
        reasons: Counter[str] = Counter()
        for record in sample:
            result = pair.transform(collection, record, context)
            if isinstance(result, Rejection):
                reasons[result.code] += 1
                continue
            for p in result:
                key = (p.object, p.file is not None)
                payloads[key] += 1
                deferred[key] += bool(p.deferred_refs)
                if p.file is not None:
                    sizes[p.object].append(p.file.size_bytes)
        for (obj, has_files), n in payloads.items():
            shares.append(
                Share(
                    collection,
                    obj,
                    records=round(n * scale),
                    per_call=max(1, round(batches[collection] * n / len(sample))),
                    deferred=round(deferred[(obj, has_files)] * scale),
                    file_sizes=tuple(sizes[obj]) if has_files else None,
                )
            )
        if reasons:
            rejected[collection] = {code: round(n * scale) for code, n in reasons.items()}
    return shares, rejected


def share_cost(share: Share, config: Any, budget: PlatformBudget) -> LoadCost:
    """One share's writes, plus its second pass (one upsert of every deferred record)."""
    if share.file_sizes is not None:
        cost = budget.files(share.object, share.file_sizes, share.records, share.per_call, config)
    else:
        cost = budget.records(share.object, share.records, share.per_call, config)
    if share.deferred:
        cost += budget.records(share.object, share.deferred, share.deferred, config)
    return cost


def _objects(
    shares: Sequence[Share], destination: DestinationSettings, budget: PlatformBudget
) -> list[ObjectEstimate]:
    records: dict[str, int] = defaultdict(int)
    costs: dict[str, LoadCost] = defaultdict(LoadCost)
    for share in shares:
        records[share.object] += share.records
        costs[share.object] += share_cost(share, destination.config, budget)
    quota = destination.quota
    estimates = []
    for obj, cost in costs.items():
        undo = budget.rollback(obj, records[obj], delete_call_size(records[obj]),
                               destination.config)  # fmt: skip
        estimates.append(
            ObjectEstimate(
                object=obj,
                records=records[obj],
                cost=cost,
                seconds=budget.seconds(cost, quota, destination.config),
                daily_share=budget.daily_units(cost) / quota.daily_requests
                if quota.daily_requests
                else None,
                rollback=undo,
                rollback_seconds=budget.seconds(undo, quota, destination.config),
            )
        )
    return estimates


def extraction_requests(plan: MigrationPlan, counts: Mapping[str, int]) -> int:
    """Source calls to extract: every page at the plan's page size (at least one per
    collection), and one download per document when files are extracted."""
    pages = sum(max(1, math.ceil(counts.get(c, 0) / plan.source.page_size)) for c in counts)
    downloads = counts.get("documents", 0) if plan.extract.files else 0
    return pages + downloads
