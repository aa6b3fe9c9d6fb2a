"""The whole bot process SIGKILLed while a post is in flight to Discord, then started again.

Each test runs `python -m bot run` (the real discord.py client) against the fake Discord, holds one of
the bot's requests there, kills the process with SIGKILL and starts it again on the same database and
config. Held with `applied=True` the platform has carried the request out but the bot never hears so;
with `applied=False` it never reached the platform. Either way the outbox row is still unfinished after
the restart and is sent again with the same key: the message's enforced nonce `pb<id>.0`, so Discord
answers with the first message instead of posting a second. Votes cast during the outage are not
replayed by the gateway (a new process starts a new session): the restart reads them from the
reactions on the poll message, in the new session's reconcile pass or, for a poll the outbox links to
its message only after that pass, when it links it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.fake_discord.scene import DiscordScene
from tests.fake_discord.server import FakeDiscord, Recorded

ROOT = Path(__file__).resolve().parents[2]
START = "2026-03-02T09:00:00+00:00"  # a Monday; PEERBOT_FAKE_TIME holds the bot's clock there
NUDGE_DUE = "2026-03-02T10:00:30+00:00"  # half a minute after the nudge's 10:00
POLL = {"question": "Tea or coffee?", "option1": "🍵 tea", "option2": "☕ coffee"}
OPTIONS = ["🍵", "☕"]


class PeerbotProcess:
    """`peerbot run` against the fake Discord: one process at a time, one database, one config.

    Output goes to files, not pipes: a pipe nobody reads fills up and blocks the bot mid-write.
    """

    def __init__(self, fake: FakeDiscord, directory: Path) -> None:
        self.fake = fake
        self.dir = directory
        self.db = directory / "peerbot.db"
        self.config = directory / "config.yaml"
        self.config.write_text(
            f"database:\n  url: sqlite+aiosqlite:///{self.db}\n"
            "discord:\n"
            f"  api_base_url: {fake.api_base_url}\n"
            f"  gateway_url: {fake.gateway_url}\n"
            "logging:\n  level: DEBUG\n"
        )
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.dir / f"run{self.runs}.err"

    async def start(self, at: str = START) -> None:
        """Start the bot with its clock at `at`; return once it has identified on the gateway."""
        assert self.process is None
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERBOT_")}
        env.update(PYTHONPATH=str(ROOT), PEERBOT_DISCORD_TOKEN=self.fake.token, PEERBOT_FAKE_TIME=at)
        with (self.dir / f"run{self.runs}.out").open("wb") as out, self.log.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(self.config), cwd=self.dir, env=env,
                stdout=out, stderr=err,
            )  # fmt: skip
        identified = len(self.fake.identifies) + 1
        await self.fake.until(lambda: len(self.fake.identifies) >= identified, 20)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, no connection is closed cleanly."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.process.wait(), 10) == -signal.SIGKILL
        self.process = None
        # Once the fake has seen the gateway connection go, events wait for a RESUME that never comes.
        fake = self.fake
        await fake.until(lambda: not any(s.connection for s in fake.sessions.values()), 10)

    async def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        """Stop the bot as an operator would (Ctrl-C, or SIGTERM from `docker stop`): it drains the
        outbox and exits with 0."""
        assert self.process is not None
        self.process.send_signal(how)
        code = await asyncio.wait_for(self.process.wait(), 20)
        self.process = None
        assert code == 0, self.log.read_text()[-3000:]

    async def logged(self, text: str, within: float = 10.0) -> None:
        """Wait until this run of the bot has logged `text` (a subprocess: its log is all we can see)."""
        deadline = time.monotonic() + within
        while text not in self.log.read_text():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not logged within {within} s: {text!r}\n{self.log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)

    def outbox(self) -> list[str]:
        """The state of each row left in the outbox (a sent row is deleted), read from the database."""
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            return [state for (state,) in db.execute("SELECT state FROM outbox ORDER BY id")]

    async def settled(self, within: float = 10.0) -> None:
        """Wait until the running bot has sent everything in its outbox."""
        deadline = time.monotonic() + within
        while left := self.outbox():
            if time.monotonic() > deadline:
                raise AssertionError(f"outbox rows still {left} after {within} s")
            await asyncio.sleep(0.05)


@pytest.fixture
async def bot(scene: DiscordScene, tmp_path: Path) -> AsyncIterator[PeerbotProcess]:
    process = PeerbotProcess(scene.fake, tmp_path)
    try:
        yield process
    finally:
        if process.process is not None:
            process.process.kill()
            await process.process.wait()


def creates(fake: FakeDiscord, starting: str) -> list[Recorded]:
    """The message creates the bot sent whose text starts so, in order."""
    return [
        r for r in fake.requests if r.route == "create_message" and r.body["content"].startswith(starting)
    ]


def posted(scene: DiscordScene, starting: str) -> list[dict[str, Any]]:
    """The bot's messages in the channel whose text starts so."""
    return [m for m in scene.fake.sent_messages(scene.channel) if m["content"].startswith(starting)]


