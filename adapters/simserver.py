"""Start a simulator's aiohttp app on loopback: the one way every simulator serves."""

from __future__ import annotations

import ipaddress
import secrets
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

ADMIN_HEADER = "X-Crmlift-Sim-Admin"
"""The header carrying a simulator's admin token; every ``/_sim`` endpoint requires it."""
ADMIN_TOKEN_ENV = "CRMLIFT_SIM_ADMIN_TOKEN"
"""Where ``crmlift sim`` reads the admin token; unset, a random one closes ``/_sim``."""
SIM_PREFIX = "/_sim"

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_admin_token() -> str:
    """A fresh admin token: nobody can read a simulator's debug state by guessing."""
    return secrets.token_urlsafe(32)


def admin_gate(token: str) -> Middleware:
    """Middleware: ``/_sim`` answers only a request carrying ``token`` in ADMIN_HEADER.

    The debug endpoints dump every record the simulator holds, client data included;
    no real platform has such a door, so it stays shut without the admin's token.
    """

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == SIM_PREFIX or request.path.startswith(SIM_PREFIX + "/"):
            given = request.headers.get(ADMIN_HEADER, "")
            if not token or not secrets.compare_digest(given.encode(), token.encode()):
                return web.json_response(
                    {"error": "admin_required", "message": f"send {ADMIN_HEADER}"}, status=401
                )
        return await handler(request)

    return gate


def is_loopback(host: str) -> bool:
    """True when ``host`` binds loopback only; a name other than localhost counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str) -> None:
    """Say loudly, on stderr and in the log, that a simulator listens beyond this machine.

    A simulator's secrets are demo secrets and it holds client-shaped data; binding
    ``0.0.0.0`` by mistake puts both on the network.
    """
    if is_loopback(host):
        return
    print(
        f"WARNING: the simulator listens on {host}, reachable from other machines; "
        "its demo credentials and data are exposed. Use --host 127.0.0.1 unless you mean it.",
        file=sys.stderr,
        flush=True,
    )
    log.warning("sim.exposed_bind", host=host)


async def serve_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0: any free port); return the runner and base URL.

    The caller cleans up the runner; if the port cannot be bound, nothing is left open.
    """
    warn_if_exposed(host)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://{shown_host}:{bound_port}"


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from a PEM certificate (and key), or None to serve plain HTTP.

    Real platforms serve HTTPS only, and their official SDKs refuse anything else.
    """
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def sim_state(url: str, token: str) -> dict[str, Any]:
    """A simulator's ``/_sim/state`` (its records and request counters), behind the admin
    token: what the benches and demos read as the platform's own count."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/_sim/state", headers={ADMIN_HEADER: token}) as resp,
    ):
        resp.raise_for_status()
        state: dict[str, Any] = orjson.loads(await resp.read())
        return state
