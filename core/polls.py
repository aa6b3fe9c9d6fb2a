"""Emoji-reaction polls as pure rules: how a poll is asked, how reactions become a tally, how it reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from core.clock import format_time
from core.commands import UsageError
from core.emoji import canonical, looks_like_emoji
from core.paging import Item, Listing, one_line
from core.refs import MessageRef

if TYPE_CHECKING:
    from core.goals import Goal
    from core.lifecycle import Group

NUMBER_EMOJI = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")
MAX_OPTION = 100  # an option's label; the command spec bounds the question, the count and the time
DEFAULT_DURATION = timedelta(hours=24)
BAR_WIDTH = 10
# An anonymous poll's results show no count below this many voters: with fewer, who voted how shows.
MIN_VOTERS_SHOWN = 3
TOO_FEW = "Too few votes to show without revealing who voted."


class PollKind(Enum):
    POLL = "poll"
    PULSE = "pulse"
    CONSENT = "consent"  # the decision poll of a proposed goal


@dataclass(frozen=True, slots=True)
class PollOption:
    emoji: str  # as shown; compared through canonical()
    label: str


@dataclass(frozen=True, slots=True)
class PollRequest:
    """A poll as asked for, before it is stored."""

    question: str
    options: tuple[PollOption, ...]
    multiple: bool = False
    hidden: bool = False
    duration: timedelta = DEFAULT_DURATION
    anonymous: bool = False  # votes are cast privately, under a keyed hash (core/ballots.py)


@dataclass(frozen=True, slots=True)
class Poll:
    id: int
    group_id: int
    kind: PollKind
    question: str
    options: tuple[PollOption, ...]
    multiple: bool
    hidden: bool
    author_key: str
    author_name: str
    created_at: datetime
    closes_at: datetime
    closed_at: datetime | None = None
    message: MessageRef | None = None
    remind_at: datetime | None = None  # when its reminders are due (core/reminders.py); None: none due
    anonymous: bool = False

    def option_index(self, emoji: str) -> int | None:
        wanted = canonical(emoji)
        for i, option in enumerate(self.options):
            if canonical(option.emoji) == wanted:
                return i
        return None

    def is_open(self, at: datetime) -> bool:
        return self.closed_at is None and at < self.closes_at


@dataclass(frozen=True, slots=True)
class PollReaction:
    """A member's reaction on one option, present or taken back; `seq` orders a poll's changes."""

    user_key: str
    user_name: str
    option: int
    present: bool
    seq: int


@dataclass(frozen=True, slots=True)
class ReactionChange:
    user_key: str
    user_name: str
    option: int
    present: bool


@dataclass(frozen=True, slots=True)
class Tally:
    counts: tuple[int, ...]
    voters: int
    # Who chose each option, by name (used to ask blockers of a goal what would help).
    names: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """The tallies of a group's polls as `tally` counts them, counted where they are kept (for the
    group's page), polls without votes left out: by poll, the votes on each option (options without
    any left out), and who voted."""

    votes: Mapping[int, Mapping[int, int]]
    voters: Mapping[int, frozenset[str]]  # by key: an anonymous poll's are keyed hashes


VOTE_BUTTON = "vote"


def vote_button(poll_id: int | None, option: int) -> str:
    """The id of the button that votes for an option (numbered from 1) of an anonymous poll."""
    return f"{VOTE_BUTTON}:{poll_id}:{option}"


def parse_vote_button(custom_id: str) -> tuple[int, int] | None:
    """(poll id, option) from a vote button's id; None for anything else."""
    kind, _, rest = custom_id.partition(":")
    poll, _, option = rest.partition(":")
    if kind != VOTE_BUTTON or not (
        poll.isascii() and poll.isdigit() and option.isascii() and option.isdigit()
    ):
        return None
    if len(poll) > 18 or len(option) > 3:
        return None
    return int(poll), int(option)


T = TypeVar("T")


def tally(poll: Poll, reactions: Sequence[PollReaction]) -> Tally:
    """Count the votes. In a single-choice poll a member's latest present reaction counts."""
    return count_votes(reactions, len(poll.options), multiple=poll.multiple)


def count_votes(reactions: Sequence[PollReaction], options: int, *, multiple: bool) -> Tally:
    """The tally of reactions on a poll of `options` options, when only its shape is at hand."""
    present = ((r.user_key, r.option, r.seq, r) for r in reactions if r.present)
    counts = [0] * options
    names: list[list[str]] = [[] for _ in range(options)]
    chosen = counted(present, options, multiple=multiple)
    for picks in chosen.values():
        for r in picks:
            counts[r.option] += 1
            names[r.option].append(r.user_name)
    return Tally(tuple(counts), len(chosen), tuple(tuple(sorted(n)) for n in names))


def counted(
    present: Iterable[tuple[str, int, int, T]], options: int, *, multiple: bool
) -> dict[str, list[T]]:
    """What counts of a poll's present reactions, given as (member key, option, seq, item): by member,
    the items of every option they chose, or in a single-choice poll of the latest one only. Options
    outside the poll's are ignored."""
    chosen: dict[str, list[T]] = {}
    for key, option, _, item in sorted(present, key=lambda v: v[2]):
        if 0 <= option < options:
            chosen.setdefault(key, []).append(item)
    if not multiple:
        for picks in chosen.values():
            del picks[:-1]
    return chosen


