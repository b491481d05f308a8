"""The Received trace field (smtpkit._received): tables, folding, and real sessions."""

from __future__ import annotations

import email
import email.policy
import io
import re
import smtplib
import socket
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from interop import HOST, MESSAGE, Recorder, ServerThread, certificates, serving

from smtpkit import App
from smtpkit._received import (
    LINE_MAX,
    LINE_PREFERRED,
    PROTOCOLS,
    TLSInfo,
    format_date,
    protocol_name,
    received_header,
    received_value,
    session_client,
    tls_info,
)
from smtpkit.auth import MemoryAuthenticator
from smtpkit.config import ServerConfig
from smtpkit.default_app import DefaultHandler
from smtpkit.handlers import Mailbox, Proxy
from smtpkit.lmtp import LMTP
from smtpkit.routing import RoutedMessage
from smtpkit.smtp import SMTP, Envelope, Session

DATE = datetime(2026, 12, 1, 23, 12, 18, tzinfo=timezone.utc)
DATE_TEXT = "Tue, 01 Dec 2026 23:12:18 +0000"
TLS13 = TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)


def value(**kwargs: Any) -> str:
    base: dict[str, Any] = {
        "helo": "mail.example.org",
        "client": ("192.0.2.7", 4567),
        "hostname": "mx.example.com",
        "protocol": "ESMTP",
        "date": DATE,
        "fold": False,
    }
    base.update(kwargs)
    return received_value(**base)


# -- the with value (RFC 3848, RFC 6531) ------------------------------------------


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        ({"esmtp": False}, "SMTP"),
        ({"esmtp": False, "tls": True, "auth": True}, "SMTP"),
        ({"esmtp": True}, "ESMTP"),
        ({"esmtp": True, "auth": True}, "ESMTPA"),
        ({"esmtp": True, "tls": True}, "ESMTPS"),
        ({"esmtp": True, "tls": True, "auth": True}, "ESMTPSA"),
        ({"esmtp": True, "lmtp": True}, "LMTP"),
        ({"esmtp": True, "lmtp": True, "auth": True}, "LMTPA"),
        ({"esmtp": True, "lmtp": True, "tls": True}, "LMTPS"),
        ({"esmtp": True, "lmtp": True, "tls": True, "auth": True}, "LMTPSA"),
        ({"esmtp": True, "utf8": True}, "UTF8SMTP"),
        ({"esmtp": True, "utf8": True, "auth": True}, "UTF8SMTPA"),
        ({"esmtp": True, "utf8": True, "tls": True}, "UTF8SMTPS"),
        ({"esmtp": True, "utf8": True, "tls": True, "auth": True}, "UTF8SMTPSA"),
        ({"esmtp": True, "lmtp": True, "utf8": True}, "UTF8LMTP"),
        ({"esmtp": True, "lmtp": True, "utf8": True, "tls": True, "auth": True}, "UTF8LMTPSA"),
    ],
)
def test_protocol_name(flags: dict[str, bool], name: str) -> None:
    assert protocol_name(**flags) == name
    assert name in PROTOCOLS


