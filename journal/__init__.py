"""The durable journal: runs, staging, checkpoints, files and record issues in Postgres."""

from __future__ import annotations

from journal.core import Journal, JournalSettings, open_journal

__all__ = ["Journal", "JournalSettings", "open_journal"]
