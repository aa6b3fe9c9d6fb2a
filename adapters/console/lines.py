"""The console's little language, as pure functions: input lines to actions, messages to output lines.

alice: /phase show          a message from alice in the default channel
#study bob: /help           a message from bob in #study
@frank: /pending            frank writes to the bot privately (a direct message)
bob +👍 m3                  bob adds the reaction 👍 to message m3 (bob -👍 m3 takes it back)
:join frank                 frank joins the default channel (:join frank #study: another one)
:leave frank                frank leaves it (:leave frank #study)
:advance 3d                 move the bot's clock forward (s, m, h, d; at most 366d at a time)
-- a comment                ignored
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from core.commands import DurationTooLong, is_blank, parse_duration

NAME = r"[\w.-]{1,40}"
_SAY = re.compile(rf"^(?:#(?P<channel>[\w-]{{1,80}})\s+)?(?P<user>{NAME}):\s?(?P<text>.*)$")
_REACT = re.compile(
    rf"^(?:#(?P<channel>[\w-]{{1,80}})\s+)?(?P<user>{NAME})\s+(?P<sign>[+-])(?P<emoji>\S+)\s+(?P<message>m\d+)$"
)
_ADVANCE = re.compile(r"^:advance\s+(?P<amount>\S+)$")
_MEMBERSHIP = re.compile(rf"^:(?P<what>join|leave)\s+(?P<user>{NAME})(?:\s+#(?P<channel>[\w-]{{1,80}}))?$")
_PRIVATE = re.compile(rf"^@(?P<user>{NAME}):\s?(?P<text>.*)$")

USAGE = (
    "Lines look like 'alice: /help', '#study bob: hello', '@bob: /help', 'bob +👍 m3', 'bob -👍 m3',"
    " ':join bob', ':leave bob #study', ':advance 2h' or '-- a comment'."
)
TOOLS = (
    "Console tools: ':advance <duration>' (':advance 3d'), ':join <name> [#channel]',"
    " ':leave <name> [#channel]'."
)
MAX_LINE = 12_000
# `:advance` walks through everything due on the way; a year of it is plenty for trying things out.
MAX_ADVANCE = timedelta(days=366)
# A reaction that is no vote is answered with at most this many open polls (the newest).
MAX_POLLS_NAMED = 3
# Bidirectional embeddings, overrides and isolates: they reorder what a terminal shows after them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


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
class Membership:
    """A member joins or leaves a channel, as a platform tells the bot (a Matrix room join)."""

    channel: str | None
    user: str
    joins: bool


@dataclass(frozen=True, slots=True)
class Private:
    """A member writes to the bot privately."""

    user: str
    text: str


@dataclass(frozen=True, slots=True)
class Nothing:
    """A blank line or a comment."""


ConsoleInput = Say | React | Advance | Membership | Private | Nothing


def parse_line(line: str) -> ConsoleInput:
    # The console reads stdin with errors="surrogateescape": bytes that are not UTF-8 arrive as lone
    # surrogates, and the line is refused here instead of ending the session.
    if any(unicodedata.category(ch) == "Cs" for ch in line):
        raise BadLine("That line is not valid UTF-8 text; it was skipped. Save the script as UTF-8.")
    line = line.strip()
    if not line or line.startswith("--"):
        return Nothing()
    if len(line) > MAX_LINE:
        raise BadLine(f"That line is too long ({len(line)} characters, at most {MAX_LINE}).")
    if line.startswith(":"):
        if member := _MEMBERSHIP.match(line):
            return Membership(member["channel"], member["user"], member["what"] == "join")
        match = _ADVANCE.match(line)
        if not match:
            raise BadLine(TOOLS)
        too_long = BadLine(f"Cannot advance by more than {MAX_ADVANCE.days}d at a time.")
        try:
            delta = parse_duration(match["amount"])
        except DurationTooLong:
            raise too_long from None
        except ValueError:
            raise BadLine(
                f"Cannot advance by '{printable(match['amount'][:20])}': use a number with s, m, h or d."
            ) from None
        if delta > MAX_ADVANCE:
            raise too_long
        return Advance(delta)
    if match := _REACT.match(line):
        return React(match["channel"], match["user"], match["emoji"], match["message"], match["sign"] == "+")
    if match := _SAY.match(line):
        if is_blank(match["text"]):
            raise BadLine(f"{match['user']} said nothing. {USAGE}")
        return Say(match["channel"], match["user"], match["text"].strip())
    if match := _PRIVATE.match(line):
        if is_blank(match["text"]):
            raise BadLine(f"{match['user']} said nothing. {USAGE}")
        return Private(match["user"], match["text"].strip())
    raise BadLine(f"Cannot read that line. {USAGE}")


def printable(text: str) -> str:
    """Text safe to write to a terminal: control characters (ESC starts escape sequences, CR overwrites
    the line, C1 CSI is an escape on some terminals) and bidi overrides are shown as `\\x1b`, `\\u202e`.

    Line breaks are not touched here (`render_message` indents them); tabs are harmless.
    """
    return "".join(_visible(ch) for ch in text)


def _visible(ch: str) -> str:
    if ch in "\n\t":
        return ch
    if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def render_message(place: str, message_id: str, author: str, text: str) -> str:
    """`#general [m4] peerbot: first line`, further lines indented two spaces.

    `place` is `#channel`, or `@user` for a direct message. What the text holds is shown, never obeyed
    by the terminal (see `printable`).
    """
    text = printable(text.replace("\r\n", "\n"))  # CSV ends its rows with CRLF; a lone CR is shown
    first, *rest = text.rstrip().split("\n") if text.strip() else [""]
    lines = [f"{place} [{message_id}] {author}: {first}"]
    lines += [f"  {line}" for line in rest]
    return "\n".join(lines)


def render_reaction(channel: str, message_id: str, user: str, emoji: str, add: bool) -> str:
    return printable(f"{place_of(channel)} [{message_id}] {user} {'+' if add else '-'}{emoji}")


def render_membership(channel: str, user: str, joins: bool) -> str:
    """`#general * frank joined`: a member joined or left the channel."""
    return f"#{channel} * {user} {'joined' if joins else 'left'}"


def place_of(channel_id: str) -> str:
    """Where a message is shown: `#general`, or `@frank` for a direct conversation with frank."""
    return channel_id if channel_id.startswith("@") else f"#{channel_id}"


def render_no_message(message_id: str) -> str:
    return f"! There is no message {message_id}; the reaction went nowhere."


def render_not_a_poll(message_id: str, open_polls: Sequence[tuple[int, str]]) -> str:
    """The answer to a reaction on a message that is not a poll, naming the polls open in the channel
    (poll id, message id) that it was perhaps meant for."""
    line = f"! {message_id} is not a poll, so that reaction is no vote."
    if open_polls:
        shown = [f"poll {poll_id} is {message}" for poll_id, message in open_polls[-MAX_POLLS_NAMED:]]
        line += " React on the poll itself: " + ", ".join(shown) + "."
    return line
