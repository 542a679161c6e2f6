"""An operator extracts from a firm that keeps working: records are edited, created and
deleted while crmlift lists them and while it downloads documents, and a crash does
not change that. At the end, staging is the source, record for record."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from adapters.backdocket.client import COLLECTIONS, BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.secrets import Secret
from journal import Journal
from journal.core import JournalSettings, open_journal
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import profile_for
from service.extract import Extractor, ExtractSummary
from service.plan import ExtractSettings
from service.reports.extract import consistency_line, render_markdown

FAST_RETRIES = RetryPolicy(attempts=12, base=0.01, cap=0.1, max_retry_after=5)
SETTINGS = ExtractSettings(window_records=150)


@asynccontextmanager
async def backdocket(tenant: Tenant, settings: SimSettings) -> AsyncIterator[BackDocketSim]:
    sim = BackDocketSim(tenant, settings)
    runner, url = await serve(sim)
    sim.url = url  # type: ignore[attr-defined]
    try:
        yield sim
    finally:
        await runner.cleanup()


async def extract(
    journal: Journal, url: str, run_id: str, settings: ExtractSettings = SETTINGS
) -> ExtractSummary:
    governor = Governor(profile_for("backdocket", {"rate": 1000, "burst": 40, "concurrency": 6}))
    config = BackDocketConfig(url, "crmlift", Secret("s3cret"), page_size=100)
    client = BackDocketClient(config, governor, FAST_RETRIES)
    async with client:
        return await Extractor(client, journal, settings, readers=6).run(
            await journal.runs.get(run_id)
        )


async def new_run(journal: Journal) -> str:
    run = await journal.runs.create(
        migration="live", source="backdocket", destination=None, settings={}
    )
    return run.run_id


async def assert_staging_is_the_source(journal: Journal, run_id: str, sim: BackDocketSim) -> None:
    """Staged records less those deleted are the live records; every deletion is recorded;
    every live document's bytes are stored at its current checksum."""
    rows = await journal.pool.fetch(
        "SELECT collection, source_id FROM source_deletions WHERE run_id = $1", run_id
    )
    deleted = {(r["collection"], r["source_id"]) for r in rows}
    assert deleted == sim.deleted()
    for collection in COLLECTIONS:
        live = sim.current_hashes(collection)
        staged = await journal.staging.hashes(run_id, collection)
        kept = {i: h for i, h in staged.items() if (collection, i) not in deleted}
        assert kept == live, f"{collection} differs from the source"
    for document in sim.current_records("documents"):
        assert await journal.blobs.has(document["sha256"]), document["id"]


async def test_changes_during_listing_and_downloads_are_staged_until_a_quiet_pass(
    journal: Journal,
) -> None:
    # A user changes something every few calls, downloads included, then stops.
    churn = SimSettings(rate=1000, burst=200, churn_every=5, churn_max=25)
    async with backdocket(generate_tenant(700, seed=21), churn) as sim:
        run_id = await new_run(journal)
        summary = await extract(journal, sim.url, run_id)  # type: ignore[attr-defined]
        await assert_staging_is_the_source(journal, run_id, sim)

    assert sim.stats.churn == 25
    assert summary.catchup_passes >= 2
    assert summary.consistent_as_of is not None
    assert summary.files_failed == 0
    assert "consistent with the source as of" in consistency_line(summary)
    assert summary.consistent_as_of.isoformat() in render_markdown(summary, [])


async def test_a_source_that_never_settles_stops_at_the_bound_and_says_so(
    journal: Journal,
) -> None:
    endless = SimSettings(rate=1000, burst=200, churn_every=2)
    settings = replace(SETTINGS, catchup_passes=2, files=False)
    async with backdocket(generate_tenant(300, seed=22), endless) as sim:
        run_id = await new_run(journal)
        summary = await extract(journal, sim.url, run_id, settings)  # type: ignore[attr-defined]

    assert summary.catchup_passes == 2
    assert summary.consistent_as_of is None
    assert summary.changes_arriving > 0
    assert f"{summary.changes_arriving} changes still arriving" in consistency_line(summary)


async def test_a_document_replaced_after_staging_is_fetched_at_its_new_version(
    journal: Journal,
) -> None:
    async with backdocket(generate_tenant(400, seed=23), SimSettings(rate=1000)) as sim:
        run_id = await new_run(journal)
        await extract(journal, sim.url, run_id, replace(SETTINGS, files=False))
        # Staged with their old checksums, then a colleague uploads new versions.
        replaced = [d["id"] for d in sim.current_records("documents")[:3]]
        for document_id in replaced:
            sim.upload_new_version(document_id)
        summary = await extract(journal, sim.url, run_id)  # type: ignore[attr-defined]
        await assert_staging_is_the_source(journal, run_id, sim)

    assert summary.files_failed == 0
    assert not [i for i in await journal.issues.list(run_id, "extract") if i.outcome == "failed"]


CHILD = """
import asyncio, sys
from pathlib import Path
from tests.test_live_source import extract_in_child
asyncio.run(extract_in_child(*sys.argv[1:4], Path(sys.argv[4])))
"""


async def extract_in_child(url: str, dsn: str, run_id: str, data_dir: Path) -> None:
    """The child process's whole life: extract one run, as ``crmlift extract`` would."""
    async with open_journal(JournalSettings(data_dir=data_dir, dsn=dsn)) as journal:
        await extract(journal, url, run_id)


async def test_killed_during_downloads_the_resumed_run_reads_the_changes_again(
    journal: Journal, database_dsn: str, tmp_path: Path
) -> None:
    churn = SimSettings(rate=400, burst=40, latency_max=0.005, churn_every=6, churn_max=12)
    async with backdocket(generate_tenant(700, seed=24), churn) as sim:
        run_id = await new_run(journal)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, sim.url, database_dsn, run_id, str(tmp_path),  # type: ignore[attr-defined]
            cwd=Path(__file__).parent.parent, env=os.environ.copy(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                while not await journal.pool.fetchval("SELECT count(*) FROM blobs"):
                    assert proc.returncode is None, "the child ended before any download"
                    await asyncio.sleep(0.01)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # While crmlift was down the firm kept working.
        contact, matter, document = (
            sim.current_records(c)[0]["id"] for c in ("contacts", "matters", "documents")
        )
        sim.edit("contacts", contact, last_name="Okafor-Reyes")
        sim.create("tasks")
        sim.delete("matters", matter)
        sim.upload_new_version(document)
        summary = await extract(journal, sim.url, run_id)  # type: ignore[attr-defined]
        await assert_staging_is_the_source(journal, run_id, sim)

    assert summary.resumed
    assert summary.consistent_as_of is not None
    assert summary.catchup_passes >= 1
