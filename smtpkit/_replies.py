"""Every reply the server sends by itself, as data; and the enhanced status codes.

A :class:`Reply` is a code, an enhanced status code (RFC 3463) and a text.
It is formatted two ways: *bare*, the exact line aiosmtpd sends (the
documented ``SMTP`` class keeps those by default), and *enhanced*, with the
``class.subject.detail`` code after the reply code, as RFC 2034 asks of a
server that advertises ``ENHANCEDSTATUSCODES``. Both lines are encoded once,
when the constant is made, so writing a built-in reply costs a lookup.

RFC 2034 §3 exempts the greeting and the replies to HELO and EHLO (LMTP's
LHLO answers like EHLO); 3xx replies (``334``, ``354``) carry no code
either. Those constants have ``enhanced=None``.

Code inside the server raises :class:`SMTPReplyError` to refuse a command;
the command loop turns it into the reply (the same habit as h11's
``error_status_hint`` or go-smtp's ``SMTPError``).

Replies that user code returns (hooks, routes, handlers) are plain strings:
:func:`with_enhanced` gives a line without a code the one the text is known
by, or the class default ``2.0.0``/``4.0.0``/``5.0.0``.

This module is I/O-free.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = [
    "Reply",
    "SMTPReplyError",
    "all_replies",
    "default_enhanced",
    "has_enhanced",
    "known",
    "looks_enhanced",
    "with_enhanced",
]

# RFC 3463 §2: status-code = class "." subject "." detail, class 2, 4 or 5,
# subject and detail 1 to 3 digits each.
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_DEFAULTS = {"2": "2.0.0", "4": "4.0.0", "5": "5.0.0"}


@dataclass(frozen=True)
class Reply:
    """One reply: ``code``, RFC 3463 ``enhanced`` code (or None) and ``text``.

    Args:
        code: the reply code, 200 to 599.
        enhanced: ``"5.5.1"``-style code whose class is the code's first
            digit, or None for the replies that never carry one.
        text: the reply text; ``{name}`` fields are filled in by :meth:`fill`.
        always: the bare line carries the enhanced code too (aiosmtpd's
            text has it, e.g. ``452 4.5.3 Error: too many recipients``).

    Raises:
        ValueError: a code out of range, or an enhanced code that is not
            ``class.subject.detail`` with the code's class.
    """

    code: int
    enhanced: str | None
    text: str
    always: bool = False
    #: The two lines, CRLF included: ``wire[False]`` bare, ``wire[True]`` enhanced.
    wire: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.code, self.enhanced)
        bare, enhanced = (
            line.encode("utf-8", "surrogateescape") + b"\r\n"
            for line in (self.format(False), self.format(True))
        )
        object.__setattr__(self, "wire", (bare, enhanced))

    def format(self, enhanced: bool = False) -> str:
        """The reply line (no CRLF), with the enhanced code when ``enhanced`` (or ``always``)."""
        if self.enhanced is not None and (enhanced or self.always):
            return f"{self.code} {self.enhanced} {self.text}"
        return f"{self.code} {self.text}"

    def fill(self, **values: Any) -> Reply:
        """This reply with the ``{name}`` fields of its text filled in.

        Raises:
            KeyError: a field of the text is not given.
        """
        return Reply(self.code, self.enhanced, self.text.format(**values), self.always)

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the ``{name}`` fields in the text."""
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.text) if name)


def _check(code: object, enhanced: object) -> None:
    if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
        raise ValueError(f"Reply code must be an int from 200 to 599, not {code!r}")
    if enhanced is None:
        return
    if not isinstance(enhanced, str) or _ENHANCED.fullmatch(enhanced) is None:
        raise ValueError(f"enhanced must be a 'class.subject.detail' code, not {enhanced!r}")
    if enhanced[0] != str(code)[0]:
        raise ValueError(f"enhanced code {enhanced} does not match the class of reply {code}")


