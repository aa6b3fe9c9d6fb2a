"""The group page's charts, drawn on the server as SVG: no script, nothing fetched from anywhere.

Colours come from classes the page's stylesheet fills (no inline style, which the page's
Content-Security-Policy forbids). Each mark carries its number in a `data-` attribute, and a `<title>`
that says it in words, for screen readers, tooltips and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from core.clock import format_time, utc
from core.dashboard import Band, Bar, Pulse, Week

ROW = 26  # a bar chart's row height
LABEL_WIDTH = 150
BAR_SPACE = 150
PLOT_HEIGHT = 120
SPAN = 600  # what a time chart fills when it has few columns; with many, it scrolls


def column_width(columns: int, narrowest: int) -> int:
    """A column's width: the span shared out, at least `narrowest`, at most 48."""
    return max(narrowest, min(48, SPAN // max(columns, 1)))


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_chart(bars: Sequence[Bar], title: str) -> str:
    """A poll's results: one horizontal bar per option, its count at the end."""
    most = max((b.votes or 0 for b in bars), default=0)
    width = LABEL_WIDTH + BAR_SPACE + 40
    height = ROW * len(bars) + 4
    parts = [
        f'<svg class="chart poll-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{_e(title)}">'
    ]
    for i, b in enumerate(bars):
        y = 2 + i * ROW
        votes = b.votes or 0
        length = round(BAR_SPACE * votes / most) if most else 0
        words = f"{b.emoji} {b.label}: {votes} vote{'s' if votes != 1 else ''}"
        parts.append(
            f'<g class="option" data-emoji="{_e(b.emoji)}" data-label="{_e(b.label)}" data-votes="{votes}">'
            f"<title>{_e(words)}</title>"
            f'<text class="label" x="0" y="{y + 17}">{_e(_clip(f"{b.emoji} {b.label}", 22))}</text>'
            f'<rect class="track" x="{LABEL_WIDTH}" y="{y + 4}" width="{BAR_SPACE}" height="{ROW - 8}"/>'
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 4}" width="{length}" height="{ROW - 8}"/>'
            f'<text class="count" x="{LABEL_WIDTH + BAR_SPACE + 6}" y="{y + 17}">{votes}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


KINDS = (("goals", "goals proposed"), ("votes", "votes"), ("reflections", "reflections"))


def participation_chart(weeks: Sequence[Week]) -> str:
    """What members did each week, stacked by kind, with how many members were active above it."""
    tallest = max((w.goals + w.votes + w.reflections for w in weeks), default=0) or 1
    step = column_width(len(weeks), 12)
    width = step * len(weeks) + 30
    height = PLOT_HEIGHT + 40
    parts = [
        f'<svg class="chart participation-chart" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" role="img" aria-label="What members did each week">'
        f'<line class="axis" x1="0" y1="{PLOT_HEIGHT + 14}" x2="{width}" y2="{PLOT_HEIGHT + 14}"/>'
    ]
    for i, w in enumerate(weeks):
        x = i * step + 2
        base = PLOT_HEIGHT + 14
        words = (
            f"Week of {w.start:%Y-%m-%d}: {w.members} members active; {w.goals} goals proposed,"
            f" {w.votes} votes, {w.reflections} reflections"
        )
        parts.append(
            f'<g class="week" data-week="{w.start.isoformat()}" data-members="{w.members}"'
            f' data-goals="{w.goals}" data-votes="{w.votes}" data-reflections="{w.reflections}">'
            f"<title>{_e(words)}</title>"
        )
        for kind, _ in KINDS:
            count = getattr(w, kind)
            if not count:
                continue
            h = max(1, round(PLOT_HEIGHT * count / tallest))
            base -= h
            parts.append(f'<rect class="seg {kind}" x="{x}" y="{base}" width="{step - 3}" height="{h}"/>')
        if w.members:
            parts.append(f'<text class="members" x="{x}" y="{base - 3}">{w.members}</text>')
        if i == 0 or (w.start.day <= 7 and (step >= 40 or w.start.month in (1, 4, 7, 10))):
            parts.append(f'<text class="tick" x="{x}" y="{height - 4}">{w.start:%b %Y}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


PULSE_KINDS = (("green", "🟢 going well"), ("yellow", "🟡 so-so"), ("red", "🔴 struggling"))


def pulse_chart(pulses: Sequence[Pulse], tz: str) -> str:
    """Each pulse's 🟢 🟡 🔴 shares as a column of 100%; a withheld one is a grey column."""
    step = column_width(len(pulses), 22)
    width = step * len(pulses) + 10
    height = PLOT_HEIGHT + 30
    parts = [
        f'<svg class="chart pulse-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="How each pulse check came out">'
    ]
    for i, p in enumerate(pulses):
        x = i * step + 4
        when = format_time(p.at, tz)
        if p.counts is None:
            parts.append(
                f'<g class="pulse" data-poll="{p.poll_id}" data-withheld="{_e(p.withheld)}">'
                f"<title>{_e(f'Pulse {p.poll_id}, {when}: {p.voters} voted; {p.withheld}')}</title>"
                f'<rect class="seg withheld" x="{x}" y="4" width="{step - 6}" height="{PLOT_HEIGHT}"/>'
                "</g>"
            )
            continue
        total = sum(p.counts)
        green, yellow, red = p.counts
        shares = [round(100 * n / total) if total else 0 for n in p.counts]
        words = f"Pulse {p.poll_id}, {when}: 🟢 {green}, 🟡 {yellow}, 🔴 {red} ({p.voters} voted)"
        parts.append(
            f'<g class="pulse" data-poll="{p.poll_id}" data-green="{green}" data-yellow="{yellow}"'
            f' data-red="{red}" data-shares="{"/".join(map(str, shares))}"><title>{_e(words)}</title>'
        )
        top: float = 4
        for (kind, _), n in zip(PULSE_KINDS, p.counts, strict=True):
            h = PLOT_HEIGHT * n / total if total else 0
            if h:
                parts.append(
                    f'<rect class="seg {kind}" x="{x}" y="{top:.1f}" width="{step - 6}" height="{h:.1f}"/>'
                )
            top += h
        if not total:
            parts.append(f'<rect class="seg empty" x="{x}" y="4" width="{step - 6}" height="{PLOT_HEIGHT}"/>')
        tick = f"{utc(p.at).astimezone(ZoneInfo(tz)):%d %b}" if step >= 40 else f"#{p.poll_id}"
        parts.append(f'<text class="tick" x="{x}" y="{height - 8}">{tick}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(bands: Sequence[Band], tz: str) -> str:
    """The phases as bands over time, from the group's start to now."""
    width, height = 600, 44
    if not bands:
        return ""
    start, end = utc(bands[0].start), utc(bands[-1].end)
    span = max((end - start).total_seconds(), 1.0)

    def x_of(dt: datetime) -> float:
        return 600 * (utc(dt) - start).total_seconds() / span

    parts = [
        f'<svg class="chart timeline-chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none"'
        f' role="img" aria-label="The phases over time">'
    ]
    for b in bands:
        x0, x1 = x_of(b.start), x_of(b.end)
        words = f"{b.phase.title} from {format_time(b.start, tz)} to {format_time(b.end, tz)}"
        parts.append(
            f'<g class="band" data-phase="{b.phase.value}"><title>{_e(words)}</title>'
            f'<rect class="phase-{b.phase.value}" x="{x0:.2f}" y="0" width="{max(x1 - x0, 0.5):.2f}"'
            f' height="{height}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
