"""The operator's view: /health (liveness), /ready (readiness) and /metrics (Prometheus).

Plain JSON and counters only: no group, member or message is ever named here.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from adapters.web.server import RouteSet
from core.outbox import PostState
from core.ports import Adapter, Store

log = logging.getLogger(__name__)

# From a quick answer of SQLite to a PostgreSQL commit held up by a crowd of votes.
TRANSACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_MAX_AGE = 10.0  # seconds of wall-clock time since the last good tick before /ready says no
DATABASE_TIMEOUT = 2.0  # seconds /ready waits for the database


class PrometheusMetrics:
    """The core's `Metrics` as Prometheus collectors in one registry: one per bot, never the global
    default, so that several bots in one process (tests) count apart."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._commands = Counter(
            "peerbot_commands", "Commands run, by command and outcome.", ["command", "outcome"], registry=r
        )
        self._votes = Counter("peerbot_votes_applied", "Vote changes made durable.", registry=r)
        self._replays = Counter(
            "peerbot_events_deduplicated", "Inbound events skipped as applied before (replays).", registry=r
        )
        self._nudges = Counter(
            "peerbot_nudges", "Scheduled nudges delivered, skipped and coalesced.", ["outcome"], registry=r
        )
        self._outbox = Counter(
            "peerbot_outbox_posts",
            "Outbox rows sent, failed, dropped, or retried later.",
            ["outcome"],
            registry=r,
        )
        self.outbox_rows = Gauge(
            "peerbot_outbox_rows",
            "Outbox rows by state at the scrape (pending: the depth).",
            ["state"],
            registry=r,
        )
        self._tick_lag = Gauge("peerbot_tick_lag_seconds", "How late the last tick started.", registry=r)
        self._reconnects = Counter(
            "peerbot_adapter_reconnects",
            "Connections to a platform made again after a loss.",
            ["platform"],
            registry=r,
        )
        self._waits = Counter(
            "peerbot_rate_limit_waits",
            "Requests held back for a platform's rate limit.",
            ["platform"],
            registry=r,
        )
        self._waited = Counter(
            "peerbot_rate_limit_wait_seconds",
            "Time requests were held back for rate limits.",
            ["platform"],
            registry=r,
        )
        self._transactions = Histogram(
            "peerbot_db_transaction_seconds",
            "Database transactions, from their start (waiting for SQLite's one writer included) to the end.",
            buckets=TRANSACTION_BUCKETS,
            registry=r,
        )
        for outcome in ("delivered", "skipped", "coalesced"):
            self._nudges.labels(outcome)
        for outcome in ("sent", "failed", "dropped", "retried"):
            self._outbox.labels(outcome)
        for state in PostState:
            self.outbox_rows.labels(state.value)

    def command(self, name: str, outcome: str) -> None:
        self._commands.labels(name, outcome).inc()

    def votes_applied(self, count: int) -> None:
        self._votes.inc(count)

    def events_deduplicated(self, count: int) -> None:
        self._replays.inc(count)

    def nudges(self, outcome: str, count: int) -> None:
        self._nudges.labels(outcome).inc(count)

    def outbox(self, outcome: str, count: int) -> None:
        self._outbox.labels(outcome).inc(count)

    def tick_lag(self, seconds: float) -> None:
        self._tick_lag.set(seconds)

    def reconnected(self, platform: str) -> None:
        self._reconnects.labels(platform).inc()

    def rate_limit_wait(self, platform: str, seconds: float) -> None:
        self._waits.labels(platform).inc()
        self._waited.labels(platform).inc(seconds)

    def transaction(self, seconds: float) -> None:
        self._transactions.observe(seconds)


@dataclass
class Readiness:
    """Whether the bot can do its work now: the database answers, every adapter is connected, and the
    tick ran lately. `last_tick` gives when the last good tick ended on the `wall` clock (None: never)."""

    store: Store
    adapters: Sequence[Adapter]
    last_tick: Callable[[], float | None]
    wall: Callable[[], float] = time.monotonic
    max_tick_age: float = TICK_MAX_AGE
    database_timeout: float = DATABASE_TIMEOUT
    _said: tuple[str, ...] = field(default=(), init=False)

    async def problems(self) -> list[str]:
        """Why the bot is not ready, one short reason each; empty when it is."""
        reasons = []
        try:
            async with asyncio.timeout(self.database_timeout), self.store.read() as tx:
                await tx.outbox.counts()
        except Exception as error:  # the error's text may quote SQL: its kind is enough here
            reasons.append(f"database: does not answer ({type(error).__name__})")
        for adapter in self.adapters:
            if not adapter.connected:
                reasons.append(f"{adapter.chat.platform}: not connected")
        last = self.last_tick()
        if last is None:
            reasons.append("tick: has not run yet")
        elif (age := self.wall() - last) > self.max_tick_age:
            reasons.append(f"tick: last ran {age:.0f} s ago")
        if tuple(reasons) != self._said:  # said once when it changes, not at every probe
            self._said = tuple(reasons)
            if reasons:
                log.warning("not ready: %s", "; ".join(reasons))
            else:
                log.info("ready")
        return reasons


@dataclass
class Operations:
    """What the operator's endpoints ask of the running bot."""

    readiness: Readiness
    metrics: PrometheusMetrics
    metrics_token: str | None = None
    # Outbox rows by state, read at each scrape (the depth is a fact of the database, not the process).
    outbox_counts: Callable[[], Awaitable[dict[PostState, int]]] | None = None


def operations_routes(ops: Operations) -> RouteSet:
    """/health, /ready and /metrics, as a route set for `WebServer`."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        reasons = await ops.readiness.problems()
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(request: web.Request) -> web.Response:
        if ops.metrics_token is not None and not _bearer_matches(request, ops.metrics_token):
            return web.json_response(
                {"error": "a bearer token is needed: Authorization: Bearer <web.metrics_token>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="peerbot metrics"'},
            )
        if ops.outbox_counts is not None:
            try:
                counts = await asyncio.wait_for(ops.outbox_counts(), DATABASE_TIMEOUT)
            except Exception as error:  # the other metrics are still worth serving
                log.warning("metrics: cannot count the outbox (%s)", type(error).__name__)
            else:
                for state in PostState:
                    ops.metrics.outbox_rows.labels(state.value).set(counts.get(state, 0))
        body = generate_latest(ops.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def add(app: web.Application) -> None:
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        app.router.add_get("/metrics", metrics)

    return add


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