def the_one(scene: DiscordScene, starting: str) -> dict[str, Any]:
    """The bot's message that starts so, which the channel must have exactly once."""
    found = posted(scene, starting)
    assert len(found) == 1, f"{len(found)} messages start with {starting!r}: {[m['id'] for m in found]}"
    return found[0]


def counts(text: str) -> dict[str, int]:
    """The count per emoji in a results text: "☕ coffee  ███████░░░ 2 (67%)"."""
    return {line.split()[0]: int(line.split(" (")[0].split()[-1]) for line in text.splitlines()[1:-1]}


def poll_message(record: Recorded) -> bool:
    """The request posts the poll's message."""
    return str(record.body.get("content", "")).startswith("Poll 1:")


# A poll ------------------------------------------------------------------------------------------

Where = Callable[[Recorded], bool] | None

POLL_CRASHES: dict[str, tuple[str, bool, Where]] = {
    # The message is stored on Discord; the bot dies before the answer (its id) reaches it.
    "poll message created, answer lost": ("create_message", True, poll_message),
    # The message is posted and linked; the first reaction is stored, its answer lost.
    "first reaction added, answer lost": ("create_reaction", True, None),
    # The message is posted and linked; the first reaction never reached Discord.
    "first reaction never sent": ("create_reaction", False, None),
}


async def killed_while_posting_a_poll(
    scene: DiscordScene, bot: PeerbotProcess, route: str, applied: bool, where: Where
) -> dict[str, Any]:
    """Start the bot, kill it while it posts a new poll; members vote during the outage. The poll."""
    fake = scene.fake
    await bot.start()
    held = fake.hold(route, applied=applied, where=where)
    await scene.alice.runs("/poll create", **POLL)
    await asyncio.wait_for(held.reached, 10)
    await bot.kill()
    held.cut()
    poll = the_one(scene, "Poll 1:")  # members see it, and vote while the bot is down
    scene.alice.reacts(poll, "🍵")
    scene.bob.reacts(poll, "☕")
    scene.carol.reacts(poll, "☕")
    return poll


async def poll_posted_once_counting_the_outage_votes_once(
    scene: DiscordScene, bot: PeerbotProcess, poll: dict[str, Any]
) -> None:
    """Once the restarted bot has sent its outbox and reconciled its new session."""
    fake = scene.fake
    assert the_one(scene, "Poll 1:")["id"] == poll["id"]
    assert sorted(fake.bot_reactions(poll)) == sorted(OPTIONS)
    (key,) = {r.body["nonce"] for r in creates(fake, "Poll 1:")}  # every attempt with the row's key
    assert key.startswith("pb") and key.endswith(".0")

    so_far = await scene.alice.runs("/poll results", id=1)
    assert counts(so_far.content) == {"🍵": 1, "☕": 2}, so_far.content
    await scene.alice.runs("/poll close", id=1)
    await fake.until(lambda: bool(posted(scene, "Poll 1 closed:")))
    await bot.settled()
    await bot.stop()

    closed = the_one(scene, "Poll 1 closed:")
    assert counts(closed["content"]) == {"🍵": 1, "☕": 2}, closed["content"]
    assert closed["content"].endswith("3 voters.")
    assert the_one(scene, "Poll 1:")["id"] == poll["id"]
    assert sorted(fake.bot_reactions(poll)) == sorted(OPTIONS)
    assert bot.outbox() == []  # nothing more to send


