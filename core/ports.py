"""The ports the engine talks through. Adapters implement them; the core never sees a platform."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.concerns import Concern
from core.events import Attachment, InboundEvent, Reply
from core.forgetting import Forgotten
from core.goals import Goal, GoalStatus
from core.lifecycle import Group, Phase, PhaseChange, QuietHours
from core.meetings import Meeting, Occurrence, Rsvp, When
from core.members import Contributions, Member, RosterEntry
from core.polls import GroupCounts, Poll, PollKind, PollReaction, PollRequest, ReactionChange
from core.radar import Act
from core.reflections import Reflection, Review
from core.refs import ChannelRef, MessageRef, UserRef
from core.reminders import Unresponded
from core.roles import PoolMember, Role, Rotation, Wrap, WrapState
from core.schedules import DueSchedule, Schedule, ScheduleKind

if TYPE_CHECKING:
    from core.commands import CommandSpec
    from core.outbox import OutboxRow, Post, PostState


@dataclass(frozen=True, slots=True)
class OpenPollPage:
    """A page of open polls' messages; `last`: the id of the last poll read, to read on after it (None:
    no page follows)."""

    messages: list[MessageRef]
    last: int | None


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a message, where the platform has them (Discord): pressing it is the command
    `custom_id` names (`vote:7:2`: core/ballots.py `button_vote`). Elsewhere the text says what to type."""

    custom_id: str
    label: str


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message the bot sends.

    `mentions` is the no-mentions marker: it is always False for text that may hold members'
    words, and adapters must then stop the platform from turning any of it into a ping
    (Discord `allowed_mentions` none, Matrix empty `m.mentions`).
    """

    text: str
    mentions: bool = False
    buttons: tuple[Button, ...] = ()


class DeliveryFailed(Exception):
    """The platform refused a post.

    `permanent`: it will never succeed as it is (missing permission, unknown channel or room), so the
    outbox marks it failed. Otherwise it may succeed later (rate limit, server error, timeout) and is
    retried with the same idempotency key, after `retry_after` seconds when the platform said so.
    """

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


class NoThread(DeliveryFailed):
    """The platform will not start the thread here (the bot may not, in this channel): nothing was
    posted, and the post belongs in the channel instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=True)


class FileTooLarge(DeliveryFailed):
    """The platform takes no file this big here: `limit` is its limit in bytes, when it said."""

    def __init__(self, size: int, limit: int | None, reason: str = "") -> None:
        super().__init__(reason or f"a file of {size} bytes is over the platform's limit", permanent=True)
        self.size = size
        self.limit = limit


class ChatPort(Protocol):
    """What the engine may do on one chat platform.

    `key` is an idempotency key (at most 20 characters of [A-Za-z0-9]): two calls with the same key
    post at most one message, also across restarts of the process. Discord: the message nonce with
    `enforce_nonce`; Matrix: the transaction id; console: the message id the key was given first.
    A message split into parts derives one key per part from it. Failures the platform will never
    accept raise `DeliveryFailed(permanent=True)`.
    """

    @property
    def platform(self) -> str: ...

    @property
    def command_prefix(self) -> str:
        """How members start a command here, for help and usage lines ("/", "!peer ")."""
        ...

    @property
    def interactive_replies(self) -> bool:
        """True when the adapter answers commands itself (Discord interaction responses); otherwise
        the engine queues each answer in the outbox, as a reply to the command's message."""
        ...

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef: ...

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef: ...

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None: ...

    async def edit(self, message: MessageRef, new: Outbound) -> None: ...

    @property
    def threads(self) -> bool:
        """True when a post can go into a thread started from a message (`send_in_thread`)."""
        ...

    async def send_in_thread(
        self, root: MessageRef, name: str, message: Outbound, *, key: str | None = None
    ) -> MessageRef:
        """Post in the thread started from `root`, starting it (named `name`, where threads have names)
        when it has none yet. Idempotent like `send`: starting a thread that exists already is no
        failure; `NoThread` when the platform refuses to start it. Where the platform has no threads
        (`threads` is False) it posts in `root`'s channel."""

    async def delete(self, message: MessageRef) -> None:
        """Remove a member's message (a vote written where everyone reads it): a Matrix redaction. A
        message gone already counts as done; a missing power is `DeliveryFailed(permanent=True)`."""
        ...

    async def direct_message(
        self, user: UserRef, message: Outbound, *, key: str | None = None
    ) -> MessageRef: ...

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool: ...

    async def send_file(
        self,
        channel: ChannelRef,
        file: Attachment,
        summary: Outbound,
        *,
        reply_to: MessageRef | None = None,
        key: str | None = None,
    ) -> MessageRef:
        """Post a file with its one-line summary, in the platform's idiom: an attachment (Discord),
        an uploaded `m.file` after the summary (Matrix), a file written to disk whose path the summary
        line shows (console). Returns the message that holds the file.

        Files do not go through the outbox (see `Engine.run_command`). Raises `FileTooLarge` when the
        platform refuses the file's size, `DeliveryFailed` for other refusals.
        """
        ...

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        """The largest file `send_file` can post in the channel, in bytes; None when none is known."""
        ...


