"""Anonymous polls and reflections: votes cast privately, counted, and tied to nobody once closed."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.sql.schema import metadata
from core.ballots import HASHED
from core.events import CommandInvoked, Reply
from core.polls import PollKind, parse_vote_button, vote_button
from core.refs import ChannelRef, MessageRef
from tests.conftest import EmptyDatabase, migrated_store
from tests.support import Harness, peerbot

VOTERS = ("vera", "walt", "xena", "yuri", "zoe")


async def open_anonymous(h: Harness, text: str = "--anonymous Pace? | slower | same | faster") -> int:
    reply = await h.member("alice").says(f"/poll create {text}")
    assert reply is not None and not reply.is_error, reply
    found = re.search(r"poll (\d+)", reply.text)
    assert found is not None
    return int(found[1])


async def test_an_anonymous_poll_has_buttons_and_no_reactions_where_the_platform_has_buttons() -> None:
    h = Harness()
    poll = await open_anonymous(h)
    message = h.chat.sent[-1]
    assert message.text.startswith(f"Anonymous poll {poll}: Pace?")
    assert "press an option's button below" in message.text and "React" not in message.text
    assert [(b.custom_id, b.label) for b in message.buttons] == [
        ("vote:1:1", "1. 1️⃣ slower"),
        ("vote:1:2", "2. 2️⃣ same"),
        ("vote:1:3", "3. 3️⃣ faster"),
    ]
    assert h.chat.reactions == []  # a reaction would show everyone who voted what


async def test_where_commands_are_typed_the_poll_says_how_to_vote_privately() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    await open_anonymous(h)
    assert "write /vote 1 <number> to me directly" in h.chat.sent[-2].text
    assert h.chat.reactions == []


async def in_the_channel(h: Harness, name: str, text: str) -> tuple[MessageRef, Reply | None]:
    """A member writes a command in the group's channel, as a message everyone there reads."""
    event_id = h.next_event_id()
    said = MessageRef(h.channel, f"m-{event_id}")
    reply = await h.engine.handle(
        CommandInvoked(event_id, h.channel, h.member(name).user, text, message=said)
    )
    await h.engine.settle()
    return said, reply


def test_a_vote_button_id_reads_back_and_nothing_else_does() -> None:
    assert parse_vote_button(vote_button(12, 3)) == (12, 3)
    for other in ("vote:1", "vote:a:1", "vote:1:b", "poll:1:1", "vote:1:1:1", "vote:１:1", "", "vote::"):
        assert parse_vote_button(other) is None, other


async def test_a_vote_counts_once_the_same_again_takes_it_back_and_a_new_one_replaces_it() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    vera = h.member("vera")
    first = await vera.whispers(f"/vote {poll} 2")
    assert first is not None and first.private and "counted: 2. 2️⃣ same" in first.text
    assert (await h.tally(poll)).counts == (0, 1, 0)
    assert (await h.tally(poll)).counts == (0, 1, 0)
    await vera.whispers(f"/vote {poll} 3")  # one choice: the new one replaces the last
    assert (await h.tally(poll)).counts == (0, 0, 1)
    back = await vera.whispers(f"/vote {poll} 3")
    assert back is not None and "taken back" in back.text
    assert (await h.tally(poll)).counts == (0, 0, 0) and (await h.tally(poll)).voters == 0


async def test_in_a_multiple_choice_poll_votes_add_up() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h, "--anonymous --multiple Days? | Mon | Wed | Fri")
    for option in (1, 3):
        await h.member("walt").whispers(f"/vote {poll} {option}")
    assert (await h.tally(poll)).counts == (1, 0, 1) and (await h.tally(poll)).voters == 1


async def test_a_button_press_in_the_channel_votes_and_is_answered_to_the_member_alone() -> None:
    h = Harness()  # Discord-like: commands are answered in place, privately when asked
    poll = await open_anonymous(h)
    reply = await h.member("yuri").runs("vote", poll=str(poll), option="1")
    assert reply is not None and reply.private and "counted" in reply.text
    assert (await h.tally(poll)).counts == (1, 0, 0)


async def test_a_reaction_on_an_anonymous_poll_is_no_vote_and_reconciling_leaves_its_votes_alone() -> None:
    """Members can still react by hand where the platform lets them: that would be a vote in the open.
    And the reactions on its message (none) are not its votes, after a gap in the gateway either."""
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    message = h.chat.sent[-1].ref
    assert message is not None
    await h.member("vera").runs("vote", poll=str(poll), option="2")
    await h.member("walt").reacts(message, "1️⃣")
    assert (await h.tally(poll)).counts == (0, 1, 0) and (await h.tally(poll)).voters == 1
    assert await h.engine.open_poll_messages(h.chat.platform) == []
    assert await h.engine.reconcile(message, {"1️⃣": [h.member("walt").user]}) == 0
    assert await h.engine.reconcile(message, {}) == 0
    assert (await h.tally(poll)).counts == (0, 1, 0)


