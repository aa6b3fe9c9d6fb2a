"""The composition root: the one place that knows every concrete class and wires them together."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from adapters.console.adapter import ConsoleChat, ConsoleSession
from adapters.discord.adapter import DiscordAdapter, DiscordSettings, DiscordStartError
from adapters.matrix.adapter import LoginFailed, MatrixAdapter, MatrixSettings
from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.config import Config, DiscordConfig, MatrixConfig
from bot.recurrence import CronRecurrence
from bot.scheduler import Ticker
from core.clock import Clock, SystemClock, utc
from core.engine import Engine
from core.nudging import NudgeSettings
from core.ports import ChatPort, Store
from core.roadmap import GoalRules

log = logging.getLogger(__name__)

FAKE_TIME_ENV = "PEERBOT_FAKE_TIME"


def safe_url(url: str) -> str:
    """The database URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_clock() -> SystemClock:
    """Wall-clock time, or a fixed start from PEERBOT_FAKE_TIME for reproducible scripted sessions."""
    start = os.environ.get(FAKE_TIME_ENV)
    if not start:
        return SystemClock()
    return SystemClock(utc(datetime.fromisoformat(start)))


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
    )


async def open_store(config: Config) -> SqlStore:
    """Open the database, refuse one newer than the code, and apply pending migrations."""
    url = config.database.url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
    except BaseException:
        await engine.dispose()
        raise
    log.info("database ready at %s", safe_url(url))
    return SqlStore(engine)


def tolerate_bad_bytes(stdin: TextIO) -> None:
    """Let a line that is not UTF-8 through as lone surrogates, for the console to refuse that line;
    strict decoding would raise UnicodeDecodeError and end the whole session."""
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="surrogateescape")


async def run_console(config: Config, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    tolerate_bad_bytes(stdin)
    store = await open_store(config)
    try:
        clock = make_clock()
        chat = ConsoleChat(
            store,
            stdout,
            facilitators=config.console.facilitators,
            bot_name=config.console.bot_name,
            default_channel=config.console.default_channel,
        )
        engine = build_engine(config, store, clock, [chat])

        async def advance(delta: timedelta) -> None:
            await engine.run_until(clock.now() + delta, clock.move_to)

        session = ConsoleSession(chat, engine.handle, advance)
        await engine.tick()  # polls that closed while the bot was down
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
        try:
            if discord is not None:
                await discord.start()
        except DiscordStartError as error:
            print(f"peerbot: {error}", file=sys.stderr)
            return 1
        ticker = Ticker(engine)
        serving: list[asyncio.Task[None]] = []
        try:
            if matrix is not None:
                await matrix.login()
            await engine.tick()  # polls that closed while the bot was down
            ticker.start()
            if discord is not None:
                serving.append(asyncio.create_task(discord.serve()))
            if matrix is not None:
                serving.append(asyncio.create_task(matrix.sync_forever()))
            await asyncio.gather(*serving)
        except LoginFailed as error:  # at start, or the homeserver stopped accepting the login
            print(f"peerbot: {error}", file=sys.stderr)
            return 1
        finally:
            for task in serving:  # when one adapter fails, the others stop too
                task.cancel()
            ticker.stop()
            if discord is not None:
                await discord.close()
            if matrix is not None:
                await matrix.close()
            await engine.drain()
    finally:
        await store.close()
    return 0


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
