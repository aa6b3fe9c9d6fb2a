"""What needs a member, as pure rules and texts: the open polls they have not voted on (consent polls
of goals among them) and the open action review they have not answered, each with its closing time
and how to respond."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.clock import format_time
from core.goals import Goal
from core.lifecycle import Group
from core.paging import Item, Listing
from core.polls import Poll, as_sentence, how_to_vote, poll_title
from core.prompts import REVIEW_QUESTIONS
from core.reflections import Review

CAUGHT_UP = "every open poll has your vote, and no review waits for your answers"
WHAT = "the things waiting for you"  # for the answer to a page that does not exist


@dataclass(frozen=True, slots=True)
class Waiting:
    """One thing that waits for the member's answer: a poll (with its goal, for a consent poll), or
    an action review."""

    closes_at: datetime
    poll: Poll | None = None
    goal: Goal | None = None
    review: Review | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """What waits for the member in one group, closing soonest first."""

    group: Group
    items: tuple[Waiting, ...]


def pending(
    groups: Sequence[Group], polls: Sequence[Poll], goals: Mapping[int, Goal], reviews: Sequence[Review]
) -> list[Pending]:
    """For each group, in the order given, what waits for the member: of the open `polls` and `reviews`
    given (those they have not voted on, or answered), the ones of that group, closing soonest first;
    each consent poll with its goal (`goals`, by poll id)."""
    waiting: dict[int, list[Waiting]] = {g.id: [] for g in groups}
    for poll in polls:
        if poll.group_id in waiting:
            waiting[poll.group_id].append(Waiting(poll.closes_at, poll=poll, goal=goals.get(poll.id)))
    for review in reviews:
        if review.group_id in waiting:
            waiting[review.group_id].append(Waiting(review.closes_at, review=review))
    return [Pending(g, tuple(sorted(waiting[g.id], key=_soonest_first))) for g in groups]


def _soonest_first(item: Waiting) -> tuple[datetime, int, int]:
    """Closing soonest first; at the same moment, polls (in their order) before the review."""
    if item.poll is not None:
        return (item.closes_at, 0, item.poll.id)
    assert item.review is not None
    return (item.closes_at, 1, item.review.id)


def waiting_line(item: Waiting, tz: str, prefix: str) -> str:
    """One thing waiting: what it is, when it closes (in the group's timezone), and how to respond."""
    closes = format_time(item.closes_at, tz)
    if item.poll is not None:
        title = as_sentence(poll_title(item.poll, item.goal))
        if item.poll.anonymous:
            numbered = ", ".join(f"{i}. {o.emoji}" for i, o in enumerate(item.poll.options, 1))
            return (
                f"{title} Closes {closes}. Vote privately: {prefix}vote {item.poll.id} <number>"
                f" ({numbered}), written to the bot directly."
            )
        return f"{title} Closes {closes}. React on poll {item.poll.id}: {how_to_vote(item.poll)}."
    assert item.review is not None
    return (
        f"Action review {item.review.id}: five questions for the group. Closes {closes}."
        f" Answer with {prefix}reflect q<number> <your answer> (q1 to q{len(REVIEW_QUESTIONS)})."
    )


def _names(groups: Sequence[Group]) -> str:
    names = [g.channel.name for g in groups]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def in_group(found: Pending, prefix: str) -> Listing:
    """`pending` in a group's channel: what waits for the member there."""
    group = found.group
    return Listing(
        what=WHAT,
        head=f"What needs you in {group.channel.name}, closing soonest first:",
        items=[Item("  " + waiting_line(item, group.timezone, prefix)) for item in found.items],
        command=f"{prefix}pending",
        empty=f"You are all caught up in {group.channel.name}: {CAUGHT_UP}. 🎉",
    )


def everywhere(found: Sequence[Pending], prefix: str) -> Listing:
    """`pending` written to the bot privately: what waits for the member in each of their groups,
    under the group's name; the groups where nothing waits are named at the end."""
    if found:
        empty = f"You are all caught up in {_names([p.group for p in found])}: {CAUGHT_UP}. 🎉"
    else:
        empty = (
            "You are on no group's roster here yet, so nothing waits for you."
            f" Join a group in its channel with {prefix}join."
        )
    caught_up = [p.group for p in found if not p.items]
    return Listing(
        what=WHAT,
        head="What needs you, closing soonest first:",
        items=[
            Item("  " + waiting_line(item, p.group.timezone, prefix), f"{p.group.channel.name}:")
            for p in found
            for item in p.items
        ],
        command=f"{prefix}pending",
        empty=empty,
        foot=f"Nothing waits for you in {_names(caught_up)}." if caught_up else "",
    )
