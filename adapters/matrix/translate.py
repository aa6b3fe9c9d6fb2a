"""Matrix payloads to neutral events and neutral messages to Matrix payloads, as pure functions.

Everything here takes and returns plain JSON-shaped values (the `source` of a nio event, the content
of an event to send), so it is tested on recorded payloads without a homeserver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.events import (
    CommandInvoked,
    InboundEvent,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    ReactionAdded,
    ReactionRemoved,
)
from core.ports import DeliveryFailed
from core.refs import ChannelRef, MessageRef, UserRef

PLATFORM = "matrix"
DEFAULT_PREFIX = "!peer"

# A whole event may be 65,536 bytes of JSON; a body is kept to half that (measured as escaped JSON),
# so the envelope always fits. Longer texts go out as several notices, at most MAX_PARTS of them.
MAX_BODY_BYTES = 32_000
MAX_PARTS = 10
TRUNCATED = "\n… (cut: the message was too long for Matrix)"

# Room versions in which the creators hold top power without being listed in m.room.power_levels.
_CREATOR_POWER_VERSIONS = {"org.matrix.hydra.11"}
_FIRST_NUMBERED_CREATOR_POWER = 12

Json = Mapping[str, Any]


# Inbound -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReactionRecord:
    """What a reaction event carried, kept so that its redaction can take the same vote back."""

    room_id: str
    target: str
    key: str
    sender: str

    def to_json(self) -> str:
        return json.dumps([self.room_id, self.target, self.key, self.sender], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ReactionRecord | None:
        try:
            room_id, target, key, sender = json.loads(text)
        except (ValueError, TypeError):
            return None
        return cls(str(room_id), str(target), str(key), str(sender))


def reaction_state_key(event_id: str) -> str:
    return f"reaction.{event_id}"


def thread_key(event_id: str) -> str:
    """The thread root of a command written in a thread, kept so that its answer goes there."""
    return f"thread.{event_id}"


def thread_slot_key(slot: int) -> str:
    """Which command's thread a slot of the bounded ring of remembered threads holds."""
    return f"threads.{slot}"


THREAD_NEXT_KEY = "threads.next"  # the ring's next slot, counting up


def direct_room_key(room_id: str) -> str:
    """Marks a room the bot made for a direct conversation with a member."""
    return f"direct.{room_id}"


def is_direct_invite(event: Json, bot_user_id: str) -> bool:
    """The bot's invite into a room it made for a direct conversation (`createRoom` with `is_direct`)."""
    content = _content(event)
    return (
        event.get("type") == "m.room.member"
        and event.get("sender") == bot_user_id
        and content.get("membership") == "invite"
        and content.get("is_direct") is True
    )


@dataclass(frozen=True, slots=True)
class Room:
    """How the adapter names a room and its members when it makes neutral references."""

    room_id: str
    display: str = ""
    names: Mapping[str, str] = field(default_factory=dict)

    @property
    def channel(self) -> ChannelRef:
        return ChannelRef(PLATFORM, self.room_id, self.display)

    def user(self, user_id: str) -> UserRef:
        return UserRef(PLATFORM, user_id, self.names.get(user_id, ""))


@dataclass(slots=True)
class Translation:
    """Neutral events of one room's timeline, and the reactions among them to remember."""

    events: list[InboundEvent] = field(default_factory=list)
    reactions: dict[str, ReactionRecord] = field(default_factory=dict)
    # Reactions taken back here: their records are no longer needed and can be forgotten.
    forgotten: set[str] = field(default_factory=set)


def normalise_prefix(prefix: str) -> str:
    """`!peer` as configured; the port shows it with its trailing space (`!peer `)."""
    return prefix.strip()


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted `> ...` lines a client puts before the text of a reply."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    return "\n".join(lines[index:]).lstrip("\n")


def command_text(body: str, prefix: str) -> str | None:
    """The command line after the prefix (`goal propose Learn Rust`), or None when it is no command.

    The prefix matches case-insensitively and must stand alone: `!peerage` is not `!peer age`.
    """
    prefix = normalise_prefix(prefix)
    text = body.strip()
    if not prefix or text[: len(prefix)].casefold() != prefix.casefold():
        return None
    rest = text[len(prefix) :]
    if rest and not rest[0].isspace():
        return None
    return rest.strip()


def _content(event: Json) -> Mapping[str, Any]:
    content = event.get("content")
    return content if isinstance(content, Mapping) else {}


def is_redacted(event: Json) -> bool:
    unsigned = event.get("unsigned")
    return isinstance(unsigned, Mapping) and "redacted_because" in unsigned


