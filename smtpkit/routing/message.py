"""RoutedMessage: what a route receives after DATA."""

from __future__ import annotations

import email
import email.policy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

from ..smtp import SMTP, Envelope, Session

if TYPE_CHECKING:
    from .registry import Route

__all__ = ["RoutedMessage"]


@dataclass(frozen=True, eq=False)
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
        content: the message as received (dot-unstuffed bytes).
    """

    route: Route
    server: SMTP = field(repr=False)
    session: Session = field(repr=False)
    envelope: Envelope = field(repr=False)
    recipients: tuple[str, ...]
    captures: Mapping[str, Mapping[str, str]]
    content: bytes = field(repr=False)

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
