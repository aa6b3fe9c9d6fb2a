"""`pending`: what needs the member, answered privately. In a group's channel it covers that group;
written to the bot privately, every group whose roster the member is on, on that platform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from core import ballots
from core import pending as rules
from core.ballots import SECRET
from core.commands import Invocation, UsageError
from core.context import Context, Handler, PrivateContext, PrivateHandler
from core.events import Reply
from core.help import usage_reply
from core.lifecycle import Group
from core.paging import Listing
from core.polls import PollKind
from core.ports import StoreTx
from core.refs import UserRef


async def find_pending(
    tx: StoreTx, groups: Sequence[Group], user: UserRef, now: datetime
) -> list[rules.Pending]:
    """What waits for the member in these groups, in at most three reads however many polls are open:
    never one per poll. The polls they voted on are not even read."""
    ids = [g.id for g in groups]
    polls = await tx.polls.open_in(ids, now, not_voted_by=user)
    # An anonymous poll's votes are under keyed hashes the read above cannot match: one more read each.
    voted = await ballots.voted(tx, [p for p in polls if p.anonymous], user)
    polls = [p for p in polls if p.id not in voted]
    consent = [p.id for p in polls if p.kind is PollKind.CONSENT]
    goals = await tx.goals.for_polls(consent) if consent else {}
    reviews = await tx.reviews.open_in(ids, now, not_answered_by=user)
    return rules.pending(groups, polls, goals, reviews)


class PendingService:
    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {("pending",): self._in_group}

    def private_handlers(self) -> Mapping[tuple[str, ...], PrivateHandler]:
        """Written privately, `pending` concerns the member in all their groups, not one group."""
        return {("pending",): self._everywhere}

    async def _in_group(self, ctx: Context, inv: Invocation) -> Reply:
        (found,) = await find_pending(ctx.tx, [ctx.group], ctx.event.user, ctx.now)
        return _page(rules.in_group(found, ctx.prefix), ctx, inv)

    async def _everywhere(self, ctx: PrivateContext, inv: Invocation) -> Reply:
        found = await find_pending(ctx.tx, ctx.groups, ctx.event.user, ctx.now)
        return _page(rules.everywhere(found, ctx.prefix), ctx, inv)


def _page(listing: Listing, ctx: Context | PrivateContext, inv: Invocation) -> Reply:
    """The page asked for, for the member alone; so is the answer to a page that does not exist. What
    it leaves out tells which anonymous polls the member voted on: its post is sealed, never kept."""
    try:
        return Reply(listing.page(inv.args.get("page", 1), inv.spec), private=True, sealed=SECRET)
    except UsageError as error:
        return replace(usage_reply(error, ctx.prefix, ctx.event.options is not None), private=True)
