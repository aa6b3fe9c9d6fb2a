"""The composition root: the one place that knows every concrete class and wires them together."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from adapters.console.adapter import ConsoleChat, ConsoleSession
from adapters.discord.adapter import DiscordAdapter, DiscordSettings, LoginRejected
from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.config import Config, DiscordConfig
from bot.scheduler import Ticker
from core.clock import SystemClock, utc
from core.engine import Engine
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


def goal_rules(config: Config) -> GoalRules:
    return GoalRules(config.goals.quorum, config.goals.decision_window)


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


async def run_console(config: Config, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
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
        engine = Engine(store, clock, [chat], goal_rules=goal_rules(config))
        session = ConsoleSession(chat, engine.handle, clock)
        session.on_advance = engine.tick
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
        engine = Engine(store, make_clock(), goal_rules=goal_rules(config))
        discord = DiscordAdapter(discord_settings(config.discord), engine, store) if config.discord else None
        try:
            if discord is not None:
                await discord.start()
        except LoginRejected as error:
            print(f"peerbot: {error}", file=sys.stderr)
            return 1
        await engine.tick()  # polls that closed while the bot was down
        ticker = Ticker(engine)
        ticker.start()
        try:
            if discord is not None:
                await discord.serve()
        finally:
            ticker.stop()
            if discord is not None:
                await discord.close()
            await engine.drain()
    finally:
        await store.close()
    return 0
