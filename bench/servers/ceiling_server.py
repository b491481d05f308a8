"""The ceiling: the least a Python SMTP server on asyncio can do per message.

A bare ``asyncio.Protocol`` that answers every command line with a fixed reply and ends
DATA at CRLF.CRLF. It parses nothing, checks no limit, calls no hook and keeps no
envelope: whatever a real server does beyond this is its own work. Replies to the lines
of one read are written at once, as a pipelining-aware server would.

Usage: .venv/bin/python bench/servers/ceiling_server.py --port 0 --loop uvloop
"""

from __future__ import annotations

import asyncio
from typing import cast

import _common

GREETING = b"220 bench.local ESMTP ceiling\r\n"
EHLO_REPLY = b"250-bench.local\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 209715200\r\n"
OK = b"250 OK\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 Bye\r\n"
#: The reply to a line, by its first four bytes, upper-cased; anything else gets OK.
REPLIES = {b"EHLO": EHLO_REPLY, b"HELO": OK, b"DATA": GO_AHEAD, b"QUIT": BYE}
END_OF_DATA = b"\r\n.\r\n"


class Ceiling(asyncio.Protocol):
    """One session: canned replies to command lines, DATA skipped up to CRLF.CRLF."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the greeting."""
        # uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        """Answer every complete line of the buffer; skip message data."""
        buffer = self.buffer + data
        out: list[bytes] = []
        start = 0
        self.buffer = b""
        while True:
            if self.in_data:
                # Search from the CRLF that ended the DATA line (or the previous read's
                # tail), so that a "." right after it, or a marker split by reads, is found.
                end = buffer.find(END_OF_DATA, max(0, start - 2))
                if end < 0:
                    self.buffer = buffer[max(0, start - 2, len(buffer) - 4) :]
                    break
                start, self.in_data = end + len(END_OF_DATA), False
                out.append(OK)
                continue
            end = buffer.find(b"\n", start)
            if end < 0:
                self.buffer = buffer[start:]
                break
            reply = REPLIES.get(buffer[start : start + 4].upper(), OK)
            start = end + 1
            out.append(reply)
            if reply is GO_AHEAD:
                self.in_data = True
            elif reply is BYE:
                break
        self._answer(out)

    def _answer(self, out: list[bytes]) -> None:
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
            if out[-1] is BYE:
                self.transport.close()


def main() -> None:
    """Serve the ceiling on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("ceiling benchmark server (canned replies)", ("sink",))

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(Ceiling, "127.0.0.1", args.port)

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
