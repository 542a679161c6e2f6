"""The migration plan: a TOML file an operator writes, read into typed settings.

Secrets are never written in the plan: they are given as ``{ env = "NAME" }``
and read from the environment when the plan is loaded.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from adapters.backdocket.client import COLLECTIONS, MAX_PAGE_SIZE, BackDocketConfig
from adapters.dynamics.batch import MAX_BATCH_REQUESTS
from adapters.dynamics.client import DEFAULT_BATCH_SIZE, Application, DataverseConfig
from adapters.dynamics.sharepoint import SharePointConfig
from adapters.errors import ConfigError
from adapters.salesforce.client import SalesforceConfig
from adapters.secrets import Secret
from journal import JournalSettings
from ratelimit.profiles import BUILDER_KEYS, QuotaProfile, profile_for
from service.mapping.backdocket_dynamics import SHAREPOINT_MODES
from service.mapping_file import with_mapping_file

ENV_PREFIX = "CRMLIFT_"


@dataclass(frozen=True, slots=True)
class ExtractSettings:
    """How extraction splits and reads the source."""

    collections: tuple[str, ...] = COLLECTIONS
    """Collections to read, in the order their progress bars appear."""
    window_records: int = 5000
    """Target records per window; more windows mean more reads at once."""
    files: bool = True
    """Download document content into the blob store."""
    catchup_passes: int = 5
    """Passes re-reading changes (listings since the last pass + deletion feed) after the
    downloads, until one finds nothing new; a live source may never be quiet."""

    def __post_init__(self) -> None:
        if self.catchup_passes < 1:
            raise ConfigError("extract.catchup_passes must be at least 1")


@dataclass(frozen=True, slots=True)
class DestinationSettings:
    """Where the data goes and how it may be written there."""

    platform: str
    config: SalesforceConfig | DataverseConfig
    quota: QuotaProfile
    fallback_owner_email: str
    """Owner of records whose BackDocket user has no matching destination user."""
    mapping: Mapping[str, Any] = field(default_factory=dict)
    """Pair-specific mapping settings (``[mapping]`` in the plan)."""
    batch_records: int = 2500
    """``[load] batch_records``: staged records transformed and written together."""
    batches_in_flight: int = 24
    """``[load] batches_in_flight``: batches written at once; bounds memory."""
    mapping_file: Path | None = None
    """``[mapping] file``, resolved: the operator's mapping file, read into ``mapping``."""
    owners: str = "fallback"
    """``[destination] owners``: ``fallback`` (staff with no destination user: their records
    go to the fallback owner, an audit warning) or ``strict`` (such staff are a blocking
    audit finding: migrate stops until they exist or the finding is acknowledged)."""


CONFLICT_POLICIES = ("keep-destination", "prefer-source", "stop")
DELETION_POLICIES = ("flag", "delete", "archive")


@dataclass(frozen=True, slots=True)
class DeltaSettings:
    """``[delta]``: what a delta cycle does where the destination or the source moved."""

    conflicts: str = "keep-destination"
    """A field changed both in the destination since crmlift wrote it and in the source:
    ``keep-destination`` (leave it out of the write), ``prefer-source`` (write it) or
    ``stop`` (refuse the cycle before any write); each one is reported."""
    deletions: str = "flag"
    """A record deleted at the source: ``flag`` (report it), ``delete`` (delete it in the
    destination) or ``archive`` (set ``archive_field`` on it); reversible by rollback."""
    archive_field: str | None = None
    """The destination field ``deletions = "archive"`` sets to true (the schema plan then
    requires it on every object the pair writes)."""
    recreate_deleted: bool = False
    """Create again a record deleted in the destination since crmlift wrote it."""

    def __post_init__(self) -> None:
        if self.conflicts not in CONFLICT_POLICIES:
            raise ConfigError(
                f"plan delta.conflicts must be one of {', '.join(CONFLICT_POLICIES)}, "
                f"not {self.conflicts!r}"
            )
        if self.deletions not in DELETION_POLICIES:
            raise ConfigError(
                f"plan delta.deletions must be one of {', '.join(DELETION_POLICIES)}, "
                f"not {self.deletions!r}"
            )
        if self.deletions == "archive" and not self.archive_field:
            raise ConfigError('plan delta.deletions = "archive" needs delta.archive_field')


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """Everything one migration needs, resolved and validated."""

    name: str
    source: BackDocketConfig
    source_quota: QuotaProfile
    extract: ExtractSettings
    journal: JournalSettings
    output_dir: Path
    destination: DestinationSettings | None = None
    """None for a plan that only extracts."""
    path: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cutover_hours: float | None = None
    """``[migration] cutover_hours``: the window the whole run must fit in; the estimate
    warns when it would not."""
    sample_destination: DestinationSettings | None = None
    """``[sample_destination]``: where ``migrate --sample`` loads (usually a sandbox);
    None: the sample loads into ``destination``."""
    require_approved_sample: bool = False
    """``[migration] require_approved_sample``: a full run starts only after a sample made
    with the same mapping was approved (``crmlift approve``)."""
    delta: DeltaSettings = field(default_factory=lambda: DeltaSettings())
    """``[delta]``: how ``crmlift delta`` merges and what it does with source deletions."""
    audit_acknowledge: tuple[str, ...] = ()
    """``[audit] acknowledge``: ids of blocking audit findings the operator accepts;
    migrate stops on any other blocking finding."""

    def public_settings(self) -> dict[str, Any]:
        """The plan as journaled with a run: every secret replaced by where it comes from."""
        public: dict[str, Any] = _without_secrets(self.raw)
        return public


