"""The header values handlers add: Received, X-Peer's text, one-line and RFC 2047 encoded values."""

from __future__ import annotations

import contextlib
import email.message
import email.policy
import logging
import os
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from email.header import Header
from email.message import Message as EmailMessage
from email.policy import Policy
from typing import Any

from smtpkit._received import received_header

log = logging.getLogger("smtpkit.handlers")
# Hostnames already warned about as unfit for ``by`` (warned once each).
_UNFIT_HOSTNAMES: set[str] = set()


def _one_line(text: str) -> str:
    """Return ``text`` with CR and LF replaced, safe to use as a header value."""
    return text.replace("\r", " ").replace("\n", " ")


def _header_text(text: str) -> str:
    """Return ``text`` as a one-line header value that is pure ASCII.

    Non-ASCII text (an SMTPUTF8 address) becomes RFC 2047 encoded-words,
    which the ``email`` and ``mailbox`` modules decode back to the same text;
    raw UTF-8 bytes in a header would come back garbled under their default
    (compat32) reading. The words stay on one line, separated by spaces, which
    a decoder drops between adjacent encoded-words.
    """
    text = _one_line(text)
    if text.isascii():
        return text
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    folded = Header(text, "utf-8").encode(linesep="\n")
    return " ".join(part.strip() for part in folded.split("\n"))


def _peer_text(peer: object, sockname: object = None) -> str:
    """Return how X-Peer names the client: ``host:port``, ``[v6]:port`` or a socket path.

    Args:
        peer: ``session.peer``, as the transport reported it.
        sockname: the server side's socket name, used when ``peer`` is empty
            (a client on a Unix socket has no name; the socket's path is the
            useful fact).
    """
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for name in (peer, sockname):
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if isinstance(name, str) and name:
            # A Linux abstract socket name starts with NUL; show it as "@".
            return name.replace("\0", "@")
    return "unknown"


def _sockname(server: object) -> object:
    """The server side's socket name of the connection ``server`` serves, if any."""
    transport = getattr(server, "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    return get_extra_info("sockname") if get_extra_info is not None else None


def _parsing_policy(message_class: type[EmailMessage] | None) -> Policy:
    """The ``email`` policy matching the class a parser builds.

    :class:`email.message.EmailMessage` (and its subclasses) is meant for
    :data:`email.policy.default`, which decodes RFC 2047 headers; the legacy
    :class:`email.message.Message` keeps :data:`email.policy.compat32`.
    """
    if message_class is not None and issubclass(message_class, email.message.EmailMessage):
        return email.policy.default
    return email.policy.compat32


def _message_id() -> str:
    """A short random id for the ``id`` clause (12 hex digits, an Atom)."""
    return secrets.token_hex(6)


def _wants_received(server: object, enabled: bool) -> bool:
    """Whether a handler with ``received_header=enabled`` adds the field on ``server``.

    Both must agree: the handler's keyword and the server's
    ``received_header`` setting (``ServerConfig.received_header``).
    """
    return enabled and getattr(server, "received_header", True) is not False


def _received_text(server: object, session: Any, envelope: Any, id: str) -> str | None:
    """The ``Received:`` field this server adds (CRLF-folded, CRLF-ended), or None.

    ``by`` is ``server.hostname``; ``with`` is ``LMTP…`` for an LMTP server.
    A hostname that is not a domain name cannot be written: the field is
    left out and a warning logged (once per name).
    """
    from smtpkit.lmtp import LMTP  # the handlers do not import the server at load time

    hostname = str(getattr(server, "hostname", None) or "localhost")
    try:
        return received_header(
            session, envelope, hostname=hostname, id=id, lmtp=isinstance(server, LMTP)
        )
    except ValueError as error:
        if hostname not in _UNFIT_HOSTNAMES:
            _UNFIT_HOSTNAMES.add(hostname)
            log.warning("no Received field is added: %s", error)
        return None


# The server side's socket name while a handler builds its X- headers in a
# method whose signature has no server (prepare_message(session, envelope)):
# it lets X-Peer name the socket path for a client on a Unix socket.
_SOCKNAME: ContextVar[object] = ContextVar("smtpkit_handlers_sockname", default=None)
# The server itself, in the same block: the Received field needs its hostname.
_SERVER: ContextVar[object] = ContextVar("smtpkit_handlers_server", default=None)


@contextlib.contextmanager
def _socket_of(server: object) -> Iterator[None]:
    """Make the socket name of ``server``'s connection known to X-Peer inside the block."""
    token = _SOCKNAME.set(_sockname(server))
    server_token = _SERVER.set(server)
    try:
        yield
    finally:
        _SERVER.reset(server_token)
        _SOCKNAME.reset(token)
