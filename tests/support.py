"""Test support: in-memory fakes of the core's ports, and a harness that reads like the feature."""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.engine import Engine
from core.events import CommandInvoked, ReactionAdded, ReactionRemoved, Reply
from core.lifecycle import Group, Phase, PhaseChange
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef, UserRef

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class Sent:
    channel: ChannelRef
    text: str
    mentions: bool
    ref: MessageRef
    reply_to: MessageRef | None = None


@dataclass
class FakeChat:
    """A ChatPort that records what the engine sent."""

    platform: str = "fake"
    command_prefix: str = "/"
    facilitators: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    reactions: list[tuple[MessageRef, str]] = field(default_factory=list)
    edits: list[tuple[MessageRef, str]] = field(default_factory=list)
    direct: list[tuple[UserRef, str]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _ref(self, channel: ChannelRef) -> MessageRef:
        return MessageRef(channel, f"bot{next(self._ids)}")

    async def send(self, channel: ChannelRef, message: Outbound) -> MessageRef:
        ref = self._ref(channel)
        self.sent.append(Sent(channel, message.text, message.mentions, ref))
        return ref

    async def reply(self, to: MessageRef, message: Outbound) -> MessageRef:
        ref = self._ref(to.channel)
        self.sent.append(Sent(to.channel, message.text, message.mentions, ref, to))
        return ref

    async def react(self, message: MessageRef, emoji: str) -> None:
        self.reactions.append((message, emoji))

    async def edit(self, message: MessageRef, new: Outbound) -> None:
        self.edits.append((message, new.text))

    async def direct_message(self, user: UserRef, message: Outbound) -> None:
        self.direct.append((user, message.text))

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        return user.id in self.facilitators


class MemoryTx:
    def __init__(self, data: MemoryData) -> None:
        self.d = data

    async def claim_event(self, platform: str, event_id: str, at: datetime) -> bool:
        key = (platform, event_id)
        if key in self.d.events:
            return False
        self.d.events.add(key)
        return True

    async def get_group(self, channel: ChannelRef) -> Group | None:
        for g in self.d.groups.values():
            if g.channel == channel:
                return g
        return None

    async def get_group_by_id(self, group_id: int) -> Group | None:
        return self.d.groups.get(group_id)

    async def create_group(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group:
        group = Group(len(self.d.groups) + 1, channel, phase, at, at)
        self.d.groups[group.id] = group
        return group

    async def record_phase_change(self, change: PhaseChange) -> None:
        self.d.changes.append(change)
        group = self.d.groups[change.group_id]
        self.d.groups[group.id] = replace(group, phase=change.to_phase, phase_since=change.at)

    async def phase_history(self, group_id: int, limit: int) -> list[PhaseChange]:
        return [c for c in self.d.changes if c.group_id == group_id][-limit:]

    async def get_state(self, key: str) -> str | None:
        return self.d.state.get(key)

    async def set_state(self, key: str, value: str) -> None:
        self.d.state[key] = value


@dataclass
class MemoryData:
    groups: dict[int, Group] = field(default_factory=dict)
    changes: list[PhaseChange] = field(default_factory=list)
    events: set[tuple[str, str]] = field(default_factory=set)
    state: dict[str, str] = field(default_factory=dict)


class MemoryStore:
    """The store port in memory; a failed transaction leaves the data as it was."""

    def __init__(self) -> None:
        self.data = MemoryData()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTx]:
        snapshot = copy.deepcopy(self.data)
        try:
            yield MemoryTx(self.data)
        except BaseException:
            self.data = snapshot
            raise


class Harness:
    """An engine on fakes, with members who speak in the words of the feature."""

    def __init__(self, facilitators: tuple[str, ...] = ("alice",)) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.chat = FakeChat(facilitators=set(facilitators))
        self.engine = Engine(self.store, self.clock, [self.chat])
        self.channel = ChannelRef("fake", "general", "#general")
        self._events = itertools.count(1)

    def member(self, name: str) -> Member:
        return Member(self, UserRef("fake", name, name))

    def next_event_id(self) -> str:
        return f"e{next(self._events)}"


@dataclass
class Member:
    h: Harness
    user: UserRef

    async def says(self, text: str, channel: ChannelRef | None = None) -> Reply | None:
        assert text.startswith("/")
        event = CommandInvoked(self.h.next_event_id(), channel or self.h.channel, self.user, text[1:])
        return await self.h.engine.handle(event)

    async def runs(self, path: str, **options: str) -> Reply | None:
        event = CommandInvoked(self.h.next_event_id(), self.h.channel, self.user, path, dict(options))
        return await self.h.engine.handle(event)

    async def reacts(self, message: MessageRef, emoji: str, event_id: str | None = None) -> None:
        await self.h.engine.handle(
            ReactionAdded(event_id or self.h.next_event_id(), message, self.user, emoji)
        )

    async def unreacts(self, message: MessageRef, emoji: str, event_id: str | None = None) -> None:
        await self.h.engine.handle(
            ReactionRemoved(event_id or self.h.next_event_id(), message, self.user, emoji)
        )
