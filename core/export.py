"""A group's record as data, and as JSON, Markdown and CSV files; and its weekly digest."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import format_time, utc
from core.commands import Invocation
from core.concerns import Concern, concern_line
from core.context import Reading
from core.events import Attachment, Reply
from core.goals import Goal
from core.lifecycle import Group
from core.meetings import Meeting, Occurrence, Rsvp, counts, say_counts
from core.polls import MIN_VOTERS_SHOWN, Poll, PollReaction, Tally, tally
from core.ports import StoreTx
from core.prompts import REVIEW_QUESTIONS
from core.reflections import Reflection, Review
from core.roles import PoolMember, Role, Wrap, WrapState
from core.schedules import Schedule


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group: Group
    goals: list[Goal]
    polls: list[tuple[Poll, Tally]]
    reviews: list[Review]
    reflections: list[Reflection]
    schedules: list[Schedule]
    concerns: list[Concern]  # anonymous ones by nobody: they keep no author to export
    # The group's roles with their rotation pools, and its wraps (core/roles.py), newest wrap first.
    roles: list[Role] = field(default_factory=list)
    pools: Mapping[int, list[PoolMember]] = field(default_factory=dict)
    wraps: list[Wrap] = field(default_factory=list)

    meetings: list[Meeting] = field(default_factory=list)  # cancelled ones too
    occurrences: list[Occurrence] = field(default_factory=list)  # earliest first
    rsvps: list[Rsvp] = field(default_factory=list)

    def rsvps_of(self, occurrence_id: int) -> list[Rsvp]:
        return [x for x in self.rsvps if x.occurrence_id == occurrence_id]

    def met(self, now: datetime, since: datetime | None = None) -> list[tuple[Meeting, Occurrence]]:
        """Occurrences that took place (not skipped) by `now`, since `since`, earliest first."""
        by_id = {m.id: m for m in self.meetings}
        return [
            (by_id[o.meeting_id], o)
            for o in self.occurrences
            if o.starts_at <= now and not o.skipped and (since is None or o.starts_at >= since)
        ]


_POLLS_READ = 1000  # well below the parameters a statement may have (PostgreSQL: 32,767)


async def load_record(tx: StoreTx, group: Group) -> GroupRecord:
    polls = await tx.polls.in_group(group.id)
    goals = await tx.goals.in_group(group.id)
    concerns = await tx.concerns.of_goals([g.id for g in goals]) if goals else {}
    meetings = await tx.meetings.in_group(group.id)
    occurrences = await tx.meetings.occurrences([m.id for m in meetings]) if meetings else []
    rsvps = await tx.meetings.rsvps([o.id for o in occurrences]) if occurrences else []
    reactions: dict[int, list[PollReaction]] = {}
    for start in range(0, len(polls), _POLLS_READ):  # a read per thousand polls, not one per poll
        reactions.update(await tx.polls.reactions_of([p.id for p in polls[start : start + _POLLS_READ]]))
    roles = await tx.roles.in_group(group.id)
    pools = await tx.roles.pools([r.id for r in roles]) if roles else {}
    return GroupRecord(
        group,
        goals,
        [(p, tally(p, reactions.get(p.id, []))) for p in polls],
        await tx.reviews.in_group(group.id),
        await tx.reviews.reflections(group.id),
        await tx.schedules.in_group(group.id),
        sorted((c for listed in concerns.values() for c in listed), key=lambda c: c.id),
        roles,
        pools,
        await tx.roles.wraps(group.id),
        meetings,
        occurrences,
        rsvps,
    )


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def counts_withheld(p: Poll, voters: int) -> str:
    """Why a poll's per-option counts are not shown, or "" when they are. A hidden poll's stay secret
    until it closes, an anonymous poll's while fewer than 3 voted; how many voted may be told."""
    if p.anonymous and voters < MIN_VOTERS_SHOWN:
        return TOO_FEW_NOTE
    return HIDDEN_NOTE if p.hidden and p.closed_at is None else ""


