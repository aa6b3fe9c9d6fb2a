"""Shared responsibility as rules: the group's roles, who holds them, whose turn is next, and the wrap.

A role has a name (one word or hyphenated words) and a one-line duty. Three are built in; facilitators
add their own. A role may rotate, weekly or every 2 weeks, at the group's week boundary (the digest's
time): it goes to the member of its pool who held it least recently, skipping members not active for
14 days, so that over time everyone in the pool holds it about as often (see `next_holder`). No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from core.commands import UsageError
from core.members import ACTIVE_WITHIN, Member, RosterEntry

FACILITATOR_OF_THE_WEEK = "facilitator-of-the-week"
WRAPPER = "wrapper"
NOTETAKER = "notetaker"
# (name, duty), in the order `role list` shows them.
BUILT_IN: tuple[tuple[str, str], ...] = (
    (FACILITATOR_OF_THE_WEEK, "may run facilitator commands in this group while holding the role"),
    (WRAPPER, "writes the week's wrap: a summary for those who missed it"),
    (NOTETAKER, "summarises the group's action reviews (may close one with its summary)"),
)
MAX_NAME = 40
MAX_DUTY = 200
MAX_ROLES = 20  # built-in ones included
# One word or hyphenated words, in lowercase letters and digits.
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# How long after the draft the wrapper has to wrap before the digest goes to the group itself.
WRAP_WITHIN = timedelta(days=1)
MAX_WRAP = 1800  # a wrap and its heading fit one Discord message (2,000 characters)
INACTIVE_AFTER = ACTIVE_WITHIN  # 14 days without a message, command or reaction in the channel


class Rotation(Enum):
    OFF = "off"
    WEEKLY = "weekly"
    FORTNIGHTLY = "every 2 weeks"

    @property
    def weeks(self) -> int:
        return {Rotation.OFF: 0, Rotation.WEEKLY: 1, Rotation.FORTNIGHTLY: 2}[self]


_ROTATIONS = {
    "off": Rotation.OFF,
    "none": Rotation.OFF,
    "weekly": Rotation.WEEKLY,
    "every week": Rotation.WEEKLY,
    "every 1 week": Rotation.WEEKLY,
    "every 2 weeks": Rotation.FORTNIGHTLY,
    "every two weeks": Rotation.FORTNIGHTLY,
    "every 2w": Rotation.FORTNIGHTLY,
    "biweekly": Rotation.FORTNIGHTLY,
    "fortnightly": Rotation.FORTNIGHTLY,
}


def parse_rotation(text: str) -> Rotation:
    """`weekly`, `every 2 weeks` or `off` (and a few ways of saying them)."""
    said = " ".join(text.casefold().split())
    rotation = _ROTATIONS.get(said)
    if rotation is None:
        shown = said[:30] or "nothing"
        raise UsageError(f"A role rotates weekly, every 2 weeks, or off; not '{shown}'.")
    return rotation


def check_name(text: str) -> str:
    """A role's name as kept: lowercase, one word or words joined by hyphens; else a clear error."""
    name = text.strip().casefold()
    if not name:
        raise UsageError("Which role? Give its name, like wrapper.")
    if len(name) > MAX_NAME:
        raise UsageError(f"A role's name has at most {MAX_NAME} characters.")
    if not name.isascii() or not _NAME.fullmatch(name):
        shown = name if len(name) <= 30 else name[:29] + "…"
        raise UsageError(
            f"'{shown}' is not a role name: use one word or words joined by hyphens, in letters a-z and"
            " digits (like timekeeper or link-curator)."
        )
    return name


def check_duty(text: str) -> str:
    duty = " ".join(text.split())
    if not duty:
        raise UsageError("Say in one line what the role does, like: keeps an eye on the time.")
    if len(duty) > MAX_DUTY:
        raise UsageError(f"A role's duty is one line of at most {MAX_DUTY} characters.")
    return duty


@dataclass(frozen=True, slots=True)
class Role:
    id: int
    group_id: int
    name: str
    duty: str
    built_in: bool
    created_at: datetime
    holder_key: str = ""  # "" when the role is free
    holder_name: str = ""
    held_since: datetime | None = None
    rotation: Rotation = Rotation.OFF
    # The week boundary at which it is next handed on (None: it does not rotate).
    next_turn_at: datetime | None = None
    # The next week boundary at which the bot looks at it (rotation, the wrapper's draft, inactivity).
    next_week_at: datetime | None = None

    @property
    def held(self) -> bool:
        return bool(self.holder_key)


@dataclass(frozen=True, slots=True)
class PoolMember:
    """A member who opted into a role's rotation."""

    role_id: int
    key: str
    name: str
    joined_at: datetime
    last_held_at: datetime | None = None
    times_held: int = 0


class WrapState(Enum):
    DRAFTED = "drafted"  # the draft went to the wrapper; the digest waits for their wrap
    WRAPPED = "wrapped"  # the wrapper posted the week's summary
    LAPSED = "lapsed"  # no wrap within a day: the digest went to the group (if on)


@dataclass(frozen=True, slots=True)
class Wrap:
    """One week's wrap: the draft the wrapper was given, and what they posted."""

    id: int
    group_id: int
    week_end: datetime  # the week boundary the draft was made at
    wrapper_key: str
    wrapper_name: str
    drafted_at: datetime
    state: WrapState
    digest: str = ""  # the group's weekly digest, posted if they do not wrap in time
    fallback_at: datetime | None = None  # when the digest goes to the group; None once settled
    text: str = ""
    wrapped_at: datetime | None = None


_NEVER = datetime.min.replace(tzinfo=UTC)


def active_keys(roster: Iterable[Member], now: datetime) -> set[str]:
    """The members on the roster who wrote, reacted or ran a command in the channel in 14 days (a
    member who never did since joining counts from their join)."""
    since = now - INACTIVE_AFTER
    return {m.key for m in roster if m.on_roster and (m.last_active_at or m.joined_at) >= since}


def active_on(roster: Iterable[RosterEntry], now: datetime) -> set[str]:
    """As `active_keys`, for the roster as the weekly turn reads many groups' at once."""
    since = now - INACTIVE_AFTER
    return {m.key for m in roster if m.last_seen >= since}


def next_holder(
    pool: Sequence[PoolMember], active: Collection[str], exclude: Collection[str] = ()
) -> PoolMember | None:
    """Whose turn it is: the active member of the pool who held the role least recently (never first),
    then who joined the pool first. Holding it puts a member at the back of the queue, so members
    always active take turns round robin, and a member away keeps their place for their return."""
    candidates = [p for p in pool if p.key in active and p.key not in exclude]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (p.last_held_at or _NEVER, p.joined_at, p.key))


def upcoming(pool: Sequence[PoolMember], active: Collection[str], holder: str, count: int = 3) -> list[str]:
    """The names of the next few in rotation, in order (for `role list`)."""
    queue = sorted(
        (p for p in pool if p.key in active), key=lambda p: (p.last_held_at or _NEVER, p.joined_at, p.key)
    )
    return [p.name for p in queue if p.key != holder][:count]


def turn_line(name: str, role: str, rotation: Rotation) -> str:
    """The one line the group gets when a role changes hands."""
    if rotation is Rotation.FORTNIGHTLY:
        return f"{name} is the {role} for the next 2 weeks."
    if rotation is Rotation.OFF:
        return f"{name} is the {role} now."
    return f"{name} is this week's {role}."