async def test_results_show_no_counts_below_three_voters_so_far_or_at_the_close() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    for name in ("vera", "walt"):
        await h.member(name).whispers(f"/vote {poll} 1")
    so_far = await h.member("alice").says(f"/poll results {poll}")
    assert so_far is not None and so_far.text.endswith("Too few votes to show without revealing who voted.")
    await h.member("xena").whispers(f"/vote {poll} 3")
    shown = await h.member("alice").says(f"/poll results {poll}")
    assert shown is not None and "2 (67%)" in shown.text and "3 voters." in shown.text

    few = await open_anonymous(h, "--anonymous --closes 1h Tea? | yes | no")
    await h.member("vera").whispers(f"/vote {few} 1")
    h.clock.advance(timedelta(hours=2))
    await h.engine.tick()
    closed = h.chat.sent[-1].text
    assert closed.startswith(f"Poll {few} closed: Tea?") and "Too few votes" in closed and "1 (" not in closed


async def test_votes_are_refused_clearly_and_change_nothing() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h, "--anonymous --closes 1h Tea? | yes | no")
    plain = h.chat.sent[-1].ref
    await h.member("alice").says("/poll create Coffee? | yes | no")
    vera = h.member("vera")
    cases = {
        f"/vote {poll} 3": f"Poll {poll} has options 1 to 2.",
        f"/vote {poll} 0": f"Poll {poll} has options 1 to 2.",
        f"/vote {poll + 1} 1": f"Poll {poll + 1} is not anonymous: vote by reacting on its message.",
        "/vote 99 1": "There is no poll 99 in a group whose roster you are on.",
    }
    for text, answer in cases.items():
        reply = await vera.whispers(text)
        assert reply is not None and reply.is_error and reply.text.startswith(answer), (text, reply)
    stranger = await h.member("stranger").whispers(f"/vote {poll} 1")
    assert stranger is not None and stranger.is_error and "roster" in stranger.text
    h.clock.advance(timedelta(hours=2))
    await h.engine.tick()
    late = await vera.whispers(f"/vote {poll} 1")
    assert (
        late is not None and late.is_error and late.text == f"Poll {poll} is closed: it takes no more votes."
    )
    assert (await h.tally(poll)).voters == 0 and plain is not None


async def test_a_vote_written_where_the_group_reads_it_is_removed_and_not_counted() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    said, reply = await in_the_channel(h, "vera", f"vote {poll} 2")
    assert reply is not None and reply.is_error and "private" in reply.text
    assert "2" not in reply.text.replace("/vote", "")  # the notice repeats nothing of what was said
    assert h.chat.deleted == [said]
    assert h.chat.sent[-1].text == reply.text and h.chat.sent[-1].reply_to is None
    # The member is written to privately, which opens a direct conversation where there was none.
    assert h.chat.direct[-1] == (
        h.member("vera").user,
        "Write /vote here: only you and the bot read this conversation.",
    )
    assert (await h.tally(poll)).voters == 0


async def test_voting_is_no_activity_and_its_event_is_recorded_under_a_hash() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        before = {m.key: m.last_active_at for m in await tx.members.roster(group.id)}
    event_id = h.next_event_id()
    dm = ChannelRef(h.chat.platform, "dm-walt")
    await h.engine.handle(CommandInvoked(event_id, dm, h.member("walt").user, f"vote {poll} 1", direct=True))
    async with h.store.transaction() as tx:
        after = {m.key: m.last_active_at for m in await tx.members.roster(group.id)}
        assert after == before
        assert not await tx.events.claim(h.chat.platform, "sealed-" + _digest(h, event_id), h.clock.now())
        assert await tx.events.claim(h.chat.platform, event_id, h.clock.now())  # the raw id: never recorded
    # The same event again (a platform's replay) is applied once: the vote is not taken back.
    await h.engine.handle(CommandInvoked(event_id, dm, h.member("walt").user, f"vote {poll} 1", direct=True))
    assert (await h.tally(poll)).voters == 1


def _digest(h: Harness, event_id: str) -> str:
    return hashlib.sha256(f"{h.chat.platform}:{event_id}".encode()).hexdigest()[:40]


