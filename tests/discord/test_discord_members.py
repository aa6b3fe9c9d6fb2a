"""The roster on Discord, through the real discord.py client: newcomers are welcomed without a ping, and
with `server_joins` joining the server is joining the group of its welcome channel."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from bot.app import bootstrap
from bot.config import parse_config
from core.events import MemberJoined, MemberLeft
from core.ports import AdapterFailed
from core.refs import ChannelRef
from tests.fake_discord.scene import DiscordScene, Member
from tests.fake_discord.server import GUILD_MEMBERS


async def roster(scene: DiscordScene) -> list[str]:
    assert scene.store is not None
    async with scene.store.transaction() as tx:
        group = await tx.groups.get(ChannelRef("discord", scene.channel.id))
        return [m.name for m in await tx.members.roster(group.id)] if group else []


def welcomes(scene: DiscordScene) -> list[dict[str, object]]:
    return [
        b for b in scene.fake.bodies("create_message") if str(b.get("content", "")).startswith("Welcome, ")
    ]


async def test_a_newcomers_first_command_welcomes_them_by_name_pinging_nobody(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    dave = Member(scene, scene.fake.add_member(scene.guild, "dave"))
    answer = await dave.runs("/status")
    assert "Phase: Convening" in answer and answer.bodies[0]["allowed_mentions"] == {"parse": []}
    (welcome,) = welcomes(scene)
    assert str(welcome["content"]).startswith("Welcome, Dave! 👋\n")  # by the name Discord shows
    assert welcome["allowed_mentions"] == {"parse": []}  # named, never pinged
    assert await roster(scene) == ["alice", "bob", "carol", "Dave"]


async def test_joining_the_server_joins_the_group_of_its_welcome_channel(scene: DiscordScene) -> None:
    scene.guild.system_channel_id = scene.channel.id
    await scene.start_bot(server_joins=True)
    assert scene.fake.identifies[-1]["intents"] & (1 << GUILD_MEMBERS)
    erin = scene.fake.joins_guild(scene.guild, "erin")
    assert scene.engine is not None
    await scene.engine.until(lambda: any(isinstance(e, MemberJoined) for e in scene.received))
    await scene.engine.engine.settle()
    (welcome,) = welcomes(scene)
    assert str(welcome["content"]).startswith("Welcome, Erin! 👋\n")
    assert welcome["allowed_mentions"] == {"parse": []}
    assert [m["channel_id"] for m in scene.fake.sent_messages(scene.channel)] == [scene.channel.id]
    assert await roster(scene) == ["alice", "bob", "carol", "Erin"]
    scene.fake.leaves_guild(scene.guild, erin)
    await scene.engine.until(lambda: any(isinstance(e, MemberLeft) for e in scene.received))
    assert await roster(scene) == ["alice", "bob", "carol"]


async def test_without_server_joins_the_bot_asks_for_no_members_and_hears_of_no_joins(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    scene.guild.system_channel_id = scene.channel.id
    assert not scene.fake.identifies[-1]["intents"] & (1 << GUILD_MEMBERS)
    scene.fake.joins_guild(scene.guild, "erin")
    await scene.alice.runs("/status")  # a round trip through the gateway after the join
    assert not any(isinstance(e, MemberJoined) for e in scene.received)
    assert welcomes(scene) == [] and await roster(scene) == ["Alice", "bob", "carol"]  # her name now


async def test_a_members_intent_discord_refuses_stops_the_bot_with_what_to_do(scene: DiscordScene) -> None:
    scene.fake.members_intent = False  # not switched on in the Developer Portal
    engine = make_engine(scene.db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        app = bootstrap(
            parse_config({}, env={}),
            store,
            scene.clock,
            discord=scene.settings(server_joins=True),
            tick_every=None,
        )
        with pytest.raises(AdapterFailed, match="switch on Server Members Intent"):
            await asyncio.wait_for(app.run(), 30)
    finally:
        await store.close()


async def test_the_weekly_radar_tells_a_facilitator_known_by_their_roles_by_direct_message(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.engine is not None
    engine = scene.engine.engine
    await engine.tick()  # plans the group's first weekly radar
    scene.clock.advance(timedelta(days=15))  # nobody has done anything since they were seeded
    await engine.tick()
    await engine.settle()
    # alice has Manage Server through a role; nobody ran a command, so the bot read their roles.
    looked_up = {r.path.rsplit("/", 1)[-1] for r in scene.fake.requests if r.route == "get_member"}
    assert looked_up == {scene.alice.user.id, scene.bob.user.id, scene.carol.user.id}
    assert [str(b["recipient_id"]) for b in scene.fake.bodies("create_dm")] == [scene.alice.user.id]
    dm = scene.fake.dm_channel(scene.alice.user)
    assert dm is not None
    (told,) = scene.fake.sent_messages(dm)
    assert "bob has done nothing in the group for 15 days" in told["content"]
    (body,) = [r.body for r in scene.fake.requests if r.route == "create_message" and dm.id in r.path]
    assert body["allowed_mentions"] == {"parse": []}
    assert not any("has done nothing" in m["content"] for m in scene.fake.sent_messages(scene.channel))
