"""The documented surface of smtpkit.smtp: names, constructor, attributes, methods."""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from conftest import LOOP_KINDS, RawClient, Step, dialog

import smtpkit.smtp
from smtpkit.smtp import (
    CALL_LIMIT_DEFAULT,
    DATA_SIZE_DEFAULT,
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    auth_mechanism,
    login_always_fail,
    syntax,
)

# -- Module-level names --------------------------------------------------------

DOCUMENTED_NAMES = [
    "SMTP",
    "Session",
    "Envelope",
    "AuthResult",
    "LoginPassword",
    "MISSING",
    "syntax",
    "auth_mechanism",
    "login_always_fail",
    "AuthenticatorType",
    "AuthCallbackType",
    "AuthMechanismType",
    "CALL_LIMIT_DEFAULT",
    "DATA_SIZE_DEFAULT",
    "BOGUS_LIMIT",
    "ALLOWED_BEFORE_STARTTLS",
    "TLSSetupException",
    "__ident__",
    "__version__",
]


@pytest.mark.parametrize("name", DOCUMENTED_NAMES)
def test_documented_name_exists(name: str) -> None:
    assert hasattr(smtpkit.smtp, name)


def test_all_names_exist() -> None:
    for name in smtpkit.smtp.__all__:
        assert hasattr(smtpkit.smtp, name), name
    star: dict[str, Any] = {}
    exec("from smtpkit.smtp import *", star)
    for name in ("SMTP", "Session", "Envelope", "MISSING", "syntax", "auth_mechanism"):
        assert name in star


def test_constants() -> None:
    assert CALL_LIMIT_DEFAULT == 20
    assert DATA_SIZE_DEFAULT == 33554432
    assert smtpkit.smtp.BOGUS_LIMIT == 5
    assert set(smtpkit.smtp.ALLOWED_BEFORE_STARTTLS) == {"NOOP", "EHLO", "STARTTLS", "QUIT"}
    assert repr(MISSING) == "MISSING"
    assert not isinstance(MISSING, (str, bytes, bool))


def test_smtp_is_a_stream_reader_protocol() -> None:
    assert issubclass(SMTP, asyncio.StreamReaderProtocol)


def test_login_password_hides_the_password() -> None:
    credentials = LoginPassword(b"anne", b"sesame")
    assert credentials == (b"anne", b"sesame")
    assert credentials.login == b"anne"
    assert credentials.password == b"sesame"
    assert "sesame" not in repr(credentials)
    assert "sesame" not in str(credentials)


def test_auth_result_fields() -> None:
    result = AuthResult(success=True, auth_data="x")
    assert (result.success, result.handled, result.message, result.auth_data) == (
        True,
        True,
        None,
        "x",
    )


def test_login_always_fail() -> None:
    assert login_always_fail("PLAIN", b"anne", b"sesame") is False


def test_syntax_decorator_returns_the_function() -> None:
    async def smtp_X(self: Any, arg: str | None) -> None:
        return None

    assert syntax("X [arg]", extended=" more")(smtp_X) is smtp_X
    assert smtp_X.__smtp_syntax__ == "X [arg]"  # type: ignore[attr-defined]
    assert smtp_X.__smtp_syntax_extended__ == " more"  # type: ignore[attr-defined]


def test_auth_mechanism_names() -> None:
    async def auth_FOO(self: Any, server: Any, args: list[str]) -> Any:
        return None

    assert auth_mechanism("x-foo_1")(auth_FOO) is auth_FOO
    assert auth_FOO.__auth_mechanism_name__ == "X-FOO_1"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'bad name'"):
        auth_mechanism("bad name")


# -- Constructor ---------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Handler:
    pass


def test_constructor_signature_and_defaults() -> None:
    parameters = inspect.signature(SMTP).parameters
    expected = {
        "data_size_limit": 33554432,
        "enable_SMTPUTF8": False,
        "decode_data": False,
        "hostname": None,
        "ident": None,
        "tls_context": None,
        "require_starttls": False,
        "timeout": 300,
        "auth_required": False,
        "auth_require_tls": True,
        "auth_exclude_mechanism": None,
        "auth_callback": None,
        "authenticator": None,
        "command_call_limit": None,
        "proxy_protocol_timeout": None,
        "loop": None,
    }
    assert next(iter(parameters)) == "handler"
    for name, default in expected.items():
        assert parameters[name].default == default, name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_default_attributes(loop: asyncio.AbstractEventLoop) -> None:
    handler = Handler()
    server = SMTP(handler, loop=loop)
    assert server.event_handler is handler
    assert server.data_size_limit == 33554432
    assert server.enable_SMTPUTF8 is False
    assert server.hostname == socket.getfqdn()
    assert server.tls_context is None
    assert server.require_starttls is False
    assert server.session is None
    assert server.envelope is None
    assert server.transport is None
    assert server.loop is loop
    assert server.line_length_limit == 1001
    assert server.local_part_limit == 0
    assert server.AuthLoginUsernameChallenge == "User Name\x00"
    assert server.AuthLoginPasswordChallenge == "Password\x00"
    assert server.authenticated is False