async def test_forget_me_takes_back_votes_in_open_anonymous_polls() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    await h.member("zoe").whispers(f"/vote {poll} 1")
    await h.member("vera").whispers(f"/vote {poll} 1")
    done = await h.member("zoe").whispers("/forget-me confirm")
    assert done is not None and "Your votes in 1 open anonymous poll are taken back." in done.text
    assert (await h.tally(poll)).voters == 1


async def test_an_anonymous_pulse_is_a_pulse_whose_votes_are_private() -> None:
    h = Harness()
    reply = await h.member("alice").says("/pulse --anonymous")
    assert reply is not None and reply.text.startswith("Anonymous pulse check 1 is open")
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        pulse = await tx.polls.get(group.id, 1)
        assert pulse is not None and pulse.anonymous and pulse.kind is PollKind.PULSE
    assert [b.label for b in h.chat.sent[-1].buttons] == [
        "1. 🟢 going well",
        "2. 🟡 so-so, something needs attention",
        "3. 🔴 stuck or struggling",
    ]


# Reflections --------------------------------------------------------------------------------------


async def test_an_anonymous_answer_written_privately_goes_to_the_open_review_without_its_author() -> None:
    h = Harness()
    await h.regulars("vera", "walt")
    await h.member("alice").says("/review start")
    kept = await h.member("vera").whispers("/reflect --anonymous q2 The pace is too fast for me")
    assert kept is not None and kept.private and "without your name" in kept.text
    await h.member("walt").says("/reflect q1 We met every week")
    await h.member("alice").says("/review summary")
    summary = _summary(h, 1)
    assert "Took part: walt." in summary and "vera" not in summary
    assert "  - anonymous: The pace is too fast for me" in summary
    assert "Shared anonymously: 1 answer." in summary


def _summary(h: Harness, review: int) -> str:
    return next(s.text for s in h.chat.sent if s.text.startswith(f"Action review {review} summary"))


async def test_a_member_of_several_groups_names_the_one_with_group() -> None:
    h = Harness()
    study = ChannelRef(h.chat.platform, "study", "#study")
    for channel in (h.channel, study):
        await h.member("vera").says("/reflect hello", channel)
        await h.member("alice").says("/review start", channel)
    unclear = await h.member("vera").whispers("/reflect --anonymous q1 Too fast")
    assert unclear is not None and unclear.is_error and "--group" in unclear.text
    kept = await h.member("vera").whispers("/reflect --anonymous --group study q1 Too fast")
    assert kept is not None and not kept.is_error
    unknown = await h.member("vera").whispers("/reflect --anonymous --group nowhere q1 Too fast")
    assert unknown is not None and unknown.is_error and "no group called nowhere" in unknown.text
    await h.member("alice").says("/review summary", study)
    assert "anonymous: Too fast" in _summary(h, 2)


async def test_an_anonymous_reflection_written_in_a_typed_channel_is_withheld() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    await h.member("alice").says("/review start")
    said, _ = await in_the_channel(h, "vera", "reflect --anonymous q1 secret")
    assert h.chat.deleted == [said]
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
        assert group is not None
        assert await tx.reviews.reflections(group.id) == []


# What the database keeps -------------------------------------------------------------------------


