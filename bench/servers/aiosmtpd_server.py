"""aiosmtpd's SMTP class as a benchmark peer (runs from bench/.venv-peers).

Usage: bench/.venv-peers/bin/python bench/servers/aiosmtpd_server.py --port 0 --loop uvloop

The ``mailbox`` handler is aiosmtpd's ``Mailbox`` (``mailbox.Maildir.add``, no fsync),
storing into ``<spool dir>/maildir``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.handlers import Mailbox, Sink
from aiosmtpd.smtp import SMTP

import _common
from _handlers import ContentHandler

HANDLERS = ("sink", "content", "mailbox")


def make_handler(name: str, spool_dir: str | None) -> Any:
    """Return a new handler object for the handler called ``name``."""
    if name == "mailbox":
        return Mailbox(_common.maildir(spool_dir))
    return Sink() if name == "sink" else ContentHandler()


def main() -> None:
    """Serve aiosmtpd's SMTP on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("aiosmtpd benchmark server", HANDLERS)
    handler = make_handler(args.handler, args.spool_dir)

    tls = _common.tls_context(args)

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(
            lambda: SMTP(
                handler,
                data_size_limit=args.data_size_limit,
                hostname=_common.HOSTNAME,
                tls_context=tls,
            ),
            "127.0.0.1",
            args.port,
        )

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
