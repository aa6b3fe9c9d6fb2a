"""A group's record as data, and as JSON, Markdown and CSV; and its weekly digest."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.clock import format_time
from core.events import Reply
from core.goals import Goal
from core.lifecycle import Group
from core.polls import Poll, Tally, tally
from core.ports import StoreTx
from core.prompts import REVIEW_QUESTIONS
from core.reflections import Reflection, Review
from core.schedules import Schedule

if TYPE_CHECKING:
    from core.commands import Invocation
    from core.context import Context


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group: Group
    goals: list[Goal]
    polls: list[tuple[Poll, Tally]]
    reviews: list[Review]
    reflections: list[Reflection]
    schedules: list[Schedule]


async def load_record(tx: StoreTx, group: Group) -> GroupRecord:
    polls = await tx.polls.in_group(group.id)
    return GroupRecord(
        group,
        await tx.goals.in_group(group.id),
        [(p, tally(p, await tx.polls.reactions(p.id))) for p in polls],
        await tx.reviews.in_group(group.id),
        await tx.reviews.reflections(group.id),
        await tx.schedules.in_group(group.id),
    )


async def export_group(ctx: Context, inv: Invocation) -> Reply:
    """The `export` command: the group's record in the chat, in the format asked for."""
    record = await load_record(ctx.tx, ctx.group)
    render = {"md": to_markdown, "json": to_json, "csv": to_csv}[inv.args.get("format", "md")]
    return Reply(render(record))


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def counts_shown(p: Poll) -> bool:
    """A hidden poll's per-option counts stay secret until it closes; how many voted may be told."""
    return not p.hidden or p.closed_at is not None


HIDDEN_NOTE = "results hidden until it closes"
# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...), +cmd|...).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell: object) -> object:
    """A CSV cell a spreadsheet will show as text: a leading formula character gets a single quote
    before it (the OWASP convention for CSV injection)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def _poll_options(p: Poll, t: Tally) -> list[dict[str, Any]]:
    if not counts_shown(p):
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
                "created_at": _iso(x.created_at),
                "updated_at": _iso(x.updated_at),
                "poll": x.poll_id,
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
    }


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
    lines += [f"- Goal {x.id} ({x.status.value}): {x.text} — {x.proposer_name}" for x in r.goals] or [
        "- none"
    ]
    lines += ["", "## Polls"]
    for p, t in r.polls:
        if counts_shown(p):
            counts = ", ".join(f"{o.emoji} {o.label}: {n}" for o, n in zip(p.options, t.counts, strict=True))
        else:
            counts = ", ".join(f"{o.emoji} {o.label}" for o in p.options) + f" ({HIDDEN_NOTE})"
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
        writer.writerow(
            ["goal", x.id, _iso(x.created_at), x.proposer_name, x.text, x.status.value, f"poll {x.poll_id}"]
        )
    for p, t in r.polls:
        if counts_shown(p):
            counts = "; ".join(f"{o.label}={n}" for o, n in zip(p.options, t.counts, strict=True))
        else:
            counts = f"{t.voters} voted; {HIDDEN_NOTE}"
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
