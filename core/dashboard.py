"""The group's page: signed links to it, and what it shows, as data (rendered in adapters/web).

A link names the group and carries a token: the group's link generation, when it expires, and an HMAC
over both with the group's id. `dashboard revoke` raises the generation, so every older link fails.
Expiry is judged by the bot's clock. The secret is the operator's (`PEERBOT_WEB_SECRET`) or made once
and kept in the database, read afresh on every use, so that every process signs and checks alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from core.ballots import SECRET
from core.clock import utc
from core.commands import Invocation
from core.concerns import concern_line
from core.context import Context, Handler
from core.events import Reply
from core.export import GroupRecord, counts_withheld, load_record
from core.goals import GoalStatus
from core.lifecycle import Group, Phase, PhaseChange
from core.meetings import COMING, MAYBE, NOT_COMING, counts
from core.polls import Poll, PollKind, Tally
from core.ports import Store, StoreTx
from core.prompts import REVIEW_QUESTIONS
from core.reflections import ANONYMOUS
from core.schedules import ScheduleKind

LINK_LIFETIME = timedelta(days=7)
NAMESPACE = "dashboard"  # in the store's state: the secret, and each group's generation and setting
_SECRET_KEY = "secret"
_SIGNATURE_CHARS = 32  # of base64: 192 bits of the HMAC


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Where the web server is reached (`web.public_url`, or what answers it once it is known: the port
    is bound only at start), and the operator's secret, if they gave one (None: the one in the database)."""

    public_url: str | Callable[[], str]
    secret: bytes | None = None

    @property
    def url(self) -> str:
        return self.public_url if isinstance(self.public_url, str) else self.public_url()


async def secret_in(tx: StoreTx, given: bytes | None) -> bytes | None:
    """The signing secret: the operator's, else the database's; None when neither exists yet."""
    if given:
        return given
    kept = await tx.state(NAMESPACE).get(_SECRET_KEY)
    return kept.encode() if kept else None


async def ensure_secret(tx: StoreTx, given: bytes | None) -> bytes:
    """The signing secret, made and kept in the database the first time (in a write transaction)."""
    found = await secret_in(tx, given)
    if found is not None:
        return found
    made = secrets.token_urlsafe(32)
    await tx.state(NAMESPACE).set(_SECRET_KEY, made)
    return made.encode()


async def prepare_secret(store: Store, given: bytes | None) -> None:
    """At start: make the database's secret unless the operator gave one or it exists."""
    async with store.transaction() as tx:
        await ensure_secret(tx, given)


async def generation(tx: StoreTx, group_id: int) -> int:
    """The group's link generation: links of an older one are revoked."""
    value = await tx.state(NAMESPACE).get(f"generation.{group_id}")
    return int(value) if value else 0


async def revoke(tx: StoreTx, group_id: int) -> int:
    """Invalidate every link to the group's page; returns the new generation."""
    new = await generation(tx, group_id) + 1
    await tx.state(NAMESPACE).set(f"generation.{group_id}", str(new))
    return new


async def members_may_ask(tx: StoreTx, group_id: int) -> bool:
    """Whether members who do not facilitate may ask for a link (`auto dashboard on`)."""
    return await tx.state(NAMESPACE).get(f"members.{group_id}") == "on"


async def let_members_ask(tx: StoreTx, group_id: int, on: bool) -> None:
    state = tx.state(NAMESPACE)
    if on:
        await state.set(f"members.{group_id}", "on")
    else:
        await state.delete(f"members.{group_id}")


