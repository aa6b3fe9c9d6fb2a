"""Newcomers in the chat: their welcome, at once or shared with the joins after it, and their buddy."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import groupby

from core.commands import Invocation
from core.context import Context, Handler
from core.events import Reply
from core.goals import GoalStatus
from core.lifecycle import Group
from core.members import ACTIVE_WITHIN, Member, buddies_in_turn
from core.newcomers import GroupPicture, welcome_text, window_end
from core.outbox import Post, PostKind
from core.ports import ChatPort, StoreTx, command_prefix
from core.schedules import ScheduleKind
from core.uow import DomainEvent, MembersArrived, UnitOfWork, Work

log = logging.getLogger(__name__)

BATCH = 500
SCHEDULE_NAMES = {
    ScheduleKind.NUDGE: "a nudge to reflect",
    ScheduleKind.CHECKIN: "the weekly check-in",
    ScheduleKind.DIGEST: "the weekly digest",
}


async def picture(tx: StoreTx, group: Group) -> GroupPicture:
    """What a welcome says about the group now."""
    goals = [g.text for g in await tx.goals.in_group(group.id) if g.status is GoalStatus.ACCEPTED]
    upcoming = sorted(
        (s for s in await tx.schedules.in_group(group.id) if not s.paused and s.next_due_at is not None),
        key=lambda s: (s.next_due_at, s.id),
    )
    next_up = None
    if upcoming and upcoming[0].next_due_at is not None:
        next_up = (SCHEDULE_NAMES[upcoming[0].kind], upcoming[0].next_due_at)
    return GroupPicture(group.phase, group.phase_since, group.timezone, goals, next_up, group.welcome_text)


class NewcomerService:
    def __init__(self, work: Work, chats: Mapping[str, ChatPort], platforms: Collection[str]) -> None:
        self.work = work
        self.chats = chats
        self.platforms = platforms

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("welcome", "set"): self._set,
            ("welcome", "show"): self._show,
            ("welcome", "reset"): self._reset,
            ("buddy",): self._buddy,
        }

    def _prefix(self, group: Group) -> str:
        return command_prefix(self.chats, group.channel.platform)

    async def _welcome(self, tx: StoreTx, group: Group, members: Sequence[Member], now: datetime) -> Post:
        fresh = await tx.groups.by_id(group.id) or group  # the phase and welcome text as they are now
        text = welcome_text(
            [m.name for m in members],
            all(m.intro for m in members),
            await picture(tx, fresh),
            now,
            self._prefix(fresh),
        )
        return Post(PostKind.SEND, fresh.channel, text, group_id=fresh.id)

    # Subscribers -------------------------------------------------------------------------------

    async def on_members_arrived(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Welcome the members, at once or with the joins that follow (see core/newcomers.py): members
        who arrive together share a welcome either way. A first arrival gets a buddy too, if an active
        one offers."""
        assert isinstance(event, MembersArrived)
        group, arrived, now = event.group, event.members, uow.now
        tx = uow.tx
        if await tx.groups.claim_welcome(group.id, now, window_end(now)):
            uow.post(await self._welcome(tx, group, arrived, now))
        else:
            current = await tx.groups.by_id(group.id)
            assert current is not None and current.welcome_until is not None
            await tx.members.hold_welcomes([m.id for m in arrived], current.welcome_until)
        if event.first_time:
            await self._pair(uow, group, arrived)

    async def _pair(self, uow: UnitOfWork, group: Group, newcomers: Sequence[Member]) -> None:
        """Each newcomer gets the buddy whose turn it is; newcomers who arrive together go round them."""
        volunteers = await uow.tx.members.buddies(group.id, uow.now - ACTIVE_WITHIN)
        arriving = {m.key for m in newcomers}
        turn = [b for b in buddies_in_turn(volunteers, uow.now) if b.key not in arriving]
        for index, newcomer in enumerate(newcomers if turn else ()):
            buddy = turn[index % len(turn)]
            await uow.tx.members.pair(newcomer.id, buddy, uow.now)
            self._tell_pair(uow, group, newcomer, buddy)

    def _tell_pair(self, uow: UnitOfWork, group: Group, newcomer: Member, buddy: Member) -> None:
        where, prefix = group.channel.name, self._prefix(group)
        to_newcomer = (
            f"Hello {newcomer.name}, and welcome to {where}! {buddy.name} offered to be a buddy for"
            f" newcomers there and is yours: ask them anything about the group and how it works."
            f" {prefix}buddy shows your buddy."
        )
        to_buddy = (
            f"{newcomer.name} has just joined {where}, and you are their buddy: say hello, and help them"
            f" find their way in. {prefix}buddy shows whose buddy you are."
        )
        uow.post(Post(PostKind.DIRECT, group.channel, to_newcomer, user=newcomer.user, group_id=group.id))
        # The buddy did not ask for this message now: it waits out the group's quiet hours.
        to_them = Post(PostKind.DIRECT, group.channel, to_buddy, user=buddy.user, group_id=group.id)
        uow.post(to_them, unprompted=True)

    # Time --------------------------------------------------------------------------------------

    async def welcome_due(self, now: datetime) -> int:
        """Post the shared welcomes whose window has ended: one message per group, however many joined
        in its window. Returns how many."""
        async with self.work(now, unprompted=True) as uow:
            waiting: list[Member] = []
            while True:
                claimed = await uow.tx.members.claim_welcomes(now, BATCH, self.platforms)
                waiting += [m for m in claimed if m.on_roster]  # who left meanwhile is not welcomed
                if len(claimed) < BATCH:
                    break
            waiting.sort(key=lambda m: (m.group_id, m.joined_at, m.id))
            groups = await uow.tx.groups.many(sorted({m.group_id for m in waiting}))
            posted = 0
            for group_id, members in groupby(waiting, key=lambda m: m.group_id):
                uow.post(await self._welcome(uow.tx, groups[group_id], list(members), now))
                posted += 1
        return posted

    # Commands ----------------------------------------------------------------------------------

    async def _set(self, ctx: Context, inv: Invocation) -> Reply:
        await ctx.tx.groups.set_welcome_text(ctx.group.id, inv.text("text"))
        return Reply(
            "Newcomers' welcome now starts with your words."
            f" See the whole of it with {ctx.prefix}welcome show."
        )

    async def _reset(self, ctx: Context, inv: Invocation) -> Reply:
        await ctx.tx.groups.set_welcome_text(ctx.group.id, "")
        return Reply("Newcomers' welcome is back to Peerbot's own words.")

    async def _show(self, ctx: Context, inv: Invocation) -> Reply:
        group = ctx.group
        text = welcome_text(["<newcomer>"], False, await picture(ctx.tx, group), ctx.now, ctx.prefix)
        note = (
            ""
            if group.welcome_text
            else f"\n(The group has no words of its own in it yet: a facilitator can add them with"
            f" {ctx.prefix}welcome set <text>.)"
        )
        return Reply(f"This is how {group.channel.name} welcomes a newcomer now:\n{text}{note}")

    async def _buddy(self, ctx: Context, inv: Invocation) -> Reply:
        tx, group, prefix = ctx.tx, ctx.group, ctx.prefix
        member = await tx.members.get(group.id, ctx.event.user.key)
        if member is None or not member.on_roster:
            return Reply(f"You are not on the roster of {group.channel.name}: {prefix}join first.")
        value = inv.args.get("value")
        if value is not None:
            await tx.members.save_settings(replace(member, buddy=value == "on"))
            if value == "on":
                return Reply(
                    f"Thank you! You offer to be a buddy for newcomers to {group.channel.name}. Active"
                    " buddies take turns; you will hear by direct message when a newcomer is yours."
                )
            return Reply("You no longer get newcomers to buddy. Those you have stay yours.")
        lines = []
        if member.buddy_key:
            buddy = await tx.members.get(group.id, member.buddy_key)
            if buddy is not None and buddy.on_roster:
                lines.append(f"Your buddy in {group.channel.name} is {buddy.name}.")
            else:
                lines.append(f"Your buddy in {group.channel.name} has left the roster.")
        theirs = [m.name for m in await tx.members.roster(group.id) if m.buddy_key == member.key]
        if theirs:
            lines.append(f"You are the buddy of {', '.join(theirs)}.")
        if not lines:
            lines.append(f"You have no buddy in {group.channel.name}.")
        if member.buddy:
            lines.append(f"You offer to be a buddy for newcomers; {prefix}buddy off stops it.")
        else:
            lines.append(f"To offer to be a buddy for newcomers: {prefix}buddy on.")
        return Reply("\n".join(lines))
