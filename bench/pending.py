"""Benchmark: `pending` for a member of a group with 500 open polls, on SQLite. Target: p99 at most 50 ms.

A SQLite file (WAL, synchronous=FULL) in a temporary directory holds 100 groups. The member's group has 500
open polls (50 of them goals' consent polls) with 19 or 20 voters each, the member among them on every third
(`--voted-every N`; 0: on none), 2,000 closed polls with their votes, and an open action review the member
has not answered; the member is on the roster of two more groups. Every other group has 20 open polls.

The engine as `peerbot run` builds it, an in-memory ChatPort, its clock fixed; what start-up and the seeding
made is frozen out of the garbage collector's full passes as `peerbot run` does (`--no-freeze`: not). Each
command is timed from the event to the engine's answer, after warm-up runs:
- `pending` in the group's channel, answered by the adapter (Discord: the reply is returned);
- the same with the answer queued as a direct message in the outbox (Matrix, console), sent in the
  background as it would be;
- `pending` written to the bot privately, covering the member's three groups (through the outbox);
- `poll list` in the group's channel, with the voters of every open poll;
- `status` in the same channel, the floor: a command's own unit of work (claim, activity, commit).

    .venv/bin/python bench/pending.py [--runs 200] [--open 500] [--voted-every 3] [--no-freeze]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.recurrence import CronRecurrence
from core.clock import SystemClock
from core.engine import Engine
from core.events import CommandInvoked
from core.goals import CONSENT_OPTIONS
from core.lifecycle import Phase
from core.polls import PollKind, PollOption, PollRequest, ReactionChange
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import FakeChat

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOME = ChannelRef("fake", "general", "#general")
DANA = UserRef("fake", "dana", "dana")
VOTERS = [UserRef("fake", f"m{n}", f"member {n}") for n in range(19)]
OPTIONS = tuple(PollOption(e, f"option {e}") for e in ("1️⃣", "2️⃣", "3️⃣", "4️⃣"))
EVENT_IDS = itertools.count(1)  # one sequence for every engine on the database: each event is new


def channel(n: int) -> ChannelRef:
    return HOME if n == 0 else ChannelRef("fake", f"group{n}", f"#group{n}")


async def seed(store: SqlStore, open_polls: int, voted_every: int = 3, groups: int = 100) -> None:
    """The groups, written straight through the store, one transaction per group."""
    for n in range(groups):
        async with store.transaction() as tx:
            group = await tx.groups.create(channel(n), Phase.COOPERATING, START - timedelta(days=30))
            if n < 3:  # dana's groups
                await tx.members.add(group.id, DANA, START - timedelta(days=30))
            opened = open_polls if n == 0 else 20
            closed = 2_000 if n == 0 else 0
            for i in range(closed + opened):
                consent = n == 0 and i >= closed and (i - closed) % 10 == 0
                if consent:
                    goal = await tx.goals.create(group.id, f"Goal {i}: learn together", VOTERS[0], START)
                    request = PollRequest(f"Goal {goal.id}: ... Do you consent?", CONSENT_OPTIONS)
                else:
                    request = PollRequest(f"Question {i}: which way shall we go next week?", OPTIONS)
                # Closed ones from a month ago; open ones closing over the next days.
                at = START - timedelta(days=30) if i < closed else START - timedelta(hours=1)
                duration = timedelta(days=1) if i < closed else timedelta(days=2, minutes=i % 500)
                kind = PollKind.CONSENT if consent else PollKind.POLL
                poll = await tx.polls.create(
                    group.id, kind, replace_duration(request, duration), VOTERS[0], at
                )
                await tx.polls.set_message(poll.id, MessageRef(channel(n), f"m{poll.id}"))
                if consent:
                    await tx.goals.set_poll(goal.id, poll.id)
                if i < closed:
                    await tx.polls.close(poll.id, at + duration)
                voters = VOTERS + ([DANA] if voted_every and i % voted_every == 0 else [])
                await tx.polls.record_reactions(
                    poll.id, [ReactionChange(v.key, v.name, k % 3, True) for k, v in enumerate(voters)]
                )
            if n == 0:
                await tx.reviews.create(
                    group.id, VOTERS[0], START - timedelta(hours=1), START + timedelta(days=3)
                )


def replace_duration(request: PollRequest, duration: timedelta) -> PollRequest:
    return PollRequest(request.question, request.options, duration=duration)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def line(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: {len(ms)} runs, p50 {statistics.median(ms):.1f} ms, p95 {percentile(ms, 95):.1f} ms,"
        f" p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms"
    )


class Run:
    def __init__(self, store: SqlStore, interactive: bool) -> None:
        self.chat = FakeChat(interactive_replies=interactive)
        self.engine = Engine(store, SystemClock(START), [self.chat], recurrence=CronRecurrence())

    async def timed(self, text: str, runs: int, *, direct: bool = False) -> tuple[list[float], str]:
        where = ChannelRef("fake", "dm-dana", "@dana") if direct else HOME
        took: list[float] = []
        answer = ""
        for n in range(runs + 5):  # five warm-up runs
            event = CommandInvoked(f"b{next(EVENT_IDS)}", where, DANA, text, direct=direct)
            started = time.perf_counter()
            reply = await self.engine.handle(event)
            elapsed = time.perf_counter() - started
            assert reply is not None and not reply.is_error, reply
            answer = reply.text
            if n >= 5:
                took.append(elapsed)
            await asyncio.sleep(0)  # let the outbox send, as it would between members' commands
        await self.engine.settle()
        return took, answer


async def main(runs: int, open_polls: int, voted_every: int, freeze: bool) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate.upgrade(engine)
        store = SqlStore(engine)
        try:
            started = time.perf_counter()
            await seed(store, open_polls, voted_every)
            seeded = time.perf_counter() - started
            interactive, outbox = Run(store, True), Run(store, False)
            if freeze:
                gc.collect()
                gc.freeze()
            in_channel, answer = await interactive.timed("pending", runs)
            queued, _ = await outbox.timed("pending", runs)
            privately, private_answer = await outbox.timed("pending", runs, direct=True)
            listed, _ = await interactive.timed("poll list", runs)
            floor, _ = await interactive.timed("status", runs)
            sent = len(outbox.chat.direct)
        finally:
            await store.close()
    waiting = answer.splitlines()[-1]
    frozen = "frozen out of full collections" if freeze else "not frozen"
    print(f"start-up heap {frozen}; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"seeded in {seeded:.1f} s: 100 groups; dana's has {open_polls} open polls, 2,000 closed, a review")
    print(f"pending's first page: {len(answer)} characters, {waiting!r}")
    print(f"pending written privately: {private_answer.splitlines()[-1]!r}; {sent} direct messages sent")
    print(line("pending in the channel, answered by the adapter (Discord)", in_channel))
    print(line("pending in the channel, a direct message through the outbox (Matrix, console)", queued))
    print(line("pending written privately, three groups (outbox)", privately))
    print(line("poll list in the channel, answered by the adapter", listed))
    print(line("status in the channel, answered by the adapter (the floor)", floor))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--open", type=int, default=500, dest="open_polls")
    parser.add_argument("--voted-every", type=int, default=3)
    parser.add_argument("--no-freeze", action="store_false", dest="freeze")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.open_polls, args.voted_every, args.freeze))
