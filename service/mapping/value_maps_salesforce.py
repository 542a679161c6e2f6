"""BackDocket → Salesforce value maps: the proposal's defaults.

``crmlift mapping propose`` writes these into ``mapping.toml`` and the operator edits and
confirms that file; the transforms read the confirmed file's maps from the mapping
context (``ValueMap.values``) and fall back to these only when the file holds no map of
that name (or the plan names no file). Targets are Salesforce's own default picklist
values where the field is standard (Industry, LeadSource, Lead.Status, Task.Status,
Task.Priority) and the schema plan's picklist values where it is ours.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.mapping.value_maps_common import ValueMap

INDUSTRY_MAP: Mapping[str, str] = {
    "agriculture": "Agriculture",
    "apparel": "Apparel",
    "banking": "Banking",
    "biotechnology": "Biotechnology",
    "chemicals": "Chemicals",
    "communications": "Communications",
    "construction": "Construction",
    "consulting": "Consulting",
    "education": "Education",
    "electronics": "Electronics",
    "energy": "Energy",
    "engineering": "Engineering",
    "entertainment": "Entertainment",
    "environmental": "Environmental",
    "finance": "Finance",
    "financial_services": "Finance",
    "food_and_beverage": "Food & Beverage",
    "government": "Government",
    "healthcare": "Healthcare",
    "hospitality": "Hospitality",
    "insurance": "Insurance",
    "machinery": "Machinery",
    "manufacturing": "Manufacturing",
    "media": "Media",
    "non_profit": "Not For Profit",
    "nonprofit": "Not For Profit",
    "recreation": "Recreation",
    "retail": "Retail",
    "shipping": "Shipping",
    "technology": "Technology",
    "telecommunications": "Telecommunications",
    "transportation": "Transportation",
    "utilities": "Utilities",
}
"""BackDocket industry → Salesforce's standard Industry picklist. Only true matches are
listed: anything else (``real_estate``, ``legal_services``) becomes ``Other`` with a note."""

INDUSTRY_FALLBACK = "Other"

ACCOUNT_KIND_MAP: Mapping[str, str] = {
    "client": "Client",
    "opposing_party": "Opposing Party",
    "insurer": "Insurer",
    "law_firm": "Law Firm",
}
CONTACT_INTAKE_STATUS_MAP: Mapping[str, str] = {
    "prospective": "Prospective",
    "active": "Active",
    "closed": "Closed",
}
MATTER_STATUS_MAP: Mapping[str, str] = {
    "intake": "Intake",
    "open": "Open",
    "pending": "Pending",
    "litigation": "Litigation",
    "settled": "Settled",
    "closed_won": "Closed - Won",
    "closed_lost": "Closed - Lost",
}
CASE_TYPE_MAP: Mapping[str, str] = {
    "auto_accident": "Auto Accident",
    "premises_liability": "Premises Liability",
    "medical_malpractice": "Medical Malpractice",
    "product_liability": "Product Liability",
    "wrongful_death": "Wrongful Death",
    "dog_bite": "Dog Bite",
    "workers_compensation": "Workers' Compensation",
    "employment_discrimination": "Employment Discrimination",
    "wrongful_termination": "Wrongful Termination",
    "wage_and_hour": "Wage and Hour",
    "breach_of_contract": "Breach of Contract",
    "business_tort": "Business Tort",
    "intellectual_property": "Intellectual Property",
    "insurance_bad_faith": "Insurance Bad Faith",
    "construction_defect": "Construction Defect",
    "landlord_tenant": "Landlord-Tenant",
    "consumer_fraud": "Consumer Fraud",
    "civil_rights": "Civil Rights",
    "social_security_disability": "Social Security Disability",
    "divorce": "Divorce",
    "child_custody": "Child Custody",
    "estate_probate": "Estate / Probate",
}
"""BackDocket's 22 claim templates (a matter's ``claim_type``) → Case_Type__c values."""

CASE_CATEGORY_MAP: Mapping[str, str] = {
    "civil": "Civil",
    "administrative": "Administrative",
    "class_action": "Class Action",
    "family": "Family",
    "probate": "Probate",
}
"""A matter's ``case_type`` (the court track) → Case_Category__c."""

