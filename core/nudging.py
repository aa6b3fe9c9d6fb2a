"""'Reflect often': the group's schedules, delivered exactly once, in its timezone, outside quiet hours."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.dashboard import let_members_ask, members_may_ask
from core.events import Reply
from core.export import GroupRecord, load_record, render_digest
from core.lifecycle import Group, Phase, QuietHours
from core.metrics import NO_METRICS, Metrics
from core.outbox import AHEAD, Post, PostKind
from core.paging import Item, Listing
from core.ports import ChatPort, StoreTx, command_prefix
from core.prompts import HEARTBEAT, next_prompt
from core.refs import BOT, UserRef
from core.roles import WRAP_WITHIN
from core.schedules import (
    DEFAULT_GRACE,
    DueSchedule,
    Plan,
    Recurrence,
    Schedule,
    ScheduleKind,
    check_timezone,
    deliverable_at_once,
    due_time,
    first_occurrence,
    parse_quiet_hours,
    parse_schedule,
    plan,
    plan_after_delivery,
)
from core.uow import DomainEvent, PhaseEntered, UnitOfWork, Work

log = logging.getLogger(__name__)

BATCH = 1000
# Planning is cron maths, the event loop's alone: smaller batches let other work in between.
PLAN_BATCH = 500
MAX_NUDGE_TEXT = 500
MAX_SCHEDULES_PER_GROUP = 50


@dataclass(frozen=True, slots=True)
class NudgeSettings:
    grace: timedelta = DEFAULT_GRACE
    checkin: str = "weekly mon 18:00"
    digest: str = "weekly mon 09:00"
    heartbeat_days: int = 7  # 0: no heartbeat


def local_time(dt: datetime | None, tz: str) -> str:
    if dt is None:
        return "never again"
    return dt.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %Z")


def digest_of(record: GroupRecord, now: datetime) -> str:
    """The weekly digest of a group's record, with its next three schedules (the digest itself aside)."""
    upcoming = sorted(
        (s for s in record.schedules if not s.paused and s.next_due_at and s.kind is not ScheduleKind.DIGEST),
        key=lambda s: s.next_due_at or now,
    )[:3]
    times = [f"{s.description} ({local_time(s.next_due_at, record.group.timezone)})" for s in upcoming]
    return render_digest(record, now, times)


