"""A rollback deletes a large object through Bulk API 2.0: ``hardDelete`` when the org's
admin granted "Bulk API Hard Delete", else ``delete`` (the Recycle Bin); every job is
journaled before its data, and a job a crash left behind is read back, never resent.

Salesforce behaviour (cited in adapters/salesforce/sim_bulk.py): Create a Job,
https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/create_job.htm
(``operation`` delete/hardDelete; hardDelete needs the permission, off by default);
Prepare CSV Files (a delete CSV holds only ``Id``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.base import WriteResult
from adapters.salesforce.client import SalesforceClient, SalesforceConfig
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.secrets import Secret
from adapters.simserver import ADMIN_HEADER
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import SALESFORCE
from service.mapping import backdocket_salesforce

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05)
KEY = "Source_System_ID__c"
THRESHOLD = 50


class Ledger:
    """Remembers the jobs a delete opened and uploaded, as the rollback journals them."""

    def __init__(self, crash_after_upload: bool = False) -> None:
        self.opened: list[tuple[str, str, int]] = []
        self.uploaded: list[str] = []
        self.crash_after_upload = crash_after_upload

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        self.opened.append((job_id, sobject, records))

    async def job_uploaded(self, job_id: str) -> None:
        self.uploaded.append(job_id)
        if self.crash_after_upload:
            raise Crash(f"the process dies with job {job_id} closed, its results unread")


class Crash(Exception):
    """The rollback process dies."""


@asynccontextmanager
async def org(
    hard_delete: bool = False,
) -> AsyncIterator[tuple[SalesforceSim, SalesforceClient, str]]:
    sim = SalesforceSim(
        backdocket_salesforce.schema_plan([]), SfSimSettings(bulk_api_hard_delete=hard_delete)
    )
    runner, url = await serve_salesforce(sim)
    config = SalesforceConfig(
        url, "crmlift", Secret("s3cret"), bulk_threshold=THRESHOLD, poll_interval=0.01
    )
    try:
        async with SalesforceClient(config, Governor(SALESFORCE), FAST) as client:
            yield sim, client, url
    finally:
        await runner.cleanup()


async def accounts(client: SalesforceClient, count: int) -> list[str]:
    first = len(await client.query("SELECT Id FROM Account"))
    rows = [{KEY: f"F-{first + n}", "Name": f"Firm {n}"} for n in range(count)]
    results = await client.upsert("Account", rows, Ledger())
    assert all(r.ok for r in results), results
    return [str(r.destination_id) for r in results]


def delete_jobs(sim: SalesforceSim) -> list[Any]:
    return [j for j in sim.bulk.jobs.values() if j.operation in ("delete", "hardDelete")]


def all_deleted_now(results: list[WriteResult], ids: list[str]) -> None:
    assert [r.external_id for r in results] == ids
    assert all(r.ok and r.created is False for r in results), results


async def test_without_the_hard_delete_permission_a_large_delete_is_one_recycle_bin_job() -> None:
    async with org() as (sim, client, _):
        ids, more = await accounts(client, 120), await accounts(client, 60)
        ledger = Ledger()
        creates = sim.stats.by_endpoint["POST /jobs/ingest"]

        results = await client.delete("Account", ids, ledger)

        all_deleted_now(results, ids)
        assert {r["Id"] for r in sim.records("Account")} == set(more)
        [job] = delete_jobs(sim)
        assert job.operation == "delete"
        assert ledger.opened == [(job.id, "Account", 120)]
        assert ledger.uploaded == [job.id]
        table = sim.org.table("Account")
        assert table is not None
        assert len(table.recycled) == 120
        assert await client.existing_ids("Account", ids) == set()
        # The org was asked for hardDelete once and refused; the client no longer asks.
        assert sim.stats.by_endpoint["POST /jobs/ingest"] == creates + 2
        all_deleted_now(await client.delete("Account", more, Ledger()), more)
        assert sim.records("Account") == []
        assert [j.operation for j in delete_jobs(sim)] == ["delete", "delete"]
        assert sim.stats.by_endpoint["POST /jobs/ingest"] == creates + 3


async def test_with_the_permission_granted_by_the_admin_records_skip_the_recycle_bin() -> None:
    async with org() as (sim, client, url):
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/_sim/permissions",
                json={"PermissionsBulkApiHardDelete": True},
                headers={ADMIN_HEADER: sim.settings.admin_token},
            ) as resp,
        ):
            assert resp.status == 200
        ids = await accounts(client, 80)

        results = await client.delete("Account", ids, Ledger())

        all_deleted_now(results, ids)
        [job] = delete_jobs(sim)
        assert job.operation == "hardDelete"
        table = sim.org.table("Account")
        assert table is not None
        assert table.recycled == {}
        assert sim.records("Account") == []


async def test_a_hard_delete_job_from_a_user_without_the_permission_is_refused_up_front() -> None:
    async with org() as (sim, client, url):
        token, _ = await client._login()
        body = {"object": "Account", "operation": "hardDelete", "contentType": "CSV"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/services/data/v59.0/jobs/ingest",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            answer = orjson.loads(await resp.read())
        assert resp.status == 400
        assert answer[0]["errorCode"] == "FEATURENOTENABLED"
        assert sim.bulk.jobs == {}


async def test_a_delete_job_whose_csv_carries_more_than_the_id_fails_and_deletes_nothing() -> None:
    async with org() as (sim, client, url):
        ids = await accounts(client, 3)
        token, _ = await client._login()
        auth = {"Authorization": f"Bearer {token}"}
        base = f"{url}/services/data/v59.0/jobs/ingest"
        csv = "Id,Name\n" + "".join(f"{i},x\n" for i in ids)
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(base, json={"object": "Account", "operation": "delete"}) as r:
                job_id = orjson.loads(await r.read())["id"]
            async with http.put(f"{base}/{job_id}/batches", data=csv.encode(),
                                headers={"Content-Type": "text/csv"}) as r:  # fmt: skip
                assert r.status == 201
            async with http.patch(f"{base}/{job_id}", json={"state": "UploadComplete"}) as r:
                assert r.status == 200
        results = await client._job_results(job_id, 3, key="Id")

        assert sim.bulk.jobs[job_id].state == "Failed"
        assert "only the Id column" in str(sim.bulk.jobs[job_id].error_message)
        assert len(sim.records("Account")) == 3
        assert all(r.error_code == "UNPROCESSED" for r in results)


async def test_a_delete_job_closed_before_a_crash_is_read_back_not_sent_again() -> None:
    async with org() as (sim, client, _):
        ids = await accounts(client, 90)
        ledger = Ledger(crash_after_upload=True)
        with pytest.raises(Crash):
            await client.delete("Account", ids, ledger)
        [(job_id, sobject, _)] = ledger.opened

        recovered = await client.recover(job_id, sobject, ids)

        assert recovered is not None
        all_deleted_now(sorted(recovered, key=lambda r: ids.index(r.external_id)), ids)
        assert len(delete_jobs(sim)) == 1
        # Deleting them again (a rollback that never journaled the recovery) is harmless.
        again = await client.delete("Account", ids, Ledger())
        assert all(r.ok and r.created is None for r in again)


async def test_a_delete_job_opened_but_never_uploaded_is_aborted_and_deletes_nothing() -> None:
    async with org() as (sim, client, _):
        ids = await accounts(client, 60)
        job_id = await client._open_delete_job("Account")

        assert await client.recover(job_id, "Account", ids) is None

        assert sim.bulk.jobs[job_id].state == "Aborted"
        assert len(sim.records("Account")) == 60


async def test_small_deletes_and_deletes_without_a_ledger_stay_on_collections() -> None:
    async with org() as (sim, client, _):
        ids = await accounts(client, 70)

        few = await client.delete("Account", ids[:10], Ledger())
        unjournaled = await client.delete("Account", ids[10:])

        all_deleted_now(few + unjournaled, ids)
        assert delete_jobs(sim) == []
        assert sim.stats.by_endpoint["DELETE /composite/sobjects"] == 2
