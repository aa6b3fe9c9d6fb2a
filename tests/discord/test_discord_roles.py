"""The facilitator of the week on Discord: through the real discord.py client and the fake Discord, a member
without Manage Server who holds the role passes the facilitator check in that group's channel only."""

from __future__ import annotations

from tests.fake_discord.scene import DiscordScene


async def test_the_facilitator_of_the_week_facilitates_in_that_channel_only(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    # The command is visible to every member: no Discord permission hides it from bob.
    radar = next(c for c in scene.fake.commands[None] if c["name"] == "radar")
    assert radar["default_member_permissions"] is None
    refused = await scene.bob.runs("/phase set", phase="organizing")
    assert refused.ephemeral and "only facilitators" in refused.content
    took = await scene.bob.runs("/role take", name="facilitator-of-the-week")
    assert took.content == (
        "Bob is now the facilitator-of-the-week (duty: may run facilitator commands in this group while"
        " holding the role)."
    )
    moved = await scene.bob.runs("/phase set", phase="organizing", reason="we have a plan")
    assert not moved.ephemeral and "Bob moved the group from Convening to Organizing" in moved.content
    # #study is another group: there bob is no facilitator.
    elsewhere = await scene.bob.runs("/phase set", scene.study, phase="organizing")
    assert elsewhere.ephemeral
    assert elsewhere.content == "Sorry, only facilitators can use /phase set. Nothing was changed."
    passed = await scene.bob.runs("/role pass", name="facilitator-of-the-week")
    assert "it is free now" in passed.content
    again = await scene.bob.runs("/phase set", phase="cooperating")
    assert again.ephemeral and "only facilitators" in again.content
    # The adapter's own check still counts: carol has the configured role, alice Manage Server.
    assert not (await scene.alice.runs("/phase set", scene.study, phase="organizing")).ephemeral