def load_plan(path: Path, env: Mapping[str, str] | None = None) -> MigrationPlan:
    """Read, resolve and validate a plan file; every problem is one ConfigError."""
    if not str(path).strip() or path == Path():
        raise ConfigError("--plan needs the path of a plan file (TOML)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"plan file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"plan file {path} is a directory, not a TOML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"plan file {path} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"plan file {path} cannot be read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"plan file {path} is not valid TOML: {exc}") from exc
    return parse_plan(raw, env=os.environ if env is None else env, base=path.parent, path=path)


def parse_plan(
    raw: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    base: Path,
    path: Path | None = None,
) -> MigrationPlan:
    """Build a plan from already-parsed TOML; relative paths resolve against ``base``.

    Every key is checked against the schema first, so a typo is refused (with the
    nearest valid key) instead of silently falling back to a default.
    """
    check_keys(raw)
    migration = _table(raw, "migration")
    source = _table(raw, "source")
    extract = _table(raw, "extract", required=False)
    journal = _table(raw, "journal", required=False)

    platform = _get(source, "source.platform", str, "backdocket")
    if platform != "backdocket":
        raise ConfigError(f"source.platform {platform!r} is not supported yet (backdocket)")

    page_size = _get(source, "source.page_size", int, MAX_PAGE_SIZE)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"plan source.page_size must be 1..{MAX_PAGE_SIZE}, not {page_size}")
    config = BackDocketConfig(
        base_url=_url(source, "source.base_url"),
        client_id=_get(source, "source.client_id", str),
        client_secret=_secret(source, "source.client_secret", env),
        page_size=page_size,
        request_timeout=_seconds(source, "source.request_timeout", 120.0),
        page_deadline=_seconds(source, "source.page_deadline", 600.0),
    )
    quota = profile_for(platform, _table(source, "quota", required=False))

    collections = _collections(extract)
    window_records = _get(extract, "extract.window_records", int, 5000)
    if window_records < 1:
        raise ConfigError("extract.window_records must be at least 1")

    data_dir = _path(
        env.get(f"{ENV_PREFIX}DATA_DIR") or journal.get("data_dir"),
        base,
        default=Path(platformdirs.user_data_dir("crmlift")),
    )
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"plan journal.data_dir {data_dir} is a file, not a directory")
    dsn = env.get(f"{ENV_PREFIX}JOURNAL_DSN")
    if dsn is None and "dsn" in journal:
        dsn = _secret(journal, "journal.dsn", env).reveal()
    if dsn is not None:
        _check_dsn(dsn)
    output_dir = _path(migration.get("output_dir"), base, default=base / "crmlift-out")
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"plan migration.output_dir {output_dir} is a file, not a directory")
    name = _get(migration, "migration.name", str).strip()
    if not name:
        raise ConfigError("plan migration.name is empty: name the migration (its runs and id map)")
    return MigrationPlan(
        name=name,
        source=config,
        source_quota=quota,
        extract=ExtractSettings(
            collections=collections,
            window_records=window_records,
            files=_get(extract, "extract.files", bool, True),
            catchup_passes=_get(extract, "extract.catchup_passes", int, 5),
        ),
        journal=JournalSettings(data_dir=data_dir, dsn=dsn),
        output_dir=output_dir,
        destination=with_mapping_file(_destination(raw, env), base),
        path=path,
        raw=raw,
        cutover_hours=_cutover_hours(migration),
        sample_destination=with_mapping_file(_sample_destination(raw, env), base),
        require_approved_sample=_get(migration, "migration.require_approved_sample", bool, False),
        delta=_delta(_table(raw, "delta", required=False)),
        audit_acknowledge=_acknowledge(_table(raw, "audit", required=False)),
    )


