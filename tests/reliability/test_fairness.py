"""One client that pipelines without end must not stall the others.

``smtpkit run`` serves a handler whose ``NOOP n`` replies ``250 2.0.0 n``. Flooding
clients each pipeline a long burst of numbered NOOPs and read their replies,
while a probe client makes NOOP round trips one at a time. The probe's worst
round trip must stay short, and every flooder must get every reply, in order.
"""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import HOST, Command

ECHO = textwrap.dedent(
    """
    class Echo:
        async def handle_NOOP(self, server, session, envelope, arg):
            return f"250 2.0.0 {arg}"


    handler = Echo()
    """
)

#: The worst probe round trip allowed, in seconds, with a few flooders and with
#: many: generous for a loaded 2-core machine, where the flooders' own client
#: threads compete for the CPU. Handling every buffered line in one step held
#: the probe for 1.4 s and 3.9 s.
WORST_WITH_A_FEW = 0.5
WORST_WITH_MANY = 1.0


@pytest.fixture
def echo_port(tmp_path: Path) -> Iterator[int]:
    """The port of a running ``smtpkit run echo.py:handler``."""
    (tmp_path / "echo.py").write_text(ECHO)
    command = Command(
        ["run", "echo.py:handler", "--port", "0"],
        tmp_path,
        {"SMTPKIT_LIMITS__MAX_CONNECTIONS_PER_IP": "0"},
    )
    try:
        yield command.port()
    finally:
        command.stop()


class Flooder:
    """Pipelines ``count`` numbered NOOPs in one burst and reads every reply."""

    def __init__(self, port: int, count: int) -> None:
        self.count = count
        self.sock = socket.create_connection((HOST, port), timeout=60)
        self.expected = b"".join(b"250 2.0.0 %d\r\n" % n for n in range(count))
        self.received = b""
        self._burst = b"".join(b"NOOP %d\r\n" % n for n in range(count))
        greeting = self.sock.recv(1024)
        assert greeting.startswith(b"220 "), greeting
        self._threads = [
            threading.Thread(target=self.sock.sendall, args=(self._burst,), daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        chunks = []
        left = len(self.expected)
        try:
            while left > 0:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            self.received = b"".join(chunks)

    @property
    def done(self) -> bool:
        return not self._threads[1].is_alive()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self.sock.close()


def probe_while(probe: socket.socket, flooders: list[Flooder]) -> list[float]:
    """NOOP round trips on ``probe`` until every flooder is done; their times."""
    times = []
    deadline = time.monotonic() + 120
    number = 0
    while not all(f.done for f in flooders) and time.monotonic() < deadline:
        number += 1
        start = time.perf_counter()
        probe.sendall(b"NOOP probe%d\r\n" % number)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = probe.recv(1024)
            assert chunk, "the server closed the probe connection"
            reply += chunk
        times.append(time.perf_counter() - start)
        assert reply == b"250 2.0.0 probe%d\r\n" % number
        time.sleep(0.002)
    return times


@pytest.mark.parametrize(
    ("clients", "count", "bound"), [(4, 100_000, WORST_WITH_A_FEW), (48, 10_000, WORST_WITH_MANY)]
)
def test_pipelining_floods_do_not_stall_a_probe_client(
    echo_port: int, clients: int, count: int, bound: float
) -> None:
    probe = socket.create_connection((HOST, echo_port), timeout=30)
    assert probe.recv(1024).startswith(b"220 ")
    flooders = [Flooder(echo_port, count) for _ in range(clients)]
    for flooder in flooders:
        flooder.start()
    try:
        times = probe_while(probe, flooders)
    finally:
        probe.close()
        for flooder in flooders:
            flooder.join(60)
    times.sort()
    assert times, "the floods ended before the probe could measure"
    worst, p99 = times[-1], times[int(len(times) * 0.99)]
    assert worst < bound, f"worst {worst:.3f} s, p99 {p99:.3f} s of {len(times)} round trips"
    assert len(times) >= 5, "the floods ended before the probe could measure"
    for flooder in flooders:
        assert flooder.received == flooder.expected
