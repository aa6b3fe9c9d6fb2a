"""The group's page in a real headless Chromium (Debian's, driven by Playwright): after a scripted
session through the engine on SQLite, the charts show the right numbers, nothing is fetched from
another host, nothing logs an error, and member text cannot run as script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.web.dashboard import dashboard_routes
from core.dashboard import DashboardSettings
from core.refs import UserRef
from tests.conftest import migrated_store
from tests.support import Harness, free_socket, serving
from tests.test_pending import poll_message

try:
    from playwright import async_api as playwright_api
except ImportError:  # the [test] extra installs it
    if os.environ.get("CI") == "true":
        raise
    playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"http://127\.0\.0\.1:\d+/dashboard/\d+/[^/\s]+/")


def _chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        # The README's test command sets up a fresh machine: as root, Debian's Chromium comes with it.
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium", "fonts-noto-color-emoji"],
            check=False,
            capture_output=True,
            timeout=900,
        )
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is required in CI: apt-get install chromium (.ci/run does)")
    pytest.skip("no system Chromium here (apt-get install chromium)")


@dataclass
class Watched:
    """What a page did while it loaded: every request, and every error it logged or threw."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = _chromium_or_skip()
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Harness, str]]:
    sock = free_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with migrated_store(f"sqlite+aiosqlite:///{tmp_path / 'peerbot.db'}") as store:
        h = Harness(store=store, dashboard=DashboardSettings(public))
        app = web.Application()
        dashboard_routes(app, h.store, h.clock)
        async with serving(app, sock):
            yield h, public


async def open_page(browser: Any, url: str, width: int = 1000) -> tuple[Any, Watched]:
    watched = Watched()
    page = await browser.new_page(viewport={"width": width, "height": 900})
    page.on("request", lambda r: watched.requests.append(r.url))
    page.on("console", lambda m: watched.errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: watched.errors.append(str(e)))
    response = await page.goto(url, wait_until="load")
    assert response is not None and response.status == 200
    return page, watched


async def link_of(h: Harness, who: str = "alice") -> str:
    reply = await h.member(who).says("/dashboard")
    assert reply is not None and not reply.is_error, reply
    found = LINK.search(reply.text)
    assert found is not None, reply.text
    return found[0]


async def scripted_session(h: Harness) -> None:
    """A few weeks of a group: phases, goals decided by consent, a poll, pulses, a review, a nudge."""
    await h.regulars("alice", "bob", "carol", "dave")
    alice, bob, carol, dave = (h.member(n) for n in ("alice", "bob", "carol", "dave"))

    async def run(days: float) -> None:
        target = h.clock.now() + timedelta(days=days)
        await h.engine.run_until(target, lambda t: setattr(h.clock, "current", t))

    await alice.says("/phase set organizing we know each other now")
    await alice.says("/goal propose Read the Rust book together")  # goal 1, poll 1
    await bob.says("/goal propose Build a tiny web server")  # goal 2, poll 2
    for member, emoji in ((alice, "✅"), (bob, "✅"), (carol, "🤔"), (dave, "✅")):
        await member.reacts(await poll_message(h, 1), emoji)
    await carol.reacts(await poll_message(h, 2), "⛔")
    await carol.whispers("/concern 1 Who brings the book?")
    await run(3)
    await alice.says("/phase set cooperating goal 1 is ours")
    await bob.says("/poll create --closes 2d Which day suits? | Monday | Friday")  # poll 3
    for member, emoji in ((alice, "2️⃣"), (bob, "2️⃣"), (carol, "1️⃣")):
        await member.reacts(await poll_message(h, 3), emoji)
    await alice.says("/pulse")  # poll 4
    for member, emoji in ((alice, "🟢"), (bob, "🟢"), (carol, "🟡"), (dave, "🔴")):
        await member.reacts(await poll_message(h, 4), emoji)
    await run(8)
    await carol.says("/reflect Pairing helped me most")
    await alice.says("/phase set assessing time to look back")
    await bob.says("/reflect q2 We read two chapters a week")
    await dave.says("/reflect q5 Meet on Fridays")
    await carol.says("/reflect q5 Keep a shared glossary")
    await alice.says("/goal propose r4")  # carol's answer, put forward by alice: goal 3, poll 5
    await alice.says("/nudge add weekly fri 17:00 What did you learn this week?")
    await run(1)
    for poll, votes in ((6, "🟢🟡🟡🔴"), (7, "🟢🟢🟢🟡")):  # two more weeks, a pulse each
        await run(7)
        await alice.says("/pulse")
        for member, emoji in zip((alice, bob, carol, dave), votes, strict=True):
            await member.reacts(await poll_message(h, poll), emoji)
    await alice.says("/goal done 1")
    await alice.says("/phase set changing we learned what to change")
    await run(1)


