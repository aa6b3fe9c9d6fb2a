"""Meetings: the commands, delivering announcements and reminders on the tick, RSVPs by reaction, and
the consent rounds that set a meeting's time or change a cadence (core/meetings.py holds the rules)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from core.clock import format_time
from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import ReactionAdded, ReactionEvent, Reply
from core.feedback import PollService
from core.goals import CONSENT_OPTIONS, GoalStatus, decide
from core.lifecycle import Group
from core.meetings import (
    ATTENDANCE_SHOWN,
    DEFAULT_LEAD,
    DEFAULT_TITLE,
    MAX_MEETINGS_PER_GROUP,
    MAX_TITLE,
    RSVP_EMOJI,
    Meeting,
    Occurrence,
    Rsvp,
    When,
    announcement,
    local_day,
    next_start,
    plan,
    read_day,
    read_meeting,
    read_when,
    reconciled,
    reminder,
    replan,
    rsvp_emoji,
    say_counts,
    skip,
    starts_on,
    step,
    thread_opener,
    when_line,
)
from core.outbox import Post, PostKind, Thread
from core.polls import NUMBER_EMOJI, Poll, PollKind, PollOption, PollRequest, Tally
from core.ports import ChatPort, StoreTx, command_prefix
from core.refs import BOT, MessageRef, UserRef
from core.roadmap import GoalRules
from core.schedules import Recurrence, first_occurrence, parse_schedule
from core.uow import DomainEvent, PollClosed, UnitOfWork, Work

log = logging.getLogger(__name__)

BATCH = 500
MAX_PROPOSED = 5  # times in one `meet propose`
PROPOSAL_KEY = "meeting-proposal:"  # + poll id, in the core's state: what an accepted round does


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    lead: timedelta = DEFAULT_LEAD  # how long before a meeting its announcement goes out


def winner(poll: Poll, t: Tally) -> int | None:
    """The option with the most votes, if one has more than every other and at least one."""
    if not t.counts:
        return None
    best = max(t.counts)
    if best == 0 or t.counts.count(best) > 1:
        return None
    return t.counts.index(best)


class MeetingService:
    def __init__(
        self,
        work: Work,
        chats: Mapping[str, ChatPort],
        platforms: Collection[str],
        recurrence: Recurrence,
        polls: PollService,
        goal_rules: GoalRules,
        settings: MeetingSettings,
    ) -> None:
        self.work = work
        self.chats = chats
        self.platforms = platforms
        self.recurrence = recurrence
        self.polls = polls
        self.goal_rules = goal_rules
        self.settings = settings

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("meet", "add"): self._add,
            ("meet", "list"): self._list,
            ("meet", "cancel"): self._cancel,
            ("meet", "skip"): self._skip,
            ("meet", "from", "poll"): self._from_poll,
            ("meet", "propose"): self._propose,
            ("cadence", "propose"): self._cadence,
        }

    def after_settings(self, handler: Handler) -> Handler:
        """`timezone` and `quiet-hours`, then every meeting's next occurrence planned in the new setting."""

        async def run(ctx: Context, inv: Invocation) -> Reply:
            reply = await handler(ctx, inv)
            if not any(inv.args.values()):  # only shown, not changed
                return reply
            group = await ctx.tx.groups.by_id(ctx.group.id)
            if not reply.is_error and group is not None:
                await self.replan_group(ctx.tx, group, ctx.now)
            return reply

        return run

    # Planning ----------------------------------------------------------------------------------

    async def start(self, tx: StoreTx, group: Group, meeting: Meeting, after: datetime) -> Occurrence | None:
        """Plan the meeting's next occurrence after `after`; None when it meets no more."""
        starts = next_start(meeting, group.timezone, after, self.recurrence)
        if starts is None:
            return None
        o = plan(meeting.id, group.id, starts, group.timezone, group.quiet, self.settings.lead, after)
        return await tx.meetings.add_occurrence(o)

    async def replan_group(self, tx: StoreTx, group: Group, now: datetime) -> None:
        """After a timezone or quiet-hours change: a recurring meeting keeps its local time, so its next
        occurrence is planned anew; a one-off keeps its moment, with its announcement and reminder moved."""
        meetings = [m for m in await tx.meetings.in_group(group.id) if m.cancelled_at is None]
        ahead = [o for o in await tx.meetings.occurrences([m.id for m in meetings]) if o.starts_at > now]
        by_meeting = {o.meeting_id: o for o in ahead}
        for m in meetings:
            o = by_meeting.get(m.id)
            if m.recurring:
                if o is not None and o.announced:
                    continue  # announced already: the group was told that time
                await tx.meetings.delete_ahead(m.id, now)
                await self.start(tx, group, m, now)
            elif o is not None:
                moved = replan(o, group.timezone, group.quiet, self.settings.lead, now)
                await tx.meetings.move(moved, o.next_due_at)

    async def deliver_due(self, now: datetime) -> int:
        """Announce, remind and start every occurrence due by now, each step once (the claim moves it)."""
        done = 0
        while True:
            async with self.work(now, unprompted=True) as uow:
                tx = uow.tx
                due = await tx.meetings.due(now, BATCH, self.platforms)
                groups = await tx.groups.many(sorted({o.group_id for o in due}))
                for o in due:
                    s = step(o, now)
                    if not await tx.meetings.move(s.after, o.next_due_at):
                        continue  # another process did this step
                    group = groups[o.group_id]
                    meeting = await tx.meetings.get(group.id, o.meeting_id)
                    if meeting is None or meeting.cancelled_at is not None:
                        continue
                    if s.announce:
                        self._announce(uow, group, meeting, o)
                        done += 1
                    if s.remind:
                        rsvps = await tx.meetings.rsvps([o.id])
                        text = reminder(meeting, o, group.timezone, rsvps)
                        uow.post(Post(PostKind.SEND, group.channel, text, group_id=group.id), placed=True)
                        done += 1
                    if s.started:
                        await self.start(tx, group, meeting, o.starts_at)
            if len(due) < BATCH:
                return done

    def _announce(self, uow: UnitOfWork, group: Group, meeting: Meeting, o: Occurrence) -> None:
        prefix = command_prefix(self.chats, group.channel.platform)
        text = announcement(meeting, o, group.timezone, prefix)
        channel, tz = group.channel, group.timezone
        uow.post(
            Post(PostKind.SEND, channel, text, group_id=group.id, reactions=RSVP_EMOJI, occurrence_id=o.id),
            placed=True,
        )
        # Starts the meeting's thread from the announcement, where the platform has threads.
        opener = thread_opener(meeting, o, tz)
        thread = Thread("meeting", o.id)
        uow.post(
            Post(PostKind.SEND, channel, opener, group_id=group.id, thread=thread, thread_only=True),
            placed=True,
        )

    # RSVPs -------------------------------------------------------------------------------------

    async def on_reactions(self, uow: UnitOfWork, events: Sequence[ReactionEvent]) -> None:
        """RSVPs from reactions on announcements, in order, each event once (a RESUME replays them):
        a member's latest choice counts; taking that reaction back takes the RSVP back."""
        tx, now = uow.tx, uow.now
        by_platform: dict[str, list[ReactionEvent]] = defaultdict(list)
        for e in events:
            if rsvp_emoji(e.emoji) is not None:
                by_platform[e.message.channel.platform].append(e)
        for platform, mine in by_platform.items():
            found = await tx.meetings.for_messages(platform, sorted({e.message.id for e in mine}))
            by_message = {o.message.id: o for o in found if o.message is not None and o.starts_at > now}
            on_meetings = [e for e in mine if e.message.id in by_message]
            if not on_meetings:
                continue
            fresh = await tx.events.claim_many(platform, [e.event_id for e in on_meetings], now)
            held = {
                (r.occurrence_id, r.user_key): r.choice
                for r in await tx.meetings.rsvps([o.id for o in by_message.values()])
            }
            changes: dict[tuple[int, str], tuple[UserRef, str | None]] = {}
            for e in on_meetings:
                if e.event_id not in fresh:
                    continue
                fresh.discard(e.event_id)
                o = by_message[e.message.id]
                choice = rsvp_emoji(e.emoji)
                key = (o.id, e.user.key)
                current = changes[key][1] if key in changes else held.get(key)
                if isinstance(e, ReactionAdded):
                    changes[key] = (e.user, choice)
                elif current == choice:
                    changes[key] = (e.user, None)
            await tx.meetings.set_rsvps([(o_id, user, c) for (o_id, _), (user, c) in changes.items()], now)

    async def announced_messages(self, platform: str, now: datetime) -> list[MessageRef]:
        async with self.work(now) as uow:
            found = await uow.tx.meetings.ahead_with_messages(platform, now)
        return [o.message for o in found if o.message is not None]

    async def reconcile(self, message: MessageRef, present: Mapping[str, Collection[UserRef]]) -> int | None:
        """Set an announcement's RSVPs to the reactions on it now; None when the message announces
        nothing."""
        async with self.work() as uow:
            found = await uow.tx.meetings.for_messages(message.channel.platform, [message.id])
            if not found:
                return None
            o = found[0]
            if o.starts_at <= uow.now:
                return 0
            current = {r.user_key: r.choice for r in await uow.tx.meetings.rsvps([o.id])}
            changes = reconciled(current, present)
            names = {r.user_key: r.user_name for r in await uow.tx.meetings.rsvps([o.id])}
            await uow.tx.meetings.set_rsvps(
                [
                    (o.id, user or UserRef(message.channel.platform, key.partition(":")[2], names[key]), c)
                    for key, (user, c) in changes.items()
                ],
                uow.now,
            )
            return len(changes)

    # Consent rounds ----------------------------------------------------------------------------

    async def on_poll_closed(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Subscriber: a round on a meeting's time closed; if the group agreed, the meeting is added or
        its time (or a nudge's) changed, and the group told."""
        assert isinstance(event, PollClosed)
        state = uow.tx.state("core")
        raw = await state.get(f"{PROPOSAL_KEY}{event.poll.id}")
        if raw is None or not event.announce:
            return
        await state.delete(f"{PROPOSAL_KEY}{event.poll.id}")
        proposal = json.loads(raw)
        group = await uow.tx.groups.by_id(event.poll.group_id)
        assert group is not None
        try:
            text = await self._carry_out(uow, group, event.poll, event.result, proposal)
        except UsageError as error:  # the time no longer fits (the meeting was cancelled meanwhile)
            text = f"Poll {event.poll.id}: nothing changed. {error.message}"
        uow.post(Post(PostKind.SEND, group.channel, text, group_id=group.id))

    async def _carry_out(
        self, uow: UnitOfWork, group: Group, poll: Poll, t: Tally, proposal: Mapping[str, object]
    ) -> str:
        times = [str(x) for x in proposal["times"]]  # type: ignore[attr-defined]
        if len(times) == 1:
            quorum = self.goal_rules.for_group(group).quorum
            if decide(t, quorum).status is not GoalStatus.ACCEPTED:
                return f"Poll {poll.id}: not accepted (it needs {quorum} ✅ and no ⛔); nothing changes."
            chosen = times[0]
        else:
            best = winner(poll, t)
            if best is None:
                return f"Poll {poll.id}: no single time has the most votes; no meeting is added."
            chosen = times[best]
        when = read_when(chosen, self.recurrence, group.timezone, uow.now)
        target = str(proposal.get("target", ""))
        if target.startswith("nudge:"):
            return await self._change_nudge(uow.tx, group, int(target[6:]), when, uow.now)
        if target.startswith("meet:"):
            return await self._change_meeting(uow.tx, group, int(target[5:]), when, uow.now)
        meeting = await self._create(
            uow.tx, group, when, str(proposal.get("title", DEFAULT_TITLE)), BOT, uow.now
        )
        said = when_line(meeting, group.timezone)
        return f"The group chose {when.description}: meeting {meeting.id} added ({said})."

    async def _change_nudge(
        self, tx: StoreTx, group: Group, schedule_id: int, when: When, now: datetime
    ) -> str:
        schedule = await tx.schedules.get(group.id, schedule_id)
        if schedule is None or when.cron is None:
            raise UsageError(f"There is no nudge {schedule_id} to change any more.")
        await tx.outbox.withdraw([schedule.id], now)
        await tx.schedules.set_cron(schedule.id, when.cron, when.description)
        if not schedule.paused:
            occurrence, due = first_occurrence(when.cron, group.timezone, group.quiet, now, self.recurrence)
            await tx.schedules.set_next([(schedule.id, occurrence, due)])
        return f"Agreed by the group: nudge {schedule.id} is now {when.description} ({group.timezone})."

    async def _change_meeting(
        self, tx: StoreTx, group: Group, meeting_id: int, when: When, now: datetime
    ) -> str:
        meeting = await tx.meetings.get(group.id, meeting_id)
        if meeting is None or meeting.cancelled_at is not None:
            raise UsageError(f"Meeting {meeting_id} was cancelled.")
        await tx.meetings.set_when(meeting.id, when)
        await tx.meetings.delete_ahead(meeting.id, now)
        changed = replace(meeting, cron=when.cron, description=when.description, at=when.at)
        o = await self.start(tx, group, changed, now)
        after = f" Next: {format_time(o.starts_at, group.timezone)}." if o is not None else ""
        return (
            f"Agreed by the group: meeting {meeting.id} is now {when_line(changed, group.timezone)}.{after}"
        )

    async def _open_round(
        self, ctx: Context, question: str, times: Sequence[str], proposal: dict[str, object]
    ) -> Poll:
        rules = self.goal_rules.for_group(ctx.group)
        options: tuple[PollOption, ...]
        if len(times) == 1:
            options = CONSENT_OPTIONS
        else:
            options = tuple(PollOption(NUMBER_EMOJI[i], t) for i, t in enumerate(times))
        request = PollRequest(question, options, duration=rules.window)
        poll = await self.polls.open(ctx.uow, ctx.group, PollKind.POLL, request, ctx.event.user)
        await ctx.tx.state("core").set(
            f"{PROPOSAL_KEY}{poll.id}", json.dumps({**proposal, "times": list(times)})
        )
        return poll

    # Commands ----------------------------------------------------------------------------------

    async def _create(
        self, tx: StoreTx, group: Group, when: When, title: str, by: UserRef, now: datetime
    ) -> Meeting:
        live = [m for m in await tx.meetings.in_group(group.id) if m.cancelled_at is None]
        if len(live) >= MAX_MEETINGS_PER_GROUP:
            raise UsageError(f"A group can have at most {MAX_MEETINGS_PER_GROUP} meetings; cancel one first.")
        # Checked before anything is stored: an id taken and rolled back would leave a gap (PostgreSQL).
        draft = Meeting(0, group.id, title, when.cron, when.description, when.at, by.name, now)
        if next_start(draft, group.timezone, now, self.recurrence) is None:
            raise UsageError(f"'{when.description}' never comes: no meeting added.")
        meeting = await tx.meetings.create(group.id, title, when, by, now)
        await self.start(tx, group, meeting, now)
        return meeting

    async def _find(self, ctx: Context, meeting_id: int) -> Meeting:
        meeting = await ctx.tx.meetings.get(ctx.group.id, meeting_id)
        if meeting is None:
            raise UsageError(f"There is no meeting {meeting_id} in this channel.")
        if meeting.cancelled_at is not None:
            raise UsageError(f"Meeting {meeting_id} is cancelled.")
        return meeting

    async def _next(self, ctx: Context, meeting: Meeting) -> Occurrence | None:
        found = [o for o in await ctx.tx.meetings.occurrences([meeting.id]) if o.starts_at > ctx.now]
        return found[0] if found else None

    async def _add(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        when, title = read_meeting(inv.text("when"), self.recurrence, g.timezone, ctx.now)
        meeting = await self._create(ctx.tx, g, when, title, ctx.event.user, ctx.now)
        o = await self._next(ctx, meeting)
        assert o is not None
        return Reply(
            f"Meeting {meeting.id} added: {title}, {when_line(meeting, g.timezone)}."
            f" Next: {format_time(o.starts_at, g.timezone)}; announced"
            f" {format_time(o.announce_at, g.timezone)} with RSVP reactions, reminded an hour before."
        )

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        g, tz = ctx.group, ctx.group.timezone
        meetings = await ctx.tx.meetings.in_group(g.id)
        live = [m for m in meetings if m.cancelled_at is None]
        occurrences = await ctx.tx.meetings.occurrences([m.id for m in meetings])
        rsvps = await ctx.tx.meetings.rsvps([o.id for o in occurrences])
        by_occurrence: dict[int, list[Rsvp]] = defaultdict(list)
        for r in rsvps:
            by_occurrence[r.occurrence_id].append(r)
        titles = {m.id: m.title for m in meetings}
        if not meetings:
            return Reply(
                f"No meetings yet. Add one with {ctx.prefix}meet add weekly thu 18:00 | Reading circle."
            )
        lines = ["Meetings:"] if live else ["No meetings ahead."]
        for m in live:
            ahead = [
                o for o in occurrences if o.meeting_id == m.id and o.starts_at > ctx.now and not o.skipped
            ]
            later = next_start(
                m,
                tz,
                max([o.starts_at for o in occurrences if o.meeting_id == m.id] + [ctx.now]),
                self.recurrence,
            )
            starts = ahead[0].starts_at if ahead else later
            if not m.recurring:
                nxt = "to come" if starts is not None else "over"
            else:
                nxt = f"next {format_time(starts, tz)}" if starts is not None else "no more to come"
            rsvp = f", RSVPs {say_counts(by_occurrence[ahead[0].id])}" if ahead and ahead[0].announced else ""
            skips = [d for d in m.skips if d >= local_day(ctx.now, tz)]
            skipped = f", skipping {', '.join(skips)}" if skips else ""
            lines.append(f"{m.id}. {m.title}: {when_line(m, tz)}; {nxt}{rsvp}{skipped}")
        past = [o for o in occurrences if o.starts_at <= ctx.now and not o.skipped]
        past = sorted(past, key=lambda o: o.starts_at)[-ATTENDANCE_SHOWN:]
        if past:
            lines.append("Last meetings:")
            lines += [
                f"- {format_time(o.starts_at, tz)} {titles.get(o.meeting_id, '')}:"
                f" {say_counts(by_occurrence[o.id])}"
                for o in reversed(past)
            ]
        return Reply("\n".join(lines))

    async def _cancel(self, ctx: Context, inv: Invocation) -> Reply:
        meeting = await self._find(ctx, inv.args["id"])
        await ctx.tx.meetings.cancel(meeting.id, ctx.now)
        return Reply(f"Meeting {meeting.id} ({meeting.title}) cancelled: no more announcements or reminders.")

    async def _skip(self, ctx: Context, inv: Invocation) -> Reply:
        tz = ctx.group.timezone
        meeting = await self._find(ctx, inv.args["id"])
        day = read_day(inv.text("date"))
        starts = starts_on(meeting, day, tz, ctx.now, self.recurrence)
        if starts is None:
            raise UsageError(f"Meeting {meeting.id} does not meet on {day.isoformat()} (ahead, {tz}).")
        if day.isoformat() in meeting.skips:
            return Reply(f"Meeting {meeting.id} on {day.isoformat()} is skipped already.")
        await ctx.tx.meetings.set_skips(meeting.id, sorted({*meeting.skips, day.isoformat()}))
        for o in await ctx.tx.meetings.occurrences([meeting.id]):
            if o.starts_at == starts:
                await ctx.tx.meetings.move(skip(o), o.next_due_at)
        if not meeting.recurring:
            await ctx.tx.meetings.cancel(meeting.id, ctx.now)
        return Reply(
            f"Meeting {meeting.id} ({meeting.title}) on {day.isoformat()} is skipped: no reminder goes out."
        )

    async def _from_poll(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        poll = await PollService.find(ctx.tx, g, inv.args["id"])
        if poll.anonymous and poll.closed_at is None:
            raise UsageError(f"Poll {poll.id} is anonymous and still open: close it first.")
        times = self._times([o.label for o in poll.options], g, ctx.now, what=f"Poll {poll.id}'s options")
        best = winner(poll, await PollService.current_tally(ctx.tx, poll))
        if best is None:
            raise UsageError(f"Poll {poll.id} has no single option with the most votes.")
        title = " ".join((inv.text("title") or poll.question).split())[:MAX_TITLE]
        meeting = await self._create(ctx.tx, g, times[best], title, ctx.event.user, ctx.now)
        return Reply(
            f"Meeting {meeting.id} added from poll {poll.id}: {title}, {when_line(meeting, g.timezone)}."
        )

    def _times(self, texts: Sequence[str], group: Group, now: datetime, *, what: str) -> list[When]:
        found = []
        for i, text in enumerate(texts, 1):
            try:
                found.append(read_when(text, self.recurrence, group.timezone, now))
            except UsageError as error:
                raise UsageError(
                    f"{what}: '{text[:40]}' ({i}) is not a meeting time. {error.message}"
                ) from None
        return found

    async def _propose(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        texts = [" ".join(t.split()) for t in inv.items("time")]
        whens = self._times(texts, g, ctx.now, what="The proposal")
        if len({w.description for w in whens}) != len(whens):
            raise UsageError("The proposal names one time twice.")
        texts = [w.description for w in whens]
        if len(texts) == 1:
            question = f"Meet {texts[0]} ({g.timezone})? Do you consent?"
        else:
            question = f"When shall we meet ({g.timezone})? The time with the most votes becomes our meeting."
        poll = await self._open_round(ctx, question, texts, {"title": DEFAULT_TITLE})
        return Reply(self._round_opened(ctx, poll, texts))

    def _round_opened(self, ctx: Context, poll: Poll, texts: Sequence[str]) -> str:
        closes = format_time(poll.closes_at, ctx.group.timezone)
        if len(texts) == 1:
            quorum = self.goal_rules.for_group(ctx.group).quorum
            return (
                f"Consent round on poll {poll.id}: ✅ agree, 🤔 concerns, ⛔ block. The group decides by"
                f" {closes}; it needs {quorum} ✅ and no ⛔."
            )
        return f"Poll {poll.id} is open until {closes}: the time with the most votes is taken."

    async def _cadence(self, ctx: Context, inv: Invocation) -> Reply:
        g = ctx.group
        words = inv.text("change").split()
        target, name = "", ""
        if len(words) >= 2 and words[0].lower() in ("meet", "nudge"):
            if not (words[1].isascii() and words[1].isdigit() and len(words[1]) <= 18):
                raise UsageError(f"After {words[0].lower()} comes its number, not '{words[1][:12]}'.")
            kind, number = words[0].lower(), int(words[1])
            words = words[2:]
            if kind == "meet":
                meeting = await self._find(ctx, number)
                target, name = f"meet:{meeting.id}", f"meeting {meeting.id} ({meeting.title})"
            else:
                schedule = await ctx.tx.schedules.get(g.id, number)
                if schedule is None:
                    raise UsageError(f"There is no nudge {number} in this channel.")
                target, name = f"nudge:{schedule.id}", f"nudge {schedule.id} ({schedule.description})"
        else:
            recurring = [
                m for m in await ctx.tx.meetings.in_group(g.id) if m.cancelled_at is None and m.recurring
            ]
            if len(recurring) != 1:
                raise UsageError(
                    f"Which one? The group has {len(recurring)} recurring meetings: say"
                    f" {ctx.prefix}cadence propose meet <id> <when> (or nudge <id> <when>)."
                )
            m = recurring[0]
            target, name = f"meet:{m.id}", f"meeting {m.id} ({m.title})"
        text = " ".join(words)
        if target.startswith("nudge:"):
            _, description, rest = parse_schedule(text, self.recurrence)
            if rest:
                raise UsageError(f"Unexpected words after the schedule: '{rest[:40]}'.")
            when_text = description
        else:
            when_text = read_when(text, self.recurrence, g.timezone, ctx.now).description
        question = f"Change {name} to {when_text} ({g.timezone})? Do you consent?"
        poll = await self._open_round(ctx, question, [when_text], {"target": target})
        return Reply(self._round_opened(ctx, poll, [when_text]))
