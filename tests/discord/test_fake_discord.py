"""The fake Discord itself, spoken to with a bare aiohttp client: what discord.py relies on holds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.fake_discord.server import FakeDiscord, command_problems

GUILDS, GUILD_MESSAGES, GUILD_REACTIONS = 1, 1 << 9, 1 << 10


def auth(fake: FakeDiscord) -> dict[str, str]:
    return {"Authorization": f"Bot {fake.token}"}


async def test_unknown_routes_are_404_and_recorded(fake_discord: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{fake_discord.api_base_url}/guilds/1/audit-logs", headers=auth(fake_discord)) as r,
    ):
        assert r.status == 404
    assert fake_discord.unknown_routes == ["GET /api/v10/guilds/1/audit-logs"]
    fake_discord.unknown_routes.clear()  # expected here; the fixture would fail the test otherwise


async def test_json_content_type_auth_and_an_injected_429(fake_discord: FakeDiscord) -> None:
    guild = fake_discord.add_guild("g")
    channel = fake_discord.add_channel(guild, "c")
    url = f"{fake_discord.api_base_url}/channels/{channel.id}/messages"
    fake_discord.fail("create_message", 429, retry_after=0.5)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"content": "x"}) as r:
            assert r.status == 401
        async with http.post(url, json={"content": "x"}, headers=auth(fake_discord)) as r:
            assert r.status == 429
            assert r.headers["Content-Type"] == "application/json"
            assert r.headers["Via"]
            assert (await r.json())["retry_after"] == 0.5
        async with http.post(url, json={"content": "x"}, headers=auth(fake_discord)) as r:
            assert r.status == 200
            assert r.headers["X-RateLimit-Remaining"] == "4"
            assert r.headers["X-RateLimit-Bucket"]


async def test_the_global_limit_counts_every_call_with_the_token_but_not_interaction_responses(
    fake_discord: FakeDiscord,
) -> None:
    """50 calls in a second, whatever their routes: the 51st is a global 429 (the message read's own
    bucket still has room); an interaction response is not counted; once the wait is over calls go
    through again."""
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    message = fake._message(channel.id, fake.bot, {"content": "x"})
    fake.messages[message["id"]] = message
    read = f"{fake.api_base_url}/channels/{channel.id}/messages/{message['id']}"
    async with aiohttp.ClientSession() as http:
        for n in range(49):
            async with http.get(f"{fake.api_base_url}/users/@me", headers=auth(fake)) as r:
                assert r.status == 200, n
        callback = f"{fake.api_base_url}/interactions/1/token/callback"  # no token: not counted
        async with http.post(callback, json={"type": 4, "data": {"content": "x"}}) as r:
            assert r.status == 404  # unknown interaction, not 429
        async with http.get(read, headers=auth(fake)) as r:
            assert r.status == 200
            assert r.headers["X-RateLimit-Limit"] == "5" and r.headers["X-RateLimit-Remaining"] == "4"
        async with http.get(read, headers=auth(fake)) as r:
            assert r.status == 429
            assert r.headers["X-RateLimit-Global"] == "true"
            assert r.headers["X-RateLimit-Scope"] == "global"
            assert r.headers["Via"]
            body = await r.json()
            assert body["global"] is True and 0 < body["retry_after"] <= 1.0
        await asyncio.sleep(body["retry_after"])
        async with http.get(read, headers=auth(fake)) as r:
            assert r.status == 200
    assert len(fake.rate_limited) == 1
    fake.rate_limited.clear()  # provoked on purpose; the fixture would fail the test otherwise


async def test_a_channel_read_bucket_answers_429_with_its_headers(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    message = fake._message(channel.id, fake.bot, {"content": "x"})
    fake.messages[message["id"]] = message
    read = f"{fake.api_base_url}/channels/{channel.id}/messages/{message['id']}"
    async with aiohttp.ClientSession() as http:
        for remaining in (4, 3, 2, 1, 0):
            async with http.get(read, headers=auth(fake)) as r:
                assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == str(remaining)
        async with http.get(read, headers=auth(fake)) as r:
            assert r.status == 429
            assert r.headers["X-RateLimit-Scope"] == "user" and "X-RateLimit-Global" not in r.headers
            assert (await r.json())["global"] is False
    fake.rate_limited.clear()


async def test_gateway_bot_tells_the_recommended_shard_count(fake_discord: FakeDiscord) -> None:
    fake_discord.recommended_shards = 4
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{fake_discord.api_base_url}/gateway/bot", headers=auth(fake_discord)) as r,
    ):
        assert (await r.json())["shards"] == 4


def multipart(payload: dict[str, Any], *files: tuple[str, bytes]) -> aiohttp.FormData:
    """A body as Discord takes one with files: payload_json, then files[0], files[1] ..."""
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps(payload))
    for index, (filename, data) in enumerate(files):
        form.add_field(f"files[{index}]", data, filename=filename, content_type="application/octet-stream")
    return form


async def test_a_message_with_files_is_multipart_and_its_attachments_are_kept(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    url = f"{fake.api_base_url}/channels/{channel.id}/messages"
    payload = {
        "content": "two files",
        "attachments": [{"id": 0, "filename": "a.json"}, {"id": 1, "filename": "b.csv"}],
    }
    form = multipart(payload, ("upload-a", b'{"a": 1}'), ("upload-b", b"x,y\r\n"))
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=form, headers=auth(fake)) as r:
            assert r.status == 200
            message = await r.json()
        assert message["content"] == "two files"
        first, second = message["attachments"]
        assert (first["filename"], first["size"], first["content_type"]) == ("a.json", 8, "application/json")
        assert (second["filename"], second["content_type"]) == ("b.csv", "text/csv; charset=utf-8")
        (request,) = fake.bodies("create_message")
        assert request == payload
        async with http.get(second["url"]) as r:
            assert await r.read() == b"x,y\r\n"
    assert fake.sent_messages(channel)[0]["attachments"] == message["attachments"]


async def test_a_file_over_the_attachment_limit_is_refused_with_413(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.attachment_size_limit = 10
    channel = fake.add_channel(fake.add_guild("g"), "c")
    form = multipart({"content": "big"}, ("big.json", b"x" * 11))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.api_base_url}/channels/{channel.id}/messages", data=form, headers=auth(fake)) as r,
    ):
        assert r.status == 413
        assert (await r.json())["code"] == 40005
    assert fake.sent_messages(channel) == []


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame: dict[str, Any] = await ws.receive_json(timeout=5)
    return frame


async def test_the_gateway_session_from_hello_to_resume(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.add_guild("g")
    channel = fake.add_channel(guild, "c")
    fake.add_member(guild, "alice")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake.gateway_url) as ws:
            assert (await receive(ws))["op"] == 10
            await ws.send_json({"op": 1, "d": None})
            assert (await receive(ws))["op"] == 11
            intents = GUILDS | GUILD_MESSAGES | GUILD_REACTIONS
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": intents, "properties": {}}})
            ready = await receive(ws)
            assert (ready["t"], ready["s"]) == ("READY", 1)
            for key in ("user", "guilds", "session_id", "resume_gateway_url", "application"):
                assert key in ready["d"]
            created = (await receive(ws))["d"]
            assert created["member_count"] == len(created["members"]) == 2
            assert {"channels", "roles"} <= set(created)
            async with http.post(
                f"{fake.api_base_url}/channels/{channel.id}/messages",
                json={"content": "hi"},
                headers=auth(fake),
            ) as r:
                message = await r.json()
            echo = await receive(ws)
            assert (echo["t"], echo["s"], echo["d"]["id"]) == ("MESSAGE_CREATE", 3, message["id"])
            await ws.close(code=4000)  # not 1000: a clean close would end the session
        session = ready["d"]["session_id"]
        # Missed while disconnected: replayed on RESUME with the original numbers.
        fake.react(fake.users[next(iter(guild.members))], message, "✅")
        async with http.ws_connect(fake.gateway_url) as ws:
            await receive(ws)
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": session, "seq": 3}})
            missed = await receive(ws)
            assert (missed["t"], missed["s"]) == ("MESSAGE_REACTION_ADD", 4)
            assert (await receive(ws))["t"] == "RESUMED"
        async with http.ws_connect(fake.gateway_url) as ws:
            await receive(ws)
            await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": "nope", "seq": 1}})
            assert await receive(ws) == {"op": 9, "d": False, "s": None, "t": None}


async def test_without_the_intent_there_is_no_message_echo(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.add_guild("g")
    channel = fake.add_channel(guild, "c")
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        await receive(ws)
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": GUILDS | GUILD_REACTIONS}})
        await receive(ws)
        await receive(ws)
        async with http.post(
            f"{fake.api_base_url}/channels/{channel.id}/messages", json={"content": "hi"}, headers=auth(fake)
        ) as r:
            message = await r.json()
        async with http.put(
            f"{fake.api_base_url}/channels/{channel.id}/messages/{message['id']}/reactions/%E2%9C%85/@me",
            headers=auth(fake),
        ) as r:
            assert r.status == 204
        assert (await receive(ws))["t"] == "MESSAGE_REACTION_ADD"  # the first thing after READY


def test_command_payloads_are_checked_as_discord_would() -> None:
    good = {"name": "goal", "description": "goals", "options": [
        {"type": 1, "name": "show", "description": "one", "options": [
            {"type": 4, "name": "id", "description": "n", "required": True}]}]}  # fmt: skip
    assert command_problems([good]) == []
    bad = {"name": "Goal List", "description": "", "options": [
        {"type": 3, "name": "a", "description": "x", "required": False},
        {"type": 3, "name": "b", "description": "x", "required": True}]}  # fmt: skip
    assert command_problems([bad, bad]) == [
        "duplicate command names",
        "Goal List: bad name 'Goal List'",
        "Goal List: description must be 1-100 characters",
        "Goal List: required option after an optional one",
        "Goal List: bad name 'Goal List'",
        "Goal List: description must be 1-100 characters",
        "Goal List: required option after an optional one",
    ]


async def test_a_message_with_its_reactions_and_their_users_page_by_page(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    guild = fake.add_guild("g")
    channel = fake.add_channel(guild, "c")
    members = [fake.add_member(guild, f"m{i}") for i in range(3)]
    message = fake._message(channel.id, fake.bot, {"content": "poll"})
    fake.messages[message["id"]] = message
    for member in members:
        fake.react(member, message, "✅")
    fake.react(members[0], message, "party:42")
    base = f"{fake.api_base_url}/channels/{channel.id}/messages/{message['id']}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base, headers=auth(fake)) as r:
            reactions = (await r.json())["reactions"]
        assert [(x["emoji"], x["count"], x["me"]) for x in reactions] == [
            ({"id": None, "name": "✅"}, 3, False),
            ({"id": "42", "name": "party"}, 1, False),
        ]
        pages = []
        after = "0"
        for _ in range(3):
            url = f"{base}/reactions/%E2%9C%85?limit=2&after={after}"
            async with http.get(url, headers=auth(fake)) as r:
                pages.append([u["id"] for u in await r.json()])
            after = pages[-1][-1] if pages[-1] else after
        assert pages == [[members[0].id, members[1].id], [members[2].id], []]
        async with http.get(f"{base}/reactions/party%3A42", headers=auth(fake)) as r:
            assert [u["username"] for u in await r.json()] == ["m0"]
        async with http.get(f"{base}/reactions/%E2%9C%85?limit=101", headers=auth(fake)) as r:
            assert r.status == 400
        fake.delete_message(message)
        async with http.get(base, headers=auth(fake)) as r:
            assert (r.status, (await r.json())["code"]) == (404, 10008)


# Nonces -----------------------------------------------------------------------------------------


async def post(
    http: aiohttp.ClientSession, fake: FakeDiscord, channel_id: str, body: dict[str, Any]
) -> tuple[int, Any]:
    url = f"{fake.api_base_url}/channels/{channel_id}/messages"
    async with http.post(url, json=body, headers=auth(fake)) as r:
        return r.status, await r.json()


async def test_an_enforced_nonce_returns_the_first_message_and_creates_none(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    guild = fake.add_guild("g")
    channel, other = fake.add_channel(guild, "c"), fake.add_channel(guild, "d")
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        await receive(ws)
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": GUILDS | GUILD_MESSAGES}})
        await receive(ws)  # READY
        await receive(ws)  # GUILD_CREATE
        status, first = await post(
            http, fake, channel.id, {"content": "a", "nonce": "k1.0", "enforce_nonce": True}
        )
        assert status == 200 and first["nonce"] == "k1.0"
        # The same author and nonce: the first message, whatever the channel and content.
        for again in (channel, other):
            body = {"content": "b", "nonce": "k1.0", "enforce_nonce": True}
            assert await post(http, fake, again.id, body) == (200, first)
        status, second = await post(
            http, fake, channel.id, {"content": "c", "nonce": "k2.0", "enforce_nonce": True}
        )
        echoes = [await receive(ws), await receive(ws)]
    assert [(e["t"], e["d"]["id"]) for e in echoes] == [
        ("MESSAGE_CREATE", first["id"]),
        ("MESSAGE_CREATE", second["id"]),
    ]
    assert [m["id"] for m in fake.sent_messages(channel)] == [first["id"], second["id"]]
    assert fake.sent_messages(other) == []


async def test_a_nonce_without_enforce_nonce_is_echoed_not_enforced(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    async with aiohttp.ClientSession() as http:
        _, first = await post(http, fake, channel.id, {"content": "a", "nonce": 1234})
        _, second = await post(
            http, fake, channel.id, {"content": "a", "nonce": 1234, "enforce_nonce": False}
        )
    assert first["nonce"] == second["nonce"] == 1234
    assert first["id"] != second["id"]
    assert len(fake.sent_messages(channel)) == 2


async def test_an_enforced_nonce_is_remembered_for_a_few_minutes_only(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    body = {"content": "a", "nonce": "k", "enforce_nonce": True}
    fake.nonce_window = 0.0  # as if the few minutes had passed
    async with aiohttp.ClientSession() as http:
        _, first = await post(http, fake, channel.id, body)
        _, second = await post(http, fake, channel.id, body)
    assert first["id"] != second["id"]


async def test_a_nonce_whose_message_was_deleted_is_404(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    body = {"content": "a", "nonce": "k", "enforce_nonce": True}
    async with aiohttp.ClientSession() as http:
        _, first = await post(http, fake, channel.id, body)
        fake.delete_message(first)
        status, error = await post(http, fake, channel.id, body)
    assert (status, error["code"]) == (404, 10008)
    assert fake.sent_messages(channel) == []


async def test_a_nonce_longer_than_25_characters_is_refused(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    async with aiohttp.ClientSession() as http:
        assert (await post(http, fake, channel.id, {"content": "a", "nonce": "n" * 25}))[0] == 200
        status, error = await post(
            http, fake, channel.id, {"content": "a", "nonce": "n" * 26, "enforce_nonce": True}
        )
    assert status == 400
    assert error == {
        "message": "Invalid Form Body",
        "code": 50035,
        "errors": {
            "nonce": {
                "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]
            }
        },
    }
    assert len(fake.sent_messages(channel)) == 1


async def test_direct_messages_share_one_channel_and_honour_nonces(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    alice = fake.add_member(fake.add_guild("g"), "alice")
    async with aiohttp.ClientSession() as http:
        ids = []
        for _ in range(2):
            url = f"{fake.api_base_url}/users/@me/channels"
            async with http.post(url, json={"recipient_id": alice.id}, headers=auth(fake)) as r:
                ids.append((await r.json())["id"])
        body = {"content": "psst", "nonce": "dm1.0", "enforce_nonce": True}
        _, first = await post(http, fake, ids[0], body)
        _, again = await post(http, fake, ids[1], body)
    dm = fake.dm_channel(alice)
    assert dm is not None and ids == [dm.id, dm.id]
    assert first == again
    assert [m["id"] for m in fake.sent_messages(dm)] == [first["id"]]


# Holding a request ------------------------------------------------------------------------------


async def test_an_applied_hold_stores_the_message_and_answers_when_released(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    held = fake.hold("create_message", applied=True)
    async with aiohttp.ClientSession() as http:
        posting = asyncio.create_task(post(http, fake, channel.id, {"content": "held"}))
        record = await asyncio.wait_for(held.reached, 5)
        (stored,) = fake.sent_messages(channel)
        assert (record.route, record.body["content"], stored["content"]) == ("create_message", "held", "held")
        assert not posting.done() and record.status == 0  # no answer has left the fake
        held.release()
        assert await posting == (200, stored)
    assert record.status == 200


async def test_an_unapplied_hold_stores_nothing_until_released(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    held = fake.hold("create_message", applied=False)
    async with aiohttp.ClientSession() as http:
        posting = asyncio.create_task(post(http, fake, channel.id, {"content": "held"}))
        await asyncio.wait_for(held.reached, 5)
        assert fake.sent_messages(channel) == []
        held.release()
        status, message = await posting
    assert status == 200
    assert [m["id"] for m in fake.sent_messages(channel)] == [message["id"]]


async def test_a_hold_takes_only_the_request_it_names(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    held = fake.hold("create_message", applied=False, where=lambda r: r.body["content"] == "second")
    async with aiohttp.ClientSession() as http:
        assert (await post(http, fake, channel.id, {"content": "first"}))[0] == 200
        posting = asyncio.create_task(post(http, fake, channel.id, {"content": "second"}))
        assert (await asyncio.wait_for(held.reached, 5)).body["content"] == "second"
        assert (await post(http, fake, channel.id, {"content": "third"}))[0] == 200  # holds are one-shot
        held.release()
        await posting
    assert [m["content"] for m in fake.sent_messages(channel)] == ["first", "third", "second"]
    with pytest.raises(ValueError, match="no route named"):
        fake.hold("create_messages", applied=True)


@pytest.mark.parametrize("applied", [True, False])
async def test_a_cut_hold_whose_client_died_is_never_answered(
    fake_discord: FakeDiscord, applied: bool
) -> None:
    """The SIGKILL case: the client goes away while its request is held, and the test cuts it; an
    unapplied request is never carried out."""
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    held = fake.hold("create_message", applied=applied)
    http = aiohttp.ClientSession()
    posting = asyncio.create_task(post(http, fake, channel.id, {"content": "in flight"}))
    record = await asyncio.wait_for(held.reached, 5)
    posting.cancel()
    await http.close()  # the process dies: its connections close
    held.cut()
    await fake.until(lambda: held.done)
    assert len(fake.sent_messages(channel)) == (1 if applied else 0)
    assert record.status == 0


async def test_a_cut_hold_is_a_connection_error_for_the_client(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    channel = fake.add_channel(fake.add_guild("g"), "c")
    held = fake.hold("create_message", applied=True)
    async with aiohttp.ClientSession() as http:
        posting = asyncio.create_task(post(http, fake, channel.id, {"content": "lost answer"}))
        await asyncio.wait_for(held.reached, 5)
        held.cut()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await posting
    assert len(fake.sent_messages(channel)) == 1
