"""Shared goals: proposing them, deciding them by consent, and keeping the group's roadmap."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from core.clock import format_time
from core.commands import Invocation, UsageError
from core.concerns import blockers_words, concerns_heard
from core.context import Context, Handler
from core.events import Reply
from core.feedback import PollService
from core.forgetting import ANONYMOUS_PREFIX
from core.goals import (
    CONSENT_OPTIONS,
    DEFAULT_QUORUM,
    DEFAULT_WINDOW,
    MAX_GOAL,
    SHOWN_BY_FILTER,
    Goal,
    GoalStatus,
    blocking_votes,
    decide,
    decided_early,
    decision_line,
    early_note,
    render_decision,
    reshape_label,
    roadmap,
)
from core.lifecycle import CLOSING, Group
from core.outbox import Post, PostKind, Thread
from core.paging import Item, Listing
from core.polls import Poll, PollKind, PollReaction, PollRequest, render_results, tally
from core.ports import StoreTx
from core.refs import UserRef
from core.reminders import percent, remind_time
from core.uow import DomainEvent, GoalDecided, GoalFinished, PollClosed, UnitOfWork, VotesRecorded

AMENDABLE = (GoalStatus.PROPOSED, GoalStatus.BLOCKED)
_REFLECTION_REF = re.compile(r"^r(\d{1,12})$", re.IGNORECASE)
MAX_QUORUM = 100
MAX_WINDOW = timedelta(days=32)


@dataclass(frozen=True, slots=True)
class GoalRules:
    """The deployment's defaults; each group may override them with `goal rules`."""

    quorum: int = DEFAULT_QUORUM
    window: timedelta = DEFAULT_WINDOW

    def for_group(self, group: Group) -> GoalRules:
        return GoalRules(
            group.goal_quorum if group.goal_quorum is not None else self.quorum,
            group.decision_window if group.decision_window is not None else self.window,
        )


def _user(vote: PollReaction) -> UserRef | None:
    """Who cast a vote, to write to them; None for a forgotten member."""
    if vote.user_key.startswith(ANONYMOUS_PREFIX):
        return None
    platform, _, user_id = vote.user_key.partition(":")
    return UserRef(platform, user_id, vote.user_name)


def _hours(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours:g} hours"


