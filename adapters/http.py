"""The aiohttp session lifecycle every platform client shares, and what a failed call means."""

from __future__ import annotations

import ssl
from typing import Self

import aiohttp


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
