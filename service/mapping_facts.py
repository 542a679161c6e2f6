"""What a mapping file is proposed from and checked against: the source's custom field
definitions, the pair's value maps and schema plan, and the destination's own columns.

One place gathers them, so ``crmlift mapping propose`` and ``crmlift mapping confirm``
judge a file by the same facts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.base import Column, Record
from adapters.errors import ConfigError
from adapters.salesforce.client import SALESFORCE_KINDS
from journal import open_journal
from service.approval import read_definitions
from service.context import staged
from service.mapping import backdocket_dynamics as dynamics
from service.mapping import backdocket_salesforce as salesforce
from service.mapping import value_maps_dynamics, value_maps_salesforce
from service.mapping.value_maps_common import ValueMap
from service.mapping_file import Facts
from service.pairs import pair_for
from service.plan import DestinationSettings, MigrationPlan

DATAVERSE_PLAN_KINDS: Mapping[str, str] = {
    "string": "text",
    "memo": "textarea",
    "decimal": "number",
    "money": "currency",
    "dateonly": "date",
    "datetime": "datetime",
    "boolean": "boolean",
    "picklist": "picklist",
    "multiselectpicklist": "multipicklist",
    "lookup": "lookup",
}
"""The Dataverse schema plan's column types as ``Column.kind``."""


@dataclass(frozen=True, slots=True)
class MappingFacts:
    """Everything a proposal is made from and a confirmation checked against."""

    platform: str
    prefix: str
    definitions: list[Record]
    value_maps: tuple[ValueMap, ...]
    planned: Mapping[str, Mapping[str, str]]
    """Entity → custom field key → ``Object.field`` the schema plan deploys for it."""
    not_deployed: Mapping[tuple[str, str], str]
    """(entity, key) → why the pair gives it no field on purpose."""
    homes: Mapping[str, tuple[str, ...]]
    columns: Mapping[str, Mapping[str, Column]]
    """Object → field → Column: the destination's own, else the schema plan's."""
    described: Mapping[str, frozenset[str]]
    """Object → the fields the destination has now (an object it lacks is absent)."""

    def check_facts(self) -> Facts:
        by_key: dict[str, dict[str, Mapping[str, Any]]] = {}
        for d in self.definitions:
            if d.get("key"):
                by_key.setdefault(str(d.get("entity")), {})[str(d["key"])] = d
        targets = {m.name: m.target_fields(self.prefix) for m in self.value_maps}
        return Facts(by_key, self.columns, self.homes, targets)

    def planned_option(self, definition: Mapping[str, Any], option: str) -> str | int:
        """A custom picklist option as the schema plan's own field takes it."""
        if self.platform == "dynamics":
            options = (str(o) for o in definition.get("options") or ())
            return value_maps_dynamics.option_values(options)[option]
        return option


async def gather(plan: MigrationPlan, run_id: str | None = None) -> MappingFacts:
    """Read the definitions (now from the source, or as run ``run_id`` staged them) and
    describe every object the pair writes."""
    destination = _destination(plan)
    if run_id is None:
        definitions = await read_definitions(plan)
    else:
        async with open_journal(plan.journal) as journal:
            run = await journal.runs.get(run_id)
            if run.migration != plan.name:
                raise ConfigError(f"run {run_id} is not a run of migration {plan.name!r}")
            definitions = await staged(journal, run, "custom_field_definitions")
    pair = pair_for(destination.platform)
    objects = pair.objects(destination.mapping)
    async with pair.open_client(destination.config, destination.quota) as client:
        described = await asyncio.gather(*(client.describe(o) for o in objects))
    facts = pair_facts(destination, definitions)
    columns = {name: dict(cols) for name, cols in facts.columns.items()}
    present: dict[str, frozenset[str]] = {}
    for name, info in zip(objects, described, strict=True):
        if info is not None:
            columns.setdefault(name, {}).update(info.columns)
            present[name] = info.fields
    return MappingFacts(
        facts.platform, facts.prefix, definitions, facts.value_maps, facts.planned,
        facts.not_deployed, facts.homes, columns, present,
    )  # fmt: skip


