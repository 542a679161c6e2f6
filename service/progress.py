"""One progress interface for every long operation.

The engine only counts; the CLI draws the counts with rich and the fleet API
serves them as JSON, so neither face reaches into the engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Track:
    """Progress of one named unit of work (a collection, an object, the files)."""

    name: str
    total: int | None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    resumed_from: int = 0
    """Units an earlier process of the same run already did: counted in ``done``, not in
    the rate, which is this process's own speed."""

    def rate(self, now: float | None = None) -> float:
        """Units per second this process did since the track started."""
        elapsed = (now or time.monotonic()) - self.started
        mine = max(0, self.done - self.resumed_from)
        return mine / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the current rate, when a total is known."""
        rate = self.rate(now)
        if self.total is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)


class ProgressBoard:
    """Counters the engine advances and the faces read."""

    def __init__(self) -> None:
        self.tracks: dict[str, Track] = {}

    def track(self, name: str, total: int | None = None, done: int = 0) -> Track:
        """Start (or return) the track called ``name``."""
        existing = self.tracks.get(name)
        if existing is None:
            existing = self.tracks[name] = Track(name=name, total=total, done=done)
        return existing

    def restore(self, name: str, done: int, total: int) -> None:
        """Count work an earlier process of the run did: it shows as done, not as speed."""
        track = self.track(name, 0)
        track.total = (track.total or 0) + total
        track.done += done
        track.resumed_from += done

    def add_total(self, name: str, more: int) -> None:
        """Grow a track's total as more work is discovered."""
        track = self.track(name, 0)
        track.total = (track.total or 0) + more

    def advance(self, name: str, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.track(name).done += n

    def finish(self, name: str) -> None:
        """Mark a track complete."""
        self.track(name).finished = True

    def snapshot(self) -> list[dict[str, Any]]:
        """Every track as plain data, for the API and the logs."""
        now = time.monotonic()
        return [
            {
                "name": t.name,
                "done": t.done,
                "total": t.total,
                "resumed_from": t.resumed_from,
                "rate": round(t.rate(now), 1),
                "eta_seconds": None if (eta := t.eta(now)) is None else round(eta, 1),
                "finished": t.finished,
            }
            for t in self.tracks.values()
        ]
