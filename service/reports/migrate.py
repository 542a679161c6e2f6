"""The migration report: per object counts, every failure in a CSV, who owns what."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journal.issues import RecordIssue
from journal.operations import Operation

ACTIONS = ("created", "updated", "unchanged", "skipped", "failed")


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    """One row of the summary: a source collection into one destination object."""

    collection: str
    object: str
    source: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class MigrateReport:
    """Everything the operator reads at the end of a run."""

    run_id: str
    destination: str
    rows: list[ObjectSummary]
    failures: list[Operation]
    owners_matched: int
    owners_fell_back: list[dict[str, Any]]
    schema_missing: list[str] = field(default_factory=list)
    duplicate_emails: list[dict[str, Any]] = field(default_factory=list)
    """Contacts sharing an email (the de-duplication key), for the firm to merge."""
    notes: list[RecordIssue] = field(default_factory=list)
    """Records loaded with a reviewable change (a value mapped to a fallback, truncated…)."""
    owners_matches: list[dict[str, str]] = field(default_factory=list)
    """Who matched: ``user_id`` (BackDocket), ``email`` it matched on, ``destination_user``."""
    deleted_at_source: dict[str, int] = field(default_factory=dict)
    """collection → staged records not loaded because the source deleted them since."""

    @property
    def created(self) -> int:
        return sum(r.created for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.rows)


def build_rows(
    staged: Mapping[str, int],
    summary: Mapping[tuple[str, str], Mapping[str, int]],
    order: Sequence[str] = (),
) -> list[ObjectSummary]:
    """Summary rows in load order, one per (collection, object) seen."""
    rank = {name: i for i, name in enumerate(order)}
    rows = []
    for (collection, sobject), counts in sorted(
        summary.items(), key=lambda item: (rank.get(item[0][0], len(rank)), item[0])
    ):
        rows.append(
            ObjectSummary(collection, sobject, staged.get(collection, 0),
                          **{a: counts.get(a, 0) for a in ACTIONS})
        )  # fmt: skip
    return rows


def write_migrate_report(report: MigrateReport, out_dir: Path) -> list[Path]:
    """``summary.json``, ``summary.md``, ``failures.csv`` and ``owners.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ("summary.json", "summary.md", "failures.csv", "owners.md", "transform-notes.csv")
    paths = [out_dir / n for n in names]
    paths[0].write_bytes(
        orjson.dumps(
            {
                "run_id": report.run_id,
                "destination": report.destination,
                "objects": [asdict(r) for r in report.rows],
                "failures": len(report.failures),
                "owners_matched": report.owners_matched,
                "owners_matches": report.owners_matches,
                "owners_fell_back": report.owners_fell_back,
                "schema_missing": report.schema_missing,
                "duplicate_emails": report.duplicate_emails,
                "deleted_at_source": report.deleted_at_source,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    with paths[2].open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["collection", "source_id", "object", "outcome", "reason", "message"])
        for op in report.failures:
            writer.writerow(
                [op.collection, op.source_id, op.object or "", op.action, op.reason_code or "",
                 op.message or ""]
            )  # fmt: skip
    paths[3].write_text(
        render_owners(report.owners_matched, report.owners_fell_back, report.owners_matches),
        encoding="utf-8",
    )
    with paths[4].open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["collection", "record", "object", "notes"])
        for note in report.notes:
            writer.writerow([note.collection, note.source_id, note.code.split(":", 1)[-1],
                             note.message])  # fmt: skip
    return paths


def render_markdown(report: MigrateReport) -> str:
    """The summary table an operator pastes into the cutover ticket."""
    lines = [
        f"# Migration {report.run_id} → {report.destination}",
        "",
        "| collection | object | source | created | updated | unchanged | skipped | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.collection} | {r.object} | {r.source} | {r.created} | {r.updated} | "
        f"{r.unchanged} | {r.skipped} | {r.failed} |"
        for r in report.rows
    ]
    if report.schema_missing:
        lines += ["", "## Waiting for schema", ""]
        lines += [f"- {name}" for name in report.schema_missing]
    if report.deleted_at_source:
        lines += render_deleted(report.deleted_at_source)
    if report.duplicate_emails:
        lines += ["", "## Contacts sharing an email (review for merging)", ""]
        lines += [f"- {d['email']}: {', '.join(d['contacts'])}" for d in report.duplicate_emails]
    lines += [
        "",
        f"{len(report.failures)} records skipped or failed: see failures.csv. "
        f"{len(report.notes)} records loaded with notes for review: see transform-notes.csv.",
    ]
    return "\n".join(lines) + "\n"


def render_deleted(deleted: Mapping[str, int]) -> list[str]:
    """Records staged but deleted at the source since: counted under ``skipped``."""
    lines = ["", "## Deleted at the source (not loaded)", ""]
    lines += [f"- {collection}: {n}" for collection, n in sorted(deleted.items())]
    lines += [
        "",
        "These records were deleted in the source after they were staged, so this run did "
        "not load them (each is in failures.csv as `deleted_at_source`). A copy an earlier "
        "run loaded is still in the destination: removing it is delta pickup / "
        "reconciliation, not this run.",
    ]
    return lines


def render_owners(
    matched: int,
    fell_back: Sequence[Mapping[str, Any]],
    matches: Sequence[Mapping[str, str]] = (),
) -> str:
    """Who owns what: the owner-resolution report the seed asks for.

    Both sides are listed: an admin checks the matches (an email shared by two
    people would hand one's records to the other) as much as the fallbacks.
    """
    lines = [
        "# Owner resolution",
        "",
        f"{matched} BackDocket users matched a destination user by email; "
        f"{len(fell_back)} fell back to the fallback owner.",
    ]
    if matches:
        lines += ["", "## Matched", "", "| BackDocket user | matched on email | destination user |"]
        lines += ["|---|---|---|"]
        lines += [
            f"| {m['user_id']} | {m['email']} | {m['destination_user']} |"
            for m in sorted(matches, key=lambda m: m["user_id"])
        ]
    if fell_back:
        lines += ["", "## Fell back to the fallback owner", ""]
        lines += ["| BackDocket user | name | email | why |", "|---|---|---|---|"]
        lines += [
            f"| {f['user_id']} | {f['name']} | {f.get('email') or ''} | {f['reason']} |"
            for f in fell_back
        ]
    return "\n".join(lines) + "\n"
