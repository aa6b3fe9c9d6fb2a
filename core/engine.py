"""The engine: turns neutral events into units of work, and does what comes due on the tick."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from core import dead_letters
from core.activity import touch
from core.ballots import SECRET
from core.batches import Batches
from core.clock import Clock
from core.commands import COMMANDS, CommandSpec, Invocation, UsageError, parse_options, parse_text, refusal
from core.concern_service import ConcernService
from core.context import Context, Handler, PrivateContext, PrivateHandler, Reader, Reading
from core.dashboard import DashboardService, DashboardSettings
from core.events import (
    Attachment,
    CommandInvoked,
    InboundEvent,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    ReactionAdded,
    ReactionEvent,
    ReactionRemoved,
    Reply,
)
from core.export import export, too_big
from core.feedback import PollService
from core.forgetting import forget_me
from core.help import Help, usage_reply, visible_on
from core.lifecycle import Group, Phase, PhaseChange
from core.lifecycle_service import LifecycleService
from core.log_context import about
from core.meeting_service import MeetingService, MeetingSettings
from core.member_service import MemberService
from core.metrics import DUPLICATE, ERROR, FAILED, NO_METRICS, OK, Metrics
from core.newcomer_service import NewcomerService
from core.nudging import NudgeService, NudgeSettings
from core.outbox import DEFAULT_MAX_AGE, Dispatcher, Post, PostKind
from core.pending_service import PendingService
from core.polls import Poll
from core.ports import (
    ChatPort,
    DeliveryFailed,
    FileTooLarge,
    OpenPollPage,
    Outbound,
    StateChanges,
    Store,
    StoreTx,
)
from core.radar_service import RadarService
from core.reflections import DEFAULT_REVIEW_TIME
from core.refs import ChannelRef, MessageRef, UserRef
from core.reminder_service import ReminderService
from core.reviewing import ReviewService
from core.roadmap import GoalRules, GoalService
from core.role_service import RoleService
from core.schedules import Recurrence
from core.uow import (
    Bus,
    GoalDecided,
    GoalFinished,
    MemberIntroduced,
    MembersArrived,
    PhaseEntered,
    PollClosed,
    ReviewClosed,
    UnitOfWork,
    VotesRecorded,
    Work,
)
from core.votes import VoteRecorder, reconcile_poll

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=7)  # longer than any platform replays events
# Commands that do not count as activity in the group, so never put the member on its roster: `join`
# does that itself, with the member's words; `leave` and `forget-me` must never add them back.
NOT_ACTIVITY = frozenset({("join",), ("leave",), ("forget-me",)})
# A secret command's event id, as recorded: this, then a hash of the platform's id (see `_sealed`).
SEALED_EVENT = "sealed-"


class MissingHandler(Exception):
    """A command is declared without a handler: the bot must not start."""


class _Refused(Exception):
    """A handler answered with an error: its unit of work is rolled back, so that a refusal or bad input
    changes nothing (not even the member's place on the roster), and the answer is given on its own."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


async def ensure_group(tx: StoreTx, channel: ChannelRef, now: datetime) -> Group:
    """The channel's group, created in Convening on first use."""
    group = await tx.groups.get(channel)
    if group is None:
        group = await tx.groups.create(channel, Phase.CONVENING, now)
        await tx.groups.record_phase_change(
            PhaseChange(group.id, None, Phase.CONVENING, now, "peerbot", "group started")
        )
    return group


class Engine:
    """The services wired to one bus and one handler table: the `EventSink` the adapters feed, and what
    the ticker drives."""

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
        outbox_max_age: timedelta = DEFAULT_MAX_AGE,
        retention: timedelta = DEFAULT_RETENTION,
        instance: str | None = None,
        metrics: Metrics = NO_METRICS,
        dashboard: DashboardSettings | None = None,
        meetings: MeetingSettings | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.specs = tuple(specs)
        self.retention = retention
        self.chats: dict[str, ChatPort] = {}
        platforms = self.chats.keys()  # a live view: adapters attach after construction
        # Which bot instance this is, for outbox leases; a restart of the same instance resumes its rows.
        owner = instance or uuid.uuid4().hex
        self.dispatcher = Dispatcher(store, clock, self.chats, owner, outbox_max_age, metrics=metrics)
        bus = Bus()
        self.work = Work(store, clock, bus, self.dispatcher)
        self.members = MemberService()
        self.newcomers = NewcomerService(self.work, self.chats, platforms)
        self.votes = VoteRecorder(self.work, self._reacted, metrics=metrics)
        self.lifecycle = LifecycleService(self.chats)
        self.polls = PollService(self.work, self.chats)
        self.goals = GoalService(self.polls, goal_rules or GoalRules())
        self.meetings = MeetingService(
            self.work,
            self.chats,
            platforms,
            recurrence,
            self.polls,
            self.goals.rules,
            meetings or MeetingSettings(),
        )
        self.concerns = ConcernService(self.chats)
        self.nudges = NudgeService(
            self.work, self.chats, platforms, recurrence, nudges or NudgeSettings(), metrics
        )
        self.reviews = ReviewService(self.work, self.chats, platforms, review_time)
        self.reminders = ReminderService(self.work, self.chats, platforms)
        self.radar = RadarService(
            self.work, self.chats, platforms, recurrence, self.nudges.settings.digest, self.lifecycle
        )
        self.roles = RoleService(self.work, self.chats, platforms, recurrence, self.nudges.settings.digest)
        self.batches = Batches(self.work, self.votes, self.handle)
        bus.table = {
            PollClosed: (self.goals.decide, self.polls.announce, self.meetings.on_poll_closed),
            VotesRecorded: (self.concerns.ask, self.goals.decide_early),
            GoalDecided: (self.lifecycle.on_goal_decided,),
            GoalFinished: (self.lifecycle.on_goal_finished,),
            PhaseEntered: (self.reviews.on_phase_entered, self.nudges.on_phase_entered),
            ReviewClosed: (self.lifecycle.on_review_closed,),
            MembersArrived: (self.newcomers.on_members_arrived,),
            MemberIntroduced: (self.lifecycle.on_introduced,),
        }
        help_ = Help(self.specs)
        pending = PendingService()
        self.handlers: dict[tuple[str, ...], Handler] = {
            **help_.handlers(),
            **self.lifecycle.handlers(),
            **self.polls.handlers(),
            **self.goals.handlers(),
            **self.concerns.handlers(),
            **self.nudges.handlers(),
            **self.meetings.handlers(),
            **self.reviews.handlers(),
            **self.members.handlers(),
            **self.newcomers.handlers(),
            **self.reminders.handlers(),
            **pending.handlers(),
            **self.radar.handlers(),
            **DashboardService(dashboard).handlers(),
            **self.roles.handlers(),
            ("forget-me",): forget_me,
        }
        # Commands written privately that concern the member, not one group: they need no group.
        self.private_handlers: dict[tuple[str, ...], PrivateHandler] = {
            **help_.private_handlers(),
            **pending.private_handlers(),
            **self.polls.private_handlers(),
            **self.reviews.private_handlers(),
            **self.concerns.private_handlers(),
            ("forget-me",): forget_me,
        }
        for path in (("timezone",), ("quiet-hours",)):  # meetings keep their local time too
            self.handlers[path] = self.meetings.after_settings(self.handlers[path])
        # Commands that only read: they run in a read transaction, never making writers wait.
        self.readers: dict[tuple[str, ...], Reader] = {("export",): export}
        missing = [s.name for s in self.specs if s.path not in self.handlers and s.path not in self.readers]
        if missing:
            raise MissingHandler(f"commands declared without a handler: {', '.join(missing)}")
        self._last_prune: datetime | None = None
        for chat in chats:
            self.attach(chat)

    async def _reacted(self, uow: UnitOfWork, events: Sequence[ReactionEvent]) -> None:
        """What a batch of reactions means besides votes: members' activity, and RSVPs to meetings."""
        await self.members.reacted(uow, events)
        await self.meetings.on_reactions(uow, events)

    def attach(self, chat: ChatPort) -> None:
        self.chats[chat.platform] = chat

    def visible_specs(self, platform: str) -> list[CommandSpec]:
        return visible_on(self.specs, platform)

    # Inbound -----------------------------------------------------------------------------------

    async def handle(self, event: InboundEvent) -> Reply | None:
        """Apply one inbound event. Commands get a reply; None means nothing to say."""
        if isinstance(event, CommandInvoked):
            return await self._apply_command(event)
        if isinstance(event, ReactionAdded | ReactionRemoved):
            await self.votes.submit(event)
        elif isinstance(event, MessagePosted):
            async with self.work() as uow:
                group = await uow.tx.groups.get(event.channel)
                if group is not None:
                    await touch(uow.tx, group, uow.now)
                    await self.members.seen(uow, group, event.user)
        elif isinstance(event, MemberJoined | MemberLeft):
            await self._membership(event)
        return None

    async def _membership(self, event: MemberJoined | MemberLeft) -> None:
        """A member joined or left the channel on the platform. A join in a channel without a group
        starts one, as a command does; a leave there changes nothing."""
        async with self.work() as uow:
            if not await uow.tx.events.claim(event.channel.platform, event.event_id, uow.now):
                self.metrics.events_deduplicated(1)
                return
            if isinstance(event, MemberJoined):
                group = await ensure_group(uow.tx, event.channel, uow.now)
                await self.members.joined(uow, group, event.user)
            elif (left := await uow.tx.groups.get(event.channel)) is not None:
                await self.members.left(uow, left, event.user)

    async def _apply_command(self, event: CommandInvoked) -> Reply | None:
        """Run a command; one that keeps failing is recorded as failed, and the member told so. Log lines
        written meanwhile name the group, the command and the event; the command is counted by outcome."""
        parsed = self._parse(event)
        invocation = parsed if isinstance(parsed, Invocation) else None
        event = self._sealed(event, invocation)
        name = invocation.spec.name if invocation is not None else "unknown"
        group = f"{event.channel.platform}:{event.channel.id}"
        with about(group=group, command=name, event_id=event.event_id):
            try:
                reply = await dead_letters.attempts(lambda: self.run_command(event, parsed), event)
            except dead_letters.GaveUp as gave_up:
                self.metrics.command(name, FAILED)
                return await self._dead_letter(event, gave_up.failure)
            if reply is None:
                self.metrics.events_deduplicated(1)
            outcome = DUPLICATE if reply is None else ERROR if reply.is_error else OK
            self.metrics.command(name, outcome)
            log.debug("command %s: %s", name, outcome)
            return reply

    def _parse(self, event: CommandInvoked) -> Invocation | UsageError | None:
        """The command an event invokes, parsed once for the whole run: the invocation, or why the input
        is bad; None for a platform with no adapter here."""
        chat = self.chats.get(event.channel.platform)
        if chat is None:
            return None
        specs = self.visible_specs(chat.platform)
        try:
            if event.options is None:
                return parse_text(specs, event.text)
            return parse_options(specs, event.text, event.options)
        except UsageError as error:
            return error

    @staticmethod
    def _sealed(event: CommandInvoked, invocation: Invocation | None) -> CommandInvoked:
        """The event as the bot records and logs it: a secret command's id (an anonymous vote's) is
        replaced by a hash, so that no record of applied or failed events, and no log line, holds the
        platform's id of the member's message."""
        if invocation is None or not invocation.secret:
            return event
        digest = hashlib.sha256(f"{event.channel.platform}:{event.event_id}".encode()).hexdigest()
        return replace(event, event_id=SEALED_EVENT + digest[:40])

    async def _withhold(self, event: CommandInvoked, chat: ChatPort, inv: Invocation) -> Reply | None:
        """A secret written where the group reads it (a vote in a Matrix room): not applied, the message
        removed where the bot may, and a notice, naming nobody and nothing of what it said, on how to
        say it privately."""
        command = f"{chat.command_prefix}{inv.spec.name}"
        reply = Reply(
            f"{command} is private: written here, everyone can read it, so it was not applied, and the"
            f" bot removes the message where it may. Write {command} to the bot directly instead.",
            is_error=True,
        )
        async with self.work() as uow:
            if not await uow.tx.events.claim(chat.platform, event.event_id, uow.now):
                return None
            if event.message is not None:
                uow.post(Post(PostKind.DELETE, event.channel, "", reply_to=event.message.id, sealed=SECRET))
            uow.post(Post(PostKind.SEND, event.channel, reply.text))
            here = f"Write {command} here: only you and the bot read this conversation."
            uow.post(Post(PostKind.DIRECT, event.channel, here, user=event.user, sealed=SECRET))
        return reply

    async def _dead_letter(self, event: CommandInvoked, failure: Exception) -> Reply:
        """Record a command that cannot be applied as failed, and tell the member so."""
        reply = Reply(dead_letters.SORRY, is_error=True)
        async with self.work() as uow:
            await dead_letters.record(uow.tx, event, failure, uow.now)
            self._answer(uow, event, reply)
        return reply

    async def handle_batch(
        self,
        events: Sequence[InboundEvent],
        state: StateChanges | None = None,
        posts: Sequence[Post] = (),
    ) -> list[Reply | None]:
        """Apply a batch from one read of a platform, in order, saving the adapter's state (a sync
        token) after the events it covers, with the posts the adapter has to make on its own: see
        core/batches.py."""
        return await self.batches.apply(events, state, posts)

    async def run_command(
        self, event: CommandInvoked, parsed: Invocation | UsageError | None
    ) -> Reply | None:
        """Run a command as `_parse` read it."""
        chat = self.chats[event.channel.platform]
        structured = event.options is not None
        if isinstance(parsed, UsageError):
            return await self._answer_only(event, usage_reply(parsed, chat.command_prefix, structured))
        assert parsed is not None  # the platform has an adapter: it was parsed
        invocation = parsed
        spec = invocation.spec
        channel = event.channel
        if invocation.secret and not event.direct and not chat.interactive_replies:
            return await self._withhold(event, chat, invocation)
        if event.direct:
            private = self.private_handlers.get(spec.path)
            if private is not None:
                return await self._run_private(private, event, chat, invocation)
            found = await self._direct_group(event, chat, invocation)
            if isinstance(found, Reply):
                return await self._answer_only(event, found)
            channel = found.channel  # the command is the group's, answered privately
        # Asked before the transaction: a platform may need a request to know (Matrix power levels).
        by_platform = spec.checks_facilitator and await chat.is_facilitator(event.user, channel)
        reader = self.readers.get(spec.path)
        if reader is not None:
            return await self._run_reader(reader, event, chat, invocation, by_platform, channel)
        handler = self.handlers[spec.path]
        try:
            async with self.work() as uow:
                if not await uow.tx.events.claim(chat.platform, event.event_id, uow.now):
                    log.info("skipping event %s seen before", event.event_id)
                    return None
                uow.answered_apart = chat.interactive_replies
                group = await self._enter(uow, event, channel, invocation)
                facilitator = await self._facilitates(uow, group, event, chat, invocation, by_platform)
                reply = await handler(Context(event, chat, group, uow, facilitator), invocation)
                if reply.is_error:
                    raise _Refused(reply)
                self._answer(uow, event, reply)
                return reply
        except UsageError as error:  # nothing the handler did is kept
            return await self._answer_only(event, usage_reply(error, chat.command_prefix, structured))
        except _Refused as refused:  # nor is anything when it answers with an error (a refusal)
            return await self._answer_only(event, refused.reply)

    async def _facilitates(
        self,
        uow: UnitOfWork,
        group: Group,
        event: CommandInvoked,
        chat: ChatPort,
        inv: Invocation,
        by_platform: bool,
    ) -> bool:
        """Whether the member facilitates for this command: the platform says so, or they are the
        group's facilitator of the week (or, for a review's summary, its notetaker). A command for
        facilitators only is refused (`_Refused`: nothing of the unit of work is kept)."""
        spec = inv.spec
        facilitator = spec.checks_facilitator and (
            by_platform or await self.roles.facilitates(uow.tx, group, event.user, spec.path)
        )
        if spec.facilitator_only and not facilitator:
            raise _Refused(Reply(refusal(inv, chat.command_prefix), is_error=True))
        return facilitator

    async def _enter(
        self, uow: UnitOfWork, event: CommandInvoked, channel: ChannelRef, inv: Invocation
    ) -> Group:
        """The group a command runs in (started on first use), with the command noted as activity in
        it, unless it was written privately. A secret (an anonymous vote, pressed on a Discord button)
        is no member's activity: when they were last seen would tell when they voted."""
        group = await ensure_group(uow.tx, channel, uow.now)
        if not event.direct:
            await touch(uow.tx, group, uow.now)
            if inv.spec.path not in NOT_ACTIVITY and not inv.secret:
                await self.members.seen(uow, group, event.user)
        return group

    async def _run_private(
        self, handler: PrivateHandler, event: CommandInvoked, chat: ChatPort, inv: Invocation
    ) -> Reply | None:
        """A command written privately that concerns the member, not one group (`help`, `pending`,
        `forget-me`)."""
        try:
            async with self.work() as uow:
                if not await uow.tx.events.claim(chat.platform, event.event_id, uow.now):
                    return None
                groups = await self._groups_of(uow.tx, event.user)
                reply = await handler(PrivateContext(event, chat, uow, groups), inv)
                self._answer(uow, event, reply)
                return reply
        except UsageError as error:
            return await self._answer_only(event, usage_reply(error, chat.command_prefix))

    @staticmethod
    async def _groups_of(tx: StoreTx, user: UserRef) -> list[Group]:
        """The groups whose roster the member is on, on their platform, in the order they joined."""
        places = await tx.members.of_user(user)
        groups = await tx.groups.many([m.group_id for m in places])
        return [groups[m.group_id] for m in places if m.group_id in groups]

    async def _direct_group(self, event: CommandInvoked, chat: ChatPort, inv: Invocation) -> Group | Reply:
        """The group a group's command written privately is for: the member's one group on the
        platform; else the answer that says why there is none."""
        async with self.work() as uow:
            groups = await self._groups_of(uow.tx, event.user)
        if len(groups) == 1:
            return groups[0]
        command = f"{chat.command_prefix}{inv.spec.name}"
        if not groups:
            return Reply(
                f"You are on no group's roster here yet, so {command} has no group to work on: say it in"
                f" the group's channel (or {chat.command_prefix}join there first).",
                is_error=True,
            )
        names = ", ".join(g.channel.name for g in groups)
        return Reply(
            f"You are in {len(groups)} groups here ({names}): say {command} in the channel of the group"
            " you mean.",
            is_error=True,
        )

    async def _run_reader(
        self,
        reader: Reader,
        event: CommandInvoked,
        chat: ChatPort,
        inv: Invocation,
        by_platform: bool,
        channel: ChannelRef,
    ) -> Reply | None:
        """Run a command that only reads (an export).

        The event is claimed in a short unit of work, then the reading is done in a read transaction,
        which never makes writers wait (`Store.read`). A file it answers with is sent at once, not
        through the outbox: the outbox keeps what a committed change must post, and a read changed
        nothing; holding megabytes in the database would cost a long write. If the process dies
        before the file is sent, the member asks again; a failed send is answered with why.
        """
        try:
            async with self.work() as uow:
                if not await uow.tx.events.claim(chat.platform, event.event_id, uow.now):
                    log.info("skipping event %s seen before", event.event_id)
                    return None
                group = await self._enter(uow, event, channel, inv)
                facilitator = await self._facilitates(uow, group, event, chat, inv, by_platform)
                now = uow.now
        except _Refused as refused:
            return await self._answer_only(event, refused.reply)
        try:
            async with self.store.read() as tx:
                reply = await reader(Reading(event, chat, group, tx, now, facilitator), inv)
        except UsageError as error:
            reply = usage_reply(error, chat.command_prefix, event.options is not None)
        except Exception as error:  # the event is claimed already: trying again would skip it
            log.exception("command %s failed while reading", event.event_id)
            return await self._dead_letter(event, error)
        if reply.file is not None and not chat.interactive_replies:
            failed = await self._send_file(chat, event, reply.file, reply.text)
            if failed is None:
                return reply
            reply = failed
        if not chat.interactive_replies:
            async with self.work() as uow:
                self._answer(uow, event, reply)
        return reply

    @staticmethod
    async def _send_file(chat: ChatPort, event: CommandInvoked, file: Attachment, text: str) -> Reply | None:
        """Send a file with its summary: None when it was sent, else what to answer instead."""
        # One key per command event: the platform posts the file once however often the adapter retries.
        key = "f" + hashlib.sha256(f"{event.channel.platform}:{event.event_id}".encode()).hexdigest()[:19]
        try:
            await chat.send_file(event.channel, file, Outbound(text), reply_to=event.message, key=key)
        except FileTooLarge as refused:
            return Reply(too_big(file.size, refused.limit), is_error=True)
        except Exception as error:
            reason = error.reason if isinstance(error, DeliveryFailed) else type(error).__name__
            log.warning("could not send %s to %s: %s", file.filename, event.channel.id, reason, exc_info=True)
            return Reply(
                f"Sorry, the file could not be sent ({reason[:200]}). Try again later.", is_error=True
            )
        return None

    async def _answer_only(self, event: CommandInvoked, reply: Reply) -> Reply | None:
        """Answer a command that changes nothing; it still counts as applied."""
        async with self.work() as uow:
            if not await uow.tx.events.claim(event.channel.platform, event.event_id, uow.now):
                return None
            self._answer(uow, event, reply)
        return reply

    def _answer(self, uow: UnitOfWork, event: CommandInvoked, reply: Reply) -> None:
        """Queue the answer, unless the adapter answers in its own idiom (Discord interactions). A
        private answer to a command written in a channel goes to the member by direct message."""
        if self.chats[event.channel.platform].interactive_replies:
            return
        sealed = reply.sealed or (SECRET if event.event_id.startswith(SEALED_EVENT) else None)
        if event.direct or reply.private:
            uow.post(Post(PostKind.DIRECT, event.channel, reply.text, user=event.user, sealed=sealed))
        elif event.message is not None:
            uow.post(Post(PostKind.REPLY, event.channel, reply.text, reply_to=event.message.id))
        else:
            uow.post(Post(PostKind.SEND, event.channel, reply.text))

    # Time --------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Do what has come due by now: close polls and reviews, remind members who have not voted or
        answered, deliver nudges, heartbeats, welcomes shared by several newcomers, weekly radars; send;
        then plan the delivered nudges' next occurrences."""
        now = self.clock.now()
        # What was prepared ahead and is due now goes first: it was due before anything else due now.
        await self.dispatcher.send_come_due()
        # Welcomes first: a window of a few minutes most likely ended before whatever else is due.
        await self.newcomers.welcome_due(now)
        await self.polls.close_due(now)
        await self.reviews.close_due(now)
        await self.reminders.remind_due(now)  # after the closing: what closed is not reminded
        # Before the nudges: at the week's turn the wrapper's draft is made before the digest is due.
        await self.roles.due(now)
        await self.nudges.deliver_due(now)
        await self.meetings.deliver_due(now)
        await self.nudges.heartbeats(now)
        await self.radar.weekly(now)
        await self.prune(now)
        await self.dispatcher.dispatch()
        # Deliver first, plan later: the nudges' next occurrences once their posts are out.
        await self.nudges.plan_delivered(now)
        # The leases of what is held for later are kept, a long tick (50,000 prepared) or not.
        await self.dispatcher.hold_ahead()

    async def prune(self, now: datetime) -> int:
        """Forget applied-event ids past the retention window, at most once an hour."""
        if self._last_prune is not None and now - self._last_prune < timedelta(hours=1):
            return 0
        self._last_prune = now
        async with self.work(now) as uow:
            return await uow.tx.events.prune(now - self.retention)

    async def run_until(self, target: datetime, move_clock: Callable[[datetime], None]) -> None:
        """Move a manual clock to `target`, doing everything that comes due on the way, in order."""
        await self.tick()  # what is due now first: it plans what is not planned yet (a new group's radar)
        last: datetime | None = None
        days = self.nudges.settings.heartbeat_days
        heartbeat_after = timedelta(days=days) if days else None
        while True:
            async with self.work() as uow:
                due = await uow.tx.next_due_time(self.chats.keys(), heartbeat_after)
            if due is None or due > target or due == last:
                break
            last = due
            if due > self.clock.now():
                move_clock(due)
            await self.tick()
        if target > self.clock.now():
            move_clock(target)
        await self.tick()

    async def settle(self) -> None:
        """Send everything queued that can be sent now (the console and tests wait for it)."""
        await self.dispatcher.settle()

    async def drain(self) -> None:
        """Finish pending work (queued votes, the outbox) before shutting down; what was prepared
        ahead and is not due yet is let go, for whichever process runs when it is."""
        await self.votes.drain()
        await self.dispatcher.settle()
        await self.dispatcher.let_go()

    async def open_poll_messages(self, platform: str) -> list[MessageRef]:
        """The messages of the polls still open on a platform, to reconcile after a gap (anonymous
        polls are not voted on by reactions: none of theirs)."""
        async with self.work() as uow:
            polls = await uow.tx.polls.open_on(platform, uow.now)
        messages = [p.message for p in polls if p.message is not None and not p.anonymous]
        # Meetings' announcements too: their RSVPs are reactions as well.
        return messages + await self.meetings.announced_messages(platform, self.clock.now())

    async def open_poll_page(self, platform: str, after: int, limit: int) -> OpenPollPage:
        """A page of `open_poll_messages`, in poll id order, each in a read of its own: a bot with
        100,000 open polls reconciles them without holding them all (or one long transaction)."""
        async with self.work() as uow:
            polls = await uow.tx.polls.open_on(platform, uow.now, after=after, limit=limit)
        messages = [p.message for p in polls if p.message is not None and not p.anonymous]
        if len(polls) == limit:
            return OpenPollPage(messages, polls[-1].id)
        # The last page brings the announcements of meetings ahead too: their RSVPs are reactions as well.
        return OpenPollPage(
            messages + await self.meetings.announced_messages(platform, self.clock.now()), None
        )

    async def polls_near(self, message: MessageRef) -> tuple[Poll | None, list[Poll]]:
        """The poll posted as `message`, if there is one; else the polls open in its channel, oldest
        first. For an adapter that tells a member a reaction landed on no poll (the console)."""
        async with self.work() as uow:
            polls = await uow.tx.polls.for_messages(message.channel.platform, [message.id])
            if polls:
                return polls[0], []
            group = await uow.tx.groups.get(message.channel)
            if group is None:
                return None, []
            in_group = await uow.tx.polls.in_group(group.id)
            return None, [p for p in in_group if p.message is not None and p.is_open(uow.now)]

    async def announces_meeting(self, message: MessageRef) -> bool:
        async with self.work() as uow:
            return bool(await uow.tx.meetings.for_messages(message.channel.platform, [message.id]))

    async def reconcile(self, message: MessageRef, present: Mapping[str, Collection[UserRef]]) -> int:
        """Set a poll's votes to the reactions now on its message (see `reconcile_poll`)."""
        await self.votes.drain()  # votes already received go first; the snapshot is newer
        rsvps = await self.meetings.reconcile(message, present)
        if rsvps is not None:
            return rsvps
        async with self.work() as uow:
            polls = await uow.tx.polls.for_messages(message.channel.platform, [message.id])
            if not polls:
                return 0
            changed = await reconcile_poll(uow.tx, polls[0], present, uow.now)
            if changed:
                await uow.publish(VotesRecorded((polls[0],), {polls[0].id: changed}))
            return len(changed)
