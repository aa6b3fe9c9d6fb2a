"""Test support: in-memory fakes of the core's ports, and a harness that reads like the feature."""

from __future__ import annotations

import bisect
import copy
import itertools
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.recurrence import CronRecurrence
from core import members as roster
from core.ballots import new_secret
from core.commands import CommandSpec
from core.concerns import Concern
from core.dashboard import DashboardSettings
from core.engine import Engine, ensure_group
from core.events import Attachment, CommandInvoked, InboundEvent, ReactionAdded, ReactionRemoved, Reply
from core.forgetting import (
    ANONYMOUS_PREFIX,
    FORMER_MEMBER,
    Forgotten,
    anonymous_key,
    identifiers,
    names_user,
    scrub,
)
from core.goals import Goal, GoalStatus
from core.lifecycle import CLOSING, Group, Phase, PhaseChange, QuietHours
from core.meetings import Meeting, Occurrence, Rsvp, When
from core.outbox import OutboxRow, Post, PostState
from core.polls import (
    GroupCounts,
    Poll,
    PollKind,
    PollReaction,
    PollRequest,
    ReactionChange,
    Tally,
    tally,
)
from core.ports import (
    Button,
    DeliveryFailed,
    FileTooLarge,
    OpenPollPage,
    Outbound,
    ReadOnly,
    StateChanges,
    state_prefix,
)
from core.radar import Act, ActKind, own_limits
from core.reflections import Reflection, Review
from core.refs import BOT, ChannelRef, MessageRef, UserRef
from core.reminders import Absent, Unresponded
from core.roles import WRAPPER, PoolMember, Role, Rotation, Wrap, WrapState
from core.schedules import DueSchedule, Schedule, ScheduleKind

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


# The example config serves the web on 127.0.0.1:8080; tests that run it take any free port instead, so
# that they never meet each other (or a developer's bot) there.
ANY_WEB_PORT = {"PEERBOT_WEB_PORT": "0"}


