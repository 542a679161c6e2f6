"""An operator points crmlift at a source it cannot reach: the error names the URL and why.

"token failed after retries" tells nobody whether the address, the network or the
certificate is wrong. Each case here is a real network failure on loopback (or the
reserved ``.invalid`` TLD, RFC 6761 §6.4, which resolvers refuse without sending a query):
a closed port, a name that does not resolve, a certificate nobody trusts, a server that
cuts every connection or never answers.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trustme

from adapters.backdocket.client import BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import BackDocketSim, SimSettings
from adapters.backdocket.tenant import generate_tenant
from adapters.errors import PlatformUnavailable, PlatformUnreachable
from adapters.secrets import Secret
from adapters.simserver import serve_app
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import BACKDOCKET

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.02)


def client_for(url: str, *, timeout: float = 120.0) -> BackDocketClient:
    config = BackDocketConfig(url, "crmlift", Secret("s3cret"), request_timeout=timeout)
    return BackDocketClient(config, Governor(BACKDOCKET), FAST)


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def backdocket(
    settings: SimSettings, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    sim = BackDocketSim(generate_tenant(60, seed=2), settings)
    runner, url = await serve_app(sim.app(), ssl_context=tls)
    try:
        yield url
    finally:
        await runner.cleanup()


async def first_page(client: BackDocketClient) -> None:
    async with client:
        await client.first_updated_at("users")


async def test_a_closed_port_says_connection_refused_and_names_the_token_url() -> None:
    port = closed_port()
    with pytest.raises(PlatformUnreachable) as caught:
        await first_page(client_for(f"http://127.0.0.1:{port}"))
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/oauth/token" in message
    assert "connection refused" in message
    assert "3 tries" in message  # refused may be a restart in progress: retried first
    assert caught.value.exit_code == 4


async def test_an_unresolvable_host_says_dns_lookup_failed() -> None:
    with pytest.raises(PlatformUnreachable) as caught:
        await first_page(client_for("https://acme.backdocket.invalid"))
    message = str(caught.value)
    assert "https://acme.backdocket.invalid/oauth/token" in message
    assert "DNS lookup failed for acme.backdocket.invalid" in message


async def test_an_untrusted_certificate_says_tls_verification_failed_without_retrying() -> None:
    # A certificate from a CA the client does not trust, as behind an unconfigured
    # TLS-inspecting proxy: the same refusal every time, so the first one is final.
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_tls)
    async with backdocket(SimSettings(), server_tls) as url:
        with pytest.raises(PlatformUnreachable) as caught:
            await first_page(client_for(url))
    message = str(caught.value)
    assert f"{url}/oauth/token" in message
    assert "TLS certificate verification failed" in message
    assert "(1 try)" in message


async def test_a_data_call_cut_every_time_names_its_url_and_cause() -> None:
    # The sim cuts /api/ answers only, half-way through the body: the token is granted
    # and the data call fails on every try.
    async with backdocket(SimSettings(fault_reset_rate=1.0)) as url:
        with pytest.raises(PlatformUnavailable) as caught:
            await first_page(client_for(url))
    message = str(caught.value)
    assert f"users first page ({url}/api/v1/users)" in message
    assert "connection lost: the answer was cut mid-body" in message


async def test_a_data_call_that_never_answers_says_timed_out() -> None:
    settings = SimSettings(fault_slow_rate=1.0, fault_slow_seconds=1.0)
    async with backdocket(settings) as url:
        with pytest.raises(PlatformUnreachable) as caught:
            await first_page(client_for(url, timeout=0.2))
    assert f"{url}/api/v1/users" in str(caught.value)
    assert "timed out" in str(caught.value)


async def test_a_refusing_token_endpoint_names_the_url_and_the_status() -> None:
    async with backdocket(SimSettings()) as url:
        client = client_for(url + "/nowhere")
        with pytest.raises(PlatformUnavailable) as caught:
            await first_page(client)
    assert "/nowhere/oauth/token" in str(caught.value)
    assert "HTTP 404" in str(caught.value)
