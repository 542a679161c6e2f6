"""The simulated org's data: tables of records and the rules that make every write path agree.

REST, sObject Collections and Bulk API 2.0 all write through :class:`Org`, so a record
refused on one path is refused on the others with the same status code — required
fields, lengths, restricted picklists, lookups, unique and external-id values,
read-only fields. Rows are plain dicts indexed by Id and by every unique, external-id
and junction key, so a 100,000-row bulk upsert is a dict lookup per row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import PurePosixPath
from typing import Any

from adapters.salesforce import soql
from adapters.salesforce.ids import IdMint, key_prefix, normalize
from adapters.salesforce.schema import FieldSpec, ObjectSpec, OrgSchema
from adapters.salesforce.standard_objects import (
    ADDRESS_PREFIXES,
    CLOSED_TASK_STATUSES,
    DEFAULTS,
    NOT_CREATEABLE,
    PAIR_KEYS,
    country_names,
    label_for,
    org_schema,
    state_names,
)

ORG_ID_PREFIX = "00D"
"""Key prefix of organization ids, as in the token response's ``id`` URL (destinations.md §1.1)."""
DEFAULT_TEXT_LENGTH = 255
"""Length of a text field whose spec gives none: Salesforce's Text(255)."""

MAX_BASE64_JSON = 37_500_000
"""Largest base64 blob in a JSON body: 37.5 MB (destinations.md §1.8)."""

REVERSE_INDEXED: Mapping[str, tuple[str, ...]] = {
    "Contact": ("AccountId",),
    "AccountContactRelation": ("AccountId", "ContactId"),
    "ContentDocumentLink": ("ContentDocumentId", "LinkedEntityId"),
    "ContentVersion": ("ContentDocumentId",),
    "User": ("Email",),
}
"""Lookup fields indexed for cascades and user lookups, so deletes stay O(1) per row."""

FILE_TYPES: Mapping[str, str] = {
    "pdf": "PDF",
    "doc": "WORD",
    "docx": "WORD_X",
    "xls": "EXCEL",
    "xlsx": "EXCEL_X",
    "ppt": "POWER_POINT",
    "pptx": "POWER_POINT_X",
    "txt": "TEXT",
    "csv": "CSV",
    "rtf": "RTF",
    "htm": "HTML",
    "html": "HTML",
    "xml": "XML",
    "png": "PNG",
    "jpg": "JPG",
    "jpeg": "JPEG",
    "gif": "GIF",
    "zip": "ZIP",
    "msg": "MSG",
    "eml": "EML",
}
"""ContentVersion.FileType by file extension, as Salesforce derives it from PathOnClient."""

NOT_DELETABLE = frozenset({"User", "ContentVersion"})
"""Users are deactivated, not deleted; a file goes by deleting its ContentDocument."""

TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox"}
)
_NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_KEY_SEPARATOR = "\x1f"


def sf_datetime(moment: datetime) -> str:
    """Salesforce's datetime wire format: ``2024-05-09T14:52:19.000+0000``."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"


def now_text() -> str:
    return sf_datetime(datetime.now(UTC))


class RecordError(Exception):
    """One record refused, as Salesforce words it: a status code, a message and the fields."""

    def __init__(self, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = tuple(fields)

    def as_result(self) -> dict[str, Any]:
        """The ``errors[]`` entry of a collections/SaveResult."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}

    def as_bulk(self) -> str:
        """The ``sf__Error`` cell: ``CODE:message:field,field --`` (``CODE:message:--`` bare)."""
        fields = f"{','.join(self.fields)} " if self.fields else ""
        return f"{self.code}:{self.message}:{fields}--"


class MultipleMatches(RecordError):
    """An upsert key that matched several records (REST answers 300 with their URLs)."""

    def __init__(self, field_name: str, ids: Sequence[str]) -> None:
        listed = ", ".join(ids)
        super().__init__(
            "DUPLICATE_EXTERNAL_ID",
            f"{field_name}: more than one record found for external id field: [{listed}]",
            (field_name,),
        )
        self.ids = tuple(ids)


def duplicate_key(field_name: str, key: Any) -> RecordError:
    """An upsert key repeated within one call (Collections request, Bulk batch): every
    record carrying it fails, none is written. The REST and Bulk guides are silent; the
    code, words and field are what real orgs answer for the same save path (Apex upsert:
    "DUPLICATE_VALUE, Duplicate external id specified: ABC123: [Name]",
    https://salesforce.stackexchange.com/questions/104048/why-does-upsert-cause-a-duplicate-value-error;
    "…specified: 1: [Test__c]", https://salesforce.stackexchange.com/questions/296121),
    and what integrations parse from Bulk results (DUPLICATE_VALUE with that text for keys
    repeated in the payload, DUPLICATE_EXTERNAL_ID for keys the org already holds twice)."""
    return RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}", (field_name,))


def relationship_name(spec: FieldSpec) -> str | None:
    """``AccountId`` → ``Account``, ``Matter__c`` → ``Matter__r``; None for non-lookups."""
    if spec.type != "reference":
        return None
    if spec.name.endswith("__c"):
        return spec.name[:-3] + "__r"
    if spec.name.endswith("Id"):
        return spec.name[:-2]
    return None


def _fold(value: Any) -> str:
    return str(value).casefold()


