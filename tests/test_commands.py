from __future__ import annotations

from datetime import timedelta

import pytest

from core.commands import (
    COMMANDS,
    Arg,
    ArgKind,
    UsageError,
    find_spec,
    parse_duration,
    parse_options,
    parse_text,
)


def test_text_is_split_into_path_and_typed_arguments() -> None:
    inv = parse_text(COMMANDS, "  PHASE   Set   cooperating   we have   goals ")
    assert inv.spec.path == ("phase", "set")
    assert inv.args == {"phase": "cooperating", "reason": "we have   goals"}


def test_the_longest_path_wins_and_extra_words_are_refused() -> None:
    assert parse_text(COMMANDS, "phase show").spec.path == ("phase", "show")
    with pytest.raises(UsageError, match="Unexpected extra words: 'now'"):
        parse_text(COMMANDS, "phase show now")


def test_options_are_checked_like_text() -> None:
    inv = parse_options(COMMANDS, "phase set", {"phase": "Changing"})
    assert inv.args == {"phase": "changing"}
    with pytest.raises(UsageError, match="Missing phase"):
        parse_options(COMMANDS, "phase set", {})
    with pytest.raises(UsageError, match="Unknown command"):
        parse_options(COMMANDS, "fly away", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1W", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "d", "3x", "3d-", "-1h", "1h two"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_every_argument_name_suits_every_platform() -> None:
    # Discord option names: lowercase, 1-32 characters, no spaces.
    for spec in COMMANDS:
        assert 1 <= len(spec.summary) <= 100, spec.name
        for arg in spec.args:
            for name in arg.option_names():
                assert name.islower() and " " not in name and len(name) <= 32
            assert 1 <= len(arg.help) <= 100, (spec.name, arg.name)  # an option's description on Discord


def test_flags_and_lists_read_the_same_typed_or_as_options() -> None:
    typed = parse_text(
        COMMANDS, "poll create --MULTI --hidden --anon --in 2d Which day? | Mon | 🐢 Thu | Fri"
    )
    structured = parse_options(
        COMMANDS,
        "poll create",
        {
            "question": "Which day?",
            "option1": "Mon",
            "option2": "🐢 Thu",
            "option3": "Fri",
            "multiple": True,
            "hidden": True,
            "anonymous": True,
            "closes": "2d",
        },
    )
    assert typed == structured
    assert typed.args == {
        "question": "Which day?",
        "option": ("Mon", "🐢 Thu", "Fri"),
        "multiple": True,
        "hidden": True,
        "anonymous": True,
        "closes": timedelta(days=2),
    }
    plain = parse_text(COMMANDS, "poll create Tea? | yes | no")
    assert plain.args == {
        "question": "Tea?",
        "option": ("yes", "no"),
        "multiple": False,
        "hidden": False,
        "anonymous": False,
    }
    assert plain == parse_options(
        COMMANDS, "poll create", {"question": "Tea?", "option1": "yes", "option2": "no", "multiple": False}
    )
    # Options may skip numbers; the items keep their order.
    gaps = parse_options(COMMANDS, "poll create", {"question": "Tea?", "option1": "yes", "option7": "no"})
    assert gaps.args["option"] == ("yes", "no")


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("Q | a", {"option2": "\u200b"}, "Give 2 to 10 options (got 1)."),
        (
            "Q" * 301 + " | a | b",
            {"question": "Q" * 301},
            "question is too long (301 characters, at most 300).",
        ),
        (
            "Q | a | " + "b" * 161,
            {"option2": "b" * 161},
            "option 2 is too long (161 characters, at most 160).",
        ),
        ("--closes 33d Q | a | b", {"closes": "33d"}, "closes is too long: at most 32d."),
        ("--closes 20s Q | a | b", {"closes": "20s"}, "closes is too short: at least 1m."),
        (
            "--closes soon Q | a | b",
            {"closes": "soon"},
            "closes must be a duration like 30m, 2h or 3d, not 'soon'.",
        ),
        ("Q | a\x00 | b", {"option1": "a\x00"}, "control character"),
    ],
)
def test_bad_arguments_are_refused_alike_either_way(text: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as typed:
        parse_text(COMMANDS, f"poll create {text}")
    with pytest.raises(UsageError) as structured:
        parse_options(COMMANDS, "poll create", {"question": "Q", "option1": "a", "option2": "b", **options})
    assert message in structured.value.message
    if "\x00" not in text:  # typed text is checked as a whole line first
        assert typed.value.message == structured.value.message
    assert typed.value.spec is structured.value.spec is not None


def test_flags_in_text_come_first_and_unknown_ones_are_named() -> None:
    with pytest.raises(
        UsageError, match=r"Unknown option --loud\. Known: --multiple, --hidden, --anonymous, --closes\."
    ):
        parse_text(COMMANDS, "poll create --loud Q | a | b")
    with pytest.raises(UsageError, match="--closes needs a value"):
        parse_text(COMMANDS, "poll create --closes")
    # After the question starts, -- is text; commands without named arguments read it as text too.
    assert parse_text(COMMANDS, "poll create Q --hidden | a | b").args["question"] == "Q --hidden"
    assert parse_text(COMMANDS, "goal propose --fast start").args["text"] == "--fast start"
    with pytest.raises(UsageError, match="multiple is true or false, not 'maybe'"):
        parse_options(
            COMMANDS, "poll create", {"question": "Q", "option1": "a", "option2": "b", "multiple": "maybe"}
        )
    with pytest.raises(UsageError, match="Unknown option 'option11'"):
        parse_options(
            COMMANDS, "poll create", {"question": "Q", "option1": "a", "option2": "b", "option11": "c"}
        )


def test_usage_lines_show_the_form_members_use() -> None:
    poll = find_spec(COMMANDS, ["poll", "create"])
    assert poll is not None
    assert poll.usage("!peer ") == (
        "!peer poll create [--multiple] [--hidden] [--anonymous] [--closes <duration>]"
        " <question> | <option> | <option> | ..."
    )
    assert poll.usage("/", structured=True) == (
        "/poll create <question> <option1> <option2> [option3…option10] [multiple] [hidden] [anonymous]"
        " [closes]"
    )


def test_flags_are_never_required_and_only_lists_have_counts() -> None:
    with pytest.raises(ValueError, match="cannot be required"):
        Arg("loud", ArgKind.FLAG, "say it twice")
    with pytest.raises(ValueError, match="count"):
        Arg("name", ArgKind.TEXT, "a name", max_count=3)
    with pytest.raises(ValueError, match="min_count"):
        Arg("item", ArgKind.LIST, "an item", min_count=3, max_count=2)