# -- the value, clause by clause --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            f"from mail.example.org ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        (
            {"client_name": "host.example.org", "id": "4Xb2QK", "recipients": ["a@example.com"]},
            "from mail.example.org (host.example.org [192.0.2.7]) by mx.example.com"
            f" with ESMTP id 4Xb2QK for <a@example.com>; {DATE_TEXT}",
        ),
        # for only with exactly one recipient.
        (
            {"recipients": ["a@example.com", "b@example.com"]},
            f"from mail.example.org ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        (
            {"tls": TLS13, "protocol": "ESMTPS"},
            "from mail.example.org ([192.0.2.7])"
            " (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))"
            f" by mx.example.com with ESMTPS; {DATE_TEXT}",
        ),
        (
            {"tls": TLSInfo("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", 128, 256)},
            "from mail.example.org ([192.0.2.7])"
            " (using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/256 bits))"
            f" by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        # IPv6, and IPv4 mapped into IPv6.
        (
            {"client": ("2001:db8::7", 25, 0, 0)},
            f"from mail.example.org ([IPv6:2001:db8::7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        (
            {"client": ("::ffff:192.0.2.7", 25, 0, 0)},
            f"from mail.example.org ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        (
            {"client": "192.0.2.8"},
            f"from mail.example.org ([192.0.2.8]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        # A Unix socket or no client address at all.
        (
            {"client": "/run/smtpkit.sock"},
            f"from mail.example.org by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        ({"client": None, "helo": None}, f"from unknown by mx.example.com with ESMTP; {DATE_TEXT}"),
        (
            {"helo": None},
            f"from [192.0.2.7] ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        # An address literal as HELO name.
        (
            {"helo": "[192.0.2.7]"},
            f"from [192.0.2.7] ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        # A reverse name that is no domain is left out.
        (
            {"client_name": "bad name"},
            f"from mail.example.org ([192.0.2.7]) by mx.example.com with ESMTP; {DATE_TEXT}",
        ),
        # Non-ASCII HELO names are domains only with SMTPUTF8.
        (
            {"helo": "mäil.example.org", "utf8": True, "protocol": "UTF8SMTP"},
            f"from mäil.example.org ([192.0.2.7]) by mx.example.com with UTF8SMTP; {DATE_TEXT}",
        ),
        (
            {"helo": "mäil.example.org"},
            "from [192.0.2.7] ([192.0.2.7]) (helo=m?il.example.org) by mx.example.com"
            f" with ESMTP; {DATE_TEXT}",
        ),
    ],
)
def test_received_value(kwargs: dict[str, Any], expected: str) -> None:
    assert value(**kwargs) == expected


@pytest.mark.parametrize(
    ("helo", "comment"),
    [
        ("bad (name)", "(helo=bad ?name?)"),
        ("evil\r\nBcc: victim@example.com", "(helo=evil??Bcc: victim@example.com)"),
        ("back\\slash", "(helo=back?slash)"),
        ("x" * 300, "(helo=" + "x" * 64 + ")"),
        ("under_score", "(helo=under_score)"),
    ],
)
def test_unfit_helo_goes_into_a_comment(helo: str, comment: str) -> None:
    text = value(helo=helo)
    assert text.startswith(f"from [192.0.2.7] ([192.0.2.7]) {comment} by mx.example.com ")
    assert "\r" not in text and "\n" not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hostname": "mx example"}, "hostname must be a domain name"),
        ({"hostname": "a" * 256}, "at most 255 characters"),
        ({"protocol": "HTTP"}, "protocol must be one of"),
        ({"id": "a b"}, "id must be an Atom"),
        ({"id": "x\r\n"}, "id must be an Atom"),
        ({"date": datetime(2026, 12, 1)}, "timezone-aware"),
    ],
)
def test_received_value_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        value(**kwargs)


def test_recipient_with_a_control_character_is_not_written() -> None:
    assert " for " not in value(recipients=["a\r\n@example.com"])
    assert " for " not in value(recipients=["<a@example.com>"])


# -- folding, and reading back with email -----------------------------------------


def _lines(field: str) -> list[str]:
    assert field.endswith("\r\n")
    return field[:-2].split("\r\n")


def _parse_back(field: str) -> str:
    message = email.message_from_bytes(
        field.encode() + b"Subject: x\r\n\r\nbody\r\n", policy=email.policy.default
    )
    assert message["Subject"] == "x"
    return str(message["Received"])


def test_folded_value_reads_back() -> None:
    folded = received_value(
        helo="mail.example.org",
        client=("192.0.2.7", 4567),
        client_name="host.example.org",
        hostname="mx.example.com",
        protocol="ESMTPS",
        date=DATE,
        id="4Xb2QK",
        recipients=["anne@example.com"],
        tls=TLS13,
    )
    assert folded == (
        "from mail.example.org (host.example.org [192.0.2.7])\r\n"
        " (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
        " by mx.example.com with ESMTPS id 4Xb2QK for <anne@example.com>;\r\n"
        f" {DATE_TEXT}"
    )
    field = f"Received: {folded}\r\n"
    assert all(len(line) <= LINE_PREFERRED for line in _lines(field))
    unfolded = _parse_back(field)
    assert unfolded == received_value(
        helo="mail.example.org",
        client=("192.0.2.7", 4567),
        client_name="host.example.org",
        hostname="mx.example.com",
        protocol="ESMTPS",
        date=DATE,
        id="4Xb2QK",
        recipients=["anne@example.com"],
        tls=TLS13,
        fold=False,
    )
    assert parsedate_to_datetime(unfolded.rsplit(";", 1)[1].strip()) == DATE


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=12).map(".".join).filter(lambda d: len(d) <= 255)


