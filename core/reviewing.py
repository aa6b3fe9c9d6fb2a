"""The action review: five questions posted to the group, answers collected, a summary kept."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from core.clock import format_time
from core.commands import Invocation, UsageError, is_blank
from core.context import Context, Handler, PrivateContext, PrivateHandler
from core.events import Reply
from core.lifecycle import CLOSING, Group, Phase
from core.outbox import Post, PostKind, Thread
from core.paging import Item, Listing, one_line
from core.ports import ChatPort, command_prefix
from core.prompts import REVIEW_QUESTIONS
from core.reflections import (
    ANONYMOUS,
    DEFAULT_REVIEW_TIME,
    MAX_REVIEW_TIME,
    Review,
    reflection_line,
    render_review,
    render_summary,
    sealed,
    summary_line,
)
from core.refs import UserRef
from core.reminders import percent, remind_time
from core.schedules import due_time
from core.uow import DomainEvent, PhaseEntered, ReviewClosed, UnitOfWork, Work

log = logging.getLogger(__name__)

# `reflect q3 <answer>` answers question 3 of the open review (`q3:` and `Q3.` too). Without the q, a
# reflection that starts with a number ("3 chapters done today") is a free reflection like any other.
_ANSWER = re.compile(r"q([0-9]+)(?:[.):]\s*|\s+|$)(.*)", re.IGNORECASE | re.DOTALL)
ANSWER_HOW = "reflect q<number> <your answer>"


class ReviewService:
    def __init__(
        self,
        work: Work,
        chats: Mapping[str, ChatPort],
        platforms: Collection[str],
        default_time: timedelta = DEFAULT_REVIEW_TIME,
    ):
        self.work = work
        self.chats = chats
        self.platforms = platforms
        self.default_time = default_time

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("review", "start"): self._start,
            ("review", "summary"): self._summary,
            ("review", "list"): self._list,
            ("reflect",): self._reflect,
        }

    def private_handlers(self) -> Mapping[tuple[str, ...], PrivateHandler]:
        return {("reflect",): self._reflect_privately}

    async def start(
        self, uow: UnitOfWork, group: Group, by: UserRef, duration: timedelta, *, automatic: bool = False
    ) -> Review | None:
        """Start a review and queue its questions; None when one is open already.

        `automatic`: the bot starts it on its own (a move to Assessing): the questions follow the answer
        to the command that moved the group, and wait out quiet hours."""
        if await uow.tx.reviews.open(group.id) is not None:
            return None
        closes = uow.now + duration
        remind_at = remind_time(uow.now, closes, percent(group))
        review = await uow.tx.reviews.create(group.id, by, uow.now, closes, remind_at)
        text = render_review(review, command_prefix(self.chats, group.channel.platform), group.timezone)
        post = Post(PostKind.SEND, group.channel, text, group_id=group.id, review_id=review.id)
        uow.post(post, after_answer=automatic, unprompted=automatic)
        return review

    async def on_phase_entered(self, uow: UnitOfWork, event: DomainEvent) -> str | None:
        """Subscriber: entering Assessing starts a review, unless the group switched that off."""
        assert isinstance(event, PhaseEntered)
        group = event.group
        if event.change.to_phase is not Phase.ASSESSING or not group.auto_review:
            return None
        review = await self.start(uow, group, event.by, self.default_time, automatic=True)
        if review is None:
            return None
        prefix = command_prefix(self.chats, group.channel.platform)
        note = f"Action review {review.id} has started: answer with {prefix}{ANSWER_HOW}."
        if group.quiet is not None and (end := due_time(uow.now, group.timezone, group.quiet)) > uow.now:
            note += f" Its questions come at {format_time(end, group.timezone)}, when quiet hours end."
        return note

    async def close(self, uow: UnitOfWork, review: Review) -> bool:
        """Close once and queue the summary, with what the group's signals now suggest."""
        if not await uow.tx.reviews.close(review.id, uow.now):
            return False
        await uow.tx.outbox.forget_sealed(sealed(review))  # confirmations of anonymous answers not sent
        group = await uow.tx.groups.by_id(review.group_id)
        assert group is not None
        answers = await uow.tx.reviews.reflections(review.group_id, review.id)
        notes = await uow.publish(ReviewClosed(group, review))
        text = "\n".join(
            [render_summary(review, answers, command_prefix(self.chats, group.channel.platform)), *notes]
        )
        # The summary goes into the review's thread, the channel gets a line that says so.
        outcome = "\n".join([summary_line(review, answers), *notes])
        post = Post(PostKind.SEND, group.channel, text, group_id=group.id, channel_line=outcome)
        uow.post(replace(post, thread=Thread("review", review.id)))
        return True

    async def close_due(self, now: datetime) -> int:
        async with self.work(now) as uow:
            due = await uow.tx.reviews.due(now, 100, self.platforms)
        closed = 0
        for review in due:
            try:
                async with self.work(now, unprompted=True) as uow:
                    closed += await self.close(uow, review)
            except Exception:
                log.exception("could not close review %d", review.id)
        return closed

    # Commands ----------------------------------------------------------------------------------

    async def _start(self, ctx: Context, inv: Invocation) -> Reply:
        duration: timedelta = inv.args.get("closes", self.default_time)
        if not timedelta(minutes=5) <= duration <= MAX_REVIEW_TIME:
            raise UsageError("A review stays open between 5 minutes and 32 days.", inv.spec)
        review = await self.start(ctx.uow, ctx.group, ctx.event.user, duration)
        if review is None:
            return Reply(
                f"A review is already open. Answer it with {ctx.prefix}{ANSWER_HOW}.",
                is_error=True,
            )
        return Reply(
            f"Action review {review.id} is open until {format_time(review.closes_at, ctx.group.timezone)}."
        )

    async def _summary(self, ctx: Context, inv: Invocation) -> Reply:
        review = await ctx.tx.reviews.open(ctx.group.id)
        if review is None:
            return Reply(f"No review is open. Start one with {ctx.prefix}review start.", is_error=True)
        await self.close(ctx.uow, review)
        await ctx.tx.groups.record_signal(ctx.group.id, CLOSING, ctx.now, ctx.event.user.key)
        threaded = ctx.chat.threads and ctx.group.auto_threads and review.message_id is not None
        where = "in the review's thread" if threaded else "above"
        return Reply(f"Action review {review.id} is closed; its summary is {where}.")

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        tz = ctx.group.timezone
        items = await ctx.tx.reviews.in_group(ctx.group.id)
        answers: dict[int | None, int] = {}
        for reflection in await ctx.tx.reviews.reflections(ctx.group.id):
            answers[reflection.review_id] = answers.get(reflection.review_id, 0) + 1
        lines = []
        for r in sorted(items, key=lambda r: r.id):
            state = (
                f"closed {format_time(r.closed_at, tz)}"
                if r.closed_at
                else f"open until {format_time(r.closes_at, tz)}"
            )
            lines.append(
                Item(
                    f"  Review {r.id}: started {format_time(r.started_at, tz)} by {r.started_by},"
                    f" {state}, {answers.get(r.id, 0)} answers"
                )
            )
        listing = Listing(
            what="reviews",
            head="Action reviews:",
            items=lines,
            command=f"{ctx.prefix}review list",
            empty=f"No reviews yet. Start one with {ctx.prefix}review start.",
            latest_first=True,
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))

    async def _reflect_privately(self, ctx: PrivateContext, inv: Invocation) -> Reply:
        """A reflection written to the bot directly: for the group named by --group; else the member's
        group with an open review (anonymous reflections belong to reviews), else their one group."""
        groups = list(ctx.groups)
        prefix = ctx.chat.command_prefix
        if not groups:
            raise UsageError(
                f"You are on no group's roster here yet: say {prefix}join in your group's channel first.",
                inv.spec,
            )
        wanted = inv.args.get("group")
        if wanted is not None:
            named = wanted.removeprefix("#").casefold()
            groups = [
                g
                for g in groups
                if named in (g.channel.name.removeprefix("#").casefold(), g.channel.id.casefold())
            ]
            if not groups:
                raise UsageError(f"You are on no group called {one_line(wanted, 40)}.", inv.spec)
        if len(groups) > 1:
            open_now = await ctx.uow.tx.reviews.open_in([g.id for g in groups], ctx.uow.now)
            reviewing = {r.group_id for r in open_now}
            groups = [g for g in groups if g.id in reviewing] or groups
        if len(groups) > 1:
            names = ", ".join(g.channel.name for g in groups)
            raise UsageError(
                f"You are in {len(groups)} groups ({names}): add --group <name> to say which.", inv.spec
            )
        group = groups[0]
        return await self._reflect(ctx.in_group(group), inv)

    async def _reflect(self, ctx: Context, inv: Invocation) -> Reply:
        text = inv.text("text")
        match = _ANSWER.fullmatch(text)
        anonymous = inv.flag("anonymous")
        author = ANONYMOUS if anonymous else ctx.event.user
        if match is None:
            review = await ctx.tx.reviews.open(ctx.group.id) if anonymous else None
            kept = await ctx.tx.reviews.add_reflection(
                ctx.group.id, review.id if review else None, None, author, text, ctx.now
            )
            if anonymous:
                where = f" with action review {review.id}" if review else f" in {ctx.group.channel.name}"
                return Reply(
                    f"Your reflection is kept{where}, without your name.",
                    private=True,
                    sealed=sealed(review) if review else None,
                )
            return Reply(f"Thanks, {ctx.event.user.name}: reflection r{kept.id} kept.")
        digits, answer = match[1], match[2].strip()
        asked = digits if len(digits) <= 6 else digits[:6] + "…"
        review = await ctx.tx.reviews.open(ctx.group.id)
        if review is None:
            raise UsageError(
                f"No action review is open, so there is no question {asked} to answer. Nothing was changed;"
                f" to keep a free reflection, write it without q{asked}.",
                inv.spec,
            )
        significant = digits.lstrip("0")
        number = int(significant or "0") if len(significant) <= 6 else 0
        if not 1 <= number <= len(REVIEW_QUESTIONS):
            raise UsageError(
                f"Action review {review.id} has questions 1 to {len(REVIEW_QUESTIONS)}, not {asked}."
                " Nothing was changed.",
                inv.spec,
            )
        if is_blank(answer):
            raise UsageError(
                f"Write your answer after q{number}: {ctx.prefix}reflect q{number} <your answer>.", inv.spec
            )
        kept = await ctx.tx.reviews.add_reflection(ctx.group.id, review.id, number, author, answer, ctx.now)
        # Gathered in the review's thread, where the group reads them together; in the channel, the
        # command and its answer say it already.
        shared = Post(PostKind.SEND, ctx.group.channel, reflection_line(kept), group_id=ctx.group.id)
        ctx.uow.post(replace(shared, thread=Thread("review", review.id), thread_only=True))
        if anonymous:
            return Reply(
                f"Your answer to question {number} of review {review.id} is kept, without your name.",
                private=True,
                sealed=sealed(review),
            )
        return Reply(
            f"Thanks, {ctx.event.user.name}: answer r{kept.id} to question {number} of review {review.id}."
        )
