"""Fixtures and helpers for the fault and load suite: ``smtpkit run`` as a subprocess.

``run_server(*args, maildir=None)``
    Starts ``python -m smtpkit run --port 0 --maildir DIR ARGS`` (see
    :class:`cli.helpers.Command`) in the test's temporary folder and waits until it
    listens; every server still running at the end of the test is stopped.

Messages carry a unique ``Message-ID``; :func:`stored_by_id` reads a Maildir back
into ``{message id: [stored bodies]}`` so a test can check that every acknowledged
message is on disk exactly once and byte for byte as it was sent.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli.helpers import HOST, READY, Command

__all__ = [
    "HOST",
    "READY",
    "Outgoing",
    "Server",
    "make_message",
    "rss_kib",
    "stored_by_id",
]

_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>$", re.MULTILINE)
#: The headers Mailbox puts before the message as received.
_ENVELOPE_HEADERS = (b"X-Peer: ", b"X-MailFrom: ", b"X-RcptTo: ")


@dataclass
class Server:
    """A running ``smtpkit run``: its command, port and Maildir."""

    command: Command
    port: int
    maildir: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.command.pid


Start = Callable[..., Server]


@pytest.fixture
def run_server(tmp_path: Path) -> Iterator[Start]:
    """Start ``smtpkit run`` servers on a free port; stop them at the end of the test."""
    running: list[Command] = []

    def start(*args: str, maildir: Path | None = None) -> Server:
        folder = maildir or tmp_path / "mail"
        command = Command(["run", "--port", "0", "--maildir", str(folder), *args], tmp_path)
        running.append(command)
        return Server(command, command.port(), folder)

    yield start
    for command in running:
        command.stop()


@dataclass(frozen=True)
class Outgoing:
    """A message to send: its id and its bytes (CRLF line endings, not dot-stuffed)."""

    message_id: str
    data: bytes


def make_message(message_id: str, size: int = 600) -> Outgoing:
    """A message of about ``size`` bytes whose body varies with its id.

    The body has lines starting with a dot (dot-stuffing must be undone) and
    non-ASCII bytes (8BITMIME), so a byte-for-byte comparison means something.
    """
    seed = sum(message_id.encode())
    line = f".line {seed:06d} of {message_id}: Grüße \t tabs and dots ...".encode()
    lines = [line[index % 7 :] for index in range(max(size // len(line), 1))]
    head = (
        f"From: sender@example.com\r\nTo: rcpt@example.com\r\n"
        f"Message-ID: <{message_id}>\r\nSubject: {message_id}\r\n\r\n"
    ).encode()
    return Outgoing(message_id, head + b"\r\n".join(lines) + b"\r\n")


def stored_by_id(maildir: Path) -> dict[str, list[bytes]]:
    """Each message in ``maildir/new`` by Message-ID, as sent (CRLF), envelope headers removed."""
    found: dict[str, list[bytes]] = {}
    new = maildir / "new"
    for path in new.iterdir() if new.exists() else ():
        stored = path.read_bytes()
        # The Received field (folded) comes first, then the envelope headers.
        assert stored.startswith(b"Received: from "), f"{path.name}: no Received field"
        stored = re.sub(rb"\AReceived: [^\n]*\n(?:[ \t][^\n]*\n)*", b"", stored)
        for prefix in _ENVELOPE_HEADERS:
            assert stored.startswith(prefix), f"{path.name}: no {prefix!r} header"
            stored = stored.split(b"\n", 1)[1]
        match = _MESSAGE_ID.search(stored)
        key = match.group(1).decode() if match else f"(no Message-ID: {path.name})"
        found.setdefault(key, []).append(stored.replace(b"\n", b"\r\n"))
    return found


def tmp_files(maildir: Path) -> list[str]:
    """The names in ``maildir/tmp`` (partial messages)."""
    tmp = maildir / "tmp"
    return sorted(path.name for path in tmp.iterdir()) if tmp.exists() else []


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (``VmRSS`` in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def refused(port: int) -> bool:
    """Whether a connection to ``port`` on loopback is refused."""
    try:
        socket.create_connection((HOST, port), timeout=READY).close()
    except ConnectionRefusedError:
        return True
    return False
