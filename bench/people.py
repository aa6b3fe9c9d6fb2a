"""People benchmark: the weekly radar and the reminders over 10,000 groups of 20 members, in one tick.

    python bench/people.py [--groups 10000] [--members 20] [--database-url URL]

Every group's weekly radar is due, and so are the reminders of its open consent poll (3 of its members
voted). Each group has two members silent for 20 days, one member who made most of the group's moves, a
goal blocked 10 days ago and a goal accepted with 🤔 votes that nobody followed up, so every radar finds
something and asks the platform who facilitates. The database is filled in a child process, so that
the peak RSS printed is the bot's alone. Prints how long the tick took to decide and queue everything
(the outbox's sending held back, as a running bot sends while the next batch is decided), how long
sending it all to an in-memory port took after, what was posted, that each radar ran and each reminder
went exactly once, and the peak RSS.
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
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reminders
from sqlalchemy import insert

from adapters.sql.schema import goals, groups, members, phase_changes, poll_reactions, polls
from bot.app import build_engine, open_store
from bot.config import parse_config
from core.refs import ChannelRef, UserRef
from tests.support import FakeClock

DUE = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # a Monday, the default digest time
CHUNK = 5000
CONSENT = json.dumps([["✅", "agree"], ["🤔", "concerns"], ["⛔", "block"]])


class CountingChat(reminders.CountingChat):
    """The reminder benchmark's chat, where member 1 of each group facilitates."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        self.asked += 1
        return user.id.endswith("-1")


async def insert_chunked(tx: object, table: object, rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), CHUNK):
        await tx.conn.execute(insert(table), rows[start : start + CHUNK])  # type: ignore[attr-defined]


async def fill(url: str, count: int, size: int) -> None:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    start = DUE - timedelta(days=40)
    for first in range(1, count + 1, 1000):
        ids = range(first, min(first + 1000, count + 1))
        group_rows, member_rows, goal_rows, poll_rows, vote_rows, change_rows = [], [], [], [], [], []
        for g in ids:
            group_rows.append(
                {
                    "id": g,
                    "platform": "fake",
                    "channel_id": f"c{g}",
                    "channel_name": f"#c{g}",
                    "phase": "cooperating",
                    "phase_since": DUE - timedelta(days=20),
                    "created_at": start,
                    "last_activity_at": DUE - timedelta(hours=1),
                    "radar_next_at": DUE - timedelta(minutes=1),
                }
            )
            for m in range(1, size + 1):
                silent = m > size - 2
                member_rows.append(
                    {
                        "group_id": g,
                        "user_key": f"fake:u{g}-{m}",
                        "name": f"member {m}",
                        "joined_at": start,
                        "last_active_at": DUE - timedelta(days=20 if silent else 1),
                        "intro": "here to learn",
                    }
                )
            poll_rows.append(
                {
                    "id": count + g,
                    "group_id": g,
                    "kind": "consent",
                    "question": "Goal: pair every week?",
                    "options": CONSENT,
                    "multiple": False,
                    "hidden": False,
                    "author_key": f"fake:u{g}-2",
                    "author_name": "member 2",
                    "created_at": DUE - timedelta(hours=36),
                    "closes_at": DUE + timedelta(hours=12),
                    "platform": "fake",
                    "channel_id": f"c{g}",
                    "message_id": f"m{g}",
                    "vote_seq": 3,
                    "remind_at": DUE - timedelta(minutes=1),
                    "closed_at": None,
                }
            )
            vote_rows += [
                {
                    "poll_id": count + g,
                    "user_key": f"fake:u{g}-{m}",
                    "option": 0,
                    "user_name": f"member {m}",
                    "present": True,
                    "seq": m,
                }
                for m in range(1, 4)
            ]
            poll_id = g
            poll_rows.append(
                {
                    "id": poll_id,
                    "group_id": g,
                    "kind": "consent",
                    "question": "Goal: read together?",
                    "options": CONSENT,
                    "multiple": False,
                    "hidden": False,
                    "author_key": f"fake:u{g}-1",
                    "author_name": "member 1",
                    "created_at": DUE - timedelta(days=12),
                    "closes_at": DUE - timedelta(days=10),
                    "closed_at": DUE - timedelta(days=10),
                    "platform": "fake",
                    "channel_id": f"c{g}",
                    "message_id": f"old{g}",
                    "vote_seq": 5,
                    "remind_at": None,
                }
            )
            vote_rows += [
                {
                    "poll_id": poll_id,
                    "user_key": f"fake:u{g}-{m}",
                    "option": 0 if m < 4 else 1,
                    "user_name": f"member {m}",
                    "present": True,
                    "seq": m,
                }
                for m in range(1, 6)
            ]
            goal_rows.append(
                {
                    "group_id": g,
                    "text": "Pair every week",
                    "status": "proposed",
                    "proposer_key": f"fake:u{g}-2",
                    "proposer_name": "member 2",
                    "put_forward_by_key": f"fake:u{g}-2",
                    "created_at": DUE - timedelta(hours=36),
                    "updated_at": DUE - timedelta(hours=36),
                    "poll_id": count + g,
                }
            )
            for n, status in enumerate(("accepted", "blocked", "proposed", "proposed")):
                goal_rows.append(
                    {
                        "group_id": g,
                        "text": f"goal {n}",
                        "status": status,
                        "proposer_key": f"fake:u{g}-1",
                        "proposer_name": "member 1",
                        "put_forward_by_key": f"fake:u{g}-1",
                        "created_at": DUE - timedelta(days=12 + n),
                        "updated_at": DUE - timedelta(days=10),
                        "poll_id": poll_id if status == "accepted" else None,
                    }
                )
            change_rows.append(
                {
                    "group_id": g,
                    "from_phase": "organizing",
                    "to_phase": "cooperating",
                    "at": DUE - timedelta(days=20),
                    "by_name": "member 1",
                    "by_key": f"fake:u{g}-1",
                }
            )
            change_rows.append(
                {
                    "group_id": g,
                    "from_phase": "convening",
                    "to_phase": "organizing",
                    "at": DUE - timedelta(days=25),
                    "by_name": "member 2",
                    "by_key": f"fake:u{g}-2",
                }
            )
        async with store.transaction() as tx:
            for table, rows in (
                (groups, group_rows),
                (members, member_rows),
                (polls, poll_rows),
                (poll_reactions, vote_rows),
                (goals, goal_rows),
                (phase_changes, change_rows),
            ):
                await insert_chunked(tx, table, rows)
    await store.close()