def redacted_id(event: Json) -> str | None:
    """The event a redaction takes back (top level before room version 11, in the content after)."""
    redacts = _content(event).get("redacts") or event.get("redacts")
    return redacts if isinstance(redacts, str) else None


def redaction_targets(events: Iterable[Json]) -> list[str]:
    """Ids of the events that the redactions among `events` name, to look up remembered reactions."""
    return [
        target
        for event in events
        if event.get("type") == "m.room.redaction" and (target := redacted_id(event))
    ]


def is_own_join(event: Json, bot_user_id: str) -> bool:
    return (
        event.get("type") == "m.room.member"
        and event.get("state_key") == bot_user_id
        and _content(event).get("membership") == "join"
        and _previous_membership(event) != "join"
    )


def since_own_join(events: Sequence[Json], bot_user_id: str) -> list[Json]:
    """The events after the bot's latest join, or all of them when the join is not among them.

    History from before the bot joined a room is never acted on: a command written before the
    bot was there was not meant for it.
    """
    for index in range(len(events) - 1, -1, -1):
        if is_own_join(events[index], bot_user_id):
            return list(events[index + 1 :])
    return list(events)


def _previous_membership(event: Json) -> str | None:
    unsigned = event.get("unsigned")
    if not isinstance(unsigned, Mapping):
        return None
    previous = unsigned.get("prev_content")
    if not isinstance(previous, Mapping):
        return None
    membership = previous.get("membership")
    return membership if isinstance(membership, str) else None


def _relation(content: Mapping[str, Any]) -> Mapping[str, Any]:
    relation = content.get("m.relates_to")
    return relation if isinstance(relation, Mapping) else {}


def translate_timeline(
    room: Room,
    events: Sequence[Json],
    *,
    bot_user_id: str,
    prefix: str,
    known_reactions: Mapping[str, ReactionRecord],
    direct: bool = False,
) -> Translation:
    """Turn one room's timeline (oldest first) into neutral events.

    `known_reactions` holds the reactions remembered from earlier batches that redactions in
    `events` may name; reactions seen here are added to the result so the caller can remember them.
    The bot's own events, edits, notices and events already redacted are skipped. In a `direct` room
    (a conversation between the bot and one member) only commands count, written privately: what else
    happens there is no activity in any group.
    """
    out = Translation()
    seen: set[str] = set()
    for event in events:
        event_id = event.get("event_id")
        sender = event.get("sender")
        if not isinstance(event_id, str) or not isinstance(sender, str) or event_id in seen:
            continue
        seen.add(event_id)
        if sender == bot_user_id or is_redacted(event):
            continue
        if direct and event.get("type") != "m.room.message":
            continue
        neutral = _translate_one(room, event, event_id, sender, prefix, known_reactions, out)
        if isinstance(neutral, CommandInvoked) and direct:
            out.events.append(replace(neutral, direct=True))
        elif neutral is not None and not direct:
            out.events.append(neutral)
    return out


def _translate_one(
    room: Room,
    event: Json,
    event_id: str,
    sender: str,
    prefix: str,
    known: Mapping[str, ReactionRecord],
    out: Translation,
) -> InboundEvent | None:
    remembered = out.reactions
    kind = event.get("type")
    content = _content(event)
    channel = room.channel
    if kind == "m.room.message":
        if content.get("msgtype") != "m.text" or _relation(content).get("rel_type") == "m.replace":
            return None
        body = content.get("body")
        if not isinstance(body, str):
            return None
        message = MessageRef(channel, event_id)
        if "m.in_reply_to" in _relation(content):
            body = strip_reply_fallback(body)
        text = command_text(body, prefix)
        if text is None:
            return MessagePosted(event_id, channel, room.user(sender), message)
        return CommandInvoked(event_id, channel, room.user(sender), text, None, message)
    if kind == "m.reaction":
        relation = _relation(content)
        target, key = relation.get("event_id"), relation.get("key")
        if relation.get("rel_type") != "m.annotation" or not isinstance(target, str):
            return None
        if not isinstance(key, str) or not key:
            return None
        remembered[event_id] = ReactionRecord(room.room_id, target, key, sender)
        return ReactionAdded(event_id, MessageRef(channel, target), room.user(sender), key)
    if kind == "m.room.redaction":
        target = redacted_id(event)
        if target is None:
            return None
        record = remembered.get(target) or known.get(target)
        if record is None or record.room_id != room.room_id:
            return None
        remembered.pop(target, None)  # a redaction is final: nothing will name this reaction again
        out.forgotten.add(target)
        return ReactionRemoved(
            event_id, MessageRef(channel, record.target), room.user(record.sender), record.key
        )
    if kind == "m.room.member":
        return _membership(room, event, event_id, sender, content)
    return None


