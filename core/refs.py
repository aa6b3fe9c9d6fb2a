"""Neutral references to things on a chat platform.

They are small frozen values: an adapter makes them from its payloads, the core compares and stores
them, and nothing in them points back at the adapter that made them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field


def clean_display(name: str) -> str:
    """A platform's display name as Peerbot keeps and shows it: control characters (NUL, escapes,
    line breaks) and halves of surrogate pairs are left out. Platforms allow them in names; PostgreSQL
    refuses NUL in text, and a terminal would act on escapes. Nothing else is changed or cut."""
    if name.isprintable():
        return name
    return "".join(ch for ch in name if ch == " " or unicodedata.category(ch) not in ("Cc", "Cs"))


@dataclass(frozen=True, slots=True)
class UserRef:
    platform: str
    id: str
    display: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.display.isprintable():
            object.__setattr__(self, "display", clean_display(self.display))

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

    def __post_init__(self) -> None:
        if not self.display.isprintable():
            object.__setattr__(self, "display", clean_display(self.display))

    @property
    def name(self) -> str:
        return self.display or self.id


@dataclass(frozen=True, slots=True)
class MessageRef:
    channel: ChannelRef
    id: str
