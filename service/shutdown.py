"""A graceful stop: the operator's signal ends a run at a point it can resume from.

While the load runs, the first SIGINT/SIGTERM stops new batches from starting;
the batches in flight finish and their outcomes are journaled, then the run
ends as interrupted. A second signal, or a drain that outlasts its timeout,
cancels at once — still safe (upserts on the external key, journaled jobs),
only slower to resume. Outside the load (extraction checkpoints every page)
the first signal cancels at once.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 120.0
"""How long in-flight batches may take to finish after a stop was asked for."""


class Shutdown:
    """The stop request of one process, shared by the CLI and the loader."""

    def __init__(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        self.drain_seconds = drain_seconds
        self.requested = False
        self._task: asyncio.Task[object] | None = None
        self._drains = False
        self._deadline: asyncio.TimerHandle | None = None

    def attach(self, task: asyncio.Task[object]) -> None:
        """The task a hard stop cancels (the command's)."""
        self._task = task

    def draining(self, on: bool) -> None:
        """Whether the current phase drains on a stop (the load) or is cancelled."""
        self._drains = on

    def request(self) -> None:
        """A signal arrived: drain if the phase can, else (or the second time) cancel."""
        if self.requested or not self._drains:
            self._cancel("second signal" if self.requested else "stop")
            return
        self.requested = True
        log.warning("run.stopping", drain_seconds=self.drain_seconds)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.drain_seconds, self._cancel, "drain timeout")

    def _cancel(self, why: str) -> None:
        if self._task is not None and not self._task.done():
            # A plain stop of a phase that does not drain is routine; cutting a drain
            # short is worth a warning.
            (log.info if why == "stop" else log.warning)("run.cancelled", why=why)
            self._task.cancel()

    def close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
