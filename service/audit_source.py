"""The audit's look at the source alone: how full each collection is, and the records
whose own values are dirty (no email, an email or date that does not parse, a custom
value that is not of its declared type, keys the contract does not list).

One streamed pass per staged collection, record by record: nothing here holds more
than one record and the counters. What needs several records at once (duplicates,
orphans, hierarchy cycles) is ``service.audit_queries``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from journal import Journal
from journal.runs import Run
from service.audit_findings import CollectionProfile, Findings, RecordRef
from service.mapping import transforms as tx
from service.mapping.backdocket_salesforce import COMPUTED_ERROR

COMMON_FIELDS = frozenset({"id", "created_at", "updated_at", "custom_fields"})
CONTRACT_FIELDS: Mapping[str, frozenset[str]] = {
    "users": frozenset({"name", "email", "role", "active"}),
    "companies": frozenset({"name", "domain", "industry", "employee_count", "annual_revenue",
                            "parent_company_id", "billing_address", "kind"}),
    "contacts": frozenset({"first_name", "last_name", "email", "phone", "mobile", "address",
                           "company_links", "intake_status", "bar_number", "owner_id"}),
    "matters": frozenset({"number", "name", "case_type", "claim_type", "status", "filed_date",
                          "opened_date", "closed_date", "claim_amount", "estimated_fees",
                          "billing_type", "description", "court_jurisdiction", "practice_area",
                          "statute_of_limitations", "assigned_attorney_id", "client_company_id",
                          "primary_contact_id"}),
    "matter_parties": frozenset({"matter_id", "contact_id", "role", "is_primary"}),
    "claims": frozenset({"matter_id", "name", "claim_kind", "amount", "revenue_generating",
                         "status", "close_date"}),
    "tasks": frozenset({"subject", "description", "status", "priority", "due_date",
                        "assignee_id", "contact_id", "matter_id", "recurrence",
                        "approval_request"}),
    "events": frozenset({"subject", "description", "location", "start_at", "end_at", "all_day",
                         "owner_id", "attendees", "contact_id", "matter_id", "recurrence"}),
    "documents": frozenset({"filename", "mime_type", "size_bytes", "sha256", "uploaded_at",
                            "uploaded_by_id", "contact_id", "matter_id", "version"}),
    "notes": frozenset({"body", "author_id", "contact_id", "matter_id"}),
    "esignature_requests": frozenset({"document_id", "document_name", "signers", "status",
                                      "sent_at", "completed_at", "envelope_id", "matter_id"}),
    "intake_submissions": frozenset({"form_type", "prospect_name", "prospect_email",
                                     "prospect_phone", "referral_source", "case_type_interest",
                                     "submitted_at", "status", "converted_matter_id",
                                     "assigned_to_id"}),
    "custom_field_definitions": frozenset({"entity", "key", "label", "type", "options",
                                           "required"}),
    "workflows": frozenset({"name", "trigger", "conditions", "steps", "active"}),
    "merge_templates": frozenset({"name", "entity", "body_format", "merge_fields"}),
}  # fmt: skip
"""Each collection's fields besides ``COMMON_FIELDS``, as the BackDocket contract lists
them (shared/sources/backdocket-api.md, "Collections and fields"); any other key is one
a legacy import left behind: kept in staging, migrated nowhere."""

DATE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "matters": ("filed_date", "opened_date", "closed_date", "statute_of_limitations"),
    "claims": ("close_date",),
    "tasks": ("due_date",),
}
"""``YYYY-MM-DD`` fields (the contract: "Dates are YYYY-MM-DD")."""

TIMESTAMP_FIELDS: Mapping[str, tuple[str, ...]] = {
    "contacts": ("company_links[].linked_at",),
    "events": ("start_at", "end_at"),
    "documents": ("uploaded_at",),
    "esignature_requests": ("sent_at", "completed_at"),
    "intake_submissions": ("submitted_at",),
}
"""ISO-8601 timestamps besides ``created_at``/``updated_at`` (which every record has)."""

EMAIL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "users": ("email",),
    "contacts": ("email",),
    "intake_submissions": ("prospect_email",),
    "events": ("attendees[].email",),
    "esignature_requests": ("signers[].email",),
}
"""Fields holding an email address: a destination's email field refuses a malformed one."""

