"""Commands, declared once as data and rendered by each adapter in its own idiom.

A spec names the command path, its typed arguments, one line of help and who may run it. Parsing
turns a text line (console, Matrix) or named options (Discord) into the same checked values, or raises
`UsageError`, which carries the usage line. A member who may not run a command is told so in one
wording, `refusal`, made from the spec.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from core.lifecycle import PHASE_ORDER
from core.members import MAX_INTRO
from core.newcomers import MAX_WELCOME_TEXT

MAX_WORD = 100
MAX_TEXT = 1000
# Numbers have at most 18 digits, so every id fits a 64-bit database column (2**63 - 1 has 19).
MAX_DIGITS = 18
# No duration means more than this; past it a datetime would overflow (`now + 9999999999d`).
MAX_DURATION = timedelta(days=3660)
# How long polls, reviews and consent windows may stay open.
LONGEST_OPEN = timedelta(days=32)
MAX_QUESTION = 300  # a poll's question
# A poll option: a label of at most 100 characters (core/polls.py), after an emoji of its own if it
# has one (a custom Discord emoji, <a:name:id>, takes up to about 55).
MAX_OPTION_ITEM = 160

NUDGE_HELP = (
    "Schedules, in the group's timezone: 'daily 09:00', 'weekly mon 18:00', 'weekly mon,thu 18:30',"
    " 'monthly 1 10:00', or cron with five fields ('0 18 * * MON'). Text after the schedule is posted"
    " as it is; without text the bot picks a prompt for the group's phase, never the same twice in a"
    " row.\nExample: nudge add weekly fri 17:00 What did you learn this week?"
)

MEET_HELP = (
    "A one-off meeting: '2026-12-03 18:00'. A recurring one: 'weekly thu 18:00', 'daily 09:00',"
    " 'monthly 1 10:00' or cron with five fields, as for nudges; all in the group's timezone. A title"
    " follows a |. The meeting is announced a day before with RSVP reactions (✅ coming, ❔ maybe,"
    " ❌ not coming) and a thread where the platform has them, and reminded an hour before."
)

POLL_HELP = (
    "Start an option with an emoji to vote with it (🐢 slower); otherwise options get 1️⃣ 2️⃣ ... in"
    " order. A poll stays open at most 32d; its author or a facilitator may close it early."
)


class ArgKind(Enum):
    WORD = "word"  # one token
    TEXT = "text"  # the rest of the line (up to the first | when a LIST follows)
    CHOICE = "choice"  # one token out of a fixed list, matched case-insensitively
    INT = "int"  # a whole number
    DURATION = "duration"  # 90s, 30m, 2h, 3d, or combined: 1d12h
    FLAG = "flag"  # yes or no: `--name` in text, a boolean option where commands are structured
    LIST = "list"  # several texts: `a | b | c` in text, options name1, name2 ... where structured


# How text commands separate the items of a LIST argument (and a TEXT argument from the LIST after it).
LIST_SEPARATOR = "|"
_METAVARS = {ArgKind.DURATION: "duration", ArgKind.INT: "number"}


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    kind: ArgKind
    help: str
    required: bool = True  # LIST arguments: see min_count
    choices: tuple[str, ...] = ()
    max_length: int = 0  # LIST arguments: of each item
    shortest: timedelta = timedelta(0)  # for DURATION arguments
    longest: timedelta = MAX_DURATION  # for DURATION arguments
    # Given by name in text (`--closes 2h`), before the other arguments, rather than by position.
    # FLAG arguments always are.
    named: bool = False
    aliases: tuple[str, ...] = ()  # other names for a named argument in text (`--multi`)
    min_count: int = 0  # for LIST arguments
    max_count: int = 0  # for LIST arguments

    def __post_init__(self) -> None:
        if self.kind is ArgKind.FLAG and self.required:
            raise ValueError(f"flag {self.name!r} cannot be required: leaving it out means no")
        if self.kind is ArgKind.LIST:
            if not 0 <= self.min_count <= self.max_count or self.max_count < 1:
                raise ValueError(f"list {self.name!r} needs 0 <= min_count <= max_count, max_count >= 1")
        elif self.min_count or self.max_count:
            raise ValueError(f"{self.name!r}: only a list has a count of items")

    @property
    def limit(self) -> int:
        if self.max_length:
            return self.max_length
        return MAX_TEXT if self.kind is ArgKind.TEXT else MAX_WORD

    @property
    def by_name(self) -> bool:
        """Given as `--name [value]` in text."""
        return self.named or self.kind is ArgKind.FLAG

    def option_names(self) -> tuple[str, ...]:
        """The names of its structured options: one, or one per item of a LIST (option1 ... option10)."""
        if self.kind is ArgKind.LIST:
            return tuple(f"{self.name}{i}" for i in range(1, self.max_count + 1))
        return (self.name,)

    def placeholder(self) -> str:
        if self.kind is ArgKind.FLAG:
            return f"[--{self.name}]"
        if self.by_name:
            value = f"--{self.name} <{_METAVARS.get(self.kind, 'value')}>"
            return f"<{value}>" if self.required else f"[{value}]"
        if self.kind is ArgKind.LIST:
            items = [f"<{self.name}>"] * max(self.min_count, 1)
            if self.max_count > len(items):
                items.append("...")
            return f" {LIST_SEPARATOR} ".join(items)
        inner = self.name if self.kind is not ArgKind.TEXT else f"{self.name}..."
        return f"<{inner}>" if self.required else f"[{inner}]"

    def option_placeholders(self) -> list[str]:
        """How the usage line of a structured command names it."""
        if self.kind is ArgKind.LIST:
            names = self.option_names()
            shown = [f"<{n}>" for n in names[: self.min_count]]
            rest = names[self.min_count :]
            if rest:
                shown.append(f"[{rest[0]}]" if len(rest) == 1 else f"[{rest[0]}…{rest[-1]}]")
            return shown
        return [f"<{self.name}>" if self.required else f"[{self.name}]"]


def flag(name: str, help: str, *aliases: str) -> Arg:
    return Arg(name, ArgKind.FLAG, help, required=False, aliases=aliases)


# `poll create --anonymous`, `pulse --anonymous`.
ANONYMOUS_POLL = flag("anonymous", "votes are cast privately and tied to nobody once it closes", "anon")


class Secrecy(Enum):
    """Whether what a command says must stay between the member and the bot (core/ballots.py)."""

    NONE = "none"
    ALWAYS = "always"  # `vote`
    WHEN_ANONYMOUS = "when anonymous"  # with its --anonymous flag: `reflect --anonymous`


# The thresholds of the radar a group may set (core/radar.py LIMITS says what each means).
RADAR_THRESHOLDS = ("silence", "concentration", "stasis", "blocks", "concerns")

# The page of a listing that can grow (see core/paging.py).
PAGE = Arg("page", ArgKind.INT, "which page of the list, from 1", required=False)
# `goal list <filter>`; core/goals.py says which statuses each shows.
GOAL_FILTERS = ("open", "accepted", "proposed", "blocked", "done", "lapsed", "dropped", "superseded", "all")

# A role's name in the `role` commands (core/roles.py says what a name may be).
ROLE_NAME = Arg("name", ArgKind.WORD, "the role's name, like wrapper", max_length=60)
ROLE_HELP = (
    "Built in: facilitator-of-the-week (may run facilitator commands in this group while holding it),"
    " wrapper (writes the week's wrap), notetaker (summarises reviews). A role's name is one word or"
    " hyphenated words."
)


class Access(Enum):
    """Who may run a command."""

    EVERYONE = "everyone"
    FACILITATORS = "facilitators"
    OWNER_OR_FACILITATOR = "the item's owner or a facilitator"  # goal done, poll close
    FACILITATORS_TO_CHANGE = "everyone sees, facilitators change"  # timezone, quiet hours


@dataclass(frozen=True, slots=True)
class CommandSpec:
    path: tuple[str, ...]
    summary: str
    args: tuple[Arg, ...] = ()
    access: Access = Access.EVERYONE
    details: str = ""
    # Visible in the given platforms only (empty: everywhere), e.g. console-only tools.
    platforms: frozenset[str] = field(default_factory=frozenset)
    # What the access guards, for refusals: "only facilitators can <action>". Argument names in braces
    # are filled in ("close poll {id} early"); without it, "use <the command>".
    action: str = ""
    # Who owns the item, for OWNER_OR_FACILITATOR: "the poll's author".
    owner: str = ""
    # A filled-in text command without its prefix, shown by help where commands are typed.
    example: str = ""
    secrecy: Secrecy = Secrecy.NONE
    # Where commands are typed, its group's first word alone runs it too (`concern 4 ...` for
    # `concern add 4 ...`): a structured platform (Discord) cannot have a command beside its subcommands.
    shorthand: bool = False

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def facilitator_only(self) -> bool:
        return self.access is Access.FACILITATORS

    @property
    def checks_facilitator(self) -> bool:
        """The engine asks the platform whether the member facilitates before running it."""
        return self.access is not Access.EVERYONE

    def usage(self, prefix: str, *, structured: bool = False) -> str:
        """The usage line: as typed (`[--hidden] <question> | <option> ...`), or, where commands are
        structured (Discord), the options by name, required ones first as Discord lists them."""
        if structured:
            required = [p for a in self.args for p in a.option_placeholders() if p.startswith("<")]
            optional = [p for a in self.args for p in a.option_placeholders() if p.startswith("[")]
            return " ".join([prefix + self.name, *required, *optional])
        parts = [prefix + self.name, *(a.placeholder() for a in self.args if a.by_name)]
        positional = [a for a in self.args if not a.by_name]
        for i, arg in enumerate(positional):
            if i + 1 < len(positional) and positional[i + 1].kind is ArgKind.LIST:
                # Up to the separator, not the rest of the line.
                parts.append(
                    f"<{arg.name}> {LIST_SEPARATOR}" if arg.required else f"[{arg.name}] {LIST_SEPARATOR}"
                )
            else:
                parts.append(arg.placeholder())
        return " ".join(parts)

    def who_may(self) -> str:
        """Who may run it, for help: empty for everyone."""
        if self.access is Access.FACILITATORS:
            return "Facilitators only."
        if self.access is Access.OWNER_OR_FACILITATOR:
            return f"Only {self.owner} or a facilitator may do this."
        if self.access is Access.FACILITATORS_TO_CHANGE:
            return f"Everyone may look; only facilitators can {self.action}."
        return ""


class UsageError(Exception):
    """Bad input for a command: a short message plus the usage line of the command, if known."""

    def __init__(self, message: str, spec: CommandSpec | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.spec = spec


@dataclass(frozen=True, slots=True)
class Invocation:
    spec: CommandSpec
    args: Mapping[str, Any]

    def text(self, name: str) -> str:
        value = self.args.get(name)
        return value if isinstance(value, str) else ""

    def flag(self, name: str) -> bool:
        return self.args.get(name) is True

    @property
    def secret(self) -> bool:
        """What it says must stay between the member and the bot: its event is recorded under a hash,
        and written where the group reads it, it is removed and not applied."""
        secrecy = self.spec.secrecy
        return secrecy is Secrecy.ALWAYS or (secrecy is Secrecy.WHEN_ANONYMOUS and self.flag("anonymous"))

    def items(self, name: str) -> tuple[str, ...]:
        value = self.args.get(name)
        return value if isinstance(value, tuple) else ()


def refusal(inv: Invocation, prefix: str, *, owner: str = "", facilitators_only: bool = False) -> str:
    """The one wording of every refusal: who may, what was attempted, and that nothing changed.

    Who comes from the spec's access: facilitators, or the item's owner (named when `owner` is given)
    or a facilitator; `facilitators_only` for an item whose owner has no say (a goal's consent poll).
    What is the spec's `action` with the arguments filled in, or "use <command>".
    """
    spec = inv.spec
    if spec.access is Access.EVERYONE:
        raise ValueError(f"{spec.name} is for everyone; there is nothing to refuse")
    if spec.access is Access.OWNER_OR_FACILITATOR and not facilitators_only:
        who = f"{spec.owner} ({owner}) or a facilitator" if owner else f"{spec.owner} or a facilitator"
    else:
        who = "facilitators"
    what = spec.action.format_map(inv.args) if spec.action else f"use {prefix}{spec.name}"
    return f"Sorry, only {who} can {what}. Nothing was changed."


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        ("help",),
        "List the commands, or show how to use one.",
        (Arg("command", ArgKind.TEXT, "the command to explain", required=False, max_length=60),),
    ),
    CommandSpec(("status",), "Show the group's phase and since when."),
    CommandSpec(
        ("pending",),
        "Show what needs you: open polls you have not voted on, a review you have not answered.",
        (PAGE,),
        details="The answer is for you alone. Written to the bot privately, it covers all your groups.",
    ),
    CommandSpec(("phase", "show"), "Show the current phase and what it is for."),
    CommandSpec(
        ("phase", "set"),
        "Move the group to another phase.",
        (
            Arg(
                "phase",
                ArgKind.CHOICE,
                "the phase to move to",
                choices=tuple(p.value for p in PHASE_ORDER),
            ),
            Arg("reason", ArgKind.TEXT, "why the group is moving", required=False, max_length=300),
        ),
        access=Access.FACILITATORS,
        details="Phases: convening, organizing, cooperating, assessing, changing, in any order.",
    ),
    CommandSpec(("phase", "history"), "Show the group's moves between phases.", (PAGE,)),
    CommandSpec(
        ("goal", "propose"),
        "Propose a shared goal; the group decides by consent.",
        (Arg("text", ArgKind.TEXT, "the goal, in a sentence", max_length=300),),
        details="The bot opens a poll: ✅ agree, 🤔 concerns, ⛔ block. A goal is accepted with"
        " enough ✅ and no ⛔ when the decision window ends, or at once when everyone on the roster"
        " has voted.",
    ),
    CommandSpec(
        ("goal", "amend"),
        "Reshape a proposed or blocked goal; the group decides the new version by consent.",
        (
            Arg("id", ArgKind.INT, "the goal's number"),
            Arg("text", ArgKind.TEXT, "the reshaped goal, in a sentence", max_length=300),
        ),
        details="Anyone may amend. The new goal gets its own consent poll and the old one is superseded;"
        " whoever blocked it is told. Example: goal amend 4 Read the first three chapters",
    ),
    CommandSpec(
        ("goal", "list"),
        "Show the goals: the roadmap and proposals first, then the rest.",
        (
            Arg("filter", ArgKind.CHOICE, "which goals (default: all)", required=False, choices=GOAL_FILTERS),
            PAGE,
        ),
        details="open: proposed and accepted. Example: goal list lapsed 2",
    ),
    CommandSpec(
        ("goal", "show"),
        "Show one goal and its consent poll.",
        (Arg("id", ArgKind.INT, "the goal's number"),),
    ),
    CommandSpec(
        ("goal", "done"),
        "Mark an accepted goal as done (its proposer or a facilitator).",
        (Arg("id", ArgKind.INT, "the goal's number"),),
        access=Access.OWNER_OR_FACILITATOR,
        action="mark goal {id} done",
        owner="the goal's proposer",
    ),
    CommandSpec(
        ("goal", "drop"),
        "Drop a goal (its proposer or a facilitator).",
        (Arg("id", ArgKind.INT, "the goal's number"),),
        access=Access.OWNER_OR_FACILITATOR,
        action="drop goal {id}",
        owner="the goal's proposer",
    ),
    CommandSpec(
        ("concern", "add"),
        "Say what your concern about a goal is, by name or anonymously.",
        (
            flag("anonymous", "the group reads “anonymous”; nothing links the concern to you"),
            Arg("goal", ArgKind.INT, "the goal's number"),
            Arg("text", ArgKind.TEXT, "your concern, in a sentence or two", max_length=500),
        ),
        details="The bot asks for it privately when you react 🤔 or ⛔ on a goal's consent poll. Where"
        " commands are typed, concern <goal> <text> is short for concern add <goal> <text>. Example:"
        " concern --anonymous 4 Too big for a month",
        shorthand=True,
        secrecy=Secrecy.WHEN_ANONYMOUS,
    ),
    CommandSpec(
        ("concern", "done"),
        "Mark a concern addressed, with a note on how.",
        (
            Arg("id", ArgKind.INT, "the concern's number"),
            Arg("note", ArgKind.TEXT, "how it was addressed", required=False, max_length=300),
        ),
        access=Access.FACILITATORS,
        action="mark concern {id} addressed",
    ),
    CommandSpec(
        ("goal", "rules"),
        "Set how many ✅ a goal needs and how long the group has to decide.",
        (
            Arg("quorum", ArgKind.INT, "✅ votes a goal needs", required=False),
            Arg(
                "window",
                ArgKind.DURATION,
                "how long the consent poll stays open, like 48h",
                required=False,
                longest=LONGEST_OPEN,
            ),
        ),
        access=Access.FACILITATORS,
    ),
    CommandSpec(
        ("poll", "create"),
        "Ask the group a question; members vote with reactions.",
        (
            Arg("question", ArgKind.TEXT, "what to ask the group", max_length=MAX_QUESTION),
            Arg(
                "option",
                ArgKind.LIST,
                "an answer to pick; start it with an emoji to vote with that emoji",
                min_count=2,
                max_count=10,
                max_length=MAX_OPTION_ITEM,
            ),
            flag(
                "multiple", "members may pick several options (else a member's latest choice counts)", "multi"
            ),
            flag("hidden", "the tally is shown only when the poll closes"),
            ANONYMOUS_POLL,
            Arg(
                "closes",
                ArgKind.DURATION,
                "how long it stays open, like 30m, 2h or 3d (default 24h)",
                required=False,
                named=True,
                aliases=("in",),
                shortest=timedelta(minutes=1),
                longest=LONGEST_OPEN,
            ),
        ),
        details=POLL_HELP,
        example="poll create --closes 2d Which day suits? | Monday | Thursday",
    ),
    CommandSpec(
        ("poll", "list"),
        "Show the open polls: closing time and voters so far.",
        (PAGE,),
    ),
    CommandSpec(
        ("poll", "close"),
        "Close a poll early (its author or a facilitator).",
        (Arg("id", ArgKind.INT, "the poll's number"),),
        access=Access.OWNER_OR_FACILITATOR,
        action="close poll {id} early",
        owner="the poll's author",
    ),
    CommandSpec(
        ("poll", "results"), "Show a poll's results so far.", (Arg("id", ArgKind.INT, "the poll's number"),)
    ),
    CommandSpec(("pulse",), "Post a quick check-in: how is the group doing? 🟢 🟡 🔴", (ANONYMOUS_POLL,)),
    CommandSpec(
        ("vote",),
        "Vote privately on an anonymous poll: vote 7 2 (the same again takes it back).",
        (
            Arg("poll", ArgKind.INT, "the anonymous poll's number"),
            Arg("option", ArgKind.INT, "the option's number, from 1"),
        ),
        details="Write it to the bot directly (a direct message): a vote written where the group reads it"
        " is not counted. On Discord, press the poll's buttons instead.",
        secrecy=Secrecy.ALWAYS,
        example="vote 7 2",
    ),
    CommandSpec(
        ("nudge", "add"),
        "Schedule a reflection nudge (your text, or prompts that fit the phase).",
        (Arg("schedule", ArgKind.TEXT, "when, then the text if you want your own", max_length=600),),
        access=Access.FACILITATORS,
        details=NUDGE_HELP,
    ),
    CommandSpec(("nudge", "list"), "Show the group's nudges and when each comes next.", (PAGE,)),
    CommandSpec(
        ("nudge", "remove"),
        "Remove a nudge.",
        (Arg("id", ArgKind.INT, "the nudge's number"),),
        access=Access.FACILITATORS,
    ),
    CommandSpec(
        ("nudge", "pause"),
        "Pause a nudge.",
        (Arg("id", ArgKind.INT, "the nudge's number"),),
        access=Access.FACILITATORS,
    ),
    CommandSpec(
        ("nudge", "resume"),
        "Resume a paused nudge.",
        (Arg("id", ArgKind.INT, "the nudge's number"),),
        access=Access.FACILITATORS,
    ),
    CommandSpec(
        ("timezone",),
        "Show or set (facilitators) the group's timezone.",
        (Arg("name", ArgKind.WORD, "an IANA timezone like Europe/Berlin", required=False, max_length=64),),
        access=Access.FACILITATORS_TO_CHANGE,
        action="change the timezone",
    ),
    CommandSpec(
        ("quiet-hours",),
        "Show or set (facilitators) hours without nudges.",
        (Arg("span", ArgKind.WORD, "like 22:00-08:00, or off", required=False, max_length=20),),
        access=Access.FACILITATORS_TO_CHANGE,
        action="change quiet hours",
    ),
    CommandSpec(
        ("auto",),
        "Show or switch (facilitators) the automatic review, check-in, digest, radar and threads.",
        (
            Arg(
                "what",
                ArgKind.CHOICE,
                "which feature",
                required=False,
                choices=("review", "checkin", "digest", "radar", "threads", "dashboard"),
            ),
            Arg("value", ArgKind.CHOICE, "on or off", required=False, choices=("on", "off")),
        ),
        details="review: entering Assessing starts an action review. checkin: entering Cooperating adds"
        " a weekly check-in nudge. digest: a weekly summary of the group's week. radar: a weekly look"
        " for silence and imbalance, sent to facilitators. threads: each goal's consent poll and each"
        " review get a thread for their decision, where the platform has threads. dashboard: members, not"
        " only facilitators, may ask for a link to the group's page.",
        access=Access.FACILITATORS_TO_CHANGE,
        action="change automatic features",
    ),
    CommandSpec(
        ("meet", "add"),
        "Add a meeting, one-off or recurring, in the group's timezone, with an optional title.",
        (Arg("when", ArgKind.TEXT, "when, then | and a title if you like", max_length=300),),
        access=Access.FACILITATORS,
        details=MEET_HELP,
        example="meet add weekly thu 18:00 | Reading circle",
    ),
    CommandSpec(
        ("meet", "list"), "Show the meetings ahead, their RSVPs, and how many came to the last four."
    ),
    CommandSpec(
        ("meet", "cancel"),
        "Cancel a meeting: nothing more is announced or reminded for it.",
        (Arg("id", ArgKind.INT, "the meeting's number"),),
        access=Access.FACILITATORS,
    ),
    CommandSpec(
        ("meet", "skip"),
        "Skip one day of a meeting: no announcement or reminder for that day.",
        (
            Arg("id", ArgKind.INT, "the meeting's number"),
            Arg("date", ArgKind.WORD, "the day to skip, like 2026-12-10", max_length=20),
        ),
        access=Access.FACILITATORS,
        example="meet skip 1 2026-12-24",
    ),
    CommandSpec(
        ("meet", "from", "poll"),
        "Add a meeting at the time that won a poll whose options are times.",
        (
            Arg("id", ArgKind.INT, "the poll's number"),
            Arg(
                "title",
                ArgKind.TEXT,
                "the meeting's title (the poll's question if left out)",
                required=False,
                max_length=100,
            ),
        ),
        access=Access.FACILITATORS,
        details="Each option of the poll must be a time a meeting can have, like 'weekly thu 18:00' or"
        " '2026-12-03 18:00'; the option with the most votes (and no tie) becomes the meeting's time.",
        example="meet from poll 4 Reading circle",
    ),
    CommandSpec(
        ("meet", "propose"),
        "Ask the group when to meet: one time is a consent round, several a poll; its choice is added.",
        (
            Arg(
                "time",
                ArgKind.LIST,
                "a time a meeting can have, like weekly thu 18:00",
                min_count=1,
                max_count=5,
                max_length=100,
            ),
        ),
        details="One time: the group consents (✅ agree, 🤔 concerns, ⛔ block) as for a goal, with the"
        " group's quorum and window, and the meeting is added when it is accepted. Several times, split by"
        " |: a poll, and the time with the most votes becomes the meeting.",
        example="meet propose weekly thu 18:00 | weekly sun 17:00",
    ),
    CommandSpec(
        ("cadence", "propose"),
        "Propose a new time for a recurring meeting or a nudge; the group consents before it changes.",
        (Arg("change", ArgKind.TEXT, "[meet <id> | nudge <id>] then the new time", max_length=300),),
        details="With exactly one recurring meeting, say only the new time. The group decides by consent"
        " (✅ agree, 🤔 concerns, ⛔ block, with the goals' quorum and window); when it is accepted, the"
        " schedule changes and the group is told.",
        example="cadence propose meet 1 weekly wed 19:00",
    ),
    CommandSpec(
        ("review", "start"),
        "Start an action review: five questions for the group.",
        (
            Arg(
                "closes",
                ArgKind.DURATION,
                "how long it stays open, like 3d",
                required=False,
                longest=LONGEST_OPEN,
            ),
        ),
    ),
    CommandSpec(
        ("review", "summary"), "Close the open review and post its summary.", access=Access.FACILITATORS
    ),
    CommandSpec(("review", "list"), "Show the group's action reviews.", (PAGE,)),
    CommandSpec(
        ("reflect",),
        "Share a reflection, or answer a review question: reflect q2 <answer>.",
        (
            Arg(
                "text",
                ArgKind.TEXT,
                "your thought; to answer question 2 of the open review, start with q2",
                max_length=1000,
            ),
            flag("anonymous", "kept without your name: write it to the bot directly", "anon"),
            Arg(
                "group",
                ArgKind.WORD,
                "the group's channel, when you write to the bot directly and are in several",
                required=False,
                named=True,
            ),
        ),
        details="reflect q2 <answer> answers question 2 of the open action review; anything else,"
        " even text that starts with a number, is kept as a free reflection. reflect --anonymous, written"
        " to the bot directly, keeps it without your name: it goes to your group's open review.",
        secrecy=Secrecy.WHEN_ANONYMOUS,
    ),
    CommandSpec(
        ("join",),
        "Join the group's roster, with a few words about yourself.",
        (
            Arg(
                "intro",
                ArgKind.TEXT,
                "a few words about you and what you hope to learn",
                required=False,
                max_length=MAX_INTRO,
            ),
        ),
        details="Writing, reacting or running a command in the channel puts you on the roster too;"
        " join again with new words to change your introduction.",
        example="join New to Rust, here to learn by doing the exercises together",
    ),
    CommandSpec(("leave",), "Leave the group's roster; what you did stays, and join brings you back."),
    CommandSpec(
        ("members",),
        "List the members: since when, last active, what they did in 30 days.",
        (
            Arg(
                "setting",
                ArgKind.CHOICE,
                "private: how the roster lists you",
                required=False,
                choices=("private",),
            ),
            Arg("value", ArgKind.CHOICE, "on or off", required=False, choices=("on", "off")),
            PAGE,
        ),
        details="members private on lists you by name only; members private off lists your activity again.",
    ),
    CommandSpec(
        ("welcome", "set"),
        "Set the group's own words at the start of newcomers' welcome.",
        (Arg("text", ArgKind.TEXT, "your words for newcomers", max_length=MAX_WELCOME_TEXT),),
        access=Access.FACILITATORS,
    ),
    CommandSpec(("welcome", "show"), "Show the welcome newcomers get now."),
    CommandSpec(
        ("welcome", "reset"), "Take the group's own words out of the welcome.", access=Access.FACILITATORS
    ),
    CommandSpec(
        ("buddy",),
        "Show your buddy, or offer (on) or stop offering (off) to be a newcomer's buddy.",
        (Arg("value", ArgKind.CHOICE, "on or off", required=False, choices=("on", "off")),),
        details="Each newcomer is paired with one active buddy, taking turns; both hear by direct message.",
    ),
    CommandSpec(
        ("remind", "window"),
        "Show or set (facilitators) when members who have not voted or answered are reminded.",
        (
            Arg(
                "percent",
                ArgKind.WORD,
                "the last share of a goal's or review's time, like 25%, or off",
                required=False,
                max_length=10,
            ),
        ),
        access=Access.FACILITATORS_TO_CHANGE,
        action="change the reminder window",
        details="In the last 25% of a consent poll's or action review's time (the default), each member"
        " on the roster who has not voted or answered gets one direct message, and the group one line"
        " that names nobody. Any whole percent from 1 to 90, or off.",
        example="remind window 40%",
    ),
    CommandSpec(
        ("remind", "me"),
        "Show, or switch on or off, your own reminders by direct message.",
        (Arg("value", ArgKind.CHOICE, "on or off", required=False, choices=("on", "off")),),
    ),
    CommandSpec(
        ("radar",),
        "Look for silence and imbalance now (answered privately), or show or set a threshold.",
        (
            Arg(
                "setting",
                ArgKind.CHOICE,
                "a threshold to show or set",
                required=False,
                choices=RADAR_THRESHOLDS,
            ),
            Arg(
                "value",
                ArgKind.WORD,
                "its new value, like 21 or 60%, or default",
                required=False,
                max_length=20,
            ),
        ),
        access=Access.FACILITATORS,
        details="The radar looks for members silent for 14 days, one member making more than half the"
        " proposals, closings and phase moves, 4 weeks without a goal done or a phase move, goals blocked"
        " for 7 days and not reshaped, and concerns nobody followed up. It runs weekly by itself unless"
        " a facilitator says auto radar off.",
        example="radar silence 21",
    ),
    CommandSpec(
        ("patterns",),
        "List the catalogue of patterns (what helps) and anti-patterns, or show one.",
        (Arg("name", ArgKind.WORD, "a pattern's name, like start-small", required=False, max_length=60),),
        example="patterns start-small",
    ),
    CommandSpec(
        ("role", "list"),
        "Show the group's roles, who holds each, and whose turn is next.",
        details=ROLE_HELP,
    ),
    CommandSpec(
        ("role", "add"),
        "Add a role of the group's own, with a line on what its holder does.",
        (ROLE_NAME, Arg("duty", ArgKind.TEXT, "what its holder does, in one line", max_length=200)),
        access=Access.FACILITATORS,
        action="add roles",
        example="role add timekeeper keeps the meeting to its hour",
    ),
    CommandSpec(
        ("role", "remove"),
        "Remove a role the group added (built-in roles stay).",
        (ROLE_NAME,),
        access=Access.FACILITATORS,
        action="remove roles",
    ),
    CommandSpec(("role", "take"), "Take a role nobody holds.", (ROLE_NAME,), example="role take notetaker"),
    CommandSpec(("role", "pass"), "Give up a role you hold; whose turn is next gets it.", (ROLE_NAME,)),
    CommandSpec(
        ("role", "rotate"),
        "Make a role change hands weekly or every 2 weeks, or stop it rotating.",
        (
            ROLE_NAME,
            Arg("how", ArgKind.TEXT, "weekly, every 2 weeks, or off", max_length=20),
        ),
        access=Access.FACILITATORS,
        action="change how roles rotate",
        details="The role changes hands at the week's turn (the digest's time, in the group's timezone),"
        " going to the member of its pool who held it least recently and was active in 14 days."
        " A free role goes to whose turn it is at once.",
        example="role rotate wrapper weekly",
    ),
    CommandSpec(
        ("role", "pool"),
        "Join or leave a role's rotation.",
        (ROLE_NAME, Arg("action", ArgKind.CHOICE, "join or leave", choices=("join", "leave"))),
        example="role pool wrapper join",
    ),
    CommandSpec(
        ("wrap", "post"),
        "Post the week's summary to the group, as its wrapper (several lines are fine).",
        (
            Arg(
                "text",
                ArgKind.TEXT,
                "the week in your words: what happened, what was decided",
                max_length=1800,
            ),
        ),
        details="The wrapper of the week that ended gets a draft by direct message at the week's turn;"
        " without a wrap within a day, the weekly digest goes to the group instead. ' | ' starts a new"
        " line where a line break cannot be typed. Where commands are typed, wrap <text> is short for"
        " wrap post <text>.",
        shorthand=True,
        example="wrap We read chapter 3 and agreed to meet on Thursdays.",
    ),
    CommandSpec(("wrap", "list"), "Show the group's wraps, newest first.", (PAGE,)),
    CommandSpec(
        ("export",),
        "Send the group's goals, polls, reviews and reflections as a Markdown, JSON or CSV file.",
        (
            Arg(
                "format",
                ArgKind.CHOICE,
                "md (default), json or csv",
                required=False,
                choices=("md", "json", "csv"),
            ),
        ),
    ),
    CommandSpec(
        ("dashboard",),
        "Get a private link to the group's page, with charts (valid 7 days); revoke: end every link.",
        (
            Arg(
                "action",
                ArgKind.CHOICE,
                "revoke: every link to the page stops working",
                required=False,
                choices=("revoke",),
            ),
        ),
        details="Facilitators get a link; members too once a facilitator says auto dashboard on. Anyone"
        " holding a link sees the page, so keep it to yourself.",
        access=Access.FACILITATORS_TO_CHANGE,
        action="revoke the links to the group's page",
    ),
    CommandSpec(
        ("forget-me",),
        "Forget you: your reflections and open votes go, your name leaves the record (asks first).",
        (Arg("confirm", ArgKind.CHOICE, "say confirm to go ahead", required=False, choices=("confirm",)),),
    ),
)


def command_groups(specs: Sequence[CommandSpec]) -> dict[str, list[CommandSpec]]:
    """Specs by their first word, for commands with subcommands ("phase": show, set, history)."""
    groups: dict[str, list[CommandSpec]] = {}
    for spec in specs:
        if len(spec.path) > 1:
            groups.setdefault(spec.path[0], []).append(spec)
    return groups


# ASCII digits only: `\d` and int() also take other scripts' digits, and isdigit() takes "²" too.
_DURATION = re.compile(r"([0-9]+)([smhdw])", re.IGNORECASE)
_WHOLE_NUMBER = re.compile(r"[0-9]+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class DurationTooLong(ValueError):
    """A well-formed duration longer than `MAX_DURATION`."""


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `3d`, `1w` or a sum of them (`1d12h`), at most `MAX_DURATION`."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _DURATION.sub("", cleaned):
        raise ValueError(text)
    # Whole seconds in Python ints cannot overflow; timedelta(days=9999999999) would.
    seconds = 0
    for amount, unit in _DURATION.findall(cleaned):
        if len(amount) > MAX_DIGITS:
            raise DurationTooLong(text)
        seconds += int(amount) * _UNIT_SECONDS[unit]
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(text)
    return timedelta(seconds=seconds)


def say_duration(value: timedelta) -> str:
    """`32d`, `1h`, `90s`: a duration the way members write one."""
    seconds = int(value.total_seconds())
    if not seconds:
        return "0s"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# Characters that show nothing, beyond spaces and format characters like U+200B: Hangul and Braille
# fillers, the combining grapheme joiner, Mongolian and Khmer invisibles.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180e")
_KEPT_CONTROLS = frozenset("\t\n\r")


def shows_nothing(ch: str) -> bool:
    category = unicodedata.category(ch)
    return (
        category[0] == "Z"
        or category == "Cf"
        or ch in _KEPT_CONTROLS
        or ch in _FILLERS
        or "\ufe00" <= ch <= "\ufe0f"  # variation selectors
        or "\U000e0100" <= ch <= "\U000e01ef"
    )


def is_blank(text: str) -> bool:
    """True for text made only of spaces and characters that show nothing (U+200B and the like).

    Control characters are not blank: they are refused (see `unfit_character`), not overlooked.
    """
    return all(shows_nothing(ch) for ch in text)


def unfit_character(text: str) -> str | None:
    """Why `text` cannot be taken as member text, or None.

    Control characters (NUL first of all: PostgreSQL refuses it in text, SQLite keeps it) and lone
    surrogates (not Unicode; no database stores them) are refused at parse time, the same everywhere.
    Tab and line breaks are kept.
    """
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc" and ch not in _KEPT_CONTROLS:
            return f"a control character (U+{ord(ch):04X})"
        if category == "Cs":
            return f"a broken character (U+{ord(ch):04X}, half of a surrogate pair)"
    return None


def _convert(spec: CommandSpec, arg: Arg, raw: str | bool) -> Any:
    if arg.kind is ArgKind.FLAG:
        return _read_flag(spec, arg, raw)
    if arg.kind is ArgKind.LIST:
        raise ValueError("LIST arguments are read by _convert_list")
    raw = str(raw)
    if unfit := unfit_character(raw):
        raise UsageError(f"{arg.name} contains {unfit}; write plain text.", spec)
    if len(raw) > arg.limit:
        raise UsageError(f"{arg.name} is too long ({len(raw)} characters, at most {arg.limit}).", spec)
    if arg.kind is ArgKind.CHOICE:
        wanted = raw.strip().casefold()
        for choice in arg.choices:
            if choice.casefold() == wanted:
                return choice
        raise UsageError(
            f"'{_shorten(raw)}' is not a valid {arg.name}. Choose one of: {', '.join(arg.choices)}.",
            spec,
        )
    if arg.kind is ArgKind.INT:
        digits = raw.strip()
        if not _WHOLE_NUMBER.fullmatch(digits):
            raise UsageError(f"{arg.name} must be a whole number like 3, not '{_shorten(raw)}'.", spec)
        if len(digits.lstrip("0")) > MAX_DIGITS:
            raise UsageError(f"{arg.name} is too large: a number here has at most {MAX_DIGITS} digits.", spec)
        return int(digits)
    if arg.kind is ArgKind.DURATION:
        try:
            duration = parse_duration(raw)
        except DurationTooLong:
            duration = None
        except ValueError:
            raise UsageError(
                f"{arg.name} must be a duration like 30m, 2h or 3d, not '{_shorten(raw)}'.", spec
            ) from None
        if duration is None or duration > arg.longest:
            raise UsageError(f"{arg.name} is too long: at most {say_duration(arg.longest)}.", spec)
        if duration < arg.shortest:
            raise UsageError(f"{arg.name} is too short: at least {say_duration(arg.shortest)}.", spec)
        return duration
    return raw.strip()


_YES_NO = {"true": True, "false": False}


def _read_flag(spec: CommandSpec, arg: Arg, raw: str | bool) -> bool:
    """A structured command's boolean (Discord sends JSON true or false); text says "true" or "false"."""
    if isinstance(raw, bool):
        return raw
    value = _YES_NO.get(raw.strip().casefold())
    if value is None:
        raise UsageError(f"{arg.name} is true or false, not '{_shorten(raw)}'.", spec)
    return value


def _convert_list(spec: CommandSpec, arg: Arg, raws: Sequence[str | bool]) -> tuple[str, ...]:
    """The items of a LIST argument, checked one by one; items that show nothing are no items."""
    items: list[str] = []
    for raw in raws:
        text = str(raw)
        if unfit := unfit_character(text):
            raise UsageError(f"{arg.name} {len(items) + 1} contains {unfit}; write plain text.", spec)
        if is_blank(text):
            continue
        if len(text.strip()) > arg.limit:
            raise UsageError(
                f"{arg.name} {len(items) + 1} is too long ({len(text.strip())} characters,"
                f" at most {arg.limit}).",
                spec,
            )
        items.append(text.strip())
    if not arg.min_count <= len(items) <= arg.max_count:
        raise UsageError(f"Give {arg.min_count} to {arg.max_count} {arg.name}s (got {len(items)}).", spec)
    return tuple(items)


def _shorten(text: str, limit: int = 40) -> str:
    """Member input quoted back in a message: one line, short, with unfit characters replaced."""
    text = " ".join(text.split())
    text = "".join("\ufffd" if unfit_character(ch) else ch for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def find_spec(specs: Sequence[CommandSpec], words: Sequence[str]) -> CommandSpec | None:
    """The spec whose path is the longest prefix of `words` (compared case-insensitively)."""
    lowered = [w.casefold() for w in words]
    best: CommandSpec | None = None
    for spec in specs:
        n = len(spec.path)
        if tuple(lowered[:n]) == spec.path and (best is None or n > len(best.path)):
            best = spec
    return best


def _shorthand(specs: Sequence[CommandSpec], head: str) -> CommandSpec | None:
    """The command its group's first word alone stands for where commands are typed, if any."""
    return next((s for s in command_groups(specs).get(head.casefold(), []) if s.shorthand), None)


def _unknown(specs: Sequence[CommandSpec], words: Sequence[str]) -> UsageError:
    if not words:
        return UsageError(f"Which command? Commands: {command_list(specs)}.")
    head = words[0].casefold()
    groups = command_groups(specs)
    if head in groups:
        subs = ", ".join(s.path[1] for s in groups[head])
        if len(words) == 1:
            return UsageError(f"{head} needs one of: {subs}.")
        return UsageError(f"Unknown {head} command '{_shorten(words[1])}'. Choose one of: {subs}.")
    return UsageError(f"Unknown command '{_shorten(words[0])}'. Commands: {command_list(specs)}.")


def command_list(specs: Sequence[CommandSpec]) -> str:
    seen: list[str] = []
    for spec in specs:
        if spec.path[0] not in seen:
            seen.append(spec.path[0])
    return ", ".join(seen)


_NAMED = re.compile(r"--(\S*)")
_WORD = re.compile(r"\s*(\S*)(.*)", re.DOTALL)


def _first_word(text: str) -> tuple[str, str]:
    match = _WORD.match(text)
    assert match is not None  # the pattern matches any text
    return match[1], match[2]


def _read_named(spec: CommandSpec, rest: str, values: dict[str, Any]) -> str:
    """Read `--flag` and `--name value` from the start of `rest` into `values`; returns what follows."""
    named = {n.casefold(): a for a in spec.args if a.by_name for n in (a.name, *a.aliases)}
    if not named:
        return rest
    while (match := _NAMED.match(rest := rest.lstrip())) is not None:
        word = match[1]
        arg = named.get(word.casefold())
        if arg is None:
            known = ", ".join(f"--{a.name}" for a in spec.args if a.by_name)
            raise UsageError(f"Unknown option --{_shorten(word, 20)}. Known: {known}.", spec)
        rest = rest[match.end() :]
        if arg.kind is ArgKind.FLAG:
            values[arg.name] = True
            continue
        value, rest = _first_word(rest)
        if is_blank(value):
            raise UsageError(f"--{arg.name} needs a value: {arg.help}.", spec)
        values[arg.name] = _convert(spec, arg, value)
    return rest


def _looks_like_a_number(token: str) -> bool:
    """Meant as a number, well written or not: `2`, `-1`, `²`, `0x10`."""
    return token[:1] in ("+", "-") or any(ch.isnumeric() for ch in token)


def _number_reader(spec: CommandSpec, args: Sequence[Arg], token: str) -> int:
    """How many of `args` a token goes past: a number that the first (optional) argument does not take
    is read by the next optional number argument, and the optional ones in between are left out
    (`goal list 2`: no filter, page 2). Otherwise 0: the first argument reads it, or refuses it."""
    first = args[0]
    if first.required or first.kind is ArgKind.INT or not _looks_like_a_number(token):
        return 0
    try:
        _convert(spec, first, token)
        return 0
    except UsageError:
        pass
    for skip, later in enumerate(args[1:], start=1):
        if later.required or later.kind in (ArgKind.TEXT, ArgKind.LIST):
            break
        if later.kind is ArgKind.INT:
            return skip
    return 0


def parse_text(specs: Sequence[CommandSpec], line: str) -> Invocation:
    """Parse a command line without its prefix: `phase set organizing we have a plan`.

    Named arguments (`--hidden`, `--closes 2h`) come first; then the others in order. A TEXT argument
    takes the rest of the line, or up to the first | when a LIST follows, whose items are separated by |.
    """
    rest = line.strip()
    words = rest.split()
    spec = find_spec(specs, words)
    # Checked on the whole line, before any stripping or splitting could drop the character.
    if unfit := unfit_character(line):
        raise UsageError(f"That command contains {unfit}; write plain text.", spec)
    depth = len(spec.path) if spec is not None else 0
    if spec is None and len(words) > 1 and (spec := _shorthand(specs, words[0])) is not None:
        depth = 1  # `concern 4 ...`: the group's word alone
    if spec is None:
        raise _unknown(specs, words)
    parts = rest.split(None, depth)
    rest = parts[depth] if len(parts) > depth else ""
    values: dict[str, Any] = {a.name: False for a in spec.args if a.kind is ArgKind.FLAG}
    rest = _read_named(spec, rest, values)
    positional = [a for a in spec.args if not a.by_name]
    passed: set[str] = set()  # arguments read, or left out before a number (see `_number_reader`)
    for i, arg in enumerate(positional):
        if arg.name in passed:
            continue
        rest = rest.strip()
        if arg.kind is ArgKind.LIST:
            values[arg.name] = _convert_list(spec, arg, rest.split(LIST_SEPARATOR) if rest else [])
            rest = ""
            continue
        if is_blank(rest):
            rest = ""
            if arg.required:
                raise UsageError(f"Missing {arg.name}: {arg.help}.", spec)
            continue
        if arg.kind is ArgKind.TEXT:
            if i + 1 < len(positional) and positional[i + 1].kind is ArgKind.LIST:
                text, _, rest = rest.partition(LIST_SEPARATOR)
                text = text.strip()
            else:
                text, rest = rest, ""
            if is_blank(text):
                if arg.required:
                    raise UsageError(f"Missing {arg.name}: {arg.help}.", spec)
                continue
            values[arg.name] = _convert(spec, arg, text)
        else:
            token, _, rest = rest.partition(" ")
            skip = _number_reader(spec, positional[i:], token)
            reader = positional[i + skip]
            passed.update(a.name for a in positional[i : i + skip + 1])
            values[reader.name] = _convert(spec, reader, token)
    if rest.strip():
        raise UsageError(f"Unexpected extra words: '{_shorten(rest)}'.", spec)
    return Invocation(spec, values)


def parse_options(specs: Sequence[CommandSpec], path: str, options: Mapping[str, str | bool]) -> Invocation:
    """Check named options from a structured command (Discord) against the spec, as text is checked:
    the same arguments come out of `option1`..`option10` as out of `a | b | ...`."""
    words = path.split()
    spec = find_spec(specs, words)
    if spec is None or len(spec.path) != len(words):
        raise _unknown(specs, words)
    known = {n for a in spec.args for n in a.option_names()}
    for name in options:
        if name not in known:
            raise UsageError(f"Unknown option '{_shorten(name)}'.", spec)
    values: dict[str, Any] = {}
    for arg in spec.args:
        if arg.kind is ArgKind.LIST:
            given = [options[n] for n in arg.option_names() if n in options]
            values[arg.name] = _convert_list(spec, arg, given)
            continue
        raw = options.get(arg.name)
        if arg.kind is ArgKind.FLAG:
            values[arg.name] = False if raw is None else _convert(spec, arg, raw)
            continue
        if raw is None or is_blank(str(raw)):
            if arg.required:
                raise UsageError(f"Missing {arg.name}: {arg.help}.", spec)
            continue
        values[arg.name] = _convert(spec, arg, raw)
    return Invocation(spec, values)
