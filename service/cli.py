"""``crmlift``: the operator's commands.

Exit codes (the README's table): 0 done; 1 unexpected error; 2 bad plan or arguments;
3 credentials refused; 4 a platform kept failing or could not be reached; 5 journal
unavailable; 6 quota exhausted; 7 an object the destination has lacks part of the
schema plan; 8 a platform refused for good; 9 reconcile says no-go; 75 stopped by the
operator (resumable).
"""

# ruff: noqa: E402  (the Ctrl-C handler goes in before the slow imports below)
from __future__ import annotations

import signal
import sys
from pathlib import Path

STOPPED_EXIT = 75
"""``Interrupted.exit_code``, known before the imports that define it."""


def _stopped_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while crmlift is still importing (about a second): nothing has started,
    so one line and exit 75, not a KeyboardInterrupt traceback from deep in an import."""
    sys.stderr.write("crmlift: stopped by the operator before anything started\n")
    raise SystemExit(STOPPED_EXIT)


if __name__ == "__main__" or Path(sys.argv[0]).name == "crmlift":
    signal.signal(signal.SIGINT, _stopped_while_starting)

import argparse
import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import uvloop

from adapters.errors import CrmliftError, Interrupted
from adapters.secrets import redact
from service import commands
from service.approval import DEFAULT_SAMPLE
from service.logs import configure_logging
from service.plan import MigrationPlan, ensure_writable_dir, load_plan
from service.shutdown import Shutdown

EXIT_CODES = """exit codes:
  0   done
  1   unexpected error (see the log file)
  2   bad plan, arguments or run id; a resume of a plan changed since its run
      started; the migration is in use by another process (named)
  3   credentials refused by a platform
  4   a platform kept failing after every retry, or could not be reached
      (the message names the URL and the cause: refused, DNS, TLS, timeout)
  5   the journal database is unavailable
  6   a platform quota is exhausted (resumable once it frees up)
  7   an object the destination has lacks a field, a lookup to its planned target
      or an org setting (Allow Activities, HasNotes, ...) of the schema plan;
      a missing custom object does not stop the run: its records wait; or the
      audit found a blocking finding the plan does not acknowledge (audit.md)
  8   a platform refused in a way no retry changes (permission, API version,
      a repeated cursor), with its own reason
  9   crmlift reconcile: the verdict is no-go (the reasons on stderr and in
      reconcile.md / reconcile.html)
  10  crmlift delta with [delta] conflicts = "stop": fields changed both in the
      destination and at the source; refused before any write (delta-summary.md)
  75  stopped by SIGINT/SIGTERM; the run is resumable with --resume RUN_ID
