"""An instance name of its own for each process on a database.

The outbox leases rows to an owner: the bot instance (`PEERBOT_INSTANCE`, else the host name, with the
Discord shards it runs). Processes on one host share its host name; two with one name would take each
other's leased rows for their own and send them at the same time. `unique_instance` gives each process
the first free name of `base`, `base-2`, `base-3` ..., held by a lock on the database (PostgreSQL: a
session advisory lock; SQLite: flock beside the file) until the store closes. Restarted, a process
usually gets its old name back, and takes its own leased rows back at once.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from adapters.sql.process_lock import LockTaken, ProcessLock

if TYPE_CHECKING:
    from adapters.sql.store import SqlStore

MAX_INSTANCES = 100  # names tried after the base one: `base-2` ... `base-100`


async def unique_instance(store: SqlStore, base: str) -> str:
    """`base`, or `base-2`, `base-3` ... : the first name no other live process on this database holds.
    The name is held until the store closes."""
    for n in range(1, MAX_INSTANCES + 1):
        name = base if n == 1 else f"{base}-{n}"
        # Hashed: a name may hold any character (`host/shards 0,1 of 4`), and on SQLite it names a file.
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        lock = ProcessLock(store.engine, f"instance.{digest}")
        try:
            await lock.acquire(patience=0)
        except LockTaken:
            continue
        store.keep(lock)
        return name
    raise LockTaken(f"instance names {base} to {base}-{MAX_INSTANCES} are all taken")
