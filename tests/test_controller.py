"""Tests of the controllers, over real sockets with real clients."""

from __future__ import annotations

import asyncio
import doctest
import errno
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from smtpkit.controller import (
    DEFAULT_READY_TIMEOUT,
    READY_TIMEOUT_ENV,
    Controller,
    UnixSocketController,
    UnixSocketUnthreadedController,
    UnthreadedController,
    get_localhost,
)
from smtpkit.handlers import Mailbox, Sink
from smtpkit.smtp import SMTP

HOST = "127.0.0.1"
MESSAGE = "Subject: hello\r\n\r\nHello.\r\n"


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def thread_count() -> Iterator[None]:
    """Fail the test if it leaves threads behind."""
    before = threading.active_count()
    yield
    assert threading.active_count() == before


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def read_reply(reader: Any) -> bytes:
    """Read one (possibly multi-line) SMTP reply from a socket file."""
    lines = [reader.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(reader.readline())
    return b"".join(lines)


# -- the threaded TCP controller -------------------------------------------


@pytest.mark.usefixtures("thread_count")
def test_start_send_stop() -> None:
    controller = Controller(Sink(), port=0)
    assert controller.hostname == get_localhost()
    controller.start()
    try:
        assert controller.port != 0
        with smtplib.SMTP(controller.hostname, controller.port) as client:
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    finally:
        controller.stop()
    assert refused(controller.hostname, controller.port)
    assert controller.server is None
    assert controller.smtpd is None


@pytest.mark.usefixtures("thread_count")
def test_stop_twice_and_start_twice() -> None:
    controller = Controller(Sink(), hostname=HOST, port=0)
    controller.start()
    with pytest.raises(RuntimeError, match="already running"):
        controller.start()
    controller.stop()
    with pytest.raises(AssertionError, match="not running"):
        controller.stop()
    controller.stop(no_assert=True)


@pytest.mark.usefixtures("thread_count")
def test_restart_after_stop() -> None:
    controller = Controller(Sink(), hostname=HOST, port=0)
    for _ in range(2):
        controller.start()
        with smtplib.SMTP(HOST, controller.port) as client:
            assert client.noop()[0] == 250
        controller.stop()


@pytest.mark.usefixtures("thread_count")
def test_stop_closes_open_connections() -> None:
    controller = Controller(Sink(), hostname=HOST, port=0)
    controller.start()
    with socket.create_connection((HOST, controller.port)) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        controller.stop()
        # An idle client is told the service is closing, then disconnected.
        assert reader.readline().startswith(b"421")
        assert reader.readline() == b""
        reader.close()


@pytest.mark.usefixtures("thread_count")
def test_stop_from_many_threads() -> None:
    controller = Controller(Sink(), hostname=HOST, port=0)
    controller.start()
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            controller.stop(no_assert=True)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=stop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert refused(HOST, controller.port)


@pytest.mark.usefixtures("thread_count")
@pytest.mark.parametrize(("bind", "connect"), [("0.0.0.0", "127.0.0.1"), ("::", "::1")])
def test_bind_all_interfaces(bind: str, connect: str) -> None:
    if ":" in bind and not has_ipv6():
        pytest.skip("this machine has no IPv6")
    controller = Controller(Sink(), hostname=bind, port=0)
    controller.start()
    try:
        assert controller.hostname == bind
        with smtplib.SMTP(connect, controller.port) as client:
            assert client.noop()[0] == 250
    finally:
        controller.stop()


@pytest.mark.usefixtures("thread_count")
def test_port_in_use_raises_oserror() -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        controller = Controller(Sink(), hostname=HOST, port=busy.getsockname()[1])
        with pytest.raises(OSError) as raised:
            controller.start()
        assert raised.value.errno == errno.EADDRINUSE
        controller.stop()  # a failed start already cleaned up: nothing to do


class FactoryError(Exception):
    pass


@pytest.mark.usefixtures("thread_count")
def test_factory_exception_reaches_start() -> None:
    error = FactoryError("no server today")

    class Failing(Controller):
        def factory(self) -> SMTP:
            raise error

    controller = Failing(Sink(), hostname=HOST, port=0)
    with pytest.raises(FactoryError, match="no server today") as raised:
        controller.start()
    assert raised.value is error
    port = controller.port
    controller.stop()
    assert refused(HOST, port)


@pytest.mark.usefixtures("thread_count")
def test_factory_returning_none() -> None:
    class Empty(Controller):
        def factory(self) -> Any:
            return None

    with pytest.raises(RuntimeError, match="returned None"):
        Empty(Sink(), hostname=HOST, port=0).start()


@pytest.mark.usefixtures("thread_count")
def test_readiness_check_wants_a_220_greeting() -> None:
    class Grumpy(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"554 no service here\r\n")
            transport.close()

    class Odd(Controller):
        def factory(self) -> Any:
            return Grumpy()

    with pytest.raises(RuntimeError, match="220 greeting"):
        Odd(Sink(), hostname=HOST, port=0).start()


@pytest.mark.usefixtures("thread_count")
def test_silent_server_times_out() -> None:
    class Silent(asyncio.Protocol):
        pass

    class Mute(Controller):
        def factory(self) -> Any:
            return Silent()

    controller = Mute(Sink(), hostname=HOST, port=0, ready_timeout=0.5)
    with pytest.raises(TimeoutError, match=r"ready_timeout=0\.5"):
        controller.start()
    assert refused(HOST, controller.port)


@pytest.mark.usefixtures("thread_count")
def test_factory_failure_after_start_gives_421() -> None:
    class Flaky(Controller):
        broken = False

        def factory(self) -> SMTP:
            if self.broken:
                raise FactoryError("broken now")
            return super().factory()

    controller = Flaky(Sink(), hostname=HOST, port=0)
    controller.start()
    try:
        controller.broken = True
        with socket.create_connection((HOST, controller.port)) as sock:
            assert sock.makefile("rb").readline().startswith(b"421 ")
    finally:
        controller.stop()


def test_smtp_keyword_arguments() -> None:
    controller = Controller(Sink(), server_hostname="mx.example.test", timeout=20)
    assert controller.SMTP_kwargs == {
        "hostname": "mx.example.test",
        "timeout": 20,
        "enable_SMTPUTF8": True,
    }
    with pytest.warns(DeprecationWarning, match="server_kwargs"):
        old_style = Controller(Sink(), timeout=200, server_kwargs={"timeout": 400, "ident": "x"})
    assert old_style.SMTP_kwargs["timeout"] == 200
    assert old_style.SMTP_kwargs["ident"] == "x"


@pytest.mark.usefixtures("thread_count")
def test_smtp_keyword_arguments_reach_the_server() -> None:
    controller = Controller(Sink(), hostname=HOST, port=0, server_hostname="mx.example.test")
    controller.start()
    try:
        with smtplib.SMTP(HOST, controller.port) as client:
            code, text = client.ehlo()
            assert code == 250
            assert text.splitlines()[0] == b"mx.example.test"
            assert client.has_extn("smtputf8")
    finally:
        controller.stop()


def test_ready_timeout_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READY_TIMEOUT_ENV, raising=False)
    assert Controller(Sink()).ready_timeout == DEFAULT_READY_TIMEOUT
    monkeypatch.setenv(READY_TIMEOUT_ENV, "7.5")
    assert Controller(Sink(), ready_timeout=1.0).ready_timeout == 7.5
    monkeypatch.setenv(READY_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=f"{READY_TIMEOUT_ENV}='soon'"):
        Controller(Sink())


