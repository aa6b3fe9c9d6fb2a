"""The store port on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from adapters.sql.process_lock import ProcessLock
from adapters.sql.schema import (
    adapter_state,
    concern_asks,
    concerns,
    deliveries,
    failed_events,
    goals,
    groups,
    inbound_batches,
    meeting_occurrences,
    meeting_rsvps,
    meetings,
    members,
    outbox,
    phase_changes,
    poll_reactions,
    poll_secrets,
    polls,
    processed_events,
    radar_findings,
    reflections,
    reviews,
    role_pool,
    roles,
    schedules,
    signals,
    wraps,
)
from core.ballots import new_secret
from core.clock import utc
from core.concerns import Concern
from core.forgetting import (
    ANONYMOUS_PREFIX,
    FORMER_MEMBER,
    Forgotten,
    anonymous_key,
    identifiers,
    names_user,
    scrub,
    state_value_needle,
)
from core.goals import Goal, GoalStatus
from core.lifecycle import CLOSING, Group, Phase, PhaseChange, QuietHours
from core.meetings import Meeting, Occurrence, Rsvp, When
from core.members import Contributions, Member, RosterEntry
from core.outbox import OutboxRow, Post, PostKind, PostState, Thread
from core.polls import (
    GroupCounts,
    Poll,
    PollKind,
    PollOption,
    PollReaction,
    PollRequest,
    ReactionChange,
    counted,
)
from core.ports import ReadOnly, state_prefix
from core.radar import Act, ActKind, limits_json
from core.reflections import Reflection, Review
from core.refs import BOT, ChannelRef, MessageRef, UserRef
from core.reminders import Absent, Unresponded
from core.roles import PoolMember, Role, Rotation, Wrap, WrapState
from core.schedules import DueSchedule, Schedule, ScheduleKind


def make_engine(url: str) -> AsyncEngine:
    """An engine with the settings Peerbot relies on (SQLite: WAL, full sync, foreign keys)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if ":memory:" not in url:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def insert_ignore(conn: AsyncConnection, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def upsert(conn: AsyncConnection, table: Table, keys: list[str], values: dict[str, Any]) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    changed = {k: v for k, v in values.items() if k not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=changed)


_UNSEEN: Any = object()
# A list of ids bound as one parameter (`{"ids": [...]}`): SQLAlchemy coerces every element of a list
# given to `in_()` as the statement is built, a cost per id paid again for every batch.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)

# The most ids in one `IN (...)` list (SQLite allows 32,766 bound values; PostgreSQL 65,535).
IN_CHUNK = 5000

# A group's silence has not had its heartbeat (no heartbeat yet, or activity since the last one).
_SILENCE_UNANSWERED = or_(
    groups.c.heartbeat_sent_at.is_(None), groups.c.heartbeat_sent_at < groups.c.last_activity_at
)


def _group(row: Any) -> Group:
    return Group(
        id=row.id,
        channel=ChannelRef(row.platform, row.channel_id, row.channel_name),
        phase=Phase(row.phase),
        phase_since=utc(row.phase_since),
        created_at=utc(row.created_at),
        goal_quorum=row.goal_quorum,
        decision_window=(
            timedelta(seconds=row.decision_window_s) if row.decision_window_s is not None else None
        ),
        timezone=row.timezone,
        quiet=_quiet(row.quiet_start, row.quiet_end),
        auto_review=bool(row.auto_review),
        auto_checkin=bool(row.auto_checkin),
        last_activity_at=_maybe_utc(row.last_activity_at),
        heartbeat_sent_at=_maybe_utc(row.heartbeat_sent_at),
        welcome_text=row.welcome_text,
        welcome_until=_maybe_utc(row.welcome_until),
        remind_window=row.remind_window,
        auto_radar=bool(row.auto_radar),
        radar_limits=_limits(row.radar_limits),
        radar_next_at=_maybe_utc(row.radar_next_at),
        advised_at=_maybe_utc(row.advised_at),
        auto_threads=bool(row.auto_threads),
    )


def _limits(raw: str) -> tuple[tuple[str, int], ...]:
    """A group's own radar thresholds, as stored (a JSON object of whole numbers)."""
    if not raw:
        return ()
    return tuple(sorted((str(k), int(v)) for k, v in json.loads(raw).items()))


def _member(row: Any) -> Member:
    return Member(
        id=row.id,
        group_id=row.group_id,
        key=row.user_key,
        name=row.name,
        joined_at=utc(row.joined_at),
        left_at=_maybe_utc(row.left_at),
        last_active_at=_maybe_utc(row.last_active_at),
        intro=row.intro,
        private=bool(row.private),
        buddy=bool(row.buddy),
        reminders=bool(row.reminders),
        buddy_key=row.buddy_key,
        paired_at=_maybe_utc(row.paired_at),
        welcome_due_at=_maybe_utc(row.welcome_due_at),
    )


_KINDS = {k.value: k for k in ScheduleKind}
_PHASES = {p.value: p for p in Phase}


def _quiet(start: str | None, end: str | None) -> QuietHours | None:
    return QuietHours(time.fromisoformat(start), time.fromisoformat(end)) if start and end else None


def _maybe_utc(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        group_id=row.group_id,
        kind=ScheduleKind(row.kind),
        cron=row.cron,
        description=row.description,
        text=row.text,
        paused=bool(row.paused),
        next_occurrence=_maybe_utc(row.next_occurrence),
        next_due_at=_maybe_utc(row.next_due_at),
        created_by=row.created_by,
        created_at=utc(row.created_at),
        created_by_key=row.created_by_key,
    )


def _review(row: Any) -> Review:
    return Review(
        row.id,
        row.group_id,
        row.started_by,
        utc(row.started_at),
        utc(row.closes_at),
        _maybe_utc(row.closed_at),
        row.started_by_key,
        _maybe_utc(row.remind_at),
        row.message_id,
    )


def _reflection(row: Any) -> Reflection:
    return Reflection(
        row.id, row.group_id, row.review_id, row.question, row.user_key, row.user_name, row.text, utc(row.at)
    )


def _reflection_of(
    id: int,
    group_id: int,
    review_id: int | None,
    question: int | None,
    key: str,
    name: str,
    text: str,
    at: Any,
) -> Reflection:
    """A reflection from its columns in this order, as a tuple (faster than by name, for many rows)."""
    return Reflection(id, group_id, review_id, question, key, name, text, utc(at))


@functools.lru_cache(maxsize=4096)
def _options(encoded: str) -> tuple[PollOption, ...]:
    """A poll's options from their JSON; many polls share theirs (every consent poll, every pulse)."""
    return tuple(PollOption(e, label) for e, label in json.loads(encoded))


def _poll(row: Any) -> Poll:
    """A poll from a row of `select(polls)`, unpacked as a tuple: by name, a row's fields cost most of
    the time of reading a group's 2,000 polls. A column added to the table fails here at once."""
    (
        id_,
        group_id,
        kind,
        question,
        options,
        multiple,
        hidden,
        author_key,
        author_name,
        created_at,
        closes_at,
        closed_at,
        platform,
        channel_id,
        message_id,
        _vote_seq,
        remind_at,
        anonymous,
    ) = row
    return Poll(
        id=id_,
        group_id=group_id,
        kind=PollKind(kind),
        question=question,
        options=_options(options),
        multiple=bool(multiple),
        hidden=bool(hidden),
        author_key=author_key,
        author_name=author_name,
        created_at=utc(created_at),
        closes_at=utc(closes_at),
        closed_at=utc(closed_at) if closed_at is not None else None,
        message=MessageRef(ChannelRef(platform, channel_id), message_id) if message_id is not None else None,
        remind_at=_maybe_utc(remind_at),
        anonymous=bool(anonymous),
    )


def _goal(row: Any) -> Goal:
    return Goal(
        id=row.id,
        group_id=row.group_id,
        text=row.text,
        status=GoalStatus(row.status),
        proposer_key=row.proposer_key,
        proposer_name=row.proposer_name,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        poll_id=row.poll_id,
        put_forward_by_key=row.put_forward_by_key,
        put_forward_by_name=row.put_forward_by_name,
        reshapes_id=row.reshapes_id,
    )


def _concern(row: Any) -> Concern:
    return Concern(
        id=row.id,
        group_id=row.group_id,
        goal_id=row.goal_id,
        text=row.text,
        author_key=row.author_key,
        author_name=row.author_name,
        at=utc(row.at),
        addressed_at=_maybe_utc(row.addressed_at),
        addressed_by_key=row.addressed_by_key,
        addressed_by_name=row.addressed_by_name,
        note=row.note,
    )


class SqlOutbox:
    """The outbox rows (core/outbox.py) in the `outbox` table."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self, posts: Sequence[Post], at: datetime, lease: tuple[str, datetime] | None = None
    ) -> list[int]:
        if not posts:
            return []  # no rows: SQLAlchemy would run INSERT ... DEFAULT VALUES, one row of NULLs
        owner, until = lease if lease is not None else (None, None)
        rows = [(*_outbox_values(p, at), owner, until) for p in posts]
        if self.conn.dialect.name == "sqlite":
            # One writer at a time (SqlStore's lock, SQLite's own), and AUTOINCREMENT ids only grow:
            # the rows just added are the newest. A plain executemany is many times faster than
            # INSERT ... RETURNING in parameter order, which SQLite runs a row at a time; and handed to
            # the driver as tuples, each distinct time converted once by the column's own type, it
            # takes a third of the time of SQLAlchemy's processing of each row's parameters (170,000
            # reminders: 3.6 s before).
            await self.conn.exec_driver_sql(_SQLITE_OUTBOX_INSERT, _with_sqlite_times(self.conn, rows))
            newest = select(outbox.c.id).order_by(outbox.c.id.desc()).limit(len(rows))
            return sorted(r.id for r in await self.conn.execute(newest))
        # PostgreSQL: the ids first, from the table's sequence, then every row in one statement of one
        # array per column (`unnest`): SQLAlchemy's many-row INSERT ... RETURNING in parameter order
        # cost 0.3 ms a row.
        ids = list((await self.conn.execute(_PG_OUTBOX_IDS, {"n": len(rows)})).scalars().all())
        columns = list(zip(*rows, strict=True))
        await self.conn.execute(
            _PG_OUTBOX_INSERT, {"c0": ids, **{f"c{i + 1}": list(c) for i, c in enumerate(columns)}}
        )
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
        free = or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < wall, outbox.c.lease_owner == owner)
        due = (
            select(outbox.c.id)
            .where(
                outbox.c.state.in_([PostState.PENDING.value, PostState.POSTED.value]),
                outbox.c.platform.in_(list(platforms)),
                outbox.c.next_attempt_at <= due_by,
                free,
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = [r.id for r in await self.conn.execute(due)]
        if not ids:
            return []
        rows = await self.conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids), free)
            .values(lease_owner=owner, lease_until=lease_until)
            .returning(*outbox.c)
        )
        return sorted((_outbox_row(r) for r in rows), key=lambda r: r.id)

    async def release(self, owner: str, row_ids: Sequence[int]) -> None:
        if row_ids:
            await self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(row_ids)), outbox.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def renew(self, owner: str, row_ids: Sequence[int], until: datetime) -> set[int]:
        held: set[int] = set()
        for start in range(0, len(row_ids), _IN_LIMIT):
            result = await self.conn.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(list(row_ids[start : start + _IN_LIMIT])), outbox.c.lease_owner == owner
                )
                .values(lease_until=until)
                .returning(outbox.c.id)
            )
            held.update(result.scalars())
        return held

    async def held(self, owner: str, row_ids: Sequence[int]) -> set[int]:
        held: set[int] = set()
        mine = select(outbox.c.id).where(outbox.c.id.in_(_IDS), outbox.c.lease_owner == owner)
        for start in range(0, len(row_ids), IN_CHUNK):
            result = await self.conn.execute(mine, {"ids": list(row_ids[start : start + IN_CHUNK])})
            held.update(result.scalars())
        return held

    async def posted(self, row_id: int, message: MessageRef) -> None:
        await self.conn.execute(
            update(outbox)
            .where(outbox.c.id == row_id)
            .values(state=PostState.POSTED.value, message_id=message.id)
        )

    async def finish(self, row_id: int, state: PostState, at: datetime, reason: str = "") -> None:
        if state is PostState.SENT:
            await self.conn.execute(delete(outbox).where(outbox.c.id == row_id))
            return
        await self.conn.execute(
            update(outbox)
            .where(outbox.c.id == row_id)
            .values(state=state.value, finished_at=at, reason=reason, lease_owner=None, lease_until=None)
        )

    async def forget_sealed(self, sealed: str) -> int:
        result = await self.conn.execute(delete(outbox).where(outbox.c.sealed == sealed))
        return int(result.rowcount or 0)

    async def withdraw(self, schedule_ids: Collection[int], now: datetime) -> int:
        ids = list(schedule_ids)
        gone = 0
        for start in range(0, len(ids), IN_CHUNK):
            result = await self.conn.execute(
                delete(outbox).where(_prepared(now)), {"ids": ids[start : start + IN_CHUNK]}
            )
            gone += int(result.rowcount or 0)
        return gone

    async def ahead(self, schedule_ids: Collection[int], now: datetime) -> dict[int, datetime]:
        if not schedule_ids:
            return {}
        rows = await self.conn.execute(
            select(outbox.c.schedule_id, func.min(outbox.c.not_before))
            .where(_prepared(now))
            .group_by(outbox.c.schedule_id),
            {"ids": list(schedule_ids)},
        )
        return {schedule_id: utc(at) for schedule_id, at in rows}

    async def sent(self, row_ids: Sequence[int]) -> None:
        ids = list(row_ids)
        for start in range(0, len(ids), IN_CHUNK):
            await self.conn.execute(
                delete(outbox).where(outbox.c.id.in_(_IDS)), {"ids": ids[start : start + IN_CHUNK]}
            )

    async def retry_at(self, row_id: int, attempts: int, when: datetime, reason: str) -> None:
        await self.conn.execute(
            update(outbox)
            .where(outbox.c.id == row_id)
            .values(attempts=attempts, next_attempt_at=when, reason=reason)
        )

    async def rows(self, states: Sequence[PostState] = ()) -> list[OutboxRow]:
        query = select(outbox).order_by(outbox.c.id)
        if states:
            query = query.where(outbox.c.state.in_([s.value for s in states]))
        return [_outbox_row(r) for r in await self.conn.execute(query)]

    async def counts(self) -> dict[PostState, int]:
        query = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        return {PostState(state): n for state, n in await self.conn.execute(query)}


_OUTBOX_COLUMNS = (
    "group_id",
    "platform",
    "channel_id",
    "channel_name",
    "kind",
    "text",
    "reply_to",
    "user_id",
    "user_name",
    "reactions",
    "poll_id",
    "thread",
    "sealed",
    "buttons",
    "channel_line",
    "thread_only",
    "review_id",
    "occurrence_id",
    "schedule_id",
    "state",
    "created_at",
    "not_before",
    "next_attempt_at",
)
_LEASE_COLUMNS = ("lease_owner", "lease_until")
_SQLITE_OUTBOX_INSERT = (
    f"INSERT INTO outbox ({', '.join(_OUTBOX_COLUMNS + _LEASE_COLUMNS)})"
    f" VALUES ({', '.join('?' * (len(_OUTBOX_COLUMNS) + len(_LEASE_COLUMNS)))})"
)
_PG_OUTBOX_IDS = sql_text(
    "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) FROM generate_series(1, :n)"
)


def _pg_array_type(name: str) -> str:
    """The array type a column's values are cast to, from the column's own type (a column added to
    the outbox gets the right one)."""
    column = outbox.c[name]
    if isinstance(column.type, Integer):
        return "bigint[]"
    if isinstance(column.type, Boolean):
        return "boolean[]"
    if isinstance(column.type, DateTime):
        return "timestamptz[]"
    return "text[]"


_PG_COLUMNS = ("id", *_OUTBOX_COLUMNS, *_LEASE_COLUMNS)
_PG_OUTBOX_INSERT = sql_text(
    f"INSERT INTO outbox ({', '.join(_PG_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:c{i} AS {_pg_array_type(c)})" for i, c in enumerate(_PG_COLUMNS))
    + ")"
)


_FIRST_TIME = _OUTBOX_COLUMNS.index("created_at")  # the times come last


def _outbox_values(p: Post, at: datetime) -> tuple[Any, ...]:
    """A new outbox row's values, in the order of `_OUTBOX_COLUMNS` (its times last)."""
    return (
        p.group_id,
        p.channel.platform,
        p.channel.id,
        p.channel.display,
        p.kind.value,
        p.text,
        p.reply_to,
        p.user.id if p.user else None,
        p.user.display if p.user else None,
        # Most posts have none: a JSON call per row was a tenth of queueing 170,000 reminders.
        json.dumps(list(p.reactions), ensure_ascii=False) if p.reactions else "[]",
        p.poll_id,
        str(p.thread) if p.thread is not None else None,
        p.sealed,
        json.dumps(list(p.buttons), ensure_ascii=False) if p.buttons else "[]",
        p.channel_line,
        p.thread_only,
        p.review_id,
        p.occurrence_id,
        p.schedule_id,
        PostState.PENDING.value,
        at,
        p.not_before or at,
        p.not_before or at,
    )


def _with_sqlite_times(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows with their times as SQLite stores them: converted by the DateTime column's own bind
    processor, as SQLAlchemy would, but each distinct time once."""
    process = outbox.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    assert process is not None
    stamps: dict[tuple[datetime, Any], Any] = {}

    def stamp(value: datetime) -> Any:
        key = (value, value.tzinfo)  # equal instants in two zones are stored apart, as they were
        if (done := stamps.get(key)) is None:
            done = stamps[key] = process(value)
        return done

    # The times, then the lease (owner, until): converted too when there is one.
    last = _FIRST_TIME + 3
    return [
        (
            *row[:_FIRST_TIME],
            *(stamp(t) for t in row[_FIRST_TIME:last]),
            row[last],
            row[last + 1] and stamp(row[last + 1]),
        )
        for row in rows
    ]


def _prepared(now: datetime) -> ColumnElement[bool]:
    """Unsent posts of the schedules bound as `ids` that are not due by `now` (prepared ahead)."""
    return and_(
        outbox.c.schedule_id.in_(_IDS), outbox.c.state == PostState.PENDING.value, outbox.c.not_before > now
    )


def _outbox_row(row: Any) -> OutboxRow:
    not_before = utc(row.not_before)
    channel = ChannelRef(row.platform, row.channel_id, row.channel_name)
    user = UserRef(row.platform, row.user_id, row.user_name or "") if row.user_id is not None else None
    post = Post(
        kind=PostKind(row.kind),
        channel=channel,
        text=row.text,
        reply_to=row.reply_to,
        user=user,
        reactions=tuple(json.loads(row.reactions)) if row.reactions != "[]" else (),
        poll_id=row.poll_id,
        group_id=row.group_id,
        not_before=not_before,
        thread=Thread.parse(row.thread) if row.thread is not None else None,
        sealed=row.sealed,
        buttons=tuple(json.loads(row.buttons)) if row.buttons != "[]" else (),
        channel_line=row.channel_line,
        thread_only=bool(row.thread_only),
        review_id=row.review_id,
        occurrence_id=row.occurrence_id,
        schedule_id=row.schedule_id,
    )
    return OutboxRow(
        id=row.id,
        post=post,
        state=PostState(row.state),
        created_at=utc(row.created_at),
        not_before=not_before,
        attempts=row.attempts,
        message_id=row.message_id,
    )


class _SqlPart:
    """A repository: one aggregate's tables, on the transaction's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _unindexed(self, column: Any) -> Any:
        """`column` kept out of SQLite's choice of index (`+column`). SQLite plans without statistics:
        asked for a group's open polls it walks the index of every open poll (`ix_polls_due`, the tick's)
        rather than the group's own, and that grows with every group. PostgreSQL plans by its statistics."""
        if self.conn.dialect.name != "sqlite":
            return column
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


class SqlEvents(_SqlPart):
    async def claim(self, platform: str, event_id: str, at: datetime) -> bool:
        stmt = insert_ignore(self.conn, processed_events).values(platform=platform, event_id=event_id, at=at)
        result = await self.conn.execute(stmt)
        return bool(result.rowcount)

    async def claim_many(self, platform: str, event_ids: Sequence[str], at: datetime) -> set[str]:
        if not event_ids:
            return set()
        stmt = insert_ignore(self.conn, processed_events).returning(processed_events.c.event_id)
        rows = await self.conn.execute(
            stmt, [{"platform": platform, "event_id": e, "at": at} for e in dict.fromkeys(event_ids)]
        )
        return {r.event_id for r in rows}

    async def record_failed(self, platform: str, event_id: str, at: datetime, reason: str) -> None:
        await self.claim(platform, event_id, at)
        values = {"platform": platform, "event_id": event_id, "at": at, "reason": reason}
        await self.conn.execute(upsert(self.conn, failed_events, ["platform", "event_id"], values))

    async def failed(self, limit: int) -> list[tuple[datetime, str, str, str]]:
        rows = await self.conn.execute(
            select(failed_events).order_by(failed_events.c.at.desc(), failed_events.c.event_id).limit(limit)
        )
        return [(utc(r.at), r.platform, r.event_id, r.reason) for r in rows]

    async def prune(self, before: datetime) -> int:
        result = await self.conn.execute(delete(processed_events).where(processed_events.c.at < before))
        return int(result.rowcount or 0)


class SqlGroups(_SqlPart):
    async def get(self, channel: ChannelRef) -> Group | None:
        row = (
            await self.conn.execute(
                select(groups).where(groups.c.platform == channel.platform, groups.c.channel_id == channel.id)
            )
        ).first()
        return _group(row) if row else None

    async def by_id(self, group_id: int) -> Group | None:
        row = (await self.conn.execute(select(groups).where(groups.c.id == group_id))).first()
        return _group(row) if row else None

    async def many(self, group_ids: Sequence[int]) -> dict[int, Group]:
        found: dict[int, Group] = {}
        unique = list(dict.fromkeys(group_ids))
        for start in range(0, len(unique), 500):
            rows = await self.conn.execute(select(groups).where(groups.c.id.in_(unique[start : start + 500])))
            found.update((r.id, _group(r)) for r in rows)
        return found

    async def create(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group:
        result = await self.conn.execute(
            groups.insert().values(
                platform=channel.platform,
                channel_id=channel.id,
                channel_name=channel.display,
                phase=phase.value,
                phase_since=at,
                created_at=at,
            )
        )
        (group_id,) = result.inserted_primary_key or (None,)
        assert group_id is not None
        return Group(group_id, channel, phase, at, at)

    async def record_phase_change(self, change: PhaseChange) -> None:
        await self.conn.execute(
            phase_changes.insert().values(
                group_id=change.group_id,
                from_phase=change.from_phase.value if change.from_phase else None,
                to_phase=change.to_phase.value,
                at=change.at,
                by_name=change.by,
                by_key=change.by_key,
                reason=change.reason,
            )
        )
        await self.conn.execute(
            update(groups)
            .where(groups.c.id == change.group_id)
            .values(phase=change.to_phase.value, phase_since=change.at)
        )

    async def phase_history(self, group_id: int, limit: int | None = None) -> list[PhaseChange]:
        query = (
            select(phase_changes)
            .where(phase_changes.c.group_id == group_id)
            .order_by(phase_changes.c.id.desc())
        )
        rows = (await self.conn.execute(query if limit is None else query.limit(limit))).all()
        return [
            PhaseChange(
                group_id=r.group_id,
                from_phase=Phase(r.from_phase) if r.from_phase else None,
                to_phase=Phase(r.to_phase),
                at=utc(r.at),
                by=r.by_name,
                reason=r.reason,
                by_key=r.by_key,
            )
            for r in reversed(rows)
        ]

    async def set_settings(
        self, group_id: int, goal_quorum: int | None, decision_window: timedelta | None
    ) -> None:
        window = int(decision_window.total_seconds()) if decision_window is not None else None
        await self.conn.execute(
            update(groups)
            .where(groups.c.id == group_id)
            .values(goal_quorum=goal_quorum, decision_window_s=window)
        )

    async def record_signal(self, group_id: int, kind: str, at: datetime, detail: str) -> None:
        await self.conn.execute(signals.insert().values(group_id=group_id, kind=kind, at=at, detail=detail))

    async def _set(self, group_id: int, **values: Any) -> None:
        await self.conn.execute(update(groups).where(groups.c.id == group_id).values(**values))

    async def set_timezone(self, group_id: int, tz: str) -> None:
        await self._set(group_id, timezone=tz)

    async def set_quiet_hours(self, group_id: int, quiet: QuietHours | None) -> None:
        start = f"{quiet.start:%H:%M}" if quiet else None
        end = f"{quiet.end:%H:%M}" if quiet else None
        await self._set(group_id, quiet_start=start, quiet_end=end)

    async def set_auto(self, group_id: int, auto_review: bool, auto_checkin: bool) -> None:
        await self._set(group_id, auto_review=auto_review, auto_checkin=auto_checkin)

    async def set_threads(self, group_id: int, on: bool) -> None:
        await self._set(group_id, auto_threads=on)

    async def touch_activity(self, group_id: int, at: datetime) -> None:
        await self._set(group_id, last_activity_at=at)

    async def set_remind_window(self, group_id: int, percent: int | None) -> None:
        await self._set(group_id, remind_window=percent)

    async def set_welcome_text(self, group_id: int, text: str) -> None:
        await self._set(group_id, welcome_text=text)

    async def claim_welcome(self, group_id: int, now: datetime, until: datetime) -> bool:
        result = await self.conn.execute(
            update(groups)
            .where(
                groups.c.id == group_id,
                or_(groups.c.welcome_until.is_(None), groups.c.welcome_until <= now),
            )
            .values(welcome_until=until)
        )
        return bool(result.rowcount)

    async def quiet(self, silent_since: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        rows = await self.conn.execute(
            select(groups)
            .where(
                groups.c.platform.in_(list(platforms)),
                groups.c.last_activity_at <= silent_since,
                _SILENCE_UNANSWERED,
            )
            .order_by(groups.c.id)
            .limit(limit)
        )
        return [_group(r) for r in rows]

    async def claim_heartbeat(self, group_id: int, at: datetime) -> bool:
        result = await self.conn.execute(
            update(groups)
            .where(
                groups.c.id == group_id,
                _SILENCE_UNANSWERED,
            )
            .values(heartbeat_sent_at=at)
        )
        return bool(result.rowcount)

    async def signals(self, group_id: int, since: datetime) -> list[tuple[str, datetime, str]]:
        rows = await self.conn.execute(
            select(signals)
            .where(signals.c.group_id == group_id, signals.c.at >= since)
            .order_by(signals.c.id)
        )
        return [(r.kind, utc(r.at), r.detail) for r in rows]

    async def signals_in_phase(self, group_ids: Sequence[int]) -> dict[int, list[str]]:
        rows = await self.conn.execute(
            select(signals.c.group_id, signals.c.kind)
            .join(groups, groups.c.id == signals.c.group_id)
            .where(
                signals.c.group_id.in_(list(group_ids)),
                signals.c.at >= groups.c.phase_since,
                signals.c.kind != CLOSING,
            )
            .order_by(signals.c.id)
        )
        found: dict[int, list[str]] = {}
        for group_id, kind in rows:
            found.setdefault(group_id, []).append(kind)
        return found

    async def set_advised(self, group_id: int, at: datetime) -> None:
        await self._set(group_id, advised_at=at)

    async def set_radar(self, group_id: int, auto: bool, limits: Mapping[str, int]) -> None:
        await self._set(group_id, auto_radar=auto, radar_limits=limits_json(limits))

    async def radar_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Group]:
        rows = await self.conn.execute(
            select(groups)
            .where(
                groups.c.platform.in_(list(platforms)),
                groups.c.auto_radar.is_(True),
                or_(groups.c.radar_next_at.is_(None), groups.c.radar_next_at <= now),
            )
            .order_by(groups.c.id)
            .limit(limit)
        )
        return [_group(r) for r in rows]

    async def plan_radar(self, moves: Sequence[tuple[int, datetime | None, datetime | None]]) -> set[int]:
        # Groups due together mostly saw the same time and move to the same one: one statement for each.
        together: dict[tuple[datetime | None, datetime | None], list[int]] = {}
        for group_id, seen, new in moves:
            together.setdefault((seen, new), []).append(group_id)
        moved: set[int] = set()
        for (seen, new), ids in together.items():
            same = groups.c.radar_next_at.is_(None) if seen is None else groups.c.radar_next_at == seen
            for start in range(0, len(ids), IN_CHUNK):
                result = await self.conn.execute(
                    update(groups)
                    .where(groups.c.id.in_(ids[start : start + IN_CHUNK]), same)
                    .values(radar_next_at=new)
                    .returning(groups.c.id)
                )
                moved.update(result.scalars())
        return moved

    async def record_findings(self, findings: Sequence[tuple[int, str, str]], at: datetime) -> None:
        if findings:
            rows = [{"group_id": g, "kind": k, "subject_key": s, "at": at} for g, k, s in findings]
            await self.conn.execute(radar_findings.insert(), rows)

    async def told(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, dict[tuple[str, str], datetime]]:
        f = radar_findings.c
        rows = await self.conn.execute(
            select(f.group_id, f.kind, f.subject_key, func.max(f.at))
            .where(f.group_id.in_(list(group_ids)), f.at >= since)
            .group_by(f.group_id, f.kind, f.subject_key)
        )
        found: dict[int, dict[tuple[str, str], datetime]] = {}
        for group_id, kind, subject, at in rows:
            found.setdefault(group_id, {})[(kind, subject)] = utc(at)
        return found


async def _claim_reminders(
    conn: AsyncConnection, items: Table, served: ColumnElement[bool], now: datetime, limit: int
) -> list[Any]:
    """Claim the polls or reviews (`items`) whose reminders are due by `now`, still open, on the served
    platforms: their rows as they are after the claim, the earliest reminder first.

    The claim is the change: an item another process cleared (or a replan moved) meanwhile stays out.
    """
    c = items.c
    due = and_(c.remind_at.is_not(None), c.remind_at <= now, c.closed_at.is_(None), c.closes_at > now)
    query = select(c.id).where(due, served).order_by(c.remind_at, c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [r.id for r in await conn.execute(query)]
    if not ids:
        return []
    rows = await conn.execute(update(items).where(c.id.in_(ids), due).values(remind_at=None).returning(*c))
    order = {item_id: n for n, item_id in enumerate(ids)}
    return sorted(rows, key=lambda r: order[r.id])


async def _unresponded(
    conn: AsyncConnection, items: Table, item_ids: Collection[int], responded: Select[Any]
) -> dict[int, Unresponded]:
    """For polls or reviews (`items`): the size of each one's group roster, and the members on it with
    no row in `responded` (a subquery on the item and the member), in the order they joined."""
    wanted = sorted(set(item_ids))
    m = members.c
    on_roster = items.join(members, and_(m.group_id == items.c.group_id, m.left_at.is_(None)))
    sizes: dict[int, int] = dict.fromkeys(wanted, 0)
    absent: dict[int, list[Absent]] = {item_id: [] for item_id in wanted}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = items.c.id.in_(wanted[start : start + IN_CHUNK])
        counted = select(items.c.id, func.count()).select_from(on_roster).where(chunk).group_by(items.c.id)
        sizes.update((item_id, n) for item_id, n in await conn.execute(counted))
        missing = (
            select(items.c.id, m.user_key, m.name, m.reminders)
            .select_from(on_roster)
            .where(chunk, ~responded.correlate(items, members).exists())
            .order_by(items.c.id, m.joined_at, m.id)
        )
        for item_id, key, name, reminders in await conn.execute(missing):
            absent[item_id].append(Absent(key, name, bool(reminders)))
    return {item_id: Unresponded(sizes[item_id], tuple(absent[item_id])) for item_id in wanted}


class SqlState(_SqlPart):
    def __init__(self, conn: AsyncConnection, namespace: str) -> None:
        super().__init__(conn)
        self.prefix = state_prefix(namespace)
        self.namespace = namespace

    async def get(self, key: str) -> str | None:
        stmt = select(adapter_state.c.value).where(adapter_state.c.key == self.prefix + key)
        row = (await self.conn.execute(stmt)).first()
        return row.value if row else None

    async def set(self, key: str, value: str) -> None:
        row = {"key": self.prefix + key, "value": value}
        await self.conn.execute(upsert(self.conn, adapter_state, ["key"], row))

    async def delete(self, key: str) -> None:
        await self.conn.execute(delete(adapter_state).where(adapter_state.c.key == self.prefix + key))

    async def get_many(self, keys: Collection[str]) -> dict[str, str]:
        prefixed = [self.prefix + key for key in dict.fromkeys(keys)]
        found: dict[str, str] = {}
        for start in range(0, len(prefixed), IN_CHUNK):
            chunk = prefixed[start : start + IN_CHUNK]
            stmt = select(adapter_state.c.key, adapter_state.c.value).where(adapter_state.c.key.in_(chunk))
            for key, value in await self.conn.execute(stmt):
                found[key[len(self.prefix) :]] = value
        return found

    async def update(self, changes: Mapping[str, str | None]) -> None:
        """One statement for the keys set and one per chunk of those deleted, not one per key: a Matrix
        sync of 10,000 reactions keeps 10,000 records."""
        rows = [{"key": self.prefix + k, "value": v} for k, v in changes.items() if v is not None]
        gone = [self.prefix + k for k, v in changes.items() if v is None]
        if rows:
            dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(adapter_state)
            stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
            await self.conn.execute(stmt, rows)
        for start in range(0, len(gone), IN_CHUNK):
            chunk = gone[start : start + IN_CHUNK]
            await self.conn.execute(delete(adapter_state).where(adapter_state.c.key.in_(chunk)))

    async def batch_applied(self, batch_id: str) -> bool:
        stmt = select(inbound_batches.c.id).where(
            inbound_batches.c.namespace == self.namespace, inbound_batches.c.batch_id == batch_id
        )
        return (await self.conn.execute(stmt)).first() is not None

    async def record_batch(self, batch_id: str) -> None:
        row = {"namespace": self.namespace, "batch_id": batch_id}
        await self.conn.execute(insert_ignore(self.conn, inbound_batches).values(**row))

    async def forget_batches(self, keep: int) -> int:
        ours = inbound_batches.c.namespace == self.namespace
        if keep <= 0:
            return (await self.conn.execute(delete(inbound_batches).where(ours))).rowcount or 0
        kept = select(inbound_batches.c.id).where(ours).order_by(inbound_batches.c.id.desc()).limit(keep)
        oldest_kept = select(func.min(kept.subquery().c.id)).scalar_subquery()
        stmt = delete(inbound_batches).where(ours, inbound_batches.c.id < oldest_kept)
        return (await self.conn.execute(stmt)).rowcount or 0


_RECORD = "\x1e"  # ASCII's record separator: in no member key (platform ids, or a keyed hash)
_ANY_OPTION = 1 << 30  # re-counting rows already counted: every option is the poll's
_IN_LIMIT = 1000  # values in one IN (...): well below what a statement may bind (PostgreSQL: 32,767)


def _bisect(at: ColumnElement[datetime], starts: Sequence[datetime], lo: int, hi: int) -> ColumnElement[int]:
    """The index (in lo..hi-1) of the last of `starts` at or before `at`, as nested CASEs."""
    if hi - lo == 1:
        return literal(lo, Integer)
    mid = (lo + hi) // 2
    before = at < bindparam(None, starts[mid], DateTime(timezone=True))
    return case((before, _bisect(at, starts, lo, mid)), else_=_bisect(at, starts, mid, hi))


@functools.lru_cache(maxsize=64)
def _week_index(at: ColumnElement[datetime], starts: tuple[datetime, ...]) -> ColumnElement[int]:
    """`_bisect` over all of `starts`, kept: a group's weeks change once a week, and building the hundred
    CASEs of two years' weeks, then keying them for the statement cache, cost a group's page more than
    the database takes to evaluate them. The same expression keeps its cache key."""
    return _bisect(at, starts, 0, len(starts))


class SqlPolls(_SqlPart):
    async def create(
        self,
        group_id: int,
        kind: PollKind,
        request: PollRequest,
        author: UserRef,
        at: datetime,
        remind_at: datetime | None = None,
    ) -> Poll:
        group = await SqlGroups(self.conn).by_id(group_id)
        assert group is not None
        values = {
            "group_id": group_id,
            "kind": kind.value,
            "question": request.question,
            "options": json.dumps([[o.emoji, o.label] for o in request.options], ensure_ascii=False),
            "multiple": request.multiple,
            "hidden": request.hidden,
            "author_key": author.key,
            "author_name": author.name,
            "created_at": at,
            "closes_at": at + request.duration,
            "platform": group.channel.platform,
            "channel_id": group.channel.id,
            "remind_at": remind_at,
            "anonymous": request.anonymous,
        }
        result = await self.conn.execute(polls.insert().values(**values))
        (poll_id,) = result.inserted_primary_key or (None,)
        assert poll_id is not None
        if request.anonymous:
            await self.conn.execute(poll_secrets.insert().values(poll_id=poll_id, secret=new_secret()))
        poll = await self.get(group_id, poll_id)
        assert poll is not None
        return poll

    async def set_message(self, poll_id: int, message: MessageRef) -> None:
        await self.conn.execute(update(polls).where(polls.c.id == poll_id).values(message_id=message.id))

    async def delete(self, poll_id: int) -> None:
        await self.conn.execute(polls.delete().where(polls.c.id == poll_id))

    async def get(self, group_id: int, poll_id: int) -> Poll | None:
        row = (
            await self.conn.execute(select(polls).where(polls.c.id == poll_id, polls.c.group_id == group_id))
        ).first()
        return _poll(row) if row else None

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Poll]:
        if not message_ids:
            return []
        rows = await self.conn.execute(
            select(polls).where(polls.c.platform == platform, polls.c.message_id.in_(set(message_ids)))
        )
        return [_poll(r) for r in rows]

    async def record_reactions(self, poll_id: int, changes: Sequence[ReactionChange]) -> None:
        if not changes:
            return
        result = await self.conn.execute(
            update(polls)
            .where(polls.c.id == poll_id)
            .values(vote_seq=polls.c.vote_seq + len(changes))
            .returning(polls.c.vote_seq)
        )
        first = result.scalar_one() - len(changes) + 1
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(poll_reactions)
        stmt = stmt.on_conflict_do_update(
            index_elements=["poll_id", "user_key", "option"],
            set_={
                "present": stmt.excluded.present,
                "seq": stmt.excluded.seq,
                "user_name": stmt.excluded.user_name,
            },
        )
        # Only the last change of each (member, option) in the batch decides its state; it keeps the
        # sequence number of its place in the batch, so single-choice order is preserved.
        final: dict[tuple[str, int], dict[str, Any]] = {}
        for i, c in enumerate(changes):
            final[(c.user_key, c.option)] = {
                "poll_id": poll_id,
                "user_key": c.user_key,
                "option": c.option,
                "user_name": c.user_name,
                "present": c.present,
                "seq": first + i,
            }
        await self.conn.execute(stmt, list(final.values()))

    async def reactions(self, poll_id: int) -> list[PollReaction]:
        rows = await self.conn.execute(
            select(poll_reactions).where(poll_reactions.c.poll_id == poll_id).order_by(poll_reactions.c.seq)
        )
        return [PollReaction(r.user_key, r.user_name, r.option, bool(r.present), r.seq) for r in rows]

    async def reactions_of(self, poll_ids: Sequence[int]) -> dict[int, list[PollReaction]]:
        c = poll_reactions.c
        rows = await self.conn.execute(
            select(c.poll_id, c.user_key, c.user_name, c.option, c.present, c.seq)
            .where(c.poll_id.in_(list(poll_ids)))
            .order_by(c.poll_id, c.seq)
        )
        found: dict[int, list[PollReaction]] = {}
        # Unpacked as tuples: by name, a row's fields cost most of the time of a group's page (50,000 votes).
        for poll_id, user_key, user_name, option, present, seq in rows:
            found.setdefault(poll_id, []).append(
                PollReaction(user_key, user_name, option, bool(present), seq)
            )
        return found

    async def counts_in_group(self, group_id: int, poll_ids: Collection[int] | None = None) -> GroupCounts:
        # One pass over the group's votes, counted and grouped by the database: for a page of 50,000
        # votes, rows cost far more to fetch than to count. Who voted comes as one string per option.
        c = poll_reactions.c
        query = (
            select(c.poll_id, c.option, func.count(), func.aggregate_strings(c.user_key, _RECORD))
            .join(polls, polls.c.id == c.poll_id)
            .where(polls.c.group_id == group_id, c.present)
            .group_by(c.poll_id, c.option)
        )
        wanted = None if poll_ids is None else sorted(set(poll_ids))
        if wanted is None:
            rows = list(await self.conn.execute(query))
        else:
            rows = []
            for start in range(0, len(wanted), _IN_LIMIT):
                chunk = wanted[start : start + _IN_LIMIT]
                rows += await self.conn.execute(query.where(c.poll_id.in_(chunk)))
        votes: dict[int, dict[int, int]] = {}
        chose: dict[int, list[list[str]]] = {}
        for poll_id, option, count, keys in rows:
            votes.setdefault(poll_id, {})[option] = count
            chose.setdefault(poll_id, []).append(keys.split(_RECORD))
        voters = {poll_id: frozenset().union(*listed) for poll_id, listed in chose.items()}
        # Someone who chose two options: in a single-choice poll only their latest reaction counts.
        twice = [poll_id for poll_id, listed in chose.items() if len(voters[poll_id]) < sum(map(len, listed))]
        single: list[int] = []
        for start in range(0, len(twice), _IN_LIMIT):
            query = select(polls.c.id).where(polls.c.id.in_(twice[start : start + _IN_LIMIT]))
            single += await self.conn.scalars(query.where(polls.c.multiple.is_(False)))
        recount: dict[int, list[PollReaction]] = {}
        for start in range(0, len(single), _IN_LIMIT):
            recount.update(await self.reactions_of(single[start : start + _IN_LIMIT]))
        for poll_id, reactions in recount.items():
            votes[poll_id] = dict.fromkeys(votes[poll_id], 0)
            present = ((r.user_key, r.option, r.seq, r.option) for r in reactions if r.present)
            for (option,) in counted(present, _ANY_OPTION, multiple=False).values():
                votes[poll_id][option] += 1
            votes[poll_id] = {option: n for option, n in votes[poll_id].items() if n}
        return GroupCounts(votes, voters)

    async def voter_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        if not starts:
            return {}
        c = poll_reactions.c
        # Each poll's voters counted and its week found by the database, then summed by week: a hundred
        # rows back for two years of 50,000 votes.
        week = _week_index(polls.c.created_at, tuple(utc(s) for s in starts)).label("week")
        by_poll = (
            select(
                week,
                func.count(c.user_key.distinct()).label("voters"),
                func.aggregate_strings(c.user_key, _RECORD).label("voter_keys"),
            )
            .join(polls, polls.c.id == c.poll_id)
            .where(polls.c.group_id == group_id, polls.c.anonymous.is_(False), c.present)
            .group_by(polls.c.id)  # the week, once per poll: it depends on the poll's key alone
            .subquery()
        )
        rows = await self.conn.execute(
            select(
                by_poll.c.week,
                func.sum(by_poll.c.voters),
                func.aggregate_strings(by_poll.c.voter_keys, _RECORD),
            ).group_by(by_poll.c.week)
        )
        return {n: (int(count), frozenset(keys.split(_RECORD))) for n, count, keys in rows}

    async def names_choosing(self, poll_ids: Sequence[int], option: int) -> dict[int, list[str]]:
        c, later = poll_reactions.c, poll_reactions.alias("later")
        # In a single-choice poll a reaction counts unless the member reacted again since.
        since = select(later.c.seq).where(
            later.c.poll_id == c.poll_id, later.c.user_key == c.user_key, later.c.present, later.c.seq > c.seq
        )
        found: dict[int, list[str]] = {}
        for start in range(0, len(poll_ids), _IN_LIMIT):
            rows = await self.conn.execute(
                select(c.poll_id, c.user_name)
                .join(polls, polls.c.id == c.poll_id)
                .where(
                    c.poll_id.in_(list(poll_ids[start : start + _IN_LIMIT])),
                    c.option == option,
                    c.present,
                    or_(polls.c.multiple, ~exists(since)),
                )
                .order_by(c.poll_id, c.user_name)
            )
            for poll_id, name in rows:
                found.setdefault(poll_id, []).append(name)
        return found

    async def close(self, poll_id: int, at: datetime, *, skip_locked: bool = False) -> bool:
        if skip_locked and self.conn.dialect.name == "postgresql":
            # Processes closing due polls together each take the ones no other holds, never waiting.
            free = select(polls.c.id).where(polls.c.id == poll_id, polls.c.closed_at.is_(None))
            if (await self.conn.execute(free.with_for_update(skip_locked=True))).first() is None:
                return False
        result = await self.conn.execute(
            update(polls)
            .where(polls.c.id == poll_id, polls.c.closed_at.is_(None))
            .values(closed_at=at, remind_at=None)
        )
        await self.conn.execute(delete(poll_secrets).where(poll_secrets.c.poll_id == poll_id))
        return bool(result.rowcount)

    async def secret(self, poll_id: int) -> bytes | None:
        query = select(poll_secrets.c.secret).where(poll_secrets.c.poll_id == poll_id)
        found = (await self.conn.execute(query)).scalar()
        return bytes(found) if found is not None else None

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        for poll_id, when in updates:
            await self.conn.execute(update(polls).where(polls.c.id == poll_id).values(remind_at=when))

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        rows = await _claim_reminders(self.conn, polls, polls.c.platform.in_(list(platforms)), now, limit)
        return [_poll(r) for r in rows]

    async def unvoted(self, poll_ids: Collection[int]) -> dict[int, Unresponded]:
        r = poll_reactions.c
        voted = select(r.poll_id).where(r.poll_id == polls.c.id, r.user_key == members.c.user_key, r.present)
        return await _unresponded(self.conn, polls, poll_ids, voted)

    async def everyone_voted(self, poll_ids: Collection[int]) -> set[int]:
        wanted = sorted(set(poll_ids))
        on_roster = and_(members.c.group_id == polls.c.group_id, members.c.left_at.is_(None))
        voted = (
            select(poll_reactions.c.poll_id)
            .where(
                poll_reactions.c.poll_id == polls.c.id,
                poll_reactions.c.user_key == members.c.user_key,
                poll_reactions.c.present,
            )
            .correlate(polls, members)  # two levels up and one: not made a FROM of its own
            .exists()
        )
        complete: set[int] = set()
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(polls.c.id).where(
                    polls.c.id.in_(wanted[start : start + IN_CHUNK]),
                    exists().where(on_roster),
                    ~exists().where(on_roster, ~voted),
                )
            )
            complete.update(r.id for r in rows)
        return complete

    async def open_on(
        self, platform: str, now: datetime, after: int = 0, limit: int | None = None
    ) -> list[Poll]:
        rows = await self.conn.execute(
            select(polls)
            .where(
                polls.c.platform == platform,
                polls.c.closed_at.is_(None),
                polls.c.closes_at > now,
                polls.c.id > after,
            )
            .order_by(polls.c.id)
            .limit(limit)
        )
        return [_poll(r) for r in rows]

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Poll]:
        rows = await self.conn.execute(
            select(polls)
            .where(
                polls.c.closed_at.is_(None), polls.c.closes_at <= now, polls.c.platform.in_(list(platforms))
            )
            .order_by(polls.c.closes_at, polls.c.id)
            .limit(limit)
        )
        return [_poll(r) for r in rows]

    async def in_group(self, group_id: int) -> list[Poll]:
        rows = await self.conn.execute(select(polls).where(polls.c.group_id == group_id).order_by(polls.c.id))
        return [_poll(r) for r in rows]

    async def newest_in_group(
        self, group_id: int, kinds: Collection[PollKind], offset: int = 0, limit: int | None = None
    ) -> list[Poll]:
        if not kinds or limit == 0:
            return []
        rows = await self.conn.execute(
            select(polls)
            .where(polls.c.group_id == group_id, polls.c.kind.in_([k.value for k in kinds]))
            .order_by(polls.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_poll(r) for r in rows]

    async def kinds_in_group(self, group_id: int) -> dict[PollKind, tuple[int, datetime]]:
        rows = await self.conn.execute(
            select(polls.c.kind, func.count(), func.min(polls.c.created_at))
            .where(polls.c.group_id == group_id)
            .group_by(polls.c.kind)
        )
        return {PollKind(kind): (count, utc(first)) for kind, count, first in rows}

    def _open_in(self, group_ids: Collection[int], now: datetime) -> Any:
        """Open at `now`, in these groups: found by the groups' index (see `_unindexed`)."""
        return and_(
            polls.c.group_id.in_(list(group_ids)),
            self._unindexed(polls.c.closed_at).is_(None),
            self._unindexed(polls.c.closes_at) > now,
        )

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_voted_by: UserRef | None = None
    ) -> list[Poll]:
        if not group_ids:
            return []
        query = select(polls).where(self._open_in(group_ids, now))
        if not_voted_by is not None:
            # The polls the member voted on are never read, let alone turned into objects: with hundreds
            # open, that is most of the cost of `pending`.
            voted = select(poll_reactions.c.poll_id).where(
                poll_reactions.c.poll_id == polls.c.id,
                poll_reactions.c.user_key == not_voted_by.key,
                poll_reactions.c.present,
            )
            query = query.where(~voted.exists())
        rows = await self.conn.execute(query.order_by(polls.c.closes_at, polls.c.id))
        return [_poll(r) for r in rows]

    async def open_voter_counts(self, group_ids: Collection[int], now: datetime) -> dict[int, int]:
        if not group_ids:
            return {}
        rows = await self.conn.execute(
            select(poll_reactions.c.poll_id, func.count(poll_reactions.c.user_key.distinct()))
            .join(polls, polls.c.id == poll_reactions.c.poll_id)
            .where(self._open_in(group_ids, now), poll_reactions.c.present)
            .group_by(poll_reactions.c.poll_id)
        )
        return {poll_id: count for poll_id, count in rows.all()}


class SqlGoals(_SqlPart):
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
        result = await self.conn.execute(
            goals.insert().values(
                group_id=group_id,
                text=text,
                status=GoalStatus.PROPOSED.value,
                proposer_key=proposer.key,
                proposer_name=proposer.name,
                created_at=at,
                updated_at=at,
                put_forward_by_key=by.key,
                put_forward_by_name=by.name,
                reshapes_id=reshapes,
            )
        )
        (goal_id,) = result.inserted_primary_key or (None,)
        assert goal_id is not None
        return Goal(
            goal_id,
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

    async def set_poll(self, goal_id: int, poll_id: int | None) -> None:
        await self.conn.execute(update(goals).where(goals.c.id == goal_id).values(poll_id=poll_id))

    async def get(self, group_id: int, goal_id: int) -> Goal | None:
        row = (
            await self.conn.execute(select(goals).where(goals.c.id == goal_id, goals.c.group_id == group_id))
        ).first()
        return _goal(row) if row else None

    async def for_poll(self, poll_id: int) -> Goal | None:
        row = (await self.conn.execute(select(goals).where(goals.c.poll_id == poll_id))).first()
        return _goal(row) if row else None

    async def for_polls(self, poll_ids: Collection[int]) -> dict[int, Goal]:
        wanted = sorted(set(poll_ids))
        found: dict[int, Goal] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(goals).where(goals.c.poll_id.in_(wanted[start : start + IN_CHUNK]))
            )
            found.update((r.poll_id, _goal(r)) for r in rows)
        return found

    async def set_status(self, goal_id: int, status: GoalStatus, at: datetime) -> None:
        await self.conn.execute(
            update(goals).where(goals.c.id == goal_id).values(status=status.value, updated_at=at)
        )

    async def in_group(self, group_id: int) -> list[Goal]:
        rows = await self.conn.execute(select(goals).where(goals.c.group_id == group_id).order_by(goals.c.id))
        return [_goal(r) for r in rows]

    async def of_groups(
        self, group_ids: Sequence[int], statuses: Collection[GoalStatus]
    ) -> dict[int, list[Goal]]:
        rows = await self.conn.execute(
            select(goals)
            .where(goals.c.group_id.in_(list(group_ids)), goals.c.status.in_([s.value for s in statuses]))
            .order_by(goals.c.id)
        )
        found: dict[int, list[Goal]] = {}
        for r in rows:
            found.setdefault(r.group_id, []).append(_goal(r))
        return found


class SqlConcerns(_SqlPart):
    async def add(
        self, group_id: int, goal_id: int, text: str, author: UserRef | None, at: datetime
    ) -> Concern:
        key, name = (author.key, author.name) if author is not None else ("", "")
        result = await self.conn.execute(
            concerns.insert().values(
                group_id=group_id, goal_id=goal_id, text=text, author_key=key, author_name=name, at=at
            )
        )
        (concern_id,) = result.inserted_primary_key or (None,)
        assert concern_id is not None
        return Concern(concern_id, group_id, goal_id, text, key, name, at)

    async def get(self, group_id: int, concern_id: int) -> Concern | None:
        query = select(concerns).where(concerns.c.id == concern_id, concerns.c.group_id == group_id)
        row = (await self.conn.execute(query)).first()
        return _concern(row) if row else None

    async def of_goals(self, goal_ids: Collection[int]) -> dict[int, list[Concern]]:
        wanted = sorted(set(goal_ids))
        found: dict[int, list[Concern]] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(concerns)
                .where(concerns.c.goal_id.in_(wanted[start : start + IN_CHUNK]))
                .order_by(concerns.c.id)
            )
            for r in rows:
                found.setdefault(r.goal_id, []).append(_concern(r))
        return found

    async def address(self, concern_id: int, by: UserRef, note: str, at: datetime) -> bool:
        result = await self.conn.execute(
            update(concerns)
            .where(concerns.c.id == concern_id, concerns.c.addressed_at.is_(None))
            .values(addressed_at=at, addressed_by_key=by.key, addressed_by_name=by.name, note=note)
        )
        return bool(result.rowcount)

    async def claim_asks(self, asks: Collection[tuple[int, str]], at: datetime) -> set[tuple[int, str]]:
        if not asks:
            return set()
        stmt = insert_ignore(self.conn, concern_asks).returning(
            concern_asks.c.poll_id, concern_asks.c.user_key
        )
        rows = await self.conn.execute(
            stmt, [{"poll_id": p, "user_key": k, "at": at} for p, k in dict.fromkeys(asks)]
        )
        return {(r.poll_id, r.user_key) for r in rows}


