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
        "resumed": summary.resumed,
        "this_process": {
            "records_read": summary.read,
            "pages_read": summary.pages_read,
            "elapsed_seconds": round(summary.elapsed, 3),
            "records_per_second": round(summary.rate, 1),
            "tokens_fetched": summary.tokens_fetched,
            "token_renewals": summary.token_renewals,
        },
        "run_total": {
            "expected": sum(c.expected for c in summary.collections),
            "staged": summary.staged,
            "pages": sum(c.pages for c in summary.collections),
        },
        "staged": summary.staged,
        "deletions": summary.deletions,
        "files_stored": summary.files_stored,
        "files_failed": summary.files_failed,
        "files_deleted_at_source": summary.files_deleted,
        "consistency": {
            "catchup_passes": summary.catchup_passes,
            "consistent_as_of": (
                None if summary.consistent_as_of is None else summary.consistent_as_of.isoformat()
            ),
            "changes_still_arriving": summary.changes_arriving,
        },
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
        f"- {run_total_line(summary)}",
        f"- {this_process_line(summary)}",
        f"- {summary.deletions} deletions; files stored {summary.files_stored}, "
        f"failed {summary.files_failed}.",
        f"- {consistency_line(summary)}",
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


def run_total_line(summary: ExtractSummary) -> str:
    """The run's totals, whichever processes read them."""
    expected = sum(c.expected for c in summary.collections)
    return f"Run total: {summary.staged} records staged (expected {expected})."


def consistency_line(summary: ExtractSummary) -> str:
    """The moment the staged state is the source's, or why there is none."""
    passes = "pass" if summary.catchup_passes == 1 else "passes"
    if summary.consistent_as_of is not None:
        return (
            f"Staged state consistent with the source as of "
            f"{summary.consistent_as_of.isoformat()} ({summary.catchup_passes} catch-up "
            f"{passes}; the last found nothing new)."
        )
    return (
        f"Source still changing: stopped at the bound of {summary.catchup_passes} catch-up "
        f"{passes} with {summary.changes_arriving} changes still arriving; run again "
        "(--resume) to stage them."
    )


def this_process_line(summary: ExtractSummary) -> str:
    """This process's own work and speed: a resumed run's earlier records are not in it."""
    resumed = " (resumed run)" if summary.resumed else ""
    renewals = "renewal" if summary.token_renewals == 1 else "renewals"
    return (
        f"This process{resumed}: {summary.read} records read in {summary.pages_read} pages "
        f"in {summary.elapsed:.1f} s ({summary.rate:.0f} records/s); "
        f"{summary.tokens_fetched} access tokens fetched, "
        f"{summary.token_renewals} token {renewals}."
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
