"""Votes cast while the bot had no gateway session are recovered from the reactions on the poll messages.

The gateway replays missed events only on RESUME; after a new session (a restart, or an invalidated
session) the adapter reads the reactions over REST and the engine sets the open polls' votes to them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from adapters.discord import adapter as discord_adapter
from core.events import ReactionAdded, ReactionRemoved
from core.refs import ChannelRef
from tests.fake_discord.open_polls import poll_message, seed_groups, seed_polls, votes
from tests.fake_discord.scene import DiscordScene, Member
from tests.fake_discord.server import FakeDiscord

RECONCILE_ROUTES = {"get_message", "get_reactions"}


def reactions_received(scene: DiscordScene) -> int:
    return sum(isinstance(e, ReactionAdded | ReactionRemoved) for e in scene.received)


async def votes_applied(scene: DiscordScene, count: int) -> None:
    assert scene.engine is not None
    await scene.engine.until(lambda: reactions_received(scene) >= count)


def on_message(fake: FakeDiscord, message: dict[str, Any]) -> dict[str, set[str]]:
    """The members' reactions on the message, per emoji (the bot's own left out)."""
    return {
        e: users - {fake.bot.id}
        for (m, e), users in fake.reactions.items()
        if m == message["id"] and users - {fake.bot.id}
    }


async def tally(scene: DiscordScene, poll_id: int) -> dict[str, int]:
    """The counts `/poll results` shows, per emoji."""
    text = (await scene.alice.runs("/poll results", id=poll_id)).content
    counts = {}
    for line in text.splitlines()[1:-1]:  # "✅ agree  ███████░░░ 2 (67%)"
        counts[line.split()[0]] = int(line.split(" (")[0].split()[-1])
    return counts


async def test_votes_changed_while_the_bot_was_stopped_are_reconciled_on_start(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    dave = Member(scene, fake.add_member(scene.guild, "dave"))
    assert scene.store is not None
    async with scene.store.transaction() as tx:  # on the roster and not voting yet: no early decision
        group = await tx.groups.get(ChannelRef("discord", scene.channel.id))
        assert group is not None
        await tx.members.add(group.id, dave.user_ref(), scene.clock.now())
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    (poll,) = fake.sent_messages(scene.channel)
    scene.alice.reacts(poll, "✅")
    scene.bob.reacts(poll, "✅")
    scene.carol.reacts(poll, "🤔")
    await votes_applied(scene, 3)
    await scene.stop_bot()

    dave.reacts(poll, "✅")  # a new vote
    scene.bob.unreacts(poll, "✅")  # a vote taken back
    scene.carol.unreacts(poll, "🤔")  # a change of mind
    scene.carol.reacts(poll, "⛔")
    assert not any(s.alive for s in fake.sessions.values())  # nobody was told

    bot = await scene.start_bot()
    report = await asyncio.wait_for(bot.wait_reconciled(1), 5)
    assert (report.polls, report.changed, report.skipped) == (1, 4, 0)
    assert reactions_received(scene) == 0  # recovered from REST, not from gateway events
    assert await tally(scene, 1) == {e: len(u) for e, u in on_message(fake, poll).items()} | {"🤔": 0}

    assert scene.engine is not None
    scene.clock.advance(timedelta(hours=48))
    await scene.engine.engine.tick()
    outcome = fake.sent_messages(fake.thread_from(poll))[-1]["content"]
    assert outcome.startswith("Goal 1 is blocked: Learn Rust together (✅ 2, 🤔 0, ⛔ 1).")


async def test_a_resumed_session_is_not_reconciled(discord_bot: DiscordScene) -> None:
    """RESUME replays what was missed, so the reactions are not read again over REST."""
    scene = discord_bot
    fake = scene.fake
    assert scene.bot is not None
    await asyncio.wait_for(scene.bot.wait_reconciled(1), 5)  # the start's pass, before any poll
    await scene.alice.runs("/poll create", question="Tea or coffee?", option1="tea", option2="coffee")
    (poll,) = fake.sent_messages(scene.channel)
    tea, coffee = fake.bot_reactions(poll)
    scene.alice.reacts(poll, tea)
    await votes_applied(scene, 1)
    linked = len(fake.requests)  # linking the poll read its message once (votes cast before the link)
    fake.drop_gateway()
    scene.bob.reacts(poll, coffee)  # while the connection is down: replayed on RESUME
    await fake.until(lambda: len(fake.resumes) == 1)
    scene.carol.reacts(poll, tea)  # after RESUMED: the bot has processed the resume once this arrives
    await votes_applied(scene, 3)
    assert len(fake.identifies) == 1
    assert len(scene.bot.reconciled) == 1 and not scene.bot.reconciling
    assert not RECONCILE_ROUTES & {r.route for r in fake.requests[linked:]}
    assert await tally(scene, 1) == {tea: 2, coffee: 1}


async def test_votes_cast_before_the_poll_was_linked_to_its_message_count(discord_bot: DiscordScene) -> None:
    """Bob votes while the bot still waits for Discord's answer to the poll's post: his reaction is on
    a message that is no poll's yet, so the event changes nothing. Linking the poll reads it."""
    scene = discord_bot
    fake = scene.fake
    held = fake.hold("create_message", applied=True)
    creating = asyncio.create_task(
        scene.alice.runs("/poll create", question="Tea or coffee?", option1="🍵 tea", option2="☕ coffee")
    )
    await asyncio.wait_for(held.reached, 5)
    (poll,) = fake.sent_messages(scene.channel)
    scene.bob.reacts(poll, "☕")
    await votes_applied(scene, 1)
    held.release()
    await creating
    assert sorted(fake.bot_reactions(poll)) == sorted(["🍵", "☕"])
    assert await tally(scene, 1) == {"🍵": 0, "☕": 1}


