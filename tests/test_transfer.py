"""The per-message transfer object and the connection's named phases.

The transfer is I/O-free: tables feed it bytes and tell it the time. Through
real sockets, a connection carries a transfer only while a message is being
received, and its phase says what it is doing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import RawClient, ServerFactory

from smtpkit._constants import MISSING as BOTTOM_MISSING
from smtpkit._constants import Phase
from smtpkit._data import DataDecoder
from smtpkit._transfer import Transfer
from smtpkit.auth._command import MISSING as AUTH_MISSING
from smtpkit.handlers import Sink
from smtpkit.smtp import MISSING, _Missing

# -- The object ------------------------------------------------------------------------

# (pieces fed in order, the index each feed returns, content, size)
FEEDS = [
    ([b".\r\n"], [3], b"", 0),
    ([b"a\r\n.\r\n"], [6], b"a\r\n", 3),
    ([b"a\r\n", b".\r\nNOOP\r\n"], [-1, 3], b"a\r\n", 3),
    ([b"..x\r\n.\r\n"], [8], b".x\r\n", 5),
    ([b"a\r", b"\n.", b"\r\n"], [-1, -1, 2], b"a\r\n", 3),
]


@pytest.mark.parametrize(("pieces", "ends", "content", "size"), FEEDS)
def test_feed_returns_the_end_of_the_message(
    pieces: list[bytes], ends: list[int], content: bytes, size: int
) -> None:
    transfer = Transfer.for_data(None, 1001, streaming=False, now=0.0)
    assert [transfer.feed(piece) for piece in pieces] == ends
    assert transfer.done
    assert (transfer.take(), transfer.size, transfer.error) == (content, size, None)


def test_limits_come_from_the_decoder() -> None:
    transfer = Transfer.for_data(10, 1001, streaming=False, now=0.0)
    data = b"x" * 20 + b"\r\n.\r\n"
    assert transfer.feed(data) == len(data)
    assert transfer.error == "552 Error: Too much mail data"
    assert transfer.take() == b""


def test_chunks_and_pending_show_what_is_not_taken() -> None:
    transfer = Transfer(DataDecoder(None, 1001), streaming=True, now=0.0)
    transfer.feed(b"line one\r\nline two\r\n")
    assert transfer.streaming
    assert transfer.pending == sum(map(len, transfer.chunks)) > 0
    taken = transfer.take()
    assert taken.startswith(b"line one\r\n")
    assert (transfer.chunks, transfer.pending) == ([], 0)


# (window seconds, (time, bytes fed before it) ticks, which ticks end a window)
WINDOWS = [
    (30.0, [(10.0, 100), (29.9, 100)], [False, False]),
    (30.0, [(30.0, 3000)], [True]),
    (10.0, [(10.0, 500), (15.0, 400), (20.0, 300)], [True, False, True]),
]


@pytest.mark.parametrize(("window", "ticks", "ends"), WINDOWS)
def test_the_rate_window_counts_bytes_per_window(
    window: float, ticks: list[tuple[float, int]], ends: list[bool]
) -> None:
    transfer = Transfer.for_data(None, 0, streaming=False, now=0.0)
    started_at, started_size = 0.0, 0
    for (now, count), ended in zip(ticks, ends, strict=True):
        transfer.feed(b"x" * count)
        expected = (transfer.size - started_size, now - started_at) if ended else None
        assert transfer.window_ended(now, window) == expected
        if ended:
            started_at, started_size = now, transfer.size


def test_a_restarted_window_counts_from_then() -> None:
    transfer = Transfer.for_data(None, 0, streaming=False, now=0.0)
    transfer.feed(b"x" * 1000)
    transfer.restart_window(25.0)
    before = transfer.size
    transfer.feed(b"x" * 10)
    assert transfer.window_ended(50.0, 30.0) is None
    assert transfer.window_ended(55.0, 30.0) == (transfer.size - before, 30.0)
    assert transfer.size - before == 10


def test_missing_is_one_object_under_every_name() -> None:
    assert BOTTOM_MISSING is AUTH_MISSING is MISSING is _Missing.MISSING
    assert repr(MISSING) == "MISSING"


# -- Through real sockets ----------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited 10 s for {what}")
        time.sleep(0.01)


def test_only_a_message_in_progress_has_a_transfer(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    running = server(Sink())
    client = raw(running.port)
    client.send("EHLO client.test\r\n")
    client.reply()
    (protocol,) = running.protocols
    assert protocol._phase is Phase.COMMANDS and protocol._transfer is None
    client.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    assert client.lines(3)[-1].startswith("354")
    client.send("Subject: half a message\r\n")
    wait_for(lambda: protocol._phase is Phase.DATA, "the DATA phase")
    assert protocol._transfer is not None
    wait_for(lambda: protocol._transfer.size > 0, "the first bytes in the transfer")
    client.send("\r\nbody\r\n.\r\n")
    assert client.line() == "250 OK"
    assert protocol._phase is Phase.COMMANDS and protocol._transfer is None
    client.send("QUIT\r\n")
    assert client.line() == "221 Bye"
    wait_for(lambda: protocol._phase is Phase.CLOSING, "the closing phase")


class ProxyAccepting(Sink):
    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        return True


def test_a_connection_waits_for_the_proxy_header_in_its_own_phase(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    running = server(ProxyAccepting(), proxy_protocol_timeout=30)
    client = raw(running.port, greeting=False)
    wait_for(lambda: bool(running.protocols), "the connection")
    (protocol,) = running.protocols
    wait_for(lambda: protocol._phase is Phase.PROXY, "the PROXY phase")
    client.send("PROXY TCP4 192.0.2.1 192.0.2.2 40000 25\r\n")
    assert client.line().startswith("220 ")
    assert protocol._phase is Phase.COMMANDS
    client.send("NOOP\r\n")
    assert client.line() == "250 OK"