class SMTPReplyError(Exception):
    """Refuse the command being handled with ``reply``.

    Raised by the server's helpers; the command loop catches it and sends
    the reply, formatted for the connection's ``enhanced_status_codes``.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.format())
        self.reply = reply


def default_enhanced(code: str) -> str | None:
    """The enhanced code for a reply code without one: ``X.0.0``, None for 1xx/3xx."""
    return _DEFAULTS.get(code[:1])


def has_enhanced(rest: str) -> bool:
    """Whether the text after ``NNN `` starts with an enhanced code (no regex: hot path)."""
    if rest[1:2] != "." or not rest[:1].isdigit():
        return False
    return looks_enhanced(rest.partition(" ")[0])


def looks_enhanced(word: str) -> bool:
    """``D.D.D`` with any one-digit class: a code, if maybe a wrong one (1.2.3.4 is not)."""
    parts = word.split(".")
    return (
        len(parts) == 3
        and len(parts[0]) == 1
        and all(part.isdigit() and len(part) <= 3 for part in parts)
    )


@overload
def with_enhanced(line: str) -> str: ...
@overload
def with_enhanced(line: bytes) -> bytes: ...
def with_enhanced(line: str | bytes) -> str | bytes:
    """``line`` with an enhanced code after its reply code, unless it has one.

    A line the server itself sends bare gets the code of its constant
    (``552 Error: Too much mail data`` -> ``552 5.3.4 …``); any other
    2xx/4xx/5xx line gets the class default; other lines are returned as
    they are. Bytes are read and returned as UTF-8 (undecodable bytes kept).
    """
    if isinstance(line, bytes):
        return _with_enhanced(line.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )
    return _with_enhanced(line)


def _with_enhanced(line: str) -> str:
    known = _KNOWN.get(line)
    if known is not None:
        return known.format(True)
    default = _DEFAULTS.get(line[:1])
    if default is None or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
        return line
    rest = line[4:]
    if has_enhanced(rest):
        return line
    separator = line[3:4] or " "
    return f"{line[:3]}{separator}{default} {rest}" if rest else f"{line[:3]}{separator}{default}"


# ---------------------------------------------------------------------------
# The replies. Codes follow RFC 3463: X.5.x protocol (5.5.1 invalid command,
# 5.5.2 syntax error, 5.5.4 invalid arguments), X.7.x security, X.3.x system,
# X.1.x addresses, X.4.x network.

# The greeting and the session (RFC 5321 §4.2, §3.8).
GREETING = Reply(220, None, "{hostname} {ident}")
SHUTTING_DOWN = Reply(421, "4.3.2", "{hostname} Service shutting down", True)
TIMEOUT = Reply(421, "4.4.2", "{hostname} Error: timeout exceeded", True)
DATA_TOO_SLOW = Reply(421, "4.4.2", "{hostname} Error: data transfer too slow", True)
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later", True)
INTERNAL_ERROR = Reply(451, "4.3.0", "Requested action aborted: local error in processing", True)

# Command lines.
BAD_SYNTAX = Reply(500, "5.5.2", "Error: bad syntax")
NUL_OR_CR = Reply(501, "5.5.2", "Syntax error: NUL or bare CR in command", True)
INVALID_UTF8 = Reply(500, "5.5.2", "Error: invalid UTF-8 in command", True)
STRICT_ASCII = Reply(500, "5.5.2", "Error: strict ASCII mode")
LINE_TOO_LONG = Reply(500, "5.5.2", "Command line too long")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long", True)
UNKNOWN_COMMAND = Reply(500, "5.5.1", 'Error: command "{verb}" not recognized')
TOO_MANY_UNKNOWN = Reply(502, "5.5.1", "Too many unrecognized commands, goodbye.", True)
TOO_MANY_CALLS = Reply(421, "4.7.0", "{verb} sent too many times", True)
LACK_OF_SECURITY = Reply(554, "5.7.0", "Command refused due to lack of security")
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
SEND_HELO_FIRST = Reply(503, "5.5.1", "Error: send {verb} first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required", True)

# HELO, EHLO, LHLO (RFC 2034 §3: no enhanced codes in these replies).
HELO_SYNTAX = Reply(501, None, "Syntax: HELO hostname")
EHLO_SYNTAX = Reply(501, None, "Syntax: EHLO hostname")
LHLO_SYNTAX = Reply(501, None, "Syntax: LHLO hostname")

# Other commands.
OK = Reply(250, "2.0.0", "OK")
BYE = Reply(221, "2.0.0", "Bye")
QUIT_SYNTAX = Reply(501, "5.5.4", "Syntax: QUIT")
RSET_SYNTAX = Reply(501, "5.5.4", "Syntax: RSET")
HELP_SYNTAX = Reply(250, "2.0.0", "Syntax: {syntax}")
HELP_COMMANDS = Reply(250, "2.0.0", "Supported commands: {commands}")
HELP_UNKNOWN = Reply(501, "5.5.4", "Supported commands: {commands}")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY <address>")
VRFY_BAD_ADDRESS = Reply(502, "5.1.3", "Could not VRFY {address}")
CANNOT_VRFY = Reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
EXPN_NOT_IMPLEMENTED = Reply(502, "5.5.1", "EXPN not implemented")

# STARTTLS (RFC 3207).
STARTTLS_SYNTAX = Reply(501, "5.5.4", "Syntax: STARTTLS")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
TLS_ALREADY_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active", True)
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available")

# MAIL and RCPT.
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM: <address>")
MAIL_SYNTAX_ESMTP = Reply(501, "5.5.4", "Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO: <address>")
RCPT_SYNTAX_ESMTP = Reply(501, "5.5.4", "Syntax: RCPT TO: <address> [SP <mail-parameters>]")
MALFORMED_ADDRESS = Reply(553, "5.1.3", "Error: malformed address", True)
PATH_TOO_LONG = Reply(501, "5.1.3", "Path too long", True)
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
BAD_BODY = Reply(501, "5.5.4", "Error: BODY can only be one of 7BIT, 8BITMIME")
SMTPUTF8_ARGUMENTS = Reply(501, "5.5.4", "Error: SMTPUTF8 takes no arguments")
SMTPUTF8_DISABLED = Reply(501, "5.5.4", "Error: SMTPUTF8 disabled")
SIZE_EXCEEDED = Reply(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
MAIL_PARAMETERS = Reply(555, "5.5.4", "MAIL FROM parameters not recognized or not implemented")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
RCPT_PARAMETERS = Reply(555, "5.5.4", "RCPT TO parameters not recognized or not implemented")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients", True)
NO_ROUTE = Reply(550, "5.1.1", "<{address}>: Recipient address rejected: no route", True)

# DATA.
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
DATA_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long (see RFC5321 4.5.3.1.6)")
TOO_MUCH_DATA = Reply(552, "5.3.4", "Error: Too much mail data")
DATA_STRICT_ASCII = Reply(500, "5.6.0", "Error: strict ASCII mode")

# AUTH (RFC 4954).
AUTH_SUCCESS = Reply(235, "2.7.0", "Authentication successful", True)
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid", True)
AUTH_NOT_RECOGNIZED = Reply(500, "5.5.1", "Error: command 'AUTH' not recognized")
ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism", True
)
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(
    503, "5.5.1", "Error: AUTH not permitted during a mail transaction", True
)
AUTH_NOT_ENOUGH_VALUES = Reply(501, "5.5.4", "Not enough value")
AUTH_TOO_MANY_VALUES = Reply(501, "5.5.4", "Too many values")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type", True)
TOO_MANY_AUTH_FAILURES = Reply(
    421, "4.7.0", "Too many failed authentication attempts, goodbye", True
)
AUTH_ABORTED = Reply(501, "5.7.0", "Auth aborted", True)
CANNOT_DECODE_BASE64 = Reply(501, "5.5.2", "Can't decode base64", True)
CANNOT_SPLIT = Reply(501, "5.5.2", "Can't split auth value", True)
CANNOT_PARSE = Reply(501, "5.5.2", "Can't parse {mechanism} response: {why}", True)

# XCLIENT and XFORWARD (Postfix's replies), LIMITS (RFC 9422), REQUIRETLS (RFC 8689)
XCLIENT_NOT_AUTHORIZED = Reply(550, "5.7.0", "Error: insufficient authorization", True)
X_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress", True)
TOO_MANY_MESSAGES = Reply(421, "4.7.0", "{hostname} Error: too many messages in one session", True)
REQUIRETLS_NEEDS_TLS = Reply(530, "5.7.10", "REQUIRETLS needs a TLS session", True)


def all_replies() -> dict[str, Reply]:
    """Every reply constant of this module, by name."""
    return {name: value for name, value in globals().items() if isinstance(value, Reply)}


def _known() -> dict[str, Reply]:
    """The bare lines of the constants without fields, for :func:`with_enhanced`.

    A bare text shared by two constants keeps the first (the command-line one).
    """
    known: dict[str, Reply] = {}
    for reply in all_replies().values():
        if reply.enhanced is not None and not reply.fields:
            known.setdefault(reply.format(False), reply)
    return known


_KNOWN = _known()


def known(line: str) -> Reply:
    """The constant whose bare line is ``line`` (a reply another module keeps as text).

    A line no constant has becomes a Reply of its own, with the default
    enhanced code for its code.

    Raises:
        ValueError: ``line`` does not start with a reply code.
    """
    reply = _KNOWN.get(line)
    if reply is not None:
        return reply
    code, rest = line[:3], line[4:]
    if not code.isdigit() or line[3:4] not in ("", " "):
        raise ValueError(f"not a one-line reply: {line!r}")
    if has_enhanced(rest):
        enhanced, _, text = rest.partition(" ")
        return Reply(int(code), enhanced, text, True)
    return Reply(int(code), default_enhanced(code), rest)
