"""The Matrix adapter end to end, against a real Synapse on 127.0.0.1 (see tests/synapse.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import DownloadResponse

from adapters.matrix.adapter import (
    ENCRYPTED_NOTICE,
    LoginFailed,
    MatrixAdapter,
    MatrixChat,
    MatrixSettings,
    make_client,
)
from adapters.matrix.translate import WORD_JOINER, reaction_state_key
from bot import app
from bot.config import parse_config
from core.commands import CommandSpec, Invocation
from core.context import Context, Handler
from core.dead_letters import SORRY
from core.events import (
    Attachment,
    CommandInvoked,
    InboundEvent,
    MemberJoined,
    MemberLeft,
    ReactionAdded,
    ReactionRemoved,
    Reply,
)
from core.outbox import Post, PostKind
from core.polls import tally
from core.ports import DeliveryFailed, FileTooLarge, Outbound
from core.refs import ChannelRef, MessageRef, UserRef
from tests.fake_discord.scene import restore_discord_addresses
from tests.fake_discord.server import FakeDiscord
from tests.matrix_proxy import HoldMode, MatrixProxy
from tests.matrix_support import (
    Member,
    RunningBot,
    from_bot,
    membership,
    open_sqlite,
    open_store,
    reply_to,
    start_bot,
)
from tests.support import FakeClock
from tests.synapse import Homeserver

StartBot = Callable[..., Awaitable[RunningBot]]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def people(homeserver: Homeserver) -> AsyncIterator[Callable[[], Member]]:
    """Makes members (new accounts each time); closes their clients at the end."""
    made: list[Member] = []

    def make() -> Member:
        member = Member(homeserver, homeserver.register())
        made.append(member)
        return member

    yield make
    for member in made:
        await member.close()


def bot_settings(homeserver: Homeserver, account: Any, **changes: Any) -> MatrixSettings:
    """Settings for a bot account on the test homeserver, with the relaxed pacing tests need."""
    settings = MatrixSettings(
        homeserver=homeserver.url,
        user_id=account.user_id,
        password=account.password,
        send_per_second=1000,
        send_burst=1000,
        sync_timeout_ms=5000,
    )
    return replace(settings, **changes)


@pytest.fixture
async def bot_factory(homeserver: Homeserver, tmp_path: Path) -> AsyncIterator[StartBot]:
    """Starts the bot (a new account unless given), each on its own database unless given: `db` is a
    SQLite file in the test's directory or a database URL. `commands` are added to the bot's own."""
    running: list[RunningBot] = []

    async def start(
        settings: MatrixSettings | None = None,
        db: str = "bot.db",
        commands: Mapping[CommandSpec, Handler] | None = None,
        **changes: object,
    ) -> RunningBot:
        if settings is None:
            account = homeserver.register()
            settings = bot_settings(homeserver, account)
        settings = replace(settings, **changes)  # type: ignore[arg-type]
        store = await (open_store(db) if "://" in db else open_sqlite(tmp_path / db))
        bot = await start_bot(settings, store, commands=commands)
        running.append(bot)
        await bot.engine.wait_batches(1)
        return bot

    yield start
    for bot in running:
        await bot.stop()
        await bot.store.close()


async def room_with_bot(owner: Member, bot: RunningBot, *others: Member) -> str:
    room_id = await owner.creates_room(invite=[bot.user_id, *(m.user_id for m in others)])
    for other in others:
        await other.joins(room_id)
    await owner.sees(room_id, membership(bot.user_id, "join"))
    return room_id


def commands(events: list[InboundEvent]) -> list[CommandInvoked]:
    return [e for e in events if isinstance(e, CommandInvoked)]


async def test_invites_are_accepted_only_from_allowed_inviters(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, mallory = people(), people()
    bot = await bot_factory(allowed_inviters=(alice.user_id,))
    allowed = await alice.creates_room(invite=[bot.user_id])
    refused = await mallory.creates_room(invite=[bot.user_id])
    await alice.sees(allowed, membership(bot.user_id, "join"))
    await mallory.sees(refused, membership(bot.user_id, "leave"))
    assert not mallory.find(refused, membership(bot.user_id, "join"))


async def test_a_command_gets_a_notice_in_reply(bot_factory: StartBot, people: Callable[[], Member]) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    command = await alice.says(room, "!peer status")
    answer = await alice.sees(room, reply_to(command))
    assert answer["sender"] == bot.user_id
    assert answer["content"]["msgtype"] == "m.notice"
    assert answer["content"]["m.mentions"] == {}
    assert answer["content"]["body"].startswith("Phase: Convening")


async def test_a_command_in_a_thread_is_answered_in_the_thread(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    root = await alice.says(room, "Let's plan the week")
    threaded = {"rel_type": "m.thread", "event_id": root}
    command = await alice.sends(room, {"msgtype": "m.text", "body": "!peer status", "m.relates_to": threaded})
    answer = await alice.sees(room, reply_to(command))
    assert answer["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert answer["content"]["m.relates_to"]["event_id"] == root


async def test_bad_input_gets_a_short_usage_line(bot_factory: StartBot, people: Callable[[], Member]) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    command = await alice.says(room, "!PEER phase sett organizing")
    answer = await alice.sees(room, reply_to(command))
    assert "Unknown phase command 'sett'" in answer["content"]["body"]
    command = await alice.says(room, "!peer help nonsense words")
    answer = await alice.sees(room, reply_to(command))
    assert "Usage: !peer help [command...]" in answer["content"]["body"]


async def test_history_from_before_the_bot_joined_is_ignored(
    homeserver: Homeserver, bot_factory: StartBot, people: Callable[[], Member], tmp_path: Path
) -> None:
    alice = people()
    account = homeserver.register()
    bot_as_member = Member(homeserver, account)
    # A room the bot's account was already in before Peerbot ever started, with old commands.
    old_room = await alice.creates_room(invite=[account.user_id])
    await bot_as_member.joins(old_room)
    await bot_as_member.close()
    old_command = await alice.says(old_room, "!peer status")
    # A room with commands written before the bot was even invited.
    new_room = await alice.creates_room()
    early_command = await alice.says(new_room, "!peer phase show")
    await alice.invites(new_room, account.user_id)

    settings = bot_settings(homeserver, account)
    bot = await bot_factory(settings)
    await alice.sees(new_room, membership(bot.user_id, "join"))
    marker = await alice.says(new_room, "!peer help")
    await alice.sees(new_room, reply_to(marker))
    second_marker = await alice.says(old_room, "!peer help")
    await alice.sees(old_room, reply_to(second_marker))

    ids = [e.event_id for e in commands(bot.engine.received)]
    assert ids == [marker, second_marker]
    assert not alice.find(new_room, reply_to(early_command))
    assert not alice.find(old_room, reply_to(old_command))


async def test_only_facilitators_change_the_phase(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob, carol = people(), people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob, carol)
    # alice created the room (version 12: a creator holds top power, unlisted); bob gets 50.
    current = await alice.client.room_get_state_event(room, "m.room.power_levels")
    content = dict(current.content)  # type: ignore[union-attr]
    assert alice.user_id not in content.get("users", {})
    content["users"] = {**content.get("users", {}), bob.user_id: 50}
    await alice.client.room_put_state(room, "m.room.power_levels", content)

    refused = await carol.says(room, "!peer phase set organizing")
    answer = await carol.sees(room, reply_to(refused))
    assert answer["content"]["body"].startswith("Sorry, only facilitators can use !peer phase set")

    by_creator = await alice.says(room, "!peer phase set organizing we have a plan")
    answer = await alice.sees(room, reply_to(by_creator))
    assert "moved the group from Convening to Organizing" in answer["content"]["body"]

    by_moderator = await bob.says(room, "!peer phase set cooperating")
    answer = await bob.sees(room, reply_to(by_moderator))
    assert "moved the group from Organizing to Cooperating" in answer["content"]["body"]

    # A room whose state the bot cannot read (it is not in it): nobody is a facilitator there.
    elsewhere = await alice.creates_room()
    creator = UserRef("matrix", alice.user_id)
    assert not await bot.chat.is_facilitator(creator, ChannelRef("matrix", elsewhere))


async def test_the_facilitator_of_the_week_facilitates_in_that_room_only(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, carol = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, carol)
    other = await room_with_bot(alice, bot, carol)  # another group: carol has power 0 in both

    async def answer(where: str, text: str) -> str:
        asked = await carol.says(where, text)
        return str((await carol.sees(where, reply_to(asked)))["content"]["body"])

    assert (await answer(room, "!peer phase set organizing")).startswith("Sorry, only facilitators")
    took = await answer(room, "!peer role take facilitator-of-the-week")
    assert "is now the facilitator-of-the-week" in took
    assert "moved the group from Convening to Organizing" in await answer(room, "!peer phase set organizing")
    assert (await answer(other, "!peer phase set organizing")).startswith("Sorry, only facilitators")
    assert "it is free now" in await answer(room, "!peer role pass facilitator-of-the-week")
    assert (await answer(room, "!peer phase set cooperating")).startswith("Sorry, only facilitators")


async def test_member_text_in_a_reply_pings_nobody(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob)
    # alice's own client marks her command as mentioning nobody, as current clients do.
    text = f"!peer phase set organizing @room look, {bob.user_id}"
    command = await alice.sends(room, {"msgtype": "m.text", "body": text, "m.mentions": {}})
    answer = await bob.sees(room, reply_to(command))
    content = answer["content"]
    assert content["m.mentions"] == {}
    assert "@room" not in content["body"]
    assert bob.user_id not in content["body"]
    assert f"@{WORD_JOINER}room" in content["body"]
    await bob.sync(timeout_ms=0)
    assert bob.highlights.get(room, 0) == 0
    # The same words from a member who means them do highlight bob: the check can see a ping.
    await alice.sends(
        room, {"msgtype": "m.text", "body": f"{bob.user_id} look", "m.mentions": {"user_ids": [bob.user_id]}}
    )
    async with asyncio.timeout(30):
        while bob.highlights.get(room, 0) == 0:
            await bob.sync()


async def roster_of(bot: RunningBot, room_id: str) -> list[str]:
    async with bot.store.transaction() as tx:
        group = await tx.groups.get(ChannelRef("matrix", room_id))
        return [m.key for m in await tx.members.roster(group.id)] if group else []


async def test_joining_the_room_is_joining_the_group_welcomed_by_name_without_a_ping(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    await bob.is_named("Bob Builder")
    await alice.invites(room, bob.user_id)
    await bob.joins(room)

    def welcome(event: dict[str, Any]) -> bool:
        return from_bot(bot.user_id)(event) and event["content"]["body"].startswith("Welcome, Bob Builder!")

    found = await bob.sees(room, welcome)
    assert found["content"]["m.mentions"] == {}
    await bob.sync(timeout_ms=0)
    assert bob.highlights.get(room, 0) == 0  # his display name in a notice with empty m.mentions
    assert await roster_of(bot, room) == [f"matrix:{bob.user_id}"]
    # His name in a message that does not say whom it mentions does highlight him: the check can see it.
    await alice.says(room, "Bob Builder, hello")  # alice's first words here: she joins the roster too
    async with asyncio.timeout(30):
        while bob.highlights.get(room, 0) == 0:
            await bob.sync()

    await bob.leaves(room)
    await bot.engine.wait_for(lambda got: any(isinstance(e, MemberLeft) for e in got))
    assert await roster_of(bot, room) == [f"matrix:{alice.user_id}"]
    await alice.invites(room, bob.user_id)
    await bob.joins(room)
    await bot.engine.wait_for(lambda got: sum(isinstance(e, MemberJoined) for e in got) >= 2)
    assert await roster_of(bot, room) == [f"matrix:{bob.user_id}", f"matrix:{alice.user_id}"]  # back
    async with bot.store.transaction() as tx:
        group = await tx.groups.get(ChannelRef("matrix", room))
        assert group is not None
        back = await tx.members.get(group.id, f"matrix:{bob.user_id}")
    assert back is not None and back.name == "Bob Builder" and back.joined_at == bot.clock.now()


async def test_a_newcomer_hears_of_their_buddy_privately_and_asks_the_bot_there(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    offer = await alice.says(room, "!peer buddy on")
    await alice.sees(room, reply_to(offer))
    await alice.invites(room, bob.user_id)
    await bob.joins(room)

    async with asyncio.timeout(30):  # the bot makes a room to tell bob who his buddy is
        while not [r for r in bob.invited if r != room]:
            await bob.sync()
    (direct,) = [r for r in bob.invited if r != room]
    await bob.joins(direct)
    told = await bob.sees(direct, lambda e: "is yours" in e.get("content", {}).get("body", ""))
    assert told["sender"] == bot.user_id and told["content"]["m.mentions"] == {}
    asked = await bob.says(direct, "!peer buddy")
    answer = await bob.sees(direct, lambda e: "Your buddy" in e.get("content", {}).get("body", ""))
    assert answer["sender"] == bot.user_id and answer["content"]["body"].startswith("Your buddy in ")
    # The conversation is no group: no roster, no welcome there, and bob's words there are no activity.
    await bob.says(direct, "thanks!")
    await bot.engine.wait_for(lambda got: any(e.event_id == asked for e in got))
    async with bot.store.transaction() as tx:
        assert await tx.groups.get(ChannelRef("matrix", direct)) is None
    assert not bob.find(direct, lambda e: e.get("content", {}).get("body", "").startswith("Welcome"))
    asked_event = next(e for e in bot.engine.received if e.event_id == asked)
    assert isinstance(asked_event, CommandInvoked) and asked_event.direct


async def test_pending_asked_in_the_room_is_answered_in_a_direct_room_and_asked_there_too(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)  # the group's room, where alice is alone with the bot
    created = await alice.says(room, "!peer poll create Which day? | Monday | Friday")
    await alice.sees(room, reply_to(created))
    asked = await alice.says(room, "!peer pending")

    def body(event: dict[str, Any]) -> str:
        return str(event.get("content", {}).get("body", ""))

    async with asyncio.timeout(30):  # the bot makes a room to answer alice privately
        while not [r for r in alice.invited if r != room]:
            await alice.sync()
    (direct,) = [r for r in alice.invited if r != room]
    await alice.joins(direct)
    answer = await alice.sees(direct, lambda e: body(e).startswith("What needs you in "))
    assert answer["sender"] == bot.user_id and answer["content"]["m.mentions"] == {}
    assert "Poll 1: Which day? Closes " in body(answer) and "React on poll 1: 1️⃣ Monday, 2️⃣ Friday." in body(
        answer
    )
    assert not alice.find(room, reply_to(asked))  # nothing in the room
    await alice.says(direct, "!peer pending")
    everywhere = await alice.sees(
        direct, lambda e: body(e).startswith("What needs you, closing soonest first:")
    )
    assert "Poll 1: Which day?" in body(everywhere)
    assert not alice.find(room, lambda e: body(e).startswith("What needs you"))


async def test_an_encrypted_room_is_refused_once_and_ignored(
    bot_factory: StartBot, people: Callable[[], Member], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.matrix")
    alice = people()
    bot = await bot_factory()
    secret = await alice.creates_room(invite=[bot.user_id], encrypted=True)
    notice = await alice.sees(secret, from_bot(bot.user_id))
    assert notice["content"]["body"] == ENCRYPTED_NOTICE
    assert any("is encrypted" in r.getMessage() for r in caplog.records)
    # nio without encryption support sends this in the clear; the bot still ignores it.
    ignored = await alice.says(secret, "!peer status")
    plain = await room_with_bot(alice, bot)
    marker = await alice.says(plain, "!peer status")
    await alice.sees(plain, reply_to(marker))
    await alice.sync(timeout_ms=0)
    assert not alice.find(secret, reply_to(ignored))
    assert len(alice.find(secret, from_bot(bot.user_id))) == 1
    assert [e.event_id for e in commands(bot.engine.received)] == [marker]

    await bot.stop()  # said once: not again after a restart
    bot_again = await bot_factory(bot.settings)
    marker = await alice.says(plain, "!peer status")
    await alice.sees(plain, lambda e: reply_to(marker)(e) and e.get("sender") == bot_again.user_id)
    await alice.sync(timeout_ms=0)
    assert len(alice.find(secret, from_bot(bot.user_id))) == 1


async def test_the_encrypted_room_notice_goes_through_the_outbox_and_is_retried_with_its_key(
    bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    alice = people()
    bot = await bot_factory(homeserver=matrix_proxy.url)
    hold = matrix_proxy.hold_sends(HoldMode.REQUEST, event_type="m.room.message")
    secret = await alice.creates_room(invite=[bot.user_id], encrypted=True)
    first_try = await hold.arrived()
    hold.drop()  # the homeserver answers 502: the outbox keeps the notice and tries again
    bot.clock.advance(timedelta(seconds=5))
    await bot.engine.engine.settle()
    notice = await alice.sees(secret, from_bot(bot.user_id))
    assert notice["content"]["body"] == ENCRYPTED_NOTICE
    tries = [s.txn_id for s in matrix_proxy.sends if s.room_id == secret]
    assert tries == [first_try.txn_id, first_try.txn_id] and first_try.txn_id.startswith("peerbot-")
    await timeline_until_marker(alice, secret)
    assert len(alice.find(secret, from_bot(bot.user_id))) == 1


async def test_the_engine_posts_and_reacts_in_a_room_on_its_own(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    posted = await bot.chat.send(ChannelRef("matrix", room), Outbound("Time to reflect: what did you learn?"))
    await bot.chat.react(posted, "✅")
    seen = await alice.sees(room, lambda e: e.get("event_id") == posted.id)
    assert seen["content"] == {
        "msgtype": "m.notice",
        "body": "Time to reflect: what did you learn?",
        "m.mentions": {},
    }
    reaction = await alice.sees(room, lambda e: e.get("type") == "m.reaction")
    assert reaction["sender"] == bot.user_id
    await bot.chat.edit(posted, Outbound("Time to reflect, @room: what did you learn?"))
    edit = await alice.sees(
        room, lambda e: e.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
    )
    assert edit["content"]["m.relates_to"]["event_id"] == posted.id
    assert (
        edit["content"]["m.new_content"]["body"]
        == f"Time to reflect, @{WORD_JOINER}room: what did you learn?"
    )
    assert edit["content"]["m.new_content"]["m.mentions"] == {} and edit["content"]["m.mentions"] == {}
    assert reaction["content"]["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": posted.id,
        "key": "✅",
    }


async def test_a_long_answer_arrives_in_parts_that_matrix_accepts(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    text = "\n".join(f"Reflection {n}: " + "ünd " * 60 for n in range(300))  # about 77 KB
    first = await bot.chat.send(ChannelRef("matrix", room), Outbound(text))
    await alice.sees(room, lambda e: e.get("event_id") == first.id)
    parts: list[str] = []
    async with asyncio.timeout(30):
        while "\n".join(parts) != text:
            await alice.sync()
            parts = [e["content"]["body"] for e in alice.find(room, from_bot(bot.user_id))]
    assert len(parts) == 3


async def test_reactions_are_votes_and_a_redaction_takes_one_back(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob)
    message = await alice.says(room, "Shall we learn Rust?")
    yes = await bob.reacts(room, message, "👍")
    await alice.reacts(room, message, "✅")
    taken_back = await bob.redacts(room, yes)
    await bot.engine.wait_for(lambda got: any(e.event_id == taken_back for e in got))

    channel = ChannelRef("matrix", room)
    target = MessageRef(channel, message)
    votes = [e for e in bot.engine.received if isinstance(e, ReactionAdded | ReactionRemoved)]
    assert [(type(e), e.message, e.user, e.emoji) for e in votes] == [
        (ReactionAdded, target, UserRef("matrix", bob.user_id), "👍"),
        (ReactionAdded, target, UserRef("matrix", alice.user_id), "✅"),
        (ReactionRemoved, target, UserRef("matrix", bob.user_id), "👍"),
    ]
    # The record that let the redaction name its reaction is forgotten with it; alice's stays.
    async with bot.store.transaction() as tx:
        assert await tx.state("matrix").get(reaction_state_key(yes)) is None
        assert await tx.state("matrix").get(reaction_state_key(votes[1].event_id)) is not None


async def test_reactions_while_the_bot_was_down_are_counted_exactly_once(
    homeserver: Homeserver,
    bot_factory: StartBot,
    people: Callable[[], Member],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.matrix")
    alice, bob = people(), people()
    bot = await bot_factory(timeline_limit=5)
    room = await room_with_bot(alice, bot, bob)
    message = await alice.says(room, "Vote on this")
    before = await bob.reacts(room, message, "🅱️")
    await bot.engine.wait_for(lambda got: any(e.event_id == before for e in got))
    await bot.stop()

    keys = [chr(0x1F600 + i) for i in range(15)]
    sent = [await alice.reacts(room, message, key) for key in keys]
    sent += [await bob.reacts(room, message, key) for key in keys]
    gone = await alice.reacts(room, message, "🙈")
    await alice.redacts(room, gone)  # added and taken back while the bot was away: no vote at all
    taken_back = await bob.redacts(room, before)  # a vote it had seen, taken back while it was away

    bot_again = await bot_factory(bot.settings)
    await bot_again.engine.wait_for(lambda got: any(e.event_id == taken_back for e in got))
    assert bot_again.adapter.client.device_id == bot.adapter.client.device_id  # one device, reused

    added = [e.event_id for e in bot_again.engine.received if isinstance(e, ReactionAdded)]
    assert sorted(added) == sorted(sent)
    assert len(added) == len(set(added)) == 30
    removed = [e for e in bot_again.engine.received if isinstance(e, ReactionRemoved)]
    assert [(e.user.id, e.emoji) for e in removed] == [(bob.user_id, "🅱️")]
    assert any("back-filled" in r.getMessage() for r in caplog.records)


async def test_a_429_is_waited_out_within_bounds(
    homeserver: Homeserver,
    bot_factory: StartBot,
    people: Callable[[], Member],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.matrix")
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    homeserver.set_message_rate_limit(bot.user_id, per_second=4, burst_count=1)
    channel = ChannelRef("matrix", room)
    for n in range(3):
        await bot.chat.send(channel, Outbound(f"message {n}"))
    assert any("rate limited, retrying" in r.getMessage() for r in caplog.records)

    bounded = replace(bot.settings, max_retry_after=0.01)
    bot.chat.settings = bounded
    with pytest.raises(DeliveryFailed, match="asked to wait") as waited:
        for n in range(3):
            await bot.chat.send(channel, Outbound(f"again {n}"))
    assert not waited.value.permanent
    assert waited.value.retry_after is not None and waited.value.retry_after > 0.01
    bot.chat.settings = replace(bot.settings, max_rate_limit_retries=0)
    with pytest.raises(DeliveryFailed, match="after 0 retries") as refused:
        for n in range(3):
            await bot.chat.send(channel, Outbound(f"once more {n}"))
    assert not refused.value.permanent


async def test_peerbot_run_serves_matrix_from_the_config(
    homeserver: Homeserver, people: Callable[[], Member], tmp_path: Path
) -> None:
    alice = people()
    account = homeserver.register()
    raw = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}"},
        "matrix": {"homeserver": homeserver.url, "user_id": account.user_id, "send_per_second": 100},
    }
    config = parse_config(raw, env={"PEERBOT_MATRIX_PASSWORD": account.password})
    running = asyncio.create_task(app.run(config))
    try:
        room = await alice.creates_room(invite=[account.user_id])
        await alice.sees(room, membership(account.user_id, "join"))
        command = await alice.says(room, "!peer phase show")
        answer = await alice.sees(room, reply_to(command))
        assert answer["content"]["body"].startswith("Convening")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_refused_login_stops_peerbot_with_a_clear_error(
    homeserver: Homeserver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = homeserver.register()
    raw = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}"},
        "matrix": {"homeserver": homeserver.url, "user_id": account.user_id, "password": "wrong"},
    }
    assert await app.run(parse_config(raw, env={})) == 1
    assert "peerbot: password login refused: M_FORBIDDEN" in capsys.readouterr().err


def notice_starting(bot_user_id: str, title: str) -> Callable[[dict[str, object]], bool]:
    is_bot_notice = from_bot(bot_user_id)

    def match(event: dict[str, object]) -> bool:
        body = event.get("content", {}).get("body", "")  # type: ignore[union-attr]
        return is_bot_notice(event) and str(body).startswith(title)

    return match


def reaction_by(user_id: str, target: str, key: str) -> Callable[[dict[str, object]], bool]:
    def match(event: dict[str, object]) -> bool:
        relation = event.get("content", {}).get("m.relates_to", {})  # type: ignore[union-attr]
        return (
            event.get("type") == "m.reaction"
            and event.get("sender") == user_id
            and relation == {"rel_type": "m.annotation", "event_id": target, "key": key}
        )

    return match


async def ask(member: Member, room: str, command: str) -> str:
    """What the bot answers `member`'s command with."""
    event_id = await member.says(room, command)
    answer = await member.sees(room, reply_to(event_id))
    return str(answer["content"]["body"])


