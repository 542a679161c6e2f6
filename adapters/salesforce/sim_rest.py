"""REST handlers of the simulator: describe, records, upsert, sObject Collections, SOQL, files.

Shapes follow destinations.md §1.5-§1.8: single-record failures are a 400 with the error
array, collections return 200 with one SaveResult per record in order (``statusCode``
inside ``errors``), allOrNone rolls everything back, an upsert key matching several
records is a 300. When asked, a record of a collection fails ``UNABLE_TO_LOCK_ROW``
(without being written) while the others go through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from adapters.salesforce.ids import normalize
from adapters.salesforce.schema import FieldSpec
from adapters.salesforce.sim_store import (
    TEXT_TYPES,
    MultipleMatches,
    Org,
    RecordError,
    Table,
    duplicate_key,
    relationship_name,
)
from adapters.salesforce.sim_wire import (
    SF_USER,
    ApiError,
    json_response,
    not_found,
    read_object,
    row_lock_error,
)
from adapters.salesforce.soql import SoqlError
from adapters.salesforce.standard_objects import (
    DEFAULTS,
    NOT_CREATEABLE,
    SYSTEM_FIELDS,
    label_for,
)

COLLECTION_LIMIT = 200
"""Records per sObject Collections call (destinations.md §0, §1.5)."""

QUERY_BATCH = 2_000
"""Rows per SOQL result page, the REST default (and maximum) batch size."""

MIN_QUERY_BATCH = 200
QUERY_LOCATOR_PREFIX = "01g"
MAX_OPEN_CURSORS = 100
"""Open query locators kept; the oldest is forgotten first (its next page then 400s).

A locator outlives its last page, as Salesforce's do until they time out, so a page whose
answer was lost (an injected reset) can be asked for again."""

MAX_MULTIPART_BLOB = 2 * 1024**3
"""Largest ContentVersion VersionData in a multipart upload: 2 GB (§1.8)."""

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "base64": "xsd:base64Binary",
}
_DERIVED_NAMES = frozenset({"Contact", "Lead", "User"})

Result = dict[str, Any]


def _failure(error: RecordError) -> Result:
    return {"success": False, "errors": [error.as_result()]}


def _defaulted(table: Table, spec: FieldSpec) -> bool:
    """Salesforce fills the field when a create leaves it out."""
    return (
        (table.name, spec.name) in DEFAULTS
        or spec.type == "boolean"
        or spec.name in SYSTEM_FIELDS
        or spec.name == "OwnerId"
        or (spec.name == "Name" and (table.spec.custom or table.name in _DERIVED_NAMES))
    )


def _relationship_order(table: Table, spec: FieldSpec) -> int | None:
    """0 for an object's first master-detail field, 1 for its second (DescribeFieldResult
    ``relationshipOrder``); None for any other field."""
    if not spec.master_detail:
        return None
    masters = [f.name for f in table.spec.fields if f.master_detail]
    return masters.index(spec.name)


def _controller(spec: FieldSpec) -> str | None:
    """A state-code picklist depends on its address's country code."""
    if spec.type == "picklist" and spec.name.endswith("StateCode"):
        return spec.name.removesuffix("StateCode") + "CountryCode"
    return None


def describe_field(table: Table, spec: FieldSpec) -> dict[str, Any]:
    """One entry of ``fields[]`` in a describe (destinations.md §1.7; DescribeFieldResult,
    https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm)."""
    text = spec.type in TEXT_TYPES
    length = (spec.length or 255) if text else 18 if spec.type in {"id", "reference"} else 0
    defaulted = _defaulted(table, spec)
    default = DEFAULTS.get((table.name, spec.name))
    numeric = spec.type in {"double", "currency", "percent"}
    return {
        "name": spec.name,
        "label": spec.label or label_for(spec.name),
        "type": spec.type,
        "soapType": _SOAP_TYPES.get(spec.type, "xsd:string"),
        "length": length,
        "byteLength": length * 3,
        "precision": (spec.precision or 18) if numeric else 0,
        "scale": (spec.scale or 0) if numeric else 0,
        "digits": (spec.precision or 9) if spec.type == "int" else 0,
        "nillable": not (spec.required or spec.type in {"boolean", "id"} or defaulted),
        "createable": spec.createable,
        "updateable": spec.updateable,
        "defaultedOnCreate": defaulted,
        "defaultValue": default if spec.type == "boolean" else None,
        "unique": spec.unique,
        "externalId": spec.external_id,
        "idLookup": spec.type == "id" or spec.external_id or spec.unique,
        "caseSensitive": False,
        "custom": spec.name.endswith("__c"),
        "calculated": False,
        "nameField": spec.name == "Name",
        "autoNumber": False,
        "filterable": spec.type != "textarea",
        "sortable": spec.type != "textarea",
        "referenceTo": list(spec.reference_to),
        "relationshipName": relationship_name(spec),
        "relationshipOrder": _relationship_order(table, spec),
        "cascadeDelete": spec.master_detail,
        "controllerName": _controller(spec),
        "dependentPicklist": _controller(spec) is not None,
        "restrictedPicklist": spec.restricted,
        "picklistValues": [
            {
                "active": True,
                "defaultValue": value == default,
                "label": value,
                "validFor": None,
                "value": value,
            }
            for value in spec.picklist_values
        ],
    }


