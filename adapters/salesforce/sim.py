"""An aiohttp server that speaks Salesforce REST and Bulk API 2.0, for tests, benchmarks and demos.

Faithful on purpose (destinations.md §1): the three OAuth flows, 18-character ids with
real key prefixes, describe, sObject Collections with allOrNone, upsert by external
id, a SOQL subset with query locators, ContentVersion uploads (JSON and multipart),
Bulk API 2.0 ingest jobs and — what a loader most needs to respect — the org's rolling
24-hour API allocation, reported in ``Sforce-Limit-Info`` on every response and
enforced with 403 ``REQUEST_LIMIT_EXCEEDED``. It misbehaves on purpose when asked —
500 ``UNKNOWN_EXCEPTION``, 503 ``SERVER_UNAVAILABLE``, slow answers, connections cut
before or after a write, expiring sessions, records failing ``UNABLE_TO_LOCK_ROW`` — at
rates set in :class:`SfSimSettings`, drawn from one RNG seeded by ``fault_seed`` and
counted in :class:`SfSimStats`. There is no 429: Salesforce's REST API has none (§1.6).
``/_sim/state`` and ``/_sim/records/{Obj}`` expose the truth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import random
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.errors import ConfigError
from adapters.salesforce.schema import OrgSchema
from adapters.salesforce.sim_bulk import IngestJobs
from adapters.salesforce.sim_rest import RestApi
from adapters.salesforce.sim_store import Org
from adapters.salesforce.sim_wire import (
    MAX_JSON_BODY,
    SF_USER,
    WRITE_METHODS,
    ApiError,
    cut_answer,
    drop_connection,
    json_response,
    not_found,
)
from adapters.simserver import admin_gate, new_admin_token, serve_app
from ratelimit.window import SlidingWindow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DAY_SECONDS = 86_400.0
"""Salesforce's allocations are per rolling 24 hours (destinations.md §1.6)."""

MIN_API_VERSION = 20.0
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAILY_BULK_V2_QUERY_JOBS = 10_000
"""Query jobs per 24 h (destinations.md §1.3), reported by /limits."""
DAILY_BULK_V2_QUERY_STORAGE_MB = 976_562
"""1 TB of query results per 24 h (destinations.md §1.3), reported by /limits."""
RECORD_STORAGE_KB = 2
"""Storage Salesforce charges per record for most objects (not in destinations.md)."""
BASE_STORAGE_MB = 10_240
"""An org's base data and file storage: 10 GB each (not in destinations.md)."""

_VERSION_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/|$)")
_SEASONS = ("Winter", "Spring", "Summer")

_F500, _F503, _RESET, _RESET_AFTER_WRITE, _SLOW = (
    "500",
    "503",
    "reset",
    "reset_after_write",
    "slow",
)


