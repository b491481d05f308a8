"""STARTTLS (RFC 3207) and implicit TLS, over real sockets with real clients."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from typing import Any

import aiosmtplib
import pytest
from interop import (
    HOST,
    LOOP_KINDS,
    MESSAGE,
    RawClient,
    Recorder,
    certificates,
    serving,
    wait_for,
)

from smtpkit._limits import ConnectionLimiter
from smtpkit.auth import MemoryAuthenticator
from smtpkit.smtp import SMTP, Envelope, Session

USERS = {"anne": "correct horse"}


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def server_tls() -> ssl.SSLContext:
    return certificates().server_context()


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    return certificates().client_context()


def ehlo_keywords(text: str) -> list[str]:
    """The extension keywords of an EHLO reply (first line is the host name)."""
    return [line.split()[0].upper() for line in text.splitlines()[1:]]


class Watcher(Recorder):
    """Records every EHLO, NOOP and MAIL the server acted on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, bool]] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.calls.append(("EHLO", hostname, session.ssl is not None))
        session.host_name = hostname
        return responses

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
    ) -> str:
        self.calls.append(("NOOP", arg or "", session.ssl is not None))
        return "250 OK"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.calls.append(("MAIL", address, session.ssl is not None))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


# -- STARTTLS with real clients ----------------------------------------------


