"""Action reviews, reflections, suggestions, export and forget-me, on in-memory fakes."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest

from core.goals import GoalStatus
from core.lifecycle import Phase
from core.prompts import REVIEW_QUESTIONS
from tests.support import Harness


async def test_a_review_posts_the_five_questions_and_collects_answers(harness: Harness) -> None:
    reply = await harness.member("bob").says("/review start 2d")
    assert reply is not None and reply.text == "Action review 1 is open until 2026-03-04 09:00 UTC."
    posted = harness.chat.sent[-1].text.splitlines()
    assert posted[0] == "Action review 1: five questions for the group."
    assert posted[1:6] == [f"{i}. {q}" for i, q in enumerate(REVIEW_QUESTIONS, start=1)]
    again = await harness.member("carol").says("/review start")
    assert again is not None and again.is_error and "already open" in again.text
    answer = await harness.member("carol").says("/reflect q2 We pair on exercises and it works")
    assert answer is not None and answer.text == "Thanks, carol: answer r1 to question 2 of review 1."
    free = await harness.member("dave").says("/reflect I wish we met more often")
    assert free is not None and free.text == "Thanks, dave: reflection r2 kept."


async def test_the_summary_groups_answers_and_offers_question_five_as_goals(harness: Harness) -> None:
    await harness.member("alice").says("/phase set assessing")  # starts a review by default
    await harness.member("bob").says("/reflect q1 Learn Rust basics")
    await harness.member("carol").says("/reflect q5 Weekly pair programming")
    await harness.member("bob").says("/reflect Q5. Shorter meetings")
    refused = await harness.member("bob").says("/review summary")
    assert refused is not None and refused.is_error
    await harness.member("alice").says("/review summary")
    summary = harness.chat.sent[-1].text.splitlines()
    assert summary[:3] == ["Action review 1 summary.", "Took part: bob, carol.", f"1. {REVIEW_QUESTIONS[0]}"]
    assert "  - carol: Weekly pair programming [r2]" in summary
    assert "Each answer to question 5 can become a goal: /goal propose r2, /goal propose r3" in summary
    assert "may be ready for Changing" in summary[-1]
    reply = await harness.member("carol").says("/goal propose r2")
    assert reply is not None and not reply.is_error
    async with harness.store.transaction() as tx:
        goal = await tx.goals.get(1, 1)
        kinds = [kind for kind, _, _ in await tx.groups.signals(1, harness.clock.now() - timedelta(days=1))]
    assert goal is not None and goal.text == "Weekly pair programming"
    assert "review_closed" in kinds


async def test_a_review_closes_itself_at_its_deadline(harness: Harness) -> None:
    await harness.member("bob").says("/review start 1h")
    await harness.member("bob").says("/reflect q3 Quiet people have ideas too")
    await harness.engine.run_until(
        harness.clock.now() + timedelta(hours=2), lambda t: setattr(harness.clock, "current", t)
    )
    assert harness.chat.sent[-1].text.startswith("Action review 1 summary.")
    listing = await harness.member("bob").says("/review list")
    assert listing is not None
    assert listing.text.splitlines()[1] == (
        "  Review 1: started 2026-03-02 09:00 UTC by bob, closed 2026-03-02 10:00 UTC, 1 answers"
    )


async def test_the_automatic_review_can_be_switched_off(harness: Harness) -> None:
    await harness.member("alice").says("/auto review off")
    reply = await harness.member("alice").says("/phase set assessing")
    assert reply is not None and "Action review" not in reply.text
    status = await harness.member("bob").says("/auto")
    assert status is not None and "review on entering Assessing off" in status.text


async def test_finishing_every_accepted_goal_suggests_assessing(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/phase set cooperating")
    for text in ("Read chapter 1", "Read chapter 2"):
        await harness.member("bob").says(f"/goal propose {text}")
        msg = harness.chat.sent[-1].ref
        for name in ("bob", "carol"):
            await harness.member(name).reacts(msg, "✅")
    await alice.says("/poll close 1")
    await alice.says("/poll close 2")
    first = await harness.member("bob").says("/goal done 1")
    assert first is not None and "Suggestion" not in first.text
    last = await harness.member("bob").says("/goal done 2")
    assert last is not None and "Every accepted goal is done. Suggestion:" in last.text
    assert "/phase set assessing" in last.text
    async with harness.store.transaction() as tx:
        group = await tx.groups.get(harness.channel)
        goals = await tx.goals.in_group(1)
    assert group is not None and group.phase is Phase.COOPERATING  # suggested, not forced
    assert {g.status for g in goals} == {GoalStatus.DONE}


async def prepare_record(h: Harness) -> None:
    await h.member("bob").says("/goal propose Learn Rust")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "✅")
    await h.member("bob").says("/poll create Pace? | slow | fast")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "2️⃣")
    await h.member("bob").says("/review start")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "2️⃣")
    await h.member("carol").says("/reflect q4 Ownership finally clicked")
    await h.member("bob").says("/reflect A free thought")


async def test_export_in_json_markdown_and_csv(harness: Harness) -> None:
    await prepare_record(harness)
    data = json.loads(await exported(harness, "/export json"))
    assert data["group"]["phase"] == "convening"
    assert [g["text"] for g in data["goals"]] == ["Learn Rust"]
    assert data["polls"][1]["options"] == [
        {"emoji": "1️⃣", "label": "slow", "votes": 0},
        {"emoji": "2️⃣", "label": "fast", "votes": 1},
    ]
    assert [(r["question"], r["author"]) for r in data["reflections"]] == [(4, "carol"), (None, "bob")]
    md = await exported(harness, "/export")
    assert "## Action reviews" in md and "   - carol: Ownership finally clicked" in md
    rows = list(csv.reader(io.StringIO(await exported(harness, "/export csv"))))
    assert rows[0] == ["kind", "id", "at", "who", "text", "status", "details"]
    assert [r[0] for r in rows[1:]] == ["goal", "poll", "poll", "review", "reflection", "reflection"]


async def exported(harness: Harness, command: str) -> str:
    """The text of the file an export command answers with."""
    reply = await harness.member("bob").says(command)
    assert reply is not None and reply.file is not None, reply
    return reply.file.data.decode("utf-8")


async def test_forget_me_asks_first_then_deletes_votes_and_reflections(harness: Harness) -> None:
    await prepare_record(harness)
    ask = await harness.member("carol").says("/forget-me")
    assert ask is not None and "/forget-me confirm" in ask.text
    async with harness.store.transaction() as tx:
        assert len(await tx.reviews.reflections(1)) == 2
    done = await harness.member("carol").says("/forget-me confirm")
    assert done is not None and done.text == (
        "Done: 1 reflection and 2 votes in open polls deleted; 0 votes in closed polls still count,"
        " without your name.\nGoals, polls, nudges, reviews and phase changes of yours now say"
        " “a former member” (0); 0 records the bot kept about you deleted or cleaned.\n"
        "You are off 1 roster, and out of 0 buddy pairs.\n"
        "Votes in closed anonymous polls are tied to nobody: nothing there is yours to remove."
    )
    async with harness.store.transaction() as tx:
        assert [r.user_name for r in await tx.reviews.reflections(1)] == ["bob"]
    results = await harness.member("bob").says("/poll results 2")
    assert results is not None and "0 voters." in results.text


async def test_entering_assessing_announces_the_move_before_the_review_questions(harness: Harness) -> None:
    harness.chat.interactive_replies = False  # answers go through the outbox, as on Matrix and the console
    await harness.regulars("alice")
    await harness.member("alice").says("/phase set assessing")
    posted = [s.text.splitlines()[0] for s in harness.chat.sent]
    assert posted == [
        "alice moved the group from Convening to Assessing.",
        "Action review 1: five questions for the group.",
    ]


# Review questions are named with q<number>; anything else is a free reflection. -----------------------


async def reflections(h: Harness) -> list[tuple[int | None, int | None, str]]:
    async with h.store.transaction() as tx:
        return [(r.review_id, r.question, r.text) for r in await tx.reviews.reflections(1)]


@pytest.mark.parametrize(
    ("line", "question", "text"),
    [
        ("/reflect q3 Quiet people have ideas too", 3, "Quiet people have ideas too"),
        ("/reflect Q1: We wanted to read a book", 1, "We wanted to read a book"),
        ("/reflect q5. 2 more meetings a week", 5, "2 more meetings a week"),
        ("/reflect q02 Pairing works", 2, "Pairing works"),
        ("/reflect q4\nOwnership clicked", 4, "Ownership clicked"),
    ],
)
async def test_q_and_a_number_answers_that_question_of_the_open_review(
    harness: Harness, line: str, question: int, text: str
) -> None:
    await harness.member("alice").says("/review start")
    reply = await harness.member("carol").says(line)
    assert reply is not None and not reply.is_error
    assert reply.text == f"Thanks, carol: answer r1 to question {question} of review 1."
    assert await reflections(harness) == [(1, question, text)]


@pytest.mark.parametrize(
    "text",
    ["3 chapters done today", "6 people came", "2. We should meet more", "1) ok", "q3chapters", "quite good"],
)
async def test_a_reflection_starting_with_a_number_is_free_during_a_review(
    harness: Harness, text: str
) -> None:
    await harness.member("alice").says("/review start")
    reply = await harness.member("carol").says(f"/reflect {text}")
    assert reply is not None and reply.text == "Thanks, carol: reflection r1 kept."
    assert await reflections(harness) == [(None, None, text)]


async def test_after_the_review_a_number_stays_part_of_the_reflection(harness: Harness) -> None:
    await harness.member("alice").says("/review start 1h")
    await harness.member("alice").says("/review summary")
    reply = await harness.member("carol").says("/reflect 2 things I learned")
    assert reply is not None and reply.text == "Thanks, carol: reflection r1 kept."
    assert await reflections(harness) == [(None, None, "2 things I learned")]


@pytest.mark.parametrize("question", ["q0", "q6", "Q9", "q99999999999999999999", "q000000000000006"])
async def test_a_question_the_review_does_not_have_is_refused(harness: Harness, question: str) -> None:
    await harness.member("alice").says("/review start")
    reply = await harness.member("carol").says(f"/reflect {question} An answer")
    assert reply is not None and reply.is_error
    assert reply.text.startswith("Action review 1 has questions 1 to 5, not ")
    assert (
        reply.text.splitlines()[-1] == "Usage: /reflect [--anonymous] [--group <value>] <text...>"
        and len(reply.text) < 300
    )
    assert await reflections(harness) == []


@pytest.mark.parametrize("line", ["/reflect q2 We pair on exercises", "/reflect q7 Anything", "/reflect q1"])
async def test_a_question_without_an_open_review_is_refused(harness: Harness, line: str) -> None:
    for _ in range(2):  # before any review, then after one closed
        reply = await harness.member("carol").says(line)
        assert reply is not None and reply.is_error
        assert reply.text.startswith("No action review is open, so there is no question ")
        assert (
            "without q" in reply.text
            and reply.text.splitlines()[-1] == "Usage: /reflect [--anonymous] [--group <value>] <text...>"
        )
        assert await reflections(harness) == []
        await harness.member("alice").says("/review start 1h")
        await harness.member("alice").says("/review summary")


async def test_a_question_needs_an_answer(harness: Harness) -> None:
    await harness.member("alice").says("/review start")
    for line in ("/reflect q2", "/reflect q2:", "/reflect q2 \u200b"):
        reply = await harness.member("carol").says(line)
        assert reply is not None and reply.is_error, line
        assert reply.text.startswith("Write your answer after q2: /reflect q2 <your answer>.")
    assert await reflections(harness) == []


async def test_the_bot_tells_members_to_answer_with_q_and_the_number(harness: Harness) -> None:
    harness.chat.interactive_replies = False  # the questions go out at once, after the answer
    entered = await harness.member("alice").says("/phase set assessing")
    assert entered is not None and "answer with /reflect q<number> <your answer>." in entered.text
    posted = harness.chat.sent[-1].text
    assert "Answer with /reflect q<number> <your answer> (q1 to q5)" in posted
    again = await harness.member("bob").says("/review start")
    assert again is not None and "/reflect q<number> <your answer>" in again.text
    usage = await harness.member("bob").says("/help reflect")
    assert usage is not None and "reflect q2 <answer>" in usage.text
    for text in (entered.text, posted, again.text, usage.text):
        assert re.search(r"reflect <?(number|question number|[0-9])", text) is None, text


# A goal made from a reflection is its author's. ------------------------------------------------------


async def test_a_goal_made_from_a_reflection_is_its_authors(harness: Harness) -> None:
    await harness.member("alice").says("/review start")
    await harness.member("carol").says("/reflect q5 Pair up for the exercises")
    made = await harness.member("dave").says("/goal propose r1")
    assert made is not None and made.text.startswith(
        "Goal 1 proposed, from reflection r1 by carol. React on poll 1:"
    )
    assert harness.chat.sent[-1].text.startswith(
        "Poll 1: Goal 1: Pair up for the exercises (proposed by carol). Do you consent?"
    )
    async with harness.store.transaction() as tx:
        goal = await tx.goals.get(1, 1)
        poll = await tx.polls.get(1, 1)
    assert goal is not None and poll is not None
    assert (goal.proposer_key, goal.proposer_name) == ("fake:carol", "carol")
    assert (goal.put_forward_by_key, goal.put_forward_by_name) == ("fake:dave", "dave")
    assert poll.author_key == "fake:carol"
    show = await harness.member("bob").says("/goal show 1")
    assert show is not None and "Proposed by carol on 2026-03-02 09:00 UTC, put forward by dave." in show.text
    listing = await harness.member("bob").says("/goal list")
    assert listing is not None and "  Goal 1: Pair up for the exercises (carol)" in listing.text
    # The author may drop it; the member who put it forward may not (nor mark it done).
    refused = await harness.member("dave").says("/goal drop 1")
    assert refused is not None and refused.is_error and "proposer (carol)" in refused.text
    consent = harness.chat.sent[-1].ref
    for name in ("bob", "carol"):
        await harness.member(name).reacts(consent, "✅")
    await harness.member("alice").says("/poll close 1")
    assert (await harness.member("dave").says("/goal done 1")).is_error  # type: ignore[union-attr]
    done = await harness.member("carol").says("/goal done 1")
    assert done is not None and done.text.startswith("Goal 1 is done")


async def test_the_record_says_who_put_a_goal_forward(harness: Harness) -> None:
    await harness.member("carol").says("/reflect Pair up for the exercises")
    await harness.member("dave").says("/goal propose r1")
    await harness.member("carol").says("/goal propose Read the book")
    data = json.loads(await exported(harness, "/export json"))
    assert [(g["proposer"], g["put_forward_by"]) for g in data["goals"]] == [
        ("carol", "dave"),
        ("carol", "carol"),
    ]
    md = await exported(harness, "/export md")
    assert "- Goal 1 (proposed): Pair up for the exercises — carol, put forward by dave" in md
    assert "- Goal 2 (proposed): Read the book — carol\n" in md
    rows = list(csv.reader(io.StringIO(await exported(harness, "/export csv"))))
    goals = [r for r in rows if r[0] == "goal"]
    assert [(r[3], r[6]) for r in goals] == [("carol", "poll 1; put forward by dave"), ("carol", "poll 2")]


async def test_a_member_may_make_a_goal_of_their_own_reflection(harness: Harness) -> None:
    await harness.member("carol").says("/reflect Pair up")
    made = await harness.member("carol").says("/goal propose R1")
    assert made is not None and made.text.startswith("Goal 1 proposed, from reflection r1 by carol.")
    show = await harness.member("carol").says("/goal show 1")
    assert show is not None and "Proposed by carol on 2026-03-02 09:00 UTC." in show.text
