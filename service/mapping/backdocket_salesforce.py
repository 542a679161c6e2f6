"""BackDocket → Salesforce Sales Cloud: the schema plan, owner resolution and record transforms.

The object map follows the migration seed: companies → Account, contacts →
Contact (+ AccountContactRelation for every company beyond the primary one),
matters → the ``Case_Matter__c`` custom object, tasks/notes/e-signature requests →
Task, events → Event, documents → ContentVersion, intake submissions → Lead or
``Case_Matter__c`` by form type. Users become owners, custom field definitions
become the schema plan, and workflows and merge templates are reported, not loaded.

Transforms prefer loading a record with a note over failing it; they fail a
record only when Salesforce would reject it anyway.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

import pycountry

from adapters.base import Record
from adapters.salesforce.client import (
    ENABLE_ACTIVITIES,
    STATE_COUNTRY_PICKLISTS,
    STATE_COUNTRY_TEXT,
)
from adapters.salesforce.schema import ACTIVITY, FieldSpec, FieldType, ObjectSpec, OrgSchema
from service.mapping import transforms as tx
from service.mapping.backdocket import (
    NO_SUBJECT,
    CompanyLink,
    OwnerResolution,
    attached_to,
    company_links,
    inline_image,
    match_owners,
    megabytes,
    note_subject,
    person_line,
    primary_link,
)
from service.mapping.base import (
    FileRef,
    JsonValue,
    MappingContext,
    Payload,
    Ref,
    Rejection,
    TransformResult,
)
from service.mapping.draft import (
    UNKNOWN_NAME,
    Draft,
    RecordTransform,
    blank,
    dispatch,
    not_loaded,
    plain,
)
from service.mapping.value_maps_common import ValueMap, custom_values, field_target
from service.mapping.value_maps_salesforce import (
    ACCOUNT_KIND,
    ACCOUNT_KIND_MAP,
    BILLING_TYPE,
    BILLING_TYPE_MAP,
    CASE_CATEGORY,
    CASE_CATEGORY_MAP,
    CASE_TYPE,
    CLAIM_KIND,
    CLAIM_KIND_MAP,
    CLAIM_STATUS,
    CLAIM_STATUS_MAP,
    CONTACT_INTAKE_STATUS,
    CONTACT_INTAKE_STATUS_MAP,
    ESIGN_STATUS,
    ESIGN_STATUS_MAP,
    ESIGN_TASK_STATUS,
    INDUSTRY,
    INTAKE_STATUS,
    INTAKE_STATUS_MAP,
    LEAD_SOURCE,
    LEAD_STATUS,
    MATTER_STATUS,
    MATTER_STATUS_MAP,
    PARTY_ROLE,
    PARTY_ROLE_MAP,
    PRACTICE_AREA,
    PRACTICE_AREA_MAP,
    REFERRAL_SOURCE,
    REFERRAL_SOURCE_MAP,
    TASK_PRIORITY,
    TASK_STATUS,
    TASK_STATUS_MAP,
)
from service.mapping.value_maps_salesforce import (
    CASE_TYPE_MAP as CASE_TYPE_MAP,  # re-exported: the default maps moved
)

EXTERNAL_ID_FIELD = "Source_System_ID__c"
"""The external-id field every target object carries: each write is an upsert on it."""

UNASSIGNED_ACCOUNT_ID = "crmlift:unassigned-account"
"""External id of the 'Unassigned Account' that contacts without a company attach to."""

UNASSIGNED_ACCOUNT_NAME = "Unassigned Account"

LOAD_ORDER: tuple[str, ...] = (
    "companies",
    "contacts",
    "matters",
    "matter_parties",
    "claims",
    "intake_submissions",
    "tasks",
    "events",
    "esignature_requests",
    "notes",
    "documents",
)
"""Source collections in the order their lookups need them loaded."""

DEPENDS_ON: Mapping[str, tuple[str, ...]] = {
    "companies": (),
    "contacts": ("companies",),
    "matters": ("companies", "contacts"),
    "matter_parties": ("matters", "contacts"),
    "claims": ("matters",),
    "intake_submissions": ("matters",),
    "tasks": ("contacts", "matters"),
    "events": ("contacts", "matters"),
    "esignature_requests": ("matters",),
    "notes": ("contacts", "matters"),
    "documents": ("contacts", "matters"),
}
"""The collections each collection's lookups point into (self-references, such as
Account.ParentId, load in a second pass and are not listed). Collections whose
dependencies are loaded are written at the same time."""

COLLECTION_OBJECTS: Mapping[str, tuple[str, ...]] = {
    "companies": ("Account",),
    "contacts": ("Contact", "AccountContactRelation"),
    "matters": ("Case_Matter__c",),
    "matter_parties": ("Case_Party__c",),
    "claims": ("Claim__c",),
    "intake_submissions": ("Lead", "Case_Matter__c"),
    "tasks": ("Task",),
    "events": ("Event",),
    "esignature_requests": ("Task",),
    "notes": ("Task",),
    "documents": ("ContentVersion",),
    "users": (),
    "custom_field_definitions": (),
    "workflows": (),
    "merge_templates": (),
}
"""Source collection → destination objects it can produce, in the order they load
(a contact's AccountContactRelations need the Contact first)."""

EXTERNAL_ID_PREFIXES: Mapping[str, str] = {
    "notes": "note:",
    "esignature_requests": "esign:",
    "intake_submissions": "intake:",
}
"""Collections that share a destination object with another collection (Task,
Case_Matter__c): their external ids are prefixed, because BackDocket ids are only
unique per collection and ``Source_System_ID__c`` is unique per object."""

NOT_LOADED: Mapping[str, tuple[str, str]] = {
    "users": (
        "resolved_as_owner",
        "BackDocket users are matched to Salesforce users by email and become record owners",
    ),
    "custom_field_definitions": (
        "schema_definition",
        "custom field definitions become fields of the schema plan",
    ),
    "workflows": (
        "rebuild_in_flow",
        "workflows do not migrate; they are exported as reference to rebuild in Salesforce Flow",
    ),
    "merge_templates": (
        "no_destination_object",
        "merge templates have no Salesforce destination object; exported as reference",
    ),
}
"""Collections whose records never become Salesforce records: (code, reason)."""

# --- Salesforce field facts --------------------------------------------------------------

ACTIVITY_OBJECTS = ("Task", "Event")
"""The objects that show the fields defined on ``ACTIVITY``."""

LONG_TEXT_LENGTH = 131_072
"""Maximum length of a Salesforce Long Text Area field."""

ACTIVITY_DESCRIPTION_LENGTH = 32_000
"""Task.Description and Event.Description are Long Text Area(32000)."""

EMAIL_LENGTH = 80
"""Salesforce Email fields hold at most 80 characters."""

MAX_EMPLOYEES = 99_999_999
"""Account.NumberOfEmployees is Number(8, 0)."""

MAX_EVENT_DURATION = timedelta(days=14)
"""Salesforce rejects an Event longer than 14 days."""

DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024
"""The per-file limit the seed enforces for Salesforce Files (setting ``max_file_bytes``)."""

CURRENCY_PRECISION, CURRENCY_SCALE = 16, 2
ANNUAL_REVENUE_PRECISION = 18
"""Account.AnnualRevenue is Currency(18, 0): whole units only (Object Reference, Account)."""
NUMBER_PRECISION, NUMBER_SCALE = 18, 4

STANDARD_TEXT_LENGTHS: Mapping[str, Mapping[str, int]] = {
    "Account": {
        "Name": 255,
        "Website": 255,
        "BillingStreet": 255,
        "BillingCity": 40,
        "BillingState": 80,
        "BillingPostalCode": 20,
        "BillingCountry": 80,
    },
    "Contact": {
        "FirstName": 40,
        "LastName": 80,
        "Phone": 40,
        "MobilePhone": 40,
        "MailingStreet": 255,
        "MailingCity": 40,
        "MailingState": 80,
        "MailingPostalCode": 20,
        "MailingCountry": 80,
    },
    "Lead": {"FirstName": 40, "LastName": 80, "Company": 255, "Phone": 40},
    "Task": {"Subject": 255, "Description": ACTIVITY_DESCRIPTION_LENGTH},
    "Event": {"Subject": 255, "Location": 255, "Description": ACTIVITY_DESCRIPTION_LENGTH},
    "ContentVersion": {"Title": 255, "PathOnClient": 500},
}
"""Lengths of the standard text fields the transforms write, for truncation."""

DEFAULT_INTAKE_CASE_FORMS: frozenset[str] = frozenset(
    {
        "personal_injury_intake",
        "employment_intake",
        "family_law_intake",
        "workers_comp_questionnaire",
    }
)
"""Intake form types that are client intake for a case (→ Case_Matter__c); every other
form, ``general_contact`` and any unknown form included, is a prospect (→ Lead). The
practice-specific forms collect the facts of a case; a general contact form only says
who to call. Override with the plan setting ``intake_case_forms``; an unknown form
defaults to Lead because a stray lead is cheaper to discard than a stray matter."""

INTAKE_MATTER_STATUS = "Intake"
"""Status__c of a Case_Matter__c made from an intake submission."""


"""How a BackDocket note body points at an inline image held as a document."""

COMPUTED_ERROR = re.compile(r"#[A-Z0-9/]+[!?]?")
"""Spreadsheet-style error results (``#DIV/0!``, ``#N/A``) of a computed field."""

# --- the schema plan ---------------------------------------------------------------------

CUSTOM_FIELD_TYPES: Mapping[str, tuple[FieldType, int | None]] = {
    "text": ("string", 255),
    "textarea": ("textarea", LONG_TEXT_LENGTH),
    "formatted_text": ("textarea", LONG_TEXT_LENGTH),
    "number": ("double", None),
    "currency": ("currency", None),
    "date": ("date", None),
    "datetime": ("datetime", None),
    "boolean": ("boolean", None),
    "picklist": ("picklist", None),
    "multi_picklist": ("multipicklist", None),
    "computed": ("string", 255),
}
"""BackDocket custom field type → (Salesforce type, length). Formatted text lands as
plain text in a long text area; a computed field becomes text holding the value
BackDocket computed (a formula must be rebuilt by the admin to keep it live)."""

CUSTOM_FIELD_FALLBACK_TYPE: tuple[FieldType, int | None] = ("string", 255)
"""Where a definition of a type this map does not know lands: its values as text."""

CUSTOM_FIELD_OBJECTS: Mapping[str, str] = {
    "contacts": "Contact",
    "companies": "Account",
    "matters": "Case_Matter__c",
    "matter_parties": "Case_Party__c",
    "claims": "Claim__c",
    "tasks": ACTIVITY,
    "events": ACTIVITY,
    "documents": "ContentVersion",
}
"""BackDocket entity → the object its custom fields are created on (task and event fields
on Activity, where Salesforce defines them for both). Entities that share or switch
objects (notes, e-signatures, intake) have no place for them. A key both tasks and
events define becomes one Activity field, typed by the first definition."""

API_NAME_STEM_LENGTH = 40
"""Salesforce allows 40 characters before a custom field's ``__c``."""


def _label(api_name: str) -> str:
    return api_name.removesuffix("__c").replace("_", " ")


def _spec(api_name: str, kind: FieldType, **options: Any) -> FieldSpec:
    return FieldSpec(api_name, kind, options.pop("label", _label(api_name)), **options)


def _text(api_name: str, length: int = 255) -> FieldSpec:
    return _spec(api_name, "string", length=length)


def _long_text(api_name: str) -> FieldSpec:
    return _spec(api_name, "textarea", length=LONG_TEXT_LENGTH)


def _picklist(api_name: str, values: Mapping[str, str], *extra: str) -> FieldSpec:
    """A picklist of a value map's targets, unrestricted so an unmapped value still loads."""
    options = tuple(dict.fromkeys((*values.values(), *extra)))
    return _spec(api_name, "picklist", picklist_values=options)


def _lookup(api_name: str, target: str, *, required: bool = False) -> FieldSpec:
    return _spec(api_name, "reference", reference_to=(target,), required=required)


def _currency(api_name: str) -> FieldSpec:
    return _spec(api_name, "currency", precision=CURRENCY_PRECISION, scale=CURRENCY_SCALE)


def _master(api_name: str, master: str) -> FieldSpec:
    """A master-detail field: required, and never reparented (see ``PLANNED_FIELDS``)."""
    return _spec(
        api_name, "reference", reference_to=(master,), required=True, master_detail=True,
        reparentable=False, updateable=False,
    )  # fmt: skip


_SOURCE_ID = _spec(
    EXTERNAL_ID_FIELD, "string", label="Source System ID", length=255, external_id=True, unique=True
)

_ACTIVITY_SOURCE_ID = replace(_SOURCE_ID, unique=False)
"""Activity custom fields cannot be unique (Setup offers no Unique attribute for them:
https://help.salesforce.com/s/articleView?id=sf.custom_field_attributes.htm), so on
Task and Event the source id is a non-unique external id. Upsert still matches on it
(one match updates, none creates, several is an error:
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_upsert.htm),
and the client never sends one source id twice in a request and reports ids the org
already holds twice."""


_OBJECT_LABELS: Mapping[str, str] = {
    "Account": "Account",
    "Contact": "Contact",
    "Lead": "Lead",
    "Task": "Task",
    "Event": "Event",
    "ContentVersion": "Content Version",
    "AccountContactRelation": "Account Contact Relationship",
    "Case_Matter__c": "Case / Matter",
    "Case_Party__c": "Case Party",
    "Claim__c": "Claim",
    ACTIVITY: "Activity",
}

_RECURRENCE_FIELDS = (
    _spec("Is_Recurring__c", "boolean"),
    _text("Recurrence_Rule__c"),
)

PLANNED_FIELDS: Mapping[str, tuple[FieldSpec, ...]] = {
    "Account": (
        _picklist("BackDocket_Kind__c", ACCOUNT_KIND_MAP),
        _spec("Source_Created_Date__c", "datetime"),
    ),
    "Contact": (
        _text("Bar_Number__c", 50),
        _picklist("Intake_Status__c", CONTACT_INTAKE_STATUS_MAP),
        _spec("Source_Created_Date__c", "datetime"),
    ),
    "Lead": (
        _picklist("Referral_Source__c", REFERRAL_SOURCE_MAP),
        _picklist("Case_Type_Interest__c", CASE_TYPE_MAP),
        _spec("Source_Submitted_Date__c", "datetime"),
        _text("Intake_Form_Type__c"),
        _picklist("Intake_Status__c", INTAKE_STATUS_MAP),
        _lookup("Converted_Matter__c", "Case_Matter__c"),
    ),
    ACTIVITY: (
        *_RECURRENCE_FIELDS,
        _long_text("Approval_Request__c"),
        _picklist("DocuSign_Status__c", ESIGN_STATUS_MAP),
        _long_text("Signer_List__c"),
        _text("DocuSign_Envelope_Id__c", 64),
        _text("Signature_Document__c"),
        _long_text("External_Attendees__c"),
    ),
    "ContentVersion": (
        _spec("Original_Upload_Date__c", "datetime"),
        _text("Original_MIME_Type__c"),
        _spec("Source_Version__c", "double", precision=18, scale=0),
    ),
    "AccountContactRelation": (),
    "Case_Matter__c": (
        _text("Name", 80),
        _lookup("OwnerId", "User"),
        _text("Case_Name__c"),
        _text("Case_Number__c", 80),
        _picklist("Case_Type__c", CASE_TYPE_MAP),
        _picklist("Case_Category__c", CASE_CATEGORY_MAP),
        _picklist("Status__c", MATTER_STATUS_MAP),
        _spec("Filed_Date__c", "date"),
        _spec("Opened_Date__c", "date"),
        _spec("Closed_Date__c", "date"),
        _currency("Claim_Amount__c"),
        _currency("Estimated_Fees__c"),
        _picklist("Billing_Type__c", BILLING_TYPE_MAP),
        _long_text("Case_Description__c"),
        _text("Court_Jurisdiction__c"),
        _picklist("Practice_Area__c", PRACTICE_AREA_MAP),
        _spec("Statute_Of_Limitations__c", "date", label="Statute of Limitations"),
        _lookup("Assigned_Attorney__c", "User"),
        _lookup("Client_Account__c", "Account"),
        _lookup("Primary_Contact__c", "Contact"),
        _spec("Source_Created_Date__c", "datetime"),
        _text("Intake_Form_Type__c"),
        _picklist("Intake_Status__c", INTAKE_STATUS_MAP),
        _picklist("Referral_Source__c", REFERRAL_SOURCE_MAP),
        _spec("Prospect_Email__c", "email", length=EMAIL_LENGTH),
        _spec("Prospect_Phone__c", "phone", length=40),
        _lookup("Converted_Matter__c", "Case_Matter__c"),
    ),
    "Case_Party__c": (
        _spec("Name", "string", length=80, createable=False, updateable=False),
        _master("Case_Matter__c", "Case_Matter__c"),
        _lookup("Contact__c", "Contact", required=True),
        _picklist("Role__c", PARTY_ROLE_MAP),
        _spec("Is_Primary__c", "boolean"),
    ),
    "Claim__c": (
        _text("Name", 80),
        _master("Case_Matter__c", "Case_Matter__c"),
        _picklist("Claim_Kind__c", CLAIM_KIND_MAP),
        _currency("Amount__c"),
        _spec("Revenue_Generating__c", "boolean"),
        _picklist("Status__c", CLAIM_STATUS_MAP),
        _spec("Close_Date__c", "date"),
    ),
}
"""The fields the admin creates before loading, per object, besides Source_System_ID__c
and the custom fields of the BackDocket definitions; Task and Event fields live on
Activity. Case_Party__c and Claim__c hang off Case_Matter__c by master-detail: a party
or a claim exists only within its matter, and who may see or edit it is who may see
or edit the matter (sharing and ownership follow the master, so they have no owner of
their own). They are not reparentable: a party or claim never moves to another matter
in BackDocket's model, so a changed matter id is a data error the loader notes, not a
move to replay (Metadata API ``CustomField.reparentableMasterDetail``,
https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customfield.htm).
Case_Party__c names itself with an auto-number."""

ACTIVITY_TARGETS: tuple[str, ...] = ("Case_Matter__c",)
"""Custom objects tasks, events, notes and e-signature tasks point at (``WhatId``): they
need "Allow Activities" (``CustomObject.enableActivities``), or the org refuses the link."""


def field_home(sobject: str) -> str:
    """The object whose definition holds ``sobject``'s custom fields (Activity for activities)."""
    return ACTIVITY if sobject in ACTIVITY_OBJECTS else sobject


_FIELD_LENGTHS: Mapping[str, Mapping[str, int]] = {
    name: {
        **STANDARD_TEXT_LENGTHS.get(name, {}),
        **{f.name: f.length for f in PLANNED_FIELDS[field_home(name)] if f.length is not None},
    }
    for name in (*(n for n in PLANNED_FIELDS if n != ACTIVITY), *ACTIVITY_OBJECTS)
}


def custom_field_api_name(key: str) -> str:
    """The Salesforce API name for a BackDocket custom field key: ``cf_date_of_birth`` →
    ``Date_Of_Birth__c``.

    Letters are folded to ASCII, every run of other characters becomes one
    underscore, and the stem starts with a letter and fits Salesforce's 40
    characters. Collisions between keys are resolved per object by the plan.
    """
    stem = key[3:] if key.lower().startswith("cf_") else key
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    words = [w for w in re.split(r"[^A-Za-z0-9]+", folded) if w]
    name = "_".join(w[:1].upper() + w[1:] for w in words) or "Field"
    if not name[0].isalpha():
        name = f"Field_{name}"
    return f"{name[:API_NAME_STEM_LENGTH].rstrip('_')}__c"


def _numbered(api_name: str, number: int) -> str:
    suffix = f"_{number}"
    stem = api_name.removesuffix("__c")[: API_NAME_STEM_LENGTH - len(suffix)].rstrip("_")
    return f"{stem}{suffix}__c"


@lru_cache(maxsize=256)
def _custom_field_names(object_name: str, keys: tuple[str, ...]) -> Mapping[str, str]:
    """Key → API name for one object's custom fields, unique against each other and the
    planned fields (case-insensitively, as Salesforce compares). Keys are numbered in
    sorted order, so the same definitions always give the same names."""
    taken = {f.name.lower() for f in PLANNED_FIELDS.get(object_name, ())}
    taken.add(EXTERNAL_ID_FIELD.lower())
    names: dict[str, str] = {}
    for key in sorted(set(keys)):
        base = custom_field_api_name(key)
        name, number = base, 1
        while name.lower() in taken:
            number += 1
            name = _numbered(base, number)
        taken.add(name.lower())
        names[key] = name
    return names


def _definition_keys(definitions: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(sorted(str(d["key"]) for d in definitions if d.get("key")))


def _custom_field_spec(definition: Mapping[str, Any], api_name: str) -> FieldSpec:
    kind, length = CUSTOM_FIELD_TYPES.get(str(definition.get("type")), CUSTOM_FIELD_FALLBACK_TYPE)
    label = str(definition.get("label") or definition.get("key"))
    if definition.get("type") == "computed":
        label = f"{label} (computed in BackDocket)"
    options: dict[str, Any] = {"label": label[:40], "length": length}
    if kind in ("picklist", "multipicklist"):
        values = tuple(dict.fromkeys(str(o) for o in definition.get("options") or ()))
        options.update(picklist_values=values, restricted=True)
    elif kind == "currency":
        options.update(precision=CURRENCY_PRECISION, scale=CURRENCY_SCALE)
    elif kind == "double":
        options.update(precision=NUMBER_PRECISION, scale=NUMBER_SCALE)
    return _spec(api_name, kind, **options)


def schema_plan(definitions: Sequence[Mapping[str, Any]]) -> OrgSchema:
    """The objects and fields the admin pre-creates before any record loads.

    Every target object gets Source_System_ID__c (an external id, unique except on
    Activity, where Salesforce allows no unique field); the custom objects get their
    whole definition, with "Allow Activities" on those activities point at; each
    BackDocket custom field definition becomes one ``__c`` field on the object its
    entity maps to. Custom fields are never required in Salesforce, even when BackDocket
    required them, so a record whose value was dropped as unparseable still loads.
    """
    by_object: dict[str, dict[str, Mapping[str, Any]]] = {}
    for definition in definitions:
        target = CUSTOM_FIELD_OBJECTS.get(str(definition.get("entity")))
        if target is not None and definition.get("key"):
            by_object.setdefault(target, {}).setdefault(str(definition["key"]), definition)
    objects: dict[str, ObjectSpec] = {}
    for name, planned in PLANNED_FIELDS.items():
        custom = by_object.get(name, {})
        names = _custom_field_names(name, tuple(sorted(custom)))
        extra = tuple(_custom_field_spec(d, names[key]) for key, d in custom.items())
        source_id = _ACTIVITY_SOURCE_ID if name == ACTIVITY else _SOURCE_ID
        objects[name] = ObjectSpec(
            name=name,
            label=_OBJECT_LABELS[name],
            custom=name.endswith("__c"),
            fields=(source_id, *planned, *extra),
            enable_activities=name in ACTIVITY_TARGETS,
        )
    return OrgSchema(objects)


CUSTOM_FIELD_RECORDS: Mapping[str, str] = {
    **{e: o for e, o in CUSTOM_FIELD_OBJECTS.items() if o != ACTIVITY},
    "tasks": "Task",
    "events": "Event",
}
"""BackDocket entity → the object its records (and so its custom field values) become."""


def custom_field_targets(definitions: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Entity → custom field key → ``Object.Field`` the schema plan deploys for it (task and
    event fields, deployed on Activity, as Task and Event show them)."""
    keys: dict[str, set[str]] = {}
    for d in definitions:
        home = CUSTOM_FIELD_OBJECTS.get(str(d.get("entity")))
        if home is not None and d.get("key"):
            keys.setdefault(home, set()).add(str(d["key"]))
    targets: dict[str, dict[str, str]] = {}
    for d in definitions:
        entity, key = str(d.get("entity")), str(d.get("key") or "")
        home = CUSTOM_FIELD_OBJECTS.get(entity)
        if home is not None and key:
            name = _custom_field_names(home, tuple(sorted(keys[home])))[key]
            targets.setdefault(entity, {})[key] = f"{CUSTOM_FIELD_RECORDS[entity]}.{name}"
    return targets


def gate_fields(plan: OrgSchema) -> dict[str, tuple[FieldSpec, ...]]:
    """The plan's fields per object the loader writes, as describe will show them: a field
    deployed on Activity is a field of Task and of Event."""
    fields: dict[str, tuple[FieldSpec, ...]] = {}
    for name, spec in plan.objects.items():
        for target in ACTIVITY_OBJECTS if name == ACTIVITY else (name,):
            fields[target] = (*fields.get(target, ()), *spec.fields)
    return fields


STATE_COUNTRY_SETTING = "state_country_picklists"
"""The plan's ``[mapping]`` switch: the org has State and Country/Territory Picklists on."""

PICKLISTS_ON = STATE_COUNTRY_PICKLISTS
"""Describe shows ``BillingCountryCode`` (…) on the object: addresses take ISO codes, and
free-text state or country values are refused
(https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_overview.htm)."""

PICKLISTS_OFF = STATE_COUNTRY_TEXT
"""Describe shows only the free-text ``BillingState``/``BillingCountry`` (…) fields."""

ADDRESS_OBJECTS = ("Account", "Contact")
"""Objects the mapping writes an address to."""


def required_settings(plan: OrgSchema, settings: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Org settings the gate requires, per object, in the words ``describe`` reports them:
    Allow Activities where the plan asks for it, and state/country fields matching the
    plan's ``state_country_picklists`` (either way round, so a mismatch stops the run
    before the org refuses every address, or before codes go into text fields)."""
    required: dict[str, set[str]] = {}
    for name, spec in plan.objects.items():
        if spec.enable_activities:
            required.setdefault(name, set()).add(ENABLE_ACTIVITIES)
    address = PICKLISTS_ON if state_country_picklists(settings) else PICKLISTS_OFF
    for name in ADDRESS_OBJECTS:
        required.setdefault(name, set()).add(address)
    return {name: frozenset(values) for name, values in required.items()}


def state_country_picklists(settings: Mapping[str, Any]) -> bool:
    """Whether the plan says the org's addresses take ISO state and country codes."""
    value = settings.get(STATE_COUNTRY_SETTING, False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


# --- owners ------------------------------------------------------------------------------


def resolve_owners(
    users: Sequence[Record], sf_users_by_email: Mapping[str, str], fallback_owner: str
) -> OwnerResolution:
    """Match BackDocket users to Salesforce users by email; the unmatched get the fallback."""
    return match_owners(
        users,
        sf_users_by_email,
        fallback_owner,
        unmatched_reason="no Salesforce user has this email",
    )


# --- the payload under construction ------------------------------------------------------


_REF_OBJECTS: Mapping[str, str] = {
    "companies": "Account",
    "contacts": "Contact",
    "matters": "Case_Matter__c",
}
"""Collections a lookup can point at → the object their records become."""


def external_id(collection: str, source_id: str) -> str:
    """Source_System_ID__c of the record made from ``collection``/``source_id``."""
    return f"{EXTERNAL_ID_PREFIXES.get(collection, '')}{source_id}"


@dataclass
class _Draft(Draft):
    """A Salesforce record being built: picklists by value map, lookups by Ref."""

    def field_length(self, name: str) -> int | None:
        return _FIELD_LENGTHS.get(self.object, {}).get(name)

    def amount(self, name: str, value: Any) -> Decimal | None:
        """``value`` as a Decimal; None when absent, or (noted) when not a number."""
        if value is None or value == "":
            return None
        try:
            return tx.parse_decimal(value)
        except ValueError:
            self.note(f"{name}: {value!r} is not a decimal amount; left empty")
            return None

    def money(self, name: str, value: Any, precision: int = CURRENCY_PRECISION) -> None:
        """Set a currency field from a decimal string, exact to the cent."""
        amount = self.amount(name, value)
        if amount is None:
            return
        if abs(amount) >= 10 ** (precision - CURRENCY_SCALE):
            self.note(f"{name}: {value!r} exceeds the field's {precision} digits; left empty")
            return
        try:
            self.put(name, tx.money(amount))
        except ValueError as exc:
            self.note(f"{name}: {exc}; left empty")
            return
        if tx.quantize_money(amount) != amount:
            self.note(f"{name}: {value!r} rounded to the cent")

    def pick(
        self, name: str, value: Any, values: Mapping[str, str], fallback: str | None = None
    ) -> str | None:
        """Set a picklist through a value map; an unmapped value loads as the fallback (or
        its readable form on our own unrestricted picklists) with a note."""
        if value is None or value == "":
            return None
        mapped = values.get(str(value).strip().lower())
        if mapped is None:
            mapped = fallback or tx.humanize(str(value))
            self.note(f"{name}: BackDocket value {value!r} has no mapping; set to {mapped!r}")
        self.put(name, mapped)
        return mapped

    def pick_map(self, name: str, value: Any, values: ValueMap, ctx: MappingContext) -> None:
        """Set a picklist through the run's value map (the confirmed mapping file's, else
        the default) and its fallback."""
        if value is None or value == "":
            return
        found = values.values(ctx).get(str(value).strip().lower())
        if found is None:
            fallback = values.fallback_in(ctx)
            found = tx.humanize(str(value)) if fallback is None else fallback
            self.note(f"{name}: BackDocket value {value!r} has no mapping; set to {str(found)!r}")
        self.put(name, str(found))

    def ref(self, name: str, collection: str, source_id: Any, *, deferred: bool = False) -> None:
        """Point a lookup at the record made from ``collection``/``source_id``, if any."""
        if source_id is None or source_id == "":
            return
        target = Ref(collection, str(source_id), _REF_OBJECTS.get(collection))
        (self.deferred_refs if deferred else self.refs)[name] = target

    def owner(self, ctx: MappingContext, user_id: Any, role: str) -> None:
        """OwnerId from a BackDocket user id, the fallback owner when it does not resolve."""
        self.put("OwnerId", self.resolve_owner(ctx, user_id, role, "OwnerId"))

    def build(self, external: str, file: FileRef | None = None) -> Payload:
        return self.payload(external, file=file)


def _address(draft: _Draft, prefix: str, address: Any, ctx: MappingContext) -> None:
    if not isinstance(address, Mapping):
        return
    for part, suffix in (("street", "Street"), ("city", "City"), ("postal_code", "PostalCode")):
        draft.text(f"{prefix}{suffix}", address.get(part))
    if state_country_picklists(ctx.settings):
        _address_codes(draft, prefix, address.get("state"), address.get("country"))
    else:
        draft.text(f"{prefix}State", address.get("state"))
        draft.text(f"{prefix}Country", address.get("country"))


def _address_codes(draft: _Draft, prefix: str, state: Any, country: Any) -> None:
    """With State and Country/Territory Picklists on, an address takes ISO codes
    (``BillingCountryCode``, ``BillingStateCode``) and the org refuses free text that is
    not one of the picklists' values; a value that maps to no code is kept in a note."""
    country_text, state_text = plain(country), plain(state)
    code = country_code(country_text) if country_text else None
    if country_text and code is None:
        draft.note(f"{prefix}Country: {country_text!r} is no known country; not sent (kept here)")
    draft.put(f"{prefix}CountryCode", code)
    if not state_text:
        return
    state_code = subdivision_code(code, state_text) if code else None
    if state_code is None:
        where = f"for {code}" if code else "without a country"
        draft.note(f"{prefix}State: {state_text!r} has no state code {where}; not sent (kept here)")
    draft.put(f"{prefix}StateCode", state_code)


STATE_PICKLIST_COUNTRIES = frozenset({"US", "CA"})
"""Countries whose states crmlift maps to codes: the United States and Canada, whose state
and province codes in Salesforce's picklists are the ISO 3166-2 subdivision codes."""

COUNTRY_ALIASES: Mapping[str, str] = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "america": "US",
    "united states of america": "US",
    "holland": "NL",
    "russia": "RU",
    "korea": "KR",
    "ivory coast": "CI",
    "deutschland": "DE",
    "espana": "ES",
    "mexique": "MX",
    "uae": "AE",
}
"""Common names and abbreviations pycountry does not know (dots and accents ignored)."""


def _folded(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(ascii_text.replace(".", "").casefold().split())


def country_code(value: str) -> str | None:
    """ISO 3166-1 alpha-2 code of a country name, code or common alias; None if unknown."""
    folded = _folded(value)
    if folded in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[folded]
    for candidate in (value.strip(), folded):
        try:
            return str(pycountry.countries.lookup(candidate).alpha_2)
        except LookupError:
            continue
    return None


@lru_cache(maxsize=8)
def _subdivisions(country: str) -> Mapping[str, str]:
    table: dict[str, str] = {}
    for sub in pycountry.subdivisions:
        if sub.country_code != country:
            continue
        code = str(sub.code).split("-", 1)[1]
        table[_folded(code)] = code
        table[_folded(str(sub.name))] = code
    return table


def subdivision_code(country: str, value: str) -> str | None:
    """A US state's or Canadian province's code from its name or code; None otherwise."""
    if country not in STATE_PICKLIST_COUNTRIES:
        return None
    return _subdivisions(country).get(_folded(value))


def _annual_revenue(draft: _Draft, value: Any) -> None:
    """Account.AnnualRevenue is Currency(18, 0): whole units, rounded half-up, with a note
    when the source had cents."""
    amount = draft.amount("AnnualRevenue", value)
    if amount is None:
        return
    whole = amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if abs(whole) >= Decimal(10) ** ANNUAL_REVENUE_PRECISION:
        draft.note(f"AnnualRevenue: {value!r} exceeds the field's 18 digits; left empty")
        return
    draft.put("AnnualRevenue", int(whole))
    if whole != amount:
        draft.note(f"AnnualRevenue: {value!r} rounded half-up to {int(whole)} (whole units)")


def _email(draft: _Draft, name: str, value: Any) -> None:
    draft.email(name, value, EMAIL_LENGTH)


def _names(draft: _Draft, first: Any, last: Any) -> None:
    draft.names(first, last, first_field="FirstName", last_field="LastName")


def _subject(draft: _Draft, value: Any) -> None:
    draft.required_text("Subject", value, NO_SUBJECT)


def _recurrence(draft: _Draft, rule: Any) -> None:
    """Flag a recurring activity for admin review: Salesforce models recurrence differently."""
    recurring = not blank(rule)
    draft.put("Is_Recurring__c", recurring)
    if recurring:
        draft.text("Recurrence_Rule__c", rule)
        draft.note(f"recurring in BackDocket ({rule}); flagged for admin review")


# --- custom field values -----------------------------------------------------------------


def _convert_custom(kind: str, value: Any, options: Sequence[str]) -> JsonValue:
    """A custom field value in its Salesforce form; ValueError when it is not of ``kind``."""
    if kind == "number":
        return _bounded(tx.parse_number(value), NUMBER_PRECISION - NUMBER_SCALE)
    if kind == "currency":
        return _bounded(tx.money(value), CURRENCY_PRECISION - CURRENCY_SCALE)
    if kind == "date":
        return tx.iso_date(tx.parse_date(value))
    if kind == "datetime":
        return tx.iso_datetime(tx.parse_datetime(value))
    if kind == "boolean":
        return tx.parse_bool(value)
    if kind == "picklist":
        if str(value) not in options or isinstance(value, bool | list | dict):
            raise ValueError(f"{value!r} is not one of the field's options")
        return str(value)
    if kind == "multi_picklist":
        return _multi_picklist(value, options)
    if kind == "computed":
        return _computed(value)
    if kind == "formatted_text" and isinstance(value, str):
        return tx.html_to_text(value)
    if isinstance(value, bool | list | dict) or value is None:
        raise ValueError(f"{value!r} is not text")
    return str(value)


def _bounded(number: int | float, digits: int) -> int | float:
    """``number`` if it fits the field's digits before the decimal point."""
    if abs(number) >= 10**digits:
        raise ValueError(f"{number!r} has more than {digits} digits")
    return number


def _multi_picklist(value: Any, options: Sequence[str]) -> list[str]:
    chosen = value.split(";") if isinstance(value, str) else value
    if not isinstance(chosen, list) or not chosen:
        raise ValueError(f"{value!r} is not a list of options")
    unknown = [v for v in chosen if str(v) not in options]
    if unknown:
        raise ValueError(f"{unknown!r} not among the field's options")
    return list(dict.fromkeys(str(v) for v in chosen))


def _computed(value: Any) -> str:
    if isinstance(value, str) and COMPUTED_ERROR.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is an error result, not a value")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite value")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict) or value is None:
        raise ValueError(f"{value!r} is not a single value")
    return str(value)


_DEFINITIONS_SEEN: dict[int, tuple[object, dict[str, tuple[str, tuple[str, ...]]]]] = {}


def _definitions_by_key(
    definitions: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """key → (type, options) of an entity's definitions, worked out once per run.

    The context's definition tuples live as long as the run, so they are keyed by
    identity (the object itself is kept, so the id cannot be reused).
    """
    seen = _DEFINITIONS_SEEN.get(id(definitions))
    if seen is not None and seen[0] is definitions:
        return seen[1]
    table = {
        str(d["key"]): (str(d.get("type")), tuple(str(o) for o in d.get("options") or ()))
        for d in definitions
        if d.get("key")
    }
    if len(_DEFINITIONS_SEEN) >= 64:  # a long-lived process runs many migrations
        _DEFINITIONS_SEEN.clear()
    _DEFINITIONS_SEEN[id(definitions)] = (definitions, table)
    return table


def _home_keys(home: str, ctx: MappingContext, own: Iterable[str] = ()) -> tuple[str, ...]:
    """Every definition key whose field lands on ``home``: tasks' and events' together on
    Activity, so both name their fields as the plan did."""
    keys = set(own)
    for entity, target in CUSTOM_FIELD_OBJECTS.items():
        if target == home:
            keys.update(_definition_keys(ctx.custom_fields.get(entity, ())))
    return tuple(sorted(keys))


def _custom_fields(draft: _Draft, entity: str, record: Record, ctx: MappingContext) -> None:
    """Every custom field value that converts to its declared type; the rest are noted."""
    values = record.get("custom_fields")
    if not isinstance(values, Mapping) or not values:
        return
    definitions = _definitions_by_key(ctx.custom_fields.get(entity, ()))
    home = field_home(draft.object)
    names = _custom_field_names(home, _home_keys(home, ctx, definitions))
    for key, value in values.items():
        known = definitions.get(key)
        if known is None:
            draft.note(f"custom field {key}: no definition in BackDocket; not migrated")
            continue
        if value is None or value == "" or value == []:
            continue
        kind, options = known
        name = field_target(ctx, entity, key)
        if name == "":
            draft.note(f"custom field {key}: not migrated (the confirmed mapping file says so)")
            continue
        name = name or names[key]
        try:
            converted = _convert_custom(kind, value, options)
        except ValueError:
            draft.note(f"{name}: {value!r} is not a valid {kind} ({key}); left empty")
            continue
        converted = _mapped_options(ctx, entity, key, converted)
        limit = CUSTOM_FIELD_TYPES.get(kind, CUSTOM_FIELD_FALLBACK_TYPE)[1]
        if isinstance(converted, str) and limit is not None:
            draft.text(name, converted, limit)
        else:
            draft.put(name, converted)


def _mapped_options(ctx: MappingContext, entity: str, key: str, value: JsonValue) -> JsonValue:
    """A custom picklist's option(s) through the confirmed file's map for the field, if it
    has one (the schema plan's own picklist takes BackDocket's options as they are)."""
    values = custom_values(ctx, entity, key)
    if values is None:
        return value
    if isinstance(value, list):
        return list(dict.fromkeys(str(values.get(v, v)) for v in value))
    return str(values.get(str(value), str(value))) if isinstance(value, str) else value


# --- per-collection transforms -----------------------------------------------------------


def unassigned_account(owner: str | None = None) -> Payload:
    """The 'Unassigned Account' that contacts without a company attach to."""
    fields: dict[str, JsonValue] = {"Name": UNASSIGNED_ACCOUNT_NAME}
    if owner:
        fields["OwnerId"] = owner
    return Payload(
        "Account",
        UNASSIGNED_ACCOUNT_ID,
        fields,
        notes=("holds contacts that had no company in BackDocket",),
    )


def _company(record: Record, ctx: MappingContext) -> TransformResult:
    draft = _Draft("Account")
    if draft.text("Name", record.get("name")) is None:
        return Rejection(
            "failed",
            "missing_name",
            f"company {record['id']} has no name; Account.Name is required",
        )
    if not blank(record.get("domain")):
        draft.text("Website", tx.website(str(record["domain"])))
    _address(draft, "Billing", record.get("billing_address"), ctx)
    _industry(draft, record.get("industry"), ctx)
    _employees(draft, record.get("employee_count"))
    _annual_revenue(draft, record.get("annual_revenue"))
    draft.pick_map("BackDocket_Kind__c", record.get("kind"), ACCOUNT_KIND, ctx)
    draft.timestamp("Source_Created_Date__c", record.get("created_at"))
    draft.put("OwnerId", ctx.fallback_owner)
    parent = record.get("parent_company_id")
    if parent is not None and str(parent) == str(record["id"]):
        draft.note("ParentId: the company is its own parent in BackDocket; left empty")
    else:
        draft.ref("ParentId", "companies", parent, deferred=True)
    _custom_fields(draft, "companies", record, ctx)
    return [draft.build(external_id("companies", record["id"]))]


def _industry(draft: _Draft, value: Any, ctx: MappingContext) -> None:
    if blank(value):
        return
    fallback = str(INDUSTRY.fallback_in(ctx) or "")
    mapped = INDUSTRY.values(ctx).get(str(value).strip().lower())
    if mapped is None:
        draft.note(f"Industry: {value!r} has no Salesforce Industry value; set to {fallback!r}")
    draft.put("Industry", str(mapped or fallback))


def _employees(draft: _Draft, value: Any) -> None:
    if value is None or value == "":
        return
    try:
        count = tx.parse_number(value)
    except ValueError:
        count = -1
    if not isinstance(count, int) or not 0 <= count <= MAX_EMPLOYEES:
        draft.note(f"NumberOfEmployees: {value!r} is not a whole number of employees; left empty")
        return
    draft.put("NumberOfEmployees", count)


def _relation(contact_id: str, link: CompanyLink) -> Payload:
    """An AccountContactRelation for a company beyond the contact's primary one.

    Its AccountId and ContactId are create-only, and its external id is the pair itself,
    so a link that changes in BackDocket is a new relation (the old one stays, as the
    link did exist); a relation never needs either id changed. Should a rerun still
    resolve the same pair to another id, the loader leaves it out and notes it."""
    draft = _Draft("AccountContactRelation")
    draft.put("IsActive", True)
    if link.linked_at is not None:
        draft.put("StartDate", tx.iso_date(link.linked_at.date()))
    draft.ref("AccountId", "companies", link.company_id)
    draft.ref("ContactId", "contacts", contact_id)
    return draft.build(f"{contact_id}:{link.company_id}")


def _contact(record: Record, ctx: MappingContext) -> TransformResult:
    contact_id = str(record["id"])
    draft = _Draft("Contact")
    _names(draft, record.get("first_name"), record.get("last_name"))
    _email(draft, "Email", record.get("email"))
    draft.text("Phone", record.get("phone"))
    draft.text("MobilePhone", record.get("mobile"))
    _address(draft, "Mailing", record.get("address"), ctx)
    draft.text("Bar_Number__c", record.get("bar_number"))
    draft.pick_map("Intake_Status__c", record.get("intake_status"), CONTACT_INTAKE_STATUS, ctx)
    draft.timestamp("Source_Created_Date__c", record.get("created_at"))
    draft.owner(ctx, record.get("owner_id"), "owner")
    others = _account(draft, record.get("company_links"))
    _custom_fields(draft, "contacts", record, ctx)
    return [draft.build(external_id("contacts", contact_id))] + [
        _relation(contact_id, link) for link in others
    ]


def _account(draft: _Draft, raw_links: Any) -> list[CompanyLink]:
    """Set the contact's primary AccountId; returns the links that become relations.

    Salesforce gives a contact exactly one AccountId: the most recently linked
    company, or the Unassigned Account when BackDocket linked none.
    """
    links = company_links(draft, raw_links)
    if not links:
        draft.refs["AccountId"] = Ref("companies", UNASSIGNED_ACCOUNT_ID, "Account")
        draft.note(f"AccountId: no company in BackDocket; attached to {UNASSIGNED_ACCOUNT_NAME}")
        return []
    primary = primary_link(links)
    draft.ref("AccountId", "companies", primary.company_id)
    others = [link for link in links if link.company_id != primary.company_id]
    if others:
        draft.note(
            f"AccountId: {len(links)} companies in BackDocket; primary {primary.company_id} "
            f"(most recently linked), the other {len(others)} as Account Contact Relations"
        )
    return others


def dedupe_key(record: Record) -> str | None:
    """The de-duplication key of a contact (or intake prospect): its email, trimmed and
    lowercased. The loader reports records sharing a key; the transform keeps them all."""
    email = record.get("email", record.get("prospect_email"))
    key = tx.email_key(email)
    return key if key is not None and tx.is_email(key) else None


def _matter(record: Record, ctx: MappingContext) -> TransformResult:
    draft = _Draft("Case_Matter__c")
    number = draft.text("Case_Number__c", record.get("number"))
    name = draft.text("Case_Name__c", record.get("name"))
    draft.text("Name", number or name or record["id"])
    draft.pick_map("Case_Type__c", record.get("claim_type"), CASE_TYPE, ctx)
    draft.pick_map("Case_Category__c", record.get("case_type"), CASE_CATEGORY, ctx)
    draft.pick_map("Status__c", record.get("status"), MATTER_STATUS, ctx)
    for target, source in (
        ("Filed_Date__c", "filed_date"),
        ("Opened_Date__c", "opened_date"),
        ("Closed_Date__c", "closed_date"),
        ("Statute_Of_Limitations__c", "statute_of_limitations"),
    ):
        draft.date(target, record.get(source))
    draft.money("Claim_Amount__c", record.get("claim_amount"))
    draft.money("Estimated_Fees__c", record.get("estimated_fees"))
    draft.pick_map("Billing_Type__c", record.get("billing_type"), BILLING_TYPE, ctx)
    draft.text("Case_Description__c", record.get("description"))
    draft.text("Court_Jurisdiction__c", record.get("court_jurisdiction"))
    draft.pick_map("Practice_Area__c", record.get("practice_area"), PRACTICE_AREA, ctx)
    _attorney(draft, ctx, record.get("assigned_attorney_id"))
    draft.ref("Client_Account__c", "companies", record.get("client_company_id"))
    draft.ref("Primary_Contact__c", "contacts", record.get("primary_contact_id"))
    draft.timestamp("Source_Created_Date__c", record.get("created_at"))
    _custom_fields(draft, "matters", record, ctx)
    return [draft.build(external_id("matters", record["id"]))]


def _attorney(draft: _Draft, ctx: MappingContext, attorney: Any) -> None:
    """The assigned attorney is both the owner and Assigned_Attorney__c (a User id)."""
    owner = draft.resolve_owner(ctx, attorney, "assigned attorney", "OwnerId")
    draft.put("OwnerId", owner)
    if attorney is not None and str(attorney) in ctx.owners:
        draft.put("Assigned_Attorney__c", owner)


def _matter_party(record: Record, ctx: MappingContext) -> TransformResult:
    missing = [k for k in ("matter_id", "contact_id") if blank(record.get(k))]
    if missing:
        return Rejection(
            "failed",
            "missing_parent",
            f"matter party {record['id']} has no {' or '.join(missing)}; "
            "Case_Party__c needs both its matter and its contact",
        )
    draft = _Draft("Case_Party__c")
    draft.ref("Case_Matter__c", "matters", record["matter_id"])
    draft.ref("Contact__c", "contacts", record["contact_id"])
    draft.pick_map("Role__c", record.get("role"), PARTY_ROLE, ctx)
    draft.put("Is_Primary__c", bool(record.get("is_primary")))
    _custom_fields(draft, "matter_parties", record, ctx)
    return [draft.build(external_id("matter_parties", record["id"]))]


def _claim(record: Record, ctx: MappingContext) -> TransformResult:
    if blank(record.get("matter_id")):
        return Rejection(
            "failed",
            "missing_parent",
            f"claim {record['id']} has no matter_id; Claim__c needs its matter",
        )
    draft = _Draft("Claim__c")
    draft.text("Name", record.get("name") or record["id"])
    draft.ref("Case_Matter__c", "matters", record["matter_id"])
    draft.pick_map("Claim_Kind__c", record.get("claim_kind"), CLAIM_KIND, ctx)
    draft.money("Amount__c", record.get("amount"))
    draft.put("Revenue_Generating__c", bool(record.get("revenue_generating")))
    draft.pick_map("Status__c", record.get("status"), CLAIM_STATUS, ctx)
    draft.date("Close_Date__c", record.get("close_date"))
    _custom_fields(draft, "claims", record, ctx)
    return [draft.build(external_id("claims", record["id"]))]


def _intake_case_forms(ctx: MappingContext) -> frozenset[str]:
    forms = ctx.settings.get("intake_case_forms", DEFAULT_INTAKE_CASE_FORMS)
    return frozenset({forms} if isinstance(forms, str) else (str(f) for f in forms))


def _intake(record: Record, ctx: MappingContext) -> TransformResult:
    """A prospect form becomes a Lead; a client intake form becomes a Case_Matter__c."""
    if str(record.get("form_type")) in _intake_case_forms(ctx):
        return [_intake_matter(record, ctx)]
    return [_intake_lead(record, ctx)]


def _intake_common(draft: _Draft, record: Record, ctx: MappingContext) -> None:
    draft.text("Intake_Form_Type__c", record.get("form_type"))
    draft.pick_map("Intake_Status__c", record.get("status"), INTAKE_STATUS, ctx)
    draft.pick_map("Referral_Source__c", record.get("referral_source"), REFERRAL_SOURCE, ctx)
    draft.owner(ctx, record.get("assigned_to_id"), "assignee")
    draft.ref("Converted_Matter__c", "matters", record.get("converted_matter_id"))


def _intake_lead(record: Record, ctx: MappingContext) -> Payload:
    draft = _Draft("Lead")
    prospect = plain(record.get("prospect_name")) or ""
    first, last = tx.split_name(prospect)
    _names(draft, first, last)
    company = f"{prospect or UNKNOWN_NAME} (individual)"
    draft.text("Company", company)
    draft.note(f"Company: required by Salesforce, BackDocket has none; set to {company!r}")
    _email(draft, "Email", record.get("prospect_email"))
    draft.text("Phone", record.get("prospect_phone"))
    draft.pick_map("LeadSource", record.get("referral_source"), LEAD_SOURCE, ctx)
    draft.pick_map("Status", record.get("status"), LEAD_STATUS, ctx)
    if record.get("status") == "converted":
        draft.note("Status: converted in BackDocket; Salesforce lead conversion is not replayed")
    draft.pick_map("Case_Type_Interest__c", record.get("case_type_interest"), CASE_TYPE, ctx)
    draft.timestamp("Source_Submitted_Date__c", record.get("submitted_at"))
    _intake_common(draft, record, ctx)
    return draft.build(external_id("intake_submissions", record["id"]))


def _intake_matter(record: Record, ctx: MappingContext) -> Payload:
    draft = _Draft("Case_Matter__c")
    prospect = draft.text("Case_Name__c", record.get("prospect_name"))
    draft.text("Name", f"Intake: {prospect or record['id']}")
    draft.put("Status__c", INTAKE_MATTER_STATUS)
    draft.pick_map("Case_Type__c", record.get("case_type_interest"), CASE_TYPE, ctx)
    draft.timestamp("Opened_Date__c", record.get("submitted_at"), as_date=True)
    draft.timestamp("Source_Created_Date__c", record.get("submitted_at"))
    _email(draft, "Prospect_Email__c", record.get("prospect_email"))
    draft.text("Prospect_Phone__c", record.get("prospect_phone"))
    _intake_common(draft, record, ctx)
    return draft.build(external_id("intake_submissions", record["id"]))


def _task(record: Record, ctx: MappingContext) -> TransformResult:
    draft = _Draft("Task")
    _subject(draft, record.get("subject"))
    draft.text("Description", record.get("description"))
    draft.pick_map("Status", record.get("status"), TASK_STATUS, ctx)
    priority = record.get("priority")
    draft.pick_map("Priority", priority, TASK_PRIORITY, ctx)
    if priority == "urgent":
        draft.note("Priority: urgent has no Salesforce equivalent; set to 'High'")
    draft.date("ActivityDate", record.get("due_date"))
    draft.owner(ctx, record.get("assignee_id"), "assignee")
    draft.ref("WhoId", "contacts", record.get("contact_id"))
    draft.ref("WhatId", "matters", record.get("matter_id"))
    _recurrence(draft, record.get("recurrence"))
    if draft.text("Approval_Request__c", record.get("approval_request")):
        draft.note("approval request kept as text; rebuild the approval process in Salesforce")
    _custom_fields(draft, "tasks", record, ctx)
    return [draft.build(external_id("tasks", record["id"]))]


def _event_window(record: Record) -> tuple[datetime, datetime] | Rejection:
    """(start, end) of an event, or why Salesforce would reject it."""
    try:
        start = tx.parse_datetime(record.get("start_at"))
        end = tx.parse_datetime(record.get("end_at"))
    except ValueError:
        return Rejection(
            "failed",
            "invalid_time",
            f"event {record['id']} needs start_at and end_at timestamps; got "
            f"{record.get('start_at')!r} and {record.get('end_at')!r}",
        )
    if end < start:
        return Rejection(
            "failed",
            "end_before_start",
            f"event {record['id']} ends ({record['end_at']}) "
            f"before it starts ({record['start_at']})",
        )
    if end - start > MAX_EVENT_DURATION:
        return Rejection(
            "failed",
            "event_too_long",
            f"event {record['id']} lasts {end - start}; Salesforce events are at most "
            f"{MAX_EVENT_DURATION.days} days",
        )
    return start, end


def _event(record: Record, ctx: MappingContext) -> TransformResult:
    window = _event_window(record)
    if isinstance(window, Rejection):
        return window
    start, end = window
    draft = _Draft("Event")
    _subject(draft, record.get("subject"))
    all_day = bool(record.get("all_day"))
    draft.put("IsAllDayEvent", all_day)
    if all_day:
        _all_day(draft, start, end)
    else:
        draft.put("StartDateTime", tx.iso_datetime(start))
        draft.put("EndDateTime", tx.iso_datetime(end))
    draft.text("Location", record.get("location"))
    draft.text("Description", record.get("description"))
    draft.owner(ctx, record.get("owner_id"), "owner")
    draft.ref("WhoId", "contacts", record.get("contact_id"))
    draft.ref("WhatId", "matters", record.get("matter_id"))
    _recurrence(draft, record.get("recurrence"))
    draft.text("External_Attendees__c", _attendees(record.get("attendees")))
    return [draft.build(external_id("events", record["id"]))]


def _all_day(draft: _Draft, start: datetime, end: datetime) -> None:
    """Salesforce all-day events run from the start day to an inclusive last day (times
    ignored), where BackDocket's end is exclusive (the next midnight)."""
    last_day = (end - timedelta(microseconds=1)).date() if end > start else start.date()
    first = datetime.combine(start.date(), datetime.min.time(), UTC)
    draft.put("StartDateTime", tx.iso_datetime(first))
    draft.put("EndDateTime", tx.iso_datetime(datetime.combine(last_day, first.time(), UTC)))


def _attendees(attendees: Any) -> str | None:
    lines = [person_line(a) for a in attendees] if isinstance(attendees, list) else []
    return "\n".join(line for line in lines if line) or None


def _esignature(record: Record, ctx: MappingContext) -> TransformResult:
    draft = _Draft("Task")
    document = plain(record.get("document_name")) or ""
    draft.text("Subject", f"E-signature: {document or '(unnamed document)'}")
    status = record.get("status")
    draft.pick_map("Status", status, ESIGN_TASK_STATUS, ctx)
    draft.pick_map("DocuSign_Status__c", status, ESIGN_STATUS, ctx)
    signers = record.get("signers")
    lines = [person_line(s, status=True) for s in signers] if isinstance(signers, list) else []
    draft.text("Signer_List__c", "\n".join(line for line in lines if line))
    draft.text("DocuSign_Envelope_Id__c", record.get("envelope_id"))
    draft.text("Signature_Document__c", document)
    draft.timestamp("ActivityDate", record.get("sent_at"), as_date=True)
    draft.text("Description", _esignature_description(record))
    draft.ref("WhatId", "matters", record.get("matter_id"))
    draft.put("OwnerId", ctx.fallback_owner)
    return [draft.build(external_id("esignature_requests", record["id"]))]


def _esignature_description(record: Record) -> str:
    """The request's audit trail in words: when it was sent and completed, which document."""
    facts = (
        ("Sent", record.get("sent_at")),
        ("Completed", record.get("completed_at")),
        ("Envelope", record.get("envelope_id")),
        ("Document", record.get("document_name")),
        ("BackDocket document id", record.get("document_id")),
    )
    lines = [f"{label}: {value}" for label, value in facts if value]
    lines.append("Recreate the envelope in DocuSign for Salesforce to sign again.")
    return "\n".join(lines)


"""Characters of a note's text that follow ``Note: `` in its Task subject."""


def _note(record: Record, ctx: MappingContext) -> TransformResult:
    body = record.get("body")
    text = tx.html_to_text(body, inline_image) if isinstance(body, str) else ""
    draft = _Draft("Task")
    draft.text("Subject", note_subject(tx.clean_text(text)[0]))
    draft.text("Description", text)
    draft.put("Status", TASK_STATUS.values(ctx).get("completed") or TASK_STATUS_MAP["completed"])
    draft.timestamp("ActivityDate", record.get("created_at"), as_date=True)
    draft.owner(ctx, record.get("author_id"), "author")
    draft.ref("WhoId", "contacts", record.get("contact_id"))
    draft.ref("WhatId", "matters", record.get("matter_id"))
    return [draft.build(external_id("notes", record["id"]))]


def _document(record: Record, ctx: MappingContext) -> TransformResult:
    filename = str(record.get("filename") or record["id"])
    size = record.get("size_bytes")
    sha256 = record.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or blank(sha256):
        return Rejection(
            "failed",
            "no_content",
            f"{filename} has no usable size_bytes/sha256 ({size!r}, {sha256!r}); "
            "its content cannot be uploaded",
        )
    limit = int(ctx.settings.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
    if size > limit:
        return Rejection(
            "skipped",
            "file_too_large",
            f"{filename} is {megabytes(size)}, over Salesforce's {limit / (1024 * 1024):g} MB "
            f"per-file limit; attached to {attached_to(record)}",
        )
    mime = str(record.get("mime_type") or "application/octet-stream")
    draft = _Draft("ContentVersion")
    draft.text("Title", filename.rsplit(".", 1)[0] if "." in filename[1:] else filename)
    draft.text("PathOnClient", filename)
    draft.timestamp("Original_Upload_Date__c", record.get("uploaded_at"))
    draft.text("Original_MIME_Type__c", mime)
    _version(draft, record.get("version"))
    draft.owner(ctx, record.get("uploaded_by_id"), "uploader")
    _first_location(draft, record)
    _custom_fields(draft, "documents", record, ctx)
    file = FileRef(str(sha256), size, filename, mime)
    return [draft.build(external_id("documents", record["id"]), file)]


def _version(draft: _Draft, value: Any) -> None:
    if value is None:
        return
    try:
        version = tx.parse_number(value)
    except ValueError:
        draft.note(f"Source_Version__c: {value!r} is not a version number; left empty")
        return
    draft.put("Source_Version__c", version)


def _first_location(draft: _Draft, record: Record) -> None:
    """Files attach to their matter when they have one, else to their contact."""
    if not blank(record.get("matter_id")):
        draft.ref("FirstPublishLocationId", "matters", record["matter_id"])
    elif not blank(record.get("contact_id")):
        draft.ref("FirstPublishLocationId", "contacts", record["contact_id"])
    else:
        draft.note("FirstPublishLocationId: no matter or contact in BackDocket; file unlinked")


def _definition(record: Record, ctx: MappingContext) -> TransformResult:
    """Definitions become the schema plan; the reason says where each one lands."""
    entity, key, kind = (str(record.get(k)) for k in ("entity", "key", "type"))
    target = CUSTOM_FIELD_OBJECTS.get(entity)
    if target is None:
        return Rejection(
            "skipped",
            "no_destination_object",
            f"custom field {key} of {entity} has no destination object; its values are not "
            "migrated",
        )
    api_name = _custom_field_names(target, _home_keys(target, ctx, (key,)))[key]
    sf_type = CUSTOM_FIELD_TYPES.get(kind, CUSTOM_FIELD_FALLBACK_TYPE)[0]
    reason = f"custom field {key} ({kind}) becomes {target}.{api_name} ({sf_type})"
    if kind == "computed":
        reason += "; it holds BackDocket's computed value as text, rebuild it as a formula"
    elif kind not in CUSTOM_FIELD_TYPES:
        reason += f"; type {kind!r} is unknown, values load as text"
    return Rejection("skipped", "schema_definition", reason)


_TRANSFORMS: Mapping[str, RecordTransform] = {
    "companies": _company,
    "contacts": _contact,
    "matters": _matter,
    "matter_parties": _matter_party,
    "claims": _claim,
    "intake_submissions": _intake,
    "tasks": _task,
    "events": _event,
    "esignature_requests": _esignature,
    "notes": _note,
    "documents": _document,
    "custom_field_definitions": _definition,
    "users": not_loaded(*NOT_LOADED["users"]),
    "workflows": not_loaded(*NOT_LOADED["workflows"]),
    "merge_templates": not_loaded(*NOT_LOADED["merge_templates"]),
}


def transform(collection: str, record: Record, ctx: MappingContext) -> TransformResult:
    """The Salesforce payloads for one staged BackDocket record, or why there are none."""
    return dispatch(_TRANSFORMS, collection, record, ctx)
