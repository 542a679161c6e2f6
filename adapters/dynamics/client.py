"""The Dataverse writer: client-credentials tokens, metadata, ``$batch`` upserts by alternate key.

Speaks the Web API v9.2 as ../shared/platforms/destinations.md §2 describes it.
Every write is a PATCH on the alternate key ``{prefix}_sourceid``, so a retried
or repeated write never duplicates; writes travel in ``$batch`` requests (one
request toward the 6,000-per-window limit however many operations it holds),
each operation in its own changeset so one bad record fails alone.

Service protection is counted per application user, so the client holds a pool
of them, each with its own token and governor, and hands every request to the
least busy one: throughput grows with users.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import random
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from adapters.base import FileUpload, JobLedger, ObjectInfo, WriteResult, pack
from adapters.dynamics.batch import (
    MAX_BATCH_REQUESTS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    encode_batch,
    parse_batch_response,
)
from adapters.errors import AuthError, PlatformUnavailable
from adapters.http import SessionClient
from adapters.secrets import Secret
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.governor import Governor
from ratelimit.profiles import QuotaProfile

PLATFORM = "dynamics"
API_PATH = "/api/data/v9.2/"
"""Web API root under the environment URL (destinations.md §2.2)."""
DEFAULT_BATCH_SIZE = 100
"""Operations per ``$batch``: the bench's best (bench/dynamics.py); ≤ 1,000 (§2.3)."""
FILE_BATCH_BYTES = 8 * 1024 * 1024
"""Raw file bytes per ``$batch`` of annotations: base64 in memory stays small."""
TOKEN_MARGIN_SECONDS = 120.0
"""A token is renewed this long before it expires, so no request carries a stale one
(or halfway through its life, if it lives shorter than twice this)."""
REMAINING_TIME_HEADER = "x-ms-ratelimit-time-remaining-xrm-requests"
"""Execution time left in the user's window, in seconds, comma-grouped (``1,199.46``):
§2.5 names the header; the unit is what live traces show."""
OWNER_ENTITY = "owner"
"""``ownerid``'s relationship points at the abstract owner entity; owners are
systemusers here (the mapping resolves BackDocket users to them)."""
OWNER_TARGET = "systemuser"
RETRIABLE = (0, 429, 500, 502, 503, 504)
"""Statuses worth another try; 0 is a connection lost before an answer."""
UNCERTAIN = (0, 500, 502, 504)
"""Statuses after which a request may have been carried out: the connection was lost
after sending, or the server failed without saying how far it got. A 429 or 503 is a
refusal up front."""
ENTRY = {"Content-Type": "application/json; type=entry"}
WRITE_HEADERS = {**ENTRY, "Prefer": "return=representation"}
"""Ask for 201 (created) or 200 (updated) with the row, instead of 204 for both."""
READ_HEADERS = {"Accept": "application/json"}
REQUIRED_LEVELS = frozenset({"ApplicationRequired", "SystemRequired"})
SYSTEM_SET = frozenset({"createdon", "modifiedon", "versionnumber", "ownerid"})
"""Columns Dataverse fills itself: never required of an insert."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Application:
    """One application user: an app registration the environment knows as a user."""

    client_id: str
    client_secret: Secret


@dataclass(frozen=True, slots=True)
class DataverseConfig:
    """How to reach one Dataverse environment."""

    environment_url: str
    """``https://<org>.crm.dynamics.com``: the token's scope and, by default, the API host."""
    tenant_id: str
    applications: tuple[Application, ...]
    """The pool of application users; service protection counts each separately."""
    publisher_prefix: str = "crm"
    """Prefix of the custom columns, among them the alternate key ``<prefix>_sourceid``."""
    api_url: str | None = None
    """Where requests go when not the environment URL (a proxy or a simulator)."""
    authority_url: str = "https://login.microsoftonline.com"
    batch_size: int = DEFAULT_BATCH_SIZE
    """Operations per ``$batch`` request."""
    request_timeout: float = 300.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.applications:
            raise ValueError("at least one application user is needed")
        if not 1 <= self.batch_size <= MAX_BATCH_REQUESTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_REQUESTS}")

    @property
    def org_url(self) -> str:
        """The environment this config writes to: one id map per migration and org."""
        return self.environment_url.rstrip("/")

    @property
    def base_url(self) -> str:
        return (self.api_url or self.environment_url).rstrip("/")


