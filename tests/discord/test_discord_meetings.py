"""Meetings on Discord through the real client: the announcement gets its RSVP reactions and a thread,
and RSVPs are counted once across a gateway RESUME (replayed events) and a restart (read over REST)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.events import ReactionAdded, ReactionRemoved
from tests.fake_discord.scene import DiscordScene


def reactions_received(scene: DiscordScene) -> int:
    return sum(isinstance(e, ReactionAdded | ReactionRemoved) for e in scene.received)


async def rsvps_applied(scene: DiscordScene, count: int) -> None:
    assert scene.engine is not None
    await scene.engine.until(lambda: reactions_received(scene) >= count)


async def announce(scene: DiscordScene) -> dict:  # type: ignore[type-arg]
    """Add a meeting later today: its announcement is due at once (less than a day ahead)."""
    answer = await scene.alice.runs("/meet add", when="daily 18:00 | Reading circle")
    assert "Meeting 1 added" in answer.content, answer.content
    assert scene.engine is not None
    scene.clock.advance(timedelta(seconds=1))
    await scene.engine.engine.tick()
    await scene.engine.engine.settle()
    fake = scene.fake
    found = [m for m in fake.sent_messages(scene.channel) if m["content"].startswith("📅")]
    assert len(found) == 1, [m["content"] for m in fake.sent_messages(scene.channel)]
    (message,) = found
    return message


async def rsvp_line(scene: DiscordScene) -> str:
    text = (await scene.bob.runs("/meet list")).content
    (line,) = [x for x in text.splitlines() if x.startswith("1. ")]
    return line


async def test_the_announcement_has_rsvp_reactions_and_a_thread_and_a_resume_counts_once(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    assert scene.bot is not None
    await asyncio.wait_for(scene.bot.wait_reconciled(1), 5)
    message = await announce(scene)
    assert fake.bot_reactions(message) == ["✅", "❔", "❌"]
    thread = fake.thread_from(message)
    assert fake.sent_messages(thread)[0]["content"].startswith("A place for meeting 1 on")
    scene.alice.reacts(message, "✅")
    await rsvps_applied(scene, 1)
    fake.drop_gateway()
    scene.bob.reacts(message, "❔")  # while the connection is down: replayed on RESUME
    await fake.until(lambda: len(fake.resumes) == 1)
    scene.carol.reacts(message, "✅")
    await rsvps_applied(scene, 3)
    assert len(fake.identifies) == 1
    assert "RSVPs ✅ 2, ❔ 1, ❌ 0" in await rsvp_line(scene)


async def test_rsvps_changed_while_the_bot_was_stopped_are_reconciled_once_on_start(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    message = await announce(scene)
    scene.alice.reacts(message, "✅")
    scene.bob.reacts(message, "✅")
    await rsvps_applied(scene, 2)
    await scene.stop_bot()

    scene.bob.unreacts(message, "✅")  # a change of mind while the bot was away
    scene.bob.reacts(message, "❌")
    scene.carol.reacts(message, "❔")
    bot = await scene.start_bot()
    report = await asyncio.wait_for(bot.wait_reconciled(1), 5)
    assert report.changed == 2
    assert reactions_received(scene) == 0  # read over REST, not replayed
    assert "RSVPs ✅ 1, ❔ 1, ❌ 1" in await rsvp_line(scene)
    await scene.stop_bot()
    bot = await scene.start_bot()  # a second start finds nothing more to change
    report = await asyncio.wait_for(bot.wait_reconciled(1), 5)
    assert report.changed == 0
    assert "RSVPs ✅ 1, ❔ 1, ❌ 1" in await rsvp_line(scene)
