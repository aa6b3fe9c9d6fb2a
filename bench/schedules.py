"""Scheduler benchmark: 50,000 schedules due in the same minute, delivered to an in-memory port.

    python bench/schedules.py [--schedules 50000] [--database-url URL]

Prints: start-up time with the schedules in the database, how long delivering all of them took,
p50/p99/max lateness (from the due minute's tick to each post), whether each was delivered exactly
once, and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from adapters.sql.schema import groups, schedules
from bot.app import build_engine, open_store
from bot.config import parse_config
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef
from tests.support import FakeClock

DUE = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


class CountingChat:
    """An in-memory ChatPort that records when each message was posted."""

    platform = "fake"
    command_prefix = "/"
    interactive_replies = True

    def __init__(self) -> None:
        self.posted: list[tuple[str, float]] = []

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.posted.append((message.text, time.perf_counter()))
        return MessageRef(channel, str(len(self.posted)))

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.send(to.channel, message)

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None: ...

    async def edit(self, message: MessageRef, new: Outbound) -> None: ...

    async def direct_message(self, user: object, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.send(ChannelRef("fake", "dm"), message)

    async def is_facilitator(self, user: object, channel: ChannelRef) -> bool:
        return False


async def fill(url: str, count: int) -> None:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    created = DUE - timedelta(days=1)
    async with store.transaction() as tx:
        for start in range(0, count, 5000):
            ids = range(start + 1, min(start + 5000, count) + 1)
            await tx.conn.execute(
                insert(groups),
                [
                    {
                        "id": i,
                        "platform": "fake",
                        "channel_id": f"c{i}",
                        "channel_name": f"#c{i}",
                        "phase": "cooperating",
                        "phase_since": created,
                        "created_at": created,
                    }
                    for i in ids
                ],
            )
            await tx.conn.execute(
                insert(schedules),
                [
                    {
                        "group_id": i,
                        "kind": "nudge",
                        "cron": "0 18 * * *",
                        "description": "daily 18:00",
                        "text": f"n{i}",
                        "paused": False,
                        "next_occurrence": DUE,
                        "next_due_at": DUE,
                        "created_by": "bench",
                        "created_at": created,
                    }
                    for i in ids
                ],
            )
    await store.close()


async def main(count: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await fill(url, count)

        started = time.perf_counter()
        config = parse_config({"database": {"url": url}}, env={})
        store = await open_store(config)
        clock = FakeClock(DUE - timedelta(minutes=1))
        chat = CountingChat()
        engine = build_engine(config, store, clock, [chat])
        await engine.tick()  # the first tick: nothing due yet
        startup = time.perf_counter() - started
        assert not chat.posted

        clock.current = DUE + timedelta(seconds=1)
        tick_start = time.perf_counter()
        await engine.tick()
        took = time.perf_counter() - tick_start
        await engine.tick()  # a second tick must find nothing left to do
        await store.close()

    texts = [t for t, _ in chat.posted]
    lateness = sorted(at - tick_start for _, at in chat.posted)
    q = statistics.quantiles(lateness, n=100, method="inclusive")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"start-up with {count:,} schedules in the database: {startup * 1000:.0f} ms")
    once = len(set(texts)) == count == len(texts)
    print(f"delivered {len(texts):,} of {count:,} in {took:.2f} s; each exactly once: {once}")
    print(f"lateness from the due tick: p50 {q[49]:.3f} s, p99 {q[98]:.3f} s, max {lateness[-1]:.3f} s")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=50_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.schedules, args.database_url))
