"""Quota profiles: each platform's published limits as settings operators override."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from adapters.errors import ConfigError


@dataclass(frozen=True, slots=True)
class QuotaProfile:
    """The request budget of one principal on one platform."""

    platform: str
    rate: float
    """Sustained requests per second the platform allows."""
    burst: float
    """Requests the platform lets through at once before the sustained rate applies."""
    concurrency: int
    """Requests in flight at once."""
    utilization: float = 1.0
    """Share of ``rate`` we aim for; below 1 leaves headroom for other tenants' tools."""
    daily_requests: int | None = None
    """Requests allowed per rolling 24 hours (org-wide), when the platform counts them."""
    daily_bulk_batches: int | None = None
    """Bulk batches allowed per rolling 24 hours."""
    daily_bulk_records: int | None = None
    """Bulk records allowed per rolling 24 hours."""

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1:
            raise ConfigError(
                f"quota profile {self.platform}: rate, burst and concurrency must be positive"
            )
        if not 0 < self.utilization <= 1:
            raise ConfigError(f"quota profile {self.platform}: utilization must be in (0, 1]")

    @property
    def effective_rate(self) -> float:
        """The request rate the governor actually paces to."""
        return self.rate * self.utilization

    def with_overrides(self, overrides: Mapping[str, Any]) -> QuotaProfile:
        """A copy with an operator's overrides applied; unknown keys are an error."""
        known = {f.name for f in fields(self)} - {"platform"}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(
                f"quota profile {self.platform}: unknown setting(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        try:
            return replace(self, **dict(overrides))
        except TypeError as exc:
            raise ConfigError(f"quota profile {self.platform}: {exc}") from exc


BACKDOCKET = QuotaProfile(platform="backdocket", rate=20.0, burst=40.0, concurrency=8)
"""BackDocket: 20 requests/s sustained, burst 40, per token.

Source: ../shared/sources/backdocket-api.md, "Transport and auth".
"""

SALESFORCE = QuotaProfile(
    platform="salesforce",
    rate=200.0,
    burst=200.0,
    concurrency=10,
    daily_requests=100_000,
    daily_bulk_batches=15_000,
    daily_bulk_records=150_000_000,
)
"""Salesforce: no per-second limit (we pace at 200/s to spread bursts), an org-wide
rolling-24 h allocation (Enterprise
base 100,000 + licences × 1,000; override for your edition), 15,000 Bulk batches
and 150 million Bulk records per 24 h, 25 concurrent long-running requests (we
keep 10 in flight). Source: ../shared/platforms/destinations.md §1.2, §1.6."""

PROFILES: dict[str, QuotaProfile] = {p.platform: p for p in (BACKDOCKET, SALESFORCE)}


def profile_for(platform: str, overrides: Mapping[str, Any] | None = None) -> QuotaProfile:
    """The named platform's profile with the plan's overrides applied."""
    try:
        profile = PROFILES[platform]
    except KeyError as exc:
        raise ConfigError(f"no quota profile for platform {platform!r}") from exc
    return profile.with_overrides(overrides or {})
