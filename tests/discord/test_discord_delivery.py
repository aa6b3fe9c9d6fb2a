"""Posts with idempotency keys, and Discord's refusals, through the real discord.py client.

The outbox retries a post whose outcome it does not know with the same key; on Discord the key becomes
each part's nonce, sent with `enforce_nonce`, so the retry finds the message posted the first time.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.discord.adapter import DiscordChat
from core.ports import DeliveryFailed, Outbound
from core.refs import ChannelRef, MessageRef, UserRef
from tests.fake_discord.scene import DiscordScene

LONG = " ".join(f"word{i}" for i in range(600))  # three parts


def chat_of(scene: DiscordScene) -> DiscordChat:
    assert scene.bot is not None
    return scene.bot.chat


def general(scene: DiscordScene) -> ChannelRef:
    return ChannelRef("discord", scene.channel.id)


def wire(scene: DiscordScene) -> list[tuple[str | int | None, bool | None]]:
    """(nonce, enforce_nonce) of every message create the bot sent, in order."""
    bodies = scene.fake.bodies("create_message")
    return [(b.get("nonce"), b.get("enforce_nonce")) for b in bodies]


# The same key posts once -------------------------------------------------------------------------


async def test_posting_twice_with_one_key_creates_one_message(discord_bot: DiscordScene) -> None:
    chat = chat_of(discord_bot)
    first = await chat.send(general(discord_bot), Outbound("Poll 1: tea or coffee?"), key="o17")
    again = await chat.send(general(discord_bot), Outbound("Poll 1: tea or coffee?"), key="o17")
    (posted,) = discord_bot.fake.sent_messages(discord_bot.channel)
    assert first == again == MessageRef(general(discord_bot), posted["id"])
    # The derived nonce replaces discord.py's random one, and is enforced.
    assert wire(discord_bot) == [("o17.0", True), ("o17.0", True)]


async def test_without_a_key_each_post_is_a_new_message(discord_bot: DiscordScene) -> None:
    chat = chat_of(discord_bot)
    first = await chat.send(general(discord_bot), Outbound("hello"))
    second = await chat.send(general(discord_bot), Outbound("hello"))
    assert first != second
    assert len(discord_bot.fake.sent_messages(discord_bot.channel)) == 2
    (one, _), (two, _) = wire(discord_bot)
    assert one != two  # discord.py's own random nonces


async def test_a_split_message_posted_again_with_its_key_duplicates_no_part(
    discord_bot: DiscordScene,
) -> None:
    chat = chat_of(discord_bot)
    discord_bot.fake.buckets["create_message"] = (5, 0.5)  # six creates: a shorter wait for the bucket
    first = await chat.send(general(discord_bot), Outbound(LONG), key="o5")
    again = await chat.send(general(discord_bot), Outbound(LONG), key="o5")
    posted = discord_bot.fake.sent_messages(discord_bot.channel)
    assert len(posted) == 3
    assert " ".join(m["content"] for m in posted) == LONG
    assert first == again and first.id == posted[-1]["id"]  # reactions go on the last part
    assert [n for n, _ in wire(discord_bot)] == ["o5.0", "o5.1", "o5.2"] * 2


async def test_a_split_message_whose_answer_was_lost_midway_is_completed_once(
    discord_bot: DiscordScene,
) -> None:
    """The second part is stored but its answer never arrives: the post fails as not permanent, and
    the retry with the same key posts only the missing third part."""
    chat, fake = chat_of(discord_bot), discord_bot.fake
    fake.buckets["create_message"] = (5, 0.5)
    held = fake.hold("create_message", applied=True, where=lambda r: r.body.get("nonce") == "o8.1")
    posting = asyncio.create_task(chat.send(general(discord_bot), Outbound(LONG), key="o8"))
    await asyncio.wait_for(held.reached, 5)
    assert len(fake.sent_messages(discord_bot.channel)) == 2
    held.cut()
    with pytest.raises(DeliveryFailed) as failed:
        await posting
    assert failed.value.permanent is False
    ref = await chat.send(general(discord_bot), Outbound(LONG), key="o8")
    posted = fake.sent_messages(discord_bot.channel)
    assert " ".join(m["content"] for m in posted) == LONG
    assert ref.id == posted[-1]["id"]


async def test_a_post_that_never_reached_discord_is_posted_by_the_retry(discord_bot: DiscordScene) -> None:
    chat, fake = chat_of(discord_bot), discord_bot.fake
    held = fake.hold("create_message", applied=False)
    posting = asyncio.create_task(chat.send(general(discord_bot), Outbound("a nudge"), key="o9"))
    await asyncio.wait_for(held.reached, 5)
    held.cut()
    with pytest.raises(DeliveryFailed) as failed:
        await posting
    assert failed.value.permanent is False
    assert fake.sent_messages(discord_bot.channel) == []
    ref = await chat.send(general(discord_bot), Outbound("a nudge"), key="o9")
    assert [m["id"] for m in fake.sent_messages(discord_bot.channel)] == [ref.id]


async def test_a_reply_posted_twice_with_one_key_is_one_reply(discord_bot: DiscordScene) -> None:
    chat = chat_of(discord_bot)
    to = await chat.send(general(discord_bot), Outbound("Goal 1 proposed"))
    first = await chat.reply(to, Outbound("Goal 1 accepted"), key="o21")
    again = await chat.reply(to, Outbound("Goal 1 accepted"), key="o21")
    assert first == again
    _, reply = discord_bot.fake.sent_messages(discord_bot.channel)
    assert reply["id"] == first.id and str(reply["message_reference"]["message_id"]) == to.id
    assert wire(discord_bot)[1:] == [("o21.0", True), ("o21.0", True)]


async def test_a_direct_message_posted_twice_with_one_key_is_one_message(discord_bot: DiscordScene) -> None:
    chat = chat_of(discord_bot)
    bob = discord_bot.bob.user_ref()
    first = await chat.direct_message(bob, Outbound("Your reflection is due"), key="o33")
    again = await chat.direct_message(bob, Outbound("Your reflection is due"), key="o33")
    dm = discord_bot.fake.dm_channel(discord_bot.bob.user)
    assert dm is not None
    (posted,) = discord_bot.fake.sent_messages(dm)
    assert first == again == MessageRef(ChannelRef("discord", dm.id), posted["id"])
    assert wire(discord_bot) == [("o33.0", True), ("o33.0", True)]


async def test_a_reaction_added_again_stays_one_reaction(discord_bot: DiscordScene) -> None:
    """A reaction is a PUT: a retry after a restart (no memory of the first) is harmless."""
    scene = discord_bot
    ref = await chat_of(scene).send(general(scene), Outbound("pick"), key="o40")
    await chat_of(scene).react(ref, "✅", key="o41")
    await scene.stop_bot()
    await scene.start_bot()  # a new process knows nothing of the first reaction
    await chat_of(scene).react(ref, "✅", key="o41")
    assert [r.status for r in scene.fake.requests if r.route == "create_reaction"] == [204, 204]
    assert scene.fake.bot_reactions(scene.fake.messages[ref.id]) == ["✅"]


# Refusals ------------------------------------------------------------------------------------------


async def test_missing_permission_is_a_permanent_failure(discord_bot: DiscordScene) -> None:
    discord_bot.fake.fail("create_message", 403)
    with pytest.raises(DeliveryFailed) as failed:
        await chat_of(discord_bot).send(general(discord_bot), Outbound("hi"), key="o1")
    assert failed.value.permanent is True
    assert failed.value.reason == "403 Missing Permissions (code 50013)"
    assert discord_bot.fake.sent_messages(discord_bot.channel) == []


async def test_an_unknown_channel_is_a_permanent_failure(discord_bot: DiscordScene) -> None:
    gone = ChannelRef("discord", "1234567890123")
    with pytest.raises(DeliveryFailed) as failed:
        await chat_of(discord_bot).send(gone, Outbound("hi"), key="o2")
    assert (failed.value.permanent, failed.value.reason) == (True, "404 Unknown Channel (code 10003)")


async def test_reacting_on_a_deleted_message_is_a_permanent_failure(discord_bot: DiscordScene) -> None:
    chat = chat_of(discord_bot)
    ref = await chat.send(general(discord_bot), Outbound("poll"), key="o3")
    discord_bot.fake.delete_message(discord_bot.fake.messages[ref.id])
    with pytest.raises(DeliveryFailed) as failed:
        await chat.react(ref, "✅")
    assert (failed.value.permanent, failed.value.reason) == (True, "404 Unknown Message (code 10008)")


async def test_a_key_whose_message_was_deleted_is_not_posted_again(discord_bot: DiscordScene) -> None:
    """Discord answers a nonce whose message was deleted since with 404: the post is done, for good."""
    chat = chat_of(discord_bot)
    ref = await chat.send(general(discord_bot), Outbound("spam?"), key="o4")
    discord_bot.fake.delete_message(discord_bot.fake.messages[ref.id])
    with pytest.raises(DeliveryFailed) as failed:
        await chat.send(general(discord_bot), Outbound("spam?"), key="o4")
    assert failed.value.permanent is True
    assert discord_bot.fake.sent_messages(discord_bot.channel) == []


async def test_a_direct_message_to_an_unknown_user_is_a_permanent_failure(discord_bot: DiscordScene) -> None:
    stranger = UserRef("discord", "99999999999", "stranger")
    with pytest.raises(DeliveryFailed) as failed:
        await chat_of(discord_bot).direct_message(stranger, Outbound("hi"), key="o6")
    assert (failed.value.permanent, failed.value.reason) == (True, "404 Unknown User (code 10013)")


async def test_a_503_is_a_failure_to_retry_later(discord_bot: DiscordScene) -> None:
    """discord.py retries 500, 502, 504 and 524 by itself (five tries, 25 s of back-off) but not 503:
    that one comes straight back."""
    discord_bot.fake.fail("create_message", 503)
    with pytest.raises(DeliveryFailed) as failed:
        await chat_of(discord_bot).send(general(discord_bot), Outbound("hi"), key="o7")
    assert (failed.value.permanent, failed.value.reason) == (False, "503 Server error")
    assert [r.status for r in discord_bot.fake.requests if r.route == "create_message"] == [503]


async def test_a_rate_limit_discord_py_gave_up_on_is_retried_later(discord_bot: DiscordScene) -> None:
    discord_bot.fake.fail("create_message", 429, times=5, retry_after=0.01)
    with pytest.raises(DeliveryFailed) as failed:
        await chat_of(discord_bot).send(general(discord_bot), Outbound("hi"), key="o10")
    assert failed.value.permanent is False
    assert failed.value.retry_after == 1.0  # Discord's Retry-After header, in whole seconds
    assert [r.status for r in discord_bot.fake.requests if r.route == "create_message"] == [429] * 5
    assert discord_bot.fake.sent_messages(discord_bot.channel) == []
