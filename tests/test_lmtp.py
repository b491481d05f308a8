"""LMTP (RFC 2033): LHLO, and one reply per accepted recipient after DATA.

The client is the standard library's ``smtplib.LMTP``; its ``data()`` returns
the first recipient's reply, and ``getreply()`` reads each of the others.
"""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, RawClient, Recorder

from smtpkit.lmtp import LMTP
from smtpkit.smtp import SMTP, Envelope, Session

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

Raw = Callable[..., RawClient]
MESSAGE = b"From: a@example.com\r\nSubject: lmtp\r\n\r\nHello.\r\n"


class Mailboxes(Recorder):
    """Refuses RCPT for ``nobody@…``; at DATA, refuses mailboxes named ``full@…``."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        await super().handle_DATA(server, session, envelope)
        return [
            "552 5.2.2 Mailbox full" if rcpt.startswith("full@") else f"250 2.0.0 <{rcpt}> OK"
            for rcpt in envelope.rcpt_tos
        ]


class Answer(Recorder):
    """Answers DATA with a fixed value, or raises it when it is an exception."""

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        await super().handle_DATA(server, session, envelope)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def deliver(client: smtplib.LMTP, recipients: list[str], body: bytes = MESSAGE) -> list[str]:
    """One transaction; return the replies after DATA, one per accepted recipient."""
    code, _ = client.mail("a@example.com")
    assert code == 250
    accepted = sum(client.rcpt(rcpt)[0] == 250 for rcpt in recipients)
    client.putcmd("data")
    code, text = client.getreply()
    assert code == 354, text
    data = smtplib.quotedata(body.decode()).encode()
    client.send(data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"))
    replies = [client.getreply() for _ in range(accepted)]
    return [f"{code} {text.decode()}" for code, text in replies]


@pytest.fixture
def unix_lmtp(server: Any) -> Iterator[Callable[[Any], str]]:
    """Serve LMTP on a Unix socket; call it with a handler, get the socket path."""
    directory = tempfile.mkdtemp(prefix="smtpkit-lmtp-")  # short: sun_path has 108 bytes
    servers: list[tuple[asyncio.AbstractServer, Any]] = []

    def start(handler: Any) -> str:
        running = server(handler, cls=LMTP)  # a TCP server, and the loop to share
        path = str(Path(directory) / f"lmtp{len(servers)}.sock")

        async def create() -> asyncio.AbstractServer:
            return await running.loop.create_unix_server(
                lambda: LMTP(handler, hostname="lmtp.example.test"), path
            )

        servers.append((running.call(create()), running))
        return path

    yield start

    async def close(unix: asyncio.AbstractServer) -> None:
        unix.close()

    for unix, running in servers:
        running.call(close(unix))
    shutil.rmtree(directory, ignore_errors=True)


# -- Greeting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("HELO client.test", '500 Error: command "HELO" not recognized'),
        ("EHLO client.test", '500 Error: command "EHLO" not recognized'),
        ("LHLO", "501 Syntax: LHLO hostname"),
        ("MAIL FROM:<a@example.com>", "503 Error: send LHLO first"),
        ("HELP LHLO", "250 Syntax: LHLO hostname"),
    ],
)
def test_greeting_commands(server: Any, raw: Raw, line: str, expected: str) -> None:
    running = server(cls=LMTP)
    client = raw(running.port)
    assert client.command(line) == expected


def test_lhlo_answers_like_ehlo(server: Any, raw: Raw) -> None:
    running = server(cls=LMTP)
    client = raw(running.port)
    client.send("LHLO client.test\r\n")
    lines = client.reply()
    assert lines[0] == "250-smtp.example.test"
    assert "250-PIPELINING" in lines and lines[-1] == "250 HELP"
    assert client.command("MAIL FROM:<a@example.com>") == "250 OK"


def test_help_lists_lhlo_and_not_helo_or_ehlo(server: Any, raw: Raw) -> None:
    running = server(cls=LMTP)
    client = raw(running.port)
    commands = client.command("HELP").split(": ", 1)[1].split()
    assert "LHLO" in commands
    assert "HELO" not in commands and "EHLO" not in commands


# -- One reply per recipient ----------------------------------------------------


def test_mixed_replies_per_recipient_over_tcp(server: Any) -> None:
    handler = Mailboxes()
    running = server(handler, cls=LMTP)
    with smtplib.LMTP(HOST, running.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo_or_helo_if_needed()
        replies = deliver(
            client,
            ["ann@example.com", "nobody@example.com", "full@example.com", "bob@example.com"],
        )
        assert client.noop()[0] == 250  # nothing more was queued after the replies
    assert replies == [
        "250 2.0.0 <ann@example.com> OK",
        "552 5.2.2 Mailbox full",
        "250 2.0.0 <bob@example.com> OK",
    ]
    assert handler.envelopes[0].rcpt_tos == [
        "ann@example.com",
        "full@example.com",
        "bob@example.com",
    ]


def test_mixed_replies_per_recipient_over_a_unix_socket(unix_lmtp: Callable[[Any], str]) -> None:
    handler = Mailboxes()
    path = unix_lmtp(handler)
    with smtplib.LMTP(path, local_hostname="client.test", timeout=5) as client:
        client.ehlo_or_helo_if_needed()
        assert client.does_esmtp  # LHLO got a multi-line ESMTP reply
        replies = deliver(client, ["full@example.com", "ann@example.com"])
        replies += deliver(client, ["bob@example.com"])
    assert replies == [
        "552 5.2.2 Mailbox full",
        "250 2.0.0 <ann@example.com> OK",
        "250 2.0.0 <bob@example.com> OK",
    ]
    assert len(handler.envelopes) == 2
    assert handler.envelopes[1].content == MESSAGE


def test_smtplib_lmtp_sendmail_over_a_unix_socket(unix_lmtp: Callable[[Any], str]) -> None:
    handler = Recorder()
    path = unix_lmtp(handler)
    with smtplib.LMTP(path, timeout=5) as client:
        refused = client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert refused == {}
    assert handler.envelopes[0].rcpt_tos == ["b@example.com"]
    assert handler.sessions[0].host_name  # LHLO was sent and recorded


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("250 2.0.0 Delivered", "250 2.0.0 Delivered"),
        (["250 one", "251 two", "450 three"], None),
        (None, "451 4.3.0 Requested action aborted: local error in processing"),
        (["250 only one"], "451 4.3.0 Requested action aborted: local error in processing"),
        (
            RuntimeError("disk on fire"),
            "451 4.3.0 Requested action aborted: local error in processing",
        ),
    ],
    ids=["one string for all", "a list", "not a reply", "list too short", "handler raises"],
)
def test_handle_data_answers(server: Any, answer: Any, expected: str | None) -> None:
    running = server(Answer(answer), cls=LMTP)
    with smtplib.LMTP(HOST, running.port, timeout=5) as client:
        client.ehlo_or_helo_if_needed()
        replies = deliver(client, ["a@example.com", "b@example.com", "c@example.com"])
    assert replies == (answer if expected is None else [expected] * 3)


def test_size_limit_error_is_repeated_per_recipient(server: Any) -> None:
    handler = Recorder()
    running = server(handler, cls=LMTP, data_size_limit=100)
    with smtplib.LMTP(HOST, running.port, timeout=5) as client:
        client.ehlo_or_helo_if_needed()
        replies = deliver(client, ["a@example.com", "b@example.com"], MESSAGE + b"x" * 200)
        assert deliver(client, ["c@example.com"]) == ["250 OK"]
    assert replies == ["552 Error: Too much mail data"] * 2
    assert [envelope.rcpt_tos for envelope in handler.envelopes] == [["c@example.com"]]


def test_line_length_error_is_repeated_per_recipient(server: Any) -> None:
    running = server(cls=LMTP)
    with smtplib.LMTP(HOST, running.port, timeout=5) as client:
        client.ehlo_or_helo_if_needed()
        replies = deliver(client, ["a@example.com", "b@example.com"], b"x" * 2000 + b"\r\n")
    assert replies == ["500 Line too long (see RFC5321 4.5.3.1.6)"] * 2


def test_pipelined_transaction_gets_exactly_one_reply_per_recipient(server: Any, raw: Raw) -> None:
    running = server(Mailboxes(), cls=LMTP)
    client = raw(running.port)
    client.send(
        "LHLO client.test\r\nMAIL FROM:<a@example.com>\r\n"
        "RCPT TO:<ann@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
        "RCPT TO:<full@example.com>\r\nDATA\r\n"
    )
    assert client.reply()[-1] == "250 HELP"
    assert client.lines(4) == ["250 OK", "250 OK", "550 5.1.1 No such user", "250 OK"]
    assert client.line().startswith("354")
    client.send(MESSAGE + b".\r\n")
    assert client.lines(2) == ["250 2.0.0 <ann@example.com> OK", "552 5.2.2 Mailbox full"]
    assert client.silent()
    assert client.command("NOOP") == "250 OK"
