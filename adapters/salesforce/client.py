"""The Salesforce writer: OAuth, sObject Collections, Bulk API 2.0 and Files.

Speaks the wire in ../shared/platforms/destinations.md §1. Every write is an
upsert on the external-id field, so a retried or repeated write never
duplicates. Small loads go through sObject Collections (200 per call); large
ones through a Bulk API 2.0 ingest job, journaled before its CSV is uploaded so
a crash recovers the job's results instead of loading it twice.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any

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
from adapters.errors import (
    AnswerLost,
    AuthError,
    PlatformUnavailable,
    PlatformUnreachable,
    QuotaExhausted,
)
from adapters.http import SessionClient, describe_failure, post_credentials
from adapters.salesforce.ids import normalize
from adapters.secrets import Secret
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.governor import Governor

PLATFORM = "salesforce"
EXTERNAL_ID_FIELD = "Source_System_ID__c"
COLLECTION_LIMIT = 200
"""Records per sObject Collections call (destinations.md §1.5)."""
BULK_RECORDS_PER_JOB = 100_000
"""Records per ingest job: well under the 100 MB raw upload cap (destinations.md §1.2)."""
INLINE_FILE_BYTES = 4 * 1024 * 1024
"""Files up to this size travel base64-encoded inside a Collections create."""
INLINE_BATCH_BYTES = 8 * 1024 * 1024
"""Raw bytes per inline Collections create: far under the 500 MB blob cap (§1.5/§1.8)
and small enough to keep memory flat."""
INLINE_BATCHES_IN_FLIGHT = 2
FIRST_VERSION_ONLY = frozenset({"FirstPublishLocationId"})
"""ContentVersion fields a new version of an existing document does not take: the first
version publishes the document to its location; later ones inherit it."""
SOQL_IN_CHUNK = 200
"""Ids per ``IN (...)`` clause: keeps the query URL short."""
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND"})
"""Delete errors that mean the record is already gone (in the Recycle Bin, or never to be
found): deleting it again after a crash is no failure."""
TERMINAL_JOB_STATES = ("JobComplete", "Failed", "Aborted")
DELETE_OPERATIONS = frozenset({"delete", "hardDelete"})
"""Ingest job operations that delete by Id (Create a Job, ``operation``:
https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/create_job.htm)."""
RETRIABLE_STATUSES = (0, 429, 500, 502, 503, 504)
"""Answers worth another try; 0 is a connection lost before the answer was read."""
UNCERTAIN_STATUSES = (0, 500, 502, 504)
"""Answers after which a write may or may not have been applied: the connection was lost,
or the server failed without saying how far it got (a 503 or 429 refuses up front)."""
TRANSIENT_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW"})
"""Per-record errors that say "not now", not "never": another transaction held a lock on
the record (or its parent), and nothing of it was written. Salesforce's advice is to send
the record again, so the client does, instead of failing a good record for good."""

ENABLE_ACTIVITIES = "enableActivities"
"""The object's "Allow Activities" (Metadata API ``CustomObject.enableActivities``), as
``ObjectInfo.settings`` reports it."""
STATE_COUNTRY_PICKLISTS = "StateCountryPicklists"
"""State and Country/Territory Picklists are on: describe lists ``BillingCountryCode``…
(https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm)."""
STATE_COUNTRY_TEXT = "StateCountryText"
"""Addresses are free text: describe lists ``BillingCountry`` but no ``BillingCountryCode``."""
ADDRESS_PREFIXES = ("Billing", "Shipping", "Mailing", "Other", "")
"""Compound address fields of the standard objects (Account, Contact, Lead: ``Country``)."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SalesforceConfig:
    """How to reach one org."""

    login_url: str
    """My Domain (or simulator) base URL that serves ``/services/oauth2/token``."""
    client_id: str
    client_secret: Secret
    api_version: str = "59.0"
    bulk_threshold: int = 2000
    """Loads of at least this many records go through Bulk API 2.0."""
    poll_interval: float = 0.2
    """First wait between Bulk job polls; it grows by half each poll up to 3 s, so a
    quick job is seen done at once and a long one costs few API calls."""
    request_timeout: float = 600.0
    """REST calls time out after 10 minutes on Salesforce's side too."""
    ca_file: str | None = None
    """A CA bundle to trust besides the system's (a proxy's or a simulator's)."""

    @property
    def org_url(self) -> str:
        """The org this config writes to: one id map per migration and org."""
        return self.login_url.rstrip("/")