def _role(row: Any) -> Role:
    return Role(
        id=row.id,
        group_id=row.group_id,
        name=row.name,
        duty=row.duty,
        built_in=bool(row.built_in),
        created_at=utc(row.created_at),
        holder_key=row.holder_key,
        holder_name=row.holder_name,
        held_since=_maybe_utc(row.held_since),
        rotation=Rotation(row.rotation),
        next_turn_at=_maybe_utc(row.next_turn_at),
        next_week_at=_maybe_utc(row.next_week_at),
    )


def _wrap(row: Any) -> Wrap:
    return Wrap(
        id=row.id,
        group_id=row.group_id,
        week_end=utc(row.week_end),
        wrapper_key=row.wrapper_key,
        wrapper_name=row.wrapper_name,
        drafted_at=utc(row.drafted_at),
        state=WrapState(row.state),
        digest=row.digest,
        fallback_at=_maybe_utc(row.fallback_at),
        text=row.text,
        wrapped_at=_maybe_utc(row.wrapped_at),
    )


class SqlRoles(_SqlPart):
    async def ensure(
        self, group_id: int, built_in: Sequence[tuple[str, str]], at: datetime, week: datetime | None
    ) -> None:
        rows = [
            {
                "group_id": group_id,
                "name": n,
                "duty": d,
                "built_in": True,
                "created_at": at,
                "next_week_at": week,
            }
            for n, d in built_in
        ]
        await self.conn.execute(insert_ignore(self.conn, roles), rows)

    async def in_group(self, group_id: int) -> list[Role]:
        rows = await self.conn.execute(
            select(roles).where(roles.c.group_id == group_id).order_by(roles.c.built_in.desc(), roles.c.id)
        )
        return [_role(r) for r in rows]

    async def get(self, group_id: int, name: str) -> Role | None:
        row = (
            await self.conn.execute(select(roles).where(roles.c.group_id == group_id, roles.c.name == name))
        ).first()
        return _role(row) if row else None

    async def add(
        self, group_id: int, name: str, duty: str, at: datetime, week: datetime | None
    ) -> Role | None:
        stmt = insert_ignore(self.conn, roles).values(
            group_id=group_id, name=name, duty=duty, built_in=False, created_at=at, next_week_at=week
        )
        row = (await self.conn.execute(stmt.returning(*roles.c))).first()
        return _role(row) if row else None

    async def remove(self, role_id: int) -> None:
        await self.conn.execute(delete(role_pool).where(role_pool.c.role_id == role_id))
        await self.conn.execute(delete(roles).where(roles.c.id == role_id))

    async def set_holder(self, role_id: int, holder: UserRef | None, at: datetime, expected: str) -> bool:
        values = (
            {"holder_key": holder.key, "holder_name": holder.display, "held_since": at}
            if holder is not None
            else {"holder_key": "", "holder_name": "", "held_since": None}
        )
        result = await self.conn.execute(
            update(roles).where(roles.c.id == role_id, roles.c.holder_key == expected).values(**values)
        )
        if not result.rowcount:
            return False
        if holder is not None:
            await self.conn.execute(
                update(role_pool)
                .where(role_pool.c.role_id == role_id, role_pool.c.user_key == holder.key)
                .values(last_held_at=at, times_held=role_pool.c.times_held + 1)
            )
        return True

    async def set_rotation(self, role_id: int, rotation: Rotation, next_turn_at: datetime | None) -> None:
        await self.conn.execute(
            update(roles)
            .where(roles.c.id == role_id)
            .values(rotation=rotation.value, next_turn_at=next_turn_at)
        )

    async def pools(self, role_ids: Collection[int]) -> dict[int, list[PoolMember]]:
        wanted = sorted(set(role_ids))
        found: dict[int, list[PoolMember]] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(role_pool)
                .where(role_pool.c.role_id.in_(wanted[start : start + IN_CHUNK]))
                .order_by(role_pool.c.role_id, role_pool.c.joined_at, role_pool.c.user_key)
            )
            for r in rows:
                found.setdefault(r.role_id, []).append(
                    PoolMember(
                        r.role_id,
                        r.user_key,
                        r.user_name,
                        utc(r.joined_at),
                        _maybe_utc(r.last_held_at),
                        r.times_held,
                    )
                )
        return found

    async def join_pool(self, role_id: int, user: UserRef, at: datetime) -> bool:
        stmt = insert_ignore(self.conn, role_pool).values(
            role_id=role_id, user_key=user.key, user_name=user.display, joined_at=at
        )
        return bool((await self.conn.execute(stmt)).rowcount)

    async def leave_pool(self, role_id: int, key: str) -> bool:
        result = await self.conn.execute(
            delete(role_pool).where(role_pool.c.role_id == role_id, role_pool.c.user_key == key)
        )
        return bool(result.rowcount)

    async def week_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Role]:
        on_platforms = select(groups.c.id).where(groups.c.platform.in_(list(platforms)))
        rows = await self.conn.execute(
            select(roles)
            .where(roles.c.next_week_at <= now, roles.c.group_id.in_(on_platforms))
            .order_by(roles.c.group_id, roles.c.id)
            .limit(limit)
        )
        return [_role(r) for r in rows]

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        # Roles due together mostly saw the same turn and move to the same one: one statement for each.
        together: dict[tuple[datetime | None, datetime | None, datetime | None], list[int]] = {}
        for role_id, seen, week, turn in moves:
            together.setdefault((seen, week, turn), []).append(role_id)
        moved: set[int] = set()
        for (seen, week, turn), ids in together.items():
            same = roles.c.next_week_at.is_(None) if seen is None else roles.c.next_week_at == seen
            for start in range(0, len(ids), IN_CHUNK):
                result = await self.conn.execute(
                    update(roles)
                    .where(roles.c.id.in_(ids[start : start + IN_CHUNK]), same)
                    .values(next_week_at=week, next_turn_at=turn)
                    .returning(roles.c.id)
                )
                moved.update(result.scalars())
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
        values = {
            "group_id": group_id,
            "week_end": week_end,
            "wrapper_key": wrapper.key,
            "wrapper_name": wrapper.display,
            "drafted_at": at,
            "state": state.value,
            "digest": digest,
            "fallback_at": fallback_at,
            "text": text,
            "wrapped_at": at if state is WrapState.WRAPPED else None,
        }
        row = (await self.conn.execute(wraps.insert().values(**values).returning(*wraps.c))).one()
        return _wrap(row)

    async def wraps(self, group_id: int) -> list[Wrap]:
        rows = await self.conn.execute(
            select(wraps).where(wraps.c.group_id == group_id).order_by(wraps.c.id.desc())
        )
        return [_wrap(r) for r in rows]

    async def open_wrap(self, group_id: int, key: str) -> Wrap | None:
        row = (
            await self.conn.execute(
                select(wraps)
                .where(
                    wraps.c.group_id == group_id,
                    wraps.c.wrapper_key == key,
                    wraps.c.state != WrapState.WRAPPED.value,
                )
                .order_by(wraps.c.id.desc())
                .limit(1)
            )
        ).first()
        return _wrap(row) if row else None

    async def wrap(self, wrap_id: int, text: str, at: datetime) -> bool:
        result = await self.conn.execute(
            update(wraps)
            .where(wraps.c.id == wrap_id, wraps.c.state != WrapState.WRAPPED.value)
            .values(state=WrapState.WRAPPED.value, text=text, wrapped_at=at, fallback_at=None)
        )
        return bool(result.rowcount)

    async def fallbacks_due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Wrap]:
        on_platforms = select(groups.c.id).where(groups.c.platform.in_(list(platforms)))
        rows = await self.conn.execute(
            select(wraps)
            .where(
                wraps.c.fallback_at <= now,
                wraps.c.state == WrapState.DRAFTED.value,
                wraps.c.group_id.in_(on_platforms),
            )
            .order_by(wraps.c.fallback_at, wraps.c.id)
            .limit(limit)
        )
        return [_wrap(r) for r in rows]

    async def lapse(self, wrap_ids: Collection[int]) -> set[int]:
        if not wrap_ids:
            return set()
        result = await self.conn.execute(
            update(wraps)
            .where(wraps.c.id.in_(sorted(wrap_ids)), wraps.c.state == WrapState.DRAFTED.value)
            .values(state=WrapState.LAPSED.value, fallback_at=None)
            .returning(wraps.c.id)
        )
        return set(result.scalars())

    async def digest_to_wrapper(self, group_id: int, since: datetime) -> bool:
        held = select(roles.c.id).where(
            roles.c.group_id == group_id, roles.c.name == "wrapper", roles.c.holder_key != ""
        )
        drafted = select(wraps.c.id).where(wraps.c.group_id == group_id, wraps.c.drafted_at >= since)
        return bool((await self.conn.execute(select(or_(exists(held), exists(drafted))))).scalar())


