"""Test support for the web server: a bot wired as `peerbot run` wires it, served over real HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from adapters.web.operations import PrometheusMetrics
from adapters.web.server import WebServer
from bot import app
from bot.config import parse_config
from core.clock import SystemClock

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Served:
    """A bot started in this process with its web server, and an HTTP client for it."""

    bot: app.Bot
    store: SqlStore
    server: WebServer
    http: aiohttp.ClientSession

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with self.http.get(self.server.url + path, headers=headers) as response:
            return response.status, await response.text()

    async def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = await self.get("/ready")
        return status, json.loads(body)

    async def until_ready_is(self, status: int, within: float = 30.0) -> dict[str, Any]:
        """Ask /ready until it answers `status` (the bot's state changes in the background)."""
        deadline = time.monotonic() + within
        while True:
            got, body = await self.ready()
            if got == status:
                return body
            assert time.monotonic() < deadline, f"/ready still says {got} {body}"
            await asyncio.sleep(0.1)

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200, text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@asynccontextmanager
async def served(
    db_url: str, *, script: str = "", token: str | None = None, **platforms: Any
) -> AsyncIterator[Served]:
    """The bot as `peerbot run` wires it (`bootstrap`, `web_server`), with the console fed `script` unless
    a platform's settings are given, started and ticking every second; the web server on a free port."""
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    raw = {"console": {"facilitators": ["alice"]}, "web": {"port": 0, "metrics_token": token}}
    config = parse_config(raw, env={})
    assert config.web is not None
    metrics = PrometheusMetrics()
    if not platforms:
        platforms["console"] = app.console_settings(config, io.StringIO(script), io.StringIO())
    bot = app.bootstrap(config, store, SystemClock(), metrics=metrics, **platforms)
    server = app.web_server(config.web, bot, bot.engine.store, metrics)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await bot.start()
            try:
                yield Served(bot, store, server, http)
            finally:
                await bot.stop()
    finally:
        await server.close()
        await store.close()


def sample(metrics: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there)."""
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)
