"""The unit of work and the outbox: posts survive failures, one bad event never stalls the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bot.recurrence import CronRecurrence
from core import faults
from core.commands import COMMANDS, CommandSpec
from core.dead_letters import SORRY
from core.engine import Engine, MissingHandler
from core.events import CommandInvoked, ReactionAdded
from core.outbox import LEASE, Dispatcher, Post, PostKind, PostState
from core.ports import DeliveryFailed, Outbound, StateChanges
from core.refs import ChannelRef, MessageRef, UserRef
from tests.support import START, FakeChat, FakeClock, Harness, MemoryStore


@dataclass
class FlakyChat(FakeChat):
    """A chat that refuses the next posts, as a platform does when it is down or forbids posting."""

    refusals: list[DeliveryFailed | Exception] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.keys.append(key)
        if self.refusals:
            raise self.refusals.pop(0)
        return await super().send(channel, message, key=key)


async def outbox_rows(h: Harness) -> list:
    async with h.store.transaction() as tx:
        return await tx.outbox.rows()


async def test_a_post_that_fails_for_a_while_is_sent_once_with_the_same_key() -> None:
    h = Harness()
    h.chat = FlakyChat(facilitators={"alice"})
    h.engine = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    await h.regulars("alice")
    h.chat.refusals = [TimeoutError("no answer"), DeliveryFailed("busy", permanent=False, retry_after=30)]
    await h.member("alice").says("/poll create Tea? | yes | no")
    assert h.chat.sent == [] and [r.state for r in await outbox_rows(h)] == [PostState.PENDING]
    h.clock.advance(timedelta(seconds=1))
    await h.engine.tick()  # the first retry is refused again, with a wait the platform asked for
    assert h.chat.sent == []
    h.clock.advance(timedelta(seconds=30))
    await h.engine.tick()
    (poll,) = h.chat.sent
    assert poll.text.startswith("Poll 1: Tea?")
    assert len(set(h.chat.keys)) == 1 and h.chat.keys[0] is not None  # one key for every attempt
    assert [emoji for _, emoji in h.chat.reactions] == ["1️⃣", "2️⃣"]
    assert await outbox_rows(h) == []  # sent rows are pruned
    await h.member("bob").reacts(poll.ref, "1️⃣")
    assert (await h.tally()).counts == (1, 0)  # the posted message is linked to its poll


async def test_a_post_the_platform_will_never_take_is_marked_failed_and_the_lane_moves_on() -> None:
    h = Harness()
    h.chat = FlakyChat(facilitators={"alice"})
    h.engine = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence())
    await h.regulars("alice")
    h.chat.refusals = [DeliveryFailed("Missing Permissions", permanent=True)]
    await h.member("alice").says("/poll create First? | a | b")
    await h.member("alice").says("/poll create Second? | a | b")
    (row,) = await outbox_rows(h)
    assert row.state is PostState.FAILED and row.post.poll_id == 1
    assert [s.text.split("\n")[0] for s in h.chat.sent] == ["Poll 2: Second?"]


async def test_a_post_not_sent_within_the_maximum_age_is_dropped_not_posted_late() -> None:
    h = Harness()
    h.chat = FlakyChat(facilitators={"alice"})
    h.engine = Engine(
        h.store, h.clock, [h.chat], recurrence=CronRecurrence(), outbox_max_age=timedelta(minutes=10)
    )
    await h.regulars("alice")
    h.chat.refusals = [DeliveryFailed("down", permanent=False, retry_after=60 * 60)]
    await h.member("alice").says("/pulse")
    h.clock.advance(timedelta(hours=2))
    await h.engine.tick()
    (row,) = await outbox_rows(h)
    assert row.state is PostState.DROPPED and h.chat.sent == []


async def test_one_failing_command_in_a_batch_is_recorded_and_the_others_are_answered() -> None:
    store = MemoryStore()
    chat = FakeChat(facilitators={"alice"}, interactive_replies=False)
    h = Harness(store=store)
    h.chat = chat
    h.engine = engine = Engine(store, h.clock, [chat], recurrence=CronRecurrence())
    calls = 0

    async def broken(ctx, inv):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        raise RuntimeError("the phase table is on fire")

    engine.handlers[("phase", "history")] = broken
    general = ChannelRef("fake", "general", "#general")

    def command(n: int, who: str, text: str) -> CommandInvoked:
        user = UserRef("fake", who, who)
        return CommandInvoked(f"e{n}", general, user, text, None, MessageRef(general, f"m{n}"))

    batch = [command(1, "bob", "status"), command(2, "carol", "phase history"), command(3, "dave", "help")]
    replies = await engine.handle_batch(batch, StateChanges("matrix", {"sync.token": "s42"}))
    await engine.settle()
    assert calls == 3  # tried a bounded number of times
    assert replies[1] is not None and replies[1].text == SORRY
    answered = {s.reply_to.id: s.text for s in chat.sent if s.reply_to is not None}
    assert answered["m1"].startswith("Phase: Convening") and answered["m3"].startswith("Peerbot commands")
    assert answered["m2"] == SORRY
    async with store.transaction() as tx:
        (failed,) = await tx.events.failed(10)
        assert await tx.state("matrix").get("sync.token") == "s42"
    assert failed[1:3] == ("fake", "e2") and "the phase table is on fire" in failed[3]
    assert await engine.handle_batch([command(2, "carol", "phase history")]) == [None]  # skipped now


async def test_what_an_adapter_says_on_its_own_is_queued_with_the_batch_state() -> None:
    """A notice the adapter hands over with a batch (Matrix: "this room is encrypted") commits with the
    state that records it was said: a crash before the commit keeps neither, the batch again posts it once."""
    h = Harness()
    notice = Post(PostKind.SEND, ChannelRef("fake", "secret"), "Peerbot does not serve this room.")
    vote = ReactionAdded("e1", MessageRef(h.channel, "m1"), UserRef("fake", "bob", "bob"), "👍")
    told = StateChanges("fake", {"secret.told": "yes"})

    def crash(point: str) -> None:
        if point == "uow.before_commit":
            raise RuntimeError("the process died before the commit")

    faults.install(crash)
    try:
        with pytest.raises(RuntimeError, match="died"):
            await h.engine.handle_batch([vote], told, [notice])
    finally:
        faults.install(None)
    async with h.store.transaction() as tx:
        assert await tx.state("fake").get("secret.told") is None
        assert await tx.outbox.rows() == []

    await h.engine.handle_batch([vote], told, [notice])  # the sync again
    await h.engine.settle()
    assert [(s.channel.id, s.text) for s in h.chat.sent] == [("secret", "Peerbot does not serve this room.")]
    async with h.store.transaction() as tx:
        assert await tx.state("fake").get("secret.told") == "yes"


def test_a_command_declared_without_a_handler_stops_start_up() -> None:
    orphan = CommandSpec(("teleport",), "Move the group somewhere else.")
    with pytest.raises(MissingHandler, match="teleport"):
        Engine(MemoryStore(), Harness().clock, [], [*COMMANDS, orphan], recurrence=CronRecurrence())


async def test_applied_event_ids_are_pruned_after_the_retention_window() -> None:
    h = Harness()
    h.engine = Engine(h.store, h.clock, [h.chat], recurrence=CronRecurrence(), retention=timedelta(days=7))
    for _ in range(30):
        await h.member("bob").says("/status")
        h.clock.advance(timedelta(days=1))
        await h.engine.tick()
        assert len(h.store.data.events) <= 8  # a week of one event a day, never more
    assert len(h.store.data.events) >= 7


@dataclass
class KeyedChat(FakeChat):
    """A chat that keeps the idempotency key of each post with its text."""

    keyed: list[tuple[str, str | None]] = field(default_factory=list)

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        self.keyed.append((message.text, key))
        return await super().send(channel, message, key=key)


@dataclass
class SlowChat(KeyedChat):
    """A platform that takes `pause` of wall-clock time per post; meanwhile another process looks for
    work (`meanwhile`), as a second bot process on the same database would."""

    wall: list[datetime] = field(default_factory=lambda: [datetime(2030, 1, 1, tzinfo=UTC)])
    pauses: list[timedelta] = field(default_factory=list)
    meanwhile: Dispatcher | None = None

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        sent = await super().send(channel, message, key=key)
        self.wall[0] += self.pauses.pop(0) if self.pauses else timedelta(seconds=12)
        if self.meanwhile is not None:
            await self.meanwhile.dispatch()
        return sent


async def two_processes_send_eight_posts(first: SlowChat) -> KeyedChat:
    """Eight posts queued; the process on `first` sends them while a second one on the same database
    looks for work after each post. Returns the second one's chat; the outbox ends empty."""
    store, clock = MemoryStore(), FakeClock()
    other = KeyedChat()
    mine = Dispatcher(store, clock, {"fake": first}, "one", lease=LEASE, wall=lambda: first.wall[0])
    first.meanwhile = Dispatcher(
        store, clock, {"fake": other}, "two", lease=LEASE, wall=lambda: first.wall[0]
    )
    async with store.transaction() as tx:
        await tx.outbox.add(
            [Post(PostKind.SEND, ChannelRef("fake", "general"), f"post {n}") for n in range(8)], START
        )
    await mine.dispatch()
    async with store.transaction() as tx:
        assert await tx.outbox.rows() == []
    return other


async def test_a_batch_slower_than_its_lease_renews_it_and_sends_each_post_once() -> None:
    """12 s a post: a batch of 8 outlasts its 30 s lease; renewed as it goes, another process on the
    database finds nothing to take."""
    first = SlowChat()
    other = await two_processes_send_eight_posts(first)
    assert [text for text, _ in first.keyed] == [f"post {n}" for n in range(8)] and other.keyed == []


async def test_a_post_that_outlasts_its_lease_leaves_the_rest_to_another_process() -> None:
    """The first post takes 45 s, past the 30 s lease: another process takes the batch's rows and sends
    them; the first sends none of them again. The post in flight when its lease ran out may reach the
    platform twice, with the same key (the platform keeps one, as after a crash)."""
    first = SlowChat(pauses=[timedelta(seconds=45)])
    other = await two_processes_send_eight_posts(first)
    assert [text for text, _ in first.keyed] == ["post 0"]
    assert [text for text, _ in other.keyed] == [f"post {n}" for n in range(8)]
    assert first.keyed[0][1] == other.keyed[0][1] is not None  # the same key: one post on the platform
