"""``crmlift mapping propose``: the mapping file an operator reviews before any record moves.

For every source custom field it proposes a destination field (the schema plan's own when
the plan deploys one, else the most similar existing field of a compatible kind) and for
every source enumeration a value map (crmlift's default, else the destination value or
label most like the source value), each with how it was chosen and a confidence; an entry
less sure than ``REVIEW_BELOW`` is marked ``review = true``. Similarity is difflib's ratio
on names folded to letters and digits: enough for API names and picklist values, and no
dependency.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from adapters.base import Column
from adapters.errors import ConfigError
from service.mapping.value_maps_common import ValueMap, custom_map_name
from service.mapping_facts import MappingFacts, gather
from service.mapping_file import REVIEW_BELOW, Section, render
from service.plan import MigrationPlan, ensure_writable_dir

log = structlog.get_logger(__name__)

MATCH_AT_LEAST = 0.6
"""An existing field or value less similar than this is not proposed at all."""

ALTERNATIVE_AT_LEAST = 0.85
"""An existing destination field this similar to a planned one is named as an alternative."""

COMPATIBLE: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text", "textarea", "email", "phone", "url"}),
    "textarea": frozenset({"textarea", "text"}),
    "formatted_text": frozenset({"textarea", "text"}),
    "number": frozenset({"number", "currency", "percent"}),
    "currency": frozenset({"currency", "number"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime"}),
    "boolean": frozenset({"boolean"}),
    "picklist": frozenset({"picklist", "text"}),
    "multi_picklist": frozenset({"multipicklist", "textarea"}),
    "computed": frozenset({"text", "number"}),
}
"""BackDocket custom field type → destination column kinds that can hold its values."""

HEADER = (
    "crmlift mapping: {source} → {destination}, migration {migration!r}",
    "Proposed by `crmlift mapping propose` at {at}; nothing here has been sent anywhere.",
    "",
    "How to edit:",
    '- [fields.<entity>.<key>] to = "Object.field" is where a source custom field goes;',
    '  to = "" leaves it out. Only `to` is read: label, type, how, confidence, review and',
    "  alternative are the proposal's notes.",
    "- [values.<name>.map] maps each source value to the destination value a write takes",
    "  (Salesforce: the picklist's API value; Dataverse: the option's number, its label",
    "  shown beside it). Change `to`, add a source value, or delete one (it then gets the",
    "  map's `fallback`, else is left out, with a note on the record).",
    "- Entries with review = true were guessed by similarity: check them first.",
    "- Then run `crmlift mapping confirm --plan PLAN`: it checks every field and value",
    "  against the destination and journals this file's fingerprint. Any later edit needs",
    "  a new confirm (and, with require_approved_sample, a new sample).",
)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A written proposal and what it holds."""

    path: Path
    fields: int
    values: int
    review: int
    """Entries marked for review."""


