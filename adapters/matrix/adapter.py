"""The Matrix adapter: a matrix-nio client that syncs rooms into the core's event sink and posts its answers.

Exactly once, across restarts: each /sync response (with a `limited` timeline back-filled from
`prev_batch` down to the previous token) becomes one batch for the engine, and the new sync token is
recorded with that batch, never before it. Replayed events are deduplicated by event id.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ContentRepositoryConfigError,
    ErrorResponse,
    InviteInfo,
    JoinError,
    LoginError,
    MatrixRoom,
    MessageDirection,
    RoomMessagesError,
    SyncError,
    SyncResponse,
    WhoamiError,
)

from adapters.matrix.pacing import RateLimited, with_rate_limit
from adapters.matrix.registration import Registration
from adapters.matrix.translate import (
    PLATFORM,
    THREAD_NEXT_KEY,
    Json,
    ReactionRecord,
    Room,
    defuse_mentions,
    direct_room_key,
    edit_content,
    file_content,
    inviter_allowed,
    inviter_of,
    is_direct_invite,
    is_facilitator,
    normalise_prefix,
    notice_content,
    reaction_content,
    reaction_state_key,
    redaction_targets,
    refusal,
    since_own_join,
    split_body,
    sync_filter,
    thread_key,
    thread_root,
    thread_slot_key,
    transaction_id,
    translate_timeline,
)
from adapters.pacing import Pacer
from core.events import Attachment, CommandInvoked, InboundEvent
from core.metrics import NO_METRICS, Metrics
from core.outbox import Post, PostKind
from core.ports import AdapterFailed, DeliveryFailed, EventSink, FileTooLarge, Outbound, StateChanges, Store
from core.refs import ChannelRef, MessageRef, UserRef

log = logging.getLogger(__name__)

T = TypeVar("T")

NEXT_BATCH_KEY = "next_batch"
DEVICE_KEY = "device_id"
TXN_SCOPE_KEY = "txn_scope"
USER_KEY = "user_id"
ENCRYPTED_NOTICE = (
    "This room is end-to-end encrypted, and Peerbot does not support encrypted rooms yet:"
    " it will not read or answer anything here. Use Peerbot in an unencrypted room."
)
MAX_SYNC_BACKOFF = 60.0
THREADS_REMEMBERED = 10_000  # commands written in a thread, kept in the store (a ring), the newest
THREADS_CACHED = 1_000  # of those, held in memory too


def encrypted_notice_key(room_id: str) -> str:
    return f"encrypted_notice.{room_id}"


class MatrixError(Exception):
    """A request the homeserver refused; the message says which and why."""


class LoginFailed(MatrixError, AdapterFailed):
    """The credentials do not work: the bot cannot go on."""


class Refused(DeliveryFailed):
    """The homeserver answered a post with an error; `errcode` says which (M_FORBIDDEN...)."""

    def __init__(self, failure: DeliveryFailed, errcode: str | None) -> None:
        super().__init__(failure.reason, permanent=failure.permanent, retry_after=failure.retry_after)
        self.errcode = errcode


@dataclass(frozen=True, slots=True)
class AppserviceSettings:
    """Appservice mode: the registration the homeserver loaded, and where the bot listens for it."""

    registration: Registration
    host: str = "127.0.0.1"
    port: int = 9009


@dataclass(frozen=True, slots=True)
class MatrixSettings:
    homeserver: str
    user_id: str
    access_token: str | None = None
    password: str | None = None
    device_name: str = "Peerbot"
    command_prefix: str = "!peer"
    allowed_inviters: tuple[str, ...] = ()
    facilitator_power_level: int = 50
    # Pacing below Synapse's default limit for a user's messages (0.2/s, burst 10).
    send_per_second: float = 0.2
    send_burst: int = 10
    max_rate_limit_retries: int = 3
    max_retry_after: float = 30.0
    sync_timeout_ms: int = 30_000
    timeline_limit: int = 50
    # Events back-filled per room and sync at most; past that the older ones are logged as lost.
    backfill_limit: int = 10_000
    request_timeout: float = 60.0
    # First pause after a failed sync; it doubles up to a minute while failures go on.
    retry_pause: float = 1.0
    # Set: the bot is an application service (adapters/matrix/appservice.py), no /sync.
    appservice: AppserviceSettings | None = None


def make_client(settings: MatrixSettings) -> AsyncClient:
    # max_limit_exceeded=0: nio would otherwise sleep through 429s forever; `with_rate_limit`
    # retries instead, a bounded number of times and for a bounded wait.
    config = AsyncClientConfig(
        max_limit_exceeded=0,
        max_timeouts=3,
        request_timeout=settings.request_timeout,
        store_sync_tokens=False,
    )
    return SyncClient(settings.homeserver, settings.user_id, config=config)


def split_sync(body: dict[str, Any]) -> dict[str, list[Json]]:
    """Take the joined rooms' timelines out of a /sync body, as the homeserver sent them; leave in it
    only their state events, which nio needs for its room list (names, members, encryption).

    nio validates every event against a JSON schema as it parses it (about 0.3 ms each here): a sync
    of 10,000 reactions cost 3 to 5 s in nio alone, and the adapter reads the events' JSON anyway.
    """
    raw: dict[str, list[Json]] = {}
    rooms = body.get("rooms")
    joined = rooms.get("join") if isinstance(rooms, dict) else None
    if not isinstance(joined, dict):
        return raw
    for room_id, info in joined.items():
        timeline = info.get("timeline") if isinstance(info, dict) else None
        events = timeline.get("events") if isinstance(timeline, dict) else None
        if not isinstance(events, list):
            continue
        raw[room_id] = [event for event in events if isinstance(event, dict)]
        timeline["events"] = [event for event in raw[room_id] if "state_key" in event]  # type: ignore[index]
    return raw


class SyncClient(AsyncClient):  # type: ignore[misc]  # nio is untyped
    """matrix-nio's client, keeping the timelines of the last /sync as sent (`split_sync`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_timelines: dict[str, list[Json]] | None = None

    async def create_matrix_response(
        self,
        response_class: type,
        transport_response: aiohttp.ClientResponse,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        if response_class is not SyncResponse or transport_response.status != 200:
            return await super().create_matrix_response(response_class, transport_response, data, save_to)
        body = await self.parse_body(transport_response)
        raw = split_sync(body) if isinstance(body, dict) else None
        response = SyncResponse.from_dict(body)  # type: ignore[attr-defined]  # nio is untyped
        response.transport_response = transport_response
        self.raw_timelines = raw if isinstance(response, SyncResponse) else None
        return response


@dataclass(frozen=True, slots=True)
class _Answer:
    """A raw homeserver answer, shaped like a nio error where `with_rate_limit` looks."""

    status: int
    body: Any

    @property
    def status_code(self) -> str | None:
        return "M_LIMIT_EXCEEDED" if self.status == 429 else None

    @property
    def retry_after_ms(self) -> int | None:
        value = self.body.get("retry_after_ms") if isinstance(self.body, dict) else None
        return value if isinstance(value, int) else None


async def _no_direct_room(room_id: str) -> bool:
    return False


async def _no_thread(event_id: str) -> str | None:
    return None


class MatrixChat:
    """The ChatPort on Matrix: notices in reply, reactions, edits, direct rooms, power levels."""

    def __init__(self, client: AsyncClient, settings: MatrixSettings, metrics: Metrics = NO_METRICS) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.pacer = Pacer(settings.send_per_second, settings.send_burst, on_wait=self._waited)
        # Set at login from the database (see `transaction_id`): part of every keyed transaction id.
        self.txn_scope = ""
        self._creates: dict[str, Json] = {}
        self._threads: OrderedDict[str, str] = OrderedDict()
        self._upload_size: int | None = None  # m.upload.size, once the homeserver told it
        self._upload_size_known = False
        # Whether the bot made a room to write to a member privately: the adapter, which sees the bot's
        # invites and keeps what it learned, answers. Until it does, no room is taken for one.
        self.is_direct_room: Callable[[str], Awaitable[bool]] = _no_direct_room
        # The thread a command was written in, from what the adapter kept in the database (so after a
        # restart too); the latest of them are cached in `_threads`.
        self.stored_thread: Callable[[str], Awaitable[str | None]] = _no_thread
        # Where to find the room made to write to a member; by default among the rooms /sync shows.
        self.find_direct_room: Callable[[str], Awaitable[str | None]] = self._direct_room

    @property
    def platform(self) -> str:
        return PLATFORM

    @property
    def command_prefix(self) -> str:
        return normalise_prefix(self.settings.command_prefix) + " "

    @property
    def interactive_replies(self) -> bool:
        return False  # answers go through the outbox, as notices in reply

    # Sending -----------------------------------------------------------------------------------

    def _waited(self, seconds: float) -> None:
        self.metrics.rate_limit_wait(PLATFORM, seconds)

    async def call(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """A request to the homeserver, retried after a 429 as the settings bound it."""

        async def sleep(seconds: float) -> None:
            self._waited(seconds)
            await asyncio.sleep(seconds)

        return await with_rate_limit(
            request,
            what=what,
            max_retries=self.settings.max_rate_limit_retries,
            max_wait=self.settings.max_retry_after,
            sleep=sleep,
        )

    async def deliver(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """A request that posts something: `call`, with every failure as `DeliveryFailed`.

        Permanent for the 4xx answers that will never succeed as they are; otherwise (429 beyond the
        bounded retries, 5xx, connection lost, timed out) the outbox retries with the same key.
        """
        try:
            response = await self.call(request, what)
        except RateLimited as error:
            raise DeliveryFailed(str(error), permanent=False, retry_after=error.retry_after) from error
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            reason = f"{what}: {type(error).__name__} {error}".strip()
            raise DeliveryFailed(reason, permanent=False) from error
        if isinstance(response, ErrorResponse):
            transport = response.transport_response
            status = transport.status if transport is not None else None
            raise Refused(refusal(what, status, response.status_code, response.message), response.status_code)
        return response

    async def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn: str | None = None
    ) -> str:
        """Send one event, paced, with bounded 429 retries and one transaction id for every try:
        `txn` (derived from an idempotency key), else a random one."""
        await self.pacer.wait()
        txn_id = txn or uuid.uuid4().hex

        async def attempt() -> Any:
            return await self.client.room_send(room_id, event_type, content, tx_id=txn_id)

        response = await self.deliver(attempt, f"send {event_type} to {room_id}")
        return str(response.event_id)

    def txn(self, key: str | None, part: int = 0) -> str | None:
        return transaction_id(key, part, self.txn_scope) if key is not None else None

    async def post(
        self,
        room_id: str,
        text: str,
        reply_to: str | None = None,
        key: str | None = None,
        thread: str | None = None,
    ) -> str:
        """Post the text as one notice, or as several when it is too long for one; the first's id.
        In reply to a command written in a thread, or with `thread` (its root), in that thread.

        With a key, each part has its own transaction id, so a retry re-posts only the parts that
        never reached the server and gets the stored ids of the others.
        """
        if thread is None and reply_to is not None:
            thread = await self.thread_of(reply_to)
        first: str | None = None
        for part, body in enumerate(split_body(defuse_mentions(text))):
            content = notice_content(body, reply_to=reply_to, in_thread=thread)
            event_id = await self.send_event(room_id, "m.room.message", content, self.txn(key, part))
            first = first or event_id
        assert first is not None
        return first

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return MessageRef(channel, await self.post(channel.id, message.text, key=key))

    @property
    def threads(self) -> bool:
        return True

    async def send_in_thread(
        self, root: MessageRef, name: str, message: Outbound, *, key: str | None = None
    ) -> MessageRef:
        """An `m.thread` rooted at the message; Matrix threads have no name, and need no start."""
        return MessageRef(
            root.channel, await self.post(root.channel.id, message.text, key=key, thread=root.id)
        )

    def remember_thread(self, event_id: str, root: str) -> None:
        """Answers to a command written in a thread go into that thread (cached; the adapter keeps it)."""
        self._threads[event_id] = root
        while len(self._threads) > THREADS_CACHED:
            self._threads.popitem(last=False)

    async def thread_of(self, event_id: str) -> str | None:
        """The root of the thread a command was written in; None when it was not in one."""
        root = self._threads.get(event_id)
        return root if root is not None else await self.stored_thread(event_id)

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return MessageRef(to.channel, await self.post(to.channel.id, message.text, reply_to=to.id, key=key))

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None:
        content = reaction_content(message.id, emoji)
        try:
            await self.send_event(message.channel.id, "m.reaction", content, self.txn(key))
        except Refused as refused:
            if refused.errcode != "M_DUPLICATE_ANNOTATION":
                raise
            # The bot's reaction stands already (sent under another key, or none): what was asked is done.
            log.info("reaction %s on %s was there already", emoji, message.id)

    async def edit(self, message: MessageRef, new: Outbound) -> None:
        await self.send_event(message.channel.id, "m.room.message", edit_content(message.id, new.text))

    async def delete(self, message: MessageRef) -> None:
        """Redact the event (redacting one redacted already succeeds); without the power, M_FORBIDDEN is a
        permanent refusal."""
        await self.pacer.wait()

        async def attempt() -> Any:
            return await self.client.room_redact(message.channel.id, message.id, reason="a vote is private")

        await self.deliver(attempt, f"redact {message.id} in {message.channel.id}")

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        room_id = await self.find_direct_room(user.id) or await self._create_direct_room(user.id)
        return await self.send(ChannelRef(PLATFORM, room_id), message, key=key)

    async def _direct_room(self, user_id: str) -> str | None:
        """A room the bot made to write to the member, with only the two of them in it. Not merely a room
        of the two: a group's room where the member is alone with the bot is no private conversation,
        and whoever joins it later would read what was meant for them alone."""
        for room in self.client.rooms.values():
            if (
                not room.encrypted
                and set(room.users) == {self.settings.user_id, user_id}
                and await self.is_direct_room(room.room_id)
            ):
                return str(room.room_id)
        return None

    async def _create_direct_room(self, user_id: str) -> str:
        response = await self.deliver(
            lambda: self.client.room_create(is_direct=True, invite=[user_id]),
            f"create a direct room with {user_id}",
        )
        return str(response.room_id)

    # Files -------------------------------------------------------------------------------------

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        return await self.upload_size()

    async def upload_size(self) -> int | None:
        """`m.upload.size` from the homeserver's media config, asked once; None when it sets no limit
        or cannot be asked now (the upload then says)."""
        if self._upload_size_known:
            return self._upload_size
        try:
            response = await self.call(self.client.content_repository_config, "read the media config")
        except (RateLimited, aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("cannot read the homeserver's media config: %s", error)
            return None
        if isinstance(response, ContentRepositoryConfigError):
            log.warning(
                "the homeserver refused its media config: %s %s", response.status_code, response.message
            )
            return None
        self._upload_size, self._upload_size_known = response.upload_size, True
        return self._upload_size

    async def send_file(
        self,
        channel: ChannelRef,
        file: Attachment,
        summary: Outbound,
        *,
        reply_to: MessageRef | None = None,
        key: str | None = None,
    ) -> MessageRef:
        """Upload the file, then post the summary (a notice, in reply to the command) and an m.file
        event with the mxc:// url, the file's name, type and size.

        The two events are keyed (a retry posts neither twice); the upload is not, so a retry after
        a lost answer may leave an unused copy in the media repository.
        """
        url = await self._upload(file)
        answered = reply_to.id if reply_to is not None else None
        thread = await self.thread_of(answered) if answered else None
        notice = notice_content(summary.text, reply_to=answered, in_thread=thread)
        summary_id = await self.send_event(channel.id, "m.room.message", notice, self.txn(key, 0))
        content = file_content(
            file.filename, url, file.mimetype, file.size, in_thread=thread, after=summary_id
        )
        return MessageRef(
            channel, await self.send_event(channel.id, "m.room.message", content, self.txn(key, 1))
        )

    async def _upload(self, file: Attachment) -> str:
        """Put the file in the homeserver's media repository; its mxc:// url."""

        async def attempt() -> Any:
            response, _ = await self.client.upload(
                io.BytesIO(file.data), content_type=file.mimetype, filename=file.filename, filesize=file.size
            )
            return response

        try:
            response = await self.deliver(attempt, f"upload {file.filename}")
        except Refused as refused:
            if refused.errcode != "M_TOO_LARGE":
                raise
            self._upload_size_known = False  # the limit changed since it was read: read it again
            raise FileTooLarge(file.size, await self.upload_size(), refused.reason) from refused
        return str(response.content_uri)

    # Power -------------------------------------------------------------------------------------

    def remember_create(self, room_id: str, event: Json) -> None:
        self._creates[room_id] = event

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        """From the room's current state on the server; when it cannot be read, nobody is."""
        try:
            create = self._creates.get(channel.id) or await self._fetch_create(channel.id)
            power_levels = await self._state_content(channel.id, "m.room.power_levels")
        except (MatrixError, RateLimited, OSError, TimeoutError) as error:
            log.warning(
                "cannot read the power levels of %s, so %s is not a facilitator: %s",
                channel.id,
                user.id,
                error,
            )
            return False
        return is_facilitator(
            user.id,
            create_event=create,
            power_levels=power_levels,
            threshold=self.settings.facilitator_power_level,
        )

    async def _get(self, path: str) -> tuple[int, Any]:
        """A GET nio has no method for (state with its sender), with the same bounded 429 retries."""

        async def fetch() -> _Answer:
            headers = {"Authorization": f"Bearer {self.client.access_token}"}
            response = await self.client.send("GET", path, headers=headers)
            async with response:
                return _Answer(response.status, await response.json(content_type=None))

        answer = await self.call(fetch, f"GET {path}")
        return answer.status, answer.body

    async def _state_content(self, room_id: str, event_type: str) -> Json | None:
        status, body = await self._get(
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/{event_type}/"
        )
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise MatrixError(f"read {event_type} of {room_id}: HTTP {status}")
        return body

    async def _fetch_create(self, room_id: str) -> Json:
        """The room's m.room.create event with its sender (the content alone does not name it)."""
        room = quote(room_id, safe="")
        status, body = await self._get(f"/_matrix/client/v3/rooms/{room}/state/m.room.create/?format=event")
        if status == 200 and isinstance(body, dict) and "sender" in body:
            self._creates[room_id] = body
            return body
        status, body = await self._get(f"/_matrix/client/v3/rooms/{room}/state")
        if status != 200 or not isinstance(body, list):
            raise MatrixError(f"read the state of {room_id}: HTTP {status}")
        for event in body:
            if isinstance(event, dict) and event.get("type") == "m.room.create":
                self._creates[room_id] = event
                return event
        raise MatrixError(f"{room_id} has no m.room.create event")


@dataclass(slots=True)
class _Batch:
    events: list[InboundEvent] = field(default_factory=list)
    state: dict[str, str | None] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)  # what the adapter has to say on its own
    threads: list[tuple[str, str]] = field(default_factory=list)  # (command's event id, its thread's root)


class MatrixAdapter:
    """Logs in, syncs, accepts invites and feeds every room's events to its sink in batches (an
    `Adapter`)."""

    threads_remembered = THREADS_REMEMBERED

    def __init__(
        self,
        settings: MatrixSettings,
        store: Store,
        sink: EventSink,
        client: AsyncClient | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sink = sink
        self.metrics = metrics
        self.client = client or make_client(settings)
        self.chat = MatrixChat(self.client, settings, metrics)
        # Whether the last /sync went through; None before the first (`connected`, reconnects).
        self._synced: bool | None = None
        self.since: str | None = None
        self._full_state = True
        self._filter = sync_filter(settings.timeline_limit)
        self._direct: dict[str, bool] = {}  # room id -> made by the bot for a direct conversation
        self.chat.is_direct_room = self._made_for_a_member
        self.chat.stored_thread = self._stored_thread

    @property
    def user_id(self) -> str:
        return self.settings.user_id

    @property
    def connected(self) -> bool:
        """The last /sync went through (the homeserver answers and the bot's login holds)."""
        return bool(self._synced)

    def _sync_went(self, through: bool) -> None:
        if through and self._synced is False:
            self.metrics.reconnected(PLATFORM)
            log.info("the homeserver answers again")
        self._synced = through

    # Start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in with the access token or the password; resume from the stored sync token.

        `LoginFailed` when the credentials do not work; `AdapterFailed` when the homeserver cannot be
        reached.
        """
        async with self.store.transaction() as tx:
            state = tx.state(PLATFORM)
            stored_user = await state.get(USER_KEY)
            device_id = await state.get(DEVICE_KEY)
            since = await state.get(NEXT_BATCH_KEY)
            txn_scope = await state.get(TXN_SCOPE_KEY)
        if stored_user is not None and stored_user != self.user_id:
            log.warning(
                "the database was used by %s before; starting afresh as %s", stored_user, self.user_id
            )
            device_id, since, txn_scope = None, None, None
        txn_scope = txn_scope or secrets.token_hex(4)
        if self.settings.access_token:
            self.client.restore_login(self.user_id, device_id or "", self.settings.access_token)
            who = await self._reach(self.client.whoami, "whoami")
            if isinstance(who, WhoamiError):
                raise LoginFailed(f"the access token was refused: {who.status_code} {who.message}")
            if who.user_id != self.user_id:
                raise LoginFailed(f"the access token belongs to {who.user_id}, not {self.user_id}")
            if not who.device_id:
                log.warning(
                    "the access token has no device: a send retried after a restart may be posted twice"
                )
            device_id = who.device_id or device_id
            self.client.device_id = device_id or ""
        elif self.settings.password:
            # nio's login sends `client.device_id`: the stored device is logged in again, not a new one,
            # and Synapse keeps transaction ids per device, so keyed sends stay idempotent over restarts.
            self.client.device_id = device_id or ""
            password, device_name = self.settings.password, self.settings.device_name
            response = await self._reach(
                lambda: self.client.login(password, device_name=device_name), "password login"
            )
            if isinstance(response, LoginError):
                raise LoginFailed(f"password login refused: {response.status_code} {response.message}")
            device_id = response.device_id
        else:
            raise LoginFailed("neither an access token nor a password is configured")
        async with self.store.transaction() as tx:
            state = tx.state(PLATFORM)
            await state.set(USER_KEY, self.user_id)
            await state.set(TXN_SCOPE_KEY, txn_scope)
            if device_id:
                await state.set(DEVICE_KEY, device_id)
        self.chat.txn_scope = txn_scope
        self.since = since
        self._full_state = True
        log.info(
            "logged in to %s as %s (device %s); %s",
            self.settings.homeserver,
            self.user_id,
            device_id,
            "resuming from the stored sync token" if since else "first start: history is ignored",
        )

    async def _reach(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """A request at start, when a homeserver that cannot be reached is for the operator to fix."""
        try:
            return await self.chat.call(request, what)
        except (OSError, aiohttp.ClientError) as error:
            reason = str(error) or type(error).__name__
            where = self.settings.homeserver
            raise AdapterFailed(f"cannot reach the Matrix homeserver at {where}: {reason}") from None

    async def serve(self) -> None:
        """After start(): sync until cancelled. A failed sync is retried from the same token after a
        growing pause, so nothing is skipped; only a refused login ends the loop."""
        pause = self.settings.retry_pause
        while True:
            try:
                await self.sync_once()
                pause = self.settings.retry_pause
            except LoginFailed:
                self._sync_went(False)
                raise
            except (MatrixError, RateLimited, OSError, TimeoutError) as error:
                self._sync_went(False)
                log.warning("sync not completed (%s); retrying from the same token in %.1f s", error, pause)
            except Exception:
                log.exception("a sync batch could not be applied; retrying it in %.1f s", pause)
            else:
                self._sync_went(True)
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_SYNC_BACKOFF)

    async def close(self) -> None:
        await self.client.close()

    # One sync ----------------------------------------------------------------------------------

    async def sync_once(self, timeout_ms: int | None = None) -> SyncResponse:
        """One /sync, applied: invites answered, events handed over with the token, replies sent."""
        since = self.since
        timeout = self.settings.sync_timeout_ms if timeout_ms is None else timeout_ms

        async def attempt() -> Any:
            return await self.client.sync(
                timeout=timeout, sync_filter=self._filter, since=since, full_state=self._full_state
            )

        response = await with_rate_limit(
            attempt, what="sync", max_retries=self.settings.max_rate_limit_retries, max_wait=MAX_SYNC_BACKOFF
        )
        if isinstance(response, SyncError):
            if response.status_code == "M_UNKNOWN_TOKEN":
                raise LoginFailed(f"the homeserver no longer accepts the login: {response.message}")
            raise MatrixError(f"sync: {response.status_code} {response.message}")
        assert isinstance(response, SyncResponse)
        self._full_state = False

        for room_id, invite in response.rooms.invite.items():
            await self._answer_invite(room_id, invite)

        batch = await self._collect(response, since)
        batch.state[NEXT_BATCH_KEY] = response.next_batch
        # Answers to commands are queued in the outbox with the events they answer, the adapter's own
        # notices with the state that records them.
        await self.sink.handle_batch(batch.events, StateChanges(PLATFORM, batch.state), batch.posts)
        self.since = response.next_batch
        return response

    async def _collect(self, response: SyncResponse, since: str | None) -> _Batch:
        batch = _Batch()
        raw = getattr(self.client, "raw_timelines", None)
        await self._load_direct(list(response.rooms.join))
        for room_id, info in response.rooms.join.items():
            timeline: list[Json] = (
                raw[room_id]
                if raw is not None and room_id in raw
                else [e.source for e in info.timeline.events]
            )
            states: list[Json] = [event.source for event in info.state]
            room = self.client.rooms.get(room_id)
            if since is not None and info.timeline.limited and info.timeline.prev_batch:
                gap = (info.timeline.prev_batch, since)
            else:
                gap = None
            await self._collect_room(
                batch,
                room_id,
                self._room(room_id, room),
                states,
                timeline,
                history=since is None,
                gap=gap,
                encrypted=bool(room and room.encrypted),
            )
        await self._keep_threads(batch.threads, batch.state)
        return batch

    async def _collect_room(
        self,
        batch: _Batch,
        room_id: str,
        room: Room,
        states: list[Json],
        timeline: list[Json],
        *,
        history: bool = False,
        gap: tuple[str, str] | None = None,
        encrypted: bool = False,
    ) -> None:
        """One room's new events into the batch. `history`: they are from before the bot started (only
        looked at); `gap`: the (prev_batch, since) tokens of a limited timeline, back-filled first."""
        for event in (*states, *timeline):
            if event.get("type") == "m.room.create" and "sender" in event:
                self.chat.remember_create(room_id, event)
        direct, newly = await self._is_direct(room_id, [*states, *timeline])
        if newly:
            batch.state[direct_room_key(room_id)] = "made"
        if encrypted or self._is_encrypted(None, states, timeline):
            if await self._not_yet_warned(room_id):
                log.warning(
                    "room %s is encrypted; Peerbot does not support encrypted rooms and ignores it",
                    room_id,
                )
                batch.posts.append(Post(PostKind.SEND, ChannelRef(PLATFORM, room_id), ENCRYPTED_NOTICE))
                batch.state[encrypted_notice_key(room_id)] = "said"
            return
        if history:
            return  # first start: everything so far is history
        if gap is not None:
            timeline = await self._backfill(room_id, *gap) + timeline
        timeline = since_own_join(timeline, self.user_id)
        roots = {str(e.get("event_id")): root for e in timeline if (root := thread_root(e)) is not None}
        known = await self._remembered_reactions(redaction_targets(timeline))
        translation = translate_timeline(
            room,
            timeline,
            bot_user_id=self.user_id,
            prefix=self.settings.command_prefix,
            known_reactions=known,
            direct=direct,
        )
        batch.events.extend(translation.events)
        batch.threads += [
            (e.event_id, roots[e.event_id])
            for e in translation.events
            if isinstance(e, CommandInvoked) and e.event_id in roots
        ]
        for event_id, record in translation.reactions.items():
            batch.state[reaction_state_key(event_id)] = record.to_json()
        for event_id in translation.forgotten:
            batch.state[reaction_state_key(event_id)] = None

    async def _keep_threads(self, threads: list[tuple[str, str]], state: dict[str, str | None]) -> None:
        """Keep, with the batch of the commands, the thread each was written in, so that their answers
        go there after a restart too. The newest `threads_remembered` are kept, in a ring of slots: a
        slot taken again forgets the command it held."""
        if not threads:
            return
        async with self.store.read() as tx:
            stored = tx.state(PLATFORM)
            slot = int(await stored.get(THREAD_NEXT_KEY) or 0)
            for event_id, root in threads:
                held = thread_slot_key(slot % self.threads_remembered)
                older = state[held] if held in state else await stored.get(held)
                if older is not None and older != event_id:
                    state[thread_key(older)] = None
                state[held] = event_id
                state[thread_key(event_id)] = root
                self.chat.remember_thread(event_id, root)
                slot += 1
        state[THREAD_NEXT_KEY] = str(slot)

    async def _stored_thread(self, event_id: str) -> str | None:
        async with self.store.read() as tx:
            return await tx.state(PLATFORM).get(thread_key(event_id))

    async def _is_direct(self, room_id: str, events: list[Json]) -> tuple[bool, bool]:
        """Whether the bot made the room for a direct conversation (its invite said `is_direct`), and
        whether that is news in these events, to be remembered with the batch."""
        if self._direct.get(room_id):
            return True, False
        # The invite may come a sync after the room (the bot may see its new room before inviting).
        if any(is_direct_invite(event, self.user_id) for event in events):
            self._direct[room_id] = True
            return True, True
        if room_id in self._direct:
            return False, False
        async with self.store.transaction() as tx:
            known = await tx.state(PLATFORM).get(direct_room_key(room_id)) is not None
        self._direct[room_id] = known
        return known, False

    async def _load_direct(self, room_ids: list[str]) -> None:
        """Whether the bot made each of these rooms for a direct conversation, read in one query for the
        rooms not known yet: the first sync of a bot in 1,000 rooms otherwise asks 1,000 times."""
        unknown = [room_id for room_id in room_ids if room_id not in self._direct]
        if not unknown:
            return
        async with self.store.read() as tx:
            made = await tx.state(PLATFORM).get_many([direct_room_key(room_id) for room_id in unknown])
        for room_id in unknown:
            self._direct[room_id] = direct_room_key(room_id) in made

    async def _made_for_a_member(self, room_id: str) -> bool:
        """Whether the bot made the room for a direct conversation, as far as it knows: from this
        process's syncs, else from what earlier ones kept in the database."""
        known = self._direct.get(room_id)
        if known is None:
            async with self.store.read() as tx:
                known = await tx.state(PLATFORM).get(direct_room_key(room_id)) is not None
        return known

    @staticmethod
    def _is_encrypted(room: MatrixRoom | None, states: list[Json], timeline: list[Json]) -> bool:
        if room is not None and room.encrypted:
            return True
        return any(event.get("type") == "m.room.encryption" for event in (*states, *timeline))

    def _room(self, room_id: str, room: MatrixRoom | None) -> Room:
        if room is None:
            return Room(room_id)
        names = {user_id: user.display_name for user_id, user in room.users.items() if user.display_name}
        return Room(room_id, room.display_name, names)

    async def _backfill(self, room_id: str, prev_batch: str, since: str) -> list[Json]:
        """The events of a `limited` timeline that /sync left out: /messages from `prev_batch`
        back to the previous sync token, oldest first."""
        newest_first: list[Json] = []
        token = prev_batch
        while True:

            async def attempt(start: str = token) -> Any:
                return await self.client.room_messages(
                    room_id, start=start, end=since, direction=MessageDirection.back, limit=100
                )

            page = await self.chat.call(attempt, f"back-fill {room_id}")
            if isinstance(page, RoomMessagesError):
                raise MatrixError(f"back-fill {room_id}: {page.status_code} {page.message}")
            newest_first.extend(event.source for event in page.chunk)
            if len(newest_first) >= self.settings.backfill_limit:
                log.error(
                    "back-fill of %s stopped after %d events; older events in the gap are not counted",
                    room_id,
                    len(newest_first),
                )
                break
            if not page.chunk or not page.end or page.end == token:
                break
            token = page.end
        if newest_first:
            log.info("back-filled %d events in %s", len(newest_first), room_id)
        newest_first.reverse()
        return newest_first

    async def _remembered_reactions(self, event_ids: list[str]) -> dict[str, ReactionRecord]:
        if not event_ids:
            return {}
        found: dict[str, ReactionRecord] = {}
        async with self.store.read() as tx:
            texts = await tx.state(PLATFORM).get_many([reaction_state_key(e) for e in event_ids])
        for event_id in event_ids:
            text = texts.get(reaction_state_key(event_id))
            record = ReactionRecord.from_json(text) if text else None
            if record is not None:
                found[event_id] = record
        return found

    async def _not_yet_warned(self, room_id: str) -> bool:
        async with self.store.transaction() as tx:
            return await tx.state(PLATFORM).get(encrypted_notice_key(room_id)) is None

    async def _answer_invite(self, room_id: str, invite: InviteInfo) -> None:
        inviter = inviter_of([_stripped_state(event) for event in invite.invite_state], self.user_id)
        if not inviter_allowed(inviter, self.settings.allowed_inviters):
            log.info("declining the invite to %s from %s (not in allowed_inviters)", room_id, inviter)
            await self.chat.call(lambda: self.client.room_leave(room_id), f"decline {room_id}")
            return
        response = await self.chat.call(lambda: self.client.join(room_id), f"join {room_id}")
        if isinstance(response, JoinError):
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, response.message)
        else:
            log.info("joined %s, invited by %s", room_id, inviter)


def _stripped_state(event: Any) -> Json:
    """An invite's stripped state event; nio keeps its content apart from its `source`."""
    source = dict(event.source)
    content = getattr(event, "content", None)
    if "content" not in source and isinstance(content, dict):
        source["content"] = content
    return source
