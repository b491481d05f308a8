"""LMTP, the Local Mail Transfer Protocol (RFC 2033).

LMTP is SMTP for the last hop into a mail store: the client greets with
``LHLO`` (``HELO`` and ``EHLO`` are not part of it), and after the end of data
the server sends **one reply per accepted recipient**, in the order of the
``RCPT`` commands, so that one mailbox can refuse a message that another
accepted (RFC 2033 §4.2).

A handler says what each recipient gets through the return value of
``handle_DATA``:

* a reply string: every recipient gets that reply;
* a list (or tuple) of reply strings, one per entry of ``envelope.rcpt_tos``,
  in the same order: each recipient gets its own.

Anything else (a list of the wrong length, say) is a handler bug: every
recipient gets ``451 4.3.0`` and the log says why, so no recipient is told a
message was delivered when that is not known.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from . import _replies as replies
from ._replies import Reply
from ._syntax import syntax
from .smtp import SMTP

__all__ = ["LMTP"]

log = logging.getLogger("smtpkit.smtp")


class LMTP(SMTP):
    """An LMTP server protocol; same constructor and hooks as :class:`SMTP`."""

    _allowed_before_tls = frozenset({"NOOP", "LHLO", "STARTTLS", "QUIT"})
    _hello_verb = "LHLO"

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str | None) -> None:
        """The LMTP greeting; answers like EHLO (and calls ``handle_EHLO``)."""
        if not arg:
            await self._push(replies.LHLO_SYNTAX)
            return
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str | None) -> None:
        """Not part of LMTP (RFC 2033 §4.1): refused like an unknown command."""
        await self._push(replies.UNKNOWN_COMMAND.fill(verb="HELO"))

    async def smtp_EHLO(self, arg: str | None) -> None:
        """Not part of LMTP (RFC 2033 §4.1): refused like an unknown command."""
        await self._push(replies.UNKNOWN_COMMAND.fill(verb="EHLO"))

    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        """Reply ``503 Error: send LHLO first`` and return True before LHLO."""
        return await super().check_helo_needed("LHLO")

    async def _send_data_replies(self, status: Any, recipients: int) -> None:
        # RFC 2033 §4.2: one reply per successful RCPT, in their order; by BDAT
        # (RFC 3030 §4.1) they follow the LAST chunk, every other chunk has one.
        for reply in _per_recipient(status, recipients):
            await self._push_hook_reply(reply, "handle_DATA")
        # LIMITS MAILMAX (RFC 9422) counts LMTP messages as SMTP's.
        await self._count_message()


def _per_recipient(status: Any, recipients: int) -> Sequence[Reply | str | bytes]:
    """Expand the handler's answer into one reply per recipient."""
    if isinstance(status, (str, bytes, Reply)):
        return [status] * recipients
    if (
        isinstance(status, (list, tuple))
        and len(status) == recipients
        and all(isinstance(reply, (str, bytes)) for reply in status)
    ):
        return list(status)
    log.error(
        "LMTP handle_DATA returned %r; expected a reply string or %d reply strings",
        status,
        recipients,
    )
    return [replies.INTERNAL_ERROR] * recipients
