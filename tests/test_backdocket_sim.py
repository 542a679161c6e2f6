"""The BackDocket simulator over real loopback HTTP: auth, paging, limits, faults, documents."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, run_forever, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.base import Record, content_hash
from adapters.simserver import ADMIN_HEADER

GOOD_FORM = {
    "grant_type": "client_credentials",
    "client_id": "crmlift",
    "client_secret": "s3cret",
    "scope": "read",
}


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any


class Client:
    """A bare HTTP client for the contract: one token, raw replies, no retries."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.token = ""

    async def post_token(self, form: Mapping[str, str]) -> Reply:
        async with self.session.post("/oauth/token", data=dict(form)) as response:
            return Reply(response.status, response.headers, orjson.loads(await response.read()))

    async def login(self) -> str:
        reply = await self.post_token(GOOD_FORM)
        assert reply.status == 200, reply.body
        self.token = reply.body["access_token"]
        return self.token

    async def get(
        self, path: str, params: Mapping[str, str | int] | None = None, token: str | None = None
    ) -> Reply:
        bearer = self.token if token is None else token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with self.session.get(path, params=params, headers=headers) as response:
            return Reply(response.status, response.headers, orjson.loads(await response.read()))

    async def read_window(
        self, collection: str, limit: int, since: str | None, before: str | None
    ) -> list[Record]:
        """Every record of one window, page by page."""
        params: dict[str, str | int] = {"limit": limit}
        if since:
            params["updated_since"] = since
        if before:
            params["updated_before"] = before
        records: list[Record] = []
        while True:
            reply = await self.get(f"/api/v1/{collection}", params)
            assert reply.status == 200, reply.body
            assert len(reply.body["data"]) <= limit
            records += reply.body["data"]
            if reply.body["next_cursor"] is None:
                return records
            params["cursor"] = reply.body["next_cursor"]


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generate_tenant(600, 5)


@asynccontextmanager
async def running(tenant: Tenant, **settings: Any) -> AsyncIterator[tuple[BackDocketSim, Client]]:
    """A simulator on a free loopback port and a client logged in to it."""
    sim = BackDocketSim(tenant, SimSettings(**settings))
    runner, base_url = await serve(sim)
    try:
        async with aiohttp.ClientSession(
            base_url, headers={ADMIN_HEADER: sim.settings.admin_token}
        ) as session:
            client = Client(session)
            await client.login()
            yield sim, client
    finally:
        await runner.cleanup()


def order_key(record: Record) -> tuple[datetime, str]:
    return datetime.fromisoformat(record["updated_at"]), record["id"]


async def test_token_flow_refuses_bad_clients_and_tokens(tenant: Tenant) -> None:
    async with running(tenant) as (sim, client):
        good = await client.post_token(GOOD_FORM)
        assert good.status == 200
        assert good.body["token_type"] == "Bearer"
        assert good.body["expires_in"] == 3600
        bad_secret = await client.post_token({**GOOD_FORM, "client_secret": "nope"})
        assert (bad_secret.status, bad_secret.body) == (401, {"error": "invalid_client"})
        bad_grant = await client.post_token({**GOOD_FORM, "grant_type": "password"})
        assert (bad_grant.status, bad_grant.body) == (400, {"error": "unsupported_grant_type"})
        for token in ("", "forged"):
            reply = await client.get("/api/v1/users", token=token)
            assert (reply.status, reply.body) == (401, {"error": "invalid_token"})
        assert (await client.get("/api/v1/users")).status == 200
        assert sim.stats.tokens_issued == 2
        assert sim.stats.unauthorized == 2


async def test_expired_token_is_refused_and_a_new_one_works(tenant: Tenant) -> None:
    async with running(tenant, token_ttl=0.2) as (_, client):
        assert (await client.get("/api/v1/users/count")).status == 200
        await asyncio.sleep(0.25)
        expired = await client.get("/api/v1/users/count")
        assert (expired.status, expired.body) == (401, {"error": "invalid_token"})
        await client.login()
        assert (await client.get("/api/v1/users/count")).status == 200