@pytest.mark.usefixtures("thread_count")
def test_no_thread_left_after_mailbox_delivery(tmp_path: Path) -> None:
    # Mailbox writes in worker threads: stop() must take those down too.
    controller = Controller(Mailbox(tmp_path / "md"), hostname=HOST, port=0)
    controller.start()
    with smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    controller.stop()
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1


# -- implicit TLS -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for localhost, and a client trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.usefixtures("thread_count")
def test_implicit_tls_with_smtplib(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls
    controller = Controller(Sink(), hostname=HOST, port=0, ssl_context=server_context)
    controller.start()
    try:
        with smtplib.SMTP_SSL(HOST, controller.port, context=client_context) as client:
            assert client.ehlo()[0] == 250
            assert not client.has_extn("starttls")
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
            assert client.sock.version() is not None
        # A plain-text client gets no greeting from a TLS port.
        with socket.create_connection((HOST, controller.port)) as sock:
            sock.settimeout(5)
            sock.sendall(b"EHLO me\r\n")
            assert not sock.recv(1024).startswith(b"2")
    finally:
        controller.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_implicit_tls_with_aiosmtplib(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls
    controller = Controller(Sink(), hostname=HOST, port=0, ssl_context=server_context)
    controller.start()
    try:
        client = aiosmtplib.SMTP(
            hostname=HOST, port=controller.port, use_tls=True, tls_context=client_context
        )
        async with client:
            errors, _ = await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert errors == {}
    finally:
        controller.stop()


# -- Unix sockets ---------------------------------------------------------------


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    path = tmp_path / "smtp.sock"
    if len(str(path)) > 100:
        pytest.skip("the temporary directory path is too long for a Unix socket")
    return str(path)


def unix_dialog(path: str) -> None:
    """Speak a short SMTP session over the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        reader = sock.makefile("rb")
        assert read_reply(reader).startswith(b"220 ")
        sock.sendall(b"HELO example.org\r\n")
        assert read_reply(reader).startswith(b"250 ")
        sock.sendall(b"QUIT\r\n")
        assert read_reply(reader).startswith(b"221 ")
        reader.close()


@pytest.mark.usefixtures("thread_count")
def test_unix_socket_controller(socket_path: str) -> None:
    controller = UnixSocketController(Sink(), unix_socket=Path(socket_path))
    assert controller.unix_socket == socket_path
    controller.start()
    try:
        unix_dialog(socket_path)
    finally:
        controller.stop()
    assert not Path(socket_path).exists()


@pytest.mark.usefixtures("thread_count")
def test_unix_socket_unthreaded_controller(socket_path: str) -> None:
    loop = asyncio.new_event_loop()
    controller = UnixSocketUnthreadedController(Sink(), unix_socket=socket_path, loop=loop)
    controller.begin()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        unix_dialog(socket_path)
    finally:
        loop.call_soon_threadsafe(controller.end)
        assert controller.ended.wait(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    assert not Path(socket_path).exists()


# -- the unthreaded TCP controller ----------------------------------------------


@pytest.mark.usefixtures("thread_count")
def test_unthreaded_controller_on_own_loop() -> None:
    loop = asyncio.new_event_loop()
    controller = UnthreadedController(Sink(), hostname=HOST, port=0, loop=loop)
    assert controller.loop is loop
    controller.begin()
    assert controller.port != 0

    async def send() -> dict[str, Any]:
        client = aiosmtplib.SMTP(hostname=HOST, port=controller.port)
        async with client:
            errors, _ = await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        return errors

    try:
        assert loop.run_until_complete(send()) == {}
    finally:
        controller.end()  # the loop is not running: finalize() runs here
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert controller.ended.is_set()
    assert controller.server is None
    assert refused(HOST, controller.port)


def test_unthreaded_end_from_inside_the_loop() -> None:
    loop = asyncio.new_event_loop()
    controller = UnthreadedController(Sink(), hostname=HOST, port=0, loop=loop)
    controller.begin()

    async def stop_soon() -> None:
        controller.end()  # schedules finalize() on this running loop
        while not controller.ended.is_set():
            await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(stop_soon())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert refused(HOST, controller.port)


def test_unthreaded_factory_exception_reaches_begin() -> None:
    error = FactoryError("not on this loop")

    class Failing(UnthreadedController):
        def factory(self) -> SMTP:
            raise error

    loop = asyncio.new_event_loop()
    controller = Failing(Sink(), hostname=HOST, port=0, loop=loop)
    try:
        with pytest.raises(FactoryError) as raised:
            controller.begin()
        assert raised.value is error
        assert refused(HOST, controller.port)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# -- the documented example, run as written -------------------------------------

SEED_EXAMPLE = """
>>> from smtpkit.controller import Controller
>>> import asyncio
>>> from smtpkit.smtp import SMTP as Server, syntax
>>> class MyServer(Server):
...     @syntax('PING [ignored]')
...     async def smtp_PING(self, arg):
...         await self.push('259 Pong')
>>> from smtpkit.handlers import Sink
>>> class MyController(Controller):
...     def factory(self):
...         return MyServer(self.handler)
>>> controller = MyController(Sink())
>>> controller.start()
>>> from smtplib import SMTP as Client
>>> client = Client(controller.hostname, controller.port)
>>> code, message = client.docmd('PING')
>>> code
259
>>> message
b'Pong'
>>> print(client.help().decode('utf-8'))
Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP PING QUIT RCPT RSET VRFY
>>> print(client.help('PING').decode('utf-8'))
Syntax: PING [ignored]
>>> controller.stop()
"""


def port_8025_free() -> bool:
    # The example uses the default port; it cannot run while something else has it.
    try:
        with socket.socket(socket.AF_INET6 if ":" in get_localhost() else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            sock.bind((get_localhost(), 8025))
    except OSError:
        return False
    return True


@pytest.mark.usefixtures("thread_count")
def test_documented_ping_example() -> None:
    if not port_8025_free():
        pytest.skip("port 8025, the example's default, is in use")
    test = doctest.DocTestParser().get_doctest(SEED_EXAMPLE, {}, "ping example", None, 0)
    output: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    try:
        runner.run(test, out=output.append, clear_globs=False)
    finally:
        client = test.globs.get("client")
        if client is not None:
            client.close()
        controller = test.globs.get("controller")
        if controller is not None:
            controller.stop(no_assert=True)
        test.globs.clear()
    assert runner.failures == 0, "".join(output)
    assert runner.tries == 16
