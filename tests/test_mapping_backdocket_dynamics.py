"""BackDocket → Dynamics 365 Sales mapping: what the operator's Dataverse environment receives.

Pure and fast: a generated dirty tenant goes through every transform, and each
payload is checked against the schema plan the Dynamics admin provisions first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.base import Record
from adapters.dynamics.keys import SHAREPOINT_FILES, library_ref
from service.mapping.backdocket_dynamics import (
    COLLECTION_OBJECTS,
    DEFAULT_MAX_ATTACHMENT_BYTES,
    DEPENDS_ON,
    LOAD_ORDER,
    MATTER_STATUS_OPTIONS,
    MATTER_TYPE_OPTIONS,
    OPTION_BASE,
    collection_objects,
    column_name,
    is_organization,
    matter_customers,
    resolve_owners,
    schema_plan,
    transform,
)
from service.mapping.base import MappingContext, Payload, Ref, Rejection, TransformResult

FALLBACK = "00000000-0000-0000-0000-00000000fa11"
MB = 1024 * 1024
_TABLE_COLUMNS: Mapping[str, frozenset[str]] = {
    "account": frozenset(
        {
            "name",
            "websiteurl",
            "numberofemployees",
            "revenue",
            "emailaddress1",
            "telephone1",
            "ownerid",
            *(
                f"address1_{p}"
                for p in ("line1", "city", "stateorprovince", "postalcode", "country")
            ),
        }
    ),
    "contact": frozenset(
        {
            "firstname",
            "lastname",
            "emailaddress1",
            "telephone1",
            "mobilephone",
            "ownerid",
            *(
                f"address1_{p}"
                for p in ("line1", "city", "stateorprovince", "postalcode", "country")
            ),
        }
    ),
    "crm_matter": frozenset({"ownerid", "crm_assignedattorney"}),
    "crm_claim": frozenset(),
    "opportunity": frozenset({"name", "estimatedvalue", "estimatedclosedate", "ownerid"}),
    "lead": frozenset(
        {"firstname", "lastname", "subject", "emailaddress1", "telephone1", "leadsourcecode"}
        | {"ownerid"}
    ),
    "task": frozenset(
        {"subject", "description", "prioritycode", "statecode", "statuscode", "scheduledend"}
        | {"ownerid"}
    ),
    "appointment": frozenset(
        {"subject", "description", "location", "scheduledstart", "scheduledend", "isalldayevent"}
        | {"ownerid"}
    ),
    "annotation": frozenset(
        {"subject", "notetext", "filename", "mimetype", "isdocument", "ownerid"}
    ),
    "sharepointdocumentlocation": frozenset({"name", "relativeurl", "absoluteurl"}),
}
STANDARD_COLUMNS: Mapping[str, frozenset[str]] = {
    table: columns | {"overriddencreatedon"} for table, columns in _TABLE_COLUMNS.items()
}
"""Standard Dataverse columns each table already has (the plan adds the custom ones);
every table has ``overriddencreatedon``, which keeps the source's creation time."""


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generate_tenant(600, 2, dirty=True)


def _systemusers(tenant: Tenant) -> dict[str, str]:
    """Dynamics has licences for the first two users (the attorneys) only."""
    return {str(u["email"]).upper(): f"guid-{u['id']}" for u in tenant.records["users"][:2]}


def _context(tenant: Tenant, **settings: Any) -> MappingContext:
    resolution = resolve_owners(tenant.records["users"], _systemusers(tenant), FALLBACK)
    definitions: dict[str, list[Record]] = {}
    for d in tenant.records["custom_field_definitions"]:
        definitions.setdefault(d["entity"], []).append(d)
    return MappingContext(
        owners=resolution.owners,
        fallback_owner=FALLBACK,
        custom_fields={k: tuple(v) for k, v in definitions.items()},
        settings={"matter_customers": matter_customers(tenant.records["matters"]), **settings},
    )


@pytest.fixture(scope="module")
def ctx(tenant: Tenant) -> MappingContext:
    return _context(tenant)


@pytest.fixture(scope="module")
def results(tenant: Tenant, ctx: MappingContext) -> dict[str, list[tuple[Record, TransformResult]]]:
    return {
        collection: [(r, transform(collection, r, ctx)) for r in rows]
        for collection, rows in tenant.records.items()
    }


def _payloads(result: TransformResult) -> list[Payload]:
    assert not isinstance(result, Rejection), result
    return result


