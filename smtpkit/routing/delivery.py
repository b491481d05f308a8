"""Recipient routing at RCPT time and delivery to routes after DATA.

At RCPT, the first route (in registration order) whose pattern matches the
address takes the recipient; no match refuses it at once, so the client
learns it before sending the message, not after (RFC 5321 §3.3).

After DATA, each route gets the message once, with the recipients it took.
SMTP has one reply for the whole message, so it is the worst of the routes'
replies (a 5xx over a 4xx over a success; the first one among equals). LMTP
replies per recipient (RFC 2033 §4.2), so each recipient gets its own
route's reply.

Before the routes see it, the message gets a ``Received:`` trace field
(RFC 5321 §4.4) in front, unless the server's ``received_header`` setting
(``ServerConfig.received_header``) is off.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .. import _replies as replies
from .._connection import INTERNAL_ERROR
from .._received import received_header
from .._replies import OK, Reply
from ..auth._command import MISSING, _Missing
from ..lmtp import LMTP
from ..smtp import SMTP, Envelope, Session
from ._calls import AsyncCall, to_async
from .message import MessageContent, RoutedMessage
from .registry import Entry, ExceptionSpec, Route

__all__ = ["ACCEPTED", "ExceptionMapper", "Router", "no_route_reply", "worst_reply"]

log = logging.getLogger("smtpkit.routing")

#: How many RCPT matches a router keeps for delivery at most (then it starts again).
_FOUND_MAX = 4096

#: The reply of a route function that returned None.
ACCEPTED = replies.OK.format()


def no_route_reply(address: str) -> str:
    """The reply refusing a recipient that matches no route."""
    return replies.NO_ROUTE.fill(address=address).format()


class ExceptionMapper:
    """Turns an exception into a reply with the registered exception handlers.

    The handler of the most specific class along the exception's MRO wins.
    A handler that returns no string, or raises, gives ``451 4.3.0``.
    """

    def __init__(self, entries: Mapping[type[Exception], Entry[ExceptionSpec]]) -> None:
        self._calls: dict[type[Exception], AsyncCall] = {
            exc_type: to_async(entry.spec.func) for exc_type, entry in entries.items()
        }

    def __bool__(self) -> bool:
        return bool(self._calls)

    async def reply(self, error: Exception) -> str:
        """The reply for ``error``."""
        for cls in type(error).__mro__:
            call = self._calls.get(cls)
            if call is not None:
                break
        else:
            return INTERNAL_ERROR
        try:
            status = await call(error)
        except Exception:
            log.exception("the exception handler for %s raised", type(error).__qualname__)
            return INTERNAL_ERROR
        return status if isinstance(status, str) and status else INTERNAL_ERROR


class Router:
    """The routes of an app, and what RCPT and DATA do with them."""

    def __init__(self, routes: Iterable[Route], errors: ExceptionMapper) -> None:
        self.routes = tuple(routes)
        self._calls = {route: to_async(route.func) for route in self.routes}
        self._errors = errors
        # Bound once: the regexes' own fullmatch, in route order.
        self._matchers = tuple((route, route.pattern.regex.fullmatch) for route in self.routes)
        # What RCPT found for an address, taken again at delivery so the
        # address is not matched twice. A match depends on the address only,
        # so an entry is right whichever connection left it; entries of
        # transactions that never reach DATA are dropped in bulk.
        self._found: dict[str, tuple[Route, re.Match[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self.routes)

    def find(self, address: str) -> tuple[Route, dict[str, str]] | None:
        """The first route matching ``address``, and its captures."""
        for route, fullmatch in self._matchers:
            found = fullmatch(address)
            if found is not None:
                return route, found.groupdict()
        return None

    def check(self, address: str) -> str | _Missing:
        """RCPT: MISSING (the server accepts as usual) or the refusal."""
        for route, fullmatch in self._matchers:
            found = fullmatch(address)
            if found is not None:
                kept = self._found
                if len(kept) >= _FOUND_MAX:
                    kept.clear()
                kept[address] = (route, found)
                return MISSING
        return no_route_reply(address)

    async def deliver(
        self, server: SMTP, session: Session, envelope: Envelope, content: bytes
    ) -> Reply | str | list[str]:
        """Give the message to each route; return the DATA reply (a list under LMTP).

        When every recipient's route accepted without a reply of its own, the
        reply is the constant ``OK`` of the replies module, whose wire bytes
        are built once (the same line as :data:`ACCEPTED`).
        """
        body = message_body(server, session, envelope, content)
        chosen: list[Route | None] = []
        groups: dict[Route, dict[str, dict[str, str]]] = {}
        taken = self._found.pop
        for address in envelope.rcpt_tos:
            found = taken(address, None)
            if found is None:
                found = self._match(address)
                if found is None:
                    chosen.append(None)
                    continue
            route = found[0]
            chosen.append(route)
            matched = groups.get(route)
            if matched is None:
                matched = groups[route] = {}
            matched[address] = found[1].groupdict()
        # Each route once (in the order of its first recipient): its reply,
        # and a weak reference to the message it was given.
        replies: dict[Route, str] = {}
        kept: list[weakref.ref[RoutedMessage]] = []
        calls = self._calls
        for route, matched in groups.items():
            message = RoutedMessage(route, server, session, envelope, tuple(matched), matched, body)
            kept.append(weakref.ref(message))
            try:
                reply = await calls[route](message)
            except Exception as error:
                log.exception("route %r failed", route.name)
                replies[route] = await self._errors.reply(error)
            else:
                replies[route] = _route_reply(route, reply)
            del message
        if isinstance(body, MessageContent):
            _settle(body, kept)
        if len(chosen) == 1:  # one recipient: its reply is the reply
            only = chosen[0]
            one = replies[only] if only is not None else no_route_reply(envelope.rcpt_tos[0])
            if isinstance(server, LMTP):
                return [one]
            return OK if one is ACCEPTED else one
        per_recipient = [
            replies[route] if route is not None else no_route_reply(address)
            for address, route in zip(envelope.rcpt_tos, chosen, strict=True)
        ]
        if isinstance(server, LMTP):
            return per_recipient
        worst = worst_reply(per_recipient)
        return OK if worst is ACCEPTED else worst

    def _match(self, address: str) -> tuple[Route, re.Match[str]] | None:
        """The first route matching ``address``, and the match."""
        for route, fullmatch in self._matchers:
            found = fullmatch(address)
            if found is not None:
                return route, found
        return None


def _route_reply(route: Route, reply: object) -> str:
    """The reply of a route function that returned ``reply``."""
    if reply is None:
        return ACCEPTED
    if not isinstance(reply, str):
        log.error("route %r returned %r; expected a reply string or None", route.name, reply)
        return INTERNAL_ERROR
    return reply


def _settle(body: MessageContent, kept: Sequence[weakref.ref[RoutedMessage]]) -> None:
    """Make the bytes now if a route kept its message past its call.

    Read later, the session may have moved on (a new EHLO, STARTTLS): the
    bytes must come from the state of this transaction. A message nobody
    kept can never be read, so its bytes are never made.
    """
    for ref in kept:
        if ref() is not None:
            body.get()
            return


def worst_reply(replies: Sequence[str]) -> str:
    """The reply that speaks for all: the first 5xx, else the first 4xx, else the first one."""
    if len(replies) == 1:
        return replies[0]
    if not replies:
        return ACCEPTED
    return max(replies, key=_severity)


#: How bad a reply is, by its first digit.
_SEVERITY = {"5": 2, "4": 1}


def _severity(reply: str) -> int:
    # max() keeps the first of equal keys, which is the first among equals.
    return _SEVERITY.get(reply[:1], 0)


def message_body(
    server: SMTP, session: Session, envelope: Envelope, content: bytes
) -> bytes | MessageContent:
    """What the routes get as ``content``: the bytes, or the bytes after a ``Received:`` field.

    The field is written on first use (dated now, at the end of the data), so
    a message that no route reads does not pay for it.
    """
    if getattr(server, "received_header", True) is False:
        return content
    # The time now, as datetime.now(timezone.utc) reads it; the datetime is
    # made with the field.
    stamp = time.time()
    return MessageContent(
        lambda: with_received(
            server, session, envelope, content, datetime.fromtimestamp(stamp, timezone.utc)
        )
    )


def with_received(
    server: SMTP,
    session: Session,
    envelope: Envelope,
    content: bytes,
    now: datetime | None = None,
) -> bytes:
    """``content`` with this server's ``Received:`` field in front (when it is on).

    The ``id`` is a short random one; ``by`` is ``server.hostname``; ``now``
    is the time of receipt (the current time when None). A hostname that is
    not a domain name cannot be written: the message goes on without the
    field, and the log says why.
    """
    if getattr(server, "received_header", True) is False:
        return content
    try:
        field = received_header(
            session,
            envelope,
            hostname=str(server.hostname),
            id=secrets.token_hex(6),
            now=now,
            lmtp=isinstance(server, LMTP),
        )
    except ValueError as error:
        log.warning("no Received field is added: %s", error)
        return content
    return field.encode("utf-8") + content


def content_of(envelope: Envelope) -> bytes:
    """The message bytes of an envelope filled by the server (not streamed)."""
    if envelope.original_content is not None:
        return bytes(envelope.original_content)
    content: Any = envelope.content
    if isinstance(content, str):
        return content.encode("utf-8", "surrogateescape")
    return bytes(content or b"")
