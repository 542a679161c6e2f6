"""Fault injection in the BackDocket and Salesforce simulators, over real loopback HTTP.

Each fault kind is served as its setting says and counted; with every rate at 0 nothing
is injected; and a seeded run of 1000 calls honours the rates. Faults never touch the
token endpoints or ``/_sim``, and a fault that stops a write before it is processed
leaves the org as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

import adapters.salesforce.sim as sf_sim
from adapters.backdocket.sim import SimSettings
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.salesforce.sim import SfSimSettings
from tests.test_backdocket_sim import Client
from tests.test_backdocket_sim import running as backdocket_running
from tests.test_salesforce_sim import Api, V, bulk_job, read_csv
from tests.test_salesforce_sim import running as salesforce_running

LOCKED = "unable to obtain exclusive access to this record"
BD_FAULTS = (
    "injected_429",
    "injected_429_no_retry_after",
    "faults_503",
    "faults_500",
    "faults_reset",
    "faults_slow",
)
SF_FAULTS = (
    "faults",
    "faults_500",
    "faults_503",
    "faults_reset",
    "faults_reset_after_write",
    "faults_slow",
    "faults_partial",
    "sessions_expired",
)


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generate_tenant(300, 11)


def headers_of(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"}


def bearer(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


async def fan_out(count: int, call: Callable[[], Any], workers: int = 16) -> None:
    """Make ``count`` calls, ``workers`` at a time."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await call()

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())


# -- BackDocket


async def test_backdocket_rates_at_zero_inject_nothing(tenant: Tenant) -> None:
    async with backdocket_running(tenant, rate=1000, burst=1000) as (_, client):
        document = tenant.records["documents"][0]["id"]
        for path in ("/api/v1/users", "/api/v1/contacts/count", "/api/v1/deletions"):
            for _ in range(20):
                assert (await client.get(path)).status == 200
        async with client.session.get(
            f"/api/v1/documents/{document}/content", headers=headers_of(client)
        ) as response:
            assert len(await response.read()) == tenant.document_sizes[document]
        async with client.session.get("/_sim/state") as response:
            stats = (await response.json())["stats"]
        assert all(stats[name] == 0 for name in BD_FAULTS)
        assert stats["served_ok"] == 61


async def test_backdocket_500_and_429_without_retry_after(tenant: Tenant) -> None:
    async with backdocket_running(tenant, fault_500_rate=1.0) as (sim, client):
        reply = await client.get("/api/v1/users")
        assert (reply.status, reply.body) == (500, {"error": "internal_error"})
        assert "Retry-After" not in reply.headers
        assert sim.stats.faults_500 == 1
        assert sim.stats.served_ok == 0
        async with client.session.get("/_sim/state") as response:
            assert response.status == 200
            assert (await response.json())["stats"]["faults_500"] == 1
        assert sim.stats.tokens_issued == 1
    async with backdocket_running(tenant, fault_429_no_retry_after_rate=1.0) as (sim, client):
        reply = await client.get("/api/v1/users")
        assert (reply.status, reply.body) == (429, {"error": "rate_limited"})
        assert "Retry-After" not in reply.headers
        assert (sim.stats.injected_429, sim.stats.injected_429_no_retry_after) == (1, 1)
        assert sim.stats.throttled_429 == 1


async def test_backdocket_reset_cuts_the_body(tenant: Tenant) -> None:
    document = tenant.records["documents"][0]["id"]
    size = tenant.document_sizes[document]
    async with backdocket_running(tenant, fault_reset_rate=1.0) as (sim, client):
        for path in (f"/api/v1/documents/{document}/content", "/api/v1/contacts"):
            async with client.session.get(path, headers=headers_of(client)) as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            if path.endswith("/content"):
                assert response.content_length == size
                assert sim.stats.bytes_served == size // 2
        assert sim.stats.faults_reset == 2
        assert sim.stats.served_ok == 0
        async with client.session.get("/_sim/state") as response:
            assert (await response.json())["stats"]["faults_reset"] == 2
        # the token endpoint is never faulted
        await client.login()


