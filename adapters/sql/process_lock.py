"""A lock one process holds on a database for as long as it runs.

The console takes one: two consoles on one database would share its message ids and each other's
outbox (an answer typed in one terminal printed in the other), so the second is refused at start.

The system releases the lock when the process ends, however it ends (SIGKILL included), so a killed
console never blocks its own restart:
- PostgreSQL: a session-level advisory lock on a connection kept for it; the server drops the lock when
  the connection closes, which the kernel does when the process dies (and TCP keepalives, set on that
  session, when the client's machine is gone).
- SQLite: `flock` on a file beside the database file; the kernel drops it with the process's files.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# PostgreSQL: a process just killed may hold the lock a moment more (the server is ending its session):
# wait this long before calling the lock taken. A flock goes with the process at once.
PATIENCE = 3.0
_POLL = 0.2


class LockTaken(Exception):
    """Another process holds the lock."""


def advisory_key(name: str) -> int:
    """A stable 64-bit key for PostgreSQL's advisory locks (signed, as `bigint`)."""
    digest = hashlib.sha256(f"peerbot.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file(database: str, name: str) -> str:
    """The file beside a SQLite database whose flock is the lock: `peerbot.db.console.lock`."""
    return f"{database}.{name}.lock"


class ProcessLock:
    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None

    async def acquire(self, patience: float = PATIENCE) -> None:
        """Take the lock, or raise LockTaken (on PostgreSQL once `patience` seconds passed without it)."""
        if self.engine.dialect.name != "postgresql":
            database = self.engine.url.database
            if not database or database == ":memory:" or database.startswith("file:"):
                return  # a database no other process opens
            if not self._try_flock(lock_file(database, self.name)):
                raise LockTaken(self.name)
            return
        deadline = asyncio.get_running_loop().time() + patience
        while not await self._try_advisory():
            if asyncio.get_running_loop().time() >= deadline:
                raise LockTaken(self.name)
            await asyncio.sleep(_POLL)

    async def _try_advisory(self) -> bool:
        conn = await self.engine.connect()
        try:
            for setting in (
                "tcp_keepalives_idle = 30",
                "tcp_keepalives_interval = 10",
                "tcp_keepalives_count = 3",
            ):
                await conn.execute(text(f"SET {setting}"))
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self.name)}
                )
            ).scalar()
            await conn.commit()  # the lock is the session's, not the transaction's
        except BaseException:
            await _end_session(conn)
            raise
        if not got:
            await _end_session(conn)
            return False
        self._conn = conn
        return True

    def _try_flock(self, path: str) -> bool:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def release(self) -> None:
        """Give the lock up (nothing if it was not taken)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.name)})
                await conn.commit()
            finally:
                await _end_session(conn)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file releases its flock


async def _end_session(conn: AsyncConnection) -> None:
    """Close the connection for good, not back to the pool with its settings: the session ends, and any
    lock it holds with it."""
    await conn.invalidate()
    await conn.close()
