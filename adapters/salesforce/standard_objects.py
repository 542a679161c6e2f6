"""The standard objects of a fresh Sales Cloud org, and how a schema file's custom objects join.

A simulator seeded only with the custom schema would accept anything on Contact or
Task; these specs give it the real required fields, lengths, restricted picklists and
lookups, so a load that would fail in a real org fails in the simulator too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any

import pycountry

from adapters.salesforce.schema import ACTIVITY, FieldSpec, FieldType, ObjectSpec, OrgSchema

INDUSTRY_VALUES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
)
"""Salesforce's standard Account.Industry values (unrestricted picklist)."""

ACCOUNT_TYPES = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CLOSED_TASK_STATUSES = frozenset({"Completed"})
"""TaskStatus values with IsClosed true in a fresh org: Task.IsClosed follows Status."""
TASK_PRIORITIES = ("High", "Normal", "Low")
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
EVENT_SUBTYPES = ("Event",)
CALL_TYPES = ("Internal", "Inbound", "Outbound")
ACTIVITY_TYPES = ("Call", "Email", "Meeting", "Other")
SHOW_AS = ("Busy", "OutOfOffice", "Free", "WorkingElsewhere")
SUBJECT_VALUES = ("Call", "Send Letter", "Send Quote", "Other")
"""Task/Event.Subject is a combobox: these suggestions, and any text up to 255."""
CONTENT_LOCATIONS = ("S", "E", "L")
"""ContentVersion.ContentLocation: Salesforce, external, social (Object Reference)."""
SHARE_TYPES = ("V", "C", "I")
"""ContentDocumentLink.ShareType: viewer, collaborator, inferred (destinations.md §1.8)."""
VISIBILITIES = ("AllUsers", "InternalUsers", "SharedUsers")
ACR_ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)

CUSTOM_PREFIX_START = "a00"
"""Custom objects get key prefixes a00, a01, … in name order unless the schema file pins one."""

LONG_TEXT_LENGTH = 32_000
"""Task/Event Description and the Bulk API's max field size (destinations.md §1.2)."""

NOT_CREATEABLE = frozenset({"User", "ContentDocument"})
"""Objects the API cannot insert: users are provisioned, documents come from ContentVersion."""

DEFAULTS: Mapping[tuple[str, str], Any] = {
    ("Lead", "Status"): "Open - Not Contacted",
    ("Task", "Status"): "Not Started",
    ("Task", "Priority"): "Normal",
    ("Task", "TaskSubtype"): "Task",
    ("Event", "EventSubtype"): "Event",
    ("Event", "ShowAs"): "Busy",
    ("ContentDocumentLink", "ShareType"): "V",
    ("ContentVersion", "ContentLocation"): "S",
    ("ContentDocumentLink", "Visibility"): "AllUsers",
    ("AccountContactRelation", "IsActive"): True,
    ("User", "IsActive"): True,
    ("Case", "Status"): "New",
    ("Contract", "Status"): "Draft",
}
"""Values Salesforce fills in on create when the caller leaves the field out."""

PAIR_KEYS: Mapping[str, tuple[str, str]] = {
    "AccountContactRelation": ("AccountId", "ContactId"),
    "ContentDocumentLink": ("ContentDocumentId", "LinkedEntityId"),
}
"""Junction objects that allow one row per pair (a second one is DUPLICATE_VALUE)."""

SYSTEM_FIELDS = frozenset(
    {
        "Id",
        "IsDeleted",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
    }
)

_POLYMORPHIC_ANY = "*"
"""Marker in ``reference_to`` for lookups that may point at any record-holding object."""
_WHAT_TARGETS = "*activities"
"""Marker for Task/Event.WhatId: exactly the objects that take activities — standard ones
that do and custom objects with "Allow Activities" (``CustomObject.enableActivities``,
https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customobject.htm).
A WhatId to any other object's record is FIELD_INTEGRITY_EXCEPTION "Related To ID: id value
of incorrect type: <id>" on [WhatId], as real orgs answer it (the field's label is "Related
To ID"; the code, words and field as quoted from a real org in public Salesforce
integrations, e.g. a DmlException "FIELD_INTEGRITY_EXCEPTION, Related To ID: id value of
incorrect type: a16…: [WhatId]" for a custom object without activities)."""
WHAT_LABEL = "Related To ID"
"""Task/Event.WhatId's label in describe (Object Reference, Task: "Related To")."""
WHO_LABEL = "Name ID"
"""Task/Event.WhoId's label in describe (Object Reference, Task: "Name")."""

