"""The Dataverse simulator over loopback HTTP: token, writes, binds, $batch, limits, metadata."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.dynamics.batch import BatchRequest, encode_batch, parse_batch_response
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings, run_forever, serve
from adapters.dynamics.sim_limits import SlidingWindow
from adapters.dynamics.sim_store import load_schema

API = "/api/data/v9.2/"
SCHEMA: dict[str, dict[str, dict[str, Any]]] = {
    "matter": {
        "crm_matternumber": {"type": "string", "max_length": 20},
        "crm_opened": {"type": "datetime"},
        "crm_client": {"type": "lookup", "targets": ["account"]},
    },
    "claim": {"crm_amount": {"type": "money"}},
}
JSON = {"Content-Type": "application/json", "OData-Version": "4.0", "Accept": "application/json"}


class ManualClock:
    """A clock the test moves by hand, so window arithmetic is independent of machine speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any


class Org:
    """A bare Web API client: one token, raw replies, no retries."""

    def __init__(self, session: aiohttp.ClientSession, sim: DataverseSim) -> None:
        self.session = session
        self.sim = sim
        self.token = ""

    async def login(self) -> None:
        reply = await self.token_request(self.form())
        assert reply.status == 200, reply.body
        self.token = reply.body["access_token"]

    def form(self, **changes: str) -> dict[str, str]:
        settings = self.sim.settings
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "scope": f"{settings.org_url}/.default",
        }
        return {**form, **changes}

    async def token_request(self, form: Mapping[str, str], tenant: str | None = None) -> Reply:
        path = f"/{tenant or self.sim.settings.tenant_id}/oauth2/v2.0/token"
        async with self.session.post(path, data=dict(form)) as response:
            return Reply(response.status, response.headers, orjson.loads(await response.read()))

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = {**JSON, "Authorization": f"Bearer {self.token}", **(headers or {})}
        data = None if body is None else orjson.dumps(body)
        async with self.session.request(method, API + path, data=data, headers=sent) as response:
            raw = await response.read()
            return Reply(response.status, response.headers, orjson.loads(raw) if raw else None)

    async def batch(
        self, groups: list[list[BatchRequest]], prefer: str | None = None
    ) -> tuple[int, list[Any]]:
        content_type, body = encode_batch(groups, "batch_t1")
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        if prefer:
            headers["Prefer"] = prefer
        async with self.session.post(API + "$batch", data=body, headers=headers) as response:
            raw = await response.read()
            if not response.content_type.startswith("multipart/"):
                return response.status, [orjson.loads(raw)]
            return response.status, parse_batch_response(response.headers["Content-Type"], raw)


@asynccontextmanager
async def running(
    settings: DataverseSimSettings | None = None, clock: ManualClock | None = None
) -> AsyncIterator[Org]:
    sim = DataverseSim(SCHEMA, settings or DataverseSimSettings(), clock or time.monotonic)
    runner, base_url = await serve(sim)
    try:
        async with aiohttp.ClientSession(base_url) as session:
            org = Org(session, sim)
            await org.login()
            yield org
    finally:
        await runner.cleanup()


def guid_of(reply: Reply) -> str:
    entity_id = reply.headers["OData-EntityId"]
    return entity_id[entity_id.rindex("(") + 1 : -1]


def write(method: str, url: str, body: Any, content_id: str | None = None) -> BatchRequest:
    headers = {"Content-Type": "application/json; type=entry"}
    return BatchRequest(method, url, headers, orjson.dumps(body), content_id)


# -- the pure sliding window


def test_sliding_window_counts_only_the_last_window() -> None:
    window = SlidingWindow(limit=3, window=10)
    assert [window.try_add(t) for t in (0, 1, 2)] == [0, 0, 0]
    assert window.try_add(5) == pytest.approx(5)
    assert window.total(5) == 3
    assert window.try_add(10) == 0
    assert window.total(10) == 3
    assert window.wait(10.5, 2) == pytest.approx(1.5)
    assert window.total(100) == 0


def test_sliding_window_weighs_amounts() -> None:
    window = SlidingWindow(limit=100, window=60)
    window.add(0, 70)
    window.add(30, 40)
    assert window.wait(31, 0) == pytest.approx(29)
    assert window.wait(31, 200) == 60
    with pytest.raises(ValueError, match="positive"):
        SlidingWindow(limit=0, window=1)


# -- token