def _acknowledge(table: Mapping[str, Any]) -> tuple[str, ...]:
    given = _get(table, "audit.acknowledge", list, [])
    _texts("audit.acknowledge", given)
    return tuple(dict.fromkeys(str(g).strip() for g in given))


def _delta(table: Mapping[str, Any]) -> DeltaSettings:
    archive = _get(table, "delta.archive_field", str, "").strip()
    return DeltaSettings(
        conflicts=_get(table, "delta.conflicts", str, "keep-destination").strip().lower(),
        deletions=_get(table, "delta.deletions", str, "flag").strip().lower(),
        archive_field=archive or None,
        recreate_deleted=_get(table, "delta.recreate_deleted", bool, False),
    )


def _cutover_hours(migration: Mapping[str, Any]) -> float | None:
    value = migration.get("cutover_hours")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"plan migration.cutover_hours must be a number of hours > 0, not {value!r}"
        )
    return float(value)


def _sample_destination(
    raw: Mapping[str, Any], env: Mapping[str, str]
) -> DestinationSettings | None:
    """``[sample_destination]``: read as ``[destination]`` is (same keys, same [mapping] and
    [load]), its errors naming the table; it must be the same platform, since a sample
    checks the mapping the full run will use."""
    if not isinstance(raw.get("sample_destination"), dict):
        _table(raw, "sample_destination", required=False)  # a non-table is refused here
        return None
    if not isinstance(raw.get("destination"), dict):
        raise ConfigError("plan [sample_destination] needs a [destination] table as well")
    try:
        sample = _destination(raw, env, "sample_destination")
    except ConfigError as exc:
        raise ConfigError(re.sub(r"\bdestination\.", "sample_destination.", str(exc))) from exc
    platform = raw["destination"].get("platform")
    if sample is not None and sample.platform != platform:
        raise ConfigError(
            f"plan sample_destination.platform {sample.platform!r} must be the destination's "
            f"({platform!r}): a sample checks the mapping the full run will use"
        )
    return sample


def _destination(
    raw: Mapping[str, Any], env: Mapping[str, str], where: str = "destination"
) -> DestinationSettings | None:
    table = _table(raw, where, required=False)
    if not table:
        return None
    platform = _get(table, "destination.platform", str)
    parse = _DESTINATION_CONFIGS.get(platform)
    if parse is None:
        known = ", ".join(sorted(_DESTINATION_CONFIGS))
        raise ConfigError(f"destination.platform {platform!r} is not supported ({known})")
    mapping = _table(raw, "mapping", required=False)
    _check_mapping(platform, mapping)
    config = parse(table, mapping, env)
    load = _table(raw, "load", required=False)
    batch_records = _get(load, "load.batch_records", int, 2500)
    batches_in_flight = _get(load, "load.batches_in_flight", int, 24)
    if batch_records < 1 or batches_in_flight < 1:
        raise ConfigError("load.batch_records and load.batches_in_flight must be at least 1")
    return DestinationSettings(
        platform=platform,
        config=config,
        quota=profile_for(platform, _table(table, "quota", required=False)),
        fallback_owner_email=_get(table, "destination.fallback_owner_email", str),
        mapping=mapping,
        batch_records=batch_records,
        batches_in_flight=batches_in_flight,
        owners=_owners(table),
    )


OWNER_POLICIES = ("fallback", "strict")


def _owners(table: Mapping[str, Any]) -> str:
    """``[destination] owners``: what the audit makes of staff with no destination user."""
    value = str(_get(table, "destination.owners", str, "fallback")).strip().lower()
    if value not in OWNER_POLICIES:
        raise ConfigError(
            f"plan destination.owners must be one of {', '.join(OWNER_POLICIES)}, not {value!r}"
        )
    return value


