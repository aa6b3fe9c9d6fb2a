"""Decision threads: where a post marked with a `Thread` goes, and what the thread is called.

A goal's consent poll, an action review and a meeting's announcement each get a thread, started from
their message; posts marked with the thread (the decision, concerns, the summary, a meeting's opener)
go there, on platforms that have threads and in groups that did not switch them off (`auto threads
off`). Otherwise they go to the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.meetings import thread_title
from core.refs import MessageRef

if TYPE_CHECKING:
    from core.outbox import Post
    from core.ports import StoreTx

MAX_NAME = 100  # Discord's limit for a thread's name


@dataclass(frozen=True, slots=True)
class Placement:
    """The thread a post goes into: the message it is started from, and its name."""

    root: MessageRef
    name: str


def thread_name(title: str) -> str:
    """A thread's name: one line, within Discord's 100 characters."""
    line = " ".join(title.split())
    return line if len(line) <= MAX_NAME else line[: MAX_NAME - 1] + "…"


async def placement(tx: StoreTx, post: Post) -> Placement | None:
    """The thread the post goes into; None for the channel: the post has no thread, the group switched
    threads off, or the thread's message is not posted (yet, or ever)."""
    thread = post.thread
    if thread is None:
        return None
    group = (
        await tx.groups.by_id(post.group_id)
        if post.group_id is not None
        else await tx.groups.get(post.channel)
    )
    if group is None or not group.auto_threads:
        return None
    if thread.kind == "poll":
        poll = await tx.polls.get(group.id, thread.id)
        if poll is None or poll.message is None:
            return None
        goal = await tx.goals.for_poll(poll.id)
        title = f"Goal {goal.id}: {goal.text}" if goal is not None else f"Poll {poll.id}: {poll.question}"
        return Placement(poll.message, thread_name(title))
    if thread.kind == "review":
        review = await tx.reviews.get(group.id, thread.id)
        if review is None or review.message_id is None:
            return None
        return Placement(
            MessageRef(group.channel, review.message_id), thread_name(f"Action review {review.id}")
        )
    if thread.kind == "meeting":
        occurrence = await tx.meetings.occurrence(thread.id)
        if occurrence is None or occurrence.message is None:
            return None
        meeting = await tx.meetings.get(group.id, occurrence.meeting_id)
        if meeting is None:
            return None
        return Placement(occurrence.message, thread_name(thread_title(meeting, occurrence, group.timezone)))
    return None
