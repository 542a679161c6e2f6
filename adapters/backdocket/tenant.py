"""A deterministic BackDocket tenant: realistic, referentially consistent, optionally dirty.

The simulator serves it and tests and benchmarks compare against it, so the same
``(records, seed, dirty)`` must always produce byte-identical data: every draw
comes from a ``random.Random`` seeded per collection, never from the global
random or the wall clock. Document bytes are never stored; they are expanded on
demand from ``(seed, document id)`` so a 25 MB attachment costs nothing to hold.
"""

from __future__ import annotations

import hashlib
import html
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from adapters.backdocket.client import COLLECTIONS
from adapters.base import Record

DIRTY_CASES: tuple[str, ...] = (
    "contact_no_email",
    "contact_duplicate_email",
    "contact_no_company",
    "contact_five_companies",
    "company_parent_cycle",
    "user_no_email",
    "user_duplicate_email",
    "document_over_25mb",
    "task_deleted_matter",
    "custom_field_unparseable",
    "unknown_extra_keys",
)
"""Every dirty shape the contract promises; ``Tenant.dirty_cases`` maps each to record ids."""

TENANT_EPOCH = datetime(2026, 6, 1, tzinfo=UTC)
"""Every generated ``created_at``/``updated_at`` lies within three years before this."""

LARGE_DOCUMENT_BYTES = 25 * 1024 * 1024
"""Documents above this size are the contract's "over 25 MB" dirty case."""

CONTENT_CHUNK = 64 * 1024
"""Document bytes are expanded and streamed in blocks of this size."""

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch: an exact, sortable form of an aware timestamp."""
    return (moment - _UNIX) // _MICROSECOND


def iso_from_micros(micros: int) -> str:
    """The contract's timestamp form: ISO-8601 UTC with an explicit ``+00:00`` offset."""
    return (_UNIX + timedelta(microseconds=micros)).isoformat(timespec="microseconds")


def _date_from_micros(micros: int, days_later: int = 0) -> date:
    return (_UNIX + timedelta(microseconds=micros)).date() + timedelta(days=days_later)


_EPOCH_US = to_micros(TENANT_EPOCH)
_DAY_US = 86_400 * 1_000_000
_SPAN_US = 3 * 365 * _DAY_US
_EPOCH_DATE = TENANT_EPOCH.date()

# --- documents -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DocFormat:
    """What a file extension implies: its MIME type, magic header and whether it is text."""

    mime_type: str
    header: bytes
    text: bool


_DOC_FORMATS: dict[str, _DocFormat] = {
    "pdf": _DocFormat("application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", text=False),
    "docx": _DocFormat(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"PK\x03\x04\x14\x00\x06\x00",
        text=False,
    ),
    "xlsx": _DocFormat(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"PK\x03\x04\x14\x00\x06\x00",
        text=False,
    ),
    "png": _DocFormat("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", text=False),
    "jpg": _DocFormat("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", text=False),
    "mp4": _DocFormat("video/mp4", b"\x00\x00\x00\x20ftypisom", text=False),
    "eml": _DocFormat(
        "message/rfc822",
        b"From: adjuster@claims.example\r\nTo: intake@firm.example\r\n"
        b"Subject: Claim update\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n",
        text=True,
    ),
    "txt": _DocFormat("text/plain", b"", text=True),
    "csv": _DocFormat("text/csv", b"date,description,amount\n", text=True),
}

_TEXT_ALPHABET = b"abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:-\n"
_PRINTABLE = bytes(_TEXT_ALPHABET[i % len(_TEXT_ALPHABET)] for i in range(256))


def _content_blocks(
    seed: int, doc_id: str, size: int, fmt: _DocFormat, version: int = 0
) -> Iterator[bytes]:
    """Expand a document's bytes block by block; block ``i`` depends only on (seed, id,
    version, i)."""
    remaining = size
    index = 0
    name = doc_id if version == 0 else f"{doc_id}:v{version}"
    while remaining > 0:
        length = min(CONTENT_CHUNK, remaining)
        block = hashlib.shake_256(f"backdocket:{seed}:{name}:{index}".encode()).digest(length)
        if fmt.text:
            block = block.translate(_PRINTABLE)
        if index == 0 and fmt.header:
            block = (fmt.header + block)[:length]
        yield block
        remaining -= length
        index += 1


# --- the tenant ------------------------------------------------------------------------


@dataclass
class Tenant:
    """A generated tenant: live records, what was deleted, and how to rebuild document bytes."""

    seed: int
    records: dict[str, list[Record]]
    deletions: list[dict[str, str]]
    document_sizes: dict[str, int]
    document_formats: dict[str, str] = field(default_factory=dict)
    dirty_cases: dict[str, list[str]] = field(default_factory=dict)
    document_versions: dict[str, int] = field(default_factory=dict)
    """Documents a user uploaded a new version of: id → version (absent: the first)."""

    def iter_document_content(self, doc_id: str) -> Iterator[bytes]:
        """A document's bytes in blocks of at most ``CONTENT_CHUNK``; KeyError if unknown."""
        size = self.document_sizes[doc_id]
        fmt = _DOC_FORMATS.get(self.document_formats.get(doc_id, "txt"), _DOC_FORMATS["txt"])
        version = self.document_versions.get(doc_id, 0)
        return _content_blocks(self.seed, doc_id, size, fmt, version)

    def document_content(self, doc_id: str) -> bytes:
        """A document's whole content, regenerated on each call rather than kept in memory."""
        return b"".join(self.iter_document_content(doc_id))

    def total(self) -> int:
        """Live records across every collection."""
        return sum(len(rows) for rows in self.records.values())


def generate_tenant(records: int, seed: int, *, dirty: bool = False) -> Tenant:
    """Build a tenant of about ``records`` records; identical arguments give identical data."""
    if records < 0:
        raise ValueError("records must not be negative")
    return _Builder(records, seed, dirty).build()


# --- vocabulary ------------------------------------------------------------------------


def _pairs(*chunks: str) -> tuple[tuple[str, str], ...]:
    """``"José=jose, Zoë=zoe"`` as pairs: a display form and the ASCII form used in emails."""
    entries = ", ".join(chunks).split(", ")
    return tuple((shown, plain) for shown, _, plain in (e.partition("=") for e in entries))


_FIRST_NAMES: tuple[tuple[str, str], ...] = _pairs(
    "James=james, Mary=mary, José=jose, Zoë=zoe, François=francois, Søren=soren, "
    "Łukasz=lukasz, Ngozi=ngozi, Mei=mei, Hiroshi=hiroshi, Olga=olga, Björn=bjorn, "
    "Chloé=chloe, Renée=renee, Ahmed=ahmed, محمد=mohammed, فاطمة=fatima, דוד=david, "
    "שרה=sarah, Priya=priya, Siobhán=siobhan, Dmitri=dmitri, Aaliyah=aaliyah, Carlos=carlos, "
    "Emily=emily, Michael=michael, Linda=linda, Robert=robert, Patricia=patricia, Wei=wei, "
    "Ana=ana, Jürgen=jurgen"
)

