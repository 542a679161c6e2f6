"""File content, stored once per sha256 on disk beside the journal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable
from pathlib import Path

import asyncpg

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
"""Blobs are client documents: only the account crmlift runs as may read them,
whatever the umask says."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it owner-only (0700).

    ``mkdir``'s mode is filtered by the umask and ignored for an existing directory,
    so the mode is set explicitly.
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


class ContentMismatch(Exception):
    """Streamed bytes did not match the size or sha256 the source declared."""

    def __init__(self, expected_sha256: str, actual_sha256: str, expected_size: int, size: int):
        super().__init__(
            f"expected sha256 {expected_sha256} ({expected_size} bytes), "
            f"got {actual_sha256} ({size} bytes)"
        )
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class BlobStore:
    """Content-addressed files: ``root/ab/abcdef…``; a blob exists only once verified."""

    def __init__(self, pool: asyncpg.Pool, root: Path) -> None:
        self._pool = pool
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this digest lives."""
        return self.root / sha256[:2] / sha256

    async def has(self, sha256: str) -> bool:
        """True when the blob is journaled and its file is on disk."""
        row = await self._pool.fetchrow("SELECT path FROM blobs WHERE sha256 = $1", sha256)
        return row is not None and Path(row["path"]).exists()

    async def missing_for_run(self, run_id: str) -> list[tuple[str, str | None, int | None]]:
        """(document id, sha256, size) of staged documents whose content is not stored yet."""
        rows = await self._pool.fetch(
            """SELECT s.source_id, s.payload->>'sha256' AS sha256,
                      s.payload->>'size_bytes' AS size_bytes
               FROM staged_records s
               WHERE s.run_id = $1 AND s.collection = 'documents'
                 AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = s.payload->>'sha256')
               ORDER BY s.source_id""",
            run_id,
        )
        return [(r["source_id"], r["sha256"], _int_or_none(r["size_bytes"])) for r in rows]

    async def store(
        self, expected_sha256: str, expected_size: int, chunks: AsyncIterable[bytes]
    ) -> Path:
        """Stream ``chunks`` to disk, verify them, then publish the blob atomically.

        Memory stays at one chunk whatever the file's size; a mismatch leaves
        nothing behind and raises ContentMismatch.
        """
        final = self.path_for(expected_sha256)
        private_dir(self.root)
        private_dir(final.parent)
        partial = final.with_suffix(f".part-{os.getpid()}-{id(chunks):x}")
        digest = hashlib.sha256()
        size = 0
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != expected_sha256 or size != expected_size:
                raise ContentMismatch(expected_sha256, actual, expected_size, size)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        await self._pool.execute(
            """INSERT INTO blobs (sha256, size_bytes, path) VALUES ($1, $2, $3)
               ON CONFLICT (sha256) DO UPDATE SET path = EXCLUDED.path""",
            expected_sha256,
            size,
            str(final),
        )
        return final


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None
