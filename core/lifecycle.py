"""The peer-learning lifecycle: phases, groups and the record of every move between phases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import Enum

from core.refs import ChannelRef


class Phase(Enum):
    CONVENING = "convening"
    ORGANIZING = "organizing"
    COOPERATING = "cooperating"
    ASSESSING = "assessing"
    CHANGING = "changing"

    @property
    def title(self) -> str:
        return self.value.capitalize()


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)

# What the group does in each phase, and what the bot offers then: shown by `status` and on entry.
PHASE_FOCUS: dict[Phase, str] = {
    Phase.CONVENING: "finding each other and making first connections",
    Phase.ORGANIZING: "agreeing on a shared purpose and how to work",
    Phase.COOPERATING: "working together on the goals you chose",
    Phase.ASSESSING: "looking at how the work and the learning are going",
    Phase.CHANGING: "deciding what to do differently next",
}

PHASE_WELCOME: dict[Phase, str] = {
    Phase.CONVENING: ("Say hello and tell the others what brought you here and what you hope to learn."),
    Phase.ORGANIZING: (
        "Time to shape a shared purpose: propose goals with {prefix}goal propose and decide them together."
    ),
    Phase.COOPERATING: ("Work on the goals you chose; share progress and ask for help early and often."),
    Phase.ASSESSING: (
        "Step back together: what did we set out to do, what is really happening, what have we learned?"
    ),
    Phase.CHANGING: (
        "Use what you learned: what will we keep, drop or try next? Then pick up the work again."
    ),
}


def welcome(phase: Phase, prefix: str) -> str:
    """The prompt posted when a group enters `phase`, with the platform's command prefix."""
    return PHASE_WELCOME[phase].format(prefix=prefix)


class UnknownPhase(ValueError):
    def __init__(self, given: str) -> None:
        super().__init__(given)
        self.given = given


def parse_phase(text: str) -> Phase:
    """Match a phase name case-insensitively, ignoring surrounding space."""
    wanted = text.strip().casefold()
    for phase in Phase:
        if phase.value == wanted:
            return phase
    raise UnknownPhase(text)


def phase_names() -> str:
    return ", ".join(p.value for p in PHASE_ORDER)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span of local time in which the bot posts no scheduled messages."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # spans midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Group:
    """One learning group, bound to one channel."""

    id: int
    channel: ChannelRef
    phase: Phase
    phase_since: datetime
    created_at: datetime
    # Per-group settings; None means the deployment's default.
    goal_quorum: int | None = None
    decision_window: timedelta | None = None
    timezone: str = "UTC"
    quiet: QuietHours | None = None
    auto_review: bool = True  # entering Assessing starts an action review
    auto_checkin: bool = True  # entering Cooperating adds a weekly check-in nudge
    last_activity_at: datetime | None = None
    heartbeat_sent_at: datetime | None = None
    welcome_text: str = ""  # the group's own words for newcomers (`welcome set`)
    # Joins until then wait for one shared welcome (core/newcomers.py); None: none is waiting.
    welcome_until: datetime | None = None
    # Reminders in the last share of a consent poll's or review's time, in percent (0: off); None: the
    # default (core/reminders.py).
    remind_window: int | None = None
    auto_radar: bool = True  # the weekly radar runs (core/radar.py)
    # The group's own radar thresholds, (name, value) pairs; the rest are the defaults.
    radar_limits: tuple[tuple[str, int], ...] = ()
    radar_next_at: datetime | None = None  # when the weekly radar runs next; None: not planned yet
    advised_at: datetime | None = None  # the last phase advice: at most one a week
    auto_threads: bool = True  # decisions get a thread of their own where the platform has threads


@dataclass(frozen=True, slots=True)
class PhaseChange:
    group_id: int
    from_phase: Phase | None
    to_phase: Phase
    at: datetime
    by: str
    reason: str
    by_key: str = ""


class SamePhase(ValueError):
    pass


def change_phase(group: Group, to: Phase, *, at: datetime, by: str, by_key: str, reason: str) -> PhaseChange:
    """Decide a move. The cycle is not linear: any phase may follow any other, but not itself."""
    if group.phase is to:
        raise SamePhase(to.title)
    return PhaseChange(
        group_id=group.id,
        from_phase=group.phase,
        to_phase=to,
        at=at,
        by=by,
        reason=reason,
        by_key=by_key,
    )


# Signals: what the group did that phase advice weighs, recorded as it happens.
GOAL_ACCEPTED = "goal_accepted"
ALL_GOALS_DONE = "all_goals_done"
REVIEW_CLOSED = "review_closed"
# A member closed something (a poll early, a review, a goal done or dropped): `detail` is their key.
# The radar counts these among the acts that steer the group (core/radar.py).
CLOSING = "closing"

# Convening has done its work when this many members on the roster have introduced themselves.
ENOUGH_INTRODUCED = 3
# Never more than one suggestion in this long.
ADVICE_EVERY = timedelta(days=7)

ADVICE: dict[Phase, str] = {
    Phase.ORGANIZING: (
        "Suggestion: {introduced} members have introduced themselves. The group may be ready for"
        " Organizing: agreeing on what to learn together. A facilitator can say {prefix}phase set organizing."
    ),
    Phase.COOPERATING: (
        "Suggestion: the group has a goal it agreed on. It may be time for Cooperating: working on it"
        " together. A facilitator can say {prefix}phase set cooperating."
    ),
    Phase.ASSESSING: (
        "{why}. Suggestion: this may be a good moment for Assessing, to look back together."
        " A facilitator can say {prefix}phase set assessing."
    ),
    Phase.CHANGING: (
        "Suggestion: with the review done, the group may be ready for Changing: deciding what"
        " to do differently. A facilitator can say {prefix}phase set changing."
    ),
}


@dataclass(frozen=True, slots=True)
class Signs:
    """What phase advice reads: the group's phase, the signals since it entered it (oldest first), how
    many members on the roster introduced themselves, whether the work has stalled (the radar's stasis),
    and when advice was last given."""

    phase: Phase
    since_phase: Sequence[str]
    introduced: int = 0
    stalled: bool = False
    advised_at: datetime | None = None


def advise(signs: Signs, now: datetime) -> Phase | None:
    """The phase the group's record points to, if it is not the one the group is in.

    Advice is a suggestion, never a move: a facilitator decides. At most one a week.
    """
    if signs.advised_at is not None and now - signs.advised_at < ADVICE_EVERY:
        return None
    latest = signs.since_phase[-1] if signs.since_phase else None
    phase = signs.phase
    suggested: Phase | None = None
    if latest == REVIEW_CLOSED:
        suggested = Phase.CHANGING
    elif latest == ALL_GOALS_DONE or (signs.stalled and phase is Phase.COOPERATING):
        suggested = Phase.ASSESSING
    elif GOAL_ACCEPTED in signs.since_phase and phase in (Phase.CONVENING, Phase.ORGANIZING):
        suggested = Phase.COOPERATING
    elif phase is Phase.CONVENING and signs.introduced >= ENOUGH_INTRODUCED:
        suggested = Phase.ORGANIZING
    return suggested if suggested is not phase else None


def advice_text(suggested: Phase, signs: Signs, prefix: str) -> str:
    done = ALL_GOALS_DONE in signs.since_phase[-1:]
    why = "Every accepted goal is done" if done else "The work seems to have stalled"
    return ADVICE[suggested].format(prefix=prefix, introduced=signs.introduced, why=why)
