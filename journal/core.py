"""Open the journal: embedded server or DSN, pool, migrations, and its parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from adapters.errors import JournalUnavailable
from journal.blobs import BlobStore
from journal.checkpoints import Checkpoints
from journal.deletions import Deletions
from journal.embedded import EmbeddedPostgres
from journal.issues import Issues
from journal.operations import Operations
from journal.runs import Runs
from journal.schema import migrate
from journal.staging import Staging

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """Where the journal lives."""

    data_dir: Path
    """Embedded PostgreSQL data (``postgres/``) and file blobs (``blobs/``) live here."""
    dsn: str | None = None
    """A PostgreSQL DSN for production; None starts the embedded server in ``data_dir``."""
    pool_size: int = 24
    """Connections in the pool; extraction workers and writers share them, and a run holds
    one for its whole life (its lock, ``Runs.locked``)."""


@dataclass(frozen=True, slots=True)
class Journal:
    """The journal's parts over one connection pool."""

    pool: asyncpg.Pool
    runs: Runs
    checkpoints: Checkpoints
    staging: Staging
    deletions: Deletions
    blobs: BlobStore
    issues: Issues
    operations: Operations


@asynccontextmanager
async def open_journal(settings: JournalSettings) -> AsyncIterator[Journal]:
    """Connect (starting the embedded server if needed), migrate, and yield the journal."""
    embedded = None
    dsn = settings.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        dsn = await embedded.start()
    try:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=settings.pool_size, command_timeout=300
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise JournalUnavailable(f"cannot connect to the journal database: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("journal.migrated", applied=applied)
            yield Journal(
                pool=pool,
                runs=Runs(pool),
                checkpoints=Checkpoints(pool),
                staging=Staging(pool),
                deletions=Deletions(pool),
                blobs=BlobStore(pool, settings.data_dir / "blobs"),
                issues=Issues(pool),
                operations=Operations(pool),
            )
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await embedded.stop()
