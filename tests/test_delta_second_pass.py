"""A parent account set by hand in Salesforce survives a delta that re-parents the company
at the source under a company created in the same cycle: that link is written in the
load's second pass (its target is new), and the second pass merges like the first."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from adapters.salesforce.client import SalesforceClient
from journal import Journal
from service.delta import run_delta
from service.migrate import run_migrate
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    NoJobs,
    World,
    by_ext,
    org,
    org_schema_edit,
    world,
)


async def test_a_hand_set_parent_stands_when_the_source_reparents_under_a_new_company(
    world: World, org: SalesforceClient, journal: Journal
) -> None:
    await run_migrate(world.plan)
    accounts = by_ext(world.salesforce.records("Account"))
    child = next(
        c for c in world.tenant.records["companies"]
        if c.get("parent_company_id") in accounts and c["id"] in accounts
    )  # fmt: skip
    chosen = next(
        a for ext, a in accounts.items()
        if ext.startswith("co_") and a["Id"] != accounts[child["id"]].get("ParentId")
        and ext != child["id"]
    )  # fmt: skip
    [edited] = await org.upsert(
        "Account", [{"Source_System_ID__c": child["id"], "ParentId": chosen["Id"]}], NoJobs()
    )
    assert edited.ok
    new_parent = world.backdocket.create("companies")
    assert new_parent is not None
    world.backdocket.edit("companies", child["id"], parent_company_id=new_parent["id"])

    outcome = await run_delta(world.plan)

    after = by_ext(world.salesforce.records("Account"))
    assert new_parent["id"] in after
    assert after[child["id"]]["ParentId"] == chosen["Id"]  # kept, never clobbered
    fields = {(c.source_id, c.field) for c in outcome.report.true_conflicts}
    assert (child["id"], "ParentId") in fields
