"""Wire helpers of the Dataverse simulator: results, OData query options, batch references
and the metadata endpoints (destinations.md §2.2, §2.3, §2.8).

Separate from the server so the request path and ``$batch`` parts share them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orjson
from aiohttp import web

from adapters.dynamics.sim_store import (
    ERR_BAD_PROPERTY,
    ERR_BAD_VALUE,
    ERR_DOES_NOT_EXIST,
    LOOKUP_TYPES,
    Attribute,
    DataverseError,
    Table,
    key_value,
    literal,
    metadata_id,
    parse_key,
    unknown_property,
)

API_ROOT = "/api/data/v9.2/"
"""Web API base path (destinations.md §2.2)."""
ENTITY_PATH = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>.*)\))?(?P<rest>/.*)?$")
FILTER_TERM = re.compile(
    r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+eq\s+(?P<value>'(?:[^']|'')*'|[^\s)]+)\s*(?:and\s+|$)",
    re.IGNORECASE,
)
_STRING = r"'(?:[^']|'')*'"
IN_TERM = re.compile(
    r"\s*Microsoft\.Dynamics\.CRM\.In\(\s*PropertyName\s*=\s*'(?P<name>[A-Za-z_][A-Za-z0-9_]*)'"
    rf"\s*,\s*PropertyValues\s*=\s*\[(?P<values>\s*{_STRING}(?:\s*,\s*{_STRING})*\s*)\]\s*\)"
    r"\s*(?:and\s+|$)",
    re.IGNORECASE,
)
"""The ``In`` query function with literal arguments
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/in):
PropertyName an Edm.String, PropertyValues a non-null Collection(Edm.String). An empty
list, unquoted values and ``@p`` parameter aliases are refused (docs silent: strictest)."""
CONTENT_ID_REF = re.compile(r"^\$([A-Za-z0-9_.-]+)(/.*)?$")


@dataclass(slots=True)
class Result:
    """One answer, before it becomes an aiohttp response or a ``$batch`` part."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    entity: str = ""
    """``entityset(id)`` of the row written, for ``$n`` references in a changeset."""


def json_result(payload: Any, status: int = 200) -> Result:
    headers = {"Content-Type": "application/json; odata.metadata=minimal", "OData-Version": "4.0"}
    return Result(status, headers, orjson.dumps(payload))


def error_result(error: DataverseError) -> Result:
    return json_result(error.body(), error.status)


def to_web(result: Result) -> web.Response:
    return web.Response(status=result.status, headers=result.headers, body=result.body)


def identity_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An error in the Microsoft identity platform's shape (destinations.md §2.1)."""
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
    }
    return web.json_response(payload, status=status, dumps=lambda v: orjson.dumps(v).decode())


def openid_configuration(origin: str, tenant: str) -> dict[str, Any]:
    """The tenant's OpenID configuration document, with the simulator as the authority.

    MSAL (under azure-identity) reads it before any token request ("tenant discovery"):
    https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri
    — the fields and endpoint shapes are those login.microsoftonline.com serves.
    """
    authority = f"{origin}/{tenant}"
    return {
        "token_endpoint": f"{authority}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{authority}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{authority}/oauth2/v2.0/logout",
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
    }


