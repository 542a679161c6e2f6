"""The migrate command: extract, gate the schema, resolve owners, load, report.

One run carries the whole migration, so ``--resume`` continues wherever it
stopped: extraction from its window checkpoints, the load from the id map and
the journaled Bulk jobs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from adapters.base import ObjectInfo
from adapters.errors import ConfigError, SchemaMissing
from journal import Journal, open_journal
from journal.runs import Run
from ratelimit.governor import Governor
from service.audit_run import audit_gate
from service.context import run_context, staged
from service.extract import ExtractSummary
from service.load import PHASE as LOAD_PHASE
from service.load import Loader, LoadSettings
from service.mapping_confirm import confirmed
from service.pairs import DestinationClient, Pair, SchemaPlan, pair_for, setting_help
from service.pipeline import extract_into, guarded, run_dir
from service.plan import DestinationSettings, MigrationPlan
from service.progress import ProgressBoard
from service.reports.audit import audit_pages
from service.reports.migrate import MigrateReport, build_rows, write_migrate_report
from service.sample import Sampling, starting
from service.shutdown import Shutdown

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class MigrateOutcome:
    """A finished migration run and where its reports are."""

    run: Run
    extract: ExtractSummary
    report: MigrateReport
    reports: list[Path]
    source_governor: Governor
    destination_governors: list[Governor]
    """One per destination principal (Dataverse: per application user)."""
    phase_seconds: dict[str, float]
    """Wall seconds of ``prepare`` (schema gate, owners), ``load`` (the waves) and ``report``."""
    load_timings: dict[str, float]
    """Seconds per kind of load work (transform, journal, destination), summed over batches."""


async def run_migrate(
    plan: MigrationPlan,
    *,
    resume: str | None = None,
    progress: ProgressBoard | None = None,
    shutdown: Shutdown | None = None,
    sample: int | None = None,
) -> MigrateOutcome:
    """Extract the plan's source and load it into its destination, journaled throughout.

    ``shutdown`` is the operator's stop request: once asked, the load starts no new
    batch, journals the ones in flight and ends the run as interrupted (resumable).
    ``sample``: load about that many records (``service.sample``), into the plan's
    ``[sample_destination]`` if it has one, and write their field-level diff.
    """
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table; `crmlift extract` only extracts")
    destination = plan.destination
    pair = pair_for(destination.platform)
    progress = progress or ProgressBoard()
    async with (
        open_journal(plan.journal) as journal,
        confirmed(journal, plan, resume),
        starting(journal, plan, resume, sample) as (run, sampling),
    ):
        structlog.contextvars.bind_contextvars(run_id=run.run_id)
        destination = destination if sampling is None else sampling.destination
        async with (
            guarded(journal, run, "migrate"),
            pair.open_client(destination.config, destination.quota) as client,
        ):
            await check_destination(client, destination)
            extracted, source_governor = await extract_into(journal, plan, run, progress)
            phases: dict[str, float] = {}
            report, timings = await _load(
                journal, plan, pair, run, client, progress, phases, shutdown or Shutdown(),
                sampling,
            )  # fmt: skip
        await journal.runs.set_status(run.run_id, "completed")
        paths = write_migrate_report(report, run_dir(plan, run.run_id))
        paths += [p for p in audit_pages(run_dir(plan, run.run_id)) if p.exists()]
        paths += [] if sampling is None else sampling.reports
        return MigrateOutcome(
            run, extracted, report, paths, source_governor, client.governors, phases, timings
        )


async def check_destination(client: DestinationClient, destination: DestinationSettings) -> None:
    """Log in to the destination and read its users before extracting anything.

    An unreachable org or refused credentials then stop the run in seconds (exit 4 or
    3), not after hours of extraction; so does a fallback owner who is not a user.
    """
    users = await client.users_by_email()
    if destination.fallback_owner_email.strip().lower() not in users:
        raise ConfigError(
            f"destination.fallback_owner_email {destination.fallback_owner_email} "
            "is not an active user of the destination"
        )
    log.info("destination reachable", platform=destination.platform, users=len(users))


async def _load(
    journal: Journal,
    plan: MigrationPlan,
    pair: Pair,
    run: Run,
    client: DestinationClient,
    progress: ProgressBoard,
    phases: dict[str, float],
    shutdown: Shutdown,
    sampling: Sampling | None = None,
) -> tuple[MigrateReport, dict[str, float]]:
    assert plan.destination is not None
    destination = plan.destination if sampling is None else sampling.destination
    started = time.perf_counter()
    out_dir = run_dir(plan, run.run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    users_by_email = await client.users_by_email()
    built = await run_context(journal, run, pair, destination, users_by_email)
    wanted = pair.schema_plan(built.definitions, destination.mapping)
    (out_dir / "schema-plan.json").write_bytes(wanted.document)
    await _write_rebuild_reference(journal, run, out_dir)
    schema = await gate_schema(client, pair.objects(destination.mapping), wanted, out_dir)
    await audit_gate(
        journal, run, pair, destination, built, schema, out_dir=out_dir,
        migration=id_map_scope(plan, destination), acknowledged=plan.audit_acknowledge,
    )  # fmt: skip
    owners, fallback, context = built.owners, built.fallback, built.mapping
    loader = Loader(
        destination=client, journal=journal, run=run, migration=id_map_scope(plan, destination),
        transform=pair.transform, load_order=pair.load_order, depends_on=pair.depends_on,
        context=context,
        schema=schema, settings=LoadSettings(
            batch_records=destination.batch_records,
            batches_in_flight=destination.batches_in_flight,
        ), progress=progress, shutdown=shutdown,
        only=None if sampling is None else await sampling.only(journal, run, pair, built),
    )  # fmt: skip
    loading = time.perf_counter()
    phases["prepare"] = loading - started
    shutdown.draining(True)
    try:
        await loader.load(extra=pair.first_payloads(fallback))
    finally:
        shutdown.draining(False)
    reporting = time.perf_counter()
    phases["load"] = reporting - loading

    staged = await journal.staging.counts(run.run_id)
    report = MigrateReport(
        duplicate_emails=await _duplicate_emails(journal, run, pair),
        deleted_at_source=await journal.deletions.not_loaded(run.run_id),
        run_id=run.run_id,
        destination=destination.platform,
        rows=build_rows(
            staged, await journal.operations.summary(run.run_id), ["users", *pair.load_order]
        ),
        notes=await journal.issues.list(run.run_id, LOAD_PHASE),
        failures=await journal.operations.failures(run.run_id),
        owners_matched=len(owners.matched),
        owners_fell_back=[
            {"user_id": u, "name": n, "email": e, "reason": r} for u, n, e, r in owners.fell_back
        ],
        owners_matches=[
            {"user_id": u, "email": e, "destination_user": d} for u, e, d in owners.matched
        ],
        schema_missing=sorted(name for name, info in schema.items() if info is None),
    )
    if sampling is not None:
        migration = id_map_scope(plan, destination)
        await sampling.check(journal, plan, pair, run, client, built, migration)
    phases["report"] = time.perf_counter() - reporting
    return report, dict(loader.timings)


def id_map_scope(plan: MigrationPlan, destination: DestinationSettings) -> str:
    """Whose id map a run reads and writes: this migration, into this org.

    A sample run into a sandbox and the full run into production share a plan
    name but not a single record id, so each org keeps its own map.
    """
    return f"{plan.name}|{destination.config.org_url}"


async def gate_schema(
    client: DestinationClient,
    objects: list[str],
    wanted: SchemaPlan,
    out_dir: Path,
    again: str = "run again",
) -> dict[str, ObjectInfo | None]:
    """Describe every object the pair writes; missing fields stop the run.

    A missing object only queues its records (the seed: case records wait for
    the admin to deploy Case_Matter__c); a missing field would silently drop
    data, so the run refuses to start and names every field the admin must add —
    except a lookup to a missing object, which cannot exist before its target
    and has nothing to hold until the target's records load.
    """
    described = await asyncio.gather(*(client.describe(o) for o in objects))
    schema = dict(zip(objects, described, strict=True))
    missing = schema_gaps(schema, wanted)
    if missing:
        raise SchemaMissing(
            f"the destination lacks {len(missing)} part(s) of the schema plan "
            f"({', '.join(missing[:8])}{'…' if len(missing) > 8 else ''}); "
            f"deploy {out_dir / 'schema-plan.json'} and {again}"
        )
    return schema


def schema_gaps(schema: dict[str, ObjectInfo | None], wanted: SchemaPlan) -> list[str]:
    """What the plan needs of each object the destination has but lacks, by name.

    A field, a lookup that cannot point at its planned target (on Dataverse a lookup
    binds through its relationship, so one the metadata does not know would fail every
    write), and an org setting (Allow Activities, HasNotes, …). A lookup to a missing
    object is exempt: it cannot exist before its target.
    """
    absent = {name for name, info in schema.items() if info is None}
    gaps: list[str] = []
    for name, info in schema.items():
        if info is None:
            continue
        lookups = wanted.lookups.get(name, {})
        for f in wanted.fields.get(name, ()):
            targets = set(lookups.get(f, ())) - absent
            if f in lookups and not targets:
                continue
            if f not in info.fields:
                gaps.append(f"{name}.{f}")
            elif targets - set(info.references.get(f, ())):
                gaps.append(f"{name}.{f} → {', '.join(sorted(targets))}")
        gaps += [
            f"{name}: {s} — {setting_help(s)}"
            for s in sorted(wanted.settings.get(name, frozenset()) - info.settings)
        ]
    return gaps


async def _duplicate_emails(journal: Journal, run: Run, pair: Pair) -> list[dict[str, Any]]:
    """Contacts sharing an email, the seed's de-duplication key: loaded, and listed for review."""
    by_email: dict[str, list[str]] = {}
    async for source_id, payload in journal.staging.payloads(run.run_id, "contacts"):
        key = pair.dedupe_key(orjson.loads(payload))
        if key is not None:
            by_email.setdefault(key, []).append(source_id)
    return [{"email": e, "contacts": ids} for e, ids in sorted(by_email.items()) if len(ids) > 1]


REBUILD_REFERENCE = {"workflows": "workflows.json", "merge_templates": "merge-templates.json"}
"""What does not migrate but the destination's admin rebuilds natively (automation in
Flow or Power Automate, document templates), exported as the source defines it."""


async def _write_rebuild_reference(journal: Journal, run: Run, out_dir: Path) -> None:
    for collection, filename in REBUILD_REFERENCE.items():
        records = await staged(journal, run, collection)
        (out_dir / filename).write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