def _salesforce(
    table: Mapping[str, Any], mapping: Mapping[str, Any], env: Mapping[str, str]
) -> SalesforceConfig:
    bulk_threshold = _get(table, "destination.bulk_threshold", int, 2000)
    if bulk_threshold < 1:
        raise ConfigError("destination.bulk_threshold must be at least 1")
    config = SalesforceConfig(
        login_url=_url(table, "destination.login_url"),
        client_id=_get(table, "destination.client_id", str),
        client_secret=_secret(table, "destination.client_secret", env),
        api_version=_get(table, "destination.api_version", str, "59.0"),
        bulk_threshold=bulk_threshold,
        ca_file=_ca_file(table),
    )
    return config


def _dynamics(
    table: Mapping[str, Any], mapping: Mapping[str, Any], env: Mapping[str, str]
) -> DataverseConfig:
    """A Dataverse environment and its pool of application users.

    ``client_id``/``client_secret`` is the first application user; each
    ``[[destination.applications]]`` adds one (service protection is per user).
    """
    applications = [
        Application(
            _get(table, "destination.client_id", str),
            _secret(table, "destination.client_secret", env),
        )
    ]
    extra = _get(table, "destination.applications", list, [])
    for index, app in enumerate(extra):
        if not isinstance(app, dict):
            raise ConfigError(f"destination.applications[{index}] must be a table")
        applications.append(
            Application(
                _get(app, f"destination.applications[{index}].client_id", str),
                _secret(app, f"destination.applications[{index}].client_secret", env),
            )
        )
    batch_size = _get(table, "destination.batch_size", int, DEFAULT_BATCH_SIZE)
    if not 1 <= batch_size <= MAX_BATCH_REQUESTS:
        raise ConfigError(f"destination.batch_size must be 1..{MAX_BATCH_REQUESTS}")
    return DataverseConfig(
        environment_url=_url(table, "destination.environment_url").rstrip("/"),
        tenant_id=_get(table, "destination.tenant_id", str),
        applications=tuple(applications),
        publisher_prefix=_get(mapping, "mapping.publisher_prefix", str, "crm"),
        api_url=_url(table, "destination.api_url", None),
        authority_url=_url(table, "destination.authority_url", "https://login.microsoftonline.com"),
        batch_size=batch_size,
        ca_file=_ca_file(table),
        sharepoint=_sharepoint(table, mapping),
    )


def _sharepoint(table: Mapping[str, Any], mapping: Mapping[str, Any]) -> SharePointConfig | None:
    """Where files over the attachment limit go: ``[mapping] sharepoint_site`` (the site
    document management uses; ``sharepoint_site_id`` optional), reached at
    ``destination.sharepoint_url`` (default: the site's host) with a token for
    ``destination.sharepoint_scope`` (default: ``<that host>/.default``)."""
    site = _get(mapping, "mapping.sharepoint_site", str, None)
    if not site:
        return None
    try:
        return SharePointConfig(
            site_url=site.rstrip("/"),
            api_url=_url(table, "destination.sharepoint_url", None),
            scope=_get(table, "destination.sharepoint_scope", str, None),
            site_id=_get(mapping, "mapping.sharepoint_site_id", str, None),
        )
    except ValueError as exc:
        raise ConfigError(f"plan mapping.sharepoint_site: {exc}") from exc


_DESTINATION_CONFIGS: dict[
    str,
    Callable[
        [Mapping[str, Any], Mapping[str, Any], Mapping[str, str]],
        SalesforceConfig | DataverseConfig,
    ],
] = {"salesforce": _salesforce, "dynamics": _dynamics}
"""Destination platform → how its ``[destination]`` table is read."""


def salesforce_config(config: object) -> SalesforceConfig:
    """``config`` as a Salesforce org's settings; a mismatched plan is a ConfigError."""
    if not isinstance(config, SalesforceConfig):
        raise ConfigError("a salesforce destination needs Salesforce settings")
    return config


def dataverse_config(config: object) -> DataverseConfig:
    """``config`` as a Dataverse environment's settings; a mismatch is a ConfigError."""
    if not isinstance(config, DataverseConfig):
        raise ConfigError("a dynamics destination needs Dataverse settings")
    return config


_MISSING = object()


_QUOTA_KEYS = frozenset(BUILDER_KEYS | {f.name for f in fields(QuotaProfile)} - {"platform"})
"""A ``[*.quota]`` table: an edition and its licences, or any profile setting outright."""

