"""The sample's field-level diff: per written record and field, the source value, the value
crmlift sent and the value the destination holds.

What was sent is rebuilt from staging and the id map (``service.expected``), what is
held is read back (``service.readback``), and where a value came from is the pair's
declared provenance (``service.mapping.provenance``). A record the run did not write
keeps its journaled reason; a field the transform dropped shows as ``not sent`` with the
note that says why, a lookup whose target did not load as ``not linked``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from adapters.base import Destination
from journal import Journal
from journal.issues import RecordIssue
from journal.operations import NotWritten
from journal.runs import Run
from service.expected import Expected, Rebuilder, Rejected
from service.load import PHASE as LOAD_PHASE
from service.mapping.backdocket_dynamics import prefix_of
from service.mapping.base import MappingContext
from service.mapping.provenance import PROVENANCE, custom_field_keys, source_value, sources
from service.pairs import Pair
from service.readback import held, same

Status = Literal["failed", "differs", "not linked", "not sent", "unreadable", "same"]
STATUSES: tuple[Status, ...] = ("failed", "differs", "not linked", "not sent", "unreadable", "same")
"""Every status, differences first (the order the report shows them in)."""

RECORD = "(record)"
"""The field name of a row about a whole record the transform refused."""

FLAGS = (
    ("truncated", re.compile(r"truncated from")),
    ("picklist value dropped", re.compile(r"has no option|not (among|one of) the field's options")),
    ("fallback value", re.compile(r"has no mapping|; set to|fallback owner used|used the first")),
    ("value dropped", re.compile(r"left empty|not sent|not migrated")),
)
"""What a transform note says happened to a value, for the summary's counts."""


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One field of one sampled record: source → sent → held."""

    object: str
    collection: str
    source_id: str
    external_id: str
    destination_id: str | None
    field: str
    source_fields: tuple[str, ...]
    source: Any
    sent: Any
    held: Any
    status: Status
    notes: tuple[str, ...]
    """Transform notes and journaled issues about this field (or, failed, the reason)."""
    record_notes: tuple[str, ...]
    """Notes about the record as a whole."""
    selected: str
    """Why the record is in the sample."""

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(name for name, pattern in FLAGS if any(pattern.search(n) for n in self.notes))


@dataclass(slots=True)
class SampleDiff:
    """The whole diff of one sample run."""

    run_id: str
    destination: str
    requested: int
    rows: list[DiffRow] = field(default_factory=list)
    records: int = 0
    """Sampled records read (each source record once, whatever it became)."""

    def counts(self) -> dict[str, int]:
        """Rows per status, every status named."""
        found = Counter(r.status for r in self.rows)
        return {status: found.get(status, 0) for status in STATUSES}

    def flag_counts(self) -> dict[str, int]:
        found = Counter(flag for r in self.rows for flag in r.flags)
        return {name: found.get(name, 0) for name, _ in FLAGS}

    def failed_records(self) -> int:
        return len(
            {(r.collection, r.source_id, r.object) for r in self.rows if r.status == "failed"}
        )


async def build_diff(
    journal: Journal,
    run: Run,
    pair: Pair,
    client: Destination,
    context: MappingContext,
    migration: str,
    selection: Mapping[str, Mapping[str, str]],
    diff: SampleDiff,
) -> SampleDiff:
    """Read every sampled record back and add a row per field to ``diff``."""
    issues = _issues_by_record(await journal.issues.list(run.run_id, LOAD_PHASE))
    rebuilder = Rebuilder(journal, migration, run, pair, context)
    for collection in pair.load_order:
        picks = selection.get(collection)
        if not picks:
            continue
        outcomes = await journal.operations.not_written(run.run_id, collection)
        by_object: dict[str, list[Expected]] = defaultdict(list)
        async for batch in rebuilder.collection(collection, set(picks)):
            for item in batch:
                if isinstance(item, Rejected):
                    diff.rows.append(_refused(item, picks[item.source_id]))
                else:
                    by_object[item.object].append(item)
        diff.records += len(picks)
        for sobject, expected in by_object.items():
            diff.rows += await _object(
                client, pair, context, sobject, expected, outcomes, issues, picks
            )
    return diff


def _refused(item: Rejected, selected: str) -> DiffRow:
    return DiffRow(
        "-", item.collection, item.source_id, "", None, RECORD, (), None, None, None,
        "failed", (f"{item.outcome} ({item.code}): {item.message}",), (), selected,
    )  # fmt: skip


def _issues_by_record(issues: Sequence[RecordIssue]) -> dict[tuple[str, str], list[str]]:
    """Journaled load issues by (collection, source or external id); the transform's own
    notes come with the rebuilt record, so they are left out here."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for issue in issues:
        if not issue.code.startswith("transform:"):
            found[(issue.collection, issue.source_id)].append(issue.message)
    return found


