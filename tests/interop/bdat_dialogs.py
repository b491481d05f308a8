"""Scripted CHUNKING (BDAT, RFC 3030) dialogs on a raw socket, and their reference replies.

Each :class:`Dialog` is a list of :class:`Send` steps: bytes written to the
server (in one write, or cut into many small writes) and the number of
replies to read after them. :func:`run_dialog` plays one against any server
address and returns the reply codes in order: the replies to the steps, then
whatever the server still answers to a final ``QUIT``, so a server that
loses step (reads chunk octets as commands, or waits for octets that never
come) shows it in the codes.

``REFERENCE`` holds the codes Postfix's smtpd (3.7) answers, recorded from a
throw-away instance (``tests/interop/postfix.py``) with
``message_size_limit = SIZE_LIMIT``. The comment above each dialog says what
RFC 3030 asks; the codes are Postfix's, not a reading of the RFC. Codes that
are not replies: ``NO_REPLY`` (nothing came within the read timeout) and
``CLOSED`` (the server closed the connection).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

#: The ``message_size_limit`` the reference instance runs with. Postfix counts
#: the queue file, so its own Received header is part of the size.
SIZE_LIMIT = 4000
NO_REPLY = -1
CLOSED = 0

SENDER = b"MAIL FROM:<sender@client.test>\r\n"
RCPT = b"RCPT TO:<rcpt@dest.test>\r\n"
BODY = b"From: sender@client.test\r\nTo: rcpt@dest.test\r\nSubject: chunks\r\n\r\nHello.\r\n"


@dataclass(frozen=True)
class Send:
    """Write ``data``, in ``pieces`` writes of about equal size, then read ``replies`` replies."""

    data: bytes
    replies: int
    pieces: int = 1


@dataclass(frozen=True)
class Dialog:
    """A named BDAT dialog; ``rfc`` says what RFC 3030 (or the SIZE/BODY rules) ask."""

    name: str
    rfc: str
    steps: tuple[Send, ...]


def bdat(data: bytes, *, last: bool = False) -> bytes:
    """A BDAT command followed by its chunk."""
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def _envelope() -> Send:
    return Send(SENDER + RCPT, 2)


DIALOGS = (
    Dialog(
        "pipelined",
        "BDAT may be pipelined (RFC 3030 §4.2); the server answers each BDAT once, in order.",
        (Send(SENDER + RCPT + bdat(BODY[:30]) + bdat(BODY[30:], last=True), 4),),
    ),
    Dialog(
        "one_chunk",
        "A whole message as one BDAT ... LAST chunk; the same session then takes another.",
        (_envelope(), Send(bdat(BODY, last=True), 1), _envelope(), Send(bdat(BODY, last=True), 1)),
    ),
    Dialog(
        "zero_last",
        "BDAT 0 LAST ends the message: a zero-size last chunk is valid (RFC 3030 §2).",
        (_envelope(), Send(bdat(BODY), 1), Send(b"BDAT 0 LAST\r\n", 1)),
    ),
    Dialog(
        "only_zero_last",
        "BDAT 0 LAST as the whole (empty) message; the server may accept or refuse the content.",
        (_envelope(), Send(b"BDAT 0 LAST\r\n", 1)),
    ),
    Dialog(
        "no_dot_stuffing",
        "A chunk is octets, not lines: CRLF.CRLF inside it ends nothing (RFC 3030 §2).",
        (_envelope(), Send(bdat(b"Subject: dots\r\n\r\n.\r\n..\r\nNOOP\r\n", last=True), 1)),
    ),
    Dialog(
        "bdat_before_mail",
        "BDAT with no transaction is refused, but its octets are still the chunk: the next"
        " command (NOOP) is answered on its own.",
        (Send(bdat(b"NOOP\r\n"), 1), Send(b"NOOP\r\n", 1)),
    ),
    Dialog(
        "bdat_without_rcpt",
        "BDAT after MAIL but no accepted RCPT is refused (RFC 5321 §3.3 sequence); the octets"
        " are consumed.",
        (Send(SENDER, 1), Send(bdat(b"NOOP\r\n", last=True), 1), Send(b"NOOP\r\n", 1)),
    ),
    Dialog(
        "refused_rcpt_pipelined",
        "MAIL, a refused RCPT and BDAT in one write: the BDAT fails, the session stays in step.",
        (Send(SENDER + b"RCPT TO:<no-angle-brackets\r\n" + bdat(BODY, last=True), 3),),
    ),
    Dialog(
        "data_after_bdat",
        "DATA after BDAT in one transaction MUST get 503 (RFC 3030 §2); RSET clears it.",
        (_envelope(), Send(bdat(BODY), 1), Send(b"DATA\r\n", 1), Send(b"RSET\r\n", 1)),
    ),
    Dialog(
        "bdat_after_last",
        "A BDAT after BDAT LAST is outside a transaction and MUST get 503 (RFC 3030 §2).",
        (_envelope(), Send(bdat(BODY, last=True), 1), Send(bdat(b"late\r\n", last=True), 1)),
    ),
    Dialog(
        "oversize_chunk",
        "A chunk past the size limit gets 552 (RFC 1870); its octets are read, later BDATs of"
        " the failed transaction are refused, RSET starts again.",
        (
            _envelope(),
            Send(bdat(b"x" * (SIZE_LIMIT + 1000)), 1),
            Send(bdat(BODY, last=True), 1),
            Send(b"RSET\r\n", 1),
            _envelope(),
            Send(bdat(BODY, last=True), 1),
        ),
    ),
    Dialog(
        "oversize_across_chunks",
        "The size limit counts all chunks: two chunks each under it, together over it.",
        (
            _envelope(),
            Send(bdat(b"x" * (SIZE_LIMIT * 2 // 3)), 1),
            Send(bdat(b"y" * (SIZE_LIMIT * 2 // 3), last=True), 1),
            Send(b"NOOP\r\n", 1),
        ),
    ),
    Dialog(
        "split_writes",
        "A command and its chunk cut into many TCP writes are the same as one write.",
        (_envelope(), Send(bdat(BODY, last=True), 1, pieces=len(BODY) // 3)),
    ),
    Dialog(
        "bad_size",
        "A BDAT whose size is not a number is a syntax error; the server cannot tell how many"
        " octets follow, so it may close the connection.",
        (_envelope(), Send(b"BDAT ten LAST\r\n", 1), Send(b"NOOP\r\n", 1)),
    ),
    Dialog(
        "binarymime_with_data",
        "BODY=BINARYMIME content MUST come by BDAT (RFC 3030 §3); a server that does not"
        " offer BINARYMIME refuses the parameter instead.",
        (
            Send(b"MAIL FROM:<sender@client.test> BODY=BINARYMIME\r\n", 1),
            Send(RCPT, 1),
            Send(b"DATA\r\n", 1),
        ),
    ),
)

DIALOG_BY_NAME = {dialog.name: dialog for dialog in DIALOGS}

#: Postfix 3.7's reply codes for each dialog (after EHLO), ending with the QUIT's.
#: Where Postfix's choice is one of several the RFCs allow, the comment says so.
REFERENCE: dict[str, list[int]] = {
    "pipelined": [250, 250, 250, 250, 221],
    "one_chunk": [250, 250, 250, 250, 250, 250, 221],
    "zero_last": [250, 250, 250, 250, 221],
    # Postfix accepts an empty message.
    "only_zero_last": [250, 250, 250, 221],
    "no_dot_stuffing": [250, 250, 250, 221],
    # 503 5.5.1, and the chunk's six octets ("NOOP" CRLF) are read, not run.
    "bdat_before_mail": [503, 250, 221],
    # 554 5.5.1 "no valid recipients", as for DATA.
    "bdat_without_rcpt": [250, 554, 250, 221],
    "refused_rcpt_pipelined": [250, 501, 554, 221],
    # 503 5.5.1 "DATA after BDAT"; RSET still works.
    "data_after_bdat": [250, 250, 250, 503, 250, 221],
    "bdat_after_last": [250, 250, 250, 503, 221],
    # 552 5.3.4 for the chunk, then 551 5.0.0 "Discarded ... after earlier error" for the
    # next chunk of the failed transaction (RFC 3030 names no code for it).
    "oversize_chunk": [250, 250, 552, 551, 250, 250, 250, 250, 221],
    "oversize_across_chunks": [250, 250, 250, 552, 250, 221],
    "split_writes": [250, 250, 250, 221],
    # 521 5.5.4, then Postfix closes: with no size it cannot tell where the chunk ends.
    "bad_size": [250, 250, 521, CLOSED],
    # 555 5.5.4 "Unsupported option" (RFC 5321 §4.1.1.11); the RCPT and DATA get 503.
    "binarymime_with_data": [555, 503, 503, 221],
}


class _Reader:
    """Reads SMTP replies from a socket and keeps their codes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def reply(self) -> tuple[int, list[bytes]]:
        """One reply: its code and lines; ``NO_REPLY`` or ``CLOSED`` when none came."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    return NO_REPLY, lines
                except ConnectionResetError:
                    return CLOSED, lines
                if not chunk:
                    return CLOSED, lines
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), lines


def _send(sock: socket.socket, step: Send) -> None:
    if step.pieces <= 1:
        sock.sendall(step.data)
        return
    size = max(1, len(step.data) // step.pieces)
    for start in range(0, len(step.data), size):
        sock.sendall(step.data[start : start + size])
        # Without a pause the kernel may merge the writes into one segment again.
        time.sleep(0.001)


def run_dialog(host: str, port: int, dialog: Dialog, timeout: float = 5.0) -> list[int]:
    """Play ``dialog`` against the server at ``host:port``; return the reply codes.

    The greeting and the EHLO reply are read first and not returned. The codes
    of the steps' replies follow in order, then the codes of every reply to the
    closing ``QUIT``. It stops at the first ``NO_REPLY`` or ``CLOSED``.

    Raises:
        AssertionError: the server's greeting or EHLO reply was not 2xx.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        greeting, _ = reader.reply()
        sock.sendall(b"EHLO client.test\r\n")
        ehlo, _ = reader.reply()
        assert greeting == 220 and ehlo == 250, f"greeting {greeting}, EHLO {ehlo}"
        codes: list[int] = []
        for step in (*dialog.steps, Send(b"QUIT\r\n", 1)):
            _send(sock, step)
            for _ in range(step.replies):
                code, _ = reader.reply()
                codes.append(code)
                if code in (NO_REPLY, CLOSED):
                    return codes
        return codes + _rest(reader)


def _rest(reader: _Reader) -> list[int]:
    """The codes of any replies still coming after QUIT's, until the server closes."""
    reader.sock.settimeout(1.0)
    codes = []
    while (code := reader.reply()[0]) not in (NO_REPLY, CLOSED):
        codes.append(code)
    return codes


def ehlo_keywords(host: str, port: int, timeout: float = 5.0) -> set[str]:
    """The upper-cased EHLO keywords the server at ``host:port`` advertises."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = _Reader(sock)
        reader.reply()
        sock.sendall(b"EHLO client.test\r\n")
        _, lines = reader.reply()
        sock.sendall(b"QUIT\r\n")
    return {line[4:].split(b" ")[0].decode("ascii", "replace").upper() for line in lines[1:]}


def advertises_chunking(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether the server's EHLO reply lists CHUNKING."""
    return "CHUNKING" in ehlo_keywords(host, port, timeout)
