"""Session and Envelope: what the server knows about a connection and a message."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dsn import MailDSN, RcptDSN
    from ._xclient import XClientAttributes, XForwardAttributes
    from .proxy_protocol import ProxyData

__all__ = ["Envelope", "Session"]

log = logging.getLogger("smtpkit.smtp")


class Session:
    """State of one client connection, kept across mail transactions.

    Attributes:
        peer: the client's address as the transport reports it
            (``(host, port)`` for TCP).
        ssl: ``None`` before TLS; afterwards a dict with the TLS details
            (``ssl_object``, ``peercert``, ``cipher``, ``compression``).
        host_name: the name the client gave in HELO/EHLO (or LHLO), or None
            before that.
        extended_smtp: True after EHLO (or LHLO).
        loop: the event loop serving the connection.
        proxy_data: what the PROXY protocol header said, when enabled.
        auth_data: what the authenticator returned on success.
        authenticated: True after a successful AUTH; None before any.
        state: a dict for the application's own per-session values.
        connected_peer: after XCLIENT, the address of the proxy that is
            connected (``peer`` is then the client XCLIENT named); None
            before any XCLIENT.
        xclient: what the XCLIENT commands of the session said
            (:class:`~smtpkit.xclient.XClientAttributes`), or None.
        xforward: what the XFORWARD commands of the current transaction
            said (:class:`~smtpkit.xclient.XForwardAttributes`), or None;
            cleared when the transaction ends.
    """

    # Slots keep an idle session small; "__dict__" (created on first use)
    # still lets applications and subclasses set attributes of their own.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_login_data",
        "_state",
        "auth_data",
        "authenticated",
        "connected_peer",
        "extended_smtp",
        "host_name",
        "loop",
        "peer",
        "proxy_data",
        "ssl",
        "xclient",
        "xforward",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.peer: Any = None
        self.ssl: dict[str, Any] | None = None
        self.host_name: str | None = None
        self.extended_smtp = False
        self.loop = loop
        self.proxy_data: ProxyData | None = None
        self.auth_data: Any = None
        self.authenticated: bool | None = None
        self.connected_peer: Any = None
        self.xclient: XClientAttributes | None = None
        self.xforward: XForwardAttributes | None = None
        self._login_data: Any = None
        self._state: dict[str, Any] | None = None

    @property
    def state(self) -> dict[str, Any]:
        """Per-session values for the application (created on first use)."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def login_data(self) -> Any:
        """Deprecated: the login of the authenticated user (use ``auth_data``)."""
        log.warning("Session.login_data is deprecated; use Session.auth_data")
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        log.warning("Session.login_data is deprecated; use Session.auth_data")
        self._login_data = value


class Envelope:
    """One mail transaction: who sends, to whom, and the content.

    Attributes:
        mail_from: the reverse-path of MAIL FROM (``"<>"`` for the null path).
        mail_options: MAIL's ESMTP parameters, upper-cased.
        smtp_utf8: True when MAIL carried ``SMTPUTF8``.
        content: the message (bytes; str when ``decode_data`` is on).
        original_content: the message as bytes, always.
        rcpt_tos: the accepted recipients, in order.
        rcpt_options: RCPT's ESMTP parameters, upper-cased.
        body_type: MAIL's ``BODY`` parameter: ``"7BIT"`` (the default),
            ``"8BITMIME"`` or ``"BINARYMIME"`` (RFC 3030: the content is
            binary, came by BDAT, and stays bytes even with ``decode_data``).
        dsn: MAIL's DSN parameters (RFC 3461 ``RET`` and ``ENVID``, the
            ENVID xtext-decoded), or None when MAIL had neither.
        rcpt_dsn: each recipient's DSN parameters (``NOTIFY`` and
            ``ORCPT``), parallel to ``rcpt_tos``; an empty
            :class:`~smtpkit.dsn.RcptDSN` for a recipient that had none.
        require_tls: True when MAIL carried ``REQUIRETLS`` (RFC 8689, only
            accepted inside TLS): the message must only be relayed over TLS.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "body_type",
        "content",
        "dsn",
        "mail_from",
        "mail_options",
        "original_content",
        "rcpt_dsn",
        "rcpt_options",
        "rcpt_tos",
        "require_tls",
        "smtp_utf8",
    )

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.mail_options: list[str] = []
        self.smtp_utf8 = False
        self.content: bytes | str | None = None
        self.original_content: bytes | None = None
        self.body_type = "7BIT"
        self.rcpt_tos: list[str] = []
        self.rcpt_options: list[str] = []
        self.dsn: MailDSN | None = None
        self.rcpt_dsn: list[RcptDSN] = []
        self.require_tls = False