@given(
    helo=st.none() | _DOMAIN | st.text(max_size=600),
    hostname=_DOMAIN,
    client_name=st.none() | _DOMAIN,
    id=st.none() | st.from_regex(r"[A-Za-z0-9]{1,40}", fullmatch=True),
    recipients=st.lists(st.emails(), max_size=2),
    tls=st.booleans(),
)
def test_any_field_folds_within_limits_and_reads_back(
    helo: str | None,
    hostname: str,
    client_name: str | None,
    id: str | None,
    recipients: list[str],
    tls: bool,
) -> None:
    kwargs: dict[str, Any] = {
        "helo": helo,
        "client": ("192.0.2.7", 4567),
        "client_name": client_name,
        "hostname": hostname,
        "protocol": "ESMTPS" if tls else "ESMTP",
        "date": DATE,
        "id": id,
        "recipients": recipients,
        "tls": TLS13 if tls else None,
    }
    field = f"Received: {received_value(**kwargs)}\r\n"
    lines = _lines(field)
    assert all(len(line) <= LINE_MAX for line in lines)
    # A line passes 78 only when it holds a single word too long for any line.
    for line in lines:
        if len(line) > LINE_PREFERRED:
            assert len(line.removeprefix("Received: ").split()) == 1, line
    assert all(line.startswith(" ") for line in lines[1:])
    assert "\r" not in "".join(lines) and "\n" not in "".join(lines)
    unfolded = _parse_back(field)
    assert unfolded == received_value(**kwargs, fold=False)
    assert parsedate_to_datetime(unfolded.rsplit(";", 1)[1].strip()) == DATE


@given(
    st.datetimes(
        timezones=st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    )
)
def test_date_is_written_as_email_writes_it(date: datetime) -> None:
    assert format_date(date) == format_datetime(date)


def test_a_date_in_another_zone_keeps_its_offset() -> None:
    local = DATE.astimezone(timezone(timedelta(hours=-5)))
    assert value(date=local).endswith("; Tue, 01 Dec 2026 18:12:18 -0500")


# -- from a session and an envelope -------------------------------------------------


def test_tls_info_from_a_session_dict() -> None:
    assert tls_info(None) is None
    info = tls_info({"cipher": ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)})
    assert info == TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128)


class ProxySource:
    """What a valid PROXY header leaves on a session (the parts read here)."""

    valid = True

    def __init__(self, address: Any, port: int) -> None:
        self.src_addr = address
        self.src_port = port


def test_session_client_prefers_the_proxy_source() -> None:
    import ipaddress

    class Bare:
        peer = ("127.0.0.1", 50000)
        proxy_data: Any = None

    session = Bare()
    assert session_client(session) == ("127.0.0.1", 50000)
    session.proxy_data = ProxySource(ipaddress.ip_address("198.51.100.9"), 41000)
    assert session_client(session) == ("198.51.100.9", 41000)