STATE_PICKLIST_COUNTRIES = frozenset({"US", "CA", "AU", "BR", "CN", "IN", "IE", "IT", "MX", "JP"})
"""Countries whose states a fresh org lists when State and Country/Territory Picklists are
on (the others take no state). Their states are pycountry's top-level subdivisions — an
approximation of Salesforce's list (its Italy has provinces, not regions)."""

ADDRESS_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "Account": ("Billing", "Shipping"),
    "Contact": ("Mailing", "Other"),
    "Lead": ("",),
}
"""Compound address fields of the standard objects the simulator knows (Object Reference:
Account, Contact, Lead)."""


class SchemaError(ValueError):
    """A schema file a real org could not have: the admin's deploy would fail."""


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def label_for(name: str) -> str:
    """A label from an API name: ``Case_Type__c`` → "Case Type", ``OwnerId`` → "Owner ID"."""
    base = name.removesuffix("__c")
    if base == "Id":
        return "Record ID"
    if base.endswith("Id"):
        base = base[:-2] + " ID"
    return _CAMEL.sub(" ", base.replace("_", " ")).strip()


def _f(name: str, kind: FieldType, length: int | None = None, **options: Any) -> FieldSpec:
    return FieldSpec(name=name, type=kind, label=label_for(name), length=length, **options)


def _text(name: str, length: int = 255, **options: Any) -> FieldSpec:
    return _f(name, "string", length, **options)


def _picklist(name: str, values: tuple[str, ...], restricted: bool = False) -> FieldSpec:
    return _f(name, "picklist", 255, picklist_values=values, restricted=restricted)


def _ref(name: str, *targets: str, createable: bool = True, updateable: bool = True) -> FieldSpec:
    return _f(
        name,
        "reference",
        18,
        reference_to=targets,
        createable=createable,
        updateable=updateable,
    )


def _read_only(name: str, kind: FieldType, length: int | None = None, **options: Any) -> FieldSpec:
    return _f(name, kind, length, createable=False, updateable=False, **options)


def _system() -> tuple[FieldSpec, ...]:
    return (
        _read_only("Id", "id", 18),
        _read_only("IsDeleted", "boolean"),
        _read_only("CreatedDate", "datetime"),
        _read_only("CreatedById", "reference", 18, reference_to=("User",)),
        _read_only("LastModifiedDate", "datetime"),
        _read_only("LastModifiedById", "reference", 18, reference_to=("User",)),
        _read_only("SystemModstamp", "datetime"),
    )


def _address(prefix: str) -> tuple[FieldSpec, ...]:
    return (
        _f(f"{prefix}Street", "textarea", 255),
        _text(f"{prefix}City", 40),
        _text(f"{prefix}State", 80),
        _text(f"{prefix}PostalCode", 20),
        _text(f"{prefix}Country", 80),
    )


@cache
def country_names() -> dict[str, str]:
    """ISO code → integration value (by default the ISO name, as Salesforce ships them:
    https://help.salesforce.com/s/articleView?id=sf.admin_state_country_picklists_integ_values.htm)."""
    return {c.alpha_2: c.name for c in pycountry.countries}


@cache
def state_names(country: str) -> dict[str, str]:
    """State code (without the country part) → integration value, for one country."""
    if country not in STATE_PICKLIST_COUNTRIES:
        return {}
    return {
        s.code.split("-", 1)[1]: s.name
        for s in pycountry.subdivisions
        if s.country_code == country and s.parent_code is None
    }


def _address_codes(prefix: str) -> tuple[FieldSpec, ...]:
    """``…CountryCode`` and ``…StateCode``: restricted picklists of ISO codes."""
    states = sorted({code for country in STATE_PICKLIST_COUNTRIES for code in state_names(country)})
    return (
        _f(
            f"{prefix}CountryCode",
            "picklist",
            10,
            picklist_values=tuple(sorted(country_names())),
            restricted=True,
        ),
        _f(f"{prefix}StateCode", "picklist", 10, picklist_values=tuple(states), restricted=True),
    )


def _with_address_codes(spec: ObjectSpec) -> ObjectSpec:
    codes = tuple(f for p in ADDRESS_PREFIXES.get(spec.name, ()) for f in _address_codes(p))
    return replace(spec, fields=spec.fields + codes) if codes else spec


