from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.config import DEFAULT_DATABASE_URL, ConfigError, load_config, parse_config
from tests.support import peerbot

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_file() -> None:
    config = parse_config({}, env={})
    assert config.database.url == DEFAULT_DATABASE_URL
    assert config.console.default_channel == "general"


def test_the_example_config_is_valid_and_makes_alice_a_facilitator() -> None:
    config = load_config(ROOT / "config.example.yaml", env={})
    assert config.console.facilitators == ["alice"]


def test_durations_and_schedules_in_config() -> None:
    config = parse_config(
        {"goals": {"decision_window": "2d"}, "nudges": {"grace": "30m", "checkin": "weekly fri 17:00"}},
        env={},
    )
    assert config.goals.decision_window.days == 2 and config.nudges.grace.seconds == 1800


def test_the_environment_overrides_the_database_url() -> None:
    config = parse_config(
        {"database": {"url": "sqlite+aiosqlite:///x.db"}},
        env={"PEERBOT_DATABASE_URL": "postgresql+asyncpg://u:p@127.0.0.1/db"},
    )
    assert config.database.url == "postgresql+asyncpg://u:p@127.0.0.1/db"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"databse": {}}, "databse: unknown key"),
        ({"console": {"facilitatorz": ["a"]}}, "console.facilitatorz: unknown key"),
        (
            {"console": {"facilitators": "alice"}},
            "console.facilitators: input should be a valid list",
        ),
        (
            {"logging": {"level": "LOUD"}},
            "logging.level: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
        ),
        (
            {"database": {"url": "mysql://x"}},
            "database.url: expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://",
        ),
        (
            {"console": {"default_channel": "two words"}},
            "console.default_channel: string should match pattern",
        ),
        (["a", "list"], "config: expected a mapping of sections at the top level"),
        ({"goals": {"decision_window": "forever"}}, "goals.decision_window: expected a duration like 30m"),
        (
            {"goals": {"decision_window": "40d"}},
            "goals.decision_window: expected a duration between 1m and 32d",
        ),
        ({"nudges": {"grace": "2d"}}, "nudges.grace: expected a duration between 0s and 1d"),
        ({"nudges": {"checkin": "weekly someday 18:00"}}, "nudges.checkin: days are written mon,tue"),
        (
            {"nudges": {"heartbeat_days": -1}},
            "nudges.heartbeat_days: input should be greater than or equal to 0",
        ),
    ],
)
def test_a_wrong_key_type_or_value_names_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw, env={})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("database:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML at line \d"):
        load_config(path, env={})


