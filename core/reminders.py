"""Reminders before a consent poll or an action review closes, as pure rules and texts. No I/O.

When an item reaches the last share of its time (the group's reminder window, 25% unless it chose
another, or none when it switched reminders off), each member on the roster who has not responded (no
vote on the consent poll, no answer in the review) and keeps their own reminders on gets one direct
message, and the group one line without names. An item's reminders are due at its `remind_at`; the
tick that sends them clears it, so they are sent once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.clock import format_time
from core.commands import UsageError
from core.goals import AGREE, BLOCK, CONCERNS
from core.lifecycle import Group
from core.prompts import REVIEW_QUESTIONS
from core.refs import UserRef

DEFAULT_PERCENT = 25
MAX_PERCENT = 90
OFF = 0
_PERCENT = re.compile(r"([0-9]{1,3})\s*%?")


def percent(group: Group) -> int:
    """The group's reminder window in percent of an item's time; 0 when reminders are off."""
    return DEFAULT_PERCENT if group.remind_window is None else group.remind_window


def parse_window(text: str) -> int:
    """`25%`, `25` or `off`: the share in percent, 0 for off. Raises UsageError otherwise."""
    word = text.strip().casefold()
    if word == "off":
        return OFF
    match = _PERCENT.fullmatch(word)
    if match is None or not 1 <= int(match[1]) <= MAX_PERCENT:
        raise UsageError(f"The reminder window is a whole percent from 1 to {MAX_PERCENT}, like 25%, or off.")
    return int(match[1])


def describe_window(share: int) -> str:
    return "off" if share == OFF else f"{share}%"


def remind_time(opened: datetime, closes: datetime, share: int) -> datetime | None:
    """When an item open from `opened` to `closes` reaches the last `share` percent of its time; None
    when reminders are off."""
    if share == OFF:
        return None
    return closes - (closes - opened) * share / 100


@dataclass(frozen=True, slots=True)
class Planned:
    """An open item's times as replanning needs them."""

    id: int
    opened: datetime
    closes: datetime
    remind_at: datetime | None


def replan(items: Sequence[Planned], old: int, new: int, now: datetime) -> list[tuple[int, datetime | None]]:
    """The new reminder times of open items after the window changed from `old` to `new` percent.

    Off clears every pending reminder. Between two windows, a pending reminder moves to the new time
    (which may have come already: it is then sent at the next tick); an item whose reminder was sent
    (no time left) is not reminded again. Switched back on, an item gets a reminder only if the new
    time is still ahead: one already in its last share may have been reminded before the switch-off.
    """
    changes: list[tuple[int, datetime | None]] = []
    for item in items:
        when = remind_time(item.opened, item.closes, new)
        if when is None:
            if item.remind_at is not None:
                changes.append((item.id, None))
        elif old != OFF:
            if item.remind_at is not None and item.remind_at != when:
                changes.append((item.id, when))
        elif when > now and item.remind_at != when:
            changes.append((item.id, when))
    return changes


@dataclass(frozen=True, slots=True)
class Absent:
    """A member on the roster who has not responded to an item (voted, answered)."""

    key: str
    name: str
    reminders: bool  # takes reminders by direct message

    @property
    def user(self) -> UserRef:
        platform, _, user_id = self.key.partition(":")
        return UserRef(platform, user_id, self.name)


@dataclass(frozen=True, slots=True)
class Unresponded:
    """Of an item's group: how many are on the roster now, and who of them has not responded, in the
    order they joined."""

    roster: int
    absent: tuple[Absent, ...]


def _members(missing: int, total: int) -> str:
    verb = "has" if missing == 1 else "have"
    return f"{missing} of {total} {'member' if total == 1 else 'members'} {verb}"


def goal_line(goal_id: int, missing: int, total: int, closes: datetime, tz: str) -> str:
    """The group's line: how many have not voted, never who."""
    return (
        f"{_members(missing, total)} not voted on goal {goal_id} yet;"
        f" voting closes {format_time(closes, tz)}."
    )


def review_line(review_id: int, missing: int, total: int, closes: datetime, tz: str) -> str:
    return (
        f"{_members(missing, total)} not answered action review {review_id} yet;"
        f" it closes {format_time(closes, tz)}."
    )


def goal_reminder(
    goal_id: int, goal_text: str, poll_id: int, where: str, closes: datetime, tz: str, prefix: str
) -> str:
    """The direct message to a member who has not voted on a goal's consent poll."""
    return (
        f"A reminder from {where}: goal {goal_id} is waiting for your vote.\n"
        f"“{goal_text}”\n"
        f"Voting closes {format_time(closes, tz)}. React on poll {poll_id} in {where}:"
        f" {AGREE} agree, {CONCERNS} concerns, {BLOCK} block.\n"
        f"You get one reminder per vote; {prefix}remind me off stops them."
    )


def review_reminder(review_id: int, where: str, closes: datetime, tz: str, prefix: str) -> str:
    """The direct message to a member who has not answered an action review."""
    return (
        f"A reminder from {where}: action review {review_id} is waiting for your answers.\n"
        f"It closes {format_time(closes, tz)}. Answer any of its {len(REVIEW_QUESTIONS)} questions in"
        f" {where} with {prefix}reflect q<number> <your answer>,"
        f" like {prefix}reflect q4 <what you learned>.\n"
        f"You get one reminder per review; {prefix}remind me off stops them."
    )
