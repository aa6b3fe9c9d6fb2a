"""The radar: what the group's own record says about silence and imbalance. Pure rules, no I/O.

Once a week, and when a facilitator asks, the radar reads a group's record (`Facts`) and returns
`Finding`s, each with a pattern from the catalogue (core/patterns.py) and what to try:

- silence: a member on the roster with no activity for `silence` days (named only to facilitators);
- concentration: one member making more than `concentration` % of the proposals, closings or phase
  moves of the last 30 days, where there were at least 5 such acts and at least 3 active members;
- stasis: no goal done and no phase move for `stasis` days, while the group is still active;
- blocks: a goal blocked `blocks` days ago that was neither dropped nor reshaped (amended with
  `goal amend`, so superseded, or its proposer put a new goal forward since);
- concerns: a goal accepted `concerns` days ago with concerns voiced (`concern`) that no facilitator
  marked addressed (`concern done`); or, when nobody wrote one, with 🤔 votes that nobody followed up
  (no reflection naming the goal since).

Silence and concentration are personal: they go to facilitators only. Members who keep their activity
private (`members private on`) are never named for what they did or did not do.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from core.commands import RADAR_THRESHOLDS
from core.goals import Goal, GoalStatus
from core.lifecycle import Group
from core.members import RosterEntry

WINDOW = timedelta(days=30)  # what "recent" acts and active members mean
MIN_ACTS = 5
MIN_ACTIVE = 3
# A finding told by the weekly radar is not told again for this long (unless it is asked for).
REPEAT_AFTER = timedelta(days=28)


class Kind(Enum):
    SILENCE = "silence"
    CONCENTRATION = "concentration"
    STASIS = "stasis"
    BLOCK = "blocks"
    CONCERNS = "concerns"

    @property
    def personal(self) -> bool:
        return self in (Kind.SILENCE, Kind.CONCENTRATION)


# Each threshold: its default, its unit and the range a group may set.
@dataclass(frozen=True, slots=True)
class Limit:
    default: int
    unit: str  # "days" or "%"
    low: int
    high: int
    what: str


LIMITS: dict[str, Limit] = {
    "silence": Limit(14, "days", 1, 365, "a member with no activity for this long is silent"),
    "concentration": Limit(50, "%", 20, 95, "one member making more than this share of the acts"),
    "stasis": Limit(28, "days", 7, 365, "no goal done and no phase move for this long"),
    "blocks": Limit(7, "days", 1, 90, "a blocked goal not reshaped within this long"),
    "concerns": Limit(7, "days", 1, 90, "concerns of an accepted goal not followed up within this long"),
}

assert tuple(LIMITS) == RADAR_THRESHOLDS, "the radar command's choices are its thresholds"

PATTERN_OF: dict[Kind, str] = {
    Kind.SILENCE: "personal-invitation",
    Kind.CONCENTRATION: "rotate-roles",
    Kind.STASIS: "start-small",
    Kind.BLOCK: "reshape-and-return",
    Kind.CONCERNS: "hear-the-concerns",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    values: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, group: Group) -> Thresholds:
        return cls(dict(group.radar_limits))

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, LIMITS[name].default)

    def days(self, name: str) -> timedelta:
        return timedelta(days=self[name])


def own_limits(limits: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """The thresholds a group set itself (`Group.radar_limits`): a default is no setting of its own."""
    return tuple(sorted((k, v) for k, v in limits.items() if v != LIMITS[k].default))


def limits_json(limits: Mapping[str, int]) -> str:
    """A group's own thresholds as stored; empty when it keeps every default."""
    kept = own_limits(limits)
    return json.dumps(dict(kept)) if kept else ""


class ActKind(Enum):
    PROPOSAL = "proposal"
    CLOSING = "closing"
    PHASE_MOVE = "phase move"


