"""The benchmark's own servers and load client, run as the benchmark runs them.

The ceiling server and the App server are started as processes on 127.0.0.1 and spoken
to with smtplib and raw sockets; the pipelining client is run as a process against them
and against smtpkit's benchmark server, and must report every message it was asked to send.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
REPO = BENCH.parent


def _start(script: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "servers" / script), "--port=0", *args],
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("READY "):
        proc.kill()
        pytest.fail(f"{script}: expected 'READY <port>', got {line!r}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


@pytest.fixture(params=["asyncio", "uvloop"])
def ceiling(request: pytest.FixtureRequest) -> Iterator[int]:
    """The ceiling server's port, on each loop."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    proc, port = _start("ceiling_server.py", f"--loop={request.param}")
    yield port
    _stop(proc)


def test_ceiling_answers_a_whole_transaction(ceiling: int) -> None:
    with smtplib.SMTP("127.0.0.1", ceiling, timeout=30) as client:
        code, text = client.ehlo("client.example")
        assert code == 250 and b"PIPELINING" in text
        assert client.mail("a@example.com") == (250, b"OK")
        assert client.rcpt("b@example.com") == (250, b"OK")
        assert client.data(b"Subject: x\r\n\r\nbody\r\n.dot-stuffed\r\n")[0] == 250
        assert client.noop()[0] == 250


class Replies:
    """The final reply lines a server has sent on ``sock`` so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def until(self, count: int) -> list[bytes]:
        """Read until ``count`` final reply lines have arrived in all; return them all."""
        while True:
            lines = [line for line in self.data.split(b"\r\n")[:-1] if line[3:4] != b"-"]
            if len(lines) >= count:
                return lines
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed after {lines!r}"
            self.data += chunk


def test_ceiling_finds_the_end_of_data_split_across_reads(ceiling: int) -> None:
    with socket.create_connection(("127.0.0.1", ceiling), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = Replies(sock)
        assert replies.until(1)[0].startswith(b"220")
        sock.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        assert [line[:3] for line in replies.until(5)[1:]] == [b"250", b"250", b"250", b"354"]
        # The end-of-data marker arrives in three pieces.
        for part in (b"x\r\n", b"y\r", b"\n.", b"\r\n", b"QUIT\r\n"):
            sock.sendall(part)
        assert [line[:3] for line in replies.until(7)[5:]] == [b"250", b"221"]


def test_ceiling_takes_an_empty_message(ceiling: int) -> None:
    with socket.create_connection(("127.0.0.1", ceiling), timeout=30) as sock:
        sock.sendall(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nQUIT\r\n")
        codes = [line[:3] for line in Replies(sock).until(7)]
        assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]


def _pipelined(port: int, messages: int, *extra: str) -> dict[str, object]:
    argv = [sys.executable, str(BENCH / "clients" / "pipelined.py"), f"--port={port}"]
    argv += [f"--messages={messages}", "--connections=4", "--max-seconds=60", *extra]
    result = subprocess.run(argv, input=b"go\n", capture_output=True, timeout=90, check=False)
    lines = result.stdout.decode().splitlines()
    assert json.loads(lines[0]) == {"ready": True}, result.stderr.decode()[-2000:]
    report: dict[str, object] = json.loads(lines[-1])
    assert result.returncode == (1 if "error" in report else 0)
    return report


def test_pipelined_client_sends_every_message_to_the_ceiling(ceiling: int) -> None:
    report = _pipelined(ceiling, 203)
    assert report["done"] == 203
    assert isinstance(report["ended"], float) and isinstance(report["started"], float)
    assert report["ended"] >= report["started"]


def test_pipelined_client_sends_every_message_to_smtpkit() -> None:
    proc, port = _start("smtpkit_server.py", "--loop=asyncio")
    try:
        assert _pipelined(port, 150)["done"] == 150
    finally:
        _stop(proc)


def test_pipelined_client_reports_a_refusal() -> None:
    # Messages over the size limit get a 552 after their data: the client names the step.
    proc, port = _start("smtpkit_server.py", "--loop=asyncio", "--data-size-limit=200")
    try:
        report = _pipelined(port, 10)
        assert "end of data: expected 250" in str(report["error"])
        assert "552" in str(report["error"])
    finally:
        _stop(proc)


def test_app_server_routes_and_screens_recipients() -> None:
    proc, port = _start("app_server.py", "--loop=asyncio")
    try:
        assert _pipelined(port, 20)["done"] == 20
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("x")
            client.mail("a@bench.local")
            assert client.rcpt("blocked@bench.local")[0] == 550
            assert client.rcpt("someone@elsewhere.example")[0] == 550
            assert client.rcpt("someone@bench.local")[0] == 250
    finally:
        _stop(proc)
