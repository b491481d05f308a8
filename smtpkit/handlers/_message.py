"""`Message` and `AsyncMessage`: each message as an :class:`email.message.Message`."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from email.message import Message as EmailMessage
from email.parser import BytesParser, Parser
from typing import TYPE_CHECKING

from ._headers import _SOCKNAME, _parsing_policy, _peer_text, _socket_of

if TYPE_CHECKING:
    from smtpkit.smtp import SMTP, Envelope, Session


class MessageBase(ABC):
    """Common part of :class:`Message` and :class:`AsyncMessage`.

    Args:
        message_class: the class the parser builds; ``email.message.Message``
            when not given. The parser uses :data:`email.policy.default` when
            it is :class:`email.message.EmailMessage` or a subclass (headers
            such as an encoded ``Subject`` come out decoded), and
            :data:`email.policy.compat32` otherwise.
    """

    def __init__(self, message_class: type[EmailMessage] | None = None) -> None:
        self.message_class = message_class

    def prepare_message(self, session: Session, envelope: Envelope) -> EmailMessage:
        """Parse ``envelope.content`` and add the X-Peer, X-MailFrom and X-RcptTo headers.

        Args:
            session: the current session (its ``peer`` becomes X-Peer, written
                ``host:port``, ``[IPv6]:port`` or the socket path).
            envelope: the finished transaction.

        Returns:
            The parsed message.

        Raises:
            TypeError: ``envelope.content`` is neither ``bytes`` nor ``str``.
        """
        data = envelope.content
        policy = _parsing_policy(self.message_class)
        message: EmailMessage
        if isinstance(data, (bytes, bytearray)):
            message = BytesParser(self.message_class, policy=policy).parsebytes(bytes(data))
        elif isinstance(data, str):
            message = Parser(self.message_class, policy=policy).parsestr(data)
        else:
            raise TypeError(f"envelope.content: expected str or bytes, got {type(data).__name__}")
        message["X-Peer"] = _peer_text(session.peer, _SOCKNAME.get())
        message["X-MailFrom"] = envelope.mail_from or ""
        message["X-RcptTo"] = ", ".join(envelope.rcpt_tos)
        return message

    def _prepare(self, server: SMTP, session: Session, envelope: Envelope) -> EmailMessage:
        """Call :meth:`prepare_message` with the connection's socket name at hand."""
        with _socket_of(server):
            return self.prepare_message(session, envelope)

    @abstractmethod
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Handle the end of DATA; see the subclasses."""


class Message(MessageBase):
    """Abstract handler passing each message to a synchronous ``handle_message``.

    ``prepare_message`` and ``handle_message`` run on the event loop, so
    ``handle_message`` should be quick; use :class:`AsyncMessage` for work
    that waits.
    """

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Parse the message, call ``handle_message`` and accept it.

        Returns:
            ``"250 OK"``.
        """
        self.handle_message(self._prepare(server, session, envelope))
        return "250 OK"

    @abstractmethod
    def handle_message(self, message: EmailMessage) -> None:
        """Receive one parsed message.

        Args:
            message: the message with its X-Peer, X-MailFrom and X-RcptTo headers.
        """


class AsyncMessage(MessageBase):
    """Abstract handler passing each message to a coroutine ``handle_message``.

    Args:
        message_class: the class the parser builds.
        loop: kept on ``self.loop`` for code written against older APIs; the
            handler always runs on the loop that serves the session.
    """

    def __init__(
        self,
        message_class: type[EmailMessage] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(message_class)
        self.loop = loop

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Parse the message, await ``handle_message`` and accept it.

        Returns:
            ``"250 OK"``.
        """
        await self.handle_message(self._prepare(server, session, envelope))
        return "250 OK"

    @abstractmethod
    async def handle_message(self, message: EmailMessage) -> None:
        """Receive one parsed message.

        Args:
            message: the message with its X-Peer, X-MailFrom and X-RcptTo headers.
        """
