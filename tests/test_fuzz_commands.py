"""Random input at every command, through the engine, on SQLite and PostgreSQL.

Whatever a member types, the engine answers (never "Something went wrong", never an exception), and a
command it refuses leaves the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.sql import migrate, schema
from adapters.sql.store import SqlStore, make_engine
from core.commands import COMMANDS, ArgKind, CommandSpec, unfit_character
from core.events import Reply
from tests.support import Harness

# Every inbound event's id is claimed, refused or not: that is how a replay is recognised, not a change.
BOOKKEEPING = {"processed_events", "alembic_version"}

HUGE_NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 2**31, 2**32, 10**18, 10**19 - 1, 0, -1]),
).map(str)
ODD_DIGITS = st.sampled_from(["²", "٣", "１２", "𝟘", "½", "Ⅻ", "০", "3²", "1_000", "+5", "0x10", "1e3"])
DURATIONS = st.builds(
    lambda n, unit: f"{n}{unit}",
    st.one_of(st.integers(min_value=0, max_value=10**20), st.sampled_from([9999999999, 100000000000000])),
    st.sampled_from(["s", "m", "h", "d", "w", "D", "", "y"]),
)
ODD_FLAGS = st.sampled_from(
    ["--closes", "--hidden", "--multiple", "--multi", "--in", "--", "---", "--closes 9999999999d", "—closes"]
)
ODD_IDS = st.sampled_from(["0", "1", "2", "r1", "r0", "r99999999999999999999", "m1", "#1", "1.5", "-0"])
ODD_CHARACTERS = st.sampled_from(
    ["\x00", "\u200b", "\u3164", "\ufeff", "\x1b[31m", "\r", "\t", "\n", "\u202e", "\ud800", "\x7f", "\x9b"]
)
SYNTAX = st.sampled_from(
    ["|", "a | b", "✅", "🐢 slow | 🐇 fast", "daily 09:00", "monthly ² 10:00", "weekly mon,mon 18:00",
     "0 18 * * MON", "*/0 * * * *", "22:00-08:00", "off", "Europe/Berlin", "q3", "confirm", "on", "digest"]
)  # fmt: skip
ANY_CHARACTER = st.characters(exclude_categories=())  # any code point, lone surrogates included
ODD_CHARACTER_RUNS = st.one_of(ANY_CHARACTER, ODD_CHARACTERS, st.sampled_from("ab |-"))
ODD_TEXT = st.lists(ODD_CHARACTER_RUNS, max_size=12).map("".join)
TOKENS = st.one_of(
    ODD_TEXT,
    HUGE_NUMBERS,
    ODD_DIGITS,
    DURATIONS,
    ODD_FLAGS,
    ODD_IDS,
    ODD_CHARACTERS,
    SYNTAX,
)


FOR_KIND = {
    ArgKind.INT: st.one_of(HUGE_NUMBERS, ODD_DIGITS, ODD_IDS),
    ArgKind.DURATION: st.one_of(DURATIONS, ODD_DIGITS),
    ArgKind.TEXT: st.one_of(ODD_TEXT, SYNTAX, ODD_FLAGS.map(lambda f: f + " Q | a | b")),
    ArgKind.WORD: st.one_of(ODD_TEXT, SYNTAX),
    ArgKind.CHOICE: st.one_of(ODD_TEXT, SYNTAX),
    ArgKind.FLAG: ODD_FLAGS,
    ArgKind.LIST: st.lists(st.one_of(ODD_TEXT, SYNTAX), max_size=12).map(" | ".join),
}
# Structured options: a flag's value is a boolean (or, from a careless caller, text); a list comes
# item by item (option1, option2 ...).
FOR_OPTION_KIND: dict[ArgKind, st.SearchStrategy[str | bool]] = {
    **FOR_KIND,
    ArgKind.FLAG: st.one_of(st.booleans(), ODD_TEXT),
    ArgKind.LIST: st.one_of(ODD_TEXT, SYNTAX, st.sampled_from(["🐢 slow", "👍", "👍️ yes", "\u200b"])),
}


def tokens_for(spec: CommandSpec) -> st.SearchStrategy[list[str]]:
    """Mostly one token per argument, of roughly its kind; sometimes anything at all."""
    fitting = st.tuples(*(st.one_of(FOR_KIND[a.kind], TOKENS) for a in spec.args)).map(list)
    return st.one_of(fitting, st.lists(TOKENS, max_size=len(spec.args) + 2))


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[str, str, CommandSpec]:
    spec = draw(st.sampled_from(COMMANDS))
    words = [w.upper() if draw(st.booleans()) else w for w in spec.path]
    tokens = draw(tokens_for(spec))
    glue = draw(st.sampled_from([" ", "  ", "", "\u200b", "\t"]))
    user = draw(st.sampled_from(["alice", "bob"]))  # alice facilitates, bob does not
    return user, " ".join(words) + " " + glue.join(tokens), spec


@st.composite
def command_options(draw: st.DrawFn) -> tuple[str, str, dict[str, str | bool]]:
    """The structured form Discord sends: named options, some of them unknown or empty."""
    spec = draw(st.sampled_from(COMMANDS))
    names = [n for a in spec.args for n in a.option_names()] + ["bogus", "option11"]
    options: dict[str, str | bool] = {
        n: draw(FOR_OPTION_KIND[a.kind]) for a in spec.args for n in a.option_names() if draw(st.booleans())
    }
    options.update(draw(st.dictionaries(st.sampled_from(names), TOKENS, max_size=2)))
    return draw(st.sampled_from(["alice", "bob"])), spec.name, options


async def dump(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the bookkeeping ones, in a stable order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            if table.name in BOOKKEEPING:
                continue
            result = await conn.execute(select(table))
            rows[table.name] = sorted((tuple(r) for r in result), key=repr)
    return rows


@pytest.fixture
async def group(db_url: str) -> AsyncIterator[Harness]:
    """A group on a real database, with a goal, a poll, a nudge and a review to aim odd ids at."""
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    alice = h.member("alice")
    for line in (
        "/goal propose Learn Rust",
        "/poll create Which day? | Monday | Friday",
        "/nudge add daily 09:00",
        "/review start",
        "/reflect 1 we expected to read a book",
    ):
        reply = await alice.says(line)
        assert reply is not None and not reply.is_error, reply
    try:
        yield h
    finally:
        await store.close()


def check_answer(reply: Reply | None, said: str) -> Reply:
    assert reply is not None, "every command gets an answer"
    assert reply.text.strip() and "Something went wrong" not in reply.text
    # Control characters and broken Unicode are refused at parse time, on every database alike.
    if unfit_character(said):
        assert reply.is_error, (said, reply.text)
    return reply


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(command=command_lines())
async def test_any_command_line_gets_an_answer_and_a_refusal_changes_nothing(
    group: Harness, command: tuple[str, str, CommandSpec]
) -> None:
    user, line, _ = command
    before = await dump(group.store)
    reply = check_answer(await group.member(user).says("/" + line), line)
    if reply.is_error:
        assert await dump(group.store) == before, (line, reply.text)


@FUZZ
@given(command=command_options())
async def test_any_structured_command_gets_an_answer_and_a_refusal_changes_nothing(
    group: Harness, command: tuple[str, str, dict[str, str | bool]]
) -> None:
    user, path, options = command
    before = await dump(group.store)
    said = "".join(v for v in options.values() if isinstance(v, str))
    reply = check_answer(await group.member(user).runs(path, **options), said)
    if reply.is_error:
        assert await dump(group.store) == before, (path, options, reply.text)
