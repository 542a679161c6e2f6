"""The source → destination pairs the engine can run, each as one value.

``service/`` never asks which platform it is talking to: a migration looks its
pair up here by the plan's destination and uses what the pair carries — the
mapping's transform and load order, its schema plan, its owner matching, and
how to open the destination's client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from adapters.base import Destination, Record
from adapters.dynamics.client import DataverseClient
from adapters.errors import ConfigError
from adapters.salesforce.client import SalesforceClient
from ratelimit.governor import Governor
from ratelimit.profiles import QuotaProfile
from service import budget
from service.budget import PlatformBudget
from service.mapping import backdocket_dynamics as dynamics
from service.mapping import backdocket_salesforce as salesforce
from service.mapping.backdocket import OwnerResolution
from service.mapping.base import MappingContext, Payload, TransformResult
from service.plan import dataverse_config, salesforce_config

Transform = Callable[[str, Record, MappingContext], TransformResult]


@dataclass(frozen=True, slots=True)
class SchemaPlan:
    """What the destination's admin deploys before the run, as the gate checks it."""

    fields: Mapping[str, tuple[str, ...]]
    """Destination object → the fields the plan adds to it."""
    lookups: Mapping[str, Mapping[str, tuple[str, ...]]]
    """Destination object → lookup field of the plan → the objects it points at."""
    document: bytes
    """``schema-plan.json``: the plan in the pair's own format, for the admin."""
    deployed: tuple[str, ...] = ()
    """The objects the plan's document has the admin deploy or change (on Salesforce,
    Activity's fields appear on Task and Event, which ``fields`` checks)."""
    settings: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Destination object → org settings the admin must switch on for it, named as
    ``ObjectInfo.settings`` names them (Allow Activities, HasNotes, …)."""

    @property
    def field_count(self) -> int:
        return sum(len(f) for f in self.fields.values())


class DestinationClient(Destination, Protocol):
    """A destination adapter that is also the ``async with`` owning its connections."""

    @property
    def governors(self) -> list[Governor]:
        """Every governor its calls go through (one per principal), for stats."""
        ...

    async def __aenter__(self) -> DestinationClient: ...

    async def __aexit__(self, *exc: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Pair:
    """One source → destination mapping and the destination it loads."""

    destination: str
    transform: Transform
    load_order: tuple[str, ...]
    depends_on: Mapping[str, tuple[str, ...]]
    objects: Callable[[Mapping[str, Any]], list[str]]
    """Destination objects the pair writes, given the plan's ``[mapping]`` settings."""
    schema_plan: Callable[[Sequence[Record], Mapping[str, Any]], SchemaPlan]
    resolve_owners: Callable[[Sequence[Record], Mapping[str, str], str], OwnerResolution]
    first_payloads: Callable[[str], list[tuple[str, Payload]]]
    """Records the pair loads before any wave, given the fallback owner."""
    context_settings: Callable[[Mapping[str, Sequence[Record]]], dict[str, Any]]
    """Mapping settings worked out from staged collections (``needs``), once per run."""
    needs: tuple[str, ...]
    """Staged collections ``context_settings`` reads."""
    dedupe_key: Callable[[Record], str | None]
    open_client: Callable[[Any, QuotaProfile], DestinationClient]
    """The destination client for the plan's destination config and quota."""
    budget: PlatformBudget
    """What a load costs the destination and how long its quotas allow (the estimate)."""


SALESFORCE_ACTIVITIES = "enableActivities"
"""Allow Activities, as the Metadata API names it: tasks and events may point at the object."""

DATAVERSE_SETTINGS = ("HasActivities", "HasNotes", "IsDocumentManagementEnabled")
"""Table options the Dataverse plan may require, as EntityMetadata names them; a plan
table asks for one with ``"HasNotes": true``."""


SETTING_HELP: Mapping[str, str] = {
    SALESFORCE_ACTIVITIES: "Allow Activities (Setup → Object Manager → the object → Edit)",
    "StateCountryPicklists": "State and Country/Territory Picklists on (Setup → State and "
    "Country/Territory Picklists), as [mapping] state_country_picklists = true expects",
    "StateCountryText": "free-text states and countries; an org with State and "
    "Country/Territory Picklists on needs [mapping] state_country_picklists = true",
    "HasActivities": "Activities (table properties → Enable for activities)",
    "HasNotes": "Notes (table properties → Enable attachments, including notes and files)",
    "IsDocumentManagementEnabled": "Document management (table properties → Enable for "
    "SharePoint document management)",
}
"""What each org setting a plan may require means to the admin, and where it is switched on."""


def setting_help(setting: str) -> str:
    """How the admin gets ``setting``, for the gate's refusal and ``crmlift schema``."""
    return SETTING_HELP.get(setting, setting)


