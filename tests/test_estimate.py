"""Before a cutover, the operator asks what the load will cost the destination and how long
its quotas allow — and is warned when the run would not fit the day's allocation or the
cutover window.

The cost rules are checked against hand-counted calls; the planner runs against a
BackDocket simulator on loopback and its per-object split is checked against the
tenant's real one.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.costs import LoadCost
from adapters.dynamics import costs as dynamics
from adapters.dynamics.client import Application, DataverseConfig
from adapters.dynamics.keys import SHAREPOINT_FILES
from adapters.salesforce import costs as salesforce
from adapters.salesforce.client import SalesforceConfig
from adapters.secrets import Secret
from ratelimit.profiles import DYNAMICS
from service.budget import dataverse_seconds
from service.cli import main
from service.estimate import SAMPLE_RECORDS, run_estimate
from service.mapping.base import MappingContext, Rejection
from service.pairs import pair_for
from service.plan import MigrationPlan, parse_plan
from service.reports.estimate import estimate_table
from service.rollback import delete_call_size

MB = 1024 * 1024
SECRET_ENV = "CRMLIFT_TEST_ESTIMATE_SECRET"
ORG = SalesforceConfig("https://firm.my.salesforce.com", "crmlift", Secret("s3cret-x"))
ENVIRONMENT = DataverseConfig(
    "https://firm.crm.dynamics.com", "tenant", (Application("crmlift", Secret("s3cret-x")),)
)


# -- Salesforce: sObject Collections below the bulk threshold, Bulk API 2.0 above ---------


def test_a_small_object_goes_through_collections_200_to_a_call() -> None:
    # 450 Contacts in one loader batch: 200 + 200 + 50.
    assert salesforce.records_cost("Contact", 450, 2500, ORG) == LoadCost(
        requests=3, operations=450
    )


def test_a_large_object_goes_through_one_bulk_job_per_loader_batch() -> None:
    # 250,000 Contacts, 2,500 to a loader batch: 100 upserts, each at or above the
    # 2,000 threshold, so 100 Bulk jobs of one internal batch (≤10,000 records) each.
    # A job of 2,500 records processes in ~1.25 s: polls at 0, 0.2, 0.5, 0.95 and 1.625 s
    # (the client's schedule), so create + upload + close + 5 polls + 1 result file = 9.
    cost = salesforce.records_cost("Contact", 250_000, 2500, ORG)
    assert cost == LoadCost(
        requests=900, operations=250_000, bulk_jobs=100, bulk_batches=100, bulk_records=250_000
    )


def test_one_huge_upsert_is_split_into_jobs_of_100k_and_batches_of_10k() -> None:
    # A second pass of 250,000 records is one upsert: jobs of 100k, 100k and 50k records,
    # 10 + 10 + 5 internal batches; 23, 23 and 15 polls at the assumed processing speed.
    cost = salesforce.records_cost("Account", 250_000, 250_000, ORG)
    assert (cost.bulk_jobs, cost.bulk_batches) == (3, 25)
    assert cost.requests == (3 + 23 + 1) * 2 + (3 + 15 + 1)


def test_small_files_travel_inline_and_large_ones_one_upload_each() -> None:
    # 300 files of 1 MB: 8 fit the 8 MB of an inline create → 38 creates, after 2
    # lookups by external id (200 ids a query).
    assert salesforce.files_cost("ContentVersion", [MB], 300, 2500).requests == 2 + 38
    # 20 files of 30 MB: one multipart upload each, after one lookup.
    assert salesforce.files_cost("ContentVersion", [30 * MB], 20, 2500).requests == 1 + 20
    # A mix like the sample: three in four small, one in four large.
    mixed = salesforce.files_cost("ContentVersion", [MB, MB, MB, 30 * MB], 400, 2500)
    assert mixed.requests == 2 + 38 + 100


# -- Dataverse: $batch requests, each one request however many operations ------------------


def test_dataverse_writes_batch_size_operations_to_a_request() -> None:
    assert dynamics.records_cost("contact", 1000, 2500, ENVIRONMENT) == LoadCost(
        requests=10, operations=1000
    )
    # The loader's batch of 250 ends in a half-full $batch: 3 requests per batch.
    assert dynamics.records_cost("contact", 1000, 250, ENVIRONMENT).requests == 12


def test_annotations_are_ordinary_operations_packed_by_bytes() -> None:
    # 10 files of 1 MB: one lookup $batch, then 8 MB to a $batch → 2.
    assert dynamics.files_cost("annotation", [MB], 10, 2500, ENVIRONMENT) == LoadCost(
        requests=3, operations=10
    )


def test_the_per_user_window_time_halves_with_a_second_application_user() -> None:
    # 1,000 $batch requests of 100 operations: execution time binds, not requests —
    # 100,000 operations of 10 ms against the profile's share of 1,200,000 ms per 300 s window.
    cost = LoadCost(requests=1000, operations=100_000)
    one = dataverse_seconds(cost, DYNAMICS, ENVIRONMENT)
    assert one == pytest.approx(100_000 * 10 / (1_200_000 * DYNAMICS.utilization) * 300)
    pool = DataverseConfig(
        ENVIRONMENT.environment_url,
        "tenant",
        (*ENVIRONMENT.applications, Application("crmlift-2", Secret("s3cret-y"))),
    )
    assert dataverse_seconds(cost, DYNAMICS, pool) == pytest.approx(one / 2)


# -- the planner against a tenant on loopback ---------------------------------------------

DESTINATIONS: dict[str, dict[str, Any]] = {
    "salesforce": {
        "platform": "salesforce",
        "login_url": "https://firm.my.salesforce.com",
        "bulk_threshold": 2000,
    },
    "dynamics": {
        "platform": "dynamics",
        "environment_url": "https://firm.crm.dynamics.com",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "batch_size": 100,
    },
}


@pytest.fixture(scope="module")
async def source() -> AsyncIterator[tuple[Tenant, str]]:
    """A dirty tenant large enough that contacts, tasks and parties are only sampled."""
    tenant = generate_tenant(6000, seed=5, dirty=True)
    runner, url = await serve(BackDocketSim(tenant, SimSettings(rate=1000, burst=100)))
    try:
        yield tenant, url
    finally:
        await runner.cleanup()


def raw_plan(url: str, destination: str, **quota: Any) -> dict[str, Any]:
    return {
        "migration": {"name": "firm-cutover", "output_dir": "reports"},
        "source": {"platform": "backdocket", "base_url": url, "client_id": "crmlift",
                   "client_secret": {"env": SECRET_ENV}, "quota": {"rate": 1000, "burst": 100}},
        "destination": {**DESTINATIONS[destination], "client_id": "crmlift",
                        "client_secret": {"env": SECRET_ENV},
                        "fallback_owner_email": "admin@firm.example", "quota": quota},
    }  # fmt: skip


def plan_for(raw: dict[str, Any], tmp_path: Path) -> MigrationPlan:
    return parse_plan(raw, env={SECRET_ENV: "s3cret"}, base=tmp_path)


def true_split(tenant: Tenant, destination: str) -> tuple[Counter[str], dict[str, set[str]]]:
    """Every record of the tenant through the transform: records per object, and the
    collections each object is made from."""
    pair = pair_for(destination)
    definitions: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in tenant.records["custom_field_definitions"]:
        definitions[str(d["entity"])].append(d)
    context = MappingContext(
        owners={},
        fallback_owner="owner",
        custom_fields={k: tuple(v) for k, v in definitions.items()},
        settings=pair.context_settings(tenant.records),
    )
    objects = Counter(p.object for _, p in pair.first_payloads("owner"))
    sources: defaultdict[str, set[str]] = defaultdict(set)
    for collection in pair.load_order:
        for record in tenant.records[collection]:
            result = pair.transform(collection, record, context)
            if isinstance(result, Rejection):
                continue
            for payload in result:
                objects[payload.object] += 1
                sources[payload.object].add(collection)
    return objects, dict(sources)


@pytest.mark.parametrize("destination", sorted(DESTINATIONS))
async def test_the_estimate_splits_the_tenant_as_the_migration_would(
    source: tuple[Tenant, str], tmp_path: Path, destination: str
) -> None:
    tenant, url = source
    estimate = await run_estimate(plan_for(raw_plan(url, destination), tmp_path))

    assert estimate.counts == {c: len(rows) for c, rows in tenant.records.items()}
    truth, made_from = true_split(tenant, destination)
    estimated = {o.object: o.records for o in estimate.objects}
    assert set(estimated) == set(truth)
    for obj, records in truth.items():
        fully_read = all(len(tenant.records[c]) <= SAMPLE_RECORDS for c in made_from[obj])
        if fully_read:
            assert estimated[obj] == records, obj
        else:
            assert abs(estimated[obj] - records) <= 0.15 * records, (obj, estimated[obj], records)
    # Every object costs at least one call per record batch, and the totals add up.
    assert all(o.cost.requests >= 1 and o.cost.operations >= o.records for o in estimate.objects)
    assert estimate.total.requests == sum(o.cost.requests for o in estimate.objects)
    assert estimate.warnings == []


@pytest.mark.parametrize("destination", sorted(DESTINATIONS))
async def test_a_load_over_the_allocation_and_the_cutover_is_warned_about(
    source: tuple[Tenant, str], tmp_path: Path, destination: str
) -> None:
    _, url = source
    raw = raw_plan(url, destination, daily_requests=10)
    raw["migration"]["cutover_hours"] = 0.001
    estimate = await run_estimate(plan_for(raw, tmp_path))

    kinds = {w.kind for w in estimate.warnings}
    assert kinds == {"daily_requests", "cutover"}
    assert estimate.allocation_days is not None
    assert estimate.allocation_days > 1
    # Each allocation the load uses up costs a day's wait for the rolling window.
    assert estimate.load_seconds > 86_400
    daily = next(w for w in estimate.warnings if w.kind == "daily_requests")
    assert "raise [destination.quota] daily_requests" in daily.message


async def test_the_operator_runs_estimate_and_gets_a_table_json_and_warnings(
    source: tuple[Tenant, str], tmp_path: Path
) -> None:
    _, url = source
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f"""
[migration]
name = "firm-cutover"
output_dir = "reports"
cutover_hours = 0.0001

