"""``audit.json``, ``audit.md`` and a self-contained ``audit.html``: what the audit found
before any record moves.

The HTML page goes to the firm and the destination's admin: inline CSS, no script and
no external asset, so it opens from a mail attachment. Every value on it is escaped:
record values come from the source, and it is not trusted.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from service.audit_findings import SEVERITIES, AuditReport, Finding

LISTED = 100
"""Records per finding the Markdown and HTML pages show; the JSON lists up to
``RECORDS_KEPT`` and every count is exact."""


def audit_pages(out_dir: Path) -> list[Path]:
    """``audit.json``, ``audit.md`` and ``audit.html`` of a run's report dir."""
    return [out_dir / "audit.json", out_dir / "audit.md", out_dir / "audit.html"]


def write_audit_report(report: AuditReport, out_dir: Path) -> list[Path]:
    """The audit's reports (``audit_pages``) in the run's report dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = audit_pages(out_dir)
    paths[0].write_bytes(orjson.dumps(document(report), option=orjson.OPT_INDENT_2))
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    paths[2].write_text(render_html(report), encoding="utf-8")
    return paths


def _tally(report: AuditReport) -> dict[str, int]:
    return {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITIES}


def verdict(report: AuditReport) -> str:
    """One line: whether ``migrate`` would start, and why not."""
    blocking = report.blocking
    if not blocking:
        acknowledged = sum(1 for f in report.findings if f.acknowledged)
        extra = f" ({acknowledged} blocking finding(s) acknowledged in the plan)" * bool(
            acknowledged
        )
        return f"READY: no blocking finding stops migrate{extra}"
    return (
        f"BLOCKED: {len(blocking)} blocking finding(s) stop migrate: "
        + ", ".join(f.id for f in blocking[:8])
        + ("…" if len(blocking) > 8 else "")
    )


def document(report: AuditReport) -> dict[str, Any]:
    """The JSON report: the profile and every finding with its records (capped, counted)."""
    return {
        "run_id": report.run_id,
        "destination": report.destination,
        "verdict": verdict(report),
        "blocking": [f.id for f in report.blocking],
        "acknowledged": list(report.acknowledged),
        "acknowledged_but_not_found": report.stale_acknowledgements,
        "severities": _tally(report),
        "profile": {
            name: {
                "records": p.records,
                "fields": {
                    f: {"filled": n, "rate": round(p.fill_rate(f), 4)}
                    for f, n in sorted(p.filled.items())
                },
            }
            for name, p in sorted(report.profile.items())
        },
        "findings": [
            {
                "id": f.id, "kind": f.kind, "severity": f.severity, "title": f.title,
                "explanation": f.explanation, "count": f.count, "acknowledged": f.acknowledged,
                "records": [
                    {"collection": r.collection, "source_id": r.source_id, "detail": r.detail}
                    for r in f.records
                ],
                "listed": len(f.records),
            }
            for f in report.findings
        ],
    }  # fmt: skip


# -- Markdown ----------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value in Markdown: one line, pipes and backticks escaped, long text cut."""
    text = "∅" if value is None else str(value)
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("`", "\\`"), ("<", "&lt;"),
                         ("\n", " "), ("\r", " ")):  # fmt: skip
        text = text.replace(raw, escaped)
    return text if len(text) <= 160 else text[:159] + "…"


def render_markdown(report: AuditReport) -> str:
    tally = _tally(report)
    lines = [
        f"# Audit of run {_cell(report.run_id)} for {_cell(report.destination)}",
        "",
        f"**{_cell(verdict(report))}**",
        "",
        f"{tally['blocking']} blocking, {tally['warning']} warning(s), {tally['info']} "
        "for information. Acknowledge a blocking finding by its id in the plan: "
        '`[audit] acknowledge = ["id", …]`.',
        "",
        "## Findings",
        "",
        "| Severity | Id | Records | What |",
        "|---|---|---:|---|",
    ]
    for f in report.findings:
        lines.append(f"| {_severity(f)} | `{_cell(f.id)}` | {f.count} | {_cell(f.title)} |")
    for f in report.findings:
        lines += ["", f"### {_cell(f.title)}", "", f"`{_cell(f.id)}` — {_severity(f)}, "
                  f"{f.count} concerned. {_cell(f.explanation)}", ""]  # fmt: skip
        lines += [
            f"- {_cell(r.collection)}/{_cell(r.source_id)}"
            + (f": {_cell(r.detail)}" if r.detail else "")
            for r in f.records[:LISTED]
        ]
        if f.count > min(len(f.records), LISTED):
            lines.append(f"- … {f.count - min(len(f.records), LISTED)} more (audit.json lists "
                         f"{len(f.records)})")  # fmt: skip
    lines += ["", "## Source profile", "", "| Collection | Records | Fields filled (rate) |",
              "|---|---:|---|"]  # fmt: skip
    for name, p in sorted(report.profile.items()):
        rates = ", ".join(f"{_cell(k)} {p.fill_rate(k):.0%}" for k in sorted(p.filled))
        lines.append(f"| {_cell(name)} | {p.records} | {rates} |")
    return "\n".join(lines) + "\n"


