"""The Matrix adapter as an application service: the homeserver pushes the bot's rooms to it over HTTP.

No /sync: Synapse sends `PUT /_matrix/app/v1/transactions/{txnId}` with the new events of every room the
bot is in (and its invites), one transaction at a time, and sends it again until it is answered 200.
Each transaction becomes one batch for the engine, and its id is recorded in the unit of work that
saves the batch's state: a transaction sent again (the answer was lost, the bot restarted) is answered
200 without being applied twice. Events are deduplicated by event id besides.

The bot sends as the registration's `sender_localpart` user with the `as_token`; with the registration's
`rate_limited: false` the homeserver does not hold its messages back, so nothing is paced by default.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from nio import AsyncClient, WhoamiError

from adapters.matrix.adapter import (
    TXN_SCOPE_KEY,
    USER_KEY,
    AppserviceSettings,
    LoginFailed,
    MatrixAdapter,
    MatrixSettings,
    _Batch,
)
from adapters.matrix.translate import (
    PLATFORM,
    Json,
    Room,
    inviter_allowed,
    is_direct_invite,
)
from core.metrics import NO_METRICS, Metrics
from core.ports import AdapterFailed, EventSink, StateChanges, Store

log = logging.getLogger(__name__)

PREFIX = "/_matrix/app/v1"
BATCHES_KEPT = 10_000  # transaction ids remembered; the homeserver only ever sends its latest again
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024


def direct_to_key(user_id: str) -> str:
    """The room the bot made to write to a member (appservice mode has no room list to look in)."""
    return f"direct_to.{user_id}"


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def given_token(request: web.Request) -> str | None:
    """The homeserver's token: `Authorization: Bearer` (Matrix 1.4 on), else the legacy query parameter."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.query.get("access_token")


