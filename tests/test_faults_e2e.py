"""A migration runs while every platform misbehaves a lot, and nothing is lost.

The operator migrates a dirty BackDocket tenant on a bad day. The source answers
503, 429 (with and without ``Retry-After``) and 500, cuts answers mid-body, is
slow, and lets tokens expire every half second. The destination does the same and
worse: writes that land but whose answers are lost, rows locked in the middle of
Collections calls and Bulk jobs, changesets rolled back inside a ``$batch``.

The run still completes, and the org holds exactly what an undisturbed run puts
into a fresh org: every record once with the same values and the same links, none
missing. Every source record is accounted for, the report tells the same story
as the calm run's (the same counts, the same failures for the same reasons), and
no record failed because of a fault. Then a rerun of the same plan, the platforms
still misbehaving, writes nothing.

Everything is real but the SaaS platforms, which are our simulators on loopback.
"""

from __future__ import annotations

import os
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.dynamics.sim import DataverseSim, DataverseSimSettings
from adapters.dynamics.sim import serve as serve_dataverse
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from journal import Journal, JournalSettings
from service.mapping import backdocket_dynamics, backdocket_salesforce
from service.migrate import MigrateOutcome, run_migrate
from service.plan import MigrationPlan, parse_plan

ADMIN = "admin@firm.example"
SECRET = "s3cret"
SECOND_APP = ("9c0a3f7e-2b1d-4e55-8f11-7d2a6c3b9e20", SECRET)
"""Dataverse's second application user: a 429 pauses one user, not the load."""
SLOW = 0.1
"""Seconds a slow fault holds a call: long enough to reorder calls, short enough to
keep the file fast."""

SOURCE_FAULTS: dict[str, Any] = {
    "fault_503_rate": 0.04,
    "fault_429_rate": 0.04,
    "fault_429_no_retry_after_rate": 0.04,
    "fault_500_rate": 0.04,
    "fault_reset_rate": 0.05,
    "fault_slow_rate": 0.05,
    "fault_slow_seconds": SLOW,
    "fault_retry_after": 0.1,
    "token_ttl": 0.5,
    "fault_seed": 5,
}
"""BackDocket: one call in five refused or cut, one in twenty slow, tokens that live
half a second."""

SALESFORCE_FAULTS: dict[str, Any] = {
    "fault_500_rate": 0.06,
    "fault_503_rate": 0.06,
    "fault_reset_rate": 0.06,
    "fault_reset_after_write_rate": 0.08,
    "fault_slow_rate": 0.06,
    "fault_slow_seconds": SLOW,
    "fault_partial_rate": 0.05,
    "token_ttl": 1.0,
    "fault_seed": 11,
}
"""Salesforce: 5xx, connections dropped before a write and after it was applied, one
record in twenty locked (UNABLE_TO_LOCK_ROW) in Collections and Bulk, sessions that
last a second."""

DATAVERSE_FAULTS: dict[str, Any] = {
    "fault_503_rate": 0.05,
    "fault_500_rate": 0.05,
    "fault_429_rate": 0.03,
    "fault_reset_rate": 0.06,
    "fault_slow_rate": 0.05,
    "fault_slow_seconds": SLOW,
    "fault_part_rate": 0.06,
    "token_ttl_seconds": 2,
    "fault_seed": 13,
}
"""Dataverse: 5xx, spurious 429s (rarer: each pauses the user for the whole second
Retry-After says), batches carried out whose answers are lost, changesets rolled back
inside a ``$batch``, tokens that live two seconds."""

INJECTED_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "UNKNOWN_EXCEPTION", "HTTP_500", "NO_RESULT"})
"""Reasons only an injected fault gives; no record may end failed with one."""

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Org:
    """A destination org as the test reads it back, and the plan's table for it."""

    objects: tuple[str, ...]
    key: str
    """The external id field: the source id a record was loaded from."""
    rows: Callable[[str], list[dict[str, Any]]]
    names: Callable[[], dict[str, str]]
    """Every record id of the org → a name that is the same in any org (object and
    external id; users by email), so lookups compare across orgs."""
    volatile: frozenset[str]
    """Fields that differ between two loads of the same data: stamps of when a row was
    written and how often, and ids that nothing names."""
    destination: dict[str, Any]
    faults: Callable[[], dict[str, int]]
    """Faults injected so far, by kind."""


