"""The engine: turns neutral events into rule decisions, stored state and outbound messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from core.clock import Clock, format_age, format_time
from core.commands import (
    COMMANDS,
    ArgKind,
    CommandSpec,
    Invocation,
    UsageError,
    command_groups,
    find_spec,
    parse_options,
    parse_text,
)
from core.context import Context, Handler
from core.events import (
    CommandInvoked,
    InboundEvent,
    MessagePosted,
    ReactionAdded,
    ReactionRemoved,
    Reply,
)
from core.export import load_record, render_digest, to_csv, to_json, to_markdown
from core.feedback import PollService
from core.goals import GoalStatus
from core.lifecycle import (
    PHASE_FOCUS,
    Group,
    Phase,
    PhaseChange,
    SamePhase,
    change_phase,
    welcome,
)
from core.nudging import NudgeService, NudgeSettings, local_time
from core.ports import ChatPort, Store, StoreTx
from core.reflections import DEFAULT_REVIEW_TIME
from core.refs import ChannelRef, MessageRef, UserRef
from core.reviewing import ReviewService
from core.roadmap import GoalRules, GoalService
from core.schedules import Recurrence, ScheduleKind
from core.votes import VoteRecorder, reconcile_poll, save_state

log = logging.getLogger(__name__)

HISTORY_LIMIT = 20
ACTIVITY_RESOLUTION = timedelta(minutes=10)


async def ensure_group(tx: StoreTx, channel: ChannelRef, now: datetime) -> Group:
    """The channel's group, created in Convening on first use."""
    group = await tx.get_group(channel)
    if group is None:
        group = await tx.create_group(channel, Phase.CONVENING, now)
        await tx.record_phase_change(
            PhaseChange(group.id, None, Phase.CONVENING, now, "peerbot", "group started")
        )
    return group


