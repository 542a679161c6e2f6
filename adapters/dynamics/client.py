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
import contextlib
import io
import itertools
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import attrgetter
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from adapters.base import (
    Column,
    FileFacts,
    FileUpload,
    JobLedger,
    ObjectInfo,
    WriteResult,
    pack,
)
from adapters.dynamics.batch import (
    MAX_BATCH_REQUESTS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    encode_batch,
    parse_batch_groups,
)
from adapters.dynamics.keys import (
    SHAREPOINT_FILES,
    decode_key,
    encode_key,
    library_table,
    lookup_key,
    row_id,
    split_lookup_key,
)
from adapters.dynamics.sharepoint import (
    MAX_SIMPLE_UPLOAD_BYTES,
    SharePointClient,
    SharePointConfig,
    SharePointRefused,
)
from adapters.errors import AuthError, PlatformUnavailable, SchemaMissing
from adapters.http import SessionClient, post_credentials
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
LOOKUP_ANNOTATION = "Microsoft.Dynamics.CRM.lookuplogicalname"
ANNOTATED = {**READ_HEADERS, "Prefer": f'odata.include-annotations="{LOOKUP_ANNOTATION}"'}
"""A read that says which table each lookup points at (a polymorphic lookup's value
alone does not)."""
MODIFIED_ON = "modifiedon"
IN_CHUNK = 100
"""Ids per ``Microsoft.Dynamics.CRM.In`` query: ~4 KB of URL, far under the 32 KB a GET's
URL may take (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-data-web-api)."""
IN_SAFE = "(),='"
"""Characters of an ``In`` filter sent as they are; brackets go percent-encoded."""
REQUIRED_LEVELS = frozenset({"ApplicationRequired", "SystemRequired"})
SYSTEM_SET = frozenset({"createdon", "modifiedon", "versionnumber", "ownerid"})
"""Columns Dataverse fills itself: never required of an insert."""
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
"""AttributeType of a column that binds through a relationship, never as a plain value."""
TABLE_SETTINGS = ("HasActivities", "HasNotes", "IsDocumentManagementEnabled")
"""EntityMetadata booleans the schema plan may require of a table
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/entitymetadata)."""
KEYED_BY_ROW_ID = frozenset({"annotation"})
"""Tables that take no custom column, so no ``{prefix}_sourceid`` alternate key (the Note
table: CanCreateAttributes false,
https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation):
rows are upserted by a primary key derived from the external id (``keys.row_id``)."""
ENTITY_SELECT = ",".join(
    ("LogicalName", "EntitySetName", "PrimaryIdAttribute", "IsActivity", *TABLE_SETTINGS)
)
ATTRIBUTE_SELECT = "LogicalName,AttributeType,RequiredLevel,IsValidForCreate,IsValidForUpdate"
OPTIONS = "$select=LogicalName&$expand=OptionSet($select=Options)"
TYPED_ATTRIBUTES: Mapping[str, str] = {
    "text": "Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength",
    "textarea": "Microsoft.Dynamics.CRM.MemoAttributeMetadata?$select=LogicalName,MaxLength",
    "picklist": f"Microsoft.Dynamics.CRM.PicklistAttributeMetadata?{OPTIONS}",
    "multipicklist": f"Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata?{OPTIONS}",
    "state": f"Microsoft.Dynamics.CRM.StateAttributeMetadata?{OPTIONS}",
    "status": f"Microsoft.Dynamics.CRM.StatusAttributeMetadata?{OPTIONS}",
}
"""Attributes cast to their metadata type, for what only that type has: MaxLength and
OptionSet ("Retrieving attributes", https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#retrieving-attributes)."""
DATAVERSE_KINDS: Mapping[Any, str] = {
    "String": "text",
    "Memo": "textarea",
    "Integer": "number",
    "BigInt": "number",
    "Decimal": "number",
    "Double": "number",
    "Money": "currency",
    "Boolean": "boolean",
    "DateTime": "datetime",
    "Picklist": "picklist",
    "State": "picklist",
    "Status": "picklist",
    "Lookup": "lookup",
    "Customer": "lookup",
    "Owner": "lookup",
    "Uniqueidentifier": "id",
}
"""AttributeType → ``Column.kind``
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/attributetypecode)."""
"""IsValidForUpdate false marks a create-only column (``overriddencreatedon``):
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/attributemetadata."""
RELATION_SELECT = "ReferencingAttribute,ReferencedEntity,ReferencingEntityNavigationPropertyName"
STATE_COLUMNS = ("statecode", "statuscode")
CLOSED_ACTIVITY_STATES = frozenset({1, 2})
"""Completed and Canceled (ACTIVITY_STATE: 1 closed, 2 canceled, 0 open,
https://learn.microsoft.com/previous-versions/ms939741(v=msdn.10)). A row cannot be created
in them (400 ``0x80048408``, issue 9) and a closed activity is read-only (field reports:
"Cannot update Closed or Cancelled Activity"; the docs give no code, so the strictest
reading): the client creates open and closes in a second request of the same changeset,
and reopens a closed row before it writes to it."""
LOCATION_TABLE = "sharepointdocumentlocation"
LOCATION_SET = "sharepointdocumentlocations"
SHAREPOINT_FILE_FIELDS = ("library", "folder")
"""A SharePoint file payload's fields: the record's table, whose document library holds
the record's folder, and that folder's relativeurl."""
SHAREPOINT_PARALLEL_UPLOADS = 4
OPEN_STATUS: Mapping[str, int] = {"task": 2, "appointment": 1}
"""The default Open status reason a reopened activity takes (task Not Started, appointment
Free, as the task and appointment references list them); other activities leave it to
the platform's default for the state."""

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
    sharepoint: SharePointConfig | None = None
    """The SharePoint site document management uses, when files go there (``[mapping]
    sharepoint_site``); None: no file goes to SharePoint."""

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
    relations: dict[tuple[str, str], str]
    """(lookup column, target table) → its single-valued navigation property, exactly as
    ManyToOneRelationships names it (case-sensitive: ``crm_MatterId``)."""
    create_only: frozenset[str] = frozenset()
    """Columns the metadata says are valid for create, not for update."""
    settings: frozenset[str] = frozenset()
    """Which of TABLE_SETTINGS the table has on."""
    is_activity: bool = False
    columns: Mapping[str, Column] = field(default_factory=dict)

    @property
    def keyed_by_row_id(self) -> bool:
        return self.logical_name in KEYED_BY_ROW_ID

    def targets(self, attribute: str) -> list[str]:
        """The tables a lookup column can point at, as its relationships say."""
        return [target for column, target in self.relations if column == attribute]


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


