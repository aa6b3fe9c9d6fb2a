"""A crash at any point between the steps of a command, a poll closing or a goal decision loses nothing.

Each case kills a console process with SIGKILL at a named point (core/faults.py, set through
PEERBOT_CRASH_AT), starts it again on the same database, and checks that every goal ends decided,
every poll is posted once with all its reactions and linked to its message, and votes on it count.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from core.faults import POINTS
from tests.support import peerbot

START = "2026-03-02T09:00:00+00:00"
BOT_LINE = re.compile(r"^#general \[(m\d+)\] peerbot: (.*)$")
BOT_REACTION = re.compile(r"^#general \[(m\d+)\] peerbot \+(\S+)$")
POST_POINTS = [p for p in POINTS if p.startswith("outbox.")]


class Bot:
    """Console sessions, one process each, on one SQLite database; everything printed is kept."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        (tmp_path / "config.yaml").write_text(
            f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}\n"
            "console:\n  facilitators: [alice]\n"
        )
        self.output: list[str] = []

    def session(self, *lines: str, crash_at: str | None = None) -> None:
        env = {"PEERBOT_FAKE_TIME": START}
        if crash_at:
            env["PEERBOT_CRASH_AT"] = crash_at
        result = peerbot(
            "console",
            "--config",
            str(self.dir / "config.yaml"),
            cwd=self.dir,
            env=env,
            stdin="\n".join(lines),
        )
        self.output += result.stdout.splitlines()
        if crash_at:
            assert result.returncode == -9, f"{crash_at} was never reached:\n{result.stdout}{result.stderr}"
        else:
            assert result.returncode == 0, result.stderr

    def posts(self) -> dict[str, set[str]]:
        """Each message the bot printed (its first line), with the ids it was printed under."""
        ids: dict[str, set[str]] = defaultdict(set)
        for line in self.output:
            if match := BOT_LINE.match(line):
                ids[match[2]].add(match[1])
        return ids

    def message_of(self, prefix: str) -> str:
        (found,) = {i for text, ids in self.posts().items() if text.startswith(prefix) for i in ids}
        return found

    def reactions_on(self, message_id: str) -> set[str]:
        return {m[2] for line in self.output if (m := BOT_REACTION.match(line)) and m[1] == message_id}

    def assert_each_post_once(self) -> None:
        twice = {text: ids for text, ids in self.posts().items() if len(ids) > 1}
        assert not twice, f"printed under more than one id: {twice}"


def assert_poll_works(bot: Bot, prefix: str, emojis: set[str]) -> str:
    poll = bot.message_of(prefix)
    assert bot.reactions_on(poll) == emojis
    return poll


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_while_proposing_a_goal_loses_nothing(point: str, tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    bot.session("bob: /goal propose Learn Rust together", crash_at=point)
    bot.session(":advance 1s")  # the restart sends what was left in the outbox
    if not any(text.startswith("Poll 1: Goal 1") for text in bot.posts()):
        assert point == "uow.before_commit"  # the command never happened: the member says it again
        bot.session("bob: /goal propose Learn Rust together")
    poll = assert_poll_works(bot, "Poll 1: Goal 1: Learn Rust together", {"✅", "🤔", "⛔"})
    bot.session(f"bob +✅ {poll}", f"carol +✅ {poll}", ":advance 2d", "alice: /goal show 1")
    bot.assert_each_post_once()
    # Decided early, at the second vote: bob and carol are everyone on the roster.
    assert "  Status: accepted, since 2026-03-02 09:00 UTC." in bot.output
    assert sum(text.startswith("Goal 1 accepted by consent") for text in bot.posts()) == 1


@pytest.mark.parametrize("point", POST_POINTS)
def test_a_crash_while_posting_a_poll_loses_nothing(point: str, tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    bot.session("bob: /poll create Tea or coffee? | 🍵 tea | ☕ coffee", crash_at=point)
    bot.session(":advance 1s")
    poll = assert_poll_works(bot, "Poll 1: Tea or coffee?", {"🍵", "☕"})
    bot.session(f"carol +☕ {poll}", f"dave +☕ {poll}", "alice: /poll results 1")
    bot.assert_each_post_once()
    assert any(line.strip().startswith("☕ coffee") and " 2 (100%)" in line for line in bot.output)


@pytest.mark.parametrize("point", ["uow.before_commit", "uow.after_commit", "outbox.after_send"])
def test_a_crash_while_closing_a_consent_poll_still_decides_its_goal_once(point: str, tmp_path: Path) -> None:
    bot = Bot(tmp_path)
    bot.session("bob: /goal propose Learn Rust together")
    poll = bot.message_of("Poll 1: Goal 1")
    bot.session(f"alice +⛔ {poll}")
    bot.session(":advance 2d", crash_at=point)
    # Each console session starts its clock at START again: walk past the closing time once more.
    bot.session(":advance 2d", "alice: /goal show 1")
    bot.assert_each_post_once()
    assert sum(text.startswith("Goal 1 is blocked") for text in bot.posts()) == 1
    assert any(line.strip().startswith("Status: blocked") for line in bot.output)
