"""Feedback polls: opening them as reaction messages, answering for them, closing them on time."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from core.clock import Clock, format_time
from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import Reply
from core.lifecycle import Group
from core.polls import (
    Poll,
    PollKind,
    PollOption,
    PollRequest,
    Tally,
    parse_poll,
    render_poll,
    render_results,
    tally,
)
from core.ports import ChatPort, Outbound, Store
from core.refs import UserRef

log = logging.getLogger(__name__)

PULSE = PollRequest(
    "How is the group doing?",
    (
        PollOption("🟢", "going well"),
        PollOption("🟡", "so-so, something needs attention"),
        PollOption("🔴", "stuck or struggling"),
    ),
    duration=timedelta(hours=24),
)
MAX_REACTIONS = 20  # Discord's cap on distinct reactions per message

# Called when a poll of a kind closes; returns the message to post instead of the plain results.
Closer = Callable[[Poll, Tally, datetime], Awaitable[str | None]]


class NoSuchPoll(UsageError):
    pass


class PollService:
    def __init__(self, store: Store, clock: Clock, chats: Mapping[str, ChatPort]) -> None:
        self.store = store
        self.clock = clock
        self.chats = chats
        self.closers: dict[PollKind, Closer] = {}

    def handlers(self) -> dict[tuple[str, ...], Handler]:
        return {
            ("poll", "create"): self._create,
            ("poll", "close"): self._close,
            ("poll", "results"): self._results,
            ("pulse",): self._pulse,
        }

    async def open(
        self, group: Group, kind: PollKind, request: PollRequest, author: UserRef, now: datetime
    ) -> Poll:
        """Store the poll, post its message, add each option's reaction. Nothing stays if posting fails."""
        chat = self.chats[group.channel.platform]
        async with self.store.transaction() as tx:
            poll = await tx.create_poll(group.id, kind, request, author, now)
        try:
            message = await chat.send(group.channel, Outbound(render_poll(poll, group.timezone)))
        except Exception:
            async with self.store.transaction() as tx:
                await tx.delete_poll(poll.id)
            raise
        async with self.store.transaction() as tx:
            await tx.set_poll_message(poll.id, message)
        for option in poll.options[:MAX_REACTIONS]:
            try:
                await chat.react(message, option.emoji)
            except Exception:  # members can still add the reaction themselves
                log.warning("could not add reaction %s to poll %d", option.emoji, poll.id, exc_info=True)
        return poll

    async def close(self, poll: Poll, now: datetime, *, announce: bool = True) -> bool:
        """Close the poll once (whoever gets here first wins) and post its final results."""
        async with self.store.transaction() as tx:
            if not await tx.close_poll(poll.id, now):
                return False
            reactions = await tx.poll_reactions(poll.id)
        if not announce:
            return True
        result = tally(poll, reactions)
        closer = self.closers.get(poll.kind)
        text = await closer(poll, result, now) if closer else None
        channel = poll.message.channel if poll.message else None
        if channel is None:
            return True
        await self.chats[channel.platform].send(
            channel, Outbound(text or render_results(poll, result, final=True))
        )
        return True

    async def close_due(self, now: datetime, limit: int = 500) -> int:
        """Close every poll whose time has come, including those that passed while the bot was down."""
        closed = 0
        while True:
            async with self.store.transaction() as tx:
                due = await tx.due_polls(now, limit)
            for poll in due:
                try:
                    closed += await self.close(poll, now)
                except Exception:
                    log.exception("could not close poll %d", poll.id)
            if len(due) < limit:
                return closed

    async def find(self, group: Group, poll_id: int) -> Poll:
        async with self.store.transaction() as tx:
            poll = await tx.get_poll(group.id, poll_id)
        if poll is None:
            raise NoSuchPoll(f"There is no poll {poll_id} in this channel.")
        return poll

    async def current_tally(self, poll: Poll) -> Tally:
        async with self.store.transaction() as tx:
            return tally(poll, await tx.poll_reactions(poll.id))

    # Commands ----------------------------------------------------------------------------------

    async def _create(self, ctx: Context, inv: Invocation) -> Reply:
        try:
            request = parse_poll(inv.text("poll"))
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        poll = await self.open(ctx.group, PollKind.POLL, request, ctx.event.user, ctx.now)
        closes = format_time(poll.closes_at, ctx.group.timezone)
        return Reply(f"Poll {poll.id} is open until {closes}. React on it to vote.")

    async def _pulse(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.open(ctx.group, PollKind.PULSE, PULSE, ctx.event.user, ctx.now)
        return Reply(f"Pulse check {poll.id} is open for 24 hours: 🟢 🟡 🔴.")

    async def _close(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.find(ctx.group, inv.args["id"])
        if poll.closed_at is not None:
            return Reply(
                f"Poll {poll.id} closed already, at {format_time(poll.closed_at, ctx.group.timezone)}."
            )
        facilitator = await ctx.facilitates()
        own = poll.author_key == ctx.event.user.key and poll.kind is not PollKind.CONSENT
        if not (own or facilitator):
            who = "a facilitator" if poll.kind is PollKind.CONSENT else "its author or a facilitator"
            return Reply(f"Only {who} can close poll {poll.id} early. Nothing was changed.", is_error=True)
        await self.close(poll, ctx.now)
        return Reply(f"Poll {poll.id} is closed.")

    async def _results(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.find(ctx.group, inv.args["id"])
        final = poll.closed_at is not None
        return Reply(render_results(poll, await self.current_tally(poll), final=final))
