"""Command-line grammar of RFC 5321 (and RFC 6531 for UTF-8), with no I/O.

Every parser here takes text that was already split off a command line and
either returns a value or raises :class:`GrammarError` carrying the reply the
client should get.
"""

from __future__ import annotations

import re

from . import _replies

__all__ = [
    "GrammarError",
    "parse_params",
    "parse_path",
    "strip_keyword",
]

MALFORMED = _replies.MALFORMED_ADDRESS.format()
PATH_TOO_LONG = _replies.PATH_TOO_LONG.format()

# RFC 5321 §4.5.3.1: sizes of the pieces of a path, in octets.
MAX_PATH = 256
MAX_DOMAIN = 255

# RFC 5321 §4.1.2 (ASCII), widened by RFC 6531 §3.3 to any non-ASCII character:
#   Atom          = 1*atext
#   Dot-string    = Atom *("."  Atom)
#   Quoted-string = DQUOTE *QcontentSMTP DQUOTE
#   QcontentSMTP  = qtextSMTP / quoted-pairSMTP
#   qtextSMTP     = %d32-33 / %d35-91 / %d93-126
#   quoted-pairSMTP = %d92 %d32-126
#   sub-domain    = Let-dig [Ldh-str]
#   address-literal = "[" ( IPv4 / IPv6 / General-address-literal ) "]"
_U = "\u0080-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_U}]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
# A mailbox whose domain is left out (``<postmaster>``) is accepted, as the
# documented implementation does; RFC 5321 §4.1.1.3 requires it for Postmaster.
_MAILBOX = rf"(?P<local>{_DOT_STRING}|{_QUOTED})(?:@(?P<domain>{_DOMAIN}|{_LITERAL}))?"
# Source routes (A-d-l) are obsolete; they are parsed and ignored (§C).
_ADL = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"

_ANGLE_PATH = re.compile(rf"<(?:{_ADL})?{_MAILBOX}>")
_BARE_PATH = re.compile(_MAILBOX)
# esmtp-param = esmtp-keyword ["=" esmtp-value]   (RFC 5321 §4.1.2)
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")


class GrammarError(ValueError):
    """A command argument that does not parse; ``reply`` is what to send."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def strip_keyword(keyword: str, arg: str) -> str | None:
    """Return ``arg`` without a leading ``keyword`` (any case), or None.

    ``strip_keyword("FROM:", "from: <a@b>")`` gives ``"<a@b>"``.
    """
    size = len(keyword)
    if arg[:size].upper() == keyword:
        return arg[size:].strip()
    return None


def parse_path(text: str, *, local_part_limit: int = 0, allow_null: bool = True) -> tuple[str, str]:
    """Split a reverse-path or forward-path off the front of ``text``.

    Args:
        text: what follows ``FROM:`` or ``TO:``.
        local_part_limit: the longest local part in octets; 0 for no limit.
        allow_null: whether ``<>`` is acceptable (it is for MAIL, not RCPT).

    Returns:
        ``(address, rest)``: the address (``"<>"`` for the null path) and
        the text after it (the ESMTP parameters), or ``("", "")`` when
        ``text`` is empty.

    Raises:
        GrammarError: the address is malformed or too long.
    """
    text = text.lstrip()
    if not text:
        return "", ""
    if text.startswith("<>"):
        if not allow_null:
            raise GrammarError(MALFORMED)
        return "<>", _rest(text, 2)
    match = (_ANGLE_PATH if text[0] == "<" else _BARE_PATH).match(text)
    if match is None:
        raise GrammarError(MALFORMED)
    rest = _rest(text, match.end())
    local, domain = match["local"], match["domain"]
    address = local if domain is None else f"{local}@{domain}"
    _check_lengths(address, local, domain, local_part_limit)
    return address, rest


def _rest(text: str, end: int) -> str:
    rest = text[end:]
    if rest and not rest[0].isspace():
        raise GrammarError(MALFORMED)
    return rest.strip()


def _check_lengths(address: str, local: str, domain: str | None, local_part_limit: int) -> None:
    # Lengths are in octets: a UTF-8 character may take up to four.
    if len(address.encode("utf-8", "surrogateescape")) + 2 > MAX_PATH:
        raise GrammarError(PATH_TOO_LONG)
    if domain is not None and len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        raise GrammarError(PATH_TOO_LONG)
    if local_part_limit and len(local.encode("utf-8", "surrogateescape")) > local_part_limit:
        raise GrammarError(MALFORMED)


def parse_params(params: list[str]) -> dict[str, str | bool] | None:
    """Turn ``["SIZE=10", "SMTPUTF8"]`` into ``{"SIZE": "10", "SMTPUTF8": True}``.

    Returns None when a parameter is not ``keyword[=value]`` as RFC 5321
    §4.1.2 defines them (the caller answers with its syntax error).
    """
    result: dict[str, str | bool] = {}
    for param in params:
        keyword, eq, value = param.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(keyword):
            return None
        if eq:
            if not _ESMTP_VALUE.fullmatch(value):
                return None
            result[keyword] = value
        else:
            result[keyword] = True
    return result
