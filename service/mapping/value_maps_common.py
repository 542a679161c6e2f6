"""A value map as data: what a transform reads from the mapping context, with the
proposal's default beside it.

The operator's confirmed mapping file (``service.mapping_file``) reaches the transforms as
``MappingContext.settings[VALUE_MAPS]``: map name → source value → destination value, and
``settings[FALLBACKS]``: map name → the value an unmapped source value gets. A map the
file does not hold is the default below, exactly as the code had it before the file
existed, so a plan without a mapping file loads as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.mapping.base import MappingContext

VALUE_MAPS = "value_maps"
"""``MappingContext.settings`` key: map name → {source value (lowercase) → destination value}."""
FALLBACKS = "value_fallbacks"
"""``MappingContext.settings`` key: map name → the value an unmapped source value gets."""
FIELD_TARGETS = "field_targets"
"""``MappingContext.settings`` key: source entity → custom field key → destination field
("" when the operator chose not to migrate it)."""

Value = str | int
"""A destination value as a write takes it: Salesforce's API value, Dataverse's option value."""


@dataclass(frozen=True, slots=True)
class ValueMap:
    """One source enumeration's map into the destination, named as the mapping file names it."""

    name: str
    """Its table in the mapping file: ``[values.<name>]``."""
    source: str
    """``collection.field`` the source values come from (``matters.status``)."""
    targets: tuple[str, ...]
    """``object.field`` it fills (``{prefix}`` stands for Dataverse's publisher prefix)."""
    default: Mapping[str, Value]
    """The proposal's default: what the transforms used before the mapping file existed."""
    fallback: Value | None = None
    """What an unmapped source value becomes (None: our own picklists take the value
    humanized; option sets are left empty), with a note on the record."""

    def values(self, ctx: MappingContext) -> Mapping[str, Value]:
        """The map the run uses: the confirmed file's, else the default."""
        found = _table(ctx, VALUE_MAPS).get(self.name)
        return found if isinstance(found, Mapping) else self.default

    def fallback_in(self, ctx: MappingContext) -> Value | None:
        """The fallback the run uses: the file's when it names one, else the default."""
        fallbacks = _table(ctx, FALLBACKS)
        found = fallbacks.get(self.name, self.fallback)
        return found if isinstance(found, str | int) else self.fallback

    def target_fields(self, prefix: str = "") -> tuple[str, ...]:
        """``targets`` with the publisher prefix filled in."""
        return tuple(t.format(prefix=prefix) for t in self.targets)


def _table(ctx: MappingContext, key: str) -> Mapping[str, Any]:
    found = ctx.settings.get(key)
    return found if isinstance(found, Mapping) else {}


def field_target(ctx: MappingContext, entity: str, key: str) -> str | None:
    """The destination field the confirmed file names for custom field ``entity``/``key``:
    None when the file says nothing (the schema plan's field), "" when it says not to
    migrate it."""
    found = _table(ctx, FIELD_TARGETS).get(entity)
    target = found.get(key) if isinstance(found, Mapping) else None
    return target if isinstance(target, str) else None


def custom_map_name(entity: str, key: str) -> str:
    """The value map name of a custom picklist field: ``contacts.cf_preferred_language``."""
    return f"{entity}.{key}"


def custom_values(ctx: MappingContext, entity: str, key: str) -> Mapping[str, Value] | None:
    """A custom picklist's map from the confirmed file (exact source option → destination
    value); None when the file has none (the schema plan's own options are used)."""
    found = _table(ctx, VALUE_MAPS).get(custom_map_name(entity, key))
    return found if isinstance(found, Mapping) else None
