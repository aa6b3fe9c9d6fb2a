"""Concerns heard: a 🤔 or ⛔ asks privately, once per poll; `concern` answers; decisions, `goal show`,
reshaped goals, the radar and exports read what was said; `concern done` marks one addressed."""

from __future__ import annotations

import json
from datetime import time, timedelta

from sqlalchemy import select

from adapters.sql.schema import concerns
from adapters.sql.store import SqlTx
from bot.recurrence import CronRecurrence
from core.concerns import ask_text, to_ask
from core.engine import Engine
from core.goals import Goal, GoalStatus
from core.lifecycle import QuietHours
from core.polls import ReactionChange
from core.refs import MessageRef
from tests.support import START, Harness

DAY = timedelta(days=1)


async def propose(h: Harness, text: str = "Read the whole book in a month") -> MessageRef:
    await h.regulars("alice", "bob", "carol", "dave")  # alice never votes: no early decision
    reply = await h.member("bob").says(f"/goal propose {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


def asked(h: Harness) -> list[str]:
    return [user.name for user, text in h.chat.direct if text.startswith("You reacted")]


def test_the_question_names_the_command_as_members_write_it_there() -> None:
    goal = Goal(4, 1, "Read it all", GoalStatus.PROPOSED, "x:bob", "bob", START, START)
    typed = ask_text(goal, 1, "#general", "!peer ")
    assert "Answer with !peer concern 4 <your concern>, or !peer concern --anonymous 4" in typed
    assert typed.startswith("You reacted 🤔 on goal 4 (Read it all) in #general.")
    structured = ask_text(goal, 2, "#general", "/", structured=True)
    assert structured.startswith("You reacted ⛔ on goal 4")
    assert "Answer with /concern add goal:4 text:<your concern>, with anonymous:True" in structured


def test_only_a_concern_or_block_left_standing_at_the_end_of_a_batch_asks() -> None:
    changes = [
        ReactionChange("x:carol", "carol", 1, True),
        ReactionChange("x:dave", "dave", 2, True),
        ReactionChange("x:erin", "erin", 1, True),
        ReactionChange("x:erin", "erin", 0, True),  # ✅ last: her vote is ✅
        ReactionChange("x:frank", "frank", 2, True),
        ReactionChange("x:frank", "frank", 2, False),  # taken back
        ReactionChange("x:gus", "gus", 0, True),
        ReactionChange("x:dave", "dave", 0, False),  # another option taken back: ⛔ still stands
    ]
    assert to_ask(changes) == [("x:carol", "carol", 1), ("x:dave", "dave", 2)]


async def test_a_concern_or_block_asks_privately_once_per_poll(harness: Harness) -> None:
    h = harness
    poll = await propose(h)
    await h.member("carol").reacts(poll, "🤔")
    await h.member("dave").reacts(poll, "⛔")
    await h.member("bob").reacts(poll, "✅")
    await h.engine.settle()
    assert asked(h) == ["carol", "dave"]
    _, text = h.chat.direct[0]
    assert text == (  # the fake chat answers commands as Discord does: slash commands, with options
        "You reacted 🤔 on goal 1 (Read the whole book in a month) in #general. What is your concern?"
        " Answer with /concern add goal:1 text:<your concern>, with anonymous:True to be heard without"
        " your name."
    )
    assert h.chat.direct[1][1].startswith("You reacted ⛔ on goal 1")
    # Taking it back and reacting again, or switching to ⛔, asks no more.
    await h.member("carol").unreacts(poll, "🤔")
    await h.member("carol").reacts(poll, "⛔")
    await h.member("dave").reacts(poll, "🤔")
    await h.engine.settle()
    assert asked(h) == ["carol", "dave"]


async def test_a_restarted_or_second_process_does_not_ask_again(sql: Harness) -> None:
    h = sql
    poll = await propose(h)
    await h.member("carol").reacts(poll, "🤔")
    await h.engine.settle()
    assert asked(h) == ["carol"]
    h.engine = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())  # another process
    await h.member("carol").reacts(poll, "⛔")
    await h.member("dave").reacts(poll, "⛔")
    await h.engine.settle()
    assert asked(h) == ["carol", "dave"]


