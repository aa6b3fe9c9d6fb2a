"""Alembic environment. Peerbot runs it in-process on an open connection (see adapters/sql/migrate.py);
plain `alembic` runs also work with `-x url=...` or PEERBOT_DATABASE_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from adapters.sql.schema import metadata
from adapters.sql.store import make_engine

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone(url: str) -> None:
    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(run_on)
        await conn.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "PEERBOT_DATABASE_URL", "sqlite+aiosqlite:///data/peerbot.db"
    )
    asyncio.run(run_standalone(url))
