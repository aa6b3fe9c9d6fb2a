"""The test API over the fake Discord: a guild with members who speak in the words of the feature.

answer = await alice.runs("/phase set", phase="organizing")
bob.reacts(message, "✅")
answer = await bob.presses(message, "vote:7:2")
scene.fake.sent_messages(scene.channel)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http

from adapters.discord.adapter import DiscordAdapter, DiscordSettings
from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.app import Bot, bootstrap
from bot.config import parse_config
from core.engine import Engine, ensure_group
from core.events import CommandInvoked, InboundEvent, Reply
from core.outbox import Post
from core.ports import StateChanges
from core.refs import ChannelRef, UserRef
from tests.fake_discord.server import MANAGE_GUILD, Channel, FakeDiscord, Interaction, User
from tests.support import FakeClock, SinkProxy


class RecordingEngine(SinkProxy):
    """The real engine (`.engine`) as the adapter sees it, recording every event it was given (after
    applying it)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.received: list[InboundEvent] = []
        self.changed = asyncio.Condition()
        self.delay = 0.0  # seconds to take over each command, to make the adapter defer
        self.next_reply: Reply | None = None  # answer the next command with this instead
        self.batch_delay = 0.0  # seconds to take over each batch of reactions
        self.batches_started = 0

    async def handle(self, event: InboundEvent) -> Reply | None:
        reply = await super().handle(event)
        if isinstance(event, CommandInvoked):
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.next_reply is not None:
                reply, self.next_reply = self.next_reply, None
        self.received.append(event)
        async with self.changed:
            self.changed.notify_all()
        return reply

    async def handle_batch(
        self,
        events: Sequence[InboundEvent],
        state: StateChanges | None = None,
        posts: Sequence[Post] = (),
    ) -> list[Reply | None]:
        self.batches_started += 1
        async with self.changed:
            self.changed.notify_all()
        if self.batch_delay:
            await asyncio.sleep(self.batch_delay)
        replies = await super().handle_batch(events, state, posts)
        self.received.extend(events)
        async with self.changed:
            self.changed.notify_all()
        return replies

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await asyncio.wait_for(wait(), within)


