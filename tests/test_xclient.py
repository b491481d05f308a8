"""XCLIENT and XFORWARD attributes (smtpkit._xclient): tables and hypothesis."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit._dsn import xtext_encode
from smtpkit._replies import SMTPReplyError
from smtpkit._xclient import (
    XCLIENT_ATTRIBUTES,
    XFORWARD_ATTRIBUTES,
    Special,
    XClientAttributes,
    XClientError,
    XForwardAttributes,
    parse_xclient,
    parse_xforward,
    xclient_keyword,
    xforward_keyword,
)

# -- XCLIENT ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("NAME=mail.example.org", XClientAttributes(name="mail.example.org")),
        (
            "NAME=mail.example.org ADDR=192.0.2.7 PORT=4567 PROTO=ESMTP HELO=client.example.org",
            XClientAttributes(
                name="mail.example.org",
                addr=IPv4Address("192.0.2.7"),
                port=4567,
                proto="ESMTP",
                helo="client.example.org",
            ),
        ),
        # Names in any case; PROTO's value too.
        ("name=a.example addr=192.0.2.7 proto=smtp", None),
        ("ADDR=IPV6:2001:db8::7", XClientAttributes(addr=IPv6Address("2001:db8::7"))),
        ("ADDR=ipv6:2001:DB8::7", XClientAttributes(addr=IPv6Address("2001:db8::7"))),
        ("ADDR=IPV6:::ffff:192.0.2.7", XClientAttributes(addr=IPv6Address("::ffff:192.0.2.7"))),
        (
            "DESTADDR=198.51.100.1 DESTPORT=25",
            XClientAttributes(destaddr=IPv4Address("198.51.100.1"), destport=25),
        ),
        ("PORT=0", XClientAttributes(port=0)),
        ("PORT=65535", XClientAttributes(port=65535)),
        ("PORT=+32+35", XClientAttributes(port=25)),
        # xtext: "+20" is a space, "+2B" a plus.
        ("LOGIN=anne+20smith", XClientAttributes(login="anne smith")),
        ("LOGIN=a+2Bb", XClientAttributes(login="a+b")),
        ("LOGIN=j+C3+B6rg", XClientAttributes(login="jörg")),
        ("HELO=[192.0.2.7]", XClientAttributes(helo="[192.0.2.7]")),
        ("REVERSE_NAME=r.example.net", XClientAttributes(reverse_name="r.example.net")),
        # The special values, in any case, and encoded.
        ("NAME=[UNAVAILABLE]", XClientAttributes(name=Special.UNAVAILABLE)),
        ("NAME=[TEMPUNAVAIL]", XClientAttributes(name=Special.TEMPUNAVAIL)),
        ("name=[tempunavail]", XClientAttributes(name=Special.TEMPUNAVAIL)),
        ("REVERSE_NAME=[TEMPUNAVAIL]", XClientAttributes(reverse_name=Special.TEMPUNAVAIL)),
        (
            "ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] LOGIN=[UNAVAILABLE] HELO=[UNAVAILABLE]",
            XClientAttributes(
                addr=Special.UNAVAILABLE,
                port=Special.UNAVAILABLE,
                login=Special.UNAVAILABLE,
                helo=Special.UNAVAILABLE,
            ),
        ),
        ("PROTO=[UNAVAILABLE]", XClientAttributes(proto=Special.UNAVAILABLE)),
        ("NAME=+5BUNAVAILABLE+5D", XClientAttributes(name=Special.UNAVAILABLE)),
        # Extra spaces between attributes.
        ("  PORT=25   NAME=a.example  ", XClientAttributes(port=25, name="a.example")),
        ("NAME=mail.example.org.", XClientAttributes(name="mail.example.org.")),
    ],
)
def test_parse_xclient(arg: str, expected: XClientAttributes | None) -> None:
    if expected is None:
        expected = XClientAttributes(name="a.example", addr=IPv4Address("192.0.2.7"), proto="SMTP")
    assert parse_xclient(arg) == expected


@pytest.mark.parametrize(
    ("arg", "text"),
    [
        (None, "Syntax: XCLIENT attribute=value ..."),
        ("", "Syntax: XCLIENT attribute=value ..."),
        ("   ", "Syntax: XCLIENT attribute=value ..."),
        ("FOO=1", 'Bad XCLIENT attribute name: "FOO"'),
        ("IDENT=1", 'Bad XCLIENT attribute name: "IDENT"'),
        ("SOURCE=LOCAL", 'Bad XCLIENT attribute name: "SOURCE"'),
        ("NAME", 'Bad XCLIENT attribute syntax: "NAME" (expected NAME=value)'),
        ("NAME=a.example name=b.example", "Duplicate XCLIENT attribute: NAME"),
        ("NAME=", 'Bad XCLIENT NAME value "" (expected a host name)'),
        ("NAME=bad_name", 'Bad XCLIENT NAME value "bad_name" (expected a host name)'),
        ("NAME=-a.example", "expected a host name"),
        ("ADDR=192.0.2", 'Bad XCLIENT ADDR value "192.0.2" (expected an IPv4 address'),
        ("ADDR=192.0.2.256", "expected an IPv4 address"),
        ("ADDR=192.0.2.07", "expected an IPv4 address"),
        ("ADDR=2001:db8::7", "expected an IPv4 address, or IPV6: and an IPv6 address"),
        ("ADDR=IPV6:192.0.2.7", "expected IPV6: and an IPv6 address"),
        ("ADDR=IPV6:fe80::1%eth0", "expected IPV6: and an IPv6 address"),
        ("ADDR=[TEMPUNAVAIL]", "expected an IPv4 address"),
        ("DESTADDR=localhost", 'Bad XCLIENT DESTADDR value "localhost"'),
        ("PORT=65536", 'Bad XCLIENT PORT value "65536" (expected a port number from 0 to 65535)'),
        ("PORT=-1", "expected a port number"),
        ("PORT=123456", "expected a port number"),
        ("DESTPORT=http", 'Bad XCLIENT DESTPORT value "http"'),
        ("PROTO=LMTP", 'Bad XCLIENT PROTO value "LMTP" (expected SMTP or ESMTP)'),
        ("HELO=a+20b", 'Bad XCLIENT HELO value "a+20b" (expected printable ASCII without spaces)'),
        ("LOGIN=a+0D+0Ab", "expected printable text"),
        ("LOGIN=a+", "Bad XCLIENT LOGIN value \"a+\": '+' at offset 1"),
        ("LOGIN=a+zz", "two hex digits"),
        ("LOGIN=a=b", "is not allowed in xtext"),
        ("LOGIN=+FF", "not UTF-8"),
        ("HELO=" + "a" * 256, "expected printable ASCII"),
    ],
)
def test_parse_xclient_refuses(arg: str | None, text: str) -> None:
    with pytest.raises(XClientError) as caught:
        parse_xclient(arg)
    reply = caught.value.reply
    assert (reply.code, reply.enhanced) == (501, "5.5.4")
    assert reply.format(False).startswith("501 5.5.4 ")
    assert text in reply.text
    assert isinstance(caught.value, SMTPReplyError)
    assert isinstance(caught.value, ValueError)


def test_refusal_text_is_one_safe_line() -> None:
    with pytest.raises(XClientError) as caught:
        parse_xclient("X\x00\r\nQUIT" + "y" * 300 + "=1")
    text = caught.value.reply.text
    assert text.isascii() and text.isprintable()
    assert len(text) < 120


# -- XFORWARD -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (
            "NAME=mail.example.org ADDR=192.0.2.7 PORT=4567 PROTO=ESMTP HELO=client.example.org",
            XForwardAttributes(
                name="mail.example.org",
                addr=IPv4Address("192.0.2.7"),
                port=4567,
                proto="ESMTP",
                helo="client.example.org",
            ),
        ),
        ("SOURCE=LOCAL", XForwardAttributes(source="LOCAL")),
        ("source=remote", XForwardAttributes(source="REMOTE")),
        ("IDENT=4Xb2QK+2Bx", XForwardAttributes(ident="4Xb2QK+x")),
        ("NAME=[TEMPUNAVAIL]", XForwardAttributes(name=Special.TEMPUNAVAIL)),
        ("ADDR=IPV6:2001:db8::1", XForwardAttributes(addr=IPv6Address("2001:db8::1"))),
        ("SOURCE=[UNAVAILABLE]", XForwardAttributes(source=Special.UNAVAILABLE)),
    ],
)
def test_parse_xforward(arg: str, expected: XForwardAttributes) -> None:
    assert parse_xforward(arg) == expected


@pytest.mark.parametrize(
    ("arg", "text"),
    [
        ("", "Syntax: XFORWARD attribute=value ..."),
        ("LOGIN=anne", 'Bad XFORWARD attribute name: "LOGIN"'),
        ("DESTADDR=192.0.2.1", 'Bad XFORWARD attribute name: "DESTADDR"'),
        ("SOURCE=SOMEWHERE", 'Bad XFORWARD SOURCE value "SOMEWHERE" (expected LOCAL or REMOTE)'),
        ("SOURCE=[TEMPUNAVAIL]", "expected LOCAL or REMOTE"),
        ("IDENT=a IDENT=b", "Duplicate XFORWARD attribute: IDENT"),
        ("PORT=99999", "expected a port number from 0 to 65535"),
    ],
)
def test_parse_xforward_refuses(arg: str, text: str) -> None:
    with pytest.raises(XClientError) as caught:
        parse_xforward(arg)
    assert caught.value.reply.format(True).startswith("501 5.5.4 ")
    assert text in caught.value.reply.text


# -- the EHLO keyword lines ----------------------------------------------------------


def test_keyword_lines() -> None:
    assert xclient_keyword() == (
        "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT REVERSE_NAME"
    )
    assert xforward_keyword() == "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"
    assert xclient_keyword(["name", "addr", "NAME"]) == "XCLIENT NAME ADDR"
    assert xforward_keyword(("SOURCE",)) == "XFORWARD SOURCE"


@pytest.mark.parametrize(
    ("build", "names"),
    [
        (xclient_keyword, ["IDENT"]),
        (xclient_keyword, []),
        (xforward_keyword, ["LOGIN"]),
        (xforward_keyword, ["NAME", "bogus"]),
    ],
)
def test_keyword_lines_refuse_unknown_attributes(build: Any, names: list[str]) -> None:
    with pytest.raises(ValueError, match="attributes must be among"):
        build(names)


# -- hypothesis ---------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?", fullmatch=True)
_HOST = st.lists(_LABEL, min_size=1, max_size=5).map(".".join)
_SPECIAL = st.sampled_from([Special.UNAVAILABLE])
_IPV4 = st.ip_addresses(v=4)
_IPV6 = st.ip_addresses(v=6)
_PORTS = st.integers(0, 65535)
_TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
_LOGIN = st.text(min_size=1, max_size=40).filter(str.isprintable)


def _wire(name: str, value: Any) -> str:
    if isinstance(value, Special):
        text = value.value
    elif isinstance(value, IPv6Address):
        text = f"IPV6:{value}"
    else:
        text = str(value)
    return f"{name}={xtext_encode(text)}"


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "name": _HOST | _SPECIAL | st.just(Special.TEMPUNAVAIL),
            "addr": _IPV4 | _IPV6 | _SPECIAL,
            "port": _PORTS | _SPECIAL,
            "proto": st.sampled_from(["SMTP", "ESMTP"]) | _SPECIAL,
            "helo": _TEXT.filter(lambda t: t.upper() not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")),
            "login": _LOGIN.filter(lambda t: t.upper() not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")),
            "destaddr": _IPV4 | _IPV6,
            "destport": _PORTS,
        },
    ).filter(bool),
    st.randoms(),
)
def test_any_valid_xclient_parses(values: dict[str, Any], random: Any) -> None:
    pairs = [_wire(name.upper(), value) for name, value in values.items()]
    random.shuffle(pairs)
    assert parse_xclient(" ".join(pairs)) == XClientAttributes(**values)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "name": _HOST | _SPECIAL,
            "addr": _IPV4 | _IPV6,
            "port": _PORTS,
            "ident": _LOGIN.filter(lambda t: t.upper() not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")),
            "source": st.sampled_from(["LOCAL", "REMOTE"]),
        },
    ).filter(bool)
)
def test_any_valid_xforward_parses(values: dict[str, Any]) -> None:
    arg = " ".join(_wire(name.lower().title(), value) for name, value in values.items())
    assert parse_xforward(arg) == XForwardAttributes(**values)


_NAMES = st.sampled_from([*XCLIENT_ATTRIBUTES, *XFORWARD_ATTRIBUTES, "name", "BOGUS", ""])


@given(st.lists(st.tuples(_NAMES, st.text(max_size=30)), max_size=4))
def test_random_attributes_give_a_value_or_the_501(pairs: list[tuple[str, str]]) -> None:
    arg = " ".join(f"{name}={value}" for name, value in pairs)
    for parse in (parse_xclient, parse_xforward):
        try:
            parse(arg)
        except XClientError as error:
            assert error.reply.format(False).startswith("501 5.5.4 ")


@given(st.binary(max_size=120))
def test_random_bytes_give_a_value_or_the_501(data: bytes) -> None:
    arg = data.decode("latin-1")
    for parse in (parse_xclient, parse_xforward):
        try:
            parse(arg)
        except XClientError as error:
            assert error.reply.code == 501