class NudgeService:
    def __init__(
        self,
        work: Work,
        chats: Mapping[str, ChatPort],
        platforms: Collection[str],
        recurrence: Recurrence,
        settings: NudgeSettings,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.work = work
        self.metrics = metrics
        self.chats = chats
        self.platforms = platforms
        self.recurrence = recurrence
        self.settings = settings
        self.delivered = 0  # deliveries made by this process, for benchmarks and tests

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("nudge", "add"): self._add,
            ("nudge", "list"): self._list,
            ("nudge", "remove"): self._remove,
            ("nudge", "pause"): self._pause,
            ("nudge", "resume"): self._resume,
            ("timezone",): self._timezone,
            ("quiet-hours",): self._quiet_hours,
            ("auto",): self._auto,
        }

    # Scheduling --------------------------------------------------------------------------------

    async def add(
        self, tx: StoreTx, group: Group, kind: ScheduleKind, words: str, by: UserRef, now: datetime
    ) -> tuple[Schedule, str]:
        """Add a schedule from `<schedule> [text]`; returns it and the text that followed."""
        cron, description, text = parse_schedule(words, self.recurrence)
        if len(text) > MAX_NUDGE_TEXT:
            raise UsageError(
                f"The nudge text is too long ({len(text)} characters, at most {MAX_NUDGE_TEXT})."
            )
        if len(await tx.schedules.in_group(group.id)) >= MAX_SCHEDULES_PER_GROUP:
            raise UsageError(f"A group can have at most {MAX_SCHEDULES_PER_GROUP} schedules.")
        occurrence, due = first_occurrence(cron, group.timezone, group.quiet, now, self.recurrence)
        schedule = await tx.schedules.create(
            group.id, kind, cron, description, text or None, by, now, occurrence, due
        )
        return schedule, text

    async def reschedule_group(self, tx: StoreTx, group: Group, now: datetime) -> None:
        """After a timezone or quiet-hours change, every schedule's next time is computed again."""
        updates = []
        for s in await tx.schedules.in_group(group.id):
            occurrence, due = first_occurrence(s.cron, group.timezone, group.quiet, now, self.recurrence)
            updates.append((s.id, occurrence, due))
        # An occurrence prepared ahead at the old time is planned again, not posted twice.
        await tx.outbox.withdraw([i for i, _, _ in updates], now)
        await tx.schedules.set_next(updates)

    async def deliver_due(self, now: datetime) -> int:
        """Deliver every schedule due by `now`, each (schedule, occurrence) exactly once, and prepare
        those due within `AHEAD`.

        Deliver first, plan later: a schedule due at most the grace window late, or due within `AHEAD`
        (a digest aside), is claimed at the occurrence it shows and its post queued, with no cron maths
        in between; its next occurrence is computed afterwards by `plan_delivered`. A post prepared
        ahead is written leased to this process and held until it is due, so that at the due time only
        the sending is left; pausing, removing or moving the schedule before then withdraws it
        (`OutboxRepo.withdraw`). Only an occurrence older than the grace window is planned first (the
        misfire policy decides whether it is delivered at all). A batch is one unit of work: the
        claims, the delivery records and the posts queued in the outbox commit together.
        """
        delivered = 0
        grace = self.settings.grace
        ahead = now + AHEAD
        while True:
            async with self.work(now, unprompted=True) as uow:
                tx = uow.tx
                due = await tx.schedules.due(ahead, BATCH, self.platforms)
                at_once, late = [], []
                for s in due:
                    if s.due_at is not None and s.due_at > now:
                        # Not a digest: at the week's turn (its time) the wrapper's draft decides where
                        # it goes (`roles.due`), so it is delivered when due.
                        if s.kind is not ScheduleKind.DIGEST:
                            at_once.append(s)
                    elif deliverable_at_once(s, now, grace):
                        at_once.append(s)
                    else:
                        late.append(s)
                # The claim is the state change: only one process moves a schedule from what it saw.
                claimed = await tx.schedules.claim(
                    [(s.id, s.next_occurrence) for s in at_once if s.next_occurrence]
                )
                won = [(s, s.next_occurrence) for s in at_once if s.id in claimed and s.next_occurrence]
                late_won, skipped, coalesced = await self._plan_late(tx, late, now)
                won += late_won
                await tx.schedules.record_deliveries([(s.id, occurrence) for s, occurrence in won], now)
                for s, _ in won:
                    if s.kind is ScheduleKind.DIGEST and await tx.roles.digest_to_wrapper(
                        s.group_id, now - WRAP_WITHIN
                    ):
                        continue  # the wrapper has it as a draft; it goes to the group if they do not wrap
                    text = await self._text(tx, s, now)
                    # Late (the bot was down) is no reason to post in quiet hours: held until they end.
                    at = s.due_at if s.due_at is not None and s.due_at > now else now
                    held = due_time(at, s.timezone, s.quiet)
                    post = Post(
                        PostKind.SEND, s.channel, text, group_id=s.group_id, not_before=held, schedule_id=s.id
                    )
                    uow.post(post, placed=True)
            delivered += len(won)
            self.metrics.nudges("delivered", len(won))
            self.metrics.nudges("skipped", skipped)
            self.metrics.nudges("coalesced", coalesced)
            # Done when all were read, or when only digests due ahead are left (read again, not taken).
            if len(due) < BATCH or not (at_once or late):
                self.delivered += delivered
                return delivered

    async def _plan_late(
        self, tx: StoreTx, late: list[DueSchedule], now: datetime
    ) -> tuple[list[tuple[DueSchedule, datetime]], int, int]:
        """Schedules more than the grace window late (the bot was down): planned before anything is
        posted, by the misfire policy. Returns what to deliver, and how many skipped and coalesced."""
        if not late:
            return [], 0, 0
        plans = []
        # A plan depends only on these; schedules due together mostly share them.
        known: dict[tuple[str, str, QuietHours | None, datetime | None], Plan] = {}
        for s in late:
            key = (s.cron, s.timezone, s.quiet, s.next_occurrence)
            if (p := known.get(key)) is None:
                p = known[key] = plan(s, now, s.timezone, s.quiet, self.settings.grace, self.recurrence)
            if p.skipped:
                many = "several" if p.skipped < 0 else str(p.skipped)
                log.info("schedule %d: skipped %s occurrences older than the grace window", s.id, many)
            if p.coalesced:
                log.info("schedule %d: %d missed occurrences coalesced into one", s.id, p.coalesced)
            plans.append((s, p))
        moved = await tx.schedules.advance(
            [(s.id, s.next_occurrence, p.next_occurrence, p.next_due_at) for s, p in plans]
        )
        won = [(s, p.deliver) for s, p in plans if p.deliver is not None and s.id in moved]
        # Skips and coalescing made by this process (the claims it won). A long gap's skips are not
        # counted (`Plan.skipped`): a schedule that skipped counts once.
        skipped = sum(1 for s, p in plans if p.skipped and s.id in moved)
        coalesced = sum(p.coalesced for s, p in plans if s.id in moved)
        return won, skipped, coalesced

    async def plan_delivered(self, now: datetime) -> int:
        """Plan the next occurrence of every schedule delivered at once (`deliver_due`), after the posts
        went out. Occurrences that came due meanwhile coalesce into the delivery made. Returns how many
        were planned."""
        planned = 0
        while True:
            async with self.work(now) as uow:
                waiting = await uow.tx.schedules.to_plan(PLAN_BATCH, self.platforms)
                updates = []
                known: dict[tuple[str, str, QuietHours | None, datetime, datetime], Plan] = {}
                coalesced = 0
                for s in waiting:
                    assert s.next_occurrence is not None
                    # Coalesced: what was due by the delivery, as the delivering process saw it; what
                    # came due after (the plan was late: a crash) is delivered in its turn.
                    at = min(s.delivered_at or now, now)
                    key = (s.cron, s.timezone, s.quiet, s.next_occurrence, at)
                    if (p := known.get(key)) is None:
                        p = known[key] = plan_after_delivery(
                            s.next_occurrence,
                            s.cron,
                            at,
                            s.timezone,
                            s.quiet,
                            self.settings.grace,
                            self.recurrence,
                        )
                    if p.coalesced:
                        log.info("schedule %d: %d missed occurrences coalesced into one", s.id, p.coalesced)
                        coalesced += p.coalesced
                    updates.append((s.id, s.next_occurrence, p.next_occurrence, p.next_due_at))
                await uow.tx.schedules.set_planned(updates)
            planned += len(updates)
            self.metrics.nudges("coalesced", coalesced)
            if len(waiting) < PLAN_BATCH:
                return planned

    async def _text(self, tx: StoreTx, s: DueSchedule, now: datetime) -> str:
        prefix = command_prefix(self.chats, s.channel.platform)
        if s.kind is ScheduleKind.DIGEST:
            return await self._digest(tx, s.group_id, now)
        if s.text:
            return f"🔔 Nudge {s.id}: {s.text}"
        phase = Phase.COOPERATING if s.kind is ScheduleKind.CHECKIN else s.phase
        key = f"prompts:{s.group_id}:{phase.value}"
        raw = await tx.state("core").get(key)
        used = [int(i) for i in raw.split(",") if i] if raw else []
        prompt, used = next_prompt(phase, used, s.group_id)
        await tx.state("core").set(key, ",".join(map(str, used)))
        title = "Weekly check-in" if s.kind is ScheduleKind.CHECKIN else "Time to reflect"
        return f"🔔 {title}: {prompt}\nShare a thought with {prefix}reflect <your answer>."

    @staticmethod
    async def _digest(tx: StoreTx, group_id: int, now: datetime) -> str:
        group = await tx.groups.by_id(group_id)
        assert group is not None
        return digest_of(await load_record(tx, group), now)

    async def heartbeats(self, now: datetime) -> int:
        days = self.settings.heartbeat_days
        if not days:
            return 0
        async with self.work(now, unprompted=True) as uow:
            quiet = await uow.tx.groups.quiet(now - timedelta(days=days), 100, self.platforms)
            claimed = [g for g in quiet if await uow.tx.groups.claim_heartbeat(g.id, now)]
            for group in claimed:
                text = HEARTBEAT.format(days=days, prefix=command_prefix(self.chats, group.channel.platform))
                uow.post(Post(PostKind.SEND, group.channel, text, group_id=group.id))
        return len(claimed)

    async def on_phase_entered(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        """Subscriber: the schedules of the phase the group left end with it; entering Cooperating
        adds a weekly check-in, unless the group switched that off."""
        assert isinstance(event, PhaseEntered)
        group, change = event.group, event.change
        notes = []
        for s in await uow.tx.schedules.in_group(group.id):
            if s.kind.phase is not None and s.kind.phase is change.from_phase:
                await uow.tx.outbox.withdraw([s.id], uow.now)
                await uow.tx.schedules.delete(s.id)
                notes.append(f"Check-in {s.id} ({s.description}) ended with {s.kind.phase.title}.")
        kinds = {s.kind for s in await uow.tx.schedules.in_group(group.id)}
        if change.to_phase is Phase.COOPERATING and group.auto_checkin and ScheduleKind.CHECKIN not in kinds:
            schedule, _ = await self.add(
                uow.tx, group, ScheduleKind.CHECKIN, self.settings.checkin, BOT, uow.now
            )
            prefix = command_prefix(self.chats, group.channel.platform)
            notes.append(
                f"A weekly check-in is scheduled ({schedule.description}, {group.timezone});"
                f" see {prefix}nudge list."
            )
        return "\n".join(notes) or None

    # Commands ----------------------------------------------------------------------------------

    async def _add(self, ctx: Context, inv: Invocation) -> Reply:
        tx = ctx.tx
        try:
            schedule, text = await self.add(
                tx, ctx.group, ScheduleKind.NUDGE, inv.text("schedule"), ctx.event.user, ctx.now
            )
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        what = f"“{text}”" if text else "a prompt from the bank for the group's phase"
        return Reply(
            f"Nudge {schedule.id} added: {schedule.description} ({ctx.group.timezone}), posting {what}.\n"
            f"Next: {local_time(schedule.next_due_at, ctx.group.timezone)}."
        )

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        tx = ctx.tx
        items = await tx.schedules.in_group(ctx.group.id)
        # An occurrence prepared ahead (due within a minute) is the next one, though planned past.
        prepared = await tx.outbox.ahead([s.id for s in items], ctx.now)
        g = ctx.group
        quiet = f"; quiet hours {g.quiet}" if g.quiet else ""
        lines = []
        # Those that will come first, paused ones after, each in the order they were added.
        for s in sorted(items, key=lambda s: (s.paused, s.id)):
            label = {"nudge": "Nudge", "checkin": "Check-in", "digest": "Digest"}[s.kind.value]
            what = (
                f"“{s.text}”"
                if s.text
                else ("the weekly digest" if s.kind is ScheduleKind.DIGEST else "prompt bank")
            )
            upcoming = prepared.get(s.id, s.next_due_at)
            state = "paused" if s.paused else f"next {local_time(upcoming, g.timezone)}"
            lines.append(Item(f"  {label} {s.id}: {s.description}, {state}: {what}"))
        listing = Listing(
            what="nudges",
            head=f"Nudges (timezone {g.timezone}{quiet}):",
            items=lines,
            command=f"{ctx.prefix}nudge list",
            empty=f"No nudges yet (timezone {g.timezone}{quiet}). Add one with {ctx.prefix}nudge add.",
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))

    async def _find(self, tx: StoreTx, ctx: Context, schedule_id: int) -> Schedule:
        schedule = await tx.schedules.get(ctx.group.id, schedule_id)
        if schedule is None:
            raise UsageError(f"There is no nudge {schedule_id} in this channel. See {ctx.prefix}nudge list.")
        return schedule

    async def _remove(self, ctx: Context, inv: Invocation) -> Reply:
        tx = ctx.tx
        schedule = await self._find(tx, ctx, inv.args["id"])
        await tx.outbox.withdraw([schedule.id], ctx.now)
        await tx.schedules.delete(schedule.id)
        return Reply(f"Nudge {schedule.id} ({schedule.description}) removed.")

    async def _pause(self, ctx: Context, inv: Invocation) -> Reply:
        tx = ctx.tx
        schedule = await self._find(tx, ctx, inv.args["id"])
        await tx.outbox.withdraw([schedule.id], ctx.now)
        await tx.schedules.set_paused(schedule.id, True)
        return Reply(f"Nudge {schedule.id} paused. {ctx.prefix}nudge resume {schedule.id} brings it back.")

    async def _resume(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        tx = ctx.tx
        schedule = await self._find(tx, ctx, inv.args["id"])
        # Occurrences missed while paused are not owed: start from now.
        occurrence, due = first_occurrence(schedule.cron, g.timezone, g.quiet, ctx.now, self.recurrence)
        await tx.schedules.set_next([(schedule.id, occurrence, due)])
        await tx.schedules.set_paused(schedule.id, False)
        return Reply(f"Nudge {schedule.id} resumed. Next: {local_time(due, g.timezone)}.")

    async def _timezone(self, ctx: Context, inv: Invocation) -> Reply:
        name = inv.text("name")
        if not name:
            return Reply(f"This group's timezone is {ctx.group.timezone}.")
        if not ctx.is_facilitator:
            return ctx.refuse(inv)
        tz = check_timezone(name)
        tx = ctx.tx
        await tx.groups.set_timezone(ctx.group.id, tz)
        group = await tx.groups.by_id(ctx.group.id)
        assert group is not None
        await self.reschedule_group(tx, group, ctx.now)
        return Reply(f"Timezone set to {tz}. Nudges keep their local times.")

    async def _quiet_hours(self, ctx: Context, inv: Invocation) -> Reply:
        span = inv.text("span")
        if not span:
            current = str(ctx.group.quiet) if ctx.group.quiet else "none"
            return Reply(f"Quiet hours: {current} ({ctx.group.timezone}).")
        if not ctx.is_facilitator:
            return ctx.refuse(inv)
        try:
            quiet = parse_quiet_hours(span)
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        tx = ctx.tx
        await tx.groups.set_quiet_hours(ctx.group.id, quiet)
        group = await tx.groups.by_id(ctx.group.id)
        assert group is not None
        await self.reschedule_group(tx, group, ctx.now)
        if quiet is None:
            return Reply("Quiet hours are off.")
        return Reply(
            f"Quiet hours set to {quiet} ({ctx.group.timezone}):"
            f" what the bot posts on its own then (nudges, results) waits until {quiet.end:%H:%M}."
        )

    async def _auto(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        what, value = inv.args.get("what"), inv.args.get("value")
        tx = ctx.tx
        digest = [s for s in await tx.schedules.in_group(g.id) if s.kind is ScheduleKind.DIGEST]
        if what is None or value is None:
            onoff = {True: "on", False: "off"}
            return Reply(
                f"Automatic: review on entering Assessing {onoff[g.auto_review]}; weekly check-in on"
                f" entering Cooperating {onoff[g.auto_checkin]}; weekly digest {onoff[bool(digest)]};"
                f" weekly radar {onoff[g.auto_radar]}; a thread for every decision {onoff[g.auto_threads]};"
                f" members' links to the group's page {onoff[await members_may_ask(tx, g.id)]}."
            )
        if not ctx.is_facilitator:
            return ctx.refuse(inv)
        on = value == "on"
        tx = ctx.tx
        if what == "review":
            await tx.groups.set_auto(g.id, on, g.auto_checkin)
        elif what == "checkin":
            await tx.groups.set_auto(g.id, g.auto_review, on)
        elif what == "threads":
            await tx.groups.set_threads(g.id, on)
        elif what == "dashboard":
            await let_members_ask(tx, g.id, on)
        elif what == "radar":
            await tx.groups.set_radar(g.id, on, dict(g.radar_limits))
            if on and not g.auto_radar:  # planned anew from now, not run at once for the weeks it was off
                await tx.groups.plan_radar([(g.id, g.radar_next_at, None)])
        elif on and not digest:
            await self.add(tx, g, ScheduleKind.DIGEST, self.settings.digest, ctx.event.user, ctx.now)
        elif not on:
            await tx.outbox.withdraw([s.id for s in digest], ctx.now)
            for s in digest:
                await tx.schedules.delete(s.id)
        return Reply(f"Automatic {what} is {value}.")
