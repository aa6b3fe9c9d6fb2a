"""What a command handler is given, and the shape of a handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from core.commands import Invocation
from core.events import CommandInvoked, Reply
from core.lifecycle import Group
from core.ports import ChatPort


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a command handler needs to know about the command it runs."""

    event: CommandInvoked
    chat: ChatPort
    group: Group
    now: datetime

    @property
    def prefix(self) -> str:
        return self.chat.command_prefix

    async def facilitates(self) -> bool:
        return await self.chat.is_facilitator(self.event.user, self.event.channel)


Handler = Callable[[Context, Invocation], Awaitable[Reply]]
