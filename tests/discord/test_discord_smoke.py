from __future__ import annotations

from tests.fake_discord.scene import DiscordScene


async def test_a_slash_command_gets_its_answer(discord_bot: DiscordScene) -> None:
    answer = await discord_bot.alice.runs("/phase show")
    assert "Convening" in answer.content
    assert not answer.ephemeral
