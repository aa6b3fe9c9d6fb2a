"""A bot process that posts one keyed notice, for the Matrix crash tests: it logs in on its database
(as `peerbot run` would), sends, and prints `sent <event id>`. The test kills it with SIGKILL while
the send is held by the proxy (tests/matrix_proxy.py), then sends again from a restarted bot.

    PEERBOT_MATRIX_PASSWORD=... python -m tests.matrix_send_worker <server> <user> <db> <room> <key> <text>
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from adapters.matrix.adapter import MatrixAdapter, MatrixSettings
from bot.app import bootstrap
from bot.config import parse_config
from core.clock import SystemClock
from core.ports import Outbound
from core.refs import ChannelRef
from tests.matrix_support import open_sqlite


async def main(homeserver: str, user_id: str, db: str, room_id: str, key: str, text: str) -> None:
    settings = MatrixSettings(homeserver, user_id, password=os.environ["PEERBOT_MATRIX_PASSWORD"])
    store = await open_sqlite(Path(db))
    bot = bootstrap(parse_config({}, env={}), store, SystemClock(), matrix=settings)
    adapter = bot.adapter(MatrixAdapter)
    await adapter.start()
    print("logged in", flush=True)
    sent = await adapter.chat.send(ChannelRef("matrix", room_id), Outbound(text), key=key)
    print(f"sent {sent.id}", flush=True)
    await adapter.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
