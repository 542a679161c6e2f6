"""An operator extracts a BackDocket tenant: everything arrives, once, whatever the
source throws at us — throttles, outages, expiring tokens, records changing mid-run."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import structlog

from adapters.backdocket.client import COLLECTIONS, BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import Tenant, generate_tenant
from adapters.base import content_hash
from adapters.secrets import Secret
from journal import Journal
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import profile_for
from service.extract import Extractor, ExtractSummary
from service.plan import ExtractSettings
from service.progress import ProgressBoard
from service.reports.extract import render_markdown, write_extract_report

FAST_RETRIES = RetryPolicy(attempts=12, base=0.01, cap=0.1, max_retry_after=5)


@asynccontextmanager
async def backdocket(
    tenant: Tenant, settings: SimSettings
) -> AsyncIterator[tuple[BackDocketSim, str]]:
    """A simulator on loopback for the length of a test."""
    sim = BackDocketSim(tenant, settings)
    runner, url = await serve(sim)
    try:
        yield sim, url
    finally:
        await runner.cleanup()


async def extract(
    journal: Journal,
    url: str,
    *,
    rate: float = 500,
    page_size: int = 100,
    window_records: int = 150,
    resume_run: str | None = None,
    collections: tuple[str, ...] = COLLECTIONS,
) -> tuple[ExtractSummary, BackDocketClient, str]:
    governor = Governor(profile_for("backdocket", {"rate": rate, "burst": 40, "concurrency": 6}))
    client = BackDocketClient(
        BackDocketConfig(url, "crmlift", Secret("s3cret"), page_size=page_size),
        governor,
        FAST_RETRIES,
    )
    if resume_run is None:
        run = await journal.runs.create(
            migration="test", source="backdocket", destination=None, settings={}
        )
    else:
        run = await journal.runs.get(resume_run)
    settings = ExtractSettings(window_records=window_records, collections=collections)
    extractor = Extractor(client, journal, settings, readers=6)
    async with client:
        summary = await extractor.run(run)
    return summary, client, run.run_id


async def assert_staged_exactly(journal: Journal, run_id: str, sim: BackDocketSim) -> None:
    """Staging holds every live source record once, at its current content."""
    counts = await journal.staging.counts(run_id)
    for collection in COLLECTIONS:
        live = {r["id"]: content_hash(r) for r in sim.current_records(collection)}
        staged = await journal.staging.hashes(run_id, collection)
        assert counts.get(collection, 0) == len(live), collection
        assert staged == live, f"{collection} differs from the source"


async def test_a_tenant_is_staged_exactly_through_throttles_and_outages(journal: Journal) -> None:
    tenant = generate_tenant(1500, seed=3)
    faults = SimSettings(rate=300, burst=40, fault_503_rate=0.05, fault_429_rate=0.05)
    async with backdocket(tenant, faults) as (sim, url):
        summary, client, run_id = await extract(journal, url)
        await assert_staged_exactly(journal, run_id, sim)

    assert sim.stats.faults_503 > 0
    assert sim.stats.throttled_429 > 0
    assert client.governor.stats.retries >= sim.stats.faults_503
    assert summary.issues == 0
    assert sum(c.windows for c in summary.collections) > len(COLLECTIONS)
    assert summary.deletions == len(tenant.deletions)
    # Files: every document's bytes are on disk and match their sha256.
    documents = sim.current_records("documents")
    assert summary.files_stored == len(documents)
    for document in documents:
        path = journal.blobs.path_for(document["sha256"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == document["sha256"]


async def test_staged_payloads_keep_every_field_exactly(journal: Journal) -> None:
    tenant = generate_tenant(400, seed=5, dirty=True)
    async with backdocket(tenant, SimSettings(rate=500)) as (sim, url):
        _, _, run_id = await extract(journal, url)
    for collection in ("contacts", "matters", "notes"):
        source = {r["id"]: r for r in sim.current_records(collection)}
        async for source_id, payload in journal.staging.payloads(run_id, collection):
            assert orjson.loads(payload) == source[source_id]


async def test_an_expired_token_is_renewed_mid_run(journal: Journal) -> None:
    tenant = generate_tenant(800, seed=4)
    settings = SimSettings(rate=500, token_ttl=0.25, latency_min=0.01, latency_max=0.03)
    async with backdocket(tenant, settings) as (sim, url):
        with structlog.testing.capture_logs() as events:
            summary, client, run_id = await extract(journal, url, page_size=50)
        await assert_staged_exactly(journal, run_id, sim)
    assert client.token_fetches >= 2
    assert sim.stats.tokens_issued == client.token_fetches
    # Every renewal is logged (where, why, how many so far) and counted in the report.
    renewals = [e for e in events if e["event"] == "backdocket.token_renewed"]
    assert len(renewals) == client.token_renewals == client.token_fetches - 1
    assert [e["renewals"] for e in renewals] == list(range(1, len(renewals) + 1))
    assert all(e["endpoint"] == f"{url}/oauth/token" for e in renewals)
    assert all("access_token" not in str(e) and "Bearer" not in str(e) for e in events)
    assert (summary.tokens_fetched, summary.token_renewals) == (
        client.token_fetches,
        client.token_renewals,
    )
    markdown = render_markdown(summary, [])
    assert f"{client.token_renewals} token renewal" in markdown


async def test_records_changed_mid_run_are_staged_at_their_newest_version(
    journal: Journal,
) -> None:
    tenant = generate_tenant(1200, seed=8)
    settings = SimSettings(rate=500, mutate_every=3, latency_min=0.005, latency_max=0.01)
    async with backdocket(tenant, settings) as (sim, url):
        _, _, run_id = await extract(journal, url, page_size=50)
        await assert_staged_exactly(journal, run_id, sim)


async def test_a_dirty_tenant_is_staged_without_losing_anything(journal: Journal) -> None:
    tenant = generate_tenant(600, seed=9, dirty=True)
    async with backdocket(tenant, SimSettings(rate=500, fault_503_rate=0.02)) as (sim, url):
        summary, _, run_id = await extract(journal, url)
        await assert_staged_exactly(journal, run_id, sim)
    assert summary.deletions == len(tenant.deletions)
    big = max(sim.current_records("documents"), key=lambda d: d["size_bytes"])
    assert big["size_bytes"] > 25 * 1024 * 1024
    assert journal.blobs.path_for(big["sha256"]).stat().st_size == big["size_bytes"]
    assert summary.files_failed == 0


async def test_a_resumed_run_skips_finished_windows(journal: Journal) -> None:
    tenant = generate_tenant(900, seed=12)
    async with backdocket(tenant, SimSettings(rate=500)) as (sim, url):
        summary, _, run_id = await extract(journal, url, page_size=50)
        served = sim.stats.requests
        again, _, _ = await extract(journal, url, page_size=50, resume_run=run_id)
        # Only the catch-up windows, deletions and the file check are read again.
        assert sim.stats.requests - served <= len(COLLECTIONS) + 2
        await assert_staged_exactly(journal, run_id, sim)
    assert again.staged == summary.staged


async def test_a_resumed_run_reports_this_process_apart_from_the_run(
    journal: Journal, tmp_path: Path
) -> None:
    # A first process reads users and companies, then stops; the resumed one reads
    # the rest. The rate is the resumed process's records over its own time, never
    # the whole run's records over it ("30001 records in 0.1 s (326098/s)").
    tenant = generate_tenant(900, seed=12)
    async with backdocket(tenant, SimSettings(rate=500)) as (sim, url):
        first, _, run_id = await extract(journal, url, collections=("users", "companies"))
        again, _, _ = await extract(journal, url, resume_run=run_id)
        await assert_staged_exactly(journal, run_id, sim)

    assert not first.resumed
    assert first.read == first.staged
    assert again.resumed
    assert again.staged == sum(len(sim.current_records(c)) for c in COLLECTIONS)
    assert again.read == again.staged - first.staged  # only what the first one left
    assert again.rate == again.read / again.elapsed
    json_path, md_path = write_extract_report(again, [], tmp_path)
    report = orjson.loads(json_path.read_bytes())
    assert report["this_process"]["records_read"] == again.read
    assert report["run_total"]["staged"] == again.staged
    markdown = md_path.read_text()
    assert f"Run total: {again.staged} records staged" in markdown
    assert f"This process (resumed run): {again.read} records read" in markdown


def test_progress_rate_counts_only_this_processs_work() -> None:
    board = ProgressBoard()
    board.restore("contacts", done=30_000, total=30_001)
    board.advance("contacts", 1)
    track = board.tracks["contacts"]
    assert track.done == 30_001  # the bar shows the run's progress
    assert track.rate(now=track.started + 0.1) == pytest.approx(10.0)  # this process: 1 record
