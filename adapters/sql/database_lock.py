"""Work that one process at a time does, under a lock on the database (several processes share it).

Several `peerbot run` processes may start at the same moment on one database; work such as the Discord
command sync must then run once, not once per process: each takes the lock in turn, and the first
records what it did (a digest in the store), so the others find it done.

- PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock`) on a connection of its own,
  held until the work is over; the server releases it if the process dies.
- SQLite: `flock` on a file beside the database file (the kernel releases it with the process).
- An in-memory database: no other process opens it, no lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql.process_lock import advisory_key, lock_file

_POLL = 0.05


@asynccontextmanager
async def one_at_a_time(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """Hold the database lock `name` while the block runs; wait for it while another process holds it."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn, conn.begin():
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})
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
        # (the migration run under this lock) says so better than a lock file could. SQLite serves one
        # process; SQLite's own lock remains.
        yield
        return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_POLL)
        yield
    finally:
        os.close(fd)  # closing the file releases its flock
