"""An operator runs a sample of the dirty tenant first, reads its field-level diff, approves
it, and only then may the full run start.

Everything is real but the platforms, which are our simulators on loopback (the world
fixtures of the migrate tests): the journal is PostgreSQL, every call is HTTP. The
expected fields come from the transforms themselves, never from a list in this file.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.errors import ConfigError
from journal import Journal, JournalSettings
from journal.approvals import Samples
from service.approval import approve, mapping_fingerprint
from service.context import RunContext, run_context
from service.mapping.base import MappingContext, Payload, Rejection
from service.mapping.provenance import sources
from service.migrate import run_migrate
from service.pairs import PAIRS, pair_for
from service.plan import MigrationPlan, parse_plan, salesforce_config
from service.sample import seeded_hash
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    ADMIN,
    NoJobs,
    World,
    crmlift,
    org,
    org_schema_edit,
    plan_toml,
    world,
)

SAMPLE = 80
LOADED = ("created", "updated", "unchanged")


# -- what the operator can check from the journal and the reports ---------------------------


async def selection(journal: Journal, run_id: str) -> dict[str, dict[str, str]]:
    chosen = await Samples(journal.pool).selection(run_id)
    assert chosen is not None, "a sample run journals its selection"
    return chosen


async def context_of(journal: Journal, plan: MigrationPlan, run_id: str) -> RunContext:
    """The mapping context the run's transforms were given, rebuilt as the load builds it."""
    assert plan.destination is not None
    pair = pair_for(plan.destination.platform)
    async with pair.open_client(plan.destination.config, plan.destination.quota) as client:
        users = await client.users_by_email()
    return await run_context(journal, await journal.runs.get(run_id), pair, plan.destination, users)


async def staged_record(journal: Journal, run_id: str, collection: str, source_id: str) -> Any:
    raw = await journal.pool.fetchval(
        """SELECT payload::text FROM staged_records
           WHERE run_id = $1 AND collection = $2 AND source_id = $3""",
        run_id,
        collection,
        source_id,
    )
    return None if raw is None else orjson.loads(raw)


def diff_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as found:
        return list(csv.DictReader(found))


def emitted(payload: Payload) -> set[str]:
    """Every field a payload writes: its values and its lookups (second-pass ones too)."""
    return {*payload.fields, *payload.refs, *payload.deferred_refs}


async def assert_sample_story(journal: Journal, plan: MigrationPlan, run_id: str) -> None:
    """The sample spans every collection, carries its parents, loads only itself, and its
    diff lists every field the transforms emit for every record it wrote."""
    assert plan.destination is not None
    pair = pair_for(plan.destination.platform)
    chosen = await selection(journal, run_id)
    picked = {(c, s) for c, ids in chosen.items() for s in ids}
    staged = await journal.staging.counts(run_id)

    # About N records, spanning every collection the pair loads.
    assert SAMPLE * 0.75 <= len(picked) <= SAMPLE * 1.5, len(picked)
    assert {c for c in pair.load_order if staged.get(c)} <= set(chosen)
    reasons = {r for ids in chosen.values() for r in ids.values()}
    assert any(r.startswith("dirty case") for r in reasons), reasons
    assert any(r.startswith("parent of") for r in reasons), reasons

    # Every parent a selected record points at is selected, when the source has it.
    built = await context_of(journal, plan, run_id)
    extra = {(c, p.external_id) for c, p in pair.first_payloads(built.fallback)}
    transformed: dict[tuple[str, str], list[Payload]] = {}
    for collection, source_id in sorted(picked):
        record = await staged_record(journal, run_id, collection, source_id)
        result = pair.transform(collection, record, built.mapping)
        if isinstance(result, Rejection):
            continue
        transformed[(collection, source_id)] = result
        for p in result:
            for ref in (*p.refs.values(), *p.deferred_refs.values()):
                target = (ref.collection, ref.source_id)
                there = await staged_record(journal, run_id, *target)
                assert target in picked or target in extra or there is None, (collection, ref)

    # The load wrote the sample and nothing else; no record failed for a parent left out.
    ops = await journal.pool.fetch(
        "SELECT collection, source_id, object, external_id, action, reason_code, message "
        "FROM operations WHERE run_id = $1",
        run_id,
    )
    assert {(o["collection"], o["source_id"]) for o in ops} - extra <= picked
    failed = {(o["collection"], o["source_id"]) for o in ops if o["action"] == "failed"}
    for o in ops:
        if o["reason_code"] != "parent_missing":
            continue
        named = re.search(r"points at (\w+)/(\S+), which", o["message"])
        assert named is not None, o["message"]
        parent = (named.group(1), named.group(2).rstrip(","))
        gone = await staged_record(journal, run_id, *parent) is None
        assert gone or parent in failed, f"{o['source_id']} failed for unsampled {parent}"

    # The diff names every field of every written record, with its status.
    rows = diff_rows(plan.output_dir / run_id / "diff.csv")
    in_diff = {(r["object"], r["external_id"], r["field"]) for r in rows}
    written = [
        o for o in ops if o["action"] in LOADED and (o["collection"], o["source_id"]) in picked
    ]
    assert written
    for o in written:
        [payload] = [
            p for p in transformed[(o["collection"], o["source_id"])]
            if (p.object, p.external_id) == (o["object"], o["external_id"])
        ]  # fmt: skip
        missing = {(o["object"], o["external_id"], f) for f in emitted(payload)} - in_diff
        assert not missing, missing
    statuses = {r["status"] for r in rows}
    assert "same" in statuses
    assert statuses <= {"same", "differs", "not linked", "not sent", "failed", "unreadable"}
    # A dropped value says why, and a record that did not load carries its reason.
    for r in rows:
        if r["status"] in ("not sent", "failed"):
            assert r["notes"], r
    page = (plan.output_dir / run_id / "diff.html").read_text(encoding="utf-8")
    assert "<style>" in page
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page), "self-contained"


