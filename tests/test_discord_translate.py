"""The Discord adapter's pure translation: specs to command payloads, payloads to neutral events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.discord.translate import (
    BOOLEAN,
    INVITE_PERMISSIONS,
    MANAGE_GUILD,
    MAX_LABEL,
    STRING,
    MemberAccess,
    button_rows,
    command_payloads,
    cut_text,
    delivery_failure,
    emoji_route,
    emoji_text,
    may_facilitate,
    message_reactions,
    next_page_after,
    part_nonce,
    reaction_event,
    reaction_event_id,
    reaction_users,
    server_access,
    server_member_event,
    slash_command,
    split_text,
    vote_press,
)
from adapters.pacing import Pacer
from core.commands import COMMANDS, Access, Arg, ArgKind, CommandSpec, flag, parse_options, parse_text
from core.events import CommandInvoked, MemberJoined, MemberLeft, ReactionAdded, ReactionRemoved
from core.ports import Button
from core.refs import ChannelRef, MessageRef, UserRef

# An INTERACTION_CREATE payload as Discord sends it (ids shortened; fields the adapter ignores kept).
INTERACTION: dict[str, Any] = {
    "id": "1311111111111111111",
    "application_id": "1300000000000000000",
    "type": 2,
    "token": "aW50ZXJhY3Rpb246MTMx",
    "version": 1,
    "guild_id": "1200000000000000000",
    "channel_id": "1210000000000000000",
    "channel": {"id": "1210000000000000000", "type": 0, "name": "general", "guild_id": "1200000000000000000"},
    "member": {
        "user": {
            "id": "1220000000000000000",
            "username": "bob_b",
            "global_name": "Bob B",
            "discriminator": "0",
        },
        "nick": None,
        "roles": ["1230000000000000000"],
        "permissions": "1071698660929",
        "joined_at": "2026-01-01T00:00:00+00:00",
    },
    "app_permissions": "2248473465835073",
    "locale": "en-GB",
    "context": 0,
    "data": {
        "id": "1300000000000000001",
        "name": "phase",
        "type": 1,
        "options": [
            {
                "type": 1,
                "name": "set",
                "options": [
                    {"type": 3, "name": "phase", "value": "organizing"},
                    {"type": 3, "name": "reason", "value": "we <@&1> have a plan"},
                ],
            }
        ],
    },
}

# A press of a button under a message (MESSAGE_COMPONENT), as Discord sends it: the message in full.
BUTTON_PRESS: dict[str, Any] = {
    **{k: v for k, v in INTERACTION.items() if k != "data"},
    "id": "1311111111111111112",
    "type": 3,
    "token": "aW50ZXJhY3Rpb246MTMy",
    "message": {
        "id": "1240000000000000000",
        "channel_id": "1210000000000000000",
        "author": {"id": "1300000000000000000", "username": "peerbot", "bot": True},
        "content": "Anonymous poll 7: Pace?",
        "components": [
            {
                "type": 1,
                "id": 1,
                "components": [
                    {"type": 2, "id": 2, "style": 2, "label": "1. 1️⃣ slower", "custom_id": "vote:7:1"},
                    {"type": 2, "id": 3, "style": 2, "label": "2. 2️⃣ same", "custom_id": "vote:7:2"},
                ],
            }
        ],
    },
    "data": {"custom_id": "vote:7:2", "component_type": 2},
}

REACTION_ADD: dict[str, Any] = {
    "user_id": "1220000000000000000",
    "channel_id": "1210000000000000000",
    "message_id": "1240000000000000000",
    "guild_id": "1200000000000000000",
    "emoji": {"id": None, "name": "✅"},
    "member": {
        "user": {"id": "1220000000000000000", "username": "bob_b", "global_name": None},
        "nick": "Bobby",
    },
    "message_author_id": "1250000000000000000",
    "burst": False,
    "burst_colors": [],
    "type": 0,
}

REACTION_REMOVE: dict[str, Any] = {
    "user_id": "1220000000000000000",
    "channel_id": "1210000000000000000",
    "message_id": "1240000000000000000",
    "guild_id": "1200000000000000000",
    "emoji": {"id": "1260000000000000000", "name": "partyparrot", "animated": True},
    "burst": False,
    "type": 0,
}


def test_a_subcommand_interaction_becomes_a_command_with_named_options() -> None:
    command = slash_command(INTERACTION)
    assert command is not None
    event = command.event
    assert event.event_id == "1311111111111111111"
    assert event.text == "phase set"
    assert event.options == {"phase": "organizing", "reason": "we <@&1> have a plan"}
    assert event.channel == ChannelRef("discord", "1210000000000000000")
    assert event.channel.display == "#general"
    assert event.user == UserRef("discord", "1220000000000000000")
    assert event.user.display == "Bob B"
    assert command.guild_id == "1200000000000000000"
    assert command.access == MemberAccess(1071698660929, frozenset({"1230000000000000000"}))


def test_integer_options_and_plain_commands() -> None:
    data = {**INTERACTION, "data": {"name": "goal", "type": 1, "options": [
        {"type": 1, "name": "show", "options": [{"type": 4, "name": "id", "value": 3}]}
    ]}}  # fmt: skip
    command = slash_command(data)
    assert command is not None and command.event.text == "goal show"
    assert command.event.options == {"id": "3"}
    plain = slash_command({**INTERACTION, "data": {"name": "status", "type": 1}})
    assert plain is not None and (plain.event.text, plain.event.options) == ("status", {})


def test_a_command_given_in_a_thread_belongs_to_the_group_of_the_threads_channel() -> None:
    thread = {
        "id": "1240000000000000000",
        "type": 11,
        "name": "Goal 4: Learn Rust",
        "parent_id": "1210000000000000000",
    }
    command = slash_command({**INTERACTION, "channel_id": thread["id"], "channel": thread})
    assert command is not None and command.event.channel == ChannelRef("discord", "1210000000000000000")
    orphan = {**thread, "parent_id": None}  # no parent given: the channel it was given in
    command = slash_command({**INTERACTION, "channel_id": thread["id"], "channel": orphan})
    assert command is not None and command.event.channel.id == "1240000000000000000"


def test_other_interactions_are_not_commands() -> None:
    assert slash_command({**INTERACTION, "type": 3}) is None  # a button
    assert slash_command({**INTERACTION, "type": 1}) is None  # a ping


def test_a_vote_button_press_becomes_the_vote_command_on_the_polls_message() -> None:
    command = vote_press(BUTTON_PRESS)
    assert command is not None
    channel = ChannelRef("discord", "1210000000000000000")
    assert command.event == CommandInvoked(
        event_id="1311111111111111112",
        channel=channel,
        user=UserRef("discord", "1220000000000000000"),
        text="vote",
        options={"poll": "7", "option": "2"},
        message=MessageRef(channel, "1240000000000000000"),
    )
    assert command.event.user.display == "Bob B" and command.event.channel.display == "#general"
    assert command.guild_id == "1200000000000000000"
    assert command.access == MemberAccess(1071698660929, frozenset({"1230000000000000000"}))
    # The words and options are the ones `/vote poll:7 option:2` gives, so the engine reads them alike.
    invocation = parse_options(COMMANDS, command.event.text, command.event.options or {})
    assert invocation.spec.path == ("vote",) and invocation.args == {"poll": 7, "option": 2}
    assert invocation.secret


def test_only_vote_buttons_are_votes() -> None:
    for custom_id in ("poll:7:2", "vote:7", "vote:x:2", "vote:7:2:1", "", "vote:7:2 "):
        press = {**BUTTON_PRESS, "data": {"custom_id": custom_id, "component_type": 2}}
        assert vote_press(press) is None, custom_id
    select_menu = {**BUTTON_PRESS, "data": {"custom_id": "vote:7:2", "component_type": 3, "values": []}}
    assert vote_press(select_menu) is None
    assert vote_press(INTERACTION) is None  # a slash command
    assert slash_command(BUTTON_PRESS) is None
    assert vote_press({**BUTTON_PRESS, "type": 1}) is None  # a ping


def test_buttons_go_five_to_a_row_in_order_with_labels_cut_to_discords_limit() -> None:
    buttons = [Button(f"vote:1:{i}", f"{i}. option") for i in range(1, 13)]
    rows = button_rows(buttons)
    assert [len(row) for row in rows] == [5, 5, 2]
    assert [b for row in rows for b in row] == buttons
    (row,) = button_rows([Button("vote:1:1", "x" * 81)])
    assert len(row[0].label) == MAX_LABEL and row[0].label.endswith("…")
    assert button_rows([]) == []


def test_buttons_discord_would_refuse_are_refused_here() -> None:
    with pytest.raises(ValueError, match="at most 25"):
        button_rows([Button(f"vote:1:{i}", "x") for i in range(26)])
    assert len(button_rows([Button(f"vote:1:{i}", "x") for i in range(25)])) == 5
    with pytest.raises(ValueError, match="same id"):
        button_rows([Button("vote:1:1", "a"), Button("vote:1:1", "b")])
    with pytest.raises(ValueError, match="1 to 100"):
        button_rows([Button("v" * 101, "a")])


def test_facilitators_have_manage_server_administrator_or_the_role() -> None:
    assert may_facilitate(MemberAccess(MANAGE_GUILD, frozenset()), [])
    assert may_facilitate(MemberAccess(1 << 3, frozenset()), [])
    assert not may_facilitate(MemberAccess(1 << 11, frozenset({"9"})), [])
    assert may_facilitate(MemberAccess(0, frozenset({"9"})), ["9"])


def test_reaction_add_and_remove_become_neutral_events() -> None:
    added = reaction_event("MESSAGE_REACTION_ADD", REACTION_ADD, "gw:s1:41", bot_user_id="1")
    message = MessageRef(ChannelRef("discord", "1210000000000000000"), "1240000000000000000")
    assert added == ReactionAdded("gw:s1:41", message, UserRef("discord", "1220000000000000000"), "✅")
    assert added.user.display == "Bobby"
    removed = reaction_event("MESSAGE_REACTION_REMOVE", REACTION_REMOVE, "gw:s1:42", bot_user_id="1")
    assert removed == ReactionRemoved(
        "gw:s1:42", message, UserRef("discord", "1220000000000000000"), "<a:partyparrot:1260000000000000000>"
    )


def test_the_bots_own_reactions_are_ignored() -> None:
    assert reaction_event("MESSAGE_REACTION_ADD", REACTION_ADD, "gw:s:1", "1220000000000000000") is None


def test_joining_and_leaving_the_server_join_and_leave_its_welcome_channels_group() -> None:
    user = {"id": "42", "username": "erin", "global_name": "Erin E.", "bot": False}
    added = {"guild_id": "7", "user": user, "nick": "erin the reader", "roles": []}
    welcome = ChannelRef("discord", "99")
    assert server_member_event("GUILD_MEMBER_ADD", added, "gw:s:5", "99") == MemberJoined(
        "gw:s:5", welcome, UserRef("discord", "42")
    )
    joined = server_member_event("GUILD_MEMBER_ADD", added, "gw:s:5", "99")
    assert joined is not None and joined.user.display == "erin the reader"  # as the server names them
    removed = {"guild_id": "7", "user": user}
    assert server_member_event("GUILD_MEMBER_REMOVE", removed, "gw:s:6", "99") == MemberLeft(
        "gw:s:6", welcome, UserRef("discord", "42")
    )
    assert server_member_event("GUILD_MEMBER_ADD", added, "gw:s:5", None) is None  # no welcome channel
    robot = {**added, "user": {**user, "bot": True}}
    assert server_member_event("GUILD_MEMBER_ADD", robot, "gw:s:5", "99") is None


def test_reaction_ids_name_one_delivery_within_a_session() -> None:
    assert reaction_event_id("abc", 7) == reaction_event_id("abc", 7)
    assert len({reaction_event_id("abc", 7), reaction_event_id("abc", 8), reaction_event_id("abd", 7)}) == 3


def test_custom_and_unicode_emoji_as_text() -> None:
    assert emoji_text({"id": None, "name": "👍🏽"}) == "👍🏽"
    assert emoji_text({"id": "5", "name": "yes"}) == "<:yes:5>"


def spec(path: str, *args: Arg, facilitator: bool = False) -> CommandSpec:
    return CommandSpec(
        tuple(path.split()),
        f"{path} summary",
        args,
        access=Access.FACILITATORS if facilitator else Access.EVERYONE,
    )


def test_commands_render_as_guild_only_commands_with_subcommands() -> None:
    payloads = command_payloads(COMMANDS)
    names = [p["name"] for p in payloads]
    assert names == list(dict.fromkeys(s.path[0] for s in COMMANDS))
    for payload in payloads:
        assert payload["contexts"] == [0]
        assert 1 <= len(payload["description"]) <= 100
        assert len(payload.get("options", [])) <= 25
    goal = next(p for p in payloads if p["name"] == "goal")
    show = next(o for o in goal["options"] if o["name"] == "show")
    assert show["options"] == [
        {"type": 4, "name": "id", "description": "the goal's number", "required": True}
    ]


def test_no_command_is_hidden_behind_a_permission() -> None:
    """A facilitator of the week holds no Discord permission: the bot checks facilitator commands itself."""
    payloads = command_payloads(
        [
            spec("admin reset", facilitator=True),
            spec("admin purge", facilitator=True),
            spec("phase show"),
            spec("phase set", facilitator=True),
            spec("export", facilitator=True),
        ]
    )
    permissions = {p["name"]: p["default_member_permissions"] for p in payloads}
    assert permissions == {"admin": None, "phase": None, "export": None}


def test_required_options_come_first_and_choices_are_listed() -> None:
    (payload,) = command_payloads(
        [
            spec(
                "nudge add",
                Arg("note", ArgKind.TEXT, "what to say", required=False, max_length=200),
                Arg("every", ArgKind.DURATION, "how often"),
                Arg("kind", ArgKind.CHOICE, "which", choices=("a", "b")),
            )
        ]
    )
    (sub,) = payload["options"]
    assert [(o["name"], o["required"]) for o in sub["options"]] == [
        ("every", True),
        ("kind", True),
        ("note", False),
    ]
    assert sub["options"][1]["choices"] == [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}]
    assert sub["options"][2]["max_length"] == 200


def test_poll_create_offers_a_question_ten_options_three_booleans_and_a_duration() -> None:
    poll = next(p for p in command_payloads(COMMANDS) if p["name"] == "poll")
    create = next(o for o in poll["options"] if o["name"] == "create")
    layout = [(o["name"], o["type"], o["required"]) for o in create["options"]]
    assert layout == [
        ("question", STRING, True),
        ("option1", STRING, True),
        ("option2", STRING, True),
        *[(f"option{i}", STRING, False) for i in range(3, 11)],
        ("multiple", BOOLEAN, False),
        ("hidden", BOOLEAN, False),
        ("anonymous", BOOLEAN, False),
        ("closes", STRING, False),
    ]
    for option in create["options"]:
        assert 1 <= len(option["description"]) <= 100 and not option["description"].endswith("…")
        assert ("max_length" in option) == (option["type"] == STRING)
    assert create["options"][0]["max_length"] == 300


def test_a_flag_is_a_boolean_option_and_a_list_one_option_per_item() -> None:
    (payload,) = command_payloads(
        [
            spec(
                "pick",
                Arg("choice", ArgKind.LIST, "one of them", min_count=1, max_count=3, max_length=50),
                flag("loud", "say it twice"),
            )
        ]
    )
    assert [(o["name"], o["type"], o["required"]) for o in payload["options"]] == [
        ("choice1", STRING, True),
        ("choice2", STRING, False),
        ("choice3", STRING, False),
        ("loud", BOOLEAN, False),
    ]
    assert {o.get("max_length") for o in payload["options"]} == {50, None}


def test_more_options_than_discord_takes_are_refused_at_sync() -> None:
    many = spec(
        "pick",
        Arg("choice", ArgKind.LIST, "one of them", max_count=20),
        flag("a", "x"),
        *(flag(f"f{i}", "x") for i in range(5)),
    )
    with pytest.raises(ValueError, match="26 options"):
        command_payloads([many])


def test_boolean_options_stay_booleans_and_read_like_the_typed_form() -> None:
    data = {**INTERACTION, "data": {"name": "poll", "type": 1, "options": [
        {"type": 1, "name": "create", "options": [
            {"type": 3, "name": "question", "value": "What next?"},
            {"type": 3, "name": "option1", "value": "Rust"},
            {"type": 3, "name": "option2", "value": "🐹 Go"},
            {"type": 3, "name": "option3", "value": "Zig"},
            {"type": 5, "name": "multiple", "value": True},
            {"type": 3, "name": "closes", "value": "2d"},
        ]}
    ]}}  # fmt: skip
    command = slash_command(data)
    assert command is not None
    event = command.event
    assert event.text == "poll create"
    assert event.options == {
        "question": "What next?",
        "option1": "Rust",
        "option2": "🐹 Go",
        "option3": "Zig",
        "multiple": True,
        "closes": "2d",
    }
    assert event.options is not None
    typed = parse_text(COMMANDS, "poll create --multiple --closes 2d What next? | Rust | 🐹 Go | Zig")
    assert parse_options(COMMANDS, event.text, event.options) == typed


def test_three_word_commands_become_subcommand_groups() -> None:
    (payload,) = command_payloads(
        [spec("review answer add"), spec("review answer list"), spec("review start")]
    )
    group, start = payload["options"]
    assert (group["type"], group["name"], start["type"]) == (2, "answer", 1)
    assert [o["name"] for o in group["options"]] == ["add", "list"]


def test_a_command_cannot_also_have_subcommands() -> None:
    with pytest.raises(ValueError, match="cannot"):
        command_payloads([spec("goal"), spec("goal list")])


def test_long_text_is_split_at_line_ends_within_the_limit() -> None:
    text = "\n".join(f"line {i} " + "x" * 50 for i in range(100))
    parts = split_text(text)
    assert all(len(p) <= 2000 for p in parts)
    assert "\n".join(parts) == text
    assert split_text("short") == ["short"]


def test_text_beyond_five_parts_is_cut_with_a_clear_mark() -> None:
    parts = split_text("y " * 8000)
    assert len(parts) == 5
    assert all(len(p) <= 2000 for p in parts)
    assert parts[-1].endswith("more characters not shown)")


def test_an_edit_is_cut_clearly() -> None:
    cut = cut_text("z" * 2500)
    assert len(cut) <= 2000
    head, note = cut.split("\n")
    assert note == f"… (cut: {2500 - len(head)} more characters not shown)"
    assert cut_text("fine") == "fine"


def test_the_invite_link_in_the_docs_asks_for_the_permissions_the_bot_uses() -> None:
    assert INVITE_PERMISSIONS == 309237713984
    docs = (Path(__file__).resolve().parent.parent / "docs" / "discord.md").read_text()
    assert "permissions=309237713984" in docs


def test_the_pacer_spreads_calls_beyond_the_burst() -> None:
    now = [0.0]
    pacer = Pacer(rate=10, burst=2, clock=lambda: now[0])
    assert [pacer.reserve() for _ in range(4)] == pytest.approx([0, 0, 0.1, 0.2])
    now[0] = 1.0
    assert pacer.reserve() == 0


# Reactions on a message now ---------------------------------------------------------------------------

# `GET /channels/{c}/messages/{m}` (fields the adapter ignores cut) and `GET .../reactions/{emoji}`.
MESSAGE_WITH_REACTIONS: dict[str, Any] = {
    "id": "1330000000000000000",
    "channel_id": "1210000000000000000",
    "content": "Poll 1: ...",
    "reactions": [
        {
            "emoji": {"id": None, "name": "✅"},
            "count": 3,
            "count_details": {"burst": 0, "normal": 3},
            "burst_colors": [],
            "me_burst": False,
            "me": True,
        },
        {"emoji": {"id": None, "name": "🤔"}, "count": 1, "me": True},
        {
            "emoji": {"id": "5", "name": "yes"},
            "count": 3,
            "count_details": {"burst": 1, "normal": 2},
            "me": False,
        },
    ],
}
BOT = {"id": "1300000000000000001", "username": "peerbot", "global_name": None, "bot": True}
ALICE = {"id": "1220000000000000001", "username": "alice", "global_name": "Alice"}
BOB = {"id": "1220000000000000002", "username": "bob", "global_name": None}


def test_the_reactions_on_a_message_name_emoji_as_events_and_paths_do() -> None:
    found = message_reactions(MESSAGE_WITH_REACTIONS)
    assert [(r.emoji, r.route, r.others) for r in found] == [
        ("✅", "✅", 2),  # the bot's own reaction is not a vote
        ("🤔", "🤔", 0),  # only the bot: nothing to fetch
        ("<:yes:5>", "yes:5", 2),  # super reactions left out
    ]
    assert message_reactions({"id": "1"}) == []  # Discord omits `reactions` when there are none
    assert emoji_route({"id": "7", "name": "party", "animated": True}) == "party:7"


def test_reaction_users_leave_out_the_bot_and_are_named_as_in_events() -> None:
    users = reaction_users([BOT, ALICE, BOB], BOT["id"])
    assert users == [UserRef("discord", ALICE["id"]), UserRef("discord", BOB["id"])]
    assert [u.display for u in users] == ["Alice", "bob"]
    event = reaction_event(
        "MESSAGE_REACTION_ADD",
        {
            "user_id": ALICE["id"],
            "channel_id": "1",
            "message_id": "2",
            "emoji": {"name": "✅"},
            "member": {"user": ALICE},
        },
        "gw:s:1",
        BOT["id"],
    )
    assert event is not None and event.user.display == users[0].display


def test_reaction_users_are_paged_after_the_last_id_of_a_full_page() -> None:
    full = [{"id": str(1000 + i)} for i in range(100)]
    assert next_page_after(full) == "1099"
    assert next_page_after(full[:99]) is None
    assert next_page_after([]) is None


def test_each_part_of_a_keyed_message_has_its_own_nonce_within_discords_limit() -> None:
    key = "o" + "9" * 19  # the longest key the ChatPort allows: 20 characters
    nonces = [part_nonce(key, i) for i in range(len(split_text("w " * 5000)))]
    assert nonces == [f"{key}.{i}" for i in range(5)]
    assert all(len(n) <= 25 for n in nonces)
    assert part_nonce("abc", 0) == part_nonce("abc", 0) != part_nonce("abd", 0)
    with pytest.raises(ValueError, match="too long for a Discord nonce"):
        part_nonce("k" * 24, 0)


@pytest.mark.parametrize(
    ("status", "code", "message", "permanent"),
    [
        (403, 50013, "Missing Permissions", True),
        (403, 50001, "Missing Access", True),
        (403, 50007, "Cannot send messages to this user", True),
        (404, 10003, "Unknown Channel", True),
        (404, 10008, "Unknown Message", True),
        (400, 50035, "Invalid Form Body", True),
        (400, 30010, "Maximum number of reactions reached (20)", True),
        (401, 0, "401: Unauthorized", False),  # the token may be fixed; the post itself is fine
        (408, 0, "Request Timeout", False),
        (429, 0, "You are being rate limited.", False),
        (500, 0, "Internal Server Error", False),
        (502, 0, "Bad Gateway", False),
        (503, 0, "Service Unavailable", False),
    ],
)
def test_refusals_that_will_never_succeed_are_permanent(
    status: int, code: int, message: str, permanent: bool
) -> None:
    failure = delivery_failure(status, code, message, retry_after=2.0)
    assert failure.permanent is permanent
    assert failure.reason == f"{status} {message}" + (f" (code {code})" if code else "")
    assert failure.retry_after == (None if permanent else 2.0)


def test_server_access_adds_up_everyone_and_the_members_roles_and_the_owner_has_all() -> None:
    roles = {"10": 1 << 10, "20": MANAGE_GUILD, "30": 1 << 11}  # "10" is @everyone (the server's id)

    def member(user_id: str, *role_ids: str) -> dict[str, Any]:
        return {"user": {"id": user_id}, "roles": list(role_ids)}

    plain = server_access(member("1", "30"), roles, "10", owner_id="9")
    assert plain == MemberAccess((1 << 10) | (1 << 11), frozenset({"30"}))
    assert not may_facilitate(plain, [])
    assert may_facilitate(plain, ["30"])  # the configured facilitator role
    assert may_facilitate(server_access(member("2", "20"), roles, "10", owner_id="9"), [])
    assert may_facilitate(server_access(member("9"), roles, "10", owner_id="9"), [])  # the owner
    assert server_access(member("3", "404"), roles, "10", owner_id="9").permissions == 1 << 10
