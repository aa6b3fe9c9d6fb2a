"""The store contract: the same cases against the in-memory fake and the SQL store (SQLite, PostgreSQL).

Every case asserts only what the port promises, so a fake that drifts from the real store fails here,
and `test_the_contract_calls_every_method_of_the_port` fails when the port grows a method no case uses.
What the port does not expose (an outbox row's reason, the delivery records) is read through `Peek`,
one small reader per store.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import select

from adapters.sql import migrate
from adapters.sql.schema import deliveries, outbox
from adapters.sql.store import SqlStore, make_engine
from core.clock import utc
from core.forgetting import FORMER_MEMBER, Forgotten
from core.goals import GoalStatus
from core.lifecycle import Phase, PhaseChange, QuietHours
from core.meetings import Occurrence, Rsvp, When
from core.members import Contributions, RosterEntry
from core.outbox import Post, PostKind, PostState, Thread
from core.polls import GroupCounts, PollKind, PollOption, PollReaction, PollRequest, ReactionChange
from core.ports import (
    ConcernRepo,
    EventLog,
    GoalRepo,
    GroupRepo,
    MeetingRepo,
    MemberRepo,
    OutboxRepo,
    PollRepo,
    ReadOnly,
    ReviewRepo,
    RoleRepo,
    ScheduleRepo,
    StateChanges,
    StateRepo,
    Store,
    StoreTx,
)
from core.refs import ChannelRef, MessageRef, UserRef
from core.reminders import Absent, Unresponded
from core.roles import BUILT_IN, PoolMember, Rotation, WrapState
from core.schedules import DueSchedule, ScheduleKind
from tests.support import MemoryStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)

GENERAL = ChannelRef("discord", "general", "#general")
STUDY = ChannelRef("discord", "study", "#study")
ROOM = ChannelRef("matrix", "!room:example.org", "Room")
ALICE = UserRef("discord", "alice", "Alice")
BOB = UserRef("discord", "bob", "Bob")

YES_NO = PollRequest("Meet weekly?", (PollOption("👍", "yes"), PollOption("👎", "no")), duration=HOUR)


class Peek(Protocol):
    """Reads what the port keeps but does not return, to check that it was kept."""

    async def reason(self, row_id: int) -> str | None: ...

    async def deliveries(self) -> set[tuple[int, datetime]]: ...


class MemoryPeek:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def reason(self, row_id: int) -> str | None:
        row = self.store.data.outbox.get(row_id)
        return row.reason if row is not None else None

    async def deliveries(self) -> set[tuple[int, datetime]]:
        return set(self.store.data.deliveries)


class SqlPeek:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def reason(self, row_id: int) -> str | None:
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(outbox.c.reason).where(outbox.c.id == row_id))).scalar()

    async def deliveries(self) -> set[tuple[int, datetime]]:
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(select(deliveries.c.schedule_id, deliveries.c.occurrence))
            return {(r.schedule_id, utc(r.occurrence)) for r in rows}


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, empty_database: Callable[[str], AbstractAsyncContextManager[str]]
) -> AsyncIterator[Store]:
    """Each store the bot can run on, empty."""
    if request.param == "memory":
        yield MemoryStore()
        return
    async with empty_database(request.param) as url:
        engine = make_engine(url)
        await migrate.upgrade(engine)
        sql = SqlStore(engine)
        try:
            yield sql
        finally:
            await sql.close()


@pytest.fixture
def peek(store: Store) -> Peek:
    if isinstance(store, MemoryStore):
        return MemoryPeek(store)
    assert isinstance(store, SqlStore)
    return SqlPeek(store)


async def make_group(store: Store, channel: ChannelRef = GENERAL) -> int:
    async with store.transaction() as tx:
        return (await tx.groups.create(channel, Phase.CONVENING, T0)).id


# Groups and phases ------------------------------------------------------------------------------


async def test_groups_are_found_by_channel_and_id(store: Store) -> None:
    async with store.transaction() as tx:
        general = await tx.groups.create(GENERAL, Phase.CONVENING, T0)
        room = await tx.groups.create(ROOM, Phase.ORGANIZING, T0 + MINUTE)
    assert general.id != room.id
    assert (general.channel, general.phase, general.phase_since, general.created_at) == (
        GENERAL,
        Phase.CONVENING,
        T0,
        T0,
    )
    async with store.transaction() as tx:
        found = await tx.groups.get(ChannelRef("discord", "general"))  # the display name is not the key
        assert found == general
        assert found is not None and found.channel.display == "#general"
        assert await tx.groups.get(ChannelRef("matrix", "general")) is None
        assert await tx.groups.by_id(room.id) == room
        assert await tx.groups.by_id(room.id + general.id + 1) is None
        assert await tx.groups.many([room.id, 9999, general.id, room.id]) == {
            general.id: general,
            room.id: room,
        }
        assert await tx.groups.many([]) == {}


async def test_a_phase_change_moves_the_group_and_is_kept_in_order(store: Store) -> None:
    group_id = await make_group(store)
    steps = [
        PhaseChange(group_id, Phase.CONVENING, Phase.ORGANIZING, T0 + HOUR, "Alice", "ready", ALICE.key),
        PhaseChange(group_id, Phase.ORGANIZING, Phase.COOPERATING, T0 + 2 * HOUR, "Bob", "", BOB.key),
        PhaseChange(group_id, Phase.COOPERATING, Phase.ASSESSING, T0 + 3 * HOUR, "auto", "review"),
    ]
    async with store.transaction() as tx:
        for change in steps:
            await tx.groups.record_phase_change(change)
        other = await tx.groups.create(STUDY, Phase.CONVENING, T0)
        await tx.groups.record_phase_change(PhaseChange(other.id, None, Phase.CHANGING, T0, "x", "y"))
    async with store.transaction() as tx:
        group = await tx.groups.by_id(group_id)
        assert group is not None
        assert (group.phase, group.phase_since) == (Phase.ASSESSING, T0 + 3 * HOUR)
        assert await tx.groups.phase_history(group_id, 10) == steps
        assert await tx.groups.phase_history(group_id, 2) == steps[1:]  # the most recent, oldest first
        assert await tx.groups.phase_history(group_id, 0) == []
        assert await tx.groups.phase_history(group_id) == steps  # no limit: all of them
        assert await tx.groups.phase_history(other.id, 10) == [
            PhaseChange(other.id, None, Phase.CHANGING, T0, "x", "y")
        ]


async def test_group_settings_are_kept(store: Store) -> None:
    group_id = await make_group(store)
    quiet = QuietHours(time(22, 0), time(7, 30))
    async with store.transaction() as tx:
        await tx.groups.set_settings(group_id, 3, timedelta(hours=48))
        await tx.groups.set_timezone(group_id, "Europe/Berlin")
        await tx.groups.set_quiet_hours(group_id, quiet)
        await tx.groups.set_auto(group_id, auto_review=False, auto_checkin=True)
    async with store.transaction() as tx:
        group = await tx.groups.by_id(group_id)
    assert group is not None
    assert (group.goal_quorum, group.decision_window) == (3, timedelta(hours=48))
    assert (group.timezone, group.quiet, group.auto_review, group.auto_checkin) == (
        "Europe/Berlin",
        quiet,
        False,
        True,
    )
    async with store.transaction() as tx:
        await tx.groups.set_settings(group_id, None, None)
        await tx.groups.set_quiet_hours(group_id, None)
        await tx.groups.set_auto(group_id, auto_review=True, auto_checkin=False)
        group = await tx.groups.by_id(group_id)
    assert group is not None
    assert (group.goal_quorum, group.decision_window, group.quiet) == (None, None, None)
    assert (group.auto_review, group.auto_checkin) == (True, False)


async def test_a_group_has_threads_until_it_switches_them_off(store: Store) -> None:
    group_id, other = await make_group(store), await make_group(store, STUDY)
    async with store.transaction() as tx:
        group = await tx.groups.by_id(group_id)
        assert group is not None and group.auto_threads
        await tx.groups.set_threads(group_id, False)
    async with store.transaction() as tx:
        groups = await tx.groups.many([group_id, other])
        assert (groups[group_id].auto_threads, groups[other].auto_threads) == (False, True)
        await tx.groups.set_threads(group_id, True)
        group = await tx.groups.get(GENERAL)
    assert group is not None and group.auto_threads


async def test_a_silence_is_answered_once_per_silence_and_only_on_served_platforms(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        await tx.groups.touch_activity(general, T0)
        await tx.groups.touch_activity(study, T0 + 2 * HOUR)
        await tx.groups.touch_activity(room, T0)
    async with store.transaction() as tx:
        quiet = await tx.groups.quiet(T0 + HOUR, 10, ["discord"])
        assert [g.id for g in quiet] == [general]
        assert quiet[0].last_activity_at == T0
        assert [g.id for g in await tx.groups.quiet(T0 + 3 * HOUR, 10, ["discord"])] == [general, study]
        assert [g.id for g in await tx.groups.quiet(T0 + 3 * HOUR, 1, ["discord"])] == [general]
        assert [g.id for g in await tx.groups.quiet(T0 + 3 * HOUR, 10, ["matrix"])] == [room]
        assert await tx.groups.claim_heartbeat(general, T0 + HOUR)
        assert not await tx.groups.claim_heartbeat(general, T0 + HOUR)  # another process answered it
    async with store.transaction() as tx:
        assert [g.id for g in await tx.groups.quiet(T0 + 3 * HOUR, 10, ["discord"])] == [study]
        group = await tx.groups.by_id(general)
        assert group is not None and group.heartbeat_sent_at == T0 + HOUR
        await tx.groups.touch_activity(general, T0 + 4 * HOUR)  # a new silence begins
        assert [g.id for g in await tx.groups.quiet(T0 + 5 * HOUR, 10, ["discord"])] == [general, study]
        assert await tx.groups.claim_heartbeat(general, T0 + 5 * HOUR)


async def test_a_heartbeat_can_be_claimed_for_a_group_never_active(store: Store) -> None:
    # Not a silence quiet_groups reports, but the claim is a plain compare-and-swap on the heartbeat:
    # nobody answered it yet, so the first claim wins.
    group_id = await make_group(store)
    async with store.transaction() as tx:
        assert await tx.groups.claim_heartbeat(group_id, T0)
        assert not await tx.groups.claim_heartbeat(group_id, T0)


# Adapter state, events ----------------------------------------------------------------------------


async def test_adapter_state_is_kept_overwritten_and_deleted(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("since") is None
        await tx.state("matrix").set("since", "s1")
        await tx.state("discord").set("session", "abc")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("since") == "s1"
        await tx.state("matrix").set("since", "s2")
        assert await tx.state("matrix").get("since") == "s2"
        await tx.state("matrix").delete("since")
        await tx.state("never").delete("set")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("since") is None
        assert await tx.state("discord").get("session") == "abc"


async def test_many_state_keys_are_read_set_and_deleted_at_once(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.state("matrix").update({f"reaction.{n}": f"r{n}" for n in range(6000)} | {"since": "s1"})
        await tx.state("discord").set("reaction.1", "other")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get_many(
            ["reaction.1", "reaction.5999", "nothing", "reaction.1"]
        ) == {
            "reaction.1": "r1",
            "reaction.5999": "r5999",
        }
        await tx.state("matrix").update({"reaction.1": None, "reaction.2": "again", "never.set": None})
        await StateChanges("matrix", {f"reaction.{n}": None for n in range(3, 6000)}).save(tx)
    async with store.transaction() as tx:
        assert await tx.state("matrix").get_many([f"reaction.{n}" for n in range(6000)]) == {
            "reaction.0": "r0",
            "reaction.2": "again",
        }
        assert await tx.state("matrix").get("since") == "s1"
        assert await tx.state("discord").get("reaction.1") == "other"


async def test_a_pushed_batch_is_known_once_recorded_with_its_state(store: Store) -> None:
    async with store.transaction() as tx:
        assert not await tx.state("matrix").batch_applied("41")
        await StateChanges("matrix", {"since": "s1"}, batch_id="41").save(tx)
        await tx.state("matrix").record_batch("41")  # again: nothing changes
    async with store.transaction() as tx:
        assert await tx.state("matrix").batch_applied("41")
        assert await tx.state("matrix").get("since") == "s1"
        assert not await tx.state("discord").batch_applied("41")
        assert not await tx.state("matrix").batch_applied("42")


async def test_a_batch_not_committed_is_not_known(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.state("matrix").record_batch("7")
            raise RuntimeError("the events were not applied")
    async with store.transaction() as tx:
        assert not await tx.state("matrix").batch_applied("7")


async def test_only_the_latest_batch_ids_are_kept(store: Store) -> None:
    async with store.transaction() as tx:
        for number in range(5):
            await tx.state("matrix").record_batch(f"t{number}")
        await tx.state("discord").record_batch("d0")
    async with store.transaction() as tx:
        assert await tx.state("matrix").forget_batches(keep=2) == 3
        assert await tx.state("matrix").forget_batches(keep=2) == 0
    async with store.transaction() as tx:
        kept = [n for n in range(5) if await tx.state("matrix").batch_applied(f"t{n}")]
        assert kept == [3, 4]
        assert await tx.state("discord").batch_applied("d0")
        assert await tx.state("matrix").forget_batches(keep=0) == 2
        assert not await tx.state("matrix").batch_applied("t4")


async def test_each_adapter_keeps_its_state_in_its_own_namespace(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.state("matrix").set("since", "m1")
        await tx.state("discord").set("since", "d1")
        await tx.state("discord").delete("since")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("since") == "m1"
        assert await tx.state("discord").get("since") is None
        with pytest.raises(ValueError, match="namespace"):
            tx.state("matrix.reaction")
        with pytest.raises(ValueError, match="namespace"):
            tx.state("")


async def test_events_are_claimed_once_per_platform(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.events.claim("discord", "e1", T0)
        assert not await tx.events.claim("discord", "e1", T0)
        assert await tx.events.claim("matrix", "e1", T0)
    async with store.transaction() as tx:
        assert not await tx.events.claim("discord", "e1", T0)
        assert await tx.events.claim_many("discord", ["e1", "e2", "e3", "e2"], T0) == {"e2", "e3"}
        assert await tx.events.claim_many("discord", ["e2", "e3"], T0) == set()
        assert await tx.events.claim_many("discord", [], T0) == set()
        assert await tx.events.claim_many("matrix", ["e2"], T0) == {"e2"}


async def test_pruning_forgets_only_older_events(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.events.claim_many("discord", ["old1", "old2"], T0)
        await tx.events.claim("matrix", "old3", T0 + MINUTE)
        await tx.events.claim("discord", "new", T0 + HOUR)
    async with store.transaction() as tx:
        assert await tx.events.prune(T0 + HOUR) == 3
        assert await tx.events.prune(T0 + HOUR) == 0
    async with store.transaction() as tx:
        assert await tx.events.claim("discord", "old1", T0 + 2 * HOUR)  # forgotten: claimable again
        assert not await tx.events.claim("discord", "new", T0 + 2 * HOUR)


async def test_failed_events_are_skipped_and_listed_newest_first(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.events.record_failed("matrix", "$b", T0, "ValueError: b")
        await tx.events.record_failed("discord", "9", T0 + HOUR, "KeyError: 9")
        await tx.events.record_failed("matrix", "$a", T0, "ValueError: a")
    async with store.transaction() as tx:
        assert not await tx.events.claim("matrix", "$b", T0)  # marked applied, so it is skipped
        assert await tx.events.failed(10) == [
            (T0 + HOUR, "discord", "9", "KeyError: 9"),
            (T0, "matrix", "$a", "ValueError: a"),
            (T0, "matrix", "$b", "ValueError: b"),
        ]
        assert await tx.events.failed(1) == [(T0 + HOUR, "discord", "9", "KeyError: 9")]
        await tx.events.record_failed("matrix", "$b", T0 + 2 * HOUR, "still failing")  # kept once
        assert await tx.events.failed(2) == [
            (T0 + 2 * HOUR, "matrix", "$b", "still failing"),
            (T0 + HOUR, "discord", "9", "KeyError: 9"),
        ]
        assert len(await tx.events.failed(10)) == 3


async def test_signals_are_read_back_per_group_since_a_time(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.groups.record_signal(general, "goal_accepted", T0 + HOUR, "goal 1")
        await tx.groups.record_signal(general, "review_closed", T0, "review 1")
        await tx.groups.record_signal(study, "goal_accepted", T0 + HOUR, "goal 2")
        await tx.groups.record_signal(general, "goal_done", T0 + 2 * HOUR, "goal 1")
    async with store.transaction() as tx:
        assert await tx.groups.signals(general, T0) == [
            ("goal_accepted", T0 + HOUR, "goal 1"),
            ("review_closed", T0, "review 1"),
            ("goal_done", T0 + 2 * HOUR, "goal 1"),
        ]
        assert await tx.groups.signals(general, T0 + HOUR) == [
            ("goal_accepted", T0 + HOUR, "goal 1"),
            ("goal_done", T0 + 2 * HOUR, "goal 1"),
        ]
        assert await tx.groups.signals(study, T0 + 3 * HOUR) == []


# Polls --------------------------------------------------------------------------------------------


async def test_a_poll_is_created_posted_found_by_its_message_and_listed(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    request = PollRequest(
        "Which day?",
        (PollOption("🇲", "Monday"), PollOption("🇹", "Tuesday"), PollOption("🇼", "Wednesday")),
        multiple=True,
        hidden=True,
        duration=timedelta(days=2),
    )
    async with store.transaction() as tx:
        poll = await tx.polls.create(general, PollKind.POLL, request, ALICE, T0)
        consent = await tx.polls.create(general, PollKind.CONSENT, YES_NO, BOB, T0 + MINUTE)
        in_room = await tx.polls.create(room, PollKind.PULSE, YES_NO, ALICE, T0)
    assert (poll.group_id, poll.kind, poll.question, poll.options) == (
        general,
        PollKind.POLL,
        "Which day?",
        request.options,
    )
    assert (poll.multiple, poll.hidden, poll.author_key, poll.author_name) == (True, True, ALICE.key, "Alice")
    assert (poll.created_at, poll.closes_at, poll.closed_at, poll.message) == (
        T0,
        T0 + timedelta(days=2),
        None,
        None,
    )
    message = MessageRef(GENERAL, "m1")
    async with store.transaction() as tx:
        await tx.polls.set_message(poll.id, message)
        await tx.polls.set_message(in_room.id, MessageRef(ROOM, "m1"))
    async with store.transaction() as tx:
        assert await tx.polls.get(general, poll.id) == replace(poll, message=message)
        assert await tx.polls.get(room, poll.id) is None  # another group's poll
        assert await tx.polls.get(general, 9999) is None
        assert await tx.polls.for_messages("discord", ["m1", "m2"]) == [replace(poll, message=message)]
        assert await tx.polls.for_messages("matrix", ["m1"]) == [
            replace(in_room, message=MessageRef(ROOM, "m1"))
        ]
        assert await tx.polls.for_messages("discord", []) == []
        assert await tx.polls.in_group(general) == [replace(poll, message=message), consent]


async def test_a_deleted_poll_takes_its_votes_and_links_with_it(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        first = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0)
        second = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        goal = await tx.goals.create(group_id, "Learn Rust", ALICE, T0)
        await tx.goals.set_poll(goal.id, first.id)
        await tx.polls.record_reactions(first.id, [ReactionChange(BOB.key, "Bob", 0, True)])
        (row_id,) = await tx.outbox.add([Post(PostKind.SEND, GENERAL, "poll", poll_id=first.id)], T0)
    async with store.transaction() as tx:
        await tx.polls.delete(first.id)
    async with store.transaction() as tx:
        third = await tx.polls.create(group_id, PollKind.POLL, YES_NO, BOB, T0 + MINUTE)
        assert third.id not in (first.id, second.id)
        assert await tx.polls.get(group_id, second.id) == second
        assert [p.id for p in await tx.polls.in_group(group_id)] == [second.id, third.id]
        assert await tx.polls.reactions(first.id) == []
        assert await tx.polls.reactions(third.id) == []
        decided = await tx.goals.get(group_id, goal.id)
        assert decided is not None and decided.poll_id is None
        assert await tx.goals.for_poll(first.id) is None
        (row,) = await tx.outbox.rows()
        assert (row.id, row.post.poll_id) == (row_id, None)


async def test_reactions_take_sequence_numbers_and_the_last_change_in_a_batch_wins(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        poll = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        other = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        await tx.polls.record_reactions(
            poll.id,
            [
                ReactionChange(ALICE.key, "Alice", 0, True),
                ReactionChange(BOB.key, "Bob", 1, True),
                ReactionChange(ALICE.key, "Alice", 0, False),
                ReactionChange(ALICE.key, "Alice B.", 1, True),
            ],
        )
        await tx.polls.record_reactions(poll.id, [])
    async with store.transaction() as tx:
        assert await tx.polls.reactions(poll.id) == [
            PollReaction(BOB.key, "Bob", 1, True, 2),
            PollReaction(ALICE.key, "Alice", 0, False, 3),
            PollReaction(ALICE.key, "Alice B.", 1, True, 4),
        ]
        await tx.polls.record_reactions(
            poll.id,
            [ReactionChange(BOB.key, "Bobby", 1, False), ReactionChange(ALICE.key, "Alice", 0, True)],
        )
        await tx.polls.record_reactions(other.id, [ReactionChange(BOB.key, "Bob", 0, True)])
    async with store.transaction() as tx:
        assert await tx.polls.reactions(poll.id) == [
            PollReaction(ALICE.key, "Alice B.", 1, True, 4),
            PollReaction(BOB.key, "Bobby", 1, False, 5),
            PollReaction(ALICE.key, "Alice", 0, True, 6),
        ]
        assert await tx.polls.reactions(other.id) == [PollReaction(BOB.key, "Bob", 0, True, 1)]


async def test_a_groups_polls_are_counted_at_once_as_a_tally_counts_them(store: Store) -> None:
    general, study = await make_group(store), await make_group(store, STUDY)
    cleo = UserRef("discord", "cleo", "Cleo")
    several = replace(YES_NO, multiple=True)
    async with store.transaction() as tx:
        single = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)
        multiple = await tx.polls.create(general, PollKind.POLL, several, ALICE, T0)
        silent = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)
        elsewhere = await tx.polls.create(study, PollKind.POLL, YES_NO, ALICE, T0)
        await tx.polls.record_reactions(
            single.id,
            [ReactionChange(ALICE.key, "Alice", 0, True), ReactionChange(cleo.key, "Cleo", 0, True)],
        )
        await tx.polls.record_reactions(
            single.id,
            [
                ReactionChange(ALICE.key, "Alice", 1, True),  # her latest: it counts, her first does not
                ReactionChange(BOB.key, "Bob", 1, True),
                ReactionChange(cleo.key, "Cleo", 0, False),  # taken back
            ],
        )
        await tx.polls.record_reactions(
            multiple.id,
            [
                ReactionChange(ALICE.key, "Alice", 0, True),
                ReactionChange(ALICE.key, "Alice", 1, True),
                ReactionChange(BOB.key, "Bob", 1, True),
            ],
        )
        await tx.polls.record_reactions(elsewhere.id, [ReactionChange(BOB.key, "Bob", 0, True)])
    async with store.read() as tx:
        counts = await tx.polls.counts_in_group(general)
        assert counts.votes == {single.id: {1: 2}, multiple.id: {0: 1, 1: 2}}
        assert counts.voters == {single.id: {ALICE.key, BOB.key}, multiple.id: {ALICE.key, BOB.key}}
        assert silent.id not in counts.votes
        ids = [single.id, multiple.id, silent.id]
        assert await tx.polls.names_choosing(ids, 1) == {
            single.id: ["Alice", "Bob"],
            multiple.id: ["Alice", "Bob"],
        }
        assert await tx.polls.names_choosing(ids, 0) == {multiple.id: ["Alice"]}
        some = await tx.polls.counts_in_group(general, [multiple.id, silent.id, elsewhere.id])
        assert some.votes == {multiple.id: {0: 1, 1: 2}}  # another group's poll counts nothing here
        assert some.voters == {multiple.id: {ALICE.key, BOB.key}}
        assert await tx.polls.counts_in_group(general, []) == GroupCounts({}, {})


async def test_a_groups_polls_come_newest_first_by_kind_and_their_votes_by_week(store: Store) -> None:
    general, study = await make_group(store), await make_group(store, STUDY)
    quiet = await make_group(store, ChannelRef("discord", "quiet", "#quiet"))
    week = timedelta(days=7)
    cleo = UserRef("discord", "cleo", "Cleo")
    async with store.transaction() as tx:
        made = []
        for n, (kind, at) in enumerate(
            (
                (PollKind.POLL, T0 + week),  # 1st, in the second week
                (PollKind.CONSENT, T0 - HOUR),  # before the first week
                (PollKind.PULSE, T0),
                (PollKind.POLL, T0 + 3 * week),  # after the weeks asked
                (PollKind.POLL, T0 + HOUR),
            )
        ):
            anonymous = n == 4
            made.append(await tx.polls.create(general, kind, replace(YES_NO, anonymous=anonymous), ALICE, at))
        poll, consent, pulse, late, secret = made
        await tx.polls.create(study, PollKind.POLL, YES_NO, ALICE, T0 - week)
        await tx.polls.record_reactions(
            poll.id,
            [
                ReactionChange(ALICE.key, "Alice", 0, True),
                ReactionChange(ALICE.key, "Alice", 1, True),  # one voter on two options: one vote
                ReactionChange(BOB.key, "Bob", 0, True),
                ReactionChange(BOB.key, "Bob", 0, False),  # taken back: no vote
            ],
        )
        await tx.polls.record_reactions(consent.id, [ReactionChange(BOB.key, "Bob", 0, True)])
        await tx.polls.record_reactions(pulse.id, [ReactionChange(cleo.key, "Cleo", 1, True)])
        await tx.polls.record_reactions(late.id, [ReactionChange(cleo.key, "Cleo", 0, True)])
        await tx.polls.record_reactions(secret.id, [ReactionChange("h:1", "a voter", 0, True)])
    async with store.read() as tx:
        listed = (PollKind.POLL, PollKind.PULSE)
        newest = await tx.polls.newest_in_group(general, listed)
        assert [p.id for p in newest] == [secret.id, late.id, pulse.id, poll.id]
        assert newest[0] == (await tx.polls.in_group(general))[-1]  # whole polls, as in_group reads them
        assert [p.id for p in await tx.polls.newest_in_group(general, listed, 1, 2)] == [late.id, pulse.id]
        assert [p.id for p in await tx.polls.newest_in_group(general, listed, 3)] == [poll.id]
        assert await tx.polls.newest_in_group(general, listed, 4, 10) == []
        assert await tx.polls.newest_in_group(general, listed, 0, 0) == []
        assert await tx.polls.newest_in_group(general, ()) == []
        consents = await tx.polls.newest_in_group(general, [PollKind.CONSENT])
        assert [p.id for p in consents] == [consent.id]
        assert await tx.polls.kinds_in_group(general) == {
            PollKind.POLL: (3, T0 + HOUR),
            PollKind.CONSENT: (1, T0 - HOUR),
            PollKind.PULSE: (1, T0),
        }
        assert await tx.polls.kinds_in_group(quiet) == {}
        starts = [T0, T0 + week, T0 + 2 * week]
        assert await tx.polls.voter_weeks(general, starts) == {
            0: (2, frozenset({BOB.key, cleo.key})),  # the first week takes what came before it
            1: (1, frozenset({ALICE.key})),
            2: (1, frozenset({cleo.key})),  # the last takes what comes after it
        }  # the anonymous poll's voter is nowhere
        assert await tx.polls.voter_weeks(general, []) == {}


async def test_a_poll_closes_once(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        poll = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
    async with store.transaction() as tx:
        assert await tx.polls.close(poll.id, T0 + MINUTE)
        assert not await tx.polls.close(poll.id, T0 + 2 * MINUTE)
    async with store.transaction() as tx:
        assert not await tx.polls.close(poll.id, T0 + 3 * MINUTE)
        assert not await tx.polls.close(poll.id + 1, T0)  # gone, or never there: nothing to close
        closed = await tx.polls.get(group_id, poll.id)
        assert closed is not None and closed.closed_at == T0 + MINUTE


async def test_an_anonymous_poll_holds_a_key_while_open_and_none_once_closed(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        plain = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        anonymous = await tx.polls.create(
            group_id, PollKind.PULSE, replace(YES_NO, anonymous=True), ALICE, T0
        )
        other = await tx.polls.create(group_id, PollKind.POLL, replace(YES_NO, anonymous=True), ALICE, T0)
    async with store.transaction() as tx:
        assert (plain.anonymous, anonymous.anonymous) == (False, True)
        found = await tx.polls.get(group_id, anonymous.id)
        assert found is not None and found.anonymous
        assert await tx.polls.secret(plain.id) is None
        key, other_key = await tx.polls.secret(anonymous.id), await tx.polls.secret(other.id)
        assert key is not None and len(key) == 32 and key != other_key
        assert await tx.polls.close(anonymous.id, T0 + MINUTE)
    async with store.transaction() as tx:
        assert await tx.polls.secret(anonymous.id) is None  # the key is destroyed with the close
        assert await tx.polls.secret(other.id) == other_key


async def test_rows_sealed_with_a_secret_are_forgotten_together_whatever_their_state(store: Store) -> None:
    wall, lease = datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=60)
    confirm = Post(PostKind.DIRECT, GENERAL, "counted", user=BOB, sealed="poll:7")
    async with store.transaction() as tx:
        _pending, failed, other, plain = await tx.outbox.add(
            [confirm, confirm, replace(confirm, sealed="poll:8"), Post(PostKind.SEND, GENERAL, "hi")], T0
        )
        await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 10)
        await tx.outbox.finish(failed, PostState.FAILED, T0, "403")
    async with store.transaction() as tx:
        assert [r.post.sealed for r in await tx.outbox.rows()] == ["poll:7", "poll:7", "poll:8", None]
        assert await tx.outbox.forget_sealed("poll:7") == 2
        assert await tx.outbox.forget_sealed("poll:7") == 0
    async with store.transaction() as tx:
        assert [r.id for r in await tx.outbox.rows()] == [other, plain]


async def test_posts_prepared_for_a_schedule_are_found_and_withdrawn_until_they_are_due(store: Store) -> None:
    def nudge(schedule_id: int | None, at: datetime) -> Post:
        return Post(PostKind.SEND, GENERAL, f"n{schedule_id}", schedule_id=schedule_id, not_before=at)

    soon, later = T0 + 30 * SECOND, T0 + 50 * SECOND
    async with store.transaction() as tx:
        due, _seven, _seven_later, _eight, _other = await tx.outbox.add(
            [nudge(7, T0), nudge(7, later), nudge(7, soon), nudge(8, soon), nudge(None, soon)], T0
        )
        assert await tx.outbox.ahead([7, 8, 9], T0) == {7: soon, 8: soon}
        assert await tx.outbox.ahead([], T0) == {}
        assert await tx.outbox.ahead([7], soon) == {7: later}  # what is due by then is not ahead
    async with store.transaction() as tx:
        assert await tx.outbox.withdraw([7, 9], T0) == 2  # not the one due by now: it is being sent
        assert await tx.outbox.withdraw([], T0) == 0
    async with store.transaction() as tx:
        assert [r.post.text for r in await tx.outbox.rows()] == ["n7", "n8", "nNone"]
        assert [r.post.schedule_id for r in await tx.outbox.rows()] == [7, 8, None]
        assert (await tx.outbox.rows())[0].id == due
        assert await tx.outbox.ahead([7], T0) == {}


async def test_open_and_due_polls_are_those_of_the_platforms_asked(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    short = replace(YES_NO, duration=MINUTE)
    async with store.transaction() as tx:
        late = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)  # closes T0+1h
        early = await tx.polls.create(study, PollKind.POLL, short, ALICE, T0 + MINUTE)  # closes T0+2m
        first = await tx.polls.create(general, PollKind.POLL, short, ALICE, T0)  # closes T0+1m
        unposted = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)
        closed = await tx.polls.create(general, PollKind.POLL, short, ALICE, T0)
        matrix = await tx.polls.create(room, PollKind.POLL, short, ALICE, T0)
        for n, poll in enumerate((late, early, first, closed)):
            await tx.polls.set_message(poll.id, MessageRef(GENERAL, f"m{n}"))
        await tx.polls.set_message(matrix.id, MessageRef(ROOM, "$m"))
        await tx.polls.close(closed.id, T0)
    async with store.transaction() as tx:
        # Open means not closed and before its closing time, posted or not.
        assert [p.id for p in await tx.polls.open_on("discord", T0 + MINUTE)] == [
            late.id,
            early.id,
            unposted.id,
        ]
        assert [p.id for p in await tx.polls.open_on("discord", T0 + HOUR)] == []
        assert [p.id for p in await tx.polls.open_on("matrix", T0)] == [matrix.id]
        assert [p.id for p in await tx.polls.due(T0 + 2 * MINUTE, 10, ["discord"])] == [first.id, early.id]
        assert [p.id for p in await tx.polls.due(T0 + 2 * MINUTE, 1, ["discord"])] == [first.id]
        assert [p.id for p in await tx.polls.due(T0 + HOUR, 10, ["discord"])] == [
            first.id,
            early.id,
            late.id,
            unposted.id,
        ]
        assert [p.id for p in await tx.polls.due(T0 + HOUR, 10, ["matrix"])] == [matrix.id]
        assert [p.id for p in await tx.polls.due(T0 + HOUR, 10, ["console"])] == []


async def test_the_open_polls_of_several_groups_their_voters_and_a_members_votes_are_read_at_once(
    store: Store,
) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    soon = replace(YES_NO, duration=2 * MINUTE)
    async with store.transaction() as tx:
        late = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)  # closes T0+1h
        early = await tx.polls.create(general, PollKind.CONSENT, soon, BOB, T0)  # closes T0+2m
        ended = await tx.polls.create(general, PollKind.POLL, replace(YES_NO, duration=MINUTE), BOB, T0)
        closed = await tx.polls.create(general, PollKind.POLL, YES_NO, BOB, T0)
        studied = await tx.polls.create(study, PollKind.PULSE, soon, BOB, T0)  # closes T0+2m too
        in_room = await tx.polls.create(room, PollKind.POLL, YES_NO, ALICE, T0)
        await tx.polls.close(closed.id, T0)
        await tx.polls.record_reactions(late.id, [ReactionChange(ALICE.key, "Alice", 0, True)])
        # alice takes her vote on `early` back; bob's stays.
        await tx.polls.record_reactions(
            early.id,
            [
                ReactionChange(ALICE.key, "Alice", 1, True),
                ReactionChange(BOB.key, "Bob", 0, True),
                ReactionChange(ALICE.key, "Alice", 1, False),
            ],
        )
        for poll in (ended, closed, in_room):  # votes on polls that are not open, or not asked about
            await tx.polls.record_reactions(poll.id, [ReactionChange(ALICE.key, "Alice", 0, True)])
        # bob picks two options: one voter.
        await tx.polls.record_reactions(
            studied.id,
            [
                ReactionChange(ALICE.key, "Alice", 2, True),
                ReactionChange(BOB.key, "Bob", 0, True),
                ReactionChange(BOB.key, "Bob", 1, True),
            ],
        )
    now = T0 + MINUTE  # `ended` closes at this very moment: it is no longer open
    groups = [general, study]
    async with store.transaction() as tx:
        # Closing soonest first, then by id.
        assert [p.id for p in await tx.polls.open_in(groups, now)] == [early.id, studied.id, late.id]
        assert await tx.polls.open_in([study], now) == [studied]
        assert await tx.polls.open_in([], now) == []
        assert [p.id for p in await tx.polls.open_in(groups, T0 + 2 * MINUTE)] == [late.id]
        # Those a member has not voted on: a vote taken back is no vote; alice elsewhere is someone else.
        assert await tx.polls.open_in(groups, now, not_voted_by=ALICE) == [early]
        assert await tx.polls.open_in(groups, now, not_voted_by=BOB) == [late]
        assert await tx.polls.open_in([study], now, not_voted_by=BOB) == []
        assert [
            p.id for p in await tx.polls.open_in(groups, now, not_voted_by=UserRef("matrix", "alice"))
        ] == [
            early.id,
            studied.id,
            late.id,
        ]
        assert await tx.polls.open_in([], now, not_voted_by=ALICE) == []
        assert await tx.polls.open_in(groups, T0 + 2 * MINUTE, not_voted_by=BOB) == [late]
        assert await tx.polls.open_voter_counts(groups, now) == {late.id: 1, early.id: 1, studied.id: 2}
        assert await tx.polls.open_voter_counts([room], now) == {in_room.id: 1}
        assert await tx.polls.open_voter_counts([], now) == {}


# Goals --------------------------------------------------------------------------------------------


async def test_a_goal_is_proposed_linked_to_its_poll_and_decided(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        goal = await tx.goals.create(general, "Learn Rust", ALICE, T0)
        later = await tx.goals.create(general, "Ship a crate", BOB, T0 + MINUTE)
        elsewhere = await tx.goals.create(study, "Read SICP", BOB, T0)
        poll = await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0)
        await tx.goals.set_poll(goal.id, poll.id)
    assert (goal.group_id, goal.text, goal.status, goal.proposer_key, goal.proposer_name) == (
        general,
        "Learn Rust",
        GoalStatus.PROPOSED,
        ALICE.key,
        "Alice",
    )
    assert (goal.created_at, goal.updated_at, goal.poll_id) == (T0, T0, None)
    async with store.transaction() as tx:
        assert await tx.goals.for_poll(poll.id) == replace(goal, poll_id=poll.id)
        assert await tx.goals.for_polls([poll.id, poll.id + 1]) == {poll.id: replace(goal, poll_id=poll.id)}
        # Asked about more polls than one query binds: all of them are looked at.
        assert await tx.goals.for_polls(range(poll.id - 6000, poll.id + 6000)) == {
            poll.id: replace(goal, poll_id=poll.id)
        }
        assert await tx.goals.for_polls([]) == {}
        assert await tx.goals.get(study, goal.id) is None
        await tx.goals.set_status(goal.id, GoalStatus.ACCEPTED, T0 + HOUR)
    async with store.transaction() as tx:
        assert await tx.goals.get(general, goal.id) == replace(
            goal, poll_id=poll.id, status=GoalStatus.ACCEPTED, updated_at=T0 + HOUR
        )
        await tx.goals.set_poll(goal.id, None)
        assert await tx.goals.for_poll(poll.id) is None
        assert await tx.goals.in_group(general) == [
            replace(goal, status=GoalStatus.ACCEPTED, updated_at=T0 + HOUR),
            later,
        ]
        assert await tx.goals.in_group(study) == [elsewhere]
    # Put forward by its proposer, as every goal proposed in the member's own words.
    assert (goal.put_forward_by_key, goal.put_forward_by_name) == (ALICE.key, "Alice")
    assert not goal.put_forward_by_another


async def test_a_goal_put_forward_for_another_member_is_theirs(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        goal = await tx.goals.create(group_id, "Pair up", ALICE, T0, put_forward_by=BOB)
    assert (goal.proposer_key, goal.proposer_name) == (ALICE.key, "Alice")
    assert (goal.put_forward_by_key, goal.put_forward_by_name) == (BOB.key, "Bob")
    assert goal.put_forward_by_another
    async with store.transaction() as tx:
        assert await tx.goals.get(group_id, goal.id) == goal
        assert await tx.goals.in_group(group_id) == [goal]


async def test_a_goal_reshapes_another_and_is_read_back_with_the_link(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        first = await tx.goals.create(group_id, "Read the whole book", ALICE, T0)
        second = await tx.goals.create(group_id, "Read three chapters", BOB, T0 + HOUR, reshapes=first.id)
        await tx.goals.set_status(first.id, GoalStatus.SUPERSEDED, T0 + HOUR)
    assert (first.reshapes_id, second.reshapes_id) == (None, first.id)
    async with store.transaction() as tx:
        assert await tx.goals.get(group_id, second.id) == second
        old = await tx.goals.get(group_id, first.id)
        assert old is not None and old.status is GoalStatus.SUPERSEDED
        assert await tx.goals.in_group(group_id) == [old, second]
        assert await tx.goals.of_groups([group_id], [GoalStatus.SUPERSEDED]) == {group_id: [old]}


# Concerns ---------------------------------------------------------------------------------------


async def test_concerns_are_kept_by_goal_and_an_anonymous_one_has_no_author(store: Store) -> None:
    group_id, other = await make_group(store), await make_group(store, STUDY)
    async with store.transaction() as tx:
        first = await tx.goals.create(group_id, "Read the book", ALICE, T0)
        second = await tx.goals.create(group_id, "Pair up", ALICE, T0)
        elsewhere = await tx.goals.create(other, "Rest", BOB, T0)
        named = await tx.concerns.add(group_id, first.id, "Too big for a month", BOB, T0 + MINUTE)
        anonymous = await tx.concerns.add(group_id, first.id, "Nobody has the book", None, T0)
        later = await tx.concerns.add(group_id, second.id, "Who pairs with whom?", ALICE, T0 + HOUR)
        theirs = await tx.concerns.add(other, elsewhere.id, "Not now", BOB, T0)
    assert (named.author_key, named.author_name, named.by, named.at) == (BOB.key, "Bob", "Bob", T0 + MINUTE)
    assert (anonymous.author_key, anonymous.author_name, anonymous.by) == ("", "", "anonymous")
    assert anonymous.anonymous and not named.anonymous and not named.addressed
    async with store.transaction() as tx:
        assert await tx.concerns.get(group_id, named.id) == named
        assert await tx.concerns.get(group_id, anonymous.id) == anonymous
        assert await tx.concerns.get(group_id, theirs.id) is None  # another group's
        assert await tx.concerns.get(other, theirs.id) == theirs
        assert await tx.concerns.of_goals([second.id, first.id, first.id + second.id + 100]) == {
            first.id: [named, anonymous],  # oldest first
            second.id: [later],
        }
        assert await tx.concerns.of_goals([]) == {}
        many = range(first.id - 6000, first.id + 6000)  # more than one IN list
        assert (await tx.concerns.of_goals(many))[elsewhere.id] == [theirs]


async def test_a_concern_is_addressed_once(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        goal = await tx.goals.create(group_id, "Read the book", ALICE, T0)
        concern = await tx.concerns.add(group_id, goal.id, "Too big", None, T0)
    async with store.transaction() as tx:
        assert await tx.concerns.address(concern.id, ALICE, "We read three chapters", T0 + HOUR)
        assert not await tx.concerns.address(concern.id, BOB, "again", T0 + 2 * HOUR)
        assert not await tx.concerns.address(concern.id + 1, BOB, "", T0)
    async with store.transaction() as tx:
        kept = await tx.concerns.get(group_id, concern.id)
    assert kept == replace(
        concern,
        addressed_at=T0 + HOUR,
        addressed_by_key=ALICE.key,
        addressed_by_name="Alice",
        note="We read three chapters",
    )
    assert kept is not None and kept.addressed


async def test_a_member_is_asked_for_their_concern_once_per_poll(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        one = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0)
        two = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0)
        first = await tx.concerns.claim_asks([(one.id, BOB.key), (one.id, ALICE.key), (one.id, BOB.key)], T0)
        assert first == {(one.id, BOB.key), (one.id, ALICE.key)}
    async with store.transaction() as tx:
        again = await tx.concerns.claim_asks([(one.id, BOB.key), (two.id, BOB.key)], T0 + MINUTE)
        assert again == {(two.id, BOB.key)}
        assert await tx.concerns.claim_asks([], T0) == set()


async def test_forgetting_a_member_deletes_their_named_concerns_and_asks(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        goal = await tx.goals.create(group_id, "Read the book", ALICE, T0)
        poll = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0)
        mine = await tx.concerns.add(group_id, goal.id, "Too big", BOB, T0)
        anonymous = await tx.concerns.add(group_id, goal.id, "Too long", None, T0)
        addressed_by_bob = await tx.concerns.add(group_id, goal.id, "Which book?", ALICE, T0)
        await tx.concerns.address(addressed_by_bob.id, BOB, "The blue one", T0 + HOUR)
        await tx.concerns.claim_asks([(poll.id, BOB.key), (poll.id, ALICE.key)], T0)
    async with store.transaction() as tx:
        done = await tx.members.forget(BOB)
        assert (done.concerns, done.renamed) == (1, 1)
    async with store.transaction() as tx:
        left = (await tx.concerns.of_goals([goal.id]))[goal.id]
        assert [c.id for c in left] == [anonymous.id, addressed_by_bob.id]
        assert mine.id not in [c.id for c in left]
        assert (left[1].addressed_by_name, left[1].note) == (FORMER_MEMBER, "The blue one")
        assert left[1].addressed_by_key not in ("", BOB.key) and left[1].addressed
        # Bob may be asked again should he come back; Alice was asked already.
        assert await tx.concerns.claim_asks([(poll.id, BOB.key), (poll.id, ALICE.key)], T0) == {
            (poll.id, BOB.key)
        }


async def test_forgetting_a_blocker_scrubs_them_from_the_reshaped_goal_s_poll(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        first = await tx.goals.create(group_id, "Read the whole book", ALICE, T0)
        old_poll = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0)
        await tx.goals.set_poll(first.id, old_poll.id)
        await tx.polls.record_reactions(old_poll.id, [ReactionChange(BOB.key, "Bob", 1, True)])
        await tx.polls.close(old_poll.id, T0 + HOUR)
        second = await tx.goals.create(group_id, "Read three chapters", ALICE, T0 + HOUR, reshapes=first.id)
        question = PollRequest(
            "Goal 2: Read three chapters (reshapes goal 1, blocked by Bob). Consent?",
            YES_NO.options,
            duration=HOUR,
        )
        new_poll = await tx.polls.create(group_id, PollKind.CONSENT, question, ALICE, T0 + HOUR)
        await tx.goals.set_poll(second.id, new_poll.id)
    async with store.transaction() as tx:
        await tx.members.forget(BOB)
    async with store.transaction() as tx:
        kept = await tx.polls.get(group_id, new_poll.id)
        assert kept is not None
        assert kept.question == (
            "Goal 2: Read three chapters (reshapes goal 1, blocked by a former member). Consent?"
        )


async def test_forgetting_a_member_renames_the_goals_they_proposed_or_put_forward(store: Store) -> None:
    group_id = await make_group(store)
    carol = UserRef("discord", "carol", "Carol")
    async with store.transaction() as tx:
        for_alice = await tx.goals.create(group_id, "Pair up", ALICE, T0, put_forward_by=BOB)
        for_bob = await tx.goals.create(group_id, "Read more", BOB, T0, put_forward_by=ALICE)
        await tx.goals.create(group_id, "Ship it", ALICE, T0)
        others = await tx.goals.create(group_id, "Rest", BOB, T0, put_forward_by=carol)
        # The bot names the proposer in the consent poll's question; the poll is the proposer's.
        question = PollRequest("Goal 2: Read more (proposed by Bob). Consent?", YES_NO.options, duration=HOUR)
        poll = await tx.polls.create(group_id, PollKind.CONSENT, question, BOB, T0)
        await tx.goals.set_poll(for_bob.id, poll.id)
    async with store.transaction() as tx:
        done = await tx.members.forget(ALICE)
        assert done.renamed == 3  # each goal once, however many of its columns named her
        assert await tx.members.forget(ALICE) == Forgotten()
    async with store.transaction() as tx:
        first, second, third, fourth = await tx.goals.in_group(group_id)
        assert (first.proposer_name, first.put_forward_by_name, first.put_forward_by_key) == (
            FORMER_MEMBER,
            "Bob",
            BOB.key,
        )
        assert (second.proposer_name, second.proposer_key, second.put_forward_by_name) == (
            "Bob",
            BOB.key,
            FORMER_MEMBER,
        )
        assert (third.proposer_name, third.put_forward_by_name) == (FORMER_MEMBER, FORMER_MEMBER)
        assert third.proposer_key == third.put_forward_by_key != ALICE.key  # one anonymous key per item
        assert not third.put_forward_by_another
        assert fourth == others
        keys = {first.proposer_key, second.put_forward_by_key, third.proposer_key}
        assert len(keys) == 3 and ALICE.key not in keys
        bob = await tx.members.forget(BOB)
        assert bob.renamed == 4  # three goals, and the consent poll he opened
        kept = await tx.polls.get(group_id, poll.id)
        assert kept is not None
        assert kept.question == "Goal 2: Read more (proposed by a former member). Consent?"
        renamed = await tx.goals.get(group_id, for_alice.id)
        assert renamed is not None and renamed.put_forward_by_name == FORMER_MEMBER
        assert BOB.key not in (renamed.proposer_key, renamed.put_forward_by_key)


# Schedules ----------------------------------------------------------------------------------------


async def test_schedules_are_created_paused_replanned_and_deleted(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        nudge = await tx.schedules.create(
            general, ScheduleKind.NUDGE, "0 9 * * 1", "Mondays at 9", "Reflect!", ALICE, T0, T0 + HOUR, None
        )
        digest = await tx.schedules.create(
            general, ScheduleKind.DIGEST, "0 18 * * 5", "Fridays", None, BOB, T0, None, None
        )
        other = await tx.schedules.create(
            study, ScheduleKind.CHECKIN, "0 10 * * 3", "Wednesdays", None, BOB, T0, T0, T0
        )
    assert (nudge.group_id, nudge.kind, nudge.cron, nudge.description, nudge.text, nudge.paused) == (
        general,
        ScheduleKind.NUDGE,
        "0 9 * * 1",
        "Mondays at 9",
        "Reflect!",
        False,
    )
    assert (nudge.next_occurrence, nudge.next_due_at, nudge.created_by, nudge.created_at) == (
        T0 + HOUR,
        None,
        "Alice",
        T0,
    )
    async with store.transaction() as tx:
        assert await tx.schedules.get(general, nudge.id) == nudge
        assert await tx.schedules.get(study, nudge.id) is None
        await tx.schedules.set_paused(nudge.id, True)
        await tx.schedules.set_next([(digest.id, T0 + 2 * HOUR, T0 + 3 * HOUR), (other.id, None, None)])
    async with store.transaction() as tx:
        assert await tx.schedules.in_group(general) == [
            replace(nudge, paused=True),
            replace(digest, next_occurrence=T0 + 2 * HOUR, next_due_at=T0 + 3 * HOUR),
        ]
        await tx.schedules.set_paused(nudge.id, False)
        await tx.schedules.delete(digest.id)
    async with store.transaction() as tx:
        assert await tx.schedules.in_group(general) == [nudge]
        assert await tx.schedules.get(general, digest.id) is None
        assert await tx.schedules.in_group(study) == [replace(other, next_occurrence=None, next_due_at=None)]


async def test_advancing_a_schedule_is_a_compare_and_swap(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        a = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
        b = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
        never = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, None, None)
    nxt, due = T0 + timedelta(days=7), T0 + timedelta(days=7, hours=1)
    async with store.transaction() as tx:
        moved = await tx.schedules.advance(
            [
                (a.id, T0, nxt, due),
                (b.id, T0 - HOUR, nxt, due),  # planned from a stale read: loses
                (never.id, None, T0 + HOUR, T0 + HOUR),
                (9999, T0, nxt, due),
            ]
        )
        assert moved == {a.id, never.id}
        # The second process planned the same occurrence: it wins nothing.
        assert await tx.schedules.advance([(a.id, T0, nxt, due), (never.id, None, nxt, due)]) == set()
        assert await tx.schedules.advance([]) == set()
    async with store.transaction() as tx:
        assert [(s.id, s.next_occurrence, s.next_due_at) for s in await tx.schedules.in_group(group_id)] == [
            (a.id, nxt, due),
            (b.id, T0, T0),
            (never.id, T0 + HOUR, T0 + HOUR),
        ]


async def test_due_schedules_are_unpaused_due_on_the_platforms_asked_earliest_first(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    quiet = QuietHours(time(22, 0), time(7, 0))
    async with store.transaction() as tx:
        await tx.groups.set_timezone(general, "Europe/Berlin")
        await tx.groups.set_quiet_hours(general, quiet)
        await tx.groups.record_phase_change(
            PhaseChange(general, Phase.CONVENING, Phase.COOPERATING, T0, "a", "")
        )

        async def schedule(group: int, due: datetime | None, text: str | None = None) -> int:
            s = await tx.schedules.create(group, ScheduleKind.NUDGE, "c", "d", text, ALICE, T0, due, due)
            return s.id

        later = await schedule(general, T0 + MINUTE, "later")
        first = await schedule(general, T0)
        paused = await schedule(general, T0)
        await tx.schedules.set_paused(paused, True)
        await schedule(general, None)
        future = await schedule(general, T0 + HOUR)
        tie = await schedule(general, T0)
        in_room = await schedule(room, T0)
    async with store.transaction() as tx:
        due = await tx.schedules.due(T0 + MINUTE, 10, ["discord"])
        assert [d.id for d in due] == [first, tie, later]
        assert due[2] == DueSchedule(
            later, ScheduleKind.NUDGE, "c", "later", T0 + MINUTE, general, GENERAL, Phase.COOPERATING,
            "Europe/Berlin", quiet, T0 + MINUTE,
        )  # fmt: skip
        assert due[2].channel.display == "#general"
        assert [d.id for d in await tx.schedules.due(T0 + MINUTE, 2, ["discord"])] == [first, tie]
        assert [d.id for d in await tx.schedules.due(T0 + HOUR, 10, ["discord"])] == [
            first,
            tie,
            later,
            future,
        ]
        assert [d.id for d in await tx.schedules.due(T0, 10, ["matrix"])] == [in_room]
        assert [d.id for d in await tx.schedules.due(T0, 10, ["discord", "matrix"])] == [first, tie, in_room]
        assert await tx.schedules.due(T0, 10, ["console"]) == []


async def test_a_claimed_schedule_waits_for_its_plan_and_is_claimed_once(store: Store) -> None:
    """Deliver first, plan later: a claim keeps the occurrence delivered and takes the schedule out of
    what is due until its next occurrence is planned."""
    general = await make_group(store, GENERAL)
    async with store.transaction() as tx:
        a = await tx.schedules.create(general, ScheduleKind.NUDGE, "c", "d", "a", ALICE, T0, T0, T0)
        b = await tx.schedules.create(general, ScheduleKind.NUDGE, "c", "d", "b", ALICE, T0, T0, T0)
        never = await tx.schedules.create(general, ScheduleKind.NUDGE, "c", "d", "n", ALICE, T0, None, None)
    async with store.transaction() as tx:
        # The claim is a compare-and-swap on the occurrence seen: a stale one claims nothing.
        assert await tx.schedules.claim([(a.id, T0), (b.id, T0 - HOUR)]) == {a.id}
        assert await tx.schedules.claim([(a.id, T0)]) == set()  # claimed once
        assert [d.id for d in await tx.schedules.due(T0 + HOUR, 10, ["discord"])] == [b.id]
        await tx.schedules.record_deliveries([(a.id, T0)], T0 + MINUTE)
        waiting = await tx.schedules.to_plan(10, ["discord"])
        # With when it was delivered: what came due by then coalesces into that delivery.
        assert [(d.id, d.next_occurrence, d.due_at, d.delivered_at) for d in waiting] == [
            (a.id, T0, None, T0 + MINUTE)
        ]
        assert await tx.schedules.to_plan(10, ["matrix"]) == []
        await tx.schedules.set_planned([(a.id, T0 - HOUR, T0 + HOUR, T0 + HOUR)])  # not what waits: ignored
        assert [d.id for d in await tx.schedules.to_plan(10, ["discord"])] == [a.id]
        await tx.schedules.set_planned([(a.id, T0, T0 + 24 * HOUR, T0 + 25 * HOUR)])
        assert await tx.schedules.to_plan(10, ["discord"]) == []
        (planned, _, left) = await tx.schedules.in_group(general)
        assert (planned.next_occurrence, planned.next_due_at) == (T0 + 24 * HOUR, T0 + 25 * HOUR)
        assert (left.id, left.next_occurrence, left.next_due_at) == (never.id, None, None)


async def test_deliveries_are_recorded_once_and_go_with_their_schedule(store: Store, peek: Peek) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        a = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
        b = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
        await tx.schedules.record_deliveries([(a.id, T0), (b.id, T0), (a.id, T0 + HOUR)], T0)
    async with store.transaction() as tx:
        await tx.schedules.record_deliveries(
            [(a.id, T0), (9999, T0)], T0 + MINUTE
        )  # again, and an unknown one
        await tx.schedules.record_deliveries([], T0)
    assert await peek.deliveries() == {(a.id, T0), (b.id, T0), (a.id, T0 + HOUR)}
    async with store.transaction() as tx:
        await tx.schedules.delete(a.id)
    assert await peek.deliveries() == {(b.id, T0)}


async def test_the_next_due_time_is_the_earliest_on_the_platforms_asked(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) is None
        schedule = await tx.schedules.create(
            general, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0 + 3 * HOUR, T0 + 3 * HOUR
        )
        await tx.schedules.create(room, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) == T0 + 3 * HOUR
        assert await tx.next_due_time(["matrix"]) == T0
        assert await tx.next_due_time(["console"]) is None
        review = await tx.reviews.create(general, ALICE, T0, T0 + 2 * HOUR)
        assert await tx.next_due_time(["discord"]) == T0 + 2 * HOUR
        poll = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)  # closes T0+1h
        assert await tx.next_due_time(["discord"]) == T0 + HOUR
        await tx.polls.close(poll.id, T0)
        assert await tx.next_due_time(["discord"]) == T0 + 2 * HOUR
        await tx.reviews.close(review.id, T0)
        assert await tx.next_due_time(["discord"]) == T0 + 3 * HOUR
        await tx.schedules.set_paused(schedule.id, True)
        assert await tx.next_due_time(["discord"]) is None
        assert await tx.next_due_time(["discord", "matrix"]) == T0


async def test_the_next_due_time_counts_heartbeats_when_asked(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    week = timedelta(days=7)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"], week) is None  # never active: no silence to answer
        await tx.groups.touch_activity(general, T0 + HOUR)
        await tx.groups.touch_activity(study, T0 + 2 * HOUR)
        await tx.groups.touch_activity(room, T0)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) is None
        assert await tx.next_due_time(["discord"], week) == T0 + HOUR + week
        assert await tx.next_due_time(["matrix"], week) == T0 + week
        # Due then, and found then: the silence is `week` long at that moment.
        assert [g.id for g in await tx.groups.quiet(T0 + HOUR, 10, ["discord"])] == [general]
        assert await tx.groups.claim_heartbeat(general, T0 + HOUR + week)
        assert await tx.next_due_time(["discord"], week) == T0 + 2 * HOUR + week


async def test_the_next_due_time_counts_posts_waiting_in_the_outbox(store: Store) -> None:
    await make_group(store, GENERAL)
    async with store.transaction() as tx:
        held, now = await tx.outbox.add(
            [
                Post(PostKind.SEND, GENERAL, "held for quiet hours", not_before=T0 + 2 * HOUR),
                Post(PostKind.SEND, GENERAL, "at once"),
            ],
            T0,
        )
        await tx.outbox.add([Post(PostKind.SEND, ROOM, "elsewhere")], T0 - HOUR)
        assert await tx.next_due_time(["discord"]) == T0
        await tx.outbox.sent([now])
        assert await tx.next_due_time(["discord"]) == T0 + 2 * HOUR
        await tx.outbox.retry_at(held, 1, T0 + 3 * HOUR, "503")
        assert await tx.next_due_time(["discord"]) == T0 + 3 * HOUR
        await tx.outbox.finish(held, PostState.FAILED, T0, "gone")
        assert await tx.next_due_time(["discord"]) is None
        assert await tx.next_due_time(["matrix"]) == T0 - HOUR


# Reviews and reflections --------------------------------------------------------------------------


async def test_reviews_count_their_answers_and_reflections_are_counted_by_week(store: Store) -> None:
    general, study = await make_group(store), await make_group(store, STUDY)
    week = timedelta(days=7)
    async with store.transaction() as tx:
        answered = await tx.reviews.create(general, ALICE, T0, T0 + week)
        await tx.reviews.create(general, ALICE, T0 + week, T0 + 2 * week)  # no answers
        for question, who in ((1, ALICE), (5, BOB), (5, ALICE)):
            await tx.reviews.add_reflection(general, answered.id, question, who, "An answer", T0 + HOUR)
        await tx.reviews.add_reflection(general, None, None, BOB, "Before the first week", T0 - HOUR)
        await tx.reviews.add_reflection(general, None, None, BOB, "Second week", T0 + week)
        await tx.reviews.add_reflection(general, None, None, ALICE, "After the weeks asked", T0 + 3 * week)
        await tx.reviews.add_reflection(study, None, None, ALICE, "Another group", T0 + HOUR)
    async with store.read() as tx:
        assert await tx.reviews.answer_counts(general) == {answered.id: (3, 2)}
        starts = [T0, T0 + week, T0 + 2 * week]
        assert await tx.reviews.reflection_weeks(general, starts) == {
            0: (4, frozenset({ALICE.key, BOB.key})),  # the first week takes what came before it
            1: (1, frozenset({BOB.key})),
            2: (1, frozenset({ALICE.key})),  # the last takes what comes after it
        }
        assert await tx.reviews.reflection_weeks(general, []) == {}


async def test_reviews_open_close_once_and_fall_due_on_their_platform(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        assert await tx.reviews.open(general) is None
        slow = await tx.reviews.create(general, ALICE, T0, T0 + 2 * HOUR)
        quick = await tx.reviews.create(study, BOB, T0 + MINUTE, T0 + HOUR)
        in_room = await tx.reviews.create(room, ALICE, T0, T0)
    assert (slow.group_id, slow.started_by, slow.started_at, slow.closes_at, slow.closed_at) == (
        general,
        "Alice",
        T0,
        T0 + 2 * HOUR,
        None,
    )
    async with store.transaction() as tx:
        assert await tx.reviews.open(general) == slow
        assert [r.id for r in await tx.reviews.due(T0 + 2 * HOUR, 10, ["discord"])] == [quick.id, slow.id]
        assert [r.id for r in await tx.reviews.due(T0 + 2 * HOUR, 1, ["discord"])] == [quick.id]
        assert [r.id for r in await tx.reviews.due(T0 + HOUR, 10, ["discord"])] == [quick.id]
        assert [r.id for r in await tx.reviews.due(T0 + 2 * HOUR, 10, ["matrix"])] == [in_room.id]
        assert await tx.reviews.close(slow.id, T0 + 2 * HOUR)
        assert not await tx.reviews.close(slow.id, T0 + 3 * HOUR)
        assert not await tx.reviews.close(9999, T0)
        newer = await tx.reviews.create(general, BOB, T0 + 3 * HOUR, T0 + 4 * HOUR)
    async with store.transaction() as tx:
        assert await tx.reviews.open(general) == newer
        assert [r.id for r in await tx.reviews.due(T0 + 5 * HOUR, 10, ["discord"])] == [quick.id, newer.id]
        assert await tx.reviews.in_group(general) == [replace(slow, closed_at=T0 + 2 * HOUR), newer]


async def test_a_review_keeps_the_message_of_its_questions(store: Store) -> None:
    general, study = await make_group(store), await make_group(store, STUDY)
    async with store.transaction() as tx:
        review = await tx.reviews.create(general, ALICE, T0, T0 + HOUR)
        other = await tx.reviews.create(study, ALICE, T0, T0 + HOUR)
        assert review.message_id is None
        await tx.reviews.set_message(review.id, "m7")
    async with store.transaction() as tx:
        assert await tx.reviews.get(general, review.id) == replace(review, message_id="m7")
        assert await tx.reviews.get(study, other.id) == other
        assert await tx.reviews.get(study, review.id) is None  # another group's
        assert await tx.reviews.get(general, 9999) is None
        assert await tx.reviews.open(general) == replace(review, message_id="m7")


async def test_a_queued_post_keeps_its_thread_and_what_goes_with_it(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        review = await tx.reviews.create(group_id, ALICE, T0, T0 + HOUR)
        posts = [
            Post(PostKind.SEND, GENERAL, "questions", group_id=group_id, review_id=review.id),
            Post(
                PostKind.SEND,
                GENERAL,
                "the decision",
                group_id=group_id,
                thread=Thread("poll", 4),
                channel_line="Goal 4 accepted: Learn Rust.",
            ),
            Post(PostKind.SEND, GENERAL, "Bob, q2", thread=Thread("review", review.id), thread_only=True),
        ]
        await tx.outbox.add(posts, T0)
    async with store.transaction() as tx:
        rows = await tx.outbox.rows()
    assert [r.post for r in rows] == [replace(p, not_before=T0) for p in posts]


async def test_the_open_reviews_of_several_groups_and_those_a_member_has_not_answered_are_read_at_once(
    store: Store,
) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        old = await tx.reviews.create(general, ALICE, T0, T0 + HOUR)
        await tx.reviews.close(old.id, T0 + MINUTE)
        current = await tx.reviews.create(general, ALICE, T0 + MINUTE, T0 + 3 * HOUR)
        studied = await tx.reviews.create(study, BOB, T0, T0 + 2 * HOUR)
        await tx.reviews.create(room, BOB, T0, T0 + HOUR)  # closes at `now`: not open
        await tx.reviews.add_reflection(general, old.id, 1, BOB, "Old answer", T0)
        await tx.reviews.add_reflection(general, current.id, 4, ALICE, "We paired more", T0 + MINUTE)
        await tx.reviews.add_reflection(general, None, None, BOB, "A free thought", T0 + MINUTE)
        await tx.reviews.add_reflection(study, studied.id, 2, BOB, "Slowly", T0 + MINUTE)
    now = T0 + HOUR
    async with store.transaction() as tx:
        assert await tx.reviews.open_in([general, study], now) == [studied, current]
        assert await tx.reviews.open_in([general, study], T0 + 2 * HOUR) == [current]  # studied is due
        assert await tx.reviews.open_in([room], now) == []  # it closes at this very moment
        assert await tx.reviews.open_in([], now) == []
        assert await tx.reviews.open_in([general, study], now, not_answered_by=ALICE) == [studied]
        # bob answered the closed review and wrote a free reflection: neither answers the current one.
        assert await tx.reviews.open_in([general, study], now, not_answered_by=BOB) == [current]
        assert await tx.reviews.open_in([general], now, not_answered_by=UserRef("matrix", "alice")) == [
            current
        ]
        assert await tx.reviews.open_in([], now, not_answered_by=BOB) == []


async def test_reflections_are_kept_per_group_and_review(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        review = await tx.reviews.create(general, ALICE, T0, T0 + HOUR)
        free = await tx.reviews.add_reflection(general, None, None, ALICE, "I learned a lot", T0)
        answer = await tx.reviews.add_reflection(general, review.id, 2, BOB, "More pairing", T0 + MINUTE)
        other = await tx.reviews.add_reflection(study, None, None, BOB, "Hm", T0)
    assert (answer.group_id, answer.review_id, answer.question, answer.user_key, answer.user_name) == (
        general,
        review.id,
        2,
        BOB.key,
        "Bob",
    )
    assert (answer.text, answer.at) == ("More pairing", T0 + MINUTE)
    async with store.transaction() as tx:
        assert await tx.reviews.get_reflection(general, answer.id) == answer
        assert await tx.reviews.get_reflection(study, answer.id) is None
        assert await tx.reviews.reflections(general) == [free, answer]
        assert await tx.reviews.reflections(general, review.id) == [answer]
        assert await tx.reviews.reflections(study) == [other]


async def test_forgetting_a_member_deletes_their_reflections_and_votes_only(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        poll = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)
        elsewhere = await tx.polls.create(study, PollKind.POLL, YES_NO, ALICE, T0)
        await tx.polls.record_reactions(
            poll.id, [ReactionChange(ALICE.key, "Alice", 0, True), ReactionChange(BOB.key, "Bob", 0, True)]
        )
        await tx.polls.record_reactions(
            elsewhere.id,
            [ReactionChange(ALICE.key, "Alice", 0, True), ReactionChange(ALICE.key, "Alice", 1, True)],
        )
        await tx.reviews.add_reflection(general, None, None, ALICE, "mine", T0)
        await tx.reviews.add_reflection(study, None, None, ALICE, "mine too", T0)
        kept = await tx.reviews.add_reflection(general, None, None, BOB, "Bob's", T0)
    async with store.transaction() as tx:
        first = await tx.members.forget(ALICE)
        assert (first.reflections, first.open_votes) == (2, 3)
        again = await tx.members.forget(ALICE)
        assert (again.reflections, again.open_votes, again.closed_votes) == (0, 0, 0)
    async with store.transaction() as tx:
        assert await tx.reviews.reflections(general) == [kept]
        assert await tx.reviews.reflections(study) == []
        assert [r.user_key for r in await tx.polls.reactions(poll.id)] == [BOB.key]
        assert await tx.polls.reactions(elsewhere.id) == []


# The roster ---------------------------------------------------------------------------------------

CAROL = UserRef("discord", "carol", "Carol")
DAY = timedelta(days=1)


async def test_a_member_joins_leaves_and_comes_back_with_their_first_join(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0, "Rust beginner")
        bob = await tx.members.add(general, BOB, T0 + MINUTE)
        in_study = await tx.members.add(study, ALICE, T0 + HOUR)
        in_room = await tx.members.add(room, UserRef("matrix", "alice", "Alice"), T0)
    assert (alice.group_id, alice.key, alice.name, alice.joined_at, alice.intro) == (
        general,
        ALICE.key,
        "Alice",
        T0,
        "Rust beginner",
    )
    assert (alice.left_at, alice.last_active_at, alice.private, alice.buddy, alice.reminders) == (
        None,
        T0,
        False,
        False,
        True,
    )
    assert (alice.buddy_key, alice.paired_at, alice.welcome_due_at) == ("", None, None)
    assert alice.user == ALICE and alice.on_roster
    async with store.transaction() as tx:
        assert await tx.members.get(general, ALICE.key) == alice
        assert await tx.members.get(general, CAROL.key) is None
        assert await tx.members.roster(general) == [alice, bob]
        assert await tx.members.of_user(ALICE) == [alice, in_study]  # on her platform only
        await tx.members.set_left(alice.id, T0 + DAY)
    async with store.transaction() as tx:
        assert await tx.members.roster(general) == [bob]
        assert await tx.members.of_user(ALICE) == [in_study]
        left = await tx.members.get(general, ALICE.key)
        assert left == replace(alice, left_at=T0 + DAY) and not left.on_roster
        await tx.members.set_left(alice.id, None)
    async with store.transaction() as tx:
        assert await tx.members.roster(general) == [alice, bob]  # in the order they first joined
        assert await tx.members.of_user(UserRef("matrix", "alice")) == [in_room]


async def test_newcomers_are_added_many_at_once_in_order(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        assert await tx.members.add_many(group_id, [], T0) == []
        added = await tx.members.add_many(group_id, [CAROL, ALICE, BOB], T0)
    assert [(m.key, m.name, m.joined_at, m.last_active_at, m.intro) for m in added] == [
        (CAROL.key, "Carol", T0, T0, ""),
        (ALICE.key, "Alice", T0, T0, ""),
        (BOB.key, "Bob", T0, T0, ""),
    ]
    async with store.transaction() as tx:
        assert await tx.members.roster(group_id) == added  # joined together: in the order added


async def test_activity_is_noted_on_the_roster_and_the_known_members_are_told(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0)
        bob = await tx.members.add(general, BOB, T0)
        elsewhere = await tx.members.add(study, CAROL, T0)
        await tx.members.set_left(bob.id, T0 + MINUTE)
    async with store.transaction() as tx:
        known = await tx.members.record_activity(general, [ALICE.key, BOB.key, CAROL.key], T0 + HOUR)
        assert known == {ALICE.key, BOB.key}  # Carol is in another group only
        assert await tx.members.record_activity(study, [], T0 + HOUR) == set()
    async with store.transaction() as tx:
        assert await tx.members.get(general, ALICE.key) == replace(alice, last_active_at=T0 + HOUR)
        assert await tx.members.get(general, BOB.key) == replace(bob, left_at=T0 + MINUTE)  # not active
        assert await tx.members.get(study, CAROL.key) == elsewhere


async def test_a_members_settings_and_their_buddy_are_kept(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        alice = await tx.members.add(group_id, ALICE, T0)
        bob = await tx.members.add(group_id, BOB, T0 + DAY)
        changed = replace(
            alice, name="Alice B.", intro="Here for Go", private=True, buddy=True, reminders=False
        )
        await tx.members.save_settings(replace(changed, last_active_at=T0 + DAY, left_at=T0 + DAY))
        await tx.members.pair(bob.id, changed, T0 + DAY)
    async with store.transaction() as tx:
        # Only the settings are written: her activity and place on the roster are not.
        assert await tx.members.get(group_id, ALICE.key) == replace(changed, paired_at=T0 + DAY)
        assert await tx.members.get(group_id, BOB.key) == replace(bob, buddy_key=ALICE.key)


async def test_the_buddies_are_the_active_volunteers_on_the_roster(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    dora = UserRef("discord", "dora", "Dora")
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0)
        bob = await tx.members.add(general, BOB, T0 - DAY)  # joined first, active longer ago
        carol = await tx.members.add(general, CAROL, T0)
        gone = await tx.members.add(general, dora, T0)
        elsewhere = await tx.members.add(study, dora, T0)
        for member in (alice, bob, gone, elsewhere):
            await tx.members.save_settings(replace(member, buddy=True))
        await tx.members.set_left(gone.id, T0 + HOUR)
        await tx.members.record_activity(general, [ALICE.key, CAROL.key], T0 + DAY)
    async with store.transaction() as tx:
        assert await tx.members.buddies(general, T0 + HOUR) == [
            replace(alice, buddy=True, last_active_at=T0 + DAY)
        ]
        assert [m.key for m in await tx.members.buddies(general, T0 - DAY)] == [BOB.key, ALICE.key]
        assert carol.key not in [m.key for m in await tx.members.buddies(general, T0 - DAY)]


async def test_the_welcome_window_opens_once_until_it_ends_with_the_groups_own_words(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        assert await tx.groups.claim_welcome(general, T0, T0 + 10 * MINUTE)
        assert not await tx.groups.claim_welcome(general, T0 + MINUTE, T0 + 11 * MINUTE)  # open still
        assert await tx.groups.claim_welcome(study, T0 + MINUTE, T0 + 11 * MINUTE)  # another group's
        await tx.groups.set_welcome_text(general, "Read the pinned notes first.")
    async with store.transaction() as tx:
        group = await tx.groups.by_id(general)
        assert group is not None and group.welcome_until == T0 + 10 * MINUTE
        assert group.welcome_text == "Read the pinned notes first."
        assert await tx.groups.claim_welcome(general, T0 + 10 * MINUTE, T0 + 20 * MINUTE)  # it ended
        await tx.groups.set_welcome_text(general, "")
    async with store.transaction() as tx:
        group = await tx.groups.get(GENERAL)
        assert group is not None and (group.welcome_text, group.welcome_until) == ("", T0 + 20 * MINUTE)


async def test_held_welcomes_fall_due_and_are_claimed_once_on_the_platforms_asked(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0)
        bob = await tx.members.add(general, BOB, T0 + MINUTE)
        carol = await tx.members.add(general, CAROL, T0 + 2 * MINUTE)
        in_room = await tx.members.add(room, UserRef("matrix", "dora", "Dora"), T0)
        await tx.members.hold_welcomes([alice.id, bob.id, in_room.id], T0 + 10 * MINUTE)
        await tx.members.hold_welcomes([carol.id], T0 + 20 * MINUTE)
        await tx.members.hold_welcomes([], T0)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) == T0 + 10 * MINUTE
        assert (await tx.members.get(general, BOB.key)) == replace(bob, welcome_due_at=T0 + 10 * MINUTE)
        assert await tx.members.claim_welcomes(T0 + 9 * MINUTE, 10, ["discord"]) == []
        assert await tx.members.claim_welcomes(T0 + 10 * MINUTE, 1, ["discord"]) == [alice]
        assert await tx.members.claim_welcomes(T0 + 10 * MINUTE, 10, ["discord"]) == [bob]  # once each
        assert await tx.members.claim_welcomes(T0 + 10 * MINUTE, 10, ["discord"]) == []
        assert await tx.next_due_time(["discord"]) == T0 + 20 * MINUTE
        assert await tx.members.claim_welcomes(T0 + 30 * MINUTE, 10, ["discord", "matrix"]) == [
            carol,
            in_room,
        ]
        assert await tx.next_due_time(["discord", "matrix"]) is None


async def test_contributions_count_proposals_votes_and_reflections_since_a_time(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.goals.create(general, "Old goal", ALICE, T0 - 40 * DAY)
        await tx.goals.create(general, "Learn Rust", ALICE, T0)
        await tx.goals.create(general, "Learn Go", BOB, T0 + HOUR)
        await tx.goals.create(study, "Elsewhere", ALICE, T0)
        old = await tx.polls.create(general, PollKind.POLL, YES_NO, BOB, T0 - 40 * DAY)
        first = await tx.polls.create(general, PollKind.POLL, YES_NO, BOB, T0)
        second = await tx.polls.create(general, PollKind.CONSENT, YES_NO, BOB, T0)
        await tx.polls.record_reactions(old.id, [ReactionChange(ALICE.key, "Alice", 0, True)])
        # Two options of one poll are one vote; a reaction taken back is none.
        await tx.polls.record_reactions(
            first.id,
            [
                ReactionChange(ALICE.key, "Alice", 0, True),
                ReactionChange(ALICE.key, "Alice", 1, True),
                ReactionChange(BOB.key, "Bob", 0, True),
                ReactionChange(BOB.key, "Bob", 0, False),
            ],
        )
        await tx.polls.record_reactions(second.id, [ReactionChange(ALICE.key, "Alice", 0, True)])
        await tx.reviews.add_reflection(general, None, None, CAROL, "A thought", T0)
        await tx.reviews.add_reflection(general, None, None, CAROL, "An old one", T0 - 40 * DAY)
    async with store.transaction() as tx:
        assert await tx.members.contributions(general, T0 - 30 * DAY) == {
            ALICE.key: Contributions(proposals=1, votes=2),
            BOB.key: Contributions(proposals=1),
            CAROL.key: Contributions(reflections=1),
        }
        assert await tx.members.contributions(study, T0 + DAY) == {}


async def test_forgetting_a_member_takes_them_off_every_roster_and_buddy_pair(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0, "Alice, here for Rust")
        await tx.members.add(study, ALICE, T0)
        bob = await tx.members.add(general, BOB, T0)
        carol = await tx.members.add(general, CAROL, T0)
        await tx.members.pair(bob.id, alice, T0)
        await tx.members.pair(alice.id, carol, T0)
    async with store.transaction() as tx:
        done = await tx.members.forget(ALICE)
        assert (done.rosters, done.buddies) == (2, 1)
    async with store.transaction() as tx:
        assert await tx.members.of_user(ALICE) == []
        assert await tx.members.get(general, ALICE.key) is None
        assert await tx.members.roster(general) == [bob, replace(carol, paired_at=T0)]  # Bob has no buddy


# The radar ----------------------------------------------------------------------------------------


async def test_the_radar_is_planned_once_per_group_due_on_the_platforms_asked(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    async with store.transaction() as tx:
        assert [g.id for g in await tx.groups.radar_due(T0, 10, ["discord", "matrix"])] == [general, room]
        assert await tx.groups.plan_radar([(general, None, T0 + HOUR), (room, T0, T0 + HOUR)]) == {general}
        assert await tx.groups.plan_radar([(general, None, T0 + 2 * HOUR)]) == set()  # someone moved it
        assert [g.id for g in await tx.groups.radar_due(T0, 10, ["discord"])] == []
        assert [g.id for g in await tx.groups.radar_due(T0 + HOUR, 10, ["discord"])] == [general]
        assert await tx.next_due_time(["discord"]) == T0 + HOUR
        await tx.groups.set_radar(general, False, {"silence": 21, "stasis": 28})
        assert await tx.groups.radar_due(T0 + HOUR, 10, ["discord"]) == []
        assert await tx.next_due_time(["discord"]) is None
        group = await tx.groups.by_id(general)
        assert group is not None and not group.auto_radar
        assert group.radar_limits == (("silence", 21),)  # a default is no setting of the group's
        assert group.radar_next_at == T0 + HOUR
        await tx.groups.set_advised(general, T0)
        assert (await tx.groups.by_id(general)).advised_at == T0  # type: ignore[union-attr]


async def test_findings_are_told_by_kind_and_subject_latest_first(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.groups.record_findings([(general, "silence", ALICE.key), (general, "stasis", "")], T0)
        await tx.groups.record_findings(
            [(general, "silence", ALICE.key), (study, "blocks", "goal:3")], T0 + HOUR
        )
    async with store.transaction() as tx:
        assert await tx.groups.told([general, study], T0) == {
            general: {("silence", ALICE.key): T0 + HOUR, ("stasis", ""): T0},
            study: {("blocks", "goal:3"): T0 + HOUR},
        }
        assert await tx.groups.told([general], T0 + MINUTE) == {general: {("silence", ALICE.key): T0 + HOUR}}
        await tx.members.add(general, ALICE, T0)
        await tx.groups.record_signal(general, "closing", T0, ALICE.key)
        await tx.members.forget(ALICE)
    async with store.transaction() as tx:
        assert await tx.groups.told([general], T0) == {general: {("stasis", ""): T0}}
        assert await tx.groups.signals(general, T0) == []  # what she closed is forgotten too


async def test_signals_since_the_phase_began_leave_out_closings(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.groups.record_signal(general, "goal_accepted", T0 - HOUR, "1")  # before the phase
        await tx.groups.record_signal(general, "goal_accepted", T0 + HOUR, "2")
        await tx.groups.record_signal(general, "closing", T0 + HOUR, ALICE.key)
        await tx.groups.record_signal(general, "all_goals_done", T0 + 2 * HOUR, "")
        assert await tx.groups.signals_in_phase([general, study]) == {
            general: ["goal_accepted", "all_goals_done"]
        }


async def test_the_radar_reads_many_groups_at_once(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        alice = await tx.members.add(general, ALICE, T0)
        bob = await tx.members.add(general, BOB, T0 + MINUTE)
        await tx.members.add(study, BOB, T0)
        await tx.members.set_left((await tx.members.get(study, BOB.key)).id, T0)  # type: ignore[union-attr]
        goal = await tx.goals.create(general, "Learn Rust", ALICE, T0 + HOUR)
        await tx.goals.create(general, "From a reflection", BOB, T0 + HOUR, put_forward_by=ALICE)
        await tx.goals.set_status(goal.id, GoalStatus.ACCEPTED, T0 + HOUR)
        await tx.groups.record_signal(general, "closing", T0 + 2 * HOUR, BOB.key)
        await tx.groups.record_phase_change(
            PhaseChange(general, Phase.CONVENING, Phase.ORGANIZING, T0, "Bob", "", BOB.key)
        )
        await tx.groups.record_phase_change(
            PhaseChange(study, None, Phase.CONVENING, T0, "peerbot", "", "peerbot:peerbot")
        )
        poll = await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0)
        await tx.polls.record_reactions(poll.id, [ReactionChange(BOB.key, "Bob", 1, True)])
        free = await tx.reviews.add_reflection(general, None, None, BOB, "goal 1 worries me", T0 + HOUR)
        await tx.reviews.add_reflection(study, None, None, BOB, "earlier", T0 - HOUR)
    async with store.transaction() as tx:
        entries = [
            RosterEntry(m.id, general, m.key, m.name, m.last_active_at or T0, bool(m.intro), m.private)
            for m in (alice, bob)
        ]
        assert await tx.members.rosters([general, study]) == {general: entries}
        acts = await tx.members.acts([general, study], T0)
        assert sorted((a.kind.value, a.key, a.at) for a in acts[general]) == [
            ("closing", BOB.key, T0 + 2 * HOUR),
            ("phase move", BOB.key, T0),
            ("proposal", ALICE.key, T0 + HOUR),
            ("proposal", ALICE.key, T0 + HOUR),  # she put Bob's reflection forward
        ]
        assert study not in acts  # the bot's own moves are nobody's acts
        assert await tx.members.acts([general], T0 + 3 * HOUR) == {}
        accepted = await tx.goals.of_groups([general, study], [GoalStatus.ACCEPTED])
        assert [g.id for g in accepted[general]] == [goal.id] and study not in accepted
        assert await tx.polls.reactions_of([poll.id, poll.id + 1]) == {
            poll.id: [PollReaction(BOB.key, "Bob", 1, True, 1)]
        }
        assert await tx.reviews.reflections_since([general, study], T0) == {general: [free]}


# The outbox ---------------------------------------------------------------------------------------


async def test_posts_are_queued_in_order_with_their_details(store: Store) -> None:
    group_id = await make_group(store)
    posts = [
        Post(PostKind.SEND, GENERAL, "hello", reactions=("👍", "👎"), group_id=group_id),
        Post(PostKind.REPLY, GENERAL, "answer", reply_to="m42"),
        Post(PostKind.DIRECT, ChannelRef("discord", "dm"), "psst", user=BOB, not_before=T0 + HOUR),
    ]
    async with store.transaction() as tx:
        ids = await tx.outbox.add(posts, T0)
        assert await tx.outbox.add([], T0) == []
    assert ids == sorted(ids) and len(set(ids)) == 3
    async with store.transaction() as tx:
        rows = await tx.outbox.rows()
    assert [r.id for r in rows] == ids
    assert [r.post for r in rows] == [
        replace(posts[0], not_before=T0),  # not held: it may be sent from the time it was queued
        replace(posts[1], not_before=T0),
        posts[2],
    ]
    assert [(r.state, r.created_at, r.not_before, r.attempts, r.message_id) for r in rows] == [
        (PostState.PENDING, T0, T0, 0, None),
        (PostState.PENDING, T0, T0, 0, None),
        (PostState.PENDING, T0, T0 + HOUR, 0, None),
    ]
    assert rows[2].post.user is not None and rows[2].post.user.display == "Bob"
    assert rows[0].post.channel.display == "#general"


async def test_a_leased_row_is_claimed_by_its_owner_alone_until_the_lease_runs_out(store: Store) -> None:
    wall = datetime(2030, 1, 1, tzinfo=UTC)  # leases are wall-clock times, apart from the bot's clock
    lease = timedelta(seconds=60)
    async with store.transaction() as tx:
        first, second, held, matrix = await tx.outbox.add(
            [
                Post(PostKind.SEND, GENERAL, "1"),
                Post(PostKind.SEND, STUDY, "2"),
                Post(PostKind.SEND, GENERAL, "later", not_before=T0 + HOUR),
                Post(PostKind.SEND, ROOM, "m"),
            ],
            T0,
        )
    async with store.transaction() as tx:
        taken = await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 10)
        assert [r.id for r in taken] == [first, second]
        assert taken[0].post.text == "1"
    async with store.transaction() as tx:
        assert await tx.outbox.claim(["discord"], "b", T0, (wall + lease / 2, wall + 2 * lease), 10) == []
        assert await tx.outbox.claim(["discord"], "b", T0, (wall + lease, wall + 2 * lease), 10) == []
        again = await tx.outbox.claim(["discord"], "a", T0, (wall + lease / 2, wall + 2 * lease), 1)
        assert [r.id for r in again] == [first]  # the same owner may, and oldest first
        in_room = await tx.outbox.claim(["matrix"], "b", T0, (wall, wall + lease), 10)
        assert [r.id for r in in_room] == [matrix]
    async with store.transaction() as tx:
        # `a` renewed `first` until wall + 2 leases, but `second` ran out at wall + 1 lease.
        late = await tx.outbox.claim(["discord"], "b", T0 + HOUR, (wall + 1.5 * lease, wall + 3 * lease), 10)
        assert [r.id for r in late] == [second, held]
        end = wall + 2 * lease  # the lease holds up to its end, inclusive
        assert await tx.outbox.claim(["discord"], "c", T0 + HOUR, (end, end + lease), 10) == []
        past = wall + 2 * lease + timedelta(seconds=1)
        final = await tx.outbox.claim(["discord"], "c", T0 + HOUR, (past, past + lease), 10)
        assert [r.id for r in final] == [first]


async def test_a_released_row_can_be_claimed_at_once_but_only_its_owner_releases_it(store: Store) -> None:
    wall, lease = datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=60)
    async with store.transaction() as tx:
        one, two = await tx.outbox.add(
            [Post(PostKind.SEND, GENERAL, "1"), Post(PostKind.SEND, GENERAL, "2")], T0
        )
        await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 10)
        await tx.outbox.release("b", [one, two])  # not b's to give up
        await tx.outbox.release("a", [one])
        await tx.outbox.release("a", [])
    async with store.transaction() as tx:
        assert [r.id for r in await tx.outbox.claim(["discord"], "b", T0, (wall, wall + lease), 10)] == [one]


async def test_a_lease_is_renewed_only_by_its_owner_and_holds_off_others(store: Store) -> None:
    wall, lease = datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=30)
    async with store.transaction() as tx:
        one, two, free = await tx.outbox.add([Post(PostKind.SEND, GENERAL, str(n)) for n in range(3)], T0)
        await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 2)
    async with store.transaction() as tx:
        assert await tx.outbox.renew("a", [one, two, free], wall + 2 * lease) == {one, two}
        assert await tx.outbox.renew("b", [one, two], wall + 3 * lease) == set()  # not b's
        assert await tx.outbox.renew("a", [], wall) == set()
    async with store.transaction() as tx:
        # Past the first lease, within the renewed one: nobody else may take them.
        taken = await tx.outbox.claim(["discord"], "b", T0, (wall + 1.5 * lease, wall + 3 * lease), 10)
        assert [r.id for r in taken] == [free]
    async with store.transaction() as tx:
        late = wall + 2 * lease + timedelta(seconds=1)
        assert [r.id for r in await tx.outbox.claim(["discord"], "b", T0, (late, late + lease), 10)] == [
            one,
            two,
            free,  # its own already
        ]
        assert await tx.outbox.renew("a", [one, two], late + lease) == set()  # taken over: b's now


async def test_which_rows_a_process_still_holds_is_read_without_touching_the_lease(store: Store) -> None:
    wall, lease = datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=30)
    async with store.transaction() as tx:
        one, two, free, gone = await tx.outbox.add(
            [Post(PostKind.SEND, GENERAL, str(n)) for n in range(4)], T0
        )
        await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 2)
        await tx.outbox.sent([gone])
    async with store.read() as tx:
        assert await tx.outbox.held("a", [one, two, free, gone]) == {one, two}
        assert await tx.outbox.held("b", [one, two]) == set()
        assert await tx.outbox.held("a", []) == set()
    async with store.transaction() as tx:  # the lease is as it was: past it, another takes them
        late = wall + lease + timedelta(seconds=1)
        taken = await tx.outbox.claim(["discord"], "b", T0, (late, late + lease), 10)
        assert [r.id for r in taken] == [one, two, free]


async def test_plain_posts_are_marked_sent_many_at_once(store: Store) -> None:
    async with store.transaction() as tx:
        ids = await tx.outbox.add([Post(PostKind.SEND, GENERAL, str(n)) for n in range(1203)], T0)
        await tx.outbox.sent(ids[:1200])
        await tx.outbox.sent([])
    async with store.transaction() as tx:
        assert [r.id for r in await tx.outbox.rows()] == ids[1200:]


async def test_posted_sent_failed_and_retried_rows(store: Store, peek: Peek) -> None:
    wall, lease = datetime(2030, 1, 1, tzinfo=UTC), timedelta(seconds=60)
    async with store.transaction() as tx:
        posted, sent, failed, dropped, retried = await tx.outbox.add(
            [Post(PostKind.SEND, GENERAL, str(n)) for n in range(5)], T0
        )
        await tx.outbox.claim(["discord"], "a", T0, (wall, wall + lease), 10)
        await tx.outbox.posted(posted, MessageRef(GENERAL, "m1"))
        await tx.outbox.finish(sent, PostState.SENT, T0)
        await tx.outbox.finish(failed, PostState.FAILED, T0, "403 Missing Permissions")
        await tx.outbox.finish(dropped, PostState.DROPPED, T0, "too old")
        await tx.outbox.retry_at(retried, 3, T0 + 5 * MINUTE, "429 rate limited")
    async with store.transaction() as tx:
        rows = {r.id: r for r in await tx.outbox.rows()}
        assert sorted(rows) == [posted, failed, dropped, retried]  # a sent row is deleted
        assert (rows[posted].state, rows[posted].message_id) == (PostState.POSTED, "m1")
        assert (rows[failed].state, rows[dropped].state) == (PostState.FAILED, PostState.DROPPED)
        assert (rows[retried].state, rows[retried].attempts) == (PostState.PENDING, 3)
        assert [r.id for r in await tx.outbox.rows([PostState.FAILED])] == [failed]
        assert [r.id for r in await tx.outbox.rows([PostState.PENDING, PostState.POSTED])] == [
            posted,
            retried,
        ]
        assert await tx.outbox.rows([PostState.SENT]) == []
        assert await tx.outbox.counts() == {
            PostState.POSTED: 1,
            PostState.FAILED: 1,
            PostState.DROPPED: 1,
            PostState.PENDING: 1,
        }
    assert (await peek.reason(failed), await peek.reason(dropped)) == ("403 Missing Permissions", "too old")
    assert await peek.reason(retried) == "429 rate limited"
    later = wall + 2 * lease
    async with store.transaction() as tx:
        # Failed and dropped rows are never taken again; a posted row is (its reactions may be missing);
        # the retried one only once its next attempt is due.
        taken = await tx.outbox.claim(["discord"], "b", T0 + MINUTE, (later, later + lease), 10)
        assert [r.id for r in taken] == [posted]
        assert taken[0].message_id == "m1"
        taken = await tx.outbox.claim(["discord"], "b", T0 + 5 * MINUTE, (later, later + lease), 10)
        assert [r.id for r in taken] == [posted, retried]
        await tx.outbox.retry_at(retried, 4, T0, "again")
        taken = await tx.outbox.claim(["discord"], "b", T0, (later, later + lease), 10)
        assert [(r.id, r.attempts) for r in taken] == [(posted, 0), (retried, 4)]


# Transactions -------------------------------------------------------------------------------------


async def test_a_failed_transaction_leaves_nothing_behind(store: Store, peek: Peek) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        await tx.state("core").set("kept", "1")
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            other = await tx.groups.create(STUDY, Phase.CONVENING, T0)
            await tx.groups.record_phase_change(
                PhaseChange(group_id, Phase.CONVENING, Phase.ORGANIZING, T0, "a", "")
            )
            await tx.state("core").set("kept", "2")
            await tx.state("core").set("new", "x")
            await tx.events.claim("discord", "e1", T0)
            await tx.events.record_failed("discord", "e2", T0, "bad")
            poll = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
            await tx.polls.record_reactions(poll.id, [ReactionChange(BOB.key, "Bob", 0, True)])
            await tx.goals.create(group_id, "g", ALICE, T0)
            s = await tx.schedules.create(group_id, ScheduleKind.NUDGE, "c", "d", None, ALICE, T0, T0, T0)
            await tx.schedules.record_deliveries([(s.id, T0)], T0)
            await tx.reviews.create(group_id, ALICE, T0, T0 + HOUR)
            await tx.reviews.add_reflection(group_id, None, None, ALICE, "r", T0)
            await tx.groups.record_signal(group_id, "k", T0, "d")
            await tx.outbox.add([Post(PostKind.SEND, GENERAL, "p")], T0)
            assert other.id != group_id
            raise RuntimeError("boom")
    async with store.transaction() as tx:
        assert await tx.groups.get(STUDY) is None
        group = await tx.groups.by_id(group_id)
        assert group is not None and group.phase is Phase.CONVENING
        assert await tx.groups.phase_history(group_id, 10) == []
        assert (await tx.state("core").get("kept"), await tx.state("core").get("new")) == ("1", None)
        assert await tx.events.claim_many("discord", ["e1", "e2"], T0) == {"e1", "e2"}
        assert await tx.events.failed(10) == []
        assert await tx.polls.in_group(group_id) == []
        assert await tx.goals.in_group(group_id) == []
        assert await tx.schedules.in_group(group_id) == []
        assert await tx.reviews.in_group(group_id) == []
        assert await tx.reviews.reflections(group_id) == []
        assert await tx.groups.signals(group_id, T0) == []
        assert await tx.outbox.rows() == []
    assert await peek.deliveries() == set()


async def test_a_write_commits_while_a_read_is_open_and_the_read_keeps_its_snapshot(store: Store) -> None:
    group_id = await make_group(store)
    async with store.read() as reading:
        assert await reading.goals.in_group(group_id) == []  # the read's snapshot is taken here

        async def write() -> None:
            async with store.transaction() as tx:
                await tx.goals.create(group_id, "Learn Rust", ALICE, T0)

        # A read holding the write turn would make this wait for ever: the bound only stops a hang.
        await asyncio.wait_for(write(), 60)
        async with store.read() as fresh:
            assert [g.text for g in await fresh.goals.in_group(group_id)] == ["Learn Rust"]
        assert await reading.goals.in_group(group_id) == []


async def test_a_write_in_a_read_is_refused_and_kept_nowhere(store: Store) -> None:
    group_id = await make_group(store)
    with pytest.raises(ReadOnly):
        async with store.read() as tx:
            await tx.goals.create(group_id, "not here", ALICE, T0)
    async with store.transaction() as tx:
        assert await tx.goals.in_group(group_id) == []
        await tx.goals.create(group_id, "here", ALICE, T0)  # the connection may write again
    async with store.read() as tx:
        assert [g.text for g in await tx.goals.in_group(group_id)] == ["here"]


# Reminders ----------------------------------------------------------------------------------------


async def test_a_groups_reminder_window_is_kept(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.groups.set_remind_window(general, 40)
        await tx.groups.set_remind_window(study, 0)
    async with store.transaction() as tx:
        groups = await tx.groups.many([general, study])
        assert (groups[general].remind_window, groups[study].remind_window) == (40, 0)
        await tx.groups.set_remind_window(general, None)
        back = await tx.groups.by_id(general)
        assert back is not None and back.remind_window is None


async def test_a_polls_reminder_is_kept_replanned_and_claimed_once_while_it_is_open(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        late = await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + 45 * MINUTE)
        early = await tx.polls.create(study, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + 30 * MINUTE)
        never = await tx.polls.create(general, PollKind.POLL, YES_NO, ALICE, T0)
        closed = await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + MINUTE)
        gone = await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + 35 * MINUTE)
        elsewhere = await tx.polls.create(room, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + MINUTE)
        await tx.polls.close(closed.id, T0 + MINUTE)
    assert (late.remind_at, never.remind_at) == (T0 + 45 * MINUTE, None)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) == T0 + 30 * MINUTE
        # Closing takes its reminder with it.
        assert await tx.polls.get(general, closed.id) == replace(
            closed, closed_at=T0 + MINUTE, remind_at=None
        )
        assert await tx.polls.claim_reminders(T0 + 10 * MINUTE, 10, ["discord"]) == []
        await tx.polls.set_remind_at([(early.id, T0 + 50 * MINUTE), (gone.id, None)])
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) == T0 + 45 * MINUTE
        assert await tx.next_due_time(["matrix"]) == T0 + MINUTE
        assert await tx.polls.claim_reminders(T0 + 40 * MINUTE, 10, ["discord"]) == []
        assert await tx.polls.claim_reminders(T0 + 50 * MINUTE, 1, ["discord"]) == [
            replace(late, remind_at=None)
        ]
        assert await tx.polls.claim_reminders(T0 + 50 * MINUTE, 10, ["discord"]) == [
            replace(early, remind_at=None)
        ]
        assert await tx.polls.claim_reminders(T0 + 50 * MINUTE, 10, ["discord"]) == []  # claimed once
        assert await tx.next_due_time(["discord"]) == T0 + HOUR  # the polls closing
        # Due, but no longer open at that moment: not reminded.
        assert await tx.polls.claim_reminders(T0 + HOUR, 10, ["matrix"]) == []
        assert await tx.polls.claim_reminders(T0 + 50 * MINUTE, 10, ["matrix"]) == [
            replace(elsewhere, remind_at=None)
        ]
        assert await tx.polls.get(general, gone.id) == replace(gone, remind_at=None)


async def test_of_two_transactions_claiming_a_reminder_exactly_one_gets_it(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        poll = await tx.polls.create(group_id, PollKind.CONSENT, YES_NO, ALICE, T0, T0 + MINUTE)
        review = await tx.reviews.create(group_id, ALICE, T0, T0 + HOUR, T0 + MINUTE)

    async def claim() -> tuple[list[int], list[int]]:
        async with store.transaction() as tx:
            polls = await tx.polls.claim_reminders(T0 + MINUTE, 10, ["discord"])
            await asyncio.sleep(0.01)  # the other one tries meanwhile
            reviews = await tx.reviews.claim_reminders(T0 + MINUTE, 10, ["discord"])
            return [p.id for p in polls], [r.id for r in reviews]

    first, second = await asyncio.gather(claim(), claim())
    assert sorted(first[0] + second[0]) == [poll.id]
    assert sorted(first[1] + second[1]) == [review.id]


async def test_who_on_the_roster_has_not_voted_is_read_for_many_polls_at_once(store: Store) -> None:
    group_id, room = await make_group(store), await make_group(store, ROOM)
    dave = UserRef("discord", "dave", "Dave")
    async with store.transaction() as tx:
        await tx.members.add(group_id, ALICE, T0)
        await tx.members.add(group_id, BOB, T0 + MINUTE)
        carol = await tx.members.add(group_id, CAROL, T0 + 2 * MINUTE)
        await tx.members.save_settings(replace(carol, reminders=False))
        gone = await tx.members.add(group_id, dave, T0)
        await tx.members.set_left(gone.id, T0)  # off the roster: nobody waits for him
        poll = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        other = await tx.polls.create(group_id, PollKind.POLL, YES_NO, ALICE, T0)
        empty = await tx.polls.create(room, PollKind.POLL, YES_NO, ALICE, T0)
        await tx.polls.record_reactions(
            poll.id,
            [
                ReactionChange(ALICE.key, "Alice", 0, True),
                ReactionChange(ALICE.key, "Alice", 1, True),  # two options, one voter
                ReactionChange(BOB.key, "Bob", 0, True),
                ReactionChange(BOB.key, "Bob", 0, False),  # taken back: no vote
                ReactionChange(dave.key, "Dave", 1, True),
            ],
        )
        await tx.polls.record_reactions(other.id, [ReactionChange(CAROL.key, "Carol", 1, True)])
    async with store.transaction() as tx:
        asked = [poll.id, other.id, empty.id, empty.id + 1]
        bob, carol_absent = Absent(BOB.key, "Bob", True), Absent(CAROL.key, "Carol", False)
        assert await tx.polls.unvoted(asked) == {
            poll.id: Unresponded(3, (bob, carol_absent)),
            other.id: Unresponded(3, (Absent(ALICE.key, "Alice", True), bob)),
            empty.id: Unresponded(0, ()),
            empty.id + 1: Unresponded(0, ()),
        }
        # More polls than one query binds: all of them are looked at.
        many = range(poll.id - 6000, poll.id + 6000)
        assert (await tx.polls.unvoted(many))[poll.id] == Unresponded(3, (bob, carol_absent))
        assert await tx.polls.unvoted([]) == {}


async def test_the_polls_everyone_on_the_roster_voted_on_are_found_in_one_read(store: Store) -> None:
    general, room = await make_group(store, GENERAL), await make_group(store, ROOM)
    dave = UserRef("discord", "dave", "Dave")
    async with store.transaction() as tx:
        await tx.members.add(general, ALICE, T0)
        await tx.members.add(general, BOB, T0)
        carol = await tx.members.add(general, CAROL, T0)
        await tx.members.set_left(carol.id, T0 + HOUR)  # off the roster: her vote is not awaited
        polls = [await tx.polls.create(general, PollKind.CONSENT, YES_NO, ALICE, T0) for _ in range(5)]
        complete, partial, taken_back, stand_in, two_options = (p.id for p in polls)
        nobody_there = (await tx.polls.create(room, PollKind.CONSENT, YES_NO, ALICE, T0)).id

        def votes(*who: tuple[UserRef, int, bool]) -> list[ReactionChange]:
            return [ReactionChange(u.key, u.name, option, present) for u, option, present in who]

        await tx.polls.record_reactions(complete, votes((ALICE, 0, True), (BOB, 1, True)))
        await tx.polls.record_reactions(partial, votes((ALICE, 0, True), (CAROL, 0, True)))
        await tx.polls.record_reactions(taken_back, votes((ALICE, 0, True), (BOB, 1, True), (BOB, 1, False)))
        await tx.polls.record_reactions(stand_in, votes((ALICE, 0, True), (dave, 0, True)))
        await tx.polls.record_reactions(
            two_options, votes((ALICE, 0, True), (ALICE, 1, True), (BOB, 0, True))
        )
        room_vote = ReactionChange("matrix:alice", "Alice", 0, True)
        await tx.polls.record_reactions(nobody_there, [room_vote])
    async with store.transaction() as tx:
        asked = [*(p.id for p in polls), nobody_there, nobody_there + 1]
        assert await tx.polls.everyone_voted(asked) == {complete, two_options}
        assert await tx.polls.everyone_voted(range(complete - 6000, complete + 6000)) == {
            complete,
            two_options,
        }
        assert await tx.polls.everyone_voted([]) == set()


async def test_a_reviews_reminder_is_kept_replanned_and_claimed_once_while_it_is_open(store: Store) -> None:
    general, study, room = [await make_group(store, c) for c in (GENERAL, STUDY, ROOM)]
    async with store.transaction() as tx:
        slow = await tx.reviews.create(general, ALICE, T0, T0 + 2 * HOUR, T0 + 90 * MINUTE)
        quick = await tx.reviews.create(study, BOB, T0, T0 + HOUR, T0 + 45 * MINUTE)
        in_room = await tx.reviews.create(room, ALICE, T0, T0 + HOUR, T0 + 45 * MINUTE)
        plain = await tx.reviews.create(general, ALICE, T0, T0 + HOUR)
    assert (slow.remind_at, plain.remind_at) == (T0 + 90 * MINUTE, None)
    async with store.transaction() as tx:
        assert await tx.reviews.open(general) == plain
        assert await tx.reviews.in_group(study) == [quick]
        assert await tx.next_due_time(["discord"]) == T0 + 45 * MINUTE
        await tx.reviews.set_remind_at([(quick.id, T0 + 30 * MINUTE)])
        await tx.reviews.close(in_room.id, T0 + MINUTE)
    async with store.transaction() as tx:
        assert await tx.next_due_time(["discord"]) == T0 + 30 * MINUTE
        assert await tx.next_due_time(["matrix"]) is None  # closed, and its reminder with it
        assert await tx.reviews.claim_reminders(T0 + 20 * MINUTE, 10, ["discord"]) == []
        assert await tx.reviews.claim_reminders(T0 + 50 * MINUTE, 10, ["discord"]) == [
            replace(quick, remind_at=None)
        ]
        assert await tx.reviews.claim_reminders(T0 + 50 * MINUTE, 10, ["discord"]) == []
        assert await tx.reviews.claim_reminders(T0 + 90 * MINUTE, 10, ["matrix"]) == []
        await tx.reviews.set_remind_at([(slow.id, T0 + 100 * MINUTE)])
    async with store.transaction() as tx:
        assert await tx.reviews.claim_reminders(T0 + 2 * HOUR, 10, ["discord"]) == []  # closing time
        assert await tx.reviews.claim_reminders(T0 + 100 * MINUTE, 1, ["discord"]) == [
            replace(slow, remind_at=None)
        ]


async def test_who_on_the_roster_has_not_answered_is_read_for_many_reviews_at_once(store: Store) -> None:
    general, study = await make_group(store, GENERAL), await make_group(store, STUDY)
    async with store.transaction() as tx:
        await tx.members.add(general, ALICE, T0)
        await tx.members.add(general, BOB, T0 + MINUTE)
        await tx.members.add(study, BOB, T0)
        review = await tx.reviews.create(general, ALICE, T0, T0 + HOUR)
        other = await tx.reviews.create(study, ALICE, T0, T0 + HOUR)
        await tx.reviews.add_reflection(general, review.id, 1, ALICE, "one", T0)
        await tx.reviews.add_reflection(general, review.id, 2, ALICE, "two", T0)
        await tx.reviews.add_reflection(general, None, None, BOB, "free, not an answer", T0)
        await tx.reviews.add_reflection(study, other.id, 5, BOB, "five", T0)
    async with store.transaction() as tx:
        assert await tx.reviews.unanswered([review.id, other.id, other.id + 1]) == {
            review.id: Unresponded(2, (Absent(BOB.key, "Bob", True),)),
            other.id: Unresponded(1, ()),
            other.id + 1: Unresponded(0, ()),
        }
        many = range(review.id - 6000, review.id + 6000)
        assert (await tx.reviews.unanswered(many))[other.id] == Unresponded(1, ())
        assert await tx.reviews.unanswered([]) == {}


# Roles and wraps --------------------------------------------------------------------------------


async def test_roles_are_added_once_taken_by_compare_and_swap_and_removed_with_their_pool(
    store: Store,
) -> None:
    group_id = await make_group(store)
    week = T0 + timedelta(days=7)
    async with store.transaction() as tx:
        await tx.roles.ensure(group_id, BUILT_IN, T0, week)
        await tx.roles.ensure(group_id, BUILT_IN, T0, week)  # once only
        own = await tx.roles.add(group_id, "timekeeper", "keeps time", T0 + MINUTE, week)
        assert own is not None and not own.built_in
        assert await tx.roles.add(group_id, "timekeeper", "again", T0, week) is None
        names = [r.name for r in await tx.roles.in_group(group_id)]
        assert names == [n for n, _ in BUILT_IN] + ["timekeeper"]
        wrapper = await tx.roles.get(group_id, "wrapper")
        assert wrapper is not None and wrapper.built_in and not wrapper.held and wrapper.next_week_at == week
        assert await tx.roles.get(group_id, "nobody") is None
        assert await tx.roles.join_pool(own.id, BOB, T0)
        assert not await tx.roles.join_pool(own.id, BOB, T0 + MINUTE)
        assert await tx.roles.join_pool(own.id, ALICE, T0 + MINUTE)
        # A holder in the pool has it counted there; a compare-and-swap on the holder seen.
        assert await tx.roles.set_holder(own.id, BOB, T0 + HOUR, "")
        assert not await tx.roles.set_holder(own.id, ALICE, T0 + HOUR, "")
        assert await tx.roles.pools([own.id, wrapper.id]) == {
            own.id: [
                PoolMember(own.id, BOB.key, "Bob", T0, T0 + HOUR, 1),
                PoolMember(own.id, ALICE.key, "Alice", T0 + MINUTE),
            ]
        }
        held = await tx.roles.get(group_id, "timekeeper")
        assert held is not None and (held.holder_key, held.holder_name, held.held_since) == (
            BOB.key,
            "Bob",
            T0 + HOUR,
        )
        assert await tx.roles.set_holder(own.id, None, T0 + 2 * HOUR, BOB.key)
        freed = await tx.roles.get(group_id, "timekeeper")
        assert freed is not None and not freed.held and freed.held_since is None
        await tx.roles.set_rotation(own.id, Rotation.FORTNIGHTLY, week)
        rotating = await tx.roles.get(group_id, "timekeeper")
        assert rotating is not None and (rotating.rotation, rotating.next_turn_at) == (
            Rotation.FORTNIGHTLY,
            week,
        )
        assert await tx.roles.leave_pool(own.id, ALICE.key)
        assert not await tx.roles.leave_pool(own.id, ALICE.key)
        await tx.roles.remove(own.id)
        assert await tx.roles.get(group_id, "timekeeper") is None
        assert await tx.roles.pools([own.id]) == {}


async def test_a_role_s_week_turn_is_due_on_its_platform_and_moved_on_once(store: Store) -> None:
    group_id = await make_group(store)
    room_id = await make_group(store, ROOM)
    week = T0 + timedelta(days=7)
    async with store.transaction() as tx:
        await tx.roles.ensure(group_id, BUILT_IN[:1], T0, week)
        await tx.roles.ensure(room_id, BUILT_IN[:1], T0, week - HOUR)
        assert await tx.roles.week_due(week - MINUTE, 10, ["discord"]) == []
        assert await tx.next_due_time(["discord"]) == week
        assert await tx.next_due_time(["matrix"]) == week - HOUR
        (due,) = await tx.roles.week_due(week, 10, ["discord"])
        assert due.group_id == group_id
        later = week + timedelta(days=7)
        assert await tx.roles.advance([(due.id, week, later, None)]) == {due.id}
        assert await tx.roles.advance([(due.id, week, later + HOUR, None)]) == set()  # seen moved on
        assert await tx.roles.week_due(week, 10, ["discord"]) == []
        moved = await tx.roles.get(group_id, BUILT_IN[0][0])
        assert moved is not None and moved.next_week_at == later


async def test_a_draft_is_wrapped_or_lapses_once_and_holds_the_digest_meanwhile(store: Store) -> None:
    group_id = await make_group(store)
    room_id = await make_group(store, ROOM)
    day = timedelta(days=1)
    async with store.transaction() as tx:
        assert not await tx.roles.digest_to_wrapper(group_id, T0 - day)
        await tx.roles.ensure(group_id, BUILT_IN, T0, None)
        wrapper = await tx.roles.get(group_id, "wrapper")
        assert wrapper is not None
        await tx.roles.set_holder(wrapper.id, BOB, T0, "")
        assert await tx.roles.digest_to_wrapper(group_id, T0 - day)  # the role is held
        await tx.roles.set_holder(wrapper.id, None, T0, BOB.key)
        first = await tx.roles.add_wrap(
            group_id, T0, BOB, T0, WrapState.DRAFTED, digest="📬 digest", fallback_at=T0 + day
        )
        second = await tx.roles.add_wrap(
            group_id, T0 + 7 * day, BOB, T0 + 7 * day, WrapState.DRAFTED, fallback_at=T0 + 8 * day
        )
        await tx.roles.add_wrap(room_id, T0, BOB, T0, WrapState.DRAFTED, fallback_at=T0 + day)
        assert await tx.roles.digest_to_wrapper(group_id, T0 - day)  # drafted since
        assert not await tx.roles.digest_to_wrapper(group_id, T0 + 8 * day)
        assert await tx.next_due_time(["discord"]) == T0 + day
        assert await tx.roles.open_wrap(group_id, BOB.key) == second
        assert await tx.roles.open_wrap(group_id, ALICE.key) is None
        assert await tx.roles.fallbacks_due(T0 + day - MINUTE, 10, ["discord"]) == []
        assert await tx.roles.fallbacks_due(T0 + day, 10, ["discord"]) == [first]
        assert await tx.roles.lapse([first.id]) == {first.id}
        assert await tx.roles.lapse([first.id]) == set()
        assert await tx.roles.fallbacks_due(T0 + day, 10, ["discord"]) == []
        # A lapsed week may still be wrapped late; a wrapped one not again.
        assert await tx.roles.wrap(first.id, "late but here", T0 + 2 * day)
        assert not await tx.roles.wrap(first.id, "again", T0 + 3 * day)
        assert await tx.roles.wrap(second.id, "on time", T0 + 7 * day + HOUR)
        direct = await tx.roles.add_wrap(
            group_id, T0 + 9 * day, ALICE, T0 + 9 * day, WrapState.WRAPPED, text="hi"
        )
        listed = await tx.roles.wraps(group_id)
        assert [w.id for w in listed] == [direct.id, second.id, first.id]
        assert (listed[0].state, listed[0].wrapped_at, listed[0].text) == (
            WrapState.WRAPPED,
            T0 + 9 * day,
            "hi",
        )
        assert (listed[2].state, listed[2].text, listed[2].digest, listed[2].fallback_at) == (
            WrapState.WRAPPED,
            "late but here",
            "📬 digest",
            None,
        )


async def test_forgetting_takes_a_member_out_of_pools_and_holdings(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        await tx.members.add(group_id, BOB, T0)
        await tx.roles.ensure(group_id, BUILT_IN, T0, None)
        roles = {r.name: r for r in await tx.roles.in_group(group_id)}
        await tx.roles.join_pool(roles["wrapper"].id, BOB, T0)
        await tx.roles.join_pool(roles["wrapper"].id, ALICE, T0)
        await tx.roles.set_holder(roles["notetaker"].id, BOB, T0, "")
        await tx.roles.add_wrap(group_id, T0, BOB, T0, WrapState.WRAPPED, text="Bob's week")
    async with store.transaction() as tx:
        done = await tx.members.forget(BOB)
        assert done.roles == 2
        notetaker = await tx.roles.get(group_id, "notetaker")
        assert notetaker is not None and not notetaker.held
        pools = await tx.roles.pools([roles["wrapper"].id])
        assert [p.key for p in pools[roles["wrapper"].id]] == [ALICE.key]
        (wrap,) = await tx.roles.wraps(group_id)
        assert (
            wrap.wrapper_name == FORMER_MEMBER and wrap.wrapper_key != BOB.key and wrap.text == "Bob's week"
        )


# Meetings -----------------------------------------------------------------------------------------

WEEKLY = When("0 18 * * thu", "weekly thu 18:00")
START_1 = datetime(2026, 3, 5, 18, 0, tzinfo=UTC)


def planned(meeting_id: int, group_id: int, starts: datetime) -> Occurrence:
    return Occurrence(0, meeting_id, group_id, starts, starts - 24 * HOUR, starts - HOUR, starts - 24 * HOUR)


async def test_meetings_are_kept_cancelled_once_and_their_time_and_skips_change(store: Store) -> None:
    group_id, other = await make_group(store), await make_group(store, STUDY)
    one_off = When(None, "2026-03-10 19:00", datetime(2026, 3, 10, 19, 0, tzinfo=UTC))
    async with store.transaction() as tx:
        weekly = await tx.meetings.create(group_id, "Reading circle", WEEKLY, ALICE, T0)
        once = await tx.meetings.create(group_id, "Kick-off", one_off, BOB, T0 + MINUTE)
        theirs = await tx.meetings.create(other, "Rest", WEEKLY, BOB, T0)
    assert (weekly.cron, weekly.description, weekly.at, weekly.created_by, weekly.created_by_key) == (
        "0 18 * * thu",
        "weekly thu 18:00",
        None,
        "Alice",
        ALICE.key,
    )
    assert once.at == one_off.at and once.cron is None and not once.recurring
    async with store.transaction() as tx:
        assert await tx.meetings.get(group_id, weekly.id) == weekly
        assert await tx.meetings.get(group_id, theirs.id) is None  # another group's
        assert await tx.meetings.in_group(group_id) == [weekly, once]
        await tx.meetings.set_skips(weekly.id, ["2026-03-12", "2026-03-19"])
        await tx.meetings.set_when(weekly.id, When("30 19 * * wed", "weekly wed 19:30"))
        assert await tx.meetings.cancel(once.id, T0 + HOUR)
        assert not await tx.meetings.cancel(once.id, T0 + 2 * HOUR)
    async with store.transaction() as tx:
        changed = await tx.meetings.get(group_id, weekly.id)
        cancelled = await tx.meetings.get(group_id, once.id)
    assert changed == replace(
        weekly, cron="30 19 * * wed", description="weekly wed 19:30", skips=("2026-03-12", "2026-03-19")
    )
    assert cancelled is not None and cancelled.cancelled_at == T0 + HOUR


async def test_an_occurrence_is_due_claimed_once_and_found_by_its_message(store: Store) -> None:
    group_id, room = await make_group(store), await make_group(store, ROOM)
    async with store.transaction() as tx:
        meeting = await tx.meetings.create(group_id, "Reading circle", WEEKLY, ALICE, T0)
        elsewhere = await tx.meetings.create(room, "Matrix one", WEEKLY, ALICE, T0)
        o = await tx.meetings.add_occurrence(planned(meeting.id, group_id, START_1))
        later = await tx.meetings.add_occurrence(planned(meeting.id, group_id, START_1 + 7 * 24 * HOUR))
        await tx.meetings.add_occurrence(planned(elsewhere.id, room, START_1))
    assert o.id and later.id != o.id and o.message is None
    async with store.transaction() as tx:
        assert await tx.meetings.occurrence(o.id) == o
        assert await tx.meetings.occurrence(o.id + 1000) is None
        assert await tx.meetings.occurrences([meeting.id]) == [o, later]
        assert await tx.meetings.due(START_1 - 24 * HOUR - MINUTE, 10, ["discord"]) == []
        assert await tx.meetings.due(START_1 - 24 * HOUR, 10, ["discord"]) == [o]
        assert [x.group_id for x in await tx.meetings.due(START_1, 10, ["matrix"])] == [room]
        moved = replace(o, announced=True, next_due_at=START_1 - HOUR)
        assert await tx.meetings.move(moved, o.next_due_at)
        assert not await tx.meetings.move(replace(moved, reminded=True), o.next_due_at)  # lost the claim
        message = MessageRef(GENERAL, "m1")
        await tx.meetings.set_message(o.id, message)
    async with store.transaction() as tx:
        kept = await tx.meetings.occurrence(o.id)
        assert kept == replace(moved, message=message)
        assert await tx.meetings.for_messages("discord", ["m1", "m2"]) == [kept]
        assert await tx.meetings.for_messages("matrix", ["m1"]) == []
        assert await tx.meetings.ahead_with_messages("discord", START_1 - MINUTE) == [kept]
        assert await tx.meetings.ahead_with_messages("discord", START_1) == []
        assert await tx.meetings.due(START_1 - HOUR, 10, ["discord"]) == [kept]
        assert await tx.next_due_time(["discord"]) == START_1 - HOUR
        await tx.meetings.delete_ahead(meeting.id, START_1)  # the later one goes
        assert await tx.meetings.occurrences([meeting.id]) == [kept]
        assert await tx.meetings.cancel(meeting.id, START_1 - 2 * HOUR)
        assert await tx.meetings.occurrences([meeting.id]) == []  # not started: gone with it
        assert await tx.meetings.due(START_1, 10, ["discord"]) == []


async def test_one_rsvp_per_member_and_occurrence_and_forgetting_unlinks_it(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        meeting = await tx.meetings.create(group_id, "Reading circle", WEEKLY, BOB, T0)
        o = await tx.meetings.add_occurrence(planned(meeting.id, group_id, START_1))
        await tx.meetings.set_rsvps([(o.id, ALICE, "✅"), (o.id, BOB, "❔")], T0)
        await tx.meetings.set_rsvps([(o.id, BOB, "❌"), (o.id, ALICE, None)], T0 + MINUTE)
        await tx.meetings.set_rsvps([(o.id, ALICE, "✅")], T0 + HOUR)
        assert await tx.meetings.rsvps([o.id]) == [
            Rsvp(o.id, ALICE.key, "Alice", "✅"),
            Rsvp(o.id, BOB.key, "Bob", "❌"),
        ]
        assert await tx.meetings.rsvps([]) == []
        assert await tx.meetings.forget(BOB) == 2  # an RSVP and the meeting they added
    async with store.transaction() as tx:
        kept = await tx.meetings.rsvps([o.id])
        added = await tx.meetings.get(group_id, meeting.id)
    assert sorted(r.choice for r in kept) == ["✅", "❌"]
    forgotten = next(r for r in kept if r.choice == "❌")
    assert forgotten.user_name == FORMER_MEMBER and forgotten.user_key.startswith("former:")
    assert added is not None and added.created_by == FORMER_MEMBER and added.created_by_key != BOB.key


async def test_a_schedules_cron_changes(store: Store) -> None:
    group_id = await make_group(store)
    async with store.transaction() as tx:
        s = await tx.schedules.create(
            group_id, ScheduleKind.NUDGE, "0 17 * * fri", "weekly fri 17:00", "Hi", ALICE, T0, None, None
        )
        await tx.schedules.set_cron(s.id, "0 10 * * sat", "weekly sat 10:00")
        kept = await tx.schedules.get(group_id, s.id)
    assert kept == replace(s, cron="0 10 * * sat", description="weekly sat 10:00")


# The suite keeps up with the port -----------------------------------------------------------------


def port_methods(protocol: type) -> set[str]:
    return {
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


REPOS: dict[str, type] = {
    "events": EventLog,
    "groups": GroupRepo,
    "polls": PollRepo,
    "goals": GoalRepo,
    "concerns": ConcernRepo,
    "schedules": ScheduleRepo,
    "reviews": ReviewRepo,
    "members": MemberRepo,
    "outbox": OutboxRepo,
    "roles": RoleRepo,
    "meetings": MeetingRepo,
}


def uncalled(source: str) -> set[str]:
    """The port's methods ("polls.close", "state.get", "next_due_time") that `source` never calls."""
    missing = {
        f"{repo}.{m}"
        for repo, protocol in REPOS.items()
        for m in port_methods(protocol)
        if not re.search(rf"\.{repo}\.{m}\(", source)
    }
    missing |= {
        f"state.{m}" for m in port_methods(StateRepo) if not re.search(rf"\.state\([^()]*\)\.{m}\(", source)
    }
    plain = port_methods(StoreTx) - set(REPOS) - {"state"}
    return missing | {m for m in plain if not re.search(rf"\.{m}\(", source)}


def test_every_repository_of_the_port_is_known_to_the_contract() -> None:
    assert port_methods(StoreTx) == set(REPOS) | {"state", "next_due_time"}


def test_the_contract_calls_every_method_of_the_port() -> None:
    assert uncalled(Path(__file__).read_text(encoding="utf-8")) == set()


def test_the_coverage_check_sees_a_method_that_is_never_called() -> None:
    assert sum(len(port_methods(p)) for p in (*REPOS.values(), StateRepo)) >= 56
    source = "await tx.events.claim('d', 'e', T0)\nawait tx.state('matrix').get('k')\n# members forget\n"
    missing = uncalled(source)
    assert "events.claim" not in missing and "state.get" not in missing
    assert {"members.forget", "state.set", "next_due_time", "outbox.rows"} <= missing
    assert "events.claim_many" in uncalled("tx.events.claim(")
