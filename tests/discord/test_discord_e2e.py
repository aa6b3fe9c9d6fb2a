"""Peerbot on the real discord.py client, against the fake Discord over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.discord.adapter import DiscordStartError, LoginRejected
from core.commands import COMMANDS
from core.events import CommandInvoked, ReactionAdded, ReactionRemoved, Reply
from core.ports import Outbound
from core.refs import ChannelRef
from tests.fake_discord.scene import DiscordScene

GUILDS_INTENT = 1 << 0
GUILD_MESSAGES_INTENT = 1 << 9
GUILD_REACTIONS_INTENT = 1 << 10
MESSAGE_CONTENT_INTENT = 1 << 15
MESSAGE_BODIES = ("create_message", "edit_message", "create_followup", "edit_original")


def channel_ref(scene: DiscordScene, channel: Any = None) -> ChannelRef:
    return ChannelRef("discord", (channel or scene.channel).id)


def by_name(commands: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in commands if c["name"] == name)


# Start-up -----------------------------------------------------------------------------------------


async def test_commands_are_registered_globally_as_guild_only_slash_commands(
    discord_bot: DiscordScene,
) -> None:
    assert discord_bot.fake.invalid_commands == []
    commands = discord_bot.fake.commands[None]
    assert [c["name"] for c in commands] == list(dict.fromkeys(s.path[0] for s in COMMANDS))
    for command in commands:
        assert command["type"] == 1
        assert command["contexts"] == [0]
    phase = by_name(commands, "phase")
    assert [o["name"] for o in phase["options"]] == ["show", "set", "history"]
    assert all(o["type"] == 1 for o in phase["options"])
    phase_set = by_name(phase["options"], "set")
    chosen, reason = phase_set["options"]
    assert chosen["name"] == "phase" and chosen["required"] is True
    assert [c["value"] for c in chosen["choices"]] == [
        "convening",
        "organizing",
        "cooperating",
        "assessing",
        "changing",
    ]
    assert reason == {
        "type": 3,
        "name": "reason",
        "description": "why the group is moving",
        "required": False,
        "max_length": 300,
    }
    # /phase mixes facilitator and member subcommands, so it stays visible; the bot checks `set`.
    assert phase["default_member_permissions"] is None
    assert by_name(commands, "help")["options"][0]["required"] is False


async def test_commands_go_to_the_configured_guilds_and_are_not_sent_again_unchanged(
    scene: DiscordScene,
) -> None:
    await scene.start_bot(guild_ids=(int(scene.guild.id),))
    assert set(scene.fake.commands) == {scene.guild.id}
    assert [r.route for r in scene.fake.requests].count("put_guild_commands") == 1
    await scene.stop_bot()
    await scene.start_bot(guild_ids=(int(scene.guild.id),))
    assert [r.route for r in scene.fake.requests].count("put_guild_commands") == 1
    answer = await scene.alice.runs("/status")
    assert "Phase: Convening" in answer.content


async def test_the_bot_asks_for_the_minimum_intents(discord_bot: DiscordScene) -> None:
    (identify,) = discord_bot.fake.identifies
    assert identify["intents"] == GUILDS_INTENT | GUILD_REACTIONS_INTENT
    assert not identify["intents"] & (MESSAGE_CONTENT_INTENT | GUILD_MESSAGES_INTENT)


async def test_a_bad_token_is_one_clear_error_without_the_token(scene: DiscordScene) -> None:
    with pytest.raises(LoginRejected) as error:
        await scene.start_bot(token="not-the-token")
    assert str(error.value) == (
        "Discord rejected the bot token (401 Unauthorized): check discord.token or PEERBOT_DISCORD_TOKEN"
    )
    assert "not-the-token" not in str(error.value)


async def test_a_refused_command_list_is_one_clear_error(scene: DiscordScene) -> None:
    scene.fake.fail("put_global_commands", 400)
    with pytest.raises(
        DiscordStartError, match=r"^Discord refused to register the commands: 400 Bad Request"
    ):
        await scene.start_bot()


async def test_the_token_is_never_logged(scene: DiscordScene, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await scene.start_bot()
    await scene.alice.runs("/phase show")
    await scene.stop_bot()
    assert caplog.records
    assert all(scene.fake.token not in r.getMessage() for r in caplog.records)


async def test_shards_identify_with_their_id_and_count(scene: DiscordScene) -> None:
    """This process runs shard 1 of 2; another would run shard 0 (a second IDENTIFY in one process
    waits 5 s, Discord's pace)."""
    await scene.start_bot(shard_count=2, shard_ids=(1,))
    assert [i["shard"] for i in scene.fake.identifies] == [[1, 2]]


async def test_without_a_shard_count_the_bot_runs_the_count_discord_recommends(scene: DiscordScene) -> None:
    """GET /gateway/bot says 2: both shards identify (the second 5 s later, Discord's pace), and the
    server's events reach the shard `(guild_id >> 22) % 2`, which answers its commands."""
    scene.fake.recommended_shards = 2
    bot = await scene.start_bot()
    assert sorted(i["shard"] for i in scene.fake.identifies) == [[0, 2], [1, 2]]
    assert any(r.route == "get_gateway_bot" for r in scene.fake.requests)
    answer = await scene.alice.runs("/phase show")
    assert "Convening" in answer.content or "convening" in answer.content, answer.content
    serving = {g.id: g.shard_id for g in bot.client.guilds}
    assert serving == {int(scene.guild.id): (int(scene.guild.id) >> 22) % 2}


# Slash commands -------------------------------------------------------------------------------------


async def test_a_slash_command_is_answered_in_the_interaction(discord_bot: DiscordScene) -> None:
    answer = await discord_bot.alice.runs("/phase show")
    assert answer.content.startswith("Convening — ")
    assert not answer.ephemeral and not answer.deferred
    assert answer.bodies[0]["allowed_mentions"] == {"parse": []}


async def test_a_usage_error_is_ephemeral(discord_bot: DiscordScene) -> None:
    answer = await discord_bot.bob.runs("/help", command="juggle")
    assert answer.ephemeral
    assert "No command 'juggle'" in answer.content
    assert "Usage: /help [command]" in answer.content


async def test_a_member_without_manage_server_is_refused_a_facilitator_command(
    discord_bot: DiscordScene,
) -> None:
    refused = await discord_bot.bob.runs("/phase set", phase="organizing")
    assert refused.ephemeral
    assert refused.content == "Sorry, only facilitators can use /phase set. Nothing was changed."
    done = await discord_bot.alice.runs("/phase set", phase="organizing", reason="we know each other")
    assert not done.ephemeral
    assert done.content.startswith("Alice moved the group from Convening to Organizing (we know each other).")


@pytest.mark.parametrize("role", ["Facilitators", "by id"])
async def test_the_configured_facilitator_role_may_facilitate(scene: DiscordScene, role: str) -> None:
    await scene.start_bot(facilitator_role=scene.facilitators_role.id if role == "by id" else role)
    answer = await scene.carol.runs("/phase set", phase="cooperating")
    assert not answer.ephemeral
    assert "Carol moved the group" in answer.content
    refused = await scene.bob.runs("/phase set", phase="assessing")
    assert refused.ephemeral


async def test_a_slow_command_is_deferred_then_answered(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None and discord_bot.engine is not None
    discord_bot.engine.delay = 0.3
    object.__setattr__(discord_bot.bot.settings, "defer_after", 0.05)
    answer = await discord_bot.alice.runs("/status")
    assert answer.deferred
    assert answer.content.startswith("Phase: Convening")
    assert not answer.ephemeral


async def test_a_slow_error_is_still_private(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None and discord_bot.engine is not None
    discord_bot.engine.delay = 0.3
    object.__setattr__(discord_bot.bot.settings, "defer_after", 0.05)
    answer = await discord_bot.bob.runs("/phase set", phase="organizing")
    assert answer.deferred
    assert answer.interaction.original_deleted
    assert answer.ephemeral
    assert "only facilitators" in answer.content


async def test_a_long_answer_comes_in_parts_within_the_limit(discord_bot: DiscordScene) -> None:
    assert discord_bot.engine is not None
    long_text = "\n".join(f"line {i}: " + "x" * 90 for i in range(50))
    discord_bot.engine.next_reply = Reply(long_text)
    answer = await discord_bot.alice.runs("/status")
    await answer.in_parts(discord_bot.fake, 3)
    assert len(answer.bodies) == 3
    assert all(len(b["content"]) <= 2000 for b in answer.bodies)
    assert answer.content.replace("\n", "") == long_text.replace("\n", "")


# Messages the bot posts on its own --------------------------------------------------------------------


async def test_an_engine_initiated_post_reaches_any_channel(discord_bot: DiscordScene) -> None:
    """The scheduler's path: a channel id and nothing else, even a channel created after start."""
    assert discord_bot.bot is not None
    later = discord_bot.fake.add_channel(discord_bot.guild, "created-later")
    chat = discord_bot.bot.chat
    ref = await chat.send(channel_ref(discord_bot, later), Outbound("Time to reflect, @everyone!"))
    (posted,) = discord_bot.fake.sent_messages(later)
    assert ref.id == posted["id"] and ref.channel.id == later.id
    assert posted["content"] == "Time to reflect, @everyone!"
    (body,) = discord_bot.fake.bodies("create_message")
    assert body["allowed_mentions"] == {"parse": []}


async def test_long_text_is_split_and_reactions_go_on_the_last_part(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    chat = discord_bot.bot.chat
    text = " ".join(f"word{i}" for i in range(600))
    ref = await chat.send(channel_ref(discord_bot), Outbound(text))
    posted = discord_bot.fake.sent_messages(discord_bot.channel)
    assert len(text) > 4000 and len(posted) == 3
    assert all(len(m["content"]) <= 2000 for m in posted)
    assert " ".join(m["content"] for m in posted) == text
    assert ref.id == posted[-1]["id"]


async def test_every_message_body_the_bot_sends_disables_mentions(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.bot is not None and scene.engine is not None
    chat = scene.bot.chat
    ref = await chat.send(channel_ref(scene), Outbound("@everyone <@&1> <@2> hello"))
    await chat.reply(ref, Outbound("a reply @here"))
    await chat.edit(ref, Outbound("edited @everyone"))
    await chat.direct_message(scene.bob.user_ref(), Outbound("psst @everyone"))
    await scene.alice.runs("/phase show")
    await scene.bob.runs("/phase set", phase="organizing")
    scene.engine.next_reply = Reply("x " * 1500)
    await (await scene.alice.runs("/status")).in_parts(scene.fake, 2)
    scene.engine.delay = 0.2
    object.__setattr__(scene.bot.settings, "defer_after", 0.05)
    await scene.alice.runs("/status")
    bodies = scene.fake.bodies(*MESSAGE_BODIES)
    bodies += [cb["data"] for cb in scene.fake.bodies("interaction_callback") if cb.get("data")]
    routes = {r.route for r in scene.fake.requests}
    assert set(MESSAGE_BODIES) <= routes
    assert len(bodies) >= 8
    for body in bodies:
        mentions = body["allowed_mentions"]
        assert mentions["parse"] == []
        assert not mentions.get("users") and not mentions.get("roles") and not mentions.get("replied_user")


async def test_at_most_twenty_reactions_on_one_message(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    discord_bot.fake.buckets["create_reaction"] = (1, 0.01)
    chat = discord_bot.bot.chat
    ref = await chat.send(channel_ref(discord_bot), Outbound("pick"))
    emoji = [chr(0x1F600 + i) for i in range(22)]
    for e in emoji:
        await chat.react(ref, e)
    message = discord_bot.fake.messages[ref.id]
    assert sorted(discord_bot.fake.bot_reactions(message)) == sorted(emoji[:20])


# Rate limits and server errors -----------------------------------------------------------------------


async def test_normal_work_is_paced_under_the_rate_limits(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    discord_bot.fake.buckets["create_message"] = (5, 0.5)
    chat = discord_bot.bot.chat
    for i in range(8):
        ref = await chat.send(channel_ref(discord_bot), Outbound(f"message {i}"))
    for e in ("✅", "🤔", "⛔"):
        await chat.react(ref, e)
    assert len(discord_bot.fake.sent_messages(discord_bot.channel)) == 8
    assert discord_bot.fake.rate_limited == []


async def test_a_429_on_message_create_is_waited_out_and_sent_once(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    discord_bot.fake.fail("create_message", 429, retry_after=0.2)
    ref = await discord_bot.bot.chat.send(channel_ref(discord_bot), Outbound("after the limit"))
    first, second = [r for r in discord_bot.fake.requests if r.route == "create_message"]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.2
    assert [m["id"] for m in discord_bot.fake.sent_messages(discord_bot.channel)] == [ref.id]


async def test_a_global_429_on_a_reaction_is_waited_out(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    chat = discord_bot.bot.chat
    ref = await chat.send(channel_ref(discord_bot), Outbound("react here"))
    discord_bot.fake.fail("create_reaction", 429, retry_after=0.1, is_global=True)
    await chat.react(ref, "✅")
    statuses = [r.status for r in discord_bot.fake.requests if r.route == "create_reaction"]
    assert statuses == [429, 204]
    assert discord_bot.fake.bot_reactions(discord_bot.fake.messages[ref.id]) == ["✅"]


async def test_a_server_error_on_message_create_is_retried(discord_bot: DiscordScene) -> None:
    assert discord_bot.bot is not None
    discord_bot.fake.fail("create_message", 502)
    await discord_bot.bot.chat.send(channel_ref(discord_bot), Outbound("despite a 502"))
    statuses = [r.status for r in discord_bot.fake.requests if r.route == "create_message"]
    assert statuses == [502, 200]
    assert len(discord_bot.fake.sent_messages(discord_bot.channel)) == 1


# Reactions and the gateway ---------------------------------------------------------------------------


def reactions_received(scene: DiscordScene) -> list[ReactionAdded | ReactionRemoved]:
    return [e for e in scene.received if isinstance(e, ReactionAdded | ReactionRemoved)]


async def test_reactions_reach_the_engine_for_uncached_messages(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None and scene.bot is not None
    ref = await scene.bot.chat.send(channel_ref(scene), Outbound("Shall we?"))
    await scene.bot.chat.react(ref, "✅")
    message = scene.fake.messages[ref.id]
    scene.bob.reacts(message, "✅")
    scene.bob.unreacts(message, "✅")
    await scene.engine.until(lambda: len(reactions_received(scene)) == 2)
    added, removed = reactions_received(scene)
    assert isinstance(added, ReactionAdded) and isinstance(removed, ReactionRemoved)
    assert (added.user.id, added.message.id, added.emoji) == (scene.bob.id, ref.id, "✅")
    assert added.user.display == "Bob"
    assert (removed.user.id, removed.message.id, removed.emoji) == (scene.bob.id, ref.id, "✅")
    assert added.event_id != removed.event_id


async def test_a_gateway_cut_mid_burst_resumes_and_each_reaction_arrives_once(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    assert scene.engine is not None and scene.bot is not None
    ref = await scene.bot.chat.send(channel_ref(scene), Outbound("Vote!"))
    message = fake.messages[ref.id]
    members = [scene.alice, scene.bob, scene.carol]
    emoji = ["✅", "🤔", "⛔", "👍", "🎉"]
    burst = [(m, e) for m in members for e in emoji]
    fake.resume_overlap = 4  # the gateway also replays a few events the bot already had
    for i, (member, e) in enumerate(burst):
        if i == 7:
            await scene.engine.until(lambda: len(reactions_received(scene)) >= 4)
            fake.drop_gateway()
        member.reacts(message, e)
    await fake.until(lambda: len(fake.resumes) == 1)
    await scene.engine.until(lambda: len({r.event_id for r in reactions_received(scene)}) == len(burst))
    received = reactions_received(scene)
    assert len(received) > len(burst)  # the overlap was delivered again...
    ids_by_reaction: dict[tuple[str, str], set[str]] = {}
    for event in received:
        ids_by_reaction.setdefault((event.user.id, event.emoji), set()).add(event.event_id)
    # ...under the same ids, so the engine can apply each exactly once.
    assert set(ids_by_reaction) == {(m.id, e) for m, e in burst}
    assert all(len(ids) == 1 for ids in ids_by_reaction.values())
    assert len(fake.identifies) == 1


async def test_an_invalidated_session_identifies_again_and_keeps_working(discord_bot: DiscordScene) -> None:
    """discord.py waits 5 s before a new IDENTIFY (Discord's limit), so this test is slow. A vote cast
    before the new session is never delivered; the new session's reconcile counts it."""
    scene = discord_bot
    assert scene.bot is not None and scene.engine is not None
    await scene.alice.runs("/poll create", question="Tea or coffee?", option1="tea", option2="coffee")
    (poll,) = scene.fake.sent_messages(scene.channel)
    tea, _ = scene.fake.bot_reactions(poll)
    scene.alice.reacts(poll, tea)
    await scene.engine.until(lambda: len(reactions_received(scene)) == 1)
    scene.fake.invalidate_sessions(resumable=False)
    scene.bob.reacts(poll, tea)
    await scene.fake.until(lambda: len(scene.fake.identifies) == 2, within=15)
    report = await asyncio.wait_for(scene.bot.wait_reconciled(2), 5)
    assert (report.polls, report.changed) == (1, 1)
    assert len(reactions_received(scene)) == 1
    answer = await scene.alice.runs("/poll results", id=1)
    assert f"{tea} tea" in answer.content and "2 voters." in answer.content


async def test_an_interaction_replayed_after_resume_is_not_run_or_answered_twice(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.engine is not None
    answer = await scene.alice.runs("/phase set", phase="organizing", reason="ready")
    assert "moved the group" in answer.content
    scene.fake.resume_overlap = 50  # replay everything, this interaction included
    scene.fake.drop_gateway()

    def commands() -> list[str]:
        return [e.event_id for e in scene.received if isinstance(e, CommandInvoked)]

    await scene.engine.until(lambda: len(commands()) == 2)
    assert commands() == [answer.interaction.id] * 2  # delivered twice...
    assert [r.route for r in scene.fake.requests].count("interaction_callback") == 1  # ...answered once
    history = await scene.bob.runs("/phase history")
    assert history.content.count("Convening → Organizing") == 1