async def _object(
    client: Destination,
    pair: Pair,
    context: MappingContext,
    sobject: str,
    expected: list[Expected],
    outcomes: Mapping[tuple[str, str | None, str | None], NotWritten],
    issues: Mapping[tuple[str, str], list[str]],
    picks: Mapping[str, str],
) -> list[DiffRow]:
    ids = sorted({e.destination_id for e in expected if e.destination_id is not None})
    fields = sorted({name for e in expected for name in e.fields})
    values = await held(client, sobject, ids, fields)
    absent = [i for i in ids if i not in values]
    there = await client.existing_ids(sobject, absent) if absent else set()
    rows: list[DiffRow] = []
    for e in expected:
        failure = _failure(e, outcomes.get((e.source_id, e.object, e.external_id)), values, there)
        current = values.get(e.destination_id or "")
        unreadable = current is None and e.destination_id in there
        notes = [*e.notes, *issues.get((e.collection, e.source_id), ())]
        claimed: set[str] = set()
        mine_rows: list[DiffRow] = []
        for name, sent in e.fields.items():
            mine = _about(name, notes)
            claimed.update(mine)
            value = None if current is None else current.get(name)
            if failure is not None:
                status: Status = "failed"
                mine = [failure, *mine]
            elif unreadable:
                status = "unreadable"
            elif name in e.links and sent is None:
                status = "not linked"
                ref = e.links[name]
                mine = [f"points at {ref.collection}/{ref.source_id}, which did not load", *mine]
            else:
                status = "same" if same(sent, value) else "differs"
            mine_rows.append(_row(e, pair, context, name, sent, value, status, mine, picks))
        mine_rows += _not_sent(e, pair, context, notes, claimed, picks)
        rest = tuple(n for n in notes if n not in claimed)
        rows += [replace(r, record_notes=rest) for r in mine_rows]
    return rows


def _failure(
    e: Expected,
    outcome: NotWritten | None,
    values: Mapping[str, Any],
    there: set[str],
) -> str | None:
    """Why a sampled record is not in the destination as sent, or None when it is."""
    if outcome is not None:
        return f"{outcome.action} ({outcome.code}): {outcome.message}"
    if e.destination_id is None:
        return "not written by the run (no id-map entry and no journaled outcome)"
    if e.destination_id not in values and e.destination_id not in there:
        return f"in the id map as {e.destination_id}, but the destination no longer has it"
    return None


def _about(name: str, notes: Sequence[str]) -> list[str]:
    """The notes about field ``name``: those whose subject (before the colon) names it."""
    mine = []
    for note in notes:
        head = note.split(":", 1)[0].strip() if ":" in note else ""
        if head and " " not in head and (head == name or head in name or name in head):
            mine.append(note)
    return mine


def _not_sent(
    e: Expected,
    pair: Pair,
    context: MappingContext,
    notes: Sequence[str],
    claimed: set[str],
    picks: Mapping[str, str],
) -> list[DiffRow]:
    """Fields the provenance declares for this object whose one source field holds a value
    the transform did not send (invalid, unmapped, over a limit), unless another sent
    field carries that source (a state sent as text rather than as a code). A field made
    from several source fields is left out: which of them should have made it is the
    transform's choice, not a drop."""
    carried = {
        path
        for name in e.fields
        for path in sources(pair.destination, e.collection, e.object, name, context) or ()
    }
    rows = []
    for name, paths in _declared(pair, e, context).items():
        if name in e.fields or len(paths) != 1 or set(paths) & carried:
            continue
        value = source_value(e.source, paths)
        if value in (None, "", [], {}):
            continue
        mine = [n for n in _about(name, notes) or [_custom_note(name, notes)] if n]
        claimed.update(mine)
        mine = mine or ["the source has a value, the transform sent none and left no note"]
        rows.append(_row(e, pair, context, name, None, None, "not sent", mine, picks))
    return rows


def _custom_note(name: str, notes: Sequence[str]) -> str:
    return next((n for n in notes if name in n), "")


def _declared(pair: Pair, e: Expected, context: MappingContext) -> dict[str, tuple[str, ...]]:
    """The provenance's fields of ``e``'s object, with their source paths."""
    table = PROVENANCE.get(pair.destination, {})
    found: dict[str, tuple[str, ...]] = {}
    for collection, sobject, name in table:
        if collection != e.collection:
            continue
        resolved = sources(
            pair.destination, collection, e.object, _fill(name, context, pair), context
        )
        if _fill(sobject, context, pair) == e.object and resolved is not None:
            found[_fill(name, context, pair)] = resolved
    for name, key in custom_field_keys(pair.destination, e.collection, e.object, context).items():
        found[name] = (f"custom_fields.{key}",)
    return found


def _fill(name: str, context: MappingContext, pair: Pair) -> str:
    if pair.destination != "dynamics":
        return name
    return name.replace("{p}", prefix_of(context))


def _row(
    e: Expected,
    pair: Pair,
    context: MappingContext,
    name: str,
    sent: Any,
    value: Any,
    status: Status,
    notes: Sequence[str],
    picks: Mapping[str, str],
) -> DiffRow:
    paths = sources(pair.destination, e.collection, e.object, name, context) or ()
    return DiffRow(
        e.object, e.collection, e.source_id, e.external_id, e.destination_id, name, paths,
        source_value(e.source, paths) if paths else None, sent, value, status, tuple(notes), (),
        picks.get(e.source_id, ""),
    )  # fmt: skip