class SqlSchedules(_SqlPart):
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
        result = await self.conn.execute(
            schedules.insert().values(
                group_id=group_id,
                kind=kind.value,
                cron=cron,
                description=description,
                text=text,
                paused=False,
                next_occurrence=next_occurrence,
                next_due_at=next_due_at,
                created_by=created_by.name,
                created_by_key=created_by.key,
                created_at=at,
            )
        )
        (schedule_id,) = result.inserted_primary_key or (None,)
        assert schedule_id is not None
        return Schedule(
            schedule_id,
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

    async def get(self, group_id: int, schedule_id: int) -> Schedule | None:
        row = (
            await self.conn.execute(
                select(schedules).where(schedules.c.id == schedule_id, schedules.c.group_id == group_id)
            )
        ).first()
        return _schedule(row) if row else None

    async def in_group(self, group_id: int) -> list[Schedule]:
        rows = await self.conn.execute(
            select(schedules).where(schedules.c.group_id == group_id).order_by(schedules.c.id)
        )
        return [_schedule(r) for r in rows]

    async def delete(self, schedule_id: int) -> None:
        await self.conn.execute(delete(schedules).where(schedules.c.id == schedule_id))

    async def set_paused(self, schedule_id: int, paused: bool) -> None:
        await self.conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(paused=paused))

    async def set_cron(self, schedule_id: int, cron: str, description: str) -> None:
        await self.conn.execute(
            update(schedules).where(schedules.c.id == schedule_id).values(cron=cron, description=description)
        )

    async def set_next(self, updates: Sequence[tuple[int, datetime | None, datetime | None]]) -> None:
        for schedule_id, occurrence, due in updates:
            await self.conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(next_occurrence=occurrence, next_due_at=due)
            )

    async def advance(
        self, moves: Sequence[tuple[int, datetime | None, datetime | None, datetime | None]]
    ) -> set[int]:
        # Schedules due together mostly share their times (one cron, one zone): one UPDATE per group.
        grouped: dict[tuple[datetime | None, datetime | None, datetime | None], list[int]] = {}
        for schedule_id, seen, occurrence, due in moves:
            grouped.setdefault((seen, occurrence, due), []).append(schedule_id)
        moved: set[int] = set()
        for (seen, occurrence, due), ids in grouped.items():
            still = (
                schedules.c.next_occurrence.is_(None) if seen is None else schedules.c.next_occurrence == seen
            )
            for start in range(0, len(ids), 500):
                result = await self.conn.execute(
                    update(schedules)
                    .where(schedules.c.id.in_(ids[start : start + 500]), still)
                    .values(next_occurrence=occurrence, next_due_at=due)
                    .returning(schedules.c.id)
                )
                moved.update(r.id for r in result)
        return moved

    async def record_deliveries(self, keys: Sequence[tuple[int, datetime]], at: datetime) -> None:
        # Deliveries made together share their occurrence: one INSERT ... SELECT per occurrence, not a
        # row of parameters per delivery (at 50,000 deliveries the parameters were the cost).
        by_occurrence: dict[datetime, list[int]] = {}
        for schedule_id, occurrence in keys:
            by_occurrence.setdefault(occurrence, []).append(schedule_id)
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        for occurrence, ids in by_occurrence.items():
            for start in range(0, len(ids), 500):
                rows = select(
                    schedules.c.id,
                    literal(occurrence, type_=deliveries.c.occurrence.type),
                    literal(at, type_=deliveries.c.claimed_at.type),
                ).where(schedules.c.id.in_(_IDS))
                stmt = dialect.insert(deliveries).from_select(
                    ["schedule_id", "occurrence", "claimed_at"], rows
                )
                await self.conn.execute(stmt.on_conflict_do_nothing(), {"ids": ids[start : start + 500]})

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        return await self._read_due(
            and_(
                schedules.c.paused.is_(False),
                schedules.c.next_due_at <= now,
                groups.c.platform.in_(list(platforms)),
            ),
            limit,
        )

    async def claim(self, claims: Sequence[tuple[int, datetime]]) -> set[int]:
        # Claims made together mostly share their occurrence (one due minute): one UPDATE per occurrence.
        by_occurrence: dict[datetime, list[int]] = {}
        for schedule_id, occurrence in claims:
            by_occurrence.setdefault(occurrence, []).append(schedule_id)
        claimed: set[int] = set()
        for occurrence, ids in by_occurrence.items():
            for start in range(0, len(ids), IN_CHUNK):
                result = await self.conn.execute(
                    update(schedules)
                    .where(
                        schedules.c.id.in_(_IDS),
                        schedules.c.next_occurrence == occurrence,
                        schedules.c.next_due_at.is_not(None),
                    )
                    .values(next_due_at=None)
                    .returning(schedules.c.id),
                    {"ids": ids[start : start + IN_CHUNK]},
                )
                claimed.update(r.id for r in result)
        return claimed

    async def to_plan(self, limit: int, platforms: Collection[str]) -> list[DueSchedule]:
        # Paused ones too: a schedule paused after its delivery still wants its next occurrence.
        return await self._read_due(
            and_(
                schedules.c.paused.in_([False, True]),  # both halves of ix_schedules_due, not a scan
                schedules.c.next_due_at.is_(None),
                schedules.c.next_occurrence.is_not(None),
                groups.c.platform.in_(list(platforms)),
            ),
            limit,
            delivered=True,
        )

    async def set_planned(
        self, updates: Sequence[tuple[int, datetime, datetime | None, datetime | None]]
    ) -> None:
        if not updates:
            return
        # Every schedule its own times (distinct crons, zones): one statement run for many rows, not an
        # UPDATE each.
        statement = (
            update(schedules)
            .where(
                schedules.c.id == bindparam("b_id"),
                schedules.c.next_occurrence == bindparam("b_seen"),
                schedules.c.next_due_at.is_(None),
            )
            .values(next_occurrence=bindparam("b_next"), next_due_at=bindparam("b_due"))
        )
        rows = [{"b_id": i, "b_seen": seen, "b_next": o, "b_due": d} for i, seen, o, d in updates]
        await self.conn.execute(statement, rows)

    async def _read_due(
        self, where: ColumnElement[bool], limit: int, delivered: bool = False
    ) -> list[DueSchedule]:
        # Only the columns delivery needs: at 50,000 due schedules, parsing is the cost.
        query = (
            select(
                schedules.c.id,
                schedules.c.kind,
                schedules.c.cron,
                schedules.c.text,
                schedules.c.next_occurrence,
                schedules.c.group_id,
                groups.c.platform,
                groups.c.channel_id,
                groups.c.channel_name,
                groups.c.phase,
                groups.c.timezone,
                groups.c.quiet_start,
                groups.c.quiet_end,
                schedules.c.next_due_at,
                _delivered_at() if delivered else literal(None).label("claimed_at"),
            )
            .join(groups, groups.c.id == schedules.c.group_id)
            .where(where)
            .limit(limit)
        )
        if not delivered:  # earliest due first; what waits for its plan, in any order
            # (ordered by id, SQLite would sort every waiting row for each batch: 28 s for 50,000)
            query = query.order_by(schedules.c.next_due_at, schedules.c.id)
        if self.conn.dialect.name == "postgresql":
            # Processes ticking together share the work: each takes rows no other transaction holds.
            query = query.with_for_update(skip_locked=True, of=schedules)
        rows = await self.conn.execute(query)
        channels: dict[tuple[str, str, str], ChannelRef] = {}
        # Schedules due together share their times: each distinct one converted once.
        times: dict[Any, datetime | None] = {None: None}

        def when(value: Any) -> datetime | None:
            if (done := times.get(value, _UNSEEN)) is _UNSEEN:
                done = times[value] = _maybe_utc(value)
            return done  # type: ignore[no-any-return]

        due = []
        for (
            sid,
            kind,
            cron,
            text,
            occurrence,
            gid,
            platform,
            cid,
            cname,
            phase,
            tz,
            qs,
            qe,
            due_at,
            delivered_at,
        ) in rows.all():
            channel = channels.get((platform, cid, cname))
            if channel is None:
                channel = channels[(platform, cid, cname)] = ChannelRef(platform, cid, cname)
            due.append(
                DueSchedule(
                    sid,
                    _KINDS[kind],
                    cron,
                    text,
                    when(occurrence),
                    gid,
                    channel,
                    _PHASES[phase],
                    tz,
                    _quiet(qs, qe) if qs else None,
                    when(due_at),
                    when(delivered_at),
                )
            )
        return due