def free_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 on a port the system chose (its number is known before
    anything is served on it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(app: web.Application, sock: socket.socket) -> AsyncIterator[str]:
    """Serve an aiohttp application on the socket, for real: yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def peerbot(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `peerbot` command line in a subprocess, with no PEERBOT_* variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


class SinkProxy:
    """An EventSink that passes everything on to the engine; test recorders override what they watch
    and are given to `bot.app.bootstrap` as its `sink`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def handle(self, event: InboundEvent) -> Reply | None:
        return await self.engine.handle(event)

    async def handle_batch(
        self,
        events: Sequence[InboundEvent],
        state: StateChanges | None = None,
        posts: Sequence[Post] = (),
    ) -> list[Reply | None]:
        return await self.engine.handle_batch(events, state, posts)

    def visible_specs(self, platform: str) -> list[CommandSpec]:
        return self.engine.visible_specs(platform)

    async def open_poll_messages(self, platform: str) -> list[MessageRef]:
        return await self.engine.open_poll_messages(platform)

    async def open_poll_page(self, platform: str, after: int, limit: int) -> OpenPollPage:
        return await self.engine.open_poll_page(platform, after, limit)

    async def reconcile(self, message: MessageRef, present: Mapping[str, Collection[UserRef]]) -> int:
        return await self.engine.reconcile(message, present)

    async def polls_near(self, message: MessageRef) -> tuple[Poll | None, list[Poll]]:
        return await self.engine.polls_near(message)

    async def announces_meeting(self, message: MessageRef) -> bool:
        return await self.engine.announces_meeting(message)


@dataclass
class Sent:
    channel: ChannelRef
    text: str
    mentions: bool
    ref: MessageRef
    reply_to: MessageRef | None = None
    buttons: tuple[Button, ...] = ()
    thread: MessageRef | None = None  # posted in the thread started from this message


@dataclass
class SentFile:
    channel: ChannelRef
    file: Attachment
    summary: str
    ref: MessageRef
    reply_to: MessageRef | None = None
    key: str | None = None


@dataclass
class FakeChat:
    """A ChatPort that records what the engine sent."""

    platform: str = "fake"
    command_prefix: str = "/"
    interactive_replies: bool = True  # replies are returned, as to a Discord interaction
    facilitators: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    reactions: list[tuple[MessageRef, str]] = field(default_factory=list)
    edits: list[tuple[MessageRef, str]] = field(default_factory=list)
    deleted: list[MessageRef] = field(default_factory=list)
    direct: list[tuple[UserRef, str]] = field(default_factory=list)
    down: bool = False  # the platform answers every post with a server error
    files: list[SentFile] = field(default_factory=list)
    file_limit: int | None = None  # what max_file_size says
    refuses_size: int | None = None  # refuse files over this size when sent (a limit it did not tell)
    threads: bool = False  # posts can go into threads (then `started` names the threads started)
    started: dict[MessageRef, str] = field(default_factory=dict)  # root -> the thread's name
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _ref(self, channel: ChannelRef) -> MessageRef:
        if self.down:
            raise DeliveryFailed("503 Service Unavailable", permanent=False)
        return MessageRef(channel, f"bot{next(self._ids)}")

    async def send(self, channel: ChannelRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        ref = self._ref(channel)
        self.sent.append(Sent(channel, message.text, message.mentions, ref, buttons=message.buttons))
        return ref

    async def reply(self, to: MessageRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        ref = self._ref(to.channel)
        self.sent.append(Sent(to.channel, message.text, message.mentions, ref, to))
        return ref

    async def send_in_thread(
        self, root: MessageRef, name: str, message: Outbound, *, key: str | None = None
    ) -> MessageRef:
        if not self.threads:
            return await self.send(root.channel, message, key=key)
        ref = self._ref(root.channel)
        self.started.setdefault(root, name)
        self.sent.append(Sent(root.channel, message.text, message.mentions, ref, thread=root))
        return ref

    async def react(self, message: MessageRef, emoji: str, *, key: str | None = None) -> None:
        self.reactions.append((message, emoji))

    async def edit(self, message: MessageRef, new: Outbound) -> None:
        self.edits.append((message, new.text))

    async def delete(self, message: MessageRef) -> None:
        self.deleted.append(message)

    async def direct_message(self, user: UserRef, message: Outbound, *, key: str | None = None) -> MessageRef:
        ref = self._ref(ChannelRef(self.platform, f"dm-{user.id}"))
        self.direct.append((user, message.text))
        return ref

    async def is_facilitator(self, user: UserRef, channel: ChannelRef) -> bool:
        return user.id in self.facilitators

    async def send_file(
        self,
        channel: ChannelRef,
        file: Attachment,
        summary: Outbound,
        *,
        reply_to: MessageRef | None = None,
        key: str | None = None,
    ) -> MessageRef:
        if self.refuses_size is not None and file.size > self.refuses_size:
            raise FileTooLarge(file.size, self.refuses_size)
        ref = self._ref(channel)
        self.files.append(SentFile(channel, file, summary.text, ref, reply_to, key))
        return ref

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        return self.file_limit


class MemoryOutbox:
    def __init__(self, data: MemoryData) -> None:
        self.d = data

    async def add(
        self, posts: Sequence[Post], at: datetime, lease: tuple[str, datetime] | None = None
    ) -> list[int]:
        ids = []
        for post in posts:
            self.d.last_post += 1
            when = post.not_before or at
            row = _Row(
                OutboxRow(self.d.last_post, replace(post, not_before=when), PostState.PENDING, at, when), when
            )
            if lease is not None:
                row.owner, row.lease_until = lease
            self.d.outbox[self.d.last_post] = row
            ids.append(self.d.last_post)
        return ids

    async def claim(
        self,
        platforms: Sequence[str],
        owner: str,
        due_by: datetime,
        lease: tuple[datetime, datetime],
        limit: int,
    ) -> list[OutboxRow]:
        wall, lease_until = lease
        taken = []
        for row in sorted(self.d.outbox.values(), key=lambda r: r.row.id):
            live = row.row.state in (PostState.PENDING, PostState.POSTED)
            free = row.lease_until is None or row.lease_until < wall or row.owner == owner
            due = row.next_attempt <= due_by
            if live and free and row.row.post.channel.platform in platforms and due:
                row.owner, row.lease_until = owner, lease_until
                taken.append(row.row)
            if len(taken) == limit:
                break
        return taken

    async def release(self, owner: str, row_ids: Sequence[int]) -> None:
        for i in row_ids:
            row = self.d.outbox.get(i)
            if row is not None and row.owner == owner:
                row.owner, row.lease_until = None, None

    async def renew(self, owner: str, row_ids: Sequence[int], until: datetime) -> set[int]:
        held = set()
        for i in row_ids:
            row = self.d.outbox.get(i)
            if row is not None and row.owner == owner:
                row.lease_until = until
                held.add(i)
        return held

    async def held(self, owner: str, row_ids: Sequence[int]) -> set[int]:
        return {i for i in row_ids if (row := self.d.outbox.get(i)) is not None and row.owner == owner}

    async def sent(self, row_ids: Sequence[int]) -> None:
        for i in row_ids:
            self.d.outbox.pop(i, None)

    def _prepared(self, schedule_ids: Collection[int], now: datetime) -> list[OutboxRow]:
        return [
            r.row
            for r in self.d.outbox.values()
            if r.row.post.schedule_id in schedule_ids
            and r.row.state is PostState.PENDING
            and r.row.not_before > now
        ]

    async def withdraw(self, schedule_ids: Collection[int], now: datetime) -> int:
        gone = self._prepared(schedule_ids, now)
        for row in gone:
            del self.d.outbox[row.id]
        return len(gone)

    async def ahead(self, schedule_ids: Collection[int], now: datetime) -> dict[int, datetime]:
        found: dict[int, datetime] = {}
        for row in self._prepared(schedule_ids, now):
            assert row.post.schedule_id is not None
            found[row.post.schedule_id] = min(found.get(row.post.schedule_id, row.not_before), row.not_before)
        return found

    async def forget_sealed(self, sealed: str) -> int:
        gone = [i for i, r in self.d.outbox.items() if r.row.post.sealed == sealed]
        for i in gone:
            del self.d.outbox[i]
        return len(gone)

    async def posted(self, row_id: int, message: MessageRef) -> None:
        row = self.d.outbox[row_id]
        row.row = replace(row.row, state=PostState.POSTED, message_id=message.id)

    async def finish(self, row_id: int, state: PostState, at: datetime, reason: str = "") -> None:
        if state is PostState.SENT:
            del self.d.outbox[row_id]
            return
        row = self.d.outbox[row_id]
        row.row, row.reason, row.owner, row.lease_until = replace(row.row, state=state), reason, None, None

    async def retry_at(self, row_id: int, attempts: int, when: datetime, reason: str) -> None:
        row = self.d.outbox[row_id]
        row.row, row.next_attempt, row.reason = replace(row.row, attempts=attempts), when, reason

    async def rows(self, states: Sequence[PostState] = ()) -> list[OutboxRow]:
        return [r.row for _, r in sorted(self.d.outbox.items()) if not states or r.row.state in states]

    async def counts(self) -> dict[PostState, int]:
        return dict(Counter(r.row.state for r in self.d.outbox.values()))


@dataclass
class _Row:
    row: OutboxRow
    next_attempt: datetime
    owner: str | None = None
    lease_until: datetime | None = None
    reason: str = ""


class _MemoryPart:
    """A repository of the in-memory store: one aggregate's part of the data."""

    def __init__(self, data: MemoryData) -> None:
        self.d = data

    def _on(self, group_id: int, platforms: Collection[str]) -> bool:
        return self.d.groups[group_id].channel.platform in platforms


class MemoryEvents(_MemoryPart):
    async def claim(self, platform: str, event_id: str, at: datetime) -> bool:
        key = (platform, event_id)
        if key in self.d.events:
            return False
        self.d.events[key] = at
        return True

    async def claim_many(self, platform: str, event_ids: Sequence[str], at: datetime) -> set[str]:
        return {e for e in dict.fromkeys(event_ids) if await self.claim(platform, e, at)}

    async def record_failed(self, platform: str, event_id: str, at: datetime, reason: str) -> None:
        await self.claim(platform, event_id, at)
        self.d.failed[(platform, event_id)] = (at, reason)

    async def failed(self, limit: int) -> list[tuple[datetime, str, str, str]]:
        rows = [(at, p, e, reason) for (p, e), (at, reason) in self.d.failed.items()]
        return sorted(rows, key=lambda r: (-r[0].timestamp(), r[2]))[:limit]

    async def prune(self, before: datetime) -> int:
        old = [k for k, at in self.d.events.items() if at < before]
        for k in old:
            del self.d.events[k]
        return len(old)


class MemoryGroups(_MemoryPart):
    async def get(self, channel: ChannelRef) -> Group | None:
        for g in self.d.groups.values():
            if g.channel == channel:
                return g
        return None

    async def by_id(self, group_id: int) -> Group | None:
        return self.d.groups.get(group_id)

    async def many(self, group_ids: Sequence[int]) -> dict[int, Group]:
        return {i: self.d.groups[i] for i in group_ids if i in self.d.groups}

    async def create(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group:
        group = Group(len(self.d.groups) + 1, channel, phase, at, at)
        self.d.groups[group.id] = group
        return group

    async def record_phase_change(self, change: PhaseChange) -> None:
        self.d.changes.append(change)
        group = self.d.groups[change.group_id]
        self.d.groups[group.id] = replace(group, phase=change.to_phase, phase_since=change.at)

    async def phase_history(self, group_id: int, limit: int | None = None) -> list[PhaseChange]:
        changes = [c for c in self.d.changes if c.group_id == group_id]
        if limit is None:
            return changes
        return changes[-limit:] if limit > 0 else []

    async def set_settings(
        self, group_id: int, goal_quorum: int | None, decision_window: timedelta | None
    ) -> None:
        group = self.d.groups[group_id]
        self.d.groups[group_id] = replace(group, goal_quorum=goal_quorum, decision_window=decision_window)

    async def record_signal(self, group_id: int, kind: str, at: datetime, detail: str) -> None:
        self.d.signals.append((group_id, kind, at, detail))

    def _update(self, group_id: int, **changes: Any) -> None:
        self.d.groups[group_id] = replace(self.d.groups[group_id], **changes)

    async def set_timezone(self, group_id: int, tz: str) -> None:
        self._update(group_id, timezone=tz)

    async def set_quiet_hours(self, group_id: int, quiet: QuietHours | None) -> None:
        self._update(group_id, quiet=quiet)

    async def set_auto(self, group_id: int, auto_review: bool, auto_checkin: bool) -> None:
        self._update(group_id, auto_review=auto_review, auto_checkin=auto_checkin)

    async def set_threads(self, group_id: int, on: bool) -> None:
        self._update(group_id, auto_threads=on)

    async def touch_activity(self, group_id: int, at: datetime) -> None:
        self._update(group_id, last_activity_at=at)

    async def set_remind_window(self, group_id: int, percent: int | None) -> None:
        self._update(group_id, remind_window=percent)

    async def set_welcome_text(self, group_id: int, text: str) -> None:
        self._update(group_id, welcome_text=text)

    async def claim_welcome(self, group_id: int, now: datetime, until: datetime) -> bool:
        current = self.d.groups[group_id].welcome_until
        if current is not None and current > now:
            return False
        self._update(group_id, welcome_until=until)
        return True

    @staticmethod
    def _silence_unanswered(g: Group) -> bool:
        # Like SQL's NULL comparison: no heartbeat yet counts as unanswered, even with no activity.
        return g.heartbeat_sent_at is None or (
            g.last_activity_at is not None and g.heartbeat_sent_at < g.last_activity_at
        )

    async def quiet(self, silent_since: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        return [
            g
            for g in self.d.groups.values()
            if g.channel.platform in platforms
            and self._silence_unanswered(g)
            and g.last_activity_at is not None
            and g.last_activity_at <= silent_since
        ][:limit]

    async def claim_heartbeat(self, group_id: int, at: datetime) -> bool:
        if not self._silence_unanswered(self.d.groups[group_id]):
            return False
        self._update(group_id, heartbeat_sent_at=at)
        return True

    async def signals(self, group_id: int, since: datetime) -> list[tuple[str, datetime, str]]:
        return [(k, at, d) for g, k, at, d in self.d.signals if g == group_id and at >= since]

    async def signals_in_phase(self, group_ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for g, kind, at, _ in self.d.signals:
            if g in group_ids and kind != CLOSING and at >= self.d.groups[g].phase_since:
                found.setdefault(g, []).append(kind)
        return found

    async def set_advised(self, group_id: int, at: datetime) -> None:
        self._update(group_id, advised_at=at)

    async def set_radar(self, group_id: int, auto: bool, limits: Mapping[str, int]) -> None:
        self._update(group_id, auto_radar=auto, radar_limits=own_limits(limits))

    async def radar_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        due = [
            g
            for g in sorted(self.d.groups.values(), key=lambda g: g.id)
            if g.channel.platform in platforms
            and g.auto_radar
            and (g.radar_next_at is None or g.radar_next_at <= now)
        ]
        return due[:limit]

    async def plan_radar(self, moves: Sequence[tuple[int, datetime | None, datetime | None]]) -> set[int]:
        moved = set()
        for group_id, seen, new in moves:
            if self.d.groups[group_id].radar_next_at == seen:
                self._update(group_id, radar_next_at=new)
                moved.add(group_id)
        return moved

    async def record_findings(self, findings: Sequence[tuple[int, str, str]], at: datetime) -> None:
        self.d.findings += [(group_id, kind, subject, at) for group_id, kind, subject in findings]

    async def told(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, dict[tuple[str, str], datetime]]:
        found: dict[int, dict[tuple[str, str], datetime]] = {}
        for g, kind, subject, at in self.d.findings:
            if g in group_ids and at >= since:
                mine = found.setdefault(g, {})
                mine[(kind, subject)] = max(at, mine.get((kind, subject), at))
        return found


class MemoryState(_MemoryPart):
    def __init__(self, data: MemoryData, namespace: str) -> None:
        super().__init__(data)
        self.prefix = state_prefix(namespace)

    async def get(self, key: str) -> str | None:
        return self.d.state.get(self.prefix + key)

    async def set(self, key: str, value: str) -> None:
        self.d.state[self.prefix + key] = value

    async def delete(self, key: str) -> None:
        self.d.state.pop(self.prefix + key, None)

    async def get_many(self, keys: Collection[str]) -> dict[str, str]:
        return {k: v for k in keys if (v := self.d.state.get(self.prefix + k)) is not None}

    async def update(self, changes: Mapping[str, str | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.d.state.pop(self.prefix + key, None)
            else:
                self.d.state[self.prefix + key] = value

    async def batch_applied(self, batch_id: str) -> bool:
        return batch_id in self.d.batches.get(self.prefix, {})

    async def record_batch(self, batch_id: str) -> None:
        self.d.batches.setdefault(self.prefix, {}).setdefault(batch_id, None)

    async def forget_batches(self, keep: int) -> int:
        recorded = self.d.batches.get(self.prefix, {})
        gone = list(recorded)[: max(len(recorded) - max(keep, 0), 0)]
        for batch_id in gone:
            del recorded[batch_id]
        return len(gone)


class MemoryPolls(_MemoryPart):
    async def create(
        self,
        group_id: int,
        kind: PollKind,
        request: PollRequest,
        author: UserRef,
        at: datetime,
        remind_at: datetime | None = None,
    ) -> Poll:
        self.d.last_poll += 1  # ids are never taken again, as by the database's sequence
        poll = Poll(
            self.d.last_poll,
            group_id,
            kind,
            request.question,
            request.options,
            request.multiple,
            request.hidden,
            author.key,
            author.name,
            at,
            at + request.duration,
            remind_at=remind_at,
            anonymous=request.anonymous,
        )
        self.d.polls[poll.id] = poll
        self.d.seq[poll.id] = 0
        if request.anonymous:
            self.d.poll_secrets[poll.id] = new_secret()
        return poll

    async def set_message(self, poll_id: int, message: MessageRef) -> None:
        self.d.polls[poll_id] = replace(self.d.polls[poll_id], message=message)

    async def delete(self, poll_id: int) -> None:
        # As the foreign keys do: its votes go with it, goals and outbox rows let go of it.
        del self.d.polls[poll_id]
        for key in [k for k in self.d.reactions if k[0] == poll_id]:
            del self.d.reactions[key]
        for goal in [g for g in self.d.goals.values() if g.poll_id == poll_id]:
            self.d.goals[goal.id] = replace(goal, poll_id=None)
        for row in self.d.outbox.values():
            if row.row.post.poll_id == poll_id:
                row.row = replace(row.row, post=replace(row.row.post, poll_id=None))

    async def get(self, group_id: int, poll_id: int) -> Poll | None:
        poll = self.d.polls.get(poll_id)
        return poll if poll is not None and poll.group_id == group_id else None

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Poll]:
        return [
            p
            for p in self.d.polls.values()
            if p.message is not None
            and p.message.channel.platform == platform
            and p.message.id in message_ids
        ]

    async def record_reactions(self, poll_id: int, changes: Sequence[ReactionChange]) -> None:
        for c in changes:
            self.d.seq[poll_id] += 1
            key = (poll_id, c.user_key, c.option)
            self.d.reactions[key] = PollReaction(
                c.user_key, c.user_name, c.option, c.present, self.d.seq[poll_id]
            )

    async def reactions(self, poll_id: int) -> list[PollReaction]:
        found = [r for (p, _, _), r in self.d.reactions.items() if p == poll_id]
        return sorted(found, key=lambda r: r.seq)

    async def reactions_of(self, poll_ids: Sequence[int]) -> dict[int, list[PollReaction]]:
        found = {poll_id: await self.reactions(poll_id) for poll_id in poll_ids}
        return {poll_id: listed for poll_id, listed in found.items() if listed}

    async def counts_in_group(self, group_id: int, poll_ids: Collection[int] | None = None) -> GroupCounts:
        votes: dict[int, dict[int, int]] = {}
        voters: dict[int, frozenset[str]] = {}
        for poll in self.d.polls.values():
            wanted = poll.group_id == group_id and (poll_ids is None or poll.id in poll_ids)
            reactions = await self.reactions(poll.id) if wanted else []
            t = tally(poll, reactions)
            if t.voters:
                votes[poll.id] = {n: count for n, count in enumerate(t.counts) if count}
                voters[poll.id] = frozenset(r.user_key for r in reactions if r.present)
        return GroupCounts(votes, voters)

    async def voter_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        weeks: dict[int, list[str]] = {}
        for poll in await self.in_group(group_id) if starts else ():
            voters = {r.user_key for r in await self.reactions(poll.id) if r.present}
            if voters and not poll.anonymous:
                week = max(0, bisect.bisect_right(starts, poll.created_at) - 1)
                weeks.setdefault(week, []).extend(voters)
        return {n: (len(keys), frozenset(keys)) for n, keys in weeks.items()}

    async def names_choosing(self, poll_ids: Sequence[int], option: int) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for poll_id in poll_ids:
            names = tally(self.d.polls[poll_id], await self.reactions(poll_id)).names[option]
            if names:
                found[poll_id] = list(names)
        return found

    async def close(self, poll_id: int, at: datetime, *, skip_locked: bool = False) -> bool:
        poll = self.d.polls.get(poll_id)
        if poll is None or poll.closed_at is not None:
            return False
        self.d.polls[poll_id] = replace(poll, closed_at=at, remind_at=None)
        self.d.poll_secrets.pop(poll_id, None)
        return True

    async def secret(self, poll_id: int) -> bytes | None:
        return self.d.poll_secrets.get(poll_id)

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        for poll_id, when in updates:
            self.d.polls[poll_id] = replace(self.d.polls[poll_id], remind_at=when)

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        due = [
            p
            for p in self.d.polls.values()
            if p.remind_at is not None
            and p.remind_at <= now
            and p.is_open(now)
            and self._on(p.group_id, platforms)
        ]
        claimed = []
        for p in sorted(due, key=lambda p: (p.remind_at, p.id))[:limit]:
            self.d.polls[p.id] = replace(p, remind_at=None)
            claimed.append(self.d.polls[p.id])
        return claimed

    def _voters(self, poll_ids: Collection[int]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {poll_id: set() for poll_id in poll_ids}
        for (poll_id, user_key, _), r in self.d.reactions.items():
            if poll_id in found and r.present:
                found[poll_id].add(user_key)
        return found

    async def unvoted(self, poll_ids: Collection[int]) -> dict[int, Unresponded]:
        voters = self._voters(poll_ids)
        groups = {p: self.d.polls[p].group_id for p in poll_ids if p in self.d.polls}
        return {p: _unresponded(self.d, groups.get(p), voters[p]) for p in poll_ids}

    async def everyone_voted(self, poll_ids: Collection[int]) -> set[int]:
        voters = self._voters([p for p in poll_ids if p in self.d.polls])
        complete = set()
        for poll_id, keys in voters.items():
            roster = [m for m in self.d.members.values() if m.group_id == self.d.polls[poll_id].group_id]
            on_roster = [m.key for m in roster if m.on_roster]
            if on_roster and all(key in keys for key in on_roster):
                complete.add(poll_id)
        return complete

    async def open_on(
        self, platform: str, now: datetime, after: int = 0, limit: int | None = None
    ) -> list[Poll]:
        found = [
            p
            for p in sorted(self.d.polls.values(), key=lambda p: p.id)
            if self.d.groups[p.group_id].channel.platform == platform and p.is_open(now) and p.id > after
        ]
        return found[:limit] if limit is not None else found

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        due = [
            p
            for p in self.d.polls.values()
            if p.closed_at is None and p.closes_at <= now and self._on(p.group_id, platforms)
        ]
        return sorted(due, key=lambda p: (p.closes_at, p.id))[:limit]

    async def in_group(self, group_id: int) -> list[Poll]:
        return [p for p in self.d.polls.values() if p.group_id == group_id]

    async def newest_in_group(
        self, group_id: int, kinds: Collection[PollKind], offset: int = 0, limit: int | None = None
    ) -> list[Poll]:
        found = [p for p in await self.in_group(group_id) if p.kind in kinds]
        newest = sorted(found, key=lambda p: -p.id)[offset:]
        return newest if limit is None else newest[:limit]

    async def kinds_in_group(self, group_id: int) -> dict[PollKind, tuple[int, datetime]]:
        found: dict[PollKind, tuple[int, datetime]] = {}
        for p in await self.in_group(group_id):
            count, first = found.get(p.kind, (0, p.created_at))
            found[p.kind] = (count + 1, min(first, p.created_at))
        return found

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_voted_by: UserRef | None = None
    ) -> list[Poll]:
        voted = (
            {p for (p, key, _), r in self.d.reactions.items() if key == not_voted_by.key and r.present}
            if not_voted_by is not None
            else set()
        )
        found = [
            p
            for p in self.d.polls.values()
            if p.group_id in group_ids and p.is_open(now) and p.id not in voted
        ]
        return sorted(found, key=lambda p: (p.closes_at, p.id))

    async def open_voter_counts(self, group_ids: Collection[int], now: datetime) -> dict[int, int]:
        open_ids = {p.id for p in await self.open_in(group_ids, now)}
        voters: dict[int, set[str]] = {}
        for (poll_id, key, _), r in self.d.reactions.items():
            if poll_id in open_ids and r.present:
                voters.setdefault(poll_id, set()).add(key)
        return {poll_id: len(keys) for poll_id, keys in voters.items()}


class MemoryGoals(_MemoryPart):
    async def create(
        self,
        group_id: int,
        text: str,
        proposer: UserRef,
        at: datetime,
        put_forward_by: UserRef | None = None,
        reshapes: int | None = None,
    ) -> Goal:
        by = put_forward_by or proposer
        goal = Goal(
            len(self.d.goals) + 1,
            group_id,
            text,
            GoalStatus.PROPOSED,
            proposer.key,
            proposer.name,
            at,
            at,
            put_forward_by_key=by.key,
            put_forward_by_name=by.name,
            reshapes_id=reshapes,
        )
        self.d.goals[goal.id] = goal
        return goal

    async def set_poll(self, goal_id: int, poll_id: int | None) -> None:
        self.d.goals[goal_id] = replace(self.d.goals[goal_id], poll_id=poll_id)

    async def get(self, group_id: int, goal_id: int) -> Goal | None:
        goal = self.d.goals.get(goal_id)
        return goal if goal is not None and goal.group_id == group_id else None

    async def for_poll(self, poll_id: int) -> Goal | None:
        return next((g for g in self.d.goals.values() if g.poll_id == poll_id), None)

    async def for_polls(self, poll_ids: Collection[int]) -> dict[int, Goal]:
        return {
            g.poll_id: g for g in self.d.goals.values() if g.poll_id is not None and g.poll_id in poll_ids
        }

    async def set_status(self, goal_id: int, status: GoalStatus, at: datetime) -> None:
        self.d.goals[goal_id] = replace(self.d.goals[goal_id], status=status, updated_at=at)

    async def in_group(self, group_id: int) -> list[Goal]:
        return [g for g in self.d.goals.values() if g.group_id == group_id]

    async def of_groups(
        self, group_ids: Sequence[int], statuses: Collection[GoalStatus]
    ) -> dict[int, list[Goal]]:
        found: dict[int, list[Goal]] = {}
        for g in sorted(self.d.goals.values(), key=lambda g: g.id):
            if g.group_id in group_ids and g.status in statuses:
                found.setdefault(g.group_id, []).append(g)
        return found


class MemoryConcerns(_MemoryPart):
    async def add(
        self, group_id: int, goal_id: int, text: str, author: UserRef | None, at: datetime
    ) -> Concern:
        self.d.last_concern += 1
        key, name = (author.key, author.name) if author is not None else ("", "")
        concern = Concern(self.d.last_concern, group_id, goal_id, text, key, name, at)
        self.d.concerns[concern.id] = concern
        return concern

    async def get(self, group_id: int, concern_id: int) -> Concern | None:
        concern = self.d.concerns.get(concern_id)
        return concern if concern is not None and concern.group_id == group_id else None

    async def of_goals(self, goal_ids: Collection[int]) -> dict[int, list[Concern]]:
        found: dict[int, list[Concern]] = {}
        for c in sorted(self.d.concerns.values(), key=lambda c: c.id):
            if c.goal_id in goal_ids:
                found.setdefault(c.goal_id, []).append(c)
        return found

    async def address(self, concern_id: int, by: UserRef, note: str, at: datetime) -> bool:
        concern = self.d.concerns.get(concern_id)
        if concern is None or concern.addressed:
            return False
        self.d.concerns[concern_id] = replace(
            concern, addressed_at=at, addressed_by_key=by.key, addressed_by_name=by.name, note=note
        )
        return True

    async def claim_asks(self, asks: Collection[tuple[int, str]], at: datetime) -> set[tuple[int, str]]:
        fresh = {a for a in dict.fromkeys(asks) if a not in self.d.asks and a[0] in self.d.polls}
        self.d.asks.update(dict.fromkeys(fresh, at))
        return fresh


class MemorySchedules(_MemoryPart):
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
    ) -> Schedule:
        self.d.last_schedule += 1
        schedule = Schedule(
            self.d.last_schedule,
            group_id,
            kind,
            cron,
            description,
            text,
            False,
            next_occurrence,
            next_due_at,
            created_by.name,
            at,
            created_by.key,
        )
        self.d.schedules[schedule.id] = schedule
        return schedule

    async def get(self, group_id: int, schedule_id: int) -> Schedule | None:
        s = self.d.schedules.get(schedule_id)
        return s if s is not None and s.group_id == group_id else None

    async def in_group(self, group_id: int) -> list[Schedule]:
        return [s for s in self.d.schedules.values() if s.group_id == group_id]

    async def delete(self, schedule_id: int) -> None:
        del self.d.schedules[schedule_id]
        self.d.deliveries = {k for k in self.d.deliveries if k[0] != schedule_id}

    async def set_paused(self, schedule_id: int, paused: bool) -> None:
        self.d.schedules[schedule_id] = replace(self.d.schedules[schedule_id], paused=paused)

    async def set_cron(self, schedule_id: int, cron: str, description: str) -> None:
        self.d.schedules[schedule_id] = replace(
            self.d.schedules[schedule_id], cron=cron, description=description
        )

    async def set_next(self, updates: Sequence[tuple[int, datetime | None, datetime | None]]) -> None:
        for schedule_id, occurrence, due in updates:
            s = self.d.schedules[schedule_id]
            self.d.schedules[schedule_id] = replace(s, next_occurrence=occurrence, next_due_at=due)

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        moved = set()
        for schedule_id, seen, occurrence, due in moves:
            s = self.d.schedules.get(schedule_id)
            if s is not None and s.next_occurrence == seen:
                self.d.schedules[schedule_id] = replace(s, next_occurrence=occurrence, next_due_at=due)
                moved.add(schedule_id)
        return moved

    async def record_deliveries(self, keys: Sequence[tuple[int, datetime]], at: datetime) -> None:
        for k in keys:
            if k[0] in self.d.schedules and k not in self.d.deliveries:
                self.d.deliveries.add(k)
                self.d.delivered_at[k] = at

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        due = [
            s
            for s in self.d.schedules.values()
            if not s.paused and s.next_due_at and s.next_due_at <= now and self._on(s.group_id, platforms)
        ]
        return self._due(sorted(due, key=lambda s: (s.next_due_at, s.id))[:limit])

    async def claim(self, claims: Sequence[tuple[int, datetime]]) -> set[int]:
        claimed = set()
        for schedule_id, occurrence in claims:
            s = self.d.schedules.get(schedule_id)
            if s is not None and s.next_occurrence == occurrence and s.next_due_at is not None:
                self.d.schedules[schedule_id] = replace(s, next_due_at=None)
                claimed.add(schedule_id)
        return claimed

    async def to_plan(self, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        waiting = [
            s
            for s in self.d.schedules.values()
            if s.next_due_at is None and s.next_occurrence is not None and self._on(s.group_id, platforms)
        ]
        found = self._due(sorted(waiting, key=lambda s: s.id)[:limit])
        return [replace(s, delivered_at=self.d.delivered_at.get((s.id, s.next_occurrence))) for s in found]

    async def set_planned(
        self, updates: Sequence[tuple[int, datetime, datetime | None, datetime | None]]
    ) -> None:
        for schedule_id, seen, occurrence, due in updates:
            s = self.d.schedules.get(schedule_id)
            if s is not None and s.next_occurrence == seen and s.next_due_at is None:
                self.d.schedules[schedule_id] = replace(s, next_occurrence=occurrence, next_due_at=due)

    def _due(self, found: list[Schedule]) -> list[DueSchedule]:
        groups = [self.d.groups[s.group_id] for s in found]
        return [
            DueSchedule(
                s.id,
                s.kind,
                s.cron,
                s.text,
                s.next_occurrence,
                g.id,
                g.channel,
                g.phase,
                g.timezone,
                g.quiet,
                s.next_due_at,
            )
            for s, g in zip(found, groups, strict=True)
        ]


class MemoryReviews(_MemoryPart):
    async def create(
        self, group_id: int, by: UserRef, at: datetime, closes_at: datetime, remind_at: datetime | None = None
    ) -> Review:
        review = Review(len(self.d.reviews) + 1, group_id, by.name, at, closes_at, None, by.key, remind_at)
        self.d.reviews[review.id] = review
        return review

    async def open(self, group_id: int) -> Review | None:
        found = [r for r in self.d.reviews.values() if r.group_id == group_id and r.closed_at is None]
        return found[-1] if found else None

    async def get(self, group_id: int, review_id: int) -> Review | None:
        review = self.d.reviews.get(review_id)
        return review if review is not None and review.group_id == group_id else None

    async def set_message(self, review_id: int, message_id: str) -> None:
        self.d.reviews[review_id] = replace(self.d.reviews[review_id], message_id=message_id)

    async def close(self, review_id: int, at: datetime) -> bool:
        review = self.d.reviews.get(review_id)
        if review is None or review.closed_at is not None:
            return False
        self.d.reviews[review_id] = replace(review, closed_at=at, remind_at=None)
        return True

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        for review_id, when in updates:
            self.d.reviews[review_id] = replace(self.d.reviews[review_id], remind_at=when)

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]:
        due = [
            r
            for r in self.d.reviews.values()
            if r.remind_at is not None
            and r.remind_at <= now < r.closes_at
            and r.closed_at is None
            and self._on(r.group_id, platforms)
        ]
        claimed = []
        for r in sorted(due, key=lambda r: (r.remind_at, r.id))[:limit]:
            self.d.reviews[r.id] = replace(r, remind_at=None)
            claimed.append(self.d.reviews[r.id])
        return claimed

    async def unanswered(self, review_ids: Collection[int]) -> dict[int, Unresponded]:
        found: dict[int, set[str]] = {review_id: set() for review_id in review_ids}
        for r in self.d.reflections.values():
            if r.review_id in found and r.question is not None:
                found[r.review_id].add(r.user_key)
        groups = {r: self.d.reviews[r].group_id for r in review_ids if r in self.d.reviews}
        return {r: _unresponded(self.d, groups.get(r), found[r]) for r in review_ids}

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]:
        due = [
            r
            for r in self.d.reviews.values()
            if r.closed_at is None and r.closes_at <= now and self._on(r.group_id, platforms)
        ]
        return sorted(due, key=lambda r: (r.closes_at, r.id))[:limit]

    async def in_group(self, group_id: int) -> list[Review]:
        return [r for r in self.d.reviews.values() if r.group_id == group_id]

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_answered_by: UserRef | None = None
    ) -> list[Review]:
        answered = (
            {r.review_id for r in self.d.reflections.values() if r.user_key == not_answered_by.key}
            if not_answered_by is not None
            else set()
        )
        found = [
            r
            for r in self.d.reviews.values()
            if r.group_id in group_ids and r.closed_at is None and now < r.closes_at and r.id not in answered
        ]
        return sorted(found, key=lambda r: (r.closes_at, r.id))

    async def add_reflection(
        self,
        group_id: int,
        review_id: int | None,
        question: int | None,
        user: UserRef,
        text: str,
        at: datetime,
    ) -> Reflection:
        self.d.last_reflection += 1
        reflection = Reflection(
            self.d.last_reflection, group_id, review_id, question, user.key, user.name, text, at
        )
        self.d.reflections[reflection.id] = reflection
        return reflection

    async def get_reflection(self, group_id: int, reflection_id: int) -> Reflection | None:
        r = self.d.reflections.get(reflection_id)
        return r if r is not None and r.group_id == group_id else None

    async def reflections(self, group_id: int, review_id: int | None = None) -> list[Reflection]:
        return [
            r
            for r in self.d.reflections.values()
            if r.group_id == group_id and (review_id is None or r.review_id == review_id)
        ]

    async def answer_counts(self, group_id: int) -> dict[int, tuple[int, int]]:
        found: dict[int, tuple[int, int]] = {}
        for r in await self.reflections(group_id):
            if r.review_id is not None:
                answers, proposals = found.get(r.review_id, (0, 0))
                found[r.review_id] = (answers + 1, proposals + (r.question == 5))
        return found

    async def reflection_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        weeks: dict[int, list[str]] = {}
        for r in await self.reflections(group_id) if starts else ():
            week = max(0, bisect.bisect_right(starts, r.at) - 1)
            weeks.setdefault(week, []).append(r.user_key)
        return {n: (len(keys), frozenset(keys)) for n, keys in weeks.items()}

    async def reflections_since(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, list[Reflection]]:
        found: dict[int, list[Reflection]] = {}
        for r in sorted(self.d.reflections.values(), key=lambda r: r.id):
            if r.group_id in group_ids and r.at >= since:
                found.setdefault(r.group_id, []).append(r)
        return found


class MemoryMembers(_MemoryPart):
    async def add(self, group_id: int, user: UserRef, at: datetime, intro: str = "") -> roster.Member:
        if any(m.group_id == group_id and m.key == user.key for m in self.d.members.values()):
            raise ValueError(f"{user.key} is a member of group {group_id} already")  # as the unique key
        self.d.last_member += 1
        member = roster.Member(
            self.d.last_member, group_id, user.key, user.name, at, last_active_at=at, intro=intro
        )
        self.d.members[member.id] = member
        return member

    async def add_many(self, group_id: int, users: Sequence[UserRef], at: datetime) -> list[roster.Member]:
        return [await self.add(group_id, user, at) for user in users]

    async def get(self, group_id: int, key: str) -> roster.Member | None:
        return next((m for m in self.d.members.values() if m.group_id == group_id and m.key == key), None)

    @staticmethod
    def _joined(found: list[roster.Member]) -> list[roster.Member]:
        return sorted(found, key=lambda m: (m.joined_at, m.id))

    async def roster(self, group_id: int) -> list[roster.Member]:
        return self._joined([m for m in self.d.members.values() if m.group_id == group_id and m.on_roster])

    async def rosters(self, group_ids: Sequence[int]) -> dict[int, list[roster.RosterEntry]]:
        found = {
            group_id: [
                roster.RosterEntry(
                    m.id, m.group_id, m.key, m.name, m.last_active_at or m.joined_at, bool(m.intro), m.private
                )
                for m in await self.roster(group_id)
            ]
            for group_id in group_ids
        }
        return {group_id: listed for group_id, listed in found.items() if listed}

    async def acts(self, group_ids: Sequence[int], since: datetime) -> dict[int, list[Act]]:
        d = self.d
        raw = [
            (g.group_id, ActKind.PROPOSAL, g.put_forward_by_key or g.proposer_key, g.created_at)
            for g in d.goals.values()
        ]
        raw += [(g, ActKind.CLOSING, detail, at) for g, kind, at, detail in d.signals if kind == CLOSING]
        raw += [(c.group_id, ActKind.PHASE_MOVE, c.by_key, c.at) for c in d.changes]
        found: dict[int, list[Act]] = {}
        for group_id, kind, key, at in raw:
            ours = key and key != BOT.key and not key.startswith(ANONYMOUS_PREFIX)
            if group_id in group_ids and at >= since and ours:
                found.setdefault(group_id, []).append(Act(kind, key, at))
        for listed in found.values():
            listed.sort(key=lambda a: a.at)
        return found

    async def buddies(self, group_id: int, active_since: datetime) -> list[roster.Member]:
        return self._joined(
            [
                m
                for m in await self.roster(group_id)
                if m.buddy and m.last_active_at is not None and m.last_active_at >= active_since
            ]
        )

    async def of_user(self, user: UserRef) -> list[roster.Member]:
        return self._joined([m for m in self.d.members.values() if m.key == user.key and m.on_roster])

    def _update(self, member_id: int, **changes: Any) -> None:
        self.d.members[member_id] = replace(self.d.members[member_id], **changes)

    async def set_left(self, member_id: int, at: datetime | None) -> None:
        self._update(member_id, left_at=at)

    async def record_activity(self, group_id: int, keys: Collection[str], at: datetime) -> set[str]:
        known = set()
        for m in list(self.d.members.values()):
            if m.group_id == group_id and m.key in keys:
                known.add(m.key)
                if m.on_roster:
                    self._update(m.id, last_active_at=at)
        return known

    async def save_settings(self, member: roster.Member) -> None:
        self._update(
            member.id,
            name=member.name,
            intro=member.intro,
            private=member.private,
            buddy=member.buddy,
            reminders=member.reminders,
        )

    async def pair(self, newcomer_id: int, buddy: roster.Member, at: datetime) -> None:
        self._update(newcomer_id, buddy_key=buddy.key)
        self._update(buddy.id, paired_at=at)

    async def hold_welcomes(self, member_ids: Sequence[int], until: datetime) -> None:
        for member_id in member_ids:
            self._update(member_id, welcome_due_at=until)

    async def claim_welcomes(
        self, now: datetime, limit: int, platforms: Collection[str]
    ) -> list[roster.Member]:
        due = [
            m
            for m in self.d.members.values()
            if m.welcome_due_at is not None and m.welcome_due_at <= now and self._on(m.group_id, platforms)
        ]
        claimed = sorted(due, key=lambda m: (m.welcome_due_at, m.id))[:limit]
        for m in claimed:
            self._update(m.id, welcome_due_at=None)
        return sorted(
            (replace(m, welcome_due_at=None) for m in claimed), key=lambda m: (m.group_id, m.joined_at, m.id)
        )

    async def contributions(self, group_id: int, since: datetime) -> dict[str, roster.Contributions]:
        counts: dict[str, dict[str, int]] = {}

        def count(key: str, what: str) -> None:
            done = counts.setdefault(key, {})
            done[what] = done.get(what, 0) + 1

        for g in self.d.goals.values():
            if g.group_id == group_id and g.created_at >= since:
                count(g.proposer_key, "proposals")
        voted = {
            (poll_id, r.user_key)
            for (poll_id, _, _), r in self.d.reactions.items()
            if r.present
            and self.d.polls[poll_id].group_id == group_id
            and self.d.polls[poll_id].created_at >= since
        }
        for _, user_key in voted:
            count(user_key, "votes")
        for r in self.d.reflections.values():
            if r.group_id == group_id and r.at >= since:
                count(r.user_key, "reflections")
        return {key: roster.Contributions(**done) for key, done in counts.items()}

    async def forget(self, user: UserRef) -> Forgotten:
        d, key = self.d, user.key
        stored_names = {g.proposer_name for g in d.goals.values() if g.proposer_key == key}
        stored_names |= {g.put_forward_by_name for g in d.goals.values() if g.put_forward_by_key == key}
        stored_names |= {p.author_name for p in d.polls.values() if p.author_key == key}
        stored_names |= {r.user_name for r in d.reactions.values() if r.user_key == key}
        stored_names |= {r.user_name for r in d.reflections.values() if r.user_key == key}
        stored_names |= {c.by for c in d.changes if c.by_key == key}
        stored_names |= {s.created_by for s in d.schedules.values() if s.created_by_key == key}
        stored_names |= {r.started_by for r in d.reviews.values() if r.started_by_key == key}
        stored_names |= {m.name for m in d.members.values() if m.key == key}
        stored_names |= {c.author_name for c in d.concerns.values() if c.author_key == key}
        stored_names |= {c.addressed_by_name for c in d.concerns.values() if c.addressed_by_key == key}
        stored_names |= {w.wrapper_name for w in d.wraps.values() if w.wrapper_key == key}
        words = identifiers(user, stored_names)
        names = {user.name, *stored_names} - {FORMER_MEMBER}

        def theirs(row_key: str, row_name: str, group_id: int) -> bool:
            on_platform = d.groups[group_id].channel.platform == user.platform
            return row_key == key or (row_key == "" and row_name in names and on_platform)

        # A reshaped goal's consent poll names who blocked the goal it reshapes: scrubbed before their
        # votes lose their key.
        voted_on = {poll_id for poll_id, user_key, _ in d.reactions if user_key == key}
        for g in d.goals.values():
            old = d.goals.get(g.reshapes_id) if g.reshapes_id is not None else None
            if old is not None and old.poll_id in voted_on and g.poll_id is not None:
                p = d.polls[g.poll_id]
                d.polls[p.id] = replace(p, question=scrub(p.question, words))

        mine = [i for i, r in d.reflections.items() if r.user_key == key]
        for i in mine:
            del d.reflections[i]
        voiced = [i for i, c in d.concerns.items() if c.author_key == key]
        for i in voiced:
            del d.concerns[i]
        d.asks = {ask: at for ask, at in d.asks.items() if ask[1] != key}
        open_votes = closed_votes = 0
        anonymous: dict[int, str] = {}  # one anonymous key per poll: the member still counts once
        for poll_id, user_key, option in [k for k in d.reactions if k[1] == key]:
            vote = d.reactions.pop((poll_id, user_key, option))
            if d.polls[poll_id].closed_at is None:
                open_votes += 1
                continue
            new_key = anonymous.setdefault(poll_id, anonymous_key())
            d.reactions[(poll_id, new_key, option)] = replace(vote, user_key=new_key, user_name=FORMER_MEMBER)
            closed_votes += 1

        renamed = 0
        # The bot writes the proposer's name into a consent poll's question; the proposer is its author,
        # or (goals made from a reflection before revision 0007) the member who put the goal forward.
        named = {
            g.poll_id for g in d.goals.values() if key in (g.proposer_key, g.put_forward_by_key) and g.poll_id
        }
        for g in list(d.goals.values()):
            proposed = theirs(g.proposer_key, g.proposer_name, g.group_id)
            put_forward = theirs(g.put_forward_by_key, g.put_forward_by_name, g.group_id)
            if not (proposed or put_forward):
                continue
            new_key = anonymous_key()  # one per item, in each column that stood for them
            if proposed:
                g = replace(g, proposer_key=new_key, proposer_name=FORMER_MEMBER)
            if put_forward:
                g = replace(g, put_forward_by_key=new_key, put_forward_by_name=FORMER_MEMBER)
            d.goals[g.id] = g
            renamed += 1
        for p in list(d.polls.values()):
            if p.id in named and p.author_key != key:
                d.polls[p.id] = replace(p, question=scrub(p.question, words))
        for p in [p for p in d.polls.values() if theirs(p.author_key, p.author_name, p.group_id)]:
            question = scrub(p.question, words) if p.author_key == key else p.question
            d.polls[p.id] = replace(
                p, author_key=anonymous_key(), author_name=FORMER_MEMBER, question=question
            )
            renamed += 1
        for i, c in enumerate(d.changes):
            if theirs(c.by_key, c.by, c.group_id):
                d.changes[i] = replace(c, by_key=anonymous_key(), by=FORMER_MEMBER)
                renamed += 1
        for s in [s for s in d.schedules.values() if theirs(s.created_by_key, s.created_by, s.group_id)]:
            d.schedules[s.id] = replace(s, created_by_key=anonymous_key(), created_by=FORMER_MEMBER)
            renamed += 1
        for r in [r for r in d.reviews.values() if theirs(r.started_by_key, r.started_by, r.group_id)]:
            d.reviews[r.id] = replace(r, started_by_key=anonymous_key(), started_by=FORMER_MEMBER)
            renamed += 1
        for c in [c for c in d.concerns.values() if c.addressed_by_key == key]:
            d.concerns[c.id] = replace(c, addressed_by_key=anonymous_key(), addressed_by_name=FORMER_MEMBER)
            renamed += 1

        # Off every roster, and out of every buddy pair: nobody's buddy is them any more.
        rosters = buddies = 0
        for m in list(d.members.values()):
            if m.key == key:
                del d.members[m.id]
                rosters += 1
            elif m.buddy_key == key:
                d.members[m.id] = replace(m, buddy_key="")
                buddies += 1
        d.findings = [f for f in d.findings if f[2] != key]
        d.signals = [s for s in d.signals if not (s[1] == CLOSING and s[3] == key)]
        records = 0
        for state_key in [k for k, v in d.state.items() if names_user(k, v, user)]:
            del d.state[state_key]
            records += 1
        for row_id, row in list(d.outbox.items()):
            post = row.row.post
            if post.channel.platform != user.platform:
                continue
            if post.user is not None and post.user == user:
                del d.outbox[row_id]
                records += 1
                continue
            text, reason = scrub(post.text, words), scrub(row.reason, words)
            line = scrub(post.channel_line, words) if post.channel_line is not None else None
            if (text, reason, line) != (post.text, row.reason, post.channel_line):
                scrubbed = replace(post, text=text, channel_line=line)
                row.row, row.reason = replace(row.row, post=scrubbed), reason
                records += 1
        for event, (at, reason) in list(d.failed.items()):
            if event[0] == user.platform and scrub(reason, words) != reason:
                d.failed[event] = (at, scrub(reason, words))
                records += 1
        # Out of every role's rotation, and no role held by them; their wraps stay, by a former member.
        pooled = [k for k in d.pool if k[1] == key]
        for k in pooled:
            del d.pool[k]
        held = [r for r in d.roles.values() if r.holder_key == key]
        for r in held:
            d.roles[r.id] = replace(r, holder_key="", holder_name="", held_since=None)
        for w in [w for w in d.wraps.values() if w.wrapper_key == key]:
            d.wraps[w.id] = replace(w, wrapper_key=anonymous_key(), wrapper_name=FORMER_MEMBER)
        return Forgotten(
            len(mine),
            open_votes,
            closed_votes,
            renamed,
            records,
            rosters,
            buddies,
            len(voiced),
            len(pooled) + len(held),
        )


class MemoryRoles(_MemoryPart):
    async def ensure(
        self, group_id: int, built_in: Sequence[tuple[str, str]], at: datetime, week: datetime | None
    ) -> None:
        have = {r.name for r in self.d.roles.values() if r.group_id == group_id}
        for name, duty in built_in:
            if name not in have:
                self._new(group_id, name, duty, True, at, week)

    def _new(
        self, group_id: int, name: str, duty: str, built_in: bool, at: datetime, week: datetime | None
    ) -> Role:
        self.d.last_role += 1
        role = Role(self.d.last_role, group_id, name, duty, built_in, at, next_week_at=week)
        self.d.roles[role.id] = role
        return role

    async def in_group(self, group_id: int) -> list[Role]:
        found = [r for r in self.d.roles.values() if r.group_id == group_id]
        return sorted(found, key=lambda r: (not r.built_in, r.id))

    async def get(self, group_id: int, name: str) -> Role | None:
        return next((r for r in self.d.roles.values() if r.group_id == group_id and r.name == name), None)

    async def add(
        self, group_id: int, name: str, duty: str, at: datetime, week: datetime | None
    ) -> Role | None:
        if await self.get(group_id, name) is not None:
            return None
        return self._new(group_id, name, duty, False, at, week)

    async def remove(self, role_id: int) -> None:
        self.d.roles.pop(role_id, None)
        self.d.pool = {k: p for k, p in self.d.pool.items() if k[0] != role_id}

    async def set_holder(self, role_id: int, holder: UserRef | None, at: datetime, expected: str) -> bool:
        role = self.d.roles.get(role_id)
        if role is None or role.holder_key != expected:
            return False
        if holder is None:
            self.d.roles[role_id] = replace(role, holder_key="", holder_name="", held_since=None)
            return True
        self.d.roles[role_id] = replace(
            role, holder_key=holder.key, holder_name=holder.display, held_since=at
        )
        if (p := self.d.pool.get((role_id, holder.key))) is not None:
            self.d.pool[(role_id, holder.key)] = replace(p, last_held_at=at, times_held=p.times_held + 1)
        return True

    async def set_rotation(self, role_id: int, rotation: Rotation, next_turn_at: datetime | None) -> None:
        role = self.d.roles[role_id]
        self.d.roles[role_id] = replace(role, rotation=rotation, next_turn_at=next_turn_at)

    async def pools(self, role_ids: Collection[int]) -> dict[int, list[PoolMember]]:
        found: dict[int, list[PoolMember]] = {}
        for p in sorted(self.d.pool.values(), key=lambda p: (p.role_id, p.joined_at, p.key)):
            if p.role_id in role_ids:
                found.setdefault(p.role_id, []).append(p)
        return found

    async def join_pool(self, role_id: int, user: UserRef, at: datetime) -> bool:
        if (role_id, user.key) in self.d.pool:
            return False
        self.d.pool[(role_id, user.key)] = PoolMember(role_id, user.key, user.display, at)
        return True

    async def leave_pool(self, role_id: int, key: str) -> bool:
        return self.d.pool.pop((role_id, key), None) is not None

    async def week_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Role]:
        due = [
            r
            for r in self.d.roles.values()
            if r.next_week_at is not None and r.next_week_at <= now and self._on(r.group_id, platforms)
        ]
        return sorted(due, key=lambda r: (r.group_id, r.id))[:limit]

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        moved = set()
        for role_id, seen, week, turn in moves:
            role = self.d.roles.get(role_id)
            if role is not None and role.next_week_at == seen:
                self.d.roles[role_id] = replace(role, next_week_at=week, next_turn_at=turn)
                moved.add(role_id)
        return moved

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
    ) -> Wrap:
        self.d.last_wrap += 1
        wrapped = at if state is WrapState.WRAPPED else None
        wrap = Wrap(
            self.d.last_wrap,
            group_id,
            week_end,
            wrapper.key,
            wrapper.display,
            at,
            state,
            digest,
            fallback_at,
            text,
            wrapped,
        )
        self.d.wraps[wrap.id] = wrap
        return wrap

    async def wraps(self, group_id: int) -> list[Wrap]:
        return sorted((w for w in self.d.wraps.values() if w.group_id == group_id), key=lambda w: -w.id)

    async def open_wrap(self, group_id: int, key: str) -> Wrap | None:
        mine = [
            w for w in await self.wraps(group_id) if w.wrapper_key == key and w.state is not WrapState.WRAPPED
        ]
        return mine[0] if mine else None

    async def wrap(self, wrap_id: int, text: str, at: datetime) -> bool:
        w = self.d.wraps.get(wrap_id)
        if w is None or w.state is WrapState.WRAPPED:
            return False
        self.d.wraps[wrap_id] = replace(
            w, state=WrapState.WRAPPED, text=text, wrapped_at=at, fallback_at=None
        )
        return True

    async def fallbacks_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Wrap]:
        due = [
            w
            for w in self.d.wraps.values()
            if w.state is WrapState.DRAFTED
            and w.fallback_at is not None
            and w.fallback_at <= now
            and self._on(w.group_id, platforms)
        ]
        return sorted(due, key=lambda w: (w.fallback_at or now, w.id))[:limit]

    async def lapse(self, wrap_ids: Collection[int]) -> set[int]:
        lapsed = set()
        for i in wrap_ids:
            w = self.d.wraps.get(i)
            if w is not None and w.state is WrapState.DRAFTED:
                self.d.wraps[i] = replace(w, state=WrapState.LAPSED, fallback_at=None)
                lapsed.add(i)
        return lapsed

    async def digest_to_wrapper(self, group_id: int, since: datetime) -> bool:
        held = any(r.group_id == group_id and r.name == WRAPPER and r.held for r in self.d.roles.values())
        return held or any(w.group_id == group_id and w.drafted_at >= since for w in self.d.wraps.values())


def _unresponded(d: MemoryData, group_id: int | None, responded: set[str]) -> Unresponded:
    roster = sorted(
        (m for m in d.members.values() if m.group_id == group_id and m.on_roster),
        key=lambda m: (m.joined_at, m.id),
    )
    absent = tuple(Absent(m.key, m.name, m.reminders) for m in roster if m.key not in responded)
    return Unresponded(len(roster), absent)


class MemoryMeetings(_MemoryPart):
    async def create(self, group_id: int, title: str, when: When, by: UserRef, at: datetime) -> Meeting:
        self.d.last_meeting += 1
        meeting = Meeting(
            self.d.last_meeting,
            group_id,
            title,
            when.cron,
            when.description,
            when.at,
            by.name,
            at,
            created_by_key=by.key,
        )
        self.d.meetings[meeting.id] = meeting
        return meeting

    async def get(self, group_id: int, meeting_id: int) -> Meeting | None:
        m = self.d.meetings.get(meeting_id)
        return m if m is not None and m.group_id == group_id else None

    async def in_group(self, group_id: int) -> list[Meeting]:
        return sorted((m for m in self.d.meetings.values() if m.group_id == group_id), key=lambda m: m.id)

    async def cancel(self, meeting_id: int, at: datetime) -> bool:
        m = self.d.meetings[meeting_id]
        if m.cancelled_at is not None:
            return False
        self.d.meetings[meeting_id] = replace(m, cancelled_at=at)
        await self.delete_ahead(meeting_id, at)
        return True

    async def set_when(self, meeting_id: int, when: When) -> None:
        m = self.d.meetings[meeting_id]
        self.d.meetings[meeting_id] = replace(m, cron=when.cron, description=when.description, at=when.at)

    async def set_skips(self, meeting_id: int, days: Sequence[str]) -> None:
        self.d.meetings[meeting_id] = replace(self.d.meetings[meeting_id], skips=tuple(days))

    async def add_occurrence(self, occurrence: Occurrence) -> Occurrence:
        self.d.last_occurrence += 1
        stored = replace(occurrence, id=self.d.last_occurrence)
        self.d.occurrences[stored.id] = stored
        return stored

    async def occurrence(self, occurrence_id: int) -> Occurrence | None:
        return self.d.occurrences.get(occurrence_id)

    async def occurrences(self, meeting_ids: Collection[int]) -> list[Occurrence]:
        wanted = set(meeting_ids)
        found = [o for o in self.d.occurrences.values() if o.meeting_id in wanted]
        return sorted(found, key=lambda o: (o.starts_at, o.id))

    async def delete_ahead(self, meeting_id: int, now: datetime) -> None:
        gone = {i for i, o in self.d.occurrences.items() if o.meeting_id == meeting_id and o.starts_at > now}
        for i in gone:
            del self.d.occurrences[i]
        self.d.rsvps = {k: r for k, r in self.d.rsvps.items() if k[0] not in gone}

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Occurrence]:
        due = [
            o
            for o in self.d.occurrences.values()
            if o.next_due_at is not None
            and o.next_due_at <= now
            and self.d.meetings[o.meeting_id].cancelled_at is None
            and self._on(o.group_id, platforms)
        ]
        return sorted(due, key=lambda o: (o.next_due_at, o.id))[:limit]

    async def move(self, occurrence: Occurrence, seen: datetime | None) -> bool:
        o = self.d.occurrences.get(occurrence.id)
        if o is None or o.next_due_at != seen:
            return False
        self.d.occurrences[o.id] = replace(occurrence, message=o.message)
        return True

    async def set_message(self, occurrence_id: int, message: MessageRef) -> None:
        if (o := self.d.occurrences.get(occurrence_id)) is not None:
            self.d.occurrences[occurrence_id] = replace(o, message=message)

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Occurrence]:
        wanted = set(message_ids)
        return [
            o
            for o in self.d.occurrences.values()
            if o.message is not None and o.message.channel.platform == platform and o.message.id in wanted
        ]

    async def ahead_with_messages(self, platform: str, now: datetime) -> list[Occurrence]:
        return [
            o
            for o in self.d.occurrences.values()
            if o.message is not None and o.message.channel.platform == platform and o.starts_at > now
        ]

    async def set_rsvps(self, changes: Sequence[tuple[int, UserRef, str | None]], at: datetime) -> None:
        for occurrence_id, user, choice in changes:
            if choice is None:
                self.d.rsvps.pop((occurrence_id, user.key), None)
            else:
                self.d.rsvps[(occurrence_id, user.key)] = Rsvp(occurrence_id, user.key, user.name, choice)

    async def rsvps(self, occurrence_ids: Collection[int]) -> list[Rsvp]:
        wanted = set(occurrence_ids)
        return [r for k, r in sorted(self.d.rsvps.items()) if k[0] in wanted]

    async def forget(self, user: UserRef) -> int:
        changed = 0
        for k, r in list(self.d.rsvps.items()):
            if r.user_key == user.key:
                del self.d.rsvps[k]
                key = anonymous_key()
                self.d.rsvps[(k[0], key)] = replace(r, user_key=key, user_name=FORMER_MEMBER)
                changed += 1
        for m in list(self.d.meetings.values()):
            if m.created_by_key == user.key:
                self.d.meetings[m.id] = replace(m, created_by=FORMER_MEMBER, created_by_key=anonymous_key())
                changed += 1
        return changed


