"""A group's record as data, and as JSON, Markdown and CSV files; and its weekly digest."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
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
from core.polls import MIN_VOTERS_SHOWN, Poll, PollReaction, Tally, tally
from core.ports import StoreTx
from core.prompts import REVIEW_QUESTIONS
from core.reflections import Reflection, Review
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


_POLLS_READ = 1000  # well below the parameters a statement may have (PostgreSQL: 32,767)


async def load_record(tx: StoreTx, group: Group) -> GroupRecord:
    polls = await tx.polls.in_group(group.id)
    goals = await tx.goals.in_group(group.id)
    concerns = await tx.concerns.of_goals([g.id for g in goals]) if goals else {}
    reactions: dict[int, list[PollReaction]] = {}
    for start in range(0, len(polls), _POLLS_READ):  # a read per thousand polls, not one per poll
        reactions.update(await tx.polls.reactions_of([p.id for p in polls[start : start + _POLLS_READ]]))
    return GroupRecord(
        group,
        goals,
        [(p, tally(p, reactions.get(p.id, []))) for p in polls],
        await tx.reviews.in_group(group.id),
        await tx.reviews.reflections(group.id),
        await tx.schedules.in_group(group.id),
        sorted((c for listed in concerns.values() for c in listed), key=lambda c: c.id),
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
    }


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
    lines += ["", "## Reflections"]
    free = [x for x in r.reflections if x.review_id is None]
    lines += [f"- {format_time(x.at, g.timezone)} {x.user_name}: {x.text}" for x in free] or ["- none"]
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
    for f in r.reflections:
        where = f"review {f.review_id} question {f.question}" if f.review_id else "free"
        writer.writerow(["reflection", f.id, _iso(f.at), f.user_name, f.text, "", where])
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
