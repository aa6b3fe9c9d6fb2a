"""Roles benchmark: the week's turn over many groups at once, in one tick.

    python bench/roles.py [--groups 2000] [--members 8] [--database-url URL]

Every group has the three built-in roles, due at the same Monday 09:00: the wrapper and the facilitator of
the week rotate weekly among all its members (one of them away for 20 days), and the wrapper gets the
week's draft from the group's record (a goal, a poll, a reflection per member). The database is filled in a
child process. Prints how long the one tick took to hand every role over, make every draft and queue the
messages (sending held back), that a second tick at the same moment changes nothing, and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reminders import CountingChat
from sqlalchemy import insert

from adapters.sql.schema import goals, groups, members, reflections, role_pool, roles
from bot.app import build_engine, open_store
from bot.config import parse_config
from core.roles import BUILT_IN
from tests.support import FakeClock

DUE = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # a Monday, the default digest time
CHUNK = 5000


async def fill(url: str, count: int, size: int) -> None:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    start = DUE - timedelta(days=40)
    role_id = 0
    for first in range(1, count + 1, 500):
        ids = range(first, min(first + 500, count + 1))
        rows: dict[object, list[dict[str, object]]] = {
            t: [] for t in (groups, members, roles, role_pool, goals, reflections)
        }
        for g in ids:
            rows[groups].append(
                {
                    "id": g,
                    "platform": "fake",
                    "channel_id": f"c{g}",
                    "channel_name": f"#c{g}",
                    "phase": "cooperating",
                    "phase_since": start,
                    "created_at": start,
                    "last_activity_at": DUE - timedelta(hours=1),
                    "auto_radar": False,
                }
            )
            keys = [f"fake:u{g}-{m}" for m in range(1, size + 1)]
            for m, key in enumerate(keys, start=1):
                away = m == size
                rows[members].append(
                    {
                        "group_id": g,
                        "user_key": key,
                        "name": f"member {m}",
                        "joined_at": start,
                        "last_active_at": DUE - timedelta(days=20 if away else 1),
                    }
                )
                rows[reflections].append(
                    {
                        "group_id": g,
                        "user_key": key,
                        "user_name": f"member {m}",
                        "text": "We paired on chapter 2",
                        "at": DUE - timedelta(days=2),
                    }
                )
            rows[goals].append(
                {
                    "group_id": g,
                    "text": "Read together",
                    "status": "accepted",
                    "proposer_key": keys[0],
                    "proposer_name": "member 1",
                    "put_forward_by_key": keys[0],
                    "created_at": DUE - timedelta(days=5),
                    "updated_at": DUE - timedelta(days=3),
                }
            )
            for name, duty in BUILT_IN:
                role_id += 1
                rotating = name != "notetaker"
                rows[roles].append(
                    {
                        "id": role_id,
                        "group_id": g,
                        "name": name,
                        "duty": duty,
                        "built_in": True,
                        "created_at": start,
                        "holder_key": keys[0],
                        "holder_name": "member 1",
                        "held_since": DUE - timedelta(days=7),
                        "rotation": "weekly" if rotating else "off",
                        "next_turn_at": DUE if rotating else None,
                        "next_week_at": DUE,
                    }
                )
                if rotating:
                    rows[role_pool] += [
                        {
                            "role_id": role_id,
                            "user_key": key,
                            "user_name": f"member {m}",
                            "joined_at": start,
                            "last_held_at": DUE - timedelta(days=7) if m == 1 else None,
                            "times_held": int(m == 1),
                        }
                        for m, key in enumerate(keys, start=1)
                    ]
        async with store.transaction() as tx:
            for table, chunk in rows.items():
                for at in range(0, len(chunk), CHUNK):
                    await tx.conn.execute(insert(table), chunk[at : at + CHUNK])  # type: ignore[attr-defined]
    await store.close()


def fill_apart(url: str, count: int, size: int) -> None:
    asyncio.run(fill(url, count, size))


async def _nothing() -> int:
    return 0


async def main(count: int, size: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        child = multiprocessing.get_context("spawn").Process(target=fill_apart, args=(url, count, size))
        child.start()
        child.join()
        assert child.exitcode == 0, "filling the database failed"
        config = parse_config({"database": {"url": url}, "nudges": {"heartbeat_days": 0}}, env={})
        store = await open_store(config)
        chat = CountingChat()
        engine = build_engine(config, store, FakeClock(DUE), [chat])
        engine.work.on_commit = lambda: None
        dispatch, engine.dispatcher.dispatch = engine.dispatcher.dispatch, _nothing  # type: ignore[method-assign]
        started = time.perf_counter()
        looked = await engine.roles.due(DUE)
        took = time.perf_counter() - started
        engine.dispatcher.dispatch = dispatch  # type: ignore[method-assign]
        await engine.settle()
        posted = (chat.direct, chat.sent)
        again = await engine.roles.due(DUE)
        await engine.settle()
        async with store.transaction() as tx:
            sampled = range(1, count + 1, max(count // 50, 1))
            held = [
                (r.name, r.holder_key.rsplit("-", 1)[1]) for g in sampled for r in await tx.roles.in_group(g)
            ]
        await store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count:,} groups of {size} members, 3 roles each ({3 * count:,} roles due at once)")
    print(f"one tick, every role's turn taken, every draft made and queued: {took:.2f} s ({looked:,} roles)")
    print(f"posted: {posted[0]:,} direct messages (new holders, drafts), {posted[1]:,} group posts")
    extra = chat.direct - posted[0] + chat.sent - posted[1]
    print(f"a second tick at the same moment: {again} roles, {extra} posts")
    turned = all(who == ("1" if name == "notetaker" else "2") for name, who in held)
    print(f"in sampled groups member 2 holds the rotating roles, member 1 still the notetaker: {turned}")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.members, args.database_url))
