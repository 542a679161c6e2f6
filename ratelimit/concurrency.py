"""How many calls a principal has in flight: a cap that adapts, with sub-caps.

Platforms cap concurrent calls (Dataverse 52 per user, Zoho 5-25 per org by
edition with 10 for heavy calls) and answer overload with throttles. The cap
halves when the platform throttles and grows back by one after a cap's worth
of calls go through cleanly (additive increase, multiplicative decrease), so a
run settles just under what the platform takes today.

A hiccup (a throttle that is not about our rate, see ``ratelimit.throttle``) trims
one place at most, and the cap springs back to where it was after a cap's worth of
clean calls: sporadic refusals must not walk the cap down to one (issue 11).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class AdaptiveConcurrency:
    """At most ``limit`` calls in flight (``limit`` moves within 1..``maximum``), and
    at most ``heavy_limit`` of them heavy."""

    def __init__(self, maximum: int, heavy_limit: int | None = None) -> None:
        if maximum < 1 or (heavy_limit is not None and heavy_limit < 1):
            raise ValueError("concurrency limits must be at least 1")
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._heavy = asyncio.Semaphore(heavy_limit) if heavy_limit else None
        self._changed = asyncio.Condition()
        self._clean = 0
        self._restore_to = 0
        """The cap before a hiccup trimmed it; 0 when none is pending."""

    @asynccontextmanager
    async def slot(self, heavy: bool = False) -> AsyncIterator[None]:
        """Hold one place (and a heavy one when ``heavy``) for the length of a call."""
        if heavy and self._heavy is not None:
            async with self._heavy, self._place():
                yield
        else:
            async with self._place():
                yield

    @asynccontextmanager
    async def _place(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def throttled(self) -> None:
        """We were too fast: halve the cap (never below 1)."""
        self.limit = max(1, self.limit // 2)
        self._clean = 0
        self._restore_to = 0

    def hiccup(self) -> None:
        """The platform refused one call for its own reasons: trim one place, to be
        given back soon."""
        self._restore_to = max(self._restore_to, self.limit)
        self.limit = max(1, self.limit - 1)
        self._clean = 0

    def succeeded(self) -> None:
        """A call went through cleanly; a cap's worth of them earns one more place, or
        every place a hiccup took."""
        if self.limit >= self.maximum:
            return
        self._clean += 1
        if self._clean >= self.limit:
            self._clean = 0
            self.limit = max(self.limit + 1, self._restore_to)
            self._restore_to = 0