class Stamping:
    """A handler that builds the Received field while the session is live."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.fields: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.fields.append(
            received_header(session, envelope, hostname="mx.test", id="Q1", now=DATE, **self.kwargs)
        )
        return "250 OK"


def test_received_header_from_a_real_session() -> None:
    handler = Stamping()
    with serving(handler) as server:
        with smtplib.SMTP(HOST, server.port) as client:
            client.ehlo("client.example.org")
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
            client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
        with smtplib.SMTP(HOST, server.port) as client:
            client.helo("old.example.org")
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    one, two, three = (_parse_back(field) for field in handler.fields)
    assert one == (
        "from client.example.org ([127.0.0.1]) by mx.test with ESMTP id Q1"
        f" for <b@example.com>; {DATE_TEXT}"
    )
    assert two == f"from client.example.org ([127.0.0.1]) by mx.test with ESMTP id Q1; {DATE_TEXT}"
    assert three.startswith("from old.example.org ([127.0.0.1]) by mx.test with SMTP id Q1 ")


def test_received_header_after_starttls_and_auth() -> None:
    certs = certificates()
    handler = Stamping()
    authenticator = MemoryAuthenticator({"anne": "correct horse"})
    with (
        serving(handler, tls_context=certs.server_context(), authenticator=authenticator) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=certs.client_context())
        client.login("anne", "correct horse")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    (field,) = handler.fields
    unfolded = _parse_back(field)
    assert unfolded.startswith("from ")
    assert " by mx.test with ESMTPSA id Q1 for <b@example.com>; " in unfolded
    # The real cipher and version of the connection.
    assert "(using TLSv1." in unfolded and " with cipher " in unfolded
    assert " bits)) " in unfolded
    assert all(len(line) <= LINE_PREFERRED for line in _lines(field))


def test_received_header_uses_a_given_client_and_protocol() -> None:
    handler = Stamping(client=("203.0.113.5", 2525), client_name="real.example.net", lmtp=True)
    with serving(handler) as server, smtplib.SMTP(HOST, server.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    (field,) = handler.fields
    assert _parse_back(field) == (
        "from [127.0.0.1] (real.example.net [203.0.113.5]) by mx.test with LMTP id Q1"
        f" for <b@example.com>; {DATE_TEXT}"
    )


# -- The field the handlers write, read back from what they stored or relayed --

FROM_CLIENT = "from client.example.org ([127.0.0.1]) by mx.test"


def _stored(root: Path) -> list[tuple[str, EmailMessage]]:
    """``(file name, message parsed with email)`` for each message in the Maildir's new/."""
    return [
        (path.name, email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
        for path in sorted((root / "new").iterdir())
    ]


def _unfolded(message: EmailMessage) -> str:
    [field] = message.get_all("Received") or []
    return " ".join(str(field).split())


def _check_date(text: str) -> None:
    """The date after the ';' is now (within a generous minute)."""
    moment = parsedate_to_datetime(text.rsplit("; ", 1)[1])
    assert moment.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - moment).total_seconds()) < 60


def _mailbox_send(root: Path, recipients: list[str], *, helo: bool = False, **kwargs: Any) -> None:
    handler = kwargs.pop("handler", None) or Mailbox(root)
    with serving(handler, **kwargs) as server, smtplib.SMTP(HOST, server.port) as client:
        (client.helo if helo else client.ehlo)("client.example.org")
        assert client.sendmail("a@example.com", recipients, MESSAGE) == {}


def test_mailbox_writes_received_first_with_each_part(tmp_path: Path) -> None:
    _mailbox_send(tmp_path, ["b@example.com"])
    [(name, message)] = _stored(tmp_path)
    assert list(message.keys())[:4] == ["Received", "X-Peer", "X-MailFrom", "X-RcptTo"]
    unique = name.split(".")[1]
    text = _unfolded(message)
    assert text.startswith(f"{FROM_CLIENT} with ESMTP id {unique} for <b@example.com>; ")
    _check_date(text)
    assert message["Subject"] == "hi"


