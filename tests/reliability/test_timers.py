"""Timeouts that no client can dodge.

A real server on loopback with a short idle timeout, and clients that try to
hold a connection without ever completing a command: an endless command line,
one byte a second, and a client that pipelines commands but never reads the
replies. Each must be cut within the timeout, plus one sweep of the clock,
plus generous slack for a loaded machine; a lower bound checks that the cut
is the timeout's doing and not an accident.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, RawClient

from smtpkit._clock import MAX_INTERVAL
from smtpkit.smtp import SMTP

Raw = Callable[..., RawClient]

TIMEOUT = 1.5
#: Extra seconds a loaded 2-core machine may need to get to the cut.
SLACK = 2.5
#: The latest moment, after the client's last command, for the server to cut.
DEADLINE = TIMEOUT + MAX_INTERVAL + SLACK
TIMEOUT_REPLY = b"421 4.4.2 smtp.example.test Error: timeout exceeded\r\n"


class Trickle:
    """Sends ``data`` one byte at a time, every ``pause`` seconds, in a thread.

    Stops at the end of ``data``, when :meth:`stop` is called, or when the
    server has closed the connection (a send fails).
    """

    def __init__(self, sock: socket.socket, data: bytes, pause: float) -> None:
        self.sock = sock
        self.data = data
        self.pause = pause
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        for index in range(len(self.data)):
            if self._stop.wait(self.pause):
                return
            try:
                self.sock.send(self.data[index : index + 1])
            except OSError:
                return
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Read until the server closes; return the bytes and when the close came.

    Fails the test when the connection is still open after ``limit`` seconds.
    """
    sock.settimeout(limit)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pytest.fail(f"still connected after {limit} s; received {received[-300:]!r}")
    except ConnectionResetError:
        pass
    return received, time.monotonic()


def cut_after_trickle(running: Any, raw: Raw, data: bytes, pause: float) -> float:
    """Trickle ``data`` after the greeting; return the seconds until the 421 and close."""
    client = raw(running.port)  # reads the greeting
    start = time.monotonic()
    trickle = Trickle(client.sock, data, pause)
    try:
        received, closed_at = read_until_closed(client.sock, DEADLINE + 5)
    finally:
        trickle.stop()
    assert received == TIMEOUT_REPLY
    assert trickle.sent > 0
    return closed_at - start


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_an_endless_command_line_is_cut_at_the_idle_timeout(server: Any, raw: Raw) -> None:
    # One byte a millisecond, never a line end: no command ever runs, so
    # nothing restarts the idle count.
    running = server(timeout=TIMEOUT)
    elapsed = cut_after_trickle(running, raw, b"EHLO " + b"x" * 100_000, 0.001)
    assert TIMEOUT * 0.8 <= elapsed <= DEADLINE


def test_one_byte_a_second_is_cut_at_the_idle_timeout(server: Any, raw: Raw) -> None:
    running = server(timeout=TIMEOUT)
    elapsed = cut_after_trickle(running, raw, b"EHLO client.example.test\r\n", 1.0)
    assert TIMEOUT * 0.8 <= elapsed <= DEADLINE


def test_lines_refused_before_they_run_do_not_restart_the_idle_count(server: Any, raw: Raw) -> None:
    running = server(timeout=TIMEOUT)
    client = raw(running.port)
    start = time.monotonic()
    replies = b""
    client.sock.settimeout(0.05)
    while time.monotonic() - start < DEADLINE + 5:
        try:
            client.send(b"NOOP " + b"y" * 600 + b"\r\n")
            replies += client.sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if replies.endswith(TIMEOUT_REPLY):
            break
    elapsed = time.monotonic() - start
    assert replies.endswith(TIMEOUT_REPLY), replies[-300:]
    assert replies.startswith(b"500 Command line too long\r\n")
    assert TIMEOUT * 0.8 <= elapsed <= DEADLINE


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> float:
    """Wait until ``condition()`` holds; return when it did."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic()


def blocked_client(port: int) -> socket.socket:
    """A connected client with a tiny receive buffer, past the greeting."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((HOST, port))
    assert sock.recv(1024).startswith(b"220 ")
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> None:
    # The send fails once the server cuts the connection: what the test wants.
    with contextlib.suppress(OSError):
        sock.sendall(data)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_a_client_that_never_reads_is_cut_and_aborted(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtpkit.smtp")
    running = server(timeout=TIMEOUT)
    sock = blocked_client(running.port)
    count = 200_000
    sender = threading.Thread(target=send_quietly, args=(sock, b"EHLO client.test\r\n" * count))
    sender.start()
    try:
        protocol = running.protocols[0]
        blocked_at = wait_for(lambda: protocol._write_paused, "the server to stop writing", 20)
        # Other clients are served while the reader-less one waits for its cut.
        with contextlib.closing(RawClient(HOST, running.port)) as other:
            assert other.line().startswith("220 ")
            assert other.command("NOOP") == "250 OK"
        cut_at = wait_for(lambda: protocol.transport is None, "the server to drop it", DEADLINE)
        assert cut_at - blocked_at <= DEADLINE
        sender.join(10)
        assert not sender.is_alive(), "the client's send never failed"
        # The client finally reads: what was sent before the cut, then the end.
        received, _ = read_until_closed(sock, 10)
        assert received.count(b"250 HELP\r\n") < count
        with contextlib.closing(RawClient(HOST, running.port)) as after:
            assert after.line().startswith("220 ")
            assert after.command("NOOP") == "250 OK"
    finally:
        sock.close()
        sender.join(10)
    messages = [r.getMessage() for r in caplog.records if r.name == "smtpkit.smtp"]
    assert any("does not read" in message for message in messages), messages


class DeepBuffer(SMTP):
    """Queues up to 4 MiB of replies before it stops handling commands.

    With a small kernel send buffer, the replies of a few thousand commands
    are still waiting in the transport when ``QUIT`` closes the connection.
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        transport.set_write_buffer_limits(high=4 * 1024 * 1024)
        super().connection_made(transport)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_a_closed_connection_whose_replies_never_leave_is_aborted(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtpkit.smtp")
    running = server(cls=DeepBuffer, timeout=TIMEOUT)
    sock = blocked_client(running.port)
    try:
        sock.sendall(b"EHLO client.test\r\n" * 3000 + b"QUIT\r\n")
        protocol = running.protocols[0]
        closed_at = wait_for(lambda: protocol._closing, "the server to close", 20)
        assert protocol.transport is not None, "every reply left: nothing to test"
        assert protocol.transport.get_write_buffer_size() > 0
        cut_at = wait_for(lambda: protocol.transport is None, "the server to drop it", DEADLINE)
        assert cut_at - closed_at <= DEADLINE
        received, _ = read_until_closed(sock, 10)
        assert not received.endswith(b"221 Bye\r\n")
    finally:
        sock.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "smtpkit.smtp"]
    assert any("does not read its last replies" in message for message in messages), messages
