"""What a command handler is given, and the shape of a handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.commands import Invocation, refusal
from core.events import CommandInvoked, Reply
from core.lifecycle import Group
from core.ports import ChatPort, StoreTx
from core.uow import UnitOfWork


class _InUnitOfWork:
    """What every handler's context offers: the platform's command prefix, the transaction, the time."""

    __slots__ = ()
    chat: ChatPort
    uow: UnitOfWork

    @property
    def prefix(self) -> str:
        return self.chat.command_prefix

    @property
    def tx(self) -> StoreTx:
        return self.uow.tx

    @property
    def now(self) -> datetime:
        return self.uow.now


@dataclass(frozen=True, slots=True)
class Context(_InUnitOfWork):
    """Everything a command handler needs to know about the command it runs, and its unit of work."""

    event: CommandInvoked
    chat: ChatPort
    group: Group
    uow: UnitOfWork
    # Asked of the platform before the transaction began, for commands whose spec needs it.
    is_facilitator: bool = False

    def refuse(self, inv: Invocation, *, owner: str = "", facilitators_only: bool = False) -> Reply:
        """This member may not do this (see `refusal`): the answer, and nothing changes."""
        return Reply(
            refusal(inv, self.prefix, owner=owner, facilitators_only=facilitators_only), is_error=True
        )


Handler = Callable[[Context, Invocation], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class PrivateContext(_InUnitOfWork):
    """What a command written to the bot privately is given when it concerns the member rather than
    one group (`help`, `forget-me`): the groups whose roster they are on, on that platform."""

    event: CommandInvoked
    chat: ChatPort
    uow: UnitOfWork
    groups: Sequence[Group]

    def in_group(self, group: Group) -> Context:
        """The command as a group's command, once it is known which group it is for (a reflection or a
        concern written privately); as one written privately it is nobody's facilitator command."""
        return Context(self.event, self.chat, group, self.uow)


PrivateHandler = Callable[[PrivateContext, Invocation], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Reading:
    """What a command that only reads (an export) is given: a read transaction (`Store.read`) in place
    of a unit of work, so that a long read never makes writers wait. It can queue nothing."""

    event: CommandInvoked
    chat: ChatPort
    group: Group
    tx: StoreTx
    now: datetime
    is_facilitator: bool = False

    @property
    def prefix(self) -> str:
        return self.chat.command_prefix


Reader = Callable[[Reading, Invocation], Awaitable[Reply]]
