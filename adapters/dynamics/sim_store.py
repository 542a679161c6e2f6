"""The simulated Dataverse org's tables, metadata and values (destinations.md §2.2, §2.7, §2.8).

Kept apart from HTTP so ``$batch`` changesets and single requests run the very same
code, and so a changeset can be rolled back through an undo journal.

The org starts as a fresh Dynamics 365 Sales environment: the standard tables with
their standard columns and nothing else. Custom tables, custom columns and the
``{prefix}_sourceid`` alternate keys arrive only with the schema plan the admin
deploys (``service.mapping.backdocket_dynamics.schema_plan``), exactly as in a real
migration, so a loader that skips the schema phase fails here as it would there.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
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
ERR_OUT_OF_RANGE = "0x8004431a"
"""A choice value not among the column's options ('... is outside the valid range.
Accepted Values: ...', as field reports quote it)."""
ERR_STATE_STATUS = "0x80048408"
"""'<n> is not a valid status code for state code <Table>State.<State> ...' (field reports)."""
ERR_ATTACHMENT_SIZE = "0x80044a02"
"""'Attachment file size is too big.' (Dataverse docs, attachment-annotation-files)."""
ERR_INVALID_ARGUMENT = "0x80040203"
"""InvalidArgument (web-service-error-codes). Used [INFER] for a write the platform refuses
without a documented code of its own: an update of a closed activity (field reports quote
the message "Cannot update Closed or Cancelled Activity", e.g.
github.com/seanmcne/Microsoft.Xrm.Data.PowerShell/issues/222) and a column sent on update
whose metadata says ``IsValidForUpdate: false``. Clients should act on the status and
message, not on this code."""

STATE_STATUS_MESSAGE = (
    "State code is invalid or state code is valid but status code is invalid for a specified "
    "state code."
)
"""InvalidStateCodeStatusCode (0x80048408) as the SDK's error table words it."""
CLOSED_ACTIVITY_MESSAGE = "Cannot update Closed or Cancelled Activity"
KEY_FORBIDDEN_CHARACTERS = frozenset("/#<>*%&:\\?+")
"""Characters an alternate-key value cannot carry in a key URL: "If the data within a column
that is used in an alternate key contains one of the following characters /, #, <, >, *, %,
&, :, \\, ?, + then GET or PATCH actions won't work"
(https://learn.microsoft.com/power-apps/maker/data-platform/define-alternate-keys-portal)."""

DUPLICATE_MESSAGE = "A record with matching key values already exists."
VERSION_MESSAGE = (
    "The version of the existing record doesn't match the RowVersion property provided."
)
ATTACHMENT_SIZE_MESSAGE = "Attachment file size is too big."

DEFAULT_MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
"""Organization.MaxUploadFileSize default (destinations.md §2.9)."""
MAX_CONFIGURABLE_ATTACHMENT_BYTES = 131_072_000
"""The highest MaxUploadFileSize an admin can set ("128 MB", in the docs' own bytes)."""

ACTIVITIES = frozenset({"task", "appointment"})
STRING_TYPES = frozenset({"String", "Memo"})
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
CHOICE_TYPES = frozenset({"Picklist", "MultiSelectPicklist", "State", "Status"})
INT32 = (-(2**31), 2**31 - 1)
MONEY_LIMIT = 922_337_203_685_477
"""Money columns hold at most this magnitude (SQL money, four decimals)."""
LANGUAGE = 1033

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEY_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^']|'')*'|[^,]+?)\s*(?:,|$)")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ENUM_LITERAL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*'((?:[^']|'')*)'$")
_METADATA_NS = uuid.UUID("0b9c6a8e-53c1-4c3e-9d0e-2f5f0c0d7a11")


