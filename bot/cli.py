"""The `peerbot` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from adapters.matrix.registration import new_registration
from adapters.sql import migrate
from bot import app, logs
from bot.config import Config, ConfigError, load_config
from core.export import load_record, render
from core.refs import ChannelRef

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peerbot", description="A facilitation bot for peer-learning groups."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run every configured chat adapter (the console when none is configured)"),
        ("console", "chat with the bot in this terminal, or feed it a script on stdin"),
        ("migrate", "apply database migrations and show the schema revision"),
        ("check-config", "validate the configuration and show what would run"),
        ("export", "write a group's goals, polls, reviews and reflections"),
        ("events", "list inbound events that could not be applied (with --failed)"),
        ("matrix-registration", "write the Matrix application service registration for the homeserver"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "events":
            sub.add_argument("--failed", action="store_true", required=True, help="the failed events")
            sub.add_argument("--limit", type=int, default=100, help="at most this many, newest first")
        if name == "matrix-registration":
            sub.add_argument(
                "--output",
                type=Path,
                default=None,
                metavar="FILE",
                help="where to write it (default: matrix.registration of the config)",
            )
            sub.add_argument(
                "--force",
                action="store_true",
                help="replace an existing file (new tokens: restart the homeserver)",
            )
        if name == "export":
            sub.add_argument(
                "--group", required=True, metavar="PLATFORM:CHANNEL", help="for example console:general"
            )
            sub.add_argument("--format", choices=("json", "md", "csv"), default="json")
            sub.add_argument("--output", type=Path, default=None, metavar="FILE", help="default: stdout")
        sub.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="PATH",
            help="YAML config file (default: ./config.yaml if present, else built-in defaults)",
        )
    return parser


async def _migrate(config: Config) -> int:
    store = await app.open_store(config)
    try:
        revision = await migrate.current_revision(store.engine)
    finally:
        await store.close()
    print(f"database {app.safe_url(config.database.url)} is at revision {revision} (latest)")
    return 0


def _export(config: Config, group: str, fmt: str, output: Path | None) -> int:
    if output is not None and not output.parent.is_dir():  # say so before opening the database
        app.say_error(f"--output: the directory {output.parent} does not exist")
        return EXIT_CONFIG
    code, text = asyncio.run(_export_text(config, group, fmt))
    if code:
        return code
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        app.say_error(f"--output: cannot write {output} ({error.strerror or error})")
        return EXIT_FAILURE
    return 0


async def _export_text(config: Config, group: str, fmt: str) -> tuple[int, str]:
    platform, sep, channel = group.partition(":")
    if not sep or not platform or not channel:
        app.say_error("--group looks like PLATFORM:CHANNEL, for example console:general")
        return EXIT_CONFIG, ""
    store = await app.open_store(config)
    try:
        async with store.read() as tx:  # one snapshot, and a running bot's writers go on
            found = await tx.groups.get(ChannelRef(platform, channel))
            if found is None:
                app.say_error(f"no group in {group}")
                return EXIT_FAILURE, ""
            record = await load_record(tx, found)
    finally:
        await store.close()
    return 0, render(record, fmt)


async def _failed_events(config: Config, limit: int) -> int:
    store = await app.open_store(config)
    try:
        async with store.transaction() as tx:
            rows = await tx.events.failed(max(1, min(limit, 100_000)))
    finally:
        await store.close()
    for at, platform, event_id, reason in rows:
        print(f"{at.isoformat(timespec='seconds')}  {platform}  {event_id}  {' '.join(reason.split())}")
    if not rows:
        print("no failed events")
    return 0


def _matrix_registration(config: Config, output: Path | None, force: bool) -> int:
    """Write the registration with new random tokens; the tokens are never printed."""
    matrix = config.matrix
    if matrix is None:
        app.say_error("matrix-registration: the config has no matrix: section (homeserver, user_id, mode)")
        return EXIT_CONFIG
    path = output or matrix.registration
    if path is None:
        app.say_error("matrix-registration: give --output FILE, or set matrix.registration in the config")
        return EXIT_CONFIG
    if path.exists() and not force:
        app.say_error(
            f"matrix-registration: {path} exists (the homeserver may have loaded its tokens);"
            " --force writes new ones, then restart the homeserver"
        )
        return EXIT_FAILURE
    url = matrix.appservice.listener_url()
    registration = new_registration(matrix.appservice.id, matrix.user_id, url)
    text = yaml.safe_dump(registration, sort_keys=False, allow_unicode=True)
    try:
        # Only its owner may read it: it holds both tokens.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
    except OSError as error:
        app.say_error(f"matrix-registration: cannot write {path} ({error.strerror or error})")
        return EXIT_FAILURE
    print(
        f"wrote the registration of application service {registration['id']!r} for {matrix.user_id}"
        f" (the homeserver pushes to {url}) to {path}.\nAdd that file to the homeserver's"
        " app_service_config_files, restart the homeserver, and run Peerbot with matrix.mode: appservice."
    )
    return 0


def _check(config: Config) -> int:
    platforms = config.platforms() or ["console"]
    matrix = config.matrix
    if matrix is not None and matrix.mode == "appservice":
        app.matrix_settings(matrix)  # the registration file is read and checked: StartFailed if not
        where = f"{matrix.appservice.host}:{matrix.appservice.port}"
        platforms = [f"matrix (appservice, listening on {where})" if p == "matrix" else p for p in platforms]
    web = config.web
    served = "off" if web is None else (web.public_url or f"http://{web.host}:{web.port}")
    print(
        f"config OK: database {app.safe_url(config.database.url)}; adapters: {', '.join(platforms)};"
        f" web server: {served}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        app.fake_start()  # a malformed PEERBOT_FAKE_TIME is a configuration error, found before anything runs
    except ConfigError as error:
        app.say_error(f"config error: {error}")
        return EXIT_CONFIG
    logs.setup(config)
    try:
        if args.command == "check-config":
            return _check(config)
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "export":
            return _export(config, args.group, args.format, args.output)
        if args.command == "matrix-registration":
            return _matrix_registration(config, args.output, args.force)
        if args.command == "events":
            return asyncio.run(_failed_events(config, args.limit))
        if args.command == "console":
            return asyncio.run(app.run(config, console=True))
        return asyncio.run(app.run(config))
    except (migrate.SchemaTooNew, app.StartFailed) as error:
        app.say_error(str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 0
    except OSError as error:  # not the database (open_store names it): say what failed, not where
        app.say_error(f"stopped: {error.strerror or error}")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