def _one(collection: str, record: Record, ctx: MappingContext) -> Payload:
    [payload] = _payloads(transform(collection, record, ctx))
    return payload


def _record(tenant: Tenant, collection: str, **changes: Any) -> Record:
    return {**tenant.records[collection][0], **changes}


# --- the whole tenant ----------------------------------------------------------------------


def test_whole_dirty_tenant_transforms_and_fits_the_schema_plan(
    tenant: Tenant, results: dict[str, list[tuple[Record, TransformResult]]]
) -> None:
    plan = schema_plan(tenant.records["custom_field_definitions"])
    objects = collection_objects("crm")
    produced: set[str] = set()
    for collection, pairs in results.items():
        for _, result in pairs:
            if isinstance(result, Rejection):
                assert result.reason
                continue
            for payload in result:
                assert payload.object in objects[collection]
                table = plan["tables"][payload.object]
                if payload.object == "annotation":
                    assert "crm_sourceid" not in payload.fields
                else:
                    assert payload.fields["crm_sourceid"] == payload.external_id
                known = STANDARD_COLUMNS[payload.object] | set(table["columns"])
                assert set(payload.fields) <= known, set(payload.fields) - known
                # Every lookup the load binds is one the plan names with its target, so
                # the schema gate checks the org's relationship before any write.
                planned = {**table["columns"], **table.get("lookups", {})}
                for name, ref in (*payload.refs.items(), *payload.deferred_refs.items()):
                    assert planned[name]["target"] == ref.object, (payload.object, name)
                produced.add(payload.object)
    assert produced == {
        "account",
        "contact",
        "crm_matter",
        "crm_claim",
        "opportunity",
        "lead",
        "task",
        "appointment",
        "annotation",
    }


def test_external_ids_are_unique_per_table(
    results: dict[str, list[tuple[Record, TransformResult]]],
) -> None:
    seen: dict[tuple[str, str], str] = {}
    for collection, pairs in results.items():
        for _, result in pairs:
            for payload in [] if isinstance(result, Rejection) else result:
                key = (payload.object, payload.external_id)
                assert key not in seen, (key, collection, seen[key])
                seen[key] = collection


def test_publisher_prefix_is_configurable(tenant: Tenant) -> None:
    ctx = _context(tenant, publisher_prefix="hw")
    payload = _one("matters", tenant.records["matters"][0], ctx)
    assert payload.object == "hw_matter"
    assert payload.fields["hw_sourceid"] == payload.external_id
    assert "hw_matter" in schema_plan([], prefix="hw")["tables"]


# --- contacts and accounts -----------------------------------------------------------------


