"""What a load costs a Salesforce org: API calls, Bulk API 2.0 jobs and batches.

Follows :class:`~adapters.salesforce.client.SalesforceClient` call for call: an
upsert of fewer than ``bulk_threshold`` records goes through sObject Collections,
a larger one through Bulk API 2.0 jobs; files travel inline in Collections
creates or one multipart upload each. Numbers from ../shared/platforms/destinations.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.costs import LoadCost, calls, ceil_div, cycled, packed
from adapters.salesforce.client import (
    BULK_RECORDS_PER_JOB,
    COLLECTION_LIMIT,
    INLINE_BATCH_BYTES,
    INLINE_FILE_BYTES,
    SOQL_IN_CHUNK,
    SalesforceConfig,
)

BULK_RECORDS_PER_BATCH = 10_000
"""Bulk API 2.0 splits a job into one internal batch per 10,000 records, and each
counts against the 15,000 batches per rolling 24 h (destinations.md §1.2)."""
BULK_JOB_CALLS = 3
"""Create the job, upload its CSV (one upload per job), close it (destinations.md §1.2
steps 1–3): REST calls, each counted against the daily allocation like any other (§1.6)."""
BULK_RESULT_FILES = 1
"""The client reads only result files that can hold rows: ``successfulResults`` when
nothing fails (§1.2 step 5); failures add a ``failedResults`` call."""
BULK_RECORDS_PER_SECOND = 2_000.0
"""Assumed Bulk processing speed, to count status polls. [INFER] Salesforce publishes
none; batches run in parallel, and jobs of a few thousand rows finish in seconds."""
NON_UNIQUE_EXTERNAL_ID_OBJECTS = frozenset({"Task", "Event"})
"""Activities: their source id cannot be a unique field, so before each upsert the client
looks the batch's ids up (⌈n/200⌉ SOQL queries) to refuse ids the org holds twice."""
POLL_GROWTH = 1.5
POLL_CAP_SECONDS = 3.0
"""The client's poll schedule: ``poll_interval``, growing by half each poll up to 3 s."""


def records_cost(sobject: str, records: int, per_call: int, config: SalesforceConfig) -> LoadCost:
    """Upserting ``records`` of ``sobject``, ``per_call`` to each ``upsert`` the loader makes.

    Below ``bulk_threshold`` a call is ⌈n/200⌉ sObject Collections requests (§1.5:
    ≤200 records each). At or above it, a Bulk API 2.0 job per ≤100,000 records
    (``BULK_RECORDS_PER_JOB``), each costing create + upload + close + polls +
    result files, and ⌈n/10,000⌉ internal batches (§1.2). Activities add the lookup of
    their source ids (``NON_UNIQUE_EXTERNAL_ID_OBJECTS``).
    """
    cost = LoadCost()
    for size, times in calls(records, per_call):
        cost += _upsert_call(size, config) * times
        if sobject in NON_UNIQUE_EXTERNAL_ID_OBJECTS:
            cost += LoadCost(requests=ceil_div(size, SOQL_IN_CHUNK)) * times
    return cost


def _upsert_call(size: int, config: SalesforceConfig) -> LoadCost:
    if size < config.bulk_threshold:
        return LoadCost(requests=ceil_div(size, COLLECTION_LIMIT), operations=size)
    cost = LoadCost()
    for job_size, times in calls(size, BULK_RECORDS_PER_JOB):
        requests = BULK_JOB_CALLS + polls(job_size, config.poll_interval) + BULK_RESULT_FILES
        job = LoadCost(
            requests=requests,
            operations=job_size,
            bulk_jobs=1,
            bulk_batches=ceil_div(job_size, BULK_RECORDS_PER_BATCH),
            bulk_records=job_size,
        )
        cost += job * times
    return cost


def polls(records: int, first_wait: float) -> int:
    """Status polls until a job of ``records`` is seen done: one at once, then one
    after each wait of the client's growing schedule until processing is over."""
    processing = records / BULK_RECORDS_PER_SECOND
    count, waited, wait = 1, 0.0, first_wait
    while waited < processing:
        waited += wait
        count += 1
        wait = min(POLL_CAP_SECONDS, wait * POLL_GROWTH)
    return count


def files_cost(sobject: str, sizes: Sequence[int], records: int, per_call: int) -> LoadCost:
    """Creating ``records`` files (ContentVersion) whose sizes are like ``sizes``.

    Per loader batch of ``per_call`` new files: a lookup by external id first
    (⌈n/200⌉ SOQL queries, so a retried upload never makes a second file), then files
    up to 4 MB inline in Collections creates of ≤200 files and ≤8 MB, larger ones one
    multipart upload each (§1.8: inline base64 ≤37.5 MB; multipart up to 2 GB).
    """
    small = [s for s in sizes if s <= INLINE_FILE_BYTES]
    large_share = (len(sizes) - len(small)) / len(sizes) if sizes else 0.0
    cost = LoadCost()
    for size, times in calls(records, per_call):
        large = round(size * large_share)
        inline = packed(cycled(small, size - large), INLINE_BATCH_BYTES, COLLECTION_LIMIT)
        lookups = ceil_div(size, SOQL_IN_CHUNK)
        cost += LoadCost(requests=lookups + inline + large, operations=size) * times
    return cost


def rollback_cost(sobject: str, records: int, per_call: int, config: SalesforceConfig) -> LoadCost:
    """Rolling back ``records`` of ``sobject`` the run created, ``per_call`` ids to each
    delete the rollback makes (``service.rollback.delete_call_size``).

    Per call: the conflict check reads LastModifiedDate and the values the run wrote
    (⌈n/200⌉ SOQL queries each); a file is judged by time alone but first looks up its
    ContentDocument (⌈n/200⌉ more), since a file goes by its document.
    A call larger than one Collections request carries a job ledger, and at or above
    ``bulk_threshold`` it is a Bulk API 2.0 delete job per ≤100,000 ids (create, upload,
    close, polls, results: as a load's job, §1.2); otherwise ⌈n/200⌉ Collections deletes
    (§1.5). The org's one refusal of ``hardDelete`` without the permission is not counted.
    """
    cost = LoadCost()
    for size, times in calls(records, per_call):
        reads = ceil_div(size, SOQL_IN_CHUNK) * 2
        if per_call > COLLECTION_LIMIT and size >= config.bulk_threshold:
            delete = _upsert_call(size, config)  # a delete job costs what an upsert job does
        else:
            delete = LoadCost(requests=ceil_div(size, COLLECTION_LIMIT), operations=size)
        cost += (LoadCost(requests=reads) + delete) * times
    return cost