_LAST_NAMES: tuple[tuple[str, str], ...] = _pairs(
    "Smith=smith, García=garcia, Müller=muller, O'Brien=obrien, Nguyen=nguyen, "
    "Kowalski=kowalski, Haddad=haddad, حداد=haddad, כהן=cohen, Johnson=johnson, "
    "Williams=williams, Brown=brown, Jones=jones, Núñez=nunez, Dubois=dubois, Rossi=rossi, "
    "Yamamoto=yamamoto, Okafor=okafor, Petrov=petrov, Lee=lee, Martínez=martinez, "
    "Andersson=andersson, Ó Súilleabháin=osullivan, van der Berg=vanderberg, Chen=chen, "
    "Patel=patel, Davis=davis"
)

_COMPANY_STEMS: tuple[tuple[str, str], ...] = _pairs(
    "Acme=acme, Blue Harbor=blueharbor, Zürich Rück=zurichruck, Café Olé=cafeole, "
    "Northwind=northwind, Société Générale de Logistique=sgl, شركة الأمل=alamal, "
    "אלפא מערכות=alphasystems, Sakura 桜 Trading=sakura, Pinnacle=pinnacle, Redwood=redwood, "
    "Lone Star=lonestar, Great Lakes=greatlakes, Evergreen=evergreen, Summit=summit, "
    "Atlas=atlas, Keystone=keystone, Riverside=riverside, Ironclad=ironclad, "
    "Silverline=silverline"
)
_COMPANY_SUFFIXES = (
    "LLC",
    "Inc.",
    "Ltd",
    "GmbH",
    "S.A. de C.V.",
    "Holdings",
    "Group",
    "& Co.",
    "Partners LLP",
    "Insurance Co.",
)
_INDUSTRIES = (
    "insurance",
    "construction",
    "healthcare",
    "manufacturing",
    "retail",
    "transportation",
    "technology",
    "real_estate",
    "hospitality",
    "legal_services",
    "financial_services",
    "energy",
)
_TLDS = ("com", "net", "co.uk", "de", "com.mx", "co.il", "fr")
_MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "web.de")
_FIRM_DOMAIN = "hartwell-law.example"

_PLACES: tuple[tuple[str, str, str, str], ...] = (
    ("Austin", "TX", "787", "US"),
    ("Chicago", "IL", "606", "US"),
    ("New York", "NY", "100", "US"),
    ("Los Angeles", "CA", "900", "US"),
    ("Miami", "FL", "331", "US"),
    ("Seattle", "WA", "981", "US"),
    ("Denver", "CO", "802", "US"),
    ("Montréal", "QC", "H2X", "CA"),
    ("Toronto", "ON", "M5V", "CA"),
    ("London", "", "EC1A", "GB"),
    ("Tel Aviv-Yafo", "", "61", "IL"),
    ("Ciudad de México", "CDMX", "06", "MX"),
    ("München", "BY", "803", "DE"),
)
_STREETS = (
    "Main St",
    "Oak Avenue",
    "Rue Sainte-Catherine",
    "Calle 5 de Mayo",
    "שדרות רוטשילד",
    "Königstraße",
    "Elm Street",
    "Market St",
    "شارع الملك فهد",
    "Baker Street",
)

_PHRASES = (
    "Client called about the status of the claim.",
    "Adjuster requested updated medical bills and wage statements.",
    "Opposing counsel agreed to extend discovery by 30 days.",
    "Deposition rescheduled at the witness's request.",
    "Reviewed the police report; liability looks clear.",
    "Demand package sent by certified mail.",
    "Need signed HIPAA authorization before requesting records.",
    "Mediation set; bring settlement authority.",
    "Client prefers contact after 5pm — work schedule.",
    "Lien from the hospital must be resolved before disbursement.",
    "Filed the complaint; awaiting service on all defendants.",
    "Expert report due next month; confirm retainer paid.",
    'Client says the landlord "never fixed" the stairs.',
    "Settlement offer is below policy limits; advise rejecting.",
)
_FOREIGN_PHRASES = (
    "El cliente pidió una actualización sobre el caso.",
    "Le client a envoyé les reçus médicaux par courriel.",
    "Der Mandant wünscht einen Rückruf am Nachmittag.",
    "العميل يطلب تحديثا أسبوعيا بخصوص القضية.",
    "הלקוח ביקש עדכון לגבי מועד הדיון.",
    "Cliente aceitou a proposta de acordo — próximos passos?",
    "依頼人は来週の調停に出席します。",
    "Mandatar: Łódź office will forward the originals.",
)
_EMOJI = ("🚗", "⚖️", "📎", "🏥", "💼", "✅", "🔥", "👍🏽", "🇺🇸", "🧾", "⭐")
_CONTROL_CHARS = ("\t", "\x0b", "\x1f", "\x0c", "\x1e", "\r\n")
_SHORT_TEXTS = (
    "Referred by Dr. Núñez",
    "VIP — handle with care ⭐",
    "Spanish-speaking household",
    "هاتف العمل فقط",
    "לא להתקשר בשבת",
    "Prefers email over phone",
    "Met at bar association mixer 🍸",
    "Account\tmanager: see CRM",
)

_USER_ROLES = ("attorney", "paralegal", "admin", "staff")
_USER_ROLE_WEIGHTS = (35, 25, 10, 30)
_COMPANY_KINDS = ("client", "opposing_party", "insurer", "law_firm")
_COMPANY_KIND_WEIGHTS = (50, 25, 15, 10)
_INTAKE_STATUSES = ("prospective", "active", "closed", None)

CLAIM_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("auto_accident", "personal_injury", "civil"),
    ("premises_liability", "personal_injury", "civil"),
    ("medical_malpractice", "personal_injury", "civil"),
    ("product_liability", "personal_injury", "civil"),
    ("wrongful_death", "personal_injury", "civil"),
    ("dog_bite", "personal_injury", "civil"),
    ("workers_compensation", "workers_compensation", "administrative"),
    ("employment_discrimination", "employment", "civil"),
    ("wrongful_termination", "employment", "civil"),
    ("wage_and_hour", "employment", "class_action"),
    ("breach_of_contract", "commercial", "civil"),
    ("business_tort", "commercial", "civil"),
    ("intellectual_property", "commercial", "civil"),
    ("insurance_bad_faith", "insurance", "civil"),
    ("construction_defect", "real_estate", "civil"),
    ("landlord_tenant", "real_estate", "civil"),
    ("consumer_fraud", "consumer", "class_action"),
    ("civil_rights", "civil_rights", "civil"),
    ("social_security_disability", "disability", "administrative"),
    ("divorce", "family", "family"),
    ("child_custody", "family", "family"),
    ("estate_probate", "estate", "probate"),
)
"""The 22 claim templates a matter's ``claim_type`` is drawn from: (claim_type, practice, case)."""

