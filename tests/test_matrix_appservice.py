"""Matrix as an application service, against a real Synapse that loaded the bot's registration.

The registration is written by `peerbot matrix-registration` itself; a second Synapse (once per session)
loads it and pushes the bot's rooms to the listener the adapter opens on the registration's port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from adapters.matrix.adapter import AppserviceSettings, MatrixSettings
from adapters.matrix.appservice import AppserviceAdapter
from adapters.matrix.registration import Registration, read_registration
from adapters.matrix.translate import PLATFORM
from bot import cli
from core.events import CommandInvoked, ReactionAdded
from tests.matrix_support import Member, RunningBot, from_bot, membership, open_store, reply_to, start_bot
from tests.synapse import Homeserver, free_port, require_synapse, start_homeserver
from tests.test_matrix_e2e import ask, open_goal_poll

BOT_USER = "@peerbot:peerbot.test"


@dataclass
class AppserviceHomeserver:
    server: Homeserver
    registration: Registration
    port: int  # where the registration tells Synapse the bot listens

    def settings(self, **changes: Any) -> MatrixSettings:
        settings = MatrixSettings(
            homeserver=self.server.url,
            user_id=BOT_USER,
            send_per_second=1000,
            send_burst=1000,
            appservice=AppserviceSettings(self.registration, "127.0.0.1", self.port),
        )
        return replace(settings, **changes)


def write_registration(directory: Path, port: int, *extra: str) -> tuple[int, str, str]:
    """`peerbot matrix-registration` with a config for appservice mode (peerbot.yaml in `directory`,
    the registration beside it): exit code, stdout, stderr."""
    path = directory / "registration.yaml"
    config = directory / "peerbot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "matrix": {
                    "homeserver": "http://127.0.0.1:8008",
                    "user_id": BOT_USER,
                    "mode": "appservice",
                    "registration": str(path),
                    "appservice": {"host": "127.0.0.1", "port": port},
                }
            }
        )
    )
    return _run_cli(["matrix-registration", "--config", str(config), *extra])


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def appservice_homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppserviceHomeserver]:
    """A second Synapse, with the registration `peerbot matrix-registration` wrote (started once), and
    Synapse's default message limit (0.2/s, burst 10) for every user: the members of these tests have
    theirs lifted by an admin, the bot's registration says `rate_limited: false`."""
    require_synapse()
    directory = tmp_path_factory.mktemp("synapse-appservice")
    port = free_port()
    code, _, err = write_registration(directory, port)
    assert code == 0, err
    path = directory / "registration.yaml"
    registration = read_registration(yaml.safe_load(path.read_text()), BOT_USER)
    server = start_homeserver(directory, [path], real_message_limit=True)
    try:
        yield AppserviceHomeserver(server, registration, port)
    finally:
        server.stop()


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def appservice_bot(
    appservice_homeserver: AppserviceHomeserver, tmp_path: Path
) -> AsyncIterator[StartBot]:
    """Starts the bot in appservice mode on a database (a SQLite file here unless a URL is given), and
    waits until it listens."""
    running: list[RunningBot] = []

    async def start(db: str | None = None, **changes: Any) -> RunningBot:
        store = await open_store(db or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        bot = await start_bot(appservice_homeserver.settings(**changes), store)
        running.append(bot)
        async with asyncio.timeout(30):
            await adapter_of(bot).listening.wait()
        return bot

    yield start
    for bot in running:
        await bot.stop()
        await bot.store.close()


@pytest.fixture
async def people(appservice_homeserver: AppserviceHomeserver) -> AsyncIterator[Callable[..., Member]]:
    made: list[Member] = []

    def make(limited: bool = False) -> Member:
        server = appservice_homeserver.server
        member = Member(server, server.register())
        if not limited:
            server.set_message_rate_limit(member.user_id, 1000, 10000)
        made.append(member)
        return member

    yield make
    for member in made:
        await member.close()


def adapter_of(bot: RunningBot) -> AppserviceAdapter:
    assert isinstance(bot.adapter, AppserviceAdapter)
    return bot.adapter


async def room_with_bot(owner: Member, *others: Member) -> str:
    room_id = await owner.creates_room(invite=[BOT_USER, *(m.user_id for m in others)])
    for other in others:
        await other.joins(room_id)
    await owner.sees(room_id, membership(BOT_USER, "join"))
    return room_id


async def put_transaction(
    bot: RunningBot, txn_id: str, events: list[dict[str, Any]], token: str | None = None
) -> tuple[int, Any]:
    """A transaction PUT by hand, as Synapse sends one (with the registration's hs_token by default)."""
    adapter = adapter_of(bot)
    hs_token = adapter.appservice.registration.hs_token if token is None else token
    headers = {"Authorization": f"Bearer {hs_token}"} if hs_token else {}
    url = f"{adapter.url}/_matrix/app/v1/transactions/{txn_id}"
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, json={"events": events}, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


# The registration ---------------------------------------------------------------------------------


def test_matrix_registration_writes_random_tokens_for_the_bots_user_only(tmp_path: Path) -> None:
    code, out, err = write_registration(tmp_path, 9123)
    assert code == 0, err
    path = tmp_path / "registration.yaml"
    written = yaml.safe_load(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert written["url"] == "http://127.0.0.1:9123"
    assert written["sender_localpart"] == "peerbot"
    assert written["rate_limited"] is False
    assert written["namespaces"]["users"] == [{"exclusive": True, "regex": r"^@peerbot:peerbot\.test$"}]
    assert len(written["as_token"]) >= 40 and written["as_token"] != written["hs_token"]
    assert written["as_token"] not in out + err and written["hs_token"] not in out + err
    assert str(path) in out and "app_service_config_files" in out

    # Written again: refused, the tokens kept; with --force, new tokens.
    code, _, err = write_registration(tmp_path, 9123)
    assert code == 1 and "exists" in err and "--force" in err
    assert yaml.safe_load(path.read_text()) == written
    code, _, _ = write_registration(tmp_path, 9123, "--force")
    again = yaml.safe_load(path.read_text())
    assert code == 0 and again["as_token"] != written["as_token"] and again["hs_token"] != written["hs_token"]


def test_a_registration_for_another_user_or_without_a_token_is_refused(tmp_path: Path) -> None:
    code, _, _ = write_registration(tmp_path, 9123)
    raw = yaml.safe_load((tmp_path / "registration.yaml").read_text())
    assert repr(read_registration(raw, BOT_USER)).count(raw["as_token"]) == 0
    with pytest.raises(ValueError, match="sender_localpart: 'peerbot' is not the bot's user @other"):
        read_registration(raw, "@other:peerbot.test")
    with pytest.raises(ValueError, match="hs_token: missing"):
        read_registration({**raw, "hs_token": ""}, BOT_USER)
    # check-config reads it, and says which key is wrong.
    config = tmp_path / "peerbot.yaml"
    code, out, err = _run_cli(["check-config", "--config", str(config)])
    assert code == 0 and "matrix (appservice, listening on 127.0.0.1:9123)" in out
    (tmp_path / "registration.yaml").write_text(yaml.safe_dump({**raw, "as_token": None}))
    code, out, err = _run_cli(["check-config", "--config", str(config)])
    assert code == 1 and "matrix.registration:" in err and "as_token: missing" in err


# Against Synapse ----------------------------------------------------------------------------------


async def test_commands_are_answered_as_the_bots_user_and_no_token_is_logged(
    appservice_bot: StartBot, people: Callable[..., Member], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = people()
    bot = await appservice_bot()
    room = await room_with_bot(alice)
    answer = await ask(alice, room, "!peer status")
    assert "Convening" in answer
    notice = alice.find(room, from_bot(BOT_USER))[0]
    assert notice["sender"] == BOT_USER
    assert adapter_of(bot).transactions >= 2  # the invite, then the command: pushed, not synced
    assert any(isinstance(e, CommandInvoked) for e in bot.engine.received)
    registration = adapter_of(bot).appservice.registration
    assert "listening at" in caplog.text
    assert registration.as_token not in caplog.text and registration.hs_token not in caplog.text


async def test_a_vote_counts_once_when_synapse_sends_a_transaction_again(
    db_url: str, appservice_bot: StartBot, people: Callable[[], Member]
) -> None:
    """On SQLite and PostgreSQL: a transaction that failed after its events were applied is sent again
    by Synapse itself; one whose answer was lost is replayed here by hand. Each vote counts once."""
    alice, bob, carol = people(), people(), people()
    bot = await appservice_bot(db_url)
    room = await room_with_bot(alice, bob, carol)
    poll = await open_goal_poll(alice, bot, room)

    # Applied, then the process "fails" before the transaction is recorded: HTTP 500, Synapse retries.
    bot.engine.crash_on_next_reaction = True
    agree = await bob.reacts(room, poll, "✅")
    await bot.engine.wait_for(lambda got: sum(e.event_id == agree for e in got) == 2)

    # Carol's vote, and its transaction replayed by hand as if Synapse had not seen the answer.
    block = await carol.reacts(room, poll, "⛔")
    await bot.engine.wait_for(lambda got: any(e.event_id == block for e in got))
    await carol.sees(room, lambda e: e.get("event_id") == block)
    event = {**carol.find(room, lambda e: e.get("event_id") == block)[0], "room_id": room}

    def handed_over() -> int:
        return sum(e.event_id == block for e in bot.engine.received)

    assert await put_transaction(bot, "by-hand-1", [event]) == (200, {})
    assert handed_over() == 2  # a new transaction: handed to the engine, which knows the event
    assert await put_transaction(bot, "by-hand-1", [event]) == (200, {})
    assert handed_over() == 2  # the same transaction again: known, not applied
    async with bot.store.read() as tx:
        assert await tx.state(PLATFORM).batch_applied("by-hand-1")
    assert "✅ 1, 🤔 0, ⛔ 1" in await ask(alice, room, "!peer goal show 1")


async def test_the_bot_is_not_rate_limited_where_a_user_is(
    appservice_homeserver: AppserviceHomeserver, appservice_bot: StartBot, people: Callable[..., Member]
) -> None:
    """Under Synapse's default message limit (0.2/s, burst 10) a member is refused past the burst; the
    bot (registered with rate_limited: false) is not."""
    alice = people(limited=True)
    bot = await appservice_bot()
    room = await room_with_bot(alice)

    statuses = []
    headers = {"Authorization": f"Bearer {alice.account.access_token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for n in range(14):  # raw, since nio would sleep through the 429s
            url = (
                f"{appservice_homeserver.server.url}/_matrix/client/v3/rooms/{room}/send/m.room.message/t{n}"
            )
            async with session.put(url, json={"msgtype": "m.text", "body": f"{n}"}) as response:
                statuses.append(response.status)
    assert 429 in statuses

    started = time.monotonic()
    sent = [await bot.chat.post(room, f"notice {n}") for n in range(30)]
    took = time.monotonic() - started
    assert len(set(sent)) == 30
    assert took < 15, f"30 notices took {took:.1f} s"  # at 0.2/s past a burst of 10 they take 100 s
    await alice.sees(room, lambda e: e.get("event_id") == sent[-1])


async def test_a_restarted_bot_gets_what_synapse_held_for_it(
    appservice_bot: StartBot, people: Callable[[], Member], tmp_path: Path
) -> None:
    """Commands written while the bot was down are pushed when it starts again (its ping asks for them)."""
    alice = people()
    bot = await appservice_bot()
    room = await room_with_bot(alice)
    await bot.stop()
    asked = await alice.says(room, "!peer status")
    await appservice_bot()
    answer = await alice.sees(room, reply_to(asked), within=60)
    assert "Convening" in answer["content"]["body"]


async def test_the_listener_refuses_a_wrong_token_and_bad_transactions(
    appservice_bot: StartBot,
) -> None:
    bot = await appservice_bot()
    adapter = adapter_of(bot)
    status, body = await put_transaction(bot, "t1", [], token="")
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    status, body = await put_transaction(bot, "t1", [], token="not-the-hs-token")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    async with bot.store.read() as tx:
        assert not await tx.state(PLATFORM).batch_applied("t1")

    headers = {"Authorization": f"Bearer {adapter.appservice.registration.hs_token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{adapter.url}/_matrix/app/v1"
        async with session.put(f"{url}/transactions/t2", data=b"{not json") as response:
            assert response.status == 400
        async with session.put(f"{url}/transactions/t2", data=json.dumps({"events": 3})) as response:
            assert response.status == 400
        async with session.get(f"{url}/users/{BOT_USER}") as response:
            assert response.status == 200
        async with session.get(f"{url}/users/@someone:peerbot.test") as response:
            assert (response.status, (await response.json())["errcode"]) == (404, "M_NOT_FOUND")
        async with session.get(f"{url}/rooms/%23room:peerbot.test") as response:
            assert response.status == 404
        async with session.post(f"{url}/ping", json={}) as response:
            assert response.status == 200
    # A transaction with events that are not events is applied as empty: nothing crashes.
    assert await put_transaction(bot, "t3", [{"type": 5}, {"room_id": "!x", "content": []}]) == (200, {})
    assert not any(isinstance(e, ReactionAdded) for e in bot.engine.received)
    assert await adapter.ping() is not None
