"""Discord payloads <-> the core's neutral words, in pure functions (no I/O, no discord.py).

- command specs -> application command payloads (`PUT /applications/{app}/commands`);
- INTERACTION_CREATE data -> `CommandInvoked` (plus the member's permissions for the facilitator check),
  for slash commands and for presses of an anonymous poll's vote buttons;
- a message's buttons -> action rows within Discord's limits;
- MESSAGE_REACTION_ADD/REMOVE data -> `ReactionAdded`/`ReactionRemoved` with a replay-safe event id;
- a message's reactions and their users (REST) -> the reactions present now, to reconcile a poll;
- outgoing text -> message bodies within Discord's limits, with mentions disabled;
- an idempotency key -> the nonce of each part of a message; Discord's refusals -> `DeliveryFailed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from core.commands import ArgKind, CommandSpec
from core.events import CommandInvoked, MemberJoined, MemberLeft, ReactionAdded, ReactionRemoved
from core.polls import parse_vote_button
from core.ports import Button, DeliveryFailed
from core.refs import ChannelRef, MessageRef, UserRef

PLATFORM = "discord"
MAX_CONTENT = 2000
MAX_PARTS = 5
MAX_REACTIONS = 20
MAX_DESCRIPTION = 100
MAX_CHOICES = 25
MAX_OPTIONS = 25  # options of one command or subcommand
MAX_STRING = 6000  # the longest string option Discord takes
MAX_NONCE = 25
ROW_BUTTONS = 5  # buttons in one action row
MAX_ROWS = 5  # action rows under one message
MAX_LABEL = 80
MAX_CUSTOM_ID = 100
THREAD_TYPES = frozenset({10, 11, 12})  # announcement, public and private threads
THREAD_EXISTS = 160004  # "A thread has already been created for this message"
# How long a decision's thread stays active without posts (Discord's longest, a week). A post into an
# archived thread (that is not locked) opens it again.
THREAD_ARCHIVE_MINUTES: Final = 10080

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
# The invite link asks for what the bot does: view channels, send messages, add reactions and read
# message history (needed to react to a message). docs/discord.md gives the number.
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
ADD_REACTIONS = 1 << 6
READ_MESSAGE_HISTORY = 1 << 16
CREATE_PUBLIC_THREADS = 1 << 35  # a decision's thread, started from its poll's or review's message
SEND_MESSAGES_IN_THREADS = 1 << 38
INVITE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | ADD_REACTIONS
    | READ_MESSAGE_HISTORY
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)

# Application command option types.
SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
# Interaction types, and the component a press came from.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
BUTTON = 2
# Interaction context: guild only (no DMs, no group DMs); installed to a guild.
GUILD_CONTEXT = 0
GUILD_INSTALL = 0


# Commands ------------------------------------------------------------------------------------------


def _describe(text: str) -> str:
    text = " ".join(text.split()) or "-"
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _option(spec: CommandSpec) -> list[dict[str, Any]]:
    """The spec's arguments as options: a flag is a boolean, a list one string option per item
    (`option1` ... `option10`, the first `min_count` required)."""
    options: list[dict[str, Any]] = []
    for arg in spec.args:
        for index, name in enumerate(arg.option_names()):
            required = index < arg.min_count if arg.kind is ArgKind.LIST else arg.required
            option: dict[str, Any] = {
                "type": _OPTION_TYPES.get(arg.kind, STRING),
                "name": name,
                "description": _describe(arg.help),
                "required": required,
            }
            if arg.kind is ArgKind.CHOICE and len(arg.choices) <= MAX_CHOICES:
                option["choices"] = [{"name": c, "value": c} for c in arg.choices]
            elif arg.kind not in (ArgKind.INT, ArgKind.FLAG):
                option["max_length"] = min(arg.limit, MAX_STRING)
            options.append(option)
    if len(options) > MAX_OPTIONS:
        raise ValueError(f"{spec.name!r} has {len(options)} options; Discord takes at most {MAX_OPTIONS}")
    # Discord wants required options before optional ones; the engine reads them by name.
    return sorted(options, key=lambda o: not o["required"])


_OPTION_TYPES = {ArgKind.INT: INTEGER, ArgKind.FLAG: BOOLEAN}


@dataclass
class _Node:
    name: str
    spec: CommandSpec | None = None
    children: dict[str, _Node] | None = None

    def child(self, name: str) -> _Node:
        if self.children is None:
            self.children = {}
        return self.children.setdefault(name, _Node(name))


def _render_child(node: _Node) -> dict[str, Any]:
    if node.children is None:
        assert node.spec is not None
        return {
            "type": SUB_COMMAND,
            "name": node.name,
            "description": _describe(node.spec.summary),
            "options": _option(node.spec),
        }
    return {
        "type": SUB_COMMAND_GROUP,
        "name": node.name,
        "description": _describe(f"{node.name} commands"),
        "options": [_render_child(c) for c in node.children.values()],
    }


def command_payloads(specs: Iterable[CommandSpec]) -> list[dict[str, Any]]:
    """Application commands for the specs: one per first word, subcommands below it.

    No command is hidden behind a Discord permission (`default_member_permissions`): a group's
    facilitator of the week (core/roles.py) holds no permission on the server, yet may run
    facilitator commands in that group, so the bot checks each facilitator command itself.
    """
    roots: dict[str, _Node] = {}
    for spec in specs:
        if not 1 <= len(spec.path) <= 3:
            raise ValueError(f"Discord commands have one to three words, not {spec.name!r}")
        node = roots.setdefault(spec.path[0], _Node(spec.path[0]))
        for word in spec.path[1:]:
            if node.spec is not None:
                raise ValueError(f"{spec.name!r}: {node.name!r} is a command and cannot have subcommands")
            node = node.child(word)
        if node.children is not None:
            raise ValueError(f"{spec.name!r} has subcommands and cannot be a command itself")
        node.spec = spec
    payloads = []
    for root in roots.values():
        payload: dict[str, Any] = {
            "type": 1,
            "name": root.name,
            "contexts": [GUILD_CONTEXT],
            "integration_types": [GUILD_INSTALL],
            "default_member_permissions": None,
            "nsfw": False,
        }
        if root.children is None:
            assert root.spec is not None
            payload["description"] = _describe(root.spec.summary)
            payload["options"] = _option(root.spec)
        else:
            payload["description"] = _describe(f"{root.name}: " + ", ".join(root.children))
            payload["options"] = [_render_child(c) for c in root.children.values()]
        payloads.append(payload)
    return payloads


# Interactions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberAccess:
    """What an interaction tells about its member: channel permissions and role ids."""

    permissions: int
    role_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class SlashCommand:
    event: CommandInvoked
    access: MemberAccess | None
    guild_id: str | None


def user_ref(user: Mapping[str, Any], member: Mapping[str, Any] | None = None) -> UserRef:
    display = (member or {}).get("nick") or user.get("global_name") or user.get("username") or ""
    return UserRef(PLATFORM, str(user["id"]), str(display))


def channel_ref(channel_id: str | int, name: str | None = None) -> ChannelRef:
    return ChannelRef(PLATFORM, str(channel_id), f"#{name}" if name else "")


def command_channel(data: Mapping[str, Any]) -> ChannelRef:
    """The channel of a command's group: where it was given, or for a command given in a thread (a
    decision's), the channel the thread is in. The answer, the interaction's, still goes into the thread."""
    channel = data.get("channel") or {}
    parent = channel.get("parent_id")
    if channel.get("type") in THREAD_TYPES and parent:
        return channel_ref(parent)
    return channel_ref(data["channel_id"], channel.get("name"))


def slash_command(data: Mapping[str, Any]) -> SlashCommand | None:
    """An application command interaction as a neutral command; None for anything else."""
    if data.get("type") != 2 or "channel_id" not in data:
        return None
    command = data.get("data") or {}
    words = [str(command.get("name", ""))]
    options: Sequence[Mapping[str, Any]] = command.get("options") or []
    while len(options) == 1 and options[0].get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
        words.append(str(options[0]["name"]))
        options = options[0].get("options") or []
    # Booleans stay booleans (flags); numbers are read like typed text, so they are checked alike.
    values: dict[str, str | bool] = {
        str(o["name"]): v if isinstance(v := o.get("value", ""), bool) else str(v) for o in options
    }
    member = data.get("member")
    user = (member or {}).get("user") or data.get("user") or {}
    access = None
    if member is not None:
        access = MemberAccess(
            int(member.get("permissions") or 0), frozenset(str(r) for r in member.get("roles") or ())
        )
    event = CommandInvoked(
        event_id=str(data["id"]),
        channel=command_channel(data),
        user=user_ref(user, member),
        text=" ".join(words),
        options=values,
    )
    guild_id = data.get("guild_id")
    return SlashCommand(event, access, str(guild_id) if guild_id else None)


def vote_press(data: Mapping[str, Any]) -> SlashCommand | None:
    """A press of an anonymous poll's vote button (custom id `vote:<poll>:<option>`) as the `vote`
    command with its options, on the poll's message; None for any other interaction or button.

    The interaction's id is the event's: a press delivered again (a RESUME replay) is the same event,
    and a second press of the same button is a new one (which takes the vote back)."""
    if data.get("type") != MESSAGE_COMPONENT or "channel_id" not in data:
        return None
    component = data.get("data") or {}
    if component.get("component_type") != BUTTON:
        return None
    vote = parse_vote_button(str(component.get("custom_id") or ""))
    if vote is None:
        return None
    poll, option = vote
    member = data.get("member")
    user = (member or {}).get("user") or data.get("user") or {}
    channel = channel_ref(data["channel_id"], (data.get("channel") or {}).get("name"))
    message_id = (data.get("message") or {}).get("id")
    event = CommandInvoked(
        event_id=str(data["id"]),
        channel=channel,
        user=user_ref(user, member),
        text="vote",
        options={"poll": str(poll), "option": str(option)},
        message=MessageRef(channel, str(message_id)) if message_id else None,
    )
    guild_id = data.get("guild_id")
    return SlashCommand(event, member_access(member), str(guild_id) if guild_id else None)


def member_access(member: Mapping[str, Any] | None) -> MemberAccess | None:
    """The access an interaction's `member` (in a server) carries; None outside a server."""
    if member is None:
        return None
    roles = frozenset(str(r) for r in member.get("roles") or ())
    return MemberAccess(int(member.get("permissions") or 0), roles)


