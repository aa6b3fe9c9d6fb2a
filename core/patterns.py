"""The pattern catalogue: what peer-learning groups often run into, and what to try. Data, no I/O.

Written for Peerbot in its own words. A pattern is something that helps; an anti-pattern is something
that quietly goes wrong. Each names the problem, what to try, and the command that helps. The radar
(core/radar.py) names one pattern with each finding; `patterns` lists them and `patterns <name>` shows
one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A name is one word or hyphenated words: `start-small`.
NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    anti: bool  # an anti-pattern: what goes wrong, rather than what helps
    problem: str
    to_try: str
    command: str  # the command that helps, without its prefix

    def render(self, prefix: str) -> str:
        kind = "Anti-pattern" if self.anti else "Pattern"
        return (
            f"{kind}: {self.name}\n"
            f"The problem: {self.problem}\n"
            f"What to try: {self.to_try}\n"
            f"Helps: {prefix}{self.command}"
        )


CATALOGUE: tuple[Pattern, ...] = (
    Pattern(
        "start-small",
        False,
        "A big goal sits on the roadmap for weeks and nobody knows where to begin.",
        "Cut off one piece the group can finish within a week, propose it as its own goal, and mark it"
        " done when it is.",
        "goal propose <one small step>",
    ),
    Pattern(
        "reflect-often",
        False,
        "The group works, but nobody stops to ask what they are learning, so the same snags come back.",
        "Put a short reflection on a schedule the group likes, and answer it in a sentence or two.",
        "nudge add weekly fri 17:00",
    ),
    Pattern(
        "personal-invitation",
        False,
        "A member has gone quiet. A message to everyone rarely reaches them.",
        "Write to them yourself, privately and kindly: ask how they are and whether the group still fits"
        " what they came for. No pressure to come back.",
        "members",
    ),
    Pattern(
        "rotate-roles",
        False,
        "One person proposes, closes and moves the group along; the others wait, and that person tires.",
        "Take turns: let someone else propose the next goal, close the next poll or suggest the next"
        " phase. Ask who would like to try.",
        "phase show",
    ),
    Pattern(
        "reshape-and-return",
        False,
        "A goal was blocked and then left lying, so the reason for the block was never heard.",
        "Ask those who blocked what would make it acceptable, reshape the goal with them, and propose it"
        " again; or drop it on purpose.",
        "goal list blocked",
    ),
    Pattern(
        "hear-the-concerns",
        False,
        "A goal was accepted with 🤔 concerns, and nobody asked what they were.",
        "Ask the group what worried them about the goal, and write down what you agree to watch for.",
        "reflect goal <number>: <what we heard>",
    ),
    Pattern(
        "step-back",
        False,
        "Weeks go by with nothing finished and no change of course.",
        "Pause the work for an action review: what did we set out to do, what is really happening, and"
        " what will we change?",
        "review start",
    ),
    Pattern(
        "pulse-check",
        False,
        "Nobody is sure how the others feel about the group.",
        "Ask for a quick 🟢 🟡 🔴 and talk about what the colours say.",
        "pulse",
    ),
    Pattern(
        "buddy-up",
        False,
        "Newcomers arrive, read the channel, and leave without saying a word.",
        "Offer to be a buddy, so that each newcomer has one person to ask.",
        "buddy on",
    ),
    Pattern(
        "quiet-drift",
        True,
        "Members drift away one by one without anyone noticing, until the group is two people.",
        "Notice early and invite personally (see personal-invitation); ask the group whether its rhythm"
        " still suits everyone.",
        "members",
    ),
    Pattern(
        "one-voice",
        True,
        "The group's decisions and moves all come from one member, so the group stops being peer-led.",
        "Share the facilitating (see rotate-roles), and make room for the quieter voices first.",
        "members",
    ),
    Pattern(
        "silent-consent",
        True,
        "Decisions pass because few people vote; those who did not vote live with the outcome.",
        "Ask everyone to vote before a goal closes, and raise the number of ✅ it needs if the group"
        " is bigger now.",
        "goal rules",
    ),
)

BY_NAME: dict[str, Pattern] = {p.name: p for p in CATALOGUE}


def catalogue_listing(prefix: str) -> str:
    """The `patterns` answer: every name with its problem, patterns first."""
    lines = ["Patterns (what helps):"]
    lines += [f"  {p.name}: {p.problem}" for p in CATALOGUE if not p.anti]
    lines.append("Anti-patterns (what quietly goes wrong):")
    lines += [f"  {p.name}: {p.problem}" for p in CATALOGUE if p.anti]
    lines.append(f"Show one with {prefix}patterns <name>.")
    return "\n".join(lines)
