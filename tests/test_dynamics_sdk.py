"""Microsoft's own Dataverse SDK drives the simulator over HTTPS, as it would a real org.

``powerplatform-dataverse-client`` authenticates through ``azure-identity``'s
``ClientSecretCredential`` (MSAL underneath) with the authority pointed at the simulator:
MSAL reads the tenant's OpenID configuration document, then asks its token endpoint for
``<environment URL>/.default``. The SDK then sends what it sends to a real environment:
metadata look-ups before writes, ``PATCH`` by alternate key, multipart ``$batch``,
``Prefer: odata.maxpagesize`` and ``@odata.nextLink``, ``$orderby``, ``$count``.
Everything stays on loopback: the test CA is trustme's, instance discovery (a call to
login.microsoftonline.com) is switched off as the credential's docs describe for
private authorities.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models import UpsertItem

from adapters.dynamics.sim import DataverseSim, DataverseSimSettings, serve

T = TypeVar("T")
SDK_SECONDS = 60
"""Bound on one SDK session, so a hung socket fails the test instead of the CI job."""
OPTIONS = [{"value": 100_000_000 + i, "label": text} for i, text in enumerate(("Open", "Closed"))]
SCHEMA: dict[str, Any] = {
    "publisher_prefix": "crm",
    "tables": {
        "account": {
            "custom": False,
            "columns": {"crm_sourceid": {"type": "string", "max_length": 100}},
            "alternate_keys": ["crm_sourceid"],
        },
        "crm_matter": {
            "custom": True,
            "ownership": "user",
            "columns": {
                "crm_sourceid": {"type": "string", "max_length": 100},
                "crm_name": {"type": "string", "max_length": 200, "primary_name": True},
                "crm_client": {"type": "lookup", "target": "account"},
                "crm_status": {"type": "picklist", "option_set": "status", "options": OPTIONS},
            },
            "alternate_keys": ["crm_sourceid"],
        },
    },
    "decomposed": {},
    "unmapped_custom_fields": [],
    "custom_table_count": 1,
}
"""A schema plan in the shape ``backdocket_dynamics.schema_plan()`` returns."""


class SdkFailure(Exception):
    """What the SDK raised, as plain values: status and Dataverse error code if HTTP."""

    def __init__(self, kind: str, message: str, status: int | None, code: str | None) -> None:
        super().__init__(f"{kind}: {message}")
        self.status = status
        self.code = code

    @classmethod
    def of(cls, error: Exception) -> SdkFailure:
        if isinstance(error, HttpError):
            code = error.details.get("service_error_code")
            return cls("HttpError", error.message, error.status_code, code)
        return cls(type(error).__name__, str(error), None, None)


@dataclass
class Org:
    """A simulated environment served over HTTPS, and how the SDK reaches it."""

    sim: DataverseSim
    url: str
    ca_file: Path

    def credential(self, **changes: str) -> ClientSecretCredential:
        settings = self.sim.settings
        given = {
            "tenant_id": settings.tenant_id,
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            **changes,
        }
        return ClientSecretCredential(
            given["tenant_id"],
            given["client_id"],
            given["client_secret"],
            authority=self.url,
            disable_instance_discovery=True,
            connection_verify=str(self.ca_file),
        )

    @contextmanager
    def client(self) -> Iterator[DataverseClient]:
        # Both hold a pooled connection; closing them lets the server stop at once.
        with self.credential() as credential, DataverseClient(self.url, credential) as client:
            yield client

    async def token(self, scope: str, **changes: str) -> str:
        def get() -> str:
            with self.credential(**changes) as credential:
                return credential.get_token(scope).token

        return await asyncio.wait_for(asyncio.to_thread(get), SDK_SECONDS)

    async def drive(self, steps: Callable[[DataverseClient], T]) -> T:
        """Run blocking SDK calls in a thread while the simulator serves on the loop.

        A failure comes back as a fresh :class:`SdkFailure`: the SDK's own exception
        carries frames that keep its TLS connection alive past the test.
        """

        def run() -> T | SdkFailure:
            with self.client() as client:
                try:
                    return steps(client)
                except Exception as error:  # re-raised below, as data
                    return SdkFailure.of(error)

        outcome = await asyncio.wait_for(asyncio.to_thread(run), SDK_SECONDS)
        if isinstance(outcome, SdkFailure):
            raise outcome
        return outcome

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return self.sim.records(entity_set)


@pytest.fixture
async def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Org]:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    # The SDK builds its own requests.Session, which trusts REQUESTS_CA_BUNDLE (requests'
    # documented setting); loopback must never go through a proxy the CI may set.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    sim = DataverseSim(SCHEMA, DataverseSimSettings())
    runner, url = await serve(sim, ssl_context=server_context)
    try:
        yield Org(sim, url, ca_file)
    finally:
        await runner.cleanup()


def _seed_accounts(sim: DataverseSim, count: int) -> None:
    """Rows written in process: the point here is reading them back, not writing them."""
    for index in range(count):
        body = f'{{"name": "Firm {index:02d}", "crm_sourceid": "bd-{index}"}}'.encode()
        assert sim.execute("POST", "accounts", body).status == 204


# -- authentication: OpenID discovery, client credentials, HTTPS


async def test_sdk_authenticates_with_client_secret_and_creates_over_https(org: Org) -> None:
    assert org.url.startswith("https://127.0.0.1:")

    created = await org.drive(lambda c: c.records.create("account", {"name": "Okoro & Li LLP"}))

    [row] = org.rows("accounts")
    assert row["accountid"] == created
    assert row["name"] == "Okoro & Li LLP"
    assert org.sim.stats.tokens_issued == 1


async def test_an_unknown_tenant_fails_openid_discovery(org: Org) -> None:
    with pytest.raises(ClientAuthenticationError, match="authority configuration"):
        await org.token(f"{org.url}/.default", tenant_id="00000000-0000-0000-0000-000000000000")
    assert org.sim.stats.tokens_issued == 0


async def test_a_wrong_secret_is_refused_by_the_token_endpoint(org: Org) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        await org.token(f"{org.url}/.default", client_secret="not-the-secret")


async def test_a_token_for_another_environment_is_refused(org: Org) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS1002012"):
        await org.token("https://other.crm.dynamics.com/.default")


# -- writes: create with choice labels, upsert by alternate key


async def test_sdk_resolves_choice_labels_from_picklist_metadata(org: Org) -> None:
    """The SDK reads ``PicklistAttributeMetadata`` with ``$expand=OptionSet`` to turn a
    label into its value before it writes."""
    await org.drive(
        lambda c: c.records.create(
            "crm_matter", {"crm_name": "Okoro v. Acme", "crm_status": "Closed"}
        )
    )

    [matter] = org.rows("crm_matters")
    assert matter["crm_status"] == 100_000_001


async def test_sdk_upserts_by_alternate_key_without_duplicating(org: Org) -> None:
    def upsert_twice(client: DataverseClient) -> None:
        for name in ("Okoro LLP", "Okoro & Li LLP"):
            item = UpsertItem(alternate_key={"crm_sourceid": "bd-17"}, record={"name": name})
            client.records.upsert("account", [item])

    await org.drive(upsert_twice)

    [row] = org.rows("accounts")
    assert (row["crm_sourceid"], row["name"]) == ("bd-17", "Okoro & Li LLP")
    assert row["@odata.etag"] == 'W/"2"'


# -- bulk operation messages (power-apps/developer/data-platform/bulk-operations)


async def test_sdk_creates_a_list_of_rows_with_create_multiple(org: Org) -> None:
    names = ["Okoro & Li LLP", "Acme Holdings", "Brandt Law"]

    ids = await org.drive(lambda c: c.records.create("account", [{"name": name} for name in names]))

    rows = org.rows("accounts")
    assert [row["name"] for row in rows] == names
    assert ids == [row["accountid"] for row in rows]


async def test_sdk_upserts_several_items_with_upsert_multiple_by_alternate_key(org: Org) -> None:
    def upsert(client: DataverseClient) -> None:
        client.records.upsert(
            "account",
            [UpsertItem(alternate_key={"crm_sourceid": "bd-1"}, record={"name": "Okoro"})],
        )
        client.records.upsert(
            "account",
            [
                UpsertItem(alternate_key={"crm_sourceid": "bd-1"}, record={"name": "Okoro & Li"}),
                UpsertItem(alternate_key={"crm_sourceid": "bd-2"}, record={"name": "Acme"}),
            ],
        )

    await org.drive(upsert)

    rows = {row["crm_sourceid"]: row for row in org.rows("accounts")}
    assert {key: row["name"] for key, row in rows.items()} == {"bd-1": "Okoro & Li", "bd-2": "Acme"}
    assert rows["bd-1"]["@odata.etag"] == 'W/"2"'


async def test_one_bad_target_rolls_back_the_whole_upsert_multiple(org: Org) -> None:
    """On a standard table "any error ... causes the entire operation to roll back"."""

    def upsert(client: DataverseClient) -> None:
        client.records.upsert(
            "account",
            [
                UpsertItem(alternate_key={"crm_sourceid": "bd-1"}, record={"name": "Okoro"}),
                UpsertItem(alternate_key={"crm_sourceid": "bd-2"}, record={"name": "x" * 161}),
            ],
        )

    with pytest.raises(SdkFailure) as raised:
        await org.drive(upsert)
    assert (raised.value.status, raised.value.code) == (400, "0x80044331")
    assert org.rows("accounts") == []


async def test_notes_take_no_create_multiple(org: Org) -> None:
    """The Note table's messages include no CreateMultiple
    (learn.microsoft.com/power-apps/developer/data-platform/reference/entities/annotation)."""
    notes = [{"subject": "Intake call"}, {"subject": "Demand letter"}]

    with pytest.raises(SdkFailure) as raised:
        await org.drive(lambda c: c.records.create("annotation", notes))
    assert raised.value.status == 400
    assert org.rows("annotations") == []


# -- $batch through the SDK's batch API


async def test_sdk_batch_changeset_binds_a_lookup_to_a_row_created_in_it(org: Org) -> None:
    """The bind names the navigation property as metadata spells it: the SDK keeps its case
    because Dataverse matches it case-sensitively."""

    def batch(client: DataverseClient) -> Any:
        relationships = client.tables.list_table_relationships("crm_matter")
        [nav] = [
            r["ReferencingEntityNavigationPropertyName"]
            for r in relationships
            if r.get("ReferencingAttribute") == "crm_client"
        ]
        request = client.batch.new()
        with request.changeset() as changeset:
            firm = changeset.records.create("account", {"name": "Okoro & Li LLP"})
            changeset.records.create(
                "crm_matter", {"crm_name": "Okoro v. Acme", f"{nav}@odata.bind": firm}
            )
        return request.execute()

    result = await org.drive(batch)

    assert [item.status_code for item in result.responses] == [204, 204]
    [firm] = org.rows("accounts")
    [matter] = org.rows("crm_matters")
    assert [item.entity_id for item in result.responses] == [
        firm["accountid"],
        matter["crm_matterid"],
    ]
    assert matter["_crm_client_value"] == firm["accountid"]


async def test_sdk_batch_failure_rolls_back_its_changeset(org: Org) -> None:
    def batch(client: DataverseClient) -> Any:
        request = client.batch.new()
        with request.changeset() as changeset:
            changeset.records.create("account", {"name": "Okoro & Li LLP"})
            changeset.records.create("account", {"name": "x" * 161})  # name is 160 long
        return request.execute(continue_on_error=True)

    result = await org.drive(batch)

    assert [item.status_code for item in result.responses] == [400]
    assert org.rows("accounts") == []


# -- reads: paging, ordering, counting


async def test_sdk_follows_next_links_across_pages(org: Org) -> None:
    _seed_accounts(org.sim, 7)

    def read(client: DataverseClient) -> tuple[list[str], list[int]]:
        names = [r["name"] for r in client.records.list("account", select=["name"], page_size=3)]
        sizes = [len(page) for page in client.records.list_pages("account", page_size=3)]
        return names, sizes

    names, sizes = await org.drive(read)

    assert names == [f"Firm {i:02d}" for i in range(7)]
    assert sizes == [3, 3, 1]


async def test_sdk_orders_and_counts_as_the_web_api_does(org: Org) -> None:
    """``orderby`` and ``count`` are SDK arguments; the simulator sorts and counts rather
    than answer them unsorted and uncounted."""
    _seed_accounts(org.sim, 7)

    def read(client: DataverseClient) -> tuple[list[str], list[str]]:
        newest = client.records.list("account", select=["name"], orderby=["name desc"], top=3)
        paged = client.records.list(
            "account", select=["name"], orderby=["name desc"], page_size=2, count=True
        )
        return [r["name"] for r in newest], [r["name"] for r in paged]

    newest, paged = await org.drive(read)

    assert newest == ["Firm 06", "Firm 05", "Firm 04"]
    assert paged == [f"Firm {i:02d}" for i in reversed(range(7))]


# -- metadata


async def test_sdk_reads_table_column_and_key_metadata(org: Org) -> None:
    def read(client: DataverseClient) -> dict[str, Any]:
        return {
            "table": client.tables.get("crm_matter"),
            "columns": client.tables.list_columns("crm_matter", select=["LogicalName"]),
            "column": client.tables.get_column("crm_matter", "crm_name"),
            "keys": client.tables.get_alternate_keys("crm_matter"),
            "tables": client.tables.list(select=["LogicalName"]),
            "relationships": client.tables.list_table_relationships("crm_matter"),
        }

    found = await org.drive(read)

    table = found["table"]
    assert (table.entity_set_name, table.primary_id_attribute) == ("crm_matters", "crm_matterid")
    assert table.primary_name_attribute == "crm_name"
    names = {column["LogicalName"] for column in found["columns"]}
    assert {"crm_matterid", "crm_name", "crm_sourceid", "crm_client", "crm_status"} <= names
    assert found["column"]["MaxLength"] == 200
    [key] = found["keys"]
    assert key.key_attributes == ["crm_sourceid"]
    assert {"account", "crm_matter"} <= {t["LogicalName"] for t in found["tables"]}
    lookups = {r["ReferencingAttribute"]: r["ReferencedEntity"] for r in found["relationships"]}
    assert lookups["crm_client"] == "account"


async def test_sdk_sees_a_refused_query_option_as_an_http_error(org: Org) -> None:
    """``expand`` is real Dataverse the simulator does not join: it refuses, loudly."""
    _seed_accounts(org.sim, 1)

    with pytest.raises(SdkFailure, match=r"\$expand is not supported") as raised:
        await org.drive(lambda c: c.records.list("account", expand=["primarycontactid"]))
    assert (raised.value.status, raised.value.code) == (400, "0x80060888")
