"""The contract every quota limit keeps, so a governor can stack any of them.

A limit is pure arithmetic on an injected clock: it says how long a call must
wait (``wait``) and counts it once it goes. A server counts a request the moment
it arrives (``take``). A client cannot know that moment — somewhere between its
sending and the answer — so it holds (``hold``) the call while it is in flight and
releases it (``release``) when the answer arrives; from then on it counts as if it had
gone at that moment, the latest the server can have counted it, so the client
never reuses room in a window before the server has freed it. The governor asks
every limit of a principal, sleeps for the longest wait, and holds them all at
once, so no limit ever lets more through than it allows, whatever else is stacked
with it. The server-side enforcer (``ratelimit.enforce``) builds a platform's
quota from the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Call:
    """What one request costs, in every unit a platform may count."""

    requests: float = 1.0
    operations: int = 1
    """Records or operations it carries (a ``$batch`` or an insert of 100 carries many)."""
    credits: float = 0.0
    """Credits it is charged (Zoho); 0 where the platform does not count credits."""
    heavy: bool = False
    """Counts against the platform's sub-concurrency for heavy calls (Zoho)."""


class Limit(Protocol):
    """One quota of one principal."""

    name: str
    """What an operator reads when it runs out: ``daily API requests``."""

    def wait(self, now: float, call: Call) -> float:
        """Seconds until ``call`` fits; 0 when it fits now. Counts nothing."""
        ...

    def take(self, now: float, call: Call) -> None:
        """Count ``call`` as made at ``now``; only after ``wait`` said 0."""
        ...

    def hold(self, now: float, call: Call) -> None:
        """Count ``call`` as in flight from ``now``; only after ``wait`` said 0."""
        ...

    def release(self, now: float, call: Call) -> None:
        """The answer to a held ``call`` arrived at ``now``: count it as made then."""
        ...
