"""What rollback asks of a destination: delete what a run created, and tell whether a
record changed since crmlift wrote it.

The operator rolls back a run: each record the run created is deleted, a rollback that
crashed and runs again deletes the same records again without failing, and a record
someone edited after the run is found by its last-modified time. Both destinations, each
against its simulator over loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from adapters.base import WriteResult
from adapters.dynamics.client import Application, DataverseClient, DataverseConfig
from adapters.dynamics.keys import SHAREPOINT_FILES
from adapters.dynamics.sharepoint import SharePointConfig
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.salesforce.client import SalesforceClient, SalesforceConfig
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.secrets import Secret
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import DYNAMICS, SALESFORCE
from service.mapping import backdocket_dynamics, backdocket_salesforce

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05)
SF_KEY = "Source_System_ID__c"
DV_KEY = "crm_sourceid"
SITE = "https://hartwell.sharepoint.com/sites/matters"
MISSING_SF_ID = "001000000000001AAA"
MISSING_DV_ID = "00000000-0000-4000-8000-000000000001"


class Ledger:
    """Jobs are not journaled here."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        return None

    async def job_uploaded(self, job_id: str) -> None:
        return None


def firms(key: str, name: str, count: int) -> list[dict[str, Any]]:
    return [{key: f"F-{n}", name: f"Firm {n}"} for n in range(count)]


def created_ids(results: list[WriteResult]) -> list[str]:
    assert all(r.ok for r in results), results
    return [str(r.destination_id) for r in results]


