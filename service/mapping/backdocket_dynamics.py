"""BackDocket → Microsoft Dynamics 365 Sales (Dataverse): schema plan, owners and transforms.

The object map follows the migration seed: companies → ``account``; contacts →
``contact``, or ``account`` when the contact is an organization (see
:func:`is_organization`); matters → the custom ``{prefix}_matter`` table; claims →
``opportunity`` when revenue-generating, else the custom ``{prefix}_claim`` table;
tasks and e-signature requests → ``task``; events → ``appointment``; notes and
documents → ``annotation`` (plus the record's ``sharepointdocumentlocation`` folder when a
SharePoint site is configured, and then a file over the attachment limit goes into that
folder instead, as a ``keys.SHAREPOINT_FILES`` payload); intake submissions → ``lead``.
Users become owners, custom field definitions become the schema plan, and workflows,
merge templates and matter parties are reported, not loaded.

Conventions of the Dataverse payloads:

* ``Payload.object`` is the table's logical name; every table but ``annotation`` carries
  the alternate key column ``{prefix}_sourceid`` holding ``Payload.external_id``. Notes
  take no custom column (so no key): the client upserts them by a primary key derived
  from the external id, and what BackDocket knows beyond the note goes in its text.
* ``Payload.fields`` use column logical names; option sets hold their int values.
* ``Payload.refs`` keys name lookup columns, never navigation properties: a
  single-target lookup by its logical name (``crm_matterid``), a polymorphic one as
  ``column.target`` (``regardingobjectid.crm_matter``, ``parentcustomerid.account``,
  :func:`~adapters.dynamics.keys.lookup_key`); ``Ref.object`` is always the target
  table's logical name. The client binds each through the navigation property the
  metadata reports, and the schema plan lists every one so the gate checks it.
* ``ownerid`` and the other systemuser lookups (the matter's assigned attorney)
  are fields holding a systemuser GUID resolved from ``ctx.owners``: users are not
  loaded records the id map could resolve. The client binds every column the
  schema plan types as a systemuser lookup to ``/systemusers(<guid>)``; the
  mapping never writes the wire form.

Transforms are pure and prefer loading a record with a note over failing it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time
from typing import Any

from adapters.base import Record
from adapters.dynamics.keys import SHAREPOINT_FILES, library_ref, lookup_key, sharepoint_name
from service.mapping import transforms as tx
from service.mapping.backdocket import (
    NO_SUBJECT,
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
from service.mapping.value_maps_dynamics import (
    ACCOUNT_KIND,
    ACCOUNT_KIND_OPTIONS,
    BILLING_TYPE,
    BILLING_TYPE_OPTIONS,
    CASE_CATEGORY,
    CASE_CATEGORY_OPTIONS,
    CASE_TYPE,
    CLAIM_KIND,
    CLAIM_KIND_OPTIONS,
    CLAIM_STATUS,
    CLAIM_STATUS_OPTIONS,
    CONTACT_INTAKE_STATUS,
    CONTACT_INTAKE_STATUS_OPTIONS,
    ESIGN_STATUS,
    ESIGN_STATUS_OPTIONS,
    ESIGN_TASK_STATUS,
    INTAKE_STATUS,
    INTAKE_STATUS_OPTIONS,
    LEAD_SOURCE,
    MATTER_STATUS,
    OPTION_LABELS,
    PRACTICE_AREA,
    PRACTICE_AREA_OPTIONS,
    REFERRAL_SOURCE,
    REFERRAL_SOURCE_OPTIONS,
    TASK_PRIORITY,
    TASK_STATE_OF_STATUS,
    TASK_STATUS,
    TASK_STATUS_FALLBACK,
    option_values,
)
from service.mapping.value_maps_dynamics import (
    MATTER_STATUS_OPTIONS as MATTER_STATUS_OPTIONS,  # re-exported: the default maps moved
)
from service.mapping.value_maps_dynamics import (
    MATTER_TYPE_OPTIONS as MATTER_TYPE_OPTIONS,
)
from service.mapping.value_maps_dynamics import (
    OPTION_BASE as OPTION_BASE,
)

DEFAULT_PREFIX = "crm"
"""Publisher prefix of custom tables and columns (setting ``publisher_prefix``)."""

DEFAULT_MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
"""Dataverse's default annotation file limit (configurable up to 128 MB in the
environment; setting ``max_attachment_bytes``)."""

MAX_CONFIGURABLE_ATTACHMENT_BYTES = 128 * 1024 * 1024

DEFAULT_FIRM_DOMAINS: tuple[str, ...] = ("hartwell-law.example",)
"""The firm's own email domains (setting ``firm_domains``): the generated tenant's
firm domain. Appointment invitees outside them need re-inviting after cutover."""

PROFESSIONAL_CUSTOM_TABLE_LIMIT = 15
"""Dynamics 365 Sales Professional caps custom tables at 15."""

LOAD_ORDER: tuple[str, ...] = (
    "companies",
    "contacts",
    "matters",
    "claims",
    "intake_submissions",
    "tasks",
    "events",
    "esignature_requests",
    "notes",
    "documents",
)
"""Source collections in the order their lookups need them loaded: accounts (companies,
and organization contacts within ``contacts``) before the contacts that point at them."""

DEPENDS_ON: Mapping[str, tuple[str, ...]] = {
    "companies": (),
    "contacts": ("companies",),
    "matters": ("companies", "contacts"),
    "claims": ("matters", "companies", "contacts"),
    "intake_submissions": ("matters",),
    "tasks": ("contacts", "matters"),
    "events": ("contacts", "matters"),
    "esignature_requests": ("matters",),
    "notes": ("contacts", "matters"),
    "documents": ("contacts", "matters"),
}
"""The collections each collection's lookups point into (self-references such as
account.parentaccountid load in a second pass and are not listed)."""

COLLECTION_OBJECTS: Mapping[str, tuple[str, ...]] = {
    "companies": ("account",),
    "contacts": ("account", "contact"),
    "matters": ("{prefix}_matter",),
    "claims": ("opportunity", "{prefix}_claim"),
    "intake_submissions": ("lead",),
    "tasks": ("task",),
    "events": ("appointment",),
    "esignature_requests": ("task",),
    "notes": ("annotation",),
    "documents": ("annotation", "sharepointdocumentlocation"),
    "matter_parties": (),
    "users": (),
    "custom_field_definitions": (),
    "workflows": (),
    "merge_templates": (),
}
"""Source collection → tables it can produce, in load order (``{prefix}`` is the
publisher prefix; see :func:`collection_objects`). Within ``contacts`` the accounts
made from organization contacts load before the contacts."""

EXTERNAL_ID_PREFIXES: Mapping[str, str] = {
    "notes": "note:",
    "esignature_requests": "esign:",
    "intake_submissions": "intake:",
}
"""Collections sharing a table with another collection (annotation, task) get a prefix:
BackDocket ids are unique per collection only. Organization contacts, which share
``account`` with companies, use ``contact:`` (see :func:`external_id`)."""

ORGANIZATION_PREFIX = "contact:"

NOT_LOADED: Mapping[str, tuple[str, str]] = {
    "users": (
        "resolved_as_owner",
        "BackDocket users are matched to Dynamics systemusers by email and become owners",
    ),
    "custom_field_definitions": (
        "schema_definition",
        "custom field definitions become columns of the schema plan",
    ),
    "workflows": (
        "rebuild_in_power_automate",
        "workflows do not migrate; exported as a JSON reference to rebuild in Power Automate",
    ),
    "merge_templates": (
        "no_destination_object",
        "merge templates have no Dynamics table; exported as reference for Word templates",
    ),
}

# --- Dataverse column facts --------------------------------------------------------------

TEXT_LENGTHS: Mapping[str, Mapping[str, int]] = {
    "account": {
        "name": 160,
        "websiteurl": 200,
        "address1_line1": 250,
        "address1_city": 80,
        "address1_stateorprovince": 50,
        "address1_postalcode": 20,
        "address1_country": 80,
        "description": 2000,
    },
    "contact": {
        "firstname": 50,
        "lastname": 50,
        "emailaddress1": 100,
        "telephone1": 50,
        "mobilephone": 50,
        "address1_line1": 250,
        "address1_city": 80,
        "address1_stateorprovince": 50,
        "address1_postalcode": 20,
        "address1_country": 80,
    },
    "lead": {
        "subject": 300,
        "firstname": 50,
        "lastname": 50,
        "emailaddress1": 100,
        "telephone1": 50,
        "description": 2000,
    },
    "opportunity": {"name": 300, "description": 2000},
    "task": {"subject": 200, "description": 2000},
    "appointment": {"subject": 200, "location": 200, "description": 2000},
    "annotation": {"subject": 500, "filename": 255, "mimetype": 256, "notetext": 100_000},
    "sharepointdocumentlocation": {"name": 160, "relativeurl": 255, "absoluteurl": 2000},
}
"""Maximum lengths of the standard text columns the transforms write."""

CUSTOM_TEXT_LENGTH = 4000
MEMO_LENGTH = 1_048_576
NAME_LENGTH = 200

ORGANIZATION_SUFFIXES = re.compile(
    r"(?:\b(?:llc|l\.l\.c\.|llp|l\.l\.p\.|inc\.?|incorporated|ltd\.?|limited|corp\.?"
    r"|corporation|co\.|company|gmbh|plc|s\.a\.|p\.c\.|pllc|group|holdings|partners"
    r"|associates|law firm|insurance)\s*)$",
    re.IGNORECASE,
)
ORGANIZATION_TYPES = frozenset({"organization", "organisation", "company", "business", "firm"})

KNOWN_COMPUTED_SOURCES: Mapping[str, tuple[str, ...]] = {
    "cf_days_open": ("opened_date", "closed_date"),
}
"""Source values of BackDocket computed fields whose definition does not name them."""

LOGICAL_NAME_LENGTH = 50

NO_CUSTOM_COLUMNS = frozenset({"annotation"})
"""Tables that take no custom column, so no ``{prefix}_sourceid`` and no alternate key:
the Note table (CanCreateAttributes false,
https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation).
The client upserts their rows by a primary key derived from the external id."""

TABLE_SETTINGS = ("HasActivities", "HasNotes", "IsDocumentManagementEnabled")
"""EntityMetadata booleans a plan table may require: activities may regard the table,
notes may hang off it, SharePoint document locations may point at it
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/entitymetadata).
A custom table has none unless its maker ticks them."""


def prefix_of(ctx: MappingContext) -> str:
    return str(ctx.settings.get("publisher_prefix") or DEFAULT_PREFIX)


def source_id_column(prefix: str) -> str:
    """The alternate-key column every table carries: ``crm_sourceid``."""
    return f"{prefix}_sourceid"


def matter_table(prefix: str) -> str:
    return f"{prefix}_matter"


def claim_table(prefix: str) -> str:
    return f"{prefix}_claim"


def collection_objects(prefix: str, sharepoint: bool = False) -> dict[str, tuple[str, ...]]:
    """COLLECTION_OBJECTS with the publisher prefix filled in; with a SharePoint site,
    documents also become files in SharePoint (``keys.SHAREPOINT_FILES``)."""
    objects = {k: tuple(t.format(prefix=prefix) for t in v) for k, v in COLLECTION_OBJECTS.items()}
    if sharepoint:
        objects["documents"] = (*objects["documents"], SHAREPOINT_FILES)
    return objects


def external_id(collection: str, source_id: str) -> str:
    """``{prefix}_sourceid`` of the record made from ``collection``/``source_id``."""
    return f"{EXTERNAL_ID_PREFIXES.get(collection, '')}{source_id}"


# --- small helpers -----------------------------------------------------------------------


def column_name(prefix: str, key: str) -> str:
    """Dataverse logical name for a BackDocket custom field key: ``cf_date_of_birth`` →
    ``crm_date_of_birth`` (ASCII lowercase letters, digits and underscores)."""
    stem = key[3:] if key.lower().startswith("cf_") else key
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().lower()
    words = [w for w in re.split(r"[^a-z0-9]+", folded) if w]
    name = "_".join(words) or "field"
    return f"{prefix}_{name}"[:LOGICAL_NAME_LENGTH].rstrip("_")


def _as_utc_midnight(value: Any) -> str:
    day = tx.parse_date(value)
    return tx.iso_datetime(datetime.combine(day, time.min, UTC))


# --- the payload under construction ------------------------------------------------------


@dataclass
class _Draft(Draft):
    """A Dataverse row being built: option sets by int value, bindings by Ref."""

    def field_length(self, name: str) -> int | None:
        return TEXT_LENGTHS.get(self.object, {}).get(name)

    def money(self, name: str, value: Any) -> None:
        if value is None or value == "":
            return
        try:
            self.put(name, tx.money(value))
        except ValueError:
            self.note(f"{name}: {value!r} is not a decimal amount; left empty")

    def option(
        self, name: str, value: Any, options: Mapping[str, int], fallback: int | None = None
    ) -> int | None:
        """An option-set column through a value map; an unmapped value is left empty (or
        set to the fallback) with a note."""
        if value is None or value == "":
            return None
        mapped = options.get(str(value).strip().lower())
        if mapped is None:
            mapped = fallback
            self.note(
                f"{name}: BackDocket value {value!r} has no option; "
                + ("left empty" if fallback is None else f"set to {fallback}")
            )
        if mapped is not None:
            self.put(name, mapped)
        return mapped

    def option_map(self, name: str, value: Any, values: ValueMap, ctx: MappingContext) -> None:
        """An option-set column through the run's value map (the confirmed mapping file's,
        else the default) and its fallback."""
        if value is None or value == "":
            return
        found = values.values(ctx).get(str(value).strip().lower())
        if found is None:
            fallback = values.fallback_in(ctx)
            found = None if fallback is None else int(fallback)
            self.note(
                f"{name}: BackDocket value {value!r} has no option; "
                + ("left empty" if found is None else f"set to {found}")
            )
        if found is not None:
            self.put(name, int(found))

    def ref(self, name: str, collection: str, table: str, source_id: Any) -> bool:
        """Point lookup ``name`` (``crm_matterid``, ``regardingobjectid.crm_matter``) at the
        row made from ``collection``/``source_id``."""
        if blank(source_id):
            return False
        self.refs[name] = Ref(collection, str(source_id), table)
        return True

    def owner(self, ctx: MappingContext, user_id: Any, role: str) -> str:
        """ownerid: a systemuser GUID, the fallback owner when the user does not resolve."""
        owner = self.resolve_owner(ctx, user_id, role, "ownerid")
        self.put("ownerid", owner)
        return owner

    def build(self, ctx: MappingContext, external: str, file: FileRef | None = None) -> Payload:
        fields = dict(self.fields)
        if self.object not in NO_CUSTOM_COLUMNS:
            fields[source_id_column(prefix_of(ctx))] = external
        return self.payload(external, fields=fields, file=file)


def _email(draft: _Draft, name: str, value: Any) -> None:
    draft.email(name, value, TEXT_LENGTHS.get(draft.object, {}).get(name, 100))


def _names(draft: _Draft, first: Any, last: Any) -> None:
    draft.names(first, last, first_field="firstname", last_field="lastname")


def _address(draft: _Draft, address: Any) -> None:
    if not isinstance(address, Mapping):
        return
    for part, column in (
        ("street", "address1_line1"),
        ("city", "address1_city"),
        ("state", "address1_stateorprovince"),
        ("postal_code", "address1_postalcode"),
        ("country", "address1_country"),
    ):
        draft.text(column, address.get(part))


def _subject(draft: _Draft, value: Any) -> None:
    draft.required_text("subject", value, NO_SUBJECT)


def _regarding(draft: _Draft, record: Record, prefix: str, activity: str) -> None:
    """Bind the activity's polymorphic regarding lookup: the matter when there is one
    (the case file is where the firm looks), else the contact."""
    matter, contact = record.get("matter_id"), record.get("contact_id")
    if draft.ref(
        lookup_key("regardingobjectid", matter_table(prefix)),
        "matters",
        matter_table(prefix),
        matter,
    ):
        if not blank(contact):
            draft.note(
                f"regarding: matter {matter} chosen; contact {contact} is also linked in "
                "BackDocket and is not the regarding record"
            )
    elif not draft.ref(lookup_key("regardingobjectid", "contact"), "contacts", "contact", contact):
        draft.note("regarding: no matter or contact in BackDocket; activity unlinked")


def _recurrence(draft: _Draft, prefix: str, rule: Any) -> None:
    if not blank(rule):
        draft.text(f"{prefix}_recurrencerule", rule, CUSTOM_TEXT_LENGTH)
        draft.note(f"recurring in BackDocket ({rule}); flagged for admin review")


# --- owners ------------------------------------------------------------------------------


def resolve_owners(
    users: Sequence[Record], systemusers_by_email: Mapping[str, str], fallback_owner: str
) -> OwnerResolution:
    """Match BackDocket users to systemusers (by internal email) on trimmed, case-insensitive
    email; the unmatched get the fallback owner and are reported as orphaned owners."""
    return match_owners(
        users,
        systemusers_by_email,
        fallback_owner,
        unmatched_reason="no licensed Dynamics systemuser has this email",
    )


# --- the schema plan ---------------------------------------------------------------------

CUSTOM_FIELD_TYPES: Mapping[str, tuple[str, int | None]] = {
    "text": ("string", CUSTOM_TEXT_LENGTH),
    "textarea": ("memo", MEMO_LENGTH),
    "formatted_text": ("memo", MEMO_LENGTH),
    "number": ("decimal", None),
    "currency": ("money", None),
    "date": ("dateonly", None),
    "datetime": ("datetime", None),
    "boolean": ("boolean", None),
    "picklist": ("picklist", None),
    "multi_picklist": ("multiselectpicklist", None),
}
"""BackDocket custom field type → (Dataverse column type, max length). Text is nvarchar,
formatted text nvarchar(max) memo (as plain text), pick-lists option sets. Computed
fields get no column: Dataverse computes its own (see ``decomposed`` in the plan)."""
CUSTOM_FIELD_FALLBACK_TYPE: tuple[str, int | None] = ("string", CUSTOM_TEXT_LENGTH)

CUSTOM_FIELD_TABLES: Mapping[str, str] = {
    "contacts": "contact",
    "companies": "account",
    "matters": "{prefix}_matter",
    "claims": "{prefix}_claim",
    "tasks": "task",
    "events": "appointment",
}
"""BackDocket entity → the table its custom columns are created on."""

NOTE_TEXT_ENTITIES: Mapping[str, str] = {"documents": "annotation"}
"""Entities whose table takes no custom column (notes): their custom values are written
into the note's text, one ``Label: value`` line each."""


