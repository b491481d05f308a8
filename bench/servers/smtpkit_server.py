"""smtpkit's documented SMTP class as a benchmark server (runs from the project's .venv).

Usage: .venv/bin/python bench/servers/smtpkit_server.py --port 0 --loop uvloop --handler spool
"""

from __future__ import annotations

import asyncio
from typing import Any

from smtpkit.handlers import Sink
from smtpkit.smtp import SMTP

import _common
from _handlers import ContentHandler, SpoolHandler

HANDLERS = ("sink", "content", "spool")


def make_handler(name: str, spool_dir: str | None) -> Any:
    """Return a new handler object for the handler called ``name``."""
    if name == "sink":
        return Sink()
    if name == "content":
        return ContentHandler()
    return SpoolHandler(spool_dir)


def main() -> None:
    """Serve smtpkit's SMTP on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("smtpkit benchmark server", HANDLERS)
    handler = make_handler(args.handler, args.spool_dir)

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(
            lambda: SMTP(handler, data_size_limit=args.data_size_limit, hostname=_common.HOSTNAME),
            "127.0.0.1",
            args.port,
        )

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