def _object(
    name: str, prefix: str, *fields: FieldSpec, label: str = "", activities: bool = False
) -> ObjectSpec:
    return ObjectSpec(name, label or label_for(name), False, _system() + fields, prefix, activities)


def _account() -> ObjectSpec:
    return _object(
        "Account",
        "001",
        _text("Name", required=True),
        _f("Website", "url", 255),
        _picklist("Industry", INDUSTRY_VALUES),
        _picklist("Type", ACCOUNT_TYPES),
        _ref("ParentId", "Account"),
        *_address("Billing"),
        *_address("Shipping"),
        _f("Phone", "phone", 40),
        _f("NumberOfEmployees", "int", precision=8, scale=0),
        _f("AnnualRevenue", "currency", precision=18, scale=0),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _ref("OwnerId", "User"),
        activities=True,
    )


def _person_name(last_required: bool) -> tuple[FieldSpec, ...]:
    return (
        _text("LastName", 80, required=last_required),
        _text("FirstName", 40),
        _read_only("Name", "string", 121),
    )


def _contact() -> ObjectSpec:
    return _object(
        "Contact",
        "003",
        *_person_name(True),
        _f("Email", "email", 80),
        _f("Phone", "phone", 40),
        _f("MobilePhone", "phone", 40),
        *_address("Mailing"),
        *_address("Other"),
        _ref("AccountId", "Account"),
        _ref("OwnerId", "User"),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _text("Title", 128),
    )


def _lead() -> ObjectSpec:
    return _object(
        "Lead",
        "00Q",
        *_person_name(True),
        _text("Company", required=True),
        _f("Email", "email", 80),
        _f("Phone", "phone", 40),
        _picklist("Status", LEAD_STATUSES, restricted=True),
        _picklist("LeadSource", LEAD_SOURCES),
        *_address(""),
        _ref("OwnerId", "User"),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
    )


def _activity_common() -> tuple[FieldSpec, ...]:
    """Fields Task and Event share (Object Reference, Task and Event:
    https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm,
    .../sforce_api_objects_event.htm)."""
    return (
        _f("Subject", "combobox", 255, picklist_values=SUBJECT_VALUES),
        _f("ActivityDate", "date"),
        replace(_ref("WhoId", "Contact", "Lead"), label=WHO_LABEL),
        replace(_ref("WhatId", _WHAT_TARGETS), label=WHAT_LABEL),
        _ref("OwnerId", "User"),
        _read_only("AccountId", "reference", 18, reference_to=("Account",)),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _picklist("Type", ACTIVITY_TYPES),
        _f("IsRecurrence", "boolean", updateable=False),
        _f("IsReminderSet", "boolean"),
        _f("ReminderDateTime", "datetime"),
        _read_only("IsArchived", "boolean"),
        _read_only("WhoCount", "int", precision=9, scale=0),
        _read_only("WhatCount", "int", precision=9, scale=0),
    )


def _task() -> ObjectSpec:
    return _object(
        "Task",
        "00T",
        *_activity_common(),
        _picklist("Status", TASK_STATUSES, restricted=True),
        _picklist("Priority", TASK_PRIORITIES, restricted=True),
        _read_only("IsClosed", "boolean"),
        _read_only("IsHighPriority", "boolean"),
        _read_only("CompletedDateTime", "datetime"),
        _f(
            "TaskSubtype",
            "picklist",
            255,
            picklist_values=TASK_SUBTYPES,
            restricted=True,
            updateable=False,
        ),
        _text("CallDisposition", 255),
        _f("CallDurationInSeconds", "int", precision=8, scale=0),
        _picklist("CallType", CALL_TYPES, restricted=True),
        _text("CallObject", 255),
    )


def _event() -> ObjectSpec:
    return _object(
        "Event",
        "00U",
        *_activity_common(),
        _f("ActivityDateTime", "datetime"),
        _f("StartDateTime", "datetime"),
        _f("EndDateTime", "datetime"),
        _read_only("EndDate", "date"),
        _f("DurationInMinutes", "int", precision=8, scale=0),
        _f("IsAllDayEvent", "boolean"),
        _f("IsPrivate", "boolean"),
        _text("Location", 255),
        _picklist("ShowAs", SHOW_AS, restricted=True),
        _f(
            "EventSubtype",
            "picklist",
            255,
            picklist_values=EVENT_SUBTYPES,
            restricted=True,
            updateable=False,
        ),
        _read_only("IsChild", "boolean"),
        _read_only("IsGroupEvent", "boolean"),
    )


