"""What needs me: `pending` (answered privately, in one group or all of them) and `poll list`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.events import Reply
from core.goals import Goal, GoalStatus
from core.lifecycle import Group, Phase
from core.pending import pending, waiting_line
from core.polls import Poll, PollKind, PollRequest, poll_request
from core.reflections import Review
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import START, Harness, Member

STUDY = ChannelRef("fake", "study", "#study")
BOOKS = ChannelRef("fake", "books", "#books")
HOUR = timedelta(hours=1)


@pytest.fixture
def h() -> Harness:
    """Answers go through the outbox, as on Matrix and the console."""
    harness = Harness()
    harness.chat.interactive_replies = False
    return harness


async def poll_message(h: Harness, poll_id: int, channel: ChannelRef | None = None) -> MessageRef:
    async with h.store.transaction() as tx:
        group = await tx.groups.get(channel or h.channel)
        assert group is not None
        poll = await tx.polls.get(group.id, poll_id)
    assert poll is not None and poll.message is not None
    return poll.message


async def asks_privately(h: Harness, member: Member, text: str, channel: ChannelRef | None = None) -> str:
    """`member` asks in the channel; the answer must reach them alone, by direct message."""
    sent, direct = len(h.chat.sent), len(h.chat.direct)
    reply = await member.says(text, channel)
    assert reply is not None and reply.private
    assert len(h.chat.sent) == sent  # nothing in the channel
    (told,) = h.chat.direct[direct:]
    assert told == (member.user, reply.text)
    return reply.text


def items(text: str) -> list[str]:
    """The things listed, each by its first words (`Poll 2`, `Goal 1`, `Action review 1`)."""
    return [line.strip().split(":")[0] for line in text.splitlines() if line.startswith("  ")]


async def a_busy_group(h: Harness) -> None:
    """bob proposes a goal (poll 1), opens a poll (2, closes in 2h), a pulse check (3) and a review."""
    await h.regulars("alice", "bob", "carol")
    bob = h.member("bob")
    await bob.says("/goal propose Learn Rust together")
    await bob.says("/poll create --closes 2h Which pace suits you? | 🐢 slower | 🐇 faster | same as now")
    await bob.says("/pulse")
    await bob.says("/review start")


# The rules --------------------------------------------------------------------------------------


def test_what_waits_is_each_groups_share_closing_soonest_first_with_the_goals_of_consent_polls() -> None:
    general = Group(1, ChannelRef("fake", "general", "#general"), Phase.ORGANIZING, START, START)
    study = Group(2, STUDY, Phase.ORGANIZING, START, START)
    asked = poll_request("Which day?", ["Monday", "Friday"])

    def a_poll(poll_id: int, group: Group, closes: timedelta, kind: PollKind = PollKind.POLL) -> Poll:
        return Poll(
            poll_id, group.id, kind, asked.question, asked.options, False, False, "fake:bob", "bob",
            START, START + closes,
        )  # fmt: skip

    late, early, elsewhere = (
        a_poll(2, general, 3 * HOUR),
        a_poll(3, general, 2 * HOUR),
        a_poll(4, study, HOUR),
    )
    consent = a_poll(5, general, HOUR, PollKind.CONSENT)
    goal = Goal(7, 1, "Learn Rust", GoalStatus.PROPOSED, "fake:bob", "bob", START, START, poll_id=5)
    review = Review(2, 1, "bob", START, START + 2 * HOUR)  # closes with `early`, and comes after it
    found = pending([general, study], [elsewhere, early, late, consent], {5: goal}, [review])
    assert [p.group for p in found] == [general, study]
    assert [(i.poll, i.goal, i.review) for i in found[0].items] == [
        (consent, goal, None),
        (early, None, None),
        (None, None, review),
        (late, None, None),
    ]
    assert [(i.poll, i.review) for i in found[1].items] == [(elsewhere, None)]
    assert pending([study], [late], {}, [review])[0].items == ()  # another group's
    # In the group's timezone, with the platform's prefix.
    assert waiting_line(found[0].items[0], "Europe/Berlin", "!peer ") == (
        "Goal 7: Learn Rust. Closes 2026-03-02 11:00 CET. React on poll 5: 1️⃣ Monday, 2️⃣ Friday."
    )
    assert waiting_line(found[0].items[2], "Europe/Berlin", "!peer ") == (
        "Action review 2: five questions for the group. Closes 2026-03-02 12:00 CET."
        " Answer with !peer reflect q<number> <your answer> (q1 to q5)."
    )


# pending in a group's channel ----------------------------------------------------------------------


async def test_pending_lists_the_open_polls_and_the_review_the_member_has_not_answered(h: Harness) -> None:
    await a_busy_group(h)
    text = await asks_privately(h, h.member("alice"), "/pending")
    assert text == (
        "What needs you in #general, closing soonest first:\n"
        "  Poll 2: Which pace suits you? Closes 2026-03-02 11:00 UTC."
        " React on poll 2: 🐢 slower, 🐇 faster, 3️⃣ same as now.\n"
        "  Pulse check 3: How is the group doing? Closes 2026-03-03 09:00 UTC."
        " React on poll 3: 🟢 going well, 🟡 so-so, something needs attention, 🔴 stuck or struggling.\n"
        "  Goal 1: Learn Rust together. Closes 2026-03-04 09:00 UTC."
        " React on poll 1: ✅ agree, 🤔 concerns, ⛔ block.\n"
        "  Action review 1: five questions for the group. Closes 2026-03-05 09:00 UTC."
        " Answer with /reflect q<number> <your answer> (q1 to q5)."
    )


async def test_a_vote_or_an_answer_takes_an_item_off_and_taking_the_vote_back_puts_it_back(
    h: Harness,
) -> None:
    await a_busy_group(h)
    alice, carol = h.member("alice"), h.member("carol")
    consent = await poll_message(h, 1)
    await alice.reacts(consent, "🤔")
    await alice.reacts(await poll_message(h, 3), "🟢")
    await alice.reacts(await poll_message(h, 2), "👍")  # no option of the poll: no vote
    await alice.says("/reflect q4 We paired more than we thought")
    await h.engine.votes.drain()
    assert items(await asks_privately(h, alice, "/pending")) == ["Poll 2"]
    # carol's own list is untouched by alice's votes.
    assert items(await asks_privately(h, carol, "/pending")) == [
        "Poll 2",
        "Pulse check 3",
        "Goal 1",
        "Action review 1",
    ]
    # A free reflection answers no review.
    await carol.says("/reflect I learned a lot this week")
    assert "Action review 1" in items(await asks_privately(h, carol, "/pending"))
    await alice.unreacts(consent, "🤔")
    await h.engine.votes.drain()
    assert items(await asks_privately(h, alice, "/pending")) == ["Poll 2", "Goal 1"]


async def test_closed_and_ended_polls_and_a_closed_review_do_not_wait_for_anyone(h: Harness) -> None:
    await a_busy_group(h)
    alice, bob = h.member("alice"), h.member("bob")
    await bob.says("/poll close 3")
    await alice.says("/review summary")  # a facilitator closes the review
    assert items(await asks_privately(h, bob, "/pending")) == ["Poll 2", "Goal 1"]
    h.clock.advance(2 * HOUR)  # poll 2 has ended, closed or not
    assert items(await asks_privately(h, bob, "/pending")) == ["Goal 1"]
    await h.engine.tick()
    h.clock.advance(2 * 24 * HOUR)
    await h.engine.tick()
    text = await asks_privately(h, bob, "/pending")
    assert text == (
        "You are all caught up in #general: every open poll has your vote, and no review waits for your"
        " answers. 🎉"
    )


async def test_on_an_interactive_platform_the_answer_is_marked_private_and_nothing_is_queued() -> None:
    h = Harness()  # answers are given by the adapter (Discord), not the outbox
    await a_busy_group(h)
    reply = await h.member("alice").says("/pending")
    assert reply is not None and reply.private and not reply.is_error
    assert items(reply.text) == ["Poll 2", "Pulse check 3", "Goal 1", "Action review 1"]
    assert h.chat.direct == []
    other = await h.member("alice").says("/status")
    assert other is not None and not other.private


async def test_a_long_list_comes_in_pages_and_a_page_that_does_not_exist_is_a_private_error(
    h: Harness,
) -> None:
    await h.regulars("alice", "bob")
    bob, alice = h.member("bob"), h.member("alice")
    for n in range(1, 31):
        await bob.says(
            f"/poll create --closes {n}h Question number {n}, with some words to fill it up? | yes | no"
        )
    first = await asks_privately(h, alice, "/pending")
    assert first.startswith(
        "What needs you in #general, closing soonest first:\n  Poll 1: Question number 1,"
    )
    assert len(first) <= 2000
    assert first.endswith("Next: /pending 2.")
    pages = int(first.rsplit("Page 1 of ", 1)[1].split(".")[0])
    last = await asks_privately(h, alice, f"/pending {pages}")
    assert "Poll 30: Question number 30," in last and last.endswith("the last. First: /pending 1.")
    shown = [
        n for page in range(1, pages + 1) for n in items(await asks_privately(h, alice, f"/pending {page}"))
    ]
    assert shown == [f"Poll {n}" for n in range(1, 31)]
    sent, direct = len(h.chat.sent), len(h.chat.direct)
    refused = await alice.says(f"/pending {pages + 1}")
    assert refused is not None and refused.is_error and refused.private
    assert refused.text == (
        f"There is no page {pages + 1} of the things waiting for you: they fill {pages} pages.\n"
        "Usage: /pending [page]"
    )
    assert len(h.chat.sent) == sent and h.chat.direct[direct:] == [(alice.user, refused.text)]


async def test_bad_input_is_answered_with_the_usage_and_changes_nothing(h: Harness) -> None:
    await h.regulars("alice")
    reply = await h.member("alice").says("/pending soon")
    assert reply is not None and reply.is_error
    assert reply.text == "page must be a whole number like 3, not 'soon'.\nUsage: /pending [page]"
    # A newcomer's refused command puts them on no roster.
    assert await h.member("zoe").says("/pending 0") is not None
    async with h.store.transaction() as tx:
        assert [m.name for m in await tx.members.roster(1)] == ["alice"]


# pending written privately ----------------------------------------------------------------------


async def test_written_privately_pending_covers_every_group_of_the_member_grouped_by_group(
    h: Harness,
) -> None:
    await a_busy_group(h)
    alice, bob = h.member("alice"), h.member("bob")
    await bob.says("/poll create --closes 1h Which book next? | 📕 red | 📗 green", STUDY)
    await alice.says("/join", STUDY)
    await alice.says("/join", BOOKS)  # a group where nothing waits
    await bob.says("/poll create Only for bob's groups? | yes | no", ChannelRef("fake", "bobs", "#bobs"))
    await alice.reacts(await poll_message(h, 3), "🟡")
    await h.engine.votes.drain()
    direct = len(h.chat.direct)
    reply = await alice.whispers("/pending")
    assert reply is not None and reply.private
    assert h.chat.direct[direct:] == [(alice.user, reply.text)]
    assert reply.text == (
        "What needs you, closing soonest first:\n"
        "#general:\n"
        "  Poll 2: Which pace suits you? Closes 2026-03-02 11:00 UTC."
        " React on poll 2: 🐢 slower, 🐇 faster, 3️⃣ same as now.\n"
        "  Goal 1: Learn Rust together. Closes 2026-03-04 09:00 UTC."
        " React on poll 1: ✅ agree, 🤔 concerns, ⛔ block.\n"
        "  Action review 1: five questions for the group. Closes 2026-03-05 09:00 UTC."
        " Answer with /reflect q<number> <your answer> (q1 to q5).\n"
        "#study:\n"
        "  Poll 4: Which book next? Closes 2026-03-02 10:00 UTC. React on poll 4: 📕 red, 📗 green.\n"
        "Nothing waits for you in #books."
    )


async def test_written_privately_by_someone_on_no_roster_or_all_caught_up(h: Harness) -> None:
    await h.regulars("alice")
    stranger = await h.member("zoe").whispers("/pending")
    assert stranger is not None and stranger.text == (
        "You are on no group's roster here yet, so nothing waits for you. Join a group in its channel"
        " with /join."
    )
    await h.member("alice").says("/join", STUDY)
    done = await h.member("alice").whispers("/pending")
    assert done is not None and done.text == (
        "You are all caught up in #general and #study: every open poll has your vote, and no review waits"
        " for your answers. 🎉"
    )
    too_far = await h.member("alice").whispers("/pending 2")
    assert too_far is not None and too_far.is_error
    assert too_far.text.startswith("There is no page 2 of the things waiting for you: they fill 1 page.")


# poll list --------------------------------------------------------------------------------------


async def test_poll_list_shows_the_open_polls_with_their_kind_closing_time_and_voters(h: Harness) -> None:
    await a_busy_group(h)
    alice, bob, carol = h.member("alice"), h.member("bob"), h.member("carol")
    await bob.says("/poll create --hidden --multiple Secret ballot? | yes | no | maybe")
    await bob.says("/poll create --closes 1m Over soon? | yes | no")
    h.clock.advance(timedelta(minutes=1))  # poll 5 has ended: it is not listed
    hidden = await poll_message(h, 4)
    await alice.reacts(hidden, "1️⃣")
    await alice.reacts(hidden, "2️⃣")  # two options, one voter
    await carol.reacts(hidden, "3️⃣")
    consent = await poll_message(h, 1)
    await carol.reacts(consent, "✅")
    await bob.reacts(consent, "⛔")
    await bob.unreacts(consent, "⛔")  # taken back: bob is no voter
    await h.engine.votes.drain()
    reply = await carol.says("/poll list")
    assert reply is not None and not reply.private
    assert h.chat.sent[-1].text == reply.text  # in the channel, for everyone
    assert reply.text == (
        "Open polls in #general, closing soonest first:\n"
        "  Poll 2 (poll): Which pace suits you? Closes 2026-03-02 11:00 UTC; 0 voters so far.\n"
        "  Poll 3 (pulse check): How is the group doing? Closes 2026-03-03 09:00 UTC; 0 voters so far.\n"
        "  Poll 4 (hidden poll): Secret ballot? Closes 2026-03-03 09:00 UTC; 2 voters so far.\n"
        "  Poll 1 (goal 1): Learn Rust together. Closes 2026-03-04 09:00 UTC; 1 voter so far.\n"
        "Vote by reacting on a poll. What still needs your vote: /pending."
    )


async def test_poll_list_without_open_polls_says_how_to_ask_and_pages_a_long_list(h: Harness) -> None:
    await h.regulars("alice")
    alice = h.member("alice")
    empty = await alice.says("/poll list")
    assert empty is not None and empty.text == (
        "No poll is open in #general. Ask the group with /poll create <question> | <option> | <option>."
    )
    for n in range(1, 41):
        await alice.says(f"/poll create --closes {n}h Question {n}: {'a long question ' * 4}? | yes | no")
    first = await alice.says("/poll list")
    assert first is not None and len(first.text) <= 2000 and first.text.endswith("Next: /poll list 2.")
    assert "  Poll 1 (poll): Question 1:" in first.text
    second = await alice.says("/poll list 2")
    assert (
        second is not None
        and "Poll 1 " not in second.text
        and second.text.startswith("Open polls in #general")
    )
    missing = await alice.says("/poll list 99")
    assert missing is not None and missing.is_error
    assert missing.text.startswith("There is no page 99 of open polls")


# No query per poll ------------------------------------------------------------------------------


async def test_pending_and_poll_list_read_the_same_number_of_times_for_3_polls_as_for_60(db_url: str) -> None:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    try:
        h = Harness(store=store)
        await h.regulars("alice", "bob")
        bob, alice = h.member("bob"), h.member("alice")
        await bob.says("/review start")

        async def reads(text: str) -> int:
            statements.clear()
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                reply = await alice.says(text)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", count)
            assert reply is not None and not reply.is_error
            return len(statements)

        async def more_polls(n: int) -> None:
            async with store.transaction() as tx:
                for i in range(n):
                    kind = PollKind.CONSENT if i % 3 == 0 else PollKind.POLL
                    request = PollRequest("Agree?", poll_request("Agree?", ["yes", "no"]).options)
                    await tx.polls.create(1, kind, request, bob.user, h.clock.now())

        await more_polls(3)
        few = (await reads("/pending"), await reads("/poll list"))
        await more_polls(57)
        many = (await reads("/pending"), await reads("/poll list"))
        assert many == few
    finally:
        await store.close()


def test_a_reply_is_public_unless_it_says_it_is_private() -> None:
    assert not Reply("hello").private


async def test_on_sqlite_a_groups_open_polls_and_review_are_found_by_the_groups_index(tmp_path: Path) -> None:
    """Not by the index of every open poll (the tick's), which SQLite, planning without statistics, would
    walk otherwise: a member's pending would then grow with every other group's open polls."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    try:
        async with store.transaction() as tx:
            event.listen(engine.sync_engine, "before_cursor_execute", keep)
            await tx.polls.open_in([1, 2], START)
            await tx.polls.open_in([1, 2], START, not_voted_by=UserRef("fake", "alice"))
            await tx.polls.open_voter_counts([1], START)
            await tx.reviews.open_in([1, 2], START, not_answered_by=UserRef("fake", "alice"))
            event.remove(engine.sync_engine, "before_cursor_execute", keep)
        async with engine.connect() as conn:
            plans = [
                " ".join(
                    str(step[-1]) for step in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", args)
                )
                for sql, args in statements
            ]
    finally:
        await store.close()
    assert len(plans) == 4
    for plan in plans[:3]:
        assert "USING INDEX ix_polls_group_id" in plan and "ix_polls_due" not in plan, plan
    assert "USING INDEX ix_reviews_group_id" in plans[3] and "ix_reviews_due" not in plans[3], plans[3]
