"""A platform-agnostic quota simulator: one endpoint that enforces a ``QuotaProfile``.

Where a platform's quota matters more than its wire — Freshsales' hourly and
per-minute limits per account (destinations.md §4), or any profile an operator
writes — this server stands in for it. ``POST /api/records`` with a bearer token
(``Authorization: Bearer <principal>``; Freshsales' ``Token token=<key>`` is read
the same way) is one request of the principal the token names; its JSON body is a
record or a list of records, each one operation. The request is admitted or
refused by :class:`ratelimit.enforce.QuotaEnforcer` — the very limits the client's
governor keeps under, built from the same profile, ``time_scale`` included. A
refusal is ``429`` with ``Retry-After`` in wall seconds (decimal, so a time-scaled
limit is not blurred by whole-second rounding) and a body naming the spent limit.
``GET /_sim/state`` counts admitted and throttled requests per principal.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from adapters.simserver import admin_gate, new_admin_token, serve_app
from ratelimit.enforce import QuotaEnforcer
from ratelimit.limits import Call
from ratelimit.profiles import QuotaProfile

RECORDS_PATH = "/api/records"


@dataclass(frozen=True)
class QuotaSimSettings:
    """What the simulated platform enforces and how it behaves."""

    profile: QuotaProfile
    """The quota, per principal, at the profile's ``time_scale``."""
    principals: frozenset[str] | None = None
    """Tokens the server accepts (each is its own principal); None accepts any."""
    execution_ms_per_operation: float = 0.0
    """Platform milliseconds of server time one operation costs, charged after the
    request against the profile's execution window (when it sets one)."""
    latency_seconds: float = 0.0
    """Wall seconds each admitted request takes to answer."""
    admin_token: str = field(default_factory=new_admin_token)
    """What ``/_sim/state`` requires in ADMIN_HEADER (see ``adapters.simserver``)."""

    def __post_init__(self) -> None:
        if self.execution_ms_per_operation < 0 or self.latency_seconds < 0:
            raise ValueError("execution time and latency cannot be negative")


class QuotaSim:
    """One platform's quota behind one endpoint; ``app()`` serves it."""

    def __init__(
        self, settings: QuotaSimSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.enforcer = QuotaEnforcer(settings.profile, clock)
        self.operations: Counter[str] = Counter()
        """Operations admitted, per principal (the enforcer counts requests)."""
        self.unauthorized = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[admin_gate(self.settings.admin_token)])
        app.router.add_post(RECORDS_PATH, self._records)
        app.router.add_get("/_sim/state", self._state)
        return app

    def _principal(self, request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "token" and value.startswith("token="):
            value = value.removeprefix("token=")
        elif scheme.lower() != "bearer":
            return None
        allowed = self.settings.principals
        if not value or (allowed is not None and value not in allowed):
            return None
        return value

    async def _records(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        if principal is None:
            self.unauthorized += 1
            return _json({"errors": {"code": 401, "message": "Login failed"}}, 401)
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _json({"errors": {"code": 400, "message": "Malformed JSON"}}, 400)
        operations = len(body) if isinstance(body, list) else 1
        refusal = self.enforcer.admit(principal, Call(operations=max(1, operations)))
        if refusal is not None:
            message = f"You have exceeded the limit of {refusal.limit}"
            response = _json({"errors": {"code": 429, "message": message}}, 429)
            response.headers["Retry-After"] = retry_after_header(refusal.retry_after)
            return response
        self.operations[principal] += operations
        try:
            if self.settings.latency_seconds:
                await asyncio.sleep(self.settings.latency_seconds)
            return _json({"received": operations}, 200)
        finally:
            spent = self.settings.execution_ms_per_operation * operations
            self.enforcer.charge(principal, spent)

    async def _state(self, request: web.Request) -> web.Response:
        payload: dict[str, Any] = {
            "profile": self.settings.profile.platform,
            "time_scale": self.settings.profile.time_scale,
            "unauthorized": self.unauthorized,
            "principals": {
                name: {
                    "admitted": state.admitted,
                    "throttled": sum(state.refused.values()),
                    "operations": self.operations[name],
                    "refused_by": state.refused,
                    "used": self.enforcer.used(name),
                }
                for name, state in self.enforcer.principals.items()
            },
        }
        return _json(payload, 200)


def retry_after_header(seconds: float) -> str:
    """Wall seconds, rounded up to the millisecond, never 0."""
    return f"{max(0.001, math.ceil(seconds * 1000 - 1e-6) / 1000):.3f}"


def _json(payload: Any, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def serve(sim: QuotaSim, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start ``sim`` on ``host:port`` (0: any free port); the caller cleans up the runner."""
    return await serve_app(sim.app(), host, port)