def _user() -> ObjectSpec:
    return _object(
        "User",
        "005",
        _text("Username", 80, required=True, unique=True),
        _f("Email", "email", 128, required=True),
        *_person_name(True),
        _f("IsActive", "boolean"),
    )


def _content_version() -> ObjectSpec:
    return _object(
        "ContentVersion",
        "068",
        _text("Title", 255),
        _text("PathOnClient", 500, updateable=False),
        _f("VersionData", "base64", updateable=False),
        _ref("ContentDocumentId", "ContentDocument", updateable=False),
        _ref("FirstPublishLocationId", _POLYMORPHIC_ANY, updateable=False),
        _read_only("ContentSize", "int", precision=9, scale=0),
        # Checksum: "MD5 checksum for the file" (string, 50; Object Reference, ContentVersion,
        # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contentversion.htm).
        _read_only("Checksum", "string", 50),
        _read_only("FileType", "string", 20),
        _read_only("FileExtension", "string", 40),
        _read_only("VersionNumber", "string", 20),
        _read_only("IsLatest", "boolean"),
        _f("Description", "textarea", 1000),
        _text("ReasonForChange", 1000),
        _f(
            "ContentLocation",
            "picklist",
            40,
            picklist_values=CONTENT_LOCATIONS,
            restricted=True,
            updateable=False,
        ),
        _f("IsMajorVersion", "boolean", updateable=False),
        _ref("OwnerId", "User"),
    )


def _content_document() -> ObjectSpec:
    return _object(
        "ContentDocument",
        "069",
        _text("Title", 255),
        _read_only("LatestPublishedVersionId", "reference", 18, reference_to=("ContentVersion",)),
        _read_only("FileType", "string", 20),
        _read_only("FileExtension", "string", 40),
        _read_only("ContentSize", "int", precision=9, scale=0),
        _ref("OwnerId", "User"),
    )


def _content_document_link() -> ObjectSpec:
    return _object(
        "ContentDocumentLink",
        "06A",
        _f(
            "ContentDocumentId",
            "reference",
            18,
            required=True,
            reference_to=("ContentDocument",),
            updateable=False,
        ),
        _f(
            "LinkedEntityId",
            "reference",
            18,
            required=True,
            reference_to=(_POLYMORPHIC_ANY,),
            updateable=False,
        ),
        _picklist("ShareType", SHARE_TYPES, restricted=True),
        _picklist("Visibility", VISIBILITIES, restricted=True),
    )


def _account_contact_relation() -> ObjectSpec:
    return _object(
        "AccountContactRelation",
        "07k",
        _f(
            "AccountId", "reference", 18, required=True, reference_to=("Account",), updateable=False
        ),
        _f(
            "ContactId", "reference", 18, required=True, reference_to=("Contact",), updateable=False
        ),
        _read_only("IsDirect", "boolean"),
        _f("IsActive", "boolean"),
        _f("Roles", "multipicklist", 4099, picklist_values=ACR_ROLES),
        _f("StartDate", "date"),
        _f("EndDate", "date"),
    )


OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
CASE_ORIGINS = ("Phone", "Email", "Web")
CAMPAIGN_STATUSES = ("Planned", "In Progress", "Completed", "Aborted")
CONTRACT_STATUSES = ("Draft", "In Approval Process", "Activated")


def _opportunity() -> ObjectSpec:
    """Object Reference, Opportunity (sforce_api_objects_opportunity.htm): Name, StageName
    and CloseDate are required on create."""
    return _object(
        "Opportunity",
        "006",
        _text("Name", 120, required=True),
        _f("StageName", "picklist", 255, required=True, picklist_values=OPPORTUNITY_STAGES),
        _f("CloseDate", "date", required=True),
        _ref("AccountId", "Account"),
        _f("Amount", "currency", precision=16, scale=2),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _ref("OwnerId", "User"),
        activities=True,
    )


def _case() -> ObjectSpec:
    """Object Reference, Case (sforce_api_objects_case.htm): Status defaults to "New"."""
    return _object(
        "Case",
        "500",
        _read_only("CaseNumber", "string", 30),
        _text("Subject", 255),
        _picklist("Status", CASE_STATUSES),
        _picklist("Origin", CASE_ORIGINS),
        _ref("AccountId", "Account"),
        _ref("ContactId", "Contact"),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _ref("OwnerId", "User"),
        activities=True,
    )


