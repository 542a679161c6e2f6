"""The delta cycle's report: what changed since the watermark, what was written, every
conflict with the destination (record, field, base / theirs / ours) and every deletion."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from journal.deltas import FieldConflict
from service.reports.migrate import ObjectSummary

SHOWN = 60
"""Characters of a value the Markdown report quotes."""


@dataclass(frozen=True, slots=True)
class DeletionOutcome:
    """What a cycle did with one record the source deleted."""

    collection: str
    source_id: str
    object: str
    destination_id: str
    action: str
    """``flagged``, ``deleted``, ``archived``, ``already archived``, ``already gone`` or
    ``failed``."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class GoneRecord:
    """A changed source record whose destination copy was deleted since crmlift wrote it."""

    collection: str
    source_id: str
    object: str
    destination_id: str
    recreated: bool


@dataclass(slots=True)
class DeltaReport:
    """Everything the operator reads after one delta cycle."""

    run_id: str
    destination: str
    base_run_id: str
    watermark: str
    since: str
    until: str
    policy: dict[str, Any]
    rows: list[ObjectSummary] = field(default_factory=list)
    conflicts: list[FieldConflict] = field(default_factory=list)
    deletions: list[DeletionOutcome] = field(default_factory=list)
    gone: list[GoneRecord] = field(default_factory=list)
    changed: int = 0
    """Source records changed (or created) in the window."""

    @property
    def written(self) -> int:
        return sum(r.created + r.updated for r in self.rows)

    @property
    def true_conflicts(self) -> list[FieldConflict]:
        return [c for c in self.conflicts if c.kind == "conflict"]


def write_delta_report(report: DeltaReport, out_dir: Path) -> list[Path]:
    """``delta-summary.json`` and ``delta-summary.md`` in the cycle's run directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "delta-summary.json", out_dir / "delta-summary.md"
    json_path.write_bytes(orjson.dumps(_document(report), option=orjson.OPT_INDENT_2))
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return [json_path, md_path]


def _document(report: DeltaReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "destination": report.destination,
        "base_run_id": report.base_run_id,
        "watermark": report.watermark,
        "since": report.since,
        "until": report.until,
        "policy": report.policy,
        "changed_records": report.changed,
        "written": report.written,
        "objects": [asdict(r) for r in report.rows],
        "conflicts": [asdict(c) for c in report.conflicts],
        "deletions": [asdict(d) for d in report.deletions],
        "deleted_in_destination": [asdict(g) for g in report.gone],
    }


def render_markdown(report: DeltaReport) -> str:
    lines = [
        f"# Delta {report.run_id} into {report.destination}",
        "",
        f"Changes since {report.since} (the watermark {report.watermark} of run "
        f"{report.base_run_id}, less the overlap) until {report.until}: "
        f"{report.changed} source records changed, {report.written} destination records "
        f"written. Policy: {', '.join(f'{k} = {v}' for k, v in report.policy.items())}.",
        "",
        "| collection | object | created | updated | unchanged | skipped | failed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.collection} | {r.object} | {r.created} | {r.updated} | {r.unchanged} | "
        f"{r.skipped} | {r.failed} |"
        for r in report.rows
    ]
    lines += ["", f"## Conflicts ({len(report.true_conflicts)})", ""]
    lines += _conflicts(report.conflicts, "conflict") or ["None."]
    kept = _conflicts(report.conflicts, "destination-only")
    if kept:
        lines += ["", f"## Changed only in the destination, kept ({len(kept) - 2})", "", *kept]
    lines += ["", f"## Deleted at the source ({len(report.deletions)})", ""]
    lines += [
        f"- {d.collection}/{d.source_id} → {d.object} {d.destination_id}: {d.action}"
        + (f" ({d.detail})" if d.detail else "")
        for d in report.deletions
    ] or ["None."]
    if report.gone:
        lines += [
            "",
            f"## Deleted in the destination since crmlift wrote them ({len(report.gone)})",
        ]
        lines += [""] + [
            f"- {g.collection}/{g.source_id} → {g.object} {g.destination_id}: "
            + ("created again ([delta] recreate_deleted)" if g.recreated else "not re-created")
            for g in report.gone
        ]
    return "\n".join(lines) + "\n"


def _conflicts(conflicts: list[FieldConflict], kind: str) -> list[str]:
    chosen = [c for c in conflicts if c.kind == kind]
    if not chosen:
        return []
    rows = ["| record | object | field | base (crmlift wrote) | theirs (destination) | "
            "ours (source) | done |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    rows += [
        f"| {c.collection}/{c.source_id} | {c.object} {c.destination_id} | {c.field} | "
        f"{_shown(c.base)} | {_shown(c.theirs)} | {_shown(c.ours)} | {c.resolution} |"
        for c in chosen
    ]
    return rows


def _shown(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return (text[:SHOWN] + "…" if len(text) > SHOWN else text).replace("|", "\\|")
