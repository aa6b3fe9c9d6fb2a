"""Reminders before a consent poll or an action review closes, and consent polls decided early, on
in-memory fakes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.commands import UsageError
from core.goals import GoalStatus, decided_early, early_note
from core.polls import Tally
from core.refs import MessageRef, UserRef
from core.reminders import (
    OFF,
    Absent,
    Planned,
    goal_line,
    parse_window,
    remind_time,
    replan,
    review_line,
)
from tests.support import START, Harness

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A consent poll is open 48 hours by default: its last quarter starts 36 hours in.
LAST_QUARTER = 36 * HOUR
GOAL_DM = (
    "A reminder from #general: goal 1 is waiting for your vote.\n"
    "“Learn Rust together”\n"
    "Voting closes 2026-03-04 09:00 UTC. React on poll 1 in #general: ✅ agree, 🤔 concerns, ⛔ block.\n"
    "You get one reminder per vote; /remind me off stops them."
)


async def propose(h: Harness, text: str = "Learn Rust together", who: str = "alice") -> MessageRef:
    reply = await h.member(who).says(f"/goal propose {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


async def at(h: Harness, delta: timedelta) -> None:
    """Move the clock on and do what is due, as the running bot's tick would."""
    h.clock.advance(delta)
    await h.engine.tick()
    await h.engine.settle()


def reminded(h: Harness) -> list[str]:
    """Who got a direct message, in order: reminders, not the question a 🤔 or ⛔ asks (core/concerns.py)."""
    return [user.name for user, text in h.chat.direct if not text.startswith("You reacted")]


def lines(h: Harness) -> list[str]:
    return [s.text for s in h.chat.sent if "members have not" in s.text or "members has not" in s.text]


async def status_of(h: Harness, goal_id: int = 1) -> GoalStatus:
    async with h.store.transaction() as tx:
        goal = await tx.goals.get(1, goal_id)
    assert goal is not None
    return goal.status


# Rules --------------------------------------------------------------------------------------------


def test_the_window_is_a_whole_percent_from_1_to_90_or_off() -> None:
    assert [parse_window(w) for w in ("25%", "25", " 1 % ", "90%", "off", "OFF")] == [25, 25, 1, 90, 0, 0]
    for bad in ("0%", "91%", "100", "-5%", "25.5%", "2 5", "quarter", "", "²5", "٢٥"):
        with pytest.raises(UsageError, match="whole percent from 1 to 90"):
            parse_window(bad)


def test_the_reminder_comes_at_the_start_of_the_last_share_of_the_time() -> None:
    assert remind_time(START, START + 48 * HOUR, 25) == START + LAST_QUARTER
    assert remind_time(START, START + 10 * MINUTE, 90) == START + MINUTE
    assert remind_time(START, START + 48 * HOUR, OFF) is None


def test_replanning_never_brings_back_a_reminder_that_was_sent() -> None:
    now = START + 30 * HOUR
    pending = Planned(1, START, START + 48 * HOUR, START + LAST_QUARTER)
    sent = Planned(2, START - DAY, START + DAY, None)  # reminded at START + 12h under 25%
    fresh = Planned(3, START + 29 * HOUR, START + 77 * HOUR, START + 65 * HOUR)
    # A wider window: the pending one is due at once, the sent one stays sent.
    assert replan([pending, sent, fresh], 25, 50, now) == [(1, START + 24 * HOUR), (3, START + 53 * HOUR)]
    assert replan([pending, sent], 25, OFF, now) == [(1, None)]
    assert replan([pending], 25, 25, now) == []
    # Back on: only items whose new reminder is still ahead; the others may have had theirs.
    assert replan([replace_at(pending), replace_at(sent)], OFF, 10, now) == [
        (1, START + 43 * HOUR + 12 * MINUTE)
    ]
    assert replan([replace_at(pending)], OFF, 50, now) == []


def replace_at(item: Planned) -> Planned:
    return Planned(item.id, item.opened, item.closes, None)