def _campaign() -> ObjectSpec:
    """Object Reference, Campaign (sforce_api_objects_campaign.htm)."""
    return _object(
        "Campaign",
        "701",
        _text("Name", 80, required=True),
        _picklist("Status", CAMPAIGN_STATUSES),
        _f("IsActive", "boolean"),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _ref("OwnerId", "User"),
        activities=True,
    )


def _contract() -> ObjectSpec:
    """Object Reference, Contract (sforce_api_objects_contract.htm): AccountId is required;
    Status defaults to "Draft"."""
    return _object(
        "Contract",
        "800",
        _f("AccountId", "reference", 18, required=True, reference_to=("Account",)),
        _picklist("Status", CONTRACT_STATUSES),
        _f("StartDate", "date"),
        _f("ContractTerm", "int", precision=4, scale=0),
        _f("Description", "textarea", LONG_TEXT_LENGTH),
        _ref("OwnerId", "User"),
        activities=True,
    )


def _product() -> ObjectSpec:
    """Object Reference, Product2 (sforce_api_objects_product2.htm): no owner of its own."""
    return _object(
        "Product2",
        "01t",
        _text("Name", 255, required=True),
        _text("ProductCode", 255),
        _f("IsActive", "boolean"),
        _f("Description", "textarea", 4000),
        activities=True,
    )


def _asset() -> ObjectSpec:
    """Object Reference, Asset (sforce_api_objects_asset.htm). A real org also requires an
    account or a contact; the simulator does not check that pair (no crmlift write makes
    assets)."""
    return _object(
        "Asset",
        "02i",
        _text("Name", 255, required=True),
        _ref("AccountId", "Account"),
        _ref("ContactId", "Contact"),
        _ref("Product2Id", "Product2"),
        _text("SerialNumber", 80),
        _ref("OwnerId", "User"),
        activities=True,
    )


ACTIVITY_STANDARD_OBJECTS = ("Opportunity", "Case", "Campaign", "Contract", "Product2", "Asset")
"""Standard objects besides Account that take activities in every org, so a real describe
lists them (and more the simulator does not model, such as Solution) in Task.WhatId's
referenceTo: "a task can also be related to one account, asset, campaign, case, contract,
opportunity, product, solution, or custom object" (Object Reference, TaskRelation,
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_taskrelation.htm).
Each is modelled with its required fields only; the Object Reference page of each is
``…/object_reference/sforce_api_objects_<name>.htm``."""

STANDARD_OBJECTS = OrgSchema(
    {
        spec.name: spec
        for spec in (
            _account(),
            _contact(),
            _lead(),
            _task(),
            _event(),
            _user(),
            _content_version(),
            _content_document(),
            _content_document_link(),
            _account_contact_relation(),
            _opportunity(),
            _case(),
            _campaign(),
            _contract(),
            _product(),
            _asset(),
        )
    }
)
"""The built-in objects every simulated org starts with."""


def _master_detail(field: FieldSpec) -> FieldSpec:
    """A master-detail field as the org has it: required, updateable only when reparentable
    (Metadata API ``CustomField.reparentableMasterDetail``,
    https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/customfield.htm)."""
    if not field.master_detail:
        return field
    return replace(field, required=True, createable=True, updateable=field.reparentable)


def _custom_object(spec: ObjectSpec, prefix: str) -> ObjectSpec:
    """A schema file's custom object with the fields every custom object has in Salesforce.

    A detail object (one with a master-detail field) has no OwnerId: its records are owned
    through their master ("Relationships Among Objects",
    https://help.salesforce.com/s/articleView?id=sf.overview_of_custom_object_relationships.htm)."""
    fields = tuple(_master_detail(f) for f in spec.fields)
    masters = [f for f in fields if f.master_detail]
    if len(masters) > 2:
        raise SchemaError(f"{spec.name}: an object can have at most two master-detail fields")
    if masters:
        fields = tuple(f for f in fields if f.name.lower() != "ownerid")
    given = {f.name.lower() for f in fields}
    implicit = [f for f in _system() if f.name.lower() not in given]
    if "name" not in given:
        implicit.append(_text("Name", 80))
    if "ownerid" not in given and not masters:
        implicit.append(_ref("OwnerId", "User"))
    return replace(
        spec, custom=True, fields=(*implicit, *fields), key_prefix=prefix, label=spec.label
    )


