"""Confirmations of a mapping file (``mapping_confirmations``): the content an operator
confirmed for a migration, by its fingerprint, with who and when.

The journal keeps the confirmed content itself, so what was agreed can be shown later
even after the file was edited again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One ``crmlift mapping confirm``."""

    migration: str
    fingerprint: str
    file: str
    confirmed_by: str
    confirmed_at: datetime


class MappingConfirmations:
    """Journal and look up mapping file confirmations."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def confirm(
        self, migration: str, fingerprint: str, file: str, content: Mapping[str, Any], by: str
    ) -> Confirmation:
        """Record that ``by`` confirmed ``content`` (fingerprint ``fingerprint``) now."""
        row = await self._pool.fetchrow(
            """INSERT INTO mapping_confirmations
                   (migration, fingerprint, file, content, confirmed_by)
               VALUES ($1, $2, $3, $4::jsonb, $5)
               RETURNING *""",
            migration,
            fingerprint,
            file,
            orjson.dumps(content).decode(),
            by,
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        return _confirmation(row)

    async def find(self, migration: str, fingerprint: str) -> Confirmation | None:
        """The latest confirmation of exactly this content for ``migration``, if any."""
        row = await self._pool.fetchrow(
            """SELECT * FROM mapping_confirmations
               WHERE migration = $1 AND fingerprint = $2
               ORDER BY confirmed_at DESC, confirmation_id DESC LIMIT 1""",
            migration,
            fingerprint,
        )
        return None if row is None else _confirmation(row)

    async def latest(self, migration: str) -> Confirmation | None:
        """The migration's most recent confirmation, whatever its content."""
        row = await self._pool.fetchrow(
            """SELECT * FROM mapping_confirmations WHERE migration = $1
               ORDER BY confirmed_at DESC, confirmation_id DESC LIMIT 1""",
            migration,
        )
        return None if row is None else _confirmation(row)


def _confirmation(row: asyncpg.Record) -> Confirmation:
    return Confirmation(
        row["migration"], row["fingerprint"], row["file"], row["confirmed_by"], row["confirmed_at"]
    )