@dataclass(frozen=True)
class SfSimSettings:
    """How the simulated org authenticates, what it allows per day and how it misbehaves.

    Request faults apply to ``/services/data/vXX.X/...`` calls only (never the OAuth token
    endpoint, the version list or ``/_sim``), after authentication. Each such call draws
    once from the fault RNG (seeded by ``fault_seed``) and gets at most one fault: the
    request-level ``fault_*_rate`` shares (500, 503, reset, reset-after-write, slow)
    partition that draw, so they must add up to at most 1 and each is honoured on its
    own. A fault that stops a call before it is processed leaves the org untouched and
    is not charged to the daily allocation. ``fault_partial_rate`` is drawn per record.
    """

    client_id: str = "crmlift"
    client_secret: str = "s3cret"
    admin_token: str = field(default_factory=new_admin_token, repr=False)
    """What ``/_sim`` endpoints require in the ``X-Crmlift-Sim-Admin`` header."""
    api_version: str = "59.0"
    token_ttl: float = 7200.0
    """Seconds an access token lives (Salesforce's default session timeout is 2 hours).
    Afterwards every call with it is 401 ``[{"message": "Session expired or invalid",
    "errorCode": "INVALID_SESSION_ID"}]`` (counted in ``unauthorized`` and
    ``sessions_expired``) until the client logs in again."""
    daily_api_requests: int = 100_000
    """Rolling 24 h org allocation; past it every call is 403 REQUEST_LIMIT_EXCEEDED."""
    daily_bulk_batches: int = 15_000
    """One batch per 10,000 records of an ingest job (destinations.md §1.2)."""
    daily_bulk_records: int = 150_000_000
    bulk_records_per_second: float = 50_000.0
    fault_500_rate: float = 0.0
    """Share of calls answered 500 ``[{"errorCode": "UNKNOWN_EXCEPTION", "message": "An
    unexpected error occurred. ..."}]`` before any effect (counted in ``faults_500``)."""
    fault_503_rate: float = 0.0
    """Share of calls answered 503 ``[{"errorCode": "SERVER_UNAVAILABLE", "message": ...}]``
    before any effect (counted in ``faults_503``)."""
    fault_reset_rate: float = 0.0
    """Share of calls whose connection is cut with nothing applied (counted in
    ``faults_reset``). A write (POST, PATCH, PUT, DELETE) is not processed: the connection
    closes before a byte of the answer, so the client sees
    ``aiohttp.ServerDisconnectedError`` (aiohttp resends an idempotent PUT or DELETE once
    by itself on a reused connection, and that resend is served normally). A read is
    served, then cut mid-body: the real status and headers and about half the body, so
    reading it raises ``aiohttp.ClientPayloadError``."""
    fault_reset_after_write_rate: float = 0.0
    """Share of write calls (POST, PATCH, PUT, DELETE) that are processed — the write is
    applied and charged — and whose answer is then lost: cut mid-body after the status and
    headers (``aiohttp.ClientPayloadError``), or, for an answer with no body (201 on a
    Bulk upload, 204 on a delete), dropped before it (``ServerDisconnectedError``; an
    automatic aiohttp resend of a PUT then meets the job already uploaded). Counted in
    ``faults_reset_after_write``. Reads drawn into this share get no fault, so the rate
    is the share of writes."""
    fault_slow_rate: float = 0.0
    """Share of calls held ``fault_slow_seconds`` before they are processed (counted in
    ``faults_slow``); the answer is normal. A client that gives up meanwhile does not stop
    the call: it is still applied when the wait ends, as Salesforce finishes a request
    its client abandoned."""
    fault_slow_seconds: float = 2.0
    """How long a slow call (``fault_slow_rate``) is held, in seconds."""
    fault_partial_rate: float = 0.0
    """Share of records, drawn per record, that fail ``UNABLE_TO_LOCK_ROW`` ("unable to
    obtain exclusive access to this record") without being written while the rest of the
    call goes through: in sObject Collections writes (create, update, upsert, delete) as a
    per-record error in the 200 answer (with ``allOrNone`` it rolls the others back, as
    any record error does), and in Bulk API 2.0 ingest jobs as a failedResults row with
    ``sf__Error`` ``UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this
    record:--``. Counted per record in ``faults_partial``."""
    fault_seed: int = 0
    """Seed of the one fault RNG every fault kind draws from: same seed, same faults."""
    users: tuple[tuple[str, str], ...] = (("Admin User", "admin@firm.example"),)
    """(name, email) of the org's active users; the first is the admin every token runs as
    unless a password or JWT login names another."""
    jwt_certificate: bytes | None = None
    """PEM X.509 certificate (or public key) uploaded to the connected app ("Use digital
    signatures"): JWT bearer assertions must carry an RS256 signature it verifies. None:
    the app has no certificate and every JWT login is refused."""
    user_password: str = "p4ssw0rd"
    """Password of every simulated user, for the username-password flow."""
    bulk_api_hard_delete: bool = False
    """Whether the org's users hold the "Bulk API Hard Delete" system permission, which a
    Bulk API 2.0 ``hardDelete`` job needs. Off by default, as in a real org ("disabled by
    default and must be enabled by an administrator", Create a Job,
    https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/create_job.htm);
    ``POST /_sim/permissions`` ``{"PermissionsBulkApiHardDelete": true}`` grants it later,
    as an admin assigning a permission set would."""
    state_country_picklists: bool = False
    """Switch on State and Country/Territory Picklists whatever the schema file says (the
    file's ``"state_country_picklists": true`` does too): addresses get ISO-code picklists
    and free-text states or countries the org doesn't list are refused."""

    def __post_init__(self) -> None:
        if self.token_ttl <= 0 or self.bulk_records_per_second <= 0:
            raise ValueError("token_ttl and bulk_records_per_second must be positive")
        if min(self.daily_api_requests, self.daily_bulk_batches, self.daily_bulk_records) < 0:
            raise ValueError("daily allocations must not be negative")
        rates = [rate for _, rate in self.fault_bands()]
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError("request fault rates must not be negative and add up to at most 1")
        if not 0.0 <= self.fault_partial_rate <= 1.0:
            raise ValueError("fault_partial_rate must be between 0 and 1")
        if self.fault_slow_seconds < 0:
            raise ValueError("fault_slow_seconds must not be negative")
        if not self.users:
            raise ValueError("the org needs at least one user")
        if float(self.api_version) < MIN_API_VERSION:
            raise ValueError(f"api_version must be at least {MIN_API_VERSION}")

    def fault_bands(self) -> tuple[tuple[str, float], ...]:
        """Each request-level fault with its share of the one draw per call, in draw order."""
        return (
            (_F500, self.fault_500_rate),
            (_F503, self.fault_503_rate),
            (_RESET, self.fault_reset_rate),
            (_RESET_AFTER_WRITE, self.fault_reset_after_write_rate),
            (_SLOW, self.fault_slow_rate),
        )


