"""Vote recording benchmark: reaction events through the engine into SQLite (WAL, synchronous=FULL).

    python bench/votes.py [--events 50000] [--consent]

Prints: sustained votes/s (while 5,000 voters join the roster, then with all of them on it); p50/p99
time from event to durable at a steady 5,000 events/s; a 20,000-event burst until all durable; and the
same load with one transaction per event, as a ratio. With `--consent` the votes go to a goal's consent
poll (✅ 🤔 ⛔) instead of a multiple-choice poll: every batch then asks whether the goal is decided
early (its proposer never votes, so it never is).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from adapters.sql import migrate
from adapters.sql.schema import processed_events
from adapters.sql.store import SqlStore, make_engine
from bot.recurrence import CronRecurrence
from core.clock import SystemClock
from core.engine import Engine
from core.events import ReactionAdded, ReactionRemoved
from core.goals import CONSENT_OPTIONS
from core.polls import NUMBER_EMOJI
from core.refs import MessageRef, UserRef
from core.votes import VoteRecorder
from tests.support import FakeChat, Harness


class Run:
    def __init__(self, store: SqlStore, message: MessageRef, consent: bool = False) -> None:
        self.store = store
        self.message = message
        self.engine = Engine(store, SystemClock(), [FakeChat()], recurrence=CronRecurrence())
        self.counter = 0
        self.emoji = [o.emoji for o in CONSENT_OPTIONS] if consent else list(NUMBER_EMOJI[:5])

    def event(self) -> ReactionAdded | ReactionRemoved:
        self.counter += 1
        n = self.counter
        user = UserRef("fake", f"u{n % 5000}", f"u{n % 5000}")
        kind = ReactionAdded if n % 4 else ReactionRemoved
        return kind(f"b{n}", self.message, user, self.emoji[n % len(self.emoji)])


async def setup(path: Path, consent: bool) -> tuple[SqlStore, MessageRef]:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    h.clock.current = datetime.now(UTC)
    if consent:
        await h.member("alice").says("/goal rules 2 30d")
        await h.member("alice").says("/goal propose Bench the votes")
    else:
        await h.member("alice").says("/poll create --multiple --closes 30d Bench? | a | b | c | d | e")
    return store, h.chat.sent[-1].ref


async def closed_loop(run: Run, recorder: VoteRecorder, total: int, in_flight: int) -> float:
    """Events/s with `in_flight` submitters always waiting."""
    remaining = total

    async def submitter() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await recorder.submit(run.event())

    start = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(in_flight)))
    return total / (time.perf_counter() - start)


async def steady_latency(run: Run, rate: int, seconds: float) -> list[float]:
    """Open loop: submit at `rate` per second, record each event's time to durable."""
    latencies: list[float] = []
    tasks = []

    async def one(sent: float) -> None:
        await run.engine.votes.submit(run.event())
        latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = int((time.perf_counter() - start) * rate) + 1
        while sent < min(due, total):
            tasks.append(asyncio.create_task(one(time.perf_counter())))
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return latencies


async def burst(run: Run, size: int) -> float:
    events = [run.event() for _ in range(size)]
    start = time.perf_counter()
    await asyncio.gather(*(run.engine.handle(e) for e in events))
    return time.perf_counter() - start


def pct(values: list[float], p: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]
    )


async def main(events: int, consent: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, message = await setup(Path(tmp) / "bench.db", consent)
        run = Run(store, message, consent)
        sustained = await closed_loop(run, run.engine.votes, events, in_flight=2000)
        # The same again, every voter now on the group's roster: votes as a group makes them day to day.
        known = await closed_loop(run, run.engine.votes, events, in_flight=2000)
        lat = await steady_latency(run, rate=5000, seconds=5)
        burst_s = await burst(run, 20_000)
        submitted = run.counter
        async with store.transaction() as tx:
            durable = (
                await tx.conn.execute(
                    select(func.count())
                    .select_from(processed_events)
                    .where(processed_events.c.event_id.like("b%"))
                )
            ).scalar()
        single = VoteRecorder(run.engine.work, run.engine.members.reacted, max_batch=1)
        per_event = await closed_loop(run, single, 3000, in_flight=2000)
        await store.close()
    print(
        f"sustained (group commit, 2000 submitters): {sustained:,.0f} votes/s over {events:,} events,"
        f" 5,000 voters joining the roster; {known:,.0f} votes/s over as many with everyone on it"
    )
    print(
        f"event -> durable at 5,000 events/s for 5 s: p50 {pct(lat, 50) * 1000:.1f} ms,"
        f" p99 {pct(lat, 99) * 1000:.1f} ms ({len(lat):,} events)"
    )
    print(f"20,000-event burst fully durable in {burst_s:.2f} s")
    dropped = submitted - durable
    print(f"reaction events durable: {durable:,} of {submitted:,} submitted ({dropped} dropped)")
    print(
        f"one transaction per event: {per_event:,.0f} votes/s; group commit is {sustained / per_event:.1f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--consent", action="store_true", help="vote on a goal's consent poll")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.consent))
