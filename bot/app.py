"""The composition root: the one place that knows every concrete class and wires them together."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from adapters.console.adapter import ConsoleChat, ConsoleSession
from adapters.matrix.adapter import LoginFailed, MatrixAdapter, MatrixSettings
from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.config import Config, MatrixConfig
from core.clock import SystemClock, utc
from core.engine import Engine

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
        engine = Engine(store, clock, [chat])
        session = ConsoleSession(chat, engine.handle, clock)
        await session.run(stdin, interactive=stdin.isatty())
    finally:
        await store.close()
    return 0


async def run(config: Config) -> int:
    """Run every configured adapter; with no chat platform configured, the console."""
    if not config.platforms():
        return await run_console(config)
    store = await open_store(config)
    try:
        engine = Engine(store, make_clock())
        adapters = []
        if config.matrix is not None:
            adapters.append(run_matrix(config.matrix, store, engine))
        await asyncio.gather(*adapters)
    except LoginFailed as error:
        log.error("matrix: %s", error)
        return 1
    finally:
        await store.close()
    return 0


def matrix_settings(config: MatrixConfig) -> MatrixSettings:
    return MatrixSettings(
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


async def run_matrix(config: MatrixConfig, store: SqlStore, engine: Engine) -> None:
    adapter = MatrixAdapter(matrix_settings(config), store, engine)
    engine.attach(adapter.chat)
    try:
        await adapter.run()
    finally:
        await adapter.close()
