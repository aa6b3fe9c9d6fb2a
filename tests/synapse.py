"""A real Synapse homeserver for the Matrix tests: started once per session on 127.0.0.1.

It runs from the `matrix-synapse` package of the test extra, with SQLite in a temporary directory,
shared-secret registration and rate limits relaxed (one test user at a time gets real limits back
through the admin API). The fixture stops it by its process id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVER_NAME = "peerbot.test"
SHARED_SECRET = "peerbot-test-shared-secret"
START_TIMEOUT = 90.0
RELAXED = {"per_second": 1000, "burst_count": 10000}


def synapse_missing_reason() -> str | None:
    """Why Synapse cannot run here, or None when it can."""
    try:
        import synapse  # noqa: F401
    except ImportError as error:
        return f"matrix-synapse is not installed on this machine ({error}); pip install -e '.[test]'"
    return None


def require_synapse() -> None:
    """Skip the tests that need Synapse where it cannot be installed (no build tools, no network to
    PyPI); in CI (`CI=true`) that fails instead."""
    reason = synapse_missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Synapse is required in CI: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path, port: int, app_services: Sequence[Path] = (), real_message_limit: bool = False
) -> Path:
    from signedjson.key import generate_signing_key, write_signing_keys

    key_path = directory / "signing.key"
    with key_path.open("w") as handle:
        write_signing_keys(handle, [generate_signing_key("a_test")])
    config: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(directory / "homeserver.pid"),
        "report_stats": False,
        "signing_key_path": str(key_path),
        "media_store_path": str(directory / "media"),
        # Small, so that a test can make an export over the limit (m.upload.size) without megabytes.
        "max_upload_size": "1M",
        "registration_shared_secret": SHARED_SECRET,
        "macaroon_secret_key": uuid.uuid4().hex,
        "form_secret": uuid.uuid4().hex,
        "enable_registration": False,
        "bcrypt_rounds": 4,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "background_updates": {"sleep_enabled": False},
        "enable_metrics": False,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "rc_message": RELAXED,
        "rc_registration": RELAXED,
        "rc_login": {"address": RELAXED, "account": RELAXED, "failed_attempts": RELAXED},
        "rc_joins": {"local": RELAXED, "remote": RELAXED},
        "rc_joins_per_room": RELAXED,
        "rc_invites": {"per_room": RELAXED, "per_user": RELAXED, "per_issuer": RELAXED},
        "rc_room_creation": RELAXED,
        "rc_admin_redaction": RELAXED,
        "log_config": str(directory / "log.yaml"),
    }
    if app_services:
        config["app_service_config_files"] = [str(path) for path in app_services]
    if real_message_limit:  # Synapse's default for every user: 0.2 messages/s, burst 10
        del config["rc_message"]
    log_config = {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(directory / "homeserver.log"),
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    (directory / "log.yaml").write_text(yaml.safe_dump(log_config))
    path = directory / "homeserver.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _request(
    url: str, body: dict[str, Any] | None = None, token: str | None = None, method: str | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@dataclass
class Account:
    user_id: str
    password: str
    access_token: str
    device_id: str


@dataclass
class Homeserver:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path
    _admin: Account | None = None

    def register(self, localpart: str | None = None, *, admin: bool = False) -> Account:
        """A new user through the shared-secret admin API (HMAC-SHA1 over nonce, user, password, admin)."""
        localpart = localpart or f"u{uuid.uuid4().hex[:10]}"
        password = uuid.uuid4().hex
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = _request(endpoint)["nonce"]
        flag = "admin" if admin else "notadmin"
        message = b"\x00".join(part.encode() for part in (nonce, localpart, password, flag))
        mac_hex = hmac.new(SHARED_SECRET.encode(), message, hashlib.sha1).hexdigest()
        reply = _request(
            endpoint,
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac_hex,
            },
        )
        return Account(reply["user_id"], password, reply["access_token"], reply["device_id"])

    @property
    def admin(self) -> Account:
        if self._admin is None:
            self._admin = self.register(f"admin{uuid.uuid4().hex[:6]}", admin=True)
        return self._admin

    def set_message_rate_limit(self, user_id: str, per_second: float, burst_count: int) -> None:
        """Give one user real message limits again (the server's own are relaxed for the tests)."""
        _request(
            f"{self.url}/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            {"messages_per_second": per_second, "burst_count": burst_count},
            token=self.admin.access_token,
        )

    def clear_message_rate_limit(self, user_id: str) -> None:
        """Take a user's own limits away again: the server's apply."""
        _request(
            f"{self.url}/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            token=self.admin.access_token,
            method="DELETE",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def start_homeserver(
    directory: Path, app_services: Sequence[Path] = (), real_message_limit: bool = False
) -> Homeserver:
    """Synapse on a free port; `app_services`: registration files it loads (application services);
    `real_message_limit`: Synapse's default message limit instead of the relaxed one."""
    port = free_port()
    config = write_config(directory, port, app_services, real_message_limit)
    with (directory / "stdout.log").open("wb") as output:  # the child keeps its own handle
        process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "--config-path", str(config)],
            cwd=directory,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Homeserver(f"http://127.0.0.1:{port}", process, directory)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = (directory / "stdout.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Synapse exited with {process.returncode}:\n{tail}")
        try:
            _request(f"{server.url}/_matrix/client/versions")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"Synapse did not answer within {START_TIMEOUT:.0f} s") from None
            time.sleep(0.1)
