"""OData ``$batch`` multipart/mixed bodies for the Dataverse Web API (destinations.md §2.3).

Pure functions, shared by the simulator and the client, so both sides agree on the
wire byte for byte. Dataverse only documents the multipart form (no JSON batches).

Request shape: ``encode_batch`` takes a list of groups; a group is a changeset
(atomic, parts carry ``Content-ID``) unless it is a single GET, which goes out as a
top-level part because changesets may not hold GETs. ``parse_batch_request`` returns
the same shape (a top-level non-GET comes back as a one-request changeset, which
Dataverse executes identically).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

CRLF = b"\r\n"
HTTP_VERSION = "HTTP/1.1"
MAX_BATCH_REQUESTS = 1000
"""Requests per ``$batch`` (destinations.md §2.3); more is a 400."""

_PART_HEADERS = (("Content-Type", "application/http"), ("Content-Transfer-Encoding", "binary"))
_BOUNDARY_PARAM = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(rb"\r?\n")


class BatchFormatError(ValueError):
    """A body that is not a well-formed OData multipart batch."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One operation inside a batch; ``url`` is as written (absolute, relative or ``$n``)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_id: str | None = None

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """One answer inside a batch response; ``content_id`` echoes the request's."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_id: str | None = None

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return _header(self.headers, name)


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart Content-Type, quoted or not."""
    if not content_type.lower().lstrip().startswith("multipart/mixed"):
        raise BatchFormatError(f"not multipart/mixed: {content_type!r}")
    match = _BOUNDARY_PARAM.search(content_type)
    if match is None:
        raise BatchFormatError(f"no boundary in {content_type!r}")
    return match.group(1) or match.group(2)


def _multipart(boundary: str, parts: Sequence[bytes]) -> bytes:
    delimiter = b"--" + boundary.encode()
    out = bytearray()
    for part in parts:
        out += delimiter + CRLF + part + CRLF
    out += delimiter + b"--" + CRLF
    return bytes(out)


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    """The parts between ``--boundary`` lines; the line break before a delimiter is not content."""
    delimiter = re.compile(
        rb"(?:\r?\n|^)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r?\n|$)"
    )
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            return parts
        start = match.end()
    raise BatchFormatError(f"multipart body lacks the closing --{boundary}--")


def _headers_block(headers: Sequence[tuple[str, str]] | Mapping[str, str]) -> bytes:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return b"".join(f"{name}: {value}".encode() + CRLF for name, value in pairs)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in _LINE_BREAK.split(block):
        if not line:
            continue
        name, colon, value = line.decode("utf-8").partition(":")
        if not colon:
            raise BatchFormatError(f"malformed header line {line!r}")
        headers[name.strip()] = value.strip()
    return headers


def _head_and_body(part: bytes) -> tuple[bytes, bytes]:
    match = _BLANK_LINE.search(part)
    if match is None:
        return part, b""
    return part[: match.start()], part[match.end() :]


