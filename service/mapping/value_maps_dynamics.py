"""BackDocket → Dataverse value maps: the proposal's defaults, as option values.

``crmlift mapping propose`` writes these into ``mapping.toml`` (with each option's label)
and the operator edits and confirms that file; the transforms read the confirmed file's
maps from the mapping context (``ValueMap.values``) and fall back to these only when the
file holds no map of that name. A Dataverse choice column takes the option's integer
Value, never its label, and refuses a value not among its options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from service.mapping.value_maps_common import ValueMap
from service.mapping.value_maps_salesforce import (
    ACCOUNT_KIND_MAP,
    BILLING_TYPE_MAP,
    CASE_CATEGORY_MAP,
    CASE_TYPE_MAP,
    CLAIM_KIND_MAP,
    CLAIM_STATUS_MAP,
    CONTACT_INTAKE_STATUS_MAP,
    ESIGN_STATUS_MAP,
    INTAKE_STATUS_MAP,
    MATTER_STATUS_MAP,
    PRACTICE_AREA_MAP,
    REFERRAL_SOURCE_MAP,
)

OPTION_BASE = 100_000_000
"""Custom option-set values start here (publisher option value prefix 10,000)."""


def option_values(codes: Iterable[str]) -> dict[str, int]:
    """Source code → custom option value: 100000000, 100000001… in the given order."""
    return {code: OPTION_BASE + i for i, code in enumerate(dict.fromkeys(codes))}


MATTER_TYPE_OPTIONS = option_values(CASE_TYPE_MAP)
"""A matter's ``claim_type`` (BackDocket's 22 claim templates) → ``{prefix}_mattertype``."""
CASE_CATEGORY_OPTIONS = option_values(CASE_CATEGORY_MAP)
MATTER_STATUS_OPTIONS = option_values(MATTER_STATUS_MAP)
PRACTICE_AREA_OPTIONS = option_values(PRACTICE_AREA_MAP)
BILLING_TYPE_OPTIONS = option_values(BILLING_TYPE_MAP)
CLAIM_KIND_OPTIONS = option_values(CLAIM_KIND_MAP)
CLAIM_STATUS_OPTIONS = option_values(CLAIM_STATUS_MAP)
ACCOUNT_KIND_OPTIONS = option_values(ACCOUNT_KIND_MAP)
CONTACT_INTAKE_STATUS_OPTIONS = option_values(CONTACT_INTAKE_STATUS_MAP)
INTAKE_STATUS_OPTIONS = option_values(INTAKE_STATUS_MAP)
REFERRAL_SOURCE_OPTIONS = option_values(REFERRAL_SOURCE_MAP)
ESIGN_STATUS_OPTIONS = option_values(ESIGN_STATUS_MAP)

OPTION_LABELS: Mapping[str, Mapping[str, str]] = {
    "mattertype": CASE_TYPE_MAP,
    "casecategory": CASE_CATEGORY_MAP,
    "matterstatus": MATTER_STATUS_MAP,
    "practicearea": PRACTICE_AREA_MAP,
    "billingtype": BILLING_TYPE_MAP,
    "claimkind": CLAIM_KIND_MAP,
    "claimstatus": CLAIM_STATUS_MAP,
    "accountkind": ACCOUNT_KIND_MAP,
    "contactintakestatus": CONTACT_INTAKE_STATUS_MAP,
    "intakestatus": INTAKE_STATUS_MAP,
    "referralsource": REFERRAL_SOURCE_MAP,
    "esignstatus": ESIGN_STATUS_MAP,
}
"""Option-set name → source code → label (labels shared with the Salesforce mapping)."""

PRIORITY_CODES: Mapping[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 2}
"""Task priority → standard ``prioritycode`` (0 Low, 1 Normal, 2 High). Urgent has no
Dataverse level above High and collapses into it with a note."""
PRIORITY_FALLBACK = 1

TASK_STATUS_CODES: Mapping[str, int] = {"open": 2, "in_progress": 3, "completed": 5}
"""Task status → task ``statuscode``: Not Started, In Progress, Completed."""
TASK_STATUS_FALLBACK = 2

ESIGN_TASK_STATUS_CODES: Mapping[str, int] = {
    "draft": 2,
    "sent": 4,
    "delivered": 4,
    "completed": 5,
    "declined": 5,
    "voided": 6,
}
"""E-signature status → task ``statuscode``: awaiting signers is Waiting on someone else
(4); completed/declined are Completed (5); voided is Canceled (6)."""

TASK_STATE_OF_STATUS: Mapping[int, int] = {2: 0, 3: 0, 4: 0, 7: 0, 5: 1, 6: 2}
"""A platform fact, not a choice: each task ``statuscode`` belongs to one ``statecode``
(Open 0: Not Started, In Progress, Waiting on someone else, Deferred; Completed 1;
Canceled 2 — https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/task#statuscode-choicesoptions).
The mapping file names the status; the state follows from it."""

LEAD_SOURCE_CODES: Mapping[str, int] = {
    "online_form": 8,
    "attorney_referral": 3,
    "court_referral": 3,
    "walk_in": 10,
    "other": 10,
}
"""Referral source → standard ``leadsourcecode`` (3 External Referral, 8 Web, 10 Other);
the exact BackDocket source is kept in ``{prefix}_referralsource``."""
LEAD_SOURCE_FALLBACK = 10


ACCOUNT_KIND = ValueMap(
    "account_kind", "companies.kind", ("account.{prefix}_accountkind",), ACCOUNT_KIND_OPTIONS
)
CONTACT_INTAKE_STATUS = ValueMap(
    "contact_intake_status",
    "contacts.intake_status",
    ("contact.{prefix}_intakestatus",),
    CONTACT_INTAKE_STATUS_OPTIONS,
)
CASE_TYPE = ValueMap(
    "case_type",
    "matters.claim_type",
    ("{prefix}_matter.{prefix}_mattertype", "lead.{prefix}_casetypeinterest"),
    MATTER_TYPE_OPTIONS,
)
CASE_CATEGORY = ValueMap(
    "case_category",
    "matters.case_type",
    ("{prefix}_matter.{prefix}_casecategory",),
    CASE_CATEGORY_OPTIONS,
)
MATTER_STATUS = ValueMap(
    "matter_status", "matters.status", ("{prefix}_matter.{prefix}_status",), MATTER_STATUS_OPTIONS
)
PRACTICE_AREA = ValueMap(
    "practice_area",
    "matters.practice_area",
    ("{prefix}_matter.{prefix}_practicearea",),
    PRACTICE_AREA_OPTIONS,
)
BILLING_TYPE = ValueMap(
    "billing_type",
    "matters.billing_type",
    ("{prefix}_matter.{prefix}_billingtype",),
    BILLING_TYPE_OPTIONS,
)
CLAIM_KIND = ValueMap(
    "claim_kind",
    "claims.claim_kind",
    ("{prefix}_claim.{prefix}_claimkind", "opportunity.{prefix}_claimkind"),
    CLAIM_KIND_OPTIONS,
)
CLAIM_STATUS = ValueMap(
    "claim_status",
    "claims.status",
    ("{prefix}_claim.{prefix}_status", "opportunity.{prefix}_claimstatus"),
    CLAIM_STATUS_OPTIONS,
)
INTAKE_STATUS = ValueMap(
    "intake_status",
    "intake_submissions.status",
    ("lead.{prefix}_intakestatus",),
    INTAKE_STATUS_OPTIONS,
)
REFERRAL_SOURCE = ValueMap(
    "referral_source",
    "intake_submissions.referral_source",
    ("lead.{prefix}_referralsource",),
    REFERRAL_SOURCE_OPTIONS,
)
LEAD_SOURCE = ValueMap(
    "lead_source",
    "intake_submissions.referral_source",
    ("lead.leadsourcecode",),
    LEAD_SOURCE_CODES,
    LEAD_SOURCE_FALLBACK,
)
TASK_PRIORITY = ValueMap(
    "task_priority", "tasks.priority", ("task.prioritycode",), PRIORITY_CODES, PRIORITY_FALLBACK
)
TASK_STATUS = ValueMap(
    "task_status", "tasks.status", ("task.statuscode",), TASK_STATUS_CODES, TASK_STATUS_FALLBACK
)
ESIGN_TASK_STATUS = ValueMap(
    "esign_task_status",
    "esignature_requests.status",
    ("task.statuscode",),
    ESIGN_TASK_STATUS_CODES,
    TASK_STATUS_FALLBACK,
)
ESIGN_STATUS = ValueMap(
    "esign_status",
    "esignature_requests.status",
    ("task.{prefix}_esignstatus",),
    ESIGN_STATUS_OPTIONS,
)

VALUE_MAPS: tuple[ValueMap, ...] = (
    ACCOUNT_KIND,
    CONTACT_INTAKE_STATUS,
    MATTER_STATUS,
    CASE_TYPE,
    CASE_CATEGORY,
    PRACTICE_AREA,
    BILLING_TYPE,
    CLAIM_KIND,
    CLAIM_STATUS,
    TASK_STATUS,
    TASK_PRIORITY,
    ESIGN_STATUS,
    ESIGN_TASK_STATUS,
    INTAKE_STATUS,
    REFERRAL_SOURCE,
    LEAD_SOURCE,
)
"""Every built-in enumeration the BackDocket → Dataverse transforms map, in the order the
mapping file lists them."""