@dataclass(frozen=True, slots=True)
class _Operation:
    """Requests that succeed or fail together (one changeset), and which one answers for
    the record: a closed activity is reopened, written, then closed again."""

    requests: tuple[BatchRequest, ...]
    main: int = 0

    def answer(self, group: Sequence[BatchResponse], what: str) -> BatchResponse:
        """The record's answer: the main request's, or the one error of a failed changeset."""
        if len(group) == len(self.requests):
            return group[self.main] if len(group) > 1 else group[0]
        if len(group) == 1 and group[0].status >= 400:
            return group[0]
        raise PlatformUnavailable(
            PLATFORM, what, f"{len(group)} answers for a changeset of {len(self.requests)}"
        )


class UnknownLookup(SchemaMissing):
    """A lookup or column the table's metadata does not know. Real Dataverse refuses the
    whole record (400), so nothing is sent; the schema gate names these before a run."""

    def __init__(self, table: str, name: str, reason: str) -> None:
        super().__init__(
            f"{PLATFORM}: {table}.{name}: {reason}; deploy the schema plan and run again"
        )
        self.table = table
        self.field = name


class DataverseClient(SessionClient):
    """One environment through a pool of application users. Use as ``async with``."""

    platform = PLATFORM

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
        self._scoped_tokens: dict[str, tuple[str, float]] = {}
        self._scoped_lock = asyncio.Lock()
        self._libraries: dict[str, tuple[str, str]] = {}
        self._library_lock = asyncio.Lock()
        self.sharepoint = (
            SharePointClient(
                config.sharepoint, lambda: self.session, self._scoped_token, self.policy
            )
            if config.sharepoint is not None
            else None
        )

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
            scope = f"{self.config.environment_url.rstrip('/')}/.default"
            user.token, user.renew_at = await self._fetch_token(user.application, scope)
            return user.token

    async def _scoped_token(self, scope: str, stale: str | None = None) -> str:
        """A token of the first application user for another resource (SharePoint's
        ``https://<tenant>.sharepoint.com/.default``), cached and renewed like the API's."""
        async with self._scoped_lock:
            held = self._scoped_tokens.get(scope)
            if held is not None and held[0] != stale and time.monotonic() < held[1]:
                return held[0]
            self._scoped_tokens[scope] = await self._fetch_token(self.config.applications[0], scope)
            return self._scoped_tokens[scope][0]

    async def _fetch_token(self, app: Application, scope: str) -> tuple[str, float]:
        """A client-credentials token for ``scope`` and when to renew it (``time.monotonic``):
        ahead of expiry by TOKEN_MARGIN_SECONDS, or halfway through a short life."""
        url = f"{self.config.authority_url.rstrip('/')}/{self.config.tenant_id}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": app.client_id,
            "client_secret": app.client_secret.reveal(),
            "scope": scope,
        }
        try:
            status, body = await post_credentials(self.session, url, platform=PLATFORM, data=form)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailable(
                PLATFORM, f"token for {scope} from {url}", f"connection failed: {exc!r}"
            ) from exc
        if status != 200:
            raise AuthError(
                PLATFORM, f"{app.client_id} for {scope}: {_identity_error(body, status)}"
            )
        answer = orjson.loads(body)
        lifetime = float(answer.get("expires_in", 3599))
        renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN_SECONDS, lifetime / 2)
        log.info(
            "dataverse.token_renewed", scope=scope, client_id=app.client_id, expires_in=lifetime
        )
        return str(answer["access_token"]), renew_at

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
        operations = [_Operation((r,)) for r in requests]
        return [part for part, _ in await self._batch_parts(operations, what)]

    async def _batch_parts(
        self, operations: Sequence[_Operation], what: str
    ) -> list[tuple[BatchResponse, bool]]:
        """``_batch`` of operations that may span several requests (one changeset each),
        each answer with whether its operation may have been carried out by an earlier
        ``$batch`` whose answer was lost. A part answered 5xx was rolled back, but the same
        operation in a lost ``$batch`` before it may not have been: once in doubt, an
        operation stays in doubt."""
        answers: dict[int, tuple[BatchResponse, bool]] = {}
        in_doubt: set[int] = set()
        pending = list(range(len(operations)))
        for attempt in range(1, self.policy.attempts + 1):
            groups = _numbered([operations[i] for i in pending])
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
                operations=sum(len(g) for g in groups),
                ok=(200,),
            )
            if answer.status != 200:
                raise PlatformUnavailable(PLATFORM, what, _error_text(answer.body, answer.status))
            try:
                parts = parse_batch_groups(answer.headers.get("Content-Type", ""), answer.body)
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
            for index, group in zip(pending, parts, strict=True):
                part = operations[index].answer(group, what)
                if part.status in RETRIABLE and attempt < self.policy.attempts:
                    retry.append(index)
                else:
                    answers[index] = (part, index in in_doubt)
            if not retry:
                break
            log.info("dataverse.batch_parts_retry", what=what, parts=len(retry), attempt=attempt)
            await asyncio.sleep(self.policy.delay(attempt, None, self._rng))
            pending = retry
        return [answers[i] for i in range(len(operations))]

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
            entity, attributes, relations, *typed = await self._batch(
                [
                    BatchRequest("GET", f"{root}?$select={ENTITY_SELECT}", READ_HEADERS),
                    BatchRequest(
                        "GET", f"{root}/Attributes?$select={ATTRIBUTE_SELECT}", READ_HEADERS
                    ),
                    BatchRequest(
                        "GET",
                        f"{root}/ManyToOneRelationships?$select={RELATION_SELECT}",
                        READ_HEADERS,
                    ),
                    *(
                        BatchRequest("GET", f"{root}/Attributes/{cast}", READ_HEADERS)
                        for cast in TYPED_ATTRIBUTES.values()
                    ),
                ],
                f"describe {logical}",
            )
            if entity.status == 404:
                self._tables[logical] = None
                return None
            for part in (entity, attributes, relations, *typed):
                if part.status != 200:
                    raise PlatformUnavailable(
                        PLATFORM, f"describe {logical}", _error_text(part.body, part.status)
                    )
            info = _table_info(
                logical,
                orjson.loads(entity.body or b"{}"),
                orjson.loads(attributes.body or b"{}")["value"],
                orjson.loads(relations.body or b"{}")["value"],
                {
                    kind: orjson.loads(part.body or b"{}")["value"]
                    for kind, part in zip(TYPED_ATTRIBUTES, typed, strict=True)
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
        """The table as the mapping names it: columns, lookups by column (single-target)
        and by ``column.target`` (any), create-only columns and table settings; None when
        the table does not exist. SharePoint files (``keys.SHAREPOINT_FILES``) exist when a
        site is configured: they are written through SharePoint, not the Web API."""
        if sobject == SHAREPOINT_FILES:
            return await self._sharepoint_files_info()
        info = await self._table(sobject)
        if info is None:
            return None
        required = {
            name
            for name, (_, level) in info.attributes.items()
            if level in REQUIRED_LEVELS and name != info.primary_id and name not in SYSTEM_SET
        }
        references: dict[str, list[str]] = {}
        for attribute, target in info.relations:
            references.setdefault(attribute, []).append(target)
            references[lookup_key(attribute, target)] = [target]
        required |= {
            lookup_key(attribute, target)
            for attribute, target in info.relations
            if attribute in required
        }
        fields = frozenset(info.attributes) | frozenset(references)
        if info.keyed_by_row_id:
            fields -= {self.external_id_field}
        return ObjectInfo(
            name=info.logical_name,
            fields=fields,
            required=frozenset(required),
            references={name: tuple(targets) for name, targets in references.items()},
            create_only=info.create_only,
            settings=info.settings,
            columns={
                **info.columns,
                **{name: Column("lookup") for name in references if name not in info.columns},
            },
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
        """PATCH every record on its key, ``batch_size`` to a ``$batch``.

        The call is journaled as one job before its first request goes out: should the
        process die with answers in flight, ``recover`` finds which records landed.
        """
        if sobject == SHAREPOINT_FILES:
            return [_not_moved(r, self.external_id_field) for r in records]
        info = await self._known_table(sobject)
        if sobject == LOCATION_TABLE:
            records = await self._with_libraries(records)
        await ledger.job_opened(f"dataverse-{uuid.uuid4()}", sobject, len(records))
        size = self.config.batch_size
        chunks = [records[i : i + size] for i in range(0, len(records), size)]
        answers = await asyncio.gather(*(self._upsert_chunk(info, c) for c in chunks))
        return [result for answer in answers for result in answer]

    def _row_url(self, info: _TableInfo, external_id: str) -> str:
        """The row's address: its primary key derived from the external id on a table
        without an alternate key (notes), else the alternate key, encoded so that real
        Dataverse accepts it in a key URL (``keys.encode_key``)."""
        if info.keyed_by_row_id:
            return f"{info.entity_set}({row_id(info.logical_name, external_id)})"
        key = self.external_id_field
        return f"{info.entity_set}({key}={_literal(encode_key(external_id))})"

    async def _upsert_chunk(
        self,
        info: _TableInfo,
        records: Sequence[Mapping[str, Any]],
        urls: Sequence[str] | None = None,
    ) -> list[WriteResult]:
        key = self.external_id_field
        urls = urls or [self._row_url(info, str(r[key])) for r in records]
        states = await self._current_states(info, urls) if info.is_activity else {}
        operations = [
            self._write(info, url, self._body(info, r), states.get(url))
            for r, url in zip(records, urls, strict=True)
        ]
        parts = await self._batch_parts(operations, f"upsert {len(records)} {info.logical_name}")
        results = [
            _write_result(str(r[key]), info, part, uncertain)
            for r, (part, uncertain) in zip(records, parts, strict=True)
        ]
        # A create whose answer was lost may have landed: its retry then updates our own
        # row, and Dataverse refuses the create-only columns it carries (overriddencreatedon).
        # The lost create set them; send the rest again.
        redo = [
            i
            for i, (r, (part, uncertain)) in enumerate(zip(records, parts, strict=True))
            if uncertain and part.status >= 400 and info.create_only & r.keys()
        ]
        if redo:
            again = await self._upsert_chunk(
                info,
                [{k: v for k, v in records[i].items() if k not in info.create_only} for i in redo],
                [urls[i] for i in redo],
            )
            for i, result in zip(redo, again, strict=True):
                results[i] = replace(result, created=None) if result.ok else result
        return results

    async def _current_states(self, info: _TableInfo, urls: Sequence[str]) -> dict[str, int]:
        """statecode of the rows that exist already: a closed one must be reopened first."""
        requests = [BatchRequest("GET", f"{u}?$select=statecode", READ_HEADERS) for u in urls]
        found: dict[str, int] = {}
        for url, part in zip(
            urls, await self._batch(requests, f"states of {info.logical_name}"), strict=True
        ):
            if part.status == 200 and part.body:
                state = orjson.loads(part.body).get("statecode")
                if isinstance(state, int):
                    found[url] = state
        return found

    def _write(
        self, info: _TableInfo, url: str, body: dict[str, Any], current: int | None
    ) -> _Operation:
        """One record's changeset: a closed row is reopened first; a closed state is set
        after the write, never with it (the row is created open)."""
        target = {c: body.pop(c) for c in STATE_COLUMNS if c in body} if info.is_activity else {}
        closing = target.get("statecode") in CLOSED_ACTIVITY_STATES
        if not closing:
            body.update(target)
        requests: list[BatchRequest] = []
        if current in CLOSED_ACTIVITY_STATES:
            reopen: dict[str, Any] = {"statecode": 0}
            if info.logical_name in OPEN_STATUS:
                reopen["statuscode"] = OPEN_STATUS[info.logical_name]
            requests.append(BatchRequest("PATCH", url, ENTRY, orjson.dumps(reopen)))
        main = len(requests)
        requests.append(
            BatchRequest(
                "PATCH", f"{url}?$select={info.primary_id}", WRITE_HEADERS, orjson.dumps(body)
            )
        )
        if closing:
            requests.append(BatchRequest("PATCH", url, ENTRY, orjson.dumps(target)))
        return _Operation(tuple(requests), main)

    def _body(self, info: _TableInfo, record: Mapping[str, Any]) -> dict[str, Any]:
        """Columns as they are; lookups as ``<navigation property>@odata.bind`` to the
        target's entity set, the navigation property as the metadata names it.

        The key is in the URL, never repeated in the body (§2.2). An empty value for a
        column or lookup the table lacks is left out: the schema gate lets only lookups
        to tables not deployed yet be missing, and those are empty. Anything else the
        metadata does not know raises UnknownLookup: real Dataverse would refuse it.
        """
        body: dict[str, Any] = {}
        bound = {split_lookup_key(k)[0] for k, v in record.items() if v is not None}
        for name, value in record.items():
            if name == self.external_id_field:
                continue
            if _names_lookup(info, name):
                if value is not None:
                    nav, target = _binding(info, name)
                    target_set = self._entity_sets.get(target, f"{target}s")
                    body[f"{nav}@odata.bind"] = f"/{target_set}({value})"
                elif split_lookup_key(name)[0] not in bound:
                    # Empty: cleared ("To disassociate, set the value to null",
                    # .../webapi/associate-disassociate-entities-using-web-api), unless
                    # another key of the same lookup binds it, or it cannot bind yet.
                    with contextlib.suppress(UnknownLookup):
                        body[f"{_binding(info, name)[0]}@odata.bind"] = None
            elif name in info.attributes:
                body[name] = ",".join(value) if isinstance(value, list) else value
            elif value is not None:
                raise UnknownLookup(info.logical_name, name, "no such column or relationship")
        return body

    async def fetch(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Current values of rows by id (as given), keyed by ``fields`` as the payloads name
        them, in the form a write takes: a lookup (``parentcustomerid.account``) holds the
        target row's id when it points at that table, else None. Read as ``existing_ids``
        reads, ``_x_value`` plus its ``Microsoft.Dynamics.CRM.lookuplogicalname``
        annotation ("Lookup properties",
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-properties#lookup-properties;
        the annotation needs ``Prefer: odata.include-annotations``,
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns#formatted-values).
        Pre-images for rollback, read-back for reconcile and the sample diff. A failed
        query raises: an absent row reads as deleted. A SharePoint file has no row."""
        if sobject == SHAREPOINT_FILES or not ids:
            return {}
        info = await self._known_table(sobject)
        columns: dict[str, str] = {}  # payload field → the column the Web API returns
        for name in fields:
            if _names_lookup(info, name):
                columns[name] = f"_{split_lookup_key(name)[0]}_value"
            elif name in info.attributes and name != info.primary_id:
                columns[name] = name
        wanted = {i.lower(): i for i in ids}
        found: dict[str, dict[str, Any]] = {}
        select = tuple(sorted(set(columns.values())))
        async for _, rows, error in self._rows_among(info, ids, select, "read", ANNOTATED):
            if error is not None:
                raise PlatformUnavailable(PLATFORM, f"read {sobject}", error)
            for row in rows:
                given = wanted.get(str(row.get(info.primary_id, "")).lower())
                if given is not None:
                    found[given] = {
                        f: _held(row, f, c, f == self.external_id_field) for f, c in columns.items()
                    }
        return found

    async def existing_ids(self, sobject: str, ids: Sequence[str]) -> set[str]:
        """Which of these row ids still exist: one ``GET set?$select=<id>&$filter=
        Microsoft.Dynamics.CRM.In(PropertyName='<id>',PropertyValues=[...])`` per
        ``IN_CHUNK`` ids (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/in),
        ``batch_size`` of them to a ``$batch``. Each GET counts once against the service
        protection limits (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits),
        so a rerun's check costs ids/``IN_CHUNK`` requests, not one per id. A query that
        fails counts its ids as there, so a throttled check never reloads what exists.
        SharePoint files cannot be checked this way and count as there."""
        if sobject == SHAREPOINT_FILES or not ids:
            return set(ids)
        info = await self._known_table(sobject)
        found: set[str] = set()
        async for chunk, rows, error in self._rows_among(info, ids, (), "check"):
            if error is not None:
                log.warning("dataverse.check_failed", sobject=sobject, ids=len(chunk), error=error)
                found.update(chunk)
                continue
            wanted = {i.lower(): i for i in chunk}
            found.update(wanted[r] for r in _row_ids(rows, info.primary_id) if r in wanted)
        return found

    async def modified(self, sobject: str, ids: Sequence[str]) -> dict[str, datetime]:
        """``modifiedon`` of the rows still there, by id as given, read as ``existing_ids``
        reads (modifiedon: "Date and time when the record was modified",
        https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/account#BKMK_ModifiedOn).
        A query that fails raises: unlike ``existing_ids``, an absent id here reads as
        deleted, and no guess is safe. SharePoint files have no row, so none is listed."""
        if sobject == SHAREPOINT_FILES or not ids:
            return {}
        info = await self._known_table(sobject)
        wanted = {i.lower(): i for i in ids}
        found: dict[str, datetime] = {}
        async for _, rows, error in self._rows_among(info, ids, (MODIFIED_ON,), "modifiedon"):
            if error is not None:
                raise PlatformUnavailable(PLATFORM, f"modifiedon of {sobject}", error)
            for row in rows:
                given = wanted.get(str(row.get(info.primary_id, "")).lower())
                if given is not None and row.get(MODIFIED_ON):
                    found[given] = datetime.fromisoformat(str(row[MODIFIED_ON]))
        return found

    async def _rows_among(
        self,
        info: _TableInfo,
        ids: Sequence[str],
        columns: tuple[str, ...],
        what: str,
        headers: dict[str, str] = READ_HEADERS,
    ) -> AsyncIterator[tuple[list[str], list[dict[str, Any]], str | None]]:
        """The rows whose primary id is among ``ids``, with ``columns``: one ``In`` query
        per ``IN_CHUNK`` ids, ``batch_size`` of them to a ``$batch``, each answer's
        ``@odata.nextLink`` pages followed. Per chunk: its rows, or why its query failed."""
        for group in _chunks(_chunks(list(dict.fromkeys(ids)), IN_CHUNK), self.config.batch_size):
            requests = [
                BatchRequest("GET", _in_query(info, chunk, *columns), headers) for chunk in group
            ]
            label = f"{what} of {sum(map(len, group))} {info.logical_name}"
            for chunk, part in zip(group, await self._batch(requests, label), strict=True):
                if part.status != 200 or not part.body:
                    yield chunk, [], _error_text(part.body, part.status)
                    continue
                page: Any = orjson.loads(part.body)
                rows: list[dict[str, Any]] = list(page.get("value", []))
                error = None
                while path := str(page.get("@odata.nextLink") or "").split(API_PATH, 1)[-1]:
                    try:
                        page = await self._json(path, f"{label} (next page)")
                    except PlatformUnavailable as exc:
                        error = str(exc)
                        break
                    rows.extend(page.get("value", []))
                yield chunk, rows, error

    async def delete(
        self, sobject: str, ids: Sequence[str], ledger: JobLedger | None = None
    ) -> list[WriteResult]:
        """``DELETE <set>(<id>)``, each its own changeset, ``batch_size`` to a ``$batch``
        ("Basic delete", https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api#basic-delete;
        "Execute batch operations", .../webapi/execute-batch-operations-using-web-api).
        204 is deleted now (``created`` False); 404 is already gone (``created`` None), so
        deleting twice after a crash is harmless. SharePoint files (their server-relative
        URLs) go to the site's Recycle Bin (:meth:`_recycle_files`). Every call here is
        synchronous, so ``ledger`` is never written to."""
        if sobject == SHAREPOINT_FILES:
            return await self._recycle_files(ids)
        info = await self._known_table(sobject)
        results: list[WriteResult] = []
        for chunk in _chunks(list(ids), self.config.batch_size):
            requests = [BatchRequest("DELETE", f"{info.entity_set}({i})") for i in chunk]
            answers = await self._batch(requests, f"delete {len(chunk)} {sobject}")
            results.extend(
                _delete_result(sobject, i, part) for i, part in zip(chunk, answers, strict=True)
            )
            log.info("dataverse.deleted", platform=PLATFORM, object=sobject, records=len(chunk),
                     failed=sum(not r.ok for r in results[-len(chunk):]))  # fmt: skip
        return results

    async def _recycle_files(self, urls: Sequence[str]) -> list[WriteResult]:
        """Each SharePoint file to the Recycle Bin, a few at once; one already gone is a
        success. Without a configured site nothing can be reached: each fails, named."""
        if self.sharepoint is None:
            return [
                WriteResult(u, None, None, "sharepoint_not_configured",
                            f"{u}: no SharePoint site is configured to delete it from")
                for u in urls
            ]  # fmt: skip
        sharepoint = self.sharepoint

        async def one(url: str) -> WriteResult:
            try:
                recycled = await sharepoint.recycle_file(url)
            except SharePointRefused as exc:
                return WriteResult(url, None, None, "sharepoint_refused", f"{url}: {exc}")
            return WriteResult(url, url, False if recycled else None)

        results: list[WriteResult] = []
        for chunk in _chunks(list(urls), SHAREPOINT_PARALLEL_UPLOADS):
            results.extend(await asyncio.gather(*(one(u) for u in chunk)))
        return results

    async def org_identity(self) -> str:
        """The environment's OrganizationId from ``WhoAmI`` (one API call;
        https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/whoami)."""
        answer = await self._json("WhoAmI", "who am I")
        return str(answer["OrganizationId"]).lower()

    async def find(self, sobject: str, external_ids: Sequence[str]) -> dict[str, str]:
        """Ids of rows already there for these external ids: by alternate key, or by the
        primary key derived from the id on a table without one (notes). SharePoint files
        are never looked up: their upload overwrites, so sending one again is harmless."""
        if sobject == SHAREPOINT_FILES:
            return {}
        info = await self._known_table(sobject)
        found: dict[str, str] = {}
        for chunk in _chunks(list(external_ids), self.config.batch_size):
            requests = [
                BatchRequest(
                    "GET", f"{self._row_url(info, e)}?$select={info.primary_id}", READ_HEADERS
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
        like any row — so a retried upload never makes a second note. New content for a
        note written before (``replaces``) PATCHes that same note: its documentbody,
        filename and mimetype, the create-only columns left out. SharePoint files go to
        their record's folder (:meth:`_upload_to_sharepoint`)."""
        if sobject == SHAREPOINT_FILES:
            return await self._upload_to_sharepoint(uploads)
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
            rows = [_file_row(info, u) for u in batch]
            urls = [
                f"{info.entity_set}({u.replaces})"
                if u.replaces
                else self._row_url(info, str(u.fields[key]))
                for u in batch
            ]
            results.extend(await self._upsert_chunk(info, rows, urls))
        return results

    # -- SharePoint document management ----------------------------------------

    async def _sharepoint_files_info(self) -> ObjectInfo | None:
        """What a SharePoint file payload carries: the record's table (whose library holds
        its folder) and the folder's relativeurl; None without a configured site. The site
        must be known to the org: the schema gate finds it here, before any write."""
        if self.sharepoint is None:
            return None
        await self._site_id()
        return ObjectInfo(
            name=SHAREPOINT_FILES,
            fields=frozenset({self.external_id_field, *SHAREPOINT_FILE_FIELDS}),
            required=frozenset(SHAREPOINT_FILE_FIELDS),
            references={},
        )

    async def _upload_to_sharepoint(self, uploads: Sequence[FileUpload]) -> list[WriteResult]:
        """Each file into its record's folder (made first; an existing one is fine), with
        overwrite, so a retry or a rerun lands on the same file. A new version of a file
        written before (``replaces``: its server-relative URL) overwrites that file. The
        destination id is the file's server-relative URL: what a later version overwrites
        and what a rollback deletes (``GetFileByServerRelativeUrl(…)``). A few files at
        once; the SharePoint governor paces them."""
        results: list[WriteResult] = []
        for chunk in _chunks(list(uploads), SHAREPOINT_PARALLEL_UPLOADS):
            results.extend(await asyncio.gather(*(self._sharepoint_file(u) for u in chunk)))
        return results

    async def _sharepoint_file(self, upload: FileUpload) -> WriteResult:
        assert self.sharepoint is not None
        ext = str(upload.fields[self.external_id_field])
        if upload.size_bytes > MAX_SIMPLE_UPLOAD_BYTES:
            return WriteResult(
                ext, None, None, "sharepoint_file_too_large",
                f"{upload.filename} is {upload.size_bytes} bytes, over the "
                f"{MAX_SIMPLE_UPLOAD_BYTES}-byte SharePoint upload request limit; crmlift does "
                "not do chunked uploads yet: upload it by hand; it stays in the blob store",
            )  # fmt: skip
        try:
            if upload.replaces:
                folder, _, name = upload.replaces.rpartition("/")
            else:
                folder = await self._record_folder(upload.fields)
                name = upload.filename
            await self.sharepoint.ensure_folder(folder)
            added = await self.sharepoint.add_file(folder, name, upload.content)
        except (SharePointRefused, UnknownLookup) as exc:
            return WriteResult(ext, None, None, "sharepoint_refused", f"{upload.filename}: {exc}")
        log.info("dataverse.sharepoint_file", file=added.get("ServerRelativeUrl"),
                 bytes=upload.size_bytes)  # fmt: skip
        return WriteResult(ext, str(added["ServerRelativeUrl"]), upload.replaces is None)

    async def _record_folder(self, fields: Mapping[str, Any]) -> str:
        """``<site path>/<library>/<folder>``: the record's folder under its table's
        document library, as Dataverse builds a location's URL from its parents."""
        assert self.config.sharepoint is not None
        _, library = await self._library_location(str(fields["library"]))
        return f"{self.config.sharepoint.site_path}/{library}/{fields['folder']}"

    async def _with_libraries(
        self, records: Sequence[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """Location rows whose parent names a table's library (``keys.library_ref``) get
        that library location's id."""
        out: list[Mapping[str, Any]] = []
        for record in records:
            named = {k: library_table(v) for k, v in record.items()}
            if not any(named.values()):
                out.append(record)
                continue
            row = dict(record)
            for name, table in named.items():
                if table is not None:
                    row[name] = (await self._library_location(table))[0]
            out.append(row)
        return out

    async def _library_location(self, table: str) -> tuple[str, str]:
        """(id, relativeurl) of ``table``'s document library location: the location under
        the site whose relativeurl is the table's logical name, as enabling document
        management makes it ("Manage your documents using SharePoint",
        https://learn.microsoft.com/power-platform/admin/manage-documents-using-sharepoint;
        sharepointdocumentlocation reference,
        https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/sharepointdocumentlocation).
        Created when absent; its SharePoint library must exist (the setup makes it)."""
        async with self._library_lock:
            if table in self._libraries:
                return self._libraries[table]
            site = await self._site_id()
            query = (
                f"{LOCATION_SET}?$select=sharepointdocumentlocationid,relativeurl,"
                f"_parentsiteorlocation_value&$filter=relativeurl eq {_literal(table)}"
            )
            rows = (await self._json(query, f"library location of {table}"))["value"]
            found = [r for r in rows if str(r.get("_parentsiteorlocation_value")) == site]
            if found:
                location = (str(found[0]["sharepointdocumentlocationid"]), table)
            else:
                location = (await self._new_library_location(table, site), table)
            self._libraries[table] = location
            return location

    async def _new_library_location(self, table: str, site: str) -> str:
        info = await self._known_table(LOCATION_TABLE)
        row = {
            self.external_id_field: f"library:{table}",
            "name": f"Documents on Default Site ({table})",
            "relativeurl": table,
            lookup_key("parentsiteorlocation", "sharepointsite"): site,
        }
        [result] = await self._upsert_chunk(info, [row])
        if not result.ok or result.destination_id is None:
            raise UnknownLookup(
                LOCATION_TABLE, table, f"its library location could not be made: "
                f"{result.error_code} {result.error_message}",
            )  # fmt: skip
        log.info("dataverse.library_location_created", table=table, id=result.destination_id)
        return result.destination_id

    async def _site_id(self) -> str:
        """The ``sharepointsite`` row of the configured site: the operator's id, else the
        row whose absoluteurl is the site's URL."""
        config = self.config.sharepoint
        assert config is not None
        if config.site_id:
            return config.site_id
        wanted = config.site_url.rstrip("/").lower()
        path = "sharepointsites?$select=sharepointsiteid,absoluteurl"
        while path:
            page = await self._json(path, "sharepointsites")
            for site in page["value"]:
                if str(site.get("absoluteurl") or "").rstrip("/").lower() == wanted:
                    return str(site["sharepointsiteid"])
            path = str(page.get("@odata.nextLink") or "").split(API_PATH, 1)[-1]
        raise UnknownLookup(
            "sharepointsite", config.site_url,
            "no SharePoint site row has this absoluteurl: set up document management "
            "(Settings → Document management) or give [mapping] sharepoint_site_id",
        )  # fmt: skip

    async def recover(
        self, job_id: str, sobject: str, external_ids: Sequence[str]
    ) -> list[WriteResult] | None:
        """What an upsert journaled before a crash left behind: its records that exist
        now, found by alternate key (whether created or updated the platform cannot
        say). The rest are written again by the load, idempotently."""
        found = await self.find(sobject, external_ids)
        return [WriteResult(ext, ident, None) for ext, ident in found.items()]

    async def file_facts(self, sobject: str, ids: Sequence[str]) -> dict[str, FileFacts]:
        """A note's ``filesize`` ("File Size (Bytes)", read-only; annotation reference,
        https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation)
        by row id as given, read as ``existing_ids`` reads; Dataverse keeps no checksum of a
        note's content. A failed query raises: an absent row reads as a missing file.
        A SharePoint file (its server-relative URL) is read from SharePoint: its
        ``Length``, no checksum either."""
        if sobject == SHAREPOINT_FILES:
            return await self._sharepoint_facts(ids)
        if not ids:
            return {}
        info = await self._known_table(sobject)
        wanted = {i.lower(): i for i in ids}
        found: dict[str, FileFacts] = {}
        async for _, rows, error in self._rows_among(info, ids, ("filesize",), "file facts"):
            if error is not None:
                raise PlatformUnavailable(PLATFORM, f"file facts of {sobject}", error)
            for row in rows:
                given = wanted.get(str(row.get(info.primary_id, "")).lower())
                if given is not None:
                    size = row.get("filesize")
                    found[given] = FileFacts(None if size is None else int(size))
        return found

    async def _sharepoint_facts(self, urls: Sequence[str]) -> dict[str, FileFacts]:
        """Each file's ``Length``, a batch of them at once; without a configured site none
        can be read, and none is listed (reconcile names them missing, with the cause in
        its log line)."""
        sharepoint = self.sharepoint
        if sharepoint is None:
            log.warning("dataverse.sharepoint_not_configured", platform=PLATFORM, files=len(urls))
            return {}
        found: dict[str, FileFacts] = {}
        for chunk in _chunks(list(urls), SHAREPOINT_PARALLEL_UPLOADS):
            sizes = await asyncio.gather(*(sharepoint.file_length(u) for u in chunk))
            found.update(
                (u, FileFacts(n)) for u, n in zip(chunk, sizes, strict=True) if n is not None
            )
        return found


def _not_moved(record: Mapping[str, Any], key: str) -> WriteResult:
    """A SharePoint file whose record or name changed but not its content: crmlift uploads
    content, it does not move files between folders."""
    return WriteResult(
        str(record[key]), None, None, "sharepoint_file_moved",
        f"the file now belongs in folder {record.get('folder')} of {record.get('library')}; "
        "crmlift does not move SharePoint files: move it by hand",
    )  # fmt: skip


def _with_content_id(request: BatchRequest, content_id: str) -> BatchRequest:
    return BatchRequest(request.method, request.url, request.headers, request.body, content_id)


def _numbered(operations: Sequence[_Operation]) -> list[list[BatchRequest]]:
    """The ``$batch`` groups: a GET alone at top level (a changeset cannot hold one), every
    write operation its own changeset, Content-IDs unique across the batch."""
    numbers = itertools.count(1)
    return [
        list(op.requests)
        if op.requests[0].method == "GET"
        else [_with_content_id(r, str(next(numbers))) for r in op.requests]
        for op in operations
    ]


def _names_lookup(info: _TableInfo, name: str) -> bool:
    """Whether a payload field is a lookup: ``column.target``, a column with relationships,
    or a lookup-typed column (whose relationship may be missing: never a plain value)."""
    attribute, target = split_lookup_key(name)
    kind = info.attributes.get(attribute, ("", ""))[0]
    return target is not None or bool(info.targets(attribute)) or kind in LOOKUP_TYPES


def _binding(info: _TableInfo, name: str) -> tuple[str, str]:
    """(navigation property, target table) of a lookup field, from the relationships."""
    attribute, target = split_lookup_key(name)
    if target is None:
        targets = info.targets(attribute)
        if len(targets) != 1:
            reason = (
                f"a lookup to {' or '.join(sorted(targets))}: the field must name its target"
                if targets
                else "a lookup column with no relationship in the metadata"
            )
            raise UnknownLookup(info.logical_name, name, reason)
        target = targets[0]
    nav = info.relations.get((attribute, target))
    if nav is None:
        raise UnknownLookup(
            info.logical_name, name, f"no relationship from {attribute} to {target}"
        )
    return nav, target


def _file_row(info: _TableInfo, upload: FileUpload) -> dict[str, Any]:
    """A note's columns with its content; a new version of a note keeps what only a
    create may set (``overriddencreatedon``) as it was."""
    fields = dict(upload.fields)
    if upload.replaces:
        fields = {k: v for k, v in fields.items() if k not in info.create_only}
    return {
        **fields,
        "filename": upload.filename,
        "mimetype": upload.mime_type,
        "documentbody": base64.b64encode(upload.content.read_bytes()).decode(),
    }


def _literal(value: str) -> str:
    """An OData string literal for a key segment: quotes doubled, then percent-encoded."""
    return "'" + quote(value.replace("'", "''"), safe="") + "'"


def _table_info(
    logical: str,
    entity: Mapping[str, Any],
    attributes: Sequence[Mapping[str, Any]],
    relations: Sequence[Mapping[str, Any]],
    typed: Mapping[str, Sequence[Mapping[str, Any]]],
) -> _TableInfo:
    """What a write needs of a table, from its EntityDefinitions, Attributes and
    ManyToOneRelationships. ``ownerid`` points at the abstract owner entity; owners are
    systemusers here (the mapping resolves BackDocket users to them)."""
    return _TableInfo(
        logical_name=logical,
        entity_set=entity["EntitySetName"],
        primary_id=entity["PrimaryIdAttribute"],
        attributes={
            a["LogicalName"]: (
                str(a.get("AttributeType")),
                str((a.get("RequiredLevel") or {}).get("Value", "None")),
            )
            for a in attributes
        },
        relations={
            (
                r["ReferencingAttribute"],
                OWNER_TARGET if r["ReferencedEntity"] == OWNER_ENTITY else r["ReferencedEntity"],
            ): r["ReferencingEntityNavigationPropertyName"]
            for r in relations
        },
        create_only=frozenset(
            a["LogicalName"]
            for a in attributes
            if a.get("IsValidForCreate") is not False and a.get("IsValidForUpdate") is False
        ),
        settings=frozenset(s for s in TABLE_SETTINGS if entity.get(s) is True),
        is_activity=entity.get("IsActivity") is True,
        columns=_columns(attributes, typed),
    )


def _columns(
    attributes: Sequence[Mapping[str, Any]], typed: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Column]:
    """Each column's kind (from AttributeType), a text column's MaxLength and a choice
    column's options (from the typed casts; Dataverse refuses a value not among them)."""
    lengths = {a["LogicalName"]: a.get("MaxLength") for k in ("text", "textarea") for a in typed[k]}
    options: dict[str, list[Mapping[str, Any]]] = {}
    multi = {a["LogicalName"] for a in typed["multipicklist"]}
    for kind in ("picklist", "multipicklist", "state", "status"):
        for a in typed[kind]:
            options[a["LogicalName"]] = list((a.get("OptionSet") or {}).get("Options") or ())
    columns: dict[str, Column] = {}
    for a in attributes:
        name = a["LogicalName"]
        kind = (
            "multipicklist"
            if name in multi
            else DATAVERSE_KINDS.get(a.get("AttributeType"), "other")
        )
        length = lengths.get(name)
        choices = options.get(name, [])
        columns[name] = Column(
            kind=kind,
            length=int(length) if isinstance(length, int) else None,
            choices=tuple(str(o["Value"]) for o in choices),
            labels=tuple(_option_label(o) for o in choices),
            restricted=name in options,
        )
    return columns


def _option_label(option: Mapping[str, Any]) -> str:
    label = option.get("Label") or {}
    shown = (label.get("UserLocalizedLabel") or {}).get("Label")
    if shown is None:
        shown = next((x.get("Label") for x in label.get("LocalizedLabels") or ()), None)
    return str(shown if shown is not None else option.get("Value"))


def _in_query(info: _TableInfo, ids: Sequence[str], *also: str) -> str:
    """``GET`` of the rows among ``ids`` by the ``In`` query function: their ids and the
    columns ``also`` names."""
    values = ",".join(f"'{i}'" for i in ids)
    where = f"Microsoft.Dynamics.CRM.In(PropertyName='{info.primary_id}',PropertyValues=[{values}])"
    select = ",".join((info.primary_id, *also))
    return f"{info.entity_set}?$select={select}&$filter={quote(where, safe=IN_SAFE)}"


def _delete_result(sobject: str, ident: str, part: BatchResponse) -> WriteResult:
    """One delete's outcome: 204 deleted, 404 already gone (both succeed)."""
    if part.status == 204:
        return WriteResult(ident, ident, False)
    if part.status == 404:
        return WriteResult(ident, ident, None)
    code, message = _error_parts(part.body, part.status)
    return WriteResult(ident, None, None, code, f"{PLATFORM}: delete {sobject} {ident}: {message}")


def _held(row: Mapping[str, Any], field: str, column: str, external_id: bool) -> Any:
    """One payload field's value in a row read back: the external id decoded (it is
    stored as the alternate key takes it, ``encode_key``); a lookup naming its target
    table holds the id only when the row's lookup points at that table."""
    value = row.get(column)
    if external_id and isinstance(value, str):
        return decode_key(value)
    target = split_lookup_key(field)[1]
    if value is None or target is None or not column.startswith("_"):
        return value
    pointed = row.get(f"{column}@{LOOKUP_ANNOTATION}")
    return value if pointed is None or pointed == target else None


def _row_ids(rows: Sequence[Mapping[str, Any]], primary_id: str) -> list[str]:
    return [str(row.get(primary_id, "")).lower() for row in rows]


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
