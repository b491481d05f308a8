"""Postfix's smtp client relaying into smtpkit, and what it sends to a server offering more.

A throw-away Postfix instance (``tests/interop/postfix.py``) relays every
message to ``[127.0.0.1]:port``. Into smtpkit, a message injected with
Postfix's ``sendmail`` or through its smtpd must arrive with the envelope it
was given. Into the raw recorder, which offers DSN and XFORWARD, the test
records the DSN parameters and XFORWARD attributes Postfix sends, for the
smtpkit features that will accept them.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from smtpkit._received import received_header
from smtpkit.smtp import Envelope, Session

from . import HOST, Recorder, ServerThread, serving, wait_for
from . import postfix as postfix_peer
from .bdat_dialogs import ehlo_keywords
from .conftest import peer_unavailable
from .postfix import Postfix
from .recorder import RecordedSession, RecorderServer

pytestmark = pytest.mark.interop


def message(subject: str) -> bytes:
    """A small message with its own Subject, to find it among the delivered ones."""
    return (
        f"From: sender@client.test\nTo: rcpt@remote.test\nSubject: {subject}\n\nHello.\n"
    ).encode()


@pytest.fixture(scope="module")
def smtpkit() -> Iterator[tuple[ServerThread, Recorder]]:
    recorder = Recorder()
    with serving(recorder) as server:
        yield server, recorder


def _relay(port: int, *, xforward: bool) -> Iterator[Postfix]:
    reason = postfix_peer.unavailable()
    if reason is not None:
        peer_unavailable(reason)
    instance = Postfix(postfix_peer.relaying(port, xforward=xforward))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def relay(smtpkit: tuple[ServerThread, Recorder]) -> Iterator[Postfix]:
    """Postfix relaying into smtpkit, with XFORWARD on (smtpkit does not offer it)."""
    yield from _relay(smtpkit[0].port, xforward=True)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecorderServer]:
    keywords = ("PIPELINING", "8BITMIME", "DSN", "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
    with RecorderServer(keywords) as server:
        yield server


@pytest.fixture(scope="module")
def relay_to_recorder(recorder: RecorderServer) -> Iterator[Postfix]:
    yield from _relay(recorder.port, xforward=True)


def delivered(recorder: Recorder, subject: str) -> tuple[Session, Envelope]:
    """The (session, envelope) of the message with ``subject``, waiting for it."""

    def find() -> tuple[Session, Envelope] | None:
        for session, envelope in list(recorder.messages):
            if f"Subject: {subject}".encode() in (envelope.original_content or b""):
                return session, envelope
        return None

    wait_for(lambda: find() is not None, f"the message {subject!r} in smtpkit", limit=30)
    found = find()
    assert found is not None
    return found


def test_sendmail_message_relayed_into_smtpkit_keeps_its_envelope(
    relay: Postfix, smtpkit: tuple[ServerThread, Recorder]
) -> None:
    relay.sendmail("sender@client.test", ["rcpt@remote.test"], message("by sendmail"))
    session, envelope = delivered(smtpkit[1], "by sendmail")
    assert envelope.mail_from == "sender@client.test"
    assert envelope.rcpt_tos == ["rcpt@remote.test"]
    assert session.host_name == "postfix.test"
    assert session.peer[0] == HOST
    content = envelope.original_content or b""
    assert content.endswith(b"\r\n\r\nHello.\r\n")
    assert content.startswith(b"Received: by postfix.test (Postfix")
    relay.wait_log(r"status=sent \(250")


def test_sendmail_dsn_request_relayed_into_smtpkit(
    relay: Postfix, smtpkit: tuple[ServerThread, Recorder]
) -> None:
    relay.sendmail(
        "sender@client.test",
        ["rcpt@remote.test"],
        message("dsn into smtpkit"),
        notify="success,failure",
        envid="envid+one",
    )
    _, envelope = delivered(smtpkit[1], "dsn into smtpkit")
    assert envelope.rcpt_tos == ["rcpt@remote.test"]
    mail = {option.split("=", 1)[0].upper() for option in envelope.mail_options}
    rcpt = {option.split("=", 1)[0].upper() for option in envelope.rcpt_options}
    if "DSN" in ehlo_keywords(HOST, smtpkit[0].port):
        assert "ENVID" in mail
        assert {"NOTIFY", "ORCPT"} <= rcpt
    else:
        # Postfix only sends DSN parameters to a server that offers DSN.
        assert not mail & {"ENVID", "RET"}
        assert not rcpt & {"NOTIFY", "ORCPT"}


def test_message_through_postfix_smtpd_reaches_smtpkit_for_each_recipient(
    relay: Postfix, smtpkit: tuple[ServerThread, Recorder]
) -> None:
    with smtplib.SMTP(HOST, relay.port, timeout=10) as client:
        client.ehlo("client.example")
        refused = client.sendmail(
            "sender@client.test", ["one@remote.test", "two@remote.test"], message("by smtpd")
        )
    assert refused == {}
    _, envelope = delivered(smtpkit[1], "by smtpd")
    assert envelope.mail_from == "sender@client.test"
    assert sorted(envelope.rcpt_tos) == ["one@remote.test", "two@remote.test"]


def _recorded(recorder: RecorderServer, subject: str) -> RecordedSession:
    def find() -> RecordedSession | None:
        for record in list(recorder.sessions):
            if any(f"Subject: {subject}".encode() in body for body in record.messages):
                return record
        return None

    wait_for(lambda: find() is not None, f"the message {subject!r} at the recorder", limit=30)
    found = find()
    assert found is not None
    return found


def test_postfix_passes_dsn_requests_on_to_a_server_that_offers_dsn(
    relay_to_recorder: Postfix, recorder: RecorderServer
) -> None:
    relay_to_recorder.sendmail(
        "sender@client.test",
        ["rcpt@remote.test"],
        message("with dsn"),
        notify="success,failure",
        envid="envid+one",
    )
    record = _recorded(recorder, "with dsn")
    mail = next(line for line in record.commands if line.upper().startswith("MAIL FROM:"))
    rcpt = next(line for line in record.commands if line.upper().startswith("RCPT TO:"))
    # Postfix xtext-encodes the -V value itself: "+" is "+2B" on the wire.
    assert mail == "MAIL FROM:<sender@client.test> ENVID=envid+2Bone"
    assert rcpt == "RCPT TO:<rcpt@remote.test> ORCPT=rfc822;rcpt@remote.test NOTIFY=SUCCESS,FAILURE"


def test_postfix_sends_xforward_with_the_original_client(
    relay_to_recorder: Postfix, recorder: RecorderServer
) -> None:
    with smtplib.SMTP(HOST, relay_to_recorder.port, timeout=10) as client:
        client.ehlo("client.example")
        client.sendmail("sender@client.test", ["rcpt@remote.test"], message("with xforward"))
    record = _recorded(recorder, "with xforward")
    xforward = [line for line in record.commands if line.upper().startswith("XFORWARD ")]
    attributes = dict(item.split("=", 1) for line in xforward for item in line.split()[1:])
    # NAME is what 127.0.0.1 resolves to here; SOURCE=LOCAL: the client is in mynetworks.
    assert attributes.keys() == {"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"}
    assert attributes["ADDR"] == HOST
    assert attributes["PORT"].isdigit()
    assert attributes["HELO"] == "client.example"
    assert attributes["PROTO"] == "ESMTP"
    assert attributes["SOURCE"] == "LOCAL"
    assert record.verbs.index("XFORWARD") < record.verbs.index("MAIL")


#: The client's own loopback address, so that it differs from Postfix's.
CLIENT = "127.0.0.2"


class Forwarded:
    """Keeps, per message, what XFORWARD said and the Received field smtpkit writes."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, str, bytes]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        field = received_header(session, envelope, hostname="mx.test")
        self.seen.append((session.xforward, field, envelope.original_content or b""))
        return "250 OK"


