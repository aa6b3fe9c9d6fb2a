"""What the bot counts for its operators: a port the composition root fills (Prometheus in
adapters/web), a recorder that counts nothing by default.

The core calls it at the moments that matter (a command answered, votes made durable, a nudge
delivered); it never learns how the numbers are kept or served.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.ports import Store, StoreTx

# Outcomes of a command, for `Metrics.command`.
OK = "ok"  # answered, its change committed
ERROR = "error"  # answered with an error (bad input, a refusal): nothing changed
DUPLICATE = "duplicate"  # the platform delivered it before: skipped
FAILED = "failed"  # it kept failing and was recorded as a failed event (a dead letter)


class Metrics(Protocol):
    """Counters and observations; every method returns at once and never raises."""

    def command(self, name: str, outcome: str) -> None:
        """A command ran (`name` as declared, "goal propose"; "unknown" for none) with an outcome above."""
        ...

    def votes_applied(self, count: int) -> None:
        """Vote changes made durable."""
        ...

    def events_deduplicated(self, count: int) -> None:
        """Inbound platform events skipped because they were applied before (replays)."""
        ...

    def nudges(self, outcome: str, count: int) -> None:
        """Scheduled nudges `delivered`; `skipped`: schedules that skipped occurrences past the grace
        window (once for each schedule and gap); `coalesced`: missed occurrences folded into a delivery."""
        ...

    def outbox(self, outcome: str, count: int) -> None:
        """Outbox rows `sent`, `failed` for good, `dropped` as too old, or `retried`."""
        ...

    def tick_lag(self, seconds: float) -> None:
        """How much later than planned the last tick started."""
        ...

    def reconnected(self, platform: str) -> None:
        """An adapter's connection to its platform came back after it was lost."""
        ...

    def rate_limit_wait(self, platform: str, seconds: float) -> None:
        """The bot held a request back for a platform's rate limit (pacing, or a 429's retry-after)."""
        ...

    def transaction(self, seconds: float) -> None:
        """A database transaction took this long, from its start to its commit or rollback."""
        ...


class NoMetrics:
    """Counts nothing: the default where nobody serves metrics (tests, tools)."""

    def command(self, name: str, outcome: str) -> None:
        pass

    def votes_applied(self, count: int) -> None:
        pass

    def events_deduplicated(self, count: int) -> None:
        pass

    def nudges(self, outcome: str, count: int) -> None:
        pass

    def outbox(self, outcome: str, count: int) -> None:
        pass

    def tick_lag(self, seconds: float) -> None:
        pass

    def reconnected(self, platform: str) -> None:
        pass

    def rate_limit_wait(self, platform: str, seconds: float) -> None:
        pass

    def transaction(self, seconds: float) -> None:
        pass


NO_METRICS: Metrics = NoMetrics()


class TimedStore:
    """A store whose transactions report how long they took (`Metrics.transaction`); reads included.

    A wrapper rather than a hook in each store: the SQL store and the tests' memory store are timed alike.
    """

    def __init__(
        self, store: Store, metrics: Metrics, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.inner = store
        self.metrics = metrics
        self._timer = timer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTx]:
        started = self._timer()
        try:
            async with self.inner.transaction() as tx:
                yield tx
        finally:
            self.metrics.transaction(self._timer() - started)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[StoreTx]:
        started = self._timer()
        try:
            async with self.inner.read() as tx:
                yield tx
        finally:
            self.metrics.transaction(self._timer() - started)