def test_the_group_line_counts_without_names() -> None:
    closes = START + 2 * DAY
    assert goal_line(4, 3, 7, closes, "UTC") == (
        "3 of 7 members have not voted on goal 4 yet; voting closes 2026-03-04 09:00 UTC."
    )
    assert review_line(2, 1, 7, closes, "Europe/Berlin") == (
        "1 of 7 members has not answered action review 2 yet; it closes 2026-03-04 10:00 CET."
    )
    assert Absent("matrix:@ben:example.org", "Ben", True).user == UserRef("matrix", "@ben:example.org", "Ben")


def test_a_poll_is_decided_early_only_when_everyone_voted_nobody_blocks_and_the_quorum_is_met() -> None:
    def votes(agree: int, concerns: int, block: int) -> Tally:
        return Tally((agree, concerns, block), agree + concerns + block, ((), (), ("x",) * block))

    everyone = ["fake:a", "fake:b", "fake:c"]
    assert decided_early(votes(2, 1, 0), 2, everyone, set(everyone))
    assert decided_early(votes(3, 0, 0), 2, everyone, {*everyone, "fake:gone"})
    assert not decided_early(votes(2, 0, 1), 2, everyone, set(everyone))  # a block
    assert not decided_early(votes(1, 2, 0), 2, everyone, set(everyone))  # no quorum
    assert not decided_early(votes(3, 0, 0), 2, everyone, {"fake:a", "fake:b", "fake:gone"})
    assert not decided_early(votes(0, 0, 0), 0, [], set())  # nobody on the roster
    assert early_note(5) == "Decided early: all 5 members on the roster have voted."
    assert early_note(1) == "Decided early: the one member on the roster has voted."


# Reminders of a goal's consent poll ---------------------------------------------------------------


async def test_who_has_not_voted_gets_one_reminder_and_the_group_a_line_without_names(
    harness: Harness,
) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol", "dave", "erin")
    await h.member("erin").says("/remind me off")
    message = await propose(h)
    await h.member("bob").reacts(message, "✅")
    await at(h, LAST_QUARTER - MINUTE)
    assert reminded(h) == [] and lines(h) == []
    await at(h, MINUTE)
    assert reminded(h) == ["alice", "carol", "dave"]  # not bob, who voted; not erin, who said no
    assert all(text == GOAL_DM for _, text in h.chat.direct)
    assert lines(h) == ["4 of 5 members have not voted on goal 1 yet; voting closes 2026-03-04 09:00 UTC."]
    assert not any(s.mentions for s in h.chat.sent)
    await at(h, 12 * HOUR - MINUTE)
    assert reminded(h) == ["alice", "carol", "dave"]  # once
    assert len(lines(h)) == 1
    await at(h, MINUTE)  # the window ends; no reminder comes with the result
    assert h.chat.sent[-1].text.startswith("Goal 1 lapsed")
    assert reminded(h) == ["alice", "carol", "dave"]