def _signature(secret: bytes, group_id: int, gen: int, expires: int) -> str:
    mac = hmac.new(secret, f"peerbot-dashboard:{group_id}:{gen}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode()[:_SIGNATURE_CHARS]


def sign(secret: bytes, group_id: int, gen: int, expires: datetime) -> str:
    """A token for the group's page: `<generation>.<expiry, Unix seconds>.<signature>`."""
    stamp = int(utc(expires).timestamp())
    return f"{gen}.{stamp}.{_signature(secret, group_id, gen, stamp)}"


def link(public_url: str, group_id: int, token: str) -> str:
    """The page's address: the token is in the path, never a #fragment, so the server sees it."""
    return f"{public_url.rstrip('/')}/dashboard/{group_id}/{token}/"


class Refused(Enum):
    """Why a link opens nothing; each says what to do instead, and names no group."""

    FORGED = "This link is not valid: it may be cut short or mistyped."
    EXPIRED = "This link has expired: links to a group's page last 7 days."
    REVOKED = "This link was revoked by a facilitator of the group."


ASK_AGAIN = "Ask for a new link with the dashboard command in your group's channel."


def check(secret: bytes | None, group_id: int, token: str, current: int, now: datetime) -> Refused | None:
    """Judge a token for a group's page (None: it opens), given the group's link generation now."""
    parts = token.split(".")
    if secret is None or len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        return Refused.FORGED
    gen, stamp = int(parts[0]), int(parts[1])
    if len(parts[0]) > 18 or len(parts[1]) > 18:
        return Refused.FORGED
    if not hmac.compare_digest(parts[2].encode(), _signature(secret, group_id, gen, stamp).encode()):
        return Refused.FORGED
    if gen != current:
        return Refused.REVOKED
    if utc(now).timestamp() >= stamp:
        return Refused.EXPIRED
    return None


class DashboardService:
    """The `dashboard` command: a private link to the group's page, or (facilitators) revoking them."""

    def __init__(self, settings: DashboardSettings | None) -> None:
        self.settings = settings

    def handlers(self) -> dict[tuple[str, ...], Handler]:
        return {("dashboard",): self._dashboard}

    async def _dashboard(self, ctx: Context, inv: Invocation) -> Reply:
        group = ctx.group
        if inv.args.get("action") == "revoke":
            if not ctx.is_facilitator:
                return ctx.refuse(inv)
            await revoke(ctx.tx, group.id)
            return Reply(
                "Every link to the group's page is revoked. Anyone who needs one asks again with"
                f" {ctx.prefix}dashboard.",
                private=True,
            )
        settings = self.settings
        if settings is None:
            return Reply(
                "The group's page is not set up on this bot: its operator has to configure the web server.",
                is_error=True,
                private=True,
            )
        if not ctx.is_facilitator and not await members_may_ask(ctx.tx, group.id):
            return Reply(
                "Facilitators get the link to the group's page; members too once a facilitator says"
                f" {ctx.prefix}auto dashboard on.",
                is_error=True,
                private=True,
            )
        secret = await ensure_secret(ctx.tx, settings.secret)
        expires = ctx.now + LINK_LIFETIME
        token = sign(secret, group.id, await generation(ctx.tx, group.id), expires)
        return Reply(
            f"The page of {group.channel.name}, for you alone (anyone with the link can see it, until"
            f" {_local(expires, group.timezone):%Y-%m-%d %H:%M %Z}):"
            f" {link(settings.url, group.id, token)}",
            private=True,
            sealed=SECRET,  # the link is a key to the group's page: no failed row keeps it
        )


def _local(dt: datetime, tz: str) -> datetime:
    return utc(dt).astimezone(ZoneInfo(tz))


# What the page shows ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Band:
    """A stretch of time in one phase, and the move that began it."""

    phase: Phase
    start: datetime
    end: datetime
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Bar:
    emoji: str
    label: str
    votes: int | None  # None: withheld


@dataclass(frozen=True, slots=True)
class PollView:
    id: int
    kind: str
    question: str
    author: str
    created_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    hidden: bool
    anonymous: bool
    voters: int
    bars: tuple[Bar, ...]
    withheld: str  # why the counts are not shown, or ""


@dataclass(frozen=True, slots=True)
class GoalView:
    id: int
    text: str
    status: GoalStatus
    proposer: str
    put_forward_by: str
    created_at: datetime
    updated_at: datetime
    reshapes: int | None
    consent: PollView | None
    concerns: tuple[str, ...]  # who voted 🤔, where names are shown
    heard: tuple[str, ...] = ()  # the concerns members wrote (`Concern 3 (dave): …`), oldest first


@dataclass(frozen=True, slots=True)
class Week:
    """One week (from Monday, in the group's timezone): what members did, and how many did it."""

    start: date
    goals: int
    votes: int
    reflections: int
    members: int


@dataclass(frozen=True, slots=True)
class Pulse:
    poll_id: int
    at: datetime
    voters: int
    counts: tuple[int, int, int] | None  # 🟢 🟡 🔴; None: withheld
    withheld: str


@dataclass(frozen=True, slots=True)
class Answer:
    id: int
    author: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ActionItem:
    """An answer to question 5, and the goal it became, if one was proposed from it."""

    answer: Answer
    goal_id: int | None
    goal_status: GoalStatus | None


@dataclass(frozen=True, slots=True)
class ReviewView:
    id: int
    started_by: str
    started_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    questions: tuple[tuple[int, str, tuple[Answer, ...]], ...]  # (number, question, answers)
    action_items: tuple[ActionItem, ...]


@dataclass(frozen=True, slots=True)
class Ahead:
    id: int
    kind: ScheduleKind
    description: str
    text: str | None
    next_at: datetime | None
    paused: bool


@dataclass(frozen=True, slots=True)
class MeetingAhead:
    id: int
    title: str
    description: str  # "weekly thu 18:00", "2026-12-03 18:00"
    next_at: datetime
    rsvps: tuple[int, int, int]  # ✅ ❔ ❌ so far (announced meetings; zeros before)


@dataclass(frozen=True, slots=True)
class Page:
    group_id: int
    name: str
    platform: str
    phase: Phase
    phase_since: datetime
    timezone: str
    now: datetime
    bands: tuple[Band, ...]
    goals: tuple[GoalView, ...]
    polls: tuple[PollView, ...]  # polls and pulses, newest first (consent polls are with their goals)
    weeks: tuple[Week, ...]
    pulses: tuple[Pulse, ...]
    reviews: tuple[ReviewView, ...]
    schedules: tuple[Ahead, ...]
    meetings: tuple[MeetingAhead, ...] = ()  # the next of each meeting not cancelled, soonest first


# The roadmap's order: what the group works on first, then what it decided against or left.
STATUS_ORDER = (
    GoalStatus.ACCEPTED,
    GoalStatus.PROPOSED,
    GoalStatus.DONE,
    GoalStatus.BLOCKED,
    GoalStatus.LAPSED,
    GoalStatus.DROPPED,
    GoalStatus.SUPERSEDED,
)


PULSE = PollKind.PULSE.value


async def load_page(tx: StoreTx, group: Group, now: datetime) -> Page:
    """The group's page, read in one transaction (a read one: `Store.read`)."""
    record = await load_record(tx, group)
    return build_page(record, await tx.groups.phase_history(group.id), now)


def build_page(record: GroupRecord, history: Sequence[PhaseChange], now: datetime) -> Page:
    """What the page shows, from the group's record and its moves between phases."""
    g = record.group
    polls = {p.id: _poll_view(p, t) for p, t in record.polls}
    # Who chose 🤔 on each consent poll, where names are shown; and what members wrote, by goal.
    doubters = {p.id: t.names[1] for p, t in record.polls if not p.anonymous and len(t.names) > 1}
    heard: dict[int, list[str]] = defaultdict(list)
    for c in record.concerns:
        heard[c.goal_id].append(concern_line(c))
    goals = tuple(
        GoalView(
            x.id,
            x.text,
            x.status,
            x.proposer_name,
            x.put_forward_by_name or x.proposer_name,
            x.created_at,
            x.updated_at,
            x.reshapes_id,
            consent := polls.get(x.poll_id) if x.poll_id is not None else None,
            doubters.get(x.poll_id or 0, ()) if consent is not None and not consent.withheld else (),
            tuple(heard.get(x.id, ())),
        )
        for x in sorted(record.goals, key=lambda x: (STATUS_ORDER.index(x.status), -x.id))
    )
    shown = tuple(
        sorted(
            (v for v in polls.values() if v.kind != PollKind.CONSENT.value),
            key=lambda v: -v.id,
        )
    )
    return Page(
        g.id,
        g.channel.name,
        g.channel.platform,
        g.phase,
        g.phase_since,
        g.timezone,
        now,
        _bands(g, history, now),
        goals,
        shown,
        _weeks(record, now),
        tuple(
            _pulse(v) for v in sorted(polls.values(), key=lambda v: v.id) if v.kind == PollKind.PULSE.value
        ),
        _reviews(record),
        tuple(
            Ahead(s.id, s.kind, s.description, s.text, s.next_occurrence, s.paused)
            for s in sorted(
                record.schedules, key=lambda s: (s.paused, s.next_occurrence or now + timedelta(days=36500))
            )
        ),
        _meetings_ahead(record, now),
    )


def _meetings_ahead(record: GroupRecord, now: datetime) -> tuple[MeetingAhead, ...]:
    live = {m.id: m for m in record.meetings if m.cancelled_at is None}
    ahead: dict[int, MeetingAhead] = {}
    for o in record.occurrences:  # earliest first: the first ahead of each meeting is its next
        m = live.get(o.meeting_id)
        if m is None or o.starts_at <= now or o.skipped or m.id in ahead:
            continue
        n = counts(record.rsvps_of(o.id))
        ahead[m.id] = MeetingAhead(
            m.id, m.title, m.description, o.starts_at, (n[COMING], n[MAYBE], n[NOT_COMING])
        )
    return tuple(sorted(ahead.values(), key=lambda a: (a.next_at, a.id)))


def _poll_view(p: Poll, t: Tally) -> PollView:
    withheld = counts_withheld(p, t)
    counts: Sequence[int | None] = t.counts if not withheld else [None] * len(p.options)
    return PollView(
        p.id,
        p.kind.value,
        p.question,
        p.author_name,
        p.created_at,
        p.closes_at,
        p.closed_at,
        p.hidden,
        p.anonymous,
        t.voters,
        tuple(Bar(o.emoji, o.label, n) for o, n in zip(p.options, counts, strict=True)),
        withheld,
    )


def _bands(g: Group, history: Sequence[PhaseChange], now: datetime) -> tuple[Band, ...]:
    moves = sorted(history, key=lambda c: c.at)
    if not moves:
        return (Band(g.phase, g.phase_since, now, "", ""),)
    ends = [c.at for c in moves[1:]] + [now]
    return tuple(
        Band(c.to_phase, c.at, max(end, c.at), c.by, c.reason) for c, end in zip(moves, ends, strict=True)
    )


def week_of(at: datetime, zone: ZoneInfo) -> date:
    """The Monday of the week a moment falls in, in the group's timezone."""
    day = utc(at).astimezone(zone).date()
    return day - timedelta(days=day.weekday())


def _weeks(record: GroupRecord, now: datetime) -> tuple[Week, ...]:
    """Every week from the group's start to now. Votes count in the week their poll opened (votes keep
    no time); anonymous polls' votes are left out, as are anonymous reflections' authors."""
    zone = ZoneInfo(record.group.timezone)
    acts: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0])
    people: dict[date, set[str]] = defaultdict(set)
    for goal in record.goals:
        week = week_of(goal.created_at, zone)
        acts[week][0] += 1
        people[week].add(goal.put_forward_by_key or goal.proposer_key)
    for p, _ in record.polls:
        voters = record.voters.get(p.id, ())
        if p.anonymous or not voters:
            continue
        week = week_of(p.created_at, zone)
        acts[week][1] += len(voters)
        people[week].update(voters)
    for r in record.reflections:
        week = week_of(r.at, zone)
        acts[week][2] += 1
        if r.user_key != ANONYMOUS.key:
            people[week].add(r.user_key)
    first = week_of(record.group.created_at, zone)
    if acts:
        first = min(first, min(acts))
    last = week_of(now, zone)
    weeks = []
    day = first
    while day <= last:
        goals, votes, reflections = acts.get(day, (0, 0, 0))
        weeks.append(Week(day, goals, votes, reflections, len(people.get(day, ()))))
        day += timedelta(days=7)
    return tuple(weeks)


