"""Replies from handler hooks as dialogs: passed on when well formed, 451 when not.

A hook's reply goes to the client as it is, so one that is malformed (no
code, an embedded CR or LF that would inject a second reply, a broken
multi-line reply) is replaced by ``451 4.3.0``; so is an exception, whatever
its kind. Either way the session goes on.
"""

from __future__ import annotations

from typing import Any

import pytest

from dialog.harness import OPEN, run_dialog
from dialog.scripts import GREETING, HELO, HOSTNAME, server

INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"


class Says:
    """A handler whose ``handle_NOOP`` returns ``reply`` (or raises it)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: Any) -> Any:
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


@pytest.mark.parametrize(
    ("reply", "lines"),
    [
        ("250 Fine", ["250 Fine"]),
        ("250", ["250"]),
        ("550 No thanks", ["550 No thanks"]),
        (["250-one", "250 two"], ["250-one", "250 two"]),
        ("250-one\r\n250 two", ["250-one", "250 two"]),
        (b"250 bytes too", ["250 bytes too"]),
    ],
    ids=repr,
)
def test_a_well_formed_hook_reply_is_sent(reply: Any, lines: list[str]) -> None:
    run_dialog(server(Says(reply)), [(b"", [GREETING]), (b"NOOP\r\n", lines), OPEN])


@pytest.mark.parametrize(
    "reply",
    [
        "Fine",  # no code
        "250 OK\r\n250 injected",  # an injected second reply
        "250 OK\n250 injected",
        "250 OK\rinjected",
        "250-one",  # a continuation with no last line
        ["250-one", "251 two"],  # codes that differ
        [],
        None,
        42,
        "",
    ],
    ids=repr,
)
def test_a_malformed_hook_reply_becomes_451(reply: Any) -> None:
    run_dialog(
        server(Says(reply)),
        [
            (b"", [GREETING]),
            (b"NOOP\r\n", [INTERNAL_ERROR]),
            (b"HELO c.test\r\n", [f"250 {HOSTNAME}"]),
        ],
    )


@pytest.mark.parametrize(
    "error",
    [RuntimeError("bug"), ConnectionRefusedError("database down"), BrokenPipeError("socket")],
    ids=repr,
)
def test_a_hook_that_raises_gets_451_and_the_session_goes_on(error: Exception) -> None:
    run_dialog(
        server(Says(error)),
        [*HELO, (b"NOOP\r\n", [INTERNAL_ERROR]), (b"RSET\r\n", ["250 OK"]), OPEN],
    )


class Rejects:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.endswith("@example.net"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_hook_decides_per_recipient() -> None:
    run_dialog(
        server(Rejects()),
        [
            *HELO,
            (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"]),
            (b"RCPT TO:<bart@example.net>\r\n", ["550 5.1.1 No such user here"]),
            (b"DATA\r\n", ["503 Error: need RCPT command"]),
            (b"RCPT TO:<cleo@example.com>\r\n", ["250 OK"]),
            (b"DATA\r\n", ["354 End data with <CR><LF>.<CR><LF>"]),
        ],
    )