def object_summary(table: Table, version: str) -> dict[str, Any]:
    """One entry of ``GET /sobjects`` (and the core of a describe)."""
    base = f"/services/data/{version}/sobjects/{table.name}"
    createable = table.name not in NOT_CREATEABLE
    return {
        "name": table.name,
        "label": table.spec.label,
        "labelPlural": f"{table.spec.label}s",
        "keyPrefix": table.spec.key_prefix,
        "custom": table.spec.custom,
        "createable": createable,
        "updateable": True,
        "deletable": table.name not in {"User", "ContentVersion"},
        "queryable": True,
        "retrieveable": True,
        "searchable": True,
        "undeletable": createable,
        "layoutable": True,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def _child_relationships(org: Org, table: Table) -> list[dict[str, Any]]:
    children = []
    for child in org.tables.values():
        for spec in child.spec.fields:
            if spec.type != "reference" or table.name not in spec.reference_to:
                continue
            if spec.name in SYSTEM_FIELDS or spec.name == "OwnerId":
                continue
            plural = child.name.removesuffix("__c") + "s"
            children.append(
                {
                    "childSObject": child.name,
                    "field": spec.name,
                    "relationshipName": f"{plural}__r" if spec.name.endswith("__c") else plural,
                    "cascadeDelete": spec.master_detail
                    or (table.name, child.name) in {("Account", "Contact")},
                }
            )
    return children


class RestApi:
    """The org's REST resources; the gate has already authenticated and counted the call.

    ``row_locked()`` is asked once per record of an sObject Collections write; when it says
    yes the record fails ``UNABLE_TO_LOCK_ROW`` untouched (the simulator's injected fault).
    """

    def __init__(self, org: Org, row_locked: Callable[[], bool] = lambda: False) -> None:
        self.org = org
        self.row_locked = row_locked
        self.cursors: dict[str, list[dict[str, Any]]] = {}

    def _table(self, request: web.Request) -> Table:
        table = self.org.table(request.match_info["sobject"])
        if table is None:
            raise not_found()
        return table

    def _check(self, table: Table, values: dict[str, Any], raw: bytes | None = None) -> None:
        """Unknown fields and (for a JSON body) values that can't be deserialised refuse the
        whole request, before any record of it is written."""
        try:
            self.org.check_columns(table, values)
        except RecordError as error:
            raise ApiError.of(error) from None
        if raw is not None:
            check_json_values(table, values, raw)

    # -- metadata

    async def sobjects(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        listed = [object_summary(t, version) for t in self.org.tables.values()]
        return json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": listed})

    async def describe(self, request: web.Request) -> web.Response:
        table = self._table(request)
        body = object_summary(table, request.match_info["version"])
        body["fields"] = [describe_field(table, spec) for spec in table.spec.fields]
        body["childRelationships"] = _child_relationships(self.org, table)
        body["recordTypeInfos"] = []
        return json_response(body)

    async def basic_info(self, request: web.Request) -> web.Response:
        table = self._table(request)
        summary = object_summary(table, request.match_info["version"])
        return json_response({"objectDescribe": summary, "recentItems": []})

    # -- single records

    async def create(self, request: web.Request) -> web.Response:
        table = self._table(request)
        blob, raw = None, None
        if request.content_type.startswith("multipart/"):
            values, blob = await self._multipart(request, table)
        else:
            values = await read_object(request)
            raw = await request.read()
        self._check(table, values, raw)
        try:
            new_id = self.org.create(table, values, request[SF_USER], blob)
        except RecordError as error:
            raise ApiError.of(error) from None
        return json_response({"id": new_id, "success": True, "errors": []}, 201)

    async def _multipart(
        self, request: web.Request, table: Table
    ) -> tuple[dict[str, Any], bytes | None]:
        """``entity_*`` JSON part plus the binary part named after the blob field, any order."""
        values: dict[str, Any] | None = None
        blob = None
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            spec = table.field(part.name)
            if part.name.startswith("entity_"):
                parsed = orjson.loads(await part.read())
                values = parsed if isinstance(parsed, dict) else None
            elif spec is not None and spec.type == "base64":
                blob = await _read_part(part)
        if values is None:
            raise ApiError(
                400, "INVALID_MULTIPART_REQUEST", "The multipart request has no entity_ JSON part"
            )
        return values, blob

    def _row(self, table: Table, record_id: str) -> dict[str, Any]:
        found = self.org.locate(record_id)
        if found is None or found[0] is not table:
            if self.org.is_recycled(record_id):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            if found is None and len(record_id) not in (15, 18):
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {record_id}",
                )
            raise not_found()
        return found[1]

    async def get_record(self, request: web.Request) -> web.Response:
        table = self._table(request)
        row = self._row(table, request.match_info["id"])
        names = [n for n in request.query.get("fields", "").split(",") if n.strip()]
        for name in names:
            if table.field(name.strip()) is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {table.name}"
                )
        chosen = [table.fields[n.strip().lower()].name for n in names] or None
        return json_response(self.org.render(table, row, chosen))

    async def update_record(self, request: web.Request) -> web.Response:
        table = self._table(request)
        row = self._row(table, request.match_info["id"])
        values = await read_object(request)
        self._check(table, values, await request.read())
        try:
            self.org.update(table, row["Id"], values, request[SF_USER])
        except RecordError as error:
            raise ApiError.of(error) from None
        return web.Response(status=204)

    async def delete_record(self, request: web.Request) -> web.Response:
        table = self._table(request)
        row = self._row(table, request.match_info["id"])
        try:
            self.org.delete(row["Id"], expect=table)
        except RecordError as error:
            raise ApiError.of(error) from None
        return web.Response(status=204)

    def _external_field(self, table: Table, name: str) -> FieldSpec:
        spec = table.field(name)
        if spec is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {name}",
            )
        if not (spec.external_id or spec.name == "Id"):
            raise ApiError(
                400, "INVALID_FIELD", f"Field {spec.name} is not an external id field", [spec.name]
            )
        return spec

    async def get_by_path(self, request: web.Request) -> web.StreamResponse:
        """``/sobjects/{Obj}/{id}/{BlobField}`` streams a blob; ``/{ExtField}/{value}`` reads."""
        table = self._table(request)
        first, second = request.match_info["first"], request.match_info["second"]
        blob_field = table.field(second)
        if blob_field is not None and blob_field.type == "base64":
            row = self._row(table, first)
            data = self.org.blobs.get(row["Id"])
            if data is None:
                raise not_found()
            return web.Response(body=data, content_type="application/octetstream")
        spec = self._external_field(table, first)
        if spec.name == "Id":
            matches = [normalize(second) or second]
        else:
            matches = table.lookup((spec.name,), (second,))
        rows = [table.rows[m] for m in matches if m in table.rows]
        if not rows:
            raise not_found()
        if len(rows) > 1:
            return json_response([self.org.url(table, r["Id"]) for r in rows], 300)
        return json_response(self.org.render(table, rows[0]))

    async def upsert(self, request: web.Request) -> web.Response:
        table = self._table(request)
        spec = self._external_field(table, request.match_info["first"])
        key = request.match_info["second"]
        values = await read_object(request)
        self._check(table, values, await request.read())
        update_only = request.query.get("updateOnly") == "true" and spec.name != "Id"
        if update_only and not table.lookup((spec.name,), (key,)):
            raise not_found()
        try:
            record_id, created = self.org.upsert(table, spec, key, values, request[SF_USER])
        except MultipleMatches as many:
            return json_response([self.org.url(table, i) for i in many.ids], 300)
        except RecordError as error:
            raise ApiError.of(error) from None
        body = {"id": record_id, "success": True, "errors": [], "created": created}
        return json_response(body, 201 if created else 200)

    # -- sObject Collections

    def _collection(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        records = body.get("records")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of sObjects")
        if len(records) > COLLECTION_LIMIT:
            raise _too_many()
        return records

    def _typed(self, record: dict[str, Any], raw: bytes) -> Table:
        attributes = record.get("attributes")
        named = attributes.get("type") if isinstance(attributes, dict) else None
        if not named:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        table = self.org.table(str(named))
        if table is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{named}' is not supported.")
        self._check(table, record, raw)
        return table

    def _run_all(
        self, items: Sequence[Any], all_or_none: bool, write: Callable[[Any], Result]
    ) -> list[Result]:
        """Write each item in order; with allOrNone one failure rolls every success back."""
        with self.org.savepoint() as point:
            results: list[Result] = []
            for item in items:
                try:
                    if self.row_locked():
                        raise row_lock_error()
                    results.append(write(item))
                except RecordError as error:
                    results.append(_failure(error))
            if all_or_none and not all(r["success"] for r in results):
                point.rollback()
                results = [
                    r if not r["success"] else {"success": False, "errors": [ROLLED_BACK]}
                    for r in results
                ]
        return results

    async def collection_create(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        raw = await request.read()
        typed = [(self._typed(record, raw), record) for record in self._collection(body)]
        user = request[SF_USER]

        def write(item: tuple[Table, dict[str, Any]]) -> Result:
            return {"id": self.org.create(item[0], item[1], user), "success": True, "errors": []}

        return json_response(self._run_all(typed, bool(body.get("allOrNone")), write))

    async def collection_update(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        raw = await request.read()
        typed = [(self._typed(record, raw), record) for record in self._collection(body)]
        user = request[SF_USER]

        def write(item: tuple[Table, dict[str, Any]]) -> Result:
            table, record = item
            record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
            if not record_id:
                raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call")
            updated = self.org.update(table, str(record_id), record, user)
            return {"id": updated, "success": True, "errors": []}

        return json_response(self._run_all(typed, bool(body.get("allOrNone")), write))

    async def collection_upsert(self, request: web.Request) -> web.Response:
        table = self._table(request)
        spec = self._external_field(table, request.match_info["field"])
        body = await read_object(request)
        records = self._collection(body)
        raw = await request.read()
        for record in records:
            self._check(table, record, raw)
        keys = [_key_of(record, spec.name) for record in records]
        repeated = Counter(str(k).casefold() for k in keys if k not in (None, ""))
        user = request[SF_USER]

        def write(item: tuple[Any, dict[str, Any]]) -> Result:
            key, record = item
            if key not in (None, "") and repeated[str(key).casefold()] > 1:
                raise duplicate_key(spec.name, key)
            record_id, created = self.org.upsert(table, spec, key, record, user)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        items = list(zip(keys, records, strict=True))
        return json_response(self._run_all(items, bool(body.get("allOrNone")), write))

    async def collection_delete(self, request: web.Request) -> web.Response:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if len(ids) > COLLECTION_LIMIT:
            raise _too_many()
        all_or_none = request.query.get("allOrNone", "false").lower() == "true"

        def write(record_id: str) -> Result:
            self.org.delete(record_id)
            return {"id": normalize(record_id), "success": True, "errors": []}

        return json_response(self._run_all(ids, all_or_none, write))

    # -- SOQL

    async def query(self, request: web.Request) -> web.Response:
        return self._run_query(request, include_deleted=False)

    async def query_all(self, request: web.Request) -> web.Response:
        return self._run_query(request, include_deleted=True)

    def _run_query(self, request: web.Request, include_deleted: bool) -> web.Response:
        text = request.query.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            page = self.org.query(text, include_deleted)
        except SoqlError as error:
            raise ApiError(400, "MALFORMED_QUERY", str(error)) from None
        except RecordError as error:
            raise ApiError(400, error.code, error.message) from None
        batch = _batch_size(request)
        if len(page.records) <= batch:
            return json_response({"totalSize": page.total, "done": True, "records": page.records})
        locator = self.org.mint.next(QUERY_LOCATOR_PREFIX)[:15]
        self.cursors[locator] = page.records
        while len(self.cursors) > MAX_OPEN_CURSORS:
            del self.cursors[next(iter(self.cursors))]
        return json_response(self._page(request, locator, 0, batch))

    def _page(self, request: web.Request, locator: str, offset: int, batch: int) -> dict[str, Any]:
        rows = self.cursors[locator]
        end = offset + batch
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if end < len(rows):
            version = request.match_info["version"]
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
        body["records"] = rows[offset:end]
        return body

    async def query_more(self, request: web.Request) -> web.Response:
        locator, _, offset = request.match_info["locator"].rpartition("-")
        if locator not in self.cursors or not offset.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return json_response(self._page(request, locator, int(offset), _batch_size(request)))


def _batch_size(request: web.Request) -> int:
    """``Sforce-Query-Options: batchSize=N`` (200-2,000), else 2,000."""
    options = request.headers.get("Sforce-Query-Options", "")
    for option in options.split(","):
        name, _, value = option.strip().partition("=")
        if name == "batchSize" and value.isdigit():
            return max(MIN_QUERY_BATCH, min(QUERY_BATCH, int(value)))
    return QUERY_BATCH


def _key_of(record: dict[str, Any], field_name: str) -> Any:
    lowered = field_name.lower()
    return next((v for k, v in record.items() if k.lower() == lowered), None)


def _too_many() -> ApiError:
    return ApiError(
        400,
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
    )


async def _read_part(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(1 << 20):
        data += chunk
        if len(data) > MAX_MULTIPART_BLOB:
            raise ApiError(400, "STORAGE_LIMIT_EXCEEDED", "Maximum blob size is 2 GB")
    return bytes(data)


_JSON_TOKENS: tuple[tuple[type, str], ...] = (
    (bool, "VALUE_TRUE"),
    (int, "VALUE_NUMBER_INT"),
    (float, "VALUE_NUMBER_FLOAT"),
    (str, "VALUE_STRING"),
    (dict, "START_OBJECT"),
    (list, "START_ARRAY"),
)
_JSON_BOOLEANS = frozenset({"true", "false"})


def _token(value: Any) -> str:
    if value is False:
        return "VALUE_FALSE"
    return next(token for kind, token in _JSON_TOKENS if isinstance(value, kind))


def _deserialises(spec: FieldSpec, value: Any) -> bool:
    """Whether Salesforce's JSON reader can turn ``value`` into the field's type: numbers
    from numbers or numeric strings, booleans from true/false, dates as YYYY-MM-DD,
    datetimes as ISO-8601, text from any scalar (strict where the guide is silent)."""
    if value is None:
        return True
    if isinstance(value, (dict, list)):
        return False
    if spec.type == "boolean":
        return isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in _JSON_BOOLEANS
        )
    if spec.type in {"double", "currency", "percent", "int"}:
        return _numeric(value)
    if spec.type in {"date", "datetime"}:
        return isinstance(value, str) and _parses_as(spec.type, value)
    return True


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _parses_as(kind: str, text: str) -> bool:
    try:
        if kind == "date":
            date.fromisoformat(text) if len(text) == 10 else None
            return len(text) == 10
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _position(raw: bytes, key: str) -> tuple[int, int]:
    """Line and column of ``key``'s value in the body, as the parser reports them."""
    at = raw.find(orjson.dumps(key))
    if at < 0:
        return 1, 1
    at = raw.find(b":", at) + 1
    while at < len(raw) and raw[at : at + 1].isspace():
        at += 1
    line = raw.count(b"\n", 0, at) + 1
    return line, at - (raw.rfind(b"\n", 0, at) + 1) + 1


def check_json_values(table: Table, record: dict[str, Any], raw: bytes) -> None:
    """400 JSON_PARSER_ERROR for the whole request when one value can't be deserialised
    (REST API "Status Codes and Error Responses",
    https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm)."""
    for key, value in record.items():
        spec = table.field(key) if key != "attributes" else None
        if spec is None or _deserialises(spec, value):
            continue
        line, column = _position(raw, key)
        shown = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {spec.type} from {_token(value)} value {shown} "
            f"or request may be missing a required field at [line:{line}, column:{column}]",
        )
