"""The console adapter: its line language, and the whole bot end to end as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.console.lines import (
    Advance,
    BadLine,
    Membership,
    Nothing,
    Private,
    React,
    Say,
    parse_line,
    render_message,
    render_not_a_poll,
)
from tests.support import ANY_WEB_PORT, peerbot

ROOT = Path(__file__).resolve().parent.parent
FAKE_TIME = "2026-03-02T09:00:00+00:00"


def test_lines_are_read_as_messages_reactions_and_tools() -> None:
    assert parse_line("alice: /phase show") == Say(None, "alice", "/phase show")
    assert parse_line("#study bob: /help") == Say("study", "bob", "/help")
    assert parse_line("bob +👍 m3") == React(None, "bob", "👍", "m3", True)
    assert parse_line("#study bob -👍 m3") == React("study", "bob", "👍", "m3", False)
    assert parse_line("-- a comment: with a colon") == Nothing()
    assert parse_line("   ") == Nothing()
    assert parse_line(":advance 3d") == Advance(timedelta(days=3))
    assert parse_line("alice: it is 10:00 now") == Say(None, "alice", "it is 10:00 now")
    assert parse_line(":join frank") == Membership(None, "frank", joins=True)
    assert parse_line(":join frank #study") == Membership("study", "frank", joins=True)
    assert parse_line(":leave frank") == Membership(None, "frank", joins=False)
    assert parse_line("@frank: /pending") == Private("frank", "/pending")
    assert parse_line("@frank:hello") == Private("frank", "hello")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hello there", "Cannot read that line"),
        ("bob +👍", "Cannot read that line"),
        ("bob +👍 message3", "Cannot read that line"),
        ("alice:", "alice said nothing"),
        (":advance soon", "Cannot advance by 'soon'"),
        (":rewind 3d", "Console tools"),
        (":join", "Console tools"),
        (":join frank study", "Console tools"),
        (":leave frank #study now", "Console tools"),
        ("@frank:", "frank said nothing"),
        ("@frank /help", "Cannot read that line"),
        ("alice: " + "x" * 20_000, "too long"),
    ],
)
def test_malformed_lines_are_refused_with_a_hint(line: str, message: str) -> None:
    with pytest.raises(BadLine, match=message):
        parse_line(line)


def test_a_reaction_that_is_no_vote_is_answered_with_the_polls_it_may_have_meant() -> None:
    assert render_not_a_poll("m3", []) == "! m3 is not a poll, so that reaction is no vote."
    assert render_not_a_poll("m9", [(1, "m2"), (2, "m5"), (3, "m7"), (4, "m8")]) == (
        "! m9 is not a poll, so that reaction is no vote."
        " React on the poll itself: poll 2 is m5, poll 3 is m7, poll 4 is m8."
    )


def test_multi_line_messages_are_indented() -> None:
    assert render_message("#general", "m4", "peerbot", "one\ntwo") == ("#general [m4] peerbot: one\n  two")


def run_console(script: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console with the example config, except that /export writes under data/exports in `cwd`
    whatever the database: the SQLite and PostgreSQL runs of a session print the same path."""
    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    config = cwd / "config.yaml"
    config.write_text(example.replace("\nconsole:\n", "\nconsole:\n  export_dir: data/exports\n", 1))
    env = {"PEERBOT_DATABASE_URL": db_url, "PEERBOT_FAKE_TIME": FAKE_TIME, **ANY_WEB_PORT}
    return peerbot("console", "--config", str(config), cwd=cwd, env=env, stdin=script)


EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.txt"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
async def test_the_documented_sessions_give_their_transcripts(
    script: Path, db_url: str, tmp_path: Path
) -> None:
    result = run_console(script.read_text(encoding="utf-8"), db_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == script.with_suffix(".transcript").read_text(encoding="utf-8")


async def test_pending_is_answered_by_direct_message_in_the_channel_and_written_privately(
    db_url: str, tmp_path: Path
) -> None:
    script = "bob: /poll create Which day? | Monday | Friday\nfrank: /pending\n@frank: /pending\n"
    result = run_console(script, db_url, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    asked = lines.index("#general [m5] frank: /pending")
    assert lines[asked + 1 : asked + 3] == [
        "@frank [m6] peerbot: What needs you in #general, closing soonest first:",
        "    Poll 1: Which day? Closes 2026-03-03 09:00 UTC. React on poll 1: 1️⃣ Monday, 2️⃣ Friday.",
    ]
    assert lines[asked + 3 : asked + 7] == [
        "@frank [m7] frank: /pending",
        "@frank [m8] peerbot: What needs you, closing soonest first:",
        "  #general:",
        "    Poll 1: Which day? Closes 2026-03-03 09:00 UTC. React on poll 1: 1️⃣ Monday, 2️⃣ Friday.",
    ]
    assert not [line for line in lines if line.startswith("#general") and "What needs you" in line]


def test_there_are_documented_sessions() -> None:
    assert {p.stem for p in EXAMPLES} >= {"lifecycle", "goals-and-polls", "what-needs-me"}


async def test_the_phase_and_message_ids_survive_a_restart(db_url: str, tmp_path: Path) -> None:
    first = run_console("alice: /phase set cooperating\n", db_url, tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_console(":advance 2d\nbob: /status\n", db_url, tmp_path)
    assert second.returncode == 0, second.stderr
    # The fake time restarts with each process; the phase, the ids and the weekly check-in that
    # entering Cooperating scheduled (Monday 18:00, passed during the 2 days) come from the database.
    # The first console used m1 to m3 (alice's line, her welcome, the answer).
    lines = second.stdout.splitlines()
    assert lines[0].startswith("#general [m4] peerbot: 🔔 Weekly check-in: ")
    assert lines[2:4] == ["#general [m5] bob: /status", "#general [m6] peerbot: Welcome, bob! 👋"]
    assert "#general [m7] peerbot: Phase: Cooperating, since 2026-03-02 09:00 UTC (2 days)." in lines


class RunningConsole:
    """A console process that stays up, fed line by line."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
        env.update({"PEERBOT_DATABASE_URL": db_url, "PEERBOT_FAKE_TIME": FAKE_TIME, **ANY_WEB_PORT})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "console", "--config", str(ROOT / "config.example.yaml")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            text=True,
        )

    async def says(self, line: str, answer: str) -> list[str]:
        """Send `name: text`; the lines printed from its echo until one holds `answer`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        name, text = line.split(": ", 1)
        printed: list[str] = []
        while not printed or answer not in printed[-1]:
            read = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
            assert read, f"the console ended; it printed {printed}"
            if printed or read.rstrip("\n").endswith(f"] {name}: {text}"):  # earlier lines: earlier answers
                printed.append(read.rstrip("\n"))
        return printed

    def end(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no chance to clean up
        self.proc.wait(timeout=60)


async def test_a_second_console_on_the_same_database_is_refused(db_url: str, tmp_path: Path) -> None:
    first = RunningConsole(db_url, tmp_path)
    try:
        await first.says("alice: /status", "peerbot: Phase: Convening")
        second = run_console("bob: /reflect This one is mine\n", db_url, tmp_path)
        assert second.returncode == 1
        assert second.stdout == ""
        (line,) = second.stderr.splitlines()
        assert line.startswith("peerbot: another console is using the database at ")
        # The first carries on, with ids nobody else took (m2 was alice's welcome, m3 the answer).
        assert (await first.says("carol: /status", "peerbot: Phase"))[0] == "#general [m4] carol: /status"
        assert first.end() == 0
    finally:
        first.kill()


async def test_a_console_killed_with_sigkill_restarts_at_once(db_url: str, tmp_path: Path) -> None:
    first = RunningConsole(db_url, tmp_path)
    try:
        await first.says("alice: /phase set organizing", "moved the group")
    finally:
        first.kill()
    again = run_console("bob: /status\n", db_url, tmp_path)
    assert again.returncode == 0, again.stderr
    # Killed before it recorded the answer as sent, the first console left it to be printed again,
    # under its own id m3 (after alice's welcome, m2: docs/decisions.md, the outbox); the ids go on from
    # there. Bob's welcome waits for the joins of the next ten minutes.
    lines = again.stdout.splitlines()
    bob = lines.index("#general [m4] bob: /status")
    assert lines[bob + 1].startswith("#general [m5] peerbot: Phase: Organizing, since 2026-03-02 09:00 UTC")


def test_sqlite_file_lands_under_data_by_default(tmp_path: Path) -> None:
    result = peerbot("console", cwd=tmp_path, stdin="alice: /status\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "peerbot.db").exists()
    assert "Phase: Convening" in result.stdout


def test_export_writes_a_file_under_data_exports_and_shows_its_path(tmp_path: Path) -> None:
    script = (
        "bob: /reflect Keep going\nalice: /goal propose Learn Rust\nbob: /export json\nbob: /export json\n"
    )
    result = peerbot("console", cwd=tmp_path, env={"PEERBOT_FAKE_TIME": FAKE_TIME}, stdin=script)
    assert result.returncode == 0, result.stderr
    first, second = [line for line in result.stdout.splitlines() if "📦" in line]
    assert first.startswith(
        "#general [m8] peerbot: 📦 #general: the group's record as JSON, 1 goal, 1 poll, 0 reviews,"
        " 1 reflection ("
    )
    assert first.endswith("). Written to data/exports/peerbot-general-2026-03-02-0900.json")
    # The same minute again: a new file beside the first, never over it.
    assert second.endswith("). Written to data/exports/peerbot-general-2026-03-02-0900-2.json")
    written = (tmp_path / "data" / "exports" / "peerbot-general-2026-03-02-0900.json").read_text("utf-8")
    cli = peerbot("export", "--group", "console:general", "--format", "json", cwd=tmp_path, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert written + "\n" == cli.stdout  # the whole record, as `peerbot export` writes it
    assert json.loads(written)["reflections"][0]["text"] == "Keep going"


def test_exports_go_beside_the_sqlite_database_or_where_the_config_says(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'var' / 'peerbot.db'}",
        "PEERBOT_FAKE_TIME": FAKE_TIME,
    }
    beside = peerbot("console", cwd=work, env=env, stdin="bob: /export csv\n")
    assert beside.returncode == 0, beside.stderr
    # The file's line, wherever the welcome (sent through the outbox, not at once) lands beside it.
    (line,) = [x for x in beside.stdout.splitlines() if "📦" in x]
    assert line.endswith(" Written to var/exports/peerbot-general-2026-03-02-0900.csv")
    (work / "config.yaml").write_text(f"console:\n  export_dir: {tmp_path / 'out'}\n")
    configured = peerbot("console", cwd=work, env=env, stdin="bob: /export csv\n")
    assert configured.returncode == 0, configured.stderr
    outside = tmp_path / "out" / "peerbot-general-2026-03-02-0900.csv"  # not under the working directory
    (line,) = [x for x in configured.stdout.splitlines() if "📦" in x]
    assert line.endswith(f" Written to {outside}")
    assert outside.read_text(encoding="utf-8").startswith("kind,id,at")


def test_by_hand_on_a_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env["PEERBOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'tty.db'}"
    env.update(ANY_WEB_PORT)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "console", "--config", str(ROOT / "config.example.yaml")],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                seen += os.read(leader, 4096)

    try:
        read_until(b"> ")
        os.write(leader, b"alice: /phase set assessing halfway\n")
        read_until(b"to Assessing (halfway)")
        os.write(leader, b"\x04")  # Ctrl-D ends the session
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert b"Peerbot console" in seen


def test_export_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    made = run_console("bob: /reflect Keep going\nbob: /goal propose Learn Rust\n", url, tmp_path)
    assert made.returncode == 0, made.stderr

    def export(*args: str) -> subprocess.CompletedProcess[str]:
        return peerbot("export", *args, cwd=tmp_path, env={"PEERBOT_DATABASE_URL": url}, timeout=60)

    as_json = export("--group", "console:general", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["reflections"][0]["text"] == "Keep going" and data["goals"][0]["text"] == "Learn Rust"
    to_file = export("--group", "console:general", "--format", "md", "--output", str(tmp_path / "g.md"))
    assert to_file.returncode == 0 and (tmp_path / "g.md").read_text().startswith("# #general")
    assert export("--group", "console:nowhere").returncode == 1
    bad = export("--group", "general")
    assert bad.returncode == 2 and "PLATFORM:CHANNEL" in bad.stderr
