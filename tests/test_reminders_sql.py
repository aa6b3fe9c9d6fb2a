"""Reminders and early decisions through the engine on the real SQL store, and two bot processes on
PostgreSQL reminding each member once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.refs import ChannelRef
from tests.support import Harness
from tests.test_schedules_sql import run_workers

LAST_QUARTER = timedelta(hours=36)  # of the default 48 hours


async def at(h: Harness, delta: timedelta) -> None:
    h.clock.advance(delta)
    await h.engine.tick()
    await h.engine.settle()


async def test_who_has_not_voted_or_answered_is_reminded_once(sql: Harness) -> None:
    h = sql
    await h.regulars("alice", "bob", "carol")
    await h.member("carol").says("/remind me off")
    await h.member("alice").says("/goal propose Learn Rust together")
    await h.member("bob").reacts(h.chat.sent[-1].ref, "✅")
    await h.member("alice").says("/review start 2d")
    await h.member("alice").says("/reflect q1 Read the book together")
    await at(h, LAST_QUARTER - timedelta(minutes=1))
    assert h.chat.direct == []
    await at(h, timedelta(minutes=1))
    assert [(u.name, text.splitlines()[0]) for u, text in h.chat.direct] == [
        ("alice", "A reminder from #general: goal 1 is waiting for your vote."),
        ("bob", "A reminder from #general: action review 1 is waiting for your answers."),
    ]
    lines = [s.text for s in h.chat.sent if "members have not" in s.text]
    assert lines == [
        "2 of 3 members have not voted on goal 1 yet; voting closes 2026-03-04 09:00 UTC.",
        "2 of 3 members have not answered action review 1 yet; it closes 2026-03-04 09:00 UTC.",
    ]
    await at(h, timedelta(hours=1))
    assert len(h.chat.direct) == 2
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == h.clock.now() + timedelta(hours=11)  # the closings


async def test_a_new_window_and_off_on_the_real_store(sql: Harness) -> None:
    h = sql
    await h.regulars("alice", "bob")
    await h.member("alice").says("/goal propose Learn Rust together")
    await h.member("alice").says("/remind window 50%")
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == h.clock.now() + timedelta(hours=24)
    await h.member("alice").says("/remind window off")
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == h.clock.now() + timedelta(hours=48)
        group = await tx.groups.by_id(1)
    assert group is not None and group.remind_window == 0
    await at(h, timedelta(hours=47))
    assert h.chat.direct == []


async def test_two_processes_on_postgresql_remind_each_member_once(postgres_url: str) -> None:
    groups = 60
    engine = make_engine(postgres_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    for i in range(groups):
        channel = ChannelRef("fake", f"g{i}", f"#g{i}")
        await h.member("alice").says("/goal propose Read the book together", channel=channel)
        async with store.transaction() as tx:
            group = await tx.groups.get(channel)
            assert group is not None
            for name in ("bob", "carol"):
                await tx.members.add(group.id, h.member(name).user, h.clock.now())
        poll = next(s for s in reversed(h.chat.sent) if s.channel == channel and s.text.startswith("Poll "))
        await h.member("bob").reacts(poll.ref, "✅")
    await store.close()
    # Both processes walk through the moment the reminders fall due, a minute apart each step.
    lines = run_workers(postgres_url, ["fake", "fake"], hours=2, since=LAST_QUARTER - timedelta(hours=1))
    keys = Counter(line.split()[3] for line in lines)
    assert keys and max(keys.values()) == 1, "an outbox row was sent twice"
    to = Counter(line.split()[1] for line in lines)
    assert to == {"@alice": groups, "@carol": groups, **{f"g{i}": 1 for i in range(groups)}}
