"""The BackDocket extractor: OAuth, governed and retried REST calls, windows of pages.

Speaks the contract in ../shared/sources/backdocket-api.md. Throughput comes
from many windows read at once (the service decides which); this module makes
each call safe: paced by the governor, retried by the policy, re-authenticated
once on an expired token, and classified in one place.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp
import orjson
import structlog

from adapters.base import CursorRejected, NotFound, Page, Record, Window
from adapters.errors import (
    AuthError,
    ConfigError,
    PlatformRefused,
    PlatformUnavailable,
    PlatformUnreachable,
)
from adapters.http import SessionClient, describe_failure, is_tls_failure
from adapters.secrets import Secret
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.governor import Governor

PLATFORM = "backdocket"
MAX_PAGE_SIZE = 500
"""The contract clamps ``limit`` to 500; asking for more only wastes nothing but clarity."""
CHUNK_SIZE = 64 * 1024
TOKEN_PATH = "oauth/token"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHOWN_CURSOR = 60
"""Characters of a cursor an error shows: enough to recognise it, never a page of text."""

COLLECTIONS: tuple[str, ...] = (
    "users",
    "companies",
    "contacts",
    "matters",
    "matter_parties",
    "claims",
    "tasks",
    "events",
    "documents",
    "notes",
    "esignature_requests",
    "intake_submissions",
    "custom_field_definitions",
    "workflows",
    "merge_templates",
)
"""Every collection of the contract, parents before children."""

log = structlog.get_logger(__name__)
T = TypeVar("T")


PACED_RETRIES = 32
"""429 answers with Retry-After one call obeys before they count as failures."""


@dataclass(frozen=True, slots=True)
class BackDocketConfig:
    """How to reach one BackDocket tenant."""

    base_url: str
    """``https://{tenant}.backdocket.com`` or a simulator's address."""
    client_id: str
    client_secret: Secret
    page_size: int = MAX_PAGE_SIZE
    """Records per page, 1..500: fewer pages mean fewer rate-limited calls."""
    scope: str = "read"
    request_timeout: float = 120.0
    """Seconds one call may take, body included; a document of many MB needs room."""
    page_deadline: float = 600.0
    """Seconds one page (or count) may take over all its tries: a source that drips a
    body forever stops the run with the URL instead of waiting out every retry."""

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"backdocket page_size must be 1..{MAX_PAGE_SIZE}")
        if not self.page_deadline > 0:
            raise ConfigError("backdocket page_deadline must be a positive number of seconds")


def _iso(when: datetime) -> str:
    return when.isoformat()