async def test_backdocket_slow_answers_late_but_whole(tenant: Tenant) -> None:
    async with backdocket_running(tenant, fault_slow_rate=1.0, fault_slow_seconds=0.2) as (
        sim,
        client,
    ):
        started = time.perf_counter()
        reply = await client.get("/api/v1/users/count")
        assert time.perf_counter() - started >= 0.19
        assert reply.status == 200
        assert reply.body == {"count": len(tenant.records["users"])}
        assert (sim.stats.faults_slow, sim.stats.served_ok) == (1, 1)


async def test_backdocket_seeded_rates_are_honoured(tenant: Tenant) -> None:
    settings: dict[str, Any] = {
        "rate": 1e6,
        "burst": 1e6,
        "fault_503_rate": 0.2,
        "fault_429_rate": 0.1,
        "fault_429_no_retry_after_rate": 0.1,
        "fault_500_rate": 0.1,
        "fault_reset_rate": 0.1,
        "fault_slow_rate": 0.1,
        "fault_slow_seconds": 0.0,
        "fault_seed": 42,
    }
    async with backdocket_running(tenant, **settings) as (sim, client):

        async def call() -> None:
            with contextlib.suppress(aiohttp.ClientPayloadError):
                await client.get("/api/v1/users/count")

        await fan_out(1000, call)
    stats = sim.stats
    assert stats.requests == 1000
    assert 150 <= stats.faults_503 <= 250
    assert 140 <= stats.injected_429 <= 260
    for share in (stats.injected_429_no_retry_after, stats.faults_500, stats.faults_reset):
        assert 60 <= share <= 140
    assert 60 <= stats.faults_slow <= 140
    assert stats.served_ok == 1000 - stats.faults_503 - stats.injected_429 - stats.faults_500 - (
        stats.faults_reset
    )


def test_backdocket_settings_refuse_impossible_rates() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        SimSettings(fault_500_rate=0.6, fault_reset_rate=0.6)
    with pytest.raises(ValueError, match="negative"):
        SimSettings(fault_slow_rate=-0.1)
    with pytest.raises(ValueError, match="fault_slow_seconds"):
        SimSettings(fault_slow_seconds=-1)


# -- Salesforce


def upsert_body(*keys: str) -> dict[str, Any]:
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Firm {key}", "Source_System_ID__c": key}
        for key in keys
    ]
    return {"allOrNone": False, "records": records}


UPSERT = f"{V}/composite/sobjects/Account/Source_System_ID__c"


async def test_salesforce_rates_at_zero_inject_nothing() -> None:
    async with salesforce_running() as (sim, api):
        results = await api.ok("PATCH", UPSERT, json=upsert_body(*(f"A-{n}" for n in range(50))))
        assert all(r["success"] for r in results)
        content = "Name,Source_System_ID__c\n" + "".join(f"B{n},B-{n}\n" for n in range(50))
        _, info = await bulk_job(
            api, "upsert", "Account", content, externalIdFieldName="Source_System_ID__c"
        )
        assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (50, 0)
        for _ in range(20):
            await api.ok("GET", f"{V}/limits")
        state = await api.ok("GET", "/_sim/state", token="")
        assert all(state["stats"][name] == 0 for name in SF_FAULTS)
        assert len(sim.records("Account")) == 100


async def test_salesforce_5xx_never_reach_oauth_or_sim_state() -> None:
    async with salesforce_running(fault_500_rate=0.5, fault_503_rate=0.5) as (sim, api):
        for _ in range(5):
            assert (await api.login()).status == 200
            assert (await api.call("GET", "/_sim/state", token="")).status == 200
            assert (await api.call("GET", "/services/data/", token="")).status == 200
        reply = await api.call("GET", f"{V}/limits")
        assert reply.status in {500, 503}
        assert list(reply.body[0]) == ["message", "errorCode"]
        assert reply.body[0]["errorCode"] in {"UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE"}
        assert "Sforce-Limit-Info" in reply.headers
        assert sim.stats.faults == sim.stats.faults_500 + sim.stats.faults_503 == 1
        assert sim.stats.tokens_issued == 6


