"""A bot process for the crash test: applies reaction events from a file and prints `ack <id>` for
each once it is durable. The test kills it with SIGKILL mid-storm and starts it again.

    python -m tests.crash_worker <database url> <events file>

Each line of the events file: `<event id> <user> <+|-> <option emoji> <message id>`.
"""

from __future__ import annotations

import asyncio
import sys

from adapters.sql.store import SqlStore
from bot.recurrence import CronRecurrence
from core.clock import SystemClock
from core.engine import Engine
from core.events import ReactionAdded, ReactionRemoved
from core.refs import ChannelRef, MessageRef, UserRef

CHANNEL = ChannelRef("fake", "general", "#general")
WINDOW = 400  # events in flight at once


def read_events(path: str) -> list[ReactionAdded | ReactionRemoved]:
    events: list[ReactionAdded | ReactionRemoved] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            event_id, user, sign, emoji, message_id = line.split()
            kind = ReactionAdded if sign == "+" else ReactionRemoved
            events.append(kind(event_id, MessageRef(CHANNEL, message_id), UserRef("fake", user, user), emoji))
    return events


async def main(url: str, path: str) -> None:
    store = SqlStore.from_url(url)
    engine = Engine(store, SystemClock(), recurrence=CronRecurrence())
    events = read_events(path)

    async def one(event: ReactionAdded | ReactionRemoved) -> None:
        await engine.handle(event)
        sys.stdout.write(f"ack {event.event_id}\n")

    for start in range(0, len(events), WINDOW):
        await asyncio.gather(*(one(e) for e in events[start : start + WINDOW]))
        sys.stdout.flush()
    sys.stdout.write("done\n")
    sys.stdout.flush()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