class EventSink(Protocol):
    """What an adapter may call on the core: the engine, or in tests a recorder around it.

    Adapters depend on this, never on the engine itself.
    """

    async def handle(self, event: InboundEvent) -> Reply | None:
        """Apply one event. Commands get a reply; None means nothing to say (or seen before)."""
        ...

    async def handle_batch(
        self,
        events: Sequence[InboundEvent],
        state: StateChanges | None = None,
        posts: Sequence[Post] = (),
    ) -> list[Reply | None]:
        """Apply events in order, then save the adapter's state that covers them (a sync token) with
        the posts the adapter has to make on its own."""
        ...

    def visible_specs(self, platform: str) -> list[CommandSpec]:
        """The commands members of a platform can use, to register or render them."""
        ...

    async def open_poll_messages(self, platform: str) -> list[MessageRef]:
        """The messages of the polls still open on a platform, to reconcile after a gap."""
        ...

    async def open_poll_page(self, platform: str, after: int, limit: int) -> OpenPollPage:
        """One page of `open_poll_messages`: of the open polls with an id after `after`, at most `limit`."""
        ...

    async def reconcile(self, message: MessageRef, present: Mapping[str, Collection[UserRef]]) -> int:
        """Set a poll's votes to the reactions now on its message; the number of votes changed."""
        ...

    async def polls_near(self, message: MessageRef) -> tuple[Poll | None, list[Poll]]:
        """The poll posted as `message`, else the polls open in its channel: to tell a member that a
        reaction landed on no poll."""
        ...

    async def announces_meeting(self, message: MessageRef) -> bool:
        """Whether `message` announces a meeting (its reactions are RSVPs, not votes)."""
        ...


class AdapterFailed(Exception):
    """An adapter cannot go on for a reason the operator must fix (a refused login, a server it cannot
    reach); the message is one line for them."""


@runtime_checkable
class Adapter(Protocol):
    """One chat platform as the composition root runs it.

    `start` logs in or connects, and raises `AdapterFailed` for what the operator must fix. `serve` runs
    until the adapter stops for good (the gateway closed, the console's input ended), feeding its
    `EventSink`; it is cancelled to stop early. `close` releases everything, after a failed start too,
    or with no start at all.
    """

    @property
    def chat(self) -> ChatPort:
        """How the engine posts on this platform."""
        ...

    @property
    def connected(self) -> bool:
        """Connected to the platform now (for `/ready`): False before the start and while a lost
        connection is being made again."""
        ...

    async def start(self) -> None: ...

    async def serve(self) -> None: ...

    async def close(self) -> None: ...


def command_prefix(chats: Mapping[str, ChatPort], platform: str) -> str:
    """How members start a command on a platform; "/" where no adapter for it runs in this process."""
    chat = chats.get(platform)
    return chat.command_prefix if chat is not None else "/"


class OutboxRepo(Protocol):
    """The outbox rows of one transaction (see core/outbox.py)."""

    async def add(
        self, posts: Sequence[Post], at: datetime, lease: tuple[str, datetime] | None = None
    ) -> list[int]:
        """Queue posts in order; returns their row ids. With `lease` (owner, until) the rows are leased
        as they are written, as `claim` would lease them: the process that queued them sends them."""
        ...

    async def claim(
        self,
        platforms: Sequence[str],
        owner: str,
        due_by: datetime,
        lease: tuple[datetime, datetime],
        limit: int,
    ) -> list[OutboxRow]:
        """Lease the oldest rows on these platforms that are due by `due_by` and whose lease has run
        out by `lease[0]`; they stay leased to `owner` until `lease[1]`.

        Leases are in wall-clock time, not the bot's clock: they bound how long a process may hold
        rows, whatever time the bot thinks it is (console `:advance`, tests).
        """
        ...

    async def release(self, owner: str, row_ids: Sequence[int]) -> None:
        """Give up the lease on rows still unfinished, so they can be taken again at once."""
        ...

    async def renew(self, owner: str, row_ids: Sequence[int], until: datetime) -> set[int]:
        """Hold the lease on these rows until then; returns those still leased to `owner` (a row whose
        lease ran out may have been claimed by another process meanwhile: it is theirs now)."""
        ...

    async def held(self, owner: str, row_ids: Sequence[int]) -> set[int]:
        """Which of these rows are still there and leased to `owner` (a read: the lease unchanged)."""
        ...

    async def posted(self, row_id: int, message: MessageRef) -> None:
        """The message exists on the platform: remember its id (reactions may still follow)."""
        ...

    async def finish(self, row_id: int, state: PostState, at: datetime, reason: str = "") -> None:
        """Sent rows are deleted; failed and dropped ones are kept, with their reason."""
        ...

    async def retry_at(self, row_id: int, attempts: int, when: datetime, reason: str) -> None: ...

    async def sent(self, row_ids: Sequence[int]) -> None:
        """Plain posts the platform has: delete them, many at once."""
        ...

    async def forget_sealed(self, sealed: str) -> int:
        """Delete the rows sealed with this secret (`poll:7`), sent or not; returns how many."""
        ...

    async def withdraw(self, schedule_ids: Collection[int], now: datetime) -> int:
        """Delete the unsent posts of these schedules that are not due by `now` (prepared ahead, or held
        for quiet hours): the schedule was paused, removed or moved. Returns how many."""
        ...

    async def ahead(self, schedule_ids: Collection[int], now: datetime) -> dict[int, datetime]:
        """When the earliest unsent post of each of these schedules that is not due by `now` goes (a
        prepared occurrence); schedules without one left out."""
        ...

    async def rows(self, states: Sequence[PostState] = ()) -> list[OutboxRow]:
        """Every row (or those in the given states), oldest first: for operators and tests."""
        ...

    async def counts(self) -> dict[PostState, int]:
        """How many rows are in each state (states without rows left out): the outbox's depth
        (pending) and what failed or was dropped, for operators."""
        ...