def server_access(
    member: Mapping[str, Any], role_permissions: Mapping[str, int], guild_id: str, owner_id: str
) -> MemberAccess:
    """A member's server-wide access from a REST member object: the permissions of @everyone (the role
    whose id is the server's) and of each of their roles; the owner has them all. Channel overwrites
    are left out: they cannot take Manage Server away, and the facilitator role is a role."""
    roles = frozenset(str(r) for r in member.get("roles", ()))
    user_id = str((member.get("user") or {}).get("id", ""))
    if user_id and user_id == owner_id:
        return MemberAccess(ADMINISTRATOR, roles)
    permissions = role_permissions.get(guild_id, 0)
    for role in roles:
        permissions |= role_permissions.get(role, 0)
    return MemberAccess(permissions, roles)


def may_facilitate(access: MemberAccess, facilitator_role_ids: Iterable[str]) -> bool:
    """Manage Server (or Administrator) in the channel, or the configured facilitator role."""
    if access.permissions & (MANAGE_GUILD | ADMINISTRATOR):
        return True
    return bool(access.role_ids & set(facilitator_role_ids))


# Reactions -----------------------------------------------------------------------------------------


def emoji_text(emoji: Mapping[str, Any]) -> str:
    """A unicode emoji as itself; a custom one as Discord writes it in text (<:name:id>)."""
    if emoji.get("id"):
        prefix = "a" if emoji.get("animated") else ""
        return f"<{prefix}:{emoji.get('name') or '_'}:{emoji['id']}>"
    return str(emoji.get("name") or "")


