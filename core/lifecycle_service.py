"""The lifecycle in the chat: phase commands, and the signals that phase advice reads."""

from __future__ import annotations

from collections.abc import Mapping

from core.clock import format_age, format_time
from core.commands import Invocation
from core.context import Context, Handler
from core.events import Reply
from core.goals import GoalStatus
from core.lifecycle import (
    ALL_GOALS_DONE,
    GOAL_ACCEPTED,
    PHASE_FOCUS,
    REVIEW_CLOSED,
    Group,
    Phase,
    SamePhase,
    Signs,
    advice_text,
    advise,
    change_phase,
    welcome,
)
from core.paging import Item, Listing
from core.ports import ChatPort, command_prefix
from core.uow import (
    DomainEvent,
    GoalDecided,
    GoalFinished,
    MemberIntroduced,
    PhaseEntered,
    ReviewClosed,
    UnitOfWork,
)


class LifecycleService:
    def __init__(self, chats: Mapping[str, ChatPort]) -> None:
        self.chats = chats

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("status",): self._status,
            ("phase", "show"): self._phase_show,
            ("phase", "set"): self._phase_set,
            ("phase", "history"): self._phase_history,
        }

    async def advice(self, uow: UnitOfWork, group: Group, *, stalled: bool = False) -> str | None:
        """The phase the group's record points to now, as a suggestion, at most one a week (then noted
        as given); None when there is nothing to suggest."""
        fresh = await uow.tx.groups.by_id(group.id) or group
        since_phase = (await uow.tx.groups.signals_in_phase([group.id])).get(group.id, [])
        introduced = sum(1 for m in await uow.tx.members.roster(group.id) if m.intro)
        signs = Signs(fresh.phase, since_phase, introduced, stalled, fresh.advised_at)
        return await self.give_advice(uow, fresh, signs)

    async def give_advice(self, uow: UnitOfWork, group: Group, signs: Signs) -> str | None:
        """The suggestion these signs lead to, noted as given; None when there is none."""
        suggested = advise(signs, uow.now)
        if suggested is None:
            return None
        await uow.tx.groups.set_advised(group.id, uow.now)
        return advice_text(suggested, signs, command_prefix(self.chats, group.channel.platform))

    async def _advice(self, uow: UnitOfWork, group: Group, signal: str, detail: str) -> str | None:
        """Record a signal; the suggestion it leads to, if any."""
        await uow.tx.groups.record_signal(group.id, signal, uow.now, detail)
        return await self.advice(uow, group)

    # Subscribers -------------------------------------------------------------------------------

    async def on_goal_decided(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        assert isinstance(event, GoalDecided)
        if event.status is GoalStatus.ACCEPTED:
            return await self._advice(uow, event.group, GOAL_ACCEPTED, str(event.goal.id))
        return None

    async def on_goal_finished(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        """When every accepted goal is done, Assessing may be next."""
        assert isinstance(event, GoalFinished)
        if event.status is not GoalStatus.DONE:
            return None
        goals = await uow.tx.goals.in_group(event.group.id)
        if any(g.status is GoalStatus.ACCEPTED for g in goals):
            return None
        return await self._advice(uow, event.group, ALL_GOALS_DONE, "")

    async def on_introduced(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        """A member said a few words about themselves: enough introductions may end Convening."""
        assert isinstance(event, MemberIntroduced)
        if event.group.phase is not Phase.CONVENING:
            return None
        return await self.advice(uow, event.group)

    async def on_review_closed(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        assert isinstance(event, ReviewClosed)
        return await self._advice(uow, event.group, REVIEW_CLOSED, str(event.review.id))

    # Commands ----------------------------------------------------------------------------------

    async def _status(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        return Reply(
            f"Phase: {g.phase.title}, since {format_time(g.phase_since, g.timezone)}"
            f" ({format_age(g.phase_since, ctx.now)}).\n"
            f"Now is the time for {PHASE_FOCUS[g.phase]}."
        )

    async def _phase_show(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        return Reply(f"{g.phase.title} — {PHASE_FOCUS[g.phase]}.\n{welcome(g.phase, ctx.prefix)}")

    async def _phase_set(self, ctx: Context, inv: Invocation) -> Reply:
        to = Phase(inv.args["phase"])
        reason = inv.text("reason")
        user = ctx.event.user
        try:
            change = change_phase(ctx.group, to, at=ctx.now, by=user.name, by_key=user.key, reason=reason)
        except SamePhase:
            return Reply(f"The group is already in {to.title}. Nothing was changed.")
        await ctx.tx.groups.record_phase_change(change)
        why = f" ({reason})" if reason else ""
        assert change.from_phase is not None
        lines = [
            f"{user.name} moved the group from {change.from_phase.title} to {to.title}{why}.",
            welcome(to, ctx.prefix),
        ]
        lines += await ctx.uow.publish(PhaseEntered(ctx.group, change, user))
        return Reply("\n".join(lines))

    async def _phase_history(self, ctx: Context, inv: Invocation) -> Reply:
        lines = []
        for c in await ctx.tx.groups.phase_history(ctx.group.id):
            move = f"{c.from_phase.title} → {c.to_phase.title}" if c.from_phase else c.to_phase.title
            why = f": {c.reason}" if c.reason else ""
            lines.append(Item(f"{format_time(c.at, ctx.group.timezone)}  {move} by {c.by}{why}"))
        listing = Listing(
            what="phase changes",
            head="Phase history (oldest first):",
            items=lines,
            command=f"{ctx.prefix}phase history",
            empty="Phase history (oldest first): none yet.",
            latest_first=True,
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))
