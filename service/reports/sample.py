"""The sample diff as files: ``diff.csv`` (one row per record and field) and ``diff.html``
(one self-contained page: inline CSS, no scripts, no external assets).

Every value comes from the source tenant or the destination, so none is trusted: the
page escapes each one with ``html.escape``, and a CSV cell that a spreadsheet would run
as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import html
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from service.sample_diff import STATUSES, DiffRow, SampleDiff

CSV_COLUMNS = (
    "object", "collection", "source_id", "external_id", "destination_id", "field",
    "source_fields", "source_value", "sent", "held", "status", "flags", "notes",
    "record_notes", "selected_because",
)  # fmt: skip

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_sample_report(diff: SampleDiff, fingerprint: str, out_dir: Path) -> list[Path]:
    """``diff.csv`` and ``diff.html`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ordered(diff.rows)
    csv_path, html_path = out_dir / "diff.csv", out_dir / "diff.html"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        writer.writerows([_cell(v) for v in csv_row(r)] for r in rows)
    html_path.write_text(render_html(diff, rows, fingerprint), encoding="utf-8")
    return [csv_path, html_path]


def ordered(rows: Iterable[DiffRow]) -> list[DiffRow]:
    """By object, differences first, then by record and field."""
    rank = {status: i for i, status in enumerate(STATUSES)}
    return sorted(rows, key=lambda r: (r.object, rank[r.status], r.external_id, r.field))


def csv_row(r: DiffRow) -> list[str]:
    return [
        r.object, r.collection, r.source_id, r.external_id, r.destination_id or "", r.field,
        " ".join(r.source_fields), text(r.source), text(r.sent), text(r.held), r.status,
        "; ".join(r.flags), " | ".join(r.notes), " | ".join(r.record_notes), r.selected,
    ]  # fmt: skip


def text(value: Any) -> str:
    """A value as one cell: text as it is, anything else as JSON; nothing for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def _cell(value: str) -> str:
    if value.startswith(_FORMULA_START) and not _is_number(value):
        return f"'{value}"
    return value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4}td.v{font-family:ui-monospace,monospace;white-space:pre-wrap;
word-break:break-word;max-width:28em}
.failed{background:#fde2e2}.differs{background:#fff0d6}.not-linked{background:#fff6c8}
.not-sent{background:#eef3ff}.unreadable{background:#eee}.same{background:#fff}
.summary td,.summary th{text-align:right}.summary th:first-child{text-align:left}
small{color:#666}
"""


def render_html(diff: SampleDiff, rows: list[DiffRow], fingerprint: str) -> str:
    """The page: summary counts on top, then one table per object, differences first."""
    e = html.escape
    counts = diff.counts()
    flags = diff.flag_counts()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>sample diff {e(diff.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Sample run {e(diff.run_id)}: source → sent → held</h1>",
        f"<p>Into {e(diff.destination)}; about {diff.requested} records asked, "
        f"{diff.records} sampled, {diff.failed_records()} not written as sent. "
        f"Mapping fingerprint <code>{e(fingerprint)}</code> "
        "(<code>crmlift approve</code> records it).</p>",
        _summary(rows, counts, flags),
    ]
    by_object: dict[str, list[DiffRow]] = defaultdict(list)
    for r in rows:
        by_object[r.object].append(r)
    for sobject, items in sorted(by_object.items(), key=lambda kv: _object_rank(kv[1])):
        found = Counter(r.status for r in items)
        tally = ", ".join(f"{found[s]} {s}" for s in STATUSES if found[s])
        parts.append(f"<h2>{e(sobject)} <small>({e(tally)})</small></h2>")
        parts.append(
            "<table><tr><th>record</th><th>field</th><th>source</th><th>sent</th>"
            "<th>held</th><th>status</th><th>notes</th></tr>"
        )
        parts += [_tr(r) for r in items]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _object_rank(items: list[DiffRow]) -> tuple[int, str]:
    """Objects with differences first."""
    return (-sum(r.status != "same" for r in items), items[0].object)


def _summary(rows: list[DiffRow], counts: dict[str, int], flags: dict[str, int]) -> str:
    e = html.escape
    objects = sorted({r.object for r in rows})
    per: dict[str, Counter[str]] = {o: Counter() for o in objects}
    for r in rows:
        per[r.object][r.status] += 1
    head = "".join(f"<th>{e(s)}</th>" for s in STATUSES)
    body = "".join(
        f"<tr><th>{e(o)}</th>" + "".join(f"<td>{per[o][s]}</td>" for s in STATUSES) + "</tr>"
        for o in objects
    )
    total = "".join(f"<td><b>{counts[s]}</b></td>" for s in STATUSES)
    flagged = ", ".join(f"{n} {e(name)}" for name, n in flags.items())
    return (
        f"<table class='summary'><tr><th>object</th>{head}</tr>{body}"
        f"<tr><th>all fields</th>{total}</tr></table><p>Transform notes: {flagged}.</p>"
    )


def _tr(r: DiffRow) -> str:
    e = html.escape
    source = text(r.source)
    if r.source_fields:
        source = f"{' '.join(r.source_fields)}: {source}"
    notes = [*r.notes, *(f"(record) {n}" for n in r.record_notes)]
    return (
        f"<tr class='{r.status.replace(' ', '-')}'><td>{_escaped_record(r)}</td>"
        f"<td>{e(r.field)}</td><td class='v'>{e(source)}</td>"
        f"<td class='v'>{e(text(r.sent))}</td><td class='v'>{e(text(r.held))}</td>"
        f"<td>{e(r.status)}</td><td>{'<br>'.join(e(n) for n in notes)}</td></tr>"
    )


def _escaped_record(r: DiffRow) -> str:
    e = html.escape
    cell = (
        f"{e(r.collection)}/{e(r.source_id)}<br><small>{e(r.external_id)} → "
        f"{e(r.destination_id or '—')}"
    )
    if r.selected:
        cell += f"<br>{e(r.selected)}"
    return cell + "</small>"
