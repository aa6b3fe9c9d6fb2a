"""Matrix with many rooms against a local Synapse: an invite answered by a bot in 1,000 rooms, and 1,000
nudges into 1,000 rooms as an application service compared with a bot in client mode.

    python bench/matrix_rooms.py [--rooms 1000] [--client-nudges 20] [--skip-invite]

Starts Synapse on 127.0.0.1 (from the test extra) with Synapse's default message limit (0.2/s, burst 10)
and an appservice registration made by adapters/matrix/registration.py.

1. Invite: a client-mode bot makes `--rooms` rooms (it is in each), starts (its first sync holds them
   all), and a member invites it to one more. Prints how long the first sync took, after how many syncs
   and how long the bot joined the new room, and when it answered a command there.
2. Nudges: the application service bot makes `--rooms` rooms, the database gets a group with a nudge
   due in each, one tick queues them all, and the outbox posts them through Synapse. Timed from the
   tick to the last post. The client-mode bot does the same for `--client-nudges` of its rooms, paced
   as it must be (0.2/s after a burst of 10): at 1,000 that would take 83 minutes, so its figure for
   1,000 is extrapolated from the measured rate, and printed as such. Prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from adapters.matrix.adapter import AppserviceSettings, MatrixSettings
from adapters.matrix.appservice import AppserviceAdapter
from adapters.matrix.registration import new_registration, read_registration
from adapters.sql.schema import groups, schedules
from tests.matrix_support import (
    Member,
    joins_after_syncs,
    make_rooms,
    membership,
    open_sqlite,
    reply_to,
    start_bot,
)
from tests.support import FakeClock
from tests.synapse import Homeserver, free_port, start_homeserver

DUE = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
AS_USER = "@peerbot:peerbot.test"


async def fill(store: Any, rooms: list[str]) -> None:
    """A group in each room with a nudge due at DUE (as bench/schedules.py fills its database)."""
    created = DUE - timedelta(days=1)
    async with store.transaction() as tx:
        await tx.conn.execute(
            insert(groups),
            [
                {
                    "id": i,
                    "platform": "matrix",
                    "channel_id": room,
                    "channel_name": f"room {i}",
                    "phase": "cooperating",
                    "phase_since": created,
                    "created_at": created,
                }
                for i, room in enumerate(rooms, start=1)
            ],
        )
        await tx.conn.execute(
            insert(schedules),
            [
                {
                    "group_id": i,
                    "kind": "nudge",
                    "cron": "0 18 * * *",
                    "description": "daily 18:00",
                    "text": f"How is it going, room {i}?",
                    "paused": False,
                    "next_occurrence": DUE,
                    "next_due_at": DUE,
                    "created_by": "bench",
                    "created_at": created,
                }
                for i in range(1, len(rooms) + 1)
            ],
        )


@dataclass
class Posted:
    rooms: list[str]
    seconds: float


async def nudges(settings: MatrixSettings, rooms: list[str], directory: Path) -> Posted:
    """Time from the tick to the last of the nudges posted, one per room."""
    store = await open_sqlite(directory / f"nudges-{len(rooms)}-{time.monotonic_ns()}.db")
    await fill(store, rooms)
    clock = FakeClock(DUE - timedelta(minutes=1))
    bot = await start_bot(settings, store, clock)
    try:
        adapter = bot.adapter
        if isinstance(adapter, AppserviceAdapter):
            async with asyncio.timeout(60):
                await adapter.listening.wait()
        else:
            await bot.engine.wait_batches(1, within=300)
        posted: list[str] = []
        all_posted = asyncio.Event()
        send = adapter.chat.send_event

        async def counted(
            room_id: str, event_type: str, content: dict[str, Any], txn: str | None = None
        ) -> str:
            event_id = await send(room_id, event_type, content, txn)
            posted.append(room_id)
            if len(posted) >= len(rooms):
                all_posted.set()
            return event_id

        adapter.chat.send_event = counted  # type: ignore[method-assign]
        clock.current = DUE + timedelta(seconds=1)
        started = time.perf_counter()
        await bot.engine.engine.tick()
        await asyncio.wait_for(all_posted.wait(), timeout=len(rooms) * 6 + 120)
        took = time.perf_counter() - started
        return Posted(posted, took)
    finally:
        await bot.stop()
        await store.close()


async def client_bot(server: Homeserver, rooms: int) -> tuple[MatrixSettings, list[str]]:
    """A bot account in `rooms` rooms it made (its limit lifted while it makes them: creating a room
    counts against the message limit), with Synapse's default limit back afterwards."""
    account = server.register()
    server.set_message_rate_limit(account.user_id, 0, 0)  # 0: no limit
    started = time.perf_counter()
    made = await make_rooms(server, account.user_id, account.access_token, rooms)
    server.clear_message_rate_limit(account.user_id)
    print(f"client-mode bot: {len(made)} rooms made in {time.perf_counter() - started:.1f} s")
    settings = MatrixSettings(
        homeserver=server.url, user_id=account.user_id, password=account.password, sync_timeout_ms=30_000
    )
    return settings, made


