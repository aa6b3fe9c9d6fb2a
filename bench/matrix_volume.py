"""Matrix at volume: one /sync batch of 10,000 reactions, from the payload to durable votes.

    python bench/matrix_volume.py [--reactions 10000] [--voters 2000] [--runs 3] [--database-url URL]

Builds a /sync response the way Synapse sends it: one room's timeline of `--reactions` `m.reaction` events,
each made from the recorded reaction in tests/recorded/matrix_timeline.json (its own event id, one of
`--voters` senders, one of the poll's five keys; one in eight a redaction of an earlier one). Then, as
`MatrixAdapter.sync_once` does after the HTTP request: the adapter's client keeps the timelines as
sent and has matrix-nio parse the rest, the adapter translates it
(adapters/matrix/translate.py) and hands the batch to the engine with the sync token, which applies it
with group commit and returns once it is durable. Prints the time of each step and the total against the
2 s target, and checks every vote landed once. The database is a SQLite file (WAL, synchronous=FULL)
unless `--database-url` names another (postgresql+asyncpg://...).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nio import SyncResponse
from sqlalchemy import func, select

from adapters.matrix.adapter import NEXT_BATCH_KEY, MatrixAdapter, MatrixSettings, SyncClient, split_sync
from adapters.matrix.translate import PLATFORM
from adapters.sql import migrate
from adapters.sql.schema import poll_reactions
from adapters.sql.store import SqlStore, make_engine
from core.polls import NUMBER_EMOJI
from core.ports import StateChanges
from core.refs import ChannelRef
from tests.support import Harness

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "recorded" / "matrix_timeline.json"
BOT = "@peerbot:peerbot.test"


def recorded_reaction() -> dict[str, Any]:
    timeline = json.loads(RECORDED.read_text())["timeline"]
    return next(e for e in timeline if e["type"] == "m.reaction" and e["content"])


def sync_payload(room_id: str, target: str, reactions: int, voters: int) -> dict[str, Any]:
    """A /sync response as Synapse sends it (one joined room), with `reactions` events in its timeline."""
    template = recorded_reaction()
    keys = list(NUMBER_EMOJI[:5])
    events: list[dict[str, Any]] = []
    for n in range(reactions):
        event = copy.deepcopy(template)
        event["event_id"] = f"$bench{n:06d}"
        event["origin_server_ts"] = 1795484941738 + n
        if n % 8 == 7:  # a redaction taking back the reaction before it
            event["type"] = "m.room.redaction"
            event["content"] = {"redacts": events[-1]["event_id"]}
            event["redacts"] = events[-1]["event_id"]
            event["sender"] = events[-1]["sender"]
        else:
            event["sender"] = f"@voter{n % voters}:peerbot.test"
            event["content"]["m.relates_to"] = {
                "rel_type": "m.annotation",
                "event_id": target,
                "key": keys[(n // voters) % 5],
            }
        events.append(event)
    return {
        "next_batch": "s_after",
        "rooms": {
            "join": {
                room_id: {
                    "timeline": {"events": events, "limited": False, "prev_batch": "s_before"},
                    "state": {"events": []},
                    "ephemeral": {"events": []},
                    "account_data": {"events": []},
                    "unread_notifications": {},
                }
            },
            "invite": {},
            "leave": {},
        },
        "account_data": {"events": []},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {},
    }


def standing(payload: dict[str, Any], room_id: str) -> set[tuple[str, str]]:
    """The (voter, key) votes the timeline leaves standing: what the poll must hold after it."""
    votes: dict[str, tuple[str, str]] = {}
    for event in payload["rooms"]["join"][room_id]["timeline"]["events"]:
        if event["type"] == "m.reaction":
            votes[event["event_id"]] = (event["sender"], event["content"]["m.relates_to"]["key"])
        else:
            votes.pop(event["content"]["redacts"], None)
    return set(votes.values())


async def one_run(url: str, reactions: int, voters: int) -> dict[str, float]:
    engine = make_engine(url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        room_id = json.loads(RECORDED.read_text())["room_id"]
        h = Harness(store=store, platform=PLATFORM)
        h.channel = ChannelRef(PLATFORM, room_id, "Rust learners")
        await h.member("alice", "@alice:peerbot.test").says(
            "/poll create --multiple --closes 30d Which? | a | b | c | d | e"
        )
        target = h.chat.sent[-1].ref.id
        settings = MatrixSettings(homeserver="http://127.0.0.1:9", user_id=BOT, access_token="unused")
        adapter = MatrixAdapter(settings, store, h.engine)
        payload = sync_payload(room_id, target, reactions, voters)
        raw = json.dumps(payload)

        started = time.perf_counter()
        # What the adapter's client does with the HTTP body (SyncClient.create_matrix_response).
        body = json.loads(raw)
        client = adapter.client
        assert isinstance(client, SyncClient)
        client.raw_timelines = split_sync(body)
        response = SyncResponse.from_dict(body)
        assert isinstance(response, SyncResponse)
        await client.receive_response(response)
        parsed = time.perf_counter()
        batch = await adapter._collect(response, "s_before")
        batch.state[NEXT_BATCH_KEY] = response.next_batch
        translated = time.perf_counter()
        await h.engine.handle_batch(batch.events, StateChanges(PLATFORM, batch.state), batch.posts)
        durable = time.perf_counter()

        async with store.read() as tx:
            assert await tx.state(PLATFORM).get(NEXT_BATCH_KEY) == "s_after"
        async with engine.connect() as conn:
            present = (
                select(func.count()).select_from(poll_reactions).where(poll_reactions.c.present.is_(True))
            )
            rows = (await conn.execute(present)).scalar_one()
        expected = len(standing(payload, room_id))
        assert rows == expected, f"{rows} votes stored, {expected} expected"
        return {
            "events": len(batch.events),
            "parse": parsed - started,
            "translate": translated - parsed,
            "apply": durable - translated,
            "total": durable - started,
            "commits": h.engine.votes.batches,
        }
    finally:
        await store.close()


async def main(reactions: int, voters: int, runs: int, url: str | None) -> None:
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="peerbot-bench-") as directory:
            figures = await one_run(url or f"sqlite+aiosqlite:///{directory}/bot.db", reactions, voters)
        verdict = "within" if figures["total"] <= 2.0 else "OVER"
        print(
            f"run {run + 1}: {reactions} events in one /sync ({int(figures['events'])} neutral), durable in"
            f" {figures['total']:.2f} s ({verdict} the 2 s target): nio parse {figures['parse']:.2f} s,"
            f" translate {figures['translate']:.2f} s, engine to durable {figures['apply']:.2f} s"
            f" (in {int(figures['commits'])} commits)"
        )
        if url:
            print("(reusing a PostgreSQL database between runs is not supported: one run only)")
            break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reactions", type=int, default=10_000)
    parser.add_argument("--voters", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.reactions, args.voters, args.runs, args.database_url))
