"""Session and Envelope as the hooks see them, and decode_data."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import aiosmtplib
import pytest
import trustme
from conftest import HOST, LOOP_KINDS, Data, RawClient, Recorder, Step

from smtpkit.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

Talk = Callable[[int, list[Step]], list[str]]


class Snapshots:
    """Copies what the session and the envelope hold when DATA ends."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.envelopes: list[dict[str, Any]] = []
        self.objects: list[tuple[Session, Envelope]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.sessions.append(
            {
                "peer": session.peer,
                "host_name": session.host_name,
                "extended_smtp": session.extended_smtp,
                "ssl": session.ssl,
                "proxy_data": session.proxy_data,
                "auth_data": session.auth_data,
                "authenticated": session.authenticated,
                "loop": session.loop,
                "server_authenticated": server.authenticated,
            }
        )
        self.envelopes.append(
            {
                "mail_from": envelope.mail_from,
                "mail_options": list(envelope.mail_options),
                "smtp_utf8": envelope.smtp_utf8,
                "content": envelope.content,
                "original_content": envelope.original_content,
                "rcpt_tos": list(envelope.rcpt_tos),
                "rcpt_options": list(envelope.rcpt_options),
            }
        )
        self.objects.append((session, envelope))
        return "250 OK"


def test_session_and_envelope_with_smtplib(server: Any) -> None:
    hooks = Snapshots()
    running = server(hooks)
    with smtplib.SMTP(HOST, running.port, local_hostname="client.test", timeout=5) as client:
        client.sendmail(
            "anne@example.com",
            ["bart@example.com", "cate@example.com"],
            b"Subject: one\r\n\r\n\xc3\xa9t\xc3\xa9\r\n",
            mail_options=["body=8bitmime"],
        )
        client.sendmail("<>", ["dave@example.com"], "Subject: two\r\n\r\nsecond\r\n")
        peer = client.sock.getsockname()
    first = hooks.sessions[0]
    assert len(hooks.sessions) == 2
    assert first["peer"] == peer
    assert first["host_name"] == "client.test"
    assert first["extended_smtp"] is True
    assert first["ssl"] is None
    assert first["proxy_data"] is None
    assert first["auth_data"] is None
    assert first["authenticated"] is None
    assert first["server_authenticated"] is False
    assert first["loop"] is running.loop
    # smtplib adds SIZE=<n> itself; the options are upper-cased.
    options = hooks.envelopes[0].pop("mail_options")
    assert [option for option in options if not option.startswith("SIZE=")] == ["BODY=8BITMIME"]
    assert hooks.envelopes[0] == {
        "mail_from": "anne@example.com",
        "smtp_utf8": False,
        "content": b"Subject: one\r\n\r\n\xc3\xa9t\xc3\xa9\r\n",
        "original_content": b"Subject: one\r\n\r\n\xc3\xa9t\xc3\xa9\r\n",
        "rcpt_tos": ["bart@example.com", "cate@example.com"],
        "rcpt_options": [],
    }
    assert hooks.envelopes[1]["mail_from"] == "<>"
    assert [o for o in hooks.envelopes[1]["mail_options"] if not o.startswith("SIZE=")] == []
    # One session per connection, one envelope per transaction.
    (session1, envelope1), (session2, envelope2) = hooks.objects
    assert session1 is session2
    assert envelope1 is not envelope2


def test_session_and_envelope_with_aiosmtplib(server: Any) -> None:
    hooks = Snapshots()
    running = server(hooks, enable_SMTPUTF8=True)

    async def main() -> Any:
        client = aiosmtplib.SMTP(
            hostname=HOST, port=running.port, start_tls=False, local_hostname="aio.test"
        )
        async with client:
            await client.sendmail(
                "jörg@example.com",
                ["zoë@example.com"],
                "Subject: ü\r\n\r\nüber\r\n".encode(),
                mail_options=["smtputf8", "body=8bitmime"],
            )
            return client.transport.get_extra_info("sockname") if client.transport else None

    peer = asyncio.run(main())
    (session,) = hooks.sessions
    assert session["peer"] == peer
    assert session["host_name"] == "aio.test"
    assert session["extended_smtp"] is True
    (envelope,) = hooks.envelopes
    assert envelope["mail_from"] == "jörg@example.com"
    assert envelope["smtp_utf8"] is True
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(envelope["mail_options"])
    assert envelope["rcpt_tos"] == ["zoë@example.com"]
    assert envelope["content"] == "Subject: ü\r\n\r\nüber\r\n".encode()


def test_helo_is_not_extended(server: Any, talk: Talk) -> None:
    hooks = Snapshots()
    running = server(hooks)
    replies = talk(
        running.port,
        ["HELO plain.test", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", Data("x\r\n")],
    )
    assert replies[-1] == "250 OK"
    assert hooks.sessions[0]["host_name"] == "plain.test"
    assert hooks.sessions[0]["extended_smtp"] is False


# -- decode_data ---------------------------------------------------------------


def test_decode_data_gives_str(server: Any, talk: Talk) -> None:
    hooks = Snapshots()
    running = server(hooks, decode_data=True)
    replies = talk(
        running.port,
        ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", Data("Hello\r\n")],
    )
    assert replies[-1] == "250 OK"
    assert hooks.envelopes[0]["content"] == "Hello\r\n"
    assert hooks.envelopes[0]["original_content"] == b"Hello\r\n"


def test_decode_data_refuses_non_ascii_without_smtputf8(
    server: Any, raw: Callable[..., RawClient]
) -> None:
    hooks = Snapshots()
    running = server(hooks, decode_data=True)
    client = raw(running.port)
    client.send(
        b"HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        b"caf\xc3\xa9\r\n.\r\nNOOP\r\n"
    )
    assert client.lines(6)[-2:] == ["500 Error: strict ASCII mode", "250 OK"]
    assert hooks.envelopes == []
    # The transaction is over: a new one can start.
    assert client.command("MAIL FROM:<a@example.com>") == "250 OK"


def test_decode_data_with_smtputf8(server: Any, raw: Callable[..., RawClient]) -> None:
    hooks = Snapshots()
    running = server(hooks, decode_data=True, enable_SMTPUTF8=True)
    client = raw(running.port)
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@example.com> SMTPUTF8\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        b"caf\xc3\xa9 \xff\r\n.\r\n"
    )
    replies = client.replies(5)
    assert replies[-1] == ["250 OK"]
    content = hooks.envelopes[0]["content"]
    assert content == "café \udcff\r\n"
    assert hooks.envelopes[0]["original_content"] == b"caf\xc3\xa9 \xff\r\n"


# -- Custom Session and Envelope classes ------------------------------------------


class MySession(Session):
    pass


class MyEnvelope(Envelope):
    pass


class CustomSMTP(SMTP):
    def _create_session(self) -> Session:
        return MySession(self.loop)

    def _create_envelope(self) -> Envelope:
        return MyEnvelope()


def test_create_session_and_envelope_overrides(server: Any, talk: Talk) -> None:
    hooks = Snapshots()
    running = server(hooks, cls=CustomSMTP)
    replies = talk(
        running.port,
        ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", Data("x\r\n")],
    )
    assert replies[-1] == "250 OK"
    ((session, envelope),) = hooks.objects
    assert type(session) is MySession
    assert type(envelope) is MyEnvelope


def test_session_state_is_per_connection(server: Any, talk: Talk) -> None:
    class Counting:
        async def handle_NOOP(
            self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
        ) -> str:
            session.state["count"] = session.state.get("count", 0) + 1
            return f"250 {session.state['count']}"

    running = server(Counting())
    assert talk(running.port, ["NOOP", "NOOP", "NOOP"]) == ["250 1", "250 2", "250 3"]
    assert talk(running.port, ["NOOP"]) == ["250 1"]


# -- TLS and AUTH ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield server_context, client_context


def test_session_after_starttls(
    server: Any, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    hooks = Snapshots()
    server_context, client_context = tls_pair
    running = server(hooks, tls_context=server_context)
    with smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5) as client:
        client.starttls(context=client_context)
        client.sendmail("a@example.com", ["b@example.com"], "x\r\n")
    (session,) = hooks.sessions
    assert session["ssl"] is not None
    assert session["ssl"]["cipher"] is not None
    assert isinstance(session["ssl"]["ssl_object"], ssl.SSLObject)
    # STARTTLS forgets the greeting: the client had to say EHLO again.
    assert session["host_name"] == "c"


def authenticate(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    assert isinstance(auth_data, LoginPassword)
    if auth_data == (b"anne", b"sesame"):
        return AuthResult(success=True, auth_data={"user": "anne", "mechanism": mechanism})
    return AuthResult(success=False, handled=False)


def test_session_after_auth(server: Any) -> None:
    hooks = Snapshots()
    running = server(hooks, authenticator=authenticate, auth_require_tls=False)
    with smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("anne", "wrong")
        client.login("anne", "sesame")
        client.sendmail("a@example.com", ["b@example.com"], "x\r\n")
    (session,) = hooks.sessions
    assert session["authenticated"] is True
    assert session["server_authenticated"] is True
    assert session["auth_data"]["user"] == "anne"
    assert session["auth_data"]["mechanism"] in ("PLAIN", "LOGIN")


def test_session_after_auth_with_aiosmtplib(server: Any, recorder: Recorder) -> None:
    hooks = Snapshots()
    running = server(hooks, authenticator=authenticate, auth_require_tls=False)

    async def main() -> None:
        client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
        async with client:
            await client.login("anne", "sesame")
            await client.sendmail("a@example.com", ["b@example.com"], "x\r\n")

    asyncio.run(main())
    (session,) = hooks.sessions
    assert session["authenticated"] is True
    assert session["auth_data"]["user"] == "anne"