def _delivered_at() -> Any:
    """When the occurrence a schedule awaits its successor for was delivered: a lookup by the primary
    key for each row. As a join, PostgreSQL planned it from statistics taken before the deliveries were
    written (an empty table) and scanned the whole table for each schedule: minutes for 50,000."""
    return (
        select(deliveries.c.claimed_at)
        .where(
            deliveries.c.schedule_id == schedules.c.id,
            deliveries.c.occurrence == schedules.c.next_occurrence,
        )
        .scalar_subquery()
        .label("claimed_at")
    )


class SqlReviews(_SqlPart):
    async def create(
        self, group_id: int, by: UserRef, at: datetime, closes_at: datetime, remind_at: datetime | None = None
    ) -> Review:
        result = await self.conn.execute(
            reviews.insert().values(
                group_id=group_id,
                started_by=by.name,
                started_by_key=by.key,
                started_at=at,
                closes_at=closes_at,
                remind_at=remind_at,
            )
        )
        (review_id,) = result.inserted_primary_key or (None,)
        assert review_id is not None
        return Review(review_id, group_id, by.name, at, closes_at, None, by.key, remind_at)

    async def open(self, group_id: int) -> Review | None:
        row = (
            await self.conn.execute(
                select(reviews)
                .where(reviews.c.group_id == group_id, reviews.c.closed_at.is_(None))
                .order_by(reviews.c.id.desc())
            )
        ).first()
        return _review(row) if row else None

    async def get(self, group_id: int, review_id: int) -> Review | None:
        stmt = select(reviews).where(reviews.c.group_id == group_id, reviews.c.id == review_id)
        row = (await self.conn.execute(stmt)).first()
        return _review(row) if row else None

    async def set_message(self, review_id: int, message_id: str) -> None:
        await self.conn.execute(
            update(reviews).where(reviews.c.id == review_id).values(message_id=message_id)
        )

    async def close(self, review_id: int, at: datetime) -> bool:
        result = await self.conn.execute(
            update(reviews)
            .where(reviews.c.id == review_id, reviews.c.closed_at.is_(None))
            .values(closed_at=at, remind_at=None)
        )
        return bool(result.rowcount)

    async def set_remind_at(self, updates: Sequence[tuple[int, datetime | None]]) -> None:
        for review_id, when in updates:
            await self.conn.execute(update(reviews).where(reviews.c.id == review_id).values(remind_at=when))

    async def claim_reminders(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]:
        on_platforms = reviews.c.group_id.in_(
            select(groups.c.id).where(groups.c.platform.in_(list(platforms)))
        )
        return [_review(r) for r in await _claim_reminders(self.conn, reviews, on_platforms, now, limit)]

    async def unanswered(self, review_ids: Collection[int]) -> dict[int, Unresponded]:
        f = reflections.c
        answered = select(f.review_id).where(
            f.review_id == reviews.c.id, f.user_key == members.c.user_key, f.question.is_not(None)
        )
        return await _unresponded(self.conn, reviews, review_ids, answered)

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Review]:
        on_platforms = select(groups.c.id).where(groups.c.platform.in_(list(platforms)))
        rows = await self.conn.execute(
            select(reviews)
            .where(
                reviews.c.closed_at.is_(None),
                reviews.c.closes_at <= now,
                reviews.c.group_id.in_(on_platforms),
            )
            .order_by(reviews.c.closes_at, reviews.c.id)
            .limit(limit)
        )
        return [_review(r) for r in rows]

    async def in_group(self, group_id: int) -> list[Review]:
        rows = await self.conn.execute(
            select(reviews).where(reviews.c.group_id == group_id).order_by(reviews.c.id)
        )
        return [_review(r) for r in rows]

    async def open_in(
        self, group_ids: Collection[int], now: datetime, not_answered_by: UserRef | None = None
    ) -> list[Review]:
        if not group_ids:
            return []
        query = select(reviews).where(
            reviews.c.group_id.in_(list(group_ids)),
            self._unindexed(reviews.c.closed_at).is_(None),
            self._unindexed(reviews.c.closes_at) > now,
        )
        if not_answered_by is not None:
            answered = select(reflections.c.id).where(
                reflections.c.review_id == reviews.c.id, reflections.c.user_key == not_answered_by.key
            )
            query = query.where(~answered.exists())
        rows = await self.conn.execute(query.order_by(reviews.c.closes_at, reviews.c.id))
        return [_review(r) for r in rows]

    async def add_reflection(
        self,
        group_id: int,
        review_id: int | None,
        question: int | None,
        user: UserRef,
        text: str,
        at: datetime,
    ) -> Reflection:
        result = await self.conn.execute(
            reflections.insert().values(
                group_id=group_id,
                review_id=review_id,
                question=question,
                user_key=user.key,
                user_name=user.name,
                text=text,
                at=at,
            )
        )
        (reflection_id,) = result.inserted_primary_key or (None,)
        assert reflection_id is not None
        return Reflection(reflection_id, group_id, review_id, question, user.key, user.name, text, at)

    async def get_reflection(self, group_id: int, reflection_id: int) -> Reflection | None:
        row = (
            await self.conn.execute(
                select(reflections).where(
                    reflections.c.id == reflection_id, reflections.c.group_id == group_id
                )
            )
        ).first()
        return _reflection(row) if row else None

    async def reflections(self, group_id: int, review_id: int | None = None) -> list[Reflection]:
        c = reflections.c
        query = select(c.id, c.group_id, c.review_id, c.question, c.user_key, c.user_name, c.text, c.at)
        query = query.where(c.group_id == group_id)
        if review_id is not None:
            query = query.where(reflections.c.review_id == review_id)
        rows = await self.conn.execute(query.order_by(reflections.c.id))
        return [_reflection_of(*r) for r in rows]

    async def answer_counts(self, group_id: int) -> dict[int, tuple[int, int]]:
        c = reflections.c
        rows = await self.conn.execute(
            select(c.review_id, func.count(), func.count(case((c.question == 5, 1))))
            .where(c.group_id == group_id, c.review_id.is_not(None))
            .group_by(c.review_id)
        )
        return {review_id: (answers, proposals) for review_id, answers, proposals in rows}

    async def reflection_weeks(
        self, group_id: int, starts: Sequence[datetime]
    ) -> dict[int, tuple[int, frozenset[str]]]:
        if not starts:
            return {}
        c = reflections.c
        # Each reflection's week found by the database, by bisection over the weeks' starts: a hundred
        # rows back for two years, not one row per reflection.
        week = _week_index(c.at, tuple(utc(s) for s in starts)).label("week")
        rows = await self.conn.execute(
            select(week, func.count(), func.aggregate_strings(c.user_key, _RECORD))
            .where(c.group_id == group_id)
            .group_by(week)
        )
        return {n: (count, frozenset(keys.split(_RECORD))) for n, count, keys in rows}

    async def reflections_since(
        self, group_ids: Sequence[int], since: datetime
    ) -> dict[int, list[Reflection]]:
        rows = await self.conn.execute(
            select(reflections)
            .where(reflections.c.group_id.in_(list(group_ids)), reflections.c.at >= since)
            .order_by(reflections.c.id)
        )
        found: dict[int, list[Reflection]] = {}
        for r in rows:
            found.setdefault(r.group_id, []).append(_reflection(r))
        return found


