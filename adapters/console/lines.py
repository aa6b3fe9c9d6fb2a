"""The console's little language, as pure functions: input lines to actions, messages to output lines.

alice: /phase show          a message from alice in the default channel
#study bob: /help           a message from bob in #study
bob +👍 m3                  bob adds the reaction 👍 to message m3 (bob -👍 m3 takes it back)
:advance 3d                 move the bot's clock forward (s, m, h, d)
-- a comment                ignored
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from core.commands import parse_duration

NAME = r"[\w.-]{1,40}"
_SAY = re.compile(rf"^(?:#(?P<channel>[\w-]{{1,80}})\s+)?(?P<user>{NAME}):\s?(?P<text>.*)$")
_REACT = re.compile(
    rf"^(?:#(?P<channel>[\w-]{{1,80}})\s+)?(?P<user>{NAME})\s+(?P<sign>[+-])(?P<emoji>\S+)\s+(?P<message>m\d+)$"
)
_ADVANCE = re.compile(r"^:advance\s+(?P<amount>\S+)$")

USAGE = (
    "Lines look like 'alice: /help', '#study bob: hello', 'bob +👍 m3', 'bob -👍 m3',"
    " ':advance 2h' or '-- a comment'."
)
MAX_LINE = 12_000


class BadLine(ValueError):
    """A console line that could not be read; the message says why and how lines look."""


@dataclass(frozen=True, slots=True)
class Say:
    channel: str | None
    user: str
    text: str


@dataclass(frozen=True, slots=True)
class React:
    channel: str | None
    user: str
    emoji: str
    message_id: str
    add: bool


@dataclass(frozen=True, slots=True)
class Advance:
    delta: timedelta


@dataclass(frozen=True, slots=True)
class Nothing:
    """A blank line or a comment."""


ConsoleInput = Say | React | Advance | Nothing


def parse_line(line: str) -> ConsoleInput:
    line = line.strip()
    if not line or line.startswith("--"):
        return Nothing()
    if len(line) > MAX_LINE:
        raise BadLine(f"That line is too long ({len(line)} characters, at most {MAX_LINE}).")
    if line.startswith(":"):
        match = _ADVANCE.match(line)
        if not match:
            raise BadLine("Console tools: ':advance <duration>', for example ':advance 3d'.")
        try:
            delta = parse_duration(match["amount"])
        except ValueError:
            raise BadLine(
                f"Cannot advance by '{match['amount'][:20]}': use a number with s, m, h or d."
            ) from None
        return Advance(delta)
    if match := _REACT.match(line):
        return React(match["channel"], match["user"], match["emoji"], match["message"], match["sign"] == "+")
    if match := _SAY.match(line):
        if not match["text"].strip():
            raise BadLine(f"{match['user']} said nothing. {USAGE}")
        return Say(match["channel"], match["user"], match["text"].strip())
    raise BadLine(f"Cannot read that line. {USAGE}")


def render_message(place: str, message_id: str, author: str, text: str) -> str:
    """`#general [m4] peerbot: first line`, further lines indented two spaces.

    `place` is `#channel`, or `@user` for a direct message.
    """
    first, *rest = text.rstrip().split("\n") if text.strip() else [""]
    lines = [f"{place} [{message_id}] {author}: {first}"]
    lines += [f"  {line}" for line in rest]
    return "\n".join(lines)


def render_reaction(channel: str, message_id: str, user: str, emoji: str, add: bool) -> str:
    return f"#{channel} [{message_id}] {user} {'+' if add else '-'}{emoji}"
