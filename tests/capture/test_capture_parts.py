"""The pure pieces of the capture UI, as tables: ids, envelope headers, Host names, addresses."""

from __future__ import annotations

import pytest

from smtpkit._cli.options import UsageError
from smtpkit.http.message import without_envelope
from smtpkit.http.options import parse_address
from smtpkit.http.security import _host_name
from smtpkit.http.store import valid_id


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("1769851812.M42315P4242Q1R5e1f2a3b.mail.example", True),
        ("1769851812.M1P2.host:2,S", True),  # a cur/ name with flags
        ("..", False),
        ("../new/x", False),
        ("a/b", False),
        (".hidden", False),
        ("a..b", False),
        ("", False),
        ("x" * 256, False),
        ("name with space", False),
        ("caf\u00e9", False),
    ],
)
def test_valid_id(text: str, valid: bool) -> None:
    assert valid_id(text) is valid


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        (
            b"X-Peer: 127.0.0.1:1\nX-MailFrom: a@x\nX-RcptTo: b@x\nSubject: s\n\nbody\n",
            b"Subject: s\n\nbody\n",
        ),
        (b"Subject: s\nX-Peer: kept\n\nbody\n", b"Subject: s\nX-Peer: kept\n\nbody\n"),
        (b"x-peer: 1\n\nbody\n", b"\nbody\n"),
        (b"X-Peer: no end of line", b""),
        (
            b"Received: from a\n by b; date\nX-Peer: 1\nX-RcptTo: b@x\nSubject: s\n\nbody\n",
            b"Received: from a\n by b; date\nSubject: s\n\nbody\n",
        ),
    ],
)
def test_without_envelope(raw: bytes, sent: bytes) -> None:
    assert without_envelope(raw) == sent


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"127.0.0.1:8026", "127.0.0.1"),
        (b"localhost", "localhost"),
        (b"LocalHost:1", "localhost"),
        (b"[::1]:8026", "::1"),
        (b"[::1]", "::1"),
        (b"evil.example:80", "evil.example"),
        (b"", ""),
    ],
)
def test_host_name(host: bytes, name: str) -> None:
    assert _host_name(host) == name


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8026", ("127.0.0.1", 8026)),
        ("[::1]:0", ("::1", 0)),
        ("mx.example:25", ("mx.example", 25)),
    ],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text, "--http") == address


@pytest.mark.parametrize("text", ["8026", ":8026", "host:", "host:port", "host:65536", "host:-1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(
        UsageError, match=rf"^--http: {text!r} is not an address; expected HOST:PORT"
    ):
        parse_address(text, "--http")