async def invite(server: Homeserver, settings: MatrixSettings, made: list[str], directory: Path) -> None:
    store = await open_sqlite(directory / "invite.db")
    started = time.perf_counter()
    bot = await start_bot(settings, store)
    alice = Member(server, server.register())
    account_id = settings.user_id
    server.set_message_rate_limit(alice.user_id, 1000, 10000)
    try:
        await bot.engine.wait_batches(1, within=600)
        took = time.perf_counter() - started
        print(f"first sync with {len(made)} rooms handed over {took:.2f} s after the start")
        answered = joins_after_syncs(bot)
        before = len(bot.engine.states)
        started = time.perf_counter()
        room = await alice.creates_room(invite=[account_id])
        await alice.sees(room, membership(account_id, "join"), within=120)
        joined = time.perf_counter() - started
        asked = await alice.says(room, "!peer status")
        await alice.sees(room, reply_to(asked), within=120)
        print(
            f"invited into room {len(made) + 1}: joined {joined:.2f} s after the invite, in the sync that"
            f" followed {answered[0][1] - before} sync(s) after the invite; a command there answered"
            f" {time.perf_counter() - started:.2f} s after the invite"
        )
    finally:
        await alice.close()
        await bot.stop()
        await store.close()


async def main(rooms: int, client_nudges: int, skip_invite: bool) -> None:
    directory = Path(tempfile.mkdtemp(prefix="peerbot-bench-"))
    port = free_port()
    raw = new_registration("peerbot", AS_USER, f"http://127.0.0.1:{port}")
    (directory / "registration.yaml").write_text(yaml.safe_dump(raw))
    registration = read_registration(raw, AS_USER)
    server = start_homeserver(directory, [directory / "registration.yaml"], real_message_limit=True)
    try:
        client_settings, client_rooms = await client_bot(server, rooms)
        if not skip_invite:
            await invite(server, client_settings, client_rooms, directory)
            await asyncio.sleep(15)  # the bot's allowance (the join, an answer) refills at 0.2/s
        client = await nudges(client_settings, client_rooms[:client_nudges], directory)
        assert sorted(client.rooms) == sorted(client_rooms[:client_nudges]), "each room exactly one nudge"

        started = time.perf_counter()
        as_rooms = await make_rooms(server, AS_USER, registration.as_token, rooms)
        print(f"appservice bot: {len(as_rooms)} rooms made in {time.perf_counter() - started:.1f} s")
        as_settings = MatrixSettings(
            homeserver=server.url,
            user_id=AS_USER,
            send_per_second=1000,
            send_burst=1000,
            appservice=AppserviceSettings(registration, "127.0.0.1", port),
        )
        appservice = await nudges(as_settings, as_rooms, directory)
        assert sorted(appservice.rooms) == sorted(as_rooms), "each room exactly one nudge"
        as_rate = len(as_rooms) / appservice.seconds
        print(
            f"appservice mode: {len(as_rooms)} nudges into {len(as_rooms)} rooms posted in"
            f" {appservice.seconds:.1f} s ({as_rate:.0f}/s), each room once"
        )

        burst = min(10, client_nudges)
        paced = (client.seconds) / max(client_nudges - burst, 1)
        extrapolated = paced * (len(as_rooms) - burst)
        print(
            f"client mode (Synapse's default 0.2/s, burst 10): {client_nudges} nudges posted in"
            f" {client.seconds:.1f} s, {paced:.2f} s per nudge past the burst;"
            f" {len(as_rooms):,} would take about {extrapolated / 60:.0f} min (extrapolated, not measured)"
        )
        ratio = extrapolated / appservice.seconds
        print(
            f"ratio for {len(as_rooms)} nudges: client mode (extrapolated) / appservice mode = {ratio:.0f}x"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--client-nudges", type=int, default=20)
    parser.add_argument("--skip-invite", action="store_true", help="only the nudges")
    args = parser.parse_args()
    asyncio.run(main(args.rooms, args.client_nudges, args.skip_invite))
