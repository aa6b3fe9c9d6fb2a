"""Work under a lock on the database: two processes (here two engines, each its own connections) take
it in turn, on SQLite (a lock file) and PostgreSQL (an advisory lock)."""

from __future__ import annotations

import asyncio

from adapters.sql.database_lock import one_at_a_time
from adapters.sql.store import make_engine


async def test_two_holders_of_one_lock_take_turns_and_other_locks_are_free(db_url: str) -> None:
    first, second = make_engine(db_url), make_engine(db_url)
    inside: list[str] = []
    overlapped = False
    entered = asyncio.Event()

    async def work(engine_name: str, hold: float) -> None:
        nonlocal overlapped
        engine = first if engine_name == "first" else second
        async with one_at_a_time(engine, "sync"):
            overlapped = overlapped or bool(inside)
            inside.append(engine_name)
            entered.set()
            await asyncio.sleep(hold)
            inside.remove(engine_name)

    try:
        holder = asyncio.create_task(work("first", 0.5))
        await entered.wait()
        async with one_at_a_time(second, "another lock"):  # a different name is not held
            assert inside == ["first"]
        await asyncio.gather(holder, work("second", 0.0))
        assert not overlapped
    finally:
        await first.dispose()
        await second.dispose()
