"""Roles: the built-in and the group's own, taking and passing, weekly turns at the digest's time that are
fair and skip members away, the facilitator of the week, and the wrapper's draft, wrap and fallback."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.recurrence import CronRecurrence
from core.engine import Engine
from core.events import MessagePosted
from core.export import load_record, to_csv, to_data, to_markdown
from core.members import Member
from core.refs import ChannelRef
from core.roles import PoolMember, check_name, next_holder, parse_rotation
from tests.conftest import EmptyDatabase, migrated_store
from tests.support import START, Harness, ok, refused

WEEK = timedelta(days=7)
# START is Monday 2026-03-02 09:00 UTC: the week's turn (the digest's time, weekly mon 09:00) is now, and
# the next one a week on.


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def h(request: pytest.FixtureRequest, empty_database: EmptyDatabase) -> AsyncIterator[Harness]:
    """The engine on fakes, with the in-memory store and the SQL store on each database."""
    if request.param == "memory":
        yield Harness()
        return
    async with empty_database(request.param) as url, migrated_store(url) as store:
        yield Harness(store=store)


async def advance(h: Harness, delta: timedelta) -> None:
    def move(to: datetime) -> None:
        h.clock.current = to

    await h.engine.run_until(h.clock.now() + delta, move)
    await h.engine.settle()


async def speaks(h: Harness, name: str) -> None:
    """A member says something in the channel (activity)."""
    await h.engine.handle(MessagePosted(h.next_event_id(), h.channel, h.member(name).user))


def posted(h: Harness) -> list[str]:
    return [s.text for s in h.chat.sent]


def dms(h: Harness, name: str) -> list[str]:
    return [text for user, text in h.chat.direct if user.name == name]


async def roles_state(h: Harness) -> dict[str, str]:
    """Each role's holder ("" when free), read from the store."""
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        return {r.name: r.holder_name for r in await tx.roles.in_group(group.id)}


# Rules -------------------------------------------------------------------------------------------


def test_role_names_are_one_word_or_hyphenated_words() -> None:
    assert check_name("Link-Curator") == "link-curator"
    assert check_name("timekeeper") == "timekeeper"
    for bad in ("two words", "-lead", "lead-", "a--b", "snake_case", "café", "x" * 41, ""):
        with pytest.raises(Exception, match="role"):
            check_name(bad)


def test_rotations_read_as_members_write_them() -> None:
    assert parse_rotation("Weekly").value == "weekly"
    assert parse_rotation("every  2 weeks").value == "every 2 weeks"
    assert parse_rotation("off").value == "off"
    with pytest.raises(Exception, match="weekly, every 2 weeks, or off"):
        parse_rotation("daily")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 51), st.sampled_from(["join", "leave", "away", "back"]), st.integers(0, 4)),
        max_size=40,
    )
)
def test_turns_over_a_year_are_fair_and_skip_members_away(changes: list[tuple[int, str, int]]) -> None:
    """52 weekly turns with members joining and leaving the pool and going away: whoever holds the role is
    in the pool and active; nobody holds it twice in a row while another active member is in the pool;
    members in the pool and active all year hold it as often as each other, give or take one."""
    steady = ["ana", "ben", "cy"]  # in the pool and active all year
    others = ["dee", "eli", "fay", "gus", "hal"]
    pool: dict[str, PoolMember] = {
        n: PoolMember(1, n, n, START + timedelta(minutes=i)) for i, n in enumerate(steady)
    }
    away: set[str] = set()
    holder = ""
    held: Counter[str] = Counter()
    for week in range(52):
        now = START + week * WEEK
        for when, what, who in changes:
            name = others[who]
            if when != week:
                continue
            if what == "join" and name not in pool:
                pool[name] = PoolMember(1, name, name, now)
            elif what == "leave":
                pool.pop(name, None)
            elif what == "away":
                away.add(name)
            else:
                away.discard(name)
        active = {n for n in pool if n not in away}
        chosen = next_holder(list(pool.values()), active, {holder})
        if chosen is None:
            assert active <= {holder}
            continue
        assert chosen.key in active
        assert chosen.key != holder
        holder = chosen.key
        held[holder] += 1
        pool[holder] = PoolMember(1, holder, holder, chosen.joined_at, now, chosen.times_held + 1)
    counts = [held[n] for n in steady]
    assert max(counts) - min(counts) <= 1, held


# Commands ----------------------------------------------------------------------------------------


