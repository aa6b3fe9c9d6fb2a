"""Benchmark: concurrent slash commands through the real discord.py client against the fake Discord.

Measures, for each interaction, the time from the fake gateway dispatching INTERACTION_CREATE to the
interaction callback arriving at the fake REST API (the member sees the answer then). Peerbot runs
with a SQLite store in a temporary directory, as in production.

    .venv/bin/python bench/discord_commands.py [--concurrent 50] [--rounds 5] [--command /status]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_discord.scene import DiscordScene, answered
from tests.fake_discord.server import FakeDiscord, Interaction


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def one_round(scene: DiscordScene, concurrent: int, command: str) -> list[float]:
    members = [scene.alice, scene.bob, scene.carol]
    interactions: list[Interaction] = []
    for i in range(concurrent):
        member = members[i % len(members)]
        interactions.append(scene.fake.run_command(member.user, scene.channel, command, {}))
    await scene.fake.until(lambda: all(answered(i) for i in interactions), within=30)
    assert all(i.callback is not None and i.callback.get("type") == 4 for i in interactions), "deferred"
    return [(i.callback_at or 0) - i.dispatched_at for i in interactions]


async def main(concurrent: int, rounds: int, command: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    fake = FakeDiscord()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        scene = DiscordScene(fake, Path(tmp) / "bench.db")
        try:
            await scene.start_bot()
            await one_round(scene, concurrent, command)  # warm-up: the group, caches, connections
            latencies: list[float] = []
            started = time.monotonic()
            for _ in range(rounds):
                latencies += await one_round(scene, concurrent, command)
            elapsed = time.monotonic() - started
        finally:
            await scene.close()
            await fake.stop()
    ms = [x * 1000 for x in latencies]
    print(f"{command}: {rounds} rounds of {concurrent} concurrent interactions ({len(ms)} measured)")
    print(
        f"dispatch -> callback: p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms,"
        f" max {max(ms):.1f} ms; {len(ms) / elapsed:.0f} commands/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--command", default="/status")
    args = parser.parse_args()
    asyncio.run(main(args.concurrent, args.rounds, args.command))
