"""An operator's plan names a sandbox for the sample: the sample loads there and nowhere
else, and reconcile reads the sandbox back — for the records the sample selected, not
the whole tenant."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from journal import Journal
from service.mapping.backdocket_salesforce import schema_plan
from service.migrate import run_migrate
from service.plan import MigrationPlan
from service.reconcile import run_reconcile
from tests.test_migrate_salesforce import ADMIN, World, org_schema_edit, world  # noqa: F401

LOADED = ("Account", "Contact", "Case_Matter__c", "Task")


@pytest.fixture
async def sandbox(world: World) -> AsyncIterator[tuple[SalesforceSim, MigrationPlan]]:
    """A second org with the same schema and users: the firm's full-copy sandbox."""
    definitions = world.tenant.records["custom_field_definitions"]
    users = tuple((u["Name"], u["Email"]) for u in world.salesforce.records("User"))
    sim = SalesforceSim(
        schema_plan(definitions),
        SfSimSettings(users=users or (("Firm Admin", ADMIN),), bulk_records_per_second=200_000),
    )
    runner, url = await serve_salesforce(sim)
    production = world.plan.destination
    assert production is not None
    sample_to = replace(production, config=replace(production.config, login_url=url))
    try:
        yield sim, replace(world.plan, sample_destination=sample_to)
    finally:
        await runner.cleanup()


async def test_a_sample_loads_into_the_sandbox_and_reconciles_there(
    world: World, sandbox: tuple[SalesforceSim, MigrationPlan], journal: Journal
) -> None:
    sim, plan = sandbox
    before = {name: len(world.salesforce.records(name)) for name in LOADED}

    sample = await run_migrate(plan, sample=60)

    assert {name: len(world.salesforce.records(name)) for name in LOADED} == before
    assert sum(len(sim.records(name)) for name in LOADED) >= 30
    checked = await run_reconcile(plan, sample.run.run_id)
    assert checked.report.go, checked.report.reasons
    assert checked.report.of_kind("missing") == []
    found = sum(row.found for row in checked.report.counts.values())
    assert found >= sum(len(sim.records(name)) for name in LOADED)