class EventLog(Protocol):
    """Inbound events: which were applied, and those that failed (dead letters)."""

    async def claim(self, platform: str, event_id: str, at: datetime) -> bool:
        """Record an inbound event as applied; False when it was applied before."""
        ...

    async def claim_many(self, platform: str, event_ids: Sequence[str], at: datetime) -> set[str]:
        """Record many events as applied; returns the ids that were not applied before."""
        ...

    async def record_failed(self, platform: str, event_id: str, at: datetime, reason: str) -> None:
        """Keep an event that could not be applied (a dead letter), and mark it applied so it is skipped."""
        ...

    async def failed(self, limit: int) -> list[tuple[datetime, str, str, str]]:
        """(time, platform, event id, reason) of failed events, newest first."""
        ...

    async def prune(self, before: datetime) -> int:
        """Forget applied-event ids older than `before` (past every platform's replay window)."""
        ...


class GroupRepo(Protocol):
    """Groups, their phases and settings, and what they did (activity, signals)."""

    async def get(self, channel: ChannelRef) -> Group | None: ...

    async def by_id(self, group_id: int) -> Group | None: ...

    async def many(self, group_ids: Sequence[int]) -> dict[int, Group]: ...

    async def create(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group: ...

    async def record_phase_change(self, change: PhaseChange) -> None:
        """Append the change to the history and move the group to its new phase."""
        ...

    async def phase_history(self, group_id: int, limit: int | None = None) -> list[PhaseChange]:
        """The most recent `limit` changes (all of them without a limit), oldest first."""
        ...

    async def set_settings(
        self, group_id: int, goal_quorum: int | None, decision_window: timedelta | None
    ) -> None: ...

    async def record_signal(self, group_id: int, kind: str, at: datetime, detail: str) -> None:
        """Remember something the group did that later phase advice weighs (a goal accepted...)."""
        ...

    async def set_timezone(self, group_id: int, tz: str) -> None: ...

    async def set_quiet_hours(self, group_id: int, quiet: QuietHours | None) -> None: ...

    async def set_auto(self, group_id: int, auto_review: bool, auto_checkin: bool) -> None: ...

    async def set_threads(self, group_id: int, on: bool) -> None:
        """Whether the group's decisions get threads (`auto threads on|off`)."""
        ...

    async def set_remind_window(self, group_id: int, percent: int | None) -> None:
        """The last share of a consent poll's or review's time in which members are reminded, in percent;
        0 for none, None for the default (core/reminders.py)."""
        ...

    async def set_welcome_text(self, group_id: int, text: str) -> None:
        """The group's own words for newcomers; empty for none."""
        ...

    async def claim_welcome(self, group_id: int, now: datetime, until: datetime) -> bool:
        """Open a welcome window until `until`, unless one is open at `now` (then False): of two joins
        at once, in one process or two, exactly one is welcomed at once."""
        ...

    async def touch_activity(self, group_id: int, at: datetime) -> None: ...

    async def quiet(self, silent_since: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        """Groups on these platforms with no activity after `silent_since` whose silence has not had
        its heartbeat."""
        ...

    async def claim_heartbeat(self, group_id: int, at: datetime) -> bool:
        """Mark the group's silence as answered; False if another process did it first."""
        ...

    async def signals(self, group_id: int, since: datetime) -> list[tuple[str, datetime, str]]: ...

    async def signals_in_phase(self, group_ids: Sequence[int]) -> dict[int, list[str]]:
        """The kinds of the signals each group recorded since it entered its phase, oldest first."""
        ...

    async def set_advised(self, group_id: int, at: datetime) -> None:
        """Phase advice was given then (at most one a week)."""
        ...

    async def set_radar(self, group_id: int, auto: bool, limits: Mapping[str, int]) -> None:
        """Whether the weekly radar runs, and the group's own thresholds (the rest are defaults)."""
        ...

    async def radar_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        """Groups on these platforms with the radar on whose weekly radar is due by `now`, or is not
        planned yet; by id."""
        ...

    async def plan_radar(self, moves: Sequence[tuple[int, datetime | None, datetime | None]]) -> set[int]:
        """(group id, the radar time we saw, the next one): a compare-and-swap, so that of two
        processes exactly one runs a group's radar. Returns the ids that moved."""
        ...

    async def record_findings(self, findings: Sequence[tuple[int, str, str]], at: datetime) -> None:
        """Keep what the radar told: (group id, kind, subject); a subject is a member's key,
        "goal:<id>" or ""."""
        ...

    async def told(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, dict[tuple[str, str], datetime]]:
        """What the radar told each group since then: (kind, subject) -> when last."""
        ...


class StateRepo(Protocol):
    """Bookkeeping of one namespace (an adapter's sync tokens, records), kept in the same
    transactions as the effects it covers."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def get_many(self, keys: Collection[str]) -> dict[str, str]:
        """The values of those keys that are set."""
        ...

    async def update(self, changes: Mapping[str, str | None]) -> None:
        """Set many keys at once; a value of None deletes its key."""
        ...

    async def batch_applied(self, batch_id: str) -> bool:
        """Whether a batch the platform pushed under this id (a Matrix appservice transaction) was
        applied: its id was recorded with the state that covers its events."""
        ...

    async def record_batch(self, batch_id: str) -> None:
        """Record a pushed batch's id as applied (recording it again changes nothing)."""
        ...

    async def forget_batches(self, keep: int) -> int:
        """Forget all but the `keep` latest recorded batch ids of the namespace; how many went."""
        ...


@dataclass(frozen=True, slots=True)
class StateChanges:
    """Bookkeeping an adapter saves with the events it covers (a sync token, reaction records):
    keys of its namespace and their new values; None deletes a key. `batch_id` is the platform's id
    of a pushed batch, recorded in the same transaction, so that the batch pushed again is known."""

    namespace: str
    values: Mapping[str, str | None]
    batch_id: str | None = None

    async def save(self, tx: StoreTx) -> None:
        state = tx.state(self.namespace)
        if self.batch_id is not None:
            await state.record_batch(self.batch_id)
        if self.values:
            await state.update(self.values)


class PollRepo(Protocol):
    """Polls and the votes on them."""

    async def create(
        self,
        group_id: int,
        kind: PollKind,
        request: PollRequest,
        author: UserRef,
        at: datetime,
        remind_at: datetime | None = None,
    ) -> Poll:
        """A poll open from `at` for the request's duration; its reminders due at `remind_at`."""
        ...

    async def set_message(self, poll_id: int, message: MessageRef) -> None: ...

    async def delete(self, poll_id: int) -> None:
        """Forget a poll whose message could not be posted."""
        ...

    async def get(self, group_id: int, poll_id: int) -> Poll | None: ...

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Poll]: ...

    async def record_reactions(self, poll_id: int, changes: Sequence[ReactionChange]) -> None:
        """Apply reaction changes in order; each gets the next sequence number of its poll."""
        ...

    async def reactions(self, poll_id: int) -> list[PollReaction]: ...

    async def close(self, poll_id: int, at: datetime, *, skip_locked: bool = False) -> bool:
        """Close an open poll, with no reminder due any more, and destroy its key if it is anonymous;
        False when it was closed already (by us or another process). `skip_locked` (the tick): also
        False, at once, when another transaction holds the poll (another process is closing it, or
        votes on it are being written); the next tick sees it again if it is still open."""
        ...

    async def secret(self, poll_id: int) -> bytes | None:
        """The key of an open anonymous poll's votes (made with it); None once it closed, or for a poll
        whose votes are reactions."""
        ...

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        """(poll id, when its reminders are due; None: none): replan after the window changed."""
        ...

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        """The polls on these platforms, still open at `now`, whose reminders are due by then, their
        reminder time cleared: the earliest first.

        The clearing is the claim, a compare-and-swap: a poll whose reminder another process claimed
        meanwhile (or that was replanned to later) is not returned, so of two processes exactly one
        reminds. The polls come back as they are after the claim.
        """
        ...

    async def unvoted(self, poll_ids: Collection[int]) -> dict[int, Unresponded]:
        """For each of these polls, in one read: how many are on its group's roster, and who of them has
        no vote (a present reaction) on it, in the order they joined; every poll asked is a key."""
        ...

    async def everyone_voted(self, poll_ids: Collection[int]) -> set[int]:
        """Of these polls, those on which every member on their group's roster (one at least) has a vote,
        in one read. It stops at the first member without one, so that a poll far from complete, the
        common case, costs next to nothing however large its group."""
        ...

    async def open_on(
        self, platform: str, now: datetime, after: int = 0, limit: int | None = None
    ) -> list[Poll]:
        """Polls on a platform that are open at `now`, by id: those after the id `after`, at most `limit`."""
        ...

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        """Open polls on these platforms whose closing time has come."""
        ...

    async def in_group(self, group_id: int) -> list[Poll]:
        """All the group's polls, oldest first."""
        ...

    async def newest_in_group(
        self, group_id: int, kinds: Collection[PollKind], offset: int = 0, limit: int | None = None
    ) -> list[Poll]:
        """The group's polls of these kinds, newest (the highest id) first: after the `offset` newest,
        `limit` of them (None: all the rest). The group's page reads one page of its polls so."""
        ...

    async def kinds_in_group(self, group_id: int) -> dict[PollKind, tuple[int, datetime]]:
        """By kind (kinds without a poll left out): how many polls the group has, and when the first of
        them opened, without reading them."""
        ...

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_voted_by: UserRef | None = None
    ) -> list[Poll]:
        """The polls open at `now` in these groups, in one read: closing soonest first, then by id.
        With `not_voted_by`, only those the member has not voted on (no present reaction on any option)."""
        ...

    async def open_voter_counts(self, group_ids: Collection[int], now: datetime) -> dict[int, int]:
        """How many members have voted (a present reaction) on each poll open at `now` in these groups,
        in one read; polls nobody has voted on are left out."""
        ...

    async def reactions_of(self, poll_ids: Sequence[int]) -> dict[int, list[PollReaction]]:
        """The reactions of many polls at once (polls without any are left out)."""
        ...

    async def counts_in_group(self, group_id: int, poll_ids: Collection[int] | None = None) -> GroupCounts:
        """Every poll of the group tallied as `tally` does, in one read: for the group's page. With
        `poll_ids`, only those of them (ids of other groups' polls count nothing)."""
        ...

    async def voter_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        """The votes on the group's polls by the week each poll opened in, the weeks given by when each
        begins, in order: by the index of its week (the first also takes any before it, the last any after;
        weeks without votes left out), how many votes (a member counts once in a poll, as a voter) and the
        voters' keys. Anonymous polls are left out: who voted on them is not to be known."""
        ...

    async def names_choosing(self, poll_ids: Sequence[int], option: int) -> dict[int, list[str]]:
        """By poll, the names of the members whose vote counts for `option` (polls without any left out)."""
        ...