def test_mailbox_field_names_no_one_of_several_recipients(tmp_path: Path) -> None:
    _mailbox_send(tmp_path, ["b@example.com", "c@example.com"])
    [(name, message)] = _stored(tmp_path)
    text = _unfolded(message)
    assert text.startswith(f"{FROM_CLIENT} with ESMTP id {name.split('.')[1]}; ")
    assert " for " not in text


def test_mailbox_field_after_helo_says_smtp(tmp_path: Path) -> None:
    _mailbox_send(tmp_path, ["b@example.com"], helo=True)
    [(_, message)] = _stored(tmp_path)
    assert _unfolded(message).startswith(f"{FROM_CLIENT} with SMTP id ")


@pytest.mark.parametrize("login", [False, True])
def test_mailbox_field_over_tls_and_auth(tmp_path: Path, login: bool) -> None:
    certs = certificates()
    authenticator = MemoryAuthenticator({"anne": "correct horse"})
    with (
        serving(
            Mailbox(tmp_path), tls_context=certs.server_context(), authenticator=authenticator
        ) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.ehlo("client.example.org")
        client.starttls(context=certs.client_context())
        client.ehlo("client.example.org")
        if login:
            client.login("anne", "correct horse")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        version = client.sock.version()
        cipher = client.sock.cipher()
    [(_, message)] = _stored(tmp_path)
    text = _unfolded(message)
    assert cipher is not None and version is not None
    comment = f"(using {version} with cipher {cipher[0]} ({cipher[2]}/{cipher[2]} bits))"
    protocol = "ESMTPSA" if login else "ESMTPS"
    assert text.startswith(
        f"from client.example.org ([127.0.0.1]) {comment} by mx.test with {protocol} id "
    )


class BehindProxy(Mailbox):
    """A Mailbox that takes every PROXY header (a balancer is in front)."""

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy_data: Any
    ) -> bool:
        return True


def test_mailbox_field_names_the_proxy_protocol_client(tmp_path: Path) -> None:
    with (
        serving(BehindProxy(tmp_path), proxy_protocol_timeout=10.0) as server,
        socket.create_connection((HOST, server.port), timeout=10) as sock,
    ):
        sock.sendall(b"PROXY TCP4 198.51.100.9 127.0.0.1 41000 25\r\n")
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for line in (
            b"EHLO behind.example.net",
            b"MAIL FROM:<a@example.com>",
            b"RCPT TO:<b@example.com>",
            b"DATA",
        ):
            sock.sendall(line + b"\r\n")
            while (reply := reader.readline())[3:4] == b"-":
                pass
            assert reply[:1] in (b"2", b"3"), (line, reply)
        sock.sendall(MESSAGE.encode() + b".\r\n")
        assert reader.readline().startswith(b"250")
        sock.sendall(b"QUIT\r\n")
        reader.close()
    [(_, message)] = _stored(tmp_path)
    assert _unfolded(message).startswith("from behind.example.net ([198.51.100.9]) by mx.test ")
    # X-Peer stays the connection's own peer, as documented.
    assert str(message["X-Peer"]).startswith(f"{HOST}:")


def test_mailbox_field_under_lmtp(tmp_path: Path) -> None:
    with (
        serving(Mailbox(tmp_path), smtp_class=LMTP) as server,
        smtplib.LMTP(HOST, server.port) as client,
    ):
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    [(_, message)] = _stored(tmp_path)
    text = _unfolded(message)
    assert " by mx.test with LMTP id " in text and " for <b@example.com>; " in text


