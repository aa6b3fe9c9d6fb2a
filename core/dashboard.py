"""The group's page: signed links to it, and what it shows, as data (rendered in adapters/web).

A link names the group and carries a token: the group's link generation, when it expires, and an HMAC
over both with the group's id. `dashboard revoke` raises the generation, so every older link fails.
Expiry is judged by the bot's clock. The secret is the operator's (`PEERBOT_WEB_SECRET`) or made once
and kept in the database, read afresh on every use, so that every process signs and checks alike.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from core.ballots import SECRET
from core.clock import utc
from core.commands import Invocation
from core.concerns import Concern, concern_line
from core.context import Context, Handler
from core.events import Reply
from core.export import counts_withheld
from core.goals import OPEN_STATUSES, Goal, GoalStatus
from core.lifecycle import Group, Phase, PhaseChange
from core.meetings import COMING, MAYBE, NOT_COMING, Meeting, Occurrence, Rsvp, counts
from core.members import CONTRIBUTION_WINDOW, Contributions, Member
from core.polls import GroupCounts, Poll, PollKind
from core.ports import Store, StoreTx
from core.prompts import REVIEW_QUESTIONS
from core.reflections import ANONYMOUS, Reflection, Review
from core.roles import PoolMember, Role, Rotation, active_keys, upcoming
from core.schedules import Schedule, ScheduleKind

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
    in_full: bool = True  # whether its consent tally was read (else `consent` is None, `concerns` empty)


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
    in_full: bool  # whether its answers were read (else `questions` and `action_items` are empty)
    answers: int
    proposals: int  # answers to question 5: each an action item


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
class RoleView:
    """A role of the group, as `role list` tells it: who holds it, how it rotates, whose turn is next."""

    name: str
    duty: str
    holder: str  # "" when free
    rotation: str  # "off", "weekly", "every 2 weeks"
    next_turn_at: datetime | None
    upcoming: tuple[str, ...]  # the next holders by name, active members of the pool
    pool: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Person:
    """A member on the roster. A member who asked to be listed by name only (`members private on`)
    shows nothing else."""

    name: str
    private: bool
    joined_at: datetime | None = None
    last_active_at: datetime | None = None
    intro: str = ""
    did: Contributions | None = None  # over the last 30 days


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
    people: tuple[Person, ...] = ()  # the roster, in the order members joined
    roles: tuple[RoleView, ...] = ()
    meetings: tuple[MeetingAhead, ...] = ()  # the next of each meeting not cancelled, soonest first
    # `polls` is a window of the group's polls and pulses: after the `polls_offset` newest, of `polls_total`.
    polls_offset: int = 0
    polls_total: int = 0


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
# The polls the page lists (consent polls are shown with their goals), newest first.
LISTED = (PollKind.POLL, PollKind.PULSE)


@dataclass(frozen=True, slots=True)
class Window:
    """How much of a long record the page reads in full; the default, everything (data.json). What is
    left out is still counted where the page counts it: every vote in the weeks' participation, every
    goal in the roadmap, every review's answers."""

    reviews_in_full: int | None = None  # the newest reviews read with their answers
    goals_in_full: int | None = None  # of each finished status, the newest goals read with their tallies
    polls_offset: int = 0  # of the polls listed (`LISTED`, newest first), those after so many newer ones,
    polls_limit: int | None = None  # and so many of them


def goals_in_full(goals: Sequence[Goal], window: Window) -> set[int]:
    """The goals the page shows with their consent tallies: every open one (proposed, accepted), and of
    each finished status (done, blocked, ...) the newest `window.goals_in_full`."""
    shown: set[int] = set()
    finished: dict[GoalStatus, int] = defaultdict(int)
    for g in sorted(goals, key=lambda g: -g.id):
        if g.status not in OPEN_STATUSES and window.goals_in_full is not None:
            finished[g.status] += 1
            if finished[g.status] > window.goals_in_full:
                continue
        shown.add(g.id)
    return shown