class GoalRepo(Protocol):
    """The group's goals."""

    async def create(
        self,
        group_id: int,
        text: str,
        proposer: UserRef,
        at: datetime,
        put_forward_by: UserRef | None = None,
        reshapes: int | None = None,
    ) -> Goal:
        """A proposed goal, owned by `proposer`; put forward by them, or by `put_forward_by` for them
        (a goal made from their reflection); a new version of goal `reshapes` (`goal amend`)."""
        ...

    async def set_poll(self, goal_id: int, poll_id: int | None) -> None: ...

    async def get(self, group_id: int, goal_id: int) -> Goal | None: ...

    async def for_poll(self, poll_id: int) -> Goal | None: ...

    async def for_polls(self, poll_ids: Collection[int]) -> dict[int, Goal]:
        """The goals whose consent polls these are, by poll id; polls of no goal are left out."""
        ...

    async def set_status(self, goal_id: int, status: GoalStatus, at: datetime) -> None: ...

    async def in_group(self, group_id: int) -> list[Goal]:
        """All the group's goals, oldest first."""
        ...

    async def of_groups(
        self, group_ids: Sequence[int], statuses: Collection[GoalStatus]
    ) -> dict[int, list[Goal]]:
        """The goals of many groups in these statuses, oldest first (groups without any left out)."""
        ...


