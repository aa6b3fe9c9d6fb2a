"""`peerbot run` with a Discord section, as a separate process against the fake Discord."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fake_discord.server import FakeDiscord

ROOT = Path(__file__).resolve().parents[2]


async def peerbot(*args: str, cwd: Path, env_extra: dict[str, str]) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, fake: FakeDiscord) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        "discord:\n"
        f"  api_base_url: {fake.api_base_url}\n"
        f"  gateway_url: {fake.gateway_url}\n"
        "logging:\n  level: DEBUG\n"
    )
    return config


async def test_a_bad_token_stops_the_bot_with_one_line_and_exit_code_1(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake_discord)
    code, out, err = await peerbot(
        "run", "--config", str(config), cwd=tmp_path, env_extra={"PEERBOT_DISCORD_TOKEN": "wrong-token-123"}
    )
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("peerbot:")]
    assert errors == [
        "peerbot: Discord rejected the bot token (401 Unauthorized):"
        " check discord.token or PEERBOT_DISCORD_TOKEN"
    ]
    assert "wrong-token-123" not in out + err  # not even at DEBUG


async def test_check_config_shows_discord_without_the_token(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake_discord)
    code, out, err = await peerbot(
        "check-config",
        "--config",
        str(config),
        cwd=tmp_path,
        env_extra={"PEERBOT_DISCORD_TOKEN": "s3cret-tok"},
    )
    assert code == 0, err
    assert "adapters: discord" in out
    assert "s3cret-tok" not in out + err


async def test_peerbot_run_serves_discord_until_interrupted(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake = fake_discord
    guild = fake.add_guild("g")
    channel = fake.add_channel(guild, "general")
    alice = fake.add_member(guild, "alice")
    config = write_config(tmp_path, fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
    env.update(PYTHONPATH=str(ROOT), PEERBOT_DISCORD_TOKEN=fake.token)
    # Files, not pipes: at DEBUG the log outgrows a pipe's buffer, and the bot would block writing it.
    out_file, err_file = (tmp_path / "out.txt").open("wb"), (tmp_path / "err.txt").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=tmp_path, env=env,
        stdout=out_file, stderr=err_file,
    )  # fmt: skip
    try:
        await fake.until(
            lambda: bool(fake.commands) and any(s.connection for s in fake.sessions.values()), 30
        )
        interaction = fake.run_command(alice, channel, "/status", {})
        await fake.until(lambda: interaction.callback is not None)
        assert interaction.callback is not None
        assert interaction.callback["data"]["content"].startswith("Phase: Convening")
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
        out_file.close()
        err_file.close()
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert process.returncode == 0, err[-3000:]
    assert fake.token not in out + err
    assert (tmp_path / "data" / "peerbot.db").exists()
