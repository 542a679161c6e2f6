"""An operator reconciles a migration before saying go: the destination is read back and
compared with the source as staged and the journal, for Salesforce and for Dataverse.

Hand edits go through crmlift's own clients against the simulators, as a person's edits
reach the org through its API. The platform facts read back (ContentVersion.Checksum and
ContentSize, annotation filesize) are the simulators', cited there.
"""

# ruff: noqa: F811  (the world fixtures are imported, and tests take them by name)
from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from adapters.base import FileUpload
from journal import Journal, JournalSettings
from service.migrate import run_migrate
from service.pairs import DestinationClient, pair_for
from service.plan import MigrationPlan
from service.reconcile import NO_GO_EXIT, ReconcileOptions, run_reconcile
from service.reports.reconcile import ReconcileReport
from tests.test_migrate_dynamics import World as DvWorld
from tests.test_migrate_dynamics import sim_settings  # noqa: F401  (fixture)
from tests.test_migrate_dynamics import world as dv_world  # noqa: F401  (fixture)
from tests.test_migrate_salesforce import (  # noqa: F401  (fixtures)
    ADMIN,
    World,
    crmlift,
    org_schema_edit,
    plan_toml,
    world,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@dataclass(frozen=True, slots=True)
class Org:
    """Where the same story happens on each destination."""

    contact: str
    account_link: str
    account: str
    leaf: str
    """An object whose records nothing else points at: deleted by hand."""
    amount: tuple[str, str]
    files: str
    name: tuple[str, str]
    """(object, text field) a person renames."""
    checksum: bool
    """Whether the platform keeps a checksum of a file's content."""
    file_fields: dict[str, str]
    """What a new version of a file carries besides its content."""


SALESFORCE = Org("Contact", "AccountId", "Account", "Claim__c",
                 ("Case_Matter__c", "Claim_Amount__c"), "ContentVersion", ("Account", "Name"),
                 checksum=True, file_fields={"PathOnClient": "replaced.bin"})  # fmt: skip
DATAVERSE = Org("contact", "parentcustomerid.account", "account", "crm_claim",
                ("crm_matter", "crm_claimamount"), "annotation", ("account", "name"),
                checksum=False, file_fields={})  # fmt: skip


class ByHand:
    """A person's edit is no Bulk job: nothing to journal."""

    async def job_opened(self, job_id: str, sobject: str, records: int) -> None:
        return None

    async def job_uploaded(self, job_id: str) -> None:
        return None


@asynccontextmanager
async def client_of(plan: MigrationPlan) -> AsyncIterator[DestinationClient]:
    """crmlift's client on the plan's org, as a person's tool reaches it."""
    assert plan.destination is not None
    destination = plan.destination
    async with pair_for(destination.platform).open_client(
        destination.config, destination.quota
    ) as client:
        yield client


async def mapped(journal: Journal, sobject: str, n: int) -> list[tuple[str, str]]:
    """(external id, destination id) of ``n`` records the id map holds for ``sobject``."""
    rows = await journal.pool.fetch(
        """SELECT external_id, destination_id FROM id_map WHERE object = $1
           AND migration NOT LIKE '%#org:%' ORDER BY external_id LIMIT $2""",
        sobject,
        n,
    )
    assert len(rows) == n, sobject
    return [(r["external_id"], r["destination_id"]) for r in rows]


def short(ident: str | None) -> str:
    """An id in a form both platforms' answers compare in (15 characters, lower case)."""
    return (ident or "")[:15].lower()


# -- a clean run ---------------------------------------------------------------


async def clean_run_says_go(plan: MigrationPlan) -> None:
    run_id = (await run_migrate(plan)).run.run_id

    outcome = await run_reconcile(plan, run_id)

    report = outcome.report
    assert report.go, report.reasons
    loaded = [c for c in report.counts.values() if c.object != "-"]
    assert loaded
    assert all(c.found == c.expected for c in loaded), loaded
    assert report.links_checked > 0
    assert report.files_checked > 0
    assert all(s.records > 0 for s in report.sampled.values())
    document = orjson.loads(outcome.reports[0].read_bytes())
    assert document["verdict"] == "go"
    assert [p.name for p in outcome.reports] == ["reconcile.json", "reconcile.md", "reconcile.html"]
    assert outcome.reports[1].read_text(encoding="utf-8").splitlines()[2].startswith("**GO")


async def test_a_clean_salesforce_run_reconciles_to_go(world: World) -> None:
    await clean_run_says_go(world.plan)


async def test_a_clean_dataverse_run_reconciles_to_go(dv_world: DvWorld) -> None:
    await clean_run_says_go(dv_world.plan)


# -- records deleted and a link re-pointed by hand -----------------------------


async def deleted_and_repointed_are_named(plan: MigrationPlan, journal: Journal, org: Org) -> None:
    run_id = (await run_migrate(plan)).run.run_id
    gone = [dest for _, dest in await mapped(journal, org.leaf, 2)]
    [(contact_ext, contact_id)] = await mapped(journal, org.contact, 1)
    async with client_of(plan) as client:
        [before] = (await client.fetch(org.contact, [contact_id], [org.account_link])).values()
        others = [d for _, d in await mapped(journal, org.account, 5)
                  if short(d) != short(before[org.account_link])]  # fmt: skip
        deleted = await client.delete(org.leaf, gone)
        assert all(r.ok for r in deleted)
        # Someone re-points the contact at another account.
        [moved] = await client.upsert(
            org.contact,
            [{client.external_id_field: contact_ext, org.account_link: others[0]}],
            ByHand(),
        )
        assert moved.ok

    report = (await run_reconcile(plan, run_id)).report

    assert not report.go
    missing = report.of_kind("missing")
    assert {(d.object, short(d.destination_id)) for d in missing} == {
        (org.leaf, short(g)) for g in gone
    }
    assert all("no longer has it" in d.reason for d in missing)
    [broken] = report.broken_links
    assert (broken.object, short(broken.destination_id), broken.field) == (
        org.contact, short(contact_id), org.account_link
    )  # fmt: skip
    assert short(broken.held) == short(others[0])
    assert short(broken.expected) == short(before[org.account_link])
    assert broken.target.startswith("companies/")
    assert any(r.startswith("2 expected record(s) missing") for r in report.reasons)
    assert any(r.startswith("1 link(s) broken") for r in report.reasons)


async def test_salesforce_records_deleted_and_a_contact_repointed_by_hand_are_no_go_and_named(
    world: World, journal: Journal
) -> None:
    await deleted_and_repointed_are_named(world.plan, journal, SALESFORCE)


async def test_dataverse_rows_deleted_and_a_contact_repointed_by_hand_are_no_go_and_named(
    dv_world: DvWorld, journal: Journal
) -> None:
    await deleted_and_repointed_are_named(dv_world.plan, journal, DATAVERSE)


# -- files -----------------------------------------------------------------------


async def changed_and_removed_files_are_caught(
    plan: MigrationPlan, journal: Journal, org: Org, tmp_path: Path
) -> None:
    run_id = (await run_migrate(plan)).run.run_id
    [(_, changed), (_, removed)] = await mapped(journal, org.files, 2)
    async with client_of(plan) as client:
        facts = await client.file_facts(org.files, [changed])
        size = facts[changed].size_bytes
        assert size is not None
        # Where the platform keeps a checksum, the new content is the same size: only the
        # checksum can tell. Elsewhere the size must.
        content = tmp_path / "replaced.bin"
        content.write_bytes(b"\x00" * (size if org.checksum else size + 7))
        [uploaded] = await client.upload_files(org.files, [FileUpload(
            {client.external_id_field: "by-hand-1", **org.file_fields}, content, "replaced.bin",
            "application/octet-stream", content.stat().st_size, replaces=changed,
        )])  # fmt: skip
        assert uploaded.ok, uploaded
        assert all(r.ok for r in await client.delete(org.files, [removed]))

    report = (await run_reconcile(plan, run_id)).report

    assert not report.go
    [problem] = report.file_problems
    assert short(problem.destination_id) == short(changed)
    if org.checksum:
        assert problem.kind == "checksum"
        assert problem.held == hashlib.md5(content.read_bytes()).hexdigest()
    else:
        assert (problem.kind, problem.expected, problem.held) == ("size", size, size + 7)
    [gone] = report.of_kind("missing")
    assert (gone.object, short(gone.destination_id)) == (org.files, short(removed))


async def test_a_salesforce_file_given_new_content_or_removed_is_caught(
    world: World, journal: Journal, tmp_path: Path
) -> None:
    await changed_and_removed_files_are_caught(world.plan, journal, SALESFORCE, tmp_path)


async def test_a_dataverse_note_given_new_content_or_removed_is_caught(
    dv_world: DvWorld, journal: Journal, tmp_path: Path
) -> None:
    await changed_and_removed_files_are_caught(dv_world.plan, journal, DATAVERSE, tmp_path)


# -- totals ----------------------------------------------------------------------


async def changed_amount_is_caught(plan: MigrationPlan, journal: Journal, org: Org) -> None:
    run_id = (await run_migrate(plan)).run.run_id
    sobject, field = org.amount
    rows = await mapped(journal, sobject, 50)
    async with client_of(plan) as client:
        held = await client.fetch(sobject, [d for _, d in rows], [field])
        ext, dest = next((e, d) for e, d in rows if held[d].get(field) is not None)
        amount = Decimal(str(held[dest][field]))
        [edited] = await client.upsert(
            sobject, [{client.external_id_field: ext, field: float(amount + 1000)}], ByHand()
        )
        assert edited.ok

    # A sample of one per object: the total, not the sample, must catch it.
    report = (await run_reconcile(plan, run_id, ReconcileOptions(sample_size=1, seed=5))).report

    total = report.totals[(sobject, field)]
    assert total.held - total.expected == 1000
    assert not total.equal
    assert [t.field for t in report.totals.values() if not t.equal] == [field]
    assert any(f"{sobject}.{field}" in r for r in report.reasons)


async def test_a_salesforce_amount_changed_by_hand_is_caught_by_the_totals(
    world: World, journal: Journal
) -> None:
    await changed_amount_is_caught(world.plan, journal, SALESFORCE)


async def test_a_dataverse_amount_changed_by_hand_is_caught_by_the_totals(
    dv_world: DvWorld, journal: Journal
) -> None:
    await changed_amount_is_caught(dv_world.plan, journal, DATAVERSE)


# -- the sample and the HTML page -----------------------------------------------


async def test_the_html_page_shows_a_hostile_value_the_sample_caught_escaped(
    world: World, journal: Journal
) -> None:
    run_id = (await run_migrate(world.plan)).run.run_id
    sobject, field = SALESFORCE.name
    [(ext, dest)] = await mapped(journal, sobject, 1)
    async with client_of(world.plan) as client:
        [edited] = await client.upsert(
            sobject, [{client.external_id_field: ext, field: HOSTILE}], ByHand()
        )
        assert edited.ok

    # A sample larger than the object: every account is compared field by field.
    outcome = await run_reconcile(world.plan, run_id, ReconcileOptions(sample_size=10_000))

    [diff] = outcome.report.field_diffs
    assert (diff.object, short(diff.destination_id), diff.field, diff.held) == (
        sobject, short(dest), field, HOSTILE
    )  # fmt: skip
    page = outcome.reports[2].read_text(encoding="utf-8")
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "<svg" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_the_same_seed_samples_the_same_records(world: World) -> None:
    run_id = (await run_migrate(world.plan)).run.run_id
    options = ReconcileOptions(sample_size=3, seed=42)

    first = await run_reconcile(world.plan, run_id, options)
    again = await run_reconcile(world.plan, run_id, options)
    other = await run_reconcile(world.plan, run_id, ReconcileOptions(sample_size=3, seed=43))

    def sampled(report: ReconcileReport) -> dict[str, list[str]]:
        return {name: sorted(s.ids) for name, s in report.sampled.items()}

    assert {len(ids) for ids in sampled(first.report).values()} == {3}
    assert sampled(first.report) == sampled(again.report)
    assert sampled(other.report) != sampled(first.report)
    # The report names what was compared (the last run's file: seed 43).
    document = orjson.loads(other.reports[0].read_bytes())["sample"]["objects"]
    assert {n: sorted(s["ids"]) for n, s in document.items()} == sampled(other.report)


# -- the command -----------------------------------------------------------------


async def test_crmlift_reconcile_exits_0_on_go_and_9_on_no_go(
    world: World, journal: Journal, journal_settings: JournalSettings, tmp_path: Path
) -> None:
    run_id = (await run_migrate(world.plan)).run.run_id
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_toml(world), encoding="utf-8")
    env = {**os.environ, "CRMLIFT_JOURNAL_DSN": journal_settings.dsn or "",
           "CRMLIFT_DATA_DIR": str(journal_settings.data_dir)}  # fmt: skip
    argv = ("reconcile", "--plan", str(plan), "--run", run_id, "--sample-size", "5")

    code, out, err = await crmlift(env, *argv)
    assert code == 0, err
    assert out.startswith("GO")
    assert str(world.plan.output_dir / run_id / "reconcile.html") in out.replace("\n", "")

    [(_, claim)] = await mapped(journal, "Claim__c", 1)
    async with client_of(world.plan) as client:
        assert all(r.ok for r in await client.delete("Claim__c", [claim]))
    code, out, err = await crmlift(env, *argv)
    assert code == NO_GO_EXIT == 9, err
    assert out.startswith("NO-GO: 1 expected record(s) missing from the destination (Claim__c: 1)")

    code, _, err = await crmlift(env, "reconcile", "--plan", str(plan), "--run", "r-nonesuch")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
