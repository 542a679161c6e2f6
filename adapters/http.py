"""The aiohttp session lifecycle every platform client shares, and what a failed call means."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Self

import aiohttp
from yarl import URL

from adapters.errors import AuthError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BODY_KEEPING_REDIRECTS = frozenset({307, 308})
"""The redirects that resend a POST with its body (RFC 9110 §15.4.8, §15.4.9): the only
ones a token request could follow and still be a token request."""
MAX_CREDENTIAL_REDIRECTS = 3


class SessionClient:
    """Owns one ``aiohttp.ClientSession`` for the length of an ``async with``.

    Subclasses say how their session is built; the session exists only inside
    the block, so no connection outlives the client that opened it.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def new_session(self) -> aiohttp.ClientSession:
        """The session this client speaks through (timeouts, pool size, TLS)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._session = self.new_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; using the client outside ``async with`` is a bug."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} used outside `async with`")
        return self._session


class CredentialRedirect(AuthError):
    """A request carrying a secret was redirected to another origin (or in a way that
    cannot be followed): the secret was not sent on, and the run stops.

    aiohttp follows a 307/308 with the body, so following blindly would hand the
    client secret to whoever the first host points at.
    """

    def __init__(self, platform: str, url: str, location: str) -> None:
        super().__init__(platform, f"{url} redirected to {location}")
        self.url = url
        self.location = location
        self.args = (
            f"{platform}: the token request to {url} was redirected to {location}; "
            "credentials are only sent to the configured origin (check the login URL)",
        )


async def post_credentials(
    session: aiohttp.ClientSession,
    url: str,
    *,
    platform: str,
    data: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """POST a request that carries a secret; return its status and body.

    A 307/308 to the same origin (scheme, host and port) is followed, a few times at
    most; any other redirect raises CredentialRedirect before a byte goes elsewhere.
    Connection errors are the caller's to translate.
    """
    origin = URL(url).origin()
    target = URL(url)
    for _ in range(MAX_CREDENTIAL_REDIRECTS + 1):
        async with session.post(
            target, data=dict(data), headers=dict(headers or {}), allow_redirects=False
        ) as resp:
            if resp.status not in REDIRECT_STATUSES:
                return resp.status, await resp.read()
            status, location = resp.status, resp.headers.get("Location", "")
        following = target.join(URL(location)) if location else None
        if following is None or status not in BODY_KEEPING_REDIRECTS:
            raise CredentialRedirect(platform, str(target), f"{location or '(nowhere)'} ({status})")
        if following.origin() != origin:
            raise CredentialRedirect(platform, str(target), str(following))
        target = following
    raise CredentialRedirect(platform, url, f"{target} (more than {MAX_CREDENTIAL_REDIRECTS} hops)")


def is_tls_failure(exc: BaseException) -> bool:
    """A certificate or handshake failure: retrying it only repeats the same refusal."""
    return isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError)


def describe_failure(exc: BaseException) -> str:
    """Why a call got no answer, in the words an operator acts on.

    The order matters: aiohttp's DNS and TLS errors are kinds of connector
    errors, and its timeouts are kinds of connection errors.
    """
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed ({_reason(exc.certificate_error)})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host} ({_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}"
        return f"cannot connect to {exc.host}:{exc.port} ({_reason(exc.os_error)})"
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts included
        return "timed out waiting for the answer"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut mid-body"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return exc.verify_message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