def test_every_parameter_given(loop: asyncio.AbstractEventLoop) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)

    def authenticator(*args: Any) -> AuthResult:
        return AuthResult(success=False)

    server = SMTP(
        Handler(),
        data_size_limit=1000,
        enable_SMTPUTF8=True,
        decode_data=True,
        hostname="mx.example.test",
        ident="Ident 1",
        tls_context=context,
        require_starttls=True,
        timeout=12.5,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=["LOGIN"],
        authenticator=authenticator,
        command_call_limit={"NOOP": 3},
        proxy_protocol_timeout=5,
        loop=loop,
    )
    assert server.data_size_limit == 1000
    assert server.enable_SMTPUTF8 is True
    assert server.hostname == "mx.example.test"
    assert server.tls_context is context
    assert server.require_starttls is True
    assert server.loop is loop


def test_require_starttls_needs_a_tls_context(loop: asyncio.AbstractEventLoop) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert SMTP(Handler(), require_starttls=True, loop=loop).require_starttls is False
    assert SMTP(Handler(), tls_context=context, loop=loop).require_starttls is False
    assert (
        SMTP(Handler(), tls_context=context, require_starttls=True, loop=loop).require_starttls
        is True
    )


def test_without_a_loop_a_new_one_is_made() -> None:
    server = SMTP(Handler())
    try:
        assert isinstance(server.loop, asyncio.AbstractEventLoop)
        assert not server.loop.is_closed()
    finally:
        server.loop.close()


def test_inside_a_running_loop_that_loop_is_used() -> None:
    async def main() -> tuple[Any, Any]:
        return SMTP(Handler()).loop, asyncio.get_running_loop()

    made, running = asyncio.run(main())
    assert made is running


@pytest.mark.parametrize("limit", [1, 20, {"NOOP": 3}, {"*": 3}, {"noop": 1, "*": 2}, None])
def test_command_call_limit_accepted(loop: asyncio.AbstractEventLoop, limit: Any) -> None:
    SMTP(Handler(), command_call_limit=limit, loop=loop)


@pytest.mark.parametrize("limit", ["10", 1.5, [10], (10,), {"NOOP": "3"}, {"NOOP": 1.0}])
def test_command_call_limit_refused(loop: asyncio.AbstractEventLoop, limit: Any) -> None:
    with pytest.raises(TypeError, match="command_call_limit"):
        SMTP(Handler(), command_call_limit=limit, loop=loop)


@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_proxy_protocol_timeout_must_be_positive(
    loop: asyncio.AbstractEventLoop, value: float
) -> None:
    with pytest.raises(ValueError, match="proxy_protocol_timeout"):
        SMTP(Handler(), proxy_protocol_timeout=value, loop=loop)