class ConcernRepo(Protocol):
    """Concerns members voiced about goals (core/concerns.py), and whom a consent poll asked for one."""

    async def add(
        self, group_id: int, goal_id: int, text: str, author: UserRef | None, at: datetime
    ) -> Concern:
        """A concern by `author`, or with None an anonymous one: stored with no trace of who wrote it."""
        ...

    async def get(self, group_id: int, concern_id: int) -> Concern | None: ...

    async def of_goals(self, goal_ids: Collection[int]) -> dict[int, list[Concern]]:
        """The concerns of these goals, each goal's oldest first, in one read (goals without any left out)."""
        ...

    async def address(self, concern_id: int, by: UserRef, note: str, at: datetime) -> bool:
        """Mark a concern addressed, with a note; False when it was addressed already (a compare-and-swap:
        of two facilitators at once, one wins)."""
        ...

    async def claim_asks(self, asks: Collection[tuple[int, str]], at: datetime) -> set[tuple[int, str]]:
        """Record that these members (poll id, member key) are asked for their concern on these polls, in
        one write; returns those not asked before, so that nobody is asked twice on one poll, across
        restarts and processes."""
        ...


class ScheduleRepo(Protocol):
    """Nudges, digests and check-ins on a schedule, and the record of what was delivered."""

    async def create(
        self,
        group_id: int,
        kind: ScheduleKind,
        cron: str,
        description: str,
        text: str | None,
        created_by: UserRef,
        at: datetime,
        next_occurrence: datetime | None,
        next_due_at: datetime | None,
    ) -> Schedule: ...

    async def get(self, group_id: int, schedule_id: int) -> Schedule | None: ...

    async def in_group(self, group_id: int) -> list[Schedule]: ...

    async def delete(self, schedule_id: int) -> None: ...

    async def set_paused(self, schedule_id: int, paused: bool) -> None: ...

    async def set_cron(self, schedule_id: int, cron: str, description: str) -> None:
        """A new schedule (a cadence the group agreed on); the caller sets its next time."""
        ...

    async def set_next(self, updates: Sequence[tuple[int, datetime | None, datetime | None]]) -> None:
        """(schedule id, next occurrence, next due time): recompute after a settings change."""
        ...

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        """Unpaused schedules of groups on these platforms whose next due time has come, earliest first.

        On a database several processes share, the rows are locked for this transaction and rows another
        transaction holds are passed over: processes ticking together take different schedules.
        """
        ...

    async def claim(self, claims: Sequence[tuple[int, datetime]]) -> set[int]:
        """Mark (schedule id, its next occurrence) delivered, its next occurrence to be planned later
        (`to_plan`): a compare-and-swap, so only a schedule still due at that occurrence is claimed, and
        of two processes exactly one claims it. Returns the ids claimed."""
        ...

    async def to_plan(self, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        """Schedules whose last occurrence was delivered and whose next one is not planned yet (their
        `next_occurrence` is the one delivered, `due_at` None, `delivered_at` when the delivery was
        recorded), in no particular order; locked as `due` locks them."""
        ...

    async def set_planned(
        self, updates: Sequence[tuple[int, datetime, datetime | None, datetime | None]]
    ) -> None:
        """(schedule id, the occurrence delivered, the next occurrence, its due time), for schedules
        `to_plan` returned; one still waiting for its plan at that occurrence takes it."""
        ...

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        """Move schedules on: (id, the next occurrence we saw, the new one, its due time).

        A compare-and-swap: a schedule moves only if its next occurrence is still the one we saw, so of
        two processes planning the same occurrence exactly one wins it. Returns the ids that moved.
        """
        ...

    async def record_deliveries(self, keys: Sequence[tuple[int, datetime]], at: datetime) -> None:
        """Keep a row per delivered (schedule, occurrence), the record of what was posted."""
        ...


class MeetingRepo(Protocol):
    """Meetings, their next occurrences (announced, reminded, started) and members' RSVPs."""

    async def create(self, group_id: int, title: str, when: When, by: UserRef, at: datetime) -> Meeting: ...

    async def get(self, group_id: int, meeting_id: int) -> Meeting | None: ...

    async def in_group(self, group_id: int) -> list[Meeting]:
        """The group's meetings, cancelled ones too, by id."""
        ...

    async def cancel(self, meeting_id: int, at: datetime) -> bool:
        """Cancel once; also deletes its occurrences that have not started. False: cancelled already."""
        ...

    async def set_when(self, meeting_id: int, when: When) -> None:
        """A new time (a cadence change); the caller plans its next occurrence anew."""
        ...

    async def set_skips(self, meeting_id: int, days: Sequence[str]) -> None: ...

    async def add_occurrence(self, occurrence: Occurrence) -> Occurrence:
        """Store a planned occurrence (its id given by the store)."""
        ...

    async def occurrences(self, meeting_ids: Collection[int]) -> list[Occurrence]:
        """Every stored occurrence of these meetings, earliest first."""
        ...

    async def delete_ahead(self, meeting_id: int, now: datetime) -> None:
        """Delete the meeting's occurrences that have not started by `now` (and their RSVPs)."""
        ...

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Occurrence]:
        """Occurrences of meetings not cancelled, in groups on these platforms, whose next step is due."""
        ...

    async def move(self, occurrence: Occurrence, seen: datetime | None) -> bool:
        """Save the occurrence's flags and next due time, if its next due time is still `seen`: the claim
        (compare-and-swap), so of two processes exactly one does a step."""
        ...

    async def set_message(self, occurrence_id: int, message: MessageRef) -> None: ...

    async def occurrence(self, occurrence_id: int) -> Occurrence | None: ...

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Occurrence]:
        """The occurrences announced as these messages."""
        ...

    async def ahead_with_messages(self, platform: str, now: datetime) -> list[Occurrence]:
        """Announced occurrences on the platform that have not started: their RSVPs still move."""
        ...

    async def set_rsvps(self, changes: Sequence[tuple[int, UserRef, str | None]], at: datetime) -> None:
        """(occurrence id, member, choice or None to take it back): one RSVP per member and occurrence."""
        ...

    async def rsvps(self, occurrence_ids: Collection[int]) -> list[Rsvp]: ...

    async def forget(self, user: UserRef) -> int:
        """The member's RSVPs count on under a fresh anonymous key each, by a former member; meetings they
        added are by a former member. Returns how many items changed."""
        ...