class MemoryTx(_MemoryPart):
    def __init__(self, data: MemoryData) -> None:
        super().__init__(data)
        self.events = MemoryEvents(data)
        self.groups = MemoryGroups(data)
        self.polls = MemoryPolls(data)
        self.goals = MemoryGoals(data)
        self.concerns = MemoryConcerns(data)
        self.schedules = MemorySchedules(data)
        self.reviews = MemoryReviews(data)
        self.members = MemoryMembers(data)
        self.roles = MemoryRoles(data)
        self.outbox = MemoryOutbox(data)
        self.meetings = MemoryMeetings(data)

    def state(self, namespace: str) -> MemoryState:
        return MemoryState(self.d, namespace)

    async def next_due_time(
        self, platforms: Collection[str], heartbeat_after: timedelta | None = None
    ) -> datetime | None:
        times = [
            s.next_due_at
            for s in self.d.schedules.values()
            if not s.paused and s.next_due_at and self._on(s.group_id, platforms)
        ]
        times += [
            p.closes_at
            for p in self.d.polls.values()
            if p.closed_at is None and self._on(p.group_id, platforms)
        ]
        times += [
            r.closes_at
            for r in self.d.reviews.values()
            if r.closed_at is None and self._on(r.group_id, platforms)
        ]
        times += [
            item.remind_at
            for item in (*self.d.polls.values(), *self.d.reviews.values())
            if item.closed_at is None and item.remind_at is not None and self._on(item.group_id, platforms)
        ]
        times += [
            r.next_attempt
            for r in self.d.outbox.values()
            if r.row.state in (PostState.PENDING, PostState.POSTED)
            and r.row.post.channel.platform in platforms
        ]
        times += [
            m.welcome_due_at
            for m in self.d.members.values()
            if m.welcome_due_at is not None and self._on(m.group_id, platforms)
        ]
        times += [
            o.next_due_at
            for o in self.d.occurrences.values()
            if o.next_due_at is not None
            and self.d.meetings[o.meeting_id].cancelled_at is None
            and self._on(o.group_id, platforms)
        ]
        times += [
            g.radar_next_at
            for g in self.d.groups.values()
            if g.channel.platform in platforms and g.auto_radar and g.radar_next_at is not None
        ]
        times += [
            r.next_week_at
            for r in self.d.roles.values()
            if r.next_week_at and self._on(r.group_id, platforms)
        ]
        times += [
            w.fallback_at
            for w in self.d.wraps.values()
            if w.state is WrapState.DRAFTED and w.fallback_at and self._on(w.group_id, platforms)
        ]
        if heartbeat_after is not None:
            times += [
                g.last_activity_at + heartbeat_after
                for g in self.d.groups.values()
                if g.channel.platform in platforms
                and g.last_activity_at is not None
                and MemoryGroups._silence_unanswered(g)
            ]
        return min(times) if times else None


