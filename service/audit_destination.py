"""The audit's gap analysis: what the destination will refuse or lack for this data, read
from its metadata before any write.

Staged records go through the pair's own transform (``service.expected.Rebuilder``, in
bounded batches), so what is checked is exactly what the load would send: each value
against its field's ``Column`` (picklist values, text length), each object's required
fields, the files the transform will not upload; then the schema plan against the
objects, and the staff against the destination's users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from adapters.base import Column, ObjectInfo
from service.audit_findings import Findings, RecordRef
from service.expected import Expected, Rebuilder, Rejected
from service.mapping import transforms as tx
from service.mapping.backdocket import OwnerResolution
from service.pairs import Pair

FILE_LIMIT_CODES = frozenset({"file_too_large", "deferred_to_sharepoint"})
"""The transforms' reasons for a file the destination will not take as the plan stands
(Salesforce ``max_file_bytes``; Dataverse ``max_attachment_bytes`` with no SharePoint site)."""

PICKLISTS = frozenset({"picklist", "multipicklist"})

DISTINCT_VALUES = 100
"""Missing picklist values tracked one by one per field; more are counted together."""


async def transformed_checks(
    findings: Findings,
    rebuilder: Rebuilder,
    pair: Pair,
    schema: Mapping[str, ObjectInfo | None],
) -> None:
    """Every staged record the pair loads, transformed, against the destination's metadata."""
    for collection in pair.load_order:
        async for batch in rebuilder.collection(collection):
            for item in batch:
                if isinstance(item, Rejected):
                    _rejected(findings, item)
                elif item.object in schema:
                    info = schema[item.object]
                    if info is None:
                        _waits(findings, item)
                    else:
                        _required(findings, item, info)
                        _values(findings, item, info)


def _rejected(findings: Findings, item: Rejected) -> None:
    ref = RecordRef(item.collection, item.source_id, item.message)
    if item.code in FILE_LIMIT_CODES:
        findings.add(
            "file_over_limit", "file_over_limit", "warning",
            "Files over the destination's limit",
            "Not uploaded as the plan stands (Salesforce: [mapping] max_file_bytes; "
            "Dataverse: the attachment limit, unless a SharePoint site takes them).", ref,
        )  # fmt: skip
    elif item.outcome == "failed":
        findings.add(
            f"rejected:{item.collection}.{item.code}", "rejected", "warning",
            f"{item.collection}: records the mapping refuses ({item.code})",
            "They will fail at load with this reason; fix the data at the source.", ref,
        )  # fmt: skip
    else:
        findings.add(
            f"skipped:{item.collection}.{item.code}", "skipped", "info",
            f"{item.collection}: records not migrated by design ({item.code})",
            "Journaled as skipped with this reason.", ref,
        )  # fmt: skip


def _waits(findings: Findings, item: Expected) -> None:
    findings.add(
        f"object_missing:{item.object}",
        "object_missing",
        "warning",
        f"{item.object} does not exist in the destination",
        "Its records wait (schema_missing) until the admin deploys the object from "
        "schema-plan.json; everything else loads.",
        RecordRef(item.collection, item.source_id),
    )


def _required(findings: Findings, item: Expected, info: ObjectInfo) -> None:
    """A required field (a Dataverse lookup is named ``attribute.target``) the payload
    neither sets nor links."""
    given = {name.split(".")[0] for name in item.links}
    given |= {name.split(".")[0] for name, v in item.fields.items() if _has(v)}
    for name in sorted(info.required):
        if name.split(".")[0] in given:
            continue
        findings.add(
            f"required_empty:{item.object}.{name}", "required_empty", "blocking",
            f"{item.object}.{name} is required and the mapping leaves it empty",
            "The destination refuses these records. Fill the source values, change the "
            "mapping, or acknowledge the finding to let them fail at load.",
            RecordRef(item.collection, item.source_id),
        )  # fmt: skip


def _has(value: Any) -> bool:
    return value is not None and value != "" and value != []


def _values(findings: Findings, item: Expected, info: ObjectInfo) -> None:
    for name, value in item.fields.items():
        column = info.columns.get(name)
        if column is None or value is None:
            continue
        if column.kind in PICKLISTS and column.choices:
            _picklist(findings, item, name, value, column)
        elif column.length is not None and isinstance(value, str):
            length = tx.utf16_length(value)
            if length > column.length:
                findings.add(
                    f"too_long:{item.object}.{name}", "too_long", "warning",
                    f"{item.object}.{name} holds at most {column.length} characters",
                    "Longer values are refused by the destination (the record fails): "
                    "widen the field or shorten the source value.",
                    RecordRef(item.collection, item.source_id, f"{length} characters"),
                )  # fmt: skip


def _picklist(findings: Findings, item: Expected, name: str, value: Any, column: Column) -> None:
    for chosen in picked(value, column):
        if chosen in column.choices:
            continue
        field_id = f"{item.object}.{name}"
        shown = chosen if _tracked(findings, field_id, chosen) else "(other values)"
        label = repr(chosen) if shown == chosen else "values beyond the first 100"
        restricted = column.restricted
        findings.add(
            f"picklist_value:{field_id}={shown}", "picklist_value",
            "blocking" if restricted else "warning",
            f"{field_id}: value {label} is not in the destination's "
            f"{'restricted ' if restricted else ''}picklist",
            "The destination refuses it (the record fails): add the value to the picklist, "
            "map it to one it has, or acknowledge the finding." if restricted else
            "The picklist is not restricted, so it loads, but reports and filters will "
            "not know it: add it to the picklist or map it.",
            RecordRef(item.collection, item.source_id, chosen),
        )  # fmt: skip


def picked(value: Any, column: Column) -> list[str]:
    """The values of a picklist field as the choices spell them: a list, a Salesforce
    multi-select ``a;b`` or a Dataverse one ``1,2``."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if column.kind != "multipicklist" or text in column.choices:
        return [text]
    separator = ";" if ";" in text else ","
    return [v for v in text.split(separator) if v]


def _tracked(findings: Findings, field_id: str, value: str) -> bool:
    """Whether ``value`` gets a finding of its own: the first ``DISTINCT_VALUES`` missing
    values of a field do, later ones share ``(other values)``."""
    prefix = f"picklist_value:{field_id}="
    if prefix + value in findings.by_id:
        return True
    if prefix + "(other values)" in findings.by_id:
        return False
    return sum(1 for i in findings.by_id if i.startswith(prefix)) < DISTINCT_VALUES


def owner_findings(findings: Findings, owners: OwnerResolution, strict: bool) -> None:
    """Staff with no destination user (the owner report, before the run)."""
    for user_id, name, email, reason in owners.fell_back:
        findings.add(
            "owner_unresolved", "owner_unresolved", "blocking" if strict else "warning",
            "Staff with no matching destination user",
            "Their records go to the fallback owner. Create or license the users, or (with "
            '[destination] owners = "strict") acknowledge the finding to accept the fallback.',
            RecordRef("users", user_id, f"{name} <{email or 'no email'}>: {reason}"),
        )  # fmt: skip


def schema_findings(findings: Findings, gaps: Iterable[str]) -> None:
    """What the schema plan needs of an object the destination has but lacks."""
    for gap in gaps:
        part = gap.split(" — ")[0]
        findings.add(
            f"schema_gap:{part}", "schema_gap", "blocking",
            f"The destination lacks {part}",
            f"{gap}. Deploy schema-plan.json (crmlift schema): migrate stops (exit 7) until "
            "it is there.",
        )  # fmt: skip