class ReviewRepo(Protocol):
    """Action reviews and the reflections members write, in a review or on their own."""

    async def create(
        self, group_id: int, by: UserRef, at: datetime, closes_at: datetime, remind_at: datetime | None = None
    ) -> Review: ...

    async def open(self, group_id: int) -> Review | None: ...

    async def get(self, group_id: int, review_id: int) -> Review | None: ...

    async def set_message(self, review_id: int, message_id: str) -> None:
        """The review's questions were posted as this message (in its group's channel)."""
        ...

    async def close(self, review_id: int, at: datetime) -> bool:
        """Close an open review, with no reminder due any more; False when it was closed already."""
        ...

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        """(review id, when its reminders are due; None: none): replan after the window changed."""
        ...

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]:
        """As `PollRepo.claim_reminders`, for the reviews of groups on these platforms."""
        ...

    async def unanswered(self, review_ids: Collection[int]) -> dict[int, Unresponded]:
        """As `PollRepo.unvoted`, for the members who answered no question of each review."""
        ...

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]: ...

    async def in_group(self, group_id: int) -> list[Review]: ...

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_answered_by: UserRef | None = None
    ) -> list[Review]:
        """The reviews open at `now` (not closed, and before their closing time) in these groups, in one
        read: closing soonest first, then by id. With `not_answered_by`, only those the member has
        answered no question of (a free reflection answers none)."""
        ...

    async def add_reflection(
        self,
        group_id: int,
        review_id: int | None,
        question: int | None,
        user: UserRef,
        text: str,
        at: datetime,
    ) -> Reflection: ...

    async def get_reflection(self, group_id: int, reflection_id: int) -> Reflection | None: ...

    async def reflections(self, group_id: int, review_id: int | None = None) -> list[Reflection]:
        """The group's reflections (of one review when given), oldest first."""
        ...

    async def answer_counts(self, group_id: int) -> dict[int, tuple[int, int]]:
        """By review of the group (reviews without answers left out): how many answers it has, and how
        many of them answer question 5."""
        ...

    async def reflection_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        """The group's reflections by week, the weeks given by when each begins, in order: by the index
        of its week (the first also takes any before it; weeks without reflections left out), how many
        there are and their authors' keys."""
        ...

    async def reflections_since(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, list[Reflection]]:
        """The reflections of many groups written since then, oldest first (groups without any left out)."""
        ...