MANY_COMPANIES = 4
"""A contact linked to this many companies or more: BackDocket's own records link one
to three; the destination makes one of them the contact's account and relates the rest."""


def values_at(record: Mapping[str, Any], path: str) -> Iterator[Any]:
    """The values at ``field`` or ``list_field[].key`` of a record (None when absent)."""
    head, _, tail = path.partition("[].")
    if not tail:
        yield record.get(head)
        return
    items = record.get(head)
    for item in items if isinstance(items, list) else ():
        yield item.get(tail) if isinstance(item, dict) else None


def _filled(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


class SourceChecks:
    """The per-record checks of every staged collection, and the source profile."""

    def __init__(self, findings: Findings, definitions: Sequence[Mapping[str, Any]]) -> None:
        self.findings = findings
        self.profile: dict[str, CollectionProfile] = {}
        self.definitions: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
        for d in definitions:
            options = tuple(str(o) for o in d.get("options") or ())
            entity = self.definitions.setdefault(str(d.get("entity")), {})
            entity[str(d.get("key"))] = (str(d.get("type")), options)

    async def run(self, journal: Journal, run: Run, collections: Sequence[str]) -> None:
        """Stream every live staged record of ``collections`` through the checks."""
        for collection in collections:
            profile = self.profile.setdefault(collection, CollectionProfile())
            rows = journal.staging.for_load(run.run_id, collection)
            async with contextlib.aclosing(rows):
                async for row in rows:
                    if row.payload is None:
                        continue  # deleted at the source since it was staged: not loaded
                    record = orjson.loads(row.payload)
                    self.check(collection, row.source_id, record, profile)

    def check(
        self, collection: str, source_id: str, record: dict[str, Any], profile: CollectionProfile
    ) -> None:
        profile.records += 1
        for name, value in record.items():
            if name != "custom_fields" and _filled(value):
                profile.filled[name] = profile.filled.get(name, 0) + 1
        custom = record.get("custom_fields")
        if isinstance(custom, dict):
            for key, value in custom.items():
                if _filled(value):
                    name = f"custom_fields.{key}"
                    profile.filled[name] = profile.filled.get(name, 0) + 1
            self._custom_values(collection, source_id, custom)
        ref = RecordRef(collection, source_id)
        self._unknown_keys(collection, record, ref)
        self._emails(collection, source_id, record)
        self._dates(collection, source_id, record)
        if collection == "users" and tx.email_key(record.get("email")) is None:
            self.findings.add(
                "user_no_email", "user_no_email", "warning", "Users without an email",
                "Owners are matched to destination users by email: the records these users "
                "own go to the fallback owner.", ref,
            )  # fmt: skip
        if collection == "contacts":
            self._contact(record, ref)

    def _contact(self, record: Mapping[str, Any], ref: RecordRef) -> None:
        if tx.email_key(record.get("email")) is None:
            self.findings.add(
                "contact_no_email", "contact_no_email", "warning", "Contacts without an email",
                "They load, but nothing can de-duplicate them, and no mail reaches them from "
                "the CRM.", ref,
            )  # fmt: skip
        links = record.get("company_links")
        count = len(links) if isinstance(links, list) else 0
        if count == 0:
            self.findings.add(
                "contact_no_company", "contact_no_company", "warning",
                "Contacts without a company",
                "They load without a company (on Salesforce, under the Unassigned Account): "
                "review who they work for.", ref,
            )  # fmt: skip
        elif count >= MANY_COMPANIES:
            self.findings.add(
                "contact_many_companies", "contact_many_companies", "info",
                f"Contacts linked to {MANY_COMPANIES} companies or more",
                "Only the most recently linked company becomes the contact's account; the "
                "others are related to it (Salesforce: AccountContactRelation; Dataverse: "
                "connection notes).",
                RecordRef(ref.collection, ref.source_id, f"{count} companies"),
            )  # fmt: skip

    def _unknown_keys(self, collection: str, record: Mapping[str, Any], ref: RecordRef) -> None:
        known = CONTRACT_FIELDS.get(collection)
        if known is None:
            return
        extra = sorted(set(record) - COMMON_FIELDS - known)
        if extra:
            self.findings.add(
                f"unknown_keys:{collection}", "unknown_keys", "info",
                f"{collection}: keys the BackDocket contract does not list",
                "Kept in staging, migrated nowhere: map them if they matter.",
                RecordRef(ref.collection, ref.source_id, ", ".join(extra)),
            )  # fmt: skip

    def _emails(self, collection: str, source_id: str, record: Mapping[str, Any]) -> None:
        for path in EMAIL_FIELDS.get(collection, ()):
            for value in values_at(record, path):
                key = tx.email_key(value)
                if key is None and not (value is None or isinstance(value, str)):
                    key = str(value)
                if key is None or tx.is_email(key):
                    continue
                self.findings.add(
                    f"invalid_email:{collection}.{path}", "invalid_email", "warning",
                    f"{collection}.{path}: not an email address",
                    "A destination email field refuses the value; the transform leaves it "
                    "out (or the record fails) — correct it at the source.",
                    RecordRef(collection, source_id, repr(value)),
                )  # fmt: skip

    def _dates(self, collection: str, source_id: str, record: Mapping[str, Any]) -> None:
        for path, parse in (
            *((p, tx.parse_date) for p in DATE_FIELDS.get(collection, ())),
            *((p, tx.parse_datetime) for p in TIMESTAMP_FIELDS.get(collection, ())),
        ):
            for value in values_at(record, path):
                if value is None or value == "":
                    continue
                try:
                    parse(value)
                except ValueError:
                    self.findings.add(
                        f"invalid_date:{collection}.{path}", "invalid_date", "warning",
                        f"{collection}.{path}: not a date", "The value is left empty in the "
                        "destination; correct it at the source.",
                        RecordRef(collection, source_id, repr(value)),
                    )  # fmt: skip

    def _custom_values(self, collection: str, source_id: str, custom: Mapping[str, Any]) -> None:
        definitions = self.definitions.get(collection, {})
        for key, value in custom.items():
            if not _filled(value):
                continue
            defined = definitions.get(key)
            if defined is None:
                self.findings.add(
                    f"custom_field_undefined:{collection}.{key}", "custom_field_undefined",
                    "info", f"{collection}: custom field {key} has no definition",
                    "Without a definition there is no destination field for it: not migrated.",
                    RecordRef(collection, source_id, repr(value)),
                )  # fmt: skip
                continue
            kind, options = defined
            if not parses(kind, value, options):
                self.findings.add(
                    f"custom_field_unparseable:{collection}.{key}", "custom_field_unparseable",
                    "warning", f"{collection}: custom field {key} ({kind}) holds values "
                    "that do not parse", "The destination field is left empty for these "
                    "records, with a transform note.",
                    RecordRef(collection, source_id, repr(value)),
                )  # fmt: skip


def parses(kind: str, value: Any, options: Sequence[str]) -> bool:
    """Whether a (non-empty) custom field value is of its definition's type."""
    try:
        if kind == "number":
            tx.parse_number(value)
        elif kind == "currency":
            tx.parse_decimal(value)
        elif kind == "date":
            tx.parse_date(value)
        elif kind == "datetime":
            tx.parse_datetime(value)
        elif kind == "boolean":
            tx.parse_bool(value)
        elif kind == "picklist":
            return not isinstance(value, bool | list | dict) and str(value) in options
        elif kind == "multi_picklist":
            chosen = value.split(";") if isinstance(value, str) else value
            return isinstance(chosen, list) and all(str(v) in options for v in chosen)
        elif kind == "computed":
            text = value.strip() if isinstance(value, str) else ""
            return not isinstance(value, list | dict) and not COMPUTED_ERROR.fullmatch(text)
        else:
            return not isinstance(value, bool | list | dict)
    except ValueError:
        return False
    return True
