"""I/O-free decoding of SASL client responses (PLAIN, XOAUTH2, OAUTHBEARER).

Every function here takes the bytes of a client response *after* the caller
has base64-decoded them, and either returns a value or raises
:class:`SASLError`, which carries the full SMTP reply to send. Replies never
echo client data: a stray CR or LF from the client must not be able to split
a reply, and a token must never travel back in an error.
"""

from __future__ import annotations

import dataclasses
import json
import re

from smtpkit import _replies
from smtpkit.auth._types import LoginPassword

__all__ = [
    "OAuthToken",
    "SASLError",
    "oauthbearer_error_challenge",
    "parse_oauthbearer",
    "parse_plain",
    "parse_xoauth2",
    "xoauth2_error_challenge",
]

# RFC 7628 §3.1:
#     kvsep          = %x01
#     key            = 1*(ALPHA)
#     value          = *(VCHAR / SP / HTAB / CR / LF )
#     kvpair         = key "=" value kvsep
#     client-resp    = (gs2-header kvsep *kvpair kvsep) / kvsep
# Values are widened to any non-control UTF-8 so that internationalized
# user names (XOAUTH2 ``user=``) pass; C0 controls other than HTAB, CR and LF
# stay forbidden.
_KVSEP = "\x01"
_KEY = re.compile(r"[A-Za-z]+")
_VALUE = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*")
# Identity-like values (user, host, authzid) end up in logs: no controls at all.
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")

# RFC 6750 §2.1:
#     b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
#     credentials = "Bearer" 1*SP b64token
# The scheme name is case-insensitive (RFC 7628 §4, by way of RFC 7235).
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")

# RFC 5801 §4: saslname = 1*(UTF8-char-safe / "=2C" / "=3D"); a raw "," or a
# "=" that does not start one of the two escapes is a syntax error.
_SASLNAME = re.compile(r"(?:[^,=\x00]|=2C|=3D)+")

_PLAIN_SPLIT_REPLY = _replies.CANNOT_SPLIT.format()


class SASLError(ValueError):
    """A client response that cannot be decoded.

    Attributes:
        reply: the complete SMTP reply to send, e.g.
            ``"501 5.5.2 Can't split auth value"``.
    """

    def __init__(self, reply: str) -> None:
        """Create the error.

        Args:
            reply: the complete SMTP reply (code, enhanced code and text).
        """
        super().__init__(reply)
        self.reply = reply


@dataclasses.dataclass(frozen=True, repr=False)
class OAuthToken:
    """An OAuth 2.0 bearer token presented with XOAUTH2 or OAUTHBEARER.

    The token never appears in ``repr()`` or ``str()``.

    Attributes:
        user: the identity the client claims (XOAUTH2 ``user=``, OAUTHBEARER
            authzid), or ``None`` when the client did not name one.
        token: the bearer token, exactly as sent.
        mechanism: ``"XOAUTH2"`` or ``"OAUTHBEARER"``.
        host: the server name the client connected to (OAUTHBEARER ``host=``).
        port: the port the client connected to (OAUTHBEARER ``port=``).
    """

    user: str | None
    token: str
    mechanism: str
    host: str | None = None
    port: int | None = None

    def __repr__(self) -> str:
        return (
            f"OAuthToken(user={self.user!r}, token=..., mechanism={self.mechanism!r}, "
            f"host={self.host!r}, port={self.port!r})"
        )


def parse_plain(data: bytes) -> LoginPassword:
    """Decode a PLAIN response: ``[authzid] NUL authcid NUL passwd`` (RFC 4616).

    The authorization identity is not kept. Empty login or password values are
    returned as they are: deciding about them is the authenticator's job.

    Args:
        data: the base64-decoded client response.

    Returns:
        The login (authcid) and password, as bytes.

    Raises:
        SASLError: ``501 5.5.2 Can't split auth value`` unless ``data`` holds
            exactly two NUL bytes.
    """
    parts = data.split(b"\x00")
    if len(parts) != 3:
        raise SASLError(_PLAIN_SPLIT_REPLY)
    _authzid, login, password = parts
    return LoginPassword(login, password)


def parse_xoauth2(data: bytes) -> OAuthToken:
    """Decode an XOAUTH2 response: ``user=<u> ^A auth=Bearer <token> ^A ^A``.

    This is Google's format (also used by Microsoft). The ``user`` key may be
    left out, in which case :attr:`OAuthToken.user` is ``None``; unknown keys
    are ignored.

    Args:
        data: the base64-decoded client response.

    Returns:
        The token, with ``mechanism="XOAUTH2"``.

    Raises:
        SASLError: a ``501 5.5.2`` reply saying what is malformed.
    """
    mech = "XOAUTH2"
    pairs = _parse_kvpairs(_decode_utf8(data, mech), mech)
    user = pairs.get("user")
    if user is not None:
        _check_name(user, "user", mech)
    return OAuthToken(user=user, token=_bearer_token(pairs, mech), mechanism=mech)


