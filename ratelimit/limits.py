"""The contract every quota limit keeps, so a governor can stack any of them.

A limit is pure arithmetic on an injected clock: it says how long a call must
wait (``wait``) and counts it once it goes (``take``). The governor asks every
limit of a principal, sleeps for the longest wait, and takes them all at once,
so no limit ever lets more through than it allows, whatever else is stacked
with it. The simulators enforce a platform's quota with the same classes.
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
        """Count ``call``; only after ``wait`` said 0."""
        ...
