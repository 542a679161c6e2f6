"""Each destination's budget: what a load costs it, how long its quotas allow, and when
the load would overrun them.

Each pair carries its destination's rules (``Pair.budget``); the costs themselves are
platform facts and live beside each client (``adapters/*/costs.py``).
Times are the shortest the quotas allow: latency and server processing come on top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapters.costs import LoadCost
from adapters.dynamics import costs as dynamics
from adapters.salesforce import costs as salesforce
from ratelimit.profiles import QuotaProfile
from service.plan import dataverse_config, salesforce_config

DAY_SECONDS = 86_400.0

WarningKind = Literal["daily_requests", "daily_bulk_batches", "daily_bulk_records", "cutover"]


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    """The load would overrun an allocation or the cutover window; the run still works."""

    kind: WarningKind
    message: str
    """What is exceeded, by how much, and what to change."""
    needed: float
    allowed: float


@dataclass(frozen=True, slots=True)
class PlatformBudget:
    """One destination's cost rules, quota arithmetic and advice."""

    records: Callable[[str, int, int, Any], LoadCost]
    """(object, records, records per upsert call, config) → cost."""
    files: Callable[[str, Sequence[int], int, int, Any], LoadCost]
    """(object, sample of file sizes, files, files per loader batch, config) → cost."""
    rollback: Callable[[str, int, int, Any], LoadCost]
    """(object, records the run created, ids per rollback delete call, config) → what
    deleting them again costs (``crmlift rollback``)."""
    seconds: Callable[[LoadCost, QuotaProfile, Any], float]
    """Shortest time the destination's rate or windows allow for a cost."""
    daily_units: Callable[[LoadCost], int]
    """What the 24 h allocation (``daily_requests``) counts."""
    daily_unit: str
    speedup: str
    """What an operator changes when the load takes longer than the cutover allows."""


def salesforce_seconds(cost: LoadCost, quota: QuotaProfile, config: Any) -> float:
    """Calls at the governor's pace (Salesforce sets no per-second limit, destinations.md
    §1.6; the daily allocation is checked separately)."""
    return cost.requests / quota.effective_rate


def dataverse_seconds(cost: LoadCost, quota: QuotaProfile, config: Any) -> float:
    """The per-user windows (§2.5): requests against ``window_requests``, operations'
    execution time against ``window_execution_ms``, whichever binds, shared by the pool of
    application users (each has its own window)."""
    users = len(dataverse_config(config).applications)
    if not (quota.window_seconds and quota.window_requests and quota.window_execution_ms):
        return cost.requests / (quota.effective_rate * users)
    by_requests = cost.requests / (quota.window_requests * quota.utilization)
    by_time = (
        cost.operations
        * quota.execution_ms_per_operation
        / (quota.window_execution_ms * quota.utilization)
    )
    return max(by_requests, by_time) * quota.window_seconds / users


SALESFORCE = PlatformBudget(
    records=lambda o, n, per, c: salesforce.records_cost(o, n, per, salesforce_config(c)),
    files=lambda o, sizes, n, per, c: salesforce.files_cost(o, sizes, n, per),
    rollback=lambda o, n, per, c: salesforce.rollback_cost(o, n, per, salesforce_config(c)),
    seconds=salesforce_seconds,
    daily_units=lambda cost: cost.requests,
    daily_unit="API calls",
    speedup="raise the org's allocation ([destination.quota] daily_requests: licences or "
    "API add-ons) or send more objects through Bulk API 2.0 (lower bulk_threshold)",
)

DYNAMICS = PlatformBudget(
    records=lambda o, n, per, c: dynamics.records_cost(o, n, per, dataverse_config(c)),
    files=lambda o, sizes, n, per, c: dynamics.files_cost(o, sizes, n, per, dataverse_config(c)),
    rollback=lambda o, n, per, c: dynamics.rollback_cost(o, n, per, dataverse_config(c)),
    seconds=dataverse_seconds,
    # The 24 h Power Platform entitlement counts every operation inside a $batch (§2.6).
    daily_units=lambda cost: cost.operations,
    daily_unit="operations (Power Platform requests)",
    speedup="add application users ([[destination.applications]]: each brings its own "
    "service protection window)",
)


def allocation_days(cost: LoadCost, quota: QuotaProfile, budget: PlatformBudget) -> float | None:
    """Days of the destination's 24 h allocations the load needs (the largest share of
    requests, Bulk batches and Bulk records); None when the platform counts none."""
    shares = [
        used / allowed
        for used, allowed in (
            (budget.daily_units(cost), quota.daily_requests),
            (cost.bulk_batches, quota.daily_bulk_batches),
            (cost.bulk_records, quota.daily_bulk_records),
        )
        if allowed
    ]
    return max(shares) if shares else None


def load_seconds(cost: LoadCost, quota: QuotaProfile, config: Any, budget: PlatformBudget) -> float:
    """The whole load: its pace, plus a day's wait for each allocation it uses up (the
    allocations roll over 24 h)."""
    days = allocation_days(cost, quota, budget) or 0.0
    return budget.seconds(cost, quota, config) + max(0, math.ceil(days) - 1) * DAY_SECONDS


def budget_warnings(
    cost: LoadCost,
    quota: QuotaProfile,
    budget: PlatformBudget,
    *,
    extract_seconds: float,
    load_seconds: float,
    cutover_hours: float | None,
) -> list[BudgetWarning]:
    """Every allocation the load would exceed, and the cutover window if it overruns it."""
    found: list[BudgetWarning] = []
    units = budget.daily_units(cost)
    if quota.daily_requests and units > quota.daily_requests:
        days = units / quota.daily_requests
        found.append(
            BudgetWarning(
                "daily_requests",
                f"the load needs {units:,} {budget.daily_unit}, {days:.1f} days of the "
                f"destination's {quota.daily_requests:,} per 24 h: raise [destination.quota] "
                f"daily_requests to at least {units:,} or load it over {math.ceil(days)} days",
                units,
                quota.daily_requests,
            )
        )
    bulk: list[tuple[WarningKind, int, int | None, str]] = [
        ("daily_bulk_batches", cost.bulk_batches, quota.daily_bulk_batches, "Bulk batches"),
        ("daily_bulk_records", cost.bulk_records, quota.daily_bulk_records, "Bulk records"),
    ]
    for kind, used, allowed, what in bulk:
        if allowed and used > allowed:
            found.append(
                BudgetWarning(
                    kind,
                    f"the load needs {used:,} {what}, over the {allowed:,} allowed per 24 h: "
                    f"it spreads over {math.ceil(used / allowed)} days unless the allocation "
                    "is raised",
                    used,
                    allowed,
                )
            )
    total = extract_seconds + load_seconds
    if cutover_hours is not None and total > cutover_hours * 3600:
        found.append(
            BudgetWarning(
                "cutover",
                f"the estimated {duration(total)} (extraction {duration(extract_seconds)}, "
                f"load {duration(load_seconds)}) exceeds the {cutover_hours:g} h cutover "
                f"window: {budget.speedup}, or move the cutover",
                total / 3600,
                cutover_hours,
            )
        )
    return found


def duration(seconds: float) -> str:
    """``42 s``, ``7.5 min``, ``3.2 h``, ``1.4 d``: a time an operator reads at a glance."""
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_SECONDS:.1f} d"
