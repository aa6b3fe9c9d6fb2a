"""The composition root: the one place that knows every concrete class and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

import yaml
from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.console.adapter import ConsoleAdapter, ConsoleSettings
from adapters.discord.adapter import DiscordAdapter, DiscordSettings, alone
from adapters.matrix.adapter import AppserviceSettings, MatrixAdapter, MatrixSettings
from adapters.matrix.appservice import AppserviceAdapter
from adapters.matrix.registration import Registration, read_registration
from adapters.sql import migrate
from adapters.sql.database_lock import one_at_a_time
from adapters.sql.instance import unique_instance
from adapters.sql.process_lock import LockTaken
from adapters.sql.schema import adapter_state
from adapters.sql.store import SqlStore, make_engine
from adapters.web.dashboard import dashboard_routes
from adapters.web.operations import Operations, PrometheusMetrics, Readiness, operations_routes
from adapters.web.server import RouteSet, WebServer, WebUnavailable
from bot.config import Config, ConfigError, DiscordConfig, MatrixConfig, WebConfig
from bot.recurrence import CronRecurrence
from bot.scheduler import Ticker
from core import faults
from core.clock import Clock, SystemClock, utc
from core.dashboard import DashboardSettings, prepare_secret
from core.engine import Engine
from core.meeting_service import MeetingSettings
from core.metrics import NO_METRICS, Metrics, TimedStore
from core.nudging import NudgeSettings
from core.outbox import PostState
from core.ports import Adapter, AdapterFailed, ChatPort, EventSink, Store
from core.roadmap import GoalRules

log = logging.getLogger(__name__)

FAKE_TIME_ENV = "PEERBOT_FAKE_TIME"
# Names this bot instance for outbox leases (default: the host name). A process whose name another live
# process on the database holds takes the next free one (`name-2`, ...: adapters/sql/instance.py).
INSTANCE_ENV = "PEERBOT_INSTANCE"
CRASH_ENV = "PEERBOT_CRASH_AT"  # tests only: "<point>[:<n>]" kills the process the n-th time it passes


def say_error(text: str) -> None:
    """One line for the operator on stderr, written at once: a log record another thread writes meanwhile
    (aiosqlite's, at DEBUG) can come before or after it, never inside it."""
    sys.stderr.write(f"peerbot: {text}\n")
    sys.stderr.flush()


def say(text: str) -> None:
    """A notice for the operator (where the web server is), as `say_error` writes it: stdout is the
    console's transcript."""
    say_error(text)


def install_crash_point() -> None:
    """For crash tests: SIGKILL this process at a named point (core/faults.py), the n-th time there."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    remaining = [int(nth or 1)]

    def hook(reached: str) -> None:
        if reached == point:
            remaining[0] -= 1
            if remaining[0] == 0:
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    faults.install(hook)


def safe_url(url: str) -> str:
    """The database URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def fake_start(env: Mapping[str, str] | None = None) -> datetime | None:
    """The start time from PEERBOT_FAKE_TIME, if set; ConfigError when it is not an ISO 8601 time."""
    text = (os.environ if env is None else env).get(FAKE_TIME_ENV)
    if not text:
        return None
    try:
        return utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ConfigError(
            f"{FAKE_TIME_ENV}: expected an ISO 8601 time like 2026-03-02T09:00:00+00:00, not {text[:40]!r}"
        ) from None


def make_clock() -> SystemClock:
    """Wall-clock time, or a fixed start from PEERBOT_FAKE_TIME for reproducible scripted sessions."""
    start = fake_start()
    return SystemClock(start) if start is not None else SystemClock()


def instance_name(discord: DiscordConfig | None = None) -> str:
    """This bot instance's name for outbox leases: PEERBOT_INSTANCE, else the host name, with the
    Discord shards the process runs when it runs some of them: processes on one host splitting the
    shards are then different instances, and never take each other's rows for their own."""
    named = os.environ.get(INSTANCE_ENV)
    if named:
        return named
    if discord is not None and discord.shard_ids is not None:
        shards = ",".join(str(i) for i in discord.shard_ids)
        return f"{socket.gethostname()}/shards {shards} of {discord.shard_count}"
    return socket.gethostname()


# The collector's youngest generation is collected every 10,000 allocations, not every 700: with 50,000
# posts prepared and held, a third of sending them went to collections that found nothing to free
# (docs/decisions.md).
GC_THRESHOLDS = (10_000, 10, 10)


def started_up() -> None:
    """The collector's settings for a running bot, once it has started (`GC_THRESHOLDS`). What
    start-up made (modules, the clients, SQLAlchemy's caches) lives as long as the process: it is kept
    out of the collector's full passes, which otherwise stop a command now and then for 30-50 ms (the
    tail of `pending`'s latency in docs/benchmarks.md)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()


def build_engine(
    config: Config,
    store: Store,
    clock: Clock,
    chats: Sequence[ChatPort] = (),
    instance: str | None = None,
    metrics: Metrics = NO_METRICS,
    dashboard: DashboardSettings | None = None,
) -> Engine:
    """The engine with every setting from the config and the real cron maths. Without an instance
    name it makes up one (see `Engine`)."""
    n = config.nudges
    return Engine(
        store,
        clock,
        chats,
        goal_rules=GoalRules(config.goals.quorum, config.goals.decision_window),
        recurrence=CronRecurrence(),
        nudges=NudgeSettings(n.grace, n.checkin, n.digest, n.heartbeat_days),
        review_time=config.reviews.duration,
        outbox_max_age=config.outbox.max_age,
        instance=instance,
        retention=config.events.retention,
        metrics=metrics,
        dashboard=dashboard,
        meetings=MeetingSettings(config.meetings.announce_before),
    )


class MovableClock(Clock, Protocol):
    """A clock the console's `:advance` can move forward: the system clock, or a test's fake."""

    def advance(self, delta: timedelta) -> None: ...


A = TypeVar("A")
TICK_SECONDS = 1.0


class Bot:
    """What `bootstrap` builds: the engine, the adapters that feed it, and the ticker that drives time."""

    def __init__(
        self,
        engine: Engine,
        sink: EventSink,
        adapters: Sequence[Adapter],
        tick_every: float | None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.engine = engine
        self.sink = sink  # what the adapters were given: the engine, or a test's recorder around it
        self.adapters = tuple(adapters)
        self.ticker = Ticker(engine, tick_every, metrics) if tick_every is not None else None

    def adapter(self, kind: type[A]) -> A:
        """The adapter of a kind, for tools and tests that use its own methods."""
        for adapter in self.adapters:
            if isinstance(adapter, kind):
                return adapter
        raise LookupError(f"this bot runs no {kind.__name__}")

    async def run(self, keep_serving: bool = False) -> None:
        """Start, serve until the first adapter stops, and stop: on every way out, a failed start
        included, every adapter is closed and the engine drained. `keep_serving`: after the adapters
        stop on their own (the console's input ended), go on ticking (and the web server serving)
        until cancelled (SIGTERM, Ctrl-C)."""
        try:
            await self.start()
            await self.serve()
            if keep_serving:
                await asyncio.Event().wait()
        finally:
            await self.stop()

    async def start(self) -> None:
        """Start every adapter (`AdapterFailed` for what the operator must fix), then do what came due
        while the bot was down (polls that closed, posts left unsent), then tick on."""
        for adapter in self.adapters:
            await adapter.start()
        await self.engine.tick()
        if self.ticker is not None:
            self.ticker.last_ok = self.ticker.wall()  # the tick just made
            self.ticker.start()

    async def serve(self) -> None:
        """Serve every adapter at once until one stops: then the others are stopped too, and its
        failure, if it failed, is raised."""
        serving = [asyncio.create_task(adapter.serve()) for adapter in self.adapters]
        if not serving:
            return
        try:
            done, _ = await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)
        for task in done:
            task.result()

    async def stop(self) -> None:
        """Stop ticking; send the outbox while the adapters can still post; close every adapter; then
        finish pending work (the votes they apply as they close).

        A row whose request the stop cut off is sent again now, with its key, and not at a start the
        platform may no longer know the key by.
        """
        if self.ticker is not None:
            self.ticker.stop()
        await self.engine.settle()
        for adapter in self.adapters:
            await adapter.close()
        await self.engine.drain()


def bootstrap(
    config: Config,
    store: Store,
    clock: MovableClock,
    *,
    discord: DiscordSettings | None = None,
    matrix: MatrixSettings | None = None,
    console: ConsoleSettings | None = None,
    instance: str | None = None,
    sink: Callable[[Engine], EventSink] | None = None,
    tick_every: float | None = TICK_SECONDS,
    metrics: Metrics | None = None,
    dashboard: DashboardSettings | None = None,
) -> Bot:
    """The bot: the engine from the config, and an adapter for each platform given settings.

    `peerbot run`, `peerbot console` and the tests build it here. Tests pass `sink` to wrap the engine
    in a recorder before the adapters are given it, and `tick_every=None` to tick by hand. With
    `metrics`, everything reports to it, and every transaction is timed.
    """
    database = store  # before timing wraps it: the SQL store's engine holds the database locks
    if metrics is not None:
        store = TimedStore(store, metrics)
    counted = metrics if metrics is not None else NO_METRICS
    engine = build_engine(config, store, clock, instance=instance, metrics=counted, dashboard=dashboard)
    fed = sink(engine) if sink is not None else engine
    adapters: list[Adapter] = []
    if discord is not None:
        locks = partial(one_at_a_time, database.engine) if isinstance(database, SqlStore) else alone
        adapters.append(DiscordAdapter(discord, store, fed, counted, one_at_a_time=locks))
    if matrix is not None:
        kind = AppserviceAdapter if matrix.appservice is not None else MatrixAdapter
        adapters.append(kind(matrix, store, fed, metrics=counted))
    if console is not None:

        def move_to(when: datetime) -> None:
            clock.advance(max(when - clock.now(), timedelta()))

        async def advance(delta: timedelta) -> None:
            await engine.run_until(clock.now() + delta, move_to)

        adapters.append(ConsoleAdapter(console, store, fed, advance, engine.settle))
    for adapter in adapters:
        engine.attach(adapter.chat)
    return Bot(engine, fed, adapters, tick_every, counted)


def web_secret() -> bytes | None:
    """The operator's secret for links to groups' pages (`PEERBOT_WEB_SECRET`); None: the database's."""
    return os.environ.get("PEERBOT_WEB_SECRET", "").encode() or None


def web_server(
    config: WebConfig, bot: Bot, store: Store, metrics: PrometheusMetrics, more: Sequence[RouteSet] = ()
) -> WebServer:
    """The web server with the operator's view (/health, /ready, /metrics) and `more` route sets."""
    ticker = bot.ticker
    readiness = Readiness(store, bot.adapters, lambda: ticker.last_ok if ticker is not None else None)

    async def outbox_counts() -> dict[PostState, int]:
        async with store.read() as tx:
            return await tx.outbox.counts()

    token = config.metrics_token.get_secret_value() if config.metrics_token is not None else None
    operations = Operations(readiness, metrics, token, outbox_counts)
    clock, secret = bot.engine.clock, web_secret()

    def pages(app: web.Application) -> None:
        dashboard_routes(app, store, clock, secret)

    routes: list[RouteSet] = [operations_routes(operations), pages, *more]
    return WebServer(config.host, config.port, routes, public_url=config.public_url)


class StartFailed(Exception):
    """Peerbot cannot start: one line naming the resource or key, and what is expected."""


# PostgreSQL error codes met at start, and what the operator can do about each.
_LOGIN_REFUSED = "PostgreSQL at {server} refused the login ({detail}); fix the user or password in the URL"
_READ_ONLY = "the database at {server} cannot be written ({detail}); Peerbot needs a role that may write"
_POSTGRES_AT_START = {
    "3D000": "{detail} on {server}; create it (createdb) or point the URL at another database",
    "28000": _LOGIN_REFUSED,
    "28P01": _LOGIN_REFUSED,
    "25006": _READ_ONLY,
    "42501": _READ_ONLY,
}


async def open_store(config: Config, hold: str | None = None) -> SqlStore:
    """Open the database, refuse one newer than the code, apply pending migrations, and make sure it
    can be written: a read-only database would let the bot start and then fail every command.

    `hold`: the name of a lock on the database this process keeps until the store closes ("console":
    one console per database); when another process holds it, StartFailed."""
    install_crash_point()
    url = config.database.url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        directory = Path(parsed.database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StartFailed(
                f"database.url: cannot create the directory {directory} for the SQLite file"
                f" ({error.strerror or error})"
            ) from None
    engine = make_engine(url)
    store = SqlStore(engine)
    try:
        # Processes started together on an empty database: one migrates, the others then find it done.
        async with one_at_a_time(engine, "migrate"):
            before, after = await migrate.upgrade(engine)
        if before != after:
            log.info("database migrated from revision %s to %s", before or "(empty)", after)
        await _check_writable(engine)
        if hold is not None:
            await store.hold(hold)
    except BaseException as error:
        await store.close()
        # A SQLite connection that failed half-way (in its PRAGMAs) is left to the garbage collector;
        # collected after asyncio.run, its worker thread reports to a closed loop ("Event loop is
        # closed" on stderr). Collect it now, while the loop still runs, and let its thread finish.
        gc.collect()
        await asyncio.sleep(0)
        if isinstance(error, LockTaken):
            raise StartFailed(
                f"another {hold} is using the database at {safe_url(url)}; stop it first, or point"
                " database.url at another database"
            ) from None
        if isinstance(error, OSError | DBAPIError):
            raise StartFailed(database_problem(url, error)) from None
        raise
    log.info("database ready at %s", safe_url(url))
    return store


async def _check_writable(engine: AsyncEngine) -> None:
    """Write a row and take it back: fails now, with a clear line, if the database is read-only."""
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(adapter_state.insert().values(key=f"peerbot.write-check.{uuid.uuid4()}", value=""))
        await conn.rollback()


def database_problem(url: str, error: OSError | DBAPIError) -> str:
    """One line on why the database cannot be used, naming it (password hidden) and what to do."""
    parsed = make_url(url)
    where = safe_url(url)
    if isinstance(error, OSError):
        return f"cannot reach the database at {where}: {error.strerror or error}"
    cause = error.orig
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        code = getattr(cause, "sqlite_errorname", "")
        if code == "SQLITE_NOTADB":
            return f"database.url: {path} is not a SQLite database file; point database.url at another path"
        if code == "SQLITE_READONLY" or "readonly" in detail:
            return (
                f"database.url: the SQLite file {path} is read-only; Peerbot needs to write the file and"
                " its directory"
            )
        if code == "SQLITE_CANTOPEN":
            return (
                f"database.url: cannot open the SQLite file {path} ({detail}); the file and its directory"
                " must be readable and writable"
            )
        return f"database.url: the SQLite file {path} cannot be used: {detail}"
    template = _POSTGRES_AT_START.get(getattr(cause, "sqlstate", None) or "")
    if template is not None:
        server = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return "database.url: " + template.format(server=server, detail=detail)
    return f"database error at {where}: {detail}"


async def run(
    config: Config, *, console: bool = False, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> int:
    """Run every configured adapter; the console when asked for, or when no chat platform is configured.

    An adapter's failure the operator must fix (a refused login) is one line on stderr and exit code 1.
    """
    as_console = console or not config.platforms()
    # One console per database: two would share message ids and print each other's answers.
    store = await open_store(config, hold="console" if as_console else None)
    server: WebServer | None = None
    try:
        # Processes of one host share its name: each takes a name of its own for its outbox leases.
        clock, instance = make_clock(), await unique_instance(store, instance_name(config.discord))
        metrics = PrometheusMetrics() if config.web is not None else None
        # The group's pages are reached where the server answers: known once it has bound its port.
        pages = (
            DashboardSettings(lambda: server.url if server is not None else "", web_secret())
            if config.web is not None
            else None
        )
        if pages is not None:
            await prepare_secret(store, pages.secret)
        if as_console:
            terminal = console_settings(config, stdin, stdout)
            bot = bootstrap(
                config, store, clock, console=terminal, instance=instance, metrics=metrics, dashboard=pages
            )
        else:
            discord = discord_settings(config.discord) if config.discord else None
            matrix = matrix_settings(config.matrix) if config.matrix else None
            bot = bootstrap(
                config,
                store,
                clock,
                discord=discord,
                matrix=matrix,
                instance=instance,
                metrics=metrics,
                dashboard=pages,
            )
        if config.web is not None and metrics is not None:
            server = web_server(config.web, bot, bot.engine.store, metrics)
            try:
                await server.start()
            except WebUnavailable as error:
                raise StartFailed(str(error)) from None
            notice = (
                f"web server at {server.url} (/health, /ready, /metrics; groups' pages by /dashboard links)"
            )
            if config.logging.format == "json":  # stderr is one JSON object per line: a log record, then
                log.info(notice)
            else:
                say(notice)
        started_up()
        try:
            with stopped_by_sigterm() as terminated:
                # `peerbot run` with the web server on serves on after the console's input ends.
                await bot.run(keep_serving=server is not None and not console)
        except AdapterFailed as error:
            say_error(str(error))
            return 1
        except asyncio.CancelledError:
            if not terminated:
                raise
            log.info("stopped by SIGTERM")
    finally:
        if server is not None:
            await server.close()
        await store.close()
    return 0


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[list[bool]]:
    """SIGTERM (`docker stop`, systemd) stops the bot as Ctrl-C does: the running task is cancelled, so
    the outbox is sent and every adapter closed before the process exits with 0. The list says whether
    it came."""
    came: list[bool] = []
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def terminate() -> None:
        came.append(True)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError):  # not on this platform, or not the main thread
        yield came
        return
    try:
        yield came
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def console_settings(config: Config, stdin: TextIO, stdout: TextIO) -> ConsoleSettings:
    return ConsoleSettings(
        stdin,
        stdout,
        facilitators=tuple(config.console.facilitators),
        bot_name=config.console.bot_name,
        default_channel=config.console.default_channel,
        export_dir=config.export_dir(),
    )


def discord_settings(config: DiscordConfig) -> DiscordSettings:
    return DiscordSettings(
        token=config.token.get_secret_value(),
        guild_ids=tuple(config.guild_ids),
        facilitator_role=config.facilitator_role,
        shard_count=config.shard_count,
        shard_ids=tuple(config.shard_ids) if config.shard_ids is not None else None,
        api_base_url=config.api_base_url,
        gateway_url=config.gateway_url,
        server_joins=config.server_joins,
    )


UNPACED = 1000.0  # sends per second: in appservice mode the homeserver does not limit the bot


def matrix_settings(config: MatrixConfig) -> MatrixSettings:
    """The adapter's settings; in appservice mode with the registration file read (`StartFailed` when
    it cannot be)."""
    appservice = None
    if config.mode == "appservice":
        assert config.registration is not None  # the config requires it in this mode
        registration = load_registration(config.registration, config.user_id)
        appservice = AppserviceSettings(registration, config.appservice.host, config.appservice.port)
    paced = config.send_per_second or (UNPACED if appservice is not None else 0.2)
    return MatrixSettings(
        homeserver=config.homeserver,
        user_id=config.user_id,
        access_token=config.access_token.get_secret_value() if config.access_token else None,
        password=config.password.get_secret_value() if config.password else None,
        device_name=config.device_name,
        command_prefix=config.command_prefix,
        allowed_inviters=tuple(config.allowed_inviters),
        facilitator_power_level=config.facilitator_power_level,
        send_per_second=paced,
        send_burst=config.send_burst if appservice is None or config.send_per_second else int(UNPACED),
        appservice=appservice,
    )


def load_registration(path: Path, user_id: str) -> Registration:
    """The appservice registration file, checked; `StartFailed` naming the file and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StartFailed(
            f"matrix.registration: cannot read {path} ({error.strerror or error});"
            " write it with peerbot matrix-registration"
        ) from None
    except UnicodeDecodeError:
        raise StartFailed(f"matrix.registration: {path} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raise StartFailed(f"matrix.registration: {path} is not valid YAML") from None
    try:
        return read_registration(raw, user_id)
    except ValueError as error:
        raise StartFailed(f"matrix.registration: {path}: {error}") from None