# -- the stories -----------------------------------------------------------------------------


async def test_a_salesforce_sample_loads_about_n_records_with_their_parents_and_diffs_every_field(
    world: World, journal: Journal
) -> None:
    outcome = await run_migrate(world.plan, sample=SAMPLE)
    run = await journal.runs.get(outcome.run.run_id)

    assert run.status == "completed"
    assert run.settings["sample"]["records"] == SAMPLE
    assert {p.name for p in outcome.reports} >= {"diff.csv", "diff.html", "summary.json"}
    await assert_sample_story(journal, world.plan, run.run_id)
    # The dirty tenant's usual suspects are in the slice: rejected, noted, orphaned owners.
    reasons = " ".join(r for ids in (await selection(journal, run.run_id)).values()
                       for r in ids.values())  # fmt: skip
    assert "rejected" in reasons
    assert "owner fell back" in reasons
    assert "share email" in reasons


async def test_a_dataverse_sample_loads_about_n_records_with_their_parents_and_diffs_every_field(
    dv_world: DvWorld, journal: Journal
) -> None:
    outcome = await run_migrate(dv_world.plan, sample=SAMPLE)

    await assert_sample_story(journal, dv_world.plan, outcome.run.run_id)


async def test_the_same_sample_run_always_selects_the_same_records(
    world: World, journal: Journal
) -> None:
    first = await run_migrate(world.plan, sample=SAMPLE)
    chosen = await selection(journal, first.run.run_id)
    await journal.pool.execute("DELETE FROM sample_records WHERE run_id = $1", first.run.run_id)

    again = await run_migrate(world.plan, resume=first.run.run_id)

    assert again.run.run_id == first.run.run_id
    assert await selection(journal, first.run.run_id) == chosen
    # The order is the run's own: another run orders the records differently.
    ids = sorted(s for picks in chosen.values() for s in picks)
    assert sorted(ids, key=lambda s: seeded_hash(first.run.run_id, "tasks", s)) != sorted(
        ids, key=lambda s: seeded_hash("another-run", "tasks", s)
    )