def _http_part(
    content_id: str | None, start_line: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    part_headers = list(_PART_HEADERS)
    if content_id is not None:
        part_headers.append(("Content-ID", content_id))
    return (
        _headers_block(part_headers)
        + CRLF
        + start_line.encode()
        + CRLF
        + _headers_block(headers)
        + CRLF
        + (body or b"")
    )


def _changeset_boundary(boundary: str, index: int, prefix: str) -> str:
    suffix = boundary.split("_", 1)[-1]
    return f"{prefix}_{suffix}_{index}"


def _is_top_level(group: Sequence[BatchRequest]) -> bool:
    return len(group) == 1 and group[0].method.upper() == "GET"


def encode_batch(changesets: Sequence[Sequence[BatchRequest]], boundary: str) -> tuple[str, bytes]:
    """``(Content-Type, body)`` for ``POST $batch``; see the module docstring for grouping."""
    parts: list[bytes] = []
    for index, group in enumerate(changesets):
        if not group:
            raise ValueError("an empty changeset cannot be encoded")
        if _is_top_level(group):
            request = group[0]
            parts.append(
                _http_part(None, f"GET {request.url} {HTTP_VERSION}", request.headers, request.body)
            )
            continue
        inner_boundary = _changeset_boundary(boundary, index, "changeset")
        inner = []
        for request in group:
            if request.method.upper() == "GET":
                raise ValueError("a changeset cannot hold a GET (destinations.md §2.3)")
            line = f"{request.method.upper()} {request.url} {HTTP_VERSION}"
            inner.append(_http_part(request.content_id, line, request.headers, request.body))
        head = _headers_block([("Content-Type", f"multipart/mixed; boundary={inner_boundary}")])
        parts.append(head + CRLF + _multipart(inner_boundary, inner))
    return f"multipart/mixed; boundary={boundary}", _multipart(boundary, parts)


def _parse_request_part(part: bytes, in_changeset: bool) -> BatchRequest:
    outer_head, http = _head_and_body(part)
    outer = _parse_headers(outer_head)
    head, body = _head_and_body(http)
    lines = _LINE_BREAK.split(head, maxsplit=1)
    words = lines[0].decode("utf-8").split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise BatchFormatError(f"malformed request line {lines[0]!r}")
    method = words[0].upper()
    if in_changeset and method == "GET":
        raise BatchFormatError("a changeset cannot hold a GET")
    headers = _parse_headers(lines[1]) if len(lines) > 1 else {}
    return BatchRequest(method, words[1], headers, body or None, _header(outer, "Content-ID"))


def parse_batch_request(content_type: str, body: bytes) -> list[list[BatchRequest]]:
    """The groups of a ``$batch`` request body, changesets as lists in order."""
    groups: list[list[BatchRequest]] = []
    for part in _split_multipart(body, boundary_of(content_type)):
        head, rest = _head_and_body(part)
        part_type = _header(_parse_headers(head), "Content-Type") or ""
        if part_type.lower().startswith("multipart/mixed"):
            inner = _split_multipart(rest, boundary_of(part_type))
            if not inner:
                raise BatchFormatError("empty changeset")
            groups.append([_parse_request_part(p, in_changeset=True) for p in inner])
        elif part_type.lower().startswith("application/http"):
            groups.append([_parse_request_part(part, in_changeset=False)])
        else:
            raise BatchFormatError(f"unexpected batch part type {part_type!r}")
    return groups


def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"{HTTP_VERSION} {status} {reason}"


def encode_batch_response(
    groups: Sequence[Sequence[BatchResponse] | BatchResponse], boundary: str
) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of a batch answer.

    A list becomes a ``changesetresponse_`` part (a changeset that succeeded); a bare
    response is a top-level part (a GET's answer, or the one error of a failed changeset).
    """
    parts: list[bytes] = []
    for index, group in enumerate(groups):
        if isinstance(group, BatchResponse):
            parts.append(
                _http_part(group.content_id, _status_line(group.status), group.headers, group.body)
            )
            continue
        inner_boundary = _changeset_boundary(boundary, index, "changesetresponse")
        inner = [_http_part(r.content_id, _status_line(r.status), r.headers, r.body) for r in group]
        head = _headers_block([("Content-Type", f"multipart/mixed; boundary={inner_boundary}")])
        parts.append(head + CRLF + _multipart(inner_boundary, inner))
    return f"multipart/mixed; boundary={boundary}", _multipart(boundary, parts)


def _parse_response_part(part: bytes) -> BatchResponse:
    outer_head, http = _head_and_body(part)
    outer = _parse_headers(outer_head)
    head, body = _head_and_body(http)
    lines = _LINE_BREAK.split(head, maxsplit=1)
    words = lines[0].decode("utf-8").split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        raise BatchFormatError(f"malformed status line {lines[0]!r}")
    headers = _parse_headers(lines[1]) if len(lines) > 1 else {}
    return BatchResponse(int(words[1]), headers, body or None, _header(outer, "Content-ID"))


def parse_batch_response(content_type: str, body: bytes) -> list[BatchResponse]:
    """Every answer of a batch response in order, changeset members flattened."""
    return [r for group in parse_batch_groups(content_type, body) for r in group]


def parse_batch_groups(content_type: str, body: bytes) -> list[list[BatchResponse]]:
    """The answers of a batch response by group, in order: a changeset that succeeded is
    its members' answers; a top-level part (a GET's answer, or the one error a failed
    changeset answers with) is a group of one. The reader of a multi-request changeset
    needs the grouping: a failed one answers once, not once per request."""
    groups: list[list[BatchResponse]] = []
    for part in _split_multipart(body, boundary_of(content_type)):
        head, rest = _head_and_body(part)
        part_type = _header(_parse_headers(head), "Content-Type") or ""
        if part_type.lower().startswith("multipart/mixed"):
            inner = _split_multipart(rest, boundary_of(part_type))
            groups.append([_parse_response_part(p) for p in inner])
        elif part_type.lower().startswith("application/http"):
            groups.append([_parse_response_part(part)])
        else:
            raise BatchFormatError(f"unexpected batch part type {part_type!r}")
    return groups
