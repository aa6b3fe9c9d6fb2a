"""The group's page on the web server: routes behind signed links, the page as HTML, and its JSON.

`dashboard_routes` adds to an aiohttp application:
- `GET /dashboard/{group}/{token}/`: the page (`.../{token}` without the slash redirects to it), with the
  newest polls; `?polls=2` and on: the same page with older ones;
- `GET /dashboard/{group}/{token}/data.json`: what the page shows, as JSON;
- `GET /dashboard-assets/dashboard.css`: the page's one stylesheet.
A link that is forged, expired, revoked or for another group gets 403 and a page that says what to do;
it names no group. No route lists groups. Every response forbids scripts, frames and referrers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from html import escape
from importlib import resources

from aiohttp import web

from adapters.web.charts import (
    KINDS,
    PULSE_KINDS,
    bar_chart,
    participation_chart,
    pulse_chart,
    timeline_chart,
)
from core.clock import Clock, format_time
from core.dashboard import (
    ASK_AGAIN,
    STATUS_ORDER,
    Page,
    PageRecord,
    PollView,
    Refused,
    Window,
    build_page,
    check,
    generation,
    read_page,
    secret_in,
    to_data,
)
from core.lifecycle import PHASE_ORDER
from core.members import Contributions
from core.ports import Store

# Nothing runs on the page, nothing is fetched from another host, nothing may frame it.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    # The token is in the address: no other site may learn it from a Referer, no cache may keep it.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
ASSETS = "../../../dashboard-assets/"  # relative: works behind a path prefix too
STYLESHEET = ASSETS + "dashboard.css"
# Without an icon of its own, a browser asks for /favicon.ico and logs the 404 as an error.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3"'
    ' fill="#0969da"/><rect x="3" y="8" width="2.5" height="5" fill="#fff"/><rect x="6.75" y="5"'
    ' width="2.5" height="8" fill="#fff"/><rect x="10.5" y="3" width="2.5" height="10" fill="#fff"/></svg>'
)
HEAD = (
    '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
    f'<meta name="referrer" content="no-referrer"><link rel="icon" href="{ASSETS}icon.svg"'
    f' type="image/svg+xml"><link rel="stylesheet" href="{STYLESHEET}">'
)
# A page a phone can hold: 40 polls' charts (`?polls=2` and on: older ones), the newest reviews in full,
# and of each finished status of goals the newest with their tallies. data.json holds everything.
POLLS_PER_PAGE = 40
REVIEWS_IN_FULL = 8
GOALS_IN_FULL = 10
POLLS_PAGE = "polls"  # the query parameter: which page of polls, from 1 (the newest)


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _respond(body: str, status: int = 200, content_type: str = "text/html") -> web.Response:
    return web.Response(text=body, status=status, content_type=content_type, charset="utf-8", headers=HEADERS)


def refused_page(reason: Refused) -> str:
    """The 403 page: why, and what to do. It names no group."""
    return (
        f'<!doctype html><html lang="en"><head>{HEAD}<title>Link not valid</title></head>'
        f'<body class="refused"><main><h1>This link does not open a page</h1><p>{_e(reason.value)}</p>'
        f"<p>{_e(ASK_AGAIN)}</p></main></body></html>"
    )


FARTHEST = 10**12  # a page number longer than this is read as this one: further than any group's polls


def polls_page_asked(query: Mapping[str, str]) -> int | None:
    """The page of polls a request asks for (`?polls=3`; none: the first, the newest), or None when what
    it gives is not a page number (pages are numbered from 1)."""
    given = query.get(POLLS_PAGE)
    if given is None:
        return 1
    digits = given.lstrip("0")
    if not (given.isascii() and given.isdigit() and digits):
        return None
    return min(int(digits), FARTHEST) if len(digits) <= len(str(FARTHEST)) else FARTHEST


def page_count(total: int) -> int:
    """How many pages the polls fill: one at least, even with none."""
    return max(1, -(-total // POLLS_PER_PAGE))


def no_such_page(asked: int | None, total: int = 0) -> str:
    """The answer to a page of polls that does not exist: `asked` is not a page number (None), or is past
    the last page of the group's `total` polls."""
    if asked is None:
        why = "Pages of polls are numbered from 1, the newest polls, on: “?polls=2” shows older ones."
    else:
        pages = page_count(total)
        shown = f"{asked:,}" if asked < FARTHEST else "that far"
        why = f"This group's polls fill {pages} page{'s' * (pages > 1)}: there is no page {shown}."
    return (
        f'<!doctype html><html lang="en"><head>{HEAD}<title>No such page of polls</title></head>'
        f'<body class="refused"><main><h1>No such page of polls</h1><p>{why}</p>'
        '<p><a href="./#polls">The newest polls</a> are on the group\'s page.</p></main></body></html>'
    )


