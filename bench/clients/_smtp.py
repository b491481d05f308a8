"""A minimal SMTP client on raw non-blocking sockets, for the benchmark clients.

It speaks just enough SMTP to drive a server (greeting, EHLO, one transaction) and keeps
no per-connection state beyond a socket and a receive buffer, so that one process can
hold thousands of sessions cheaply.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

EHLO = b"EHLO client.bench.local\r\n"
MAIL = b"MAIL FROM:<source@bench.local>\r\n"
RCPT = b"RCPT TO:<sink@bench.local>\r\n"
DATA = b"DATA\r\n"
END_OF_DATA = b".\r\n"
QUIT = b"QUIT\r\n"
#: One line of a base64-looking body: 76 characters and CRLF, as MIME attachments are.
BODY_LINE = b"A" * 76 + b"\r\n"


class SMTPReplyError(Exception):
    """The server answered with an unexpected reply code."""

    def __init__(self, step: str, expected: int, reply: bytes) -> None:
        super().__init__(f"{step}: expected reply {expected}, got {reply[:200]!r}")


class Client:
    """One SMTP session over a raw socket, driven with the running loop's ``sock_*`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, host: str, port: int, source: str | None = None) -> Client:
        """Open a session to ``host:port``, optionally from the local address ``source``.

        Binding to ``source`` before connecting lets one process use the ports of several
        loopback addresses (127.0.0.2, 127.0.0.3, ...), and IP_BIND_ADDRESS_NO_PORT leaves
        the choice of port to connect(), which may then reuse a port for another peer.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if source is not None:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def reply(self) -> tuple[int, bytes]:
        """Read one (possibly multi-line) reply.

        Returns:
            The reply code and the raw bytes of the whole reply.

        Raises:
            ConnectionError: If the server closes the connection first.
        """
        line_start = 0
        while True:
            end = self._buffer.find(b"\r\n", line_start)
            if end < 0:
                data = await self._loop.sock_recv(self.sock, 65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self._buffer += data
                continue
            if self._buffer[line_start + 3 : line_start + 4] != b"-":
                raw, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
                return int(raw[line_start : line_start + 3]), raw
            line_start = end + 2

    async def expect(self, step: str, code: int) -> None:
        """Read a reply and check its code.

        Raises:
            SMTPReplyError: If the code is not ``code``.
        """
        got, raw = await self.reply()
        if got != code:
            raise SMTPReplyError(step, code, raw)

    async def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``."""
        await self._loop.sock_sendall(self.sock, data)

    async def command(self, line: bytes, code: int) -> None:
        """Send one command line and check the reply's code."""
        await self.send(line)
        await self.expect(line.split(b" ", 1)[0].strip().decode(), code)

    async def greet(self) -> None:
        """Read the greeting and say EHLO."""
        await self.expect("greeting", 220)
        await self.command(EHLO, 250)

    async def begin_data(self) -> None:
        """Send MAIL, RCPT and DATA, up to the 354 go-ahead."""
        await self.command(MAIL, 250)
        await self.command(RCPT, 250)
        await self.command(DATA, 354)

    async def end_data(self) -> None:
        """Send the end-of-data line and wait for the message to be accepted."""
        await self.command(END_OF_DATA, 250)

    def close(self) -> None:
        """Close the socket without saying QUIT."""
        self.sock.close()


#: Linux's IP_BIND_ADDRESS_NO_PORT (not exported by the socket module).
_IP_BIND_ADDRESS_NO_PORT = 24


HEADER = b"Subject: benchmark\r\n\r\n"


def body_block(size: int) -> bytes:
    """Return about ``size`` bytes of body lines: a whole number of lines, at least one."""
    return BODY_LINE * max(1, size // len(BODY_LINE))


async def send_message(client: Client, size: int, block: bytes) -> int:
    """Send a header and body lines, ``block`` at a time, until ``size`` bytes are out.

    Returns:
        The number of bytes sent (``size`` rounded up to a whole number of blocks).
    """
    await client.send(HEADER)
    sent = len(HEADER)
    view = memoryview(block)
    while sent < size:
        await client.send(view)
        sent += len(view)
    return sent


def emit(result: dict[str, Any]) -> None:
    """Print one JSON result line on stdout for the orchestrator."""
    print(json.dumps(result), flush=True)


def fail(message: str) -> None:
    """Print an error for the orchestrator and exit with status 1."""
    print(json.dumps({"error": message}), flush=True)
    sys.exit(1)


def now() -> float:
    """Monotonic seconds, for measuring."""
    return time.perf_counter()
