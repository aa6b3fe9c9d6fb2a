"""Meetings as pure rules: reading when a meeting is, planning each occurrence's announcement and
reminder, what a due occurrence does now, and how RSVP reactions count.

A meeting is one-off (`2026-12-03 18:00`) or recurring in the grammar nudges use (`weekly thu 18:00`),
in the group's timezone. Only its next occurrence is stored ahead (`Occurrence`): it carries the
announcement's and the reminder's times, already moved past quiet hours, and flags for what has been
done. When the occurrence starts, the next one is planned. A step of an occurrence is claimed by
moving its `next_due_at` on (compare-and-swap), as a nudge is: once, across processes and restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.clock import format_time
from core.commands import UsageError
from core.emoji import canonical
from core.lifecycle import QuietHours
from core.refs import MessageRef, UserRef
from core.schedules import SCHEDULE_HELP, Recurrence, due_time, parse_schedule

DEFAULT_LEAD = timedelta(hours=24)  # how long before a meeting its announcement goes out
REMINDER_LEAD = timedelta(hours=1)
MAX_TITLE = 100
MAX_MEETINGS_PER_GROUP = 20
ATTENDANCE_SHOWN = 4  # `meet list` shows the RSVP counts of this many past meetings
SKIP_HORIZON = timedelta(days=366)  # how far ahead a skip may reach
DEFAULT_TITLE = "Meeting"

COMING, MAYBE, NOT_COMING = "✅", "❔", "❌"
RSVP_EMOJI = (COMING, MAYBE, NOT_COMING)
RSVP_WORDS = {COMING: "coming", MAYBE: "maybe", NOT_COMING: "not coming"}
_CANONICAL = {canonical(e): e for e in RSVP_EMOJI}

WHEN_HELP = f"A meeting is one-off, like '2026-12-03 18:00', or recurring. {SCHEDULE_HELP}"
_ONE_OFF = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\s+([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_DAY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")


@dataclass(frozen=True, slots=True)
class When:
    """When a meeting is, as read from a member's words: a cron expression, or one moment (UTC)."""

    cron: str | None
    description: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Meeting:
    id: int
    group_id: int
    title: str
    cron: str | None  # None: a one-off meeting at `at`
    description: str  # how the time is said: "weekly thu 18:00", "2026-12-03 18:00"
    at: datetime | None
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None
    skips: tuple[str, ...] = ()  # local dates (YYYY-MM-DD) the group skips
    created_by_key: str = ""

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    @property
    def when(self) -> When:
        return When(self.cron, self.description, self.at)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One meeting on one day: its announcement, reminder and RSVPs. Times are UTC."""

    id: int
    meeting_id: int
    group_id: int
    starts_at: datetime
    announce_at: datetime
    remind_at: datetime | None  # None: no reminder (it would fall in quiet hours until the start)
    next_due_at: datetime | None  # the next step's time; None once it has started
    announced: bool = False
    reminded: bool = False
    skipped: bool = False
    message: MessageRef | None = None  # the announcement, once posted


@dataclass(frozen=True, slots=True)
class Rsvp:
    occurrence_id: int
    user_key: str
    user_name: str
    choice: str  # one of RSVP_EMOJI


@dataclass(frozen=True, slots=True)
class Step:
    """What a due occurrence does now, and the occurrence as it is after."""

    announce: bool
    remind: bool
    started: bool  # the meeting has begun: plan the next occurrence
    after: Occurrence


# Reading -----------------------------------------------------------------------------------------


def read_when(text: str, recurrence: Recurrence, tz: str, now: datetime) -> When:
    """A one-off time (`2026-12-03 18:00`, in the group's timezone, not past) or a recurring schedule."""
    words = " ".join(text.split())
    if not words:
        raise UsageError(f"When is the meeting? {WHEN_HELP}")
    if words[:1].isdigit() and (match := _ONE_OFF.match(words)):
        year, month, day, hour, minute = (int(g) for g in match.groups())
        try:
            local = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))
        except ValueError:
            raise UsageError(f"'{words[:10]}' is not a date of the calendar.") from None
        at = local.astimezone(now.tzinfo)
        if at <= now:
            raise UsageError(f"{words} ({tz}) has passed; a meeting is in the future.")
        return When(None, f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}", at)
    if words[:1].isdigit() and _DAY.match(words.split()[0]):
        raise UsageError(f"A one-off meeting needs a date and a time, like '2026-12-03 18:00'. {WHEN_HELP}")
    try:
        cron, description, rest = parse_schedule(words, recurrence)
    except UsageError as error:
        raise UsageError(f"{error.message} A one-off meeting is written like '2026-12-03 18:00'.") from None
    if rest:
        raise UsageError(f"Unexpected words after the time: '{rest[:40]}'. A title follows a |.")
    return When(cron, description, None)


