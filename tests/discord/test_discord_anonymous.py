"""Anonymous polls on Discord, end to end through the real discord.py client: vote buttons under the
poll, presses answered to the member alone, each press counted once across a RESUME, and no voter in
the log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.discord.adapter import UNKNOWN_BUTTON
from adapters.sql.schema import processed_events
from core.events import CommandInvoked
from core.ports import Button, Outbound
from core.refs import ChannelRef
from tests.discord.test_discord_cli import ROOT, write_config
from tests.fake_discord.scene import Answer, DiscordScene, Member
from tests.fake_discord.server import FakeDiscord

PACE = {"question": "Pace?", "option1": "slower", "option2": "same", "option3": "faster", "anonymous": True}


async def open_poll(scene: DiscordScene) -> dict[str, Any]:
    """alice opens the anonymous poll 1 (Pace? slower | same | faster); its message."""
    answer = await scene.alice.runs("/poll create", **PACE)
    assert not answer.ephemeral and answer.content.startswith("Anonymous poll 1 is open until"), (
        answer.content
    )
    (poll,) = scene.fake.sent_messages(scene.channel)
    return poll


def dave(scene: DiscordScene) -> Member:
    return Member(scene, scene.fake.add_member(scene.guild, "dave"))


def presses_of(scene: DiscordScene) -> list[str]:
    """The event ids of the vote presses the engine was given, deliveries again included."""
    return [e.event_id for e in scene.received if isinstance(e, CommandInvoked) and e.text == "vote"]


async def results(scene: DiscordScene) -> str:
    return (await scene.alice.runs("/poll results", id=1)).content


def private(answer: Answer) -> bool:
    """Answered in the interaction, to the member alone: an ephemeral message, or an ephemeral defer."""
    callback = answer.interaction.callback
    assert callback is not None
    return bool(int((callback.get("data") or {}).get("flags") or 0) & 64) and answer.ephemeral


async def test_an_anonymous_poll_is_posted_with_vote_buttons_and_no_reactions(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    poll = await open_poll(scene)
    assert poll["content"].startswith("Anonymous poll 1: Pace?")
    assert "press an option's button below" in poll["content"]
    (body,) = fake.bodies("create_message")
    assert body["components"] == [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 2, "label": label, "custom_id": f"vote:1:{i}", "disabled": False}
                for i, label in enumerate(("1. 1️⃣ slower", "2. 2️⃣ same", "3. 3️⃣ faster"), 1)
            ],
        }
    ]
    assert body["enforce_nonce"] is True and body["nonce"]  # posted exactly once, as every post
    assert [b["custom_id"] for row in poll["components"] for b in row["components"]] == [
        "vote:1:1",
        "vote:1:2",
        "vote:1:3",
    ]
    # No reaction: everyone would see who reacted with what. Nor a read of reactions to reconcile.
    assert fake.bot_reactions(poll) == []
    routes = {r.route for r in fake.requests}
    assert "create_reaction" not in routes and "get_message" not in routes
    assert not fake.invalid_components


async def test_ten_options_make_two_rows_of_buttons(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    options = {f"option{i}": f"choice {i}" for i in range(1, 11)}
    answer = await scene.alice.runs("/poll create", question="Which?", anonymous=True, **options)
    assert not answer.ephemeral, answer.content
    (poll,) = scene.fake.sent_messages(scene.channel)
    rows = [[b["custom_id"] for b in row["components"]] for row in poll["components"]]
    assert rows == [[f"vote:1:{i}" for i in range(1, 6)], [f"vote:1:{i}" for i in range(6, 11)]]
    assert not scene.fake.invalid_components
    voted = await scene.bob.presses(poll, "vote:1:10")
    assert private(voted) and "counted: 10. 🔟 choice 10." in voted.content


async def test_a_long_text_keeps_its_buttons_on_the_last_part_and_a_retry_posts_nothing_new(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.bot is not None
    channel = ChannelRef("discord", scene.channel.id)
    long = Outbound(
        "\n".join(f"line {i} " + "x" * 90 for i in range(30)), buttons=(Button("vote:3:1", "1. a"),)
    )
    ref = await scene.bot.chat.send(channel, long, key="k1")
    parts = scene.fake.sent_messages(scene.channel)
    assert len(parts) == 2 and parts[-1]["id"] == ref.id  # the part a poll is linked to
    assert parts[0]["components"] == []
    assert [b["custom_id"] for b in parts[-1]["components"][0]["components"]] == ["vote:3:1"]
    assert await scene.bot.chat.send(channel, long, key="k1") == ref  # Discord answers with the first
    assert len(scene.fake.sent_messages(scene.channel)) == 2


async def test_members_vote_by_buttons_privately_a_second_press_takes_back_and_counts_show_from_three(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    poll = await open_poll(scene)
    dave_ = dave(scene)

    bob = await scene.bob.presses(poll, "vote:1:2")
    assert private(bob) and not bob.deferred
    assert bob.interaction.callback is not None and bob.interaction.callback["type"] == 4
    assert bob.content == (
        "Your vote on poll 1 is counted: 2. 2️⃣ same. Nobody sees it; the same vote again takes it back."
    )
    assert (await results(scene)).endswith("Too few votes to show without revealing who voted.")
    carol = await scene.carol.presses(poll, "vote:1:1")
    assert private(carol) and "counted: 1. 1️⃣ slower" in carol.content
    assert (await results(scene)).endswith("Too few votes to show without revealing who voted.")
    dave_vote = await dave_.presses(poll, "vote:1:2")
    assert private(dave_vote) and "counted: 2. 2️⃣ same" in dave_vote.content
    shown = await results(scene)
    assert "slower  ███░░░░░░░ 1 (33%)" in shown and "same  ███████░░░ 2 (67%)" in shown, shown
    assert shown.endswith("3 voters.")

    back = await scene.bob.presses(poll, "vote:1:2")  # a new press of the same button
    assert private(back) and back.content == "Your vote for 2. 2️⃣ same on poll 1 is taken back."
    assert (await results(scene)).endswith("Too few votes to show without revealing who voted.")
    again = await scene.bob.presses(poll, "vote:1:3")
    assert "counted: 3. 3️⃣ faster" in again.content
    assert (await results(scene)).endswith("3 voters.")
    # Nothing but the answers: no post in the channel, no direct message, no reaction.
    assert len(fake.sent_messages(scene.channel)) == 1
    assert fake.bodies("create_dm") == [] and fake.bodies("create_reaction") == []


async def test_a_press_replayed_after_a_resume_counts_once_and_is_not_answered_again(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    fake = scene.fake
    assert scene.engine is not None and scene.store is not None
    poll = await open_poll(scene)
    first = await scene.bob.presses(poll, "vote:1:2")
    assert "counted" in first.content
    fake.resume_overlap = 50  # the gateway delivers everything again, this press included
    fake.drop_gateway()
    await fake.until(lambda: len(fake.resumes) == 1)
    await scene.engine.until(lambda: len(presses_of(scene)) == 2)
    await scene.engine.engine.settle()

    for member, option in ((scene.carol, 1), (dave(scene), 2)):
        await member.presses(poll, f"vote:1:{option}")
    shown = await results(scene)  # a second application would have taken bob's vote back: 2 voters
    assert "same  ███████░░░ 2 (67%)" in shown and shown.endswith("3 voters."), shown
    assert presses_of(scene)[:2] == [first.interaction.id] * 2  # the same press, delivered twice...
    callbacks = [r for r in fake.requests if r.route == "interaction_callback"]
    assert sum(first.interaction.id in r.path for r in callbacks) == 1  # ...answered once
    assert first.interaction.followups == [] and not first.interaction.original_deleted
    assert len(fake.identifies) == 1
    # The press is recorded under a hash of its id, never under the id Discord gave it.
    async with scene.store.engine.connect() as conn:
        applied = set((await conn.execute(select(processed_events.c.event_id))).scalars())
    assert first.interaction.id not in applied and any(e.startswith("sealed-") for e in applied)


async def test_a_slow_vote_is_deferred_privately(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.bot is not None and scene.engine is not None
    poll = await open_poll(scene)
    scene.engine.delay = 0.3
    object.__setattr__(scene.bot.settings, "defer_after", 0.05)
    answer = await scene.bob.presses(poll, "vote:1:1")
    callback = answer.interaction.callback
    assert answer.deferred and callback is not None
    # Nobody but bob saw "Peerbot is thinking...": the defer itself is ephemeral, and so is the answer.
    assert callback["data"]["flags"] == 64
    assert not answer.interaction.original_deleted and answer.ephemeral
    assert answer.content.startswith("Your vote on poll 1 is counted: 1. 1️⃣ slower.")


async def test_a_button_that_is_no_vote_is_answered_privately_and_changes_nothing(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.bot is not None
    channel = ChannelRef("discord", scene.channel.id)
    poll = await open_poll(scene)
    ref = await scene.bot.chat.send(channel, Outbound("An old message", buttons=(Button("legacy:1", "Old"),)))
    old = scene.fake.messages[ref.id]
    answer = await scene.bob.presses(old, "legacy:1")
    assert private(answer) and answer.content == UNKNOWN_BUTTON
    # A vote button of a poll that is not there: the engine's error, privately.
    stale = await scene.bot.chat.send(channel, Outbound("Gone", buttons=(Button("vote:9:1", "1. gone"),)))
    gone = await scene.bob.presses(scene.fake.messages[stale.id], "vote:9:1")
    assert private(gone) and "There is no poll 9" in gone.content
    assert (await scene.bob.presses(poll, "vote:1:1")).content.startswith("Your vote on poll 1 is counted")


async def test_a_reaction_on_an_anonymous_poll_is_no_vote_and_a_new_session_keeps_the_button_votes(
    discord_bot: DiscordScene,
) -> None:
    """A member can still react by hand on the poll's message: that would vote in the open. And the
    reconcile of a new session sets a poll's votes to its reactions: for an anonymous poll, none."""
    scene = discord_bot
    assert scene.engine is not None
    poll = await open_poll(scene)
    voters = (scene.bob, scene.carol, dave(scene))
    for member in voters:
        await member.presses(poll, "vote:1:3")
    scene.alice.reacts(poll, "1️⃣")
    await scene.engine.until(lambda: any(not isinstance(e, CommandInvoked) for e in scene.received))
    shown = await results(scene)
    assert "faster  ██████████ 3 (100%)" in shown and shown.endswith("3 voters."), shown

    await scene.stop_bot()
    await scene.start_bot()  # a new session: the open polls are reconciled with their reactions
    assert scene.bot is not None
    report = await asyncio.wait_for(scene.bot.wait_reconciled(1), 5)
    assert (report.polls, report.changed) == (0, 0)
    shown = await results(scene)
    assert "faster  ██████████ 3 (100%)" in shown and shown.endswith("3 voters."), shown


