"""Listings that can grow come in pages that fit one Discord message, most relevant first."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.commands import COMMANDS, GOAL_FILTERS, UsageError, parse_options, parse_text
from core.goals import SHOWN_BY_FILTER, GoalStatus
from core.lifecycle import Phase, PhaseChange
from core.paging import PAGE_LIMIT, Item, Listing
from core.refs import UserRef
from core.schedules import ScheduleKind
from tests.support import START, Harness
from tests.test_fuzz_commands import dump

PAGE_LINE = re.compile(r"^Page (\d+) of (\d+)")
GOAL_LINE = re.compile(r"^  Goal (\d+): ")
# How many of each status a big group has, in an order that mixes them.
MIX = (GoalStatus.LAPSED, GoalStatus.ACCEPTED, GoalStatus.DROPPED, GoalStatus.PROPOSED, GoalStatus.DONE)
BOB = UserRef("fake", "bob", "bob")


def listing(n: int, **kwargs: object) -> Listing:
    base: dict[str, object] = {
        "what": "things",
        "head": "Things:",
        "items": [Item(f"  Thing {i}: " + "x" * (i % 90)) for i in range(1, n + 1)],
        "command": "/thing list",
        "empty": "No things.",
    }
    return Listing(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 1, 5, 40, 41, 999, 5000])
@pytest.mark.parametrize("latest_first", [False, True])
def test_every_item_is_on_exactly_one_page_and_every_page_fits(n: int, latest_first: bool) -> None:
    pages = listing(n, latest_first=latest_first, foot="Things need care.").pages()
    assert all(len(p) <= PAGE_LIMIT for p in pages)
    shown = [int(m[1]) for p in pages for m in re.finditer(r"Thing (\d+):", p)]
    assert sorted(shown) == list(range(1, n + 1))
    if len(pages) > 1:
        for number, page in enumerate(pages, start=1):
            lines = page.splitlines()
            assert lines[0] == "Things:" and lines[-2] == "Things need care."
            assert PAGE_LINE.match(lines[-1]) is not None
            assert lines[-1].startswith(f"Page {number} of {len(pages)}")
        assert pages[0].splitlines()[-1] == f"Page 1 of {len(pages)}. Next: /thing list 2."
        assert (
            pages[-1].splitlines()[-1]
            == f"Page {len(pages)} of {len(pages)}, the last. First: /thing list 1."
        )


def test_a_history_shows_its_latest_entries_first_each_page_in_order() -> None:
    pages = listing(500, latest_first=True).pages()
    first = [int(m[1]) for m in re.finditer(r"Thing (\d+):", pages[0])]
    assert first[-1] == 500 and first == sorted(first)
    second = [int(m[1]) for m in re.finditer(r"Thing (\d+):", pages[1])]
    assert second[-1] == first[0] - 1


def test_a_section_heading_is_repeated_on_every_page_it_reaches() -> None:
    items = [Item(f"  Goal {i}: " + "y" * 80, "Lapsed:") for i in range(100)]
    pages = Listing("goals", "", items, "/goal list", "none").pages()
    assert len(pages) > 2
    assert all(p.startswith("Lapsed:\n  Goal ") for p in pages)


def test_an_item_longer_than_a_page_is_shortened_not_lost() -> None:
    items = [Item("a" * 5000), Item("b" * 10)]
    pages = Listing("notes", "Notes:", items, "/notes", "none").pages()
    assert all(len(p) <= PAGE_LIMIT for p in pages)
    assert pages[0].splitlines()[1].endswith("…") and "b" * 10 in pages[-1]


def test_a_page_that_does_not_exist_is_bad_input() -> None:
    things = listing(3000)
    count = len(things.pages())
    for number in (0, count + 1, 10**17):
        with pytest.raises(UsageError, match=f"There is no page {number} of things: they fill {count} pages"):
            things.page(number)
    with pytest.raises(UsageError, match=r"There is no page 2 of things: they fill 1 page\."):
        listing(0).page(2)
    assert listing(0).page(1) == "No things."


def test_every_filter_of_goal_list_names_the_goals_it_shows() -> None:
    assert set(GOAL_FILTERS) == set(SHOWN_BY_FILTER)
    assert set(SHOWN_BY_FILTER["all"]) == set(GoalStatus)


# The page argument, as members write it ----------------------------------------------------------


def test_a_number_after_goal_list_is_a_page_and_a_word_a_filter() -> None:
    assert parse_text(COMMANDS, "goal list").args == {}
    assert parse_text(COMMANDS, "goal list 2").args == {"page": 2}
    assert parse_text(COMMANDS, "goal list LAPSED").args == {"filter": "lapsed"}
    assert parse_text(COMMANDS, "goal list lapsed 3").args == {"filter": "lapsed", "page": 3}
    assert parse_options(COMMANDS, "goal list", {"filter": "open", "page": "2"}).args == {
        "filter": "open",
        "page": 2,
    }
    for line, message in (
        ("goal list lapse", "'lapse' is not a valid filter"),
        ("goal list 2 lapsed", "Unexpected extra words: 'lapsed'"),
        ("goal list -1", "page must be a whole number like 3"),
        ("goal list lapsed two", "page must be a whole number like 3"),
        ("goal list 1234567890123456789", "at most 18 digits"),
    ):
        with pytest.raises(UsageError, match=message):
            parse_text(COMMANDS, line)


def test_a_word_is_not_taken_for_a_later_optional_argument() -> None:
    # Only a number goes past an optional argument: `auto on` does not quietly become `auto ? on`.
    with pytest.raises(UsageError, match="'on' is not a valid what"):
        parse_text(COMMANDS, "auto on")
    with pytest.raises(UsageError, match="quorum must be a whole number"):
        parse_text(COMMANDS, "goal rules 2h")


# The listings ----------------------------------------------------------------------------------------


async def many_goals(h: Harness, n: int) -> dict[int, GoalStatus]:
    """`n` goals in a mix of every status, straight into the store (as years of a busy group)."""
    await h.member("bob").says("/status")
    statuses = {}
    async with h.store.transaction() as tx:
        for i in range(n):
            goal = await tx.goals.create(1, f"Goal text number {i}" + " z" * (i % 7), BOB, START)
            status = MIX[i % len(MIX)]
            if status is not GoalStatus.PROPOSED:
                await tx.goals.set_status(goal.id, status, START)
            statuses[goal.id] = status
    return statuses


async def all_pages(h: Harness, command: str) -> list[str]:
    first = await h.member("bob").says(command)
    assert first is not None and not first.is_error, first
    pages = [first.text]
    last = PAGE_LINE.match(first.text.splitlines()[-1])
    count = int(last[2]) if last else 1
    for number in range(2, count + 1):
        reply = await h.member("bob").says(f"{command} {number}")
        assert reply is not None and not reply.is_error, reply
        pages.append(reply.text)
    return pages


def goal_ids(pages: list[str]) -> list[int]:
    return [int(m[1]) for p in pages for line in p.splitlines() if (m := GOAL_LINE.match(line))]


async def test_thousands_of_goals_come_in_pages_open_ones_first() -> None:
    h = Harness()
    statuses = await many_goals(h, 2000)
    pages = await all_pages(h, "/goal list")
    assert len(pages) > 10 and all(len(p) <= PAGE_LIMIT for p in pages)
    assert "Next: /goal list 2." in pages[0] and "/goal list open|" in pages[0]
    shown = goal_ids(pages)
    assert sorted(shown) == sorted(statuses)  # every goal once
    order = [GoalStatus.ACCEPTED, GoalStatus.PROPOSED, GoalStatus.DONE, GoalStatus.LAPSED, GoalStatus.DROPPED]
    ranks = [order.index(statuses[i]) for i in shown]
    assert ranks == sorted(ranks)  # open goals first, lapsed and dropped at the end
    assert pages[0].startswith("Roadmap (accepted):\n")


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("open", {GoalStatus.ACCEPTED, GoalStatus.PROPOSED}),
        ("lapsed", {GoalStatus.LAPSED}),
        ("dropped", {GoalStatus.DROPPED}),
        ("done", {GoalStatus.DONE}),
        ("accepted", {GoalStatus.ACCEPTED}),
        ("all", set(MIX)),
    ],
)
async def test_a_filter_pages_through_the_goals_it_names(name: str, wanted: set[GoalStatus]) -> None:
    h = Harness()
    statuses = await many_goals(h, 1200)
    pages = await all_pages(h, f"/goal list {name}")
    assert all(len(p) <= PAGE_LIMIT for p in pages)
    assert sorted(goal_ids(pages)) == sorted(i for i, s in statuses.items() if s in wanted)
    if len(pages) > 1:
        assert f"Next: /goal list {name} 2." in pages[0]


async def test_an_empty_filter_says_so() -> None:
    h = Harness()
    await h.member("bob").says("/goal propose Learn Rust")
    reply = await h.member("bob").says("/goal list blocked")
    assert reply is not None and not reply.is_error
    assert reply.text == "No blocked goals. /goal list shows them all."


BAD_PAGES = (
    "/goal list 0",
    "/goal list 99",
    "/goal list lapsed 0",
    "/goal list lapsed 99",
    "/goal list bogus",
    "/goal list 2 lapsed",
    "/goal list -2",
    "/goal list 3.5",
    "/goal list ²",
    "/nudge list 0",
    "/nudge list 5",
    "/nudge list two",
    "/review list 9",
    "/phase history 7",
    "/phase history 0",
)


async def test_a_bad_page_or_filter_gets_the_usage_and_changes_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        h = Harness(store=store)
        await many_goals(h, 200)
        for line in BAD_PAGES:
            before = await dump(store)
            reply = await h.member("bob").says(line)
            assert reply is not None and reply.is_error, (line, reply)
            assert "Usage: /" in reply.text and len(reply.text) < 400, reply.text
            assert await dump(store) == before, line
    finally:
        await store.close()


async def test_a_long_nudge_list_comes_in_pages_paused_ones_last() -> None:
    h = Harness()
    await h.member("alice").says("/status")
    async with h.store.transaction() as tx:
        for i in range(400):
            s = await tx.schedules.create(
                1,
                ScheduleKind.NUDGE,
                "0 9 * * *",
                "daily 09:00",
                f"Nudge text {i} " + "n" * 100,
                BOB,
                START,
                None,
                None,
            )
            if i % 3 == 0:
                await tx.schedules.set_paused(s.id, True)
    pages = await all_pages(h, "/nudge list")
    assert len(pages) > 5 and all(len(p) <= PAGE_LIMIT for p in pages)
    assert all(p.startswith("Nudges (timezone UTC):\n") for p in pages)
    ids = [int(m[1]) for p in pages for m in re.finditer(r"^  Nudge (\d+):", p, re.MULTILINE)]
    assert sorted(ids) == list(range(1, 401))
    paused = [i for i in ids if (i - 1) % 3 == 0]
    assert ids == [i for i in ids if i not in paused] + paused
    assert "Next: /nudge list 2." in pages[0]


async def test_a_long_phase_history_shows_the_latest_moves_first() -> None:
    h = Harness(facilitators=("alice",))
    await h.member("alice").says("/status")
    phases = list(Phase)
    async with h.store.transaction() as tx:
        for i in range(1, 301):
            at = START + timedelta(hours=i)
            change = PhaseChange(
                1, phases[(i - 1) % 5], phases[i % 5], at, "alice", f"move {i}", "fake:alice"
            )
            await tx.groups.record_phase_change(change)
    pages = await all_pages(h, "/phase history")
    assert len(pages) > 5 and all(len(p) <= PAGE_LIMIT for p in pages)
    moves = [[int(m[1]) for m in re.finditer(r": move (\d+)$", p, re.MULTILINE)] for p in pages]
    assert moves[0][-1] == 300 and moves[0] == sorted(moves[0])  # the latest, oldest first on the page
    assert sorted(m for page in moves for m in page) == list(range(1, 301))
    assert "group started" in pages[-1]


async def test_a_long_review_list_shows_the_latest_reviews_first() -> None:
    h = Harness()
    await h.member("bob").says("/status")
    async with h.store.transaction() as tx:
        for i in range(200):
            review = await tx.reviews.create(
                1, BOB, START + timedelta(days=i), START + timedelta(days=i, hours=1)
            )
            await tx.reviews.close(review.id, START + timedelta(days=i, hours=1))
            if i % 2:
                await tx.reviews.add_reflection(1, review.id, 1, BOB, "an answer", START)
    pages = await all_pages(h, "/review list")
    assert len(pages) > 3 and all(len(p) <= PAGE_LIMIT for p in pages)
    ids = [[int(m[1]) for m in re.finditer(r"^  Review (\d+):", p, re.MULTILINE)] for p in pages]
    assert ids[0][-1] == 200 and sorted(i for page in ids for i in page) == list(range(1, 201))
    assert "Review 200: started" in pages[0] and pages[0].splitlines()[-2].endswith("1 answers")