async def test_salesforce_sessions_expire_after_token_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(sf_sim, "_now", lambda: clock[0])
    async with salesforce_running(token_ttl=60.0) as (sim, api):
        assert (await api.call("GET", f"{V}/limits")).status == 200
        clock[0] += 61.0
        expired = await api.call("GET", f"{V}/limits")
        assert expired.status == 401
        assert expired.body == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
        forged = await api.call("GET", f"{V}/limits", token="00D!forged")
        assert forged.status == 401
        assert (sim.stats.sessions_expired, sim.stats.unauthorized) == (1, 2)
        assert (await api.login()).status == 200
        # the old token is still known as expired after a new login
        assert (await api.call("GET", f"{V}/limits", token=expired_token(sim, api))).status == 401
        assert sim.stats.sessions_expired == 2
        assert (await api.call("GET", f"{V}/limits")).status == 200


def expired_token(sim: sf_sim.SalesforceSim, api: Api) -> str:
    return next(token for token in sim._grants if token != api.token)


async def test_salesforce_reset_drops_a_write_before_it_is_applied() -> None:
    async with salesforce_running(fault_reset_rate=1.0) as (sim, api):
        for method, path, body in (
            ("POST", f"{V}/sobjects/Account", {"Name": "Never"}),
            ("PATCH", UPSERT, upsert_body("A-1", "A-2")),
        ):
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await api.call(method, path, json=body)
        assert sim.records("Account") == []
        assert (sim.stats.faults_reset, sim.stats.faults, sim.stats.api_requests) == (2, 2, 0)
        state = await api.ok("GET", "/_sim/state", token="")
        assert state["stats"]["faults_reset"] == 2


async def test_salesforce_reset_cuts_a_read_mid_body() -> None:
    async with salesforce_running(fault_reset_rate=1.0) as (sim, api):
        async with api.session.get(f"{V}/limits", headers=bearer(api)) as response:
            assert response.status == 200
            assert "Sforce-Limit-Info" in response.headers
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert (sim.stats.faults_reset, sim.stats.api_requests) == (1, 1)


async def test_salesforce_reset_after_write_applies_it_and_loses_the_answer() -> None:
    async with salesforce_running(fault_reset_after_write_rate=1.0) as (sim, api):
        async with api.session.patch(
            UPSERT, json=upsert_body("A-1", "A-2", "A-3"), headers=bearer(api)
        ) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert sorted(r["Source_System_ID__c"] for r in sim.records("Account")) == [
            "A-1",
            "A-2",
            "A-3",
        ]
        account = sim.records("Account")[0]["Id"]
        # an answer without a body (204) is lost whole
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.call("PATCH", f"{V}/sobjects/Account/{account}", json={"Name": "Renamed"})
        assert next(r for r in sim.records("Account") if r["Id"] == account)["Name"] == "Renamed"
        # reads are never faulted by this setting
        assert (await api.call("GET", f"{V}/limits")).status == 200
        assert (sim.stats.faults_reset_after_write, sim.stats.api_requests) == (2, 3)
        state = await api.ok("GET", "/_sim/state", token="")
        assert state["stats"]["faults_reset_after_write"] == 2


async def test_salesforce_slow_answers_late_and_whole() -> None:
    async with salesforce_running(fault_slow_rate=1.0, fault_slow_seconds=0.2) as (sim, api):
        started = time.perf_counter()
        results = await api.ok("PATCH", UPSERT, json=upsert_body("A-1"))
        assert time.perf_counter() - started >= 0.19
        assert results[0]["created"] is True
        assert (sim.stats.faults_slow, sim.stats.api_requests) == (1, 1)