@dataclass(frozen=True, slots=True)
class PageRecord:
    """What the page is built from, read in one transaction: the group's record, its votes and
    reflections counted as far as the page needs them."""

    group: Group
    history: Sequence[PhaseChange]
    goals: Sequence[Goal]
    concerns: Sequence[Concern]
    window: Window
    listed: Sequence[Poll]  # the window's polls of those the page lists (`LISTED`), newest first
    listed_total: int  # how many of those the group has
    polls: Sequence[Poll]  # every poll read: the window's, every pulse, the consent polls of goals in full
    counts: GroupCounts  # of the polls read
    voted: Mapping[int, tuple[int, frozenset[str]]]  # by week's index: votes, voters (`PollRepo.voter_weeks`)
    doubters: Mapping[int, Sequence[str]]  # by consent poll, who chose 🤔, by name
    reviews: Sequence[Review]
    answers: Sequence[Reflection]  # the answers of the reviews read in full
    answer_counts: Mapping[int, tuple[int, int]]  # by review: answers, and answers to question 5
    weeks: Sequence[date]  # the Monday of every week from the group's first to now's
    starts: Sequence[datetime]  # when each begins, in UTC, and then when the week after now's begins
    reflected: Mapping[int, tuple[int, frozenset[str]]]  # by week's index: reflections, their authors
    schedules: Sequence[Schedule]
    roster: Sequence[Member]
    contributions: Mapping[str, Contributions]  # by member's key, over the last 30 days
    roles: Sequence[Role] = ()
    pools: Mapping[int, Sequence[PoolMember]] = field(default_factory=dict)
    meetings: Sequence[Meeting] = ()
    occurrences: Sequence[Occurrence] = ()  # earliest first
    rsvps: Sequence[Rsvp] = ()