def test_mailbox_streams_with_the_field_first(tmp_path: Path) -> None:
    body = b"0123456789" * 7 + b"\r\n"
    message_bytes = b"Subject: big\r\n\r\n" + body * (2 * 1024 * 1024 // len(body))
    with serving(Mailbox(tmp_path)) as server, smtplib.SMTP(HOST, server.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], message_bytes)
    [path] = sorted((tmp_path / "new").iterdir())
    data = path.read_bytes()
    assert data.startswith(b"Received: from [127.0.0.1] ([127.0.0.1]) by mx.test with ESMTP")
    assert data.count(b"Received:") == 1
    assert data.endswith(message_bytes.replace(b"\r\n", b"\n"))


@pytest.mark.parametrize("where", ["handler", "server", "config"])
def test_the_field_can_be_turned_off(tmp_path: Path, where: str) -> None:
    handler = Mailbox(tmp_path, received_header=where != "handler")
    kwargs: dict[str, Any] = {
        "server": {"received_header": False},
        "config": {"config": ServerConfig(received_header=False)},
    }.get(where, {})
    _mailbox_send(tmp_path, ["b@example.com"], handler=handler, **kwargs)
    [(_, message)] = _stored(tmp_path)
    assert message["Received"] is None
    assert list(message.keys())[:3] == ["X-Peer", "X-MailFrom", "X-RcptTo"]


def test_handlers_refuse_a_setting_that_is_not_a_bool(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="received_header = 'no': expected True or False"):
        Mailbox(tmp_path, received_header="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="received_header = 0: expected True or False"):
        Proxy(HOST, 25, received_header=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="received_header = 1: expected True or False"):
        SMTP(Recorder(), received_header=1)


def test_default_app_writes_the_field_once(tmp_path: Path) -> None:
    handler = DefaultHandler(tmp_path, stream=io.StringIO())
    _mailbox_send(tmp_path, ["b@example.com"], handler=handler)
    [(name, message)] = _stored(tmp_path)
    assert len(message.get_all("Received") or []) == 1
    assert _unfolded(message).startswith(f"{FROM_CLIENT} with ESMTP id {name.split('.')[1]} ")


@pytest.mark.parametrize("enabled", [True, False])
def test_proxy_puts_the_field_in_front(enabled: bool) -> None:
    upstream = Recorder()
    with (
        serving(upstream, hostname="far.test") as far,
        serving(Proxy(HOST, far.port, timeout=10, received_header=enabled)) as near,
        smtplib.SMTP(HOST, near.port) as client,
    ):
        client.ehlo("client.example.org")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    [(_, envelope)] = upstream.messages
    message = email.message_from_bytes(
        envelope.original_content or b"", policy=email.policy.default
    )
    if not enabled:
        assert message["Received"] is None
        return
    assert next(iter(message.keys())) == "Received"
    text = _unfolded(message)
    assert re.fullmatch(
        r"from client\.example\.org \(\[127\.0\.0\.1\]\) by mx\.test with ESMTP"
        r" id [0-9a-f]{12} for <b@example\.com>; .+",
        text,
    )
    _check_date(text)
    assert message["X-Peer"] is not None


@pytest.mark.parametrize("enabled", [True, False])
def test_app_routes_get_the_field(enabled: bool) -> None:
    app = App(config=ServerConfig(hostname="app.test", received_header=enabled))
    contents: list[bytes] = []

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        contents.append(message.content)

    server = ServerThread(app.protocol_factory())
    server.start()
    try:
        with smtplib.SMTP(HOST, server.port) as client:
            client.ehlo("client.example.org")
            client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
    finally:
        server.stop()
    [content] = contents
    if not enabled:
        assert content == MESSAGE.encode()
        return
    message = email.message_from_bytes(content, policy=email.policy.default)
    text = _unfolded(message)
    assert re.fullmatch(
        r"from client\.example\.org \(\[127\.0\.0\.1\]\) by app\.test with ESMTP"
        r" id [0-9a-f]{12}; .+",
        text,
    )
    assert content.endswith(MESSAGE.encode())