class DataverseError(Exception):
    """A refusal answered as ``{"error":{"code","message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def metadata_id(*parts: str) -> str:
    """A stable MetadataId, so two sims (or two runs) describe the same org alike."""
    return str(uuid.uuid5(_METADATA_NS, "/".join(parts)))


def label(text: str) -> dict[str, Any]:
    """A metadata ``Label`` in the one language the simulated org has."""
    localized = {"Label": text, "LanguageCode": LANGUAGE}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


@dataclass(frozen=True, slots=True)
class Option:
    """One choice value; Status options name their state, State options their default status."""

    value: int
    label: str
    state: int | None = None
    default_status: int | None = None

    def metadata(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"Value": self.value, "Label": label(self.label)}
        if self.state is not None:
            shown["State"] = self.state
        if self.default_status is not None:
            shown["DefaultStatus"] = self.default_status
        return shown


_KIND_METADATA: Mapping[str, tuple[str, str]] = {
    "String": ("String", "StringAttributeMetadata"),
    "Memo": ("Memo", "MemoAttributeMetadata"),
    "Base64": ("String", "StringAttributeMetadata"),
    "Integer": ("Integer", "IntegerAttributeMetadata"),
    "BigInt": ("BigInt", "BigIntAttributeMetadata"),
    "Decimal": ("Decimal", "DecimalAttributeMetadata"),
    "Money": ("Money", "MoneyAttributeMetadata"),
    "Boolean": ("Boolean", "BooleanAttributeMetadata"),
    "DateTime": ("DateTime", "DateTimeAttributeMetadata"),
    "DateOnly": ("DateTime", "DateTimeAttributeMetadata"),
    "Picklist": ("Picklist", "PicklistAttributeMetadata"),
    "MultiSelectPicklist": ("Virtual", "MultiSelectPicklistAttributeMetadata"),
    "State": ("State", "StateAttributeMetadata"),
    "Status": ("Status", "StatusAttributeMetadata"),
    "Lookup": ("Lookup", "LookupAttributeMetadata"),
    "Customer": ("Customer", "LookupAttributeMetadata"),
    "Owner": ("Owner", "LookupAttributeMetadata"),
    "Uniqueidentifier": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
}
"""Simulator kind → (AttributeType, metadata EntityType). ``Base64`` is annotation's
``documentbody`` (a String column holding a file), ``DateOnly`` a DateTime column
whose behavior is DateOnly, and a multi-select choice reports AttributeType Virtual."""


@dataclass(frozen=True, slots=True)
class Attribute:
    """One column: what ``/Attributes`` reports and what a write is checked against."""

    logical_name: str
    kind: str = "String"
    max_length: int | None = None
    required_level: str = "None"
    targets: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    custom: bool = False
    writable: bool = True
    """False for columns the platform sets itself (createdon, fullname…): a value in a
    body is silently ignored, as Dataverse does."""
    polymorphic: bool = False
    """Navigation properties carry the target's name (``parentcustomerid_account``)."""
    option_set: str | None = None
    display_name: str | None = None
    updatable: bool = True
    """False for create-only columns (``overriddencreatedon``, the primary id): metadata says
    ``IsValidForUpdate: false`` and the simulator refuses them on update."""
    schema_name: str | None = None
    """The case-sensitive SchemaName; a custom lookup's is also its navigation property."""

    @property
    def schema(self) -> str:
        return self.schema_name or self.logical_name

    @property
    def column(self) -> str:
        """The stored and returned name: ``_x_value`` for lookups."""
        return f"_{self.logical_name}_value" if self.kind in LOOKUP_TYPES else self.logical_name

    @property
    def metadata_type(self) -> str:
        return _KIND_METADATA[self.kind][1]

    def option(self, value: int) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    def metadata(self, entity: str) -> dict[str, Any]:
        attribute_type, type_name = _KIND_METADATA[self.kind]
        meta: dict[str, Any] = {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{type_name}",
            "MetadataId": metadata_id(entity, self.logical_name),
            "LogicalName": self.logical_name,
            "SchemaName": self.schema,
            "EntityLogicalName": entity,
            "AttributeType": attribute_type,
            "AttributeTypeName": {"Value": f"{type_name.removesuffix('AttributeMetadata')}Type"},
            "RequiredLevel": {"Value": self.required_level},
            "IsCustomAttribute": self.custom,
            "IsValidForCreate": self.writable,
            "IsValidForUpdate": self.writable and self.updatable,
            "IsValidForRead": True,
            "DisplayName": label(self.display_name or self.logical_name),
        }
        meta.update(self._type_metadata())
        return meta

    def _type_metadata(self) -> dict[str, Any]:
        """The properties only this column's metadata type has."""
        if self.kind in STRING_TYPES or self.kind == "Base64":
            return {"MaxLength": self.max_length}
        if self.kind in LOOKUP_TYPES:
            return {"Targets": list(self.targets)}
        if self.kind in ("DateTime", "DateOnly"):
            only = self.kind == "DateOnly"
            return {
                "Format": "DateOnly" if only else "DateAndTime",
                "DateTimeBehavior": {"Value": "DateOnly" if only else "UserLocal"},
            }
        if self.kind == "Integer":
            return {"MinValue": INT32[0], "MaxValue": INT32[1]}
        if self.kind == "Money":
            return {"MinValue": -MONEY_LIMIT, "MaxValue": MONEY_LIMIT, "Precision": 2}
        return {}

    def option_set_metadata(self, entity: str) -> dict[str, Any] | None:
        """``OptionSet`` of a choice column (what ``$expand=OptionSet`` returns)."""
        if self.kind not in CHOICE_TYPES:
            return None
        return {
            "MetadataId": metadata_id(entity, self.logical_name, "optionset"),
            "Name": self.option_set or f"{entity}_{self.logical_name}",
            "IsGlobal": False,
            "OptionSetType": "Picklist" if self.kind == "MultiSelectPicklist" else self.kind,
            "Options": [option.metadata() for option in self.options],
        }


Index = dict[tuple[Any, ...], str]


