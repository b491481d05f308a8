"""The App as a whole: compiling, freezing, lifespan, exception handlers, ways to serve it."""

from __future__ import annotations

import errno
import os
import signal
import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import smtpkit
from smtpkit import SMTP, App, Envelope, ServerConfig, Session
from smtpkit.controller import Controller
from smtpkit.routing import RoutedMessage

from .helpers import HOST, MESSAGE, TIMEOUT, ServeApp


def ping_app(**kwargs: Any) -> App:
    app = App(**kwargs)

    @app.command("PING", syntax="PING [ignored]")
    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 Pong")

    return app


# -- compiling ----------------------------------------------------------------


def test_build_returns_a_real_subclass_and_a_handler() -> None:
    app = ping_app()

    @app.hook("NOOP")
    async def noop(server: SMTP, session: Session, envelope: Envelope, arg: str | None) -> None:
        return None

    cls, handler = app.build()
    assert issubclass(cls, SMTP)
    assert cls.__name__ == "AppSMTP"
    assert "smtp_PING" in vars(cls)
    assert callable(handler.handle_NOOP)  # type: ignore[attr-defined]
    assert not hasattr(handler, "handle_RCPT")
    # Compiled once.
    assert app.build() == (cls, handler)
    assert app.smtp_class is cls and app.handler is handler


def test_compiled_class_defaults_to_the_app_handler_and_config() -> None:
    app = ping_app(config=ServerConfig(hostname="mx.example.test"))
    server = app.smtp_class()
    assert server.event_handler is app.handler
    assert server.hostname == "mx.example.test"
    # Keywords still win over the config, as for SMTP(config=...).
    assert app.smtp_class(hostname="other.test").hostname == "other.test"


def test_config_must_be_a_server_config() -> None:
    with pytest.raises(TypeError, match=r"config=\{'hostname': 'x'\}: expected a ServerConfig"):
        App({"hostname": "x"})  # type: ignore[arg-type]


def test_server_class_must_be_smtp() -> None:
    with pytest.raises(TypeError, match=r"server_class=<class 'int'>: expected SMTP"):
        App(server_class=int)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("compile_with", "by"),
    [
        (lambda app: app.build(), "build()"),
        (lambda app: app.handler, "app.handler"),
        (lambda app: app.smtp_class, "app.smtp_class"),
        (lambda app: app.protocol_factory(), "app.protocol_factory()"),
    ],
)
def test_registration_after_compiling_raises(compile_with: Callable[[App], Any], by: str) -> None:
    app = ping_app()
    compile_with(app)

    async def pong(server: SMTP, arg: str | None) -> None:
        return None

    with pytest.raises(RuntimeError) as error:
        app.add_command("PONG", pong)
    message = str(error.value)
    assert message.startswith("cannot add the command 'PONG': the app 'app' was already compiled")
    assert f"(by {by})" in message
    assert "register everything before building, serving" in message
    with pytest.raises(RuntimeError, match="cannot add the route 'pong'"):
        app.add_route("x@example.com", pong)  # type: ignore[type-var]
    with pytest.raises(RuntimeError, match="cannot register the blueprint 'late'"):
        app.register_blueprint(smtpkit.Blueprint("late"))


def test_registration_while_serving_raises(serve_app: ServeApp) -> None:
    app = ping_app()
    serve_app(app)

    with pytest.raises(RuntimeError, match=r"cannot add the hook 'RSET'.*\(by app\.serve\(\)\)"):

        @app.hook("RSET")
        async def late(server: SMTP, session: Session, envelope: Envelope) -> None:
            return None


# -- lifespan -----------------------------------------------------------------


def test_lifespan_state_reaches_each_session(serve_app: ServeApp) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Mapping[str, Any]]:
        events.append("start")
        yield {"greeting": "hello", "counter": 0}
        events.append("stop")

    app = App(lifespan=lifespan)

    @app.command("STATE")
    async def state(server: SMTP, arg: str | None) -> None:
        assert server.session is not None
        session_state = server.session.state
        session_state["counter"] += 1
        await server.push(f"250 {session_state['greeting']} {session_state['counter']}")

    served = serve_app(app)
    assert events == ["start"]
    assert dict(app.state) == {"greeting": "hello", "counter": 0}
    with served.client() as first, served.client() as second:
        assert first.docmd("STATE") == (250, b"2.0.0 hello 1")
        assert first.docmd("STATE") == (250, b"2.0.0 hello 2")
        # A copy per session.
        assert second.docmd("STATE") == (250, b"2.0.0 hello 1")
    served.stop()
    assert events == ["start", "stop"]
    assert dict(app.state) == {}


