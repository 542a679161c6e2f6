"""The operator's commands as they run them: real processes, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import orjson
import pytest

from adapters.backdocket.sim import BackDocketSim, SimSettings, serve
from adapters.backdocket.tenant import generate_tenant
from adapters.errors import CrmliftError
from adapters.salesforce.schema import OrgSchema
from adapters.salesforce.sim import SalesforceSim, SfSimSettings
from adapters.salesforce.sim import serve as serve_salesforce
from journal import Journal
from service.cli import EXIT_CODES, STOPPED_EXIT, main
from service.mapping.backdocket_salesforce import schema_plan
from service.reconcile import NO_GO_EXIT
from tests.test_extract import assert_staged_exactly

SECRET_ENV = "CRMLIFT_TEST_BACKDOCKET_SECRET"


def plan_text(url: str, *, rate: int = 40) -> str:
    return f"""
[migration]
name = "cli-test"
output_dir = "reports"

[source]
platform = "backdocket"
base_url = "{url}"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
page_size = 50

[source.quota]
rate = {rate}
burst = 40
concurrency = 4

[extract]
window_records = 300
"""


@pytest.fixture
async def slow_source() -> AsyncIterator[tuple[BackDocketSim, str]]:
    """A tenant served slowly enough that a run can be stopped half-way."""
    sim = BackDocketSim(
        generate_tenant(2500, seed=21),
        SimSettings(rate=40, burst=40, latency_min=0.03, latency_max=0.06),
    )
    runner, url = await serve(sim)
    try:
        yield sim, url
    finally:
        await runner.cleanup()


def cli_env(database_dsn: str) -> dict[str, str]:
    return {**os.environ, "CRMLIFT_JOURNAL_DSN": database_dsn, SECRET_ENV: "s3cret"}


async def start_extract(plan: Path, env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "extract",
        "--plan",
        str(plan),
        "--no-progress",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_pages(journal: Journal, pages: int) -> str:
    """The run id, once the running extraction has staged ``pages`` pages."""
    for _ in range(600):
        runs = await journal.runs.recent("cli-test")
        if runs:
            windows = await journal.checkpoints.windows(runs[0].run_id)
            if sum(w.pages for w in windows) >= pages:
                return runs[0].run_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"the extraction never reached {pages} pages")


async def test_a_killed_extraction_resumes_and_stages_every_record_once(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    sim, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    first = await start_extract(plan, env)
    run_id = await wait_for_pages(journal, 12)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert (await journal.runs.get(run_id)).status == "running"  # it never got to say goodbye

    second = await start_extract(plan, env, "--resume", run_id)
    stdout, stderr = await second.communicate()
    assert second.returncode == 0, stderr.decode()
    assert run_id in stdout.decode()

    await assert_staged_exactly(journal, run_id, sim)
    windows = await journal.checkpoints.windows(run_id)
    assert all(w.done for w in windows)
    # Each page was staged exactly once across both processes: the windows'
    # record tallies add up to the staged total, with nothing read twice.
    staged = sum((await journal.staging.counts(run_id)).values())
    assert sum(w.records for w in windows) == staged
    assert (await journal.runs.get(run_id)).status == "extracted"
    assert (tmp_path / "reports" / run_id / "extract-summary.md").exists()


async def crmlift_runs(plan: Path, env: dict[str, str]) -> str:
    """``crmlift runs`` as the operator types it; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "runs", "--plan", str(plan),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_runs_shows_a_sigkilled_run_as_interrupted_and_resumable(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    proc = await start_extract(plan, env)
    try:
        run_id = await wait_for_pages(journal, 6)
        # Frozen mid-run (this test's own child, by its pid): a busy machine's slow
        # `crmlift runs` below cannot let it finish before it is killed.
        proc.send_signal(signal.SIGSTOP)
        run = await journal.runs.get(run_id)
        assert run.process is not None
        assert run.process.pid == proc.pid  # the journal knows which process runs it
        assert f"running (pid {proc.pid})" in await crmlift_runs(plan, env)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)  # this test's own child, by its pid
        await asyncio.wait_for(proc.wait(), timeout=60)

    assert (await journal.runs.get(run_id)).status == "running"  # it never said goodbye
    resumable = f"resumable: crmlift extract --resume {run_id}"
    shown = await crmlift_runs(plan, env)
    assert f"{run_id}: interrupted (process gone, {resumable})" in shown

    resumed = await start_extract(plan, env, "--resume", run_id)
    stdout, stderr = await asyncio.wait_for(resumed.communicate(), timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    # The resumed process reports its own records and time, and the run's total apart.
    staged = sum((await journal.staging.counts(run_id)).values())
    summary = orjson.loads((tmp_path / "reports" / run_id / "extract-summary.json").read_bytes())
    assert summary["resumed"] is True
    assert summary["run_total"]["staged"] == staged
    assert 0 < summary["this_process"]["records_read"] < staged
    text = " ".join(stdout.decode().split())
    assert f"Run total: {staged} records staged" in text
    read = summary["this_process"]["records_read"]
    assert f"This process (resumed run): {read} records read" in text
    assert "gone" not in await crmlift_runs(plan, env)


async def test_sigterm_stops_gracefully_and_says_how_to_resume(
    journal: Journal, database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    sim, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = cli_env(database_dsn)

    proc = await start_extract(plan, env)
    run_id = await wait_for_pages(journal, 6)
    proc.send_signal(signal.SIGTERM)
    _, stderr = await proc.communicate()
    assert proc.returncode == 75
    last_line = stderr.decode().strip().splitlines()[-1]
    assert f"--resume {run_id}" in last_line
    assert (await journal.runs.get(run_id)).status == "interrupted"

    resumed = await start_extract(plan, env, "--resume", run_id)
    _, stderr = await resumed.communicate()
    assert resumed.returncode == 0, stderr.decode()
    await assert_staged_exactly(journal, run_id, sim)


async def test_refused_credentials_are_one_clear_line_and_exit_3(
    database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url))
    env = {**cli_env(database_dsn), SECRET_ENV: "wrong-secret"}
    proc = await start_extract(plan, env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 3
    text = stderr.decode()
    assert "credentials refused (invalid_client)" in text
    assert "wrong-secret" not in text


def test_a_bad_plan_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text("http://127.0.0.1:9").replace("page_size = 50", "page_size = 900"))
    os.environ.setdefault(SECRET_ENV, "s3cret-x")
    assert main(["extract", "--plan", str(plan)]) == 2
    assert "page_size must be 1..500" in capsys.readouterr().err


def test_help_explains_every_command_and_the_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in ("extract", "runs", "sim", "demo", "exit codes", "75"):
        assert word in result.stdout
    # Exit 7 says what it covers: a missing custom object only makes its records wait.
    exit_codes = " ".join(result.stdout.split())
    assert "a missing custom object does not stop the run: its records wait" in exit_codes
    assert "org setting" in exit_codes


DESTINATIONS = {
    "salesforce": f"""
[destination]
platform = "salesforce"
login_url = "https://firm.my.salesforce.com"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
fallback_owner_email = "admin@firm.example"
""",
    "dynamics": f"""
[destination]
platform = "dynamics"
environment_url = "https://firm.crm.dynamics.com"
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "crmlift"
client_secret = {{ env = "{SECRET_ENV}" }}
fallback_owner_email = "admin@firm.example"

[mapping]
publisher_prefix = "hw"
""",
}


@pytest.mark.parametrize("destination", sorted(DESTINATIONS))
async def test_schema_writes_the_plan_the_admin_deploys(
    database_dsn: str, slow_source: tuple[BackDocketSim, str], tmp_path: Path, destination: str
) -> None:
    _, url = slow_source
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text(url) + DESTINATIONS[destination])
    out = tmp_path / "schema-plan.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "schema", "--plan", str(plan), "--out", str(out),
        env=cli_env(database_dsn), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    if destination == "salesforce":
        schema = OrgSchema.load(out)
        matter = schema.get("Case_Matter__c")
        assert matter is not None
        assert matter.field("Source_System_ID__c") is not None
        objects = len(schema.objects)
    else:
        tables = orjson.loads(out.read_bytes())["tables"]
        assert "hw_sourceid" in tables["hw_matter"]["columns"]
        assert tables["contact"]["alternate_keys"] == ["hw_sourceid"]
        objects = len(tables)
    assert stdout.decode().startswith(f"schema plan: {objects} objects")
    # The org settings the admin switches on are in the plan and on screen.
    settings = orjson.loads(out.read_bytes())["org_settings"]
    matter = "Case_Matter__c" if destination == "salesforce" else "hw_matter"
    wanted = {"enableActivities"} if destination == "salesforce" else {"HasActivities", "HasNotes"}
    assert {s["setting"] for s in settings[matter]} >= wanted
    for setting in wanted:
        assert f"org setting for {matter}: {setting}" in stdout.decode()