async def test_windows_page_every_record_once_in_order(tenant: Tenant) -> None:
    contacts = sorted(tenant.records["contacts"], key=order_key)
    stamps = [row["updated_at"] for row in contacts]
    shared = next(s for s in stamps if stamps.count(s) > 1)
    middle = stamps[len(stamps) // 2].replace("+00:00", "Z")
    bounds = sorted({shared, middle}, key=datetime.fromisoformat)
    windows = list(zip([None, *bounds], [*bounds, None], strict=True))
    async with running(tenant) as (sim, client):
        pages = [await client.read_window("contacts", 7, since, end) for since, end in windows]
        for (since, end), page in zip(windows, pages, strict=True):
            assert page == sorted(page, key=order_key)
            for row in page:
                assert since is None or order_key(row)[0] >= datetime.fromisoformat(since)
                assert end is None or order_key(row)[0] < datetime.fromisoformat(end)
        listed = [row for page in pages for row in page]
        assert listed == contacts == sim.current_records("contacts")
        tied = [row["id"] for row in listed if row["updated_at"] == shared]
        assert len(tied) > 1
        assert all(row["updated_at"] >= shared for row in pages[bounds.index(shared) + 1])


async def test_limits_default_and_clamp(tenant: Tenant) -> None:
    async with running(tenant, max_page_size=40, default_page_size=25) as (_, client):
        clamped = await client.get("/api/v1/contacts", {"limit": 10_000})
        assert len(clamped.body["data"]) == 40
        assert clamped.body["total_estimate"] == len(tenant.records["contacts"])
        default = await client.get("/api/v1/contacts")
        assert len(default.body["data"]) == 25
        assert default.body["next_cursor"] is not None


async def test_count_equals_what_a_window_lists(tenant: Tenant) -> None:
    async with running(tenant) as (_, client):
        window = {"updated_since": "2024-01-01T00:00:00Z", "updated_before": "2025-07-01T00:00:00Z"}
        count = await client.get("/api/v1/tasks/count", window)
        listed = await client.read_window("tasks", 500, *window.values())
        assert count.body == {"count": len(listed)}
        assert 0 < len(listed) < len(tenant.records["tasks"])
        everything = await client.get("/api/v1/tasks/count")
        assert everything.body == {"count": len(tenant.records["tasks"])}


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/api/v1/contacts", {"limit": 0}, 400, "invalid_limit"),
        ("/api/v1/contacts", {"limit": "ten"}, 400, "invalid_limit"),
        ("/api/v1/contacts", {"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ("/api/v1/contacts", {"updated_since": "yesterday"}, 400, "invalid_timestamp"),
        (
            "/api/v1/contacts/count",
            {"updated_before": "2025-01-01T00:00:00"},
            400,
            "invalid_timestamp",
        ),
        ("/api/v1/deletions", {"cursor": "WyJyIiwxLCJ4Il0"}, 400, "invalid_cursor"),
        ("/api/v1/widgets", {}, 404, "not_found"),
        ("/api/v1/contacts/ct_999999", {}, 404, "not_found"),
        ("/api/v1/documents/doc_999999/content", {}, 404, "not_found"),
    ],
)
async def test_bad_requests_get_contract_errors(
    tenant: Tenant, path: str, params: dict[str, str | int], status: int, error: str
) -> None:
    async with running(tenant) as (_, client):
        reply = await client.get(path, params)
        assert (reply.status, reply.body) == (status, {"error": error})


async def test_one_record_is_served_exactly_as_generated(tenant: Tenant) -> None:
    matter = tenant.records["matters"][3]
    async with running(tenant) as (_, client):
        reply = await client.get(f"/api/v1/matters/{matter['id']}")
        assert reply.body == matter
        assert reply.headers["Content-Type"] == "application/json"


async def test_bursting_past_the_bucket_is_throttled_until_retry_after(tenant: Tenant) -> None:
    async with running(tenant, rate=5.0, burst=5.0) as (sim, client):
        replies = [await client.get("/api/v1/users/count") for _ in range(6)]
        assert [reply.status for reply in replies] == [200] * 5 + [429]
        assert replies[-1].body == {"error": "rate_limited"}
        wait = float(replies[-1].headers["Retry-After"])
        assert 0 < wait <= 0.2
        await asyncio.sleep(wait)
        assert (await client.get("/api/v1/users/count")).status == 200
        assert sim.stats.throttled_429 == 1


async def test_faults_answer_503_and_429_with_retry_after(tenant: Tenant) -> None:
    async with running(tenant, fault_503_rate=1.0) as (sim, client):
        reply = await client.get("/api/v1/users")
        assert (reply.status, reply.body) == (503, {"error": "maintenance"})
        assert float(reply.headers["Retry-After"]) == pytest.approx(0.2)
        assert sim.stats.faults_503 == 1
    async with running(tenant, fault_429_rate=1.0, fault_retry_after=1.0) as (sim, client):
        reply = await client.get("/api/v1/users")
        assert (reply.status, reply.body) == (429, {"error": "rate_limited"})
        assert reply.headers["Retry-After"] == "1"
        assert sim.stats.injected_429 == 1


async def test_latency_delays_reads(tenant: Tenant) -> None:
    async with running(tenant, latency_min=0.05, latency_max=0.06) as (_, client):
        started = time.perf_counter()
        await client.get("/api/v1/users/count")
        assert time.perf_counter() - started >= 0.05


async def test_document_content_streams_with_matching_headers(tenant: Tenant) -> None:
    async with running(tenant) as (sim, client):
        for document in tenant.records["documents"][:3]:
            path = f"/api/v1/documents/{document['id']}/content"
            headers = {"Authorization": f"Bearer {client.token}"}
            async with client.session.get(path, headers=headers) as response:
                content = await response.read()
                assert response.status == 200
                assert response.headers["Content-Type"] == document["mime_type"]
                assert response.headers["ETag"] == f'"{document["sha256"]}"'
                assert int(response.headers["Content-Length"]) == document["size_bytes"]
            assert len(content) == document["size_bytes"]
            assert hashlib.sha256(content).hexdigest() == document["sha256"]
        assert sim.stats.bytes_served >= sum(
            d["size_bytes"] for d in tenant.records["documents"][:3]
        )


async def test_a_document_over_25_mb_streams_in_chunks() -> None:
    tenant = generate_tenant(200, 2, dirty=True)
    (big,) = tenant.dirty_cases["document_over_25mb"]
    record = next(row for row in tenant.records["documents"] if row["id"] == big)
    async with running(tenant) as (_, client):
        headers = {"Authorization": f"Bearer {client.token}"}
        digest, size = hashlib.sha256(), 0
        async with client.session.get(f"/api/v1/documents/{big}/content", headers=headers) as reply:
            async for chunk in reply.content.iter_chunked(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        assert size == record["size_bytes"]
        assert digest.hexdigest() == record["sha256"]


async def test_mutation_moves_a_record_and_state_reflects_it(tenant: Tenant) -> None:
    original = {row["id"]: content_hash(row) for row in tenant.records["contacts"]}
    latest = max(row["updated_at"] for row in tenant.records["contacts"])
    async with running(tenant, mutate_every=2) as (sim, client):
        first = await client.get("/api/v1/contacts", {"limit": 5})
        served = {row["id"]: content_hash(row) for row in first.body["data"]}
        await client.get("/api/v1/contacts", {"limit": 5})
        state = await client.get("/_sim/state/contacts", token="")
        changed = {i for i, digest in state.body["hashes"].items() if original[i] != digest}
        assert len(changed) == 1
        assert sim.stats.mutations == 1
        (moved,) = changed
        after = await client.get(f"/api/v1/contacts/{moved}")
        assert after.body["updated_at"] > latest
        assert after.body["updated_at"].endswith("+00:00")
        assert {k for k in after.body if after.body[k] != tenant_record(tenant, moved)[k]} == {
            "updated_at",
            "last_name",
        }
        newer = await client.get("/api/v1/contacts", {"updated_since": latest, "limit": 500})
        assert moved in {row["id"] for row in newer.body["data"]}
        assert sim.current_records("contacts")[-1]["id"] == moved
    assert all(content_hash(tenant_record(tenant, i)) == digest for i, digest in served.items())


def tenant_record(tenant: Tenant, ident: str) -> Record:
    return next(row for row in tenant.records["contacts"] if row["id"] == ident)


async def test_deletions_page_in_order_from_since(tenant: Tenant) -> None:
    expected = tenant.deletions
    assert len(expected) >= 4
    async with running(tenant) as (_, client):
        seen: list[dict[str, str]] = []
        params: dict[str, str | int] = {"limit": 2}
        while True:
            reply = await client.get("/api/v1/deletions", params)
            assert reply.status == 200
            seen += reply.body["data"]
            if reply.body["next_cursor"] is None:
                break
            params["cursor"] = reply.body["next_cursor"]
        assert seen == expected
        since = expected[2]["deleted_at"]
        tail = await client.get("/api/v1/deletions", {"since": since, "limit": 500})
        assert tail.body == {"data": expected[2:], "next_cursor": None}


async def test_sim_state_needs_no_token_and_counts_api_calls(tenant: Tenant) -> None:
    async with running(tenant) as (_, client):
        await client.get("/api/v1/users")
        state = await client.get("/_sim/state", token="")
        assert state.status == 200
        assert state.body["collections"]["contacts"] == {"count": len(tenant.records["contacts"])}
        stats = state.body["stats"]
        assert (stats["requests"], stats["served_ok"], stats["tokens_issued"]) == (1, 1, 1)
        hashes = await client.get("/_sim/state/users", token="")
        assert hashes.body["hashes"] == {
            row["id"]: content_hash(row) for row in tenant.records["users"]
        }


async def test_run_forever_serves_until_cancelled() -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    server = asyncio.create_task(
        run_forever(200, 4, True, SimSettings(admin_token="t"), "127.0.0.1", 0, ready.put_nowait)
    )
    base_url = await asyncio.wait_for(ready.get(), timeout=10)
    admin = {ADMIN_HEADER: "t"}
    async with (
        aiohttp.ClientSession(base_url) as session,
        session.get("/_sim/state", headers=admin) as reply,
    ):
        assert reply.status == 200
        assert (await reply.json())["collections"]["users"]["count"] >= 5
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
