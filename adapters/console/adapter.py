"""The console adapter: a chat platform in a terminal, for trying Peerbot with no account."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from adapters.console.lines import (
    Advance,
    BadLine,
    Membership,
    Nothing,
    Private,
    React,
    Say,
    parse_line,
    place_of,
    render_membership,
    render_message,
    render_no_message,
    render_not_a_poll,
    render_reaction,
)
from core.events import (
    Attachment,
    CommandInvoked,
    InboundEvent,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    ReactionAdded,
    ReactionRemoved,
    Reply,
)
from core.polls import Poll
from core.ports import DeliveryFailed, EventSink, Outbound, Store
from core.refs import ChannelRef, MessageRef, UserRef

log = logging.getLogger(__name__)

PLATFORM = "console"
COUNTER_KEY = "last_message_id"
# The message ids given to the latest outbox keys (more than the outbox records at once): a post printed
# again after a crash keeps its id.
RECENT_KEYS = "recent_keys"
KEYS_REMEMBERED = 1000
# Where /export writes its files when the configuration says nothing (see bot/config.py).
DEFAULT_EXPORT_DIR = Path("data/exports")


class ConsoleChat:
    """The ChatPort of the console: every message gets an id m1, m2, ... that survives restarts."""

    def __init__(
        self,
        store: Store,
        out: TextIO,
        *,
        facilitators: list[str],
        bot_name: str = "peerbot",
        default_channel: str = "general",
        export_dir: Path = DEFAULT_EXPORT_DIR,
    ) -> None:
        self.store = store
        self.export_dir = export_dir
        self.out = out
        self.facilitators = {name.casefold() for name in facilitators}
        self.bot_name = bot_name
        self.default_channel = default_channel
        self._last_id: int | None = None
        self._channel_of: dict[str, str] = {}

    @property
    def platform(self) -> str:
        return PLATFORM

    @property
    def command_prefix(self) -> str:
        return "/"

    @property
    def interactive_replies(self) -> bool:
        return False  # answers go through the outbox like every other post

    def channel(self, name: str | None) -> ChannelRef:
        name = name or self.default_channel
        return ChannelRef(PLATFORM, name, f"#{name}")

    @staticmethod
    def direct_channel(user: str) -> ChannelRef:
        """The direct conversation between a member and the bot."""
        return ChannelRef(PLATFORM, f"@{user}", f"@{user}")

    def channel_of(self, message_id: str, fallback: str | None) -> ChannelRef:
        return self.channel(self._channel_of.get(message_id, fallback))

    async def next_message_id(self, channel: ChannelRef, key: str | None = None) -> str:
        """The next id, or for an idempotency key seen last time the id it was given then."""
        async with self.store.transaction() as tx:
            state = tx.state(PLATFORM)
            recent: dict[str, str] = json.loads(await state.get(RECENT_KEYS) or "{}") if key else {}
            if key is not None and (earlier := recent.get(key)) is not None:
                self._channel_of[earlier] = channel.id
                return earlier
            if self._last_id is None:
                self._last_id = int(await state.get(COUNTER_KEY) or 0)
            self._last_id += 1
            await state.set(COUNTER_KEY, str(self._last_id))
            message_id = f"m{self._last_id}"
            if key is not None:
                recent[key] = message_id
                for old in list(recent)[: max(0, len(recent) - KEYS_REMEMBERED)]:
                    del recent[old]
                await state.set(RECENT_KEYS, json.dumps(recent))
        self._channel_of[message_id] = channel.id
        return message_id

    async def is_message(self, message_id: str) -> bool:
        """Whether a message has this id: ids are given in order, m1 up to the last one given."""
        number = int(message_id[1:]) if message_id[1:].isdecimal() else 0
        if message_id != f"m{number}" or number < 1:
            return False
        if self._last_id is not None and number <= self._last_id:
            return True
        async with self.store.transaction() as tx:
            return number <= int(await tx.state(PLATFORM).get(COUNTER_KEY) or 0)

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def post(self, channel: ChannelRef, author: str, text: str, key: str | None = None) -> MessageRef:
        message_id = await self.next_message_id(channel, key)
        self.print(render_message(place_of(channel.id), message_id, author, text))
        return MessageRef(channel, message_id)

    # ChatPort ----------------------------------------------------------------------------------

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.post(channel, self.bot_name, message.text, key)

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.post(to.channel, self.bot_name, message.text, key)

    @property
    def threads(self) -> bool:
        return False  # a terminal has no threads: a decision's posts go to the channel

    async def send_in_thread(
        self, root: MessageRef, name: str, message: Outbound, *, key: str | None = None
    ) -> MessageRef:
        return await self.send(root.channel, message, key=key)

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None:
        self.print(render_reaction(message.channel.id, message.id, self.bot_name, emoji, True))

    async def edit(self, message: MessageRef, new: Outbound) -> None:
        author = f"{self.bot_name} (edited)"
        self.print(render_message(f"#{message.channel.id}", message.id, author, new.text))

    async def delete(self, message: MessageRef) -> None:
        self.print(f"{place_of(message.channel.id)} [{message.id}] (removed by {self.bot_name})")

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.post(self.direct_channel(user.id), self.bot_name, message.text, key)

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        return user.id.casefold() in self.facilitators

    async def send_file(
        self,
        channel: ChannelRef,
        file: Attachment,
        summary: Outbound,
        *,
        reply_to: MessageRef | None = None,
        key: str | None = None,
    ) -> MessageRef:
        """Write the file under the export directory and post the summary with its path."""
        try:
            path = await asyncio.to_thread(write_new_file, self.export_dir, file.filename, file.data)
        except OSError as error:
            reason = f"cannot write to {self.export_dir}: {error.strerror or error}"
            raise DeliveryFailed(reason, permanent=True) from error
        return await self.post(channel, self.bot_name, f"{summary.text} Written to {shown(path)}", key)

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        return None  # a file on disk


def write_new_file(directory: Path, filename: str, data: bytes) -> Path:
    """Write a new file in the directory (made if missing), never over an earlier one: a name taken
    already gets -2, -3 ... before its extension."""
    directory.mkdir(parents=True, exist_ok=True)
    filename = Path(filename).name  # a name, never a path elsewhere
    stem, dot, extension = filename.rpartition(".") if "." in filename else (filename, "", "")
    for n in itertools.count(1):
        path = directory / (filename if n == 1 else f"{stem}-{n}{dot}{extension}")
        try:
            with path.open("xb") as out:
                out.write(data)
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def shown(path: Path) -> str:
    """A path as the console shows it: relative to the working directory when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


