"""An aiohttp server that speaks the Dataverse Web API v9.2, for tests, benchmarks and demos.

Faithful on purpose (destinations.md §2): Microsoft identity client-credentials tokens,
204 + ``OData-EntityId`` creates, upserts by id and alternate key with If-Match /
If-None-Match, ``@odata.bind`` lookups (polymorphic ones too) that must point at real
rows, multipart ``$batch`` with atomic changesets and Content-ID references, metadata,
and — what a loader most needs to respect — per-user service protection limits answered
with 429 + ``Retry-After``. ``time_scale`` shrinks the 300-second window so tests can
cross it. ``/_sim/state`` and :meth:`DataverseSim.records` expose the truth.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from adapters.dynamics.batch import (
    MAX_BATCH_REQUESTS,
    BatchFormatError,
    BatchResponse,
    encode_batch_response,
    parse_batch_request,
)
from adapters.dynamics.sim_limits import (
    CONCURRENCY_CODE,
    EXECUTION_CODE,
    REQUESTS_CODE,
    SlidingWindow,
    concurrency_message,
    execution_message,
    requests_message,
)
from adapters.dynamics.sim_store import (
    DUPLICATE_MESSAGE,
    ERR_BAD_PROPERTY,
    ERR_BAD_VALUE,
    ERR_DOES_NOT_EXIST,
    ERR_DUPLICATE_KEY,
    ERR_VERSION_MISMATCH,
    VERSION_MESSAGE,
    DataverseError,
    Table,
    build_tables,
    check_value,
    does_not_exist,
    now_iso,
    parse_key,
    public_row,
    unknown_property,
)
from adapters.dynamics.sim_wire import (
    API_ROOT,
    ENTITY_PATH,
    Result,
    batch_target,
    entity_path,
    error_result,
    header_value,
    identity_error,
    json_result,
    lookup_name,
    parse_filter,
    parse_top,
    prefers,
    select_columns,
    select_metadata,
    substitute_references,
    to_web,
)
from adapters.simserver import serve_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = Mapping[str, Mapping[str, Mapping[str, Any]]]

TOKEN_TTL_SECONDS = 3599
"""``expires_in`` of a client-credentials token (destinations.md §2.1)."""
ERR_UNEXPECTED = "0x80040216"
"""Generic platform failure used for injected 503s [INFER]."""
ERR_BATCH_SIZE = "0x8006088a"
"""More than 1,000 requests in a batch (limit: destinations.md §2.3; code [INFER])."""
_OPERATIONS = web.RequestKey("operations", int)
"""Operations a request carried (a ``$batch`` many), for execution-time charging."""
_READ_ONLY = frozenset({"createdon", "modifiedon", "versionnumber"})
"""Columns Dataverse sets itself and silently ignores in a body (use overriddencreatedon)."""


@dataclass(frozen=True)
class DataverseSimSettings:
    """How the simulated org authenticates, throttles and misbehaves (destinations.md §2.5)."""

    tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    client_id: str = "5a1f3f5e-0d7c-4b8e-9c1a-3a6f0c2d9e11"
    client_secret: str = "s3cret"
    org_url: str = "https://crmlift-sim.crm.dynamics.com"
    publisher_prefix: str = "crm"
    requests_per_window: int = 6000
    execution_ms_per_window: int = 1_200_000
    window_seconds: float = 300.0
    max_concurrent: int = 52
    time_scale: float = 1.0
    min_execution_ms: float = 5.0
    """Execution time charged per operation at least, as server work the wall clock misses."""
    users: tuple[tuple[str, str], ...] = (("Ada Admin", "ada.admin@example.com"),)
    duplicate_key_status: int = 412
    """412, 409 and 400 are all observed for 0x80040237 (destinations.md §2.7)."""
    latency_seconds: float = 0.0
    fault_503_rate: float = 0.0
    fault_seed: int = 0

    def __post_init__(self) -> None:
        if min(self.requests_per_window, self.execution_ms_per_window, self.max_concurrent) <= 0:
            raise ValueError("limits must be positive")
        if self.window_seconds <= 0 or self.time_scale <= 0:
            raise ValueError("window_seconds and time_scale must be positive")
        if not 0 <= self.fault_503_rate <= 1 or self.latency_seconds < 0:
            raise ValueError("fault_503_rate must be in [0, 1] and latency not negative")
        if self.duplicate_key_status not in (400, 409, 412):
            raise ValueError("duplicate_key_status must be 400, 409 or 412")
        if not re.fullmatch(r"[a-z][a-z0-9]{1,7}", self.publisher_prefix):
            raise ValueError("publisher_prefix must be 2-8 lowercase letters or digits")


@dataclass
class DataverseSimStats:
    """What the server saw; API requests exclude the token endpoint and ``/_sim``."""

    requests: int = 0
    batches: int = 0
    operations: int = 0
    tokens_issued: int = 0
    unauthorized: int = 0
    throttled: dict[str, int] = field(default_factory=dict)
    faults_503: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _User:
    """Service protection state of one authenticated caller (the token's client id)."""

    requests: SlidingWindow
    execution: SlidingWindow
    in_flight: int = 0


class DataverseSim:
    """One Dataverse org: tables from ``schema`` (custom columns), limits from ``settings``."""

    def __init__(
        self,
        schema: Schema | None = None,
        settings: DataverseSimSettings = DataverseSimSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stats = DataverseSimStats()
        self.tables = build_tables(schema or {}, settings.publisher_prefix)
        self._by_logical = {table.logical_name: table for table in self.tables.values()}
        self._clock = clock
        self._grants: dict[str, tuple[str, float]] = {}
        self._users: dict[str, _User] = {}
        self._journal: list[tuple[Table, str, dict[str, Any] | None]] | None = None
        self._fault_rng = random.Random(f"faults:{settings.fault_seed}")
        users = self.tables["systemusers"]
        for fullname, email in settings.users:
            ident = str(uuid.uuid5(uuid.NAMESPACE_URL, f"systemuser:{email}"))
            users.rows[ident] = {
                "systemuserid": ident,
                "fullname": fullname,
                "internalemailaddress": email,
                "domainname": email,
                "createdon": now_iso(),
                "modifiedon": now_iso(),
                "versionnumber": 1,
            }

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._issue_token)
        app.router.add_get("/_sim/state", self._state)
        app.router.add_route("*", API_ROOT + "{tail:.*}", self._api)
        return app

    def records(self, entity_set: str) -> list[dict[str, Any]]:
        """Every row of a table as the Web API would return it, in insertion order."""
        table = self.tables[entity_set]
        return [public_row(table, row, None) for row in table.rows.values()]

    def _platform_now(self) -> float:
        return self._clock() * self.settings.time_scale

    # -- the gate: auth, faults and service protection (destinations.md §2.5)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_ROOT):
            return await handler(request)
        self.stats.requests += 1
        client = self._client_of(request)
        if client is None:
            self.stats.unauthorized += 1
            challenge = (
                "Bearer error=invalid_token, authorization_uri=https://login.microsoftonline.com/"
                f"{self.settings.tenant_id}/oauth2/authorize, resource_id={self.settings.org_url}"
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if self._fault_rng.random() < self.settings.fault_503_rate:
            self.stats.faults_503 += 1
            return to_web(
                error_result(DataverseError(503, ERR_UNEXPECTED, "An unexpected error occurred."))
            )
        user = self._user(client)
        refusal = self._admit(user)
        if refusal is not None:
            return refusal
        user.in_flight += 1
        started = self._clock()
        try:
            if self.settings.latency_seconds:
                await asyncio.sleep(self.settings.latency_seconds)
            response = await handler(request)
        finally:
            user.in_flight -= 1
            elapsed_ms = (self._clock() - started) * 1000 * self.settings.time_scale
            operations = request.get(_OPERATIONS, 1)
            charged = max(elapsed_ms, self.settings.min_execution_ms * operations)
            user.execution.add(self._platform_now(), charged)
        self._limit_headers(response, user)
        return response

    def _client_of(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._grants.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant[1] <= self._clock():
            return None
        return grant[0]

    def _user(self, client: str) -> _User:
        user = self._users.get(client)
        if user is None:
            window = self.settings.window_seconds
            user = _User(
                SlidingWindow(self.settings.requests_per_window, window),
                SlidingWindow(self.settings.execution_ms_per_window, window),
            )
            self._users[client] = user
        return user

    def _admit(self, user: _User) -> web.Response | None:
        """Concurrency first (immediate), then requests, then execution time."""
        settings = self.settings
        now = self._platform_now()
        if user.in_flight >= settings.max_concurrent:
            return self._throttle(CONCURRENCY_CODE, concurrency_message(settings.max_concurrent), 1)
        wait = user.execution.wait(now, settings.min_execution_ms)
        if wait > 0:
            message = execution_message(settings.execution_ms_per_window, settings.window_seconds)
            return self._throttle(EXECUTION_CODE, message, wait)
        wait = user.requests.try_add(now)
        if wait > 0:
            message = requests_message(settings.requests_per_window, settings.window_seconds)
            return self._throttle(REQUESTS_CODE, message, wait)
        return None

    def _throttle(self, code: str, message: str, platform_wait: float) -> web.Response:
        """429 with whole-second ``Retry-After`` in wall-clock seconds, never below 1."""
        self.stats.throttled[code] = self.stats.throttled.get(code, 0) + 1
        seconds = max(1, math.ceil(platform_wait / self.settings.time_scale - 1e-9))
        response = to_web(error_result(DataverseError(429, code, message)))
        response.headers["Retry-After"] = str(seconds)
        return response

    def _limit_headers(self, response: web.StreamResponse, user: _User) -> None:
        now = self._platform_now()
        remaining = self.settings.requests_per_window - user.requests.total(now)
        time_left = self.settings.execution_ms_per_window - user.execution.total(now)
        response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(int(remaining))
        response.headers["x-ms-ratelimit-time-remaining-xrm-requests"] = (
            f"{max(0.0, time_left):.2f}"
        )

    # -- token (destinations.md §2.1)

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
        if client_id != settings.client_id:
            return identity_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        secret = str(form.get("client_secret", "")).encode()
        if not secrets.compare_digest(secret, settings.client_secret.encode()):
            return identity_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scope = str(form.get("scope", ""))
        if scope != f"{settings.org_url.rstrip('/')}/.default":
            return identity_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
            )
        token = secrets.token_urlsafe(32)
        self._grants[token] = (client_id, self._clock() + TOKEN_TTL_SECONDS)
        self.stats.tokens_issued += 1
        payload = {
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECONDS,
            "ext_expires_in": TOKEN_TTL_SECONDS,
            "access_token": token,
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    # -- the Web API

    async def _api(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        body = await request.read()
        headers = dict(request.headers)
        origin = f"{request.scheme}://{request.host}"
        if tail == "$batch":
            if request.method != "POST":
                return to_web(
                    error_result(DataverseError(405, ERR_BAD_PROPERTY, "Use POST for $batch."))
                )
            return self._batch(request, headers, body, origin)
        self.stats.operations += 1
        result = self._execute(request.method, tail, dict(request.query), headers, body, origin)
        return to_web(result)

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
        match = ENTITY_PATH.match(path)
        if match is None:
            raise DataverseError(
                404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{path}'."
            )
        name, raw_key, rest = match.group("name"), match.group("key"), match.group("rest")
        if name == "EntityDefinitions" and method == "GET":
            return self._metadata(raw_key, rest, query, origin)
        table = self.tables.get(name)
        if table is None or rest:
            raise DataverseError(
                404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{name}'."
            )
        if raw_key is None:
            if method == "GET":
                return self._query(table, query, origin)
            if method == "POST":
                return self._create(table, body, headers, query, origin)
        else:
            key = parse_key(raw_key)
            if method == "GET":
                return self._read(table, key, query, origin)
            if method == "PATCH":
                return self._upsert(table, key, raw_key, body, headers, query, origin)
            if method == "DELETE":
                return self._delete(table, key)
        raise DataverseError(405, ERR_BAD_PROPERTY, f"Method {method} is not allowed on '{path}'.")

    # -- metadata (destinations.md §2.8)

    def _metadata(
        self, raw_key: str | None, rest: str | None, query: Mapping[str, str], origin: str
    ) -> Result:
        context = f"{origin}{API_ROOT}$metadata#EntityDefinitions"
        if raw_key is None:
            wanted = parse_filter(query.get("$filter"))
            found = [
                select_metadata(table.metadata(), query)
                for table in self.tables.values()
                if all(table.metadata().get(k) == v for k, v in wanted.items())
            ]
            return json_result({"@odata.context": context, "value": found})
        key = parse_key(raw_key)
        logical = key.get("LogicalName") if isinstance(key, dict) else None
        table = self._by_logical.get(str(logical))
        if table is None:
            raise DataverseError(
                404, ERR_DOES_NOT_EXIST, f"Could not find entity with name '{logical}'."
            )
        if rest is None:
            return json_result(
                {"@odata.context": f"{context}/$entity", **select_metadata(table.metadata(), query)}
            )
        if rest == "/Attributes":
            attrs = [select_metadata(a.metadata(), query) for a in table.attributes.values()]
            return json_result(
                {"@odata.context": f"{context}({raw_key})/Attributes", "value": attrs}
            )
        if rest == "/Keys":
            keys = [select_metadata(k, query) for k in table.keys_metadata()]
            return json_result({"@odata.context": f"{context}({raw_key})/Keys", "value": keys})
        raise DataverseError(404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{rest}'.")

    # -- reads

    def _query(self, table: Table, query: Mapping[str, str], origin: str) -> Result:
        wanted = parse_filter(query.get("$filter"))
        for name in wanted:
            if name not in table.attributes and lookup_name(name) not in table.attributes:
                raise unknown_property(table, name)
        top = parse_top(query.get("$top"))
        select = select_columns(table, query)
        rows = [
            public_row(table, row, select)
            for row in table.rows.values()
            if all(row.get(name) == value for name, value in wanted.items())
        ][:top]
        context = f"{origin}{API_ROOT}$metadata#{table.entity_set}"
        return json_result({"@odata.context": context, "value": rows})

    def _read(
        self, table: Table, key: str | dict[str, Any], query: Mapping[str, str], origin: str
    ) -> Result:
        ident = self._find(table, key)
        if ident is None:
            raise does_not_exist(table, key)
        context = f"{origin}{API_ROOT}$metadata#{table.entity_set}/$entity"
        row = public_row(table, table.rows[ident], select_columns(table, query))
        return json_result({"@odata.context": context, **row})

    def _find(self, table: Table, key: str | dict[str, Any]) -> str | None:
        if isinstance(key, str):
            return key if key in table.rows else None
        if tuple(sorted(key)) not in {tuple(sorted(attrs)) for attrs in table.keys.values()}:
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
            elif "@" in name or name in _READ_ONLY:
                continue
            elif name not in table.attributes:
                raise unknown_property(table, name)
            else:
                values[name] = check_value(table, table.attributes[name], value)
        if "overriddencreatedon" in values and creating:
            values["createdon"] = values["overriddencreatedon"]
        return values

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
        if value is None:
            values[f"_{attr}_value"] = None
            return
        if not isinstance(value, str):
            raise DataverseError(400, ERR_BAD_VALUE, f"'{nav}@odata.bind' must be a URL string.")
        path = value.split(API_ROOT, 1)[-1].lstrip("/")
        match = ENTITY_PATH.match(unquote(path))
        target = self.tables.get(match.group("name")) if match else None
        if match is None or target is None or match.group("key") is None or match.group("rest"):
            raise DataverseError(400, ERR_BAD_VALUE, f"Invalid @odata.bind reference '{value}'.")
        if target.logical_name != target_logical:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"A navigation property '{nav}' expects '{target_logical}' but the reference "
                f"'{value}' is a '{target.logical_name}'.",
            )
        key = parse_key(match.group("key"))
        ident = self._find(target, key)
        if ident is None:
            shown = key if isinstance(key, str) else match.group("key")
            raise DataverseError(
                400, ERR_DOES_NOT_EXIST, f"{target.logical_name} With Id = {shown} Does Not Exist"
            )
        values[f"_{attr}_value"] = ident

    def _remember(self, table: Table, ident: str) -> None:
        if self._journal is not None:
            before = table.rows.get(ident)
            self._journal.append((table, ident, None if before is None else dict(before)))

    def _rollback(self, journal: list[tuple[Table, str, dict[str, Any] | None]]) -> None:
        for table, ident, before in reversed(journal):
            if before is None:
                table.rows.pop(ident, None)
            else:
                table.rows[ident] = before

    def _duplicate(self, message: str = DUPLICATE_MESSAGE) -> DataverseError:
        return DataverseError(self.settings.duplicate_key_status, ERR_DUPLICATE_KEY, message)

    def _check_keys(self, table: Table, ident: str, row: Mapping[str, Any]) -> None:
        for attrs in table.keys.values():
            values = {name: row.get(name) for name in attrs}
            if any(value is None for value in values.values()):
                continue
            other = table.find_by_key(values)
            if other is not None and other != ident:
                raise self._duplicate()

    def _store(self, table: Table, ident: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Create or merge a row; new rows get createdon/modifiedon and version 1."""
        existing = table.rows.get(ident)
        stamp = now_iso()
        if existing is None:
            row = {table.primary_id: ident, "createdon": stamp, **values}
            row["modifiedon"] = stamp
            row["versionnumber"] = 1
        else:
            row = {**existing, **{k: v for k, v in values.items() if k != "createdon"}}
            row["modifiedon"] = stamp
            row["versionnumber"] = existing["versionnumber"] + 1
        self._check_keys(table, ident, row)
        self._remember(table, ident)
        table.rows[ident] = row
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
            result = json_result(
                public_row(table, row, select_columns(table, query)), status_with_body
            )
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
        if_match = header_value(headers, "If-Match")
        if if_match is not None and ident is None:
            raise does_not_exist(table, key)
        if if_match not in (None, "*") and ident is not None:
            version = f'W/"{table.rows[ident]["versionnumber"]}"'
            if if_match.strip() != version:
                raise DataverseError(412, ERR_VERSION_MISMATCH, VERSION_MESSAGE)
        if header_value(headers, "If-None-Match") == "*" and ident is not None:
            raise self._duplicate()
        values = self._values(table, body, creating=ident is None)
        values.pop(table.primary_id, None)
        if isinstance(key, dict):
            for name, value in key.items():
                values[name] = check_value(table, table.attributes[name], value)
        created = ident is None
        row = self._store(
            table, ident or (key if isinstance(key, str) else str(uuid.uuid4())), values
        )
        entity_id = f"{origin}{API_ROOT}{table.entity_set}({raw_key})"
        return self._written(table, row, 201 if created else 200, entity_id, headers, query)

    def _delete(self, table: Table, key: str | dict[str, Any]) -> Result:
        ident = self._find(table, key)
        if ident is None:
            raise does_not_exist(table, key)
        self._remember(table, ident)
        del table.rows[ident]
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
            if len(group) == 1 and group[0].method == "GET":
                only = group[0]
                path, query = batch_target(only.url, {})
                result = self._execute("GET", path, query, only.headers, b"", origin)
                answers.append(BatchResponse(result.status, result.headers, result.body))
                failed = result.status >= 400
            else:
                outcome = self._changeset(group, origin)
                answers.append(outcome)
                failed = isinstance(outcome, BatchResponse)
            if failed and not keep_going:
                break
        content_type, payload = encode_batch_response(answers, f"batchresponse_{uuid.uuid4()}")
        status = 400 if failed and not keep_going else 200
        return web.Response(
            status=status,
            body=payload,
            headers={"Content-Type": content_type, "OData-Version": "4.0"},
        )

    def _changeset(self, group: list[Any], origin: str) -> list[BatchResponse] | BatchResponse:
        """Run a changeset atomically: every answer, or one error and nothing changed."""
        journal: list[tuple[Table, str, dict[str, Any] | None]] = []
        self._journal = journal
        references: dict[str, str] = {}
        answers: list[BatchResponse] = []
        try:
            for operation in group:
                try:
                    path, query = batch_target(operation.url, references)
                    body = substitute_references(operation.body or b"", references)
                    result = self._dispatch(
                        operation.method, path, query, operation.headers, body, origin
                    )
                except DataverseError as error:
                    result = error_result(error)
                if result.status >= 400:
                    self._rollback(journal)
                    return BatchResponse(
                        result.status, result.headers, result.body, operation.content_id
                    )
                if operation.content_id is not None:
                    references[operation.content_id] = entity_path(result)
                answers.append(
                    BatchResponse(result.status, result.headers, result.body, operation.content_id)
                )
            return answers
        finally:
            self._journal = None

    # -- the truth, for tests

    async def _state(self, request: web.Request) -> web.Response:
        now = self._platform_now()
        payload = {
            "tables": {name: len(table.rows) for name, table in self.tables.items()},
            "stats": self.stats.as_dict(),
            "users": {
                client: {
                    "requests": user.requests.total(now),
                    "execution_ms": user.execution.total(now),
                    "in_flight": user.in_flight,
                }
                for client, user in self._users.items()
            },
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def serve(
    sim: DataverseSim, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start ``sim`` on ``host:port`` (0: any free port); the caller cleans up the runner."""
    return await serve_app(sim.app(), host, port)


async def run_forever(
    schema: Schema | None,
    settings: DataverseSimSettings,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
) -> None:
    """Serve a fresh org until cancelled, then shut the server down."""
    runner, base_url = await serve(DataverseSim(schema, settings), host, port)
    try:
        on_ready(base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
