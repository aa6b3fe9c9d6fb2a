"""Reminders and early decisions on Discord, through the real discord.py client: a reminder is a direct
message in a DM channel the bot opens, pinging nobody."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.events import ReactionAdded, ReactionRemoved
from tests.fake_discord.scene import DiscordScene
from tests.fake_discord.server import Channel


async def votes_applied(scene: DiscordScene, count: int) -> None:
    assert scene.engine is not None
    await scene.engine.until(
        lambda: sum(isinstance(e, ReactionAdded | ReactionRemoved) for e in scene.received) >= count
    )


def bodies_in(scene: DiscordScene, channel: Channel) -> list[dict[str, Any]]:
    """What the bot asked Discord to post in the channel."""
    return [r.body for r in scene.fake.requests if r.route == "create_message" and channel.id in r.path]


async def test_a_reminder_is_a_direct_message_and_the_group_hears_how_many(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = scene.fake.sent_messages(scene.channel)
    scene.alice.reacts(poll, "✅")
    await votes_applied(scene, 1)
    scene.clock.advance(timedelta(hours=36))
    await scene.engine.engine.tick()
    await scene.engine.engine.settle()
    assert scene.fake.dm_channel(scene.alice.user) is None  # she voted
    for member in (scene.bob, scene.carol):
        dm = scene.fake.dm_channel(member.user)
        assert dm is not None and dm.kind == 1
        (body,) = bodies_in(scene, dm)
        assert body["content"].startswith("A reminder from #general: goal 1 is waiting for your vote.\n")
        assert "React on poll 1 in #general: ✅ agree, 🤔 concerns, ⛔ block." in body["content"]
        assert body["allowed_mentions"] == {"parse": []}
    line = bodies_in(scene, scene.channel)[-1]
    assert (
        line["content"] == "2 of 3 members have not voted on goal 1 yet; voting closes 2026-03-04 09:00 UTC."
    )
    assert line["allowed_mentions"] == {"parse": []}


async def test_a_member_switches_their_reminders_off_with_a_slash_command(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None
    answer = await scene.carol.runs("/remind me", value="off")
    assert answer.content.startswith("You will get no more reminders from #general.")
    refused = await scene.bob.runs("/remind window", percent="50%")
    assert refused.content == "Sorry, only facilitators can change the reminder window. Nothing was changed."
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    scene.clock.advance(timedelta(hours=36))
    await scene.engine.engine.tick()
    await scene.engine.engine.settle()
    assert scene.fake.dm_channel(scene.carol.user) is None
    assert scene.fake.dm_channel(scene.alice.user) is not None


async def test_the_last_vote_of_the_roster_decides_the_goal_at_once(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = scene.fake.sent_messages(scene.channel)
    for member, emoji in ((scene.alice, "✅"), (scene.bob, "✅"), (scene.carol, "🤔")):
        member.reacts(poll, emoji)
    await votes_applied(scene, 3)
    await scene.engine.engine.settle()
    assert scene.fake.sent_messages(scene.fake.thread_from(poll))[-1]["content"].split("\n")[:2] == [
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now.",
        "Decided early: all 3 members on the roster have voted.",
    ]
