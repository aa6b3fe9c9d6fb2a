"""The Matrix adapter keeps the thread of each command written in one in the store, bounded.

On the SQL stores (SQLite, PostgreSQL); the adapter is not connected (what is kept is computed from the
store, and saved with the batch of the commands). Against Synapse, see tests/test_matrix_e2e.py.
"""

from __future__ import annotations

from adapters.matrix.adapter import MatrixAdapter, MatrixSettings
from adapters.matrix.translate import PLATFORM, thread_key
from core.ports import StateChanges
from tests.support import Harness


async def keep(adapter: MatrixAdapter, threads: list[tuple[str, str]]) -> None:
    """What one sync batch with these commands in threads saves."""
    state: dict[str, str | None] = {}
    await adapter._keep_threads(threads, state)
    async with adapter.store.transaction() as tx:
        await StateChanges(PLATFORM, state).save(tx)


async def stored(adapter: MatrixAdapter, event_id: str) -> str | None:
    async with adapter.store.read() as tx:
        return await tx.state(PLATFORM).get(thread_key(event_id))


async def test_the_newest_threads_are_kept_and_older_ones_forgotten(sql: Harness) -> None:
    settings = MatrixSettings(homeserver="http://127.0.0.1:9", user_id="@bot:example.org")
    adapter = MatrixAdapter(settings, sql.store, sql.engine)
    adapter.threads_remembered = 3
    await keep(adapter, [("$c1", "$root1"), ("$c2", "$root1")])
    await keep(adapter, [("$c3", "$root2"), ("$c4", "$root2"), ("$c5", "$root3")])
    assert [await stored(adapter, c) for c in ("$c1", "$c2", "$c3", "$c4", "$c5")] == [
        None,
        None,
        "$root2",
        "$root2",
        "$root3",
    ]
    # A process that never saw them finds them in the store; the first process from its cache too.
    again = MatrixAdapter(settings, sql.store, sql.engine)
    again.threads_remembered = 3
    assert await again.chat.thread_of("$c5") == "$root3"
    assert await again.chat.thread_of("$c1") is None
    assert await adapter.chat.thread_of("$c4") == "$root2"
    await keep(again, [("$c6", "$root4")])  # the ring goes on where it was
    assert [await stored(adapter, c) for c in ("$c3", "$c4", "$c6")] == [None, "$root2", "$root4"]