@dataclass
class Table:
    """A table, its alternate keys and its rows keyed by primary id.

    Every alternate key has a hash index (key values → id), kept in step by
    :meth:`put` and :meth:`remove`, so a 100k-row load resolves keys in O(1).
    """

    logical_name: str
    entity_set: str
    attributes: dict[str, Attribute]
    keys: dict[str, tuple[str, ...]]
    custom: bool
    primary_name: str = "name"
    owned: bool = True
    navigation: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``navprop -> (lookup attribute, target logical name)`` for ``@odata.bind``."""
    settings: frozenset[str] = frozenset()
    """Which of :data:`TABLE_SETTINGS` are on (EntityMetadata HasActivities, HasNotes,
    IsDocumentManagementEnabled)."""
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    _indexes: dict[tuple[str, ...], Index] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._indexes = {tuple(sorted(attrs)): {} for attrs in self.keys.values()}

    @property
    def primary_id(self) -> str:
        """Activities share ``activityid``; everything else is ``<logicalname>id``."""
        return "activityid" if self.logical_name in ACTIVITIES else f"{self.logical_name}id"

    @property
    def metadata_id(self) -> str:
        return metadata_id(self.logical_name)

    def metadata(self) -> dict[str, Any]:
        return {
            "MetadataId": self.metadata_id,
            "LogicalName": self.logical_name,
            "SchemaName": self.logical_name,
            "EntitySetName": self.entity_set,
            "LogicalCollectionName": self.entity_set,
            "PrimaryIdAttribute": self.primary_id,
            "PrimaryNameAttribute": self.primary_name,
            "IsCustomEntity": self.custom,
            "IsActivity": self.logical_name in ACTIVITIES,
            "IsPrivate": False,  # what the Dataverse SDK's tables.list() filters on
            "OwnershipType": "UserOwned" if self.owned else "OrganizationOwned",
            **{name: name in self.settings for name in TABLE_SETTINGS},
        }

    def keys_metadata(self) -> list[dict[str, Any]]:
        return [
            {
                "MetadataId": metadata_id(self.logical_name, "key", name),
                "LogicalName": name,
                "SchemaName": name,
                "EntityLogicalName": self.logical_name,
                "KeyAttributes": list(attrs),
                "EntityKeyIndexStatus": "Active",
            }
            for name, attrs in self.keys.items()
        ]

    def is_key(self, names: Iterable[str]) -> bool:
        return tuple(sorted(names)) in self._indexes

    def find_by_key(self, values: Mapping[str, Any]) -> str | None:
        """The id of the row whose alternate-key columns equal ``values`` (one key, O(1))."""
        attrs = tuple(sorted(values))
        index = self._indexes.get(attrs)
        if index is None:
            return None
        return index.get(tuple(key_value(values[name]) for name in attrs))

    def key_conflict(self, ident: str, row: Mapping[str, Any]) -> bool:
        """Whether another row already holds one of ``row``'s alternate-key values."""
        for attrs, index in self._indexes.items():
            values = self._key_of(attrs, row)
            if values is not None and index.get(values, ident) != ident:
                return True
        return False

    def put(self, ident: str, row: dict[str, Any]) -> None:
        """Store ``row`` (new or replacing), keeping every key index in step."""
        old = self.rows.get(ident)
        if old is not None:
            self._unindex(ident, old)
        self.rows[ident] = row
        for attrs, index in self._indexes.items():
            values = self._key_of(attrs, row)
            if values is not None:
                index[values] = ident

    def remove(self, ident: str) -> None:
        old = self.rows.pop(ident, None)
        if old is not None:
            self._unindex(ident, old)

    def _unindex(self, ident: str, row: Mapping[str, Any]) -> None:
        for attrs, index in self._indexes.items():
            values = self._key_of(attrs, row)
            if values is not None and index.get(values) == ident:
                del index[values]

    def _key_of(self, attrs: tuple[str, ...], row: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """A row's values for one key; None when a column is empty (nulls are not unique)."""
        values = tuple(row.get(self.attributes[name].column) for name in attrs)
        if any(value is None for value in values):
            return None
        return tuple(key_value(value) for value in values)


def key_value(value: Any) -> Any:
    """Key values compare as SQL Server's default collation does: case-insensitively."""
    return value.casefold() if isinstance(value, str) else value


# -- the standard org ---------------------------------------------------------------------


def _s(name: str, length: int, required: bool = False) -> Attribute:
    return Attribute(name, "String", length, "ApplicationRequired" if required else "None")


def _memo(name: str, length: int = 2000) -> Attribute:
    return Attribute(name, "Memo", length)


def _typed(name: str, kind: str, writable: bool = True) -> Attribute:
    return Attribute(name, kind, writable=writable)


def _choice(name: str, *options: tuple[int, str]) -> Attribute:
    return Attribute(name, "Picklist", options=tuple(Option(v, text) for v, text in options))


def _lookup(name: str, *targets: str, kind: str = "Lookup", polymorphic: bool = False) -> Attribute:
    return Attribute(name, kind, targets=targets, polymorphic=polymorphic or kind == "Customer")


def _address() -> list[Attribute]:
    return [
        _s("address1_line1", 250),
        _s("address1_city", 80),
        _s("address1_stateorprovince", 50),
        _s("address1_postalcode", 20),
        _s("address1_country", 80),
    ]


StateTable = Sequence[tuple[int, str, Sequence[tuple[int, str]]]]
"""``(state, label, [(status, label), ...])``; a state's first status is its default."""

ACTIVE_INACTIVE: StateTable = ((0, "Active", ((1, "Active"),)), (1, "Inactive", ((2, "Inactive"),)))
STATES: Mapping[str, StateTable] = {
    "account": ACTIVE_INACTIVE,
    "contact": ACTIVE_INACTIVE,
    "sharepointdocumentlocation": ACTIVE_INACTIVE,
    "sharepointsite": ACTIVE_INACTIVE,
    "lead": (
        (0, "Open", ((1, "New"), (2, "Contacted"))),
        (1, "Qualified", ((3, "Qualified"),)),
        (
            2,
            "Disqualified",
            ((4, "Lost"), (5, "Cannot Contact"), (6, "No Longer Interested"), (7, "Canceled")),
        ),
    ),
    "opportunity": (
        (0, "Open", ((1, "In Progress"), (2, "On Hold"))),
        (1, "Won", ((3, "Won"),)),
        (2, "Lost", ((4, "Canceled"), (5, "Out-Sold"))),
    ),
    "task": (
        (
            0,
            "Open",
            (
                (2, "Not Started"),
                (3, "In Progress"),
                (4, "Waiting on someone else"),
                (7, "Deferred"),
            ),
        ),
        (1, "Completed", ((5, "Completed"),)),
        (2, "Canceled", ((6, "Canceled"),)),
    ),
    "appointment": (
        (0, "Open", ((1, "Free"), (2, "Tentative"))),
        (1, "Completed", ((3, "Completed"),)),
        (2, "Canceled", ((4, "Canceled"),)),
        (3, "Scheduled", ((5, "Busy"), (6, "Out of Office"))),
    ),
}
"""Status and status reason of the standard tables (custom tables get Active/Inactive);
annotation and systemuser have none."""


def _state_columns(states: StateTable) -> list[Attribute]:
    state_options = tuple(Option(s, text, default_status=codes[0][0]) for s, text, codes in states)
    status_options = tuple(Option(c, text, state=s) for s, _, codes in states for c, text in codes)
    return [
        Attribute("statecode", "State", options=state_options),
        Attribute("statuscode", "Status", options=status_options),
    ]


def _standard_columns(enabled: Mapping[str, Sequence[str]]) -> dict[str, list[Attribute]]:
    """The standard columns a loader writes, with their real types and lengths.

    ``enabled`` names, per table setting, the tables that have it on: an activity's
    regarding, a note's object and a document location's regarding can point only there
    (no relationship exists to any other table, so no navigation property either).
    """
    regarding_lookup = _lookup("regardingobjectid", *enabled[HAS_ACTIVITIES], polymorphic=True)
    objects = enabled[HAS_NOTES]
    documents = enabled[DOCUMENT_MANAGEMENT]
    return {
        "account": [
            _s("name", 160, required=True),
            _s("accountnumber", 20),
            _s("websiteurl", 200),
            _s("telephone1", 50),
            _s("emailaddress1", 100),
            _memo("description"),
            _typed("numberofemployees", "Integer"),
            _typed("revenue", "Money"),
            *_address(),
            _lookup("parentaccountid", "account"),
            _lookup("primarycontactid", "contact"),
        ],
        "contact": [
            _s("firstname", 50),
            _s("lastname", 50, required=True),
            Attribute("fullname", "String", 160, writable=False),
            _s("emailaddress1", 100),
            _s("telephone1", 50),
            _s("mobilephone", 50),
            _s("jobtitle", 100),
            *_address(),
            _lookup("parentcustomerid", "account", "contact", kind="Customer"),
        ],
        "lead": [
            _s("subject", 300),
            _s("firstname", 50),
            _s("lastname", 50, required=True),
            Attribute("fullname", "String", 160, writable=False),
            _s("companyname", 100),
            _s("emailaddress1", 100),
            _s("telephone1", 50),
            _memo("description"),
            _choice(
                "leadsourcecode",
                *enumerate(
                    (
                        "Advertisement",
                        "Employee Referral",
                        "External Referral",
                        "Partner",
                        "Public Relations",
                        "Seminar",
                        "Trade Show",
                        "Web",
                        "Word of Mouth",
                        "Other",
                    ),
                    start=1,
                ),
            ),
        ],
        "opportunity": [
            _s("name", 300, required=True),
            _typed("estimatedvalue", "Money"),
            _typed("estimatedclosedate", "DateOnly"),
            _memo("description"),
            _lookup("customerid", "account", "contact", kind="Customer"),
        ],
        "task": [
            _s("subject", 200, required=True),
            _memo("description"),
            _typed("scheduledend", "DateTime"),
            _choice("prioritycode", (0, "Low"), (1, "Normal"), (2, "High")),
            regarding_lookup,
        ],
        "appointment": [
            _s("subject", 200, required=True),
            _s("location", 200),
            _typed("scheduledstart", "DateTime"),
            _typed("scheduledend", "DateTime"),
            _typed("isalldayevent", "Boolean"),
            _memo("description"),
            regarding_lookup,
        ],
        "annotation": [
            # ApplicationRequired, as the Note reference lists it (reference/entities/annotation).
            _s("subject", 500, required=True),
            _memo("notetext", 100_000),
            _s("filename", 255),
            _s("mimetype", 256),
            Attribute("documentbody", "Base64", 1_073_741_823),
            _typed("filesize", "Integer", writable=False),
            _typed("isdocument", "Boolean"),
            _lookup("objectid", *objects, polymorphic=True),
        ],
        "sharepointdocumentlocation": [
            _s("name", 160, required=True),
            _s("relativeurl", 255),
            _s("absoluteurl", 2000),
            _lookup("regardingobjectid", *documents, polymorphic=True),
            _lookup(
                "parentsiteorlocation",
                "sharepointsite",
                "sharepointdocumentlocation",
                polymorphic=True,
            ),
        ],
        "sharepointsite": [
            _s("name", 160, required=True),
            _s("absoluteurl", 2000),
            _s("relativeurl", 255),
            _typed("isdefault", "Boolean"),
            _lookup("parentsite", "sharepointsite"),
        ],
        "systemuser": [
            _s("fullname", 200),
            _s("internalemailaddress", 100),
            _s("domainname", 1024),
            _typed("isdisabled", "Boolean"),
        ],
    }


STANDARD_TABLES = (
    "account",
    "contact",
    "lead",
    "opportunity",
    "task",
    "appointment",
    "annotation",
    "sharepointdocumentlocation",
    "sharepointsite",
    "systemuser",
)
PRIMARY_NAMES: Mapping[str, str] = {
    "account": "name",
    "contact": "fullname",
    "lead": "fullname",
    "opportunity": "name",
    "task": "subject",
    "appointment": "subject",
    "annotation": "subject",
    "sharepointdocumentlocation": "name",
    "sharepointsite": "name",
    "systemuser": "fullname",
}
UNOWNED = frozenset({"systemuser"})
"""Business-owned tables: no ownerid."""

HAS_ACTIVITIES = "HasActivities"
HAS_NOTES = "HasNotes"
DOCUMENT_MANAGEMENT = "IsDocumentManagementEnabled"
TABLE_SETTINGS = (HAS_ACTIVITIES, HAS_NOTES, DOCUMENT_MANAGEMENT)
"""EntityMetadata properties a schema plan may set per table (booleans, same names):
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/entitymetadata.
A custom table has none unless its maker ticked them ("CreateEntityRequest.HasNotes ...
The default is false", and likewise HasActivities)."""
STANDARD_SETTINGS: Mapping[str, frozenset[str]] = {
    **{name: frozenset(TABLE_SETTINGS) for name in ("account", "contact", "lead", "opportunity")},
    **{name: frozenset({HAS_NOTES}) for name in ACTIVITIES},
}
"""What a fresh Sales org has on: account, contact, lead and opportunity take activities,
notes and documents (their Timeline and Documents tabs); activities take notes. The plan
may still switch one off, as an admin may."""
NO_CUSTOM_COLUMNS = frozenset({"annotation"})
"""Tables that take no custom columns (so no alternate key either): the Note table's
metadata has CanCreateAttributes false
(https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation).
Plan columns and keys for them are not deployed, as the admin could not create them."""
CLOSED_STATES: Mapping[str, frozenset[int]] = {name: frozenset({1, 2}) for name in ACTIVITIES}
"""Completed (1) and Canceled (2) activities: read-only, and never created so."""


# -- the schema plan ----------------------------------------------------------------------

_PLAN_TYPES: Mapping[str, str] = {
    "string": "String",
    "memo": "Memo",
    "integer": "Integer",
    "decimal": "Decimal",
    "money": "Money",
    "boolean": "Boolean",
    "datetime": "DateTime",
    "dateonly": "DateOnly",
    "picklist": "Picklist",
    "multiselectpicklist": "MultiSelectPicklist",
    "lookup": "Lookup",
}
"""Column ``type`` of ``schema_plan()`` → simulator kind."""


def load_schema(path: Path) -> dict[str, Any]:
    """A schema plan file: the JSON ``schema_plan(definitions, prefix)`` returns."""
    loaded = orjson.loads(path.read_bytes())
    if not isinstance(loaded, dict) or not isinstance(loaded.get("tables"), dict):
        raise ValueError(f"{path}: a schema plan is an object with a 'tables' object")
    return loaded


def _plan_options(name: str, spec: Mapping[str, Any]) -> tuple[Option, ...]:
    raw = spec.get("options") or ()
    if not isinstance(raw, list | tuple):
        raise ValueError(f"column {name}: options must be a list")
    try:
        return tuple(Option(int(o["value"]), str(o.get("label", o["value"]))) for o in raw)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"column {name}: options are {{'value': int, 'label': str}}") from error