@dataclass
class Answer:
    """What the member saw in answer to a slash command."""

    interaction: Interaction

    @property
    def deferred(self) -> bool:
        return bool(self.interaction.callback and self.interaction.callback.get("type") == 5)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The message bodies of the answer, in order (the callback's data, edits, follow-ups)."""
        i = self.interaction
        assert i.callback is not None
        out = []
        if not self.deferred:
            out.append(i.callback.get("data") or {})
        elif i.original is not None and not i.original_deleted:
            out.append(i.original)
        out.extend(i.followups)
        return out

    @property
    def content(self) -> str:
        return "\n".join(b.get("content") or "" for b in self.bodies)

    @property
    def ephemeral(self) -> bool:
        return all(int(b.get("flags") or 0) & 64 for b in self.bodies)

    def __contains__(self, text: str) -> bool:
        return text in self.content

    async def in_parts(self, fake: FakeDiscord, count: int) -> Answer:
        """Wait until the answer has `count` messages (the first, then follow-ups)."""
        await fake.until(lambda: len(self.bodies) >= count)
        return self


def answered(interaction: Interaction) -> bool:
    callback = interaction.callback
    if callback is None:
        return False
    if callback.get("type") != 5:
        return True
    original = interaction.original or {}
    return bool(interaction.followups) or bool(original.get("content"))


@dataclass
class Member:
    scene: DiscordScene
    user: User

    @property
    def id(self) -> str:
        return self.user.id

    def user_ref(self) -> UserRef:
        return UserRef("discord", self.user.id, self.user.name)

    async def runs(self, path: str, channel: Channel | None = None, **options: Any) -> Answer:
        """Run a slash command and wait for the bot's complete answer."""
        fake = self.scene.fake
        interaction = fake.run_command(self.user, channel or self.scene.channel, path, options)
        await fake.until(lambda: answered(interaction))
        if self.scene.engine is not None:  # what the command queued (a poll) is posted after the answer
            await self.scene.engine.engine.settle()
        return Answer(interaction)

    async def presses(self, message: dict[str, Any], custom_id: str) -> Answer:
        """Press the button with this custom id under a message and wait for the bot's complete answer."""
        fake = self.scene.fake
        interaction = fake.press_button(self.user, message, custom_id)
        await fake.until(lambda: answered(interaction))
        if self.scene.engine is not None:
            await self.scene.engine.engine.settle()
        return Answer(interaction)

    def reacts(self, message: dict[str, Any], emoji: str) -> None:
        self.scene.fake.react(self.user, message, emoji, add=True)

    def unreacts(self, message: dict[str, Any], emoji: str) -> None:
        self.scene.fake.react(self.user, message, emoji, add=False)


class DiscordScene:
    """A fake Discord with one guild (#general, #study), alice (Manage Server), bob and carol,
    and Peerbot connected to it (built by `bootstrap`, as `peerbot run` builds it) with a SQLite store and
    an injected clock."""

    def __init__(self, fake: FakeDiscord, db_path: Path) -> None:
        self.fake = fake
        self.db_url = f"sqlite+aiosqlite:///{db_path}"
        self.guild = fake.add_guild("Learning Circle")
        self.channel = fake.add_channel(self.guild, "general")
        self.study = fake.add_channel(self.guild, "study")
        stewards = fake.add_role(self.guild, "Stewards", MANAGE_GUILD)
        self.facilitators_role = fake.add_role(self.guild, "Facilitators")
        self.alice = Member(self, fake.add_member(self.guild, "alice", (stewards,)))
        self.bob = Member(self, fake.add_member(self.guild, "bob"))
        self.carol = Member(self, fake.add_member(self.guild, "carol", (self.facilitators_role,)))
        self.clock = FakeClock()
        self.store: SqlStore | None = None
        self.app: Bot | None = None
        self.engine: RecordingEngine | None = None
        self.bot: DiscordAdapter | None = None

    def settings(self, **overrides: Any) -> DiscordSettings:
        values: dict[str, Any] = {
            "token": self.fake.token,
            "api_base_url": self.fake.api_base_url,
            "gateway_url": self.fake.gateway_url,
            "guild_ready_timeout": 0.05,
        }
        values.update(overrides)
        return DiscordSettings(**values)

    async def open_store(self) -> SqlStore:
        """The scene's database, migrated, with the regulars of #general (once)."""
        if self.store is None:
            engine = make_engine(self.db_url)
            await migrate.upgrade(engine)
            self.store = SqlStore(engine)
            await self.seed_regulars()
        return self.store

    async def start_bot(self, **overrides: Any) -> DiscordAdapter:
        await self.open_store()
        config, settings = parse_config({}, env={}), self.settings(**overrides)
        self.app = bootstrap(
            config, self.store, self.clock, discord=settings, sink=RecordingEngine, tick_every=None
        )
        assert isinstance(self.app.sink, RecordingEngine)
        self.engine = self.app.sink
        self.bot = self.app.adapter(DiscordAdapter)
        await self.app.start()
        await asyncio.wait_for(self.bot.wait_until_ready(), 10)
        return self.bot

    async def seed_regulars(self) -> None:
        """alice, bob and carol are on the roster of #general from before, welcomed long ago: tests of
        other features see no welcome for them."""
        assert self.store is not None
        now = self.clock.now()
        async with self.store.transaction() as tx:
            group = await ensure_group(tx, ChannelRef("discord", self.channel.id, "#general"), now)
            for member in (self.alice, self.bob, self.carol):
                await tx.members.add(group.id, member.user_ref(), now)

    async def stop_bot(self) -> None:
        """Stop the bot the way `peerbot run` does: close the adapter, then drain the engine."""
        if self.app is not None:
            app, self.app, self.bot = self.app, None, None
            await app.stop()

    async def close(self) -> None:
        await self.stop_bot()
        if self.store is not None:
            await self.store.close()

    @property
    def received(self) -> Sequence[InboundEvent]:
        assert self.engine is not None
        return self.engine.received


ORIGINAL_BASE = discord.http.Route.BASE
ORIGINAL_GATEWAY = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


def restore_discord_addresses() -> None:
    discord.http.Route.BASE = ORIGINAL_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = ORIGINAL_GATEWAY
