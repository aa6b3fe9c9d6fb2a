"""The fake Discord itself, spoken to with a bare aiohttp client: what discord.py relies on holds."""

from __future__ import annotations

from typing import Any

import aiohttp

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
