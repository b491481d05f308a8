"""DATA as dialogs: the end of data, dot-unstuffing, smuggling, limits.

RFC 5321 §4.1.1.4: only ``<CRLF>.<CRLF>`` ends the mail data; §4.5.2: a
leading period was doubled by the client and is removed here. Every bare-CR
or bare-LF look-alike of the end marker is message text, or a second message
could be smuggled inside the first.
"""

from __future__ import annotations

import pytest
from conftest import Recorder

from dialog.harness import CLOSED, OPEN, Dialog, Eof, Step, run_dialog
from dialog.scripts import GREETING, IN_DATA, server

DATA_REPLY = "354 End data with <CR><LF>.<CR><LF>"


def deliver(body: bytes, **settings: object) -> bytes:
    """Send ``body`` after DATA (ending it), expect 250, return what was delivered."""
    recorder = Recorder()
    run_dialog(server(recorder, **settings), [*IN_DATA, (body, ["250 OK"]), OPEN])
    (envelope,) = recorder.envelopes
    assert isinstance(envelope.content, bytes)
    return envelope.content


@pytest.mark.parametrize(
    ("sent", "content"),
    [
        (b".\r\n", b""),
        (b"one line\r\n.\r\n", b"one line\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"..leading dot\r\n.\r\n", b".leading dot\r\n"),
        (b"a\r\n...\r\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n"),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
        (b"not. a dot.\r\n.\r\n", b"not. a dot.\r\n"),
        (b"a .\r\n. b\r\n.\r\n", b"a .\r\n b\r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"bare\nline\n.\r\n.\r\n", b"bare\nline\n.\r\n"),
    ],
    ids=repr,
)
def test_dot_unstuffing(sent: bytes, content: bytes) -> None:
    assert deliver(sent) == content


def test_data_split_at_every_byte_gives_the_same_message() -> None:
    body = b"..first\r\n\r\n.x\r\nlast\r\n.\r\n"
    recorder = Recorder()
    pieces: list[Step] = [(body[i : i + 1], []) for i in range(len(body) - 1)]
    run_dialog(server(recorder), [*IN_DATA, *pieces, (body[-1:], ["250 OK"])])
    assert recorder.envelopes[0].content == b".first\r\n\r\nx\r\nlast\r\n"


def test_commands_after_the_end_of_data_in_the_same_read_run() -> None:
    run_dialog(
        server(),
        [*IN_DATA, (b"body\r\n.\r\nNOOP\r\nQUIT\r\n", ["250 OK", "250 OK", "221 Bye"]), CLOSED],
    )


def test_data_pipelined_with_its_transaction() -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder),
        [
            (b"", [GREETING]),
            (
                b"HELO c.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                b"DATA\r\nbody\r\n.\r\n",
                ["250 mx.test", "250 OK", "250 OK", DATA_REPLY, "250 OK"],
            ),
        ],
    )
    assert recorder.envelopes[0].content == b"body\r\n"


#: (a look-alike of the end marker, what the message holds in its place)
SMUGGLING_MARKERS = [
    (b"\n.\n", b"\n.\n"),
    (b"\r.\r", b"\r.\r"),
    (b"\n.\r\n", b"\n.\r\n"),
    (b"\r.\r\n", b"\r.\r\n"),
    (b"\r\n.\r", b"\r\n\r"),  # a line starting with a period: unstuffed
    (b"\r\n.\n", b"\r\n\n"),
    (b"\n.\r", b"\n.\r"),
    (b"\r.\n", b"\r.\n"),
    (b"\r\n\x00.\r\n", b"\r\n\x00.\r\n"),
    (b"\r\n.\x00\r\n", b"\r\n\x00\r\n"),
    (b"\r\n .\r\n", b"\r\n .\r\n"),
]
SMUGGLED = (
    b"MAIL FROM:<mallory@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n"
)


@pytest.mark.parametrize(("marker", "stored"), SMUGGLING_MARKERS, ids=repr)
def test_a_look_alike_end_marker_is_message_text(marker: bytes, stored: bytes) -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder),
        [
            *IN_DATA,
            # Nothing is answered: the would-be commands are text.
            (b"first" + marker + SMUGGLED, []),
            (b"\r\n.\r\n", ["250 OK"]),
            OPEN,
        ],
    )
    (envelope,) = recorder.envelopes
    assert envelope.content == b"first" + stored + SMUGGLED + b"\r\n"


@pytest.mark.parametrize(("marker", "stored"), SMUGGLING_MARKERS, ids=repr)
def test_a_look_alike_end_marker_split_over_reads_is_message_text(
    marker: bytes, stored: bytes
) -> None:
    recorder = Recorder()
    pieces: list[Step] = [(marker[i : i + 1], []) for i in range(len(marker))]
    run_dialog(
        server(recorder),
        [*IN_DATA, (b"first", []), *pieces, (SMUGGLED, []), (b".\r\n", ["250 OK"])],
    )
    assert recorder.envelopes[0].content == b"first" + stored + SMUGGLED


@pytest.mark.parametrize(
    ("pieces"),
    [
        [b"text\r\n", b".\r\n"],
        [b"text\r\n.", b"\r\n"],
        [b"text\r", b"\n.\r\n"],
        [b"text", b"\r\n.\r", b"\n"],
    ],
    ids=repr,
)
def test_the_real_end_marker_split_over_reads_ends_data(pieces: list[bytes]) -> None:
    recorder = Recorder()
    steps: list[Step] = [(piece, []) for piece in pieces[:-1]]
    run_dialog(server(recorder), [*IN_DATA, *steps, (pieces[-1], ["250 OK"])])
    assert recorder.envelopes[0].content == b"text\r\n"


def test_too_much_data_is_refused_at_the_end_and_the_session_goes_on() -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder, data_size_limit=100),
        [
            *IN_DATA,
            (b"x" * 60 + b"\r\n", []),
            (b"y" * 60 + b"\r\n", []),
            (b".\r\n", ["552 Error: Too much mail data"]),
            (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"]),
        ],
    )
    assert recorder.envelopes == []


def test_a_line_too_long_is_refused_at_the_end() -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder, line_length_limit=100),
        [
            *IN_DATA,
            (b"z" * 99 + b"\r\n", []),
            (b".\r\n", ["500 Line too long (see RFC5321 4.5.3.1.6)"]),
            (b"NOOP\r\n", ["250 OK"]),
        ],
    )
    assert recorder.envelopes == []


def test_eof_in_the_middle_of_data_delivers_nothing() -> None:
    recorder = Recorder()
    run_dialog(server(recorder), [*IN_DATA, (b"half a message\r\n", []), Eof([]), CLOSED])
    assert recorder.envelopes == []


def test_a_failing_handle_data_gets_451_and_the_session_goes_on() -> None:
    class Failing:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            raise ConnectionRefusedError("the store is down")

    with Dialog(server(Failing())) as talk:
        talk.run([*IN_DATA])
        assert talk.send(b"body\r\n.\r\n") == [
            "451 4.3.0 Requested action aborted: local error in processing"
        ]
        assert talk.send(b"NOOP\r\n") == ["250 OK"]


def test_a_fast_upload_is_read_in_turns() -> None:
    # A read of 64 KiB or more pauses reading for one turn of the loop.
    recorder = Recorder()
    body = (b"x" * 998 + b"\r\n") * 100
    with Dialog(server(recorder)) as talk:
        talk.run(IN_DATA)
        assert talk.send(body) == []
        assert talk.transport.reading  # resumed after its turn
        assert talk.send(b".\r\n") == ["250 OK"]
    assert recorder.envelopes[0].content == body