def prefers(headers: Mapping[str, str], preference: str) -> bool:
    """Whether a ``Prefer`` header asks for ``preference`` (``name`` or ``name=value``)."""
    tokens = {
        part.strip().replace('"', "").lower()
        for part in (header_value(headers, "Prefer") or "").split(",")
    }
    return preference in tokens or any(token.startswith(preference + "=") for token in tokens)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def lookup_name(name: str) -> str:
    return name.removeprefix("_").removesuffix("_value")


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A ``Microsoft.Dynamics.CRM.In`` term: the property equals one of ``values``."""

    values: frozenset[str]


def parse_filter(raw: str | None) -> dict[str, Any]:
    """The ``a eq 'x' and b eq 1`` subset of ``$filter`` a loader needs for read-back, plus
    ``Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['x',...])`` (an
    :class:`AnyOf`; reference/in). A property named twice is refused, not silently merged
    (docs silent: strictest)."""
    if raw is None:
        return {}
    terms: dict[str, Any] = {}
    position = 0
    while position < len(raw):
        name, value, position = _filter_term(raw, position)
        if name in terms:
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"The simulator supports each property once in $filter: {raw}",
            )
        terms[name] = value
    return terms


def _filter_term(raw: str, position: int) -> tuple[str, Any, int]:
    """One ``eq`` or ``In`` term at ``position``: its property, value and where the next starts."""
    match = FILTER_TERM.match(raw, position)
    if match is not None:
        return match.group("name"), literal(match.group("value")), match.end()
    found = IN_TERM.match(raw, position)
    if found is None:
        raise DataverseError(
            400,
            ERR_BAD_PROPERTY,
            "The simulator supports only 'eq', 'and' and Microsoft.Dynamics.CRM.In "
            f"in $filter: {raw}",
        )
    values = frozenset(str(literal(token)) for token in re.findall(_STRING, found.group("values")))
    return found.group("name"), AnyOf(values), found.end()


def term_matches(actual: Any, expected: Any) -> bool:
    """Whether a value satisfies an ``eq`` term's literal or an ``In`` term's list (whose
    values are strings, compared with the value's text)."""
    if isinstance(expected, AnyOf):
        text = str(actual).lower() if isinstance(actual, bool) else str(actual)
        return actual is not None and text in expected.values
    return bool(actual == expected)


def select_columns(table: Table, query: Mapping[str, str]) -> list[str] | None:
    raw = query.get("$select")
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in table.attributes and lookup_name(name) not in table.attributes:
            raise unknown_property(table, name)
    return names


def select_metadata(
    metadata: dict[str, Any], query: Mapping[str, str], expanded: Iterable[str] = ()
) -> dict[str, Any]:
    """``$select`` on metadata; ``$expand``-ed navigation properties stay regardless, and
    so does ``MetadataId``: "The MetadataId property value is always returned"
    (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api)."""
    raw = query.get("$select")
    if raw is None:
        return metadata
    names = {name.strip() for name in raw.split(",")} | set(expanded) | {"MetadataId"}
    return {k: v for k, v in metadata.items() if k in names}


# -- query options (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/overview)

COLLECTION_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken"})
"""What the simulator answers on an entity set; the rest is refused, never ignored."""
RECORD_OPTIONS = frozenset({"$select"})
"""On one row (read, or a write's ``return=representation``)."""
METADATA_OPTIONS = frozenset({"$select", "$filter", "$expand"})
"""On ``EntityDefinitions``: "There is no paging" (query-metadata-web-api), so no ``$top``."""
PLATFORM_UNSUPPORTED = frozenset({"$skip", "$search", "$format"})
""""The Dataverse Web API doesn't support the following OData query options: $skip,
$search, $format" (query/overview#unsupported-odata-query-options)."""
_QUERY_PARAMETERS = frozenset({"fetchXml", "savedQuery", "userQuery", "sql"})
"""Dataverse query parameters that replace the OData options; the simulator runs none."""
MAX_COUNT = 5000
"""``@odata.count`` counts matching rows "up to 5,000" (query/count-rows)."""


def check_query_options(query: Mapping[str, str], supported: frozenset[str]) -> None:
    """Refuse a query option the resource does not answer, rather than ignore it.

    Ignoring one returns the wrong rows (unfiltered, unsorted, uncounted) as if they
    were right. The platform refuses ``$skip``/``$search``/``$format``; for options the
    platform has but the simulator lacks (``$expand`` on rows, ``$apply``, parameter
    aliases, FetchXML), the docs are silent on what a mistake costs, so the simulator
    takes the strictest plausible answer: the same 400 0x80060888 refusal.
    """
    for name in query:
        if not (name.startswith(("$", "@")) or name in _QUERY_PARAMETERS) or name in supported:
            continue
        message = f"The query parameter {name} is not supported"
        if name not in PLATFORM_UNSUPPORTED:
            message += " by the simulator"
        raise DataverseError(400, ERR_BAD_PROPERTY, message + ".")


_ORDER_TERM = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\s+(?P<dir>asc|desc))?$")


def order_rows(
    table: Table, rows: Iterable[dict[str, Any]], raw: str | None
) -> Iterable[dict[str, Any]]:
    """``$orderby=a asc,b desc`` (query/order-rows): strings case-insensitively, choices by
    value, nulls lowest (SQL Server's order); ties keep insertion order.

    Lookups sort by the related row's primary name on the platform; the simulator does
    not join, so it refuses them rather than sort by GUID.
    """
    if raw is None:
        return rows
    terms: list[tuple[str, bool]] = []
    for part in raw.split(","):
        match = _ORDER_TERM.match(part.strip())
        if match is None:
            raise DataverseError(400, ERR_BAD_PROPERTY, f"Syntax error in $orderby: '{raw}'.")
        terms.append((_order_column(table, match.group("name")), match.group("dir") == "desc"))
    ordered = list(rows)
    for name, descending in reversed(terms):
        ordered.sort(key=lambda row: _sort_key(row.get(name)), reverse=descending)
    return ordered


