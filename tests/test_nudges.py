"""Nudges through the engine with an injected clock, on in-memory fakes."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.lifecycle import Phase
from core.outbox import LEASE
from core.prompts import PROMPT_BANK
from core.refs import MessageRef
from tests.support import START, Harness


def nudges(h: Harness) -> list[str]:
    return [s.text for s in h.chat.sent if s.text.startswith("🔔")]


async def run_for(h: Harness, delta: timedelta) -> None:
    await h.engine.run_until(h.clock.now() + delta, lambda t: setattr(h.clock, "current", t))


async def test_adding_a_nudge_is_for_facilitators_and_shows_the_next_local_time(harness: Harness) -> None:
    refused = await harness.member("bob").says("/nudge add daily 18:00 Hello")
    assert refused is not None and refused.is_error
    await harness.member("alice").says("/timezone Europe/Berlin")
    reply = await harness.member("alice").says("/nudge add weekly mon,thu 18:30 What did you learn?")
    assert reply is not None and not reply.is_error
    assert reply.text.splitlines() == [
        "Nudge 1 added: weekly mon,thu 18:30 (Europe/Berlin), posting “What did you learn?”.",
        "Next: Mon 2026-03-02 18:30 CET.",
    ]
    listing = await harness.member("bob").says("/nudge list")
    assert listing is not None
    assert (
        "Nudge 1: weekly mon,thu 18:30, next Mon 2026-03-02 18:30 CET: “What did you learn?”" in listing.text
    )


async def test_a_nudge_is_posted_at_its_time_and_never_twice(harness: Harness) -> None:
    await harness.member("alice").says("/nudge add daily 18:00 Stretch and share one thing")
    await run_for(harness, timedelta(hours=8, minutes=59))
    assert nudges(harness) == []
    await run_for(harness, timedelta(minutes=1))
    assert nudges(harness) == ["🔔 Nudge 1: Stretch and share one thing"]
    await harness.engine.tick()
    await harness.engine.tick()
    await run_for(harness, timedelta(days=2))  # two more days: two more nudges
    assert len(nudges(harness)) == 3


async def test_without_text_the_prompt_bank_rotates_without_repeats(harness: Harness) -> None:
    await harness.member("alice").says("/auto checkin off")
    await harness.member("alice").says("/phase set cooperating")
    await harness.member("alice").says("/nudge add daily 10:00")
    bank = PROMPT_BANK[Phase.COOPERATING]
    await run_for(harness, timedelta(days=len(bank) * 2))
    prompts = [t.split(": ", 1)[1].split("\n")[0] for t in nudges(harness)]
    assert len(prompts) == 2 * len(bank)
    first_round, second_round = prompts[: len(bank)], prompts[len(bank) :]
    assert sorted(first_round) == sorted(bank) and sorted(second_round) == sorted(bank)


async def test_pause_resume_and_remove(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/nudge add daily 12:00 Lunch thought")
    await alice.says("/nudge pause 1")
    await run_for(harness, timedelta(days=2))
    assert nudges(harness) == []
    reply = await alice.says("/nudge resume 1")
    assert reply is not None and reply.text == "Nudge 1 resumed. Next: Wed 2026-03-04 12:00 UTC."
    await run_for(harness, timedelta(days=1))
    assert len(nudges(harness)) == 1  # the paused days are not owed
    await alice.says("/nudge remove 1")
    await run_for(harness, timedelta(days=3))
    assert len(nudges(harness)) == 1
    missing = await alice.says("/nudge pause 1")
    assert missing is not None and missing.is_error and "There is no nudge 1" in missing.text


async def test_quiet_hours_hold_a_nudge_until_they_end(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/quiet-hours 22:00-08:00")
    await alice.says("/nudge add daily 23:00 Night owl question")
    await run_for(harness, timedelta(hours=22, minutes=59))  # until 07:59 next day
    assert nudges(harness) == []
    await run_for(harness, timedelta(minutes=1))
    assert nudges(harness) == ["🔔 Nudge 1: Night owl question"]
    assert harness.clock.now() == datetime.fromisoformat("2026-03-03T08:00:00+00:00")


async def test_changing_the_timezone_keeps_local_times(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/nudge add daily 18:00 Evening")
    await alice.says("/timezone America/New_York")
    listing = await alice.says("/nudge list")
    assert listing is not None and "next Mon 2026-03-02 18:00 EST" in listing.text
    bad = await alice.says("/timezone Mars/Olympus")
    assert bad is not None and bad.is_error and "not an IANA timezone" in bad.text


async def test_misfire_policy_late_once_within_grace_skipped_after(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/nudge add daily 10:00 Morning")
    harness.clock.advance(timedelta(hours=1, minutes=30))  # the bot was down over 10:00, back 10:30
    await harness.engine.tick()
    assert nudges(harness) == ["🔔 Nudge 1: Morning"]
    harness.clock.advance(timedelta(days=1, hours=2))  # down over the next 10:00, back at 12:30
    await harness.engine.tick()
    assert len(nudges(harness)) == 1  # too late: skipped, not posted
    harness.clock.advance(timedelta(days=1))
    await harness.engine.tick()  # 12:30 the day after: skipped again, and nothing piles up
    await run_for(harness, timedelta(days=1))
    assert len(nudges(harness)) == 2


async def test_several_missed_occurrences_coalesce_into_one(harness: Harness) -> None:
    await harness.member("alice").says("/nudge add */10 * * * * Ten minutes")
    harness.clock.advance(timedelta(minutes=45))
    await harness.engine.tick()
    assert nudges(harness) == ["🔔 Nudge 1: Ten minutes"]


async def test_entering_cooperating_adds_a_weekly_check_in_once(harness: Harness) -> None:
    alice = harness.member("alice")
    reply = await alice.says("/phase set cooperating")
    assert reply is not None and "A weekly check-in is scheduled (weekly mon 18:00, UTC)" in reply.text
    await alice.says("/phase set assessing")
    await alice.says("/phase set cooperating")
    listing = await alice.says("/nudge list")
    assert listing is not None and listing.text.count("Check-in") == 1
    await run_for(harness, timedelta(hours=9))
    assert nudges(harness)[0].startswith("🔔 Weekly check-in: ")


async def test_the_automatic_check_in_can_be_switched_off(harness: Harness) -> None:
    alice = harness.member("alice")
    refused = await harness.member("bob").says("/auto checkin off")
    assert refused is not None and refused.is_error
    await alice.says("/auto checkin off")
    reply = await alice.says("/phase set cooperating")
    assert reply is not None and "check-in" not in reply.text


async def test_a_silent_group_gets_one_heartbeat(harness: Harness) -> None:
    await harness.member("bob").says("/status")
    await run_for(harness, timedelta(days=6, hours=23))
    assert not [s for s in harness.chat.sent if "quiet here" in s.text]
    await run_for(harness, timedelta(days=3))
    beats = [s for s in harness.chat.sent if "quiet here" in s.text]
    assert len(beats) == 1 and beats[0].text.startswith("It has been quiet here for 7 days.")
    harness.clock.advance(timedelta(minutes=5))
    await harness.member("bob").says("/status")  # activity, then silence again: one more
    await run_for(harness, timedelta(days=8))
    assert len([s for s in harness.chat.sent if "quiet here" in s.text]) == 2


async def test_the_clock_stops_at_a_heartbeat_instead_of_posting_it_late(harness: Harness) -> None:
    await harness.member("bob").says("/status")
    await run_for(harness, timedelta(days=10))
    async with harness.store.transaction() as tx:
        group = await tx.groups.get(harness.channel)
    assert group is not None and group.heartbeat_sent_at == START + timedelta(days=7)


async def test_a_reaction_in_the_channel_counts_as_activity(harness: Harness) -> None:
    await harness.member("bob").says("/status")
    harness.clock.advance(timedelta(days=5))
    await harness.member("carol").reacts(MessageRef(harness.channel, "not-a-poll"), "👍")
    await run_for(harness, timedelta(days=6, hours=23))  # a week after /status: not silent
    assert not [s for s in harness.chat.sent if "quiet here" in s.text]
    await run_for(harness, timedelta(hours=2))  # a week after the reaction
    assert len([s for s in harness.chat.sent if "quiet here" in s.text]) == 1


async def test_reactions_keep_counting_as_activity_after_the_first_in_a_while(harness: Harness) -> None:
    """A burst of votes looks the group up once; reactions later on are noted again."""
    carol = harness.member("carol")
    await harness.member("bob").says("/status")
    elsewhere = MessageRef(harness.channel, "not-a-poll")
    await carol.reacts(elsewhere, "👍")
    for minutes in (5, 30, 24 * 60):  # within the activity resolution, past it, a day on
        harness.clock.advance(timedelta(minutes=minutes))
        await carol.reacts(elsewhere, "👍")
        async with harness.store.transaction() as tx:
            group = await tx.groups.get(harness.channel)
        assert group is not None and group.last_activity_at is not None
        assert harness.clock.now() - group.last_activity_at < timedelta(minutes=10), minutes


async def test_the_weekly_digest(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/auto digest on")
    await alice.says("/nudge add daily 20:00 Evening")
    await alice.says("/reflect I learned about lifetimes")
    await run_for(harness, timedelta(days=7))
    digests = [s.text for s in harness.chat.sent if s.text.startswith("📬")]
    assert len(digests) == 1
    assert digests[0].splitlines()[0] == "📬 Weekly digest — phase Convening."
    assert "Reflections this week: 1 from 1 people." in digests[0]
    assert "Coming up: daily 20:00 (Mon 2026-03-09 20:00 UTC)." in digests[0]


async def test_the_check_in_of_cooperating_ends_when_the_group_leaves_cooperating(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/phase set cooperating")
    reply = await alice.says("/phase set changing")
    assert reply is not None and "Check-in 1 (weekly mon 18:00) ended with Cooperating." in reply.text
    listing = await alice.says("/nudge list")
    assert listing is not None and "Check-in" not in listing.text
    await run_for(harness, timedelta(days=8))  # past two Mondays 18:00
    assert nudges(harness) == []


async def test_a_due_nudge_is_queued_before_its_next_time_is_computed(harness: Harness) -> None:
    """Deliver first, plan later: between the due time and the post there is no cron maths; the next
    occurrence is planned once the tick's posts are out."""
    await harness.member("alice").says("/nudge add daily 10:00 Morning question")
    maths: list[str] = []
    real = harness.engine.nudges.recurrence

    class Watched:
        def check(self, cron: str) -> None:
            real.check(cron)

        def next_after(self, cron: str, tz: str, after: datetime) -> datetime | None:
            maths.append(f"{len(nudges(harness))} sent")
            return real.next_after(cron, tz, after)

    harness.engine.nudges.recurrence = Watched()
    harness.clock.advance(timedelta(hours=1))  # 10:00: due
    await harness.engine.nudges.deliver_due(harness.clock.now())
    assert maths == []  # queued with no next occurrence computed
    async with harness.store.transaction() as tx:
        (waiting,) = await tx.schedules.to_plan(10, ["fake"])
    assert waiting.next_occurrence == START + timedelta(hours=1)
    await harness.engine.tick()
    assert nudges(harness) == ["🔔 Nudge 1: Morning question"]
    assert maths == ["1 sent"]  # planned once, after the post
    listing = await harness.member("bob").says("/nudge list")
    assert listing is not None and "next Tue 2026-03-03 10:00 UTC" in listing.text


