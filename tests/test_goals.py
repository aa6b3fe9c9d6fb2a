"""Shared goals decided by consent, on in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

from core.goals import GoalStatus
from core.refs import MessageRef
from tests.support import Harness


async def propose(h: Harness, text: str = "Learn Rust together", who: str = "bob") -> MessageRef:
    reply = await h.member(who).says(f"/goal propose {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


async def status_of(h: Harness, goal_id: int) -> GoalStatus:
    async with h.store.transaction() as tx:
        goal = await tx.goals.get(1, goal_id)
    assert goal is not None
    return goal.status


async def test_a_proposal_opens_a_consent_poll(harness: Harness) -> None:
    reply = await harness.member("bob").says("/goal propose   Learn   Rust together ")
    assert reply is not None
    assert reply.text.startswith("Goal 1 proposed. React on poll 1: ✅ agree, 🤔 concerns, ⛔ block.")
    assert "decides by 2026-03-04 09:00 UTC; it needs 2 ✅ and no ⛔" in reply.text
    posted = harness.chat.sent[-1]
    assert posted.text.startswith("Poll 1: Goal 1: Learn Rust together (proposed by bob).")
    assert [e for _, e in harness.chat.reactions] == ["✅", "🤔", "⛔"]


async def test_quorum_and_no_block_accepts_and_suggests_cooperating(harness: Harness) -> None:
    await harness.member("alice").says("/phase set organizing")
    msg = await propose(harness)
    for name in ("bob", "carol"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("dave").reacts(msg, "🤔")
    harness.clock.advance(timedelta(hours=48))
    await harness.engine.tick()
    decision, suggestion = harness.chat.sent[-1].text.split("\n")
    assert decision == (
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now."
    )
    assert suggestion.startswith("Suggestion: the group has a goal it agreed on.")
    assert "/phase set cooperating" in suggestion
    assert await status_of(harness, 1) is GoalStatus.ACCEPTED
    assert [(kind, detail) for _, kind, _, detail in harness.store.data.signals] == [("goal_accepted", "1")]


async def test_acceptance_in_cooperating_suggests_no_move(harness: Harness) -> None:
    await harness.member("alice").says("/phase set cooperating")
    msg = await propose(harness)
    for name in ("bob", "carol"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("alice").says("/poll close 1")
    assert await status_of(harness, 1) is GoalStatus.ACCEPTED
    assert "Suggestion" not in harness.chat.sent[-1].text
    async with harness.store.transaction() as tx:
        group = await tx.groups.get(harness.channel)
    assert group is not None and group.advised_at is None


async def test_a_block_blocks_and_the_bot_asks_the_blockers(harness: Harness) -> None:
    await harness.regulars("alice")  # on the roster and not voting: no early decision before the block
    msg = await propose(harness)
    for name in ("bob", "carol", "dave"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("erin").reacts(msg, "⛔")
    await harness.member("alice").says("/poll close 1")
    text = harness.chat.sent[-1].text
    assert text.startswith("Goal 1 is blocked: Learn Rust together (✅ 3, 🤔 0, ⛔ 1).")
    assert "erin: what would make it acceptable to you?" in text
    assert await status_of(harness, 1) is GoalStatus.BLOCKED


async def test_too_few_agreements_lapse(harness: Harness) -> None:
    msg = await propose(harness)
    await harness.member("bob").reacts(msg, "✅")
    harness.clock.advance(timedelta(days=3))
    await harness.engine.tick()
    assert harness.chat.sent[-1].text.startswith("Goal 1 lapsed")
    assert await status_of(harness, 1) is GoalStatus.LAPSED


async def test_a_group_sets_its_own_quorum_and_window(harness: Harness) -> None:
    refused = await harness.member("bob").says("/goal rules 1 2h")
    assert refused is not None and refused.is_error
    reply = await harness.member("alice").says("/goal rules 1 2h")
    assert reply is not None and reply.text == "From now on goals need 1 ✅ and no ⛔ within 2 hours."
    msg = await propose(harness)
    await harness.member("bob").reacts(msg, "✅")
    harness.clock.advance(timedelta(hours=2))
    await harness.engine.tick()
    assert await status_of(harness, 1) is GoalStatus.ACCEPTED
    bad = await harness.member("alice").says("/goal rules 0")
    assert bad is not None and bad.is_error and "quorum must be between 1 and 100" in bad.text


async def test_the_roadmap_lists_accepted_goals_before_proposals(harness: Harness) -> None:
    await propose(harness, "Read the book")
    msg = await propose(harness, "Build a toy compiler")
    for name in ("bob", "carol"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("alice").says("/poll close 2")
    reply = await harness.member("bob").says("/goal list")
    assert reply is not None
    assert reply.text.splitlines() == [
        "Roadmap (accepted):",
        "  Goal 2: Build a toy compiler (bob)",
        "Proposed:",
        "  Goal 1: Read the book (bob)",
        "Goals need 2 ✅ and no ⛔ within 48 hours.",
    ]


async def test_done_and_drop_are_for_the_proposer_or_a_facilitator(harness: Harness) -> None:
    msg = await propose(harness)
    for name in ("bob", "carol"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("alice").says("/poll close 1")
    refused = await harness.member("carol").says("/goal done 1")
    assert refused is not None and refused.is_error
    assert await status_of(harness, 1) is GoalStatus.ACCEPTED
    done = await harness.member("bob").says("/goal done 1")
    assert done is not None and done.text.startswith("Goal 1 is done")
    again = await harness.member("bob").says("/goal drop 1")
    assert again is not None and again.is_error and "Goal 1 is done" in again.text


async def test_dropping_a_proposal_closes_its_poll_quietly(harness: Harness) -> None:
    await harness.regulars("alice", "bob", "carol")
    msg = await propose(harness)
    posted = len(harness.chat.sent)
    reply = await harness.member("alice").says("/goal drop 1")
    assert reply is not None and reply.text == "Goal 1 was dropped: Learn Rust together."
    assert len(harness.chat.sent) == posted
    await harness.member("carol").reacts(msg, "✅")
    harness.clock.advance(timedelta(days=3))
    await harness.engine.tick()
    assert len(harness.chat.sent) == posted
    assert await status_of(harness, 1) is GoalStatus.DROPPED


async def test_show_names_the_goal_and_its_poll(harness: Harness) -> None:
    msg = await propose(harness)
    await harness.member("carol").reacts(msg, "🤔")
    reply = await harness.member("carol").says("/goal show 1")
    assert reply is not None
    assert reply.text.splitlines() == [
        "Goal 1: Learn Rust together",
        "Status: proposed, since 2026-03-02 09:00 UTC.",
        "Proposed by bob on 2026-03-02 09:00 UTC.",
        "Consent poll 1 (open until 2026-03-04 09:00 UTC): ✅ 0, 🤔 1, ⛔ 0.",
    ]
    missing = await harness.member("carol").says("/goal show 7")
    assert missing is not None and missing.is_error and missing.text.startswith("There is no goal 7")


async def test_overlong_goal_text_is_refused_and_nothing_is_stored(harness: Harness) -> None:
    reply = await harness.member("bob").says("/goal propose " + "x" * 301)
    assert reply is not None and reply.is_error
    assert reply.text.startswith("text is too long (301 characters, at most 300).")
    assert harness.store.data.goals == {} and harness.chat.sent == []


async def test_lapsed_and_dropped_goals_are_listed_after_the_open_ones(harness: Harness) -> None:
    await propose(harness, "Read the book")
    await propose(harness, "Build a toy compiler")
    harness.clock.advance(timedelta(days=3))
    await harness.engine.tick()  # both lapse: nobody agreed in time
    reply = await harness.member("bob").says("/goal list")
    assert reply is not None and not reply.is_error
    assert reply.text.splitlines() == [
        "Lapsed:",
        "  Goal 1: Read the book (bob)",
        "  Goal 2: Build a toy compiler (bob)",
        "Goals need 2 ✅ and no ⛔ within 48 hours.",
    ]
    await propose(harness, "Meet on Fridays", who="carol")
    await propose(harness, "Write a glossary", who="dave")
    await harness.member("dave").says("/goal drop 4")
    reply = await harness.member("bob").says("/goal list")
    assert reply is not None
    assert reply.text.splitlines() == [
        "Proposed:",
        "  Goal 3: Meet on Fridays (carol)",
        "Lapsed:",
        "  Goal 1: Read the book (bob)",
        "  Goal 2: Build a toy compiler (bob)",
        "Dropped:",
        "  Goal 4: Write a glossary (dave)",
        "Goals need 2 ✅ and no ⛔ within 48 hours.",
    ]


async def test_a_filter_shows_the_goals_of_one_kind(harness: Harness) -> None:
    await propose(harness, "Read the book")
    harness.clock.advance(timedelta(days=3))
    await harness.engine.tick()
    await propose(harness, "Meet on Fridays", who="carol")
    await harness.member("carol").says("/goal drop 2")
    await propose(harness, "Write a glossary", who="dave")
    for name, shown in (
        ("lapsed", ["Lapsed:", "  Goal 1: Read the book (bob)"]),
        ("DROPPED", ["Dropped:", "  Goal 2: Meet on Fridays (carol)"]),
        ("open", ["Proposed:", "  Goal 3: Write a glossary (dave)"]),
    ):
        reply = await harness.member("bob").says(f"/goal list {name}")
        assert reply is not None and not reply.is_error
        assert reply.text.splitlines()[:-1] == shown, name
    empty = await harness.member("bob").says("/goal list done")
    assert empty is not None and empty.text == "No done goals. /goal list shows them all."
    bad = await harness.member("bob").says("/goal list someday")
    assert bad is not None and bad.is_error
    assert bad.text.splitlines() == [
        "'someday' is not a valid filter. Choose one of: open, accepted, proposed, blocked, done, lapsed,"
        " dropped, superseded, all.",
        "Usage: /goal list [filter] [page]",
    ]


# Reshaping a goal (`goal amend`) -----------------------------------------------------------------


async def blocked_by_dave(h: Harness) -> MessageRef:
    await h.regulars("alice")  # on the roster and not voting: no early decision
    msg = await propose(h, "Read the whole book in a month")
    await h.member("carol").reacts(msg, "✅")
    await h.member("dave").reacts(msg, "⛔")
    await h.member("alice").says("/poll close 1")
    assert await status_of(h, 1) is GoalStatus.BLOCKED
    return msg


async def test_amending_a_blocked_goal_opens_a_linked_round_and_tells_the_blocker(harness: Harness) -> None:
    await blocked_by_dave(harness)
    reply = await harness.member("carol").says("/goal amend 1   Read the first three chapters ")
    assert reply is not None and not reply.is_error, reply
    assert reply.text.startswith(
        "Goal 2 (reshapes goal 1, blocked by dave) proposed. React on poll 2: ✅ agree, 🤔 concerns,"
        " ⛔ block."
    )
    poll = harness.chat.sent[-1]
    assert poll.text.startswith(
        "Poll 2: Goal 2 (reshapes goal 1, blocked by dave): Read the first three chapters"
        " (proposed by carol). Do you consent?"
    )
    asked, *told = [(user.id, text) for user, text in harness.chat.direct]
    assert asked[0] == "dave" and asked[1].startswith("You reacted ⛔ on goal 1")  # core/concerns.py
    assert told == [
        (
            "dave",
            "You blocked goal 1 (Read the whole book in a month) in #general. carol has reshaped it as"
            " goal 2: Read the first three chapters. Poll 2 there asks for your consent again:"
            " ✅ agree, 🤔 concerns, ⛔ block.",
        )
    ]
    assert await status_of(harness, 1) is GoalStatus.SUPERSEDED
    assert await status_of(harness, 2) is GoalStatus.PROPOSED
    old = await harness.member("bob").says("/goal show 1")
    new = await harness.member("bob").says("/goal show 2")
    assert old is not None and "Status: superseded" in old.text and "It was reshaped as goal 2." in old.text
    assert new is not None and "It reshapes goal 1." in new.text and "reshaped as" not in new.text
    listed = await harness.member("bob").says("/goal list superseded")
    assert listed is not None and "Goal 1: Read the whole book in a month" in listed.text


async def test_the_reshaped_goal_is_decided_as_any_proposal(harness: Harness) -> None:
    await blocked_by_dave(harness)
    await harness.member("carol").says("/goal amend 1 Read the first three chapters")
    msg = harness.chat.sent[-1].ref
    for name in ("carol", "dave"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("alice").says("/poll close 2")
    assert harness.chat.sent[-1].text.startswith("Goal 2 accepted by consent: Read the first three chapters")
    assert (await status_of(harness, 1), await status_of(harness, 2)) == (
        GoalStatus.SUPERSEDED,
        GoalStatus.ACCEPTED,
    )


async def test_amending_a_proposal_closes_its_poll_without_a_decision(harness: Harness) -> None:
    await harness.regulars("alice")
    msg = await propose(harness, "Read the whole book in a month")
    await harness.member("erin").reacts(msg, "⛔")
    await harness.member("carol").reacts(msg, "✅")
    before = len(harness.chat.sent)
    reply = await harness.member("erin").says("/goal amend 1 Read the first three chapters")
    assert reply is not None and reply.text.startswith(
        "Goal 2 (reshapes goal 1, blocked so far by erin) proposed."
    )
    texts = [m.text for m in harness.chat.sent[before:]]
    assert "Poll 1 of goal 1 is closed without a decision: goal 2 reshapes it (poll 2)." in texts
    assert not any("accepted" in t or "lapsed" in t or "is blocked" in t for t in texts)
    told = [text for _, text in harness.chat.direct if not text.startswith("You reacted ⛔")]
    assert told == []  # the only blocker amended it; their ⛔ asked them for their concern only
    async with harness.store.transaction() as tx:
        poll = await tx.polls.get(1, 1)
    assert poll is not None and poll.closed_at is not None
    assert await status_of(harness, 1) is GoalStatus.SUPERSEDED
    # Its time passing decides nothing any more.
    harness.clock.advance(timedelta(hours=49))
    await harness.engine.tick()
    assert await status_of(harness, 1) is GoalStatus.SUPERSEDED


async def test_amending_a_proposal_with_no_block_names_nobody(harness: Harness) -> None:
    await propose(harness, "Read the whole book")
    reply = await harness.member("dave").says("/goal amend 1 Read half the book")
    assert reply is not None and reply.text.startswith("Goal 2 (reshapes goal 1) proposed.")
    assert harness.chat.direct == []


async def test_goals_past_deciding_are_not_amended(harness: Harness) -> None:
    await blocked_by_dave(harness)
    await harness.member("carol").says("/goal amend 1 Read the first three chapters")
    reply = await harness.member("bob").says("/goal amend 1 Read one chapter")
    assert reply is not None and reply.is_error
    assert reply.text == "Goal 1 was reshaped already; amend goal 2 instead. Nothing was changed."
    msg = harness.chat.sent[-1].ref
    for name in ("carol", "dave"):
        await harness.member(name).reacts(msg, "✅")
    await harness.member("alice").says("/poll close 2")
    sent = len(harness.chat.sent)
    reply = await harness.member("bob").says("/goal amend 2 Read one chapter")
    assert reply is not None and reply.is_error
    assert (
        reply.text
        == "Goal 2 is accepted; only a proposed or blocked goal can be reshaped. Nothing was changed."
    )
    assert await status_of(harness, 2) is GoalStatus.ACCEPTED
    async with harness.store.transaction() as tx:
        assert len(await tx.goals.in_group(1)) == 2
    assert len(harness.chat.sent) == sent


async def test_amend_refuses_an_unknown_goal_and_bad_text(harness: Harness) -> None:
    await propose(harness)
    unknown = await harness.member("bob").says("/goal amend 7 Learn Go")
    assert unknown is not None and unknown.is_error and "There is no goal 7 in this channel." in unknown.text
    blank = await harness.member("bob").says("/goal amend 1")
    too_long = await harness.member("bob").says("/goal amend 1 " + "x" * 301)
    for reply in (blank, too_long):
        assert reply is not None and reply.is_error and "Usage: /goal amend <id> <text...>" in reply.text
    assert await status_of(harness, 1) is GoalStatus.PROPOSED
