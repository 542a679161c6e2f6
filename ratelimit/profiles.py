"""Quota profiles: each platform's published limits as settings operators override."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

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
    window_seconds: float | None = None
    """Length of a per-principal sliding window (Dataverse: 300 s), when the platform
    counts that way; None for platforms without one."""
    window_requests: int | None = None
    """Requests per sliding window and principal."""
    window_execution_ms: float | None = None
    """Server execution time per sliding window and principal, in milliseconds."""
    execution_ms_per_operation: float = 10.0
    """First estimate of the server time one operation costs (calibrated as we go)."""
    requests_per_hour: int | None = None
    """Requests per rolling hour (Freshsales, account-wide)."""
    requests_per_minute: int | None = None
    """Requests per rolling minute (Freshsales paid plans: 400)."""
    daily_credits: int | None = None
    """Credits per rolling 24 hours (Zoho, org-wide); each call's cost comes from
    ``ratelimit.credits``."""
    heavy_concurrency: int | None = None
    """In-flight heavy calls (Zoho's sub-concurrency for writes of over 10 records,
    COQL, composite…), within ``concurrency``."""
    max_quota_wait: float = 3600.0
    """Longest wait for a rolling allocation to free up; a longer one stops the run
    (resumable) with the time it frees, instead of holding a process for hours."""
    rate_enforced: bool = False
    """Whether ``rate`` and ``burst`` are the platform's own limit, refused beyond
    (BackDocket's 20/s, burst 40), rather than only the pace we keep under its other
    limits (Dataverse, Freshsales, Salesforce, Zoho). A server enforcing this profile
    (``ratelimit.enforce``) applies a token bucket only when it is."""
    time_scale: float = 1.0
    """Platform seconds per wall second. Every duration here — ``window_seconds``,
    the hour, minute and day of the rolling allocations, ``max_quota_wait`` — lasts
    ``1 / time_scale`` as long on the wall clock, and ``rate`` is that many times
    higher; counts (requests, operations, credits, milliseconds of server execution
    time) are unchanged. 1 for a real platform; a simulator run faster (the Dataverse
    simulator's ``time_scale``, the quota simulator's profile) and the client talking to
    it set the same value, so both count the same windows."""

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1:
            raise ConfigError(
                f"quota profile {self.platform}: rate, burst and concurrency must be positive"
            )
        if not 0 < self.utilization <= 1:
            raise ConfigError(f"quota profile {self.platform}: utilization must be in (0, 1]")
        window = (self.window_seconds, self.window_requests, self.window_execution_ms)
        if any(v is not None for v in window) and not all(v is not None and v > 0 for v in window):
            raise ConfigError(
                f"quota profile {self.platform}: window_seconds, window_requests and "
                "window_execution_ms go together and must be positive"
            )
        counts = (
            self.daily_requests,
            self.daily_bulk_batches,
            self.daily_bulk_records,
            self.requests_per_hour,
            self.requests_per_minute,
            self.daily_credits,
            self.heavy_concurrency,
        )
        if any(v is not None and v < 1 for v in counts) or self.max_quota_wait < 0:
            raise ConfigError(f"quota profile {self.platform}: every allocation must be positive")
        if self.execution_ms_per_operation <= 0:
            raise ConfigError(
                f"quota profile {self.platform}: execution_ms_per_operation must be positive"
            )
        if not (0 < self.time_scale < math.inf):
            raise ConfigError(f"quota profile {self.platform}: time_scale must be positive")

    @property
    def effective_rate(self) -> float:
        """The request rate the governor actually paces to, per platform second."""
        return self.rate * self.utilization

    def wall(self, platform_seconds: float) -> float:
        """How long ``platform_seconds`` last on the wall clock at ``time_scale``."""
        return platform_seconds / self.time_scale

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


_T = TypeVar("_T")


def _edition(table: Mapping[str, _T], platform: str, name: str) -> _T:
    try:
        return table[name.strip().lower()]
    except KeyError as exc:
        raise ConfigError(
            f"quota profile {platform}: unknown edition {name!r}; known: {', '.join(table)}"
        ) from exc


BACKDOCKET = QuotaProfile(
    platform="backdocket", rate=20.0, burst=40.0, concurrency=8, rate_enforced=True
)
"""BackDocket: 20 requests/s sustained, burst 40, per token.

Source: ../shared/sources/backdocket-api.md, "Transport and auth".
"""

SALESFORCE_EDITIONS: Mapping[str, tuple[int, int, int]] = {
    "developer": (15_000, 0, 5),
    "professional": (100_000, 1_000, 25),
    "enterprise": (100_000, 1_000, 25),
    "unlimited": (100_000, 5_000, 25),
    "performance": (100_000, 5_000, 25),
    "sandbox": (5_000_000, 0, 25),
}
"""Edition → (base daily API calls, calls per Salesforce/Platform licence, concurrent
long-running requests). Source: ../shared/platforms/destinations.md §1.6."""


def salesforce_profile(
    edition: str = "enterprise", licences: int = 0, addon_requests: int = 0
) -> QuotaProfile:
    """An org's allocation: base + licences * per-licence calls + purchased add-ons,
    org-wide per rolling 24 h; 15,000 Bulk batches and 150 million Bulk records per
    24 h (destinations.md §1.2, §1.6). No per-second limit: we pace at 200/s to
    spread bursts, and keep 10 calls in flight under the long-running cap."""
    base, per_licence, long_running = _edition(SALESFORCE_EDITIONS, "salesforce", edition)
    if licences < 0 or addon_requests < 0:
        raise ConfigError("quota profile salesforce: licences and add-ons cannot be negative")
    return QuotaProfile(
        platform="salesforce",
        rate=200.0,
        burst=200.0,
        concurrency=min(10, long_running),
        daily_requests=base + licences * per_licence + addon_requests,
        daily_bulk_batches=15_000,
        daily_bulk_records=150_000_000,
    )


SALESFORCE = salesforce_profile()
"""Enterprise edition with no licences counted: 100,000 calls per 24 h. Operators set
``edition``, ``licences`` and ``addon_requests`` (or ``daily_requests`` outright)."""

DYNAMICS = QuotaProfile(
    platform="dynamics",
    rate=20.0,
    burst=40.0,
    concurrency=16,
    window_seconds=300.0,
    window_requests=6000,
    window_execution_ms=1_200_000.0,
    execution_ms_per_operation=10.0,
)
"""Dataverse service protection, per application user and web server: 6,000 requests
and 1,200,000 ms of execution time per sliding 300 s, 52 concurrent requests (we keep
16 in flight per user; a ``$batch`` of up to 1,000 operations counts as one request).
The rate paces the 6,000 evenly. The whole of each window is used: the governor counts
a request as in flight until its answer and from then on as made at that moment, so it
never reuses room before the server has freed it (a share of the window used to be kept
back for that), and the execution estimate follows the server's remaining-time header.
An operator whose application user other tools share sets ``utilization`` below 1.
Every setting is per user: a pool of application users multiplies them.
Source: ../shared/platforms/destinations.md §2.5."""

ZOHO_EDITIONS: Mapping[str, tuple[int, int, int | None, int]] = {
    "free": (5_000, 0, 5_000, 5),
    "standard": (50_000, 250, 100_000, 10),
    "professional": (50_000, 500, 3_000_000, 15),
    "enterprise": (50_000, 1_000, 5_000_000, 20),
    "ultimate": (50_000, 2_000, None, 25),
}
"""Edition → (base credits, credits per user licence, cap or None, concurrency).
Source: ../shared/platforms/destinations.md §3.4 (older pages disagree on bases and
caps; override ``daily_credits`` with the figure in your org's API dashboard)."""
ZOHO_HEAVY_CONCURRENCY = 10
"""Sub-concurrency for heavy calls, every edition (destinations.md §3.4)."""


def zoho_profile(
    edition: str = "enterprise", users: int = 0, addon_credits: int = 0
) -> QuotaProfile:
    """An org's credits per rolling 24 h, by edition and user licences, plus add-ons."""
    base, per_user, cap, concurrency = _edition(ZOHO_EDITIONS, "zoho", edition)
    if users < 0 or addon_credits < 0:
        raise ConfigError("quota profile zoho: users and add-ons cannot be negative")
    earned = base + users * per_user
    return QuotaProfile(
        platform="zoho",
        rate=25.0,
        burst=25.0,
        concurrency=concurrency,
        daily_credits=(earned if cap is None else min(cap, earned)) + addon_credits,
        heavy_concurrency=min(concurrency, ZOHO_HEAVY_CONCURRENCY),
    )


ZOHO = zoho_profile()

FRESHSALES_PLANS: Mapping[str, tuple[int, int | None]] = {
    "free": (1_000, None),
    "growth": (1_000, 400),
    "blossom": (1_000, 400),
    "garden": (1_000, 400),
    "pro": (2_000, 400),
    "estate": (2_000, 400),
    "enterprise": (5_000, 400),
    "forest": (5_000, 400),
}
"""Plan → (requests per hour, per minute), account-wide, every user and tool counted.
Source: ../shared/platforms/destinations.md §4."""


def freshsales_profile(plan: str = "enterprise") -> QuotaProfile:
    """An account's hourly and per-minute limits, paced evenly over the hour."""
    hourly, minutely = _edition(FRESHSALES_PLANS, "freshsales", plan)
    return QuotaProfile(
        platform="freshsales",
        rate=hourly / 3600,
        burst=max(1.0, min(20.0, hourly / 3600 * 10)),
        concurrency=4,
        requests_per_hour=hourly,
        requests_per_minute=minutely,
    )


FRESHSALES = freshsales_profile()

BUILDERS: Mapping[str, Callable[..., QuotaProfile]] = {
    "salesforce": salesforce_profile,
    "zoho": zoho_profile,
    "freshsales": freshsales_profile,
}
"""Platforms whose profile follows from the customer's edition, licences and add-ons."""
BUILDER_KEYS = frozenset(
    {"edition", "licences", "users", "plan", "addon_requests", "addon_credits"}
)

PROFILES: dict[str, QuotaProfile] = {
    p.platform: p for p in (BACKDOCKET, SALESFORCE, DYNAMICS, ZOHO, FRESHSALES)
}


def profile_for(platform: str, overrides: Mapping[str, Any] | None = None) -> QuotaProfile:
    """The named platform's profile for the plan's edition/licences, with its overrides.

    ``edition``, ``licences``, ``users``, ``plan`` and the ``addon_*`` keys build the
    published profile of that edition; any other key overrides one setting outright.
    """
    given = dict(overrides or {})
    shape = {k: given.pop(k) for k in list(given) if k in BUILDER_KEYS}
    if platform not in PROFILES:
        raise ConfigError(f"no quota profile for platform {platform!r}")
    profile = PROFILES[platform]
    if shape:
        builder = BUILDERS.get(platform)
        if builder is None:
            raise ConfigError(
                f"quota profile {platform}: {', '.join(sorted(shape))} do not apply here"
            )
        try:
            profile = builder(**shape)
        except TypeError as exc:
            raise ConfigError(f"quota profile {platform}: {exc}") from exc
    return profile.with_overrides(given)