@dataclass
class MemoryData:
    groups: dict[int, Group] = field(default_factory=dict)
    changes: list[PhaseChange] = field(default_factory=list)
    events: dict[tuple[str, str], datetime] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    batches: dict[str, dict[str, None]] = field(default_factory=dict)  # namespace -> ids, oldest first
    signals: list[tuple[int, str, datetime, str]] = field(default_factory=list)
    polls: dict[int, Poll] = field(default_factory=dict)
    last_poll: int = 0
    seq: dict[int, int] = field(default_factory=dict)
    poll_secrets: dict[int, bytes] = field(default_factory=dict)
    reactions: dict[tuple[int, str, int], PollReaction] = field(default_factory=dict)
    goals: dict[int, Goal] = field(default_factory=dict)
    schedules: dict[int, Schedule] = field(default_factory=dict)
    last_schedule: int = 0
    deliveries: set[tuple[int, datetime]] = field(default_factory=set)
    delivered_at: dict[tuple[int, datetime], datetime] = field(default_factory=dict)
    reviews: dict[int, Review] = field(default_factory=dict)
    reflections: dict[int, Reflection] = field(default_factory=dict)
    last_reflection: int = 0
    outbox: dict[int, _Row] = field(default_factory=dict)
    last_post: int = 0
    failed: dict[tuple[str, str], tuple[datetime, str]] = field(default_factory=dict)
    members: dict[int, roster.Member] = field(default_factory=dict)
    last_member: int = 0
    findings: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    concerns: dict[int, Concern] = field(default_factory=dict)
    last_concern: int = 0
    asks: dict[tuple[int, str], datetime] = field(default_factory=dict)  # (poll id, member key)
    roles: dict[int, Role] = field(default_factory=dict)
    last_role: int = 0
    pool: dict[tuple[int, str], PoolMember] = field(default_factory=dict)  # (role id, member key)
    wraps: dict[int, Wrap] = field(default_factory=dict)
    last_wrap: int = 0

    meetings: dict[int, Meeting] = field(default_factory=dict)
    last_meeting: int = 0
    occurrences: dict[int, Occurrence] = field(default_factory=dict)
    last_occurrence: int = 0
    rsvps: dict[tuple[int, str], Rsvp] = field(default_factory=dict)  # (occurrence id, member key)


