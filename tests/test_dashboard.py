"""The group's page: the `dashboard` command's private links, the page and its JSON behind them, and
every way a link must fail (forged, expired, revoked, another group's), served for real over HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from adapters.web.dashboard import CSP, dashboard_routes
from core.dashboard import ASK_AGAIN, DashboardSettings, Refused, check, link, sign, week_of
from core.export import load_record
from core.goals import GoalStatus
from core.refs import ChannelRef
from tests.conftest import EmptyDatabase, migrated_store
from tests.support import START, Harness, free_socket, serving
from tests.test_pending import poll_message

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/dashboard/(\d+)/([^/\s]+)/)")


@dataclass
class Site:
    """A harness whose engine makes dashboard links, with the page served on a real port."""

    h: Harness
    url: str
    http: aiohttp.ClientSession

    async def link(self, who: str = "alice", channel: ChannelRef | None = None) -> str:
        reply = await self.h.member(who).says("/dashboard", channel)
        assert reply is not None and not reply.is_error and reply.private, reply
        found = LINK.search(reply.text)
        assert found is not None, reply.text
        return found[1]

    async def get(self, url: str) -> tuple[int, dict[str, str], str]:
        async with self.http.get(url, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.text()


def site_on(make_store: Callable[[], AbstractAsyncContextManager[object]]) -> Callable[[], object]:
    @asynccontextmanager
    async def opened() -> AsyncIterator[Site]:
        sock = free_socket()
        public = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with make_store() as store:
            h = Harness(store=store, dashboard=DashboardSettings(public))
            app = web.Application()
            dashboard_routes(app, h.store, h.clock)
            async with serving(app, sock) as url, aiohttp.ClientSession() as http:
                assert url == public
                yield Site(h, url, http)

    return opened


@asynccontextmanager
async def memory() -> AsyncIterator[object]:
    yield None  # the harness's in-memory store


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with site_on(memory)() as opened:  # type: ignore[attr-defined]
        yield opened


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql_site(request: pytest.FixtureRequest, empty_database: EmptyDatabase) -> AsyncIterator[Site]:
    @asynccontextmanager
    async def store() -> AsyncIterator[object]:
        async with empty_database(request.param) as url, migrated_store(url) as sql:
            yield sql

    async with site_on(store)() as opened:  # type: ignore[attr-defined]
        yield opened


# The command ------------------------------------------------------------------------------------


async def test_a_facilitator_gets_a_private_link_valid_seven_days(site: Site) -> None:
    reply = await site.h.member("alice").says("/dashboard")
    assert reply is not None and reply.private and not reply.is_error
    assert "#" not in reply.text.split("http", 1)[1]  # the token is in the path, never a fragment
    assert "until 2026-03-09 09:00 UTC" in reply.text
    assert not [s for s in site.h.chat.sent if "/dashboard/" in s.text]  # nothing in the channel


async def test_members_get_a_link_only_once_the_group_allows_it(site: Site) -> None:
    await site.h.member("alice").says("/status")
    refused = await site.h.member("bob").says("/dashboard")
    assert refused is not None and refused.is_error and refused.private
    assert refused.text == (
        "Facilitators get the link to the group's page; members too once a facilitator says"
        " /auto dashboard on."
    )
    said = await site.h.member("alice").says("/auto dashboard on")
    assert said is not None and said.text == "Automatic dashboard is on."
    shown = await site.h.member("bob").says("/auto")
    assert shown is not None and shown.text.endswith("members' links to the group's page on.")
    status, _, _ = await site.get(await site.link("bob"))
    assert status == 200
    await site.h.member("alice").says("/auto dashboard off")
    again = await site.h.member("bob").says("/dashboard")
    assert again is not None and again.is_error


async def test_only_facilitators_revoke_links(site: Site) -> None:
    await site.h.member("alice").says("/status")
    answer = await site.h.member("bob").says("/dashboard revoke")
    assert answer is not None and answer.text == (
        "Sorry, only facilitators can revoke the links to the group's page. Nothing was changed."
    )


async def test_without_a_web_server_the_command_says_the_page_is_not_set_up() -> None:
    reply = await Harness().member("alice").says("/dashboard")
    assert reply is not None and reply.is_error and reply.private
    assert "not set up" in reply.text


# The page and its JSON ----------------------------------------------------------------------------


async def test_the_link_opens_the_group_page_with_a_strict_policy_and_its_json(site: Site) -> None:
    alice = site.h.member("alice")
    await alice.says("/goal propose Learn Rust")
    await alice.says("/poll create Which day? | Monday | Friday")
    url = await site.link()
    status, headers, body = await site.get(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CSP
    assert "default-src 'none'" in CSP and "unsafe" not in CSP and "script-src" not in CSP
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
    assert "<script" not in body and "Learn Rust" in body and "Which day?" in body
    assert "http" not in body.replace('href="data.json"', "")  # no address of any host, this one included
    status, headers, _ = await site.get(url + "data.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = await _json(site, url + "data.json")
    assert data["group"]["name"] == "#general" and data["group"]["phase"] == "convening"
    assert [g["text"] for g in data["goals"]] == ["Learn Rust"]
    assert [p["question"] for p in data["polls"]] == ["Which day?"]
    css_status, css_headers, css = await site.get(site.url + "/dashboard-assets/dashboard.css")
    assert css_status == 200 and css_headers["Content-Type"].startswith("text/css") and "@media print" in css


async def test_a_link_without_its_last_slash_is_sent_to_the_page(site: Site) -> None:
    url = await site.link()
    status, headers, _ = await site.get(url.rstrip("/"))
    assert status == 301 and url.endswith("/" + headers["Location"])


async def _json(site: Site, url: str) -> dict:
    async with site.http.get(url) as response:
        return await response.json()


async def test_hidden_and_anonymous_polls_keep_their_counts_off_the_page(site: Site) -> None:
    h = site.h
    await h.regulars("vera", "walt")
    await h.member("alice").says("/poll create --hidden --closes 1h Tea? | yes | no")  # poll 1
    await h.member("alice").says("/poll create --anonymous --closes 1h Cake? | yes | no")  # poll 2
    await h.member("vera").reacts(await poll_message(h, 1), "1️⃣")
    await h.member("vera").whispers("/vote 2 1")
    await h.member("walt").whispers("/vote 2 2")
    url = await site.link()
    polls = {p["id"]: p for p in (await _json(site, url + "data.json"))["polls"]}
    assert polls[1]["withheld"] == "results hidden until it closes" and polls[1]["voters"] == 1
    assert all("votes" not in o for o in polls[1]["options"])
    assert polls[2]["withheld"] == "too few votes to show without revealing who voted"
    assert all("votes" not in o for o in polls[2]["options"])
    _, _, body = await site.get(url)
    assert 'class="option"' not in body  # no bars: no counts
    await h.engine.run_until(START + timedelta(hours=2), lambda t: setattr(h.clock, "current", t))
    polls = {p["id"]: p for p in (await _json(site, url + "data.json"))["polls"]}
    assert [o["votes"] for o in polls[1]["options"]] == [1, 0]  # closed: shown
    assert polls[2]["withheld"]  # still fewer than 3 voters


async def test_reviews_show_answers_by_question_and_which_action_items_became_goals(site: Site) -> None:
    h = site.h
    alice, bob = h.member("alice"), h.member("bob")
    await alice.says("/review start")
    await bob.says("/reflect q1 Learn Rust together")
    await bob.says("/reflect q5 Pair on Fridays")
    await alice.says("/reflect q5 Keep a shared glossary")
    await alice.says("/goal propose r3")  # alice puts forward her own answer
    data = await _json(site, await site.link() + "data.json")
    (review,) = data["reviews"]
    answers = {q["number"]: [a["text"] for a in q["answers"]] for q in review["questions"]}
    assert answers == {
        1: ["Learn Rust together"],
        2: [],
        3: [],
        4: [],
        5: ["Pair on Fridays", "Keep a shared glossary"],
    }
    items = {i["text"]: (i["goal"], i["goal_status"]) for i in review["action_items"]}
    assert items == {"Pair on Fridays": (None, None), "Keep a shared glossary": (1, "proposed")}


# Pages of polls ------------------------------------------------------------------------------------

FIGURE = re.compile(r'<figure class="poll" id="poll-(\d+)"')
OLDER = re.compile(r'<a href="(\?polls=\d+)#polls" rel="next">')
WEEK_VOTES = re.compile(
    r'<g class="week" data-week="[^"]+" data-members="\d+" data-goals="\d+" data-votes="(\d+)"'
)


async def test_older_polls_are_a_page_away_and_every_vote_still_counts(sql_site: Site) -> None:
    """85 polls and pulses fill three pages, newest first, each reached from the one before by its link
    (the same signed link); the charts of every page count the votes of all of them."""
    h = sql_site.h
    await h.regulars("bob", "carol")
    alice, bob, carol = h.member("alice"), h.member("bob"), h.member("carol")
    await alice.says("/goal propose Learn Rust")  # poll 1: consent, shown with its goal
    await alice.says("/pulse")  # poll 2
    await alice.says("/poll create --hidden --closes 3d Tea? | yes | no")  # poll 3
    for n in range(4, 87):
        await alice.says(f"/poll create Question {n}? | yes | no")
    await bob.reacts(await poll_message(h, 2), "🟢")  # the oldest page's votes
    await carol.reacts(await poll_message(h, 2), "🟡")
    await bob.reacts(await poll_message(h, 3), "1️⃣")
    await carol.reacts(await poll_message(h, 86), "2️⃣")  # and the newest's
    await bob.reacts(await poll_message(h, 1), "✅")
    url = await sql_site.link()

    pages: list[list[int]] = []
    address = url
    while True:
        status, headers, body = await sql_site.get(address)
        assert status == 200 and headers["Content-Security-Policy"] == CSP
        pages.append([int(n) for n in FIGURE.findall(body)])
        assert f'data-page="{len(pages)}"' in body and f"page {len(pages)} of 3" in body
        # Votes keep no time: they count in the week their poll opened, whichever page shows the poll.
        assert sum(map(int, WEEK_VOTES.findall(body))) == 5
        assert 'g class="pulse" data-poll="2"' in body  # the pulse chart has every pulse
        assert "✅ 1 · 🤔 0 · ⛔ 0" in body  # and the roadmap every goal's tally
        older = OLDER.search(body)
        if older is None:
            break
        address = url + older[1]
    assert pages == [list(range(86, 46, -1)), list(range(46, 6, -1)), list(range(6, 1, -1))]
    assert "Polls and pulse checks 81–85 of 85" in body and 'href="./#polls" rel="first"' in body
    hidden = body.split('id="poll-3"', 1)[1].split("</figure>", 1)[0]
    assert 'data-voters="1"' in hidden and 'class="option"' not in hidden  # hidden until it closes

    first = (await sql_site.get(url + "?polls=1"))[2]
    assert [int(n) for n in FIGURE.findall(first)] == pages[0]
    assert 'rel="prev"' not in first and 'href="?polls=3#polls" rel="last"' in first
    data = await _json(sql_site, url + "data.json?polls=2")  # data.json holds every poll, whatever is asked
    assert [p["id"] for p in data["polls"]] == list(range(86, 1, -1))
    assert sum(w["votes"] for w in data["participation"]) == 5


async def test_the_roadmap_shows_open_goals_and_the_newest_finished_ones_with_their_tallies(
    sql_site: Site,
) -> None:
    """Every goal is on the roadmap; of each finished status the 10 newest come with their consent
    tallies and concerns, older ones by a line each (their tallies in data.json). Open goals always
    come in full."""
    h = sql_site.h
    await h.regulars("bob")
    alice, bob = h.member("alice"), h.member("bob")
    for n in range(1, 15):
        await alice.says(f"/goal propose Goal number {n}")  # goal n, consent poll n
        await bob.reacts(await poll_message(h, n), "🤔")
    async with h.store.transaction() as tx:
        for goal_id in range(1, 13):  # 12 done, the two newest still proposed
            await tx.goals.set_status(goal_id, GoalStatus.DONE, h.clock.now())
    url = await sql_site.link()
    _, _, body = await sql_site.get(url)
    full = dict(re.findall(r'<li class="goal" data-goal="(\d+)" data-status="(\w+)">', body))
    earlier = dict(re.findall(r'<li class="goal earlier" data-goal="(\d+)" data-status="(\w+)">', body))
    assert full == {"14": "proposed", "13": "proposed"} | {str(n): "done" for n in range(12, 2, -1)}
    assert earlier == {"2": "done", "1": "done"}
    assert "<h3>Done (12)</h3>" in body and "2 earlier, without their tallies" in body
    assert body.count('data-concerns="1"') == 12 and body.count("🤔 by bob") == 12
    older = body.split('data-goal="2"', 1)[1].split("</li>", 1)[0]
    assert "Goal number 2" in older and "consent" not in older
    data = await _json(sql_site, url + "data.json")  # everything, tallies included
    assert {g["id"]: (g["consent"]["options"][1]["votes"], g["concerns"]) for g in data["goals"]} == {
        n: (1, ["bob"]) for n in range(1, 15)
    }


async def test_a_page_of_polls_that_is_no_number_or_past_the_last_gets_a_clear_answer(site: Site) -> None:
    alice = site.h.member("alice")
    for n in range(1, 42):  # two pages: 40 and 1
        await alice.says(f"/poll create Question {n}? | yes | no")
    url = await site.link()
    assert (await site.get(url + "?polls=2"))[0] == 200
    assert (await site.get(url + "?polls=0002"))[0] == 200
    for asked in ("abc", "0", "-1", "", "1.5", "2e1", "２", "%F0%9F%94%A5", "1x"):
        status, headers, body = await site.get(f"{url}?polls={asked}")
        assert status == 400, asked
        assert headers["Content-Security-Policy"] == CSP and headers["Cache-Control"] == "no-store"
        assert "Pages of polls are numbered from 1" in body and 'href="./#polls"' in body
        assert "Question" not in body
    for asked, words in (("3", "page 3"), ("9" * 40, "page that far"), ("9" * 5000, "page that far")):
        status, _, body = await site.get(f"{url}?polls={asked}")
        assert status == 404, asked[:10]
        assert f"This group's polls fill 2 pages: there is no {words}." in body
    empty = await site.link(channel=ChannelRef("fake", "empty", "#empty"))
    assert (await site.get(empty + "?polls=1"))[0] == 200  # a group without polls has its one page
    status, _, body = await site.get(empty + "?polls=2")
    assert status == 404 and "fill 1 page: there is no page 2." in body


async def test_a_bad_link_to_a_page_of_polls_gets_403_before_its_number_is_read(site: Site) -> None:
    alice = site.h.member("alice")
    await alice.says("/goal propose Learn Rust")
    for n in range(45):
        await alice.says(f"/poll create Question {n}? | yes | no")
    url = await site.link()
    token = url.rstrip("/").rsplit("/", 1)[1]
    forged = url.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    for asked in ("2", "abc", "99"):
        status, headers, body = await site.get(f"{forged}?polls={asked}")
        assert status == 403 and headers["Content-Security-Policy"] == CSP
        assert escape(Refused.FORGED.value) in body and "#general" not in body and "Question" not in body
    site.h.clock.advance(timedelta(days=7))
    status, _, body = await site.get(url + "?polls=2")
    assert status == 403 and escape(Refused.EXPIRED.value) in body and "Question" not in body


# Links that must not open ---------------------------------------------------------------------------


def test_a_token_opens_only_its_group_in_its_generation_before_it_expires() -> None:
    secret, now = b"s" * 32, START
    token = sign(secret, 7, 2, now + timedelta(days=7))
    assert check(secret, 7, token, 2, now) is None
    assert check(secret, 8, token, 2, now) is Refused.FORGED  # another group's id
    assert check(b"t" * 32, 7, token, 2, now) is Refused.FORGED  # another secret
    assert check(secret, 7, token, 3, now) is Refused.REVOKED
    assert check(secret, 7, token, 2, now + timedelta(days=7)) is Refused.EXPIRED
    assert check(None, 7, token, 2, now) is Refused.FORGED  # no secret yet: nothing was signed
    gen, stamp, sig = token.split(".")
    for bad in (
        f"{gen}.{int(stamp) + 999}.{sig}",
        f"{int(gen) + 1}.{stamp}.{sig}",
        f"{gen}.{stamp}.x",
        "",
        "1.2",
        "٣.1.x",
    ):
        assert check(secret, 7, bad, 2, now) is Refused.FORGED, bad
    assert link("https://bot.example/peer/", 7, token) == f"https://bot.example/peer/dashboard/7/{token}/"


async def _refused(site: Site, url: str, reason: Refused) -> None:
    status, headers, body = await site.get(url)
    assert status == 403 and headers["Content-Security-Policy"] == CSP
    assert escape(reason.value) in body and escape(ASK_AGAIN) in body
    assert "#general" not in body and "#other" not in body and "Learn Rust" not in body
    status, _, text = await site.get(url + "data.json")
    assert status == 403 and "Learn Rust" not in text and reason.value in text


async def test_a_forged_link_gets_403_and_a_page_that_names_no_group(site: Site) -> None:
    await site.h.member("alice").says("/goal propose Learn Rust")
    url = await site.link()
    found = LINK.search(url)
    assert found is not None
    token = found[3]
    forged = url.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    await _refused(site, forged, Refused.FORGED)
    longer = url.replace(token, token.replace(".", ".9", 1))  # a later expiry, same signature
    await _refused(site, longer, Refused.FORGED)
    await _refused(site, url.replace("/dashboard/1/", "/dashboard/x/"), Refused.FORGED)


async def test_a_link_expires_after_seven_days_by_the_bots_clock(site: Site) -> None:
    await site.h.member("alice").says("/goal propose Learn Rust")
    url = await site.link()
    site.h.clock.advance(timedelta(days=6, hours=23))
    assert (await site.get(url))[0] == 200
    site.h.clock.advance(timedelta(hours=1))
    await _refused(site, url, Refused.EXPIRED)


async def test_revoking_ends_every_link_of_the_group_and_new_ones_work(site: Site) -> None:
    await site.h.member("alice").says("/goal propose Learn Rust")
    await site.h.member("alice").says("/auto dashboard on")
    first, second = await site.link(), await site.link("bob")
    reply = await site.h.member("alice").says("/dashboard revoke")
    assert reply is not None and reply.private and "revoked" in reply.text
    await _refused(site, first, Refused.REVOKED)
    await _refused(site, second, Refused.REVOKED)
    assert (await site.get(await site.link()))[0] == 200


async def test_a_valid_link_with_another_groups_id_gets_403(site: Site) -> None:
    other = ChannelRef("fake", "other", "#other")
    await site.h.member("alice").says("/goal propose Learn Rust")
    await site.h.member("alice").says("/goal propose Secret plans", other)
    mine, theirs = await site.link(), await site.link(channel=other)
    assert "/dashboard/1/" in mine and "/dashboard/2/" in theirs
    await _refused(site, mine.replace("/dashboard/1/", "/dashboard/2/"), Refused.FORGED)
    await _refused(site, mine.replace("/dashboard/1/", "/dashboard/99/"), Refused.FORGED)
    _, _, body = await site.get(theirs)
    assert "Secret plans" in body and "Learn Rust" not in body


async def test_there_is_no_page_of_all_groups(site: Site) -> None:
    await site.link()
    for path in ("/", "/dashboard", "/dashboard/", "/dashboard/1", "/dashboard/1/", "/dashboard-assets/"):
        status, _, body = await site.get(site.url + path)
        assert status in (403, 404), path
        assert "#general" not in body, path


async def test_member_text_is_escaped_on_the_page(site: Site) -> None:
    h = site.h
    evil = h.member("mallory", "mallory")
    evil.user = evil.user.__class__("fake", "mallory", '<img src=x onerror="alert(1)">Mal')
    await h.member("alice").says("/auto dashboard on")
    await evil.says('/goal propose <script>alert("goal")</script> & more')
    await evil.says('/join <b onmouseover="alert(2)">hi</b>')
    _, _, body = await site.get(await site.link())
    assert "<script>alert" not in body and "<img src=x" not in body and "<b onmouseover" not in body
    assert "&lt;b onmouseover=&quot;alert(2)&quot;&gt;hi&lt;/b&gt;" in body  # the intro, on the roster
    assert "&lt;script&gt;alert(&quot;goal&quot;)&lt;/script&gt; &amp; more" in body
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;Mal" in body


async def test_the_roster_shows_who_is_here_and_a_private_member_by_name_only(site: Site) -> None:
    h = site.h
    await h.member("bob").says("/join Here to learn Rust")
    await h.member("bob").says("/goal propose Read a chapter a week")
    await h.member("bob").says("/reflect Chapter one was hard")
    await h.member("cleo").says("/join I like quiet")
    await h.member("cleo").says("/members private on")
    url = await site.link()
    people = {p["name"]: p for p in (await _json(site, url + "data.json"))["people"]}
    assert people["cleo"] == {"name": "cleo"}  # nothing but her name
    assert people["bob"]["intro"] == "Here to learn Rust"
    assert people["bob"]["last_30_days"] == {"proposals": 1, "votes": 0, "reflections": 1}
    _, _, body = await site.get(url)
    section = body[body.index('<section id="people">') :]
    section = section[: section.index("</section>")]
    assert "Here to learn Rust" in section and "1 · 0 · 1" in section
    assert "I like quiet" not in body and '<tr class="private"><td>cleo</td>' in section


async def test_the_roles_show_who_holds_each_and_whose_turn_is_next(site: Site) -> None:
    h = site.h
    for who in ("bob", "carol"):
        await h.member(who).says("/join")
        await h.member(who).says("/role pool wrapper join")
    await h.member("alice").says("/role rotate wrapper weekly")
    await h.member("alice").says("/role add timekeeper keeps <our> sessions on time")
    url = await site.link()
    roles = {r["name"]: r for r in (await _json(site, url + "data.json"))["roles"]}
    assert roles["wrapper"]["holder"] == "bob" and roles["wrapper"]["rotation"] == "weekly"
    assert roles["wrapper"]["next_holders"] == ["carol"] and roles["wrapper"]["pool"] == ["bob", "carol"]
    assert roles["wrapper"]["next_turn"] == "2026-03-09T09:00:00+00:00"
    assert roles["timekeeper"]["holder"] is None and roles["timekeeper"]["next_turn"] is None
    _, _, body = await site.get(url)
    row = re.search(r'<tr data-role="wrapper">.*?</tr>', body)
    assert row is not None and "<td>bob</td>" in row[0] and "then carol" in row[0]
    assert "keeps &lt;our&gt; sessions on time" in body


# The secret ------------------------------------------------------------------------------------------


async def test_the_secret_is_made_once_and_kept_in_the_database(sql_site: Site) -> None:
    await sql_site.h.member("alice").says("/goal propose Learn Rust")
    first = await sql_site.link()
    async with sql_site.h.store.read() as tx:
        kept = await tx.state("dashboard").get("secret")
    assert kept is not None and len(kept) >= 40
    second = await sql_site.link()
    async with sql_site.h.store.read() as tx:
        assert await tx.state("dashboard").get("secret") == kept
    for url in (first, second):
        status, _, body = await sql_site.get(url)
        assert status == 200 and "Learn Rust" in body
    # A server that signs with the operator's secret (PEERBOT_WEB_SECRET) judges these links forged.
    app = web.Application()
    dashboard_routes(app, sql_site.h.store, sql_site.h.clock, b"the operator's own secret")
    async with serving(app, free_socket()) as other:
        status, _, _ = await sql_site.get(first.replace(sql_site.url, other))
        assert status == 403


async def test_meetings_ahead_are_on_the_page_with_their_rsvps(site: Site) -> None:
    h = site.h
    await h.member("alice").says("/meet add daily 18:00 | Stand-up <b>")
    await h.member("alice").says("/meet add weekly fri 10:00 | Gone")
    await h.member("alice").says("/meet cancel 2")
    await h.engine.run_until(START + timedelta(minutes=1), lambda t: setattr(h.clock, "current", t))
    await h.engine.settle()
    announced = next(s.ref for s in h.chat.sent if s.text.startswith("📅"))
    await h.member("bob").reacts(announced, "✅")
    url = await site.link()
    _, _, body = await site.get(url)
    assert '<tr data-meeting="1"><td>meeting</td><td>daily 18:00</td>' in body
    assert "Stand-up &lt;b&gt;: ✅ 1, ❔ 0, ❌ 0" in body and "Gone" not in body
    data = await _json(site, url + "data.json")
    assert data["meetings"] == [
        {
            "id": 1,
            "title": "Stand-up <b>",
            "schedule": "daily 18:00",
            "next": data["meetings"][0]["next"],
            "rsvps": {"coming": 1, "maybe": 0, "not_coming": 0},
        }
    ]
    assert data["meetings"][0]["next"].startswith("2026-03-02T18:00")


# What the database counts for the page ---------------------------------------------------------------


async def test_the_page_counts_in_the_database_what_the_record_holds(sql_site: Site) -> None:
    """The page's tallies, weekly figures and reviews, read and counted for it in SQL, agree with the
    group's full record counted in Python (as `export` does): changed and withdrawn votes, a
    multiple-choice poll, 🤔 on consent polls, and reflections either side of a local Monday midnight
    in the week summer time begins."""
    h = sql_site.h
    alice, bob, cleo = h.member("alice"), h.member("bob"), h.member("cleo")
    await alice.says("/timezone Europe/Berlin")
    await alice.says("/poll create --closes 3d Tea? | yes | no | maybe")  # 1: single choice
    await alice.says("/poll create --multiple --closes 3d Snacks? | fruit | nuts")  # 2
    one, two = await poll_message(h, 1), await poll_message(h, 2)
    await bob.reacts(one, "1️⃣")
    await bob.reacts(one, "2️⃣")  # his latest counts
    await cleo.reacts(one, "3️⃣")
    await cleo.reacts(one, "2️⃣")
    await cleo.unreacts(one, "2️⃣")  # her earlier choice counts again
    await bob.reacts(two, "1️⃣")
    await bob.reacts(two, "2️⃣")
    for n, who in enumerate((bob, cleo)):
        await who.says(f"/goal propose Goal {n}: read a chapter a week")
    consent = await poll_message(h, 3)
    await bob.reacts(consent, "🤔")
    await cleo.reacts(consent, "🤔")
    await cleo.reacts(consent, "✅")  # no longer a concern
    # Sunday 29 March 2026, 23:30 in Berlin (summer time since 03:00) and, an hour later, Monday.
    for at, who in (
        (datetime(2026, 3, 29, 21, 30, tzinfo=UTC), bob),
        (datetime(2026, 3, 29, 22, 30, tzinfo=UTC), cleo),
    ):
        h.clock.current = at
        await who.says(f"/reflect What {who.user.name} learned")
    # That Monday, an anonymous poll (its voters count in no week) and one more poll.
    h.clock.current = datetime(2026, 3, 30, 9, tzinfo=UTC)
    await h.regulars("dora")
    await alice.says("/poll create --anonymous --closes 1d Honest? | yes | no")  # 5
    await alice.says("/poll create --closes 1d Coffee? | yes | no")  # 6
    for who in (h.member("dora"), bob, cleo):
        await who.whispers("/vote 5 1")
    await bob.reacts(await poll_message(h, 6), "2️⃣")
    for n in range(10):  # more reviews than the page shows in full
        h.clock.current = datetime(2026, 4, 6, 9, tzinfo=UTC) + timedelta(days=7 * n)
        await alice.says("/review start")
        await bob.says(f"/reflect q1 Intention {n}")
        await cleo.says(f"/reflect q5 Change {n}")
        await alice.says("/review summary")
    url = await sql_site.link()
    data = await _json(sql_site, url + "data.json")
    _, _, page = await sql_site.get(url)

    async with h.store.read() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        record = await load_record(tx, group)
    zone = ZoneInfo("Europe/Berlin")
    polls = {p["id"]: p for p in data["polls"]} | {g["consent"]["id"]: g["consent"] for g in data["goals"]}
    for p, t in record.polls:
        assert [o["votes"] for o in polls[p.id]["options"]] == list(t.counts), p.question
        assert polls[p.id]["voters"] == t.voters
    assert [o["votes"] for o in polls[1]["options"]] == [0, 1, 1]
    assert [o["votes"] for o in polls[2]["options"]] == [1, 1]
    assert {g["id"]: g["concerns"] for g in data["goals"]} == {1: ["bob"], 2: []}
    weeks: dict[str, tuple[int, set[str]]] = {}
    for r in record.reflections:
        count, authors = weeks.get(week_of(r.at, zone).isoformat(), (0, set()))
        weeks[week_of(r.at, zone).isoformat()] = (count + 1, authors | {r.user_key})
    shown = {w["week"]: w["reflections"] for w in data["participation"] if w["reflections"]}
    assert shown == {week: count for week, (count, _) in weeks.items()}
    assert shown["2026-03-23"] == 1 and shown["2026-03-30"] == 1  # either side of Monday midnight
    # Votes in the week their poll opened, a member counted once in a poll; anonymous polls left out.
    voted: dict[str, int] = {}
    for p, t in record.polls:
        if not p.anonymous and t.voters:
            week = week_of(p.created_at, zone).isoformat()
            voted[week] = voted.get(week, 0) + t.voters
    assert {w["week"]: w["votes"] for w in data["participation"] if w["votes"]} == voted
    assert voted == {"2026-03-02": 5, "2026-03-30": 1} and polls[5]["voters"] == 3
    members = {w["week"]: w["members"] for w in data["participation"]}
    assert members["2026-03-30"] == 2  # bob voted, cleo reflected; dora only voted anonymously
    # The page counts its weeks in the database (`voter_weeks`), data.json from every poll's count: alike.
    drawn = re.findall(
        r'data-week="([^"]+)" data-members="(\d+)" data-goals="(\d+)" data-votes="(\d+)"'
        r' data-reflections="(\d+)"',
        page,
    )
    assert drawn == [
        (w["week"], str(w["members"]), str(w["goals"]), str(w["votes"]), str(w["reflections"]))
        for w in data["participation"]
    ]
    assert ("2026-03-30", "2", "0", "1", "1") in drawn
    assert len(data["reviews"]) == 10 and all(
        len(r["action_items"]) == 1 and sum(len(q["answers"]) for q in r["questions"]) == 2
        for r in data["reviews"]
    )
    earlier = re.findall(r'<li data-review="(\d+)">[^<]*: (\d+) answers, (\d+) action items</li>', page)
    assert earlier == [("2", "2", "1"), ("1", "2", "1")]  # the two oldest, counted in the database