class RoleRepo(Protocol):
    """The group's roles (core/roles.py), who holds them, their rotation pools, and the weekly wraps."""

    async def ensure(
        self, group_id: int, built_in: Sequence[tuple[str, str]], at: datetime, week: datetime | None
    ) -> None:
        """Add the built-in roles the group does not have yet, looked at next at `week`."""
        ...

    async def in_group(self, group_id: int) -> list[Role]:
        """The group's roles, built-in ones first, then in the order they were added."""
        ...

    async def get(self, group_id: int, name: str) -> Role | None: ...

    async def add(
        self, group_id: int, name: str, duty: str, at: datetime, week: datetime | None
    ) -> Role | None:
        """A role of the group's own; None when the group has one of that name already."""
        ...

    async def remove(self, role_id: int) -> None:
        """The role goes, with its pool."""
        ...

    async def set_holder(self, role_id: int, holder: UserRef | None, at: datetime, expected: str) -> bool:
        """Hand the role to `holder` (None: it is free), if its holder's key is still `expected` ("" for a
        free role): a compare-and-swap, so of two members taking a free role at once, one gets it.
        A holder in the role's pool has it counted there (held at `at`, once more)."""
        ...

    async def set_rotation(self, role_id: int, rotation: Rotation, next_turn_at: datetime | None) -> None: ...

    async def pools(self, role_ids: Collection[int]) -> dict[int, list[PoolMember]]:
        """The pools of these roles, each in the order members joined (empty ones left out)."""
        ...

    async def join_pool(self, role_id: int, user: UserRef, at: datetime) -> bool:
        """False when the member is in the pool already."""
        ...

    async def leave_pool(self, role_id: int, key: str) -> bool:
        """False when the member was not in the pool."""
        ...

    async def week_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Role]:
        """Roles of groups on these platforms whose week boundary has come, by group, each group's in the
        order they were added."""
        ...

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        """(role id, the week boundary seen, the next one, the next turn): a compare-and-swap on the
        boundary seen, so that of two processes exactly one moves a role on. Returns the ids moved."""
        ...

    async def add_wrap(
        self,
        group_id: int,
        week_end: datetime,
        wrapper: UserRef,
        at: datetime,
        state: WrapState,
        *,
        digest: str = "",
        fallback_at: datetime | None = None,
        text: str = "",
    ) -> Wrap: ...

    async def wraps(self, group_id: int) -> list[Wrap]:
        """The group's wraps, newest first."""
        ...

    async def open_wrap(self, group_id: int, key: str) -> Wrap | None:
        """The member's newest draft not wrapped yet, if any."""
        ...

    async def wrap(self, wrap_id: int, text: str, at: datetime) -> bool:
        """Keep the wrapper's summary; False when the week was wrapped already."""
        ...

    async def fallbacks_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Wrap]:
        """Drafts not wrapped whose day is up, of groups on these platforms."""
        ...

    async def lapse(self, wrap_ids: Collection[int]) -> set[int]:
        """Mark drafts still not wrapped as lapsed (a compare-and-swap); returns those marked."""
        ...

    async def digest_to_wrapper(self, group_id: int, since: datetime) -> bool:
        """The group has a wrapper (the role is held), or a wrap drafted since then: its weekly digest
        goes to the wrapper as a draft, not to the group."""
        ...