def _plan_targets(name: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    raw = spec.get("target", spec.get("targets"))
    targets = (raw,) if isinstance(raw, str) else tuple(raw or ())
    if not targets:
        raise ValueError(f"column {name}: a lookup needs a target")
    return tuple(str(t) for t in targets)


def deployable(spec: Mapping[str, Any], tables: Iterable[str]) -> bool:
    """Whether the admin could create this column: a lookup needs its target table.

    A plan deployed without its custom tables (they come later) leaves the lookups
    to them out too, as Dataverse would refuse to create them; the loader then sees
    those columns missing from ``/Attributes``.
    """
    if str(spec.get("type", "")).lower() != "lookup":
        return True
    known = set(tables)
    return all(target in known for target in _plan_targets("?", spec))


def plan_attribute(name: str, spec: Mapping[str, Any], tables: Iterable[str]) -> Attribute:
    """A column of the schema plan as the org holds it once the admin deployed it."""
    kind = _PLAN_TYPES.get(str(spec.get("type", "string")).lower())
    if kind is None:
        raise ValueError(f"column {name}: unknown type {spec.get('type')!r}")
    default_length = {"String": 100, "Memo": 2000}.get(kind)
    length = spec.get("max_length", default_length) if default_length else None
    targets = _plan_targets(name, spec) if kind == "Lookup" else ()
    missing = [t for t in targets if t not in set(tables)]
    if missing:
        raise ValueError(f"column {name}: lookup target {missing[0]!r} is not a table of the org")
    return Attribute(
        name,
        kind,
        None if length is None else int(length),
        "ApplicationRequired" if spec.get("required") else "None",
        targets,
        _plan_options(name, spec) if kind in CHOICE_TYPES else (),
        custom=True,
        polymorphic=len(targets) > 1,
        option_set=spec.get("option_set"),
        display_name=spec.get("label"),
        schema_name=lookup_schema_name(name, spec) if kind == "Lookup" else None,
    )


def lookup_schema_name(name: str, spec: Mapping[str, Any]) -> str:
    """A custom lookup's SchemaName: the plan's ``schema_name``, else derived.

    The maker portal derives a SchemaName from the display name ("Matter" on publisher
    ``crm`` gives ``crm_Matter``) and the LogicalName is its lower case. From a logical
    name alone the word breaks are lost, so the derivation here capitalises the part after
    the prefix and a trailing ``id`` (``crm_matterid`` → ``crm_MatterId``). Either way the
    navigation property is this SchemaName, case-sensitive
    (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api),
    so a client must read it from ManyToOneRelationships, never build it.
    """
    given = spec.get("schema_name")
    if given is not None:
        if not isinstance(given, str) or given.lower() != name:
            raise ValueError(f"column {name}: schema_name {given!r} must be {name!r} in any case")
        return given
    prefix, _, rest = name.partition("_")
    if not rest:
        return name
    pascal = rest[:1].upper() + rest[1:]
    if pascal.endswith("id") and len(pascal) > 2:
        pascal = pascal[:-2] + "Id"
    return f"{prefix}_{pascal}"


def _plan_settings(name: str, spec: Mapping[str, Any]) -> frozenset[str]:
    """The table settings a plan switches on or off; absent ones keep the org's default."""
    chosen = set(STANDARD_SETTINGS.get(name, frozenset()))
    for setting in TABLE_SETTINGS:
        value = spec.get(setting)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise ValueError(f"table {name}: {setting} must be true or false")
        if value:
            chosen.add(setting)
        else:
            chosen.discard(setting)
    return frozenset(chosen)


def _plan_tables(schema: Mapping[str, Any], prefix: str) -> dict[str, Mapping[str, Any]]:
    """The plan's tables, checked: custom ones are new and prefixed, others standard."""
    tables = schema.get("tables", {})
    if not isinstance(tables, Mapping):
        raise ValueError("a schema plan's 'tables' is an object")
    for name, spec in tables.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("columns", {}), Mapping):
            raise ValueError(f"table {name}: a table is an object with a 'columns' object")
        if spec.get("custom") and (name in STANDARD_TABLES or not name.startswith(f"{prefix}_")):
            raise ValueError(f"custom table {name!r} must be new and start with '{prefix}_'")
        if not spec.get("custom") and name not in STANDARD_TABLES:
            raise ValueError(f"schema names unknown table {name!r} (not standard, not custom)")
    return dict(tables)


