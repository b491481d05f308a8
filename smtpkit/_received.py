"""The ``Received:`` trace field (RFC 5321 §4.4), with no I/O.

:func:`received_value` builds the field's value from plain values;
:func:`received_header` reads them from a session and an envelope and gives
the whole field, ready to put in front of the message::

    from mail.example.org (host.example.org [192.0.2.7])
        (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
        by mx.example.com with ESMTPS id 4Xb2QK for <anne@example.com>;
        Tue, 01 Dec 2026 23:12:18 +0000

``with`` names the protocol as RFC 3848 registers it (``ESMTPSA``: EHLO,
TLS and AUTH), or RFC 6531 §3.7.3 when the message was sent with SMTPUTF8
(``UTF8SMTPS``); ``for`` is written only when there is exactly one
recipient, so that a copy does not tell who else got the message.

The HELO name is the client's and is written only when it is a domain or an
address literal (RFC 5321 §4.1.2), which the command grammar has already
checked. Anything else (a name with a space, a parenthesis, a control or a
non-ASCII character outside SMTPUTF8) is not written as the domain: the
``from`` part then carries the client's address literal (or ``unknown``),
and the HELO name follows in a comment, ``(helo=...)``, with every character
outside printable ASCII, and ``(``, ``)`` and ``\\``, replaced by ``?`` and
cut to 64 characters. No value can put a line break in the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "PROTOCOLS",
    "TLSInfo",
    "format_date",
    "protocol_name",
    "received_header",
    "received_value",
    "session_client",
    "tls_info",
]

#: RFC 3848 and RFC 6531 §3.7.3: the registered ``with`` values used here.
PROTOCOLS = frozenset(
    prefix + base + suffix
    for prefix in ("", "UTF8")
    for base in ("SMTP", "LMTP")
    for suffix in ("", "A", "S", "SA")
) | frozenset({"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"})

# RFC 5322 §2.1.1: 78 characters a line preferred, 998 at most.
LINE_PREFERRED = 78
LINE_MAX = 998
_FIELD_NAME = "Received: "
_FOLD = "\r\n "
_HELO_SHOWN = 64
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# RFC 5321 §4.5.3.1: the longest domain and path, in octets.
MAX_DOMAIN = 255
MAX_PATH = 256

# RFC 5321 §4.1.2 (and RFC 6531 §3.3 for U-labels):
#   Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
_LABEL_ASCII = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_LABEL_UTF8 = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_DOMAIN_ASCII = re.compile(rf"{_LABEL_ASCII}(?:\.{_LABEL_ASCII})*")
_DOMAIN_UTF8 = re.compile(rf"{_LABEL_UTF8}(?:\.{_LABEL_UTF8})*")
#   address-literal = "[" ( IPv4 / IPv6 / General-address-literal ) "]"
_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]")
# The id is an Atom (RFC 5321 §4.4: "ID" FWS ( Atom / msg-id )).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_COMMENT_UNSAFE = re.compile(r"[^\x20-\x27\x2a-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class TLSInfo:
    """The TLS session a message came over.

    Attributes:
        version: ``"TLSv1.3"``.
        cipher: ``"TLS_AES_256_GCM_SHA384"``.
        bits: the secret bits of the cipher, or None when unknown.
        alg_bits: the cipher's key size in bits; ``bits`` when None.
    """

    version: str
    cipher: str
    bits: int | None = None
    alg_bits: int | None = None

    def comment(self) -> str:
        """``(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))``."""
        text = f"using {_safe(self.version)} with cipher {_safe(self.cipher)}"
        if self.bits is not None:
            alg_bits = self.bits if self.alg_bits is None else self.alg_bits
            text += f" ({self.bits}/{alg_bits} bits)"
        return f"({text})"


def protocol_name(
    *, esmtp: bool, tls: bool = False, auth: bool = False, lmtp: bool = False, utf8: bool = False
) -> str:
    """The ``with`` value: ``SMTP``, ``ESMTPSA``, ``LMTPS``, ``UTF8SMTPA``, …

    A session that greeted with HELO is ``SMTP`` even over TLS: RFC 3848's
    ``S`` and ``A`` suffixes belong to ESMTP (and LMTP, whose LHLO is EHLO's
    twin). SMTPUTF8 is only possible after EHLO or LHLO.
    """
    if lmtp:
        base = "UTF8LMTP" if utf8 else "LMTP"
    elif utf8:
        base = "UTF8SMTP"
    elif esmtp:
        base = "ESMTP"
    else:
        return "SMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def received_value(
    *,
    helo: str | None,
    client: str | tuple[Any, ...] | None,
    hostname: str,
    protocol: str,
    date: datetime,
    id: str | None = None,
    client_name: str | None = None,
    recipients: Sequence[str] = (),
    tls: TLSInfo | None = None,
    utf8: bool = False,
    fold: bool = True,
) -> str:
    """The value of one ``Received:`` field.

    Args:
        helo: the HELO/EHLO/LHLO name, or None when the client gave none.
        client: the client's address: ``(host, port, ...)`` as a socket
            gives it, a host string, or None (or a Unix socket path, which
            has no address to show).
        hostname: this server's name (``by``).
        protocol: the ``with`` value, one of :data:`PROTOCOLS`.
        date: when the message was received; timezone-aware.
        id: the message's id at this server (an Atom), or None.
        client_name: the client's reverse-DNS name when known.
        recipients: the envelope recipients; ``for`` is written for one.
        tls: the TLS session, or None.
        utf8: the session used SMTPUTF8 (U-labels in the HELO name are valid).
        fold: fold the value to lines of 78 characters where it can
            (joined by CRLF and a space, counting the ``Received: `` before
            it); False gives one line, for ``email`` which folds by itself.

    Raises:
        ValueError: a hostname that is not a domain, an unknown protocol, an
            id that is not an Atom, or a naive ``date``.
    """
    _check_own(hostname, protocol, id, date)
    words = _from_clause(helo, _client_literal(client), client_name, utf8)
    if tls is not None:
        words.append(tls.comment())
    words += [f"by {hostname}", f"with {protocol}"]
    if id is not None:
        words.append(f"id {id}")
    recipient = _single_recipient(recipients)
    if recipient is not None:
        words.append(f"for <{recipient}>")
    words[-1] += ";"
    words.append(format_date(date))
    return _fold(words) if fold else " ".join(words)


def received_header(
    session: Any,
    envelope: Any,
    *,
    hostname: str,
    id: str | None = None,
    now: datetime | None = None,
    protocol: str | None = None,
    lmtp: bool = False,
    client: str | tuple[Any, ...] | None = None,
    client_name: str | None = None,
) -> str:
    """The whole ``Received:`` field (CRLF-terminated) for a session's message.

    Reads the HELO name, the client (the PROXY header's source when there is
    one, else the peer), TLS, AUTH and ESMTP from ``session`` (a
    :class:`smtpkit.smtp.Session`) and SMTPUTF8 and the recipients from
    ``envelope`` (an :class:`smtpkit.smtp.Envelope`).

    Args:
        hostname: this server's name.
        id: the message's id, or None.
        now: the time of receipt; the current time by default.
        protocol: the ``with`` value; by default worked out from the session.
        lmtp: the session speaks LMTP.
        client: the client's address, instead of the session's (XCLIENT).
        client_name: the client's reverse-DNS name when known.
    """
    utf8 = bool(getattr(envelope, "smtp_utf8", False))
    tls = tls_info(getattr(session, "ssl", None))
    if protocol is None:
        protocol = protocol_name(
            esmtp=bool(getattr(session, "extended_smtp", False)),
            tls=tls is not None,
            auth=bool(getattr(session, "authenticated", False)),
            lmtp=lmtp,
            utf8=utf8,
        )
    forwarded = getattr(session, "xforward", None)
    value = received_value(
        helo=_forwarded_text(forwarded, "helo") or getattr(session, "host_name", None),
        client=client if client is not None else session_client(session),
        hostname=hostname,
        protocol=protocol,
        date=now or datetime.now(timezone.utc),
        id=id,
        client_name=client_name or session_client_name(session),
        recipients=list(getattr(envelope, "rcpt_tos", ())),
        tls=tls,
        utf8=utf8,
    )
    return f"{_FIELD_NAME}{value}\r\n"


def session_client(session: Any) -> str | tuple[Any, ...] | None:
    """The client of a session's message.

    XFORWARD's address when the relay sent one; else the client XCLIENT
    named (the session's peer); else the PROXY header's source if valid;
    else the peer.
    """
    forwarded = getattr(session, "xforward", None)
    address = getattr(forwarded, "addr", None)
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        port = getattr(forwarded, "port", None)
        return (str(address), port if isinstance(port, int) else None)
    if getattr(session, "xclient", None) is not None:
        named: str | tuple[Any, ...] | None = getattr(session, "peer", None)
        return named
    proxy = getattr(session, "proxy_data", None)
    source = getattr(proxy, "src_addr", None)
    if source is not None and getattr(proxy, "valid", True) and not isinstance(source, str):
        return (str(source), getattr(proxy, "src_port", None))
    peer: str | tuple[Any, ...] | None = getattr(session, "peer", None)
    return peer


def session_client_name(session: Any) -> str | None:
    """The client's host name as XFORWARD or XCLIENT gave it (``NAME``), or None."""
    return _forwarded_text(getattr(session, "xforward", None), "name") or _forwarded_text(
        getattr(session, "xclient", None), "name"
    )


def _forwarded_text(attributes: Any, name: str) -> str | None:
    # A Special ([UNAVAILABLE], [TEMPUNAVAIL]) is not a name.
    value = getattr(attributes, name, None)
    return value if isinstance(value, str) else None


def tls_info(ssl: Any) -> TLSInfo | None:
    """A :class:`TLSInfo` from a session's ``ssl`` dict (None before TLS)."""
    if not ssl:
        return None
    cipher = ssl.get("cipher") if isinstance(ssl, dict) else None
    if not cipher:
        ssl_object = ssl.get("ssl_object") if isinstance(ssl, dict) else None
        cipher = ssl_object.cipher() if ssl_object is not None else None
    if not cipher:
        return TLSInfo(version="TLS", cipher="unknown")
    # ssl's cipher(): (name, protocol version, secret bits).
    name, version, bits = (*cipher, None, None)[:3]
    return TLSInfo(
        version=str(version or "TLS"),
        cipher=str(name),
        bits=bits if isinstance(bits, int) else None,
    )


def format_date(date: datetime) -> str:
    """RFC 5322 §3.3 date-time: ``Tue, 01 Dec 2026 23:12:18 +0000``.

    Written here rather than with ``email.utils``, which imports ``socket``
    and would take this module off the I/O-free side.
    """
    offset = date.utcoffset()
    minutes = 0 if offset is None else int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[date.weekday()]}, {date.day:02d} {_MONTHS[date.month - 1]} {date.year:04d}"
        f" {date.hour:02d}:{date.minute:02d}:{date.second:02d} {sign}{hours:02d}{minutes:02d}"
    )