async def test_the_group_page_shows_the_sessions_numbers_offline_and_without_errors(
    browser: Any, served: tuple[Harness, str]
) -> None:
    h, public = served
    await scripted_session(h)
    url = await link_of(h)
    page, watched = await open_page(browser, url)

    # Roadmap: goal 1 accepted with its consent tally (and done), goal 2 blocked, goal 3 from an answer.
    goal1 = page.locator('li.goal[data-goal="1"]')
    assert await goal1.get_attribute("data-status") == "done"
    tally = goal1.locator(".consent")
    assert [await tally.get_attribute(f"data-{k}") for k in ("agree", "concerns", "block")] == ["3", "1", "0"]
    assert "🤔 by carol" in await goal1.inner_text()
    assert "Concern 1 (carol): Who brings the book?" in await goal1.inner_text()
    assert await page.locator('li.goal[data-goal="2"]').get_attribute("data-status") == "blocked"

    # The poll's bars: read from the SVG, and drawn in the stylesheet's colour (the CSS loaded).
    options = page.locator("#poll-3 g.option")
    votes = {
        await o.get_attribute("data-label"): await o.get_attribute("data-votes") for o in await options.all()
    }
    assert votes == {"Monday": "1", "Friday": "2"}
    friday = page.locator('#poll-3 g.option[data-label="Friday"] rect.bar')
    monday = page.locator('#poll-3 g.option[data-label="Monday"] rect.bar')
    assert int(await friday.get_attribute("width") or 0) == 2 * int(await monday.get_attribute("width") or 0)
    fill = await friday.evaluate("r => getComputedStyle(r).fill")
    assert fill == "rgb(9, 105, 218)"

    # Pulse: 2 🟢, 1 🟡, 1 🔴.
    pulse = page.locator('g.pulse[data-poll="4"]')
    assert [await pulse.get_attribute(f"data-{c}") for c in ("green", "yellow", "red")] == ["2", "1", "1"]
    assert await pulse.get_attribute("data-shares") == "50/25/25"

    # Participation: the first week (from Monday 2 March) had 2 goals and 5 consent votes, 3 on the poll
    # and 4 on the pulse, by all four; the second, goal 3 and 4 reflections.
    weeks = page.locator("g.week")
    first = weeks.nth(0)
    assert await first.get_attribute("data-week") == "2026-03-02"
    assert [await first.get_attribute(f"data-{k}") for k in ("goals", "votes", "reflections", "members")] == [
        "2",
        "12",
        "0",
        "4",
    ]
    second = weeks.nth(1)
    assert [
        await second.get_attribute(f"data-{k}") for k in ("goals", "votes", "reflections", "members")
    ] == [
        "1",
        "0",
        "4",
        "4",
    ]

    # Phases as bands, the review's action items, the nudge ahead.
    bands = [await b.get_attribute("data-phase") for b in await page.locator("g.band").all()]
    assert bands == ["convening", "organizing", "cooperating", "assessing", "changing"]
    actions = await page.locator("ul.actions").inner_text()
    assert "Meet on Fridays" in actions and "not a goal yet" in actions
    assert "became goal 3 (lapsed)" in actions  # nobody voted on it in its 48 hours
    assert "What did you learn this week?" in await page.locator("#schedules").inner_text()

    assert all(r.startswith(public + "/") for r in watched.requests), watched.requests
    assert {r.rsplit("/", 1)[1] for r in watched.requests} >= {"", "dashboard.css"}
    assert watched.errors == []

    await page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)

    # On a phone: nothing wider than the screen but the charts' own scrolling boxes.
    phone, watched = await open_page(browser, url, width=375)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
    assert watched.errors == []


async def test_older_polls_open_from_the_pager_behind_the_same_link(
    browser: Any, served: tuple[Harness, str]
) -> None:
    h, public = served
    await h.regulars("alice", "bob")
    for n in range(1, 46):  # two pages: 40 and 5
        await h.member("alice").says(f"/poll create Question {n}? | yes | no")
    await h.member("bob").reacts(await poll_message(h, 2), "2️⃣")
    url = await link_of(h)
    page, watched = await open_page(browser, url)
    assert await page.locator("figure.poll").count() == 40
    assert await page.locator("#poll-45").count() == 1 and await page.locator("#poll-5").count() == 0
    await page.locator("#polls nav.pager").first.get_by_role("link", name="older →").click()
    await page.wait_for_url(url + "?polls=2#polls")
    assert await page.locator("nav.pager").first.get_attribute("data-page") == "2"
    assert [await f.get_attribute("data-poll") for f in await page.locator("figure.poll").all()] == [
        "5",
        "4",
        "3",
        "2",
        "1",
    ]
    votes = page.locator('#poll-2 g.option[data-label="no"]')
    assert await votes.get_attribute("data-votes") == "1"
    await page.locator("#polls nav.pager").first.get_by_role("link", name="newest").click()
    await page.wait_for_url(url + "#polls")
    assert await page.locator("#poll-45").count() == 1
    assert all(r.startswith(public + "/") for r in watched.requests), watched.requests
    assert watched.errors == []
    phone, watched = await open_page(browser, url + "?polls=2", width=375)
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
    assert watched.errors == []


async def test_script_in_goal_text_and_display_names_never_runs(
    browser: Any, served: tuple[Harness, str]
) -> None:
    h, public = served
    await h.regulars("alice")
    goal = '<script>window.pwned = "goal"</script><img src=x onerror="window.pwned = \'img\'">'
    name = "<svg onload=\"window.pwned = 'name'\"></svg>Mallory"
    mallory = h.member("mallory")
    mallory.user = UserRef("fake", "mallory", name)
    await mallory.says(f"/goal propose {goal}")
    await mallory.says("/reflect </title></svg><script>window.pwned='reflection'</script>")
    await mallory.reacts(await poll_message(h, 1), "✅")
    page, watched = await open_page(browser, await link_of(h))
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert await page.locator("script").count() == 0
    assert await page.locator("li.goal img, li.goal svg, li.goal script").count() == 0
    text = await page.locator('li.goal[data-goal="1"]').inner_text()
    assert goal in text and name in text  # shown as the words they are
    assert all(r.startswith(public + "/") for r in watched.requests), watched.requests
    assert watched.errors == []