async def test_what_came_due_before_a_late_plan_is_delivered_in_its_turn(harness: Harness) -> None:
    """A process delivered and died before planning: the next tick (here or in another process) plans
    from when the delivery was made, so an occurrence that came due since is delivered, not folded in."""
    await harness.member("alice").says("/nudge add */10 * * * * Ten minutes")
    harness.clock.advance(timedelta(minutes=10))  # 09:10
    await harness.engine.nudges.deliver_due(harness.clock.now())  # and no plan: it died
    harness.clock.advance(timedelta(minutes=15))  # 09:25: planned now, from 09:10
    await harness.engine.tick()
    await harness.engine.tick()  # 09:20 came due after the delivery: posted, five minutes late
    assert nudges(harness) == ["🔔 Nudge 1: Ten minutes"] * 2
    harness.clock.advance(timedelta(minutes=5))  # 09:30
    await harness.engine.tick()
    assert len(nudges(harness)) == 3


async def prepared(h: Harness) -> list[str]:
    """The nudges waiting in the outbox, unsent."""
    async with h.store.transaction() as tx:
        return [r.post.text for r in await tx.outbox.rows() if r.post.schedule_id is not None]


async def test_a_nudge_due_within_a_minute_is_prepared_and_posted_when_due_once(harness: Harness) -> None:
    """Prepared ahead: the claim, the delivery record and the post are written up to a minute before,
    so that at the due time only the sending is left."""
    await harness.member("alice").says("/nudge add daily 10:00 Morning question")
    harness.clock.advance(timedelta(minutes=58, seconds=59))  # 09:58:59: not within a minute yet
    await harness.engine.tick()
    assert await prepared(harness) == []
    harness.clock.advance(timedelta(seconds=31))  # 09:59:30
    await harness.engine.tick()
    assert nudges(harness) == [] and await prepared(harness) == ["🔔 Nudge 1: Morning question"]
    assert harness.engine.dispatcher.held_ahead == 1
    listing = await harness.member("bob").says("/nudge list")  # the prepared one is still the next
    assert listing is not None and "next Mon 2026-03-02 10:00 UTC" in listing.text
    harness.clock.advance(timedelta(seconds=29))  # 09:59:59
    await harness.engine.tick()
    assert nudges(harness) == []
    harness.clock.advance(timedelta(seconds=1))  # 10:00
    await harness.engine.tick()
    await harness.engine.settle()
    assert nudges(harness) == ["🔔 Nudge 1: Morning question"] and await prepared(harness) == []
    for _ in range(3):
        harness.clock.advance(timedelta(seconds=20))
        await harness.engine.tick()
    await run_for(harness, timedelta(days=1))
    assert nudges(harness) == ["🔔 Nudge 1: Morning question"] * 2
    listing = await harness.member("bob").says("/nudge list")
    assert listing is not None and "next Wed 2026-03-04 10:00 UTC" in listing.text