def parse_oauthbearer(data: bytes) -> OAuthToken:
    """Decode an OAUTHBEARER initial response (RFC 7628 §3.1).

    The response is a GS2 header (``n,a=<authzid>,`` or ``n,,``) followed by
    ``^A``-separated ``key=value`` pairs (``auth``, ``host``, ``port`` and any
    extension keys, which are ignored) and a final ``^A``. Channel binding
    (``p=``) is refused: OAUTHBEARER defines none.

    Args:
        data: the base64-decoded client response.

    Returns:
        The token, with ``mechanism="OAUTHBEARER"``; ``user`` is the decoded
        authzid (``=2C`` and ``=3D`` turned back into ``,`` and ``=``).

    Raises:
        SASLError: a ``501 5.5.2`` reply saying what is malformed. A lone
            ``^A`` (what a client sends to acknowledge an error challenge)
            is refused too, since it carries no credentials.
    """
    mech = "OAUTHBEARER"
    text = _decode_utf8(data, mech)
    if text == _KVSEP:
        raise _malformed(mech, "no credentials")
    authzid, rest = _split_gs2_header(text, mech)
    if not rest.startswith(_KVSEP):
        raise _malformed(mech, "missing separator after GS2 header")
    pairs = _parse_kvpairs(rest[1:], mech)
    host = pairs.get("host")
    if host is not None:
        _check_name(host, "host", mech)
    port = pairs.get("port")
    return OAuthToken(
        user=authzid,
        token=_bearer_token(pairs, mech),
        mechanism=mech,
        host=host,
        port=None if port is None else _parse_port(port, mech),
    )


def oauthbearer_error_challenge(
    status: str = "invalid_token",
    scope: str | None = None,
    openid_configuration: str | None = None,
) -> bytes:
    """Build the JSON error challenge of RFC 7628 §3.2.2.

    The server sends it (base64-encoded, after ``334``) when a token is
    refused; the client then answers with a single ``^A`` and the server
    ends the exchange with ``535 5.7.8``.

    Args:
        status: the error code, from the IANA "OAuth Extensions Error
            Registry" (``invalid_token``, ``insufficient_scope``, ...).
        scope: the space-separated scopes the token needs, if any.
        openid_configuration: the URL of the OpenID Provider configuration
            document the client should use, if any.

    Returns:
        The challenge as UTF-8 JSON bytes, not yet base64-encoded.
    """
    doc = {"status": status}
    if scope is not None:
        doc["scope"] = scope
    if openid_configuration is not None:
        doc["openid-configuration"] = openid_configuration
    return _compact_json(doc)


def xoauth2_error_challenge(
    status: str = "401",
    schemes: str = "bearer",
    scope: str | None = None,
) -> bytes:
    """Build the JSON error challenge of Google's XOAUTH2 mechanism.

    As with OAUTHBEARER, the server sends it after ``334`` and the client
    answers with an empty response before the final ``535``.

    Args:
        status: an HTTP-like status code, as a string (``"401"``, ``"400"``).
        schemes: the accepted authorization schemes.
        scope: the scope the token needs (Gmail uses
            ``"https://mail.google.com/"``), if any.

    Returns:
        The challenge as UTF-8 JSON bytes, not yet base64-encoded.
    """
    doc = {"status": status, "schemes": schemes}
    if scope is not None:
        doc["scope"] = scope
    return _compact_json(doc)


def _compact_json(doc: dict[str, str]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _malformed(mech: str, why: str) -> SASLError:
    # ``why`` is always one of our fixed phrases, never client data.
    return SASLError(_replies.CANNOT_PARSE.fill(mechanism=mech, why=why).format())


def _decode_utf8(data: bytes, mech: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(mech, "not UTF-8") from None


def _split_gs2_header(text: str, mech: str) -> tuple[str | None, str]:
    """Split ``gs2-cb-flag "," [gs2-authzid] ","`` off the front of ``text``.

    RFC 5801 §4. The non-standard flag ``F`` belongs to GSS-API mechanisms
    and has no meaning here; ``p=`` asks for channel binding, which
    OAUTHBEARER does not define (RFC 7628 §3.1). ``y`` and ``n`` both mean
    "no channel binding in use".
    """
    if text.startswith("p="):
        raise _malformed(mech, "channel binding is not supported")
    if not text.startswith(("n,", "y,")):
        raise _malformed(mech, "bad GS2 header")
    rest = text[2:]
    if rest.startswith(","):
        return None, rest[1:]
    if not rest.startswith("a="):
        raise _malformed(mech, "bad GS2 header")
    name, comma, after = rest[2:].partition(",")
    if not comma or not _SASLNAME.fullmatch(name):
        raise _malformed(mech, "bad authzid")
    authzid = name.replace("=2C", ",").replace("=3D", "=")
    _check_name(authzid, "authzid", mech)
    return authzid, after


def _parse_kvpairs(body: str, mech: str) -> dict[str, str]:
    """Read ``*kvpair kvsep``: pairs each ending in ^A, then one more ^A."""
    if not body.endswith(_KVSEP):
        raise _malformed(mech, "missing terminator")
    listing = body[:-1]
    if not listing:
        return {}
    if not listing.endswith(_KVSEP):
        raise _malformed(mech, "missing terminator")
    pairs: dict[str, str] = {}
    for item in listing[:-1].split(_KVSEP):
        key, equals, value = item.partition("=")
        if not item:
            raise _malformed(mech, "data after terminator")
        if not equals or not _KEY.fullmatch(key):
            raise _malformed(mech, "bad key")
        if not _VALUE.fullmatch(value):
            raise _malformed(mech, "bad value")
        if key in pairs:
            raise _malformed(mech, "duplicate key")
        pairs[key] = value
    return pairs


def _bearer_token(pairs: dict[str, str], mech: str) -> str:
    auth = pairs.get("auth")
    if auth is None:
        raise _malformed(mech, "missing auth")
    match = _BEARER.fullmatch(auth)
    if match is None:
        raise _malformed(mech, "auth is not a Bearer token")
    return match.group(1)


def _check_name(value: str, field: str, mech: str) -> None:
    if not _NAME.fullmatch(value):
        raise _malformed(mech, f"bad {field}")


def _parse_port(value: str, mech: str) -> int:
    # At most five digits: int() of a huge digit string is slow and, past
    # sys.get_int_max_str_digits(), raises.
    if not (value.isascii() and value.isdigit() and len(value) <= 5) or int(value) > 65535:
        raise _malformed(mech, "bad port")
    return int(value)
