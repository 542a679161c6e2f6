"""Each client against its simulator, one fault at a time, scripted.

A transient per-record error is retried, not journaled as a failure; a write whose
answer was lost is not reported as an update of a record it created; a file create
refused with a 5xx is looked up before it is sent again; a call that waits out
throttles for longer than a token lives still goes through. The fault RNG is replaced
by a script, so each test sees exactly the faults it names, in order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.backdocket.client import BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import BackDocketSim, SimSettings
from adapters.backdocket.sim import serve as serve_backdocket
from adapters.backdocket.tenant import generate_tenant
from adapters.base import FileUpload, WriteResult
from adapters.dynamics.client import Application, DataverseClient, DataverseConfig
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.errors import AuthError
from adapters.salesforce.client import SalesforceClient, SalesforceConfig
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.secrets import Secret
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import BACKDOCKET, DYNAMICS, SALESFORCE
from service.mapping import backdocket_dynamics, backdocket_salesforce

FAST = RetryPolicy(attempts=8, base=0.01, cap=0.05)
NEVER = 0.999
"""A draw above every rate these tests set: no fault."""


class Script(random.Random):
    """A fault RNG that draws the given values, then never a fault."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else NEVER


class Ledger:
    """Bulk jobs are not journaled here."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        return None

    async def job_uploaded(self, job_id: str) -> None:
        return None


def accounts(prefix: str, count: int, key: str, name: str) -> list[dict[str, Any]]:
    return [{key: f"{prefix}-{n}", name: f"Firm {prefix} {n}"} for n in range(count)]


@asynccontextmanager
async def salesforce(
    bulk_threshold: int = 2000, **faults: Any
) -> AsyncIterator[tuple[SalesforceSim, SalesforceClient]]:
    sim = SalesforceSim(backdocket_salesforce.schema_plan([]), SfSimSettings(**faults))
    sim._fault_rng = Script()
    runner, url = await serve_salesforce(sim)
    config = SalesforceConfig(
        url, "crmlift", Secret("s3cret"), bulk_threshold=bulk_threshold, poll_interval=0.01
    )
    try:
        async with SalesforceClient(config, Governor(SALESFORCE), FAST) as client:
            yield sim, client
    finally:
        await runner.cleanup()


def stored_keys(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["Source_System_ID__c"]) for r in rows)


def stored(sim: SalesforceSim, sobject: str = "Account") -> list[str]:
    return sorted(str(r["Source_System_ID__c"]) for r in sim.records(sobject))


def lock_rows(sim: SalesforceSim, *positions: int) -> list[int]:
    """Lock the rows written at these positions (0: the first row written, counting every
    row of every Collections call and Bulk job); the list fills as they are refused."""
    written = itertools.count()
    refused: list[int] = []

    def row_locked() -> bool:
        position = next(written)
        if position in positions:
            refused.append(position)
        return position in positions

    sim.rest.row_locked = sim.bulk.row_locked = row_locked
    return refused


@pytest.mark.parametrize("bulk_threshold", [2000, 10], ids=["collections", "bulk"])
async def test_salesforce_upserts_locked_rows_again_instead_of_failing_them(
    bulk_threshold: int,
) -> None:
    async with salesforce(bulk_threshold) as (sim, client):
        refused = lock_rows(sim, 2, 5, 17)
        rows = accounts("A", 30, "Source_System_ID__c", "Name")
        results = await client.upsert("Account", rows, Ledger())
        assert refused == [2, 5, 17]
        assert sorted(r.external_id for r in results) == stored_keys(rows)
        assert all(r.ok and r.created is True for r in results), results
        assert stored(sim) == stored_keys(rows)


async def test_salesforce_a_row_locked_on_every_try_fails_with_the_platforms_reason() -> None:
    async with salesforce() as (sim, client):
        refused = lock_rows(sim, *range(100))
        [result] = await client.upsert(
            "Account", accounts("A", 1, "Source_System_ID__c", "Name"), Ledger()
        )
        assert (result.ok, result.error_code) == (False, "UNABLE_TO_LOCK_ROW")
        assert len(refused) == FAST.attempts
        assert stored(sim) == []


async def test_salesforce_a_session_that_expires_at_every_retry_is_renewed_each_time() -> None:
    """Each back-off outlasts the session: every retry meets an expired session, renews
    it without spending a retry, and the call still has all its tries for the 500s."""
    async with salesforce(fault_500_rate=0.3, token_ttl=0.1) as (sim, client):
        client.policy = RetryPolicy(attempts=4, base=0.15, cap=0.15)
        client._rng = Script()  # every back-off near its ceiling, 0.15 s
        await client.describe("Account")  # the upsert checks values against it: read it first
        sim._fault_rng = Script(0.0, 0.0, 0.0)  # three 500s, then the call goes through
        [result] = await client.upsert(
            "Account", accounts("A", 1, "Source_System_ID__c", "Name"), Ledger()
        )
        assert result.ok
        assert (sim.stats.faults_500, sim.stats.sessions_expired) == (3, 3)


async def test_salesforce_a_lost_answer_is_not_reported_as_updating_what_it_created() -> None:
    async with salesforce(fault_reset_after_write_rate=0.5) as (sim, client):
        rows = accounts("A", 5, "Source_System_ID__c", "Name")
        await client.describe("Account")  # the upsert checks values against it: read it first
        sim._fault_rng = Script(0.0)  # the first upsert lands; its answer is cut
        lost = await client.upsert("Account", rows, Ledger())
        assert sim.stats.faults_reset_after_write == 1
        # The retry found them existing: the platform cannot say who created them.
        assert all(r.ok and r.created is None for r in lost), lost
        assert stored(sim) == [f"A-{n}" for n in range(5)]
        # Without a lost answer, an update is an update.
        again = await client.upsert("Account", rows, Ledger())
        assert all(r.ok and r.created is False for r in again), again


async def test_salesforce_a_lost_create_is_not_sent_again_with_its_create_only_fields() -> None:
    """The retry of a create whose answer was lost updates our own record, and a real org
    refuses AccountContactRelation's AccountId and ContactId on an update
    (INVALID_FIELD_FOR_INSERT_UPDATE; Object Reference: createable, not updateable)."""
    async with salesforce(fault_reset_after_write_rate=0.5) as (sim, client):
        [account] = await client.upsert(
            "Account", accounts("A", 1, "Source_System_ID__c", "Name"), Ledger()
        )
        [contact] = await client.upsert(
            "Contact", [{"Source_System_ID__c": "C-0", "LastName": "Okafor"}], Ledger()
        )
        relation = {"Source_System_ID__c": "R-0", "AccountId": account.destination_id,
                    "ContactId": contact.destination_id, "Roles": "Client"}  # fmt: skip
        await client.describe("AccountContactRelation")
        sim._fault_rng = Script(0.0)  # the relation is created; the answer is cut
        [result] = await client.upsert("AccountContactRelation", [relation], Ledger())
        assert sim.stats.faults_reset_after_write == 1
        assert result.ok, result
        assert result.created is None  # the id map tells: it was not there before
        [stored] = sim.records("AccountContactRelation")
        assert stored["AccountId"] == account.destination_id


async def test_salesforce_a_file_create_refused_with_a_5xx_is_looked_up_then_sent_again(
    tmp_path: Path,
) -> None:
    content = tmp_path / "letter.txt"
    content.write_bytes(b"Dear client")
    uploads = [
        FileUpload(
            {"Source_System_ID__c": f"doc-{n}", "Title": f"Letter {n}", "PathOnClient": "l.txt"},
            content, "l.txt", "text/plain", content.stat().st_size,
        )
        for n in range(3)
    ]  # fmt: skip
    async with salesforce(fault_500_rate=0.3, fault_reset_after_write_rate=0.3) as (sim, client):
        # A 500 before anything was written, then a create whose answer is lost.
        sim._fault_rng = Script(0.0, NEVER, 0.5)
        results = await client.upload_files("ContentVersion", uploads)
        assert (sim.stats.faults_500, sim.stats.faults_reset_after_write) == (1, 1)
        assert all(r.ok for r in results), results
        assert stored(sim, "ContentVersion") == ["doc-0", "doc-1", "doc-2"]


async def test_backdocket_a_token_that_expires_twice_in_one_call_is_renewed_twice() -> None:
    """Each 503 asks for a wait longer than the token lives: the call meets an expired
    token after each, and renews it each time instead of calling the credentials bad."""
    settings = SimSettings(token_ttl=0.2, fault_503_rate=0.5, fault_retry_after=0.3)
    sim = BackDocketSim(generate_tenant(30, seed=1), settings)
    sim._fault_rng = Script(0.0, 0.0, NEVER)
    runner, url = await serve_backdocket(sim)
    config = BackDocketConfig(url, "crmlift", Secret("s3cret"))
    try:
        async with BackDocketClient(config, Governor(BACKDOCKET), FAST) as client:
            assert await client.first_updated_at("users") is not None
    finally:
        await runner.cleanup()
    assert (sim.stats.faults_503, sim.stats.unauthorized, sim.stats.tokens_issued) == (2, 2, 3)


@asynccontextmanager
async def dataverse(**faults: Any) -> AsyncIterator[tuple[DataverseSim, DataverseClient]]:
    settings = DataverseSimSettings(**faults)
    sim = DataverseSim(backdocket_dynamics.schema_plan([]), settings)
    sim._fault_rng = Script()
    runner, url = await serve_dataverse(sim)
    config = DataverseConfig(
        environment_url=settings.org_url,
        tenant_id=settings.tenant_id,
        applications=(Application(settings.client_id, Secret(settings.client_secret)),),
        api_url=url,
        authority_url=url,
    )
    try:
        async with DataverseClient(config, DYNAMICS, FAST) as client:
            assert await client.describe("account") is not None
            yield sim, client
    finally:
        await runner.cleanup()


def sources(results: list[WriteResult]) -> list[str]:
    return sorted(r.external_id for r in results)


async def test_dataverse_a_lost_batch_answer_is_not_reported_as_updating_what_it_created() -> None:
    async with dataverse(fault_reset_rate=0.5) as (sim, client):
        rows = accounts("A", 5, "crm_sourceid", "name")
        sim._fault_rng = Script(0.0)  # the first $batch is carried out; its answer is cut
        lost = await client.upsert("account", rows, Ledger())
        assert sim.stats.faults_reset == 1
        assert all(r.ok and r.created is None for r in lost), lost
        assert sources(lost) == [f"A-{n}" for n in range(5)]
        assert len(sim.records("accounts")) == 5
        again = await client.upsert("account", rows, Ledger())
        assert all(r.ok and r.created is False for r in again), again


async def test_dataverse_a_lost_create_is_not_sent_again_with_overriddencreatedon() -> None:
    """The retry of a lost create updates our own row, and overriddencreatedon is valid
    on create only (attribute metadata: IsValidForUpdate false; Dataverse refuses it on
    update): the retry leaves it out, and the row keeps the date the create set."""
    async with dataverse(fault_reset_rate=0.5) as (sim, client):
        rows = [{**row, "overriddencreatedon": "2019-03-04T05:06:07Z"}
                for row in accounts("A", 3, "crm_sourceid", "name")]  # fmt: skip
        sim._fault_rng = Script(0.0)  # the first $batch is carried out; its answer is cut
        results = await client.upsert("account", rows, Ledger())
        assert sim.stats.faults_reset == 1
        assert all(r.ok and r.created is None for r in results), results
        assert {r["createdon"] for r in sim.records("accounts")} == {"2019-03-04T05:06:07Z"}


async def test_dataverse_a_changeset_rolled_back_is_sent_again_and_created() -> None:
    async with dataverse(fault_part_rate=0.5) as (sim, client):
        rows = accounts("A", 5, "crm_sourceid", "name")
        sim._fault_rng = Script(NEVER, 0.0, NEVER, NEVER, 0.0)  # changesets 2 and 5 fail
        results = await client.upsert("account", rows, Ledger())
        assert sim.stats.faults_part == 2
        # A part answered 500 was rolled back: its retry's "created" is certain.
        assert all(r.ok and r.created is True for r in results), results
        assert len(sim.records("accounts")) == 5


async def test_dataverse_a_request_that_waits_out_throttles_takes_its_token_afterwards() -> None:
    """Two 429s ask for a second each, as long as a token lives: the token is taken when
    the request may go, so it is never sent stale."""
    async with dataverse(fault_429_rate=0.5, token_ttl_seconds=1) as (sim, client):
        sim._fault_rng = Script(0.0, 0.0, NEVER)
        results = await client.upsert("account", accounts("A", 3, "crm_sourceid", "name"), Ledger())
        assert all(r.ok and r.created is True for r in results), results
        assert sim.stats.faults_429 == 2
        assert sim.stats.expired_tokens == 0


async def test_salesforce_a_token_answer_without_a_token_is_refused_credentials() -> None:
    """A login endpoint answering 200 with no ``access_token`` (a captive portal, a proxy's
    page): one AuthError naming the URL (exit 3), not a KeyError traceback."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token_type": "Bearer"})

    app = web.Application()
    app.router.add_post("/services/oauth2/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = SalesforceConfig(f"http://127.0.0.1:{port}", "crmlift", Secret("s3cret-login"))
    try:
        async with SalesforceClient(config, Governor(SALESFORCE), FAST) as client:
            with pytest.raises(AuthError, match="without access_token") as refused:
                await client.describe("Account")
        assert refused.value.exit_code == 3
    finally:
        await runner.cleanup()
