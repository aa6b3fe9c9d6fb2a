"""Pacing outbound calls, so that normal work stays under a platform's limits instead of hitting 429s.

Discord: discord.py paces each route bucket from the headers Discord sends, but not the global limit
(50 requests/s); the adapter keeps its own calls under it. Matrix: Synapse's default for a user's
messages is 0.2 per second with a burst of 10, and reactions count as messages.
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
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait  # told how long each wait is (the operators' rate-limit metric)
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
            if self._on_wait is not None:
                self._on_wait(delay)
            await self._sleep(delay)