HIDDEN_NOTE = "results hidden until it closes"
TOO_FEW_NOTE = "too few votes to show without revealing who voted"
# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...), +cmd|...).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: object) -> object:
    """A CSV cell a spreadsheet will show as text: a leading formula character gets a single quote
    before it (the OWASP convention for CSV injection)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def _poll_options(p: Poll, t: Tally) -> list[dict[str, Any]]:
    if counts_withheld(p, t.voters):
        return [{"emoji": o.emoji, "label": o.label} for o in p.options]
    counted = zip(p.options, t.counts, strict=True)
    return [{"emoji": o.emoji, "label": o.label, "votes": n} for o, n in counted]


def to_data(r: GroupRecord) -> dict[str, Any]:
    g = r.group
    return {
        "group": {
            "platform": g.channel.platform,
            "channel": g.channel.id,
            "phase": g.phase.value,
            "phase_since": _iso(g.phase_since),
            "timezone": g.timezone,
        },
        "goals": [
            {
                "id": x.id,
                "text": x.text,
                "status": x.status.value,
                "proposer": x.proposer_name,
                "put_forward_by": x.put_forward_by_name or x.proposer_name,
                "created_at": _iso(x.created_at),
                "updated_at": _iso(x.updated_at),
                "poll": x.poll_id,
                "reshapes": x.reshapes_id,
            }
            for x in r.goals
        ],
        "polls": [
            {
                "id": p.id,
                "kind": p.kind.value,
                "question": p.question,
                "closes_at": _iso(p.closes_at),
                "closed_at": _iso(p.closed_at),
                "hidden": p.hidden,
                "anonymous": p.anonymous,
                "voters": t.voters,
                "options": _poll_options(p, t),
            }
            for p, t in r.polls
        ],
        "reviews": [
            {
                "id": v.id,
                "started_by": v.started_by,
                "started_at": _iso(v.started_at),
                "closes_at": _iso(v.closes_at),
                "closed_at": _iso(v.closed_at),
            }
            for v in r.reviews
        ],
        "reflections": [
            {
                "id": x.id,
                "review": x.review_id,
                "question": x.question,
                "author": x.user_name,
                "text": x.text,
                "at": _iso(x.at),
            }
            for x in r.reflections
        ],
        "concerns": [
            {
                "id": c.id,
                "goal": c.goal_id,
                "author": c.by,
                "text": c.text,
                "at": _iso(c.at),
                "addressed_at": _iso(c.addressed_at),
                "addressed_by": c.addressed_by_name or None,
                "note": c.note,
            }
            for c in r.concerns
        ],
        "roles": [
            {
                "name": x.name,
                "duty": x.duty,
                "built_in": x.built_in,
                "holder": x.holder_name or None,
                "held_since": _iso(x.held_since),
                "rotation": x.rotation.value,
                "next_turn_at": _iso(x.next_turn_at),
                "pool": [
                    {"member": p.name, "joined_at": _iso(p.joined_at), "times_held": p.times_held}
                    for p in r.pools.get(x.id, [])
                ],
            }
            for x in r.roles
        ],
        "wraps": [
            {
                "id": w.id,
                "week_end": _iso(w.week_end),
                "wrapper": w.wrapper_name,
                "state": w.state.value,
                "text": w.text,
                "wrapped_at": _iso(w.wrapped_at),
            }
            for w in r.wraps
        ],
        "meetings": [
            {
                "id": m.id,
                "title": m.title,
                "when": m.description,
                "created_by": m.created_by,
                "created_at": _iso(m.created_at),
                "cancelled_at": _iso(m.cancelled_at),
                "skips": list(m.skips),
                "occurrences": [
                    {
                        "starts_at": _iso(o.starts_at),
                        "skipped": o.skipped,
                        "announced": o.announced,
                        "rsvps": {
                            word: n
                            for word, n in zip(RSVP_KEYS, counts(r.rsvps_of(o.id)).values(), strict=True)
                        },
                    }
                    for o in r.occurrences
                    if o.meeting_id == m.id
                ],
            }
            for m in r.meetings
        ],
    }


RSVP_KEYS = ("coming", "maybe", "not_coming")


def _put_forward(goal: Goal, separator: str = ",") -> str:
    """Who put a goal forward for its proposer (from their reflection), if someone else did."""
    return f"{separator} put forward by {goal.put_forward_by_name}" if goal.put_forward_by_another else ""


def _reshapes(goal: Goal, separator: str = ",") -> str:
    """The goal this one reshapes (`goal amend`), if any."""
    return f"{separator} reshapes goal {goal.reshapes_id}" if goal.reshapes_id is not None else ""


def to_json(r: GroupRecord) -> str:
    return json.dumps(to_data(r), ensure_ascii=False, indent=2)


def to_markdown(r: GroupRecord) -> str:
    g = r.group
    lines = [
        f"# {g.channel.name}: the group's record",
        "",
        f"Phase: {g.phase.title} since {format_time(g.phase_since, g.timezone)}.",
    ]
    lines += ["", "## Goals"]
    lines += [
        f"- Goal {x.id} ({x.status.value}): {x.text} — {x.proposer_name}{_put_forward(x)}{_reshapes(x)}"
        for x in r.goals
    ] or ["- none"]
    lines += ["", "## Concerns"]
    lines += [f"- {concern_line(c, full=True)} (goal {c.goal_id})" for c in r.concerns] or ["- none"]
    lines += ["", "## Polls"]
    for p, t in r.polls:
        if withheld := counts_withheld(p, t.voters):
            counts = ", ".join(f"{o.emoji} {o.label}" for o in p.options) + f" ({withheld})"
        else:
            counts = ", ".join(f"{o.emoji} {o.label}: {n}" for o, n in zip(p.options, t.counts, strict=True))
        state = "closed" if p.closed_at else "open"
        lines.append(f"- Poll {p.id} ({state}, {t.voters} voters): {p.question} — {counts}")
    if not r.polls:
        lines.append("- none")
    lines += ["", "## Action reviews"]
    for v in r.reviews:
        lines.append(f"### Review {v.id}, started {format_time(v.started_at, g.timezone)} by {v.started_by}")
        for number, question in enumerate(REVIEW_QUESTIONS, start=1):
            answers = [x for x in r.reflections if x.review_id == v.id and x.question == number]
            if answers:
                lines.append(f"{number}. {question}")
                lines += [f"   - {x.user_name}: {x.text}" for x in answers]
    if not r.reviews:
        lines.append("- none")
    lines += ["", "## Meetings"]
    for m in r.meetings:
        state = " (cancelled)" if m.cancelled_at else ""
        lines.append(f"- Meeting {m.id}{state}: {m.title}, {m.description} — added by {m.created_by}")
        lines += [
            f"  - {format_time(o.starts_at, g.timezone)}: "
            + ("skipped" if o.skipped else say_counts(r.rsvps_of(o.id)))
            for o in r.occurrences
            if o.meeting_id == m.id
        ]
    if not r.meetings:
        lines.append("- none")
    lines += ["", "## Reflections"]
    free = [x for x in r.reflections if x.review_id is None]
    lines += [f"- {format_time(x.at, g.timezone)} {x.user_name}: {x.text}" for x in free] or ["- none"]
    if r.roles:  # a group that never used roles has none stored, and its record reads as before
        lines += ["", "## Roles"]
        for role in r.roles:
            holder = f"held by {role.holder_name}" if role.holder_name else "free"
            pool = ", ".join(p.name for p in r.pools.get(role.id, []))
            lines.append(
                f"- {role.name}: {role.duty} — {holder}; rotation {role.rotation.value}"
                + (f"; pool: {pool}" if pool else "")
            )
    wrapped = [w for w in r.wraps if w.state is WrapState.WRAPPED]
    if wrapped:
        lines += ["", "## Wraps"]
        for w in wrapped:
            lines.append(f"### Week to {format_time(w.week_end, g.timezone)}, by {w.wrapper_name}")
            lines.append(w.text)
    return "\n".join(lines)


class _InertWriter:
    """A csv writer whose every cell is made inert for spreadsheets (names and texts alike)."""

    def __init__(self, out: io.StringIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: list[Any]) -> None:
        self._writer.writerow([inert(cell) for cell in row])


def to_csv(r: GroupRecord) -> str:
    """One row per item: kind, id, when, who, text, status, details."""
    out = io.StringIO()
    writer = _InertWriter(out)
    writer.writerow(["kind", "id", "at", "who", "text", "status", "details"])
    for x in r.goals:
        details = f"poll {x.poll_id}{_put_forward(x, ';')}{_reshapes(x, ';')}"
        writer.writerow(["goal", x.id, _iso(x.created_at), x.proposer_name, x.text, x.status.value, details])
    for c in r.concerns:
        addressed = f"addressed by {c.addressed_by_name}" if c.addressed else "open"
        details = f"goal {c.goal_id}" + (f"; {c.note}" if c.note else "")
        writer.writerow(["concern", c.id, _iso(c.at), c.by, c.text, addressed, details])
    for p, t in r.polls:
        if withheld := counts_withheld(p, t.voters):
            counts = f"{t.voters} voted; {withheld}"
        else:
            counts = "; ".join(f"{o.label}={n}" for o, n in zip(p.options, t.counts, strict=True))
        writer.writerow(
            [
                "poll",
                p.id,
                _iso(p.created_at),
                p.author_name,
                p.question,
                "closed" if p.closed_at else "open",
                counts,
            ]
        )
    for v in r.reviews:
        writer.writerow(
            ["review", v.id, _iso(v.started_at), v.started_by, "", "closed" if v.closed_at else "open", ""]
        )
    for m in r.meetings:
        state = "cancelled" if m.cancelled_at else "on"
        writer.writerow(["meeting", m.id, _iso(m.created_at), m.created_by, m.title, state, m.description])
        for o in r.occurrences:
            if o.meeting_id == m.id:
                status = "skipped" if o.skipped else say_counts(r.rsvps_of(o.id))
                writer.writerow(["meeting occurrence", m.id, _iso(o.starts_at), "", m.title, status, ""])
    for f in r.reflections:
        where = f"review {f.review_id} question {f.question}" if f.review_id else "free"
        writer.writerow(["reflection", f.id, _iso(f.at), f.user_name, f.text, "", where])
    for role in r.roles:
        pool = "; ".join(p.name for p in r.pools.get(role.id, []))
        details = f"rotation {role.rotation.value}" + (f"; pool: {pool}" if pool else "")
        what = f"{role.name}: {role.duty}"
        writer.writerow(["role", role.id, _iso(role.held_since), role.holder_name, what, "", details])
    for w in r.wraps:
        writer.writerow(["wrap", w.id, _iso(w.week_end), w.wrapper_name, w.text, w.state.value, ""])
    return out.getvalue()


def render_digest(r: GroupRecord, now: datetime, next_times: list[str]) -> str:
    week = now - timedelta(days=7)
    accepted = [x for x in r.goals if x.status.value == "accepted"]
    proposed = [x for x in r.goals if x.status.value == "proposed"]
    closed = [(p, t) for p, t in r.polls if p.closed_at is not None and p.closed_at >= week]
    thoughts = [x for x in r.reflections if x.at >= week]
    lines = [
        f"📬 Weekly digest — phase {r.group.phase.title}.",
        f"Goals: {len(accepted)} on the roadmap, {len(proposed)} proposed.",
        f"Polls closed this week: {len(closed)}"
        + (
            ": " + "; ".join(f"Poll {p.id} {p.question} ({t.voters} voters)" for p, t in closed)
            if closed
            else "."
        ),
        f"Reflections this week: {len(thoughts)} from {len({x.user_key for x in thoughts})} people.",
    ]
    met = r.met(now, week)
    if met:
        lines.append(
            "Meetings this week: "
            + "; ".join(
                f"{m.title} {format_time(o.starts_at, r.group.timezone)} ({say_counts(r.rsvps_of(o.id))})"
                for m, o in met
            )
            + "."
        )
    if next_times:
        lines.append("Coming up: " + "; ".join(next_times) + ".")
    return "\n".join(lines)


# The record as a file (the /export command) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Format:
    title: str
    extension: str
    mimetype: str
    render: Callable[[GroupRecord], str]


FORMATS = {
    "md": Format("Markdown", "md", "text/markdown; charset=utf-8", to_markdown),
    "json": Format("JSON", "json", "application/json", to_json),
    "csv": Format("CSV", "csv", "text/csv; charset=utf-8", to_csv),
}


def render(record: GroupRecord, fmt: str) -> str:
    """The record as text, the same for `/export` and `peerbot export`."""
    return FORMATS[fmt].render(record)


def file_name(record: GroupRecord, fmt: str, now: datetime) -> str:
    """`peerbot-general-2026-03-02-0900.json`: the channel and the moment, in the group's timezone."""
    slug = re.sub(r"[^a-z0-9]+", "-", record.group.channel.name.casefold()).strip("-")[:40] or "group"
    moment = utc(now).astimezone(ZoneInfo(record.group.timezone)).strftime("%Y-%m-%d-%H%M")
    return f"peerbot-{slug}-{moment}.{FORMATS[fmt].extension}"


