"""The outbox: what the bot posts on its own, queued in the transaction that decided it, sent after commit.

A unit of work queues `Post`s; the store keeps them as rows in the same transaction as everything else
the event changed, so either both happen or neither does. The `Dispatcher` then sends the rows, in
order per channel, each with an idempotency key derived from its row (Discord nonce, Matrix
transaction id, console message id). A row whose outcome is unknown (the process died during the
request, or it timed out) is sent again with the same key, so the platform posts it once.

A row goes `pending` -> `posted` (the message exists; its id is saved and linked to its poll) ->
`sent` (its reactions are on it too). Adding a reaction is idempotent, so a row found `posted` after
a crash only has its reactions added again.

A post marked with a decision's `Thread` goes into that thread where there is one (core/threads.py),
its `channel_line` to the channel after it, under a key of its own; a retry sends both again with the
same keys, so each is posted once.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from core import faults
from core.clock import Clock
from core.metrics import NO_METRICS, Metrics
from core.polls import vote_button
from core.ports import Button, DeliveryFailed, NoThread, Outbound
from core.refs import ChannelRef, MessageRef, UserRef
from core.threads import Placement, placement

if TYPE_CHECKING:
    from core.ports import ChatPort, Store

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(hours=1)
# A process that dies holding rows hands them on when their lease runs out: well within a minute.
LEASE = timedelta(seconds=30)
BATCH = 500
# Rows handed over by the unit of work that wrote them are sent in passes of this many (no claim to
# make); what was sent is recorded every `RECORD_EVERY` rows, while the next ones go out.
HANDED_BATCH = 5000
RECORD_EVERY = 500
# How far ahead a tick prepares what comes due (a nudge's post written, leased to the process, held in
# memory), so that at the due time only the sending is left (docs/decisions.md).
AHEAD = timedelta(seconds=60)
FIRST_RETRY = timedelta(seconds=1)
LAST_RETRY = timedelta(minutes=5)


class PostKind(Enum):
    SEND = "send"  # a message in a channel
    REPLY = "reply"  # an answer to a member's message
    DIRECT = "direct"  # a direct message to a member
    DELETE = "delete"  # remove the message `reply_to` (a secret written in public); `text` is empty


class PostState(Enum):
    PENDING = "pending"
    POSTED = "posted"  # the message exists; its reactions may still be missing
    SENT = "sent"
    FAILED = "failed"  # the platform will never accept it (missing permission, unknown channel)
    DROPPED = "dropped"  # older than the outbox's maximum age when it could first be sent


@dataclass(frozen=True, slots=True)
class Thread:
    """A decision's thread, started from the message of a goal's consent poll or of a review: posts
    marked with it go there on platforms that have threads (and the group has them on), else to the
    channel. Stored as `poll:7`, `review:3`."""

    kind: str  # "poll", "review" or "meeting" (an occurrence's id)
    id: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Thread:
        kind, _, number = text.partition(":")
        return cls(kind, int(number))


@dataclass(frozen=True, slots=True)
class Post:
    """A message the bot wants posted, as a unit of work queues it. A post in a thread has no reactions
    and is no poll's or review's message (those are in the channel)."""

    kind: PostKind
    channel: ChannelRef
    text: str
    reply_to: str | None = None  # REPLY: the message answered
    user: UserRef | None = None  # DIRECT: the member written to
    reactions: tuple[str, ...] = ()  # added to the message once it is posted (a poll's options)
    poll_id: int | None = None  # the posted message becomes this poll's message
    group_id: int | None = None
    not_before: datetime | None = None  # held until then (quiet hours); None: at once
    thread: Thread | None = None  # posted in this decision's thread where there is one
    # Buttons under the message (a poll's options, on anonymous polls), labelled so; a press votes.
    buttons: tuple[str, ...] = ()
    # A confirmation that would tie a member to a secret (an anonymous vote or reflection): `poll:7`,
    # `review:3`, `reflection`. Its row is deleted whatever its outcome, never kept as failed, and
    # with everything else sealed by a poll or review when that closes (see core/ballots.py).
    sealed: str | None = None
    # With `thread`: the one line the channel gets when the text goes to the thread (an outcome).
    channel_line: str | None = None
    # With `thread`: the text is only for the thread; where it cannot go there, nothing is posted.
    thread_only: bool = False
    review_id: int | None = None  # the posted message becomes this review's message (its thread's root)
    occurrence_id: int | None = None  # the posted message announces this meeting occurrence (RSVPs)
    # The schedule whose occurrence this is (a nudge): prepared ahead, withdrawn if the schedule is
    # paused, removed or moved before it is due.
    schedule_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A queued post as the store keeps it."""

    id: int
    post: Post
    state: PostState
    created_at: datetime
    not_before: datetime
    attempts: int = 0
    message_id: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key: the same for every attempt at this row, unique per database row."""
        return f"pb{self.id}"

    @property
    def lane(self) -> tuple[str, str]:
        """Rows in one lane are sent in order: a channel, or the direct messages to one member."""
        post = self.post
        if post.kind is PostKind.DIRECT and post.user is not None:
            return (post.channel.platform, f"@{post.user.id}")
        return (post.channel.platform, post.channel.id)


def _not_before(row: OutboxRow) -> datetime:
    return row.not_before


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt: 1 s, 2 s, 4 s ... up to 5 minutes."""
    delay: timedelta = FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 16)
    return min(delay, LAST_RETRY)