@pytest.mark.parametrize("value", [0, -5])
def test_timeout_must_be_positive(loop: asyncio.AbstractEventLoop, value: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        SMTP(Handler(), timeout=value, loop=loop)


def test_data_size_limit_must_be_an_int(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(TypeError, match="data_size_limit"):
        SMTP(Handler(), data_size_limit="1000", loop=loop)  # type: ignore[arg-type]


def test_unknown_keyword_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(TypeError, match="no_such_thing"):
        SMTP(Handler(), no_such_thing=1, loop=loop)


def test_auth_callback_is_deprecated(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.warns(DeprecationWarning, match="auth_callback"):
        SMTP(Handler(), auth_callback=login_always_fail, loop=loop)


def test_auth_required_without_tls_warns(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.warns(UserWarning, match="clear text"):
        SMTP(Handler(), auth_required=True, auth_require_tls=False, loop=loop)


def test_class_attributes_can_be_changed_before_instantiating(
    loop: asyncio.AbstractEventLoop,
) -> None:
    class Roomy(SMTP):
        line_length_limit = 2**16
        local_part_limit = 64

    server = Roomy(Handler(), loop=loop)
    assert server.line_length_limit == 65536
    assert server.local_part_limit == 64


# -- Over real sockets -----------------------------------------------------------


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def test_attributes_of_a_live_connection(server: Any, raw: Callable[..., RawClient]) -> None:
    seen: dict[str, Any] = {}
    done = threading.Event()

    class Inspect:
        async def handle_NOOP(
            self, server: SMTP, session: Session, envelope: Envelope, arg: Any
        ) -> str:
            seen.update(
                session=server.session is session,
                envelope=server.envelope is envelope,
                transport=server.transport,
                loop=server.loop,
                handler=server.event_handler,
            )
            done.set()
            return "250 OK"

    handler = Inspect()
    running = server(handler)
    client = raw(running.port)
    assert client.command("NOOP") == "250 OK"
    assert done.wait(5)
    assert seen["session"] is True
    assert seen["envelope"] is True
    assert seen["transport"] is not None
    assert seen["loop"] is running.loop
    assert seen["handler"] is handler
    (protocol,) = running.protocols
    client.command("QUIT")
    assert client.closed()
    # After the connection is gone, there is no transport.
    running.call(asyncio.sleep(0.05))
    assert protocol.transport is None


class Commands(SMTP):
    """A subclass with commands of its own."""

    args: list[str | None] = []

    @syntax("PING [ignored]")
    async def smtp_PING(self, arg: str | None) -> None:
        type(self).args.append(arg)
        await self.push("259 Pong")

    async def smtp_BYTES(self, arg: str | None) -> None:
        await self.push(b"250 bytes reply")

    async def smtp_ECHO(self, arg: str | None) -> None:
        await self.push(f"250 {arg}")


@pytest.mark.parametrize("client_kind", ["smtplib", "aiosmtplib"])
def test_custom_commands_and_push(server: Any, client_kind: str) -> None:
    Commands.args = []
    running = server(cls=Commands)
    steps: list[Step] = ["PING", "PING  some  words ", "BYTES", "ECHO hello", "HELP PING"]
    replies = dialog(client_kind, running.port, steps)
    assert replies == [
        "259 Pong",
        "259 Pong",
        "250 bytes reply",
        "250 hello",
        "250 Syntax: PING [ignored]",
    ]
    assert Commands.args == [None, "some  words"]


def test_push_utf8_needs_smtputf8(
    server: Any, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    running = server(cls=Commands, enable_SMTPUTF8=True)
    client = raw(running.port)
    client.send("ECHO grüße\r\n".encode())
    assert client.line() == "250 grüße"
    strict = server(cls=Commands)
    client = raw(strict.port)
    # Without SMTPUTF8 the argument itself is refused as non-ASCII.
    client.send("ECHO grüße\r\n".encode())
    assert client.line() == "500 Error: strict ASCII mode"


def test_auth_exclude_mechanism(server: Any, raw: Callable[..., RawClient]) -> None:
    def authenticator(*args: Any) -> AuthResult:
        return AuthResult(success=False)

    every = server(authenticator=authenticator, auth_require_tls=False)
    client = raw(every.port)
    client.send("EHLO c\r\n")
    assert "250-AUTH LOGIN PLAIN" in client.reply()
    fewer = server(
        authenticator=authenticator, auth_require_tls=False, auth_exclude_mechanism=["plain"]
    )
    client = raw(fewer.port)
    client.send("EHLO c\r\n")
    lines = client.reply()
    assert "250-AUTH LOGIN" in lines
    assert client.command("AUTH PLAIN AGFubmUAc2VzYW1l") == (
        "504 5.5.4 Unrecognized authentication type"
    )


def test_auth_required(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(auth_required=True, auth_require_tls=False)
    # The protocol is made when the client connects; it warns then.
    with pytest.warns(UserWarning, match="clear text"):
        client = raw(running.port)
    client.send("EHLO c\r\n")
    client.reply()
    assert client.command("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"
    assert client.command("HELP") == "530 5.7.0 Authentication required"
    assert client.command("NOOP") == "250 OK"


def test_require_starttls_refuses_commands(server: Any, raw: Callable[..., RawClient]) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    running = server(tls_context=context, require_starttls=True)
    client = raw(running.port)
    client.send("EHLO c\r\n")
    assert "250-STARTTLS" in client.reply()
    assert client.command("MAIL FROM:<a@example.com>") == "530 Must issue a STARTTLS command first"
    assert client.command("HELO c") == "530 Must issue a STARTTLS command first"
    assert client.command("NOOP") == "250 OK"