async def read_page(tx: StoreTx, group: Group, now: datetime, window: Window = Window()) -> PageRecord:
    """The group's page, read (a read transaction: `Store.read`), as much of it in full as `window` says:
    only the votes of the polls it shows, the pulses' and the consent polls' of the goals in full are
    counted, and every vote by week."""
    zone = ZoneInfo(group.timezone)
    kinds = await tx.polls.kinds_in_group(group.id)
    total = sum(kinds[k][0] for k in LISTED if k in kinds)
    offset, limit = window.polls_offset, window.polls_limit
    # Past the last poll there is nothing to read: a page number out of range costs no query.
    beyond = offset >= total or limit == 0
    listed = [] if beyond else await tx.polls.newest_in_group(group.id, LISTED, offset, limit)
    windowed = offset > 0 or limit is not None
    pulses = await tx.polls.newest_in_group(group.id, [PollKind.PULSE]) if windowed else []
    goals = await tx.goals.in_group(group.id)
    in_full = goals_in_full(goals, window)
    tallied = {g.poll_id for g in goals if g.id in in_full and g.poll_id is not None}
    consents = [p for p in await tx.polls.newest_in_group(group.id, [PollKind.CONSENT]) if p.id in tallied]
    polls = list({p.id: p for p in (*consents, *pulses, *listed)}.values())
    every_poll = not windowed and window.goals_in_full is None  # (consent polls of no goal are not shown)
    counts = await tx.polls.counts_in_group(group.id, None if every_poll else [p.id for p in polls])
    concerns = await tx.concerns.of_goals([g.id for g in goals]) if goals else {}
    consent = [p.id for p in consents if not p.anonymous]
    meetings = await tx.meetings.in_group(group.id)
    occurrences = await tx.meetings.occurrences([m.id for m in meetings]) if meetings else []
    reviews = await tx.reviews.in_group(group.id)
    roster = await tx.members.roster(group.id)
    roles = await tx.roles.in_group(group.id)
    if window.reviews_in_full is None:
        answers = [r for r in await tx.reviews.reflections(group.id) if r.review_id is not None]
    else:
        answers = []
        for v in sorted(reviews, key=lambda v: -v.id)[: window.reviews_in_full]:
            answers += await tx.reviews.reflections(group.id, v.id)
    # Nothing in a group is older than the group, so its first week is the week it began; goals and
    # polls are looked at too, for records brought in from elsewhere.
    earliest = min(
        [group.created_at, *(g.created_at for g in goals), *(f for _, f in kinds.values())], key=utc
    )
    first = week_of(earliest, zone)
    weeks = [first + timedelta(days=7 * n) for n in range((week_of(now, zone) - first).days // 7 + 1)]
    # And where the week after now's begins: what is dated later (a clock set back) is left out.
    starts = [
        datetime.combine(day, time(), zone).astimezone(UTC) for day in [*weeks, weeks[-1] + timedelta(days=7)]
    ]
    return PageRecord(
        group,
        await tx.groups.phase_history(group.id),
        goals,
        sorted((c for listed in concerns.values() for c in listed), key=lambda c: c.id),
        window,
        listed,
        total,
        polls,
        counts,
        # With every poll counted, their voters are at hand: no second pass over the votes.
        _voted_by_week(polls, counts, starts) if every_poll else await tx.polls.voter_weeks(group.id, starts),
        await tx.polls.names_choosing(consent, CONSENT_DOUBT) if consent else {},
        reviews,
        answers,
        await tx.reviews.answer_counts(group.id),
        weeks,
        starts,
        await tx.reviews.reflection_weeks(group.id, starts),
        await tx.schedules.in_group(group.id),
        roster,
        await tx.members.contributions(group.id, now - CONTRIBUTION_WINDOW),
        roles=roles,
        pools=await tx.roles.pools([r.id for r in roles]) if roles else {},
        meetings=meetings,
        occurrences=occurrences,
        rsvps=await tx.meetings.rsvps([o.id for o in occurrences]) if occurrences else [],
    )


def _voted_by_week(
    polls: Sequence[Poll], counts: GroupCounts, starts: Sequence[datetime]
) -> dict[int, tuple[int, frozenset[str]]]:
    """`PollRepo.voter_weeks` from polls counted already."""
    votes: dict[int, int] = defaultdict(int)
    voters: dict[int, set[str]] = defaultdict(set)
    for p in polls:
        keys = counts.voters.get(p.id)
        if keys and not p.anonymous:
            n = max(0, bisect.bisect_right(starts, utc(p.created_at)) - 1)
            votes[n] += len(keys)
            voters[n] |= keys
    return {n: (count, frozenset(voters[n])) for n, count in votes.items()}


CONSENT_DOUBT = 1  # the consent poll's second option, 🤔: a concern


def build_page(record: PageRecord, now: datetime) -> Page:
    """What the page shows, from what was read for it."""
    g = record.group
    polls = {p.id: _poll_view(p, record.counts) for p in record.polls}
    heard: dict[int, list[str]] = defaultdict(list)
    for concern in record.concerns:
        heard[concern.goal_id].append(concern_line(concern))
    in_full = goals_in_full(record.goals, record.window)
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
            tuple(record.doubters.get(x.poll_id or 0, ())) if consent and not consent.withheld else (),
            tuple(heard.get(x.id, ())),
            x.id in in_full,
        )
        for x in sorted(record.goals, key=lambda x: (STATUS_ORDER.index(x.status), -x.id))
    )
    return Page(
        g.id,
        g.channel.name,
        g.channel.platform,
        g.phase,
        g.phase_since,
        g.timezone,
        now,
        _bands(g, record.history, now),
        goals,
        tuple(polls[p.id] for p in record.listed),
        _weeks(record),
        tuple(_pulse(v) for v in sorted(polls.values(), key=lambda v: v.id) if v.kind == PULSE),
        _reviews(record),
        tuple(
            Ahead(s.id, s.kind, s.description, s.text, s.next_occurrence, s.paused)
            for s in sorted(
                record.schedules, key=lambda s: (s.paused, s.next_occurrence or now + timedelta(days=36500))
            )
        ),
        tuple(
            Person(m.name, True)
            if m.private
            else Person(
                m.name, False, m.joined_at, m.last_active_at, m.intro, record.contributions.get(m.key)
            )
            for m in sorted(record.roster, key=lambda m: (m.joined_at, m.id))
        ),
        _roles(record, now),
        _meetings_ahead(record, now),
        record.window.polls_offset,
        record.listed_total,
    )


def _roles(record: PageRecord, now: datetime) -> tuple[RoleView, ...]:
    active = active_keys(record.roster, now)
    views = []
    for role in record.roles:
        pool = record.pools.get(role.id, ())
        rotating = role.rotation is not Rotation.OFF
        views.append(
            RoleView(
                role.name,
                role.duty,
                role.holder_name if role.held else "",
                role.rotation.value,
                role.next_turn_at if rotating else None,
                tuple(upcoming(pool, active, role.holder_key)) if rotating else (),
                tuple(p.name for p in pool),
            )
        )
    return tuple(views)


def _meetings_ahead(record: PageRecord, now: datetime) -> tuple[MeetingAhead, ...]:
    live = {m.id: m for m in record.meetings if m.cancelled_at is None}
    ahead: dict[int, MeetingAhead] = {}
    for o in record.occurrences:  # earliest first: the first ahead of each meeting is its next
        m = live.get(o.meeting_id)
        if m is None or o.starts_at <= now or o.skipped or m.id in ahead:
            continue
        n = counts(r for r in record.rsvps if r.occurrence_id == o.id)
        ahead[m.id] = MeetingAhead(
            m.id, m.title, m.description, o.starts_at, (n[COMING], n[MAYBE], n[NOT_COMING])
        )
    return tuple(sorted(ahead.values(), key=lambda a: (a.next_at, a.id)))