class BackDocketClient(SessionClient):
    """One tenant, one token, one governor. Use as ``async with``."""

    platform = PLATFORM

    def __init__(
        self,
        config: BackDocketConfig,
        governor: Governor,
        policy: RetryPolicy | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.governor = governor
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        super().__init__()
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0
        """Tokens granted, the first one included."""
        self.token_renewals = 0
        """Tokens fetched to replace one the source stopped accepting (expired)."""

    def new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.governor.profile.concurrency + 2)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout, sock_connect=10)
        return aiohttp.ClientSession(
            base_url=self.config.base_url.rstrip("/") + "/",
            connector=connector,
            timeout=timeout,
            json_serialize=lambda v: orjson.dumps(v).decode(),
            raise_for_status=False,
        )

    # -- auth -------------------------------------------------------------

    async def _bearer(self, stale: str | None = None) -> str:
        """The current token; fetch a new one if there is none or ``stale`` expired.

        Single-flight: when many workers see the same expired token at once,
        only the first fetches and the rest reuse its answer.
        """
        async with self._token_lock:
            if self._token is None or self._token == stale:
                renewing = self._token is not None
                self._token = await self._fetch_token()
                self._note_token(renewing)
            return self._token

    def _note_token(self, renewing: bool) -> None:
        """Log every grant; the token itself never reaches a log (nor a key named like it)."""
        endpoint = self._url(TOKEN_PATH)
        if renewing:
            self.token_renewals += 1
            log.info(
                "backdocket.token_renewed",
                platform=PLATFORM,
                endpoint=endpoint,
                reason="the source refused the previous one as expired",
                renewals=self.token_renewals,
            )
        else:
            log.info("backdocket.token_fetched", platform=PLATFORM, endpoint=endpoint)

    def _url(self, path: str) -> str:
        """The absolute URL of ``path``, for errors and logs (no query: cursors stay out)."""
        return f"{self.config.base_url.rstrip('/')}/{path}"

    def _unreachable(
        self, what: str, path: str, exc: BaseException, tries: int
    ) -> PlatformUnreachable:
        """No answer at all: the URL and the network's reason are what the operator fixes."""
        return PlatformUnreachable(
            PLATFORM, what, self._url(path), describe_failure(exc), tries=tries
        )

    async def _fetch_token(self) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret.reveal(),
            "scope": self.config.scope,
        }
        status, failure = 0, None
        for attempt in range(1, self.policy.attempts + 1):
            try:
                # Never follow a redirect with the secret in the body: aiohttp re-sends a
                # POST's body on 307/308, to whatever host the Location names.
                async with self.session.post(TOKEN_PATH, data=form, allow_redirects=False) as resp:
                    body = await resp.read()
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    self._refuse_token_redirect(resp)
                failure = None
            except (aiohttp.ClientError, TimeoutError) as exc:
                if is_tls_failure(exc):  # the same certificate is refused on every try
                    raise self._unreachable("token", TOKEN_PATH, exc, attempt) from exc
                status, body, retry_after, failure = 0, b"", None, exc
            if status == 200:
                token = _json_object(body, "token").get("access_token")
                if not isinstance(token, str) or not token:
                    reason = f"the token answer from {self._url(TOKEN_PATH)} has no access_token"
                    raise AuthError(PLATFORM, reason)
                self.token_fetches += 1
                return token
            if status in (400, 401, 403):
                raise AuthError(PLATFORM, _error_code(body) or f"HTTP {status}")
            if attempt < self.policy.attempts:
                await self._back_off("token", status, attempt, retry_after)
        tries = self.policy.attempts
        if failure is not None:
            raise self._unreachable("token", TOKEN_PATH, failure, tries) from failure
        what = f"token request to {self._url(TOKEN_PATH)}"
        raise PlatformUnavailable(PLATFORM, what, f"HTTP {status} on each of {tries} tries")

    # -- one governed, retried call -------------------------------------

    @asynccontextmanager
    async def _open(
        self, path: str, params: Mapping[str, str] | None, what: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A 200 response to ``GET path``, after whatever retries the policy allows.

        The governor's slot is held until the caller has read the body. A token that
        expired is renewed without spending a retry: a call that waits out long back-offs
        may outlive several tokens.
        """
        attempt = 1
        renewed = 0
        paced = 0
        yielded = False
        failure: BaseException | None = None
        while True:
            async with self.governor.slot():
                # The token is taken once the governor lets the call go: a call can wait
                # out a pause or a back-off longer than a token has left to live.
                token = await self._bearer()
                try:
                    async with self.session.get(
                        path,
                        params=params,
                        headers={"Authorization": f"Bearer {token}"},
                        allow_redirects=False,  # the bearer token stays with this origin
                    ) as resp:
                        self._refuse_redirect(what, path, resp)
                        if resp.status == 200:
                            yielded = True
                            yield resp
                            return
                        status = resp.status
                        body = await resp.read()
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        failure = None
                except (
                    aiohttp.ClientConnectionError,
                    aiohttp.ClientPayloadError,
                    TimeoutError,
                ) as exc:
                    if yielded:
                        raise  # the caller's body failed; it decides whether to start over
                    if is_tls_failure(exc):  # the same certificate is refused on every try
                        raise self._unreachable(what, path, exc, attempt) from exc
                    self._note_slow(what, path, exc, attempt)
                    # Lost before the answer came: GETs are idempotent, so try again.
                    status, body, retry_after, failure = 0, b"", None, exc
            code = _error_code(body)
            if status == 401 and code == "invalid_token" and renewed < self.policy.attempts:
                # Refused credentials fail at the token endpoint; the bound only stops a
                # server that refuses every fresh token.
                renewed += 1
                await self._bearer(stale=token)
                continue
            if status == 401:
                raise AuthError(PLATFORM, code or "unauthorized")
            if status == 404:
                raise NotFound(what)
            if status == 400 and code == "invalid_cursor":
                raise CursorRejected(what)
            if 400 <= status < 500 and status != 429:
                # 403, an API version the tenant does not serve, a bad parameter: the same
                # call gets the same answer, so it is refused at once with the reason.
                answer = f"HTTP {status} {code or ''}".strip()
                raise PlatformRefused(PLATFORM, f"{what} ({self._url(path)})", answer)
            if status == 429 and retry_after is not None and paced < PACED_RETRIES:
                # The source pacing us, not failing: it says when to come back, and a busy
                # client whose queued calls leave together may be asked more than once.
                # Obeyed without spending the failure budget (page_deadline still bounds it).
                paced += 1
                await self._back_off(what, status, attempt, retry_after)
                continue
            if status == 429 or status == 0 or status >= 500:
                if attempt >= self.policy.attempts:
                    if failure is not None:
                        raise self._unreachable(what, path, failure, attempt) from failure
                    raise PlatformUnavailable(
                        PLATFORM, f"{what} ({self._url(path)})", f"HTTP {status}"
                    )
                await self._back_off(what, status, attempt, retry_after)
                attempt += 1
                continue
            answer = f"HTTP {status} {code or ''}".strip()
            raise PlatformUnavailable(PLATFORM, f"{what} ({self._url(path)})", answer)

    def _refuse_token_redirect(self, resp: aiohttp.ClientResponse) -> None:
        """The secret is never sent across a redirect, whatever its target (exit 3)."""
        if 300 <= resp.status < 400:
            source = self._url(TOKEN_PATH)
            target = urljoin(source, resp.headers.get("Location", ""))
            reason = (
                f"token request to {source} redirected (HTTP {resp.status}) to {target};"
                " not followed, the client secret is never sent across a redirect"
                " (set base_url to the final address)"
            )
            raise AuthError(PLATFORM, reason)

    def _refuse_redirect(self, what: str, path: str, resp: aiohttp.ClientResponse) -> None:
        """A redirect is never followed: credentials must not leave for another address.

        Following one would also loop forever on a redirect loop; the operator points
        ``base_url`` at the final address instead.
        """
        if 300 <= resp.status < 400:
            target = urljoin(self._url(path), resp.headers.get("Location", ""))
            reason = (
                f"HTTP {resp.status} redirect from {self._url(path)} to {target} not followed"
                " (credentials are never sent across a redirect; set base_url to the final"
                " address)"
            )
            raise PlatformRefused(PLATFORM, what, reason)

    def _note_slow(self, what: str, path: str, exc: BaseException, attempt: int) -> None:
        """Say so at the first slow answer, not after every retry has waited in silence."""
        if isinstance(exc, TimeoutError) and attempt == 1:
            log.warning(
                "backdocket.slow_answer",
                platform=PLATFORM,
                what=what,
                url=self._url(path),
                timeout=self.config.request_timeout,
                page_deadline=self.config.page_deadline,
            )

    async def _back_off(
        self, what: str, status: int, attempt: int, retry_after: float | None
    ) -> None:
        if retry_after is not None and retry_after > self.policy.max_retry_after:
            raise PlatformUnavailable(PLATFORM, what, f"asked to wait {retry_after:.0f}s")
        await self.governor.back_off(
            self.policy, attempt, retry_after, status=status, what=what, rng=self._rng
        )

    async def _read(
        self,
        path: str,
        params: Mapping[str, str] | None,
        what: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[T]],
    ) -> T:
        """``consume`` a 200 answer's body; an answer cut mid-body is fetched again."""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                async with self._open(path, params, what) as resp:
                    return await consume(resp)
            except (
                aiohttp.ClientPayloadError,
                aiohttp.ClientConnectionError,
                TimeoutError,
            ) as exc:
                self._note_slow(what, path, exc, attempt)
                if attempt >= self.policy.attempts:
                    where = f"{what} ({self._url(path)})"
                    cause = f"connection lost: {describe_failure(exc)}"
                    raise PlatformUnavailable(PLATFORM, where, cause) from exc
                await self._back_off(what, 0, attempt, None)
        raise AssertionError("unreachable")

    async def _get_json(self, path: str, params: Mapping[str, str] | None, what: str) -> Any:
        """One JSON object, within ``page_deadline`` over every try."""
        deadline = self.config.page_deadline
        try:
            async with asyncio.timeout(deadline):
                body = await self._read(path, params, what, lambda resp: resp.read())
        except TimeoutError as exc:
            where = f"{what} ({self._url(path)})"
            reason = f"no complete answer within page_deadline {deadline:g}s"
            raise PlatformUnavailable(PLATFORM, where, reason) from exc
        return _json_object(body, what)

    async def _listing(
        self, collection: str, suffix: str, params: Mapping[str, str], what: str
    ) -> Any:
        """A listing or count of a collection; a 404 means the tenant has no such collection."""
        path = f"api/v1/{collection}{suffix}"
        try:
            return await self._get_json(path, params, what)
        except NotFound as exc:
            reason = (
                f"HTTP 404 at {self._url(path)}: the source has no collection {collection!r}"
                " (remove it from extract.collections)"
            )
            raise PlatformRefused(PLATFORM, f"collection {collection!r}", reason) from exc

    # -- the Source protocol ----------------------------------------------

    async def first_updated_at(self, collection: str) -> datetime | None:
        """``updated_at`` of the oldest record, or None when the collection is empty."""
        body = await self._listing(collection, "", {"limit": "1"}, f"{collection} first page")
        data = _list_field(body, "data", collection)
        if not data:
            return None
        first = data[0].get("updated_at") if isinstance(data[0], dict) else None
        when = parse_timestamp(first)
        if when is None:
            # Windows start at the epoch instead: slower to plan, nothing missed. The
            # record itself is journaled when its page is staged.
            log.warning("backdocket.bad_first_updated_at", platform=PLATFORM, collection=collection)
            return EPOCH
        return when

    async def count(self, collection: str, start: datetime, end: datetime | None) -> int:
        """Exact number of records updated in ``[start, end)``."""
        params = {"updated_since": _iso(start)}
        if end is not None:
            params["updated_before"] = _iso(end)
        body = await self._listing(collection, "/count", params, f"{collection} count")
        count = body.get("count")
        if not isinstance(count, int):
            raise PlatformUnavailable(PLATFORM, f"{collection} count", "no integer count")
        return count

    async def pages(self, window: Window, cursor: str | None) -> AsyncIterator[Page]:
        """Pages of ``window`` from ``cursor`` until the source says it is exhausted."""
        params = {"limit": str(self.config.page_size), "updated_since": _iso(window.start)}
        if window.end is not None:
            params["updated_before"] = _iso(window.end)
        seen = CursorGuard(window.collection, cursor)
        while True:
            if cursor is not None:
                params["cursor"] = cursor
            body = await self._listing(window.collection, "", params, window.collection)
            records = _list_field(body, "data", window.collection)
            cursor = _next_cursor(body, window.collection)
            if cursor is not None:
                seen.check(cursor)  # refused before its page is staged with a looping cursor
            yield Page(records=records, next_cursor=cursor)
            if cursor is None:
                return

    async def deletions(self, since: datetime) -> AsyncIterator[list[Record]]:
        """The deletion feed since ``since``, page by page."""
        params = {"since": _iso(since), "limit": str(self.config.page_size)}
        seen = CursorGuard("deletions")
        while True:
            body = await self._get_json("api/v1/deletions", params, "deletions")
            yield _list_field(body, "data", "deletions")
            cursor = _next_cursor(body, "deletions")
            if cursor is None:
                return
            seen.check(cursor)
            params["cursor"] = cursor

    async def record(self, collection: str, ident: str) -> Record:
        """One record as it is now (``GET /api/v1/{collection}/{id}``); NotFound once deleted."""
        what = f"{collection}/{ident}"
        record: Record = await self._get_json(f"api/v1/{what}", None, what)
        return record

    async def download(
        self, document_id: str, sink: Callable[[AsyncIterator[bytes]], Awaitable[T]]
    ) -> T:
        """Stream a document's bytes into ``sink``; a connection lost mid-body starts over.

        ``sink`` must discard what it got from a failed attempt (the blob store
        writes to a partial file it only publishes once verified).
        """
        what = f"documents/{document_id}/content"
        return await self._read(
            f"api/v1/{what}", None, what, lambda resp: sink(resp.content.iter_chunked(CHUNK_SIZE))
        )


class CursorGuard:
    """The cursors one window has followed: a source that hands one out again would
    serve the same pages forever, so the window stops with the cursor named."""

    def __init__(self, collection: str, start: str | None = None) -> None:
        self.collection = collection
        self._seen: set[str] = set() if start is None else {start}

    def check(self, cursor: str) -> None:
        """Refuse a next cursor this window already followed."""
        if cursor in self._seen:
            shown = cursor if len(cursor) <= SHOWN_CURSOR else cursor[:SHOWN_CURSOR] + "…"
            reason = f"the source repeated cursor {shown!r}; reading on would loop forever"
            raise PlatformRefused(PLATFORM, f"{self.collection} window", reason)
        self._seen.add(cursor)


def _next_cursor(body: dict[str, Any], what: str) -> str | None:
    cursor = body.get("next_cursor")
    if cursor is None or isinstance(cursor, str):
        return cursor
    reason = f"next_cursor is a {type(cursor).__name__}, not a string or null"
    raise PlatformRefused(PLATFORM, what, reason)


def parse_timestamp(value: object) -> datetime | None:
    """An ISO-8601 timestamp, naive ones read as UTC (the contract's zone); else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PlatformUnavailable(PLATFORM, what, "answer is not JSON") from exc
    if not isinstance(value, dict):
        raise PlatformUnavailable(PLATFORM, what, "answer is not a JSON object")
    return value


def _list_field(body: dict[str, Any], key: str, what: str) -> list[Record]:
    value = body.get(key)
    if not isinstance(value, list):
        raise PlatformUnavailable(PLATFORM, what, f"answer has no {key!r} list")
    return value


def _error_code(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = value.get("error") if isinstance(value, dict) else None
    return code if isinstance(code, str) else None
