"""The ceiling: the least a Python SMTP server on asyncio can do per message.

A bare ``asyncio.Protocol`` that answers every command line with a fixed reply and ends
DATA at CRLF.CRLF. It parses nothing, checks no limit, calls no hook and keeps no
envelope: whatever a real server does beyond this is its own work. Replies to the lines
of one read are written at once, as a pipelining-aware server would.

With ``--tls-cert`` and ``--tls-key`` it also offers STARTTLS: the ``220``, then
``loop.start_tls`` with the context the other benchmark servers build, and nothing else
(no session reset, no ssl facts gathered, no hook): the least a STARTTLS session costs a
Python server, which is mostly OpenSSL's handshake.

Usage: .venv/bin/python bench/servers/ceiling_server.py --port 0 --loop uvloop
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

import _common

GREETING = b"220 bench.local ESMTP ceiling\r\n"
EHLO_REPLY = b"250-bench.local\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 209715200\r\n"
OK = b"250 OK\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
BYE = b"221 Bye\r\n"
READY_FOR_TLS = b"220 Ready to start TLS\r\n"
#: The reply to a line, by its first four bytes, upper-cased; anything else gets OK.
REPLIES = {b"EHLO": EHLO_REPLY, b"HELO": OK, b"DATA": GO_AHEAD, b"QUIT": BYE}
#: The EHLO reply when STARTTLS is offered (before TLS and after: the ceiling keeps no state).
EHLO_TLS_REPLY = EHLO_REPLY.replace(b"250 SIZE", b"250-STARTTLS\r\n250 SIZE")
END_OF_DATA = b"\r\n.\r\n"


class Ceiling(asyncio.Protocol):
    """One session: canned replies to command lines, DATA skipped up to CRLF.CRLF."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False
        self.tls = tls
        self.replies = REPLIES if tls is None else {**REPLIES, b"EHLO": EHLO_TLS_REPLY}
        self.upgrading: asyncio.Future[None] | None = None

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
            verb = buffer[start : start + 4].upper()
            if verb == b"STAR" and self.tls is not None:
                # Whatever was pipelined after STARTTLS is dropped (RFC 3207).
                self._answer(out)
                self._start_tls()
                return
            reply = self.replies.get(verb, OK)
            start = end + 1
            out.append(reply)
            if reply is GO_AHEAD:
                self.in_data = True
            elif reply is BYE:
                break
        self._answer(out)

    def _start_tls(self) -> None:
        assert self.transport is not None
        self.transport.write(READY_FOR_TLS)
        # The client's hello must wait for start_tls, which runs at the next turn.
        self.transport.pause_reading()
        self.upgrading = asyncio.ensure_future(self._upgrade(self.transport))

    async def _upgrade(self, plain: asyncio.Transport) -> None:
        assert self.tls is not None
        loop = asyncio.get_running_loop()
        # The client's first command over TLS may arrive before start_tls returns the
        # transport to answer it on: hold it until then.
        early = _Early()
        try:
            tls = await loop.start_tls(plain, early, self.tls, server_side=True)
        except (OSError, ssl.SSLError):
            plain.abort()
            return
        self.transport = cast(asyncio.Transport, tls)
        self.transport.set_protocol(self)
        if early.data:
            self.data_received(b"".join(early.data))

    def _answer(self, out: list[bytes]) -> None:
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
            if out[-1] is BYE:
                self.transport.close()


class _Early(asyncio.Protocol):
    """What the client sends while a TLS handshake ends, kept for the session."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        """Keep ``data``."""
        self.data.append(data)


def main() -> None:
    """Serve the ceiling on 127.0.0.1 until SIGTERM."""
    args = _common.parse_args("ceiling benchmark server (canned replies)", ("sink",))
    tls = _common.tls_context(args)

    async def start(loop: asyncio.AbstractEventLoop) -> asyncio.Server:
        return await loop.create_server(lambda: Ceiling(tls), "127.0.0.1", args.port)

    _common.run(args.loop, start)


if __name__ == "__main__":
    main()
