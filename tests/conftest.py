"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test,
uvloop as the event loop, and BackDocket simulators on loopback."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import uvloop

from journal import Journal, JournalSettings, open_journal
from journal.embedded import EmbeddedPostgres


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    """Every async test runs on uvloop, like the service."""
    return {"uvloop": uvloop.new_event_loop}


def with_database(dsn: str, database: str) -> str:
    """The same server, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
async def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """CRMLIFT_TEST_DSN if set, else a private embedded PostgreSQL for this session."""
    configured = os.environ.get("CRMLIFT_TEST_DSN")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    dsn = await server.start()
    try:
        yield dsn
    finally:
        await server.stop()


@pytest.fixture
async def database_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(pg_dsn, name)
    finally:
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def journal_settings(database_dsn: str, tmp_path: Path) -> JournalSettings:
    """Journal settings pointing at the test's database and a private blob dir."""
    return JournalSettings(data_dir=tmp_path / "data", dsn=database_dsn)


@pytest.fixture
async def journal(journal_settings: JournalSettings) -> AsyncIterator[Journal]:
    """An open, migrated journal on the test's own database."""
    async with open_journal(journal_settings) as opened:
        yield opened