class SalesforceClient(SessionClient):
    """One org, one token, one governor. Use as ``async with``."""

    platform = PLATFORM
    external_id_field = EXTERNAL_ID_FIELD

    def __init__(
        self, config: SalesforceConfig, governor: Governor, policy: RetryPolicy | None = None
    ) -> None:
        self.config = config
        self.governor = governor
        self.policy = policy or RetryPolicy()
        self._rng = random.Random()
        super().__init__()
        self._token: str | None = None
        self._instance: str | None = None
        self._identity_url: str | None = None
        """The token answer's ``id``: the identity URL, ``…/id/<org id>/<user id>``."""
        self._token_lock = asyncio.Lock()
        self.api_usage: tuple[int, int] | None = None
        """(used, max) of the daily allocation from the last ``Sforce-Limit-Info``."""
        self._hard_delete_refused = False
        """The org refused a hardDelete job (no "Bulk API Hard Delete"): delete jobs since."""
        self._describes: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        """Describe answers by lowercased object name, asked once per client (per run)."""

    @property
    def governors(self) -> list[Governor]:
        """The org's one governor, for stats."""
        return [self.governor]

    def new_session(self) -> aiohttp.ClientSession:
        tls = (
            ssl.create_default_context(cafile=self.config.ca_file) if self.config.ca_file else None
        )
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout, sock_connect=10),
            connector=aiohttp.TCPConnector(
                limit=self.governor.profile.concurrency + 2, ssl=tls if tls else True
            ),
        )

    # -- auth ---------------------------------------------------------------

    async def _login(self, stale: str | None = None) -> tuple[str, str]:
        async with self._token_lock:
            if self._token is None or self._token == stale:
                pair = f"{self.config.client_id}:{self.config.client_secret.reveal()}"
                basic = base64.b64encode(pair.encode()).decode()
                url = self.config.login_url.rstrip("/") + "/services/oauth2/token"
                try:
                    status, body = await post_credentials(
                        self.session,
                        url,
                        platform=PLATFORM,
                        data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}"},
                    )
                except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                    # No answer at all: name the URL and the network's reason (exit 4).
                    reason = describe_failure(exc)
                    raise PlatformUnreachable(PLATFORM, "login", url, reason, tries=1) from exc
                if status != 200:
                    raise AuthError(PLATFORM, _oauth_error(body) or f"HTTP {status}")
                try:
                    answer = orjson.loads(body)
                    self._token, self._instance = answer["access_token"], answer["instance_url"]
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    raise AuthError(
                        PLATFORM,
                        f"{url} answered 200 without access_token and instance_url "
                        f"({body[:200]!r})",
                    ) from exc
                self._identity_url = answer.get("id")
            assert self._token is not None
            assert self._instance is not None
            return self._token, self._instance

    def _url(self, instance: str, path: str) -> str:
        if path.startswith("/services/"):
            return instance.rstrip("/") + path
        return f"{instance.rstrip('/')}/services/data/v{self.config.api_version}/{path}"

    # -- one governed, retried call -----------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        data: bytes | aiohttp.FormData | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        idempotent: bool = True,
    ) -> tuple[int, bytes]:
        """Send one request; retry what is safe to retry; classify the rest."""
        reply = await self._send(
            method, path, what, json=json, data=data, headers=headers, params=params, ok=ok,
            idempotent=idempotent,
        )  # fmt: skip
        return reply.status, reply.body

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        data: bytes | aiohttp.FormData | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        idempotent: bool = True,
    ) -> _Reply:
        """``_call``, also telling whether an earlier attempt may have been applied.

        A call that is not idempotent is never sent twice: a lost answer, or a 5xx or
        429 (whose body is no answer to it), raises ``AnswerLost`` so the caller finds
        out what landed before anything is sent again. An expired session is renewed
        without spending a retry: a call that waits out long back-offs may outlive
        several sessions.
        """
        uncertain = False
        attempt = 1
        renewed = 0
        while True:
            body_data: Any = data
            extra = dict(headers or {})
            if json is not None:
                body_data = orjson.dumps(json)
                extra.setdefault("Content-Type", "application/json")
            if isinstance(body_data, bytes):
                # A fresh stream per attempt: aiohttp sends it without blocking the loop.
                body_data = io.BytesIO(body_data)
            async with self.governor.slot():
                # The session is taken once the governor lets the call go: a call can wait
                # out a throttle or a back-off longer than a session has left to live.
                token, instance = await self._login()
                sent_headers = {"Authorization": f"Bearer {token}", **extra}
                try:
                    async with self.session.request(
                        method,
                        self._url(instance, path),
                        data=body_data,
                        headers=sent_headers,
                        params=params,
                    ) as resp:
                        status, body = resp.status, await resp.read()
                        self._note_usage(resp.headers.get("Sforce-Limit-Info"))
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                except (
                    aiohttp.ClientConnectionError,
                    aiohttp.ClientPayloadError,
                    TimeoutError,
                ) as exc:
                    if not idempotent:
                        raise AnswerLost(PLATFORM, what, f"connection lost: {exc!r}") from exc
                    status, body, retry_after = 0, b"", None
            if status in ok:
                return _Reply(status, body, uncertain)
            code = _error_code(body)
            if status == 401:
                # Refused credentials fail at login; the bound only stops an org that
                # refuses every fresh session.
                if renewed == self.policy.attempts:
                    raise AuthError(PLATFORM, code or "INVALID_SESSION_ID")
                renewed += 1
                await self._login(stale=token)
                continue
            if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
                raise QuotaExhausted(
                    f"{PLATFORM}: the org's daily API allocation is spent "
                    f"({self._usage_text()}); it frees up over the rolling 24 hours"
                )
            if status in RETRIABLE_STATUSES and not idempotent:
                raise AnswerLost(PLATFORM, what, f"HTTP {status}: {_error_text(body)}")
            if status in RETRIABLE_STATUSES:
                uncertain = uncertain or (method != "GET" and status in UNCERTAIN_STATUSES)
                if attempt == self.policy.attempts:
                    raise PlatformUnavailable(PLATFORM, what, f"HTTP {status or 'connection lost'}")
                await self.governor.back_off(
                    self.policy, attempt, retry_after, status=status, what=what, rng=self._rng
                )
                attempt += 1
                continue
            return _Reply(status, body, uncertain)

    def _note_usage(self, header: str | None) -> None:
        if header and "api-usage=" in header:
            used, _, limit = header.split("api-usage=", 1)[1].split(";", 1)[0].partition("/")
            if used.strip().isdigit() and limit.strip().isdigit():
                self.api_usage = (int(used), int(limit))
                # Other tools and earlier runs share the org's allocation: count them.
                self.governor.observe("daily API requests", int(used))

    def _usage_text(self) -> str:
        if self.api_usage is None:
            return "usage unknown"
        used, limit = self.api_usage
        return f"{used}/{limit} calls"

    async def _json(self, method: str, path: str, what: str, **kw: Any) -> Any:
        status, body = await self._call(method, path, what, **kw)
        if status >= 300:
            raise PlatformUnavailable(PLATFORM, what, f"HTTP {status}: {_error_text(body)}")
        return orjson.loads(body) if body else None

    # -- metadata and reads -------------------------------------------------

    async def describe(self, sobject: str) -> ObjectInfo | None:
        """The object's fields, or None when the org does not have it.

        ``create_only`` are the fields describe marks createable but not updateable
        (ContentVersion.PathOnClient, AccountContactRelation.AccountId, a master-detail
        field that may not be reparented). ``settings`` says whether the object takes
        activities — a real org lists exactly those objects in Task.WhatId's
        ``referenceTo`` — and whether its addresses are state/country picklists.
        """
        raw = await self._described(sobject)
        if raw is None:
            return None
        fields = raw["fields"]
        settings = set(_address_settings({f["name"] for f in fields}))
        if raw["name"] in await self._activity_targets():
            settings.add(ENABLE_ACTIVITIES)
        return ObjectInfo(
            name=raw["name"],
            fields=frozenset(f["name"] for f in fields),
            required=frozenset(
                f["name"]
                for f in fields
                if f.get("createable")
                and not f.get("nillable")
                and not f.get("defaultedOnCreate")
                and f.get("type") != "boolean"
            ),
            references={
                f["name"]: tuple(f.get("referenceTo") or ())
                for f in fields
                if f.get("type") == "reference"
            },
            create_only=frozenset(
                f["name"] for f in fields if f.get("createable") and not f.get("updateable")
            ),
            settings=frozenset(settings),
            columns={f["name"]: _column(f) for f in fields},
        )

    async def _described(self, sobject: str) -> dict[str, Any] | None:
        """The raw describe of ``sobject`` (None: the org has no such object), asked once:
        the gate, the activity check and the value checks before each write share it."""
        key = sobject.lower()
        pending = self._describes.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._describe_call(sobject))
            self._describes[key] = pending
        try:
            return await asyncio.shield(pending)
        except Exception:
            self._describes.pop(key, None)
            raise

    async def _describe_call(self, sobject: str) -> dict[str, Any] | None:
        status, body = await self._call(
            "GET", f"sobjects/{sobject}/describe", f"describe {sobject}", ok=(200, 404)
        )
        if status == 404:
            return None
        answer: dict[str, Any] = orjson.loads(body)
        return answer

    async def _activity_targets(self) -> frozenset[str]:
        """Objects tasks may point at: Task.WhatId's ``referenceTo``, which lists exactly the
        objects with "Allow Activities" on (Object Reference, Task.WhatId:
        https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm)."""
        task = await self._described("Task")
        fields = task["fields"] if task else []
        what = next((f for f in fields if f["name"] == "WhatId"), None)
        return frozenset(what.get("referenceTo") or ()) if what else frozenset()

    async def _field_types(self, sobject: str) -> dict[str, dict[str, Any]] | None:
        raw = await self._described(sobject)
        return {f["name"]: f for f in raw["fields"]} if raw else None

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record a SOQL query returns, following ``nextRecordsUrl``."""
        page = await self._json("GET", "query", "query", params={"q": soql})
        records: list[dict[str, Any]] = list(page["records"])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = await self._json("GET", page["nextRecordsUrl"], "query more")
            records.extend(page["records"])
        return records

    async def users_by_email(self) -> dict[str, str]:
        """Active users' lowercased email → id."""
        rows = await self.query("SELECT Id, Email FROM User WHERE IsActive = true")
        return {r["Email"].strip().lower(): r["Id"] for r in rows if r.get("Email")}

    async def fetch(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Current values of records by id: the pre-images rollback restores."""
        wanted = ", ".join(["Id", *[f for f in fields if f != "Id"]])
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids), SOQL_IN_CHUNK):
            soql = f"SELECT {wanted} FROM {sobject} WHERE Id IN ({_soql_list(chunk)})"
            for row in await self.query(soql):
                row.pop("attributes", None)
                found[row["Id"]] = row
        return found

    async def find(self, sobject: str, external_ids: Sequence[str]) -> dict[str, str]:
        """Ids of records already carrying these external ids."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(external_ids), SOQL_IN_CHUNK):
            soql = (
                f"SELECT Id, {EXTERNAL_ID_FIELD} FROM {sobject} "
                f"WHERE {EXTERNAL_ID_FIELD} IN ({_soql_list(chunk)})"
            )
            for row in await self.query(soql):
                found[row[EXTERNAL_ID_FIELD]] = row["Id"]
        return found

    async def existing_ids(self, sobject: str, ids: Sequence[str]) -> set[str]:
        """Which of these ids still exist (a deleted record is in the recycle bin, or gone,
        and ``query`` leaves both out). One ``SELECT Id … WHERE Id IN`` per
        ``SOQL_IN_CHUNK`` ids: one API call per 200 records checked."""
        # Ids come back in 18 characters whatever we sent: compare canonical forms.
        wanted = {normalize(i) or i: i for i in ids}
        found: set[str] = set()
        for chunk in _chunks(list(ids), SOQL_IN_CHUNK):
            soql = f"SELECT Id FROM {sobject} WHERE Id IN ({_soql_list(chunk)})"
            for row in await self.query(soql):
                given = wanted.get(normalize(str(row["Id"])) or str(row["Id"]))
                if given is not None:
                    found.add(given)
        return found

    async def modified(self, sobject: str, ids: Sequence[str]) -> dict[str, datetime]:
        """LastModifiedDate of the records still there, by id as given: one ``SELECT Id,
        LastModifiedDate … WHERE Id IN`` per ``SOQL_IN_CHUNK`` ids. Rollback compares it
        with its own write's time, so a record someone changed since is left alone."""
        wanted = {normalize(i) or i: i for i in ids}
        found: dict[str, datetime] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), SOQL_IN_CHUNK):
            soql = f"SELECT Id, LastModifiedDate FROM {sobject} WHERE Id IN ({_soql_list(chunk)})"
            for row in await self.query(soql):
                given = wanted.get(normalize(str(row["Id"])) or str(row["Id"]))
                if given is not None and row.get("LastModifiedDate"):
                    found[given] = datetime.fromisoformat(str(row["LastModifiedDate"]))
        return found

    async def delete(
        self, sobject: str, ids: Sequence[str], ledger: JobLedger | None = None
    ) -> list[WriteResult]:
        """Delete by id, the cheapest way the org allows.

        With a ledger and at least ``bulk_threshold`` ids: Bulk API 2.0 ingest jobs of up
        to ``BULK_RECORDS_PER_JOB`` ids (``_bulk_delete``), journaled through the ledger
        before their CSV is sent, so a crash recovers the job (``recover``) instead of
        leaving it unaccounted. Otherwise sObject Collections, ``COLLECTION_LIMIT`` ids a
        call (``DELETE composite/sobjects?ids=…&allOrNone=false``, "Delete Records Using
        sObject Collections", https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-delete.html:
        one DeleteResult per id, in order): those records go to the Recycle Bin. A record
        already gone (``GONE_CODES``) is a success with ``created`` None; one deleted now
        has ``created`` False."""
        if sobject == "ContentVersion":
            return await self._delete_files(ids, ledger)
        return await self._delete_ids(sobject, ids, ledger)

    async def _delete_ids(
        self, sobject: str, ids: Sequence[str], ledger: JobLedger | None
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        if ledger is not None and len(ids) >= self.config.bulk_threshold:
            for chunk in _chunks(list(ids), BULK_RECORDS_PER_JOB):
                results.extend(await self._bulk_delete(sobject, chunk, ledger))
        else:
            for chunk in _chunks(list(ids), COLLECTION_LIMIT):
                results.extend(await self._delete_call(sobject, chunk))
        unknown = [r.external_id for r in results if r.error_code == "INVALID_CROSS_REFERENCE_KEY"]
        if unknown:
            # A record purged from the Recycle Bin is no longer known by its id: it is gone
            # if the object no longer lists it (docs are silent; confirm before trusting).
            there = await self.existing_ids(sobject, unknown)
            results = [
                WriteResult(r.external_id, r.external_id, None)
                if r.error_code == "INVALID_CROSS_REFERENCE_KEY" and r.external_id not in there
                else r
                for r in results
            ]
        return results

    async def _delete_files(
        self, version_ids: Sequence[str], ledger: JobLedger | None = None
    ) -> list[WriteResult]:
        """A ContentVersion cannot be deleted; its file goes by deleting its ContentDocument,
        every version and link with it (Object Reference, ContentVersion: "To delete a
        file, delete its ContentDocument"). A version no longer listed is already gone."""
        wanted = {normalize(i) or i: i for i in version_ids}
        document_of: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(version_ids)), SOQL_IN_CHUNK):
            ids = _soql_list(chunk)
            soql = f"SELECT Id, ContentDocumentId FROM ContentVersion WHERE Id IN ({ids})"
            for row in await self.query(soql):
                given = wanted.get(normalize(str(row["Id"])) or str(row["Id"]))
                if given is not None:
                    document_of[given] = str(row["ContentDocumentId"])
        documents = sorted(set(document_of.values()))
        deleted = await self._delete_ids("ContentDocument", documents, ledger)
        by_document = {r.external_id: r for r in deleted}
        results = []
        for version in version_ids:
            document = document_of.get(version)
            if document is None:
                results.append(WriteResult(version, version, None))
                continue
            answer = by_document[document]
            results.append(replace(answer, external_id=version,
                                   destination_id=version if answer.ok else None))  # fmt: skip
        return results

    async def _delete_call(self, sobject: str, chunk: list[str]) -> list[WriteResult]:
        params = {"ids": ",".join(chunk), "allOrNone": "false"}
        status, body = await self._call(
            "DELETE", "composite/sobjects", f"delete {sobject}", params=params, ok=(200, 400)
        )
        answer = orjson.loads(body)
        if status == 400:  # the whole request was refused
            code, message = _first_error(answer)
            return [
                WriteResult(i, None, None, code, f"{PLATFORM}: delete {sobject} {i}: {message}")
                for i in chunk
            ]
        results = []
        for given, item in zip(chunk, answer, strict=True):
            code, message = _first_error(item.get("errors") or [])
            if item.get("success"):
                results.append(WriteResult(given, given, False))
            elif code in GONE_CODES:
                results.append(WriteResult(given, given, None))
            else:
                message = f"{PLATFORM}: delete {sobject} {given}: {message}"
                results.append(WriteResult(given, None, None, code, message))
        log.info("salesforce.deleted", platform=PLATFORM, object=sobject, records=len(chunk),
                 failed=sum(not r.ok for r in results))  # fmt: skip
        return results

    async def _bulk_delete(
        self, sobject: str, ids: list[str], ledger: JobLedger
    ) -> list[WriteResult]:
        """One Bulk API 2.0 delete job: ``hardDelete`` while the user may (the records skip
        the Recycle Bin: nothing is left to purge, and nothing to undelete by hand), else
        ``delete`` (Recycle Bin). The CSV holds only the Id column (Prepare CSV Files,
        https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/datafiles_prepare_csv.htm).

        Crash safety: the job is handed to the ledger the moment it exists, before its
        data, and again once closed. A job a crash leaves Open (never closed) is aborted by
        ``recover`` and deleted nothing; a closed one runs to its end on the platform
        whatever happens to us, and ``recover`` reads its results, so its records are
        journaled deleted without a second job. Deleting twice would be harmless (gone is
        a success), but a job nobody reads would leave its outcomes unjournaled."""
        job_id = await self._open_delete_job(sobject)
        await ledger.job_opened(job_id, sobject, len(ids))
        status, body = await self._call(
            "PUT", f"jobs/ingest/{job_id}/batches", f"upload delete job {job_id}",
            data=_to_csv([{"Id": i} for i in ids]), headers={"Content-Type": "text/csv"},
            ok=(201, 400),
        )  # fmt: skip
        if status != 201 and not _already_uploaded(body):
            raise PlatformUnavailable(PLATFORM, f"upload {job_id}", _error_text(body))
        status, body = await self._call(
            "PATCH", f"jobs/ingest/{job_id}", f"close delete job {job_id}",
            json={"state": "UploadComplete"}, ok=(200, 400),
        )  # fmt: skip
        if status != 200 and _error_code(body) != "INVALIDJOBSTATE":
            raise PlatformUnavailable(PLATFORM, f"close {job_id}", _error_text(body))
        await ledger.job_uploaded(job_id)
        return await self._delete_job_results(sobject, job_id, ids)

    async def _open_delete_job(self, sobject: str) -> str:
        """Create the job: ``hardDelete`` first, ``delete`` once the org has refused the
        permission (FEATURENOTENABLED, remembered for the client's life)."""
        while True:
            operation = "delete" if self._hard_delete_refused else "hardDelete"
            status, body = await self._call(
                "POST", "jobs/ingest", f"create {operation} job {sobject}",
                json={"object": sobject, "operation": operation, "contentType": "CSV",
                      "lineEnding": "LF"},
                ok=(200, 201, 400),
            )  # fmt: skip
            if status != 400:
                return str(orjson.loads(body)["id"])
            if operation == "hardDelete" and _error_code(body) == "FEATURENOTENABLED":
                log.info("salesforce.hard_delete_refused", platform=PLATFORM, object=sobject,
                         reason=_error_text(body))  # fmt: skip
                self._hard_delete_refused = True
                continue
            raise PlatformUnavailable(PLATFORM, f"create delete job {sobject}", _error_text(body))

    async def _delete_job_results(
        self, sobject: str, job_id: str, ids: Sequence[str] | None
    ) -> list[WriteResult]:
        """A delete job's outcome per id (``external_id`` holds the id as sent): deleted
        (``created`` False), already gone (``GONE_CODES``: ``created`` None) or refused.
        ``ids`` None (a recovered job) reads every result file."""
        raw = await self._job_results(job_id, None if ids is None else len(ids), key="Id")
        results = []
        for r in raw:
            if r.error_code is None:
                results.append(WriteResult(r.external_id, r.external_id, False))
            elif r.error_code in GONE_CODES:
                results.append(WriteResult(r.external_id, r.external_id, None))
            else:
                message = f"{PLATFORM}: delete {sobject} {r.external_id}: {r.error_message}"
                results.append(WriteResult(r.external_id, None, None, r.error_code, message))
        return results

    async def org_identity(self) -> str:
        """The organization id, from the identity URL the token answer carries
        (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_openid.htm:
        ``id`` is ``https://login.salesforce.com/id/<org id>/<user id>``); an answer
        without one asks ``SELECT Id FROM Organization`` (one API call)."""
        await self._login()
        parts = (self._identity_url or "").rstrip("/").split("/")
        if len(parts) >= 3 and parts[-3] == "id" and normalize(parts[-2]):
            return normalize(parts[-2]) or parts[-2]
        rows = await self.query("SELECT Id FROM Organization")
        return normalize(str(rows[0]["Id"])) or str(rows[0]["Id"])

    # -- writes -------------------------------------------------------------

    async def upsert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], ledger: JobLedger
    ) -> list[WriteResult]:
        """Upsert on the external id: Bulk API 2.0 for big loads, Collections otherwise.

        Before anything is sent, each value is checked against the object's describe (a
        value of the wrong type fails the whole Collections request in a real org, so it
        fails here, alone, naming its record and field), and on an object whose external
        id is not unique (activities) records whose source id the org already holds twice
        are refused and reported. Records refused with a transient error (a locked row)
        are upserted again, as the policy allows: an upsert on the external id never
        duplicates, and the records that went through stay as they are. A record an
        earlier call may have written before its answer was lost is "in doubt": an
        "updated" for it may be about our own create, so its ``created`` is None (the
        platform cannot say; the id map can).
        """
        refused, ready = await self._checked(sobject, records)
        results: dict[str, WriteResult] = {r.external_id: r for r in refused}
        pending: list[Mapping[str, Any]] = list(ready)
        in_doubt: set[str] = set()
        for attempt in range(1, self.policy.attempts + 1):
            for result in await self._upsert_once(sobject, pending, ledger, in_doubt):
                if result.created is False and result.external_id in in_doubt:
                    result = replace(result, created=None)
                results[result.external_id] = result
            again = {ext for ext, r in results.items() if r.error_code in TRANSIENT_RECORD_ERRORS}
            # A create whose answer was lost may have landed: its retry is then an update,
            # which the org refuses for create-only fields (AccountContactRelation's
            # AccountId). The lost create set them; the rest goes again.
            landed = {
                ext for ext, r in results.items()
                if ext in in_doubt and r.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
            }  # fmt: skip
            create_only = await self._create_only(sobject) if landed else frozenset()
            pending = [
                {k: v for k, v in r.items() if k not in create_only}
                if str(r[EXTERNAL_ID_FIELD]) in landed else r
                for r in pending if str(r[EXTERNAL_ID_FIELD]) in again | landed
            ]  # fmt: skip
            if not pending or attempt == self.policy.attempts:
                break
            log.info(
                "salesforce.records_retry", what=f"upsert {sobject}", records=len(pending),
                attempt=attempt, reason=sorted({results[e].error_code or "" for e in again}),
            )  # fmt: skip
            await asyncio.sleep(self.policy.delay(attempt, None, self._rng))
        return list(results.values())

    async def _create_only(self, sobject: str) -> frozenset[str]:
        info = await self.describe(sobject)
        return info.create_only if info is not None else frozenset()

    async def _checked(
        self, sobject: str, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[WriteResult], list[dict[str, Any]]]:
        """(refused, ready): values conformed to describe's types, and records the org
        cannot take refused before the request (see ``upsert``)."""
        refused, ready = await self._conformed(sobject, records)
        twice = await self._held_twice(sobject, [str(r[EXTERNAL_ID_FIELD]) for r in ready])
        for ext, ids in twice.items():
            refused.append(
                WriteResult(
                    ext, None, None, "DUPLICATE_EXTERNAL_ID",
                    f"{PLATFORM}: {len(ids)} {sobject} records already carry "
                    f"{EXTERNAL_ID_FIELD} {ext} ({', '.join(sorted(ids))}); crmlift writes "
                    "neither and creates no other: merge or delete the extra ones, then rerun",
                )
            )  # fmt: skip
        return refused, [r for r in ready if str(r[EXTERNAL_ID_FIELD]) not in twice]

    async def _conformed(
        self, sobject: str, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[WriteResult], list[dict[str, Any]]]:
        """Records with every value in the JSON form describe's field type takes; a record
        with a field the object lacks or a value that is not of its type fails alone."""
        types = await self._field_types(sobject)
        refused: list[WriteResult] = []
        ready: list[dict[str, Any]] = []
        for record in records:
            ext = str(record[EXTERNAL_ID_FIELD])
            try:
                ready.append(_conform(sobject, record, types))
            except _BadValue as exc:
                refused.append(WriteResult(ext, None, None, exc.code, f"{PLATFORM}: {exc}"))
        return refused, ready

    async def _held_twice(self, sobject: str, external_ids: Sequence[str]) -> dict[str, list[str]]:
        """External ids the org holds on more than one record, where the field allows it
        (activities: Salesforce lets no activity field be unique)."""
        types = await self._field_types(sobject)
        spec = (types or {}).get(EXTERNAL_ID_FIELD)
        if spec is None or spec.get("unique") or not external_ids:
            return {}
        holders: dict[str, list[str]] = {}
        for chunk in _chunks(list(dict.fromkeys(external_ids)), SOQL_IN_CHUNK):
            soql = (
                f"SELECT Id, {EXTERNAL_ID_FIELD} FROM {sobject} "
                f"WHERE {EXTERNAL_ID_FIELD} IN ({_soql_list(chunk)})"
            )
            for row in await self.query(soql):
                holders.setdefault(row[EXTERNAL_ID_FIELD], []).append(row["Id"])
        twice = {ext: ids for ext, ids in holders.items() if len(ids) > 1}
        if twice:
            log.warning(
                "salesforce.external_id_held_twice", platform=PLATFORM, object=sobject,
                external_ids=sorted(twice)[:20], count=len(twice),
            )  # fmt: skip
        return twice

    async def _upsert_once(
        self,
        sobject: str,
        records: list[Mapping[str, Any]],
        ledger: JobLedger,
        in_doubt: set[str],
    ) -> list[WriteResult]:
        """One pass over ``records``, in rounds that never carry an external id twice: a
        second row for the same id in one Collections request or one Bulk job fails both
        (DUPLICATE_VALUE), so it waits for the next round and, written later, wins."""
        rounds = _rounds(records)
        if len(rounds) > 1:
            log.warning(
                "salesforce.external_id_repeated", platform=PLATFORM, object=sobject,
                rounds=len(rounds), repeated=sum(len(r) for r in rounds[1:]),
            )  # fmt: skip
        results: list[WriteResult] = []
        for batch in rounds:
            results.extend(await self._upsert_round(sobject, batch, ledger, in_doubt))
        return results

    async def _upsert_round(
        self,
        sobject: str,
        records: list[Mapping[str, Any]],
        ledger: JobLedger,
        in_doubt: set[str],
    ) -> list[WriteResult]:
        if len(records) >= self.config.bulk_threshold:
            # A job's data is processed once (a resent upload is refused), so its
            # results are certain.
            results: list[WriteResult] = []
            for chunk in _chunks(records, BULK_RECORDS_PER_JOB):
                results.extend(await self._bulk_upsert(sobject, chunk, ledger))
            return results
        return await self._collections_upsert(sobject, records, in_doubt)

    async def _collections_upsert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], in_doubt: set[str]
    ) -> list[WriteResult]:
        chunks = _chunks(list(records), COLLECTION_LIMIT)
        answers = await asyncio.gather(
            *(self._collections_call(sobject, c, in_doubt) for c in chunks)
        )
        return [result for answer in answers for result in answer]

    async def _collections_call(
        self, sobject: str, chunk: list[Mapping[str, Any]], in_doubt: set[str]
    ) -> list[WriteResult]:
        """One Collections upsert. A request Salesforce could not parse (400
        JSON_PARSER_ERROR: one bad value fails every record of it) is split in halves and
        each half sent again, so the good records load and only the bad one fails."""
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": sobject}, **_json_ready(r)} for r in chunk],
        }
        reply = await self._send(
            "PATCH",
            f"composite/sobjects/{sobject}/{EXTERNAL_ID_FIELD}",
            f"upsert {sobject}",
            json=body,
            ok=(200, 400),
        )
        answer = orjson.loads(reply.body)
        ext_ids = [str(r[EXTERNAL_ID_FIELD]) for r in chunk]
        if reply.uncertain:
            in_doubt.update(ext_ids)
        if reply.status == 400:  # the whole request was refused (e.g. an unknown field)
            code, message = _first_error(answer)
            if code == "JSON_PARSER_ERROR" and len(chunk) > 1:
                half = len(chunk) // 2
                log.warning(
                    "salesforce.request_unparsed", platform=PLATFORM, object=sobject,
                    records=len(chunk), message=message,
                )  # fmt: skip
                first = await self._collections_call(sobject, chunk[:half], in_doubt)
                return first + await self._collections_call(sobject, chunk[half:], in_doubt)
            if len(chunk) == 1:
                message = f"{PLATFORM}: {sobject} {ext_ids[0]}: {message}"
            return [WriteResult(e, None, None, code, message) for e in ext_ids]
        results = []
        for ext, item in zip(ext_ids, answer, strict=True):
            if item.get("success"):
                results.append(WriteResult(ext, item["id"], bool(item.get("created"))))
            else:
                code, message = _first_error(item.get("errors") or [])
                results.append(WriteResult(ext, None, None, code, message))
        return results

    async def _bulk_upsert(
        self, sobject: str, records: list[Mapping[str, Any]], ledger: JobLedger
    ) -> list[WriteResult]:
        started = time.perf_counter()
        job = await self._json(
            "POST",
            "jobs/ingest",
            f"create bulk job {sobject}",
            json={
                "object": sobject,
                "operation": "upsert",
                "contentType": "CSV",
                "externalIdFieldName": EXTERNAL_ID_FIELD,
                "lineEnding": "LF",
            },
            # Safe to repeat: a job whose answer was lost holds no data and is never
            # closed, so Salesforce discards it; the records go in the next one.
            idempotent=True,
        )
        job_id = job["id"]
        await ledger.job_opened(job_id, sobject, len(records))
        status, body = await self._call(
            "PUT",
            f"jobs/ingest/{job_id}/batches",
            f"upload bulk job {job_id}",
            data=_to_csv(records),
            headers={"Content-Type": "text/csv"},
            ok=(201, 400),
        )
        # A resent upload whose first copy landed is refused as "multiple contents":
        # the job holds our CSV either way.
        if status != 201 and not _already_uploaded(body):
            raise PlatformUnavailable(PLATFORM, f"upload {job_id}", _error_text(body))
        status, body = await self._call(
            "PATCH",
            f"jobs/ingest/{job_id}",
            f"close bulk job {job_id}",
            json={"state": "UploadComplete"},
            ok=(200, 400),
        )
        # A resent close whose first copy landed finds the job past Open: closed either way.
        if status != 200 and _error_code(body) != "INVALIDJOBSTATE":
            raise PlatformUnavailable(PLATFORM, f"close {job_id}", _error_text(body))
        await ledger.job_uploaded(job_id)
        return await self._job_results(job_id, len(records), time.perf_counter() - started)

    async def recover(
        self, job_id: str, sobject: str, external_ids: Sequence[str]
    ) -> list[WriteResult] | None:
        """Results of a journaled Bulk job, read from the job itself; None when its data
        never arrived (redo it)."""
        status, body = await self._call(
            "GET", f"jobs/ingest/{job_id}", f"job {job_id}", ok=(200, 404)
        )
        if status == 404:
            return None
        state = orjson.loads(body)["state"]
        if state == "Open":
            await self._json(
                "PATCH", f"jobs/ingest/{job_id}", f"abort {job_id}", json={"state": "Aborted"}
            )
            return None
        if state == "Aborted":
            return None
        if orjson.loads(body).get("operation") in DELETE_OPERATIONS:
            return await self._delete_job_results(sobject, job_id, None)
        return await self._job_results(job_id)

    async def _job_results(
        self,
        job_id: str,
        records: int | None = None,
        upload_seconds: float = 0.0,
        key: str = EXTERNAL_ID_FIELD,
    ) -> list[WriteResult]:
        """Wait for the job, then read the result files that can hold rows.

        ``records`` is how many rows were uploaded; None (a recovered job) reads
        every file. ``key`` is the column that names each row's record (``Id`` for a
        delete job).
        """
        started = time.perf_counter()
        wait = self.config.poll_interval
        while True:
            info = await self._json("GET", f"jobs/ingest/{job_id}", f"poll {job_id}")
            if info["state"] in TERMINAL_JOB_STATES:
                break
            await asyncio.sleep(wait)
            wait = min(3.0, wait * 1.5)
        processed_at = time.perf_counter()
        results: list[WriteResult] = []
        processed = int(info.get("numberRecordsProcessed") or 0)
        failed = int(info.get("numberRecordsFailed") or 0)
        kinds = ["successfulResults"] if processed > failed or records is None else []
        if failed or records is None:
            kinds.append("failedResults")
        if records is None or info["state"] != "JobComplete" or processed < records:
            kinds.append("unprocessedrecords")
        # Only the result files that can hold rows: each fetch is an API call.
        for kind in kinds:
            _, raw = await self._call(
                "GET",
                f"jobs/ingest/{job_id}/{kind}/",
                f"{kind} {job_id}",
                headers={"Accept": "text/csv"},
            )
            results.extend(_parse_results(kind, raw.decode("utf-8"), key))
        log.info(
            "bulk.job_done",
            platform=PLATFORM,
            job_id=job_id,
            state=info["state"],
            processed=info.get("numberRecordsProcessed"),
            failed=info.get("numberRecordsFailed"),
            upload_s=round(upload_seconds, 2),
            processing_s=round(processed_at - started, 2),
            results_s=round(time.perf_counter() - processed_at, 2),
        )
        return results

    async def upload_files(self, sobject: str, uploads: Sequence[FileUpload]) -> list[WriteResult]:
        """Create ContentVersions: small files 200 to a Collections call with their content
        inline (one API call instead of 200), large ones one multipart upload each. An
        upload that ``replaces`` an earlier version becomes the next version of the same
        ContentDocument (see ``_as_versions``)."""
        refused: list[WriteResult] = []
        ready: list[FileUpload] = []
        for upload in uploads:
            bad, fine = await self._conformed(sobject, [upload.fields])
            refused.extend(bad)
            ready.extend(replace(upload, fields=f) for f in fine)
        versions = [u for u in ready if u.replaces]
        failed, superseding = await self._as_versions(sobject, versions)
        created = await self._create_files(
            sobject, [u for u in ready if not u.replaces] + superseding
        )
        await self._restore_superseded(sobject, superseding, created)
        return refused + failed + created

    async def _create_files(self, sobject: str, uploads: Sequence[FileUpload]) -> list[WriteResult]:
        small = [u for u in uploads if u.size_bytes <= INLINE_FILE_BYTES]
        large = [u for u in uploads if u.size_bytes > INLINE_FILE_BYTES]
        batches = pack(small, attrgetter("size_bytes"), INLINE_BATCH_BYTES, COLLECTION_LIMIT)
        # Two inline batches at a time: each holds its files base64-encoded in memory.
        slots = asyncio.Semaphore(INLINE_BATCHES_IN_FLIGHT)

        async def create(batch: list[FileUpload]) -> list[WriteResult]:
            async with slots:
                return await self._recovering(sobject, batch, self._create_inline)

        inline = await asyncio.gather(*(create(b) for b in batches))
        one_by_one = await asyncio.gather(
            *(self._recovering(sobject, [u], self._upload_multipart) for u in large)
        )
        return [r for answer in (*inline, *one_by_one) for r in answer]

    async def _as_versions(
        self, sobject: str, uploads: Sequence[FileUpload]
    ) -> tuple[list[WriteResult], list[FileUpload]]:
        """Uploads that supersede an earlier version, made into new versions of its document.

        PathOnClient and VersionData are create-only: changed content is a new
        ContentVersion with the old one's ContentDocumentId (Object Reference,
        ContentVersion.ContentDocumentId: set it to add a version to a document;
        FirstPublishLocationId belongs to the first version only, so it is left out).
        The external id is unique across every version, so it moves: the superseded
        version's is cleared first and the new version carries it. Then ``find`` and a
        rerun see the latest version, a lost answer is recovered by external id as for
        any file, and the id map points at the newest version. A failed upload puts the
        id back (``_restore_superseded``); a crash between the two leaves the old version
        without it, and the rerun uploads again as the id map still says "replaces".
        """
        if not uploads:
            return [], []
        documents = await self._documents_of(sobject, [str(u.replaces) for u in uploads])
        failed: list[WriteResult] = []
        superseding: list[FileUpload] = []
        for upload in uploads:
            ext, document = _file_ext(upload), documents.get(str(upload.replaces))
            if document is None:
                failed.append(WriteResult(
                    ext, None, None, "ENTITY_IS_DELETED",
                    f"{PLATFORM}: {sobject} {upload.replaces}, the version {ext} replaces, "
                    "is gone from the org; no new version uploaded",
                ))  # fmt: skip
                continue
            fields = {k: v for k, v in upload.fields.items() if k not in FIRST_VERSION_ONLY}
            superseding.append(replace(upload, fields={**fields, "ContentDocumentId": document}))
        cleared = await self._set_external_ids(
            sobject, {str(u.replaces): None for u in superseding}
        )
        for upload in [u for u in superseding if str(u.replaces) not in cleared]:
            failed.append(WriteResult(
                _file_ext(upload), None, None, "CANNOT_CLEAR_EXTERNAL_ID",
                f"{PLATFORM}: could not free {EXTERNAL_ID_FIELD} {_file_ext(upload)} on "
                f"{sobject} {upload.replaces}; no new version uploaded",
            ))  # fmt: skip
        return failed, [u for u in superseding if str(u.replaces) in cleared]

    async def _documents_of(self, sobject: str, version_ids: Sequence[str]) -> dict[str, str]:
        """ContentDocumentId of each version id (keys as given, 15 or 18 characters)."""
        found: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(version_ids)), SOQL_IN_CHUNK):
            soql = f"SELECT Id, ContentDocumentId FROM {sobject} WHERE Id IN ({_soql_list(chunk)})"
            for row in await self.query(soql):
                for given in chunk:
                    if given[:15] == row["Id"][:15]:
                        found[given] = row["ContentDocumentId"]
        return found

    async def _set_external_ids(self, sobject: str, values: Mapping[str, str | None]) -> set[str]:
        """Set the external id of records by id (None clears it); the ids that took it."""
        done: set[str] = set()
        items = list(values.items())
        for chunk in _chunks(items, COLLECTION_LIMIT):
            records = [
                {"attributes": {"type": sobject}, "id": record_id, EXTERNAL_ID_FIELD: value}
                for record_id, value in chunk
            ]
            answer = await self._json(
                "PATCH", "composite/sobjects", f"set {EXTERNAL_ID_FIELD} on {sobject}",
                json={"allOrNone": False, "records": records},
            )  # fmt: skip
            done.update(
                rid for (rid, _), item in zip(chunk, answer, strict=True) if item.get("success")
            )
        return done

    async def _restore_superseded(
        self, sobject: str, superseding: Sequence[FileUpload], results: Sequence[WriteResult]
    ) -> None:
        """Give a superseded version its external id back when its new version failed, so
        the org still answers for the file by external id."""
        failed = {r.external_id for r in results if not r.ok}
        back = {str(u.replaces): _file_ext(u) for u in superseding if _file_ext(u) in failed}
        if back:
            restored = await self._set_external_ids(sobject, back)
            log.warning(
                "files.version_failed", platform=PLATFORM, object=sobject,
                versions=len(back), restored=len(restored),
            )  # fmt: skip

    async def _recovering(
        self,
        sobject: str,
        batch: list[FileUpload],
        create: Callable[[str, list[FileUpload]], Awaitable[list[WriteResult]]],
    ) -> list[WriteResult]:
        """Create files, surviving lost answers and locked rows: the files that landed
        anyway are found by external id, and only the others are sent again — a file is
        never made twice, and a file refused with a transient error is not failed for good.
        """
        results: dict[str, WriteResult] = {}
        pending = batch
        lost: AnswerLost | None = None
        for attempt in range(1, self.policy.attempts + 1):
            try:
                results.update((r.external_id, r) for r in await create(sobject, pending))
                lost = None
            except AnswerLost as exc:
                lost = exc
                found = await self.find(sobject, [_file_ext(u) for u in pending])
                results.update((e, WriteResult(e, i, True)) for e, i in found.items())
                pending = [u for u in pending if _file_ext(u) not in found]
                log.warning(
                    "files.answer_lost", platform=PLATFORM, what=exc.what,
                    landed=len(found), again=len(pending),
                )  # fmt: skip
            else:
                pending = [
                    u for u in pending
                    if results[_file_ext(u)].error_code in TRANSIENT_RECORD_ERRORS
                ]  # fmt: skip
                if pending:
                    log.info(
                        "salesforce.records_retry", what=f"create {sobject}",
                        records=len(pending), attempt=attempt,
                    )  # fmt: skip
            if not pending or attempt == self.policy.attempts:
                break
            await self.governor.back_off(
                self.policy, attempt, None, status=0, what=f"create {sobject}", rng=self._rng
            )
        if lost is not None and pending:
            raise PlatformUnavailable(
                PLATFORM, f"create {len(pending)} files", "answers kept being lost"
            )
        return [results[_file_ext(u)] for u in batch]

    async def _create_inline(self, sobject: str, batch: list[FileUpload]) -> list[WriteResult]:
        records = [
            {"attributes": {"type": sobject}, **_json_ready(u.fields),
             "VersionData": base64.b64encode(u.content.read_bytes()).decode()}
            for u in batch
        ]  # fmt: skip
        status, raw = await self._call(
            "POST", "composite/sobjects", f"create {len(batch)} files",
            json={"allOrNone": False, "records": records}, ok=(200, 400), idempotent=False,
        )  # fmt: skip
        answer = orjson.loads(raw)
        ext_ids = [str(u.fields[EXTERNAL_ID_FIELD]) for u in batch]
        if status == 400:
            code, message = _first_error(answer)
            return [WriteResult(e, None, None, code, message) for e in ext_ids]
        results = []
        for ext, item in zip(ext_ids, answer, strict=True):
            if item.get("success"):
                results.append(WriteResult(ext, item["id"], True))
            else:
                code, message = _first_error(item.get("errors") or [])
                results.append(WriteResult(ext, None, None, code, message))
        return results

    async def _upload_multipart(self, sobject: str, uploads: list[FileUpload]) -> list[WriteResult]:
        """Create ContentVersions one multipart upload each, streamed from disk."""
        return [await self._upload_one(sobject, upload) for upload in uploads]

    async def _upload_one(self, sobject: str, upload: FileUpload) -> WriteResult:
        fields, content = upload.fields, upload.content
        filename, mime_type = upload.filename, upload.mime_type
        ext = str(fields[EXTERNAL_ID_FIELD])
        with content.open("rb") as stream:
            form = aiohttp.FormData()
            form.add_field(
                "entity_content",
                orjson.dumps(_json_ready(fields)).decode(),
                content_type="application/json",
            )
            form.add_field("VersionData", stream, filename=filename, content_type=mime_type)
            # Not idempotent: a lost answer may mean the file exists (see _recovering).
            status, body = await self._call(
                "POST",
                f"sobjects/{sobject}/",
                f"upload {filename}",
                data=form,
                ok=(201, 400),
                idempotent=False,
            )
        if status == 201:
            return WriteResult(ext, orjson.loads(body)["id"], True)
        code, message = _first_error(orjson.loads(body))
        return WriteResult(ext, None, None, code, message)

    async def file_facts(self, sobject: str, ids: Sequence[str]) -> dict[str, FileFacts]:
        """ContentSize and Checksum ("MD5 checksum for the file") of the file each version id
        (as given) belongs to, as its latest version (IsLatest) holds it now: someone may
        have uploaded a new version by hand (Object Reference, ContentVersion,
        https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contentversion.htm).
        Two ``SELECT … WHERE … IN`` per ``SOQL_IN_CHUNK`` ids. Absent: the file is gone."""
        document_of = await self._documents_of(sobject, list(ids))
        latest: dict[str, FileFacts] = {}
        for chunk in _chunks(sorted(set(document_of.values())), SOQL_IN_CHUNK):
            soql = (
                f"SELECT ContentDocumentId, ContentSize, Checksum FROM {sobject} "
                f"WHERE IsLatest = true AND ContentDocumentId IN ({_soql_list(chunk)})"
            )
            for row in await self.query(soql):
                size, checksum = row.get("ContentSize"), row.get("Checksum")
                latest[str(row["ContentDocumentId"])[:15]] = FileFacts(
                    None if size is None else int(size),
                    None if checksum is None else str(checksum).lower(),
                )
        return {
            given: latest[document[:15]]
            for given, document in document_of.items()
            if document[:15] in latest
        }