def licensed(tenant: Tenant) -> tuple[tuple[str, str], ...]:
    users = tenant.records["users"]
    return (("Firm Admin", ADMIN), *dict.fromkeys((u["name"], u["email"]) for u in users[::2]))


@asynccontextmanager
async def salesforce_org(tenant: Tenant, faults: dict[str, Any]) -> AsyncIterator[Org]:
    sim = SalesforceSim(
        backdocket_salesforce.schema_plan(tenant.records["custom_field_definitions"]),
        SfSimSettings(users=licensed(tenant), bulk_records_per_second=50_000, **faults),
    )
    runner, url = await serve_salesforce(sim)
    objects = (
        "Account", "Contact", "AccountContactRelation", "Case_Matter__c", "Case_Party__c",
        "Claim__c", "Lead", "Task", "Event", "ContentVersion",
    )  # fmt: skip
    destination = {
        "platform": "salesforce", "login_url": url, "client_id": "crmlift",
        "client_secret": {"env": "TEST_FAULTS_SECRET"}, "fallback_owner_email": ADMIN,
        "bulk_threshold": 40,
    }  # fmt: skip

    def names() -> dict[str, str]:
        found = {u["Id"]: f"user:{u['Email']}" for u in sim.records("User")}
        for name in objects:
            found.update(
                (r["Id"], f"{name}:{r.get('Source_System_ID__c')}") for r in sim.records(name)
            )
        return found

    def injected() -> dict[str, int]:
        stats = sim.stats
        return {
            "500": stats.faults_500, "503": stats.faults_503, "reset": stats.faults_reset,
            "reset_after_write": stats.faults_reset_after_write, "slow": stats.faults_slow,
            "partial": stats.faults_partial, "sessions_expired": stats.sessions_expired,
        }  # fmt: skip

    # Stamped by the org when the write happens, not migrated: CompletedDateTime is when
    # the task was closed in Salesforce (Task object reference: read-only).
    volatile = frozenset({"CreatedDate", "LastModifiedDate", "SystemModstamp",
                          "ContentDocumentId", "CompletedDateTime"})  # fmt: skip
    try:
        yield Org(objects, "Source_System_ID__c", sim.records, names, volatile, destination,
                  injected)  # fmt: skip
    finally:
        await runner.cleanup()


@asynccontextmanager
async def dynamics_org(tenant: Tenant, faults: dict[str, Any]) -> AsyncIterator[Org]:
    # Every org its own URL: id maps are kept per org, and these are two orgs.
    settings = DataverseSimSettings(
        users=licensed(tenant),
        client_secret=SECRET,
        applications=(SECOND_APP,),
        org_url=f"https://firm-{secrets.token_hex(4)}.crm.dynamics.com",
        **faults,
    )
    sim = DataverseSim(
        backdocket_dynamics.schema_plan(tenant.records["custom_field_definitions"]), settings
    )
    runner, url = await serve_dataverse(sim)
    objects = (
        "accounts", "contacts", "crm_matters", "crm_claims", "opportunities", "leads", "tasks",
        "appointments", "annotations",
    )  # fmt: skip
    destination = {
        "platform": "dynamics", "environment_url": settings.org_url, "api_url": url,
        "authority_url": url, "tenant_id": settings.tenant_id, "client_id": settings.client_id,
        "client_secret": {"env": "TEST_FAULTS_SECRET"}, "fallback_owner_email": ADMIN,
        "applications": [{"client_id": SECOND_APP[0],
                          "client_secret": {"env": "TEST_FAULTS_SECRET"}}],
        "batch_size": 10, "quota": {"rate": 100, "burst": 100},
    }  # fmt: skip

    def names() -> dict[str, str]:
        found = {
            u["systemuserid"]: f"user:{u['internalemailaddress']}"
            for u in sim.records("systemusers")
        }
        for name in objects:
            for row in sim.records(name):
                # A row's own id is the one GUID column not named for a lookup (_x_value).
                own = [v for k, v in row.items() if not k.startswith("_") and _is_guid(v)]
                found.update((v, f"{name}:{row.get('crm_sourceid')}") for v in own)
        return found

    def injected() -> dict[str, int]:
        stats = sim.stats
        return {
            "503": stats.faults_503, "500": stats.faults_500, "429": stats.faults_429,
            "reset": stats.faults_reset, "slow": stats.faults_slow, "part": stats.faults_part,
            "tokens_renewed": stats.tokens_issued - 2,
        }  # fmt: skip

    volatile = frozenset({"@odata.etag", "modifiedon", "versionnumber"})
    try:
        yield Org(objects, "crm_sourceid", sim.records, names, volatile, destination, injected)
    finally:
        await runner.cleanup()


