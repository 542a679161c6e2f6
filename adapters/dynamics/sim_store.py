"""The simulated Dataverse org's tables, metadata and values (destinations.md §2.2, §2.7, §2.8).

Kept apart from HTTP so ``$batch`` changesets and single requests run the very same
code, and so a changeset can be rolled back through an undo journal.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ERR_VALIDATION = "0x80044331"
"""Length exceeded and other attribute validation (destinations.md §2.7)."""
ERR_DUPLICATE_KEY = "0x80040237"
"""'A record with matching key values already exists.' (destinations.md §2.7)."""
ERR_DOES_NOT_EXIST = "0x80040217"
"""'<entity> With Id = <id> Does Not Exist' (destinations.md §2.2)."""
ERR_BAD_PROPERTY = "0x80060888"
"""OData payload/URL names a property the type does not have [INFER]."""
ERR_BAD_VALUE = "0x80048d19"
"""A literal that cannot convert to the attribute's type [INFER]."""
ERR_VERSION_MISMATCH = "0x80060882"
"""ETag/RowVersion mismatch on If-Match (message from destinations.md §2.2; code [INFER])."""

DUPLICATE_MESSAGE = "A record with matching key values already exists."
VERSION_MESSAGE = (
    "The version of the existing record doesn't match the RowVersion property provided."
)

ACTIVITIES = frozenset({"task", "appointment"})
STRING_TYPES = frozenset({"String", "Memo"})
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEY_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^']|'')*'|[^,]+?)\s*(?:,|$)")


class DataverseError(Exception):
    """A refusal answered as ``{"error":{"code","message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One column's metadata as ``EntityDefinitions(...)/Attributes`` reports it."""

    logical_name: str
    attribute_type: str = "String"
    max_length: int | None = None
    required_level: str = "None"
    targets: tuple[str, ...] = ()

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "LogicalName": self.logical_name,
            "SchemaName": self.logical_name,
            "AttributeType": self.attribute_type,
            "RequiredLevel": {"Value": self.required_level},
        }
        if self.attribute_type in STRING_TYPES:
            meta["MaxLength"] = self.max_length
        if self.targets:
            meta["Targets"] = list(self.targets)
        return meta


@dataclass
class Table:
    """A table, its alternate keys and its rows keyed by primary id."""

    logical_name: str
    entity_set: str
    attributes: dict[str, Attribute]
    keys: dict[str, tuple[str, ...]]
    custom: bool
    navigation: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``navprop -> (lookup attribute, target logical name)`` for ``@odata.bind``."""
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def primary_id(self) -> str:
        """Activities share ``activityid``; everything else is ``<logicalname>id``."""
        return "activityid" if self.logical_name in ACTIVITIES else f"{self.logical_name}id"

    def metadata(self) -> dict[str, Any]:
        return {
            "LogicalName": self.logical_name,
            "SchemaName": self.logical_name,
            "EntitySetName": self.entity_set,
            "PrimaryIdAttribute": self.primary_id,
            "IsCustomEntity": self.custom,
        }

    def keys_metadata(self) -> list[dict[str, Any]]:
        return [
            {"LogicalName": name, "SchemaName": name, "KeyAttributes": list(attrs)}
            for name, attrs in self.keys.items()
        ]

    def find_by_key(self, values: Mapping[str, Any]) -> str | None:
        """The id of the row whose alternate-key columns equal ``values``."""
        for ident, row in self.rows.items():
            if all(row.get(name) == value for name, value in values.items()):
                return ident
        return None


def _s(name: str, length: int, required: str = "None") -> Attribute:
    return Attribute(name, "String", length, required)


def _memo(name: str, length: int) -> Attribute:
    return Attribute(name, "Memo", length)


def _lookup(name: str, *targets: str, kind: str = "Lookup") -> Attribute:
    return Attribute(name, kind, None, "None", targets)


_SCHEMA_TYPES = {
    "string": "String",
    "memo": "Memo",
    "integer": "Integer",
    "decimal": "Decimal",
    "money": "Money",
    "boolean": "Boolean",
    "datetime": "DateTime",
    "picklist": "Picklist",
    "lookup": "Lookup",
}


def load_schema(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A schema JSON file: ``{"matter": {"crm_name": {"type": "string", "max_length": 100}}}``."""
    loaded = orjson.loads(path.read_bytes())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a schema is an object of tables")
    return loaded


def _custom_attribute(name: str, spec: Mapping[str, Any], prefix: str) -> Attribute:
    kind = _SCHEMA_TYPES.get(str(spec.get("type", "string")).lower())
    if kind is None:
        raise ValueError(f"column {name}: unknown type {spec.get('type')!r}")
    length = spec.get("max_length", 100 if kind == "String" else 2000 if kind == "Memo" else None)
    targets = tuple(
        target if target in _STANDARD else f"{prefix}_{target}"
        for target in spec.get("targets", ())
    )
    if kind == "Lookup" and not targets:
        raise ValueError(f"column {name}: a lookup needs targets")
    required = "ApplicationRequired" if spec.get("required") else "None"
    return Attribute(name, kind, length if kind in STRING_TYPES else None, required, targets)


