"""A protocol-faithful fake Discord on 127.0.0.1: the gateway (WebSocket) and the REST routes Peerbot uses.

The real discord.py client talks to it over real sockets. It keeps guilds, members, channels, messages
and reactions, records every request the bot makes, answers unknown routes with 404 *and* records them
(the fixture then fails the test), and can inject faults: a 429 with `retry_after`, a 5xx, a held request
(applied or not, answered when the test says so, or never), a dropped gateway connection, an invalidated
session. Message create honours `nonce` with `enforce_nonce`, as Discord does.

Bodies with files come as Discord takes them: `multipart/form-data` with the JSON body in `payload_json`
and each file in a `files[n]` part, referenced from the body's `attachments` by `"id": n`. Messages made
from them (message create, interaction responses, their edits and follow-ups) carry attachment objects
whose bytes the fake keeps and serves at their `url`; a file over `attachment_size_limit` (10 MiB, as in
interaction payloads) is refused with 413, code 40005, as Discord does.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import mimetypes
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, WSMsgType, web

API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 50) - 1
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 6) | (1 << 16)  # view, send, react, history

# Gateway intents (bit numbers).
GUILDS = 0
GUILD_MEMBERS = 1  # privileged: the application must have it switched on, as the fake's does
GUILD_MESSAGES = 9
GUILD_MESSAGE_REACTIONS = 10

JSON = {"Content-Type": "application/json"}
BUCKET_SLACK = 0.005
SESSION_EVENTS = {"READY", "RESUMED", "GUILD_CREATE"}  # never delivered twice, even with resume_overlap
MAX_NONCE = 25
PUBLIC_THREAD = 11
THREAD_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)  # minutes
HAS_THREAD = 1 << 5  # message flag
NONCE_WINDOW = 300.0  # "a few minutes": how long Discord remembers an enforced nonce


FILES: web.RequestKey[list[Any]] = web.RequestKey("files", list)  # a request's uploads (`Upload`s)


class Snowflakes:
    """Increasing snowflakes with a real timestamp part (discord.py reads creation times from them)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) & 0x3FFFFF))


@dataclass
class User:
    id: str
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.name,
            "global_name": None if self.bot else self.name.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass
class Role:
    id: str
    name: str
    permissions: int = 0
    position: int = 1

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Channel:
    id: str
    name: str
    guild_id: str | None = None
    kind: int = 0  # 0 text, 1 DM, 11 public thread
    parent_id: str | None = None  # a thread's channel
    owner_id: str | None = None  # who started a thread
    auto_archive_duration: int = 1440  # a thread's, in minutes

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.kind, "name": self.name}
        if self.kind == PUBLIC_THREAD:
            data.update(
                guild_id=self.guild_id,
                parent_id=self.parent_id,
                owner_id=self.owner_id,
                rate_limit_per_user=0,
                message_count=0,
                member_count=1,
                total_message_sent=0,
                flags=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": self.auto_archive_duration,
                    "archive_timestamp": "2026-03-02T09:00:00+00:00",
                    "locked": False,
                    "create_timestamp": "2026-03-02T09:00:00+00:00",
                },
            )
        elif self.guild_id:
            data.update(guild_id=self.guild_id, position=0, permission_overwrites=[], nsfw=False)
        return data


@dataclass
class Guild:
    id: str
    name: str
    channels: list[Channel] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # user id -> role ids
    system_channel_id: str | None = None  # where Discord greets new members: the welcome channel

    def permissions(self, user_id: str) -> int:
        perms = 0
        for role in self.roles:
            if role.id == self.id or role.id in self.members.get(user_id, []):
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms


@dataclass(frozen=True)
class Upload:
    """One `files[n]` part of a multipart request, as it arrived."""

    field: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class Recorded:
    """One REST request the bot made; `status` 0 while no answer has reached the bot (held, or cut)."""

    method: str
    path: str
    route: str
    body: Any
    status: int
    at: float
    files: list[Upload] = field(default_factory=list)


@dataclass
class Fault:
    route: str
    status: int
    times: int
    retry_after: float = 0.0
    is_global: bool = False


class Hold:
    """A request the fake holds on to (see `FakeDiscord.hold`).

    `reached` is a future that resolves to the request's record once the fake has it: with `applied`,
    after the platform carried it out (the message is stored); without, before anything happened.
    `release()` lets it go on: it is carried out (if not yet) and answered. `cut()` closes the
    connection instead: no answer, and an unapplied request is never carried out. After killing the
    client, cut (stopping the fake cuts every hold); a release would only notice the dead client if
    the fake has seen its connection close by then.
    """

    def __init__(self, route: str, applied: bool, where: Callable[[Recorded], bool] | None) -> None:
        self.route = route
        self.applied = applied
        self.where = where
        loop = asyncio.get_running_loop()
        self.reached: asyncio.Future[Recorded] = loop.create_future()
        self._answer: asyncio.Future[bool] = loop.create_future()
        self.done = False  # the fake let go of the request (answered or cut)

    def release(self) -> None:
        if not self._answer.done():
            self._answer.set_result(True)

    def cut(self) -> None:
        if not self._answer.done():
            self._answer.set_result(False)

    def matches(self, record: Recorded) -> bool:
        return record.route == self.route and (self.where is None or self.where(record))

    async def wait(self, record: Recorded, request: web.Request) -> bool:
        """Hold the request until released; True if it is to be answered (the client is still there)."""
        if not self.reached.done():
            self.reached.set_result(record)
        answer = await self._answer
        transport = request.transport
        if answer and transport is not None and not transport.is_closing():
            return True
        if transport is not None:
            transport.abort()
        return False


@dataclass
class Interaction:
    """A slash command a member ran (type 2) or a button they pressed (type 3), and what the bot answered."""

    id: str
    token: str
    user: User
    channel: Channel
    dispatched_at: float
    kind: int = 2
    payload: dict[str, Any] = field(default_factory=dict, repr=False)  # the INTERACTION_CREATE data
    callback: dict[str, Any] | None = None
    callback_at: float | None = None
    original: dict[str, Any] | None = None  # the response message, as last edited
    original_deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)


class Connection:
    """One gateway WebSocket; frames go out in dispatch order through a writer task."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while (frame := await self.queue.get()) is not None:
            try:
                await self.ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError):
                return

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(frame)

    def abort(self) -> None:
        """Cut the TCP connection without a close frame, as a network failure would."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.writer.cancel()