async def test_token_shape_and_identity_errors() -> None:
    async with running() as org:
        reply = await org.token_request(org.form())
        assert reply.body["token_type"] == "Bearer"
        assert reply.body["expires_in"] == reply.body["ext_expires_in"] == 3599
        bad = await org.token_request(org.form(client_secret="nope"))
        assert bad.status == 401
        assert bad.body["error"] == "invalid_client"
        assert bad.body["error_description"].startswith("AADSTS7000215")
        assert bad.body["error_codes"] == [7000215]
        assert {"timestamp", "trace_id", "correlation_id"} <= set(bad.body)
        scope = await org.token_request(org.form(scope="https://other.crm.dynamics.com/.default"))
        assert (scope.status, scope.body["error"]) == (400, "invalid_scope")
        tenant = await org.token_request(org.form(), tenant="someone-else")
        assert tenant.body["error_codes"] == [90002]
        org.token = "forged"
        denied = await org.call("GET", "accounts")
        assert denied.status == 401
        assert "Bearer" in denied.headers["WWW-Authenticate"]


# -- writes


async def test_create_returns_entity_id_or_representation() -> None:
    async with running() as org:
        created = await org.call("POST", "accounts", {"name": "Contoso", "crm_sourceid": "a-1"})
        assert created.status == 204
        assert created.headers["OData-EntityId"].endswith(f"{API}accounts({guid_of(created)})")
        assert "x-ms-ratelimit-burst-remaining-xrm-requests" in created.headers
        shown = await org.call(
            "POST",
            "accounts?$select=name",
            {"name": "Fabrikam", "overriddencreatedon": "2019-03-04T05:06:07Z"},
            {"Prefer": "return=representation"},
        )
        assert shown.status == 201
        assert "OData-EntityId" not in shown.headers
        assert shown.body["name"] == "Fabrikam"
        assert "accountid" in shown.body
        full = await org.call("GET", f"accounts({shown.body['accountid']})")
        assert full.body["createdon"] == "2019-03-04T05:06:07Z"
        assert [row["name"] for row in org.sim.records("accounts")] == ["Contoso", "Fabrikam"]


async def test_validation_errors_use_dataverse_codes() -> None:
    async with running() as org:
        long = await org.call("POST", "tasks", {"subject": "x" * 201})
        assert long.status == 400
        assert long.body["error"] == {
            "code": "0x80044331",
            "message": "A validation error occurred.  The length of the 'subject' attribute of "
            "the 'task' entity exceeded the maximum allowed length of '200'.",
        }
        unknown = await org.call("POST", "contacts", {"nickname": "Bo"})
        assert unknown.status == 400
        assert (
            "does not exist on type 'Microsoft.Dynamics.CRM.contact'"
            in (unknown.body["error"]["message"])
        )
        typed = await org.call("POST", "crm_claims", {"crm_amount": "lots"})
        assert (typed.status, typed.body["error"]["code"]) == (400, "0x80048d19")


async def test_upsert_by_alternate_key_and_conditions() -> None:
    async with running() as org:
        path = "contacts(crm_sourceid='bd-7')"
        created = await org.call("PATCH", path, {"lastname": "Okafor"})
        assert created.status == 204
        assert created.headers["OData-EntityId"].endswith(f"{API}{path}")
        updated = await org.call("PATCH", path, {"firstname": "Ngozi"})
        assert updated.status == 204
        (row,) = org.sim.records("contacts")
        assert (row["firstname"], row["lastname"], row["crm_sourceid"]) == (
            "Ngozi",
            "Okafor",
            "bd-7",
        )
        assert row["@odata.etag"] == 'W/"2"'
        update_only = await org.call(
            "PATCH", "contacts(crm_sourceid='nobody')", {"lastname": "X"}, {"If-Match": "*"}
        )
        assert update_only.status == 404
        assert update_only.body["error"]["code"] == "0x80040217"
        create_only = await org.call("PATCH", path, {"lastname": "Y"}, {"If-None-Match": "*"})
        assert create_only.status == 412
        assert create_only.body["error"] == {
            "code": "0x80040237",
            "message": "A record with matching key values already exists.",
        }
        stale = await org.call("PATCH", path, {"lastname": "Z"}, {"If-Match": 'W/"1"'})
        assert stale.status == 412
        by_id = "contacts(3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
        fresh = await org.call(
            "PATCH", by_id, {"lastname": "New"}, {"Prefer": "return=representation"}
        )
        assert (fresh.status, fresh.body["contactid"]) == (
            201,
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        )
        again = await org.call(
            "PATCH", by_id, {"lastname": "Newer"}, {"Prefer": "return=representation"}
        )
        assert again.status == 200
        duplicate = await org.call("POST", "contacts", {"lastname": "Dup", "crm_sourceid": "bd-7"})
        assert (duplicate.status, duplicate.body["error"]["code"]) == (412, "0x80040237")
        not_a_key = await org.call("PATCH", "contacts(lastname='Okafor')", {"firstname": "N"})
        assert not_a_key.status == 400
        deleted = await org.call("DELETE", path)
        assert deleted.status == 204
        assert (await org.call("DELETE", path)).status == 404
        assert len(org.sim.records("contacts")) == 1


