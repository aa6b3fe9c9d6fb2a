"""Shared goals decided by consent: the rules of a proposal's life, free of I/O."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from core.polls import Poll, PollOption, PollReaction, Tally

AGREE, CONCERNS, BLOCK = "✅", "🤔", "⛔"
CONSENT_OPTIONS = (
    PollOption(AGREE, "agree"),
    PollOption(CONCERNS, "concerns"),
    PollOption(BLOCK, "block"),
)
BLOCK_OPTION = 2  # ⛔'s place among CONSENT_OPTIONS
DEFAULT_QUORUM = 2
DEFAULT_WINDOW = timedelta(hours=48)
MAX_GOAL = 300


class GoalStatus(Enum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    BLOCKED = "blocked"
    LAPSED = "lapsed"
    DONE = "done"
    DROPPED = "dropped"
    SUPERSEDED = "superseded"  # reshaped by a later goal (`goal amend`)


OPEN_STATUSES = (GoalStatus.PROPOSED, GoalStatus.ACCEPTED)


@dataclass(frozen=True, slots=True)
class Goal:
    id: int
    group_id: int
    text: str
    status: GoalStatus
    proposer_key: str
    proposer_name: str
    created_at: datetime
    updated_at: datetime
    poll_id: int | None = None
    # Who ran the command that proposed it: the proposer, or for a goal made from a member's
    # reflection (`goal propose r3`), whoever put their reflection forward. The proposer owns the goal.
    put_forward_by_key: str = ""
    put_forward_by_name: str = ""
    reshapes_id: int | None = None  # the goal this one reshapes (`goal amend`)

    @property
    def put_forward_by_another(self) -> bool:
        return bool(self.put_forward_by_key) and self.put_forward_by_key != self.proposer_key


@dataclass(frozen=True, slots=True)
class Decision:
    status: GoalStatus
    agree: int
    concerns: int
    blockers: tuple[str, ...]


def decide(t: Tally, quorum: int) -> Decision:
    """Consent: accepted with at least `quorum` ✅ and no ⛔; any ⛔ blocks; otherwise it lapses."""
    agree, concerns, block = t.counts
    blockers = t.names[2]
    if block:
        status = GoalStatus.BLOCKED
    elif agree >= quorum:
        status = GoalStatus.ACCEPTED
    else:
        status = GoalStatus.LAPSED
    return Decision(status, agree, concerns, blockers)


def blocking_votes(poll: Poll, reactions: Sequence[PollReaction]) -> list[PollReaction]:
    """The ⛔ that count on a consent poll, as `tally` counts them (a member's latest present reaction),
    by name: who blocked, with their keys to write to them."""
    latest: dict[str, PollReaction] = {}
    for r in sorted(reactions, key=lambda r: r.seq):
        if r.present and 0 <= r.option < len(poll.options):
            latest[r.user_key] = r
    return sorted((r for r in latest.values() if r.option == BLOCK_OPTION), key=lambda r: r.user_name)


def decided_early(t: Tally, quorum: int, roster: Collection[str], voters: Collection[str]) -> bool:
    """A consent poll need not wait for the end of its window when every member on the roster (`roster`:
    their keys; there is at least one) has voted (`voters`: the keys with a vote), nobody blocks, and it
    has its quorum of ✅: it is accepted then, whatever the window's remaining time would bring."""
    if not roster or any(key not in voters for key in roster):
        return False
    return decide(t, quorum).status is GoalStatus.ACCEPTED


def early_note(roster_size: int) -> str:
    """Why a decision came before the end of its window, for the result."""
    everyone = "the one member" if roster_size == 1 else f"all {roster_size} members"
    return f"Decided early: {everyone} on the roster {'has' if roster_size == 1 else 'have'} voted."


def reshape_label(old: Goal, blockers: Sequence[str]) -> str:
    """What follows a reshaped goal's number: " (reshapes goal 4, blocked by dave: 'too big')", each
    blocker as core/concerns.py `blockers_words` names them. Blockers of a proposal still open have
    blocked it so far."""
    who = ", ".join(blockers)
    if not blockers:
        return f" (reshapes goal {old.id})"
    so_far = " so far" if old.status is GoalStatus.PROPOSED else ""
    return f" (reshapes goal {old.id}, blocked{so_far} by {who})"


def render_decision(goal: Goal, d: Decision, quorum: int) -> str:
    votes = f"{AGREE} {d.agree}, {CONCERNS} {d.concerns}, {BLOCK} {len(d.blockers)}"
    if d.status is GoalStatus.ACCEPTED:
        return f"Goal {goal.id} accepted by consent: {goal.text} ({votes}). It is on the roadmap now."
    if d.status is GoalStatus.BLOCKED:
        who = ", ".join(d.blockers)
        return (
            f"Goal {goal.id} is blocked: {goal.text} ({votes}).\n"
            f"{who}: what would make it acceptable to you? Say it here so the group can"
            " reshape the goal and propose it again."
        )
    return (
        f"Goal {goal.id} lapsed: {goal.text} ({votes}; it needed {quorum} {AGREE} and no {BLOCK})."
        " Propose it again if it still matters."
    )


def decision_line(goal: Goal, d: Decision) -> str:
    """The one-line outcome the channel gets when the decision itself is posted in the poll's thread."""
    said = {GoalStatus.ACCEPTED: "accepted", GoalStatus.BLOCKED: "blocked"}.get(d.status, "lapsed")
    return f"Goal {goal.id} {said}: {goal.text}."


# The sections of `goal list`, open goals first: the roadmap, then proposals, then the rest.
SECTIONS = (
    (GoalStatus.ACCEPTED, "Roadmap (accepted)"),
    (GoalStatus.PROPOSED, "Proposed"),
    (GoalStatus.BLOCKED, "Blocked"),
    (GoalStatus.DONE, "Done"),
    (GoalStatus.LAPSED, "Lapsed"),
    (GoalStatus.DROPPED, "Dropped"),
    (GoalStatus.SUPERSEDED, "Superseded (reshaped)"),
)
# What `goal list <filter>` shows, for each filter of the command (core/commands.py GOAL_FILTERS).
SHOWN_BY_FILTER: dict[str, tuple[GoalStatus, ...]] = {
    "open": OPEN_STATUSES,
    **{status.value: (status,) for status, _ in SECTIONS},
    "all": tuple(status for status, _ in SECTIONS),
}


def roadmap(
    goals: list[Goal], shown: tuple[GoalStatus, ...] = SHOWN_BY_FILTER["all"]
) -> list[tuple[str, list[Goal]]]:
    """Sections of `goal list` with the statuses shown, in the order of `SECTIONS`, oldest first in each."""
    sections = [
        (title, sorted((g for g in goals if g.status is status), key=lambda g: g.id))
        for status, title in SECTIONS
        if status in shown
    ]
    return [(title, items) for title, items in sections if items]