def _pulse(v: PollView) -> Pulse:
    green, yellow, red = (b.votes or 0 for b in v.bars[:3])
    counts = None if v.withheld else (green, yellow, red)
    return Pulse(v.id, v.created_at, v.voters, counts, v.withheld)


def _reviews(record: GroupRecord) -> tuple[ReviewView, ...]:
    by_review: dict[int, list[Answer]] = defaultdict(list)
    numbered: dict[tuple[int, int], list[Answer]] = defaultdict(list)
    proposals: dict[int, list[Answer]] = defaultdict(list)
    for r in record.reflections:
        if r.review_id is None or r.question is None:
            continue
        answer = Answer(r.id, r.user_name, r.text, r.at)
        by_review[r.review_id].append(answer)
        numbered[(r.review_id, r.question)].append(answer)
        if r.question == 5:
            proposals[r.review_id].append(answer)
    # A goal made from an answer (`goal propose r12`) has the answer's words and its author as proposer.
    made = {(" ".join(x.text.split()), x.proposer_key): x for x in record.goals}
    keys = {r.id: r.user_key for r in record.reflections if r.question == 5}
    views = []
    for v in sorted(record.reviews, key=lambda v: -v.id):
        items = []
        for a in proposals.get(v.id, ()):
            goal = made.get((" ".join(a.text.split()), keys[a.id]))
            items.append(ActionItem(a, goal.id if goal else None, goal.status if goal else None))
        questions = tuple(
            (n, q, tuple(numbered.get((v.id, n), ()))) for n, q in enumerate(REVIEW_QUESTIONS, start=1)
        )
        views.append(
            ReviewView(v.id, v.started_by, v.started_at, v.closes_at, v.closed_at, questions, tuple(items))
        )
    return tuple(views)


