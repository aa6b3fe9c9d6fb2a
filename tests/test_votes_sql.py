"""Polls, votes and goals through the engine on the real SQL store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from core.goals import GoalStatus
from core.polls import NUMBER_EMOJI, Tally
from core.ports import StateChanges
from core.refs import MessageRef
from tests.support import Harness


async def open_poll(h: Harness, text: str) -> MessageRef:
    reply = await h.member("alice").says(f"/poll create {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


async def current(h: Harness, poll_id: int = 1) -> Tally:
    return await h.tally(poll_id)


async def test_votes_round_trip_with_single_choice_and_take_backs(sql: Harness) -> None:
    msg = await open_poll(sql, "Pace? | 🐢 slower | 🐇 faster | same")
    bob, carol = sql.member("bob"), sql.member("carol")
    await bob.reacts(msg, "🐢")
    await bob.reacts(msg, "🐇")  # latest choice counts
    await carol.reacts(msg, "3️⃣")
    await carol.unreacts(msg, "3️⃣")
    await carol.reacts(msg, "🐢")
    await carol.reacts(msg, "✨")  # not an option
    assert (await current(sql)).counts == (1, 1, 0)
    await bob.unreacts(msg, "🐇")  # bob's earlier 🐢 is still there and counts again
    assert (await current(sql)).counts == (2, 0, 0)


async def test_a_burst_of_concurrent_votes_is_counted_exactly(sql: Harness) -> None:
    msg = await open_poll(sql, "--multiple Q | a | b | c")
    rng = random.Random(3)
    expected: dict[tuple[str, int], bool] = {}
    submissions = []
    for i in range(2000):
        user, option, add = f"u{rng.randrange(150)}", rng.randrange(3), rng.random() < 0.75
        expected[(user, option)] = add
        member = sql.member(user)
        call = member.reacts if add else member.unreacts
        submissions.append(call(msg, NUMBER_EMOJI[option], f"burst-{i}"))
    await asyncio.gather(*submissions)
    counts = [0, 0, 0]
    for (_, option), present in expected.items():
        counts[option] += present
    assert (await current(sql)).counts == tuple(counts)
    assert sql.engine.votes.batches < 200  # group commit: far fewer transactions than events


async def test_replaying_the_stream_three_times_leaves_every_tally_identical(sql: Harness) -> None:
    msg = await open_poll(sql, "--multiple Q | a | b | c")
    rng = random.Random(11)
    stream = [(f"u{rng.randrange(30)}", rng.randrange(3), rng.random() < 0.6) for _ in range(400)]
    tallies = []
    for _ in range(3):
        batch = []
        for i, (user, option, add) in enumerate(stream):
            member = sql.member(user)
            call = member.reacts if add else member.unreacts
            batch.append(call(msg, NUMBER_EMOJI[option], f"ev-{i}"))
        await asyncio.gather(*batch)
        tallies.append(await current(sql))
    assert tallies[0] == tallies[1] == tallies[2]
    assert tallies[0].voters > 0


async def test_goal_decision_and_settings_survive_in_the_database(sql: Harness) -> None:
    await sql.member("alice").says("/phase set organizing")
    await sql.member("alice").says("/goal rules 3 1d")
    await sql.member("bob").says("/goal propose Ship a study guide")
    msg = sql.chat.sent[-1].ref
    for name in ("bob", "carol", "dave"):
        await sql.member(name).reacts(msg, "✅")
    sql.clock.advance(timedelta(days=1))
    await sql.engine.tick()
    assert sql.chat.sent[-1].text.startswith("Goal 1 accepted by consent")
    async with sql.store.transaction() as tx:
        goal = await tx.goals.get(1, 1)
        group = await tx.groups.get(sql.channel)
    assert goal is not None and goal.status is GoalStatus.ACCEPTED and goal.poll_id == 1
    assert group is not None and (group.goal_quorum, group.decision_window) == (3, timedelta(days=1))
    listing = await sql.member("bob").says("/goal list")
    assert listing is not None and "Goal 1: Ship a study guide (bob)" in listing.text


async def test_a_poll_is_closed_once_even_when_two_closers_race(sql: Harness) -> None:
    await open_poll(sql, "--closes 1h Q | a | b")
    sql.clock.advance(timedelta(hours=2))
    async with sql.store.transaction() as tx:
        (poll,) = await tx.polls.due(sql.clock.now(), 10, ["fake"])

    async def close() -> bool:
        async with sql.engine.work() as uow:
            return await sql.engine.polls.close(uow, poll)

    results = await asyncio.gather(*(close() for _ in range(5)))
    await sql.engine.settle()
    assert sorted(results) == [False] * 4 + [True]
    assert sum(s.text.startswith("Poll 1 closed") for s in sql.chat.sent) == 1


async def test_a_batch_saves_and_deletes_adapter_state_with_its_votes(sql: Harness) -> None:
    from core.events import ReactionAdded

    msg = await open_poll(sql, "Q | a | b")
    async with sql.store.transaction() as tx:
        await tx.state("matrix").set("old.record", "x")
    vote = ReactionAdded("v1", msg, sql.member("bob").user, "1️⃣")
    await sql.engine.handle_batch([vote], StateChanges("matrix", {"sync.token": "t2", "old.record": None}))
    async with sql.store.transaction() as tx:
        assert await tx.state("matrix").get("sync.token") == "t2"
        assert await tx.state("matrix").get("old.record") is None
    assert (await current(sql)).counts == (1, 0)


async def test_reconcile_on_the_real_store(sql: Harness) -> None:
    msg = await open_poll(sql, "Pace? | 🐢 slow | 🐇 fast")
    await sql.member("bob").reacts(msg, "🐢")
    carol = sql.member("carol").user
    assert await sql.engine.reconcile(msg, {"🐇": [carol]}) == 2
    assert (await current(sql)).counts == (0, 1)
    assert await sql.engine.open_poll_messages("fake") == [msg]


async def test_the_batch_that_completes_the_roster_decides_a_goal_early(sql: Harness) -> None:
    from core.events import ReactionAdded

    await sql.regulars("alice", "bob", "carol")
    await sql.member("alice").says("/goal propose Ship a study guide")
    msg = sql.chat.sent[-1].ref
    await sql.member("alice").reacts(msg, "✅")
    votes = [ReactionAdded(f"v{n}", msg, sql.member(n).user, e) for n, e in (("bob", "✅"), ("carol", "🤔"))]
    await sql.engine.handle_batch(votes)
    await sql.engine.settle()
    async with sql.store.transaction() as tx:
        goal = await tx.goals.get(1, 1)
        poll = await tx.polls.get(1, 1)
    assert goal is not None and goal.status is GoalStatus.ACCEPTED
    assert poll is not None and poll.closed_at == sql.clock.now() and poll.remind_at is None
    assert sql.chat.sent[-1].text.splitlines()[:2] == [
        "Goal 1 accepted by consent: Ship a study guide (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now.",
        "Decided early: all 3 members on the roster have voted.",
    ]


async def test_a_poll_reconciled_with_its_message_is_decided_early_too(sql: Harness) -> None:
    await sql.regulars("alice", "bob")
    await sql.member("alice").says("/goal propose Ship a study guide")
    msg = sql.chat.sent[-1].ref
    everyone = [sql.member(n).user for n in ("alice", "bob")]
    assert await sql.engine.reconcile(msg, {"✅": everyone}) == 2
    await sql.engine.settle()
    assert sql.chat.sent[-1].text.splitlines()[1] == "Decided early: all 2 members on the roster have voted."


async def test_open_polls_are_read_in_pages_by_id_leaving_out_anonymous_and_closed_ones(sql: Harness) -> None:
    first = await open_poll(sql, "One? | a | b")
    await open_poll(sql, "--anonymous Two? | a | b")  # voted on privately: nothing to reconcile
    third = await open_poll(sql, "Three? | a | b")
    fourth = await open_poll(sql, "Four? | a | b")
    await sql.member("alice").says("/poll close 3")
    pages = []
    after = 0
    while True:
        page = await sql.engine.open_poll_page("fake", after, 2)
        pages.append(page.messages)
        if page.last is None:
            break
        after = page.last
    assert pages == [[first], [fourth]]  # the page of polls 1-2 holds one message; 3 is closed
    assert third not in pages[1]
    assert await sql.engine.open_poll_messages("fake") == [first, fourth]
