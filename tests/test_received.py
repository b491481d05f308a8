"""The Received trace field (smtpkit._received): tables, folding, and real sessions."""

from __future__ import annotations

import email
import email.policy
import smtplib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from interop import HOST, MESSAGE, certificates, serving

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
