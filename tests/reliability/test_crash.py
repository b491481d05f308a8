"""Faults mid-transfer: clients that vanish, a server killed or stopped mid-DATA.

What must hold (docs/reliability.md): a message whose 250 the client got is in the
Maildir's ``new/``, whole; nothing partial ever reaches ``new/``; a client that
disconnects mid-DATA leaves nothing behind; a graceful stop lets transfers in flight
finish and refuses new connections.
"""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import struct
import threading
import time
from pathlib import Path

from cli.helpers import EXIT

from .conftest import (
    HOST,
    READY,
    Outgoing,
    Server,
    Start,
    make_message,
    refused,
    stored_by_id,
    tmp_files,
)

#: A partial body this big has gone to a file in tmp/ (Mailbox writes every 256 KiB).
LARGE = 300 * 1024


class Transfer:
    """A raw-socket client stopped in the middle of DATA, from ``source``."""

    def __init__(self, port: int, message: Outgoing, cut: int, source: str = HOST) -> None:
        self.message = message
        self.cut = cut
        self.wire = re.sub(rb"(?m)^\.", b"..", message.data)  # dot-stuffed, as on the wire
        self.sock = socket.create_connection(
            (HOST, port), timeout=READY, source_address=(source, 0)
        )
        self._replies = self.sock.makefile("rb")
        self._expect(b"220")
        for command, code in (
            (b"EHLO client.example", b"250"),
            (b"MAIL FROM:<sender@example.com>", b"250"),
            (b"RCPT TO:<rcpt@example.com>", b"250"),
            (b"DATA", b"354"),
        ):
            self.sock.sendall(command + b"\r\n")
            self._expect(code)
        self.sock.sendall(self.wire[:cut])

    def _expect(self, code: bytes) -> bytes:
        while True:
            line = self._replies.readline()
            assert line.startswith(code), f"expected {code!r}, got {line!r}"
            if line[3:4] != b"-":
                return line

    def finish(self) -> bytes:
        """Send the rest of the message and the end of data; the reply line."""
        self.sock.sendall(self.wire[self.cut :] + b".\r\n")
        return self._expect(b"250")

    def reset(self) -> None:
        """Disconnect with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        """Disconnect with a FIN."""
        self._replies.close()
        self.sock.close()


class Senders:
    """Threads sending whole messages with smtplib, recording those that got a 250."""

    def __init__(self, port: int, prefix: str, sessions: int, per_session: int) -> None:
        self.port = port
        self.accepted: list[str] = []
        self.failures: list[BaseException] = []
        self.sent: dict[str, bytes] = {}
        self._threads = [
            threading.Thread(
                target=self._session,
                args=([make_message(f"{prefix}-{s}-{n}@test") for n in range(per_session)],),
                daemon=True,
            )
            for s in range(sessions)
        ]
        for thread in self._threads:
            thread.start()

    def _session(self, messages: list[Outgoing]) -> None:
        try:
            with smtplib.SMTP(HOST, self.port, timeout=READY) as client:
                for message in messages:
                    self.sent[message.message_id] = message.data
                    client.sendmail("sender@example.com", ["rcpt@example.com"], message.data)
                    self.accepted.append(message.message_id)
        except (OSError, smtplib.SMTPException) as exc:
            self.failures.append(exc)

    def wait_for(self, count: int) -> None:
        """Wait until ``count`` messages were accepted."""
        wait_until(lambda: len(self.accepted) >= count, f"{count} messages accepted")

    def join(self) -> None:
        for thread in self._threads:
            thread.join(READY)
            assert not thread.is_alive(), "a sender is stuck"


def wait_until(condition: object, what: str, timeout: float = READY) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.05)


def open_transfers(server: Server, count: int, prefix: str) -> list[Transfer]:
    """``count`` transfers stopped mid-DATA, every other one past the first write to tmp/."""
    transfers = []
    for number in range(count):
        large = number % 2 == 0
        message = make_message(f"{prefix}-{number}@test", LARGE * 2 if large else 2000)
        cut = LARGE if large else 1000
        source = f"127.0.0.{10 + number % 4}"  # under the 50 connections per address
        transfers.append(Transfer(server.port, message, cut, source))
    large_count = (count + 1) // 2
    wait_until(lambda: len(tmp_files(server.maildir)) >= large_count, "partial files in tmp/")
    return transfers


def assert_intact(stored: dict[str, list[bytes]], sent: dict[str, bytes], ids: list[str]) -> None:
    """Each of ``ids`` is stored once, byte for byte as sent."""
    missing = [message_id for message_id in ids if message_id not in stored]
    assert missing == []
    assert [i for i in ids if stored[i] != [sent[i]]] == []


def test_clients_vanishing_mid_data_leave_nothing(run_server: Start) -> None:
    server = run_server()
    transfers = open_transfers(server, 40, "vanished")
    senders = Senders(server.port, "normal", sessions=8, per_session=25)
    senders.wait_for(40)
    for number, transfer in enumerate(transfers):
        transfer.reset() if number % 4 < 2 else transfer.close()  # RST and FIN, large and small
    senders.join()

    assert senders.failures == []
    assert len(senders.accepted) == 200
    wait_until(lambda: tmp_files(server.maildir) == [], "tmp/ emptied")
    stored = stored_by_id(server.maildir)
    assert sorted(stored) == sorted(senders.accepted)
    assert_intact(stored, senders.sent, senders.accepted)


def test_sigkill_mid_data_loses_nothing_acknowledged(run_server: Start, tmp_path: Path) -> None:
    server = run_server()
    transfers = open_transfers(server, 10, "killed")
    senders = Senders(server.port, "acked", sessions=6, per_session=200)
    senders.wait_for(100)
    server.command.send_signal(signal.SIGKILL)
    assert server.command.wait() == -signal.SIGKILL
    senders.join()
    accepted = senders.accepted  # each of them got its 250 before the kill
    for transfer in transfers:
        transfer.close()

    again = run_server(maildir=server.maildir)
    stored = stored_by_id(again.maildir)
    assert_intact(stored, senders.sent, accepted)
    # Whatever else is in new/ is whole: a message stored just before the kill, its 250
    # lost. The cut-off transfers are not there; their partial files stay in tmp/.
    assert [i for i in stored if i not in senders.sent] == []
    assert_intact(stored, senders.sent, list(stored))
    assert len(tmp_files(again.maildir)) >= len(transfers) // 2
    later = make_message("after-restart@test")
    with smtplib.SMTP(HOST, again.port, timeout=READY) as client:
        client.sendmail("sender@example.com", ["rcpt@example.com"], later.data)
    assert stored_by_id(again.maildir)["after-restart@test"] == [later.data]


def test_sigterm_lets_transfers_finish_and_refuses_new_connections(run_server: Start) -> None:
    server = run_server()
    transfers = open_transfers(server, 10, "graceful")
    mark = server.command.count()
    server.command.send_signal(signal.SIGTERM)
    server.command.wait_for("SIGTERM received", start=mark)
    wait_until(lambda: refused(server.port), "new connections refused")

    replies = [transfer.finish() for transfer in transfers]
    assert all(reply.startswith(b"250 ") for reply in replies), replies
    for transfer in transfers:
        transfer.close()
    assert server.command.wait(EXIT) == 0
    stored = stored_by_id(server.maildir)
    sent = {transfer.message.message_id: transfer.message.data for transfer in transfers}
    assert_intact(stored, sent, list(sent))
    assert tmp_files(server.maildir) == []