class MemberRepo(Protocol):
    """The group's members: the roster (core/members.py), and what they did across every aggregate
    that names them."""

    async def add(self, group_id: int, user: UserRef, at: datetime, intro: str = "") -> Member:
        """Put a newcomer on the roster, active `at`."""
        ...

    async def add_many(self, group_id: int, users: Sequence[UserRef], at: datetime) -> list[Member]:
        """Put newcomers on the roster, active `at`, in one go (a burst of first votes); in order."""
        ...

    async def get(self, group_id: int, key: str) -> Member | None:
        """The member with this key, on the roster or once on it."""
        ...

    async def roster(self, group_id: int) -> list[Member]:
        """The members on the group's roster, in the order they first joined."""
        ...

    async def rosters(self, group_ids: Sequence[int]) -> dict[int, list[RosterEntry]]:
        """The rosters of many groups at once, each in the order members first joined (empty ones left
        out), with what the radar weighs."""
        ...

    async def acts(self, group_ids: Sequence[int], since: datetime) -> dict[int, list[Act]]:
        """What members did since then that steers each group (core/radar.py): goals they put forward,
        what they closed, phase moves. The bot's and forgotten members' acts are left out."""
        ...

    async def buddies(self, group_id: int, active_since: datetime) -> list[Member]:
        """The members on the roster who offer to be a buddy and were active since then."""
        ...

    async def of_user(self, user: UserRef) -> list[Member]:
        """The member's places on rosters of groups on their platform, in the order they joined."""
        ...

    async def set_left(self, member_id: int, at: datetime | None) -> None:
        """Off the roster from `at`; None puts them back on it (their first join is kept)."""
        ...

    async def record_activity(self, group_id: int, keys: Collection[str], at: datetime) -> set[str]:
        """Note that these members were active `at` (those on the roster); returns the keys the group
        knows, on its roster or once on it, so the caller can tell newcomers."""
        ...

    async def save_settings(self, member: Member) -> None:
        """Keep a member's name, intro, and private, buddy and reminders flags as given."""
        ...

    async def pair(self, newcomer_id: int, buddy: Member, at: datetime) -> None:
        """Make `buddy` the newcomer's buddy; the buddy was last given a newcomer `at`."""
        ...

    async def hold_welcomes(self, member_ids: Sequence[int], until: datetime) -> None:
        """The members' welcome waits until then (see `claim_welcomes`)."""
        ...

    async def claim_welcomes(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Member]:
        """The members on these platforms whose welcome is due by `now`, no longer waiting: of two
        processes, each gets a member at most once. Ordered by group, then by when they joined."""
        ...

    async def contributions(self, group_id: int, since: datetime) -> dict[str, Contributions]:
        """What each member did in the group since then, by key: goals proposed, polls voted in
        (opened since then), reflections. Members who did nothing are left out."""
        ...

    async def forget(self, user: UserRef) -> Forgotten:
        """Forget a member on their platform, as core/forgetting.py describes: off every roster, out of
        every buddy pair, and out of the radar's record (what it told of them, what they closed), among
        the rest.

        Rows are found by the member's key; rows kept before keys were stored beside names (schedules
        and reviews of databases older than revision 0005) by the names the member is stored under.
        """
        ...


def state_prefix(namespace: str) -> str:
    """How a namespace's keys are stored: "matrix" keeps "next_batch" as "matrix.next_batch"."""
    if not namespace or "." in namespace:
        raise ValueError(f"a state namespace is one word without dots, not {namespace!r}")
    return namespace + "."


class StoreTx(Protocol):
    """One transaction: a repository per aggregate. Everything done through it commits together or
    not at all."""

    @property
    def events(self) -> EventLog: ...

    @property
    def groups(self) -> GroupRepo: ...

    @property
    def polls(self) -> PollRepo: ...

    @property
    def goals(self) -> GoalRepo: ...

    @property
    def concerns(self) -> ConcernRepo: ...

    @property
    def schedules(self) -> ScheduleRepo: ...

    @property
    def reviews(self) -> ReviewRepo: ...

    @property
    def members(self) -> MemberRepo: ...

    @property
    def roles(self) -> RoleRepo: ...

    @property
    def outbox(self) -> OutboxRepo: ...

    @property
    def meetings(self) -> MeetingRepo: ...

    def state(self, namespace: str) -> StateRepo:
        """Bookkeeping of one adapter ("matrix", "discord", "console") or of the core ("core")."""
        ...

    async def next_due_time(
        self, platforms: Collection[str], heartbeat_after: timedelta | None = None
    ) -> datetime | None:
        """The earliest moment anything on these platforms is due: a schedule, a poll or review closing
        or its reminders, a post waiting in the outbox (held for quiet hours, or to be retried), a welcome
        waiting for the joins that share it, and with `heartbeat_after` (the silence that earns a
        heartbeat) a group's heartbeat."""
        ...


class ReadOnly(Exception):
    """Something tried to write in a read transaction (`Store.read`): a bug in the code, never a
    member's doing. Nothing of the write is kept."""


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[StoreTx]:
        """A read-write transaction. On SQLite, the store's transactions take turns (one writer)."""
        ...

    def read(self) -> AbstractAsyncContextManager[StoreTx]:
        """A read-only transaction on one snapshot of the data, for long reads (an export).

        It never waits for writers and never makes them wait: on SQLite it does not take the store's
        write turn, and WAL lets writers commit while it reads; on PostgreSQL it is READ ONLY and
        REPEATABLE READ. What commits after its first read is not seen in it. A write in it raises
        `ReadOnly`.
        """
        ...
