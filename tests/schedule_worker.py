"""A bot process for the two-process tests: walks a manual clock from START to END in STEP seconds,
ticking at each step, and prints every message it posts as `sent <channel> <time> <key> <text>`, a
direct message as `sent @<member id> ...` (the key is the outbox row's idempotency key). It serves one
platform, "fake" unless given.

    python -m tests.schedule_worker <database url> <start ISO> <end ISO> <step seconds> [platform]
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta

from adapters.sql.store import SqlStore
from bot.recurrence import CronRecurrence
from core.engine import Engine
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import FakeChat, FakeClock


class PrintingChat(FakeChat):
    clock: FakeClock | None = None

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        assert self.clock is not None
        sys.stdout.write(f"sent {channel.id} {self.clock.now().isoformat()} {key} {message.text}\n")
        return await super().send(channel, message)

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        assert self.clock is not None
        sys.stdout.write(f"sent @{user.id} {self.clock.now().isoformat()} {key} {message.text}\n")
        return await super().direct_message(user, message)


async def main(url: str, start: str, end: str, step: float, platform: str) -> None:
    store = SqlStore.from_url(url)
    clock = FakeClock(datetime.fromisoformat(start))
    chat = PrintingChat(platform=platform)
    chat.clock = clock
    engine = Engine(store, clock, [chat], recurrence=CronRecurrence())
    stop = datetime.fromisoformat(end)
    while clock.now() <= stop:
        await engine.tick()
        clock.advance(timedelta(seconds=step))
    sys.stdout.write("done\n")
    sys.stdout.flush()
    await store.close()


if __name__ == "__main__":
    platform = sys.argv[5] if len(sys.argv) > 5 else "fake"
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), platform))
