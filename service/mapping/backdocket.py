"""What every BackDocket pair reads the same way, whatever the destination.

Company links and which one is primary, owner matching by email, attendee and
signer lines, note subjects, inline images and file sizes are facts about the
source; each pair's mapping only decides where they land.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.base import Record
from service.mapping import transforms as tx
from service.mapping.draft import Draft, blank

NO_SUBJECT = "(no subject)"
INLINE_IMAGE = re.compile(r"/api/v1/documents/([^/?#]+)/content")
"""An image inside a note body points at a BackDocket document's content."""
NOTE_SUBJECT_LENGTH = 60
"""Characters of a note's text that make its activity subject."""

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CompanyLink:
    """A contact's link to one company, at the time it was made (None: unknown)."""

    company_id: str
    linked_at: datetime | None


def company_links(draft: Draft, links: Any) -> list[CompanyLink]:
    """A contact's company links, one per company (its latest), in BackDocket's order."""
    found: dict[str, CompanyLink] = {}
    for link in links if isinstance(links, list) else []:
        company = link.get("company_id") if isinstance(link, Mapping) else None
        if blank(company):
            draft.note(f"company link {link!r} names no company; skipped")
            continue
        assert isinstance(link, Mapping)
        try:
            linked_at: datetime | None = tx.parse_datetime(link.get("linked_at"))
        except ValueError:
            linked_at = None
        earlier = found.get(str(company))
        if earlier is None or (linked_at or _NEVER) > (earlier.linked_at or _NEVER):
            found[str(company)] = CompanyLink(str(company), linked_at)
    return list(found.values())


def primary_link(links: Sequence[CompanyLink]) -> CompanyLink:
    """The most recently linked company; ties go to the one BackDocket lists first."""
    index = max(range(len(links)), key=lambda i: (links[i].linked_at or _NEVER, -i))
    return links[index]


@dataclass(frozen=True)
class OwnerResolution:
    """BackDocket users matched to destination users by email: the owner report."""

    owners: Mapping[str, str]
    """BackDocket user id → destination user id, the fallback owner applied."""
    matched: list[tuple[str, str, str]] = field(default_factory=list)
    """(BackDocket user id, email, destination user id) for every email match."""
    fell_back: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    """(BackDocket user id, name, email or None, reason): the orphaned owners, whose
    records go to the fallback owner."""
    shared_emails: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Email → BackDocket user ids sharing it; they all map to one destination user."""

    def orphaned_owner_report(self) -> list[dict[str, str | None]]:
        """One row per orphaned owner, for the admin to create, license or accept."""
        return [
            {"user_id": uid, "name": name, "email": email, "reason": reason}
            for uid, name, email, reason in self.fell_back
        ]


def match_owners(
    users: Sequence[Record],
    destination_users_by_email: Mapping[str, str],
    fallback_owner: str,
    *,
    unmatched_reason: str,
) -> OwnerResolution:
    """Match BackDocket users to destination users on trimmed, case-insensitive email.

    A user without an email, or whose email has no destination user, gets the
    fallback owner and is reported (``unmatched_reason``) so the team can create
    the user or accept the fallback.
    """
    directory = {tx.email_key(email): uid for email, uid in destination_users_by_email.items()}
    owners: dict[str, str] = {}
    matched: list[tuple[str, str, str]] = []
    fell_back: list[tuple[str, str, str | None, str]] = []
    by_email: dict[str, list[str]] = {}
    for user in users:
        user_id, name = str(user["id"]), str(user.get("name") or "")
        key = tx.email_key(user.get("email"))
        if key is None:
            fell_back.append((user_id, name, None, "no email in BackDocket"))
            owners[user_id] = fallback_owner
            continue
        by_email.setdefault(key, []).append(user_id)
        email = str(user["email"]).strip()
        found = directory.get(key)
        if found is None:
            fell_back.append((user_id, name, email, unmatched_reason))
        else:
            matched.append((user_id, email, found))
        owners[user_id] = found or fallback_owner
    shared = {email: tuple(ids) for email, ids in by_email.items() if len(ids) > 1}
    return OwnerResolution(owners, matched, fell_back, shared)


def person_line(person: Any, status: bool = False) -> str | None:
    """``name <email>`` (with `` (status)``) for an attendee or signer."""
    if not isinstance(person, Mapping):
        return None
    name = str(person.get("name") or "").strip()
    email = str(person.get("email") or "").strip()
    line = f"{name} <{email}>" if name and email else name or (f"<{email}>" if email else "")
    if status and person.get("status"):
        line = f"{line} ({person['status']})"
    return line or None


def note_subject(text: str, limit: int = NOTE_SUBJECT_LENGTH) -> str:
    """``Note: <its first words>``, cut at a word boundary within ``limit`` characters."""
    words: list[str] = []
    for word in text.split():
        if len(" ".join([*words, word])) > limit:
            return f"Note: {' '.join(words) or word[:limit]}…"
        words.append(word)
    return f"Note: {' '.join(words)}" if words else "Note"


def inline_image(src: str) -> str:
    """The text an inline image of a note body becomes."""
    match = INLINE_IMAGE.search(src)
    return f"[inline image: document {match.group(1)}]" if match else f"[image: {src}]"


def megabytes(size: int) -> str:
    """Size in MB to one decimal, rounded up so an oversized file never reads as the limit."""
    return f"{math.ceil(size * 10 / (1024 * 1024)) / 10:.1f} MB"


def attached_to(record: Record) -> str:
    """The matter and contact a document belongs to, for the reports."""
    places = [
        f"{kind} {record[key]}"
        for kind, key in (("matter", "matter_id"), ("contact", "contact_id"))
        if not blank(record.get(key))
    ]
    return " and ".join(places) or "no record"
