"""Schedule rules: reading schedules, quiet hours, daylight saving and the misfire policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.recurrence import CronRecurrence, crontab_days
from core.commands import UsageError
from core.lifecycle import QuietHours
from core.schedules import (
    Schedule,
    ScheduleKind,
    due_time,
    first_occurrence,
    parse_quiet_hours,
    parse_schedule,
    plan,
)

R = CronRecurrence()
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "cron", "description", "rest"),
    [
        ("daily 09:00", "0 9 * * *", "daily 09:00", ""),
        ("daily 9:05 Stretch!", "5 9 * * *", "daily 09:05", "Stretch!"),
        ("weekly mon 18:00", "0 18 * * mon", "weekly mon 18:00", ""),
        (
            "weekly thu,MON 18:30 How is it going?",
            "30 18 * * mon,thu",
            "weekly mon,thu 18:30",
            "How is it going?",
        ),
        ("monthly 1 10:00", "0 10 1 * *", "monthly 1 10:00", ""),
        ("0 18 * * MON Reflect", "0 18 * * MON", "cron 0 18 * * MON", "Reflect"),
        ("*/15 9-17 * * 1-5", "*/15 9-17 * * 1-5", "cron */15 9-17 * * 1-5", ""),
    ],
)
def test_schedules_in_words_and_cron(text: str, cron: str, description: str, rest: str) -> None:
    assert parse_schedule(text, R) == (cron, description, rest)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Which schedule"),
        ("daily 25:00", "not a time like 18:00"),
        ("weekly funday 18:00", "Days are written"),
        ("weekly mon,mon 18:00", "Days are written"),
        ("monthly 32 10:00", "1 to 31"),
        ("61 * * * *", "not a valid cron schedule"),
        ("sometimes", "Cannot read that schedule"),
    ],
)
def test_bad_schedules_say_how_schedules_look(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schedule(text, R)


def test_crontab_weekday_numbers_mean_what_crontab_means() -> None:
    # APScheduler 3 counts 0 = Monday; crontab counts 0 = Sunday. Names are the same to both.
    assert crontab_days("1") == "mon"
    assert crontab_days("0") == crontab_days("7") == "sun"
    assert crontab_days("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_days("5-7") == "fri,sat,sun"
    monday = R.next_after("0 18 * * 1", "UTC", datetime(2026, 3, 1, tzinfo=UTC))
    assert monday == datetime(2026, 3, 2, 18, tzinfo=UTC) and monday.weekday() == 0


def test_weekly_berlin_nudge_stays_at_18_local_across_both_switches() -> None:
    cron = parse_schedule("weekly mon 18:00", R)[0]
    at = datetime(2026, 3, 17, tzinfo=UTC)
    spring = []
    for _ in range(3):  # 23 March (CET), 30 March and 6 April (CEST): switch on 29 March
        at = R.next_after(cron, "Europe/Berlin", at)
        spring.append(at)
    assert [a.astimezone(BERLIN).hour for a in spring] == [18, 18, 18]
    assert [a.hour for a in spring] == [17, 16, 16]  # the UTC hour moves instead
    autumn = R.next_after(cron, "Europe/Berlin", datetime(2026, 10, 13, tzinfo=UTC))
    after = R.next_after(cron, "Europe/Berlin", autumn)  # switch back on 25 October
    assert (autumn.astimezone(BERLIN).hour, after.astimezone(BERLIN).hour) == (18, 18)
    assert (autumn.hour, after.hour) == (16, 17)


def test_quiet_hours() -> None:
    q = parse_quiet_hours("22:00-08:00")
    assert q == QuietHours(time(22), time(8)) and str(q) == "22:00-08:00"
    assert q.contains(time(23)) and q.contains(time(7, 59)) and not q.contains(time(8))
    assert parse_quiet_hours("off") is None
    day = parse_quiet_hours("13:00-14:00")
    assert day is not None and day.contains(time(13, 30)) and not day.contains(time(14))
    for bad in ("22:00", "22:00-22:00", "25:00-08:00"):
        with pytest.raises(UsageError):
            parse_quiet_hours(bad)


def test_a_nudge_due_in_quiet_hours_waits_for_their_end() -> None:
    q = QuietHours(time(22), time(8))
    late = datetime(2026, 3, 2, 22, 30, tzinfo=BERLIN).astimezone(UTC)
    early = datetime(2026, 3, 3, 6, 0, tzinfo=BERLIN).astimezone(UTC)
    end = datetime(2026, 3, 3, 8, 0, tzinfo=BERLIN).astimezone(UTC)
    assert due_time(late, "Europe/Berlin", q) == end
    assert due_time(early, "Europe/Berlin", q) == end
    noon = datetime(2026, 3, 3, 12, 0, tzinfo=BERLIN).astimezone(UTC)
    assert due_time(noon, "Europe/Berlin", q) == noon


def schedule(cron: str, next_occurrence: datetime) -> Schedule:
    return Schedule(
        1,
        1,
        ScheduleKind.NUDGE,
        cron,
        "",
        None,
        False,
        next_occurrence,
        next_occurrence,
        "a",
        next_occurrence,
    )


T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # a Monday


def test_an_occurrence_missed_within_the_grace_is_delivered_once_late() -> None:
    p = plan(schedule("0 18 * * *", T0), T0 + timedelta(minutes=40), "UTC", None, HOUR, R)
    assert (p.deliver, p.coalesced, p.skipped) == (T0, 0, 0)
    assert p.next_occurrence == p.next_due_at == T0 + timedelta(days=1)


def test_missed_occurrences_coalesce_into_the_latest() -> None:
    s = schedule("*/10 * * * *", T0)
    p = plan(s, T0 + timedelta(minutes=35), "UTC", None, HOUR, R)
    assert (p.deliver, p.coalesced) == (T0 + timedelta(minutes=30), 3)
    assert p.next_occurrence == T0 + timedelta(minutes=40)


def test_occurrences_older_than_the_grace_are_skipped() -> None:
    p = plan(schedule("0 18 * * *", T0), T0 + timedelta(hours=3), "UTC", None, HOUR, R)
    assert (p.deliver, p.skipped) == (None, 1)
    assert p.next_occurrence == T0 + timedelta(days=1)
    long_down = plan(schedule("* * * * *", T0), T0 + timedelta(days=40), "UTC", None, HOUR, R)
    assert long_down.deliver == T0 + timedelta(days=40)  # the minute now is within the grace
    assert long_down.skipped == -1  # many, not counted one by one


def test_not_yet_due_plans_nothing() -> None:
    p = plan(schedule("0 18 * * *", T0), T0 - timedelta(minutes=1), "UTC", None, HOUR, R)
    assert p.deliver is None and p.next_occurrence == T0


def test_first_occurrence_honours_quiet_hours() -> None:
    q = QuietHours(time(17), time(19))
    occurrence, due = first_occurrence("0 18 * * *", "UTC", q, T0 - timedelta(hours=2), R)
    assert occurrence == T0 and due == T0 + timedelta(hours=1)
