"""Logging set-up: text or JSON lines on stderr, library loggers floored, secrets blotted out."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from bot.config import Config
from core import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HIDDEN = "***"
HANDLER_NAME = "peerbot"
# The least each library logs at, whatever the configured level (see `setup`).
LOG_FLOORS = {"discord": logging.INFO, "sqlalchemy": logging.WARNING, "aiosqlite": logging.INFO}


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then the group, command
    and event id the engine was working on (core/log_context.py) and the exception, where there are."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **log_context.fields(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class Redacting(logging.Formatter):
    """Another formatter's lines with every secret replaced by ***, whoever logged it and however: in the
    message, its arguments or a traceback."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        # Longest first: a secret that holds another is hidden whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return text


def secrets_of(config: Config) -> list[str]:
    """Every secret the config holds: tokens, passwords, the database URL's password."""
    found = []
    if config.discord is not None:
        found.append(config.discord.token.get_secret_value())
    if config.matrix is not None:
        for secret in (config.matrix.access_token, config.matrix.password):
            if secret is not None:
                found.append(secret.get_secret_value())
    if config.web is not None and config.web.metrics_token is not None:
        found.append(config.web.metrics_token.get_secret_value())
    password = make_url(config.database.url).password
    if password:
        found.append(str(password))
    return found


def setup(config: Config, stream: TextIO | None = None) -> logging.Handler:
    """Log to `stream` (stderr) in the configured format and level; returns the handler installed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    inner = JsonLines() if config.logging.format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(Redacting(inner, secrets_of(config)))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:  # set up again: replaced
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.logging.level)
    # Alembic narrates every migration step at INFO; one line from us is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # APScheduler logs every job run at INFO; the tick runs every second.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # matrix-nio logs every event it sees at INFO.
    logging.getLogger("nio").setLevel(logging.WARNING)
    # aiohttp's access log would name every signed dashboard link; the server keeps none either.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # At DEBUG these log what would tie a member to a secret (docs/decisions.md, "No voter in the log"):
    # discord.py every gateway payload (a vote button's press names its member) and request body;
    # SQLAlchemy (at INFO) and aiosqlite every statement with its parameters. Never below these.
    level = logging.getLevelNamesMapping()[config.logging.level]
    for name, floor in LOG_FLOORS.items():
        logging.getLogger(name).setLevel(max(level, floor))
    return handler
