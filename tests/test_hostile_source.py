"""An operator points crmlift at a source that is broken, or hostile: a proxy that
redirects, a body that never ends, cursors that loop, NULs, bad timestamps. The run
never leaks the secret, never hangs, never ends in a traceback: it stages what it
can, journals what it cannot with the reason, or stops with one line naming the
URL, collection or record, and a documented exit code."""

from __future__ import annotations

import asyncio
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.backdocket.client import BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import Answer, HostileBackDocket, HostileScript, serve_hostile
from adapters.base import canonical_json, content_hash
from adapters.errors import (
    AuthError,
    CrmliftError,
    PlatformRefused,
    PlatformUnavailable,
    first_error,
)
from adapters.secrets import Secret
from journal import Journal
from journal.issues import RecordIssue
from ratelimit.backoff import RetryPolicy
from ratelimit.governor import Governor
from ratelimit.profiles import profile_for
from service.extract import Extractor, ExtractSummary
from service.plan import ExtractSettings

SECRET = "s3cret-never-elsewhere"
FAST = RetryPolicy(attempts=4, base=0.01, cap=0.02, max_retry_after=1)
GIVE_UP = 60
"""Seconds after which a test calls a read that never ends a hang (old code looped)."""
T0 = "2024-01-01T00:00:00+00:00"


def page(*records: Any, next_cursor: Any = None) -> dict[str, Any]:
    return {"data": list(records), "next_cursor": next_cursor}


def user(ident: str, updated_at: Any = T0, **fields: Any) -> dict[str, Any]:
    return {"id": ident, "updated_at": updated_at, "custom_fields": {}, **fields}


@asynccontextmanager
async def hostile(script: HostileScript) -> AsyncIterator[tuple[HostileBackDocket, str]]:
    server, runner, url = await serve_hostile(script)
    try:
        yield server, url
    finally:
        await runner.cleanup()


async def extract(
    journal: Journal,
    url: str,
    collections: tuple[str, ...] = ("users",),
    *,
    request_timeout: float = 5.0,
    page_deadline: float = 30.0,
) -> tuple[ExtractSummary, str]:
    """One extraction; a task group's error comes out as the error the CLI would print."""
    config = BackDocketConfig(
        url,
        "crmlift",
        Secret(SECRET),
        page_size=100,
        request_timeout=request_timeout,
        page_deadline=page_deadline,
    )
    governor = Governor(profile_for("backdocket", {"rate": 1000, "burst": 100, "concurrency": 4}))
    run = await journal.runs.create(
        migration="hostile", source="backdocket", destination=None, settings={}
    )
    settings = ExtractSettings(collections=collections, window_records=10_000, files=False)
    try:
        async with asyncio.timeout(GIVE_UP), BackDocketClient(config, governor, FAST) as client:
            summary = await Extractor(client, journal, settings, readers=2).run(run)
    except BaseException as exc:
        raise first_error(exc) from None
    return summary, run.run_id


async def refusal(journal: Journal, url: str, **options: Any) -> CrmliftError:
    with pytest.raises(CrmliftError) as caught:
        await extract(journal, url, **options)
    message = str(caught.value)
    assert "\n" not in message  # one line, for the operator's grep
    assert SECRET not in message
    return caught.value


# -- item 1: the secret stays home -------------------------------------------------


async def test_the_client_secret_never_follows_a_token_redirect_to_another_host(
    journal: Journal,
) -> None:
    async with hostile(HostileScript()) as (elsewhere, other_url):
        redirect = Answer(status=307, headers={"Location": f"{other_url}/oauth/token"})
        async with hostile(HostileScript(token=redirect)) as (_, url):
            error = await refusal(journal, url)
    assert isinstance(error, AuthError)
    assert error.exit_code == 3
    assert f"{url}/oauth/token" in str(error)
    assert f"{other_url}/oauth/token" in str(error)
    assert elsewhere.token_forms == []  # the other host never saw a token request


# -- item 8: edge cases end in one line, not a traceback ---------------------------


async def test_a_redirect_loop_stops_naming_the_url(journal: Journal) -> None:
    loop = Answer(status=302, headers={"Location": "/api/v1/users"})
    async with hostile(HostileScript(api=loop)) as (_, url):
        error = await refusal(journal, url)
    assert isinstance(error, PlatformRefused)
    assert error.exit_code == 8
    assert f"{url}/api/v1/users" in str(error)


