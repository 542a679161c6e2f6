"""The generated BackDocket tenant: deterministic, true to the contract, dirty only on request."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from adapters.backdocket.tenant import (
    CLAIM_TEMPLATES,
    COLLECTIONS,
    CONTENT_CHUNK,
    CUSTOM_FIELD_TYPES,
    DIRTY_CASES,
    LARGE_DOCUMENT_BYTES,
    TENANT_EPOCH,
    Tenant,
    generate_tenant,
)
from adapters.base import Record, content_hash

COMMON_FIELDS = {"id", "created_at", "updated_at", "custom_fields"}
CONTRACT_FIELDS: dict[str, set[str]] = {
    "users": {"name", "email", "role", "active"},
    "companies": {
        "name",
        "domain",
        "industry",
        "employee_count",
        "annual_revenue",
        "parent_company_id",
        "billing_address",
        "kind",
    },
    "contacts": {
        "first_name",
        "last_name",
        "email",
        "phone",
        "mobile",
        "address",
        "company_links",
        "intake_status",
        "bar_number",
        "owner_id",
    },
    "matters": {
        "number",
        "name",
        "case_type",
        "claim_type",
        "status",
        "filed_date",
        "opened_date",
        "closed_date",
        "claim_amount",
        "estimated_fees",
        "billing_type",
        "description",
        "court_jurisdiction",
        "practice_area",
        "statute_of_limitations",
        "assigned_attorney_id",
        "client_company_id",
        "primary_contact_id",
    },
    "matter_parties": {"matter_id", "contact_id", "role", "is_primary"},
    "claims": {
        "matter_id",
        "name",
        "claim_kind",
        "amount",
        "revenue_generating",
        "status",
        "close_date",
    },
    "tasks": {
        "subject",
        "description",
        "status",
        "priority",
        "due_date",
        "assignee_id",
        "contact_id",
        "matter_id",
        "recurrence",
        "approval_request",
    },
    "events": {
        "subject",
        "description",
        "location",
        "start_at",
        "end_at",
        "all_day",
        "owner_id",
        "attendees",
        "contact_id",
        "matter_id",
        "recurrence",
    },
    "documents": {
        "filename",
        "mime_type",
        "size_bytes",
        "sha256",
        "uploaded_at",
        "uploaded_by_id",
        "contact_id",
        "matter_id",
        "version",
    },
    "notes": {"body", "author_id", "contact_id", "matter_id"},
    "esignature_requests": {
        "document_id",
        "document_name",
        "signers",
        "status",
        "sent_at",
        "completed_at",
        "envelope_id",
        "matter_id",
    },
    "intake_submissions": {
        "form_type",
        "prospect_name",
        "prospect_email",
        "prospect_phone",
        "referral_source",
        "case_type_interest",
        "submitted_at",
        "status",
        "converted_matter_id",
        "assigned_to_id",
    },
    "custom_field_definitions": {"entity", "key", "label", "type", "options", "required"},
    "workflows": {"name", "trigger", "conditions", "steps", "active"},
    "merge_templates": {"name", "entity", "body_format", "merge_fields"},
}
ENUMS: dict[tuple[str, str], set[Any]] = {
    ("users", "role"): {"attorney", "paralegal", "admin", "staff"},
    ("companies", "kind"): {"client", "opposing_party", "insurer", "law_firm"},
    ("contacts", "intake_status"): {"prospective", "active", "closed", None},
    ("matters", "status"): {
        "intake",
        "open",
        "pending",
        "litigation",
        "settled",
        "closed_won",
        "closed_lost",
    },
    ("matters", "billing_type"): {"flat", "contingency", "milestone", "hourly"},
    ("matter_parties", "role"): {
        "plaintiff",
        "defendant",
        "witness",
        "co_counsel",
        "expert_witness",
        "client",
    },
    ("tasks", "status"): {"open", "in_progress", "completed"},
    ("tasks", "priority"): {"low", "normal", "high", "urgent"},
    ("intake_submissions", "referral_source"): {
        "court_referral",
        "online_form",
        "attorney_referral",
        "walk_in",
        "other",
    },
    ("intake_submissions", "status"): {"prospective", "converted", "rejected"},
}
MONEY_FIELDS = {
    "companies": ("annual_revenue",),
    "matters": ("claim_amount", "estimated_fees"),
    "claims": ("amount",),
}
MONEY = re.compile(r"\d+\.\d{2}")
MIME_BY_EXTENSION = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "png": "image/png",
    "jpg": "image/jpeg",
    "mp4": "video/mp4",
    "eml": "message/rfc822",
    "txt": "text/plain",
    "csv": "text/csv",
}
IMAGE_SRC = re.compile(r'<img src="/api/v1/documents/([^/"]+)/content">')
BIG_COLLECTIONS = ("companies", "contacts", "matters", "matter_parties", "tasks", "events")


@pytest.fixture(scope="module")
def clean() -> Tenant:
    return generate_tenant(3000, 41)


@pytest.fixture(scope="module")
def dirty() -> Tenant:
    return generate_tenant(300, 41, dirty=True)


def fingerprint(tenant: Tenant) -> bytes:
    return orjson.dumps(
        [tenant.records, tenant.deletions, tenant.document_sizes, tenant.dirty_cases],
        option=orjson.OPT_SORT_KEYS,
    )


def ids(tenant: Tenant, collection: str) -> set[str]:
    return {row["id"] for row in tenant.records[collection]}


def parses_as(kind: str, value: Any, options: list[str]) -> bool:
    """Whether a custom field value is a valid value of its declared type."""
    if kind in ("text", "textarea", "formatted_text"):
        return isinstance(value, str)
    if kind in ("number", "computed"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "currency":
        return isinstance(value, str) and MONEY.fullmatch(value) is not None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "picklist":
        return value in options
    if kind == "multi_picklist":
        return isinstance(value, list) and all(option in options for option in value)
    try:
        if kind == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(
                date.fromisoformat(value)
            )
        return datetime.fromisoformat(value).tzinfo is not None
    except (TypeError, ValueError):
        return False


def unparseable_ids(tenant: Tenant) -> set[str]:
    definitions = {(d["entity"], d["key"]): d for d in tenant.records["custom_field_definitions"]}
    found = set()
    for entity in ("contacts", "companies", "matters", "tasks"):
        for row in tenant.records[entity]:
            for key, value in row["custom_fields"].items():
                definition = definitions[(entity, key)]
                if not parses_as(definition["type"], value, definition["options"]):
                    found.add(row["id"])
    return found


def parent_cycles(tenant: Tenant) -> set[str]:
    """Companies whose parent chain comes back to themselves."""
    parent = {row["id"]: row["parent_company_id"] for row in tenant.records["companies"]}
    looping = set()
    for start in parent:
        seen = {start}
        current = parent[start]
        while current is not None and current not in seen:
            seen.add(current)
            current = parent.get(current)
        if current == start:
            looping.add(start)
    return looping


def duplicated(values: Iterator[Any]) -> set[Any]:
    counts = Counter(value for value in values if value is not None)
    return {value for value, count in counts.items() if count > 1}


def all_records(tenant: Tenant) -> Iterator[tuple[str, Record]]:
    for collection, rows in tenant.records.items():
        for row in rows:
            yield collection, row


def test_same_arguments_give_byte_identical_tenants() -> None:
    first, again = generate_tenant(500, 7, dirty=True), generate_tenant(500, 7, dirty=True)
    assert fingerprint(first) == fingerprint(again)
    doc_id = first.records["documents"][0]["id"]
    assert first.document_content(doc_id) == again.document_content(doc_id)


def test_another_seed_gives_different_content() -> None:
    hashes = {content_hash(row) for _, row in all_records(generate_tenant(500, 7))}
    other = {content_hash(row) for _, row in all_records(generate_tenant(500, 8))}
    assert len(hashes & other) < len(hashes) // 10


@pytest.mark.parametrize("requested", [0, 200, 10_000])
def test_every_collection_is_present_and_sized_to_the_request(requested: int) -> None:
    tenant = generate_tenant(requested, 3)
    assert tuple(tenant.records) == COLLECTIONS
    assert all(tenant.records[name] for name in COLLECTIONS)
    assert tenant.total() == sum(len(rows) for rows in tenant.records.values())
    if requested >= 10_000:
        assert abs(tenant.total() - requested) < requested * 0.05
        assert len(tenant.records["contacts"]) == pytest.approx(requested * 0.25, rel=0.05)
    for collection, rows in tenant.records.items():
        assert len({row["id"] for row in rows}) == len(rows), collection


def test_clean_records_carry_exactly_the_contract_fields(clean: Tenant) -> None:
    for collection, row in all_records(clean):
        assert set(row) == COMMON_FIELDS | CONTRACT_FIELDS[collection], (collection, row["id"])
        assert isinstance(row["id"], str)
        assert isinstance(row["custom_fields"], dict)


def test_enums_and_claim_templates_follow_the_contract(clean: Tenant) -> None:
    for (collection, name), allowed in ENUMS.items():
        assert {row[name] for row in clean.records[collection]} <= allowed, (collection, name)
    assert len(CLAIM_TEMPLATES) == 22
    assert {row["claim_type"] for row in clean.records["matters"]} <= {
        claim_type for claim_type, _, _ in CLAIM_TEMPLATES
    }


def test_timestamps_are_utc_iso_within_three_years_and_ordered(clean: Tenant) -> None:
    floor = TENANT_EPOCH.replace(year=TENANT_EPOCH.year - 3)
    for collection, row in all_records(clean):
        assert row["created_at"].endswith("+00:00")
        created = datetime.fromisoformat(row["created_at"])
        updated = datetime.fromisoformat(row["updated_at"])
        assert floor <= created <= updated <= TENANT_EPOCH, (collection, row["id"])
    for collection in BIG_COLLECTIONS:
        stamps = Counter(row["updated_at"] for row in clean.records[collection])
        assert max(stamps.values()) >= 3, f"{collection} has no bulk-updated records"


def test_clean_references_all_resolve(clean: Tenant) -> None:
    users, companies, contacts = (
        ids(clean, "users"),
        ids(clean, "companies"),
        ids(clean, "contacts"),
    )
    matters, documents = ids(clean, "matters"), ids(clean, "documents")
    attorneys = {row["id"] for row in clean.records["users"] if row["role"] == "attorney"}
    references: dict[str, dict[str, set[str]]] = {
        "companies": {"parent_company_id": companies},
        "contacts": {"owner_id": users},
        "matters": {
            "assigned_attorney_id": attorneys,
            "client_company_id": companies,
            "primary_contact_id": contacts,
        },
        "matter_parties": {"matter_id": matters, "contact_id": contacts},
        "claims": {"matter_id": matters},
        "tasks": {"assignee_id": users, "contact_id": contacts, "matter_id": matters},
        "events": {"owner_id": users, "contact_id": contacts, "matter_id": matters},
        "documents": {"uploaded_by_id": users, "contact_id": contacts, "matter_id": matters},
        "notes": {"author_id": users, "contact_id": contacts, "matter_id": matters},
        "esignature_requests": {"document_id": documents, "matter_id": matters},
        "intake_submissions": {"converted_matter_id": matters, "assigned_to_id": users},
    }
    for collection, fields in references.items():
        for row in clean.records[collection]:
            for name, targets in fields.items():
                assert row[name] is None or row[name] in targets, (collection, row["id"], name)
    for row in clean.records["contacts"]:
        assert 1 <= len(row["company_links"]) <= 3
        for link in row["company_links"]:
            assert link["company_id"] in companies
            assert row["created_at"] <= link["linked_at"] <= row["updated_at"]
    for row in clean.records["intake_submissions"]:
        assert (row["converted_matter_id"] is not None) == (row["status"] == "converted")
    images = [src for row in clean.records["notes"] for src in IMAGE_SRC.findall(row["body"])]
    assert images
    assert set(images) <= documents
    templates = ids(clean, "merge_templates")
    steps = [step for row in clean.records["workflows"] for step in row["steps"]]
    assert {step["template_id"] for step in steps} <= templates
    assert not parent_cycles(clean)


def test_clean_tenant_deletes_only_records_nothing_references(clean: Tenant) -> None:
    assert clean.deletions
    for deletion in clean.deletions:
        assert set(deletion) == {"collection", "id", "deleted_at"}
        assert deletion["id"] not in ids(clean, deletion["collection"])
        assert deletion["collection"] in ("tasks", "events", "notes", "intake_submissions")
    order = [(d["deleted_at"], d["collection"], d["id"]) for d in clean.deletions]
    assert order == sorted(order)


def test_money_is_always_a_decimal_string(clean: Tenant) -> None:
    for collection, names in MONEY_FIELDS.items():
        for row in clean.records[collection]:
            for name in names:
                assert isinstance(row[name], str)
                assert MONEY.fullmatch(row[name]), (collection, row["id"], row[name])
                assert Decimal(row[name]) >= 0


def test_custom_fields_cover_every_type_and_parse_when_clean(clean: Tenant) -> None:
    definitions = clean.records["custom_field_definitions"]
    assert {d["type"] for d in definitions} == set(CUSTOM_FIELD_TYPES)
    assert {"contacts", "companies", "matters", "tasks"} <= {d["entity"] for d in definitions}
    assert all(d["options"] for d in definitions if "picklist" in d["type"])
    assert not unparseable_ids(clean)
    keys_used = {
        key
        for entity in ("contacts", "companies", "matters", "tasks")
        for row in clean.records[entity]
        for key in row["custom_fields"]
    }
    assert keys_used == {d["key"] for d in definitions}


def test_document_bytes_match_their_metadata(clean: Tenant) -> None:
    for row in clean.records["documents"]:
        content = clean.document_content(row["id"])
        assert len(content) == row["size_bytes"] == clean.document_sizes[row["id"]]
        assert hashlib.sha256(content).hexdigest() == row["sha256"]
        assert row["mime_type"] == MIME_BY_EXTENSION[row["filename"].rsplit(".", 1)[1]]
        assert 1024 <= row["size_bytes"] < LARGE_DOCUMENT_BYTES
        assert row["uploaded_by_id"] in ids(clean, "users")
        assert isinstance(row["version"], int)
        chunks = list(clean.iter_document_content(row["id"]))
        assert all(len(chunk) <= CONTENT_CHUNK for chunk in chunks)
        assert b"".join(chunks) == content
    pdfs = [row["id"] for row in clean.records["documents"] if row["filename"].endswith(".pdf")]
    assert clean.document_content(pdfs[0]).startswith(b"%PDF-")


def test_text_is_unicode_with_control_characters_but_never_nul(clean: Tenant) -> None:
    text = orjson.dumps(clean.records).decode()
    assert "\\u0000" not in text
    assert re.search("[\u0590-\u05ff]", text), "no Hebrew"
    assert re.search("[\u0600-\u06ff]", text), "no Arabic"
    assert re.search("[\U0001f300-\U0001faff]", text), "no emoji"
    assert re.search("[éüñøł]", text), "no accented letters"
    assert re.search(r"\\u000b|\\u001f|\\u000c|\\u001e", text), "no control characters"
    assert "\\t" in text


def test_clean_tenant_has_none_of_the_dirty_cases(clean: Tenant) -> None:
    assert set(clean.dirty_cases) == set(DIRTY_CASES)
    assert not any(clean.dirty_cases.values())
    for collection in ("users", "contacts"):
        emails = [row["email"] for row in clean.records[collection]]
        assert None not in emails
        assert not duplicated(iter(emails))
    assert max(row["size_bytes"] for row in clean.records["documents"]) < LARGE_DOCUMENT_BYTES


def test_dirty_tenant_has_every_dirty_case(dirty: Tenant) -> None:
    cases = dirty.dirty_cases
    assert all(cases[case] for case in DIRTY_CASES), cases
    contacts = {row["id"]: row for row in dirty.records["contacts"]}
    users = {row["id"]: row for row in dirty.records["users"]}
    assert all(contacts[i]["email"] is None for i in cases["contact_no_email"])
    assert duplicated(c["email"] for c in contacts.values()) == {
        contacts[i]["email"] for i in cases["contact_duplicate_email"]
    }
    assert all(contacts[i]["company_links"] == [] for i in cases["contact_no_company"])
    for ident in cases["contact_five_companies"]:
        links = {link["company_id"] for link in contacts[ident]["company_links"]}
        assert len(links) == 5
        assert links <= ids(dirty, "companies")
    assert parent_cycles(dirty) == set(cases["company_parent_cycle"])
    assert {i for i, user in users.items() if user["email"] is None} == set(cases["user_no_email"])
    assert duplicated(u["email"] for u in users.values()) == {
        users[i]["email"] for i in cases["user_duplicate_email"]
    }
    assert unparseable_ids(dirty) == set(cases["custom_field_unparseable"])


def test_dirty_tasks_point_at_matters_that_were_deleted(dirty: Tenant) -> None:
    deleted = {d["id"] for d in dirty.deletions if d["collection"] == "matters"}
    tasks = {row["id"]: row for row in dirty.records["tasks"]}
    orphans = {ident for ident, task in tasks.items() if task["matter_id"] in deleted}
    assert orphans == set(dirty.dirty_cases["task_deleted_matter"])
    assert not deleted & ids(dirty, "matters")
    live = ids(dirty, "matters")
    for collection in ("matter_parties", "claims", "documents", "notes", "events"):
        assert all(row["matter_id"] in live | {None} for row in dirty.records[collection])


def test_dirty_oversize_document_is_generated_on_demand(dirty: Tenant) -> None:
    (big,) = dirty.dirty_cases["document_over_25mb"]
    record = next(row for row in dirty.records["documents"] if row["id"] == big)
    assert record["size_bytes"] > LARGE_DOCUMENT_BYTES
    digest, size = hashlib.sha256(), 0
    for chunk in dirty.iter_document_content(big):
        digest.update(chunk)
        size += len(chunk)
    assert size == record["size_bytes"]
    assert digest.hexdigest() == record["sha256"]


def test_dirty_records_keep_unknown_keys(dirty: Tenant) -> None:
    extra = {
        row["id"]
        for collection, row in all_records(dirty)
        if set(row) - COMMON_FIELDS - CONTRACT_FIELDS[collection]
    }
    assert extra == set(dirty.dirty_cases["unknown_extra_keys"])
    assert {"legacy_ref"} <= {key for _, row in all_records(dirty) for key in row}


def test_dirty_cases_scale_to_a_few_percent() -> None:
    tenant = generate_tenant(20_000, 9, dirty=True)
    contacts = len(tenant.records["contacts"])
    assert len(tenant.dirty_cases["contact_no_email"]) == pytest.approx(contacts * 0.02, rel=0.1)
    assert len(tenant.dirty_cases["task_deleted_matter"]) >= 0.015 * len(tenant.records["tasks"])
    assert len(tenant.dirty_cases["company_parent_cycle"]) > 3


@pytest.mark.slow
def test_a_hundred_thousand_record_tenant_has_the_size_asked_for() -> None:
    tenant = generate_tenant(100_000, 1)
    assert 95_000 < tenant.total() < 105_000