async def test_duplicate_key_status_is_configurable() -> None:
    async with running(DataverseSimSettings(duplicate_key_status=409)) as org:
        await org.call("PATCH", "accounts(accountnumber='N1')", {"name": "A"})
        dup = await org.call("POST", "accounts", {"name": "B", "accountnumber": "N1"})
        assert (dup.status, dup.body["error"]["code"]) == (409, "0x80040237")


async def test_binds_resolve_lookups_including_polymorphic_ones() -> None:
    async with running() as org:
        account = guid_of(await org.call("POST", "accounts", {"name": "Acme"}))
        await org.call(
            "PATCH",
            "crm_matters(crm_sourceid='m-1')",
            {"crm_name": "Acme v. Doe", "crm_client@odata.bind": f"/accounts({account})"},
        )
        (matter_row,) = org.sim.records("crm_matters")
        assert matter_row["_crm_client_value"] == account
        matter = matter_row["crm_matterid"]
        contact = await org.call(
            "POST",
            "contacts",
            {"lastname": "Doe", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
            {"Prefer": "return=representation"},
        )
        assert contact.body["_parentcustomerid_value"] == account
        task = await org.call(
            "POST",
            "tasks",
            {
                "subject": "File answer",
                "regardingobjectid_crm_matter_task@odata.bind": "/crm_matters(crm_sourceid='m-1')",
            },
            {"Prefer": "return=representation"},
        )
        assert task.status == 201
        assert task.body["_regardingobjectid_value"] == matter
        missing = await org.call(
            "POST",
            "tasks",
            {
                "subject": "Orphan",
                "regardingobjectid_account_task@odata.bind": (
                    "/accounts(00000000-0000-0000-0000-000000000001)"
                ),
            },
        )
        assert missing.status == 400
        assert missing.body["error"]["code"] == "0x80040217"
        assert "Does Not Exist" in missing.body["error"]["message"]
        undeclared = await org.call(
            "POST", "contacts", {"lastname": "X", "parentcustomerid@odata.bind": "/accounts(x)"}
        )
        assert (undeclared.status, undeclared.body["error"]["code"]) == (400, "0x80060888")
        wrong_type = await org.call(
            "POST",
            "contacts",
            {"lastname": "X", "parentcustomerid_account@odata.bind": f"/crm_matters({matter})"},
        )
        assert wrong_type.status == 400
        assert len(org.sim.records("tasks")) == 1


async def test_query_subset_for_read_back() -> None:
    async with running() as org:
        for index in range(5):
            await org.call(
                "POST", "leads", {"lastname": f"L{index}", "companyname": f"c{index % 2}"}
            )
        found = await org.call("GET", "leads?$filter=companyname eq 'c1'&$select=lastname")
        assert [row["lastname"] for row in found.body["value"]] == ["L1", "L3"]
        assert set(found.body["value"][0]) == {"@odata.etag", "leadid", "lastname"}
        top = await org.call("GET", "leads?$top=2")
        assert len(top.body["value"]) == 2
        bad = await org.call("GET", "leads?$filter=contains(lastname,'L')")
        assert bad.status == 400
        users = await org.call("GET", "systemusers?$select=fullname,internalemailaddress")
        assert users.body["value"][0]["internalemailaddress"] == "ada.admin@example.com"


async def test_metadata_reports_tables_attributes_and_keys() -> None:
    async with running() as org:
        found = await org.call(
            "GET",
            "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute"
            "&$filter=LogicalName eq 'crm_matter'",
        )
        assert found.body["value"] == [
            {
                "LogicalName": "crm_matter",
                "EntitySetName": "crm_matters",
                "PrimaryIdAttribute": "crm_matterid",
            }
        ]
        attributes = await org.call(
            "GET",
            "EntityDefinitions(LogicalName='task')/Attributes"
            "?$select=LogicalName,AttributeType,RequiredLevel,MaxLength",
        )
        subject = next(a for a in attributes.body["value"] if a["LogicalName"] == "subject")
        assert subject == {
            "LogicalName": "subject",
            "AttributeType": "String",
            "RequiredLevel": {"Value": "ApplicationRequired"},
            "MaxLength": 200,
        }
        custom = await org.call("GET", "EntityDefinitions(LogicalName='crm_matter')/Attributes")
        names = {a["LogicalName"] for a in custom.body["value"]}
        assert {"crm_matternumber", "crm_opened", "crm_client", "crm_sourceid"} <= names
        for table in ("account", "opportunity", "crm_claim", "sharepointdocumentlocation"):
            keys = await org.call("GET", f"EntityDefinitions(LogicalName='{table}')/Keys")
            assert ["crm_sourceid"] in [key["KeyAttributes"] for key in keys.body["value"]]
        one = await org.call("GET", "EntityDefinitions(LogicalName='opportunity')")
        assert one.body["EntitySetName"] == "opportunities"
        assert (await org.call("GET", "EntityDefinitions(LogicalName='nope')")).status == 404


# -- $batch


async def test_batch_changeset_with_content_id_references() -> None:
    async with running() as org:
        status, parts = await org.batch(
            [
                [
                    write("POST", "accounts", {"name": "Initech"}, "1"),
                    write(
                        "POST",
                        "contacts",
                        {"lastname": "Lumbergh", "parentcustomerid_account@odata.bind": "$1"},
                        "2",
                    ),
                    write("PATCH", "$1", {"primarycontactid@odata.bind": "$2"}, "3"),
                ],
                [BatchRequest("GET", f"{org.sim.settings.org_url}{API}contacts?$select=lastname")],
            ]
        )
        assert status == 200
        assert [(p.status, p.content_id) for p in parts] == [
            (204, "1"),
            (204, "2"),
            (204, "3"),
            (200, None),
        ]
        assert "accounts(" in (parts[0].header("OData-EntityId") or "")
        (account,) = org.sim.records("accounts")
        (contact,) = org.sim.records("contacts")
        assert account["_primarycontactid_value"] == contact["contactid"]
        assert contact["_parentcustomerid_value"] == account["accountid"]
        assert orjson.loads(parts[3].body or b"")["value"][0]["lastname"] == "Lumbergh"
        state = await org.session.get("/_sim/state")
        async with state:
            stats = orjson.loads(await state.read())
        assert stats["stats"]["batches"] == 1
        assert stats["tables"]["contacts"] == 1


async def test_batch_failure_rolls_back_and_stops_unless_continue_on_error() -> None:
    groups = [
        [
            write("POST", "accounts", {"name": "Kept"}, "1"),
        ],
        [
            write("POST", "accounts", {"name": "Rolled back"}, "1"),
            write("POST", "tasks", {"subject": "y" * 300}, "2"),
        ],
        [write("POST", "accounts", {"name": "After"}, "1")],
    ]
    async with running() as org:
        status, parts = await org.batch(groups)
        assert status == 400
        assert [p.status for p in parts] == [204, 400]
        assert parts[1].content_id == "2"
        assert orjson.loads(parts[1].body or b"")["error"]["code"] == "0x80044331"
        assert [row["name"] for row in org.sim.records("accounts")] == ["Kept"]
        status, parts = await org.batch(groups, prefer="odata.continue-on-error")
        assert status == 200
        assert [p.status for p in parts] == [204, 400, 204]
        assert [row["name"] for row in org.sim.records("accounts")] == ["Kept", "Kept", "After"]
        status, parts = await org.batch([[write("PATCH", "$9", {"name": "x"}, "1")]])
        assert status == 400
        assert (
            "Content-ID Reference: '$9' does not exist in the batch context."
            in (orjson.loads(parts[0].body or b"")["error"]["message"])
        )


async def test_batch_over_1000_requests_is_refused() -> None:
    async with running() as org:
        content_type, body = encode_batch(
            [[write("POST", "accounts", {"name": f"A{i}"}) for i in range(1001)]], "batch_big"
        )
        headers = {"Authorization": f"Bearer {org.token}", "Content-Type": content_type}
        async with org.session.post(API + "$batch", data=body, headers=headers) as response:
            assert response.status == 400
            assert "1000" in orjson.loads(await response.read())["error"]["message"]
        assert org.sim.records("accounts") == []


# -- service protection


async def test_crossing_the_6000_request_window_throttles_then_recovers() -> None:
    """6,000 requests at one frozen instant, then one more: 429 until the window slides."""
    clock = ManualClock()
    settings = DataverseSimSettings(time_scale=300.0, min_execution_ms=0.0)
    async with running(settings, clock) as org:
        gate = asyncio.Semaphore(40)

        async def one() -> int:
            async with gate:
                return (await org.call("GET", "accounts?$top=1")).status

        statuses = await asyncio.gather(*(one() for _ in range(6000)))
        assert set(statuses) == {200}
        throttled = await org.call("GET", "accounts?$top=1")
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.body["error"] == {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 6000 over time window of "
            "300 seconds.",
        }
        batch_status, _ = await org.batch([[write("POST", "accounts", {"name": "x"})]])
        assert batch_status == 429
        clock.now += int(throttled.headers["Retry-After"])
        recovered = await org.call("GET", "accounts?$top=1")
        assert recovered.status == 200
        assert recovered.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"


async def test_a_batch_counts_once_and_real_waits_suffice() -> None:
    settings = DataverseSimSettings(requests_per_window=3, time_scale=300.0)
    async with running(settings) as org:
        status, parts = await org.batch(
            [[write("POST", "accounts", {"name": f"B{i}"}) for i in range(50)]]
        )
        assert (status, len(parts)) == (200, 50)
        assert (await org.call("GET", "accounts?$top=1")).status == 200
        assert (await org.call("GET", "accounts?$top=1")).status == 200
        throttled = await org.call("GET", "accounts?$top=1")
        assert throttled.status == 429
        await asyncio.sleep(float(throttled.headers["Retry-After"]))
        assert (await org.call("GET", "accounts?$top=1")).status == 200


async def test_execution_time_limit() -> None:
    clock = ManualClock()
    settings = DataverseSimSettings(execution_ms_per_window=100, min_execution_ms=30.0)
    async with running(settings, clock) as org:
        statuses = [(await org.call("GET", "accounts")).status for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        refused = await org.call("GET", "accounts")
        assert refused.body["error"]["code"] == "0x80072321"
        assert "1,200,000" not in refused.body["error"]["message"]
        assert "exceeded limit of 100 milliseconds" in refused.body["error"]["message"]
        assert int(refused.headers["Retry-After"]) == 300
        clock.now += 300
        assert (await org.call("GET", "accounts")).status == 200


async def test_concurrency_cap_is_immediate() -> None:
    settings = DataverseSimSettings(max_concurrent=2, latency_seconds=0.2)
    async with running(settings) as org:
        replies = await asyncio.gather(*(org.call("GET", "accounts") for _ in range(5)))
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [200, 200, 429, 429, 429]
        refused = next(reply for reply in replies if reply.status == 429)
        assert refused.body["error"] == {
            "code": "0x80072326",
            "message": "Number of concurrent requests exceeded the limit of 2.",
        }
        assert refused.headers["Retry-After"] == "1"


# -- schema files, faults, serving


def test_schema_file_adds_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_bytes(orjson.dumps({"claim": {"crm_insurer": {"type": "string", "max_length": 80}}}))
    sim = DataverseSim(load_schema(path))
    assert sim.tables["crm_claims"].attributes["crm_insurer"].max_length == 80
    with pytest.raises(ValueError, match="unknown table"):
        DataverseSim({"widget": {}})
    with pytest.raises(ValueError, match="unknown type"):
        DataverseSim({"matter": {"crm_x": {"type": "blob"}}})
    with pytest.raises(ValueError, match="duplicate_key_status"):
        DataverseSimSettings(duplicate_key_status=500)


async def test_faults_unknown_sets_and_malformed_batches() -> None:
    async with running(DataverseSimSettings(fault_503_rate=1.0)) as org:
        fault = await org.call("GET", "accounts")
        assert (fault.status, fault.body["error"]["code"]) == (503, "0x80040216")
    async with running() as org:
        missing = await org.call("GET", "widgets")
        assert missing.status == 404
        headers = {
            "Authorization": f"Bearer {org.token}",
            "Content-Type": "multipart/mixed; boundary=batch_x",
        }
        async with org.session.post(
            API + "$batch", data=b"--batch_x\r\n", headers=headers
        ) as reply:
            assert reply.status == 400
        remaining = await org.call("GET", "accounts")
        assert float(remaining.headers["x-ms-ratelimit-time-remaining-xrm-requests"]) < 1_200_000


async def test_run_forever_serves_until_cancelled() -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        run_forever(None, DataverseSimSettings(), "127.0.0.1", 0, ready.put_nowait)
    )
    base_url = await asyncio.wait_for(ready.get(), 5)
    async with aiohttp.ClientSession(base_url) as session, session.get("/_sim/state") as reply:
        assert (await reply.json())["tables"]["systemusers"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
