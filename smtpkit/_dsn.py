"""Delivery Status Notification parameters (RFC 3461) and xtext, with no I/O.

RFC 3461 adds two parameters to MAIL (``RET`` and ``ENVID``) and two to RCPT
(``NOTIFY`` and ``ORCPT``). The functions here take the parameters of one
command, either as the list of ``keyword[=value]`` strings the command line
was split into or as the mapping :func:`smtpkit._grammar.parse_params` makes
of it, and return a frozen value, or raise :class:`DSNError` carrying the
``501 5.5.4`` reply that names the parameter and the value.

Keywords are matched in any case. ``RET`` and ``NOTIFY`` values are keywords
too (normalised to upper case); ``ENVID`` and the address of ``ORCPT`` are
xtext, decoded here, and keep their case. Only the list form can show a
duplicate parameter (a mapping has already merged them), so pass the list
when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from ._replies import Reply, SMTPReplyError

__all__ = [
    "MAIL_KEYWORDS",
    "NOTIFY_VALUES",
    "RCPT_KEYWORDS",
    "DSNError",
    "MailDSN",
    "RcptDSN",
    "XtextError",
    "parse_mail_dsn",
    "parse_rcpt_dsn",
    "xtext_decode",
    "xtext_encode",
]

#: The MAIL and RCPT parameters this module reads (a caller pops them).
MAIL_KEYWORDS = frozenset({"RET", "ENVID"})
RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT"})
#: RFC 3461 §4.1: NEVER alone, or any non-empty set of the other three.
NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})

# RFC 3461 §4.4 and §4.2: the longest ENVID and ORCPT values, as sent.
MAX_ENVID = 100
MAX_ORCPT = 500

Params = Iterable[str] | Mapping[str, str | bool]

# RFC 3461 §4:
#   xtext   = *( xchar / hexchar )
#   xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
#             except for "+" and "=".
#   hexchar = ASCII "+" immediately followed by two upper case
#             hexadecimal digits
# Decoding also takes lower-case digits: a sender that writes "+2b" means
# "+", and refusing the message would help nobody.
_XCHAR = frozenset(range(33, 127)) - {ord("+"), ord("=")}
_HEX = re.compile(r"[0-9A-Fa-f]{2}")
# RFC 5322 §3.2.3: atom = 1*atext (the addr-type of ORCPT).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# RFC 6533 §3: utf-8-addr-xtext escapes a character as \x{HHHH}.
_UNICODE_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_SHOWN_MAX = 64


class XtextError(ValueError):
    """Text that is not valid xtext; the message says where and why."""


class DSNError(SMTPReplyError, ValueError):
    """A DSN parameter that does not parse; ``reply`` is the ``501 5.5.4`` to send."""

    def __init__(self, message: str) -> None:
        super().__init__(Reply(501, "5.5.4", message, always=True))


@dataclass(frozen=True)
class MailDSN:
    """The DSN parameters of MAIL.

    Attributes:
        ret: ``"FULL"`` or ``"HDRS"``: what a failure report returns; None
            when not asked.
        envid: the envelope identifier, xtext-decoded; None when not given.
    """

    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None

    def as_params(self) -> list[str]:
        """The parameters to pass on to the next hop, e.g. ``["RET=HDRS", "ENVID=a+2Bb"]``."""
        params = [] if self.ret is None else [f"RET={self.ret}"]
        if self.envid is not None:
            params.append(f"ENVID={xtext_encode(self.envid)}")
        return params


@dataclass(frozen=True)
class RcptDSN:
    """The DSN parameters of one RCPT.

    Attributes:
        notify: ``frozenset({"NEVER"})`` or a non-empty subset of
            ``SUCCESS``, ``FAILURE`` and ``DELAY``; None when not given.
        orcpt: ``(addr_type, address)`` from ORCPT, the address
            xtext-decoded (``("rfc822", "anne@example.com")``); None when
            not given.
    """

    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None

    def as_params(self) -> list[str]:
        """The parameters to pass on, e.g. ``["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a@b"]``."""
        params = []
        if self.notify is not None:
            order = ["NEVER", "SUCCESS", "FAILURE", "DELAY"]
            params.append("NOTIFY=" + ",".join(v for v in order if v in self.notify))
        if self.orcpt is not None:
            addr_type, address = self.orcpt
            params.append(f"ORCPT={addr_type};{xtext_encode(address)}")
        return params


def xtext_encode(text: str) -> str:
    """Encode ``text`` (as UTF-8 octets) as RFC 3461 xtext: ``"a+b c"`` → ``"a+2Bb+20c"``."""
    return "".join(
        chr(octet) if octet in _XCHAR else f"+{octet:02X}" for octet in text.encode("utf-8")
    )


def xtext_decode(value: str, *, allow_utf8: bool = False) -> str:
    """Decode RFC 3461 xtext: ``"a+2Bb"`` → ``"a+b"``.

    Args:
        value: the xtext.
        allow_utf8: also take non-ASCII characters as themselves (RFC 6533's
            utf-8-addr-unitext, for ORCPT's ``utf-8`` type).

    Raises:
        XtextError: a character outside ``!``..``~`` (or ``=``), a ``+``
            not followed by two hexadecimal digits, or octets that are not
            UTF-8.
    """
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "+":
            digits = value[index + 1 : index + 3]
            if not _HEX.fullmatch(digits):
                raise XtextError(f"'+' at offset {index} must be followed by two hex digits")
            out.append(int(digits, 16))
            index += 3
            continue
        if ord(char) in _XCHAR or (allow_utf8 and ord(char) > 127):
            out += char.encode("utf-8", "surrogatepass")
        else:
            raise XtextError(f"character {char!r} at offset {index} is not allowed in xtext")
        index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise XtextError("the decoded octets are not UTF-8") from None


def parse_mail_dsn(params: Params) -> MailDSN:
    """Read ``RET`` and ``ENVID`` from MAIL's parameters; others are ignored.

    Raises:
        DSNError: a malformed value or a parameter given twice.
    """
    found = _collect(params, MAIL_KEYWORDS)
    ret = found.get("RET")
    envid = found.get("ENVID")
    if envid is not None:
        if len(envid) > MAX_ENVID:
            raise _bad("ENVID", envid, f"at most {MAX_ENVID} characters")
        envid = _decode("ENVID", envid)
        _check_printable("ENVID", envid)
    return MailDSN(ret=None if ret is None else _parse_ret(ret), envid=envid)


def _parse_ret(value: str) -> Literal["FULL", "HDRS"]:
    upper = value.upper()
    if upper == "FULL":
        return "FULL"
    if upper == "HDRS":
        return "HDRS"
    raise _bad("RET", value, "FULL or HDRS")


def parse_rcpt_dsn(params: Params) -> RcptDSN:
    """Read ``NOTIFY`` and ``ORCPT`` from RCPT's parameters; others are ignored.

    Raises:
        DSNError: a malformed value or a parameter given twice.
    """
    found = _collect(params, RCPT_KEYWORDS)
    notify = found.get("NOTIFY")
    orcpt = found.get("ORCPT")
    return RcptDSN(
        notify=None if notify is None else _parse_notify(notify),
        orcpt=None if orcpt is None else _parse_orcpt(orcpt),
    )


def _parse_notify(value: str) -> frozenset[str]:
    items = value.upper().split(",")
    chosen = frozenset(items)
    if len(chosen) != len(items):
        raise _bad("NOTIFY", value, "each of SUCCESS, FAILURE, DELAY at most once")
    if chosen == {"NEVER"} or (chosen and chosen <= NOTIFY_VALUES):
        return chosen
    raise _bad("NOTIFY", value, "NEVER, or a comma-separated list of SUCCESS, FAILURE, DELAY")


def _parse_orcpt(value: str) -> tuple[str, str]:
    # RFC 3461 §4.2: orcpt-parameter = "ORCPT=" addr-type ";" xtext
    if len(value) > MAX_ORCPT:
        raise _bad("ORCPT", value, f"at most {MAX_ORCPT} characters")
    addr_type, semicolon, encoded = value.partition(";")
    if not semicolon or not _ATOM.fullmatch(addr_type) or not encoded:
        raise _bad("ORCPT", value, "addr-type;address, e.g. rfc822;anne@example.com")
    utf8 = addr_type.lower() == "utf-8"
    address = _decode("ORCPT", encoded, allow_utf8=utf8)
    if utf8:
        address = _unescape_unicode(address, value)
    else:
        _check_printable("ORCPT", address)
    return addr_type, address


def _unescape_unicode(address: str, value: str) -> str:
    # RFC 6533 §3: a \x{HHHH} names one Unicode scalar value.
    def replace(match: re.Match[str]) -> str:
        code = int(match[1], 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _bad("ORCPT", value, "\\x{HHHH} escapes of Unicode scalar values")
        return chr(code)

    return _UNICODE_ESCAPE.sub(replace, address)


def _collect(params: Params, wanted: frozenset[str]) -> dict[str, str]:
    """The wanted parameters by upper-cased keyword; each must have a value and appear once."""
    if isinstance(params, Mapping):
        pairs: Iterable[tuple[str, str | bool]] = params.items()
    else:
        pairs = (_split(param) for param in params)
    found: dict[str, str] = {}
    for keyword, value in pairs:
        name = keyword.upper()
        if name not in wanted:
            continue
        if name in found:
            raise DSNError(f"Duplicate {name} parameter")
        if not isinstance(value, str) or not value:
            raise DSNError(f"{name} parameter needs a value")
        found[name] = value
    return found


def _split(param: str) -> tuple[str, str | bool]:
    keyword, eq, value = param.partition("=")
    return keyword, (value if eq else True)


def _decode(name: str, value: str, *, allow_utf8: bool = False) -> str:
    try:
        return xtext_decode(value, allow_utf8=allow_utf8)
    except XtextError as error:
        raise DSNError(f"Invalid {name} parameter value {_shown(value)}: {error}") from None


def _check_printable(name: str, text: str) -> None:
    # RFC 3461 §4.2 and §4.4: the decoded values must be printable US-ASCII
    # (graphic characters and space), since they are echoed in reports.
    if any(not " " <= char <= "~" for char in text):
        raise DSNError(
            f"Invalid {name} parameter value {_shown(xtext_encode(text))}: not printable"
        )


def _bad(name: str, value: str, expected: str) -> DSNError:
    return DSNError(f"Invalid {name} parameter value {_shown(value)} (expected {expected})")


def _shown(value: str) -> str:
    """``value`` quoted for a reply: printable ASCII only, at most 64 characters."""
    safe = "".join(char if " " <= char <= "~" and char != '"' else "?" for char in value)
    if len(safe) > _SHOWN_MAX:
        safe = safe[: _SHOWN_MAX - 3] + "..."
    return f'"{safe}"'