Handle = Callable[[InboundEvent], Awaitable[Reply | None]]
# The poll posted as a message, else the polls open in its channel (Engine.polls_near).
PollsNear = Callable[[MessageRef], Awaitable[tuple[Poll | None, list[Poll]]]]


class ConsoleSession:
    """Reads console lines, turns them into events for the engine and prints what happens."""

    def __init__(
        self,
        chat: ConsoleChat,
        handle: Handle,
        advance: Callable[[timedelta], Awaitable[None]],
        settle: Callable[[], Awaitable[None]],
        *,
        polls_near: PollsNear,
        announces_meeting: Callable[[MessageRef], Awaitable[bool]] | None = None,
    ) -> None:
        self.chat = chat
        self.handle = handle
        self.advance = advance  # moves the clock, firing in order everything that comes due
        self.settle = settle  # sends what the line queued, so it is printed before the next line
        self.polls_near = polls_near  # to tell a member their reaction landed on no poll
        self.announces_meeting = announces_meeting  # ... unless it is an RSVP to a meeting

    async def feed(self, line: str) -> None:
        """Handle one line to completion. Bad lines get a short error; nothing changes."""
        try:
            item = parse_line(line)
        except BadLine as error:
            self.chat.print(f"! {error}")
            return
        if isinstance(item, Nothing):
            return
        if isinstance(item, Advance):
            await self.advance(item.delta)
        elif isinstance(item, React):
            await self._react(item)
        elif isinstance(item, Membership):
            await self._membership(item)
        elif isinstance(item, Private):
            await self._private(item)
        else:
            await self._say(item)
        await self.settle()

    async def _say(self, item: Say) -> None:
        channel = self.chat.channel(item.channel)
        user = UserRef(PLATFORM, item.user, item.user)
        message = await self.chat.post(channel, item.user, item.text)
        event: InboundEvent
        if item.text.startswith("/"):
            event = CommandInvoked(f"msg-{message.id}", channel, user, item.text[1:], None, message)
        else:
            event = MessagePosted(f"msg-{message.id}", channel, user, message)
        await self.handle(event)  # its answer comes through the outbox

    async def _membership(self, item: Membership) -> None:
        channel = self.chat.channel(item.channel)
        self.chat.print(render_membership(channel.id, item.user, item.joins))
        kind = MemberJoined if item.joins else MemberLeft
        await self.handle(
            kind(f"member-{uuid.uuid4().hex}", channel, UserRef(PLATFORM, item.user, item.user))
        )

    async def _private(self, item: Private) -> None:
        """A direct message to the bot: a command is answered there; other words are for nobody."""
        channel = self.chat.direct_channel(item.user)
        message = await self.chat.post(channel, item.user, item.text)
        if item.text.startswith("/"):
            user = UserRef(PLATFORM, item.user, item.user)
            await self.handle(
                CommandInvoked(f"msg-{message.id}", channel, user, item.text[1:], None, message, direct=True)
            )

    async def _react(self, item: React) -> None:
        if not await self.chat.is_message(item.message_id):
            self.chat.print(render_no_message(item.message_id))
            return
        channel = self.chat.channel_of(item.message_id, item.channel)
        message = MessageRef(channel, item.message_id)
        user = UserRef(PLATFORM, item.user, item.user)
        self.chat.print(render_reaction(channel.id, item.message_id, item.user, item.emoji, item.add))
        event_id = f"react-{uuid.uuid4().hex}"
        kind = ReactionAdded if item.add else ReactionRemoved
        await self.handle(kind(event_id, message, user, item.emoji))
        if item.add:
            poll, open_polls = await self.polls_near(message)
            rsvp = self.announces_meeting is not None and await self.announces_meeting(message)
            if poll is None and not rsvp:
                named = [(p.id, p.message.id) for p in open_polls if p.message is not None]
                self.chat.print(render_not_a_poll(item.message_id, named))

    async def run(self, stdin: TextIO, interactive: bool) -> None:
        loop = asyncio.get_running_loop()
        if interactive:
            self.chat.print(
                "Peerbot console. Type 'alice: /help' to start; Ctrl-D to leave.\n"
                "Lines: 'name: text', '#channel name: text', '@name: /help' (to the bot privately),"
                " 'name +👍 m3', ':join name', ':leave name', ':advance 1h'."
            )
        while True:
            if interactive:
                self.chat.out.write("> ")
                self.chat.out.flush()
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:
                break
            try:
                await self.feed(line)
            except Exception:
                log.exception("error while handling a console line")
                self.chat.print("! Something went wrong handling that line; see the log.")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """Where the console reads members' lines and prints the conversation, and who is who in it."""

    stdin: TextIO
    stdout: TextIO
    facilitators: tuple[str, ...] = ()
    bot_name: str = "peerbot"
    default_channel: str = "general"
    export_dir: Path = DEFAULT_EXPORT_DIR  # where /export writes its files