async def test_the_question_waits_out_quiet_hours(harness: Harness) -> None:
    h = harness
    poll = await propose(h)
    async with h.store.transaction() as tx:
        await tx.groups.set_quiet_hours(1, QuietHours(time(8, 0), time(12, 0)))  # it is 09:00
    await h.member("carol").reacts(poll, "🤔")
    await h.engine.settle()
    assert asked(h) == []
    h.clock.advance(timedelta(hours=3))
    await h.engine.tick()
    await h.engine.settle()
    assert asked(h) == ["carol"]


async def test_a_concern_is_heard_privately_and_by_the_group(harness: Harness) -> None:
    h = harness
    await propose(h)
    reply = await h.member("carol").says("/concern 1   Too big   for a month ")
    assert reply is not None and not reply.is_error and reply.private, reply
    assert reply.text == (
        "Concern 1 on goal 1 is heard, by your name. It is listed when the goal is decided and in"
        " /goal show 1."
    )
    assert h.chat.sent[-1].text == "A concern about goal 1: Concern 1 (carol): Too big for a month"
    async with h.store.transaction() as tx:
        (concern,) = (await tx.concerns.of_goals([1]))[1]
    assert (concern.author_key, concern.text) == ("fake:carol", "Too big for a month")


async def test_an_anonymous_concern_keeps_no_trace_of_its_author(sql: Harness) -> None:
    h = sql
    await propose(h)
    h.clock.advance(timedelta(hours=5, minutes=17))
    reply = await h.member("dave").whispers("/concern --anonymous 1 I cannot afford the book")
    assert reply is not None and not reply.is_error, reply
    assert reply.text.startswith("Concern 1 on goal 1 is heard, without your name")
    assert h.chat.sent[-1].text == "A concern about goal 1: Concern 1 (anonymous): I cannot afford the book"
    async with h.store.transaction() as tx:
        (concern,) = (await tx.concerns.of_goals([1]))[1]
        assert (concern.author_key, concern.author_name, concern.by) == ("", "", "anonymous")
        assert concern.at == h.clock.now().replace(hour=0, minute=0)  # the day only
        assert isinstance(tx, SqlTx)
        row = (await tx.conn.execute(select(concerns).where(concerns.c.id == concern.id))).one()
    assert "dave" not in " ".join(str(v) for v in row)


async def test_the_decision_and_goal_show_list_the_concerns(harness: Harness) -> None:
    h = harness
    poll = await propose(h)
    await h.member("carol").reacts(poll, "🤔")
    await h.member("dave").reacts(poll, "⛔")
    await h.member("carol").says("/concern 1 Too big for a month")
    await h.member("dave").says("/concern --anonymous 1 No time before June")
    await h.member("alice").says("/poll close 1")
    decision = next(s.text for s in h.chat.sent if s.text.startswith("Goal 1 is blocked"))
    assert decision.splitlines()[2:] == [
        "Concerns heard:",
        "  Concern 1 (carol): Too big for a month",
        "  Concern 2 (anonymous): No time before June",
    ]
    shown = await h.member("bob").says("/goal show 1")
    assert shown is not None
    assert "Concerns heard:\n  Concern 1 (carol): Too big for a month\n" in shown.text


async def test_a_facilitator_marks_a_concern_addressed_and_its_author_is_told(harness: Harness) -> None:
    h = harness
    await propose(h)
    await h.member("carol").says("/concern 1 Too big")
    refused = await h.member("bob").says("/concern done 1 fine")
    assert refused is not None and refused.is_error
    assert refused.text == "Sorry, only facilitators can mark concern 1 addressed. Nothing was changed."
    done = await h.member("alice").says("/concern done 1   We read three chapters first")
    assert done is not None and done.text == (
        "Concern 1 (carol) about goal 1 is addressed: We read three chapters first"
    )
    assert h.chat.direct[-1][0].name == "carol"
    assert h.chat.direct[-1][1] == (
        "Your concern 1 about goal 1 in #general was marked addressed by alice: We read three chapters first"
    )
    again = await h.member("alice").says("/concern done 1")
    assert again is not None and again.is_error and "addressed already" in again.text
    missing = await h.member("alice").says("/concern done 7")
    assert missing is not None and missing.is_error and "There is no concern 7" in missing.text
    shown = await h.member("bob").says("/goal show 1")
    assert shown is not None
    assert "Concern 1 (carol): Too big [addressed by alice: We read three chapters first]" in shown.text


