"""Bad configuration and unusable resources: one line naming the key or resource, a non-zero exit, no
traceback; and "cannot reach the database" only when the database is the problem."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support import peerbot

ROOT = Path(__file__).resolve().parent.parent
NOT_THE_DATABASE = "cannot reach the database"


def stopped_with_one_line(result: subprocess.CompletedProcess[str], code: int | None = None) -> str:
    """The last stderr line of a run that stopped cleanly, checked; returns it."""
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Unclosed client session" not in result.stderr, result.stderr
    assert "Event loop is closed" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("peerbot: "), result.stderr
    return last


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("console:\n  facilitators: [José]\n".encode("latin-1"))
    line = stopped_with_one_line(peerbot("check-config", "--config", str(config), cwd=tmp_path), 2)
    assert line == f"peerbot: config error: {config}: not UTF-8 text (byte 0xe9 at offset 29); save the" \
        " config file as UTF-8"  # fmt: skip


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("goals:\n  decision_window: 9999999999d\n", "goals.decision_window: expected a duration between 1m"),
        ("nudges:\n  grace: 100000000000000s\n", "nudges.grace: expected a duration between 0s and 1d"),
        ("reviews:\n  duration: 99999999999999999999999w\n", "reviews.duration: expected a duration between"),
        ("nudges:\n  grace: 100000000000000\n", "nudges.grace: input should be a valid timedelta"),
    ],
)  # fmt: skip
def test_durations_that_overflow_in_config(tmp_path: Path, yaml: str, message: str) -> None:
    config = write(tmp_path / "c.yaml", yaml)
    line = stopped_with_one_line(peerbot("check-config", "--config", str(config), cwd=tmp_path), 2)
    assert line.startswith(f"peerbot: config error: {message}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://bot:hunter2@127.0.0.1:99999/peer", "expected a port from 1 to 65535, got"),
        ("postgresql+asyncpg://bot:hunter2@127.0.0.1:abc/peer", "expected a port from 1 to 65535, got 'abc'"),
        ("postgresql+asyncpg://bot:hunter2@[::1/peer", "expected an IPv6 host in brackets like [::1]"),
        ("postgresql+asyncpg://bot:hunter2@[fe80::zz]:5432/peer", "[fe80::zz] is not an IPv6 address"),
        ("postgresql+asyncpg://bot:hunter2@::1:5432/peer", "expected an IPv6 host in brackets like [::1]"),
    ],
)  # fmt: skip
def test_a_database_url_with_a_bad_port_or_ipv6_host(tmp_path: Path, url: str, message: str) -> None:
    result = peerbot("migrate", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": url})
    line = stopped_with_one_line(result, 2)
    assert line.startswith(f"peerbot: config error: database.url: {message}")
    assert "hunter2" not in result.stderr + result.stdout


def test_a_good_ipv6_url_is_accepted(tmp_path: Path) -> None:
    result = peerbot(
        "check-config", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": "postgresql+asyncpg://bot@[::1]:5432/peer"}
    )
    assert result.returncode == 0, result.stderr


def test_an_unreachable_database_is_named_as_such(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://bot:hunter2@127.0.0.1:{closed_port()}/peer"
    result = peerbot("migrate", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": url})
    line = stopped_with_one_line(result, 1)
    assert line.startswith(f"peerbot: {NOT_THE_DATABASE} at postgresql+asyncpg://bot:***@127.0.0.1:")
    assert "hunter2" not in result.stderr


async def test_a_postgresql_database_or_role_that_does_not_exist(postgres_url: str, tmp_path: Path) -> None:
    server = make_url(postgres_url)
    where = f"{server.host}:{server.port or 5432}"
    no_database = server.set(database="peerbot_no_such_database").render_as_string(hide_password=False)
    line = stopped_with_one_line(
        peerbot("migrate", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": no_database}), 1
    )
    assert line == (
        f'peerbot: database.url: database "peerbot_no_such_database" does not exist on {where}; create it'
        " (createdb) or point the URL at another database"
    )
    no_role = server.set(username="peerbot_no_such_role").render_as_string(hide_password=False)
    line = stopped_with_one_line(peerbot("console", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": no_role}), 1)
    assert line.startswith(f"peerbot: database.url: PostgreSQL at {where} refused the login (")
    assert "peerbot_no_such_role" in line and NOT_THE_DATABASE not in line


async def test_a_read_only_postgresql_database_is_refused_at_start(postgres_url: str, tmp_path: Path) -> None:
    env = {"PEERBOT_DATABASE_URL": postgres_url}
    assert peerbot("migrate", cwd=tmp_path, env=env).returncode == 0
    server = make_url(postgres_url)
    conn = await asyncpg.connect(
        host=server.host,
        port=server.port,
        user=server.username,
        password=server.password,
        database="postgres",
    )
    try:
        await conn.execute(f'ALTER DATABASE "{server.database}" SET default_transaction_read_only = on')
    finally:
        await conn.close()
    line = stopped_with_one_line(peerbot("console", cwd=tmp_path, env=env, stdin="alice: /status\n"), 1)
    assert "cannot be written" in line and "read-only" in line


def test_a_data_file_that_is_not_sqlite(tmp_path: Path) -> None:
    data = write(tmp_path / "notes.db", "these are my notes, not a database\n" * 200)
    url = f"sqlite+aiosqlite:///{data}"
    line = stopped_with_one_line(peerbot("console", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": url}), 1)
    assert (
        line
        == f"peerbot: database.url: {data} is not a SQLite database file; point database.url at another path"
    )
    assert data.read_text(encoding="utf-8").startswith("these are my notes")  # untouched


def without_file_permission_override(command: list[str]) -> list[str]:
    """Run `command` so that file modes hold: root ignores them, so root drops the capabilities that let
    it (root keeps owning the files, so the owner bits apply)."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced here")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps, *command]