async def test_a_value_the_org_holds_differently_shows_as_a_difference(
    world: World, journal: Journal, org: Any
) -> None:
    outcome = await run_migrate(world.plan, sample=SAMPLE)
    run_id = outcome.run.run_id
    account = next(
        r for r in diff_rows(world.plan.output_dir / run_id / "diff.csv")
        if r["object"] == "Account" and r["field"] == "Name" and r["status"] == "same"
    )  # fmt: skip
    # Someone in the sandbox renames the account by hand (the org keeps its own value).
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": account["external_id"], "Name": "Renamed <b>"}],
        NoJobs(),
    )  # fmt: skip
    assert edited.ok

    await run_migrate(world.plan, resume=run_id)  # the sample read back again

    rows = diff_rows(world.plan.output_dir / run_id / "diff.csv")
    [name] = [r for r in rows if r["external_id"] == account["external_id"]
              and r["object"] == "Account" and r["field"] == "Name"]  # fmt: skip
    assert (name["status"], name["sent"], name["held"]) == (
        "differs",
        account["sent"],
        "Renamed <b>",
    )
    assert name["source_value"] == account["source_value"]
    page = (world.plan.output_dir / run_id / "diff.html").read_text(encoding="utf-8")
    assert "Renamed &lt;b&gt;" in page
    assert "Renamed <b>" not in page
    # Differences come first in their object's table.
    body = page.split("<h2>Account", 1)[1].split("</table>", 1)[0]
    assert body.index("class='differs'") < body.index("class='same'")


async def test_a_full_run_waits_for_an_approved_sample_of_the_same_mapping(
    world: World, journal: Journal
) -> None:
    gated = replace(world.plan, require_approved_sample=True)
    with pytest.raises(ConfigError, match=r"requires an approved sample .* --sample"):
        await run_migrate(gated)
    assert await journal.pool.fetchval("SELECT count(*) FROM runs") == 0

    sample = await run_migrate(gated, sample=SAMPLE)  # a sample is never gated
    approval = await approve(gated, sample.run.run_id, "dana")
    assert approval.approved_by == "dana"
    built = await context_of(journal, gated, sample.run.run_id)
    assert gated.destination is not None
    assert approval.mapping_fingerprint == mapping_fingerprint(
        pair_for("salesforce"), gated.destination.mapping, built.definitions
    )

    full = await run_migrate(gated)
    assert full.run.status == "running"  # as it started; it completed below
    assert (await journal.runs.get(full.run.run_id)).status == "completed"

    # A [mapping] change is another mapping: the approval no longer covers it.
    assert gated.destination is not None
    changed = replace(
        gated,
        destination=replace(gated.destination, mapping={"max_file_bytes": 10 * 1024 * 1024}),
    )
    with pytest.raises(ConfigError, match="none was approved for its current mapping"):
        await run_migrate(changed)
    with pytest.raises(ConfigError, match="the mapping changed since sample run"):
        await approve(changed, sample.run.run_id, "dana")
    # Resuming a full run that already started is not blocked, approval or not.
    await journal.pool.execute("DELETE FROM sample_approvals")
    with pytest.raises(ConfigError, match="none was approved"):
        await run_migrate(gated)
    await run_migrate(gated, resume=full.run.run_id)


async def test_only_a_completed_sample_of_this_plan_can_be_approved(
    world: World, journal: Journal
) -> None:
    full = await run_migrate(world.plan)
    with pytest.raises(ConfigError, match="is not a sample of migration"):
        await approve(world.plan, full.run.run_id, "dana")
    with pytest.raises(ConfigError, match="no run 'r-nonesuch'"):
        await approve(world.plan, "r-nonesuch", "dana")
    sample = await run_migrate(world.plan, sample=SAMPLE)
    await journal.runs.set_status(sample.run.run_id, "interrupted", "stopped")
    with pytest.raises(ConfigError, match="interrupted, not completed"):
        await approve(world.plan, sample.run.run_id, "dana")
    assert await journal.pool.fetchval("SELECT count(*) FROM sample_approvals") == 0