def _membership(
    room: Room, event: Json, event_id: str, sender: str, content: Mapping[str, Any]
) -> InboundEvent | None:
    """A member joining the room, or leaving it (of their own accord, kicked or banned)."""
    member = event.get("state_key")
    if not isinstance(member, str):
        return None
    state, before = content.get("membership"), _previous_membership(event)
    if state == "join" and member == sender and before != "join":  # join after join: a profile change
        user = room.user(sender)
        name = content.get("displayname")
        if not user.display and isinstance(name, str):
            user = UserRef(PLATFORM, sender, name)
        return MemberJoined(event_id, room.channel, user)
    if state in ("leave", "ban") and before == "join":  # an invite declined was never a join
        return MemberLeft(event_id, room.channel, room.user(member))
    return None


# Invites and power -------------------------------------------------------------------------------


def inviter_of(invite_state: Iterable[Json], bot_user_id: str) -> str | None:
    """Who invited the bot, from the stripped state of an invite."""
    for event in invite_state:
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == bot_user_id
            and _content(event).get("membership") == "invite"
        ):
            sender = event.get("sender")
            return sender if isinstance(sender, str) else None
    return None


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def inviter_allowed(inviter: str | None, allowed: Sequence[str]) -> bool:
    """Empty `allowed` accepts anyone; entries are user ids (`@ana:example.org`) or servers
    (`example.org`, also written `:example.org` or `*:example.org`)."""
    if not allowed:
        return True
    if not inviter:
        return False
    for entry in allowed:
        entry = entry.strip()
        if entry.startswith("@"):
            if entry == inviter:
                return True
        elif entry.removeprefix("*").removeprefix(":").casefold() == server_of(inviter).casefold():
            return True
    return False


def creators_have_top_power(room_version: str) -> bool:
    if room_version in _CREATOR_POWER_VERSIONS:
        return True
    return room_version.isdigit() and int(room_version) >= _FIRST_NUMBERED_CREATOR_POWER


def room_creators(create_event: Json) -> set[str]:
    """The creators of a room: the sender of m.room.create and its `additional_creators`."""
    creators: set[str] = set()
    sender = create_event.get("sender")
    if isinstance(sender, str):
        creators.add(sender)
    extra = _content(create_event).get("additional_creators")
    if isinstance(extra, list):
        creators.update(user for user in extra if isinstance(user, str))
    return creators


def power_level(user_id: str, power_levels: Json) -> int:
    users = power_levels.get("users")
    level = users.get(user_id) if isinstance(users, Mapping) else None
    if level is None:
        level = power_levels.get("users_default", 0)
    try:
        return int(level)
    except (TypeError, ValueError):
        return 0


def is_facilitator(user_id: str, *, create_event: Json, power_levels: Json | None, threshold: int) -> bool:
    """Facilitators hold at least `threshold` power, or created a room whose creators hold top power.

    Without any m.room.power_levels event, the creator holds 100 in every room version.
    """
    version = str(_content(create_event).get("room_version") or "1")
    creators = room_creators(create_event)
    if user_id in creators and (creators_have_top_power(version) or power_levels is None):
        return True
    return power_level(user_id, power_levels or {}) >= threshold


# Outbound ----------------------------------------------------------------------------------------