def _salesforce_plan(definitions: Sequence[Record], settings: Mapping[str, Any]) -> SchemaPlan:
    wanted = salesforce.schema_plan(definitions)
    # Fields deployed on Activity are checked on Task and Event, where describe shows them.
    specs = salesforce.gate_fields(wanted)
    fields = {name: tuple(f.name for f in fs) for name, fs in specs.items()}
    lookups = {
        name: {f.name: f.reference_to for f in fs if f.reference_to} for name, fs in specs.items()
    }
    # Allow Activities (SALESFORCE_ACTIVITIES) where the plan asks for it, and the state and
    # country fields that [mapping] state_country_picklists expects.
    org_settings = salesforce.required_settings(wanted, settings)
    document = {**orjson.loads(wanted.to_json()), **_settings_section(org_settings)}
    return SchemaPlan(fields, lookups, _indented(document), tuple(wanted.objects), org_settings)


def _dynamics_plan(definitions: Sequence[Record], settings: Mapping[str, Any]) -> SchemaPlan:
    sharepoint = bool(settings.get("sharepoint_site"))
    wanted = dynamics.schema_plan(definitions, _prefix(settings), sharepoint=sharepoint)
    tables = wanted["tables"]
    # A table's "lookups" are standard ones the load binds: checked like planned columns.
    fields = {name: (*spec["columns"], *spec.get("lookups", {})) for name, spec in tables.items()}
    lookups = {
        name: {
            c: (col["target"],)
            for c, col in (*spec["columns"].items(), *spec.get("lookups", {}).items())
            if col.get("target")
        }
        for name, spec in tables.items()
    }
    org_settings = {
        name: frozenset(s for s in DATAVERSE_SETTINGS if spec.get(s))
        for name, spec in tables.items()
        if any(spec.get(s) for s in DATAVERSE_SETTINGS)
    }
    document = {**wanted, **_settings_section(org_settings)}
    return SchemaPlan(fields, lookups, _indented(document), tuple(tables), org_settings)


def with_archive_field(wanted: SchemaPlan, archive_field: str, platform: str) -> SchemaPlan:
    """The schema plan with ``[delta] archive_field`` on every object the plan adds fields
    to (every object crmlift upserts by external id): ``deletions = "archive"`` sets it on a
    record the source deleted, so the gate requires it before a delta writes anything."""
    kind = {"salesforce": "Checkbox", "dynamics": "Boolean"}.get(platform, "boolean")
    objects = sorted(wanted.fields)
    fields = {name: (*wanted.fields[name], archive_field) for name in objects}
    section = {"delta_archive_field": {"field": archive_field, "type": kind, "default": False,
                                       "objects": objects}}  # fmt: skip
    document = _indented({**orjson.loads(wanted.document), **section})
    return replace(wanted, fields=fields, document=document)


def _settings_section(org_settings: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """The plan's checklist of org settings, beside the objects that carry them: what the
    admin switches on before the run (the gate refuses to start without them)."""
    return {
        "org_settings": {
            name: [{"setting": s, "how": setting_help(s)} for s in sorted(settings)]
            for name, settings in sorted(org_settings.items())
        }
    }


def _indented(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def _prefix(settings: Mapping[str, Any]) -> str:
    return str(settings.get("publisher_prefix") or dynamics.DEFAULT_PREFIX)


def _salesforce_client(config: Any, quota: QuotaProfile) -> DestinationClient:
    return SalesforceClient(salesforce_config(config), Governor(quota))


def _dynamics_client(config: Any, quota: QuotaProfile) -> DestinationClient:
    return DataverseClient(dataverse_config(config), quota)


BACKDOCKET_SALESFORCE = Pair(
    destination="salesforce",
    transform=salesforce.transform,
    load_order=salesforce.LOAD_ORDER,
    depends_on=salesforce.DEPENDS_ON,
    objects=lambda settings: sorted(
        {o for objs in salesforce.COLLECTION_OBJECTS.values() for o in objs}
    ),
    schema_plan=_salesforce_plan,
    resolve_owners=salesforce.resolve_owners,
    first_payloads=lambda owner: [("companies", salesforce.unassigned_account(owner))],
    context_settings=lambda staged: {},
    needs=(),
    dedupe_key=salesforce.dedupe_key,
    open_client=_salesforce_client,
    budget=budget.SALESFORCE,
)

BACKDOCKET_DYNAMICS = Pair(
    destination="dynamics",
    transform=dynamics.transform,
    load_order=dynamics.LOAD_ORDER,
    depends_on=dynamics.DEPENDS_ON,
    objects=lambda settings: sorted(
        {
            o
            for objs in dynamics.collection_objects(
                _prefix(settings), bool(settings.get("sharepoint_site"))
            ).values()
            for o in objs
        }
    ),
    schema_plan=_dynamics_plan,
    resolve_owners=dynamics.resolve_owners,
    first_payloads=lambda owner: [],
    context_settings=lambda staged: {
        "matter_customers": dynamics.matter_customers(staged.get("matters", ()))
    },
    needs=("matters",),
    dedupe_key=salesforce.dedupe_key,
    open_client=_dynamics_client,
    budget=budget.DYNAMICS,
)

PAIRS: dict[str, Pair] = {p.destination: p for p in (BACKDOCKET_SALESFORCE, BACKDOCKET_DYNAMICS)}


def pair_for(destination: str) -> Pair:
    """The BackDocket pair loading into ``destination``."""
    try:
        return PAIRS[destination]
    except KeyError as exc:
        known = ", ".join(sorted(PAIRS))
        raise ConfigError(f"no mapping into {destination!r}; known destinations: {known}") from exc
