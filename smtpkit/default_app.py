"""The embedded default: what ``smtpkit run`` serves when no TARGET is given.

It accepts every message for every recipient (it is meant for development and
tests: point an application's SMTP settings at it and read what it sent), stores each
message durably in a Maildir with :class:`smtpkit.handlers.Mailbox` (written to
``tmp/``, fsync'ed, renamed into ``new/`` before the ``250``) and prints one line per
stored message on standard output (one line, shown here on two)::

    2026-01-31T09:30:12.042+00:00 from=<alice@example.com> to=<bob@example.com> size=9
    file=1769851812.M42315P4242Q1R5e1f2a3b.mail.example subject="Hi"

(the time as in the log, the envelope, the size as received, the file name
in the Maildir's ``new/`` and the Subject, decoded from RFC 2047 or UTF-8). The line is
queued only after the message is on disk, and written by a thread
(:mod:`smtpkit._output`): a standard output nobody reads never holds up mail; the lines
it cannot take are dropped and counted in the log. Behind a load balancer that speaks
the PROXY protocol, the line also shows the original client (``client=``).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import IO

from ._output import LineWriter, timestamp, writer_for
from .config import ConfigError
from .handlers import Mailbox, _MaildirDelivery
from .proxy_protocol import ProxyData
from .smtp import SMTP, Envelope, Session

__all__ = ["DefaultHandler", "MessageLine", "create_handler"]

log = logging.getLogger("smtpkit.default_app")

#: How much of the start of a message is kept to read its Subject from.
HEADER_LIMIT = 64 * 1024
# The session.state key of the message being received.
_STATE_KEY = "smtpkit.default_app.seen"


@dataclass
class _Seen:
    """What the handler noticed about one message as it streamed past."""

    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    file: str | None = None

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if (
            len(self.head) < HEADER_LIMIT
            and b"\n\n" not in self.head
            and b"\r\n\r\n" not in self.head
        ):
            self.head += chunk[: HEADER_LIMIT - len(self.head)]


@dataclass(frozen=True)
class MessageLine:
    """The facts printed for one stored message."""

    time: datetime.datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    size: int
    subject: str | None
    client: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        parts = [
            timestamp(self.time.timestamp()),
            f"from=<{_one_line(_null_path(self.mail_from))}>",
            "to=" + ",".join(f"<{_one_line(rcpt)}>" for rcpt in self.rcpt_tos),
            f"size={self.size}",
        ]
        if self.file is not None:
            parts.append(f"file={_one_line(self.file).replace(' ', '_')}")
        parts += [
            "subject="
            + (json.dumps(self.subject, ensure_ascii=False) if self.subject is not None else "-"),
        ]
        if self.client is not None:
            parts.append(f"client={self.client}")
        return " ".join(parts)


class DefaultHandler(Mailbox):
    """A :class:`~smtpkit.handlers.Mailbox` that prints a line per stored message.

    Args:
        mail_dir: the Maildir (created when missing).
        stream: where the lines go (default: standard output, looked up at each write).
    """

    def __init__(self, mail_dir: str | os.PathLike[str], stream: IO[str] | None = None) -> None:
        super().__init__(mail_dir)
        self._stream = stream

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy_data: ProxyData
    ) -> bool:
        """Believe the PROXY header; only ``proxy_protocol.trusted_networks`` may send one.

        Returns:
            True: the session goes on.
        """
        return True

    async def handle_DATA_CHUNK(
        self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        """Note the size and the headers, then store the chunk (see Mailbox)."""
        _seen_for(session, envelope).add(chunk)
        await super().handle_DATA_CHUNK(server, session, envelope, chunk)

    async def handle_DATA_ABORT(
        self, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        """Forget a cut-off transfer (see Mailbox)."""
        session.state.pop(_STATE_KEY, None)
        await super().handle_DATA_ABORT(server, session, envelope, reason)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message; once it is on disk, print its line.

        Returns:
            Mailbox's reply: ``250 OK``, or ``451`` when the message could not be stored.
        """
        reply = await super().handle_DATA(server, session, envelope)
        seen = _take_seen(session, envelope)
        if seen is None or seen.size == 0:
            # Nothing streamed: Mailbox stored envelope.content (and named the file).
            seen = _seen_in_content(envelope, seen)
        if reply.startswith("250"):
            self._print(describe(session, envelope, seen))
        return reply

    def _new_delivery(self, session: Session, envelope: Envelope) -> _MaildirDelivery:
        """Mailbox's delivery, with its file name noted for the line."""
        delivery = super()._new_delivery(session, envelope)
        _seen_for(session, envelope).file = delivery._name
        return delivery

    def _print(self, line: MessageLine) -> None:
        # Queued, never written on the loop. The message is stored already: a blocked,
        # closed or broken stdout must not delay or fail the 250 (the client would send
        # the message again).
        self._writer().write(str(line))

    def _writer(self) -> LineWriter:
        if self._stream is None:
            report = functools.partial(_lines_dropped, "standard output")
            return writer_for("stdout", on_error=_print_failed, report=report)
        stream = self._stream
        report = functools.partial(_lines_dropped, repr(stream))
        return writer_for(
            f"stream {id(stream)}", lambda: stream, on_error=_print_failed, report=report
        )