_STANDARD = ("account", "contact", "lead", "opportunity", "task", "appointment", "annotation")


def build_tables(
    schema: Mapping[str, Mapping[str, Mapping[str, Any]]], prefix: str
) -> dict[str, Table]:
    """Every table the simulated org has, by entity set name."""
    matter, claim = f"{prefix}_matter", f"{prefix}_claim"
    regarding = ("account", "contact", "lead", "opportunity", matter, claim)
    columns: dict[str, list[Attribute]] = {
        "account": [
            _s("name", 160, "ApplicationRequired"),
            _s("accountnumber", 20),
            _s("telephone1", 50),
            _s("emailaddress1", 100),
            _s("websiteurl", 200),
            _memo("description", 2000),
            _lookup("primarycontactid", "contact"),
        ],
        "contact": [
            _s("firstname", 50),
            _s("lastname", 50, "ApplicationRequired"),
            _s("fullname", 160),
            _s("emailaddress1", 100),
            _s("telephone1", 50),
            _s("jobtitle", 100),
            _lookup("parentcustomerid", "account", "contact", kind="Customer"),
        ],
        "lead": [
            _s("subject", 300),
            _s("firstname", 50),
            _s("lastname", 50, "ApplicationRequired"),
            _s("companyname", 100),
            _s("emailaddress1", 100),
        ],
        "opportunity": [
            _s("name", 300, "ApplicationRequired"),
            Attribute("estimatedvalue", "Money"),
            _memo("description", 2000),
            _lookup("customerid", "account", "contact", kind="Customer"),
        ],
        "task": [
            _s("subject", 200, "ApplicationRequired"),
            _memo("description", 2000),
            Attribute("scheduledend", "DateTime"),
            _lookup("regardingobjectid", *regarding),
        ],
        "appointment": [
            _s("subject", 200, "ApplicationRequired"),
            _s("location", 200),
            Attribute("scheduledstart", "DateTime"),
            Attribute("scheduledend", "DateTime"),
            _memo("description", 2000),
            _lookup("regardingobjectid", *regarding),
        ],
        "annotation": [
            _s("subject", 500),
            _memo("notetext", 100_000),
            _s("filename", 255),
            _s("mimetype", 256),
            _memo("documentbody", 5 * 1024 * 1024 * 4 // 3 + 4),
            _lookup("objectid", *regarding, "task", "appointment"),
        ],
        "sharepointdocumentlocation": [
            _s("name", 160, "ApplicationRequired"),
            _s("relativeurl", 255),
            _s("absoluteurl", 1024),
            _lookup("regardingobjectid", *regarding),
            _lookup("parentsiteorlocation", "sharepointdocumentlocation"),
        ],
        "systemuser": [
            _s("fullname", 200),
            _s("internalemailaddress", 100),
            _s("domainname", 1024),
        ],
        matter: [_s(f"{prefix}_name", 100, "ApplicationRequired")],
        claim: [
            _s(f"{prefix}_name", 100, "ApplicationRequired"),
            _lookup(f"{prefix}_matterid", matter),
        ],
    }
    for table_name, extra in schema.items():
        logical = table_name if table_name in columns else f"{prefix}_{table_name}"
        if logical not in columns:
            raise ValueError(f"schema names unknown table {table_name!r}")
        columns[logical] += [_custom_attribute(n, s, prefix) for n, s in extra.items()]
    tables: dict[str, Table] = {}
    for logical, attrs in columns.items():
        custom = logical.startswith(f"{prefix}_")
        entity_set = f"{logical}s" if not logical.endswith("y") else f"{logical[:-1]}ies"
        table = Table(logical, entity_set, {}, {}, custom)
        common = [
            Attribute(table.primary_id, "Uniqueidentifier"),
            _s(f"{prefix}_sourceid", 100),
            Attribute("createdon", "DateTime"),
            Attribute("modifiedon", "DateTime"),
            Attribute("overriddencreatedon", "DateTime"),
            _lookup("ownerid", "systemuser", kind="Owner"),
        ]
        table.attributes = {a.logical_name: a for a in [*common, *attrs]}
        table.keys = {f"{prefix}_sourceid_key": (f"{prefix}_sourceid",)}
        if logical == "account":
            table.keys["accountnumber_key"] = ("accountnumber",)
        table.navigation = _navigation(table)
        tables[entity_set] = table
    return tables


def _navigation(table: Table) -> dict[str, tuple[str, str]]:
    """Single-valued navigation properties, polymorphic ones suffixed with their target.

    ``parentcustomerid_account``, ``regardingobjectid_account_task`` and
    ``objectid_account`` are the documented spellings (destinations.md §2.2).
    """
    navs: dict[str, tuple[str, str]] = {}
    for attr in table.attributes.values():
        if attr.attribute_type not in LOOKUP_TYPES:
            continue
        if len(attr.targets) == 1 or attr.attribute_type == "Owner":
            navs[attr.logical_name] = (attr.logical_name, attr.targets[0])
            continue
        for target in attr.targets:
            if attr.logical_name == "regardingobjectid":
                navs[f"regardingobjectid_{target}_{table.logical_name}"] = (
                    attr.logical_name,
                    target,
                )
            else:
                navs[f"{attr.logical_name}_{target}"] = (attr.logical_name, target)
    return navs


def now_iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_key(raw: str) -> str | dict[str, Any]:
    """``<guid>`` or ``name='v',other=1`` from inside ``entityset(...)``."""
    raw = raw.strip()
    if _GUID.match(raw):
        return raw.lower()
    values: dict[str, Any] = {}
    position = 0
    while position < len(raw):
        match = _KEY_PAIR.match(raw, position)
        if match is None or match.end() == position:
            raise DataverseError(400, ERR_BAD_PROPERTY, f"Invalid key segment '({raw})'.")
        values[match.group(1)] = literal(match.group(2))
        position = match.end()
    if not values:
        raise DataverseError(400, ERR_BAD_PROPERTY, "Empty key segment '()'.")
    return values


def literal(token: str) -> Any:
    """An OData URL literal: quoted string, number, true/false/null or a bare guid."""
    token = token.strip()
    if token.startswith("'") and token.endswith("'") and len(token) >= 2:
        return token[1:-1].replace("''", "'")
    if token in ("true", "false"):
        return token == "true"
    if token == "null":
        return None
    if _GUID.match(token):
        return token.lower()
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError as error:
        raise DataverseError(400, ERR_BAD_VALUE, f"Unrecognized literal '{token}'.") from error


def new_id() -> str:
    return str(uuid.uuid4())


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text))


