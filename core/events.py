"""Neutral inbound events: what happened on a platform, in the core's words.

`event_id` is the platform's own id for the event (or one the adapter derives deterministically from
it); the engine applies each (platform, event_id) at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.refs import ChannelRef, MessageRef, UserRef


@dataclass(frozen=True, slots=True)
class CommandInvoked:
    """A member ran a command.

    Text platforms pass the whole line after the prefix in `text` ("phase set organizing why").
    Platforms with structured commands (Discord) pass the command path in `text` ("phase set") and
    the named arguments in `options` (text, or true/false for a flag; a list's items as `option1`,
    `option2` ...).
    """

    event_id: str
    channel: ChannelRef
    user: UserRef
    text: str
    options: Mapping[str, str | bool] | None = None
    message: MessageRef | None = None
    # Written to the bot privately (a direct message): `channel` is the direct conversation, the answer
    # goes there, and it is no activity in any group.
    direct: bool = False


@dataclass(frozen=True, slots=True)
class ReactionAdded:
    event_id: str
    message: MessageRef
    user: UserRef
    emoji: str


@dataclass(frozen=True, slots=True)
class ReactionRemoved:
    event_id: str
    message: MessageRef
    user: UserRef
    emoji: str


@dataclass(frozen=True, slots=True)
class MessagePosted:
    """A member said something that was not a command (used only as an activity signal)."""

    event_id: str
    channel: ChannelRef
    user: UserRef
    message: MessageRef | None = None


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member joined the channel on the platform (a Matrix room join; a Discord server join, in the
    server's welcome channel)."""

    event_id: str
    channel: ChannelRef
    user: UserRef


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member left the channel on the platform (left the Matrix room, or was removed from it)."""

    event_id: str
    channel: ChannelRef
    user: UserRef


ReactionEvent = ReactionAdded | ReactionRemoved
InboundEvent = CommandInvoked | ReactionAdded | ReactionRemoved | MessagePosted | MemberJoined | MemberLeft


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the bot sends: the name members see, its bytes, and their media type."""

    filename: str
    data: bytes = field(repr=False)
    mimetype: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Reply:
    """The engine's answer to a command, delivered by the adapter in its own idiom.

    With a `file` (an export), the text is the one-line summary that goes with it. A `private` answer
    is for the member alone wherever the command was written: a direct message, or on Discord an
    ephemeral interaction response (errors are always shown to the member alone there).
    """

    text: str
    is_error: bool = False
    file: Attachment | None = None
    private: bool = False
    # It would tie the member to a secret (an anonymous vote): its post is sealed so (core/outbox.py).
    sealed: str | None = None
