"""Tools for tests against real peers: a threaded server, certificates, loops.

The server runs on its own event loop (asyncio's or uvloop's) in a daemon
thread and listens on 127.0.0.1 on a port the system picks. Certificates come
from ``trustme``: a throw-away CA made once per test run, never written to the
repository.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from smtpkit.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
LOOP_KINDS = ("asyncio", "uvloop")
MESSAGE = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"

_T = TypeVar("_T")


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of the given kind (``"asyncio"`` or ``"uvloop"``)."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    if kind == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError(f"loop kind {kind!r}: expected 'asyncio' or 'uvloop'")


class Certificates:
    """A CA and a server certificate for ``127.0.0.1`` and ``localhost``."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert(HOST, "localhost")
        self._dir = tempfile.TemporaryDirectory(prefix="smtpkit-tls-")
        self.ca_file = Path(self._dir.name) / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        """A server-side context holding the certificate and its key."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts the CA (and checks host names)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@functools.lru_cache(maxsize=1)
def certificates() -> Certificates:
    """The certificates of this test run (made once)."""
    return Certificates()


class ServerThread:
    """An asyncio server on its own loop in a daemon thread.

    Args:
        factory: the protocol factory (called on the server's loop).
        loop_kind: ``"asyncio"`` or ``"uvloop"``.
        ssl_context: makes every connection implicit TLS, as
            ``create_server(ssl=...)`` does.
    """

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        *,
        loop_kind: str = "asyncio",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = new_loop(loop_kind)
        self.protocols: list[asyncio.Protocol] = []
        self._factory = factory
        self._ssl = ssl_context
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def _make(self) -> asyncio.Protocol:
        protocol = self._factory()
        self.protocols.append(protocol)
        return protocol

    async def _open(self) -> int:
        self._server = await self.loop.create_server(self._make, HOST, 0, ssl=self._ssl)
        sockets = getattr(self._server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1])

    def start(self) -> None:
        """Bind, start the loop thread and return once the server listens."""
        self._thread.start()
        self.port = self.run(self._open())

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Callable[[], _T], timeout: float = 10.0) -> _T:
        """Call ``func`` on the server's loop thread and return its result."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                future.set_result(func())
            except BaseException as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(invoke)
        return future.result(timeout)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for protocol in self.protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abort()
        for _ in range(10):
            await asyncio.sleep(0)
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close the server and every connection, stop the loop and its thread."""
        if self._server is not None:
            self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Recorder:
    """A handler that keeps every delivered message with its session."""

    def __init__(self) -> None:
        self.messages: list[tuple[Session, Envelope]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((session, envelope))
        return "250 OK"


@contextmanager
def serving(
    handler: Any,
    loop_kind: str = "asyncio",
    *,
    smtp_class: type[SMTP] = SMTP,
    implicit_tls: ssl.SSLContext | None = None,
    **smtp_kwargs: Any,
) -> Iterator[ServerThread]:
    """Serve ``smtp_class(handler, **smtp_kwargs)`` on 127.0.0.1, port 0."""
    smtp_kwargs.setdefault("hostname", "mx.test")

    def factory() -> SMTP:
        return smtp_class(handler, **smtp_kwargs)

    server = ServerThread(factory, loop_kind=loop_kind, ssl_context=implicit_tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Poll until ``condition()`` holds; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def in_ci() -> bool:
    """Whether the tests run in CI, where a missing peer program is a failure."""
    return bool(os.environ.get("CI"))


class RawClient:
    """A line-oriented SMTP client on a plain socket, for scripted dialogs.

    Args:
        port: the server's port on 127.0.0.1.
        context: wrap the socket in TLS at once (implicit TLS).
        timeout: seconds any single read may take.
    """

    def __init__(self, port: int, context: ssl.SSLContext | None = None, timeout: float = 10.0):
        sock = socket.create_connection((HOST, port), timeout=timeout)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=HOST)
        self.sock = sock
        self.buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes | str) -> None:
        """Send bytes (a str is encoded as ASCII) in one ``sendall``."""
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> str:
        """Read one reply line, without its CRLF.

        Raises:
            ConnectionError: the server closed the connection first.
        """
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unterminated data: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply: its code and its lines joined by LF."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return int(lines[0][:3]), "\n".join(line[4:] for line in lines)

    def command(self, text: str) -> tuple[int, str]:
        """Send ``text`` + CRLF and read the reply."""
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext) -> None:
        """Run the TLS handshake on the connection (after a ``220`` to STARTTLS).

        Raises:
            AssertionError: the server sent bytes after its ``220`` reply in
                plaintext.
        """
        assert self.buffer == b"", f"plaintext after 220: {self.buffer!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=HOST)

    def wait_closed(self) -> bytes:
        """Read until the server closes the connection; return what came."""
        data = self.buffer
        self.buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
