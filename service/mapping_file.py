"""The mapping file (``mapping.toml``): read, checked, fingerprinted and written.

``crmlift mapping propose`` writes it, the operator edits it, ``crmlift mapping confirm``
checks it against the destination and journals its fingerprint. A plan that names it
(``[mapping] file``) hands its field choices and value maps to the transforms through
the mapping context, so an edit changes what is sent with no code change.

The fingerprint is the sha256 of the file's canonical content (parsed TOML as sorted
JSON): comments and layout may change freely, any value may not.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.base import Column, canonical_json, digest
from adapters.errors import ConfigError
from service.mapping.value_maps_common import FALLBACKS, FIELD_TARGETS, VALUE_MAPS, Value

if TYPE_CHECKING:
    from service.plan import DestinationSettings

FINGERPRINT = "mapping_file_fingerprint"
"""``[mapping]`` settings key the loaded file's fingerprint travels under (so the sample
approval's fingerprint and a run's plan fingerprint change with the file)."""

REVIEW_BELOW = 0.8
"""A proposal entry less sure than this is marked ``review = true``."""


@dataclass(frozen=True, slots=True)
class FieldChoice:
    """Where one source custom field goes: ``to`` is ``Object.field`` ("" = not migrated)."""

    entity: str
    key: str
    to: str

    @property
    def object(self) -> str:
        return self.to.partition(".")[0]

    @property
    def field(self) -> str:
        return self.to.partition(".")[2]


@dataclass(frozen=True, slots=True)
class MappedValues:
    """One value map: source value → destination value, and the fallback for the rest."""

    name: str
    targets: tuple[str, ...]
    values: Mapping[str, Value]
    fallback: Value | None


@dataclass(frozen=True, slots=True)
class MappingFile:
    """A mapping file as read: its choices, and its content as the fingerprint covers it."""

    path: Path
    destination: str
    fields: tuple[FieldChoice, ...]
    maps: tuple[MappedValues, ...]
    content: Mapping[str, Any]
    fingerprint: str

    def settings(self) -> dict[str, Any]:
        """What the transforms read (``MappingContext.settings``). Built-in maps are keyed
        by lowercase source value, as the transforms look them up; a custom picklist's
        (``entity.key``) by its exact option."""
        targets: dict[str, dict[str, str]] = {}
        for f in self.fields:
            targets.setdefault(f.entity, {})[f.key] = f.field
        return {
            VALUE_MAPS: {m.name: _keyed(m) for m in self.maps},
            FALLBACKS: {m.name: m.fallback for m in self.maps if m.fallback is not None},
            FIELD_TARGETS: targets,
            FINGERPRINT: self.fingerprint,
        }


def _keyed(m: MappedValues) -> dict[str, Value]:
    if "." in m.name:
        return dict(m.values)
    return {k.strip().lower(): v for k, v in m.values.items()}


def fingerprint(content: Mapping[str, Any]) -> str:
    """sha256 of the canonical content: the same for any layout or comments."""
    return digest(canonical_json(content))


def load_mapping_file(path: Path) -> MappingFile:
    """Read and structurally check a mapping file; every problem is a ConfigError (exit 2)
    naming the file and the entry."""
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"mapping file {path} does not exist; write it with `crmlift mapping propose`"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mapping file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping file {path} is not valid TOML: {exc}") from exc
    about = _table(content, "about", path)
    destination = about.get("destination")
    if not isinstance(destination, str) or not destination:
        raise ConfigError(f"mapping file {path}: [about] destination must name the platform")
    fields: list[FieldChoice] = []
    for entity, keys in _table(content, "fields", path).items():
        for key, entry in _table({entity: keys}, entity, path, "fields.").items():
            where = f"fields.{entity}.{key}"
            to = _entry(entry, where, path).get("to")
            if not isinstance(to, str) or (to and not re.fullmatch(r"[^.\s]+\.[^.\s]+", to)):
                raise ConfigError(
                    f'mapping file {path}: {where}.to must be "Object.field" or "" '
                    f"(not migrated), not {to!r}"
                )
            fields.append(FieldChoice(entity, key, to))
    maps = [_map(name, table, path) for name, table in _table(content, "values", path).items()]
    return MappingFile(path, destination, tuple(fields), tuple(maps), content, fingerprint(content))


def _map(name: str, table: Any, path: Path) -> MappedValues:
    where = f"values.{name}"
    entry = _entry(table, where, path)
    targets = entry.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"mapping file {path}: {where}.targets must be a list of Object.field")
    values: dict[str, Value] = {}
    for source, value in _table(entry, "map", path, f"{where}.").items():
        to = value.get("to") if isinstance(value, dict) else value
        if isinstance(to, bool) or not isinstance(to, str | int):
            raise ConfigError(
                f"mapping file {path}: {where}.map.{source} must be a destination value "
                f'(text, or a Dataverse option number), like {{ to = "…" }}, not {to!r}'
            )
        values[source] = to
    fallback = entry.get("fallback")
    if fallback is not None and (isinstance(fallback, bool) or not isinstance(fallback, str | int)):
        raise ConfigError(f"mapping file {path}: {where}.fallback must be a value, not {fallback}")
    return MappedValues(name, tuple(targets), values, fallback)


def _table(content: Mapping[str, Any], key: str, path: Path, prefix: str = "") -> dict[str, Any]:
    found = content.get(key, {})
    if not isinstance(found, dict):
        raise ConfigError(f"mapping file {path}: {prefix}{key} must be a table")
    return found


def _entry(entry: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"mapping file {path}: {where} must be a table")
    return entry


# -- the plan's [mapping] file ------------------------------------------------------------


def with_mapping_file(
    destination: DestinationSettings | None, base: Path
) -> DestinationSettings | None:
    """``destination`` with the plan's mapping file (``[mapping] file``, relative to the
    plan) read into its mapping settings; ``require_confirmed`` needs a file to confirm."""
    if destination is None:
        return None
    named = destination.mapping.get("file")
    if not named:
        if destination.mapping.get("require_confirmed"):
            raise ConfigError(
                'plan [mapping] require_confirmed = true needs [mapping] file = "mapping.toml" '
                "(write it with `crmlift mapping propose`)"
            )
        return destination
    path = Path(str(named)).expanduser()
    path = path if path.is_absolute() else (base / path).resolve()
    if not path.exists():  # `crmlift mapping propose` writes it; migrate refuses to start
        return replace(destination, mapping_file=path)
    loaded = load_mapping_file(path)
    if loaded.destination != destination.platform:
        raise ConfigError(
            f"mapping file {path} is for {loaded.destination}, the plan's destination is "
            f"{destination.platform}; propose one for it with `crmlift mapping propose`"
        )
    return replace(
        destination, mapping={**destination.mapping, **loaded.settings()}, mapping_file=path
    )


def require_confirmed(destination: DestinationSettings) -> bool:
    return bool(destination.mapping.get("require_confirmed"))


# -- checking a file against the destination ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What a file is checked against: the source's custom fields, and every column the
    destination has or the schema plan deploys (object → field → Column)."""

    custom_fields: Mapping[str, Mapping[str, Mapping[str, Any]]]
    """Entity → key → definition."""
    columns: Mapping[str, Mapping[str, Column]]
    homes: Mapping[str, tuple[str, ...]]
    """Entity → the objects its custom fields may go to (the record the transform builds)."""
    map_targets: Mapping[str, tuple[str, ...]]
    """Built-in value map name → the ``Object.field`` its values go to (the transforms
    decide where; the file's ``targets`` only say it)."""


