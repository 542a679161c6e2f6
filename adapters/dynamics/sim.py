"""An aiohttp server that speaks the Dataverse Web API v9.2, for tests, benchmarks and demos.

Faithful on purpose (destinations.md §2): Microsoft identity client-credentials tokens
(that expire), 204 + ``OData-EntityId`` creates, upserts by id and alternate key with
If-Match / If-None-Match, ``@odata.bind`` lookups (polymorphic ones too) that must point
at real rows, choice, status and date validation, multipart ``$batch`` with atomic
changesets and Content-ID references, metadata, and — what a loader most needs to
respect — per-user service protection limits answered with 429 + ``Retry-After``.
``time_scale`` shrinks the 300-second window so tests can cross it; fault injection
makes the transient failures a loader must survive happen on purpose.
``/_sim/state`` and :meth:`DataverseSim.records` expose the truth.

The org holds what a fresh environment holds plus the schema plan the admin deployed:
``DataverseSim(schema_plan(definitions, prefix))`` — the very JSON
``service.mapping.backdocket_dynamics.schema_plan`` returns (or :func:`load_schema` of it).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from adapters.dynamics.batch import (
    MAX_BATCH_REQUESTS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    encode_batch_response,
    parse_batch_request,
)
from adapters.dynamics.sim_limits import (
    REQUESTS_CODE,
    Caller,
    Refusal,
    ServiceProtection,
    requests_message,
    time_remaining_header,
)
from adapters.dynamics.sim_sharepoint import (
    SHAREPOINT_API,
    UNAUTHORIZED_CODE,
    SharePointError,
    SharePointSite,
    sharepoint_call,
)
from adapters.dynamics.sim_store import (
    DEFAULT_MAX_ATTACHMENT_BYTES,
    DUPLICATE_MESSAGE,
    ERR_BAD_PROPERTY,
    ERR_BAD_VALUE,
    ERR_DOES_NOT_EXIST,
    ERR_DUPLICATE_KEY,
    ERR_INVALID_ARGUMENT,
    ERR_VERSION_MISMATCH,
    LOOKUP_TARGET,
    LOOKUP_TYPES,
    MAX_CONFIGURABLE_ATTACHMENT_BYTES,
    VERSION_MESSAGE,
    DataverseError,
    Table,
    ValuePolicy,
    build_tables,
    check_value,
    computed_columns,
    does_not_exist,
    is_guid,
    key_value,
    load_schema,
    now_iso,
    parse_key,
    public_row,
    refuse_closed_create,
    refuse_read_only,
    require_location_parts,
    settle_state,
    unknown_property,
)
from adapters.dynamics.sim_wire import (
    API_ROOT,
    COLLECTION_OPTIONS,
    ENTITY_PATH,
    MAX_COUNT,
    RECORD_OPTIONS,
    AnyOf,
    Result,
    batch_target,
    check_query_options,
    count_wanted,
    entity_path,
    error_result,
    header_value,
    identity_error,
    json_result,
    lookup_name,
    metadata_result,
    next_link,
    openid_configuration,
    order_rows,
    page_offset,
    page_size,
    parse_filter,
    parse_top,
    prefers,
    select_columns,
    substitute_references,
    term_matches,
    to_web,
)
from adapters.simserver import admin_gate, new_admin_token, serve_app

__all__ = [
    "DataverseSim",
    "DataverseSimSettings",
    "DataverseSimStats",
    "load_schema",
    "run_forever",
    "serve",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = Mapping[str, Any]
"""A schema plan: ``{"publisher_prefix", "tables": {logical: {"custom", "columns",
"alternate_keys", ...}}, ...}`` as ``schema_plan()`` returns it."""
Journal = list[tuple[Table, str, dict[str, Any] | None]]

TOKEN_TTL_SECONDS = 3599
"""``expires_in`` of a client-credentials token (destinations.md §2.1)."""
ERR_UNEXPECTED = "0x80040216"
"""'An unexpected error occurred.': the generic platform failure (injected 500s/503s)."""
UNEXPECTED_MESSAGE = "An unexpected error occurred."
BULK_ACTIONS = {
    "/Microsoft.Dynamics.CRM.CreateMultiple": "CreateMultiple",
    "/Microsoft.Dynamics.CRM.UpsertMultiple": "UpsertMultiple",
}
"""Collection-bound bulk operation messages the simulator answers (bulk-operations)."""
NO_BULK_MESSAGES = frozenset({"annotation", "task", "appointment"})
"""Standard tables whose reference page lists no CreateMultiple/UpsertMultiple message
(learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation, …/task;
appointment assumed alike, strictly): "Not all standard tables support these messages"."""
ERR_BATCH_SIZE = "0x8006088a"
"""More than 1,000 requests in a batch (limit: destinations.md §2.3; code [INFER])."""
_OPERATIONS = web.RequestKey("operations", int)
_WORK_SECONDS = web.RequestKey("work_seconds", float)
"""Wall seconds the server spent working on a request (charged as execution time)."""
"""Operations a request carried (a ``$batch`` many), for execution-time charging."""


def _rate(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1]")


@dataclass(frozen=True)
class DataverseSimSettings:
    """How the simulated org authenticates, throttles and misbehaves (destinations.md §2.5)."""

    tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    client_id: str = "5a1f3f5e-0d7c-4b8e-9c1a-3a6f0c2d9e11"
    client_secret: str = "s3cret"
    admin_token: str = field(default_factory=new_admin_token, repr=False)
    """What ``/_sim`` endpoints require in the ``X-Crmlift-Sim-Admin`` header."""
    applications: tuple[tuple[str, str], ...] = ()
    """More application users, as ``(client_id, client_secret)``: each is its own
    principal with its own service protection windows."""
    org_url: str = "https://crmlift-sim.crm.dynamics.com"
    publisher_prefix: str = "crm"
    """Prefix custom names must carry when the schema plan does not name its own."""
    requests_per_window: int = 6000
    execution_ms_per_window: int = 1_200_000
    window_seconds: float = 300.0
    max_concurrent: int = 52
    time_scale: float = 1.0
    """Platform seconds per wall second: 300 makes the 5-minute window pass in 1 s."""
    execution_ms_per_operation: float = 5.0
    """Platform milliseconds charged per operation at least: server work (SQL, plug-ins,
    auditing) the in-memory simulator does not really spend. A request is charged
    max(the simulator's own work in wall ms × time_scale, this × operations): time a
    request waits behind others or on the wire is not execution."""
    users: tuple[tuple[str, str], ...] = (("Ada Admin", "ada.admin@example.com"),)
    """Licensed systemusers as ``(fullname, email)``; the email is also the UPN."""
    disabled_users: tuple[tuple[str, str], ...] = ()
    """Systemusers with ``isdisabled`` true (left the firm, licence removed)."""
    duplicate_key_status: int = 412
    """412, 409 and 400 are all observed for 0x80040237 (destinations.md §2.7)."""
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    """Organization.MaxUploadFileSize: the largest annotation ``documentbody``."""
    attachment_limit_counts_base64: bool = True
    """Measure ``documentbody`` as its Base64 text, as the docs say Dataverse does
    (a 4 MB file is 5.3 MB of Base64); False measures the decoded bytes."""
    token_ttl_seconds: int = TOKEN_TTL_SECONDS
    """Wall seconds a token lives; after that the API answers 401 with a challenge."""
    sharepoint_site: str | None = None
    """The org's SharePoint site (``https://firm.sharepoint.com/sites/matters``), or None
    when document management is not configured. Defaults to the plan's ``sharepoint_site``.
    When set, the site is a ``sharepointsites`` row, every table with
    IsDocumentManagementEnabled has a library (a folder named after the table, and a
    location row under the site), and the simulator serves the SharePoint REST calls of
    :mod:`adapters.dynamics.sim_sharepoint` under the site's path."""
    latency_seconds: float = 0.0
    fault_seed: int = 0
    fault_503_rate: float = 0.0
    fault_500_rate: float = 0.0
    fault_429_rate: float = 0.0
    """Spurious 429 (requests-limit code, Retry-After 1) that consumes no window."""
    fault_reset_rate: float = 0.0
    """The request is carried out, then the connection is cut: mid-body when there is
    a body (aiohttp.ClientPayloadError), before the status line otherwise
    (aiohttp.ServerDisconnectedError)."""
    fault_slow_rate: float = 0.0
    fault_slow_seconds: float = 2.0
    fault_part_rate: float = 0.0
    """Inside a ``$batch``, a changeset answers 500 0x80040216 and is rolled back."""

    def __post_init__(self) -> None:
        if min(self.requests_per_window, self.execution_ms_per_window, self.max_concurrent) <= 0:
            raise ValueError("limits must be positive")
        if self.window_seconds <= 0 or self.time_scale <= 0 or self.token_ttl_seconds <= 0:
            raise ValueError("window_seconds, time_scale and token_ttl_seconds must be positive")
        if min(self.latency_seconds, self.fault_slow_seconds, self.execution_ms_per_operation) < 0:
            raise ValueError("latency, slowness and per-operation time cannot be negative")
        for name in ("503", "500", "429", "reset", "slow", "part"):
            _rate(f"fault_{name}_rate", getattr(self, f"fault_{name}_rate"))
        if self.duplicate_key_status not in (400, 409, 412):
            raise ValueError("duplicate_key_status must be 400, 409 or 412")
        if not 0 < self.max_attachment_bytes <= MAX_CONFIGURABLE_ATTACHMENT_BYTES:
            raise ValueError(f"max_attachment_bytes must be 1..{MAX_CONFIGURABLE_ATTACHMENT_BYTES}")
        if not re.fullmatch(r"[a-z][a-z0-9]{1,7}", self.publisher_prefix):
            raise ValueError("publisher_prefix must be 2-8 lowercase letters or digits")
        if len(dict(self.credentials())) != 1 + len(self.applications):
            raise ValueError("application client ids must be distinct")

    def credentials(self) -> tuple[tuple[str, str], ...]:
        """Every ``(client_id, client_secret)`` the token endpoint accepts."""
        return ((self.client_id, self.client_secret), *self.applications)


@dataclass
class DataverseSimStats:
    """What the server saw; API requests exclude the token endpoint and ``/_sim``."""

    requests: int = 0
    batches: int = 0
    operations: int = 0
    tokens_issued: int = 0
    unauthorized: int = 0
    expired_tokens: int = 0
    throttled: dict[str, int] = field(default_factory=dict)
    faults_503: int = 0
    faults_500: int = 0
    faults_429: int = 0
    faults_reset: int = 0
    faults_slow: int = 0
    faults_part: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataverseSim:
    """One Dataverse org: tables from the ``schema`` plan, limits from ``settings``."""

    def __init__(
        self,
        schema: Schema | None = None,
        settings: DataverseSimSettings = DataverseSimSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stats = DataverseSimStats()
        self.tables = build_tables(schema, settings.publisher_prefix)
        self._by_logical = {table.logical_name: table for table in self.tables.values()}
        self._clock = clock
        self._grants: dict[str, tuple[str, float]] = {}
        self._protection = ServiceProtection(
            settings.requests_per_window,
            settings.execution_ms_per_window,
            settings.window_seconds,
            settings.max_concurrent,
            settings.execution_ms_per_operation,
        )
        self._callers: dict[str, Caller] = {}
        self._journal: Journal | None = None
        self._fault_rng = random.Random(f"faults:{settings.fault_seed}")
        self._policy = ValuePolicy(
            settings.max_attachment_bytes, settings.attachment_limit_counts_base64
        )
        self.organization_id = str(uuid.uuid4())
        """What ``WhoAmI`` answers as OrganizationId: a test sets a new one to play a
        sandbox refresh (same URL, another org)."""
        self._seed_users()
        site_url = settings.sharepoint_site or (schema or {}).get("sharepoint_site")
        self.sharepoint = None if site_url is None else self._seed_sharepoint(str(site_url))

    def _seed_users(self) -> None:
        """Systemusers with stable ids, so owner GUIDs survive a sim restart."""
        users = self.tables["systemusers"]
        people = [(u, False) for u in self.settings.users]
        people += [(u, True) for u in self.settings.disabled_users]
        for (fullname, email), disabled in people:
            ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"systemuser:{email}"))
            row = {
                "systemuserid": ident,
                "fullname": fullname,
                "internalemailaddress": email,
                "domainname": email,
                "isdisabled": disabled,
                "createdon": now_iso(),
                "modifiedon": now_iso(),
                "versionnumber": 1,
            }
            users.put(ident, row)

    def _seed_sharepoint(self, url: str) -> SharePointSite:
        """The configured site and one library per document-managed table, as rows too.

        Ids are stable (uuid5), so a client can rediscover them after a sim restart; the
        library locations regard nothing and sit under the site, as Dataverse's own do.
        """
        site = SharePointSite(url)
        site_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sharepointsite:{url}"))
        self._store(
            self.tables["sharepointsites"],
            site_id,
            {"name": "Default Site", "absoluteurl": url, "isdefault": True},
        )
        locations = self.tables["sharepointdocumentlocations"]
        for table in self.tables.values():
            if "IsDocumentManagementEnabled" not in table.settings:
                continue
            site.add_library(table.logical_name)
            ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"library:{url}/{table.logical_name}"))
            values = {
                "name": f"Documents on Default Site 1 ({table.logical_name})",
                "relativeurl": table.logical_name,
                "_parentsiteorlocation_value": site_id,
                f"{LOOKUP_TARGET}_parentsiteorlocation_value": "sharepointsite",
            }
            self._store(locations, ident, values)
        return site

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[admin_gate(self.settings.admin_token), self._gate],
            client_max_size=256 * 1024 * 1024,
        )
        app.router.add_get(
            "/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration
        )
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._issue_token)
        app.router.add_get("/_sim/state", self._state)
        app.router.add_route("*", "/" + SHAREPOINT_API + "{tail:.*}", self._sharepoint)
        app.router.add_route("*", "/{site:.+}/" + SHAREPOINT_API + "{tail:.*}", self._sharepoint)
        app.router.add_route("*", API_ROOT + "{tail:.*}", self._api)
        return app

    def records(self, entity_set: str) -> list[dict[str, Any]]:
        """Every row of a table as the Web API would return it, in insertion order."""
        table = self.tables[entity_set]
        return [public_row(table, row, None) for row in table.rows.values()]

    def table(self, logical_name: str) -> Table:
        """A table by logical name (``crm_matter``), as the metadata endpoints name it."""
        return self._by_logical[logical_name]

    def execute(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        origin: str = "http://sim",
    ) -> Result:
        """One Web API request in process, without HTTP, auth or limits: for benchmarks of
        the store and for tests that need many rows fast."""
        return self._execute(method, path, query or {}, headers or {}, body, origin)

    def _platform_now(self) -> float:
        return self._clock() * self.settings.time_scale

    def _draw(self, rate: float) -> bool:
        """One fault decision; no draw at rate 0, so enabling one fault keeps the others."""
        return rate > 0 and self._fault_rng.random() < rate

    # -- the gate: auth, faults and service protection (destinations.md §2.5)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_ROOT):
            return await handler(request)
        self.stats.requests += 1
        client = self._authenticate(request)
        if isinstance(client, web.Response):
            return client
        caller = self._caller(client)
        refusal = self._injected_failure() or self._admit(caller)
        if refusal is not None:
            self._limit_headers(refusal, caller)
            return refusal
        response = await self._handle(request, handler, caller)
        self._limit_headers(response, caller)
        if self._draw(self.settings.fault_reset_rate):
            self.stats.faults_reset += 1
            return await self._cut(request, response)
        return response

    async def _handle(
        self, request: web.Request, handler: Handler, caller: Caller
    ) -> web.StreamResponse:
        """Run the request as one in flight, then charge its execution time."""
        caller.in_flight += 1
        slow = 0.0
        try:
            if self.settings.latency_seconds:
                await asyncio.sleep(self.settings.latency_seconds)  # the network's, not charged
            if self._draw(self.settings.fault_slow_rate):
                self.stats.faults_slow += 1
                slow = self.settings.fault_slow_seconds  # a slow server is charged for it
                await asyncio.sleep(slow)
            return await handler(request)
        finally:
            caller.in_flight -= 1
            # Execution time is the server's own work, never time spent queued behind
            # other requests or on the wire: that is what Dataverse counts (§2.5).
            work = slow + request.get(_WORK_SECONDS, 0.0)
            elapsed_ms = work * 1000 * self.settings.time_scale
            operations = request.get(_OPERATIONS, 1)
            self._protection.charge(caller, self._platform_now(), elapsed_ms, operations)

    def _authenticate(self, request: web.Request) -> str | web.Response:
        """The token's client id, or the 401 challenge (an expired token says so)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._grants.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is not None and grant[1] > self._clock():
            return grant[0]
        self.stats.unauthorized += 1
        challenge = "Bearer error=invalid_token"
        if grant is not None:
            self.stats.expired_tokens += 1
            challenge = 'Bearer error="invalid_token", error_description="The access token expired"'
        challenge += (
            f", authorization_uri=https://login.microsoftonline.com/{self.settings.tenant_id}"
            f"/oauth2/authorize, resource_id={self.settings.org_url}"
        )
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    def _caller(self, client: str) -> Caller:
        caller = self._callers.get(client)
        if caller is None:
            caller = self._callers[client] = self._protection.caller()
        return caller

    def _injected_failure(self) -> web.Response | None:
        """A spurious 429, 503 or 500 instead of the request; nothing is charged."""
        settings = self.settings
        if self._draw(settings.fault_429_rate):
            self.stats.faults_429 += 1
            message = requests_message(settings.requests_per_window, settings.window_seconds)
            return self._too_many(Refusal(REQUESTS_CODE, message, settings.time_scale))
        for status, rate in ((503, settings.fault_503_rate), (500, settings.fault_500_rate)):
            if self._draw(rate):
                setattr(self.stats, f"faults_{status}", getattr(self.stats, f"faults_{status}") + 1)
                error = DataverseError(status, ERR_UNEXPECTED, UNEXPECTED_MESSAGE)
                return to_web(error_result(error))
        return None

    def _admit(self, caller: Caller) -> web.Response | None:
        refusal = self._protection.admit(caller, self._platform_now())
        if refusal is None:
            return None
        self.stats.throttled[refusal.code] = self.stats.throttled.get(refusal.code, 0) + 1
        return self._too_many(refusal)

    def _too_many(self, refusal: Refusal) -> web.Response:
        """429 with whole-second ``Retry-After`` in wall-clock seconds, never below 1."""
        seconds = max(1, math.ceil(refusal.wait / self.settings.time_scale - 1e-9))
        response = to_web(error_result(DataverseError(429, refusal.code, refusal.message)))
        response.headers["Retry-After"] = str(seconds)
        return response

    def _limit_headers(self, response: web.StreamResponse, caller: Caller) -> None:
        requests, milliseconds = self._protection.remaining(caller, self._platform_now())
        response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(requests)
        response.headers["x-ms-ratelimit-time-remaining-xrm-requests"] = time_remaining_header(
            milliseconds
        )

    async def _cut(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Lose the answer of a request that was carried out, as a dropped connection does."""
        transport = request.transport
        body = response.body if isinstance(response, web.Response) else None
        if transport is None or not isinstance(body, bytes) or len(body) < 2:
            if transport is not None:
                transport.close()
            return response
        partial = web.StreamResponse(status=response.status, headers=response.headers)
        partial.content_length = len(body)
        await partial.prepare(request)
        await partial.write(body[: len(body) // 2])
        transport.close()
        return partial

    # -- token (destinations.md §2.1)

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        """Tenant discovery for MSAL; an unknown tenant is AADSTS90002, as Entra answers."""
        tenant = request.match_info["tenant"]
        if tenant != self.settings.tenant_id:
            return identity_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        document = openid_configuration(f"{request.scheme}://{request.host}", tenant)
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    async def _issue_token(self, request: web.Request) -> web.StreamResponse:
        settings = self.settings
        if request.match_info["tenant"] != settings.tenant_id:
            tenant = request.match_info["tenant"]
            return identity_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return identity_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = str(form.get("client_id", ""))
        expected = dict(settings.credentials()).get(client_id)
        if expected is None:
            return identity_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        secret = str(form.get("client_secret", "")).encode()
        if not secrets.compare_digest(secret, expected.encode()):
            return identity_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scope = str(form.get("scope", ""))
        # The org answers at its own address too: an SDK given the simulator's URL as
        # the environment URL asks for ``<that URL>/.default``, as it would for a real org.
        audiences = {settings.org_url.rstrip("/"), f"{request.scheme}://{request.host}"}
        if scope not in {f"{audience}/.default" for audience in audiences}:
            return identity_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
            )
        return self._grant(client_id)

    def _grant(self, client_id: str) -> web.Response:
        token = secrets.token_urlsafe(32)
        ttl = self.settings.token_ttl_seconds
        self._grants[token] = (client_id, self._clock() + ttl)
        self.stats.tokens_issued += 1
        payload = {
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": token,
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    # -- the Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        body = await request.read()
        headers = dict(request.headers)
        origin = f"{request.scheme}://{request.host}"
        # The server's work is what follows, synchronous: reading the body was network.
        started = self._clock()
        try:
            if tail == "$batch":
                if request.method != "POST":
                    return to_web(
                        error_result(DataverseError(405, ERR_BAD_PROPERTY, "Use POST for $batch."))
                    )
                return self._batch(request, headers, body, origin)
            self.stats.operations += 1
            result = self._execute(request.method, tail, dict(request.query), headers, body, origin)
            return to_web(result)
        finally:
            request[_WORK_SECONDS] = self._clock() - started

    def _execute(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        origin: str,
    ) -> Result:
        try:
            return self._dispatch(method.upper(), path, query, headers, body, origin)
        except DataverseError as error:
            return error_result(error)

    def _dispatch(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        origin: str,
    ) -> Result:
        if path == "WhoAmI":
            return self._who_am_i(method, origin)
        if path.startswith("EntityDefinitions"):
            if method != "GET":
                raise DataverseError(
                    405, ERR_BAD_PROPERTY, "The simulator's metadata is read-only."
                )
            return metadata_result(self._by_logical, path, query, origin)
        match = ENTITY_PATH.match(path)
        table = self.tables.get(match.group("name")) if match else None
        raw_key = match.group("key") if match else None
        action = BULK_ACTIONS.get(match.group("rest") or "") if match else None
        if table is not None and action is not None and raw_key is None and method == "POST":
            check_query_options(query, frozenset())
            return self._bulk(table, action, body, origin)
        if match is None or table is None or match.group("rest"):
            raise DataverseError(
                404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{path}'."
            )
        collection = raw_key is None and method == "GET"
        check_query_options(query, COLLECTION_OPTIONS if collection else RECORD_OPTIONS)
        if raw_key is None:
            if method == "GET":
                return self._query(table, query, headers, origin)
            if method == "POST":
                return self._create(table, body, headers, query, origin)
        else:
            key = parse_key(raw_key)
            if method == "GET":
                return self._read(table, key, query, headers, origin)
            if method == "PATCH":
                return self._upsert(table, key, raw_key, body, headers, query, origin)
            if method == "DELETE":
                return self._delete(table, key)
        raise DataverseError(405, ERR_BAD_PROPERTY, f"Method {method} is not allowed on '{path}'.")

    # -- reads

    def _who_am_i(self, method: str, origin: str) -> Result:
        """The WhoAmI function: BusinessUnitId, UserId, OrganizationId
        (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/whoami).
        A function is GET only; the caller is not tracked here, so UserId is one stable id
        for the application user and BusinessUnitId the org's root unit."""
        if method != "GET":
            raise DataverseError(
                405, ERR_BAD_PROPERTY, f"Method {method} is not allowed on 'WhoAmI'."
            )
        return json_result({
            "@odata.context": f"{origin}{API_ROOT}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bu:{self.organization_id}")),
            "UserId": str(uuid.uuid5(uuid.NAMESPACE_URL, "applicationuser:crmlift")),
            "OrganizationId": self.organization_id,
        })  # fmt: skip

    def _query(
        self, table: Table, query: Mapping[str, str], headers: Mapping[str, str], origin: str
    ) -> Result:
        """``$filter`` (eq/and), ``$select``, ``$orderby``, ``$top``, ``$count``, pages of
        ``odata.maxpagesize`` (sim_wire refuses every other option)."""
        wanted = parse_filter(query.get("$filter"))
        for name in wanted:
            if name not in table.attributes and lookup_name(name) not in table.attributes:
                raise unknown_property(table, name)
        select = select_columns(table, query)
        annotate = prefers(headers, "odata.include-annotations")
        rows = order_rows(table, self._matching(table, wanted), query.get("$orderby"))
        top = parse_top(query.get("$top"))
        size = page_size(headers) if top is None else top
        offset = page_offset(query) if top is None else 0
        context = f"{origin}{API_ROOT}$metadata#{table.entity_set}"
        payload: dict[str, Any] = {"@odata.context": context}
        if count_wanted(query):
            total = sum(1 for _ in self._matching(table, wanted))
            payload["@odata.count"] = min(total, MAX_COUNT)
        page = list(islice(rows, offset, offset + size + 1))
        payload["value"] = [public_row(table, row, select, annotate) for row in page[:size]]
        if len(page) > size and top is None:
            payload["@odata.nextLink"] = next_link(
                origin, table.entity_set, query, offset + size, size
            )
        return json_result(payload)

    def _matching(self, table: Table, wanted: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Rows satisfying every term; through the key index when ``eq`` terms form a key,
        straight to the rows when an ``In`` term lists primary ids.

        Strings compare case-insensitively, as Dataverse's collation does.
        """
        terms = [(name, _folded(value)) for name, value in wanted.items()]
        listed = dict(terms).get(table.primary_id)
        if isinstance(listed, AnyOf):
            candidates = [table.rows[i] for i in sorted(listed.values) if i in table.rows]
            yield from (r for r in candidates if _satisfies(r, terms))
            return
        if wanted and table.is_key(wanted) and not any(isinstance(v, AnyOf) for _, v in terms):
            ident = table.find_by_key(wanted)
            if ident is not None:
                yield table.rows[ident]
            return
        yield from (row for row in table.rows.values() if _satisfies(row, terms))

    def _read(
        self,
        table: Table,
        key: str | dict[str, Any],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        origin: str,
    ) -> Result:
        ident = self._find(table, key)
        if ident is None:
            raise does_not_exist(table, key)
        context = f"{origin}{API_ROOT}$metadata#{table.entity_set}/$entity"
        annotate = prefers(headers, "odata.include-annotations")
        row = public_row(table, table.rows[ident], select_columns(table, query), annotate)
        return json_result({"@odata.context": context, **row})

    def _find(self, table: Table, key: str | dict[str, Any]) -> str | None:
        if isinstance(key, str):
            return key if key in table.rows else None
        if not table.is_key(key):
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"The key attributes ({', '.join(key)}) do not form an alternate key defined "
                f"on entity '{table.logical_name}'.",
            )
        return table.find_by_key(key)

    # -- writes (destinations.md §2.2)

    def _values(self, table: Table, body: bytes, creating: bool) -> dict[str, Any]:
        """Body columns validated and converted to stored form, binds resolved."""
        try:
            payload = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as error:
            raise DataverseError(400, ERR_BAD_VALUE, f"Invalid JSON. {error}") from error
        if not isinstance(payload, dict):
            raise DataverseError(400, ERR_BAD_VALUE, "The request body must be a JSON object.")
        values: dict[str, Any] = {}
        for name, value in payload.items():
            if name.endswith("@odata.bind"):
                self._bind(table, name.removesuffix("@odata.bind"), value, values)
                continue
            if "@" in name:
                continue
            attr = table.attributes.get(name)
            if attr is None:
                raise unknown_property(table, name)
            if not creating and not attr.updatable and name != table.primary_id:
                raise self._create_only(table, name)
            if attr.writable:
                values[name] = check_value(table, attr, value, self._policy)
        if "overriddencreatedon" in values and creating:
            values["createdon"] = values["overriddencreatedon"]
        return values

    @staticmethod
    def _create_only(table: Table, name: str) -> DataverseError:
        """A column whose metadata says IsValidForUpdate false, sent on an update.

        Strict where the docs are silent on the answer: the attribute metadata
        (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/
        attributemetadata, IsValidForUpdate) says the column cannot be updated, and
        ``overriddencreatedon`` is documented as set on create only (import-data docs).
        """
        return DataverseError(
            400,
            ERR_INVALID_ARGUMENT,
            f"The '{name}' attribute of the '{table.logical_name}' entity is not valid for "
            "update (IsValidForUpdate is false): send it on create only.",
        )

    def _bind(self, table: Table, nav: str, value: Any, values: dict[str, Any]) -> None:
        target_info = table.navigation.get(nav)
        if target_info is None:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"An undeclared property '{nav}' which only has property annotations in the "
                "payload but no property value was found in the payload. In OData, only "
                "declared navigation properties and declared named streams can be "
                "represented as properties without values.",
            )
        attr, target_logical = target_info
        column = table.attributes[attr].column
        if value is None:
            values[column] = values[f"{LOOKUP_TARGET}{column}"] = None
            return
        if not isinstance(value, str):
            raise DataverseError(400, ERR_BAD_VALUE, f"'{nav}@odata.bind' must be a URL string.")
        target, key, raw_key = self._reference(value)
        if target.logical_name != target_logical:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"A navigation property '{nav}' expects '{target_logical}' but the reference "
                f"'{value}' is a '{target.logical_name}'.",
            )
        ident = self._find(target, key)
        if ident is None:
            shown = key if isinstance(key, str) else raw_key
            raise DataverseError(
                400, ERR_DOES_NOT_EXIST, f"{target.logical_name} With Id = {shown} Does Not Exist"
            )
        values[column] = ident
        values[f"{LOOKUP_TARGET}{column}"] = target.logical_name

    def _reference(self, value: str) -> tuple[Table, str | dict[str, Any], str]:
        """The table and key an ``@odata.bind`` URL (absolute or relative) names."""
        path = value.split(API_ROOT, 1)[-1].lstrip("/")
        match = ENTITY_PATH.match(unquote(path))
        target = self.tables.get(match.group("name")) if match else None
        if match is None or target is None or match.group("key") is None or match.group("rest"):
            raise DataverseError(400, ERR_BAD_VALUE, f"Invalid @odata.bind reference '{value}'.")
        return target, parse_key(match.group("key")), match.group("key")

    def _remember(self, table: Table, ident: str) -> None:
        """Journal a row's before-image; rows are replaced, never mutated, so no copy."""
        if self._journal is not None:
            self._journal.append((table, ident, table.rows.get(ident)))

    @staticmethod
    def _rollback(journal: Journal) -> None:
        for table, ident, before in reversed(journal):
            if before is None:
                table.remove(ident)
            else:
                table.put(ident, before)

    def _duplicate(self, message: str = DUPLICATE_MESSAGE) -> DataverseError:
        return DataverseError(self.settings.duplicate_key_status, ERR_DUPLICATE_KEY, message)

    def _store(self, table: Table, ident: str, values: dict[str, Any]) -> dict[str, Any]:
        """Create or merge a row; new rows get createdon/modifiedon and version 1."""
        existing = table.rows.get(ident)
        settle_state(table, ident, values, existing)
        stamp = now_iso()
        if existing is None:
            row = {table.primary_id: ident, "createdon": stamp, **values}
            row["versionnumber"] = 1
        else:
            row = {**existing, **{k: v for k, v in values.items() if k != "createdon"}}
            row["versionnumber"] = existing["versionnumber"] + 1
        row["modifiedon"] = stamp
        computed_columns(table, row)
        require_location_parts(table, ident, row)
        if table.key_conflict(ident, row):
            raise self._duplicate()
        self._remember(table, ident)
        table.put(ident, row)
        return row

    def _written(
        self,
        table: Table,
        row: Mapping[str, Any],
        status_with_body: int,
        entity_id: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> Result:
        entity = f"{table.entity_set}({row[table.primary_id]})"
        if prefers(headers, "return=representation"):
            shown = public_row(table, row, select_columns(table, query))
            result = json_result(shown, status_with_body)
            result.entity = entity
            return result
        headers_out = {"OData-Version": "4.0", "OData-EntityId": entity_id, "Location": entity_id}
        return Result(204, headers_out, None, entity)

    def _create(
        self,
        table: Table,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        origin: str,
    ) -> Result:
        values = self._values(table, body, creating=True)
        ident = values.pop(table.primary_id, None) or str(uuid.uuid4())
        if ident in table.rows:
            raise self._duplicate()
        refuse_closed_create(table, ident, values)
        row = self._store(table, ident, values)
        entity_id = f"{origin}{API_ROOT}{table.entity_set}({ident})"
        return self._written(table, row, 201, entity_id, headers, query)

    def _upsert(
        self,
        table: Table,
        key: str | dict[str, Any],
        raw_key: str,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        origin: str,
    ) -> Result:
        ident = self._find(table, key)
        self._check_conditions(table, key, ident, headers)
        values = self._values(table, body, creating=ident is None)
        values.pop(table.primary_id, None)
        target = ident or (key if isinstance(key, str) else str(uuid.uuid4()))
        if ident is None:
            refuse_closed_create(table, target, values)
        else:
            refuse_read_only(table, ident, values, table.rows[ident])
        if isinstance(key, dict):
            values.update(self._key_columns(table, key))
        created = ident is None
        row = self._store(table, target, values)
        entity_id = f"{origin}{API_ROOT}{table.entity_set}({raw_key})"
        return self._written(table, row, 201 if created else 200, entity_id, headers, query)

    def _check_conditions(
        self,
        table: Table,
        key: str | dict[str, Any],
        ident: str | None,
        headers: Mapping[str, str],
    ) -> None:
        """If-Match (update only, or this version only) and If-None-Match: * (create only)."""
        if_match = header_value(headers, "If-Match")
        if if_match is not None and ident is None:
            raise does_not_exist(table, key)
        if if_match not in (None, "*") and ident is not None:
            version = f'W/"{table.rows[ident]["versionnumber"]}"'
            if if_match.strip() != version:
                raise DataverseError(412, ERR_VERSION_MISMATCH, VERSION_MESSAGE)
        if header_value(headers, "If-None-Match") == "*" and ident is not None:
            raise self._duplicate()

    # -- bulk operation messages (bulk-operations)

    def _bulk(self, table: Table, action: str, body: bytes, origin: str) -> Result:
        """``CreateMultiple`` / ``UpsertMultiple``: every target or none.

        "Any error that occurs in a bulk operation with a standard table causes the entire
        operation to roll back"; each target must carry ``@odata.type``; the answer is
        ``{"Ids": [...]}`` (https://learn.microsoft.com/power-apps/developer/data-platform/
        bulk-operations). Tables whose reference lists no such message refuse it.
        """
        if table.logical_name in NO_BULK_MESSAGES:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"The '{action}' message is not available for the '{table.logical_name}' "
                "entity: send one request per row (or a $batch).",
            )
        targets = self._bulk_targets(table, action, body)
        own = self._journal is None
        journal: Journal = [] if own else (self._journal or [])
        if own:
            self._journal = journal
        try:
            ids = [self._bulk_one(table, action, target, origin) for target in targets]
        except DataverseError:
            if own:
                self._rollback(journal)
            raise
        finally:
            if own:
                self._journal = None
        context = f"{origin}{API_ROOT}$metadata#Microsoft.Dynamics.CRM.{action}Response"
        return json_result({"@odata.context": context, "Ids": ids})

    @staticmethod
    def _bulk_targets(table: Table, action: str, body: bytes) -> list[dict[str, Any]]:
        try:
            payload = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as error:
            raise DataverseError(400, ERR_BAD_VALUE, f"Invalid JSON. {error}") from error
        targets = payload.get("Targets") if isinstance(payload, dict) else None
        if not isinstance(targets, list) or not targets:
            raise DataverseError(
                400, ERR_BAD_VALUE, f"'Targets' should be one of the parameters for {action}."
            )
        wanted = f"Microsoft.Dynamics.CRM.{table.logical_name}"
        for index, target in enumerate(targets):
            if not isinstance(target, dict) or target.get("@odata.type", "").lstrip("#") != wanted:
                raise DataverseError(
                    400,
                    ERR_BAD_VALUE,
                    f"Targets[{index}] must be an object whose @odata.type is '{wanted}'.",
                )
        return targets

    def _bulk_one(self, table: Table, action: str, target: dict[str, Any], origin: str) -> str:
        """One target, as the single-row create or upsert would write it; its row id."""
        reference = target.pop("@odata.id", None)
        target.pop("@odata.type", None)
        if action == "CreateMultiple":
            if reference is not None:
                raise DataverseError(
                    400, ERR_BAD_VALUE, "CreateMultiple targets take no @odata.id."
                )
            result = self._create(table, orjson.dumps(target), {}, {}, origin)
        else:
            key, raw_key = self._upsert_key(table, target, reference)
            result = self._upsert(table, key, raw_key, orjson.dumps(target), {}, {}, origin)
        return result.entity[result.entity.rfind("(") + 1 : -1]

    def _upsert_key(
        self, table: Table, target: dict[str, Any], reference: Any
    ) -> tuple[str | dict[str, Any], str]:
        """The row an UpsertMultiple target names: ``@odata.id`` (``set(key)``, as the SDK
        sends it), else its primary id, else the alternate-key columns of its body."""
        if reference is not None:
            if not isinstance(reference, str):
                raise DataverseError(400, ERR_BAD_VALUE, "@odata.id must be a URL string.")
            found, key, raw_key = self._reference(reference)
            if found is not table:
                raise DataverseError(
                    400, ERR_BAD_VALUE, f"@odata.id '{reference}' is not a {table.logical_name}."
                )
            if isinstance(key, dict) and any(
                name in target and key_value(target[name]) != key_value(value)
                for name, value in key.items()
            ):
                raise DataverseError(
                    400, ERR_BAD_VALUE, f"The key of @odata.id '{reference}' differs from the body."
                )
            return key, raw_key
        ident = target.get(table.primary_id)
        if isinstance(ident, str) and is_guid(ident):
            return ident.lower(), ident
        for attrs in table.keys.values():
            if all(target.get(name) is not None for name in attrs):
                key = {name: target[name] for name in attrs}
                return key, ",".join(f"{name}='{value}'" for name, value in key.items())
        raise DataverseError(
            400,
            ERR_BAD_VALUE,
            f"An UpsertMultiple target of '{table.logical_name}' names no row: give @odata.id, "
            f"{table.primary_id} or an alternate key's columns.",
        )

    def _key_columns(self, table: Table, key: Mapping[str, Any]) -> dict[str, Any]:
        """The alternate-key values of the URL as stored columns of the upserted row."""
        columns: dict[str, Any] = {}
        for name, value in key.items():
            attr = table.attributes[name]
            if attr.kind in LOOKUP_TYPES:
                if not isinstance(value, str) or not is_guid(value):
                    raise DataverseError(400, ERR_BAD_VALUE, f"Key '{name}' needs a GUID.")
                columns[attr.column] = value
            else:
                columns[attr.column] = check_value(table, attr, value, self._policy)
        return columns

    def _delete(self, table: Table, key: str | dict[str, Any]) -> Result:
        ident = self._find(table, key)
        if ident is None:
            raise does_not_exist(table, key)
        self._remember(table, ident)
        table.remove(ident)
        return Result(204, {"OData-Version": "4.0"})

    # -- $batch (destinations.md §2.3)

    def _batch(
        self, request: web.Request, headers: Mapping[str, str], body: bytes, origin: str
    ) -> web.Response:
        self.stats.batches += 1
        try:
            groups = parse_batch_request(request.headers.get("Content-Type", ""), body)
        except BatchFormatError as error:
            return to_web(error_result(DataverseError(400, ERR_BAD_VALUE, str(error))))
        count = sum(len(group) for group in groups)
        if count > MAX_BATCH_REQUESTS:
            message = f"The batch contains {count} requests; the limit is {MAX_BATCH_REQUESTS}."
            return to_web(error_result(DataverseError(400, ERR_BATCH_SIZE, message)))
        request[_OPERATIONS] = count
        self.stats.operations += count
        keep_going = prefers(headers, "odata.continue-on-error")
        answers: list[list[BatchResponse] | BatchResponse] = []
        failed = False
        for group in groups:
            outcome = self._group(group, origin)
            answers.append(outcome)
            failed = isinstance(outcome, BatchResponse) and outcome.status >= 400
            if failed and not keep_going:
                break
        content_type, payload = encode_batch_response(answers, f"batchresponse_{uuid.uuid4()}")
        status = 400 if failed and not keep_going else 200
        return web.Response(
            status=status,
            body=payload,
            headers={"Content-Type": content_type, "OData-Version": "4.0"},
        )

    def _group(self, group: list[BatchRequest], origin: str) -> list[BatchResponse] | BatchResponse:
        """A top-level GET (reads and metadata) or a changeset."""
        if len(group) == 1 and group[0].method == "GET":
            only = group[0]
            try:
                path, query = batch_target(only.url, {})
            except DataverseError as error:
                result = error_result(error)
            else:
                result = self._execute("GET", path, query, only.headers, b"", origin)
            return BatchResponse(result.status, result.headers, result.body)
        return self._changeset(group, origin, self._draw(self.settings.fault_part_rate))

    def _changeset(
        self, group: list[BatchRequest], origin: str, fault: bool = False
    ) -> list[BatchResponse] | BatchResponse:
        """Run a changeset atomically: every answer, or one error and nothing changed.

        ``fault`` makes a changeset that succeeded fail at commit (injected 500), so its
        writes are rolled back like any failed changeset's.
        """
        journal: Journal = []
        self._journal = journal
        try:
            answers = self._run_changeset(group, origin)
            if isinstance(answers, BatchResponse):
                self._rollback(journal)
                return answers
            if fault:
                self.stats.faults_part += 1
                self._rollback(journal)
                error = error_result(DataverseError(500, ERR_UNEXPECTED, UNEXPECTED_MESSAGE))
                return BatchResponse(500, error.headers, error.body, group[0].content_id)
            return answers
        finally:
            self._journal = None

    def _run_changeset(
        self, group: list[BatchRequest], origin: str
    ) -> list[BatchResponse] | BatchResponse:
        references: dict[str, str] = {}
        answers: list[BatchResponse] = []
        for operation in group:
            try:
                path, query = batch_target(operation.url, references)
                body = substitute_references(operation.body or b"", references)
                result = self._dispatch(
                    operation.method, path, query, operation.headers, body, origin
                )
            except DataverseError as error:
                result = error_result(error)
            answer = BatchResponse(result.status, result.headers, result.body, operation.content_id)
            if result.status >= 400:
                return answer
            # Every changeset request carries a Content-ID (OData multipart format), a
            # DELETE too; only a write's can be referenced later ($n): a DELETE's names
            # no row, and a later $n to it stays unknown.
            if operation.content_id is not None and operation.method != "DELETE":
                references[operation.content_id] = entity_path(result)
            answers.append(answer)
        return answers

    # -- SharePoint (document management's files)

    async def _sharepoint(self, request: web.Request) -> web.Response:
        """A SharePoint REST call on the configured site, with a token this server issued.

        Real SharePoint wants a token for its own resource (``https://<tenant>.sharepoint
        .com/.default``); the simulator accepts any live token it granted.
        """
        site = self.sharepoint
        path = "/" + request.match_info.get("site", "").strip("/")
        try:
            if site is None or path.rstrip("/").lower() != site.path.lower():
                raise SharePointError(404, "404", f"No SharePoint site at '{path}'.")
            if isinstance(self._authenticate(request), web.Response):
                raise SharePointError(401, UNAUTHORIZED_CODE, "Access denied.")
            body = await request.read()
            payload: Any = None
            if request.content_type == "application/json" and body:
                payload = orjson.loads(body)
            status, answer = sharepoint_call(
                site, request.method, request.match_info["tail"], body, payload
            )
        except (SharePointError, orjson.JSONDecodeError) as error:
            if not isinstance(error, SharePointError):
                error = SharePointError(400, "-1", f"Invalid JSON. {error}")
            status, answer = error.status, error.body()
        return web.Response(
            status=status, body=orjson.dumps(answer), content_type="application/json"
        )

    def sharepoint_files(self) -> dict[str, bytes]:
        """Every uploaded file's bytes by server-relative URL (empty without a site)."""
        if self.sharepoint is None:
            return {}
        return {f.server_relative_url: f.content for f in self.sharepoint.files.values()}

    # -- the truth, for tests

    async def _state(self, request: web.Request) -> web.Response:
        now = self._platform_now()
        payload = {
            "tables": {name: len(table.rows) for name, table in self.tables.items()},
            "stats": self.stats.as_dict(),
            "sharepoint": None if self.sharepoint is None else self.sharepoint.state(),
            "users": {
                client: {
                    "requests": caller.requests.total(now),
                    "execution_ms": caller.execution.total(now),
                    "in_flight": caller.in_flight,
                }
                for client, caller in self._callers.items()
            },
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def serve(
    sim: DataverseSim,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start ``sim`` on ``host:port`` (0: any free port); the caller cleans up the runner.

    With ``ssl_context`` it serves HTTPS — what Microsoft's Dataverse SDK and MSAL
    require (both refuse a plain-HTTP environment or authority).
    """
    return await serve_app(sim.app(), host, port, ssl_context)


async def run_forever(
    schema: Schema | None,
    settings: DataverseSimSettings,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve a fresh org until cancelled, then shut the server down."""
    runner, base_url = await serve(DataverseSim(schema, settings), host, port, ssl_context)
    try:
        on_ready(base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _folded(value: Any) -> Any:
    """A filter term's value as the collation compares it: strings case-insensitively."""
    if isinstance(value, AnyOf):
        return AnyOf(frozenset(key_value(v) for v in value.values))
    return key_value(value)


def _satisfies(row: Mapping[str, Any], terms: Sequence[tuple[str, Any]]) -> bool:
    return all(term_matches(key_value(row.get(name)), value) for name, value in terms)
