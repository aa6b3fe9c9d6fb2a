"""Action reviews, reflections, suggestions, export and forget-me, on in-memory fakes."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

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
    answer = await harness.member("carol").says("/reflect 2 We pair on exercises and it works")
    assert answer is not None and answer.text == "Thanks, carol: answer r1 to question 2 of review 1."
    free = await harness.member("dave").says("/reflect I wish we met more often")
    assert free is not None and free.text == "Thanks, dave: reflection r2 kept."


async def test_the_summary_groups_answers_and_offers_question_five_as_goals(harness: Harness) -> None:
    await harness.member("alice").says("/phase set assessing")  # starts a review by default
    await harness.member("bob").says("/reflect 1 Learn Rust basics")
    await harness.member("carol").says("/reflect 5 Weekly pair programming")
    await harness.member("bob").says("/reflect 5. Shorter meetings")
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
    await harness.member("bob").says("/reflect 3 Quiet people have ideas too")
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
    await h.member("carol").says("/reflect 4 Ownership finally clicked")
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
        " “a former member” (0); 0 records the bot kept about you deleted or cleaned."
    )
    async with harness.store.transaction() as tx:
        assert [r.user_name for r in await tx.reviews.reflections(1)] == ["bob"]
    results = await harness.member("bob").says("/poll results 2")
    assert results is not None and "0 voters." in results.text


async def test_entering_assessing_announces_the_move_before_the_review_questions(harness: Harness) -> None:
    harness.chat.interactive_replies = False  # answers go through the outbox, as on Matrix and the console
    await harness.member("alice").says("/phase set assessing")
    posted = [s.text.splitlines()[0] for s in harness.chat.sent]
    assert posted == [
        "alice moved the group from Convening to Assessing.",
        "Action review 1: five questions for the group.",
    ]