@pytest.mark.parametrize("crash", POLL_CRASHES)
async def test_a_poll_whose_bot_was_killed_while_posting_it_is_posted_once_and_counts_the_outage_votes(
    crash: str, scene: DiscordScene, bot: PeerbotProcess
) -> None:
    poll = await killed_while_posting_a_poll(scene, bot, *POLL_CRASHES[crash])
    await bot.start()
    await bot.settled()
    await bot.logged("new session on shard 0: checked")  # its reconcile pass is over
    await poll_posted_once_counting_the_outage_votes_once(scene, bot, poll)


async def test_outage_votes_count_when_the_poll_is_linked_after_the_new_sessions_reconcile_pass(
    scene: DiscordScene, bot: PeerbotProcess
) -> None:
    """The restarted bot sends the poll again (and so learns its message) only after its new gateway
    session has reconciled the open polls: behind a rate limit, a retry's back-off, a long outbox, or
    another instance's lease. The votes cast on the message before it was linked still count."""
    fake = scene.fake
    poll = await killed_while_posting_a_poll(scene, bot, "create_message", True, poll_message)
    late = fake.hold("create_message", applied=False, where=poll_message)
    await bot.start()
    await asyncio.wait_for(late.reached, 10)
    await bot.logged("new session on shard 0: checked 0 open polls")
    late.release()
    await bot.settled()
    await poll_posted_once_counting_the_outage_votes_once(scene, bot, poll)


# A nudge -----------------------------------------------------------------------------------------


async def killed_while_posting_a_nudge(scene: DiscordScene, bot: PeerbotProcess, applied: bool) -> None:
    """Schedule a nudge, start the bot when it is due and kill it while it posts the nudge."""
    fake = scene.fake
    await bot.start(at=START)
    answer = await scene.alice.runs("/nudge add", schedule="daily 10:00 What did you learn today?")
    assert not answer.ephemeral, answer.content
    await bot.stop()

    held = fake.hold("create_message", applied=applied)
    await bot.start(at=NUDGE_DUE)  # the nudge is due at once
    await asyncio.wait_for(held.reached, 10)
    await bot.kill()
    held.cut()
    assert len(posted(scene, "🔔 Nudge 1:")) == (1 if applied else 0)


def nudge_posted_once(scene: DiscordScene, bot: PeerbotProcess) -> None:
    """Once the bot stopped: the nudge is in the channel once, every attempt carried its key."""
    nudge = the_one(scene, "🔔 Nudge 1:")
    assert nudge["content"] == "🔔 Nudge 1: What did you learn today?"
    assert {r.body["nonce"] for r in creates(scene.fake, "🔔 Nudge 1:")} == {nudge["nonce"]}
    assert bot.outbox() == []


@pytest.mark.parametrize("applied", [True, False], ids=["posted, answer lost", "never reached Discord"])
async def test_a_nudge_whose_bot_was_killed_while_posting_it_is_posted_once(
    applied: bool, scene: DiscordScene, bot: PeerbotProcess
) -> None:
    await killed_while_posting_a_nudge(scene, bot, applied)
    await bot.start(at=NUDGE_DUE)
    await bot.settled()
    await bot.stop()
    assert len(creates(scene.fake, "🔔 Nudge 1:")) == 2
    nudge_posted_once(scene, bot)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_post_cut_off_by_an_interrupt_is_finished_before_the_bot_exits(
    scene: DiscordScene, bot: PeerbotProcess, how: signal.Signals
) -> None:
    """SIGINT or SIGTERM while the restarted bot sends the nudge again: the bot gives up on that request
    and, before it closes its Discord client, sends the row once more with its key. Left for the next
    start instead, it would post twice once that start came later than Discord remembers the nonce."""
    fake = scene.fake
    await killed_while_posting_a_nudge(scene, bot, applied=True)
    held = fake.hold("create_message", applied=True)
    await bot.start(at=NUDGE_DUE)
    await asyncio.wait_for(held.reached, 10)
    await bot.stop(how)
    held.cut()
    assert [r.status for r in creates(fake, "🔔 Nudge 1:")] == [0, 0, 200]
    nudge_posted_once(scene, bot)