@dataclass(slots=True)
class Table:
    """One object's live rows, its recycle bin and its indexes."""

    spec: ObjectSpec
    fields: dict[str, FieldSpec]
    relationships: dict[str, FieldSpec]
    unique: tuple[tuple[str, ...], ...]
    indexes: dict[tuple[str, ...], dict[str, list[str]]]
    defaults: dict[str, Any]
    """Values a create fills in when left out: documented defaults, and false for booleans."""
    required: tuple[str, ...]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    recycled: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: ObjectSpec) -> Table:
        fields = {f.name.lower(): f for f in spec.fields}
        relationships = {
            name.lower(): f for f in spec.fields if (name := relationship_name(f)) is not None
        }
        unique: list[tuple[str, ...]] = [(f.name,) for f in spec.fields if f.unique]
        if spec.name in PAIR_KEYS:
            unique.append(PAIR_KEYS[spec.name])
        indexed = [*unique, *((f.name,) for f in spec.fields if f.external_id)]
        indexed += [(name,) for name in REVERSE_INDEXED.get(spec.name, ())]
        indexed += [(f.name,) for f in spec.fields if f.master_detail]
        defaults = {
            f.name: DEFAULTS.get((spec.name, f.name), False if f.type == "boolean" else None)
            for f in spec.fields
            if (spec.name, f.name) in DEFAULTS or f.type == "boolean"
        }
        required = tuple(f.name for f in spec.fields if f.required)
        indexes: dict[tuple[str, ...], dict[str, list[str]]] = {key: {} for key in indexed}
        return cls(spec, fields, relationships, tuple(unique), indexes, defaults, required)

    @property
    def name(self) -> str:
        return self.spec.name

    def field(self, name: str) -> FieldSpec | None:
        return self.fields.get(name.lower())

    def lookup(self, columns: tuple[str, ...], values: Sequence[Any]) -> list[str]:
        """Ids of live rows whose ``columns`` hold ``values`` (text compared case-insensitively)."""
        return list(self.indexes[columns].get(_KEY_SEPARATOR.join(map(_fold, values)), ()))

    def index_add(self, row: Mapping[str, Any]) -> None:
        for columns, index in self.indexes.items():
            key = _index_key(row, columns)
            if key is not None:
                index.setdefault(key, []).append(row["Id"])

    def index_remove(self, row: Mapping[str, Any]) -> None:
        for columns, index in self.indexes.items():
            key = _index_key(row, columns)
            if key is not None:
                ids = index[key]
                ids.remove(row["Id"])
                if not ids:
                    del index[key]


def _index_key(row: Mapping[str, Any], columns: tuple[str, ...]) -> str | None:
    values = [row.get(column) for column in columns]
    if any(value is None or value == "" for value in values):
        return None
    return _KEY_SEPARATOR.join(map(_fold, values))


@dataclass(slots=True)
class Savepoint:
    """Undo steps recorded since the savepoint opened; ``rollback`` replays them backwards."""

    org: Org
    log: list[Callable[[], None]] = field(default_factory=list)

    def rollback(self) -> None:
        self.org.replay(self.log)


@dataclass(frozen=True, slots=True)
class QueryPage:
    total: int
    records: list[dict[str, Any]]


