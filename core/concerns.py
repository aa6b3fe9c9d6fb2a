"""Concerns heard: what a member who reacted 🤔 or ⛔ on a consent poll says is their concern. Pure rules.

A concern is written with `concern <goal> <text>`, by name, or with `--anonymous` without one: an
anonymous concern keeps no link to its author, not even the minute it was written (its time is kept to
the day). The decision of the goal lists its concerns, `goal show` too; a facilitator marks one addressed
(`concern done <id> [note]`), and the radar reads those nobody addressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.goals import BLOCK, BLOCK_OPTION, CONCERNS, Goal, GoalStatus
from core.paging import one_line
from core.polls import ReactionChange

ANONYMOUS = "anonymous"
# Goals a member may still voice a concern about: being decided, or decided and not finished.
HEARD_ON = (GoalStatus.PROPOSED, GoalStatus.ACCEPTED, GoalStatus.BLOCKED)
CONCERN_OPTION = 1  # 🤔's place among the consent options (core/goals.py CONSENT_OPTIONS)
ASKED_ON = (CONCERN_OPTION, BLOCK_OPTION)
SHOWN_CONCERN = 120  # how much of a concern a decision, `goal show` and a reshaped goal's label quote


@dataclass(frozen=True, slots=True)
class Concern:
    id: int
    group_id: int
    goal_id: int
    text: str
    author_key: str  # "" for an anonymous concern: no link to its author at all
    author_name: str
    at: datetime  # to the day for an anonymous concern
    addressed_at: datetime | None = None
    addressed_by_key: str = ""
    addressed_by_name: str = ""
    note: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.author_key

    @property
    def by(self) -> str:
        """Who voiced it, as members read it: their name, or "anonymous"."""
        return ANONYMOUS if self.anonymous else self.author_name

    @property
    def addressed(self) -> bool:
        return self.addressed_at is not None


def to_ask(changes: Sequence[ReactionChange]) -> list[tuple[str, str, int]]:
    """Who to ask for their concern after a batch of reactions on one consent poll: (key, name, option)
    of each member whose vote at the end of the batch is a 🤔 or ⛔ added in it. A consent poll is single
    choice, the latest reaction counts: a ✅ after it, or taking it back, leaves nothing to ask."""
    wanted: dict[str, tuple[str, int]] = {}
    for c in changes:
        if c.present and c.option in ASKED_ON:
            wanted[c.user_key] = (c.user_name, c.option)
        elif c.present or wanted.get(c.user_key, ("", -1))[1] == c.option:
            wanted.pop(c.user_key, None)
    return [(key, name, option) for key, (name, option) in wanted.items()]


def ask_text(goal: Goal, option: int, channel: str, prefix: str, *, structured: bool = False) -> str:
    """The private question to a member who reacted 🤔 or ⛔ on a goal's consent poll, with the command
    as they write it: typed (`/concern 4 ...`), or with named options where commands are structured."""
    emoji = BLOCK if option == BLOCK_OPTION else CONCERNS
    if structured:
        named = f"{prefix}concern add goal:{goal.id} text:<your concern>"
        how = f"{named}, with anonymous:True to be heard without your name"
    else:
        how = (
            f"{prefix}concern {goal.id} <your concern>, or {prefix}concern --anonymous {goal.id}"
            " <your concern> to be heard without your name"
        )
    return (
        f"You reacted {emoji} on goal {goal.id} ({one_line(goal.text, SHOWN_CONCERN)}) in {channel}."
        f" What is your concern? Answer with {how}."
    )


def concern_line(c: Concern, *, full: bool = False) -> str:
    """`Concern 3 (dave): too big for a month`, and whether it was addressed."""
    text = c.text if full else one_line(c.text, SHOWN_CONCERN)
    line = f"Concern {c.id} ({c.by}): {text}"
    if c.addressed:
        note = f": {one_line(c.note, SHOWN_CONCERN)}" if c.note else ""
        line += f" [addressed by {c.addressed_by_name}{note}]"
    return line


def concerns_heard(concerns: Sequence[Concern]) -> str:
    """The lines a decision and `goal show` add: every concern of the goal, oldest first; empty for none."""
    if not concerns:
        return ""
    return "\n".join(["Concerns heard:", *(f"  {concern_line(c)}" for c in concerns)])


def blockers_words(blockers: Sequence[tuple[str, str]], concerns: Sequence[Concern]) -> list[str]:
    """Each blocker (key, name) as a reshaped goal's label names them: with their latest concern quoted
    when they gave one by name (`dave: 'too big for a month'`). Anonymous concerns are never matched."""
    latest = {c.author_key: c for c in sorted(concerns, key=lambda c: c.id) if not c.anonymous}
    words = []
    for key, name in blockers:
        said = latest.get(key)
        words.append(f"{name}: '{one_line(said.text, SHOWN_CONCERN)}'" if said is not None else name)
    return words
