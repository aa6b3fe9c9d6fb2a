"""The application service registration: what the homeserver loads to push the bot's rooms to it.

`new_registration` makes one (tokens at random); `read_registration` checks one the operator gives the
bot back. Plain values in and out: the command line writes and reads the file.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_BYTES = 32  # 256 bits each, as URL-safe text


@dataclass(frozen=True, slots=True)
class Registration:
    """What the bot needs from its registration. The tokens are secrets: never logged, never shown."""

    id: str
    as_token: str  # the bot's credential towards the homeserver
    hs_token: str  # the homeserver's credential towards the bot
    sender_localpart: str
    url: str | None

    def __repr__(self) -> str:
        return f"Registration(id={self.id!r}, sender_localpart={self.sender_localpart!r}, url={self.url!r})"


def localpart(user_id: str) -> str:
    """`peerbot` of `@peerbot:example.org`."""
    return user_id[1:].split(":", 1)[0]


def new_registration(app_id: str, user_id: str, url: str) -> dict[str, Any]:
    """The registration for a bot that is `user_id`, listening at `url`: both tokens made at random,
    the bot's user alone in an exclusive namespace, and no rate limit on it."""
    return {
        "id": app_id,
        "url": url,
        "as_token": secrets.token_urlsafe(TOKEN_BYTES),
        "hs_token": secrets.token_urlsafe(TOKEN_BYTES),
        "sender_localpart": localpart(user_id),
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": "^" + re.escape(user_id) + "$"}],
            "aliases": [],
            "rooms": [],
        },
    }


def read_registration(raw: Any, user_id: str) -> Registration:
    """The registration as the bot uses it; `ValueError` naming the key that is wrong."""
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping of keys (id, url, as_token, hs_token, sender_localpart, ...)")
    values: dict[str, str] = {}
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key}: missing, a non-empty text is required")
        values[key] = value
    if values["sender_localpart"] != localpart(user_id):
        raise ValueError(
            f"sender_localpart: {values['sender_localpart']!r} is not the bot's user {user_id}"
            " (write the registration again with peerbot matrix-registration)"
        )
    if values["as_token"] == values["hs_token"]:
        raise ValueError("as_token and hs_token must differ")
    url = raw.get("url")
    if url is not None and not isinstance(url, str):
        raise ValueError("url: expected the bot listener's URL, or null")
    return Registration(url=url, **values)