class Org:
    """Every table of one org, the id mint, file blobs and the undo log of the open savepoint."""

    def __init__(
        self, custom: OrgSchema, users: Sequence[tuple[str, str]], api_version: str
    ) -> None:
        if not users:
            raise ValueError("an org needs at least one user: its admin")
        self.schema = org_schema(custom)
        self.api_version = api_version
        self.mint = IdMint()
        self.org_id = self.mint.next(ORG_ID_PREFIX)
        self.tables = {name.lower(): Table.of(spec) for name, spec in self.schema.objects.items()}
        self.by_prefix = {table.spec.key_prefix: table for table in self.tables.values()}
        self.blobs: dict[str, bytes] = {}
        self._undo: list[Callable[[], None]] | None = None
        self.admin_id = ""
        for name, email in users:
            self.add_user(name, email)

    # -- reading

    def table(self, name: str) -> Table | None:
        return self.tables.get(name.lower())

    def locate(self, record_id: str) -> tuple[Table, dict[str, Any]] | None:
        """The live row with this (15- or 18-character) id, with its table."""
        canonical = normalize(record_id)
        table = None if canonical is None else self.by_prefix.get(key_prefix(canonical))
        if table is None or canonical is None:
            return None
        row = table.rows.get(canonical)
        return None if row is None else (table, row)

    def is_recycled(self, record_id: str) -> bool:
        canonical = normalize(record_id)
        table = None if canonical is None else self.by_prefix.get(key_prefix(canonical))
        return table is not None and canonical in table.recycled

    def url(self, table: Table, record_id: str) -> str:
        return f"/services/data/v{self.api_version}/sobjects/{table.name}/{record_id}"

    def render(
        self, table: Table, row: Mapping[str, Any], names: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """A record as REST returns it: ``attributes`` then every (or the named) field."""
        out: dict[str, Any] = {
            "attributes": {"type": table.name, "url": self.url(table, row["Id"])}
        }
        specs = table.spec.fields if names is None else [table.fields[n.lower()] for n in names]
        for spec in specs:
            value = row.get(spec.name)
            if spec.type == "base64":
                value = (
                    f"{self.url(table, row['Id'])}/{spec.name}" if row["Id"] in self.blobs else None
                )
            out[spec.name] = value
        return out

    def user_id(self, email: str) -> str | None:
        ids = self.tables["user"].lookup(("Email",), (email,))
        return ids[0] if ids else None

    # -- undo log

    def _record(self, step: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def replay(self, log: list[Callable[[], None]]) -> None:
        """Run undo steps newest first without logging them again, then forget them."""
        saved, self._undo = self._undo, None
        try:
            for step in reversed(log):
                step()
        finally:
            log.clear()
            self._undo = saved

    @contextmanager
    def savepoint(self) -> Iterator[Savepoint]:
        """Record every change made inside; the caller may roll them all back (allOrNone)."""
        outer, point = self._undo, Savepoint(self)
        self._undo = point.log
        try:
            yield point
        finally:
            self._undo = outer
        if outer is not None:
            outer.extend(point.log)

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """One record's write: its side effects stand or fall together."""
        with self.savepoint() as point:
            try:
                yield
            except BaseException:
                point.rollback()
                raise

    # -- primitives: the only code that changes rows, each logging its inverse

    def _put(self, table: Table, row: dict[str, Any]) -> None:
        table.rows[row["Id"]] = row
        table.index_add(row)
        self._record(lambda: self._drop(table, row["Id"], recycle=False))

    def _replace(self, table: Table, row: dict[str, Any]) -> None:
        old = table.rows[row["Id"]]
        table.index_remove(old)
        table.rows[row["Id"]] = row
        table.index_add(row)
        self._record(lambda: self._replace(table, old))

    def _drop(self, table: Table, record_id: str, recycle: bool) -> None:
        row = table.rows.pop(record_id)
        table.index_remove(row)
        if recycle:
            table.recycled[record_id] = {**row, "IsDeleted": True}
        blob = self.blobs.pop(record_id, None)

        def undo() -> None:
            table.recycled.pop(record_id, None)
            if blob is not None:
                self.blobs[record_id] = blob
            self._put(table, row)

        self._record(undo)

    def _put_blob(self, record_id: str, data: bytes) -> None:
        self.blobs[record_id] = data

        def undo() -> None:
            self.blobs.pop(record_id, None)

        self._record(undo)

    def _new_row(self, table: Table, values: Mapping[str, Any], user: str) -> dict[str, Any]:
        stamp = now_text()
        row = {
            "Id": values.get("Id") or self.mint.next(table.spec.key_prefix),
            "IsDeleted": False,
            "CreatedDate": stamp,
            "CreatedById": user,
            "LastModifiedDate": stamp,
            "LastModifiedById": user,
            "SystemModstamp": stamp,
        }
        row.update((k, v) for k, v in values.items() if k != "Id")
        return row

    # -- users

    def add_user(self, name: str, email: str) -> str:
        """Provision an active user (the API cannot create users); the first is the admin."""
        first, _, last = name.rpartition(" ")
        table = self.tables["user"]
        user_id = self.mint.next(table.spec.key_prefix)
        author = self.admin_id or user_id
        values = {
            "Id": user_id,
            "Username": email,
            "Email": email,
            "FirstName": first or None,
            "LastName": last,
            "Name": name,
            "IsActive": True,
        }
        self._put(table, self._new_row(table, values, author))
        self.admin_id = self.admin_id or user_id
        return user_id

    # -- validation

    def check_columns(self, table: Table, keys: Iterable[str]) -> None:
        """Refuse names that are neither fields nor relationships (REST rejects the request)."""
        for key in keys:
            if key == "attributes" or table.field(key) or key.lower() in table.relationships:
                continue
            raise RecordError(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.name}", (key,)
            )

    def _coerce_all(
        self, table: Table, values: Mapping[str, Any], creating: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, raw in values.items():
            if key == "attributes":
                continue
            spec = table.field(key)
            if spec is None:
                relation = table.relationships.get(key.lower())
                if relation is None or not isinstance(raw, Mapping):
                    self.check_columns(table, [key])
                    raise RecordError("INVALID_FIELD", f"Cannot deserialize field {key}", (key,))
                out[relation.name] = self._reference(relation, self._resolve(relation, raw))
                continue
            if spec.name == "Id":
                if creating:
                    raise RecordError(
                        "INVALID_FIELD", "cannot specify Id in an insert call", ("Id",)
                    )
                continue
            if not (spec.createable if creating else spec.updateable):
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {spec.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set.",
                    (spec.name,),
                )
            out[spec.name] = self._coerce(table, spec, raw)
        return out

    def _coerce(self, table: Table, spec: FieldSpec, raw: Any) -> Any:
        """A raw value in the field's stored form; Salesforce stores "" as null."""
        if raw is None or raw == "":
            return None
        if spec.type in TEXT_TYPES:
            return self._text(spec, raw)
        if spec.type == "boolean":
            return _boolean(spec, raw)
        if spec.type in _NUMBER_TYPES:
            return _number(spec, raw)
        if spec.type == "date":
            return _date(spec, raw)
        if spec.type == "datetime":
            return _datetime(spec, raw)
        if spec.type == "reference":
            return self._reference(spec, raw, owner_of=table)
        if spec.type == "base64":
            return _base64(spec, raw)
        raise _wrong_type(spec, raw)

    def _text(self, spec: FieldSpec, raw: Any) -> str:
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, (str, int, float)):
            text = str(raw)
        else:
            raise _wrong_type(spec, raw)
        limit = spec.length or DEFAULT_TEXT_LENGTH
        if len(text) > limit:
            raise RecordError(
                "STRING_TOO_LONG",
                f"{_label(spec)}: data value too large: {text[:80]} (max length={limit})",
                (spec.name,),
            )
        if spec.type == "email" and text and not _EMAIL.match(text):
            raise RecordError(
                "INVALID_EMAIL_ADDRESS",
                f"{_label(spec)}: invalid email address: {text}",
                (spec.name,),
            )
        if spec.restricted and spec.type in {"picklist", "multipicklist"}:
            chosen = text.split(";") if spec.type == "multipicklist" else [text]
            for value in chosen:
                if value not in spec.picklist_values:
                    raise RecordError(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{_label(spec)}: bad value for restricted picklist field: {value}",
                        (spec.name,),
                    )
        return text

    def _reference(self, spec: FieldSpec, raw: Any, owner_of: Table | None = None) -> str:
        canonical = normalize(raw) if isinstance(raw, str) else None
        if canonical is None:
            raise RecordError(
                "MALFORMED_ID", f"{_label(spec)}: id value of incorrect type: {raw}", (spec.name,)
            )
        target = self.by_prefix.get(key_prefix(canonical))
        if target is None or target.name not in spec.reference_to:
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{_label(spec)}: id value of incorrect type: {canonical}",
                (spec.name,),
            )
        row = target.rows.get(canonical)
        if row is None:
            if canonical in target.recycled:
                raise RecordError("ENTITY_IS_DELETED", "entity is deleted", (spec.name,))
            raise RecordError(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", (spec.name,)
            )
        if spec.name == "OwnerId" and target.name == "User" and not row.get("IsActive"):
            what = owner_of.spec.label.lower() if owner_of else "record"
            raise RecordError(
                "INACTIVE_OWNER_OR_USER",
                f"operation performed with inactive user [{canonical}] as owner of {what}",
                (spec.name,),
            )
        return canonical

    def _resolve(self, spec: FieldSpec, ref: Mapping[str, Any]) -> str:
        """A lookup by the target's external id: ``{"Ext__c": "X"}`` (REST) or ``Rel.Ext__c``."""
        attributes = ref.get("attributes")
        named = attributes.get("type") if isinstance(attributes, Mapping) else None
        if named is None and len(spec.reference_to) != 1:
            raise RecordError(
                "INVALID_FIELD", f"{spec.name}: polymorphic lookup needs a type", (spec.name,)
            )
        target = self.table(str(named or spec.reference_to[0]))
        keys = [(k, v) for k, v in ref.items() if k != "attributes"]
        if target is None or target.name not in spec.reference_to or len(keys) != 1:
            raise RecordError("INVALID_FIELD", f"Invalid foreign key for {spec.name}", (spec.name,))
        ((column, value),) = keys
        ext = target.field(column)
        if ext is None or not (ext.external_id or ext.name == "Id"):
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID field {column} is not an external id on {target.name}",
                (spec.name,),
            )
        if ext.name == "Id":
            return str(value)
        ids = target.lookup((ext.name,), (value,))
        if len(ids) != 1:
            found = "not found" if not ids else "matched more than one record"
            raise RecordError(
                "INVALID_FIELD",
                f"Foreign key external ID: {value} {found} for field {ext.name} "
                f"in entity {target.name}",
                (spec.name,),
            )
        return ids[0]

    def _complete(self, table: Table, row: dict[str, Any], user: str) -> None:
        """Defaults, derived fields and the required-field check of a row about to be created."""
        for name, default in table.defaults.items():
            if row.get(name) is None:
                row[name] = default
        if "ownerid" in table.fields and row.get("OwnerId") is None:
            row["OwnerId"] = user
        _derive(table, row)
        _require(table, row)

    def _check_unique(self, table: Table, row: Mapping[str, Any]) -> None:
        for columns in table.unique:
            key = _index_key(row, columns)
            clash = [i for i in table.indexes[columns].get(key or "", ()) if i != row["Id"]]
            if key is not None and clash:
                raise _duplicate(table, columns, row, clash[0])

    # -- State and Country/Territory Picklists

    def _addresses(
        self, table: Table, values: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        """Sync each address's code and integration-value fields, or refuse a value the org's
        picklists don't have (field-syncing logic:
        https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_field_syncing.htm)."""
        prefixes = ADDRESS_PREFIXES.get(table.name, ())
        if not self.schema.state_country_picklists or not prefixes:
            return values
        out = dict(values)
        for prefix in prefixes:
            names = [f"{prefix}{part}" for part in ("CountryCode", "Country", "StateCode", "State")]
            keys = {n: next((k for k in out if k.lower() == n.lower()), None) for n in names}
            given = {n: _blank_none(out.pop(k)) for n, k in keys.items() if k is not None}
            if given:
                out.update(_address_group(table, prefix, given, current))
        return out

    # -- writes

    def create(
        self, table: Table, values: Mapping[str, Any], user: str, blob: bytes | None = None
    ) -> str:
        """Insert one record; raise :class:`RecordError` for anything Salesforce would refuse."""
        if table.name in NOT_CREATEABLE:
            raise RecordError(
                "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be inserted: {table.spec.label}"
            )
        fields = self._coerce_all(table, self._addresses(table, values, None), creating=True)
        given = fields.pop("VersionData", None)
        data = given if given is not None else blob
        with self._atomic():
            row = self._new_row(table, fields, user)
            if table.name == "ContentVersion":
                self._prepare_version(row, data, user)
            self._complete(table, row, user)
            self._check_unique(table, row)
            self._put(table, row)
            self._after_write(table, None, row, user)
        return str(row["Id"])

    def update(self, table: Table, record_id: str, values: Mapping[str, Any], user: str) -> str:
        """Change one record; returns its canonical id."""
        current = self._live(table, record_id)
        fields = self._coerce_all(table, self._addresses(table, values, current), creating=False)
        row = {**current, **fields}
        row["LastModifiedDate"] = row["SystemModstamp"] = now_text()
        row["LastModifiedById"] = user
        _derive(table, row)
        _require(table, row)
        self._check_unique(table, row)
        with self._atomic():
            self._replace(table, row)
            self._after_write(table, current, row, user)
        return str(row["Id"])

    def upsert(
        self, table: Table, spec: FieldSpec, key: Any, values: Mapping[str, Any], user: str
    ) -> tuple[str, bool]:
        """Insert or update by an external-id field (or Id); returns ``(id, created)``."""
        body = {k: v for k, v in values.items() if k.lower() != spec.name.lower()}
        if key is None or key == "":
            if spec.name == "Id":
                return self.create(table, body, user), True
            raise RecordError("MISSING_ARGUMENT", f"{spec.name} not specified", (spec.name,))
        if spec.name == "Id":
            return self.update(table, str(key), body, user), False
        matches = table.lookup((spec.name,), (self._coerce(table, spec, key),))
        if len(matches) > 1:
            raise MultipleMatches(spec.name, matches)
        if matches:
            return self.update(table, matches[0], body, user), False
        return self.create(table, {**body, spec.name: key}, user), True

    def delete(self, record_id: str, hard: bool = False, expect: Table | None = None) -> Table:
        """Delete one record (to the recycle bin unless ``hard``) with Salesforce's cascades."""
        found = self.locate(record_id)
        if found is None or (expect is not None and found[0] is not expect):
            raise _missing(record_id, self.is_recycled(record_id))
        table, row = found
        if table.name in NOT_DELETABLE:
            raise RecordError(
                "INVALID_TYPE_FOR_OPERATION", f"entity type cannot be deleted: {table.spec.label}"
            )
        with self._atomic():
            self._cascade(table, row["Id"], hard)
            self._drop(table, row["Id"], recycle=not hard)
        return table

    def _live(self, table: Table, record_id: str) -> dict[str, Any]:
        canonical = normalize(record_id)
        if canonical is None:
            raise RecordError("MALFORMED_ID", f"malformed id {record_id}", ("Id",))
        row = table.rows.get(canonical)
        if row is None:
            if key_prefix(canonical) != table.spec.key_prefix:
                raise RecordError(
                    "MALFORMED_ID",
                    f"{table.spec.label} ID: id value of incorrect type: {canonical}",
                )
            raise _missing(canonical, canonical in table.recycled)
        return row

    # -- object rules

    def _after_write(
        self, table: Table, old: Mapping[str, Any] | None, new: Mapping[str, Any], user: str
    ) -> None:
        if table.name == "Contact":
            before = None if old is None else old.get("AccountId")
            self._sync_direct_relation(new["Id"], before, new.get("AccountId"), user)
        elif table.name == "ContentVersion" and old is None:
            self._link_new_version(new, user)

    def _sync_direct_relation(
        self, contact_id: str, before: str | None, after: str | None, user: str
    ) -> None:
        """Keep the one IsDirect AccountContactRelation in step with Contact.AccountId."""
        if before == after:
            return
        relations = self.tables["accountcontactrelation"]
        pair = ("AccountId", "ContactId")
        if before is not None:
            for old_id in relations.lookup(pair, (before, contact_id)):
                self._drop(relations, old_id, recycle=False)
        if after is None:
            return
        existing = relations.lookup(pair, (after, contact_id))
        if existing:
            self._replace(relations, {**relations.rows[existing[0]], "IsDirect": True})
            return
        values = {"AccountId": after, "ContactId": contact_id, "IsDirect": True, "IsActive": True}
        self._put(relations, self._new_row(relations, values, user))

    def _prepare_version(self, row: dict[str, Any], data: bytes | None, user: str) -> None:
        """Fill a new ContentVersion's derived fields and create or advance its ContentDocument."""
        missing = [
            name
            for name, value in (("VersionData", data), ("PathOnClient", row.get("PathOnClient")))
            if value is None
        ]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        assert data is not None
        path = PurePosixPath(str(row["PathOnClient"]).replace("\\", "/"))
        extension = path.suffix[1:].lower()
        row.setdefault("Title", None)
        row["Title"] = row["Title"] or path.stem
        row.update(
            ContentSize=len(data),
            Checksum=hashlib.md5(data).hexdigest(),  # the content's MD5, as the field says
            FileExtension=extension or None,
            FileType=FILE_TYPES.get(extension, "UNKNOWN"),
            IsLatest=True,
        )
        documents = self.tables["contentdocument"]
        document_id = row.get("ContentDocumentId")
        self._put_blob(row["Id"], data)
        derived = {k: row[k] for k in ("Title", "ContentSize", "FileExtension", "FileType")}
        if document_id is None:
            document = {
                **derived,
                "LatestPublishedVersionId": row["Id"],
                "OwnerId": row.get("OwnerId") or user,
            }
            created = self._new_row(documents, document, user)
            self._put(documents, created)
            row["ContentDocumentId"] = created["Id"]
            row["VersionNumber"] = "1"
            return
        versions = self.tables["contentversion"]
        previous = versions.lookup(("ContentDocumentId",), (document_id,))
        for version_id in previous:
            self._replace(versions, {**versions.rows[version_id], "IsLatest": False})
        row["VersionNumber"] = str(len(previous) + 1)
        document = documents.rows[document_id]
        self._replace(documents, {**document, **derived, "LatestPublishedVersionId": row["Id"]})

    def _link_new_version(self, version: Mapping[str, Any], user: str) -> None:
        """A first version links its document to its owner and to FirstPublishLocationId."""
        if version["VersionNumber"] != "1":
            return
        links = self.tables["contentdocumentlink"]
        document_id = version["ContentDocumentId"]
        owner = version.get("OwnerId") or user
        targets = [(owner, "I")]
        location = version.get("FirstPublishLocationId")
        if location and location != owner:
            targets.append((location, "V"))
        for entity, share in targets:
            values = {
                "ContentDocumentId": document_id,
                "LinkedEntityId": entity,
                "ShareType": share,
                "Visibility": "AllUsers",
            }
            self._put(links, self._new_row(links, values, user))

    def _cascade(self, table: Table, record_id: str, hard: bool) -> None:
        """What Salesforce deletes along with a record: contacts of an account, junction rows."""

        def sweep(child: str, column: str, recycle: bool) -> None:
            target = self.tables[child]
            for child_id in target.lookup((column,), (record_id,)):
                if child_id in target.rows:
                    if child == "contact":
                        self._cascade(target, child_id, hard)
                    self._drop(target, child_id, recycle=recycle)

        if table.name == "Account":
            sweep("contact", "AccountId", not hard)
            sweep("accountcontactrelation", "AccountId", False)
        elif table.name == "Contact":
            sweep("accountcontactrelation", "ContactId", False)
        elif table.name == "ContentDocument":
            sweep("contentversion", "ContentDocumentId", False)
            sweep("contentdocumentlink", "ContentDocumentId", False)
        sweep("contentdocumentlink", "LinkedEntityId", False)
        self._cascade_details(table, record_id, hard)

    def _cascade_details(self, table: Table, record_id: str, hard: bool) -> None:
        """Deleting a master deletes its detail records (and theirs) with it
        (https://help.salesforce.com/s/articleView?id=sf.relationships_considerations.htm)."""
        for child in self.tables.values():
            for spec in child.spec.fields:
                if not spec.master_detail or table.name not in spec.reference_to:
                    continue
                for child_id in child.lookup((spec.name,), (record_id,)):
                    if child_id in child.rows:
                        self._cascade(child, child_id, hard)
                        self._drop(child, child_id, recycle=not hard)

    # -- SOQL

    def query(self, text: str, include_deleted: bool = False) -> QueryPage:
        """Run a SOQL query; raises SoqlError (MALFORMED_QUERY) or RecordError (INVALID_*)."""
        parsed = soql.parse(text)
        table = self.table(parsed.sobject)
        if table is None:
            raise RecordError(
                "INVALID_TYPE",
                f"sObject type '{parsed.sobject}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name.",
            )
        for path in (
            *parsed.fields,
            *soql.fields_of(parsed.where),
            *(o.field for o in parsed.order_by),
        ):
            self._path_spec(table, path)
        where = (
            None
            if parsed.where is None
            else soql.map_literals(
                parsed.where, lambda path, literal: self._bind(table, path, literal)
            )
        )
        rows: Iterable[dict[str, Any]] = table.rows.values()
        if include_deleted:
            rows = [*rows, *table.recycled.values()]
        elif where is not None and (indexed := _indexed_rows(table, where)) is not None:
            rows = indexed
        value_of = self._value_of(table)
        if where is not None:
            condition = where
            rows = [row for row in rows if soql.evaluate(condition, partial(value_of, row))]
        if parsed.count:
            return QueryPage(len(list(rows)), [])
        ordered = soql.order_rows(list(rows), parsed.order_by, value_of)
        start = parsed.offset or 0
        stop = None if parsed.limit is None else start + parsed.limit
        chosen = ordered[start:stop]
        return QueryPage(len(chosen), [self._project(table, row, parsed.fields) for row in chosen])

    def _path_spec(self, table: Table, path: str) -> FieldSpec:
        """The field a dotted path ends at; unknown paths are INVALID_FIELD as in Salesforce."""
        current, parts = [table], path.split(".")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            for candidate in current:
                spec = candidate.field(part) if last else candidate.relationships.get(part.lower())
                if spec is not None:
                    break
            else:
                raise RecordError(
                    "INVALID_FIELD",
                    f"No such column '{part}' on entity '{current[0].name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name.",
                )
            if last:
                return spec
            current = [self.tables[name.lower()] for name in spec.reference_to]
        raise AssertionError("unreachable")

    def _bind(self, table: Table, path: str, literal: soql.Value) -> soql.Value:
        """Check a literal against its field's type; ids become canonical 18-character ids."""
        spec = self._path_spec(table, path)
        if literal is None:
            return None
        expected: type | tuple[type, ...] = str
        if spec.type in _NUMBER_TYPES:
            expected = (int, float)
        elif spec.type == "boolean":
            expected = bool
        elif spec.type == "date":
            expected = date
        elif spec.type == "datetime":
            expected = datetime
        if not isinstance(literal, expected) or (
            expected is not bool and isinstance(literal, bool)
        ):
            quoting = "be" if expected is str else "not be"
            raise RecordError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{path}' must be of type {spec.type} "
                f"and should {quoting} enclosed in quotes",
            )
        if spec.type in {"id", "reference"} and isinstance(literal, str):
            return normalize(literal) or literal
        return literal

    def _value_of(self, table: Table) -> Callable[[Mapping[str, Any], str], Any]:
        def value_of(row: Mapping[str, Any], path: str) -> Any:
            current: Mapping[str, Any] | None = row
            current_table = table
            *hops, last = path.split(".")
            for hop in hops:
                relation = current_table.relationships.get(hop.lower())
                target_id = (
                    None if current is None or relation is None else current.get(relation.name)
                )
                found = None if target_id is None else self.locate(target_id)
                if found is None:
                    return None
                current_table, current = found
            spec = current_table.field(last)
            return None if current is None or spec is None else current.get(spec.name)

        return value_of

    def _project(
        self, table: Table, row: Mapping[str, Any], paths: Sequence[str]
    ) -> dict[str, Any]:
        """One query row: selected fields, relationship paths as nested records (or null)."""
        out: dict[str, Any] = {
            "attributes": {"type": table.name, "url": self.url(table, row["Id"])}
        }
        for path in paths:
            self._place(out, table, row, path.split("."))
        return out

    def _place(
        self, out: dict[str, Any], table: Table, row: Mapping[str, Any], parts: list[str]
    ) -> None:
        if len(parts) == 1:
            spec = table.fields[parts[0].lower()]
            out[spec.name] = self.render(table, row, [spec.name])[spec.name]
            return
        relation = table.relationships[parts[0].lower()]
        name = relationship_name(relation) or relation.name
        target_id = row.get(relation.name)
        found = None if target_id is None else self.locate(target_id)
        if found is None:
            out.setdefault(name, None)
            return
        child_table, child_row = found
        nested = out.get(name) or {
            "attributes": {"type": child_table.name, "url": self.url(child_table, child_row["Id"])}
        }
        out[name] = nested
        if child_table.field(parts[1]) is None and len(parts) == 2:
            return
        self._place(nested, child_table, child_row, parts[1:])