class MemoryStore:
    """The store port in memory; a failed transaction leaves the data as it was."""

    def __init__(self) -> None:
        self.data = MemoryData()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTx]:
        snapshot = copy.deepcopy(self.data)
        try:
            yield MemoryTx(self.data)
        except BaseException:
            self.data = snapshot
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[MemoryTx]:
        """A copy of the data as it is now; a write in it raises ReadOnly when the read ends."""
        snapshot = copy.deepcopy(self.data)
        view = copy.deepcopy(snapshot)
        yield MemoryTx(view)
        if view != snapshot:
            raise ReadOnly("a write in a read transaction")


async def ok(h: Harness, name: str, line: str) -> str:
    """What the bot answers `name`'s command, which must not be refused."""
    reply = await h.member(name).says(line)
    assert reply is not None and not reply.is_error, reply
    return reply.text


async def refused(h: Harness, name: str, line: str) -> str:
    """What the bot answers `name`'s command, which must be refused."""
    reply = await h.member(name).says(line)
    assert reply is not None and reply.is_error, reply
    return reply.text


class Harness:
    """An engine on fakes, with members who speak in the words of the feature."""

    def __init__(
        self,
        facilitators: tuple[str, ...] = ("alice",),
        store: Any = None,
        platform: str = "fake",
        dashboard: DashboardSettings | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.store = store if store is not None else MemoryStore()
        self.chat = FakeChat(platform=platform, facilitators=set(facilitators))
        self.engine = Engine(
            self.store, self.clock, [self.chat], recurrence=CronRecurrence(), dashboard=dashboard
        )
        self.channel = ChannelRef(platform, "general", "#general")
        self._events = itertools.count(1)

    async def tally(self, poll_id: int = 1) -> Tally:
        """A poll's tally now, read from the store."""
        async with self.store.transaction() as tx:
            group = await tx.groups.get(self.channel)
            assert group is not None
            poll = await tx.polls.get(group.id, poll_id)
            assert poll is not None
            return tally(poll, await tx.polls.reactions(poll.id))

    async def regulars(self, *names: str) -> None:
        """Members on the group's roster from before the test begins, welcomed long ago: for tests of
        something else than joining, whose members' first commands would otherwise welcome them."""
        async with self.store.transaction() as tx:
            group = await ensure_group(tx, self.channel, self.clock.now())
            for name in names:
                await tx.members.add(group.id, self.member(name).user, self.clock.now())

    def member(self, name: str, user_id: str | None = None) -> Member:
        """A member called `name`, whose platform id is `user_id` (by default the name itself)."""
        return Member(self, UserRef(self.chat.platform, user_id or name, name))

    def next_event_id(self) -> str:
        return f"e{next(self._events)}"


@dataclass
class Member:
    h: Harness
    user: UserRef

    async def says(self, text: str, channel: ChannelRef | None = None) -> Reply | None:
        assert text.startswith("/")
        event = CommandInvoked(self.h.next_event_id(), channel or self.h.channel, self.user, text[1:])
        reply = await self.h.engine.handle(event)
        await self.h.engine.settle()
        return reply

    async def whispers(self, text: str) -> Reply | None:
        """Write a command to the bot privately (a direct message)."""
        assert text.startswith("/")
        channel = ChannelRef(self.h.chat.platform, f"dm-{self.user.id}")
        event = CommandInvoked(self.h.next_event_id(), channel, self.user, text[1:], direct=True)
        reply = await self.h.engine.handle(event)
        await self.h.engine.settle()
        return reply

    async def runs(self, path: str, **options: str | bool) -> Reply | None:
        event = CommandInvoked(self.h.next_event_id(), self.h.channel, self.user, path, dict(options))
        reply = await self.h.engine.handle(event)
        await self.h.engine.settle()
        return reply

    async def reacts(self, message: MessageRef, emoji: str, event_id: str | None = None) -> None:
        await self.h.engine.handle(
            ReactionAdded(event_id or self.h.next_event_id(), message, self.user, emoji)
        )

    async def unreacts(self, message: MessageRef, emoji: str, event_id: str | None = None) -> None:
        await self.h.engine.handle(
            ReactionRemoved(event_id or self.h.next_event_id(), message, self.user, emoji)
        )
