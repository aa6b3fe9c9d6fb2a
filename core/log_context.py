"""What a log line is about: the group, the command and the inbound event the engine is working on.

The engine sets these around the work of one event; a log formatter (bot/logs.py) adds them to every
line written meanwhile, by whichever module writes it. Context variables follow the asyncio task, so
two events handled at once never mix their fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_group: ContextVar[str | None] = ContextVar("peerbot_log_group", default=None)
_command: ContextVar[str | None] = ContextVar("peerbot_log_command", default=None)
_event: ContextVar[str | None] = ContextVar("peerbot_log_event", default=None)
_FIELDS = {"group": _group, "command": _command, "event_id": _event}


@contextmanager
def about(
    *, group: str | None = None, command: str | None = None, event_id: str | None = None
) -> Iterator[None]:
    """Log lines written inside are about these (the ones given; the others stay as they were)."""
    given = {"group": group, "command": command, "event_id": event_id}
    tokens = [(_FIELDS[k], _FIELDS[k].set(v)) for k, v in given.items() if v is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def fields() -> dict[str, str]:
    """The fields set where this is called: group, command, event_id (those that are set)."""
    return {name: value for name, var in _FIELDS.items() if (value := var.get()) is not None}