@dataclass
class SfSimStats:
    """What the server saw. ``api_requests`` are the calls counted against the allocation.

    ``faults`` totals every injected fault; ``faults_*`` break it down by kind
    (``faults_partial`` counts records, the others calls). ``sessions_expired`` counts
    calls refused because their token outlived ``token_ttl`` (also in ``unauthorized``).
    """

    api_requests: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    bulk_jobs: int = 0
    bulk_batches: int = 0
    bulk_records: int = 0
    limit_exceeded: int = 0
    faults: int = 0
    faults_500: int = 0
    faults_503: int = 0
    faults_reset: int = 0
    faults_reset_after_write: int = 0
    faults_slow: int = 0
    faults_partial: int = 0
    unauthorized: int = 0
    sessions_expired: int = 0
    tokens_issued: int = 0

    def count_fault(self, kind: str) -> None:
        name = f"faults_{kind}"
        setattr(self, name, getattr(self, name) + 1)
        self.faults += 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Rolling:
    """Usage over a rolling day, on the same sliding window the client counts with."""

    limit: int
    _window: SlidingWindow = field(init=False)

    def __post_init__(self) -> None:
        self._window = SlidingWindow(max(self.limit, 1), DAY_SECONDS, resolution=1.0)

    def used(self, now: float) -> int:
        return int(self._window.total(now))

    def take(self, now: float, amount: int = 1) -> bool:
        """Count ``amount`` if it fits under the limit; say whether it did."""
        if self.used(now) + amount > self.limit:
            return False
        self._window.add(now, amount)
        return True


@dataclass(frozen=True, slots=True)
class _Grant:
    user_id: str
    expires_at: float