def _check_own(hostname: str, protocol: str, id: str | None, date: datetime) -> None:
    if not isinstance(hostname, str) or len(hostname) > MAX_DOMAIN:
        raise ValueError(
            f"hostname must be a domain name of at most 255 characters, not {hostname!r}"
        )
    if not _DOMAIN_UTF8.fullmatch(hostname):
        raise ValueError(f"hostname must be a domain name, not {hostname!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"protocol must be one of {', '.join(sorted(PROTOCOLS))}, not {protocol!r}"
        )
    if id is not None and not _ATOM.fullmatch(id):
        raise ValueError(f"id must be an Atom (letters, digits, !#$%&'*+/=?^_`{{|}}~-), not {id!r}")
    if not isinstance(date, datetime) or date.tzinfo is None:
        raise ValueError(f"date must be a timezone-aware datetime, not {date!r}")


def _from_clause(helo: str | None, literal: str | None, name: str | None, utf8: bool) -> list[str]:
    """``from <helo> (<name> <literal>)``, and ``(helo=...)`` when the HELO name is unfit."""
    domain = _DOMAIN_UTF8 if utf8 else _DOMAIN_ASCII
    if name is not None and (len(name) > MAX_DOMAIN or not domain.fullmatch(name)):
        name = None
    valid = (
        helo is not None
        and len(helo) <= MAX_DOMAIN
        and bool(domain.fullmatch(helo) or _LITERAL.fullmatch(helo))
    )
    words = [f"from {helo if valid else literal or 'unknown'}"]
    if literal is not None:
        words.append(f"({name} {literal})" if name else f"({literal})")
    if helo is not None and not valid:
        shown = _safe(helo)[:_HELO_SHOWN]
        if shown:
            words.append(f"(helo={shown})")
    return words