def reaction_event_id(session_id: str, sequence: int) -> str:
    """Reaction events carry no id. The gateway numbers each dispatch within a session and replays the
    same numbers on RESUME, so (session, sequence) names one delivery of one add or remove."""
    return f"gw:{session_id}:{sequence}"


def reaction_event(
    kind: str, data: Mapping[str, Any], event_id: str, bot_user_id: str | None
) -> ReactionAdded | ReactionRemoved | None:
    """MESSAGE_REACTION_ADD / MESSAGE_REACTION_REMOVE as a neutral event; None for the bot's own."""
    user_id = str(data["user_id"])
    if user_id == bot_user_id:
        return None
    message = MessageRef(channel_ref(data["channel_id"]), str(data["message_id"]))
    member = data.get("member")
    user = user_ref(member["user"], member) if member and "user" in member else UserRef(PLATFORM, user_id)
    emoji = emoji_text(data.get("emoji") or {})
    if kind == "MESSAGE_REACTION_ADD":
        return ReactionAdded(event_id, message, user, emoji)
    if kind == "MESSAGE_REACTION_REMOVE":
        return ReactionRemoved(event_id, message, user, emoji)
    raise ValueError(f"not a reaction event: {kind}")


def server_member_event(
    kind: str, data: Mapping[str, Any], event_id: str, welcome_channel_id: str | None
) -> MemberJoined | MemberLeft | None:
    """GUILD_MEMBER_ADD / GUILD_MEMBER_REMOVE as joining or leaving the group of the server's welcome
    channel (its system channel, where Discord greets newcomers). None where the server has no welcome
    channel, and for bots, which are no members of a learning group."""
    user = data.get("user")
    if welcome_channel_id is None or not isinstance(user, Mapping) or user.get("bot"):
        return None
    channel = channel_ref(welcome_channel_id)
    if kind == "GUILD_MEMBER_ADD":
        return MemberJoined(event_id, channel, user_ref(user, data))
    if kind == "GUILD_MEMBER_REMOVE":
        return MemberLeft(event_id, channel, user_ref(user))
    raise ValueError(f"not a server member event: {kind}")