_CASE_CODES = {
    "civil": "CV",
    "administrative": "AD",
    "class_action": "CA",
    "family": "FA",
    "probate": "PR",
}
MATTER_STATUSES = (
    "intake",
    "open",
    "pending",
    "litigation",
    "settled",
    "closed_won",
    "closed_lost",
)
_MATTER_STATUS_WEIGHTS = (8, 30, 15, 17, 12, 10, 8)
_FILED_STATUSES = frozenset({"litigation", "settled", "closed_won", "closed_lost"})
_CLOSED_STATUSES = frozenset({"settled", "closed_won", "closed_lost"})
_BILLING_TYPES = ("flat", "contingency", "milestone", "hourly")
_COURTS = (
    "Superior Court of California, County of Los Angeles",
    "Circuit Court of Cook County",
    "U.S. District Court, S.D.N.Y.",
    "Travis County District Court",
    "Workers' Compensation Appeals Board",
    "Cour supérieure du Québec",
    "Miami-Dade County Court",
    "King County Superior Court",
)

PARTY_ROLES = ("plaintiff", "defendant", "witness", "co_counsel", "expert_witness", "client")
_CLAIM_NAMES = (
    "Medical expenses",
    "Lost wages",
    "Pain and suffering",
    "Property damage",
    "Attorney fees",
    "Punitive damages",
    "Back pay",
    "Statutory penalties",
    "Daños morales",
)
_CLAIM_KINDS = ("economic_damages", "non_economic_damages", "punitive_damages", "fees", "lien")
_CLAIM_STATUSES = ("open", "negotiating", "settled", "won", "lost", "withdrawn")
_OPEN_CLAIM_STATUSES = frozenset({"open", "negotiating"})

TASK_STATUSES = ("open", "in_progress", "completed")
TASK_PRIORITIES = ("low", "normal", "high", "urgent")
_TASK_SUBJECTS = (
    "Call client re: medical records",
    "Draft demand letter",
    "File motion to compel",
    "Prepare deposition outline",
    "Review discovery responses 📎",
    "Calendar statute of limitations",
    "Send retainer agreement",
    "Request police report",
    "Follow up with adjuster",
    "مراجعة العقد مع العميل",
    "לתאם פגישה עם הלקוח",
    "Préparer la plaidoirie",
)
_RRULES = (
    "FREQ=WEEKLY;BYDAY=MO",
    "FREQ=MONTHLY;BYMONTHDAY=1",
    "FREQ=DAILY;COUNT=10",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH",
)
_APPROVALS = (
    "Partner approval needed for expert fee over $5,000.",
    "Approve filing fee reimbursement.",
    "Sign-off required before sending settlement demand.",
)
_EVENT_SUBJECTS = (
    "Deposition",
    "Mediation",
    "Court hearing",
    "Client consultation",
    "Settlement conference",
    "Trial day 1",
    "Team sync ☕",
    "Audiencia preliminar",
)
_LOCATIONS = (
    "Courtroom 4B",
    "Zoom",
    "Conference Room A",
    "Microsoft Teams",
    "1200 Main St, Suite 300",
    "Tribunal judiciaire de Paris",
    "בית המשפט המחוזי תל אביב",
)

_DOC_STEMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Retainer Agreement", ("pdf", "docx")),
    ("Medical Records", ("pdf",)),
    ("Police Report", ("pdf",)),
    ("Demand Letter", ("docx", "pdf")),
    ("Deposition Transcript", ("pdf", "txt")),
    ("Settlement Agreement", ("pdf", "docx")),
    ("Photo of Injury", ("jpg", "png")),
    ("Scene Photo", ("jpg", "png")),
    ("Email from Adjuster", ("eml",)),
    ("Billing Ledger", ("xlsx", "csv")),
    ("Contrato de servicios", ("pdf", "docx")),
    ("Déclaration sous serment", ("pdf",)),
    ("تقرير طبي", ("pdf",)),
    ("כתב תביעה", ("docx",)),
    ("Invoice 📄", ("pdf",)),
    ("Dashcam Clip", ("mp4",)),
)
_ESIGN_STATUSES = ("draft", "sent", "delivered", "completed", "declined", "voided")
_FORM_TYPES = (
    "personal_injury_intake",
    "employment_intake",
    "family_law_intake",
    "general_contact",
    "workers_comp_questionnaire",
)
REFERRAL_SOURCES = ("court_referral", "online_form", "attorney_referral", "walk_in", "other")
INTAKE_STATUSES = ("prospective", "converted", "rejected")


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """One custom field definition: which entity carries it and what its values look like."""

    entity: str
    key: str
    label: str
    type: str
    options: tuple[str, ...] = ()
    required: bool = False


_FIELD_SPECS: tuple[_FieldSpec, ...] = (
    _FieldSpec(
        "contacts",
        "cf_preferred_language",
        "Preferred language",
        "picklist",
        ("English", "Español", "العربية", "עברית", "Français"),
        required=True,
    ),
    _FieldSpec("contacts", "cf_date_of_birth", "Date of birth", "date"),
    _FieldSpec("contacts", "cf_referral_notes", "Referral notes", "textarea"),
    _FieldSpec("contacts", "cf_vip", "VIP", "boolean"),
    _FieldSpec("contacts", "cf_household_size", "Household size", "number"),
    _FieldSpec(
        "contacts",
        "cf_contact_channels",
        "Contact channels",
        "multi_picklist",
        ("email", "phone", "sms", "whatsapp", "mail"),
    ),
    _FieldSpec("companies", "cf_account_note", "Account note", "text"),
    _FieldSpec("companies", "cf_credit_limit", "Credit limit", "currency"),
    _FieldSpec("companies", "cf_onboarded_at", "Onboarded at", "datetime"),
    _FieldSpec(
        "companies",
        "cf_segment",
        "Segment",
        "picklist",
        ("enterprise", "mid_market", "small_business", "public_sector"),
    ),
    _FieldSpec("companies", "cf_profile_html", "Profile", "formatted_text"),
    _FieldSpec("matters", "cf_incident_date", "Incident date", "date", required=True),
    _FieldSpec("matters", "cf_settlement_offer", "Latest settlement offer", "currency"),
    _FieldSpec(
        "matters",
        "cf_injury_severity",
        "Injury severity",
        "picklist",
        ("minor", "moderate", "severe", "catastrophic"),
    ),
    _FieldSpec(
        "matters",
        "cf_liens",
        "Liens",
        "multi_picklist",
        ("medicare", "medicaid", "hospital", "health_insurer", "child_support"),
    ),
    _FieldSpec("matters", "cf_contingency_pct", "Contingency %", "number"),
    _FieldSpec("matters", "cf_case_summary", "Case summary", "formatted_text"),
    _FieldSpec("matters", "cf_days_open", "Days open", "computed"),
    _FieldSpec("matters", "cf_court_deadline", "Next court deadline", "datetime"),
    _FieldSpec("tasks", "cf_billable_minutes", "Billable minutes", "number"),
    _FieldSpec(
        "tasks",
        "cf_billing_code",
        "Billing code",
        "picklist",
        ("L110", "L120", "L210", "L310", "A101"),
    ),
)
_NUMBER_VALUES: dict[str, tuple[float, ...]] = {
    "cf_household_size": tuple(range(1, 9)),
    "cf_contingency_pct": (25, 30, 33.33, 35, 40),
    "cf_billable_minutes": tuple(range(6, 481, 6)),
}
_ANY_NUMBER: tuple[float, ...] = (0, 1, 2.5, 10, 42, 99.9, 1000)
_DAYS_BEFORE: dict[str, tuple[int, int]] = {
    "cf_date_of_birth": (18 * 365, 90 * 365),
    "cf_incident_date": (0, 700),
}
"""How far before a record's creation its date custom fields fall, in days."""
CUSTOM_FIELD_TYPES = (
    "text",
    "textarea",
    "formatted_text",
    "number",
    "currency",
    "date",
    "datetime",
    "boolean",
    "picklist",
    "multi_picklist",
    "computed",
)

