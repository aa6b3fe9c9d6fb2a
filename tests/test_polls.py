"""Emoji-reaction polls: rules and engine behaviour on in-memory fakes."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from core.commands import COMMANDS, UsageError, parse_text
from core.polls import NUMBER_EMOJI, Poll, PollKind, PollReaction, PollRequest, poll_request, tally
from core.refs import MessageRef
from tests.support import START, Harness


async def open_poll(h: Harness, text: str, who: str = "alice") -> MessageRef:
    reply = await h.member(who).says(f"/poll create {text}")
    assert reply is not None and not reply.is_error, reply
    return h.chat.sent[-1].ref


def parse_poll(text: str) -> PollRequest:
    """A poll as `/poll create <text>` reads it: the command's typed arguments, then the poll's rules."""
    inv = parse_text(COMMANDS, f"poll create {text}")
    return poll_request(
        inv.text("question"),
        inv.items("option"),
        multiple=inv.flag("multiple"),
        hidden=inv.flag("hidden"),
        duration=inv.args.get("closes"),
    )


def test_options_get_number_emoji_unless_they_bring_their_own() -> None:
    request = parse_poll("Pace? | 🐢 slower | 🐇 faster | same as now")
    assert [(o.emoji, o.label) for o in request.options] == [
        ("🐢", "slower"),
        ("🐇", "faster"),
        ("3️⃣", "same as now"),
    ]
    assert request.duration == timedelta(hours=24) and not request.multiple and not request.hidden


def test_flags_set_multiple_hidden_and_closing_time() -> None:
    request = parse_poll("--multiple --hidden --closes 3d Which days? | Mon | Tue")
    assert (request.multiple, request.hidden, request.duration) == (True, True, timedelta(days=3))
    assert request.question == "Which days?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Just a question", "2 to 10 options"),
        ("Q | one", "2 to 10 options"),
        ("Q | " + " | ".join(str(i) for i in range(11)), "(got 11)"),
        (" | a | b", "Missing question"),
        ("Q" * 301 + " | a | b", "question is too long (301 characters"),
        ("Q | " + "a" * 101 + " | b", "Option 1 is too long"),
        ("Q | 👍 yes | 👍️ also yes", "same emoji"),
        ("--closes soon Q | a | b", "closes must be a duration like 30m, 2h or 3d, not 'soon'"),
        ("--closes 33d Q | a | b", "closes is too long: at most 32d"),
        ("--closes 30s Q | a | b", "closes is too short: at least 1m"),
        ("--closes", "--closes needs a value"),
        ("--loud Q | a | b", "Unknown option --loud. Known: --multiple, --hidden, --anonymous, --closes."),
    ],
)
def test_bad_polls_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_poll(text)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("Q | 👍 yes | 👍️ also yes", {"option1": "👍 yes", "option2": "👍️ also yes"}, "same emoji"),
        ("Q | " + "a" * 101 + " | b", {"option1": "a" * 101}, "Option 1 is too long (101 characters"),
        ("Q | a", {"option2": "\u200b"}, "Give 2 to 10 options (got 1)."),
        ("--closes 40d Q | a | b", {"closes": "40d"}, "closes is too long: at most 32d."),
    ],
)
async def test_a_bad_poll_is_refused_alike_typed_or_as_options(
    harness: Harness, text: str, options: dict[str, str], message: str
) -> None:
    bob = harness.member("bob")
    typed = await bob.says(f"/poll create {text}")
    structured = await bob.runs("poll create", **{"question": "Q", "option1": "a", "option2": "b", **options})
    assert typed is not None and structured is not None and typed.is_error and structured.is_error
    assert message in typed.text
    assert typed.text.splitlines()[0] == structured.text.splitlines()[0]
    assert typed.text.splitlines()[1].startswith("Usage: /poll create [--multiple] [--hidden]")
    assert structured.text.splitlines()[1].startswith("Usage: /poll create <question> <option1> <option2>")
    assert harness.chat.sent == []


async def test_a_poll_from_options_is_the_poll_typed(harness: Harness) -> None:
    await harness.regulars("bob")
    await harness.member("bob").says("/poll create --multiple --closes 2h Pace? | 🐢 slower | same")
    await harness.member("bob").runs(
        "poll create", question="Pace?", option1="🐢 slower", option2="same", multiple=True, closes="2h"
    )
    typed, structured = (s.text for s in harness.chat.sent)
    assert structured == typed.replace("Poll 1:", "Poll 2:")
    assert "pick as many as you like" in typed and "Closes 2026-03-02 11:00 UTC" in typed


def make_poll(multiple: bool = False) -> Poll:
    request = parse_poll(("--multiple " if multiple else "") + "Q | a | b | c")
    return Poll(
        1,
        1,
        PollKind.POLL,
        request.question,
        request.options,
        request.multiple,
        False,
        "k",
        "n",
        START,
        START + timedelta(days=1),
    )


def test_single_choice_counts_the_latest_present_reaction() -> None:
    poll = make_poll()
    # One row per member and option: its current state and when it last changed.
    reactions = [
        PollReaction("u1", "ann", 0, True, 1),
        PollReaction("u1", "ann", 1, True, 2),  # ann switched to b
        PollReaction("u2", "bo", 2, True, 3),
        PollReaction("u2", "bo", 0, False, 4),  # bo took back a; c stays
        PollReaction("u3", "cy", 1, True, 5),
        PollReaction("u3", "cy", 2, False, 7),  # cy chose c, then took it back: b counts again
    ]
    result = tally(poll, reactions)
    assert result.counts == (0, 2, 1) and result.voters == 3
    assert result.names[1] == ("ann", "cy")


def test_multiple_choice_counts_every_present_reaction() -> None:
    poll = make_poll(multiple=True)
    reactions = [PollReaction("u1", "a", i, True, i + 1) for i in range(3)]
    reactions.append(PollReaction("u2", "b", 0, True, 9))
    assert tally(poll, reactions).counts == (2, 1, 1)
    assert tally(poll, reactions).voters == 2


async def test_the_bot_posts_the_poll_with_its_id_and_adds_each_reaction(harness: Harness) -> None:
    reply = await harness.member("bob").says("/poll create Which day? | Monday | Thursday")
    assert reply is not None and reply.text.startswith("Poll 1 is open until 2026-03-03 09:00 UTC")
    posted = harness.chat.sent[-1]
    assert posted.text.splitlines()[:3] == ["Poll 1: Which day?", "1️⃣ Monday", "2️⃣ Thursday"]
    assert [emoji for ref, emoji in harness.chat.reactions if ref == posted.ref] == ["1️⃣", "2️⃣"]


async def test_votes_come_from_reactions_and_leave_with_them(harness: Harness) -> None:
    msg = await open_poll(harness, "Pace? | 🐢 slower | 🐇 faster")
    bob, carol, dave = (harness.member(n) for n in ("bob", "carol", "dave"))
    await bob.reacts(msg, "🐢")
    await carol.reacts(msg, "🐇")
    await dave.reacts(msg, "🐇")
    await dave.unreacts(msg, "🐇")
    await dave.reacts(msg, "👍")  # not an option
    reply = await bob.says("/poll results 1")
    assert reply is not None
    assert reply.text.splitlines()[1:] == [
        "🐢 slower  █████░░░░░ 1 (50%)",
        "🐇 faster  █████░░░░░ 1 (50%)",
        "2 voters.",
    ]


async def test_a_members_latest_choice_counts_in_a_single_choice_poll(harness: Harness) -> None:
    msg = await open_poll(harness, "Q | a | b")
    bob = harness.member("bob")
    await bob.reacts(msg, NUMBER_EMOJI[0])
    await bob.reacts(msg, NUMBER_EMOJI[1])
    assert (await harness.tally()).counts == (0, 1)


async def test_emoji_with_and_without_variation_selector_are_one_vote(harness: Harness) -> None:
    msg = await open_poll(harness, "--multiple Love it? | ❤️ yes | 👍 fine")
    await harness.member("bob").reacts(msg, "❤")  # without U+FE0F
    await harness.member("bob").reacts(msg, "❤️")
    await harness.member("carol").reacts(msg, "👍️")  # with U+FE0F
    assert (await harness.tally()).counts == (1, 1)


async def group(h: Harness):  # type: ignore[no-untyped-def]
    async with h.store.transaction() as tx:
        return await tx.groups.get(h.channel)


async def test_reactions_after_close_do_not_count_and_results_are_posted_at_close(
    harness: Harness,
) -> None:
    msg = await open_poll(harness, "--closes 1h Q | a | b", who="bob")
    await harness.member("carol").reacts(msg, "1️⃣")
    harness.clock.advance(timedelta(minutes=61))
    await harness.engine.tick()
    final = harness.chat.sent[-1]
    assert final.text.splitlines()[0] == "Poll 1 closed: Q"
    assert "1 (100%)" in final.text
    await harness.member("dave").reacts(msg, "2️⃣")
    reply = await harness.member("dave").says("/poll results 1")
    assert reply is not None and "2️⃣ b  ░░░░░░░░░░ 0 (0%)" in reply.text
    await harness.engine.tick()  # closing happens once
    assert sum(s.text.startswith("Poll 1 closed") for s in harness.chat.sent) == 1


async def test_a_poll_due_while_the_bot_was_down_closes_on_the_next_tick(harness: Harness) -> None:
    await open_poll(harness, "--closes 2h Q | a | b")
    harness.clock.advance(timedelta(days=3))  # the bot was down
    await harness.engine.tick()
    assert harness.chat.sent[-1].text.startswith("Poll 1 closed")


async def test_hidden_results_show_only_at_close(harness: Harness) -> None:
    msg = await open_poll(harness, "--hidden Q | a | b")
    await harness.member("bob").reacts(msg, "2️⃣")
    reply = await harness.member("bob").says("/poll results 1")
    assert reply is not None
    assert reply.text.splitlines()[1] == "Results are hidden until it closes; 1 person has voted."
    await harness.member("alice").says("/poll close 1")
    assert "2️⃣ b  ██████████ 1 (100%)" in harness.chat.sent[-1].text


async def test_only_the_author_or_a_facilitator_closes_early(harness: Harness) -> None:
    await open_poll(harness, "Q | a | b", who="bob")
    refused = await harness.member("carol").says("/poll close 1")
    assert refused is not None and refused.is_error and "Nothing was changed" in refused.text
    assert (await harness.member("bob").says("/poll close 1")).text == "Poll 1 is closed."  # type: ignore[union-attr]
    again = await harness.member("alice").says("/poll close 1")
    assert again is not None and "closed already" in again.text
    missing = await harness.member("alice").says("/poll close 99")
    assert missing is not None and missing.is_error and "There is no poll 99" in missing.text


async def test_pulse_asks_green_yellow_red_for_a_day(harness: Harness) -> None:
    await harness.member("bob").says("/pulse")
    posted = harness.chat.sent[-1]
    assert posted.text.startswith("Poll 1: How is the group doing?")
    assert [e for _, e in harness.chat.reactions] == ["🟢", "🟡", "🔴"]
    assert "Closes 2026-03-03 09:00 UTC" in posted.text


async def test_member_text_never_asks_for_mentions(harness: Harness) -> None:
    await open_poll(harness, "@everyone come? | <@123> yes | @room no")
    await harness.member("bob").says("/goal propose ping @here and <@&42>")
    assert harness.chat.sent and all(not s.mentions for s in harness.chat.sent)


async def test_replaying_a_reaction_stream_three_times_changes_nothing(harness: Harness) -> None:
    msg = await open_poll(harness, "--multiple Q | a | b | c")
    rng = random.Random(7)
    stream = []
    for i in range(300):
        who = harness.member(f"user{rng.randrange(20)}")
        emoji = NUMBER_EMOJI[rng.randrange(3)]
        stream.append((who, emoji, rng.random() < 0.7, f"r{i}"))
    tallies = []
    for _ in range(3):
        for who, emoji, add, event_id in stream:
            if add:
                await who.reacts(msg, emoji, event_id)
            else:
                await who.unreacts(msg, emoji, event_id)
        tallies.append(await harness.tally())
    assert tallies[0] == tallies[1] == tallies[2]
    assert sum(tallies[0].counts) > 0


async def test_one_member_toggling_fast_ends_with_the_right_tally(harness: Harness) -> None:
    msg = await open_poll(harness, "Q | a | b")
    bob = harness.member("bob")
    events = [bob.reacts(msg, "1️⃣") if i % 2 == 0 else bob.unreacts(msg, "1️⃣") for i in range(1001)]
    await asyncio.gather(*events)  # submitted together: group commit keeps their order
    assert (await harness.tally()).counts == (1, 0)
    assert harness.engine.votes.batches < 1001  # they really were grouped


async def test_help_poll_shows_the_text_form_of_every_option(harness: Harness) -> None:
    reply = await harness.member("bob").says("/help poll")
    assert reply is not None
    for flag in ("--multiple", "--hidden", "--closes <duration>", "start an option with an emoji"):
        assert flag.lower() in reply.text.lower(), flag


async def test_times_are_shown_in_the_groups_timezone(harness: Harness) -> None:
    await harness.member("alice").says("/timezone America/New_York")
    reply = await harness.member("bob").says("/poll create Q | a | b")
    assert reply is not None and reply.text.startswith("Poll 1 is open until 2026-03-03 04:00 EST.")
    assert "Closes 2026-03-03 04:00 EST." in harness.chat.sent[-1].text


async def test_reconciling_sets_votes_to_the_reactions_on_the_message(harness: Harness) -> None:
    msg = await open_poll(harness, "--multiple Q | a | b")
    bob, carol, dave = (harness.member(n).user for n in ("bob", "carol", "dave"))
    await harness.member("bob").reacts(msg, "1️⃣")
    await harness.member("carol").reacts(msg, "1️⃣")
    # While the bot was away: carol took 1️⃣ back, dave added 2️⃣ (with a variation selector).
    snapshot = {"1️⃣": [bob], "2️⃣": [dave], "👍": [carol]}
    assert await harness.engine.reconcile(msg, snapshot) == 2
    assert (await current_counts(harness)) == (1, 1)
    assert await harness.engine.reconcile(msg, snapshot) == 0  # nothing left to change
    assert await harness.engine.open_poll_messages("fake") == [msg]
    await harness.member("alice").says("/poll close 1")
    assert await harness.engine.reconcile(msg, {}) == 0  # a closed poll stays as it was counted
    assert (await current_counts(harness)) == (1, 1)
    assert await harness.engine.open_poll_messages("fake") == []


async def current_counts(h: Harness) -> tuple[int, ...]:
    return (await h.tally()).counts
