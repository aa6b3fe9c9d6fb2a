"""Matrix test support: members played by matrix-nio clients, and the bot running on a real store.

Nothing here sleeps to synchronise: members sync until what they wait for shows up (or a timeout
fails the test), and the bot's engine is wrapped so a test can wait for the events it received.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import AsyncClient, RoomCreateError, RoomPutStateError, RoomRedactError, RoomSendError, SyncResponse

from adapters.matrix.adapter import MatrixAdapter, MatrixSettings
from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.app import bootstrap
from bot.config import parse_config
from core.commands import CommandSpec
from core.context import Handler
from core.engine import Engine
from core.events import InboundEvent, ReactionAdded, Reply
from core.outbox import Post
from core.ports import StateChanges
from tests.support import FakeClock, SinkProxy
from tests.synapse import Account, Homeserver

WAIT = 30.0
MEMBER_FILTER = {"room": {"timeline": {"limit": 1000}}}

Event = dict[str, Any]


class Member:
    """A person in the rooms, played by a second matrix-nio client."""

    def __init__(self, server: Homeserver, account: Account) -> None:
        self.account = account
        self.user_id = account.user_id
        self.client = AsyncClient(server.url, account.user_id)
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        self.since: str | None = None
        self.seen: list[tuple[str, Event]] = []
        self.highlights: dict[str, int] = {}
        self.invited: list[str] = []

    async def close(self) -> None:
        await self.client.close()

    async def creates_room(
        self, *, invite: Sequence[str] = (), encrypted: bool = False, power: Mapping[str, int] | None = None
    ) -> str:
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = await self.client.room_create(invite=list(invite), initial_state=initial_state)
        assert not isinstance(response, RoomCreateError), response
        room_id = str(response.room_id)
        if power:
            current = await self.client.room_get_state_event(room_id, "m.room.power_levels")
            content = dict(current.content)  # type: ignore[union-attr]
            content["users"] = {**content.get("users", {}), **power}
            put = await self.client.room_put_state(room_id, "m.room.power_levels", content)
            assert not isinstance(put, RoomPutStateError), put
        return room_id

    async def invites(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        assert getattr(response, "status_code", None) is None, response

    async def joins(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        assert getattr(response, "status_code", None) is None, response

    async def leaves(self, room_id: str) -> None:
        response = await self.client.room_leave(room_id)
        assert getattr(response, "status_code", None) is None, response

    async def sends(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        response = await self.client.room_send(room_id, event_type, content)
        assert not isinstance(response, RoomSendError), response
        return str(response.event_id)

    async def is_named(self, display_name: str) -> None:
        response = await self.client.set_displayname(display_name)
        assert getattr(response, "status_code", None) is None, response

    async def says(self, room_id: str, text: str) -> str:
        return await self.sends(room_id, {"msgtype": "m.text", "body": text})

    async def reacts(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.sends(room_id, content, "m.reaction")

    async def redacts(self, room_id: str, event_id: str) -> str:
        response = await self.client.room_redact(room_id, event_id)
        assert not isinstance(response, RoomRedactError), response
        return str(response.event_id)

    async def sync(self, timeout_ms: int = 1000) -> None:
        # A long timeline, so that a member sees everything between two of its syncs in tests.
        response = await self.client.sync(timeout=timeout_ms, since=self.since, sync_filter=MEMBER_FILTER)
        assert isinstance(response, SyncResponse), response
        self.since = response.next_batch
        for room_id, info in response.rooms.join.items():
            self.seen.extend((room_id, event.source) for event in info.timeline.events)
            if info.unread_notifications is not None:
                self.highlights[room_id] = info.unread_notifications.highlight_count or 0
        for room_id, invite_info in response.rooms.invite.items():
            self.invited.append(room_id)
            self.seen.extend((room_id, event.source) for event in invite_info.invite_state)
        for room_id, leave_info in response.rooms.leave.items():
            self.seen.extend((room_id, event.source) for event in leave_info.timeline.events)

    async def sees_invite(self, within: float = WAIT) -> str:
        """The id of the first room this member is invited to, syncing until there is one."""
        async with asyncio.timeout(within):
            while not self.invited:
                await self.sync()
        return self.invited[0]

    def find(self, room_id: str, match: Callable[[Event], bool]) -> list[Event]:
        return [event for room, event in self.seen if room == room_id and match(event)]

    async def sees(self, room_id: str, match: Callable[[Event], bool], within: float = WAIT) -> Event:
        """The first event in the room that matches, syncing until it arrives."""
        async with asyncio.timeout(within):
            while True:
                found = self.find(room_id, match)
                if found:
                    return found[0]
                await self.sync()


def from_bot(bot_user_id: str, msgtype: str | None = "m.notice") -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        if event.get("sender") != bot_user_id or event.get("type") != "m.room.message":
            return False
        return msgtype is None or event.get("content", {}).get("msgtype") == msgtype

    return match


def reply_to(event_id: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        relation = event.get("content", {}).get("m.relates_to", {})
        return bool(relation.get("m.in_reply_to", {}).get("event_id") == event_id)

    return match


def membership(user_id: str, state: str) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return (
            event.get("type") == "m.room.member"
            and event.get("state_key") == user_id
            and event.get("content", {}).get("membership") == state
        )

    return match


class RecordingEngine(SinkProxy):
    """The real engine (`.engine`), with a record of every batch the adapter handed it (and a way to
    wait)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.received: list[InboundEvent] = []
        self.batches: list[list[InboundEvent]] = []  # as handed over, one list per sync
        self.states: list[dict[str, str | None]] = []
        # Set to make the next batch holding a reaction fail after it was applied.
        self.crash_on_next_reaction = False
        self._changed = asyncio.Condition()

    async def handle_batch(
        self,
        events: Sequence[InboundEvent],
        state: StateChanges | None = None,
        posts: Sequence[Post] = (),
    ) -> list[Reply | None]:
        if self.crash_on_next_reaction and any(isinstance(e, ReactionAdded) for e in events):
            # The events are applied, then the process "dies" before the sync token is stored.
            self.crash_on_next_reaction = False
            await self.engine.handle_batch(events, None)
            async with self._changed:
                self.received.extend(events)
                self._changed.notify_all()
            raise RuntimeError("simulated crash before the sync token was stored")
        replies = await self.engine.handle_batch(events, state, posts)
        async with self._changed:
            self.received.extend(events)
            self.batches.append(list(events))
            self.states.append(dict(state.values) if state else {})
            self._changed.notify_all()
        return replies

    async def wait_batches(self, count: int, within: float = WAIT) -> None:
        """Until the adapter has handed over `count` sync batches (the first: its start-up sync)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.states) >= count)

    async def wait_for(self, match: Callable[[list[InboundEvent]], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: match(self.received))


@dataclass
class RunningBot:
    """The adapter syncing in a task, on its own database, until stopped."""

    settings: MatrixSettings
    store: SqlStore
    engine: RecordingEngine
    adapter: MatrixAdapter
    task: asyncio.Task[None] | None = None
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def user_id(self) -> str:
        return self.settings.user_id

    @property
    def chat(self) -> Any:
        return self.adapter.chat

    async def stop(self) -> None:
        """Stop it as SIGINT stops `peerbot run`: the adapter closed, the engine drained."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


