"""The SQL store and its migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text

from adapters.sql import migrate
from adapters.sql.schema import metadata, outbox
from adapters.sql.store import SqlStore, make_engine
from core.lifecycle import Phase, PhaseChange
from core.outbox import Post, PostKind, Thread
from core.refs import ChannelRef
from tests.support import Harness

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_upgrade_from_empty_creates_exactly_the_schema_of_the_code(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.code_head()

        def diff(conn):  # type: ignore[no-untyped-def]
            return compare_metadata(MigrationContext.configure(conn), metadata)

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_to_base_removes_every_table(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "base")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await migrate.upgrade(engine)  # and back up again
        assert await migrate.current_revision(engine) == migrate.code_head()
    finally:
        await engine.dispose()


async def test_a_schema_newer_than_the_code_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(migrate.SchemaTooNew, match=r"9999_future.*upgrade Peerbot"):
            await migrate.upgrade(engine)
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version == "9999_future"
    finally:
        await engine.dispose()


async def test_goals_kept_before_0007_were_put_forward_by_their_proposer(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine, "0006")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO groups (id, platform, channel_id, phase, phase_since, created_at)"
                    " VALUES (1, 'fake', 'general', 'organizing', :at, :at)"
                ),
                {"at": T0},
            )
            await conn.execute(
                text(
                    "INSERT INTO goals (group_id, text, status, proposer_key, proposer_name, created_at,"
                    " updated_at) VALUES (1, 'Learn Rust', 'accepted', 'fake:bob', 'Bob', :at, :at)"
                ),
                {"at": T0},
            )
        await migrate.upgrade(engine)
        async with SqlStore(engine).transaction() as tx:
            (goal,) = await tx.goals.in_group(1)
        assert (goal.put_forward_by_key, goal.put_forward_by_name) == ("fake:bob", "Bob")
        assert not goal.put_forward_by_another
        await migrate.downgrade(engine, "0006")
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("goals")])
        assert "put_forward_by_key" not in columns and "proposer_key" in columns
    finally:
        await engine.dispose()


async def test_members_who_took_part_before_0008_are_on_the_roster_and_not_welcomed(db_url: str) -> None:
    engine = make_engine(db_url)
    later = T0 + timedelta(days=2)
    rows = [
        "INSERT INTO groups (id, platform, channel_id, phase, phase_since, created_at)"
        " VALUES (1, 'fake', 'general', 'organizing', :t0, :t0)",
        "INSERT INTO goals (group_id, text, status, proposer_key, proposer_name, created_at, updated_at)"
        " VALUES (1, 'Learn Rust', 'accepted', 'fake:bob', 'Bob', :t0, :t0)",
        "INSERT INTO polls (id, group_id, kind, question, options, multiple, hidden, author_key, author_name,"
        " created_at, closes_at, platform, channel_id) VALUES (1, 1, 'poll', 'Tea?', '[]', false, false,"
        " 'fake:alice', 'Alice', :t1, :t1, 'fake', 'general')",
        "INSERT INTO poll_reactions (poll_id, user_key, option, user_name, present, seq)"
        " VALUES (1, 'fake:carol', 0, 'Carol', true, 1), (1, 'former:0a1b', 0, 'a former member', true, 2)",
        "INSERT INTO reflections (group_id, user_key, user_name, text, at)"
        " VALUES (1, 'fake:bob', 'Bob', 'Pairing helps', :later)",
        # What the bot did itself, and a name from before keys were kept: nobody to put on the roster.
        "INSERT INTO phase_changes (group_id, from_phase, to_phase, at, by_name, by_key)"
        " VALUES (1, NULL, 'convening', :t0, 'peerbot', '')",
        "INSERT INTO schedules (group_id, kind, cron, description, created_by, created_at, created_by_key)"
        " VALUES (1, 'checkin', '0 18 * * MON', 'weekly mon 18:00', 'peerbot', :t0, 'peerbot:peerbot')",
    ]
    try:
        await migrate.upgrade(engine, "0007")
        async with engine.begin() as conn:
            for row in rows:
                await conn.execute(text(row), {"t0": T0, "t1": T0 + timedelta(hours=1), "later": later})
        await migrate.upgrade(engine)
        store = SqlStore(engine)
        async with store.transaction() as tx:
            seeded = sorted(
                (m.key, m.name, m.joined_at, m.last_active_at) for m in await tx.members.roster(1)
            )
        assert seeded == [
            ("fake:alice", "Alice", T0 + timedelta(hours=1), T0 + timedelta(hours=1)),
            ("fake:bob", "Bob", T0, later),
            ("fake:carol", "Carol", T0 + timedelta(hours=1), T0 + timedelta(hours=1)),
        ]
        h = Harness(store=store)
        h.clock.current = later
        await h.member("bob", "bob").says("/status")
        assert h.chat.sent == []  # no welcome for Bob: he was there before
        await migrate.downgrade(engine, "0007")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "members" not in tables
    finally:
        await engine.dispose()


async def test_consent_polls_and_reviews_open_at_0009_are_reminded_in_their_last_quarter(db_url: str) -> None:
    engine = make_engine(db_url)
    closes = T0 + timedelta(hours=48)
    poll = (
        "INSERT INTO polls (id, group_id, kind, question, options, multiple, hidden, author_key, author_name,"
        " created_at, closes_at, closed_at, platform, channel_id) VALUES (:id, 1, :kind, 'Q?', '[]', false,"
        " false, 'fake:alice', 'Alice', :t0, :closes, :closed, 'fake', 'general')"
    )
    try:
        await migrate.upgrade(engine, "0008")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO groups (id, platform, channel_id, phase, phase_since, created_at)"
                    " VALUES (1, 'fake', 'general', 'organizing', :t0, :t0)"
                ),
                {"t0": T0},
            )
            for poll_id, kind, closed in ((1, "consent", None), (2, "poll", None), (3, "consent", T0)):
                await conn.execute(
                    text(poll), {"id": poll_id, "kind": kind, "t0": T0, "closes": closes, "closed": closed}
                )
            await conn.execute(
                text(
                    "INSERT INTO reviews (id, group_id, started_by, started_at, closes_at)"
                    " VALUES (1, 1, 'Alice', :t0, :closes)"
                ),
                {"t0": T0, "closes": closes},
            )
            await conn.execute(
                text(
                    "INSERT INTO goals (group_id, text, status, proposer_key, proposer_name, created_at,"
                    " updated_at, poll_id) VALUES (1, 'Rust', 'proposed', 'fake:bob', 'Bob', :t0, :t0, 1)"
                ),
                {"t0": T0},
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            polls = (await conn.execute(text("SELECT id, remind_at FROM polls ORDER BY id"))).all()
            reviews = (await conn.execute(text("SELECT remind_at FROM reviews"))).scalars().all()
            goals = (await conn.execute(text("SELECT count(*) FROM goals"))).scalar()
        as_utc = [(i, None if at is None else _utc(at)) for i, at in polls]
        assert as_utc == [(1, T0 + timedelta(hours=36)), (2, None), (3, None)]
        assert [_utc(at) for at in reviews] == [T0 + timedelta(hours=36)]
        assert goals == 1  # rebuilding the groups table on SQLite deletes none of what refers to it
        async with SqlStore(engine).transaction() as tx:
            group = await tx.groups.by_id(1)
        assert group is not None and group.auto_radar and group.remind_window is None
        await migrate.downgrade(engine, "0008")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "radar_findings" not in tables
    finally:
        await engine.dispose()


def _utc(value: datetime | str) -> datetime:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def test_the_core_s_prompt_rotation_moves_into_its_namespace_and_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine, "0005")
        async with engine.begin() as conn:
            for key, value in (("prompts:1:cooperating", "3,1"), ("matrix.next_batch", "s9")):
                await conn.execute(text("INSERT INTO adapter_state VALUES (:k, :v)"), {"k": key, "v": value})
        await migrate.upgrade(engine)
        async with SqlStore(engine).transaction() as tx:
            assert await tx.state("core").get("prompts:1:cooperating") == "3,1"
            assert await tx.state("matrix").get("next_batch") == "s9"
        await migrate.downgrade(engine, "0005")
        async with engine.connect() as conn:
            keys = (await conn.execute(text("SELECT key FROM adapter_state ORDER BY key"))).scalars().all()
        assert keys == ["matrix.next_batch", "prompts:1:cooperating"]
    finally:
        await engine.dispose()


@pytest.fixture
async def store(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    s = SqlStore(engine)
    yield s
    await s.close()


async def test_events_are_claimed_once(store: SqlStore) -> None:
    async with store.transaction() as tx:
        assert await tx.events.claim("discord", "42", T0)
        assert not await tx.events.claim("discord", "42", T0)
        assert await tx.events.claim("matrix", "42", T0)
    async with store.transaction() as tx:
        assert not await tx.events.claim("discord", "42", T0)


async def test_a_failed_transaction_changes_nothing(store: SqlStore) -> None:
    channel = ChannelRef("console", "general", "#general")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.groups.create(channel, Phase.CONVENING, T0)
            await tx.events.claim("console", "e1", T0)
            raise RuntimeError("boom")
    async with store.transaction() as tx:
        assert await tx.groups.get(channel) is None
        assert await tx.events.claim("console", "e1", T0)


async def test_groups_phase_changes_and_history(store: SqlStore) -> None:
    channel = ChannelRef("matrix", "!room:example.org", "Study room")
    async with store.transaction() as tx:
        group = await tx.groups.create(channel, Phase.CONVENING, T0)
    for i, phase in enumerate([Phase.ORGANIZING, Phase.COOPERATING], start=1):
        async with store.transaction() as tx:
            current = await tx.groups.by_id(group.id)
            assert current is not None
            await tx.groups.record_phase_change(
                PhaseChange(
                    group.id,
                    current.phase,
                    phase,
                    T0 + timedelta(days=i),
                    "alice",
                    "ok",
                    "matrix:@alice:example.org",
                )
            )
    async with store.transaction() as tx:
        loaded = await tx.groups.get(channel)
        history = await tx.groups.phase_history(group.id, 10)
        last = await tx.groups.phase_history(group.id, 1)
    assert loaded is not None
    assert loaded.phase is Phase.COOPERATING
    assert loaded.phase_since == T0 + timedelta(days=2)
    assert loaded.channel.display == "Study room"
    assert [c.to_phase for c in history] == [Phase.ORGANIZING, Phase.COOPERATING]
    assert history[0].at == T0 + timedelta(days=1) and history[0].by_key.endswith("example.org")
    assert [c.to_phase for c in last] == [Phase.COOPERATING]


async def test_adapter_state_is_kept_and_overwritten(store: SqlStore) -> None:
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("next_batch") is None
        await tx.state("matrix").set("next_batch", "s1")
        await tx.state("matrix").set("next_batch", "s2")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("next_batch") == "s2"
        await tx.state("matrix").delete("next_batch")
        await tx.state("matrix").delete("never.there")
    async with store.transaction() as tx:
        assert await tx.state("matrix").get("next_batch") is None


async def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar()
        assert (mode, sync) == ("wal", 2)  # 2 is FULL: a committed vote survives a crash
    finally:
        await engine.dispose()


async def test_outbox_rows_keep_their_times_as_sqlalchemy_writes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite's outbox rows go to the driver as tuples, their times converted apart: stored exactly as
    SQLAlchemy stores a time, or comparing them with a due time (text, on SQLite) would go wrong."""
    store = SqlStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'times.db'}"))
    await migrate.upgrade(store.engine)
    channel = ChannelRef("fake", "general", "#general")
    later = T0 + timedelta(hours=1, microseconds=5)
    try:
        async with store.transaction() as tx:
            held = Post(PostKind.SEND, channel, "held", not_before=later, thread=Thread("review", 3))
            await tx.outbox.add([held], T0)
            reference = {
                "platform": "fake",
                "channel_id": "general",
                "kind": "send",
                "text": "by SQLAlchemy",
                "state": "pending",
                "created_at": T0,
                "not_before": later,
                "next_attempt_at": later,
            }
            await tx.conn.execute(insert(outbox).values(**reference))
            raw = await tx.conn.exec_driver_sql(
                "SELECT created_at, not_before, next_attempt_at FROM outbox ORDER BY id"
            )
            ours, theirs = raw.all()
            assert tuple(ours) == tuple(theirs)
            due = select(outbox.c.text).where(outbox.c.next_attempt_at <= later).order_by(outbox.c.id)
            assert list((await tx.conn.execute(due)).scalars()) == ["held", "by SQLAlchemy"]
            (row, _) = await tx.outbox.rows()
            assert (row.created_at, row.not_before) == (T0, later)
            assert (row.post.thread, _.post.thread) == (Thread("review", 3), None)
    finally:
        await store.close()


async def test_outbox_row_ids_are_never_given_twice(db_url: str) -> None:
    """A row's id is its idempotency key (a Discord nonce, a Matrix transaction id): the next row does not
    get the id of one sent and deleted, after every migration (SQLite's AUTOINCREMENT kept)."""
    store = SqlStore(make_engine(db_url))
    await migrate.upgrade(store.engine)
    channel = ChannelRef("fake", "general", "#general")
    try:
        async with store.transaction() as tx:
            (first,) = await tx.outbox.add([Post(PostKind.SEND, channel, "sent")], T0)
            await tx.outbox.sent([first])
        async with store.transaction() as tx:
            (second,) = await tx.outbox.add([Post(PostKind.SEND, channel, "next")], T0)
        assert second > first
    finally:
        await store.close()
