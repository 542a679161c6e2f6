"""The SharePoint site a simulated Dataverse org's document locations point at.

Dataverse keeps no document bytes for SharePoint integration: a
``sharepointdocumentlocation`` row only names a folder, and the files live in SharePoint
(https://learn.microsoft.com/power-apps/developer/data-platform/sharepoint-document-management).
So the simulator also answers the few SharePoint REST calls a loader needs, under the
configured site's path on the same server
(https://learn.microsoft.com/sharepoint/dev/sp-add-ins/working-with-folders-and-files-with-rest):

- ``POST <site>/_api/web/folders`` with ``{"ServerRelativeUrl": "/sites/x/lib/folder"}``
  creates a folder (its parent must exist; an existing folder is answered as is);
- ``POST <site>/_api/web/GetFolderByServerRelativeUrl('<folder>')/Files/add(url='<name>',
  overwrite=true)`` with the file's bytes as the body uploads a file;
- ``GET <site>/_api/web/GetFolderByServerRelativeUrl('<folder>')`` and ``.../Files`` read;
- ``GET <site>/_api/web/GetFileByServerRelativeUrl('<file>')`` reads a file's properties
  (SP.File: ``Length`` in bytes, ``TimeLastModified``…; "Working with files by using
  REST", same page);
- ``POST <site>/_api/web/GetFileByServerRelativeUrl('<file>')/recycle()`` moves a file to
  the site's Recycle Bin and answers the new recycle bin item's id (SP.File.recycle,
  https://learn.microsoft.com/previous-versions/office/sharepoint-visio/jj245789(v=office.15));
  a file not there is 404 FileNotFoundException, as every call on a missing file is.

Paths compare case-insensitively, as SharePoint URLs do. Errors use SharePoint's
``{"odata.error": {"code", "message": {"lang", "value"}}}`` shape.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from adapters.dynamics.sim_store import DataverseError

SHAREPOINT_API = "_api/web/"
FORBIDDEN_NAME_CHARACTERS = frozenset('"*:<>?/\\|')
"""Characters a SharePoint file or folder name cannot contain
(https://support.microsoft.com/office/restrictions-and-limitations-in-onedrive-and-sharepoint-64883a5d-228e-48f5-b3d2-eb39e07630fa)."""
NOT_FOUND_CODE = "-2147024894, System.IO.FileNotFoundException"
EXISTS_CODE = "-2130575257, Microsoft.SharePoint.SPException"
BAD_REQUEST_CODE = "-1, Microsoft.SharePoint.Client.InvalidClientQueryException"
UNAUTHORIZED_CODE = "-2147024891, System.UnauthorizedAccessException"

_FOLDER_CALL = re.compile(
    r"^GetFolderByServerRelativeUrl\('(?P<folder>(?:[^']|'')*)'\)(?P<rest>/.*)?$"
)
_FILE_RECYCLE = re.compile(
    r"^GetFileByServerRelativeUrl\('(?P<file>(?:[^']|'')*)'\)/recycle\(\)$", re.IGNORECASE
)
_FILE_READ = re.compile(r"^GetFileByServerRelativeUrl\('(?P<file>(?:[^']|'')*)'\)$", re.IGNORECASE)
_FILES_ADD = re.compile(
    r"^/Files/add\(url='(?P<name>(?:[^']|'')*)'\s*,\s*overwrite=(?P<overwrite>true|false)\)$",
    re.IGNORECASE,
)


class SharePointError(DataverseError):
    """A SharePoint REST refusal: HTTP status plus SharePoint's own error code, answered
    in SharePoint's error shape."""

    def body(self) -> dict[str, Any]:
        return {
            "odata.error": {"code": self.code, "message": {"lang": "en-US", "value": self.message}}
        }


@dataclass(frozen=True, slots=True)
class SharePointFile:
    """One uploaded file; the simulator keeps its bytes so tests can compare them."""

    server_relative_url: str
    content: bytes
    modified: str
    unique_id: str

    @property
    def name(self) -> str:
        return self.server_relative_url.rsplit("/", 1)[-1]

    def metadata(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "ServerRelativeUrl": self.server_relative_url,
            "Length": str(len(self.content)),
            "TimeLastModified": self.modified,
            "UniqueId": self.unique_id,
            "Exists": True,
        }


@dataclass
class SharePointSite:
    """A site collection's folders and files, keyed by lower-cased server-relative URL."""

    url: str
    folders: dict[str, str] = field(default_factory=dict)
    files: dict[str, SharePointFile] = field(default_factory=dict)
    recycle_bin: dict[str, SharePointFile] = field(default_factory=dict)
    """Recycled files by recycle bin item id."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"sharepoint_site must be an absolute http(s) URL, not {self.url!r}")
        self.folders[self.path.lower()] = self.path

    @property
    def path(self) -> str:
        """The site's server-relative URL (``/sites/matters``; ``""`` for the root site)."""
        return urlsplit(self.url).path.rstrip("/")

    def add_library(self, name: str) -> str:
        """A document library at the site's root (what enabling document management makes)."""
        path = f"{self.path}/{name}"
        self.folders.setdefault(path.lower(), path)
        return path

    def add_folder(self, server_relative_url: str) -> dict[str, Any]:
        """Create one folder under an existing one; an existing folder is returned as is."""
        path = self._inside(server_relative_url)
        parent, _, name = path.rpartition("/")
        _check_name(name)
        if parent.lower() not in self.folders:
            raise SharePointError(404, NOT_FOUND_CODE, f"File Not Found. (folder '{parent}')")
        self.folders.setdefault(path.lower(), path)
        return self.folder(path)

    def folder(self, server_relative_url: str) -> dict[str, Any]:
        path = self._existing(server_relative_url)
        return {"Name": path.rsplit("/", 1)[-1], "ServerRelativeUrl": path, "Exists": True}

    def add_file(self, folder: str, name: str, content: bytes, overwrite: bool) -> SharePointFile:
        """Upload ``content`` as ``name`` in ``folder``; an existing name needs overwrite."""
        path = f"{self._existing(folder)}/{name}"
        _check_name(name)
        existing = self.files.get(path.lower())
        if existing is not None and not overwrite:
            raise SharePointError(400, EXISTS_CODE, f"A file with the name {path} already exists.")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        unique = existing.unique_id if existing is not None else str(uuid.uuid4())
        stored = SharePointFile(path, content, stamp, unique)
        self.files[path.lower()] = stored
        return stored

    def recycle_file(self, server_relative_url: str) -> str:
        """Move a file to the Recycle Bin; the recycle bin item's id."""
        stored = self.files.pop(self._inside(server_relative_url).lower(), None)
        if stored is None:
            raise SharePointError(404, NOT_FOUND_CODE, f"File Not Found. ({server_relative_url})")
        item = str(uuid.uuid4())
        self.recycle_bin[item] = stored
        return item

    def file(self, server_relative_url: str) -> SharePointFile:
        stored = self.files.get(self._inside(server_relative_url).lower())
        if stored is None:
            raise SharePointError(404, NOT_FOUND_CODE, f"File Not Found. ({server_relative_url})")
        return stored

    def files_in(self, folder: str) -> list[SharePointFile]:
        prefix = self._existing(folder).lower() + "/"
        return [
            f
            for key, f in self.files.items()
            if key.startswith(prefix) and "/" not in key[len(prefix) :]
        ]

    def state(self) -> dict[str, Any]:
        """Folders and files (size and SHA-256), for ``/_sim/state`` and tests."""
        return {
            "url": self.url,
            "folders": sorted(self.folders.values()),
            "files": {
                f.server_relative_url: {
                    "size": len(f.content),
                    "sha256": hashlib.sha256(f.content).hexdigest(),
                }
                for f in self.files.values()
            },
        }

    def _inside(self, server_relative_url: str) -> str:
        path = "/" + server_relative_url.strip().strip("/")
        if path.lower() != self.path.lower() and not path.lower().startswith(
            self.path.lower() + "/"
        ):
            raise SharePointError(
                400,
                BAD_REQUEST_CODE,
                f"Server relative urls must start with the site's {self.path}.",
            )
        return path

    def _existing(self, server_relative_url: str) -> str:
        path = self.folders.get(self._inside(server_relative_url).lower())
        if path is None:
            raise SharePointError(404, NOT_FOUND_CODE, f"File Not Found. ({server_relative_url})")
        return path


def _check_name(name: str) -> None:
    bad = sorted({c for c in name if c in FORBIDDEN_NAME_CHARACTERS})
    if not name.strip() or bad or name != name.strip() or name.endswith("."):
        shown = " ".join(bad) or "leading/trailing spaces or a final '.'"
        raise SharePointError(
            400, BAD_REQUEST_CODE, f"The name '{name}' is not valid in SharePoint ({shown})."
        )


def sharepoint_call(
    site: SharePointSite, method: str, tail: str, body: bytes, payload: Any
) -> tuple[int, dict[str, Any]]:
    """Answer one call under ``<site>/_api/web/``: (status, JSON body)."""
    if tail == "folders":
        if method != "POST":
            raise SharePointError(405, BAD_REQUEST_CODE, "Use POST to add a folder.")
        url = payload.get("ServerRelativeUrl") if isinstance(payload, dict) else None
        if not isinstance(url, str):
            raise SharePointError(400, BAD_REQUEST_CODE, "ServerRelativeUrl is required.")
        return 201, site.add_folder(url)
    recycled = _FILE_RECYCLE.match(tail)
    if recycled is not None:
        if method != "POST":
            raise SharePointError(405, BAD_REQUEST_CODE, "Use POST to recycle a file.")
        # nometadata answers a primitive as {"value": …} (OData JSON format).
        return 200, {"value": site.recycle_file(recycled.group("file").replace("''", "'"))}
    read = _FILE_READ.match(tail)
    if read is not None and method == "GET":
        return 200, site.file(read.group("file").replace("''", "'")).metadata()
    match = _FOLDER_CALL.match(tail)
    if match is None:
        raise SharePointError(404, BAD_REQUEST_CODE, f"The simulator does not serve '{tail}'.")
    folder, rest = match.group("folder").replace("''", "'"), match.group("rest") or ""
    if rest == "" and method == "GET":
        return 200, site.folder(folder)
    if rest.lower() == "/files" and method == "GET":
        return 200, {"value": [f.metadata() for f in site.files_in(folder)]}
    add = _FILES_ADD.match(rest)
    if add is not None and method == "POST":
        name = add.group("name").replace("''", "'")
        stored = site.add_file(folder, name, body, add.group("overwrite").lower() == "true")
        return 200, stored.metadata()
    raise SharePointError(404, BAD_REQUEST_CODE, f"The simulator does not serve {method} '{tail}'.")