async def test_bad_concerns_change_nothing(harness: Harness) -> None:
    h = harness
    await propose(h)
    for text, said in (
        ("/concern 9 hm", "There is no goal 9"),
        ("/concern 1", "Missing text"),
        ("/concern", "concern needs one of: add, done"),
        ("/concern soon too big", "goal must be a whole number"),
    ):
        reply = await h.member("carol").says(text)
        assert reply is not None and reply.is_error and said in reply.text, (text, reply)
    await h.member("bob").says("/goal drop 1")
    dropped = await h.member("carol").says("/concern 1 too big")
    assert dropped is not None and dropped.is_error and "Goal 1 is dropped" in dropped.text
    async with h.store.transaction() as tx:
        assert await tx.concerns.of_goals([1]) == {}


async def test_a_reshaped_goal_quotes_its_blockers_concerns(harness: Harness) -> None:
    h = harness
    poll = await propose(h)
    await h.member("carol").reacts(poll, "⛔")
    await h.member("dave").reacts(poll, "⛔")
    await h.member("dave").says("/concern 1 too big for a month")
    await h.member("carol").says("/concern --anonymous 1 I'd rather not read at all")  # never matched
    await h.member("alice").says("/poll close 1")
    reply = await h.member("bob").says("/goal amend 1 Read three chapters")
    assert reply is not None and reply.text.startswith(
        "Goal 2 (reshapes goal 1, blocked by carol, dave: 'too big for a month') proposed."
    )


async def test_the_radar_reads_concerns_nobody_addressed(harness: Harness) -> None:
    h = harness
    poll = await propose(h)
    for who in ("alice", "carol"):
        await h.member(who).reacts(poll, "✅")
    await h.member("dave").reacts(poll, "🤔")
    await h.member("dave").says("/concern 1 Who brings the book?")
    await h.member("alice").says("/poll close 1")
    h.clock.advance(8 * DAY)
    found = await h.member("alice").says("/radar")
    assert found is not None
    assert "Goal 1 (Read the whole book in a month) was accepted with 1 concern nobody has addressed" in (
        found.text
    )
    await h.member("alice").says("/concern done 1 carol brings it")
    found = await h.member("alice").says("/radar")
    assert found is not None and "Goal 1" not in found.text


async def test_exports_carry_concerns_and_anonymous_ones_without_author(harness: Harness) -> None:
    h = harness
    await propose(h)
    await h.member("carol").says("/concern 1 Too big")
    await h.member("dave").says("/concern --anonymous 1 Too long")
    reply = await h.member("bob").says("/export json")
    assert reply is not None and reply.file is not None
    concerns = json.loads(reply.file.data)["concerns"]
    assert [(c["id"], c["author"], c["text"]) for c in concerns] == [
        (1, "carol", "Too big"),
        (2, "anonymous", "Too long"),
    ]
    assert "dave" not in json.dumps(concerns)


async def test_forget_me_forgets_the_concerns_voiced_by_name(harness: Harness) -> None:
    h = harness
    await propose(h)
    await h.member("carol").says("/concern 1 Too big")
    await h.member("carol").says("/concern --anonymous 1 Too long")
    done = await h.member("carol").says("/forget-me confirm")
    assert done is not None and done.text.startswith("Done: 0 reflections, 1 concern and")
    async with h.store.transaction() as tx:
        left = (await tx.concerns.of_goals([1]))[1]
    assert [(c.by, c.text) for c in left] == [("anonymous", "Too long")]
