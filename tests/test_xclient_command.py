"""XCLIENT and XFORWARD on a real server: trust, refusals, the new peer, the Received field."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from conftest import RawClient, ServerFactory

from smtpkit._limits import ConnectionLimiter
from smtpkit.config import ServerConfig
from smtpkit.handlers import Mailbox
from smtpkit.smtp import SMTP
from smtpkit.xclient import Special, XClientAttributes, XForwardAttributes

LOOPBACK = ["127.0.0.0/8"]
MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


class Seen:
    """Keeps what each hook saw of the session."""

    def __init__(self) -> None:
        self.mail: list[tuple[Any, Any, Any, Any]] = []
        self.data: list[tuple[Any, Any, Any]] = []

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mail.append(
            (session.peer, session.host_name, session.authenticated, session.auth_data)
        )
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.data.append((session.peer, session.xclient, session.xforward))
        return "250 OK"


def _ehlo(client: RawClient, name: str = "proxy.example") -> list[str]:
    client.send(f"EHLO {name}\r\n")
    return client.reply()


def _send_message(client: RawClient) -> None:
    for line in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"):
        assert client.command(line).startswith("250"), line
    assert client.command("DATA").startswith("354")
    assert client.command(MESSAGE + ".").startswith("250")


# -- XCLIENT -------------------------------------------------------------------------


def test_ehlo_offers_xclient_only_to_a_trusted_client(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    trusted = server(Seen(), xclient_trusted_networks=LOOPBACK)
    lines = _ehlo(raw(trusted.port))
    assert "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT" in lines
    elsewhere = server(Seen(), xclient_trusted_networks=["192.0.2.0/24"])
    assert not any("XCLIENT" in line for line in _ehlo(raw(elsewhere.port)))
    off = server(Seen())
    assert not any("XCLIENT" in line for line in _ehlo(raw(off.port)))


def test_untrusted_client_gets_550_and_keeps_its_peer(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    handler = Seen()
    running = server(handler, xclient_trusted_networks=["192.0.2.0/24"])
    client = raw(running.port)
    _ehlo(client)
    reply = client.command("XCLIENT ADDR=198.51.100.7 PORT=4000")
    assert reply == "550 5.7.0 Error: insufficient authorization"
    _send_message(client)
    [(peer, *_)] = handler.mail
    assert peer[0] == "127.0.0.1"


def test_without_trusted_networks_xclient_is_an_unknown_command(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    client = raw(server(Seen()).port)
    _ehlo(client)
    assert (
        client.command("XCLIENT ADDR=198.51.100.7") == '500 Error: command "XCLIENT" not recognized'
    )


def test_xclient_inside_a_transaction_is_refused(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    client = raw(server(Seen(), xclient_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>").startswith("250")
    assert client.command("XCLIENT ADDR=198.51.100.7") == (
        "503 5.5.1 Error: MAIL transaction in progress"
    )


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("", "Syntax: XCLIENT attribute=value ..."),
        ("COLOR=blue", 'Bad XCLIENT attribute name: "COLOR"'),
        ("ADDR=300.1.1.1", 'Bad XCLIENT ADDR value "300.1.1.1"'),
        ("PORT=70000", 'Bad XCLIENT PORT value "70000"'),
        ("ADDR=192.0.2.1 ADDR=192.0.2.2", "Duplicate XCLIENT attribute: ADDR"),
    ],
)
def test_bad_xclient_attributes_get_501(
    server: ServerFactory, raw: Callable[..., RawClient], arg: str, problem: str
) -> None:
    client = raw(server(Seen(), xclient_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    reply = client.command(f"XCLIENT {arg}".rstrip())
    assert reply.startswith(f"501 5.5.4 {problem}"), reply


def test_xclient_restarts_the_session_with_the_named_client(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    handler = Seen()
    running = server(handler, xclient_trusted_networks=LOOPBACK)
    client = raw(running.port)
    _ehlo(client)
    client.send(
        "XCLIENT NAME=client.example.org ADDR=198.51.100.7 PORT=4567 "
        "HELO=laptop.example.org LOGIN=anne\r\n"
    )
    assert client.reply() == ["220 smtp.example.test smtpkit " + _version()]
    # Greeting again is needed for ESMTP (the session is new).
    reply = client.command("MAIL FROM:<a@example.com> SIZE=10")
    assert reply.startswith("501"), reply
    lines = _ehlo(client, "laptop.example.org")
    assert lines[0] == "250-smtp.example.test"
    _send_message(client)
    assert handler.mail == [(("198.51.100.7", 4567), "laptop.example.org", True, "anne")]
    [(peer, xclient, xforward)] = handler.data
    assert peer == ("198.51.100.7", 4567)
    assert xclient == XClientAttributes(
        name="client.example.org",
        addr=IPv4Address("198.51.100.7"),
        port=4567,
        helo="laptop.example.org",
        login="anne",
    )
    assert xforward is None
    protocol = running.protocols[0]
    assert protocol.session.connected_peer[0] == "127.0.0.1"


def test_xclient_helo_lets_the_session_go_on_without_a_new_greeting(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    handler = Seen()
    client = raw(server(handler, xclient_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    assert client.command("XCLIENT ADDR=IPV6:2001:db8::7 HELO=old.example").startswith("220 ")
    _send_message(client)
    # Without PORT the connection's own port stays.
    own_port = client.sock.getsockname()[1]
    assert handler.mail == [(("2001:db8::7", own_port), "old.example", None, None)]


def test_xclient_unavailable_address_and_a_second_xclient(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    handler = Seen()
    client = raw(server(handler, xclient_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    assert client.command("XCLIENT ADDR=[UNAVAILABLE] NAME=[TEMPUNAVAIL]").startswith("220 ")
    _ehlo(client)
    # The proxy is still the connected client: it may send XCLIENT again.
    assert client.command("XCLIENT ADDR=192.0.2.9 PORT=25").startswith("220 ")
    _ehlo(client)
    _send_message(client)
    [(peer, xclient, _)] = handler.data
    assert peer == ("192.0.2.9", 25)
    assert xclient.name is Special.TEMPUNAVAIL
    assert xclient.addr == IPv4Address("192.0.2.9")


def test_connection_limit_follows_the_named_client(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    limiter = ConnectionLimiter(max_per_ip=1)
    running = server(Seen(), xclient_trusted_networks=LOOPBACK, connection_limiter=limiter)
    first = raw(running.port)
    _ehlo(first)
    assert first.command("XCLIENT ADDR=192.0.2.50").startswith("220 ")
    assert limiter.count("192.0.2.50") == 1
    assert limiter.count("127.0.0.1") == 0
    second = raw(running.port)  # 127.0.0.1 is free again
    _ehlo(second)
    assert second.command("XCLIENT ADDR=192.0.2.50") == (
        "421 4.7.0 Too many connections, try again later"
    )
    assert second.closed()


def test_the_received_field_names_the_xclient_client(
    server: ServerFactory, raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    client = raw(server(Mailbox(tmp_path), xclient_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    assert client.command("XCLIENT ADDR=198.51.100.7 NAME=client.example.org").startswith("220")
    _ehlo(client, "laptop.example.org")
    _send_message(client)
    received = _received(tmp_path)
    assert received.startswith(
        "from laptop.example.org (client.example.org [198.51.100.7]) by smtp.example.test "
    ), received


# -- XFORWARD ------------------------------------------------------------------------


def test_ehlo_offers_xforward_only_to_a_trusted_client(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    trusted = server(Seen(), xforward_trusted_networks=LOOPBACK)
    assert "250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE" in _ehlo(raw(trusted.port))
    other = server(Seen(), xforward_trusted_networks=["10.0.0.0/8"])
    client = raw(other.port)
    assert not any("XFORWARD" in line for line in _ehlo(client))
    assert (
        client.command("XFORWARD ADDR=192.0.2.1") == "550 5.7.0 Error: insufficient authorization"
    )


def test_xforward_is_recorded_for_one_transaction_without_a_reset(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    handler = Seen()
    client = raw(server(handler, xforward_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    # Postfix sends the attributes in more than one command; they add up.
    assert client.command("XFORWARD NAME=spike.example ADDR=IPV6:2001:db8::5 PORT=999") == "250 OK"
    assert client.command("XFORWARD HELO=spike.example IDENT=4Xb2QK SOURCE=REMOTE") == "250 OK"
    assert client.command("XFORWARD PROTO=ESMTP") == "250 OK"
    assert client.command("MAIL FROM:<a@example.com>").startswith("250")
    assert client.command("XFORWARD NAME=late.example") == (
        "503 5.5.1 Error: MAIL transaction in progress"
    )
    assert client.command("RCPT TO:<b@example.com>").startswith("250")
    assert client.command("DATA").startswith("354")
    assert client.command(MESSAGE + ".") == "250 OK"
    _send_message(client)
    (peer, xclient, forwarded), (_, _, after) = handler.data
    assert peer[0] == "127.0.0.1" and xclient is None
    assert forwarded == XForwardAttributes(
        name="spike.example",
        addr=IPv6Address("2001:db8::5"),
        port=999,
        proto="ESMTP",
        helo="spike.example",
        ident="4Xb2QK",
        source="REMOTE",
    )
    assert after is None  # the next message has its own attributes, or none


def test_bad_xforward_attributes_get_501(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    client = raw(server(Seen(), xforward_trusted_networks=LOOPBACK).port)
    _ehlo(client)
    assert client.command("XFORWARD SOURCE=SPACE").startswith(
        '501 5.5.4 Bad XFORWARD SOURCE value "SPACE"'
    )
    assert client.command("XFORWARD LOGIN=anne").startswith(
        '501 5.5.4 Bad XFORWARD attribute name: "LOGIN"'
    )


def test_the_received_field_names_the_xforward_client(
    server: ServerFactory, tmp_path: Path
) -> None:
    running = server(Mailbox(tmp_path), xforward_trusted_networks=LOOPBACK)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("relay.example")
        assert client.has_extn("xforward")
        code, _ = client.docmd("XFORWARD", "NAME=spike.example ADDR=192.0.2.77 HELO=spike")
        assert code == 250
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    received = _received(tmp_path)
    assert received.startswith("from spike (spike.example [192.0.2.77]) by smtp.example.test ")


def test_the_config_turns_them_on_and_checks_the_networks() -> None:
    config = ServerConfig(
        xclient_trusted_networks=("10.0.0.0/8",), xforward_trusted_networks=("::1/128",)
    )
    protocol = SMTP(Seen(), config=config)
    assert [str(n) for n in protocol._settings.xclient_networks] == ["10.0.0.0/8"]
    assert [str(n) for n in protocol._settings.xforward_networks] == ["::1/128"]
    with pytest.raises(ValueError, match="not-a-network"):
        SMTP(Seen(), xclient_trusted_networks=["not-a-network"])
    with pytest.raises(TypeError, match="xforward_trusted_networks must be a list"):
        SMTP(Seen(), xforward_trusted_networks="10.0.0.0/8")
    with pytest.raises(ValueError, match="xclient_trusted_networks"):
        ServerConfig(xclient_trusted_networks=("10.0.0.300/8",))


def _received(root: Path) -> str:
    [path] = list((root / "new").iterdir())
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    [field] = message.get_all("Received") or []
    return " ".join(str(field).split())


def _version() -> str:
    from smtpkit._version import __version__

    return __version__


def test_the_logs_name_the_client_xclient_names(
    server: ServerFactory, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    running = server(Seen(), xclient_trusted_networks=LOOPBACK, command_call_limit={"NOOP": 1})
    client = raw(running.port)
    _ehlo(client)
    with caplog.at_level(logging.INFO, logger="smtpkit.smtp"):
        assert client.command("XCLIENT ADDR=198.51.100.7 PORT=4567").startswith("220 ")
        assert client.command("NOOP").startswith("250")
        assert client.command("NOOP").startswith("421")
        assert client.closed()
    assert "XCLIENT: the client is now ('198.51.100.7', 4567)" in caplog.text
    # Later log lines of the session name the new client, not the proxy.
    assert "('198.51.100.7', 4567) sent NOOP too many times" in caplog.text