def _label(spec: FieldSpec) -> str:
    return spec.label or label_for(spec.name)


def _wrong_type(spec: FieldSpec, raw: Any) -> RecordError:
    return RecordError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{_label(spec)}: value not of required type: {raw}",
        (spec.name,),
    )


def _boolean(spec: FieldSpec, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise _wrong_type(spec, raw)


def _number(spec: FieldSpec, raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise _wrong_type(spec, raw)
    try:
        number = float(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise _wrong_type(spec, raw) from None
    if not isinstance(number, (int, float)) or number != number:
        raise _wrong_type(spec, raw)
    if spec.type == "int":
        if number != int(number):
            raise _wrong_type(spec, raw)
        number = int(number)
    digits = (spec.precision or 18) - (spec.scale or 0)
    if abs(number) >= 10**digits:
        raise RecordError(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{_label(spec)}: value outside of valid range on numeric field: {raw}",
            (spec.name,),
        )
    return number


def _date(spec: FieldSpec, raw: Any) -> str:
    try:
        if isinstance(raw, str) and len(raw) == 10:
            return date.fromisoformat(raw).isoformat()
        if isinstance(raw, str):
            return datetime.fromisoformat(raw).date().isoformat()
    except ValueError:
        pass
    raise _wrong_type(spec, raw)


def _datetime(spec: FieldSpec, raw: Any) -> str:
    """ISO-8601 with ``Z`` or an offset (no zone reads as GMT, as the API does)."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            pass
        else:
            return sf_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    raise _wrong_type(spec, raw)


def _base64(spec: FieldSpec, raw: Any) -> bytes:
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    if not isinstance(raw, str):
        raise _wrong_type(spec, raw)
    if len(raw) > MAX_BASE64_JSON:
        raise RecordError(
            "STORAGE_LIMIT_EXCEEDED",
            f"{_label(spec)}: base64 data exceeds the 37.5 MB limit of a JSON body; "
            "use a multipart request",
            (spec.name,),
        )
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _wrong_type(spec, raw[:40]) from None


def _derive(table: Table, row: dict[str, Any]) -> None:
    """Fields Salesforce computes: person Name, a custom record's default Name, activity state."""
    if table.name in {"Contact", "Lead", "User"}:
        row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
    elif table.spec.custom and table.field("Name") and not row.get("Name"):
        row["Name"] = row["Id"]
    elif table.name == "Event":
        _event_timing(row)
    elif table.name == "Task":
        _task_state(row)


def _task_state(row: dict[str, Any]) -> None:
    """IsClosed follows Status (TaskStatus.IsClosed), IsHighPriority follows Priority, and
    CompletedDateTime is stamped when the task closes (Object Reference, Task)."""
    closed = row.get("Status") in CLOSED_TASK_STATUSES
    if closed and not row.get("IsClosed"):
        row["CompletedDateTime"] = now_text()
    elif not closed:
        row["CompletedDateTime"] = None
    row["IsClosed"] = closed
    row["IsHighPriority"] = row.get("Priority") == "High"


def _event_timing(row: dict[str, Any]) -> None:
    """StartDateTime and ActivityDateTime are one value; the end comes from EndDateTime or
    DurationInMinutes; an all-day event may give only ActivityDate (Object Reference, Event)."""
    start = row.get("StartDateTime") or row.get("ActivityDateTime")
    if start is None and row.get("IsAllDayEvent") and row.get("ActivityDate"):
        start = sf_datetime(datetime.fromisoformat(f"{row['ActivityDate']}T00:00:00+00:00"))
        if row.get("EndDateTime") is None and row.get("DurationInMinutes") is None:
            row["DurationInMinutes"] = 1440
    if start is None:
        raise RecordError(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [StartDateTime]",
            ("StartDateTime",),
        )
    row["StartDateTime"] = row["ActivityDateTime"] = start
    begin = datetime.fromisoformat(start)
    end, minutes = row.get("EndDateTime"), row.get("DurationInMinutes")
    if end is None and minutes is not None:
        row["EndDateTime"] = sf_datetime(begin + timedelta(minutes=int(minutes)))
    elif end is not None:
        row["DurationInMinutes"] = int((datetime.fromisoformat(end) - begin).total_seconds() // 60)
    else:
        raise RecordError(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [DurationInMinutes]",
            ("DurationInMinutes",),
        )
    row["ActivityDate"] = begin.date().isoformat()
    row["EndDate"] = datetime.fromisoformat(row["EndDateTime"]).date().isoformat()


def _require(table: Table, row: Mapping[str, Any]) -> None:
    missing = [name for name in table.required if row.get(name) in (None, "")]
    if missing:
        raise RecordError(
            "REQUIRED_FIELD_MISSING",
            f"Required fields are missing: [{', '.join(missing)}]",
            missing,
        )


def _duplicate(
    table: Table, columns: tuple[str, ...], row: Mapping[str, Any], other: str
) -> RecordError:
    if table.name == "ContentDocumentLink":
        return RecordError(
            "DUPLICATE_VALUE",
            f"Document with ID: {row['ContentDocumentId']} is already linked with the entity "
            f"with ID: {row['LinkedEntityId']}",
        )
    return RecordError(
        "DUPLICATE_VALUE",
        f"duplicate value found: {columns[-1]} duplicates value on record with id: {other}",
    )


def _missing(record_id: str, recycled: bool) -> RecordError:
    if recycled:
        return RecordError("ENTITY_IS_DELETED", "entity is deleted")
    if normalize(record_id) is None:
        return RecordError("MALFORMED_ID", f"malformed id {record_id}")
    return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


_COUNTRIES = country_names()


def _blank_none(value: Any) -> Any:
    return None if value == "" else value


def _picklist_problem(table: Table, name: str, what: str) -> RecordError:
    """The org's words for a state or country it doesn't list (FIELD_INTEGRITY_EXCEPTION)."""
    spec = table.field(name)
    plural = "countries" if what == "country/territory" else "states"
    noun = "country" if what == "country/territory" else "state"
    return RecordError(
        "FIELD_INTEGRITY_EXCEPTION",
        f"There's a problem with this {noun}, even though it may appear correct. Please "
        f"select a {what} from the list of valid {plural}.: {_label(spec) if spec else name}",
        (name,),
    )


def _address_group(
    table: Table, prefix: str, given: Mapping[str, Any], current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One address's four fields after a write: codes and integration values in step."""
    country = _country_code(table, prefix, given, current)
    state = _state_code(table, prefix, given, current, country)
    states = state_names(country) if country else {}
    return {
        f"{prefix}CountryCode": country,
        f"{prefix}Country": _COUNTRIES[country] if country else None,
        f"{prefix}StateCode": state,
        f"{prefix}State": states[state] if state else None,
    }


def _country_code(
    table: Table, prefix: str, given: Mapping[str, Any], current: Mapping[str, Any] | None
) -> str | None:
    sent, code = _given_code(
        table, prefix, "Country", given, current, _COUNTRIES, "country/territory"
    )
    if sent:
        return code
    return None if current is None else current.get(f"{prefix}CountryCode")


def _state_code(
    table: Table,
    prefix: str,
    given: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    country: str | None,
) -> str | None:
    states = state_names(country) if country else {}
    sent, code = _given_code(table, prefix, "State", given, current, states, "state")
    if sent:
        return code
    if country is None:
        return None  # removing the country removes its state too
    kept = None if current is None else current.get(f"{prefix}StateCode")
    if kept is not None and kept not in states:
        raise _picklist_problem(table, f"{prefix}StateCode", "state")
    return kept


def _given_code(
    table: Table,
    prefix: str,
    part: str,
    given: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    names: Mapping[str, str],
    what: str,
) -> tuple[bool, str | None]:
    """Whether a write sets ``{prefix}{part}``, and the code: its ``…Code`` field, else the
    text field matched exactly against the integration values (the names). A code the org does not
    list, or text that is not one of the names, is refused; on an update, text that does not
    match the code sent with it is refused too (on create the code wins)."""
    code_name, text_name = f"{prefix}{part}Code", f"{prefix}{part}"
    if code_name in given:
        raw = given[code_name]
        code = None if raw is None else str(raw).upper()
        if code is not None and code not in names:
            raise _picklist_problem(table, code_name, what)
        text = given.get(text_name)
        if current is not None and text is not None and code and text != names[code]:
            raise _picklist_problem(table, text_name, what)
        return True, code
    if text_name in given:
        text = given[text_name]
        if text is None:
            return True, None
        by_name = {name: code for code, name in names.items()}
        if str(text) not in by_name:
            raise _picklist_problem(table, text_name, what)
        return True, by_name[str(text)]
    return False, None


def _indexed_rows(table: Table, where: soql.Expr) -> list[dict[str, Any]] | None:
    """The live rows a selective filter can hold, read from the Id or an index instead of
    scanning the table, as Salesforce's query optimizer does for ``Id`` and external-id or
    unique fields ("Indexes", https://developer.salesforce.com/docs/atlas.en-us.salesforce_large_data_volumes_bp.meta/salesforce_large_data_volumes_bp/ldv_deployments_infrastructure_indexes.htm).
    The whole filter is still evaluated on them; None: no index serves it (scan)."""
    if isinstance(where, soql.Junction) and where.op == "AND":
        return next(
            (rows for item in where.items if (rows := _indexed_rows(table, item)) is not None),
            None,
        )
    if not isinstance(where, soql.Condition) or where.op not in ("=", "IN"):
        return None
    values = where.value if isinstance(where.value, tuple) else (where.value,)
    spec = table.field(where.field)
    if spec is None:
        return None
    if spec.name == "Id":
        ids = dict.fromkeys(str(v) for v in values if v is not None)
    elif (spec.name,) in table.indexes:
        ids = dict.fromkeys(
            i for v in values if v is not None for i in table.lookup((spec.name,), (v,))
        )
    else:
        return None
    return [table.rows[i] for i in ids if i in table.rows]
