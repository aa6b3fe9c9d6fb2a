"""The bounded answer to a homeserver's 429: wait as told, but never hammer and never retry forever."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 5.0


class RateLimited(Exception):
    """The homeserver kept refusing, or asked for a longer wait than the bot is willing to give.

    `retry_after`: the wait the server asked for last, in seconds.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_of(response: Any) -> float | None:
    """Seconds the server asked to wait, when `response` is a nio error for a 429; else None."""
    if getattr(response, "status_code", None) not in ("M_LIMIT_EXCEEDED", 429, "429"):
        return None
    millis = getattr(response, "retry_after_ms", None)
    return millis / 1000 if millis else DEFAULT_RETRY_AFTER


async def with_rate_limit(
    request: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_retries: int,
    max_wait: float,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run `request`, waiting as the server says after a 429, at most `max_retries` times.

    A wait longer than `max_wait` is not taken at all: the call fails at once with `RateLimited`
    instead of holding everything behind it for minutes.
    """
    attempt = 0
    while True:
        response = await request()
        wait = retry_after_of(response)
        if wait is None:
            return response
        attempt += 1
        if attempt > max_retries:
            raise RateLimited(f"{what}: still rate limited after {max_retries} retries", wait)
        if wait > max_wait:
            raise RateLimited(
                f"{what}: the server asked to wait {wait:.1f} s, more than {max_wait:.1f} s", wait
            )
        log.warning("%s: rate limited, retrying in %.2f s (retry %d of %d)", what, wait, attempt, max_retries)
        await sleep(wait)