# Reactions on a message now (REST) -----------------------------------------------------------------

REACTION_PAGE = 100  # the most users `GET .../reactions/{emoji}` returns per page


@dataclass(frozen=True, slots=True)
class MessageReaction:
    """One emoji on a message, from the message's `reactions` list."""

    emoji: str  # as reaction events name it (emoji_text)
    route: str  # as the REST path names it: the unicode emoji, or name:id for a custom one
    others: int  # how many users other than the bot reacted with it


def emoji_route(emoji: Mapping[str, Any]) -> str:
    """The emoji as `/reactions/{emoji}` wants it (before URL encoding)."""
    if emoji.get("id"):
        return f"{emoji.get('name') or '_'}:{emoji['id']}"
    return str(emoji.get("name") or "")


def message_reactions(message: Mapping[str, Any]) -> list[MessageReaction]:
    """The normal (not super) reactions on a message object; Discord omits `reactions` when there are none."""
    found = []
    for reaction in message.get("reactions") or ():
        emoji = reaction.get("emoji") or {}
        details = reaction.get("count_details") or {}
        count = int(details.get("normal", reaction.get("count") or 0))
        others = count - (1 if reaction.get("me") else 0)
        found.append(MessageReaction(emoji_text(emoji), emoji_route(emoji), max(others, 0)))
    return found


def reaction_users(users: Iterable[Mapping[str, Any]], bot_user_id: str | None) -> list[UserRef]:
    """A page of `GET .../reactions/{emoji}` as members (named as reaction events name them), without
    the bot."""
    return [user_ref(u) for u in users if str(u["id"]) != bot_user_id]


def next_page_after(page: Sequence[Mapping[str, Any]], limit: int = REACTION_PAGE) -> str | None:
    """The `after` for the next page of reaction users; None when this page was the last."""
    if len(page) < limit:
        return None
    return str(max(int(u["id"]) for u in page))


# Outgoing text -------------------------------------------------------------------------------------