def _poll_view(p: Poll, counts: GroupCounts) -> PollView:
    voters = len(counts.voters.get(p.id, ()))
    withheld = counts_withheld(p, voters)
    votes = counts.votes.get(p.id, {})
    shown = [None if withheld else votes.get(n, 0) for n in range(len(p.options))]
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
        voters,
        tuple(Bar(o.emoji, o.label, n) for o, n in zip(p.options, shown, strict=True)),
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


def _weeks(record: PageRecord) -> tuple[Week, ...]:
    """Every week from the group's start to now. Votes count in the week their poll opened (votes keep
    no time); anonymous polls' votes are left out, as are anonymous reflections' authors."""
    acts: list[list[int]] = [[0, 0, 0] for _ in record.weeks]
    people: list[set[str]] = [set() for _ in record.weeks]
    last = len(record.weeks)  # what is dated after now's week (a clock set back) is left out

    def week(at: datetime) -> int:
        return max(0, bisect.bisect_right(record.starts, utc(at)) - 1)

    for goal in record.goals:
        n = week(goal.created_at)
        if n < last:
            acts[n][0] += 1
            people[n].add(goal.put_forward_by_key or goal.proposer_key)
    for n, (count, voters) in record.voted.items():
        if n < last:
            acts[n][1] += count
            people[n].update(voters)
    for n, (count, authors) in record.reflected.items():
        if n < last:
            acts[n][2] += count
            people[n].update(authors - {ANONYMOUS.key})
    return tuple(
        Week(day, goals, votes, reflections, len(people[n]))
        for n, (day, (goals, votes, reflections)) in enumerate(zip(record.weeks, acts, strict=True))
    )


def _pulse(v: PollView) -> Pulse:
    green, yellow, red = (b.votes or 0 for b in v.bars[:3])
    counts = None if v.withheld else (green, yellow, red)
    return Pulse(v.id, v.created_at, v.voters, counts, v.withheld)


def _reviews(record: PageRecord) -> tuple[ReviewView, ...]:
    numbered: dict[tuple[int, int], list[Answer]] = defaultdict(list)
    proposals: dict[int, list[Answer]] = defaultdict(list)
    read = set()
    for r in record.answers:
        if r.review_id is None or r.question is None:
            continue
        read.add(r.review_id)
        answer = Answer(r.id, r.user_name, r.text, r.at)
        numbered[(r.review_id, r.question)].append(answer)
        if r.question == 5:
            proposals[r.review_id].append(answer)
    # A goal made from an answer (`goal propose r12`) has the answer's words and its author as proposer.
    made = {(" ".join(x.text.split()), x.proposer_key): x for x in record.goals}
    keys = {r.id: r.user_key for r in record.answers if r.question == 5}
    views = []
    for v in sorted(record.reviews, key=lambda v: -v.id):
        items = []
        for a in proposals.get(v.id, ()):
            goal = made.get((" ".join(a.text.split()), keys[a.id]))
            items.append(ActionItem(a, goal.id if goal else None, goal.status if goal else None))
        questions = tuple(
            (n, q, tuple(numbered.get((v.id, n), ()))) for n, q in enumerate(REVIEW_QUESTIONS, start=1)
        )
        answers, asked = record.answer_counts.get(v.id, (0, 0))
        views.append(
            ReviewView(
                v.id,
                v.started_by,
                v.started_at,
                v.closes_at,
                v.closed_at,
                questions,
                tuple(items),
                v.id in read or not answers,
                answers,
                asked,
            )
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
        "roles": [
            {
                "name": r.name,
                "duty": r.duty,
                "holder": r.holder or None,
                "rotation": r.rotation,
                "next_turn": _when(r.next_turn_at, zone),
                "next_holders": list(r.upcoming),
                "pool": list(r.pool),
            }
            for r in page.roles
        ],
        "people": [
            {"name": m.name}
            if m.private
            else {
                "name": m.name,
                "joined_at": _when(m.joined_at, zone),
                "last_active_at": _when(m.last_active_at, zone),
                "intro": m.intro,
                "last_30_days": {
                    "proposals": (m.did or Contributions()).proposals,
                    "votes": (m.did or Contributions()).votes,
                    "reflections": (m.did or Contributions()).reflections,
                },
            }
            for m in page.people
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