@dataclass
class Session:
    id: str
    shard: tuple[int, int]
    intents: int
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    connection: Connection | None = None
    alive: bool = True

    def covers(self, guild_id: str | None) -> bool:
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (int(guild_id) >> 22) % count == shard_id


NAME = re.compile(r"^[-_\w]{1,32}$")


def command_problems(commands: Any) -> list[str]:
    """What Discord would refuse in a bulk command overwrite (the documented limits)."""
    if not isinstance(commands, list) or len(commands) > 100:
        return ["at most 100 commands, as a list"]
    problems: list[str] = []
    names = [c.get("name") for c in commands]
    if len(set(names)) != len(names):
        problems.append("duplicate command names")

    def check(item: dict[str, Any], where: str, depth: int) -> int:
        name, description = str(item.get("name", "")), str(item.get("description", ""))
        if not NAME.match(name) or name != name.lower():
            problems.append(f"{where}: bad name {name!r}")
        if not 1 <= len(description) <= 100:
            problems.append(f"{where}: description must be 1-100 characters")
        size = len(name) + len(description)
        options = item.get("options") or []
        if len(options) > 25:
            problems.append(f"{where}: more than 25 options")
        seen_optional = False
        for option in options:
            kind = option.get("type")
            if kind in (1, 2) and depth >= 2:
                problems.append(f"{where}: subcommands nested too deep")
            if kind not in (1, 2):
                if option.get("required"):
                    if seen_optional:
                        problems.append(f"{where}: required option after an optional one")
                else:
                    seen_optional = True
                choices = option.get("choices") or []
                if len(choices) > 25:
                    problems.append(f"{where}.{option.get('name')}: more than 25 choices")
                size += sum(len(str(c["name"])) + len(str(c["value"])) for c in choices)
            size += check(option, f"{where}.{option.get('name')}", depth + (kind in (1, 2)))
        return size

    for command in commands:
        if check(command, str(command.get("name")), 0) > 4000:
            problems.append(f"{command.get('name')}: more than 4000 characters in all")
    return problems


def component_problems(components: Any) -> list[str]:
    """What Discord would refuse in a message's `components` (legacy layout: action rows of buttons;
    https://discord.com/developers/docs/components/reference)."""
    if not isinstance(components, list) or len(components) > 5:
        return ["components: at most 5 action rows, as a list"]
    problems: list[str] = []
    custom_ids: list[str] = []
    for r, row in enumerate(components):
        if not isinstance(row, dict) or row.get("type") != 1:
            problems.append(f"components.{r}: a top-level component must be an action row (type 1)")
            continue
        buttons = row.get("components")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 5:
            problems.append(f"components.{r}: an action row holds 1 to 5 buttons")
            continue
        for b, button in enumerate(buttons):
            where = f"components.{r}.components.{b}"
            if not isinstance(button, dict) or button.get("type") != 2:
                problems.append(f"{where}: only buttons (type 2) are known to this fake")
                continue
            style = button.get("style")
            if style not in (1, 2, 3, 4, 5):
                problems.append(f"{where}: bad button style {style!r}")
            label = button.get("label")
            if label is not None and (not isinstance(label, str) or len(label) > 80):
                problems.append(f"{where}: a label is at most 80 characters")
            if not label and not button.get("emoji"):
                problems.append(f"{where}: a button needs a label or an emoji")
            custom_id = button.get("custom_id")
            if style == 5:
                if custom_id is not None or not button.get("url"):
                    problems.append(f"{where}: a link button has a url and no custom_id")
            elif not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
                problems.append(f"{where}: custom_id must be 1 to 100 characters")
            else:
                custom_ids.append(custom_id)
    if len(set(custom_ids)) != len(custom_ids):
        problems.append("components: custom ids must be unique within a message")
    return problems