def _system_columns(logical: str, owned: bool, states: StateTable | None) -> list[Attribute]:
    """What every table has: id, audit stamps, owner, row version, status.

    The primary id and ``overriddencreatedon`` are create-only (IsValidForCreate true,
    IsValidForUpdate false, as e.g. the account reference lists them:
    https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/account).
    """
    primary = "activityid" if logical in ACTIVITIES else f"{logical}id"
    columns = [
        Attribute(primary, "Uniqueidentifier", updatable=False),
        _typed("createdon", "DateTime", writable=False),
        _typed("modifiedon", "DateTime", writable=False),
        Attribute("overriddencreatedon", "DateTime", updatable=False),
        _typed("versionnumber", "BigInt", writable=False),
    ]
    if owned:
        columns.append(_lookup("ownerid", "systemuser", kind="Owner"))
    if states:
        columns += _state_columns(states)
    return columns


def _keys(
    name: str, spec: Mapping[str, Any], attributes: Mapping[str, Attribute]
) -> dict[str, tuple[str, ...]]:
    """``alternate_keys``: each entry a column (one-column key) or a list (composite)."""
    keys: dict[str, tuple[str, ...]] = {}
    for entry in spec.get("alternate_keys") or ():
        attrs = (entry,) if isinstance(entry, str) else tuple(str(a) for a in entry)
        missing = [a for a in attrs if a not in attributes]
        if missing:
            raise ValueError(f"table {name}: key column {missing[0]!r} is not a column")
        keys[f"{'_'.join(attrs)}_key"] = attrs
    return keys


