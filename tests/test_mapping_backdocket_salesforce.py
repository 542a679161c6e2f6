"""BackDocket → Salesforce mapping: what the operator's org receives for each BackDocket record.

Pure and fast: a generated dirty tenant goes through every transform, and each
payload is checked against the schema plan the admin pre-creates, merged onto the
standard objects Salesforce already has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.backdocket.tenant import CLAIM_TEMPLATES, Tenant, generate_tenant
from adapters.base import Record
from adapters.salesforce.schema import ACTIVITY, FieldSpec, FieldType, ObjectSpec, OrgSchema
from adapters.salesforce.standard_objects import STANDARD_OBJECTS, org_schema
from service.mapping import transforms as tx
from service.mapping.backdocket_salesforce import (
    CASE_TYPE_MAP,
    COLLECTION_OBJECTS,
    DEFAULT_INTAKE_CASE_FORMS,
    EXTERNAL_ID_FIELD,
    LOAD_ORDER,
    UNASSIGNED_ACCOUNT_ID,
    custom_field_api_name,
    dedupe_key,
    gate_fields,
    required_settings,
    resolve_owners,
    schema_plan,
    transform,
    unassigned_account,
)
from service.mapping.base import MappingContext, Payload, Ref, Rejection, TransformResult

FALLBACK = "005000000000FALLBK"
MB = 1024 * 1024


def _std(name: str, kind: FieldType = "string", length: int | None = None, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, name, length=length, **kw)


def _ref(name: str, *targets: str) -> FieldSpec:
    return FieldSpec(name, "reference", name, reference_to=targets)


def _address(prefix: str) -> tuple[FieldSpec, ...]:
    return (
        _std(f"{prefix}Street", "textarea", 255),
        _std(f"{prefix}City", length=40),
        _std(f"{prefix}State", length=80),
        _std(f"{prefix}PostalCode", length=20),
        _std(f"{prefix}Country", length=80),
    )


_ACTIVITY = (
    _std("Subject", length=255),
    _std("Description", "textarea", 32000),
    _std("ActivityDate", "date"),
    _ref("OwnerId", "User"),
    _ref("WhoId", "Contact", "Lead"),
    _ref("WhatId", "Account", "Case_Matter__c"),
)

STANDARD = OrgSchema(
    {
        "Account": ObjectSpec(
            "Account",
            "Account",
            fields=(
                _std("Name", length=255, required=True),
                _std("Website", "url", 255),
                *_address("Billing"),
                _std("Industry", "picklist"),
                _std("NumberOfEmployees", "int"),
                _std("AnnualRevenue", "currency"),
                _ref("OwnerId", "User"),
                _ref("ParentId", "Account"),
            ),
        ),
        "Contact": ObjectSpec(
            "Contact",
            "Contact",
            fields=(
                _std("FirstName", length=40),
                _std("LastName", length=80, required=True),
                _std("Email", "email", 80),
                _std("Phone", "phone", 40),
                _std("MobilePhone", "phone", 40),
                *_address("Mailing"),
                _ref("OwnerId", "User"),
                _ref("AccountId", "Account"),
            ),
        ),
        "Lead": ObjectSpec(
            "Lead",
            "Lead",
            fields=(
                _std("FirstName", length=40),
                _std("LastName", length=80, required=True),
                _std("Company", length=255, required=True),
                _std("Email", "email", 80),
                _std("Phone", "phone", 40),
                _std("LeadSource", "picklist"),
                _std("Status", "picklist", required=True),
                _ref("OwnerId", "User"),
            ),
        ),
        "Task": ObjectSpec(
            "Task",
            "Task",
            fields=(*_ACTIVITY, _std("Status", "picklist"), _std("Priority", "picklist")),
        ),
        "Event": ObjectSpec(
            "Event",
            "Event",
            fields=(
                *_ACTIVITY,
                _std("StartDateTime", "datetime"),
                _std("EndDateTime", "datetime"),
                _std("IsAllDayEvent", "boolean"),
                _std("Location", length=255),
            ),
        ),
        "ContentVersion": ObjectSpec(
            "ContentVersion",
            "Content Version",
            fields=(
                _std("Title", length=255),
                _std("PathOnClient", length=500),
                _ref("OwnerId", "User"),
                _ref("FirstPublishLocationId", "Account", "Contact", "Case_Matter__c"),
            ),
        ),
        "AccountContactRelation": ObjectSpec(
            "AccountContactRelation",
            "Account Contact Relationship",
            fields=(
                _ref("AccountId", "Account"),
                _ref("ContactId", "Contact"),
                _std("IsActive", "boolean"),
                _std("StartDate", "date"),
            ),
        ),
    }
)
"""The standard fields the transforms write, as a Salesforce org describes them."""

VALUE_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "textarea": (str,),
    "email": (str,),
    "phone": (str,),
    "url": (str,),
    "picklist": (str,),
    "multipicklist": (list,),
    "reference": (str,),
    "boolean": (bool,),
    "date": (str,),
    "datetime": (str,),
    "double": (int, float),
    "int": (int,),
    "currency": (int, float),
}


# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generate_tenant(600, 20260601, dirty=True)


def _definitions(tenant: Tenant) -> list[Record]:
    return tenant.records["custom_field_definitions"]


def _context(
    tenant: Tenant, owners: Mapping[str, str] | None = None, **settings_: Any
) -> MappingContext:
    by_entity: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for definition in _definitions(tenant):
        by_entity[definition["entity"]] = (*by_entity.get(definition["entity"], ()), definition)
    if owners is None:
        owners = {u["id"]: f"005{i:015d}" for i, u in enumerate(tenant.records["users"])}
    return MappingContext(owners, FALLBACK, by_entity, settings_)


@pytest.fixture(scope="module")
def ctx(tenant: Tenant) -> MappingContext:
    return _context(tenant)


def as_described(plan: OrgSchema) -> OrgSchema:
    """The plan as describe shows it once deployed: a field deployed on Activity is a field
    of Task and of Event (Object Reference, Activity)."""
    return OrgSchema(
        {name: ObjectSpec(name, name, name.endswith("__c"), fields, "",
                          bool((o := plan.get(name)) and o.enable_activities))
         for name, fields in gate_fields(plan).items()}
    )  # fmt: skip


@pytest.fixture(scope="module")
def org(tenant: Tenant) -> OrgSchema:
    return STANDARD.merged(as_described(schema_plan(_definitions(tenant))))


def _record(tenant: Tenant, collection: str, record_id: str) -> Record:
    return next(r for r in tenant.records[collection] if r["id"] == record_id)


def _payloads(result: TransformResult) -> list[Payload]:
    assert isinstance(result, list), result
    return result


def _only(result: TransformResult) -> Payload:
    payloads = _payloads(result)
    assert len(payloads) == 1
    return payloads[0]


def _spec(org: OrgSchema, obj: str, name: str) -> FieldSpec:
    spec = org.get(obj)
    assert spec is not None, f"{obj} is not in the schema plan"
    found = spec.field(name)
    assert found is not None, f"{obj}.{name} is not in the schema plan"
    return found


def _check_payload(org: OrgSchema, payload: Payload) -> None:
    """Every field the payload writes exists, is createable, and holds a value it accepts."""
    for name, value in payload.fields.items():
        spec = _spec(org, payload.object, name)
        assert spec.createable, f"{payload.object}.{name} is not createable"
        assert isinstance(value, VALUE_TYPES[spec.type]), (payload.object, name, value)
        if isinstance(value, str) and spec.length is not None:
            assert tx.utf16_length(value) <= spec.length, (payload.object, name)
        if spec.restricted:
            chosen = value if isinstance(value, list) else [value]
            assert set(chosen) <= set(spec.picklist_values), (payload.object, name, value)
    for name in (*payload.refs, *payload.deferred_refs):
        assert _spec(org, payload.object, name).type == "reference", (payload.object, name)
    for ref in (*payload.refs.values(), *payload.deferred_refs.values()):
        assert ref.object is not None, f"{payload.object} lookup to {ref} names no object"
        assert ref.object in COLLECTION_OBJECTS[ref.collection]


# --- the whole tenant ------------------------------------------------------------------


def test_every_record_of_a_dirty_tenant_becomes_valid_payloads_or_a_rejection(
    tenant: Tenant, ctx: MappingContext, org: OrgSchema
) -> None:
    produced: dict[str, set[str]] = {}
    for collection, records in tenant.records.items():
        for record in records:
            result = transform(collection, record, ctx)
            if isinstance(result, Rejection):
                assert result.reason
                continue
            for payload in result:
                _check_payload(org, payload)
                assert payload.object in COLLECTION_OBJECTS[collection]
                produced.setdefault(collection, set()).add(payload.object)
    assert set(produced) == set(LOAD_ORDER)
    assert produced["contacts"] == {"Contact", "AccountContactRelation"}
    assert produced["intake_submissions"] == {"Lead", "Case_Matter__c"}


def test_payloads_write_only_fields_a_real_describe_lets_a_create_set(
    tenant: Tenant, ctx: MappingContext
) -> None:
    """Against the standard objects as a real org describes them (Task.IsClosed is not
    createable: a task closes through Status), every field a payload writes exists and is
    createable; those not updateable are exactly the ones the loader leaves out of updates."""
    real = STANDARD_OBJECTS.merged(as_described(schema_plan(_definitions(tenant))))
    create_only: set[str] = set()
    for collection in LOAD_ORDER:
        for record in tenant.records[collection]:
            for payload in _payloads_or_none(transform(collection, record, ctx)):
                for name in (*payload.fields, *payload.refs, *payload.deferred_refs):
                    spec = _spec(real, payload.object, name)
                    assert spec.createable, f"{payload.object}.{name} is not createable"
                    if not spec.updateable:
                        create_only.add(f"{payload.object}.{name}")
    assert create_only == {
        "ContentVersion.PathOnClient",
        "ContentVersion.FirstPublishLocationId",
        "AccountContactRelation.AccountId",
        "AccountContactRelation.ContactId",
        "Case_Party__c.Case_Matter__c",
        "Claim__c.Case_Matter__c",
    }


def test_the_plan_puts_the_external_id_on_every_target_object(org: OrgSchema) -> None:
    """Unique everywhere but on activities, where Salesforce allows no unique custom field
    (https://help.salesforce.com/s/articleView?id=sf.custom_field_attributes.htm)."""
    targets = {obj for objects in COLLECTION_OBJECTS.values() for obj in objects}
    for obj in targets:
        spec = _spec(org, obj, EXTERNAL_ID_FIELD)
        assert (spec.type, spec.length, spec.external_id, spec.unique) == (
            "string",
            255,
            True,
            obj not in ("Task", "Event"),
        )


def test_task_and_event_custom_fields_are_deployed_once_on_the_activity_object(
    tenant: Tenant,
) -> None:
    """Activity custom fields are defined on Activity and show on Task and Event
    (https://help.salesforce.com/s/articleView?id=sf.activities_fields.htm)."""
    plan = schema_plan(_definitions(tenant))
    assert plan.get("Task") is None
    assert plan.get("Event") is None
    activity = plan.get(ACTIVITY)
    assert activity is not None
    names = {f.name for f in activity.fields}
    assert {"Is_Recurring__c", "DocuSign_Status__c", "External_Attendees__c"} <= names
    source_id = activity.field(EXTERNAL_ID_FIELD)
    assert source_id is not None
    assert source_id.external_id
    assert not source_id.unique
    task_fields = {d["key"] for d in _definitions(tenant) if d["entity"] in ("tasks", "events")}
    assert len([f for f in activity.fields if f.name.endswith("__c")]) >= len(task_fields)
    described = gate_fields(plan)
    assert {f.name for f in described["Task"]} == {f.name for f in described["Event"]} == names


def test_case_matter_allows_activities_because_tasks_and_events_point_at_it(
    tenant: Tenant, ctx: MappingContext
) -> None:
    """WhatId to a custom object needs "Allow Activities" (CustomObject.enableActivities,
    https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customobject.htm)."""
    plan = schema_plan(_definitions(tenant))
    what_targets = {
        ref.object
        for collection in ("tasks", "events", "notes", "esignature_requests")
        for record in tenant.records[collection]
        for payload in _payloads_or_none(transform(collection, record, ctx))
        for name, ref in payload.refs.items()
        if name == "WhatId"
    }
    assert what_targets == {"Case_Matter__c"}
    activities = {name for name, spec in plan.objects.items() if spec.enable_activities}
    assert activities == what_targets
    assert required_settings(plan, {})["Case_Matter__c"] == {"enableActivities"}


def _payloads_or_none(result: TransformResult) -> list[Payload]:
    return result if isinstance(result, list) else []


def test_parties_and_claims_are_master_detail_children_of_their_matter_never_reparented(
    tenant: Tenant,
) -> None:
    """Master-detail: the child's sharing and ownership follow the matter; without
    "Allow reparenting" (CustomField.reparentableMasterDetail) the master field is
    createable but not updateable, so the loader leaves it out of every update."""
    plan = schema_plan(_definitions(tenant))
    for child in ("Case_Party__c", "Claim__c"):
        spec = _spec(plan, child, "Case_Matter__c")
        assert spec.master_detail
        assert spec.required
        assert (spec.reparentable, spec.createable, spec.updateable) == (False, True, False)
        assert spec.reference_to == ("Case_Matter__c",)


def test_parties_and_claims_never_carry_an_owner_of_their_own(
    tenant: Tenant, ctx: MappingContext
) -> None:
    """A detail record has no OwnerId: it is owned through its master ("Relationships Among
    Objects", https://help.salesforce.com/s/articleView?id=sf.overview_of_custom_object_relationships.htm),
    and an org built from the plan has no such field to write, so a payload carrying one
    would be refused (INVALID_FIELD) on every party and claim."""
    plan = schema_plan(_definitions(tenant))
    built = org_schema(plan)
    for collection, child in (("matter_parties", "Case_Party__c"), ("claims", "Claim__c")):
        assert _spec(plan, child, "Case_Matter__c").master_detail
        assert plan.objects[child].field("OwnerId") is None
        assert built.objects[child].field("OwnerId") is None
        payloads = [
            payload
            for record in tenant.records[collection]
            for payload in _payloads_or_none(transform(collection, record, ctx))
        ]
        assert payloads, collection
        for payload in payloads:
            sent = {*payload.fields, *payload.refs, *payload.deferred_refs}
            assert "OwnerId" not in sent, (child, payload.external_id)


def test_the_plan_defines_case_matter_for_the_admin(tenant: Tenant, org: OrgSchema) -> None:
    assert _spec(org, "Case_Matter__c", "Claim_Amount__c").type == "currency"
    assert (_spec(org, "Case_Matter__c", "Claim_Amount__c").precision or 0) == 16
    assert _spec(org, "Case_Matter__c", "Assigned_Attorney__c").reference_to == ("User",)
    case_types = _spec(org, "Case_Matter__c", "Case_Type__c").picklist_values
    assert len(case_types) == 22
    assert {CASE_TYPE_MAP[claim_type] for claim_type, _, _ in CLAIM_TEMPLATES} == set(case_types)
    plan = schema_plan(_definitions(tenant))
    case_matter = plan.get("Case_Matter__c")
    assert case_matter is not None
    assert case_matter.custom


def test_custom_field_definitions_become_typed_fields_on_their_object(org: OrgSchema) -> None:
    language = _spec(org, "Contact", "Preferred_Language__c")
    assert language.type == "picklist"
    assert language.restricted
    assert "العربية" in language.picklist_values
    assert not language.required, "a dropped unparseable value must not block the insert"
    assert _spec(org, "Contact", "Date_Of_Birth__c").type == "date"
    assert _spec(org, "Contact", "Contact_Channels__c").type == "multipicklist"
    assert _spec(org, "Account", "Credit_Limit__c").type == "currency"
    assert _spec(org, "Account", "Profile_Html__c").type == "textarea"
    days_open = _spec(org, "Case_Matter__c", "Days_Open__c")
    assert (days_open.type, days_open.length) == ("string", 255)
    assert "computed" in days_open.label
    assert _spec(org, "Task", "Billable_Minutes__c").type == "double"


# --- contacts and accounts -------------------------------------------------------------


def test_a_multi_company_contact_keeps_the_most_recent_link_as_its_account(
    ctx: MappingContext,
) -> None:
    contact = {
        "id": "ct_9",
        "first_name": "Ana",
        "last_name": "Núñez",
        "company_links": [
            {"company_id": "co_old", "linked_at": "2024-01-01T00:00:00+00:00"},
            {"company_id": "co_new", "linked_at": "2025-03-01T09:00:00+00:00"},
            {"company_id": "co_mid", "linked_at": "2025-03-01T09:00:00+05:00"},
        ],
    }
    primary, *relations = _payloads(transform("contacts", contact, ctx))
    assert primary.refs["AccountId"] == Ref("companies", "co_new", "Account")
    assert {r.external_id for r in relations} == {"ct_9:co_old", "ct_9:co_mid"}
    old = next(r for r in relations if r.external_id == "ct_9:co_old")
    assert old.object == "AccountContactRelation"
    assert old.refs == {
        "AccountId": Ref("companies", "co_old", "Account"),
        "ContactId": Ref("contacts", "ct_9", "Contact"),
    }
    assert old.fields == {"IsActive": True, "StartDate": "2024-01-01"}


def test_a_contact_without_a_company_attaches_to_the_unassigned_account(
    tenant: Tenant, ctx: MappingContext
) -> None:
    for contact_id in tenant.dirty_cases["contact_no_company"]:
        payloads = _payloads(transform("contacts", _record(tenant, "contacts", contact_id), ctx))
        assert len(payloads) == 1
        assert payloads[0].refs["AccountId"] == Ref("companies", UNASSIGNED_ACCOUNT_ID, "Account")
        assert any("Unassigned Account" in note for note in payloads[0].notes)
    account = unassigned_account(FALLBACK)
    assert (account.object, account.external_id) == ("Account", UNASSIGNED_ACCOUNT_ID)
    assert account.fields == {"Name": "Unassigned Account", "OwnerId": FALLBACK}


def test_a_five_company_contact_gets_one_primary_account_and_four_relations(
    tenant: Tenant, ctx: MappingContext
) -> None:
    for contact_id in tenant.dirty_cases["contact_five_companies"]:
        record = _record(tenant, "contacts", contact_id)
        contact, *relations = _payloads(transform("contacts", record, ctx))
        linked = {link["company_id"] for link in record["company_links"]}
        primary = contact.refs["AccountId"].source_id
        assert len(relations) == 4
        assert {r.refs["AccountId"].source_id for r in relations} == linked - {primary}
        assert all(r.refs["ContactId"].source_id == contact_id for r in relations)


def test_contact_email_is_the_dedupe_key_and_duplicates_still_load(
    tenant: Tenant, ctx: MappingContext
) -> None:
    first, second = (
        _record(tenant, "contacts", i) for i in tenant.dirty_cases["contact_duplicate_email"][:2]
    )
    assert dedupe_key(first) == dedupe_key(second) == first["email"].strip().lower()
    assert dedupe_key({"email": "  Ana@Example.COM "}) == "ana@example.com"
    assert dedupe_key({"email": None}) is None
    for record in (first, second):
        assert _only(_payloads(transform("contacts", record, ctx))[:1]).fields["Email"]


def test_a_bad_email_is_dropped_and_a_missing_last_name_filled(ctx: MappingContext) -> None:
    contact = _only(
        _payloads(
            transform(
                "contacts",
                {"id": "ct_1", "first_name": "Zoë", "last_name": None, "email": "zoe at home"},
                ctx,
            )
        )
    )
    assert "Email" not in contact.fields
    assert contact.fields["LastName"] == "Zoë"
    assert "FirstName" not in contact.fields
    assert any("zoe at home" in note for note in contact.notes)
    nameless = _payloads(transform("contacts", {"id": "ct_2"}, ctx))[0]
    assert nameless.fields["LastName"] == "(unknown)"


def test_text_keeps_emoji_and_rtl_but_loses_control_characters_and_excess_length(
    ctx: MappingContext,
) -> None:
    contact = _payloads(
        transform(
            "contacts",
            {"id": "ct_3", "first_name": "שרה 👍🏽", "last_name": "حداد\x0b" + "x" * 100},
            ctx,
        )
    )[0]
    assert contact.fields["FirstName"] == "שרה 👍🏽"
    last = contact.fields["LastName"]
    assert isinstance(last, str)
    assert last.startswith("حداد")
    assert "\x0b" not in last
    assert tx.utf16_length(last) == 80
    assert any("control character" in n for n in contact.notes)
    assert any("truncated from 104 to 80" in n for n in contact.notes)


def test_company_becomes_an_account_with_a_deferred_parent(
    tenant: Tenant, ctx: MappingContext
) -> None:
    company = next(c for c in tenant.records["companies"] if c["parent_company_id"])
    account = _only(transform("companies", company, ctx))
    assert account.deferred_refs == {
        "ParentId": Ref("companies", company["parent_company_id"], "Account")
    }
    assert "ParentId" not in account.refs
    assert account.fields["Website"] == f"https://{company['domain']}"
    # Currency(18, 0): whole units, half-up (the old float with cents was refused).
    revenue = Decimal(company["annual_revenue"]).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert account.fields["AnnualRevenue"] == int(revenue)
    assert account.fields["OwnerId"] == FALLBACK


@pytest.mark.parametrize(
    ("source", "expected", "noted"),
    [("1234.50", 1235, True), ("1234.49", 1234, True), ("-2.50", -3, True), ("99", 99, False)],
)
def test_annual_revenue_rounds_half_up_to_whole_units_and_says_so(
    ctx: MappingContext, source: str, expected: int, noted: bool
) -> None:
    """Account.AnnualRevenue is Currency(18, 0) (Object Reference, Account)."""
    account = _only(
        transform("companies", {"id": "co_r", "name": "R", "annual_revenue": source}, ctx)
    )
    assert account.fields["AnnualRevenue"] == expected
    assert isinstance(account.fields["AnnualRevenue"], int)
    assert any("AnnualRevenue" in n and "rounded half-up" in n for n in account.notes) is noted


def _with_address(tenant: Tenant, address: dict[str, str], **settings_: Any) -> Payload:
    ctx = _context(tenant, **settings_)
    company = {"id": "co_a", "name": "Addr", "billing_address": address}
    return _only(transform("companies", company, ctx))


@pytest.mark.parametrize(
    ("state", "country", "state_code", "country_code"),
    [
        ("TX", "US", "TX", "US"),
        ("Texas", "United States", "TX", "US"),
        ("new york", "U.S.A.", "NY", "US"),
        ("Québec", "Canada", "QC", "CA"),
        ("ON", "CA", "ON", "CA"),
        ("", "UK", None, "GB"),
        ("", "Deutschland", None, "DE"),
    ],
)
def test_addresses_take_iso_codes_when_the_org_has_state_and_country_picklists(
    tenant: Tenant, state: str, country: str, state_code: str | None, country_code: str
) -> None:
    """With State and Country/Territory Picklists on, addresses are ISO codes
    (https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm)."""
    address = {"street": "1 Main St", "city": "X", "state": state, "country": country}
    account = _with_address(tenant, address, state_country_picklists=True)
    assert account.fields.get("BillingStateCode") == state_code
    assert account.fields["BillingCountryCode"] == country_code
    assert "BillingState" not in account.fields
    assert "BillingCountry" not in account.fields
    assert account.fields["BillingStreet"] == "1 Main St"


def test_an_address_part_without_a_code_is_kept_in_a_note_never_sent_as_free_text(
    tenant: Tenant,
) -> None:
    address = {"state": "BY", "country": "Narnia"}
    account = _with_address(tenant, address, state_country_picklists=True)
    assert not {k for k in account.fields if "State" in k or "Country" in k}
    assert any("'Narnia'" in n and "BillingCountry" in n for n in account.notes)
    assert any("'BY'" in n and "BillingState" in n for n in account.notes)
    bavaria = _with_address(tenant, {"state": "BY", "country": "DE"}, state_country_picklists=True)
    assert bavaria.fields["BillingCountryCode"] == "DE"
    assert "BillingStateCode" not in bavaria.fields
    assert any("'BY'" in n and "for DE" in n for n in bavaria.notes)


def test_without_the_setting_addresses_stay_free_text(tenant: Tenant) -> None:
    account = _with_address(tenant, {"state": "Texas", "country": "United States"})
    assert (account.fields["BillingState"], account.fields["BillingCountry"]) == (
        "Texas",
        "United States",
    )
    assert "BillingCountryCode" not in account.fields


def test_the_gate_requires_the_address_fields_the_plan_setting_expects(tenant: Tenant) -> None:
    """Either way round: picklists on in the org but not in the plan stops the run, and so
    does the reverse (describe reports which the org has)."""
    plan = schema_plan(_definitions(tenant))
    on = required_settings(plan, {"state_country_picklists": True})
    off = required_settings(plan, {})
    for name in ("Account", "Contact"):
        assert "StateCountryPicklists" in on[name]
        assert "StateCountryText" in off[name]
        assert "StateCountryText" not in on[name]


def test_industries_map_to_salesforce_values_or_other_with_a_note(ctx: MappingContext) -> None:
    def industry(value: str) -> tuple[Any, tuple[str, ...]]:
        account = _only(transform("companies", {"id": "co_1", "name": "X", "industry": value}, ctx))
        return account.fields["Industry"], account.notes

    assert industry("financial_services") == ("Finance", ())
    assert industry("healthcare") == ("Healthcare", ())
    value, notes = industry("legal_services")
    assert value == "Other"
    assert "legal_services" in notes[0]


def test_a_company_without_a_name_fails(ctx: MappingContext) -> None:
    result = transform("companies", {"id": "co_2", "name": "  "}, ctx)
    assert isinstance(result, Rejection)
    assert (result.outcome, result.code) == ("failed", "missing_name")


# --- owners ----------------------------------------------------------------------------


def test_owners_resolve_by_email_and_fall_back_with_a_reason(tenant: Tenant) -> None:
    users = tenant.records["users"]
    no_email = tenant.dirty_cases["user_no_email"][0]
    shared_a, shared_b = tenant.dirty_cases["user_duplicate_email"][:2]
    shared_email = _record(tenant, "users", shared_a)["email"]
    unknown = next(u for u in users if u["email"] and u["id"] not in (shared_a, shared_b, no_email))
    directory = {
        f"  {u['email'].upper()} ": f"005{u['id']}"
        for u in users
        if u["email"] and u["id"] != unknown["id"]
    }
    resolution = resolve_owners(users, directory, FALLBACK)

    assert resolution.owners[no_email] == FALLBACK
    assert resolution.owners[unknown["id"]] == FALLBACK
    reasons = {user_id: reason for user_id, _, _, reason in resolution.fell_back}
    assert reasons == {
        no_email: "no email in BackDocket",
        unknown["id"]: "no Salesforce user has this email",
    }
    assert resolution.owners[shared_a] == resolution.owners[shared_b] != FALLBACK
    assert set(resolution.shared_emails) == {shared_email.lower()}
    assert set(resolution.shared_emails[shared_email.lower()]) == {shared_a, shared_b}
    assert len(resolution.matched) == len(users) - 2


def test_records_of_unresolved_owners_get_the_fallback_owner(tenant: Tenant) -> None:
    ctx = _context(tenant, owners={})
    task = _only(transform("tasks", tenant.records["tasks"][0], ctx))
    assert task.fields["OwnerId"] == FALLBACK
    assert any("fallback owner" in note for note in task.notes)


# --- matters, parties, claims ----------------------------------------------------------


def test_a_matter_becomes_case_matter_with_its_attorney_and_lookups(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = next(m for m in tenant.records["matters"] if m["client_company_id"])
    matter = _only(transform("matters", record, ctx))
    attorney = ctx.owners[record["assigned_attorney_id"]]
    assert matter.object == "Case_Matter__c"
    assert matter.external_id == record["id"]
    assert matter.fields["Assigned_Attorney__c"] == matter.fields["OwnerId"] == attorney
    assert matter.fields["Case_Type__c"] == CASE_TYPE_MAP[record["claim_type"]]
    assert matter.fields["Claim_Amount__c"] == float(Decimal(record["claim_amount"]))
    assert matter.refs["Client_Account__c"] == Ref(
        "companies", record["client_company_id"], "Account"
    )
    assert matter.refs["Primary_Contact__c"].object == "Contact"


def test_parties_and_claims_hang_off_their_matter(tenant: Tenant, ctx: MappingContext) -> None:
    party_record = tenant.records["matter_parties"][0]
    party = _only(transform("matter_parties", party_record, ctx))
    assert party.refs["Case_Matter__c"] == Ref(
        "matters", party_record["matter_id"], "Case_Matter__c"
    )
    assert party.refs["Contact__c"].source_id == party_record["contact_id"]
    claim = _only(transform("claims", tenant.records["claims"][0], ctx))
    assert claim.object == "Claim__c"
    assert claim.refs["Case_Matter__c"].object == "Case_Matter__c"
    orphan = transform("claims", {"id": "cl_x", "matter_id": None}, ctx)
    assert isinstance(orphan, Rejection)
    assert orphan.code == "missing_parent"


# --- activities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "priority", "expected_status", "expected_priority"),
    [
        ("open", "low", "Not Started", "Low"),
        ("in_progress", "normal", "In Progress", "Normal"),
        ("completed", "high", "Completed", "High"),
        ("open", "urgent", "Not Started", "High"),
    ],
)
def test_task_status_and_priority_map_to_salesforce_values(
    ctx: MappingContext,
    status: str,
    priority: str,
    expected_status: str,
    expected_priority: str,
) -> None:
    record = {
        "id": "tk_1",
        "subject": "Draft demand letter",
        "status": status,
        "priority": priority,
        "due_date": "2025-02-03",
        "matter_id": "mt_1",
        "contact_id": "ct_1",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO",
    }
    task = _only(transform("tasks", record, ctx))
    assert (task.fields["Status"], task.fields["Priority"]) == (expected_status, expected_priority)
    assert task.fields["ActivityDate"] == "2025-02-03"
    assert task.refs == {
        "WhoId": Ref("contacts", "ct_1", "Contact"),
        "WhatId": Ref("matters", "mt_1", "Case_Matter__c"),
    }
    assert task.fields["Is_Recurring__c"] is True
    assert task.fields["Recurrence_Rule__c"] == "FREQ=WEEKLY;BYDAY=MO"
    assert any("urgent" in note for note in task.notes) == (priority == "urgent")


def test_a_task_without_subject_loads_with_a_placeholder(ctx: MappingContext) -> None:
    task = _only(transform("tasks", {"id": "tk_2", "subject": ""}, ctx))
    assert task.fields["Subject"] == "(no subject)"


def test_an_event_ending_before_it_starts_fails(ctx: MappingContext) -> None:
    record = {
        "id": "ev_1",
        "subject": "Deposition",
        "start_at": "2025-05-01T15:00:00+00:00",
        "end_at": "2025-05-01T14:00:00+00:00",
    }
    result = transform("events", record, ctx)
    assert isinstance(result, Rejection)
    assert (result.outcome, result.code) == ("failed", "end_before_start")
    missing = transform("events", {**record, "end_at": None}, ctx)
    assert isinstance(missing, Rejection)
    assert missing.code == "invalid_time"


def test_an_all_day_event_ends_on_its_last_day_and_long_events_fail(ctx: MappingContext) -> None:
    record = {
        "id": "ev_2",
        "subject": "Trial day 1",
        "all_day": True,
        "start_at": "2025-03-29T00:00:00+00:00",
        "end_at": "2025-03-31T00:00:00+00:00",
    }
    event = _only(transform("events", record, ctx))
    assert event.fields["IsAllDayEvent"] is True
    assert event.fields["StartDateTime"] == "2025-03-29T00:00:00.000+00:00"
    assert event.fields["EndDateTime"] == "2025-03-30T00:00:00.000+00:00"
    too_long = transform("events", {**record, "end_at": "2025-04-30T00:00:00+00:00"}, ctx)
    assert isinstance(too_long, Rejection)
    assert (too_long.outcome, too_long.code) == ("failed", "event_too_long")


def test_an_event_lists_its_attendees(tenant: Tenant, ctx: MappingContext) -> None:
    record = next(e for e in tenant.records["events"] if e["attendees"] and not e["all_day"])
    event = _only(transform("events", record, ctx))
    lines = str(event.fields["External_Attendees__c"]).split("\n")
    assert lines == [f"{a['name']} <{a['email']}>" for a in record["attendees"]]
    assert event.fields["StartDateTime"] == tx.iso_datetime(tx.parse_datetime(record["start_at"]))


def test_a_note_becomes_a_completed_task_with_plain_text_and_image_references(
    ctx: MappingContext,
) -> None:
    record = {
        "id": "nt_1",
        "body": (
            '<p>Client &amp; adjuster agreed.</p><p><img src="/api/v1/documents/doc_7/content"></p>'
        ),
        "author_id": "usr_x",
        "matter_id": "mt_1",
        "created_at": "2025-04-02T23:30:00+00:00",
    }
    task = _only(transform("notes", record, ctx))
    assert task.external_id == "note:nt_1"
    assert task.fields["Description"] == "Client & adjuster agreed.\n[inline image: document doc_7]"
    assert (
        task.fields["Subject"] == "Note: Client & adjuster agreed. [inline image: document doc_7]"
    )
    assert (task.fields["Status"], task.fields["ActivityDate"]) == ("Completed", "2025-04-02")


def test_an_esignature_request_becomes_a_docusign_reference_task(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = next(r for r in tenant.records["esignature_requests"] if r["sent_at"])
    task = _only(transform("esignature_requests", record, ctx))
    assert task.fields["Subject"] == f"E-signature: {record['document_name']}"
    assert task.fields["DocuSign_Envelope_Id__c"] == record["envelope_id"]
    signers = str(task.fields["Signer_List__c"]).split("\n")
    assert signers == [f"{s['name']} <{s['email']}> ({s['status']})" for s in record["signers"]]
    assert task.fields["ActivityDate"] == record["sent_at"][:10]
    assert task.refs["WhatId"] == Ref("matters", record["matter_id"], "Case_Matter__c")


# --- intake ----------------------------------------------------------------------------


def _intake(form_type: str) -> Record:
    return {
        "id": "ink_1",
        "form_type": form_type,
        "prospect_name": "Siobhán Ó Súilleabháin",
        "prospect_email": "siobhan@example.ie",
        "referral_source": "online_form",
        "case_type_interest": "dog_bite",
        "submitted_at": "2025-01-05T10:00:00+00:00",
        "status": "prospective",
        "assigned_to_id": None,
    }


def test_prospect_forms_become_leads(ctx: MappingContext) -> None:
    assert "general_contact" not in DEFAULT_INTAKE_CASE_FORMS
    lead = _only(transform("intake_submissions", _intake("general_contact"), ctx))
    assert lead.object == "Lead"
    assert lead.external_id == "intake:ink_1"
    assert (lead.fields["FirstName"], lead.fields["LastName"]) == ("Siobhán", "Ó Súilleabháin")
    assert lead.fields["Company"] == "Siobhán Ó Súilleabháin (individual)"
    assert any("Company" in note for note in lead.notes)
    assert (lead.fields["LeadSource"], lead.fields["Status"]) == ("Web", "Open - Not Contacted")
    assert lead.fields["Case_Type_Interest__c"] == "Dog Bite"


def test_client_intake_forms_become_case_matters(ctx: MappingContext) -> None:
    matter = _only(transform("intake_submissions", _intake("personal_injury_intake"), ctx))
    assert matter.object == "Case_Matter__c"
    assert matter.fields["Intake_Form_Type__c"] == "personal_injury_intake"
    assert matter.fields["Status__c"] == "Intake"


def test_the_plan_decides_which_forms_are_client_intake(tenant: Tenant) -> None:
    ctx = _context(tenant, intake_case_forms=["general_contact"])
    assert _only(transform("intake_submissions", _intake("general_contact"), ctx)).object == (
        "Case_Matter__c"
    )
    lead = _only(transform("intake_submissions", _intake("personal_injury_intake"), ctx))
    assert lead.object == "Lead"


# --- documents -------------------------------------------------------------------------


def test_a_document_becomes_a_content_version_on_its_matter(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = next(d for d in tenant.records["documents"] if d["matter_id"] and d["size_bytes"] < MB)
    version = _only(transform("documents", record, ctx))
    assert version.fields["PathOnClient"] == record["filename"]
    assert version.fields["Title"] == record["filename"].rsplit(".", 1)[0]
    assert version.fields["Original_MIME_Type__c"] == record["mime_type"]
    assert version.refs == {
        "FirstPublishLocationId": Ref("matters", record["matter_id"], "Case_Matter__c")
    }
    assert version.file is not None
    assert (version.file.sha256, version.file.size_bytes) == (
        record["sha256"],
        record["size_bytes"],
    )


def test_a_file_over_25_mb_is_skipped_and_named_with_its_size_and_record(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(tenant, "documents", tenant.dirty_cases["document_over_25mb"][0])
    result = transform("documents", record, ctx)
    assert isinstance(result, Rejection)
    assert (result.outcome, result.code) == ("skipped", "file_too_large")
    assert result.reason.startswith(f"{record['filename']} is 25.")
    assert "over Salesforce's 25 MB per-file limit" in result.reason
    assert str(record["matter_id"] or record["contact_id"]) in result.reason
    sized = {**record, "size_bytes": int(27.25 * MB), "matter_id": "mt_5", "contact_id": None}
    reason = transform("documents", sized, ctx)
    assert isinstance(reason, Rejection)
    assert reason.reason == (
        f"{record['filename']} is 27.3 MB, over Salesforce's 25 MB per-file limit; "
        "attached to matter mt_5"
    )


# --- custom field values ---------------------------------------------------------------


def test_unparseable_custom_values_are_omitted_with_a_note(
    tenant: Tenant, ctx: MappingContext
) -> None:
    collections = {"ct": "contacts", "co": "companies", "mt": "matters", "tk": "tasks"}
    for record_id in tenant.dirty_cases["custom_field_unparseable"]:
        collection = collections[record_id.split("_")[0]]
        payload = _payloads(transform(collection, _record(tenant, collection, record_id), ctx))[0]
        bad = [n for n in payload.notes if "left empty" in n and "is not a valid" in n]
        assert bad, f"{record_id} has no note for its unparseable value"
        for note in bad:
            assert note.split(":")[0] not in payload.fields


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("number", 33.33, 33.33),
        ("number", "n/a", None),
        ("currency", "12500.00", 12500.0),
        ("currency", "$12,500 USD", None),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", "31/02/2024", None),
        ("datetime", "2025-01-01T12:00:00-05:00", "2025-01-01T17:00:00.000+00:00"),
        ("datetime", "next Tuesday 5pm", None),
        ("boolean", True, True),
        ("boolean", "maybe", None),
        ("picklist", "Español", "Español"),
        ("picklist", "Legacy: Unknown ❓", None),
        ("multi_picklist", ["email", "sms"], ["email", "sms"]),
        ("multi_picklist", ["Not an option"], None),
        ("computed", 412, "412"),
        ("computed", "#DIV/0!", None),
        ("formatted_text", "<p>Severe <b>whiplash</b></p><ul><li>Lost wages</li></ul>", None),
    ],
)
def test_custom_values_convert_by_declared_type(
    tenant: Tenant, kind: str, value: Any, expected: Any
) -> None:
    definition = {
        "entity": "contacts",
        "key": "cf_probe",
        "label": "Probe",
        "type": kind,
        "options": ["English", "Español", "email", "sms", "phone"],
    }
    ctx = MappingContext({}, FALLBACK, {"contacts": (definition,)})
    record = {"id": "ct_p", "last_name": "Lee", "custom_fields": {"cf_probe": value}}
    contact = _payloads(transform("contacts", record, ctx))[0]
    if kind == "formatted_text":
        assert contact.fields["Probe__c"] == "Severe whiplash\n- Lost wages"
    elif expected is None:
        assert "Probe__c" not in contact.fields
        assert any(n.startswith("Probe__c:") and repr(value) in n for n in contact.notes)
    else:
        assert contact.fields["Probe__c"] == expected
    _check_payload(STANDARD.merged(schema_plan([definition])), contact)


# --- API names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("cf_date_of_birth", "Date_Of_Birth__c"),
        ("cf_vip", "Vip__c"),
        ("cf_Contingency %", "Contingency__c"),
        ("cf_2fa__enabled", "Field_2fa_Enabled__c"),
        ("cf_préférence_langue", "Preference_Langue__c"),
        ("cf_日本語", "Field__c"),
        ("cf_" + "very_long_" * 6, "Very_Long_Very_Long_Very_Long_Very_Long__c"),
    ],
)
def test_custom_field_api_names(key: str, name: str) -> None:
    assert custom_field_api_name(key) == name


