"""What the audit and the mapping proposal read of a destination field: its kind, its
length and its picklist values, from each platform's own metadata."""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

from adapters.dynamics.client import DataverseClient, DataverseConfig
from adapters.salesforce.client import SalesforceClient
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import org, org_schema_edit, world  # noqa: F401


async def test_salesforce_describe_gives_kinds_lengths_and_picklist_values(
    org: SalesforceClient,
) -> None:
    """DescribeFieldResult type, length, picklistValues, restrictedPicklist
    (developer.salesforce.com/docs/atlas.en-us.api.meta/api/
    sforce_api_calls_describesobjects_describesobjectresult.htm)."""
    info = await org.describe("Account")
    assert info is not None
    assert info.columns["Name"].kind == "text"
    assert info.columns["Name"].length == 255
    assert info.columns["ParentId"].kind == "lookup"
    assert info.columns["AnnualRevenue"].kind == "currency"
    industry = info.columns["Industry"]
    assert industry.kind == "picklist"
    assert "Legal" in industry.choices or len(industry.choices) > 5
    task = await org.describe("Task")
    assert task is not None
    status = task.columns["Status"]
    assert status.kind == "picklist"
    assert "Completed" in status.choices


async def test_dataverse_metadata_gives_kinds_lengths_and_option_values(
    dv_world: DvWorld,
) -> None:
    """AttributeType, and MaxLength / OptionSet through the typed casts
    (learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api)."""
    destination = dv_world.plan.destination
    assert destination is not None
    assert isinstance(destination.config, DataverseConfig)
    async with DataverseClient(destination.config, destination.quota) as dv_org:
        await _dataverse_columns(dv_org)


async def _dataverse_columns(dv_org: DataverseClient) -> None:
    info = await dv_org.describe("account")
    assert info is not None
    assert info.columns["name"].kind == "text"
    assert info.columns["name"].length is not None
    assert info.columns["name"].length > 0
    assert info.columns["parentaccountid"].kind == "lookup"
    status = info.columns["statuscode"]
    assert status.kind == "picklist"
    assert status.restricted
    assert "1" in status.choices
    assert len(status.labels) == len(status.choices)
    contact = await dv_org.describe("contact")
    assert contact is not None
    assert contact.columns["parentcustomerid.account"].kind == "lookup"