async def test_salesforce_partial_collections_lock_some_records_only() -> None:
    async with salesforce_running(fault_partial_rate=0.3, fault_seed=7) as (sim, api):
        keys = [f"A-{n}" for n in range(40)]
        results = await api.ok("PATCH", UPSERT, json=upsert_body(*keys))
        locked = [key for key, r in zip(keys, results, strict=True) if not r["success"]]
        written = [key for key, r in zip(keys, results, strict=True) if r["success"]]
        assert locked
        assert written
        for result in results:
            if not result["success"]:
                assert result == {
                    "success": False,
                    "errors": [
                        {"statusCode": "UNABLE_TO_LOCK_ROW", "message": LOCKED, "fields": []}
                    ],
                }
        stored = sorted(r["Source_System_ID__c"] for r in sim.records("Account"))
        assert stored == sorted(written)
        assert sim.stats.faults_partial == sim.stats.faults == len(locked)
        state = await api.ok("GET", "/_sim/state", token="")
        assert state["stats"]["faults_partial"] == len(locked)


async def test_salesforce_partial_bulk_rows_land_in_failed_results() -> None:
    async with salesforce_running(fault_partial_rate=0.3, fault_seed=7) as (sim, api):
        content = "Name,Source_System_ID__c\n" + "".join(f"B{n},B-{n}\n" for n in range(60))
        job_id, info = await bulk_job(
            api, "upsert", "Account", content, externalIdFieldName="Source_System_ID__c"
        )
        assert info["state"] == "JobComplete"
        failed = read_csv(await api.ok("GET", f"{V}/jobs/ingest/{job_id}/failedResults/"))
        succeeded = read_csv(await api.ok("GET", f"{V}/jobs/ingest/{job_id}/successfulResults/"))
        assert failed
        assert succeeded
        assert len(failed) + len(succeeded) == 60
        assert {row["sf__Error"] for row in failed} == {f"UNABLE_TO_LOCK_ROW:{LOCKED}:--"}
        assert info["numberRecordsFailed"] == len(failed) == sim.stats.faults_partial
        stored = {r["Source_System_ID__c"] for r in sim.records("Account")}
        assert stored == {row["Source_System_ID__c"] for row in succeeded}


async def test_salesforce_seeded_rates_are_honoured() -> None:
    settings: dict[str, Any] = {
        "fault_500_rate": 0.2,
        "fault_503_rate": 0.1,
        "fault_reset_rate": 0.1,
        "fault_reset_after_write_rate": 0.1,
        "fault_slow_rate": 0.1,
        "fault_slow_seconds": 0.0,
        "fault_seed": 42,
    }
    async with salesforce_running(**settings) as (sim, api):

        async def call() -> None:
            with contextlib.suppress(aiohttp.ClientPayloadError):
                await api.call("GET", f"{V}/limits")

        await fan_out(1000, call)
    stats = sim.stats
    assert 150 <= stats.faults_500 <= 250
    for share in (stats.faults_503, stats.faults_reset, stats.faults_slow):
        assert 60 <= share <= 140
    assert stats.faults_reset_after_write == 0  # reads only
    assert stats.faults == stats.faults_500 + stats.faults_503 + stats.faults_reset + (
        stats.faults_slow
    )
    assert stats.api_requests == 1000 - stats.faults_500 - stats.faults_503


async def test_salesforce_seeded_partial_rate_is_honoured() -> None:
    async with salesforce_running(fault_partial_rate=0.2, fault_seed=3) as (sim, api):
        locked = 0
        for batch in range(5):
            keys = [f"A-{batch}-{n}" for n in range(200)]
            results = await api.ok("PATCH", UPSERT, json=upsert_body(*keys))
            locked += sum(not r["success"] for r in results)
        assert 150 <= locked <= 250
        assert sim.stats.faults_partial == locked
        assert len(sim.records("Account")) == 1000 - locked


def test_salesforce_settings_refuse_impossible_rates() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        SfSimSettings(fault_500_rate=0.5, fault_reset_after_write_rate=0.6)
    with pytest.raises(ValueError, match="fault_partial_rate"):
        SfSimSettings(fault_partial_rate=1.5)
    with pytest.raises(ValueError, match="fault_slow_seconds"):
        SfSimSettings(fault_slow_seconds=-1)