def now_ms() -> datetime:
    """Now, at the millisecond the platforms stamp with."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@asynccontextmanager
async def salesforce() -> AsyncIterator[tuple[SalesforceSim, SalesforceClient]]:
    sim = SalesforceSim(backdocket_salesforce.schema_plan([]), SfSimSettings())
    runner, url = await serve_salesforce(sim)
    config = SalesforceConfig(url, "crmlift", Secret("s3cret"), poll_interval=0.01)
    try:
        async with SalesforceClient(config, Governor(SALESFORCE), FAST) as client:
            yield sim, client
    finally:
        await runner.cleanup()


@asynccontextmanager
async def dataverse() -> AsyncIterator[tuple[DataverseSim, DataverseClient]]:
    settings = DataverseSimSettings(sharepoint_site=SITE)
    sim = DataverseSim(backdocket_dynamics.schema_plan([]), settings)
    runner, url = await serve_dataverse(sim)
    config = DataverseConfig(
        environment_url=settings.org_url,
        tenant_id=settings.tenant_id,
        applications=(Application(settings.client_id, Secret(settings.client_secret)),),
        api_url=url,
        authority_url=url,
        sharepoint=SharePointConfig(SITE, api_url=url),
    )
    try:
        async with DataverseClient(config, DYNAMICS, FAST) as client:
            yield sim, client
    finally:
        await runner.cleanup()


# -- Salesforce ------------------------------------------------------------------------


async def test_salesforce_rollback_deletes_created_records_and_a_second_delete_succeeds() -> None:
    """Collections DELETE (developer.salesforce.com/docs/platform/api-rest/guide/
    resources-composite-sobjects-collections-delete.html): the second delete answers
    ENTITY_IS_DELETED (the record is in the Recycle Bin), which is no failure."""
    async with salesforce() as (sim, client):
        ids = created_ids(await client.upsert("Account", firms(SF_KEY, "Name", 3), Ledger()))
        first = await client.delete("Account", ids)
        assert [(r.external_id, r.ok, r.created) for r in first] == [(i, True, False) for i in ids]
        again = await client.delete("Account", ids)
        assert [(r.external_id, r.ok, r.created) for r in again] == [(i, True, None) for i in ids]
        assert sim.records("Account") == []
        assert await client.existing_ids("Account", ids) == set()


async def test_salesforce_delete_over_200_ids_goes_in_several_calls() -> None:
    """A Collections call takes at most 200 ids; more would be refused whole."""
    async with salesforce() as (sim, client):
        ids = created_ids(await client.upsert("Account", firms(SF_KEY, "Name", 205), Ledger()))
        results = await client.delete("Account", ids)
        assert len(results) == 205
        assert all(r.ok for r in results)
        assert sim.records("Account") == []


async def test_salesforce_an_id_purged_from_the_recycle_bin_counts_as_gone() -> None:
    """An id the org no longer knows answers INVALID_CROSS_REFERENCE_KEY; the client
    confirms by SOQL that the object does not list it before calling it gone."""
    async with salesforce() as (_, client):
        [result] = await client.delete("Account", [MISSING_SF_ID])
        assert (result.ok, result.created) == (True, None)


async def test_salesforce_modified_reflects_a_later_write_and_leaves_out_missing_ids() -> None:
    async with salesforce() as (_, client):
        [first] = created_ids(await client.upsert("Account", firms(SF_KEY, "Name", 1), Ledger()))
        [other] = created_ids(
            await client.upsert("Account", [{SF_KEY: "F-9", "Name": "Firm 9"}], Ledger())
        )
        before = await client.modified("Account", [first, MISSING_SF_ID])
        assert set(before) == {first}
        await asyncio.sleep(0.01)  # the stamps are in milliseconds: tell the writes apart
        edited_from = now_ms()
        await client.upsert("Account", [{SF_KEY: "F-0", "Name": "Firm 0 (edited)"}], Ledger())
        after = await client.modified("Account", [first, other])
        assert after[first] >= edited_from > before[first]
        assert after[other] < edited_from
        await client.delete("Account", [other])
        assert set(await client.modified("Account", [first, other])) == {first}


# -- Dataverse -------------------------------------------------------------------------


async def test_dataverse_rollback_deletes_created_rows_and_a_second_delete_succeeds() -> None:
    """``$batch`` DELETE per row (learn.microsoft.com/power-apps/developer/data-platform/
    webapi/update-delete-entities-using-web-api#basic-delete): a row already gone answers
    404, which is no failure for a rollback that runs again."""
    async with dataverse() as (sim, client):
        ids = created_ids(await client.upsert("account", firms(DV_KEY, "name", 3), Ledger()))
        first = await client.delete("account", ids)
        assert [(r.external_id, r.ok, r.created) for r in first] == [(i, True, False) for i in ids]
        again = await client.delete("account", ids)
        assert [(r.external_id, r.ok, r.created) for r in again] == [(i, True, None) for i in ids]
        assert sim.records("accounts") == []
        assert await client.existing_ids("account", ids) == set()


async def test_dataverse_modified_reflects_a_later_write_and_leaves_out_missing_ids() -> None:
    async with dataverse() as (_, client):
        [first, other] = created_ids(
            await client.upsert("account", firms(DV_KEY, "name", 2), Ledger())
        )
        before = await client.modified("account", [first, MISSING_DV_ID])
        assert set(before) == {first}
        await asyncio.sleep(1.1)  # modifiedon is kept to the second: tell the writes apart
        edited_from = datetime.now(UTC).replace(microsecond=0)
        await client.upsert("account", [{DV_KEY: "F-0", "name": "Firm 0 (edited)"}], Ledger())
        after = await client.modified("account", [first, other])
        assert after[first] >= edited_from > before[first]
        assert after[other] < edited_from
        await client.delete("account", [other])
        assert set(await client.modified("account", [first, other])) == {first}


async def test_dataverse_sharepoint_files_go_to_the_recycle_bin_once() -> None:
    """SP.File.recycle (learn.microsoft.com/previous-versions/office/sharepoint-visio/
    jj245789(v=office.15)); a file already gone answers 404 FileNotFoundException."""
    async with dataverse() as (sim, client):
        assert sim.sharepoint is not None
        folder = sim.sharepoint.add_library("account") + "/Firm 0"
        sim.sharepoint.add_folder(folder)
        url = sim.sharepoint.add_file(folder, "engagement.pdf", b"%PDF", True).server_relative_url
        [first] = await client.delete(SHAREPOINT_FILES, [url])
        assert (first.ok, first.created) == (True, False)
        [again] = await client.delete(SHAREPOINT_FILES, [url])
        assert (again.ok, again.created) == (True, None)
        assert sim.sharepoint_files() == {}
        assert [f.server_relative_url for f in sim.sharepoint.recycle_bin.values()] == [url]
        assert await client.modified(SHAREPOINT_FILES, [url]) == {}


async def test_dataverse_reads_a_sharepoint_files_size_and_finds_a_recycled_one_gone() -> None:
    """SP.File ``Length`` through ``GET GetFileByServerRelativeUrl('<url>')``
    (learn.microsoft.com/sharepoint/dev/sp-add-ins/working-with-folders-and-files-with-rest),
    which reconcile compares with the blob it uploaded."""
    async with dataverse() as (sim, client):
        assert sim.sharepoint is not None
        folder = sim.sharepoint.add_library("account") + "/Firm 1"
        sim.sharepoint.add_folder(folder)
        kept = sim.sharepoint.add_file(folder, "brief.pdf", b"%PDF-1.7 brief", True)
        gone = sim.sharepoint.add_file(folder, "draft.pdf", b"%PDF", True)
        sim.sharepoint.recycle_file(gone.server_relative_url)
        urls = [kept.server_relative_url, gone.server_relative_url]
        facts = await client.file_facts(SHAREPOINT_FILES, urls)
        assert {u: f.size_bytes for u, f in facts.items()} == {kept.server_relative_url: 14}
