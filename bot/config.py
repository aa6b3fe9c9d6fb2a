"""Configuration: YAML, validated at start, with secrets and the database URL from the environment."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

from bot.recurrence import CronRecurrence
from core.commands import DurationTooLong, UsageError, parse_duration, say_duration
from core.schedules import DEFAULT_GRACE, parse_schedule

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/peerbot.db"
DEFAULT_CONFIG_PATH = Path("config.yaml")


class ConfigError(Exception):
    """A configuration problem, as one line naming the key and what is expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(Section):
    url: str = DEFAULT_DATABASE_URL

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://")
        if value.startswith("postgresql"):
            _check_server_address(value)
        return value


def _check_server_address(url: str) -> None:
    """The host and port of a server URL, checked here rather than failing deep inside a driver.

    Messages name the host and port only: the URL may hold a password.
    """
    # Split by hand: urlsplit raises its own errors on a bad IPv6 host, some quoting the whole netloc.
    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        address, bracket, port = hostport[1:].partition("]")
        if not bracket:
            raise ValueError(f"expected an IPv6 host in brackets like [::1], got {hostport[:60]!r}")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"[{address[:60]}] is not an IPv6 address") from None
        if port and not port.startswith(":"):
            raise ValueError(f"expected :port after [{address}], got {port[:20]!r}")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
        if "[" in host or "]" in host or port.count(":"):
            raise ValueError(f"expected an IPv6 host in brackets like [::1], got {hostport[:60]!r}")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"expected a port from 1 to 65535, got {port[:20]!r}")


class ConsoleConfig(Section):
    facilitators: list[str] = Field(default_factory=list)
    default_channel: str = Field(default="general", pattern=r"^[\w-]{1,80}$")
    bot_name: str = Field(default="peerbot", pattern=r"^[\w-]{1,40}$")
    # Where /export writes its files; unset: beside the database (see Config.export_dir).
    export_dir: Path | None = None

    @field_validator("export_dir")
    @classmethod
    def _a_directory(cls, value: Path | None) -> Path | None:
        if value is not None and not str(value).strip():
            raise ValueError("expected a directory, not an empty value")
        return value


class MatrixConfig(Section):
    homeserver: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    user_id: str = Field(pattern=r"^@[^:\s]+:\S+$")
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_name: str = Field(default="Peerbot", min_length=1, max_length=100)
    command_prefix: str = Field(default="!peer", pattern=r"^\S{1,20}$")
    allowed_inviters: list[str] = Field(default_factory=list)
    facilitator_power_level: int = 50
    send_per_second: float = Field(default=0.2, gt=0)
    send_burst: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _has_credentials(self) -> MatrixConfig:
        if self.access_token is None and self.password is None:
            raise ValueError(
                "needs access_token or password (or PEERBOT_MATRIX_ACCESS_TOKEN / PEERBOT_MATRIX_PASSWORD)"
            )
        return self