async def test_a_listed_collection_the_source_lacks_is_named(journal: Journal) -> None:
    script = HostileScript(pages={"users": [page(user("u1"))]})
    async with hostile(script) as (_, url):
        error = await refusal(journal, url, collections=("users", "claims"))
    assert isinstance(error, PlatformRefused)
    assert "'claims'" in str(error)
    assert f"{url}/api/v1/claims" in str(error)


async def test_a_token_answer_without_an_access_token_is_named(journal: Journal) -> None:
    script = HostileScript(token=Answer(body={"token_type": "Bearer", "expires_in": 60}))
    async with hostile(script) as (_, url):
        error = await refusal(journal, url)
    assert isinstance(error, AuthError)
    assert "access_token" in str(error)
    assert f"{url}/oauth/token" in str(error)


async def test_bad_timestamps_are_journaled_and_the_run_goes_on(journal: Journal) -> None:
    records = [
        user("u-naive", "2024-01-02T03:04:05"),
        user("u-garbage", "last tuesday"),
        user("u-number", 1700000000),
        {"id": "u-missing", "custom_fields": {}},
    ]
    deletions = page(
        {"collection": "users", "id": "gone-1", "deleted_at": "not a time"},
        {"collection": "users", "id": "gone-2", "deleted_at": "2024-01-02T00:00:00"},
        "not even an object",
    )
    script = HostileScript(pages={"users": [page(*records)]}, deletions=[deletions])
    async with hostile(script) as (_, url):
        summary, run_id = await extract(journal, url)
    assert summary.staged == 4
    issues = {(i.source_id, i.code): i for i in await journal.issues.list(run_id)}
    assert issues["u-naive", "naive_updated_at"].outcome == "warning"
    for ident in ("u-garbage", "u-number", "u-missing"):
        assert issues[ident, "bad_updated_at"].outcome == "warning"
    assert issues["gone-1", "bad_deletion"].outcome == "failed"
    assert issues["?deletion#2", "bad_deletion"].outcome == "failed"
    assert summary.deletions == 1  # gone-2, its naive time read as UTC


async def test_a_cursor_the_source_rejects_again_after_a_rewind_is_refused(
    journal: Journal,
) -> None:
    """The source hands out cursor c1, then rejects it, every time."""
    script = HostileScript(pages={"users": [page(user("u1"), next_cursor="c1")]})
    async with hostile(script) as (_, url):
        error = await refusal(journal, url)
    assert isinstance(error, PlatformRefused)
    assert "users window" in str(error)


# -- item 9: a cursor seen before ----------------------------------------------------


async def test_a_source_that_repeats_its_cursor_is_stopped_naming_it(journal: Journal) -> None:
    pages = [page(user("u1"), next_cursor="again"), page(user("u2"), next_cursor="again")]
    async with hostile(HostileScript(pages={"users": pages})) as (server, url):
        error = await refusal(journal, url)
    assert isinstance(error, PlatformRefused)
    assert "users window" in str(error)
    assert "'again'" in str(error)
    assert server.api_calls < 10


# -- item 10: a body that never ends -----------------------------------------------


async def test_a_dripping_source_is_warned_about_at_once_and_bounded(journal: Journal) -> None:
    async with hostile(HostileScript(api=Answer(drip=True))) as (_, url):
        with structlog.testing.capture_logs() as logs:
            error = await refusal(journal, url, request_timeout=0.2, page_deadline=0.5)
    assert isinstance(error, PlatformUnavailable)
    assert "page_deadline" in str(error)
    assert f"{url}/api/v1/users" in str(error)
    slow = [e for e in logs if e["event"] == "backdocket.slow_answer"]
    assert slow, "the first slow answer is reported, not only the last"
    assert slow[0]["url"] == f"{url}/api/v1/users"


# -- item 13a: refusals are not outages --------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(403, "forbidden"), (400, "unsupported_api_version"), (410, "gone")]
)
async def test_a_refusal_by_the_source_is_reported_at_once_with_its_reason(
    journal: Journal, status: int, code: str
) -> None:
    """Docs are silent on how BackDocket names a retired API version; any 4xx other than
    401/404/429 and a bad cursor is taken as final (the strictest reading)."""
    answer = Answer(status=status, body={"error": code})
    async with hostile(HostileScript(api=answer)) as (server, url):
        error = await refusal(journal, url)
    assert isinstance(error, PlatformRefused)
    assert f"HTTP {status} {code}" in str(error)
    assert "after retries" not in str(error)
    assert server.api_calls == 1


# -- item 7: NUL characters ----------------------------------------------------------


