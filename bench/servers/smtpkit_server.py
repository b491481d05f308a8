"""smtpkit's documented SMTP class as a benchmark server (runs from the project's .venv).

Usage: .venv/bin/python bench/servers/smtpkit_server.py --port 0 --loop uvloop --handler spool

The ``mailbox`` handler is smtpkit's durable ``Mailbox`` (fsync before the 250), storing
into ``<spool dir>/maildir``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from smtpkit.handlers import Mailbox, Sink
from smtpkit.smtp import SMTP

import _common
from _handlers import ContentHandler, SpoolHandler

HANDLERS = ("sink", "content", "spool", "mailbox")


def make_handler(name: str, spool_dir: str | None) -> Any:
    """Return a new handler object for the handler called ``name``."""
    if name == "sink":
        return Sink()
    if name == "content":
        return ContentHandler()
    if name == "mailbox":
        return Mailbox(_common.maildir(spool_dir))
    return SpoolHandler(spool_dir)


def main() -> None:
    """Serve smtpkit's SMTP on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("smtpkit benchmark server", HANDLERS)
    level = os.environ.get("BENCH_LOG_LEVEL")
    if level:  # log as smtpkit run does, to measure what the session log costs
        from smtpkit.cli import configure_logging

        configure_logging(level)
    handler = make_handler(args.handler, args.spool_dir)

    tls = _common.tls_context(args)

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=args.data_size_limit,
                hostname=_common.HOSTNAME,
                tls_context=tls,
                chunking=True,
            ),
            "127.0.0.1",
            args.port,
        )

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
