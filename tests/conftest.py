"""Shared fixtures: real servers on loopback, and a raw-socket SMTP client.

``server``
    Starts ``loop.create_server(factory, "127.0.0.1", 0)`` on an event loop
    of its own, running in a background thread, and stops it cleanly at the
    end of the test. The loop kind comes from the ``loop_kind`` fixture
    ("asyncio" by default); a module runs its tests on both loops with
    ``pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)``.

``raw``
    Opens a plain TCP connection and speaks SMTP byte by byte, for what the
    standard clients will not send (pipelined bursts, bare line endings).

``recorder``
    A handler that keeps every delivered envelope.
"""

from __future__ import annotations

import asyncio
import copy
import smtplib
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosmtplib
import pytest

from smtpkit.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
LOOP_KINDS = ("asyncio", "uvloop")
CLIENT_KINDS = ("smtplib", "aiosmtplib")
#: Seconds a raw client waits for the server before failing the test.
READ_TIMEOUT = 5.0

_T = TypeVar("_T")


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` ("asyncio" or "uvloop")."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    raise ValueError(f"loop_kind must be one of {LOOP_KINDS}, not {kind!r}")


@dataclass
class RunningServer:
    """A server started by the ``server`` fixture.

    Unpacks as ``host, port, handler``. ``protocols`` holds every protocol
    instance the factory made, in connection order.
    """

    host: str
    port: int
    handler: Any
    loop: asyncio.AbstractEventLoop
    protocols: list[Any] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.host, self.port, self.handler))

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = READ_TIMEOUT) -> _T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class _ServerThread:
    """One event loop in a daemon thread, serving one or more servers."""

    def __init__(self, kind: str) -> None:
        self.loop = new_loop(kind)
        self.servers: list[tuple[asyncio.AbstractServer, RunningServer]] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def start(self, handler: Any, factory: Callable[[], Any]) -> RunningServer:
        running = RunningServer(HOST, 0, handler, self.loop)

        def counted() -> Any:
            protocol = factory()
            running.protocols.append(protocol)
            return protocol

        async def create() -> asyncio.AbstractServer:
            return await self.loop.create_server(counted, HOST, 0)

        server = asyncio.run_coroutine_threadsafe(create(), self.loop).result(READ_TIMEOUT)
        running.port = server.sockets[0].getsockname()[1]
        self.servers.append((server, running))
        return running

    def stop(self) -> None:
        async def shut() -> None:
            for server, running in self.servers:
                server.close()
                for protocol in running.protocols:
                    transport = getattr(protocol, "transport", None)
                    if transport is not None:
                        transport.abort()
            await asyncio.sleep(0)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(READ_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(READ_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()


@pytest.fixture
def loop_kind() -> str:
    """The event loop the ``server`` fixture runs on; parametrize to change it."""
    return "asyncio"


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server(loop_kind: str) -> Iterator[ServerFactory]:
    """Start SMTP servers on loopback; they stop when the test ends.

    Call it as ``server(handler, **smtp_kwargs)`` to serve
    ``SMTP(handler, **smtp_kwargs)``, as ``server(handler, cls=MySMTP, ...)``
    for a subclass, or ``server(handler, factory=callable)`` for a protocol
    factory of your own. It returns a :class:`RunningServer`. Unless given,
    ``hostname`` is ``"smtp.example.test"`` and the handler a :class:`Recorder`.
    """
    thread: _ServerThread | None = None

    def start(
        handler: Any = None,
        *,
        cls: type[Any] = SMTP,
        factory: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> RunningServer:
        nonlocal thread
        if thread is None:
            thread = _ServerThread(loop_kind)
        if handler is None:
            handler = Recorder()
        if factory is None:
            kwargs.setdefault("hostname", "smtp.example.test")

            def factory() -> Any:
                return cls(handler, **kwargs)

        return thread.start(handler, factory)

    yield start
    if thread is not None:
        thread.stop()


# ----------------------------------------------------------------------
# A handler that keeps what it receives


class Recorder:
    """Keeps a copy of every envelope delivered through ``handle_DATA``.

    Attributes:
        envelopes: copies of the delivered envelopes, in order.
        sessions: the session of each delivery (the same object while one
            connection lasts).
        delivered: set once a message arrives.
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.sessions: list[Session] = []
        self.delivered = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(copy.deepcopy(envelope))
        self.sessions.append(session)
        self.delivered.set()
        return "250 OK"


@pytest.fixture
def recorder() -> Recorder:
    """A fresh :class:`Recorder` handler."""
    return Recorder()


# ----------------------------------------------------------------------
# A raw-socket client


class RawClient:
    """A blocking TCP client that sends bytes and reads SMTP replies.

    Every read waits at most ``timeout`` seconds; running out fails the
    test with what was read so far.
    """

    def __init__(self, host: str, port: int, timeout: float = READ_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self._buf = b""

    def send(self, data: bytes | str) -> None:
        """Send ``data`` (a str is encoded as UTF-8) in one ``sendall``."""
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _receive(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"no reply within {self.timeout} s; buffered {self._buf[-500:]!r}")
        if not chunk:
            pytest.fail(f"connection closed while waiting; buffered {self._buf[-500:]!r}")
        self._buf += chunk

    def line(self) -> str:
        """Read one reply line, without its CRLF."""
        while b"\r\n" not in self._buf:
            self._receive()
        raw, self._buf = self._buf.split(b"\r\n", 1)
        return raw.decode("utf-8", "replace")

    def lines(self, count: int) -> list[str]:
        """Read ``count`` reply lines."""
        found = self._buf.count(b"\r\n")
        while found < count:
            before = len(self._buf)
            self._receive()
            # Count only in the new bytes (and a CRLF split across reads).
            found += self._buf.count(b"\r\n", max(0, before - 1))
        *taken, rest = self._buf.split(b"\r\n", count)
        self._buf = rest
        return [raw.decode("utf-8", "replace") for raw in taken]

    def reply(self) -> list[str]:
        """Read one whole (possibly multi-line) reply; return its lines."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines

    def replies(self, count: int) -> list[list[str]]:
        """Read ``count`` whole replies."""
        return [self.reply() for _ in range(count)]

    def command(self, text: str) -> str:
        """Send one command line and return the last line of its reply."""
        self.send(text + "\r\n")
        return self.reply()[-1]

    def closed(self) -> bool:
        """Whether the server closed the connection (after any unread bytes)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self._buf += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def silent(self, wait: float = 0.3) -> bool:
        """Whether the server sends nothing more within ``wait`` seconds."""
        if self._buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self._buf += chunk
        return False

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------
# The standard clients, sending one command line at a time


@dataclass(frozen=True)
class Data:
    """A dialog step: send ``DATA`` and then ``body`` with the client's own method.

    The client dot-stuffs the body and ends it with ``<CRLF>.<CRLF>``.
    """

    body: str


Step = str | Data


def _smtplib_step(client: smtplib.SMTP, step: Step) -> tuple[int, bytes]:
    if isinstance(step, Data):
        try:
            return client.data(step.body)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error
    return client.docmd(step)


def _smtplib_dialog(port: int, steps: list[Step]) -> list[str]:
    replies = []
    client = smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=READ_TIMEOUT)
    client.command_encoding = "utf-8"
    try:
        for step in steps:
            code, text = _smtplib_step(client, step)
            replies.append(f"{code} {text.decode('utf-8', 'replace')}")
    finally:
        client.close()
    return replies


async def _aiosmtplib_step(client: aiosmtplib.SMTP, step: Step) -> aiosmtplib.SMTPResponse:
    try:
        if isinstance(step, Data):
            return await client.data(step.body)
        verb, _, arg = step.partition(" ")
        # Greet through the client's own methods, so that it knows it greeted.
        if verb.upper() == "HELO" and arg:
            return await client.helo(hostname=arg)
        if verb.upper() == "EHLO" and arg:
            return await client.ehlo(hostname=arg)
        return await client.execute_command(step.encode())
    except aiosmtplib.SMTPResponseException as error:
        return aiosmtplib.SMTPResponse(error.code, error.message)


async def _aiosmtplib_dialog(port: int, steps: list[Step]) -> list[str]:
    replies = []
    client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=READ_TIMEOUT)
    await client.connect()
    try:
        for step in steps:
            response = await _aiosmtplib_step(client, step)
            replies.append(f"{response.code} {response.message}")
    finally:
        client.close()
    return replies


def dialog(client_kind: str, port: int, steps: list[Step]) -> list[str]:
    """Run ``steps`` one by one with a standard client; return the replies.

    A step is a command line, or :class:`Data` to send a message. Each reply
    is ``"<code> <text>"``; the lines of a multi-line reply are joined with
    ``\\n`` in ``<text>``. The connection is closed without ``QUIT``.
    """
    if client_kind == "smtplib":
        return _smtplib_dialog(port, steps)
    if client_kind == "aiosmtplib":
        return asyncio.run(_aiosmtplib_dialog(port, steps))
    raise ValueError(f"client_kind must be one of {CLIENT_KINDS}, not {client_kind!r}")


@pytest.fixture(params=CLIENT_KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    """Each of the standard clients, in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def talk(client_kind: str) -> Callable[[int, list[Step]], list[str]]:
    """``talk(port, steps)``: :func:`dialog` with the current ``client_kind``."""

    def run(port: int, steps: list[Step]) -> list[str]:
        return dialog(client_kind, port, steps)

    return run


@pytest.fixture
def raw() -> Iterator[Callable[..., RawClient]]:
    """Open raw connections: ``raw(port)`` reads the 220 greeting first."""
    clients: list[RawClient] = []

    def connect(port: int, *, greeting: bool = True, timeout: float = READ_TIMEOUT) -> RawClient:
        client = RawClient(HOST, port, timeout)
        clients.append(client)
        if greeting:
            first = client.line()
            assert first.startswith("220 "), first
        return client

    yield connect
    for client in clients:
        client.close()


#: Long-running tests whose outcome does not depend on the Python version (executed
#: docs, load and timing runs, examples, worker and reload processes, mypy, the
#: benchmark's own harness, the capture UI's page tests and the subprocess-heavy CLI
#: target tests): marked ``slow``, so scripts/test.sh runs them on the main Python only.
SLOW = (
    "bench/",
    "capture/",
    "cli/test_targets.py",
    "docs/",
    "reliability/",
    "browser/",
    "test_examples.py",
    "cli/test_workers.py",
    "cli/test_reload.py",
    "cli/test_deploy.py",
    "routing/test_typing.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests under ``SLOW`` as ``slow``."""
    tests = config.rootpath / "tests"
    for item in items:
        if item.path.is_relative_to(tests):
            where = item.path.relative_to(tests).as_posix()
            if where.startswith(SLOW):
                item.add_marker(pytest.mark.slow)
