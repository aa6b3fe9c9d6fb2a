"""Apply Alembic migrations in-process, and refuse a database whose schema is newer than the code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations


class SchemaTooNew(RuntimeError):
    pass


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def code_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _check_not_newer(connection: Connection) -> str | None:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return None
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError:
        raise SchemaTooNew(
            f"The database schema is at revision {current}, which this Peerbot does not know"
            f" (it knows up to {code_head()}). It was written by a newer Peerbot:"
            " upgrade Peerbot, or point it at another database."
        ) from None
    return current


def _run(connection: Connection, target: str, downgrade: bool) -> None:
    _check_not_newer(connection)
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    if downgrade:
        command.downgrade(cfg, target)
    else:
        command.upgrade(cfg, target)


async def _migrate(engine: AsyncEngine, target: str, downgrade: bool) -> None:
    """Run the migrations in one transaction.

    On SQLite, foreign keys are off while they run: batch mode rebuilds a table by copying it and
    dropping the old one, and with foreign keys on, dropping a parent table (groups) deletes every row
    that refers to it. The keys are checked once the copy is done, and the migration is undone if any
    row refers to nothing.
    """
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # outside a transaction, or SQLite ignores it
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(_run, target, downgrade)
                if sqlite and (broken := (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()):
                    raise RuntimeError(f"the migration left rows that refer to nothing: {broken[:5]}")
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Apply the migrations up to `target`; returns the revisions before and after (equal: nothing
    was to do)."""
    before = await current_revision(engine)
    await _migrate(engine, target, False)
    return before, await current_revision(engine)


async def downgrade(engine: AsyncEngine, target: str = "base") -> None:
    await _migrate(engine, target, True)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_check_not_newer)
