"""What a load costs a destination, in the units its quotas count.

Each destination's ``costs`` module turns "write N records of this object" into
a :class:`LoadCost` by the same rules its client follows, so the budget planner
predicts the calls a run will make without making them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapters.base import pack


@dataclass(frozen=True, slots=True)
class LoadCost:
    """The quota units one load spends on a destination."""

    requests: int = 0
    """API calls (HTTP requests), as the platform's request limits count them."""
    operations: int = 0
    """Records written (Dataverse: operations inside ``$batch`` requests)."""
    bulk_jobs: int = 0
    """Asynchronous bulk jobs opened."""
    bulk_batches: int = 0
    """Bulk batches the platform counts against its daily batch allocation."""
    bulk_records: int = 0
    """Records sent through bulk jobs, against the daily bulk record allocation."""
    credits: int = 0
    """Credits, where a platform charges them per call (Zoho); 0 elsewhere."""

    def __add__(self, other: LoadCost) -> LoadCost:
        return LoadCost(
            self.requests + other.requests,
            self.operations + other.operations,
            self.bulk_jobs + other.bulk_jobs,
            self.bulk_batches + other.bulk_batches,
            self.bulk_records + other.bulk_records,
            self.credits + other.credits,
        )

    def __mul__(self, times: int) -> LoadCost:
        return LoadCost(
            self.requests * times,
            self.operations * times,
            self.bulk_jobs * times,
            self.bulk_batches * times,
            self.bulk_records * times,
            self.credits * times,
        )


def calls(records: int, per_call: int) -> list[tuple[int, int]]:
    """``records`` handed over ``per_call`` at a time, as (records in a call, how many
    such calls): the full calls, then the remainder."""
    if records <= 0:
        return []
    per_call = max(1, per_call)
    full, rest = divmod(records, per_call)
    return [(size, times) for size, times in ((per_call, full), (rest, 1)) if size and times]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def packed(sizes: Sequence[int], max_bytes: int, max_count: int) -> int:
    """How many requests carry files of ``sizes``, batched as the clients batch them."""
    return len(pack(sizes, int, max_bytes, max_count))


def cycled(sample: Sequence[int], count: int) -> list[int]:
    """``count`` file sizes drawn in turn from a sample: a batch of files like the sample."""
    if not sample:
        return []
    return [sample[i % len(sample)] for i in range(count)]
