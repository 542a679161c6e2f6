"""What a load costs a Dataverse environment: ``$batch`` requests and the operations in them.

Follows :class:`~adapters.dynamics.client.DataverseClient`: every write is a
``$batch`` of ``batch_size`` upserts, and a ``$batch`` counts as one request toward
the per-user window however many operations it holds, while each operation costs
server execution time and counts toward the 24 h entitlement
(../shared/platforms/destinations.md §2.5, §2.6).
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.costs import LoadCost, calls, ceil_div, cycled, packed
from adapters.dynamics.client import FILE_BATCH_BYTES, IN_CHUNK, DataverseConfig
from adapters.dynamics.keys import SHAREPOINT_FILES

ACTIVITY_TABLES = frozenset({"task", "appointment"})
"""The activity tables crmlift writes (EntityMetadata IsActivity true)."""


def records_cost(table: str, records: int, per_call: int, config: DataverseConfig) -> LoadCost:
    """Upserting ``records`` rows of ``table``, ``per_call`` to each ``upsert`` the loader
    makes: ⌈n/batch_size⌉ ``$batch`` requests per call (§2.3: ≤1,000 operations each),
    one operation per row."""
    requests = sum(
        times * ceil_div(size, config.batch_size) for size, times in calls(records, per_call)
    )
    if table in ACTIVITY_TABLES:
        # The client reads each chunk's current states first (a closed row is reopened
        # before it is written): one more ``$batch`` of GETs per chunk.
        return LoadCost(requests=2 * requests, operations=2 * records)
    return LoadCost(requests=requests, operations=records)


def files_cost(
    table: str, sizes: Sequence[int], records: int, per_call: int, config: DataverseConfig
) -> LoadCost:
    """Creating ``records`` annotations whose file sizes are like ``sizes``.

    Annotations are ordinary upserts with the content base64-encoded in
    ``documentbody`` (§2.9), ``batch_size`` and at most 8 MB of content to a ``$batch``.
    Per loader batch of new files, a lookup by alternate key comes first: GETs in
    ``$batch`` requests of ``batch_size``. Only the writes count as operations here;
    the lookups' reads are light next to a ``documentbody`` upload.
    """
    cost = LoadCost()
    if table == SHAREPOINT_FILES:
        # Uploaded through SharePoint's REST API: nothing counts toward the environment's
        # service protection or its 24 h entitlement (SharePoint throttles on its own).
        return cost
    for size, times in calls(records, per_call):
        lookups = ceil_div(size, config.batch_size)
        uploads = packed(cycled(sizes, size), FILE_BATCH_BYTES, config.batch_size)
        cost += LoadCost(requests=lookups + uploads, operations=size) * times
    return cost


def rollback_cost(table: str, records: int, per_call: int, config: DataverseConfig) -> LoadCost:
    """Rolling back ``records`` rows of ``table`` the run created, ``per_call`` ids to each
    delete the rollback makes: the conflict check's reads of ``modifiedon`` and of the values
    the run wrote (each one ``In`` query per ``IN_CHUNK`` ids, ``batch_size`` queries to a
    ``$batch``; a note is judged by time alone), then ``DELETE`` requests
    ``batch_size`` to a ``$batch`` (§2.3), one operation each. SharePoint files go to the
    site's Recycle Bin through SharePoint's API: nothing the environment counts."""
    if table == SHAREPOINT_FILES:
        return LoadCost()
    cost = LoadCost()
    for size, times in calls(records, per_call):
        reads = ceil_div(ceil_div(size, IN_CHUNK), config.batch_size)
        reads *= 1 if table == "annotation" else 2
        deletes = ceil_div(size, config.batch_size)
        cost += LoadCost(requests=reads + deletes, operations=size) * times
    return cost