PRACTICE_AREA_MAP: Mapping[str, str] = {
    "personal_injury": "Personal Injury",
    "workers_compensation": "Workers' Compensation",
    "employment": "Employment",
    "commercial": "Commercial",
    "insurance": "Insurance",
    "real_estate": "Real Estate",
    "consumer": "Consumer",
    "civil_rights": "Civil Rights",
    "disability": "Disability",
    "family": "Family",
    "estate": "Estate",
}
BILLING_TYPE_MAP: Mapping[str, str] = {
    "flat": "Flat Fee",
    "contingency": "Contingency",
    "milestone": "Milestone",
    "hourly": "Hourly",
}
PARTY_ROLE_MAP: Mapping[str, str] = {
    "plaintiff": "Plaintiff",
    "defendant": "Defendant",
    "witness": "Witness",
    "co_counsel": "Co-Counsel",
    "expert_witness": "Expert Witness",
    "client": "Client",
}
CLAIM_KIND_MAP: Mapping[str, str] = {
    "economic_damages": "Economic Damages",
    "non_economic_damages": "Non-Economic Damages",
    "punitive_damages": "Punitive Damages",
    "fees": "Fees",
    "lien": "Lien",
}
CLAIM_STATUS_MAP: Mapping[str, str] = {
    "open": "Open",
    "negotiating": "Negotiating",
    "settled": "Settled",
    "won": "Won",
    "lost": "Lost",
    "withdrawn": "Withdrawn",
}
TASK_STATUS_MAP: Mapping[str, str] = {
    "open": "Not Started",
    "in_progress": "In Progress",
    "completed": "Completed",
}
TASK_STATUS_FALLBACK = "Not Started"
TASK_PRIORITY_MAP: Mapping[str, str] = {
    "low": "Low",
    "normal": "Normal",
    "high": "High",
    "urgent": "High",
}
"""Salesforce's default Task.Priority has no level above High: urgent collapses into it."""
TASK_PRIORITY_FALLBACK = "Normal"

ESIGN_STATUS_MAP: Mapping[str, str] = {
    "draft": "Created",
    "sent": "Sent",
    "delivered": "Delivered",
    "completed": "Completed",
    "declined": "Declined",
    "voided": "Voided",
}
"""E-signature status → DocuSign_Status__c, in DocuSign's envelope status words."""

ESIGN_TASK_STATUS_MAP: Mapping[str, str] = {
    "draft": "Not Started",
    "sent": "Waiting on someone else",
    "delivered": "Waiting on someone else",
    "completed": "Completed",
    "declined": "Completed",
    "voided": "Completed",
}
"""E-signature status → Task.Status: a request awaiting signers waits on someone else;
completed, declined and voided requests need no further action."""

INTAKE_STATUS_MAP: Mapping[str, str] = {
    "prospective": "Prospective",
    "converted": "Converted",
    "rejected": "Rejected",
}
LEAD_STATUS_MAP: Mapping[str, str] = {
    "prospective": "Open - Not Contacted",
    "converted": "Working - Contacted",
    "rejected": "Closed - Not Converted",
}
"""Intake status → Lead.Status (Salesforce's default values). A lead cannot be
inserted as converted — conversion is an action, not a status — so a converted
intake stays open, links its matter in Converted_Matter__c and carries a note."""
LEAD_STATUS_FALLBACK = "Open - Not Contacted"

REFERRAL_SOURCE_MAP: Mapping[str, str] = {
    "court_referral": "Court Referral",
    "online_form": "Online Form",
    "attorney_referral": "Attorney Referral",
    "walk_in": "Walk-In",
    "other": "Other",
}
LEAD_SOURCE_MAP: Mapping[str, str] = {
    "online_form": "Web",
    "attorney_referral": "Partner Referral",
    "court_referral": "Other",
    "walk_in": "Other",
    "other": "Other",
}
"""Referral source → Salesforce's default LeadSource values; the exact BackDocket
source is kept in Referral_Source__c."""
LEAD_SOURCE_FALLBACK = "Other"


