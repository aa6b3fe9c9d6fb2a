"""Benchmark: a group's page with two years of history, served over HTTP from SQLite.

One group in a SQLite file (WAL): 100 members, 500 goals (each with its consent poll), 2,000 polls in all
(the consent polls, 1,396 polls and 104 weekly pulses) with 25 votes each on average, 20,000 reflections
(8,000 of them answers in 104 action reviews), phase moves and nudges, spread over two years. The page is
served by `dashboard_routes` on 127.0.0.1 and fetched as a browser would fetch it: the page (its newest
polls), the same page with older polls (`?polls=20`), and data.json (everything). Each request is timed
from sending it to the last byte of the answer, and by the CPU time the process spent on it (server and
client), which other work on a shared machine does not stretch.

    .venv/bin/python bench/dashboard.py [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from adapters.web.dashboard import dashboard_routes
from bot.app import started_up
from bot.recurrence import CronRecurrence
from core.clock import SystemClock
from core.dashboard import DashboardSettings, prepare_secret
from core.engine import Engine
from core.events import CommandInvoked
from core.goals import CONSENT_OPTIONS, GoalStatus
from core.lifecycle import PHASE_ORDER, Phase, PhaseChange
from core.polls import PollKind, PollOption, PollRequest, ReactionChange
from core.refs import ChannelRef, UserRef
from core.schedules import ScheduleKind
from tests.support import FakeChat, free_socket, serving

CHANNEL = ChannelRef("fake", "general", "#general")
START = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
DAYS = 730
NOW = START + timedelta(days=DAYS)
PULSE = (PollOption("🟢", "going well"), PollOption("🟡", "so-so"), PollOption("🔴", "struggling"))
OPTIONS = tuple(PollOption(e, f"option {e}") for e in ("1️⃣", "2️⃣", "3️⃣", "4️⃣"))


def spread(n: int, count: int) -> datetime:
    """The n-th of `count` moments spread evenly over the two years."""
    return START + timedelta(days=DAYS * n / count, hours=n % 9)


async def seed(store: SqlStore, members: int, goals: int, polls: int, reflections: int) -> None:
    rng = random.Random(14)
    people = [UserRef("fake", f"m{n}", f"member {n}") for n in range(members)]

    def votes(options: int) -> list[ReactionChange]:
        return [
            ReactionChange(m.key, m.name, rng.randrange(options), True)
            for m in rng.sample(people, rng.randint(5, 45))
        ]

    async with store.transaction() as tx:
        group = await tx.groups.create(CHANNEL, Phase.CONVENING, START)
        await tx.groups.record_phase_change(
            PhaseChange(group.id, None, Phase.CONVENING, START, "peerbot", "started")
        )
        for n in range(40):  # a move every few weeks
            at = spread(n + 1, 41)
            to = PHASE_ORDER[1 + n % 4]
            await tx.groups.record_phase_change(
                PhaseChange(group.id, None, to, at, people[n % 5].name, f"move {n}", people[n % 5].key)
            )
        for n in range(goals):
            at = spread(n, goals)
            goal = await tx.goals.create(
                group.id, f"Goal {n}: learn and practise together", people[n % members], at
            )
            request = PollRequest(
                f"Goal {goal.id}: do you consent?", CONSENT_OPTIONS, duration=timedelta(days=2)
            )
            poll = await tx.polls.create(group.id, PollKind.CONSENT, request, people[n % members], at)
            await tx.goals.set_poll(goal.id, poll.id)
            await tx.polls.record_reactions(poll.id, votes(3))
            await tx.polls.close(poll.id, at + timedelta(days=2))
            status = (GoalStatus.DONE, GoalStatus.ACCEPTED, GoalStatus.LAPSED, GoalStatus.BLOCKED)[n % 4]
            await tx.goals.set_status(goal.id, status, at + timedelta(days=2))
        weeks = DAYS // 7
        for n in range(polls - goals):
            pulse = n < weeks
            at = spread(n, weeks) if pulse else spread(n - weeks, polls - goals - weeks)
            request = PollRequest(
                "How is the group doing?" if pulse else f"Question {n}?",
                PULSE if pulse else OPTIONS,
                hidden=n % 10 == 0,
                anonymous=n % 25 == 0,
                duration=timedelta(days=1),
            )
            kind = PollKind.PULSE if pulse else PollKind.POLL
            poll = await tx.polls.create(group.id, kind, request, people[n % members], at)
            await tx.polls.record_reactions(poll.id, votes(len(request.options)))
            await tx.polls.close(poll.id, at + timedelta(days=1))
        answered = 0
        for n in range(weeks):
            at = spread(n, weeks) + timedelta(days=1)
            review = await tx.reviews.create(group.id, people[n % members], at, at + timedelta(days=3))
            for k in range(8000 // weeks):
                await tx.reviews.add_reflection(
                    group.id, review.id, 1 + k % 5, people[(n + k) % members], f"Answer {k} to review {n}", at
                )
                answered += 1
            await tx.reviews.close(review.id, at + timedelta(days=3))
        for n in range(reflections - answered):
            await tx.reviews.add_reflection(
                group.id,
                None,
                None,
                people[n % members],
                f"Reflection {n}: what I learned",
                spread(n, reflections),
            )
        for n in range(5):
            await tx.schedules.create(
                group.id,
                ScheduleKind.NUDGE,
                "0 18 * * FRI",
                "weekly fri 18:00",
                f"Nudge {n}",
                people[0],
                START,
                NOW + timedelta(days=n + 1),
                NOW + timedelta(days=n + 1),
            )


def figures(name: str, times: list[float]) -> str:
    times = sorted(times)
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    return (
        f"{name}: p50 {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms,"
        f" max {times[-1] * 1000:.0f} ms ({len(times)} requests)"
    )


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate.upgrade(engine)
        store = SqlStore(engine)
        began = time.perf_counter()
        await seed(store, members=100, goals=500, polls=2000, reflections=20_000)
        print(f"seeded in {time.perf_counter() - began:.1f} s")
        clock = SystemClock(NOW)
        sock = free_socket()
        public = f"http://127.0.0.1:{sock.getsockname()[1]}"
        chat = FakeChat(facilitators={"alice"})
        bot = Engine(store, clock, [chat], recurrence=CronRecurrence(), dashboard=DashboardSettings(public))
        await prepare_secret(store, None)
        reply = await bot.handle(
            CommandInvoked("e1", CHANNEL, UserRef("fake", "alice", "alice"), "dashboard")
        )
        assert reply is not None and not reply.is_error, reply
        found = re.search(r"http://\S+/", reply.text)
        assert found is not None
        url = found[0]
        app = web.Application()
        dashboard_routes(app, store, clock)
        started_up()  # as `peerbot run` does once it has started
        async with serving(app, sock), aiohttp.ClientSession() as http:
            targets = ((url, "page"), (url + "?polls=20", "page ?polls=20"), (url + "data.json", "data.json"))
            for target, name in targets:
                times: list[float] = []
                cpu: list[float] = []
                size = 0
                for n in range(requests + 3):
                    t0, c0 = time.perf_counter(), time.process_time()
                    async with http.get(target) as response:
                        body = await response.read()
                        assert response.status == 200
                    if n >= 3:  # the first few warm the caches
                        times.append(time.perf_counter() - t0)
                        cpu.append(time.process_time() - c0)
                    size = len(body)
                print(figures(name, times) + f", {size / 1024:.0f} KB")
                # CPU time of this process (server and client, every thread) per request: what a busy
                # machine does not stretch, as it stretches the wall-clock time above.
                print(figures(f"{name} CPU", cpu))
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args().requests))