def _print_failed(error: Exception) -> None:
    log.warning("could not print the line of a stored message: %s", error)


def _lines_dropped(where: str, count: int) -> None:
    log.warning(
        "%d %s of stored messages dropped: %s was not being read",
        count,
        "line" if count == 1 else "lines",
        where,
    )


def _seen_for(session: Session, envelope: Envelope) -> _Seen:
    """The notes on the message of ``envelope``, kept in the session (one at a time)."""
    entry = session.state.get(_STATE_KEY)
    if entry is None or entry[0] is not envelope:
        entry = session.state[_STATE_KEY] = (envelope, _Seen())
    seen: _Seen = entry[1]
    return seen


def _take_seen(session: Session, envelope: Envelope) -> _Seen | None:
    entry = session.state.pop(_STATE_KEY, None)
    return entry[1] if entry is not None and entry[0] is envelope else None


def _seen_in_content(envelope: Envelope, seen: _Seen | None) -> _Seen:
    """For a message that did not stream (empty, or a non-streaming server)."""
    seen = seen or _Seen()
    content = envelope.original_content
    if content is None and isinstance(envelope.content, bytes):
        content = envelope.content
    seen.add(bytes(content or b""))
    return seen


def describe(session: Session, envelope: Envelope, seen: _Seen) -> MessageLine:
    """The line of one stored message."""
    return MessageLine(
        time=datetime.datetime.now(datetime.timezone.utc).astimezone(),
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        size=seen.size,
        subject=_subject(bytes(seen.head)),
        client=_proxied_client(session),
        file=seen.file,
    )


def _subject(head: bytes) -> str | None:
    """The Subject, unfolded and decoded: RFC 2047 words, raw UTF-8 (else U+FFFD)."""
    text = head.decode("utf-8", "replace")
    try:
        value = email.parser.HeaderParser(policy=email.policy.default).parsestr(text).get("Subject")
    except Exception:
        # The email package's header parser raises assorted errors on malformed
        # input; the line of a stored message must still be printed.
        value = email.parser.HeaderParser().parsestr(text).get("Subject")
    return None if value is None else str(value)


def _proxied_client(session: Session) -> str | None:
    data = session.proxy_data
    if data is None or data.src_addr is None:
        return None
    if data.src_port is None:
        return str(data.src_addr)
    host = str(data.src_addr)
    return f"[{host}]:{data.src_port}" if ":" in host else f"{host}:{data.src_port}"


def _null_path(address: str) -> str:
    """The null reverse-path ``<>`` (bounces) prints as ``from=<>``."""
    return "" if address == "<>" else address


def _one_line(text: str) -> str:
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text)


def create_handler(maildir: str | os.PathLike[str]) -> DefaultHandler:
    """The handler ``smtpkit run`` serves without a target.

    Args:
        maildir: the Maildir to store into (``ServerConfig.maildir``).

    Returns:
        A new handler.

    Raises:
        ConfigError: the Maildir cannot be created (its message names ``maildir``).
    """
    try:
        return DefaultHandler(maildir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"maildir = {os.fspath(maildir)!r}: cannot create the Maildir ({reason})"
        raise ConfigError(message, path="maildir") from exc
