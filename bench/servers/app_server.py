"""A small smtpkit App as a benchmark server: one recipient route and one RCPT hook.

It takes the same load as ``smtpkit_server.py --handler sink``, so the difference between
the two is the cost of the App path: the compiled class, the hook chain and the router.
The route accepts every message for ``<anything>@bench.local`` without keeping it (as
``Sink`` does); the RCPT hook looks at the address and passes. Both are ``async def``, so
they run on the event loop (a plain ``def`` would run in a worker thread).

Usage: .venv/bin/python bench/servers/app_server.py --port 0 --loop uvloop
"""

from __future__ import annotations

import asyncio
from typing import Any

from smtpkit import App, ServerConfig
from smtpkit.config import LimitsConfig
from smtpkit.routing import RoutedMessage

import _common

HANDLERS = ("app",)
#: Addresses the RCPT hook refuses, so that it has something to check.
BLOCKED = frozenset({"blocked@bench.local"})


def make_app(data_size_limit: int) -> App:
    """The benchmark App: ``(user)@bench.local`` routed to a function that accepts."""
    config = ServerConfig(hostname=_common.HOSTNAME, limits=LimitsConfig(data_size=data_size_limit))
    app = App(config, name="bench")

    @app.hook("RCPT")
    async def screen(
        server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str | None:
        return "550 5.7.1 Blocked" if address in BLOCKED else None

    @app.route("(user)@bench.local", user="[^@]+")
    async def accept(message: RoutedMessage) -> None:
        return None

    return app


def main() -> None:
    """Serve the App on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("smtpkit App benchmark server", HANDLERS)
    factory = make_app(args.data_size_limit).protocol_factory()

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(factory, "127.0.0.1", args.port)

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