PLAN_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset(
        {
            "migration",
            "source",
            "extract",
            "destination",
            "sample_destination",
            "mapping",
            "load",
            "journal",
            "delta",
            "audit",
        }
    ),
    "migration": frozenset({"name", "output_dir", "cutover_hours", "require_approved_sample"}),
    "source": frozenset(
        {
            "platform",
            "base_url",
            "client_id",
            "client_secret",
            "page_size",
            "quota",
            "request_timeout",
            "page_deadline",
        }
    ),
    "source.quota": _QUOTA_KEYS,
    "extract": frozenset({"collections", "window_records", "files", "catchup_passes"}),
    "load": frozenset({"batch_records", "batches_in_flight"}),
    "journal": frozenset({"dsn", "data_dir"}),
    "delta": frozenset({"conflicts", "deletions", "archive_field", "recreate_deleted"}),
    "audit": frozenset({"acknowledge"}),
    "destination.quota": _QUOTA_KEYS,
    "destination.applications": frozenset({"client_id", "client_secret"}),
}
"""The plan's schema: the keys each table may hold (``destination`` and ``mapping``
depend on the platform, below). Anything else is a typo, refused at load time."""

_COMMON_DESTINATION_KEYS = frozenset(
    {"platform", "client_id", "client_secret", "fallback_owner_email", "ca_file", "quota", "owners"}
)
DESTINATION_KEYS: Mapping[str, frozenset[str]] = {
    "salesforce": _COMMON_DESTINATION_KEYS | {"login_url", "api_version", "bulk_threshold"},
    "dynamics": _COMMON_DESTINATION_KEYS
    | {
        "environment_url", "tenant_id", "batch_size", "api_url", "authority_url",
        "sharepoint_url", "sharepoint_scope", "applications",
    },
}  # fmt: skip
"""``[destination]`` keys by platform."""


Check = Callable[[str, Any], None]
"""Refuses (ConfigError naming the key) a ``[mapping]`` value the pair cannot use."""


def _positive_int(name: str, value: Any) -> None:
    # -1 or 0 would silently treat every file as oversized: refused, not guessed at.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"plan {name} must be a whole number ≥ 1, not {value!r}")


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"plan {name} must be a non-empty string, not {value!r}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"plan {name} must be true or false, not {value!r}")


def _texts(name: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"plan {name} must be a list of strings, not {value!r}")


def _one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ConfigError(f"plan {name} must be one of {', '.join(choices)}, not {value!r}")

    return check


MAPPING_KEYS: Mapping[str, Mapping[str, Check]] = {
    "salesforce": {
        "max_file_bytes": _positive_int,
        "file": _text,
        "require_confirmed": _flag,
        "intake_case_forms": _texts,
        "state_country_picklists": _flag,
    },
    "dynamics": {
        "publisher_prefix": _text,
        "max_attachment_bytes": _positive_int,
        "sharepoint_site": _text,
        "sharepoint_site_id": _text,
        "sharepoint_documents": _one_of(*SHAREPOINT_MODES),
        "firm_domains": _texts,
        "file": _text,
        "require_confirmed": _flag,
    },
}
"""``[mapping]`` settings each pair reads, and what each must hold. The pairs read them
lazily, mid-run; checking them here means a bad value stops the plan, not the load."""


def check_keys(raw: Mapping[str, Any]) -> None:
    """Refuse any key the schema does not know, naming the nearest valid one."""
    _known(raw, "", PLAN_KEYS[""])
    for where in ("migration", "source", "extract", "load", "journal", "delta", "audit"):
        _known(raw.get(where), where, PLAN_KEYS[where])
    source = raw.get("source")
    if isinstance(source, dict):
        _known(source.get("quota"), "source.quota", PLAN_KEYS["source.quota"])
    destination = raw.get("destination")
    if not isinstance(destination, dict):
        any_pair = frozenset(k for checks in MAPPING_KEYS.values() for k in checks)
        _known(raw.get("mapping"), "mapping", any_pair)
        return
    for where in ("destination", "sample_destination"):
        _known_destination(raw.get(where), where)


