"""Schedules on the real store: restarts without loss or duplicates, and two processes on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.sql import migrate
from adapters.sql.schema import deliveries
from adapters.sql.store import SqlStore, make_engine
from core.clock import utc
from core.outbox import LEASE
from core.refs import ChannelRef
from tests.support import START, Harness

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    s = SqlStore(engine)
    yield s
    await s.close()


def nudges(h: Harness) -> list[str]:
    return [s.text for s in h.chat.sent if s.text.startswith("🔔")]


async def test_a_restart_neither_loses_nor_repeats_a_nudge(store: SqlStore, db_url: str) -> None:
    first = Harness(store=store)
    await first.member("alice").says("/nudge add daily 10:00 Morning question")
    first.clock.advance(timedelta(hours=1))
    await first.engine.tick()
    assert nudges(first) == ["🔔 Nudge 1: Morning question"]

    # A new process on the same database, at the same moment: the delivery was claimed.
    second_store = SqlStore(make_engine(db_url))
    second = Harness(store=second_store)
    second.clock.current = first.clock.now()
    await second.engine.tick()
    assert nudges(second) == []
    # Down from 09:30 to 10:20 the next day: the missed 10:00 comes late, once.
    second.clock.advance(timedelta(days=1, minutes=20))
    await second.engine.tick()
    await second.engine.tick()
    assert nudges(second) == ["🔔 Nudge 1: Morning question"]
    async with second_store.transaction() as tx:
        (schedule,) = await tx.schedules.in_group(1)
        recorded = (await tx.conn.execute(select(deliveries.c.occurrence).order_by("occurrence"))).scalars()
        assert [utc(o) for o in recorded] == [START + timedelta(hours=1), START + timedelta(days=1, hours=1)]
    assert schedule.next_occurrence == START + timedelta(days=2, hours=1)
    await second_store.close()


async def test_group_settings_and_reviews_survive(store: SqlStore) -> None:
    h = Harness(store=store)
    await h.regulars("alice", "bob")  # no welcome waits: the review's reminder is the next thing due
    alice = h.member("alice")
    await alice.says("/timezone Europe/Berlin")
    await alice.says("/quiet-hours 22:00-07:00")
    await alice.says("/auto review off")
    await alice.says("/review start 1d")
    await h.member("bob").says("/reflect q5 Fewer meetings")
    async with store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        assert (group.timezone, str(group.quiet), group.auto_review) == (
            "Europe/Berlin",
            "22:00-07:00",
            False,
        )
        review = await tx.reviews.open(group.id)
        assert review is not None
        (answer,) = await tx.reviews.reflections(group.id, review.id)
        assert (answer.question, answer.text) == (5, "Fewer meetings")
        assert review.remind_at == review.closes_at - timedelta(hours=6)  # the last quarter of a day
        assert await tx.next_due_time(["fake"]) == review.remind_at
    done = await h.member("bob").says("/forget-me confirm")
    assert done is not None and done.text.startswith("Done: 1 reflection and")
    async with store.transaction() as tx:
        (review,) = await tx.reviews.in_group(1)
    assert (review.started_by, review.started_by_key) == ("alice", "fake:alice")  # not bob's: kept


def run_workers(url: str, platforms: list[str], hours: int, since: timedelta = timedelta()) -> list[str]:
    """Run one schedule worker per platform on the same database, for `hours` from START + `since`; the
    `sent` lines of all."""
    start, end = (START + since).isoformat(), (START + since + timedelta(hours=hours)).isoformat()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.schedule_worker", url, start, end, "60", platform],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for platform in platforms
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
        assert out.rstrip().endswith("done")
    shares = [sum(1 for line in out.splitlines() if line.startswith("sent ")) for out, _ in outputs]
    print(f"deliveries per process: {shares}")
    return [line for out, _ in outputs for line in out.splitlines() if line.startswith("sent ")]


async def add_nudges(url: str, platform: str, groups: int, cron: str) -> None:
    engine = make_engine(url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    h.chat.platform = platform
    h.engine.attach(h.chat)
    for i in range(groups):
        channel = ChannelRef(platform, f"{platform}{i}", f"#{platform}{i}")
        await h.member("alice").says(f"/nudge add {cron} Nudge for {platform}{i}", channel=channel)
    await store.close()


async def test_two_processes_on_postgresql_deliver_each_nudge_once(postgres_url: str) -> None:
    groups = 150
    await add_nudges(postgres_url, "fake", groups, "*/10 * * * *")
    lines = run_workers(postgres_url, ["fake", "fake"], hours=2)
    keys = Counter(line.split()[3] for line in lines)
    assert keys and max(keys.values()) == 1, "an outbox row was sent twice"
    per_group = Counter(line.split()[1] for line in lines)
    # 09:10 to 11:00 every ten minutes: 12 occurrences per group, none lost, none twice.
    assert len(per_group) == groups and set(per_group.values()) == {12}


async def test_a_process_per_platform_on_postgresql_each_delivers_its_own_nudges(postgres_url: str) -> None:
    """A Discord-only and a Matrix-only process on one database: neither claims the other's work."""
    for platform in ("discord", "matrix"):
        await add_nudges(postgres_url, platform, 200, "0 10 * * *")
    lines = run_workers(postgres_url, ["discord", "matrix"], hours=2)
    keys = Counter(line.split()[3] for line in lines)
    assert max(keys.values()) == 1
    per_group = Counter(line.split()[1] for line in lines)
    assert len(per_group) == 400 and set(per_group.values()) == {1}