class GoalService:
    def __init__(self, polls: PollService, rules: GoalRules) -> None:
        self.polls = polls
        self.rules = rules

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("goal", "propose"): self._propose,
            ("goal", "amend"): self._amend,
            ("goal", "list"): self._list,
            ("goal", "show"): self._show,
            ("goal", "done"): self._done,
            ("goal", "drop"): self._drop,
            ("goal", "rules"): self._rules,
        }

    @staticmethod
    async def _find(tx: StoreTx, group: Group, goal_id: int) -> Goal:
        goal = await tx.goals.get(group.id, goal_id)
        if goal is None:
            raise UsageError(f"There is no goal {goal_id} in this channel.")
        return goal

    async def decide(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Subscriber: a consent poll closed, so its goal is decided, in the same transaction."""
        assert isinstance(event, PollClosed)
        poll = event.poll
        if poll.kind is not PollKind.CONSENT or not event.announce:
            return
        group = await uow.tx.groups.by_id(poll.group_id)
        assert group is not None
        goal = await uow.tx.goals.for_poll(poll.id)
        post = Post(PostKind.SEND, group.channel, "", group_id=group.id)
        if goal is None or goal.status is not GoalStatus.PROPOSED:
            text = render_results(poll, event.result, final=True)
        else:
            rules = self.rules.for_group(group)
            decision = decide(event.result, rules.quorum)
            await uow.tx.goals.set_status(goal.id, decision.status, uow.now)
            notes = await uow.publish(GoalDecided(group, goal, decision.status))
            heard = concerns_heard((await uow.tx.concerns.of_goals([goal.id])).get(goal.id, []))
            text = "\n".join(
                [
                    render_decision(goal, decision, rules.quorum),
                    *([heard] if heard else []),
                    *([event.early] if event.early else []),
                    *notes,
                ]
            )
            # The decision goes into the poll's thread, the channel gets its outcome in one line.
            outcome = "\n".join([decision_line(goal, decision), *notes])
            post = replace(post, thread=Thread("poll", poll.id), channel_line=outcome)
        # An early decision follows a member's vote, not a command: it waits out quiet hours, as the
        # result at the end of the window does.
        uow.post(replace(post, text=text), unprompted=bool(event.early))

    async def decide_early(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Subscriber: votes changed. A consent poll that everyone on its group's roster has voted on,
        with no ⛔ and its quorum, is decided now (core/goals.py `decided_early`), in the same unit of
        work. One read first asks the store which of the batch's consent polls everyone has voted on:
        it stops at the first member who has not, so most batches cost next to nothing more."""
        assert isinstance(event, VotesRecorded)
        tx, now = uow.tx, uow.now
        consent = {p.id: p for p in event.polls if p.kind is PollKind.CONSENT and p.is_open(now)}
        if not consent:
            return
        for poll_id in sorted(await tx.polls.everyone_voted(list(consent))):
            poll = consent[poll_id]
            group = await tx.groups.by_id(poll.group_id)
            assert group is not None
            reactions = await tx.polls.reactions(poll.id)
            voters = {r.user_key for r in reactions if r.present}
            roster = [m.key for m in await tx.members.roster(group.id)]
            if decided_early(tally(poll, reactions), self.rules.for_group(group).quorum, roster, voters):
                await self.polls.close(uow, poll, early=early_note(len(roster)))

    # Commands ----------------------------------------------------------------------------------

    async def _propose(self, ctx: Context, inv: Invocation) -> Reply:
        text = " ".join(inv.text("text").split())
        proposer, source = ctx.event.user, ""
        if reference := _REFLECTION_REF.match(text):
            reflection = await ctx.tx.reviews.get_reflection(ctx.group.id, int(reference[1]))
            if reflection is None:
                raise UsageError(f"There is no reflection {text} in this channel.")
            text = " ".join(reflection.text.split())
            if len(text) > MAX_GOAL:
                raise UsageError(
                    f"Reflection {reference[0]} is too long for a goal (at most {MAX_GOAL} characters)."
                )
            # The goal is the author's: they may mark it done or drop it; the record keeps who put it forward.
            proposer = reflection.author
            source = f", from reflection r{reflection.id} by {reflection.user_name}"
        goal, poll = await self._open_round(ctx, text, proposer, put_forward_by=ctx.event.user)
        return self._proposed(ctx, f"Goal {goal.id} proposed{source}", poll)

    async def _open_round(
        self,
        ctx: Context,
        text: str,
        proposer: UserRef,
        *,
        put_forward_by: UserRef,
        reshapes: Goal | None = None,
        label: str = "",
    ) -> tuple[Goal, Poll]:
        """Store a proposed goal and open its consent poll; `label` follows the goal's number in the
        poll's question (what it reshapes)."""
        rules = self.rules.for_group(ctx.group)
        goal = await ctx.tx.goals.create(
            ctx.group.id,
            text,
            proposer,
            ctx.now,
            put_forward_by=put_forward_by,
            reshapes=reshapes.id if reshapes is not None else None,
        )
        request = PollRequest(
            f"Goal {goal.id}{label}: {text} (proposed by {goal.proposer_name}). Do you consent?",
            CONSENT_OPTIONS,
            duration=rules.window,
        )
        remind_at = remind_time(ctx.now, ctx.now + rules.window, percent(ctx.group))
        poll = await self.polls.open(
            ctx.uow, ctx.group, PollKind.CONSENT, request, proposer, remind_at=remind_at
        )
        await ctx.tx.goals.set_poll(goal.id, poll.id)
        return goal, poll

    def _proposed(self, ctx: Context, what: str, poll: Poll) -> Reply:
        rules = self.rules.for_group(ctx.group)
        return Reply(
            f"{what}. React on poll {poll.id}: ✅ agree, 🤔 concerns, ⛔ block."
            f" The group decides by {format_time(poll.closes_at, ctx.group.timezone)};"
            f" it needs {rules.quorum} ✅ and no ⛔."
        )

    async def _amend(self, ctx: Context, inv: Invocation) -> Reply:
        """A new version of a proposed or blocked goal, in a consent round of its own; the old goal is
        superseded, its open poll closed without a decision, and whoever blocked it is told."""
        old = await self._find(ctx.tx, ctx.group, inv.args["id"])
        if old.status not in AMENDABLE:
            if old.status is GoalStatus.SUPERSEDED:
                newer = await self._reshaped_as(ctx.tx, ctx.group, old)
                later = f"; amend goal {newer.id} instead" if newer is not None else ""
                return Reply(
                    f"Goal {old.id} was reshaped already{later}. Nothing was changed.", is_error=True
                )
            return Reply(
                f"Goal {old.id} is {old.status.value}; only a proposed or blocked goal can be reshaped."
                " Nothing was changed.",
                is_error=True,
            )
        text = " ".join(inv.text("text").split())
        old_poll = None
        blockers: list[PollReaction] = []
        if old.poll_id is not None:
            old_poll = await self.polls.find(ctx.tx, ctx.group, old.poll_id)
            blockers = blocking_votes(old_poll, await ctx.tx.polls.reactions(old_poll.id))
        concerns = (await ctx.tx.concerns.of_goals([old.id])).get(old.id, [])
        label = reshape_label(old, blockers_words([(b.user_key, b.user_name) for b in blockers], concerns))
        closed_now = old_poll is not None and await self.polls.close(ctx.uow, old_poll, announce=False)
        await ctx.tx.goals.set_status(old.id, GoalStatus.SUPERSEDED, ctx.now)
        goal, poll = await self._open_round(
            ctx, text, ctx.event.user, put_forward_by=ctx.event.user, reshapes=old, label=label
        )
        channel = ctx.group.channel
        if closed_now and old_poll is not None:
            closed = (
                f"Poll {old_poll.id} of goal {old.id} is closed without a decision:"
                f" goal {goal.id} reshapes it (poll {poll.id})."
            )
            ctx.uow.post(Post(PostKind.SEND, channel, closed, group_id=ctx.group.id))
        for blocker in blockers:
            user = _user(blocker)
            if user is None or user.key == ctx.event.user.key:
                continue
            told = (
                f"You blocked goal {old.id} ({old.text}) in {channel.name}. {ctx.event.user.name} has"
                f" reshaped it as goal {goal.id}: {text}. Poll {poll.id} there asks for your consent"
                " again: ✅ agree, 🤔 concerns, ⛔ block."
            )
            ctx.uow.post(Post(PostKind.DIRECT, channel, told, user=user, group_id=ctx.group.id))
        return self._proposed(ctx, f"Goal {goal.id}{label} proposed", poll)

    @staticmethod
    async def _reshaped_as(tx: StoreTx, group: Group, goal: Goal) -> Goal | None:
        """The goal that reshapes `goal`, if any (the latest, should there ever be two)."""
        later = [g for g in await tx.goals.in_group(group.id) if g.reshapes_id == goal.id]
        return later[-1] if later else None

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        wanted: str | None = inv.args.get("filter")
        name = wanted or "all"
        goals = await ctx.tx.goals.in_group(ctx.group.id)
        rules = self.rules.for_group(ctx.group)
        command = f"{ctx.prefix}goal list" + ("" if wanted is None else f" {name}")
        if not goals:
            empty = f"No goals yet. Propose one with {ctx.prefix}goal propose <text>."
        else:
            empty = f"No {name} goals. {ctx.prefix}goal list shows them all."
        listing = Listing(
            what="goals" if name == "all" else f"{name} goals",
            head="",
            items=[
                Item(f"  Goal {g.id}: {g.text} ({g.proposer_name})", f"{title}:")
                for title, items in roadmap(goals, SHOWN_BY_FILTER[name])
                for g in items
            ],
            command=command,
            empty=empty,
            foot=f"Goals need {rules.quorum} ✅ and no ⛔ within {_hours(rules.window)}.",
            hint=f"Or choose: {ctx.prefix}goal list {'|'.join(SHOWN_BY_FILTER)}.",
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))

    async def _show(self, ctx: Context, inv: Invocation) -> Reply:
        goal = await self._find(ctx.tx, ctx.group, inv.args["id"])
        lines = [
            f"Goal {goal.id}: {goal.text}",
            f"Status: {goal.status.value}, since {format_time(goal.updated_at, ctx.group.timezone)}.",
            f"Proposed by {goal.proposer_name} on {format_time(goal.created_at, ctx.group.timezone)}"
            + (f", put forward by {goal.put_forward_by_name}." if goal.put_forward_by_another else "."),
        ]
        if goal.poll_id is not None:
            poll = await self.polls.find(ctx.tx, ctx.group, goal.poll_id)
            t = await self.polls.current_tally(ctx.tx, poll)
            state = (
                "closed"
                if poll.closed_at
                else f"open until {format_time(poll.closes_at, ctx.group.timezone)}"
            )
            lines.append(
                f"Consent poll {poll.id} ({state}): ✅ {t.counts[0]}, 🤔 {t.counts[1]}, ⛔ {t.counts[2]}."
            )
        if heard := concerns_heard((await ctx.tx.concerns.of_goals([goal.id])).get(goal.id, [])):
            lines.append(heard)
        if goal.reshapes_id is not None:
            lines.append(f"It reshapes goal {goal.reshapes_id}.")
        if goal.status is GoalStatus.SUPERSEDED and (
            newer := await self._reshaped_as(ctx.tx, ctx.group, goal)
        ):
            lines.append(f"It was reshaped as goal {newer.id}.")
        return Reply("\n".join(lines))

    async def _finish(self, ctx: Context, inv: Invocation, status: GoalStatus) -> Reply:
        goal = await self._find(ctx.tx, ctx.group, inv.args["id"])
        if goal.proposer_key != ctx.event.user.key and not ctx.is_facilitator:
            return ctx.refuse(inv, owner=goal.proposer_name)
        allowed = (
            (GoalStatus.ACCEPTED,)
            if status is GoalStatus.DONE
            else (GoalStatus.PROPOSED, GoalStatus.ACCEPTED, GoalStatus.BLOCKED)
        )
        if goal.status not in allowed:
            return Reply(
                f"Goal {goal.id} is {goal.status.value}; it cannot be marked {status.value}.", is_error=True
            )
        if goal.status is GoalStatus.PROPOSED and goal.poll_id is not None:
            poll = await self.polls.find(ctx.tx, ctx.group, goal.poll_id)
            await self.polls.close(ctx.uow, poll, announce=False)
        await ctx.tx.goals.set_status(goal.id, status, ctx.now)
        await ctx.tx.groups.record_signal(ctx.group.id, CLOSING, ctx.now, ctx.event.user.key)
        notes = await ctx.uow.publish(GoalFinished(ctx.group, goal, status))
        if status is GoalStatus.DONE:
            text = f"Goal {goal.id} is done: {goal.text}. Well done, everyone!"
            return Reply("\n".join([text, *notes]))
        return Reply("\n".join([f"Goal {goal.id} was dropped: {goal.text}.", *notes]))

    async def _done(self, ctx: Context, inv: Invocation) -> Reply:
        return await self._finish(ctx, inv, GoalStatus.DONE)

    async def _drop(self, ctx: Context, inv: Invocation) -> Reply:
        return await self._finish(ctx, inv, GoalStatus.DROPPED)

    async def _rules(self, ctx: Context, inv: Invocation) -> Reply:
        quorum = inv.args.get("quorum")
        window = inv.args.get("window")
        if quorum is not None and not 1 <= quorum <= MAX_QUORUM:
            raise UsageError(f"quorum must be between 1 and {MAX_QUORUM}.", inv.spec)
        if window is not None and not timedelta(minutes=1) <= window <= MAX_WINDOW:
            raise UsageError("window must be between 1 minute and 32 days.", inv.spec)
        current = self.rules.for_group(ctx.group)
        if quorum is None and window is None:
            return Reply(f"Goals need {current.quorum} ✅ and no ⛔ within {_hours(current.window)}.")
        new_quorum = quorum if quorum is not None else ctx.group.goal_quorum
        new_window = window if window is not None else ctx.group.decision_window
        await ctx.tx.groups.set_settings(ctx.group.id, new_quorum, new_window)
        q = quorum if quorum is not None else current.quorum
        w = window if window is not None else current.window
        return Reply(f"From now on goals need {q} ✅ and no ⛔ within {_hours(w)}.")