def read_meeting(text: str, recurrence: Recurrence, tz: str, now: datetime) -> tuple[When, str]:
    """`<when> [| title]`: when, and the title (`Meeting` when none is given)."""
    when_text, _, title = text.partition("|")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise UsageError(f"The title is too long ({len(title)} characters, at most {MAX_TITLE}).")
    return read_when(when_text, recurrence, tz, now), title or DEFAULT_TITLE


def read_day(text: str) -> date:
    match = _DAY.match(text.strip())
    if not match:
        raise UsageError(f"'{text[:12]}' is not a date like 2026-12-10.")
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        raise UsageError(f"'{text[:12]}' is not a date of the calendar.") from None


def rsvp_emoji(emoji: str) -> str | None:
    """The RSVP an emoji says, if it says one."""
    return _CANONICAL.get(canonical(emoji))


# Planning ----------------------------------------------------------------------------------------


def local_day(at: datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).date().isoformat()


def next_start(meeting: Meeting, tz: str, after: datetime, recurrence: Recurrence) -> datetime | None:
    """The meeting's first start strictly after `after`, skipped days left out; None: no more."""
    if meeting.cron is None:
        return meeting.at if meeting.at is not None and meeting.at > after else None
    start = recurrence.next_after(meeting.cron, tz, after)
    horizon = after + SKIP_HORIZON
    while start is not None and local_day(start, tz) in meeting.skips and start < horizon:
        start = recurrence.next_after(meeting.cron, tz, start)
    return start


def starts_on(meeting: Meeting, day: date, tz: str, now: datetime, recurrence: Recurrence) -> datetime | None:
    """The meeting's start on a local day ahead (within a year), if it meets that day."""
    if meeting.cron is None:
        return meeting.at if meeting.at is not None and local_day(meeting.at, tz) == day.isoformat() else None
    start = recurrence.next_after(meeting.cron, tz, now)
    while start is not None and start < now + SKIP_HORIZON:
        found = start.astimezone(ZoneInfo(tz)).date()
        if found == day:
            return start
        if found > day:
            return None
        start = recurrence.next_after(meeting.cron, tz, start)
    return None


def reminder_time(starts_at: datetime, tz: str, quiet: QuietHours | None) -> datetime | None:
    """An hour before, in the group's time; in quiet hours, when they end, if that is before the start;
    else there is no reminder."""
    remind = due_time(starts_at - REMINDER_LEAD, tz, quiet)
    return remind if remind < starts_at else None


def plan(
    meeting_id: int,
    group_id: int,
    starts_at: datetime,
    tz: str,
    quiet: QuietHours | None,
    lead: timedelta,
    now: datetime,
) -> Occurrence:
    """A new occurrence (id 0 until stored). An announcement whose time has passed goes now."""
    announce = max(due_time(starts_at - lead, tz, quiet), now)
    occurrence = Occurrence(
        0, meeting_id, group_id, starts_at, announce, reminder_time(starts_at, tz, quiet), None
    )
    return replace(occurrence, next_due_at=next_due(occurrence))


def replan(o: Occurrence, tz: str, quiet: QuietHours | None, lead: timedelta, now: datetime) -> Occurrence:
    """The occurrence's times again after the group's timezone or quiet hours changed (the start stays)."""
    fresh = plan(o.meeting_id, o.group_id, o.starts_at, tz, quiet, lead, now)
    moved = replace(o, announce_at=fresh.announce_at, remind_at=fresh.remind_at)
    return replace(moved, next_due_at=next_due(moved))


def next_due(o: Occurrence) -> datetime | None:
    """When the occurrence next has something to do: announce, remind, or start."""
    times = [o.starts_at]
    if not o.announced and not o.skipped:
        times.append(o.announce_at)
    if not o.reminded and not o.skipped and o.remind_at is not None:
        times.append(o.remind_at)
    return min(times)