def fill_apart(url: str, count: int, size: int) -> None:
    asyncio.run(fill(url, count, size))


async def main(count: int, size: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        filling = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=fill_apart, args=(url, count, size))
        child.start()
        child.join()
        assert child.exitcode == 0, "filling the database failed"
        filled = time.perf_counter() - filling
        config = parse_config({"database": {"url": url}}, env={})
        store = await open_store(config)
        clock = FakeClock(DUE)
        chat = CountingChat()
        engine = build_engine(config, store, clock, [chat])
        engine.work.on_commit = lambda: None  # sending waits until the tick has queued everything
        dispatch, engine.dispatcher.dispatch = engine.dispatcher.dispatch, _nothing  # type: ignore[method-assign]
        started = time.perf_counter()
        await engine.tick()
        took = time.perf_counter() - started
        engine.dispatcher.dispatch = dispatch  # type: ignore[method-assign]
        sending = time.perf_counter()
        await engine.settle()
        sent = time.perf_counter() - sending
        posted = (chat.direct, chat.sent)
        await engine.tick()  # a second tick must find no radar and no reminder due
        await engine.settle()
        async with store.transaction() as tx:
            told = Counter(
                kind for g in (await tx.groups.told(list(range(1, count + 1)), DUE)).values() for kind, _ in g
            )
        await store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reminders = count * (size - 3)
    print(f"{count:,} groups of {size} members written in {filled:.1f} s (a child process)")
    print(f"one tick, every weekly radar and every reminder due, decided and queued: {took:.2f} s")
    print(f"sending the {sum(posted):,} posts after, to an in-memory port: {sent:.2f} s")
    print(
        f"posted: {chat.direct:,} direct messages ({reminders:,} reminders, {count:,} radar reports),"
        f" {chat.sent:,} group posts; the platform was asked {chat.asked:,} times who facilitates"
    )
    print("radar findings kept: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(told.items())))
    once = posted == (reminders + count, 2 * count) and (chat.direct, chat.sent) == posted
    print(f"each radar ran and each reminder went exactly once: {once}")
    print(f"peak RSS: {peak_mb:.0f} MB")


async def _nothing() -> None:
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.members, args.database_url))
