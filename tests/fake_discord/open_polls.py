"""Many open polls at once, for reconcile tests and benchmarks: rows written straight into the database
in bulk, and each poll's message with the bot's option reactions and the members' votes put straight into
the fake Discord (as if the bot had posted them before it was stopped)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.sql.schema import groups, polls
from tests.fake_discord.server import Channel, FakeDiscord, User

OPTIONS = (("1️⃣", "one"), ("2️⃣", "two"))
CHUNK = 5_000


@dataclass(frozen=True)
class SeededPoll:
    poll_id: int
    channel_id: str
    message_id: str


async def seed_groups(
    engine: AsyncEngine, channels: Sequence[tuple[str, str]], now: datetime
) -> dict[str, int]:
    """A Discord group for each (channel id, name); returns channel id -> group id."""
    rows = [
        {
            "platform": "discord",
            "channel_id": channel_id,
            "channel_name": f"#{name}",
            "phase": "cooperating",
            "phase_since": now - timedelta(days=30),
            "created_at": now - timedelta(days=30),
            "last_activity_at": now - timedelta(hours=1),
            "heartbeat_sent_at": now - timedelta(hours=1),
        }
        for channel_id, name in channels
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            await conn.execute(insert(groups), rows[start : start + CHUNK])
        found = await conn.execute(
            select(groups.c.channel_id, groups.c.id).where(groups.c.platform == "discord")
        )
        return {channel_id: group_id for channel_id, group_id in found}


async def seed_polls(
    engine: AsyncEngine, group_of: dict[str, int], messages: Sequence[tuple[str, str]], now: datetime
) -> list[SeededPoll]:
    """An open poll (two options, closing in two days) on each (channel id, message id)."""
    rows: list[dict[str, Any]] = [
        {
            "group_id": group_of[channel_id],
            "kind": "poll",
            "question": f"Question {n}: which way shall we go next week?",
            "options": json.dumps(OPTIONS),
            "multiple": False,
            "hidden": False,
            "author_key": "discord:1",
            "author_name": "alice",
            "created_at": now - timedelta(hours=1),
            "closes_at": now + timedelta(days=2),
            "platform": "discord",
            "channel_id": channel_id,
            "message_id": message_id,
        }
        for n, (channel_id, message_id) in enumerate(messages)
    ]
    async with engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            await conn.execute(insert(polls), rows[start : start + CHUNK])
        found = await conn.execute(
            select(polls.c.id, polls.c.channel_id, polls.c.message_id).order_by(polls.c.id)
        )
        return [SeededPoll(*row) for row in found]


def poll_message(fake: FakeDiscord, channel: Channel, text: str) -> dict[str, Any]:
    """The bot's poll message on the fake Discord, with the bot's reaction for each option."""
    message = fake._message(channel.id, fake.bot, {"content": text})
    fake.messages[message["id"]] = message
    for emoji, _ in OPTIONS:
        fake.reactions.setdefault((message["id"], emoji), set()).add(fake.bot.id)
    return message


def votes(fake: FakeDiscord, message: dict[str, Any], voters: Sequence[User], n: int) -> int:
    """Members' votes on the poll, varied by `n`: none on a fifth of the polls, one option voted on most,
    both options on a fifth. Put on the fake directly: cast while the bot had no session. How many."""
    cast = 0
    for index, voter in enumerate(voters):
        if n % 5 == 0:
            break
        option = 0 if n % 5 != 4 else index % 2
        fake.reactions.setdefault((message["id"], OPTIONS[option][0]), set()).add(voter.id)
        cast += 1
    return cast
