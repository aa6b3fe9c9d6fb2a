"""The operator's view: /health, /ready and /metrics served by the real web server over real HTTP, and
the logs in JSON with no secret in them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from adapters.web.operations import PrometheusMetrics, Readiness
from adapters.web.server import WebServer
from bot import logs
from bot.config import WebConfig, load_config, parse_config
from bot.recurrence import CronRecurrence
from core.engine import Engine
from core.events import ReactionAdded
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import ANY_WEB_PORT, Harness, peerbot
from tests.web_support import sample, served

FAKE_TIME = "2026-03-02T09:00:00+00:00"


# /health and /ready ---------------------------------------------------------------------------------


async def test_health_answers_and_ready_says_the_bot_is_ready(tmp_path: Path) -> None:
    async with served(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}") as s:
        assert await s.get("/health") == (200, '{"status": "ok"}')
        assert await s.ready() == (200, {"status": "ready"})


async def test_ready_is_503_while_the_database_file_cannot_be_opened_and_200_again_after(
    tmp_path: Path,
) -> None:
    db = tmp_path / "p.db"
    async with served(f"sqlite+aiosqlite:///{db}") as s:
        assert (await s.ready())[0] == 200
        # Root reads any file whatever its mode: the file is moved away and a directory put in its place.
        # Connections already open keep the old file, so the pool is emptied, as a restart of the
        # database connection would; the next connection finds no database.
        db.rename(tmp_path / "moved.db")
        db.mkdir()
        await s.store.engine.dispose()
        body = await s.until_ready_is(503)
        assert body["status"] == "not ready"
        assert body["reasons"] == ["database: does not answer (OperationalError)"]
        db.rmdir()
        (tmp_path / "moved.db").rename(db)
        assert await s.until_ready_is(200) == {"status": "ready"}


async def test_ready_wants_a_tick_within_the_last_ten_seconds(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    wall = [1000.0]
    last: list[float | None] = [None]
    readiness = Readiness(store, [], lambda: last[0], wall=lambda: wall[0])
    try:
        assert await readiness.problems() == ["tick: has not run yet"]
        last[0] = 995.0
        assert await readiness.problems() == []
        wall[0] = 1005.0  # ten seconds: still fine
        assert await readiness.problems() == []
        wall[0] = 1006.5
        assert await readiness.problems() == ["tick: last ran 12 s ago"]
    finally:
        await store.close()


# /metrics -------------------------------------------------------------------------------------------

SESSION = (
    "alice: /goal propose Learn Rust together\n"  # m1, the welcome m2, the proposal m3
    "bob +✅ m3\n"
    "carol +✅ m3\n"
    "bob: /status\n"
    "bob: /goal show 99\n"  # no such goal: an error answer
    "alice: /nudge add daily 18:00 Write one line about today\n"
)


async def test_metrics_parse_and_the_counters_move_after_a_session(db_url: str) -> None:
    async with served(db_url, script=SESSION) as s:
        before = await s.metrics()
        assert sample(before, "peerbot_commands_total", command="status", outcome="ok") == 0
        await s.bot.serve()  # the console reads the whole script
        await s.bot.engine.settle()
        # A platform delivers a reaction twice (a replay): applied once, the second counted as deduplicated.
        poll = MessageRef(ChannelRef("console", "general"), "m3")
        dave = UserRef("console", "dave", "dave")
        for _ in range(2):
            await s.bot.sink.handle(ReactionAdded("replayed-1", poll, dave, "✅"))
        after = await s.metrics()
    assert sample(after, "peerbot_commands_total", command="goal propose", outcome="ok") == 1
    assert sample(after, "peerbot_commands_total", command="status", outcome="ok") == 1
    assert sample(after, "peerbot_commands_total", command="goal show", outcome="error") == 1
    assert sample(after, "peerbot_commands_total", command="nudge add", outcome="ok") == 1
    assert sample(after, "peerbot_votes_applied_total") == 3  # bob's, carol's, dave's
    assert sample(after, "peerbot_events_deduplicated_total") == 1
    assert sample(after, "peerbot_outbox_posts_total", outcome="sent") >= 6
    assert sample(after, "peerbot_outbox_rows", state="pending") == 0
    assert sample(after, "peerbot_db_transaction_seconds_count") > sample(
        before, "peerbot_db_transaction_seconds_count"
    )
    assert ("peerbot_tick_lag_seconds", ()) in after
    assert sample(after, "peerbot_nudges_total", outcome="delivered") == 0  # declared before any is due
    assert all(name.startswith("peerbot_") for name, _ in after)


async def test_nudges_delivered_skipped_and_coalesced_are_counted() -> None:
    h = Harness()  # the clock starts at 09:00 UTC
    metrics = PrometheusMetrics()
    h.engine = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence(), metrics=metrics)
    await h.member("alice").says("/nudge add daily 18:00 Write one line")
    h.clock.advance(timedelta(hours=9))
    await h.engine.tick()  # 18:00: on time
    h.clock.advance(timedelta(days=1, hours=3))  # the bot was "down": Tuesday's is past the grace window
    await h.engine.tick()
    h.clock.advance(timedelta(days=1, hours=21, minutes=30))  # Thursday 18:30: Wednesday's folds into it
    await h.engine.tick()
    text = _exposition(metrics)
    assert 'peerbot_nudges_total{outcome="delivered"} 2.0' in text
    assert 'peerbot_nudges_total{outcome="skipped"} 1.0' in text
    assert 'peerbot_nudges_total{outcome="coalesced"} 1.0' in text


def _exposition(metrics: PrometheusMetrics) -> str:
    return generate_latest(metrics.registry).decode()


async def test_metrics_need_the_bearer_token_when_one_is_set(tmp_path: Path) -> None:
    async with served(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", token="s3cret-metrics") as s:
        assert (await s.get("/metrics"))[0] == 401
        assert (await s.get("/metrics", Authorization="Bearer wrong"))[0] == 401
        status, text = await s.get("/metrics", Authorization="Bearer s3cret-metrics")
        assert status == 200 and "peerbot_commands_total" in text
        assert (await s.get("/health"))[0] == 200  # liveness and readiness stay open to probes


async def test_two_bots_in_one_process_count_apart(tmp_path: Path) -> None:
    one, two = PrometheusMetrics(), PrometheusMetrics()
    one.command("status", "ok")
    assert 'peerbot_commands_total{command="status",outcome="ok"} 1.0' in _exposition(one)
    assert 'command="status"' not in _exposition(two)


# The command line -----------------------------------------------------------------------------------


def test_a_port_in_use_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
            "PEERBOT_WEB_PORT": str(port),
        }
        result = peerbot("console", cwd=tmp_path, env=env, stdin="alice: /status\n")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("peerbot:")]
    assert line == (
        f"peerbot: web: port {port} on 127.0.0.1 is in use by another program; stop it, or set web.port"
        " to a free port"
    )
    assert "Traceback" not in result.stderr


def test_the_console_prints_the_address_on_stderr_and_ends_with_its_input(tmp_path: Path) -> None:
    env = {"PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", "PEERBOT_FAKE_TIME": FAKE_TIME}
    result = peerbot(
        "console", cwd=tmp_path, env={**env, **ANY_WEB_PORT}, stdin="alice: /status\n", timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "web server at http://127.0.0.1:" in result.stderr
    assert "web server" not in result.stdout
    assert result.stdout.startswith("#general [m1] alice: /status\n")


async def test_run_serves_on_after_the_input_ends_until_sigterm(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(
        {"PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", "PEERBOT_WEB_PORT": str(port)}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=Path(__file__).resolve().parent.parent, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"alice: /status\n")
        proc.stdin.close()
        async with aiohttp.ClientSession() as http:
            body = await _poll(lambda: _get_json(http, f"http://127.0.0.1:{port}/ready"), 30)
            assert body == {"status": "ready"}
            assert proc.returncode is None  # the input has ended; it serves on
            await asyncio.sleep(1.5)  # a tick or more after the end of the input
            assert (await _get_json(http, f"http://127.0.0.1:{port}/health")) == {"status": "ok"}
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json() if response.status == 200 else None


async def _poll(ask: Callable[[], Awaitable[Any]], within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            if (answer := await ask()) is not None:
                return answer
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, "no answer in time"
        await asyncio.sleep(0.1)


# Logs -----------------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Callable[[dict[str, Any]], io.StringIO]:
    """Set the logs up from a config section, into a buffer; taken down again after the test."""
    installed: list[logging.Handler] = []
    level = logging.getLogger().level

    def setup(raw: dict[str, Any]) -> io.StringIO:
        buffer = io.StringIO()
        installed.append(logs.setup(parse_config(raw, env={}), buffer))
        return buffer

    yield setup  # type: ignore[misc]
    for handler in installed:
        logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(level)


async def test_json_log_lines_carry_the_group_the_command_and_the_event(log_lines: Any) -> None:
    buffer = log_lines({"logging": {"format": "json", "level": "DEBUG"}})
    h = Harness()
    await h.member("alice").says("/status")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines, "nothing was logged"
    (answered,) = [line for line in lines if line["message"] == "command status: ok"]
    assert answered["group"] == "fake:general"
    assert answered["command"] == "status"
    assert answered["event_id"] == "e1"
    assert answered["level"] == "DEBUG" and answered["logger"] == "core.engine"
    assert set(answered) >= {"time", "level", "logger", "message"}
    outside = [line for line in lines if "command" not in line]
    assert all("group" not in line for line in outside)  # the context ends with the command


def test_secrets_are_never_logged_in_either_format(log_lines: Any) -> None:
    raw = {
        "database": {"url": "postgresql+asyncpg://peerbot:pg-pass-w0rd@db.example:5432/peerbot"},
        "discord": {"token": "discord-token-abc123"},
        "web": {"metrics_token": "metrics-token-xyz"},
    }
    for fmt in ("text", "json"):
        buffer = log_lines({**raw, "logging": {"format": fmt}})
        log = logging.getLogger("tests.web_ops")
        log.warning("connecting with %s and %s", "discord-token-abc123", "metrics-token-xyz")
        try:
            raise RuntimeError("login failed for postgresql://peerbot:pg-pass-w0rd@db.example")
        except RuntimeError:
            log.exception("could not start")
        text = buffer.getvalue()
        assert "connecting with" in text and "could not start" in text
        for secret in ("discord-token-abc123", "metrics-token-xyz", "pg-pass-w0rd"):
            assert secret not in text, (fmt, text)
        assert "***" in text


def test_web_config_defaults_and_environment() -> None:
    assert parse_config({}, env={}).web is None  # off unless configured
    assert parse_config({"web": {}}, env={}).web == WebConfig(host="127.0.0.1", port=8080)
    on = parse_config({}, env={"PEERBOT_WEB_PORT": "9090", "PEERBOT_WEB_HOST": "0.0.0.0"}).web
    assert on is not None and (on.host, on.port) == ("0.0.0.0", 9090)
    assert parse_config({}, env={"PEERBOT_WEB_METRICS_TOKEN": "t0ken"}).web is None
    assert WebServer("127.0.0.1", 8080).url == "http://127.0.0.1:8080"
    assert WebServer("::1", 8080).url == "http://[::1]:8080"
    assert WebServer("0.0.0.0", 80, public_url="https://bot.example.org/").url == "https://bot.example.org"


def test_the_example_config_serves_the_web_on_127_0_0_1_8080() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "config.example.yaml", env={})
    assert config.web == WebConfig(host="127.0.0.1", port=8080)
    assert config.logging.format == "text"


async def test_run_serves_the_group_page_behind_the_link_the_dashboard_command_gives(tmp_path: Path) -> None:
    """`peerbot run` as an operator starts it: the `dashboard` command's link opens the group's page on
    the server it started, escaped; a forged token gets 403."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    (tmp_path / "config.yaml").write_text("console:\n  facilitators: [alice]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(
        {"PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", "PEERBOT_WEB_PORT": str(port)}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"bob: /goal propose Learn <script>alert(1)</script> Rust\nalice: /dashboard\n")
        proc.stdin.close()
        link = ""
        async with asyncio.timeout(60):
            while not link:
                line = (await proc.stdout.readline()).decode()
                assert line, "the bot ended without a link"
                if "/dashboard/" in line:
                    link = line.split(": ", 1)[1].rsplit(" ", 1)[-1].strip()
        assert line.startswith("@alice [") and link.startswith(f"http://127.0.0.1:{port}/dashboard/")
        async with aiohttp.ClientSession() as http:
            async with http.get(link) as response:
                page = await response.text()
                assert response.status == 200, page
                assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert "Learn &lt;script&gt;alert(1)&lt;/script&gt; Rust" in page and "<script>alert" not in page
            forged = link[:-3] + ("A" if link[-3] != "A" else "B") + link[-2:]
            async with http.get(forged) as response:
                assert response.status == 403 and "Learn" not in await response.text()
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
