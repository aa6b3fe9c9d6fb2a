"""The web server in the bot's process: one aiohttp application that route sets are added to.

A route set is a function that adds its routes to the application (`operations_routes` for /health,
/ready and /metrics; the group dashboard's). The server knows none of them: the composition root
(bot/app.py) chooses which are served.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

from aiohttp import web

RouteSet = Callable[[web.Application], None]


class WebUnavailable(Exception):
    """The server cannot listen (the port is taken, the address is not this host's): one line for the
    operator."""


class WebServer:
    """Serves the route sets on `host:port` (port 0: any free port) from `start` to `close`."""

    def __init__(
        self, host: str, port: int, routes: Sequence[RouteSet] = (), public_url: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.app = web.Application()
        for add in routes:
            add(self.app)
        self._public_url = public_url
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where people reach the server: `web.public_url`, else http://host:port (the port bound)."""
        if self._public_url:
            return self._public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; `WebUnavailable` when the address cannot be bound."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            where = f"{self.host}:{self.port}"
            if error.errno == errno.EADDRINUSE:
                raise WebUnavailable(
                    f"web: port {self.port} on {self.host} is in use by another program; stop it, or set"
                    " web.port to a free port"
                ) from None
            raise WebUnavailable(f"web: cannot listen on {where}: {error.strerror or error}") from None
        self._runner = runner
        if self.port == 0:
            self.port = runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
