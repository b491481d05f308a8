"""LMTP (RFC 2033) as dialogs: LHLO instead of HELO/EHLO, one DATA reply per recipient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dialog.harness import OPEN, Dialog, Step, code, run_dialog
from dialog.scripts import GREETING, HOSTNAME
from smtpkit.lmtp import LMTP

INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"


class PerRecipient:
    """Answers DATA with ``answer`` (a reply, or one per recipient)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> Any:
        return self.answer


def lmtp(handler: Any) -> Callable[[], LMTP]:
    return lambda: LMTP(handler, hostname=HOSTNAME)


LHLO: list[Step] = [
    (b"", [GREETING]),
    (b"LHLO client.test\r\n", [f"250-{HOSTNAME}", code(250), code(250), code(250), "250 HELP"]),
]
TWO_RECIPIENTS: list[Step] = [
    *LHLO,
    (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"]),
    (b"RCPT TO:<bart@example.com>\r\n", ["250 OK"]),
    (b"RCPT TO:<cleo@example.com>\r\n", ["250 OK"]),
    (b"DATA\r\n", ["354 End data with <CR><LF>.<CR><LF>"]),
]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"HELO client.test\r\n", '500 Error: command "HELO" not recognized'),
        (b"EHLO client.test\r\n", '500 Error: command "EHLO" not recognized'),
        (b"LHLO\r\n", "501 Syntax: LHLO hostname"),
        (b"MAIL FROM:<anne@example.com>\r\n", "503 Error: send LHLO first"),
    ],
)
def test_lmtp_greets_with_lhlo_only(line: bytes, reply: str) -> None:
    run_dialog(lmtp(PerRecipient("250 OK")), [(b"", [GREETING]), (line, [reply]), OPEN])


@pytest.mark.parametrize(
    ("answer", "replies"),
    [
        ("250 OK", ["250 OK", "250 OK"]),
        (
            ["250 2.0.0 stored", "452 4.2.2 mailbox full"],
            ["250 2.0.0 stored", "452 4.2.2 mailbox full"],
        ),
        (["250 OK"], [INTERNAL_ERROR, INTERNAL_ERROR]),  # one reply for two recipients
        (None, [INTERNAL_ERROR, INTERNAL_ERROR]),
    ],
    ids=repr,
)
def test_lmtp_replies_once_per_recipient(answer: Any, replies: list[str]) -> None:
    run_dialog(lmtp(PerRecipient(answer)), [*TWO_RECIPIENTS, (b"body\r\n.\r\n", replies), OPEN])


def test_lmtp_session_goes_on_after_the_replies() -> None:
    with Dialog(lmtp(PerRecipient("250 OK"))) as talk:
        talk.run(TWO_RECIPIENTS)
        assert talk.send(b"body\r\n.\r\nRSET\r\n") == ["250 OK", "250 OK", "250 OK"]
