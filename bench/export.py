"""Benchmark: another member's /status while three exports of a large group run, on SQLite.

A group with a record of about 5 MB as JSON (goals, polls with votes, reflections) in a SQLite file
(WAL, synchronous=FULL), the engine as `peerbot run` builds it, an in-memory ChatPort. Three members
export the group as JSON over and over while a fourth asks /status every 50 ms; each /status is timed
from the event to the engine's answer. A /status needs the write turn (it claims its event), so an
export that holds it makes the member wait.

    .venv/bin/python bench/export.py [--exports 3] [--rounds 3] [--answers interactive|outbox]

`--answers outbox`: the platform takes answers through the outbox (Matrix, console) instead of answering
commands itself (Discord). The script runs unchanged on the code before `/export` sent files, for the
before/after figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
from core.events import CommandInvoked, Reply
from core.lifecycle import Phase
from core.polls import PollKind, PollOption, PollRequest, ReactionChange
from core.refs import ChannelRef, UserRef
from tests.support import FakeChat

CHANNEL = ChannelRef("fake", "general", "#general")
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def seed(store: SqlStore, goals: int, polls: int, voters: int, reflections: int) -> None:
    """One group with a long record, written straight through the store."""
    members = [UserRef("fake", f"m{n}", f"member {n}") for n in range(voters)]
    async with store.transaction() as tx:
        group = await tx.groups.create(CHANNEL, Phase.COOPERATING, START)
        for n in range(goals):
            await tx.goals.create(
                group.id, f"Goal {n}: " + "learn and practise together " * 6, members[0], START
            )
        options = tuple(PollOption(e, f"option {e}") for e in ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣"))
        for n in range(polls):
            request = PollRequest(f"Question {n}?", options, duration=timedelta(days=3))
            poll = await tx.polls.create(group.id, PollKind.POLL, request, members[0], START)
            votes = [ReactionChange(m.key, m.name, i % 5, True) for i, m in enumerate(members)]
            await tx.polls.record_reactions(poll.id, votes)
        for n in range(reflections):
            author = members[n % voters]
            text = f"Reflection {n}: " + "what we learned this week, and what we will change. " * 5
            await tx.reviews.add_reflection(group.id, None, None, author, text, START)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


class Run:
    def __init__(self, store: SqlStore, interactive: bool) -> None:
        self.chat = FakeChat(interactive_replies=interactive)
        self.engine = Engine(store, SystemClock(), [self.chat], recurrence=CronRecurrence())
        self.events = 0
        self.export_size = 0

    async def command(self, who: str, text: str) -> Reply:
        self.events += 1
        user = UserRef("fake", who, who)
        reply = await self.engine.handle(CommandInvoked(f"b{self.events}", CHANNEL, user, text))
        assert reply is not None and not reply.is_error, reply
        return reply

    async def status_latencies(self, until: asyncio.Event) -> list[float]:
        latencies: list[float] = []
        while not until.is_set():
            started = time.perf_counter()
            await self.command("dana", "status")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        return latencies

    async def exporter(self, who: str, rounds: int, took: list[float]) -> None:
        for _ in range(rounds):
            started = time.perf_counter()
            reply = await self.command(who, "export json")
            took.append(time.perf_counter() - started)
            # Where this version of the code puts the export: a file, or the answer's text.
            file = getattr(reply, "file", None)
            self.export_size = len(file.data) if file is not None else len(reply.text.encode())


def line(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: {len(ms)} times, p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms,"
        f" max {max(ms):.0f} ms"
    )


async def main(exports: int, rounds: int, interactive: bool) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate.upgrade(engine)
        store = SqlStore(engine)
        try:
            await seed(store, goals=2_000, polls=200, voters=200, reflections=8_000)
            run = Run(store, interactive)
            await run.command("dana", "status")
            quiet: list[float] = []
            for _ in range(20):
                started = time.perf_counter()
                await run.command("dana", "status")
                quiet.append(time.perf_counter() - started)
            took: list[float] = []
            await run.exporter("erin", 1, took)  # warm-up
            took.clear()
            done = asyncio.Event()
            probe = asyncio.create_task(run.status_latencies(done))
            started = time.perf_counter()
            await asyncio.gather(*(run.exporter(f"x{n}", rounds, took) for n in range(exports)))
            elapsed = time.perf_counter() - started
            done.set()
            busy = await probe
            await run.engine.drain()
        finally:
            await store.close()
    answers = "answers by the adapter (Discord)" if interactive else "answers through the outbox"
    print(f"{exports} exporters x {rounds} JSON exports of {run.export_size / 1e6:.1f} MB each; {answers}")
    print(line("/status, nothing else running", quiet))
    print(line(f"/status while the exports run ({elapsed:.1f} s)", busy))
    print(line("one export, from command to answer", took))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--exports", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--answers", choices=("interactive", "outbox"), default="interactive")
    args = parser.parse_args()
    asyncio.run(main(args.exports, args.rounds, args.answers == "interactive"))
