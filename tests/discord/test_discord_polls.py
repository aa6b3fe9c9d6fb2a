"""Goals by consent and reaction polls on Discord, end to end through the real discord.py client."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from adapters.sql.schema import processed_events
from core.events import ReactionAdded, ReactionRemoved
from core.outbox import PostState
from tests.fake_discord.scene import DiscordScene, Member


def reactions_received(scene: DiscordScene) -> int:
    return sum(isinstance(e, ReactionAdded | ReactionRemoved) for e in scene.received)


async def votes_applied(scene: DiscordScene, count: int) -> None:
    assert scene.engine is not None
    await scene.engine.until(lambda: reactions_received(scene) >= count)


async def results(scene: DiscordScene, poll_id: int) -> str:
    answer = await scene.alice.runs("/poll results", id=poll_id)
    return answer.content


async def test_a_goal_is_proposed_voted_on_by_reactions_and_accepted(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    fake = scene.fake
    assert scene.engine is not None
    answer = await scene.bob.runs("/goal propose", text="Learn Rust together")
    assert answer.content.startswith("Goal 1 proposed. React on poll 1: ✅ agree, 🤔 concerns, ⛔ block.")
    assert not answer.ephemeral
    (poll,) = fake.sent_messages(scene.channel)
    assert poll["content"].startswith("Poll 1: Goal 1: Learn Rust together (proposed by Bob).")
    assert fake.bot_reactions(poll) == ["✅", "🤔", "⛔"]

    scene.alice.reacts(poll, "✅")
    scene.carol.reacts(poll, "✅")
    scene.bob.reacts(poll, "⛔")
    scene.bob.unreacts(poll, "⛔")  # bob takes his block back
    scene.bob.reacts(poll, "🤔")  # the last of the three on the roster: decided at once
    await votes_applied(scene, 5)
    assert "✅" in await results(scene, 1)

    scene.clock.advance(timedelta(hours=48))
    await scene.engine.engine.tick()
    assert fake.sent_messages(scene.channel)[-1]["content"].startswith(
        "Goal 1 accepted: Learn Rust together."
    )
    outcome = fake.sent_messages(fake.thread_from(poll))[-1]  # the decision, in the poll's thread
    assert outcome["content"].split("\n")[0] == (
        "Goal 1 accepted by consent: Learn Rust together (✅ 2, 🤔 1, ⛔ 0). It is on the roadmap now."
    )
    assert outcome["content"].split("\n")[1] == "Decided early: all 3 members on the roster have voted."
    assert "Suggestion: the group has a goal it agreed on." in outcome["content"]  # phase advice
    roadmap = await scene.bob.runs("/goal list")
    assert "Learn Rust together" in roadmap.content


async def test_a_block_by_reaction_blocks_the_goal(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Write a compiler in a week")
    (poll,) = scene.fake.sent_messages(scene.channel)
    for member in (scene.alice, scene.bob):
        member.reacts(poll, "✅")
    scene.carol.reacts(poll, "⛔")
    await votes_applied(scene, 3)
    scene.clock.advance(timedelta(hours=48))
    await scene.engine.engine.tick()
    outcome = scene.fake.sent_messages(scene.fake.thread_from(poll))[-1]["content"]
    assert outcome.startswith("Goal 1 is blocked")
    assert (
        scene.fake.sent_messages(scene.channel)[-1]["content"]
        == "Goal 1 blocked: Write a compiler in a week."
    )


async def test_a_poll_is_created_from_slash_command_options(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    answer = await scene.bob.runs(
        "/poll create", question="What next?", option1="Rust", option2="🐹 Go", option3="Zig", multiple=True
    )
    assert answer.content == "Poll 1 is open until 2026-03-03 09:00 UTC. React on it to vote."
    (poll,) = scene.fake.sent_messages(scene.channel)
    assert poll["content"].splitlines() == [
        "Poll 1: What next?",
        "1️⃣ Rust",
        "🐹 Go",
        "3️⃣ Zig",
        "React to vote (pick as many as you like). Closes 2026-03-03 09:00 UTC.",
    ]
    assert scene.fake.bot_reactions(poll) == ["1️⃣", "🐹", "3️⃣"]
    scene.alice.reacts(poll, "1️⃣")
    scene.alice.reacts(poll, "3️⃣")  # multiple: both count
    await votes_applied(scene, 2)
    text = await results(scene, 1)
    assert "1️⃣ Rust  █████░░░░░ 1 (50%)" in text and "3️⃣ Zig  █████░░░░░ 1 (50%)" in text
    assert text.endswith("1 voter.")


async def test_bad_poll_options_get_the_usage_in_options_and_post_nothing(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    answer = await scene.bob.runs(
        "/poll create", question="Tea?", option1="🍵 tea", option2="🍵 more tea", hidden=True, closes="40d"
    )
    assert answer.ephemeral
    assert answer.content == (
        "closes is too long: at most 32d.\n"
        "Usage: /poll create <question> <option1> <option2> [option3…option10] [multiple] [hidden]"
        " [anonymous] [closes]"
    )
    same = await scene.bob.runs("/poll create", question="Tea?", option1="🍵 tea", option2="🍵 more tea")
    assert same.ephemeral and same.content.startswith("Two options use the same emoji")
    assert scene.fake.sent_messages(scene.channel) == []


async def test_votes_in_a_burst_cut_by_a_gateway_drop_count_exactly_once(scene: DiscordScene) -> None:
    """Twelve members add a vote and some take it back, while the gateway connection is cut and
    RESUMEd; the gateway also delivers a few events a second time. Every vote counts once."""
    fake = scene.fake
    members = [scene.alice, scene.bob, scene.carol]
    members += [Member(scene, fake.add_member(scene.guild, f"member{i}")) for i in range(9)]
    await scene.start_bot()
    assert scene.engine is not None
    await scene.alice.runs(
        "/poll create", question="What next?", option1="Rust", option2="Go", option3="Zig", multiple=True
    )
    (poll,) = fake.sent_messages(scene.channel)
    options = fake.bot_reactions(poll)
    assert len(options) == 3

    burst: list[tuple[Member, str, bool]] = []
    for i, member in enumerate(members):
        burst.append((member, options[i % 3], True))
        burst.append((member, options[(i + 1) % 3], True))
        if i % 4 == 0:  # a third of them change their mind about the first choice
            burst.append((member, options[i % 3], False))
    fake.resume_overlap = 6
    cut_at = len(burst) // 2
    for index, (member, emoji, add) in enumerate(burst):
        if index == cut_at:
            await votes_applied(scene, cut_at - 4)
            fake.drop_gateway()
        (member.reacts if add else member.unreacts)(poll, emoji)
    await fake.until(lambda: len(fake.resumes) == 1)
    await votes_applied(scene, len(burst))

    expected = {emoji: 0 for emoji in options}
    present: dict[tuple[str, str], bool] = {}
    for member, emoji, add in burst:
        present[(member.id, emoji)] = add
    for (_, emoji), on in present.items():
        expected[emoji] += on
    assert reactions_received(scene) > len(burst)  # some events did arrive twice
    text = await results(scene, 1)
    for emoji, label in zip(options, ("Rust", "Go", "Zig"), strict=True):
        line = next(line for line in text.splitlines() if line.startswith(f"{emoji} {label}"))
        assert f" {expected[emoji]} (" in line, (line, expected)
    assert len(fake.identifies) == 1
    # Replays come in order, so counts alone would survive double application; the store shows
    # that each add and remove was applied once, under its gateway-derived id.
    assert scene.store is not None
    async with scene.store.engine.connect() as conn:
        applied = (
            (
                await conn.execute(
                    select(processed_events.c.event_id).where(processed_events.c.event_id.like("gw:%"))
                )
            )
            .scalars()
            .all()
        )
    assert len(applied) == len(burst)


def _names(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"].splitlines()[0] for m in messages]


async def test_a_poll_closed_by_the_scheduler_posts_its_results(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/poll create", question="Meet on Friday?", option1="yes", option2="no", closes="2h")
    (poll,) = scene.fake.sent_messages(scene.channel)
    yes, _no = scene.fake.bot_reactions(poll)
    scene.alice.reacts(poll, yes)
    scene.carol.reacts(poll, yes)
    await votes_applied(scene, 2)
    scene.clock.advance(timedelta(hours=2))
    await scene.engine.engine.tick()
    posted = scene.fake.sent_messages(scene.channel)
    assert _names(posted) == ["Poll 1: Meet on Friday?", "Poll 1 closed: Meet on Friday?"]
    assert "2 voters." in posted[-1]["content"]


async def test_a_poll_discord_refuses_to_post_is_marked_failed_not_retried(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.store is not None
    scene.fake.fail("create_message", 403)
    answer = await scene.bob.runs("/goal propose", text="Learn Rust together")
    assert answer.content.startswith("Goal 1 proposed. React on poll 1")
    assert scene.fake.sent_messages(scene.channel) == []
    async with scene.store.transaction() as tx:
        (row,) = await tx.outbox.rows()
    assert row.state is PostState.FAILED and row.post.poll_id == 1
    retry = await scene.bob.runs("/goal propose", text="Learn Rust together")
    assert " proposed. React on poll 2" in retry.content
    (poll,) = scene.fake.sent_messages(scene.channel)
    assert poll["content"].startswith("Poll 2: Goal 2")


async def test_votes_received_before_shutdown_are_applied(discord_bot: DiscordScene) -> None:
    """The gateway will not send them again after a new IDENTIFY, so stopping drains the queue."""
    scene = discord_bot
    assert scene.bot is not None and scene.engine is not None
    await scene.alice.runs("/poll create", question="Tea or coffee?", option1="tea", option2="coffee")
    (poll,) = scene.fake.sent_messages(scene.channel)
    tea, _ = scene.fake.bot_reactions(poll)
    queued = []
    queue = scene.bot.reactions
    original_put = queue.put_nowait
    queue.put_nowait = lambda event: (queued.append(event), original_put(event))[1]  # type: ignore[method-assign]
    scene.engine.batch_delay = 0.3  # applying is slow: the rest waits in the queue
    for member in (scene.alice, scene.bob, scene.carol):
        member.reacts(poll, tea)
    await scene.engine.until(lambda: scene.engine is not None and scene.engine.batches_started > 0)
    await scene.stop_bot()
    assert queued
    assert reactions_received(scene) == len(queued)


async def test_pending_is_seen_by_the_member_alone_and_poll_list_by_everyone(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Learn Rust together")
    await scene.bob.runs("/poll create", question="Which day?", option1="Monday", option2="Friday")
    consent, _ = scene.fake.sent_messages(scene.channel)
    scene.alice.reacts(consent, "✅")
    await votes_applied(scene, 1)
    mine = await scene.alice.runs("/pending")
    assert mine.ephemeral and not mine.deferred
    assert mine.bodies[0]["flags"] & 64 and mine.bodies[0]["allowed_mentions"] == {"parse": []}
    assert mine.content == (
        "What needs you in #general, closing soonest first:\n"
        "  Poll 2: Which day? Closes 2026-03-03 09:00 UTC. React on poll 2: 1️⃣ Monday, 2️⃣ Friday."
    )
    theirs = await scene.carol.runs("/pending", page=1)
    assert theirs.ephemeral and "Goal 1: Learn Rust together." in theirs.content
    listed = await scene.carol.runs("/poll list")
    assert not listed.ephemeral
    assert "Poll 1 (goal 1): Learn Rust together. Closes 2026-03-04 09:00 UTC; 1 voter so far." in listed
    # Answered in the interaction: no direct message, nothing posted in the channel.
    assert scene.fake.dm_channel(scene.alice.user) is None
    assert len(scene.fake.sent_messages(scene.channel)) == 2


async def test_a_slow_pending_is_still_private(discord_bot: DiscordScene) -> None:
    scene = discord_bot
    assert scene.bot is not None and scene.engine is not None
    scene.engine.delay = 0.3
    object.__setattr__(scene.bot.settings, "defer_after", 0.05)
    answer = await scene.bob.runs("/pending")
    assert answer.deferred and answer.interaction.original_deleted
    assert answer.ephemeral
    assert answer.content.startswith("You are all caught up in #general")


async def test_amending_a_blocked_goal_tells_the_blocker_privately_without_a_ping(
    discord_bot: DiscordScene,
) -> None:
    scene = discord_bot
    assert scene.engine is not None
    await scene.bob.runs("/goal propose", text="Read the whole book in a month")
    (poll,) = scene.fake.sent_messages(scene.channel)
    scene.alice.reacts(poll, "✅")
    scene.carol.reacts(poll, "⛔")
    await votes_applied(scene, 2)
    await scene.alice.runs("/poll close", id=1)
    answer = await scene.bob.runs("/goal amend", id=1, text="Read three chapters @everyone")
    assert answer.content.startswith("Goal 2 (reshapes goal 1, blocked by Carol) proposed.")
    await scene.engine.engine.settle()
    assert [str(b["recipient_id"]) for b in scene.fake.bodies("create_dm")] == [scene.carol.user.id]
    dm = scene.fake.dm_channel(scene.carol.user)
    assert dm is not None
    asked, told = scene.fake.sent_messages(dm)  # her ⛔ asked for her concern first (core/concerns.py)
    assert asked["content"].startswith("You reacted ⛔ on goal 1 (Read the whole book in a month)")
    assert "Answer with /concern add goal:1 text:<your concern>" in asked["content"]
    assert told["content"].startswith("You blocked goal 1 (Read the whole book in a month)")
    assert "Bob has reshaped it as goal 2: Read three chapters @everyone." in told["content"]
    bodies = [r.body for r in scene.fake.requests if r.route == "create_message" and dm.id in r.path]
    assert [b["allowed_mentions"] for b in bodies] == [{"parse": []}] * 2