class AppserviceAdapter(MatrixAdapter):
    """Listens for the homeserver's transactions and feeds them to its sink (an `Adapter`)."""

    def __init__(
        self,
        settings: MatrixSettings,
        store: Store,
        sink: EventSink,
        client: AsyncClient | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        super().__init__(settings, store, sink, client, metrics)
        assert settings.appservice is not None, "appservice mode needs its settings"
        self.appservice: AppserviceSettings = settings.appservice
        self._runner: web.AppRunner | None = None
        self._one_at_a_time = asyncio.Lock()
        self._direct_to: dict[str, str | None] = {}
        self.chat.find_direct_room = self._room_made_for
        self.transactions = 0  # applied, not counting those sent again
        self.listening = asyncio.Event()  # set once started: the homeserver may push

    @property
    def url(self) -> str:
        """Where the listener answers (the bound port, when port 0 asked for any)."""
        return f"http://{self.appservice.host}:{self.port}"

    @property
    def port(self) -> int:
        if self._runner is not None:
            for site in self._runner.sites:
                server = getattr(site, "_server", None)
                sockets = getattr(server, "sockets", None) or ()
                for sock in sockets:
                    return int(sock.getsockname()[1])
        return self.appservice.port

    # Start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the as_token with the homeserver, listen for its transactions, and ping it so that
        what it queued while the bot was away comes now.

        `LoginFailed` when the homeserver does not know the token; `AdapterFailed` when it cannot be
        reached or the listener's port cannot be had.
        """
        registration = self.appservice.registration
        async with self.store.transaction() as tx:
            state = tx.state(PLATFORM)
            stored_user = await state.get(USER_KEY)
            txn_scope = await state.get(TXN_SCOPE_KEY)
            forgotten = await state.forget_batches(BATCHES_KEPT)
        if stored_user is not None and stored_user != self.user_id:
            log.warning(
                "the database was used by %s before; starting afresh as %s", stored_user, self.user_id
            )
            txn_scope = None
        txn_scope = txn_scope or secrets.token_hex(4)
        self.client.restore_login(self.user_id, "", registration.as_token)
        who = await self._reach(self.client.whoami, "whoami")
        if isinstance(who, WhoamiError):
            raise LoginFailed(
                f"the homeserver refused the registration's as_token ({who.status_code}): is the"
                " registration file listed in its app_service_config_files, and was it restarted since?"
            )
        if who.user_id != self.user_id:
            raise LoginFailed(
                f"the registration's as_token acts as {who.user_id}, not {self.user_id}: the registration"
                " was written for another user_id"
            )
        await self._register()
        async with self.store.transaction() as tx:
            state = tx.state(PLATFORM)
            await state.set(USER_KEY, self.user_id)
            await state.set(TXN_SCOPE_KEY, txn_scope)
        self.chat.txn_scope = txn_scope
        await self._listen()
        log.info(
            "application service %s as %s, listening at %s for %s (%d old transaction ids forgotten)",
            registration.id,
            self.user_id,
            self.url,
            self.settings.homeserver,
            forgotten,
        )
        await self.ping()
        self.listening.set()

    async def _post(self, path: str, body: Json) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self.client.access_token}",
            "Content-Type": "application/json",
        }
        response = await self.client.send("POST", path, json.dumps(body), headers=headers)
        async with response:
            return response.status, await response.json(content_type=None)

    async def _register(self) -> None:
        """Make the bot's user an account (the homeserver acts as it without one, but an admin cannot
        set anything on a user that does not exist); one that exists already is the usual case."""
        localpart = self.appservice.registration.sender_localpart
        body = {"type": "m.login.application_service", "username": localpart, "inhibit_login": True}
        status, answer = await self._reach(
            lambda: self._post("/_matrix/client/v3/register", body), "register the bot's user"
        )
        errcode = answer.get("errcode") if isinstance(answer, dict) else None
        if status != 200 and errcode != "M_USER_IN_USE":
            log.warning("could not register the bot's user %s: HTTP %s %s", self.user_id, status, errcode)

    async def _listen(self) -> None:
        app = web.Application(client_max_size=MAX_TRANSACTION_BYTES)
        for prefix in (PREFIX, ""):  # the paths without a version are those of homeservers before 1.1
            app.router.add_put(prefix + "/transactions/{txn_id}", self._transaction)
            app.router.add_get(prefix + "/users/{user_id}", self._user)
            app.router.add_get(prefix + "/rooms/{alias}", self._alias)
        app.router.add_post(PREFIX + "/ping", self._ping)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.appservice.host, self.appservice.port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            where = f"{self.appservice.host}:{self.appservice.port}"
            raise AdapterFailed(
                f"cannot listen for the homeserver's transactions on {where}: {error.strerror or error}"
                " (matrix.appservice.host and port)"
            ) from None
        self._runner = runner

    async def ping(self) -> float | None:
        """Ask the homeserver to reach the listener (`/appservice/{id}/ping`); it then sends at once
        what it holds for the bot. The round trip in seconds, or None when it could not reach it."""
        path = f"/_matrix/client/v1/appservice/{quote(self.appservice.registration.id, safe='')}/ping"
        started = time.monotonic()

        try:
            status, body = await self._post(path, {"transaction_id": f"peerbot-ping-{secrets.token_hex(4)}"})
        except (OSError, TimeoutError) as error:
            log.warning("could not ask the homeserver to ping the bot: %s", error)
            return None
        if status != 200:
            errcode = body.get("errcode") if isinstance(body, dict) else None
            log.warning(
                "the homeserver could not reach the bot at the registration's url (%s, HTTP %s %s):"
                " check `url` in the registration and matrix.appservice.host/port",
                self.appservice.registration.url,
                status,
                errcode,
            )
            self._sync_went(False)
            return None
        self._sync_went(True)
        return time.monotonic() - started

    async def serve(self) -> None:
        """After start(): the listener answers until this is cancelled."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.listening.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()

    # The homeserver's requests -----------------------------------------------------------------

    def _refused(self, request: web.Request) -> web.Response | None:
        token = given_token(request)
        if not token:
            return _error(401, "M_UNAUTHORIZED", "no hs_token given")
        expected = self.appservice.registration.hs_token
        if not hmac.compare_digest(token.encode(), expected.encode()):
            log.warning("refused a request to %s with a wrong hs_token", request.path)
            return _error(403, "M_FORBIDDEN", "wrong hs_token")
        return None

    async def _ping(self, request: web.Request) -> web.Response:
        return self._refused(request) or web.json_response({})

    async def _user(self, request: web.Request) -> web.Response:
        """The bot makes no users of its namespace on demand: its own exists, and there is no other."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.match_info["user_id"] == self.user_id:
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "no such user here")

    async def _alias(self, request: web.Request) -> web.Response:
        return self._refused(request) or _error(404, "M_NOT_FOUND", "the bot has no room aliases")

    async def _transaction(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        txn_id = request.match_info["txn_id"]
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "M_NOT_JSON", "the transaction is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "the transaction has no `events` list")
        # The homeserver sends one transaction at a time; a retry while the first is still being
        # applied waits for it, and is then known.
        async with self._one_at_a_time:
            async with self.store.read() as tx:
                applied = await tx.state(PLATFORM).batch_applied(txn_id)
            if applied:
                log.info("transaction %s was applied already: answered again", txn_id)
                return web.json_response({})
            try:
                await self.push(txn_id, [event for event in events if isinstance(event, dict)])
            except Exception:
                log.exception(
                    "transaction %s could not be applied; the homeserver will send it again", txn_id
                )
                return _error(500, "M_UNKNOWN", "the transaction could not be applied; send it again")
        self.transactions += 1
        self._sync_went(True)
        return web.json_response({})

    # One transaction ---------------------------------------------------------------------------

    async def push(self, txn_id: str, events: list[Json]) -> None:
        """Apply one transaction's events: invites answered, each room's events translated, and the
        whole handed to the engine with the transaction's id."""
        rooms: dict[str, list[Json]] = {}
        for event in events:
            room_id = event.get("room_id")
            if isinstance(room_id, str):
                rooms.setdefault(room_id, []).append(event)
        batch = _Batch()
        for room_id, timeline in rooms.items():
            for event in timeline:
                if _invites_the_bot(event, self.user_id):
                    await self._answer_invite_event(room_id, event)
            self._remember_direct_rooms(room_id, timeline, batch.state)
            await self._collect_room(batch, room_id, _room(room_id, timeline), [], timeline)
        await self._keep_threads(batch.threads, batch.state)
        state = StateChanges(PLATFORM, batch.state, batch_id=txn_id)
        await self.sink.handle_batch(batch.events, state, batch.posts)

    async def _answer_invite_event(self, room_id: str, event: Json) -> None:
        inviter = event.get("sender")
        inviter = inviter if isinstance(inviter, str) else None
        if not inviter_allowed(inviter, self.settings.allowed_inviters):
            log.info("declining the invite to %s from %s (not in allowed_inviters)", room_id, inviter)
            await self.chat.call(lambda: self.client.room_leave(room_id), f"decline {room_id}")
            return
        response = await self.chat.call(lambda: self.client.join(room_id), f"join {room_id}")
        message = getattr(response, "message", None) if getattr(response, "status_code", None) else None
        if message is not None:
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, message)
        else:
            log.info("joined %s, invited by %s", room_id, inviter)

    def _remember_direct_rooms(
        self, room_id: str, timeline: list[Json], state: dict[str, str | None]
    ) -> None:
        """Rooms the bot made to write to a member, by member, kept with the batch; forgotten when the
        member leaves."""
        for event in timeline:
            member = event.get("state_key")
            if not isinstance(member, str):
                continue
            if is_direct_invite(event, self.user_id):
                self._direct_to[member] = room_id
                state[direct_to_key(member)] = room_id
            elif (
                event.get("type") == "m.room.member"
                and _membership_of(event) in ("leave", "ban")
                and self._direct_to.get(member) == room_id
            ):
                self._direct_to[member] = None
                state[direct_to_key(member)] = None

    async def _room_made_for(self, user_id: str) -> str | None:
        if user_id not in self._direct_to:
            async with self.store.read() as tx:
                self._direct_to[user_id] = await tx.state(PLATFORM).get(direct_to_key(user_id))
        return self._direct_to[user_id]


def _membership_of(event: Json) -> str | None:
    content = event.get("content")
    membership = content.get("membership") if isinstance(content, Mapping) else None
    return membership if isinstance(membership, str) else None


def _invites_the_bot(event: Json, bot_user_id: str) -> bool:
    return (
        event.get("type") == "m.room.member"
        and event.get("state_key") == bot_user_id
        and _membership_of(event) == "invite"
    )


def _room(room_id: str, timeline: list[Json]) -> Room:
    """The room as its events in the transaction name its members (no room state is pushed)."""
    names: dict[str, str] = {}
    for event in timeline:
        content = event.get("content")
        member = event.get("state_key")
        if event.get("type") == "m.room.member" and isinstance(member, str) and isinstance(content, Mapping):
            name = content.get("displayname")
            if isinstance(name, str) and name:
                names[member] = name
    return Room(room_id, "", names)