@dataclass(slots=True)
class _TableInfo:
    """What a write needs to know of a table, from its metadata."""

    logical_name: str
    entity_set: str
    primary_id: str
    attributes: dict[str, tuple[str, str]]
    """Column → (AttributeType, RequiredLevel)."""
    navigation: dict[str, tuple[str, str]]
    """Single-valued navigation property → (lookup column, target table)."""


@dataclass(slots=True)
class _AppUser:
    """One application user's token and the governor that keeps it under its limits."""

    application: Application
    governor: Governor
    token: str | None = None
    renew_at: float = 0.0
    """When to fetch the next token (``time.monotonic``)."""
    busy: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    uncertain: bool = False
    """An earlier attempt may have been carried out before its answer was lost: an
    upsert answered "updated" (200) may then be updating our own earlier create."""


class DataverseClient(SessionClient):
    """One environment through a pool of application users. Use as ``async with``."""

    platform = PLATFORM
    create_only_fields: frozenset[str] = frozenset()

    def __init__(
        self, config: DataverseConfig, profile: QuotaProfile, policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.policy = policy or RetryPolicy()
        self.external_id_field = f"{config.publisher_prefix}_sourceid"
        self.users = [_AppUser(app, Governor(profile)) for app in config.applications]
        self._turn = itertools.count()
        self._rng = random.Random()
        self._tables: dict[str, _TableInfo | None] = {}
        self._entity_sets: dict[str, str] = {}
        self._metadata_lock = asyncio.Lock()

    @property
    def governors(self) -> list[Governor]:
        """One per application user, for stats."""
        return [user.governor for user in self.users]

    def new_session(self) -> aiohttp.ClientSession:
        tls = (
            ssl.create_default_context(cafile=self.config.ca_file) if self.config.ca_file else True
        )
        per_user = max(user.governor.profile.concurrency for user in self.users)
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=per_user * len(self.users) + 2, ssl=tls),
        )

    # -- auth (destinations.md §2.1) -------------------------------------------

    async def _token(self, user: _AppUser, stale: str | None = None) -> str:
        async with user.lock:
            fresh = user.token is not None and user.token != stale
            if fresh and time.monotonic() < user.renew_at:
                assert user.token is not None
                return user.token
            app = user.application
            url = (
                f"{self.config.authority_url.rstrip('/')}/{self.config.tenant_id}/oauth2/v2.0/token"
            )
            form = {
                "grant_type": "client_credentials",
                "client_id": app.client_id,
                "client_secret": app.client_secret.reveal(),
                "scope": f"{self.config.environment_url.rstrip('/')}/.default",
            }
            try:
                async with self.session.post(url, data=form) as resp:
                    status, body = resp.status, await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise PlatformUnavailable(PLATFORM, "token", f"connection failed: {exc}") from exc
            if status != 200:
                raise AuthError(PLATFORM, f"{app.client_id}: {_identity_error(body, status)}")
            answer = orjson.loads(body)
            user.token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 3599))
            user.renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN_SECONDS, lifetime / 2)
            return user.token

    # -- one governed, retried request -----------------------------------------

    def _pick(self) -> _AppUser:
        """The least busy application user; ties go round the pool."""
        turn = next(self._turn)
        count = len(self.users)
        return min(
            (self.users[(turn + i) % count] for i in range(count)), key=lambda user: user.busy
        )

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        operations: int = 1,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> _Answer:
        """Send one request as the least busy user; retry what the platform says to retry.

        Every request here is idempotent (reads, upserts on the alternate key), so a
        lost connection or a 5xx is simply sent again.
        """
        user = self._pick()
        user.busy += 1
        try:
            return await self._as_user(user, method, path, what, body, headers, operations, ok)
        finally:
            user.busy -= 1

    async def _as_user(
        self,
        user: _AppUser,
        method: str,
        path: str,
        what: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        operations: int,
        ok: tuple[int, ...],
    ) -> _Answer:
        reauthed = False
        uncertain = False
        status = 0
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            async with user.governor.slot(operations=operations):
                # The token is taken once the governor lets the request go: a request can
                # wait out a throttle longer than a token has left to live.
                token = await self._token(user)
                sent = {
                    "Authorization": f"Bearer {token}",
                    "OData-MaxVersion": "4.0",
                    "OData-Version": "4.0",
                    **(headers or {}),
                }
                try:
                    # A fresh stream per attempt: aiohttp sends large bodies without copying.
                    data = io.BytesIO(body) if body is not None else None
                    async with self.session.request(
                        method, self.config.base_url + API_PATH + path, data=data, headers=sent
                    ) as resp:
                        status, payload = resp.status, await resp.read()
                        answer_headers = dict(resp.headers)
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                    status, payload, answer_headers = 0, b"", {}
                if 200 <= status < 300:
                    user.governor.completed(operations, _remaining_ms(answer_headers))
            if status in ok:
                return _Answer(status, answer_headers, payload, uncertain)
            if status == 401 and not reauthed:
                reauthed = True
                await self._token(user, stale=token)
                continue
            uncertain = uncertain or status in UNCERTAIN
            if status in RETRIABLE and attempt < self.policy.attempts:
                await user.governor.back_off(
                    self.policy, attempt, retry_after, status=status, what=what, rng=self._rng
                )
                continue
            if status in RETRIABLE or status == 401:
                break
            return _Answer(status, answer_headers, payload, uncertain)
        raise PlatformUnavailable(PLATFORM, what, f"HTTP {status or 'connection lost'}")

    async def _batch(self, requests: Sequence[BatchRequest], what: str) -> list[BatchResponse]:
        """Send operations as one ``$batch`` (each write its own changeset); one answer per
        operation, in order. Operations answered 5xx/429 inside the batch go again."""
        return [part for part, _ in await self._batch_parts(requests, what)]

    async def _batch_parts(
        self, requests: Sequence[BatchRequest], what: str
    ) -> list[tuple[BatchResponse, bool]]:
        """``_batch``, each answer with whether its operation may have been carried out by
        an earlier ``$batch`` whose answer was lost. A part answered 5xx was rolled back,
        but the same operation in a lost ``$batch`` before it may not have been: once in
        doubt, an operation stays in doubt."""
        answers: dict[int, tuple[BatchResponse, bool]] = {}
        in_doubt: set[int] = set()
        pending = list(range(len(requests)))
        for attempt in range(1, self.policy.attempts + 1):
            groups = [
                [_with_content_id(requests[i], str(i + 1))]
                if requests[i].method != "GET"
                # A GET cannot sit in a changeset; its answer is matched by position.
                else [requests[i]]
                for i in pending
            ]
            boundary = f"batch_{uuid.uuid4()}"
            content_type, body = encode_batch(groups, boundary)
            answer = await self._request(
                "POST",
                "$batch",
                what,
                body=body,
                headers={
                    "Content-Type": content_type,
                    "Accept": "application/json",
                    "Prefer": "odata.continue-on-error",
                },
                operations=len(pending),
                ok=(200,),
            )
            if answer.status != 200:
                raise PlatformUnavailable(PLATFORM, what, _error_text(answer.body, answer.status))
            try:
                parts = parse_batch_response(answer.headers.get("Content-Type", ""), answer.body)
            except BatchFormatError as exc:
                raise PlatformUnavailable(
                    PLATFORM, what, f"unreadable $batch answer: {exc}"
                ) from exc
            if len(parts) != len(pending):
                raise PlatformUnavailable(
                    PLATFORM, what, f"{len(parts)} answers for {len(pending)} operations"
                )
            if answer.uncertain:
                in_doubt.update(pending)
            retry: list[int] = []
            for index, part in zip(pending, parts, strict=True):
                if part.status in RETRIABLE and attempt < self.policy.attempts:
                    retry.append(index)
                else:
                    answers[index] = (part, index in in_doubt)
            if not retry:
                break
            log.info("dataverse.batch_parts_retry", what=what, parts=len(retry), attempt=attempt)
            await asyncio.sleep(self.policy.delay(attempt, None, self._rng))
            pending = retry
        return [answers[i] for i in range(len(requests))]

    async def _json(self, path: str, what: str) -> Any:
        answer = await self._request("GET", path, what, headers=READ_HEADERS, ok=(200,))
        if answer.status != 200:
            raise PlatformUnavailable(PLATFORM, what, _error_text(answer.body, answer.status))
        return orjson.loads(answer.body)

    # -- metadata (destinations.md §2.8) ---------------------------------------

    async def _load_entity_sets(self) -> None:
        if self._entity_sets:
            return
        found = await self._json(
            "EntityDefinitions?$select=LogicalName,EntitySetName", "entity sets"
        )
        self._entity_sets = {e["LogicalName"]: e["EntitySetName"] for e in found["value"]}

    async def _table(self, logical: str) -> _TableInfo | None:
        """A table's metadata, read once (three reads in one ``$batch``)."""
        async with self._metadata_lock:
            if logical in self._tables:
                return self._tables[logical]
            await self._load_entity_sets()
            root = f"EntityDefinitions(LogicalName='{logical}')"
            entity, attributes, relations = await self._batch(
                [
                    BatchRequest(
                        "GET",
                        f"{root}?$select=LogicalName,EntitySetName,PrimaryIdAttribute",
                        READ_HEADERS,
                    ),
                    BatchRequest(
                        "GET",
                        f"{root}/Attributes?$select=LogicalName,AttributeType,RequiredLevel",
                        READ_HEADERS,
                    ),
                    BatchRequest(
                        "GET",
                        f"{root}/ManyToOneRelationships?$select=ReferencingAttribute,"
                        "ReferencedEntity,ReferencingEntityNavigationPropertyName",
                        READ_HEADERS,
                    ),
                ],
                f"describe {logical}",
            )
            if entity.status == 404:
                self._tables[logical] = None
                return None
            for part in (entity, attributes, relations):
                if part.status != 200:
                    raise PlatformUnavailable(
                        PLATFORM, f"describe {logical}", _error_text(part.body, part.status)
                    )
            meta = orjson.loads(entity.body or b"{}")
            info = _TableInfo(
                logical_name=logical,
                entity_set=meta["EntitySetName"],
                primary_id=meta["PrimaryIdAttribute"],
                attributes={
                    a["LogicalName"]: (
                        str(a.get("AttributeType")),
                        str((a.get("RequiredLevel") or {}).get("Value", "None")),
                    )
                    for a in orjson.loads(attributes.body or b"{}")["value"]
                },
                navigation={
                    r["ReferencingEntityNavigationPropertyName"]: (
                        r["ReferencingAttribute"],
                        OWNER_TARGET
                        if r["ReferencedEntity"] == OWNER_ENTITY
                        else r["ReferencedEntity"],
                    )
                    for r in orjson.loads(relations.body or b"{}")["value"]
                },
            )
            self._entity_sets[logical] = info.entity_set
            self._tables[logical] = info
            return info

    async def _known_table(self, logical: str) -> _TableInfo:
        info = await self._table(logical)
        if info is None:
            raise PlatformUnavailable(PLATFORM, f"write {logical}", "the table does not exist")
        return info

    async def describe(self, sobject: str) -> ObjectInfo | None:
        """The table's columns and navigation properties, or None when it does not exist."""
        info = await self._table(sobject)
        if info is None:
            return None
        required = {
            name
            for name, (_, level) in info.attributes.items()
            if level in REQUIRED_LEVELS and name != info.primary_id and name not in SYSTEM_SET
        }
        required |= {nav for nav, (attr, _) in info.navigation.items() if attr in required}
        by_nav: dict[str, list[str]] = {}
        for nav, (attribute, target) in info.navigation.items():
            by_nav.setdefault(nav, []).append(target)
            by_nav.setdefault(attribute, []).append(target)
        return ObjectInfo(
            name=info.logical_name,
            fields=frozenset(info.attributes) | frozenset(info.navigation),
            required=frozenset(required),
            references={nav: tuple(targets) for nav, targets in by_nav.items()},
        )

    async def users_by_email(self) -> dict[str, str]:
        """Enabled systemusers' lowercased email and UPN → systemuserid (the seed matches
        BackDocket emails to ``userprincipalname``, which Dataverse keeps in ``domainname``)."""
        path = (
            "systemusers?$select=systemuserid,internalemailaddress,domainname"
            "&$filter=isdisabled eq false"
        )
        found: dict[str, str] = {}
        while path:
            page = await self._json(path, "systemusers")
            for user in page["value"]:
                for column in ("domainname", "internalemailaddress"):
                    value = user.get(column)
                    if isinstance(value, str) and "@" in value:
                        found.setdefault(value.strip().lower(), user["systemuserid"])
            path = str(page.get("@odata.nextLink") or "").split(API_PATH, 1)[-1]
        return found

    # -- writes -----------------------------------------------------------------

    async def upsert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], ledger: JobLedger
    ) -> list[WriteResult]:
        """PATCH every record on its alternate key, ``batch_size`` to a ``$batch``.

        The call is journaled as one job before its first request goes out: should the
        process die with answers in flight, ``recover`` finds which records landed.
        """
        info = await self._known_table(sobject)
        await ledger.job_opened(f"dataverse-{uuid.uuid4()}", sobject, len(records))
        size = self.config.batch_size
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        answers = await asyncio.gather(*(self._upsert_chunk(info, c) for c in chunks))
        return [result for answer in answers for result in answer]

    async def _upsert_chunk(
        self, info: _TableInfo, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        key = self.external_id_field
        requests = [
            BatchRequest(
                "PATCH",
                f"{info.entity_set}({key}={_literal(str(r[key]))})?$select={info.primary_id}",
                WRITE_HEADERS,
                orjson.dumps(self._body(info, r)),
            )
            for r in records
        ]
        parts = await self._batch_parts(requests, f"upsert {len(records)} {info.logical_name}")
        return [
            _write_result(str(r[key]), info, part, uncertain)
            for r, (part, uncertain) in zip(records, parts, strict=True)
        ]

    def _body(self, info: _TableInfo, record: Mapping[str, Any]) -> dict[str, Any]:
        """Columns as they are; lookups as ``@odata.bind`` to the target's entity set.

        The alternate key is in the URL, never repeated in the body (§2.2). An empty
        value for a column the table lacks is left out: the schema gate lets only
        lookups to tables not deployed yet be missing, and those are empty.
        """
        body: dict[str, Any] = {}
        for name, value in record.items():
            if name == self.external_id_field:
                continue
            nav = info.navigation.get(name)
            if nav is None:
                if value is None and name not in info.attributes:
                    continue
                body[name] = ",".join(value) if isinstance(value, list) else value
            elif value is not None:
                target_set = self._entity_sets.get(nav[1], f"{nav[1]}s")
                body[f"{name}@odata.bind"] = f"/{target_set}({value})"
        return body

    async def fetch(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Current values of rows by id, lookups as ``_x_value``: the pre-images rollback
        restores."""
        info = await self._known_table(sobject)
        columns = {info.primary_id}
        for name in fields:
            if name in info.navigation:
                columns.add(f"_{info.navigation[name][0]}_value")
            elif name in info.attributes:
                columns.add(name)
        select = ",".join(sorted(columns))
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids), self.config.batch_size):
            requests = [
                BatchRequest("GET", f"{info.entity_set}({i})?$select={select}", READ_HEADERS)
                for i in chunk
            ]
            for part in await self._batch(requests, f"read {len(chunk)} {sobject}"):
                if part.status == 200 and part.body:
                    row = orjson.loads(part.body)
                    row.pop("@odata.context", None)
                    found[row[info.primary_id]] = row
        return found

    async def find(self, sobject: str, external_ids: Sequence[str]) -> dict[str, str]:
        """Ids of rows already carrying these alternate-key values."""
        info = await self._known_table(sobject)
        key = self.external_id_field
        found: dict[str, str] = {}
        for chunk in _chunks(list(external_ids), self.config.batch_size):
            requests = [
                BatchRequest(
                    "GET",
                    f"{info.entity_set}({key}={_literal(e)})?$select={info.primary_id}",
                    READ_HEADERS,
                )
                for e in chunk
            ]
            for ext, part in zip(
                chunk, await self._batch(requests, f"find {sobject}"), strict=True
            ):
                if part.status == 200 and part.body:
                    found[ext] = str(orjson.loads(part.body)[info.primary_id])
        return found

    async def upload_files(self, sobject: str, uploads: Sequence[FileUpload]) -> list[WriteResult]:
        """Annotations with their content base64-encoded in ``documentbody`` (§2.9), upserted
        like any row — so a retried upload never makes a second note."""
        info = await self._known_table(sobject)
        key = self.external_id_field
        if "documentbody" not in info.attributes:
            return [
                WriteResult(
                    str(u.fields[key]),
                    None,
                    None,
                    "content_not_supported",
                    f"{sobject} takes no file content through the Web API; "
                    f"{u.filename} stays in the blob store",
                )
                for u in uploads
            ]
        results: list[WriteResult] = []
        for batch in pack(
            uploads, attrgetter("size_bytes"), FILE_BATCH_BYTES, self.config.batch_size
        ):
            rows = [
                {
                    **u.fields,
                    "documentbody": base64.b64encode(u.content.read_bytes()).decode(),
                }
                for u in batch
            ]
            results.extend(await self._upsert_chunk(info, rows))
        return results

    async def recover(
        self, job_id: str, sobject: str, external_ids: Sequence[str]
    ) -> list[WriteResult] | None:
        """What an upsert journaled before a crash left behind: its records that exist
        now, found by alternate key (whether created or updated the platform cannot
        say). The rest are written again by the load, idempotently."""
        found = await self.find(sobject, external_ids)
        return [WriteResult(ext, ident, None) for ext, ident in found.items()]


def _with_content_id(request: BatchRequest, content_id: str) -> BatchRequest:
    return BatchRequest(request.method, request.url, request.headers, request.body, content_id)


def _literal(value: str) -> str:
    """An OData string literal for a key segment: quotes doubled, then percent-encoded."""
    return "'" + quote(value.replace("'", "''"), safe="") + "'"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _remaining_ms(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == REMAINING_TIME_HEADER:
            try:
                return float(value.replace(",", "")) * 1000
            except ValueError:
                return None
    return None


def _write_result(
    external_id: str, info: _TableInfo, part: BatchResponse, uncertain: bool = False
) -> WriteResult:
    """One upsert's outcome. After a lost answer, "updated" (200) may be our own earlier
    create: ``created`` is then None (the platform cannot say; the id map can)."""
    if part.status in (200, 201) and part.body:
        row = orjson.loads(part.body)
        created = True if part.status == 201 else (None if uncertain else False)
        return WriteResult(external_id, str(row[info.primary_id]), created)
    if part.status == 204:
        entity_id = part.header("OData-EntityId") or ""
        guid = entity_id[entity_id.rfind("(") + 1 : -1] if entity_id.endswith(")") else None
        return WriteResult(external_id, guid, None)
    code, message = _error_parts(part.body, part.status)
    return WriteResult(external_id, None, None, code, message)


def _error_parts(body: bytes | None, status: int) -> tuple[str, str]:
    try:
        error = orjson.loads(body or b"{}").get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    code = str(error.get("code") or f"HTTP_{status}")
    message = str(error.get("message") or (body or b"").decode("utf-8", "replace")[:300])
    return code, message


def _error_text(body: bytes | None, status: int) -> str:
    code, message = _error_parts(body, status)
    return f"HTTP {status} {code}: {message}"


def _identity_error(body: bytes, status: int) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"HTTP {status}"
    if not isinstance(answer, dict):
        return f"HTTP {status}"
    description = str(answer.get("error_description") or "").split("\r\n", 1)[0]
    return f"{answer.get('error', 'error')}: {description}" if description else f"HTTP {status}"
