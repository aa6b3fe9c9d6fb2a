"""The Discord adapter: a discord.py client that feeds the core and the ChatPort it posts through.

Translation between Discord payloads and neutral events lives in `translate.py`; this module does the
I/O: login, command sync, the gateway, interaction responses and REST calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from adapters.discord.translate import (
    MAX_REACTIONS,
    MESSAGE_COMPONENT,
    PLATFORM,
    REACTION_PAGE,
    THREAD_ARCHIVE_MINUTES,
    THREAD_EXISTS,
    MemberAccess,
    SlashCommand,
    button_rows,
    command_payloads,
    cut_text,
    delivery_failure,
    may_facilitate,
    message_reactions,
    next_page_after,
    part_nonce,
    reaction_event,
    reaction_event_id,
    reaction_users,
    server_access,
    server_member_event,
    slash_command,
    split_text,
    too_large,
    vote_press,
)
from adapters.pacing import Pacer
from core.commands import UsageError, parse_options
from core.events import Attachment, CommandInvoked, InboundEvent, Reply
from core.export import too_big
from core.metrics import NO_METRICS, Metrics
from core.ports import (
    AdapterFailed,
    Button,
    DeliveryFailed,
    EventSink,
    FileTooLarge,
    NoThread,
    Outbound,
    Store,
)
from core.refs import ChannelRef, MessageRef, UserRef

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
DEFAULT_API = "https://discord.com/api"
BATCH_LIMIT = 256
REST_BURST = 10
# Open polls read per page when reconciling: a bot with 100,000 open polls never holds them all.
RECONCILE_PAGE = 500
ACCESS_MEMORY = 4096
REACTION_MEMORY = 4096
THREAD_MEMORY = 4096
APPLY_ATTEMPTS = 3
UNKNOWN_BUTTON = "Peerbot does not know this button (it may be from an older version); nothing was done."
MISSING_PERMISSIONS = (
    "I am not allowed to do that in this channel. Ask an admin to give me View Channel, Send Messages,"
    " Add Reactions and Read Message History here."
)


class DiscordStartError(AdapterFailed):
    """The adapter could not start; the message is one line for the operator."""


class LoginRejected(DiscordStartError):
    """Discord refused the token."""


@dataclass(frozen=True, slots=True)
class DiscordSettings:
    token: str
    guild_ids: tuple[int, ...] = ()
    facilitator_role: str | None = None
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    api_base_url: str | None = None
    gateway_url: str | None = None
    # Answer an interaction directly when the engine is done within this many seconds, else defer.
    # Discord allows 3 s from sending it, gateway and event loop included; 1.5 s leaves room for both.
    defer_after: float = 1.5
    # How long discord.py waits for more GUILD_CREATEs after the last one before it is ready.
    guild_ready_timeout: float = 2.0
    # The global REST limit is 50/s; the bot's own calls stay under it.
    rest_rate: float = 40.0
    # Ask for the server members intent, so that joining a server joins the group of its welcome channel.
    server_joins: bool = False


@dataclass(slots=True)
class Reconciled:
    """What one reconcile pass after a new gateway session did."""

    shard_id: int
    polls: int = 0
    changed: int = 0
    skipped: int = 0


OneAtATime = Callable[[str], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def alone(name: str) -> AsyncIterator[None]:
    """No lock: for a database no other process opens (the default)."""
    yield


def rest_share(settings: DiscordSettings) -> tuple[float, int]:
    """The REST rate and burst this process may use: the global limit is the bot's, shared by every
    process that runs some of its shards, so a process running `shard_ids` of `shard_count` takes
    that share of it."""
    if settings.shard_ids is None or not settings.shard_count:
        return settings.rest_rate, REST_BURST
    share = len(settings.shard_ids) / settings.shard_count
    return settings.rest_rate * share, max(1, round(REST_BURST * share))


def point_at(api_base_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST calls and gateway connections to a Discord-compatible server.

    discord.py keeps both addresses as class attributes, so this applies to the whole process.
    """
    if api_base_url:
        discord.http.Route.BASE = api_base_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def retry_after(error: discord.HTTPException) -> float | None:
    """Seconds Discord asked to wait, from a 429 discord.py gave up on (its body's value is not kept)."""
    response = getattr(error, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@contextmanager
def refusals() -> Iterator[None]:
    """Turn discord.py's errors in a post into `DeliveryFailed`, permanent or not (the cause is kept)."""
    try:
        yield
    except discord.HTTPException as error:
        raise delivery_failure(error.status, error.code, error.text, retry_after(error)) from error
    except discord.RateLimited as error:  # a wait longer than max_ratelimit_timeout
        raise DeliveryFailed(
            f"rate limited for {error.retry_after:.1f} s", permanent=False, retry_after=error.retry_after
        ) from error
    except (aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
        raise DeliveryFailed(
            f"no answer from Discord: {type(error).__name__} {error}".rstrip(), permanent=False
        ) from error


def lacks_permission(error: BaseException) -> bool:
    """Discord refused for want of a permission (raw, or as the cause of a DeliveryFailed)."""
    return isinstance(error, discord.Forbidden) or isinstance(error.__cause__, discord.Forbidden)


def minimal_intents(server_joins: bool = False) -> discord.Intents:
    """Guilds (channels and roles for the facilitator role) and guild reactions (votes). No message
    content; no members (slash commands carry their own member data) unless `server_joins` asks for
    the privileged members intent, for members joining and leaving the server."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    intents.members = server_joins
    return intents


class PeerbotClient(discord.AutoShardedClient):
    """discord.py's client, with taps on the raw gateway parsers that feed the adapter.

    The taps run synchronously while discord.py parses a dispatch, so the shard's sequence number is
    still the one of the event being parsed; discord.py's own processing carries on unchanged. They use
    discord.py internals (`_connection.parsers`, `_get_websocket`), pinned by the version range in
    pyproject.toml; the end-to-end tests fail if those change.
    """

    def __init__(self, adapter: DiscordAdapter, settings: DiscordSettings) -> None:
        # Peerbot uses no voice; without this discord.py warns about missing voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        sharding: dict[str, Any] = {"shard_count": settings.shard_count}
        if settings.shard_ids is not None:
            sharding["shard_ids"] = list(settings.shard_ids)
        super().__init__(
            intents=minimal_intents(settings.server_joins),
            **sharding,
            allowed_mentions=NO_MENTIONS,
            guild_ready_timeout=settings.guild_ready_timeout,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
        )
        self.adapter = adapter
        parsers: dict[str, Callable[[Any], None]] = self._connection.parsers
        for kind in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
            parsers[kind] = self._tap_gateway(kind, parsers[kind], self._reaction)
        parsers["INTERACTION_CREATE"] = self._tap_interaction(parsers["INTERACTION_CREATE"])
        if settings.server_joins:
            for kind in ("GUILD_MEMBER_ADD", "GUILD_MEMBER_REMOVE"):
                parsers[kind] = self._tap_gateway(kind, parsers[kind], self._server_member)

    def _tap_gateway(
        self, kind: str, parse: Callable[[Any], None], read: Callable[[str, Any, str], InboundEvent | None]
    ) -> Callable[[Any], None]:
        """Queue the neutral event `read` makes of a dispatch (reactions, server members), in gateway
        order. These dispatches carry no id: (session, sequence) names each delivery."""

        def tapped(data: Any) -> None:
            try:
                guild_id = data.get("guild_id")
                ws = self._get_websocket(int(guild_id)) if guild_id else self._get_websocket(shard_id=0)
                event = read(kind, data, reaction_event_id(str(ws.session_id), int(ws.sequence or 0)))
                if event is not None:
                    self.adapter.reactions.put_nowait(event)
            except Exception:
                log.exception("could not read a %s event", kind)
            parse(data)

        return tapped

    def _reaction(self, kind: str, data: Any, event_id: str) -> InboundEvent | None:
        return reaction_event(kind, data, event_id, str(self.user.id) if self.user else None)

    def _server_member(self, kind: str, data: Any, event_id: str) -> InboundEvent | None:
        guild = self.get_guild(int(data["guild_id"]))
        welcome = guild.system_channel if guild is not None else None
        return server_member_event(kind, data, event_id, str(welcome.id) if welcome else None)

    def _tap_interaction(self, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def tapped(data: Any) -> None:
            try:
                command = slash_command(data) or vote_press(data)
                if command is not None:
                    self.adapter.pending[command.event.event_id] = command
                elif data.get("type") == MESSAGE_COMPONENT:  # a button that is no vote: said so
                    self.adapter.pending[str(data["id"])] = None
            except Exception:
                log.exception("could not read an interaction")
            parse(data)

        return tapped

    async def setup_hook(self) -> None:
        await self.adapter.sync_commands()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.adapter.answer(interaction)

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s in %d guilds", self.user, len(self.guilds))
        self.adapter.ready.set()

    async def on_shard_ready(self, shard_id: int) -> None:
        # discord.py dispatches this after a READY and the shard's GUILD_CREATEs, never after RESUMED:
        # a new session, which the gateway does not replay the gap before.
        self.adapter.shard_up(shard_id)
        self.adapter.new_session(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.adapter.shard_up(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.adapter.shard_down(shard_id)


def buttons_view(buttons: tuple[Button, ...]) -> discord.ui.View:
    """The buttons as discord.py sends them: secondary (grey) buttons in the rows `button_rows` lays
    out. The view is stopped before it is sent, so discord.py keeps no callbacks for it: presses reach
    the bot as interactions (`vote_press`), after a restart as before one."""
    view = discord.ui.View(timeout=None)
    for row, in_row in enumerate(button_rows(buttons)):
        for button in in_row:
            view.add_item(
                discord.ui.Button(
                    style=discord.ButtonStyle.secondary,
                    label=button.label,
                    custom_id=button.custom_id,
                    row=row,
                )
            )
    view.stop()
    return view


def _snowflake(value: str) -> int:
    """A Discord id from its text; 0 for text that is no id (never sent to Discord)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else 0


class DiscordAdapter:
    """Runs one discord.py client: commands in, replies out, reactions to votes (an `Adapter`)."""

    def __init__(
        self,
        settings: DiscordSettings,
        store: Store,
        sink: EventSink,
        metrics: Metrics = NO_METRICS,
        one_at_a_time: OneAtATime = alone,
    ) -> None:
        self.settings = settings
        self.store = store
        # A lock on the database for work that several processes starting at once must do only once.
        self.one_at_a_time = one_at_a_time
        self.sink = sink
        self.metrics = metrics
        self.client = PeerbotClient(self, settings)
        self.chat = DiscordChat(self)
        # Gateway events applied in order, in batches: reactions, and members joining or leaving the server.
        self.reactions: asyncio.Queue[InboundEvent] = asyncio.Queue()
        # Interaction id -> its command, from the gateway tap until answered; None for a button press
        # that is no command the bot knows.
        self.pending: dict[str, SlashCommand | None] = {}
        self.ready = asyncio.Event()
        self._access: OrderedDict[tuple[str, str], tuple[MemberAccess, str | None]] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        # Reconciling a poll holds this, so that no live vote is applied between the snapshot and the write.
        self._applying = asyncio.Lock()
        self._reconciling: dict[int, asyncio.Task[None]] = {}  # shard id -> its reconcile pass
        self.reconciled: list[Reconciled] = []  # finished passes, oldest first (diagnostics and tests)
        self._reconciled_changed = asyncio.Condition()
        self._logging_in = False
        self._down: set[int] = set()  # shards whose gateway connection is lost, until it is back

    @property
    def connected(self) -> bool:
        """Every shard of this process is connected to the gateway (ready, or resumed since a loss)."""
        return self.ready.is_set() and not self._down and not self.client.is_closed()

    def shard_up(self, shard_id: int) -> None:
        if shard_id in self._down:
            self._down.discard(shard_id)
            self.metrics.reconnected(PLATFORM)
            log.info("shard %d is connected to the gateway again", shard_id)

    def shard_down(self, shard_id: int) -> None:
        self._down.add(shard_id)

    # Life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (LoginRejected for a bad token), sync the commands, connect the gateway."""
        point_at(self.settings.api_base_url, self.settings.gateway_url)
        self._logging_in = True
        try:
            await self.client.login(self.settings.token)
        except discord.LoginFailure:
            await self.client.close()
            raise LoginRejected(
                "Discord rejected the bot token (401 Unauthorized): check discord.token or"
                " PEERBOT_DISCORD_TOKEN"
            ) from None
        except discord.HTTPException as error:  # the command sync in setup_hook
            await self.client.close()
            raise DiscordStartError(f"Discord refused to register the commands: {error}") from None
        except (OSError, aiohttp.ClientError) as error:
            await self.client.close()
            where = self.settings.api_base_url or DEFAULT_API
            reason = str(error) or type(error).__name__
            raise DiscordStartError(f"cannot reach Discord at {where}: {reason}") from None
        self._tasks = [
            asyncio.create_task(self.client.connect(), name="discord-gateway"),
            asyncio.create_task(self._apply_reactions(), name="discord-reactions"),
        ]

    async def wait_until_ready(self) -> None:
        await self.ready.wait()

    async def serve(self) -> None:
        """After start(): run until the gateway stops for good (it reconnects and resumes by itself)."""
        try:
            await self._tasks[0]
        except discord.PrivilegedIntentsRequired:
            raise DiscordStartError(
                "Discord refused the server members intent that discord.server_joins asks for: switch on"
                " Server Members Intent for the bot in the Developer Portal, or set discord.server_joins"
                " to false"
            ) from None

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Disconnect, then apply the reactions already received: the gateway will not send them again."""
        for task in self._reconciling.values():
            task.cancel()
        await asyncio.gather(*self._reconciling.values(), return_exceptions=True)
        self._reconciling.clear()
        if self._logging_in:  # discord.py's client cannot be closed before its login
            await self.client.close()
        if self._tasks:
            try:
                await asyncio.wait_for(self.reactions.join(), drain_timeout)
            except TimeoutError:
                log.warning("%d reaction events were not applied before shutdown", self.reactions.qsize())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # Commands ----------------------------------------------------------------------------------

    async def sync_commands(self) -> None:
        """Register the engine's commands, globally or in the configured guilds.

        The payload's digest is kept in the store, so a restart with the same commands sends nothing
        (command creation is limited to 200 a day per guild). Processes that start at once (shards
        split across them) sync one at a time, under a lock on the database: the first registers,
        the others find its digest and send nothing.
        """
        app_id = self.client.application_id
        assert app_id is not None
        payload = command_payloads(self.sink.visible_specs(PLATFORM))
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        scopes: list[int | None] = list(self.settings.guild_ids) or [None]
        async with self.one_at_a_time(f"discord.commands.{app_id}"):
            for guild_id in scopes:
                key = f"commands.{app_id}.{guild_id or 'global'}"
                async with self.store.transaction() as tx:
                    if await tx.state(PLATFORM).get(key) == digest:
                        continue
                if guild_id is None:
                    await self.client.http.bulk_upsert_global_commands(app_id, payload)
                else:
                    await self.client.http.bulk_upsert_guild_commands(app_id, guild_id, payload)
                async with self.store.transaction() as tx:
                    await tx.state(PLATFORM).set(key, digest)
                log.info(
                    "registered %d commands (%s)", len(payload), f"guild {guild_id}" if guild_id else "global"
                )

    async def answer(self, interaction: discord.Interaction) -> None:
        """Run the command (or vote button) and answer within Discord's 3 s: directly if the core is
        quick, else defer. A secret command (a vote) is deferred privately: a public "thinking" would
        show everyone who pressed, and when."""
        key = str(interaction.id)
        if key not in self.pending:
            return
        command = self.pending.pop(key)
        if command is None:
            await self._refuse_button(interaction)
            return
        event = command.event
        if command.access is not None:
            self.remember_access(event.user.id, event.channel.id, command.access, command.guild_id)
        self.chat.remember_file_limit(event.channel.id, interaction.filesize_limit)
        work = asyncio.ensure_future(self.sink.handle(event))
        done, _ = await asyncio.wait({work}, timeout=self.settings.defer_after)
        deferred = not done
        secret = self._secret(event)
        if deferred:
            await interaction.response.defer(thinking=True, ephemeral=secret)
        try:
            reply = await work
        except Exception as error:
            if lacks_permission(error):
                log.warning("missing permissions in channel %s", event.channel.id, exc_info=True)
                reply = Reply(MISSING_PERMISSIONS, is_error=True)
            else:
                log.exception("command %r failed", event.text)
                reply = Reply("Sorry, something went wrong while handling that command.", is_error=True)
        try:
            await self._deliver(interaction, reply, deferred, deferred_privately=secret)
        except discord.HTTPException as error:
            # Too late (the interaction expired) or Discord refused: the member sees "did not respond".
            log.warning("could not answer the %r command: %s", event.text, error)

    def _secret(self, event: CommandInvoked) -> bool:
        """What the member says stays between them and the bot (a vote, an anonymous reflection)."""
        try:
            invocation = parse_options(self.sink.visible_specs(PLATFORM), event.text, event.options or {})
        except UsageError:
            return False
        return invocation.secret

    async def _refuse_button(self, interaction: discord.Interaction) -> None:
        """A press of a button that is no command: a short private note, so the member's client does
        not say "interaction failed"."""
        try:
            await interaction.response.send_message(UNKNOWN_BUTTON, ephemeral=True)
        except discord.HTTPException as error:  # answered before (a replay), or expired
            log.info("could not answer a press of an unknown button: %s", error)

    async def _deliver(
        self,
        interaction: discord.Interaction,
        reply: Reply | None,
        deferred: bool,
        *,
        deferred_privately: bool = False,
    ) -> None:
        if reply is None:  # a replayed interaction, answered before
            if deferred:
                await interaction.delete_original_response()
            return
        if reply.file is not None:
            await self._deliver_file(interaction, reply.text, reply.file, deferred)
            return
        parts = split_text(reply.text)
        # Errors, and answers meant for the member alone (`pending`), are seen by them only.
        private = reply.is_error or reply.private
        if not deferred:
            await interaction.response.send_message(parts[0], ephemeral=private, allowed_mentions=NO_MENTIONS)
        elif deferred_privately:  # the deferred response is the member's alone: it stays so
            await interaction.edit_original_response(content=parts[0], allowed_mentions=NO_MENTIONS)
        elif private:
            # A deferred response keeps the visibility of the defer; a private answer must be private.
            await interaction.delete_original_response()
            await interaction.followup.send(parts[0], ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.edit_original_response(content=parts[0], allowed_mentions=NO_MENTIONS)
        for part in parts[1:]:
            await interaction.followup.send(
                part, ephemeral=private or deferred_privately, allowed_mentions=NO_MENTIONS
            )

    async def _deliver_file(
        self, interaction: discord.Interaction, summary: str, file: Attachment, deferred: bool
    ) -> None:
        """An answer with a file: the response message carries the summary and the attachment.

        It is deferred first when it was not: uploading may take longer than the 3 s Discord gives
        the first response, and a deferred one may be completed for 15 minutes. A refused upload is
        answered privately with why.
        """
        if not deferred:
            await interaction.response.defer(thinking=True)
        upload = discord.File(io.BytesIO(file.data), filename=file.filename)
        try:
            await interaction.edit_original_response(
                content=cut_text(summary), attachments=[upload], allowed_mentions=NO_MENTIONS
            )
            return
        except discord.HTTPException as error:
            if too_large(error.status, error.code):
                limit = await self.chat.max_file_size(ChannelRef(PLATFORM, str(interaction.channel_id)))
                why = too_big(file.size, limit)
            else:
                why = (
                    f"Sorry, the file could not be sent ({error.status} {error.text[:100]}). Try again later."
                )
            log.warning("could not attach %s to an answer: %s", file.filename, error)
        except (aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
            log.warning("could not attach %s to an answer: %s", file.filename, error)
            why = "Sorry, the file could not be sent (no answer from Discord). Try again later."
        await self._deliver(interaction, Reply(why, is_error=True), deferred=True)

    def remember_access(self, user_id: str, channel_id: str, access: MemberAccess, guild: str | None) -> None:
        key = (user_id, channel_id)
        self._access[key] = (access, guild)
        self._access.move_to_end(key)
        while len(self._access) > ACCESS_MEMORY:
            self._access.popitem(last=False)

    def facilitator_role_ids(self, guild_id: str | None) -> set[str]:
        role = self.settings.facilitator_role
        if not role:
            return set()
        if role.isdigit():
            return {role}
        guild = self.client.get_guild(int(guild_id)) if guild_id else None
        if guild is None:
            return set()
        return {str(r.id) for r in guild.roles if r.name.casefold() == role.casefold()}

    def knows_access(self, user: UserRef, channel: ChannelRef) -> bool:
        return (user.id, channel.id) in self._access

    def may_facilitate(self, user: UserRef, channel: ChannelRef) -> bool:
        known = self._access.get((user.id, channel.id))
        if known is None:
            return False
        access, guild_id = known
        return may_facilitate(access, self.facilitator_role_ids(guild_id))

    # Reactions ---------------------------------------------------------------------------------

    async def _apply_reactions(self) -> None:
        """Apply reaction events in gateway order, many per batch (group commit in the engine)."""
        while True:
            batch = [await self.reactions.get()]
            while len(batch) < BATCH_LIMIT and not self.reactions.empty():
                batch.append(self.reactions.get_nowait())
            try:
                for attempt in range(1, APPLY_ATTEMPTS + 1):
                    try:
                        async with self._applying:
                            await self.sink.handle_batch(batch)
                        break
                    except Exception:
                        # Each event is applied at most once, so trying the whole batch again is safe.
                        log.exception("applying %d reaction events failed (attempt %d)", len(batch), attempt)
                        await asyncio.sleep(attempt)
            finally:
                for _ in batch:
                    self.reactions.task_done()

    # Reconciling polls after a new session ------------------------------------------------------

    def new_session(self, shard_id: int) -> None:
        """Start reconciling the open polls the shard serves, in the background; a pass still running
        for the shard's previous session is replaced (the new snapshot supersedes it)."""
        previous = self._reconciling.pop(shard_id, None)
        if previous is not None:
            previous.cancel()
        log.info("new session on shard %d: reconciling its open polls", shard_id)
        task = asyncio.create_task(self._reconcile_shard(shard_id), name=f"discord-reconcile-{shard_id}")
        self._reconciling[shard_id] = task
        task.add_done_callback(lambda done: self._forget_pass(shard_id, done))

    def _forget_pass(self, shard_id: int, task: asyncio.Task[None]) -> None:
        if self._reconciling.get(shard_id) is task:
            del self._reconciling[shard_id]

    def _serves(self, shard_id: int, message: MessageRef) -> bool:
        channel = self.client.get_channel(int(message.channel.id))
        guild = getattr(channel, "guild", None)
        return guild is not None and guild.shard_id == shard_id

    async def _reconcile_shard(self, shard_id: int) -> None:
        """Set the votes of the shard's open polls to the reactions on their messages now.

        Votes cast while the bot had no session were never delivered (the gateway replays only on
        RESUME). A poll whose message is gone (404) or unreadable (403) is skipped; nothing here
        stops the bot.
        """
        report = Reconciled(shard_id)
        try:
            # Events of the previous session first: they are older than the snapshots taken below.
            await self.reactions.join()
            async for message in self._open_poll_messages():
                if not self._serves(shard_id, message):
                    continue
                report.polls += 1
                try:
                    async with self._applying:
                        present = await self._reactions_now(message)
                        report.changed += await self.sink.reconcile(message, present)
                except discord.NotFound:
                    report.skipped += 1
                    log.info("poll message %s is gone (404): not reconciled", message.id)
                except discord.Forbidden:
                    report.skipped += 1
                    log.warning("may not read poll message %s (403): not reconciled", message.id)
                except Exception:
                    report.skipped += 1
                    log.exception("could not reconcile the poll on message %s", message.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling polls on shard %d failed", shard_id)
        log.info(
            "new session on shard %d: checked %d open polls, %d votes changed, %d skipped",
            shard_id,
            report.polls,
            report.changed,
            report.skipped,
        )
        self.reconciled.append(report)
        async with self._reconciled_changed:
            self._reconciled_changed.notify_all()

    async def _open_poll_messages(self) -> AsyncIterator[MessageRef]:
        """The messages of the open polls, read a page at a time (each page in a read of its own)."""
        after = 0
        while True:
            page = await self.sink.open_poll_page(PLATFORM, after, RECONCILE_PAGE)
            for message in page.messages:
                yield message
            if page.last is None:
                return
            after = page.last

    async def _reactions_now(self, message: MessageRef) -> dict[str, list[UserRef]]:
        """Who reacted with what on the message now (the bot left out), read over REST."""
        http = self.client.http
        bot_id = str(self.client.user.id) if self.client.user else None
        await self.chat.pacer.wait()
        payload = await http.get_message(int(message.channel.id), int(message.id))
        present: dict[str, list[UserRef]] = {}
        for reaction in message_reactions(payload):
            users: list[UserRef] = []
            after: str | None = None
            while reaction.others:
                await self.chat.pacer.wait()
                page = await http.get_reaction_users(
                    int(message.channel.id), int(message.id), reaction.route, REACTION_PAGE, after
                )
                users += reaction_users(page, bot_id)
                after = next_page_after(page)
                if after is None:
                    break
            present[reaction.emoji] = users
        return present

    async def reconcile_linked(self, message: MessageRef) -> None:
        """Set the votes of the poll just linked to `message` to the reactions on it now.

        Members can react as soon as the message exists, but their reactions count only once the
        outbox has linked the message to its poll; those from before were dropped. After a crash
        between posting and linking that is the whole outage, and the new session's pass may well
        have looked at the open polls before the link. A failure here is logged, never raised: the
        poll's own reactions still go on.
        """
        try:
            async with self._applying:
                present = await self._reactions_now(message)
                changed = await self.sink.reconcile(message, present)
        except discord.NotFound:
            return  # deleted already: its reactions fail for good too
        except Exception:
            log.warning("could not reconcile the poll on message %s once linked", message.id, exc_info=True)
            return
        if changed:
            log.info("poll message %s: %d votes from before it was linked counted", message.id, changed)

    @property
    def reconciling(self) -> bool:
        """A reconcile pass is running."""
        return bool(self._reconciling)

    async def wait_reconciled(self, passes: int) -> Reconciled:
        """Wait until `passes` reconcile passes have finished; the last of them."""
        async with self._reconciled_changed:
            await self._reconciled_changed.wait_for(lambda: len(self.reconciled) >= passes)
        return self.reconciled[passes - 1]


class DiscordChat:
    """The ChatPort on Discord. Works for any channel id, cached or not (the scheduler's path).

    A post with an idempotency key sends each part with the nonce `part_nonce(key, index)` in place of
    the random one discord.py picks, and discord.py sends it with `enforce_nonce`: Discord then
    answers a repeat within a few minutes with the first message. Failures raise `DeliveryFailed`.
    """

    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter
        self.client = adapter.client
        rate, burst = rest_share(adapter.settings)
        self.pacer = Pacer(
            rate,
            burst=burst,
            on_wait=lambda seconds: adapter.metrics.rate_limit_wait(PLATFORM, seconds),
        )
        self._reacted: OrderedDict[str, set[str]] = OrderedDict()
        self._file_limits: OrderedDict[str, int] = OrderedDict()  # channel id -> bytes, from interactions
        self._threads: OrderedDict[str, None] = OrderedDict()  # ids of threads known to exist

    @property
    def platform(self) -> str:
        return PLATFORM

    @property
    def command_prefix(self) -> str:
        return "/"

    @property
    def interactive_replies(self) -> bool:
        return True  # commands are answered with interaction responses

    def _channel(self, channel: ChannelRef) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(int(channel.id))

    async def _post(
        self,
        target: discord.abc.Messageable,
        message: Outbound,
        key: str | None,
        to: MessageRef | None = None,
    ) -> discord.Message:
        """Post the text, split into parts within the limit; the last part is returned, which is
        where reactions (poll options) belong, and it carries the buttons: below the whole text, on
        the message the poll is linked to."""
        sent: discord.Message | None = None
        parts = split_text(message.text)
        for index, part in enumerate(parts):
            options: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
            if key is not None:  # else discord.py sends a random nonce of its own
                options["nonce"] = part_nonce(key, index)
            if message.buttons and index == len(parts) - 1:
                options["view"] = buttons_view(message.buttons)
            if to is not None and index == 0:
                options["reference"] = discord.MessageReference(
                    message_id=int(to.id), channel_id=int(to.channel.id), fail_if_not_exists=False
                )
                options["mention_author"] = False
            await self.pacer.wait()
            with refusals():
                sent = await target.send(part, **options)
        assert sent is not None
        return sent

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        sent = await self._post(self._channel(channel), message, key)
        return MessageRef(channel, str(sent.id))

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        sent = await self._post(self._channel(to.channel), message, key, to)
        return MessageRef(to.channel, str(sent.id))

    @property
    def threads(self) -> bool:
        return True

    async def send_in_thread(
        self, root: MessageRef, name: str, message: Outbound, *, key: str | None = None
    ) -> MessageRef:
        """A thread started from a message has the message's id, so it needs no record: it is started
        unless this process knows it exists, and a second start is answered with code 160004 (it
        exists, whoever started it), which is success; a 403 (no Create Public Threads) is `NoThread`.
        The post is keyed as in the channel."""
        thread = ChannelRef(PLATFORM, root.id, name)
        if root.id not in self._threads:
            await self.pacer.wait()
            try:
                with refusals():
                    await self.client.http.start_thread_with_message(
                        int(root.channel.id),
                        int(root.id),
                        name=name,
                        auto_archive_duration=THREAD_ARCHIVE_MINUTES,
                    )
            except DeliveryFailed as failure:
                cause = failure.__cause__
                if isinstance(cause, discord.Forbidden):  # no Create Public Threads (an older invite)
                    raise NoThread(failure.reason) from cause
                if not (isinstance(cause, discord.HTTPException) and cause.code == THREAD_EXISTS):
                    raise
            self._threads[root.id] = None
            while len(self._threads) > THREAD_MEMORY:
                self._threads.popitem(last=False)
        self._threads.move_to_end(root.id)
        sent = await self._post(self._channel(thread), message, key)
        return MessageRef(thread, str(sent.id))

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None:
        """Adding a reaction is a PUT, idempotent by itself: the key is not needed.

        Only the outbox reacts, with a poll's options once it has linked the poll to its message: before
        the first, the votes members cast before the link are read (`reconcile_linked`).
        """
        if message.id not in self._reacted:
            await self.adapter.reconcile_linked(message)
        mine = self._reacted.setdefault(message.id, set())
        self._reacted.move_to_end(message.id)
        while len(self._reacted) > REACTION_MEMORY:
            self._reacted.popitem(last=False)
        if emoji in mine:
            return
        if len(mine) >= MAX_REACTIONS:
            log.warning(
                "not adding %s to message %s: Discord allows %d reactions", emoji, message.id, MAX_REACTIONS
            )
            return
        await self.pacer.wait()
        with refusals():
            await self._channel(message.channel).get_partial_message(int(message.id)).add_reaction(emoji)
        mine.add(emoji)

    async def edit(self, message: MessageRef, new: Outbound) -> None:
        await self.pacer.wait()
        partial = self._channel(message.channel).get_partial_message(int(message.id))
        with refusals():
            await partial.edit(content=cut_text(new.text), allowed_mentions=NO_MENTIONS)

    async def delete(self, message: MessageRef) -> None:
        """Delete a message (needs Manage Messages for others' messages); one gone already is done."""
        await self.pacer.wait()
        partial = self._channel(message.channel).get_partial_message(int(message.id))
        try:
            with refusals():
                await partial.delete()
        except DeliveryFailed as failure:
            if not isinstance(failure.__cause__, discord.NotFound):
                raise

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        """Discord keeps one DM channel per pair of users, so a retry posts into the same one."""
        await self.pacer.wait()
        with refusals():
            dm = await self.client.create_dm(discord.Object(int(user.id)))
        sent = await self._post(dm, message, key)
        return MessageRef(ChannelRef(PLATFORM, str(dm.id)), str(sent.id))

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        """What the member's latest interaction in the channel said; for a member the bot has not
        heard from (the weekly radar looks for a group's facilitators), their server roles, read once
        over REST and remembered like an interaction's."""
        if not self.adapter.knows_access(user, channel):
            await self._look_up_access(user, channel)
        return self.adapter.may_facilitate(user, channel)

    async def _look_up_access(self, user: UserRef, channel: ChannelRef) -> None:
        guild = getattr(self.client.get_channel(_snowflake(channel.id)), "guild", None)
        user_id = _snowflake(user.id)
        if guild is None or not user_id:
            return
        await self.pacer.wait()
        try:
            member = await self.client.http.get_member(guild.id, user_id)
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            log.info("cannot read the roles of %s in server %s: %s", user.id, guild.id, error)
            return
        roles = {str(r.id): r.permissions.value for r in guild.roles}
        access = server_access(member, roles, str(guild.id), str(guild.owner_id))
        self.adapter.remember_access(user.id, channel.id, access, str(guild.id))

    def remember_file_limit(self, channel_id: str, limit: int) -> None:
        """The attachment size limit an interaction in the channel gave (it follows the server's boosts)."""
        self._file_limits[channel_id] = limit
        self._file_limits.move_to_end(channel_id)
        while len(self._file_limits) > ACCESS_MEMORY:
            self._file_limits.popitem(last=False)

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        """What the latest interaction in the channel said; else the server's tier; else Discord's default."""
        known = self._file_limits.get(channel.id)
        if known is not None:
            return known
        guild = getattr(self.client.get_channel(int(channel.id)), "guild", None)
        return guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def send_file(
        self,
        channel: ChannelRef,
        file: Attachment,
        summary: Outbound,
        *,
        reply_to: MessageRef | None = None,
        key: str | None = None,
    ) -> MessageRef:
        """One message: the summary as its content, the file as its attachment (a multipart create)."""
        options: dict[str, Any] = {
            "allowed_mentions": NO_MENTIONS,
            "file": discord.File(io.BytesIO(file.data), filename=file.filename),
        }
        if key is not None:
            options["nonce"] = part_nonce(key, 0)
        if reply_to is not None:
            options["reference"] = discord.MessageReference(
                message_id=int(reply_to.id), channel_id=int(reply_to.channel.id), fail_if_not_exists=False
            )
            options["mention_author"] = False
        await self.pacer.wait()
        try:
            with refusals():
                sent = await self._channel(channel).send(cut_text(summary.text), **options)
        except DeliveryFailed as failure:
            cause = failure.__cause__
            if isinstance(cause, discord.HTTPException) and too_large(cause.status, cause.code):
                limit = await self.max_file_size(channel)
                raise FileTooLarge(file.size, limit, failure.reason) from cause
            raise
        return MessageRef(channel, str(sent.id))
