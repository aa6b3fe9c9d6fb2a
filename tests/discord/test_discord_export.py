"""/export on Discord: the file is the attachment of the command's answer, uploaded the way Discord takes
files (multipart, payload_json and files[n]), through the real discord.py client."""

from __future__ import annotations

import json

import aiohttp
import pytest

from core.events import Attachment
from core.ports import FileTooLarge, Outbound
from core.refs import ChannelRef
from tests.fake_discord.scene import DiscordScene


async def test_export_answers_with_the_whole_file_attached_and_a_one_line_summary(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    await scene.alice.runs("/goal propose", text="Learn Rust together")
    await scene.carol.runs("/reflect", text="Pairing works")
    answer = await scene.bob.runs("/export", format="json")
    assert answer.deferred  # a file is uploaded after deferring: it may take longer than 3 s
    assert not answer.ephemeral
    original = answer.interaction.original
    assert original is not None
    (attachment,) = original["attachments"]
    assert attachment["filename"] == "peerbot-general-2026-03-02-0900.json"
    assert attachment["content_type"] == "application/json"
    data = json.loads(scene.fake.attachment_data[attachment["id"]])
    assert [g["text"] for g in data["goals"]] == ["Learn Rust together"]
    assert [r["text"] for r in data["reflections"]] == ["Pairing works"]
    assert attachment["size"] == len(scene.fake.attachment_data[attachment["id"]])
    summary = original["content"]
    assert summary.startswith(
        "📦 #general: the group's record as JSON, 1 goal, 1 poll, 0 reviews, 1 reflection ("
    )
    assert "\n" not in summary
    assert original["allowed_mentions"] == {"parse": []}
    # The upload as discord.py sent it: the body in payload_json, the file in files[0].
    (upload,) = [r for r in scene.fake.requests if r.route == "edit_original"]
    assert upload.body["attachments"] == [{"id": 0, "filename": attachment["filename"]}]
    assert [(f.field, f.filename) for f in upload.files] == [("files[0]", attachment["filename"])]
    async with aiohttp.ClientSession() as http, http.get(attachment["url"]) as got:
        assert json.loads(await got.read()) == data


async def test_an_export_over_the_servers_attachment_limit_is_refused_privately(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    scene.fake.attachment_size_limit = 200  # this server's limit, as interactions tell it
    await scene.alice.runs("/goal propose", text="Learn Rust together")
    answer = await scene.bob.runs("/export", format="json")
    assert answer.ephemeral
    assert answer.content.startswith("The JSON export is ")
    assert ", over the 200 bytes a file may have here, so it was not sent. CSV is the smallest:" in (
        answer.content
    )
    assert not [r for r in scene.fake.requests if r.files]  # nothing was uploaded


async def test_send_file_posts_one_message_with_the_file_once_per_key(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.bot is not None
    chat = scene.bot.chat
    channel = ChannelRef("discord", scene.channel.id)
    notes = Attachment("notes.md", "# Notes\nöffentlich\n".encode(), "text/markdown; charset=utf-8")
    first = await chat.send_file(channel, notes, Outbound("📦 the notes"), key="pb7")
    again = await chat.send_file(channel, notes, Outbound("📦 the notes"), key="pb7")
    assert again == first  # Discord answers a repeated nonce with the first message
    (message,) = scene.fake.sent_messages(scene.channel)
    assert message["content"] == "📦 the notes"
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "notes.md"
    assert scene.fake.attachment_data[attachment["id"]] == notes.data
    (create, _) = [r for r in scene.fake.requests if r.route == "create_message"]
    assert create.body["allowed_mentions"]["parse"] == [] and create.body["enforce_nonce"] is True


async def test_send_file_over_the_limit_raises_file_too_large(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.bot is not None
    channel = ChannelRef("discord", scene.channel.id)
    assert await scene.bot.chat.max_file_size(channel) == 10 * 1024 * 1024  # the guild's tier: none
    scene.fake.attachment_size_limit = 4
    with pytest.raises(FileTooLarge) as refused:
        await scene.bot.chat.send_file(channel, Attachment("a.csv", b"a,b,c", "text/csv"), Outbound("x"))
    assert refused.value.permanent and refused.value.size == 5
    assert scene.fake.sent_messages(scene.channel) == []


async def test_a_refused_upload_is_answered_privately_with_why(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    scene.fake.fail("edit_original", 400)  # a 5xx would be retried by discord.py, and pass
    answer = await scene.bob.runs("/export", format="csv")
    assert answer.ephemeral
    assert answer.content == "Sorry, the file could not be sent (400 Invalid Form Body). Try again later."
    assert answer.interaction.original_deleted  # no "thinking" left behind
