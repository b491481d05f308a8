"""RoutedMessage: what a route receives after DATA."""

from __future__ import annotations

import email
import email.policy
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

from ..smtp import SMTP, Envelope, Session

if TYPE_CHECKING:
    from .registry import Route

__all__ = ["MessageContent", "RoutedMessage"]


class MessageContent:
    """The bytes of one message, made on first use and then kept.

    The routes of one transaction share one, so they all see the same bytes
    (the same ``Received:`` field), and a message no route reads costs nothing.

    Args:
        make: builds the bytes; called once, at the first :meth:`get`.
    """

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], bytes]) -> None:
        self._make: Callable[[], bytes] | None = make
        self._value = b""

    def get(self) -> bytes:
        """The bytes, made now if this is the first call."""
        make = self._make
        if make is not None:
            self._value = make()
            self._make = None
        return self._value


@dataclass(frozen=True, eq=False, init=False)
class RoutedMessage:
    """One message, as delivered to one route.

    A route receives the message once per transaction, whatever the number of
    its recipients.

    Attributes:
        route: the route delivering it.
        server: the SMTP connection that received it.
        session: the client's session.
        envelope: the whole transaction (``envelope.rcpt_tos`` lists every
            recipient, including those of other routes).
        recipients: the recipients this route matched, in RCPT order, each once.
        captures: the captured text of each of those recipients, by address.
        content: the message as received (dot-unstuffed bytes), after the
            ``Received:`` field when the server adds one. It is made on first
            use: the bytes, or a :class:`MessageContent` that makes them.
    """

    route: Route
    server: SMTP = field(repr=False)
    session: Session = field(repr=False)
    envelope: Envelope = field(repr=False)
    recipients: tuple[str, ...]
    captures: Mapping[str, Mapping[str, str]]
    _body: bytes | MessageContent = field(repr=False)

    def __init__(
        self,
        route: Route,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        recipients: tuple[str, ...],
        captures: Mapping[str, Mapping[str, str]],
        content: bytes | MessageContent,
    ) -> None:
        # Frozen: the fields are set once, here, in one step (a generated
        # __init__ would call object.__setattr__ once per field).
        vars(self).update(
            route=route,
            server=server,
            session=session,
            envelope=envelope,
            recipients=recipients,
            captures=captures,
            _body=content,
        )

    @property
    def content(self) -> bytes:
        """The message as received (dot-unstuffed bytes), trace field included."""
        body = self._body
        return body if isinstance(body, bytes) else body.get()

    @property
    def mail_from(self) -> str | None:
        """The reverse-path of MAIL FROM (``"<>"`` for bounces)."""
        return self.envelope.mail_from

    @property
    def capture(self) -> Mapping[str, str]:
        """The captures of the first recipient (handy when routes take one each)."""
        return self.captures[self.recipients[0]]

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The content parsed with :mod:`email` (``policy.default``), on first use."""
        return email.message_from_bytes(self.content, policy=email.policy.default)