class Engine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        chats: Sequence[ChatPort] = (),
        specs: Sequence[CommandSpec] = COMMANDS,
        goal_rules: GoalRules | None = None,
        *,
        recurrence: Recurrence,
        nudges: NudgeSettings | None = None,
        review_time: timedelta = DEFAULT_REVIEW_TIME,
    ) -> None:
        self.store = store
        self.clock = clock
        self.specs = tuple(specs)
        self.chats: dict[str, ChatPort] = {}
        for chat in chats:
            self.attach(chat)
        self.votes = VoteRecorder(store, clock)
        self.polls = PollService(store, clock, self.chats)
        self.goals = GoalService(store, self.polls, goal_rules or GoalRules())
        self.nudges = NudgeService(store, clock, self.chats, recurrence, nudges or NudgeSettings())
        self.nudges.digest = self._digest
        self.reviews = ReviewService(store, self.chats, review_time)
        self.review_time = review_time
        self.goals.after_done = self._after_goal_done
        self.handlers: dict[tuple[str, ...], Handler] = {
            ("help",): self._help,
            ("status",): self._status,
            ("phase", "show"): self._phase_show,
            ("phase", "set"): self._phase_set,
            ("phase", "history"): self._phase_history,
            **self.polls.handlers(),
            **self.goals.handlers(),
            **self.nudges.handlers(),
            **self.reviews.handlers(),
            ("export",): self._export,
            ("forget-me",): self._forget_me,
        }

    def attach(self, chat: ChatPort) -> None:
        self.chats[chat.platform] = chat

    def visible_specs(self, platform: str) -> list[CommandSpec]:
        return [s for s in self.specs if not s.platforms or platform in s.platforms]

    # Inbound -----------------------------------------------------------------------------------

    async def handle(self, event: InboundEvent) -> Reply | None:
        """Apply one inbound event. Commands get a reply; None means nothing to say."""
        if isinstance(event, CommandInvoked):
            return await self.run_command(event)
        if isinstance(event, ReactionAdded | ReactionRemoved):
            await self.votes.submit(event)
        elif isinstance(event, MessagePosted):
            await self._seen(event.channel)
        return None

    async def _seen(self, channel: ChannelRef, group: Group | None = None) -> None:
        """Note activity in a group (for the heartbeat), at most one write per few minutes."""
        now = self.clock.now()
        if group is None:
            async with self.store.transaction() as tx:
                group = await tx.get_group(channel)
        if group is None:
            return
        if group.last_activity_at is None or now - group.last_activity_at >= ACTIVITY_RESOLUTION:
            async with self.store.transaction() as tx:
                await tx.touch_activity(group.id, now)

    async def tick(self) -> None:
        """Do what has come due by now: close polls and reviews, deliver nudges, heartbeats."""
        now = self.clock.now()
        await self.polls.close_due(now)
        await self.reviews.close_due(now)
        await self.nudges.deliver_due(now)
        await self.nudges.heartbeats(now)

    async def run_until(self, target: datetime, move_clock: Callable[[datetime], None]) -> None:
        """Move a manual clock to `target`, doing everything that comes due on the way, in order."""
        last: datetime | None = None
        while True:
            async with self.store.transaction() as tx:
                due = await tx.next_due_time()
            if due is None or due > target or due == last:
                break
            last = due
            if due > self.clock.now():
                move_clock(due)
            await self.tick()
        if target > self.clock.now():
            move_clock(target)
        await self.tick()

    async def drain(self) -> None:
        """Finish pending work (queued votes) before shutting down."""
        await self.votes.drain()

    async def open_poll_messages(self, platform: str) -> list[MessageRef]:
        """The messages of the polls still open on a platform, to reconcile after a gap."""
        async with self.store.transaction() as tx:
            polls = await tx.open_polls(platform, self.clock.now())
        return [p.message for p in polls if p.message is not None]

    async def reconcile(self, message: MessageRef, present: Mapping[str, Collection[UserRef]]) -> int:
        """Set a poll's votes to the reactions now on its message (see `reconcile_poll`)."""
        await self.votes.drain()  # votes already received go first; the snapshot is newer
        async with self.store.transaction() as tx:
            polls = await tx.polls_for_messages(message.channel.platform, [message.id])
            if not polls:
                return 0
            return await reconcile_poll(tx, polls[0], present, self.clock.now())

    async def handle_batch(
        self, events: Sequence[InboundEvent], state: Mapping[str, str | None] | None = None
    ) -> list[Reply | None]:
        """Apply events in order, then record adapter state (a sync token) that covers them.

        A state value of None deletes the key (bookkeeping the adapter no longer needs).

        Each event is applied at most once (dedupe on its id), so a batch replayed after a crash
        before its state was saved changes nothing twice.
        """
        replies: list[Reply | None] = []
        reactions: list[ReactionAdded | ReactionRemoved] = []

        async def flush_reactions(with_state: Mapping[str, str | None] | None) -> None:
            # A run of reactions goes in together: group commit puts them in one transaction.
            if reactions:
                states = [None] * (len(reactions) - 1) + [with_state]
                await asyncio.gather(
                    *(self.votes.submit(r, s) for r, s in zip(reactions, states, strict=True))
                )
                replies.extend([None] * len(reactions))
                reactions.clear()

        for event in events:
            if isinstance(event, ReactionAdded | ReactionRemoved):
                reactions.append(event)
                continue
            await flush_reactions(None)
            replies.append(await self.handle(event))
        if reactions:
            await flush_reactions(state)
        elif state:
            async with self.store.transaction() as tx:
                await save_state(tx, state)
        return replies

    async def run_command(self, event: CommandInvoked) -> Reply | None:
        chat = self.chats[event.channel.platform]
        specs = self.visible_specs(chat.platform)
        now = self.clock.now()
        try:
            if event.options is None:
                invocation = parse_text(specs, event.text)
            else:
                invocation = parse_options(specs, event.text, event.options)
        except UsageError as error:
            async with self.store.transaction() as tx:
                if not await tx.claim_event(chat.platform, event.event_id, now):
                    return None
            return self.usage_reply(error, chat.command_prefix)
        if invocation.spec.facilitator_only and not await chat.is_facilitator(event.user, event.channel):
            return Reply(
                f"Sorry, only facilitators can use {chat.command_prefix}{invocation.spec.name}."
                " Nothing was changed.",
                is_error=True,
            )
        async with self.store.transaction() as tx:
            if not await tx.claim_event(chat.platform, event.event_id, now):
                log.info("skipping event %s seen before", event.event_id)
                return None
            group = await ensure_group(tx, event.channel, now)
        await self._seen(event.channel, group)
        handler = self.handlers[invocation.spec.path]
        try:
            return await handler(Context(event, chat, group, now), invocation)
        except UsageError as error:
            return self.usage_reply(error, chat.command_prefix)

    @staticmethod
    def usage_reply(error: UsageError, prefix: str) -> Reply:
        text = error.message
        if error.spec is not None:
            text += f"\nUsage: {error.spec.usage(prefix)}"
        return Reply(text, is_error=True)

    # Commands ----------------------------------------------------------------------------------

    async def _help(self, ctx: Context, inv: Invocation) -> Reply:
        specs = self.visible_specs(ctx.chat.platform)
        wanted = inv.text("command").removeprefix(ctx.prefix.strip()).strip()
        if not wanted:
            lines = ["Peerbot commands (★ facilitators only):"]
            lines += [
                f"{s.usage(ctx.prefix)} — {s.summary}{' ★' if s.facilitator_only else ''}" for s in specs
            ]
            lines.append(f"Say {ctx.prefix}help <command> for details.")
            return Reply("\n".join(lines))
        words = wanted.split()
        spec = find_spec(specs, words)
        if spec is None or len(spec.path) < len(words):
            group = command_groups(specs).get(words[0].casefold())
            if group is None or len(words) > 1:
                raise UsageError(
                    f"No command '{wanted[:40]}'. Say {ctx.prefix}help for the list.",
                    inv.spec,
                )
            lines = [f"{s.usage(ctx.prefix)} — {s.summary}" for s in group]
            lines += [s.details for s in group if s.details]
            return Reply("\n".join(lines))
        return Reply(describe(spec, ctx.prefix))

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
        async with self.store.transaction() as tx:
            group = await tx.get_group_by_id(ctx.group.id)
            assert group is not None
            try:
                change = change_phase(group, to, at=ctx.now, by=user.name, by_key=user.key, reason=reason)
            except SamePhase:
                return Reply(f"The group is already in {to.title}. Nothing was changed.")
            await tx.record_phase_change(change)
        why = f" ({reason})" if reason else ""
        assert change.from_phase is not None
        lines = [
            f"{user.name} moved the group from {change.from_phase.title} to {to.title}{why}.",
            welcome(to, ctx.prefix),
        ]
        lines += await self._on_entering(ctx, group, to)
        return Reply("\n".join(lines))

    async def _on_entering(self, ctx: Context, group: Group, to: Phase) -> list[str]:
        """What a phase brings by default: a review for Assessing, a check-in for Cooperating."""
        if to is Phase.ASSESSING and group.auto_review:
            review = await self.reviews.start(group, ctx.event.user, ctx.now, self.review_time)
            if review is not None:
                return [
                    f"Action review {review.id} has started:"
                    f" answer with {ctx.prefix}reflect <number> <answer>."
                ]
        if to is Phase.COOPERATING and group.auto_checkin:
            async with self.store.transaction() as tx:
                existing = [s for s in await tx.list_schedules(group.id) if s.kind is ScheduleKind.CHECKIN]
                if not existing:
                    schedule, _ = await self.nudges.add(
                        tx, group, ScheduleKind.CHECKIN, self.nudges.settings.checkin, "peerbot", ctx.now
                    )
                    return [
                        f"A weekly check-in is scheduled ({schedule.description}, {group.timezone});"
                        f" see {ctx.prefix}nudge list."
                    ]
        return []

    async def _after_goal_done(self, ctx: Context) -> str | None:
        """Suggest, never force: when every accepted goal is done, Assessing may be next."""
        async with self.store.transaction() as tx:
            goals = await tx.list_goals(ctx.group.id)
            group = await tx.get_group_by_id(ctx.group.id)
            open_goals = [g for g in goals if g.status is GoalStatus.ACCEPTED]
            if open_goals or group is None or group.phase is Phase.ASSESSING:
                return None
            await tx.record_signal(group.id, "all_goals_done", ctx.now, "")
        return (
            "Every accepted goal is done. Suggestion: this may be a good moment for Assessing, to look"
            f" back together. A facilitator can say {ctx.prefix}phase set assessing."
        )

    async def _digest(self, group_id: int, now: datetime) -> str:
        async with self.store.transaction() as tx:
            group = await tx.get_group_by_id(group_id)
            assert group is not None
            record = await load_record(tx, group)
        upcoming = sorted(
            (
                s
                for s in record.schedules
                if not s.paused and s.next_due_at and s.kind is not ScheduleKind.DIGEST
            ),
            key=lambda s: s.next_due_at or now,
        )[:3]
        times = [f"{s.description} ({local_time(s.next_due_at, group.timezone)})" for s in upcoming]
        return render_digest(record, now, times)

    async def _export(self, ctx: Context, inv: Invocation) -> Reply:
        async with self.store.transaction() as tx:
            record = await load_record(tx, ctx.group)
        render = {"md": to_markdown, "json": to_json, "csv": to_csv}[inv.args.get("format", "md")]
        return Reply(render(record))

    async def _forget_me(self, ctx: Context, inv: Invocation) -> Reply:
        if inv.args.get("confirm") != "confirm":
            return Reply(
                "This deletes every reflection you wrote and every vote you cast, in all groups this bot"
                f" serves; tallies change accordingly. To go ahead, say {ctx.prefix}forget-me confirm."
            )
        async with self.store.transaction() as tx:
            thoughts, votes = await tx.forget_user(ctx.event.user.key)
        return Reply(f"Done: {thoughts} reflections and {votes} votes of yours were deleted.")

    async def _phase_history(self, ctx: Context, inv: Invocation) -> Reply:
        async with self.store.transaction() as tx:
            changes = await tx.phase_history(ctx.group.id, HISTORY_LIMIT)
        lines = ["Phase history (oldest first):"]
        for c in changes:
            move = f"{c.from_phase.title} → {c.to_phase.title}" if c.from_phase else c.to_phase.title
            why = f": {c.reason}" if c.reason else ""
            lines.append(f"{format_time(c.at, ctx.group.timezone)}  {move} by {c.by}{why}")
        return Reply("\n".join(lines))


def describe(spec: CommandSpec, prefix: str) -> str:
    lines = [f"Usage: {spec.usage(prefix)}", spec.summary]
    for arg in spec.args:
        extra = f" (one of: {', '.join(arg.choices)})" if arg.kind is ArgKind.CHOICE else ""
        optional = "" if arg.required else ", optional"
        lines.append(f"  {arg.name}: {arg.help}{extra}{optional}")
    if spec.details:
        lines.append(spec.details)
    if spec.facilitator_only:
        lines.append("Facilitators only.")
    return "\n".join(lines)
