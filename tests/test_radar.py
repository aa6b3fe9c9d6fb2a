"""The radar, the pattern catalogue and phase advice, on the in-memory fakes (see core/radar.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.lifecycle import Phase
from core.patterns import CATALOGUE, NAME
from core.radar import PATTERN_OF
from tests.support import Harness

DAY = timedelta(days=1)
WEEK = 7 * DAY


@pytest.fixture
def h() -> Harness:
    return Harness(facilitators=("alice",))


async def until(h: Harness, when: datetime) -> None:
    """Move time on to `when`, doing everything that comes due on the way (weekly radars included)."""

    def move(t: datetime) -> None:
        h.clock.current = t

    await h.engine.run_until(when, move)
    await h.engine.settle()


def to(h: Harness, name: str) -> list[str]:
    return [text for user, text in h.chat.direct if user.id == name]


def in_channel(h: Harness) -> str:
    return "\n".join(s.text for s in h.chat.sent)


async def busy_week(h: Harness, *names: str) -> None:
    """Each member does something in the channel."""
    for name in names:
        await h.member(name).says("/status")


async def test_a_silent_member_is_named_to_facilitators_only_once(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.engine.tick()  # plans the first weekly radar: Monday 9:00 next week
    for week in range(1, 4):
        await busy_week(h, "alice", "bob")  # carol says nothing
        await until(h, h.clock.now() + WEEK)
        silent = [t for t in to(h, "alice") if "carol has done nothing" in t]
        assert len(silent) == (0 if week < 2 else 1), week  # 14 days reached in week 2, told once
    told = next(t for t in to(h, "alice") if "carol" in t)
    assert "Try personal-invitation: /patterns personal-invitation" in told
    assert "carol" not in in_channel(h)
    assert to(h, "bob") == [] and to(h, "carol") == []  # nobody else hears of it


async def test_the_radar_on_demand_shows_what_stands_out_now_with_the_thresholds(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    h.clock.advance(15 * DAY)
    await busy_week(h, "alice", "bob")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and not reply.is_error and reply.private  # ephemeral, or a direct message
    assert "carol has done nothing in the group for 15 days." in reply.text
    assert "Thresholds: silence 14d, concentration 50%" in reply.text
    refused = await h.member("bob").says("/radar")
    assert refused is not None and refused.is_error and "carol" not in refused.text


async def test_a_group_sets_its_own_threshold_and_bad_values_change_nothing(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    h.clock.advance(15 * DAY)
    await busy_week(h, "alice", "bob")
    assert "carol" in ((await h.member("alice").says("/radar")) or h).text  # type: ignore[union-attr]
    for bad in ("0", "366", "-3", "fortnight", "21.5", "²"):
        reply = await h.member("alice").says(f"/radar silence {bad}")
        assert reply is not None and reply.is_error and "Nothing was changed" in reply.text, bad
    said = await h.member("alice").says("/radar silence 21d")
    assert said is not None and "is now 21 days" in said.text
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "carol" not in reply.text and "silence 21d" in reply.text
    shown = await h.member("alice").says("/radar silence")
    assert shown is not None and shown.text.startswith("Radar threshold silence: 21 days")
    await h.member("alice").says("/radar silence default")
    assert "carol" in ((await h.member("alice").says("/radar")) or h).text  # type: ignore[union-attr]


async def test_a_private_member_is_never_named(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.member("carol").says("/members private on")
    h.clock.advance(15 * DAY)
    await busy_week(h, "alice", "bob")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "carol" not in reply.text


async def test_one_member_steering_everything_is_concentration(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol", "dave")
    alice = h.member("alice")
    for i in range(4):
        await alice.says(f"/goal propose Step {i}")
    await alice.says("/phase set organizing")
    await h.member("bob").says("/goal propose Mine")
    await busy_week(h, "carol", "dave")
    reply = await alice.says("/radar")
    assert reply is not None
    assert "alice made 5 of the group's 6 proposals, closings and phase moves in 30 days" in reply.text
    assert "rotate-roles" in reply.text


async def test_concentration_needs_enough_acts_and_active_members(h: Harness) -> None:
    await h.regulars("alice", "bob")
    for i in range(5):
        await h.member("alice").says(f"/goal propose Step {i}")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "made" not in reply.text  # only two active members


async def test_stasis_and_a_block_are_told_to_the_group_gently_without_names(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.engine.tick()
    await h.member("bob").says("/goal propose Read the whole book")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "⛔")
    for _ in range(5):
        await busy_week(h, "alice", "bob", "carol")
        await until(h, h.clock.now() + WEEK)
    channel = in_channel(h)
    assert "Goal 1 has been blocked for" in channel
    assert "(/patterns reshape-and-return)" in channel
    assert "since a goal was done or the group changed phase" in channel
    gentle = next(s.text for s in h.chat.sent if s.text.startswith("A gentle look"))
    for name in ("alice", "bob", "carol"):
        assert name not in gentle


async def test_a_reshaped_block_is_no_finding(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.member("bob").says("/goal propose Read the whole book")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "⛔")
    await h.member("alice").says("/poll close 1")
    await h.member("bob").says("/goal propose Read the first three chapters")
    h.clock.advance(8 * DAY)
    await busy_week(h, "alice", "bob", "carol")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "blocked" not in reply.text


async def test_a_block_amended_by_another_member_is_no_finding(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.member("bob").says("/goal propose Read the whole book")
    await h.member("carol").reacts(h.chat.sent[-1].ref, "⛔")
    await h.member("alice").says("/poll close 1")
    h.clock.advance(DAY)
    await h.member("carol").says("/goal amend 1 Read the first three chapters")
    h.clock.advance(8 * DAY)
    await busy_week(h, "alice", "bob", "carol")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "blocked" not in reply.text


async def test_concerns_nobody_followed_up_and_a_follow_up(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.member("bob").says("/goal propose Pair every week")
    poll = h.chat.sent[-1].ref
    await h.member("alice").reacts(poll, "✅")
    await h.member("bob").reacts(poll, "✅")
    await h.member("carol").reacts(poll, "🤔")
    await h.member("alice").says("/poll close 1")
    h.clock.advance(8 * DAY)
    await busy_week(h, "alice", "bob", "carol")
    reply = await h.member("alice").says("/radar")
    assert (
        reply is not None and "was accepted with 1 🤔, and nobody has followed the concerns up" in reply.text
    )
    await h.member("bob").says("/reflect About goal 1: carol worried about evenings; we pair at lunch.")
    reply = await h.member("alice").says("/radar")
    assert reply is not None and "🤔" not in reply.text


async def test_auto_radar_off_stops_the_weekly_radar_and_on_plans_it_anew(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.engine.tick()
    await h.member("alice").says("/auto radar off")
    for _ in range(3):
        await busy_week(h, "alice", "bob")
        await until(h, h.clock.now() + WEEK)
    assert to(h, "alice") == []
    shown = await h.member("alice").says("/auto")
    assert shown is not None and "weekly radar off" in shown.text
    await h.member("alice").says("/auto radar on")
    await busy_week(h, "alice", "bob")
    await until(h, h.clock.now() + WEEK)
    assert any("carol has done nothing" in t for t in to(h, "alice"))


async def test_forget_me_takes_a_member_out_of_the_radar_record(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await h.engine.tick()
    for _ in range(2):
        await busy_week(h, "alice", "bob")
        await until(h, h.clock.now() + WEEK)
    assert any(f[2] == "fake:carol" for f in h.store.data.findings)
    await h.member("carol").says("/forget-me confirm")
    assert not any(f[2] == "fake:carol" for f in h.store.data.findings)


async def test_phase_advice_at_most_once_a_week(h: Harness) -> None:
    await h.regulars("alice")
    for name in ("bob", "carol"):
        await h.member(name).says(f"/join I am {name}")
    third = await h.member("dave").says("/join Here to learn")
    assert third is not None and "The group may be ready for Organizing" in third.text
    await h.member("alice").says("/phase set organizing")
    await h.member("bob").says("/goal propose Learn Rust")
    poll = h.chat.sent[-1].ref
    for name in ("bob", "carol"):
        await h.member(name).reacts(poll, "✅")
    await h.member("alice").says("/poll close 1")
    decision = h.chat.sent[-1].text
    assert "accepted" in decision and "Suggestion" not in decision  # a suggestion came this week
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
    assert group is not None and group.phase is Phase.ORGANIZING  # advice moves nothing


def test_the_catalogue_has_about_a_dozen_named_patterns_and_each_finding_names_one() -> None:
    names = [p.name for p in CATALOGUE]
    assert 10 <= len(names) <= 16 and len(set(names)) == len(names)
    assert all(NAME.fullmatch(n) for n in names)
    assert set(PATTERN_OF.values()) <= set(names)


async def test_patterns_lists_and_shows_one_and_refuses_an_unknown_name(h: Harness) -> None:
    listing = await h.member("bob").says("/patterns")
    assert listing is not None and "start-small:" in listing.text and "Anti-patterns" in listing.text
    assert len(listing.text) <= 2000
    one = await h.member("bob").says("/patterns START-SMALL")
    assert one is not None and one.text.startswith("Pattern: start-small\nThe problem:")
    assert "Helps: /goal propose" in one.text
    for bad in ("nope", "<script>", "x" * 60):
        reply = await h.member("bob").says(f"/patterns {bad}")
        assert reply is not None and reply.is_error and "/patterns lists them all" in reply.text
        assert "<script>" not in reply.text


async def test_two_processes_run_a_groups_weekly_radar_once(db_url: str) -> None:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        one, two = Harness(store=store), Harness(store=store)
        await one.regulars("alice", "bob", "carol")
        await one.engine.tick()  # plans it
        async with store.transaction() as tx:
            group = await tx.groups.get(one.channel)
        assert group is not None and group.radar_next_at is not None
        for h in (one, two):
            h.clock.current = group.radar_next_at + 15 * DAY  # carol silent long enough
        await busy_week(one, "alice", "bob")
        await asyncio.gather(one.engine.tick(), two.engine.tick())
        await asyncio.gather(one.engine.settle(), two.engine.settle())
        told = [t for h in (one, two) for t in to(h, "alice") if "carol has done nothing" in t]
        assert len(told) == 1
        async with store.transaction() as tx:
            later = await tx.groups.get(one.channel)
        assert later is not None and later.radar_next_at is not None
        assert later.radar_next_at > one.clock.now()  # next Monday, 9:00 UTC
        assert later.radar_next_at.weekday() == 0 and later.radar_next_at.hour == 9
    finally:
        await store.close()
