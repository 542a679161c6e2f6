"""Wire helpers shared by the simulator's REST and Bulk handlers: errors, JSON, body limits.

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