def run_cli(
    *args: str, cwd: Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return peerbot(*args, cwd=cwd, env=env_extra, timeout=60)


def test_check_config_stops_with_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("console:\n  facilitators: [alice]\n  colour: blue\n")
    result = run_cli("check-config", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "peerbot: config error: console.colour: unknown key\n"
    assert not (tmp_path / "data").exists()


def test_check_config_hides_the_database_password(tmp_path: Path) -> None:
    result = run_cli(
        "check-config",
        cwd=tmp_path,
        env_extra={"PEERBOT_DATABASE_URL": "postgresql+asyncpg://bot:hunter2@127.0.0.1/peer"},
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "adapters: console" in result.stdout


def test_the_bot_refuses_a_database_newer_than_its_code(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    env = {"PEERBOT_DATABASE_URL": url}
    assert run_cli("migrate", cwd=tmp_path, env_extra=env).returncode == 0
    with sqlite3.connect(tmp_path / "new.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    result = run_cli("console", cwd=tmp_path, env_extra=env)
    assert result.returncode == 1
    assert "0999_from_the_future, which this Peerbot does not know" in result.stderr
    assert "upgrade Peerbot" in result.stderr


def test_discord_is_configured_by_its_section_or_the_environment() -> None:
    assert parse_config({}, env={}).platforms() == []
    assert parse_config({"discord": None}, env={}).platforms() == []  # a section all commented out
    config = parse_config({"discord": {"token": "from-file", "guild_ids": [1]}}, env={})
    assert config.platforms() == ["discord"]
    assert config.discord is not None and config.discord.token.get_secret_value() == "from-file"
    assert "from-file" not in repr(config)
    from_env = parse_config({"discord": {"token": "from-file"}}, env={"PEERBOT_DISCORD_TOKEN": "from-env"})
    assert from_env.discord is not None and from_env.discord.token.get_secret_value() == "from-env"
    assert parse_config({}, env={"PEERBOT_DISCORD_TOKEN": "t"}).platforms() == ["discord"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"discord": {"guild_ids": [1]}}, "discord.token: missing, a value is required"),
        ({"discord": {"token": "t", "guild": 1}}, "discord.guild: unknown key"),
        ({"discord": {"token": "t", "shard_ids": [0]}}, "discord: shard_ids needs shard_count"),
        (
            {"discord": {"token": "t", "shard_count": 2, "shard_ids": [2]}},
            "discord: shard_ids must be between",
        ),
        ({"discord": {"token": "t", "gateway_url": "http://x"}}, "discord.gateway_url: string should match"),
        (
            {"discord": {"token": "t", "shard_count": 4, "shard_ids": [1, 2, 1]}},
            "discord: shard_ids names shard 1 more than once",
        ),
        (
            {"discord": {"token": "t", "shard_count": 4, "shard_ids": []}},
            "discord: shard_ids must name at least",
        ),
    ],
)
def test_a_wrong_discord_key_names_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(raw, env={})
    assert str(error.value).startswith(message)


def test_check_config_says_what_would_run_web_server_included(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("console:\n  facilitators: [alice]\n")
    result = run_cli("check-config", "--config", str(plain), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("adapters: console; web server: off")
    served = tmp_path / "served.yaml"
    served.write_text("web:\n  host: 127.0.0.1\n  port: 8123\n")
    result = run_cli("check-config", "--config", str(served), cwd=tmp_path)
    assert result.stdout.strip().endswith("web server: http://127.0.0.1:8123"), result.stdout


def test_replicas_sharing_one_config_file_take_their_shards_from_the_environment() -> None:
    raw = {"discord": {"token": "t", "shard_count": 2, "shard_ids": [0, 1]}}
    config = parse_config(raw, env={"PEERBOT_DISCORD_SHARD_IDS": "2, 3", "PEERBOT_DISCORD_SHARD_COUNT": "4"})
    assert config.discord is not None
    assert (config.discord.shard_ids, config.discord.shard_count) == ([2, 3], 4)
    only_ids = parse_config(raw, env={"PEERBOT_DISCORD_SHARD_IDS": "1"})
    assert only_ids.discord is not None and only_ids.discord.shard_ids == [1]
    assert parse_config({}, env={"PEERBOT_DISCORD_SHARD_IDS": "1"}).discord is None  # no Discord: nothing


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PEERBOT_DISCORD_SHARD_IDS": "0,5", "PEERBOT_DISCORD_SHARD_COUNT": "4"},
            "discord: shard_ids must be between 0 and 3",
        ),
        (
            {"PEERBOT_DISCORD_SHARD_IDS": "0,0", "PEERBOT_DISCORD_SHARD_COUNT": "4"},
            "discord: shard_ids names shard 0 more",
        ),
        (
            {"PEERBOT_DISCORD_SHARD_IDS": "0;1"},
            "PEERBOT_DISCORD_SHARD_IDS: expected shard numbers separated by commas",
        ),
        ({"PEERBOT_DISCORD_SHARD_COUNT": "four"}, "PEERBOT_DISCORD_SHARD_COUNT: expected a whole number"),
        ({"PEERBOT_DISCORD_SHARD_IDS": "1"}, "discord: shard_ids needs shard_count"),
    ],
)
def test_wrong_shards_in_the_environment_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"discord": {"token": "t"}}, env=env)
    assert str(error.value).startswith(message)
