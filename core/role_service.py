"""Shared responsibility in the chat: `role ...` and `wrap ...`, the weekly turn of roles, the wrapper's
draft, and the facilitator of the week.

Every week boundary (the group's digest time, Monday 09:00 by default, in its timezone) is one unit of
work per batch of roles: moving a role's boundary on is the claim (a compare-and-swap, so a boundary is
acted on once across restarts and processes), and what it hands over, drafts and posts commits with it
through the outbox. See core/roles.py for the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.commands import Invocation, UsageError
from core.concerns import concern_line
from core.context import Context, Handler
from core.events import Reply
from core.export import GroupRecord, load_record
from core.goals import GoalStatus
from core.lifecycle import Group
from core.nudging import digest_of, local_time
from core.outbox import Post, PostKind
from core.paging import Item, Listing, one_line
from core.ports import ChatPort, StoreTx, command_prefix
from core.refs import UserRef
from core.roles import (
    BUILT_IN,
    FACILITATOR_OF_THE_WEEK,
    MAX_ROLES,
    NOTETAKER,
    WRAP_WITHIN,
    WRAPPER,
    PoolMember,
    Role,
    Rotation,
    WrapState,
    active_keys,
    active_on,
    check_duty,
    check_name,
    next_holder,
    parse_rotation,
    turn_line,
    upcoming,
)
from core.schedules import Recurrence, ScheduleKind, first_occurrence, parse_schedule
from core.uow import UnitOfWork, Work

log = logging.getLogger(__name__)

BATCH = 200  # roles per unit of work: a batch with many drafts holds the write turn for a second or so
SHOWN_REFLECTIONS = 10  # in a wrapper's draft
SHOWN_TEXT = 200
NOTETAKERS_COMMAND = ("review", "summary")
WEEK = timedelta(days=7)  # characters of each reflection, concern or wrap shown in a list


def _user(key: str, name: str) -> UserRef:
    platform, _, user_id = key.partition(":")
    return UserRef(platform, user_id, name)


def _pool_user(p: PoolMember) -> UserRef:
    return _user(p.key, p.name)


class RoleService:
    def __init__(
        self,
        work: Work,
        chats: Mapping[str, ChatPort],
        platforms: Collection[str],
        recurrence: Recurrence,
        weekly: str,
    ) -> None:
        self.work = work
        self.chats = chats
        self.platforms = platforms
        self.recurrence = recurrence
        self.cron = parse_schedule(weekly, recurrence)[0]

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {
            ("role", "list"): self._list,
            ("role", "add"): self._add,
            ("role", "remove"): self._remove,
            ("role", "take"): self._take,
            ("role", "pass"): self._pass,
            ("role", "rotate"): self._rotate,
            ("role", "pool"): self._pool,
            ("wrap", "post"): self._wrap,
            ("wrap", "list"): self._wrap_list,
        }

    def _prefix(self, group: Group) -> str:
        return command_prefix(self.chats, group.channel.platform)

    def _wrap_command(self, platform: str) -> str:
        """How the wrapper writes `wrap` there: Discord's slash command has no shorthand."""
        chat = self.chats.get(platform)
        structured = chat is not None and chat.interactive_replies
        return f"{command_prefix(self.chats, platform)}wrap{' post' if structured else ''}"

    def week_after(self, group: Group, after: datetime, weeks: int = 1) -> datetime | None:
        """The group's `weeks`-th week boundary after `after` (its digest time, held past quiet hours)."""
        at: datetime | None = after
        for _ in range(weeks):
            if at is None:
                return None
            at = first_occurrence(self.cron, group.timezone, group.quiet, at, self.recurrence)[1]
        return at

    # The facilitator of the week ---------------------------------------------------------------

    @staticmethod
    async def facilitates(tx: StoreTx, group: Group, user: UserRef, path: tuple[str, ...] = ()) -> bool:
        """The member holds facilitator-of-the-week in this group (and no other); or, for `review
        summary`, the group's notetaker, whose duty it is."""
        names = [FACILITATOR_OF_THE_WEEK, *([NOTETAKER] if path == NOTETAKERS_COMMAND else [])]
        held = [await tx.roles.get(group.id, name) for name in names]
        return any(role is not None and role.held and role.holder_key == user.key for role in held)

    # Handing over ------------------------------------------------------------------------------

    def _tell_holder(
        self, uow: UnitOfWork, group: Group, role: Role, user: UserRef, rotation: Rotation
    ) -> None:
        prefix = self._prefix(group)
        when = {Rotation.OFF: "from now on", Rotation.WEEKLY: "this week"}.get(
            rotation, "for the next 2 weeks"
        )
        text = f"You are the {role.name} in {group.channel.name} {when} (duty: {role.duty})."
        if role.name == WRAPPER:
            text += (
                " When the week ends you get a draft by direct message; post the summary with"
                f" {self._wrap_command(group.channel.platform)} <text>."
            )
        text += f" Cannot do it this time? Say {prefix}role pass {role.name} in the group."
        uow.post(Post(PostKind.DIRECT, group.channel, text, user=user, group_id=group.id))

    async def _hand_on(
        self,
        uow: UnitOfWork,
        group: Group,
        role: Role,
        pool: Sequence[PoolMember],
        active: Collection[str],
        exclude: Collection[str],
    ) -> tuple[PoolMember | None, bool]:
        """Give the role to whose turn it is (or free it when nobody active is in its pool): the new
        holder, and whether the role changed hands (False when someone else changed it first)."""
        chosen = next_holder(pool, active, exclude)
        user = _pool_user(chosen) if chosen is not None else None
        if not await uow.tx.roles.set_holder(role.id, user, uow.now, role.holder_key):
            return None, False
        if chosen is not None and user is not None:
            self._tell_holder(uow, group, role, user, role.rotation)
        return chosen, True

    # Time --------------------------------------------------------------------------------------

    async def due(self, now: datetime) -> int:
        """Act on the week boundaries that have come (turns, drafts, inactive holders), then on drafts
        whose day is up. Returns how many roles were looked at."""
        looked = 0
        while True:
            async with self.work(now, unprompted=True) as uow:
                due = await uow.tx.roles.week_due(now, BATCH, self.platforms)
                full = len(due) == BATCH
                if full and len({r.group_id for r in due}) > 1:
                    # A group's roles go in one batch, so that the group gets its turns in one post.
                    due = [r for r in due if r.group_id != due[-1].group_id]
                looked += await self._weeks(uow, due, now)
            if not full:
                break
        await self._fallbacks(now)
        return looked

    async def _weeks(self, uow: UnitOfWork, due: Sequence[Role], now: datetime) -> int:
        tx = uow.tx
        if not due:
            return 0
        groups = await tx.groups.many(sorted({r.group_id for r in due}))
        turning: set[int] = set()
        replanned: set[int] = set()
        moves: list[tuple[int, datetime | None, datetime | None, datetime | None]] = []
        for role in due:
            group = groups.get(role.group_id)
            if group is None or role.next_week_at is None:
                continue
            seen = role.next_week_at
            # The group's turn in the week up to `seen`: `seen` itself, unless the group's timezone or
            # quiet hours changed since it was planned. A turn still ahead is planned anew, not acted on.
            real = self.week_after(group, seen - WEEK)
            if real is not None and real > now:
                next_turn = real if role.next_turn_at == seen else role.next_turn_at
                moves.append((role.id, seen, real, next_turn))
                replanned.add(role.id)
                continue
            # Weeks missed while the bot was down coalesce into this one.
            next_week = self.week_after(group, max(now, seen))
            next_turn = role.next_turn_at
            if role.rotation is not Rotation.OFF and next_turn is not None and next_turn <= now:
                turning.add(role.id)
                next_turn = self.week_after(group, now, role.rotation.weeks)
            moves.append((role.id, seen, next_week, next_turn))
        won = await tx.roles.advance(moves)
        mine = [r for r in due if r.id in won and r.id not in replanned]
        pools = await tx.roles.pools([r.id for r in mine])
        rosters = await tx.members.rosters(sorted({r.group_id for r in mine}))
        active = {group_id: active_on(entries, now) for group_id, entries in rosters.items()}
        lines: dict[int, list[str]] = {}
        for role in mine:
            group = groups[role.group_id]
            if role.name == WRAPPER and role.held:
                await self._draft(uow, group, role, now)
            pool, present = pools.get(role.id, []), active.get(group.id, set())
            inactive = role.held and role.holder_key not in present
            if role.id not in turning and not inactive:
                continue
            exclude = {role.holder_key} if role.held else set()
            if (
                role.id in turning
                and role.held
                and not inactive
                and next_holder(pool, present, exclude) is None
            ):
                continue  # nobody else to take a turn: they keep it
            chosen, changed = await self._hand_on(uow, group, role, pool, present, exclude)
            prefix = self._prefix(group)
            if chosen is not None:
                lines.setdefault(group.id, []).append(turn_line(chosen.name, role.name, role.rotation))
            elif changed and role.held:
                lines.setdefault(group.id, []).append(
                    f"The {role.name} role is free: nobody active is in its rotation."
                    f" {prefix}role take {role.name} takes it."
                )
        for group_id, said in lines.items():
            group = groups[group_id]
            uow.post(Post(PostKind.SEND, group.channel, "\n".join(said), group_id=group_id))
        return len(mine)

    async def _draft(self, uow: UnitOfWork, group: Group, role: Role, now: datetime) -> None:
        """The week's draft to the wrapper who held the role during the week that ended; the group's
        digest waits for their wrap (a day at most)."""
        tx = uow.tx
        record = await load_record(tx, group)
        digest = digest_of(record, now)
        holder = _user(role.holder_key, role.holder_name)
        wrap = await tx.roles.add_wrap(
            group.id,
            role.next_week_at or now,
            holder,
            now,
            WrapState.DRAFTED,
            digest=digest,
            fallback_at=now + WRAP_WITHIN,
        )
        text = "\n".join(
            [
                f"📝 Your draft for the week's wrap in {group.channel.name} (wrap {wrap.id}):",
                draft_text(record, now, digest),
                f"Post the week's summary there with {self._wrap_command(group.channel.platform)} <your text>"
                " (several lines are fine)"
                " within a day; otherwise the weekly digest goes to the group as usual.",
            ]
        )
        uow.post(Post(PostKind.DIRECT, group.channel, text, user=holder, group_id=group.id))

    async def _fallbacks(self, now: datetime) -> None:
        """Drafts not wrapped within a day: the digest goes to the group, if its digest is on. Marking a
        draft lapsed is the claim: of two processes, one posts its digest."""
        while True:
            async with self.work(now, unprompted=True) as uow:
                tx = uow.tx
                due = await tx.roles.fallbacks_due(now, BATCH, self.platforms)
                lapsed = await tx.roles.lapse([w.id for w in due])
                groups = await tx.groups.many(sorted({w.group_id for w in due if w.id in lapsed}))
                for wrap in due:
                    group = groups.get(wrap.group_id)
                    if wrap.id not in lapsed or group is None:
                        continue
                    schedules = await tx.schedules.in_group(group.id)
                    if any(s.kind is ScheduleKind.DIGEST and not s.paused for s in schedules):
                        uow.post(Post(PostKind.SEND, group.channel, wrap.digest, group_id=group.id))
            if len(due) < BATCH:
                return

    # Commands ----------------------------------------------------------------------------------

    async def _roles(self, ctx: Context) -> list[Role]:
        """The group's roles, the built-in ones added on first use."""
        week = self.week_after(ctx.group, ctx.now)
        await ctx.tx.roles.ensure(ctx.group.id, BUILT_IN, ctx.now, week)
        return await ctx.tx.roles.in_group(ctx.group.id)

    async def _find(self, ctx: Context, inv: Invocation) -> Role:
        try:
            name = check_name(inv.text("name"))
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        roles = {r.name: r for r in await self._roles(ctx)}
        role = roles.get(name)
        if role is None:
            raise UsageError(
                f"There is no role called {name} here. Roles: {', '.join(roles)}."
                f" {ctx.prefix}role list says who holds them.",
                inv.spec,
            )
        return role

    async def _active(self, ctx: Context) -> set[str]:
        return active_keys(await ctx.tx.members.roster(ctx.group.id), ctx.now)

    async def _list(self, ctx: Context, inv: Invocation) -> Reply:
        roles = await self._roles(ctx)
        pools = await ctx.tx.roles.pools([r.id for r in roles])
        active = await self._active(ctx)
        tz = ctx.group.timezone
        items = []
        for role in roles:
            pool = pools.get(role.id, [])
            who = f"held by {role.holder_name}" if role.held else "free"
            line = f"• {role.name}: {role.duty}. Now {who}."
            if role.rotation is not Rotation.OFF:
                queue = upcoming(pool, active, role.holder_key)
                after = f" Next: {', then '.join(queue)}." if queue else " Nobody active in its pool yet."
                line += (
                    f" Rotates {role.rotation.value}, next turn {local_time(role.next_turn_at, tz)}.{after}"
                )
            if pool:
                line += f" Pool: {', '.join(p.name for p in pool)}."
            items.append(Item(line))
        listing = Listing(
            what="roles",
            head="Roles in this group:",
            items=items,
            command=f"{ctx.prefix}role list",
            empty="No roles.",
            foot=f"Take a free role with {ctx.prefix}role take <name>; join a rotation with"
            f" {ctx.prefix}role pool <name> join.",
        )
        return Reply(listing.page(1, inv.spec))

    async def _add(self, ctx: Context, inv: Invocation) -> Reply:
        try:
            name, duty = check_name(inv.text("name")), check_duty(inv.text("duty"))
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        roles = await self._roles(ctx)
        if any(r.name == name for r in roles):
            raise UsageError(f"There is a role called {name} already. Nothing was changed.", inv.spec)
        if len(roles) >= MAX_ROLES:
            raise UsageError(f"A group has at most {MAX_ROLES} roles: remove one first.", inv.spec)
        added = await ctx.tx.roles.add(ctx.group.id, name, duty, ctx.now, self.week_after(ctx.group, ctx.now))
        if added is None:
            raise UsageError(f"There is a role called {name} already. Nothing was changed.", inv.spec)
        return Reply(
            f"Role {name} added: {duty}. Take it with {ctx.prefix}role take {name}, or make it rotate with"
            f" {ctx.prefix}role rotate {name} weekly."
        )

    async def _remove(self, ctx: Context, inv: Invocation) -> Reply:
        role = await self._find(ctx, inv)
        if role.built_in:
            raise UsageError(
                f"{role.name} is built in and stays. To free it, its holder says {ctx.prefix}role pass"
                f" {role.name}; {ctx.prefix}role rotate {role.name} off stops its rotation.",
                inv.spec,
            )
        await ctx.tx.roles.remove(role.id)
        held = f" {role.holder_name} no longer holds it." if role.held else ""
        return Reply(f"Role {role.name} removed, with its rotation pool.{held}")

    async def _take(self, ctx: Context, inv: Invocation) -> Reply:
        role = await self._find(ctx, inv)
        user = ctx.event.user
        if role.holder_key == user.key:
            raise UsageError(f"You hold {role.name} already.", inv.spec)
        if role.held:
            raise UsageError(
                f"{role.name} is held by {role.holder_name}: a role is taken only when it is free"
                f" (they can say {ctx.prefix}role pass {role.name}).",
                inv.spec,
            )
        if not await ctx.tx.roles.set_holder(role.id, user, ctx.now, ""):
            raise UsageError(f"Someone took {role.name} just now. See {ctx.prefix}role list.", inv.spec)
        return Reply(f"{user.display} is now the {role.name} (duty: {role.duty}).")

    async def _pass(self, ctx: Context, inv: Invocation) -> Reply:
        role = await self._find(ctx, inv)
        user = ctx.event.user
        if role.holder_key != user.key:
            who = f"{role.holder_name} holds it" if role.held else "it is free"
            raise UsageError(f"You do not hold {role.name} ({who}), so there is nothing to pass.", inv.spec)
        pools = await ctx.tx.roles.pools([role.id])
        chosen, _ = await self._hand_on(
            ctx.uow, ctx.group, role, pools.get(role.id, []), await self._active(ctx), {user.key}
        )
        if chosen is not None:
            return Reply(f"You passed {role.name} on. {turn_line(chosen.name, role.name, role.rotation)}")
        return Reply(f"You passed {role.name}; it is free now: {ctx.prefix}role take {role.name} takes it.")

    async def _rotate(self, ctx: Context, inv: Invocation) -> Reply:
        role = await self._find(ctx, inv)
        try:
            rotation = parse_rotation(inv.text("how"))
        except UsageError as error:
            raise UsageError(error.message, inv.spec) from None
        tx, group, tz = ctx.tx, ctx.group, ctx.group.timezone
        if rotation is Rotation.OFF:
            await tx.roles.set_rotation(role.id, Rotation.OFF, None)
            keeps = f" {role.holder_name} keeps it until they pass it." if role.held else ""
            return Reply(f"{role.name} no longer rotates.{keeps}")
        pools = await tx.roles.pools([role.id])
        pool = pools.get(role.id, [])
        rotating = replace(role, rotation=rotation)
        turn = local_time(self.week_after(group, ctx.now), tz)
        said = f"{role.name} now rotates {rotation.value}, at the week's turn ({turn} next)."
        if role.held:
            await tx.roles.set_rotation(role.id, rotation, self.week_after(group, ctx.now))
            return Reply(f"{said} {role.holder_name} holds it until then.")
        chosen, _ = await self._hand_on(ctx.uow, group, rotating, pool, await self._active(ctx), ())
        if chosen is None:
            await tx.roles.set_rotation(role.id, rotation, self.week_after(group, ctx.now))
            return Reply(
                f"{said} Nobody active is in its pool yet: members opt in with {ctx.prefix}role pool"
                f" {role.name} join, and the first of them takes it at once."
            )
        await tx.roles.set_rotation(role.id, rotation, self.week_after(group, ctx.now, rotation.weeks))
        return Reply(f"{said}\n{turn_line(chosen.name, role.name, rotation)}")

    async def _pool(self, ctx: Context, inv: Invocation) -> Reply:
        role = await self._find(ctx, inv)
        user, tx = ctx.event.user, ctx.tx
        if inv.args.get("action") == "leave":
            if not await tx.roles.leave_pool(role.id, user.key):
                raise UsageError(f"You are not in the {role.name} rotation.", inv.spec)
            keeps = (
                f" You still hold it until you say {ctx.prefix}role pass {role.name}."
                if role.holder_key == user.key
                else ""
            )
            return Reply(f"You left the {role.name} rotation.{keeps}")
        if not await tx.roles.join_pool(role.id, user, ctx.now):
            raise UsageError(f"You are in the {role.name} rotation already.", inv.spec)
        pool = (await tx.roles.pools([role.id])).get(role.id, [])
        said = f"You joined the {role.name} rotation ({len(pool)} in it)."
        if role.rotation is Rotation.OFF or role.held:
            return Reply(said)
        # A rotating role nobody holds goes to whose turn it is at once.
        chosen, _ = await self._hand_on(ctx.uow, ctx.group, role, pool, await self._active(ctx), ())
        if chosen is None:
            return Reply(said)
        next_turn = self.week_after(ctx.group, ctx.now, role.rotation.weeks)
        await tx.roles.set_rotation(role.id, role.rotation, next_turn)
        return Reply(f"{said}\n{turn_line(chosen.name, role.name, role.rotation)}")

    # The wrap ----------------------------------------------------------------------------------

    async def _wrap(self, ctx: Context, inv: Invocation) -> Reply:
        text = wrap_lines(inv.text("text"))
        user, tx, group = ctx.event.user, ctx.tx, ctx.group
        draft = await tx.roles.open_wrap(group.id, user.key)
        wrapper = await tx.roles.get(group.id, WRAPPER)
        if draft is None and not (wrapper is not None and wrapper.holder_key == user.key):
            holder = f" ({wrapper.holder_name} holds it now)" if wrapper is not None and wrapper.held else ""
            raise UsageError(
                f"Only the week's wrapper posts the wrap{holder}. Take the role with {ctx.prefix}role take"
                f" wrapper when it is free.",
                inv.spec,
            )
        if draft is not None and await tx.roles.wrap(draft.id, text, ctx.now):
            number, week_end = draft.id, draft.week_end
        else:
            kept = await tx.roles.add_wrap(group.id, ctx.now, user, ctx.now, WrapState.WRAPPED, text=text)
            number, week_end = kept.id, kept.week_end
        day = week_end.astimezone(ZoneInfo(group.timezone)).strftime("%a %Y-%m-%d")
        post = f"🧺 The week's wrap, by {user.display} (week to {day}):\n{text}"
        ctx.uow.post(Post(PostKind.SEND, group.channel, post, group_id=group.id))
        return Reply(f"Wrap {number} is posted and kept; {ctx.prefix}wrap list shows the group's wraps.")

    async def _wrap_list(self, ctx: Context, inv: Invocation) -> Reply:
        tz = ctx.group.timezone
        wraps = [w for w in await ctx.tx.roles.wraps(ctx.group.id) if w.state is WrapState.WRAPPED]
        items = [
            Item(
                f"Wrap {w.id}, week to {w.week_end.astimezone(ZoneInfo(tz)):%a %Y-%m-%d},"
                f" by {w.wrapper_name}: {one_line(w.text, SHOWN_TEXT)}"
            )
            for w in wraps
        ]
        listing = Listing(
            what="wraps",
            head="The group's wraps, newest first:",
            items=items,
            command=f"{ctx.prefix}wrap list",
            empty="No wraps yet. The week's wrapper posts one with"
            f" {self._wrap_command(ctx.group.channel.platform)} <text>.",
        )
        return Reply(listing.page(inv.args.get("page", 1), inv.spec))


