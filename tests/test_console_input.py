"""The console and bad input: bytes that are not UTF-8, terminal escapes, invisible text, huge advances."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.console.lines import BadLine, parse_line, printable, render_message, render_reaction
from tests.support import ANY_WEB_PORT

ROOT = Path(__file__).resolve().parent.parent
FAKE_TIME = "2026-03-02T09:00:00+00:00"


def console_bytes(script: bytes, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    """The console as a subprocess fed raw bytes (the `peerbot()` helper only speaks text)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env["PEERBOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    env["PEERBOT_FAKE_TIME"] = FAKE_TIME
    env.update(ANY_WEB_PORT)
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", "--config", str(ROOT / "config.example.yaml")],
        input=script,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_a_line_that_is_not_utf8_is_refused_and_the_session_goes_on(tmp_path: Path) -> None:
    result = console_bytes(b"alice: /goal propose caf\xe9 \xff\xfe\nbob: /goal list\n", tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    assert out.startswith("! That line is not valid UTF-8 text; it was skipped.")
    assert "No goals yet" in out  # the bad line changed nothing, and the next one was read
    assert b"Traceback" not in result.stderr and b"Something went wrong" not in result.stdout


def test_terminal_escapes_in_member_text_are_shown_not_obeyed(tmp_path: Path) -> None:
    script = (
        "bob: hello \x1b[2J\x1b]0;pwned\x07 there\r overwritten\n"
        "bob: /reflect \x1b[31mred\n"
        "bob: /goal propose \u202eevil\n"
        "bob +\x1b[5m m1\n"
    ).encode()
    result = console_bytes(script, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8")
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in out
    assert "#general [m1] bob: hello \\x1b[2J\\x1b]0;pwned\\x07 there\\x0d overwritten" in out
    assert "write plain text" in out  # the command with ESC was refused by the engine
    assert "bob +\\x1b[5m" in out


def test_printable_keeps_ordinary_text_and_shows_controls() -> None:
    assert printable("Grüße 👋\tand\nmore") == "Grüße 👋\tand\nmore"
    assert printable("\x00\x9b\x7f\u2066") == "\\x00\\x9b\\x7f\\u2066"
    assert render_message("#g", "m1", "bob", "a\x1b[31m\nb\x1bc") == "#g [m1] bob: a\\x1b[31m\n  b\\x1bc"
    assert render_reaction("g", "m1", "bob", "\x1b[1m", True) == "#g [m1] bob +\\x1b[1m"


@pytest.mark.parametrize("invisible", ["\u200b", "\u200b\u200d\u2060", "\u3164", "\ufeff "])
def test_text_made_only_of_invisible_characters_is_nothing_said(invisible: str) -> None:
    with pytest.raises(BadLine, match="alice said nothing"):
        parse_line(f"alice: {invisible}")


@pytest.mark.parametrize("amount", ["9999999999d", "100000000000000s", "367d", "9" * 200 + "w"])
def test_advancing_too_far_is_refused(amount: str) -> None:
    with pytest.raises(BadLine, match="Cannot advance by more than 366d at a time"):
        parse_line(f":advance {amount}")


def test_a_huge_advance_in_a_session_changes_nothing(tmp_path: Path) -> None:
    result = console_bytes(b":advance 9999999999d\nalice: /status\n", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode("utf-8").splitlines()
    assert lines[0] == "! Cannot advance by more than 366d at a time."
    assert "#general [m3] peerbot: Phase: Convening, since 2026-03-02 09:00 UTC (just now)." in lines