async def test_a_nudge_prepared_by_a_process_that_died_is_posted_once_by_another(
    store: SqlStore, db_url: str
) -> None:
    """Prepared a minute ahead and leased to its process, which keeps the lease while it ticks; it dies
    before the due time: another process takes it over when the lease runs out (at most a lease after
    the last tick of the dead one), and posts it once. A process that shuts down lets go of what it
    prepared: another sends it when due, at once."""
    first = Harness(store=store)
    alice = first.member("alice")
    await alice.says("/nudge add daily 10:00 Morning question")
    await alice.says("/nudge add daily 11:00 Late morning question")
    first.clock.advance(timedelta(minutes=59, seconds=30))  # 09:59:30: the 10:00 one is prepared
    await first.engine.tick()
    assert first.engine.dispatcher.held_ahead == 1 and nudges(first) == []
    wall = first.engine.dispatcher.wall
    later = timedelta(seconds=25)  # a tick 25 s later (wall clock) keeps the lease
    first.engine.dispatcher.wall = lambda: wall() + later
    first.clock.advance(timedelta(seconds=25))
    await first.engine.tick()
    assert first.engine.dispatcher.held_ahead == 1

    second_store = SqlStore(make_engine(db_url))
    second = Harness(store=second_store)
    second.clock.current = START + timedelta(hours=1)  # 10:00; the first has died after 09:59:55
    second.engine.dispatcher.wall = lambda: wall() + LEASE + timedelta(seconds=1)
    await second.engine.tick()
    await second.engine.settle()
    assert nudges(second) == []  # its lease was renewed: it may be alive and about to send
    second.engine.dispatcher.wall = lambda: wall() + later + LEASE + timedelta(seconds=1)
    await second.engine.tick()
    await second.engine.settle()
    assert nudges(second) == ["🔔 Nudge 1: Morning question"]

    first.clock.current = START + timedelta(hours=1, minutes=59, seconds=30)  # 10:59:30, alive again
    first.engine.dispatcher.wall = wall
    await first.engine.tick()
    assert first.engine.dispatcher.held_ahead == 1
    await first.engine.drain()  # shuts down: lets go of the 11:00 one
    assert first.engine.dispatcher.held_ahead == 0
    second.engine.dispatcher.wall = wall
    second.clock.current = START + timedelta(hours=2)
    await second.engine.tick()
    await second.engine.settle()
    await second.engine.tick()
    assert nudges(second) == ["🔔 Nudge 1: Morning question", "🔔 Nudge 2: Late morning question"]
    assert nudges(first) == []
    await second_store.close()