# -- A careless operator: every mistake is one line and exit 2, never a traceback ----------

DESTINATION_SF = DESTINATIONS["salesforce"] + "\n[mapping]\nmax_file_bytes = 1000\n"
READ_ONLY = "/sys/crmlift-test"
"""A directory nobody may create, root included (sysfs refuses mkdir)."""


def _plan(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return str(path)


def _edited(tmp_path: Path, old: str, new: str, *, destination: bool = False) -> str:
    text = plan_text("http://127.0.0.1:9") + (DESTINATION_SF if destination else "")
    assert old in text
    return _plan(tmp_path, text.replace(old, new))


def _not_utf8(tmp_path: Path) -> str:
    path = tmp_path / "plan.toml"
    path.write_bytes(
        plan_text("http://127.0.0.1:9").replace("cli-test", "caf\xe9").encode("latin-1")
    )
    return str(path)


def _output_dir_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "reports").write_text("a file, not a directory")
    return _edited(tmp_path, 'name = "cli-test"', 'name = "cli-test"')


def _with_data_dir(tmp_path: Path, data_dir: str) -> str:
    return _edited(tmp_path, "[extract]", f'[journal]\ndata_dir = "{data_dir}"\n[extract]')


def _data_dir_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "data").write_text("a file")
    return _with_data_dir(tmp_path, str(tmp_path / "data"))


