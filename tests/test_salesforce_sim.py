"""The Salesforce simulator over real loopback HTTP: OAuth, describe, REST, Collections, SOQL,
files, Bulk API 2.0 (also driven by the real simple-salesforce client over HTTPS) and quotas."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import requests
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from adapters.salesforce import soql
from adapters.salesforce.ids import IdMint, key_prefix, normalize, to_18
from adapters.salesforce.schema import FieldSpec, ObjectSpec, OrgSchema
from adapters.salesforce.sim import SalesforceSim, SfSimSettings, run_forever, serve
from adapters.salesforce.standard_objects import SchemaError
from adapters.simserver import ADMIN_HEADER

V = "/services/data/v59.0"
LOGIN = {"grant_type": "client_credentials", "client_id": "crmlift", "client_secret": "s3cret"}

SCHEMA = OrgSchema(
    {
        "Case_Matter__c": ObjectSpec(
            "Case_Matter__c",
            "Case Matter",
            custom=True,
            fields=(
                FieldSpec(
                    "Source_System_ID__c", "string", length=64, external_id=True, unique=True
                ),
                FieldSpec(
                    "Case_Type__c",
                    "picklist",
                    picklist_values=("Litigation", "Estate Planning", "Family"),
                    restricted=True,
                ),
                FieldSpec("Assigned_Attorney__c", "reference", reference_to=("User",)),
                FieldSpec("Account__c", "reference", reference_to=("Account",)),
                FieldSpec("Opened__c", "date"),
            ),
            enable_activities=True,
        ),
        "Account": ObjectSpec(
            "Account",
            "Account",
            fields=(
                FieldSpec(
                    "Source_System_ID__c", "string", length=64, external_id=True, unique=True
                ),
            ),
        ),
        "Contact": ObjectSpec(
            "Contact",
            "Contact",
            fields=(
                FieldSpec(
                    "Source_System_ID__c", "string", length=64, external_id=True, unique=True
                ),
                FieldSpec("Legacy_Key__c", "string", length=20, external_id=True),
            ),
        ),
    }
)
USERS = (("Admin User", "admin@firm.example"), ("Ada Attorney", "ada@firm.example"))


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any


class Api:
    """A bare client for the wire contract: one bearer token, raw replies, no retries."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.token = ""

    async def login(self, form: Mapping[str, str] = LOGIN) -> Reply:
        reply = await self.call("POST", "/services/oauth2/token", data=dict(form), token="")
        if reply.status == 200:
            self.token = reply.body["access_token"]
        return reply

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        bearer = self.token if token is None else token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        body = orjson.dumps(json) if json is not None else data
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, bytes):
            body = io.BytesIO(body)
        if json is not None:
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method, path, data=body, params=params, headers=sent
        ) as response:
            raw = await response.read()
            parsed: Any = raw
            if response.content_type == "application/json" and raw:
                parsed = orjson.loads(raw)
            elif response.content_type.startswith("text/"):
                parsed = raw.decode()
            return Reply(response.status, response.headers, parsed)

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        reply = await self.call(method, path, **kwargs)
        assert reply.status == status, (reply.status, reply.body)
        return reply.body


@asynccontextmanager
async def running(
    schema: OrgSchema = SCHEMA, **settings: Any
) -> AsyncIterator[tuple[SalesforceSim, Api]]:
    """A simulated org on a free loopback port and a client logged in to it."""
    sim = SalesforceSim(schema, SfSimSettings(users=USERS, **settings))
    runner, base_url = await serve(sim)
    try:
        async with aiohttp.ClientSession(
            base_url, headers={ADMIN_HEADER: sim.settings.admin_token}
        ) as session:
            api = Api(session)
            assert (await api.login()).status == 200
            yield sim, api
    finally:
        await runner.cleanup()


JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
"""The connected app's signing key; the simulator holds its public half."""
JWT_CERTIFICATE = JWT_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def signed_jwt(claims: Mapping[str, Any]) -> str:
    """An RS256 assertion signed by the connected app's key, as Salesforce requires."""

    def part(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")

    head = f"{part({'alg': 'RS256'})}.{part(claims)}"
    signature = JWT_KEY.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def multipart_upload(
    entity: Mapping[str, Any], payload: bytes, data_first: bool
) -> aiohttp.MultipartWriter:
    """A ContentVersion upload: ``entity_content`` JSON and ``VersionData`` bytes, either order."""
    form = aiohttp.MultipartWriter("form-data")
    steps = ["entity", "data"]
    for step in reversed(steps) if data_first else steps:
        if step == "entity":
            part = form.append(orjson.dumps(entity), {"Content-Type": "application/json"})
            part.set_content_disposition("form-data", name="entity_content")
        else:
            part = form.append(io.BytesIO(payload), {"Content-Type": "application/octet-stream"})
            part.set_content_disposition("form-data", name="VersionData", filename="file.pdf")
    return form


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def bulk_job(
    api: Api, operation: str, sobject: str, content: str, **extra: Any
) -> tuple[str, dict[str, Any]]:
    """Create, upload, close and poll one ingest job to a terminal state."""
    job = await api.ok(
        "POST",
        f"{V}/jobs/ingest",
        json={"object": sobject, "operation": operation, "contentType": "CSV", **extra},
    )
    assert job["state"] == "Open"
    headers = {"Content-Type": "text/csv"}
    await api.ok("PUT", f"{V}/jobs/ingest/{job['id']}/batches", 201, data=content, headers=headers)
    closed = await api.ok("PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    assert closed["state"] in {"UploadComplete", "InProgress"}
    return job["id"], await wait_for_job(api, job["id"])


async def wait_for_job(api: Api, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await api.ok("GET", f"{V}/jobs/ingest/{job_id}")
        if info["state"] in {"JobComplete", "Failed", "Aborted"}:
            return dict(info)
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


# -- ids and SOQL as pure functions


def test_ids_carry_the_real_case_safe_suffix() -> None:
    assert to_18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert normalize("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert normalize("001a0000006vm9riac") == "001A0000006Vm9rIAC"
    assert normalize("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    for bad in ("001A0000006Vm9", "001A0000006Vm9r!!!", "001A0000006Vm9r-AC", ""):
        assert normalize(bad) is None
    mint = IdMint()
    minted = [mint.next("003") for _ in range(5000)]
    assert len(set(minted)) == 5000
    assert all(len(i) == 18 and key_prefix(i) == "003" and to_18(i[:15]) == i for i in minted)


def test_soql_parses_the_supported_grammar() -> None:
    query = soql.parse(
        "select Id, Name, Account.Name FROM Contact WHERE (Email = 'a\\'b@x.io' OR Email = null) "
        "AND NOT LastName LIKE 'Sm%' AND CreatedDate > 2024-01-01T00:00:00Z "
        "AND Birthdate <= 2000-01-31 AND NumberOfEmployees IN (1, 2.5) "
        "ORDER BY LastName DESC NULLS FIRST, FirstName LIMIT 10 OFFSET 5"
    )
    assert query.sobject == "Contact"
    assert query.fields == ("Id", "Name", "Account.Name")
    assert query.order_by == (
        soql.OrderBy("LastName", True, False),
        soql.OrderBy("FirstName", False, False),
    )
    assert (query.limit, query.offset, query.count) == (10, 5, False)
    assert isinstance(query.where, soql.Junction)
    first = query.where.items[0]
    assert isinstance(first, soql.Junction)
    assert first.items[0] == soql.Condition("Email", "=", "a'b@x.io")
    assert set(soql.fields_of(query.where)) == {
        "Email",
        "LastName",
        "CreatedDate",
        "Birthdate",
        "NumberOfEmployees",
    }
    count = soql.parse("SELECT COUNT() FROM Account WHERE Name != 'x'")
    assert count.count
    assert count.fields == ()
    assert soql.parse("SELECT Id FROM Lead WHERE Status NOT IN ('a')").where == soql.Condition(
        "Status", "NOT IN", ("a",)
    )


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Account",
        "SELECT Id Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name = ",
        "SELECT Id FROM Account LIMIT x",
        "SELECT Id FROM Account WHERE Name ~ 'x'",
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
        "UPDATE Account",
    ],
)
def test_soql_refuses_malformed_queries(text: str) -> None:
    with pytest.raises(soql.SoqlError, match="ERROR at Row:1:Column:"):
        soql.parse(text)


def test_soql_semantics_match_salesforce() -> None:
    rows = [
        {"Name": "acme", "Stage": None, "Amount": 5, "Closed": "2024-05-09T14:52:19.000+0000"},
        {"Name": "Beta", "Stage": "Won", "Amount": 50, "Closed": None},
        {
            "Name": "Gamma",
            "Stage": "lost",
            "Amount": None,
            "Closed": "2023-01-01T00:00:00.000+0000",
        },
    ]

    def where(condition: str) -> list[str]:
        parsed = soql.parse(f"SELECT Name FROM X WHERE {condition}").where
        assert parsed is not None
        return [r["Name"] for r in rows if soql.evaluate(parsed, r.get)]

    assert where("Name = 'ACME'") == ["acme"]
    assert where("Stage != 'won'") == ["acme", "Gamma"]
    assert where("Stage = null") == ["acme"]
    assert where("Stage != null") == ["Beta", "Gamma"]
    assert where("Name LIKE '%m%'") == ["acme", "Gamma"]
    assert where("Name LIKE 'b_ta'") == ["Beta"]
    assert where("Stage IN ('WON', 'Lost')") == ["Beta", "Gamma"]
    assert where("Amount > 5") == ["Beta"]
    assert where("Amount >= 5 AND Amount < 50") == ["acme"]
    assert where("Closed > 2024-01-01T00:00:00Z") == ["acme"]
    assert where("Closed < 2024-01-01") == ["Gamma"]
    assert where("NOT (Amount > 5 OR Stage = 'lost')") == ["acme"]
    ordered = soql.order_rows(rows, [soql.OrderBy("Stage")], lambda r, f: r.get(f))
    assert [r["Name"] for r in ordered] == ["acme", "Gamma", "Beta"]
    descending = soql.order_rows(rows, [soql.OrderBy("Amount", True, True)], lambda r, f: r.get(f))
    assert [r["Name"] for r in descending] == ["Beta", "acme", "Gamma"]
    assert soql.parse("SELECT Id FROM X WHERE D = 2024-02-29").where == soql.Condition(
        "D", "=", date(2024, 2, 29)
    )
    moment = soql.parse("SELECT Id FROM X WHERE D = 2024-02-29T10:00:00+02:00").where
    assert isinstance(moment, soql.Condition)
    assert isinstance(moment.value, datetime)
    assert moment.value.hour == 8


# -- OAuth and sessions


async def test_oauth_flows_and_their_failures() -> None:
    async with running(jwt_certificate=JWT_CERTIFICATE) as (sim, api):
        basic = base64.b64encode(b"crmlift:s3cret").decode()
        reply = await api.call(
            "POST",
            "/services/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
            token="",
        )
        assert reply.status == 200
        body = reply.body
        assert body["token_type"] == "Bearer"
        assert body["instance_url"].startswith("http://127.0.0.1:")
        org_id, user_id = body["id"].rsplit("/", 2)[-2:]
        assert key_prefix(org_id) == "00D"
        assert user_id == sim.user_id("admin@firm.example")
        assert body["issued_at"].isdigit()
        assert body["signature"]

        password = {
            **LOGIN,
            "grant_type": "password",
            "username": "ada@firm.example",
            "password": "p4ssw0rd",
        }
        assert (await api.login(password)).body["id"].endswith(sim.user_id("ada@firm.example"))
        jwt = {
            "iss": "crmlift",
            "sub": "ada@firm.example",
            "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 180,
        }
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
        assert (await api.login({**form, "assertion": signed_jwt(jwt)})).status == 200

        failures = [
            ({**LOGIN, "client_secret": "nope"}, "invalid_client"),
            ({**LOGIN, "client_id": "other"}, "invalid_client_id"),
            ({**password, "password": "wrong"}, "invalid_grant"),
            ({**password, "username": "ghost@firm.example"}, "invalid_grant"),
            ({**form, "assertion": signed_jwt({**jwt, "iss": "other"})}, "invalid_client_id"),
            ({**form, "assertion": signed_jwt({**jwt, "exp": 1})}, "invalid_grant"),
            ({**form, "assertion": "not-a-jwt"}, "invalid_grant"),
            ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ]
        for bad_form, error in failures:
            reply = await api.call("POST", "/services/oauth2/token", data=bad_form, token="")
            assert (reply.status, reply.body["error"]) == (400, error), bad_form
        assert sim.stats.tokens_issued == 4

        for token in ("", "forged"):
            reply = await api.call("GET", f"{V}/limits", token=token)
            assert reply.status == 401
            assert reply.body == [
                {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
            ]
        assert sim.stats.api_requests == 0


async def test_expired_session_is_refused() -> None:
    async with running(token_ttl=0.2) as (_, api):
        assert (await api.call("GET", f"{V}/limits")).status == 200
        await asyncio.sleep(0.25)
        assert (await api.call("GET", f"{V}/limits")).body[0]["errorCode"] == "INVALID_SESSION_ID"


# -- describe


async def test_describe_standard_and_custom_objects() -> None:
    async with running() as (_, api):
        versions = await api.ok("GET", "/services/data/", token="")
        assert versions[-1] == {
            "label": "Winter '24",
            "url": "/services/data/v59.0",
            "version": "59.0",
        }
        listed = {o["name"]: o for o in (await api.ok("GET", f"{V}/sobjects/"))["sobjects"]}
        assert listed["Account"]["keyPrefix"] == "001"
        assert listed["ContentDocumentLink"]["keyPrefix"] == "06A"
        assert listed["AccountContactRelation"]["keyPrefix"] == "07k"
        assert listed["Case_Matter__c"]["keyPrefix"] == "a00"
        assert listed["Case_Matter__c"]["custom"] is True
        assert listed["User"]["createable"] is False

        account = await api.ok("GET", f"{V}/sobjects/Account/describe")
        fields = {f["name"]: f for f in account["fields"]}
        industry = fields["Industry"]
        assert industry["type"] == "picklist"
        assert industry["restrictedPicklist"] is False
        values = [p["value"] for p in industry["picklistValues"]]
        assert "Food & Beverage" in values
        assert len(values) == 32
        assert fields["Name"]["nillable"] is False
        assert fields["Name"]["length"] == 255
        assert fields["ParentId"]["referenceTo"] == ["Account"]
        assert fields["ParentId"]["relationshipName"] == "Parent"
        assert fields["CreatedDate"]["createable"] is False
        assert fields["Source_System_ID__c"]["custom"] is True
        assert any(c["childSObject"] == "Contact" for c in account["childRelationships"])

        matter = await api.ok("GET", f"{V}/sobjects/Case_Matter__c/describe/")
        fields = {f["name"]: f for f in matter["fields"]}
        ext = fields["Source_System_ID__c"]
        assert (ext["externalId"], ext["unique"], ext["idLookup"], ext["length"]) == (
            True,
            True,
            True,
            64,
        )
        assert fields["Case_Type__c"]["restrictedPicklist"] is True
        assert fields["Assigned_Attorney__c"]["referenceTo"] == ["User"]
        assert fields["Assigned_Attorney__c"]["relationshipName"] == "Assigned_Attorney__r"
        assert {"Id", "Name", "OwnerId", "CreatedDate"} <= set(fields)
        task = await api.ok("GET", f"{V}/sobjects/Task/describe")
        what = next(f for f in task["fields"] if f["name"] == "WhatId")
        assert what["referenceTo"] == [*TAKES_ACTIVITIES, "Case_Matter__c"]

    async with running(OrgSchema()) as (_, api):
        missing = await api.call("GET", f"{V}/sobjects/Case_Matter__c/describe")
        assert missing.status == 404
        assert missing.body == [
            {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
        ]
        listed = (await api.ok("GET", f"{V}/sobjects"))["sobjects"]
        assert "Case_Matter__c" not in {o["name"] for o in listed}
        assert (await api.call("GET", "/services/data/v99.0/limits")).status == 404


# -- REST records


async def test_rest_crud_types_and_request_level_errors() -> None:
    async with running() as (sim, api):
        created = await api.ok(
            "POST",
            f"{V}/sobjects/Account/",
            201,
            json={"Name": "Acme LLP", "NumberOfEmployees": "12", "Industry": "Made Up Industry"},
        )
        account_id = created["id"]
        assert created == {"id": account_id, "success": True, "errors": []}
        assert len(account_id) == 18
        assert account_id.startswith("001")
        contact = await api.ok(
            "POST",
            f"{V}/sobjects/Contact",
            201,
            json={
                "LastName": "Okafor",
                "FirstName": "Ngozi",
                "AccountId": account_id[:15],
                "Email": "ngozi@example.com",
            },
        )
        event = await api.ok(
            "POST",
            f"{V}/sobjects/Event",
            201,
            json={
                "Subject": "Deposition",
                "StartDateTime": "2024-05-09T16:52:19+02:00",
                "DurationInMinutes": 90,
                "WhoId": contact["id"],
                "WhatId": account_id,
            },
        )
        row = await api.ok("GET", f"{V}/sobjects/Event/{event['id']}")
        assert row["attributes"] == {"type": "Event", "url": f"{V}/sobjects/Event/{event['id']}"}
        assert row["StartDateTime"] == "2024-05-09T14:52:19.000+0000"
        assert row["EndDateTime"] == "2024-05-09T16:22:19.000+0000"
        assert row["OwnerId"] == sim.user_id("admin@firm.example")
        assert row["IsAllDayEvent"] is False

        got = await api.ok(
            "GET", f"{V}/sobjects/Contact/{contact['id']}", params={"fields": "Name,AccountId"}
        )
        assert {k: v for k, v in got.items() if k != "attributes"} == {
            "Name": "Ngozi Okafor",
            "AccountId": account_id,
        }
        path = f"{V}/sobjects/Contact/{contact['id']}"
        await api.ok("PATCH", path, 204, json={"Title": "Partner", "Email": None})
        assert sim.records("Contact")[0]["Title"] == "Partner"
        assert sim.records("Contact")[0]["Email"] is None

        refusals = [
            ({"LastName": "X", "Nickname__c": "y"}, "INVALID_FIELD", None),
            ({"LastName": None}, "REQUIRED_FIELD_MISSING", ["LastName"]),
            ({"Birthdate": "yesterday"}, "INVALID_FIELD", None),
            ({"Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
            ({"AccountId": contact["id"]}, "FIELD_INTEGRITY_EXCEPTION", ["AccountId"]),
            ({"AccountId": "001000000000zzz"}, "INVALID_CROSS_REFERENCE_KEY", ["AccountId"]),
            ({"AccountId": "garbage"}, "MALFORMED_ID", ["AccountId"]),
            ({"Name": "Jo"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Name"]),
        ]
        for values, code, fields in refusals:
            reply = await api.call("PATCH", path, json=values)
            assert reply.status == 400, values
            assert reply.body[0]["errorCode"] == code, reply.body
            if fields is not None:
                assert reply.body[0]["fields"] == fields
        unknown = await api.call("PATCH", path, json={"Nickname__c": "y"})
        assert (
            unknown.body[0]["message"] == "No such column 'Nickname__c' on sobject of type Contact"
        )
        bad_number = await api.call(
            "POST", f"{V}/sobjects/Account", json={"Name": "N", "NumberOfEmployees": "many"}
        )
        assert (bad_number.status, bad_number.body[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")
        user = await api.call("POST", f"{V}/sobjects/User", json={"LastName": "New"})
        assert user.body[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
        broken = await api.call(
            "POST",
            f"{V}/sobjects/Account",
            data=b"{nope",
            headers={"Content-Type": "application/json"},
        )
        assert (broken.status, broken.body[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")

        await api.ok("DELETE", f"{V}/sobjects/Account/{account_id}", 204)
        gone = await api.call("GET", f"{V}/sobjects/Account/{account_id}")
        assert (gone.status, gone.body[0]["errorCode"]) == (404, "ENTITY_IS_DELETED")
        assert sim.records("Contact") == []
        everything = await api.ok(
            "GET", f"{V}/queryAll/", params={"q": "SELECT Id, IsDeleted FROM Account"}
        )
        assert [r["IsDeleted"] for r in everything["records"]] == [True]
        live = await api.ok("GET", f"{V}/query", params={"q": "SELECT Id FROM Account"})
        assert live["totalSize"] == 0
        assert (await api.call("GET", f"{V}/sobjects/Widget__c/001")).status == 404
        assert (await api.call("PUT", f"{V}/sobjects/Account")).status == 405


async def test_single_upsert_creates_updates_and_reports_duplicates() -> None:
    async with running() as (sim, api):
        path = f"{V}/sobjects/Contact/Source_System_ID__c/BD-1"
        first = await api.call("PATCH", path, json={"LastName": "Mensah"})
        assert first.status == 201
        assert first.body == {
            "id": first.body["id"],
            "success": True,
            "errors": [],
            "created": True,
        }
        again = await api.call("PATCH", path.lower(), json={"FirstName": "Kofi"})
        assert again.status == 200
        assert again.body == {
            "id": first.body["id"],
            "success": True,
            "errors": [],
            "created": False,
        }
        [row] = sim.records("Contact")
        assert (row["FirstName"], row["LastName"], row["Source_System_ID__c"]) == (
            "Kofi",
            "Mensah",
            "BD-1",
        )
        by_ext = await api.ok("GET", f"{V}/sobjects/Contact/Source_System_ID__c/BD-1")
        assert by_ext["Id"] == first.body["id"]

        for name in ("Legacy One", "Legacy Two"):
            await api.ok(
                "POST", f"{V}/sobjects/Contact", 201, json={"LastName": name, "Legacy_Key__c": "L7"}
            )
        many = await api.call(
            "PATCH", f"{V}/sobjects/Contact/Legacy_Key__c/L7", json={"Title": "x"}
        )
        assert many.status == 300
        assert len(many.body) == 2
        assert all(u.startswith(f"{V}/sobjects/Contact/003") for u in many.body)

        missing_field = await api.call("PATCH", f"{V}/sobjects/Contact/Nope__c/1", json={})
        assert (missing_field.status, missing_field.body[0]["errorCode"]) == (404, "NOT_FOUND")
        not_external = await api.call("PATCH", f"{V}/sobjects/Contact/Email/a@b.co", json={})
        assert (not_external.status, not_external.body[0]["errorCode"]) == (400, "INVALID_FIELD")
        invalid = await api.call("PATCH", f"{V}/sobjects/Contact/Source_System_ID__c/BD-2", json={})
        assert invalid.body[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
        only_update = await api.call(
            "PATCH",
            f"{V}/sobjects/Contact/Source_System_ID__c/BD-3",
            json={"LastName": "X"},
            params={"updateOnly": "true"},
        )
        assert only_update.status == 404
        assert len(sim.records("Contact")) == 3


# -- sObject Collections


async def test_collections_report_per_record_errors_and_roll_back_all_or_none() -> None:
    async with running() as (sim, api):
        attorney = sim.user_id("ada@firm.example")
        assert attorney is not None

        def matter(ext: str, **values: Any) -> dict[str, Any]:
            return {"attributes": {"type": "Case_Matter__c"}, "Source_System_ID__c": ext, **values}

        records = [
            matter("M-1", Case_Type__c="Litigation", Assigned_Attorney__c=attorney),
            {"attributes": {"type": "Contact"}, "FirstName": "No Last Name"},
            {"attributes": {"type": "Contact"}, "LastName": "L" * 81},
            matter("M-2", Case_Type__c="Maritime"),
            matter("M-3", Assigned_Attorney__c="005000000000zzzAAA"),
            matter("m-1"),
        ]
        results = await api.ok(
            "POST", f"{V}/composite/sobjects", json={"allOrNone": False, "records": records}
        )
        assert len(results) == len(records)
        assert results[0]["success"] is True
        assert results[0]["id"].startswith("a00")
        codes = [r["errors"][0]["statusCode"] for r in results[1:]]
        assert codes == [
            "REQUIRED_FIELD_MISSING",
            "STRING_TOO_LONG",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "INVALID_CROSS_REFERENCE_KEY",
            "DUPLICATE_VALUE",
        ]
        assert results[1] == {
            "success": False,
            "errors": [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]",
                    "fields": ["LastName"],
                }
            ],
        }
        assert results[5]["errors"][0]["message"].endswith(results[0]["id"])
        [saved] = sim.records("Case_Matter__c")
        assert saved["Name"] == saved["Id"]
        assert saved["OwnerId"] == sim.user_id("admin@firm.example")

        rolled = await api.ok(
            "POST",
            f"{V}/composite/sobjects",
            json={
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Account"}, "Name": "Kept?"},
                    {"attributes": {"type": "Contact"}, "LastName": "Kept?"},
                    {"attributes": {"type": "Account"}},
                ],
            },
        )
        assert [r["errors"][0]["statusCode"] for r in rolled] == [
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "REQUIRED_FIELD_MISSING",
        ]
        assert sim.records("Account") == []
        assert sim.records("Contact") == []
        assert sim.records("AccountContactRelation") == []

        upserted = await api.ok(
            "PATCH",
            f"{V}/composite/sobjects/Case_Matter__c/Source_System_ID__c",
            json={
                "allOrNone": False,
                "records": [
                    matter("M-1", Case_Type__c="Family"),
                    matter("M-9", Case_Type__c="Estate Planning"),
                    matter("M-7"),
                    matter("m-7"),
                ],
            },
        )
        assert [(r["success"], r.get("created")) for r in upserted] == [
            (True, False),
            (True, True),
            (False, None),
            (False, None),
        ]
        assert upserted[2]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
        assert {
            r["Source_System_ID__c"]: r["Case_Type__c"] for r in sim.records("Case_Matter__c")
        } == {
            "M-1": "Family",
            "M-9": "Estate Planning",
        }

        updates = await api.ok(
            "PATCH",
            f"{V}/composite/sobjects",
            json={
                "records": [
                    {
                        "attributes": {"type": "Case_Matter__c"},
                        "id": upserted[1]["id"],
                        "Name": "Estate",
                    },
                    {"attributes": {"type": "Case_Matter__c"}, "Name": "No id"},
                ]
            },
        )
        assert updates[0]["success"]
        assert updates[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
        ids = ",".join([upserted[1]["id"], "a00000000000zzzAAA", "junk"])
        deleted = await api.ok("DELETE", f"{V}/composite/sobjects", params={"ids": ids})
        assert [r["success"] for r in deleted] == [True, False, False]
        assert deleted[2]["errors"][0]["statusCode"] == "MALFORMED_ID"

        too_many = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
        reply = await api.call("POST", f"{V}/composite/sobjects", json={"records": too_many})
        assert (reply.status, reply.body[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
        unknown = await api.call(
            "POST",
            f"{V}/composite/sobjects",
            json={"records": [{"attributes": {"type": "Account"}, "Name": "A", "Bogus__c": 1}]},
        )
        assert (unknown.status, unknown.body[0]["errorCode"]) == (400, "INVALID_FIELD")
        untyped = await api.call(
            "POST", f"{V}/composite/sobjects", json={"records": [{"Name": "A"}]}
        )
        assert untyped.body[0]["errorCode"] == "INVALID_TYPE"


# -- SOQL over HTTP


async def test_soql_select_where_count_relationships_and_paging() -> None:
    async with running() as (sim, api):
        org = sim.org
        admin = sim.user_id("admin@firm.example")
        assert admin is not None
        accounts, contacts = org.table("Account"), org.table("Contact")
        assert accounts is not None
        assert contacts is not None
        acme = org.create(accounts, {"Name": "Acme", "Industry": "Legal"}, admin)
        for n in range(4_500):
            values = {"LastName": f"Person {n:04d}", "Email": f"p{n}@example.com"}
            if n % 3 == 2:
                values["AccountId"] = acme
            org.create(contacts, values, admin)

        def q(text: str) -> dict[str, str]:
            return {"q": text}

        page = await api.ok(
            "GET",
            f"{V}/query",
            params=q("SELECT Id, LastName, Account.Name FROM Contact ORDER BY LastName DESC"),
        )
        assert page["totalSize"] == 4_500
        assert page["done"] is False
        assert len(page["records"]) == 2_000
        first = page["records"][0]
        assert first["LastName"] == "Person 4499"
        assert first["Account"]["Name"] == "Acme"
        assert first["Account"]["attributes"]["type"] == "Account"
        assert page["records"][1]["Account"] is None
        seen = list(page["records"])
        while not page["done"]:
            assert page["nextRecordsUrl"].startswith(f"{V}/query/01g")
            page = await api.ok("GET", page["nextRecordsUrl"])
            seen += page["records"]
        assert len({r["Id"] for r in seen}) == 4_500
        assert (
            await api.call("GET", page.get("nextRecordsUrl") or f"{V}/query/01gnope-2000")
        ).status == 400

        count = await api.ok(
            "GET", f"{V}/query", params=q("SELECT COUNT() FROM Contact WHERE Account.Name = 'ACME'")
        )
        assert count == {"totalSize": 1_500, "done": True, "records": []}
        matched = await api.ok(
            "GET",
            f"{V}/query/",
            params=q(
                "SELECT Id, Email FROM Contact WHERE LastName IN ('Person 0001', 'person 0002') "
                "OR (Email LIKE 'p4499@%' AND AccountId != null) ORDER BY LastName LIMIT 10"
            ),
        )
        assert [r["Email"] for r in matched["records"]] == [
            "p1@example.com",
            "p2@example.com",
            "p4499@example.com",
        ]
        by_id = await api.ok(
            "GET", f"{V}/query", params=q(f"SELECT Name FROM Account WHERE Id = '{acme[:15]}'")
        )
        assert by_id["records"][0]["Name"] == "Acme"
        small = await api.ok(
            "GET",
            f"{V}/query",
            params=q("SELECT Id FROM Contact LIMIT 450"),
            headers={"Sforce-Query-Options": "batchSize=200"},
        )
        assert len(small["records"]) == 200
        assert small["totalSize"] == 450
        errors = {
            "SELECT Id FROM": "MALFORMED_QUERY",
            "SELECT Nope__c FROM Contact": "INVALID_FIELD",
            "SELECT Id FROM Nope__c": "INVALID_TYPE",
            "SELECT Id FROM Account WHERE NumberOfEmployees = '5'": "INVALID_FIELD",
        }
        for text, code in errors.items():
            reply = await api.call("GET", f"{V}/query", params=q(text))
            assert (reply.status, reply.body[0]["errorCode"]) == (400, code), text


# -- files and relationship objects


async def test_content_version_multipart_json_and_links() -> None:
    async with running() as (sim, api):
        account = await api.ok("POST", f"{V}/sobjects/Account", 201, json={"Name": "Files Inc"})
        payload = bytes(range(256)) * 4_000
        for order in ("entity_first", "data_first"):
            entity = {
                "Title": f"Engagement letter {order}",
                "PathOnClient": "letters/Engagement.PDF",
                "FirstPublishLocationId": account["id"],
            }
            form = multipart_upload(entity, payload, data_first=order == "data_first")
            created = await api.ok("POST", f"{V}/sobjects/ContentVersion", 201, data=form)
            version = await api.ok("GET", f"{V}/sobjects/ContentVersion/{created['id']}")
            assert version["ContentSize"] == len(payload)
            assert (version["FileExtension"], version["FileType"]) == ("pdf", "PDF")
            assert (
                version["VersionData"] == f"{V}/sobjects/ContentVersion/{created['id']}/VersionData"
            )
            assert version["ContentDocumentId"].startswith("069")
            data = await api.call("GET", version["VersionData"])
            assert data.status == 200
            assert data.body == payload

        documents = sim.records("ContentDocument")
        assert len(documents) == 2
        links = sim.records("ContentDocumentLink")
        linked = {(k["ContentDocumentId"], k["LinkedEntityId"], k["ShareType"]) for k in links}
        for document in documents:
            assert (document["Id"], account["id"], "V") in linked
            assert (document["Id"], sim.user_id("admin@firm.example"), "I") in linked

        text = base64.b64encode(b"hello world").decode()
        json_version = await api.ok(
            "POST",
            f"{V}/sobjects/ContentVersion",
            201,
            json={"Title": "Note", "PathOnClient": "note.txt", "VersionData": text},
        )
        readback = await api.call(
            "GET", f"{V}/sobjects/ContentVersion/{json_version['id']}/VersionData"
        )
        assert readback.body == b"hello world"
        [row] = [r for r in sim.records("ContentVersion") if r["Id"] == json_version["id"]]
        contact = await api.ok("POST", f"{V}/sobjects/Contact", 201, json={"LastName": "Linked"})
        link = {
            "ContentDocumentId": row["ContentDocumentId"],
            "LinkedEntityId": contact["id"],
            "ShareType": "V",
        }
        made = await api.ok("POST", f"{V}/sobjects/ContentDocumentLink", 201, json=link)
        assert made["id"].startswith("06A")
        again = await api.call("POST", f"{V}/sobjects/ContentDocumentLink", json=link)
        assert again.body[0]["errorCode"] == "DUPLICATE_VALUE"
        bad_share = await api.call(
            "POST", f"{V}/sobjects/ContentDocumentLink", json={**link, "ShareType": "X"}
        )
        assert bad_share.body[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        no_doc = await api.call(
            "POST",
            f"{V}/sobjects/ContentDocumentLink",
            json={**link, "ContentDocumentId": "069000000000zzzAAA"},
        )
        assert no_doc.body[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
        no_data = await api.call(
            "POST", f"{V}/sobjects/ContentVersion", json={"Title": "x", "PathOnClient": "x.txt"}
        )
        assert no_data.body[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
        assert no_data.body[0]["fields"] == ["VersionData"]
        await api.ok("DELETE", f"{V}/sobjects/ContentDocument/{row['ContentDocumentId']}", 204)
        assert all(v["Id"] != json_version["id"] for v in sim.records("ContentVersion"))
        assert all(k["LinkedEntityId"] != contact["id"] for k in sim.records("ContentDocumentLink"))


async def test_account_contact_relations_follow_the_primary_account() -> None:
    async with running() as (sim, api):
        first = await api.ok("POST", f"{V}/sobjects/Account", 201, json={"Name": "First"})
        second = await api.ok("POST", f"{V}/sobjects/Account", 201, json={"Name": "Second"})
        contact = await api.ok(
            "POST", f"{V}/sobjects/Contact", 201, json={"LastName": "Ode", "AccountId": first["id"]}
        )
        [direct] = sim.records("AccountContactRelation")
        assert direct["Id"].startswith("07k")
        assert (direct["AccountId"], direct["ContactId"], direct["IsDirect"]) == (
            first["id"],
            contact["id"],
            True,
        )
        relation = {
            "AccountId": second["id"],
            "ContactId": contact["id"],
            "Roles": "Decision Maker;Other",
        }
        indirect = await api.ok("POST", f"{V}/sobjects/AccountContactRelation", 201, json=relation)
        duplicate = await api.call("POST", f"{V}/sobjects/AccountContactRelation", json=relation)
        assert (duplicate.status, duplicate.body[0]["errorCode"]) == (400, "DUPLICATE_VALUE")
        of_direct = await api.call(
            "POST",
            f"{V}/sobjects/AccountContactRelation",
            json={"AccountId": first["id"], "ContactId": contact["id"]},
        )
        assert of_direct.body[0]["errorCode"] == "DUPLICATE_VALUE"
        read_only = await api.call(
            "POST", f"{V}/sobjects/AccountContactRelation", json={**relation, "IsDirect": True}
        )
        assert read_only.body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

        await api.ok(
            "PATCH", f"{V}/sobjects/Contact/{contact['id']}", 204, json={"AccountId": second["id"]}
        )
        relations = {r["AccountId"]: r for r in sim.records("AccountContactRelation")}
        assert set(relations) == {second["id"]}
        assert relations[second["id"]]["Id"] == indirect["id"]
        assert relations[second["id"]]["IsDirect"] is True


# -- quotas and faults


async def test_daily_allocation_is_counted_reported_and_enforced() -> None:
    async with running(daily_api_requests=3) as (sim, api):
        usage = []
        for _ in range(3):
            reply = await api.call("GET", f"{V}/limits")
            assert reply.status == 200
            usage.append(reply.headers["Sforce-Limit-Info"])
        assert usage == ["api-usage=1/3", "api-usage=2/3", "api-usage=3/3"]
        assert reply.body["DailyApiRequests"] == {"Max": 3, "Remaining": 0}
        assert reply.body["DailyBulkApiBatches"] == {"Max": 15_000, "Remaining": 15_000}
        refused = await api.call("POST", f"{V}/sobjects/Account", json={"Name": "Late"})
        assert refused.status == 403
        assert refused.body == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"
        assert sim.records("Account") == []
        assert (sim.stats.api_requests, sim.stats.limit_exceeded) == (3, 1)
        assert sim.stats.by_endpoint == {"GET /limits": 3}
        state = await api.ok("GET", "/_sim/state", token="")
        assert state["stats"]["api_requests"] == 3
        assert state["objects"]["User"] == 2


async def test_injected_faults_answer_5xx_before_any_effect() -> None:
    async with running(fault_503_rate=1.0) as (sim, api):
        reply = await api.call("POST", f"{V}/sobjects/Account", json={"Name": "Never"})
        assert (reply.status, reply.body[0]["errorCode"]) == (503, "SERVER_UNAVAILABLE")
        assert sim.records("Account") == []
        assert (sim.stats.faults, sim.stats.faults_503) == (1, 1)
        assert sim.stats.api_requests == 0
    async with running(fault_500_rate=1.0) as (sim, api):
        reply = await api.call("POST", f"{V}/sobjects/Account", json={"Name": "Never"})
        assert (reply.status, reply.body[0]["errorCode"]) == (500, "UNKNOWN_EXCEPTION")
        assert sim.records("Account") == []
        assert (sim.stats.faults, sim.stats.faults_500) == (1, 1)
        assert sim.stats.api_requests == 0


# -- Bulk API 2.0


async def test_bulk_insert_runs_the_full_state_machine() -> None:
    async with running() as (sim, api):
        account = await api.ok(
            "POST",
            f"{V}/sobjects/Account",
            201,
            json={"Name": "Acme", "Source_System_ID__c": "A-1"},
        )
        content = (
            "LastName,FirstName,Email,Account.Source_System_ID__c,Description\n"
            'Adeyemi,Tolu,tolu@example.com,A-1,"Line one\nline ""two"""\n'
            ",Nameless,n@example.com,,\n"
            "Brown,#N/A,bad-email,,\n"
            "Chen,Li,li@example.com,A-404,\n"
        )
        job_id, info = await bulk_job(api, "insert", "Contact", content, lineEnding="LF")
        assert job_id.startswith("750")
        assert len(job_id) == 18
        assert info["state"] == "JobComplete"
        assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (4, 3)
        assert info["jobType"] == "V2Ingest"
        assert info["apiVersion"] == 59.0
        assert "contentUrl" not in info
        assert isinstance(info["totalProcessingTime"], int)

        success = await api.call("GET", f"{V}/jobs/ingest/{job_id}/successfulResults/")
        assert success.headers["Content-Type"].startswith("text/csv")
        assert success.body.startswith('"sf__Id","sf__Created","LastName"')
        [ok] = read_csv(success.body)
        assert ok["sf__Created"] == "true"
        assert ok["Description"] == 'Line one\nline "two"'
        contact = next(r for r in sim.records("Contact") if r["Id"] == ok["sf__Id"])
        assert contact["AccountId"] == account["id"]
        failed = read_csv((await api.call("GET", f"{V}/jobs/ingest/{job_id}/failedResults")).body)
        errors = sorted(row["sf__Error"] for row in failed)
        assert errors[0] == "INVALID_EMAIL_ADDRESS:Email: invalid email address: bad-email:Email --"
        assert errors[1].startswith("INVALID_FIELD:Foreign key external ID: A-404 not found")
        assert (
            errors[2]
            == "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
        )
        assert all(row["sf__Id"] == "" for row in failed)
        unprocessed = await api.call("GET", f"{V}/jobs/ingest/{job_id}/unprocessedRecords")
        assert unprocessed.body.splitlines() == [
            '"LastName","FirstName","Email","Account.Source_System_ID__c","Description"'
        ]
        listing = await api.ok("GET", f"{V}/jobs/ingest")
        assert [job["id"] for job in listing["records"]] == [job_id]
        await api.ok("DELETE", f"{V}/jobs/ingest/{job_id}", 204)
        assert (await api.call("GET", f"{V}/jobs/ingest/{job_id}")).status == 404
        assert sim.stats.bulk_jobs == 1
        assert sim.stats.bulk_batches == 1
        assert sim.stats.bulk_records == 4
        assert sim.stats.by_endpoint["PUT /jobs/ingest/{job}/batches"] == 1


async def test_bulk_upsert_reports_created_then_updated_and_deletes() -> None:
    async with running() as (sim, api):
        rows = "\r\n".join(f"BD-{n}|Matter {n}|Litigation" for n in range(25_000))
        content = f"Source_System_ID__c|Name|Case_Type__c\r\n{rows}\r\n"
        extra = {
            "externalIdFieldName": "Source_System_ID__c",
            "lineEnding": "CRLF",
            "columnDelimiter": "PIPE",
        }
        first_id, first = await bulk_job(api, "upsert", "Case_Matter__c", content, **extra)
        assert (first["state"], first["numberRecordsProcessed"]) == ("JobComplete", 25_000)
        assert first["externalIdFieldName"] == "Source_System_ID__c"
        results = await api.call("GET", f"{V}/jobs/ingest/{first_id}/successfulResults")
        assert results.body.startswith('"sf__Id"|"sf__Created"|"Source_System_ID__c"')
        created = list(csv.DictReader(io.StringIO(results.body), delimiter="|"))
        assert len(created) == 25_000
        assert {r["sf__Created"] for r in created} == {"true"}

        updated_rows = content.replace("Litigation", "Family")
        second_id, second = await bulk_job(api, "upsert", "Case_Matter__c", updated_rows, **extra)
        assert second["numberRecordsFailed"] == 0
        again = await api.call("GET", f"{V}/jobs/ingest/{second_id}/successfulResults")
        rerun = list(csv.DictReader(io.StringIO(again.body), delimiter="|"))
        assert {r["sf__Created"] for r in rerun} == {"false"}
        assert {r["sf__Id"] for r in rerun} == {r["sf__Id"] for r in created}
        assert {r["Case_Type__c"] for r in sim.records("Case_Matter__c")} == {"Family"}
        assert sim.stats.bulk_batches == 6

        dupes = "Source_System_ID__c,Case_Type__c\nBD-1,Estate Planning\nbd-1,Family\nNEW-1,Bogus\n"
        dupes_id, info = await bulk_job(
            api, "upsert", "Case_Matter__c", dupes, externalIdFieldName="Source_System_ID__c"
        )
        assert info["numberRecordsFailed"] == 3
        failed = read_csv((await api.call("GET", f"{V}/jobs/ingest/{dupes_id}/failedResults")).body)
        assert [r["sf__Error"].split(":")[0] for r in failed] == [
            "DUPLICATE_VALUE",
            "DUPLICATE_VALUE",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ]
        # A key repeated in the payload is DUPLICATE_VALUE "Duplicate external id specified"
        # on the key field (see sim_store.duplicate_key); DUPLICATE_EXTERNAL_ID is for a key
        # the org already holds on two records.
        assert failed[0]["sf__Error"] == (
            "DUPLICATE_VALUE:Duplicate external id specified: BD-1:Source_System_ID__c --"
        )

        doomed = [r["sf__Id"] for r in created[:3]]
        delete_csv = "Id\n" + "\n".join([*doomed, "a00000000000zzzAAA"]) + "\n"
        _, deleted = await bulk_job(api, "delete", "Case_Matter__c", delete_csv)
        assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (4, 1)
        assert len(sim.records("Case_Matter__c")) == 25_000 - 3
        update_csv = f"Id,Name\n{created[3]['sf__Id']},Renamed\n{doomed[0]},Gone\n"
        _, updated = await bulk_job(api, "update", "Case_Matter__c", update_csv)
        assert updated["numberRecordsFailed"] == 1


async def test_bulk_abort_unprocessed_failures_and_state_rules() -> None:
    async with running() as (sim, api):
        job = await api.ok(
            "POST", f"{V}/jobs/ingest", json={"object": "Account", "operation": "insert"}
        )
        assert job["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job['id']}/batches"
        assert job["lineEnding"] == "LF"
        assert job["columnDelimiter"] == "COMMA"
        batches = f"{V}/jobs/ingest/{job['id']}/batches"
        content = "Name,Website\nOne,one.example\nTwo,two.example\n"
        await api.ok("PUT", batches, 201, data=content, headers={"Content-Type": "text/csv"})
        twice = await api.call("PUT", batches, data=content, headers={"Content-Type": "text/csv"})
        assert twice.status == 400
        early_delete = await api.call("DELETE", f"{V}/jobs/ingest/{job['id']}")
        assert early_delete.body[0]["errorCode"] == "INVALIDJOBSTATE"
        aborted = await api.ok("PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "Aborted"})
        assert aborted["state"] == "Aborted"
        unprocessed = await api.call("GET", f"{V}/jobs/ingest/{job['id']}/unprocessedrecords/")
        assert read_csv(unprocessed.body) == [
            {"Name": "One", "Website": "one.example"},
            {"Name": "Two", "Website": "two.example"},
        ]
        closed = await api.call(
            "PATCH", f"{V}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"}
        )
        assert closed.status == 400
        await api.ok("DELETE", f"{V}/jobs/ingest/{job['id']}", 204)
        assert sim.records("Account") == []

        _, unknown = await bulk_job(api, "insert", "Account", "Name,Shoe_Size__c\nA,9\n")
        assert unknown["state"] == "Failed"
        assert unknown["errorMessage"] == "InvalidBatch : Field name not found : Shoe_Size__c"
        _, wrong_ending = await bulk_job(api, "insert", "Account", "Name\r\nA\r\n")
        assert wrong_ending["state"] == "Failed"
        assert "LineEnding is invalid" in wrong_ending["errorMessage"]

        bad_jobs = [
            {"object": "Nope__c", "operation": "insert"},
            {"object": "Account", "operation": "merge"},
            {"object": "Account", "operation": "upsert"},
            {"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"},
            {"object": "Account", "operation": "insert", "columnDelimiter": "SPACE"},
        ]
        for body in bad_jobs:
            reply = await api.call("POST", f"{V}/jobs/ingest", json=body)
            assert (reply.status, reply.body[0]["errorCode"]) == (400, "INVALIDJOB"), body
        missing = await api.call("GET", f"{V}/jobs/ingest/750000000000zzzAAA/failedResults")
        assert missing.status == 404


async def test_bulk_batch_allocation_fails_the_job_and_leaves_rows_unprocessed() -> None:
    async with running(daily_bulk_batches=1) as (sim, api):
        rows = "".join(f"Account {n}\n" for n in range(12_000))
        job_id, info = await bulk_job(api, "insert", "Account", f"Name\n{rows}")
        assert info["state"] == "Failed"
        assert info["errorMessage"].startswith("ExceededQuota")
        assert info["numberRecordsProcessed"] == 10_000
        left = await api.call("GET", f"{V}/jobs/ingest/{job_id}/unprocessedRecords")
        assert len(read_csv(left.body)) == 2_000
        assert len(sim.records("Account")) == 10_000
        limits = await api.ok("GET", f"{V}/limits")
        assert limits["DailyBulkApiBatches"] == {"Max": 1, "Remaining": 0}


async def test_bulk_upsert_of_100k_records_processes_every_row() -> None:
    """Correctness at scale only; the simulator's speed is measured by `./dev bench migrate`."""
    async with running() as (sim, api):
        rows = "".join(f"K-{n},Person {n},k{n}@example.com\n" for n in range(100_000))
        content = f"Source_System_ID__c,LastName,Email\n{rows}"
        _, info = await bulk_job(
            api, "upsert", "Contact", content, externalIdFieldName="Source_System_ID__c"
        )
        assert info["numberRecordsProcessed"] == 100_000
        assert info["numberRecordsFailed"] == 0
        assert len(sim.records("Contact")) == 100_000


async def test_bulk_abort_mid_flight_and_multipart_job_creation() -> None:
    async with running(bulk_records_per_second=5_000.0) as (sim, api):
        rows = "".join(f"Slow {n}\n" for n in range(20_000))
        job = await api.ok(
            "POST", f"{V}/jobs/ingest", json={"object": "Account", "operation": "insert"}
        )
        path = f"{V}/jobs/ingest/{job['id']}"
        headers = {"Content-Type": "text/csv"}
        await api.ok("PUT", f"{path}/batches", 201, data=f"Name\n{rows}", headers=headers)
        await api.ok("PATCH", path, json={"state": "UploadComplete"})
        for _ in range(500):
            if (await api.ok("GET", path))["numberRecordsProcessed"] >= 1_000:
                break
            await asyncio.sleep(0.02)
        aborted = await api.ok("PATCH", path, json={"state": "Aborted"})
        assert aborted["state"] == "Aborted"
        await asyncio.sleep(0.1)
        info = await api.ok("GET", path)
        done = info["numberRecordsProcessed"]
        assert 1_000 <= done < 20_000
        assert len(sim.records("Account")) == done
        left = read_csv((await api.call("GET", f"{path}/unprocessedRecords")).body)
        saved = read_csv((await api.call("GET", f"{path}/successfulResults")).body)
        assert len(left) + len(saved) == 20_000

        form = aiohttp.MultipartWriter("form-data")
        spec = {"object": "Account", "operation": "insert", "contentType": "CSV"}
        form.append_json(spec).set_content_disposition("form-data", name="job")
        content = form.append("Name\nFrom multipart\n", {"Content-Type": "text/csv"})
        content.set_content_disposition("form-data", name="content", filename="accounts.csv")
        created = await api.ok("POST", f"{V}/jobs/ingest", data=form)
        assert created["state"] == "UploadComplete"
        finished = await wait_for_job(api, created["id"])
        assert (finished["state"], finished["numberRecordsProcessed"]) == ("JobComplete", 1)


async def test_multipart_upload_beyond_the_json_blob_limit() -> None:
    async with running() as (sim, api):
        payload = b"%PDF" + bytes(40_000_000)
        entity = {"PathOnClient": "big scan.pdf"}
        form = multipart_upload(entity, payload, data_first=False)
        created = await api.ok("POST", f"{V}/sobjects/ContentVersion", 201, data=form)
        [version] = sim.records("ContentVersion")
        assert (version["Id"], version["ContentSize"], version["Title"]) == (
            created["id"],
            len(payload),
            "big scan",
        )
        too_big = "A" * 37_500_004
        reply = await api.call(
            "POST",
            f"{V}/sobjects/ContentVersion",
            json={"PathOnClient": "x.pdf", "VersionData": too_big},
        )
        assert (reply.status, reply.body[0]["errorCode"]) == (400, "STORAGE_LIMIT_EXCEEDED")


async def test_run_forever_serves_a_schema_file_until_cancelled(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    SCHEMA.save(schema_file)
    ready: asyncio.Queue[str] = asyncio.Queue()
    settings = SfSimSettings(users=USERS)
    server = asyncio.create_task(
        run_forever(schema_file, settings, "127.0.0.1", 0, ready.put_nowait)
    )
    try:
        url = await asyncio.wait_for(ready.get(), 5)
        async with aiohttp.ClientSession(url) as session:
            api = Api(session)
            assert (await api.login()).status == 200
            describe = await api.ok("GET", f"{V}/sobjects/Case_Matter__c/describe")
            assert describe["keyPrefix"] == "a00"
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


# -- the real simple-salesforce client over HTTPS


async def test_simple_salesforce_bulk2_over_https(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    client_context = ssl.create_default_context(cafile=str(ca_file))

    sim = SalesforceSim(SCHEMA, SfSimSettings(users=USERS))
    runner, url = await serve(sim, ssl_context=server_context)
    try:
        assert url.startswith("https://127.0.0.1:")
        connector = aiohttp.TCPConnector(ssl=client_context)
        async with aiohttp.ClientSession(url, connector=connector) as session:
            api = Api(session)
            token = (await api.login()).body["access_token"]
        csv_file = tmp_path / "contacts.csv"
        csv_file.write_text(
            "LastName,FirstName,Source_System_ID__c\nOkoro,Ada,BD-1\nLi,Wei,BD-2\n,Nobody,BD-3\n"
        )

        def drive() -> dict[str, Any]:
            with requests.Session() as http:
                http.trust_env = False  # REQUESTS_CA_BUNDLE / proxies would override verify
                http.verify = str(ca_file)
                sf = Salesforce(instance_url=url, session_id=token, session=http, version="59.0")
                [inserted] = sf.bulk2.Contact.insert(csv_file=str(csv_file), wait=0)
                successes = sf.bulk2.Contact.get_successful_records(inserted["job_id"])
                failures = sf.bulk2.Contact.get_failed_records(inserted["job_id"])
                unprocessed = sf.bulk2.Contact.get_unprocessed_records(inserted["job_id"])
                [upserted] = sf.bulk2.Contact.upsert(
                    records=[{"Source_System_ID__c": "BD-1", "Title": "Partner"}],
                    external_id_field="Source_System_ID__c",
                    wait=0,
                )
                upsert_results = sf.bulk2.Contact.get_successful_records(upserted["job_id"])
                return {
                    "inserted": inserted,
                    "successes": successes,
                    "failures": failures,
                    "unprocessed": unprocessed,
                    "upserted": upserted,
                    "upsert_results": upsert_results,
                }

        outcome = await asyncio.to_thread(drive)
        inserted = outcome["inserted"]
        assert inserted["numberRecordsProcessed"] == 3
        assert inserted["numberRecordsFailed"] == 1
        assert inserted["numberRecordsTotal"] == 3
        successes = read_csv(outcome["successes"])
        assert {r["Source_System_ID__c"] for r in successes} == {"BD-1", "BD-2"}
        assert all(r["sf__Id"].startswith("003") and r["sf__Created"] == "true" for r in successes)
        [failure] = read_csv(outcome["failures"])
        assert failure["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
        assert read_csv(outcome["unprocessed"]) == []
        assert outcome["upserted"]["numberRecordsFailed"] == 0
        [updated] = read_csv(outcome["upsert_results"])
        assert updated["sf__Created"] == "false"
        titles = {r["Source_System_ID__c"]: r.get("Title") for r in sim.records("Contact")}
        assert titles == {"BD-1": "Partner", "BD-2": None}
        assert sim.stats.bulk_jobs == 2
    finally:
        await runner.cleanup()


# -- issue 9: the simulator refuses what a real org refuses

FIDELITY = OrgSchema(
    {
        "Case_Matter__c": ObjectSpec(
            "Case_Matter__c",
            "Case Matter",
            custom=True,
            fields=(FieldSpec("Source_System_ID__c", "string", external_id=True, unique=True),),
            enable_activities=True,
        ),
        "Case_Note__c": ObjectSpec("Case_Note__c", "Case Note", custom=True),
        "Case_Party__c": ObjectSpec(
            "Case_Party__c",
            "Case Party",
            custom=True,
            fields=(
                FieldSpec(
                    "Matter__c", "reference", reference_to=("Case_Matter__c",), master_detail=True
                ),
            ),
        ),
        "Claim__c": ObjectSpec(
            "Claim__c",
            "Claim",
            custom=True,
            fields=(
                FieldSpec(
                    "Matter__c",
                    "reference",
                    reference_to=("Case_Matter__c",),
                    master_detail=True,
                    reparentable=True,
                ),
            ),
        ),
        "ContentVersion": ObjectSpec(
            "ContentVersion",
            "Content Version",
            fields=(FieldSpec("Source_System_ID__c", "string", external_id=True, unique=True),),
        ),
        "Activity": ObjectSpec(
            "Activity",
            "Activity",
            fields=(FieldSpec("Source_System_ID__c", "string", length=255, external_id=True),),
        ),
    }
)


TAKES_ACTIVITIES = ["Account", "Opportunity", "Case", "Campaign", "Contract", "Product2", "Asset"]
"""Standard objects the simulator knows that take activities, as Task.WhatId lists them
(Object Reference, TaskRelation: "account, asset, campaign, case, contract, opportunity,
product, solution, or custom object",
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_taskrelation.htm)."""


def by_name(describe: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in describe["fields"]}


async def test_activities_only_relate_to_objects_that_allow_activities() -> None:
    """Allow Activities (Metadata API CustomObject.enableActivities,
    https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customobject.htm):
    WhatId lists exactly the objects that take activities, and refuses the others."""
    async with running(FIDELITY) as (sim, api):
        for sobject in ("Task", "Event"):
            what = by_name(await api.ok("GET", f"{V}/sobjects/{sobject}/describe"))["WhatId"]
            assert what["referenceTo"] == [*TAKES_ACTIVITIES, "Case_Matter__c"]
            assert what["label"] == "Related To ID"
        matter = await api.ok("POST", f"{V}/sobjects/Case_Matter__c", 201, json={})
        note = await api.ok("POST", f"{V}/sobjects/Case_Note__c", 201, json={})
        task = {"Subject": "Call the client", "WhatId": note["id"]}
        refused = await api.call("POST", f"{V}/sobjects/Task", json=task)
        assert refused.status == 400
        assert refused.body[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
        assert refused.body[0]["message"] == (
            f"Related To ID: id value of incorrect type: {note['id']}"
        )
        assert refused.body[0]["fields"] == ["WhatId"]
        contact = await api.ok("POST", f"{V}/sobjects/Contact", 201, json={"LastName": "Client"})
        for other in (contact["id"], sim.user_id("admin@firm.example")):
            wrong = await api.call("POST", f"{V}/sobjects/Task", json={"WhatId": other})
            assert wrong.body[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", other
        task["WhatId"] = matter["id"]
        await api.ok("POST", f"{V}/sobjects/Task", 201, json=task)
        opportunity = await api.ok(
            "POST",
            f"{V}/sobjects/Opportunity",
            201,
            json={"Name": "Settlement", "StageName": "Prospecting", "CloseDate": "2024-06-30"},
        )
        await api.ok("POST", f"{V}/sobjects/Task", 201, json={"WhatId": opportunity["id"]})


async def test_master_detail_is_required_never_reparented_and_cascades_deletes() -> None:
    """Master-detail (CustomField.reparentableMasterDetail,
    https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customfield.htm;
    https://help.salesforce.com/s/articleView?id=sf.relationships_considerations.htm)."""
    async with running(FIDELITY) as (sim, api):
        party = by_name(await api.ok("GET", f"{V}/sobjects/Case_Party__c/describe"))
        master = party["Matter__c"]
        assert (master["nillable"], master["createable"], master["updateable"]) == (
            False,
            True,
            False,
        )
        assert (master["relationshipOrder"], master["cascadeDelete"]) == (0, True)
        assert "OwnerId" not in party, "a detail is owned through its master"
        claim = by_name(await api.ok("GET", f"{V}/sobjects/Claim__c/describe"))
        assert claim["Matter__c"]["updateable"] is True
        matter = await api.ok("GET", f"{V}/sobjects/Case_Matter__c/describe")
        children = {c["childSObject"]: c["cascadeDelete"] for c in matter["childRelationships"]}
        assert children["Case_Party__c"] is True

        first, second = [
            (await api.ok("POST", f"{V}/sobjects/Case_Matter__c", 201, json={}))["id"]
            for _ in range(2)
        ]
        orphan = await api.call("POST", f"{V}/sobjects/Case_Party__c", json={})
        assert orphan.body[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
        owned = await api.call(
            "POST", f"{V}/sobjects/Case_Party__c", json={"Matter__c": first, "OwnerId": "x"}
        )
        assert owned.body[0]["errorCode"] == "INVALID_FIELD"
        party_id = (
            await api.ok("POST", f"{V}/sobjects/Case_Party__c", 201, json={"Matter__c": first})
        )["id"]
        moved = await api.call(
            "PATCH", f"{V}/sobjects/Case_Party__c/{party_id}", json={"Matter__c": second}
        )
        assert moved.status == 400
        assert moved.body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert moved.body[0]["message"].startswith("Unable to create/update fields: Matter__c.")
        claim_id = (await api.ok("POST", f"{V}/sobjects/Claim__c", 201, json={"Matter__c": first}))[
            "id"
        ]
        await api.ok("PATCH", f"{V}/sobjects/Claim__c/{claim_id}", 204, json={"Matter__c": second})

        await api.ok("DELETE", f"{V}/sobjects/Case_Matter__c/{first}", 204)
        assert sim.records("Case_Party__c") == []
        assert [r["Id"] for r in sim.records("Claim__c")] == [claim_id]
        assert sim.org.is_recycled(party_id)


async def test_create_only_fields_refuse_updates_and_a_changed_file_is_a_new_version() -> None:
    """ContentVersion.PathOnClient/VersionData and AccountContactRelation.AccountId/ContactId
    are Create, not Update (Object Reference: ContentVersion, AccountContactRelation,
    https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contentversion.htm);
    a version inserted with ContentDocumentId becomes the document's latest."""
    async with running(FIDELITY) as (sim, api):
        version = by_name(await api.ok("GET", f"{V}/sobjects/ContentVersion/describe"))
        relation = by_name(await api.ok("GET", f"{V}/sobjects/AccountContactRelation/describe"))
        for field in (
            version["PathOnClient"],
            version["VersionData"],
            relation["AccountId"],
            relation["ContactId"],
        ):
            assert (field["createable"], field["updateable"]) == (True, False), field["name"]
        assert version["ReasonForChange"]["updateable"] is True
        assert version["ContentLocation"]["defaultedOnCreate"] is True

        def upload(ext: str, body: bytes, **extra: str) -> dict[str, Any]:
            data = base64.b64encode(body).decode()
            return {"PathOnClient": "brief.txt", "VersionData": data, "Source_System_ID__c": ext}

        first = await api.ok("POST", f"{V}/sobjects/ContentVersion", 201, json=upload("D-1", b"v1"))
        [v1] = sim.records("ContentVersion")
        document = v1["ContentDocumentId"]
        changed = await api.call(
            "PATCH",
            f"{V}/sobjects/ContentVersion/{first['id']}",
            json={"PathOnClient": "brief-2.txt", "VersionData": base64.b64encode(b"v2").decode()},
        )
        assert changed.status == 400
        assert changed.body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert changed.body[0]["message"].startswith("Unable to create/update fields: PathOnClient")

        reused = await api.call(
            "POST",
            f"{V}/sobjects/ContentVersion",
            json={**upload("D-1", b"v2"), "ContentDocumentId": document},
        )
        assert reused.body[0]["errorCode"] == "DUPLICATE_VALUE", "versions can't share a unique id"
        second = await api.ok(
            "POST",
            f"{V}/sobjects/ContentVersion",
            201,
            json={**upload("D-1#2", b"v2"), "ContentDocumentId": document},
        )
        versions = {r["Id"]: r for r in sim.records("ContentVersion")}
        assert versions[first["id"]]["IsLatest"] is False
        assert (versions[second["id"]]["IsLatest"], versions[second["id"]]["VersionNumber"]) == (
            True,
            "2",
        )
        [doc] = sim.records("ContentDocument")
        assert (doc["Id"], doc["LatestPublishedVersionId"]) == (document, second["id"])

        account = await api.ok("POST", f"{V}/sobjects/Account", 201, json={"Name": "Acme"})
        other = await api.ok("POST", f"{V}/sobjects/Account", 201, json={"Name": "Other"})
        contact = await api.ok(
            "POST",
            f"{V}/sobjects/Contact",
            201,
            json={"LastName": "Li", "AccountId": account["id"]},
        )
        acr = await api.ok(
            "POST",
            f"{V}/sobjects/AccountContactRelation",
            201,
            json={"AccountId": other["id"], "ContactId": contact["id"]},
        )
        moved = await api.call(
            "PATCH",
            f"{V}/sobjects/AccountContactRelation/{acr['id']}",
            json={"AccountId": account["id"], "Roles": "Influencer"},
        )
        assert moved.body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


async def test_a_value_that_cannot_be_deserialised_fails_the_whole_collections_request() -> None:
    """REST API error responses: 400 JSON_PARSER_ERROR for the request, nothing written
    (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
    repeated external ids in one upsert fail each of those records with DUPLICATE_VALUE
    "Duplicate external id specified" (the REST guide is silent; a real org's words for
    the same save path: https://salesforce.stackexchange.com/questions/104048).
    Bulk API 2.0 keeps failing such a row on its own."""
    async with running() as (sim, api):

        def matter(ext: str, **values: Any) -> dict[str, Any]:
            return {"attributes": {"type": "Case_Matter__c"}, "Source_System_ID__c": ext, **values}

        for bad in ({"Opened__c": "2024-13-45"}, {"Opened__c": "05/09/2024"}, {"Name": {"x": 1}}):
            reply = await api.call(
                "POST",
                f"{V}/composite/sobjects",
                json={"allOrNone": False, "records": [matter("M-1"), matter("M-2", **bad)]},
            )
            assert reply.status == 400, bad
            [error] = reply.body
            assert error["errorCode"] == "JSON_PARSER_ERROR"
            assert error["message"].startswith("Cannot deserialize instance of")
        flag = await api.call(
            "PATCH",
            f"{V}/composite/sobjects/Contact/Source_System_ID__c",
            json={"records": [{"attributes": {"type": "Contact"}, "LastName": "L",
                               "Source_System_ID__c": "C-1", "NumberOfEmployees": "x"}]},
        )  # fmt: skip
        assert flag.status == 400
        assert sim.records("Case_Matter__c") == []
        assert sim.records("Contact") == []

        upserted = await api.ok(
            "PATCH",
            f"{V}/composite/sobjects/Case_Matter__c/Source_System_ID__c",
            json={"records": [matter("M-1"), matter("M-2"), matter("m-2")]},
        )
        assert [r["success"] for r in upserted] == [True, False, False]
        assert {r["errors"][0]["statusCode"] for r in upserted[1:]} == {"DUPLICATE_VALUE"}
        assert [r["Source_System_ID__c"] for r in sim.records("Case_Matter__c")] == ["M-1"]

        _, job = await bulk_job(
            api,
            "insert",
            "Case_Matter__c",
            "Source_System_ID__c,Opened__c\nB-1,2024-05-09\nB-2,x\n",
        )
        assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (2, 1)


async def test_state_and_country_picklists_refuse_free_text_and_fill_from_codes() -> None:
    """State and Country/Territory Picklists: integration values and codes stay in step,
    anything else is FIELD_INTEGRITY_EXCEPTION
    (https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_field_syncing.htm)."""
    picklists = OrgSchema(SCHEMA.objects, state_country_picklists=True)
    assert OrgSchema.from_json(picklists.to_json()).state_country_picklists is True
    async with running(picklists) as (sim, api):
        fields = by_name(await api.ok("GET", f"{V}/sobjects/Account/describe"))
        country = fields["BillingCountryCode"]
        assert (country["type"], country["restrictedPicklist"]) == ("picklist", True)
        assert {"US", "CA", "GB"} <= {p["value"] for p in country["picklistValues"]}
        assert fields["BillingStateCode"]["controllerName"] == "BillingCountryCode"
        assert "ShippingCountryCode" in fields
        contact = by_name(await api.ok("GET", f"{V}/sobjects/Contact/describe"))
        assert {"MailingCountryCode", "OtherStateCode"} <= set(contact)

        usa = await api.call(
            "POST", f"{V}/sobjects/Account", json={"Name": "A", "BillingCountry": "USA"}
        )
        assert usa.status == 400
        assert usa.body[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
        assert usa.body[0]["message"].startswith("There's a problem with this country")
        texts = await api.ok(
            "POST",
            f"{V}/sobjects/Account",
            201,
            json={"Name": "B", "BillingCountry": "United States", "BillingState": "California"},
        )
        codes = await api.ok(
            "POST",
            f"{V}/sobjects/Account",
            201,
            json={"Name": "C", "BillingCountryCode": "CA", "BillingStateCode": "ON"},
        )
        rows = {r["Id"]: r for r in sim.records("Account")}
        assert [rows[texts["id"]][f"Billing{p}"] for p in ("CountryCode", "StateCode")] == [
            "US",
            "CA",
        ]
        assert [rows[codes["id"]][f"Billing{p}"] for p in ("Country", "State")] == [
            "Canada",
            "Ontario",
        ]
        wrong_state = await api.call(
            "PATCH", f"{V}/sobjects/Account/{codes['id']}", json={"BillingState": "Texas"}
        )
        assert wrong_state.body[0]["message"].startswith("There's a problem with this state")
        _, job = await bulk_job(api, "insert", "Account", "Name,BillingCountry\nD,Narnia\n")
        assert job["numberRecordsFailed"] == 1

    async with running(SCHEMA, state_country_picklists=True) as (_, api):
        fields = by_name(await api.ok("GET", f"{V}/sobjects/Lead/describe"))
        assert {"CountryCode", "StateCode"} <= set(fields)
    async with running() as (sim, api):
        fields = by_name(await api.ok("GET", f"{V}/sobjects/Account/describe"))
        assert "BillingCountryCode" not in fields
        await api.ok(
            "POST", f"{V}/sobjects/Account", 201, json={"Name": "E", "BillingCountry": "USA"}
        )


async def test_annual_revenue_is_currency_18_0_and_the_api_stores_what_it_is_sent() -> None:
    """Account.AnnualRevenue is currency(18, 0) (Object Reference, Account); the API does not
    round a value with decimals, it stores it as sent (Knowledge 000385689,
    https://help.salesforce.com/s/articleView?id=000385689&type=1), so rounding is the
    loader's job; 19 integer digits are NUMBER_OUTSIDE_VALID_RANGE."""
    async with running() as (sim, api):
        revenue = by_name(await api.ok("GET", f"{V}/sobjects/Account/describe"))["AnnualRevenue"]
        assert (revenue["type"], revenue["precision"], revenue["scale"]) == ("currency", 18, 0)
        await api.ok(
            "POST", f"{V}/sobjects/Account", 201, json={"Name": "A", "AnnualRevenue": 1234.56}
        )
        assert sim.records("Account")[0]["AnnualRevenue"] == 1234.56
        huge = await api.call(
            "POST", f"{V}/sobjects/Account", json={"Name": "B", "AnnualRevenue": 10**18}
        )
        assert huge.body[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


async def test_task_and_event_describe_like_the_object_reference() -> None:
    """Task and Event fields, types and flags (Object Reference,
    https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm
    and sforce_api_objects_event.htm)."""
    async with running() as (sim, api):
        task = by_name(await api.ok("GET", f"{V}/sobjects/Task/describe"))
        assert (task["Subject"]["type"], task["Subject"]["length"]) == ("combobox", 255)
        closed = task["IsClosed"]
        assert (closed["type"], closed["createable"], closed["updateable"]) == (
            "boolean",
            False,
            False,
        )
        for name in ("Status", "Priority"):
            assert task[name]["type"] == "picklist"
            assert (task[name]["nillable"], task[name]["defaultedOnCreate"]) == (False, True)
        assert task["ActivityDate"]["type"] == "date"
        assert task["WhoId"]["referenceTo"] == ["Contact", "Lead"]
        assert task["AccountId"]["createable"] is False
        assert task["TaskSubtype"]["updateable"] is False
        event = by_name(await api.ok("GET", f"{V}/sobjects/Event/describe"))
        assert event["ActivityDateTime"]["type"] == "datetime"
        assert event["Subject"]["type"] == "combobox"
        assert event["ShowAs"]["defaultedOnCreate"] is True

        refused = await api.call("POST", f"{V}/sobjects/Task", json={"IsClosed": True})
        assert refused.body[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        done = await api.ok(
            "POST", f"{V}/sobjects/Task", 201, json={"Subject": "Filed", "Status": "Completed"}
        )
        [row] = sim.records("Task")
        assert (row["Id"], row["IsClosed"], row["TaskSubtype"]) == (done["id"], True, "Task")
        assert row["CompletedDateTime"] is not None
        await api.ok(
            "POST",
            f"{V}/sobjects/Event",
            201,
            json={"Subject": "Hearing", "IsAllDayEvent": True, "ActivityDate": "2024-05-09"},
        )
        [meeting] = sim.records("Event")
        assert meeting["StartDateTime"] == meeting["ActivityDateTime"]
        assert meeting["DurationInMinutes"] == 1440


async def test_activity_custom_fields_live_on_activity_and_cannot_be_unique() -> None:
    """Custom fields of Task and Event are defined once on Activity (Object Reference,
    Activity); Setup offers no Unique attribute for them, External ID it does
    (https://help.salesforce.com/s/articleView?id=sf.custom_field_attributes.htm)."""
    async with running(FIDELITY) as (_, api):
        for sobject in ("Task", "Event"):
            ext = by_name(await api.ok("GET", f"{V}/sobjects/{sobject}/describe"))
            assert (
                ext["Source_System_ID__c"]["externalId"],
                ext["Source_System_ID__c"]["unique"],
            ) == (
                True,
                False,
            )
        path = f"{V}/sobjects/Task/Source_System_ID__c/task:1"
        created = await api.ok("PATCH", path, 201, json={"Subject": "Call"})
        await api.ok("POST", f"{V}/sobjects/Task", 201, json={"Source_System_ID__c": "task:1"})
        twice = await api.call("PATCH", path, json={"Subject": "Call back"})
        assert twice.status == 300, "a non-unique external id may match two tasks"
        assert created["created"] is True

    unique = OrgSchema(
        {"Activity": ObjectSpec("Activity", "Activity", fields=(
            FieldSpec("Source_System_ID__c", "string", external_id=True, unique=True),))}
    )  # fmt: skip
    with pytest.raises(SchemaError, match="cannot be unique"):
        SalesforceSim(unique)
    on_task = OrgSchema(
        {"Task": ObjectSpec("Task", "Task", fields=(FieldSpec("Billable__c", "double"),))}
    )
    with pytest.raises(SchemaError, match="must be defined on Activity"):
        SalesforceSim(on_task)


async def test_simple_salesforce_meets_the_stricter_org_over_https(tmp_path: Path) -> None:
    """simple-salesforce (the platform's own Python client) sees the same refusals."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    client_context = ssl.create_default_context(cafile=str(ca_file))
    sim = SalesforceSim(FIDELITY, SfSimSettings(users=USERS, state_country_picklists=True))
    runner, url = await serve(sim, ssl_context=server_context)
    try:
        connector = aiohttp.TCPConnector(ssl=client_context)
        async with aiohttp.ClientSession(url, connector=connector) as session:
            api = Api(session)
            token = (await api.login()).body["access_token"]

        def drive() -> dict[str, Any]:
            with requests.Session() as http:
                http.trust_env = False
                http.verify = str(ca_file)
                sf = Salesforce(instance_url=url, session_id=token, session=http, version="59.0")
                note = sf.Case_Note__c.create({})
                outcome: dict[str, Any] = {}
                for name, call in (
                    ("what", lambda: sf.Task.create({"WhatId": note["id"]})),
                    ("country", lambda: sf.Account.create({"Name": "A", "BillingCountry": "UK"})),
                ):
                    try:
                        call()
                    except SalesforceMalformedRequest as refused:
                        outcome[name] = refused.content[0]["errorCode"]
                sf.Account.create({"Name": "B", "BillingCountry": "United Kingdom"})
                try:
                    sf.restful(
                        "composite/sobjects",
                        method="POST",
                        json={"records": [{"attributes": {"type": "Account"}, "Name": "C",
                                           "NumberOfEmployees": "many"}]},
                    )  # fmt: skip
                except SalesforceMalformedRequest as refused:
                    outcome["batch"] = refused.content[0]["errorCode"]
                return outcome

        outcome = await asyncio.to_thread(drive)
        assert outcome == {
            "what": "FIELD_INTEGRITY_EXCEPTION",
            "country": "FIELD_INTEGRITY_EXCEPTION",
            "batch": "JSON_PARSER_ERROR",
        }
        assert [r["BillingCountryCode"] for r in sim.records("Account")] == ["GB"]
        assert sim.records("Task") == []
    finally:
        await runner.cleanup()