async def open_goal_poll(alice: Member, bot: RunningBot, room: str) -> str:
    """alice moves the group to Organizing and proposes a goal; returns the consent poll's event id."""
    assert "to Organizing" in await ask(alice, room, "!peer phase set organizing")
    answer = await ask(alice, room, "!peer goal propose Learn Rust together")
    assert answer.startswith("Goal 1 proposed. React on poll 1: ✅ agree, 🤔 concerns, ⛔ block.")
    poll = await alice.sees(room, notice_starting(bot.user_id, "Poll 1: Goal 1: Learn Rust together"))
    for key in ("✅", "🤔", "⛔"):
        await alice.sees(room, reaction_by(bot.user_id, str(poll["event_id"]), key))
    return str(poll["event_id"])


async def test_a_goal_is_decided_by_reactions_on_its_consent_poll(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob, carol = people(), people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob, carol)
    poll = await open_goal_poll(alice, bot, room)

    await bob.reacts(room, poll, "✅")
    block = await carol.reacts(room, poll, "⛔")
    await carol.redacts(room, block)  # carol takes her block back...
    last = await carol.reacts(room, poll, "✅")  # ...and agrees
    await alice.reacts(room, poll, "🤔")
    await bot.engine.wait_for(lambda got: any(e.event_id == last for e in got))
    shown = await ask(alice, room, "!peer goal show 1")
    assert "✅ 2, 🤔 1, ⛔ 0" in shown

    bot.clock.advance(timedelta(hours=49))
    await bot.engine.engine.tick()  # what the scheduler does every second
    result = await alice.sees(room, notice_starting(bot.user_id, "Goal 1 accepted by consent"))
    assert result["content"]["body"].split("\n")[0] == (
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now."
    )
    assert result["content"]["m.mentions"] == {}


