"""A load client that pipelines, as Postfix, nodemailer and Exchange do (RFC 2920).

One process holds --connections sessions on the running loop (uvloop when it is installed)
and sends --messages messages of about --size bytes between them, each session reusing its
connection. After EHLO, a session writes ``MAIL``, ``RCPT`` and ``DATA`` at once; after
the ``354`` it writes the message, the end-of-data line and, when there is another message
to send, the next ``MAIL``, ``RCPT`` and ``DATA``, all in one write (the message content may
open a group, ``DATA`` must close one). So one round trip per message, where smtp-source
needs four. Every reply code is checked.

With ``--starttls`` each session says ``STARTTLS`` and ``EHLO`` again before its first
message. With ``--handshakes`` the process measures TLS sessions instead: each session
connects, says ``EHLO``, ``STARTTLS``, ``EHLO`` and ``QUIT``, until --messages sessions
are done, --connections at a time.

The process prints {"ready": true} once its sessions have connected, waits for a line on
stdin, then prints {"started": t0, "ended": t1, "done": n} (``time.monotonic()`` seconds,
which all processes of one machine share), or {"error": ...} with exit status 1. The
whole run stops after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ssl
import sys
import time
from typing import Any, cast

import _smtp

#: The name in the servers' certificate.
HOSTNAME = "bench.local"
ENVELOPE = _smtp.MAIL + _smtp.RCPT + _smtp.DATA
#: Reply codes a pipelined group gets back: MAIL, RCPT, DATA.
ENVELOPE_CODES = ((250, "MAIL"), (250, "RCPT"), (354, "DATA"))


class Budget:
    """The messages (or sessions) this process still has to send, shared by its sessions."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.done = 0
        self.error = ""
        self.finished = asyncio.get_running_loop().create_future()

    def claim(self) -> bool:
        """Take one message to send; False when none is left."""
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def count(self) -> None:
        """Record one message (or session) completed."""
        self.done += 1

    def fail(self, message: str) -> None:
        """Record the first error and end the run."""
        self.error = self.error or message
        if not self.finished.done():
            self.finished.set_result(None)


class Session(asyncio.Protocol):
    """One pipelining SMTP session: replies are matched against a queue of expected codes."""

    def __init__(self, budget: Budget, message: bytes, tls: ssl.SSLContext | None) -> None:
        self.budget = budget
        self.message = message
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.expected: collections.deque[tuple[int, str]] = collections.deque([(220, "greeting")])
        self.greeted = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.upgrading: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Report a connection that ended before its last expected reply."""
        if self.expected:
            self._fail(f"connection closed while waiting for {self.expected[0][1]} ({exc})")
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Take every complete reply out of the buffer and act on it."""
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if line[3:4] != b"-":
                self._reply(line)

    def _fail(self, message: str) -> None:
        self.budget.fail(message)
        if self.transport is not None:
            self.transport.abort()
        for future in (self.greeted, self.closed):
            if not future.done():
                future.set_result(None)

    def _reply(self, line: bytes) -> None:
        if not self.expected:
            self._fail(f"unexpected reply {line[:100]!r}")
            return
        code, step = self.expected.popleft()
        if line[:3] != str(code).encode():
            self._fail(f"{step}: expected {code}, got {line[:200]!r}")
            return
        self._next(step)

    def _send(self, data: bytes, *steps: tuple[int, str]) -> None:
        assert self.transport is not None
        self.expected.extend(steps)
        self.transport.write(data)

    def _next(self, step: str) -> None:
        if step == "greeting":
            self._send(_smtp.EHLO, (250, "EHLO"))
        elif step == "EHLO" and self.tls is not None:
            self._send(b"STARTTLS\r\n", (220, "STARTTLS"))
        elif step in ("EHLO", "EHLO after STARTTLS") and not self.greeted.done():
            self.greeted.set_result(None)
        elif step == "STARTTLS":
            self.upgrading = asyncio.ensure_future(self._upgrade())
        elif step == "DATA":
            self._message()
        elif step == "end of data":
            self.budget.count()
            if not self.expected:
                self._send(_smtp.QUIT, (221, "QUIT"))
        elif step == "QUIT":
            assert self.transport is not None
            self.transport.close()

    async def _upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None and self.tls is not None
        try:
            transport = await loop.start_tls(
                self.transport, self, self.tls, server_hostname=HOSTNAME
            )
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"TLS handshake: {type(exc).__name__}: {exc}")
            return
        self.transport, self.tls = cast(asyncio.Transport, transport), None
        self._send(_smtp.EHLO, (250, "EHLO after STARTTLS"))

    def start(self) -> None:
        """Begin sending messages (after the greeting), or say QUIT if there is none."""
        if self.budget.claim():
            self._send(ENVELOPE, *ENVELOPE_CODES)
        else:
            self._send(_smtp.QUIT, (221, "QUIT"))

    def quit(self) -> None:
        """Say QUIT; the server then closes the connection."""
        self._send(_smtp.QUIT, (221, "QUIT"))

    def _message(self) -> None:
        if self.budget.claim():
            self._send(self.message + ENVELOPE, (250, "end of data"), *ENVELOPE_CODES)
        else:
            self._send(self.message, (250, "end of data"))