class SqlMembers(_SqlPart):
    async def add(self, group_id: int, user: UserRef, at: datetime, intro: str = "") -> Member:
        values = {"group_id": group_id, "user_key": user.key, "name": user.name, "joined_at": at}
        result = await self.conn.execute(
            members.insert().values(**values, last_active_at=at, intro=intro).returning(*members.c)
        )
        return _member(result.one())

    async def add_many(self, group_id: int, users: Sequence[UserRef], at: datetime) -> list[Member]:
        if not users:
            return []  # no rows: SQLAlchemy would run INSERT ... DEFAULT VALUES
        values = [
            {"group_id": group_id, "user_key": u.key, "name": u.name, "joined_at": at, "last_active_at": at}
            for u in users
        ]
        # A plain executemany, read back after: with RETURNING in a given order, SQLite inserts row by row.
        await self.conn.execute(members.insert(), values)
        added: dict[str, Member] = {}
        keys = [u.key for u in users]
        for start in range(0, len(keys), 500):
            query = select(members).where(
                members.c.group_id == group_id, members.c.user_key.in_(keys[start : start + 500])
            )
            added.update((r.user_key, _member(r)) for r in await self.conn.execute(query))
        return [added[key] for key in keys]

    async def get(self, group_id: int, key: str) -> Member | None:
        query = select(members).where(members.c.group_id == group_id, members.c.user_key == key)
        row = (await self.conn.execute(query)).first()
        return _member(row) if row else None

    async def roster(self, group_id: int) -> list[Member]:
        rows = await self.conn.execute(
            select(members)
            .where(members.c.group_id == group_id, members.c.left_at.is_(None))
            .order_by(members.c.joined_at, members.c.id)
        )
        return [_member(r) for r in rows]

    async def rosters(self, group_ids: Sequence[int]) -> dict[int, list[RosterEntry]]:
        m = members.c
        last_seen = type_coerce(func.coalesce(m.last_active_at, m.joined_at), m.joined_at.type)
        found: dict[int, list[RosterEntry]] = {}
        wanted = list(group_ids)
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(m.id, m.group_id, m.user_key, m.name, last_seen, m.intro != "", m.private)
                .where(m.group_id.in_(wanted[start : start + IN_CHUNK]), m.left_at.is_(None))
                .order_by(m.group_id, m.joined_at, m.id)
            )
            for member_id, group_id, key, name, seen, introduced, private in rows:
                entry = RosterEntry(
                    member_id, group_id, key, name, utc(seen), bool(introduced), bool(private)
                )
                found.setdefault(group_id, []).append(entry)
        return found

    async def acts(self, group_ids: Sequence[int], since: datetime) -> dict[int, list[Act]]:
        ids = list(group_ids)
        by = func.coalesce(func.nullif(goals.c.put_forward_by_key, ""), goals.c.proposer_key)
        parts = [
            (
                ActKind.PROPOSAL,
                select(goals.c.group_id, by, goals.c.created_at).where(
                    goals.c.group_id.in_(ids), goals.c.created_at >= since
                ),
            ),
            (
                ActKind.CLOSING,
                select(signals.c.group_id, signals.c.detail, signals.c.at).where(
                    signals.c.group_id.in_(ids), signals.c.kind == CLOSING, signals.c.at >= since
                ),
            ),
            (
                ActKind.PHASE_MOVE,
                select(phase_changes.c.group_id, phase_changes.c.by_key, phase_changes.c.at).where(
                    phase_changes.c.group_id.in_(ids), phase_changes.c.at >= since
                ),
            ),
        ]
        found: dict[int, list[Act]] = {}
        for kind, query in parts:
            for group_id, key, at in await self.conn.execute(query):
                if key and key != BOT.key and not key.startswith(ANONYMOUS_PREFIX):
                    found.setdefault(group_id, []).append(Act(kind, key, utc(at)))
        for listed in found.values():
            listed.sort(key=lambda a: a.at)
        return found

    async def buddies(self, group_id: int, active_since: datetime) -> list[Member]:
        rows = await self.conn.execute(
            select(members)
            .where(
                members.c.group_id == group_id,
                members.c.left_at.is_(None),
                members.c.buddy.is_(True),
                members.c.last_active_at >= active_since,
            )
            .order_by(members.c.joined_at, members.c.id)
        )
        return [_member(r) for r in rows]

    async def of_user(self, user: UserRef) -> list[Member]:
        rows = await self.conn.execute(
            select(members)
            .where(members.c.user_key == user.key, members.c.left_at.is_(None))
            .order_by(members.c.joined_at, members.c.id)
        )
        return [_member(r) for r in rows]

    async def set_left(self, member_id: int, at: datetime | None) -> None:
        await self.conn.execute(update(members).where(members.c.id == member_id).values(left_at=at))

    async def record_activity(self, group_id: int, keys: Collection[str], at: datetime) -> set[str]:
        known: set[str] = set()
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            in_group = and_(members.c.group_id == group_id, members.c.user_key.in_(part))
            rows = await self.conn.execute(select(members.c.user_key).where(in_group))
            known.update(r.user_key for r in rows)
            await self.conn.execute(
                update(members).where(in_group, members.c.left_at.is_(None)).values(last_active_at=at)
            )
        return known

    async def save_settings(self, member: Member) -> None:
        await self.conn.execute(
            update(members)
            .where(members.c.id == member.id)
            .values(
                name=member.name,
                intro=member.intro,
                private=member.private,
                buddy=member.buddy,
                reminders=member.reminders,
            )
        )

    async def pair(self, newcomer_id: int, buddy: Member, at: datetime) -> None:
        await self.conn.execute(
            update(members).where(members.c.id == newcomer_id).values(buddy_key=buddy.key)
        )
        await self.conn.execute(update(members).where(members.c.id == buddy.id).values(paired_at=at))

    async def hold_welcomes(self, member_ids: Sequence[int], until: datetime) -> None:
        ids = list(member_ids)
        for start in range(0, len(ids), 500):
            held = update(members).where(members.c.id.in_(ids[start : start + 500]))
            await self.conn.execute(held.values(welcome_due_at=until))

    async def claim_welcomes(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Member]:
        due = and_(members.c.welcome_due_at.is_not(None), members.c.welcome_due_at <= now)
        on_platforms = select(groups.c.id).where(groups.c.platform.in_(list(platforms)))
        query = (
            select(members.c.id)
            .where(due, members.c.group_id.in_(on_platforms))
            .order_by(members.c.welcome_due_at, members.c.id)
            .limit(limit)
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = [r.id for r in await self.conn.execute(query)]
        if not ids:
            return []
        # The claim is the change: a member another process cleared meanwhile is not returned here.
        rows = await self.conn.execute(
            update(members)
            .where(members.c.id.in_(ids), due)
            .values(welcome_due_at=None)
            .returning(*members.c)
        )
        return sorted((_member(r) for r in rows), key=lambda m: (m.group_id, m.joined_at, m.id))

    async def contributions(self, group_id: int, since: datetime) -> dict[str, Contributions]:
        counts: dict[str, dict[str, int]] = {}
        queries = {
            "proposals": select(goals.c.proposer_key, func.count())
            .where(goals.c.group_id == group_id, goals.c.created_at >= since)
            .group_by(goals.c.proposer_key),
            "votes": select(poll_reactions.c.user_key, func.count(poll_reactions.c.poll_id.distinct()))
            .join(polls, polls.c.id == poll_reactions.c.poll_id)
            .where(polls.c.group_id == group_id, polls.c.created_at >= since, poll_reactions.c.present)
            .group_by(poll_reactions.c.user_key),
            "reflections": select(reflections.c.user_key, func.count())
            .where(reflections.c.group_id == group_id, reflections.c.at >= since)
            .group_by(reflections.c.user_key),
        }
        for what, query in queries.items():
            for key, n in (await self.conn.execute(query)).all():
                counts.setdefault(key, {})[what] = n
        return {key: Contributions(**done) for key, done in counts.items()}

    async def forget(self, user: UserRef) -> Forgotten:
        key = user.key
        stored_names: set[str] = set()
        for name_column, key_column in (
            (goals.c.proposer_name, goals.c.proposer_key),
            (goals.c.put_forward_by_name, goals.c.put_forward_by_key),
            (polls.c.author_name, polls.c.author_key),
            (poll_reactions.c.user_name, poll_reactions.c.user_key),
            (reflections.c.user_name, reflections.c.user_key),
            (phase_changes.c.by_name, phase_changes.c.by_key),
            (schedules.c.created_by, schedules.c.created_by_key),
            (reviews.c.started_by, reviews.c.started_by_key),
            (members.c.name, members.c.user_key),
            (concerns.c.author_name, concerns.c.author_key),
            (concerns.c.addressed_by_name, concerns.c.addressed_by_key),
            (wraps.c.wrapper_name, wraps.c.wrapper_key),
        ):
            rows = await self.conn.execute(select(name_column).where(key_column == key).distinct())
            stored_names.update(r[0] for r in rows)
        words = identifiers(user, stored_names)
        names = sorted({user.name, *stored_names} - {FORMER_MEMBER})

        # A reshaped goal's consent poll names who blocked the goal it reshapes (`goal amend`): scrubbed
        # before their votes lose their key.
        old_goal = goals.alias("old_goal")
        named_blocker = (
            select(goals.c.poll_id)
            .join(old_goal, old_goal.c.id == goals.c.reshapes_id)
            .join(poll_reactions, poll_reactions.c.poll_id == old_goal.c.poll_id)
            .where(goals.c.poll_id.is_not(None), poll_reactions.c.user_key == key)
        )
        reshaped = await self.conn.execute(
            select(polls.c.id, polls.c.question).where(polls.c.id.in_(named_blocker))
        )
        for row in reshaped.all():
            if (question := scrub(row.question, words)) != row.question:
                await self.conn.execute(update(polls).where(polls.c.id == row.id).values(question=question))

        gone = await self.conn.execute(delete(reflections).where(reflections.c.user_key == key))
        # Concerns voiced by name are their words (anonymous ones have no key to find); whom a poll asked.
        voiced = await self.conn.execute(delete(concerns).where(concerns.c.author_key == key))
        await self.conn.execute(delete(concern_asks).where(concern_asks.c.user_key == key))
        open_polls = select(polls.c.id).where(polls.c.closed_at.is_(None))
        open_votes = await self.conn.execute(
            delete(poll_reactions).where(
                poll_reactions.c.user_key == key, poll_reactions.c.poll_id.in_(open_polls)
            )
        )
        closed_votes = 0
        voted = await self.conn.execute(
            select(poll_reactions.c.poll_id).where(poll_reactions.c.user_key == key).distinct()
        )
        for (poll_id,) in voted.all():
            # One anonymous key per poll: the member still counts once among its voters.
            result = await self.conn.execute(
                update(poll_reactions)
                .where(poll_reactions.c.poll_id == poll_id, poll_reactions.c.user_key == key)
                .values(user_key=anonymous_key(), user_name=FORMER_MEMBER)
            )
            closed_votes += result.rowcount

        # The bot writes the proposer's name into a consent poll's question; the proposer is its author,
        # or (goals made from a reflection before revision 0007) the member who put the goal forward.
        of_their_goals = select(goals.c.poll_id).where(
            goals.c.poll_id.is_not(None), or_(goals.c.proposer_key == key, goals.c.put_forward_by_key == key)
        )
        authored = await self.conn.execute(
            select(polls.c.id, polls.c.question).where(
                or_(polls.c.author_key == key, polls.c.id.in_(of_their_goals))
            )
        )
        for row in authored.all():
            if (question := scrub(row.question, words)) != row.question:
                await self.conn.execute(update(polls).where(polls.c.id == row.id).values(question=question))
        # One anonymous key per item, also where the member stands in two of its columns (a goal they
        # proposed and put forward): the item counts once.
        renamed: dict[tuple[str, int], str] = {}
        on_platform = select(groups.c.id).where(groups.c.platform == user.platform)
        for table, id_column, name_column, key_column in (
            (goals, goals.c.id, goals.c.proposer_name, goals.c.proposer_key),
            (goals, goals.c.id, goals.c.put_forward_by_name, goals.c.put_forward_by_key),
            (polls, polls.c.id, polls.c.author_name, polls.c.author_key),
            (phase_changes, phase_changes.c.id, phase_changes.c.by_name, phase_changes.c.by_key),
            (schedules, schedules.c.id, schedules.c.created_by, schedules.c.created_by_key),
            (reviews, reviews.c.id, reviews.c.started_by, reviews.c.started_by_key),
            (concerns, concerns.c.id, concerns.c.addressed_by_name, concerns.c.addressed_by_key),
        ):
            by_name = and_(key_column == "", name_column.in_(names), table.c.group_id.in_(on_platform))
            theirs = or_(key_column == key, by_name)
            for (row_id,) in (await self.conn.execute(select(id_column).where(theirs))).all():
                await self.conn.execute(
                    update(table)
                    .where(id_column == row_id)
                    .values(
                        {
                            name_column.name: FORMER_MEMBER,
                            key_column.name: renamed.setdefault((table.name, row_id), anonymous_key()),
                        }
                    )
                )

        # Off every roster, and out of every buddy pair: nobody's buddy is them any more.
        roster = await self.conn.execute(delete(members).where(members.c.user_key == key))
        paired = await self.conn.execute(
            update(members).where(members.c.buddy_key == key).values(buddy_key="")
        )
        # Out of every role's rotation, and no role held by them; their wraps stay, by a former member.
        pooled = await self.conn.execute(delete(role_pool).where(role_pool.c.user_key == key))
        held = await self.conn.execute(
            update(roles)
            .where(roles.c.holder_key == key)
            .values(holder_key="", holder_name="", held_since=None)
        )
        for (wrap_id,) in (
            await self.conn.execute(select(wraps.c.id).where(wraps.c.wrapper_key == key))
        ).all():
            await self.conn.execute(
                update(wraps)
                .where(wraps.c.id == wrap_id)
                .values(wrapper_key=anonymous_key(), wrapper_name=FORMER_MEMBER)
            )
        # Out of the radar's record: what it told of them, and what they closed.
        await self.conn.execute(delete(radar_findings).where(radar_findings.c.subject_key == key))
        await self.conn.execute(delete(signals).where(signals.c.kind == CLOSING, signals.c.detail == key))
        records = 0
        candidates = await self.conn.execute(
            select(adapter_state).where(
                adapter_state.c.key.startswith(f"{user.platform}.", autoescape=True),
                adapter_state.c.value.contains(state_value_needle(user), autoescape=True),
            )
        )
        for row in candidates.all():
            if names_user(row.key, row.value, user):
                await self.conn.execute(delete(adapter_state).where(adapter_state.c.key == row.key))
                records += 1
        addressed = await self.conn.execute(
            delete(outbox).where(outbox.c.platform == user.platform, outbox.c.user_id == user.id)
        )
        records += addressed.rowcount
        texts = (outbox.c.text, outbox.c.reason, outbox.c.channel_line)
        naming = [c.contains(w, autoescape=True) for w in words for c in texts]
        queued = select(outbox).where(outbox.c.platform == user.platform, or_(*naming))
        for row in (await self.conn.execute(queued)).all():
            text, reason = scrub(row.text, words), scrub(row.reason, words)
            line = scrub(row.channel_line, words) if row.channel_line is not None else None
            if (text, reason, line) != (row.text, row.reason, row.channel_line):
                await self.conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(text=text, reason=reason, channel_line=line)
                )
                records += 1
        naming = [failed_events.c.reason.contains(w, autoescape=True) for w in words]
        failed = select(failed_events).where(failed_events.c.platform == user.platform, or_(*naming))
        for row in (await self.conn.execute(failed)).all():
            reason = scrub(row.reason, words)
            if reason != row.reason:
                await self.conn.execute(
                    update(failed_events)
                    .where(failed_events.c.platform == row.platform, failed_events.c.event_id == row.event_id)
                    .values(reason=reason)
                )
                records += 1
        return Forgotten(
            gone.rowcount,
            open_votes.rowcount,
            closed_votes,
            len(renamed),
            records,
            roster.rowcount,
            paired.rowcount,
            voiced.rowcount,
            pooled.rowcount + held.rowcount,
        )


