from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_discord.scene import DiscordScene, restore_discord_addresses
from tests.fake_discord.server import FakeDiscord


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """The fake Discord, running; the test fails if the bot used a route or op the fake does not know."""
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
        restore_discord_addresses()
    assert not fake.unknown_routes, f"the bot used routes the fake does not know: {fake.unknown_routes}"
    provoked = [f"{r.method} {r.path}" for r in fake.rate_limited]
    assert not provoked, f"the bot did not pace itself and hit rate limits: {provoked}"


@pytest.fixture
async def scene(fake_discord: FakeDiscord, tmp_path: Path) -> AsyncIterator[DiscordScene]:
    """A guild on the fake Discord with alice (Manage Server), bob and carol; the bot not started yet."""
    scene = DiscordScene(fake_discord, tmp_path / "peerbot.db")
    try:
        yield scene
    finally:
        await scene.close()


@pytest.fixture
async def discord_bot(scene: DiscordScene) -> AsyncIterator[DiscordScene]:
    """The scene with Peerbot connected and its commands registered."""
    await scene.start_bot()
    yield scene
