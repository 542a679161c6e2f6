"""Field provenance: which source field(s) each destination field is made from.

The sample diff shows, per destination field, the source value it came from; a
transform only says what it sends, so where each value comes from is declared here,
per pair, keyed by (source collection, destination object, field): several
collections feed one object (tasks, notes and e-signatures all become Task), each from
its own fields. Paths are dotted into the staged record (``billing_address.city``); an
empty tuple is a value the mapping sets itself (a fallback owner, a fixed status).
Custom fields are looked up from the run's custom field definitions, the same way the
transforms name them. ``tests/test_sample_run.py`` checks that every field the
transforms emit for the dirty tenant has an entry, so this table cannot silently fall
behind the mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.dynamics.keys import SHAREPOINT_FILES, lookup_key
from service.mapping import backdocket_dynamics as dynamics
from service.mapping import backdocket_salesforce as salesforce
from service.mapping.base import MappingContext

Key = tuple[str, str, str]
"""(source collection, destination object, destination field)."""

Table = dict[Key, tuple[str, ...]]


def _declare(table: Table, collection: str, sobject: str, fields: Mapping[str, str]) -> None:
    """Add one collection → object block: field → space-separated source paths."""
    for name, paths in fields.items():
        table[(collection, sobject, name)] = tuple(paths.split())


def _address(prefix: str, source: str, parts: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix}{suffix}": f"{source}.{part}" for part, suffix in parts.items()}


_SF_ADDRESS_PARTS = {
    "street": "Street", "city": "City", "postal_code": "PostalCode", "state": "State",
    "country": "Country",
}  # fmt: skip
_SF_CODES = {"state": "StateCode", "country": "CountryCode"}
_SF_RECURRENCE = {"Is_Recurring__c": "recurrence", "Recurrence_Rule__c": "recurrence"}
_SF_INTAKE_COMMON = {
    "Intake_Form_Type__c": "form_type", "Intake_Status__c": "status",
    "Referral_Source__c": "referral_source", "OwnerId": "assigned_to_id",
    "Converted_Matter__c": "converted_matter_id",
}  # fmt: skip


def _salesforce() -> Table:
    t: Table = {}
    _declare(t, "companies", "Account", {
        "Name": "name", "Website": "domain", "Industry": "industry",
        "NumberOfEmployees": "employee_count", "AnnualRevenue": "annual_revenue",
        "BackDocket_Kind__c": "kind", "Source_Created_Date__c": "created_at",
        "OwnerId": "", "ParentId": "parent_company_id",
        **_address("Billing", "billing_address", _SF_ADDRESS_PARTS),
        **_address("Billing", "billing_address", _SF_CODES),
    })  # fmt: skip
    _declare(t, "contacts", "Contact", {
        "FirstName": "first_name", "LastName": "last_name first_name", "Email": "email",
        "Phone": "phone", "MobilePhone": "mobile", "Bar_Number__c": "bar_number",
        "Intake_Status__c": "intake_status", "Source_Created_Date__c": "created_at",
        "OwnerId": "owner_id", "AccountId": "company_links",
        **_address("Mailing", "address", _SF_ADDRESS_PARTS),
        **_address("Mailing", "address", _SF_CODES),
    })  # fmt: skip
    _declare(t, "contacts", "AccountContactRelation", {
        "IsActive": "", "StartDate": "company_links", "AccountId": "company_links",
        "ContactId": "id",
    })  # fmt: skip
    _declare(t, "matters", "Case_Matter__c", {
        "Case_Number__c": "number", "Case_Name__c": "name", "Name": "number name id",
        "Case_Type__c": "claim_type", "Case_Category__c": "case_type", "Status__c": "status",
        "Filed_Date__c": "filed_date", "Opened_Date__c": "opened_date",
        "Closed_Date__c": "closed_date", "Statute_Of_Limitations__c": "statute_of_limitations",
        "Claim_Amount__c": "claim_amount", "Estimated_Fees__c": "estimated_fees",
        "Billing_Type__c": "billing_type", "Case_Description__c": "description",
        "Court_Jurisdiction__c": "court_jurisdiction", "Practice_Area__c": "practice_area",
        "OwnerId": "assigned_attorney_id", "Assigned_Attorney__c": "assigned_attorney_id",
        "Client_Account__c": "client_company_id", "Primary_Contact__c": "primary_contact_id",
        "Source_Created_Date__c": "created_at",
    })  # fmt: skip
    _declare(t, "matter_parties", "Case_Party__c", {
        "Case_Matter__c": "matter_id", "Contact__c": "contact_id", "Role__c": "role",
        "Is_Primary__c": "is_primary",
    })  # fmt: skip
    _declare(t, "claims", "Claim__c", {
        "Name": "name id", "Case_Matter__c": "matter_id", "Claim_Kind__c": "claim_kind",
        "Amount__c": "amount", "Revenue_Generating__c": "revenue_generating",
        "Status__c": "status", "Close_Date__c": "close_date",
    })  # fmt: skip
    _declare(t, "intake_submissions", "Lead", {
        "FirstName": "prospect_name", "LastName": "prospect_name", "Company": "prospect_name",
        "Email": "prospect_email", "Phone": "prospect_phone", "LeadSource": "referral_source",
        "Status": "status", "Case_Type_Interest__c": "case_type_interest",
        "Source_Submitted_Date__c": "submitted_at", **_SF_INTAKE_COMMON,
    })  # fmt: skip
    _declare(t, "intake_submissions", "Case_Matter__c", {
        "Case_Name__c": "prospect_name", "Name": "prospect_name id", "Status__c": "",
        "Case_Type__c": "case_type_interest", "Opened_Date__c": "submitted_at",
        "Source_Created_Date__c": "submitted_at", "Prospect_Email__c": "prospect_email",
        "Prospect_Phone__c": "prospect_phone", **_SF_INTAKE_COMMON,
    })  # fmt: skip
    _declare(t, "tasks", "Task", {
        "Subject": "subject", "Description": "description", "Status": "status",
        "Priority": "priority", "ActivityDate": "due_date", "OwnerId": "assignee_id",
        "WhoId": "contact_id", "WhatId": "matter_id", "Approval_Request__c": "approval_request",
        **_SF_RECURRENCE,
    })  # fmt: skip
    _declare(t, "events", "Event", {
        "Subject": "subject", "IsAllDayEvent": "all_day", "StartDateTime": "start_at all_day",
        "EndDateTime": "end_at all_day", "Location": "location", "Description": "description",
        "OwnerId": "owner_id", "WhoId": "contact_id", "WhatId": "matter_id",
        "External_Attendees__c": "attendees", **_SF_RECURRENCE,
    })  # fmt: skip
    _declare(t, "esignature_requests", "Task", {
        "Subject": "document_name", "Status": "status", "DocuSign_Status__c": "status",
        "Signer_List__c": "signers", "DocuSign_Envelope_Id__c": "envelope_id",
        "Signature_Document__c": "document_name", "ActivityDate": "sent_at",
        "Description": "sent_at completed_at envelope_id document_name document_id",
        "WhatId": "matter_id", "OwnerId": "",
    })  # fmt: skip
    _declare(t, "notes", "Task", {
        "Subject": "body", "Description": "body", "Status": "", "ActivityDate": "created_at",
        "OwnerId": "author_id", "WhoId": "contact_id", "WhatId": "matter_id",
    })  # fmt: skip
    _declare(t, "documents", "ContentVersion", {
        "Title": "filename", "PathOnClient": "filename", "Original_Upload_Date__c": "uploaded_at",
        "Original_MIME_Type__c": "mime_type", "Source_Version__c": "version",
        "OwnerId": "uploaded_by_id", "FirstPublishLocationId": "matter_id contact_id",
    })  # fmt: skip
    return t


_DV_ADDRESS = {
    "address1_line1": "street", "address1_city": "city", "address1_stateorprovince": "state",
    "address1_postalcode": "postal_code", "address1_country": "country",
}  # fmt: skip
_DV_ROW = {"{p}_sourceid": "id", "overriddencreatedon": "created_at"}
"""What every Dataverse row made from a source record carries (see ``transform``)."""


def _dv_address(source: str) -> dict[str, str]:
    return {column: f"{source}.{part}" for column, part in _DV_ADDRESS.items()}


def _dv_regarding(attribute: str) -> dict[str, str]:
    return {
        lookup_key(attribute, "{p}_matter"): "matter_id",
        lookup_key(attribute, "contact"): "contact_id",
    }


def _dynamics() -> Table:
    t: Table = {}
    _declare(t, "companies", "account", {
        "name": "name", "websiteurl": "domain", "numberofemployees": "employee_count",
        "revenue": "annual_revenue", "{p}_accountkind": "kind",
        "{p}_sourcecreatedon": "created_at", "ownerid": "", "parentaccountid": "parent_company_id",
        **_dv_address("billing_address"), **_DV_ROW,
    })  # fmt: skip
    _declare(t, "contacts", "account", {
        "name": "organization_name company_name last_name first_name", "emailaddress1": "email",
        "telephone1": "phone", "{p}_sourcecreatedon": "created_at", "ownerid": "owner_id",
        "parentaccountid": "company_links", **_dv_address("address"), **_DV_ROW,
    })  # fmt: skip
    _declare(t, "contacts", "contact", {
        "firstname": "first_name name", "lastname": "last_name first_name name",
        "emailaddress1": "email", "telephone1": "phone", "mobilephone": "mobile",
        "{p}_barnumber": "bar_number", "{p}_intakestatus": "intake_status",
        "{p}_sourcecreatedon": "created_at", "ownerid": "owner_id",
        lookup_key("parentcustomerid", "account"): "company_links",
        **_dv_address("address"), **_DV_ROW,
    })  # fmt: skip
    _declare(t, "matters", "{p}_matter", {
        "{p}_matternumber": "number", "{p}_name": "name number id", "{p}_mattertype": "claim_type",
        "{p}_casecategory": "case_type", "{p}_status": "status",
        "{p}_practicearea": "practice_area", "{p}_billingtype": "billing_type",
        "{p}_courtjurisdiction": "court_jurisdiction", "{p}_openingdate": "opened_date",
        "{p}_fileddate": "filed_date", "{p}_closeddate": "closed_date",
        "{p}_statuteoflimitations": "statute_of_limitations",
        "{p}_claimamount": "claim_amount", "{p}_estimatedfees": "estimated_fees",
        "{p}_description": "description", "{p}_sourcecreatedon": "created_at",
        "ownerid": "assigned_attorney_id", "{p}_assignedattorney": "assigned_attorney_id",
        "{p}_clientaccountid": "client_company_id", "{p}_primarycontactid": "primary_contact_id",
        **_DV_ROW,
    })  # fmt: skip
    _declare(t, "claims", "{p}_claim", {
        "{p}_name": "name id", "{p}_matterid": "matter_id", "{p}_claimkind": "claim_kind",
        "{p}_amount": "amount", "{p}_revenuegenerating": "revenue_generating",
        "{p}_status": "status", "{p}_closedate": "close_date", **_DV_ROW,
    })  # fmt: skip
    _declare(t, "claims", "opportunity", {
        "name": "name id", "estimatedvalue": "amount", "estimatedclosedate": "close_date",
        "{p}_matterid": "matter_id", "{p}_claimkind": "claim_kind", "{p}_claimstatus": "status",
        lookup_key("customerid", "account"): "client_company_id matter_id",
        lookup_key("customerid", "contact"): "contact_id matter_id", "ownerid": "",
        **_DV_ROW,
    })  # fmt: skip
    _declare(t, "intake_submissions", "lead", {
        "firstname": "prospect_name", "lastname": "prospect_name",
        "subject": "prospect_name form_type", "emailaddress1": "prospect_email",
        "telephone1": "prospect_phone", "leadsourcecode": "referral_source",
        "{p}_referralsource": "referral_source", "{p}_casetypeinterest": "case_type_interest",
        "{p}_initialcontactdate": "submitted_at", "{p}_intakeformtype": "form_type",
        "{p}_intakestatus": "status", "ownerid": "assigned_to_id",
        "{p}_convertedmatterid": "converted_matter_id", **_DV_ROW,
    })  # fmt: skip
    _declare(t, "tasks", "task", {
        "subject": "subject", "description": "description", "prioritycode": "priority",
        "statecode": "status", "statuscode": "status", "scheduledend": "due_date",
        "ownerid": "assignee_id", "{p}_recurrencerule": "recurrence",
        "{p}_approvalrequest": "approval_request", **_dv_regarding("regardingobjectid"),
        **_DV_ROW,
    })  # fmt: skip
    _declare(t, "events", "appointment", {
        "subject": "subject", "scheduledstart": "start_at", "scheduledend": "end_at",
        "isalldayevent": "all_day", "location": "location", "description": "description",
        "ownerid": "owner_id", "{p}_recurrencerule": "recurrence",
        "{p}_requiredattendees": "attendees", "{p}_reinvitationrequired": "attendees",
        "{p}_externalinvitees": "attendees", **_dv_regarding("regardingobjectid"), **_DV_ROW,
    })  # fmt: skip
    _declare(t, "esignature_requests", "task", {
        "subject": "document_name", "statecode": "status", "statuscode": "status",
        "{p}_esignstatus": "status", "{p}_signerlist": "signers", "{p}_envelopeid": "envelope_id",
        "description": "status sent_at completed_at envelope_id document_name signers",
        "scheduledend": "sent_at", "ownerid": "", **_dv_regarding("regardingobjectid"),
        **_DV_ROW,
    })  # fmt: skip
    _declare(t, "notes", "annotation", {
        "subject": "body", "notetext": "body", "isdocument": "", "ownerid": "author_id",
        **_dv_regarding("objectid"), "overriddencreatedon": "created_at",
    })  # fmt: skip
    _declare(t, "documents", "annotation", {
        "subject": "filename", "filename": "filename", "mimetype": "mime_type",
        "isdocument": "", "notetext": "version custom_fields", "ownerid": "uploaded_by_id",
        **_dv_regarding("objectid"), "overriddencreatedon": "created_at",
    })  # fmt: skip
    _declare(t, "documents", "sharepointdocumentlocation", {
        "name": "matter_id contact_id", "relativeurl": "matter_id contact_id",
        lookup_key("parentsiteorlocation", "sharepointdocumentlocation"): "",
        **_dv_regarding("regardingobjectid"), **_DV_ROW,
    })  # fmt: skip
    _declare(t, "documents", SHAREPOINT_FILES, {
        "library": "matter_id contact_id", "folder": "matter_id contact_id",
    })  # fmt: skip
    return t


PROVENANCE: Mapping[str, Table] = {"salesforce": _salesforce(), "dynamics": _dynamics()}
"""Destination platform → its pair's declared provenance (Dataverse names hold ``{p}``,
the publisher prefix)."""


def sources(
    destination: str, collection: str, sobject: str, field: str, ctx: MappingContext
) -> tuple[str, ...] | None:
    """The source paths destination ``field`` of ``sobject`` is made from, for a record of
    ``collection``; None when the table has no entry (a gap the test catches)."""
    if destination == "dynamics":
        p = dynamics.prefix_of(ctx)
        key = (collection, _template(sobject, p), _template(field, p))
    else:
        key = (collection, sobject, field)
    found = PROVENANCE.get(destination, {}).get(key)
    if found is not None:
        return found
    custom = custom_field_keys(destination, collection, sobject, ctx).get(field)
    return None if custom is None else (f"custom_fields.{custom}",)


def _template(name: str, prefix: str) -> str:
    """A Dataverse name with its publisher prefix put back as ``{p}``."""
    return (
        "{p}" + name[len(prefix) :]
        if name.startswith(f"{prefix}_")
        else name.replace(f".{prefix}_", ".{p}_")
    )


def custom_field_keys(
    destination: str, collection: str, sobject: str, ctx: MappingContext
) -> dict[str, str]:
    """Destination field → BackDocket custom field key, named exactly as the transform
    names them (from the run's custom field definitions)."""
    definitions = ctx.custom_fields.get(collection, ())
    own = {str(d["key"]) for d in definitions if d.get("key")}
    if destination == "dynamics":
        columns = dynamics._definition_columns(dynamics.prefix_of(ctx), definitions)
        return {name: key for key, name in columns.get(sobject, {}).items() if key in own}
    if salesforce.CUSTOM_FIELD_OBJECTS.get(collection) != salesforce.field_home(sobject):
        return {}
    home = salesforce.field_home(sobject)
    names = salesforce._custom_field_names(home, salesforce._home_keys(home, ctx, own))
    return {name: key for key, name in names.items() if key in own}


def source_value(record: Mapping[str, Any], paths: tuple[str, ...]) -> Any:
    """The source value(s) behind a field: the one path's value, or path → value of the
    paths that hold one (None when none does)."""
    if len(paths) == 1:
        return _at(record, paths[0])
    found = {p: v for p in paths if (v := _at(record, p)) not in (None, "", [], {})}
    return found or None


def _at(record: Mapping[str, Any], path: str) -> Any:
    node: Any = record
    for step in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(step)
    return node
