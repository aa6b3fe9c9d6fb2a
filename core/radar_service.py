"""The radar in the chat: once a week per group, and on demand with `radar`; and the pattern catalogue.

Facilitators get the findings by direct message; the group gets only what names nobody (stasis,
blocks) as a gentle suggestion, with the phase advice its record points to. See core/radar.py for the
rules and core/patterns.py for the catalogue.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from core.commands import Invocation, UsageError
from core.context import Context, Handler
from core.events import Reply
from core.goals import CONSENT_OPTIONS, GoalStatus
from core.lifecycle import Group, QuietHours, Signs
from core.lifecycle_service import LifecycleService
from core.members import RosterEntry
from core.outbox import Post, PostKind
from core.patterns import BY_NAME, NAME, catalogue_listing
from core.polls import count_votes
from core.ports import ChatPort, StoreTx, command_prefix
from core.radar import (
    LIMITS,
    REPEAT_AFTER,
    WINDOW,
    Facts,
    Finding,
    Kind,
    Thresholds,
    fresh,
    goals_named,
    group_report,
    private_report,
    scan,
)
from core.schedules import Recurrence, first_occurrence, parse_schedule
from core.uow import UnitOfWork, Work, quiet_hold

log = logging.getLogger(__name__)

BATCH = 500
# Concerns of goals accepted longer ago than this are no longer looked for.
CONCERNS_LOOKBACK = 2 * WINDOW


async def gather(tx: StoreTx, groups: Sequence[Group], now: datetime) -> dict[int, Facts]:
    """What the radar reads of these groups, a handful of queries for all of them."""
    ids = [g.id for g in groups]
    rosters = await tx.members.rosters(ids)
    acts = await tx.members.acts(ids, now - WINDOW)
    goals = await tx.goals.of_groups(ids, tuple(GoalStatus))  # a new proposal may reshape a block
    recent = now - CONCERNS_LOOKBACK
    accepted = [
        g
        for listed in goals.values()
        for g in listed
        if g.status is GoalStatus.ACCEPTED and g.poll_id is not None and g.updated_at >= recent
    ]
    reactions = await tx.polls.reactions_of([g.poll_id for g in accepted if g.poll_id is not None])
    consent = len(CONSENT_OPTIONS)
    votes = {
        g.id: count_votes(reactions.get(g.poll_id or 0, []), consent, multiple=False).counts[1]
        for g in accepted
    }
    written = await tx.reviews.reflections_since(ids, recent) if accepted else {}
    concerns = await tx.concerns.of_goals([g.id for g in accepted]) if accepted else {}
    facts = {}
    for group in groups:
        listed = goals.get(group.id, [])
        decided = {g.id: g.updated_at for g in listed if g.id in votes}
        followed = frozenset(
            goal_id
            for r in written.get(group.id, [])
            for goal_id in goals_named(r.text)
            if goal_id in decided and r.at >= decided[goal_id]
        )
        done = [g.updated_at for g in listed if g.status is GoalStatus.DONE]
        facts[group.id] = Facts(
            group=group,
            roster=rosters.get(group.id, []),
            acts=acts.get(group.id, []),
            goals=[g for g in listed if g.status is not GoalStatus.DONE],
            last_done=max(done) if done else None,
            concern_votes={g: votes[g] for g in decided},
            followed_up=followed,
            voiced={g: tuple(c.id for c in concerns[g] if not c.addressed) for g in decided if g in concerns},
        )
    return facts


def _limits_line(group: Group, prefix: str) -> str:
    limits = Thresholds.of(group)
    said = ", ".join(
        f"{name} {limits[name]}{'%' if lim.unit == '%' else 'd'}" for name, lim in LIMITS.items()
    )
    return (
        f"Thresholds: {said}. A facilitator changes one with {prefix}radar <name> <value>,"
        f" like {prefix}radar silence 21."
    )


class RadarService:
    def __init__(
        self,
        work: Work,
        chats: Mapping[str, ChatPort],
        platforms: Collection[str],
        recurrence: Recurrence,
        weekly: str,
        lifecycle: LifecycleService,
    ) -> None:
        self.work = work
        self.chats = chats
        self.platforms = platforms
        self.recurrence = recurrence
        self.cron = parse_schedule(weekly, recurrence)[0]
        self.lifecycle = lifecycle

    def handlers(self) -> Mapping[tuple[str, ...], Handler]:
        return {("radar",): self._radar, ("patterns",): self._patterns}

    def _prefix(self, group: Group) -> str:
        return command_prefix(self.chats, group.channel.platform)

    # Time --------------------------------------------------------------------------------------

    async def weekly(self, now: datetime) -> int:
        """Run every group's weekly radar that is due; plan the radar of groups that have none planned.
        Returns how many groups' radars ran."""
        ran = 0
        planned: dict[tuple[str, QuietHours | None], datetime | None] = {}
        while True:
            async with self.work(now) as uow:
                due = await uow.tx.groups.radar_due(now, BATCH, self.platforms)
                running = [g for g in due if g.radar_next_at is not None]
                facts = await gather(uow.tx, running, now)
                told = await uow.tx.groups.told([g.id for g in running], now - REPEAT_AFTER)
                signals = await uow.tx.groups.signals_in_phase([g.id for g in running])
            found: dict[int, tuple[list[Finding], list[RosterEntry]]] = {}
            for group in running:
                findings = fresh(scan(facts[group.id], now), told.get(group.id, {}), now)
                personal = any(f.kind.personal for f in findings)
                facilitators = await self._facilitators(group, facts[group.id].roster) if personal else []
                found[group.id] = (findings, facilitators)
            async with self.work(now, unprompted=True) as uow:
                moves = []
                for group in due:
                    key = (group.timezone, group.quiet)
                    if key not in planned:
                        planned[key] = first_occurrence(self.cron, *key, now, self.recurrence)[1]
                    moves.append((group.id, group.radar_next_at, planned[key]))
                won = await uow.tx.groups.plan_radar(moves)
                told_now: list[tuple[int, str, str]] = []
                for group in running:
                    if group.id in won:
                        findings, facilitators = found[group.id]
                        introduced = sum(1 for m in facts[group.id].roster if m.introduced)
                        stalled = any(f.kind is Kind.STASIS for f in findings)
                        signs = Signs(
                            group.phase, signals.get(group.id, []), introduced, stalled, group.advised_at
                        )
                        told_now += await self._tell(uow, group, findings, facilitators, signs)
                        ran += 1
                await uow.tx.groups.record_findings(told_now, now)
            if len(due) < BATCH:
                return ran

    async def _facilitators(self, group: Group, roster: Sequence[RosterEntry]) -> list[RosterEntry]:
        """The members on the roster the platform says facilitate the group (asked outside any
        transaction: a platform may need a request to know)."""
        chat = self.chats.get(group.channel.platform)
        if chat is None:
            return []
        return [m for m in roster if await chat.is_facilitator(m.user, group.channel)]

    async def _tell(
        self,
        uow: UnitOfWork,
        group: Group,
        findings: Sequence[Finding],
        facilitators: Sequence[RosterEntry],
        signs: Signs,
    ) -> list[tuple[int, str, str]]:
        """Findings to facilitators by direct message; to the group, what names nobody, with phase
        advice. Returns what was told, (group id, kind, subject), to keep so the next weeks do not
        repeat it."""
        prefix = self._prefix(group)
        told = [f for f in findings if facilitators or f.group_text]
        held = quiet_hold(group, uow.now)
        if facilitators and told:
            text = private_report(group, told, prefix, weekly=True)
            for member in facilitators:
                dm = Post(
                    PostKind.DIRECT, group.channel, text, user=member.user, group_id=group.id, not_before=held
                )
                uow.post(dm, placed=True)
        advice = await self.lifecycle.give_advice(uow, group, signs)
        shared = "\n".join(t for t in (group_report(findings, prefix), advice) if t)
        if shared:
            uow.post(
                Post(PostKind.SEND, group.channel, shared, group_id=group.id, not_before=held), placed=True
            )
        return [(group.id, f.kind.value, f.subject) for f in told]

    # Commands ----------------------------------------------------------------------------------

    async def _radar(self, ctx: Context, inv: Invocation) -> Reply:
        group, prefix = ctx.group, ctx.prefix
        name, value = inv.args.get("setting"), inv.args.get("value")
        if name is not None:
            return await self._threshold(ctx, inv, name, value)
        facts = (await gather(ctx.tx, [group], ctx.now))[group.id]
        findings = scan(facts, ctx.now)
        text = "\n".join([private_report(group, findings, prefix, weekly=False), _limits_line(group, prefix)])
        return Reply(text, private=True)  # it may name members: for the facilitator who asked alone

    async def _threshold(self, ctx: Context, inv: Invocation, name: str, value: str | None) -> Reply:
        group, limit = ctx.group, LIMITS[name]
        current = Thresholds.of(group)[name]
        unit = "%" if limit.unit == "%" else " days"
        if value is None:
            return Reply(
                f"Radar threshold {name}: {current}{unit} ({limit.what}; default {limit.default}{unit})."
            )
        wanted = value.strip().lower().removesuffix("%").removesuffix("d")
        if wanted == "default":
            number = limit.default
        elif (
            wanted.isascii()
            and wanted.isdigit()
            and len(wanted) <= 4
            and limit.low <= int(wanted) <= limit.high
        ):
            number = int(wanted)
        else:
            raise UsageError(
                f"{name} takes a whole number from {limit.low} to {limit.high}{unit.strip() and unit},"
                f" or default. Nothing was changed.",
                inv.spec,
            )
        limits = {**dict(group.radar_limits), name: number}
        await ctx.tx.groups.set_radar(group.id, group.auto_radar, limits)
        return Reply(f"Radar threshold {name} is now {number}{unit} ({limit.what}).")

    async def _patterns(self, ctx: Context, inv: Invocation) -> Reply:
        name = inv.text("name").strip().lower()
        if not name:
            return Reply(catalogue_listing(ctx.prefix))
        pattern = BY_NAME.get(name)
        if pattern is None:
            shown = name if NAME.fullmatch(name) and len(name) <= 40 else "that"
            raise UsageError(
                f"There is no pattern called {shown}. {ctx.prefix}patterns lists them all.", inv.spec
            )
        return Reply(pattern.render(ctx.prefix))