@pytest.fixture(scope="module")
def trusting() -> Iterator[tuple[ServerThread, Forwarded]]:
    """smtpkit taking XFORWARD from 127.0.0.1 (where Postfix's smtp client connects from)."""
    handler = Forwarded()
    with serving(handler, xforward_trusted_networks=[f"{HOST}/32"]) as server:
        yield server, handler


@pytest.fixture(scope="module")
def relay_to_trusting(trusting: tuple[ServerThread, Forwarded]) -> Iterator[Postfix]:
    yield from _relay(trusting[0].port, xforward=True)


def test_postfix_xforward_attributes_arrive_in_smtpkit(
    relay_to_trusting: Postfix, trusting: tuple[ServerThread, Forwarded]
) -> None:
    port = relay_to_trusting.port
    with smtplib.SMTP(HOST, port, timeout=10, source_address=(CLIENT, 0)) as client:
        client.ehlo("laptop.example")
        client.sendmail("sender@client.test", ["rcpt@remote.test"], message("xforward in"))
    handler = trusting[1]
    wait_for(lambda: bool(handler.seen), "the message in smtpkit", limit=30)
    [(forwarded, field, content)] = handler.seen
    assert b"Subject: xforward in" in content
    assert forwarded is not None
    assert str(forwarded.addr) == CLIENT
    assert isinstance(forwarded.port, int)
    assert forwarded.helo == "laptop.example"
    assert forwarded.proto == "ESMTP"
    # REMOTE: 127.0.0.2 is not one of Postfix's own interface addresses.
    assert forwarded.source == "REMOTE"
    assert isinstance(forwarded.ident, str) and forwarded.ident
    # smtpkit's Received field names the original client, not Postfix.
    assert field.startswith("Received: from laptop.example ("), field
    assert f"[{CLIENT}]) by mx.test" in " ".join(field.split())