def problems(file: MappingFile, facts: Facts) -> list[str]:
    """Every entry of ``file`` the destination or the source contradicts, named."""
    found: list[str] = []
    for f in file.fields:
        where = f"fields.{f.entity}.{f.key}"
        if f.key not in facts.custom_fields.get(f.entity, {}):
            found.append(f"{where}: the source has no custom field {f.key} on {f.entity}")
            continue
        if not f.to:
            continue
        homes = facts.homes.get(f.entity, ())
        if f.object not in homes:
            found.append(
                f"{where}: {f.to} is not on {' or '.join(homes) or 'any object'}, the record "
                f"of {f.entity} become"
            )
        elif f.field not in facts.columns.get(f.object, {}):
            found.append(
                f"{where}: {f.to} does not exist in the destination nor in the schema plan"
            )
    chosen = {f"{f.entity}.{f.key}": f.to for f in file.fields}
    for m in file.maps:
        if "." in m.name:  # a custom picklist: its values go where its field goes
            entity, _, key = m.name.partition(".")
            if key not in facts.custom_fields.get(entity, {}):
                found.append(f"values.{m.name}: the source has no custom field {key} on {entity}")
                continue
            to = chosen.get(m.name)
            found += _map_problems(m, (to,) if to else (), facts)
        elif m.name not in facts.map_targets:
            known = ", ".join(sorted(facts.map_targets))
            found.append(f"values.{m.name}: no such value map in this pair (known: {known})")
        else:
            found += _map_problems(m, facts.map_targets[m.name], facts)
    return found


def _map_problems(m: MappedValues, targets: Sequence[str], facts: Facts) -> list[str]:
    found: list[str] = []
    for target in targets:
        obj, _, name = target.partition(".")
        column = facts.columns.get(obj, {}).get(name)
        if column is None:
            found.append(f"values.{m.name}: target {target} does not exist in the destination")
            continue
        if not column.restricted:
            continue
        allowed = set(column.choices)
        for source, value in m.values.items():
            if str(value) not in allowed:
                found.append(
                    f"values.{m.name}.map.{source}: {value!r} is not a value of {target} "
                    f"(restricted: {_shown(column)})"
                )
        if m.fallback is not None and str(m.fallback) not in allowed:
            found.append(f"values.{m.name}.fallback: {m.fallback!r} is not a value of {target}")
    return found


def _shown(column: Column) -> str:
    pairs = [c if c == label else f"{c} ({label})" for c, label in zip(column.choices,
             column.labels or column.choices, strict=False)]  # fmt: skip
    return ", ".join(pairs[:12]) + ("…" if len(pairs) > 12 else "")


# -- writing ------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """A TOML key: bare when it can be, else a quoted basic string."""
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def toml_value(value: Any) -> str:
    """One TOML value: strings (escaped as basic strings), integers, floats, booleans,
    lists and inline tables of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        # JSON escapes are TOML basic-string escapes; DEL must be escaped in TOML too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {value!r}")


@dataclass(frozen=True, slots=True)
class Section:
    """One ``[table]`` of the written file, with the comment lines above it."""

    path: Sequence[str]
    values: Mapping[str, Any]
    comments: Sequence[str] = ()


def render(header: Sequence[str], sections: Sequence[Section]) -> str:
    """The file's text; it must read back (tomllib) as exactly the sections' values."""
    lines = [f"# {line}".rstrip() for line in header]
    document: dict[str, Any] = {}
    for section in sections:
        lines.append("")
        lines += [f"# {c}".rstrip() for c in section.comments]
        lines.append("[" + ".".join(toml_key(p) for p in section.path) + "]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in section.values.items()]
        table = document
        for part in section.path:
            table = table.setdefault(part, {})
        table.update({k: _plain(v) for k, v in section.values.items()})
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != document:  # a writer bug must never reach the operator
        raise AssertionError("the mapping file does not read back as written")
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
