"""Timeouts in virtual time: idle, DATA rate, PROXY header, clients that do not read.

The per-loop sweep (:mod:`smtpkit._clock`) checks connections at least every
``MAX_INTERVAL`` seconds, so a timeout of ``T`` seconds must not fire before
``T`` and must have fired by ``T + MAX_INTERVAL``. Each dialog checks both
edges: ``Advance(T - EARLY)`` gets nothing, the next ``Advance(MAX_INTERVAL +
LATE)`` gets the 421. Virtual seconds cost nothing, so the timeouts are the
real defaults (300 s idle, 30 s DATA window) where that matters.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Recorder

from dialog.harness import (
    ABORTED,
    CLOSED,
    OPEN,
    Advance,
    Dialog,
    PauseWriting,
    ResumeWriting,
    Step,
    StopReading,
    run_dialog,
)
from dialog.scripts import (
    GREETING,
    HELO,
    HOSTNAME,
    IN_DATA,
    TIMEOUT_REPLY,
    TOO_SLOW_REPLY,
    server,
)
from smtpkit._clock import MAX_INTERVAL

#: Short of the deadline, and past the deadline plus one sweep.
EARLY = 0.01
LATE = 0.02
IDLE = 300.0


def times_out(after: float, reply: str = TIMEOUT_REPLY) -> list[Step]:
    """Nothing until ``after`` seconds have passed, then ``reply`` and a close."""
    return [Advance(after - EARLY), Advance(EARLY + MAX_INTERVAL + LATE, [reply]), CLOSED]


def test_an_idle_client_gets_421_after_the_timeout() -> None:
    run_dialog(server(), [*HELO, *times_out(IDLE)])


def test_the_timeout_is_a_setting() -> None:
    run_dialog(server(timeout=12), [*HELO, *times_out(12)])


def test_a_client_that_never_greets_is_timed_out_too() -> None:
    run_dialog(server(timeout=30), [(b"", [GREETING]), *times_out(30)])


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"NOOP\r\n", "250 OK"),
        (b"RSET\r\n", "250 OK"),
        (b"MAIL FROM:<anne@example.com>\r\n", "250 OK"),
        (b"HELO\r\n", "501 Syntax: HELO hostname"),  # runs, then refuses its argument
    ],
)
def test_a_command_that_runs_restarts_the_count(line: bytes, reply: str) -> None:
    run_dialog(server(timeout=30), [*HELO, Advance(20), (line, [reply]), *times_out(30)])


@pytest.mark.parametrize(
    ("data", "replies"),
    [
        (b"NOOP", []),  # an incomplete line
        (b"N", []),
        (b"x" * 400, []),
        (b"XYZZY\r\n", ['500 Error: command "XYZZY" not recognized']),  # refused, never run
        (b"\r\n", ["500 Error: bad syntax"]),
        (b"NO\x00OP\r\n", ["501 5.5.2 Syntax error: NUL or bare CR in command"]),
    ],
    ids=repr,
)
def test_input_that_runs_no_command_restarts_nothing(data: bytes, replies: list[str]) -> None:
    run_dialog(server(timeout=30), [*HELO, Advance(20), (data, replies), *times_out(10)])


def test_a_line_sent_one_byte_at_a_time_is_timed_out() -> None:
    trickle: list[Step] = []
    for byte in b"NOOP NOOP NOOP NOOP NOOP":
        trickle += [(bytes([byte]), []), Advance(1)]
    # 25 bytes in 25 seconds: the client is still idle at 30.
    run_dialog(server(timeout=30), [*HELO, *trickle, *times_out(5)])


def test_the_line_completed_at_last_restarts_the_count() -> None:
    run_dialog(
        server(timeout=30),
        [*HELO, (b"NO", []), Advance(20), (b"OP\r\n", ["250 OK"]), *times_out(30)],
    )


def test_reads_during_data_restart_the_count() -> None:
    steps: list[Step] = [*IN_DATA]
    for _ in range(5):
        steps += [Advance(20), (b"a line\r\n", [])]
    steps += [Advance(20), (b".\r\n", ["250 OK"]), *times_out(30)]
    run_dialog(server(timeout=30, data_min_rate=0), steps)


def test_a_client_silent_in_data_is_timed_out() -> None:
    run_dialog(server(timeout=20, data_min_rate=0), [*IN_DATA, *times_out(20)])


class SlowHandler(Recorder):
    """Takes ``seconds`` (of the loop's time) to deliver a message."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


def test_a_slow_handler_is_not_the_client_idling() -> None:
    handler = SlowHandler(1000)
    run_dialog(
        server(handler, timeout=30),
        [
            *IN_DATA,
            (b"body\r\n.\r\n", []),
            Advance(999),
            OPEN,
            Advance(1, ["250 OK"]),
            *times_out(30),
        ],
    )
    assert len(handler.envelopes) == 1


# The DATA rate ----------------------------------------------------------

WINDOW = 30.0  # the default data_rate_window
RATE = 1024  # the default data_min_rate, bytes a second


def test_a_data_transfer_slower_than_the_minimum_is_cut() -> None:
    run_dialog(
        server(),
        [*IN_DATA, (b"x" * 1000 + b"\r\n", []), *times_out(WINDOW, TOO_SLOW_REPLY)],
    )


def test_a_data_transfer_at_the_minimum_goes_on() -> None:
    # Each window gets more than RATE * WINDOW bytes (in lines of 1000).
    window = (b"y" * 998 + b"\r\n") * (RATE * int(WINDOW) // 1000 + 1)
    recorder = Recorder()
    run_dialog(
        server(recorder),
        [
            *IN_DATA,
            (window, []),
            Advance(WINDOW),
            (window, []),
            Advance(WINDOW),
            (window, []),
            Advance(WINDOW - 1),
            (b".\r\n", ["250 OK"]),
            OPEN,
        ],
    )
    assert recorder.envelopes[0].content == window * 3


def test_the_rate_is_judged_per_window() -> None:
    window = (b"y" * 998 + b"\r\n") * (RATE * int(WINDOW) // 1000 + 1)
    run_dialog(
        server(),
        [
            *IN_DATA,
            (window, []),
            Advance(WINDOW),
            # The first window was fast; the second gets a trickle and is cut.
            (b"z\r\n", []),
            *times_out(WINDOW, TOO_SLOW_REPLY),
        ],
    )


def test_the_rate_window_is_a_setting() -> None:
    run_dialog(
        server(data_min_rate=100, data_rate_window=5),
        [*IN_DATA, (b"x" * 400 + b"\r\n", []), *times_out(5, TOO_SLOW_REPLY)],
    )


def test_no_minimum_rate_when_it_is_zero() -> None:
    run_dialog(
        server(data_min_rate=0),
        [*IN_DATA, (b"x\r\n", []), Advance(IDLE - 1), (b".\r\n", ["250 OK"]), OPEN],
    )


class SlowChunks(Recorder):
    """Takes ``seconds`` of the loop's time over the first streamed chunk."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.chunks: list[bytes] = []

    async def handle_DATA_CHUNK(
        self, server: Any, session: Any, envelope: Any, data: bytes
    ) -> None:
        if not self.chunks:
            await asyncio.sleep(self.seconds)
        self.chunks.append(data)


def test_a_slow_streaming_hook_is_not_a_slow_client() -> None:
    handler = SlowChunks(WINDOW * 3)
    run_dialog(
        server(handler),
        [
            *IN_DATA,
            (b"x" * 100 + b"\r\n", []),
            Advance(WINDOW * 3 + 1),
            OPEN,
            (b".\r\n", ["250 OK"]),
        ],
    )
    assert b"".join(handler.chunks) == b"x" * 100 + b"\r\n"


# The PROXY header ---------------------------------------------------------


class TrustsProxy:
    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        return True


PROXY_LINE = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 25\r\n"


def test_a_missing_proxy_header_closes_without_a_word() -> None:
    run_dialog(
        server(TrustsProxy(), proxy_protocol_timeout=5),
        [(b"", []), Advance(5 - EARLY), OPEN, Advance(EARLY + MAX_INTERVAL + LATE), CLOSED],
    )


def test_part_of_a_proxy_header_restarts_nothing() -> None:
    run_dialog(
        server(TrustsProxy(), proxy_protocol_timeout=5),
        [(b"", []), Advance(3), (PROXY_LINE[:12], []), Advance(2 + MAX_INTERVAL + LATE), CLOSED],
    )


def test_a_proxy_header_in_time_gets_the_greeting_then_the_idle_count() -> None:
    talk = run_dialog(
        server(TrustsProxy(), proxy_protocol_timeout=5, timeout=30),
        [
            (b"", []),
            Advance(4),
            (PROXY_LINE, [GREETING]),
            Advance(10),
            OPEN,  # past the header's timeout: that count is over
            (b"HELO client.test\r\n", [f"250 {HOSTNAME}"]),
            *times_out(30),
        ],
    )
    assert str(talk.protocol.session.proxy_data.src_addr) == "198.51.100.7"


# Clients that do not read their replies ----------------------------------------


def test_a_client_that_does_not_read_is_aborted_at_the_timeout() -> None:
    run_dialog(
        server(timeout=30),
        [
            *HELO,
            PauseWriting(),
            (b"NOOP\r\nNOOP\r\n", []),  # answered into a full buffer
            Advance(30 - EARLY),
            OPEN,
            # No 421 to a client that does not read: dropped, replies and all.
            Advance(EARLY + MAX_INTERVAL + LATE),
            ABORTED,
        ],
    )


def test_a_client_that_reads_again_in_time_gets_its_replies() -> None:
    run_dialog(
        server(timeout=30),
        [
            *HELO,
            PauseWriting(),
            (b"NOOP\r\nRSET\r\n", []),
            Advance(20),
            ResumeWriting(["250 OK", "250 OK"]),
            (b"QUIT\r\n", ["221 Bye"]),
            CLOSED,
        ],
    )


def test_a_closed_connection_whose_last_replies_do_not_leave_is_aborted() -> None:
    with Dialog(server(timeout=30, max_unknown_commands=1)) as talk:
        talk.run([*HELO, StopReading()])
        # Refused and closed at once: the reply waits in the transport's buffer.
        assert talk.send(b"XYZZY\r\n") == []
        assert talk.transport.closing and talk.transport.unsent
        talk.run([Advance(30 - EARLY), OPEN, Advance(EARLY + MAX_INTERVAL + LATE), ABORTED])
        assert not talk.transport.unsent


def test_a_closed_connection_whose_last_replies_leave_is_closed() -> None:
    run_dialog(
        server(timeout=30, max_unknown_commands=1),
        [
            *HELO,
            StopReading(),
            (b"XYZZY\r\n", []),
            Advance(10),
            ResumeWriting(["502 5.5.1 Too many unrecognized commands, goodbye."]),
            CLOSED,
        ],
    )


def test_replies_filling_the_buffer_pause_the_server() -> None:
    # 100 HELP replies of ~80 bytes overfill a 4 KiB buffer: the transport
    # pauses the server, which handles no more commands until the client reads.
    with Dialog(server(timeout=30)) as talk:
        talk.transport.set_write_buffer_limits(high=4096)
        talk.run([*HELO, StopReading()])
        assert talk.send(b"HELP\r\n" * 100) == []
        assert talk.transport.protocol_paused
        waiting = len(talk.transport.unsent)
        assert waiting > 4096
        assert talk.send(b"NOOP\r\n") == []
        assert len(talk.transport.unsent) == waiting  # NOOP not handled yet
        lines = talk.resume_writing()
        assert len(lines) == 101
        assert all(line.startswith("250 Supported commands: ") for line in lines[:100])
        assert lines[100] == "250 OK"
