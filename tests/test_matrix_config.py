"""The `matrix:` section of the configuration, and what it turns into."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import StartFailed, matrix_settings
from bot.config import ConfigError, MatrixConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"homeserver": "https://matrix.example.org", "user_id": "@peerbot:example.org"}


def test_a_matrix_section_runs_matrix_instead_of_the_console() -> None:
    config = parse_config({"matrix": {**MINIMAL, "access_token": "syt_secret"}}, env={})
    assert config.platforms() == ["matrix"]
    assert config.matrix is not None
    assert config.matrix.command_prefix == "!peer"
    assert config.matrix.facilitator_power_level == 50
    assert "syt_secret" not in repr(config)
    settings = matrix_settings(config.matrix)
    assert settings.access_token == "syt_secret" and settings.password is None
    assert parse_config({}, env={}).platforms() == []
    both = parse_config({"matrix": {**MINIMAL, "password": "x"}, "discord": {"token": "t"}}, env={})
    assert both.platforms() == ["discord", "matrix"]
    assert parse_config({"matrix": None}, env={"PEERBOT_MATRIX_PASSWORD": "x"}).platforms() == []


def test_secrets_come_from_the_environment() -> None:
    env = {"PEERBOT_MATRIX_ACCESS_TOKEN": "from-env", "PEERBOT_MATRIX_PASSWORD": "pw-env"}
    config = parse_config({"matrix": {**MINIMAL, "access_token": "in-file"}}, env=env)
    assert config.matrix is not None and config.matrix.access_token is not None
    assert config.matrix.access_token.get_secret_value() == "from-env"
    assert config.matrix.password is not None and config.matrix.password.get_secret_value() == "pw-env"
    # Without a matrix section the variables alone do not start Matrix.
    assert parse_config({}, env=env).platforms() == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (MINIMAL, "matrix: needs access_token or password"),
        (
            {**MINIMAL, "password": "x", "homeserver": "matrix.example.org"},
            "matrix.homeserver: string should",
        ),
        ({**MINIMAL, "password": "x", "user_id": "peerbot"}, "matrix.user_id: string should match"),
        ({**MINIMAL, "password": "x", "command_prefix": "two words"}, "matrix.command_prefix: string should"),
        ({**MINIMAL, "password": "x", "room": "!a:b"}, "matrix.room: unknown key"),
        ({**MINIMAL, "password": "x", "send_burst": 0}, "matrix.send_burst: input should be greater"),
    ],
)
def test_a_bad_matrix_section_names_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"matrix": section}, env={})
    assert str(error.value).startswith(message)


def test_the_example_documents_every_matrix_key(tmp_path: Path) -> None:
    """The commented-out example section, uncommented, is a valid configuration with every key."""
    lines = (ROOT / "config.example.yaml").read_text().splitlines()
    start = lines.index("# matrix:")
    section = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        if (
            line.startswith("# ")
            and not line.lstrip("# ").startswith("#")
            and not line[2:].lstrip().startswith("#")
        ):
            section.append(line[2:])
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(section) + "\n")
    config = load_config(path, env={"PEERBOT_MATRIX_ACCESS_TOKEN": "syt_from_env"})
    assert config.matrix is not None
    assert set(MatrixConfig.model_fields) <= set(config.matrix.model_fields_set)


def test_appservice_mode_reads_its_registration_and_is_not_paced(tmp_path: Path) -> None:
    registration = tmp_path / "registration.yaml"
    section = {**MINIMAL, "mode": "appservice", "registration": str(registration)}
    config = parse_config({"matrix": {**section, "appservice": {"port": 9100}}}, env={})
    assert config.matrix is not None and config.matrix.appservice.listener_url() == "http://127.0.0.1:9100"
    with pytest.raises(StartFailed, match=r"matrix.registration: cannot read .*registration.yaml"):
        matrix_settings(config.matrix)
    registration.write_text(
        "id: peerbot\nurl: http://127.0.0.1:9100\nas_token: a-secret\nhs_token: h-secret\n"
        "sender_localpart: peerbot\nrate_limited: false\nnamespaces: {users: []}\n"
    )
    settings = matrix_settings(config.matrix)
    assert settings.appservice is not None and settings.appservice.port == 9100
    assert settings.appservice.registration.as_token == "a-secret"
    assert "a-secret" not in repr(settings) and "h-secret" not in repr(settings)
    assert settings.send_per_second >= 1000  # unpaced: the registration lifts the homeserver's limit
    paced = parse_config({"matrix": {**section, "send_per_second": 5}}, env={})
    assert paced.matrix is not None and matrix_settings(paced.matrix).send_per_second == 5
    client = parse_config({"matrix": {**MINIMAL, "password": "x"}}, env={})
    assert client.matrix is not None and matrix_settings(client.matrix).send_per_second == 0.2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({**MINIMAL, "mode": "appservice"}, "matrix: appservice mode needs `registration:`"),
        ({**MINIMAL, "mode": "bridge", "password": "x"}, "matrix.mode: input should be 'client' or"),
        (
            {**MINIMAL, "mode": "appservice", "registration": "r.yaml", "appservice": {"port": 0}},
            "matrix.appservice.port: input should be greater",
        ),
        (
            {**MINIMAL, "mode": "appservice", "registration": "r.yaml", "appservice": {"url": "bot:9"}},
            "matrix.appservice.url: string should match",
        ),
    ],
)
def test_a_bad_appservice_section_names_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"matrix": section}, env={})
    assert str(error.value).startswith(message)
