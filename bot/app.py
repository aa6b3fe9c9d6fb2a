"""The composition root: the one place that knows every concrete class and wires them together."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import aiohttp
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.console.adapter import ConsoleChat, ConsoleSession
from adapters.discord.adapter import DiscordAdapter, DiscordSettings, DiscordStartError
from adapters.matrix.adapter import LoginFailed, MatrixAdapter, MatrixSettings
from adapters.sql import migrate
from adapters.sql.process_lock import LockTaken
from adapters.sql.schema import adapter_state
from adapters.sql.store import SqlStore, make_engine
from bot.config import Config, ConfigError, DiscordConfig, MatrixConfig
from bot.recurrence import CronRecurrence
from bot.scheduler import Ticker
from core import faults
from core.clock import Clock, SystemClock, utc
from core.engine import Engine
from core.nudging import NudgeSettings
from core.ports import ChatPort, Store
from core.roadmap import GoalRules

log = logging.getLogger(__name__)

FAKE_TIME_ENV = "PEERBOT_FAKE_TIME"
# Names this bot instance for outbox leases (default: the host name). Processes on one host that serve
# the same platforms from one database need different names.
INSTANCE_ENV = "PEERBOT_INSTANCE"
CRASH_ENV = "PEERBOT_CRASH_AT"  # tests only: "<point>[:<n>]" kills the process the n-th time it passes


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


def build_engine(config: Config, store: Store, clock: Clock, chats: Sequence[ChatPort]) -> Engine:
    """The engine with every setting from the config and the real cron maths."""
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
        instance=os.environ.get(INSTANCE_ENV) or socket.gethostname(),
        retention=config.events.retention,
    )


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
        await migrate.upgrade(engine)
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


def tolerate_bad_bytes(stdin: TextIO) -> None:
    """Let a line that is not UTF-8 through as lone surrogates, for the console to refuse that line;
    strict decoding would raise UnicodeDecodeError and end the whole session."""
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="surrogateescape")


async def run_console(config: Config, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    tolerate_bad_bytes(stdin)
    # One console per database: two would share message ids and print each other's answers.
    store = await open_store(config, hold="console")
    try:
        clock = make_clock()
        chat = ConsoleChat(
            store,
            stdout,
            facilitators=config.console.facilitators,
            bot_name=config.console.bot_name,
            default_channel=config.console.default_channel,
            export_dir=config.export_dir(),
        )
        engine = build_engine(config, store, clock, [chat])

        async def advance(delta: timedelta) -> None:
            await engine.run_until(clock.now() + delta, clock.move_to)

        session = ConsoleSession(chat, engine.handle, advance, engine.settle, polls_near=engine.polls_near)
        await engine.tick()  # polls that closed while the bot was down, posts left unsent
        ticker = Ticker(engine)
        ticker.start()
        try:
            await session.run(stdin, interactive=stdin.isatty())
            await engine.drain()
        finally:
            ticker.stop()
    finally:
        await store.close()
    return 0


def discord_settings(config: DiscordConfig) -> DiscordSettings:
    return DiscordSettings(
        token=config.token.get_secret_value(),
        guild_ids=tuple(config.guild_ids),
        facilitator_role=config.facilitator_role,
        shard_count=config.shard_count,
        shard_ids=tuple(config.shard_ids) if config.shard_ids is not None else None,
        api_base_url=config.api_base_url,
        gateway_url=config.gateway_url,
    )


async def run(config: Config) -> int:
    """Run every configured adapter; with no chat platform configured, the console."""
    if not config.platforms():
        return await run_console(config)
    store = await open_store(config)
    try:
        engine = build_engine(config, store, make_clock(), [])
        discord = DiscordAdapter(discord_settings(config.discord), engine, store) if config.discord else None
        matrix = matrix_adapter(config.matrix, store, engine) if config.matrix else None
        ticker = Ticker(engine)
        serving: list[asyncio.Task[None]] = []
        try:
            if discord is not None:
                await _reaching("Discord", discord_api(config), discord.start())
            if matrix is not None:
                assert config.matrix is not None
                await _reaching("the Matrix homeserver", config.matrix.homeserver, matrix.login())
            await engine.tick()  # polls that closed while the bot was down
            ticker.start()
            if discord is not None:
                serving.append(asyncio.create_task(discord.serve()))
            if matrix is not None:
                serving.append(asyncio.create_task(matrix.sync_forever()))
            await asyncio.gather(*serving)
        except (DiscordStartError, LoginFailed) as error:  # LoginFailed: at start, or later
            print(f"peerbot: {error}", file=sys.stderr)
            return 1
        finally:
            for task in serving:  # when one adapter fails, the others stop too
                task.cancel()
            ticker.stop()
            # The outbox goes out while the adapters can still post: a row whose request the stop cut
            # off is sent again now, with its key, and not at a start the platform may no longer know
            # the key by. (The drain after closing them is for the votes they apply as they close.)
            await engine.settle()
            # Closed on every way out, a failed start included: no "Unclosed client session" after.
            if discord is not None:
                await discord.close()
            if matrix is not None:
                await matrix.close()
            await engine.drain()
    finally:
        await store.close()
    return 0


def discord_api(config: Config) -> str:
    assert config.discord is not None
    return config.discord.api_base_url or "https://discord.com/api"


async def _reaching(what: str, where: str, starting: Awaitable[None]) -> None:
    """Start an adapter; a network failure becomes one line naming the service, not the database."""
    try:
        await starting
    except (OSError, aiohttp.ClientError) as error:
        reason = str(error) or type(error).__name__
        raise StartFailed(f"cannot reach {what} at {where}: {reason}") from None


def matrix_adapter(config: MatrixConfig, store: SqlStore, engine: Engine) -> MatrixAdapter:
    settings = MatrixSettings(
        homeserver=config.homeserver,
        user_id=config.user_id,
        access_token=config.access_token.get_secret_value() if config.access_token else None,
        password=config.password.get_secret_value() if config.password else None,
        device_name=config.device_name,
        command_prefix=config.command_prefix,
        allowed_inviters=tuple(config.allowed_inviters),
        facilitator_power_level=config.facilitator_power_level,
        send_per_second=config.send_per_second,
        send_burst=config.send_burst,
    )
    adapter = MatrixAdapter(settings, store, engine)
    engine.attach(adapter.chat)
    return adapter