def _known_destination(destination: Any, where: str) -> None:
    """``[destination]`` or ``[sample_destination]``: the keys its platform takes."""
    if not isinstance(destination, dict):
        return
    keys = DESTINATION_KEYS.get(str(destination.get("platform")))
    if keys is None:
        return  # the platform itself is refused, naming the known ones, when it is read
    _known(destination, where, keys)
    _known(destination.get("quota"), f"{where}.quota", PLAN_KEYS["destination.quota"])
    applications = destination.get("applications")
    for index, app in enumerate(applications if isinstance(applications, list) else []):
        _known(app, f"{where}.applications[{index}]", PLAN_KEYS["destination.applications"])


def _known(table: Any, where: str, known: frozenset[str]) -> None:
    if not isinstance(table, dict):
        return  # not a table: its reader says so with the right type
    unknown = sorted(set(table) - known)
    if not unknown:
        return
    key, prefix = unknown[0], f"{where}." if where else ""
    near = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {prefix}{near[0]}?" if near else f"known: {', '.join(sorted(known))}"
    raise ConfigError(f"plan {prefix}{key} is not a known setting; {hint}")


def _check_mapping(platform: str, mapping: Mapping[str, Any]) -> None:
    checks = MAPPING_KEYS[platform]
    _known(mapping, "mapping", frozenset(checks))
    for key, value in mapping.items():
        checks[key](f"mapping.{key}", value)


def _collections(extract: Mapping[str, Any]) -> tuple[str, ...]:
    given: list[Any] = _get(extract, "extract.collections", list, list(COLLECTIONS))
    unknown = [repr(c) for c in given if not isinstance(c, str) or c not in COLLECTIONS]
    if unknown or not given:
        named = ", ".join(unknown) or "(none given)"
        raise ConfigError(
            f"plan extract.collections: unknown collection(s) {named}; "
            f"known: {', '.join(COLLECTIONS)}"
        )
    return tuple(given)


def _url(table: Mapping[str, Any], name: str, default: Any = _MISSING) -> Any:
    """An http(s) URL with a host; a malformed one is refused here, not as a traceback
    from the first request."""
    value = _get(table, name, str, default)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # an out-of-range or non-numeric port raises here
    except ValueError as exc:
        raise ConfigError(f"plan {name} {value!r} is not a valid URL: {exc}") from exc
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in host):
        raise ConfigError(f"plan {name} {value!r} must be an http(s) URL like https://host")
    return value


def _ca_file(table: Mapping[str, Any]) -> str | None:
    value: str | None = _get(table, "destination.ca_file", str, None)
    if value is not None and not Path(value).expanduser().is_file():
        raise ConfigError(f"plan destination.ca_file {value} is not a readable file")
    return value


def _check_dsn(dsn: str) -> None:
    """asyncpg takes a DSN in the libpq *URI* form only
    (https://magicstack.github.io/asyncpg/current/api/index.html#connection).
    The DSN holds a password: the message never repeats it."""
    try:
        parts = urlsplit(dsn)
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"the journal DSN is malformed ({exc}); want postgresql://…") from exc
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            "the journal DSN (CRMLIFT_JOURNAL_DSN or journal.dsn) must be a URI like "
            "postgresql://user@host:5432/database"
        )


def ensure_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if need be and prove it writable before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be created: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} is not writable")
    return path


def _table(raw: Mapping[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"plan has no [{key}] table")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"plan key {key!r} must be a table")
    return value


def _get(table: Mapping[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    key = name.rsplit(".", 1)[-1]
    if key not in table:
        if default is _MISSING:
            raise ConfigError(f"plan is missing {name}")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"plan {name} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _seconds(table: Mapping[str, Any], name: str, default: float) -> float:
    """A positive number of seconds (an int or a float in the plan)."""
    key = name.rsplit(".", 1)[-1]
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"plan {name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _secret(table: Mapping[str, Any], name: str, env: Mapping[str, str]) -> Secret:
    key = name.rsplit(".", 1)[-1]
    ref = table.get(key)
    if not (isinstance(ref, dict) and set(ref) == {"env"} and isinstance(ref["env"], str)):
        raise ConfigError(
            f'plan {name} must be an environment reference like {{ env = "NAME" }}; '
            "secrets are never written in the plan"
        )
    value = env.get(ref["env"])
    if not value:
        raise ConfigError(f"plan {name}: environment variable {ref['env']} is not set")
    return Secret(value, source=f"env:{ref['env']}")


def _path(value: Any, base: Path, *, default: Path) -> Path:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"plan path {value!r} must be a string")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return {"env": value["env"]}
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
