"""An operator's secrets and client documents stay where they belong (issue 10, items 1-3).

A hostile or misconfigured login host cannot walk the client secret to another origin;
the simulators verify the JWTs they accept, keep their debug doors locked and say so
when they listen beyond loopback; blobs and the journal's data are owner-only.
"""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.backdocket.sim import BackDocketSim, SimSettings
from adapters.backdocket.sim import serve as serve_backdocket
from adapters.backdocket.tenant import generate_tenant
from adapters.dynamics.client import Application, DataverseClient, DataverseConfig
from adapters.dynamics.sim import DataverseSim
from adapters.dynamics.sim import serve as serve_dynamics
from adapters.http import CredentialRedirect
from adapters.salesforce.client import SalesforceClient, SalesforceConfig
from adapters.salesforce.schema import OrgSchema
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from adapters.secrets import Secret
from adapters.simserver import ADMIN_HEADER, serve_app, warn_if_exposed
from journal.core import Journal
from journal.embedded import EmbeddedPostgres
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import DYNAMICS, salesforce_profile

SECRET = "client-s3cret-do-not-leak"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# -- 1. a token request never carries the secret to another origin ---------------


class Thief:
    """A loopback server on another port that records every body it is handed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[Mapping[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        token = {"access_token": "stolen", "instance_url": "http://x", "expires_in": 3600}
        return web.json_response(token)

    def saw_secret(self) -> bool:
        basic = base64.b64encode(f"crmlift:{SECRET}".encode()).decode()
        in_body = any(SECRET.encode() in body for body in self.bodies)
        in_header = any(basic in " ".join(h.values()) for h in self.headers)
        return in_body or in_header


@asynccontextmanager
async def redirecting_login(status: int = 307) -> AsyncIterator[tuple[str, Thief]]:
    """A login host answering every POST with ``status`` to a second loopback server."""
    thief = Thief()
    thief_app = web.Application()
    thief_app.router.add_route("*", "/{tail:.*}", thief.handle)
    thief_runner, thief_url = await serve_app(thief_app)

    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": thief_url + request.path})

    login_app = web.Application()
    login_app.router.add_route("*", "/{tail:.*}", redirect)
    login_runner, login_url = await serve_app(login_app)
    try:
        yield login_url, thief
    finally:
        await login_runner.cleanup()
        await thief_runner.cleanup()


@pytest.mark.parametrize("status", [307, 308])
async def test_dataverse_token_request_redirected_elsewhere_stops_and_keeps_the_secret(
    status: int,
) -> None:
    async with redirecting_login(status) as (login_url, thief):
        config = DataverseConfig(
            environment_url=login_url,
            tenant_id="tenant",
            applications=(Application("app", Secret(SECRET)),),
            authority_url=login_url,
        )
        async with DataverseClient(config, DYNAMICS, RetryPolicy(attempts=1)) as client:
            with pytest.raises(CredentialRedirect) as refused:
                await client.users_by_email()
    assert not thief.saw_secret()
    assert thief.bodies == []
    assert login_url in str(refused.value)
    assert str(refused.value).count("127.0.0.1") == 2  # where it asked and where it pointed
    assert refused.value.exit_code == 3
    assert SECRET not in str(refused.value)


async def test_salesforce_login_redirected_elsewhere_stops_and_keeps_the_secret() -> None:
    async with redirecting_login(307) as (login_url, thief):
        config = SalesforceConfig(login_url, "crmlift", Secret(SECRET))
        governor = Governor(salesforce_profile())
        async with SalesforceClient(config, governor, RetryPolicy(attempts=1)) as client:
            with pytest.raises(CredentialRedirect) as refused:
                await client.users_by_email()
    assert not thief.saw_secret()
    assert thief.bodies == []
    assert refused.value.url == login_url + "/services/oauth2/token"
    assert refused.value.location.startswith("http://127.0.0.1:")
    assert SECRET not in str(refused.value)


# -- 2. the simulators verify what they claim and lock their debug doors ----------


def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(claims: Mapping[str, Any], key: rsa.RSAPrivateKey | None, alg: str = "RS256") -> str:
    """A JWT bearer assertion as the Salesforce docs build it; ``key=None``: unsigned."""
    head = f"{b64url(orjson.dumps({'alg': alg}))}.{b64url(orjson.dumps(claims))}"
    if key is None:
        return f"{head}."
    signature = key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{b64url(signature)}"


def claims() -> dict[str, Any]:
    return {
        "iss": "crmlift",
        "sub": "admin@firm.example",
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    }


@asynccontextmanager
async def salesforce(**settings: Any) -> AsyncIterator[tuple[SalesforceSim, aiohttp.ClientSession]]:
    sim = SalesforceSim(OrgSchema(), SfSimSettings(**settings))
    runner, url = await serve_salesforce(sim)
    try:
        async with aiohttp.ClientSession(url) as session:
            yield sim, session
    finally:
        await runner.cleanup()


async def jwt_login(session: aiohttp.ClientSession, assertion: str) -> tuple[int, Any]:
    form = {"grant_type": JWT_GRANT, "assertion": assertion}
    async with session.post("/services/oauth2/token", data=form) as reply:
        return reply.status, await reply.json()


async def test_salesforce_sim_accepts_only_jwts_signed_by_the_connected_apps_key() -> None:
    key, stranger = signing_key(), signing_key()
    async with salesforce(jwt_certificate=public_pem(key)) as (sim, session):
        assert (await jwt_login(session, jwt(claims(), key)))[0] == 200
        genuine = jwt(claims(), key)
        other_user = jwt({**claims(), "sub": "someone@firm.example"}, None)
        refused = [
            jwt(claims(), None, alg="none"),
            jwt(claims(), None, alg="RS256"),
            jwt(claims(), stranger),
            jwt(claims(), key, alg="HS256"),
            other_user + genuine.rsplit(".", 1)[1],  # claims swapped under a real signature
        ]
        for assertion in refused:
            status, body = await jwt_login(session, assertion)
            assert (status, body["error"]) == (400, "invalid_grant"), assertion
        assert sim.stats.tokens_issued == 1


async def test_salesforce_sim_without_a_certificate_refuses_every_jwt() -> None:
    key = signing_key()
    async with salesforce() as (sim, session):
        status, body = await jwt_login(session, jwt(claims(), key))
        assert (status, body["error"]) == (400, "invalid_grant")
        assert sim.stats.tokens_issued == 0


async def sim_get(url: str, path: str, token: str | None) -> int:
    headers = {} if token is None else {ADMIN_HEADER: token}
    async with aiohttp.ClientSession(url) as session, session.get(path, headers=headers) as r:
        return r.status


async def test_every_simulators_debug_endpoints_require_the_admin_token() -> None:
    salesforce_sim = SalesforceSim(OrgSchema(), SfSimSettings(admin_token="sf-admin"))
    dynamics_sim = DataverseSim()
    backdocket_sim = BackDocketSim(generate_tenant(5, seed=1), SimSettings())
    served = [
        (await serve_salesforce(salesforce_sim), salesforce_sim.settings.admin_token),
        (await serve_dynamics(dynamics_sim), dynamics_sim.settings.admin_token),
        (await serve_backdocket(backdocket_sim), backdocket_sim.settings.admin_token),
    ]
    try:
        for (_, url), admin in served:
            assert await sim_get(url, "/_sim/state", None) == 401, url
            assert await sim_get(url, "/_sim/state", "guess") == 401, url
            assert await sim_get(url, "/_sim/state", admin) == 200, url
        sf_url = served[0][0][1]
        assert await sim_get(sf_url, "/_sim/records/Account", None) == 401
        assert await sim_get(sf_url, "/_sim/records/Account", "sf-admin") == 200
        bd_url = served[2][0][1]
        assert await sim_get(bd_url, "/_sim/state/contacts", None) == 401
    finally:
        for (runner, _), _ in served:
            await runner.cleanup()


def test_a_simulator_bound_beyond_loopback_warns_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        warn_if_exposed(host)
    assert capsys.readouterr().err == ""
    for host in ("0.0.0.0", "::", "192.168.1.20", "sim.example.com"):
        warn_if_exposed(host)
        err = capsys.readouterr().err
        assert err.startswith("WARNING"), host
        assert host in err


# -- 3. client documents and the journal are owner-only ---------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data[:3]
    yield data[3:]


async def test_blob_files_are_owner_only_even_under_a_lax_umask(journal: Journal) -> None:
    import hashlib

    data = b"privileged client letter"
    digest = hashlib.sha256(data).hexdigest()
    old_umask = os.umask(0o022)
    try:
        path = await journal.blobs.store(digest, len(data), chunks_of(data))
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == data
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(journal.blobs.root) == 0o700


async def test_embedded_journal_data_dirs_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "crmlift"
    server = EmbeddedPostgres(data_dir / "postgres")
    old_umask = os.umask(0o022)
    try:
        await server.start()
    finally:
        os.umask(old_umask)
    try:
        assert mode(data_dir / "postgres") == 0o700
        assert mode(server.log_file) == 0o600
        if os.geteuid() != 0:
            # As root, pgserver runs PostgreSQL as its own user and opens every folder
            # above the data (o+rx) so that user can reach it; the data stays 0700.
            assert mode(data_dir) == 0o700
    finally:
        await server.stop()