INDUSTRY = ValueMap(
    "industry", "companies.industry", ("Account.Industry",), INDUSTRY_MAP, INDUSTRY_FALLBACK
)
ACCOUNT_KIND = ValueMap(
    "account_kind", "companies.kind", ("Account.BackDocket_Kind__c",), ACCOUNT_KIND_MAP
)
CONTACT_INTAKE_STATUS = ValueMap(
    "contact_intake_status",
    "contacts.intake_status",
    ("Contact.Intake_Status__c",),
    CONTACT_INTAKE_STATUS_MAP,
)
MATTER_STATUS = ValueMap(
    "matter_status", "matters.status", ("Case_Matter__c.Status__c",), MATTER_STATUS_MAP
)
CASE_TYPE = ValueMap(
    "case_type",
    "matters.claim_type",
    ("Case_Matter__c.Case_Type__c", "Lead.Case_Type_Interest__c"),
    CASE_TYPE_MAP,
)
CASE_CATEGORY = ValueMap(
    "case_category", "matters.case_type", ("Case_Matter__c.Case_Category__c",), CASE_CATEGORY_MAP
)
PRACTICE_AREA = ValueMap(
    "practice_area",
    "matters.practice_area",
    ("Case_Matter__c.Practice_Area__c",),
    PRACTICE_AREA_MAP,
)
BILLING_TYPE = ValueMap(
    "billing_type", "matters.billing_type", ("Case_Matter__c.Billing_Type__c",), BILLING_TYPE_MAP
)
PARTY_ROLE = ValueMap(
    "party_role", "matter_parties.role", ("Case_Party__c.Role__c",), PARTY_ROLE_MAP
)
CLAIM_KIND = ValueMap(
    "claim_kind", "claims.claim_kind", ("Claim__c.Claim_Kind__c",), CLAIM_KIND_MAP
)
CLAIM_STATUS = ValueMap("claim_status", "claims.status", ("Claim__c.Status__c",), CLAIM_STATUS_MAP)
TASK_STATUS = ValueMap(
    "task_status", "tasks.status", ("Task.Status",), TASK_STATUS_MAP, TASK_STATUS_FALLBACK
)
TASK_PRIORITY = ValueMap(
    "task_priority", "tasks.priority", ("Task.Priority",), TASK_PRIORITY_MAP, TASK_PRIORITY_FALLBACK
)
ESIGN_STATUS = ValueMap(
    "esign_status", "esignature_requests.status", ("Task.DocuSign_Status__c",), ESIGN_STATUS_MAP
)
ESIGN_TASK_STATUS = ValueMap(
    "esign_task_status",
    "esignature_requests.status",
    ("Task.Status",),
    ESIGN_TASK_STATUS_MAP,
    TASK_STATUS_FALLBACK,
)
INTAKE_STATUS = ValueMap(
    "intake_status",
    "intake_submissions.status",
    ("Lead.Intake_Status__c", "Case_Matter__c.Intake_Status__c"),
    INTAKE_STATUS_MAP,
)
LEAD_STATUS = ValueMap(
    "lead_status",
    "intake_submissions.status",
    ("Lead.Status",),
    LEAD_STATUS_MAP,
    LEAD_STATUS_FALLBACK,
)
REFERRAL_SOURCE = ValueMap(
    "referral_source",
    "intake_submissions.referral_source",
    ("Lead.Referral_Source__c", "Case_Matter__c.Referral_Source__c"),
    REFERRAL_SOURCE_MAP,
)
LEAD_SOURCE = ValueMap(
    "lead_source",
    "intake_submissions.referral_source",
    ("Lead.LeadSource",),
    LEAD_SOURCE_MAP,
    LEAD_SOURCE_FALLBACK,
)

VALUE_MAPS: tuple[ValueMap, ...] = (
    INDUSTRY,
    ACCOUNT_KIND,
    CONTACT_INTAKE_STATUS,
    MATTER_STATUS,
    CASE_TYPE,
    CASE_CATEGORY,
    PRACTICE_AREA,
    BILLING_TYPE,
    PARTY_ROLE,
    CLAIM_KIND,
    CLAIM_STATUS,
    TASK_STATUS,
    TASK_PRIORITY,
    ESIGN_STATUS,
    ESIGN_TASK_STATUS,
    INTAKE_STATUS,
    LEAD_STATUS,
    REFERRAL_SOURCE,
    LEAD_SOURCE,
)
"""Every built-in enumeration the BackDocket → Salesforce transforms map, in the order the
mapping file lists them."""
