"""The attributes of XCLIENT and XFORWARD (Postfix's extensions), with no I/O.

A proxy or content filter in front of a server tells it about the real
client: XCLIENT replaces the session's client (the server then greets
again), XFORWARD only records it for logging and the ``Received:`` field.
Both send ``NAME=value`` pairs::

    XCLIENT NAME=mail.example.org ADDR=192.0.2.7 PORT=4567 PROTO=ESMTP HELO=mail.example.org
    XFORWARD NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::7 SOURCE=REMOTE IDENT=4Xb2QK

Attribute names are matched in any case; values are xtext (RFC 3461 §4) and
decoded here. Every attribute may be ``[UNAVAILABLE]`` (the proxy does not
know it); ``NAME`` (and XCLIENT's ``REVERSE_NAME``) may also be
``[TEMPUNAVAIL]`` (the name lookup failed for now). Those come back as
:class:`Special` members. ``ADDR`` and ``DESTADDR`` are an IPv4 address or
``IPV6:`` and an IPv6 address; ports are 0 to 65535; ``PROTO`` is ``SMTP`` or
``ESMTP``; XFORWARD's ``SOURCE`` is ``LOCAL`` or ``REMOTE``.

A malformed list raises :class:`XClientError`, whose ``reply`` is the
``501 5.5.4`` to send, naming the attribute.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ._dsn import XtextError, xtext_decode
from ._replies import Reply, SMTPReplyError

__all__ = [
    "XCLIENT_ATTRIBUTES",
    "XFORWARD_ATTRIBUTES",
    "Special",
    "XClientAttributes",
    "XClientError",
    "XForwardAttributes",
    "parse_xclient",
    "parse_xforward",
    "xclient_keyword",
    "xforward_keyword",
]

#: The attributes each command takes, in the order the EHLO keyword lists them.
XCLIENT_ATTRIBUTES = (
    "NAME",
    "ADDR",
    "PORT",
    "PROTO",
    "HELO",
    "LOGIN",
    "DESTADDR",
    "DESTPORT",
    "REVERSE_NAME",
)
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")

# A host name: LDH labels, dots between (RFC 1123 §2.1).
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_VALUE = 255
_SHOWN_MAX = 64

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Special(enum.Enum):
    """The values that stand for a missing one."""

    UNAVAILABLE = "[UNAVAILABLE]"
    TEMPUNAVAIL = "[TEMPUNAVAIL]"


class XClientError(SMTPReplyError, ValueError):
    """An XCLIENT or XFORWARD argument that does not parse; ``reply`` is the 501 to send."""

    def __init__(self, message: str) -> None:
        super().__init__(Reply(501, "5.5.4", message, always=True))


@dataclass(frozen=True)
class XClientAttributes:
    """What an XCLIENT command said; None for an attribute it did not send.

    Attributes:
        name: the client's verified host name.
        reverse_name: the client's reverse-DNS name (not verified).
        addr: the client's IP address.
        port: the client's port.
        proto: ``"SMTP"`` or ``"ESMTP"``: how the client greeted.
        helo: the client's HELO/EHLO name.
        login: the name the client authenticated as (SASL login).
        destaddr: the address the client connected to.
        destport: the port the client connected to.
    """

    name: str | Special | None = None
    reverse_name: str | Special | None = None
    addr: IPAddress | Special | None = None
    port: int | Special | None = None
    proto: Literal["SMTP", "ESMTP"] | Special | None = None
    helo: str | Special | None = None
    login: str | Special | None = None
    destaddr: IPAddress | Special | None = None
    destport: int | Special | None = None


@dataclass(frozen=True)
class XForwardAttributes:
    """What an XFORWARD command said; None for an attribute it did not send.

    Attributes:
        name: the original client's host name.
        addr: the original client's IP address.
        port: the original client's port.
        proto: ``"SMTP"`` or ``"ESMTP"``.
        helo: the original client's HELO/EHLO name.
        ident: the message's id at the previous hop (for logs).
        source: ``"LOCAL"`` (submitted on that host) or ``"REMOTE"``.
    """

    name: str | Special | None = None
    addr: IPAddress | Special | None = None
    port: int | Special | None = None
    proto: Literal["SMTP", "ESMTP"] | Special | None = None
    helo: str | Special | None = None
    ident: str | Special | None = None
    source: Literal["LOCAL", "REMOTE"] | Special | None = None


def parse_xclient(arg: str | None) -> XClientAttributes:
    """Parse what follows ``XCLIENT``: ``"NAME=mail.example.org ADDR=192.0.2.7"``.

    Raises:
        XClientError: no attributes, an unknown or repeated attribute, or a
            value that is not valid xtext or not valid for the attribute.
    """
    values = _parse("XCLIENT", arg, _XCLIENT_PARSERS)
    return XClientAttributes(**values)


def parse_xforward(arg: str | None) -> XForwardAttributes:
    """Parse what follows ``XFORWARD``: ``"ADDR=192.0.2.7 SOURCE=REMOTE"``.

    Raises:
        XClientError: as :func:`parse_xclient`.
    """
    values = _parse("XFORWARD", arg, _XFORWARD_PARSERS)
    return XForwardAttributes(**values)


def xclient_keyword(attributes: Iterable[str] = XCLIENT_ATTRIBUTES) -> str:
    """The EHLO line: ``XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT REVERSE_NAME``.

    Raises:
        ValueError: an attribute XCLIENT does not have, or none at all.
    """
    return _keyword("XCLIENT", attributes, XCLIENT_ATTRIBUTES)


def xforward_keyword(attributes: Iterable[str] = XFORWARD_ATTRIBUTES) -> str:
    """The EHLO line: ``XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE``.

    Raises:
        ValueError: an attribute XFORWARD does not have, or none at all.
    """
    return _keyword("XFORWARD", attributes, XFORWARD_ATTRIBUTES)


def _keyword(verb: str, attributes: Iterable[str], known: tuple[str, ...]) -> str:
    names = [name.upper() for name in attributes]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"{verb} attributes must be among {', '.join(known)}, not {names!r}")
    return " ".join([verb, *dict.fromkeys(names)])


# -- the value parsers: decoded text in, typed value out, ValueError(expected) --


def _host(text: str) -> str:
    if len(text) > _MAX_VALUE or not _HOSTNAME.fullmatch(text):
        raise ValueError("a host name")
    return text


def _word(text: str) -> str:
    # A HELO name is only recorded and logged: any printable ASCII without
    # spaces will do, nothing that could break a log line or a header.
    if not text or len(text) > _MAX_VALUE or any(not " " < c <= "~" for c in text):
        raise ValueError("printable ASCII without spaces")
    return text


def _printable(text: str) -> str:
    # A login name or a message id: printable text (spaces and non-ASCII
    # letters allowed), no control characters.
    if not text or len(text) > _MAX_VALUE or not text.isprintable():
        raise ValueError("printable text")
    return text


def _address(text: str) -> IPAddress:
    if text[:5].upper() == "IPV6:":
        if "%" not in text:
            try:
                return ipaddress.IPv6Address(text[5:])
            except ValueError:
                pass
        raise ValueError("IPV6: and an IPv6 address")
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError("an IPv4 address, or IPV6: and an IPv6 address") from None


def _port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise ValueError("a port number from 0 to 65535")
    return int(text)


def _choice(*allowed: str) -> Callable[[str], Any]:
    def parse(text: str) -> str:
        upper = text.upper()
        if upper not in allowed:
            raise ValueError(" or ".join(allowed))
        return upper

    return parse


_Parser = tuple[Callable[[str], Any], bool]  # (value parser, may be [TEMPUNAVAIL])
_COMMON: dict[str, _Parser] = {
    "NAME": (_host, True),
    "ADDR": (_address, False),
    "PORT": (_port, False),
    "PROTO": (_choice("SMTP", "ESMTP"), False),
    "HELO": (_word, False),
}
_XCLIENT_PARSERS: dict[str, _Parser] = {
    **_COMMON,
    "REVERSE_NAME": (_host, True),
    "LOGIN": (_printable, False),
    "DESTADDR": (_address, False),
    "DESTPORT": (_port, False),
}
_XFORWARD_PARSERS: dict[str, _Parser] = {
    **_COMMON,
    "IDENT": (_printable, False),
    "SOURCE": (_choice("LOCAL", "REMOTE"), False),
}


def _parse(verb: str, arg: str | None, parsers: dict[str, _Parser]) -> dict[str, Any]:
    """The attributes as keyword arguments of the result class."""
    pairs = (arg or "").split()
    if not pairs:
        raise XClientError(f"Syntax: {verb} attribute=value ...")
    values: dict[str, Any] = {}
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        upper = name.upper()
        if upper not in parsers:
            raise XClientError(f"Bad {verb} attribute name: {_shown(name)}")
        if upper.lower() in values:
            raise XClientError(f"Duplicate {verb} attribute: {upper}")
        if not eq:
            raise XClientError(
                f"Bad {verb} attribute syntax: {_shown(pair)} (expected {upper}=value)"
            )
        values[upper.lower()] = _value(verb, upper, raw, parsers[upper])
    return values


def _value(verb: str, name: str, raw: str, parser: _Parser) -> Any:
    parse, tempunavail = parser
    try:
        text = xtext_decode(raw)
    except XtextError as error:
        raise XClientError(f"Bad {verb} {name} value {_shown(raw)}: {error}") from None
    special = text.upper()
    if special == Special.UNAVAILABLE.value:
        return Special.UNAVAILABLE
    if special == Special.TEMPUNAVAIL.value and tempunavail:
        return Special.TEMPUNAVAIL
    try:
        return parse(text)
    except ValueError as error:
        raise XClientError(f"Bad {verb} {name} value {_shown(raw)} (expected {error})") from None


def _shown(value: str) -> str:
    safe = "".join(c if " " <= c <= "~" and c != '"' else "?" for c in value)
    if len(safe) > _SHOWN_MAX:
        safe = safe[: _SHOWN_MAX - 3] + "..."
    return f'"{safe}"'