def numbered_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The components as Discord stores them: each without an `id` gets one, counted from 1 depth
    first (a row, then its buttons)."""
    counter = itertools.count(1)
    out = []
    for row in components:
        row_id = row.get("id") or next(counter)
        buttons = [{**b, "id": b.get("id") or next(counter)} for b in row["components"]]
        out.append({**row, "id": row_id, "components": buttons})
    return out


Handler = Callable[[web.Request, dict[str, str], Any], Awaitable[web.Response]]


class FakeDiscord:
    def __init__(self, token: str = "fake-bot-token") -> None:
        self.token = token
        self.ids = Snowflakes()
        self.bot = User(self.ids(), "peerbot", bot=True)
        self.application_id = self.ids()
        self.users: dict[str, User] = {}
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # id -> message payload
        self.reactions: dict[tuple[str, str], set[str]] = {}  # (message, emoji) -> user ids
        self.commands: dict[str | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> commands
        self.requests: list[Recorded] = []
        self.unknown_routes: list[str] = []
        self.rate_limited: list[Recorded] = []  # 429s the bot provoked by not pacing itself
        self.injected: list[Recorded] = []  # faults the test asked for
        self.interactions: dict[str, Interaction] = {}
        self.sessions: dict[str, Session] = {}
        self.identifies: list[dict[str, Any]] = []
        self.invalid_commands: list[str] = []
        self.invalid_components: list[str] = []  # what Discord would have refused in messages' components
        self.resumes: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.resume_overlap = 0  # replay this many already-delivered events too on RESUME
        # The application may ask for the privileged server members intent (the Developer Portal's switch).
        self.members_intent = True
        self.heartbeat_interval_ms = 41250
        self.buckets: dict[str, tuple[int, float]] = {  # route -> (limit, window seconds), per channel
            "create_message": (5, 5.0),
            "create_reaction": (1, 0.25),
            # Reads: Discord does not publish these; its headers have shown about 5 per second.
            "get_message": (5, 1.0),
            "get_reactions": (5, 1.0),
        }
        # Every request made with the bot's token, all routes and channels together (interaction
        # responses and webhooks are not counted, as on Discord): 50 per second.
        self.global_limit: tuple[int, float] = (50, 1.0)
        self._global_use: collections.deque[float] = collections.deque()
        self.recommended_shards = 1  # what GET /gateway/bot tells a client that asks how many to run
        self._bucket_use: dict[tuple[str, str], list[float]] = {}
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []  # waiting for their request, in the order the test asked
        self._held: list[Hold] = []  # holding a request
        self.nonce_window = NONCE_WINDOW
        self.attachment_size_limit = 10 * 1024 * 1024  # bytes per file; sent in interaction payloads
        self.attachment_data: dict[str, bytes] = {}  # attachment id -> the bytes uploaded
        self._nonces: dict[tuple[str, str], tuple[str, float]] = {}  # (author, nonce) -> (message, when)
        self._dm_channels: dict[str, Channel] = {}  # recipient id -> the bot's DM channel with them
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._connections: set[Connection] = set()
        self.port = 0
        self._routes: list[tuple[str, re.Pattern[str], str, bool, Handler]] = []
        self._route_table()

    # Life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # started again: on the same port
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for hold in self._holds + self._held:
            hold.cut()
        self._holds.clear()
        for conn in list(self._connections):
            conn.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # World -------------------------------------------------------------------------------------

    def add_guild(self, name: str) -> Guild:
        guild = Guild(self.ids(), name)
        guild.roles.append(Role(guild.id, "@everyone", EVERYONE_PERMISSIONS, position=0))
        self.guilds[guild.id] = guild
        return guild

    def add_channel(self, guild: Guild, name: str) -> Channel:
        channel = Channel(self.ids(), name, guild.id)
        guild.channels.append(channel)
        self.channels[channel.id] = channel
        return channel

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = Role(self.ids(), name, permissions)
        guild.roles.append(role)
        return role

    def add_member(self, guild: Guild, name: str, roles: tuple[Role, ...] = ()) -> User:
        user = User(self.ids(), name)
        self.users[user.id] = user
        guild.members[user.id] = [r.id for r in roles]
        return user

    def joins_guild(self, guild: Guild, name: str) -> User:
        """Someone joins the server: the gateway tells sessions with the server members intent."""
        user = self.add_member(guild, name)
        data = {**self.member_payload(guild, user), "guild_id": guild.id}
        self.dispatch("GUILD_MEMBER_ADD", data, guild_id=guild.id, intent=GUILD_MEMBERS)
        return user

    def leaves_guild(self, guild: Guild, user: User) -> None:
        del guild.members[user.id]
        data = {"guild_id": guild.id, "user": user.payload()}
        self.dispatch("GUILD_MEMBER_REMOVE", data, guild_id=guild.id, intent=GUILD_MEMBERS)

    def member_payload(self, guild: Guild, user: User) -> dict[str, Any]:
        return {
            "user": user.payload(),
            "roles": list(guild.members.get(user.id, [])),
            "nick": None,
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }

    def guild_payload(self, guild: Guild) -> dict[str, Any]:
        members = [self.member_payload(guild, self.users[u]) for u in guild.members]
        members.append(self.member_payload(guild, self.bot))
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "owner_id": next(iter(guild.members), self.bot.id),
            "unavailable": False,
            "large": False,
            "member_count": len(members),
            "members": members,
            "channels": [c.payload() for c in guild.channels],
            "roles": [r.payload() for r in guild.roles],
            "emojis": [],
            "stickers": [],
            "features": [],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "joined_at": "2026-01-01T00:00:00+00:00",
            "system_channel_id": guild.system_channel_id,
            "system_channel_flags": 0,
        }

    # Waiting -----------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` holds; it is checked after every request and gateway frame."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), within)

    # Faults ------------------------------------------------------------------------------------

    def fail(
        self, route: str, status: int, *, times: int = 1, retry_after: float = 0.0, is_global: bool = False
    ) -> None:
        """The next `times` requests on `route` get `status` (429 comes with retry_after and Via)."""
        if route not in {name for _, _, name, _, _ in self._routes}:
            raise ValueError(f"no route named {route!r}")
        self._faults.append(Fault(route, status, times, retry_after, is_global))

    def hold(self, route: str, *, applied: bool, where: Callable[[Recorded], bool] | None = None) -> Hold:
        """Hold the next request on `route` (that `where` accepts) until the test lets it go.

        `applied=True`: the platform carries it out (a message is stored, the gateway told) but the
        answer does not leave until `release()`; `applied=False`: it is held before reaching the
        platform, so nothing happens unless it is released while the client still waits. Meant for
        killing the bot while a request is in flight:

            held = fake.hold("create_message", applied=True)
            ... start the post ...
            await held.reached  # the message is stored; the bot has no answer
            ... SIGKILL the bot ...
            held.cut()  # or held.release() to answer a bot that is still waiting
        """
        if route not in {name for _, _, name, _, _ in self._routes}:
            raise ValueError(f"no route named {route!r}")
        hold = Hold(route, applied, where)
        self._holds.append(hold)
        return hold

    def _take_hold(self, record: Recorded) -> Hold | None:
        hold = next((h for h in self._holds if h.matches(record)), None)
        if hold is not None:
            self._holds.remove(hold)
            self._held.append(hold)
        return hold

    async def _keep(self, hold: Hold, record: Recorded, request: web.Request) -> bool:
        await self._notify()
        try:
            return await hold.wait(record, request)
        finally:
            self._held.remove(hold)
            hold.done = True
            await self._notify()

    def drop_gateway(self) -> None:
        """Cut every gateway connection (sessions stay resumable)."""
        for conn in list(self._connections):
            conn.abort()

    def invalidate_sessions(self, resumable: bool = False) -> None:
        """Send op 9: the client must IDENTIFY again (or RESUME, when resumable)."""
        for session in self.sessions.values():
            if session.connection is not None and session.alive:
                session.alive = resumable
                session.connection.send({"op": 9, "d": resumable, "s": None, "t": None})

    # Gateway -----------------------------------------------------------------------------------

    def dispatch(self, kind: str, data: dict[str, Any], *, guild_id: str | None, intent: int | None) -> int:
        """Send a dispatch to every live session that asked for it; returns how many got it.

        Frames are numbered per session and kept, so that a RESUME can replay what was missed.
        """
        count = 0
        for session in self.sessions.values():
            if not session.alive or not session.covers(guild_id):
                continue
            if intent is not None and not session.intents & (1 << intent):
                continue
            session.seq += 1
            frame = {"op": 0, "t": kind, "s": session.seq, "d": data}
            session.frames.append(frame)
            if session.connection is not None:
                session.connection.send(frame)
            count += 1
        return count

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        conn = Connection(ws, request)
        self._connections.add(conn)
        conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        session: Session | None = None
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    conn.send({"op": 11, "s": None, "t": None, "d": None})
                elif op == 2:
                    if int(data.get("intents", 0)) & (1 << GUILD_MEMBERS) and not self.members_intent:
                        await ws.close(code=4014, message=b"Disallowed intent(s).")
                        continue
                    session = self._identify(conn, data)
                    if session is None:
                        await ws.close(code=4004, message=b"Authentication failed.")
                elif op == 6:
                    session = self._resume(conn, data)
                elif op in (3, 4):
                    pass  # presence / voice state: accepted, not used
                else:
                    self.unknown_routes.append(f"gateway op {op}")
                await self._notify()
        finally:
            self._connections.discard(conn)
            conn.queue.put_nowait(None)
            if session is not None and session.connection is conn:
                session.connection = None
                if ws.close_code == 1000:  # a clean close by the client ends the session
                    session.alive = False
            await self._notify()
        return ws

    def _identify(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        if data.get("token") != self.token:
            return None
        shard = data.get("shard") or [0, 1]
        session = Session(uuid.uuid4().hex, (int(shard[0]), int(shard[1])), int(data.get("intents", 0)))
        session.connection = conn
        self.sessions[session.id] = session
        guilds = [g for g in self.guilds.values() if session.covers(g.id)]
        ready = {
            "v": 10,
            "user": self.bot.payload(),
            "guilds": [{"id": g.id, "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "shard": list(shard),
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        self._send_to(session, "READY", ready)
        for guild in guilds:
            if session.intents & (1 << GUILDS):
                self._send_to(session, "GUILD_CREATE", self.guild_payload(guild))
        return session

    def _send_to(self, session: Session, kind: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": kind, "s": session.seq, "d": data}
        session.frames.append(frame)
        assert session.connection is not None
        session.connection.send(frame)

    def _resume(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        self.resumes.append({k: v for k, v in data.items() if k != "token"})
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.alive or data.get("token") != self.token:
            conn.send({"op": 9, "d": False, "s": None, "t": None})
            return None
        session.connection = conn
        seen = int(data.get("seq") or 0)
        for frame in session.frames:
            again = seen - self.resume_overlap < frame["s"] <= seen and frame["t"] not in SESSION_EVENTS
            if frame["s"] > seen or again:
                conn.send(frame)
        self._send_to(session, "RESUMED", {})
        return session

    # REST --------------------------------------------------------------------------------------

    def _route_table(self) -> None:
        snow = r"(?P<{}>\d+)"
        token = r"(?P<token>[^/]+)"
        table: list[tuple[str, str, str, bool, Handler]] = [
            ("GET", "/users/@me", "get_current_user", True, self._get_me),
            ("GET", "/oauth2/applications/@me", "get_application", True, self._get_application),
            ("GET", "/gateway/bot", "get_gateway_bot", True, self._get_gateway_bot),
            (
                "PUT",
                f"/applications/{snow.format('app')}/commands",
                "put_global_commands",
                True,
                self._put_commands,
            ),
            (
                "PUT",
                f"/applications/{snow.format('app')}/guilds/{snow.format('guild')}/commands",
                "put_guild_commands",
                True,
                self._put_commands,
            ),
            (
                "POST",
                f"/interactions/{snow.format('id')}/{token}/callback",
                "interaction_callback",
                False,
                self._callback,
            ),
            (
                "PATCH",
                f"/webhooks/{snow.format('app')}/{token}/messages/@original",
                "edit_original",
                False,
                self._edit_original,
            ),
            (
                "DELETE",
                f"/webhooks/{snow.format('app')}/{token}/messages/@original",
                "delete_original",
                False,
                self._delete_original,
            ),
            ("POST", f"/webhooks/{snow.format('app')}/{token}", "create_followup", False, self._followup),
            (
                "POST",
                f"/channels/{snow.format('channel')}/messages",
                "create_message",
                True,
                self._create_message,
            ),
            (
                "PATCH",
                f"/channels/{snow.format('channel')}/messages/{snow.format('message')}",
                "edit_message",
                True,
                self._edit_message,
            ),
            (
                "PUT",
                f"/channels/{snow.format('channel')}/messages/{snow.format('message')}/reactions/(?P<emoji>[^/]+)/@me",
                "create_reaction",
                True,
                self._add_reaction,
            ),
            (
                "GET",
                f"/channels/{snow.format('channel')}/messages/{snow.format('message')}",
                "get_message",
                True,
                self._get_message,
            ),
            (
                "GET",
                f"/channels/{snow.format('channel')}/messages/{snow.format('message')}/reactions/(?P<emoji>[^/]+)",
                "get_reactions",
                True,
                self._get_reactions,
            ),
            (
                "POST",
                f"/channels/{snow.format('channel')}/messages/{snow.format('message')}/threads",
                "start_thread_from_message",
                True,
                self._start_thread,
            ),
            ("POST", "/users/@me/channels", "create_dm", True, self._create_dm),
            (
                "GET",
                f"/guilds/{snow.format('guild')}/members/{snow.format('user')}",
                "get_member",
                True,
                self._get_member,
            ),
        ]
        self._routes = [(m, re.compile(f"^{API}{p}$"), name, auth, h) for m, p, name, auth, h in table]

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body: Any = None
        files: list[Upload] = []
        if request.content_type == "multipart/form-data":
            body, files = await self._read_multipart(request)
        elif request.can_read_body:
            raw = await request.read()
            body = (
                json.loads(raw)
                if request.content_type == "application/json"
                else raw.decode("utf-8", "replace")
            )
        request[FILES] = files
        for method, pattern, name, auth, handler in self._routes:
            match = pattern.match(request.raw_path.split("?")[0])
            if method != request.method or match is None:
                continue
            record = Recorded(request.method, path, name, body, 0, time.monotonic(), files)
            self.requests.append(record)
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return self._finish(record, 401, {"message": "401: Unauthorized", "code": 0})
            hold = self._take_hold(record)
            if hold is not None and not hold.applied and not await self._keep(hold, record, request):
                return web.Response(status=499)  # never reaches the client: the connection is gone
            fault = self._take_fault(name)
            if fault is not None:
                self.injected.append(record)
                return self._fault_response(record, fault)
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            if auth and (over := self._over_global_limit()) is not None:
                self.rate_limited.append(record)
                return self._finish(record, 429, over[0], over[1])
            bucket = self._bucket(name, params.get("channel", ""))
            if bucket is not None and bucket[0] is not None:
                self.rate_limited.append(record)
                return self._finish(record, 429, bucket[0], bucket[1])
            too_large = next((f for f in files if len(f.data) > self.attachment_size_limit), None)
            if too_large is not None:
                return self._finish(record, 413, {"message": "Request entity too large", "code": 40005})
            try:
                response = await handler(request, params, body)
            finally:
                await self._notify()
            if hold is not None and hold.applied and not await self._keep(hold, record, request):
                return web.Response(status=499)  # the answer never reaches the client
            record.status = response.status
            if bucket is not None:
                response.headers.update(bucket[1])
            return response
        self.unknown_routes.append(f"{request.method} {path}")
        self.requests.append(Recorded(request.method, path, "unknown", body, 404, time.monotonic()))
        await self._notify()
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    @staticmethod
    async def _read_multipart(request: web.Request) -> tuple[Any, list[Upload]]:
        """`payload_json` and the `files[n]` parts of a multipart body (other fields are ignored,
        as Discord reads the JSON body only from `payload_json` when files come with it)."""
        body: Any = {}
        files: list[Upload] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            data = await part.read()
            if part.name == "payload_json":
                body = json.loads(data)
            elif part.name and re.fullmatch(r"files\[\d+\]", part.name):
                kind = part.headers.get("Content-Type", "application/octet-stream")
                files.append(Upload(part.name, part.filename or "", kind, bytes(data)))
        return body, files

    def _attachments(
        self,
        channel_id: str,
        body: dict[str, Any],
        files: list[Upload],
        existing: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """The attachment objects of a message made (or edited) from `body` and its uploads.

        An entry `{"id": n, "filename": ...}` of the body's `attachments` names the upload `files[n]`;
        in an edit, an entry with the id of an attachment the message has keeps it, and those not
        listed go. Uploads the body does not list are attached as they came.
        """
        uploads = {int(f.field[len("files[") : -1]): f for f in files}
        kept = {a["id"]: a for a in existing or []}
        listed = body.get("attachments")
        entries = listed if isinstance(listed, list) else [{"id": n} for n in sorted(uploads)]
        out: list[dict[str, Any]] = []
        for entry in entries:
            if str(entry.get("id")) in kept:
                out.append(kept[str(entry["id"])])
                continue
            upload = uploads.get(int(entry["id"]))
            if upload is None:
                continue
            attachment_id = self.ids()
            filename = str(entry.get("filename") or upload.filename)
            self.attachment_data[attachment_id] = upload.data
            url = f"http://127.0.0.1:{self.port}/attachments/{channel_id}/{attachment_id}/{filename}"
            attachment: dict[str, Any] = {
                "id": attachment_id,
                "filename": filename,
                "size": len(upload.data),
                "url": url,
                "proxy_url": url,
            }
            guessed = mimetypes.guess_type(filename)[0]  # Discord types a file by its name
            if guessed is not None:
                attachment["content_type"] = guessed + (
                    "; charset=utf-8" if guessed.startswith("text/") else ""
                )
            if entry.get("description"):
                attachment["description"] = entry["description"]
            out.append(attachment)
        return out

    async def _download(self, request: web.Request) -> web.Response:
        """The CDN: an attachment's bytes at its url."""
        data = self.attachment_data.get(request.match_info["attachment"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def _take_fault(self, route: str) -> Fault | None:
        for fault in self._faults:
            if fault.route == route and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _fault_response(self, record: Recorded, fault: Fault) -> web.Response:
        if fault.status == 429:
            headers = {
                "Via": "1.1 google",
                "X-RateLimit-Scope": "global" if fault.is_global else "user",
                "Retry-After": str(math.ceil(fault.retry_after)),
            }
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": fault.retry_after,
                "global": fault.is_global,
            }
            return self._finish(record, 429, body, headers)
        if fault.status == 400:
            return self._finish(record, 400, {"message": "Invalid Form Body", "code": 50035, "errors": {}})
        if fault.status == 403:
            return self._finish(record, 403, {"message": "Missing Permissions", "code": 50013})
        if fault.status == 404:
            return self._finish(record, 404, {"message": "Unknown Channel", "code": 10003})
        return self._finish(record, fault.status, {"message": "Server error", "code": 0})

    def _over_global_limit(self) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The global limit (a sliding window over the bot's requests); over it, a 429's body and
        headers as Discord sends them: `X-RateLimit-Global`, scope global, no bucket headers."""
        limit, window = self.global_limit
        now = time.monotonic()
        use = self._global_use
        while use and now - use[0] >= window - BUCKET_SLACK:
            use.popleft()
        if len(use) >= limit:
            retry = window - (now - use[0])
            headers = {
                "Via": "1.1 google",
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
                "Retry-After": str(math.ceil(retry)),
            }
            body = {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": True}
            return body, headers
        use.append(now)
        return None

    def _bucket(self, route: str, channel: str) -> tuple[dict[str, Any] | None, dict[str, str]] | None:
        """Per-channel buckets as Discord reports them; over the limit gives a 429 (recorded)."""
        if route not in self.buckets:
            return None
        limit, window = self.buckets[route]
        now = time.monotonic()
        # A few ms of slack, as a real network gives: headers are rounded to the millisecond.
        used = [t for t in self._bucket_use.get((route, channel), []) if now - t < window - BUCKET_SLACK]
        if len(used) >= limit:
            retry = window - (now - used[0])
            headers = {
                "Via": "1.1 google",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(math.ceil(retry)),
                **self._limit_headers(route, limit, 0, retry),
            }
            body = {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": False}
            return body, headers
        used.append(now)
        self._bucket_use[(route, channel)] = used
        reset_after = window - (now - used[0])
        return None, self._limit_headers(route, limit, limit - len(used), reset_after)

    @staticmethod
    def _limit_headers(route: str, limit: int, remaining: int, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{math.ceil((time.time() + reset_after) * 1000) / 1000:.3f}",
            "X-RateLimit-Reset-After": f"{math.ceil(reset_after * 1000) / 1000:.3f}",
            "X-RateLimit-Bucket": f"fake-{route}",
        }

    def _finish(
        self, record: Recorded, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> web.Response:
        record.status = status
        return self._json(body, status, headers)

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py parses JSON only with this exact content type (no charset).
        return web.Response(
            body=json.dumps(body).encode(), status=status, headers={**JSON, **(headers or {})}
        )

    # Route handlers ----------------------------------------------------------------------------

    async def _get_me(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return self._json({**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0})

    async def _get_application(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return self._json(
            {
                "id": self.application_id,
                "name": "Peerbot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": {"id": self.ids(), "username": "owner", "discriminator": "0", "avatar": None},
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "rpc_origins": [],
                "summary": "",
                "bot": self.bot.payload(),
            }
        )

    async def _get_gateway_bot(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        limits = {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1}
        return self._json(
            {"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": limits}
        )

    async def _put_commands(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        if params.get("app") != self.application_id:
            return self._json({"message": "Unknown Application", "code": 10002}, 404)
        problems = command_problems(body)
        if problems:
            self.invalid_commands.extend(problems)
            return self._json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400)
        guild = params.get("guild")
        stored = [
            {
                **c,
                "id": self.ids(),
                "application_id": self.application_id,
                "version": self.ids(),
                "guild_id": guild,
            }
            for c in body
        ]
        self.commands[guild] = stored
        return self._json(stored)

    def _message(
        self,
        channel_id: str,
        author: User,
        body: dict[str, Any],
        flags: int = 0,
        files: list[Upload] | None = None,
    ) -> dict[str, Any]:
        message = {
            "id": self.ids(),
            "channel_id": channel_id,
            "author": author.payload(),
            "content": body.get("content") or "",
            "timestamp": "2026-03-02T09:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments(channel_id, body, files or []),
            "embeds": [],
            "pinned": False,
            "type": 0 if "message_reference" not in body else 19,
            "flags": flags,
            "components": numbered_components(body.get("components") or []),
        }
        if "message_reference" in body:
            message["message_reference"] = body["message_reference"]
        channel = self.channels.get(channel_id)
        if channel is not None and channel.guild_id:
            message["guild_id"] = channel.guild_id
        return message

    def _refuse_components(self, body: Any) -> web.Response | None:
        """400 Invalid Form Body for components Discord would not take; None when they are fine."""
        problems = component_problems(body.get("components") or [])
        if not problems:
            return None
        self.invalid_components.extend(problems)
        return self._json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400)

    async def _create_message(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        channel = self.channels.get(params["channel"])
        if channel is None:
            return self._json({"message": "Unknown Channel", "code": 10003}, 404)
        if (refused := self._refuse_components(body)) is not None:
            return refused
        nonce = body.get("nonce")
        if nonce is not None and (
            not isinstance(nonce, str | int) or isinstance(nonce, bool) or len(str(nonce)) > MAX_NONCE
        ):
            error = {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {MAX_NONCE} or fewer in length."}
            return self._json(
                {"message": "Invalid Form Body", "code": 50035, "errors": {"nonce": {"_errors": [error]}}},
                400,
            )
        enforced = (self.bot.id, str(nonce)) if nonce is not None and body.get("enforce_nonce") else None
        if enforced is not None:
            first = self._nonces.get(enforced)
            if first is not None and time.monotonic() - first[1] < self.nonce_window:
                # The first message with this nonce, and nothing new; deleted since: Discord says 404.
                if first[0] not in self.messages:
                    return self._json({"message": "Unknown Message", "code": 10008}, 404)
                return self._json(self.messages[first[0]])
        message = self._message(channel.id, self.bot, body, files=request[FILES])
        if nonce is not None:
            message["nonce"] = nonce
        self.messages[message["id"]] = message
        if enforced is not None:
            self._nonces[enforced] = (message["id"], time.monotonic())
        if channel.guild_id:
            self.dispatch("MESSAGE_CREATE", message, guild_id=channel.guild_id, intent=GUILD_MESSAGES)
        return self._json(message)

    async def _start_thread(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        """Start a public thread from a message: its id is the message's; a second start is refused
        with code 160004. The creator gets THREAD_CREATE (`newly_created`), as Discord sends it."""
        channel = self.channels.get(params["channel"])
        if channel is None or channel.kind == PUBLIC_THREAD or not channel.guild_id:
            return self._json({"message": "Unknown Channel", "code": 10003}, 404)
        message = self.messages.get(params["message"])
        if message is None or message["channel_id"] != channel.id:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        if message["id"] in self.channels:
            return self._json(
                {"message": "A thread has already been created for this message", "code": 160004}, 400
            )
        name = body.get("name") if isinstance(body, dict) else None
        duration = body.get("auto_archive_duration") if isinstance(body, dict) else None
        errors: dict[str, Any] = {}
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            errors["name"] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be 1 to 100."}]}
        if duration is not None and duration not in THREAD_ARCHIVE_DURATIONS:
            errors["auto_archive_duration"] = {"_errors": [{"code": "BASE_TYPE_CHOICES", "message": "Bad."}]}
        if errors:
            return self._json({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)
        assert isinstance(name, str)
        thread = Channel(
            message["id"],
            name,
            channel.guild_id,
            PUBLIC_THREAD,
            parent_id=channel.id,
            owner_id=self.bot.id,
            auto_archive_duration=duration or 1440,
        )
        self.channels[thread.id] = thread
        message["flags"] |= HAS_THREAD
        message["thread"] = thread.payload()
        created = {
            **thread.payload(),
            "newly_created": True,
            "member": {
                "id": thread.id,
                "user_id": self.bot.id,
                "join_timestamp": "2026-03-02T09:00:00+00:00",
                "flags": 0,
            },
        }
        self.dispatch("THREAD_CREATE", created, guild_id=channel.guild_id, intent=GUILDS)
        return self._json(thread.payload(), 201)

    def thread_from(self, message: dict[str, Any]) -> Channel:
        """The thread started from a message (its id is the message's)."""
        thread = self.channels.get(message["id"])
        assert thread is not None and thread.kind == PUBLIC_THREAD, f"no thread from message {message['id']}"
        return thread

    def threads_of(self, channel: Channel) -> list[Channel]:
        """The threads started in a channel, oldest first."""
        return [c for c in self.channels.values() if c.kind == PUBLIC_THREAD and c.parent_id == channel.id]

    async def _edit_message(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        message = self.messages.get(params["message"])
        if message is None or message["channel_id"] != params["channel"]:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        if (refused := self._refuse_components(body)) is not None:
            return refused
        message.update(
            content=body.get("content", message["content"]), edited_timestamp="2026-03-02T09:01:00+00:00"
        )
        if "components" in body:  # left out, they stay as they were
            message["components"] = numbered_components(body["components"] or [])
        return self._json(message)

    def _reacted(self, message_id: str) -> list[tuple[str, set[str]]]:
        """The emoji on a message with their users, in the order they were first added."""
        return [(e, users) for (m, e), users in self.reactions.items() if m == message_id and users]

    async def _get_member(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        guild = self.guilds.get(params["guild"])
        if guild is None:
            return self._json({"message": "Unknown Guild", "code": 10004}, 404)
        user = self.users.get(params["user"])
        if user is None or user.id not in guild.members:
            return self._json({"message": "Unknown Member", "code": 10007}, 404)
        return self._json(self.member_payload(guild, user))

    async def _get_message(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        message = self.messages.get(params["message"])
        if message is None or message["channel_id"] != params["channel"]:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        data = {k: v for k, v in message.items() if k != "guild_id"}  # REST messages carry no guild_id
        reactions = []
        for emoji, users in self._reacted(message["id"]):
            name, _, emoji_id = emoji.partition(":")
            reactions.append(
                {
                    "emoji": {"id": emoji_id or None, "name": name},
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "burst_colors": [],
                    "me_burst": False,
                    "me": self.bot.id in users,
                }
            )
        if reactions:  # Discord leaves the field out when there are none
            data["reactions"] = reactions
        return self._json(data)

    async def _get_reactions(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        """Users who reacted with the emoji, by id, `limit` (1-100, default 25) after the `after` id."""
        message = self.messages.get(params["message"])
        if message is None or message["channel_id"] != params["channel"]:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        try:
            limit = int(request.query.get("limit", "25"))
            after = int(request.query.get("after", "0"))
        except ValueError:
            limit = after = -1
        kind = request.query.get("type", "0")  # 0 normal, 1 super reactions (the fake has none)
        if not 1 <= limit <= 100 or after < 0 or kind not in ("0", "1"):
            return self._json({"message": "Invalid Form Body", "code": 50035, "errors": {}}, 400)
        if kind == "1":
            return self._json([])
        users = sorted(self.reactions.get((message["id"], params["emoji"]), set()), key=int)
        page = [u for u in users if int(u) > after][:limit]
        known = {self.bot.id: self.bot, **self.users}
        return self._json([known[u].payload() for u in page])

    def delete_message(self, message: dict[str, Any]) -> None:
        """Someone deletes a message (the bot asks for no message events, so it is not told)."""
        del self.messages[message["id"]]
        for key in [k for k in self.reactions if k[0] == message["id"]]:
            del self.reactions[key]
        self.dispatch(
            "MESSAGE_DELETE",
            {"id": message["id"], "channel_id": message["channel_id"], "guild_id": message.get("guild_id")},
            guild_id=message.get("guild_id"),
            intent=GUILD_MESSAGES,
        )

    async def _add_reaction(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        message = self.messages.get(params["message"])
        if message is None or message["channel_id"] != params["channel"]:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        emoji = params["emoji"]
        existing = {e for (m, e), users in self.reactions.items() if m == message["id"] and users}
        if emoji not in existing and len(existing) >= 20:
            return self._json({"message": "Maximum number of reactions reached (20)", "code": 30010}, 400)
        self.reactions.setdefault((message["id"], emoji), set()).add(self.bot.id)
        channel = self.channels[message["channel_id"]]
        self.dispatch(
            "MESSAGE_REACTION_ADD",
            self.reaction_payload(self.bot, message, emoji),
            guild_id=channel.guild_id,
            intent=GUILD_MESSAGE_REACTIONS,
        )
        return web.Response(status=204)

    async def _create_dm(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        user = self.users.get(str(body.get("recipient_id")))
        if user is None:
            return self._json({"message": "Unknown User", "code": 10013}, 404)
        channel = self._dm_channels.get(user.id)
        if channel is None:  # Discord keeps one DM channel per pair of users
            channel = self._dm_channels[user.id] = Channel(self.ids(), "", None, kind=1)
            self.channels[channel.id] = channel
        return self._json(
            {"id": channel.id, "type": 1, "recipients": [user.payload()], "last_message_id": None}
        )

    async def _callback(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        interaction = self.interactions.get(params["id"])
        if interaction is None or interaction.token != params["token"]:
            return self._json({"message": "Unknown interaction", "code": 10062}, 404)
        if interaction.callback is not None:
            return self._json({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        kind = body.get("type")
        # 4 message, 5 deferred message; 6 deferred update, for components only. Others (7 update the
        # message, 9 modal ...) the fake does not know: the test fails.
        if kind not in ((4, 5, 6) if interaction.kind == 3 else (4, 5)):
            self.unknown_routes.append(f"interaction callback type {kind} to a type {interaction.kind}")
            return self._json({"message": "Invalid Form Body", "code": 50035, "errors": {}}, 400)
        data = body.get("data") or {}
        if (refused := self._refuse_components(data)) is not None:
            return refused
        interaction.callback = body
        interaction.callback_at = time.monotonic()
        answer = {"id": interaction.id, "type": interaction.kind}
        if kind == 6:  # acknowledged; the member sees nothing new
            return self._json({"interaction": {**answer, "response_message_id": None}})
        flags = int(data.get("flags") or 0)
        message = self._message(interaction.channel.id, self.bot, data, flags, request[FILES])
        message.update(
            type=20 if interaction.kind == 2 else 0,
            interaction={**answer, "name": "", "user": interaction.user.payload()},
        )
        if kind == 5:
            message["content"] = ""
            message["flags"] = flags | (1 << 7)  # loading
        interaction.original = message
        response = {
            "interaction": {
                **answer,
                "response_message_id": message["id"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & 64),
            },
            "resource": {"type": kind, "message": message},
        }
        return self._json(response)

    def _interaction_by_token(self, params: dict[str, str]) -> Interaction | None:
        if params.get("app") != self.application_id:
            return None
        return next((i for i in self.interactions.values() if i.token == params["token"]), None)

    async def _edit_original(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        interaction = self._interaction_by_token(params)
        if interaction is None or interaction.original is None or interaction.original_deleted:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        interaction.original.update(
            content=body.get("content", ""), allowed_mentions=body.get("allowed_mentions")
        )
        if "attachments" in body or request[FILES]:
            interaction.original["attachments"] = self._attachments(
                interaction.channel.id, body, request[FILES], interaction.original["attachments"]
            )
        interaction.original["flags"] = int(interaction.original["flags"]) & ~(1 << 7)
        return self._json(interaction.original)

    async def _delete_original(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        interaction = self._interaction_by_token(params)
        if interaction is None or interaction.original is None:
            return self._json({"message": "Unknown Message", "code": 10008}, 404)
        interaction.original_deleted = True
        return web.Response(status=204)

    async def _followup(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        interaction = self._interaction_by_token(params)
        if interaction is None or interaction.callback is None:
            return self._json({"message": "Unknown Webhook", "code": 10015}, 404)
        if (refused := self._refuse_components(body)) is not None:
            return refused
        flags = int(body.get("flags") or 0)
        message = self._message(interaction.channel.id, self.bot, body, flags, request[FILES])
        interaction.followups.append(message)
        if request.query.get("wait") in ("true", "1"):
            return self._json(message)
        return web.Response(status=204)

    # Members' actions --------------------------------------------------------------------------

    def reaction_payload(self, user: User, message: dict[str, Any], emoji: str) -> dict[str, Any]:
        name, _, emoji_id = emoji.partition(":")
        data: dict[str, Any] = {
            "user_id": user.id,
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        channel = self.channels[message["channel_id"]]
        if channel.guild_id:
            data["guild_id"] = channel.guild_id
        return data

    def react(self, user: User, message: dict[str, Any], emoji: str, add: bool = True) -> None:
        """A member adds (or takes back) a reaction: the state changes and the gateway tells the bot's live
        sessions (none while it is stopped or between an invalidated session and the next READY)."""
        users = self.reactions.setdefault((message["id"], emoji), set())
        if add == (user.id in users):
            return  # Discord sends nothing for a no-op
        channel = self.channels[message["channel_id"]]
        data = self.reaction_payload(user, message, emoji)
        if add:
            users.add(user.id)
            guild = self.guilds[channel.guild_id] if channel.guild_id else None
            if guild is not None:
                data["member"] = self.member_payload(guild, user)
                data["message_author_id"] = message["author"]["id"]
        else:
            users.discard(user.id)
        kind = "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"
        self.dispatch(kind, data, guild_id=channel.guild_id, intent=GUILD_MESSAGE_REACTIONS)

    def run_command(self, user: User, channel: Channel, path: str, options: dict[str, Any]) -> Interaction:
        """A member runs a registered slash command, as the Discord client would send it.

        The command must have been registered (globally or in the channel's guild), the options must
        exist, required ones must be given and choices respected: Discord's client enforces all that.
        """
        assert channel.guild_id is not None
        guild = self.guilds[channel.guild_id]
        words = path.lstrip("/").split()
        registered = self.commands.get(guild.id) or self.commands.get(None) or []
        command = next((c for c in registered if c["name"] == words[0]), None)
        if command is None:
            raise AssertionError(f"/{words[0]} is not a registered command")
        node: dict[str, Any] = command
        chain: list[dict[str, Any]] = []
        for word in words[1:]:
            child = next(
                (o for o in node.get("options") or [] if o["name"] == word and o["type"] in (1, 2)), None
            )
            if child is None:
                raise AssertionError(f"{path}: no subcommand {word!r}")
            chain.append(child)
            node = child
        if any(o["type"] in (1, 2) for o in node.get("options") or []):
            raise AssertionError(f"{path}: Discord requires a subcommand")
        leaf_options = []
        known = {o["name"]: o for o in node.get("options") or []}
        for name, value in options.items():
            spec = known.get(name)
            if spec is None:
                raise AssertionError(f"{path}: no option {name!r}")
            if "choices" in spec and value not in [c["value"] for c in spec["choices"]]:
                raise AssertionError(f"{path}: {value!r} is not a choice of {name}")
            if spec["type"] == 4:
                value = int(value)
            elif spec["type"] == 5 and not isinstance(value, bool):
                raise AssertionError(f"{path}: {name} is a boolean option, not {value!r}")
            elif "max_length" in spec and len(str(value)) > spec["max_length"]:
                raise AssertionError(f"{path}: {name} longer than {spec['max_length']}")
            leaf_options.append({"name": name, "type": spec["type"], "value": value})
        for spec in known.values():
            if spec.get("required") and spec["name"] not in options:
                raise AssertionError(f"{path}: {spec['name']} is required")
        for child in reversed(chain):
            leaf_options = [{"name": child["name"], "type": child["type"], "options": leaf_options}]
        interaction = Interaction(self.ids(), f"tok-{uuid.uuid4().hex}", user, channel, time.monotonic())
        data = {
            "id": command["id"],
            "name": command["name"],
            "type": 1,
            "guild_id": command.get("guild_id"),
            "options": leaf_options,
        }
        payload = self._interaction_payload(interaction, guild, data)
        self.dispatch("INTERACTION_CREATE", payload, guild_id=guild.id, intent=None)
        return interaction

    def _interaction_payload(
        self, interaction: Interaction, guild: Guild, data: dict[str, Any]
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload as Discord sends it from a guild channel, kept by the fake."""
        self.interactions[interaction.id] = interaction
        member = self.member_payload(guild, interaction.user)
        member["permissions"] = str(guild.permissions(interaction.user.id))
        channel = interaction.channel
        return {
            "id": interaction.id,
            "application_id": self.application_id,
            "type": interaction.kind,
            "token": interaction.token,
            "version": 1,
            "guild_id": guild.id,
            "guild": {"id": guild.id, "locale": "en-US", "features": []},
            "channel_id": channel.id,
            "channel": channel.payload(),
            "member": member,
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": str(ALL_PERMISSIONS),
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild.id},
            "context": 0,
            "attachment_size_limit": self.attachment_size_limit,
            "data": data,
        }

    def press_button(self, user: User, message: dict[str, Any], custom_id: str) -> Interaction:
        """A member presses a button under a message: a MESSAGE_COMPONENT interaction (type 3), with a
        fresh id and token, as the Discord client sends it. The button must be on the message (the
        client shows no other), and not a link button (those open their url and tell nobody)."""
        channel = self.channels[message["channel_id"]]
        assert channel.guild_id is not None
        guild = self.guilds[channel.guild_id]
        stored = self.messages.get(message["id"])
        if stored is None:
            raise AssertionError(f"message {message['id']} is gone: nobody can press its buttons")
        buttons = [b for row in stored["components"] for b in row["components"]]
        if not any(b.get("custom_id") == custom_id for b in buttons):
            raise AssertionError(f"message {message['id']} has no button {custom_id!r}")
        interaction = Interaction(
            self.ids(), f"tok-{uuid.uuid4().hex}", user, channel, time.monotonic(), kind=3
        )
        payload = self._interaction_payload(interaction, guild, {"custom_id": custom_id, "component_type": 2})
        payload["message"] = stored
        interaction.payload = payload
        self.dispatch("INTERACTION_CREATE", payload, guild_id=guild.id, intent=None)
        return interaction

    # Reading what the bot did ------------------------------------------------------------------

    def sent_messages(self, channel: Channel) -> list[dict[str, Any]]:
        """Messages the bot posted in the channel (not interaction responses), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m["channel_id"] == channel.id and m["author"]["id"] == self.bot.id
        ]

    def dm_channel(self, user: User) -> Channel | None:
        """The bot's DM channel with the user, once the bot opened it."""
        return self._dm_channels.get(user.id)

    def bodies(self, *routes: str) -> list[Any]:
        return [r.body for r in self.requests if r.route in routes]

    def bot_reactions(self, message: dict[str, Any]) -> list[str]:
        return [e for (m, e), users in self.reactions.items() if m == message["id"] and self.bot.id in users]
