"""Meetings: `meet add` announces a day before with RSVP reactions and a thread, reminds an hour before
(outside quiet hours, never for a cancelled or skipped day), counts RSVPs once each, and keeps
attendance; `meet from poll`, `meet propose` and `cadence propose` let the group choose the time.

Each test runs on the in-memory store and on the SQL store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.recurrence import CronRecurrence
from core.engine import Engine
from core.lifecycle import QuietHours
from core.meetings import (
    COMING,
    MAYBE,
    NOT_COMING,
    Occurrence,
    plan,
    read_when,
    reminder_time,
    step,
)
from core.refs import MessageRef
from tests.conftest import EmptyDatabase, migrated_store
from tests.support import START, Harness, ok, refused

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def h(request: pytest.FixtureRequest, empty_database: EmptyDatabase) -> AsyncIterator[Harness]:
    if request.param == "memory":
        harness = Harness()
        harness.chat.threads = True
        yield harness
        return
    async with empty_database(request.param) as url, migrated_store(url) as store:
        harness = Harness(store=store)
        harness.chat.threads = True
        yield harness


async def until(h: Harness, when: datetime) -> None:
    await h.engine.run_until(when, lambda t: setattr(h.clock, "current", t))
    await h.engine.settle()


def texts(h: Harness, since: int = 0) -> list[str]:
    return [s.text for s in h.chat.sent[since:]]


def announcement(h: Harness) -> MessageRef:
    found = [s for s in h.chat.sent if s.text.startswith("📅")]
    assert found, texts(h)
    return found[-1].ref


# START is Monday 2026-03-02 09:00 UTC; the group is on UTC unless a test says otherwise.
THU = datetime(2026, 3, 5, 18, 0, tzinfo=UTC)


async def test_a_meeting_is_announced_with_rsvp_reactions_and_a_thread_then_reminded(h: Harness) -> None:
    answer = await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    assert "Meeting 1 added: Reading circle, weekly thu 18:00 (UTC)" in answer
    assert "Next: 2026-03-05 18:00 UTC" in answer
    await until(h, THU - DAY - timedelta(minutes=1))
    assert not [t for t in texts(h) if t.startswith("📅")]
    await until(h, THU - DAY)
    root = announcement(h)
    assert "Meeting 1: Reading circle, 2026-03-05 18:00 UTC" in h.chat.sent[-2].text
    assert [e for m, e in h.chat.reactions if m == root] == [COMING, MAYBE, NOT_COMING]
    assert h.chat.started[root] == "Reading circle 2026-03-05"
    assert h.chat.sent[-1].thread == root
    before = len(h.chat.sent)
    await until(h, THU - HOUR - timedelta(minutes=1))
    assert len(h.chat.sent) == before
    await until(h, THU - HOUR)
    assert texts(h, before) == ["⏰ Meeting 1: Reading circle starts at 18:00 UTC. RSVPs: ✅ 0, ❔ 0, ❌ 0."]
    # The next week's comes round again, once each.
    await until(h, THU + 7 * DAY)
    posted = texts(h)
    assert sum(t.startswith("📅") for t in posted) == 2
    assert sum(t.startswith("⏰") for t in posted) == 2


async def test_rsvps_count_a_members_latest_choice_once(h: Harness) -> None:
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await until(h, THU - DAY)
    root = announcement(h)
    await h.member("bob").reacts(root, COMING, event_id="r1")
    await h.member("bob").reacts(root, COMING, event_id="r1")  # a replay (RESUME): counted once
    await h.member("carol").reacts(root, MAYBE)
    await h.member("carol").reacts(root, NOT_COMING)  # her latest choice counts
    await h.member("carol").unreacts(root, MAYBE)  # taking back an old choice changes nothing
    await h.member("dave").reacts(root, COMING)
    await h.member("dave").unreacts(root, COMING)  # taken back: no RSVP
    await h.member("erin").reacts(root, "👍")  # not an RSVP
    await h.member("frank").reacts(root, "✅\ufe0f")  # the same emoji with a variation selector
    assert "RSVPs ✅ 2, ❔ 0, ❌ 1" in await ok(h, "bob", "/meet list")
    await until(h, THU - HOUR)
    assert texts(h)[-1].endswith("RSVPs: ✅ 2, ❔ 0, ❌ 1.")
    await until(h, THU + HOUR)
    await h.member("gus").reacts(root, COMING)  # after the start: no longer counted
    listed = await ok(h, "bob", "/meet list")
    assert "Last meetings:\n- 2026-03-05 18:00 UTC Reading circle: ✅ 2, ❔ 0, ❌ 1" in listed


async def test_meet_list_shows_the_last_four_meetings_and_the_digest_the_weeks(h: Harness) -> None:
    await ok(h, "alice", "/auto digest on")  # Mondays 09:00
    await ok(h, "alice", "/meet add daily 18:00 | Stand-up")
    for day in range(6):
        start = datetime(2026, 3, 2, 18, 0, tzinfo=UTC) + day * DAY
        await until(h, start - HOUR)
        await h.member("bob").reacts(announcement(h), COMING)
        if day % 2:
            await h.member("carol").reacts(announcement(h), COMING)
    await until(h, datetime(2026, 3, 8, 19, 0, tzinfo=UTC))
    listed = await ok(h, "bob", "/meet list")
    past = listed.split("Last meetings:\n")[1].splitlines()
    assert past == [
        "- 2026-03-08 18:00 UTC Stand-up: ✅ 0, ❔ 0, ❌ 0",
        "- 2026-03-07 18:00 UTC Stand-up: ✅ 2, ❔ 0, ❌ 0",
        "- 2026-03-06 18:00 UTC Stand-up: ✅ 1, ❔ 0, ❌ 0",
        "- 2026-03-05 18:00 UTC Stand-up: ✅ 2, ❔ 0, ❌ 0",
    ]
    await until(h, datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    digest = [t for t in texts(h) if t.startswith("📬")][-1]
    assert "Meetings this week: Stand-up 2026-03-02 18:00 UTC (✅ 1, ❔ 0, ❌ 0);" in digest
    assert "Stand-up 2026-03-08 18:00 UTC (✅ 0, ❔ 0, ❌ 0)." in digest


async def test_a_cancelled_meeting_is_never_reminded_even_after_its_announcement(h: Harness) -> None:
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await until(h, THU - DAY)
    assert announcement(h)
    assert "cancelled" in await ok(h, "alice", "/meet cancel 1")
    await until(h, THU + 14 * DAY)
    assert not [t for t in texts(h) if t.startswith("⏰")]
    assert sum(t.startswith("📅") for t in texts(h)) == 1
    assert "No meetings ahead." in await ok(h, "bob", "/meet list")
    assert "is cancelled" in await refused(h, "alice", "/meet cancel 1")


async def test_a_skipped_day_gets_no_announcement_or_reminder_and_the_next_goes_on(h: Harness) -> None:
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await ok(h, "alice", "/meet skip 1 2026-03-12")  # a day not planned yet
    await until(h, THU - DAY)  # the first is announced ...
    assert "2026-03-05" in h.chat.sent[-2].text
    answer = await ok(h, "alice", "/meet skip 1 2026-03-05")  # ... then skipped before its reminder
    assert "skipped: no reminder" in answer
    listed = await ok(h, "bob", "/meet list")
    assert "next 2026-03-19 18:00 UTC, skipping 2026-03-05, 2026-03-12" in listed
    await until(h, THU + 7 * DAY + HOUR)
    assert not [t for t in texts(h) if t.startswith("⏰")]
    await until(h, THU + 14 * DAY)
    announced = [t for t in texts(h) if t.startswith("📅")]
    assert [a.split(", ")[1][:10] for a in announced] == ["2026-03-05", "2026-03-19"]
    assert len([t for t in texts(h) if t.startswith("⏰")]) == 1


async def test_a_reminder_in_quiet_hours_waits_for_their_end_or_is_dropped(h: Harness) -> None:
    await ok(h, "alice", "/quiet-hours 06:00-08:30")
    await ok(h, "alice", "/meet add 2026-03-03 09:00 | Early")  # reminder 08:00: posted at 08:30
    await ok(h, "alice", "/meet add 2026-03-04 08:15 | Too early")  # reminder 07:15: quiet until after it
    await until(h, datetime(2026, 3, 3, 8, 29, tzinfo=UTC))
    assert not [t for t in texts(h) if t.startswith("⏰")]
    await until(h, datetime(2026, 3, 3, 8, 30, tzinfo=UTC))
    assert [t for t in texts(h) if t.startswith("⏰")] == [
        "⏰ Meeting 1: Early starts at 09:00 UTC. RSVPs: ✅ 0, ❔ 0, ❌ 0."
    ]
    await until(h, datetime(2026, 3, 5, 0, 0, tzinfo=UTC))
    assert [t for t in texts(h) if t.startswith("⏰")] == [
        "⏰ Meeting 1: Early starts at 09:00 UTC. RSVPs: ✅ 0, ❔ 0, ❌ 0."
    ]
    assert sum(t.startswith("📅 Meeting 2") for t in texts(h)) == 1  # announced all the same


async def test_bad_input_gets_a_clear_error_and_changes_nothing(h: Harness) -> None:
    await h.regulars("bob")
    cases = {
        "/meet add": "Missing when",
        "/meet add sometime soon": "Cannot read that schedule",
        "/meet add weekly thu 25:00": "not a time like 18:00",
        "/meet add 2026-02-30 18:00": "not a date of the calendar",
        "/meet add 2026-03-01 18:00": "has passed",
        "/meet add 2026-03-10": "needs a date and a time",
        "/meet add weekly thu 18:00 Reading": "A title follows a |",
        "/meet add weekly thu 18:00 | " + "x" * 101: "title is too long",
        "/meet add 0 0 31 2 *": "never comes",
        "/meet cancel 9": "no meeting 9",
        "/meet cancel x": "number",
        "/meet skip 9 2026-03-12": "no meeting 9",
        "/meet from poll 9": "no poll 9",
        "/meet propose tomorrow": "is not a meeting time",
        "/meet propose weekly thu 18:00 | weekly thu 18:00": "one time twice",
        "/meet list now": "Unexpected extra words",
        "/meet propose": "Give 1 to 5 times (got 0)",
        "/meet from poll": "Missing id",
        "/cadence propose": "Missing change",
        "/cadence propose weekly fri 18:00": "0 recurring meetings",
        "/cadence propose meet x weekly fri 18:00": "its number",
        "/cadence propose nudge 4 weekly fri 18:00": "no nudge 4",
    }
    for line, why in cases.items():
        assert why in await refused(h, "alice", line), line
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    more = {
        "/meet skip 1 2026-03-06": "does not meet on 2026-03-06",
        "/meet skip 1 2026-13-01": "not a date of the calendar",
        "/meet skip 1 someday": "not a date like",
        "/cadence propose meet 1 now": "Cannot read that schedule",
        "/cadence propose meet 2 weekly fri 18:00": "no meeting 2",
    }
    for line, why in more.items():
        assert why in await refused(h, "alice", line), line
    for line in (
        "/meet add weekly fri 18:00",
        "/meet cancel 1",
        "/meet skip 1 2026-03-05",
        "/meet from poll 1",
    ):
        assert "facilitators" in await refused(h, "bob", line), line
    listed = await ok(h, "bob", "/meet list")
    assert listed.splitlines() == [
        "Meetings:",
        "1. Reading circle: weekly thu 18:00 (UTC); next 2026-03-05 18:00 UTC",
    ]


async def test_meet_from_poll_takes_the_winning_time(h: Harness) -> None:
    await h.regulars("bob", "carol")
    await ok(h, "bob", "/poll create When do we read? | weekly thu 18:00 | weekly sun 17:00 | someday")
    poll = h.chat.sent[-1].ref
    await h.member("bob").reacts(poll, "2️⃣")
    assert "someday" in await refused(h, "alice", "/meet from poll 1")
    await ok(h, "bob", "/poll create When? | weekly thu 18:00 | 2026-03-10 19:00")
    second = h.chat.sent[-1].ref
    assert "no single option" in await refused(h, "alice", "/meet from poll 2")
    await h.member("bob").reacts(second, "2️⃣")
    await h.member("carol").reacts(second, "2️⃣")
    answer = await ok(h, "alice", "/meet from poll 2 Reading circle")
    assert answer == "Meeting 1 added from poll 2: Reading circle, 2026-03-10 19:00 UTC."


async def test_meet_propose_by_consent_and_by_poll(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    answer = await ok(h, "bob", "/meet propose weekly thu 18:00")
    assert answer.startswith("Consent round on poll 1: ✅ agree, 🤔 concerns, ⛔ block.")
    consent = h.chat.sent[-1].ref
    await h.member("bob").reacts(consent, "✅")
    await h.member("carol").reacts(consent, "✅")
    await ok(h, "carol", "/meet propose weekly mon 18:00 | weekly tue 19:00")
    choice = h.chat.sent[-1].ref
    await h.member("bob").reacts(choice, "2️⃣")
    await ok(h, "bob", "/meet propose weekly fri 18:00")
    blocked = h.chat.sent[-1].ref
    await h.member("carol").reacts(blocked, "⛔")
    await until(h, START + 49 * HOUR)
    posted = texts(h)
    assert "The group chose weekly thu 18:00: meeting 1 added (weekly thu 18:00 (UTC))." in posted
    assert "The group chose weekly tue 19:00: meeting 2 added (weekly tue 19:00 (UTC))." in posted
    assert any(t.startswith("Poll 3: not accepted") for t in posted)
    listed = await ok(h, "bob", "/meet list")
    assert "1. Meeting: weekly thu 18:00" in listed and "2. Meeting: weekly tue 19:00" in listed
    assert "3." not in listed


async def test_cadence_changes_by_consent_for_the_one_recurring_meeting_and_for_a_nudge(h: Harness) -> None:
    await h.regulars("alice", "bob", "carol")
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await ok(h, "alice", "/meet add 2026-03-20 10:00 | Kick-off")  # one-off: not a cadence
    await ok(h, "alice", "/nudge add weekly fri 17:00 What did you learn?")
    await ok(h, "bob", "/cadence propose weekly wed 19:30")
    first = h.chat.sent[-1].ref
    assert "Change meeting 1 (Reading circle) to weekly wed 19:30 (UTC)?" in h.chat.sent[-1].text
    await ok(h, "bob", "/cadence propose nudge 1 weekly sat 10:00")
    second = h.chat.sent[-1].ref
    for who in ("bob", "carol"):
        await h.member(who).reacts(first, "✅")
        await h.member(who).reacts(second, "✅")
    await until(h, START + 49 * HOUR)
    posted = texts(h)
    assert any(
        t.startswith("Agreed by the group: meeting 1 is now weekly wed 19:30 (UTC). Next: 2026-03-04 19:30")
        for t in posted
    )
    assert "Agreed by the group: nudge 1 is now weekly sat 10:00 (UTC)." in posted
    assert "1. Reading circle: weekly wed 19:30 (UTC); next 2026-03-04 19:30 UTC" in await ok(
        h, "bob", "/meet list"
    )
    assert "weekly sat 10:00" in await ok(h, "bob", "/nudge list")


async def test_forget_me_unlinks_rsvps_but_keeps_the_counts_and_export_has_meetings(h: Harness) -> None:
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await until(h, THU - DAY)
    await h.member("bob").reacts(announcement(h), COMING)
    await ok(h, "bob", "/forget-me confirm")
    assert "RSVPs ✅ 1" in await ok(h, "carol", "/meet list")
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        rsvps = await tx.meetings.rsvps([o.id for o in await tx.meetings.occurrences([1])])
    assert [r.user_name for r in rsvps] == ["a former member"]
    assert all("bob" not in r.user_key for r in rsvps)
    reply = await h.member("alice").says("/export json")
    assert reply is not None and reply.file is not None
    data = json.loads(reply.file.data)
    meeting = data["meetings"][0]
    assert (meeting["title"], meeting["when"]) == ("Reading circle", "weekly thu 18:00")
    assert meeting["occurrences"][0]["rsvps"] == {"coming": 1, "maybe": 0, "not_coming": 0}


# DST -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "before", "after"),
    [
        # Europe/Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
        ("Europe/Berlin", datetime(2026, 3, 26, 17, 0, tzinfo=UTC), datetime(2026, 4, 2, 16, 0, tzinfo=UTC)),
        (
            "Europe/Berlin",
            datetime(2026, 10, 22, 16, 0, tzinfo=UTC),
            datetime(2026, 10, 29, 17, 0, tzinfo=UTC),
        ),
        # America/New_York springs forward on 2026-03-08 and falls back on 2026-11-01.
        (
            "America/New_York",
            datetime(2026, 3, 5, 23, 0, tzinfo=UTC),
            datetime(2026, 3, 12, 22, 0, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2026, 10, 29, 22, 0, tzinfo=UTC),
            datetime(2026, 11, 5, 23, 0, tzinfo=UTC),
        ),
    ],
)
async def test_a_recurring_meeting_keeps_its_local_time_across_daylight_saving(
    h: Harness, tz: str, before: datetime, after: datetime
) -> None:
    """Thursday 18:00 local on both sides of a switch: the announcement a day before at 18:00 local
    (which crosses the switch itself when the switch is on the Sunday between), the reminder at 17:00."""
    h.clock.current = before - 3 * DAY
    await ok(h, "alice", f"/timezone {tz}")
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    for start in (before, after):
        local = start.astimezone(ZoneInfo(tz))
        assert (local.hour, local.minute, local.weekday()) == (18, 0, 3)
        await until(h, start - DAY - timedelta(minutes=1))
        count = len(h.chat.sent)
        await until(h, start - DAY)
        assert h.chat.sent[count].text.startswith(
            "📅 Meeting 1: Reading circle, " + local.strftime("%Y-%m-%d 18:00")
        )
        await until(h, start - HOUR - timedelta(minutes=1))
        assert not texts(h)[-1].startswith("⏰")
        await until(h, start - HOUR)
        assert texts(h)[-1].startswith(f"⏰ Meeting 1: Reading circle starts at 18:00 {local.strftime('%Z')}")


# Rules -----------------------------------------------------------------------------------------


def test_an_announcement_and_reminder_due_together_make_one_post() -> None:
    start = datetime(2026, 3, 5, 18, 0, tzinfo=UTC)
    o = plan(1, 1, start, "UTC", None, DAY, start - 30 * timedelta(minutes=1))
    s = step(o, start - timedelta(minutes=30))
    assert (s.announce, s.remind, s.started) == (True, False, False)
    assert s.after.next_due_at == start


def test_the_reminder_goes_when_quiet_hours_end_only_if_that_is_before_the_start() -> None:
    quiet = QuietHours(datetime(2026, 1, 1, 22).time(), datetime(2026, 1, 1, 7).time())
    start = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    assert reminder_time(start, "UTC", quiet) == datetime(2026, 3, 5, 7, 0, tzinfo=UTC)
    assert reminder_time(start - HOUR, "UTC", quiet) is None  # 06:00 reminder; quiet until 07:00 = start


def test_a_one_off_time_is_read_in_the_groups_timezone() -> None:
    now = START
    when = read_when("2026-07-01 18:00", CronRecurrence(), "Europe/Berlin", now)
    assert when.at == datetime(2026, 7, 1, 16, 0, tzinfo=UTC) and when.cron is None
    assert read_when("weekly  thu  18:00", CronRecurrence(), "UTC", now).cron == "0 18 * * thu"


def test_a_skipped_occurrence_posts_nothing_and_still_starts() -> None:
    start = datetime(2026, 3, 5, 18, 0, tzinfo=UTC)
    o = Occurrence(1, 1, 1, start, start - DAY, start - HOUR, start - DAY, skipped=True)
    s = step(o, start)
    assert (s.announce, s.remind, s.started) == (False, False, True)


async def test_two_bots_on_one_database_and_a_restart_post_each_step_once(h: Harness) -> None:
    """A second engine on the same store (another process, or the same one restarted) ticking at the
    same moments finds every step claimed: one announcement and one reminder per occurrence."""
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    other = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    for moment in (THU - DAY, THU - HOUR, THU, THU + 6 * DAY, THU + 7 * DAY - HOUR):
        h.clock.current = moment
        await asyncio.gather(h.engine.tick(), other.tick())
        await h.engine.settle()
        await other.settle()
    posted = texts(h)
    assert sum(t.startswith("📅") for t in posted) == 2
    assert sum(t.startswith("⏰") for t in posted) == 2
    restarted = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    await restarted.tick()
    await restarted.settle()
    assert texts(h) == posted


async def test_a_new_timezone_keeps_the_local_time_of_what_is_not_announced_yet(h: Harness) -> None:
    await ok(h, "alice", "/meet add weekly thu 18:00 | Reading circle")
    await ok(h, "alice", "/meet add 2026-03-10 18:00 | Kick-off")  # a moment: it stays
    await ok(h, "alice", "/timezone America/New_York")
    listed = await ok(h, "bob", "/meet list")
    assert "1. Reading circle: weekly thu 18:00 (America/New_York); next 2026-03-05 18:00 EST" in listed
    assert "2. Kick-off: 2026-03-10 14:00 EDT; to come" in listed
    await until(h, datetime(2026, 3, 5, 23, 0, tzinfo=UTC) - HOUR)
    assert texts(h)[-1] == "⏰ Meeting 1: Reading circle starts at 18:00 EST. RSVPs: ✅ 0, ❔ 0, ❌ 0."
