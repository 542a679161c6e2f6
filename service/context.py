"""The mapping context of a run: owners resolved by email, custom field definitions and
the pair's settings, built from the run's staging the same way for every command that
transforms staged records (the load, reconcile, the sample diff)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from adapters.errors import ConfigError
from journal import Journal
from journal.runs import Run
from service.mapping.backdocket import OwnerResolution
from service.mapping.base import MappingContext
from service.pairs import Pair
from service.plan import DestinationSettings


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a run's transforms were given, and the owner resolution behind it."""

    mapping: MappingContext
    owners: OwnerResolution
    fallback: str
    """Destination user id of the fallback owner."""
    definitions: list[dict[str, Any]]
    """The staged custom field definitions."""


async def run_context(
    journal: Journal,
    run: Run,
    pair: Pair,
    destination: DestinationSettings,
    users_by_email: dict[str, str],
) -> RunContext:
    """Resolve owners against the destination's users and build the mapping context."""
    fallback = users_by_email.get(destination.fallback_owner_email.strip().lower())
    if fallback is None:
        raise ConfigError(
            f"destination.fallback_owner_email {destination.fallback_owner_email} "
            "is not an active user of the destination"
        )
    definitions = await staged(journal, run, "custom_field_definitions")
    owners = pair.resolve_owners(await staged(journal, run, "users"), users_by_email, fallback)
    needs = {c: await staged(journal, run, c) for c in pair.needs}
    mapping = MappingContext(
        owners=owners.owners,
        fallback_owner=fallback,
        custom_fields=_by_entity(definitions),
        settings={**destination.mapping, **pair.context_settings(needs)},
    )
    return RunContext(mapping, owners, fallback, definitions)


async def staged(journal: Journal, run: Run, collection: str) -> list[dict[str, Any]]:
    """Every staged record of a (small) collection, parsed."""
    return [orjson.loads(p) async for _, p in journal.staging.payloads(run.run_id, collection)]


def _by_entity(definitions: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], ...]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for d in definitions:
        grouped.setdefault(str(d.get("entity")), []).append(d)
    return {k: tuple(v) for k, v in grouped.items()}