def _when(dt: object, tz: str) -> str:
    return format_time(dt, tz) if dt is not None else ""  # type: ignore[arg-type]


def _poll_state(v: PollView, tz: str) -> str:
    if v.closed_at is not None:
        return f"closed {_when(v.closed_at, tz)}"
    return f"open, closes {_when(v.closes_at, tz)}"


def _poll_figure(v: PollView, tz: str) -> str:
    kind = {"pulse": "Pulse check", "consent": "Consent"}.get(v.kind, "Poll")
    flags = "".join(
        f' <span class="tag">{word}</span>'
        for word, on in (("anonymous", v.anonymous), ("hidden until close", v.hidden))
        if on
    )
    chart = (
        f'<p class="withheld">{_e(v.withheld)}.</p>'
        if v.withheld
        else bar_chart(v.bars, f"{kind} {v.id}: {v.question}")
    )
    return (
        f'<figure class="poll" id="poll-{v.id}" data-poll="{v.id}" data-voters="{v.voters}">'
        f"<figcaption><strong>{kind} {v.id}</strong>{flags}: {_e(v.question)}"
        f'<span class="meta">by {_e(v.author)}, {_e(_poll_state(v, tz))};'
        f" {v.voters} voted</span></figcaption>{chart}</figure>"
    )


