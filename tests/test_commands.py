from __future__ import annotations

from datetime import timedelta

import pytest

from core.commands import COMMANDS, UsageError, parse_duration, parse_options, parse_text


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
            assert arg.name.islower() and " " not in arg.name and len(arg.name) <= 32