@dataclass(frozen=True, slots=True)
class _Reply:
    """One request's final answer."""

    status: int
    body: bytes
    uncertain: bool
    """An earlier attempt of this write may have been applied before its answer was lost,
    so what this answer says about creating (``created: false``) may be about our own
    earlier attempt."""


class _BadValue(Exception):
    """A value describe says the field cannot take; ``code`` is Salesforce's word for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _conform(
    sobject: str, record: Mapping[str, Any], types: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """``record`` with each value in the JSON form its field's describe type takes
    ("12" for a number becomes 12); raises ``_BadValue`` naming the record and field."""
    if types is None:
        return dict(record)
    by_name = {name.lower(): spec for name, spec in types.items()}
    ext = record.get(EXTERNAL_ID_FIELD)
    conformed: dict[str, Any] = {}
    for name, value in record.items():
        spec = by_name.get(name.lower())
        if spec is None:
            raise _BadValue("INVALID_FIELD", f"{sobject} {ext}: {sobject} has no field {name}")
        try:
            conformed[name] = _typed_value(str(spec.get("type")), value)
        except ValueError as exc:
            raise _BadValue(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{sobject} {ext}: {name} ({spec.get('type')}): {exc}; not sent",
            ) from exc
    return conformed


_TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "combobox", "reference", "id",
     "encryptedstring", "base64"}
)  # fmt: skip
_NUMBER_TYPES = frozenset({"double", "currency", "percent"})


def _typed_value(kind: str, value: Any) -> Any:
    """``value`` as a field of describe type ``kind`` takes it in JSON; ValueError if it
    cannot be (Salesforce would answer JSON_PARSER_ERROR for the whole request)."""
    if value is None:
        return None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValueError(f"{value!r} is not true or false")
    if kind == "int":
        number = _number(value)
        if number != int(number):
            raise ValueError(f"{value!r} is not a whole number")
        return int(number)
    if kind in _NUMBER_TYPES:
        return _number(value)
    if kind in ("date", "datetime"):
        return _moment(kind, value)
    if kind == "multipicklist" and isinstance(value, list):
        return ";".join(str(v) for v in value)
    if kind in _TEXT_TYPES or kind == "multipicklist":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{value!r} is not text")
        return value if isinstance(value, str) else str(value)
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return (
        int(number)
        if number == number.to_integral_value() and "." not in str(value)
        else float(number)
    )


def _moment(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO {kind}")
    try:
        if kind == "date":
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO {kind}") from exc
    return value


def _rounds(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """``records`` in rounds holding each external id at most once, in their order: the
    n-th row of an id goes in round n, so the last one is written last."""
    rounds: list[list[Mapping[str, Any]]] = []
    seen: dict[str, int] = {}
    for record in records:
        ext = str(record[EXTERNAL_ID_FIELD])
        index = seen.get(ext, 0)
        seen[ext] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(record)
    return rounds


def _address_settings(fields: set[str]) -> set[str]:
    """``StateCountryPicklists`` when describe shows the ISO code fields (the org has State
    and Country/Territory Picklists on), ``StateCountryText`` when only free text."""
    if any(f"{prefix}CountryCode" in fields for prefix in ADDRESS_PREFIXES):
        return {STATE_COUNTRY_PICKLISTS}
    if any(f"{prefix}Country" in fields for prefix in ADDRESS_PREFIXES):
        return {STATE_COUNTRY_TEXT}
    return set()


def _file_ext(upload: FileUpload) -> str:
    return str(upload.fields[EXTERNAL_ID_FIELD])


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _soql_list(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def _json_ready(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ";".join(v) if isinstance(v, list) else v for k, v in record.items()}


def _csv_cell(value: Any) -> str:
    if value is None:
        return "#N/A"  # Bulk API: nulls the field
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def _to_csv(records: Sequence[Mapping[str, Any]]) -> bytes:
    columns = sorted({key for record in records for key in record})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record[c]) if c in record else "" for c in columns])
    return out.getvalue().encode("utf-8")


def _parse_results(kind: str, text: str, key: str = EXTERNAL_ID_FIELD) -> list[WriteResult]:
    """Results of one result file, reading only the columns we need (rows carry every
    uploaded column back, and this runs for every record of every job); ``key`` is the
    uploaded column each result is named by."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        return []
    column = {name: index for index, name in enumerate(header)}
    ext_at = column.get(key)
    results = []
    for row in rows:
        ext = row[ext_at] if ext_at is not None else ""
        if kind == "successfulResults":
            created = row[column["sf__Created"]].lower() == "true"
            results.append(WriteResult(ext, row[column["sf__Id"]], created))
        elif kind == "failedResults":
            error = row[column["sf__Error"]] if "sf__Error" in column else ""
            code, _, message = (error or "UNKNOWN_ERROR").partition(":")
            results.append(WriteResult(ext, None, None, code, message.rstrip(" -") or code))
        else:
            results.append(WriteResult(ext, None, None, "UNPROCESSED", "the job never got to it"))
    return results


