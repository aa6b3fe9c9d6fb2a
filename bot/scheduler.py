"""The scheduler runtime: APScheduler drives time, the database says what is due.

One ticking job asks the engine to do whatever has come due (close polls, deliver nudges). The
schedules themselves live in the database, so nothing is lost with the process and a second process
on the same PostgreSQL database finds the same work already claimed.
"""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.engine import Engine

log = logging.getLogger(__name__)

_engines: dict[int, Engine] = {}


async def tick(engine_id: int) -> None:
    """The ticking job: a module-level function taking a plain id, as APScheduler prefers."""
    engine = _engines.get(engine_id)
    if engine is None:
        return
    try:
        await engine.tick()
    except Exception:
        log.exception("scheduled tick failed; the next tick retries")


class Ticker:
    def __init__(self, engine: Engine, interval_seconds: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval_seconds
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        _engines[id(self.engine)] = self.engine
        self.scheduler.add_job(
            tick,
            "interval",
            seconds=self.interval,
            args=[id(self.engine)],
            id="peerbot-tick",
            max_instances=1,  # a slow tick is never run twice at once
            coalesce=True,  # ticks missed while one ran fold into one
            misfire_grace_time=None,
        )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        _engines.pop(id(self.engine), None)
