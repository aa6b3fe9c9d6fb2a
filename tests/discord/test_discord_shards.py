"""Two `peerbot run` processes split a bot's two shards, on one database (SQLite, and PostgreSQL as a
deployment would run it).

Both read the same config file and take their shard from the environment (`PEERBOT_DISCORD_SHARD_IDS`),
as replicas do. The fake Discord routes each guild to the shard `(guild_id >> 22) % shard_count` that
identified for it, so each process receives only its guilds' events; the command sync runs once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.adapter import DiscordSettings, rest_share
from adapters.sql import migrate
from adapters.sql.store import make_engine
from tests.fake_discord.scene import answered
from tests.fake_discord.server import MANAGE_GUILD, Channel, FakeDiscord, Guild, Interaction, User

ROOT = Path(__file__).resolve().parents[2]
START = "2026-03-02T09:00:00+00:00"  # a Monday; PEERBOT_FAKE_TIME holds each bot's clock there
NUDGE_DUE = "2026-03-02T10:00:30+00:00"  # half a minute after the nudges' 10:00
SHARDS = 2


class ShardProcess:
    """`peerbot run` with the shared config, running the shard the environment names."""

    def __init__(self, fake: FakeDiscord, config: Path, shard: int) -> None:
        self.fake = fake
        self.config = config
        self.shard = shard
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.config.parent / f"shard{self.shard}.run{self.runs}.err"

    async def start(self, at: str) -> None:
        assert self.process is None
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
        env.update(
            PYTHONPATH=str(ROOT),
            PEERBOT_DISCORD_TOKEN=self.fake.token,
            PEERBOT_FAKE_TIME=at,
            PEERBOT_DISCORD_SHARD_IDS=str(self.shard),
            PEERBOT_DISCORD_SHARD_COUNT=str(SHARDS),
        )
        with self.log.with_suffix(".out").open("wb") as out, self.log.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(self.config),
                cwd=self.config.parent, env=env, stdout=out, stderr=err,
            )  # fmt: skip

    async def logged(self, text: str, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.log.read_text():
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"shard {self.shard} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not logged within {within} s: {text!r}\n{self.log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Ctrl-C: the bot sends what its outbox holds and exits with 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.process.wait(), 20)
        self.process = None
        assert code == 0, self.log.read_text()[-3000:]


@dataclass
class Server:
    """A guild with #general, alice (Manage Server), bob and carol."""

    guild: Guild
    channel: Channel
    alice: User
    bob: User
    carol: User

    def shard(self) -> int:
        return (int(self.guild.id) >> 22) % SHARDS


def servers_on_both_shards(fake: FakeDiscord) -> list[Server]:
    """One server on each shard (a guild's shard follows from its id's timestamp part)."""
    by_shard: dict[int, Guild] = {}
    while len(by_shard) < SHARDS:
        guild = fake.add_guild(f"Circle {len(fake.guilds)}")
        by_shard.setdefault((int(guild.id) >> 22) % SHARDS, guild)
        time.sleep(0.001)  # the next id is a millisecond later: the other shard's
    servers = []
    for shard in range(SHARDS):
        guild = by_shard[shard]
        stewards = fake.add_role(guild, "Stewards", MANAGE_GUILD)
        channel = fake.add_channel(guild, "general")
        members = [
            fake.add_member(guild, name, roles)
            for name, roles in (("alice", (stewards,)), ("bob", ()), ("carol", ()))
        ]
        servers.append(Server(guild, channel, *members))
    return servers


async def run(fake: FakeDiscord, user: User, channel: Channel, path: str, **options: Any) -> Interaction:
    interaction = fake.run_command(user, channel, path, options)
    await fake.until(lambda: answered(interaction), 10)
    return interaction


def content(interaction: Interaction) -> str:
    assert interaction.callback is not None
    if interaction.callback.get("type") == 5:  # deferred, then edited
        return str((interaction.original or {}).get("content") or "")
    return str((interaction.callback.get("data") or {}).get("content") or "")


def messages(fake: FakeDiscord, channel: Channel, starting: str) -> list[dict[str, Any]]:
    return [m for m in fake.sent_messages(channel) if m["content"].startswith(starting)]


