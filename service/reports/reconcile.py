"""``reconcile.json``, ``.md`` and a self-contained ``.html``: what a reconciliation found.

The HTML page is for the operator and the firm's go/no-go meeting: inline CSS, one
inline SVG chart per object (expected vs found), no script and no external asset, so
it opens from a mail attachment. Every value on it is escaped: record values come from
the source and the destination, and neither is trusted.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson

DifferenceKind = Literal["skipped", "queued", "failed", "missing"]
FileProblemKind = Literal["absent", "size", "checksum"]

LISTED = 200
"""Rows of each listing the Markdown and HTML pages show; the JSON lists every one."""


@dataclass(slots=True)
class ObjectCounts:
    """One (source collection, destination object) pair's counts."""

    collection: str
    object: str
    """``-``: records of the collection that become no destination record."""
    source: int = 0
    """Staged records (live at the source) the mapping turns into this object."""
    expected: int = 0
    """``source`` less the explained skips (by design, queued for a missing object)."""
    found: int = 0
    """Expected records the destination holds."""
    skipped: int = 0
    queued: int = 0
    failed: int = 0
    missing: int = 0
    unreadable: int = 0
    """Found by the existence check but not readable field by field (SharePoint files)."""


@dataclass(frozen=True, slots=True)
class Difference:
    """A source record that is not (or should not be) in the destination, and why."""

    kind: DifferenceKind
    collection: str
    object: str
    source_id: str
    external_id: str | None
    destination_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """A lookup (or owner) that does not point where the id map says it must."""

    object: str
    destination_id: str
    external_id: str
    field: str
    held: Any
    expected: Any
    target: str
    """What it must point at: ``collection/source_id``, or ``resolved owner``."""


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A file record whose content is absent or differs from the blob crmlift uploaded."""

    kind: FileProblemKind
    object: str
    destination_id: str
    external_id: str
    filename: str
    expected: Any
    held: Any


@dataclass(slots=True)
class Total:
    """The sum of one numeric field over an object's found records: sent vs held."""

    object: str
    field: str
    expected: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    records: int = 0
    not_numbers: int = 0
    """Records whose held value is empty or not a number (counted as 0 in ``held``)."""

    @property
    def equal(self) -> bool:
        return self.expected == self.held and self.not_numbers == 0


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One sampled field the destination holds differently from what crmlift sent."""

    object: str
    destination_id: str
    external_id: str
    field: str
    sent: Any
    held: Any


@dataclass(slots=True)
class Sampled:
    """How many records of an object were compared field by field, and how many differed."""

    records: int = 0
    fields: int = 0
    differing_records: int = 0
    ids: list[str] = field(default_factory=list)
    """Destination ids of the sampled records: what was compared, for a second look."""


@dataclass(slots=True)
class ReconcileReport:
    """Everything a reconciliation of ``run_id`` found, and its verdict."""

    run_id: str
    destination: str
    sample_size: int
    seed: int
    counts: dict[tuple[str, str], ObjectCounts] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    broken_links: list[BrokenLink] = field(default_factory=list)
    links_checked: int = 0
    file_problems: list[FileProblem] = field(default_factory=list)
    files_checked: int = 0
    totals: dict[tuple[str, str], Total] = field(default_factory=dict)
    sampled: dict[str, Sampled] = field(default_factory=dict)
    field_diffs: list[FieldDiff] = field(default_factory=list)

    def row(self, collection: str, sobject: str) -> ObjectCounts:
        return self.counts.setdefault((collection, sobject), ObjectCounts(collection, sobject))

    def total(self, sobject: str, name: str) -> Total:
        return self.totals.setdefault((sobject, name), Total(sobject, name))

    def of_kind(self, kind: DifferenceKind) -> list[Difference]:
        return [d for d in self.differences if d.kind == kind]

    @property
    def reasons(self) -> list[str]:
        """Why the verdict is no-go; empty: go."""
        out: list[str] = []
        missing, failed = self.of_kind("missing"), self.of_kind("failed")
        if missing:
            out.append(f"{len(missing)} expected record(s) missing from the destination "
                       f"({_by_object(missing)})")  # fmt: skip
        if failed:
            out.append(f"{len(failed)} record(s) failed to load ({_by_object(failed)})")
        if self.broken_links:
            out.append(f"{len(self.broken_links)} link(s) broken ({_by_object(self.broken_links)})")
        if self.file_problems:
            out.append(f"{len(self.file_problems)} file(s) absent or not as uploaded "
                       f"({_by_object(self.file_problems)})")  # fmt: skip
        differing = [t for t in self.totals.values() if not t.equal]
        if differing:
            names = ", ".join(f"{t.object}.{t.field}" for t in differing[:8])
            out.append(f"{len(differing)} field total(s) differ ({names})")
        if self.field_diffs:
            out.append(f"{len(self.field_diffs)} sampled field(s) differ "
                       f"({_by_object(self.field_diffs)})")  # fmt: skip
        return out

    @property
    def go(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        if self.go:
            return "GO: every expected record is there, linked and as sent"
        return "NO-GO: " + "; ".join(self.reasons)


def _by_object(items: Iterable[Any]) -> str:
    tally: dict[str, int] = {}
    for item in items:
        tally[item.object] = tally.get(item.object, 0) + 1
    return ", ".join(f"{name}: {n}" for name, n in sorted(tally.items()))


def write_reconcile_report(report: ReconcileReport, out_dir: Path) -> list[Path]:
    """``reconcile.json``, ``reconcile.md`` and ``reconcile.html`` in the run's report dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "reconcile.json", out_dir / "reconcile.md", out_dir / "reconcile.html"]
    paths[0].write_bytes(
        orjson.dumps(document(report), option=orjson.OPT_INDENT_2, default=_json_default)
    )
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    paths[2].write_text(render_html(report), encoding="utf-8")
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def document(report: ReconcileReport) -> dict[str, Any]:
    """The JSON report: every difference, link, file, total and sampled field."""
    return {
        "run_id": report.run_id,
        "destination": report.destination,
        "verdict": "go" if report.go else "no-go",
        "reasons": report.reasons,
        "objects": [asdict(c) for _, c in sorted(report.counts.items())],
        "differences": [asdict(d) for d in report.differences],
        "links": {"checked": report.links_checked,
                  "broken": [asdict(b) for b in report.broken_links]},
        "files": {"checked": report.files_checked,
                  "problems": [asdict(p) for p in report.file_problems]},
        "totals": [
            {"object": t.object, "field": t.field, "expected": t.expected, "held": t.held,
             "records": t.records, "not_numbers": t.not_numbers, "equal": t.equal}
            for _, t in sorted(report.totals.items())
        ],
        "sample": {
            "size": report.sample_size, "seed": report.seed,
            "objects": {name: asdict(s) for name, s in sorted(report.sampled.items())},
            "differences": [asdict(d) for d in report.field_diffs],
        },
    }  # fmt: skip


