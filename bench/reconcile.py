"""Benchmark: reconciling 1,000 open polls after a new gateway session, under Discord's rate limits,
while members keep running commands.

The real discord.py client runs against the fake Discord, which enforces the global limit (50 requests/s
with the bot token) and per-channel buckets (message and reaction reads 5/s), answering 429 when a client
goes over. The polls (20 per channel, in 50 channels) and their messages are seeded before the bot starts,
with the votes members cast while it was away: none on a fifth, one option on three fifths, both options on
a fifth (so a poll costs one message read and one users read per voted option). Meanwhile a member runs
`/status` every 200 ms; the baseline is the same commands once the pass is over.

    .venv/bin/python bench/reconcile.py [--polls 1000] [--channels 50]
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

from tests.fake_discord.open_polls import poll_message, seed_groups, seed_polls, votes
from tests.fake_discord.scene import DiscordScene, answered
from tests.fake_discord.server import Interaction

COMMAND_EVERY = 0.2


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def commands_while(scene: DiscordScene, going: asyncio.Event | None, count: int | None) -> list[float]:
    """Run /status every COMMAND_EVERY s (while `going` is not set, or `count` times); each ack's latency."""
    members = [scene.alice, scene.bob, scene.carol]
    sent: list[Interaction] = []
    n = 0
    while (going is not None and not going.is_set()) or (count is not None and n < count):
        member = members[n % len(members)]
        sent.append(scene.fake.run_command(member.user, scene.channel, "/status", {}))
        n += 1
        await asyncio.sleep(COMMAND_EVERY)
    await scene.fake.until(lambda: all(answered(i) for i in sent), within=30)
    return [(i.callback_at or 0) - i.dispatched_at for i in sent]


async def main(poll_count: int, channel_count: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    from tests.fake_discord.server import FakeDiscord

    fake = FakeDiscord()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        scene = DiscordScene(fake, Path(tmp) / "bench.db")
        try:
            store = await scene.open_store()
            channels = [fake.add_channel(scene.guild, f"circle-{n}") for n in range(channel_count)]
            now = scene.clock.now()
            group_of = await seed_groups(store.engine, [(c.id, c.name) for c in channels], now)
            voters = [scene.alice.user, scene.bob.user, scene.carol.user]
            posted, cast = [], 0
            for n in range(poll_count):
                message = poll_message(fake, channels[n % channel_count], f"Poll {n + 1}: which way?")
                cast += votes(fake, message, voters, n + 1)
                posted.append((message["channel_id"], message["id"]))
            await seed_polls(store.engine, group_of, posted, now)

            started = time.monotonic()
            bot = await scene.start_bot()
            done = asyncio.Event()
            during = asyncio.create_task(commands_while(scene, done, None))
            report = await asyncio.wait_for(bot.wait_reconciled(1), 600)
            elapsed = time.monotonic() - started
            done.set()
            busy = await during
            idle = await commands_while(scene, None, 50)
        finally:
            await scene.close()
            await fake.stop()
    reads = [r for r in fake.requests if r.route in ("get_message", "get_reactions")]
    first, last = min(r.at for r in reads), max(r.at for r in reads)
    print(
        f"reconcile: {report.polls} open polls in {channel_count} channels, {report.changed} votes changed"
        f" ({cast} cast while away), {report.skipped} skipped"
    )
    print(
        f"reconcile: done in {elapsed:.1f} s from start (limit 60 s); {len(reads)} REST reads at"
        f" {len(reads) / max(last - first, 1e-9):.1f}/s; {len(fake.rate_limited)} answered 429"
    )
    busy_ms, idle_ms = [x * 1000 for x in busy], [x * 1000 for x in idle]
    print(
        f"command ack while reconciling: {len(busy_ms)} commands, p50 {statistics.median(busy_ms):.1f} ms,"
        f" p99 {percentile(busy_ms, 99):.1f} ms, max {max(busy_ms):.1f} ms (limit p99 300 ms)"
    )
    print(
        f"command ack idle (baseline): {len(idle_ms)} commands, p50 {statistics.median(idle_ms):.1f} ms,"
        f" p99 {percentile(idle_ms, 99):.1f} ms; p99 ratio while reconciling / idle"
        f" {percentile(busy_ms, 99) / percentile(idle_ms, 99):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.polls, args.channels))
