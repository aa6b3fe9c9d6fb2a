"""Killing the bot with SIGKILL in the middle of a vote storm loses no accepted vote and counts none twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from adapters.sql import migrate
from adapters.sql.schema import processed_events
from adapters.sql.store import SqlStore, make_engine
from core.polls import NUMBER_EMOJI
from tests.support import Harness

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 20_000


def worker(url: str, events_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", url, str(events_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_sigkill_mid_storm_loses_no_accepted_vote_and_counts_none_twice(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    h.clock.current = datetime.now(UTC)  # the worker runs on the wall clock
    await h.member("alice").says("/poll create --multiple --closes 30d Storm? | a | b | c | d")
    message_id = h.chat.sent[-1].ref.id

    rng = random.Random(2026)
    lines, final = [], {}
    for i in range(EVENTS):
        user, option, add = f"u{rng.randrange(400)}", rng.randrange(4), rng.random() < 0.7
        lines.append(f"e{i} {user} {'+' if add else '-'} {NUMBER_EMOJI[option]} {message_id}")
        final[(user, option)] = add
    events_file = tmp_path / "events.txt"
    events_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    first = worker(url, events_file)
    assert first.stdout is not None
    acked: list[str] = []
    for line in first.stdout:
        if line.startswith("ack "):
            acked.append(line.split()[1])
        if len(acked) >= 4000:
            os.kill(first.pid, signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert len(acked) < EVENTS  # it really died mid-storm

    async with store.transaction() as tx:
        rows = await tx.conn.execute(select(processed_events.c.event_id))
        durable = {r.event_id for r in rows}
    assert set(acked) <= durable, "an acknowledged vote was lost"

    second = worker(url, events_file)  # the platform redelivers everything
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert out.rstrip().endswith("done")

    expected = [0, 0, 0, 0]
    for (_, option), present in final.items():
        expected[option] += present
    assert (await h.tally()).counts == tuple(expected)
    await store.close()
