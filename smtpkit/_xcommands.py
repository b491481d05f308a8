"""XCLIENT and XFORWARD (Postfix), LIMITS (RFC 9422) and REQUIRETLS (RFC 8689).

A mixin of :class:`smtpkit.smtp.SMTP`, after the RFC 5321 commands:

* ``XCLIENT`` lets a trusted proxy (nginx's mail proxy, a content filter)
  name the real client. The session starts again at the greeting, with the
  named client as ``session.peer``; what the proxy sent stays on
  ``session.xclient`` and the connected address on ``session.connected_peer``.
* ``XFORWARD`` lets a trusted relay name the client of the message it passes
  on, for the logs and the ``Received:`` field; nothing is reset. The values
  are on ``session.xforward`` until the transaction ends.
* ``LIMITS`` tells clients ``RCPTMAX`` and, with a per-session message limit,
  ``MAILMAX``; past that limit the session ends with ``421 4.7.0``.
* ``REQUIRETLS`` is offered inside TLS only; MAIL's ``REQUIRETLS`` parameter
  sets ``envelope.require_tls``.

Each is off on the bare class (aiosmtpd has none of them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from . import _replies as replies
from ._commands import Commands
from ._grammar import parse_params
from ._replies import SMTPReplyError
from ._syntax import syntax
from ._xclient import (
    Special,
    XClientAttributes,
    parse_xclient,
    parse_xforward,
    xclient_keyword,
    xforward_keyword,
)

log = logging.getLogger("smtpkit.smtp")

__all__ = ["XCLIENT_LINE", "XFORWARD_LINE", "XCommands"]

#: What EHLO advertises to a client allowed to send XCLIENT / XFORWARD.
XCLIENT_LINE = "250-" + xclient_keyword(
    ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
)
XFORWARD_LINE = "250-" + xforward_keyword()


class XCommands(Commands):
    """XCLIENT, XFORWARD, and the LIMITS and REQUIRETLS extensions."""

    #: CIDR networks whose clients may send XCLIENT; empty = nobody (off).
    xclient_trusted_networks: Iterable[str] = ()
    #: CIDR networks whose clients may send XFORWARD; empty = nobody (off).
    xforward_trusted_networks: Iterable[str] = ()
    #: Offer LIMITS (RFC 9422). Off on the bare class; on in ServerConfig.
    limits_extension: bool = False
    #: Messages one session may send; None or 0 = no limit.
    max_messages_per_session: int | None = None
    #: Offer REQUIRETLS inside TLS (RFC 8689). Off on the bare class; on in ServerConfig.
    requiretls: bool = False
    #: Messages received in this session (for ``max_messages_per_session``).
    _messages_done = 0

    # ------------------------------------------------------------------
    # EHLO and the transaction

    def _ehlo_lines(self) -> list[str]:
        lines = super()._ehlo_lines()
        if self.limits_extension:
            limits = f"250-LIMITS RCPTMAX={self.max_recipients}"
            if self.max_messages_per_session:
                limits += f" MAILMAX={self.max_messages_per_session}"
            lines.append(limits)
        if self.requiretls and self._tls_active:
            lines.append("250-REQUIRETLS")
        if self._settings.xclient_networks and self._connected_from(
            self._settings.xclient_networks
        ):
            lines.append(XCLIENT_LINE)
        if self._settings.xforward_networks and self._connected_from(
            self._settings.xforward_networks
        ):
            lines.append(XFORWARD_LINE)
        return lines

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        # XFORWARD's attributes describe one message: they end with its transaction.
        if self.session is not None and self.session.xforward is not None:
            self.session.xforward = None

    def _check_mail_params(self, options: list[str], params: dict[str, str | bool]) -> None:
        assert self.envelope is not None
        wanted = self.requiretls and "REQUIRETLS" in options
        if wanted and not self._tls_active:
            raise SMTPReplyError(replies.REQUIRETLS_NEEDS_TLS)
        # Set either way: a MAIL refused after this leaves no stale value.
        self.envelope.require_tls = wanted
        if wanted:
            options = [option for option in options if option != "REQUIRETLS"]
            parsed = parse_params(options)
            assert parsed is not None
            params = parsed
        super()._check_mail_params(options, params)

    async def _send_data_replies(self, status: Any, recipients: int) -> None:
        await super()._send_data_replies(status, recipients)
        if self.max_messages_per_session:
            await self._count_message()

    async def _count_message(self) -> None:
        """Count a message whose replies are sent; past MAILMAX, end the session."""
        limit = self.max_messages_per_session
        if not limit:
            return
        self._messages_done += 1
        if self._messages_done >= limit and not self._closing:
            await self._push(replies.TOO_MANY_MESSAGES.fill(hostname=self.hostname))
            self._close()

    # ------------------------------------------------------------------
    # XCLIENT

    @syntax("XCLIENT attribute=value ...", when="xclient_trusted_networks")
    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Take the client XCLIENT names, then greet again (Postfix's XCLIENT_README)."""
        assert self.session is not None and self.envelope is not None
        networks = self._settings.xclient_networks
        if not networks:
            self._unknown("XCLIENT")
            return
        if not self._connected_from(networks):
            log.warning("%r may not send XCLIENT: not in xclient_trusted_networks", self._peer)
            raise SMTPReplyError(replies.XCLIENT_NOT_AUTHORIZED)
        if self.envelope.mail_from:
            raise SMTPReplyError(replies.X_IN_TRANSACTION)
        attributes = parse_xclient(arg)
        if not self._reassign_limit(attributes):
            await self._push(replies.TOO_MANY_CONNECTIONS)
            self._close()
            return
        self._take_xclient(attributes)
        self._greet()

    def _take_xclient(self, attributes: XClientAttributes) -> None:
        """Make the named client this session's client, as if it had just connected."""
        session = self.session
        assert session is not None
        if session.connected_peer is None:
            session.connected_peer = session.peer
        old = session.peer
        session.peer = _xclient_peer(old, attributes)
        attributes = session.xclient = _merged(session.xclient, attributes)
        session.xforward = None
        session.extended_smtp = False
        # Postfix's rule: the HELO attribute is the client's greeting; without
        # it the client must greet again (and still must, for ESMTP).
        session.host_name = attributes.helo if isinstance(attributes.helo, str) else None
        session.authenticated = None
        session.auth_data = None
        login = attributes.login
        if isinstance(login, str):
            session.authenticated = True
            session.auth_data = login
        self._set_rset_state()
        log.info("%r XCLIENT: the client is now %r", old, session.peer)
        if self._observed is not None:
            host, port = _host_port(session.peer)
            self._observed.proxied(SimpleNamespace(src_addr=host, src_port=port))

    def _reassign_limit(self, attributes: XClientAttributes) -> bool:
        """Count the connection for the client XCLIENT names (as a PROXY header does)."""
        limiter = self.connection_limiter
        addr = attributes.addr
        if limiter is None or not isinstance(self._counted_address, (str, type(None))):
            return True
        if addr is None or isinstance(addr, Special):
            return True
        if not limiter.reassign(self._counted_address, str(addr)):
            log.warning("%r refused: too many connections from %s", self._peer, addr)
            return False
        self._counted_address = str(addr)
        return True

    # ------------------------------------------------------------------
    # XFORWARD

    @syntax("XFORWARD attribute=value ...", when="xforward_trusted_networks")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        """Record the original client of the next message (Postfix's XFORWARD_README)."""
        assert self.session is not None and self.envelope is not None
        networks = self._settings.xforward_networks
        if not networks:
            self._unknown("XFORWARD")
            return
        if not self._connected_from(networks):
            log.warning("%r may not send XFORWARD: not in xforward_trusted_networks", self._peer)
            raise SMTPReplyError(replies.XCLIENT_NOT_AUTHORIZED)
        if self.envelope.mail_from:
            raise SMTPReplyError(replies.X_IN_TRANSACTION)
        attributes = parse_xforward(arg)
        self.session.xforward = _merged(self.session.xforward, attributes)
        await self._push(replies.OK)

    def _connected_from(self, networks: tuple[Any, ...]) -> bool:
        """Whether the directly connected client is in ``networks``."""
        from .proxy_protocol import is_trusted

        session = self.session
        if session is None:
            return False
        peer = session.connected_peer if session.connected_peer is not None else session.peer
        host = peer[0] if isinstance(peer, tuple) else None
        return isinstance(host, str) and is_trusted(host, networks)


_Attributes = Any  # XClientAttributes | XForwardAttributes


def _merged(old: _Attributes | None, new: _Attributes) -> _Attributes:
    """``new``, with the attributes it did not send taken from ``old`` (Postfix keeps them)."""
    if old is None:
        return new
    given = {f.name: getattr(new, f.name) for f in dataclasses.fields(new)}
    return dataclasses.replace(old, **{k: v for k, v in given.items() if v is not None})


def _xclient_peer(old: Any, attributes: XClientAttributes) -> tuple[str, int]:
    """The ``(host, port)`` of the client XCLIENT names; what it leaves out stays."""
    host, port = _host_port(old)
    if attributes.addr is not None:
        host = "unknown" if isinstance(attributes.addr, Special) else str(attributes.addr)
    if attributes.port is not None:
        port = 0 if isinstance(attributes.port, Special) else attributes.port
    return (host, port)


def _host_port(peer: Any) -> tuple[str, int]:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return (str(peer[0]), int(peer[1]))
    return ("unknown", 0)
