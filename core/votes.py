"""Recording votes with group commit: many reaction events per transaction, each acknowledged
only once it is durable.

Reactions arrive in bursts. Submitters queue their event and wait; one flusher task writes
everything queued so far in a single transaction, then wakes them. At low load a batch is one event
and nobody waits for company; under load batches grow on their own while the previous commit runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.activity import ACTIVITY_RESOLUTION, touch
from core.events import ReactionAdded, ReactionEvent
from core.metrics import NO_METRICS, Metrics
from core.polls import Poll, ReactionChange
from core.ports import StateChanges, StoreTx
from core.refs import ChannelRef, UserRef
from core.uow import UnitOfWork, VotesRecorded, Work

log = logging.getLogger(__name__)

MAX_BATCH = 1024
MAX_NOTED = 10_000

# What else a batch of reactions means, in its unit of work (members' activity on the roster).
Activity = Callable[[UnitOfWork, Sequence[ReactionEvent]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    event: ReactionEvent
    state: StateChanges | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class Applied:
    """What a batch of reactions did, for the operators' metrics."""

    votes: int = 0  # vote changes recorded
    replays: int = 0  # events on polls applied before (a platform's replay), skipped


class VoteRecorder:
    def __init__(
        self,
        work: Work,
        activity: Activity | None = None,
        max_batch: int = MAX_BATCH,
        *,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.work = work
        self.metrics = metrics
        self.activity = activity
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # commits made, for benchmarks and tests
        # Channels whose activity this process noted lately (committed), and when: a batch of votes
        # then skips the group lookup, as the activity would not be written again so soon anyway.
        self._noted: dict[ChannelRef, datetime] = {}

    async def submit(self, event: ReactionEvent, state: StateChanges | None = None) -> None:
        """Queue one reaction event (with adapter state to save alongside); return once durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(event, state, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                now = self.work.clock.now()
                applied = Applied()
                recent = {c for c, at in self._noted.items() if now - at < ACTIVITY_RESOLUTION}
                async with self.work(now) as uow:
                    events = [p.event for p in batch]
                    noted, voted = await apply_reactions(uow.tx, events, now, recent, applied)
                    if self.activity is not None:
                        await self.activity(uow, events)
                    if voted.polls:  # after the activity, which may have put the voters on the roster
                        await uow.publish(voted)
                    for p in batch:
                        if p.state is not None:
                            await p.state.save(uow.tx)
            except Exception as error:
                log.exception("could not record %d reaction events", len(batch))
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(error)
            else:
                self.batches += 1
                self.metrics.votes_applied(applied.votes)  # durable now
                self.metrics.events_deduplicated(applied.replays)
                if len(self._noted) > MAX_NOTED:
                    self._noted.clear()
                self._noted.update(dict.fromkeys(noted, now))
                for p in batch:
                    if not p.done.done():
                        p.done.set_result(None)


async def reconcile_poll(
    tx: StoreTx, poll: Poll, present: Mapping[str, Collection[UserRef]], now: datetime
) -> list[ReactionChange]:
    """Bring a poll's votes in line with the reactions a platform says are on its message now.

    For platforms that cannot replay what happened while the bot was away (a new Discord session):
    `present` maps each emoji to the members whose reaction is on the message. Returns the votes that
    changed. A closed poll is left as it was counted, and an anonymous one too: its votes are no
    reactions (a reaction on it is none of its votes, see `apply_reactions`).
    """
    if not poll.is_open(now) or poll.anonymous:
        return []
    on_message: dict[int, set[str]] = defaultdict(set)
    names: dict[str, str] = {}
    for emoji, users in present.items():
        option = poll.option_index(emoji)
        if option is None:
            continue
        for user in users:
            on_message[option].add(user.key)
            names[user.key] = user.name
    counted: dict[int, set[str]] = defaultdict(set)
    for r in await tx.polls.reactions(poll.id):
        names.setdefault(r.user_key, r.user_name)
        if r.present:
            counted[r.option].add(r.user_key)
    changes = [
        ReactionChange(key, names[key], option, key in on_message[option])
        for option in range(len(poll.options))
        for key in sorted(on_message[option] ^ counted[option])
    ]
    await tx.polls.record_reactions(poll.id, changes)
    return changes


async def apply_reactions(
    tx: StoreTx,
    events: Sequence[ReactionEvent],
    now: datetime,
    active: Collection[ChannelRef] = (),
    applied: Applied | None = None,
) -> tuple[set[ChannelRef], VotesRecorded]:
    """Turn reaction events into vote changes, in order, each event at most once.

    Reactions on messages that are not polls count for no poll; nor do reactions that are not one of
    the poll's options and reactions once the poll has closed. Every reaction in a group's channel
    counts as activity there (the heartbeat measures silence), except in the `active` channels, whose
    activity was noted moments ago. Returns the channels whose activity it noted, and the votes that
    changed (no polls when none did); `applied`, when given, counts the vote changes and the replays
    skipped.
    """
    noted: set[ChannelRef] = set()
    voted: list[Poll] = []
    changed: dict[int, list[ReactionChange]] = {}
    by_platform: dict[str, list[ReactionEvent]] = defaultdict(list)
    for e in events:
        by_platform[e.message.channel.platform].append(e)
    for platform, platform_events in by_platform.items():
        polls = await tx.polls.for_messages(platform, [e.message.id for e in platform_events])
        by_message: dict[str, Poll] = {p.message.id: p for p in polls if p.message is not None}
        on_polls = [e for e in platform_events if e.message.id in by_message]
        fresh = await tx.events.claim_many(platform, [e.event_id for e in on_polls], now)
        changes: dict[int, list[ReactionChange]] = defaultdict(list)
        for e in on_polls:
            if e.event_id not in fresh:
                if applied is not None:
                    applied.replays += 1
                continue
            fresh.discard(e.event_id)  # the same id twice in one batch counts once
            poll = by_message[e.message.id]
            option = poll.option_index(e.emoji)
            # An anonymous poll is voted on privately: a reaction on it would be a vote in the open.
            if option is None or not poll.is_open(now) or poll.anonymous:
                continue
            present = isinstance(e, ReactionAdded)
            changes[poll.id].append(ReactionChange(e.user.key, e.user.name, option, present))
        for poll_id, poll_changes in changes.items():
            await tx.polls.record_reactions(poll_id, poll_changes)
            if applied is not None:
                applied.votes += len(poll_changes)
        voted += [p for p in polls if p.id in changes]
        changed.update(changes)
        for channel in dict.fromkeys(e.message.channel for e in platform_events):
            if channel in active:
                continue
            if (group := await tx.groups.get(channel)) is not None:
                await touch(tx, group, now)
            noted.add(channel)
    return noted, VotesRecorded(tuple(voted), changed)