def _activity_fields(custom: OrgSchema) -> tuple[FieldSpec, ...]:
    """Custom fields defined on Activity, which Task and Event both show.

    A real org has no custom field of Task or Event of its own, and the Unique attribute is
    not offered for activity custom fields (External ID is), so a schema that asks for
    either is refused here as the admin's deploy would be
    (https://help.salesforce.com/s/articleView?id=sf.custom_field_attributes.htm)."""
    for name in ("Task", "Event"):
        spec = custom.get(name)
        own = [f.name for f in spec.fields if f.name.endswith("__c")] if spec else []
        if own:
            raise SchemaError(
                f"{name}: custom fields {', '.join(own)} must be defined on {ACTIVITY}, "
                "where Task and Event share them"
            )
    activity = custom.get(ACTIVITY)
    fields = activity.fields if activity is not None else ()
    unique = [f.name for f in fields if f.unique]
    if unique:
        raise SchemaError(
            f"{ACTIVITY}: activity custom fields cannot be unique: {', '.join(unique)} "
            "(use a non-unique External ID)"
        )
    return fields


def _key_prefixes(custom: OrgSchema, taken: set[str]) -> dict[str, str]:
    """Pinned prefixes as given; the rest a00, a01, … in name order, skipping taken ones."""
    pinned = {name: spec.key_prefix for name, spec in custom.objects.items() if spec.key_prefix}
    taken = taken | set(pinned.values())
    prefixes = dict(pinned)
    counter = int(CUSTOM_PREFIX_START[1:])
    for name in sorted(n for n in custom.objects if n not in pinned):
        while (candidate := f"a{counter:02d}") in taken:
            counter += 1
        prefixes[name] = candidate
        taken.add(candidate)
    return prefixes


def _resolve_targets(
    spec: ObjectSpec, all_names: tuple[str, ...], with_activities: tuple[str, ...]
) -> ObjectSpec:
    """Expand the polymorphic markers in ``reference_to`` to the org's real object names."""
    fields = []
    for field in spec.fields:
        targets: tuple[str, ...] = field.reference_to
        if _POLYMORPHIC_ANY in targets:
            targets = all_names
        elif _WHAT_TARGETS in targets:
            targets = with_activities
        fields.append(replace(field, reference_to=targets))
    return replace(spec, fields=tuple(fields))


def org_schema(custom: OrgSchema) -> OrgSchema:
    """The standard objects with ``custom``'s objects added and its custom fields merged in.

    Custom objects gain Id, Name, OwnerId (unless they are a detail) and the audit fields,
    as Salesforce adds them; Activity's fields join Task and Event; polymorphic lookups
    (WhatId, LinkedEntityId, FirstPublishLocationId) learn the objects they may point at;
    State and Country/Territory Picklists add the ``…Code`` fields when the schema has them on.
    """
    activity = _activity_fields(custom)
    given = {n: s for n, s in custom.objects.items() if n not in {ACTIVITY, "Task", "Event"}}
    new = {n: s for n, s in given.items() if STANDARD_OBJECTS.get(n) is None}
    extra_fields = {
        standard.name: spec
        for name, spec in given.items()
        if (standard := STANDARD_OBJECTS.get(name)) is not None
    }
    for name in ("Task", "Event"):
        extra_fields[name] = ObjectSpec(name, name, fields=activity)
    taken = {spec.key_prefix for spec in STANDARD_OBJECTS.objects.values()}
    prefixes = _key_prefixes(OrgSchema(new), taken)
    customs = OrgSchema(
        {name: _custom_object(spec, prefixes[name]) for name, spec in sorted(new.items())}
    )
    merged = STANDARD_OBJECTS.merged(OrgSchema(extra_fields)).merged(customs)
    record_holders = tuple(name for name in merged.objects if name not in {"ContentDocumentLink"})
    with_activities = tuple(n for n, spec in merged.objects.items() if spec.enable_activities)
    objects = {
        name: _resolve_targets(spec, record_holders, with_activities)
        for name, spec in merged.objects.items()
    }
    if custom.state_country_picklists:
        objects = {name: _with_address_codes(spec) for name, spec in objects.items()}
    return OrgSchema(objects, custom.state_country_picklists)