def folded(name: str, prefix: str = "") -> str:
    """A name reduced to what similarity compares: lowercase letters and digits, without
    ``cf_``, a publisher prefix or ``__c``."""
    text = name.removesuffix("__c")
    for drop in ("cf_", f"{prefix}_" if prefix else None):
        if drop and text.lower().startswith(drop):
            text = text[len(drop) :]
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def similarity(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def best_choice(source: str, column: Column) -> tuple[str, str, float] | None:
    """The destination choice (value, label, score) most like ``source`` by value or label."""
    want = folded(source)
    labels = column.labels or column.choices
    scored = [
        (max(similarity(want, folded(c)), similarity(want, folded(lb))), i)
        for i, (c, lb) in enumerate(zip(column.choices, labels, strict=False))
    ]
    if not scored:
        return None
    score, i = max(scored)
    return column.choices[i], labels[i], round(score, 2)


def best_field(
    key: str, kind: str, columns: Mapping[str, Column], prefix: str, skip: Iterable[str] = ()
) -> tuple[str, float] | None:
    """The existing field most like custom field ``key`` among those whose kind can hold a
    ``kind`` value."""
    fits = COMPATIBLE.get(kind, frozenset({"text"}))
    skipped = set(skip)
    want = folded(key)
    scored = [
        (similarity(want, folded(name, prefix)), name)
        for name, column in columns.items()
        if column.kind in fits and name not in skipped
    ]
    if not scored:
        return None
    score, name = max(scored)
    return name, round(score, 2)


# -- the document -------------------------------------------------------------------------


def field_sections(facts: MappingFacts) -> list[Section]:
    sections: list[Section] = []
    for d in sorted(facts.definitions, key=lambda d: (str(d.get("entity")), str(d.get("key")))):
        entity, key = str(d.get("entity")), str(d.get("key") or "")
        if not key:
            continue
        kind = str(d.get("type"))
        entry: dict[str, Any] = {"label": str(d.get("label") or key), "type": kind}
        planned = facts.planned.get(entity, {}).get(key)
        homes = facts.homes.get(entity, ())
        if planned:
            obj, _, name = planned.partition(".")
            entry |= {"to": planned, "how": "schema plan: the field `crmlift schema` has the "
                      "admin deploy", "confidence": 1.0, "review": False}  # fmt: skip
            existing = {f: c for f, c in facts.columns.get(obj, {}).items()
                        if f in facts.described.get(obj, frozenset())}  # fmt: skip
            other = best_field(key, kind, existing, facts.prefix, skip=[name])
            if other is not None and other[1] >= ALTERNATIVE_AT_LEAST:
                entry |= {"alternative": f"{obj}.{other[0]}", "alternative_confidence": other[1]}
        elif (entity, key) in facts.not_deployed:
            entry |= {"to": "", "how": facts.not_deployed[(entity, key)], "confidence": 1.0,
                      "review": False}  # fmt: skip
        else:
            entry |= _existing_field(facts, key, kind, homes)
        sections.append(Section(("fields", entity, key), entry))
    return sections


def _existing_field(
    facts: MappingFacts, key: str, kind: str, homes: Sequence[str]
) -> dict[str, Any]:
    """No planned field: the most similar existing one on the record's object."""
    for obj in homes:
        found = best_field(key, kind, facts.columns.get(obj, {}), facts.prefix)
        if found is not None and found[1] >= MATCH_AT_LEAST:
            how = f"most similar existing {kind}-compatible field by name"
            review = found[1] < REVIEW_BELOW
            return {"to": f"{obj}.{found[0]}", "how": how, "confidence": found[1], "review": review}
    return {"to": "", "how": "no destination field is similar enough; name one or leave it out",
            "confidence": 0.0, "review": True}  # fmt: skip


def value_sections(facts: MappingFacts, fields: Sequence[Section]) -> list[Section]:
    sections: list[Section] = []
    for vm in facts.value_maps:
        sections += _built_in(facts, vm)
    chosen = {f"{s.path[1]}.{s.path[2]}": str(s.values["to"]) for s in fields}
    for d in facts.definitions:
        if d.get("type") not in ("picklist", "multi_picklist") or not d.get("key"):
            continue
        name = custom_map_name(str(d.get("entity")), str(d["key"]))
        to = chosen.get(name, "")
        if to:
            sections += _custom(facts, d, name, to)
    return sections


def _built_in(facts: MappingFacts, vm: ValueMap) -> list[Section]:
    targets = vm.target_fields(facts.prefix)
    columns = [_column(facts, t) for t in targets]
    entries: dict[str, Any] = {}
    for source, default in vm.default.items():
        entries[source] = _judged(source, default, columns, "crmlift's default map")
    about: dict[str, Any] = {"source": vm.source, "targets": list(targets)}
    if vm.fallback is not None:
        about["fallback"] = vm.fallback
    comments = [f"{vm.source} → {', '.join(targets)}"]
    return [
        Section(("values", vm.name), about, comments),
        Section(("values", vm.name, "map"), entries),
    ]


def _custom(facts: MappingFacts, d: Mapping[str, Any], name: str, to: str) -> list[Section]:
    column = _column(facts, to)
    planned = facts.planned.get(str(d.get("entity")), {}).get(str(d["key"])) == to
    entries: dict[str, Any] = {}
    for option in dict.fromkeys(str(o) for o in d.get("options") or ()):
        if planned:
            value = facts.planned_option(d, option)
            entries[option] = _judged(option, value, [column], "the schema plan's own option")
        else:
            entries[option] = _judged(option, None, [column], "")
    about = {"source": f"{d.get('entity')}.{d['key']} (custom picklist)", "targets": [to]}
    return [
        Section(("values", name), about, [f"custom field {name} → {to}"]),
        Section(("values", name, "map"), entries),
    ]


def _column(facts: MappingFacts, target: str) -> Column | None:
    obj, _, field = target.partition(".")
    return facts.columns.get(obj, {}).get(field)


def _judged(
    source: str, value: str | int | None, columns: Sequence[Column | None], how: str
) -> dict[str, Any]:
    """One value map entry: the default when every restricted target takes it, else the
    most similar value the destination has."""
    known = [c for c in columns if c is not None and c.choices]
    refused = [
        c for c in known if c.restricted and value is not None and str(value) not in c.choices
    ]
    if value is not None and not refused:
        entry: dict[str, Any] = {"to": value}
        label = _label(value, known)
        if label is not None and label != str(value):
            entry["label"] = label
        sure = 1.0 if all(str(value) in c.choices for c in known) else 0.9
        note = "" if sure == 1.0 else "; not among the picklist's values (unrestricted: taken)"
        return entry | {"how": how + note, "confidence": sure, "review": sure < REVIEW_BELOW}
    target = refused[0] if refused else (known[0] if known else None)
    best = best_choice(source, target) if target is not None else None
    if best is None or best[2] < MATCH_AT_LEAST:
        keep = value if value is not None else source
        return {"to": keep, "how": "no similar destination value; check it exists",
                "confidence": 0.0, "review": True}  # fmt: skip
    choice, label, score = best
    typed: str | int = int(choice) if isinstance(value, int) or choice.isdigit() else choice
    entry = {"to": typed}
    if label != choice:
        entry["label"] = label
    why = "most similar destination value or label"
    if refused:
        why += f" (the default {value!r} is not among the restricted picklist's values)"
    return entry | {"how": why, "confidence": score, "review": score < REVIEW_BELOW}


def _label(value: str | int, columns: Sequence[Column]) -> str | None:
    for c in columns:
        if str(value) in c.choices and c.labels:
            return c.labels[c.choices.index(str(value))]
    return None


# -- the command --------------------------------------------------------------------------


def default_path(plan: MigrationPlan) -> Path:
    """Where a proposal goes: the plan's ``[mapping] file``, else mapping.toml beside it."""
    destination = plan.destination
    if destination is not None and destination.mapping_file is not None:
        return destination.mapping_file
    return (plan.path.parent if plan.path is not None else Path.cwd()) / "mapping.toml"


async def propose_mapping(
    plan: MigrationPlan, *, out: Path | None = None, run_id: str | None = None,
    force: bool = False,
) -> Proposal:  # fmt: skip
    """Write the proposal; an existing file (the operator's edits) is kept unless ``force``."""
    path = out or default_path(plan)
    if path.exists() and not force:
        raise ConfigError(
            f"mapping file {path} exists (perhaps with your edits); write elsewhere with "
            "--out or replace it with --force"
        )
    ensure_writable_dir(path.parent, "--out directory")
    facts = await gather(plan, run_id)
    fields = field_sections(facts)
    values = value_sections(facts, fields)
    at = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    names = {"source": "backdocket", "destination": facts.platform, "migration": plan.name}
    header = [line.format(at=at, **names) for line in HEADER]
    about = Section(("about",), {"source": "backdocket", "destination": facts.platform})
    text = render(header, [about, *fields, *values])
    path.write_text(text, encoding="utf-8")
    review = sum(1 for s in fields if s.values.get("review")) + sum(
        1 for s in values for v in s.values.values() if isinstance(v, dict) and v.get("review")
    )
    count = sum(len(s.values) for s in values if s.path[-1] == "map")
    log.info("mapping.proposed", path=str(path), fields=len(fields), values=count, review=review)
    return Proposal(path, len(fields), count, review)