def say_size(size: int) -> str:
    """`812 bytes`, `12.3 KB`, `5.2 MB` (of 1,024: as platforms state their limits)."""
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def summary(record: GroupRecord, fmt: str, size: int) -> str:
    """The one line that goes with the file."""
    r = record
    counts = ", ".join(
        (
            _count(len(r.goals), "goal"),
            _count(len(r.polls), "poll"),
            _count(len(r.reviews), "review"),
            _count(len(r.reflections), "reflection"),
        )
    )
    return (
        f"📦 {r.group.channel.name}: the group's record as {FORMATS[fmt].title}, {counts} ({say_size(size)})."
    )


def too_big(size: int, limit: int | None, what: str = "The file") -> str:
    """Why a file was not sent: it is over the platform's limit."""
    over = f"over the {say_size(limit)} a file may have here" if limit else "more than the platform takes"
    return f"{what} is {say_size(size)}, {over}, so it was not sent."


def _encoded(record: GroupRecord, fmt: str) -> bytes:
    return render(record, fmt).encode("utf-8")


async def export(ctx: Reading, inv: Invocation) -> Reply:
    """/export: the group's record as a file, with a one-line summary; a file too big for the
    platform is not sent, and the member is told what to do instead."""
    fmt = inv.args.get("format", "md")
    record = await load_record(ctx.tx, ctx.group)
    # Rendering megabytes takes a good part of a second: in a thread, the event loop goes on meanwhile.
    data = await asyncio.to_thread(_encoded, record, fmt)
    limit = await ctx.chat.max_file_size(ctx.event.channel)
    if limit is not None and len(data) > limit:
        refusal = too_big(len(data), limit, f"The {FORMATS[fmt].title} export")
        smaller = f" CSV is the smallest: {ctx.prefix}export csv." if fmt != "csv" else ""
        operator = " An operator can write the whole record with `peerbot export`."
        return Reply(refusal + smaller + operator, is_error=True)
    file = Attachment(file_name(record, fmt, ctx.now), data, FORMATS[fmt].mimetype)
    return Reply(summary(record, fmt, file.size), file=file)
