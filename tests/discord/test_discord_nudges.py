"""Scheduled nudges reach Discord channels (the scheduler's path: a channel id and nothing else)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.fake_discord.scene import DiscordScene


async def advance(scene: DiscordScene, delta: timedelta) -> None:
    """Move the injected clock forward, doing what comes due on the way (as the ticking job would)."""
    assert scene.engine is not None

    def move_to(when: datetime) -> None:
        scene.clock.current = max(scene.clock.current, when)

    await scene.engine.engine.run_until(scene.clock.now() + delta, move_to)


async def test_a_scheduled_nudge_is_posted_at_its_time_without_pings(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    answer = await scene.alice.runs("/nudge add", schedule="daily 10:00 Time to reflect, @everyone!")
    assert not answer.ephemeral, answer.content
    assert scene.fake.sent_messages(scene.channel) == []

    await advance(scene, timedelta(minutes=59))  # the clock starts at 09:00 UTC
    assert scene.fake.sent_messages(scene.channel) == []
    await advance(scene, timedelta(minutes=2))
    (nudge,) = scene.fake.sent_messages(scene.channel)
    assert "Time to reflect, @everyone!" in nudge["content"]
    assert scene.fake.bodies("create_message")[-1]["allowed_mentions"] == {"parse": []}

    await advance(scene, timedelta(days=1))
    assert len(scene.fake.sent_messages(scene.channel)) == 2


async def test_members_cannot_schedule_nudges(discord_bot: DiscordScene) -> None:
    refused = await discord_bot.bob.runs("/nudge add", schedule="daily 10:00 hello")
    assert refused.ephemeral
    assert "only facilitators" in refused.content


async def test_a_move_to_assessing_is_answered_before_its_review_questions_are_posted(
    discord_bot: DiscordScene,
) -> None:
    """Discord answers the command itself while the outbox posts the questions: they wait out the
    answer's window, so the move is announced first."""
    scene = discord_bot
    answer = await scene.alice.runs("/phase set", phase="assessing")
    assert "moved the group" in answer.content, answer.content
    assert scene.engine is not None
    await scene.engine.engine.settle()
    assert scene.fake.sent_messages(scene.channel) == []  # not yet: the answer goes first

    await advance(scene, timedelta(seconds=3))
    (questions,) = scene.fake.sent_messages(scene.channel)
    assert "q1" in questions["content"]
    routes = [r.route for r in scene.fake.requests]
    answered = max(i for i, route in enumerate(routes) if route == "interaction_callback")
    assert answered < routes.index("create_message")
