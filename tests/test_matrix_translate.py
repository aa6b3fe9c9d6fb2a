"""Matrix payloads <-> neutral events, on a timeline recorded from Synapse 1.163 (room version 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.matrix.pacing import RateLimited, with_rate_limit
from adapters.matrix.translate import (
    MAX_BODY_BYTES,
    WORD_JOINER,
    ReactionRecord,
    Room,
    command_text,
    defuse_mentions,
    edit_content,
    fit_body,
    inviter_allowed,
    inviter_of,
    is_direct_invite,
    is_facilitator,
    json_size,
    notice_content,
    redaction_targets,
    refusal,
    since_own_join,
    split_body,
    strip_reply_fallback,
    thread_root,
    transaction_id,
    translate_timeline,
)
from adapters.pacing import Pacer
from core.events import (
    CommandInvoked,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    ReactionAdded,
    ReactionRemoved,
)
from core.refs import ChannelRef, MessageRef, UserRef

RECORDED = json.loads((Path(__file__).parent / "recorded" / "matrix_timeline.json").read_text())
ROOM_ID: str = RECORDED["room_id"]
TIMELINE: list[dict[str, Any]] = RECORDED["timeline"]
ALICE, BOB, BOT = "@alice:peerbot.test", "@bob:peerbot.test", "@peerbot:peerbot.test"
CHANNEL = ChannelRef("matrix", ROOM_ID, "Rust learners")


def event(kind: str, body: str | None = None) -> dict[str, Any]:
    """The first recorded event of a type (and body)."""
    for item in TIMELINE:
        if item["type"] == kind and (body is None or item["content"].get("body") == body):
            return item
    raise LookupError(kind)


def translate(events: list[dict[str, Any]], known: dict[str, ReactionRecord] | None = None) -> Any:
    room = Room(ROOM_ID, "Rust learners", {BOB: "Bob B."})
    return translate_timeline(room, events, bot_user_id=BOT, prefix="!peer", known_reactions=known or {})


def test_the_recorded_timeline_becomes_neutral_events() -> None:
    result = translate(TIMELINE)
    proposal = event("m.room.message", "!peer goal propose Learn Rust")
    kept = TIMELINE[-2]
    assert [type(e) for e in result.events] == [
        MemberJoined,  # alice, creating the room
        MemberJoined,  # bob joins (his display name change after is no join)
        CommandInvoked,  # alice proposes
        CommandInvoked,  # bob's reply, its quoted fallback dropped
        MessagePosted,  # hello all (the edit is skipped)
        ReactionAdded,  # alice's 👍 (bob's ✅ was redacted before it was seen)
    ]
    _, joined, command, reply, _, vote = result.events
    assert joined == MemberJoined(joined.event_id, CHANNEL, UserRef("matrix", BOB))
    assert command == CommandInvoked(
        proposal["event_id"],
        CHANNEL,
        UserRef("matrix", ALICE),
        "goal propose Learn Rust",
        None,
        MessageRef(CHANNEL, proposal["event_id"]),
    )
    assert isinstance(reply, CommandInvoked) and reply.text == "goal list"
    assert reply.user.display == "Bob B." and reply.channel.display == "Rust learners"
    assert vote == ReactionAdded(
        kept["event_id"], MessageRef(CHANNEL, proposal["event_id"]), UserRef("matrix", ALICE), "👍"
    )
    assert result.reactions == {kept["event_id"]: ReactionRecord(ROOM_ID, proposal["event_id"], "👍", ALICE)}


def test_a_redaction_takes_back_the_remembered_reaction() -> None:
    redaction = TIMELINE[-1]
    target = redaction["content"]["redacts"]
    assert redaction_targets(TIMELINE) == [target]
    record = ReactionRecord(ROOM_ID, "$poll", "✅", BOB)
    result = translate([redaction], {target: record})
    assert result.events == [
        ReactionRemoved(redaction["event_id"], MessageRef(CHANNEL, "$poll"), UserRef("matrix", BOB), "✅")
    ]
    assert result.forgotten == {target}  # its record is no longer needed
    assert translate([redaction]).events == []  # a reaction never seen: nothing to take back
    elsewhere = ReactionRecord("!other", "$poll", "✅", BOB)
    assert translate([redaction], {target: elsewhere}).events == []
    assert ReactionRecord.from_json(record.to_json()) == record


def test_a_reaction_and_its_redaction_in_one_batch_cancel_out() -> None:
    reaction = TIMELINE[-2]
    redaction = {**TIMELINE[-1], "content": {"redacts": reaction["event_id"]}}
    result = translate([reaction, redaction])
    assert [type(e) for e in result.events] == [ReactionAdded, ReactionRemoved]
    assert result.reactions == {} and result.forgotten == {reaction["event_id"]}


def test_the_bots_own_events_and_repeats_are_skipped() -> None:
    mine = {**event("m.room.message", "hello all"), "sender": BOT}
    proposal = event("m.room.message", "!peer goal propose Learn Rust")
    result = translate([mine, proposal, proposal])
    assert [e.event_id for e in result.events] == [proposal["event_id"]]


def member_event(event_id: str, sender: str, member: str, state: str, before: str | None) -> dict[str, Any]:
    """An m.room.member event as a sync gives it, with the membership it replaces."""
    unsigned = {"prev_content": {"membership": before}} if before else {}
    content = {"membership": state, "displayname": "carol"}
    return {
        "type": "m.room.member",
        "event_id": event_id,
        "sender": sender,
        "state_key": member,
        "content": content,
        "unsigned": unsigned,
    }


def test_joining_and_leaving_the_room_are_membership_events() -> None:
    carol = "@carol:peerbot.test"
    result = translate(
        [
            member_event("$in", carol, carol, "join", "invite"),  # by the name her join carries
            member_event("$out", carol, carol, "leave", "join"),
            member_event("$kicked", ALICE, BOB, "leave", "join"),  # removed by someone else: gone too
            member_event("$banned", ALICE, carol, "ban", "join"),
            member_event("$declined", carol, carol, "leave", "invite"),  # was never in the room
            member_event("$invited", ALICE, carol, "invite", None),
        ]
    )
    assert result.events == [
        MemberJoined("$in", CHANNEL, UserRef("matrix", carol, "carol")),
        MemberLeft("$out", CHANNEL, UserRef("matrix", carol)),
        MemberLeft("$kicked", CHANNEL, UserRef("matrix", BOB)),
        MemberLeft("$banned", CHANNEL, UserRef("matrix", carol)),
    ]
    assert result.events[0].user.display == "carol"


def test_in_a_room_made_for_a_direct_conversation_only_commands_count_written_privately() -> None:
    room = Room(ROOM_ID, "", {})
    result = translate_timeline(
        room, TIMELINE, bot_user_id=BOT, prefix="!peer", known_reactions={}, direct=True
    )
    assert [(type(e), e.direct) for e in result.events if isinstance(e, CommandInvoked)] == [
        (CommandInvoked, True),
        (CommandInvoked, True),
    ]
    assert all(isinstance(e, CommandInvoked) for e in result.events)  # no joins, messages or votes
    assert result.reactions == {}
    invite = {
        "type": "m.room.member",
        "sender": BOT,
        "state_key": BOB,
        "content": {"membership": "invite", "is_direct": True},
    }
    assert is_direct_invite(invite, BOT)
    assert not is_direct_invite({**invite, "content": {"membership": "invite"}}, BOT)
    assert not is_direct_invite({**invite, "sender": ALICE}, BOT)  # a member's direct room is not the bot's


def test_history_before_the_bots_join_is_dropped() -> None:
    join = {
        "type": "m.room.member",
        "event_id": "$join",
        "sender": BOT,
        "state_key": BOT,
        "content": {"membership": "join"},
    }
    profile = {**join, "event_id": "$rename", "unsigned": {"prev_content": {"membership": "join"}}}
    old, new = TIMELINE[10], TIMELINE[13]
    assert since_own_join([old, join, new], BOT) == [new]
    assert since_own_join([old, join, profile, new], BOT) == [profile, new]
    assert since_own_join([old, new], BOT) == [old, new]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("!peer goal propose Learn Rust", "goal propose Learn Rust"),
        ("  !PEER   status ", "status"),
        ("!peer", ""),
        ("!peer\nhelp", "help"),
        ("!peerage", None),
        ("hello !peer help", None),
        ("", None),
    ],
)
def test_commands_are_found_after_the_prefix(body: str, text: str | None) -> None:
    assert command_text(body, "!peer") == text


def test_a_reply_fallback_is_dropped() -> None:
    assert strip_reply_fallback("> <@a:x> old\n> more\n\n!peer help") == "!peer help"
    assert strip_reply_fallback("no quote\n> inside") == "no quote\n> inside"


def test_facilitators_by_power_or_as_creators_of_version_12_rooms() -> None:
    create = event("m.room.create")
    levels = {"users": {BOB: 50, "@mod:x": 49}, "users_default": 0}
    assert is_facilitator(ALICE, create_event=create, power_levels=levels, threshold=50)  # creator, v12
    assert is_facilitator(BOB, create_event=create, power_levels=levels, threshold=50)
    assert not is_facilitator("@mod:x", create_event=create, power_levels=levels, threshold=50)
    assert not is_facilitator("@carol:x", create_event=create, power_levels=levels, threshold=50)
    assert is_facilitator("@carol:x", create_event=create, power_levels={"users_default": 60}, threshold=50)
    extra = {**create, "content": {**create["content"], "additional_creators": ["@carol:x"]}}
    assert is_facilitator("@carol:x", create_event=extra, power_levels=levels, threshold=50)
    # Before version 12 the creator is only as powerful as m.room.power_levels says.
    old = {**create, "content": {"room_version": "10"}}
    assert not is_facilitator(ALICE, create_event=old, power_levels={"users": {ALICE: 0}}, threshold=50)
    assert is_facilitator(ALICE, create_event=old, power_levels=None, threshold=50)


def test_invites_are_checked_against_users_and_servers() -> None:
    state = [
        {"type": "m.room.member", "sender": ALICE, "state_key": BOT, "content": {"membership": "invite"}}
    ]
    assert inviter_of(state, BOT) == ALICE
    assert inviter_of([], BOT) is None
    assert inviter_allowed(ALICE, [])
    assert inviter_allowed(ALICE, [ALICE])
    assert inviter_allowed(ALICE, ["peerbot.test"])
    assert inviter_allowed(ALICE, [":peerbot.test"])
    assert inviter_allowed(ALICE, ["*:PEERBOT.test"])
    assert not inviter_allowed(ALICE, [BOB, "example.org"])
    assert not inviter_allowed(None, [ALICE])


def test_outbound_text_mentions_nobody_and_fits() -> None:
    content = notice_content("Ping @room and @bob:peerbot.test, mail me@example.org", reply_to="$cmd")
    assert content["m.mentions"] == {}
    assert content["msgtype"] == "m.notice"
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
    assert content["body"] == (
        f"Ping @{WORD_JOINER}room and @{WORD_JOINER}bob:peerbot.test, mail me@example.org"
    )
    assert defuse_mentions("@ROOM!") == f"@{WORD_JOINER}ROOM!"
    assert defuse_mentions("@roomy") == "@roomy"
    long = fit_body('é"' * MAX_BODY_BYTES)
    assert json_size(long) <= MAX_BODY_BYTES and long.endswith("too long for Matrix)")
    threaded = notice_content("ok", reply_to="$cmd", in_thread="$root")
    assert threaded["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$cmd"},
    }
    assert (
        thread_root({"content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}}) == "$root"
    )
    assert thread_root(TIMELINE[11]) is None
    edit = edit_content("$old", "new @room")
    assert edit["m.new_content"]["m.mentions"] == {} and edit["m.mentions"] == {}
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$old"}


def test_long_text_is_split_between_lines_into_parts_that_fit() -> None:
    lines = [f"{n:04d} " + "ü" * 40 for n in range(400)]  # about 34 KB: two parts
    parts = split_body("\n".join(lines), limit=20_000)
    assert len(parts) == 2
    assert all(json_size(p) <= 20_000 for p in parts)
    assert "\n".join(parts) == "\n".join(lines)
    one_long_line = '"' * 50_000  # escapes double it
    parts = split_body(one_long_line, limit=20_000)
    assert "".join(parts) == one_long_line and all(json_size(p) <= 20_000 for p in parts)
    many = split_body("x" * 100, limit=10, max_parts=3)
    assert len(many) == 3 and many[-1].endswith("too long for Matrix)")
    assert split_body("short") == ["short"] and split_body("") == [""]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_pacing_lets_a_burst_through_then_spaces_sends() -> None:
    time = FakeTime()
    pacer = Pacer(0.5, 3, clock=time.monotonic, sleep=time.sleep)
    for _ in range(5):
        await pacer.wait()
    assert time.slept == [2.0, 2.0]


class Limited:
    status_code = "M_LIMIT_EXCEEDED"

    def __init__(self, millis: int) -> None:
        self.retry_after_ms = millis


async def test_a_429_is_retried_as_told_but_never_endlessly() -> None:
    time = FakeTime()
    answers: list[Any] = [Limited(300), Limited(500), "sent"]

    async def request() -> Any:
        return answers.pop(0)

    assert await with_rate_limit(request, what="send", max_retries=3, max_wait=5, sleep=time.sleep) == "sent"
    assert time.slept == [0.3, 0.5]

    async def always_limited() -> Any:
        return Limited(100)

    with pytest.raises(RateLimited, match="after 2 retries") as kept_refusing:
        await with_rate_limit(always_limited, what="send", max_retries=2, max_wait=5, sleep=time.sleep)
    assert kept_refusing.value.retry_after == 0.1

    async def long_wait() -> Any:
        return Limited(120_000)

    with pytest.raises(RateLimited, match=r"asked to wait 120\.0 s") as too_long:
        await with_rate_limit(long_wait, what="send", max_retries=2, max_wait=30, sleep=time.sleep)
    assert too_long.value.retry_after == 120.0


def test_a_transaction_id_is_fixed_by_key_part_and_database() -> None:
    assert transaction_id("r42", 0, "ab12cd34") == transaction_id("r42", 0, "ab12cd34")
    ids = {
        transaction_id("r42", 0, "ab12cd34"),
        transaction_id("r42", 1, "ab12cd34"),  # the second notice of a split text
        transaction_id("r43", 0, "ab12cd34"),
        transaction_id("r42", 0, "ffff0000"),  # the same outbox key in a database made anew
        transaction_id("r4", 20, "ab12cd34"),  # no key and part run into each other
        transaction_id("r42", 0),
    }
    assert len(ids) == 6
    assert all(len(txn) < 64 and txn.isascii() and "/" not in txn for txn in ids)


@pytest.mark.parametrize(
    ("status", "errcode", "permanent"),
    [
        (403, "M_FORBIDDEN", True),  # no permission, or not in the room
        (404, "M_NOT_FOUND", True),  # unknown room
        (413, "M_TOO_LARGE", True),
        (400, "M_BAD_JSON", True),
        (400, None, True),
        (401, "M_UNKNOWN_TOKEN", False),  # a new login may fix it
        (408, None, False),
        (429, "M_LIMIT_EXCEEDED", False),
        (500, "M_UNKNOWN", False),
        (502, None, False),
        (503, None, False),
        (None, None, False),
    ],
)
def test_only_refusals_that_will_never_change_are_permanent(
    status: int | None, errcode: str | None, permanent: bool
) -> None:
    failure = refusal("send m.room.message to !r", status, errcode, "because")
    assert failure.permanent is permanent
    assert failure.reason == f"send m.room.message to !r: {errcode or f'HTTP {status}'} because"
