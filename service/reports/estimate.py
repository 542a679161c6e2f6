"""The estimate as the operator reads it: a table per destination object, totals, warnings."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from service.budget import duration
from service.estimate import Estimate

COLUMNS = ("object", "records", "requests", "operations", "bulk batches", "time")


def estimate_table(estimate: Estimate) -> Group:
    """The load's table, then what rolling it back would cost (``rollback_table``)."""
    return Group(load_table(estimate), rollback_table(estimate))


def load_table(estimate: Estimate) -> Table:
    """One row per destination object and the totals; times are what the quotas allow."""
    window = estimate.delta_window_hours
    what = "" if window is None else f" (a delta cycle over the last {window:g} h of changes)"
    table = Table(title=f"estimate: {estimate.plan} → {estimate.destination}{what}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "object" else "right")
    for o in estimate.objects:
        table.add_row(
            o.object, f"{o.records:,}", f"{o.cost.requests:,}", f"{o.cost.operations:,}",
            f"{o.cost.bulk_batches:,}", duration(o.seconds),
        )  # fmt: skip
    total = estimate.total
    table.add_row(
        "[bold]total", f"{sum(o.records for o in estimate.objects):,}", f"{total.requests:,}",
        f"{total.operations:,}", f"{total.bulk_batches:,}", duration(estimate.load_seconds),
    )  # fmt: skip
    return table


ROLLBACK_COLUMNS = ("object", "deletes", "requests", "bulk jobs", "bulk batches", "time")


def rollback_table(estimate: Estimate) -> Table:
    """What ``crmlift rollback`` of the load would cost, object by object: every record
    it creates deleted again (children first), after a conflict check per record."""
    table = Table(title="rollback of this load (if it had to be undone)")
    for column in ROLLBACK_COLUMNS:
        table.add_column(column, justify="left" if column == "object" else "right")
    for o in estimate.objects:
        undo = o.rollback
        table.add_row(
            o.object, f"{undo.operations:,}", f"{undo.requests:,}", f"{undo.bulk_jobs:,}",
            f"{undo.bulk_batches:,}", duration(o.rollback_seconds),
        )  # fmt: skip
    total = estimate.rollback_total
    table.add_row(
        "[bold]total", f"{total.operations:,}", f"{total.requests:,}", f"{total.bulk_jobs:,}",
        f"{total.bulk_batches:,}", duration(estimate.rollback_seconds),
    )  # fmt: skip
    return table


def estimate_lines(estimate: Estimate) -> list[str]:
    """The source side, the allocation, the total against the cutover, then every warning
    (plain text: print without markup, the advice names plan tables in brackets)."""
    lines = [
        f"source: {sum(estimate.counts.values()):,} records in {len(estimate.counts)} "
        f"collections; extraction {estimate.extract_requests:,} calls, "
        f"{duration(estimate.extract_seconds)}",
    ]
    if estimate.delta_window_hours is not None:
        lines.insert(0, f"delta window: the records changed in the last "
                        f"{estimate.delta_window_hours:g} h, priced as one `crmlift delta` cycle "
                        "(users, custom field definitions and the mapping's context "
                        "collections are read whole)")  # fmt: skip
    if estimate.allocation_days is not None:
        lines.append(
            f"daily allocation: {estimate.allocation_days:.0%} of one day's "
            f"({estimate.allocation_days:.2f} days)"
        )
    rejected = sum(n for reasons in estimate.rejected.values() for n in reasons.values())
    if rejected:
        lines.append(f"records the mapping will not load (by design or bad data): {rejected:,}")
    window = f" of the {estimate.cutover_hours:g} h cutover" if estimate.cutover_hours else ""
    lines.append(
        f"total: {duration(estimate.total_seconds)}{window} (the shortest the quotas allow)"
    )
    lines += [f"warning: {w.message}" for w in estimate.warnings]
    return lines
