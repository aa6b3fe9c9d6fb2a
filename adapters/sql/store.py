"""The store port on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Table, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from adapters.sql.schema import adapter_state, groups, phase_changes, processed_events
from core.clock import utc
from core.lifecycle import Group, Phase, PhaseChange
from core.refs import ChannelRef


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


def _group(row: Any) -> Group:
    return Group(
        id=row.id,
        channel=ChannelRef(row.platform, row.channel_id, row.channel_name),
        phase=Phase(row.phase),
        phase_since=utc(row.phase_since),
        created_at=utc(row.created_at),
    )


class SqlTx:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim_event(self, platform: str, event_id: str, at: datetime) -> bool:
        stmt = insert_ignore(self.conn, processed_events).values(platform=platform, event_id=event_id, at=at)
        result = await self.conn.execute(stmt)
        return bool(result.rowcount)

    async def get_group(self, channel: ChannelRef) -> Group | None:
        row = (
            await self.conn.execute(
                select(groups).where(groups.c.platform == channel.platform, groups.c.channel_id == channel.id)
            )
        ).first()
        return _group(row) if row else None

    async def get_group_by_id(self, group_id: int) -> Group | None:
        row = (await self.conn.execute(select(groups).where(groups.c.id == group_id))).first()
        return _group(row) if row else None

    async def create_group(self, channel: ChannelRef, phase: Phase, at: datetime) -> Group:
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

    async def phase_history(self, group_id: int, limit: int) -> list[PhaseChange]:
        rows = (
            await self.conn.execute(
                select(phase_changes)
                .where(phase_changes.c.group_id == group_id)
                .order_by(phase_changes.c.id.desc())
                .limit(limit)
            )
        ).all()
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

    async def get_state(self, key: str) -> str | None:
        row = (
            await self.conn.execute(select(adapter_state.c.value).where(adapter_state.c.key == key))
        ).first()
        return row.value if row else None

    async def set_state(self, key: str, value: str) -> None:
        await self.conn.execute(upsert(self.conn, adapter_state, ["key"], {"key": key, "value": value}))


class SqlStore:
    """The store port. Transactions on SQLite are serialised in-process: SQLite has one writer."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_lock: AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(make_engine(url))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        async with self._write_lock, self.engine.begin() as conn:
            yield SqlTx(conn)

    async def close(self) -> None:
        await self.engine.dispose()