def _order_column(table: Table, name: str) -> str:
    attr = table.attributes.get(name)
    if attr is None and lookup_name(name) in table.attributes:
        raise DataverseError(
            400,
            ERR_BAD_PROPERTY,
            f"The simulator does not order by the lookup '{name}' (Dataverse orders it by "
            "the related row's primary name).",
        )
    if attr is None or attr.kind in LOOKUP_TYPES or attr.kind == "MultiSelectPicklist":
        raise unknown_property(table, name)
    return attr.column


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, key_value(value) if value is not None else 0)


def count_wanted(query: Mapping[str, str]) -> bool:
    """``$count=true`` or ``false``; anything else is malformed."""
    raw = query.get("$count")
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise DataverseError(400, ERR_BAD_VALUE, f"Invalid value '{raw}' for $count.")


def parse_top(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise DataverseError(400, ERR_BAD_VALUE, f"Invalid value '{raw}' for $top.")
    return int(raw)


def batch_target(url: str, references: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Path under the service root and query of a batch part's URL, ``$n`` resolved."""
    reference = CONTENT_ID_REF.match(url)
    if reference is not None:
        url = resolve_reference(reference.group(1), references) + (reference.group(2) or "")
    parts = urlsplit(url)
    path = unquote(parts.path)
    if API_ROOT in path:
        path = path.split(API_ROOT, 1)[1]
    return path.lstrip("/"), dict(parse_qsl(parts.query, keep_blank_values=True))


def resolve_reference(content_id: str, references: Mapping[str, str]) -> str:
    if content_id not in references:
        raise DataverseError(
            400,
            ERR_BAD_VALUE,
            f"Content-ID Reference: '${content_id}' does not exist in the batch context.",
        )
    return references[content_id]


def substitute_references(body: bytes, references: Mapping[str, str]) -> bytes:
    """``"$n"`` string values of a JSON body (binds, chiefly) become the entity's path."""
    if b'"$' not in body:
        return body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(payload, dict):
        return body
    for name, value in payload.items():
        if isinstance(value, str) and (match := CONTENT_ID_REF.match(value)):
            payload[name] = (
                "/" + resolve_reference(match.group(1), references) + (match.group(2) or "")
            )
    return orjson.dumps(payload)


def entity_path(result: Result) -> str:
    """``entityset(id)`` of what a request wrote, for later ``$n`` references."""
    if not result.entity:
        raise DataverseError(400, ERR_BAD_VALUE, "Only writes can be referenced by Content-ID.")
    return result.entity


# -- paging (Prefer: odata.maxpagesize) ------------------------------------------------------

MAX_PAGE_SIZE = 5000
"""Rows per page when the client asks for none or more; the rest via ``@odata.nextLink``."""
_SKIP_COOKIE = re.compile(r'offset="(\d+)"')


def page_size(headers: Mapping[str, str]) -> int:
    """``Prefer: odata.maxpagesize=N``, capped at the platform's 5,000."""
    for part in (header_value(headers, "Prefer") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value.strip()), MAX_PAGE_SIZE))
    return MAX_PAGE_SIZE


def page_offset(query: Mapping[str, str]) -> int:
    """Where a ``$skiptoken`` (an opaque paging cookie to clients) resumes."""
    token = query.get("$skiptoken")
    if token is None:
        return 0
    match = _SKIP_COOKIE.search(token)
    if match is None:
        raise DataverseError(400, ERR_BAD_VALUE, f"Invalid $skiptoken '{token}'.")
    return int(match.group(1))


def next_link(
    origin: str, entity_set: str, query: Mapping[str, str], offset: int, size: int
) -> str:
    """``@odata.nextLink`` of the page ending before ``offset``: same query, a paging cookie."""
    cookie = f'<cookie pagenumber="{offset // size + 1}" offset="{offset}" istracking="False" />'
    params = {**{k: v for k, v in query.items() if k != "$skiptoken"}, "$skiptoken": cookie}
    return f"{origin}{API_ROOT}{entity_set}?{urlencode(params, quote_via=quote, safe='$,')}"