def _severity(f: Finding) -> str:
    return f"{f.severity} (acknowledged)" if f.acknowledged else f.severity


# -- HTML --------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em;margin-top:1.3em}
.verdict{padding:.7em 1em;border-radius:6px;font-weight:600}
.ready{background:#e3f5e1;color:#14532d}.blocked{background:#fde2e1;color:#7f1d1d}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3;text-align:left}td.n{text-align:right}
.blocking td.sev{background:#fde2e1;font-weight:600}.warning td.sev{background:#fff4d6}
.info td.sev{background:#eef2ff}code{font-size:.92em;word-break:break-all}
.bar{display:inline-block;height:.7em;background:#2563eb;vertical-align:middle}
"""


def _e(value: Any) -> str:
    return html.escape("∅" if value is None else str(value), quote=True)


def render_html(report: AuditReport) -> str:
    tally = _tally(report)
    state = "blocked" if report.blocking else "ready"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Audit of run {_e(report.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Audit of run <code>{_e(report.run_id)}</code> for {_e(report.destination)}</h1>",
        f'<p class="verdict {state}">{_e(verdict(report))}</p>',
        f"<p>{tally['blocking']} blocking, {tally['warning']} warning(s), {tally['info']} for "
        "information. Acknowledge a blocking finding by its id in the plan: "
        "<code>[audit] acknowledge = [&quot;id&quot;, …]</code>.</p>",
        "<h2>Findings</h2>",
        _table(
            ["Severity", "Id", "Records", "What"],
            [[_severity(f), f.id, f.count, f.title] for f in report.findings],
            [f.severity for f in report.findings],
        ),
    ]
    for f in report.findings:
        parts.append(
            f"<h3>{_e(f.title)}</h3><p><code>{_e(f.id)}</code> — {_e(_severity(f))}, "
            f"{f.count} concerned. {_e(f.explanation)}</p>"
        )
        if f.records:
            parts.append(
                _table(
                    ["Collection", "Source id", "Detail"],
                    [[r.collection, r.source_id, r.detail] for r in f.records[:LISTED]],
                )
            )
        if f.count > min(len(f.records), LISTED):
            parts.append(f"<p>… {f.count - min(len(f.records), LISTED)} more (audit.json lists "
                         f"{len(f.records)})</p>")  # fmt: skip
    parts.append("<h2>Source profile</h2>")
    for name, p in sorted(report.profile.items()):
        parts.append(f"<h3>{_e(name)}: {p.records} record(s)</h3>")
        rows = [[k, p.filled[k], _rate_bar(p.fill_rate(k))] for k in sorted(p.filled)]
        parts.append(_table(["Field", "Filled", "Rate"], rows, raw_last=True))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _rate_bar(rate: float) -> str:
    """A fill rate as a bar and a percentage (markup built here from a number only)."""
    return f'<span class="bar" style="width:{round(rate * 120)}px"></span> {rate:.0%}'


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    classes: Sequence[str] = (),
    *,
    raw_last: bool = False,
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if i < len(classes) else ""
        cells = []
        for j, v in enumerate(row):
            if raw_last and j == len(row) - 1:
                cells.append(f"<td>{v}</td>")
            elif isinstance(v, int):
                cells.append(f'<td class="n">{v}</td>')
            else:
                sev = ' class="sev"' if j == 0 and classes else ""
                cells.append(f"<td{sev}>{_e(v)}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