Argv = Callable[[Path], list[str]]

OPERATOR_MISTAKES: dict[str, tuple[Argv, str]] = {
    "plan not UTF-8": (lambda p: ["runs", "--plan", _not_utf8(p)], "is not UTF-8"),
    "plan is a directory": (lambda p: ["runs", "--plan", str(p)], "is a directory"),
    "--plan empty": (lambda p: ["runs", "--plan", ""], "--plan needs the path of a plan file"),
    "collections of numbers": (
        lambda p: _run_args(_edited(p, "[extract]", "[extract]\ncollections = [1, 2]")),
        "unknown collection(s) 1, 2",
    ),
    "output_dir is a file": (lambda p: _run_args(_output_dir_is_a_file(p)), "is a file"),
    "output_dir unwritable": (
        lambda p: _run_args(_edited(p, '"reports"', f'"{READ_ONLY}/out"')),
        f"output_dir {READ_ONLY}/out cannot be created",
    ),
    "max_file_bytes text": (
        lambda p: _run_args(_edited(p, "= 1000", '= "big"', destination=True)),
        "mapping.max_file_bytes must be a whole number ≥ 1, not 'big'",
    ),
    "max_file_bytes -1": (
        lambda p: _run_args(_edited(p, "= 1000", "= -1", destination=True)),
        "mapping.max_file_bytes must be a whole number ≥ 1, not -1",
    ),
    "base_url without scheme": (
        lambda p: _run_args(_edited(p, "http://127.0.0.1:9", "backdocket.example")),
        "source.base_url 'backdocket.example' must be an http(s) URL",
    ),
    "login_url malformed": (
        lambda p: _run_args(_edited(p, "https://firm.my", "https://[firm.my", destination=True)),
        "destination.login_url 'https://[firm.my.salesforce.com' is not a valid URL",
    ),
    "ca_file missing": (
        lambda p: _run_args(_edited(p, "[mapping]", 'ca_file = "/nope/ca.pem"\n[mapping]',
                                    destination=True)),
        "destination.ca_file /nope/ca.pem is not a readable file",
    ),
    "data dir is a file": (lambda p: _run_args(_data_dir_is_a_file(p)), "is a file"),
    "data dir read-only": (
        lambda p: _run_args(_with_data_dir(p, READ_ONLY)),
        f"data dir {READ_ONLY} is not a writable directory",
    ),
    "empty migration name": (
        lambda p: _run_args(_edited(p, 'name = "cli-test"', 'name = ""')),
        "migration.name is empty",
    ),
    "pagesize typo": (
        lambda p: _run_args(_edited(p, "page_size", "pagesize")),
        "source.pagesize is not a known setting; did you mean source.page_size?",
    ),
    "outptu_dir typo": (
        lambda p: _run_args(_edited(p, "output_dir", "outptu_dir")),
        "did you mean migration.output_dir?",
    ),
    "sim schema file missing": (
        lambda p: ["sim", "salesforce", "--schema", str(p / "nope.json")],
        "nope.json is not a readable file",
    ),
    "sim salesforce schema not JSON": (
        lambda p: ["sim", "salesforce", "--schema", _not_json(p)],
        "bad.json: unexpected character",
    ),
    "sim dynamics schema not JSON": (
        lambda p: ["sim", "dynamics", "--schema", _not_json(p)],
        "bad.json: unexpected character",
    ),
    "sim --records -5": (
        lambda p: ["sim", "backdocket", "--records", "-5"],
        "argument --records: -5 must be at least 1",
    ),
    "sim --port 70000": (
        lambda p: ["sim", "dynamics", "--port", "70000"],
        "port 70000 is not 0..65535",
    ),
    "--out unwritable": (
        lambda p: ["schema", "--plan", _edited(p, "x", "x", destination=True),
                   "--out", f"{READ_ONLY}/schema.json"],
        f"--out {READ_ONLY}/schema.json: directory {READ_ONLY} does not exist or is not writable",
    ),
}  # fmt: skip


