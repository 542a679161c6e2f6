"""An aiohttp server that speaks the BackDocket contract, for tests, benchmarks and demos.

It is faithful on purpose — expiring OAuth tokens, a per-token token bucket (the
same ``TokenBucket`` the client governs itself with), opaque cursors over
``(updated_at, id)``, windows, deletions, streamed documents — and misbehaves on
purpose when asked: latency, records updated while an extraction runs, and injected
faults — 429 (with and without ``Retry-After``), 500, 503, slow answers and
connections cut partway through the body — each at a rate set in :class:`SimSettings`,
drawn from one RNG seeded by ``fault_seed`` and counted in :class:`SimStats`.
``/_sim/state`` exposes the current truth so audits can compare.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import random
import secrets
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from adapters.backdocket.client import COLLECTIONS
from adapters.backdocket.tenant import (
    PARTY_ROLES,
    Tenant,
    generate_tenant,
    iso_from_micros,
    to_micros,
)
from adapters.base import Record, content_hash
from adapters.simserver import admin_gate, new_admin_token, serve_app
from ratelimit.bucket import TokenBucket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RESET = "reset"
_SLOW = "slow"
_CUT = web.RequestKey("backdocket_cut", bool)
"""Set on a request whose answer the gate will cut: a streaming handler cuts it itself."""


@dataclass(frozen=True)
class SimSettings:
    """How the simulated tenant authenticates, throttles and misbehaves.

    Faults apply to ``/api/`` calls only (never ``/oauth/token`` or ``/_sim``), after
    authentication and the token bucket, so a faulted call still spends a bucket token.
    Each call draws once from the fault RNG (seeded by ``fault_seed``) and gets at most
    one fault: the ``fault_*_rate`` shares partition that draw, so they must add up to
    at most 1 and each is honoured on its own. Every API call is a read, so no fault
    can lose or half-apply a write.
    """

    client_id: str = "crmlift"
    client_secret: str = "s3cret"
    admin_token: str = field(default_factory=new_admin_token, repr=False)
    """What ``/_sim`` endpoints require in the ``X-Crmlift-Sim-Admin`` header."""
    token_ttl: float = 3600.0
    """Seconds a token lives; afterwards calls with it get 401 ``invalid_token``."""
    rate: float = 20.0
    burst: float = 40.0
    latency_min: float = 0.0
    latency_max: float = 0.0
    fault_503_rate: float = 0.0
    """Share of API calls answered 503 ``{"error": "maintenance"}`` with ``Retry-After:
    fault_retry_after``, without being served (counted in ``faults_503``)."""
    fault_429_rate: float = 0.0
    """Share of API calls answered 429 ``{"error": "rate_limited"}`` with ``Retry-After:
    fault_retry_after``, without being served (counted in ``injected_429``)."""
    fault_retry_after: float = 0.2
    """Seconds an injected 503 or 429 asks the client to wait."""
    fault_429_no_retry_after_rate: float = 0.0
    """Share of API calls answered 429 ``{"error": "rate_limited"}`` with no ``Retry-After``
    header at all, so the client must pick its own back-off (counted in
    ``injected_429_no_retry_after`` and, as every injected 429, in ``injected_429``)."""
    fault_500_rate: float = 0.0
    """Share of API calls answered 500 ``{"error": "internal_error"}``, without being served
    (counted in ``faults_500``)."""
    fault_reset_rate: float = 0.0
    """Share of API calls whose connection is cut partway through the answer: the real
    status line and headers (with the full ``Content-Length``) and about half the body are
    sent, then the connection closes, so the client sees ``aiohttp.ClientPayloadError``
    while reading the body (counted in ``faults_reset``; not in ``served_ok``). Document
    downloads are cut the same way, halfway through the stream."""
    fault_slow_rate: float = 0.0
    """Share of API calls held ``fault_slow_seconds`` before they are served, on top of any
    latency (counted in ``faults_slow``); the answer itself is normal."""
    fault_slow_seconds: float = 2.0
    """How long a slow call (``fault_slow_rate``) is held, in seconds."""
    mutate_every: int = 0
    churn_every: int = 0
    """Every N-th API call let through (listings, counts, records, the deletion feed and
    document content alike) a user changes the tenant just before it is served: an
    edit, a new record, a deletion or a new document version, in turn — a firm that
    keeps working while it is read (0: never). Counted in ``SimStats.churn``."""
    churn_max: int = 0
    """Changes ``churn_every`` makes before the firm stops working (0: no limit)."""
    max_page_size: int = 500
    default_page_size: int = 100
    fault_seed: int = 0
    """Seed of the fault RNG (and of the latency and mutation RNGs): same seed, same faults."""

    def fault_bands(self) -> tuple[tuple[str, float], ...]:
        """Each injected fault with its share of the one draw per call, in draw order."""
        return (
            ("503", self.fault_503_rate),
            ("429", self.fault_429_rate),
            ("429_no_retry_after", self.fault_429_no_retry_after_rate),
            ("500", self.fault_500_rate),
            (_RESET, self.fault_reset_rate),
            (_SLOW, self.fault_slow_rate),
        )

    def __post_init__(self) -> None:
        if self.token_ttl <= 0 or self.rate <= 0 or self.burst <= 0:
            raise ValueError("token_ttl, rate and burst must be positive")
        if not 0 <= self.latency_min <= self.latency_max:
            raise ValueError("latency must satisfy 0 <= latency_min <= latency_max")
        rates = [rate for _, rate in self.fault_bands()]
        if min(rates) < 0:
            raise ValueError("fault rates must not be negative")
        if sum(rates) > 1:
            raise ValueError("fault rates must add up to at most 1")
        if self.fault_slow_seconds < 0:
            raise ValueError("fault_slow_seconds must not be negative")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError("page sizes must satisfy 1 <= default_page_size <= max_page_size")
        if min(self.mutate_every, self.churn_every, self.churn_max, self.fault_retry_after) < 0:
            raise ValueError(
                "mutate_every, churn_every, churn_max and fault_retry_after must not be negative"
            )


@dataclass
class SimStats:
    """What the server saw; API calls exclude ``/oauth/token`` and ``/_sim``. Times: loop time.

    ``throttled_429`` counts every 429, bucket and injected alike; ``injected_429`` is the
    injected share (with or without ``Retry-After``), so a client's own overshoot is
    ``throttled_429 - injected_429``. ``faults_*`` count injected faults by kind.
    """

    requests: int = 0
    served_ok: int = 0
    throttled_429: int = 0
    injected_429: int = 0
    injected_429_no_retry_after: int = 0
    faults_503: int = 0
    faults_500: int = 0
    faults_reset: int = 0
    faults_slow: int = 0
    unauthorized: int = 0
    client_errors: int = 0
    tokens_issued: int = 0
    mutations: int = 0
    churn: int = 0
    bytes_served: int = 0
    first_request_at: float | None = None
    last_request_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ApiError(Exception):
    """A refusal the gate turns into the contract's ``{"error": code}`` response."""

    def __init__(self, status: int, code: str, retry_after: float | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass(slots=True)
class _Grant:
    expires_at: float
    bucket: TokenBucket


@dataclass(slots=True)
class _SortedRecords:
    """One collection kept sorted by ``(updated_at micros, id)``: a page is a bisect and a slice."""

    keys: list[tuple[int, str]]
    rows: list[Record]
    by_id: dict[str, tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Sequence[Record]) -> _SortedRecords:
        keyed = sorted(
            (((_micros_of(row["updated_at"]), row["id"]), row) for row in records),
            key=lambda pair: pair[0],
        )
        keys = [key for key, _ in keyed]
        return cls(keys, [row for _, row in keyed], {key[1]: key for key in keys})

    def window(self, since: int | None, before: int | None) -> tuple[int, int]:
        """Index range of ``since <= updated_at < before`` (either bound may be open)."""
        low = 0 if since is None else bisect_left(self.keys, (since, ""))
        high = len(self.keys) if before is None else bisect_left(self.keys, (before, ""))
        return low, max(low, high)

    def get(self, ident: str) -> Record | None:
        key = self.by_id.get(ident)
        return None if key is None else self.rows[bisect_left(self.keys, key)]

    def insert(self, record: Record, updated: int) -> None:
        """Add a new record at its place in the order."""
        key = (updated, record["id"])
        index = bisect_right(self.keys, key)
        self.keys.insert(index, key)
        self.rows.insert(index, record)
        self.by_id[record["id"]] = key

    def replace(self, record: Record, updated: int) -> None:
        """Swap in a new version of a record at its new place in the order."""
        old_key = self.by_id[record["id"]]
        index = bisect_left(self.keys, old_key)
        del self.keys[index]
        del self.rows[index]
        new_key = (updated, record["id"])
        index = bisect_right(self.keys, new_key)
        self.keys.insert(index, new_key)
        self.rows.insert(index, record)
        self.by_id[record["id"]] = new_key


def _micros_of(timestamp: str) -> int:
    return to_micros(datetime.fromisoformat(timestamp))


_CHURN = ("edit", "create", "delete", "version")
"""What a user does at each churned call, in turn."""
_CHURNED = ("contacts", "matters", "tasks", "documents", "notes")
"""Collections a working firm changes all day."""

_EDITABLE_FIELD = {
    "users": "name",
    "companies": "name",
    "contacts": "last_name",
    "matters": "description",
    "matter_parties": "role",
    "claims": "name",
    "tasks": "subject",
    "events": "subject",
    "documents": "filename",
    "notes": "body",
    "esignature_requests": "document_name",
    "intake_submissions": "prospect_name",
    "custom_field_definitions": "label",
    "workflows": "name",
    "merge_templates": "name",
}
"""The field a mid-run edit changes, per collection: one a person would plausibly edit."""


def _edited(collection: str, value: Any, revision: int) -> Any:
    if collection == "matter_parties":
        index = PARTY_ROLES.index(value) if value in PARTY_ROLES else -1
        return PARTY_ROLES[(index + 1) % len(PARTY_ROLES)]
    text = "" if value is None else str(value)
    if collection == "documents":
        stem, dot, extension = text.rpartition(".")
        if dot:
            return f"{stem} (rev {revision}).{extension}"
    return f"{text} (rev {revision})".lstrip()


def _encode_cursor(*key: int | str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def _decode_cursor(raw: str, tag: str, shape: tuple[type, ...]) -> tuple[Any, ...]:
    """Parse a cursor we issued; anything else is ``invalid_cursor``."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError) as error:
        raise _ApiError(400, "invalid_cursor") from error
    if (
        not isinstance(decoded, list)
        or len(decoded) != len(shape) + 1
        or decoded[0] != tag
        or not all(type(value) is kind for value, kind in zip(decoded[1:], shape, strict=True))
    ):
        raise _ApiError(400, "invalid_cursor")
    return tuple(decoded[1:])


def _timestamp_param(request: web.Request, name: str) -> int | None:
    """An ISO-8601 query timestamp with ``Z`` or an offset, as epoch micros.

    A ``+`` that arrived unescaped reads as a space; it is put back rather than
    refused, since that is how a hand-written query string usually breaks.
    """
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError as error:
        raise _ApiError(400, "invalid_timestamp") from error
    if moment.tzinfo is None:
        raise _ApiError(400, "invalid_timestamp")
    return to_micros(moment)


def _retry_after(seconds: float) -> str:
    """Seconds rounded up to the millisecond, so waiting exactly that long always suffices."""
    millis = math.ceil(seconds * 1000)
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis / 1000:.3f}".rstrip("0")


def _close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def _cut(
    request: web.Request, response: web.StreamResponse
) -> tuple[web.StreamResponse, int]:
    """Send ``response``'s status, headers and about half its body, then close the connection.

    Returns what to hand aiohttp and how many body bytes went out. A response already
    streamed (a document the handler cut itself, its bytes already counted) is returned
    as is.
    """
    if response.prepared:
        return response, 0
    body = response.body if isinstance(response, web.Response) else None
    data = body if isinstance(body, bytes) else b""
    partial = web.StreamResponse(status=response.status, headers=response.headers)
    partial.content_length = len(data)
    await partial.prepare(request)
    sent = data[: len(data) // 2]
    await partial.write(sent)
    _close(request)
    return partial, len(sent)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _error(status: int, code: str, retry_after: float | None = None) -> web.Response:
    response = _json({"error": code}, status)
    if retry_after is not None:
        response.headers["Retry-After"] = _retry_after(retry_after)
    return response


class BackDocketSim:
    """Serves one tenant; its state changes only by the mutations settings ask for."""

    def __init__(self, tenant: Tenant, settings: SimSettings = SimSettings()) -> None:
        self.tenant = tenant
        self.settings = settings
        self.stats = SimStats()
        self._collections = {name: _SortedRecords.of(tenant.records[name]) for name in COLLECTIONS}
        self._deletion_keys = sorted(
            (_micros_of(d["deleted_at"]), d["collection"], d["id"]) for d in tenant.deletions
        )
        self._grants: dict[str, _Grant] = {}
        self._fault_rng = random.Random(f"faults:{self.settings.fault_seed}")
        self._latency_rng = random.Random(f"latency:{self.settings.fault_seed}")
        self._mutation_rng = random.Random(f"mutations:{self.settings.fault_seed}")
        self._list_calls = 0
        self._churn_calls = 0
        self._created = 0
        latest = [rows.keys[-1][0] for rows in self._collections.values() if rows.keys]
        self._clock_floor = max(latest, default=0) + 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[admin_gate(self.settings.admin_token), self._gate])
        app.router.add_post("/oauth/token", self._issue_token)
        app.router.add_get("/_sim/state", self._state)
        app.router.add_get("/_sim/state/{collection}", self._collection_state)
        app.router.add_get("/api/v1/deletions", self._list_deletions)
        app.router.add_get("/api/v1/documents/{id}/content", self._document_content)
        app.router.add_get("/api/v1/{collection}", self._list_records)
        app.router.add_get("/api/v1/{collection}/count", self._count_records)
        app.router.add_get("/api/v1/{collection}/{id}", self._get_record)
        return app

    def current_records(self, collection: str) -> list[Record]:
        """A collection as it is now (after mutations), in ``(updated_at, id)`` order."""
        return list(self._collections[collection].rows)

    def deleted(self) -> set[tuple[str, str]]:
        """(collection, id) of every record the deletion feed reports."""
        return {(collection, ident) for _, collection, ident in self._deletion_keys}

    def current_hashes(self, collection: str) -> dict[str, str]:
        """``content_hash`` of every live record of a collection as it is now."""
        return {row["id"]: content_hash(row) for row in self._collections[collection].rows}

    # -- the gate every API call passes

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, rate limit and inject faults, in that order, then count the outcome."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        now = asyncio.get_running_loop().time()
        self._note_request(now)
        fault = None
        try:
            fault = self._admit(request, now)
            if fault == _SLOW:
                self.stats.faults_slow += 1
                await asyncio.sleep(self.settings.fault_slow_seconds)
            elif fault == _RESET:
                request[_CUT] = True
            self._churn(request)
            response = await handler(request)
        except _ApiError as refusal:
            response = _error(refusal.status, refusal.code, refusal.retry_after)
        except web.HTTPException as routing:
            code = {404: "not_found", 405: "method_not_allowed"}.get(routing.status, "error")
            response = _error(routing.status, code)
        if fault == _RESET:
            self.stats.faults_reset += 1
            response, sent = await _cut(request, response)
            self.stats.bytes_served += sent
            return response
        self._note_response(response)
        return response

    def _note_request(self, now: float) -> None:
        self.stats.requests += 1
        if self.stats.first_request_at is None:
            self.stats.first_request_at = now
        self.stats.last_request_at = now

    def _note_response(self, response: web.StreamResponse) -> None:
        status = response.status
        if status < 300:
            self.stats.served_ok += 1
        elif status == 401:
            self.stats.unauthorized += 1
        elif status == 429:
            self.stats.throttled_429 += 1
        elif status == 503:
            self.stats.faults_503 += 1
        elif 400 <= status < 500:
            self.stats.client_errors += 1
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            self.stats.bytes_served += len(response.body)

    def _admit(self, request: web.Request, now: float) -> str | None:
        """Refuse the call (401, 429, injected 5xx) or say which deferred fault it gets."""
        grant = self._grant(request, now)
        if grant is None:
            raise _ApiError(401, "invalid_token")
        wait = grant.bucket.try_take(now)
        if wait > 0:
            raise _ApiError(429, "rate_limited", retry_after=wait)
        fault = self._draw_fault()
        retry_after = self.settings.fault_retry_after
        if fault == "503":
            raise _ApiError(503, "maintenance", retry_after=retry_after)
        if fault in {"429", "429_no_retry_after"}:
            self.stats.injected_429 += 1
            if fault == "429":
                raise _ApiError(429, "rate_limited", retry_after=retry_after)
            self.stats.injected_429_no_retry_after += 1
            raise _ApiError(429, "rate_limited")
        if fault == "500":
            self.stats.faults_500 += 1
            raise _ApiError(500, "internal_error")
        return fault

    def _draw_fault(self) -> str | None:
        """One draw per call, whatever the rates: the same seed gives the same faults."""
        draw = self._fault_rng.random()
        for kind, rate in self.settings.fault_bands():
            if draw < rate:
                return kind
            draw -= rate
        return None

    def _grant(self, request: web.Request, now: float) -> _Grant | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        grant = self._grants.get(token.strip())
        if grant is None or grant.expires_at <= now:
            return None
        return grant

    async def _latency(self) -> None:
        if self.settings.latency_max > 0:
            low, high = self.settings.latency_min, self.settings.latency_max
            await asyncio.sleep(self._latency_rng.uniform(low, high))

    # -- auth

    async def _issue_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type")
        client_id = str(form.get("client_id", ""))
        client_secret = str(form.get("client_secret", ""))
        if not (
            secrets.compare_digest(client_id.encode(), self.settings.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.settings.client_secret.encode())
        ):
            return _error(401, "invalid_client")
        if form.get("scope", "read") != "read":
            return _error(400, "invalid_scope")
        now = asyncio.get_running_loop().time()
        self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
        token = secrets.token_urlsafe(24)
        bucket = TokenBucket(self.settings.rate, self.settings.burst)
        self._grants[token] = _Grant(now + self.settings.token_ttl, bucket)
        self.stats.tokens_issued += 1
        return _json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": math.ceil(self.settings.token_ttl),
            }
        )

    # -- reads

    def _records(self, request: web.Request) -> _SortedRecords:
        rows = self._collections.get(request.match_info["collection"])
        if rows is None:
            raise _ApiError(404, "not_found")
        return rows

    def _limit(self, request: web.Request) -> int:
        raw = request.query.get("limit")
        if raw is None:
            return self.settings.default_page_size
        try:
            limit = int(raw)
        except ValueError as error:
            raise _ApiError(400, "invalid_limit") from error
        if limit < 1:
            raise _ApiError(400, "invalid_limit")
        return min(limit, self.settings.max_page_size)

    async def _list_records(self, request: web.Request) -> web.Response:
        rows = self._records(request)
        limit = self._limit(request)
        since = _timestamp_param(request, "updated_since")
        before = _timestamp_param(request, "updated_before")
        raw_cursor = request.query.get("cursor")
        after = None if raw_cursor is None else _decode_cursor(raw_cursor, "r", (int, str))
        await self._latency()
        self._count_list_call(request.match_info["collection"])
        low, high = rows.window(since, before)
        start = low if after is None else max(low, bisect_right(rows.keys, after))
        end = min(start + limit, high)
        next_cursor = _encode_cursor("r", *rows.keys[end - 1]) if start < end < high else None
        return _json(
            {"data": rows.rows[start:end], "next_cursor": next_cursor, "total_estimate": high - low}
        )

    async def _count_records(self, request: web.Request) -> web.Response:
        rows = self._records(request)
        since = _timestamp_param(request, "updated_since")
        before = _timestamp_param(request, "updated_before")
        await self._latency()
        low, high = rows.window(since, before)
        return _json({"count": high - low})

    async def _get_record(self, request: web.Request) -> web.Response:
        rows = self._records(request)
        await self._latency()
        record = rows.get(request.match_info["id"])
        if record is None:
            raise _ApiError(404, "not_found")
        return _json(record)

    async def _list_deletions(self, request: web.Request) -> web.Response:
        limit = self._limit(request)
        since = _timestamp_param(request, "since")
        raw_cursor = request.query.get("cursor")
        after = None if raw_cursor is None else _decode_cursor(raw_cursor, "d", (int, str, str))
        await self._latency()
        keys = self._deletion_keys
        start = 0 if since is None else bisect_left(keys, (since, "", ""))
        if after is not None:
            start = max(start, bisect_right(keys, after))
        end = min(start + limit, len(keys))
        data = [
            {"collection": collection, "id": ident, "deleted_at": iso_from_micros(deleted)}
            for deleted, collection, ident in keys[start:end]
        ]
        next_cursor = _encode_cursor("d", *keys[end - 1]) if start < end < len(keys) else None
        return _json({"data": data, "next_cursor": next_cursor})

    async def _document_content(self, request: web.Request) -> web.StreamResponse:
        document = self._collections["documents"].get(request.match_info["id"])
        if document is None:
            raise _ApiError(404, "not_found")
        response = web.StreamResponse(
            headers={"Content-Type": document["mime_type"], "ETag": f'"{document["sha256"]}"'}
        )
        size = self.tenant.document_sizes[document["id"]]
        response.content_length = size
        await response.prepare(request)
        cut = bool(request.get(_CUT))
        remaining = size // 2 if cut else size
        for chunk in self.tenant.iter_document_content(document["id"]):
            part = chunk[:remaining]
            if part:
                await response.write(part)
                self.stats.bytes_served += len(part)
                remaining -= len(part)
            if cut and remaining <= 0:
                break
        if cut:
            _close(request)
            return response
        await response.write_eof()
        return response

    # -- mid-run edits

    def _count_list_call(self, collection: str) -> None:
        self._list_calls += 1
        every = self.settings.mutate_every
        if every > 0 and self._list_calls % every == 0:
            self.mutate(collection)

    def mutate(self, collection: str) -> Record | None:
        """Edit one random live record of ``collection`` now, as a user would mid-extraction.

        The new version is a new dict with a fresh ``updated_at`` later than anything
        served so far; dicts already handed out are never changed.
        """
        rows = self._collections[collection]
        if not rows.rows:
            return None
        current = self._mutation_rng.choice(rows.rows)
        now = max(to_micros(datetime.now(UTC)), self._clock_floor)
        self._clock_floor = now + 1
        self.stats.mutations += 1
        field_name = _EDITABLE_FIELD[collection]
        edited = {
            **current,
            "updated_at": iso_from_micros(now),
            field_name: _edited(collection, current.get(field_name), self.stats.mutations),
        }
        rows.replace(edited, now)
        return edited

    def edit(self, collection: str, ident: str, **changes: Any) -> Record:
        """A user changes one record now: a new version with a fresh ``updated_at``."""
        rows = self._collections[collection]
        current = rows.get(ident)
        if current is None:
            raise KeyError(f"{collection}/{ident} does not exist")
        now = max(to_micros(datetime.now(UTC)), self._clock_floor)
        self._clock_floor = now + 1
        edited = {**current, **changes, "updated_at": iso_from_micros(now)}
        rows.replace(edited, now)
        return edited

    def upload_new_version(self, document_id: str) -> Record:
        """A user uploads a new version of a document: new bytes, same size, new sha256."""
        versions = self.tenant.document_versions
        versions[document_id] = versions.get(document_id, 0) + 1
        digest = hashlib.sha256()
        for block in self.tenant.iter_document_content(document_id):
            digest.update(block)
        return self.edit("documents", document_id, sha256=digest.hexdigest())

    def _now(self) -> int:
        """Micros now, later than any ``updated_at`` or ``deleted_at`` handed out so far."""
        now = max(to_micros(datetime.now(UTC)), self._clock_floor)
        self._clock_floor = now + 1
        return now

    def create(self, collection: str) -> Record | None:
        """A user adds a record now: a copy of a random live one under a new id.

        A new document gets bytes of its own (same size and format as the one copied),
        so its ``sha256`` is that of the content its endpoint serves.
        """
        rows = self._collections[collection]
        if not rows.rows:
            return None
        model = self._mutation_rng.choice(rows.rows)
        self._created += 1
        ident = f"{model['id']}-new{self._created}"
        now = self._now()
        record = {**model, "id": ident, "created_at": iso_from_micros(now)}
        record["updated_at"] = iso_from_micros(now)
        if collection == "documents":
            tenant = self.tenant
            tenant.document_sizes[ident] = tenant.document_sizes[model["id"]]
            tenant.document_formats[ident] = tenant.document_formats.get(model["id"], "txt")
            record["sha256"] = hashlib.sha256(tenant.document_content(ident)).hexdigest()
        rows.insert(record, now)
        return record

    def _churn(self, request: web.Request) -> None:
        """One user change every ``churn_every`` calls let through, up to ``churn_max``."""
        every, most = self.settings.churn_every, self.settings.churn_max
        if every == 0 or (most and self.stats.churn >= most):
            return
        self._churn_calls += 1
        if self._churn_calls % every:
            return
        self.stats.churn += 1
        action = _CHURN[self.stats.churn % len(_CHURN)]
        if action == "version":
            if self._collections["documents"].rows:
                self.upload_new_version(self._churned_document(request))
            return
        collection = self._mutation_rng.choice(_CHURNED)
        rows = self._collections[collection].rows
        if action == "edit":
            self.mutate(collection)
        elif action == "create":
            self.create(collection)
        elif rows:
            self.delete(collection, str(self._mutation_rng.choice(rows)["id"]))

    def _churned_document(self, request: web.Request) -> str:
        """The document being downloaded (its bytes change under the reader), else any."""
        requested = request.match_info.get("id")
        documents = self._collections["documents"]
        if request.path.endswith("/content") and requested and documents.get(requested):
            return requested
        return str(self._mutation_rng.choice(documents.rows)["id"])

    # -- the truth, for audits

    async def _state(self, request: web.Request) -> web.Response:
        return _json(
            {
                "collections": {
                    name: {"count": len(rows.rows)} for name, rows in self._collections.items()
                },
                "deletions": {"count": len(self._deletion_keys)},
                "stats": self.stats.as_dict(),
            }
        )

    async def _collection_state(self, request: web.Request) -> web.Response:
        collection = request.match_info["collection"]
        if collection not in self._collections:
            return _error(404, "not_found")
        return _json({"hashes": self.current_hashes(collection)})

    def delete(self, collection: str, ident: str) -> Record:
        """A user deletes one record now: it leaves the listings and joins the deletion
        feed (``GET /api/v1/deletions``, ../shared/sources/backdocket-api.md) with a
        ``deleted_at`` later than anything served so far."""
        rows = self._collections[collection]
        key = rows.by_id.pop(ident, None)
        if key is None:
            raise KeyError(f"{collection}/{ident} does not exist")
        index = bisect_left(rows.keys, key)
        del rows.keys[index]
        del rows.rows[index]
        now = max(to_micros(datetime.now(UTC)), self._clock_floor)
        self._clock_floor = now + 1
        entry = (now, collection, ident)
        self._deletion_keys.insert(bisect_right(self._deletion_keys, entry), entry)
        return {"collection": collection, "id": ident, "deleted_at": iso_from_micros(now)}


async def serve(
    sim: BackDocketSim, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start ``sim`` on ``host:port`` (0: any free port); the caller cleans up the runner."""
    return await serve_app(sim.app(), host, port)


async def run_forever(
    records: int,
    seed: int,
    dirty: bool,
    settings: SimSettings,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
) -> None:
    """Generate a tenant, serve it until cancelled, then shut the server down."""
    tenant = await asyncio.to_thread(generate_tenant, records, seed, dirty=dirty)
    runner, base_url = await serve(BackDocketSim(tenant, settings), host, port)
    try:
        on_ready(base_url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


# -- a hostile source, for the extractor's defences ---------------------------------


@dataclass
class Answer:
    """One scripted HTTP answer: a JSON body (or raw bytes), or a body that never ends."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drip: bool = False
    """Send the headers and a first byte, then one byte at a time, forever."""


@dataclass
class HostileScript:
    """What a broken or hostile BackDocket answers, page by page.

    Not the contract (``BackDocketSim`` serves that): this serves exactly the bodies a
    test gives, so the extractor meets what a proxy, a bug or an attacker could send.
    Listing follows the contract's shape: a page's ``next_cursor`` leads to the page
    after the first page that handed it out; a cursor never handed out is a
    ``400 invalid_cursor``; a collection not scripted is a ``404 not_found``.
    """

    pages: dict[str, list[Any]] = field(default_factory=dict)
    deletions: list[Any] = field(default_factory=list)
    token: Answer = field(
        default_factory=lambda: Answer(
            body={"access_token": "scripted", "token_type": "Bearer", "expires_in": 3600}
        )
    )
    api: Answer | None = None
    """When set, every ``/api/`` call gets this answer."""


class HostileBackDocket:
    """Serves a ``HostileScript``; records every token request's form (a secret-leak probe)."""

    def __init__(self, script: HostileScript) -> None:
        self.script = script
        self.token_forms: list[dict[str, str]] = []
        self.api_calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/api/v1/deletions", self._deletions)
        app.router.add_get("/api/v1/{collection}/count", self._count)
        app.router.add_get("/api/v1/{collection}", self._list)
        return app

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.token_forms.append({k: str(v) for k, v in form.items()})
        return await _answer(request, self.script.token)

    async def _scripted(self, request: web.Request) -> web.StreamResponse | list[Any]:
        """The collection's scripted pages, or the answer standing in for them (the
        script's API answer, or 404 for a collection it does not list)."""
        self.api_calls += 1
        if self.script.api is not None:
            return await _answer(request, self.script.api)
        pages = self.script.pages.get(request.match_info["collection"])
        return _error(404, "not_found") if pages is None else pages

    async def _count(self, request: web.Request) -> web.StreamResponse:
        pages = await self._scripted(request)
        if isinstance(pages, web.StreamResponse):
            return pages
        if "updated_before" not in request.query:
            return _json({"count": 0})
        return _json({"count": sum(_records_in(p) for p in pages)})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        pages = await self._scripted(request)
        if isinstance(pages, web.StreamResponse):
            return pages
        catchup = "updated_before" not in request.query and request.query.get("limit") != "1"
        if catchup:  # everything was scripted before the run's snapshot
            return _json({"data": [], "next_cursor": None})
        return _page_at(pages, request.query.get("cursor"))

    async def _deletions(self, request: web.Request) -> web.StreamResponse:
        self.api_calls += 1
        if self.script.api is not None:
            return await _answer(request, self.script.api)
        pages = self.script.deletions or [{"data": [], "next_cursor": None}]
        return _page_at(pages, request.query.get("cursor"))


def _records_in(page: Any) -> int:
    data = page.get("data") if isinstance(page, dict) else None
    return len(data) if isinstance(data, list) else 0


def _page_at(pages: Sequence[Any], cursor: str | None) -> web.StreamResponse:
    if cursor is None:
        return _raw(pages[0])
    for index, page in enumerate(pages[:-1]):
        if isinstance(page, dict) and page.get("next_cursor") == cursor:
            return _raw(pages[index + 1])
    return _error(400, "invalid_cursor")


def _raw(body: Any) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, content_type="application/json")


async def _answer(request: web.Request, answer: Answer) -> web.StreamResponse:
    if not answer.drip:
        response = _raw(answer.body)
        response.set_status(answer.status)
        response.headers.update(answer.headers)
        return response
    dripping = web.StreamResponse(status=answer.status, headers=answer.headers)
    dripping.content_type = "application/json"
    await dripping.prepare(request)
    try:
        await dripping.write(b"{")
        while True:  # until the client gives up
            await asyncio.sleep(0.02)
            await dripping.write(b" ")
    except ConnectionError:  # aiohttp's reset error is one
        return dripping


async def serve_hostile(script: HostileScript) -> tuple[HostileBackDocket, web.AppRunner, str]:
    """Start a hostile source on loopback; the caller cleans up the runner."""
    server = HostileBackDocket(script)
    runner, url = await serve_app(server.app(), "127.0.0.1", 0)
    return server, runner, url
