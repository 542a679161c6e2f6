"""Wire helpers of the Dataverse simulator: results, OData query options, batch references.

Separate from the server so the request path and ``$batch`` parts share them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from aiohttp import web

from adapters.dynamics.sim_store import (
    ERR_BAD_PROPERTY,
    ERR_BAD_VALUE,
    DataverseError,
    Table,
    literal,
    unknown_property,
)

API_ROOT = "/api/data/v9.2/"
"""Web API base path (destinations.md §2.2)."""
ENTITY_PATH = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>.*)\))?(?P<rest>/.*)?$")
FILTER_TERM = re.compile(
    r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+eq\s+(?P<value>'(?:[^']|'')*'|[^\s)]+)\s*(?:and\s+|$)",
    re.IGNORECASE,
)
CONTENT_ID_REF = re.compile(r"^\$([A-Za-z0-9_.-]+)(/.*)?$")


@dataclass(slots=True)
class Result:
    """One answer, before it becomes an aiohttp response or a ``$batch`` part."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    entity: str = ""
    """``entityset(id)`` of the row written, for ``$n`` references in a changeset."""


def json_result(payload: Any, status: int = 200) -> Result:
    headers = {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0"}
    return Result(status, headers, orjson.dumps(payload))


def error_result(error: DataverseError) -> Result:
    return json_result(error.body(), error.status)


def to_web(result: Result) -> web.Response:
    return web.Response(status=result.status, headers=result.headers, body=result.body)


def identity_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An error in the Microsoft identity platform's shape (destinations.md §2.1)."""
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
    }
    return web.json_response(payload, status=status, dumps=lambda v: orjson.dumps(v).decode())


def prefers(headers: Mapping[str, str], preference: str) -> bool:
    """Whether a ``Prefer`` header asks for ``preference`` (``name`` or ``name=value``)."""
    tokens = {
        part.strip().replace('"', "").lower()
        for part in (header_value(headers, "Prefer") or "").split(",")
    }
    return preference in tokens or any(token.startswith(preference + "=") for token in tokens)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def lookup_name(name: str) -> str:
    return name.removeprefix("_").removesuffix("_value")


def parse_filter(raw: str | None) -> dict[str, Any]:
    """The ``a eq 'x' and b eq 1`` subset of ``$filter`` a loader needs for read-back."""
    if raw is None:
        return {}
    terms: dict[str, Any] = {}
    position = 0
    while position < len(raw):
        match = FILTER_TERM.match(raw, position)
        if match is None:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"The simulator supports only 'eq' and 'and' in $filter: {raw}",
            )
        terms[match.group("name")] = literal(match.group("value"))
        position = match.end()
    return terms


def select_columns(table: Table, query: Mapping[str, str]) -> list[str] | None:
    raw = query.get("$select")
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in table.attributes and lookup_name(name) not in table.attributes:
            raise unknown_property(table, name)
    return names


def select_metadata(metadata: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    raw = query.get("$select")
    if raw is None:
        return metadata
    names = {name.strip() for name in raw.split(",")}
    return {k: v for k, v in metadata.items() if k in names}


def parse_top(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise DataverseError(400, ERR_BAD_VALUE, f"Invalid value '{raw}' for $top.")
    return int(raw)


def batch_target(url: str, references: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Path under the service root and query of a batch part's URL, ``$n`` resolved."""
    reference = CONTENT_ID_REF.match(url)
    if reference is not None:
        url = resolve_reference(reference.group(1), references) + (reference.group(2) or "")
    parts = urlsplit(url)
    path = unquote(parts.path)
    if API_ROOT in path:
        path = path.split(API_ROOT, 1)[1]
    return path.lstrip("/"), dict(parse_qsl(parts.query, keep_blank_values=True))


def resolve_reference(content_id: str, references: Mapping[str, str]) -> str:
    if content_id not in references:
        raise DataverseError(
            400,
            ERR_BAD_VALUE,
            f"Content-ID Reference: '${content_id}' does not exist in the batch context.",
        )
    return references[content_id]


def substitute_references(body: bytes, references: Mapping[str, str]) -> bytes:
    """``"$n"`` string values of a JSON body (binds, chiefly) become the entity's path."""
    if b'"$' not in body:
        return body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(payload, dict):
        return body
    for name, value in payload.items():
        if isinstance(value, str) and (match := CONTENT_ID_REF.match(value)):
            payload[name] = (
                "/" + resolve_reference(match.group(1), references) + (match.group(2) or "")
            )
    return orjson.dumps(payload)


def entity_path(result: Result) -> str:
    """``entityset(id)`` of what a request wrote, for later ``$n`` references."""
    if not result.entity:
        raise DataverseError(400, ERR_BAD_VALUE, "Only writes can be referenced by Content-ID.")
    return result.entity