def _not_json(tmp_path: Path) -> str:
    """A schema file that is not JSON, for simulators whose secrets are set."""
    os.environ.setdefault("SALESFORCE_CLIENT_SECRET", "sim-s3cret")
    os.environ.setdefault("DATAVERSE_CLIENT_SECRET", "sim-s3cret")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    return str(bad)


def _run_args(plan: str) -> list[str]:
    return ["runs", "--plan", plan]


def crmlift(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    """The real CLI in this process: its exit code and what it said on stderr."""
    try:
        code: int | str | None = main(argv)
    except SystemExit as exited:  # argparse exits by itself
        code = exited.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("mistake", sorted(OPERATOR_MISTAKES))
def test_an_operator_mistake_is_one_line_and_exit_2(
    mistake: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, message = OPERATOR_MISTAKES[mistake]
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    monkeypatch.delenv("CRMLIFT_JOURNAL_DSN", raising=False)
    monkeypatch.delenv("CRMLIFT_DATA_DIR", raising=False)
    code, err = crmlift(argv(tmp_path), capsys)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_malformed_journal_dsn_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    monkeypatch.setenv("CRMLIFT_JOURNAL_DSN", "postgresql://crm:pa55word@db:port/journal")
    code, err = crmlift(
        ["runs", "--plan", _plan(tmp_path, plan_text("http://127.0.0.1:9"))], capsys
    )
    assert code == 2
    assert "the journal DSN is malformed" in err
    assert "pa55word" not in err


def test_a_simulator_on_a_port_in_use_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKDOCKET_CLIENT_SECRET", "s3cret")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = crmlift(["sim", "backdocket", "--records", "50", "--port", str(port)], capsys)
    assert code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_ctrl_c_while_crmlift_is_still_starting_is_one_line_and_exit_75(
    tmp_path: Path,
) -> None:
    """SIGINT lands while the modules load (about the first second): no traceback."""
    plan = _plan(tmp_path, plan_text("http://127.0.0.1:9"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "service.cli", "runs", "--plan", plan,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, SECRET_ENV: "s3cret", "CRMLIFT_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert proc.stderr is not None
    # -X importtime reports each module as it finishes: aiohttp loads after the handler.
    seen = b""
    while not seen.rstrip().endswith(b" aiohttp"):
        line = await proc.stderr.readline()
        assert line, seen.decode()[-2000:]
        seen += line
    proc.send_signal(signal.SIGINT)
    rest = await proc.stderr.read()
    await proc.wait()
    said = [line for line in (seen + rest).decode().splitlines() if "import time" not in line]
    assert proc.returncode == 75, said
    assert said == ["crmlift: stopped by the operator before anything started"]


def test_ctrl_c_after_loading_but_before_the_run_is_exit_75(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("service.cli.load_plan", interrupted)
    code, err = crmlift(["runs", "--plan", str(tmp_path / "plan.toml")], capsys)
    assert code == 75
    assert err == "crmlift: stopped by the operator before a run was started\n"


# -- The destination is checked before hours of extraction -------------------------------


@pytest.fixture
async def quick_source() -> AsyncIterator[str]:
    sim = BackDocketSim(generate_tenant(300, seed=5), SimSettings(rate=1000, burst=100))
    runner, url = await serve(sim)
    try:
        yield url
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _migrate(plan: Path, env: dict[str, str]) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "migrate", "--plan", str(plan), "--no-progress",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await proc.communicate()
    return proc.returncode, stderr.decode()


async def _staged_rows(database_dsn: str) -> int:
    connection = await asyncpg.connect(database_dsn)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM staged_records")
    finally:
        await connection.close()
    return count


def _salesforce_plan(tmp_path: Path, source_url: str, login_url: str) -> Path:
    plan = tmp_path / "plan.toml"
    destination = DESTINATIONS["salesforce"].replace("https://firm.my.salesforce.com", login_url)
    plan.write_text(plan_text(source_url) + destination)
    return plan


async def test_an_unreachable_salesforce_stops_migrate_before_any_extraction(
    database_dsn: str, quick_source: str, tmp_path: Path
) -> None:
    login_url = f"http://127.0.0.1:{_closed_port()}"
    plan = _salesforce_plan(tmp_path, quick_source, login_url)
    code, err = await _migrate(plan, cli_env(database_dsn))
    assert code == 4, err
    assert f"could not reach {login_url}" in err
    assert "Traceback" not in err
    assert await _staged_rows(database_dsn) == 0


async def test_refused_salesforce_credentials_stop_migrate_before_any_extraction(
    database_dsn: str, quick_source: str, tmp_path: Path
) -> None:
    org = SalesforceSim(schema_plan([]), SfSimSettings(client_secret="the-org-s-secret"))
    runner, login_url = await serve_salesforce(org)
    try:
        plan = _salesforce_plan(tmp_path, quick_source, login_url)
        code, err = await _migrate(plan, cli_env(database_dsn))
    finally:
        await runner.cleanup()
    assert code == 3, err
    assert "salesforce: credentials refused" in err
    assert "Traceback" not in err
    assert await _staged_rows(database_dsn) == 0


def _exit_codes(cls: type[CrmliftError]) -> set[int]:
    return {cls.exit_code}.union(*(_exit_codes(sub) for sub in cls.__subclasses__()))


def test_the_readme_and_help_document_every_exit_code() -> None:
    # done, argparse, early Ctrl-C, reconcile's no-go
    codes = _exit_codes(CrmliftError) | {0, 2, STOPPED_EXIT, NO_GO_EXIT}
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    help_lines = [line.split()[0] for line in EXIT_CODES.splitlines()[1:] if line[:4].strip()]
    for code in sorted(codes):
        assert f"\n| {code} |" in readme, f"README exit-code table lacks {code}"
        assert str(code) in help_lines, f"crmlift --help lacks exit code {code}"
