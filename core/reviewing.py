"""The action review: five questions posted to the group, answers collected, a summary kept."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from core.clock import format_time
from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import Reply
from core.lifecycle import Group
from core.ports import ChatPort, Outbound, Store
from core.reflections import (
    DEFAULT_REVIEW_TIME,
    MAX_REVIEW_TIME,
    Review,
    render_review,
    render_summary,
)
from core.refs import UserRef

log = logging.getLogger(__name__)

REVIEW_CLOSED_SIGNAL = "review_closed"
_ANSWER = re.compile(r"^([1-5])[.):]?\s+(\S.*)$", re.DOTALL)


class ReviewService:
    def __init__(
        self, store: Store, chats: Mapping[str, ChatPort], default_time: timedelta = DEFAULT_REVIEW_TIME
    ):
        self.store = store
        self.chats = chats
        self.default_time = default_time

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("review", "start"): self._start,
            ("review", "summary"): self._summary,
            ("review", "list"): self._list,
            ("reflect",): self._reflect,
        }

    async def start(self, group: Group, by: UserRef, now: datetime, duration: timedelta) -> Review | None:
        """Start a review and post its questions; None when one is open already."""
        async with self.store.transaction() as tx:
            if await tx.open_review(group.id) is not None:
                return None
            review = await tx.create_review(group.id, by, now, now + duration)
        chat = self.chats[group.channel.platform]
        await chat.send(group.channel, Outbound(render_review(review, chat.command_prefix, group.timezone)))
        return review

    async def close(self, review: Review, now: datetime) -> bool:
        """Close once and post the summary, with a suggestion to move on to Changing."""
        async with self.store.transaction() as tx:
            if not await tx.close_review(review.id, now):
                return False
            group = await tx.get_group_by_id(review.group_id)
            answers = await tx.reflections(review.group_id, review.id)
            await tx.record_signal(review.group_id, REVIEW_CLOSED_SIGNAL, now, str(review.id))
        assert group is not None
        chat = self.chats.get(group.channel.platform)
        if chat is None:
            return True
        text = render_summary(review, answers, chat.command_prefix)
        if group.phase.value != "changing":
            text += (
                "\nSuggestion: with the review done, the group may be ready for Changing: deciding what"
                f" to do differently. A facilitator can say {chat.command_prefix}phase set changing."
            )
        await chat.send(group.channel, Outbound(text))
        return True

    async def close_due(self, now: datetime) -> int:
        async with self.store.transaction() as tx:
            due = await tx.due_reviews(now, 100)
        closed = 0
        for review in due:
            try:
                closed += await self.close(review, now)
            except Exception:
                log.exception("could not close review %d", review.id)
        return closed

    # Commands ----------------------------------------------------------------------------------

    async def _start(self, ctx: Context, inv: Invocation) -> Reply:
        duration: timedelta = inv.args.get("closes", self.default_time)
        if not timedelta(minutes=5) <= duration <= MAX_REVIEW_TIME:
            raise UsageError("A review stays open between 5 minutes and 32 days.", inv.spec)
        review = await self.start(ctx.group, ctx.event.user, ctx.now, duration)
        if review is None:
            return Reply(
                f"A review is already open. Answer it with {ctx.prefix}reflect <number> <answer>.",
                is_error=True,
            )
        return Reply(
            f"Action review {review.id} is open until {format_time(review.closes_at, ctx.group.timezone)}."
        )

    async def _summary(self, ctx: Context, inv: Invocation) -> Reply:
        async with self.store.transaction() as tx:
            review = await tx.open_review(ctx.group.id)
        if review is None:
            return Reply(f"No review is open. Start one with {ctx.prefix}review start.", is_error=True)
        await self.close(review, ctx.now)
        return Reply(f"Action review {review.id} is closed; its summary is above.")

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        async with self.store.transaction() as tx:
            items = await tx.list_reviews(ctx.group.id)
            counts = [len(await tx.reflections(ctx.group.id, r.id)) for r in items]
        if not items:
            return Reply(f"No reviews yet. Start one with {ctx.prefix}review start.")
        lines = ["Action reviews:"]
        for r, n in zip(items, counts, strict=True):
            state = (
                f"closed {format_time(r.closed_at, ctx.group.timezone)}"
                if r.closed_at
                else f"open until {format_time(r.closes_at, ctx.group.timezone)}"
            )
            lines.append(
                f"  Review {r.id}: started {format_time(r.started_at, ctx.group.timezone)} by {r.started_by},"
                f" {state}, {n} answers"
            )
        return Reply("\n".join(lines))

    async def _reflect(self, ctx: Context, inv: Invocation) -> Reply:
        text = inv.text("text")
        async with self.store.transaction() as tx:
            review = await tx.open_review(ctx.group.id)
            match = _ANSWER.match(text)
            if review is not None and match:
                number, answer = int(match[1]), match[2].strip()
                kept = await tx.add_reflection(
                    ctx.group.id, review.id, number, ctx.event.user, answer, ctx.now
                )
                return Reply(
                    f"Thanks, {ctx.event.user.name}: answer r{kept.id}"
                    f" to question {number} of review {review.id}."
                )
            kept = await tx.add_reflection(ctx.group.id, None, None, ctx.event.user, text, ctx.now)
        return Reply(f"Thanks, {ctx.event.user.name}: reflection r{kept.id} kept.")