async def open_store(url: str) -> SqlStore:
    """The SQL store on a database (SQLite or PostgreSQL), migrated."""
    engine = make_engine(url)
    await migrate.upgrade(engine)
    return SqlStore(engine)


async def open_sqlite(path: Path) -> SqlStore:
    return await open_store(f"sqlite+aiosqlite:///{path}")


async def start_bot(
    settings: MatrixSettings,
    store: SqlStore,
    clock: FakeClock | None = None,
    commands: Mapping[CommandSpec, Handler] | None = None,
) -> RunningBot:
    """Run the bot as `peerbot run` does (bot/app.py `bootstrap`), with the engine wrapped in a recorder
    and ticked by hand.

    `commands` are declared beside the built-in ones, with their handlers: a test's own commands
    (one that fails, say), so that no such command has to exist in the bot itself.
    """
    clock = clock or FakeClock()

    def recorded(engine: Engine) -> RecordingEngine:
        for spec, handler in (commands or {}).items():
            engine.specs = (*engine.specs, spec)
            engine.handlers[spec.path] = handler
        return RecordingEngine(engine)

    app = bootstrap(parse_config({}, env={}), store, clock, matrix=settings, sink=recorded, tick_every=None)
    assert isinstance(app.sink, RecordingEngine)
    bot = RunningBot(settings, store, app.sink, app.adapter(MatrixAdapter), clock=clock)
    bot.task = asyncio.create_task(app.run())
    return bot


async def make_rooms(server: Homeserver, user_id: str, token: str, count: int, at_once: int = 8) -> list[str]:
    """`count` rooms made by the user itself (so that it is in each), a few requests at a time."""
    client = AsyncClient(server.url, user_id)
    client.restore_login(user_id, "", token)
    made: list[str] = []
    try:

        async def one(n: int) -> str:
            response = await client.room_create(name=f"room {n}")
            assert not isinstance(response, RoomCreateError), response
            return str(response.room_id)

        for start in range(0, count, at_once):
            made += await asyncio.gather(*(one(n) for n in range(start, min(start + at_once, count))))
    finally:
        await client.close()
    return made


def joins_after_syncs(bot: RunningBot) -> list[tuple[str, int]]:
    """Records, for each invite the adapter answers, how many sync batches it had handed over then."""
    adapter = bot.adapter
    assert isinstance(adapter, MatrixAdapter)
    answered: list[tuple[str, int]] = []
    answer = adapter._answer_invite

    async def counted(room_id: str, invite: Any) -> None:
        answered.append((room_id, len(bot.engine.states)))
        await answer(room_id, invite)

    adapter._answer_invite = counted  # type: ignore[method-assign]
    return answered