def test_lifespan_must_yield_a_mapping(serve_app: ServeApp) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Any]:
        yield ["not", "a", "mapping"]

    with pytest.raises(TypeError, match=r"lifespan of app 'app' yielded \['not'"):
        serve_app(App(lifespan=lifespan))


# -- exception handlers -------------------------------------------------------


class MailError(Exception):
    pass


class QuotaError(MailError):
    pass


def test_exception_handlers_most_specific_wins(serve_app: ServeApp) -> None:
    app = App()

    @app.command("RAISE")
    async def raise_(server: SMTP, arg: str | None) -> None:
        errors: dict[str, Exception] = {
            "quota": QuotaError(),
            "mail": MailError(),
            "key": KeyError("x"),
            "none": ValueError("handler returns None"),
            "bad": TypeError("handler raises"),
        }
        raise errors[arg or ""]

    @app.exception_handler(MailError)
    async def mail_error(error: MailError) -> str:
        return "451 4.3.0 mail error"

    @app.exception_handler(QuotaError)
    def quota_error(error: QuotaError) -> str:
        return "452 4.2.2 over quota"

    @app.exception_handler(ValueError)
    async def says_nothing(error: ValueError) -> None:
        return None

    @app.exception_handler(TypeError)
    async def raises(error: TypeError) -> str:
        raise RuntimeError("oops")

    with serve_app(app).client() as client:
        assert client.docmd("RAISE", "quota") == (452, b"4.2.2 over quota")
        assert client.docmd("RAISE", "mail") == (451, b"4.3.0 mail error")
        fallback = (451, b"4.3.0 Requested action aborted: local error in processing")
        assert client.docmd("RAISE", "key") == fallback
        assert client.docmd("RAISE", "none") == fallback
        assert client.docmd("RAISE", "bad") == fallback


def test_exception_handler_needs_an_exception_class() -> None:
    with pytest.raises(TypeError, match="expected an Exception subclass"):
        App().exception_handler(int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exception handler for MailError is registered twice"):
        app = App()
        app.add_exception_handler(MailError, lambda error: None)
        app.add_exception_handler(MailError, lambda error: None)


# -- other ways to serve ------------------------------------------------------


def test_protocol_factory_for_create_server(server: Callable[..., Any]) -> None:
    app = ping_app(config=ServerConfig(hostname="mx.example.test"))
    running = server(factory=app.protocol_factory())
    with smtplib.SMTP(HOST, running.port, timeout=TIMEOUT) as client:
        assert client.docmd("PING") == (259, b"2.0.0 Pong")
        assert client.ehlo()[1].startswith(b"mx.example.test")


def test_protocol_factory_shares_a_connection_limiter(server: Callable[..., Any]) -> None:
    config = ServerConfig(hostname="mx.example.test").replace(
        **{"limits.max_connections_per_ip": 1}
    )
    factory = ping_app(config=config).protocol_factory()
    assert factory().connection_limiter is factory().connection_limiter
    running = server(factory=factory)
    with socket.create_connection((HOST, running.port), timeout=TIMEOUT) as first:
        assert first.recv(100).startswith(b"220 ")
        with socket.create_connection((HOST, running.port), timeout=TIMEOUT) as second:
            assert second.recv(100).startswith(b"421 4.7.0")


@pytest.fixture
def controller_app() -> Iterator[tuple[App, list[str]]]:
    app = ping_app()
    delivered: list[str] = []

    @app.route("(user)@example.com")
    def inbox(message: RoutedMessage) -> None:
        # A plain function: it runs in a thread, also on a Controller's loop.
        delivered.append(message.capture["user"])

    yield app, delivered


def test_controller_with_the_app_handler(controller_app: tuple[App, list[str]]) -> None:
    app, delivered = controller_app
    # The handler alone brings hooks and routes to a plain SMTP.
    controller = Controller(app.handler, hostname=HOST, port=0)
    controller.start()
    try:
        with smtplib.SMTP(HOST, controller.port, timeout=TIMEOUT) as client:
            refused = client.sendmail("x@example.net", ["anne@example.com", "b@x.org"], MESSAGE)
            assert list(refused) == ["b@x.org"]
            assert client.docmd("PING")[0] == 500
    finally:
        controller.stop()
    assert delivered == ["anne"]


def test_controller_with_the_app_class(controller_app: tuple[App, list[str]]) -> None:
    app, delivered = controller_app

    class AppController(Controller):
        def factory(self) -> SMTP:
            return app.smtp_class(self.handler, **self.SMTP_kwargs)

    controller = AppController(app.handler, hostname=HOST, port=0)
    controller.start()
    try:
        with smtplib.SMTP(HOST, controller.port, timeout=TIMEOUT) as client:
            assert client.docmd("PING") == (259, b"2.0.0 Pong")
            assert client.sendmail("x@example.net", ["bart@example.com"], MESSAGE) == {}
    finally:
        controller.stop()
    assert delivered == ["bart"]


def test_serve_stops_on_the_event_and_says_goodbye(serve_app: ServeApp) -> None:
    served = serve_app(ping_app())
    with socket.create_connection((HOST, served.port), timeout=TIMEOUT) as sock:
        greeting = sock.recv(1024)
        assert greeting.startswith(b"220 ")
        served.stop()
        assert served.future.done()
        goodbye = b""
        while chunk := sock.recv(1024):
            goodbye += chunk
        assert goodbye.startswith(b"421 4.3.2")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, served.port), timeout=TIMEOUT)


