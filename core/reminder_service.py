"""Reminders in the chat: `remind window`, `remind me`, and the tick step that sends what is due."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import Reply
from core.goals import GoalStatus
from core.lifecycle import Group
from core.outbox import Post, PostKind
from core.polls import Poll, PollKind
from core.ports import ChatPort, command_prefix
from core.reflections import Review
from core.reminders import (
    DEFAULT_PERCENT,
    OFF,
    Absent,
    Planned,
    describe_window,
    goal_line,
    goal_reminder,
    parse_window,
    percent,
    replan,
    review_line,
    review_reminder,
)
from core.schedules import due_time
from core.uow import UnitOfWork, Work, quiet_hold

log = logging.getLogger(__name__)

_Item = TypeVar("_Item", Poll, Review)  # an item with reminders

BATCH = 500


class ReminderService:
    def __init__(self, work: Work, chats: Mapping[str, ChatPort], platforms: Collection[str]) -> None:
        self.work = work
        self.chats = chats
        self.platforms = platforms  # the platforms this process serves (a live view)
        self.reminded = 0  # items reminded by this process, for benchmarks and tests

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {("remind", "window"): self._window, ("remind", "me"): self._me}

    # Time --------------------------------------------------------------------------------------

    async def remind_due(self, now: datetime) -> int:
        """Send the reminders due by `now`, consent polls first, then reviews; returns how many items
        were reminded.

        Each batch of items is one unit of work: clearing their reminder times (the claim, so that of
        two processes exactly one reminds), and the posts queued in the outbox, commit together. A batch
        that fails is rolled back, claims included, and tried again at the next tick.
        """
        reminded = 0
        for batch in (self._polls, self._reviews):
            while True:
                try:
                    async with self.work(now, unprompted=True) as uow:
                        claimed, done = await batch(uow)
                except Exception:
                    log.exception("could not send reminders; the next tick tries again")
                    break
                reminded += done
                if claimed < BATCH:
                    break
        self.reminded += reminded
        return reminded

    async def _polls(self, uow: UnitOfWork) -> tuple[int, int]:
        """One batch of consent polls: (claimed, reminded)."""
        tx, now = uow.tx, uow.now
        polls = await tx.polls.claim_reminders(now, BATCH, self.platforms)
        consent = [p for p in polls if p.kind is PollKind.CONSENT]
        goals = await tx.goals.for_polls([p.id for p in consent])
        undecided = [p for p in consent if p.id in goals and goals[p.id].status is GoalStatus.PROPOSED]
        groups = await tx.groups.many(sorted({p.group_id for p in undecided}))
        due = self._in_time(undecided, groups, now)
        unvoted = await tx.polls.unvoted([p.id for p in due])
        done = 0
        for poll in due:
            group, goal, waiting = groups[poll.group_id], goals[poll.id], unvoted[poll.id]
            missing = waiting.absent
            if missing:
                where, tz = group.channel.name, group.timezone
                line = goal_line(goal.id, len(missing), waiting.roster, poll.closes_at, tz)
                dm = goal_reminder(
                    goal.id, goal.text, poll.id, where, poll.closes_at, tz, self._prefix(group)
                )
                self._send(uow, group, missing, line, dm)
                done += 1
        return len(polls), done

    async def _reviews(self, uow: UnitOfWork) -> tuple[int, int]:
        """One batch of action reviews: (claimed, reminded)."""
        tx, now = uow.tx, uow.now
        reviews = await tx.reviews.claim_reminders(now, BATCH, self.platforms)
        groups = await tx.groups.many(sorted({r.group_id for r in reviews}))
        due = self._in_time(reviews, groups, now)
        unanswered = await tx.reviews.unanswered([r.id for r in due])
        done = 0
        for review in due:
            group, waiting = groups[review.group_id], unanswered[review.id]
            missing = waiting.absent
            if missing:
                where, tz = group.channel.name, group.timezone
                line = review_line(review.id, len(missing), waiting.roster, review.closes_at, tz)
                dm = review_reminder(review.id, where, review.closes_at, tz, self._prefix(group))
                self._send(uow, group, missing, line, dm)
                done += 1
        return len(reviews), done

    @staticmethod
    def _in_time(items: Sequence[_Item], groups: Mapping[int, Group], now: datetime) -> list[_Item]:
        """The items whose reminders can go out before they close: one that its group's quiet hours would
        hold until it has closed is dropped (docs/decisions.md)."""
        kept = [
            i
            for i in items
            if due_time(now, groups[i.group_id].timezone, groups[i.group_id].quiet) < i.closes_at
        ]
        if len(kept) < len(items):
            log.info("%d reminders dropped: quiet hours last past their closing", len(items) - len(kept))
        return kept

    @staticmethod
    def _send(uow: UnitOfWork, group: Group, missing: Sequence[Absent], line: str, direct: str) -> None:
        """Queue the group's line, and the direct message to each member who has not responded and takes
        reminders; both held until the group's quiet hours end."""
        held = quiet_hold(group, uow.now)
        channel = group.channel
        uow.post(Post(PostKind.SEND, channel, line, group_id=group.id, not_before=held), placed=True)
        for member in missing:
            if member.reminders:
                dm = Post(
                    PostKind.DIRECT, channel, direct, user=member.user, group_id=group.id, not_before=held
                )
                uow.post(dm, placed=True)

    def _prefix(self, group: Group) -> str:
        return command_prefix(self.chats, group.channel.platform)

    # Commands ----------------------------------------------------------------------------------

    async def _window(self, ctx: Context, inv: Invocation) -> Reply:
        group, prefix = ctx.group, ctx.prefix
        raw = inv.text("percent")
        current = percent(group)
        if not raw:
            if current == OFF:
                return Reply(
                    f"Reminders are off in {group.channel.name}. A facilitator can switch them on with"
                    f" {prefix}remind window {DEFAULT_PERCENT}%."
                )
            default = " (the default)" if group.remind_window is None else ""
            return Reply(
                f"Reminders come in the last {current}% of a consent poll's or action review's time{default}:"
                " each member on the roster who has not voted or answered by then gets one direct"
                f" message, and the group a line saying how many. {prefix}remind me off stops your own."
            )
        if not ctx.is_facilitator:
            return ctx.refuse(inv)
        try:
            new = parse_window(raw)
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        tx, now = ctx.tx, ctx.now
        await tx.groups.set_remind_window(group.id, new)
        polls = [
            p for p in await tx.polls.in_group(group.id) if p.kind is PollKind.CONSENT and p.is_open(now)
        ]
        planned = [Planned(p.id, p.created_at, p.closes_at, p.remind_at) for p in polls]
        await tx.polls.set_remind_at(replan(planned, current, new, now))
        review = await tx.reviews.open(group.id)
        if review is not None and now < review.closes_at:
            item = Planned(review.id, review.started_at, review.closes_at, review.remind_at)
            await tx.reviews.set_remind_at(replan([item], current, new, now))
        if new == OFF:
            return Reply(
                "Reminders are off: nobody is reminded of open goals or reviews."
                f" {prefix}remind window {DEFAULT_PERCENT}% brings them back."
            )
        return Reply(
            f"Reminders now come in the last {describe_window(new)} of a consent poll's or action review's"
            " time, for the goals and reviews open now too."
        )

    async def _me(self, ctx: Context, inv: Invocation) -> Reply:
        tx, group, prefix = ctx.tx, ctx.group, ctx.prefix
        where = group.channel.name
        member = await tx.members.get(group.id, ctx.event.user.key)
        if member is None or not member.on_roster:
            return Reply(f"You are not on the roster of {where}: {prefix}join first.")
        value = inv.args.get("value")
        off_here = f" Reminders are off in {where} for now, for everyone." if percent(group) == OFF else ""
        if value is None:
            if member.reminders:
                return Reply(
                    f"You get a direct message before a goal or review in {where} closes if you have not"
                    f" voted or answered yet. {prefix}remind me off stops them.{off_here}"
                )
            return Reply(f"You get no reminders from {where}. {prefix}remind me on brings them back.")
        on = value == "on"
        await tx.members.save_settings(replace(member, reminders=on))
        if on:
            return Reply(
                f"You will get a reminder by direct message before a goal or review in {where} closes,"
                f" if you have not voted or answered yet.{off_here}"
            )
        return Reply(f"You will get no more reminders from {where}. {prefix}remind me on brings them back.")