async def test_the_built_in_roles_are_listed_and_the_group_adds_its_own(h: Harness) -> None:
    await h.regulars("alice", "bob")
    listed = await ok(h, "bob", "/role list")
    assert "• facilitator-of-the-week: may run facilitator commands in this group" in listed
    assert "• wrapper:" in listed and "• notetaker:" in listed and "Now free." in listed
    added = await ok(h, "alice", "/role add Timekeeper keeps the meeting to its hour")
    assert added.startswith("Role timekeeper added: keeps the meeting to its hour.")
    assert "• timekeeper: keeps the meeting to its hour. Now free." in await ok(h, "bob", "/role list")
    await ok(h, "bob", "/role take timekeeper")
    assert await ok(h, "alice", "/role remove timekeeper") == (
        "Role timekeeper removed, with its rotation pool. bob no longer holds it."
    )
    assert "timekeeper" not in await ok(h, "bob", "/role list")


async def test_bad_input_gets_a_clear_answer_and_changes_nothing(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await ok(h, "bob", "/role take notetaker")
    before = await roles_state(h)
    cases = {
        ("alice", "/role add two_words keeps time"): "'two_words' is not a role name",
        ("alice", "/role add -lead leads"): "is not a role name",
        ("alice", "/role add lead"): "Missing duty",
        ("alice", "/role add wrapper writes"): "There is a role called wrapper already",
        ("bob", "/role add timekeeper keeps time"): "only facilitators can add roles",
        ("bob", "/role remove notetaker"): "only facilitators can remove roles",
        ("alice", "/role remove wrapper"): "wrapper is built in and stays",
        ("alice", "/role remove nobody"): "There is no role called nobody here",
        ("carol", "/role take nobody"): "There is no role called nobody here",
        ("carol", "/role take notetaker"): "notetaker is held by bob: a role is taken only when it is free",
        ("bob", "/role take notetaker"): "You hold notetaker already",
        ("carol", "/role pass notetaker"): "You do not hold notetaker (bob holds it)",
        ("carol", "/role pass wrapper"): "You do not hold wrapper (it is free)",
        ("alice", "/role rotate wrapper daily"): "A role rotates weekly, every 2 weeks, or off; not 'daily'",
        ("alice", "/role rotate wrapper"): "Missing how",
        ("bob", "/role rotate wrapper weekly"): "only facilitators can change how roles rotate",
        ("carol", "/role pool wrapper sometimes"): "'sometimes' is not a valid action",
        ("carol", "/role pool wrapper leave"): "You are not in the wrapper rotation",
        ("carol", "/wrap We read a lot"): "Only the week's wrapper posts the wrap",
        ("carol", "/wrap list 3"): "There is no page 3 of wraps",
        ("carol", "/role"): "role needs one of: list, add, remove, take, pass, rotate, pool",
        ("carol", "/role list everything"): "Unexpected extra words: 'everything'",
        ("carol", "/role take"): "Missing name",
        ("carol", "/role take " + "x" * 61): "name is too long",
        ("alice", "/role add " + "x" * 41 + " keeps time"): "A role's name has at most 40 characters",
        ("carol", "/wrap post"): "Missing text",
        ("carol", "/wrap post " + "x" * 1801): "text is too long",
    }
    for (who, command), wanted in cases.items():
        text = await refused(h, who, command)
        assert wanted in text, (command, text)
    await ok(h, "carol", "/role pool wrapper join")
    assert "You are in the wrapper rotation already" in await refused(h, "carol", "/role pool wrapper join")
    assert await roles_state(h) == before
    none_yet = "No wraps yet. The week's wrapper posts one with /wrap post <text>."  # as on Discord
    assert await ok(h, "carol", "/wrap list") == none_yet


async def test_a_weekly_rotation_hands_over_at_the_digest_time_and_tells_the_new_holder(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    for name in ("bob", "carol"):
        await ok(h, name, "/role pool notetaker join")
    said = await ok(h, "alice", "/role rotate notetaker weekly")
    assert said.endswith("bob is this week's notetaker.")  # free: handed over at once
    assert dms(h, "bob")[-1].startswith("You are the notetaker in #general this week")
    assert "Next: carol." in await ok(h, "alice", "/role list")
    await speaks(h, "bob")
    await speaks(h, "carol")
    await advance(h, WEEK - timedelta(minutes=1))  # Monday 08:59: not yet
    assert (await roles_state(h))["notetaker"] == "bob"
    await advance(h, timedelta(minutes=1))
    assert (await roles_state(h))["notetaker"] == "carol"
    assert "carol is this week's notetaker." in posted(h)
    assert dms(h, "carol")[-1].startswith("You are the notetaker in #general this week")
    # The same moment again (a second process, a restart) hands nothing over twice.
    again = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    sent = len(h.chat.sent)
    await again.tick()
    await again.settle()
    assert len(h.chat.sent) == sent and (await roles_state(h))["notetaker"] == "carol"


async def test_the_turn_follows_the_group_s_timezone_even_when_it_changes(h: Harness) -> None:
    """Planned at 09:00 UTC, then the group moves to Berlin (09:00 there is 08:00 UTC in March): the first
    turn comes as soon as it is seen, late; from then on at 08:00 UTC."""
    await h.regulars("alice", "bob", "carol")
    for name in ("bob", "carol"):
        await ok(h, name, "/role pool notetaker join")
    await ok(h, "alice", "/role rotate notetaker weekly")
    await ok(h, "alice", "/timezone Europe/Berlin")
    await speaks(h, "bob")
    await speaks(h, "carol")
    await advance(h, WEEK - timedelta(minutes=1))
    assert (await roles_state(h))["notetaker"] == "bob"
    await advance(h, timedelta(minutes=1))  # 09:00 UTC: the planned time, an hour after Berlin's turn
    assert (await roles_state(h))["notetaker"] == "carol"
    await speaks(h, "bob")
    await advance(h, WEEK - timedelta(hours=1, minutes=1))  # Monday 07:59 UTC
    assert (await roles_state(h))["notetaker"] == "carol"
    await advance(h, timedelta(minutes=1))  # 08:00 UTC, 09:00 in Berlin
    assert (await roles_state(h))["notetaker"] == "bob"
    listed = await ok(h, "alice", "/role list")
    assert "next turn Mon 2026-03-23 09:00 CET" in listed


async def test_a_turn_that_came_while_the_bot_was_down_is_made_once_when_it_is_back(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    for name in ("bob", "carol"):
        await ok(h, name, "/role pool notetaker join")
    await ok(h, "alice", "/role rotate notetaker weekly")
    await speaks(h, "carol")
    h.clock.advance(WEEK + timedelta(hours=3))  # down over the turn: no tick ran
    back = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    for _ in range(2):
        await back.tick()
        await back.settle()
    assert posted(h).count("carol is this week's notetaker.") == 1
    assert (await roles_state(h))["notetaker"] == "carol"
    listed = await ok(h, "alice", "/role list")
    assert "next turn Mon 2026-03-16 09:00 UTC" in listed  # the next week's turn, not the missed one


async def test_every_two_weeks_and_a_pass_hands_on_early(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol", "dave")
    for name in ("bob", "carol", "dave"):
        await ok(h, name, "/role pool wrapper join")
    said = await ok(h, "alice", "/role rotate wrapper every 2 weeks")
    assert said.endswith("bob is the wrapper for the next 2 weeks.")
    for week in range(2):
        for name in ("bob", "carol", "dave"):
            await speaks(h, name)
        await advance(h, WEEK)
        assert (await roles_state(h))["wrapper"] == ("bob" if week == 0 else "carol")
    passed = await ok(h, "carol", "/role pass wrapper")
    assert passed == "You passed wrapper on. dave is the wrapper for the next 2 weeks."
    assert (await roles_state(h))["wrapper"] == "dave"


async def test_members_away_for_14_days_are_skipped_and_an_away_holder_hands_on(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol", "dave")
    await ok(h, "alice", "/role take facilitator-of-the-week")
    for name in ("bob", "carol", "dave"):
        await ok(h, name, "/role pool facilitator-of-the-week join")
    await ok(h, "alice", "/role rotate facilitator-of-the-week weekly")
    for _ in range(3):  # bob and dave keep writing; carol goes quiet, and alice too
        await speaks(h, "bob")
        await speaks(h, "dave")
        await advance(h, WEEK)
    holders = [t for t in posted(h) if "facilitator-of-the-week." in t]
    assert holders == [
        "bob is this week's facilitator-of-the-week.",
        "carol is this week's facilitator-of-the-week.",  # active 7 days ago: still counts
        "dave is this week's facilitator-of-the-week.",
    ]
    await speaks(h, "bob")
    await advance(h, WEEK)  # carol has been away for 21 days: skipped
    assert (await roles_state(h))["facilitator-of-the-week"] == "bob"
    # bob goes away too; with rotation off, at the week's turn after 14 days he hands it on early.
    await ok(h, "alice", "/role rotate facilitator-of-the-week off")
    for _ in range(2):
        await speaks(h, "dave")
        await advance(h, WEEK)
    assert (await roles_state(h))["facilitator-of-the-week"] == "dave"
    assert "dave is the facilitator-of-the-week now." in posted(h)


async def test_a_year_of_weekly_turns_through_the_engine_is_fair(h: Harness) -> None:
    """52 weeks through commands and the tick: dee joins late and leaves, eve goes away for a month."""
    names = ["ana", "ben", "cy", "dee", "eve"]
    await h.regulars("alice", *names)
    for name in ("ana", "ben", "cy", "eve"):
        await ok(h, name, "/role pool wrapper join")
    await ok(h, "alice", "/role rotate wrapper weekly")
    turns: list[str] = []
    for week in range(52):
        if week == 10:
            await ok(h, "dee", "/role pool wrapper join")
        if week == 30:
            await ok(h, "dee", "/role pool wrapper leave")
        if week == 40:
            await ok(h, "eve", "/leave")  # off the roster: no more turns
            names.remove("eve")
        for name in names:
            if name == "eve" and 20 <= week < 26:
                continue
            await speaks(h, name)
        state = await roles_state(h)
        turns.append(state["wrapper"])
        await advance(h, WEEK)
    assert all(a != b for a, b in itertools.pairwise(turns))
    counts = Counter(turns)
    steady = [counts[n] for n in ("ana", "ben", "cy")]
    assert max(steady) - min(steady) <= 1, counts
    # eve was away from week 20 (last seen then) to 26: from two weeks after, she was skipped.
    assert "eve" not in turns[23:26]
    assert "dee" not in turns[31:] and "dee" in turns[10:31]
    assert "eve" in turns[26:40] and "eve" not in turns[41:]


# The facilitator of the week ---------------------------------------------------------------------


async def test_the_facilitator_of_the_week_facilitates_in_that_group_only(h: Harness) -> None:
    other = ChannelRef(h.chat.platform, "other", "#other")
    await h.regulars("alice", "bob")
    bob = h.member("bob")
    reply = await bob.says("/phase set organizing", other)
    assert reply is not None and reply.is_error and "only facilitators" in reply.text
    await ok(h, "bob", "/role take facilitator-of-the-week")
    moved = await ok(h, "bob", "/phase set organizing we have a plan")
    assert moved.startswith("bob moved the group from Convening to Organizing")
    await ok(h, "bob", "/auto digest on")  # facilitators-to-change commands too
    elsewhere = await bob.says("/phase set organizing", other)
    assert elsewhere is not None and elsewhere.is_error and "only facilitators" in elsewhere.text
    await ok(h, "bob", "/role pass facilitator-of-the-week")
    assert "only facilitators" in await refused(h, "bob", "/phase set cooperating")


async def test_the_notetaker_closes_a_review_with_its_summary_and_nothing_more(h: Harness) -> None:
    await h.regulars("alice", "bob")
    await ok(h, "bob", "/review start")
    assert "only facilitators" in await refused(h, "bob", "/review summary")
    await ok(h, "bob", "/role take notetaker")
    assert "only facilitators" in await refused(h, "bob", "/phase set organizing")
    await ok(h, "bob", "/review summary")


# The wrapper -------------------------------------------------------------------------------------


async def wrapper_week(h: Harness, *, digest: bool = True) -> None:
    """bob wraps this week; the digest is on; carol is next in the wrapper's rotation."""
    await h.regulars("alice", "bob", "carol")
    if digest:
        await ok(h, "alice", "/auto digest on")
    for name in ("bob", "carol"):
        await ok(h, name, "/role pool wrapper join")
    await ok(h, "alice", "/role rotate wrapper weekly")
    await ok(h, "carol", "/reflect Chapter 3 was hard but worth it")
    await ok(h, "bob", "/goal propose Read chapter 4 together")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "✅")  # the goal's consent poll
    await h.member("bob").reacts(h.chat.sent[-1].ref, "✅")
    await ok(h, "carol", "/poll create --closes 10d Which evening suits? | Monday | Thursday")
    await speaks(h, "bob")


async def test_the_wrapper_gets_the_draft_instead_of_the_group_and_wraps(h: Harness) -> None:
    await wrapper_week(h)
    await advance(h, WEEK)
    assert not any("Weekly digest" in t for t in posted(h))  # not to the group
    draft = dms(h, "bob")[-1]
    assert draft.startswith("📝 Your draft for the week's wrap in #general (wrap 1):\n📬 Weekly digest")
    assert "- carol: Chapter 3 was hard but worth it" in draft
    assert "Decided this week:\n- Goal 1 accepted: Read chapter 4 together" in draft
    assert "Open polls:\n- Poll 2: Which evening suits? (0 voted)" in draft
    assert "Concerns voiced: none." in draft
    assert (await roles_state(h))["wrapper"] == "carol"  # the role moved on; bob may still wrap
    said = await ok(h, "bob", "/wrap We finished chapter 3.\nNext: chapter 4, | together.")
    assert said == "Wrap 1 is posted and kept; /wrap list shows the group's wraps."
    assert posted(h)[-1] == (
        "🧺 The week's wrap, by bob (week to Mon 2026-03-09):\n"
        "We finished chapter 3.\nNext: chapter 4,\ntogether."
    )
    await advance(h, timedelta(days=1, hours=1))
    assert not any("Weekly digest" in t for t in posted(h))  # wrapped: no digest
    listed = await ok(h, "carol", "/wrap list")
    assert listed == (
        "The group's wraps, newest first:\nWrap 1, week to Mon 2026-03-09, by bob: We finished chapter 3."
        " Next: chapter 4, together."
    )


async def test_without_a_wrap_in_a_day_the_digest_goes_to_the_group(h: Harness) -> None:
    await wrapper_week(h)
    await advance(h, WEEK + timedelta(hours=23))
    assert not any("Weekly digest" in t for t in posted(h))
    await advance(h, timedelta(hours=1))
    digests = [t for t in posted(h) if t.startswith("📬 Weekly digest")]
    assert len(digests) == 1 and "Reflections this week: 1 from 1 people." in digests[0]
    # The role rotated on schedule meanwhile, and carol gets next week's draft.
    await speaks(h, "carol")
    await advance(h, WEEK - timedelta(days=1))
    assert dms(h, "carol")[-1].startswith("📝 Your draft for the week's wrap in #general (wrap 2)")


async def test_with_the_digest_off_the_wrapper_still_gets_the_draft_and_the_group_nothing(h: Harness) -> None:
    await wrapper_week(h, digest=False)
    await advance(h, WEEK + timedelta(days=2))
    assert dms(h, "bob")[-1].startswith("📝 Your draft")
    assert not any("Weekly digest" in t for t in posted(h))


# Export and forgetting ---------------------------------------------------------------------------


async def test_roles_and_wraps_are_exported_and_forget_me_takes_the_member_out(h: Harness) -> None:
    await wrapper_week(h)
    await advance(h, WEEK)
    await ok(h, "bob", "/wrap A good week")
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        record = await load_record(tx, group)
    data = to_data(record)
    wrapper = next(r for r in data["roles"] if r["name"] == "wrapper")
    assert wrapper["holder"] == "carol" and wrapper["rotation"] == "weekly"
    assert [p["member"] for p in wrapper["pool"]] == ["bob", "carol"]
    assert data["wraps"][0]["text"] == "A good week" and data["wraps"][0]["wrapper"] == "bob"
    json.dumps(data)
    assert "## Roles\n- facilitator-of-the-week:" in to_markdown(record)
    assert "### Week to 2026-03-09 09:00 UTC, by bob\nA good week" in to_markdown(record)
    assert "wrap,1,2026-03-09T09:00:00+00:00,bob,A good week,wrapped," in to_csv(record)
    done = await ok(h, "carol", "/forget-me confirm")
    assert "out of 2 roles and rotations" in done
    assert (await roles_state(h))["wrapper"] == ""
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        roles = await tx.roles.in_group(group.id)
        pools = await tx.roles.pools([r.id for r in roles])
    assert [p.name for listed in pools.values() for p in listed] == ["bob"]


def test_a_member_never_active_counts_from_their_join() -> None:
    from core.roles import active_keys

    now = datetime(2026, 3, 30, 9, tzinfo=UTC)
    roster = [
        Member(1, 1, "x:new", "new", now - timedelta(days=3)),
        Member(2, 1, "x:old", "old", now - timedelta(days=30)),
        Member(3, 1, "x:seen", "seen", now - timedelta(days=30), last_active_at=now - timedelta(days=13)),
        Member(4, 1, "x:gone", "gone", now - timedelta(days=3), left_at=now),
    ]
    assert active_keys(roster, now) == {"x:new", "x:seen"}
