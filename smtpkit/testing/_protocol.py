"""The test server's protocol classes: SMTP and LMTP with faults where no hook reaches.

The greeting banner, ``STARTTLS``, ``AUTH`` and the ``DATA`` command have no
handler hook that runs before the server answers, so these stages are
checked here, before the normal command runs. The faults come from the
handler (:class:`._handler.CaptureHandler`), which every instance shares.
"""

from __future__ import annotations

from smtpkit.lmtp import LMTP
from smtpkit.smtp import SMTP, syntax

from ._faults import Decision, Faults
from ._handler import FaultDrop, enact

__all__ = ["FaultySMTP", "protocol_class"]


class FaultySMTP(SMTP):
    """:class:`smtpkit.smtp.SMTP`, checking the faults at the stages hooks do not reach."""

    def _faults(self) -> Faults:
        faults: Faults = self.event_handler.faults
        return faults

    async def _faulted(self, stage: str) -> bool:
        """Apply the faults of ``stage``; return True when they answered for the command."""
        reply = await enact(self, self._faults().decide(stage))
        if reply is None:
            return False
        await self.push(reply)
        return True

    def _greet(self) -> None:
        decision = self._faults().decide("CONNECT")
        if decision.normal and not decision.delay:
            super()._greet()
            return
        self._runner = self.loop.create_task(self._faulty_greeting(decision))

    async def _faulty_greeting(self, decision: Decision) -> None:
        # A delayed greeting is the server at work, not an idle client.
        self._running = True
        try:
            reply = await enact(self, decision)
            if reply is None:
                super()._greet()
                return
            await self.push(reply)
            if not reply.startswith("2") and self.transport is not None:
                # A refused greeting ends the connection: the client cannot go on.
                self.transport.close()
        except FaultDrop:
            pass
        finally:
            self._running = False
            self._runner = None
            transport = self.transport
            if self._buf and transport is not None and not transport.is_closing():
                # The client spoke while the greeting waited: answer it now.
                self._runner = self.loop.create_task(self._run())

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """STARTTLS, unless a ``STARTTLS`` fault answers (e.g. ``refuse_starttls()``)."""
        if not await self._faulted("STARTTLS"):
            await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str | None) -> None:
        """AUTH, unless an ``AUTH`` fault answers."""
        if not await self._faulted("AUTH"):
            await super().smtp_AUTH(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA, unless a ``DATA_START`` fault answers before the ``354``."""
        if not await self._faulted("DATA_START"):
            await super().smtp_DATA(arg)


class FaultyLMTP(FaultySMTP, LMTP):
    """:class:`smtpkit.lmtp.LMTP` with the same faults."""


def protocol_class(lmtp: bool) -> type[SMTP]:
    """The protocol class to serve: LMTP or SMTP."""
    return FaultyLMTP if lmtp else FaultySMTP
