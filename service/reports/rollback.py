"""``rollback-summary.json`` and ``.md``: per object, what a rollback deleted, restored,
left alone as someone else's work (conflicts), and what failed, with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass(slots=True)
class ObjectTally:
    """One destination object's part of a rollback."""

    deleted: int = 0
    restored: int = 0
    already_done: int = 0
    """Deleted or restored by an earlier attempt of this rollback: not touched again."""
    conflicts: list[dict[str, str]] = field(default_factory=list)
    """Records changed in the destination after the run wrote them: left as they are."""
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class RollbackReport:
    """What a rollback of ``target_run_id`` did (or, dry, would do)."""

    target_run_id: str
    rollback_run_id: str | None
    dry_run: bool
    force: bool
    objects: dict[str, ObjectTally] = field(default_factory=dict)

    def tally(self, sobject: str) -> ObjectTally:
        return self.objects.setdefault(sobject, ObjectTally())

    @property
    def conflicts(self) -> int:
        return sum(len(t.conflicts) for t in self.objects.values())

    @property
    def failures(self) -> int:
        return sum(len(t.failures) for t in self.objects.values())


def report_names(dry_run: bool) -> tuple[str, str]:
    """A dry run writes its own files, so it never hides the summary of a real rollback."""
    stem = "rollback-dry-run" if dry_run else "rollback-summary"
    return f"{stem}.json", f"{stem}.md"


def write_rollback_report(report: RollbackReport, out_dir: Path) -> list[Path]:
    """The JSON and Markdown summaries in ``out_dir`` (the rolled-back run's report dir)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in report_names(report.dry_run)]
    paths[0].write_bytes(orjson.dumps(_document(report), option=orjson.OPT_INDENT_2))
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    return paths


def _document(report: RollbackReport) -> dict[str, Any]:
    verb = ("would_delete", "would_restore") if report.dry_run else ("deleted", "restored")
    return {
        "target_run_id": report.target_run_id,
        "rollback_run_id": report.rollback_run_id,
        "dry_run": report.dry_run,
        "force": report.force,
        "objects": {
            name: {
                verb[0]: t.deleted,
                verb[1]: t.restored,
                "already_done": t.already_done,
                "conflicts": t.conflicts,
                "failures": t.failures,
            }
            for name, t in sorted(report.objects.items())
        },
    }


def render_markdown(report: RollbackReport) -> str:
    title = "Rollback dry run" if report.dry_run else "Rollback"
    verbs = ("Would delete", "Would restore") if report.dry_run else ("Deleted", "Restored")
    lines = [
        f"# {title} of run {report.target_run_id}",
        "",
        f"| Object | {verbs[0]} | {verbs[1]} | Already done | Conflicts | Failures |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in sorted(report.objects.items()):
        lines.append(
            f"| {name} | {t.deleted} | {t.restored} | {t.already_done} | {len(t.conflicts)} "
            f"| {len(t.failures)} |"
        )
    lines += _listing("Conflicts (changed after the run wrote them; not touched)", report, True)
    lines += _listing("Failures", report, False)
    if report.conflicts and not report.force:
        lines += ["", "Rerun with `--force` to revert the conflicts as well."]
    return "\n".join(lines) + "\n"


def _listing(heading: str, report: RollbackReport, conflicts: bool) -> list[str]:
    rows = [
        (name, row)
        for name, t in sorted(report.objects.items())
        for row in (t.conflicts if conflicts else t.failures)
    ]
    if not rows:
        return []
    out = ["", f"## {heading}", ""]
    out += [f"- {name} {row['destination_id']}: {row['reason']}" for name, row in rows]
    return out