def wrap_lines(text: str) -> str:
    """A wrap's text as posted: its own line breaks kept, and ` | ` starting a new line too, for where a
    line break cannot be typed (Discord's command box, the console)."""
    lines = [line.strip() for part in text.split("\n") for line in part.split(" | ")]
    return "\n".join(lines).strip()


def draft_text(record: GroupRecord, now: datetime, digest: str) -> str:
    """What the wrapper's draft holds: the week's numbers (the digest), decisions, open polls,
    reflections and concerns."""
    week = now - timedelta(days=7)
    lines = [digest]
    decided = [
        g
        for g in record.goals
        if g.updated_at >= week and g.status in (GoalStatus.ACCEPTED, GoalStatus.DONE, GoalStatus.DROPPED)
    ]
    lines.append("Decided this week:" if decided else "Decided this week: nothing.")
    lines += [f"- Goal {g.id} {g.status.value}: {one_line(g.text, SHOWN_TEXT)}" for g in decided]
    open_polls = [(p, t) for p, t in record.polls if p.closed_at is None and p.closes_at > now]
    lines.append("Open polls:" if open_polls else "Open polls: none.")
    lines += [f"- Poll {p.id}: {one_line(p.question, SHOWN_TEXT)} ({t.voters} voted)" for p, t in open_polls]
    thoughts = [r for r in record.reflections if r.at >= week]
    lines.append("Reflections written:" if thoughts else "Reflections written: none.")
    lines += [f"- {r.user_name}: {one_line(r.text, SHOWN_TEXT)}" for r in thoughts[-SHOWN_REFLECTIONS:]]
    concerns = [c for c in record.concerns if c.at >= week]
    lines.append("Concerns voiced:" if concerns else "Concerns voiced: none.")
    lines += [f"- {concern_line(c)}" for c in concerns]
    return "\n".join(lines)