def message_bytes(size: int) -> bytes:
    """A header, body lines up to about ``size`` bytes, and the end-of-data line."""
    return _smtp.HEADER + _smtp.body_block(size - len(_smtp.HEADER)) + _smtp.END_OF_DATA


async def connect(args: argparse.Namespace, budget: Budget, tls: ssl.SSLContext | None) -> Session:
    """Open one session and wait for its greeting (and TLS, when asked for)."""
    loop = asyncio.get_running_loop()
    message = message_bytes(args.size)
    _transport, session = await loop.create_connection(
        lambda: Session(budget, message, tls), args.host, args.port
    )
    await session.greeted
    return session


async def _messages(args: argparse.Namespace, tls: ssl.SSLContext | None) -> dict[str, Any]:
    budget = Budget(args.messages)
    sessions = await asyncio.gather(*(connect(args, budget, tls) for _ in range(args.connections)))
    if budget.error:
        return {"error": budget.error}
    await _ready()
    started = time.monotonic()
    for session in sessions:
        session.start()
    closed = asyncio.gather(*(session.closed for session in sessions))
    await asyncio.wait([closed, budget.finished], return_when=asyncio.FIRST_COMPLETED)
    ended = time.monotonic()
    if budget.error:
        return {"error": budget.error}
    return {"started": started, "ended": ended, "done": budget.done}


async def _handshake_worker(args: argparse.Namespace, budget: Budget, tls: ssl.SSLContext) -> None:
    while not budget.error and budget.claim():
        session = await connect(args, budget, tls)
        if budget.error:
            return
        session.quit()
        await session.closed
        if not budget.error:
            budget.count()


async def _handshakes(args: argparse.Namespace, tls: ssl.SSLContext) -> dict[str, Any]:
    budget = Budget(args.messages)
    await _ready()
    started = time.monotonic()
    workers = asyncio.gather(
        *(_handshake_worker(args, budget, tls) for _ in range(args.connections))
    )
    await asyncio.wait([workers, budget.finished], return_when=asyncio.FIRST_COMPLETED)
    ended = time.monotonic()
    if budget.error:
        return {"error": budget.error}
    return {"started": started, "ended": ended, "done": budget.done}


async def _ready() -> None:
    _smtp.emit({"ready": True})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A client context trusting ``ca_file`` (the benchmark's own CA), or None for no TLS."""
    if ca_file is None:
        return None
    context = ssl.create_default_context(cafile=ca_file)
    return context


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load described by ``args``, bounded by --max-seconds."""
    tls = tls_context(args.starttls)
    work = _handshakes(args, tls) if args.handshakes and tls else _messages(args, tls)
    try:
        return await asyncio.wait_for(work, args.max_seconds)
    except asyncio.TimeoutError:
        return {"error": f"not done after {args.max_seconds:g} s"}
    except (OSError, ssl.SSLError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def parse_args() -> argparse.Namespace:
    """The client's options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--messages", type=int, required=True, help="messages (or sessions)")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument("--starttls", metavar="CA_FILE", help="say STARTTLS, trusting this CA")
    parser.add_argument("--handshakes", action="store_true", help="count TLS sessions instead")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    return parser.parse_args()


def main() -> None:
    """Parse the options, run, print the result."""
    args = parse_args()
    if args.handshakes and not args.starttls:
        _smtp.fail("--handshakes: needs --starttls CA_FILE")
    if args.loop == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(args))
    if "error" in result:
        _smtp.fail(result["error"])
    _smtp.emit(result)


if __name__ == "__main__":
    main()
