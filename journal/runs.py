"""Runs: one row per migration attempt, the anchor of everything journaled."""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
import psutil
import structlog

from adapters.errors import ConfigError

log = structlog.get_logger(__name__)

RunStatus = Literal["running", "interrupted", "failed", "extracted", "completed"]

START_TIME_TOLERANCE = 1.0
"""Seconds two readings of one process's start time may differ (clock-tick rounding)."""


@dataclass(frozen=True, slots=True)
class RunProcess:
    """The process that last started or resumed a run.

    A run killed with SIGKILL never says goodbye, so its status stays ``running``;
    the pid alone cannot prove it is gone (pids are reused), but the pid with the
    process's start time can.
    """

    pid: int
    host: str
    started_at: datetime
    """When the OS started that process (not when the run started)."""

    @classmethod
    def current(cls) -> RunProcess:
        me = psutil.Process()
        return cls(me.pid, socket.gethostname(), datetime.fromtimestamp(me.create_time(), UTC))

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it ran on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            created = process.create_time()
            if process.status() == psutil.STATUS_ZOMBIE:
                return False  # dead, only not yet reaped by its parent
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # it exists and we may not inspect it: never call a live run gone
        return abs(created - self.started_at.timestamp()) <= START_TIME_TOLERANCE


@dataclass(frozen=True, slots=True)
class Run:
    """A run as the journal holds it."""

    run_id: str
    migration: str
    source: str
    destination: str | None
    status: RunStatus
    snapshot_at: datetime
    settings: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    process: RunProcess | None = None
    """Who last started or resumed it; None for runs journaled before crmlift recorded it."""
    fingerprint: dict[str, Any] | None = None
    """What it was started against (see ``check_fingerprint``); None for older runs."""

    @property
    def process_gone(self) -> bool:
        """The run says ``running`` but the process that ran it is known to be dead."""
        return (
            self.status == "running" and self.process is not None and self.process.alive() is False
        )


class RunLocked(ConfigError):
    """Another process is working on this migration into this org.

    Two writers of one id map and one staging area report false failures and can
    load a record twice; the second process stops before it touches anything.
    """

    def __init__(self, scope: str, holder: str) -> None:
        super().__init__(
            f"migration {scope} is in use by {holder}; wait for it to finish or stop it "
            "(`crmlift runs` lists it), then run again"
        )
        self.scope = scope
        self.holder = holder


class PlanChanged(ConfigError):
    """A resume was given a plan that points somewhere else than the run's start did."""

    def __init__(self, run_id: str, changes: list[str]) -> None:
        super().__init__(
            f"run {run_id} cannot resume with this plan: {'; '.join(changes)}. Restore the "
            "plan it started with, or start a new run without --resume"
        )
        self.run_id = run_id
        self.changes = changes


LOCK_APPLICATION_PREFIX = "crmlift:"
"""``application_name`` of the connection holding a run lock, followed by its run id
(63 bytes at most in PostgreSQL, so the run id and not the whole holder)."""


def lock_key(scope: str) -> int:
    """A stable signed 64-bit advisory-lock key for a migration scope."""
    digest = hashlib.blake2b(scope.encode(), digest_size=8, person=b"crmlift-run").digest()
    return int.from_bytes(digest, "big", signed=True)