# The page as JSON (`data.json`) ------------------------------------------------------------------


def _when(dt: datetime | None, zone: ZoneInfo) -> str | None:
    return utc(dt).astimezone(zone).isoformat() if dt is not None else None


def _poll_data(v: PollView, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": v.id,
        "kind": v.kind,
        "question": v.question,
        "author": v.author,
        "created_at": _when(v.created_at, zone),
        "closes_at": _when(v.closes_at, zone),
        "closed_at": _when(v.closed_at, zone),
        "hidden": v.hidden,
        "anonymous": v.anonymous,
        "voters": v.voters,
        "withheld": v.withheld or None,
        "options": [
            {"emoji": b.emoji, "label": b.label, **({"votes": b.votes} if b.votes is not None else {})}
            for b in v.bars
        ],
    }


def to_data(page: Page) -> dict[str, Any]:
    """What the page shows, as JSON-ready data; times in the group's timezone."""
    zone = ZoneInfo(page.timezone)
    return {
        "group": {
            "id": page.group_id,
            "name": page.name,
            "platform": page.platform,
            "phase": page.phase.value,
            "phase_since": _when(page.phase_since, zone),
            "timezone": page.timezone,
            "generated_at": _when(page.now, zone),
        },
        "phases": [
            {
                "phase": b.phase.value,
                "start": _when(b.start, zone),
                "end": _when(b.end, zone),
                "by": b.by,
                "reason": b.reason,
            }
            for b in page.bands
        ],
        "goals": [
            {
                "id": x.id,
                "text": x.text,
                "status": x.status.value,
                "proposer": x.proposer,
                "put_forward_by": x.put_forward_by,
                "created_at": _when(x.created_at, zone),
                "updated_at": _when(x.updated_at, zone),
                "reshapes": x.reshapes,
                "consent": _poll_data(x.consent, zone) if x.consent else None,
                "concerns": list(x.concerns),
                "concerns_heard": list(x.heard),
            }
            for x in page.goals
        ],
        "polls": [_poll_data(v, zone) for v in page.polls],
        "participation": [
            {
                "week": w.start.isoformat(),
                "members": w.members,
                "goals": w.goals,
                "votes": w.votes,
                "reflections": w.reflections,
            }
            for w in page.weeks
        ],
        "pulse": [
            {
                "poll": p.poll_id,
                "at": _when(p.at, zone),
                "voters": p.voters,
                "withheld": p.withheld or None,
                **(dict(zip(("green", "yellow", "red"), p.counts, strict=True)) if p.counts else {}),
            }
            for p in page.pulses
        ],
        "reviews": [
            {
                "id": v.id,
                "started_by": v.started_by,
                "started_at": _when(v.started_at, zone),
                "closes_at": _when(v.closes_at, zone),
                "closed_at": _when(v.closed_at, zone),
                "questions": [
                    {
                        "number": n,
                        "question": q,
                        "answers": [
                            {"id": a.id, "author": a.author, "text": a.text, "at": _when(a.at, zone)}
                            for a in answers
                        ],
                    }
                    for n, q, answers in v.questions
                ],
                "action_items": [
                    {
                        "answer": i.answer.id,
                        "text": i.answer.text,
                        "goal": i.goal_id,
                        "goal_status": i.goal_status.value if i.goal_status else None,
                    }
                    for i in v.action_items
                ],
            }
            for v in page.reviews
        ],
        "schedules": [
            {
                "id": s.id,
                "kind": s.kind.value,
                "schedule": s.description,
                "text": s.text,
                "next": _when(s.next_at, zone),
                "paused": s.paused,
            }
            for s in page.schedules
        ],
        "meetings": [
            {
                "id": m.id,
                "title": m.title,
                "schedule": m.description,
                "next": _when(m.next_at, zone),
                "rsvps": dict(zip(("coming", "maybe", "not_coming"), m.rsvps, strict=True)),
            }
            for m in page.meetings
        ],
    }
