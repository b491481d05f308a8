"""Behaviours that code written for aiosmtpd relies on, through real sockets.

Each test is written the way such code uses the server: subclasses that push
a reply and then act on the transport, fixtures that start TLS themselves,
tests that monkeypatch ``smtp_<VERB>``, hooks that raise ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import smtplib
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, READ_TIMEOUT, RawClient, Recorder
from interop import certificates

from smtpkit._reply_check import ReplyError, reply_lines
from smtpkit.auth import AuthResult
from smtpkit.handlers import Sink
from smtpkit.lmtp import LMTP
from smtpkit.proxy_protocol import AF, AsyncReader, ProxyData, get_proxy
from smtpkit.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException, _Missing

INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
MESSAGE = "Subject: hello\r\n\r\nA message.\r\n"


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited 10 s for {what}")
        time.sleep(0.02)


def smtp_client(port: int) -> smtplib.SMTP:
    return smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=READ_TIMEOUT)


# -- 1. push() has handed the reply to the transport when it returns ------------


class PushThenClose(SMTP):
    async def smtp_XBYE(self, arg: str | None) -> None:
        await self.push("421 4.3.0 Closing now")
        assert self.transport is not None
        self.transport.close()


def test_push_then_close_delivers_the_reply(
    server: Any, raw: Callable[..., RawClient], loop_kind: str
) -> None:
    running = server(cls=PushThenClose)
    client = raw(running.port)
    client.send("NOOP\r\nXBYE\r\n")
    assert client.reply() == ["250 OK"]
    assert client.reply() == ["421 4.3.0 Closing now"]
    assert client.closed()


class OwnStartTLS(SMTP):
    """A fixture's server that runs the TLS upgrade itself, as some test suites do."""

    upgraded = False

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        assert self.tls_context is not None and self.transport is not None
        await self.push("220 Ready to start TLS")
        transport = await self.loop.start_tls(
            self.transport, self, self.tls_context, server_side=True
        )
        self.transport = transport
        self.upgraded = True


def test_subclass_that_starts_tls_itself_works_with_smtplib(
    server: Any, recorder: Recorder, loop_kind: str
) -> None:
    cert = certificates()
    running = server(recorder, cls=OwnStartTLS, tls_context=cert.server_context())
    with smtp_client(running.port) as client:
        client.starttls(context=cert.client_context())
        assert isinstance(client.sock, ssl.SSLSocket)
        client.ehlo()
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert running.protocols[0].upgraded
    assert recorder.envelopes[0].rcpt_tos == ["b@example.com"]


# -- 2. smtp_<VERB> can be patched at any time ------------------------------------


