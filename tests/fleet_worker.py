"""A bot process for the several-processes tests, wired as `peerbot run` wires one: the store opened
(and migrated) by `bot.app.open_store`, an instance name of its own (`unique_instance`), the engine
from `build_engine`, the crash points of `PEERBOT_CRASH_AT`.

    python -m tests.fleet_worker migrate <database url>
        open the store and close it (logs at INFO on stderr: whether this process migrated)
    python -m tests.fleet_worker nudges <database url> <start ISO> <end ISO> <step seconds> <linger s>

`nudges` walks a manual clock from START to END in STEP seconds, ticking at each step, then keeps
ticking at END until the outbox is empty (rows another process left leased are sent once their
lease runs out) or LINGER seconds passed. Every post prints `sent <channel> <key> <wall time> <text>`,
flushed, as a platform would have it (the key is the outbox row's idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import datetime, timedelta

from adapters.sql.instance import unique_instance
from bot.app import build_engine, open_store
from bot.config import parse_config
from core.outbox import PostState
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef
from tests.support import FakeChat, FakeClock


class PrintingChat(FakeChat):
    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        sys.stdout.write(f"sent {channel.id} {key} {time.time():.3f} {message.text}\n")
        sys.stdout.flush()
        return await super().send(channel, message)


async def migrate_only(url: str) -> None:
    store = await open_store(parse_config({"database": {"url": url}}, env={}))
    await store.close()
    sys.stdout.write("done\n")


async def nudges(url: str, start: str, end: str, step: float, linger: float) -> None:
    # The clock walks two hours in seconds, a lease runs out in real time: by then an hour of the
    # walk has passed, which the outbox's usual maximum age would drop a post for.
    config = parse_config({"database": {"url": url}, "outbox": {"max_age": "1d"}}, env={})
    store = await open_store(config)
    instance = await unique_instance(store, "fleet")
    sys.stderr.write(f"instance {instance}\n")
    clock = FakeClock(datetime.fromisoformat(start))
    engine = build_engine(config, store, clock, [PrintingChat()], instance=instance)
    stop = datetime.fromisoformat(end)
    while clock.now() < stop:
        await engine.tick()
        clock.advance(timedelta(seconds=step))
    clock.current = stop
    deadline = time.monotonic() + linger
    while time.monotonic() < deadline:
        await engine.tick()
        async with store.transaction() as tx:
            counts = await tx.outbox.counts()
        if not counts.get(PostState.PENDING) and not counts.get(PostState.POSTED):
            break
        await asyncio.sleep(0.5)
    await engine.drain()  # as `peerbot run` does before it stops
    sys.stdout.write("done\n")
    await store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    if sys.argv[1] == "migrate":
        asyncio.run(migrate_only(sys.argv[2]))
    else:
        url, start, end, step, linger = sys.argv[2:7]
        asyncio.run(nudges(url, start, end, float(step), float(linger)))
