"""A group's activity: what members do in its channel, which the heartbeat measures silence against."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.lifecycle import Group
from core.ports import StoreTx

ACTIVITY_RESOLUTION = timedelta(minutes=10)


async def touch(tx: StoreTx, group: Group, now: datetime) -> None:
    """Note activity in a group (for the heartbeat), at most one write per few minutes."""
    if group.last_activity_at is None or now - group.last_activity_at >= ACTIVITY_RESOLUTION:
        await tx.groups.touch_activity(group.id, now)