def step(o: Occurrence, now: datetime) -> Step:
    """What a due occurrence does at `now`. Nothing is posted for a skipped occurrence, nor once the
    meeting has started (the bot was down): an announcement and a reminder due together make one post."""
    before_start = now < o.starts_at
    announce = before_start and not o.skipped and not o.announced and o.announce_at <= now
    remind = (
        before_start
        and not o.skipped
        and not o.reminded
        and o.remind_at is not None
        and o.remind_at <= now
        and not announce
    )
    started = not before_start
    after = replace(
        o,
        announced=o.announced or (o.announce_at <= now),
        reminded=o.reminded or (o.remind_at is not None and o.remind_at <= now) or started,
    )
    after = replace(after, next_due_at=None if started else next_due(after))
    return Step(announce, remind, started, after)


def skip(o: Occurrence) -> Occurrence:
    skipped = replace(o, skipped=True)
    return replace(skipped, next_due_at=next_due(skipped))


# RSVPs -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RsvpChange:
    """A member's RSVP on an occurrence: their new choice, or None when they took it back."""

    occurrence_id: int
    user: UserRef
    choice: str | None


def counts(rsvps: Iterable[Rsvp]) -> dict[str, int]:
    found = dict.fromkeys(RSVP_EMOJI, 0)
    for r in rsvps:
        found[r.choice] = found.get(r.choice, 0) + 1
    return found


def say_counts(rsvps: Iterable[Rsvp]) -> str:
    n = counts(rsvps)
    return f"{COMING} {n[COMING]}, {MAYBE} {n[MAYBE]}, {NOT_COMING} {n[NOT_COMING]}"


def reconciled(
    current: Mapping[str, str], present: Mapping[str, Iterable[UserRef]]
) -> dict[str, tuple[UserRef | None, str | None]]:
    """The RSVPs a snapshot of the reactions on the announcement says (a platform that cannot replay
    what it missed): a member keeps their choice while its reaction is on the message; otherwise their
    choice is the first of ✅ ❔ ❌ they have on it, or none. `current` maps keys to choices; the answer
    maps each key whose RSVP changes to (the member, their new choice or None)."""
    on: dict[str, set[str]] = {}
    users: dict[str, UserRef] = {}
    for emoji, members in present.items():
        choice = rsvp_emoji(emoji)
        if choice is None:
            continue
        for user in members:
            on.setdefault(user.key, set()).add(choice)
            users[user.key] = user
    changes: dict[str, tuple[UserRef | None, str | None]] = {}
    for key in sorted(set(current) | set(on)):
        held = on.get(key, set())
        choice = current.get(key)
        if choice in held:
            continue
        new = next((e for e in RSVP_EMOJI if e in held), None)
        if new != choice:
            changes[key] = (users.get(key), new)
    return changes


# Words -------------------------------------------------------------------------------------------


def when_line(meeting: Meeting, tz: str) -> str:
    """`weekly thu 18:00 (Europe/Berlin)`; a one-off meeting's moment in the group's time now."""
    if meeting.at is not None and not meeting.recurring:
        return format_time(meeting.at, tz)
    return f"{meeting.description} ({tz})"


def announcement(meeting: Meeting, o: Occurrence, tz: str, prefix: str) -> str:
    return (
        f"📅 Meeting {meeting.id}: {meeting.title}, {format_time(o.starts_at, tz)}.\n"
        f"Will you come? React {COMING} coming, {MAYBE} maybe, {NOT_COMING} not coming."
        f" ({prefix}meet list shows who is coming.)"
    )


def reminder(meeting: Meeting, o: Occurrence, tz: str, rsvps: Sequence[Rsvp]) -> str:
    starts = o.starts_at.astimezone(ZoneInfo(tz)).strftime("%H:%M %Z")
    return f"⏰ Meeting {meeting.id}: {meeting.title} starts at {starts}. RSVPs: {say_counts(rsvps)}."


def thread_opener(meeting: Meeting, o: Occurrence, tz: str) -> str:
    return (
        f"A place for meeting {meeting.id} on {format_time(o.starts_at, tz)}: the agenda, questions, notes."
    )


def thread_title(meeting: Meeting, o: Occurrence, tz: str) -> str:
    return f"{meeting.title} {local_day(o.starts_at, tz)}"
