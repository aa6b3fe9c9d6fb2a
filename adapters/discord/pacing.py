"""Pacing of REST calls, so that normal work stays under Discord's limits instead of hitting 429s.

discord.py already paces each route bucket from the rate-limit headers Discord sends (message create
per channel, reactions per channel). What it does not pace is the global limit (50 requests/s); the
pacer below keeps the bot's own calls under it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    """A token bucket: on average `rate` calls per second, bursts of at most `burst`.

    Each caller reserves a token (the count may go below zero) and sleeps for its own deficit, so
    waiters go in arrival order without a lock.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take a token; returns how long to wait before using it."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
