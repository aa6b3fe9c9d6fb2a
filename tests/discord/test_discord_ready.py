"""/ready follows the Discord connection: 503 while the fake Discord is gone, 200 once the bot is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.discord.adapter import DiscordAdapter
from bot import app
from tests.fake_discord.server import FakeDiscord
from tests.web_support import sample, served


async def test_ready_is_503_while_discord_is_gone_and_200_once_the_bot_is_back(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    fake.add_channel(fake.add_guild("Learning Circle"), "general")
    settings = app.DiscordSettings(
        token=fake.token,
        api_base_url=fake.api_base_url,
        gateway_url=fake.gateway_url,
        guild_ready_timeout=0.05,
    )
    async with served(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", discord=settings) as s:
        await asyncio.wait_for(s.bot.adapter(DiscordAdapter).wait_until_ready(), 10)
        await s.until_ready_is(200)
        await fake.stop()
        assert (await s.until_ready_is(503))["reasons"] == ["discord: not connected"]
        await fake.start()  # on the same port, the sessions kept: the bot resumes
        await s.until_ready_is(200, within=60)
        assert sample(await s.metrics(), "peerbot_adapter_reconnects_total", platform="discord") >= 1
