"""Time, injected: rules take `now` from a clock so tests never sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """Wall-clock time, optionally shifted (the console's `:advance` moves it forward)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._fixed = start
        self._offset = timedelta()

    def now(self) -> datetime:
        base = self._fixed if self._fixed is not None else datetime.now(UTC)
        return base + self._offset

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta():
            raise ValueError("the clock only moves forward")
        self._offset += delta

    def move_to(self, when: datetime) -> None:
        """Jump forward to `when` (never back)."""
        self.advance(max(when - self.now(), timedelta()))


def utc(dt: datetime) -> datetime:
    """Normalise a datetime to aware UTC (naive values are taken as UTC, as databases return them)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_time(dt: datetime, tz: str = "UTC") -> str:
    """`2026-03-02 18:00 CET`: a moment as the group reads it, in its own timezone."""
    return utc(dt).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def format_age(since: datetime, now: datetime) -> str:
    """A short human age: 'just now', '5 minutes', '3 hours', '2 days'."""
    seconds = int((utc(now) - utc(since)).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "just now"  # pragma: no cover - the loop always returns for seconds >= 60
