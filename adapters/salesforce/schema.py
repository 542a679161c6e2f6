"""A Salesforce org's schema as data: objects, fields, types, picklists, external ids.

The schema plan crmlift proposes, the file a simulator is started with, and
what ``describe`` answers are all this one shape, so a missing object or field
can be planned, simulated and detected the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

FieldType = Literal[
    "id",
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "multipicklist",
    "combobox",
    "reference",
    "boolean",
    "date",
    "datetime",
    "double",
    "int",
    "currency",
    "percent",
    "base64",
]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an object, as describe reports it."""

    name: str
    type: FieldType
    label: str = ""
    length: int | None = None
    """Maximum characters for text types."""
    required: bool = False
    """Not nillable and not defaulted on create: inserts without it fail."""
    external_id: bool = False
    unique: bool = False
    picklist_values: tuple[str, ...] = ()
    restricted: bool = False
    """A restricted picklist rejects values outside ``picklist_values``."""
    reference_to: tuple[str, ...] = ()
    precision: int | None = None
    scale: int | None = None
    createable: bool = True
    updateable: bool = True
    master_detail: bool = False
    """A master-detail relationship (``reference_to`` is the master): required, and not
    updateable unless ``reparentable`` (Metadata API ``CustomField.reparentableMasterDetail``)."""
    reparentable: bool = False


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One sObject and its fields."""

    name: str
    label: str
    custom: bool = False
    fields: tuple[FieldSpec, ...] = ()
    key_prefix: str = ""
    """The three characters every record id of this object starts with."""
    enable_activities: bool = False
    """"Allow Activities" (Metadata API ``CustomObject.enableActivities``): tasks and events
    may point at its records (``WhatId``). Standard objects that take activities have it."""

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name`` (case-insensitive, as Salesforce matches)."""
        lowered = name.lower()
        return next((f for f in self.fields if f.name.lower() == lowered), None)


ACTIVITY = "Activity"
"""Where Task and Event custom fields are defined: one definition shows on both objects
(Object Reference "Activity",
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_activity.htm)."""


@dataclass(frozen=True, slots=True)
class OrgSchema:
    """Objects by API name, plus the org-wide settings a schema file may switch on."""

    objects: Mapping[str, ObjectSpec] = field(default_factory=dict)
    state_country_picklists: bool = False
    """State and Country/Territory Picklists: addresses get ``…StateCode``/``…CountryCode``
    picklists of ISO codes and free-text values must be a valid integration value
    (https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm)."""

    def get(self, name: str) -> ObjectSpec | None:
        """The object called ``name`` (case-insensitive)."""
        lowered = name.lower()
        return next((o for k, o in self.objects.items() if k.lower() == lowered), None)

    def merged(self, other: OrgSchema) -> OrgSchema:
        """This schema with ``other``'s objects added and its fields added to ours."""
        objects = dict(self.objects)
        for name, spec in other.objects.items():
            mine = objects.get(name)
            if mine is None:
                objects[name] = spec
                continue
            known = {f.name.lower() for f in mine.fields}
            extra = tuple(f for f in spec.fields if f.name.lower() not in known)
            objects[name] = ObjectSpec(
                mine.name,
                mine.label,
                mine.custom,
                mine.fields + extra,
                mine.key_prefix,
                mine.enable_activities or spec.enable_activities,
            )
        return OrgSchema(objects, self.state_country_picklists or other.state_country_picklists)

    def to_json(self) -> bytes:
        """The schema file format: ``{"objects": {name: {...}}, "state_country_picklists": …}``."""
        return orjson.dumps(
            {
                "objects": {n: asdict(o) for n, o in self.objects.items()},
                "state_country_picklists": self.state_country_picklists,
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> OrgSchema:
        """Read the schema file format."""
        raw: dict[str, Any] = orjson.loads(data)
        objects = {}
        for name, spec in raw.get("objects", {}).items():
            fields = tuple(
                FieldSpec(
                    **{
                        **f,
                        "picklist_values": tuple(f.get("picklist_values", ())),
                        "reference_to": tuple(f.get("reference_to", ())),
                    }
                )
                for f in spec.get("fields", ())
            )
            objects[name] = ObjectSpec(
                name=spec.get("name", name),
                label=spec.get("label", name),
                custom=spec.get("custom", name.endswith("__c")),
                fields=fields,
                key_prefix=spec.get("key_prefix", ""),
                enable_activities=bool(spec.get("enable_activities", False)),
            )
        return cls(objects, bool(raw.get("state_country_picklists", False)))

    def save(self, path: Path) -> None:
        """Write the schema file."""
        path.write_bytes(self.to_json())

    @classmethod
    def load(cls, path: Path) -> OrgSchema:
        """Read a schema file."""
        return cls.from_json(path.read_bytes())
