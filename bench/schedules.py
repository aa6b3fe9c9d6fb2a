"""Scheduler benchmark: 50,000 schedules due in the same minute, delivered to an in-memory port.

    python bench/schedules.py [--schedules 50000] [--database-url URL] [--crons shared|distinct]
                              [--processes 1,2,4] [--runs 1] [--cold]

`--crons shared`: every schedule is `0 18 * * *` in UTC. `--crons distinct`: every schedule has a cron
expression of its own and its group a timezone of its own (from every IANA zone), all due at the same
minute (18:00 UTC); the shared baseline is measured first in the same run and the ratio printed.

`--processes 1,2,4` (PostgreSQL): the distinct schedules delivered by that many `peerbot`-built engines
in separate processes on one database, ticking together; each count after the first prints its ratio
to the first (one process) measured in the same run.

A running bot ticks every second, and the first tick within a minute of the due time (core/outbox.py
`AHEAD`) prepares the posts: claims, delivery records and outbox rows written, leased to the process,
next occurrences planned. The benchmark makes that tick at the start of the minute before (timed: it
must end before the due time), one a second before the due time (the ticks between keep the leases of
what is held), then the due tick. `--cold` leaves the preparing tick out: the bot
starts at the due time and does it all then (a restart, or schedules added within the last minute).

Each run prints one line: how long delivering all of them took (from the due tick to the last post),
p50/p99/max lateness (from the due tick to each post), whether each was delivered exactly once, how long
the preparing tick took (with planning the next occurrences) and the due tick, and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text

from adapters.sql.schema import groups, schedules
from bot.app import build_engine, open_store, started_up
from bot.config import parse_config
from core.outbox import AHEAD
from core.ports import Outbound
from core.refs import ChannelRef, MessageRef
from tests.support import FakeClock

DUE = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CountingChat:
    """An in-memory ChatPort that records when each message was posted (wall time)."""

    platform = "fake"
    command_prefix = "/"
    interactive_replies = True
    threads = False

    def __init__(self) -> None:
        self.posted: list[tuple[str, float]] = []

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.posted.append((message.text, time.time()))
        return MessageRef(channel, str(len(self.posted)))

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.send(to.channel, message)

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None: ...

    async def edit(self, message: MessageRef, new: Outbound) -> None: ...

    async def direct_message(self, user: object, message: Outbound, *, key: str | None = None) -> MessageRef:
        return await self.send(ChannelRef("fake", "dm"), message)

    async def is_facilitator(self, user: object, channel: ChannelRef) -> bool:
        return False


def distinct_crons(count: int) -> list[tuple[str, str]]:
    """(cron, timezone) for `count` schedules: every cron expression different, the zones taken in turn
    from every IANA zone, each firing at DUE in its zone. The second minute, hour and weekday in each
    expression make the next occurrences differ too (minutes to days later)."""
    zones = sorted(z for z in available_timezones() if "/" in z or z == "UTC")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    variant = [0] * len(zones)
    i = 0
    while len(out) < count:
        z = i % len(zones)
        i += 1
        local = DUE.astimezone(ZoneInfo(zones[z]))
        while True:
            k = variant[z]
            variant[z] += 1
            minute = f"{local.minute},{(local.minute + 1 + k % 59) % 60}"
            hour = f"{local.hour},{(local.hour + 1 + (k // 59) % 23) % 24}"
            weekday = local.weekday()
            extra = (k // (59 * 23)) % 7
            days = "*" if extra == 0 else ",".join(DAYS[d] for d in sorted({weekday, (weekday + extra) % 7}))
            cron = f"{minute} {hour} * * {days}"
            if cron not in seen:
                break
        seen.add(cron)
        out.append((cron, zones[z]))
    return out


async def fill(url: str, count: int, crons: str) -> None:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    created = DUE - timedelta(days=1)
    kinds = distinct_crons(count) if crons == "distinct" else [("0 18 * * *", "UTC")] * count
    async with store.transaction() as tx:
        for start in range(0, count, 5000):
            ids = range(start + 1, min(start + 5000, count) + 1)
            await tx.conn.execute(
                insert(groups),
                [
                    {
                        "id": i,
                        "platform": "fake",
                        "channel_id": f"c{i}",
                        "channel_name": f"#c{i}",
                        "phase": "cooperating",
                        "phase_since": created,
                        "created_at": created,
                        "timezone": kinds[i - 1][1],
                        # A running bot planned its groups' radars long ago: not the due tick's work.
                        "radar_next_at": DUE + timedelta(days=3),
                    }
                    for i in ids
                ],
            )
            await tx.conn.execute(
                insert(schedules),
                [
                    {
                        "group_id": i,
                        "kind": "nudge",
                        "cron": kinds[i - 1][0],
                        "description": kinds[i - 1][0],
                        "text": f"n{i}",
                        "paused": False,
                        "next_occurrence": DUE,
                        "next_due_at": DUE,
                        "created_by": "bench",
                        "created_at": created,
                    }
                    for i in ids
                ],
            )
    if url.startswith("postgresql"):
        # A live database has its statistics (autovacuum); one just filled has none, and PostgreSQL would
        # plan the due queries for empty tables (a nested loop over every group: seconds a batch).
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    await store.close()


@dataclass
class Run:
    label: str
    texts: list[str]
    lateness: list[float]
    tick: float  # the due tick, planning included
    peak_mb: float
    shares: list[int]
    prepared: float | None = None  # the tick before the due minute that prepared the posts

    def line(self, count: int) -> str:
        late = sorted(self.lateness)
        q = statistics.quantiles(late, n=100, method="inclusive")
        once = len(set(self.texts)) == count == len(self.texts)
        shares = f"; per process {'/'.join(map(str, self.shares))}" if len(self.shares) > 1 else ""
        before = (
            "not prepared (cold)"
            if self.prepared is None
            else f"prepared {AHEAD.total_seconds():.0f} s ahead in {self.prepared:.2f} s"
        )
        if extra := overrun(self.prepared):
            before += f" (past the due time: {extra:.2f} s added to the lateness)"
        return (
            f"{self.label}: delivered {len(self.texts):,} of {count:,} in {late[-1]:.2f} s,"
            f" exactly once: {once};"
            f" lateness p50 {q[49]:.3f} s, p99 {q[98]:.3f} s, max {late[-1]:.3f} s; {before};"
            f" due tick {self.tick:.2f} s; peak RSS {self.peak_mb:.0f} MB{shares}"
        )

    @property
    def p99(self) -> float:
        return statistics.quantiles(sorted(self.lateness), n=100, method="inclusive")[98]

    @property
    def all_in(self) -> float:
        return max(self.lateness)


async def engine_for(url: str) -> tuple[object, FakeClock, CountingChat, object]:
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    clock = FakeClock(DUE - timedelta(minutes=10))
    chat = CountingChat()
    engine = build_engine(config, store, clock, [chat], instance=f"bench-{os.getpid()}")
    await engine.tick()  # the first tick: nothing due yet
    assert not chat.posted
    started_up()  # as `peerbot run` does once it has started
    return store, clock, chat, engine


async def prepare(clock: FakeClock, chat: CountingChat, engine: object) -> float:
    """The first tick within `AHEAD` of the due time, as a bot ticking every second makes it; how long it
    took (it prepares the posts and plans the next occurrences). Should it take longer than the minute,
    the due tick would start late by the difference: `overrun` adds it to the lateness."""
    clock.current = DUE - AHEAD
    started = time.time()
    await engine.tick()  # type: ignore[attr-defined]
    took = time.time() - started
    assert not chat.posted
    # The ticks of the rest of the minute find nothing to do but keep the leases of what is held (the
    # first of them, after a preparing tick longer than a third of a lease); the last is a second before.
    clock.current = DUE - timedelta(seconds=1)
    await engine.tick()  # type: ignore[attr-defined]
    assert not chat.posted
    return took


def overrun(prepared: float | None) -> float:
    """How late the due tick would start, the preparing tick having run past it (a second before)."""
    return max(0.0, (prepared or 0.0) - (AHEAD.total_seconds() - 1))


async def in_process(url: str, label: str, cold: bool) -> Run:
    store, clock, chat, engine = await engine_for(url)
    prepared = None if cold else await prepare(clock, chat, engine)
    clock.current = DUE + timedelta(seconds=1)
    started = time.time()
    await engine.tick()  # type: ignore[attr-defined]
    tick = time.time() - started
    await engine.tick()  # type: ignore[attr-defined]  # a second tick must find nothing left to do
    await store.close()  # type: ignore[attr-defined]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    posted = [t for t, _ in chat.posted]
    late = overrun(prepared)
    return Run(label, posted, [at - started + late for _, at in chat.posted], tick, peak, [], prepared)


async def worker(url: str, out: str, cold: bool) -> None:
    """One of several processes: ready after its first tick; then, when told, the tick that prepares
    (unless cold); then the due tick when told `go`."""
    store, clock, chat, engine = await engine_for(url)
    print("ready", flush=True)
    read = asyncio.get_running_loop().run_in_executor
    await read(None, sys.stdin.readline)
    if not cold:
        await prepare(clock, chat, engine)
    print("prepared", flush=True)
    await read(None, sys.stdin.readline)
    clock.current = DUE + timedelta(seconds=1)
    await engine.tick()  # type: ignore[attr-defined]
    ended = time.time()
    await engine.tick()  # type: ignore[attr-defined]
    await store.close()  # type: ignore[attr-defined]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = json.dumps({"posted": chat.posted, "ended": ended, "peak": peak})
    Path(out).write_text(result)  # noqa: ASYNC240 - the run is over; nothing else waits


def tell(workers: list[subprocess.Popen[str]], word: str) -> float:
    at = time.time()
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(f"{word}\n")
        w.stdin.flush()
    return at


def processes(url: str, n: int, tmp: str, cold: bool) -> Run:
    outs = [str(Path(tmp) / f"worker{i}.json") for i in range(n)]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", out, "--database-url", url, *(["--cold"] if cold else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    preparing = tell(workers, "prepare")  # the processes tick together in the minute before
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "prepared"
    prepared = None if cold else time.time() - preparing
    started = tell(workers, "go")
    for w in workers:
        assert w.wait(timeout=600) == 0
    results = [json.loads(Path(out).read_text()) for out in outs]
    posted = [p for r in results for p in r["posted"]]
    return Run(
        f"{n} process{'es' if n > 1 else ''}",
        [t for t, _ in posted],
        [at - started + overrun(prepared) for _, at in posted],
        max(r["ended"] for r in results) - started,
        max(r["peak"] for r in results),
        [len(r["posted"]) for r in results],
        prepared,
    )


async def reset(url: str) -> None:
    """Empty a PostgreSQL database for the next run (a SQLite run gets a new file)."""
    config = parse_config({"database": {"url": url}}, env={})
    store = await open_store(config)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await store.close()


async def one(url: str | None, tmp: str, count: int, crons: str, n: int | None, cold: bool) -> Run:
    if url is None:
        url = f"sqlite+aiosqlite:///{Path(tmp) / f'bench-{time.monotonic_ns()}.db'}"
    else:
        await reset(url)
    await fill(url, count, crons)
    if n is None:
        return await in_process(url, f"{crons} crons", cold)
    return processes(url, n, tmp, cold)


def main(count: int, url: str | None, crons: str, counts: list[int] | None, runs: int, cold: bool) -> None:
    backend = "PostgreSQL" if url and url.startswith("postgresql") else "SQLite"
    print(f"{count:,} schedules, {backend}{', cold' if cold else ''}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            if counts is not None:
                first: Run | None = None
                for n in counts:
                    run = asyncio.run(one(url, tmp, count, "distinct", n, cold))
                    print(run.line(count), flush=True)
                    if first is None:
                        first = run
                    else:
                        ahead = (
                            f", prepared in {run.prepared / first.prepared:.0%}"
                            if run.prepared and first.prepared
                            else ""
                        )
                        print(
                            f"  {n} processes vs 1: all delivered in {run.all_in / first.all_in:.0%}"
                            f" of the time, p99 {run.p99 / first.p99:.0%}{ahead}",
                            flush=True,
                        )
                continue
            shared = asyncio.run(one(url, tmp, count, "shared", None, cold))
            print(shared.line(count), flush=True)
            if crons == "distinct":
                distinct = asyncio.run(one(url, tmp, count, "distinct", None, cold))
                print(distinct.line(count), flush=True)
                print(
                    f"  distinct vs shared: p99 {distinct.p99 / shared.p99:.2f}x,"
                    f" all delivered {distinct.all_in / shared.all_in:.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--schedules", type=int, default=50_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--crons", choices=("shared", "distinct"), default="distinct")
    parser.add_argument("--processes", default=None, help="process counts, e.g. 1,2,4 (or 4: 1 and 4)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="no tick before the due minute prepares")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.database_url, args.worker, args.cold))
        sys.exit(0)
    counts = None
    if args.processes and not (args.database_url or "").startswith("postgresql"):
        parser.error("--processes needs --database-url postgresql+asyncpg://... (SQLite serves one process)")
    if args.processes:
        counts = sorted({1, *(int(n) for n in args.processes.split(","))})
    main(args.schedules, args.database_url, args.crons, counts, args.runs, args.cold)