[source]
platform = "backdocket"
base_url = "{url}"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}

[source.quota]
rate = 1000
burst = 100

[destination]
platform = "salesforce"
login_url = "https://firm.my.salesforce.com"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
fallback_owner_email = "admin@firm.example"
bulk_threshold = 300

[destination.quota]
daily_requests = 10
"""
    )
    out = tmp_path / "estimate.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "estimate", "--plan", str(plan), "--out", str(out),
        env={**os.environ, SECRET_ENV: "s3cret"}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    text = stdout.decode()
    for word in ("Contact", "requests", "bulk batches", "total", "warning:", "cutover"):
        assert word in text
    data = orjson.loads(out.read_bytes())
    assert {w["kind"] for w in data["warnings"]} == {"daily_requests", "cutover"}
    contacts = next(o for o in data["objects"] if o["object"] == "Contact")
    # 1,500 contacts in loader batches of 500 (a small level splits finer), each at or
    # above the 300 threshold: three Bulk jobs of one internal batch each.
    assert contacts["cost"]["bulk_jobs"] == 3
    assert contacts["cost"]["bulk_batches"] == 3
    assert data["total"]["requests"] > 10


def test_an_estimate_needs_a_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        "[migration]", 'name = "firm-cutover"', "[source]", 'platform = "backdocket"',
        'base_url = "http://127.0.0.1:9"', 'client_id = "crmlift"',
        f'client_secret = {{ env = "{SECRET_ENV}" }}',
    ]  # fmt: skip
    plan = tmp_path / "plan.toml"
    plan.write_text("\n".join(lines) + "\n")
    os.environ.setdefault(SECRET_ENV, "s3cret")
    assert main(["estimate", "--plan", str(plan)]) == 2
    assert "no [destination] table" in capsys.readouterr().err


# -- the way back: what rolling the load back would cost -----------------------------------


def test_a_small_objects_rollback_is_a_conflict_check_and_a_delete_per_200() -> None:
    # 450 Contacts: calls of 200, 200 and 50 ids, each a LastModifiedDate query, a query of
    # the values the run wrote, and one Collections delete.
    assert delete_call_size(450) == 200
    assert salesforce.rollback_cost("Contact", 450, 200, ORG) == LoadCost(
        requests=9, operations=450
    )


def test_rolling_back_a_large_object_deletes_it_in_bulk_jobs_of_10k() -> None:
    # 25,000 Contacts: calls of 10,000, 10,000 and 5,000 ids. Each: twice ⌈n/200⌉
    # conflict-check queries (modified times and values: 100, 100, 50), then a Bulk
    # delete job: create + upload + close + polls + one result file. 10,000 ids process
    # in ~5 s: polls at 0, 0.2, 0.5, 0.95, 1.625, 2.64, 4.16 and 6.43 s = 8; 5,000 in
    # ~2.5 s: 6 polls.
    assert delete_call_size(25_000) == 10_000
    cost = salesforce.rollback_cost("Contact", 25_000, 10_000, ORG)
    assert cost == LoadCost(
        requests=2 * (100 + 3 + 8 + 1) + (50 + 3 + 6 + 1),
        operations=25_000,
        bulk_jobs=3,
        bulk_batches=3,
        bulk_records=25_000,
    )
    # The same Contacts one Collections delete per 200 would cost 250 + 125 calls.
    assert cost.requests < 375


def test_a_file_is_rolled_back_through_its_document_its_lookup_instead_of_values() -> None:
    assert salesforce.rollback_cost("ContentVersion", 300, 200, ORG) == LoadCost(
        requests=2 * 2 + 2, operations=300
    )


def test_dataverse_rollback_reads_modifiedon_then_deletes_batch_size_to_a_request() -> None:
    # 450 rows in calls of 200, 200, 50: each kind of In() read of a call (modifiedon, the
    # values) fits one $batch (100 ids a query, 100 queries a $batch); the deletes take
    # ⌈n/100⌉ $batch requests. A note is judged by its modifiedon alone.
    assert dynamics.rollback_cost("contact", 450, 200, ENVIRONMENT) == LoadCost(
        requests=(2 + 2) * 2 + (2 + 1), operations=450
    )
    assert dynamics.rollback_cost("annotation", 450, 200, ENVIRONMENT) == LoadCost(
        requests=(1 + 2) * 2 + (1 + 1), operations=450
    )
    assert dynamics.rollback_cost(SHAREPOINT_FILES, 40, 40, ENVIRONMENT) == LoadCost()


@pytest.mark.parametrize("destination", sorted(DESTINATIONS))
async def test_the_estimate_shows_what_rolling_the_load_back_would_cost(
    source: tuple[Tenant, str], tmp_path: Path, destination: str
) -> None:
    _, url = source
    estimate = await run_estimate(plan_for(raw_plan(url, destination), tmp_path))

    for o in estimate.objects:
        files = o.object == SHAREPOINT_FILES
        assert o.rollback.operations == (0 if files else o.records), o.object
        assert files or o.rollback.requests >= 1
    assert estimate.rollback_total == sum((o.rollback for o in estimate.objects), LoadCost())
    assert estimate.rollback_seconds > 0
    console = Console(width=200, record=True)
    console.print(estimate_table(estimate))
    text = console.export_text()
    assert text.index("rollback of this load") > text.index(f"estimate: {estimate.plan}")
    data = orjson.loads(estimate.to_json())
    assert data["rollback_total"]["operations"] == estimate.rollback_total.operations
