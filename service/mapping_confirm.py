"""``crmlift mapping confirm`` and the gate ``[mapping] require_confirmed`` puts before a run.

Confirming checks the file against the source's custom fields and the destination's
columns (or the schema plan's, for what the admin has yet to deploy), then journals its
fingerprint with who and when. A new run with ``require_confirmed = true`` starts only
when the plan's file, as it is now, was confirmed: an edit after the confirm is refused
until it is confirmed again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from adapters.errors import ConfigError
from journal import Journal, open_journal
from journal.mapping_confirmations import Confirmation, MappingConfirmations
from service.mapping_facts import gather
from service.mapping_file import FINGERPRINT, load_mapping_file, problems, require_confirmed
from service.plan import MigrationPlan

log = structlog.get_logger(__name__)

SHOWN_PROBLEMS = 12
"""Problems a refused confirm names on its one line (the count says how many in all)."""


async def confirm_mapping(
    plan: MigrationPlan, *, by: str, file: Path | None = None, run_id: str | None = None
) -> Confirmation:
    """Check the mapping file against the source and the destination and journal its
    fingerprint; every contradiction is named in one ConfigError (exit 2)."""
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table; a mapping maps into one")
    if not by.strip():
        raise ConfigError("confirm needs who confirms: --by NAME (or $USER)")
    path = file or plan.destination.mapping_file
    if path is None:
        raise ConfigError(
            'the plan names no mapping file: add [mapping] file = "mapping.toml" or pass --file'
        )
    loaded = load_mapping_file(path)
    if loaded.destination != plan.destination.platform:
        raise ConfigError(
            f"mapping file {path} is for {loaded.destination}, not the plan's "
            f"{plan.destination.platform}"
        )
    facts = await gather(plan, run_id)
    found = problems(loaded, facts.check_facts())
    if found:
        more = f" (and {len(found) - SHOWN_PROBLEMS} more)" if len(found) > SHOWN_PROBLEMS else ""
        raise ConfigError(
            f"mapping file {path} is not confirmed: {'; '.join(found[:SHOWN_PROBLEMS])}{more}"
        )
    async with open_journal(plan.journal) as journal:
        done = await MappingConfirmations(journal.pool).confirm(
            plan.name, loaded.fingerprint, str(path), loaded.content, by.strip()
        )
    log.info("mapping.confirmed", path=str(path), fingerprint=loaded.fingerprint, by=by)
    return done


async def require_confirmed_mapping(journal: Journal, plan: MigrationPlan) -> None:
    """Refuse (ConfigError, exit 2) a new run whose mapping file is not confirmed as it is
    now, when the plan asks for it; names the command to run and both fingerprints."""
    destination = plan.destination
    if destination is None:
        return
    if destination.mapping_file is not None and FINGERPRINT not in destination.mapping:
        raise ConfigError(
            f"the plan's mapping file {destination.mapping_file} does not exist; write it "
            f"with `crmlift mapping propose --plan {plan.path or 'plan.toml'}`"
        )
    if not require_confirmed(destination):
        return
    now = str(destination.mapping.get(FINGERPRINT))
    confirmations = MappingConfirmations(journal.pool)
    if await confirmations.find(plan.name, now) is not None:
        return
    latest = await confirmations.latest(plan.name)
    then = (
        "none was ever confirmed"
        if latest is None
        else f"the last confirmed had fingerprint {latest.fingerprint} "
        f"({latest.confirmed_by}, {latest.confirmed_at:%Y-%m-%d %H:%M:%S %Z})"
    )
    where = plan.path or "plan.toml"
    raise ConfigError(
        f"migration {plan.name!r} requires a confirmed mapping ([mapping] require_confirmed) "
        f"and {destination.mapping_file} (fingerprint {now}) is not confirmed: {then}; "
        f"review it, then run `crmlift mapping confirm --plan {where}`"
    )


@asynccontextmanager
async def confirmed(
    journal: Journal, plan: MigrationPlan, resume: str | None
) -> AsyncIterator[None]:
    """The gate as ``migrate`` enters it, before its run starts: a new run (sample or full)
    needs the confirmed mapping; a resumed run is held to its plan fingerprint instead,
    which covers the file too."""
    if resume is None:
        await require_confirmed_mapping(journal, plan)
    yield