_UNPARSEABLE: dict[str, Any] = {
    "number": "n/a",
    "currency": "$12,500 USD",
    "date": "31/02/2024",
    "datetime": "next Tuesday 5pm",
    "boolean": "maybe",
    "picklist": "Legacy: Unknown ❓",
    "multi_picklist": ["Not an option"],
    "computed": "#DIV/0!",
}
"""A value per type that does not parse as that type (text types accept anything)."""


def _unparseable(kind: str) -> Any:
    """A fresh copy, so no two records share a mutable value."""
    value = _UNPARSEABLE[kind]
    return list(value) if isinstance(value, list) else value


_WORKFLOW_PLANS: tuple[tuple[str, str, str], ...] = (
    ("New PI intake follow-up", "intake_submission.created", "personal_injury_intake"),
    ("Matter opened checklist", "matter.status_changed", "open"),
    ("Litigation kickoff", "matter.status_changed", "litigation"),
    ("Settlement disbursement", "matter.status_changed", "settled"),
    ("SOL reminder", "matter.field_changed", "statute_of_limitations"),
    ("Document signed → notify", "esignature_request.completed", "completed"),
    ("Overdue task escalation", "task.overdue", "urgent"),
    ("Suivi client mensuel", "schedule.monthly", "1"),
)
_WORKFLOW_ACTIONS = ("create_task", "send_email", "send_sms", "assign_user", "generate_document")
_TEMPLATE_PLANS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "Retainer letter",
        "matters",
        "docx",
        ("contact.first_name", "contact.last_name", "matter.number", "matter.billing_type"),
    ),
    ("Demand letter", "matters", "docx", ("matter.claim_amount", "company.name", "user.name")),
    ("Welcome email", "contacts", "html", ("contact.first_name", "user.name", "user.email")),
    ("Lettre de mission", "matters", "docx", ("contact.last_name", "matter.name")),
    ("Status update SMS", "contacts", "text", ("contact.first_name", "matter.status")),
    ("Invoice cover", "companies", "html", ("company.name", "company.billing_address")),
    ("Settlement statement", "matters", "docx", ("matter.number", "matter.estimated_fees")),
    ("Intake confirmation", "intake_submissions", "markdown", ("prospect_name", "form_type")),
)

_SHARES: dict[str, tuple[float, int]] = {
    "users": (0.005, 5),
    "companies": (0.08, 6),
    "contacts": (0.25, 8),
    "matters": (0.10, 4),
    "matter_parties": (0.12, 4),
    "claims": (0.05, 2),
    "tasks": (0.15, 4),
    "events": (0.08, 2),
    "documents": (0.02, 3),
    "notes": (0.08, 2),
    "esignature_requests": (0.01, 2),
    "intake_submissions": (0.04, 2),
}
"""Share of the requested total and minimum count for each sized collection."""

_RETIRED_COLLECTIONS = ("tasks", "events", "notes", "intake_submissions")
"""Leaf collections whose records clean tenants delete: nothing references them."""


# --- small value helpers ----------------------------------------------------------------


def _ident(prefix: str, index: int, count: int) -> str:
    return f"{prefix}_{index:0{max(6, len(str(count)))}d}"


def _money(cents: int) -> str:
    """Money as the contract wants it: a decimal string with two places, never a float."""
    return f"{cents // 100}.{cents % 100:02d}"


def _stamp(ident: str, created: int, updated: int) -> Record:
    return {
        "id": ident,
        "created_at": iso_from_micros(created),
        "updated_at": iso_from_micros(updated),
    }


def _between(rng: random.Random, start: int, end: int) -> int:
    return start + rng.randrange(end - start) if end > start else start


def _stamps(rng: random.Random, count: int) -> list[tuple[int, int]]:
    """(created, updated) micros over three years, with updated >= created."""
    stamps: list[tuple[int, int]] = []
    for _ in range(count):
        created = _EPOCH_US - 1 - rng.randrange(_SPAN_US)
        updated = created if rng.random() < 0.35 else _between(rng, created, _EPOCH_US)
        stamps.append((created, updated))
    _share_bulk_updates(rng, stamps)
    return stamps


