"""aiosmtpd's SMTP class as a benchmark peer (runs from bench/.venv-peers).

Usage: bench/.venv-peers/bin/python bench/servers/aiosmtpd_server.py --port 0 --loop uvloop
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

import _common
from _handlers import ContentHandler

HANDLERS = ("sink", "content")


def make_handler(name: str) -> Any:
    """Return a new handler object for the handler called ``name``."""
    return Sink() if name == "sink" else ContentHandler()


def main() -> None:
    """Serve aiosmtpd's SMTP on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("aiosmtpd benchmark server", HANDLERS)
    handler = make_handler(args.handler)

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(
            lambda: SMTP(handler, data_size_limit=args.data_size_limit, hostname=_common.HOSTNAME),
            "127.0.0.1",
            args.port,
        )

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