def _is_guid(value: Any) -> bool:
    return isinstance(value, str) and GUID.fullmatch(value) is not None


ORGS = {"salesforce": salesforce_org, "dynamics": dynamics_org}
DESTINATION_FAULTS = {"salesforce": SALESFORCE_FAULTS, "dynamics": DATAVERSE_FAULTS}


@asynccontextmanager
async def backdocket(
    tenant: Tenant, faults: dict[str, Any]
) -> AsyncIterator[tuple[BackDocketSim, str]]:
    sim = BackDocketSim(tenant, SimSettings(rate=1000, burst=200, **faults))
    runner, url = await serve(sim)
    try:
        yield sim, url
    finally:
        await runner.cleanup()


def plan_for(
    name: str, source_url: str, org: Org, out: Path, journal_settings: JournalSettings
) -> MigrationPlan:
    """The operator's plan; small pages and batches, so the faults have many calls to hit."""
    raw: dict[str, Any] = {
        "migration": {"name": name, "output_dir": str(out)},
        "source": {"platform": "backdocket", "base_url": source_url, "client_id": "crmlift",
                   "client_secret": {"env": "TEST_FAULTS_SECRET"}, "page_size": 20,
                   "quota": {"rate": 1000, "burst": 200, "concurrency": 8}},
        "extract": {"window_records": 60},
        "load": {"batch_records": 500, "batches_in_flight": 6},
        "destination": org.destination,
    }  # fmt: skip
    env = {
        **os.environ,
        "TEST_FAULTS_SECRET": SECRET,
        "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
        "CRMLIFT_DATA_DIR": str(journal_settings.data_dir),
    }
    return parse_plan(raw, env=env, base=out.parent)


Snapshot = dict[str, Counter[str]]


def snapshot(org: Org) -> Snapshot:
    """Every record of every object, lookups and ids named as in any org, stamps left out:
    two orgs loaded with the same data have equal snapshots."""
    names = org.names()
    found: Snapshot = {}
    for name in org.objects:
        rows = Counter[str]()
        for row in org.rows(name):
            kept = {
                field: _comparable(value, names)
                for field, value in row.items()
                if field not in org.volatile
            }
            rows[orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()] += 1
        found[name] = rows
    return found


