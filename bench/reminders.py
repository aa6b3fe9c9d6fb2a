"""Reminders benchmark: 10,000 groups of 20 members, each with a goal's consent poll whose reminder is due.

    python bench/reminders.py [--groups 10000] [--members 20] [--votes 3] [--database-url URL] [--send]

Each poll has a few votes already (`--votes`, members 1 to 3), and the last member of each group has
switched reminders off, so each group gets its line and `members - votes - 1` direct messages. The
database is filled in a child process, so that the peak RSS printed is the bot's alone: opening the
store, the engine, and one run of the tick's reminder step. Prints how long that step took, how many
outbox rows it queued, that a second run finds nothing, and the peak RSS; with `--send`, also how long
the outbox took to send them all to an in-memory port afterwards (the running bot starts sending as
each batch commits; here the step is timed alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select

from adapters.sql.schema import goals, groups, members, outbox, poll_reactions, polls
from bot.app import build_engine, open_store
from bot.config import parse_config
from core.goals import CONSENT_OPTIONS
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import FakeClock

DUE = datetime(2026, 3, 4, 21, 0, tzinfo=UTC)
OPENED = DUE - timedelta(hours=36)  # the default window of 48 hours, reminded in its last quarter
CHUNK = 1000  # groups written per statement


class CountingChat:
    """An in-memory ChatPort that counts what it is asked to post."""

    platform = "fake"
    command_prefix = "/"
    interactive_replies = True

    def __init__(self) -> None:
        self.sent = 0
        self.direct = 0

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.sent += 1
        return MessageRef(channel, f"s{self.sent}")

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.send(to.channel, message)

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None: ...

    async def edit(self, message: MessageRef, new: Outbound) -> None: ...

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.direct += 1
        return MessageRef(ChannelRef("fake", f"dm-{user.id}"), f"d{self.direct}")

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        return False


async def fill(url: str, count: int, size: int, votes: int) -> None:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    options = json.dumps([[o.emoji, o.label] for o in CONSENT_OPTIONS], ensure_ascii=False)
    for start in range(1, count + 1, CHUNK):
        ids = range(start, min(start + CHUNK, count + 1))
        async with store.transaction() as tx:
            await tx.conn.execute(
                insert(groups),
                [
                    {
                        "id": i,
                        "platform": "fake",
                        "channel_id": f"c{i}",
                        "channel_name": f"#c{i}",
                        "phase": "organizing",
                        "phase_since": OPENED,
                        "created_at": OPENED,
                    }
                    for i in ids
                ],
            )
            await tx.conn.execute(
                insert(members),
                [
                    {
                        "group_id": i,
                        "user_key": f"fake:u{i}-{j}",
                        "name": f"u{i}-{j}",
                        "joined_at": OPENED,
                        "last_active_at": OPENED,
                        "reminders": j != size - 1,
                    }
                    for i in ids
                    for j in range(size)
                ],
            )
            await tx.conn.execute(
                insert(polls),
                [
                    {
                        "id": i,
                        "group_id": i,
                        "kind": "consent",
                        "question": f"Goal {i}: Read chapter {i} together (proposed by u{i}-0).",
                        "options": options,
                        "multiple": False,
                        "hidden": False,
                        "author_key": f"fake:u{i}-0",
                        "author_name": f"u{i}-0",
                        "created_at": OPENED,
                        "closes_at": OPENED + timedelta(hours=48),
                        "platform": "fake",
                        "channel_id": f"c{i}",
                        "message_id": f"m{i}",
                        "vote_seq": votes,
                        "remind_at": DUE,
                    }
                    for i in ids
                ],
            )
            await tx.conn.execute(
                insert(goals),
                [
                    {
                        "id": i,
                        "group_id": i,
                        "text": f"Read chapter {i} together",
                        "status": "proposed",
                        "proposer_key": f"fake:u{i}-0",
                        "proposer_name": f"u{i}-0",
                        "created_at": OPENED,
                        "updated_at": OPENED,
                        "poll_id": i,
                        "put_forward_by_key": f"fake:u{i}-0",
                        "put_forward_by_name": f"u{i}-0",
                    }
                    for i in ids
                ],
            )
            if votes:
                await tx.conn.execute(
                    insert(poll_reactions),
                    [
                        {
                            "poll_id": i,
                            "user_key": f"fake:u{i}-{j}",
                            "option": j % 2,
                            "user_name": f"u{i}-{j}",
                            "present": True,
                            "seq": j,
                        }
                        for i in ids
                        for j in range(1, votes + 1)
                    ],
                )
    await store.close()


def fill_apart(url: str, count: int, size: int, votes: int) -> None:
    asyncio.run(fill(url, count, size, votes))


async def main(count: int, size: int, votes: int, url: str | None, send: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        child = multiprocessing.get_context("spawn").Process(
            target=fill_apart, args=(url, count, size, votes)
        )
        child.start()
        child.join()
        assert child.exitcode == 0, "filling the database failed"

        config = parse_config({"database": {"url": url}}, env={})
        store = await open_store(config)
        clock = FakeClock(DUE)
        chat = CountingChat()
        engine = build_engine(config, store, clock, [chat])
        engine.work.on_commit = lambda: None  # the outbox waits: the step is timed alone (--send times it)
        before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        started = time.perf_counter()
        reminded = await engine.reminders.remind_due(DUE)
        took = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        again = await engine.reminders.remind_due(DUE + timedelta(seconds=1))
        async with store.transaction() as tx:
            kinds = dict(
                (await tx.conn.execute(select(outbox.c.kind, func.count()).group_by(outbox.c.kind))).all()
            )
        sending = None
        if send:
            started = time.perf_counter()
            await engine.settle()
            sending = time.perf_counter() - started
        await store.close()

    expected_dms = count * (size - votes - 1)
    print(
        f"reminder step: {reminded:,} of {count:,} consent polls reminded in {took:.2f} s"
        f" ({count:,} groups of {size}, {votes} votes each)"
    )
    print(
        f"queued: {kinds.get('send', 0):,} group lines, {kinds.get('direct', 0):,} direct messages"
        f" (expected {count:,} and {expected_dms:,}); a second run reminded {again}"
    )
    print(f"peak RSS: {peak_mb:.0f} MB (after opening the store and building the engine: {before_mb:.0f} MB)")
    if sending is not None:
        sent = f"{chat.sent:,} lines, {chat.direct:,} direct messages"
        print(f"sent through the outbox in {sending:.1f} s: {sent}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--send", action="store_true", help="also time sending everything queued")
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.members, args.votes, args.database_url, args.send))