class _OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class SalesforceSim:
    """One simulated org: its data, quotas, sessions and the HTTP app serving them."""

    def __init__(self, schema: OrgSchema, settings: SfSimSettings = SfSimSettings()) -> None:
        self.settings = settings
        self.stats = SfSimStats()
        if settings.state_country_picklists:
            schema = replace(schema, state_country_picklists=True)
        self.org = Org(schema, settings.users, settings.api_version)
        self.rest = RestApi(self.org, self._row_locked)
        self.bulk = IngestJobs(
            self.org,
            settings.bulk_records_per_second,
            self._take_batch,
            self._job_created,
            self._row_locked,
            lambda user_id: self.hard_delete,
        )
        self.hard_delete = settings.bulk_api_hard_delete
        """The "Bulk API Hard Delete" permission, as every user holds it now."""
        self._api = _Rolling(settings.daily_api_requests)
        self._batches = _Rolling(settings.daily_bulk_batches)
        self._bulk_records = _Rolling(settings.daily_bulk_records)
        self._grants: dict[str, _Grant] = {}
        self._fault_rng = random.Random(f"faults:{settings.fault_seed}")

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[admin_gate(self.settings.admin_token), self._gate],
            client_max_size=MAX_JSON_BODY,
        )
        app.on_cleanup.append(self._shutdown)
        router = app.router
        router.add_post("/services/oauth2/token", self._token)
        router.add_get("/_sim/state", self._state)
        router.add_get("/_sim/records/{sobject}", self._records)
        router.add_post("/_sim/permissions", self._permissions)
        router.add_get("/services/data", self._versions)
        router.add_get("/services/data/", self._versions)
        for method, path, handler in self._routes():
            router.add_route(method, f"/services/data/{{version}}{path}", handler)
            if path:
                router.add_route(method, f"/services/data/{{version}}{path}/", handler)
        router.add_get("/services/data/{version}/", self._resources)
        return app

    def _routes(self) -> list[tuple[str, str, Handler]]:
        rest, bulk = self.rest, self.bulk
        record = "/sobjects/{sobject}/{id}"
        by_path = "/sobjects/{sobject}/{first}/{second}"
        job = "/jobs/ingest/{job}"
        return [
            ("GET", "", self._resources),
            ("GET", "/limits", self._limits),
            ("GET", "/sobjects", rest.sobjects),
            ("GET", "/sobjects/{sobject}/describe", rest.describe),
            ("GET", "/sobjects/{sobject}", rest.basic_info),
            ("POST", "/sobjects/{sobject}", rest.create),
            ("GET", record, rest.get_record),
            ("PATCH", record, rest.update_record),
            ("DELETE", record, rest.delete_record),
            ("GET", by_path, rest.get_by_path),
            ("PATCH", by_path, rest.upsert),
            ("GET", "/query", rest.query),
            ("GET", "/query/{locator}", rest.query_more),
            ("GET", "/queryAll", rest.query_all),
            ("GET", "/queryAll/{locator}", rest.query_more),
            ("POST", "/composite/sobjects", rest.collection_create),
            ("PATCH", "/composite/sobjects", rest.collection_update),
            ("DELETE", "/composite/sobjects", rest.collection_delete),
            ("PATCH", "/composite/sobjects/{sobject}/{field}", rest.collection_upsert),
            ("POST", "/jobs/ingest", bulk.create),
            ("GET", "/jobs/ingest", bulk.list_jobs),
            ("GET", job, bulk.get),
            ("PATCH", job, bulk.patch),
            ("DELETE", job, bulk.delete),
            ("PUT", f"{job}/batches", bulk.upload),
            ("GET", f"{job}/{{kind}}", bulk.results),
        ]

    async def _shutdown(self, app: web.Application) -> None:
        await self.bulk.close()

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Current live rows of ``sobject`` (each has ``Id`` and its field values)."""
        table = self.org.table(sobject)
        if table is None:
            raise KeyError(sobject)
        return [dict(row) for row in table.rows.values()]

    def user_id(self, email: str) -> str | None:
        """The id of the user with this email, if the org has one."""
        return self.org.user_id(email)

    # -- the gate every /services/data call passes

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, check the version, inject faults, charge the allocation, then serve."""
        if not request.path.startswith("/services/data/v"):
            return await handler(request)
        fault = None
        try:
            request[SF_USER] = self._authenticate(request)
            self._check_version(request.path)
            fault = self._draw_fault(request)
            if fault == _RESET and request.method in WRITE_METHODS:
                return drop_connection(request)
            self._admit(request)
            if fault == _SLOW:
                await asyncio.sleep(self.settings.fault_slow_seconds)
            response = await handler(request)
        except ApiError as refusal:
            response = refusal.response()
        except web.HTTPException as routing:
            response = _routing_error(routing, request.method).response()
        limit = self.settings.daily_api_requests
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._api.used(_now())}/{limit}"
        if fault in {_RESET, _RESET_AFTER_WRITE}:
            return await cut_answer(request, response)
        return response

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._grants.get(token.strip()) if scheme.lower() in {"bearer", "oauth"} else None
        if grant is None or grant.expires_at <= _now():
            self.stats.unauthorized += 1
            if grant is not None:
                self.stats.sessions_expired += 1
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return grant.user_id

    def _check_version(self, path: str) -> None:
        match = _VERSION_PATH.match(path)
        if match is None or not MIN_API_VERSION <= float(match[1]) <= float(
            self.settings.api_version
        ):
            raise not_found()

    def _draw_fault(self, request: web.Request) -> str | None:
        """One draw per call, whatever the rates; 5xx faults refuse the call right here."""
        draw = self._fault_rng.random()
        fault = None
        for kind, rate in self.settings.fault_bands():
            if draw < rate:
                fault = kind
                break
            draw -= rate
        if fault == _RESET_AFTER_WRITE and request.method not in WRITE_METHODS:
            return None
        if fault is not None:
            self.stats.count_fault(fault)
        if fault == _F500:
            raise ApiError(
                500,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if you contact "
                f"support: {1_960_221_140 + self.stats.faults_500}-{self.stats.faults:05d} "
                "(-1203451234)",
            )
        if fault == _F503:
            raise ApiError(
                503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry later"
            )
        return fault

    def _row_locked(self) -> bool:
        """Whether the next record of a Collections or Bulk write fails UNABLE_TO_LOCK_ROW."""
        rate = self.settings.fault_partial_rate
        if rate <= 0 or self._fault_rng.random() >= rate:
            return False
        self.stats.count_fault("partial")
        return True

    def _admit(self, request: web.Request) -> None:
        if not self._api.take(_now()):
            self.stats.limit_exceeded += 1
            raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self.stats.api_requests += 1
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        label = f"{request.method} {canonical.removeprefix('/services/data/{version}').rstrip('/')}"
        self.stats.by_endpoint[label] = self.stats.by_endpoint.get(label, 0) + 1

    # -- quotas the bulk engine draws on

    def _take_batch(self, records: int) -> bool:
        now = _now()
        if self._batches.used(now) + 1 > self._batches.limit:
            return False
        if not self._bulk_records.take(now, records):
            return False
        self._batches.take(now)
        self.stats.bulk_batches += 1
        self.stats.bulk_records += records
        return True

    def _job_created(self) -> None:
        self.stats.bulk_jobs += 1

    # -- OAuth

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {key: str(value) for key, value in form.items()}
        try:
            user_id = self._login(fields, request.headers.get("Authorization", ""))
        except _OAuthError as failure:
            body = {"error": failure.error, "error_description": failure.description}
            return json_response(body, 400)
        return json_response(self._issue(request, user_id))

    def _login(self, form: dict[str, str], authorization: str) -> str:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            client_id, secret = _basic_credentials(authorization) or (
                form.get("client_id", ""),
                form.get("client_secret", ""),
            )
            self._check_client(client_id, secret)
            return self.org.admin_id
        if grant == "password":
            self._check_client(form.get("client_id", ""), form.get("client_secret", ""))
            user_id = self._active_user(form.get("username", ""))
            if not _same(form.get("password", ""), self.settings.user_password):
                raise _OAuthError("invalid_grant", "authentication failure")
            return user_id
        if grant == JWT_GRANT:
            return self._jwt_login(form.get("assertion", ""))
        raise _OAuthError("unsupported_grant_type", "grant type not supported")

    def _check_client(self, client_id: str, secret: str) -> None:
        if not _same(client_id, self.settings.client_id):
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        if not _same(secret, self.settings.client_secret):
            raise _OAuthError("invalid_client", "invalid client credentials")

    def _active_user(self, username: str) -> str:
        users = self.org.tables["user"]
        found = users.lookup(("Username",), (username,)) if username else []
        if not found or not users.rows[found[0]].get("IsActive"):
            raise _OAuthError("invalid_grant", "authentication failure")
        return found[0]

    def _jwt_login(self, assertion: str) -> str:
        """JWT bearer flow: the assertion is signed with RS256 by the key whose certificate
        the connected app holds, then its claims are checked.

        https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm
        ("Salesforce validates the JWT based on a signature using a previously configured
        certificate"; the header is ``{"alg":"RS256"}``). The error text for a bad
        signature is not documented; an unsigned or forged assertion is refused as
        ``invalid_grant``, the strictest reading.
        """
        claims = _verified_claims(assertion, self.settings.jwt_certificate)
        if claims is None:
            raise _OAuthError("invalid_grant", "invalid assertion")
        if not _same(str(claims.get("iss", "")), self.settings.client_id):
            raise _OAuthError("invalid_client_id", "client identifier invalid")
        expires = claims.get("exp")
        if not isinstance(expires, (int, float)) or expires < time.time():
            raise _OAuthError("invalid_grant", "expired authorization code")
        return self._active_user(str(claims.get("sub", "")))

    def _issue(self, request: web.Request, user_id: str) -> dict[str, Any]:
        now = _now()
        # A token stays known for one more lifetime after it expires, so its use reads as
        # an expired session rather than a forged one.
        horizon = now - self.settings.token_ttl
        self._grants = {t: g for t, g in self._grants.items() if g.expires_at > horizon}
        token = f"{self.org.org_id[:15]}!{secrets.token_urlsafe(72)}"
        self._grants[token] = _Grant(user_id, now + self.settings.token_ttl)
        self.stats.tokens_issued += 1
        instance = str(request.url.origin())
        identity = f"{instance}/id/{self.org.org_id}/{user_id}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(
            self.settings.client_secret.encode(), f"{identity}{issued_at}".encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": token,
            "instance_url": instance,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
            "scope": "api",
        }

    # -- org-level resources

    async def _versions(self, request: web.Request) -> web.Response:
        top = int(float(self.settings.api_version))
        return json_response([_version_entry(n) for n in range(int(MIN_API_VERSION), top + 1)])

    async def _resources(self, request: web.Request) -> web.Response:
        base = f"/services/data/{request.match_info['version']}"
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return json_response({name: f"{base}/{name}" for name in names})

    async def _limits(self, request: web.Request) -> web.Response:
        now = _now()
        users = len(self.org.tables["user"].rows)
        rows = sum(len(t.rows) + len(t.recycled) for t in self.org.tables.values())
        files = sum(len(blob) for blob in self.org.blobs.values())
        data_max = BASE_STORAGE_MB + 20 * users
        file_max = BASE_STORAGE_MB + 2_048 * users
        return json_response(
            {
                "DailyApiRequests": _limit(self._api.limit, self._api.used(now)),
                "DailyBulkApiBatches": _limit(self._batches.limit, self._batches.used(now)),
                "DailyBulkV2QueryJobs": _limit(DAILY_BULK_V2_QUERY_JOBS, 0),
                "DailyBulkV2QueryFileStorageMB": _limit(DAILY_BULK_V2_QUERY_STORAGE_MB, 0),
                "DataStorageMB": _limit(data_max, rows * RECORD_STORAGE_KB // 1024),
                "FileStorageMB": _limit(file_max, files // (1024 * 1024)),
            }
        )

    # -- the truth, for audits

    async def _state(self, request: web.Request) -> web.Response:
        objects = {t.name: len(t.rows) for t in self.org.tables.values()}
        jobs = {job.id: job.state for job in self.bulk.jobs.values()}
        return json_response({"objects": objects, "jobs": jobs, "stats": self.stats.as_dict()})

    async def _permissions(self, request: web.Request) -> web.Response:
        """Grant or revoke the users' "Bulk API Hard Delete" permission (the PermissionSet
        field ``PermissionsBulkApiHardDelete``), as an admin would in Setup."""
        body = orjson.loads(await request.read() or b"{}")
        granted = body.get("PermissionsBulkApiHardDelete") if isinstance(body, dict) else None
        if not isinstance(granted, bool):
            return json_response({"error": "PermissionsBulkApiHardDelete must be a boolean"}, 400)
        self.hard_delete = granted
        return json_response({"PermissionsBulkApiHardDelete": self.hard_delete})

    async def _records(self, request: web.Request) -> web.Response:
        try:
            return json_response(self.records(request.match_info["sobject"]))
        except KeyError:
            return not_found().response()


def _now() -> float:
    return time.monotonic()


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def _limit(maximum: int, used: int) -> dict[str, int]:
    return {"Max": maximum, "Remaining": max(0, maximum - used)}


def _version_entry(major: int) -> dict[str, str]:
    """``{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}``."""
    offset = major - 59
    label = f"{_SEASONS[offset % 3]} '{24 + offset // 3}"
    return {"label": label, "url": f"/services/data/v{major}.0", "version": f"{major}.0"}


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _verified_claims(assertion: str, certificate: bytes | None) -> dict[str, Any] | None:
    """The claims of an RS256 JWT whose signature ``certificate`` verifies, else None.

    ``alg`` other than RS256 (``none`` above all) is refused before any key is used.
    """
    parts = assertion.split(".")
    if len(parts) != 3 or certificate is None:
        return None
    try:
        header, claims = (orjson.loads(_b64url(part)) for part in parts[:2])
        signature = _b64url(parts[2])
    except (binascii.Error, ValueError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        return None
    if not isinstance(claims, dict) or not _rs256_valid(certificate, parts, signature):
        return None
    return claims


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _rs256_valid(certificate: bytes, parts: list[str], signature: bytes) -> bool:
    try:
        key = _public_key(certificate)
        signed = f"{parts[0]}.{parts[1]}".encode()
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _public_key(certificate: bytes) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate or public key; anything else is a ValueError."""
    key: object
    if b"BEGIN CERTIFICATE" in certificate:
        key = x509.load_pem_x509_certificate(certificate).public_key()
    else:
        key = serialization.load_pem_public_key(certificate)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the connected app's certificate must hold an RSA key")
    return key


def _routing_error(error: web.HTTPException, method: str) -> ApiError:
    if error.status == 405:
        return ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
    if error.status == 413:
        return ApiError(413, "JSON_PARSER_ERROR", "Request body too large")
    if error.status == 404:
        return not_found()
    return ApiError(error.status, "UNKNOWN_EXCEPTION", error.reason)


async def serve(
    sim: SalesforceSim,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start ``sim`` on ``host:port`` (0: any free port); returns the runner and instance URL.

    With ``ssl_context`` it serves HTTPS — what simple-salesforce requires, since it
    hard-codes ``https://`` (destinations.md §1.4). The caller cleans up the runner.
    """
    return await serve_app(sim.app(), host, port, ssl_context)


async def run_forever(
    schema_path: Path | None,
    settings: SfSimSettings,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Load the custom schema (if any), serve the org until cancelled, then shut down."""
    try:
        schema = OrgSchema() if schema_path is None else OrgSchema.load(schema_path)
        sim = SalesforceSim(schema, settings)
    except ValueError as exc:  # SchemaError: an org a real Salesforce could not hold
        raise ConfigError(f"schema file {schema_path}: {exc}") from exc
    runner, base_url = await serve(sim, host, port, ssl_context)
    try:
        on_ready(base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