@pytest.fixture
async def shards(fake_discord: FakeDiscord, db_url: str, tmp_path: Path) -> AsyncIterator[list[ShardProcess]]:
    """Two processes (shard 0 and shard 1 of 2) on one migrated database, not started yet."""
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "discord:\n"
        f"  api_base_url: {fake_discord.api_base_url}\n"
        f"  gateway_url: {fake_discord.gateway_url}\n"
        "logging:\n  level: DEBUG\n"
    )
    processes = [ShardProcess(fake_discord, config, shard) for shard in range(SHARDS)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.process is not None:
                process.process.kill()
                await process.process.wait()


async def start_all(processes: list[ShardProcess], at: str) -> None:
    """Start every process at the same moment; return once each has connected its shard."""
    for process in processes:
        await process.start(at)
    for process in processes:
        await process.logged("connected to Discord")


async def test_two_processes_with_a_shard_each_answer_count_and_nudge_once_in_their_own_guilds(
    fake_discord: FakeDiscord, shards: list[ShardProcess]
) -> None:
    fake = fake_discord
    servers = servers_on_both_shards(fake)
    # The first sync is held at Discord until both processes have logged in and reached theirs.
    sync = fake.hold("put_global_commands", applied=True)
    for process in shards:
        await process.start(START)
    await asyncio.wait_for(sync.reached, 20)
    await fake.until(lambda: len([r for r in fake.requests if r.route == "get_application"]) == SHARDS, 20)
    await asyncio.sleep(1.0)  # time for the other process's sync, were it not waiting for the lock
    assert len([r for r in fake.requests if r.route == "put_global_commands"]) == 1
    sync.release()
    for process in shards:
        await process.logged("connected to Discord")

    identified = sorted(tuple(i["shard"]) for i in fake.identifies)
    assert identified == [(0, SHARDS), (1, SHARDS)]
    for server in servers:  # the guild's events go to one session: its shard's
        live = [s for s in fake.sessions.values() if s.alive and s.covers(server.guild.id)]
        assert [s.shard for s in live] == [(server.shard(), SHARDS)]
    syncs = [r for r in fake.requests if r.route == "put_global_commands"]
    assert len(syncs) == 1  # once, not once per process
    assert "registered" in shards[0].log.read_text() + shards[1].log.read_text()

    polls: dict[str, dict[str, Any]] = {}
    commands: list[Interaction] = []
    for server in servers:
        made = await run(fake, server.alice, server.channel, "/poll create", question="Tea or coffee?",
                         option1="🍵 tea", option2="☕ coffee")  # fmt: skip
        commands.append(made)
        await fake.until(lambda s=server: bool(messages(fake, s.channel, "Poll ")), 10)
        (poll,) = messages(fake, server.channel, "Poll ")
        await fake.until(lambda p=poll: len(fake.bot_reactions(p)) == 2, 10)  # its options: linked
        polls[server.guild.id] = poll
        fake.react(server.alice, poll, "🍵")
        fake.react(server.bob, poll, "☕")
        fake.react(server.carol, poll, "☕")
        commands.append(
            await run(
                fake, server.alice, server.channel, "/nudge add", schedule="daily 10:00 What did you learn?"
            )
        )

    for server in servers:
        poll_id = int(polls[server.guild.id]["content"].split(":")[0].removeprefix("Poll "))
        deadline = time.monotonic() + 10
        while True:
            results = await run(fake, server.alice, server.channel, "/poll results", id=poll_id)
            commands.append(results)
            if "3 voters" in content(results) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        text = content(results)
        assert "3 voters" in text, text
        lines = {line.split()[0]: line for line in text.splitlines() if line[:1] in ("🍵", "☕")}
        assert " 1 (33%)" in lines["🍵"] and " 2 (67%)" in lines["☕"], text

    for interaction in commands:  # each answered once, by the process whose shard received it
        callbacks = [
            r for r in fake.requests if r.route == "interaction_callback" and interaction.id in r.path
        ]
        assert len(callbacks) == 1, interaction.id

    for process in shards:
        await process.stop()
    await start_all(shards, NUDGE_DUE)  # both nudges are due at once
    for server in servers:
        await fake.until(lambda s=server: bool(messages(fake, s.channel, "🔔 Nudge")), 20)
    await asyncio.sleep(1.0)  # time for a second post, were one to come
    for process in shards:
        await process.stop()
    for server in servers:
        nudges = messages(fake, server.channel, "🔔 Nudge")
        assert [m["content"].split(": ", 1)[1] for m in nudges] == ["What did you learn?"], nudges
    assert len([r for r in fake.requests if r.route == "put_global_commands"]) == 1  # the digest is kept


def test_a_process_paces_its_rest_calls_at_its_shards_share_of_the_bots_global_limit() -> None:
    assert rest_share(DiscordSettings("t")) == (40.0, 10)  # every shard: the whole budget
    assert rest_share(DiscordSettings("t", shard_count=4)) == (40.0, 10)
    assert rest_share(DiscordSettings("t", shard_count=4, shard_ids=(0, 1))) == (20.0, 5)
    assert rest_share(DiscordSettings("t", shard_count=16, shard_ids=(3,))) == (2.5, 1)