async def _dump(h: Harness) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, each keyed hash of a voter replaced by its order of appearance."""
    store: Any = h.store
    names: dict[str, str] = {}
    dump: dict[str, list[tuple[Any, ...]]] = {}
    async with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = []
            for row in await conn.execute(select(table)):
                values = []
                for value in row:
                    if isinstance(value, str) and value.startswith(HASHED):
                        value = names.setdefault(value, f"voter{len(names) + 1}")
                    values.append(value)
                rows.append(tuple(values))
            dump[table.name] = sorted(rows, key=repr)
    return dump


async def _vote_and_close(h: Harness, voters: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    h.chat.interactive_replies = False  # answers go through the outbox, where they could linger
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h, "--anonymous --closes 1h Pace? | slower | same | faster")
    for name, option in zip(voters, (1, 2, 2, 3), strict=False):
        await h.member(name).whispers(f"/vote {poll} {option}")
    await h.member(voters[0]).whispers(f"/vote {poll} 1")  # taken back
    await h.member(voters[0]).whispers(f"/vote {poll} 3")
    h.chat.down = True  # the last confirmation is still queued when the poll closes
    await h.member(voters[1]).whispers(f"/vote {poll} 2")  # taken back...
    await h.member(voters[1]).whispers(f"/vote {poll} 2")  # ... and cast again
    h.clock.advance(timedelta(hours=2))
    await h.engine.tick()
    h.chat.down = False
    h.clock.advance(timedelta(minutes=10))  # past the retry of the results
    await h.engine.tick()
    assert h.chat.sent[-1].text.startswith(f"Poll {poll} closed: Pace?")
    assert "3 voters." in h.chat.sent[-1].text
    return await _dump(h)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_after_the_close_nothing_in_the_database_tells_who_voted(
    kind: str, empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    """Two sets of three out of five members vote the same way, each in a database of its own: once the
    polls close, the two databases are the same, row for row, so nothing in them ties a member to a
    vote, nor even to having voted."""
    dumps = []
    for n, voters in enumerate((("vera", "walt", "xena"), ("zoe", "yuri", "walt"))):
        async with empty_database(kind) as url:
            if kind == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp_path / f'run{n}.db'}"
            async with migrated_store(url) as store:
                dumps.append(await _vote_and_close(Harness(store=store), voters))
    first, second = dumps
    assert first["poll_secrets"] == [] and first["poll_reactions"]
    assert first["outbox"] == []  # the confirmation still queued at the close went with it
    assert first == second


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_bot_at_debug_logs_nothing_of_who_voted(
    kind: str, empty_database: EmptyDatabase, tmp_path: Path
) -> None:
    """The console, logging at DEBUG, on each database: members who only vote privately are named in no
    log line, and the export after the close shows counts only."""
    (tmp_path / "config.yaml").write_text(
        "logging:\n  level: DEBUG\nconsole:\n  facilitators: [alice]\n  export_dir: data/exports\n"
    )
    script = "\n".join(
        [
            "alice: /pulse --anonymous",
            *(f"@{name}: /vote 1 {option}" for name, option in (("vera", 1), ("walt", 2), ("xena", 2))),
            "@xena: /vote 1 3",
            "@yuri: /vote 1 1",  # on no roster: refused
            ":advance 25h",
            "alice: /export json",
        ]
    )
    async with empty_database(kind) as url:
        env = {"PEERBOT_DATABASE_URL": url, "PEERBOT_FAKE_TIME": "2026-03-02T09:00:00+00:00"}
        # Voters on the roster from the start, who say nothing but their votes.
        joins = "\n".join(f":join {name}" for name in ("vera", "walt", "xena"))
        result = peerbot(
            "console", "--config", "config.yaml", cwd=tmp_path, env=env, stdin=f"{joins}\n{script}\n"
        )
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr  # it did log at DEBUG
    for name in ("vera", "walt", "xena", "yuri"):
        assert name not in result.stderr.casefold()
    assert "Poll 1 closed: How is the group doing?" in result.stdout and "3 voters." in result.stdout
    (export,) = (tmp_path / "data" / "exports").glob("*.json")
    poll = json.loads(export.read_text())["polls"][0]
    assert poll["anonymous"] and poll["voters"] == 3
    assert [o["votes"] for o in poll["options"]] == [1, 1, 1]
    assert not any(
        name in export.read_text() for name in ("walt", "yuri")
    )  # no voter named but on the roster


async def test_pending_lists_an_anonymous_poll_until_the_member_votes_privately() -> None:
    h = Harness()
    await h.regulars(*VOTERS)
    poll = await open_anonymous(h)
    before = await h.member("vera").whispers("/pending")
    assert before is not None and f"Vote privately: /vote {poll} <number> (1. 1️⃣, 2. 2️⃣, 3. 3️⃣)" in before.text
    await h.member("vera").whispers(f"/vote {poll} 2")
    after = await h.member("vera").whispers("/pending")
    assert after is not None and f"Anonymous poll {poll}" not in after.text and "Pace?" not in after.text
    other = await h.member("walt").whispers("/pending")
    assert other is not None and "Pace?" in other.text


async def test_an_anonymous_concern_is_written_privately_and_withheld_where_the_group_reads_it() -> None:
    h = Harness()
    h.chat.interactive_replies = False
    study = ChannelRef(h.chat.platform, "study", "#study")
    for channel in (h.channel, study):  # vera is in two groups
        await h.member("vera").says("/reflect hello", channel)
    await h.member("bob").says("/goal propose Read a chapter a week")
    said, _ = await in_the_channel(h, "vera", "concern --anonymous 1 Too fast")
    assert h.chat.deleted == [said]
    kept = await h.member("vera").whispers("/concern --anonymous 1 Too fast for me")
    assert kept is not None and not kept.is_error and "without your name" in kept.text
    heard = [s.text for s in h.chat.sent if s.text.startswith("A concern about goal 1")]
    assert heard == ["A concern about goal 1: Concern 1 (anonymous): Too fast for me"]