def _meeting(row: Any) -> Meeting:
    return Meeting(
        row.id,
        row.group_id,
        row.title,
        row.cron,
        row.description,
        utc(row.at) if row.at is not None else None,
        row.created_by,
        utc(row.created_at),
        utc(row.cancelled_at) if row.cancelled_at is not None else None,
        tuple(d for d in row.skips.split(",") if d),
        row.created_by_key,
    )


def _occurrence(row: Any) -> Occurrence:
    message = None
    if row.message_id is not None:
        message = MessageRef(ChannelRef(row.platform, row.channel_id), row.message_id)
    return Occurrence(
        row.id,
        row.meeting_id,
        row.group_id,
        utc(row.starts_at),
        utc(row.announce_at),
        utc(row.remind_at) if row.remind_at is not None else None,
        utc(row.next_due_at) if row.next_due_at is not None else None,
        bool(row.announced),
        bool(row.reminded),
        bool(row.skipped),
        message,
    )


class SqlMeetings(_SqlPart):
    async def create(self, group_id: int, title: str, when: When, by: UserRef, at: datetime) -> Meeting:
        result = await self.conn.execute(
            meetings.insert().values(
                group_id=group_id,
                title=title,
                cron=when.cron,
                description=when.description,
                at=when.at,
                created_by=by.name,
                created_by_key=by.key,
                created_at=at,
            )
        )
        (meeting_id,) = result.inserted_primary_key or (None,)
        assert meeting_id is not None
        return Meeting(
            meeting_id,
            group_id,
            title,
            when.cron,
            when.description,
            when.at,
            by.name,
            at,
            created_by_key=by.key,
        )

    async def get(self, group_id: int, meeting_id: int) -> Meeting | None:
        query = select(meetings).where(meetings.c.id == meeting_id, meetings.c.group_id == group_id)
        row = (await self.conn.execute(query)).first()
        return _meeting(row) if row else None

    async def in_group(self, group_id: int) -> list[Meeting]:
        rows = await self.conn.execute(
            select(meetings).where(meetings.c.group_id == group_id).order_by(meetings.c.id)
        )
        return [_meeting(r) for r in rows]

    async def cancel(self, meeting_id: int, at: datetime) -> bool:
        result = await self.conn.execute(
            update(meetings)
            .where(meetings.c.id == meeting_id, meetings.c.cancelled_at.is_(None))
            .values(cancelled_at=at)
        )
        if not result.rowcount:
            return False
        await self.delete_ahead(meeting_id, at)
        return True

    async def set_when(self, meeting_id: int, when: When) -> None:
        await self.conn.execute(
            update(meetings)
            .where(meetings.c.id == meeting_id)
            .values(cron=when.cron, description=when.description, at=when.at)
        )

    async def set_skips(self, meeting_id: int, days: Sequence[str]) -> None:
        await self.conn.execute(
            update(meetings).where(meetings.c.id == meeting_id).values(skips=",".join(days))
        )

    async def add_occurrence(self, occurrence: Occurrence) -> Occurrence:
        o = occurrence
        result = await self.conn.execute(
            meeting_occurrences.insert().values(
                meeting_id=o.meeting_id,
                group_id=o.group_id,
                starts_at=o.starts_at,
                announce_at=o.announce_at,
                remind_at=o.remind_at,
                next_due_at=o.next_due_at,
                announced=o.announced,
                reminded=o.reminded,
                skipped=o.skipped,
            )
        )
        (occurrence_id,) = result.inserted_primary_key or (None,)
        assert occurrence_id is not None
        return Occurrence(
            occurrence_id,
            o.meeting_id,
            o.group_id,
            o.starts_at,
            o.announce_at,
            o.remind_at,
            o.next_due_at,
            o.announced,
            o.reminded,
            o.skipped,
        )

    async def occurrence(self, occurrence_id: int) -> Occurrence | None:
        query = select(meeting_occurrences).where(meeting_occurrences.c.id == occurrence_id)
        row = (await self.conn.execute(query)).first()
        return _occurrence(row) if row else None

    async def occurrences(self, meeting_ids: Collection[int]) -> list[Occurrence]:
        wanted = sorted(set(meeting_ids))
        found: list[Occurrence] = []
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(meeting_occurrences).where(
                    meeting_occurrences.c.meeting_id.in_(wanted[start : start + IN_CHUNK])
                )
            )
            found += [_occurrence(r) for r in rows]
        return sorted(found, key=lambda o: (o.starts_at, o.id))

    async def delete_ahead(self, meeting_id: int, now: datetime) -> None:
        o = meeting_occurrences.c
        ahead = select(o.id).where(o.meeting_id == meeting_id, o.starts_at > now)
        await self.conn.execute(delete(meeting_rsvps).where(meeting_rsvps.c.occurrence_id.in_(ahead)))
        await self.conn.execute(
            delete(meeting_occurrences).where(o.meeting_id == meeting_id, o.starts_at > now)
        )

    async def due(self, now: datetime, limit: int, platforms: Collection[str]) -> list[Occurrence]:
        o = meeting_occurrences.c
        query = (
            select(meeting_occurrences)
            .join(meetings, meetings.c.id == o.meeting_id)
            .join(groups, groups.c.id == o.group_id)
            .where(
                o.next_due_at <= now,
                meetings.c.cancelled_at.is_(None),
                groups.c.platform.in_(list(platforms)),
            )
            .order_by(o.next_due_at, o.id)
            .limit(limit)
        )
        return [_occurrence(r) for r in await self.conn.execute(query)]

    async def move(self, occurrence: Occurrence, seen: datetime | None) -> bool:
        o = meeting_occurrences.c
        still = o.next_due_at.is_(None) if seen is None else o.next_due_at == seen
        result = await self.conn.execute(
            update(meeting_occurrences)
            .where(o.id == occurrence.id, still)
            .values(
                announce_at=occurrence.announce_at,
                remind_at=occurrence.remind_at,
                next_due_at=occurrence.next_due_at,
                announced=occurrence.announced,
                reminded=occurrence.reminded,
                skipped=occurrence.skipped,
            )
        )
        return bool(result.rowcount)

    async def set_message(self, occurrence_id: int, message: MessageRef) -> None:
        await self.conn.execute(
            update(meeting_occurrences)
            .where(meeting_occurrences.c.id == occurrence_id)
            .values(platform=message.channel.platform, channel_id=message.channel.id, message_id=message.id)
        )

    async def for_messages(self, platform: str, message_ids: Sequence[str]) -> list[Occurrence]:
        if not message_ids:
            return []
        o = meeting_occurrences.c
        rows = await self.conn.execute(
            select(meeting_occurrences).where(o.platform == platform, o.message_id.in_(list(message_ids)))
        )
        return [_occurrence(r) for r in rows]

    async def ahead_with_messages(self, platform: str, now: datetime) -> list[Occurrence]:
        o = meeting_occurrences.c
        rows = await self.conn.execute(
            select(meeting_occurrences).where(
                o.platform == platform, o.message_id.is_not(None), o.starts_at > now
            )
        )
        return [_occurrence(r) for r in rows]

    async def set_rsvps(self, changes: Sequence[tuple[int, UserRef, str | None]], at: datetime) -> None:
        r = meeting_rsvps.c
        for occurrence_id, user, choice in changes:
            if choice is None:
                await self.conn.execute(
                    delete(meeting_rsvps).where(r.occurrence_id == occurrence_id, r.user_key == user.key)
                )
                continue
            values = {
                "occurrence_id": occurrence_id,
                "user_key": user.key,
                "user_name": user.name,
                "choice": choice,
                "at": at,
            }
            await self.conn.execute(upsert(self.conn, meeting_rsvps, ["occurrence_id", "user_key"], values))

    async def rsvps(self, occurrence_ids: Collection[int]) -> list[Rsvp]:
        wanted = sorted(set(occurrence_ids))
        found: list[Rsvp] = []
        for start in range(0, len(wanted), IN_CHUNK):
            rows = await self.conn.execute(
                select(meeting_rsvps)
                .where(meeting_rsvps.c.occurrence_id.in_(wanted[start : start + IN_CHUNK]))
                .order_by(meeting_rsvps.c.occurrence_id, meeting_rsvps.c.user_key)
            )
            found += [Rsvp(x.occurrence_id, x.user_key, x.user_name, x.choice) for x in rows]
        return found

    async def forget(self, user: UserRef) -> int:
        r = meeting_rsvps.c
        changed = 0
        held = await self.conn.execute(select(r.occurrence_id).where(r.user_key == user.key))
        for (occurrence_id,) in list(held):
            await self.conn.execute(
                update(meeting_rsvps)
                .where(r.occurrence_id == occurrence_id, r.user_key == user.key)
                .values(user_key=anonymous_key(), user_name=FORMER_MEMBER)
            )
            changed += 1
        added = await self.conn.execute(select(meetings.c.id).where(meetings.c.created_by_key == user.key))
        for (meeting_id,) in list(added):
            await self.conn.execute(
                update(meetings)
                .where(meetings.c.id == meeting_id)
                .values(created_by=FORMER_MEMBER, created_by_key=anonymous_key())
            )
            changed += 1
        return changed