def _comparable(value: Any, names: dict[str, str]) -> Any:
    """A record id as its name; a number as a float (a Bulk CSV and a JSON body carry
    the same number field as ``3.0`` and ``3``)."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def assert_same_records(got: Snapshot, expected: Snapshot, org: Org) -> None:
    """The same rows, each once; on a difference, say which records differ."""
    for name, rows in expected.items():
        keys = Counter(str(orjson.loads(row).get(org.key)) for row in got[name].elements())
        twice = sorted(k for k, n in keys.items() if n > 1 and k != "None")
        assert not twice, f"{name}: loaded more than once: {twice[:10]}"
        if got[name] == rows:
            continue
        missing = [orjson.loads(r) for r in rows - got[name]]
        extra = [orjson.loads(r) for r in got[name] - rows]
        raise AssertionError(
            f"{name}: {len(missing)} rows of the calm run are missing or differ, "
            f"{len(extra)} rows are extra or differ; first: {missing[:2]} vs {extra[:2]}"
        )


def failures(outcome: MigrateOutcome) -> set[tuple[str, str, str | None]]:
    return {(f.collection, f.source_id, f.reason_code) for f in outcome.report.failures}


def tally(outcome: MigrateOutcome) -> dict[tuple[str, str], tuple[int, ...]]:
    """The report's summary: per collection and object, what was created, updated,
    left unchanged, skipped and failed."""
    return {
        (r.collection, r.object): (r.created, r.updated, r.unchanged, r.skipped, r.failed)
        for r in outcome.report.rows
    }


async def extract_issues(journal: Journal, outcome: MigrateOutcome) -> set[tuple[str, ...]]:
    issues = await journal.issues.list(outcome.run.run_id, "extract")
    return {(i.collection, i.source_id, i.outcome, i.code) for i in issues}


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return generate_tenant(800, seed=23, dirty=True)


@pytest.mark.slow
@pytest.mark.parametrize("destination", sorted(ORGS))
async def test_a_migration_through_heavy_faults_loads_exactly_what_a_calm_one_does(
    destination: str,
    tenant: Tenant,
    journal: Journal,
    journal_settings: JournalSettings,
    tmp_path: Path,
) -> None:
    async with AsyncExitStack() as stack:
        # The bad day: every platform faulting, every kind at once. (It runs first, so
        # the documents are downloaded through the faulty source: file content is
        # stored once per journal, and the calm run below reuses it.)
        source, source_url = await stack.enter_async_context(backdocket(tenant, SOURCE_FAULTS))
        org = await stack.enter_async_context(
            ORGS[destination](tenant, DESTINATION_FAULTS[destination])
        )
        plan = plan_for("stormy", source_url, org, tmp_path / "stormy", journal_settings)
        stormy = await run_migrate(plan)

        # The reference: the same tenant into a fresh org, nothing misbehaving.
        _, calm_url = await stack.enter_async_context(backdocket(tenant, {}))
        calm_org = await stack.enter_async_context(ORGS[destination](tenant, {}))
        calm = await run_migrate(
            plan_for("calm", calm_url, calm_org, tmp_path / "calm", journal_settings)
        )
        expected = snapshot(calm_org)
        assert sum(rows.total() for rows in expected.values()) > 500

        # The org holds what the calm run put there: every record once, same values and
        # links, nothing missing, nothing extra.
        got = snapshot(org)
        assert_same_records(got, expected, org)

        # Everything was extracted, files included, with no issue the calm run lacks.
        assert stormy.extract.staged == sum(len(rows) for rows in tenant.records.values())
        assert stormy.extract.files_stored > 0
        assert await extract_issues(journal, stormy) == await extract_issues(journal, calm)

        # Every staged source record ends loaded, skipped or failed, with the reason.
        unaccounted = await journal.pool.fetch(
            """SELECT collection, source_id FROM staged_records WHERE run_id = $1
               EXCEPT SELECT collection, source_id FROM operations WHERE run_id = $1""",
            stormy.run.run_id,
        )
        assert unaccounted == []

        # No record failed because of a fault: the same records failed for the same
        # reasons as in the calm run, and the report's counts are the calm run's (a write
        # retried after its answer was lost is still reported created, not updated).
        assert failures(stormy) == failures(calm)
        assert tally(stormy) == tally(calm)
        for failure in stormy.report.failures:
            assert failure.reason_code not in INJECTED_CODES, failure
            assert failure.message

        # The platforms really did misbehave, in every way they were asked to.
        injected = {
            kind: getattr(source.stats, kind)
            for kind in ("faults_503", "faults_500", "faults_reset", "faults_slow",
                         "injected_429", "injected_429_no_retry_after", "unauthorized")
        }  # fmt: skip
        assert all(n > 0 for n in injected.values()), injected
        assert all(n > 0 for n in org.faults().values()), org.faults()

        # A rerun of the same plan, the platforms still misbehaving, writes nothing.
        again = await run_migrate(plan)
        assert again.report.created == 0
        assert sum(r.updated for r in again.report.rows) == 0
        assert failures(again) == failures(calm)
        assert snapshot(org) == got
