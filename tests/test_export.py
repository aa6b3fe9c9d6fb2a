"""/export answers with a file: read in a read transaction, checked against the platform's limit,
sent at once (not through the outbox) where the adapter does not answer commands itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.dead_letters import SORRY
from core.events import CommandInvoked
from core.export import say_size
from core.ports import DeliveryFailed
from core.refs import ChannelRef
from tests.support import FakeChat, Harness


async def record_with_things(h: Harness) -> None:
    await h.member("alice").says("/goal propose Learn Rust")
    await h.member("bob").says("/poll create Day? | Monday | Friday")
    await h.member("carol").says("/reflect Pairing works")


async def outbox_rows(h: Harness) -> list:
    async with h.store.transaction() as tx:
        return await tx.outbox.rows()


async def test_export_answers_with_the_whole_file_and_a_one_line_summary(harness: Harness) -> None:
    await record_with_things(harness)
    reply = await harness.member("bob").says("/export json")
    assert reply is not None and not reply.is_error and reply.file is not None
    file = reply.file
    assert file.filename == "peerbot-general-2026-03-02-0900.json"
    assert file.mimetype == "application/json"
    data = json.loads(file.data.decode("utf-8"))
    assert [g["text"] for g in data["goals"]] == ["Learn Rust"]
    assert [p["question"] for p in data["polls"]][1:] == ["Day?"]  # after the goal's consent poll
    assert reply.text == (
        "📦 #general: the group's record as JSON, 1 goal, 2 polls, 0 reviews, 1 reflection"
        f" ({say_size(file.size)})."
    )
    assert "\n" not in reply.text


async def test_a_reshaped_goal_is_exported_with_its_link_and_the_old_one_superseded(harness: Harness) -> None:
    await harness.member("alice").says("/goal propose Read the whole book")
    await harness.member("carol").says("/goal amend 1 Read three chapters")
    as_json = await harness.member("bob").says("/export json")
    assert as_json is not None and as_json.file is not None
    goals = json.loads(as_json.file.data.decode("utf-8"))["goals"]
    assert [(g["id"], g["status"], g["reshapes"]) for g in goals] == [
        (1, "superseded", None),
        (2, "proposed", 1),
    ]
    as_md = await harness.member("bob").says("/export md")
    assert as_md is not None and as_md.file is not None
    lines = as_md.file.data.decode("utf-8").splitlines()
    assert "- Goal 1 (superseded): Read the whole book — alice" in lines
    assert "- Goal 2 (proposed): Read three chapters — carol, reshapes goal 1" in lines


async def test_the_file_is_named_in_the_groups_timezone_and_typed_by_format(harness: Harness) -> None:
    await harness.member("alice").says("/timezone Europe/Berlin")
    md = await harness.member("bob").says("/export")
    csv = await harness.member("bob").says("/export csv")
    assert md is not None and md.file is not None and csv is not None and csv.file is not None
    assert (md.file.filename, md.file.mimetype) == (
        "peerbot-general-2026-03-02-1000.md",
        "text/markdown; charset=utf-8",
    )
    assert (csv.file.filename, csv.file.mimetype) == (
        "peerbot-general-2026-03-02-1000.csv",
        "text/csv; charset=utf-8",
    )


def test_sizes_are_said_as_platforms_state_their_limits() -> None:
    assert [say_size(n) for n in (1, 812, 12_600, 10 * 1024 * 1024)] == [
        "1 byte",
        "812 bytes",
        "12.3 KB",
        "10.0 MB",
    ]


async def test_where_answers_go_through_the_outbox_the_file_is_sent_at_once() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    await record_with_things(h)
    sent_before = len(h.chat.sent)
    command = ChannelRef("fake", "general")
    reply = await h.member("bob").says("/export csv")
    assert reply is not None and reply.file is not None
    (sent,) = h.chat.files
    assert sent.channel == command and sent.file == reply.file and sent.summary == reply.text
    assert sent.key is not None and len(sent.key) <= 20 and sent.key.isalnum()
    assert len(h.chat.sent) == sent_before  # the summary is not posted a second time
    assert await outbox_rows(h) == []  # nor ever queued


async def test_an_export_too_big_for_the_platform_is_refused_with_a_short_answer(harness: Harness) -> None:
    await record_with_things(harness)
    harness.chat.file_limit = 200
    reply = await harness.member("bob").says("/export json")
    assert reply is not None and reply.is_error and reply.file is None
    assert reply.text.startswith("The JSON export is ")
    assert ", over the 200 bytes a file may have here, so it was not sent. CSV is the smallest:" in reply.text
    assert reply.text.endswith("/export csv. An operator can write the whole record with `peerbot export`.")
    assert harness.chat.files == []


async def test_a_refusal_is_posted_where_answers_go_through_the_outbox() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    h.chat.file_limit = 10
    await h.member("bob").says("/export csv")
    assert h.chat.files == []
    refusal = h.chat.sent[-1]
    assert refusal.text.startswith("The CSV export is ") and "CSV is the smallest" not in refusal.text


async def test_a_file_the_platform_refuses_for_its_size_is_answered_clearly() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    h.chat.refuses_size = 10  # a limit it did not tell beforehand
    reply = await h.member("bob").says("/export")
    assert reply is not None and reply.is_error
    assert reply.text.startswith("The file is ") and reply.text.endswith(
        "over the 10 bytes a file may have here, so it was not sent."
    )
    assert h.chat.sent[-1].text == reply.text


@dataclass
class RefusingChat(FakeChat):
    failure: Exception = field(
        default_factory=lambda: DeliveryFailed("503 Service Unavailable", permanent=False)
    )

    async def send_file(self, *args: object, **kwargs: object) -> object:
        raise self.failure


@pytest.mark.parametrize("failure", [DeliveryFailed("503 Service Unavailable", permanent=False), OSError()])
async def test_a_file_that_could_not_be_sent_is_answered_with_why(failure: Exception) -> None:
    h = Harness()
    h.chat = RefusingChat(interactive_replies=False, failure=failure)
    h.engine.chats.clear()
    h.engine.attach(h.chat)
    reply = await h.member("bob").says("/export")
    assert reply is not None and reply.is_error
    reason = "503 Service Unavailable" if isinstance(failure, DeliveryFailed) else "OSError"
    assert reply.text == f"Sorry, the file could not be sent ({reason}). Try again later."
    assert h.chat.sent[-1].text == reply.text


async def test_an_export_replayed_is_not_sent_twice() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    command = CommandInvoked("same-id", h.channel, h.member("bob").user, "export")
    assert await h.engine.handle(command) is not None
    assert await h.engine.handle(command) is None
    assert len(h.chat.files) == 1


# The read transaction -----------------------------------------------------------------------------


@dataclass
class HoldingChat(FakeChat):
    """Holds the export inside its read transaction: `max_file_size` is asked after the record was read."""

    reading: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)

    async def max_file_size(self, channel: ChannelRef) -> int | None:
        self.reading.set()
        await self.go_on.wait()
        return None


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}")
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        yield store
    finally:
        await store.close()


async def test_a_member_can_write_while_an_export_reads(sqlite_store: SqlStore) -> None:
    h = Harness(store=sqlite_store)
    h.chat = HoldingChat(facilitators={"alice"})
    h.engine.chats.clear()
    h.engine.attach(h.chat)
    await h.member("alice").says("/goal propose Learn Rust")
    export = asyncio.create_task(h.member("bob").says("/export json"))
    await h.chat.reading.wait()  # the export holds its read transaction open now
    # Before, the export held SQLite's one write turn, and this waited for it: the bound stops a hang.
    proposed = await asyncio.wait_for(h.member("carol").says("/goal propose Write a glossary"), 60)
    assert proposed is not None and not proposed.is_error
    assert not export.done()
    h.chat.go_on.set()
    reply = await export
    assert reply is not None and reply.file is not None
    # The export is one snapshot: the record as it was when it began to read.
    assert [g["text"] for g in json.loads(reply.file.data)["goals"]] == ["Learn Rust"]
    later = await h.member("bob").says("/export json")
    assert later is not None and later.file is not None
    assert [g["text"] for g in json.loads(later.file.data)["goals"]] == ["Learn Rust", "Write a glossary"]


@dataclass
class BrokenChat(FakeChat):
    async def max_file_size(self, channel: ChannelRef) -> int | None:
        raise RuntimeError("the platform cannot say")


async def test_an_export_that_fails_while_reading_is_answered_and_kept_as_failed() -> None:
    h = Harness()
    h.chat = BrokenChat(interactive_replies=False)
    h.engine.chats.clear()
    h.engine.attach(h.chat)
    reply = await h.member("bob").says("/export")
    assert reply is not None and reply.is_error and reply.text == SORRY
    assert h.chat.sent[-1].text == SORRY
    async with h.store.transaction() as tx:
        ((_, platform, _, reason),) = await tx.events.failed(10)
    assert (platform, reason) == ("fake", "RuntimeError: the platform cannot say")