def _duration_between(low: timedelta, high: timedelta) -> tuple[BeforeValidator, AfterValidator]:
    between = f"expected a duration between {say_duration(low)} and {say_duration(high)}"

    def read(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except DurationTooLong:  # 9999999999d: well formed, far too long
                raise ValueError(between) from None
            except ValueError:
                raise ValueError("expected a duration like 30m, 48h or 2d") from None
        return value

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(between)
        return value

    return BeforeValidator(read), AfterValidator(check)


Window = Annotated[timedelta, *_duration_between(timedelta(minutes=1), timedelta(days=32))]
Grace = Annotated[timedelta, *_duration_between(timedelta(), timedelta(days=1))]


class GoalsConfig(Section):
    quorum: int = Field(default=2, ge=1, le=100)
    decision_window: Window = timedelta(hours=48)


class NudgesConfig(Section):
    grace: Grace = DEFAULT_GRACE
    checkin: str = "weekly mon 18:00"
    digest: str = "weekly mon 09:00"
    heartbeat_days: int = Field(default=7, ge=0, le=365)

    @field_validator("checkin", "digest")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            parse_schedule(value, CronRecurrence())
        except UsageError as error:
            raise ValueError(error.message) from None
        return value


class ReviewsConfig(Section):
    duration: Window = timedelta(days=3)


Age = Annotated[timedelta, *_duration_between(timedelta(minutes=1), timedelta(days=7))]
Retention = Annotated[timedelta, *_duration_between(timedelta(days=1), timedelta(days=365))]


class OutboxConfig(Section):
    max_age: Age = timedelta(hours=1)


class EventsConfig(Section):
    retention: Retention = timedelta(days=7)


class DiscordConfig(Section):
    token: SecretStr
    guild_ids: list[int] = Field(default_factory=list)
    facilitator_role: str | None = Field(default=None, min_length=1, max_length=100)
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: list[int] | None = None
    api_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    gateway_url: str | None = Field(default=None, pattern=r"^wss?://\S+$")
    # Members joining the server join the group of its welcome channel (needs the members intent).
    server_joins: bool = False

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("expected the bot token, not an empty value")
        return value

    @model_validator(mode="after")
    def _shards(self) -> DiscordConfig:
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("shard_ids needs shard_count")
            if not self.shard_ids:
                raise ValueError("shard_ids must name at least one shard (leave it out for all)")
            if any(not 0 <= i < self.shard_count for i in self.shard_ids):
                raise ValueError(f"shard_ids must be between 0 and {self.shard_count - 1}")
            repeated = sorted({i for i in self.shard_ids if self.shard_ids.count(i) > 1})
            if repeated:
                raise ValueError(f"shard_ids names shard {repeated[0]} more than once")
        return self


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text: one readable line per record; json: one JSON object per line, for log collectors.
    format: Literal["text", "json"] = "text"


class WebConfig(Section):
    """The web server: off unless the section (or PEERBOT_WEB_PORT / PEERBOT_WEB_HOST) is given."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, pattern=r"^[^\s/]+$")
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # Where people reach the server, when a proxy or another name stands in front of it.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # When set, /metrics answers only requests with `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None

    @field_validator("metrics_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("expected a token, not an empty value (leave the key out for no token)")
        return value


class Config(Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    goals: GoalsConfig = Field(default_factory=GoalsConfig)
    nudges: NudgesConfig = Field(default_factory=NudgesConfig)
    reviews: ReviewsConfig = Field(default_factory=ReviewsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    discord: DiscordConfig | None = None
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    matrix: MatrixConfig | None = None
    web: WebConfig | None = None

    def export_dir(self) -> Path:
        """Where the console writes /export files: `console.export_dir`; else `exports` beside the
        SQLite database file (data/exports for the default database); else data/exports."""
        if self.console.export_dir is not None:
            return self.console.export_dir
        url = make_url(self.database.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).parent / "exports"
        return Path("data/exports")

    def platforms(self) -> list[str]:
        """Chat platforms with credentials configured (none: the console)."""
        platforms: list[str] = []
        if self.discord is not None:
            platforms.append("discord")
        if self.matrix is not None:
            platforms.append("matrix")
        return platforms


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: missing, a value is required"
    message = first["msg"]
    message = message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"{key}: {message.lower()} (got {first['input']!r})"
    return f"{key}: {message[0].lower() + message[1:]}"


def parse_config(raw: Any, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping of sections at the top level")
    if url := env.get("PEERBOT_DATABASE_URL"):
        raw = {**raw, "database": {**(raw.get("database") or {}), "url": url}}
    if token := env.get("PEERBOT_DISCORD_TOKEN"):
        raw = {**raw, "discord": {**(raw.get("discord") or {}), "token": token}}
    raw = _discord_shards_from(env, raw)
    raw = _matrix_secrets_from(env, raw)
    raw = _web_from(env, raw)
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _matrix_secrets_from(env: dict[str, str], raw: dict[str, Any]) -> dict[str, Any]:
    """PEERBOT_MATRIX_ACCESS_TOKEN / PEERBOT_MATRIX_PASSWORD fill in a `matrix:` section's secrets."""
    section = raw.get("matrix")
    if not isinstance(section, dict):
        return raw
    secrets = {
        key: value
        for key, name in (
            ("access_token", "PEERBOT_MATRIX_ACCESS_TOKEN"),
            ("password", "PEERBOT_MATRIX_PASSWORD"),
        )
        if (value := env.get(name))
    }
    return {**raw, "matrix": {**section, **secrets}} if secrets else raw


SHARD_ENV = {"shard_ids": "PEERBOT_DISCORD_SHARD_IDS", "shard_count": "PEERBOT_DISCORD_SHARD_COUNT"}


def _discord_shards_from(env: dict[str, str], raw: dict[str, Any]) -> dict[str, Any]:
    """PEERBOT_DISCORD_SHARD_IDS=0,1 and PEERBOT_DISCORD_SHARD_COUNT=4 override a `discord:` section's
    shards: replicas sharing one config file each get theirs from the environment."""
    section = raw.get("discord")
    given: dict[str, Any] = {}
    if (count := env.get("PEERBOT_DISCORD_SHARD_COUNT", "").strip()) != "":
        if not (count.isascii() and count.isdigit()):
            raise ConfigError(f"PEERBOT_DISCORD_SHARD_COUNT: expected a whole number, got {count[:20]!r}")
        given["shard_count"] = int(count)
    if (ids := env.get("PEERBOT_DISCORD_SHARD_IDS", "").strip()) != "":
        items = [item.strip() for item in ids.split(",")]
        if not all(item.isascii() and item.isdigit() for item in items):
            raise ConfigError(
                "PEERBOT_DISCORD_SHARD_IDS: expected shard numbers separated by commas like 0,1,"
                f" got {ids[:40]!r}"
            )
        given["shard_ids"] = [int(item) for item in items]
    if not given or not isinstance(section, dict):
        return raw  # no Discord section (and no token): nothing to shard
    return {**raw, "discord": {**section, **given}}


WEB_ENV = {
    "host": "PEERBOT_WEB_HOST",
    "port": "PEERBOT_WEB_PORT",
    "metrics_token": "PEERBOT_WEB_METRICS_TOKEN",
}


def _web_from(env: dict[str, str], raw: dict[str, Any]) -> dict[str, Any]:
    """PEERBOT_WEB_HOST / PEERBOT_WEB_PORT override `web:` and alone turn the server on (a container
    sets them); PEERBOT_WEB_METRICS_TOKEN fills in the token."""
    given = {key: value for key, name in WEB_ENV.items() if (value := env.get(name))}
    if not given:
        return raw
    section = raw.get("web")
    if section is None and not given.keys() & {"host", "port"}:
        return raw  # a token alone turns nothing on
    return {**raw, "web": {**(section if isinstance(section, dict) else {}), **given}}


def load_config(path: Path | None, env: dict[str, str] | None = None) -> Config:
    """Load `path` (or config.yaml if present, else the built-in defaults) and validate it."""
    if path is None:
        path = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
    raw: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start});"
                " save the config file as UTF-8"
            ) from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_config(raw, env)