class SqlTx:
    """One transaction: a repository per aggregate, all on one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.events = SqlEvents(conn)
        self.groups = SqlGroups(conn)
        self.polls = SqlPolls(conn)
        self.goals = SqlGoals(conn)
        self.concerns = SqlConcerns(conn)
        self.schedules = SqlSchedules(conn)
        self.reviews = SqlReviews(conn)
        self.members = SqlMembers(conn)
        self.roles = SqlRoles(conn)
        self.outbox = SqlOutbox(conn)
        self.meetings = SqlMeetings(conn)

    def state(self, namespace: str) -> SqlState:
        return SqlState(self.conn, namespace)

    async def next_due_time(
        self, platforms: Collection[str], heartbeat_after: timedelta | None = None
    ) -> datetime | None:
        served = list(platforms)
        on_platforms = select(groups.c.id).where(groups.c.platform.in_(served))
        candidates = [
            select(func.min(schedules.c.next_due_at)).where(
                schedules.c.paused.is_(False), schedules.c.group_id.in_(on_platforms)
            ),
            select(func.min(polls.c.closes_at)).where(
                polls.c.closed_at.is_(None), polls.c.platform.in_(served)
            ),
            select(func.min(reviews.c.closes_at)).where(
                reviews.c.closed_at.is_(None), reviews.c.group_id.in_(on_platforms)
            ),
            select(func.min(polls.c.remind_at)).where(
                polls.c.closed_at.is_(None), polls.c.platform.in_(served)
            ),
            select(func.min(reviews.c.remind_at)).where(
                reviews.c.closed_at.is_(None), reviews.c.group_id.in_(on_platforms)
            ),
            select(func.min(outbox.c.next_attempt_at)).where(
                outbox.c.state.in_([PostState.PENDING.value, PostState.POSTED.value]),
                outbox.c.platform.in_(served),
            ),
            select(func.min(members.c.welcome_due_at)).where(members.c.group_id.in_(on_platforms)),
            select(func.min(meeting_occurrences.c.next_due_at)).where(
                meeting_occurrences.c.group_id.in_(on_platforms),
                meeting_occurrences.c.meeting_id.in_(
                    select(meetings.c.id).where(meetings.c.cancelled_at.is_(None))
                ),
            ),
            select(func.min(groups.c.radar_next_at)).where(
                groups.c.platform.in_(served), groups.c.auto_radar.is_(True)
            ),
            select(func.min(roles.c.next_week_at)).where(roles.c.group_id.in_(on_platforms)),
            select(func.min(wraps.c.fallback_at)).where(
                wraps.c.state == WrapState.DRAFTED.value, wraps.c.group_id.in_(on_platforms)
            ),
        ]
        found = [(await self.conn.execute(q)).scalar() for q in candidates]
        times = [utc(t) for t in found if t is not None]
        if heartbeat_after is not None:
            silent = select(func.min(groups.c.last_activity_at)).where(
                groups.c.platform.in_(served), _SILENCE_UNANSWERED
            )
            if (since := (await self.conn.execute(silent)).scalar()) is not None:
                times.append(utc(since) + heartbeat_after)
        return min(times) if times else None


def _is_read_only_refusal(error: DBAPIError) -> bool:
    """The database refused a write because the transaction is read-only."""
    if getattr(error.orig, "sqlstate", None) == "25006":  # PostgreSQL: read_only_sql_transaction
        return True
    return "attempt to write a readonly database" in str(error.orig)  # SQLite with query_only


class SqlStore:
    """The store port. Transactions on SQLite are serialised in-process: SQLite has one writer.
    Read transactions (`read`) are not: WAL gives each its snapshot while the writer goes on."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self._write_lock: AbstractAsyncContextManager[Any] = asyncio.Lock() if sqlite else nullcontext()
        # An in-memory SQLite database is one connection: a read must not run beside a write on it.
        in_memory = sqlite and engine.url.database in (None, "", ":memory:")
        self._read_lock = self._write_lock if in_memory else nullcontext()
        self._held: list[ProcessLock] = []

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(make_engine(url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        async with self._write_lock, self.engine.begin() as conn:
            yield SqlTx(conn)

    async def hold(self, name: str) -> None:
        """Hold the lock `name` on the database until this store closes, so that no other process
        holds it meanwhile (adapters/sql/process_lock.py); LockTaken if another does."""
        lock = ProcessLock(self.engine, name)
        await lock.acquire()
        self.keep(lock)

    def keep(self, lock: ProcessLock) -> None:
        """Release a lock already taken when this store closes."""
        self._held.append(lock)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SqlTx]:
        async with self._read_lock, self.engine.connect() as conn:
            try:
                if conn.dialect.name == "sqlite":
                    async with self._sqlite_snapshot(conn):
                        yield SqlTx(conn)
                else:
                    await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                    await conn.begin()
                    yield SqlTx(conn)
            except DBAPIError as error:
                if _is_read_only_refusal(error):
                    raise ReadOnly(f"a write in a read transaction: {error.orig}") from error
                raise

    @staticmethod
    @asynccontextmanager
    async def _sqlite_snapshot(conn: AsyncConnection) -> AsyncIterator[None]:
        """BEGIN by hand: the sqlite3 module begins a transaction only before a write, so without it
        every SELECT would see the database as it is at that moment. `query_only` makes a write fail
        at once instead of taking SQLite's write lock behind the store's back; it belongs to the
        connection, so it is switched off again before the connection goes back to the pool."""
        await conn.exec_driver_sql("PRAGMA query_only = ON")
        try:
            await conn.exec_driver_sql("BEGIN")
            yield
        finally:
            try:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA query_only = OFF")
                await conn.commit()
            except BaseException:
                await conn.invalidate()  # never hand a read-only connection to a writer
                raise

    async def close(self) -> None:
        while self._held:
            await self._held.pop().release()
        await self.engine.dispose()