_ROOM_PING = re.compile(r"@(room)\b", re.IGNORECASE)
_USER_ID = re.compile(r"@(?=[a-z0-9._=/+-]+:[a-z0-9.-]+)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def defuse_mentions(text: str) -> str:
    """Break `@room` and user ids with an invisible word joiner, for clients that still ping on text.

    Clients that follow intentional mentions already ping nobody, because `m.mentions` is empty.
    """
    text = _ROOM_PING.sub(f"@{WORD_JOINER}\\1", text)
    return _USER_ID.sub(f"@{WORD_JOINER}", text)


def json_size(text: str) -> int:
    """Bytes the text takes inside a JSON string (UTF-8, with its escapes)."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def fit_body(text: str, limit: int = MAX_BODY_BYTES) -> str:
    """The text cut (at a character boundary, with a note) to at most `limit` bytes of JSON."""
    if json_size(text) <= limit:
        return text
    return _cut(text, limit - json_size(TRUNCATED)) + TRUNCATED


def _cut(text: str, limit: int) -> str:
    size = 0
    for index, char in enumerate(text):
        size += json_size(char)
        if size > limit:
            return text[:index]
    return text


def split_body(text: str, limit: int = MAX_BODY_BYTES, max_parts: int = MAX_PARTS) -> list[str]:
    """The text in parts that each fit one event, split between lines where it can be.

    Past `max_parts` the rest is dropped and the last part says so.
    """
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        pieces = [line]
        if json_size(line) > limit:
            pieces = []
            while line:
                piece = _cut(line, limit)
                pieces.append(piece)
                line = line[len(piece) :]
        for piece in pieces:
            extra = json_size(piece) + (2 if current else 0)  # the joining newline is escaped: 2 bytes
            if current and size + extra > limit:
                parts.append("\n".join(current))
                current, size, extra = [], 0, json_size(piece)
            current.append(piece)
            size += extra
    parts.append("\n".join(current))
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        parts[-1] = fit_body(parts[-1] + TRUNCATED, limit)
    return parts


def thread_root(event: Json) -> str | None:
    """The root of the thread an event was posted in, if any."""
    relation = _relation(_content(event))
    root = relation.get("event_id")
    return root if relation.get("rel_type") == "m.thread" and isinstance(root, str) else None


def notice_content(text: str, reply_to: str | None = None, in_thread: str | None = None) -> dict[str, Any]:
    """An m.notice that mentions nobody, optionally in reply to an event (inside its thread), or in a
    thread without replying to anyone (falling back, for clients without threads, to a reply to the
    root)."""
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": fit_body(defuse_mentions(text)),
        "m.mentions": {},
    }
    if reply_to is not None:
        relation: dict[str, Any] = {"m.in_reply_to": {"event_id": reply_to}}
        if in_thread is not None:
            relation |= {"rel_type": "m.thread", "event_id": in_thread, "is_falling_back": False}
        content["m.relates_to"] = relation
    elif in_thread is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": in_thread,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": in_thread},
        }
    return content


def file_content(
    filename: str, url: str, mimetype: str, size: int, in_thread: str | None = None, after: str | None = None
) -> dict[str, Any]:
    """An m.file event for an uploaded file (its mxc:// url), mentioning nobody. In a thread, it goes
    into the thread after the event `after` (the summary sent with it)."""
    content: dict[str, Any] = {
        "msgtype": "m.file",
        "body": filename,
        "filename": filename,
        "url": url,
        "info": {"mimetype": mimetype, "size": size},
        "m.mentions": {},
    }
    if in_thread is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": in_thread,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": after or in_thread},
        }
    return content


def edit_content(target: str, text: str) -> dict[str, Any]:
    new = notice_content(text)
    return {
        "msgtype": "m.notice",
        "body": "* " + new["body"],
        "m.mentions": {},
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }


def reaction_content(target: str, key: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """What the bot asks /sync for: the room timelines it acts on, nothing it does not need."""
    return {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": timeline_limit},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    }


# Idempotent sends and refusals -------------------------------------------------------------------

# 4xx answers that may succeed later as they are: a login to renew (401), a timeout, a rate limit.
_RETRYABLE_CLIENT_ERRORS = {401, 408, 429}
_RETRYABLE_ERRCODES = {"M_LIMIT_EXCEEDED", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"}


def transaction_id(key: str, part: int, scope: str = "") -> str:
    """The transaction id of one event sent for an idempotency key (part: which notice of a split text).

    Synapse keeps a transaction id per user and device, also across access tokens of that device,
    and answers a repeated PUT with the event it stored the first time, so a retry after a crash
    posts nothing twice. `scope` is a random value kept with the bot's database: outbox keys
    restart when the database is made anew, and without it a fresh database under a device that
    is still in use would get old events back instead of new ones for as long as Synapse
    remembers the transactions (a day).
    """
    return "-".join(("peerbot", *((scope,) if scope else ()), key, str(part)))


def refusal(what: str, http_status: int | None, errcode: str | None, message: str) -> DeliveryFailed:
    """What a homeserver's error answer to a post means for the outbox: final, or worth a retry.

    A 4xx other than a lost login, a timeout or a rate limit will not change on retry (no permission,
    not in the room, unknown room, too large, malformed): permanent. 5xx and the rest: retried.
    """
    reason = f"{what}: {errcode or f'HTTP {http_status}'} {message}".strip()
    if errcode in _RETRYABLE_ERRCODES or http_status in _RETRYABLE_CLIENT_ERRORS:
        return DeliveryFailed(reason, permanent=False)
    permanent = http_status is not None and 400 <= http_status < 500
    return DeliveryFailed(reason, permanent=permanent)