def _share_bulk_updates(rng: random.Random, stamps: list[tuple[int, int]]) -> None:
    """Give a few records one exact ``updated_at``, as a bulk import does, so ids break ties."""
    if len(stamps) < 3:
        return
    for _ in range(max(1, len(stamps) // 400)):
        members = rng.sample(range(len(stamps)), min(len(stamps), rng.randint(3, 6)))
        moment = max(stamps[i][1] for i in members)
        for i in members:
            stamps[i] = (stamps[i][0], moment)


def _prose(rng: random.Random, sentences: int) -> str:
    """Free text as users type it: mostly English, some accents, RTL, emoji, control chars."""
    parts: list[str] = []
    for _ in range(sentences):
        pool = _FOREIGN_PHRASES if rng.random() < 0.12 else _PHRASES
        sentence = rng.choice(pool)
        if rng.random() < 0.06:
            sentence = f"{sentence} {rng.choice(_EMOJI)}"
        parts.append(sentence)
    text = " ".join(parts)
    if rng.random() < 0.04:
        text = text.replace(" ", rng.choice(_CONTROL_CHARS), 1)
    return text


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return f"+1 ({rng.randint(201, 989)}) 555-{rng.randint(0, 9999):04d}"
    return (
        rng.choice(("+44 20 7946 ", "+972 3-555-", "+52 55 5555 ")) + f"{rng.randint(0, 9999):04d}"
    )


def _address(rng: random.Random) -> dict[str, str]:
    city, state, postal, country = rng.choice(_PLACES)
    street = f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}"
    if rng.random() < 0.15:
        street = f"{street}\nSuite {rng.randint(100, 2400)}"
    return {
        "street": street,
        "city": city,
        "state": state,
        "postal_code": f"{postal}{rng.randint(0, 99):02d}",
        "country": country,
    }


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    first, first_ascii = rng.choice(_FIRST_NAMES)
    last, last_ascii = rng.choice(_LAST_NAMES)
    return first, last, first_ascii, last_ascii


def _field_value(spec: _FieldSpec, rng: random.Random, created: int) -> Any:
    """A value that parses as ``spec.type``."""
    kind = spec.type
    if kind == "text":
        return rng.choice(_SHORT_TEXTS)
    if kind == "textarea":
        return f"{_prose(rng, 2)}\n{_prose(rng, 1)}"
    if kind == "formatted_text":
        summary = html.escape(_prose(rng, 2), quote=False)
        return f"<p>{summary}</p><ul><li>{rng.choice(_CLAIM_NAMES)}</li></ul>"
    if kind == "number":
        return rng.choice(_NUMBER_VALUES.get(spec.key, _ANY_NUMBER))
    if kind == "currency":
        return _money(rng.randrange(10_000, 50_000_000))
    if kind == "date":
        low, high = _DAYS_BEFORE.get(spec.key, (0, 3650))
        return _date_from_micros(created, -rng.randint(low, high)).isoformat()
    if kind == "datetime":
        return iso_from_micros(created + rng.randrange(-365 * _DAY_US, 365 * _DAY_US))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "picklist":
        return rng.choice(spec.options)
    if kind == "multi_picklist":
        return rng.sample(spec.options, rng.randint(1, min(3, len(spec.options))))
    if kind == "computed":
        return rng.randint(0, 1500)
    raise ValueError(f"unknown custom field type {kind!r}")


def _pick_disjoint(rng: random.Random, count: int, wanted: Sequence[int]) -> list[list[int]]:
    """Disjoint random index groups of the wanted sizes (shrunk if ``count`` is too small)."""
    pool = rng.sample(range(count), min(count, sum(wanted)))
    groups: list[list[int]] = []
    for size in wanted:
        groups.append(pool[:size])
        pool = pool[size:]
    return groups


def _rate(count: int, share: float) -> int:
    """How many records a dirty case touches: a few percent, but always at least one."""
    return max(1, round(count * share))


# --- the builder -----------------------------------------------------------------------


class _Builder:
    """Builds collections in dependency order, keeping the ids later collections point at."""

    def __init__(self, records: int, seed: int, dirty: bool) -> None:
        self.seed = seed
        self.dirty = dirty
        self.sizes = {
            name: max(floor, round(records * share)) for name, (share, floor) in _SHARES.items()
        }
        self.records: dict[str, list[Record]] = {}
        self.deletions: list[dict[str, str]] = []
        self.dirty_cases: dict[str, list[str]] = {case: [] for case in DIRTY_CASES}
        self.document_sizes: dict[str, int] = {}
        self.document_formats: dict[str, str] = {}
        self.deleted_matter_ids: list[str] = []
        self.user_ids: list[str] = []
        self.attorney_ids: list[str] = []
        self.user_people: list[tuple[str, str]] = []
        self.company_ids: list[str] = []
        self.company_names: list[str] = []
        self.client_company_ids: list[str] = []
        self.contact_ids: list[str] = []
        self.contact_last_names: list[str] = []
        self.contact_people: list[tuple[str, str]] = []
        self.matter_ids: list[str] = []
        self.document_ids: list[str] = []
        self.field_specs = {
            entity: [spec for spec in _FIELD_SPECS if spec.entity == entity]
            for entity in ("contacts", "companies", "matters", "tasks")
        }

    def rng(self, purpose: str) -> random.Random:
        """An independent stream per purpose, so one collection's draws never shift another's."""
        return random.Random(f"backdocket:{self.seed}:{purpose}")

    def build(self) -> Tenant:
        for step in (
            self.custom_field_definitions,
            self.users,
            self.companies,
            self.contacts,
            self.matters,
            self.matter_parties,
            self.claims,
            self.documents,
            self.tasks,
            self.events,
            self.notes,
            self.esignature_requests,
            self.intake_submissions,
            self.merge_templates,
            self.workflows,
        ):
            step()
        self.retire_leaves()
        if self.dirty:
            self.add_unparseable_custom_fields()
            self.add_unknown_keys()
        self.fingerprint_documents()
        self.deletions.sort(key=lambda d: (d["deleted_at"], d["collection"], d["id"]))
        return Tenant(
            seed=self.seed,
            records={name: self.records[name] for name in COLLECTIONS},
            deletions=self.deletions,
            document_sizes=self.document_sizes,
            document_formats=self.document_formats,
            dirty_cases=self.dirty_cases,
        )

    def ids(self, collection: str) -> list[str]:
        return [row["id"] for row in self.records[collection]]

    def custom_fields(self, entity: str, rng: random.Random, created: int) -> dict[str, Any]:
        return {
            spec.key: _field_value(spec, rng, created)
            for spec in self.field_specs[entity]
            if spec.required or rng.random() < 0.55
        }

    def delete(self, collection: str, row: Record, rng: random.Random) -> None:
        """Record a deletion some time after the record's last update."""
        updated = to_micros(datetime.fromisoformat(row["updated_at"]))
        deleted_at = iso_from_micros(_between(rng, updated + 1, _EPOCH_US))
        self.deletions.append({"collection": collection, "id": row["id"], "deleted_at": deleted_at})

    # -- configuration collections

    def custom_field_definitions(self) -> None:
        rng = self.rng("custom_field_definitions")
        stamps = _stamps(rng, len(_FIELD_SPECS))
        self.records["custom_field_definitions"] = [
            {
                **_stamp(_ident("cfd", i, len(_FIELD_SPECS)), created, updated),
                "entity": spec.entity,
                "key": spec.key,
                "label": spec.label,
                "type": spec.type,
                "options": list(spec.options),
                "required": spec.required,
                "custom_fields": {},
            }
            for i, (spec, (created, updated)) in enumerate(zip(_FIELD_SPECS, stamps, strict=True))
        ]

    def workflows(self) -> None:
        rng = self.rng("workflows")
        stamps = _stamps(rng, len(_WORKFLOW_PLANS))
        rows: list[Record] = []
        for i, ((name, event, value), (created, updated)) in enumerate(
            zip(_WORKFLOW_PLANS, stamps, strict=True)
        ):
            steps = [
                {
                    "action": rng.choice(_WORKFLOW_ACTIONS),
                    "delay": f"P{rng.randint(0, 14)}D",
                    "assignee_role": rng.choice(_USER_ROLES),
                    "template_id": rng.choice(self.ids("merge_templates")),
                }
                for _ in range(rng.randint(1, 4))
            ]
            rows.append(
                {
                    **_stamp(_ident("wf", i, len(_WORKFLOW_PLANS)), created, updated),
                    "name": name,
                    "trigger": {"event": event, "value": value},
                    "conditions": [
                        {
                            "field": "practice_area",
                            "op": "in",
                            "value": rng.sample([t[1] for t in CLAIM_TEMPLATES[:8]], 2),
                        }
                    ],
                    "steps": steps,
                    "active": rng.random() < 0.8,
                    "custom_fields": {},
                }
            )
        self.records["workflows"] = rows

    def merge_templates(self) -> None:
        rng = self.rng("merge_templates")
        stamps = _stamps(rng, len(_TEMPLATE_PLANS))
        self.records["merge_templates"] = [
            {
                **_stamp(_ident("mtpl", i, len(_TEMPLATE_PLANS)), created, updated),
                "name": name,
                "entity": entity,
                "body_format": body_format,
                "merge_fields": list(fields),
                "custom_fields": {},
            }
            for i, ((name, entity, body_format, fields), (created, updated)) in enumerate(
                zip(_TEMPLATE_PLANS, stamps, strict=True)
            )
        ]

    # -- people and organisations

    def users(self) -> None:
        rng = self.rng("users")
        count = self.sizes["users"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            first, last, first_ascii, last_ascii = _person(rng)
            rows.append(
                {
                    **_stamp(_ident("usr", i, count), created, updated),
                    "name": f"{first} {last}",
                    "email": f"{first_ascii}.{last_ascii}.{i}@{_FIRM_DOMAIN}",
                    "role": "attorney"
                    if i < 2
                    else rng.choices(_USER_ROLES, _USER_ROLE_WEIGHTS)[0],
                    "active": i < 2 or rng.random() < 0.9,
                    "custom_fields": {},
                }
            )
        if self.dirty:
            self.dirty_users(rows)
        self.records["users"] = rows
        self.user_ids = [row["id"] for row in rows]
        self.attorney_ids = [row["id"] for row in rows if row["role"] == "attorney"]
        self.user_people = [(row["name"], row["email"]) for row in rows if row["email"]]

    def dirty_users(self, rows: list[Record]) -> None:
        """Users without email and pairs sharing one; the first two attorneys stay clean."""
        rng = self.rng("users:dirty")
        missing, pairs = _pick_disjoint(
            rng, len(rows) - 2, (_rate(len(rows), 0.02), 2 * _rate(len(rows), 0.01))
        )
        for i in missing:
            rows[i + 2]["email"] = None
            self.dirty_cases["user_no_email"].append(rows[i + 2]["id"])
        for first, second in zip(pairs[::2], pairs[1::2], strict=False):
            rows[second + 2]["email"] = rows[first + 2]["email"]
            self.dirty_cases["user_duplicate_email"] += [
                rows[first + 2]["id"],
                rows[second + 2]["id"],
            ]

    def companies(self) -> None:
        rng = self.rng("companies")
        count = self.sizes["companies"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            stem, slug = rng.choice(_COMPANY_STEMS)
            name = f"{stem} {rng.choice(_COMPANY_SUFFIXES)}"
            if rng.random() < 0.04:
                name = f"{name} {rng.choice(_EMOJI)}"
            employees = int(rng.lognormvariate(3.5, 1.4)) + 1
            rows.append(
                {
                    **_stamp(_ident("co", i, count), created, updated),
                    "name": name,
                    "domain": f"{slug}{i}.{rng.choice(_TLDS)}",
                    "industry": rng.choice(_INDUSTRIES),
                    "employee_count": employees,
                    "annual_revenue": _money(employees * rng.randrange(4_000_000, 25_000_000)),
                    "parent_company_id": (
                        rows[rng.randrange(i)]["id"] if i > 0 and rng.random() < 0.2 else None
                    ),
                    "billing_address": _address(rng),
                    "kind": rng.choices(_COMPANY_KINDS, _COMPANY_KIND_WEIGHTS)[0],
                    "custom_fields": self.custom_fields("companies", rng, created),
                }
            )
        if self.dirty:
            self.dirty_companies(rows)
        self.records["companies"] = rows
        self.company_ids = [row["id"] for row in rows]
        self.company_names = [row["name"] for row in rows]
        self.client_company_ids = [row["id"] for row in rows if row["kind"] == "client"]

    def dirty_companies(self, rows: list[Record]) -> None:
        """Parent chains that loop: A → B → C → A."""
        rng = self.rng("companies:dirty")
        cycles = max(1, len(rows) // 400)
        for members in _pick_disjoint(rng, len(rows), [3] * cycles):
            if len(members) < 3:
                break
            for child, parent in zip(members, members[1:] + members[:1], strict=True):
                rows[child]["parent_company_id"] = rows[parent]["id"]
            self.dirty_cases["company_parent_cycle"] += [rows[i]["id"] for i in members]

    def contacts(self) -> None:
        rng = self.rng("contacts")
        count = self.sizes["contacts"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            first, last, first_ascii, last_ascii = _person(rng)
            links = rng.sample(self.company_ids, rng.choices((1, 2, 3), (70, 22, 8))[0])
            rows.append(
                {
                    **_stamp(_ident("ct", i, count), created, updated),
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first_ascii}.{last_ascii}.{i}@{rng.choice(_MAIL_DOMAINS)}",
                    "phone": _phone(rng),
                    "mobile": _phone(rng) if rng.random() < 0.7 else None,
                    "address": _address(rng),
                    "company_links": [
                        {
                            "company_id": company_id,
                            "linked_at": iso_from_micros(_between(rng, created, updated)),
                        }
                        for company_id in links
                    ],
                    "intake_status": rng.choice(_INTAKE_STATUSES),
                    "bar_number": (
                        f"{rng.choice(_PLACES)[1] or 'NY'}-{rng.randint(100000, 999999)}"
                        if rng.random() < 0.05
                        else None
                    ),
                    "owner_id": rng.choice(self.user_ids),
                    "custom_fields": self.custom_fields("contacts", rng, created),
                }
            )
        if self.dirty:
            self.dirty_contacts(rows)
        self.records["contacts"] = rows
        self.contact_ids = [row["id"] for row in rows]
        self.contact_last_names = [row["last_name"] for row in rows]
        self.contact_people = [
            (f"{row['first_name']} {row['last_name']}", row["email"])
            for row in rows
            if row["email"]
        ]

    def dirty_contacts(self, rows: list[Record]) -> None:
        """No email, a duplicated email, no company, and five companies."""
        rng = self.rng("contacts:dirty")
        count = len(rows)
        no_email, duplicates, no_company, five = _pick_disjoint(
            rng,
            count,
            (_rate(count, 0.02), 2 * _rate(count, 0.01), _rate(count, 0.02), _rate(count, 0.01)),
        )
        for i in no_email:
            rows[i]["email"] = None
            self.dirty_cases["contact_no_email"].append(rows[i]["id"])
        for first, second in zip(duplicates[::2], duplicates[1::2], strict=False):
            rows[second]["email"] = rows[first]["email"]
            self.dirty_cases["contact_duplicate_email"] += [rows[first]["id"], rows[second]["id"]]
        for i in no_company:
            rows[i]["company_links"] = []
            self.dirty_cases["contact_no_company"].append(rows[i]["id"])
        for i in five:
            created = to_micros(datetime.fromisoformat(rows[i]["created_at"]))
            rows[i]["company_links"] = [
                {"company_id": company_id, "linked_at": iso_from_micros(created)}
                for company_id in rng.sample(self.company_ids, 5)
            ]
            self.dirty_cases["contact_five_companies"].append(rows[i]["id"])

    # -- matters and what hangs off them

    def matters(self) -> None:
        rng = self.rng("matters")
        live = self.sizes["matters"]
        doomed = max(1, live // 100) if self.dirty else 0
        count = live + doomed
        rows = [
            self.matter(rng, i, count, created, updated)
            for i, (created, updated) in enumerate(_stamps(rng, count))
        ]
        if doomed:
            rows = self.delete_some_matters(rows, doomed)
        self.records["matters"] = rows
        self.matter_ids = [row["id"] for row in rows]

    def matter(self, rng: random.Random, i: int, count: int, created: int, updated: int) -> Record:
        claim_type, practice_area, case_type = rng.choice(CLAIM_TEMPLATES)
        status = rng.choices(MATTER_STATUSES, _MATTER_STATUS_WEIGHTS)[0]
        opened = _date_from_micros(created)
        filed = None
        if status in _FILED_STATUSES:
            filed = min(_EPOCH_DATE, opened + timedelta(days=rng.randint(10, 200)))
        closed = None
        if status in _CLOSED_STATUSES:
            closed = min(_EPOCH_DATE, (filed or opened) + timedelta(days=rng.randint(30, 700)))
        claim_cents = rng.randrange(500_000, 250_000_000)
        billing_type = rng.choice(_BILLING_TYPES)
        fees = (
            claim_cents // 3
            if billing_type == "contingency"
            else rng.randrange(250_000, 15_000_000)
        )
        contact = rng.randrange(len(self.contact_ids))
        opponent = rng.choice(self.company_names)
        return {
            **_stamp(_ident("mt", i, count), created, updated),
            "number": f"{opened.year}-{_CASE_CODES[case_type]}-{i:06d}",
            "name": f"{self.contact_last_names[contact]} v. {opponent}",
            "case_type": case_type,
            "claim_type": claim_type,
            "status": status,
            "filed_date": filed.isoformat() if filed else None,
            "opened_date": opened.isoformat(),
            "closed_date": closed.isoformat() if closed else None,
            "claim_amount": _money(claim_cents),
            "estimated_fees": _money(fees),
            "billing_type": billing_type,
            "description": _prose(rng, rng.randint(1, 4)),
            "court_jurisdiction": rng.choice(_COURTS),
            "practice_area": practice_area,
            "statute_of_limitations": (
                opened + timedelta(days=730 - rng.randrange(300))
            ).isoformat(),
            "assigned_attorney_id": rng.choice(self.attorney_ids),
            "client_company_id": (
                rng.choice(self.client_company_ids or self.company_ids)
                if rng.random() < 0.6
                else None
            ),
            "primary_contact_id": self.contact_ids[contact],
            "custom_fields": self.custom_fields("matters", rng, created),
        }

    def delete_some_matters(self, rows: list[Record], doomed: int) -> list[Record]:
        """Delete matters that dirty tasks will keep pointing at."""
        rng = self.rng("matters:dirty")
        chosen = set(rng.sample(range(len(rows)), doomed))
        for i in sorted(chosen):
            self.delete("matters", rows[i], rng)
            self.deleted_matter_ids.append(rows[i]["id"])
        return [row for i, row in enumerate(rows) if i not in chosen]

    def matter_parties(self) -> None:
        rng = self.rng("matter_parties")
        count = self.sizes["matter_parties"]
        with_client: set[str] = set()
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            matter_id = rng.choice(self.matter_ids)
            first = matter_id not in with_client
            with_client.add(matter_id)
            rows.append(
                {
                    **_stamp(_ident("mp", i, count), created, updated),
                    "matter_id": matter_id,
                    "contact_id": rng.choice(self.contact_ids),
                    "role": "client" if first else rng.choice(PARTY_ROLES[:5]),
                    "is_primary": first,
                    "custom_fields": {},
                }
            )
        self.records["matter_parties"] = rows

    def claims(self) -> None:
        rng = self.rng("claims")
        count = self.sizes["claims"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            status = rng.choice(_CLAIM_STATUSES)
            closed = _date_from_micros(updated) if status not in _OPEN_CLAIM_STATUSES else None
            rows.append(
                {
                    **_stamp(_ident("cl", i, count), created, updated),
                    "matter_id": rng.choice(self.matter_ids),
                    "name": rng.choice(_CLAIM_NAMES),
                    "claim_kind": rng.choice(_CLAIM_KINDS),
                    "amount": _money(rng.randrange(10_000, 100_000_000)),
                    "revenue_generating": rng.random() < 0.4,
                    "status": status,
                    "close_date": closed.isoformat() if closed else None,
                    "custom_fields": {},
                }
            )
        self.records["claims"] = rows

    def documents(self) -> None:
        rng = self.rng("documents")
        count = self.sizes["documents"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            stem, extensions = rng.choice(_DOC_STEMS)
            extension = rng.choice(extensions)
            version = rng.choices((1, 2, 3, 4), (70, 18, 8, 4))[0]
            suffix = f" v{version}" if version > 1 else ""
            ident = _ident("doc", i, count)
            size = (
                rng.randint(1024, 60 * 1024)
                if rng.random() < 0.9
                else rng.randint(60 * 1024, 400 * 1024)
            )
            self.document_sizes[ident] = size
            self.document_formats[ident] = extension
            rows.append(
                {
                    **_stamp(ident, created, updated),
                    "filename": f"{stem}{suffix}.{extension}",
                    "mime_type": _DOC_FORMATS[extension].mime_type,
                    "size_bytes": size,
                    "sha256": "",
                    "uploaded_at": iso_from_micros(created),
                    "uploaded_by_id": rng.choice(self.user_ids),
                    "contact_id": rng.choice(self.contact_ids) if rng.random() < 0.7 else None,
                    "matter_id": rng.choice(self.matter_ids) if rng.random() < 0.85 else None,
                    "version": version,
                    "custom_fields": {},
                }
            )
        if self.dirty:
            self.oversize_documents(rows)
        self.records["documents"] = rows
        self.document_ids = [row["id"] for row in rows]

    def oversize_documents(self, rows: list[Record]) -> None:
        """Attachments past 25 MB; their bytes are still expanded only when asked for."""
        rng = self.rng("documents:dirty")
        for i in rng.sample(range(len(rows)), min(len(rows), 1 + len(rows) // 1000)):
            size = LARGE_DOCUMENT_BYTES + rng.randint(1, 512 * 1024)
            rows[i]["size_bytes"] = size
            self.document_sizes[rows[i]["id"]] = size
            self.dirty_cases["document_over_25mb"].append(rows[i]["id"])

    def fingerprint_documents(self) -> None:
        """Fill each document's ``sha256`` from the bytes its content endpoint will serve."""
        tenant = Tenant(self.seed, {}, [], self.document_sizes, self.document_formats)
        for row in self.records["documents"]:
            digest = hashlib.sha256()
            for block in tenant.iter_document_content(row["id"]):
                digest.update(block)
            row["sha256"] = digest.hexdigest()

    # -- activity

    def tasks(self) -> None:
        rng = self.rng("tasks")
        count = self.sizes["tasks"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            status = rng.choices(TASK_STATUSES, (45, 20, 35))[0]
            rows.append(
                {
                    **_stamp(_ident("tk", i, count), created, updated),
                    "subject": rng.choice(_TASK_SUBJECTS),
                    "description": _prose(rng, rng.randint(1, 3)) if rng.random() < 0.8 else None,
                    "status": status,
                    "priority": rng.choices(TASK_PRIORITIES, (20, 50, 22, 8))[0],
                    "due_date": _date_from_micros(created, rng.randint(1, 60)).isoformat(),
                    "assignee_id": rng.choice(self.user_ids),
                    "contact_id": rng.choice(self.contact_ids) if rng.random() < 0.6 else None,
                    "matter_id": rng.choice(self.matter_ids) if rng.random() < 0.85 else None,
                    "recurrence": rng.choice(_RRULES) if rng.random() < 0.1 else None,
                    "approval_request": rng.choice(_APPROVALS) if rng.random() < 0.05 else None,
                    "custom_fields": self.custom_fields("tasks", rng, created),
                }
            )
        self.records["tasks"] = rows

    def point_tasks_at_deleted_matters(self) -> None:
        rng = self.rng("tasks:dirty")
        rows = self.records["tasks"]
        for i in rng.sample(range(len(rows)), min(len(rows), _rate(len(rows), 0.02))):
            rows[i]["matter_id"] = rng.choice(self.deleted_matter_ids)
            self.dirty_cases["task_deleted_matter"].append(rows[i]["id"])

    def events(self) -> None:
        rng = self.rng("events")
        count = self.sizes["events"]
        people = self.contact_people + self.user_people
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            all_day = rng.random() < 0.1
            start = created + rng.randrange(1, 90) * _DAY_US
            if all_day:
                start -= start % _DAY_US
            end = start + (_DAY_US if all_day else rng.choice((30, 60, 90, 120, 240)) * 60_000_000)
            rows.append(
                {
                    **_stamp(_ident("ev", i, count), created, updated),
                    "subject": rng.choice(_EVENT_SUBJECTS),
                    "description": _prose(rng, 1) if rng.random() < 0.6 else None,
                    "location": rng.choice(_LOCATIONS),
                    "start_at": iso_from_micros(start),
                    "end_at": iso_from_micros(end),
                    "all_day": all_day,
                    "owner_id": rng.choice(self.user_ids),
                    "attendees": [
                        {"email": email, "name": name}
                        for name, email in rng.sample(people, min(len(people), rng.randint(0, 4)))
                    ],
                    "contact_id": rng.choice(self.contact_ids) if rng.random() < 0.6 else None,
                    "matter_id": rng.choice(self.matter_ids) if rng.random() < 0.8 else None,
                    "recurrence": rng.choice(_RRULES) if rng.random() < 0.08 else None,
                    "custom_fields": {},
                }
            )
        self.records["events"] = rows

    def notes(self) -> None:
        rng = self.rng("notes")
        count = self.sizes["notes"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            body = f"<p>{html.escape(_prose(rng, rng.randint(1, 5)), quote=False)}</p>"
            if rng.random() < 0.15:
                image = rng.choice(self.document_ids)
                body = f'{body}<p><img src="/api/v1/documents/{image}/content"></p>'
            rows.append(
                {
                    **_stamp(_ident("nt", i, count), created, updated),
                    "body": body,
                    "author_id": rng.choice(self.user_ids),
                    "contact_id": rng.choice(self.contact_ids) if rng.random() < 0.6 else None,
                    "matter_id": rng.choice(self.matter_ids) if rng.random() < 0.8 else None,
                    "custom_fields": {},
                }
            )
        self.records["notes"] = rows

    def esignature_requests(self) -> None:
        rng = self.rng("esignature_requests")
        count = self.sizes["esignature_requests"]
        documents = self.records["documents"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            document = rng.choice(documents)
            status = rng.choice(_ESIGN_STATUSES)
            signer_status = {"draft": "pending", "completed": "signed", "voided": "voided"}
            signers = [
                {"name": name, "email": email, "status": signer_status.get(status, "sent")}
                for name, email in rng.sample(
                    self.contact_people, min(len(self.contact_people), rng.randint(1, 3))
                )
            ]
            if status == "declined" and signers:
                signers[-1]["status"] = "declined"
            rows.append(
                {
                    **_stamp(_ident("esr", i, count), created, updated),
                    "document_id": document["id"],
                    "document_name": document["filename"],
                    "signers": signers,
                    "status": status,
                    "sent_at": None if status == "draft" else iso_from_micros(created),
                    "completed_at": iso_from_micros(updated) if status == "completed" else None,
                    "envelope_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "matter_id": document["matter_id"] or rng.choice(self.matter_ids),
                    "custom_fields": {},
                }
            )
        self.records["esignature_requests"] = rows

    def intake_submissions(self) -> None:
        rng = self.rng("intake_submissions")
        count = self.sizes["intake_submissions"]
        rows: list[Record] = []
        for i, (created, updated) in enumerate(_stamps(rng, count)):
            first, last, first_ascii, _ = _person(rng)
            status = rng.choices(INTAKE_STATUSES, (40, 35, 25))[0]
            rows.append(
                {
                    **_stamp(_ident("ink", i, count), created, updated),
                    "form_type": rng.choice(_FORM_TYPES),
                    "prospect_name": f"{first} {last}",
                    "prospect_email": (
                        f"{first_ascii}{rng.randint(1, 999)}@{rng.choice(_MAIL_DOMAINS)}"
                        if rng.random() < 0.9
                        else None
                    ),
                    "prospect_phone": _phone(rng),
                    "referral_source": rng.choice(REFERRAL_SOURCES),
                    "case_type_interest": rng.choice(CLAIM_TEMPLATES)[0],
                    "submitted_at": iso_from_micros(created),
                    "status": status,
                    "converted_matter_id": (
                        rng.choice(self.matter_ids) if status == "converted" else None
                    ),
                    "assigned_to_id": rng.choice(self.user_ids),
                    "custom_fields": {},
                }
            )
        self.records["intake_submissions"] = rows

    # -- deletions and dirt that spans collections

    def retire_leaves(self) -> None:
        """Delete a few records nothing points at, so even clean tenants have deletions.

        Runs before dirt is added, so no dirty case ever lands on a deleted record.
        """
        for collection in _RETIRED_COLLECTIONS:
            rng = self.rng(f"{collection}:retire")
            rows = self.records[collection]
            retired = min(max(0, len(rows) - 1), max(1, len(rows) // 200))
            chosen = set(rng.sample(range(len(rows)), retired))
            for i in sorted(chosen):
                self.delete(collection, rows[i], rng)
            self.records[collection] = [row for i, row in enumerate(rows) if i not in chosen]
        if self.dirty:
            self.point_tasks_at_deleted_matters()

    def add_unparseable_custom_fields(self) -> None:
        """Custom field values that do not parse as their definition's type."""
        for entity, specs in self.field_specs.items():
            rng = self.rng(f"{entity}:unparseable")
            breakable = [spec for spec in specs if spec.type in _UNPARSEABLE]
            rows = self.records[entity]
            for i in rng.sample(range(len(rows)), min(len(rows), _rate(len(rows), 0.02))):
                spec = rng.choice(breakable)
                rows[i]["custom_fields"][spec.key] = _unparseable(spec.type)
                self.dirty_cases["custom_field_unparseable"].append(rows[i]["id"])

    def add_unknown_keys(self) -> None:
        """Keys the contract does not list, as legacy imports leave behind."""
        for collection in COLLECTIONS:
            rng = self.rng(f"{collection}:unknown_keys")
            rows = self.records[collection]
            for i in rng.sample(range(len(rows)), min(len(rows), _rate(len(rows), 0.01))):
                rows[i]["legacy_ref"] = f"BD-LEGACY-{rng.randrange(10**6):06d}"
                if rng.random() < 0.5:
                    rows[i]["x_import_batch"] = {"batch": rng.randint(1, 40), "source": "csv"}
                self.dirty_cases["unknown_extra_keys"].append(rows[i]["id"])
