"""Concerns heard in the chat: the private question after a 🤔 or ⛔, `concern`, and `concern done`.

See core/concerns.py for the rules. The question is asked in the unit of work that recorded the vote,
once per poll and member: the store keeps whom it asked (`ConcernRepo.claim_asks`), so neither a restart
nor a second process asks again. A batch of thousands of reactions costs one more write at most (none
when this process knows everyone in it was asked), and two reads when someone is asked the first time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time

from core.commands import Invocation, UsageError
from core.concerns import HEARD_ON, ask_text, concern_line, to_ask
from core.context import Context, Handler, PrivateContext, PrivateHandler
from core.events import Reply
from core.forgetting import ANONYMOUS_PREFIX
from core.outbox import Post, PostKind, Thread
from core.polls import PollKind
from core.ports import ChatPort, command_prefix
from core.refs import UserRef
from core.uow import DomainEvent, UnitOfWork, VotesRecorded, quiet_hold


def _day(at: datetime) -> datetime:
    """When an anonymous concern is kept as written: the day only, so that its time matches no member's
    activity or message."""
    return datetime.combine(at.date(), time(), at.tzinfo)


def _member(key: str, name: str) -> UserRef:
    platform, _, user_id = key.partition(":")
    return UserRef(platform, user_id, name)


MAX_KNOWN = 100_000


class ConcernService:
    def __init__(self, chats: Mapping[str, ChatPort]) -> None:
        self.chats = chats
        # (poll id, member key) the store said were asked before: committed by an earlier unit of work,
        # so a batch that holds only these skips the claim. Fresh claims are not noted here: their unit
        # of work may still roll back.
        self._known: set[tuple[int, str]] = set()

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {("concern", "add"): self._voice, ("concern", "done"): self._done}

    def private_handlers(self) -> Mapping[tuple[str, ...], PrivateHandler]:
        return {("concern", "add"): self._voice_privately}

    async def _voice_privately(self, ctx: PrivateContext, inv: Invocation) -> Reply:
        """A concern written to the bot directly (where it asked): about the goal of that number in one of
        the member's groups."""
        for group in ctx.groups:
            if await ctx.uow.tx.goals.get(group.id, inv.args["goal"]) is not None:
                return await self._voice(ctx.in_group(group), inv)
        raise UsageError(f"There is no goal {inv.args['goal']} in a group whose roster you are on.", inv.spec)

    async def ask(self, uow: UnitOfWork, event: DomainEvent) -> None:
        """Subscriber: votes changed. Whoever added a 🤔 or ⛔ on a goal's consent poll is asked privately
        what their concern is, once per poll; the question waits out the group's quiet hours."""
        assert isinstance(event, VotesRecorded)
        wanted: dict[tuple[int, str], tuple[str, int]] = {}
        polls = {p.id: p for p in event.polls if p.kind is PollKind.CONSENT}
        for poll_id, changes in event.changes.items():
            if poll_id not in polls:
                continue
            for key, name, option in to_ask(changes):
                if not key.startswith(ANONYMOUS_PREFIX) and (poll_id, key) not in self._known:
                    wanted[(poll_id, key)] = (name, option)
        if not wanted:
            return
        fresh = await uow.tx.concerns.claim_asks(list(wanted), uow.now)
        if len(self._known) > MAX_KNOWN:
            self._known.clear()
        self._known.update(ask for ask in wanted if ask not in fresh)
        if not fresh:
            return
        goals = await uow.tx.goals.for_polls({poll_id for poll_id, _ in fresh})
        groups = await uow.tx.groups.many(sorted({polls[poll_id].group_id for poll_id, _ in fresh}))
        for poll_id, key in sorted(fresh):
            goal, group = goals.get(poll_id), groups.get(polls[poll_id].group_id)
            if goal is None or group is None:
                continue
            name, option = wanted[(poll_id, key)]
            user = _member(key, name)
            chat = self.chats.get(user.platform)
            structured = chat is not None and chat.interactive_replies  # Discord: slash commands
            prefix = command_prefix(self.chats, user.platform)
            text = ask_text(goal, option, group.channel.name, prefix, structured=structured)
            held = quiet_hold(group, uow.now)
            dm = Post(PostKind.DIRECT, group.channel, text, user=user, group_id=group.id, not_before=held)
            uow.post(dm, placed=True)

    # Commands ----------------------------------------------------------------------------------

    async def _voice(self, ctx: Context, inv: Invocation) -> Reply:
        """`concern [--anonymous] <goal> <text>`: heard by the group at once, in the goal's poll thread."""
        goal = await ctx.tx.goals.get(ctx.group.id, inv.args["goal"])
        if goal is None:
            raise UsageError(f"There is no goal {inv.args['goal']} in this channel.", inv.spec)
        if goal.status not in HEARD_ON:
            return Reply(
                f"Goal {goal.id} is {goal.status.value}; concerns are heard on proposed, accepted or blocked"
                " goals. Nothing was changed.",
                is_error=True,
            )
        text = " ".join(inv.text("text").split())
        anonymous = inv.flag("anonymous")
        author = None if anonymous else ctx.event.user
        concern = await ctx.tx.concerns.add(
            ctx.group.id, goal.id, text, author, _day(ctx.now) if anonymous else ctx.now
        )
        thread = Thread("poll", goal.poll_id) if goal.poll_id is not None else None
        heard = f"A concern about goal {goal.id}: {concern_line(concern, full=True)}"
        ctx.uow.post(Post(PostKind.SEND, ctx.group.channel, heard, group_id=ctx.group.id, thread=thread))
        how = "without your name: the group reads “anonymous”" if anonymous else "by your name"
        return Reply(
            f"Concern {concern.id} on goal {goal.id} is heard, {how}. It is listed when the goal is decided"
            f" and in {ctx.prefix}goal show {goal.id}.",
            private=True,
        )

    async def _done(self, ctx: Context, inv: Invocation) -> Reply:
        """`concern done <id> [note]`: a facilitator marks a concern addressed; its author, if named, is
        told privately."""
        concern = await ctx.tx.concerns.get(ctx.group.id, inv.args["id"])
        if concern is None:
            raise UsageError(f"There is no concern {inv.args['id']} in this channel.", inv.spec)
        note = " ".join(inv.text("note").split())
        if not await ctx.tx.concerns.address(concern.id, ctx.event.user, note, ctx.now):
            return Reply(f"Concern {concern.id} was addressed already. Nothing was changed.", is_error=True)
        said = f": {note}" if note else "."
        if not concern.anonymous and concern.author_key != ctx.event.user.key:
            told = (
                f"Your concern {concern.id} about goal {concern.goal_id} in {ctx.group.channel.name} was"
                f" marked addressed by {ctx.event.user.name}{said}"
            )
            user = _member(concern.author_key, concern.author_name)
            ctx.uow.post(Post(PostKind.DIRECT, ctx.group.channel, told, user=user, group_id=ctx.group.id))
        return Reply(f"Concern {concern.id} ({concern.by}) about goal {concern.goal_id} is addressed{said}")
