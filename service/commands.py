"""What each CLI command does, on the event loop; ``cli.py`` only parses and exits."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from adapters.backdocket.client import BackDocketClient, BackDocketConfig
from adapters.backdocket.sim import SimSettings, run_forever
from adapters.base import Record, Window
from adapters.dynamics.sim import DataverseSimSettings
from adapters.dynamics.sim import run_forever as run_dynamics_sim
from adapters.dynamics.sim_store import load_schema
from adapters.errors import ConfigError, PlatformUnavailable
from adapters.salesforce.sim import SfSimSettings
from adapters.salesforce.sim import run_forever as run_salesforce_sim
from adapters.secrets import Secret
from adapters.simserver import ADMIN_TOKEN_ENV, new_admin_token, server_tls
from journal import open_journal
from journal.runs import Run
from ratelimit.governor import Governor
from ratelimit.profiles import profile_for
from service.approval import approve as approve_sample
from service.audit import run_audit
from service.audit_findings import AuditBlocked
from service.delta import run_delta, run_watch
from service.estimate import run_estimate
from service.extract import EPOCH
from service.logs import configure_logging
from service.mapping import backdocket_dynamics, backdocket_salesforce
from service.mapping_confirm import confirm_mapping
from service.mapping_propose import propose_mapping
from service.migrate import MigrateOutcome, run_migrate
from service.pairs import pair_for, setting_help
from service.pipeline import ExtractOutcome, run_extract
from service.plan import MigrationPlan, load_plan
from service.progress import ProgressBoard
from service.reconcile import NO_GO_EXIT, ReconcileOptions, run_reconcile
from service.reports.audit import verdict
from service.reports.estimate import estimate_lines, estimate_table
from service.reports.extract import consistency_line, run_total_line, this_process_line
from service.rollback import RollbackOptions, run_rollback, run_rollback_to_before

T = TypeVar("T")

console = Console(stderr=True)
# Summaries are tables: wide enough for their columns even when piped to a file.
out = Console(width=None if sys.stdout.isatty() else 132)


async def extract(args: argparse.Namespace) -> int:
    """``crmlift extract``: run (or resume) an extraction with progress bars."""
    plan: MigrationPlan = args.loaded_plan
    outcome = await _with_progress(
        lambda board: run_extract(plan, resume=args.resume, progress=board),
        show=not args.no_progress,
    )
    _print_extract_summary(outcome)
    return 0


async def migrate(args: argparse.Namespace) -> int:
    """``crmlift migrate``: extract and load, with progress bars, then the summary."""
    plan: MigrationPlan = args.loaded_plan
    outcome = await _with_progress(
        lambda board: run_migrate(
            plan, resume=args.resume, progress=board, shutdown=args.shutdown, sample=args.sample
        ),
        show=not args.no_progress,
    )
    _print_migrate_summary(outcome)
    return 0


async def audit(args: argparse.Namespace) -> int:
    """``crmlift audit``: extract (or reuse ``--run``'s staging), check it against the
    destination's metadata; exit 7 when a finding would stop ``migrate``."""
    plan: MigrationPlan = args.loaded_plan
    outcome = await _with_progress(
        lambda board: run_audit(plan, run_id=args.run, progress=board),
        show=not args.no_progress,
    )
    table = Table(title=f"audit of run {outcome.run.run_id}")
    for column in ("severity", "id", "records", "what"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for f in outcome.report.findings:
        mark = " (acknowledged)" if f.acknowledged else ""
        table.add_row(f.severity + mark, f.id, str(f.count), f.title)
    out.print(table)
    out.print(verdict(outcome.report), markup=False, highlight=False)
    out.print(f"reports: {', '.join(str(p) for p in outcome.reports)}", markup=False)
    return AuditBlocked.exit_code if outcome.report.blocking else 0


async def delta(args: argparse.Namespace) -> int:
    """``crmlift delta``: one delta cycle, or ``--watch`` cycles until ``--until``."""
    plan: MigrationPlan = args.loaded_plan
    if args.watch is not None and (args.until is None or args.resume is not None):
        raise ConfigError("--watch needs --until (and cannot --resume: resume one cycle)")
    if args.watch is None:
        one = await _with_progress(
            lambda board: run_delta(plan, overlap=args.overlap, resume=args.resume,
                                    progress=board, shutdown=args.shutdown),
            show=not args.no_progress,
        )  # fmt: skip
        cycles = [one]
    else:
        watched = await run_watch(plan, every=args.watch, until=args.until, overlap=args.overlap,
                                  shutdown=args.shutdown)  # fmt: skip
        cycles = watched.cycles
    for cycle in cycles:
        out.print(cycle.reports[1].read_text(encoding="utf-8"), markup=False, highlight=False)
        out.print(f"reports: {', '.join(str(p) for p in cycle.reports)}", markup=False)
    return 0


async def approve(args: argparse.Namespace) -> int:
    """``crmlift approve``: journal the operator's approval of a completed sample run."""
    plan: MigrationPlan = args.loaded_plan
    approval = await approve_sample(plan, args.run, args.by)
    out.print(
        f"sample run {approval.run_id} approved by {approval.approved_by} at "
        f"{approval.approved_at:%Y-%m-%d %H:%M:%S %Z}; mapping fingerprint "
        f"{approval.mapping_fingerprint}",
        markup=False,
        highlight=False,
    )
    return 0


async def mapping(args: argparse.Namespace) -> int:
    """``crmlift mapping propose|confirm``: write the proposal, or confirm the edited file."""
    plan: MigrationPlan = args.loaded_plan
    if args.mapping_command == "propose":
        proposal = await propose_mapping(plan, out=args.out, run_id=args.run, force=args.force)
        out.print(
            f"mapping proposed: {proposal.path} ({proposal.fields} custom fields, "
            f"{proposal.values} values, {proposal.review} to review); edit it, then "
            f"`crmlift mapping confirm --plan {args.plan}`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 0
    done = await confirm_mapping(plan, by=args.by, file=args.file, run_id=args.run)
    out.print(
        f"mapping {done.file} confirmed by {done.confirmed_by} at "
        f"{done.confirmed_at:%Y-%m-%d %H:%M:%S %Z}; fingerprint {done.fingerprint}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 0


async def rollback(args: argparse.Namespace) -> int:
    """``crmlift rollback``: undo a run (or, with --dry-run, say what that would do)."""
    plan: MigrationPlan = args.loaded_plan
    options = RollbackOptions(dry_run=args.dry_run, force=args.force, objects=args.objects)
    if args.to_before is not None:
        undone = await run_rollback_to_before(plan, args.to_before, options)
        for run_id in undone.skipped:
            out.print(f"run {run_id}: already rolled back, skipped", highlight=False)
        outcomes = undone.outcomes
    else:
        outcomes = [await run_rollback(plan, args.run, options)]
    for outcome in outcomes:
        out.print(outcome.reports[1].read_text(encoding="utf-8"))
        out.print(f"reports: {', '.join(str(p) for p in outcome.reports)}")
    return 0


async def reconcile(args: argparse.Namespace) -> int:
    """``crmlift reconcile``: read the destination back; exit 0 on go, 9 on no-go."""
    plan: MigrationPlan = args.loaded_plan
    options = ReconcileOptions(sample_size=args.sample_size, seed=args.seed)
    outcome = await run_reconcile(plan, args.run, options)
    out.print(outcome.report.verdict, markup=False, highlight=False)
    out.print(f"reports: {', '.join(str(p) for p in outcome.reports)}", markup=False)
    return 0 if outcome.report.go else NO_GO_EXIT


async def schema(args: argparse.Namespace) -> int:
    """``crmlift schema``: the schema plan, from the source's custom field definitions."""
    plan: MigrationPlan = args.loaded_plan
    if plan.destination is None:
        raise ConfigError("the plan has no [destination] table: a schema plan is a destination's")
    writable_file(args.out)
    definitions = await read_collection(plan.source, "custom_field_definitions")
    wanted = pair_for(plan.destination.platform).schema_plan(definitions, plan.destination.mapping)
    write_out(args.out, wanted.document)
    out.print(
        f"schema plan: {len(wanted.deployed)} objects, {wanted.field_count} fields → {args.out}"
    )
    for name, settings in sorted(wanted.settings.items()):
        for setting in sorted(settings):
            out.print(f"  org setting for {name}: {setting} — {setting_help(setting)}")
    return 0


async def estimate(args: argparse.Namespace) -> int:
    """``crmlift estimate``: the load's calls, batches and time against the destination's quotas."""
    plan: MigrationPlan = args.loaded_plan
    if args.out is not None:
        writable_file(args.out)
    result = await run_estimate(plan, getattr(args, "delta_window", None))
    out.print(estimate_table(result))
    for line in estimate_lines(result):
        out.print(line, markup=False, highlight=False)
    if args.out is not None:
        write_out(args.out, result.to_json())
        out.print(f"estimate → {args.out}", highlight=False)
    return 0


async def runs(args: argparse.Namespace) -> int:
    """``crmlift runs``: the plan's recent runs, and whether a ``running`` one still runs."""
    plan: MigrationPlan = args.loaded_plan
    table = Table(title=f"runs of {plan.name}")
    for column in ("run", "status", "started (UTC)", "finished (UTC)", "message"):
        table.add_column(column, overflow="fold")
    async with open_journal(plan.journal) as journal:
        recent = await journal.runs.recent(plan.name)
    for run in recent:
        table.add_row(
            run.run_id,
            run_status_text(run),
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
            run.message or "",
        )
    out.print(table)
    # One unwrapped line per run that needs the operator, whatever the terminal's width.
    for run in recent:
        if run.process_gone:
            out.print(f"{run.run_id}: {run_status_text(run)}", markup=False, highlight=False)
    return 0


def run_status_text(run: Run) -> str:
    """A run's status as the operator needs it: a ``running`` run whose process is gone
    (killed, out of memory, its container lost) says so, and how to resume it."""
    resume = _resume_command(run)
    if run.status == "interrupted":
        return f"interrupted (resumable: {resume})"
    if run.status != "running" or run.process is None:
        return run.status
    if run.process_gone:
        return f"interrupted (process gone, resumable: {resume})"
    if run.process.alive() is None:
        return f"running (pid {run.process.pid} on {run.process.host}; cannot check from here)"
    return f"running (pid {run.process.pid})"


def _resume_command(run: Run) -> str:
    """The command that continues ``run``: a rollback is rerun as it was given, a delta
    cycle resumes as a delta, any other load as a migrate."""
    target = run.settings.get("rollback_of")
    if target:
        return f"crmlift rollback --run {target}"
    if run.settings.get("command") == "delta":
        return f"crmlift delta --resume {run.run_id}"
    command = "migrate" if run.destination is not None else "extract"
    return f"crmlift {command} --resume {run.run_id}"


async def sim(args: argparse.Namespace) -> int:
    """``crmlift sim PLATFORM``: serve a simulator until stopped."""
    serve = {"salesforce": _sim_salesforce, "dynamics": _sim_dynamics}
    return await serve.get(args.platform, _sim_backdocket)(args)


def sim_admin_token() -> str:
    """The token ``/_sim`` endpoints require: ``$CRMLIFT_SIM_ADMIN_TOKEN``, else a random
    one nobody knows, which keeps them shut."""
    return os.environ.get(ADMIN_TOKEN_ENV) or new_admin_token()


def writable_file(path: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any work is done, not after."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; name a file")
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path}: directory {parent} does not exist or is not writable")


def write_out(path: Path, data: bytes) -> None:
    """Write an ``--out`` file; a failure (disk full, read-only) is one line, not a traceback."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"--out {path} cannot be written: {exc.strerror or exc}") from exc


def read_users(
    path: Path | None, default: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """A simulator's ``--users`` file: JSON ``[[name, email], ...]``."""
    if path is None:
        return default
    try:
        return tuple((str(name), str(email)) for name, email in orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"--users {path}: want a JSON list of [name, email] ({exc})") from exc


@contextlib.asynccontextmanager
async def listening(host: str, port: int) -> AsyncIterator[None]:
    """A simulator that cannot bind (port in use, address not ours) is a bad flag: exit 2."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


def _ready(url: str) -> None:
    # The first stdout line is the contract with whoever started us.
    print(f"READY {url}", flush=True)


async def _sim_salesforce(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.client_secret_env)
    if not secret:
        raise ConfigError(f"set {args.client_secret_env} to the secret the simulator accepts")
    users = read_users(args.users, SfSimSettings().users)
    try:
        settings = SfSimSettings(
            client_id=args.client_id, client_secret=secret, users=users,
            admin_token=sim_admin_token(), daily_api_requests=args.daily_api_requests,
            bulk_records_per_second=args.bulk_records_per_second,
            token_ttl=args.token_ttl, fault_500_rate=args.fault_500,
            fault_503_rate=args.fault_503, fault_reset_rate=args.fault_reset,
            fault_reset_after_write_rate=args.fault_reset_after_write,
            fault_slow_rate=args.fault_slow, fault_slow_seconds=args.fault_slow_seconds,
            fault_partial_rate=args.fault_partial, fault_seed=args.fault_seed,
            state_country_picklists=args.state_country_picklists,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"simulator settings: {exc}") from exc
    tls = None
    if args.tls_cert is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key: {exc}") from exc
    async with listening(args.host, args.port):
        with contextlib.suppress(asyncio.CancelledError):
            await run_salesforce_sim(args.schema, settings, args.host, args.port, _ready, tls)
    return 0


async def _sim_dynamics(args: argparse.Namespace) -> int:
    applications = []
    for given in [f"{args.client_id}:{args.client_secret_env}", *args.application]:
        client_id, _, env_name = given.partition(":")
        secret = os.environ.get(env_name)
        if not client_id or not secret:
            raise ConfigError(f"--application {given!r}: want CLIENT_ID:ENV_NAME with ENV_NAME set")
        applications.append((client_id, secret))
    users = read_users(args.users, DataverseSimSettings().users)
    (client_id, secret), *extra = applications
    try:
        settings = DataverseSimSettings(
            org_url=args.org_url, client_id=client_id, client_secret=secret,
            applications=tuple(extra), users=users, time_scale=args.time_scale,
            admin_token=sim_admin_token(),
            requests_per_window=args.requests_per_window,
            execution_ms_per_window=args.execution_ms_per_window,
            execution_ms_per_operation=args.execution_ms_per_operation,
            max_concurrent=args.max_concurrent,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"simulator settings: {exc}") from exc
    try:
        schema = load_schema(args.schema) if args.schema is not None else None
    except ValueError as exc:  # not JSON, or not a schema plan
        raise ConfigError(f"schema file {args.schema}: {exc}") from exc
    async with listening(args.host, args.port):
        with contextlib.suppress(asyncio.CancelledError):
            tls = server_tls(args.tls_cert, args.tls_key)
            await run_dynamics_sim(schema, settings, args.host, args.port, _ready, tls)
    return 0


async def _sim_backdocket(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.client_secret_env)
    if not secret:
        raise ConfigError(f"set {args.client_secret_env} to the secret the simulator accepts")
    low, high = parse_latency(args.latency_ms)
    try:
        settings = SimSettings(
            client_id=args.client_id,
            client_secret=secret,
            admin_token=sim_admin_token(),
            token_ttl=args.token_ttl,
            rate=args.rate,
            burst=args.burst,
            latency_min=low,
            latency_max=high,
            fault_503_rate=args.fault_503,
            fault_429_rate=args.fault_429,
            fault_429_no_retry_after_rate=args.fault_429_no_retry_after,
            fault_retry_after=args.fault_retry_after,
            fault_500_rate=args.fault_500,
            fault_reset_rate=args.fault_reset,
            fault_slow_rate=args.fault_slow,
            fault_slow_seconds=args.fault_slow_seconds,
            mutate_every=args.mutate_every,
            fault_seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(f"simulator settings: {exc}") from exc

    async with listening(args.host, args.port):
        with contextlib.suppress(asyncio.CancelledError):
            await run_forever(
                records=args.records,
                seed=args.seed,
                dirty=args.dirty,
                settings=settings,
                host=args.host,
                port=args.port,
                on_ready=_ready,
            )
    return 0


async def demo(args: argparse.Namespace) -> int:
    """``crmlift demo``: both simulators + embedded journal + migration + reports, then clean up.

    It plays the whole cast: the firm's BackDocket tenant, the destination org
    whose admin deployed the schema plan and licensed most staff as users, and
    the operator who writes the plan and runs the migration.
    """
    org = DEMO_ORGS[args.destination]
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"CRMLIFT_DEMO_BACKDOCKET_SECRET": secrets.token_urlsafe(24),
           "CRMLIFT_DEMO_DESTINATION_SECRET": secrets.token_urlsafe(24)}  # fmt: skip
    os.environ.update(env)
    console.print(f"[bold]crmlift demo[/]: a {args.records}-record BackDocket tenant → {org.label}")
    backdocket_args = (
        "--records", str(args.records), "--seed", str(args.seed), "--dirty",
        "--client-secret-env", "CRMLIFT_DEMO_BACKDOCKET_SECRET", "--latency-ms", "30-150",
    )  # fmt: skip
    async with simulator("backdocket", *backdocket_args, env=env) as backdocket_url:
        source = BackDocketConfig(
            backdocket_url, "crmlift", Secret(env["CRMLIFT_DEMO_BACKDOCKET_SECRET"])
        )
        schema_path, users_path = await prepare_org(source, workdir, DEMO_ADMIN, org.schema)
        sim_args = (
            "--schema", str(schema_path), "--users", str(users_path),
            "--client-secret-env", "CRMLIFT_DEMO_DESTINATION_SECRET",
        )  # fmt: skip
        async with simulator(args.destination, *sim_args, env=env) as destination_url:
            plan_path = workdir / "plan.toml"
            plan_text = demo_plan(backdocket_url, org.destination(destination_url))
            plan_path.write_text(plan_text, encoding="utf-8")
            console.print(f"BackDocket at {backdocket_url}, {org.label} at {destination_url}")
            console.print(f"plan: {plan_path}")
            plan = load_plan(plan_path)
            configure_logging(plan.output_dir / "crmlift.log.jsonl")
            outcome = await _with_progress(
                lambda board: run_migrate(plan, progress=board), show=True
            )
    _print_migrate_summary(outcome)
    console.print(f"log: {plan.output_dir / 'crmlift.log.jsonl'}")
    return 0


async def read_collection(source: BackDocketConfig, collection: str) -> list[Record]:
    """Every record of one (small) source collection, read straight from the source."""
    async with BackDocketClient(source, Governor(profile_for("backdocket"))) as client:
        window = Window(collection, EPOCH, None)
        return [r async for page in client.pages(window, None) for r in page.records]


SchemaFile = Callable[[list[Record]], bytes]
"""The schema plan an org's admin deploys, from the source's custom field definitions."""


def salesforce_schema(definitions: list[Record]) -> bytes:
    return backdocket_salesforce.schema_plan(definitions).to_json()


def dynamics_schema(definitions: list[Record]) -> bytes:
    return orjson.dumps(backdocket_dynamics.schema_plan(definitions))


async def prepare_org(
    source: BackDocketConfig, workdir: Path, admin: str, schema: SchemaFile = salesforce_schema
) -> tuple[Path, Path]:
    """Play the org's admin: deploy the schema plan and license most staff as users.

    Returns the schema file and the users file a destination simulator starts with.
    """
    definitions = await read_collection(source, "custom_field_definitions")
    users = await read_collection(source, "users")
    schema_path, users_path = workdir / "org-schema.json", workdir / "org-users.json"
    schema_path.write_bytes(schema(definitions))
    users_path.write_bytes(orjson.dumps(demo_org_users(users, admin)))
    return schema_path, users_path


def demo_org_users(users: list[Record], admin: str) -> list[tuple[str, str]]:
    """The org's users: the admin and every BackDocket user with an email but one in four,
    so the owner report shows both matches and fallbacks."""
    org = [("Org Admin", admin)]
    for index, user in enumerate(users):
        email = user.get("email")
        if isinstance(email, str) and index % 4 != 3:
            org.append((str(user.get("name") or email), email))
    return list(dict.fromkeys(org))


DEMO_ADMIN = "admin@demo-firm.example"


def demo_plan(backdocket_url: str, destination: str) -> str:
    """The plan the demo writes: the embedded journal, both simulators.

    Every demo is a new migration into a new (simulated) org, so its name is
    unique: the id map of an earlier demo must never meet this one's org.
    """
    name = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return f"""# Written by `crmlift demo`.
[migration]
name = "{name}"
output_dir = "reports"

[source]
platform = "backdocket"
base_url = "{backdocket_url}"
client_id = "crmlift"
client_secret = {{ env = "CRMLIFT_DEMO_BACKDOCKET_SECRET" }}
page_size = 500

[source.quota]
rate = 20
burst = 40
concurrency = 8

[extract]
window_records = 2000
files = true
{destination}"""


def salesforce_destination(url: str) -> str:
    return f"""
[destination]
platform = "salesforce"
login_url = "{url}"
client_id = "crmlift"
client_secret = {{ env = "CRMLIFT_DEMO_DESTINATION_SECRET" }}
fallback_owner_email = "{DEMO_ADMIN}"
bulk_threshold = 2000

[mapping]
max_file_bytes = 26214400
"""


def dynamics_destination(url: str) -> str:
    sim = DataverseSimSettings()
    return f"""
[destination]
platform = "dynamics"
environment_url = "{sim.org_url}"
api_url = "{url}"
authority_url = "{url}"
tenant_id = "{sim.tenant_id}"
client_id = "crmlift"
client_secret = {{ env = "CRMLIFT_DEMO_DESTINATION_SECRET" }}
fallback_owner_email = "{DEMO_ADMIN}"

[mapping]
publisher_prefix = "{sim.publisher_prefix}"
"""


@dataclass(frozen=True, slots=True)
class DemoOrg:
    """How the demo plays one destination: its admin's schema and its plan table."""

    label: str
    schema: SchemaFile
    destination: Callable[[str], str]
    """The plan's ``[destination]`` (and ``[mapping]``) for the simulator at a URL."""


DEMO_ORGS = {
    "salesforce": DemoOrg("Salesforce", salesforce_schema, salesforce_destination),
    "dynamics": DemoOrg("Dynamics 365 (Dataverse)", dynamics_schema, dynamics_destination),
}


@contextlib.asynccontextmanager
async def simulator(platform: str, *sim_args: str, env: dict[str, str]) -> AsyncIterator[str]:
    """Start ``crmlift sim PLATFORM`` as a child process; yield its URL; stop it by PID."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "sim", platform, *sim_args,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
        text = line.decode().strip()
        if not text.startswith("READY "):
            raise PlatformUnavailable(f"{platform}-sim", "start", f"said {text!r}")
        yield text.removeprefix("READY ")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _with_progress(run: Callable[[ProgressBoard], Awaitable[T]], *, show: bool) -> T:
    """Run ``run`` with a progress board, drawn as rich bars when ``show``."""
    board = ProgressBoard()
    if not show:
        return await run(board)
    columns = (
        TextColumn("[bold]{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, refresh_per_second=4) as bars:
        drawer = asyncio.create_task(_draw(board, bars), name="progress:draw")
        try:
            return await run(board)
        finally:
            drawer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drawer
            _sync(board, bars, {})


async def _draw(board: ProgressBoard, bars: Progress) -> None:
    ids: dict[str, TaskID] = {}
    while True:
        _sync(board, bars, ids)
        await asyncio.sleep(0.25)


def _sync(board: ProgressBoard, bars: Progress, ids: dict[str, TaskID]) -> None:
    for track in list(board.tracks.values()):
        if track.name not in ids:
            ids[track.name] = bars.add_task(track.name, total=track.total, rate=0.0)
        bars.update(
            ids[track.name],
            completed=track.done,
            total=track.total or None,
            rate=track.rate(),
        )


def _print_migrate_summary(outcome: MigrateOutcome) -> None:
    report = outcome.report
    table = Table(title=f"migration {outcome.run.run_id} → {report.destination}")
    columns = ("collection", "object", "source", "created", "updated", "unchanged", "skipped",
               "failed")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:2] else "right")
    for r in report.rows:
        table.add_row(r.collection, r.object, str(r.source), str(r.created), str(r.updated),
                      str(r.unchanged), str(r.skipped), str(r.failed))  # fmt: skip
    out.print(table)
    out.print(
        f"{outcome.extract.staged} records extracted (run total); {report.created} created, "
        f"{len(report.failures)} skipped or failed (failures.csv); owners: "
        f"{report.owners_matched} matched, {len(report.owners_fell_back)} fell back"
    )
    out.print(consistency_line(outcome.extract))
    if report.schema_missing:
        out.print(f"waiting for schema: {', '.join(report.schema_missing)}")
    out.print("reports: " + "  ".join(str(p) for p in outcome.reports))


def _print_extract_summary(outcome: ExtractOutcome) -> None:
    s = outcome.summary
    table = Table(title=f"extraction {outcome.run.run_id}")
    for column in ("collection", "expected", "staged", "windows", "pages", "issues"):
        table.add_column(column, justify="left" if column == "collection" else "right")
    for c in s.collections:
        table.add_row(
            c.collection,
            str(c.expected),
            str(c.staged),
            str(c.windows),
            str(c.pages),
            str(c.issues),
        )
    table.add_row(
        "[bold]total",
        str(sum(c.expected for c in s.collections)),
        f"[bold]{s.staged}",
        "",
        "",
        str(s.issues),
    )
    out.print(table)
    g = outcome.governor.stats
    for line in (run_total_line(s), this_process_line(s), consistency_line(s)):
        out.print(line, markup=False, highlight=False)
    out.print(
        f"This process: {g.requests} requests ({g.observed_rate():.1f}/s), "
        f"{g.throttled} throttled, {g.retries} retries; {s.deletions} deletions; "
        f"files stored {s.files_stored}, failed {s.files_failed}",
        markup=False,
        highlight=False,
    )
    out.print(f"reports: {outcome.reports[0]}  {outcome.reports[1]}")


def parse_latency(text: str) -> tuple[float, float]:
    """``30-250`` (ms) → (0.03, 0.25) seconds."""
    try:
        low, _, high = text.partition("-")
        lo, hi = float(low), float(high or low)
    except ValueError as exc:
        raise ConfigError(f"--latency-ms {text!r} must look like 30-250") from exc
    if lo < 0 or hi < lo:
        raise ConfigError(f"--latency-ms {text!r} must be a non-negative, ascending range")
    return lo / 1000, hi / 1000
