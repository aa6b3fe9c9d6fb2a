"""Work that several processes on one database must not do side by side, or must do once.

Processes of one bot share a database (PostgreSQL); started together on an empty one, each would
migrate it, and each would sync Discord's commands. Three tools, each a lock on the database:

- `database_lock(engine, name)`: processes entering it run its body one after another. Migrations run
  under `database_lock(engine, "migrate")`: the first process migrates, the others find the schema at
  its head and do nothing.
- `run_once(engine, name, version)`: the body runs once per `version` across every process and every
  restart; a process entering after it ran (or while it runs, once it is done) skips it. For the Discord
  command sync: `version` says what is synced (a digest of the commands), so a changed command set is
  synced again by the first process that has it.
- `unique_instance(store, base)`: a name no other live process on the database holds (`base`,
  `base-2`, ...), held until the store closes: the owner of this process's outbox leases.

PostgreSQL: session advisory locks (released by the server when the session ends, also when the process
is killed). SQLite: `flock` on a file beside the database file (released by the kernel with the process).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sql.process_lock import LockTaken, ProcessLock, advisory_key, lock_file
from adapters.sql.schema import adapter_state

if TYPE_CHECKING:
    from adapters.sql.store import SqlStore

RUN_ONCE_PREFIX = "peerbot.run-once."
MAX_INSTANCES = 100  # names tried after the base one: `base-2` ... `base-100`


@asynccontextmanager
async def database_lock(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """Hold the lock `name` on the database while the body runs; wait for it if another process holds
    it. An in-memory SQLite database, which no other process opens, needs none."""
    if engine.dialect.name == "postgresql":
        async with _advisory(engine, name):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    try:
        fd = os.open(lock_file(database, name), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        # A directory the bot cannot write: the database in it cannot be written either, and opening it
        # says so better than a lock file could. SQLite serves one process; SQLite's own lock remains.
        yield
        return
    try:
        await asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases its flock


@asynccontextmanager
async def _advisory(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    conn: AsyncConnection = await engine.connect()
    try:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": advisory_key(name)})
        await conn.commit()  # the lock is the session's, not the transaction's
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(name)})
            await conn.commit()
    finally:
        # Never back to the pool: should the unlock not have run, ending the session releases the lock.
        await conn.invalidate()
        await conn.close()


@asynccontextmanager
async def run_once(engine: AsyncEngine, name: str, version: str = "") -> AsyncIterator[bool]:
    """Yields True to the one process that is to run the body for this `version`, False to the others
    (it ran already, here or in another process). The body's success is recorded when it returns
    without an exception; one that failed is run again by the next process that enters.

        async with run_once(engine, "discord-command-sync", digest) as due:
            if due:
                await sync_commands()
    """
    key = RUN_ONCE_PREFIX + name
    async with database_lock(engine, f"run-once.{name}"):
        async with engine.connect() as conn:
            done = (
                await conn.execute(select(adapter_state.c.value).where(adapter_state.c.key == key))
            ).scalar()
        due = done != version
        yield due
        if due:
            async with engine.begin() as conn:
                await conn.execute(adapter_state.delete().where(adapter_state.c.key == key))
                await conn.execute(adapter_state.insert().values(key=key, value=version))


async def unique_instance(store: SqlStore, base: str) -> str:
    """`base`, or `base-2`, `base-3` ... : the first name no other live process on this database holds.
    The name is held until the store closes. Processes on one host share its host name, the default
    instance name; each must own its outbox leases, or it would take another's rows as its own."""
    for n in range(1, MAX_INSTANCES + 1):
        name = base if n == 1 else f"{base}-{n}"
        lock = ProcessLock(store.engine, f"instance.{name}")
        try:
            await lock.acquire(patience=0)
        except LockTaken:
            continue
        store.keep(lock)
        return name
    raise LockTaken(f"instance names {base} to {base}-{MAX_INSTANCES} are all taken")