def _already_uploaded(body: bytes) -> bool:
    code, message = _first_error(_safe_json(body))
    return code == "INVALIDJOBSTATE" and "multiple contents" in message.lower()


def _first_error(errors: Any) -> tuple[str, str]:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR"
        message = first.get("message", "")
        fields = first.get("fields")
        if fields:
            message = f"{message} (fields: {', '.join(fields)})"
        return str(code), str(message)
    return "UNKNOWN_ERROR", str(errors)[:300]


def _error_code(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and value and isinstance(value[0], dict):
        code = value[0].get("errorCode")
        return code if isinstance(code, str) else None
    return None


def _error_text(body: bytes) -> str:
    code, message = _first_error(_safe_json(body))
    return f"{code}: {message}"


def _safe_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")[:300]


def _oauth_error(body: bytes) -> str | None:
    value = _safe_json(body)
    if isinstance(value, dict):
        return str(value.get("error_description") or value.get("error"))
    return None


SALESFORCE_KINDS: Mapping[str, str] = {
    "string": "text",
    "textarea": "textarea",
    "encryptedstring": "text",
    "combobox": "text",
    "email": "email",
    "phone": "phone",
    "url": "url",
    "double": "number",
    "int": "number",
    "long": "number",
    "currency": "currency",
    "percent": "percent",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "multipicklist": "multipicklist",
    "reference": "lookup",
    "id": "id",
}
"""DescribeFieldResult ``type`` → ``Column.kind``
(https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm#fieldtype)."""


def _column(described: Mapping[str, Any]) -> Column:
    """One describe ``fields[]`` entry as a Column: active picklist values only (an
    inactive value is refused on write like an unknown one)."""
    kind = SALESFORCE_KINDS.get(str(described.get("type")), "other")
    values = [v for v in described.get("picklistValues") or () if v.get("active", True)]
    text = kind in ("text", "textarea", "email", "phone", "url")
    return Column(
        kind=kind,
        length=int(described["length"]) if text and described.get("length") else None,
        choices=tuple(str(v["value"]) for v in values),
        labels=tuple(str(v.get("label") or v["value"]) for v in values),
        restricted=bool(described.get("restrictedPicklist")),
    )
