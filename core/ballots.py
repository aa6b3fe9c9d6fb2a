"""Anonymous votes: cast privately, counted like reactions, tied to nobody once the poll closes.

While an anonymous poll is open, its key lies in the store, and each member's votes are recorded as
reactions whose user key is the member's keyed hash (HMAC-SHA256 of their key under the poll's key)
and whose name is empty: a member can change or take back a vote, and the tally is the reactions'
tally. Closing the poll destroys the key (`PollRepo.close`), and with it the only way from a member to
a hash; what a secret's confirmations left in the outbox goes too (`OutboxRepo.forget_sealed`).

A vote cast again for the same option takes it back, as a second click on a button does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import Enum
from typing import TYPE_CHECKING

from core.polls import Poll, PollReaction, ReactionChange
from core.refs import UserRef

if TYPE_CHECKING:
    from core.ports import StoreTx

# A hashed voter's key begins with this, so that it can never be taken for a member's key.
HASHED = "anon:"
# What a secret's answer is sealed with when no poll or review closes over it (see `Post.sealed`).
SECRET = "secret"
SECRET_BYTES = 32


class Cast(Enum):
    COUNTED = "counted"
    TAKEN_BACK = "taken back"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def voter_key(secret: bytes, user: UserRef) -> str:
    return HASHED + hmac.new(secret, user.key.encode(), hashlib.sha256).hexdigest()


def sealed(poll: Poll) -> str:
    """What a confirmation of a vote on this poll is sealed with (see `Post.sealed`)."""
    return f"poll:{poll.id}"


def changes_for(
    poll: Poll, mine: list[PollReaction], voter: str, option: int
) -> tuple[Cast, list[ReactionChange]]:
    """The reaction changes one vote makes, given the voter's reactions so far: the same option again
    takes it back; in a single-choice poll a new option replaces the one before."""
    chosen = {r.option for r in mine if r.present}
    if option in chosen:
        return Cast.TAKEN_BACK, [ReactionChange(voter, "", option, False)]
    dropped = [] if poll.multiple else [ReactionChange(voter, "", o, False) for o in sorted(chosen)]
    return Cast.COUNTED, [*dropped, ReactionChange(voter, "", option, True)]


async def cast(tx: StoreTx, poll: Poll, user: UserRef, option: int) -> Cast | None:
    """Record a member's private vote on an open anonymous poll; None when the poll holds no key (it
    closed meanwhile)."""
    secret = await tx.polls.secret(poll.id)
    if secret is None:
        return None
    voter = voter_key(secret, user)
    mine = [r for r in await tx.polls.reactions(poll.id) if r.user_key == voter]
    outcome, changes = changes_for(poll, mine, voter, option)
    await tx.polls.record_reactions(poll.id, changes)
    return outcome


async def withdraw(tx: StoreTx, poll: Poll, user: UserRef) -> bool:
    """Take back every vote the member has on an open anonymous poll (`forget-me`); False when there
    was none, or the poll holds no key any more."""
    secret = await tx.polls.secret(poll.id)
    if secret is None:
        return False
    voter = voter_key(secret, user)
    present = sorted(
        {r.option for r in await tx.polls.reactions(poll.id) if r.user_key == voter and r.present}
    )
    await tx.polls.record_reactions(poll.id, [ReactionChange(voter, "", o, False) for o in present])
    return bool(present)


async def voted(tx: StoreTx, polls: list[Poll], user: UserRef) -> set[int]:
    """Which of these open anonymous polls the member has a vote on (while their keys last)."""
    if not polls:
        return set()
    reactions = await tx.polls.reactions_of([p.id for p in polls])
    found = set()
    for poll in polls:
        secret = await tx.polls.secret(poll.id)
        if secret is None:
            continue
        voter = voter_key(secret, user)
        if any(r.user_key == voter and r.present for r in reactions.get(poll.id, [])):
            found.add(poll.id)
    return found