def _col(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, **extra}


def _text_col(length: int = CUSTOM_TEXT_LENGTH) -> dict[str, Any]:
    return _col("string", max_length=length)


def _option_col(name: str, options: Mapping[str, int], multi: bool = False) -> dict[str, Any]:
    labels = OPTION_LABELS.get(name, {})
    return _col(
        "multiselectpicklist" if multi else "picklist",
        option_set=name,
        options=[{"value": v, "label": labels.get(k, tx.humanize(k))} for k, v in options.items()],
    )


def _lookup_col(target: str, schema_name: str, required: bool = False) -> dict[str, Any]:
    """A lookup column; ``schema_name`` is the case-sensitive SchemaName the admin gives it,
    which real Dataverse also makes its navigation property (``crm_MatterId``)."""
    return _col("lookup", target=target, schema_name=schema_name, required=required)


def planned_columns(prefix: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Table → custom column → spec, besides ``{prefix}_sourceid`` and the custom fields."""
    p, matter = prefix, matter_table(prefix)
    return {
        "account": {
            f"{p}_accountkind": _option_col("accountkind", ACCOUNT_KIND_OPTIONS),
            f"{p}_sourcecreatedon": _col("datetime"),
        },
        "contact": {
            f"{p}_barnumber": _text_col(50),
            f"{p}_intakestatus": _option_col("contactintakestatus", CONTACT_INTAKE_STATUS_OPTIONS),
            f"{p}_sourcecreatedon": _col("datetime"),
        },
        matter: {
            f"{p}_name": {**_text_col(NAME_LENGTH), "primary_name": True},
            f"{p}_matternumber": _text_col(100),
            f"{p}_mattertype": _option_col("mattertype", MATTER_TYPE_OPTIONS),
            f"{p}_casecategory": _option_col("casecategory", CASE_CATEGORY_OPTIONS),
            f"{p}_status": _option_col("matterstatus", MATTER_STATUS_OPTIONS),
            f"{p}_practicearea": _option_col("practicearea", PRACTICE_AREA_OPTIONS),
            f"{p}_billingtype": _option_col("billingtype", BILLING_TYPE_OPTIONS),
            f"{p}_courtjurisdiction": _text_col(),
            f"{p}_openingdate": _col("dateonly"),
            f"{p}_fileddate": _col("dateonly"),
            f"{p}_closeddate": _col("dateonly"),
            f"{p}_statuteoflimitations": _col("dateonly"),
            f"{p}_claimamount": _col("money"),
            f"{p}_estimatedfees": _col("money"),
            f"{p}_description": _col("memo", max_length=MEMO_LENGTH),
            f"{p}_assignedattorney": _lookup_col("systemuser", f"{p}_AssignedAttorney"),
            f"{p}_clientaccountid": _lookup_col("account", f"{p}_ClientAccountId"),
            f"{p}_primarycontactid": _lookup_col("contact", f"{p}_PrimaryContactId"),
            f"{p}_sourcecreatedon": _col("datetime"),
        },
        claim_table(p): {
            f"{p}_name": {**_text_col(NAME_LENGTH), "primary_name": True},
            f"{p}_matterid": _lookup_col(matter, f"{p}_MatterId", required=True),
            f"{p}_claimkind": _option_col("claimkind", CLAIM_KIND_OPTIONS),
            f"{p}_amount": _col("money"),
            f"{p}_status": _option_col("claimstatus", CLAIM_STATUS_OPTIONS),
            f"{p}_closedate": _col("dateonly"),
            f"{p}_revenuegenerating": _col("boolean"),
        },
        "opportunity": {
            f"{p}_matterid": _lookup_col(matter, f"{p}_MatterId"),
            f"{p}_claimkind": _option_col("claimkind", CLAIM_KIND_OPTIONS),
            f"{p}_claimstatus": _option_col("claimstatus", CLAIM_STATUS_OPTIONS),
        },
        "lead": {
            f"{p}_referralsource": _option_col("referralsource", REFERRAL_SOURCE_OPTIONS),
            f"{p}_casetypeinterest": _option_col("mattertype", MATTER_TYPE_OPTIONS),
            f"{p}_initialcontactdate": _col("datetime"),
            f"{p}_intakeformtype": _text_col(100),
            f"{p}_intakestatus": _option_col("intakestatus", INTAKE_STATUS_OPTIONS),
            f"{p}_convertedmatterid": _lookup_col(matter, f"{p}_ConvertedMatterId"),
        },
        "task": {
            f"{p}_recurrencerule": _text_col(),
            f"{p}_approvalrequest": _col("memo", max_length=MEMO_LENGTH),
            f"{p}_esignstatus": _option_col("esignstatus", ESIGN_STATUS_OPTIONS),
            f"{p}_signerlist": _col("memo", max_length=MEMO_LENGTH),
            f"{p}_envelopeid": _text_col(64),
        },
        "appointment": {
            f"{p}_recurrencerule": _text_col(),
            f"{p}_requiredattendees": _col("memo", max_length=MEMO_LENGTH),
            f"{p}_externalinvitees": _col("memo", max_length=MEMO_LENGTH),
            f"{p}_reinvitationrequired": _col("boolean"),
        },
        "annotation": {},
        "sharepointdocumentlocation": {},
    }


def _binding(attribute: str, target: str) -> tuple[str, dict[str, str]]:
    return lookup_key(attribute, target), {"attribute": attribute, "target": target}


def planned_lookups(prefix: str, sharepoint: bool) -> dict[str, dict[str, dict[str, str]]]:
    """Table → the standard lookups the load binds (``column.target`` or a single-target
    column) → column and target. Nothing for the admin to create, but each binds only
    where a relationship exists (regarding a custom table needs its HasActivities, a
    note's objectid its HasNotes…), so the gate checks every one before any write."""
    matter = matter_table(prefix)
    regards = dict(_binding("regardingobjectid", t) for t in (matter, "contact"))
    folders = dict([_binding("parentsiteorlocation", "sharepointdocumentlocation")])
    return {
        "account": {"parentaccountid": {"attribute": "parentaccountid", "target": "account"}},
        "contact": dict([_binding("parentcustomerid", "account")]),
        "opportunity": dict(_binding("customerid", t) for t in ("account", "contact")),
        "task": regards,
        "appointment": regards,
        "annotation": dict(_binding("objectid", t) for t in (matter, "contact")),
        # Document locations are written only with a SharePoint site configured.
        "sharepointdocumentlocation": {**regards, **folders} if sharepoint else {},
    }


def planned_settings(prefix: str, sharepoint: bool) -> dict[str, dict[str, bool]]:
    """Table → the settings the admin switches on: the tables that tasks, appointments,
    notes (and, with a SharePoint site, document locations) point at."""
    wanted = {"HasActivities": True, "HasNotes": True}
    if sharepoint:
        wanted["IsDocumentManagementEnabled"] = True
    return {matter_table(prefix): wanted, "contact": dict(wanted)}


def _computed_sources(definition: Mapping[str, Any]) -> tuple[str, ...]:
    for key in ("source_fields", "depends_on", "sources"):
        found = definition.get(key)
        if isinstance(found, list | tuple) and found:
            return tuple(str(s) for s in found)
    return KNOWN_COMPUTED_SOURCES.get(str(definition.get("key")), ())


def _sources_text(sources: Sequence[str]) -> str:
    return ", ".join(sources) if sources else "its BackDocket inputs (formula not exported)"


def _definition_columns(
    prefix: str, definitions: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, str]]:
    """Table → BackDocket key → column logical name, unique per table against the
    planned columns (numbered in sorted key order, so names are stable)."""
    planned = planned_columns(prefix)
    keys: dict[str, set[str]] = {}
    for d in definitions:
        table = CUSTOM_FIELD_TABLES.get(str(d.get("entity")))
        if table is not None and d.get("key") and d.get("type") != "computed":
            keys.setdefault(table.format(prefix=prefix), set()).add(str(d["key"]))
    names: dict[str, dict[str, str]] = {}
    for table, table_keys in keys.items():
        taken = {*planned.get(table, {}), source_id_column(prefix)}
        for key in sorted(table_keys):
            base = column_name(prefix, key)
            name, number = base, 1
            while name in taken:
                number += 1
                name = f"{base[: LOGICAL_NAME_LENGTH - 3]}_{number}"
            taken.add(name)
            names.setdefault(table, {})[key] = name
    return names


def custom_column_targets(
    definitions: Sequence[Mapping[str, Any]], prefix: str = DEFAULT_PREFIX
) -> dict[str, dict[str, str]]:
    """Entity → custom field key → ``table.column`` the schema plan deploys for it
    (computed fields and note-text entities have none: see ``schema_plan``)."""
    names = _definition_columns(prefix, definitions)
    targets: dict[str, dict[str, str]] = {}
    for d in definitions:
        entity, key = str(d.get("entity")), str(d.get("key") or "")
        table = CUSTOM_FIELD_TABLES.get(entity, "").format(prefix=prefix)
        if key in names.get(table, {}):
            targets.setdefault(entity, {})[key] = f"{table}.{names[table][key]}"
    return targets


def _custom_column(definition: Mapping[str, Any]) -> dict[str, Any]:
    kind, length = CUSTOM_FIELD_TYPES.get(str(definition.get("type")), CUSTOM_FIELD_FALLBACK_TYPE)
    spec: dict[str, Any] = {
        "type": kind,
        "label": str(definition.get("label") or definition.get("key")),
    }
    if length is not None:
        spec["max_length"] = length
    if kind in ("picklist", "multiselectpicklist"):
        options = option_values(str(o) for o in definition.get("options") or ())
        spec["options"] = [{"value": v, "label": k} for k, v in options.items()]
    if kind == "decimal":
        spec.update(precision=4)
    return spec


def schema_plan(
    definitions: Sequence[Mapping[str, Any]], prefix: str = DEFAULT_PREFIX, sharepoint: bool = False
) -> dict[str, Any]:
    """The tables and columns the Dynamics admin creates before any record loads.

    Every target table but ``annotation`` (no custom columns) gets ``{prefix}_sourceid``
    (string, alternate key); the custom tables get their whole definition; each
    BackDocket custom field definition becomes one ``{prefix}_<key>`` column on the table
    its entity maps to. Computed fields get no column: they are listed under
    ``decomposed`` with their source values, to rebuild as Dataverse calculated/formula
    columns. Tables the activities and notes point at carry the settings to switch on
    (``HasActivities``…); ``lookups`` lists the standard lookups the load binds.
    """
    source_id = source_id_column(prefix)
    tables: dict[str, dict[str, Any]] = {}
    settings = planned_settings(prefix, sharepoint)
    lookups = planned_lookups(prefix, sharepoint)
    for table, planned in planned_columns(prefix).items():
        custom = table.startswith(f"{prefix}_")
        keyed = table not in NO_CUSTOM_COLUMNS
        tables[table] = {
            "custom": custom,
            "columns": {source_id: _text_col(100), **planned} if keyed else dict(planned),
            "alternate_keys": [source_id] if keyed else [],
            **settings.get(table, {}),
        }
        if lookups.get(table):
            tables[table]["lookups"] = lookups[table]
        if custom:
            tables[table]["ownership"] = "user"
    names = _definition_columns(prefix, definitions)
    decomposed: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    in_note_text: list[str] = []
    for d in definitions:
        entity, key = str(d.get("entity")), str(d.get("key") or "")
        target = CUSTOM_FIELD_TABLES.get(entity)
        if not key:
            continue
        if entity in NOTE_TEXT_ENTITIES:
            in_note_text.append(f"{entity}.{key}")
            continue
        if target is None:
            unmapped.append(f"{entity}.{key}")
            continue
        table = target.format(prefix=prefix)
        if d.get("type") == "computed":
            sources = _computed_sources(d)
            decomposed[f"{table}.{key}"] = {
                "label": str(d.get("label") or key),
                "sources": list(sources),
                "rebuild": "calculated or Power Fx formula column in Dataverse",
            }
            continue
        tables[table]["columns"].setdefault(names[table][key], _custom_column(d))
    custom_tables = sorted(t for t, spec in tables.items() if spec["custom"])
    plan: dict[str, Any] = {
        "publisher_prefix": prefix,
        "tables": tables,
        "decomposed": decomposed,
        "unmapped_custom_fields": unmapped,
        "custom_fields_in_note_text": in_note_text,
        "custom_table_count": len(custom_tables),
    }
    if len(custom_tables) > PROFESSIONAL_CUSTOM_TABLE_LIMIT:
        plan["warning"] = (
            f"{len(custom_tables)} custom tables exceed Sales Professional's "
            f"{PROFESSIONAL_CUSTOM_TABLE_LIMIT}; Enterprise or Premium is required"
        )
    return plan


# --- custom field values -----------------------------------------------------------------

_DEFINITIONS_SEEN: dict[int, tuple[object, dict[str, Mapping[str, Any]]]] = {}


def _definitions_by_key(definitions: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """key → definition, worked out once per run (keyed by the tuple's identity)."""
    seen = _DEFINITIONS_SEEN.get(id(definitions))
    if seen is not None and seen[0] is definitions:
        return seen[1]
    table = {str(d["key"]): d for d in definitions if d.get("key")}
    if len(_DEFINITIONS_SEEN) >= 64:
        _DEFINITIONS_SEEN.clear()
    _DEFINITIONS_SEEN[id(definitions)] = (definitions, table)
    return table


def _convert_custom(
    kind: str, value: Any, options: Sequence[str], mapped: Mapping[str, Any] | None = None
) -> JsonValue:
    """A custom value in its Dataverse form; ValueError when it is not of ``kind``.
    ``mapped``: the confirmed mapping file's option → option value map for the field (else
    the schema plan's own option values)."""
    if kind == "number":
        return tx.parse_number(value)
    if kind == "currency":
        return tx.money(value)
    if kind == "date":
        return tx.iso_date(tx.parse_date(value))
    if kind == "datetime":
        return tx.iso_datetime(tx.parse_datetime(value))
    if kind == "boolean":
        return tx.parse_bool(value)
    if kind in ("picklist", "multi_picklist"):
        values = option_values(options)
        if mapped is not None:
            values = {o: int(mapped.get(o, values[o])) for o in values}
        chosen = value if isinstance(value, list) else [value]
        if kind == "multi_picklist" and isinstance(value, str):
            chosen = value.split(";")
        if not chosen or any(isinstance(v, bool | list | dict) for v in chosen):
            raise ValueError(f"{value!r} is not an option")
        unknown = [v for v in chosen if str(v) not in values]
        if unknown:
            raise ValueError(f"{unknown!r} not among the field's options")
        picked = list(dict.fromkeys(values[str(v)] for v in chosen))
        if kind == "picklist":
            if len(picked) != 1:
                raise ValueError(f"{value!r} is not a single option")
            return picked[0]
        return ",".join(str(v) for v in picked)
    if kind == "formatted_text" and isinstance(value, str):
        return tx.html_to_text(value)
    if isinstance(value, bool | list | dict) or value is None:
        raise ValueError(f"{value!r} is not text")
    return str(value)


def _custom_fields(draft: _Draft, entity: str, record: Record, ctx: MappingContext) -> None:
    """Every custom value that converts to its declared type; computed values are not
    loaded (Dataverse computes its own) and are noted with their source values."""
    values = record.get("custom_fields")
    if not isinstance(values, Mapping) or not values:
        return
    prefix = prefix_of(ctx)
    raw = ctx.custom_fields.get(entity, ())
    definitions = _definitions_by_key(raw)
    names = _definition_columns(prefix, raw).get(draft.object, {})
    for key, value in values.items():
        definition = definitions.get(key)
        if definition is None:
            draft.note(f"custom field {key}: no definition in BackDocket; not migrated")
            continue
        if value is None or value == "" or value == []:
            continue
        kind = str(definition.get("type"))
        if kind == "computed":
            sources = _sources_text(_computed_sources(definition))
            draft.note(
                f"{key}: computed in BackDocket (value {value!r}) not loaded; decomposed to "
                f"source values {sources}, which Dataverse computes from"
            )
            continue
        target = field_target(ctx, entity, key)
        if target == "":
            draft.note(f"custom field {key}: not migrated (the confirmed mapping file says so)")
            continue
        name = target or names.get(key)
        if name is None:
            draft.note(f"custom field {key}: no column on {draft.object}; not migrated")
            continue
        options = tuple(str(o) for o in definition.get("options") or ())
        try:
            converted = _convert_custom(kind, value, options, custom_values(ctx, entity, key))
        except ValueError:
            draft.note(f"{name}: {value!r} is not a valid {kind} ({key}); left empty")
            continue
        limit = CUSTOM_FIELD_TYPES.get(kind, CUSTOM_FIELD_FALLBACK_TYPE)[1]
        if isinstance(converted, str) and kind not in ("multi_picklist",):
            draft.text(name, converted, limit)
        else:
            draft.put(name, converted)


# --- per-collection transforms -----------------------------------------------------------


def _company(record: Record, ctx: MappingContext) -> TransformResult:
    prefix = prefix_of(ctx)
    draft = _Draft("account")
    if draft.text("name", record.get("name")) is None:
        return Rejection(
            "failed",
            "missing_name",
            f"company {record['id']} has no name; account.name is required",
        )
    if not blank(record.get("domain")):
        draft.text("websiteurl", tx.website(str(record["domain"])))
    _address(draft, record.get("billing_address"))
    count = record.get("employee_count")
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 2**31:
        draft.put("numberofemployees", count)
    elif count is not None:
        draft.note(f"numberofemployees: {count!r} is not a whole number; left empty")
    draft.money("revenue", record.get("annual_revenue"))
    draft.option_map(f"{prefix}_accountkind", record.get("kind"), ACCOUNT_KIND, ctx)
    draft.timestamp(f"{prefix}_sourcecreatedon", record.get("created_at"))
    draft.put("ownerid", ctx.fallback_owner)
    parent = record.get("parent_company_id")
    if not blank(parent):
        if str(parent) == str(record["id"]):
            draft.note("parentaccountid: the company is its own parent in BackDocket; left empty")
        else:
            draft.deferred_refs["parentaccountid"] = Ref("companies", str(parent), "account")
    _custom_fields(draft, "companies", record, ctx)
    return [draft.build(ctx, external_id("companies", record["id"]))]


def organization_name(record: Record) -> str | None:
    """The organization a contact record stands for, or None when it is a person.

    Rule: a contact is an organization when BackDocket flags it so
    (``is_organization`` true, or ``contact_type``/``type`` one of organization,
    company, business, firm) and it has a name; or when it has no first name and its
    ``organization_name``/``company_name`` is filled, or its last name ends with a
    corporate suffix (LLC, Inc., Ltd, LLP, GmbH, P.C., Group, Insurance…). The name
    is the organization-name field, else the last name. Contacts with a first and a
    last name are always people.
    """
    org = plain(record.get("organization_name")) or plain(record.get("company_name"))
    first, last = plain(record.get("first_name")), plain(record.get("last_name"))
    kind = str(record.get("contact_type") or record.get("type") or "").strip().lower()
    flagged = record.get("is_organization") is True or kind in ORGANIZATION_TYPES
    if flagged:
        return org or last or first
    if first is not None:
        return None
    if org is not None:
        return org
    if last is not None and ORGANIZATION_SUFFIXES.search(last):
        return last
    return None


def is_organization(record: Record) -> bool:
    return organization_name(record) is not None


def _primary_company(draft: _Draft, links: Any, nav: str) -> None:
    """Bind the most recently linked company (ties: BackDocket's first); note the rest."""
    found = company_links(draft, links)
    if not found:
        draft.note(f"{nav}: no company in BackDocket; left empty")
        return
    primary = primary_link(found)
    draft.ref(nav, "companies", "account", primary.company_id)
    others = [link.company_id for link in found if link is not primary]
    if others:
        draft.note(
            f"{nav}: {len(found)} companies in BackDocket; bound to {primary.company_id} "
            f"(most recently linked); also linked to {', '.join(others)} (not migrated as "
            "relationships)"
        )


def _contact(record: Record, ctx: MappingContext) -> TransformResult:
    org = organization_name(record)
    if org is not None:
        return [_organization(record, ctx, org)]
    prefix = prefix_of(ctx)
    draft = _Draft("contact")
    first, last = record.get("first_name"), record.get("last_name")
    if blank(first) and blank(last) and not blank(record.get("name")):
        first, last = tx.split_name(str(plain(record.get("name"))))
    _names(draft, first, last)
    _email(draft, "emailaddress1", record.get("email"))
    draft.text("telephone1", record.get("phone"))
    draft.text("mobilephone", record.get("mobile"))
    _address(draft, record.get("address"))
    draft.text(f"{prefix}_barnumber", record.get("bar_number"), 50)
    draft.option_map(
        f"{prefix}_intakestatus", record.get("intake_status"), CONTACT_INTAKE_STATUS, ctx
    )
    draft.timestamp(f"{prefix}_sourcecreatedon", record.get("created_at"))
    draft.owner(ctx, record.get("owner_id"), "owner")
    _primary_company(draft, record.get("company_links"), lookup_key("parentcustomerid", "account"))
    _custom_fields(draft, "contacts", record, ctx)
    return [draft.build(ctx, external_id("contacts", record["id"]))]


def _organization(record: Record, ctx: MappingContext, name: str) -> Payload:
    """An organization contact becomes an account (``contact:<id>``), loaded before the
    contacts; its own company links become the parent account."""
    prefix = prefix_of(ctx)
    draft = _Draft("account")
    draft.text("name", name)
    draft.note(f"contact {record['id']} is an organization ({name!r}); loaded as an account")
    _email(draft, "emailaddress1", record.get("email"))
    draft.text("telephone1", record.get("phone"), 50)
    _address(draft, record.get("address"))
    draft.timestamp(f"{prefix}_sourcecreatedon", record.get("created_at"))
    draft.owner(ctx, record.get("owner_id"), "owner")
    _primary_company(draft, record.get("company_links"), "parentaccountid")
    if isinstance(record.get("custom_fields"), Mapping) and record["custom_fields"]:
        draft.note("contact custom fields have no columns on account; not migrated")
    return draft.build(ctx, f"{ORGANIZATION_PREFIX}{record['id']}")


def _matter(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    draft = _Draft(matter_table(p))
    number = draft.text(f"{p}_matternumber", record.get("number"), 100)
    name = plain(record.get("name"))
    draft.text(f"{p}_name", name or number or record["id"], NAME_LENGTH)
    draft.option_map(f"{p}_mattertype", record.get("claim_type"), CASE_TYPE, ctx)
    draft.option_map(f"{p}_casecategory", record.get("case_type"), CASE_CATEGORY, ctx)
    draft.option_map(f"{p}_status", record.get("status"), MATTER_STATUS, ctx)
    draft.option_map(f"{p}_practicearea", record.get("practice_area"), PRACTICE_AREA, ctx)
    draft.option_map(f"{p}_billingtype", record.get("billing_type"), BILLING_TYPE, ctx)
    draft.text(f"{p}_courtjurisdiction", record.get("court_jurisdiction"), CUSTOM_TEXT_LENGTH)
    for column, source in (
        ("openingdate", "opened_date"),
        ("fileddate", "filed_date"),
        ("closeddate", "closed_date"),
        ("statuteoflimitations", "statute_of_limitations"),
    ):
        draft.date(f"{p}_{column}", record.get(source))
    draft.money(f"{p}_claimamount", record.get("claim_amount"))
    draft.money(f"{p}_estimatedfees", record.get("estimated_fees"))
    draft.text(f"{p}_description", record.get("description"), MEMO_LENGTH)
    draft.timestamp(f"{p}_sourcecreatedon", record.get("created_at"))
    attorney = record.get("assigned_attorney_id")
    owner = draft.owner(ctx, attorney, "assigned attorney")
    if not blank(attorney) and str(attorney) in ctx.owners:
        draft.put(f"{p}_assignedattorney", owner)
    draft.ref(f"{p}_clientaccountid", "companies", "account", record.get("client_company_id"))
    draft.ref(f"{p}_primarycontactid", "contacts", "contact", record.get("primary_contact_id"))
    _custom_fields(draft, "matters", record, ctx)
    return [draft.build(ctx, external_id("matters", record["id"]))]


def matter_customers(matters: Iterable[Record]) -> dict[str, list[str]]:
    """Matter id → [collection, source id] of its customer, for opportunity bindings
    (setting ``matter_customers``): the client company, else the primary contact."""
    customers: dict[str, list[str]] = {}
    for matter in matters:
        if not blank(matter.get("client_company_id")):
            customers[str(matter["id"])] = ["companies", str(matter["client_company_id"])]
        elif not blank(matter.get("primary_contact_id")):
            customers[str(matter["id"])] = ["contacts", str(matter["primary_contact_id"])]
    return customers


def _claim(record: Record, ctx: MappingContext) -> TransformResult:
    """A revenue-generating claim is a sales opportunity; any other claim is a row of the
    custom claim table under its matter."""
    if blank(record.get("matter_id")):
        return Rejection(
            "failed",
            "missing_parent",
            f"claim {record['id']} has no matter_id; claims hang off their matter",
        )
    if record.get("revenue_generating") is True:
        return [_opportunity(record, ctx)]
    p = prefix_of(ctx)
    draft = _Draft(claim_table(p))
    draft.text(f"{p}_name", plain(record.get("name")) or record["id"], NAME_LENGTH)
    draft.ref(f"{p}_matterid", "matters", matter_table(p), record["matter_id"])
    draft.option_map(f"{p}_claimkind", record.get("claim_kind"), CLAIM_KIND, ctx)
    draft.money(f"{p}_amount", record.get("amount"))
    draft.put(f"{p}_revenuegenerating", False)
    draft.option_map(f"{p}_status", record.get("status"), CLAIM_STATUS, ctx)
    draft.date(f"{p}_closedate", record.get("close_date"))
    _custom_fields(draft, "claims", record, ctx)
    return [draft.build(ctx, external_id("claims", record["id"]))]


def _opportunity(record: Record, ctx: MappingContext) -> Payload:
    p = prefix_of(ctx)
    draft = _Draft("opportunity")
    draft.text("name", plain(record.get("name")) or record["id"])
    draft.money("estimatedvalue", record.get("amount"))
    draft.date("estimatedclosedate", record.get("close_date"))
    draft.ref(f"{p}_matterid", "matters", matter_table(p), record["matter_id"])
    draft.option_map(f"{p}_claimkind", record.get("claim_kind"), CLAIM_KIND, ctx)
    draft.option_map(f"{p}_claimstatus", record.get("status"), CLAIM_STATUS, ctx)
    if record.get("status") in ("won", "lost", "settled", "withdrawn"):
        draft.note(
            f"status {record['status']!r}: kept in {p}_claimstatus; close the opportunity "
            "as won/lost in Dynamics after load (the close is an action, not a column)"
        )
    _customer(draft, record, ctx)
    draft.put("ownerid", ctx.fallback_owner)
    if isinstance(record.get("custom_fields"), Mapping) and record["custom_fields"]:
        draft.note("claim custom fields have no columns on opportunity; not migrated")
    return draft.build(ctx, external_id("claims", record["id"]))


def _customer(draft: _Draft, record: Record, ctx: MappingContext) -> None:
    """The opportunity's polymorphic customer: the claim's own company/contact when it has
    one, else its matter's client company or primary contact (``matter_customers``)."""
    account, contact = lookup_key("customerid", "account"), lookup_key("customerid", "contact")
    if draft.ref(account, "companies", "account", record.get("client_company_id")):
        return
    if draft.ref(contact, "contacts", "contact", record.get("contact_id")):
        return
    customers = ctx.settings.get("matter_customers") or {}
    found = customers.get(str(record["matter_id"])) if isinstance(customers, Mapping) else None
    if isinstance(found, list | tuple) and len(found) == 2:
        collection, source_id = str(found[0]), str(found[1])
        if collection == "companies":
            draft.ref(account, "companies", "account", source_id)
            return
        if collection == "contacts":
            draft.ref(contact, "contacts", "contact", source_id)
            return
    draft.note(
        f"customerid: matter {record['matter_id']} has no client company or contact known; "
        "opportunity loads without a customer"
    )


def _intake(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    draft = _Draft("lead")
    prospect = plain(record.get("prospect_name")) or ""
    first, last = tx.split_name(prospect)
    _names(draft, first, last)
    form = plain(record.get("form_type"))
    draft.text("subject", f"Intake: {prospect or UNKNOWN_NAME}" + (f" ({form})" if form else ""))
    _email(draft, "emailaddress1", record.get("prospect_email"))
    draft.text("telephone1", record.get("prospect_phone"))
    draft.option_map("leadsourcecode", record.get("referral_source"), LEAD_SOURCE, ctx)
    draft.option_map(f"{p}_referralsource", record.get("referral_source"), REFERRAL_SOURCE, ctx)
    draft.option_map(f"{p}_casetypeinterest", record.get("case_type_interest"), CASE_TYPE, ctx)
    draft.timestamp(f"{p}_initialcontactdate", record.get("submitted_at"))
    draft.text(f"{p}_intakeformtype", form, 100)
    draft.option_map(f"{p}_intakestatus", record.get("status"), INTAKE_STATUS, ctx)
    draft.owner(ctx, record.get("assigned_to_id"), "responsible attorney")
    if draft.ref(
        f"{p}_convertedmatterid", "matters", matter_table(p), record.get("converted_matter_id")
    ):
        draft.note("converted in BackDocket; lead qualification is not replayed, matter linked")
    return [draft.build(ctx, external_id("intake_submissions", record["id"]))]


def _task(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    draft = _Draft("task")
    _subject(draft, record.get("subject"))
    draft.text("description", record.get("description"))
    priority = record.get("priority")
    draft.option_map("prioritycode", priority, TASK_PRIORITY, ctx)
    if priority == "urgent":
        draft.note("prioritycode: urgent has no Dataverse level above High; set to 2 (High)")
    _task_status(draft, record.get("status"), TASK_STATUS, ctx)
    due = record.get("due_date")
    if not blank(due):
        try:
            draft.put("scheduledend", _as_utc_midnight(due))
        except ValueError:
            draft.note(f"scheduledend: {due!r} is not a valid date (YYYY-MM-DD); left empty")
    draft.owner(ctx, record.get("assignee_id"), "assignee")
    _regarding(draft, record, p, "task")
    _recurrence(draft, p, record.get("recurrence"))
    if draft.text(f"{p}_approvalrequest", record.get("approval_request"), MEMO_LENGTH):
        draft.note("approval request kept as text; rebuild the approval in Power Automate")
    _custom_fields(draft, "tasks", record, ctx)
    return [draft.build(ctx, external_id("tasks", record["id"]))]


def _task_status(draft: _Draft, value: Any, values: ValueMap, ctx: MappingContext) -> None:
    """statuscode through the value map (its fallback when unmapped, as Dataverse needs one)
    and the statecode that status belongs to."""
    found = values.values(ctx).get(str(value).strip().lower()) if not blank(value) else None
    status = int(found if found is not None else values.fallback_in(ctx) or TASK_STATUS_FALLBACK)
    draft.put("statecode", TASK_STATE_OF_STATUS.get(status, 0))
    draft.put("statuscode", status)


def _firm_domains(ctx: MappingContext) -> frozenset[str]:
    domains = ctx.settings.get("firm_domains", DEFAULT_FIRM_DOMAINS)
    items = [domains] if isinstance(domains, str) else list(domains)
    return frozenset(str(d).strip().lower().lstrip("@") for d in items if str(d).strip())


def _is_external(person: Any, firm: frozenset[str]) -> bool:
    """An invitee whose email domain (or a parent domain) is not the firm's."""
    email = str(person.get("email") or "").strip().lower() if isinstance(person, Mapping) else ""
    if "@" not in email:
        return False
    domain = email.rsplit("@", 1)[1]
    return not any(domain == d or domain.endswith(f".{d}") for d in firm)


def _event(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
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
            f"event {record['id']} ends ({record['end_at']}) before it starts "
            f"({record['start_at']})",
        )
    draft = _Draft("appointment")
    _subject(draft, record.get("subject"))
    draft.put("scheduledstart", tx.iso_datetime(start))
    draft.put("scheduledend", tx.iso_datetime(end))
    draft.put("isalldayevent", bool(record.get("all_day")))
    draft.text("location", record.get("location"))
    draft.text("description", record.get("description"))
    draft.owner(ctx, record.get("owner_id"), "owner")
    _regarding(draft, record, p, "appointment")
    _recurrence(draft, p, record.get("recurrence"))
    attendees = record.get("attendees")
    people = attendees if isinstance(attendees, list) else []
    lines = [line for line in (person_line(a) for a in people) if line]
    draft.text(f"{p}_requiredattendees", "\n".join(lines), MEMO_LENGTH)
    firm = _firm_domains(ctx)
    external = [line for a in people if _is_external(a, firm) and (line := person_line(a))]
    draft.put(f"{p}_reinvitationrequired", bool(external))
    if external:
        draft.text(f"{p}_externalinvitees", "\n".join(external), MEMO_LENGTH)
        draft.note(
            f"{len(external)} invitee(s) outside the firm's domains need re-inviting after "
            f"migration: {'; '.join(external)}"
        )
    return [draft.build(ctx, external_id("events", record["id"]))]


def _esignature(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    draft = _Draft("task")
    document = plain(record.get("document_name")) or "(unnamed document)"
    draft.text("subject", f"E-signature: {document}")
    status = record.get("status")
    _task_status(draft, status, ESIGN_TASK_STATUS, ctx)
    draft.option_map(f"{p}_esignstatus", status, ESIGN_STATUS, ctx)
    signers = record.get("signers")
    lines = [person_line(s, status=True) for s in signers] if isinstance(signers, list) else []
    signer_list = "\n".join(line for line in lines if line)
    draft.text(f"{p}_signerlist", signer_list, MEMO_LENGTH)
    draft.text(f"{p}_envelopeid", record.get("envelope_id"), 64)
    facts = (
        ("Status", status),
        ("Sent", record.get("sent_at")),
        ("Completed", record.get("completed_at")),
        ("Envelope", record.get("envelope_id")),
        ("Document", record.get("document_name")),
    )
    description = [f"{label}: {value}" for label, value in facts if value]
    if signer_list:
        description.append(f"Signers:\n{signer_list}")
    description.append("Re-send the envelope from the e-signature tool connected to Dynamics.")
    draft.text("description", "\n".join(description))
    draft.timestamp("scheduledend", record.get("sent_at"))
    draft.ref(
        lookup_key("regardingobjectid", matter_table(p)),
        "matters",
        matter_table(p),
        record.get("matter_id"),
    )
    draft.put("ownerid", ctx.fallback_owner)
    return [draft.build(ctx, external_id("esignature_requests", record["id"]))]


def _object_binding(draft: _Draft, record: Record, prefix: str) -> bool:
    """An annotation's ``objectid``: the matter when there is one, else the contact. A note
    hangs off one record, so a contact also linked in BackDocket is named, not bound."""
    matter = matter_table(prefix)
    if draft.ref(lookup_key("objectid", matter), "matters", matter, record.get("matter_id")):
        contact = record.get("contact_id")
        if not blank(contact):
            draft.note(
                f"objectid: matter {record.get('matter_id')} chosen; contact {contact} is "
                "also linked in BackDocket and is not the note's record"
            )
        return True
    return draft.ref(
        lookup_key("objectid", "contact"), "contacts", "contact", record.get("contact_id")
    )


def _note(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    body = record.get("body")
    text = tx.html_to_text(body, inline_image) if isinstance(body, str) else ""
    draft = _Draft("annotation")
    draft.text("subject", note_subject(tx.clean_text(text)[0]))
    draft.text("notetext", text)
    draft.put("isdocument", False)
    draft.owner(ctx, record.get("author_id"), "author")
    if not _object_binding(draft, record, p):
        draft.note("objectid: no matter or contact in BackDocket; note unlinked")
    return [draft.build(ctx, external_id("notes", record["id"]))]


FOLDER_PREFIX = "folder:"
"""External id of a record's SharePoint folder row: ``folder:<table>:<source id>``."""


def _folder(record: Record, ctx: MappingContext) -> Payload | None:
    """The SharePoint folder of the record a document belongs to: one
    ``sharepointdocumentlocation`` per matter (else contact), ``relativeurl`` its folder
    name, under its table's document library location (``parentsiteorlocation``, named by
    ``keys.library_ref``: the client finds that location's id in the org), regarding the
    record — the shape Dataverse's own document management gives a record's folder
    (site → library location → record folder, "Manage your documents using SharePoint",
    https://learn.microsoft.com/power-platform/admin/manage-documents-using-sharepoint;
    the regarding binds only where the table has document management on, which the
    plan asks for). Every document of the record yields the same row, so the upsert on
    its external id writes it once."""
    place = _folder_place(record, ctx)
    if place is None:
        return None
    collection, table, owner = place
    draft = _Draft("sharepointdocumentlocation")
    draft.text("name", f"Documents on {table} {owner}")
    draft.text("relativeurl", folder_name(table, owner))
    draft.put(lookup_key("parentsiteorlocation", "sharepointdocumentlocation"), library_ref(table))
    draft.ref(lookup_key("regardingobjectid", table), collection, table, owner)
    return draft.build(ctx, f"{FOLDER_PREFIX}{table}:{owner}")


def folder_name(table: str, owner: str) -> str:
    """A record's folder in its table's library: ``<table>_<source id>``, unique per record."""
    return sharepoint_name(f"{table}_{owner}", table)


def _folder_place(record: Record, ctx: MappingContext) -> tuple[str, str, str] | None:
    """(collection, table, source id) of the record whose folder holds a document's file:
    its matter, else its contact; None when it has neither."""
    if not blank(record.get("matter_id")):
        return "matters", matter_table(prefix_of(ctx)), str(record["matter_id"])
    if not blank(record.get("contact_id")):
        return "contacts", "contact", str(record["contact_id"])
    return None


SHAREPOINT_MODES = ("oversized", "all")
"""``[mapping] sharepoint_documents``: which documents go to SharePoint when a site is set.
``oversized`` (default): only files over the attachment limit, the rest stay notes with
their file (searchable, offline, no SharePoint licence needed to open them); ``all``: every
file of a matter or contact, for firms that keep documents in SharePoint."""


def _sharepoint_file(
    record: Record, ctx: MappingContext, file: FileRef, why: str
) -> TransformResult:
    """A document's file in its record's SharePoint folder, after that folder's location
    row (the loader writes objects in the order given). Named ``<source id>_<filename>``:
    unique in the folder whatever the source's file names, so two documents never
    overwrite each other, and a rerun overwrites only its own file."""
    place = _folder_place(record, ctx)
    folder = _folder(record, ctx)
    if place is None or folder is None:
        return Rejection(
            "failed",
            "no_sharepoint_folder",
            f"{file.filename} {why}, but it is attached to no matter or contact: a file in "
            "SharePoint lives in its record's folder; it stays in the blob store",
        )
    _, table, owner = place
    name = sharepoint_name(f"{record['id']}_{file.filename}", str(record["id"]))
    payload = Payload(
        object=SHAREPOINT_FILES,
        external_id=external_id("documents", record["id"]),
        fields={"library": table, "folder": folder_name(table, owner)},
        file=replace(file, filename=name),
        notes=(f"file {why}: uploaded to SharePoint folder {folder_name(table, owner)}",),
    )
    return [folder, payload]


def _document_lines(record: Record, ctx: MappingContext) -> list[str]:
    """What BackDocket knows of a document beyond its file, for the note's text (a note
    takes no custom columns): its version and every custom value, ``Label: value``."""
    lines = []
    version = record.get("version")
    if version not in (None, "", 1):
        lines.append(f"Version {version} in BackDocket")
    values = record.get("custom_fields")
    definitions = _definitions_by_key(ctx.custom_fields.get("documents", ()))
    for key, value in (values or {}).items() if isinstance(values, Mapping) else ():
        if value is None or value == "" or value == []:
            continue
        label = str((definitions.get(key) or {}).get("label") or key)
        shown = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        lines.append(f"{label}: {shown}")
    return lines


def sharepoint_mode(ctx: MappingContext) -> str:
    """``[mapping] sharepoint_documents`` (SHAREPOINT_MODES); an unknown value is the default."""
    mode = str(ctx.settings.get("sharepoint_documents") or SHAREPOINT_MODES[0]).strip().lower()
    return mode if mode in SHAREPOINT_MODES else SHAREPOINT_MODES[0]


def base64_size(size: int) -> int:
    """Bytes of ``size`` bytes once Base64-encoded: what the attachment limit measures."""
    return 4 * -(-size // 3)


def _document(record: Record, ctx: MappingContext) -> TransformResult:
    p = prefix_of(ctx)
    filename = str(plain(record.get("filename")) or record["id"])
    size = record.get("size_bytes")
    sha256 = record.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or blank(sha256):
        return Rejection(
            "failed",
            "no_content",
            f"{filename} has no usable size_bytes/sha256 ({size!r}, {sha256!r}); "
            "its content cannot be uploaded",
        )
    mime = str(record.get("mime_type") or "application/octet-stream")
    file = FileRef(str(sha256), size, filename, mime)
    limit = int(ctx.settings.get("max_attachment_bytes", DEFAULT_MAX_ATTACHMENT_BYTES))
    site = plain(ctx.settings.get("sharepoint_site"))
    if base64_size(size) > limit:
        over = (
            f"{filename} is {megabytes(size)} ({megabytes(base64_size(size))} as Base64), over "
            f"the {limit / (1024 * 1024):g} MB Dataverse attachment limit, which counts the "
            "Base64 text"
        )
        if site is None:
            return Rejection(
                "skipped",
                "deferred_to_sharepoint",
                f"{over}; attached to {attached_to(record)}; held in staging until a "
                "SharePoint site is configured (setting sharepoint_site)",
            )
        return _sharepoint_file(record, ctx, file, "is over the attachment limit")
    if site is not None and sharepoint_mode(ctx) == "all" and _folder_place(record, ctx):
        return _sharepoint_file(record, ctx, file, "goes to SharePoint (sharepoint_documents)")
    draft = _Draft("annotation")
    draft.text("subject", filename.rsplit(".", 1)[0] if "." in filename[1:] else filename)
    draft.text("filename", filename)
    draft.text("mimetype", mime)
    draft.put("isdocument", True)
    lines = _document_lines(record, ctx)
    if lines:
        draft.text("notetext", "\n".join(lines))
    draft.owner(ctx, record.get("uploaded_by_id"), "uploader")
    if not _object_binding(draft, record, p):
        draft.note("objectid: no matter or contact in BackDocket; file unlinked")
    payloads = [draft.build(ctx, external_id("documents", record["id"]), file)]
    folder = _folder(record, ctx) if site is not None else None
    if folder is not None:
        payloads.append(folder)
    return payloads


def _definition(record: Record, ctx: MappingContext) -> TransformResult:
    """Definitions become the schema plan; the reason says where each one lands."""
    p = prefix_of(ctx)
    entity, key, kind = (str(record.get(k)) for k in ("entity", "key", "type"))
    target = CUSTOM_FIELD_TABLES.get(entity)
    if entity in NOTE_TEXT_ENTITIES:
        return Rejection(
            "skipped",
            "schema_definition",
            f"custom field {key} of {entity} gets no column: {NOTE_TEXT_ENTITIES[entity]} "
            "takes no custom columns; its values are kept in the note's text",
        )
    if target is None:
        return Rejection(
            "skipped",
            "no_destination_object",
            f"custom field {key} of {entity} has no destination table; values not migrated",
        )
    table = target.format(prefix=p)
    if kind == "computed":
        sources = _sources_text(_computed_sources(record))
        return Rejection(
            "skipped",
            "computed_field_decomposed",
            f"custom field {key} (computed) gets no column on {table}: Dataverse computes its "
            f"own; decomposed to its source values {sources}; rebuild as a calculated or "
            "formula column",
        )
    definitions = [*ctx.custom_fields.get(entity, ()), record]
    name = _definition_columns(p, definitions)[table][key]
    column_type = CUSTOM_FIELD_TYPES.get(kind, CUSTOM_FIELD_FALLBACK_TYPE)[0]
    reason = f"custom field {key} ({kind}) becomes {table}.{name} ({column_type})"
    if kind not in CUSTOM_FIELD_TYPES:
        reason += f"; type {kind!r} is unknown, values load as text"
    return Rejection("skipped", "schema_definition", reason)


def _matter_party(record: Record, ctx: MappingContext) -> TransformResult:
    return Rejection(
        "skipped",
        "no_destination_object",
        f"matter party {record['id']} ({record.get('role')}: contact {record.get('contact_id')} "
        f"on matter {record.get('matter_id')}) has no table in the Dynamics plan; reported "
        "for the admin (connections)",
    )


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
    """The Dataverse payloads for one staged BackDocket record, or why there are none.

    Every row keeps the source record's creation time: ``overriddencreatedon`` is the
    documented way to set ``createdon`` on create, so activity history and lineage
    show when things really happened, not when the migration ran.
    """
    result = dispatch(_TRANSFORMS, collection, record, ctx)
    if isinstance(result, Rejection):
        return result
    try:
        created = tx.iso_datetime(tx.parse_datetime(record.get("created_at")))
    except ValueError:
        return result
    # A file in SharePoint is no Dataverse row: it keeps SharePoint's own times.
    return [
        p
        if p.object == SHAREPOINT_FILES
        else replace(p, fields={**p.fields, "overriddencreatedon": created})
        for p in result
    ]
