from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from tests.matrix_proxy import MatrixProxy
from tests.support import Harness
from tests.synapse import Homeserver, require_synapse, start_homeserver

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str:
    return os.environ.get("PEERBOT_TEST_POSTGRES_URL", DEFAULT_PG)


async def _admin_connection() -> asyncpg.Connection:
    admin = make_url(_postgres_admin_url())
    return await asyncpg.connect(
        host=admin.host,
        port=admin.port,
        user=admin.username,
        password=admin.password,
        database=admin.database,
    )


async def _fresh_postgres_database() -> tuple[str, str]:
    """Create an empty database for one test; returns (its URL, its name)."""
    admin = make_url(_postgres_admin_url())
    name = f"peerbot_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await _admin_connection()
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but not reachable: {error}")
        pytest.skip(f"PostgreSQL not reachable at {admin.host}:{admin.port} ({error})")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.set(database=name).render_as_string(hide_password=False), name


async def _drop_postgres_database(name: str) -> None:
    conn = await _admin_connection()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """An empty PostgreSQL database, dropped afterwards."""
    url, name = await _fresh_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


EmptyDatabase = Callable[[str], AbstractAsyncContextManager[str]]


@pytest.fixture
def empty_database(tmp_path: Path) -> EmptyDatabase:
    """Opens an empty database of a kind ("sqlite" or "postgresql"); a PostgreSQL one is dropped after.

    For fixtures that choose the kind themselves (the store contract adds the in-memory store to both).
    """

    @asynccontextmanager
    async def opened(kind: str) -> AsyncIterator[str]:
        if kind == "sqlite":
            yield f"sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}"
            return
        url, name = await _fresh_postgres_database()
        try:
            yield url
        finally:
            await _drop_postgres_database(name)

    return opened


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, empty_database: EmptyDatabase) -> AsyncIterator[str]:
    """An empty database of each supported kind."""
    async with empty_database(request.param) as url:
        yield url


@pytest.fixture
def harness() -> Harness:
    return Harness()


@asynccontextmanager
async def migrated_store(url: str) -> AsyncIterator[SqlStore]:
    """The SQL store on a database (SQLite or PostgreSQL), migrated; closed after."""
    engine = make_engine(url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sql(db_url: str) -> AsyncIterator[Harness]:
    """The engine on fakes with the SQL store of each supported kind."""
    async with migrated_store(db_url) as store:
        yield Harness(store=store)


@pytest.fixture(scope="session")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    """A real Synapse on 127.0.0.1, once per session; skipped only where it cannot be installed."""
    require_synapse()
    server = start_homeserver(tmp_path_factory.mktemp("synapse"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def matrix_proxy(homeserver: Homeserver) -> AsyncIterator[MatrixProxy]:
    """A holding proxy in front of the test Synapse (tests/matrix_proxy.py): point the bot's
    `homeserver` at `matrix_proxy.url`, then hold or fail its sends."""
    proxy = MatrixProxy(homeserver.url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
