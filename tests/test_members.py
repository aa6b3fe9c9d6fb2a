"""The roster and newcomers: who joins and leaves how, `members`, the welcome, buddies, and commands
written to the bot privately."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.recurrence import CronRecurrence
from core import newcomer_service
from core.engine import Engine
from core.events import MemberJoined, MemberLeft, MessagePosted, ReactionAdded
from core.members import Member, Step, buddies_in_turn, on_activity, on_join
from core.refs import ChannelRef, MessageRef
from tests.support import START, Harness

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


async def roster(h: Harness, channel: ChannelRef | None = None) -> list[str]:
    async with h.store.transaction() as tx:
        group = await tx.groups.get(channel or h.channel)
        return [m.name for m in await tx.members.roster(group.id)] if group else []


async def member(h: Harness, name: str) -> Member:
    async with h.store.transaction() as tx:
        found = await tx.members.get(1, f"{h.chat.platform}:{name}")
    assert found is not None
    return found


def welcomes(h: Harness) -> list[str]:
    return [s.text for s in h.chat.sent if s.text.startswith("Welcome, ")]


# Rules --------------------------------------------------------------------------------------------


def test_joining_on_purpose_brings_a_member_back_activity_does_not() -> None:
    on = Member(1, 1, "fake:bob", "bob", START)
    gone = Member(1, 1, "fake:bob", "bob", START, left_at=START + DAY)
    assert (on_join(None), on_join(on), on_join(gone)) == (Step.ADD, Step.TOUCH, Step.REJOIN)
    assert (on_activity(None), on_activity(on), on_activity(gone)) == (Step.ADD, Step.TOUCH, Step.NONE)


def test_buddies_take_turns_by_whose_last_newcomer_is_longest_ago() -> None:
    now = START + 30 * DAY
    ann = Member(1, 1, "fake:ann", "ann", START, last_active_at=now, buddy=True, paired_at=now - DAY)
    ben = Member(2, 1, "fake:ben", "ben", START, last_active_at=now, buddy=True, paired_at=now - 2 * DAY)
    cid = Member(3, 1, "fake:cid", "cid", START + DAY, last_active_at=now, buddy=True)
    dee = Member(4, 1, "fake:dee", "dee", START, last_active_at=now - 15 * DAY, buddy=True)  # inactive
    eve = Member(5, 1, "fake:eve", "eve", START, last_active_at=now)  # does not offer
    assert buddies_in_turn([ann, ben, cid, dee, eve], now) == [cid, ben, ann]  # cid was never paired
    assert buddies_in_turn([dee, eve], now) == []


# Joining and leaving ------------------------------------------------------------------------------


async def test_a_first_command_puts_a_member_on_the_roster_and_welcomes_them(harness: Harness) -> None:
    reply = await harness.member("bob").says("/status")
    assert reply is not None and reply.text.startswith("Phase: Convening")
    assert await roster(harness) == ["bob"]
    (welcome,) = harness.chat.sent
    assert not welcome.mentions  # named, never pinged
    assert welcome.text == (
        "Welcome, bob! 👋\n"
        "What we are here for: no goal is agreed yet; shaping them together is part of the work.\n"
        "Where we stand: Convening since 2026-03-02 09:00 UTC (just now), finding each other and making"
        " first connections.\n"
        "Next: nothing is scheduled yet.\n"
        "Three first steps:\n"
        "1. Introduce yourself: /join <a few words about yourself>\n"
        "2. Say hello in the channel: what brings you to this group?\n"
        "3. Share what you would like to learn together: /reflect <your thought>"
    )
    await harness.member("bob").says("/status")
    assert len(harness.chat.sent) == 1  # welcomed once


async def test_the_welcome_says_what_the_group_is_for_and_what_comes_next(harness: Harness) -> None:
    await harness.regulars("alice", "bob")
    alice = harness.member("alice")
    await alice.says("/goal rules 1 1h")
    await alice.says("/goal propose Read one chapter a week")
    await harness.member("bob").reacts(harness.chat.sent[-1].ref, "✅")
    harness.clock.advance(2 * MINUTE * 30)
    await harness.engine.tick()  # goal 1 accepted
    await alice.says("/phase set cooperating")  # a weekly check-in, Mondays 18:00
    await alice.says("/welcome set We meet on Mondays; the notes are pinned.")
    await harness.member("carol").says("/join I read slowly but I read a lot")
    assert welcomes(harness)[-1] == (
        "Welcome, carol! 👋\n"
        "We meet on Mondays; the notes are pinned.\n"
        "What we are here for: Read one chapter a week.\n"
        "Where we stand: Cooperating since 2026-03-02 10:00 UTC (just now), working together on the"
        " goals you chose.\n"
        "Next: the weekly check-in, 2026-03-02 18:00 UTC.\n"
        "Three first steps:\n"
        "1. Meet the others: /members\n"
        "2. Pick a goal to work on with the others: /goal list\n"
        "3. Tell the group what you tried or learned: /reflect <your thought>"
    )


async def test_joins_within_ten_minutes_share_one_welcome_when_they_end(harness: Harness) -> None:
    await harness.member("alice").says("/join")
    harness.clock.advance(3 * MINUTE)
    await harness.member("bob").says("/status")
    harness.clock.advance(5 * MINUTE)
    await harness.member("carol").says("/join Carol, I like puzzles")
    assert [w.splitlines()[0] for w in welcomes(harness)] == ["Welcome, alice! 👋"]
    harness.clock.advance(2 * MINUTE)  # the window ends, ten minutes after alice's welcome
    await harness.engine.tick()
    assert [w.splitlines()[0] for w in welcomes(harness)] == [
        "Welcome, alice! 👋",
        "Welcome, bob and carol! 👋",
    ]
    # bob has not introduced himself yet: the shared welcome asks for it.
    assert "1. Introduce yourself: /join <a few words about yourself>" in welcomes(harness)[-1]
    harness.clock.advance(MINUTE)
    await harness.member("dave").says("/status")  # after the window: welcomed at once again
    assert welcomes(harness)[-1].splitlines()[0] == "Welcome, dave! 👋"


async def test_a_burst_of_first_votes_puts_every_voter_on_the_roster_with_one_welcome(
    harness: Harness,
) -> None:
    await harness.regulars("alice", "bob", "carol")
    await harness.member("alice").says("/poll create Tea? | yes | no")
    poll = harness.chat.sent[-1].ref
    for name in ("bob", "carol"):
        await harness.member(name).says("/buddy on")
    votes = [ReactionAdded(f"v{n}", poll, harness.member(name).user, "1️⃣") for n, name in enumerate("uvwx")]
    await harness.engine.handle_batch(votes)
    await harness.engine.settle()
    assert await roster(harness) == ["alice", "bob", "carol", "u", "v", "w", "x"]
    assert (await harness.tally(1)).counts == (4, 0)
    assert [w.splitlines()[0] for w in welcomes(harness)] == ["Welcome, u, v, w and x! 👋"]
    # Arriving together, they go round the buddies in turn.
    told = [(user.id, text.split()[0]) for user, text in harness.chat.direct if text.startswith("Hello")]
    assert [user for user, _ in told] == ["u", "v", "w", "x"]
    buddies = [(await member(harness, n)).buddy_key for n in "uvwx"]
    assert buddies == ["fake:bob", "fake:carol", "fake:bob", "fake:carol"]


async def test_a_crowd_gets_one_welcome_that_names_ten_and_counts_the_rest(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(newcomer_service, "BATCH", 4)  # claimed in several batches, posted as one
    await harness.member("alice").says("/join")
    for n in range(1, 13):
        await harness.member(f"m{n:02}").says("/status")
    harness.clock.advance(10 * MINUTE)
    await harness.engine.tick()
    assert [w.splitlines()[0] for w in welcomes(harness)] == [
        "Welcome, alice! 👋",
        "Welcome, m01, m02, m03, m04, m05, m06, m07, m08, m09, m10 and 2 more! 👋",
    ]


async def test_a_shared_welcome_waits_in_the_database_across_a_restart(db_url: str) -> None:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        h = Harness(store=store)
        await h.member("alice").says("/join")
        await h.member("bob").says("/join")
        before = len(h.chat.sent)
        # The process stops; another starts on the same database, ten minutes later.
        h.engine = Engine(store, h.clock, [h.chat], recurrence=CronRecurrence())
        h.clock.advance(10 * MINUTE)
        async with store.transaction() as tx:
            assert await tx.next_due_time([h.chat.platform]) == START + 10 * MINUTE
        await h.engine.tick()
        await h.engine.tick()
        assert [s.text.splitlines()[0] for s in h.chat.sent[before:]] == ["Welcome, bob! 👋"]
    finally:
        await store.close()


async def test_a_reaction_or_a_message_in_the_channel_puts_a_member_on_the_roster(harness: Harness) -> None:
    await harness.regulars("alice")
    await harness.member("alice").says("/poll create Tea? | yes | no")
    await harness.member("bob").reacts(harness.chat.sent[-1].ref, "1️⃣")
    await harness.member("carol").reacts(MessageRef(harness.channel, "not-a-poll"), "👋")
    await harness.engine.handle(MessagePosted("m1", harness.channel, harness.member("dave").user))
    await harness.engine.handle(
        MessagePosted("m2", ChannelRef("fake", "elsewhere"), harness.member("erin").user)
    )
    assert await roster(harness) == ["alice", "bob", "carol", "dave"]
    assert await roster(harness, ChannelRef("fake", "elsewhere")) == []  # no group there
    await harness.member("frank").unreacts(harness.chat.sent[-1].ref, "1️⃣")  # taking back is no act
    assert "frank" not in await roster(harness)


async def test_leave_and_forget_me_never_put_a_member_on_the_roster(harness: Harness) -> None:
    await harness.regulars("alice")
    reply = await harness.member("bob").says("/leave")
    assert reply is not None and reply.text == "You are not on the roster of #general. Nothing was changed."
    await harness.member("carol").says("/forget-me")
    await harness.member("carol").says("/forget-me confirm")
    assert await roster(harness) == ["alice"] and harness.chat.sent == []


async def test_a_refused_command_changes_nothing_not_even_the_roster(harness: Harness) -> None:
    await harness.regulars("alice")
    await harness.member("alice").says("/goal propose Learn Rust")
    reply = await harness.member("bob").says("/goal drop 1")  # only its proposer or a facilitator
    assert reply is not None and reply.is_error
    reply = await harness.member("bob").says("/goal show 7")  # bad input
    assert reply is not None and reply.is_error
    assert await roster(harness) == ["alice"] and not welcomes(harness)


async def test_leaving_and_joining_again_keeps_a_members_history(harness: Harness) -> None:
    await harness.regulars("alice")
    bob = harness.member("bob")
    await bob.says("/join Bob, new to Rust")
    harness.clock.advance(DAY)
    reply = await bob.says("/leave")
    assert reply is not None and reply.text == (
        "You have left the roster of #general. What you did here stays in the group's record; /join"
        " brings you back."
    )
    await harness.member("alice").says("/poll create Tea? | yes | no")
    await bob.reacts(harness.chat.sent[-1].ref, "1️⃣")  # his vote counts, but he stays off the roster
    assert (await harness.tally(1)).counts == (1, 0)
    assert await roster(harness) == ["alice"]
    harness.clock.advance(DAY)
    reply = await bob.says("/join")
    assert reply is not None and reply.text == (
        "Welcome back, bob: you are on the roster of #general again, with your history."
    )
    back = await member(harness, "bob")
    assert (back.joined_at, back.intro, back.left_at) == (START, "Bob, new to Rust", None)
    assert [w.splitlines()[0] for w in welcomes(harness)] == ["Welcome, bob! 👋", "Welcome, bob! 👋"]
    reply = await bob.says("/join")
    assert reply is not None and reply.text.startswith(
        "You are on the roster of #general already, since 2026-03-02."
    )
    reply = await bob.says("/join Bob, now a bit less new to Rust")
    assert reply is not None and reply.text == "Thank you: your introduction is updated."


async def test_the_platform_tells_of_joins_and_leaves(harness: Harness) -> None:
    bob = harness.member("bob").user
    await harness.engine.handle(MemberJoined("j1", harness.channel, bob))  # starts the group, too
    await harness.engine.handle(MemberJoined("j1", harness.channel, bob))  # the same event again
    await harness.engine.settle()
    assert await roster(harness) == ["bob"] and len(welcomes(harness)) == 1
    await harness.engine.handle(MemberLeft("l1", harness.channel, bob))
    await harness.engine.handle(MemberLeft("l2", ChannelRef("fake", "nowhere"), bob))  # no group: nothing
    assert await roster(harness) == []
    await harness.engine.handle(MemberJoined("j2", harness.channel, bob))
    assert await roster(harness) == ["bob"]


# The roster listing -------------------------------------------------------------------------------


async def test_members_lists_since_when_last_active_and_thirty_days_of_activity(harness: Harness) -> None:
    await harness.regulars("alice")
    alice, bob, carol = harness.member("alice"), harness.member("bob"), harness.member("carol")
    await alice.says("/timezone Europe/Berlin")
    await alice.says("/goal propose Learn Rust")
    await bob.says("/join Bob, here for the exercises")
    await bob.reacts(harness.chat.sent[-2].ref, "✅")  # the consent poll, before bob's welcome
    await bob.says("/poll create Tea? | yes | no")
    await carol.reacts(harness.chat.sent[-1].ref, "2️⃣")
    await bob.says("/reflect Pairing helps")
    harness.clock.advance(2 * DAY)
    await carol.says("/members private on")
    reply = await alice.says("/members")
    assert reply is not None and reply.text == (
        "Members of #general (3; times in Europe/Berlin):\n"
        "alice — since 2026-03-02, last active 2026-03-04 10:00;"
        " 30 days: 1 proposal, 0 votes, 0 reflections\n"
        "bob — since 2026-03-02, last active 2026-03-02 10:00; 30 days: 0 proposals, 1 vote, 1 reflection\n"
        "  “Bob, here for the exercises”\n"
        "carol"
    )
    harness.clock.advance(30 * DAY)
    await carol.says("/members private off")
    reply = await alice.says("/members")
    assert reply is not None and reply.text.splitlines()[-1] == (
        "carol — since 2026-03-02, last active 2026-04-03 11:00; 30 days: 0 proposals, 0 votes, 0 reflections"
    )


async def test_a_long_roster_comes_in_pages(harness: Harness) -> None:
    await harness.regulars(*(f"member{i:02}" for i in range(40)))
    first = await harness.member("member00").says("/members")
    assert first is not None and len(first.text) <= 2000
    assert first.text.endswith("Page 1 of 3. Next: /members 2.")
    last = await harness.member("member00").says("/members 3")
    assert last is not None and "member39" in last.text and "member39" not in first.text


async def test_members_private_says_how_you_are_listed_and_bad_input_changes_nothing(
    harness: Harness,
) -> None:
    await harness.regulars("bob")
    bob = harness.member("bob")
    reply = await bob.says("/members private")
    assert reply is not None and reply.text.startswith("The roster lists you with your activity.")
    reply = await bob.says("/members on")
    assert reply is not None and reply.is_error and reply.text.startswith("'on' is not a valid setting.")
    reply = await bob.says("/members private maybe")
    assert reply is not None and reply.is_error and "Choose one of: on, off." in reply.text
    assert not (await member(harness, "bob")).private


# The welcome text ---------------------------------------------------------------------------------


async def test_facilitators_set_the_groups_own_words_and_everyone_sees_the_welcome(harness: Harness) -> None:
    await harness.regulars("alice", "bob")
    reply = await harness.member("alice").says("/welcome set Say hi, then read the pinned notes.")
    assert reply is not None and not reply.is_error
    shown = await harness.member("bob").says("/welcome show")
    assert shown is not None and shown.text.startswith(
        "This is how #general welcomes a newcomer now:\nWelcome, <newcomer>! 👋\nSay hi, then read the pinned"
        " notes.\n"
    )
    await harness.member("alice").says("/welcome reset")
    shown = await harness.member("bob").says("/welcome show")
    assert shown is not None and "pinned" not in shown.text
    assert shown.text.endswith("a facilitator can add them with /welcome set <text>.)")
    refused = await harness.member("bob").says("/welcome set Mine now")
    assert refused is not None and refused.text == (
        "Sorry, only facilitators can use /welcome set. Nothing was changed."
    )


# Buddies ------------------------------------------------------------------------------------------


async def test_newcomers_get_active_buddies_in_turn_and_both_hear_by_direct_message(harness: Harness) -> None:
    await harness.regulars("alice", "bob", "carol")
    for name in ("alice", "bob", "carol"):
        await harness.member(name).says("/buddy on")
    harness.clock.advance(15 * DAY)
    await harness.member("alice").says("/status")
    await harness.member("bob").says("/status")  # carol has been quiet for 15 days: not active
    for newcomer in ("dave", "erin", "frank"):
        await harness.member(newcomer).says("/status")
    pairs = [(user.id, text.split(",")[0].split()[0]) for user, text in harness.chat.direct]
    assert [user for user, _ in pairs] == ["dave", "alice", "erin", "bob", "frank", "alice"]
    newcomer_text, buddy_text = harness.chat.direct[0][1], harness.chat.direct[1][1]
    assert newcomer_text == (
        "Hello dave, and welcome to #general! alice offered to be a buddy for newcomers there and is yours:"
        " ask them anything about the group and how it works. /buddy shows your buddy."
    )
    assert buddy_text == (
        "dave has just joined #general, and you are their buddy: say hello, and help them find their way in."
        " /buddy shows whose buddy you are."
    )
    reply = await harness.member("alice").says("/buddy")
    assert reply is not None and reply.text == (
        "You are the buddy of dave, frank.\nYou offer to be a buddy for newcomers; /buddy off stops it."
    )
    reply = await harness.member("erin").says("/buddy")
    assert reply is not None and reply.text == (
        "Your buddy in #general is bob.\nTo offer to be a buddy for newcomers: /buddy on."
    )


async def test_without_an_active_buddy_nobody_is_paired_and_buddy_off_stops_new_pairs(
    harness: Harness,
) -> None:
    await harness.regulars("alice")
    await harness.member("alice").says("/buddy on")
    reply = await harness.member("alice").says("/buddy off")
    assert (
        reply is not None and reply.text == "You no longer get newcomers to buddy. Those you have stay yours."
    )
    await harness.member("bob").says("/status")
    assert harness.chat.direct == []
    reply = await harness.member("bob").says("/buddy")
    assert reply is not None and reply.text.startswith("You have no buddy in #general.")


async def test_the_message_to_the_buddy_waits_out_quiet_hours(harness: Harness) -> None:
    await harness.regulars("alice")
    alice = harness.member("alice")
    await alice.says("/buddy on")
    await alice.says("/quiet-hours 08:00-20:00")  # it is 09:00
    await harness.member("bob").says("/status")
    assert [user.id for user, _ in harness.chat.direct] == ["bob"]  # the newcomer hears at once
    harness.clock.advance(11 * 60 * MINUTE)
    await harness.engine.tick()
    assert [user.id for user, _ in harness.chat.direct] == ["bob", "alice"]


# Written privately --------------------------------------------------------------------------------


async def test_a_command_written_privately_is_the_members_one_groups_and_no_activity(
    harness: Harness,
) -> None:
    harness.chat.interactive_replies = False  # answers go through the outbox, as on Matrix and the console
    await harness.regulars("bob")
    bob = harness.member("bob")
    harness.clock.advance(DAY)
    reply = await bob.whispers("/status")
    assert reply is not None and reply.text.startswith("Phase: Convening")
    assert harness.chat.direct == [(bob.user, reply.text)] and harness.chat.sent == []
    assert (await member(harness, "bob")).last_active_at == START  # a direct message is no activity
    helped = await bob.whispers("/help buddy")
    assert helped is not None and helped.text.startswith("Usage: /buddy [value]")


async def test_a_command_written_privately_without_one_group_says_where_to_say_it(harness: Harness) -> None:
    carol = harness.member("carol")
    reply = await carol.whispers("/status")
    assert (
        reply is not None
        and reply.is_error
        and reply.text.startswith("You are on no group's roster here yet, so /status has no group to work on")
    )
    assert await carol.whispers("/help") is not None  # help needs no group
    await carol.says("/status")
    await carol.says("/status", ChannelRef("fake", "study", "#study"))
    reply = await carol.whispers("/members")
    assert reply is not None and reply.text == (
        "You are in 2 groups here (#general, #study): say /members in the channel of the group you mean."
    )
    done = await carol.whispers("/forget-me confirm")  # about the member, not one group
    assert done is not None and "You are off 2 rosters" in done.text