def _client_literal(client: str | tuple[Any, ...] | None) -> str | None:
    """``[192.0.2.7]`` or ``[IPv6:2001:db8::7]``; None when there is no IP address."""
    host = client[0] if isinstance(client, tuple) and client else client
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a Unix socket path, or no address at all
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return f"[{mapped}]" if mapped is not None else f"[IPv6:{address.compressed}]"
    return f"[{address}]"


def _single_recipient(recipients: Sequence[str]) -> str | None:
    if len(recipients) != 1:
        return None
    address = recipients[0]
    if (
        not address
        or len(address) > MAX_PATH
        or any(ord(c) < 0x20 or c in "<>\x7f" for c in address)
    ):
        return None
    return address


def _safe(text: str) -> str:
    """``text`` fit for a comment: printable ASCII without ``(``, ``)`` or ``\\``."""
    return _COMMENT_UNSAFE.sub("?", text)


def _fold(clauses: list[str]) -> str:
    """Join clauses, breaking lines so that they keep to 78 characters where they can.

    A clause goes on the current line if it fits, else on a new one; one too
    long even for a line of its own is laid out word by word. Only a single
    word longer than a line (a long domain) makes a line pass 78.
    """
    folder = _Folder()
    for clause in clauses:
        if not folder.fits(clause) and folder.fits_alone(clause):
            folder.new_line()
        for word in [clause] if folder.fits(clause) else _words(clause):
            if not folder.fits(word):
                folder.new_line()
            folder.add(word)
    return folder.text()


class _Folder:
    """The lines being filled; the first starts after ``Received: ``, the others with a space."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.line = ""
        self.used = len(_FIELD_NAME)

    def fits(self, word: str) -> bool:
        return self.used + (1 if self.line else 0) + len(word) <= LINE_PREFERRED

    @staticmethod
    def fits_alone(word: str) -> bool:
        return 1 + len(word) <= LINE_PREFERRED

    def new_line(self) -> None:
        if self.line:
            self.lines.append(self.line)
            self.line, self.used = "", 1

    def add(self, word: str) -> None:
        self.used += (1 if self.line else 0) + len(word)
        self.line = f"{self.line} {word}" if self.line else word

    def text(self) -> str:
        return _FOLD.join([*self.lines, self.line])


def _words(clause: str) -> list[str]:
    # Every space written here is folding white space, except inside a
    # recipient's quoted local part: "for <...>" is split only after "for".
    if clause.startswith("for <"):
        return clause.split(" ", 1)
    return clause.split(" ")
