"""The extraction report: per-collection figures and every record issue."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import orjson

from journal.issues import RecordIssue
from service.extract import ExtractSummary


def write_extract_report(
    summary: ExtractSummary, issues: list[RecordIssue], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``extract-summary.json`` and ``extract-summary.md``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "run_id": summary.run_id,
        "elapsed_seconds": round(summary.elapsed, 3),
        "staged": summary.staged,
        "deletions": summary.deletions,
        "files_stored": summary.files_stored,
        "files_failed": summary.files_failed,
        "collections": [asdict(c) for c in summary.collections],
        "issues": [asdict(i) for i in issues],
    }
    json_path = out_dir / "extract-summary.json"
    json_path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    md_path = out_dir / "extract-summary.md"
    md_path.write_text(render_markdown(summary, issues), encoding="utf-8")
    return json_path, md_path


def render_markdown(summary: ExtractSummary, issues: list[RecordIssue]) -> str:
    """The report as a Markdown page an operator can paste into a ticket."""
    lines = [
        f"# Extraction {summary.run_id}",
        "",
        f"Staged {summary.staged} records in {summary.elapsed:.1f} s; "
        f"{summary.deletions} deletions; files stored {summary.files_stored}, "
        f"failed {summary.files_failed}.",
        "",
        "| collection | expected | staged | windows | pages | issues |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.collection} | {c.expected} | {c.staged} | {c.windows} | {c.pages} | {c.issues} |"
        for c in summary.collections
    ]
    if issues:
        lines += ["", "## Record issues", "", "| collection | record | outcome | code | reason |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {i.collection} | {_cell(i.source_id)} | {i.outcome} | {i.code} "
            f"| {_cell(i.message)} |"
            for i in issues
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
