"""The aiohttp session lifecycle every platform client shares."""

from __future__ import annotations

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