def _destination(plan: MigrationPlan) -> DestinationSettings:
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table; a mapping maps into one")
    return plan.destination


def pair_facts(destination: DestinationSettings, definitions: Sequence[Record]) -> MappingFacts:
    """The pair's side alone (no destination call): value maps and the schema plan."""
    if destination.platform == "salesforce":
        return _salesforce(list(definitions))
    prefix = str(destination.mapping.get("publisher_prefix") or dynamics.DEFAULT_PREFIX)
    return _dynamics(list(definitions), prefix, bool(destination.mapping.get("sharepoint_site")))


def _salesforce(definitions: list[Record]) -> MappingFacts:
    specs = salesforce.gate_fields(salesforce.schema_plan(definitions))
    columns = {
        name: {
            f.name: Column(
                kind=SALESFORCE_KINDS.get(f.type, "other"),
                length=f.length,
                choices=f.picklist_values,
                labels=f.picklist_values,
                restricted=f.restricted,
            )
            for f in fields
        }
        for name, fields in specs.items()
    }
    homes = {e: (o,) for e, o in salesforce.CUSTOM_FIELD_RECORDS.items()}
    planned = salesforce.custom_field_targets(definitions)
    return MappingFacts(
        "salesforce", "", definitions, value_maps_salesforce.VALUE_MAPS, planned,
        _unplaced(definitions, planned, "Salesforce"), homes, columns, {},
    )  # fmt: skip


def _dynamics(definitions: list[Record], prefix: str, sharepoint: bool) -> MappingFacts:
    tables = dynamics.schema_plan(definitions, prefix, sharepoint=sharepoint)["tables"]
    columns = {
        name: {column: _dataverse_column(spec) for column, spec in table["columns"].items()}
        for name, table in tables.items()
    }
    homes = {e: (t.format(prefix=prefix),) for e, t in dynamics.CUSTOM_FIELD_TABLES.items()}
    planned = dynamics.custom_column_targets(definitions, prefix)
    not_deployed = _unplaced(definitions, planned, "Dataverse")
    for d in definitions:
        entity, key = str(d.get("entity")), str(d.get("key") or "")
        if entity in dynamics.NOTE_TEXT_ENTITIES:
            not_deployed[(entity, key)] = (
                "written into the note's text as 'Label: value' (Dataverse notes take no "
                "custom column)"
            )
        elif d.get("type") == "computed" and entity in dynamics.CUSTOM_FIELD_TABLES:
            not_deployed[(entity, key)] = (
                "computed in BackDocket: Dataverse computes its own, so the schema plan "
                "decomposes it (rebuild it as a calculated or formula column)"
            )
    return MappingFacts(
        "dynamics", prefix, definitions, value_maps_dynamics.VALUE_MAPS, planned, not_deployed,
        homes, columns, {},
    )  # fmt: skip


def _dataverse_column(spec: Mapping[str, Any]) -> Column:
    options = spec.get("options") or ()
    kind = DATAVERSE_PLAN_KINDS.get(str(spec.get("type")), "other")
    return Column(
        kind=kind,
        length=spec.get("max_length"),
        choices=tuple(str(o["value"]) for o in options),
        labels=tuple(str(o["label"]) for o in options),
        restricted=kind in ("picklist", "multipicklist"),
    )


def _unplaced(
    definitions: Sequence[Record], planned: Mapping[str, Mapping[str, str]], platform: str
) -> dict[tuple[str, str], str]:
    """Definitions of entities whose records take no custom field in this pair."""
    return {
        (str(d.get("entity")), str(d["key"])): (
            f"{d.get('entity')} records become no {platform} record that takes their custom "
            "fields in this pair; not migrated"
        )
        for d in definitions
        if d.get("key") and str(d["key"]) not in planned.get(str(d.get("entity")), {})
    }
