"""The test server's handler: it captures messages and applies the faults.

Faults for the greeting, ``MAIL``, ``RCPT`` and the end of data are applied
here, in the documented handler hooks, after the server's own checks passed:
``nth=2`` at ``RCPT`` means the second *valid* recipient. The stages that
have no hook (the greeting banner, ``STARTTLS``, ``AUTH``, the ``DATA``
command) are handled by the protocol class in :mod:`._protocol`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._faults import Decision, Faults
from ._inbox import Inbox
from ._messages import capture

__all__ = ["CaptureHandler", "enact"]


class FaultDrop(ConnectionResetError):
    """Raised after a fault closed the connection, so the server stops the dialog."""


async def enact(server: Any, decision: Decision) -> str | None:
    """Carry out ``decision`` on ``server``; return the reply to send, if any.

    A drop aborts the connection and raises :class:`FaultDrop`; a ``421``
    reply is sent, then the connection is closed and :class:`FaultDrop` raised.
    """
    if decision.delay:
        await asyncio.sleep(decision.delay)
    transport = server.transport
    if decision.drop:
        if transport is not None:
            transport.abort()
        raise FaultDrop("connection dropped by an injected fault")
    reply = decision.reply
    if reply is not None and reply.startswith("421"):
        await server.push(reply)
        if transport is not None:
            transport.close()
        raise FaultDrop("connection closed after an injected 421 reply")
    return reply


def _accepts(reply: str | None) -> bool:
    return reply is None or reply.startswith("2")


class CaptureHandler:
    """Accepts every message into an :class:`Inbox`, unless a fault says otherwise.

    Args:
        inbox: where accepted messages go.
        faults: the rules to apply.
    """

    def __init__(self, inbox: Inbox, faults: Faults) -> None:
        self.inbox = inbox
        self.faults = faults

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        """Greet back, or answer what a ``HELO`` fault says."""
        reply = await enact(server, self.faults.decide("HELO"))
        if _accepts(reply):
            session.host_name = hostname
        return reply or f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Send the extension list, or answer what an ``EHLO`` fault says."""
        reply = await enact(server, self.faults.decide("EHLO"))
        if _accepts(reply):
            session.host_name = hostname
        return [reply] if reply else responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        """Accept the sender, or answer what a ``MAIL`` fault says."""
        reply = await enact(server, self.faults.decide("MAIL"))
        if _accepts(reply):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply or "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept the recipient, or answer what a ``RCPT`` fault (or the greylist) says."""
        client = session.peer[0] if isinstance(session.peer, tuple) else session.peer
        key = (client, envelope.mail_from.lower(), address.lower())
        reply = await enact(server, self.faults.decide("RCPT", key))
        if _accepts(reply):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Capture the message, unless a ``DATA`` fault refuses it."""
        reply = await enact(server, self.faults.decide("DATA"))
        if _accepts(reply):
            self.inbox.add(capture(envelope.original_content, session, envelope))
        return reply or "250 OK: message captured"
