"""The scheduler runtime: APScheduler drives time, the database says what is due.

One ticking job asks the engine to do whatever has come due (close polls, deliver nudges). The
schedules themselves live in the database, so nothing is lost with the process and a second process
on the same PostgreSQL database finds the same work already claimed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.engine import Engine
from core.metrics import NO_METRICS, Metrics

log = logging.getLogger(__name__)

_tickers: dict[int, Ticker] = {}


async def tick(ticker_id: int) -> None:
    """The ticking job: a module-level function taking a plain id, as APScheduler prefers."""
    ticker = _tickers.get(ticker_id)
    if ticker is not None:
        await ticker.run_once()


class Ticker:
    """Ticks the engine every `interval` seconds, and keeps what an operator asks of it: when the
    last tick ended well (`/ready`), and how late the last one started (`Metrics.tick_lag`).

    Times are the process's monotonic clock, never the bot's (which the console's `:advance` moves).
    """

    def __init__(
        self,
        engine: Engine,
        interval_seconds: float = 1.0,
        metrics: Metrics = NO_METRICS,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.interval = interval_seconds
        self.metrics = metrics
        self.wall = wall
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.last_ok: float | None = None  # when the last tick that did not fail ended
        self._last_start: float | None = None

    async def run_once(self) -> None:
        """One tick; a failure is logged, and the next tick tries again."""
        started = self.wall()
        if self._last_start is not None:
            self.metrics.tick_lag(max(0.0, started - self._last_start - self.interval))
        self._last_start = started
        try:
            await self.engine.tick()
        except Exception:
            log.exception("scheduled tick failed; the next tick retries")
        else:
            self.last_ok = self.wall()

    def start(self) -> None:
        _tickers[id(self)] = self
        self.scheduler.add_job(
            tick,
            "interval",
            seconds=self.interval,
            args=[id(self)],
            id="peerbot-tick",
            max_instances=1,  # a slow tick is never run twice at once
            coalesce=True,  # ticks missed while one ran fold into one
            misfire_grace_time=None,
        )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        _tickers.pop(id(self), None)