# -- metadata (destinations.md §2.8) ---------------------------------------------------------

METADATA_PATH = re.compile(
    r"^EntityDefinitions(?:\((?P<entity>[^()]*)\))?"
    r"(?:/(?P<part>Attributes|Keys|ManyToOneRelationships|OneToManyRelationships"
    r"|ManyToManyRelationships)"
    r"(?:\((?P<member>[^()]*)\))?"
    r"(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>[A-Za-z]+))?)?$"
)
_EXPAND_ITEM = re.compile(r"\s*([A-Za-z]+)\s*(?:\(([^()]*)\))?\s*(?:,|$)")


@dataclass(frozen=True, slots=True)
class MetadataTarget:
    """What a metadata URL addresses: ``EntityDefinitions(<entity>)/<part>(<member>)/<cast>``."""

    entity: str | None
    part: str | None
    member: str | None
    cast: str | None


def parse_metadata_path(path: str) -> MetadataTarget:
    match = METADATA_PATH.match(path)
    if match is None:
        raise DataverseError(404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{path}'.")
    target = MetadataTarget(*match.group("entity", "part", "member", "cast"))
    if target.entity is None and target.part is not None:
        raise DataverseError(400, ERR_BAD_PROPERTY, f"'{target.part}' needs an entity key.")
    if (target.member is not None or target.cast is not None) and target.part != "Attributes":
        raise DataverseError(404, ERR_BAD_PROPERTY, f"Resource not found for the segment '{path}'.")
    return target


def parse_expand(raw: str | None) -> dict[str, dict[str, str]]:
    """``OptionSet($select=Options),GlobalOptionSet`` → name → its nested query options."""
    if raw is None:
        return {}
    expanded: dict[str, dict[str, str]] = {}
    position = 0
    while position < len(raw):
        match = _EXPAND_ITEM.match(raw, position)
        if match is None or match.end() == position:
            raise DataverseError(400, ERR_BAD_PROPERTY, f"Invalid $expand '{raw}'.")
        nested = dict(parse_qsl((match.group(2) or "").replace(";", "&")))
        expanded[match.group(1)] = nested
        position = match.end()
    return expanded


def metadata_result(
    tables: Mapping[str, Table], path: str, query: Mapping[str, str], origin: str
) -> Result:
    """Answer a GET under ``EntityDefinitions``; ``tables`` are keyed by logical name."""
    check_query_options(query, METADATA_OPTIONS)
    target = parse_metadata_path(path)
    context = f"{origin}{API_ROOT}$metadata#EntityDefinitions"
    if target.entity is None:
        return _collection(context, [t.metadata() for t in tables.values()], query)
    table = _entity(tables, target.entity)
    scope = f"{context}({target.entity})"
    if target.part is None:
        return json_result(
            {"@odata.context": f"{context}/$entity", **_select(table.metadata(), query)}
        )
    if target.part == "Attributes":
        return _attributes(table, target, query, f"{scope}/Attributes")
    if target.part == "Keys":
        return _collection(f"{scope}/Keys", table.keys_metadata(), query)
    if target.part == "ManyToOneRelationships":
        return _collection(f"{scope}/ManyToOneRelationships", many_to_one(table, tables), query)
    if target.part == "ManyToManyRelationships":
        # The simulated org has no N:N relationships; the collection exists, empty.
        return _collection(f"{scope}/ManyToManyRelationships", [], query)
    found = [r for t in tables.values() for r in many_to_one(t, tables)]
    inverse = [r for r in found if r["ReferencedEntity"] == table.logical_name]
    return _collection(f"{scope}/OneToManyRelationships", inverse, query)


def _entity(tables: Mapping[str, Table], raw: str) -> Table:
    """``LogicalName='x'`` or a MetadataId; a table the org lacks is a 404."""
    key = parse_key(raw)
    if isinstance(key, str):
        found = next((t for t in tables.values() if t.metadata_id == key), None)
        name = key
    else:
        name = str(key.get("LogicalName"))
        found = tables.get(name)
    if found is None:
        raise DataverseError(404, ERR_DOES_NOT_EXIST, f"Could not find entity with name '{name}'.")
    return found


def _select(item: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    return select_metadata(item, query, parse_expand(query.get("$expand")))


def _collection(context: str, items: Sequence[dict[str, Any]], query: Mapping[str, str]) -> Result:
    wanted = parse_filter(query.get("$filter"))
    known = {name for item in items for name in item}
    for name in wanted:
        if items and name not in known:
            # $filter works "on any properties which use primitive or enumeration values"
            # (query-metadata-web-api); a name the type lacks is refused, not unmatched.
            raise DataverseError(
                400,
                ERR_BAD_PROPERTY,
                f"Could not find a property named '{name}' on type "
                "'Microsoft.Dynamics.CRM.MetadataBase'.",
            )
    chosen = [
        _select(item, query)
        for item in items
        if all(term_matches(item.get(name), value) for name, value in wanted.items())
    ]
    return json_result({"@odata.context": context, "value": chosen})


_METADATA_TYPES = frozenset(
    {
        "StringAttributeMetadata",
        "MemoAttributeMetadata",
        "IntegerAttributeMetadata",
        "BigIntAttributeMetadata",
        "DecimalAttributeMetadata",
        "MoneyAttributeMetadata",
        "BooleanAttributeMetadata",
        "DateTimeAttributeMetadata",
        "PicklistAttributeMetadata",
        "MultiSelectPicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "LookupAttributeMetadata",
        "UniqueIdentifierAttributeMetadata",
    }
)


def _attributes(
    table: Table, target: MetadataTarget, query: Mapping[str, str], context: str
) -> Result:
    """``/Attributes``, optionally one (``(LogicalName='x')``) and/or cast to a type."""
    if target.cast is not None and target.cast not in _METADATA_TYPES:
        raise DataverseError(
            404, ERR_BAD_PROPERTY, f"Unknown type 'Microsoft.Dynamics.CRM.{target.cast}'."
        )
    attrs = [
        a
        for a in table.attributes.values()
        if target.cast is None or a.metadata_type == target.cast
    ]
    expand = parse_expand(query.get("$expand"))
    cast = f"/Microsoft.Dynamics.CRM.{target.cast}" if target.cast else ""
    if target.member is None:
        items = [_attribute_json(table, a, expand) for a in attrs]
        return _collection(context + cast, items, query)
    key = parse_key(target.member)
    name = key.get("LogicalName") if isinstance(key, dict) else key
    found = next((a for a in attrs if name in (a.logical_name, _attribute_id(table, a))), None)
    if found is None:
        raise DataverseError(
            404, ERR_DOES_NOT_EXIST, f"Could not find attribute '{name}' on '{table.logical_name}'."
        )
    item = _select(_attribute_json(table, found, expand), query)
    return json_result({"@odata.context": f"{context}({target.member}){cast}/$entity", **item})


def _attribute_id(table: Table, attr: Attribute) -> str:
    return metadata_id(table.logical_name, attr.logical_name)


def _attribute_json(
    table: Table, attr: Attribute, expand: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """An attribute's metadata with ``OptionSet`` (and null ``GlobalOptionSet``) expanded."""
    item = attr.metadata(table.logical_name)
    option_set = attr.option_set_metadata(table.logical_name)
    if option_set is None:
        return item
    if "OptionSet" in expand:
        item["OptionSet"] = select_metadata(option_set, expand["OptionSet"])
    if "GlobalOptionSet" in expand:
        item["GlobalOptionSet"] = None
    return item


def many_to_one(table: Table, tables: Mapping[str, Table]) -> list[dict[str, Any]]:
    """One relationship per single-valued navigation property, named as ``@odata.bind`` wants.

    ``ownerid`` points at the ``owner`` entity (systemuser or team) as in Dataverse,
    though the simulated org binds it to ``/systemusers(<id>)`` only.
    """
    relationships: list[dict[str, Any]] = []
    for nav, (attr_name, target) in table.navigation.items():
        attr = table.attributes[attr_name]
        owner = attr.kind == "Owner"
        referenced = "owner" if owner else target
        schema = (
            f"owner_{table.entity_set}" if owner else f"{target}_{table.logical_name}_{attr_name}"
        )
        relationships.append(
            {
                "MetadataId": metadata_id("relationship", schema),
                "SchemaName": schema,
                "RelationshipType": "OneToManyRelationship",
                "IsCustomRelationship": attr.custom or (not owner and tables[target].custom),
                "ReferencedEntity": referenced,
                "ReferencedAttribute": "ownerid" if owner else tables[target].primary_id,
                "ReferencingEntity": table.logical_name,
                "ReferencingAttribute": attr_name,
                "ReferencingEntityNavigationPropertyName": nav,
                "ReferencedEntityNavigationPropertyName": schema,
            }
        )
    return relationships
