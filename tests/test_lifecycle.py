"""Core rules of the lifecycle and the command surface, on in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

from core.commands import COMMANDS
from core.lifecycle import Phase
from tests.support import Harness


async def phase_of(h: Harness) -> Phase:
    async with h.store.transaction() as tx:
        group = await tx.groups.get(h.channel)
    assert group is not None
    return group.phase


async def test_a_group_starts_in_convening_on_first_use(harness: Harness) -> None:
    reply = await harness.member("bob").says("/status")
    assert reply is not None and not reply.is_error
    assert reply.text.startswith("Phase: Convening, since 2026-03-02 09:00 UTC")
    assert await phase_of(harness) is Phase.CONVENING


async def test_a_facilitator_moves_the_group_and_the_move_is_recorded(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/status")
    harness.clock.advance(timedelta(hours=3))
    reply = await alice.says("/phase set Organizing we know why we are here")
    assert reply is not None and not reply.is_error
    assert "from Convening to Organizing (we know why we are here)" in reply.text
    assert "/goal propose" in reply.text
    assert await phase_of(harness) is Phase.ORGANIZING
    history = await alice.says("/phase history")
    assert history is not None
    assert history.text.splitlines()[1:] == [
        "2026-03-02 09:00 UTC  Convening by peerbot: group started",
        "2026-03-02 12:00 UTC  Convening → Organizing by alice: we know why we are here",
    ]


async def test_status_says_since_when(harness: Harness) -> None:
    alice = harness.member("alice")
    await alice.says("/phase set cooperating")
    harness.clock.advance(timedelta(days=2, hours=1))
    reply = await alice.says("/status")
    assert reply is not None
    assert reply.text.splitlines()[0] == "Phase: Cooperating, since 2026-03-02 09:00 UTC (2 days)."


async def test_phases_may_come_in_any_order_but_not_twice_in_a_row(harness: Harness) -> None:
    alice = harness.member("alice")
    for phase in ("assessing", "CONVENING", "changing", "organizing"):
        reply = await alice.says(f"/phase set {phase}")
        assert reply is not None and not reply.is_error, reply
    assert await phase_of(harness) is Phase.ORGANIZING
    again = await alice.says("/phase set organizing")
    assert again is not None and "already in Organizing" in again.text


async def test_a_member_who_does_not_facilitate_is_refused_and_nothing_changes(
    harness: Harness,
) -> None:
    await harness.member("bob").says("/status")
    reply = await harness.member("bob").says("/phase set changing")
    assert reply is not None and reply.is_error
    assert "only facilitators" in reply.text and "Nothing was changed" in reply.text
    assert await phase_of(harness) is Phase.CONVENING
    async with harness.store.transaction() as tx:
        assert len(await tx.groups.phase_history(1, 10)) == 1


async def test_unknown_phase_gets_usage_listing_the_phases(harness: Harness) -> None:
    await harness.member("alice").says("/status")
    reply = await harness.member("alice").says("/phase set nirvana")
    assert reply is not None and reply.is_error
    assert "convening, organizing, cooperating, assessing, changing" in reply.text
    assert "Usage: /phase set <phase> [reason...]" in reply.text
    assert await phase_of(harness) is Phase.CONVENING


async def test_unknown_command_lists_the_commands(harness: Harness) -> None:
    reply = await harness.member("bob").says("/dance")
    assert reply is not None and reply.is_error
    assert reply.text == (
        "Unknown command 'dance'. Commands: help, status, pending, phase, goal, concern, poll, pulse, vote,"
        " nudge, timezone, quiet-hours, auto, meet, cadence, review, reflect, join, leave, members, welcome,"
        " buddy, remind, radar, patterns, role, wrap, export, dashboard, forget-me."
    )


async def test_group_command_without_subcommand_lists_its_subcommands(harness: Harness) -> None:
    reply = await harness.member("bob").says("/phase")
    assert reply is not None and reply.is_error
    assert reply.text == "phase needs one of: show, set, history."
    reply = await harness.member("bob").says("/phase jump")
    assert reply is not None and "Unknown phase command 'jump'" in reply.text


async def test_missing_argument_gets_usage(harness: Harness) -> None:
    await harness.member("alice").says("/status")
    reply = await harness.member("alice").says("/phase set")
    assert reply is not None and reply.is_error
    assert reply.text.startswith("Missing phase:")
    assert await phase_of(harness) is Phase.CONVENING


async def test_ten_thousand_character_argument_is_refused(harness: Harness) -> None:
    await harness.member("alice").says("/status")
    reply = await harness.member("alice").says("/phase set organizing " + "x" * 10_000)
    assert reply is not None and reply.is_error
    assert "reason is too long (10000 characters, at most 300)" in reply.text
    assert await phase_of(harness) is Phase.CONVENING


async def test_help_lists_every_command_with_one_line_each(harness: Harness) -> None:
    reply = await harness.member("bob").says("/help")
    assert reply is not None
    lines = reply.text.splitlines()
    for spec in COMMANDS:
        assert (
            sum(line.startswith(f"/{spec.name} ") or line.startswith(f"/{spec.name}\u0020") for line in lines)
            == 1
        ), spec.name
    assert len(lines) == len(COMMANDS) + 2


async def test_help_for_one_command_shows_its_usage(harness: Harness) -> None:
    reply = await harness.member("bob").says("/help phase set")
    assert reply is not None
    assert reply.text.splitlines()[0] == "Usage: /phase set <phase> [reason...]"
    assert "Facilitators only." in reply.text
    grouped = await harness.member("bob").says("/help phase")
    assert grouped is not None and len(grouped.text.splitlines()) == 4
    assert grouped.text.splitlines()[-1].startswith("Phases: convening, organizing")
    unknown = await harness.member("bob").says("/help fly")
    assert unknown is not None and unknown.is_error


async def test_the_same_event_is_applied_once(harness: Harness) -> None:
    from core.events import CommandInvoked

    alice = harness.member("alice")
    event = CommandInvoked("dup-1", harness.channel, alice.user, "phase set organizing")
    first = await harness.engine.handle(event)
    second = await harness.engine.handle(event)
    assert first is not None and second is None
    async with harness.store.transaction() as tx:
        assert len(await tx.groups.phase_history(1, 10)) == 2


async def test_structured_options_take_the_same_path(harness: Harness) -> None:
    alice = harness.member("alice")
    reply = await alice.runs("phase set", phase="ASSESSING", reason="mid-term")
    assert reply is not None and not reply.is_error
    assert await phase_of(harness) is Phase.ASSESSING
    bad = await alice.runs("phase set", phase="assessing", colour="red")
    assert bad is not None and bad.is_error and "Unknown option 'colour'" in bad.text


async def test_each_channel_is_its_own_group(harness: Harness) -> None:
    from core.refs import ChannelRef

    alice = harness.member("alice")
    study = ChannelRef("fake", "study", "#study")
    await alice.says("/phase set cooperating", channel=study)
    reply = await alice.says("/status")
    assert reply is not None and reply.text.startswith("Phase: Convening")
    in_study = await alice.says("/status", channel=study)
    assert in_study is not None and in_study.text.startswith("Phase: Cooperating")
