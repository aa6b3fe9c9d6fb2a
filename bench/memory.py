"""Benchmark: the bot process's peak memory with 10,000 groups and 100,000 open polls, through ticks, polls
closing, and a Discord reconnect (a new gateway session, whose reconcile pass reads the open polls).

`peerbot run` runs as its own process against the fake Discord (in this process), on a SQLite database
seeded in bulk: 1,000 servers with 10 channels each, a group in every channel, 10 open polls per group.
500 of the polls close 20 s after the start (a tick closes them and posts their results); the rest stay
open. 30 s after the start the fake invalidates the session: the bot identifies again, receives the 1,000
servers again and starts a new reconcile pass over the open polls, which runs for `--after` seconds (at
40 reads/s a pass over 100,000 polls takes about 45 minutes; its memory does not grow with the count, as
the polls are read 500 at a time). Peak RSS is the kernel's high-water mark (VmHWM) of the bot process.
The baseline is the same bot with the same servers and an empty database.

It also measures, in this process, what reading the open polls costs: all at once (as the reconcile pass
did before) against a page at a time.

    .venv/bin/python bench/memory.py [--groups 10000] [--polls-per-group 10] [--after 15]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import update

from adapters.sql import migrate
from adapters.sql.schema import polls
from adapters.sql.store import SqlStore, make_engine
from tests.fake_discord.open_polls import poll_message, seed_groups, seed_polls
from tests.fake_discord.server import Channel, FakeDiscord

ROOT = Path(__file__).resolve().parent.parent
CHANNELS_PER_SERVER = 10
CLOSING = 500
CLOSE_AFTER = 20.0
RECONNECT_AFTER = 30.0
LIMIT_MB = 200


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class BotProcess:
    def __init__(self, fake: FakeDiscord, directory: Path, db: Path) -> None:
        self.fake = fake
        self.dir = directory
        self.config = directory / "config.yaml"
        self.config.write_text(
            f"database:\n  url: sqlite+aiosqlite:///{db}\n"
            "discord:\n"
            f"  api_base_url: {fake.api_base_url}\n"
            f"  gateway_url: {fake.gateway_url}\n"
            "logging:\n  level: INFO\n"
        )
        self.log = directory / "bot.err"
        self.process: asyncio.subprocess.Process | None = None
        self.samples: list[tuple[str, float, int]] = []  # (moment, seconds since start, RSS KiB)
        self.started = 0.0

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
        env.update(PYTHONPATH=str(ROOT), PEERBOT_DISCORD_TOKEN=self.fake.token)
        with (self.dir / "bot.out").open("wb") as out, self.log.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(self.config), cwd=self.dir, env=env,
                stdout=out, stderr=err,
            )  # fmt: skip
        self.started = time.monotonic()

    def sample(self, moment: str) -> None:
        assert self.process is not None
        self.samples.append((moment, time.monotonic() - self.started, kib(self.process.pid, "VmRSS")))

    async def logged(self, text: str, count: int = 1, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while self.log.read_text().count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not logged within {within} s: {text!r}\n{self.log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.1)

    async def until(self, seconds: float) -> None:
        """Sleep until `seconds` after the start, sampling RSS every second."""
        while (left := self.started + seconds - time.monotonic()) > 0:
            self.sample("")
            await asyncio.sleep(min(1.0, left))

    async def stop(self) -> int:
        """The peak RSS (KiB), read just before stopping the process."""
        assert self.process is not None
        peak = kib(self.process.pid, "VmHWM")
        self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 60)
        return peak


def servers(fake: FakeDiscord, count: int) -> list[Channel]:
    channels = []
    for n in range(count):
        guild = fake.add_guild(f"Circle {n}")
        fake.add_member(guild, f"member{n}")
        channels += [fake.add_channel(guild, f"room-{k}") for k in range(CHANNELS_PER_SERVER)]
    return channels


async def seed(db: Path, fake: FakeDiscord, channels: list[Channel], per_group: int) -> int:
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    await migrate.upgrade(engine)
    now = datetime.now(UTC)
    group_of = await seed_groups(engine, [(c.id, c.name) for c in channels], now)
    messages: list[tuple[str, str]] = []
    for n in range(len(channels) * per_group):
        channel = channels[n % len(channels)]
        if n < CLOSING:  # on Discord: their results are posted when they close
            messages.append((channel.id, poll_message(fake, channel, f"Poll {n + 1}: which way?")["id"]))
        else:
            messages.append((channel.id, str(10**18 + n)))  # not on the fake: its read answers 404
    seeded = await seed_polls(engine, group_of, messages, now)
    closing = [p.poll_id for p in seeded[:CLOSING]]
    async with engine.begin() as conn:
        await conn.execute(
            update(polls)
            .where(polls.c.id.in_(closing))
            .values(closes_at=now + timedelta(seconds=CLOSE_AFTER))
        )
    await engine.dispose()
    return len(seeded)


async def reading_open_polls(db: Path) -> tuple[float, float]:
    """Python heap peak (MiB) of reading every open poll at once, and of reading them 500 at a time."""
    store = SqlStore(make_engine(f"sqlite+aiosqlite:///{db}"))
    now = datetime.now(UTC)
    peaks = []
    try:
        for paged in (False, True):
            tracemalloc.start()
            async with store.read() as tx:
                if not paged:
                    everything = await tx.polls.open_on("discord", now)
                    del everything
            if paged:
                after = 0
                while True:
                    async with store.read() as tx:
                        page = await tx.polls.open_on("discord", now, after=after, limit=500)
                    if len(page) < 500:
                        break
                    after = page[-1].id
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
    finally:
        await store.close()
    return peaks[0], peaks[1]


async def run_bot(fake: FakeDiscord, directory: Path, db: Path, after: float, full: bool) -> BotProcess:
    bot = BotProcess(fake, directory, db)
    await bot.start()
    await bot.logged("connected to Discord")
    bot.sample("ready")
    if full:
        await bot.until(CLOSE_AFTER + 8)
        bot.sample("polls closed")
        await bot.until(RECONNECT_AFTER)
        fake.invalidate_sessions()
        await bot.logged("reconciling its open polls", 2, within=120)  # READY and every server again
        bot.sample("reconnected")
    await bot.until(time.monotonic() - bot.started + after)
    bot.sample("end")
    return bot


async def main(server_count: int, per_group: int, after: float) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake = FakeDiscord()
        fake.global_limit = (50, 1.0)
        await fake.start()
        try:
            channels = servers(fake, server_count)
            started = time.monotonic()
            count = await seed(root / "full.db", fake, channels, per_group)
            print(
                f"seeded {len(channels)} groups and {count} open polls in {time.monotonic() - started:.1f} s"
            )
            (root / "full").mkdir()
            bot = await run_bot(fake, root / "full", root / "full.db", after, full=True)
            peak = await bot.stop()
            log = bot.log.read_text()
            closed = sum(1 for m in fake.messages.values() if "closed" in m["content"])

            fake.identifies.clear()
            (root / "empty").mkdir()
            baseline_bot = await run_bot(fake, root / "empty", root / "empty.db", after, full=False)
            baseline = await baseline_bot.stop()
        finally:
            await fake.stop()
        everything, paged = await reading_open_polls(root / "full.db")
    for moment, at, rss in bot.samples:
        if moment:
            print(f"  {moment:>14} at {at:5.1f} s: RSS {rss / 1024:.0f} MB")
    passes = log.count("new session on shard 0: checked")
    print(
        f"bot process: peak RSS {peak / 1024:.0f} MB with {len(channels)} groups, {count} open polls, ticks,"
        f" {closed} poll results posted and a reconnect (limit {LIMIT_MB} MB); baseline (same servers, empty"
        f" database) {baseline / 1024:.0f} MB; ratio {peak / baseline:.2f}x"
    )
    print(
        f"  reconcile passes finished within the run: {passes}"
        f" (a pass over {count} polls takes ~{count / 40 / 60:.0f} min)"
    )
    print(
        f"reading the open polls, Python heap peak: all at once {everything:.0f} MB, 500 at a time"
        f" {paged:.1f} MB ({everything / max(paged, 0.01):.0f}x less)"
    )
    if peak / 1024 > LIMIT_MB:
        raise SystemExit(f"peak RSS over {LIMIT_MB} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--servers", type=int, default=1000, help="servers of 10 channels, a group each")
    parser.add_argument("--polls-per-group", type=int, default=10)
    parser.add_argument("--after", type=float, default=15.0, help="seconds to run on after the reconnect")
    args = parser.parse_args()
    asyncio.run(main(args.servers, args.polls_per_group, args.after))
