"""A pure token bucket on an injected clock, shared by governors and simulators.

The simulators enforce a platform's limit with the same arithmetic the client
uses to stay under it, so a mismatch between the two shows up as a test failure
rather than a production surprise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ratelimit.limits import Call

_EPSILON = 1e-9
"""Float slack: a caller who waited exactly the wait we gave must get through."""


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second refill a bucket that holds at most ``burst``."""

    rate: float
    burst: float
    _tokens: float = field(init=False)
    _updated: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("rate and burst must be positive")
        self._tokens = self.burst

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        if self._updated is None or now > self._updated:
            self._updated = now

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there; 0 when they are now. Takes nothing.

        Exactly what a server puts in ``Retry-After``.
        """
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds the bucket's burst {self.burst}")
        self._refill(now)
        if self._tokens >= cost - _EPSILON:
            return 0.0
        return (cost - self._tokens) / self.rate

    def try_take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if they are there and return 0; else return the wait."""
        wait = self.wait(now, cost)
        if wait == 0:
            self._tokens = max(0.0, self._tokens - cost)
        return wait

    def available(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens


@dataclass(slots=True)
class Pace:
    """A token bucket as a ``Limit``: a call's ``requests`` against the rate and burst.

    The client paces with one at its share of the platform's rate (and half its
    burst); a server whose platform refuses beyond a rate enforces one at the full
    rate and burst. Tokens go when the call does: there is nothing to hold.
    """

    bucket: TokenBucket
    name: str = "request rate"

    def _cost(self, call: Call) -> float:
        return min(call.requests, self.bucket.burst)

    def wait(self, now: float, call: Call) -> float:
        return self.bucket.wait(now, self._cost(call))

    def take(self, now: float, call: Call) -> None:
        self.bucket.try_take(now, self._cost(call))

    def hold(self, now: float, call: Call) -> None:
        self.take(now, call)

    def release(self, now: float, call: Call) -> None:
        """Nothing: the bucket refills on time alone."""
