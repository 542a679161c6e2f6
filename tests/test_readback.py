"""After a clean run, what crmlift sent is what the destination holds: every field of
every record it wrote reads back the same, in each platform's own forms. This is what
reconcile's field sample, the sample run's diff and rollback's conflict check rely on:
a difference they report is real, never a formatting artefact."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from collections import Counter

import pytest

from journal import Journal, open_journal
from service.context import run_context
from service.expected import Expected, Rebuilder
from service.migrate import id_map_scope, run_migrate
from service.pairs import DestinationClient, pair_for
from service.plan import MigrationPlan
from service.readback import check, held, same
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import World, org_schema_edit, world  # noqa: F401


@pytest.mark.parametrize(
    ("sent", "held_value"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000+0000"),  # Salesforce datetime
        ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z"),  # Dataverse UTC
        ("2024-05-01", "2024-05-01"),
        (["a", "b"], "b;a"),  # Salesforce multi-select picklist
        ([100000001, 100000000], "100000000,100000001"),  # Dataverse multi-select choice
        (1250, 1250.0),
        ("1250.50", 1250.5),
        (None, ""),
        (True, True),
        ("001000000000001", "001000000000001AAA"),  # a Salesforce id, 15 and 18 characters
        ("0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E"),
    ],
)
def test_a_value_in_the_platforms_own_form_is_the_same_value(
    sent: object, held_value: object
) -> None:
    assert same(sent, held_value)


@pytest.mark.parametrize(
    ("sent", "held_value"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:01.000+0000"),
        ("Smith & Co", "Smith and Co"),
        ("Long text", "Long tex"),  # truncated
        (["a", "b"], "a"),  # a picklist value dropped
        (1250, 1250.01),
        (0, None),
        (False, None),
        ("x", None),
        ("001000000000001", "001000000000002AAA"),
    ],
)
def test_a_value_the_destination_holds_differently_is_a_difference(
    sent: object, held_value: object
) -> None:
    assert not same(sent, held_value)


async def _read_back_everything(plan: MigrationPlan, run_id: str) -> Counter[str]:
    """Rebuild every payload of the run and compare each with the destination: the
    differing fields, counted as ``object.field``; every record must be found."""
    assert plan.destination is not None
    pair = pair_for(plan.destination.platform)
    differences: Counter[str] = Counter()
    compared = 0
    async with (
        open_journal(plan.journal) as journal,
        pair.open_client(plan.destination.config, plan.destination.quota) as client,
    ):
        run = await journal.runs.get(run_id)
        built = await run_context(
            journal, run, pair, plan.destination, await client.users_by_email()
        )
        rebuilder = Rebuilder(
            journal, id_map_scope(plan, plan.destination), run, pair, built.mapping
        )
        for collection in pair.load_order:
            async for batch in rebuilder.collection(collection):
                compared += await _compare(client, [e for e in batch if isinstance(e, Expected)],
                                           differences)  # fmt: skip
    assert compared > 500
    return differences


async def _compare(client: DestinationClient, batch: list[Expected], diffs: Counter[str]) -> int:
    by_object: dict[str, list[Expected]] = {}
    for e in batch:
        if e.destination_id is not None and e.file is None:
            by_object.setdefault(e.object, []).append(e)
    for sobject, records in by_object.items():
        fields = sorted({f for e in records for f in e.fields})
        values = await held(client, sobject, [e.destination_id or "" for e in records], fields)
        for e in records:
            assert e.destination_id in values, f"{sobject} {e.external_id} is not in the org"
            diffs.update(
                f"{sobject}.{c.field}"
                for c in check(e, values[e.destination_id or ""])
                if not c.equal
            )
    return sum(map(len, by_object.values()))


async def test_every_field_salesforce_was_sent_reads_back_the_same(
    world: World, journal: Journal
) -> None:
    run_id = (await run_migrate(world.plan)).run.run_id
    assert await _read_back_everything(world.plan, run_id) == Counter()


async def test_every_field_dataverse_was_sent_reads_back_the_same(
    dv_world: DvWorld, journal: Journal
) -> None:
    run_id = (await run_migrate(dv_world.plan)).run.run_id
    assert await _read_back_everything(dv_world.plan, run_id) == Counter()
