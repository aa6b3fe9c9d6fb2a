"""A thread for every decision on Discord, through the real discord.py client against the fake Discord.

A goal's decision goes into a public thread started from its consent poll's message (the thread's id is
the message's), and #general gets the one-line outcome. Starting the thread twice is answered with code
160004, which the bot takes as success.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.discord.adapter import DiscordChat
from core.ports import DeliveryFailed, Outbound
from core.refs import ChannelRef, MessageRef
from tests.fake_discord.scene import DiscordScene
from tests.fake_discord.server import PUBLIC_THREAD


def chat_of(scene: DiscordScene) -> DiscordChat:
    assert scene.bot is not None
    return scene.bot.chat


def general(scene: DiscordScene) -> ChannelRef:
    return ChannelRef("discord", scene.channel.id)


def gateway_kinds(scene: DiscordScene) -> list[str]:
    return [f["t"] for s in scene.fake.sessions.values() for f in s.frames]


async def test_a_goal_is_decided_in_a_thread_started_from_its_poll(discord_bot: DiscordScene) -> None:
    scene, fake = discord_bot, discord_bot.fake
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = fake.sent_messages(scene.channel)
    for member in (scene.alice, scene.carol):
        member.reacts(poll, "✅")
    scene.bob.reacts(poll, "🤔")  # everyone on the roster has voted: decided at once
    await fake.until(
        lambda: bool(fake.threads_of(scene.channel)) and len(fake.sent_messages(scene.channel)) > 1
    )
    await scene.engine.engine.settle()

    (thread,) = fake.threads_of(scene.channel)
    assert (thread.id, thread.kind, thread.name) == (poll["id"], PUBLIC_THREAD, "Goal 1: Learn Rust together")
    (start,) = [r for r in fake.requests if r.route == "start_thread_from_message"]
    assert start.path.endswith(f"/channels/{scene.channel.id}/messages/{poll['id']}/threads")
    assert (start.status, start.body["auto_archive_duration"]) == (201, 10080)
    assert "THREAD_CREATE" in gateway_kinds(scene)
    (decision,) = fake.sent_messages(thread)
    assert decision["content"].startswith(
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0)."
    )
    assert decision["nonce"] and decision.get("enforce_nonce") is not False
    outcome = fake.sent_messages(scene.channel)[-1]["content"].split("\n")
    assert outcome[0] == "Goal 1 accepted: Learn Rust together."
    assert outcome[1].startswith("Suggestion: the group has a goal it agreed on.")
    # The poll, bob's question about his 🤔 (a direct message), the decision and the outcome.
    assert [b.get("enforce_nonce") for b in fake.bodies("create_message")] == [True] * 4

    # A command given in the thread is the group's: it is answered there, about #general's goals.
    answer = await scene.carol.runs("/goal list", channel=thread)
    assert "Goal 1: Learn Rust together" in answer.content
    assert answer.interaction.channel is thread


async def test_a_group_without_threads_gets_its_decision_in_the_channel(discord_bot: DiscordScene) -> None:
    scene, fake = discord_bot, discord_bot.fake
    assert scene.engine is not None
    answer = await scene.alice.runs("/auto", what="threads", value="off")
    assert answer.content == "Automatic threads is off."
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = fake.sent_messages(scene.channel)
    for member in (scene.alice, scene.carol, scene.bob):
        member.reacts(poll, "✅")
    await fake.until(lambda: len(fake.sent_messages(scene.channel)) > 1)
    await scene.engine.engine.settle()
    assert not fake.threads_of(scene.channel)
    assert not [r for r in fake.requests if r.route == "start_thread_from_message"]
    decision = fake.sent_messages(scene.channel)[-1]["content"]
    assert decision.startswith("Goal 1 accepted by consent: Learn Rust together")


async def test_a_thread_started_already_is_posted_in(discord_bot: DiscordScene) -> None:
    """Started by the bot in a request whose answer was lost: the retry's start gets 160004, and the
    post goes into the thread all the same, once."""
    chat, fake = chat_of(discord_bot), discord_bot.fake
    root = await chat.send(general(discord_bot), Outbound("Poll 1: Goal 1: Learn Rust"))
    held = fake.hold("start_thread_from_message", applied=True)
    posting = asyncio.create_task(
        chat.send_in_thread(root, "Goal 1: Learn Rust", Outbound("decided"), key="pb7")
    )
    await asyncio.wait_for(held.reached, 5)
    held.cut()
    with pytest.raises(DeliveryFailed) as failed:
        await posting
    assert failed.value.permanent is False
    (thread,) = fake.threads_of(discord_bot.channel)
    assert fake.sent_messages(thread) == []

    ref = await chat.send_in_thread(root, "Goal 1: Learn Rust", Outbound("decided"), key="pb7")
    again = await chat.send_in_thread(root, "Goal 1: Learn Rust", Outbound("decided"), key="pb7")
    starts = [r.status for r in fake.requests if r.route == "start_thread_from_message"]
    assert starts == [0, 400]  # the lost answer, then "A thread has already been created" (160004)
    (posted,) = fake.sent_messages(thread)
    assert ref == again == MessageRef(ChannelRef("discord", thread.id, thread.name), posted["id"])
    assert posted["content"] == "decided"


async def test_a_root_message_that_is_gone_fails_for_good(discord_bot: DiscordScene) -> None:
    chat, fake = chat_of(discord_bot), discord_bot.fake
    root = await chat.send(general(discord_bot), Outbound("Poll 1"))
    fake.delete_message(fake.messages[root.id])
    with pytest.raises(DeliveryFailed) as failed:
        await chat.send_in_thread(root, "Goal 1", Outbound("decided"), key="pb8")
    assert failed.value.permanent and "10008" in failed.value.reason


async def test_a_bot_that_may_not_start_threads_posts_the_decision_in_the_channel(
    discord_bot: DiscordScene,
) -> None:
    """Invited before it asked for Create Public Threads: Discord says 403, and the decision is posted in
    full in the channel, once, with no one-line outcome beside it."""
    scene, fake = discord_bot, discord_bot.fake
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = fake.sent_messages(scene.channel)
    fake.fail("start_thread_from_message", 403)
    for member in (scene.alice, scene.carol, scene.bob):
        member.reacts(poll, "✅")
    await fake.until(lambda: len(fake.sent_messages(scene.channel)) > 1)
    await scene.engine.engine.settle()
    assert not fake.threads_of(scene.channel)
    texts = [m["content"] for m in fake.sent_messages(scene.channel)]
    assert len(texts) == 2 and texts[1].startswith("Goal 1 accepted by consent: Learn Rust together")