def entity_set_name(logical: str) -> str:
    return f"{logical[:-1]}ies" if logical.endswith("y") else f"{logical}s"


def _navigation(table: Table) -> dict[str, tuple[str, str]]:
    """Single-valued navigation properties, polymorphic ones suffixed with their target.

    ``parentcustomerid_account``, ``objectid_contact``; an activity's regarding also
    names the activity (``regardingobjectid_account_task``) (destinations.md §2.2).
    A custom lookup's is its SchemaName (``crm_MatterId``), case and all; a standard
    lookup's is its logical name (``parentaccountid``).
    """
    navs: dict[str, tuple[str, str]] = {}
    for attr in table.attributes.values():
        if attr.kind not in LOOKUP_TYPES:
            continue
        if not attr.polymorphic:
            nav = attr.schema if attr.custom else attr.logical_name
            navs[nav] = (attr.logical_name, attr.targets[0])
            continue
        suffix = f"_{table.logical_name}" if table.logical_name in ACTIVITIES else ""
        for target in attr.targets:
            navs[f"{attr.logical_name}_{target}{suffix}"] = (attr.logical_name, target)
    return navs


def build_tables(schema: Mapping[str, Any] | None, default_prefix: str) -> dict[str, Table]:
    """Every table the simulated org has, by entity set name.

    Without ``schema`` the org is a fresh one: standard tables and columns only.
    With it, the plan's custom tables, columns and alternate keys are deployed too, and
    each table's HasActivities / HasNotes / IsDocumentManagementEnabled decide which
    tables activities, notes and document locations can point at.
    """
    plan = schema or {}
    prefix = str(plan.get("publisher_prefix") or default_prefix)
    planned = _plan_tables(plan, prefix)
    custom = tuple(name for name, spec in planned.items() if spec.get("custom"))
    names = (*STANDARD_TABLES, *custom)
    settings = {name: _plan_settings(name, planned.get(name, {})) for name in names}
    enabled = {s: [name for name in names if s in settings[name]] for s in TABLE_SETTINGS}
    columns = _standard_columns(enabled)
    tables: dict[str, Table] = {}
    for logical in names:
        spec = planned.get(logical, {})
        table = _table(logical, spec, columns.get(logical, []), names, prefix)
        table.settings = settings[logical]
        tables[table.entity_set] = table
    return tables


def _table(
    logical: str,
    spec: Mapping[str, Any],
    standard: list[Attribute],
    names: Sequence[str],
    prefix: str,
) -> Table:
    is_custom = bool(spec.get("custom"))
    owned = logical not in UNOWNED and spec.get("ownership", "user") != "organization"
    states = ACTIVE_INACTIVE if is_custom else STATES.get(logical)
    attributes = {a.logical_name: a for a in [*_system_columns(logical, owned, states), *standard]}
    primary_name = PRIMARY_NAMES.get(logical, f"{prefix}_name")
    if logical in NO_CUSTOM_COLUMNS:
        spec = {k: v for k, v in spec.items() if k not in ("columns", "alternate_keys")}
    for name, column in spec.get("columns", {}).items():
        if name in attributes or not deployable(column, names):
            continue
        if not is_custom and not name.startswith(f"{prefix}_"):
            raise ValueError(f"custom column {logical}.{name} must start with '{prefix}_'")
        attributes[name] = plan_attribute(name, column, names)
        if column.get("primary_name"):
            primary_name = name
    if is_custom and primary_name not in attributes:
        attributes[primary_name] = _s(primary_name, 100, required=True)
    table = Table(
        logical,
        entity_set_name(logical),
        attributes,
        _keys(logical, spec, attributes),
        is_custom,
        primary_name,
        owned,
    )
    table.navigation = _navigation(table)
    return table


# -- keys and literals --------------------------------------------------------------------


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
    for name, value in values.items():
        _check_key_characters(name, value)
    return values


def _check_key_characters(name: str, value: Any) -> None:
    """Refuse a key value the docs say GET/PATCH cannot address (:data:`KEY_FORBIDDEN_CHARACTERS`).

    What a real org answers is not documented (routing fails before Dataverse sees the
    key); the strictest plausible answer is a 400 naming the value, as here.
    """
    if not isinstance(value, str):
        return
    found = sorted({c for c in value if c in KEY_FORBIDDEN_CHARACTERS})
    if found:
        raise DataverseError(
            400,
            ERR_BAD_VALUE,
            f"Bad Request - Invalid key value {name}='{value}': an alternate-key value in a "
            f"URL cannot contain {' '.join(found)} (any of / # < > * % & : \\ ? +).",
        )


def literal(token: str) -> Any:
    """An OData URL literal: quoted string, number, true/false/null or a bare guid."""
    token = token.strip()
    if token.startswith("'") and token.endswith("'") and len(token) >= 2:
        return token[1:-1].replace("''", "'")
    enum = _ENUM_LITERAL.match(token)
    if enum is not None:
        return enum.group(1).replace("''", "'")
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


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValuePolicy:
    """Org settings that validation depends on (Organization.MaxUploadFileSize)."""

    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    limit_counts_base64: bool = True
    """The docs: "The maximum upload file size limit applies to the size of the file in
    Base64 encoding"; False measures the decoded bytes instead."""


Check = Callable[[Table, Attribute, Any, ValuePolicy], Any]


def check_value(
    table: Table, attr: Attribute, value: Any, policy: ValuePolicy = ValuePolicy()
) -> Any:
    """Validate one column value the way Dataverse would, returning what is stored."""
    if value is None:
        return None
    check = _CHECKS.get(attr.kind)
    if check is None:
        # A lookup is no structural property of the entity type: only its navigation
        # property (with @odata.bind) and the read-only _x_value are (Web API: "Associate
        # table rows on create", create-entity-web-api#associate-table-rows-on-create).
        raise unknown_property(table, attr.logical_name)
    return check(table, attr, value, policy)