# Logs ------------------------------------------------------------------------------------------------


async def test_peerbot_at_debug_logs_no_voter(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    """`peerbot run` at DEBUG, as a separate process: members who do nothing but press vote buttons
    appear nowhere in its log (discord.py logs every gateway payload and request body at DEBUG, and
    SQLAlchemy every statement's parameters)."""
    fake = fake_discord
    guild = fake.add_guild("g")
    channel = fake.add_channel(guild, "general")
    alice = fake.add_member(guild, "alice")
    voters = [fake.add_member(guild, name) for name in ("vera", "walt", "xena")]
    config = write_config(tmp_path, fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(PYTHONPATH=str(ROOT), PEERBOT_DISCORD_TOKEN=fake.token)
    log_path = tmp_path / "err.txt"
    out_file, err_file = (tmp_path / "out.txt").open("wb"), log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=tmp_path, env=env,
        stdout=out_file, stderr=err_file,
    )  # fmt: skip
    try:
        await fake.until(
            lambda: bool(fake.commands) and any(s.connection for s in fake.sessions.values()), 30
        )
        options = {"question": "Pace?", "option1": "slower", "option2": "same", "anonymous": True}
        created = fake.run_command(alice, channel, "/poll create", options)
        await fake.until(lambda: any(m["components"] for m in fake.sent_messages(channel)), 10)
        (poll,) = [m for m in fake.sent_messages(channel) if m["components"]]
        presses = [fake.press_button(v, poll, f"vote:1:{i % 2 + 1}") for i, v in enumerate(voters)]
        presses.append(fake.press_button(voters[0], poll, "vote:1:2"))  # vera changes her mind
        for press in presses:
            await fake.until(lambda press=press: press.callback is not None, 10)  # type: ignore[misc]
        shown = fake.run_command(alice, channel, "/poll results", {"id": 1})
        await fake.until(lambda: shown.callback is not None, 10)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
        out_file.close()
        err_file.close()
    log = (tmp_path / "out.txt").read_text() + log_path.read_text()
    assert process.returncode == 0, log[-3000:]
    assert created.callback is not None and shown.callback is not None
    assert shown.callback["data"]["content"].endswith("3 voters."), shown.callback
    assert all("counted" in (p.callback or {}).get("data", {}).get("content", "") for p in presses[:3])
    assert " DEBUG " in log  # the log was at DEBUG
    for voter in voters:
        assert voter.id not in log, f"{voter.name}'s id is in the log"
        assert voter.name.title() not in log, f"{voter.name} is named in the log"