def _timeline(page: Page) -> str:
    tz = page.timezone
    legend = "".join(f'<li><span class="swatch phase-{p.value}"></span>{p.title}</li>' for p in PHASE_ORDER)
    rows = "".join(
        f"<tr><td>{_e(_when(b.start, tz))}</td><td>{b.phase.title}</td>"
        f"<td>{_e(b.by)}</td><td>{_e(b.reason)}</td></tr>"
        for b in reversed(page.bands)
    )
    return (
        '<section id="phases"><h2>Phases</h2>'
        f"<p>Now <strong>{page.phase.title}</strong>, since {_e(_when(page.phase_since, tz))}.</p>"
        f'{timeline_chart(page.bands, tz)}<ul class="legend">{legend}</ul>'
        '<table class="moves"><thead><tr><th>when</th><th>to</th><th>who</th><th>why</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _roadmap(page: Page) -> str:
    tz = page.timezone
    parts = ['<section id="roadmap"><h2>Roadmap</h2>']
    if not page.goals:
        parts.append("<p>No goals yet.</p>")
    for status in STATUS_ORDER:
        goals = [x for x in page.goals if x.status is status]
        if not goals:
            continue
        parts.append(f'<h3>{status.value.capitalize()} ({len(goals)})</h3><ul class="goals">')
        for x in (x for x in goals if x.in_full):
            consent = ""
            if x.consent is not None:
                if x.consent.withheld:
                    consent = f'<span class="consent">{_e(x.consent.withheld)}</span>'
                else:
                    agree, concerns, block = (b.votes or 0 for b in x.consent.bars)
                    consent = (
                        f'<span class="consent" data-agree="{agree}" data-concerns="{concerns}"'
                        f' data-block="{block}">✅ {agree} · 🤔 {concerns} · ⛔ {block}</span>'
                    )
            worries = f'<span class="meta">🤔 by {_e(", ".join(x.concerns))}</span>' if x.concerns else ""
            if x.heard:
                worries += "".join(f'<span class="meta heard">{_e(line)}</span>' for line in x.heard)
            by = _e(x.proposer) + (
                f" (put forward by {_e(x.put_forward_by)})" if x.put_forward_by != x.proposer else ""
            )
            reshapes = f", reshapes goal {x.reshapes}" if x.reshapes is not None else ""
            parts.append(
                f'<li class="goal" data-goal="{x.id}" data-status="{x.status.value}">'
                f'<span class="goal-text"><strong>Goal {x.id}</strong>: {_e(x.text)}</span>'
                f'<span class="meta">by {by}{reshapes}; proposed {_e(_when(x.created_at, tz))},'
                f" last change {_e(_when(x.updated_at, tz))}</span>{consent}{worries}</li>"
            )
        parts.append("</ul>")
        earlier = [x for x in goals if not x.in_full]
        if earlier:
            # Older finished goals by a line each: their tallies and concerns are in data.json.
            items = "".join(
                f'<li class="goal earlier" data-goal="{x.id}" data-status="{x.status.value}">'
                f"<strong>Goal {x.id}</strong>: {_e(x.text)}"
                f' <span class="when">{_e(_when(x.updated_at, tz)[:10])}</span></li>'
                for x in earlier
            )
            parts.append(
                f'<p class="meta">{len(earlier)} earlier, without their tallies (in'
                f' <a href="data.json">data.json</a>):</p><ul class="goals earlier">{items}</ul>'
            )
    parts.append("</section>")
    return "".join(parts)


def _page_link(number: int) -> str:
    """A page of polls, relative to the page's own address: the signed link is kept, and judged again."""
    return "./#polls" if number == 1 else f"?{POLLS_PAGE}={number}#polls"


def _pager(page: Page) -> str:
    """Which polls these are, and links to newer and older ones, when they fill more than a page."""
    pages = page_count(page.polls_total)
    if pages == 1:
        return ""
    number = page.polls_offset // POLLS_PER_PAGE + 1
    links = [
        f'<a href="{_page_link(to)}" rel="{rel}">{words}</a>' if on else f"<span>{words}</span>"
        for to, rel, words, on in (
            (1, "first", "newest", number > 1),
            (number - 1, "prev", "← newer", number > 1),
            (number + 1, "next", "older →", number < pages),
            (pages, "last", "oldest", number < pages),
        )
    ]
    links.insert(2, f'<strong aria-current="page">page {number} of {pages}</strong>')
    return f'<nav class="pager" aria-label="Pages of polls" data-page="{number}">{"".join(links)}</nav>'


def _polls(page: Page) -> str:
    tz = page.timezone
    parts = ['<section id="polls"><h2>Polls</h2>']
    if not page.polls:
        parts.append("<p>No polls yet.</p>")
    else:
        first, last = page.polls_offset + 1, page.polls_offset + len(page.polls)
        which = f"Polls and pulse checks {first:,}–{last:,} of {page.polls_total:,}, newest first"
        if page_count(page.polls_total) == 1:
            which = "Newest first"
        parts.append(f'<p class="meta">{which}; consent polls are with their goals.</p>')
    pager = _pager(page)
    parts += [pager, *(_poll_figure(v, tz) for v in page.polls), pager, "</section>"]
    return "".join(parts)


def _participation(page: Page) -> str:
    tz = page.timezone
    legend = "".join(f'<li><span class="swatch {kind}"></span>{words}</li>' for kind, words in KINDS)
    pulse_legend = "".join(
        f'<li><span class="swatch {kind}"></span>{words}</li>' for kind, words in PULSE_KINDS
    )
    pulses = (
        f'<div class="scroll">{pulse_chart(page.pulses, tz)}</div><ul class="legend">{pulse_legend}</ul>'
        if page.pulses
        else "<p>No pulse checks yet.</p>"
    )
    return (
        '<section id="participation"><h2>Participation</h2>'
        "<p>What members did each week (Monday to Sunday, in the group's timezone), with the number of"
        " members active above each week. Votes count in the week their poll opened; anonymous polls are"
        " left out.</p>"
        f'<div class="scroll">{participation_chart(page.weeks)}</div><ul class="legend">{legend}</ul>'
        f'<h3 id="pulse">Pulse</h3>{pulses}</section>'
    )


def _reviews(page: Page) -> str:
    tz = page.timezone
    parts = ['<section id="reviews"><h2>Reviews</h2>']
    older: list[str] = []
    if not page.reviews:
        parts.append("<p>No action reviews yet.</p>")
    for v in page.reviews[REVIEWS_IN_FULL:]:
        older.append(
            f'<li data-review="{v.id}">Review {v.id}, started {_e(_when(v.started_at, tz))} by'
            f" {_e(v.started_by)}: {v.answers} answers, {v.proposals} action items</li>"
        )
    for v in page.reviews[:REVIEWS_IN_FULL]:
        state = f"closed {_when(v.closed_at, tz)}" if v.closed_at else f"open until {_when(v.closes_at, tz)}"
        parts.append(
            f'<article class="review" data-review="{v.id}"><h3>Review {v.id}</h3>'
            f'<p class="meta">started {_e(_when(v.started_at, tz))} by {_e(v.started_by)}; {_e(state)}</p>'
        )
        for number, question, answers in v.questions:
            items = "".join(
                f'<li data-answer="{a.id}"><span class="who">{_e(a.author)}</span>: {_e(a.text)}</li>'
                for a in answers
            )
            parts.append(
                f'<h4>{number}. {_e(question)}</h4><ul class="answers" data-question="{number}">'
                f"{items or '<li class=none>no answers</li>'}</ul>"
            )
        if v.action_items:
            parts.append('<h4>Action items</h4><ul class="actions">')
            for item in v.action_items:
                became = (
                    f"became goal {item.goal_id} ({item.goal_status.value})"
                    if item.goal_id is not None and item.goal_status is not None
                    else "not a goal yet"
                )
                parts.append(
                    f'<li data-answer="{item.answer.id}" data-goal="{item.goal_id or ""}">'
                    f'{_e(item.answer.text)} <span class="meta">r{item.answer.id}, {became}</span></li>'
                )
            parts.append("</ul>")
        parts.append("</article>")
    if older:
        parts.append(
            "<h3>Earlier reviews</h3>"
            '<p class="meta">Their answers are in <a href="data.json">data.json</a>.</p>'
            f'<ul class="earlier">{"".join(older)}</ul>'
        )
    parts.append("</section>")
    return "".join(parts)


def _people(page: Page) -> str:
    tz = page.timezone
    rows = []
    for m in page.people:
        if m.private:
            rows.append(
                f'<tr class="private"><td>{_e(m.name)}</td><td colspan="3">listed by name only</td></tr>'
            )
            continue
        did = m.did or Contributions()
        intro = f'<span class="meta intro">“{_e(m.intro)}”</span>' if m.intro else ""
        rows.append(
            f"<tr><td>{_e(m.name)}{intro}</td><td>{_e(_when(m.joined_at, tz)[:10])}</td>"
            f"<td>{_e(_when(m.last_active_at, tz)) or 'not yet'}</td>"
            f'<td class="num">{did.proposals} · {did.votes} · {did.reflections}</td></tr>'
        )
    table = (
        '<table class="people"><thead><tr><th>member</th><th>since</th><th>last active</th>'
        '<th class="num">30 days: proposals · votes · reflections</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>Nobody is on the roster yet.</p>"
    )
    roles = "".join(
        f'<tr data-role="{_e(r.name)}"><td><strong>{_e(r.name)}</strong>'
        f'<span class="meta">{_e(r.duty)}</span></td>'
        f"<td>{_e(r.holder) or 'free'}</td>"
        f"<td>{_e(r.rotation) if r.rotation != 'off' else 'does not rotate'}"
        f"{'; next turn ' + _e(_when(r.next_turn_at, tz)) if r.next_turn_at else ''}"
        f"{'; then ' + _e(', '.join(r.upcoming)) if r.upcoming else ''}</td>"
        f"<td>{_e(', '.join(r.pool)) or '—'}</td></tr>"
        for r in page.roles
    )
    if roles:
        table += (
            '<h3 id="roles">Roles</h3><table class="roles"><thead><tr><th>role</th><th>held by</th>'
            f"<th>rotation</th><th>pool</th></tr></thead><tbody>{roles}</tbody></table>"
        )
    return f'<section id="people"><h2>People</h2>{table}</section>'


def _schedules(page: Page) -> str:
    tz = page.timezone
    rows = "".join(
        f'<tr data-schedule="{s.id}"><td>{s.kind.value}</td><td>{_e(s.description)}</td>'
        f"<td>{'paused' if s.paused else _e(_when(s.next_at, tz))}</td>"
        f"<td>{_e(s.text or 'a prompt')}</td></tr>"
        for s in page.schedules
    )
    rows += "".join(
        f'<tr data-meeting="{m.id}"><td>meeting</td><td>{_e(m.description)}</td>'
        f"<td>{_e(_when(m.next_at, tz))}</td>"
        f"<td>{_e(m.title)}: ✅ {m.rsvps[0]}, ❔ {m.rsvps[1]}, ❌ {m.rsvps[2]}</td></tr>"
        for m in page.meetings
    )
    table = (
        '<table class="schedules"><thead><tr><th>kind</th><th>when</th><th>next</th><th>says</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p>Nothing scheduled.</p>"
    )
    return f'<section id="schedules"><h2>Schedules ahead</h2>{table}</section>'


def render_page(page: Page) -> str:
    """The whole page: plain HTML and SVG, every member's word escaped, no script."""
    sections = (_timeline, _roadmap, _polls, _participation, _people, _reviews, _schedules)
    nav = "".join(
        f'<a href="#{anchor}">{words}</a>'
        for anchor, words in (
            ("phases", "Phases"),
            ("roadmap", "Roadmap"),
            ("polls", "Polls"),
            ("participation", "Participation"),
            ("people", "People"),
            ("reviews", "Reviews"),
            ("schedules", "Schedules"),
        )
    )
    return (
        f'<!doctype html><html lang="en"><head>{HEAD}<title>{_e(page.name)}: the group\'s page</title>'
        "</head><body>"
        f'<header><h1>{_e(page.name)}</h1><p class="meta">{_e(page.platform)} · times in'
        f" {_e(page.timezone)} · as of {_e(_when(page.now, page.timezone))} ·"
        ' <a href="data.json">data.json</a></p>'
        f"<nav>{nav}</nav></header><main>{''.join(s(page) for s in sections)}</main></body></html>"
    )


def dashboard_routes(app: web.Application, store: Store, clock: Clock, secret: bytes | None = None) -> None:
    """Serve groups' pages on `app`. `secret`: the operator's (`PEERBOT_WEB_SECRET`); None reads the
    one kept in the database, as the `dashboard` command does. Expiry is judged by `clock`, the bot's."""

    async def opened(
        request: web.Request, window: Window | None
    ) -> tuple[PageRecord, datetime] | Refused | None:
        """What the page a request's link opens is built from, as much of it as `window` says, and when it
        was read; or why the link opens nothing. None: the link is good, and `window` None (nothing read)."""
        group_text, token = request.match_info["group"], request.match_info["token"]
        if not (group_text.isascii() and group_text.isdigit() and len(group_text) <= 18):
            return Refused.FORGED
        group_id = int(group_text)
        now = clock.now()
        async with store.read() as tx:
            key = await secret_in(tx, secret)
            refused = check(key, group_id, token, await generation(tx, group_id), now)
            if refused is not None:
                return refused
            group = await tx.groups.by_id(group_id)
            if group is None:
                return Refused.FORGED
            if window is None:
                return None
            return await read_page(tx, group, now, window), now

    async def page(request: web.Request) -> web.Response:
        asked = polls_page_asked(request.query)
        window = None
        if asked is not None:
            offset = (asked - 1) * POLLS_PER_PAGE
            window = Window(REVIEWS_IN_FULL, GOALS_IN_FULL, offset, POLLS_PER_PAGE)
        found = await opened(request, window)  # the link is judged first, whatever the page number
        if isinstance(found, Refused):
            return _respond(refused_page(found), 403)
        if found is None or asked is None:
            return _respond(no_such_page(None), 400)
        record, now = found
        if asked > page_count(record.listed_total):
            return _respond(no_such_page(asked, record.listed_total), 404)
        # Building and rendering take a good part of the time for a long record: off the event loop.
        return _respond(await asyncio.to_thread(lambda: render_page(build_page(record, now))))

    async def data(request: web.Request) -> web.Response:
        # data.json holds everything: every poll (it takes no page number), every goal's tally, every
        # review's answers.
        found = await opened(request, Window())
        if isinstance(found, Refused):
            body = {"error": found.value, "what_to_do": ASK_AGAIN}
            return _respond(json.dumps(body), 403, "application/json")
        assert found is not None
        record, now = found
        text = await asyncio.to_thread(
            lambda: json.dumps(to_data(build_page(record, now)), ensure_ascii=False)
        )
        return _respond(text, content_type="application/json")

    async def with_slash(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"{request.match_info['token']}/", headers=HEADERS)

    async def stylesheet(request: web.Request) -> web.Response:
        response = _respond(CSS, content_type="text/css")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    async def icon(request: web.Request) -> web.Response:
        response = _respond(ICON, content_type="image/svg+xml")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

    routes: list[tuple[str, Callable[[web.Request], Awaitable[web.Response]]]] = [
        ("/dashboard-assets/dashboard.css", stylesheet),
        ("/dashboard-assets/icon.svg", icon),
        ("/dashboard/{group}/{token}/", page),
        ("/dashboard/{group}/{token}/data.json", data),
        ("/dashboard/{group}/{token}", with_slash),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler, allow_head=False)


CSS = resources.files("adapters.web").joinpath("dashboard.css").read_text(encoding="utf-8")