"""

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error shape: one line, exit 2 (usage stays in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _plan_file(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("--plan needs the path of a plan file (TOML)")
    return Path(text)


def _count(text: str) -> int:
    """A record count: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _port(text: str) -> int:
    """A TCP port; 0 picks a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not 0..65535")
    return value


def _duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``24h``, ``2d`` (a bare number is seconds); more than zero."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in units else "s"
    try:
        value = float(raw.removesuffix(unit) if raw[-1:] in units else raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (90s, 5m, 24h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return timedelta(seconds=value * units[unit])


def _instant(text: str) -> datetime:
    """An ISO 8601 time (``2026-12-03T18:00Z``); without an offset, UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a readable file")
    return path


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, with the help an operator reads first."""
    parser = _Parser(
        prog="crmlift",
        description="Move a law firm's practice data from BackDocket or CASEpeer into a CRM, "
        "journaled in PostgreSQL so every run can resume and roll back.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log info events on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    extract = commands.add_parser(
        "extract",
        help="read the plan's source into the journal's staging",
        description="Read every collection of the plan's source into staging, windows in "
        "parallel within the source's rate limit. Safe to kill: --resume continues the run.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_args(extract)

    migrate = commands.add_parser(
        "migrate",
        help="extract, gate the schema, resolve owners and load into the destination",
        description="The full run: extract the source into staging, check the destination "
        "has the schema plan's fields, lookups and org settings on every object it has (a "
        "missing custom object only makes its records wait), resolve owners by email, then "
        "load every object in dependency order, upserting on the source id so a rerun "
        "duplicates nothing. Per-record failures never stop the run; they land in failures.csv.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_args(migrate)
    migrate.add_argument(
        "--sample", type=_count, nargs="?", const=DEFAULT_SAMPLE, metavar="N",
        help=f"a sample run: about N records (default {DEFAULT_SAMPLE}) spanning every "
        "collection, with their parents and the dirty cases, into [sample_destination] if "
        "the plan has one; writes diff.csv and diff.html (source → sent → held)",
    )  # fmt: skip

    audit = commands.add_parser(
        "audit",
        help="profile the source and check it against the destination before any record moves",
        description="Extract the source into a journaled run (or reuse --run's staging), read "
        "the destination's metadata and users, and write audit.json, audit.md and audit.html: "
        "the source profile, dirty records (duplicates, orphans, looping hierarchies, missing "
        "or malformed emails and dates, custom values that do not parse, unknown keys), and "
        "the gaps (schema, picklist values, required fields, values too long, files over the "
        "limit, staff with no destination user). Writes nothing to the destination. Exit 7 "
        "when a blocking finding the plan does not acknowledge ([audit] acknowledge) would "
        "stop migrate, which runs the same checks first.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    audit.add_argument("--run", metavar="RUN_ID", help="audit this run's staging (no extraction)")
    audit.add_argument("--no-progress", action="store_true", help="no progress bars")

    delta = commands.add_parser(
        "delta",
        help="pick up what changed at the source since the last load, never clobbering",
        description="Read what changed in the source since the newest completed load's "
        "watermark (less --overlap) and the deletion feed, and apply it through the same "
        "loader: a three-way merge per field keeps what people changed in the destination "
        "([delta] conflicts), source deletions follow [delta] deletions. Each cycle is a "
        "journaled run (rollback --to-before undoes it); --watch repeats until --until or a "
        "signal (between cycles: exit 0; a cycle cut short: exit 75, resumable).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_args(delta)
    delta.add_argument(
        "--overlap", type=_duration, default="5m",
        help="read from this long before the watermark (clock skew, tied timestamps; 5m)",
    )  # fmt: skip
    delta.add_argument("--watch", type=_duration, metavar="EVERY", help="a cycle every EVERY")
    delta.add_argument("--until", type=_instant, help="with --watch: when to stop (ISO 8601)")

    approve = commands.add_parser(
        "approve",
        help="approve a sample run: a full run may then start under require_approved_sample",
        description="Record in the journal that the operator reviewed a completed sample "
        "run's diff and approves its mapping: who, when, the run and the mapping's "
        "fingerprint. With [migration] require_approved_sample = true, a full migrate starts "
        "only when a sample made with the same mapping fingerprint was approved.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    approve.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    approve.add_argument("--run", required=True, metavar="SAMPLE_RUN_ID", help="the sample run")
    approve.add_argument(
        "--by", default=os.environ.get("USER", ""), help="who approves (default: $USER)"
    )

    _add_mapping_command(commands)

    rollback = commands.add_parser(
        "rollback",
        help="undo a run in the destination: delete what it created, restore what it updated",
        description="Delete the records the run created (children first) and give the records "
        "it updated their pre-images back. A record changed in the destination after the run "
        "wrote it is reported as a conflict and left alone unless --force. Journaled: rerun "
        "the same command after a crash and it continues without acting twice.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    which = rollback.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_ID", help="the run to undo")
    which.add_argument(
        "--to-before", metavar="RUN_ID",
        help="undo every load into the plan's org started at or after RUN_ID, newest first",
    )  # fmt: skip
    rollback.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    rollback.add_argument("--force", action="store_true", help="revert conflicts too")
    rollback.add_argument(
        "--objects", type=lambda t: tuple(o.strip() for o in t.split(",") if o.strip()),
        metavar="A,B", help="only these destination objects",
    )  # fmt: skip

    reconcile = commands.add_parser(
        "reconcile",
        help="read the destination back and say go or no-go for a run",
        description="Compare a run with what the destination holds now: counts per object "
        "(every difference named with its record and reason), every lookup and owner, files "
        "(present, size, checksum where the platform keeps one), totals of numeric fields, "
        "and a seeded sample compared field by field. Read-only; reports reconcile.json, .md "
        "and .html in the run's report directory. Exit 0 on go, 9 on no-go.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reconcile.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    reconcile.add_argument("--run", required=True, metavar="RUN_ID", help="the run to check")
    reconcile.add_argument(
        "--sample-size", type=_count, default=25,
        help="records per object compared field by field (default 25)",
    )  # fmt: skip
    reconcile.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")

    schema = commands.add_parser(
        "schema",
        help="write the schema plan the destination admin must deploy",
        description="Read the source's custom field definitions and write every custom "
        "object and field the migration needs, as a schema file (JSON).",
    )
    schema.add_argument("--plan", type=_plan_file, required=True, help="the migration plan (TOML)")
    schema.add_argument("--out", type=Path, default=Path("schema-plan.json"))

    estimate = commands.add_parser(
        "estimate",
        help="predict the calls, Bulk batches and time the load needs against the quotas",
        description="Count the source, split a sample of each collection into destination "
        "objects, and predict per object the API calls, operations and Bulk batches the load "
        "needs and how long the destination's quota allows. Warns when the run would exceed "
        "the daily allocation or the plan's [migration] cutover_hours. Reads the source only.",
    )
    estimate.add_argument(
        "--plan", type=_plan_file, required=True, help="the migration plan (TOML)"
    )
    estimate.add_argument("--out", type=Path, help="also write the estimate as JSON")
    estimate.add_argument(
        "--delta-window", type=_duration, metavar="WINDOW",
        help="price a delta cycle: the records changed in the last WINDOW (e.g. 24h)",
    )  # fmt: skip

    runs = commands.add_parser(
        "runs",
        help="list the plan's runs and their status",
        description="List the plan's recent runs. A run whose process is gone (killed, out of "
        "memory, its container lost) shows as interrupted, with the command that resumes it.",
    )
    runs.add_argument("--plan", type=_plan_file, required=True, help="the migration plan (TOML)")

    sim = commands.add_parser("sim", help="serve a platform simulator for demos and the bench")
    sims = sim.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    backdocket = sims.add_parser(
        "backdocket", help="a generated BackDocket tenant behind the BackDocket REST contract"
    )
    _add_backdocket_sim_args(backdocket)
    salesforce = sims.add_parser(
        "salesforce", help="a Salesforce org: OAuth, REST, sObject Collections, Bulk API 2.0"
    )
    salesforce.add_argument(
        "--schema", type=_existing_file, help="custom objects and fields (JSON)"
    )
    salesforce.add_argument(
        "--users", type=_existing_file, help="users of the org: JSON [[name, email]]"
    )
    salesforce.add_argument("--host", default="127.0.0.1")
    salesforce.add_argument("--port", type=_port, default=0, help="0 picks a free port")
    salesforce.add_argument("--client-id", default="crmlift")
    salesforce.add_argument(
        "--client-secret-env",
        default="SALESFORCE_CLIENT_SECRET",
        help="environment variable holding the secret the simulator accepts",
    )
    salesforce.add_argument("--daily-api-requests", type=int, default=100_000)
    salesforce.add_argument(
        "--tls-cert", type=_existing_file, help="serve HTTPS with this certificate (PEM)"
    )
    salesforce.add_argument(
        "--tls-key", type=_existing_file, help="the certificate's private key (PEM)"
    )
    salesforce.add_argument(
        "--bulk-records-per-second", type=float, default=50_000.0,
        help="how fast Bulk API 2.0 jobs process",
    )  # fmt: skip
    salesforce.add_argument("--token-ttl", type=float, default=7200.0, help="session lifetime, s")
    _add_sim_fault_args(salesforce)
    salesforce.add_argument("--fault-503", type=float, default=0.0, help="share of calls given 503")
    salesforce.add_argument(
        "--fault-reset-after-write", type=float, default=0.0,
        help="share of writes applied and then their answer cut",
    )  # fmt: skip
    salesforce.add_argument(
        "--fault-partial", type=float, default=0.0,
        help="share of Collections/Bulk records failing UNABLE_TO_LOCK_ROW",
    )  # fmt: skip
    salesforce.add_argument("--fault-seed", type=int, default=0, help="seed of the fault RNG")
    salesforce.add_argument(
        "--state-country-picklists", action="store_true",
        help="turn on State and Country/Territory Picklists (ISO-code address picklists)",
    )  # fmt: skip

    dynamics = sims.add_parser(
        "dynamics",
        help="a Dataverse environment: Web API v9.2, $batch, per-user service protection",
    )
    _add_dynamics_sim_args(dynamics)

    demo = commands.add_parser(
        "demo",
        help="migrate a generated BackDocket tenant into a simulated Salesforce or Dataverse org",
        description="A self-contained demonstration: starts the BackDocket and destination "
        "simulators, writes a plan, migrates on the embedded journal, prints the summary "
        "and where the reports are, and stops everything it started.",
    )
    demo.add_argument("--records", type=_count, default=10_000, help="tenant size (default 10000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--workdir", type=Path, default=Path("crmlift-demo"))
    demo.add_argument(
        "--destination",
        choices=("salesforce", "dynamics"),
        default="salesforce",
        help="the simulated CRM to migrate into (default salesforce)",
    )
    return parser


def _add_mapping_command(commands: Any) -> None:
    """``crmlift mapping propose|confirm``: the mapping file the operator reviews."""
    mapping = commands.add_parser(
        "mapping",
        help="propose the mapping file (fields, value maps) and confirm it",
        description="propose: write mapping.toml, every source custom field's destination "
        "field and every enumeration's value map, each with how it was chosen and a "
        "confidence (review = true where guessed). confirm: check it against the source and "
        "the destination and journal its fingerprint; with [mapping] require_confirmed = true "
        "migrate starts only with a confirmed, unchanged file.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = mapping.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    propose = actions.add_parser("propose", help="write the proposed mapping file")
    propose.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    propose.add_argument(
        "--out", type=Path, help="where to write it (default: [mapping] file, else mapping.toml "
        "beside the plan)"
    )  # fmt: skip
    propose.add_argument("--force", action="store_true", help="replace an existing file")
    confirm = actions.add_parser("confirm", help="check the mapping file and journal it")
    confirm.add_argument("--plan", type=_plan_file, required=True, help="the migration plan")
    confirm.add_argument("--file", type=Path, help="the file (default: [mapping] file)")
    confirm.add_argument(
        "--by", default=os.environ.get("USER", ""), help="who confirms (default: $USER)"
    )
    for action in (propose, confirm):
        action.add_argument(
            "--run", metavar="RUN_ID", help="read the custom field definitions as this run "
            "staged them (default: from the source now)"
        )  # fmt: skip


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """The options of every command that starts or resumes a run."""
    parser.add_argument("--plan", type=_plan_file, required=True, help="the migration plan (TOML)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_backdocket_sim_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=_count, default=10_000, help="approximate tenant size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dirty", action="store_true", help="include every dirty-data case")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=0, help="0 picks a free port")
    parser.add_argument("--client-id", default="crmlift")
    parser.add_argument(
        "--client-secret-env",
        default="BACKDOCKET_CLIENT_SECRET",
        help="environment variable holding the secret the simulator accepts",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per token")
    parser.add_argument("--burst", type=float, default=40.0)
    parser.add_argument("--latency-ms", default="30-250", help="per-call latency range, ms")
    parser.add_argument("--fault-503", type=float, default=0.0, help="share of calls given 503")
    parser.add_argument("--fault-429", type=float, default=0.0, help="share of calls given 429")
    parser.add_argument(
        "--fault-429-no-retry-after", type=float, default=0.0,
        help="share of calls given 429 without Retry-After",
    )  # fmt: skip
    parser.add_argument(
        "--fault-retry-after", type=float, default=0.2,
        help="seconds an injected 429 or 503 asks the client to wait",
    )  # fmt: skip
    _add_sim_fault_args(parser)
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="token lifetime, s")
    parser.add_argument("--mutate-every", type=int, default=0, help="update a record every N lists")


def _add_sim_fault_args(parser: argparse.ArgumentParser) -> None:
    """Fault flags both simulators share; the rates are shares of calls, 0 to 1."""
    parser.add_argument("--fault-500", type=float, default=0.0, help="share of calls given 500")
    parser.add_argument(
        "--fault-reset", type=float, default=0.0,
        help="share of calls whose connection is cut (nothing applied)",
    )  # fmt: skip
    parser.add_argument("--fault-slow", type=float, default=0.0, help="share of calls held back")
    parser.add_argument(
        "--fault-slow-seconds", type=float, default=2.0, help="how long a slow call is held, s"
    )


def _add_dynamics_sim_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema", type=_existing_file, help="the schema plan the admin deployed (JSON)"
    )
    parser.add_argument("--users", type=_existing_file, help="licensed users: JSON [[name, email]]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=0, help="0 picks a free port")
    parser.add_argument("--org-url", default="https://crmlift-sim.crm.dynamics.com",
                        help="the environment URL tokens are scoped to")  # fmt: skip
    parser.add_argument("--client-id", default="crmlift")
    parser.add_argument(
        "--client-secret-env",
        default="DATAVERSE_CLIENT_SECRET",
        help="environment variable holding the secret the simulator accepts",
    )
    parser.add_argument(
        "--application", action="append", default=[], metavar="CLIENT_ID:ENV_NAME",
        help="another application user (repeatable); its secret in ENV_NAME",
    )  # fmt: skip
    parser.add_argument(
        "--time-scale", type=float, default=1.0,
        help="platform seconds per wall second (300 s windows pass faster)",
    )  # fmt: skip
    parser.add_argument("--requests-per-window", type=int, default=6000)
    parser.add_argument("--execution-ms-per-window", type=int, default=1_200_000)
    parser.add_argument("--execution-ms-per-operation", type=float, default=5.0,
                        help="server time each operation costs, platform ms")  # fmt: skip
    parser.add_argument("--max-concurrent", type=int, default=52)
    parser.add_argument(
        "--tls-cert", type=_existing_file, help="serve HTTPS with this certificate (PEM)"
    )
    parser.add_argument(
        "--tls-key", type=_existing_file, help="the certificate's private key (PEM)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except CrmliftError as exc:
        # One plain line, never wrapped: operators grep it and scripts parse it.
        print(f"crmlift: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C before the run's own signal handling is in place: nothing to resume.
        print("crmlift: stopped by the operator before a run was started", file=sys.stderr)
        return STOPPED_EXIT


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "extract": commands.extract,
        "migrate": commands.migrate,
        "rollback": commands.rollback,
        "reconcile": commands.reconcile,
        "approve": commands.approve,
        "mapping": commands.mapping,
        "delta": commands.delta,
        "audit": commands.audit,
        "schema": commands.schema,
        "estimate": commands.estimate,
        "runs": commands.runs,
        "sim": commands.sim,
        "demo": commands.demo,
    }
    if args.command in (
        "extract",
        "migrate",
        "rollback",
        "reconcile",
        "approve",
        "mapping",
        "delta",
        "audit",
        "schema",
        "estimate",
        "runs",
    ):
        plan = load_plan(args.plan)
        args.loaded_plan = plan
        ensure_writable_dir(plan.output_dir, "plan migration.output_dir")
        configure_logging(_log_file(plan), console_level=_console_level(args))
    else:
        configure_logging(None, console_level=_console_level(args))
    args.shutdown = Shutdown()
    return run_async(handlers[args.command](args), args.shutdown)


def _log_file(plan: MigrationPlan) -> Path:
    return plan.output_dir / "crmlift.log.jsonl"


def _console_level(args: argparse.Namespace) -> int:
    return logging.INFO if args.verbose else logging.WARNING


def run_async(coro: Coroutine[Any, Any, T], shutdown: Shutdown | None = None) -> T:
    """Run on uvloop; SIGINT and SIGTERM stop the work at a point it can resume from
    (see ``service.shutdown``)."""
    stop = shutdown or Shutdown()

    async def supervised() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        stop.attach(task)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.request)
        try:
            return await coro
        finally:
            stop.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return uvloop.run(supervised())
    except asyncio.CancelledError:
        raise Interrupted("stopped before a run was started") from None


if __name__ == "__main__":
    sys.exit(main())