# -- the package --------------------------------------------------------------


def test_public_names_are_imported_lazily() -> None:
    code = textwrap.dedent(
        """
        import sys
        import smtpkit
        assert "smtpkit.routing" not in sys.modules, "routing imported"
        assert "anyio" not in sys.modules, "anyio imported"
        from smtpkit import App, Blueprint, ServerConfig, SMTP, Controller, Session, Envelope
        from smtpkit import AuthResult, LoginPassword, syntax, auth_mechanism, __version__
        import smtpkit.routing, smtpkit.smtp, smtpkit.controller
        assert App is smtpkit.routing.App and SMTP is smtpkit.smtp.SMTP
        assert Controller is smtpkit.controller.Controller
        assert "App" in dir(smtpkit)
        try:
            smtpkit.Nope
        except AttributeError as error:
            assert "has no attribute 'Nope'" in str(error)
        else:
            raise AssertionError("smtpkit.Nope exists")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


RUN_SCRIPT = """
import sys
from smtpkit import App, ServerConfig

app = App(ServerConfig.load(overrides={{"listen.unix_socket": sys.argv[1], "loop": "{loop}"}}))

@app.command("PING")
async def ping(server, arg):
    await server.push("259 Pong")

app.run()
print("stopped")
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_serves_until_interrupted(tmp_path: Path, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    path = str(tmp_path / "smtp.sock")
    script = tmp_path / "serve.py"
    script.write_text(RUN_SCRIPT.format(loop=loop))
    env = {**os.environ, "SMTPKIT_HOSTNAME": "mx.example.test"}
    process = subprocess.Popen(
        [sys.executable, str(script), path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        reply = _talk_over_unix_socket(path, process)
        assert reply.startswith(b"220 mx.example.test")
        assert b"259 2.0.0 Pong" in reply
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip() == b"stopped"
    assert not os.path.exists(path)


def test_run_stops_at_once_on_a_second_interrupt(tmp_path: Path) -> None:
    # A session in the middle of DATA keeps the graceful drain waiting (here
    # up to 300 s); the second SIGINT must end it long before that.
    path = str(tmp_path / "smtp.sock")
    script = tmp_path / "serve.py"
    script.write_text(
        RUN_SCRIPT.format(loop="asyncio").replace(
            '"loop": "asyncio"', '"loop": "asyncio", "workers.graceful_timeout": 300'
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script), path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _talk_over_unix_socket(path, process)
        with socket.socket(socket.AF_UNIX) as busy:
            busy.settimeout(TIMEOUT)
            busy.connect(path)
            busy.recv(1024)
            busy.sendall(b"HELO client\r\nMAIL FROM:<a@example.com>\r\n")
            busy.sendall(b"RCPT TO:<b@example.com>\r\nDATA\r\n")
            reply = b""
            while b"354" not in reply:
                reply += busy.recv(1024)
            process.send_signal(signal.SIGINT)
            _wait_until_refused(path, process)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip() == b"stopped"


def _wait_until_refused(path: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until the server has stopped accepting: the first signal is being handled."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                return
        time.sleep(0.05)
    raise AssertionError("the server still accepts connections after SIGINT")


def _talk_over_unix_socket(path: str, process: subprocess.Popen[bytes]) -> bytes:
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the server did not create its socket"
        time.sleep(0.02)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        # The file exists once bound, a moment before the server listens on it.
        while sock.connect_ex(path) == errno.ECONNREFUSED:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server did not listen on its socket"
            time.sleep(0.02)
        reply = sock.recv(1024)
        sock.sendall(b"PING\r\n")
        while b"259" not in reply:
            reply += sock.recv(1024)
    return reply