async def test_a_prepared_nudge_is_withdrawn_when_paused_or_removed(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/nudge add daily 10:00 First")
    await alice.says("/nudge add daily 10:00 Second")
    harness.clock.advance(timedelta(minutes=59, seconds=30))
    await harness.engine.tick()
    assert sorted(await prepared(harness)) == ["🔔 Nudge 1: First", "🔔 Nudge 2: Second"]
    await alice.says("/nudge pause 1")
    await alice.says("/nudge remove 2")
    assert await prepared(harness) == []
    await run_for(harness, timedelta(minutes=5))
    assert nudges(harness) == []
    reply = await alice.says("/nudge resume 1")
    assert reply is not None and "Next: Tue 2026-03-03 10:00 UTC" in reply.text
    await run_for(harness, timedelta(days=1))
    assert nudges(harness) == ["🔔 Nudge 1: First"]


async def test_a_prepared_nudge_moved_by_a_timezone_change_is_posted_once_at_the_new_time(
    harness: Harness,
) -> None:
    alice = harness.member("alice")
    await alice.says("/nudge add daily 10:00 Morning")
    harness.clock.advance(timedelta(minutes=59, seconds=30))  # 09:59:30 UTC
    await harness.engine.tick()
    await alice.says("/timezone America/New_York")  # 10:00 there is 15:00 UTC
    await run_for(harness, timedelta(hours=5, seconds=29))  # 14:59:59 UTC
    assert nudges(harness) == []
    await run_for(harness, timedelta(seconds=1))
    assert nudges(harness) == ["🔔 Nudge 1: Morning"]
    await run_for(harness, timedelta(hours=12))
    assert nudges(harness) == ["🔔 Nudge 1: Morning"]


async def test_a_digest_is_not_prepared_ahead(harness: Harness) -> None:
    """At the week's turn the wrapper's draft decides where the digest goes: it is made when due."""
    await harness.member("alice").says("/auto digest on")  # weekly mon 09:00
    harness.clock.advance(timedelta(days=6, hours=23, minutes=59, seconds=30))  # next Mon 08:59:30
    await harness.engine.tick()
    assert await prepared(harness) == []
    await run_for(harness, timedelta(seconds=30))
    assert [s.text.splitlines()[0] for s in harness.chat.sent if "digest" in s.text.lower()][-1:] != []


async def test_the_leases_of_prepared_nudges_are_kept_by_the_ticks(harness: Harness) -> None:
    """Held in memory until due, a prepared post stays leased to its process while it ticks, even after
    a tick that took longer than a third of a lease; what another process withdrew meanwhile is let go."""
    alice = harness.member("alice")
    await alice.says("/nudge add daily 10:00 First")
    await alice.says("/nudge add daily 10:00 Second")
    dispatcher = harness.engine.dispatcher
    wall = dispatcher.wall
    walked = timedelta()
    dispatcher.wall = lambda: wall() + walked

    def leases() -> dict[str, datetime | None]:
        rows = harness.store.data.outbox.values()
        return {r.row.post.text: r.lease_until for r in rows if r.row.post.schedule_id is not None}

    real_plan = harness.engine.nudges.plan_delivered

    async def slow_plan(now: datetime) -> int:  # the tick's planning takes 15 s of wall-clock time
        nonlocal walked
        walked += timedelta(seconds=15)
        return await real_plan(now)

    harness.engine.nudges.plan_delivered = slow_plan  # type: ignore[method-assign]
    harness.clock.advance(timedelta(minutes=59))  # 09:59
    await harness.engine.tick()
    after_tick = wall() + walked
    assert all(
        until is not None and until >= after_tick + LEASE - timedelta(seconds=1)
        for until in leases().values()
    )
    async with harness.store.transaction() as tx:  # another process's /nudge pause 2
        assert await tx.outbox.withdraw([2], harness.clock.now()) == 1
    walked += timedelta(seconds=11)
    harness.clock.advance(timedelta(seconds=11))
    await harness.engine.tick()
    assert dispatcher.held_ahead == 1 and list(leases()) == ["🔔 Nudge 1: First"]
    await run_for(harness, timedelta(minutes=1))
    assert nudges(harness) == ["🔔 Nudge 1: First"]
