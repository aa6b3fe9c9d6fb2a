"""One bootstrap builds every bot, and every adapter offers the same start, serve and close.

mypy checks the same protocol statically where bot/app.py hands the concrete adapters to `Bot`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import io
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.console.adapter import ConsoleAdapter, ConsoleSettings
from adapters.discord.adapter import DiscordAdapter, DiscordSettings
from adapters.matrix.adapter import MatrixAdapter, MatrixSettings
from bot import app
from bot.app import Bot, bootstrap
from bot.config import parse_config
from bot.recurrence import CronRecurrence
from core.engine import Engine
from core.events import CommandInvoked, InboundEvent, Reply
from core.ports import Adapter, AdapterFailed
from tests.support import START, FakeChat, FakeClock, MemoryStore, SinkProxy

ADAPTER_CLASSES = (DiscordAdapter, MatrixAdapter, ConsoleAdapter)


class Recorder(SinkProxy):
    """The engine as the adapters see it, remembering each event it was handed."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.received: list[InboundEvent] = []

    async def handle(self, event: InboundEvent) -> Reply | None:
        self.received.append(event)
        return await super().handle(event)


@pytest.mark.parametrize("kind", ADAPTER_CLASSES, ids=lambda k: k.__name__)
def test_every_adapter_class_offers_start_serve_and_close(kind: type) -> None:
    for name in ("start", "serve", "close"):
        method = getattr(kind, name)
        assert inspect.iscoroutinefunction(method), f"{kind.__name__}.{name} is not async"
        extra = list(inspect.signature(method).parameters.values())[1:]
        assert all(p.default is not inspect.Parameter.empty for p in extra), f"{kind.__name__}.{name}"


async def test_bootstrap_builds_an_adapter_per_platform_each_fed_through_the_sink() -> None:
    bot = bootstrap(
        parse_config({}, env={}),
        MemoryStore(),
        FakeClock(),
        discord=DiscordSettings(token="not-used"),
        matrix=MatrixSettings("https://matrix.example.org", "@peerbot:example.org", access_token="x"),
        console=ConsoleSettings(io.StringIO(), io.StringIO()),
        sink=Recorder,
        tick_every=None,
    )
    try:
        assert [type(a) for a in bot.adapters] == list(ADAPTER_CLASSES)
        assert isinstance(bot.sink, Recorder) and bot.sink.engine is bot.engine
        for adapter in bot.adapters:
            assert isinstance(adapter, Adapter)
            assert bot.engine.chats[adapter.chat.platform] is adapter.chat
        assert bot.adapter(DiscordAdapter).sink is bot.sink
        assert bot.adapter(MatrixAdapter).sink is bot.sink
        assert bot.adapter(ConsoleAdapter).session.handle == bot.sink.handle
    finally:
        await bot.stop()


async def test_the_console_serves_a_script_to_its_end_with_time_moved_by_advance() -> None:
    script = "bob: /goal propose Learn Rust\n:advance 3d\nalice: /goal list\n"
    out = io.StringIO()
    clock = FakeClock()
    console = ConsoleSettings(io.StringIO(script), out, facilitators=("alice",))
    bot = bootstrap(parse_config({}, env={}), MemoryStore(), clock, console=console, sink=Recorder)
    await bot.run()
    printed = out.getvalue()
    assert "peerbot: Poll 1: Goal 1: Learn Rust (proposed by bob)" in printed
    assert "peerbot: Goal 1 lapsed: Learn Rust" in printed
    assert clock.now() == START + timedelta(days=3)
    assert isinstance(bot.sink, Recorder)
    assert [e.text for e in bot.sink.received if isinstance(e, CommandInvoked)] == [
        "goal propose Learn Rust",
        "goal list",
    ]


class ScriptedAdapter:
    """An adapter that writes what it is asked to do into a shared log; a test ends its serving."""

    def __init__(self, name: str, log: list[str], *, refuse_start: bool = False) -> None:
        self.name = name
        self.log = log
        self.refuse_start = refuse_start
        self.chat = FakeChat(platform=name)
        self.serving = asyncio.Event()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        self.log.append(f"{self.name} start")
        if self.refuse_start:
            raise AdapterFailed(f"{self.name} refused the login")

    async def serve(self) -> None:
        self.log.append(f"{self.name} serve")
        self.serving.set()
        try:
            await self.ended
        except asyncio.CancelledError:
            self.log.append(f"{self.name} stopped")
            raise

    async def close(self) -> None:
        self.log.append(f"{self.name} close")


class LoggingEngine(Engine):
    def __init__(self, log: list[str]) -> None:
        super().__init__(MemoryStore(), FakeClock(), recurrence=CronRecurrence())
        self.log = log

    async def tick(self) -> None:
        self.log.append("tick")
        await super().tick()

    async def settle(self) -> None:
        self.log.append("settle")
        await super().settle()

    async def drain(self) -> None:
        self.log.append("drain")
        await super().drain()


async def serving_bot(log: list[str]) -> tuple[Bot, ScriptedAdapter, ScriptedAdapter, asyncio.Task[None]]:
    engine = LoggingEngine(log)
    first, second = ScriptedAdapter("first", log), ScriptedAdapter("second", log)
    bot = Bot(engine, engine, [first, second], tick_every=None)
    running = asyncio.create_task(bot.run())
    await asyncio.wait_for(asyncio.gather(first.serving.wait(), second.serving.wait()), 5)
    return bot, first, second, running


async def test_one_adapter_failing_stops_the_others_then_all_are_closed_and_the_engine_drained() -> None:
    log: list[str] = []
    _, first, _, running = await serving_bot(log)
    first.ended.set_exception(AdapterFailed("the homeserver no longer accepts the login"))
    with pytest.raises(AdapterFailed, match="no longer accepts"):
        await asyncio.wait_for(running, 5)
    assert log == [
        "first start",
        "second start",
        "tick",  # what came due while the bot was down, before anything is served
        "first serve",
        "second serve",
        "second stopped",
        "settle",  # the outbox goes out while the adapters can still post
        "first close",
        "second close",
        "drain",  # the votes the adapters applied as they closed
    ]


async def test_one_adapter_ending_its_serving_stops_the_bot() -> None:
    """The console's input ends: the bot stops, as it would with only the console."""
    log: list[str] = []
    _, _, second, running = await serving_bot(log)
    second.ended.set_result(None)
    await asyncio.wait_for(running, 5)
    assert log[-5:] == ["first stopped", "settle", "first close", "second close", "drain"]


async def test_a_refused_start_closes_every_adapter_and_serves_none() -> None:
    log: list[str] = []
    engine = LoggingEngine(log)
    adapters = [ScriptedAdapter("first", log), ScriptedAdapter("second", log, refuse_start=True)]
    with pytest.raises(AdapterFailed, match="second refused the login"):
        await Bot(engine, engine, adapters, tick_every=None).run()
    assert log == ["first start", "second start", "settle", "first close", "second close", "drain"]


async def test_peerbot_run_keeps_what_start_up_made_out_of_the_collectors_full_passes(tmp_path: Path) -> None:
    config = parse_config({"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"}}, env={})
    out = io.StringIO()
    gc.unfreeze()
    try:
        assert await app.run(config, console=True, stdin=io.StringIO("alice: /status\n"), stdout=out) == 0
        assert gc.get_freeze_count() > 10_000  # the modules and clients, at least
    finally:
        gc.unfreeze()  # this test process goes on
    assert "alice: /status" in out.getvalue()