def poll_request(
    question: str,
    texts: Sequence[str],
    *,
    multiple: bool = False,
    hidden: bool = False,
    duration: timedelta | None = None,
    anonymous: bool = False,
) -> PollRequest:
    """A poll from its arguments, however they came (checked for length, count and duration by the
    command spec): each option's emoji, its own or a number, and no emoji twice."""
    options = []
    for i, raw in enumerate(texts):
        first, _, after = raw.partition(" ")
        if looks_like_emoji(first):
            emoji, label = first, after.strip() or first
        else:
            emoji, label = NUMBER_EMOJI[i], raw
        if len(label) > MAX_OPTION:
            raise UsageError(f"Option {i + 1} is too long ({len(label)} characters, at most {MAX_OPTION}).")
        options.append(PollOption(emoji, label))
    seen = [canonical(o.emoji) for o in options]
    if len(set(seen)) != len(seen):
        raise UsageError("Two options use the same emoji; give each option its own.")
    return PollRequest(question, tuple(options), multiple, hidden, duration or DEFAULT_DURATION, anonymous)


def _bar(count: int, total: int) -> str:
    filled = round(BAR_WIDTH * count / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def render_poll(poll: Poll, tz: str = "UTC", private_vote: str = "") -> str:
    """The poll message members react to; for an anonymous poll, `private_vote` says how to vote
    privately on this platform ("press a button below")."""
    lines = [f"{'Anonymous poll' if poll.anonymous else 'Poll'} {poll.id}: {poll.question}"]
    lines += [
        f"{i}. {o.emoji} {o.label}" if poll.anonymous else f"{o.emoji} {o.label}"
        for i, o in enumerate(poll.options, 1)
    ]
    hidden = " Results stay hidden until it closes." if poll.hidden else ""
    closes = format_time(poll.closes_at, tz)
    if poll.anonymous:
        how = "as many as you like" if poll.multiple else "one choice; a new one replaces the last"
        lines.append(
            f"Vote privately ({how}): {private_vote}. Nobody sees who voted how, and once the poll closes"
            f" nothing ties anyone to a vote. Results show from {MIN_VOTERS_SHOWN} voters."
            f" Closes {closes}.{hidden}"
        )
        return "\n".join(lines)
    how = "pick as many as you like" if poll.multiple else "one choice; your latest reaction counts"
    lines.append(f"React to vote ({how}). Closes {closes}.{hidden}")
    return "\n".join(lines)


def render_results(poll: Poll, t: Tally, *, final: bool) -> str:
    head = f"Poll {poll.id} {'closed' if final else 'so far'}: {poll.question}"
    if poll.anonymous and t.voters < MIN_VOTERS_SHOWN:
        return f"{head}\n{TOO_FEW}"
    if poll.hidden and not final:
        who = "person has" if t.voters == 1 else "people have"
        return f"{head}\nResults are hidden until it closes; {t.voters} {who} voted."
    total = sum(t.counts)
    lines = [head]
    for option, count in zip(poll.options, t.counts, strict=True):
        share = f"{round(100 * count / total)}%" if total else "0%"
        lines.append(f"{option.emoji} {option.label}  {_bar(count, total)} {count} ({share})")
    lines.append(f"{t.voters} {'voter' if t.voters == 1 else 'voters'}.")
    return "\n".join(lines)


# Listing lines show this much of a poll's question (or a goal's text), and of an option's label.
SHOWN_QUESTION = 80
SHOWN_LABEL = 40


def as_sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!", "…")) else text + "."


def poll_title(poll: Poll, goal: Goal | None = None) -> str:
    """`Poll 3: Which day?`, `Pulse check 4: How is the group doing?`, and for a consent poll its
    goal: `Goal 2: Learn Rust together`."""
    if goal is not None:
        return f"Goal {goal.id}: {one_line(goal.text, SHOWN_QUESTION)}"
    label = "Pulse check" if poll.kind is PollKind.PULSE else "Poll"
    return f"{label} {poll.id}: {one_line(poll.question, SHOWN_QUESTION)}"


def how_to_vote(poll: Poll) -> str:
    """`✅ agree, 🤔 concerns, ⛔ block`: the emoji to react with, and what each means."""
    return ", ".join(f"{o.emoji} {one_line(o.label, SHOWN_LABEL)}" for o in poll.options)


def open_poll_line(poll: Poll, goal: Goal | None, voters: int, tz: str) -> str:
    """An open poll as `poll list` shows it: its number and kind, question, closing time and voters so
    far. A hidden poll's voters are counted too: who voted is no secret until it closes, only how."""
    if goal is not None:
        kind, about = f"goal {goal.id}", one_line(goal.text, SHOWN_QUESTION)
    else:
        kind = {PollKind.PULSE: "pulse check", PollKind.CONSENT: "consent"}.get(poll.kind, "poll")
        about = one_line(poll.question, SHOWN_QUESTION)
    if poll.hidden:
        kind = f"hidden {kind}"
    if poll.anonymous:
        kind = f"anonymous {kind}"
    so_far = f"{voters} {'voter' if voters == 1 else 'voters'} so far"
    return (
        f"Poll {poll.id} ({kind}): {as_sentence(about)} Closes {format_time(poll.closes_at, tz)}; {so_far}."
    )


def open_polls_listing(
    group: Group,
    polls: Sequence[Poll],
    goals: Mapping[int, Goal],
    voters: Mapping[int, int],
    prefix: str,
) -> Listing:
    """`poll list`: the group's open polls, closing soonest first, with the goals of consent polls and
    the voters of each (by poll id)."""
    tz = group.timezone
    return Listing(
        what="open polls",
        head=f"Open polls in {group.channel.name}, closing soonest first:",
        items=[Item("  " + open_poll_line(p, goals.get(p.id), voters.get(p.id, 0), tz)) for p in polls],
        command=f"{prefix}poll list",
        empty=f"No poll is open in {group.channel.name}. Ask the group with"
        f" {prefix}poll create <question> | <option> | <option>.",
        foot=f"Vote by reacting on a poll. What still needs your vote: {prefix}pending.",
    )
