"""forget-me leaves no trace: the member's name and id are gone from every table and every export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import String, select

from adapters.matrix.translate import ReactionRecord, reaction_state_key
from adapters.sql import migrate
from adapters.sql.schema import groups, metadata, reviews, schedules
from adapters.sql.store import SqlStore, make_engine
from core.commands import Invocation
from core.context import Context
from core.events import ReactionAdded, Reply
from core.forgetting import FORMER_MEMBER, names_user, scrub
from core.goals import GoalStatus
from core.outbox import Post, PostKind
from core.ports import StateChanges
from core.refs import UserRef
from tests.support import Harness

ZED_ID = "@zq:example.org"
ZED_NAME = "Zed Quist"
NEEDLES = (ZED_ID, ZED_NAME, "zq:example")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    yield store
    await store.close()


async def tables_naming_zed(store: SqlStore) -> dict[str, list[str]]:
    """Every text value in the database that names Zed, by table: the whole database, not a list of
    the places we expect."""
    found: dict[str, list[str]] = {}
    async with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            text_columns = [c for c in table.columns if isinstance(c.type, String)]
            if not text_columns:  # numbers and times only (deliveries)
                continue
            for row in await conn.execute(select(*text_columns)):
                for value in row:
                    if isinstance(value, str) and any(n.casefold() in value.casefold() for n in NEEDLES):
                        found.setdefault(table.name, []).append(value)
    return found


async def fill_with_zed(h: Harness) -> None:
    """Zed takes part in everything the bot keeps, through the engine."""
    alice, carol, zed = h.member("alice"), h.member("carol"), h.member(ZED_NAME, ZED_ID)
    await carol.says("/buddy on")  # on the roster first, so she is Zed's buddy
    await alice.says("/goal rules 2 1d")
    await zed.says("/phase set organizing")
    await zed.says(f"/join I am {ZED_NAME}, here for the glossary")
    await zed.says("/buddy on")
    await h.member("dora").says("/join")  # Zed is her buddy: his turn, Carol had two newcomers
    await zed.says("/goal propose Write a shared glossary")  # goal 1, consent poll 1
    consent = h.chat.sent[-1].ref
    for member in (alice, carol, zed):
        await member.reacts(consent, "✅")
    await zed.says("/poll create --multiple --closes 1h Which evenings? | Mon | Wed | Fri")  # poll 2
    evenings = h.chat.sent[-1].ref
    await zed.reacts(evenings, "1️⃣")
    await zed.reacts(evenings, "3️⃣")
    await carol.reacts(evenings, "1️⃣")
    h.clock.advance(timedelta(days=1))
    await h.engine.tick()  # both polls close; goal 1 is accepted
    await zed.says("/poll create --closes 3d Snacks? | tea | coffee")  # poll 3, open
    snacks = h.chat.sent[-1].ref
    # As the Matrix adapter applies a reaction: the vote, and the record that lets a redaction undo it.
    record = ReactionRecord("!room:example.org", snacks.id, "1️⃣", ZED_ID)
    vote = ReactionAdded("$reaction1", snacks, zed.user, "1️⃣")
    await h.engine.handle_batch(
        [vote], StateChanges("matrix", {reaction_state_key("$reaction1"): record.to_json()})
    )
    await carol.reacts(snacks, "2️⃣")
    await zed.says("/nudge add weekly fri 17:00 What did you learn this week?")
    await zed.says("/auto digest on")
    await zed.says("/review start 2d")
    await zed.says("/reflect q1 To ask early")  # r1
    await zed.says("/reflect Pairing helps me")  # r2
    await carol.says("/reflect Meet in person once")  # r3
    await zed.says("/goal propose r3")  # goal 2, Carol's, put forward by Zed (consent poll 4)
    await carol.says("/goal propose r2")  # goal 3, Zed's, put forward by Carol (consent poll 5)
    async with h.engine.work() as uow:  # a direct message to Zed, held until tomorrow
        later = uow.now + timedelta(days=1)
        uow.post(
            Post(PostKind.DIRECT, h.channel, f"Hi {ZED_NAME}, a reminder", user=zed.user, not_before=later)
        )
    # The answer naming Zed is queued (as on Matrix, not an interaction response), and stays unsent.
    h.chat.interactive_replies, h.chat.down = False, True
    await zed.says("/phase set cooperating")
    h.chat.interactive_replies, h.chat.down = True, False

    async def fails(ctx: Context, inv: Invocation) -> Reply:
        # As a database error quotes its parameters.
        raise RuntimeError(f"[parameters: ('{ctx.event.user.key}', '{ctx.event.user.name}')]")

    status = h.engine.handlers[("status",)]
    h.engine.handlers[("status",)] = fails
    await zed.says("/status")  # recorded as a failed event
    h.engine.handlers[("status",)] = status


async def test_forget_me_leaves_no_trace_in_the_database_or_any_export(store: SqlStore) -> None:
    h = Harness(facilitators=("alice", ZED_ID), store=store, platform="matrix")
    await fill_with_zed(h)
    everywhere = {
        "goals",
        "polls",
        "poll_reactions",
        "phase_changes",
        "schedules",
        "reviews",
        "reflections",
        "adapter_state",
        "outbox",
        "failed_events",
        "members",
    }
    assert set(await tables_naming_zed(store)) == everywhere  # every table that can name a member does
    consent_before, evenings_before = await h.tally(1), await h.tally(2)
    results_before = await h.member("alice").says("/poll results 1")
    assert (await h.tally(3)).counts == (1, 1)
    sent_before, direct_before = len(h.chat.sent), len(h.chat.direct)
    # Each pair was told: Carol is buddy to Alice and to Zed, Zed to Dora.
    assert [u.id for u, _ in h.chat.direct] == ["alice", "carol", ZED_ID, "carol", "dora", ZED_ID]

    done = await h.member(ZED_NAME, ZED_ID).says("/forget-me confirm")

    assert done is not None and done.text == (
        "Done: 2 reflections and 1 vote in open polls deleted; 3 votes in closed polls still count,"
        " without your name.\nGoals, polls, nudges, reviews and phase changes of yours now say"
        " “a former member” (12); 4 records the bot kept about you deleted or cleaned.\n"
        "You are off 1 roster, and out of 1 buddy pair.\n"
        "Votes in closed anonymous polls are tied to nobody: nothing there is yours to remove."
    )
    assert await tables_naming_zed(store) == {}
    for form in ("md", "json", "csv"):
        export = await h.member("alice").says(f"/export {form}")
        assert export is not None and export.file is not None
        text = export.file.data.decode("utf-8")
        assert FORMER_MEMBER in text
        assert not [n for n in NEEDLES if n.casefold() in text.casefold()], form
    # Closed polls read the same: the decision, the counts and the number of voters.
    consent = await h.tally(1)
    assert (consent.counts, consent.voters) == (consent_before.counts, consent_before.voters)
    assert consent.names[0] == ("a former member", "alice", "carol")
    assert (await h.tally(2)).counts == evenings_before.counts == (2, 0, 1)
    assert (await h.tally(2)).voters == evenings_before.voters == 2
    results = await h.member("alice").says("/poll results 1")
    assert results_before is not None and "3 voters" in results_before.text
    assert results is not None and results.text == results_before.text.replace(ZED_NAME, FORMER_MEMBER)
    async with store.transaction() as tx:
        goal = await tx.goals.get(1, 1)
        assert goal is not None and goal.status is GoalStatus.ACCEPTED
        assert (goal.text, goal.proposer_name) == ("Write a shared glossary", FORMER_MEMBER)
        carols, zeds = await tx.goals.get(1, 2), await tx.goals.get(1, 3)
        assert carols is not None and (carols.proposer_name, carols.put_forward_by_name) == (
            "carol",
            FORMER_MEMBER,
        )
        assert zeds is not None and (zeds.proposer_name, zeds.put_forward_by_name) == (FORMER_MEMBER, "carol")
        assert zeds.text == "Pairing helps me"  # the group's goal now, as goals they proposed stay
        assert [r.user_name for r in await tx.reviews.reflections(1)] == ["carol"]  # Zed's are gone
    assert (await h.tally(3)).counts == (0, 1)  # the open poll: Zed's vote is gone, Carol's stays
    # The held announcement goes out without Zed's name; the direct message to Zed never does.
    h.clock.advance(timedelta(minutes=1))  # past the retry after the outage
    await h.engine.settle()
    announcements = [s.text for s in h.chat.sent[sent_before:]]
    assert any(t.startswith("a former member moved the group") for t in announcements), announcements
    async with store.transaction() as tx:
        poll = await tx.polls.get(1, 1)
        made_from_zeds = await tx.polls.get(1, 5)
    assert poll is not None and poll.question == (
        "Goal 1: Write a shared glossary (proposed by a former member). Do you consent?"
    )
    assert made_from_zeds is not None and made_from_zeds.question == (
        "Goal 3: Pairing helps me (proposed by a former member). Do you consent?"
    )
    assert not any(ZED_NAME in t for t in announcements) and h.chat.direct[direct_before:] == []
    dora = await h.member("dora").says("/buddy")
    assert dora is not None and dora.text.startswith("You have no buddy in #general.")


async def test_rows_kept_before_keys_were_stored_are_found_by_name(db_url: str) -> None:
    engine = make_engine(db_url)
    await migrate.upgrade(engine, "0004")
    at = datetime(2026, 3, 2, tzinfo=UTC)
    async with engine.begin() as conn:  # as revision 0004 kept them: a name, no key
        for group_id, platform in ((1, "fake"), (2, "matrix")):
            await conn.execute(
                groups.insert().values(
                    id=group_id,
                    platform=platform,
                    channel_id="general",
                    phase="convening",
                    phase_since=at,
                    created_at=at,
                )
            )
        # Carol's review, and one by a namesake of Zed's on another platform: neither is Zed's.
        for review_id, group_id, name in ((1, 1, ZED_NAME), (2, 1, "carol"), (3, 2, ZED_NAME)):
            await conn.execute(
                reviews.insert().values(
                    id=review_id, group_id=group_id, started_by=name, started_at=at, closes_at=at
                )
            )
        await conn.execute(
            schedules.insert().values(
                group_id=1,
                kind="nudge",
                cron="0 18 * * *",
                description="daily 18:00",
                created_by=ZED_NAME,
                created_at=at,
            )
        )
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    async with store.transaction() as tx:
        done = await tx.members.forget(UserRef("fake", "zq", ZED_NAME))
        reviews_now = [r.started_by for g in (1, 2) for r in await tx.reviews.in_group(g)]
        (schedule,) = await tx.schedules.in_group(1)
    await store.close()
    assert done.renamed == 2
    assert reviews_now == [FORMER_MEMBER, "carol", ZED_NAME] and schedule.created_by == FORMER_MEMBER


async def test_forget_me_on_the_memory_store_follows_a_member_who_changed_name() -> None:
    h = Harness(facilitators=("alice", "zq"))
    zed_then, zed_now, carol = h.member("Zed Q", "zq"), h.member(ZED_NAME, "zq"), h.member("carol")
    await h.regulars("alice")  # on the roster and not voting: consent poll 1 is not decided early
    await zed_then.says("/phase set organizing")
    await zed_then.says("/goal propose Read the book")  # consent poll 1 (closes in 3 days)
    await zed_then.reacts(h.chat.sent[-1].ref, "✅")
    await carol.reacts(h.chat.sent[-1].ref, "✅")
    await zed_then.says("/poll create --closes 1h Pace? | slow | fast")  # poll 2
    await zed_then.reacts(h.chat.sent[-1].ref, "2️⃣")
    h.clock.advance(timedelta(hours=2))
    await h.engine.tick()  # poll 2 closes
    await zed_then.says("/nudge add daily 18:00 Read a page")
    await zed_now.says("/reflect Slow is fine")
    pace = await h.tally(2)

    done = await zed_now.says("/forget-me confirm")

    assert done is not None and done.text.startswith(
        "Done: 1 reflection and 1 vote in open polls deleted; 1 vote in closed polls still counts"
    )
    for needle in ("zq", "Zed Q", ZED_NAME):
        assert needle not in repr(h.store.data), needle
    assert (await h.tally(2)).counts == pace.counts == (0, 1)
    assert (await h.tally(1)).counts == (1, 0, 0)  # the open consent poll: Carol's consent only
    history = await h.member("carol").says("/phase history")
    assert history is not None and "by a former member" in history.text


async def test_forgetting_touches_nobody_else() -> None:
    h = Harness(facilitators=("alice", "zq"))
    await h.member("alice").says("/phase set organizing")
    await h.member("alice").says("/goal propose Learn Go")
    await h.member(ZED_NAME, "zq").says("/forget-me confirm")
    async with h.store.transaction() as tx:
        (goal,) = await tx.goals.in_group(1)
        history = await tx.groups.phase_history(1, 10)
    assert (goal.proposer_name, goal.proposer_key) == ("alice", "fake:alice")
    assert [c.by for c in history] == ["peerbot", "alice"]


def test_a_name_is_replaced_where_it_stands_alone() -> None:
    assert scrub("Bob moved the group; Bobsleigh stays (bob:1)", ["Bob"]) == (
        "a former member moved the group; Bobsleigh stays (bob:1)"
    )
    assert scrub("by @zq:example.org.", [ZED_ID]) == "by a former member."


def test_adapter_state_names_a_member_only_as_a_json_record_in_their_platforms_namespace() -> None:
    zed = UserRef("matrix", ZED_ID, ZED_NAME)
    record = ReactionRecord("!room:example.org", "$poll", "1️⃣", ZED_ID).to_json()
    assert names_user("matrix.reaction.$r1", record, zed)
    assert not names_user("discord.reaction.$r1", record, zed)
    assert not names_user("matrix.next_batch", ZED_ID, zed)  # not a JSON record
    other = ReactionRecord("!room:example.org", "$poll", "1️⃣", "@carol:example.org").to_json()
    assert not names_user("matrix.reaction.$r2", other, zed)
