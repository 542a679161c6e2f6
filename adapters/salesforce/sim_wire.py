"""Wire helpers shared by the simulator's REST and Bulk handlers: errors, JSON, body limits,
and the two ways an injected fault loses an answer (a cut body, a dropped connection).

Salesforce answers every REST and Bulk failure with the same JSON array of
``{"message", "errorCode"}`` objects; keeping that in one place keeps the handlers honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from adapters.salesforce.sim_store import RecordError

MAX_JSON_BODY = 52_428_800
"""Largest JSON request body: 50 MB (destinations.md §1.8 "50 MB text")."""

NOT_FOUND_MESSAGE = "The requested resource does not exist"

SF_USER = web.RequestKey("sf_user", str)
"""The authenticated user's id, set by the gate for every /services/data call."""

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
"""Methods that may change the org; every other method only reads."""

ROW_LOCK_CODE = "UNABLE_TO_LOCK_ROW"
ROW_LOCK_MESSAGE = "unable to obtain exclusive access to this record"


def row_lock_error() -> RecordError:
    """What a record gets when another transaction holds its lock: retry it later.

    In a Collections result ``{"statusCode": "UNABLE_TO_LOCK_ROW", "message": ...,
    "fields": []}``; in a Bulk API 2.0 ``sf__Error`` cell
    ``UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--``.
    """
    return RecordError(ROW_LOCK_CODE, ROW_LOCK_MESSAGE)


class ApiError(Exception):
    """A refusal of the whole request: HTTP status plus Salesforce's error array."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    @classmethod
    def of(cls, error: RecordError, status: int = 400) -> ApiError:
        """A record-level error refusing a single-record REST call."""
        return cls(status, error.code, error.message, error.fields)

    def response(self) -> web.Response:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            entry["fields"] = list(self.fields)
        return json_response([entry], self.status)


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def read_json(request: web.Request, limit: int = MAX_JSON_BODY) -> Any:
    """The request's JSON body, or JSON_PARSER_ERROR as Salesforce words it."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Maximum size of request reached. Maximum size of request is {limit} bytes.",
        )
    raw = await request.read()
    if len(raw) > limit:
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Maximum size of request reached. Maximum size of request is {limit} bytes.",
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {error}") from error


async def read_object(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """A JSON body that must be an object."""
    body = await read_json(request, limit)
    if not isinstance(body, dict):
        raise ApiError(
            400, "JSON_PARSER_ERROR", "Cannot deserialize instance of object from array value"
        )
    return body


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection before a byte of the answer is sent.

    The client sees ``aiohttp.ServerDisconnectedError``. Note that aiohttp's client
    silently resends an idempotent request (GET, PUT, DELETE...) once when a reused
    keep-alive connection drops like this, so the caller may never see the drop.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def cut_answer(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send ``response``'s status, headers and about half its body, then close the connection.

    The client gets the real status and a ``Content-Length`` it never receives, so reading
    the body raises ``aiohttp.ClientPayloadError``. An answer without a body (201 on a
    Bulk upload, 204 on a delete) has nothing to cut: the connection drops before it.
    """
    body = response.body if isinstance(response, web.Response) else None
    if response.prepared or not isinstance(body, bytes) or not body:
        return drop_connection(request)
    partial = web.StreamResponse(status=response.status, headers=response.headers)
    partial.content_length = len(body)
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return partial
