"""Neutral references to things on a chat platform.

They are small frozen values: an adapter makes them from its payloads, the core compares and stores
them, and nothing in them points back at the adapter that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UserRef:
    platform: str
    id: str
    display: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.display or self.id

    @property
    def key(self) -> str:
        """A stable text key, unique across platforms, for storage."""
        return f"{self.platform}:{self.id}"


# The bot itself, as the author of what it does on its own (a weekly check-in it adds).
BOT = UserRef("peerbot", "peerbot", "peerbot")


@dataclass(frozen=True, slots=True)
class ChannelRef:
    platform: str
    id: str
    display: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.display or self.id


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: ChannelRef
    id: str
