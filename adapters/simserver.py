"""Start a simulator's aiohttp app on loopback: the one way every simulator serves."""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web


async def serve_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0: any free port); return the runner and base URL.

    The caller cleans up the runner; if the port cannot be bound, nothing is left open.
    """
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