def test_monkeypatched_helo_between_two_servers(
    server: Any, raw: Callable[..., RawClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Patched(SMTP):
        pass

    first = server(cls=Patched)
    before = raw(first.port)
    assert before.command("HELO client.test") == "250 smtp.example.test"

    async def fake_helo(self: SMTP, arg: str | None) -> None:
        await self.push(f"250 patched {arg}")

    monkeypatch.setattr(Patched, "smtp_HELO", fake_helo)
    second = server(cls=Patched)
    assert raw(second.port).command("HELO client.test") == "250 patched client.test"
    # A connection opened before the patch sees it from its next command.
    assert before.command("HELO again.test") == "250 patched again.test"
    monkeypatch.undo()
    assert before.command("HELO client.test") == "250 smtp.example.test"


def test_patching_one_server_instance(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    patched, other = raw(running.port), raw(running.port)
    protocol = running.protocols[0]

    async def fake_noop(arg: str | None) -> None:
        await protocol.push("250 only this one")

    protocol.smtp_NOOP = fake_noop
    assert patched.command("NOOP") == "250 only this one"
    assert other.command("NOOP") == "250 OK"


def test_a_verb_added_to_the_class_later_is_served(
    server: Any, raw: Callable[..., RawClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Later(SMTP):
        pass

    running = server(cls=Later)
    client = raw(running.port)
    assert client.command("XPING") == '500 Error: command "XPING" not recognized'

    async def smtp_XPING(self: SMTP, arg: str | None) -> None:
        await self.push("250 pong")

    monkeypatch.setattr(Later, "smtp_XPING", smtp_XPING, raising=False)
    assert client.command("XPING") == "250 pong"


def test_server_classes_are_not_kept_alive_by_caches() -> None:
    class Temporary(SMTP):
        pass

    loop = asyncio.new_event_loop()
    try:
        instance = Temporary(Sink(), hostname="x.test", loop=loop)
        assert instance._auth_methods
        ref = weakref.ref(Temporary)
        del Temporary, instance
        gc.collect()
        assert ref() is None
    finally:
        loop.close()


# -- 3. A ConnectionError from a hook is an error like any other ------------------


class RefusingDatabase:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raise ConnectionRefusedError(111, "database refused the connection")


def test_handle_data_raising_connection_refused_gets_451_and_the_session_goes_on(
    server: Any, loop_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    running = server(RefusingDatabase())
    with smtp_client(running.port) as client:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert failed.value.smtp_code == 451
        assert client.noop()[0] == 250
    assert "ConnectionRefusedError" in caplog.text
    assert "database refused the connection" in caplog.text


def test_authenticator_raising_broken_pipe_gets_451(
    server: Any, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    def authenticator(*args: Any) -> Any:
        raise BrokenPipeError(32, "directory socket broke")

    running = server(Sink(), authenticator=authenticator, auth_require_tls=False)
    client = raw(running.port)
    client.command("EHLO client.test")
    assert client.command("AUTH PLAIN AGFubmUAc2VjcmV0") == INTERNAL_ERROR
    assert client.command("NOOP") == "250 OK"
    assert "BrokenPipeError" in caplog.text


def test_lmtp_handle_data_raising_connection_error_answers_each_recipient(
    server: Any, raw: Callable[..., RawClient]
) -> None:
    running = server(RefusingDatabase(), cls=LMTP)
    client = raw(running.port)
    client.command("LHLO client.test")
    for line in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@x.com>"):
        assert client.command(line) == "250 OK"
    assert client.command("DATA").startswith("354")
    client.send(MESSAGE + ".\r\n")
    assert client.lines(2) == [INTERNAL_ERROR, INTERNAL_ERROR]
    assert client.command("NOOP") == "250 OK"


# -- 4. Names and attributes aiosmtpd code reads --------------------------------


def test_missing_and_its_type_are_exported() -> None:
    assert isinstance(MISSING, _Missing)


def test_tls_protocol_is_none_before_tls_and_set_during(server: Any, loop_kind: str) -> None:
    cert = certificates()
    running = server(Sink(), tls_context=cert.server_context())
    with smtp_client(running.port) as client:
        client.ehlo()
        protocol = running.protocols[0]
        assert protocol._tls_protocol is None
        client.starttls(context=cert.client_context())
        assert client.ehlo()[0] == 250
        assert protocol._tls_protocol is not None


async def _serve_get_proxy(payload: bytes) -> tuple[ProxyData, bytes]:
    """Send ``payload`` to a real server that reads it with get_proxy()."""
    found: asyncio.Future[tuple[ProxyData, bytes]] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source: AsyncReader = reader
        data = await get_proxy(source)
        after = await reader.read(100) if data else b""
        found.set_result((data, after))
        writer.close()

    listener = await asyncio.start_server(on_client, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection(HOST, port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    try:
        return await asyncio.wait_for(found, READ_TIMEOUT)
    finally:
        writer.close()
        listener.close()
        await listener.wait_closed()


V2_TCP4 = (
    b"\r\n\r\n\x00\r\nQUIT\n"
    + bytes([0x21, 0x11, 0x00, 12])
    + bytes([192, 0, 2, 1, 198, 51, 100, 7])
    + (40000).to_bytes(2, "big")
    + (25).to_bytes(2, "big")
)


@pytest.mark.parametrize(
    ("payload", "source"),
    [
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 25\r\nEHLO x\r\n", "192.0.2.1"),
        (V2_TCP4 + b"EHLO x\r\n", "192.0.2.1"),
    ],
)
def test_get_proxy_reads_a_header_and_leaves_the_rest(payload: bytes, source: str) -> None:
    data, after = asyncio.run(_serve_get_proxy(payload))
    assert data.valid and data.family is AF.INET
    assert str(data.src_addr) == source and data.src_port == 40000
    assert after == b"EHLO x\r\n"


@pytest.mark.parametrize(
    "payload", [b"PROXY TCP4 300.0.2.1 198.51.100.7 1 2\r\n", b"HELO nope\r\n", b"PROXY TC"]
)
def test_get_proxy_reports_an_invalid_header_in_error(payload: bytes) -> None:
    data, _ = asyncio.run(_serve_get_proxy(payload))
    assert not data and not data.valid
    assert data.error


# -- 5. TLS failures, warnings and checks when the server is built --------------


class ExceptionRecorder(Sink):
    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def handle_exception(self, error: Exception) -> str:
        self.errors.append(error)
        return "421 4.7.0 TLS failed"


def test_failed_handshake_reaches_handle_exception_as_tls_setup_exception(
    server: Any, raw: Callable[..., RawClient], loop_kind: str
) -> None:
    handler = ExceptionRecorder()
    running = server(handler, tls_context=certificates().server_context())
    client = raw(running.port)
    client.command("EHLO client.test")
    assert client.command("STARTTLS") == "220 Ready to start TLS"
    client.send(b"this is not a TLS record\r\n" * 20)
    assert client.closed()
    wait_until(lambda: bool(handler.errors), "handle_exception to be called")
    assert isinstance(handler.errors[0], TLSSetupException)


@pytest.mark.parametrize(
    ("setting", "warning"),
    [
        (
            "verify_mode",
            "tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
            "this might cause client connection problems",
        ),
        (
            "check_hostname",
            "tls_context.check_hostname == True; this might cause client connection problems",
        ),
    ],
)
def test_tls_context_checking_clients_is_warned_about_once(
    server: Any,
    raw: Callable[..., RawClient],
    caplog: pytest.LogCaptureFixture,
    setting: str,
    warning: str,
) -> None:
    context = certificates().server_context()
    if setting == "verify_mode":
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.check_hostname = True
    running = server(Sink(), tls_context=context)
    for _ in range(3):
        assert raw(running.port).command("NOOP") == "250 OK"
    assert [r.getMessage() for r in caplog.records if "tls_context" in r.getMessage()] == [warning]


def test_auth_mechanisms_are_logged_once_per_setting(
    server: Any, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtpkit.smtp")

    class Fresh(SMTP):
        pass

    running = server(Sink(), cls=Fresh, auth_exclude_mechanism=["LOGIN"])
    for _ in range(3):
        assert raw(running.port).command("NOOP") == "250 OK"
    logged = [r.getMessage() for r in caplog.records if "AUTH mechanisms" in r.getMessage()]
    assert logged == ["Available AUTH mechanisms: PLAIN(builtin)"]


def test_handle_ehlo_with_an_unsupported_signature_is_refused_at_build() -> None:
    class OldStyle:
        async def handle_EHLO(self, server: SMTP, session: Session) -> str:
            return "250 HELP"

    with pytest.raises(TypeError) as refused:
        SMTP(OldStyle())
    message = str(refused.value)
    assert "OldStyle.handle_EHLO" in message
    assert "handle_EHLO(self, server, session, envelope, hostname, responses)" in message


# -- 6. SMTP() outside a running loop --------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_building_many_servers_outside_a_loop_makes_at_most_one_loop() -> None:
    results: dict[str, Any] = {}

    def build() -> None:
        before = _open_fds()
        servers = [SMTP(Sink(), hostname="x.test") for _ in range(100)]
        results["grown"] = _open_fds() - before
        results["loops"] = {id(s.loop) for s in servers}
        servers[0].loop.close()
        asyncio.set_event_loop(None)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(READ_TIMEOUT)
    assert len(results["loops"]) == 1
    # One loop: a selector and its self-pipe; never 3 per instance.
    assert results["grown"] <= 4


# -- 7. Replies returned by hooks are checked ------------------------------------


class Replies:
    """Hooks that return the reply set for the command."""

    def __init__(self, **replies: Any) -> None:
        self.replies = replies

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: Any
    ) -> Any:
        return self.replies["NOOP"]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, *a: Any) -> Any:
        return self.replies.get("MAIL", MISSING)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, *a: Any) -> Any:
        envelope.rcpt_tos.append(a[0])
        return self.replies.get("RCPT", "250 OK")


@pytest.mark.parametrize(
    "bad",
    [
        "250 OK\r\nMAIL FROM:<injected@example.com>",
        "250 OK\nsecond line",
        "250 OK\r",
        "OK",
        "",
        "199 too low",
        "600 too high",
        "250-no last line",
        "250-first\r\n251 different code",
        ["250-a", "250-b"],
        ["250 a", "250 b"],
        42,
    ],
)
def test_malformed_hook_reply_becomes_451_and_is_logged(
    server: Any, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture, bad: Any
) -> None:
    running = server(Replies(NOOP=bad))
    client = raw(running.port)
    assert client.command("NOOP") == INTERNAL_ERROR
    assert f"handle_NOOP returned {bad!r}" in caplog.text
    # Nothing injected reached the client, and the session goes on.
    assert client.command("NOOP") == INTERNAL_ERROR
    client.send("QUIT\r\n")
    assert client.reply() == ["221 Bye"]


@pytest.mark.parametrize(
    ("good", "lines"),
    [
        ("250 fine", ["250 fine"]),
        ("250", ["250"]),
        ("250-first\r\n250-second\r\n250 last", ["250-first", "250-second", "250 last"]),
        (["252-one", "252 two"], ["252-one", "252 two"]),
        (b"250 bytes are fine", ["250 bytes are fine"]),
    ],
)
def test_well_formed_hook_replies_are_sent_as_they_are(
    server: Any, raw: Callable[..., RawClient], good: Any, lines: list[str]
) -> None:
    running = server(Replies(NOOP=good))
    client = raw(running.port)
    client.send("NOOP\r\n")
    assert client.reply() == lines


def test_injection_from_a_rcpt_hook_never_reaches_the_client(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    running = server(Replies(RCPT="250 OK\r\n250 2.0.0 queued as FAKE", NOOP="250 OK"))
    with smtp_client(running.port) as client:
        client.ehlo()
        assert client.mail("a@example.com")[0] == 250
        code, text = client.rcpt("b@example.com")
        assert (code, text) == (451, INTERNAL_ERROR[4:].encode())
        assert client.noop() == (250, b"OK")
    assert "handle_RCPT returned" in caplog.text
    assert "reply injection" in caplog.text


def test_reply_check_table() -> None:
    assert reply_lines("250 OK") == ["250 OK"]
    assert reply_lines(("250-a", "250 b")) == ["250-a", "250 b"]
    with pytest.raises(ReplyError, match="injection"):
        reply_lines("250 a\r\n250 b\rc")
    with pytest.raises(ReplyError, match="code 200-599"):
        reply_lines("25O OK")
    with pytest.raises(ReplyError, match="more lines follow"):
        reply_lines(["250-a"])


# -- 8. What the differences page says about max_auth_failures ------------------


def test_smtplib_second_login_with_a_wrong_password_gets_421(server: Any) -> None:
    def refuse(*args: Any) -> AuthResult:
        return AuthResult(success=False)

    running = server(Sink(), authenticator=refuse, auth_require_tls=False)
    with smtp_client(running.port) as client:
        client.ehlo()
        # smtplib tries PLAIN, then LOGIN: two failed attempts.
        with pytest.raises(smtplib.SMTPAuthenticationError) as first:
            client.login("anne", "wrong")
        assert first.value.smtp_code == 535
        # The third failed mechanism reaches max_auth_failures (3).
        with pytest.raises(smtplib.SMTPAuthenticationError) as second:
            client.login("anne", "wrong")
        assert second.value.smtp_code == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