def test_starttls_with_smtplib(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    with (
        serving(handler, loop_kind, tls_context=server_tls) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        code, text = client.ehlo()
        assert code == 250
        assert "STARTTLS" in ehlo_keywords(text.decode())
        assert client.starttls(context=client_tls) == (220, b"Ready to start TLS")
        # RFC 3207 §4.2: a new session; the client must greet again.
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 503
        code, text = client.ehlo()
        assert code == 250
        assert "STARTTLS" not in ehlo_keywords(text.decode())
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    session, envelope = handler.messages[0]
    assert session.ssl is not None
    assert session.ssl["cipher"] is not None
    assert isinstance(session.ssl["ssl_object"], ssl.SSLObject)
    assert envelope.rcpt_tos == ["b@example.com"]


async def _send_with_aiosmtplib(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, tls_context=context)
    await client.connect()
    await client.ehlo()
    assert client.supports_extension("starttls")
    await client.starttls()
    assert not client.supports_extension("starttls")
    errors, _ = await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    await client.quit()
    return dict(errors)


def test_starttls_with_aiosmtplib(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    import asyncio

    handler = Recorder()
    with serving(handler, loop_kind, tls_context=server_tls) as server:
        assert asyncio.run(_send_with_aiosmtplib(server.port, client_tls)) == {}
    assert handler.messages[0][0].ssl is not None


def test_second_starttls_is_refused(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with (
        serving(Recorder(), loop_kind, tls_context=server_tls) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        client.ehlo()
        code, text = client.docmd("STARTTLS")
        assert 500 <= code < 600, (code, text)
        # The connection is still good and still encrypted.
        assert client.noop()[0] == 250


def test_starttls_with_argument(loop_kind: str, server_tls: ssl.SSLContext) -> None:
    with (
        serving(Recorder(), loop_kind, tls_context=server_tls) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        client.command("EHLO client.test")
        assert client.command("STARTTLS now") == (501, "Syntax: STARTTLS")
        assert client.command("NOOP") == (250, "OK")


def test_starttls_without_context(loop_kind: str) -> None:
    with serving(Recorder(), loop_kind) as server, RawClient(server.port) as client:
        client.reply()
        _code, text = client.command("EHLO client.test")
        assert "STARTTLS" not in ehlo_keywords(text)
        assert client.command("STARTTLS") == (454, "TLS not available")
        assert client.command("NOOP") == (250, "OK")


# -- Failed handshakes --------------------------------------------------------


def _after_starttls(port: int) -> RawClient:
    client = RawClient(port, timeout=10)
    client.reply()
    client.command("EHLO client.test")
    assert client.command("STARTTLS") == (220, "Ready to start TLS")
    return client


def _check_still_serving(port: int, client_tls: ssl.SSLContext) -> None:
    with smtplib.SMTP(HOST, port) as client:
        client.starttls(context=client_tls)
        assert client.ehlo()[0] == 250


@pytest.mark.parametrize("behaviour", ["garbage", "silence", "hang-up"])
def test_failed_handshake_closes_cleanly(
    loop_kind: str,
    behaviour: str,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    limiter = ConnectionLimiter(max_connections=10)
    with serving(
        Recorder(),
        loop_kind,
        tls_context=server_tls,
        tls_handshake_timeout=0.5,
        connection_limiter=limiter,
    ) as server:
        client = _after_starttls(server.port)
        if behaviour == "garbage":
            client.send(b"NOOP\r\nthis is not a TLS record\r\n" * 20)
        if behaviour == "hang-up":
            client.close()
        else:
            # Garbage fails at once; silence after tls_handshake_timeout.
            assert client.wait_closed() == b""
            client.close()
        # The connection is forgotten (its slot released) ...
        wait_for(lambda: server.call(lambda: limiter.total) == 0, "the connection to be released")
        # ... and the server keeps serving others.
        _check_still_serving(server.port, client_tls)
    noisy = [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


# -- Injection before the handshake (CVE-2011-0411, CVE-2024-34083) ---------


@pytest.mark.parametrize(
    "injected",
    [
        "NOOP injected",
        "EHLO injected.example",
        "MAIL FROM:<evil@injected.example>",
        "MAIL FROM:<evil@injected.example>\r\nRCPT TO:<b@example.com>\r\nDATA",
    ],
)
def test_commands_pipelined_after_starttls_are_discarded(
    loop_kind: str, injected: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Watcher()
    with (
        serving(handler, loop_kind, tls_context=server_tls) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        client.command("EHLO before.example")
        client.send(f"STARTTLS\r\n{injected}\r\n")
        assert client.line() == "220 Ready to start TLS"
        # Only the 220 came: no other reply is waiting in plaintext ...
        client.starttls(client_tls)
        # ... or over TLS, and nothing was executed: a fresh session
        # with an empty envelope.
        assert client.command("MAIL FROM:<a@example.com>")[0] == 503
        assert client.command("EHLO after.example")[0] == 250
        assert client.command("MAIL FROM:<a@example.com>") == (250, "OK")
        assert client.command("RCPT TO:<b@example.com>") == (250, "OK")
        assert client.command("NOOP after") == (250, "OK")
        assert client.command("QUIT") == (221, "Bye")
        assert client.wait_closed() == b""
    assert handler.calls == [
        ("EHLO", "before.example", False),
        ("EHLO", "after.example", True),
        ("MAIL", "a@example.com", True),
        ("NOOP", "after", True),
    ]


class _MemoryTLS:
    """A TLS client driven by hand, to choose how bytes are packed into segments."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)
        self.plain = b""

    def handshake_then(self, first: bytes) -> None:
        """Complete the handshake and send its last flight and ``first`` in one write."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._receive()
        self.tls.write(first)
        self.sock.sendall(self.outgoing.read())

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.incoming.write(data)

    def line(self) -> str:
        while b"\r\n" not in self.plain:
            try:
                self.plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._receive()
        line, _, self.plain = self.plain.partition(b"\r\n")
        return line.decode()


def test_command_in_the_same_segment_as_the_handshake_end(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # A client may send its first command right behind its last handshake
    # message; the server must not lose it while it switches to TLS.
    with (
        serving(Recorder(), loop_kind, tls_context=server_tls) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        client.command("EHLO before.example")
        assert client.command("STARTTLS") == (220, "Ready to start TLS")
        tls = _MemoryTLS(client.sock, client_tls)
        tls.handshake_then(b"NOOP\r\n")
        assert tls.line() == "250 OK"


# -- require_starttls and handle_STARTTLS ------------------------------------


def test_require_starttls(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    must = (530, "Must issue a STARTTLS command first")
    with (
        serving(Recorder(), loop_kind, tls_context=server_tls, require_starttls=True) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        assert client.command("EHLO client.test")[0] == 250
        assert client.command("NOOP") == (250, "OK")
        for command in ("HELO client.test", "MAIL FROM:<a@example.com>", "HELP", "RSET"):
            assert client.command(command) == must, command
        assert client.command("VRFY <a@example.com>") == must
        assert client.command("QUIT") == (221, "Bye")
        with smtplib.SMTP(HOST, server.port) as client:
            client.starttls(context=client_tls)
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}


class StartTLSHook(Recorder):
    def __init__(self, verdict: bool, *, asynchronous: bool) -> None:
        super().__init__()
        self.verdict = verdict
        self.asynchronous = asynchronous
        self.seen: list[Session] = []

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        self.seen.append(session)
        if not self.asynchronous:
            return self.verdict

        async def later() -> bool:
            return self.verdict

        return later()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_handle_starttls_refuses(
    loop_kind: str, asynchronous: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = StartTLSHook(False, asynchronous=asynchronous)
    with (
        serving(handler, loop_kind, tls_context=server_tls) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        refused = (554, b"Command refused due to lack of security")
        assert client.ehlo() == refused
        assert client.docmd("NOOP") == refused
        assert client.docmd("MAIL", "FROM:<a@example.com>") == refused
        assert client.docmd("QUIT")[0] == 221
    assert len(handler.seen) == 1
    assert handler.seen[0].ssl is not None


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_handle_starttls_accepts(
    loop_kind: str, asynchronous: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = StartTLSHook(True, asynchronous=asynchronous)
    with (
        serving(handler, loop_kind, tls_context=server_tls) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    assert handler.seen == [handler.messages[0][0]]


class RaisingStartTLSHook(Recorder):
    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        raise RuntimeError("policy backend down")


def test_handle_starttls_that_raises_refuses(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        serving(RaisingStartTLSHook(), tls_context=server_tls) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        assert client.ehlo()[0] == 554
        assert client.docmd("QUIT")[0] == 221
    assert any("handle_STARTTLS" in r.getMessage() for r in caplog.records)


# -- Implicit TLS --------------------------------------------------------------


@pytest.mark.parametrize("starttls_context", [False, True], ids=["implicit", "both"])
def test_implicit_tls_counts_as_tls_for_auth(
    loop_kind: str, starttls_context: bool, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    with (
        serving(
            handler,
            loop_kind,
            implicit_tls=server_tls,
            tls_context=server_tls if starttls_context else None,
            authenticator=MemoryAuthenticator(USERS),
            auth_required=True,
        ) as server,
        smtplib.SMTP_SSL(HOST, server.port, context=client_tls) as client,
    ):
        _code, text = client.ehlo()
        keywords = ehlo_keywords(text.decode())
        assert "AUTH" in keywords
        assert "STARTTLS" not in keywords
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        assert client.login("anne", "correct horse")[0] == 235
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    session, _ = handler.messages[0]
    assert session.ssl is not None
    assert session.authenticated is True


def test_plaintext_connection_hides_auth(loop_kind: str, server_tls: ssl.SSLContext) -> None:
    # The counterpart of the test above: the same settings without TLS.
    with (
        serving(
            Recorder(),
            loop_kind,
            tls_context=server_tls,
            authenticator=MemoryAuthenticator(USERS),
        ) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        assert "AUTH" not in ehlo_keywords(client.command("EHLO client.test")[1])
        assert client.command("AUTH PLAIN AGFubmUAY29ycmVjdCBob3JzZQ==") == (
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
        )