def split_text(text: str, limit: int = MAX_CONTENT, max_parts: int = MAX_PARTS) -> list[str]:
    """Text in parts of at most `limit` characters, cut at line ends (else spaces) where possible.

    More than `max_parts` parts are not sent: the last part says how much was cut.
    """
    text = text.strip() or "…"
    parts: list[str] = []
    rest = text
    while rest:
        if len(rest) <= limit:
            parts.append(rest)
            break
        cut = rest.rfind("\n", limit // 2, limit)
        if cut < 0:
            cut = rest.rfind(" ", limit // 2, limit)
        if cut < 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        shown = sum(len(p) for p in parts[:-1])
        widest = f"\n… (cut: {len(text)} more characters not shown)"
        last = parts[-1][: limit - len(widest)].rstrip()
        parts[-1] = last + f"\n… (cut: {len(text) - shown - len(last)} more characters not shown)"
    return parts


def cut_text(text: str, limit: int = MAX_CONTENT) -> str:
    """One message's worth of text (edits cannot be split), with a clear mark where it was cut."""
    text = text.strip() or "…"
    if len(text) <= limit:
        return text
    widest = f"\n… (cut: {len(text)} more characters not shown)"
    head = text[: limit - len(widest)].rstrip()
    return head + f"\n… (cut: {len(text) - len(head)} more characters not shown)"


# Buttons -------------------------------------------------------------------------------------------


def button_rows(buttons: Sequence[Button]) -> list[tuple[Button, ...]]:
    """The buttons in action rows as Discord takes them: in order, five to a row, at most five rows;
    a label longer than Discord's 80 characters is cut with "…". More than 25 buttons, two with one
    id, or an id Discord would refuse, is a ValueError (an anonymous poll has at most 10 options)."""
    if len(buttons) > ROW_BUTTONS * MAX_ROWS:
        raise ValueError(f"{len(buttons)} buttons: Discord shows at most {ROW_BUTTONS * MAX_ROWS}")
    for button in buttons:
        if not 1 <= len(button.custom_id) <= MAX_CUSTOM_ID:
            raise ValueError(f"button id {button.custom_id!r} is not 1 to {MAX_CUSTOM_ID} characters")
    if len({b.custom_id for b in buttons}) != len(buttons):
        raise ValueError("two buttons on one message have the same id")
    fitted = [
        b if len(b.label) <= MAX_LABEL else Button(b.custom_id, b.label[: MAX_LABEL - 1] + "…")
        for b in buttons
    ]
    return [tuple(fitted[i : i + ROW_BUTTONS]) for i in range(0, len(fitted), ROW_BUTTONS)]


# Idempotent posts ----------------------------------------------------------------------------------


def part_nonce(key: str, index: int) -> str:
    """The nonce of part `index` of the message posted under the idempotency key `key`.

    Sent with `enforce_nonce`, Discord answers a second create with the same nonce by the same author,
    within a few minutes, with the first message and creates none. Each part of a split message needs
    its own nonce so that a retry finds every part already posted; `split_text` cuts the same text the
    same way every time, so part i of a retry is part i of the first try. A key is at most 20
    characters and a message at most 5 parts, well within Discord's 25.
    """
    nonce = f"{key}.{index}"
    if len(nonce) > MAX_NONCE:
        raise ValueError(f"idempotency key {key!r} is too long for a Discord nonce ({MAX_NONCE} characters)")
    return nonce


# 401: the token, not the post, is at fault and may be fixed; 408 and 429: try again later.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 408, 429})


def delivery_failure(
    status: int, code: int, message: str, retry_after: float | None = None
) -> DeliveryFailed:
    """What an HTTP error answer to a post means for the outbox.

    Server errors, rate limits (once discord.py stopped waiting them out) and a rejected token may pass;
    any other client error (403 missing permission or access, 404 unknown channel or message, 400 a
    body Discord will never take) will not, however often it is sent.
    """
    reason = f"{status} {message or 'error'}" + (f" (code {code})" if code else "")
    permanent = 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS
    return DeliveryFailed(reason, permanent=permanent, retry_after=None if permanent else retry_after)


def too_large(status: int, code: int) -> bool:
    """Discord refused a file for its size: 413 Request entity too large, code 40005."""
    return status == 413 or code == 40005
