"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA.

A client (or a relay in front of the server) that treats a bare-LF or bare-CR
variant of the end-of-data marker as the end could have a second message
"smuggled" inside the first. Here every such variant is sent after a body,
followed in the same write by a whole second transaction. The server must
deliver exactly one message, holding the would-be commands as text, and must
not answer any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import LOOP_KINDS, RawClient, Recorder

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

SEQUENCES = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n.\n",
    b"\n.\r",
    b"\r.\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
]

OPENING = (
    b"EHLO client.test\r\nMAIL FROM:<anne@example.com>\r\nRCPT TO:<bart@example.com>\r\nDATA\r\n"
)
SMUGGLED = (
    b"MAIL FROM:<mallory@example.com>\r\n"
    b"RCPT TO:<victim@example.com>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n\r\nevil\r\n"
    b"RSET\r\n"
    b"NOOP\r\n"
)
END = b".\r\n"


def expect_one_message(client: RawClient, recorder: Recorder) -> None:
    ehlo = client.reply()
    assert ehlo[-1] == "250 HELP"
    assert client.lines(4) == [
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
    ]
    # Nothing answers the smuggled commands: the next reply is QUIT's.
    client.send(b"QUIT\r\n")
    assert client.line() == "221 Bye"
    assert client.closed()
    assert recorder.delivered.wait(5)
    (envelope,) = recorder.envelopes
    assert envelope.mail_from == "anne@example.com"
    assert envelope.rcpt_tos == ["bart@example.com"]
    content = envelope.content
    assert isinstance(content, bytes)
    assert content.startswith(b"Subject: first\r\n\r\nbody")
    assert b"MAIL FROM:<mallory@example.com>\r\nRCPT TO:<victim@example.com>\r\n" in content
    assert b"Subject: smuggled\r\n\r\nevil\r\nRSET\r\nNOOP\r\n" in content
    assert content.endswith(b"NOOP\r\n")


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_smuggled_transaction_stays_in_the_message(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder, sequence: bytes
) -> None:
    running = server(recorder)
    client = raw(running.port)
    client.send(OPENING + b"Subject: first\r\n\r\nbody" + sequence + SMUGGLED + END)
    expect_one_message(client, recorder)


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_smuggled_transaction_split_into_small_writes(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder, sequence: bytes
) -> None:
    running = server(recorder)
    client = raw(running.port)
    client.send(OPENING)
    data = b"Subject: first\r\n\r\nbody" + sequence + SMUGGLED + END
    for start in range(0, len(data), 3):
        client.send(data[start : start + 3])
    expect_one_message(client, recorder)


# The same variants at the start of a line (after a proper CRLF), leaving out
# ".CRLF", which there is a proper end of data.
LINE_STARTS = sorted(
    {seq.lstrip(b"\r\n") for seq in SEQUENCES} - {b".\r\n"},
)


@pytest.mark.parametrize("sequence", LINE_STARTS, ids=repr)
def test_sequence_at_the_start_of_a_line(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder, sequence: bytes
) -> None:
    running = server(recorder)
    client = raw(running.port)
    client.send(OPENING + b"Subject: first\r\n\r\nbody\r\n" + sequence + SMUGGLED + END)
    expect_one_message(client, recorder)


def test_proper_end_is_an_end(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder
) -> None:
    # The control: with <CRLF>.<CRLF> the second transaction is real.
    running = server(recorder)
    client = raw(running.port)
    client.send(OPENING + b"Subject: first\r\n\r\nbody\r\n.\r\n" + SMUGGLED + END)
    client.reply()
    assert client.lines(4)[-1] == "250 OK"
    assert client.lines(4) == [
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
    ]
    assert [envelope.mail_from for envelope in recorder.envelopes] == [
        "anne@example.com",
        "mallory@example.com",
    ]