@dataclass(frozen=True, slots=True)
class Act:
    """Something a member did that steers the group: proposed a goal, closed something, moved the phase."""

    kind: ActKind
    key: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """What the radar reads of one group."""

    group: Group
    roster: Sequence[RosterEntry]  # the members on the roster
    acts: Sequence[Act]  # of the last WINDOW
    goals: Sequence[Goal]
    last_done: datetime | None  # the latest goal marked done
    concern_votes: Mapping[int, int]  # goal id -> 🤔 votes, for accepted goals
    followed_up: frozenset[int]  # goal ids a reflection named after they were decided
    # Accepted goals' concerns voiced in words: goal id -> the ids of those not addressed (empty when
    # every one was). Goals nobody wrote a concern about are left out.
    voiced: Mapping[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    subject: str  # a member's key, "goal:<id>", or "" for the group
    text: str  # as facilitators read it
    group_text: str = ""  # the gentle suggestion for the channel: non-personal findings only

    @property
    def pattern(self) -> str:
        return PATTERN_OF[self.kind]


def _days(delta: timedelta) -> int:
    return max(int(delta.total_seconds() // 86400), 0)


def scan(facts: Facts, now: datetime) -> list[Finding]:
    """Every finding in the group's record now, silence first."""
    limits = Thresholds.of(facts.group)
    found: list[Finding] = []
    found += _silence(facts, limits, now)
    found += _concentration(facts, limits, now)
    found += _stasis(facts, limits, now)
    found += _blocks(facts, limits, now)
    found += _concerns(facts, limits, now)
    return found


def _silence(facts: Facts, limits: Thresholds, now: datetime) -> list[Finding]:
    silent_since = now - limits.days("silence")
    found = []
    for m in facts.roster:  # in the order they joined
        if m.private:
            continue
        last = m.last_seen
        if last <= silent_since:
            text = f"{m.name} has done nothing in the group for {_days(now - last)} days."
            found.append(Finding(Kind.SILENCE, m.key, text))
    return found


def _active(facts: Facts, now: datetime) -> list[RosterEntry]:
    return [m for m in facts.roster if now - m.last_seen <= WINDOW]


def _concentration(facts: Facts, limits: Thresholds, now: datetime) -> list[Finding]:
    recent = [a for a in facts.acts if now - a.at <= WINDOW]
    if len(recent) < MIN_ACTS or len(_active(facts, now)) < MIN_ACTIVE:
        return []
    names = {m.key: m for m in facts.roster}
    key, count = Counter(a.key for a in recent).most_common(1)[0]
    member = names.get(key)
    if member is None or member.private or count * 100 <= limits["concentration"] * len(recent):
        return []
    kinds = Counter(a.kind for a in recent if a.key == key)
    what = ", ".join(f"{n} {k.value}{'s' if n != 1 else ''}" for k, n in kinds.most_common())
    text = (
        f"{member.name} made {count} of the group's {len(recent)} proposals, closings and phase moves"
        f" in 30 days ({what})."
    )
    return [Finding(Kind.CONCENTRATION, key, text)]


def _stasis(facts: Facts, limits: Thresholds, now: datetime) -> list[Finding]:
    span = limits.days("stasis")
    group = facts.group
    since = max([t for t in (facts.last_done, group.phase_since, group.created_at) if t is not None])
    still_active = group.last_activity_at is not None and now - group.last_activity_at <= limits.days(
        "silence"
    )
    if now - since < span or not still_active:
        return []
    weeks = _days(now - since) // 7
    text = f"No goal was done and the phase has not moved for {weeks} weeks, though the group is active."
    group_text = (
        f"It has been {weeks} weeks since a goal was done or the group changed phase. Maybe a small"
        " step would help: one goal you can finish this week."
    )
    return [Finding(Kind.STASIS, "", text, group_text)]


def _blocks(facts: Facts, limits: Thresholds, now: datetime) -> list[Finding]:
    found = []
    for goal in facts.goals:
        if goal.status is not GoalStatus.BLOCKED or now - goal.updated_at < limits.days("blocks"):
            continue
        reshaped = any(
            g.reshapes_id == goal.id
            or (g.id != goal.id and g.proposer_key == goal.proposer_key and g.created_at >= goal.updated_at)
            for g in facts.goals
        )
        if reshaped:
            continue
        days = _days(now - goal.updated_at)
        text = f"Goal {goal.id} ({goal.text}) has been blocked for {days} days and was not reshaped."
        group_text = (
            f"Goal {goal.id} has been blocked for {days} days. Could the group hear what would make it"
            " acceptable, and reshape it or let it go?"
        )
        found.append(Finding(Kind.BLOCK, f"goal:{goal.id}", text, group_text))
    return found


def _concerns(facts: Facts, limits: Thresholds, now: datetime) -> list[Finding]:
    found = []
    for goal in facts.goals:
        if goal.status is not GoalStatus.ACCEPTED or now - goal.updated_at < limits.days("concerns"):
            continue
        if goal.id in facts.voiced:
            open_ids = facts.voiced[goal.id]
            if not open_ids:
                continue
            which = ", ".join(str(i) for i in open_ids)
            many = len(open_ids) != 1
            text = (
                f"Goal {goal.id} ({goal.text}) was accepted with {len(open_ids)}"
                f" concern{'s' if many else ''} nobody has addressed (concern{'s' if many else ''}"
                f" {which})."
            )
        else:
            votes = facts.concern_votes.get(goal.id, 0)
            if not votes or goal.id in facts.followed_up:
                continue
            text = (
                f"Goal {goal.id} ({goal.text}) was accepted with {votes} 🤔, and nobody has followed the"
                " concerns up."
            )
        found.append(Finding(Kind.CONCERNS, f"goal:{goal.id}", text))
    return found


_GOAL_REF = re.compile(r"\bgoal\s*#?(\d{1,18})\b", re.IGNORECASE)


def goals_named(text: str) -> set[int]:
    """The goals a reflection names ("goal 4", "Goal #4")."""
    return {int(n) for n in _GOAL_REF.findall(text)}


def fresh(
    findings: Sequence[Finding], told: Mapping[tuple[str, str], datetime], now: datetime
) -> list[Finding]:
    """The findings not told in the last `REPEAT_AFTER` (told: (kind, subject) -> when last)."""
    return [
        f
        for f in findings
        if (last := told.get((f.kind.value, f.subject))) is None or now - last >= REPEAT_AFTER
    ]


def private_report(group: Group, findings: Sequence[Finding], prefix: str, *, weekly: bool) -> str:
    """What facilitators read: every finding with the pattern to try."""
    when = "This week's radar" if weekly else "The radar"
    where = group.channel.name
    if not findings:
        return f"{when} for {where}: nothing stands out. Keep going!"
    lines = [f"{when} for {where} (only facilitators see this):"]
    for f in findings:
        lines.append(f"• {f.text} Try {f.pattern}: {prefix}patterns {f.pattern}")
    return "\n".join(lines)


def group_report(findings: Sequence[Finding], prefix: str) -> str:
    """The gentle suggestion for the channel: non-personal findings only, never a name."""
    shared = [f for f in findings if not f.kind.personal and f.group_text]
    if not shared:
        return ""
    lines = ["A gentle look at how the group is going:"]
    lines += [f"• {f.group_text} ({prefix}patterns {f.pattern})" for f in shared]
    return "\n".join(lines)