def test_colliding_custom_field_names_are_numbered_per_object() -> None:
    definitions = [
        {"entity": "matters", "key": "cf_status", "type": "text"},
        {"entity": "matters", "key": "cf_date_of_birth", "type": "date"},
        {"entity": "matters", "key": "cf_Date-Of birth", "type": "date"},
        {"entity": "contacts", "key": "cf_date_of_birth", "type": "date"},
    ]
    plan = schema_plan(definitions)
    matter = plan.get("Case_Matter__c")
    contact = plan.get("Contact")
    assert matter is not None
    assert contact is not None
    names = {f.name for f in matter.fields}
    assert {"Status__c", "Status_2__c", "Date_Of_Birth__c", "Date_Of_Birth_2__c"} <= names
    assert contact.field("Date_Of_Birth__c") is not None
    assert contact.field("Date_Of_Birth_2__c") is None


API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")


@settings(database=None, max_examples=300)
@given(st.text(max_size=80))
def test_any_key_gives_a_valid_salesforce_api_name(key: str) -> None:
    name = custom_field_api_name(key)
    stem = name.removesuffix("__c")
    assert API_NAME.match(name)
    assert "__" not in stem
    assert not stem.endswith("_")
    assert len(name) <= 43


@settings(database=None, max_examples=300)
@given(st.integers(min_value=-(10**13) + 1, max_value=10**13 - 1))
def test_money_round_trips_exactly_to_the_cent(cents: int) -> None:
    text = f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    amount = tx.money(text)
    assert Decimal(repr(amount)).quantize(Decimal("0.01")) == Decimal(text)
    assert amount == float(Decimal(text))