async def test_the_second_number_counts_the_roster_when_the_reminder_is_sent(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol")
    message = await propose(h)
    await h.member("bob").reacts(message, "✅")
    await h.member("carol").says("/leave")
    await h.member("frank").says("/join Here for Rust")  # after the proposal, before the reminder
    await at(h, LAST_QUARTER)
    assert lines(h) == ["2 of 3 members have not voted on goal 1 yet; voting closes 2026-03-04 09:00 UTC."]
    assert sorted(reminded(h)) == ["alice", "frank"]  # carol left the roster


async def test_nobody_is_reminded_when_everyone_on_the_roster_voted(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    message = await propose(h)
    await h.member("alice").reacts(message, "✅")
    await h.member("bob").reacts(message, "⛔")  # no early decision with a block
    await at(h, LAST_QUARTER)
    assert reminded(h) == [] and lines(h) == []


async def test_a_member_who_takes_their_vote_back_has_not_voted(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    message = await propose(h)
    await h.member("bob").reacts(message, "🤔")
    await h.member("bob").unreacts(message, "🤔")
    await at(h, LAST_QUARTER)
    assert reminded(h) == ["alice", "bob"]


async def test_a_dropped_goal_is_not_reminded(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await propose(h)
    await h.member("alice").says("/goal drop 1")
    await at(h, LAST_QUARTER)
    assert reminded(h) == [] and lines(h) == []
    async with h.store.transaction() as tx:
        poll = await tx.polls.get(1, 1)
    assert poll is not None and poll.closed_at is not None and poll.remind_at is None


async def test_the_console_clock_reaches_the_reminder_on_its_way(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await propose(h)
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == START + LAST_QUARTER
    sent_at: list[datetime] = []

    def move(when: datetime) -> None:
        h.clock.current = when
        sent_at.append(when)

    await h.engine.run_until(START + 3 * DAY, move)
    await h.engine.settle()
    assert reminded(h) == ["alice", "bob"]
    assert START + LAST_QUARTER in sent_at


async def test_a_member_switches_their_own_reminders_off_and_on(harness: Harness) -> None:
    h = harness
    bob = h.member("bob")
    shown = await bob.says("/remind me")
    assert shown is not None and shown.text == (
        "You get a direct message before a goal or review in #general closes if you have not voted or"
        " answered yet. /remind me off stops them."
    )
    off = await bob.says("/remind me off")
    assert off is not None and off.text == (
        "You will get no more reminders from #general. /remind me on brings them back."
    )
    shown = await bob.says("/remind me")
    assert (
        shown is not None
        and shown.text == "You get no reminders from #general. /remind me on brings them back."
    )
    await propose(h, who="alice")
    await at(h, LAST_QUARTER)
    assert reminded(h) == ["alice"]
    on = await bob.whispers("/remind me on")  # privately, for his one group
    assert on is not None and on.text.startswith("You will get a reminder by direct message")
    bad = await bob.says("/remind me maybe")
    assert bad is not None and bad.is_error and "on, off" in bad.text


# The group's window --------------------------------------------------------------------------------


async def test_everyone_sees_the_window_and_only_facilitators_change_it(harness: Harness) -> None:
    h = harness
    shown = await h.member("bob").says("/remind window")
    assert shown is not None and shown.text.startswith(
        "Reminders come in the last 25% of a consent poll's or action review's time (the default):"
    )
    refused = await h.member("bob").says("/remind window 50%")
    assert refused is not None and refused.is_error
    assert refused.text == "Sorry, only facilitators can change the reminder window. Nothing was changed."
    for bad in ("95%", "0", "soon"):
        answer = await h.member("alice").says(f"/remind window {bad}")
        assert answer is not None and answer.is_error
        assert answer.text == (
            "The reminder window is a whole percent from 1 to 90, like 25%, or off.\n"
            "Usage: /remind window [percent]"
        )
    async with h.store.transaction() as tx:
        group = await tx.groups.by_id(1)
    assert group is not None and group.remind_window is None  # bad input changed nothing
    changed = await h.member("alice").says("/remind window 40%")
    assert changed is not None and changed.text == (
        "Reminders now come in the last 40% of a consent poll's or action review's time,"
        " for the goals and reviews open now too."
    )
    shown = await h.member("bob").says("/remind window")
    assert shown is not None and "last 40% of" in shown.text and "(the default)" not in shown.text


async def test_switching_the_window_off_stops_the_reminders_of_open_goals(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await propose(h)
    off = await h.member("alice").says("/remind window off")
    assert off is not None and off.text == (
        "Reminders are off: nobody is reminded of open goals or reviews. /remind window 25% brings them back."
    )
    await propose(h, "Read the book")  # opened while off: no reminder either
    await at(h, LAST_QUARTER)
    assert reminded(h) == [] and lines(h) == []
    shown = await h.member("bob").says("/remind me")
    assert shown is not None and shown.text.endswith("Reminders are off in #general for now, for everyone.")
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == START + 2 * DAY  # the polls closing, nothing before


async def test_a_new_window_replans_the_reminders_of_open_goals(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await propose(h)
    await at(h, 10 * HOUR)
    await h.member("alice").says("/remind window 50%")
    await at(h, 14 * HOUR - MINUTE)
    assert reminded(h) == []
    await at(h, MINUTE)  # half of 48 hours in
    assert reminded(h) == ["alice", "bob"]
    await h.member("alice").says("/remind window 10%")  # narrower: no second reminder
    await at(h, 20 * HOUR)  # past 90% of the time, before the poll closes
    assert reminded(h) == ["alice", "bob"]


async def test_switched_back_on_only_items_whose_window_is_still_ahead_are_reminded(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/remind window off")
    await propose(h)  # goal 1: its last quarter starts 36 hours in
    await at(h, 40 * HOUR)
    await propose(h, "Read the book")  # goal 2: its last quarter starts at 76 hours
    await h.member("alice").says("/remind window 25%")
    await at(h, 8 * HOUR)  # goal 1 closes
    await at(h, 28 * HOUR)
    assert h.chat.direct[0][1].startswith("A reminder from #general: goal 2 is waiting for your vote.")
    assert reminded(h) == ["alice", "bob"]  # goal 1 was already in its last quarter: not reminded


# Reviews ----------------------------------------------------------------------------------------------


async def test_who_has_not_answered_the_review_gets_one_reminder(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol")
    await h.member("alice").says("/review start 4d")
    await h.member("bob").says("/reflect q2 We pair on exercises")
    await h.member("carol").says("/reflect A free thought is not an answer")
    await at(h, 3 * DAY - MINUTE)
    assert reminded(h) == []
    await at(h, MINUTE)
    assert reminded(h) == ["alice", "carol"]
    assert h.chat.direct[0][1] == (
        "A reminder from #general: action review 1 is waiting for your answers.\n"
        "It closes 2026-03-06 09:00 UTC. Answer any of its 5 questions in #general with"
        " /reflect q<number> <your answer>, like /reflect q4 <what you learned>.\n"
        "You get one reminder per review; /remind me off stops them."
    )
    assert lines(h) == [
        "2 of 3 members have not answered action review 1 yet; it closes 2026-03-06 09:00 UTC."
    ]
    await at(h, DAY)
    assert reminded(h) == ["alice", "carol"]
    assert h.chat.sent[-1].text.startswith("Action review 1 summary.")


async def test_a_review_closed_early_is_not_reminded(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/review start 4d")
    await h.member("alice").says("/review summary")
    await at(h, 3 * DAY)
    assert reminded(h) == [] and lines(h) == []


async def test_a_narrower_window_moves_the_reviews_reminder(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/review start 4d")
    await h.member("alice").says("/remind window 10%")
    await at(h, 3 * DAY)
    assert reminded(h) == []
    await at(h, 14 * HOUR + 24 * MINUTE)  # 90% of four days
    assert reminded(h) == ["alice", "bob"]


# Quiet hours ---------------------------------------------------------------------------------------


async def test_a_reminder_in_quiet_hours_waits_for_them_to_end(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/quiet-hours 20:00-08:00")
    await propose(h)  # its last quarter starts at 21:00 the next day, in quiet hours
    await at(h, LAST_QUARTER)
    assert reminded(h) == [] and lines(h) == []
    await at(h, 11 * HOUR - MINUTE)
    assert reminded(h) == []
    await at(h, MINUTE)  # 08:00, an hour before the poll closes
    assert reminded(h) == ["alice", "bob"]
    assert len(lines(h)) == 1


async def test_a_reminder_that_quiet_hours_would_hold_past_the_closing_is_dropped(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/quiet-hours 20:00-08:00")
    await h.member("alice").says("/goal rules 2 12h")
    await propose(h)  # open from 09:00 until 21:00
    await h.member("alice").says("/remind window 5%")  # from 20:24, in quiet hours until 08:00
    await at(h, 11 * HOUR + 24 * MINUTE)
    assert reminded(h) == [] and lines(h) == []
    async with h.store.transaction() as tx:
        assert await tx.next_due_time(["fake"]) == START + 12 * HOUR  # only the closing is left
    await at(h, 36 * MINUTE)  # 21:00: the goal lapses, its result held until 08:00
    await at(h, 12 * HOUR)  # 09:00 the next day: the result came, and no reminder for a closed goal
    assert h.chat.sent[-1].text.startswith("Goal 1 lapsed")
    assert reminded(h) == [] and lines(h) == []


# Early decisions ---------------------------------------------------------------------------------


async def test_a_goal_is_decided_early_when_everyone_on_the_roster_agrees(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol")
    message = await propose(h)
    await h.member("alice").reacts(message, "✅")
    await h.member("bob").reacts(message, "🤔")
    assert await status_of(h) is GoalStatus.PROPOSED
    await h.member("carol").reacts(message, "✅")
    await h.engine.settle()
    assert await status_of(h) is GoalStatus.ACCEPTED
    decision = h.chat.sent[-1].text
    assert decision.splitlines()[:2] == [
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now.",
        "Decided early: all 3 members on the roster have voted.",
    ]  # then what the decision suggests for the group's phase
    await at(h, 3 * DAY)  # nothing more: no reminder, no second result
    assert reminded(h) == []
    assert sum(s.text.startswith("Goal 1 accepted") for s in h.chat.sent) == 1


async def test_a_goal_is_not_decided_early_with_a_block(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol")
    message = await propose(h)
    for name, emoji in (("alice", "✅"), ("bob", "✅"), ("carol", "⛔")):
        await h.member(name).reacts(message, emoji)
    assert await status_of(h) is GoalStatus.PROPOSED
    await at(h, 2 * DAY)
    assert await status_of(h) is GoalStatus.BLOCKED


async def test_a_goal_is_not_decided_early_without_its_quorum(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    await h.member("alice").says("/goal rules 3")
    message = await propose(h)
    for name in ("alice", "bob"):
        await h.member(name).reacts(message, "✅")
    assert await status_of(h) is GoalStatus.PROPOSED


async def test_a_goal_is_not_decided_early_while_one_member_on_the_roster_has_not_voted(
    harness: Harness,
) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol", "dave")
    message = await propose(h)
    for name in ("alice", "bob", "carol", "zed"):  # zed's first vote puts him on the roster
        await h.member(name).reacts(message, "✅")
    assert await status_of(h) is GoalStatus.PROPOSED
    await h.member("dave").says("/leave")  # leaving decides nothing by itself ...
    assert await status_of(h) is GoalStatus.PROPOSED
    await h.member("bob").reacts(message, "🤔")  # ... the next vote does: all four on the roster voted
    await h.engine.settle()
    assert await status_of(h) is GoalStatus.ACCEPTED
    assert h.chat.sent[-1].text.splitlines()[1] == "Decided early: all 4 members on the roster have voted."


async def test_a_vote_from_someone_off_the_roster_does_not_stand_in_for_one_on_it(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob", "carol")
    message = await propose(h)
    await h.member("carol").says("/leave")
    await h.member("carol").reacts(message, "✅")  # a vote, but no return to the roster
    await h.member("alice").reacts(message, "✅")  # two votes, two on the roster: bob has not voted
    assert await status_of(h) is GoalStatus.PROPOSED


async def test_an_early_decision_in_quiet_hours_is_announced_when_they_end(harness: Harness) -> None:
    h = harness
    await h.regulars("alice", "bob")
    message = await propose(h)
    await h.member("alice").says("/quiet-hours 08:00-10:00")  # it is 09:00
    await h.member("alice").reacts(message, "✅")
    await h.member("bob").reacts(message, "✅")
    await h.engine.settle()
    assert await status_of(h) is GoalStatus.ACCEPTED
    assert not h.chat.sent[-1].text.startswith("Goal 1 accepted")
    await at(h, HOUR)
    assert h.chat.sent[-1].text.startswith("Goal 1 accepted")
