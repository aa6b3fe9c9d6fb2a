"""Who may run a command is declared on its spec, and every refusal is worded one way from it:
who may, what was tried, and that nothing was changed."""

from __future__ import annotations

import re

import pytest

from core.commands import COMMANDS, Access, Arg, ArgKind, CommandSpec, Invocation, parse_text, refusal
from tests.support import Harness
from tests.test_bad_input import refused, sql_group  # noqa: F401 (a fixture)

ONE_WORDING = re.compile(
    r"Sorry, only (facilitators|the [a-z' ]+ \(\w+\) or a facilitator) can [^.]+\. Nothing was changed\."
)

# For each command not everyone may run: an attempt bob (no facilitator) makes at alice's items.
ATTEMPTS = {
    "phase set": "/phase set organizing we are ready",
    "goal done": "/goal done 1",
    "goal drop": "/goal drop 1",
    "goal rules": "/goal rules 3 24h",
    "poll close": "/poll close 2",
    "nudge add": "/nudge add daily 10:00",
    "nudge remove": "/nudge remove 1",
    "nudge pause": "/nudge pause 1",
    "nudge resume": "/nudge resume 1",
    "timezone": "/timezone Europe/Berlin",
    "quiet-hours": "/quiet-hours 22:00-08:00",
    "auto": "/auto digest on",
    "review summary": "/review summary",
    "welcome set": "/welcome set Hi there, read the pinned notes first.",
    "welcome reset": "/welcome reset",
    "remind window": "/remind window 50%",
    "radar": "/radar silence 21",
    "concern done": "/concern done 1 heard",
    "dashboard": "/dashboard revoke",
    "meet add": "/meet add weekly thu 18:00 | Reading circle",
    "meet cancel": "/meet cancel 1",
    "meet skip": "/meet skip 1 2026-03-12",
    "meet from poll": "/meet from poll 2",
    "role add": "/role add timekeeper keeps our sessions on time",
    "role remove": "/role remove notetaker",
    "role rotate": "/role rotate wrapper weekly",
}
GUARDED = [s for s in COMMANDS if s.access is not Access.EVERYONE]


def test_every_guarded_command_has_an_attempt_here() -> None:
    assert set(ATTEMPTS) == {s.name for s in GUARDED}


def test_every_guarded_spec_says_what_it_guards_and_whose_item_it_is() -> None:
    for spec in GUARDED:
        if spec.access is not Access.FACILITATORS:
            assert spec.action, spec.name  # "use /timezone" would not say that looking is allowed
        assert bool(spec.owner) == (spec.access is Access.OWNER_OR_FACILITATOR), spec.name
        assert spec.who_may(), spec.name


@pytest.mark.parametrize("spec", GUARDED, ids=lambda s: s.name)
async def test_every_refusal_has_the_one_wording_and_changes_nothing(
    sql_group: Harness,  # noqa: F811 (the fixture)
    spec: CommandSpec,
) -> None:
    alice = sql_group.member("alice")
    for line in (
        "/goal propose Learn Rust",  # goal 1, poll 1
        "/poll create Which day? | Mon | Fri",  # poll 2
        "/nudge add daily 09:00",  # nudge 1
        "/review start",
    ):
        reply = await alice.says(line)
        assert reply is not None and not reply.is_error, reply
    line = ATTEMPTS[spec.name]
    answer = await refused(sql_group, line, user="bob")
    assert ONE_WORDING.fullmatch(answer), answer
    owner = "alice" if spec.access is Access.OWNER_OR_FACILITATOR else ""
    assert answer == refusal(parse_text(COMMANDS, line[1:]), "/", owner=owner)


async def test_a_goals_consent_poll_is_closed_early_by_facilitators_only(sql_group: Harness) -> None:  # noqa: F811
    await sql_group.member("bob").says("/goal propose Learn Rust")
    answer = await refused(sql_group, "/poll close 1", user="bob")
    assert answer == "Sorry, only facilitators can close poll 1 early. Nothing was changed."


async def test_a_structured_command_is_refused_in_the_same_words(sql_group: Harness) -> None:  # noqa: F811
    reply = await sql_group.member("bob").runs("timezone", name="Europe/Berlin")
    assert reply is not None and reply.is_error
    assert reply.text == "Sorry, only facilitators can change the timezone. Nothing was changed."


def test_the_wording_for_each_kind_of_access() -> None:
    item = Arg("id", ArgKind.INT, "the thing's number")
    specs = {
        Access.FACILITATORS: CommandSpec(("wipe",), "Wipe.", access=Access.FACILITATORS),
        Access.OWNER_OR_FACILITATOR: CommandSpec(
            ("thing", "end"),
            "End a thing.",
            (item,),
            access=Access.OWNER_OR_FACILITATOR,
            action="end thing {id}",
            owner="the thing's maker",
        ),
        Access.FACILITATORS_TO_CHANGE: CommandSpec(
            ("colour",),
            "Show or set the colour.",
            access=Access.FACILITATORS_TO_CHANGE,
            action="change the colour",
        ),
    }
    said = {access: refusal(Invocation(spec, {"id": 7}), "!peer ") for access, spec in specs.items()}
    assert said == {
        Access.FACILITATORS: "Sorry, only facilitators can use !peer wipe. Nothing was changed.",
        Access.OWNER_OR_FACILITATOR: "Sorry, only the thing's maker or a facilitator can end thing 7."
        " Nothing was changed.",
        Access.FACILITATORS_TO_CHANGE: "Sorry, only facilitators can change the colour. Nothing was changed.",
    }
    ended = Invocation(specs[Access.OWNER_OR_FACILITATOR], {"id": 7})
    assert refusal(ended, "/", owner="Ann") == (
        "Sorry, only the thing's maker (Ann) or a facilitator can end thing 7. Nothing was changed."
    )
    assert refusal(ended, "/", owner="Ann", facilitators_only=True) == (
        "Sorry, only facilitators can end thing 7. Nothing was changed."
    )
    with pytest.raises(ValueError, match="for everyone"):
        refusal(Invocation(CommandSpec(("status",), "Status."), {}), "/")