async def test_a_deleted_poll_message_is_skipped_and_the_other_polls_reconciled(
    discord_bot: DiscordScene,
) -> None:
    """Poll 2 has more voters than one page of reaction users (100)."""
    scene = discord_bot
    fake = scene.fake
    crowd = [Member(scene, fake.add_member(scene.guild, f"member{i}")) for i in range(120)]
    await scene.alice.runs("/poll create", question="Tea or coffee?", option1="tea", option2="coffee")
    await scene.alice.runs("/poll create", question="Where?", option1="park", option2="library")
    first, second = fake.sent_messages(scene.channel)
    park, library = fake.bot_reactions(second)
    scene.alice.reacts(second, library)
    scene.bob.reacts(first, fake.bot_reactions(first)[0])
    await votes_applied(scene, 2)
    await scene.stop_bot()

    for member in crowd:
        member.reacts(second, park)
    scene.alice.unreacts(second, library)
    fake.delete_message(first)

    bot = await scene.start_bot()
    report = await asyncio.wait_for(bot.wait_reconciled(1), 5)
    assert (report.polls, report.changed, report.skipped) == (2, 121, 1)
    statuses = {(r.route, r.status) for r in fake.requests if r.route in RECONCILE_ROUTES}
    assert statuses == {("get_message", 404), ("get_message", 200), ("get_reactions", 200)}
    assert [r.route for r in fake.requests].count("get_reactions") == 2  # 100 users, then 20
    assert await tally(scene, 2) == {park: 120, library: 0}


async def test_an_unreadable_poll_message_is_skipped_with_a_log_line(
    discord_bot: DiscordScene, caplog: pytest.LogCaptureFixture
) -> None:
    scene = discord_bot
    fake = scene.fake
    await scene.alice.runs("/poll create", question="Tea or coffee?", option1="tea", option2="coffee")
    await scene.alice.runs("/poll create", question="Where?", option1="park", option2="library")
    first, second = fake.sent_messages(scene.channel)
    await scene.stop_bot()
    scene.bob.reacts(first, fake.bot_reactions(first)[0])
    scene.bob.reacts(second, fake.bot_reactions(second)[0])
    fake.fail("get_message", 403)  # the first poll's channel hides its history from the bot now

    caplog.set_level(logging.INFO, logger="adapters.discord.adapter")
    bot = await scene.start_bot()
    report = await asyncio.wait_for(bot.wait_reconciled(1), 5)
    assert (report.polls, report.changed, report.skipped) == (2, 1, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert f"may not read poll message {first['id']} (403): not reconciled" in messages
    assert "new session on shard 0: checked 2 open polls, 1 votes changed, 1 skipped" in messages
    assert await tally(scene, 2) == dict.fromkeys(fake.bot_reactions(second), 0) | {
        fake.bot_reactions(second)[0]: 1
    }


async def test_a_long_reconcile_pass_keeps_under_discords_limits_and_commands_are_answered_meanwhile(
    scene: DiscordScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 open polls with votes cast while the bot was away, in three channels: the new session reads
    them all under the fake's enforced limits (global 50/s, per-channel read buckets; the fixture fails
    the test on any 429), 7 polls per page from the database, and a command sent in the middle of the
    pass is answered."""
    monkeypatch.setattr(discord_adapter, "RECONCILE_PAGE", 7)
    fake = scene.fake
    store = await scene.open_store()
    channels = [fake.add_channel(scene.guild, f"circle-{n}") for n in range(3)]
    group_of = await seed_groups(store.engine, [(c.id, c.name) for c in channels], scene.clock.now())
    voters = [scene.alice.user, scene.bob.user, scene.carol.user]
    posted, cast = [], 0
    for n in range(60):
        message = poll_message(fake, channels[n % 3], f"Poll {n + 1}: which way?")
        cast += votes(fake, message, voters, n + 1)
        posted.append((message["channel_id"], message["id"]))
    await seed_polls(store.engine, group_of, posted, scene.clock.now())

    bot = await scene.start_bot()
    assert bot.reconciling
    answer = await scene.alice.runs("/status")
    assert "Phase" in answer.content or "phase" in answer.content, answer.content
    assert bot.reconciling, "the pass was over before the command was answered"
    report = await asyncio.wait_for(bot.wait_reconciled(1), 60)
    assert (report.polls, report.changed, report.skipped) == (60, cast, 0)
    reads = [r for r in fake.requests if r.route == "get_message"]
    assert len(reads) == 60
    results = await scene.alice.runs("/poll results", channels[1], id=2)  # poll 2 is in #circle-1
    assert "3 voters" in results.content and "1️⃣ one" in results.content, results.content
