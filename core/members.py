"""The group's roster: who is in it, since when, how active, and how the roster reads. No I/O.

A member joins by saying `join`, by joining the room where the platform tells (a Matrix room join, a
Discord server join in its welcome channel), or by first writing, reacting or running a command in the
group's channel. A member leaves with `leave` or by leaving the room; their row stays, so rejoining
keeps their history. Activity (what "last active" and the radar read) is what members do in the group's
channel; what they write to the bot privately is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from core.clock import utc
from core.refs import UserRef

MAX_INTRO = 300
# "What they did in the last 30 days" in the roster listing.
CONTRIBUTION_WINDOW = timedelta(days=30)
# A buddy who did something in the group this recently is active, and may be paired with a newcomer.
ACTIVE_WITHIN = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Member:
    """One member of one group, on its roster or (with `left_at`) once on it."""

    id: int
    group_id: int
    key: str  # UserRef.key: "<platform>:<id>"
    name: str
    joined_at: datetime  # the first join: rejoining keeps it
    left_at: datetime | None = None
    last_active_at: datetime | None = None
    intro: str = ""  # a few words about themselves, from `join <intro>`
    private: bool = False  # listed by name only
    buddy: bool = False  # offers to be a newcomer's buddy
    reminders: bool = True  # may get reminders by direct message
    buddy_key: str = ""  # the key of their own buddy, if they were paired with one
    paired_at: datetime | None = None  # when they, as a buddy, were last given a newcomer
    welcome_due_at: datetime | None = None  # their welcome waits until then (several joins at once)

    @property
    def on_roster(self) -> bool:
        return self.left_at is None

    @property
    def user(self) -> UserRef:
        platform, _, user_id = self.key.partition(":")
        return UserRef(platform, user_id, self.name)


class RosterEntry(NamedTuple):
    """A member on a roster as the weekly radar reads thousands of them at once: what it weighs, and no
    more (a tuple, cheap to make)."""

    id: int
    group_id: int
    key: str
    name: str
    last_seen: datetime  # last active in the group, or when they joined if never since
    introduced: bool  # said a few words about themselves (`join <intro>`)
    private: bool  # listed by name only: never named for what they did or did not do

    @property
    def user(self) -> UserRef:
        platform, _, user_id = self.key.partition(":")
        return UserRef(platform, user_id, self.name)


@dataclass(frozen=True, slots=True)
class Contributions:
    """What a member did in a group over a span of time."""

    proposals: int = 0  # goals they proposed
    votes: int = 0  # polls (consent polls included) they voted in
    reflections: int = 0


class Step(Enum):
    """What something a member does means for the roster."""

    ADD = "add"  # a newcomer: on the roster from now on, and welcomed
    REJOIN = "rejoin"  # back on the roster with their history, and welcomed
    TOUCH = "touch"  # on the roster already: only their activity is noted
    NONE = "none"  # nothing changes


def on_join(member: Member | None) -> Step:
    """A member joins on purpose (`join`, a room join): a newcomer is added, a former member is back."""
    if member is None:
        return Step.ADD
    return Step.TOUCH if member.on_roster else Step.REJOIN


def on_activity(member: Member | None) -> Step:
    """A member writes, reacts or runs a command in the channel: a first time adds them; someone who
    left stays off the roster until they join again (leaving is on purpose, a vote is not a return)."""
    if member is None:
        return Step.ADD
    return Step.TOUCH if member.on_roster else Step.NONE


def is_active(member: Member, now: datetime) -> bool:
    """On the roster and did something in the group within `ACTIVE_WITHIN`."""
    last = member.last_active_at
    return member.on_roster and last is not None and now - last <= ACTIVE_WITHIN


def buddies_in_turn(members: Sequence[Member], now: datetime) -> list[Member]:
    """The active members who offer to be a buddy, in the order they take newcomers: the one whose last
    newcomer is the longest ago first (those never paired before them), so that pairings go round
    fairly; ties by who joined first."""
    candidates = [m for m in members if m.buddy and is_active(m, now)]
    return sorted(candidates, key=lambda m: (m.paired_at is not None, m.paired_at or now, m.joined_at, m.id))


def local(dt: datetime, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return utc(dt).astimezone(ZoneInfo(tz)).strftime(fmt)


def _count(n: int, one: str) -> str:
    return f"{n} {one}{'' if n == 1 else 's'}"


def roster_entry(member: Member, did: Contributions | None, tz: str) -> str:
    """One member in the `members` listing: a private member by name only."""
    if member.private:
        return member.name
    active = f"last active {local(member.last_active_at, tz)}" if member.last_active_at else "not active yet"
    did = did or Contributions()
    line = (
        f"{member.name} — since {local(member.joined_at, tz, '%Y-%m-%d')}, {active};"
        f" 30 days: {_count(did.proposals, 'proposal')}, {_count(did.votes, 'vote')},"
        f" {_count(did.reflections, 'reflection')}"
    )
    return f"{line}\n  “{member.intro}”" if member.intro else line


def roster_entries(
    members: Sequence[Member], contributions: Mapping[str, Contributions], tz: str
) -> list[str]:
    """The roster in the order members joined."""
    ordered = sorted(members, key=lambda m: (m.joined_at, m.id))
    return [roster_entry(m, contributions.get(m.key), tz) for m in ordered]
