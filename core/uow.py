"""One unit of work per inbound event or tick step: one transaction, the posts it queues, the domain
events it publishes.

A handler receives the unit of work; it never opens a transaction of its own. What it wants posted it
queues with `post`, and the posts are written to the outbox in the same transaction, so a crash loses
neither the change nor its message, and never keeps one without the other. Domain events are handled
at once, in the same transaction, by the subscribers named in one table (`Bus`): closing a consent
poll decides its goal in the transaction that closed it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from core import faults
from core.clock import Clock
from core.goals import Goal, GoalStatus
from core.lifecycle import Group, PhaseChange
from core.members import Member
from core.outbox import OutboxRow, Post, PostState
from core.polls import Poll, ReactionChange, Tally
from core.ports import Store, StoreTx
from core.reflections import Review
from core.refs import UserRef
from core.schedules import due_time

# Domain events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollClosed:
    poll: Poll
    result: Tally
    announce: bool = True  # False when the poll closes silently (its goal was dropped)
    early: str = ""  # why it closed before its time, for the result (a consent poll decided early)


@dataclass(frozen=True, slots=True)
class VotesRecorded:
    """Votes on these polls changed (a batch of reactions, or a poll reconciled with its message)."""

    polls: tuple[Poll, ...]
    # What changed, by poll id, in order: who reacted or took a reaction back, on which option.
    changes: Mapping[int, Sequence[ReactionChange]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GoalDecided:
    group: Group
    goal: Goal
    status: GoalStatus


@dataclass(frozen=True, slots=True)
class GoalFinished:
    group: Group
    goal: Goal
    status: GoalStatus  # done or dropped


@dataclass(frozen=True, slots=True)
class PhaseEntered:
    group: Group  # as it was before the move
    change: PhaseChange
    by: UserRef


@dataclass(frozen=True, slots=True)
class ReviewClosed:
    group: Group
    review: Review


@dataclass(frozen=True, slots=True)
class MembersArrived:
    """Members came onto the group's roster at once (one command, one batch of reactions): for the
    first time, or back after leaving."""

    group: Group
    members: tuple[Member, ...]
    first_time: bool


@dataclass(frozen=True, slots=True)
class MemberIntroduced:
    """A member on the roster said a few words about themselves (`join <intro>`)."""

    group: Group
    member: Member


DomainEvent = (
    PollClosed
    | VotesRecorded
    | GoalDecided
    | GoalFinished
    | PhaseEntered
    | ReviewClosed
    | MembersArrived
    | MemberIntroduced
)

# A subscriber may return a line to add to the answer of the command that caused the event.
Subscriber = Callable[["UnitOfWork", DomainEvent], Awaitable[str | None]]


@dataclass
class Bus:
    """The one table of who handles which domain event, in order."""

    table: Mapping[type, Sequence[Subscriber]] = field(default_factory=dict)


# How long an adapter that answers commands itself may take to answer (Discord's interaction window:
# the answer, or the deferral that holds its place, is in the channel by then).
ANSWER_WINDOW = timedelta(seconds=3)


class UnitOfWork:
    def __init__(self, tx: StoreTx, now: datetime, bus: Bus, *, unprompted: bool = False) -> None:
        self.tx = tx
        self.now = now
        self.bus = bus
        # No member's command started this unit of work (a tick step): what it posts in a group waits
        # out the group's quiet hours. The answer to a command, and what the command posts, go at once.
        self.unprompted = unprompted
        self._posts: list[tuple[Post, bool]] = []  # (post, posted on the bot's own initiative)
        self._after_answer: list[tuple[Post, bool]] = []
        # The adapter sends the command's answer itself, not the outbox (Discord): what follows the
        # answer waits out the adapter's answer window instead of queueing behind it.
        self.answered_apart = False

    def post(
        self, post: Post, *, after_answer: bool = False, unprompted: bool = False, placed: bool = False
    ) -> None:
        """Queue a message to send once this unit of work commits.

        `after_answer`: it follows the answer to the command that started this unit of work, which is
        queued last (rows are sent in order per channel): a move is announced before what it starts.
        `unprompted`: the bot posts it on its own initiative though a command started this unit of work
        (the review that entering Assessing starts), so it waits out quiet hours as a tick step's posts do.
        `placed`: the caller has already held it past quiet hours (a nudge knows its group's).
        """
        held = (unprompted or self.unprompted) and not placed
        (self._after_answer if after_answer else self._posts).append((post, held))

    async def queued(self) -> list[Post]:
        """Everything to post, in the order it goes out; what is unprompted held until quiet hours end."""
        after = self._after_answer
        if self.answered_apart:
            later = self.now + ANSWER_WINDOW
            after = [(replace(p, not_before=max(p.not_before or later, later)), u) for p, u in after]
        items = self._posts + after
        held = iter(await after_quiet_hours(self.tx, [p for p, unprompted in items if unprompted], self.now))
        return [next(held) if unprompted else post for post, unprompted in items]

    async def publish(self, event: DomainEvent) -> list[str]:
        """Run the event's subscribers now, in this transaction; the lines they return, in order."""
        notes: list[str] = []
        for subscriber in self.bus.table.get(type(event), ()):
            note = await subscriber(self, event)
            if note:
                notes.append(note)
        return notes


async def after_quiet_hours(tx: StoreTx, posts: Sequence[Post], now: datetime) -> list[Post]:
    """The posts, each held (`not_before`) until its group's quiet hours end if it would go out in them;
    the outbox's maximum age then counts from the end of quiet hours."""
    if not posts:
        return []
    groups = await tx.groups.many(sorted({p.group_id for p in posts if p.group_id is not None}))
    held = []
    for post in posts:
        group = groups.get(post.group_id) if post.group_id is not None else None
        if group is not None and (until := quiet_hold(group, post.not_before or now)) is not None:
            post = replace(post, not_before=until)
        held.append(post)
    return held


def quiet_hold(group: Group, at: datetime) -> datetime | None:
    """Until when something the bot posts on its own in the group at `at` waits: the end of the group's
    quiet hours when `at` falls in them; None when it may go at once. For a caller that has the group at
    hand and queues its posts `placed`, sparing the unit of work a read of the group."""
    if group.quiet is None:
        return None
    until = due_time(at, group.timezone, group.quiet)
    return until if until > at else None


class Sender(Protocol):
    """Who sends the outbox in this process (core/outbox.py `Dispatcher`)."""

    def leases(self, posts: Sequence[Post], now: datetime) -> list[tuple[str, datetime] | None]:
        """For each post, the lease (owner, until) to write its row with when this process will send
        it (at once, or prepared ahead), the same for all; None to leave it to whichever process claims
        it."""
        ...

    def take(self, rows: Sequence[OutboxRow], until: datetime) -> None:
        """Rows just committed under this process's lease, until then: send them (they are not
        claimed again)."""
        ...

    def kick(self) -> None:
        """A committed unit of work queued posts: send what is due."""
        ...


class Work:
    """Opens units of work: the one place in the core where a transaction begins."""

    def __init__(self, store: Store, clock: Clock, bus: Bus, sender: Sender) -> None:
        self.store = store
        self.clock = clock
        self.bus = bus
        self.sender = sender  # told when a committed unit of work queued posts

    @asynccontextmanager
    async def __call__(
        self, now: datetime | None = None, *, unprompted: bool = False
    ) -> AsyncIterator[UnitOfWork]:
        """A unit of work; `unprompted` for tick steps, whose posts wait out quiet hours."""
        async with self.store.transaction() as tx:
            uow = UnitOfWork(tx, now or self.clock.now(), self.bus, unprompted=unprompted)
            yield uow
            posts = await uow.queued()
            taken: list[OutboxRow] = []
            until: datetime | None = None
            if posts:
                # What this process sends at once, or within `AHEAD` (prepared), is written leased to
                # it and handed to its sender after commit, never claimed back from the table; the rest
                # (held for quiet hours) waits to be claimed, after them. Each part keeps the order it
                # was queued in.
                leases = self.sender.leases(posts, uow.now)
                mine = [p for p, lease in zip(posts, leases, strict=True) if lease is not None]
                others = [p for p, lease in zip(posts, leases, strict=True) if lease is None]
                if mine:
                    lease = next(lease for lease in leases if lease is not None)
                    ids = await tx.outbox.add(mine, uow.now, lease)
                    taken = [
                        OutboxRow(i, p, PostState.PENDING, uow.now, p.not_before or uow.now)
                        for i, p in zip(ids, mine, strict=True)
                    ]
                    until = lease[1]
                await tx.outbox.add(others, uow.now)
                faults.reached("uow.before_commit")
        if posts:
            faults.reached("uow.after_commit")
            if until is not None:
                self.sender.take(taken, until)
            self.sender.kick()