def fingerprint_changes(started: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, by name, without any value of a mapping."""
    changes: list[str] = []
    for key in sorted(started.keys() | now.keys()):
        before, after = started.get(key), now.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            changes.append(f"{key} changed ({', '.join(f'{key}.{k}' for k in keys)})")
        else:
            changes.append(f"{key} changed from {before!r} to {after!r}")
    return changes


def new_run_id(now: datetime) -> str:
    """Sortable, readable and unique: ``r20261125-182233-3f9a``."""
    return f"r{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class Runs:
    """Create, find and move runs through their statuses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        *,
        migration: str,
        source: str,
        destination: str | None,
        settings: dict[str, Any],
        snapshot_at: datetime | None = None,
        fingerprint: dict[str, Any] | None = None,
    ) -> Run:
        """Start a run; its snapshot bounds what the main extraction reads."""
        snapshot = snapshot_at or datetime.now(UTC)
        run_id = new_run_id(snapshot)
        me = RunProcess.current()
        await self._pool.execute(
            """INSERT INTO runs
                   (run_id, migration, source, destination, status, snapshot_at, settings,
                    pid, host, process_started_at, fingerprint)
               VALUES ($1, $2, $3, $4, 'running', $5, $6::jsonb, $7, $8, $9, $10::jsonb)""",
            run_id,
            migration,
            source,
            destination,
            snapshot,
            orjson.dumps(settings).decode(),
            me.pid,
            me.host,
            me.started_at,
            None if fingerprint is None else orjson.dumps(fingerprint).decode(),
        )
        return await self.get(run_id)

    async def get(self, run_id: str) -> Run:
        """The run, or a ConfigError naming the id the operator gave."""
        row = await self._pool.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        if row is None:
            raise ConfigError(f"no run {run_id!r} in the journal (see `crmlift runs`)")
        return _run_from_row(row)

    async def recent(self, migration: str | None = None, limit: int = 20) -> list[Run]:
        """Newest runs first, optionally of one migration."""
        rows = await self._pool.fetch(
            """SELECT * FROM runs WHERE $1::text IS NULL OR migration = $1
               ORDER BY started_at DESC LIMIT $2""",
            migration,
            limit,
        )
        return [_run_from_row(r) for r in rows]

    async def check_fingerprint(self, run: Run, fingerprint: dict[str, Any]) -> None:
        """Refuse to resume ``run`` against another source, org or mapping (PlanChanged).

        A run journaled before fingerprints existed adopts this one: nothing is known
        to compare, and from now on the run is held to it.
        """
        if run.fingerprint is None:
            await self._pool.execute(
                "UPDATE runs SET fingerprint = $2::jsonb WHERE run_id = $1 AND fingerprint IS NULL",
                run.run_id,
                orjson.dumps(fingerprint).decode(),
            )
            log.warning("run.fingerprint_adopted", run_id=run.run_id)
            return
        changes = fingerprint_changes(run.fingerprint, fingerprint)
        if changes:
            raise PlanChanged(run.run_id, changes)

    @asynccontextmanager
    async def locked(self, scope: str) -> AsyncIterator[RunLock]:
        """Hold the lock of ``scope`` (a migration into an org) for the block, or raise RunLocked.

        A PostgreSQL session advisory lock on a connection kept for the block: it is
        released when the block ends and, because it belongs to the session, also when
        the process dies (SIGKILL, OOM), so a crashed run never leaves a stale lock.
        """
        key = lock_key(scope)
        async with self._pool.acquire() as conn:
            await _take(conn, scope, key, self)
            try:
                yield RunLock(conn)
            finally:
                await _release(conn, key)

    async def holder(self, key: int) -> str:
        """Who holds the advisory lock ``key``: its run, pid, host and start, as far as known."""
        name = await self._pool.fetchval(
            """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid""",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        run_id = (name or "").removeprefix(LOCK_APPLICATION_PREFIX)
        if not name or not name.startswith(LOCK_APPLICATION_PREFIX) or not run_id:
            return "another crmlift process (starting its run)"
        row = await self._pool.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        if row is None:
            return f"run {run_id}"
        return describe_holder(_run_from_row(row))

    async def set_status(self, run_id: str, status: RunStatus, message: str | None = None) -> None:
        """Move a run to ``status``; a final status also stamps ``finished_at``.

        ``running`` (a resume) records this process as the one working on the run.
        """
        final = status in ("failed", "extracted", "completed")
        me = RunProcess.current() if status == "running" else None
        await self._pool.execute(
            """UPDATE runs SET status = $2, message = $3, updated_at = now(),
                   finished_at = CASE WHEN $4 THEN now() ELSE NULL END,
                   pid = COALESCE($5, pid), host = COALESCE($6, host),
                   process_started_at = COALESCE($7, process_started_at)
               WHERE run_id = $1""",
            run_id,
            status,
            message,
            final,
            None if me is None else me.pid,
            None if me is None else me.host,
            None if me is None else me.started_at,
        )


@dataclass(frozen=True, slots=True)
class RunLock:
    """A held run lock; ``claim`` names its run so a refused process can name the holder."""

    _conn: asyncpg.pool.PoolConnectionProxy

    async def claim(self, run: Run) -> None:
        await self._conn.execute(
            "SELECT set_config('application_name', $1, false)",
            f"{LOCK_APPLICATION_PREFIX}{run.run_id}",
        )


async def _take(conn: asyncpg.pool.PoolConnectionProxy, scope: str, key: int, runs: Runs) -> None:
    """Take the lock or raise RunLocked; a holder that just let go is given a second try."""
    for _ in range(2):
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            return
        holder = await runs.holder(key)
        if not holder.startswith("another crmlift process"):
            break
    raise RunLocked(scope, holder)


async def _release(conn: asyncpg.pool.PoolConnectionProxy, key: int) -> None:
    """Let go of the lock; a lost connection has already let go, and must not hide the
    error that ended the run (the pool's reset also unlocks everything on release)."""
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
        await conn.execute("RESET application_name")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("run.unlock_failed", error=str(exc))


def describe_holder(run: Run) -> str:
    """``run r… (pid 4242 on host db1, since 2026-11-25 18:22:33 UTC)``: the process that
    last started or resumed the run, and when that process started."""
    if run.process is None:
        return f"run {run.run_id}"
    since = f"{run.process.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return f"run {run.run_id} (pid {run.process.pid} on host {run.process.host}, since {since})"


def _run_from_row(row: asyncpg.Record) -> Run:
    return Run(
        run_id=row["run_id"],
        migration=row["migration"],
        source=row["source"],
        destination=row["destination"],
        status=row["status"],
        snapshot_at=row["snapshot_at"],
        settings=orjson.loads(row["settings"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        message=row["message"],
        process=None
        if row["pid"] is None
        else RunProcess(row["pid"], row["host"], row["process_started_at"]),
        fingerprint=None if row["fingerprint"] is None else orjson.loads(row["fingerprint"]),
    )
