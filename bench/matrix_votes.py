"""Matrix votes benchmark against a local Synapse: reactions while the bot is down, then a live burst.

    python bench/matrix_votes.py [--members 20] [--keys 50]

Starts Synapse on 127.0.0.1 (from the test extra), stops the bot, has every member react with every key
on one message, starts the bot again and times until the engine has every reaction (back-filled from
`/messages`); then the same again with the bot running. Prints counts, distinct counts and times.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.matrix.adapter import MatrixSettings
from core.events import ReactionAdded
from tests.matrix_support import Member, RunningBot, membership, open_sqlite, start_bot
from tests.synapse import start_homeserver


def counted(bot: RunningBot) -> list[str]:
    return [e.event_id for e in bot.engine.received if isinstance(e, ReactionAdded)]


async def storm(members: list[Member], room: str, target: str, keys: list[str]) -> list[str]:
    async def one(member: Member) -> list[str]:
        return [await member.reacts(room, target, key) for key in keys]

    return [event_id for ids in await asyncio.gather(*(one(m) for m in members)) for event_id in ids]


async def main(n_members: int, n_keys: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="peerbot-bench-"))
    server = start_homeserver(directory)
    members: list[Member] = []
    try:
        account = server.register()
        settings = MatrixSettings(
            homeserver=server.url,
            user_id=account.user_id,
            password=account.password,
            send_per_second=1000,
            send_burst=1000,
            sync_timeout_ms=5000,
        )
        store = await open_sqlite(directory / "bot.db")
        bot = await start_bot(settings, store)
        await bot.engine.wait_batches(1)
        members = [Member(server, server.register()) for _ in range(n_members)]
        room = await members[0].creates_room(invite=[account.user_id, *(m.user_id for m in members[1:])])
        for member in members[1:]:
            await member.joins(room)
        await members[0].sees(room, membership(account.user_id, "join"))
        target = await members[0].says(room, "vote on this")
        await bot.engine.wait_for(lambda got: any(e.event_id == target for e in got))
        await bot.stop()

        started = time.monotonic()
        sent = await storm(members, room, target, [chr(0x1F600 + i) for i in range(n_keys)])
        print(f"bot down: {len(sent)} reactions sent in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        bot = await start_bot(settings, store)
        await bot.engine.wait_for(lambda got: set(sent) <= set(counted(bot)), within=600)
        ids = counted(bot)
        print(
            f"restart: all counted {time.monotonic() - started:.2f} s after the start;"
            f" {len(ids)} received, {len(set(ids))} distinct, in {len(bot.engine.states)} batches"
        )

        started = time.monotonic()
        live = await storm(members, room, target, [chr(0x1F400 + i) for i in range(n_keys)])
        last_sent = time.monotonic()
        await bot.engine.wait_for(lambda got: set(live) <= set(counted(bot)), within=600)
        ids = counted(bot)
        print(
            f"live: {len(live)} sent in {last_sent - started:.1f} s, all counted"
            f" {time.monotonic() - last_sent:.2f} s after the last; {len(ids)} received in total,"
            f" {len(set(ids))} distinct"
        )
        await bot.stop()
        await store.close()
    finally:
        for member in members:
            await member.close()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--keys", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.keys))
