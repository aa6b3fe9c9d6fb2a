"""Newcomers: the welcome a group gives them, and when it is given. No I/O.

A welcome names the newcomers without pinging them, and says what the group is for (its accepted goals),
where it stands (its phase, since when), what comes next (its next nudge or check-in), and three first
steps that fit the phase. The first join is welcomed at once and opens a window of `WELCOME_WINDOW`:
further joins in it are welcomed together, in one message, when it ends, so that ten people arriving
with one invitation get one welcome and not ten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import format_age, format_time
from core.lifecycle import PHASE_FOCUS, Phase

WELCOME_WINDOW = timedelta(minutes=10)
MAX_WELCOME_TEXT = 500
MAX_NAMED = 10  # newcomers a shared welcome names; the others are counted

# The second and third first steps, by phase: what a newcomer can usefully do there and then.
PHASE_STEPS: dict[Phase, tuple[str, str]] = {
    Phase.CONVENING: (
        "Say hello in the channel: what brings you to this group?",
        "Share what you would like to learn together: {prefix}reflect <your thought>",
    ),
    Phase.ORGANIZING: (
        "Read the goals and react on the open proposals (✅ agree, 🤔 concerns, ⛔ block): {prefix}goal list",
        "Put forward something to learn together: {prefix}goal propose <text>",
    ),
    Phase.COOPERATING: (
        "Pick a goal to work on with the others: {prefix}goal list",
        "Tell the group what you tried or learned: {prefix}reflect <your thought>",
    ),
    Phase.ASSESSING: (
        "See what the group set out to do: {prefix}goal list",
        "Add your view to the review: {prefix}reflect q<number> <your answer>",
    ),
    Phase.CHANGING: (
        "See what the group did so far: {prefix}goal list",
        "Suggest what to change or try next: {prefix}goal propose <text>",
    ),
}


def window_end(now: datetime) -> datetime:
    """Until when further joins wait for a shared welcome, after one welcomed at once `now`. A join is
    welcomed at once when no such window is open (`GroupRepo.claim_welcome`)."""
    return now + WELCOME_WINDOW


@dataclass(frozen=True, slots=True)
class GroupPicture:
    """What a welcome says about the group."""

    phase: Phase
    phase_since: datetime
    timezone: str
    goals: Sequence[str] = ()  # the accepted goals
    next_up: tuple[str, datetime] | None = None  # what the group is nudged with next, and when
    own_text: str = ""  # the group's own words for newcomers (`welcome set`)


def names(people: Sequence[str]) -> str:
    """`frank`, `frank and grace`, `frank, grace and heidi`; past `MAX_NAMED`, `... and 12 more`."""
    if len(people) > MAX_NAMED:
        return f"{', '.join(people[:MAX_NAMED])} and {len(people) - MAX_NAMED} more"
    if len(people) <= 1:
        return "".join(people)
    return f"{', '.join(people[:-1])} and {people[-1]}"


def welcome_text(
    newcomers: Sequence[str], introduced: bool, group: GroupPicture, now: datetime, prefix: str
) -> str:
    """The welcome for one or more newcomers (by name, which pings nobody). `introduced`: all of them
    said a few words about themselves already, so the first step is to meet the others instead."""
    lines = [f"Welcome, {names(newcomers)}! 👋"]
    if group.own_text:
        lines.append(group.own_text)
    if group.goals:
        lines.append("What we are here for: " + "; ".join(group.goals) + ".")
    else:
        lines.append(
            "What we are here for: no goal is agreed yet; shaping them together is part of the work."
        )
    lines.append(
        f"Where we stand: {group.phase.title} since {format_time(group.phase_since, group.timezone)}"
        f" ({format_age(group.phase_since, now)}), {PHASE_FOCUS[group.phase]}."
    )
    if group.next_up is not None:
        what, when = group.next_up
        lines.append(f"Next: {what}, {format_time(when, group.timezone)}.")
    else:
        lines.append("Next: nothing is scheduled yet.")
    first = (
        f"Meet the others: {prefix}members"
        if introduced
        else f"Introduce yourself: {prefix}join <a few words about yourself>"
    )
    second, third = (step.format(prefix=prefix) for step in PHASE_STEPS[group.phase])
    lines += ["Three first steps:", f"1. {first}", f"2. {second}", f"3. {third}"]
    return "\n".join(lines)
