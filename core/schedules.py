"""Schedules as pure rules: reading them, quiet hours, and deciding what a due schedule does now.

Cron maths (next occurrence of an expression in a timezone) is a port, `Recurrence`: the bot wires
APScheduler's CronTrigger into it, which handles daylight saving with zoneinfo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.commands import UsageError, is_blank
from core.lifecycle import Phase, QuietHours
from core.refs import ChannelRef

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_GRACE = timedelta(hours=1)
SCHEDULE_HELP = (
    "Schedules: 'daily 09:00', 'weekly mon 18:00', 'weekly mon,thu 18:30', 'monthly 1 10:00',"
    " or cron with five fields ('0 18 * * MON'), in the group's timezone."
)
# ASCII only: `\d`, `\w` and isdigit() also take other scripts' digits ("²"), which int() refuses.
_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_DAY_OF_MONTH = re.compile(r"^[0-9]{1,2}$")
_CRON_FIELD = re.compile(r"^[A-Za-z0-9*/,\-]+$")


class Recurrence(Protocol):
    def check(self, cron: str) -> None:
        """Raise ValueError if the cron expression is not valid."""
        ...

    def next_after(self, cron: str, tz: str, after: datetime) -> datetime | None:
        """The first occurrence strictly after `after` (UTC in, UTC out)."""
        ...


class ScheduleKind(Enum):
    NUDGE = "nudge"  # a reflection prompt, the group's own text or from the prompt bank
    CHECKIN = "checkin"  # the weekly check-in added when a group starts Cooperating
    DIGEST = "digest"  # the weekly digest

    @property
    def phase(self) -> Phase | None:
        """The phase a schedule of this kind belongs to: it ends when the group leaves that phase."""
        return Phase.COOPERATING if self is ScheduleKind.CHECKIN else None


@dataclass(frozen=True, slots=True)
class Schedule:
    id: int
    group_id: int
    kind: ScheduleKind
    cron: str
    description: str
    text: str | None
    paused: bool
    next_occurrence: datetime | None  # the next cron occurrence (UTC)
    next_due_at: datetime | None  # when to act on it: the occurrence, or the end of quiet hours
    created_by: str
    created_at: datetime
    created_by_key: str = ""


def _hhmm(text: str) -> tuple[int, int]:
    match = _TIME.match(text)
    if not match:
        raise UsageError(f"'{text[:10]}' is not a time like 18:00. {SCHEDULE_HELP}")
    return int(match[1]), int(match[2])


def parse_schedule(text: str, recurrence: Recurrence) -> tuple[str, str, str]:
    """Split `<schedule> [text]` into (cron expression, how to say it, the rest of the text).

    A text that shows nothing (only U+200B and the like) is no text: the prompt bank speaks instead.
    """
    cron, description, rest = _read_schedule(text, recurrence)
    return cron, description, "" if is_blank(rest) else rest


def _read_schedule(text: str, recurrence: Recurrence) -> tuple[str, str, str]:
    words = text.split()
    if not words:
        raise UsageError(f"Which schedule? {SCHEDULE_HELP}")
    head = words[0].lower()
    if head == "daily" and len(words) >= 2:
        h, m = _hhmm(words[1])
        return f"{m} {h} * * *", f"daily {h:02d}:{m:02d}", " ".join(words[2:])
    if head == "weekly" and len(words) >= 3:
        days = words[1].lower().split(",")
        if not all(d in DAYS for d in days) or len(set(days)) != len(days):
            raise UsageError(f"Days are written mon,tue,wed,thu,fri,sat,sun, not '{words[1][:20]}'.")
        h, m = _hhmm(words[2])
        ordered = ",".join(d for d in DAYS if d in days)
        return f"{m} {h} * * {ordered}", f"weekly {ordered} {h:02d}:{m:02d}", " ".join(words[3:])
    if head == "monthly" and len(words) >= 3:
        if not _DAY_OF_MONTH.match(words[1]) or not 1 <= int(words[1]) <= 31:
            raise UsageError(f"The day of the month is 1 to 31, not '{words[1][:10]}'.")
        h, m = _hhmm(words[2])
        day = int(words[1])
        return f"{m} {h} {day} * *", f"monthly {day} {h:02d}:{m:02d}", " ".join(words[3:])
    if len(words) >= 5 and all(_CRON_FIELD.match(w) for w in words[:5]):
        cron = " ".join(words[:5])
        try:
            recurrence.check(cron)
        except ValueError as error:
            raise UsageError(f"'{cron}' is not a valid cron schedule ({error}).") from None
        return cron, f"cron {cron}", " ".join(words[5:])
    raise UsageError(f"Cannot read that schedule. {SCHEDULE_HELP}")


def parse_quiet_hours(text: str) -> QuietHours | None:
    """`22:00-08:00`, or `off` for none."""
    if text.strip().lower() in ("off", "none"):
        return None
    start, sep, end = text.strip().partition("-")
    if not sep:
        raise UsageError("Quiet hours look like 22:00-08:00, or 'off'.")
    (h1, m1), (h2, m2) = _hhmm(start.strip()), _hhmm(end.strip())
    if (h1, m1) == (h2, m2):
        raise UsageError("Quiet hours need a start and an end that differ.")
    return QuietHours(time(h1, m1), time(h2, m2))


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"'{name[:40]}' is not an IANA timezone. Examples: Europe/Berlin, America/New_York, UTC."
        ) from None
    return name


def due_time(occurrence: datetime, tz: str, quiet: QuietHours | None) -> datetime:
    """When to post an occurrence: at once, or when quiet hours end (local time)."""
    if quiet is None:
        return occurrence
    zone = ZoneInfo(tz)
    local = occurrence.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return occurrence
    end_day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        end_day += timedelta(days=1)
    end = datetime.combine(end_day, quiet.end, tzinfo=zone)
    return end.astimezone(occurrence.tzinfo)


@dataclass(slots=True)
class DueSchedule:
    """A schedule that has come due, with just what delivering it needs to know of its group.

    Not frozen: a tick reads tens of thousands, and a frozen dataclass's __init__ (a setattr through
    `object` per field) was a seventh of delivering them. Nobody changes one."""

    id: int
    kind: ScheduleKind
    cron: str
    text: str | None
    next_occurrence: datetime | None
    group_id: int
    channel: ChannelRef
    phase: Phase
    timezone: str
    quiet: QuietHours | None
    due_at: datetime | None = None  # when its next occurrence is due (None: delivered, not yet planned)
    delivered_at: datetime | None = None  # delivered, not yet planned: when it was delivered


@dataclass(frozen=True, slots=True)
class Plan:
    deliver: datetime | None  # the occurrence to deliver now (the claim key), if any
    coalesced: int  # missed occurrences folded into this delivery
    skipped: int  # occurrences too old for the grace window (-1: many, not counted)
    next_occurrence: datetime | None
    next_due_at: datetime | None


def plan(
    schedule: Schedule | DueSchedule,
    now: datetime,
    tz: str,
    quiet: QuietHours | None,
    grace: timedelta,
    recurrence: Recurrence,
) -> Plan:
    """The misfire policy. Of the occurrences due by now, the latest is delivered if it is at most
    `grace` late (the others coalesce into it); occurrences older than that are skipped."""
    missed, skipped, occurrence, next_due = _due_from(
        schedule.next_occurrence, schedule.cron, now, tz, quiet, grace, recurrence
    )
    if not missed:
        return Plan(None, 0, skipped, occurrence, next_due)
    latest = missed[-1]
    if now - due_time(latest, tz, quiet) <= grace:
        return Plan(latest, len(missed) - 1, skipped, occurrence, next_due)
    return Plan(None, 0, -1 if skipped < 0 else skipped + len(missed), occurrence, next_due)


def deliverable_at_once(s: DueSchedule, now: datetime, grace: timedelta) -> bool:
    """Whether a due schedule's next occurrence may be delivered before anything is computed: it is due,
    and at most `grace` late. Then any later occurrence that is due by now too coalesces into it, which
    `plan_after_delivery` finds once the post is queued. An older one needs the full `plan` first (it may
    be skipped, or a later occurrence be the one delivered)."""
    return s.next_occurrence is not None and s.due_at is not None and s.due_at <= now <= s.due_at + grace


def plan_after_delivery(
    delivered: datetime,
    cron: str,
    now: datetime,
    tz: str,
    quiet: QuietHours | None,
    grace: timedelta,
    recurrence: Recurrence,
) -> Plan:
    """The next occurrence of a schedule whose occurrence `delivered` was posted at once (see
    `deliverable_at_once`): occurrences after it that were due by `now` coalesce into that delivery."""
    coalesced, skipped, occurrence, next_due = _due_from(
        recurrence.next_after(cron, tz, delivered), cron, now, tz, quiet, grace, recurrence
    )
    return Plan(None, len(coalesced), skipped, occurrence, next_due)


def _due_from(
    occurrence: datetime | None,
    cron: str,
    now: datetime,
    tz: str,
    quiet: QuietHours | None,
    grace: timedelta,
    recurrence: Recurrence,
) -> tuple[list[datetime], int, datetime | None, datetime | None]:
    """From `occurrence` on: the occurrences due by now, -1 if older ones were skipped without being
    counted (the bot was down long: only the last day past the grace window is walked), and the first
    occurrence not due yet with its due time."""
    skipped = 0
    horizon = now - grace - timedelta(days=1)  # quiet hours defer by less than a day
    if occurrence is not None and occurrence < horizon:
        occurrence, skipped = recurrence.next_after(cron, tz, horizon), -1
    due: list[datetime] = []
    while occurrence is not None and due_time(occurrence, tz, quiet) <= now:
        due.append(occurrence)
        occurrence = recurrence.next_after(cron, tz, occurrence)
    return due, skipped, occurrence, due_time(occurrence, tz, quiet) if occurrence is not None else None


def first_occurrence(
    cron: str, tz: str, quiet: QuietHours | None, now: datetime, recurrence: Recurrence
) -> tuple[datetime | None, datetime | None]:
    occurrence = recurrence.next_after(cron, tz, now)
    return occurrence, due_time(occurrence, tz, quiet) if occurrence is not None else None
