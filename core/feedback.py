"""Feedback polls: opening them as reaction messages, answering for them, closing them on time."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from core import ballots
from core.clock import format_time
from core.commands import Invocation, UsageError
from core.context import Context, Handler, PrivateContext, PrivateHandler
from core.events import Reply
from core.lifecycle import CLOSING, Group
from core.outbox import Post, PostKind
from core.paging import one_line
from core.polls import (
    SHOWN_LABEL,
    Poll,
    PollKind,
    PollOption,
    PollRequest,
    Tally,
    open_polls_listing,
    poll_request,
    render_poll,
    render_results,
    tally,
)
from core.ports import ChatPort, StoreTx
from core.refs import UserRef
from core.uow import DomainEvent, PollClosed, UnitOfWork, Work

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
BUTTON_LABEL = 80  # Discord's cap on a button's label


class NoSuchPoll(UsageError):
    pass


class PollService:
    def __init__(self, work: Work, chats: Mapping[str, ChatPort]) -> None:
        self.work = work
        self.chats = chats
        self.platforms = chats.keys()  # the platforms this process serves (a live view)

    def handlers(self) -> dict[tuple[str, ...], Handler]:
        return {
            ("poll", "create"): self._create,
            ("poll", "list"): self._list,
            ("poll", "close"): self._close,
            ("poll", "results"): self._results,
            ("pulse",): self._pulse,
            ("vote",): self._vote,
        }

    def private_handlers(self) -> dict[tuple[str, ...], PrivateHandler]:
        return {("vote",): self._vote_privately}

    def _private_vote(self, platform: str, poll: Poll) -> str:
        """How to vote privately on this platform: buttons where commands are answered in place
        (Discord), else a command written to the bot directly."""
        chat = self.chats.get(platform)
        if chat is None or chat.interactive_replies:
            return "press an option's button below (again to take it back)"
        command = f"{chat.command_prefix}vote {poll.id} <number>"
        return f"write {command} to me directly (the same again takes it back)"

    async def open(
        self,
        uow: UnitOfWork,
        group: Group,
        kind: PollKind,
        request: PollRequest,
        author: UserRef,
        *,
        remind_at: datetime | None = None,
    ) -> Poll:
        """Store the poll and queue its message, with a reaction for each option, to become its message;
        its reminders are due at `remind_at`."""
        poll = await uow.tx.polls.create(group.id, kind, request, author, uow.now, remind_at)
        if poll.anonymous:  # no reactions: everyone would see who reacted
            text = render_poll(poll, group.timezone, self._private_vote(group.channel.platform, poll))
            labels = tuple(
                one_line(f"{i}. {o.emoji} {o.label}", BUTTON_LABEL) for i, o in enumerate(poll.options, 1)
            )
            post = Post(
                PostKind.SEND, group.channel, text, poll_id=poll.id, group_id=group.id, buttons=labels
            )
        else:
            post = Post(
                PostKind.SEND,
                group.channel,
                render_poll(poll, group.timezone),
                reactions=tuple(o.emoji for o in poll.options[:MAX_REACTIONS]),
                poll_id=poll.id,
                group_id=group.id,
            )
        uow.post(post)
        return poll

    async def close(
        self, uow: UnitOfWork, poll: Poll, *, announce: bool = True, early: str = "", due: bool = False
    ) -> bool:
        """Close the poll once (whoever gets here first wins) and publish its final tally; `early` says
        why it closes before its time, for the result. `due`: the tick closes it, and passes it over
        when another process is at it."""
        # An anonymous poll's key goes with it.
        if not await uow.tx.polls.close(poll.id, uow.now, skip_locked=due):
            return False
        if poll.anonymous:  # confirmations of its votes not sent yet: they would tie members to it
            await uow.tx.outbox.forget_sealed(ballots.sealed(poll))
        result = tally(poll, await uow.tx.polls.reactions(poll.id))
        await uow.publish(PollClosed(poll, result, announce, early))
        return True

    async def announce(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Subscriber: a closed poll's final results go to its channel (consent polls: see goals)."""
        assert isinstance(event, PollClosed)
        if not event.announce or event.poll.kind is PollKind.CONSENT:
            return
        group = await uow.tx.groups.by_id(event.poll.group_id)
        assert group is not None
        text = render_results(event.poll, event.result, final=True)
        uow.post(Post(PostKind.SEND, group.channel, text, group_id=group.id))

    async def close_due(self, now: datetime, limit: int = 500) -> int:
        """Close every poll whose time has come, including those that passed while the bot was down."""
        closed = 0
        while True:
            async with self.work(now) as uow:
                due = await uow.tx.polls.due(now, limit, self.platforms)
            before = closed
            for poll in due:
                try:
                    async with self.work(now, unprompted=True) as uow:
                        closed += await self.close(uow, poll, due=True)
                except Exception:
                    log.exception("could not close poll %d", poll.id)
            # A full batch that another process is closing (or that failed): the next tick looks again.
            if len(due) < limit or closed == before:
                return closed

    @staticmethod
    async def find(tx: StoreTx, group: Group, poll_id: int) -> Poll:
        poll = await tx.polls.get(group.id, poll_id)
        if poll is None:
            raise NoSuchPoll(f"There is no poll {poll_id} in this channel.")
        return poll

    @staticmethod
    async def current_tally(tx: StoreTx, poll: Poll) -> Tally:
        return tally(poll, await tx.polls.reactions(poll.id))

    # Commands ----------------------------------------------------------------------------------

    async def _create(self, ctx: Context, inv: Invocation) -> Reply:
        try:
            request = poll_request(
                inv.text("question"),
                inv.items("option"),
                multiple=inv.flag("multiple"),
                hidden=inv.flag("hidden"),
                duration=inv.args.get("closes"),
                anonymous=inv.flag("anonymous"),
            )
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        poll = await self.open(ctx.uow, ctx.group, PollKind.POLL, request, ctx.event.user)
        closes = format_time(poll.closes_at, ctx.group.timezone)
        if poll.anonymous:
            return Reply(f"Anonymous poll {poll.id} is open until {closes}. Members vote privately.")
        return Reply(f"Poll {poll.id} is open until {closes}. React on it to vote.")

    async def _pulse(self, ctx: Context, inv: Invocation) -> Reply:
        request = replace(PULSE, anonymous=inv.flag("anonymous"))
        poll = await self.open(ctx.uow, ctx.group, PollKind.PULSE, request, ctx.event.user)
        if poll.anonymous:
            return Reply(f"Anonymous pulse check {poll.id} is open for 24 hours: members vote privately.")
        return Reply(f"Pulse check {poll.id} is open for 24 hours: 🟢 🟡 🔴.")

    async def _vote(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.find(ctx.tx, ctx.group, inv.args["poll"])
        return await self._cast(ctx.uow, poll, ctx.event.user, inv)

    async def _vote_privately(self, ctx: PrivateContext, inv: Invocation) -> Reply:
        """A vote written to the bot directly: on the poll of that number in one of the member's groups."""
        poll_id = inv.args["poll"]
        for group in ctx.groups:
            if (poll := await ctx.uow.tx.polls.get(group.id, poll_id)) is not None:
                return await self._cast(ctx.uow, poll, ctx.event.user, inv)
        raise NoSuchPoll(
            f"There is no poll {poll_id} in a group whose roster you are on. Take part in the group's"
            f" channel first, or say {ctx.chat.command_prefix}join there.",
            inv.spec,
        )

    async def _cast(self, uow: UnitOfWork, poll: Poll, user: UserRef, inv: Invocation) -> Reply:
        if not poll.anonymous:
            raise UsageError(f"Poll {poll.id} is not anonymous: vote by reacting on its message.", inv.spec)
        number = inv.args["option"]
        if not 1 <= number <= len(poll.options):
            raise UsageError(f"Poll {poll.id} has options 1 to {len(poll.options)}.", inv.spec)
        outcome = await ballots.cast(uow.tx, poll, user, number - 1) if poll.is_open(uow.now) else None
        if outcome is None:
            return Reply(f"Poll {poll.id} is closed: it takes no more votes.", is_error=True, private=True)
        option = poll.options[number - 1]
        chosen = f"{number}. {option.emoji} {one_line(option.label, SHOWN_LABEL)}"
        if outcome is ballots.Cast.TAKEN_BACK:
            text = f"Your vote for {chosen} on poll {poll.id} is taken back."
        else:
            text = (
                f"Your vote on poll {poll.id} is counted: {chosen}. Nobody sees it; the same vote again"
                " takes it back."
            )
        return Reply(text, private=True, sealed=ballots.sealed(poll))

    async def _close(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.find(ctx.tx, ctx.group, inv.args["id"])
        if poll.closed_at is not None:
            return Reply(
                f"Poll {poll.id} closed already, at {format_time(poll.closed_at, ctx.group.timezone)}."
            )
        own = poll.author_key == ctx.event.user.key and poll.kind is not PollKind.CONSENT
        if not (own or ctx.is_facilitator):
            return ctx.refuse(inv, owner=poll.author_name, facilitators_only=poll.kind is PollKind.CONSENT)
        await self.close(ctx.uow, poll)
        await ctx.tx.groups.record_signal(ctx.group.id, CLOSING, ctx.now, ctx.event.user.key)
        return Reply(f"Poll {poll.id} is closed.")

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        """The open polls, with the voters of each so far, in a fixed number of reads."""
        group = [ctx.group.id]
        polls = await ctx.tx.polls.open_in(group, ctx.now)
        voters = await ctx.tx.polls.open_voter_counts(group, ctx.now)
        consent = [p.id for p in polls if p.kind is PollKind.CONSENT]
        goals = await ctx.tx.goals.for_polls(consent) if consent else {}
        listing = open_polls_listing(ctx.group, polls, goals, voters, ctx.prefix)
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))

    async def _results(self, ctx: Context, inv: Invocation) -> Reply:
        poll = await self.find(ctx.tx, ctx.group, inv.args["id"])
        final = poll.closed_at is not None
        return Reply(render_results(poll, await self.current_tally(ctx.tx, poll), final=final))
