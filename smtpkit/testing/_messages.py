"""Captured messages: the parsed message with its envelope beside it."""

from __future__ import annotations

import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

__all__ = ["CapturedMessage", "capture"]

_PARSER = BytesParser(policy=policy.default)


class CapturedMessage(EmailMessage):
    """One message the test server accepted.

    It is an :class:`email.message.EmailMessage` parsed with
    :data:`email.policy.default` (so ``msg["Subject"]`` is decoded text and
    ``msg.get_body()`` works), with what the SMTP dialog said about it as
    attributes.

    Attributes:
        raw: the message exactly as received (after dot-unstuffing).
        mail_from: the sender from ``MAIL FROM`` (``"<>"`` for the null sender).
        rcpt_tos: the accepted recipients, in order.
        mail_options: the ``MAIL`` parameters, upper-cased (``["SIZE=120"]``).
        rcpt_options: the ``RCPT`` parameters, upper-cased.
        smtp_utf8: whether ``MAIL`` carried ``SMTPUTF8``.
        peer: the client's ``(host, port)``.
        helo: the name the client gave in ``HELO``/``EHLO``/``LHLO``.
        tls: whether the message came over TLS (STARTTLS or implicit).
        tls_version: e.g. ``"TLSv1.3"``, or ``None`` without TLS.
        tls_cipher: the cipher's name, or ``None`` without TLS.
        auth_login: the user name the client authenticated as, or ``None``.
        received_at: when the message was accepted (UTC).
    """

    raw: bytes
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    smtp_utf8: bool
    peer: Any
    helo: str | None
    tls: bool
    tls_version: str | None
    tls_cipher: str | None
    auth_login: str | None
    received_at: datetime.datetime

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope and session facts as a plain dict (handy for assertions)."""
        return {name: getattr(self, name) for name in _ENVELOPE_FIELDS}

    def __repr__(self) -> str:
        subject = self.get("Subject")
        return (
            f"<CapturedMessage from {self.mail_from!r} to {self.rcpt_tos!r} "
            f"subject {subject!r}, {len(self.raw)} bytes>"
        )


_ENVELOPE_FIELDS = (
    "mail_from",
    "rcpt_tos",
    "mail_options",
    "rcpt_options",
    "smtp_utf8",
    "peer",
    "helo",
    "tls",
    "tls_version",
    "tls_cipher",
    "auth_login",
)


def _login_of(auth_data: Any) -> str | None:
    """The user name in what an authenticator returned (a LoginPassword or a name)."""
    login = getattr(auth_data, "login", auth_data)
    if isinstance(login, bytes):
        return login.decode("utf-8", "replace")
    return login if isinstance(login, str) else None


def _tls_facts(ssl_info: dict[str, Any] | None) -> tuple[bool, str | None, str | None]:
    if not ssl_info:
        return False, None, None
    ssl_object = ssl_info.get("ssl_object")
    version = ssl_object.version() if ssl_object is not None else None
    cipher = ssl_info.get("cipher")
    return True, version, cipher[0] if cipher else None


def capture(raw: bytes, session: Any, envelope: Any) -> CapturedMessage:
    """Parse ``raw`` and attach the facts of ``session`` and ``envelope``.

    Args:
        raw: the message bytes.
        session: the connection's :class:`smtpkit.smtp.Session`.
        envelope: the transaction's :class:`smtpkit.smtp.Envelope`.
    """
    parsed = _PARSER.parsebytes(raw)
    message = CapturedMessage(policy.default)
    # The parser builds every part with one class; only the top one should
    # carry an envelope, so it is parsed as a plain EmailMessage and its
    # state (headers, payload, preamble...) moved into the captured one.
    message.__dict__.update(parsed.__dict__)
    message.raw = raw
    message.mail_from = envelope.mail_from
    message.rcpt_tos = list(envelope.rcpt_tos)
    message.mail_options = list(envelope.mail_options)
    message.rcpt_options = list(envelope.rcpt_options)
    message.smtp_utf8 = bool(envelope.smtp_utf8)
    message.peer = session.peer
    message.helo = session.host_name
    message.tls, message.tls_version, message.tls_cipher = _tls_facts(session.ssl)
    message.auth_login = _login_of(session.auth_data) if session.authenticated else None
    message.received_at = datetime.datetime.now(datetime.timezone.utc)
    return message
