"""Bad input, by class: each gets a short answer saying what is expected, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from adapters.sql import migrate
from adapters.sql.store import SqlStore, make_engine
from core.commands import (
    COMMANDS,
    ArgKind,
    DurationTooLong,
    UsageError,
    is_blank,
    parse_duration,
    parse_options,
    parse_text,
)
from core.refs import UserRef
from tests.support import Harness, Member
from tests.test_fuzz_commands import dump

INT_COMMANDS = [s for s in COMMANDS if any(a.kind is ArgKind.INT for a in s.args)]
DURATION_COMMANDS = [s for s in COMMANDS if any(a.kind is ArgKind.DURATION for a in s.args)]
# What commands with a duration need besides it.
REQUIRED: dict[str, dict[str, str | bool]] = {
    "poll create": {"question": "Q", "option1": "a", "option2": "b"},
}


@pytest.fixture
async def sql_group(db_url: str) -> AsyncIterator[Harness]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    store = SqlStore(engine)
    h = Harness(store=store)
    reply = await h.member("alice").says("/status")
    assert reply is not None and not reply.is_error
    try:
        yield h
    finally:
        await store.close()


async def refused(h: Harness, line: str, user: str = "alice") -> str:
    """Say `line`; assert it is refused and that the database did not change. Returns the answer."""
    before = await dump(h.store)
    reply = await h.member(user).says(line)
    assert reply is not None and reply.is_error, (line, reply)
    assert "Something went wrong" not in reply.text
    assert await dump(h.store) == before, line
    return reply.text


@pytest.mark.parametrize("number", ["9223372036854775808", "18446744073709551616", "9" * 19, "9" * 90])
async def test_ids_past_64_bits_are_refused_by_every_command_that_takes_one(
    sql_group: Harness, number: str
) -> None:
    for spec in INT_COMMANDS:
        answer = await refused(sql_group, f"/{spec.name} {number}")
        assert answer.splitlines()[-1] == f"Usage: {spec.usage('/')}"
        assert "at most 18 digits" in answer or "too long" in answer


@pytest.mark.parametrize("number", ["²", "٣", "１２", "-1", "+3", "1_000", "0x10"])
def test_a_number_is_ascii_digits_only(number: str) -> None:
    for spec in INT_COMMANDS:
        with pytest.raises(UsageError, match="must be a whole number like 3"):
            parse_text(COMMANDS, f"{spec.name} {number}")


def test_the_largest_id_that_fits_is_read() -> None:
    assert parse_text(COMMANDS, "goal show 999999999999999999").args["id"] == 10**18 - 1
    assert parse_options(COMMANDS, "poll close", {"id": "0042"}).args["id"] == 42


@pytest.mark.parametrize(
    "line",
    [
        "/poll create --closes 9999999999d Q | a | b",
        "/poll create --closes 100000000000000s Q | a | b",
        "/review start 9999999999d",
        "/review start 99999999999999999999999w",
        "/goal rules 2 100000000000000s",
        "/goal rules 2 33d",
    ],
)
async def test_durations_that_overflow_are_refused(sql_group: Harness, line: str) -> None:
    answer = await refused(sql_group, line)
    assert "32 days" in answer or "at most 32d" in answer


def test_every_duration_argument_has_a_ceiling() -> None:
    for spec in DURATION_COMMANDS:
        for arg in spec.args:
            if arg.kind is ArgKind.DURATION:
                with pytest.raises(UsageError, match=f"{arg.name} is too long"):
                    parse_options(
                        COMMANDS, spec.name, {**REQUIRED.get(spec.name, {}), arg.name: "9999999999d"}
                    )


def test_a_duration_past_ten_years_is_too_long_not_an_overflow() -> None:
    assert parse_duration("3660d") == timedelta(days=3660)
    for text in ("3661d", "9999999999d", "100000000000000s", "9" * 5000 + "s", "1w" * 600):
        with pytest.raises(DurationTooLong):
            parse_duration(text)
    with pytest.raises(ValueError):
        parse_duration("²d")


async def test_unicode_digits_in_a_schedule_are_refused(sql_group: Harness) -> None:
    answer = await refused(sql_group, "/nudge add monthly ² 10:00")
    assert answer.startswith("The day of the month is 1 to 31, not '²'.")
    assert "Usage: /nudge add <schedule...>" in answer
    await refused(sql_group, "/nudge add daily ١٠:٠٠")
    await refused(sql_group, "/nudge add ² * * * *")


@pytest.mark.parametrize(
    "line",
    [
        "/goal propose a\x00b",
        "/reflect \x00",
        "/poll create Q\x00 | a | b",
        "/nudge add daily 09:00 hello\x00",
        "/phase set organizing why\x00",
        "/timezone Europe/Berlin\x00",
        "/goal propose red \x1b[31m alert",
        "/reflect broken \ud800 surrogate",
        "/goal propose trailing form feed\x0c",
    ],
)
async def test_nul_and_other_control_characters_are_refused_alike_on_every_database(
    sql_group: Harness, line: str
) -> None:
    answer = await refused(sql_group, line)
    assert "write plain text" in answer
    assert "\x00" not in answer and "\x1b" not in answer and "\ud800" not in answer


@pytest.mark.parametrize("name", ["Nu\x00l", "Esc\x1b[31mape", "Line\nbreak\r", "Half\ud800pair", "\x00\x07"])
async def test_a_display_name_with_control_characters_is_kept_without_them(
    sql_group: Harness, name: str
) -> None:
    member = Member(sql_group, UserRef(sql_group.chat.platform, "u-odd", name))
    reply = await member.says("/goal propose Read a chapter a day")
    assert reply is not None and not reply.is_error, reply
    async with sql_group.store.transaction() as tx:
        group = await tx.groups.get(sql_group.channel)
        assert group is not None
        (goal,) = await tx.goals.in_group(group.id)
    shown = goal.proposer_name
    assert shown and all(ch.isprintable() or ch == " " for ch in shown)
    assert shown == "".join(ch for ch in name if ch.isprintable()) or shown == "u-odd"


async def test_text_with_a_tab_or_a_line_break_is_kept(sql_group: Harness) -> None:
    reply = await sql_group.member("bob").says("/reflect one\ttwo\nthree")
    assert reply is not None and not reply.is_error


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\u200b\u200c\u200d", "\ufeff", "\u3164", "\u2800", " \u2060 "]
)
async def test_text_made_only_of_invisible_characters_is_empty(sql_group: Harness, invisible: str) -> None:
    answer = await refused(sql_group, f"/goal propose {invisible}")
    assert answer.startswith("Missing text:")
    assert is_blank(invisible)
    answer = await refused(sql_group, f"/reflect {invisible}")
    assert answer.startswith("Missing text:")


def test_structured_options_follow_the_same_rules() -> None:
    with pytest.raises(UsageError, match="Missing text"):
        parse_options(COMMANDS, "goal propose", {"text": "\u200b"})
    with pytest.raises(UsageError, match="control character"):
        parse_options(COMMANDS, "goal propose", {"text": "a\x00b"})
    with pytest.raises(UsageError, match="at most 18 digits"):
        parse_options(COMMANDS, "goal show", {"id": "9223372036854775808"})


def test_unknown_words_are_quoted_back_without_control_characters() -> None:
    with pytest.raises(UsageError) as error:
        parse_options(COMMANDS, "goal propose", {"te\x1bxt": "x"})
    assert "\x1b" not in error.value.message


async def test_invisible_parts_of_a_poll_or_a_nudge_count_as_missing(sql_group: Harness) -> None:
    answer = await refused(sql_group, "/poll create \u200b | a | b")
    assert answer.startswith("Missing question")
    answer = await refused(sql_group, "/poll create Q | a | \u200b\u200d")
    assert answer.startswith("Give 2 to 10 options (got 1).")
    reply = await sql_group.member("alice").says("/nudge add daily 09:00 \u200b")
    assert reply is not None and "a prompt from the bank" in reply.text
