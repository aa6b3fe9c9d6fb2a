"""Cron maths for the core's `Recurrence` port, from APScheduler's CronTrigger and zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.lower()
    if token.isascii() and token.isdigit():
        number = int(token)
        if not 0 <= number <= 7:
            raise ValueError(f"day of week {number} is out of 0-7")
        return number % 7
    if token[:3] in CRON_DAYS:
        return CRON_DAYS.index(token[:3])
    raise ValueError(f"unknown day of week '{token}'")


def crontab_days(field: str) -> str:
    """Rewrite a crontab day-of-week field with names.

    In crontab 0 (and 7) is Sunday and 1 is Monday; APScheduler 3 reads numbers as 0 = Monday. Names
    mean the same to both, so numbers are turned into names before APScheduler sees them.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if step_text and not (step_text.isascii() and step_text.isdigit()):
            raise ValueError(f"a step is a whole number, not '{step_text[:10]}'")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError("a step must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _day(a), _day(b) if b not in ("7",) else 7
            if last < first:
                raise ValueError(f"day range {span} runs backwards")
        else:
            first = last = _day(span)
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(CRON_DAYS[d] for d in (1, 2, 3, 4, 5, 6, 0) if d in days)


@lru_cache(maxsize=4096)
def _trigger(cron: str, tz: str) -> CronTrigger:
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has five fields: minute hour day month weekday")
    fields[4] = crontab_days(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo(tz))


class CronRecurrence:
    def check(self, cron: str) -> None:
        _trigger(cron, "UTC")

    @lru_cache(maxsize=65536)  # noqa: B019 - one instance lives as long as the process
    def next_after(self, cron: str, tz: str, after: datetime) -> datetime | None:
        fire = _trigger(cron, tz).get_next_fire_time(None, after + timedelta(microseconds=1))
        return fire.astimezone(UTC) if fire is not None else None