@dataclass(slots=True)
class DispatchReport:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    deferred: int = 0


@dataclass
class Dispatcher:
    """Sends the outbox rows of the platforms this process serves.

    Rows are claimed with a lease, so that two processes on one database never send the same row at
    the same time, and a process that dies holding rows hands them on when the lease runs out. The
    owner names the bot instance and the platforms it serves, not the process: restarted, the same
    instance takes its rows back at once.
    """

    store: Store
    clock: Clock
    chats: Mapping[str, ChatPort]
    owner: str
    max_age: timedelta = DEFAULT_MAX_AGE
    lease: timedelta = LEASE
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    total: DispatchReport = field(default_factory=DispatchReport)
    metrics: Metrics = NO_METRICS
    _task: asyncio.Task[None] | None = None
    _again: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _handed: list[OutboxRow] = field(default_factory=list)  # rows `take`n, not yet sent
    _handed_until: datetime | None = None  # the earliest lease (wall clock) of the rows handed
    # Rows `take`n that are not due yet (prepared ahead), by `not_before`: handed on when due. Their
    # leases are kept up by `hold_ahead` while they wait.
    _ahead: list[OutboxRow] = field(default_factory=list)
    _ahead_until: datetime | None = None
    _in_hand: set[int] = field(default_factory=set)
    _unrecorded: list[int] = field(default_factory=list)  # rows sent, not deleted yet
    _recording: asyncio.Task[None] | None = None

    def owner_of(self, platforms: list[str]) -> str:
        return f"{self.owner}/{','.join(platforms)}"[:64]

    def leases(self, posts: Sequence[Post], now: datetime) -> list[tuple[str, datetime] | None]:
        """A new row this process will send at once, or when it comes due within `AHEAD`, is leased to
        it as it is written (`take`); a row due later is left to whichever process claims it then."""
        mine = (self.owner_of(sorted(self.chats)), self.wall() + self.lease)
        return [
            mine if post.channel.platform in self.chats and (post.not_before or now) - now <= AHEAD else None
            for post in posts
        ]

    def take(self, rows: Sequence[OutboxRow], until: datetime) -> None:
        """Rows committed under this process's lease, until then (`leases`): sent by the next pass,
        first; those not due yet once they are."""
        now = self.clock.now()
        later = [r for r in rows if r.not_before > now]
        if len(later) < len(rows):
            self._handed.extend(r for r in rows if r.not_before <= now)
            self._handed_until = min(self._handed_until or until, until)
        if later:  # stable: rows due together keep the order they were queued in
            self._ahead.extend(later)
            self._ahead.sort(key=_not_before)
            self._ahead_until = min(self._ahead_until or until, until)
        self._in_hand.update(r.id for r in rows)

    @property
    def held_ahead(self) -> int:
        """How many rows prepared ahead this process holds, not due yet."""
        return len(self._ahead)

    async def hold_ahead(self) -> None:
        """Keep the leases of the rows prepared ahead, a third of a lease at a time (each tick asks): a
        process that dies holding them hands them on within a lease. Rows withdrawn meanwhile (their
        schedule paused), or taken over, are dropped."""
        wall = self.wall()
        if not self._ahead or self._ahead_until is None or self._ahead_until - wall > self.lease * 2 / 3:
            return
        async with self.store.transaction() as tx:
            held = await tx.outbox.renew(
                self.owner_of(sorted(self.chats)), [r.id for r in self._ahead], wall + self.lease
            )
        gone = {r.id for r in self._ahead if r.id not in held}
        self._ahead = [r for r in self._ahead if r.id in held]
        self._in_hand -= gone
        self._ahead_until = wall + self.lease

    async def let_go(self) -> None:
        """Give up the rows prepared ahead (shutting down): any process claims them when they are due."""
        rows, self._ahead, self._ahead_until = self._ahead, [], None
        self._in_hand.difference_update(r.id for r in rows)
        async with self.store.transaction() as tx:
            await tx.outbox.release(self.owner_of(sorted(self.chats)), [r.id for r in rows])

    async def send_come_due(self) -> None:
        """Send the rows prepared ahead that are due by now, if any, before anything else."""
        if self._ahead and self._ahead[0].not_before <= self.clock.now():
            await self.dispatch()

    def _come_due(self) -> None:
        """Hand on the rows prepared ahead that are due by now."""
        if self._ahead:
            due = bisect.bisect_right(self._ahead, self.clock.now(), key=_not_before)
            if due:
                self._handed.extend(self._ahead[:due])
                del self._ahead[:due]
                until = self._ahead_until or self.wall()
                self._handed_until = min(self._handed_until or until, until)
                if not self._ahead:
                    self._ahead_until = None

    def kick(self) -> None:
        """Send what is pending soon, in the background; many kicks while it runs make one more pass."""
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def settle(self) -> None:
        """Send everything that can be sent now, and wait until it is done."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        await self.dispatch()

    async def _run(self) -> None:
        while self._again:
            self._again = False
            try:
                await self.dispatch()
            except Exception:
                log.exception("sending the outbox failed; the next tick tries again")

    async def dispatch(self) -> DispatchReport:
        """One pass: claim what is due, send it in order per lane, record each outcome."""
        report = DispatchReport()
        platforms = sorted(self.chats)
        if not platforms:
            return report
        async with self._lock:
            self._come_due()
            while True:
                handed = bool(self._handed)
                if handed:
                    rows, self._handed = self._handed[:HANDED_BATCH], self._handed[HANDED_BATCH:]
                    until = self._handed_until
                    if not self._handed:
                        self._handed_until = None
                else:
                    await self._recorded()  # a row sent, not yet deleted, is not claimed again
                    now, wall = self.clock.now(), self.wall()
                    async with self.store.transaction() as tx:
                        claimed = await tx.outbox.claim(
                            platforms, self.owner_of(platforms), now, (wall, wall + self.lease), BATCH
                        )
                    # A row handed over meanwhile is leased to this process too: it is sent from the hand.
                    rows = [r for r in claimed if r.id not in self._in_hand]
                    if not claimed:
                        break
                    until = wall + self.lease
                try:
                    await self._send(rows, report, self.owner_of(platforms), until, checked=not handed)
                finally:  # a row not sent after all is claimed again, as any row
                    self._in_hand.difference_update(r.id for r in rows)
                if not handed and (len(claimed) < BATCH or report.deferred):
                    break
            await self._recorded()
        self.total.sent += report.sent
        self.total.failed += report.failed
        self.total.dropped += report.dropped
        for outcome in ("sent", "failed", "dropped"):
            self.metrics.outbox(outcome, getattr(report, outcome))
        self.metrics.outbox("retried", report.deferred)
        return report

    async def _send(
        self,
        rows: list[OutboxRow],
        report: DispatchReport,
        owner: str,
        until: datetime | None,
        checked: bool = False,
    ) -> None:
        """Send rows held until `until` (None: not known), in order per lane. `checked`: just claimed,
        so still this process's; else, with most of the lease left, they are only looked at."""
        blocked: set[tuple[str, str]] = set()
        sent: set[int] = set()  # plain posts the platform took, recorded or to be (`_unrecorded`)
        done: list[int] = []
        # A row is sent only under a lease this process holds: a batch that takes a while (a slow
        # platform, a busy machine, rows handed over at a big tick) renews the lease of the rows it has
        # still to send, a third of a lease at a time, and skips any whose lease ran out and was taken
        # by another process meanwhile, which sends it.
        held: set[int] = set()
        renewed: datetime | None = None
        # Rows with most of their lease left need no renewing yet: those just claimed are this
        # process's; those handed over (prepared ahead) are looked at, still there (not withdrawn) and
        # still its own.
        if rows and until is not None and until - self.wall() >= self.lease * 2 / 3:
            if checked:
                held = {r.id for r in rows}
            else:
                async with self.store.read() as tx:
                    held = await tx.outbox.held(owner, [r.id for r in rows])
            renewed = until - self.lease
        for i, row in enumerate(rows):
            if row.lane in blocked:
                continue
            wall = self.wall()
            if renewed is None or wall - renewed >= self.lease / 3:
                await self._recorded()
                async with self.store.transaction() as tx:
                    held = await tx.outbox.renew(owner, [r.id for r in rows[i:]], wall + self.lease)
                renewed = wall
            if row.id not in held:
                continue
            if not await self._deliver(row, report, done):
                blocked.add(row.lane)
            if done:
                sent.update(done)
                self._unrecorded += done
                done.clear()
                self._record_soon()
        # What was not sent (its lane waits, it was not held, it failed) is let go at once.
        if unsent := [r.id for r in rows if r.id not in sent]:
            async with self.store.transaction() as tx:
                await tx.outbox.release(owner, unsent)

    def _record_soon(self) -> None:
        """Record what was sent (delete the rows), many at once, in the background: one recording at
        a time; while it runs the next gathers more. Sent again after a crash before that, the posts
        carry the same keys and post once."""
        if len(self._unrecorded) < RECORD_EVERY:
            return
        if self._recording is not None:
            if not self._recording.done():
                return
            self._recording.result()  # a failed recording fails the pass; its rows are recorded next
        ids, self._unrecorded = self._unrecorded, []
        self._recording = asyncio.create_task(self._record(ids))

    async def _record(self, ids: list[int]) -> None:
        try:
            async with self.store.transaction() as tx:
                await tx.outbox.sent(ids)
        except BaseException:
            self._unrecorded += ids
            raise

    async def _recorded(self) -> None:
        """Everything sent so far is recorded."""
        if self._recording is not None:
            task, self._recording = self._recording, None
            await task
        if self._unrecorded:
            ids, self._unrecorded = self._unrecorded, []
            await self._record(ids)

    async def _deliver(self, row: OutboxRow, report: DispatchReport, done: list[int]) -> bool:
        """Send one row; False when it must wait (and the rest of its lane with it)."""
        now = self.clock.now()
        post = row.post
        if row.state is PostState.PENDING and now - row.not_before > self.max_age:
            log.warning(
                "outbox row %d for %s dropped: not sent within %s of %s",
                row.id,
                post.channel.platform,
                self.max_age,
                row.not_before.isoformat(),
            )
            await self._finish(row, PostState.DROPPED, now, "older than the outbox's maximum age")
            report.dropped += 1
            return True
        chat = self.chats[post.channel.platform]
        try:
            message_id = row.message_id
            if row.state is PostState.PENDING:
                ref = await self._post(chat, row)
                faults.reached("outbox.after_send")
                if ref is None or (
                    post.poll_id is None
                    and post.review_id is None
                    and post.occurrence_id is None
                    and not post.reactions
                ):
                    done.append(row.id)
                    report.sent += 1
                    return True
                message_id = ref.id
                async with self.store.transaction() as tx:
                    await tx.outbox.posted(row.id, ref)
                    if post.poll_id is not None:
                        await tx.polls.set_message(post.poll_id, ref)
                    if post.review_id is not None:
                        await tx.reviews.set_message(post.review_id, ref.id)
                    if post.occurrence_id is not None:
                        await tx.meetings.set_message(post.occurrence_id, ref)
                    if not post.reactions:
                        await tx.outbox.finish(row.id, PostState.SENT, now)
                if not post.reactions:
                    report.sent += 1
                    return True
                faults.reached("outbox.after_posted")
            assert message_id is not None
            target = MessageRef(post.channel, message_id)
            for index, emoji in enumerate(post.reactions):
                await chat.react(target, emoji, key=f"{row.key}r{index}")
                faults.reached("outbox.after_reaction")
            await self._finish(row, PostState.SENT, now)
            report.sent += 1
            return True
        except DeliveryFailed as failure:
            if failure.permanent:
                log.error(
                    "outbox row %d to %s %s failed for good: %s",
                    row.id,
                    post.channel.platform,
                    post.channel.id,
                    failure.reason,
                )
                await self._finish(row, PostState.FAILED, now, failure.reason)
                report.failed += 1
                return True
            wait = timedelta(seconds=failure.retry_after) if failure.retry_after else None
            await self._later(row, now, wait, failure.reason)
        except Exception as error:  # the outcome is unknown: try again with the same key
            log.warning(
                "outbox row %d: sending failed (%s); it will be retried", row.id, error, exc_info=True
            )
            await self._later(row, now, None, str(error) or type(error).__name__)
        report.deferred += 1
        return False

    async def _finish(self, row: OutboxRow, state: PostState, now: datetime, reason: str = "") -> None:
        async with self.store.transaction() as tx:
            if row.post.sealed is not None:  # a secret's confirmation is never kept, not even as failed
                await tx.outbox.sent([row.id])
            else:
                await tx.outbox.finish(row.id, state, now, reason[:500])

    async def _later(self, row: OutboxRow, now: datetime, wait: timedelta | None, reason: str) -> None:
        attempts = row.attempts + 1
        when = now + (wait if wait is not None else retry_delay(attempts))
        async with self.store.transaction() as tx:
            await tx.outbox.retry_at(row.id, attempts, when, reason[:500])

    async def _post(self, chat: ChatPort, row: OutboxRow) -> MessageRef | None:
        """Post the row's message; None when there was nothing to post (a thread-only post where the
        thread cannot be had)."""
        post = row.post
        buttons = (
            tuple(Button(vote_button(post.poll_id, i), label) for i, label in enumerate(post.buttons, 1))
            if post.buttons and post.poll_id is not None
            else ()
        )
        message = Outbound(post.text, buttons=buttons)
        if post.kind is PostKind.DELETE and post.reply_to is not None:
            target = MessageRef(post.channel, post.reply_to)
            await chat.delete(target)
            return target
        if post.thread is not None:
            where = await self._thread(chat, post)
            if where is not None:
                try:
                    ref = await chat.send_in_thread(where.root, where.name, message, key=row.key)
                except NoThread as refused:
                    log.warning("outbox row %d goes to the channel: no thread (%s)", row.id, refused.reason)
                else:
                    if post.channel_line:
                        await chat.send(post.channel, Outbound(post.channel_line), key=f"{row.key}c")
                    return ref
            if post.thread_only:
                return None
        if post.kind is PostKind.REPLY and post.reply_to is not None:
            return await chat.reply(MessageRef(post.channel, post.reply_to), message, key=row.key)
        if post.kind is PostKind.DIRECT and post.user is not None:
            return await chat.direct_message(post.user, message, key=row.key)
        return await chat.send(post.channel, message, key=row.key)

    async def _thread(self, chat: ChatPort, post: Post) -> Placement | None:
        """The thread the post goes into, if the platform has threads; None for the channel."""
        if not chat.threads:
            return None
        async with self.store.read() as tx:
            return await placement(tx, post)
