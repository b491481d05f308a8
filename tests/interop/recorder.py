"""A tiny SMTP server on a raw socket that records what a real client sends.

It is not smtpkit: it exists to see, byte for byte, what a peer program
(Exim, Postfix's smtp client, nginx's mail proxy) sends when a server offers
an extension smtpkit may not have yet (``CHUNKING``, ``XCLIENT``,
``XFORWARD``, ``DSN``). It accepts every command it knows, answers ``502``
to the rest, and keeps each session's command lines and message bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class RecordedSession:
    """What one client connection sent.

    Attributes:
        commands: every command line, without its CRLF, in order (a BDAT
            chunk's octets are not a command line and are not here).
        messages: the content of each completed message, DATA or BDAT.
        chunks: the size of every BDAT chunk, in order.
    """

    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)

    @property
    def verbs(self) -> list[str]:
        """The upper-cased first word of every command."""
        return [line.split(" ", 1)[0].upper() for line in self.commands]

    @property
    def used_bdat(self) -> bool:
        """Whether the client sent any BDAT command."""
        return "BDAT" in self.verbs


class _Connection:
    """One client connection: a buffered reader and the dialog."""

    def __init__(self, sock: socket.socket, keywords: tuple[str, ...], record: RecordedSession):
        self.sock = sock
        self.keywords = keywords
        self.record = record
        self.buffer = b""
        self.body = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("client closed the connection")
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def octets(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def ehlo(self) -> None:
        lines = ["recorder.test", *self.keywords]
        for index, keyword in enumerate(lines):
            self.send(("250 " if index == len(lines) - 1 else "250-") + keyword)

    def data(self) -> None:
        self.send("354 go ahead")
        body = bytearray()
        while (line := self.line()) != b".":
            body += (line[1:] if line.startswith(b".") else line) + b"\r\n"
        self.record.messages.append(bytes(body))
        self.send("250 2.0.0 recorded")

    def bdat(self, args: list[str]) -> None:
        size = int(args[0])
        self.record.chunks.append(size)
        self.body += self.octets(size)
        if len(args) > 1 and args[1].upper() == "LAST":
            self.record.messages.append(bytes(self.body))
            self.body = bytearray()
        self.send(f"250 2.0.0 {size} octets")

    def serve(self) -> None:
        self.send("220 recorder.test ESMTP")
        while True:
            line = self.line().decode("utf-8", "replace")
            self.record.commands.append(line)
            verb, *args = line.split()
            verb = verb.upper()
            if verb in ("EHLO", "LHLO"):
                self.ehlo()
            elif verb == "DATA":
                self.data()
            elif verb == "BDAT":
                self.bdat(args)
            elif verb == "XCLIENT":
                self.send("220 recorder.test ESMTP")
            elif verb == "QUIT":
                self.send("221 bye")
                return
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP", "XFORWARD"):
                self.send("250 OK")
            else:
                self.send("502 5.5.2 not recorded")


class RecorderServer:
    """A threaded recording SMTP server on 127.0.0.1, on a port the system picks.

    Args:
        keywords: the EHLO keywords it advertises, e.g. ``("CHUNKING",)``.
    """

    def __init__(self, keywords: tuple[str, ...] = ("PIPELINING", "8BITMIME")) -> None:
        self.keywords = keywords
        self.sessions: list[RecordedSession] = []
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RecorderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            record = RecordedSession()
            self.sessions.append(record)
            threading.Thread(target=self._serve, args=(sock, record), daemon=True).start()

    def _serve(self, sock: socket.socket, record: RecordedSession) -> None:
        sock.settimeout(20)
        failures = (ConnectionError, TimeoutError, ValueError, IndexError)
        with sock, contextlib.suppress(*failures):
            _Connection(sock, self.keywords, record).serve()

    def wait_message(self, limit: float = 20.0) -> RecordedSession:
        """The first session that completed a message, waiting up to ``limit`` seconds.

        Raises:
            TimeoutError: no message arrived in time (the error lists what did).
        """
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for record in list(self.sessions):
                if record.messages:
                    return record
            time.sleep(0.05)
        seen = [record.commands for record in self.sessions]
        raise TimeoutError(f"no message reached the recorder in {limit} s; sessions: {seen}")
