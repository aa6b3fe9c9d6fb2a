"""Quiet hours hold everything the bot posts on its own; answers to members' commands go at once."""

from __future__ import annotations

from datetime import datetime

from tests.support import Harness


async def run_until(h: Harness, when: str) -> None:
    """Run the bot's clock to a moment, doing what comes due on the way (like the console's :advance)."""
    await h.engine.run_until(datetime.fromisoformat(when), lambda t: setattr(h.clock, "current", t))


def posted(h: Harness, start: str) -> list[str]:
    return [s.text for s in h.chat.sent if s.text.startswith(start)]


async def quiet_group(h: Harness) -> None:
    await h.member("alice").says("/quiet-hours 22:00-08:00")  # UTC, the group's timezone


async def test_a_heartbeat_due_in_quiet_hours_waits_until_they_end(harness: Harness) -> None:
    await quiet_group(harness)
    harness.clock.current = datetime.fromisoformat("2026-03-02T23:31:00+00:00")
    await harness.member("bob").says("/status")  # then a week of silence: due Monday 23:31
    await run_until(harness, "2026-03-10T07:59:00+00:00")
    assert posted(harness, "It has been quiet here") == []
    # Past the outbox's maximum age (1 h) after 08:00: posted only if the bot woke up at 08:00.
    await run_until(harness, "2026-03-10T12:00:00+00:00")
    assert len(posted(harness, "It has been quiet here")) == 1


async def test_a_poll_closing_in_quiet_hours_posts_its_results_when_they_end(harness: Harness) -> None:
    await quiet_group(harness)
    await harness.member("bob").says("/poll create --closes 18h30m Read chapter 4? | yes | no")
    await run_until(harness, "2026-03-03T03:31:00+00:00")
    async with harness.store.transaction() as tx:
        poll = await tx.polls.get(1, 1)
    assert poll is not None and poll.closed_at == datetime.fromisoformat("2026-03-03T03:30:00+00:00")
    assert posted(harness, "Poll 1 closed") == []
    await run_until(harness, "2026-03-03T07:59:00+00:00")
    assert posted(harness, "Poll 1 closed") == []
    await run_until(harness, "2026-03-04T09:00:00+00:00")
    assert len(posted(harness, "Poll 1 closed")) == 1


async def test_a_goal_decided_in_quiet_hours_is_announced_when_they_end(harness: Harness) -> None:
    await quiet_group(harness)
    await harness.member("alice").says("/goal rules 1 18h30m")
    await harness.member("bob").says("/goal propose Read the Rust book")
    await harness.member("carol").reacts(harness.chat.sent[-1].ref, "✅")  # the consent poll
    await run_until(harness, "2026-03-03T07:59:00+00:00")
    assert posted(harness, "Goal 1 accepted") == []
    await run_until(harness, "2026-03-04T09:00:00+00:00")
    assert len(posted(harness, "Goal 1 accepted")) == 1


async def test_a_review_closing_in_quiet_hours_posts_its_summary_when_they_end(harness: Harness) -> None:
    await quiet_group(harness)
    await harness.member("bob").says("/review start 18h30m")
    await run_until(harness, "2026-03-03T07:59:00+00:00")
    assert posted(harness, "Action review 1 summary") == []
    await run_until(harness, "2026-03-04T09:00:00+00:00")
    assert len(posted(harness, "Action review 1 summary")) == 1


async def test_answers_to_commands_in_quiet_hours_are_not_held(harness: Harness) -> None:
    harness.chat.interactive_replies = False  # answers go through the outbox too
    await quiet_group(harness)
    harness.clock.current = datetime.fromisoformat("2026-03-02T23:00:00+00:00")
    reply = await harness.member("bob").says("/poll create Read chapter 4? | yes | no")
    assert reply is not None
    assert [s.text.splitlines()[0] for s in harness.chat.sent[-2:]] == [
        "Poll 1: Read chapter 4?",
        reply.text,
    ]


async def test_the_review_a_move_starts_in_quiet_hours_posts_its_questions_when_they_end(
    harness: Harness,
) -> None:
    harness.chat.interactive_replies = False
    await quiet_group(harness)
    harness.clock.current = datetime.fromisoformat("2026-03-02T23:00:00+00:00")
    reply = await harness.member("alice").says("/phase set assessing")
    assert reply is not None
    assert reply.text.endswith("Its questions come at 2026-03-03 08:00 UTC, when quiet hours end.")
    assert harness.chat.sent[-1].text == reply.text  # the move is announced at once
    await run_until(harness, "2026-03-03T07:59:00+00:00")
    assert posted(harness, "Action review 1: five questions") == []
    await run_until(harness, "2026-03-03T12:00:00+00:00")
    assert len(posted(harness, "Action review 1: five questions")) == 1
