"""A thread for every decision: where the posts of a consent poll and of a review go (core/threads.py).

On fakes of the ports, with the in-memory store (`harness`) and the SQL stores (`sql`).
"""

from __future__ import annotations

from datetime import timedelta

from core.outbox import Post, PostKind, Thread
from core.refs import MessageRef
from tests.support import Harness, Sent


async def accepted_goal(h: Harness, text: str = "Learn Rust") -> MessageRef:
    """Goal 1 proposed by bob and accepted by bob and carol (alice, carol and bob on the roster); its
    poll's message."""
    await h.member("bob").says(f"/goal propose {text}")
    poll = h.chat.sent[-1].ref
    await h.member("bob").reacts(poll, "✅")
    await h.member("carol").reacts(poll, "✅")
    await h.member("alice").says("/poll close 1")
    return poll


def in_thread(h: Harness, root: MessageRef) -> list[str]:
    return [s.text for s in h.chat.sent if s.thread == root]


def in_channel(h: Harness) -> list[Sent]:
    return [s for s in h.chat.sent if s.thread is None]


async def test_a_goal_decision_goes_to_the_polls_thread_and_the_channel_gets_one_line(sql: Harness) -> None:
    sql.chat.threads = True
    await sql.regulars("alice", "bob", "carol")
    poll = await accepted_goal(sql)
    assert sql.chat.started == {poll: "Goal 1: Learn Rust"}
    (decision,) = in_thread(sql, poll)
    assert decision.startswith("Goal 1 accepted by consent: Learn Rust (✅ 2, 🤔 0, ⛔ 0).")
    outcome = in_channel(sql)[-1].text
    assert outcome.split("\n")[0] == "Goal 1 accepted: Learn Rust."
    assert "accepted by consent" not in outcome


async def test_without_threads_the_channel_gets_the_decision_once(harness: Harness) -> None:
    await harness.regulars("alice", "bob", "carol")
    poll = await accepted_goal(harness)
    assert not harness.chat.started and not in_thread(harness, poll)
    texts = [s.text for s in in_channel(harness)]
    assert any(t.startswith("Goal 1 accepted by consent: Learn Rust") for t in texts)
    assert not any(t.startswith("Goal 1 accepted: Learn Rust.") for t in texts)


async def test_a_group_can_switch_threads_off_and_on(sql: Harness) -> None:
    sql.chat.threads = True
    await sql.regulars("alice", "bob", "carol")
    alice = sql.member("alice")
    reply = await alice.says("/auto threads off")
    assert reply is not None and reply.text == "Automatic threads is off."
    status = await alice.says("/auto")
    assert status is not None and "a thread for every decision off" in status.text
    refused = await sql.member("bob").says("/auto threads on")
    assert refused is not None and refused.is_error
    poll = await accepted_goal(sql)
    assert not sql.chat.started and not in_thread(sql, poll)
    assert in_channel(sql)[-1].text.startswith("Goal 1 accepted by consent: Learn Rust")
    await alice.says("/auto threads on")
    async with sql.store.transaction() as tx:
        group = await tx.groups.get(sql.channel)
    assert group is not None and group.auto_threads


async def test_a_review_keeps_its_message_and_its_summary_and_answers_go_to_its_thread(sql: Harness) -> None:
    sql.chat.threads = True
    await sql.regulars("alice", "bob")
    await sql.member("alice").says("/review start")
    questions = next(s for s in sql.chat.sent if s.text.startswith("Action review 1:"))
    async with sql.store.transaction() as tx:
        review = await tx.reviews.get(1, 1)
        assert await tx.reviews.get(2, 1) is None  # another group's review is not found
    assert review is not None and review.message_id == questions.ref.id
    reply = await sql.member("bob").says("/reflect q2 pairing helps")
    assert reply is not None and reply.text.startswith("Thanks, bob: answer r1")
    assert in_thread(sql, questions.ref) == ["bob, question 2: pairing helps [r1]"]
    await sql.member("bob").says("/reflect a free thought")  # no question of a review: not shared
    closed = await sql.member("alice").says("/review summary")
    assert (
        closed is not None
        and closed.text == "Action review 1 is closed; its summary is in the review's thread."
    )
    summary = in_thread(sql, questions.ref)[-1]
    assert summary.startswith("Action review 1 summary.") and "bob: pairing helps [r1]" in summary
    assert sql.chat.started == {questions.ref: "Action review 1"}
    line, note = in_channel(sql)[-1].text.split("\n")
    assert (
        line == "Action review 1 is closed (1 answer from 1 member); its summary is in the review's thread."
    )
    assert note.startswith("Suggestion: with the review done") and summary.endswith(note)


async def test_without_threads_answers_are_not_repeated_and_the_summary_is_in_the_channel(
    harness: Harness,
) -> None:
    await harness.regulars("alice", "bob")
    await harness.member("alice").says("/review start")
    before = len(harness.chat.sent)
    await harness.member("bob").says("/reflect q2 pairing helps")
    assert len(harness.chat.sent) == before  # the command's answer is the interaction's
    closed = await harness.member("alice").says("/review summary")
    assert closed is not None and closed.text == "Action review 1 is closed; its summary is above."
    assert harness.chat.sent[-1].text.startswith("Action review 1 summary.")
    assert not any("its summary is in the review's thread" in s.text for s in harness.chat.sent)


async def test_a_post_whose_thread_has_no_message_goes_to_the_channel(harness: Harness) -> None:
    harness.chat.threads = True
    await harness.regulars("alice")
    await harness.member("alice").says("/review start")
    async with harness.store.transaction() as tx:
        group = await tx.groups.get(harness.channel)
        assert group is not None
        await tx.outbox.add(
            [
                Post(
                    PostKind.SEND, harness.channel, "on poll 9", group_id=group.id, thread=Thread("poll", 9)
                ),
                Post(
                    PostKind.SEND,
                    harness.channel,
                    "only for poll 9",
                    group_id=group.id,
                    thread=Thread("poll", 9),
                    thread_only=True,
                ),
            ],
            harness.clock.now(),
        )
    report = await harness.engine.dispatcher.dispatch()
    assert report.sent == 2
    assert [s.text for s in harness.chat.sent[-1:]] == ["on poll 9"]
    assert not harness.chat.started


async def test_a_decision_after_quiet_hours_still_finds_its_thread(sql: Harness) -> None:
    """An early decision waits out quiet hours; the poll's message is its root when it goes."""
    sql.chat.threads = True
    await sql.regulars("alice", "bob")
    alice = sql.member("alice")
    await alice.says("/quiet-hours 00:00-23:59")
    await sql.member("bob").says("/goal propose Learn Rust")
    poll = sql.chat.sent[-1].ref
    await alice.reacts(poll, "✅")
    await sql.member("bob").reacts(poll, "✅")
    await sql.engine.settle()
    assert not in_thread(sql, poll)
    sql.clock.advance(timedelta(hours=15))  # 23:59 and after: quiet hours are over
    await sql.engine.tick()
    assert in_thread(sql, poll) and in_thread(sql, poll)[0].startswith("Goal 1 accepted by consent")
