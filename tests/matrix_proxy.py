"""A holding proxy between the bot and Synapse, for crash tests. Every request is forwarded, with the
response streamed (long-poll /sync included), and chosen `PUT .../rooms/{room}/send/{type}/{txn}`
requests can be held or failed:

    hold = proxy.hold_sends(HoldMode.ANSWER)   # Synapse stores the event; the bot never hears back
    hold = proxy.hold_sends(HoldMode.REQUEST)  # the request waits before it reaches Synapse
    held = await hold.arrived()                # a SendRequest; now SIGKILL the bot and restart it,
    hold.release()                             # or let the held answer (or request) go on
    late = await hold.reached_synapse()        # the held request with the event id Synapse answered
    proxy.fail_sends(502)                      # the next send is answered 502, never forwarded

`event_type=`, `count=` and `after=` choose which sends a rule takes (`after=1`: not the first one).
Only the bot goes through the proxy (its `homeserver` is `proxy.url`); members talk to Synapse.
At `stop`, requests still held before Synapse are dropped, never forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

WAIT = 30.0
_SEND = re.compile(r"^/_matrix/client/(?:v3|r0)/rooms/(?P<room>[^/]+)/send/(?P<type>[^/]+)/(?P<txn>[^/?]+)")
_NOT_PASSED_ON = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",  # the proxy's client session decodes, so what it passes on is plain
}


class HoldMode(enum.Enum):
    ANSWER = "answer"  # forwarded, so Synapse stores the event; its answer is held
    REQUEST = "request"  # held before it reaches Synapse


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A `PUT .../send/...` as the proxy saw it; `event_id` is Synapse's answer once forwarded."""

    room_id: str
    event_type: str
    txn_id: str
    body: bytes
    event_id: str | None = None

    @property
    def content(self) -> Any:
        return json.loads(self.body)


class _Rule:
    """Of the sends of `event_type` (any when None), a rule lets the first `after` pass and takes
    the `count` after them."""

    event_type: str | None
    count: int
    after: int
    _seen: int

    def take(self, request: SendRequest) -> bool:
        if self.event_type not in (None, request.event_type):
            return False
        self._seen += 1
        return self.after < self._seen <= self.after + self.count


@dataclass(eq=False)
class Hold(_Rule):
    """Holds the sends it takes until `release`: `held` as they arrive, `answered` with event ids."""

    mode: HoldMode
    event_type: str | None = None
    count: int = 1
    after: int = 0
    held: list[SendRequest] = field(default_factory=list)
    answered: list[SendRequest] = field(default_factory=list)
    _seen: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _dropped: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def arrived(self, n: int = 1, within: float = WAIT) -> SendRequest:
        """The `n`-th held request, once it is held: in ANSWER mode, once Synapse has stored it."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.held) >= n)
        return self.held[n - 1]

    async def reached_synapse(self, n: int = 1, within: float = WAIT) -> SendRequest:
        """The `n`-th held request with the event id Synapse answered (REQUEST mode: once released)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.answered) >= n)
        return self.answered[n - 1]

    def release(self) -> None:
        """Let what is held, and what this rule takes from now on, go on."""
        self._released.set()

    def drop(self) -> None:
        """End the hold; requests still held before Synapse are answered 502, never forwarded."""
        self._dropped = True
        self._released.set()

    async def _hold(self, request: SendRequest) -> bool:
        """Records the request and waits; True when it may go on, False when dropped."""
        await self._record(self.held, request)
        if request.event_id is not None:
            await self._record(self.answered, request)
        await self._released.wait()
        return not self._dropped

    async def _record(self, into: list[SendRequest], request: SendRequest) -> None:
        async with self._changed:
            into.append(request)
            self._changed.notify_all()


@dataclass(eq=False)
class Failure(_Rule):
    """Answers the sends it takes with `status` and a Matrix error body, without forwarding them."""

    status: int
    errcode: str = "M_UNKNOWN"
    event_type: str | None = None
    count: int = 1
    after: int = 0
    failed: list[SendRequest] = field(default_factory=list)
    _seen: int = 0


class MatrixProxy:
    """A reverse proxy on 127.0.0.1 in front of `upstream` (the test Synapse). `sends` records every
    send request that came through, in order."""

    def __init__(self, upstream: str) -> None:
        self.upstream = URL(upstream)
        self.url = ""
        self.sends: list[SendRequest] = []
        self._rules: list[Hold | Failure] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No total timeout: a long-poll /sync takes as long as the bot asked for.
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        for rule in self._rules:
            if isinstance(rule, Hold):
                rule.drop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def hold_sends(
        self, mode: HoldMode, *, event_type: str | None = None, count: int = 1, after: int = 0
    ) -> Hold:
        """Hold `count` sends (of `event_type`, any when None) after letting `after` of them pass."""
        hold = Hold(mode, event_type, count, after)
        self._rules.append(hold)
        return hold

    def fail_sends(
        self,
        status: int,
        *,
        errcode: str = "M_UNKNOWN",
        event_type: str | None = None,
        count: int = 1,
        after: int = 0,
    ) -> Failure:
        """Answer `count` sends with `status`, never forwarding them, after letting `after` pass."""
        failure = Failure(status, errcode, event_type, count, after)
        self._rules.append(failure)
        return failure

    def _rule_for(self, request: SendRequest) -> Hold | Failure | None:
        """The first rule that takes the request; every rule counts it."""
        taken = [rule for rule in self._rules if rule.take(request)]
        return taken[0] if taken else None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        send = _send_request(request, body)
        rule: Hold | Failure | None = None
        if send is not None:
            self.sends.append(send)
            rule = self._rule_for(send)
        if send is not None and isinstance(rule, Failure):
            rule.failed.append(send)
            error = {"errcode": rule.errcode, "error": "injected by the test proxy"}
            return web.json_response(error, status=rule.status)
        if (
            send is not None
            and isinstance(rule, Hold)
            and rule.mode is HoldMode.REQUEST
            and not await rule._hold(send)
        ):
            return web.json_response(
                {"errcode": "M_UNKNOWN", "error": "dropped by the test proxy"}, status=502
            )

        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_PASSED_ON}
        target = self.upstream.join(URL(request.raw_path, encoded=True))
        async with self._session.request(
            request.method, target, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            passed_on = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_PASSED_ON}
            if send is not None and isinstance(rule, Hold):
                answer = await upstream.read()
                stored = replace(send, event_id=_event_id(answer))
                if rule.mode is HoldMode.ANSWER:
                    await rule._hold(stored)
                else:
                    await rule._record(rule.answered, stored)
                return web.Response(status=upstream.status, body=answer, headers=passed_on)
            response = web.StreamResponse(status=upstream.status, headers=passed_on)
            await response.prepare(request)
            # The bot may be gone (killed, or its request cancelled) while its answer streams.
            with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response


def _send_request(request: web.Request, body: bytes) -> SendRequest | None:
    if request.method != "PUT":
        return None
    match = _SEND.match(request.raw_path)
    if match is None:
        return None
    return SendRequest(unquote(match["room"]), unquote(match["type"]), unquote(match["txn"]), body)


def _event_id(answer: bytes) -> str | None:
    try:
        value = json.loads(answer).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