async def test_a_goal_is_decided_in_a_thread_rooted_at_its_poll(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob)
    poll = await open_goal_poll(alice, bot, room)
    await bob.reacts(room, poll, "✅")
    await alice.reacts(room, poll, "✅")  # everyone on the roster has voted: decided at once
    decision = await alice.sees(room, notice_starting(bot.user_id, "Goal 1 accepted by consent"))
    assert decision["content"]["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": poll,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": poll},
    }
    outcome = await alice.sees(room, notice_starting(bot.user_id, "Goal 1 accepted: Learn Rust together."))
    assert "m.relates_to" not in outcome["content"]  # the one line is in the room itself

    # A command written in the decision's thread is the room's group's, and answered in the thread.
    threaded = {
        "rel_type": "m.thread",
        "event_id": poll,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": poll},
    }
    command = await bob.sends(
        room, {"msgtype": "m.text", "body": "!peer goal list", "m.relates_to": threaded}
    )
    answer = await bob.sees(room, reply_to(command))
    assert "Goal 1: Learn Rust together" in answer["content"]["body"]
    assert answer["content"]["m.relates_to"]["event_id"] == poll


async def test_a_command_in_a_thread_is_answered_in_it_by_the_restarted_bot(
    homeserver: Homeserver, bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    """The answer is sent by a process that never saw the command: the thread it was written in is
    read from the database."""
    alice = people()
    settings = replace(bot_settings(homeserver, homeserver.register()), homeserver=matrix_proxy.url)
    bot = await bot_factory(settings)
    room = await room_with_bot(alice, bot)
    await ask(alice, room, "!peer status")  # what a first command brings (a welcome) is out of the way
    root = await alice.says(room, "Let's plan the week")
    hold = matrix_proxy.hold_sends(HoldMode.REQUEST, event_type="m.room.message")
    threaded = {"rel_type": "m.thread", "event_id": root}
    command = await alice.sends(room, {"msgtype": "m.text", "body": "!peer status", "m.relates_to": threaded})
    first_try = await hold.arrived()  # the answer, held before Synapse
    assert first_try.content["m.relates_to"]["event_id"] == root
    hold.drop()  # answered 502: the outbox will try again
    await bot.stop()

    bot_again = await bot_factory(bot.settings)
    bot_again.clock.advance(timedelta(minutes=1))  # past the retry's back-off
    await bot_again.engine.engine.tick()
    answer = await alice.sees(room, reply_to(command))
    assert answer["sender"] == bot.user_id
    assert answer["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert answer["content"]["m.relates_to"]["event_id"] == root
    assert answer["content"]["body"].startswith("Phase: Convening")


async def test_votes_while_the_bot_was_down_count_exactly_once(
    homeserver: Homeserver,
    bot_factory: StartBot,
    people: Callable[[], Member],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.matrix")
    alice = people()
    voters = [people() for _ in range(8)]
    bot = await bot_factory(timeline_limit=5)
    room = await room_with_bot(alice, bot, *voters)
    poll = await open_goal_poll(alice, bot, room)
    early = await voters[0].reacts(room, poll, "✅")
    await bot.engine.wait_for(lambda got: any(e.event_id == early for e in got))
    await bot.stop()

    # While the bot is away: 17 reactions and a redaction, far more than a timeline of 5 holds.
    for n, voter in enumerate(voters[1:]):
        await voter.reacts(room, poll, "🤔")
        await voter.reacts(room, poll, "✅" if n % 2 else "⛔")  # the latest reaction counts
    await voters[0].redacts(room, early)
    marker = await alice.reacts(room, poll, "🤔")

    bot_again = await bot_factory(bot.settings)
    await bot_again.engine.wait_for(lambda got: any(e.event_id == marker for e in got))
    assert any("back-filled" in r.getMessage() for r in caplog.records)
    received = [
        e.event_id for e in bot_again.engine.received if isinstance(e, ReactionAdded | ReactionRemoved)
    ]
    assert len(received) == len(set(received)) == 16
    # voters 1..7 end on ⛔ ✅ ⛔ ✅ ⛔ ✅ ⛔; voter 0 took ✅ back; alice 🤔.
    assert "✅ 3, 🤔 1, ⛔ 4" in await ask(alice, room, "!peer goal show 1")


async def test_a_batch_replayed_after_a_crash_changes_nothing_twice(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob, carol = people(), people(), people()
    bot = await bot_factory(retry_pause=0.05)
    room = await room_with_bot(alice, bot, bob, carol)
    poll = await open_goal_poll(alice, bot, room)
    bot.engine.crash_on_next_reaction = True
    agree = await bob.reacts(room, poll, "✅")
    # The batch is applied, its token not stored; the adapter syncs again from the old token.
    await bot.engine.wait_for(lambda got: sum(e.event_id == agree for e in got) == 2)
    last = await carol.reacts(room, poll, "⛔")
    await bot.engine.wait_for(lambda got: any(e.event_id == last for e in got))
    assert "✅ 1, 🤔 0, ⛔ 1" in await ask(alice, room, "!peer goal show 1")


# A poison event: one command that keeps failing, in a batch with the others ------------------------

# A handler with a bug, declared by the test beside the bot's own commands.
EXPLODE = CommandSpec(("explode",), "Fail the way a handler with a bug does.")
NEVER_POSTED = "Queued by a command that then failed"
# As long as Synapse allows (256 characters), and longer than that in UTF-8 bytes.
LONG_NAME = ("Ünal Lovelace-Byron, peer learner " * 8)[:255] + "ß"


async def explode(ctx: Context, invocation: Invocation) -> Reply:
    ctx.uow.post(Post(PostKind.SEND, ctx.event.channel, NEVER_POSTED))
    raise RuntimeError("the handler has a bug")


async def peerbot_cli(db: str, cwd: Path, *args: str) -> tuple[int | None, str, str]:
    """`peerbot ARGS` on the database, as a process beside the running bot: exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(PYTHONPATH=str(ROOT), PEERBOT_DATABASE_URL=db)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_a_poison_event_is_listed_as_failed_and_every_other_command_is_answered_once(
    db_url: str, bot_factory: StartBot, people: Callable[[], Member], tmp_path: Path
) -> None:
    """One /sync batch: a command that keeps raising, and a member with a 256-character display name,
    between other members' commands; on SQLite and on PostgreSQL (never skipped in CI)."""
    alice, bob, carol, dave, erin = people(), people(), people(), people(), people()
    assert len(LONG_NAME) == 256
    await carol.is_named(LONG_NAME)
    bot = await bot_factory(db=db_url, commands={EXPLODE: explode})
    room = await room_with_bot(alice, bot, bob, carol, dave, erin)
    assert "to Organizing" in await ask(alice, room, "!peer phase set organizing")
    await bot.stop()  # what is said now waits for the bot's next /sync: one batch

    status = await bob.says(room, "!peer status")
    propose = await carol.says(room, "!peer goal propose Read SICP together")
    poison = await dave.says(room, "!peer explode")
    help_ = await erin.says(room, "!peer help goal")
    bot = await bot_factory(bot.settings, db=db_url, commands={EXPLODE: explode})
    await bot.engine.wait_for(lambda got: any(e.event_id == poison for e in got))
    (batch,) = [b for b in bot.engine.batches if any(e.event_id == poison for e in b)]
    assert [e.event_id for e in commands(batch)] == [status, propose, poison, help_]

    sorry = await dave.sees(room, reply_to(poison))
    assert sorry["content"]["body"] == SORRY
    await erin.sees(room, reply_to(help_))
    # The sync went on: a command in a later batch is answered, and carol's name was stored whole.
    listed = await ask(bob, room, "!peer goal list")
    assert f"Goal 1: Read SICP together ({LONG_NAME})" in listed
    assert [e.event_id for e in bot.engine.received].count(poison) == 1

    code, out, err = await peerbot_cli(db_url, tmp_path, "events", "--failed")
    assert code == 0, err
    (line,) = out.splitlines()
    assert f"  matrix  {poison}  RuntimeError: the handler has a bug" in line

    # The batch's sync token was saved with it: started again, the bot goes on after it.
    await bot.stop()
    bot = await bot_factory(bot.settings, db=db_url, commands={EXPLODE: explode})
    shown = await ask(alice, room, "!peer goal show 1")
    assert f"Proposed by {LONG_NAME} on" in shown
    assert not {status, propose, poison, help_} & {e.event_id for e in bot.engine.received}

    events = await timeline_until_marker(alice, room)
    for command in (status, propose, poison, help_):
        assert len([e for e in events if reply_to(command)(e)]) == 1, command
    assert not [e for e in events if e.get("content", {}).get("body") == NEVER_POSTED]


async def test_the_bot_logs_in_with_an_access_token_and_writes_directly(
    homeserver: Homeserver, bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    account = homeserver.register()
    settings = bot_settings(homeserver, account, password=None, access_token=account.access_token)
    bot = await bot_factory(settings)
    assert bot.adapter.client.device_id == account.device_id
    await bot.chat.direct_message(
        UserRef("matrix", alice.user_id), Outbound("Your review answers are saved.")
    )
    invite = await alice.sees_invite()
    await alice.joins(invite)
    message = await alice.sees(invite, from_bot(bot.user_id))
    assert message["content"]["body"] == "Your review answers are saved."


async def test_a_token_for_someone_else_is_refused(homeserver: Homeserver, tmp_path: Path) -> None:
    mine, theirs = homeserver.register(), homeserver.register()
    settings = MatrixSettings(
        homeserver=homeserver.url, user_id=mine.user_id, access_token=theirs.access_token
    )
    store = await open_sqlite(tmp_path / "bot.db")
    bot = app.bootstrap(parse_config({}, env={}), store, FakeClock(), matrix=settings)
    adapter = bot.adapter(MatrixAdapter)
    try:
        with pytest.raises(LoginFailed, match="belongs to"):
            await adapter.start()
        adapter.settings = replace(settings, access_token="syt_not_a_token")
        with pytest.raises(LoginFailed, match="access token was refused"):
            await adapter.start()
    finally:
        await adapter.close()
        await store.close()


async def test_a_room_where_the_bot_may_not_post_does_not_stall_the_others(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory(retry_pause=0.05)
    muted = await room_with_bot(alice, bot)
    current = await alice.client.room_get_state_event(muted, "m.room.power_levels")
    content = {**current.content, "events_default": 50}  # type: ignore[union-attr]
    await alice.client.room_put_state(muted, "m.room.power_levels", content)
    await alice.says(muted, "!peer goal propose Learn Rust")  # its poll cannot be posted

    open_room = await room_with_bot(alice, bot)
    assert (await ask(alice, open_room, "!peer status")).startswith("Phase: Convening")
    assert not alice.find(muted, from_bot(bot.user_id))


async def test_a_scheduled_nudge_is_posted_in_the_room_once(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    answer = await ask(alice, room, "!peer nudge add daily 09:30 What did you learn today, @room?")
    assert answer.startswith("Nudge 1 added: daily 09:30 (UTC)")

    bot.clock.advance(timedelta(minutes=31))  # the injected clock; the scheduler ticks like this
    await bot.engine.engine.tick()
    await bot.engine.engine.tick()  # a second tick at the same time delivers nothing again
    nudge = await alice.sees(room, notice_starting(bot.user_id, "🔔 Nudge 1"))
    assert nudge["content"]["body"] == f"🔔 Nudge 1: What did you learn today, @{WORD_JOINER}room?"
    assert nudge["content"]["m.mentions"] == {}
    assert "m.relates_to" not in nudge["content"]
    marker = await alice.says(room, "!peer nudge list")
    await alice.sees(room, reply_to(marker))
    assert len(alice.find(room, notice_starting(bot.user_id, "🔔 Nudge 1"))) == 1


async def test_a_poll_counts_keycap_and_emoji_reactions_as_clients_send_them(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob, carol = people(), people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob, carol)
    answer = await ask(alice, room, "!peer poll create Which pace? | 🐢 slower | same as now")
    assert answer.startswith("Poll 1 is open")
    poll = await alice.sees(room, notice_starting(bot.user_id, "Poll 1: Which pace?"))
    await alice.sees(room, reaction_by(bot.user_id, str(poll["event_id"]), "2️⃣"))
    await bob.reacts(room, str(poll["event_id"]), "2️⃣")  # keycap, as Element sends it
    last = await carol.reacts(room, str(poll["event_id"]), "🐢\ufe0f")  # with a variation selector
    await bot.engine.wait_for(lambda got: any(e.event_id == last for e in got))
    results = await ask(alice, room, "!peer poll results 1")
    assert "🐢 slower" in results and "2 voters." in results
    assert [line.split()[-2] for line in results.splitlines()[1:3]] == ["1", "1"]

    joined = [e.user.id for e in bot.engine.received if isinstance(e, MemberJoined)]
    assert {bob.user_id, carol.user_id} <= set(joined)


async def test_peerbot_run_serves_discord_and_matrix_side_by_side(
    homeserver: Homeserver, people: Callable[[], Member], tmp_path: Path
) -> None:
    """The real command line, as a process, with both sections: one engine, two platforms."""
    fake = FakeDiscord()
    await fake.start()
    try:
        guild = fake.add_guild("g")
        general = fake.add_channel(guild, "general")
        dana = fake.add_member(guild, "dana")
        alice = people()
        account = homeserver.register()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"discord:\n  api_base_url: {fake.api_base_url}\n  gateway_url: {fake.gateway_url}\n"
            f"matrix:\n  homeserver: {homeserver.url}\n  user_id: '{account.user_id}'\n"
            "  send_per_second: 100\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
        env.update(
            PYTHONPATH=str(Path(__file__).resolve().parent.parent),
            PEERBOT_DISCORD_TOKEN=fake.token,
            PEERBOT_MATRIX_PASSWORD=account.password,
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            room = await alice.creates_room(invite=[account.user_id])
            await alice.sees(room, membership(account.user_id, "join"))
            assert (await ask(alice, room, "!peer status")).startswith("Phase: Convening")
            await fake.until(
                lambda: bool(fake.commands) and any(s.connection for s in fake.sessions.values()), 30
            )
            interaction = fake.run_command(dana, general, "/status", {})
            await fake.until(lambda: interaction.callback is not None)
            assert interaction.callback is not None
            assert interaction.callback["data"]["content"].startswith("Phase: Convening")
        finally:
            process.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        assert account.password not in out.decode() + err.decode()
    finally:
        await fake.stop()
        restore_discord_addresses()


# Idempotent sends: the transaction id comes from the outbox key -----------------------------------


async def timeline_until_marker(member: Member, room: str) -> list[dict[str, Any]]:
    """Everything in the room so far: the member says a marker and syncs until it sees it."""
    marker = await member.says(room, "(marker)")
    await member.sees(room, lambda e: e.get("event_id") == marker)
    return member.find(room, lambda e: True)


def bodies_from(bot_user_id: str, events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event_id"], e["content"]["body"]) for e in events if from_bot(bot_user_id)(e)]


def reactions_from(bot_user_id: str, events: list[dict[str, Any]], target: str) -> list[str]:
    return [
        e["content"]["m.relates_to"]["key"]
        for e in events
        if e.get("type") == "m.reaction"
        and e.get("sender") == bot_user_id
        and e["content"]["m.relates_to"]["event_id"] == target
    ]


async def cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_keyed_send_reply_and_reaction_are_posted_once_under_one_event_id(
    bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    alice = people()
    bot = await bot_factory(homeserver=matrix_proxy.url)
    room = await room_with_bot(alice, bot)
    channel = ChannelRef("matrix", room)
    poll = await bot.chat.send(channel, Outbound("Poll 1: which pace?"), key="o1")
    assert await bot.chat.send(channel, Outbound("Poll 1: which pace?"), key="o1") == poll
    other_row = await bot.chat.send(channel, Outbound("Poll 1: which pace?"), key="o2")
    assert other_row.id != poll.id
    command = MessageRef(channel, await alice.says(room, "Shall we start?"))
    answer = await bot.chat.reply(command, Outbound("Phase: Convening"), key="o3")
    assert await bot.chat.reply(command, Outbound("Phase: Convening"), key="o3") == answer
    await bot.chat.react(poll, "1️⃣", key="o4")
    await bot.chat.react(poll, "1️⃣", key="o4")
    await bot.chat.react(poll, "2️⃣")  # without a key, twice: the reaction stands, so that is no failure
    await bot.chat.react(poll, "2️⃣")

    events = await timeline_until_marker(alice, room)
    assert bodies_from(bot.user_id, events) == [
        (poll.id, "Poll 1: which pace?"),
        (other_row.id, "Poll 1: which pace?"),
        (answer.id, "Phase: Convening"),
    ]
    assert reply_to(command.id)(next(e for e in events if e["event_id"] == answer.id))
    assert reactions_from(bot.user_id, events, poll.id) == ["1️⃣", "2️⃣"]
    keyed = [s.txn_id for s in matrix_proxy.sends if s.content.get("m.relates_to", {}).get("key") == "1️⃣"]
    assert len(keyed) == 2 and keyed[0] == keyed[1]


@pytest.mark.parametrize("login", ["password", "access_token"])
async def test_a_send_whose_answer_was_lost_is_found_again_after_a_restart(
    homeserver: Homeserver,
    bot_factory: StartBot,
    people: Callable[[], Member],
    matrix_proxy: MatrixProxy,
    login: str,
) -> None:
    alice = people()
    account = homeserver.register()
    settings = replace(bot_settings(homeserver, account), homeserver=matrix_proxy.url)
    if login == "access_token":
        settings = replace(settings, password=None, access_token=account.access_token)
    bot = await bot_factory(settings)
    room = await room_with_bot(alice, bot)
    channel = ChannelRef("matrix", room)
    hold = matrix_proxy.hold_sends(HoldMode.ANSWER)
    sending = asyncio.create_task(
        bot.chat.send(channel, Outbound("🔔 Nudge 1: what did you learn?"), key="o7")
    )
    held = await hold.arrived()  # Synapse has stored it; the bot never hears so
    await cancelled(sending)
    await bot.stop()

    bot_again = await bot_factory(settings)  # the same database: the same device
    assert bot_again.adapter.client.device_id == bot.adapter.client.device_id
    if login == "password":  # a new login, so a new access token, on the stored device
        assert bot_again.adapter.client.access_token != bot.adapter.client.access_token
    sent = await bot_again.chat.send(channel, Outbound("🔔 Nudge 1: what did you learn?"), key="o7")
    assert sent.id == held.event_id
    events = await timeline_until_marker(alice, room)
    assert bodies_from(bot.user_id, events) == [(sent.id, "🔔 Nudge 1: what did you learn?")]


async def test_a_database_made_anew_does_not_meet_the_old_one_s_keys(
    homeserver: Homeserver, bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    """Outbox keys start again in a new database; the device (of an access token) may be the same."""
    alice = people()
    account = homeserver.register()
    settings = replace(bot_settings(homeserver, account), password=None, access_token=account.access_token)
    bot = await bot_factory(settings)
    room = await room_with_bot(alice, bot)
    channel = ChannelRef("matrix", room)
    old = await bot.chat.send(channel, Outbound("From the old database"), key="o1")
    await bot.stop()

    bot_afresh = await bot_factory(settings, db="new.db")
    assert bot_afresh.adapter.client.device_id == bot.adapter.client.device_id
    new = await bot_afresh.chat.send(channel, Outbound("From the new database"), key="o1")
    assert new.id != old.id
    events = await timeline_until_marker(alice, room)
    assert [body for _, body in bodies_from(bot.user_id, events)] == [
        "From the old database",
        "From the new database",
    ]


async def test_a_long_text_sent_again_with_its_key_posts_no_part_twice(
    bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    alice = people()
    bot = await bot_factory(homeserver=matrix_proxy.url)
    room = await room_with_bot(alice, bot)
    channel = ChannelRef("matrix", room)
    text = "\n".join(f"Reflection {n}: " + "ünd " * 60 for n in range(300))  # three notices
    hold = matrix_proxy.hold_sends(HoldMode.ANSWER, after=1)  # the second part is stored, unanswered
    sending = asyncio.create_task(bot.chat.send(channel, Outbound(text), key="o9"))
    await hold.arrived()
    await cancelled(sending)

    sent = await bot.chat.send(channel, Outbound(text), key="o9")
    events = await timeline_until_marker(alice, room)
    parts = bodies_from(bot.user_id, events)
    assert len(parts) == 3 and "\n".join(body for _, body in parts) == text
    assert sent.id == parts[0][0]
    txns = [s.txn_id for s in matrix_proxy.sends if s.event_type == "m.room.message"]
    assert txns[:2] == txns[2:4] and len(set(txns)) == 3


async def test_posts_that_can_never_succeed_fail_for_good(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    elsewhere = await alice.creates_room()  # the bot was never invited
    message = MessageRef(ChannelRef("matrix", elsewhere), await alice.says(elsewhere, "Learn Rust?"))
    attempts = [
        bot.chat.send(message.channel, Outbound("Poll 1"), key="o1"),
        bot.chat.reply(message, Outbound("Noted"), key="o2"),
        bot.chat.react(message, "👍", key="o3"),
        bot.chat.send(ChannelRef("matrix", "!nosuchroom:peerbot.test"), Outbound("Poll 2"), key="o4"),
    ]
    for attempt in attempts:
        with pytest.raises(DeliveryFailed) as refused:
            await attempt
        assert refused.value.permanent, refused.value.reason
        assert "M_FORBIDDEN" in refused.value.reason or "M_NOT_FOUND" in refused.value.reason

    room = await room_with_bot(alice, bot)
    with pytest.raises(DeliveryFailed, match="M_TOO_LARGE") as too_large:
        await bot.chat.send_event(room, "m.room.message", {"msgtype": "m.notice", "body": "x" * 70_000})
    assert too_large.value.permanent
    events = await timeline_until_marker(alice, elsewhere)
    assert not bodies_from(bot.user_id, events)


async def test_a_server_error_is_retried_with_the_same_key_and_posts_once(
    bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    alice = people()
    bot = await bot_factory(homeserver=matrix_proxy.url)
    room = await room_with_bot(alice, bot)
    channel = ChannelRef("matrix", room)
    failure = matrix_proxy.fail_sends(503)
    with pytest.raises(DeliveryFailed) as failed:
        await bot.chat.send(channel, Outbound("Poll 3: when?"), key="o5")
    assert not failed.value.permanent
    sent = await bot.chat.send(channel, Outbound("Poll 3: when?"), key="o5")
    assert matrix_proxy.sends[-1].txn_id == failure.failed[0].txn_id
    events = await timeline_until_marker(alice, room)
    assert bodies_from(bot.user_id, events) == [(sent.id, "Poll 3: when?")]


async def test_a_send_that_times_out_may_be_retried(
    bot_factory: StartBot, people: Callable[[], Member], matrix_proxy: MatrixProxy
) -> None:
    alice = people()
    bot = await bot_factory(homeserver=matrix_proxy.url)
    room = await room_with_bot(alice, bot)
    impatient = replace(bot.settings, request_timeout=0.2)
    client = make_client(impatient)
    client.restore_login(bot.user_id, bot.adapter.client.device_id, bot.adapter.client.access_token)
    hold = matrix_proxy.hold_sends(HoldMode.REQUEST, count=4)  # nio's first try and its 3 retries
    try:
        with pytest.raises(DeliveryFailed) as timed_out:
            await MatrixChat(client, impatient).send(ChannelRef("matrix", room), Outbound("late"), key="o6")
    finally:
        await client.close()
    assert not timed_out.value.permanent
    assert len(hold.held) == 4 and len({h.txn_id for h in hold.held}) == 1


@pytest.mark.parametrize("mode", [HoldMode.ANSWER, HoldMode.REQUEST])
async def test_a_bot_killed_during_a_send_posts_it_once_after_restart(
    homeserver: Homeserver,
    bot_factory: StartBot,
    people: Callable[[], Member],
    matrix_proxy: MatrixProxy,
    tmp_path: Path,
    mode: HoldMode,
) -> None:
    alice = people()
    account = homeserver.register()
    settings = replace(bot_settings(homeserver, account), homeserver=matrix_proxy.url)
    bot = await bot_factory(settings)
    room = await room_with_bot(alice, bot)
    await bot.stop()

    hold = matrix_proxy.hold_sends(mode)
    text = "🔔 Nudge 2: one thing you would teach?"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(PYTHONPATH=str(ROOT), PEERBOT_MATRIX_PASSWORD=account.password)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.matrix_send_worker",
        matrix_proxy.url, account.user_id, str(tmp_path / "bot.db"), room, "o8", text,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    held = await hold.arrived()
    worker.send_signal(signal.SIGKILL)
    out, _ = await worker.communicate()
    assert worker.returncode == -signal.SIGKILL and b"sent" not in out

    bot_again = await bot_factory(settings)
    sent = await bot_again.chat.send(ChannelRef("matrix", room), Outbound(text), key="o8")
    if mode is HoldMode.ANSWER:
        assert sent.id == held.event_id
    else:  # the request that never got through arrives after all, late: Synapse knows its txn id
        hold.release()
        late = await hold.reached_synapse()
        assert late.event_id == sent.id
    events = await timeline_until_marker(alice, room)
    assert bodies_from(bot.user_id, events) == [(sent.id, text)]
    assert {s.txn_id for s in matrix_proxy.sends if s.event_type == "m.room.message"} == {held.txn_id}


# Files --------------------------------------------------------------------------------------------


async def test_export_posts_its_summary_and_the_file_as_an_m_file_upload(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    await alice.says(room, "!peer reflect Pairing works")
    command = await alice.says(room, "!peer export json")
    summary = await alice.sees(room, reply_to(command))
    assert summary["sender"] == bot.user_id and summary["content"]["msgtype"] == "m.notice"
    body = summary["content"]["body"]
    assert "the group's record as JSON, 0 goals, 0 polls, 0 reviews, 1 reflection (" in body
    assert "\n" not in body and summary["content"]["m.mentions"] == {}
    posted = await alice.sees(room, from_bot(bot.user_id, "m.file"))
    content = posted["content"]
    assert content["body"] == content["filename"]
    assert content["filename"].startswith("peerbot-") and content["filename"].endswith(
        "-2026-03-02-0900.json"
    )
    assert content["info"]["mimetype"] == "application/json"
    assert content["url"].startswith("mxc://")
    downloaded = await alice.client.download(mxc=content["url"])
    assert isinstance(downloaded, DownloadResponse), downloaded
    assert content["info"]["size"] == len(downloaded.body)
    data = json.loads(downloaded.body)
    assert [r["text"] for r in data["reflections"]] == ["Pairing works"]
    assert data["group"]["channel"] == room


async def test_an_export_over_the_homeservers_upload_limit_is_refused_clearly(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot)
    first = await alice.says(room, "!peer status")  # the group exists from here
    await alice.sees(room, reply_to(first))
    async with bot.store.transaction() as tx:  # a long record: the test Synapse takes 1 MiB at most
        group = await tx.groups.get(ChannelRef("matrix", room))
        assert group is not None
        for n in range(1200):
            author = UserRef("matrix", alice.user_id, "alice")
            await tx.reviews.add_reflection(
                group.id, None, None, author, f"{n} " + "x" * 900, bot.clock.now()
            )
    command = await alice.says(room, "!peer export json")
    refusal = await alice.sees(room, reply_to(command))
    assert refusal["content"]["body"].startswith("The JSON export is 1.")
    assert (
        ", over the 1.0 MB a file may have here, so it was not sent. CSV is the smallest: !peer export csv."
        in (refusal["content"]["body"])
    )
    assert not alice.find(room, from_bot(bot.user_id, "m.file"))


async def test_send_file_reads_the_limit_from_the_homeserver_and_maps_its_refusal(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice = people()
    bot = await bot_factory()
    room = ChannelRef("matrix", await room_with_bot(alice, bot))
    assert await bot.chat.max_file_size(room) == 1024 * 1024  # m.upload.size of the test Synapse
    big = Attachment("big.csv", b"x" * (1024 * 1024 + 1), "text/csv")
    with pytest.raises(FileTooLarge) as refused:
        await bot.chat.send_file(room, big, Outbound("📦 too big"), key="f1")
    assert refused.value.limit == 1024 * 1024 and "M_TOO_LARGE" in refused.value.reason
    small = Attachment("small.csv", b"a,b\r\n1,2\r\n", "text/csv")
    sent = await bot.chat.send_file(room, small, Outbound("📦 small"), key="f2")
    again = await bot.chat.send_file(room, small, Outbound("📦 small"), key="f2")
    assert again == sent  # the same transaction ids: nothing posted twice
    posted = await alice.sees(room.id, from_bot(bot.user_id, "m.file"))
    assert posted["event_id"] == sent.id and posted["content"]["info"] == {"mimetype": "text/csv", "size": 10}
    assert not alice.find(room.id, lambda e: e.get("content", {}).get("body") == "📦 too big")


async def test_an_anonymous_poll_is_voted_on_privately_and_a_vote_in_the_room_is_redacted(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    alice, bob = people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob)
    current = await alice.client.room_get_state_event(room, "m.room.power_levels")
    content = dict(current.content)  # type: ignore[union-attr]
    content["users"] = {**content.get("users", {}), bot.user_id: 50}  # enough to redact
    await alice.client.room_put_state(room, "m.room.power_levels", content)

    def body(event: dict[str, Any]) -> str:
        return str(event.get("content", {}).get("body", ""))

    await alice.says(room, "!peer poll create --anonymous Pace? | slower | same | faster")
    poll = await bob.sees(room, lambda e: body(e).startswith("Anonymous poll 1: Pace?"))
    assert "write !peer vote 1 <number> to me directly" in body(poll)
    assert not bob.find(room, lambda e: e.get("type") == "m.reaction")  # no reactions on it

    public = await bob.says(room, "!peer vote 1 2")
    await bob.sees(room, lambda e: e.get("type") == "m.room.redaction" and e.get("redacts") == public)
    notice = await bob.sees(room, lambda e: "!peer vote is private" in body(e))
    assert notice["sender"] == bot.user_id and "2" not in body(notice)
    async with asyncio.timeout(30):  # the bot opens a direct room to bob
        while not [r for r in bob.invited if r != room]:
            await bob.sync()
    (direct,) = [r for r in bob.invited if r != room]
    await bob.joins(direct)
    await bob.sees(direct, lambda e: body(e).startswith("Write !peer vote here"))

    await bob.says(direct, "!peer vote 1 2")
    counted = await bob.sees(direct, lambda e: "is counted" in body(e))
    assert body(counted).startswith("Your vote on poll 1 is counted: 2.")
    async with bot.store.transaction() as tx:
        group = await tx.groups.get(ChannelRef("matrix", room))
        assert group is not None
        found = await tx.polls.get(group.id, 1)
        assert found is not None
        assert tally(found, await tx.polls.reactions(found.id)).counts == (0, 1, 0)
        # What was said in the room was withheld, not counted: only the private vote is.
        assert all(r.user_key.startswith("anon:") for r in await tx.polls.reactions(found.id))


async def test_rsvps_to_a_meeting_count_once_across_a_restart(
    bot_factory: StartBot, people: Callable[[], Member]
) -> None:
    """The announcement gets ✅ ❔ ❌ from the bot; members' reactions are RSVPs, a redaction takes one
    back, and what happened while the bot was down is back-filled once, with nothing counted twice."""
    alice, bob, carol = people(), people(), people()
    bot = await bot_factory()
    room = await room_with_bot(alice, bot, bob, carol)
    command = await alice.says(room, "!peer meet add daily 18:00 | Reading circle")
    added = await alice.sees(room, reply_to(command))
    assert added["content"]["body"].startswith("Meeting 1 added: Reading circle"), added
    await bot.engine.engine.tick()  # less than a day ahead: announced at once
    announced = await alice.sees(
        room, lambda e: from_bot(bot.user_id, None)(e) and e["content"]["body"].startswith("📅 Meeting 1")
    )
    message = announced["event_id"]
    for key in ("✅", "❔", "❌"):
        await alice.sees(
            room,
            lambda e, key=key: (
                e.get("type") == "m.reaction"
                and e.get("sender") == bot.user_id
                and e["content"]["m.relates_to"]
                == {"rel_type": "m.annotation", "event_id": message, "key": key}
            ),
        )
    yes = await bob.reacts(room, message, "✅")
    maybe = await carol.reacts(room, message, "❔")
    await bot.engine.wait_for(lambda got: {yes, maybe} <= {e.event_id for e in got})
    await bot.stop()

    await bob.redacts(room, yes)  # bob changes his mind while the bot is away
    no = await bob.reacts(room, message, "❌")
    bot_again = await bot_factory(bot.settings)
    await bot_again.engine.wait_for(lambda got: any(e.event_id == no for e in got))
    asked = await alice.says(room, "!peer meet list")
    listed = await alice.sees(room, reply_to(asked))
    assert "RSVPs ✅ 0, ❔ 1, ❌ 1" in listed["content"]["body"], listed["content"]["body"]
