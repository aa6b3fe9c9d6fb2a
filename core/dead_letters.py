"""Dead letters: an inbound event that keeps failing is recorded as failed and skipped.

One event the code cannot apply (a bug, data it does not expect) must neither stall the events after it
nor be retried for ever. It is tried `EVENT_ATTEMPTS` times, then kept with its reason for the operator
(`peerbot events --failed`) and marked applied, so a platform's replay skips it too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from core.events import CommandInvoked, ReactionEvent
from core.ports import StoreTx

log = logging.getLogger(__name__)

T = TypeVar("T")

EVENT_ATTEMPTS = 3
SORRY = "Sorry, something went wrong while handling that command. Nothing was changed."


class GaveUp(Exception):
    """Every attempt at an event failed; `failure` is the last error."""

    def __init__(self, failure: Exception) -> None:
        super().__init__(str(failure))
        self.failure = failure


async def attempts(apply: Callable[[], Awaitable[T]], event: CommandInvoked | ReactionEvent) -> T:
    """What `apply` returns, tried up to `EVENT_ATTEMPTS` times; `GaveUp` when every try failed.

    Trying again is safe: each event is applied at most once (dedupe on its id).
    """
    failure: Exception | None = None
    for attempt in range(1, EVENT_ATTEMPTS + 1):
        try:
            return await apply()
        except Exception as error:
            failure = error
            log.exception("event %s failed (attempt %d of %d)", event.event_id, attempt, EVENT_ATTEMPTS)
    assert failure is not None
    raise GaveUp(failure)


async def record(
    tx: StoreTx, event: CommandInvoked | ReactionEvent, failure: Exception, now: datetime
) -> None:
    """Keep the event as failed, with its reason, and mark it applied."""
    channel = event.channel if isinstance(event, CommandInvoked) else event.message.channel
    reason = f"{type(failure).__name__}: {failure}"[:500]
    await tx.events.record_failed(channel.platform, event.event_id, now, reason)