def _check_string(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
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


def _check_base64(table: Table, attr: Attribute, value: Any, policy: ValuePolicy) -> Any:
    """A file as Base64 text; over MaxUploadFileSize is 0x80044a02 (the limit named)."""
    if not isinstance(value, str):
        raise _bad_value(value, "Edm.String")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _bad_value(value[:50], "Edm.Binary (Base64)") from error
    size = len(value) if policy.limit_counts_base64 else len(decoded)
    if size > policy.max_attachment_bytes:
        measured = "Base64 text" if policy.limit_counts_base64 else "decoded file"
        raise DataverseError(
            400,
            ERR_ATTACHMENT_SIZE,
            f"{ATTACHMENT_SIZE_MESSAGE} The {measured} is {size} bytes; the limit "
            f"(Organization.MaxUploadFileSize) is {policy.max_attachment_bytes} bytes.",
        )
    return value


def _check_datetime(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    if not isinstance(value, str) or "T" not in value:
        raise _bad_value(value, "Edm.DateTimeOffset")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise _bad_value(value, "Edm.DateTimeOffset") from error
    return now_iso(moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC))


def _check_date(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    """DateOnly behavior: ``YYYY-MM-DD`` in, the same text out; no time part."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise _bad_value(value, "Edm.Date")
    try:
        date.fromisoformat(value)
    except ValueError as error:
        raise _bad_value(value, "Edm.Date") from error
    return value


_BOUNDS: Mapping[str, tuple[int, int]] = {"Integer": INT32, "Money": (-MONEY_LIMIT, MONEY_LIMIT)}


def _check_number(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    integer = attr.kind in ("Integer", "BigInt")
    edm = {"Integer": "Edm.Int32", "BigInt": "Edm.Int64"}.get(attr.kind, "Edm.Decimal")
    if not _is_number(value) or (integer and isinstance(value, float)):
        raise _bad_value(value, edm)
    bounds = _BOUNDS.get(attr.kind)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise DataverseError(
            400,
            ERR_VALIDATION,
            f"A validation error occurred. The value {value} of '{attr.logical_name}' on "
            f"record of type '{table.logical_name}' is outside the valid range "
            f"({bounds[0]} to {bounds[1]}).",
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_boolean(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    if not isinstance(value, bool):
        raise _bad_value(value, "Edm.Boolean")
    return value


def _check_choice(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_value(value, "Edm.Int32")
    if attr.option(value) is None:
        raise out_of_range(table, attr, value)
    return value


def _check_multi(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    """``"100000000,100000001"``: every value an option; stored in the order given."""
    if not isinstance(value, str):
        raise _bad_value(value, "Edm.String")
    if not value.strip():
        return None
    chosen: list[int] = []
    for part in value.split(","):
        try:
            number = int(part.strip())
        except ValueError as error:
            raise _bad_value(value, "Collection(Edm.Int32)") from error
        if attr.option(number) is None:
            raise out_of_range(table, attr, number)
        if number not in chosen:
            chosen.append(number)
    return ",".join(str(number) for number in chosen)


def _check_guid(table: Table, attr: Attribute, value: Any, _: ValuePolicy) -> Any:
    if not isinstance(value, str) or not is_guid(value):
        raise _bad_value(value, "Edm.Guid")
    return value.lower()


_CHECKS: Mapping[str, Check] = {
    "String": _check_string,
    "Memo": _check_string,
    "Base64": _check_base64,
    "DateTime": _check_datetime,
    "DateOnly": _check_date,
    "Integer": _check_number,
    "BigInt": _check_number,
    "Decimal": _check_number,
    "Money": _check_number,
    "Boolean": _check_boolean,
    "Picklist": _check_choice,
    "State": _check_choice,
    "Status": _check_choice,
    "MultiSelectPicklist": _check_multi,
    "Uniqueidentifier": _check_guid,
}


def out_of_range(table: Table, attr: Attribute, value: int) -> DataverseError:
    accepted = ",".join(str(option.value) for option in attr.options)
    return DataverseError(
        400,
        ERR_OUT_OF_RANGE,
        f"A validation error occurred. The value {value} of '{attr.logical_name}' on record "
        f"of type '{table.logical_name}' is outside the valid range. Accepted Values: "
        f"{accepted}",
    )


def _bad_value(value: Any, edm: str) -> DataverseError:
    shown = orjson.dumps(value).decode()[:200]
    return DataverseError(
        400, ERR_BAD_VALUE, f"Cannot convert the literal '{shown}' to the expected type '{edm}'."
    )


# -- rows ---------------------------------------------------------------------------------


def settle_state(
    table: Table, ident: str, values: dict[str, Any], existing: Mapping[str, Any] | None
) -> None:
    """Make statecode and statuscode agree, as the platform does on create and update.

    A status alone moves the row to its state; a state alone takes that state's
    default status; both must belong together, else 0x80048408. A new row without
    either starts in the first state with its default status.
    """
    state_attr = table.attributes.get("statecode")
    status_attr = table.attributes.get("statuscode")
    if state_attr is None or status_attr is None:
        return
    state, status = values.get("statecode"), values.get("statuscode")
    if state is None and status is None:
        if existing is None:
            first = state_attr.options[0]
            values["statecode"], values["statuscode"] = first.value, first.default_status
        return
    if status is None and state is not None:
        values["statuscode"] = _state_option(state_attr, state).default_status
        return
    belongs = status_attr.option(status) if status is not None else None
    owner = belongs.state if belongs is not None else None
    if state is None:
        values["statecode"] = owner
    elif owner != state:
        state_name = _state_option(state_attr, state).label.replace(" ", "")
        raise DataverseError(
            400,
            ERR_STATE_STATUS,
            f"{status} is not a valid status code for state code "
            f"{table.logical_name.capitalize()}State.{state_name} on {table.logical_name} "
            f"with Id {ident}.",
        )


def _target_state(table: Table, values: Mapping[str, Any]) -> int | None:
    """The statecode a write asks for, directly or through a status reason's state."""
    state = values.get("statecode")
    if state is not None:
        return int(state)
    status_attr = table.attributes.get("statuscode")
    status = values.get("statuscode")
    option = status_attr.option(status) if status_attr is not None and status is not None else None
    return option.state if option is not None else None


def refuse_closed_create(table: Table, ident: str, values: Mapping[str, Any]) -> None:
    """An activity is created open, never Completed or Canceled: 0x80048408.

    The platform creates a row in its default state (statecode is IsValidForCreate false
    on activities, e.g. task: learn.microsoft.com/power-apps/developer/data-platform/
    reference/entities/task#BKMK_StateCode) and a closed status reason does not belong to
    the open state, so a closed create fails with InvalidStateCodeStatusCode. A closed
    statecode alone is refused too: silently creating the row open would hide the loss.
    """
    closed = CLOSED_STATES.get(table.logical_name)
    state = _target_state(table, values)
    if closed is None or state not in closed:
        return
    label = _state_option(table.attributes["statecode"], state).label
    raise DataverseError(
        400,
        ERR_STATE_STATUS,
        f"{STATE_STATUS_MESSAGE} A {table.logical_name} cannot be created {label} "
        f"(record {ident}): create it open, then set statecode and statuscode.",
    )


def refuse_read_only(
    table: Table, ident: str, values: Mapping[str, Any], existing: Mapping[str, Any]
) -> None:
    """A Completed or Canceled activity is read-only: the only update it takes is a reopen.

    "Completed and canceled tasks are read-only and can't be edited" (task StateCode,
    https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/task#BKMK_StateCode).
    Strict where the docs are silent (the error code is not documented, see
    ERR_INVALID_ARGUMENT): a reopen carries statecode/statuscode alone (write
    the other columns once it is open, then close it again), and a move from one closed
    state to another is refused too.
    """
    closed = CLOSED_STATES.get(table.logical_name)
    if closed is None or existing.get("statecode") not in closed or not values:
        return
    others = sorted(
        name
        for name in values
        if name not in ("statecode", "statuscode") and not name.startswith(LOOKUP_TARGET)
    )
    if not others and _target_state(table, values) not in closed:
        return
    label = _state_option(table.attributes["statecode"], existing["statecode"]).label
    change = f"it writes {', '.join(others)}" if others else "it does not reopen it"
    raise DataverseError(
        400,
        ERR_INVALID_ARGUMENT,
        f"{CLOSED_ACTIVITY_MESSAGE}: {table.logical_name} {ident} is {label} and read-only, "
        f"and this update is refused because {change}. Reopen it first (statecode 0, "
        "nothing else), then write, then close it again.",
    )


def _state_option(attr: Attribute, state: int) -> Option:
    option = attr.option(state)
    if option is None:
        raise DataverseError(500, ERR_VALIDATION, f"statecode {state} was not validated")
    return option


def require_location_parts(table: Table, ident: str, row: Mapping[str, Any]) -> None:
    """A document location is a folder: a name under a parent, regarding a record.

    Dataverse resolves a location's folder as its parent site or location's URL plus its
    ``relativeurl`` (https://learn.microsoft.com/power-apps/developer/data-platform/
    sharepoint-document-management); a location without either addresses no folder.
    The Web API does not enforce RequiredLevel, so refusing these is the simulator's
    strictness where the docs are silent. A location under a site is a table's library
    and regards nothing; one under a location is a record's folder and must regard it.
    """
    if table.logical_name != "sharepointdocumentlocation":
        return
    parent = row.get(f"{LOOKUP_TARGET}_parentsiteorlocation_value")
    missing = [
        name
        for name, present in (
            ("relativeurl", bool(row.get("relativeurl"))),
            ("parentsiteorlocation", parent is not None),
            (
                "regardingobjectid",
                parent != "sharepointdocumentlocation"
                or row.get("_regardingobjectid_value") is not None,
            ),
        )
        if not present
    ]
    if missing:
        raise DataverseError(
            400,
            ERR_VALIDATION,
            f"A validation error occurred. The sharepointdocumentlocation {ident} needs "
            f"{', '.join(missing)}: a document location names a folder (relativeurl) under "
            "a sharepointsite or another location (parentsiteorlocation), and a record's "
            "folder regards that record (regardingobjectid).",
        )


def computed_columns(table: Table, row: dict[str, Any]) -> None:
    """Columns the platform derives: a person's fullname, a note's filesize."""
    if "fullname" in table.attributes and table.logical_name in ("contact", "lead"):
        parts = (row.get("firstname"), row.get("lastname"))
        row["fullname"] = " ".join(p for p in parts if p) or None
    if table.logical_name == "annotation":
        body = row.get("documentbody")
        row["filesize"] = len(base64.b64decode(body)) if body else 0


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


LOOKUP_TARGET = "@lookuplogicalname:"
"""Row entries under this prefix remember a lookup's target table (hidden from reads)."""
LOOKUP_ANNOTATION = "@Microsoft.Dynamics.CRM.lookuplogicalname"


def public_row(
    table: Table,
    row: Mapping[str, Any],
    select: Sequence[str] | None,
    annotate: bool = False,
) -> dict[str, Any]:
    """A row as the Web API returns it: ``_x_value`` for lookups, ``@odata.etag``.

    With ``$select`` every selected column appears, null when empty, plus the primary
    id; ``annotate`` adds each lookup's ``@Microsoft.Dynamics.CRM.lookuplogicalname``
    (what ``Prefer: odata.include-annotations`` asks for).
    """
    shown: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
    if select is None:
        names: Iterable[str] = (n for n in row if n != "versionnumber" and not n.startswith("@"))
    else:
        names = dict.fromkeys([*(_column_of(table, n) for n in select), table.primary_id])
    for name in names:
        shown[name] = row.get(name)
        target = row.get(f"{LOOKUP_TARGET}{name}")
        if annotate and target is not None:
            shown[f"{name}{LOOKUP_ANNOTATION}"] = target
    return shown


def _column_of(table: Table, name: str) -> str:
    attr = table.attributes.get(name)
    return attr.column if attr is not None else name
