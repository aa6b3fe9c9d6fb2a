"""The export keeps a hidden poll's counts secret until it closes, and its CSV is inert in spreadsheets."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.export import inert, load_record, render_digest
from core.refs import MessageRef
from tests.support import START, Harness


async def open_poll(h: Harness, text: str, who: str = "alice") -> MessageRef:
    reply = await h.member(who).says(f"/poll create {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


async def export(h: Harness, fmt: str) -> str:
    reply = await h.member("bob").says(f"/export {fmt}")
    assert reply is not None and not reply.is_error and reply.file is not None, reply
    return reply.file.data.decode("utf-8")


@pytest.fixture
async def hidden_poll(harness: Harness) -> Harness:
    """A hidden poll where bob and carol picked 🐇, dave 🐢; and an open poll that is not hidden."""
    hidden = await open_poll(harness, "--hidden Pace? | 🐢 slower | 🐇 faster")
    for who, emoji in (("bob", "🐇"), ("carol", "🐇"), ("dave", "🐢")):
        await harness.member(who).reacts(hidden, emoji)
    shown = await open_poll(harness, "Day? | Monday | Friday")
    await harness.member("bob").reacts(shown, "2️⃣")
    return harness


async def test_json_shows_who_many_voted_on_a_hidden_poll_but_not_the_counts(hidden_poll: Harness) -> None:
    polls = json.loads(await export(hidden_poll, "json"))["polls"]
    assert polls[0]["hidden"] is True and polls[0]["voters"] == 3
    assert polls[0]["options"] == [{"emoji": "🐢", "label": "slower"}, {"emoji": "🐇", "label": "faster"}]
    assert [o["votes"] for o in polls[1]["options"]] == [0, 1]  # not hidden: counted as before


async def test_markdown_and_csv_do_not_show_a_hidden_polls_counts(hidden_poll: Harness) -> None:
    md = await export(hidden_poll, "md")
    line = next(x for x in md.splitlines() if x.startswith("- Poll 1"))
    assert line == "- Poll 1 (open, 3 voters): Pace? — 🐢 slower, 🐇 faster (results hidden until it closes)"
    rows = list(csv.reader(io.StringIO(await export(hidden_poll, "csv"))))
    poll = next(r for r in rows if r[:2] == ["poll", "1"])
    assert poll[6] == "3 voted; results hidden until it closes"
    assert "faster=2" not in " ".join(" ".join(r) for r in rows)
    assert next(r for r in rows if r[:2] == ["poll", "2"])[6] == "Monday=0; Friday=1"


async def test_once_closed_a_hidden_poll_is_exported_with_its_counts(hidden_poll: Harness) -> None:
    await hidden_poll.member("alice").says("/poll close 1")
    polls = json.loads(await export(hidden_poll, "json"))["polls"]
    assert [o["votes"] for o in polls[0]["options"]] == [1, 2]
    assert "🐢 slower: 1, 🐇 faster: 2" in await export(hidden_poll, "md")


async def test_the_digest_tells_no_hidden_counts(hidden_poll: Harness) -> None:
    async with hidden_poll.store.transaction() as tx:
        group = await tx.groups.get(hidden_poll.channel)
        assert group is not None
        record = await load_record(tx, group)
    digest = render_digest(record, START, [])
    assert "Pace?" not in digest and "faster" not in digest


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_that_a_spreadsheet_would_run_is_made_text(start: str) -> None:
    assert inert(f"{start}1+1") == f"'{start}1+1"
    assert inert(f"a{start}") == f"a{start}"
    assert inert(3) == 3


async def test_csv_export_neutralises_formulas_in_texts_and_names(harness: Harness) -> None:
    evil = harness.member("=cmd|' /C calc'!A0")  # a display name chosen to run in a spreadsheet
    await evil.says('/goal propose =HYPERLINK("http://evil.example","click")')
    await evil.says("/reflect +1 for pairing")
    await evil.says("/poll create @question | -one | =two")
    rows = list(csv.reader(io.StringIO(await export(harness, "csv"))))
    goal = next(r for r in rows if r[0] == "goal")
    assert goal[3] == "'=cmd|' /C calc'!A0"
    assert goal[4] == '\'=HYPERLINK("http://evil.example","click")'
    reflection = next(r for r in rows if r[0] == "reflection")
    assert reflection[4] == "'+1 for pairing"
    poll = next(r for r in rows if r[0] == "poll" and r[4].endswith("question"))
    assert poll[4] == "'@question" and poll[6] == "'-one=0; =two=0"
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
