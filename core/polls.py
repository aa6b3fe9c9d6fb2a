"""Emoji-reaction polls as pure rules: how a poll is asked, how reactions become a tally, how it reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from core.clock import format_time
from core.commands import LONGEST_OPEN, DurationTooLong, UsageError, is_blank, parse_duration
from core.emoji import canonical, looks_like_emoji
from core.refs import MessageRef

NUMBER_EMOJI = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")
MIN_OPTIONS, MAX_OPTIONS = 2, 10
MAX_QUESTION = 300
MAX_OPTION = 100
DEFAULT_DURATION = timedelta(hours=24)
MAX_DURATION = LONGEST_OPEN
OPEN_BETWEEN = "A poll stays open between 1 minute and 32 days (--closes 1m to --closes 32d)."
BAR_WIDTH = 10


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


def tally(poll: Poll, reactions: Sequence[PollReaction]) -> Tally:
    """Count the votes. In a single-choice poll a member's latest present reaction counts."""
    chosen: dict[str, list[PollReaction]] = {}
    for r in sorted(reactions, key=lambda r: r.seq):
        if r.present and 0 <= r.option < len(poll.options):
            chosen.setdefault(r.user_key, []).append(r)
    counts = [0] * len(poll.options)
    names: list[list[str]] = [[] for _ in poll.options]
    for picks in chosen.values():
        for r in picks if poll.multiple else picks[-1:]:
            counts[r.option] += 1
            names[r.option].append(r.user_name)
    return Tally(tuple(counts), len(chosen), tuple(tuple(sorted(n)) for n in names))


def _split_flags(text: str) -> tuple[dict[str, str | bool], str]:
    flags: dict[str, str | bool] = {}
    words = text.split(" ")
    while words and words[0].startswith("--"):
        flag = words.pop(0)[2:].lower()
        if flag in ("multiple", "multi"):
            flags["multiple"] = True
        elif flag == "hidden":
            flags["hidden"] = True
        elif flag in ("closes", "in"):
            if not words:
                raise UsageError("--closes needs a duration, like --closes 2h.")
            flags["closes"] = words.pop(0)
        else:
            raise UsageError(f"Unknown poll option --{flag[:20]}. Known: --multiple, --hidden, --closes.")
        while words and not words[0]:
            words.pop(0)
    return flags, " ".join(words)


def parse_poll(text: str) -> PollRequest:
    """Read `[--multiple] [--hidden] [--closes 2h] question | option | option ...`."""
    flags, rest = _split_flags(text.strip())
    parts = [p.strip() for p in rest.split("|")]
    # A part that shows nothing (only U+200B and the like) counts as no part at all.
    question, raw_options = parts[0], [p for p in parts[1:] if not is_blank(p)]
    if is_blank(question):
        raise UsageError("The poll needs a question before the first |.")
    if len(question) > MAX_QUESTION:
        raise UsageError(f"The question is too long ({len(question)} characters, at most {MAX_QUESTION}).")
    if not MIN_OPTIONS <= len(raw_options) <= MAX_OPTIONS:
        raise UsageError(
            f"A poll needs {MIN_OPTIONS} to {MAX_OPTIONS} options separated by | (got {len(raw_options)})."
        )
    options = []
    for i, raw in enumerate(raw_options):
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
    duration = DEFAULT_DURATION
    if isinstance(closes := flags.get("closes"), str):
        try:
            duration = parse_duration(closes)
        except DurationTooLong:
            raise UsageError(OPEN_BETWEEN) from None
        except ValueError:
            raise UsageError(f"--closes needs a duration like 30m, 2h or 3d, not '{closes[:20]}'.") from None
        if not timedelta(minutes=1) <= duration <= MAX_DURATION:
            raise UsageError(OPEN_BETWEEN)
    return PollRequest(
        question, tuple(options), bool(flags.get("multiple")), bool(flags.get("hidden")), duration
    )


def _bar(count: int, total: int) -> str:
    filled = round(BAR_WIDTH * count / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def render_poll(poll: Poll, tz: str = "UTC") -> str:
    """The poll message members react to."""
    lines = [f"Poll {poll.id}: {poll.question}"]
    lines += [f"{o.emoji} {o.label}" for o in poll.options]
    how = "pick as many as you like" if poll.multiple else "one choice; your latest reaction counts"
    hidden = " Results stay hidden until it closes." if poll.hidden else ""
    lines.append(f"React to vote ({how}). Closes {format_time(poll.closes_at, tz)}.{hidden}")
    return "\n".join(lines)


def render_results(poll: Poll, t: Tally, *, final: bool) -> str:
    head = f"Poll {poll.id} {'closed' if final else 'so far'}: {poll.question}"
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