# --- what is not loaded ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "code"),
    [
        ("users", "resolved_as_owner"),
        ("custom_field_definitions", "schema_definition"),
        ("workflows", "rebuild_in_flow"),
        ("merge_templates", "no_destination_object"),
    ],
)
def test_configuration_collections_are_reported_not_loaded(
    tenant: Tenant, ctx: MappingContext, collection: str, code: str
) -> None:
    for record in tenant.records[collection]:
        result = transform(collection, record, ctx)
        assert isinstance(result, Rejection)
        assert (result.outcome, result.code) == ("skipped", code)


def test_a_computed_field_definition_says_it_lands_as_text(
    tenant: Tenant, ctx: MappingContext
) -> None:
    definition = next(d for d in _definitions(tenant) if d["type"] == "computed")
    result = transform("custom_field_definitions", definition, ctx)
    assert isinstance(result, Rejection)
    assert "Case_Matter__c.Days_Open__c (string)" in result.reason
    assert "formula" in result.reason


def test_the_control_character_filter_removes_exactly_the_categories_it_names() -> None:
    import unicodedata

    from service.mapping.transforms import _REMOVED, _REMOVED_CATEGORIES, KEPT_CONTROLS

    for code_point in range(0x110000):
        ch = chr(code_point)
        removed = ch not in KEPT_CONTROLS and unicodedata.category(ch) in _REMOVED_CATEGORIES
        assert bool(_REMOVED.fullmatch(ch)) == removed, hex(code_point)