# -- Markdown ----------------------------------------------------------------


def _cell(value: Any) -> str:
    """A value in a Markdown table cell: one line, pipes escaped, long text cut."""
    text = "∅" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 120 else text[:119] + "…"


def render_markdown(report: ReconcileReport) -> str:
    lines = [
        f"# Reconciliation of run {report.run_id} ({report.destination})",
        "",
        f"**{report.verdict}**",
        "",
        "| Collection | Object | Source | Expected | Found | Skipped | Queued | Failed | Missing |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, c in sorted(report.counts.items()):
        lines.append(
            f"| {_cell(c.collection)} | {_cell(c.object)} | {c.source} | {c.expected} | "
            f"{c.found} | {c.skipped} | {c.queued} | {c.failed} | {c.missing} |"
        )
    lines += [
        "",
        f"Links checked: {report.links_checked}, broken: {len(report.broken_links)}. "
        f"Files checked: {report.files_checked}, problems: {len(report.file_problems)}.",
    ]
    for title, kind in (("Missing", "missing"), ("Failed", "failed"), ("Queued", "queued"),
                        ("Skipped", "skipped")):  # fmt: skip
        rows = report.of_kind(kind)  # type: ignore[arg-type]
        lines += _md_list(
            f"{title} ({len(rows)})",
            [f"{_cell(d.collection)}/{_cell(d.source_id)}"
             + (f" → {_cell(d.object)} {_cell(d.destination_id)}" if d.destination_id else "")
             + f": {_cell(d.reason)}" for d in rows],
        )  # fmt: skip
    lines += _md_list(
        f"Broken links ({len(report.broken_links)})",
        [f"{_cell(b.object)} {_cell(b.destination_id)} ({_cell(b.external_id)}) "
         f"{_cell(b.field)} holds {_cell(b.held)}, should hold {_cell(b.expected)} "
         f"({_cell(b.target)})" for b in report.broken_links],
    )  # fmt: skip
    lines += _md_list(
        f"Files ({len(report.file_problems)})",
        [f"{_cell(p.object)} {_cell(p.destination_id)} {_cell(p.filename)}: {p.kind} "
         f"(expected {_cell(p.expected)}, held {_cell(p.held)})" for p in report.file_problems],
    )  # fmt: skip
    if report.totals:
        lines += ["", "## Field totals", "", "| Object | Field | Expected | Held | Records |",
                  "|---|---|---:|---:|---:|"]  # fmt: skip
        for _, t in sorted(report.totals.items()):
            mark = "" if t.equal else " ≠"
            lines.append(f"| {_cell(t.object)} | {_cell(t.field)} | {t.expected} | "
                         f"{t.held}{mark} | {t.records} |")  # fmt: skip
    sampled = sum(s.records for s in report.sampled.values())
    lines += _md_list(
        f"Sample: {sampled} record(s) compared field by field (seed {report.seed}); "
        f"{len(report.field_diffs)} field(s) differ",
        [f"{_cell(d.object)} {_cell(d.destination_id)} {_cell(d.field)}: sent {_cell(d.sent)}, "
         f"held {_cell(d.held)}" for d in report.field_diffs],
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _md_list(heading: str, items: Sequence[str]) -> list[str]:
    if not items and not heading.startswith("Sample"):
        return []
    out = ["", f"## {heading}", ""]
    out += [f"- {item}" for item in items[:LISTED]]
    if len(items) > LISTED:
        out.append(f"- … and {len(items) - LISTED} more (see reconcile.json)")
    return out


# -- HTML --------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
.verdict{padding:.7em 1em;border-radius:6px;font-weight:600}
.go{background:#e3f5e1;color:#14532d}.nogo{background:#fde2e1;color:#7f1d1d}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3;text-align:left}td.n{text-align:right}tr.bad td{background:#fff4f4}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #ddd;padding:.5em}
code{font-size:.92em;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape("∅" if value is None else str(value), quote=True)


def render_html(report: ReconcileReport) -> str:
    verdict_class = "go" if report.go else "nogo"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Reconciliation of run {_e(report.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Reconciliation of run <code>{_e(report.run_id)}</code> "
        f"({_e(report.destination)})</h1>",
        f'<p class="verdict {verdict_class}">{_e(report.verdict)}</p>',
    ]
    if not report.go:
        parts.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in report.reasons) + "</ul>")
    parts.append('<h2>Expected vs found, per object</h2><div class="charts">')
    parts += [_chart(c) for _, c in sorted(report.counts.items()) if c.object != "-"]
    parts.append("</div>")
    parts.append(_table(
        ["Collection", "Object", "Source", "Expected", "Found", "Skipped", "Queued", "Failed",
         "Missing"],
        [[c.collection, c.object, c.source, c.expected, c.found, c.skipped, c.queued, c.failed,
          c.missing] for _, c in sorted(report.counts.items())],
        bad=[c.failed > 0 or c.missing > 0 for _, c in sorted(report.counts.items())],
    ))  # fmt: skip
    for title, kind in (("Missing", "missing"), ("Failed", "failed"), ("Queued", "queued"),
                        ("Skipped", "skipped")):  # fmt: skip
        rows = report.of_kind(kind)  # type: ignore[arg-type]
        parts += _section(
            f"{title} ({len(rows)})",
            ["Collection", "Source id", "Object", "Destination id", "Reason"],
            [[d.collection, d.source_id, d.object, d.destination_id, d.reason] for d in rows],
        )
    parts += _section(
        f"Broken links ({len(report.broken_links)} of {report.links_checked} checked)",
        ["Object", "Record", "External id", "Field", "Holds", "Should hold", "Points at"],
        [[b.object, b.destination_id, b.external_id, b.field, b.held, b.expected, b.target]
         for b in report.broken_links],
    )  # fmt: skip
    parts += _section(
        f"Files ({len(report.file_problems)} problems in {report.files_checked} checked)",
        ["Object", "Record", "File", "Problem", "Expected", "Held"],
        [[p.object, p.destination_id, p.filename, p.kind, p.expected, p.held]
         for p in report.file_problems],
    )  # fmt: skip
    totals = [t for _, t in sorted(report.totals.items())]
    parts += _section(
        "Field totals",
        ["Object", "Field", "Expected", "Held", "Records"],
        [[t.object, t.field, t.expected, t.held, t.records] for t in totals],
        bad=[not t.equal for t in totals],
        always=True,
    )
    sampled = sum(s.records for s in report.sampled.values())
    parts += _section(
        f"Sample: {sampled} record(s) compared field by field (seed {report.seed}); "
        f"{len(report.field_diffs)} field(s) differ",
        ["Object", "Record", "Field", "Sent", "Held"],
        [[d.object, d.destination_id, d.field, d.sent, d.held] for d in report.field_diffs],
        always=True,
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _chart(c: ObjectCounts) -> str:
    """Two horizontal bars, expected and found, on one scale; the gap is what is missing."""
    width, top = 240, max(c.expected, c.found, 1)
    bars = []
    for i, (label, value, colour) in enumerate(
        (("expected", c.expected, "#6b7280"),
         ("found", c.found, "#15803d" if c.found >= c.expected else "#b91c1c"))
    ):  # fmt: skip
        y = 22 + i * 24
        length = round(width * value / top)
        bars.append(
            f'<text x="0" y="{y + 13}" font-size="11">{label}</text>'
            f'<rect x="60" y="{y}" width="{length}" height="16" fill="{colour}"/>'
            f'<text x="{64 + length}" y="{y + 13}" font-size="11">{value}</text>'
        )
    title = f"{c.object} ({c.collection})"
    return (
        f'<div class="chart"><svg xmlns="http://www.w3.org/2000/svg" width="{width + 120}" '
        f'height="74" role="img" aria-label="{_e(title)}: expected {c.expected}, found '
        f'{c.found}"><text x="0" y="13" font-size="12" font-weight="600">{_e(title)}</text>'
        + "".join(bars)
        + "</svg></div>"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], bad: Sequence[bool] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows[:LISTED]):
        cls = ' class="bad"' if i < len(bad) and bad[i] else ""
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if isinstance(v, int | Decimal) else f"<td>{_e(v)}</td>"
            for v in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    more = (
        f"<p>… and {len(rows) - LISTED} more (see reconcile.json)</p>" if len(rows) > LISTED else ""
    )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _section(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    bad: Sequence[bool] = (),
    always: bool = False,
) -> list[str]:
    if not rows and not always:
        return []
    out = [f"<h2>{_e(title)}</h2>"]
    if rows:
        out.append(_table(header, rows, bad))
    return out
