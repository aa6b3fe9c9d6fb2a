"""Named points where a test can stop the process, to show that a crash anywhere loses nothing.

Production code only calls `reached`; nothing happens unless a hook is installed (the command line
installs one that kills the process when PEERBOT_CRASH_AT names a point; see docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Callable

_hook: Callable[[str], None] | None = None

# The points, in the order a unit of work and its posts pass them.
POINTS = (
    "uow.before_commit",  # everything written, posts queued, the transaction not yet committed
    "uow.after_commit",  # committed, nothing sent (both only for units of work that queue posts)
    "outbox.after_send",  # the platform has the message, the outbox does not know it yet
    "outbox.after_posted",  # the message id is saved and linked, no reaction added
    "outbox.after_reaction",  # some of a poll's reactions are on it
)


def install(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook


def reached(point: str) -> None:
    if _hook is not None:
        _hook(point)