def check_value(table: Table, attr: Attribute, value: Any) -> Any:
    """Validate one column value the way Dataverse would, returning what is stored."""
    if value is None:
        return None
    kind = attr.attribute_type
    expected: tuple[type, ...]
    if kind in STRING_TYPES:
        if not isinstance(value, str):
            raise _bad_value(value, "Edm.String")
        if attr.max_length is not None and len(value) > attr.max_length:
            raise DataverseError(
                400,
                ERR_VALIDATION,
                "A validation error occurred.  The length of the "
                f"'{attr.logical_name}' attribute of the '{table.logical_name}' entity "
                f"exceeded the maximum allowed length of '{attr.max_length}'.",
            )
        return value
    if kind == "DateTime":
        if not isinstance(value, str):
            raise _bad_value(value, "Edm.DateTimeOffset")
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as error:
            raise _bad_value(value, "Edm.DateTimeOffset") from error
        return now_iso(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC))
    if kind == "Boolean":
        expected = (bool,)
    elif kind in ("Integer", "Picklist"):
        expected = (int,)
    elif kind in ("Money", "Decimal"):
        expected = (int, float)
    elif kind == "Uniqueidentifier":
        if not isinstance(value, str) or not is_guid(value):
            raise _bad_value(value, "Edm.Guid")
        return value.lower()
    else:
        raise DataverseError(
            400, ERR_BAD_PROPERTY, f"Set '{attr.logical_name}' through its @odata.bind property."
        )
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise _bad_value(value, "Edm." + {"Boolean": "Boolean", "Money": "Decimal"}.get(kind, kind))
    return value


def _bad_value(value: Any, edm: str) -> DataverseError:
    shown = orjson.dumps(value).decode()[:200]
    return DataverseError(
        400, ERR_BAD_VALUE, f"Cannot convert the literal '{shown}' to the expected type '{edm}'."
    )


def unknown_property(table: Table, name: str) -> DataverseError:
    return DataverseError(
        400,
        ERR_BAD_PROPERTY,
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM."
        f"{table.logical_name}'. Make sure to only use property names that are defined by "
        "the type.",
    )


def does_not_exist(table: Table, ident: str | Mapping[str, Any]) -> DataverseError:
    if isinstance(ident, str):
        message = f"{table.logical_name} With Id = {ident} Does Not Exist"
    else:
        message = (
            f"A record with the specified key values does not exist in {table.logical_name} entity"
        )
    return DataverseError(404, ERR_DOES_NOT_EXIST, message)


def public_row(
    table: Table, row: Mapping[str, Any], select: Sequence[str] | None
) -> dict[str, Any]:
    """A row as the Web API returns it: ``_x_value`` for lookups, ``@odata.etag``."""
    shown: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
    for name, value in row.items():
        if name == "versionnumber" or name.startswith("@"):
            continue
        if (
            select is not None
            and name not in select
            and name.strip("_").removesuffix("_value") not in select
            and name != table.primary_id
        ):
            continue
        shown[name] = value
    return shown