async def test_a_nul_in_source_strings_is_staged_losslessly_and_noted(journal: Journal) -> None:
    record = user(
        "u1",
        name="Ann\x00Lee",
        notes=["a\\0b\x00", "plain \\ text"],
        custom_fields={"key\x00odd": {"deep": "x\x00\x00y"}},
    )
    async with hostile(HostileScript(pages={"users": [page(record)]})) as (_, url):
        summary, run_id = await extract(journal, url)
    assert summary.staged == 1
    [(_, payload)] = [p async for p in journal.staging.payloads(run_id, "users")]
    assert orjson.loads(payload) == record
    assert canonical_json(orjson.loads(payload)) == canonical_json(record)
    assert (await journal.staging.hashes(run_id, "users"))["u1"] == content_hash(record)
    notes = [i for i in await journal.issues.list(run_id) if i.code == "nul_escaped"]
    assert [(n.source_id, n.outcome) for n in notes] == [("u1", "warning")]
    assert "name" in notes[0].message
    assert "custom_fields" in notes[0].message


# -- the property: whatever the pages, the run ends and every record is accounted for --

NASTY_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from("\x00\\0a\u2028\ud7ff\ufffe"), max_size=12),
    st.builds(lambda n: "x" * n, st.just(100_000)),
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    # jsonb keeps numbers as numeric and prints 1e300 with every digit, read back as an
    # int: floats past 1e15 do not round-trip through staging (a known limit, noted).
    | st.floats(min_value=-1e15, max_value=1e15)
    | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NASTY_TEXT, inner, max_size=3),
    max_leaves=8,
)
TIMESTAMPS = st.one_of(
    st.just(T0),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    NASTY_TEXT,
    JSON_VALUES,
)
GOOD_ID = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
BAD_ID = st.one_of(
    st.just(""),
    st.just("a\x00b"),
    st.just("z" * 300),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.lists(GOOD_ID),
)


@st.composite
def records(draw: st.DrawFn, index: int) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)  # not even an object
    ident = f"{draw(GOOD_ID)}-{index}" if draw(st.booleans()) else draw(BAD_ID)
    fields = draw(st.dictionaries(NASTY_TEXT, JSON_VALUES, max_size=4))
    record = {**fields, "id": ident}
    if draw(st.booleans()):
        record["updated_at"] = draw(TIMESTAMPS)
    return record


@st.composite
def hostile_pages(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bool]:
    """Pages of one window, and whether their cursors loop (a repeated cursor)."""
    count = draw(st.integers(1, 4))
    pages: list[dict[str, Any]] = []
    cursors: list[str] = []
    looped = False
    for number in range(count):
        data = [draw(records(number * 10 + i)) for i in range(draw(st.integers(0, 4)))]
        if number == 0:
            # The oldest record anchors the windows (a hostile one is covered by
            # test_bad_timestamps_are_journaled_and_the_run_goes_on).
            data.insert(0, user("anchor"))
        last = number == count - 1
        if last:
            cursor: Any = None
        elif cursors and draw(st.integers(0, 4)) == 0:
            cursor, looped = draw(st.sampled_from(cursors)), True
        else:
            cursor = draw(st.sampled_from(["", "c", "\u00e9\x00", "=" * 50])) + f"/{number}"
        pages.append({"data": data, "next_cursor": cursor, "total_estimate": "lots"})
        if looped:
            break
        if cursor is not None:
            cursors.append(cursor)
    return pages, looped


def named(record: Any) -> str | None:
    ident = record.get("id") if isinstance(record, dict) else None
    ok = isinstance(ident, str) and ident and "\x00" not in ident and len(ident) <= 255
    return ident if ok else None


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=hostile_pages())
async def test_any_hostile_page_ends_the_run_with_every_record_accounted_for(
    journal: Journal, script: tuple[list[dict[str, Any]], bool]
) -> None:
    pages, looped = script
    async with hostile(HostileScript(pages={"users": pages})) as (_, url):
        if looped:
            error = await refusal(journal, url)
            assert isinstance(error, PlatformRefused)
            return
        summary, run_id = await extract(journal, url)
    sent = [r for p in pages for r in p["data"]]
    staged = {i: orjson.loads(p) async for i, p in journal.staging.payloads(run_id, "users")}
    issues = await journal.issues.list(run_id)
    assert staged == {named(r): r for r in sent if named(r) is not None}
    failed = [i for i in issues if i.outcome == "failed"]
    assert len(failed) == len([r for r in sent if named(r) is None])
    assert all(_explained(i) for i in issues)
    assert summary.staged == len(staged)


def _explained(issue: RecordIssue) -> bool:
    return bool(issue.code) and bool(issue.message) and issue.collection == "users"
