"""The roster in the chat: `join`, `leave`, `members`, and what members do that puts them on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from core.activity import ACTIVITY_RESOLUTION
from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import ReactionAdded, ReactionEvent, Reply
from core.lifecycle import Group
from core.members import CONTRIBUTION_WINDOW, Member, Step, local, on_activity, on_join, roster_entries
from core.paging import Item, Listing
from core.refs import ChannelRef, UserRef
from core.uow import MemberIntroduced, MembersArrived, UnitOfWork

# Members whose activity in a channel this process noted, at most this many remembered.
MAX_NOTED = 10_000


class MemberService:
    def __init__(self) -> None:
        # (channel, member key) -> when their reaction there was noted, for members the store knew then:
        # their next reactions within ACTIVITY_RESOLUTION skip the store (votes come in bursts). Members
        # added by a batch are remembered only once a later batch finds them, so a batch rolled back
        # never hides a newcomer.
        self._noted: dict[tuple[ChannelRef, str], datetime] = {}

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("join",): self._join,
            ("leave",): self._leave,
            ("members",): self._members,
        }

    # What members do ---------------------------------------------------------------------------

    async def seen(self, uow: UnitOfWork, group: Group, user: UserRef) -> None:
        """A member wrote or ran a command in the group's channel: a first time puts them on the roster;
        a member on it is active now."""
        member = await uow.tx.members.get(group.id, user.key)
        step = on_activity(member)
        if step is Step.ADD:
            await self._arrive(uow, group, user, None, step)
        elif step is Step.TOUCH:
            assert member is not None
            await uow.tx.members.record_activity(group.id, [user.key], uow.now)
            if user.display and member.name != user.name:
                await uow.tx.members.save_settings(replace(member, name=user.name))

    async def reacted(self, uow: UnitOfWork, events: Sequence[ReactionEvent]) -> None:
        """Members reacted in groups' channels (votes or not): the first reaction puts a member on the
        roster. Taking a reaction back is no activity."""
        now = uow.now
        by_channel: dict[ChannelRef, dict[str, UserRef]] = {}
        for event in events:
            if not isinstance(event, ReactionAdded):
                continue
            noted = self._noted.get((event.message.channel, event.user.key))
            if noted is None or now - noted >= ACTIVITY_RESOLUTION:
                by_channel.setdefault(event.message.channel, {})[event.user.key] = event.user
        if len(self._noted) > MAX_NOTED:
            self._noted.clear()
        for channel, users in by_channel.items():
            group = await uow.tx.groups.get(channel)
            if group is None:
                continue
            known = await uow.tx.members.record_activity(group.id, users.keys(), now)
            self._noted.update(((channel, key), now) for key in known)
            newcomers = [user for key, user in users.items() if key not in known]
            if newcomers:  # a burst of first votes: added, welcomed and paired together
                added = await uow.tx.members.add_many(group.id, newcomers, now)
                await uow.publish(MembersArrived(group, tuple(added), first_time=True))

    async def joined(self, uow: UnitOfWork, group: Group, user: UserRef) -> None:
        """The platform says a member joined the channel (a room join)."""
        member = await uow.tx.members.get(group.id, user.key)
        step = on_join(member)
        if step is not Step.TOUCH:
            await self._arrive(uow, group, user, member, step)

    async def left(self, uow: UnitOfWork, group: Group, user: UserRef) -> None:
        """The platform says a member left the channel: off the roster, with their history kept."""
        member = await uow.tx.members.get(group.id, user.key)
        if member is not None and member.on_roster:
            await uow.tx.members.set_left(member.id, uow.now)

    async def _arrive(
        self, uow: UnitOfWork, group: Group, user: UserRef, member: Member | None, step: Step, intro: str = ""
    ) -> tuple[Member, list[str]]:
        """Put a newcomer on the roster, or a former member back on it, and tell whom it concerns: the
        member as they are now, and the lines the subscribers returned."""
        tx = uow.tx
        if step is Step.ADD:
            member = await tx.members.add(group.id, user, uow.now, intro)
        else:
            assert member is not None and step is Step.REJOIN
            await tx.members.set_left(member.id, None)
            await tx.members.record_activity(group.id, [member.key], uow.now)
            name = user.name if user.display else member.name
            intro = intro or member.intro
            member = replace(member, left_at=None, last_active_at=uow.now, name=name, intro=intro)
            await tx.members.save_settings(member)
        return member, await uow.publish(MembersArrived(group, (member,), first_time=step is Step.ADD))

    # Commands ----------------------------------------------------------------------------------

    async def _join(self, ctx: Context, inv: Invocation) -> Reply:
        intro, user, where = inv.text("intro"), ctx.event.user, ctx.group.channel.name
        member = await ctx.tx.members.get(ctx.group.id, user.key)
        step = on_join(member)
        if step is Step.TOUCH:
            assert member is not None
            await ctx.tx.members.record_activity(ctx.group.id, [user.key], ctx.now)
            if not intro:
                since = local(member.joined_at, ctx.group.timezone, "%Y-%m-%d")
                return Reply(
                    f"You are on the roster of {where} already, since {since}. To say a few words about"
                    f" yourself: {ctx.prefix}join <intro>."
                )
            updated = replace(member, name=user.name, intro=intro)
            await ctx.tx.members.save_settings(updated)
            notes = await ctx.uow.publish(MemberIntroduced(ctx.group, updated))
            return Reply("\n".join(["Thank you: your introduction is updated.", *notes]))
        arrived, notes = await self._arrive(ctx.uow, ctx.group, user, member, step, intro)
        if intro:
            notes += await ctx.uow.publish(MemberIntroduced(ctx.group, arrived))
        if step is Step.ADD:
            lines = [f"You are on the roster of {where} now, {user.name}."]
        else:
            lines = [f"Welcome back, {user.name}: you are on the roster of {where} again, with your history."]
        if not intro and not (member and member.intro):
            lines.append(f"Say a few words about yourself whenever you like: {ctx.prefix}join <intro>.")
        return Reply("\n".join(lines + notes))

    async def _leave(self, ctx: Context, inv: Invocation) -> Reply:
        member = await ctx.tx.members.get(ctx.group.id, ctx.event.user.key)
        where = ctx.group.channel.name
        if member is None or not member.on_roster:
            return Reply(f"You are not on the roster of {where}. Nothing was changed.")
        await ctx.tx.members.set_left(member.id, ctx.now)
        return Reply(
            f"You have left the roster of {where}. What you did here stays in the group's record;"
            f" {ctx.prefix}join brings you back."
        )

    async def _members(self, ctx: Context, inv: Invocation) -> Reply:
        setting, value = inv.args.get("setting"), inv.args.get("value")
        if setting is None and value is not None:
            raise UsageError(
                f"Say {ctx.prefix}members private {value} to be listed by name only (on) or not (off).",
                inv.spec,
            )
        if setting is not None:
            return await self._private(ctx, value)
        group = ctx.group
        roster = await ctx.tx.members.roster(group.id)
        did = await ctx.tx.members.contributions(group.id, ctx.now - CONTRIBUTION_WINDOW)
        listing = Listing(
            what="members",
            head=f"Members of {group.channel.name} ({len(roster)}; times in {group.timezone}):",
            items=[Item(entry) for entry in roster_entries(roster, did, group.timezone)],
            command=f"{ctx.prefix}members",
            empty=f"Nobody is on the roster of {group.channel.name}. Say {ctx.prefix}join to be the first.",
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))

    async def _private(self, ctx: Context, value: str | None) -> Reply:
        member = await ctx.tx.members.get(ctx.group.id, ctx.event.user.key)
        if member is None or not member.on_roster:
            return Reply(f"You are not on the roster of {ctx.group.channel.name}: {ctx.prefix}join first.")
        if value is None:
            if member.private:
                return Reply(f"The roster lists you by name only. {ctx.prefix}members private off undoes it.")
            return Reply(
                f"The roster lists you with your activity. {ctx.prefix}members private on lists you by"
                " name only."
            )
        private = value == "on"
        await ctx.tx.members.save_settings(replace(member, private=private))
        if private:
            return Reply("From now on the roster lists you by name only.")
        return Reply("From now on the roster lists you with your activity again.")
