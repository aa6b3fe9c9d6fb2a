"""Matrix at volume, against the suite's Synapse: a bot in many rooms still answers an invite in one sync.

The test makes 100 rooms (about 10 s on the test Synapse); `bench/matrix_rooms.py` measures the same at
1,000 rooms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.matrix_support import Member, joins_after_syncs, make_rooms, membership, reply_to
from tests.synapse import Homeserver
from tests.test_matrix_e2e import StartBot, bot_factory, bot_settings, people  # noqa: F401 (fixtures)

ROOMS = 100


async def test_a_bot_in_many_rooms_joins_the_room_it_is_invited_to_in_one_sync(
    homeserver: Homeserver,
    bot_factory: StartBot,  # noqa: F811 (the fixture imported above)
    people: Callable[[], Member],  # noqa: F811
) -> None:
    account = homeserver.register()
    rooms = await make_rooms(homeserver, account.user_id, account.access_token, ROOMS)
    assert len(set(rooms)) == ROOMS
    bot = await bot_factory(bot_settings(homeserver, account))  # its first sync: all 100 rooms
    answered = joins_after_syncs(bot)

    alice = people()
    before = len(bot.engine.states)
    invited_at = time.monotonic()
    room = await alice.creates_room(invite=[account.user_id])
    await alice.sees(room, membership(account.user_id, "join"))
    took = time.monotonic() - invited_at
    # The invite arrives in the sync that is waiting, or the one after it when that one had just
    # returned; that sync joins, before the bot hands over its batch.
    assert [r for r, _ in answered] == [room]
    assert answered[0][1] - before <= 1, f"joined after {answered[0][1] - before} syncs"
    assert took < 10, f"joined {took:.1f} s after the invite"
    asked = await alice.says(room, "!peer status")
    answer = await alice.sees(room, reply_to(asked))
    assert "Convening" in answer["content"]["body"]
