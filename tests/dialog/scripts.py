"""What the dialog tests share: the server they talk to and the usual openings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import Recorder

from dialog.harness import Step, prefix
from smtpkit.smtp import SMTP

HOSTNAME = "mx.test"
#: The greeting: the host name, then the server's ident (its version changes).
GREETING = prefix(f"220 {HOSTNAME} ")
TIMEOUT_REPLY = f"421 4.4.2 {HOSTNAME} Error: timeout exceeded"
TOO_SLOW_REPLY = f"421 4.4.2 {HOSTNAME} Error: data transfer too slow"

#: Connect, greet with HELO: the session is ready for a transaction.
HELO: list[Step] = [
    (b"", [GREETING]),
    (b"HELO client.test\r\n", [f"250 {HOSTNAME}"]),
]
#: Connect, HELO, and a transaction up to the 354 of DATA.
IN_DATA: list[Step] = [
    *HELO,
    (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"]),
    (b"RCPT TO:<bart@example.com>\r\n", ["250 OK"]),
    (b"DATA\r\n", ["354 End data with <CR><LF>.<CR><LF>"]),
]


def server(handler: Any = None, **settings: Any) -> Callable[[], SMTP]:
    """A factory of ``SMTP(handler, hostname="mx.test", **settings)`` (a Recorder by default)."""
    chosen = Recorder() if handler is None else handler

    def factory() -> SMTP:
        return SMTP(chosen, hostname=HOSTNAME, **settings)

    return factory
