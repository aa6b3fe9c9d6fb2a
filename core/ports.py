"""The ports the engine talks through. Adapters implement them; the core never sees a platform."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.lifecycle import Group, Phase, PhaseChange
from core.refs import ChannelRef, MessageRef, UserRef


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message the bot sends.

    `mentions` is the no-mentions marker: it is always False for text that may hold members'
    words, and adapters must then stop the platform from turning any of it into a ping
    (Discord `allowed_mentions` none, Matrix empty `m.mentions`).
    """

    text: str
    mentions: bool = False


class ChatPort(Protocol):
    """What the engine may do on one chat platform."""

    @property
    def platform(self) -> str: ...

    @property
    def command_prefix(self) -> str:
        """How members start a command here, for help and usage lines ("/", "!peer ")."""
        ...

    async def send(self, channel: ChannelRef, message: Outbound) -> MessageRef: ...

    async def reply(self, to: MessageRef, message: Outbound) -> MessageRef: ...

    async def react(self, message: MessageRef, emoji: str) -> None: ...

    async def edit(self, message: MessageRef, new: Outbound) -> None: ...

    async def direct_message(self, user: UserRef, message: Outbound) -> None: ...

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool: ...


class StoreTx(Protocol):
    """One transaction. Everything done through it commits together or not at all."""

    async def claim_event(self, platform: str, event_id: str, at: datetime) -> bool:
        """Record an inbound event as applied; False when it was applied before."""
        ...

    async def get_group(self, channel: ChannelRef) -> Group | None: ...

    async def get_group_by_id(self, group_id: int) -> Group | None: ...

    async def create_group(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group: ...

    async def record_phase_change(self, change: PhaseChange) -> None:
        """Append the change to the history and move the group to its new phase."""
        ...

    async def phase_history(self, group_id: int, limit: int) -> list[PhaseChange]:
        """The most recent changes, oldest first."""
        ...

    async def get_state(self, key: str) -> str | None:
        """Adapter bookkeeping (sync tokens, counters), kept in the same transactions as effects."""
        ...

    async def set_state(self, key: str, value: str) -> None: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[StoreTx]: ...
