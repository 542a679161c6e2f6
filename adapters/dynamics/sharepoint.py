"""The SharePoint REST calls that put a Dataverse record's files in its SharePoint folder.

With document management on, Dataverse keeps no file bytes: a
``sharepointdocumentlocation`` row names a folder, and the files live in SharePoint
(https://learn.microsoft.com/power-apps/developer/data-platform/sharepoint-document-management).
A file over the annotation limit therefore goes to SharePoint itself, through its REST
API (https://learn.microsoft.com/sharepoint/dev/sp-add-ins/working-with-folders-and-files-with-rest):

- ``POST <site>/_api/web/folders`` ``{"ServerRelativeUrl": …}`` makes the record's folder
  (an existing folder is answered as is, so a rerun is harmless);
- ``POST <site>/_api/web/GetFolderByServerRelativeUrl('<folder>')/Files/add(url='<name>',
  overwrite=true)`` with the bytes as the body, streamed from the blob store. Overwrite
  makes the upload idempotent: a retry, a rerun or a changed file lands on the same file.
- ``POST <site>/_api/web/GetFileByServerRelativeUrl('<file>')/recycle()`` moves a file a
  rollback removes to the Recycle Bin.

SharePoint wants a token for its own resource (``https://<tenant>.sharepoint.com/.default``),
and throttles with 429/503 and Retry-After ("Avoid getting throttled or blocked in
SharePoint Online", https://learn.microsoft.com/sharepoint/dev/general-development/
how-to-avoid-getting-throttled-or-blocked-in-sharepoint-online), so its calls go through a
governor of their own: its limits are not Dataverse's service protection.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import structlog
from yarl import URL

from adapters.errors import PlatformUnavailable
from ratelimit.backoff import RetryPolicy, parse_retry_after
from ratelimit.governor import Governor
from ratelimit.profiles import QuotaProfile

PLATFORM = "sharepoint"
API = "/_api/web/"
MAX_SIMPLE_UPLOAD_BYTES = 262_144_000
"""The largest request body SharePoint Online takes ("The server does not allow messages
larger than 262144000 bytes"); larger files need a chunked upload session
(StartUpload/ContinueUpload/FinishUpload), which crmlift does not do yet."""
PROFILE = QuotaProfile(platform=PLATFORM, rate=10.0, burst=20, concurrency=4)
"""SharePoint publishes no fixed rate, only that it throttles heavy callers with 429/503 +
Retry-After: a modest pace and few uploads at once, and Retry-After is always honoured."""
RETRIABLE = (0, 429, 500, 502, 503, 504)
HEADERS = {"Accept": "application/json;odata=nometadata"}
TokenSource = Callable[[str, str | None], Awaitable[str]]
"""(scope, stale token or None) → a bearer token for ``scope``."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SharePointConfig:
    """The site document management points at, and how to reach it."""

    site_url: str
    """The site's absolute URL (``https://firm.sharepoint.com/sites/crm``): the
    ``sharepointsite`` row's ``absoluteurl``."""
    api_url: str | None = None
    """Where REST calls go when not the site's own host (a proxy or the simulator)."""
    scope: str | None = None
    """The token scope; by default ``<the host calls go to>/.default``."""
    site_id: str | None = None
    """The ``sharepointsite`` row's id, when the operator gives it; else found by URL."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.site_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"sharepoint_site must be an absolute URL, not {self.site_url!r}")

    @property
    def site_path(self) -> str:
        """The site's server-relative URL (``/sites/crm``; ``""`` for a root site)."""
        return urlsplit(self.site_url).path.rstrip("/")

    @property
    def origin(self) -> str:
        """Scheme and host the calls go to."""
        parts = urlsplit(self.api_url or self.site_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token_scope(self) -> str:
        return self.scope or f"{self.origin}/.default"


class SharePointRefused(Exception):
    """SharePoint answered a call with an error it will answer again (not a throttle)."""

    def __init__(self, what: str, status: int, body: bytes) -> None:
        self.status = status
        self.code, self.message = error_parts(body, status)
        super().__init__(f"{PLATFORM}: {what}: HTTP {status} {self.code}: {self.message}")


def error_parts(body: bytes | None, status: int) -> tuple[str, str]:
    """SharePoint's error code and message: ``odata.error`` (nometadata) or ``error``
    (verbose), each with ``message.value``."""
    try:
        answer = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        answer = {}
    error: Any = (
        (answer.get("odata.error") or answer.get("error")) if isinstance(answer, dict) else None
    )
    if not isinstance(error, dict):
        return f"HTTP_{status}", (body or b"").decode("utf-8", "replace")[:300]
    message = error.get("message")
    text = message.get("value") if isinstance(message, dict) else message
    return str(error.get("code") or f"HTTP_{status}"), str(text or "")


def _literal(value: str) -> str:
    """A string argument of a SharePoint REST function: quotes doubled, percent-encoded."""
    return quote(value.replace("'", "''"), safe="/")


class SharePointClient:
    """Folders and files on one site, through a session and tokens the owner provides."""

    def __init__(
        self,
        config: SharePointConfig,
        session: Callable[[], aiohttp.ClientSession],
        token: TokenSource,
        policy: RetryPolicy,
        governor: Governor | None = None,
    ) -> None:
        self.config = config
        self._session = session
        self._token = token
        self.policy = policy
        self.governor = governor or Governor(PROFILE)
        self._folders: set[str] = set()
        self._rng = random.Random()

    async def ensure_folder(self, server_relative_url: str) -> None:
        """Make the folder (its parent must exist); an existing folder is fine."""
        key = server_relative_url.lower()
        if key in self._folders:
            return
        body = orjson.dumps({"ServerRelativeUrl": server_relative_url})
        await self._call(
            "POST",
            "folders",
            f"folder {server_relative_url}",
            body,
            {"Content-Type": "application/json"},
        )
        self._folders.add(key)

    async def add_file(self, folder: str, name: str, content: Path) -> dict[str, Any]:
        """Upload ``content`` as ``folder/name``, overwriting what is there; SharePoint's
        answer (``ServerRelativeUrl``, ``UniqueId``, ``Length`` …)."""
        tail = (
            f"GetFolderByServerRelativeUrl('{_literal(folder)}')"
            f"/Files/add(url='{_literal(name)}',overwrite=true)"
        )
        answer = await self._call(
            "POST",
            tail,
            f"upload {folder}/{name}",
            content,
            {"Content-Type": "application/octet-stream"},
        )
        found: dict[str, Any] = orjson.loads(answer)
        return found

    async def file_length(self, server_relative_url: str) -> int | None:
        """A file's size in bytes (SP.File ``Length``, ``GET GetFileByServerRelativeUrl
        ('<url>')``, https://learn.microsoft.com/sharepoint/dev/sp-add-ins/working-with-folders-and-files-with-rest);
        None when the file is not there (404 FileNotFoundException)."""
        tail = f"GetFileByServerRelativeUrl('{_literal(server_relative_url)}')"
        try:
            answer = await self._call("GET", tail, f"read {server_relative_url}", b"", {})
        except SharePointRefused as exc:
            if exc.status == 404:
                return None
            raise
        length = orjson.loads(answer).get("Length")
        return None if length is None else int(length)

    async def recycle_file(self, server_relative_url: str) -> bool:
        """Move a file to the site's Recycle Bin (``POST GetFileByServerRelativeUrl('<url>')
        /recycle()``, SP.File.recycle, https://learn.microsoft.com/previous-versions/office/
        sharepoint-visio/jj245789(v=office.15)): recoverable by hand, unlike DELETE. False
        when the file is already gone (404 FileNotFoundException): a rollback that resumes
        after a crash recycles nothing twice."""
        tail = f"GetFileByServerRelativeUrl('{_literal(server_relative_url)}')/recycle()"
        try:
            await self._call("POST", tail, f"recycle {server_relative_url}", b"", {})
        except SharePointRefused as exc:
            if exc.status == 404:
                return False
            raise
        log.info("sharepoint.recycled", platform=PLATFORM, file=server_relative_url)
        return True

    async def _call(
        self,
        method: str,
        tail: str,
        what: str,
        body: bytes | Path,
        headers: Mapping[str, str],
    ) -> bytes:
        """One call, retried as the policy allows on throttles, 5xx and lost connections
        (every call here is idempotent); a 401 renews the token once."""
        url = URL(f"{self.config.origin}{self.config.site_path}{API}{tail}", encoded=True)
        stale: str | None = None
        status = 0
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            async with self.governor.slot():
                token = await self._token(self.config.token_scope, stale)
                sent = {**HEADERS, **headers, "Authorization": f"Bearer {token}"}
                try:
                    status, answer, retry_after = await self._send(method, url, body, sent)
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                    status, answer = 0, b""
            if 200 <= status < 300:
                return answer
            if status == 401 and stale is None:
                stale = token
                continue
            if status in RETRIABLE and attempt < self.policy.attempts:
                await self.governor.back_off(
                    self.policy, attempt, retry_after, status=status, what=what, rng=self._rng
                )
                continue
            if status in RETRIABLE:
                break
            raise SharePointRefused(what, status, answer)
        raise PlatformUnavailable(PLATFORM, what, f"HTTP {status or 'connection lost'}")

    async def _send(
        self, method: str, url: URL, body: bytes | Path, headers: Mapping[str, str]
    ) -> tuple[int, bytes, float | None]:
        session = self._session()
        if isinstance(body, bytes):
            async with session.request(method, url, data=body, headers=headers) as resp:
                return resp.status, await resp.read(), _retry_after(resp)
        # A fresh stream per attempt, so a retry sends the whole file again.
        with body.open("rb") as stream:
            sized = {**headers, "Content-Length": str(body.stat().st_size)}
            async with session.request(method, url, data=stream, headers=sized) as resp:
                return resp.status, await resp.read(), _retry_after(resp)


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    return parse_retry_after(resp.headers.get("Retry-After"))