def tolerate_bad_bytes(stdin: TextIO) -> None:
    """Let a line that is not UTF-8 through as lone surrogates, for the console to refuse that line;
    strict decoding would raise UnicodeDecodeError and end the whole session."""
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="surrogateescape")


class ConsoleAdapter:
    """The console as an `Adapter`: serving reads lines until the input ends.

    `advance` moves the bot's clock for `:advance`, doing in order everything that comes due; `settle`
    sends what a line queued, so that it is printed before the next line is read.
    """

    def __init__(
        self,
        settings: ConsoleSettings,
        store: Store,
        sink: EventSink,
        advance: Callable[[timedelta], Awaitable[None]],
        settle: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.chat = ConsoleChat(
            store,
            settings.stdout,
            facilitators=list(settings.facilitators),
            bot_name=settings.bot_name,
            default_channel=settings.default_channel,
            export_dir=settings.export_dir,
        )
        self.session = ConsoleSession(
            self.chat,
            sink.handle,
            advance,
            settle,
            polls_near=sink.polls_near,
            announces_meeting=sink.announces_meeting,
        )

    @property
    def connected(self) -> bool:
        """The terminal is always there: its input ending ends the console, not a connection."""
        return True

    async def start(self) -> None:
        tolerate_bad_bytes(self.settings.stdin)

    async def serve(self) -> None:
        """Until the end of the input (Ctrl-D, or the end of a script)."""
        stdin = self.settings.stdin
        await self.session.run(stdin, interactive=stdin.isatty())

    async def close(self) -> None:
        """Nothing to release: the streams belong to the caller."""