async def test_a_sample_loads_into_the_sandbox_the_plan_names(
    world: World, journal: Journal
) -> None:
    """``[sample_destination]`` is read as ``[destination]`` is; the id map is per org."""
    raw = orjson.loads(orjson.dumps(world.plan.raw))
    sandbox = {**raw["destination"], "bulk_threshold": 10_000}
    raw["sample_destination"] = sandbox
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": str(world.plan.journal.dsn),
           "CRMLIFT_DATA_DIR": str(world.plan.journal.data_dir)}  # fmt: skip
    plan = parse_plan(raw, env=env, base=world.plan.output_dir.parent)
    assert plan.sample_destination is not None
    assert salesforce_config(plan.sample_destination.config).bulk_threshold == 10_000

    raw["sample_destination"] = {**sandbox, "platform": "dynamics"}
    with pytest.raises(ConfigError, match="sample_destination"):
        parse_plan(raw, env=env, base=world.plan.output_dir.parent)
    raw["sample_destination"] = {**sandbox, "bulk_treshold": 1}
    with pytest.raises(ConfigError, match=r"did you mean sample_destination\.bulk_threshold"):
        parse_plan(raw, env=env, base=world.plan.output_dir.parent)

    outcome = await run_migrate(plan, sample=SAMPLE)
    run = await journal.runs.get(outcome.run.run_id)
    assert run.settings["sample"]["destination"].startswith("salesforce http")


# -- the provenance table keeps up with the mappings -----------------------------------------


def contexts(tenant: Tenant) -> Iterator[tuple[str, MappingContext]]:
    """Every pair, with every setting that makes its transforms emit other fields."""
    custom: dict[str, list[dict[str, Any]]] = {}
    for d in tenant.records["custom_field_definitions"]:
        custom.setdefault(str(d.get("entity")), []).append(d)
    owners = {str(u["id"]): "005000000000001AAA" for u in tenant.records["users"][::2]}
    base = MappingContext(owners, "005000000000000AAA", {k: tuple(v) for k, v in custom.items()})
    yield "salesforce", base
    yield "salesforce", replace(base, settings={"state_country_picklists": True})
    matters = tenant.records["matters"]
    customers = pair_for("dynamics").context_settings({"matters": matters})
    yield "dynamics", replace(base, settings={"publisher_prefix": "crm", **customers})
    yield "dynamics", replace(base, settings={
        "publisher_prefix": "acme", "sharepoint_site": "https://acme.sharepoint.com/sites/crm",
        "sharepoint_documents": "all", **customers,
    })  # fmt: skip


def test_every_field_the_transforms_emit_for_the_dirty_tenant_has_a_provenance() -> None:
    tenant = generate_tenant(1200, seed=31, dirty=True)
    seen: set[tuple[str, str, str]] = set()
    missing: set[tuple[str, str, str, str]] = set()
    for destination, ctx in contexts(tenant):
        pair = PAIRS[destination]
        for collection in pair.load_order:
            for record in tenant.records.get(collection, []):
                result = pair.transform(collection, record, ctx)
                if isinstance(result, Rejection):
                    continue
                for p in result:
                    for name in emitted(p):
                        seen.add((destination, p.object, name))
                        if sources(destination, collection, p.object, name, ctx) is None:
                            missing.add((destination, collection, p.object, name))
    assert not missing, sorted(missing)
    assert any(name.startswith("Field_") or name.endswith("__c") for _, _, name in seen)
    assert len(seen) > 150  # both pairs, custom fields included


# -- the commands ----------------------------------------------------------------------------


async def test_crmlift_migrate_sample_then_approve_then_the_full_run(
    world: World, journal: Journal, journal_settings: JournalSettings, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(world, "require_approved_sample = true"), encoding="utf-8")
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
           "CRMLIFT_DATA_DIR": str(journal_settings.data_dir), "USER": "dana"}  # fmt: skip

    code, _, err = await crmlift(env, "migrate", "--plan", str(plan), "--no-progress")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "--sample 200" in err

    code, out, err = await crmlift(
        env, "migrate", "--plan", str(plan), "--no-progress", "--sample", "40"
    )
    assert code == 0, err
    [run_id] = [r["run_id"] for r in await journal.pool.fetch("SELECT run_id FROM runs")]
    assert str(world.plan.output_dir / run_id / "diff.html") in out.replace("\n", "")

    code, _, err = await crmlift(env, "approve", "--plan", str(plan), "--run", "r-nonesuch")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    code, out, err = await crmlift(env, "approve", "--plan", str(plan), "--run", run_id)
    assert code == 0, err
    assert f"sample run {run_id} approved by dana" in out

    code, _, err = await crmlift(env, "migrate", "--plan", str(plan), "--no-progress")
    assert code == 0, err
