"""Forgetting a member (`forget-me`): what goes, what stays in the group's record, and how it then reads.

Their own words go (reflections, and concerns they voiced by name: anonymous ones link to nobody, so
they stay), and so do their votes in polls still open, the record of whom a poll asked for a concern,
and their places on the groups' rosters with what they said about themselves there, and in roles'
rotation pools; roles they hold are freed, and nobody has them as a buddy any more. What belongs to the
group stays, by "a former member": goals they proposed, polls they opened, phase changes, nudges,
meetings and reviews they started, concerns they marked addressed, the weeks they wrapped, their votes
in closed polls and their RSVPs to meetings (attendance counts), so that past decisions read the same.
Every key that stood for them is replaced by a fresh anonymous key, one per item, so the items link to
nothing and to each other no more. The bot's own records go or are cleaned: adapter state that names
them, unsent posts to them, and their names and ids in queued texts and failure reasons.

Inbound event ids are the platforms' ids of messages and gateway dispatches (see the adapters'
translate modules), never user ids, so the records of applied and failed events keep their ids.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import ballots
from core.ballots import SECRET
from core.events import Reply
from core.refs import UserRef

if TYPE_CHECKING:
    from core.commands import Invocation
    from core.context import Context, PrivateContext

FORMER_MEMBER = "a former member"
ANONYMOUS_PREFIX = "former:"


def anonymous_key() -> str:
    """A key that stands for a forgotten member in one item only."""
    return f"{ANONYMOUS_PREFIX}{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a member did."""

    reflections: int = 0  # deleted
    open_votes: int = 0  # deleted from open polls
    closed_votes: int = 0  # kept in closed polls' tallies under an anonymous key
    renamed: int = 0  # goals, polls, phase changes, schedules and reviews now by "a former member"
    records: int = 0  # adapter state, outbox rows and failed events deleted or cleaned
    rosters: int = 0  # places on groups' rosters deleted
    buddies: int = 0  # members whose buddy they were, who now have none
    concerns: int = 0  # concerns they voiced by name, deleted
    roles: int = 0  # places in roles' rotation pools, and roles they held (now free)


def identifiers(user: UserRef, stored_names: Iterable[str]) -> list[str]:
    """Every text that names the member: their key, id and names (now and as stored), longest first.

    Longest first, so that a key is replaced whole before the id inside it.
    """
    found = {user.key, user.id, user.display, *stored_names} - {"", FORMER_MEMBER}
    return sorted(found, key=lambda w: (-len(w), w))


def scrub(text: str, words: Iterable[str]) -> str:
    """`text` with each of `words` replaced by "a former member" where it stands alone.

    "Bob" goes from "Goal 3 (proposed by Bob)", but "Bobsleigh" stays: a name is not cut out of
    another word.
    """
    for word in words:
        text = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", FORMER_MEMBER, text)
    return text


def state_value_needle(user: UserRef) -> str:
    """How the member's id appears inside a JSON value: a cheap filter before `names_user`."""
    return json.dumps(user.id, ensure_ascii=False)[1:-1]


def names_user(key: str, value: str, user: UserRef) -> bool:
    """Adapter state that records the member.

    State is namespaced by platform ("matrix.reaction.<event id>"). A record of the member is a JSON
    list or object in their platform's namespace holding their platform id as one of its strings,
    such as the Matrix adapter's reaction records ([room, target, key, sender]). Sync tokens and
    counters are not JSON lists or objects, and are never taken for one.
    """
    if not key.startswith(f"{user.platform}."):
        return False
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return isinstance(data, list | dict) and user.id in _strings(data)


def _strings(data: Any) -> set[str]:
    if isinstance(data, str):
        return {data}
    if isinstance(data, dict):
        data = [*data.keys(), *data.values()]
    if isinstance(data, list):
        return set().union(*(_strings(item) for item in data)) if data else set()
    return set()


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def report(done: Forgotten) -> str:
    """The answer to `forget-me confirm`: what was done, in two lines."""
    concerns = f", {_count(done.concerns, 'concern', 'concerns')}" if done.concerns else ""
    return (
        f"Done: {_count(done.reflections, 'reflection', 'reflections')}{concerns} and"
        f" {_count(done.open_votes, 'vote', 'votes')} in open polls deleted;"
        f" {_count(done.closed_votes, 'vote', 'votes')} in closed polls still"
        f" {'counts' if done.closed_votes == 1 else 'count'}, without your name.\n"
        f"Goals, polls, nudges, reviews and phase changes of yours now say “{FORMER_MEMBER}”"
        f" ({done.renamed}); {_count(done.records, 'record', 'records')} the bot kept about you"
        f" deleted or cleaned.\nYou are off {_count(done.rosters, 'roster', 'rosters')}, and out of"
        f" {_count(done.buddies, 'buddy pair', 'buddy pairs')}"
        + (
            f", and out of {_count(done.roles, 'role and rotation', 'roles and rotations')}."
            if done.roles
            else "."
        )
    )


async def forget_me(ctx: Context | PrivateContext, inv: Invocation) -> Reply:
    """Forget the member on this platform (every group): in a group's channel, or written privately."""
    if inv.args.get("confirm") != "confirm":
        return Reply(
            "This deletes your reflections, the concerns you voiced by name (anonymous ones are linked to"
            " nobody and stay) and your votes in open polls, in every group this bot serves"
            f" on {ctx.chat.platform}. Your votes in closed polls stay in their tallies without your name;"
            f" goals, polls, nudges and reviews you started stay, by “{FORMER_MEMBER}”. Messages and"
            " reactions on the chat itself are not changed: take your reactions off open polls there too."
            " You leave every group's roster and every role's rotation, roles you hold are freed, and"
            " nobody has you as a buddy any more. Your votes in"
            " anonymous polls still open are taken back; closed ones hold nothing tied to you."
            f" To go ahead, say {ctx.prefix}forget-me confirm."
        )
    open_polls = await ctx.tx.polls.open_on(ctx.chat.platform, ctx.uow.now)
    withdrawn = [p for p in open_polls if p.anonymous and await ballots.withdraw(ctx.tx, p, ctx.event.user)]
    done = report(await ctx.tx.members.forget(ctx.event.user))
    if rsvps := await ctx.tx.meetings.forget(ctx.event.user):
        done += f"\nYour RSVPs and the meetings you added ({rsvps}) stay, by “{FORMER_MEMBER}”."
    closed = "Votes in closed anonymous polls are tied to nobody: nothing there is yours to remove."
    if withdrawn:
        taken = _count(len(withdrawn), "open anonymous poll", "open anonymous polls")
        closed = f"Your votes in {taken} are taken back. {closed}"
    return Reply(f"{done}\n{closed}", sealed=SECRET if withdrawn else None)
