"""A batch of inbound events from one read of a platform: a Matrix /sync, a burst of Discord reactions.

Events are applied in order. A run of reactions goes in together, so group commit writes it in one
transaction. The adapter's state that covers the batch (a sync token) is saved with the last of them, or
after the batch, never before the events it covers: a batch replayed after a crash changes nothing twice,
since each event is applied at most once. Posts the adapter has to make on its own (a notice to a room it
will not serve) are queued in the transaction that saves the state, so the state can say they were
queued, and a replayed batch queues them once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from core import dead_letters
from core.events import InboundEvent, ReactionAdded, ReactionEvent, ReactionRemoved, Reply
from core.outbox import Post
from core.ports import StateChanges
from core.uow import Work
from core.votes import VoteRecorder

Handle = Callable[[InboundEvent], Awaitable[Reply | None]]


class Batches:
    """Applies batches: reactions through the vote recorder, every other event through `handle`."""

    def __init__(self, work: Work, votes: VoteRecorder, handle: Handle) -> None:
        self.work = work
        self.votes = votes
        self.handle = handle

    async def apply(
        self, events: Sequence[InboundEvent], state: StateChanges | None, posts: Sequence[Post] = ()
    ) -> list[Reply | None]:
        """A reply (or None) per event, in order. A state value of None deletes the key. An event that
        keeps failing is recorded as failed and skipped: the others are applied, and the state moves on."""
        replies: list[Reply | None] = []
        run: list[ReactionEvent] = []
        for event in events:
            if isinstance(event, ReactionAdded | ReactionRemoved):
                run.append(event)
                continue
            if run:
                replies += await self._reactions(run, None)
                run = []
            replies.append(await self.handle(event))
        if run and not posts:
            replies += await self._reactions(run, state)
            return replies
        if run:
            replies += await self._reactions(run, None)
        if state or posts:
            async with self.work() as uow:
                if state:
                    await state.save(uow.tx)
                for post in posts:
                    uow.post(post)
        return replies

    async def _reactions(self, run: list[ReactionEvent], state: StateChanges | None) -> list[Reply | None]:
        """Apply a run of reactions together, the state with the last one."""
        states = [None] * (len(run) - 1) + [state]
        try:
            await asyncio.gather(*(self.votes.submit(r, s) for r, s in zip(run, states, strict=True)))
        except Exception:
            # One bad event fails its whole group commit: apply them one at a time to find it.
            for reaction, s in zip(run, states, strict=True):
                await self._one(reaction, s)
        return [None] * len(run)

    async def _one(self, reaction: ReactionEvent, state: StateChanges | None) -> None:
        try:
            await dead_letters.attempts(lambda: self.votes.submit(reaction, state), reaction)
        except dead_letters.GaveUp as gave_up:
            async with self.work() as uow:
                await dead_letters.record(uow.tx, reaction, gave_up.failure, uow.now)
                if state:
                    await state.save(uow.tx)