def console_with_modes(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env["PEERBOT_DATABASE_URL"] = url
    command = without_file_permission_override([sys.executable, "-m", "bot", "console"])
    return subprocess.run(
        command, input="alice: /status\n", cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def made_database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "peerbot.db"
    url = f"sqlite+aiosqlite:///{path}"
    assert peerbot("migrate", cwd=tmp_path, env={"PEERBOT_DATABASE_URL": url}).returncode == 0
    with sqlite3.connect(path) as db:  # leave no WAL files behind: the directory test needs to make them
        db.execute("PRAGMA journal_mode=DELETE")
    return path


def test_a_read_only_database_file_is_refused_at_start(made_database: Path, tmp_path: Path) -> None:
    made_database.chmod(0o444)
    result = console_with_modes(f"sqlite+aiosqlite:///{made_database}", tmp_path)
    line = stopped_with_one_line(result, 1)
    assert line == (
        f"peerbot: database.url: the SQLite file {made_database} is read-only; Peerbot needs to write the"
        " file and its directory"
    )
    assert "peerbot:" not in result.stdout  # it never started taking commands


def test_a_read_only_data_directory_is_refused_at_start(made_database: Path, tmp_path: Path) -> None:
    made_database.parent.chmod(0o555)
    try:
        for url in (
            f"sqlite+aiosqlite:///{made_database}",
            f"sqlite+aiosqlite:///{made_database.parent}/new.db",
        ):
            line = stopped_with_one_line(console_with_modes(url, tmp_path), 1)
            assert line.startswith("peerbot: database.url: ") and "SQLite file" in line, line
            assert NOT_THE_DATABASE not in line
        (tmp_path / "locked").mkdir(mode=0o555)
        line = stopped_with_one_line(
            console_with_modes(f"sqlite+aiosqlite:///{tmp_path}/locked/a/b.db", tmp_path), 1
        )
        locked = tmp_path / "locked" / "a"
        assert line == f"peerbot: database.url: cannot create the directory {locked} for the SQLite file" \
            " (Permission denied)"  # fmt: skip
    finally:
        made_database.parent.chmod(0o755)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-02T09:00:00"])
def test_a_malformed_fake_time(tmp_path: Path, value: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    result = peerbot("console", cwd=tmp_path, env={"PEERBOT_FAKE_TIME": value, "PEERBOT_DATABASE_URL": url})
    line = stopped_with_one_line(result, 2)
    assert line.startswith(
        "peerbot: config error: PEERBOT_FAKE_TIME: expected an ISO 8601 time like 2026-03-02T09:00:00+00:00"
    )
    assert not (tmp_path / "x.db").exists()  # found before anything opened


def test_discord_unreachable_is_not_a_database_problem(tmp_path: Path) -> None:
    port = closed_port()
    config = write(
        tmp_path / "discord.yaml",
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'd.db'}\n"
        f"discord:\n  token: not-a-real-token\n  api_base_url: http://127.0.0.1:{port}/api/v10\n"
        f"  gateway_url: ws://127.0.0.1:{port}\n",
    )
    result = peerbot("run", "--config", str(config), cwd=tmp_path)
    line = stopped_with_one_line(result, 1)
    assert line.startswith(f"peerbot: cannot reach Discord at http://127.0.0.1:{port}/api/v10: ")
    assert NOT_THE_DATABASE not in result.stderr and "not-a-real-token" not in result.stderr


def test_matrix_unreachable_is_not_a_database_problem(tmp_path: Path) -> None:
    port = closed_port()
    config = write(
        tmp_path / "matrix.yaml",
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path / 'm.db'}\n"
        f"matrix:\n  homeserver: http://127.0.0.1:{port}\n  user_id: '@bot:localhost'\n"
        "  access_token: syt_secret\n",
    )
    result = peerbot("run", "--config", str(config), cwd=tmp_path)
    line = stopped_with_one_line(result, 1)
    assert line.startswith(f"peerbot: cannot reach the Matrix homeserver at http://127.0.0.1:{port}: ")
    assert NOT_THE_DATABASE not in result.stderr and "syt_secret" not in result.stderr


def test_export_to_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    env = {"PEERBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    assert peerbot("console", cwd=tmp_path, env=env, stdin="bob: /reflect hello\n").returncode == 0
    result = peerbot(
        "export", "--group", "console:general", "--output", "/no/such/dir/x", cwd=tmp_path, env=env
    )
    line = stopped_with_one_line(result, 2)
    assert line == "peerbot: --output: the directory /no/such/dir does not exist"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").mkdir()  # a directory where the file should go
    result = peerbot(
        "export", "--group", "console:general", "--output", str(tmp_path / "out" / "x"), cwd=tmp_path, env=env
    )
    line = stopped_with_one_line(result, 1)
    assert line == f"peerbot: --output: cannot write {tmp_path / 'out' / 'x'} (Is a directory)"