def test_person_contact_becomes_contact_bound_to_its_latest_company(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(
        tenant,
        "contacts",
        first_name="Ana",
        last_name="de la Cruz",
        email=" ana@example.com ",
        company_links=[
            {"company_id": "co_1", "linked_at": "2024-01-01T00:00:00Z"},
            {"company_id": "co_2", "linked_at": "2025-01-01T00:00:00Z"},
        ],
    )
    payload = _one("contacts", record, ctx)
    assert payload.object == "contact"
    assert payload.fields["firstname"] == "Ana"
    assert payload.fields["lastname"] == "de la Cruz"
    assert payload.fields["emailaddress1"] == "ana@example.com"
    assert payload.refs["parentcustomerid.account"] == Ref("companies", "co_2", "account")
    assert any("co_1" in note for note in payload.notes)


def test_contact_with_only_a_full_name_is_split(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(tenant, "contacts", first_name=None, last_name=None, name="Mary Ann Lee")
    payload = _one("contacts", record, ctx)
    assert (payload.fields["firstname"], payload.fields["lastname"]) == ("Mary", "Ann Lee")


@pytest.mark.parametrize(
    "changes",
    [
        {"first_name": None, "last_name": "Hartwell Holdings LLC"},
        {"first_name": "", "last_name": None, "organization_name": "Blue Harbor Insurance"},
        {"is_organization": True, "first_name": "Acme", "last_name": "Corp"},
    ],
)
def test_organization_contact_becomes_an_account(
    tenant: Tenant, ctx: MappingContext, changes: dict[str, Any]
) -> None:
    record = _record(tenant, "contacts", **changes)
    assert is_organization(record)
    payload = _one("contacts", record, ctx)
    assert payload.object == "account"
    assert payload.external_id == f"contact:{record['id']}"
    assert payload.fields["name"]
    assert "parentaccountid" in payload.refs


def test_people_are_never_organizations(tenant: Tenant) -> None:
    assert not any(is_organization(r) for r in tenant.records["contacts"])
    assert not is_organization({"id": "x", "first_name": "Jane", "last_name": "Group"})
    assert not is_organization({"id": "x", "first_name": None, "last_name": "Okafor"})


def test_accounts_load_before_contacts() -> None:
    assert LOAD_ORDER.index("companies") < LOAD_ORDER.index("contacts")
    assert "companies" in DEPENDS_ON["contacts"]
    contacts = COLLECTION_OBJECTS["contacts"]
    assert contacts.index("account") < contacts.index("contact")
    for collection, needs in DEPENDS_ON.items():
        assert all(LOAD_ORDER.index(n) < LOAD_ORDER.index(collection) for n in needs)


def test_company_becomes_account_with_deferred_parent(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(tenant, "companies", parent_company_id="co_999")
    payload = _one("companies", record, ctx)
    assert payload.object == "account"
    assert payload.deferred_refs["parentaccountid"] == Ref("companies", "co_999", "account")
    own = _one("companies", _record(tenant, "companies", parent_company_id=record["id"]), ctx)
    assert "parentaccountid" not in own.deferred_refs


# --- matters and claims --------------------------------------------------------------------


def test_matter_columns_and_attorney_binding(tenant: Tenant, ctx: MappingContext) -> None:
    attorney = tenant.records["users"][0]["id"]
    record = _record(
        tenant,
        "matters",
        claim_type="auto_accident",
        status="litigation",
        court_jurisdiction="Miami-Dade County Court",
        opened_date="2025-02-03",
        created_at="2025-02-03T10:00:00Z",
        assigned_attorney_id=attorney,
    )
    payload = _one("matters", record, ctx)
    assert payload.object == "crm_matter"
    fields = payload.fields
    assert fields["crm_mattertype"] == MATTER_TYPE_OPTIONS["auto_accident"] == OPTION_BASE
    assert fields["crm_status"] == MATTER_STATUS_OPTIONS["litigation"]
    assert fields["crm_courtjurisdiction"] == "Miami-Dade County Court"
    assert fields["crm_openingdate"] == "2025-02-03"
    assert fields["crm_sourcecreatedon"] == "2025-02-03T10:00:00.000+00:00"
    assert fields["ownerid"] == f"guid-{attorney}"
    assert fields["crm_assignedattorney"] == f"guid-{attorney}"
    assert payload.refs["crm_primarycontactid"].object == "contact"


def test_unlicensed_attorney_falls_back_without_a_binding(
    tenant: Tenant, ctx: MappingContext
) -> None:
    unknown = _one("matters", _record(tenant, "matters", assigned_attorney_id="usr_gone"), ctx)
    assert unknown.fields["ownerid"] == FALLBACK
    assert "crm_assignedattorney" not in unknown.fields
    assert any("fallback owner" in note for note in unknown.notes)


def test_revenue_claim_is_an_opportunity_for_the_matters_customer(
    tenant: Tenant, ctx: MappingContext
) -> None:
    matter = next(m for m in tenant.records["matters"] if m.get("client_company_id"))
    record = _record(
        tenant,
        "claims",
        matter_id=matter["id"],
        revenue_generating=True,
        amount="125000.50",
        close_date="2026-03-31",
    )
    payload = _one("claims", record, ctx)
    assert payload.object == "opportunity"
    assert payload.fields["estimatedvalue"] == 125000.5
    assert payload.fields["estimatedclosedate"] == "2026-03-31"
    assert payload.refs["customerid.account"] == Ref(
        "companies", matter["client_company_id"], "account"
    )
    assert payload.refs["crm_matterid"] == Ref("matters", matter["id"], "crm_matter")


def test_other_claim_is_a_custom_claim_under_its_matter(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(tenant, "claims", matter_id="mt_7", revenue_generating=False)
    payload = _one("claims", record, ctx)
    assert payload.object == "crm_claim"
    assert payload.refs["crm_matterid"] == Ref("matters", "mt_7", "crm_matter")
    assert payload.fields["crm_revenuegenerating"] is False
    orphan = transform("claims", _record(tenant, "claims", matter_id=None), ctx)
    assert isinstance(orphan, Rejection)
    assert orphan.code == "missing_parent"


# --- activities ----------------------------------------------------------------------------


def test_task_regards_its_matter_or_else_its_contact(tenant: Tenant, ctx: MappingContext) -> None:
    on_matter = _one("tasks", _record(tenant, "tasks", matter_id="mt_1", contact_id="ct_1"), ctx)
    assert on_matter.refs == {"regardingobjectid.crm_matter": Ref("matters", "mt_1", "crm_matter")}
    on_contact = _one("tasks", _record(tenant, "tasks", matter_id=None, contact_id="ct_1"), ctx)
    assert on_contact.refs == {"regardingobjectid.contact": Ref("contacts", "ct_1", "contact")}


def test_task_due_date_priority_and_state(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(tenant, "tasks", due_date="2026-04-01", priority="urgent", status="completed")
    payload = _one("tasks", record, ctx)
    assert payload.fields["scheduledend"] == "2026-04-01T00:00:00.000+00:00"
    assert payload.fields["prioritycode"] == 2
    assert (payload.fields["statecode"], payload.fields["statuscode"]) == (1, 5)
    assert any("urgent" in note for note in payload.notes)
    low = _one("tasks", _record(tenant, "tasks", priority="low", due_date="31/02/2024"), ctx)
    assert low.fields["prioritycode"] == 0
    assert "scheduledend" not in low.fields


def test_external_attendees_are_flagged_for_reinvitation(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(
        tenant,
        "events",
        start_at="2026-02-01T15:00:00Z",
        end_at="2026-02-01T16:00:00Z",
        location="Courtroom 4B",
        attendees=[
            {"name": "Partner", "email": "p.one@hartwell-law.example"},
            {"name": "Client", "email": "client@gmail.com"},
        ],
    )
    payload = _one("events", record, ctx)
    assert payload.object == "appointment"
    assert payload.fields["scheduledstart"] == "2026-02-01T15:00:00.000+00:00"
    assert payload.fields["scheduledend"] == "2026-02-01T16:00:00.000+00:00"
    assert payload.fields["location"] == "Courtroom 4B"
    assert "Partner <p.one@hartwell-law.example>" in str(payload.fields["crm_requiredattendees"])
    assert payload.fields["crm_externalinvitees"] == "Client <client@gmail.com>"
    assert payload.fields["crm_reinvitationrequired"] is True
    assert any("re-inviting" in note and "client@gmail.com" in note for note in payload.notes)
    in_house = _one("events", {**record, "attendees": [record["attendees"][0]]}, _context(tenant))
    assert in_house.fields["crm_reinvitationrequired"] is False
    firm_is_gmail = _one("events", record, _context(tenant, firm_domains=["gmail.com"]))
    assert "hartwell" in str(firm_is_gmail.fields["crm_externalinvitees"])


def test_event_ending_before_it_starts_fails(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(
        tenant, "events", start_at="2026-02-01T15:00:00Z", end_at="2026-02-01T14:00:00Z"
    )
    result = transform("events", record, ctx)
    assert isinstance(result, Rejection)
    assert result.code == "end_before_start"


def test_esignature_request_is_a_task_with_its_signers(tenant: Tenant, ctx: MappingContext) -> None:
    payload = _one("esignature_requests", tenant.records["esignature_requests"][0], ctx)
    assert payload.object == "task"
    assert payload.external_id.startswith("esign:")
    assert "Signers:" in str(payload.fields["description"])
    assert payload.fields["crm_signerlist"]
    assert "crm_esignstatus" in payload.fields


def test_note_is_a_text_annotation_on_its_matter(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(
        tenant,
        "notes",
        body='<p>Call &amp; email the adjuster.</p><img src="/api/v1/documents/doc_9/content">',
        matter_id=None,
        contact_id="ct_5",
    )
    payload = _one("notes", record, ctx)
    assert payload.object == "annotation"
    assert payload.external_id == f"note:{record['id']}"
    assert payload.fields["isdocument"] is False
    assert payload.file is None
    assert "Call & email the adjuster." in str(payload.fields["notetext"])
    assert "[inline image: document doc_9]" in str(payload.fields["notetext"])
    assert payload.refs == {"objectid.contact": Ref("contacts", "ct_5", "contact")}


# --- documents -----------------------------------------------------------------------------


def test_document_within_the_limit_is_an_annotation_with_its_file(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(tenant, "documents", size_bytes=2 * MB, matter_id="mt_3")
    payload = _one("documents", record, ctx)
    assert payload.object == "annotation"
    assert payload.file is not None
    assert payload.file.size_bytes == 2 * MB
    assert payload.file.sha256 == record["sha256"]
    assert payload.fields["filename"] == record["filename"]
    assert payload.fields["mimetype"] == record["mime_type"]
    assert payload.fields["subject"]
    assert payload.refs["objectid.crm_matter"] == Ref("matters", "mt_3", "crm_matter")


def test_oversized_document_is_deferred_until_sharepoint_exists(
    tenant: Tenant, ctx: MappingContext
) -> None:
    size = int(27.3 * MB)
    record = _record(tenant, "documents", size_bytes=size, filename="Medical records.pdf")
    result = transform("documents", record, ctx)
    assert isinstance(result, Rejection)
    assert (result.outcome, result.code) == ("skipped", "deferred_to_sharepoint")
    assert result.reason.startswith("Medical records.pdf is 27.3 MB")
    assert "SharePoint site is configured" in result.reason
    raised = _context(tenant, max_attachment_bytes=128 * MB)
    assert _one("documents", record, raised).object == "annotation"
    assert DEFAULT_MAX_ATTACHMENT_BYTES == 5 * MB


def test_the_attachment_limit_counts_the_base64_text(tenant: Tenant, ctx: MappingContext) -> None:
    """Dataverse measures a note's file as Base64: 4 MB of PDF is 5.4 MB on the wire."""
    four = _record(tenant, "documents", size_bytes=4 * MB, filename="Deposition.pdf")
    result = transform("documents", four, ctx)
    assert isinstance(result, Rejection)
    assert result.code == "deferred_to_sharepoint"
    assert "(5.4 MB as Base64)" in result.reason
    under = _record(tenant, "documents", size_bytes=int(3.7 * MB), filename="Letter.pdf")
    assert _one("documents", under, ctx).object == "annotation"


def test_with_sharepoint_each_record_gets_one_folder_under_its_table_library(
    tenant: Tenant,
) -> None:
    """A SharePoint location is a folder (issue 9): one row per matter or contact, under
    its table's document library location (site → library → record folder, as
    learn.microsoft.com "Manage your documents using SharePoint" sets it up), regarding
    the record; every document of it names the same row. The library's id is the org's:
    the mapping names the library by table and the client binds it."""
    ctx = _context(tenant, sharepoint_site="https://firm.sharepoint.com/sites/crm")
    first = _record(tenant, "documents", id="doc_a", size_bytes=MB, matter_id="mt_3")
    second = _record(tenant, "documents", id="doc_b", size_bytes=MB, matter_id="mt_3")
    annotation, folder = _payloads(transform("documents", first, ctx))
    _, same_folder = _payloads(transform("documents", second, ctx))
    assert (annotation.object, folder.object) == ("annotation", "sharepointdocumentlocation")
    assert annotation.file is not None
    assert folder.file is None
    assert folder.external_id == same_folder.external_id == "folder:crm_matter:mt_3"
    assert folder.fields["relativeurl"] == "crm_matter_mt_3"
    assert "absoluteurl" not in folder.fields
    assert folder.fields["parentsiteorlocation.sharepointdocumentlocation"] == library_ref(
        "crm_matter"
    )
    assert "parentsiteorlocation.sharepointsite" not in folder.fields
    assert folder.refs["regardingobjectid.crm_matter"] == Ref("matters", "mt_3", "crm_matter")
    on_contact = _record(tenant, "documents", size_bytes=MB, matter_id=None, contact_id="ct_2")
    _, contact_folder = _payloads(transform("documents", on_contact, ctx))
    assert contact_folder.refs["regardingobjectid.contact"] == Ref("contacts", "ct_2", "contact")
    assert contact_folder.fields["parentsiteorlocation.sharepointdocumentlocation"] == library_ref(
        "contact"
    )


def test_oversized_document_with_a_site_becomes_a_file_in_its_records_folder(
    tenant: Tenant,
) -> None:
    """Over the attachment limit with a site configured, the file goes to SharePoint: the
    record's folder row first, then the file for it, named uniquely in the folder."""
    ctx = _context(tenant, sharepoint_site="https://firm.sharepoint.com/sites/crm")
    big = _record(
        tenant, "documents", id="doc_9", size_bytes=30 * MB, matter_id="mt_3",
        filename="Scan: page 1?.pdf", created_at="2024-01-02T03:04:05Z",
    )  # fmt: skip
    folder, file = _payloads(transform("documents", big, ctx))
    assert (folder.object, file.object) == ("sharepointdocumentlocation", SHAREPOINT_FILES)
    assert file.external_id == "doc_9"
    assert file.fields == {"library": "crm_matter", "folder": "crm_matter_mt_3"}
    assert file.file is not None
    assert file.file.filename == "doc_9_Scan_ page 1_.pdf"
    assert (file.file.sha256, file.file.size_bytes) == (big["sha256"], 30 * MB)
    # SharePoint keeps its own times; only the Dataverse row takes overriddencreatedon.
    assert "overriddencreatedon" in folder.fields


def test_a_file_attached_to_nothing_fails_with_a_reason_instead_of_waiting(
    tenant: Tenant,
) -> None:
    ctx = _context(tenant, sharepoint_site="https://firm.sharepoint.com/sites/crm")
    orphan = _record(tenant, "documents", size_bytes=30 * MB, matter_id=None, contact_id=None)
    result = transform("documents", orphan, ctx)
    assert isinstance(result, Rejection)
    assert (result.outcome, result.code) == ("failed", "no_sharepoint_folder")


def test_sharepoint_documents_all_sends_every_file_of_a_record_to_sharepoint(
    tenant: Tenant,
) -> None:
    site = "https://firm.sharepoint.com/sites/crm"
    small = _record(tenant, "documents", size_bytes=MB, matter_id="mt_3")
    default = _context(tenant, sharepoint_site=site)
    assert [p.object for p in _payloads(transform("documents", small, default))] == [
        "annotation",
        "sharepointdocumentlocation",
    ]
    everything = _context(tenant, sharepoint_site=site, sharepoint_documents="all")
    assert [p.object for p in _payloads(transform("documents", small, everything))] == [
        "sharepointdocumentlocation",
        SHAREPOINT_FILES,
    ]


def test_with_a_site_documents_also_write_sharepoint_files() -> None:
    assert SHAREPOINT_FILES not in collection_objects("crm")["documents"]
    assert SHAREPOINT_FILES in collection_objects("crm", sharepoint=True)["documents"]
    lookups = schema_plan([], sharepoint=True)["tables"]["sharepointdocumentlocation"]["lookups"]
    assert lookups["parentsiteorlocation.sharepointdocumentlocation"] == {
        "attribute": "parentsiteorlocation",
        "target": "sharepointdocumentlocation",
    }


def test_dirty_tenant_oversized_documents_are_all_deferred(
    tenant: Tenant, results: dict[str, list[tuple[Record, TransformResult]]]
) -> None:
    oversized = set(tenant.dirty_cases["document_over_25mb"])
    assert oversized
    for record, result in results["documents"]:
        if record["id"] in oversized:
            assert isinstance(result, Rejection)
            assert result.code == "deferred_to_sharepoint"


# --- owners --------------------------------------------------------------------------------


def test_owner_fallbacks_are_reported(tenant: Tenant) -> None:
    users = tenant.records["users"]
    resolution = resolve_owners(users, _systemusers(tenant), FALLBACK)
    assert {m[0] for m in resolution.matched} == {users[0]["id"], users[1]["id"]}
    orphaned = resolution.orphaned_owner_report()
    assert {row["user_id"] for row in orphaned} == {u["id"] for u in users[2:]}
    assert all(resolution.owners[row["user_id"] or ""] == FALLBACK for row in orphaned)
    no_email = [row for row in orphaned if row["email"] is None]
    assert all(row["reason"] == "no email in BackDocket" for row in no_email)
    assert len(no_email) == len(tenant.dirty_cases["user_no_email"])


def test_shared_emails_are_reported() -> None:
    users = [
        {"id": "u1", "name": "A", "email": "same@firm.example"},
        {"id": "u2", "name": "B", "email": " SAME@firm.example "},
    ]
    resolution = resolve_owners(users, {"same@firm.example": "g1"}, FALLBACK)
    assert resolution.owners == {"u1": "g1", "u2": "g1"}
    assert resolution.shared_emails == {"same@firm.example": ("u1", "u2")}


def test_records_owned_by_unknown_users_get_the_fallback(
    tenant: Tenant, ctx: MappingContext
) -> None:
    payload = _one("contacts", _record(tenant, "contacts", owner_id="usr_missing"), ctx)
    assert payload.fields["ownerid"] == FALLBACK
    assert any("fallback owner" in note for note in payload.notes)


def test_users_workflows_and_templates_are_not_loaded(
    results: dict[str, list[tuple[Record, TransformResult]]],
) -> None:
    expected = {
        "users": "resolved_as_owner",
        "workflows": "rebuild_in_power_automate",
        "merge_templates": "no_destination_object",
    }
    for collection, code in expected.items():
        assert results[collection]
        for _, result in results[collection]:
            assert isinstance(result, Rejection)
            assert (result.outcome, result.code) == ("skipped", code)


# --- custom fields and the schema plan -----------------------------------------------------


def test_schema_plan_has_custom_tables_keys_and_columns(tenant: Tenant) -> None:
    plan = schema_plan(tenant.records["custom_field_definitions"])
    tables = plan["tables"]
    assert tables["crm_matter"]["custom"]
    assert tables["crm_claim"]["custom"]
    assert plan["custom_table_count"] == 2
    for name, spec in tables.items():
        if name != "annotation":
            assert spec["alternate_keys"] == ["crm_sourceid"]
    matter = tables["crm_matter"]["columns"]
    assert {"crm_mattertype", "crm_status", "crm_courtjurisdiction", "crm_openingdate"} <= set(
        matter
    )
    assert matter["crm_liens"]["type"] == "multiselectpicklist"
    assert [o["value"] for o in matter["crm_liens"]["options"]][:2] == [
        OPTION_BASE,
        OPTION_BASE + 1,
    ]
    assert matter["crm_case_summary"]["type"] == "memo"
    assert tables["crm_claim"]["columns"]["crm_matterid"]["required"] is True
    assert tables["contact"]["columns"][column_name("crm", "cf_date_of_birth")]["type"] == (
        "dateonly"
    )


def test_computed_fields_are_decomposed_not_columns(
    tenant: Tenant,
    ctx: MappingContext,
    results: dict[str, list[tuple[Record, TransformResult]]],
) -> None:
    plan = schema_plan(tenant.records["custom_field_definitions"])
    assert "crm_days_open" not in plan["tables"]["crm_matter"]["columns"]
    assert plan["decomposed"]["crm_matter.cf_days_open"]["sources"] == [
        "opened_date",
        "closed_date",
    ]
    [definition] = [r for r, _ in results["custom_field_definitions"] if r["key"] == "cf_days_open"]
    rejection = transform("custom_field_definitions", definition, ctx)
    assert isinstance(rejection, Rejection)
    assert rejection.code == "computed_field_decomposed"
    assert "opened_date" in rejection.reason
    record = _record(tenant, "matters", custom_fields={"cf_days_open": 42})
    payload = _one("matters", record, ctx)
    assert not any("days_open" in name for name in payload.fields)
    assert any("cf_days_open" in n and "opened_date, closed_date" in n for n in payload.notes)


def test_custom_values_convert_to_dataverse_forms(tenant: Tenant, ctx: MappingContext) -> None:
    record = _record(
        tenant,
        "matters",
        custom_fields={
            "cf_liens": ["hospital", "medicare"],
            "cf_injury_severity": "severe",
            "cf_settlement_offer": "$12,500 USD",
            "cf_legacy": "x",
        },
    )
    payload = _one("matters", record, ctx)
    assert payload.fields["crm_liens"] == f"{OPTION_BASE + 2},{OPTION_BASE}"
    assert payload.fields["crm_injury_severity"] == OPTION_BASE + 2
    assert "crm_settlement_offer" not in payload.fields
    assert any("crm_settlement_offer" in note for note in payload.notes)
    assert any("cf_legacy" in note for note in payload.notes)


# --- intake --------------------------------------------------------------------------------


def test_intake_becomes_a_lead_owned_by_its_attorney(tenant: Tenant, ctx: MappingContext) -> None:
    attorney = tenant.records["users"][1]["id"]
    record = _record(
        tenant,
        "intake_submissions",
        prospect_name="Chloé Rossi",
        prospect_email="chloe@example.com",
        referral_source="online_form",
        case_type_interest="dog_bite",
        submitted_at="2025-05-05T09:30:00Z",
        assigned_to_id=attorney,
        status="prospective",
        converted_matter_id=None,
    )
    payload = _one("intake_submissions", record, ctx)
    assert payload.object == "lead"
    assert payload.external_id == f"intake:{record['id']}"
    assert payload.fields["ownerid"] == f"guid-{attorney}"
    assert (payload.fields["firstname"], payload.fields["lastname"]) == ("Chloé", "Rossi")
    assert payload.fields["emailaddress1"] == "chloe@example.com"
    assert payload.fields["leadsourcecode"] == 8
    assert payload.fields["crm_casetypeinterest"] == MATTER_TYPE_OPTIONS["dog_bite"]
    assert payload.fields["crm_initialcontactdate"] == "2025-05-05T09:30:00.000+00:00"
    assert "crm_referralsource" in payload.fields


def test_matter_parties_are_reported_not_loaded(
    results: dict[str, list[tuple[Record, TransformResult]]],
) -> None:
    for record, result in results["matter_parties"]:
        assert isinstance(result, Rejection)
        assert result.code == "no_destination_object"
        assert str(record["matter_id"]) in result.reason


def test_long_text_is_truncated_to_the_column_length_with_a_note(
    tenant: Tenant, ctx: MappingContext
) -> None:
    record = _record(tenant, "tasks", subject="⚖️" * 150 + "x" * 10)
    payload = _one("tasks", record, ctx)
    assert len(str(payload.fields["subject"]).encode("utf-16-le")) // 2 <= 200
    assert any("subject: truncated" in note for note in payload.notes)


# --- what real Dataverse needs of the plan (issue 9) ----------------------------------------

DOCUMENT_FIELD = {
    "id": "cfd_doc",
    "entity": "documents",
    "key": "cf_bates_range",
    "label": "Bates range",
    "type": "text",
}


def test_notes_get_no_custom_columns_and_no_alternate_key(tenant: Tenant) -> None:
    """The Note table takes no custom columns (annotation: CanCreateAttributes false,
    learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation)."""
    plan = schema_plan([*tenant.records["custom_field_definitions"], DOCUMENT_FIELD])
    note = plan["tables"]["annotation"]
    assert note["columns"] == {}
    assert note["alternate_keys"] == []
    assert plan["custom_fields_in_note_text"] == ["documents.cf_bates_range"]


def test_document_custom_values_are_kept_in_the_note_text(tenant: Tenant) -> None:
    ctx = _context(tenant)
    ctx = MappingContext(
        ctx.owners, ctx.fallback_owner, {"documents": (DOCUMENT_FIELD,)}, ctx.settings
    )
    record = _record(
        tenant, "documents", size_bytes=MB, version=3, custom_fields={"cf_bates_range": "B-1"}
    )
    [note] = _payloads(transform("documents", record, ctx))
    text = str(note.fields["notetext"])
    assert "Version 3 in BackDocket" in text
    assert "Bates range: B-1" in text
    assert not any(name.startswith("crm_") for name in note.fields)
    definition = transform("custom_field_definitions", DOCUMENT_FIELD, ctx)
    assert isinstance(definition, Rejection)
    assert "note's text" in definition.reason


def test_plan_asks_activities_notes_and_documents_of_the_tables_they_regard(
    tenant: Tenant,
) -> None:
    """Activities, notes and document locations exist only on tables that have them on
    (EntityMetadata HasActivities, HasNotes, IsDocumentManagementEnabled)."""
    plain = schema_plan([])["tables"]
    assert plain["crm_matter"]["HasActivities"] is True
    assert plain["crm_matter"]["HasNotes"] is True
    assert "IsDocumentManagementEnabled" not in plain["crm_matter"]
    shared = schema_plan([], sharepoint=True)["tables"]
    for table in ("crm_matter", "contact"):
        assert shared[table]["IsDocumentManagementEnabled"] is True


def test_plan_lookups_name_their_schema_name_and_every_polymorphic_target() -> None:
    tables = schema_plan([])["tables"]
    assert tables["crm_claim"]["columns"]["crm_matterid"]["schema_name"] == "crm_MatterId"
    for table in ("task", "appointment"):
        assert tables[table]["lookups"]["regardingobjectid.crm_matter"] == {
            "attribute": "regardingobjectid",
            "target": "crm_matter",
        }
    assert set(tables["annotation"]["lookups"]) == {"objectid.crm_matter", "objectid.contact"}
