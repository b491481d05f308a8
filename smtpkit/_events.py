"""What happens on a connection, told to whoever listens: the logs and the metrics.

The protocol calls a handful of points on a per-connection :class:`Record`:
connection made and lost, each command line, each reply line, the end of a
message, an AUTH result, a STARTTLS handshake, a PROXY header. A
:class:`Record` exists only when some :class:`Subscriber` wants the
connection (:func:`observe`); otherwise the connection holds None, and each
call point costs one attribute test.

The record turns those points into the events subscribers receive: a command
and the class of its first reply, a transaction accepted or refused at a
stage (``mail``, ``rcpt``, ``data``), a limit hit. Subscribers are plain
objects with the methods of :class:`Subscriber`; logging (:mod:`smtpkit._logs`)
and Prometheus metrics (:mod:`smtpkit.metrics`) are the two in smtpkit.

AUTH secrets never reach a subscriber: an ``AUTH`` line is cut to its
mechanism (``AUTH PLAIN ****``) and the lines of an AUTH exchange arrive as
``****``. Message bodies are not lines: they never reach a subscriber either.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Outcome",
    "Record",
    "Subscriber",
    "limit_hit",
    "observe",
    "subscribe",
    "unsubscribe",
]

#: What an AUTH payload or password is written as.
HIDDEN = "****"
#: The verbs counted under their own name; any other is counted as ``other``.
VERBS = frozenset(
    [
        "HELO",
        "EHLO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "EXPN",
        "HELP",
        "STARTTLS",
        "AUTH",
        "XCLIENT",
        "XFORWARD",
        "ETRN",
    ]
)
_VERB_NAMES = {verb.encode("ascii"): verb for verb in VERBS}
#: The verbs whose argument the record reads (the addresses, the chunk size).
_WITH_ARGUMENT = frozenset({"MAIL", "RCPT", "BDAT"})
#: The stages a transaction is refused at, by the verb whose reply refused it.
_STAGES = {"MAIL": "mail", "RCPT": "rcpt", "DATA": "data", "BDAT": "data"}
#: Refusal texts -> the limit they report (checked only on 4xx/5xx replies).
_LIMITS = (
    (b"Too many connections from", "connections_rate"),
    (b"Too many connections", "connections"),
    (b"Too many messages from", "messages_rate"),
    (b"Too many recipients from", "recipients_rate"),
    (b"too many recipients", "recipients"),
    (b"sent too many times", "command_calls"),
    (b"Too many unrecognized commands", "unknown_commands"),
    (b"Too many failed authentication", "auth_failures"),
    (b"message size exceeds", "message_size"),
    (b"Too much mail data", "message_size"),
    (b"timeout exceeded", "timeout"),
    (b"data transfer too slow", "data_rate"),
    (b"Line too long", "line_length"),
    (b"line too long", "line_length"),
)

# Session ids: 8 base32 characters, 15 random bits for this process and a
# 25-bit counter; no system call and no uuid per connection.
_PREFIX = secrets.randbits(15) << 25
_COUNTER = itertools.count(1)


def new_session_id() -> str:
    """A short id for a new connection, unique in this process for 2**25 connections."""
    value = _PREFIX | (next(_COUNTER) & 0x1FFFFFF)
    return base64.b32encode(value.to_bytes(5, "big")).decode("ascii")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a transaction ended.

    Attributes:
        accepted: True when the message was accepted.
        stage: ``mail``, ``rcpt`` or ``data``: the command whose reply decided it.
        reply: the reply line (no CRLF).
        id: ``<session>.<n>``, the n-th transaction of the session (accepted only).
        mail_from: the envelope sender (None before MAIL was accepted).
        recipients: the accepted recipients.
        size: the message size in bytes (0 before DATA).
        duration: seconds from MAIL to the reply (0.0 before MAIL was accepted).
    """

    accepted: bool
    stage: str
    reply: str
    id: str = ""
    mail_from: str | None = None
    recipients: tuple[str, ...] = ()
    size: int = 0
    duration: float = 0.0


class Subscriber:
    """Told what happens on connections; every method does nothing by default."""

    def wanted(self) -> bool:
        """Whether to follow a new connection (asked once, when it is made)."""
        return True

    def transcribes(self) -> bool:
        """Whether :meth:`line` wants the transcript of a new connection (asked once)."""
        return False

    def connection_made(self, record: Record) -> None:
        """A client connected (``record.peer``, ``record.tls``)."""

    def proxied(self, record: Record) -> None:
        """A PROXY header named the client (``record.client``)."""

    def connection_lost(self, record: Record) -> None:
        """The connection ended (``record.reason``, ``record.messages``, ``record.duration``)."""

    def line(self, record: Record, direction: str, text: str) -> None:
        """A line of the transcript: ``direction`` is ``<`` (client) or ``>`` (server)."""

    def command(self, record: Record, verb: str, reply_class: str) -> None:
        """A command got its first reply, of class ``2xx``, ``3xx``, ``4xx`` or ``5xx``."""

    def transaction(self, record: Record, outcome: Outcome) -> None:
        """A transaction was accepted, or refused at a stage."""

    def auth(self, record: Record, mechanism: str, success: bool) -> None:
        """An AUTH exchange ended (``record.login`` is set on success)."""

    def tls(self, record: Record, error: str | None) -> None:
        """A STARTTLS handshake ended: ``error`` is None when it succeeded."""

    def limit(self, record: Record | None, name: str) -> None:
        """A limit refused something (``record`` is None for a refused connection)."""


_subscribers: tuple[Subscriber, ...] = ()


def subscribe(subscriber: Subscriber) -> None:
    """Tell ``subscriber`` about the connections made from now on (once, however often called)."""
    global _subscribers
    if subscriber not in _subscribers:
        _subscribers = (*_subscribers, subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    """Stop telling ``subscriber`` about new connections."""
    global _subscribers
    _subscribers = tuple(s for s in _subscribers if s is not subscriber)


def observe(peer: Any, tls: Any) -> Record | None:
    """The record of a new connection, or None when no subscriber wants it."""
    subscribers = _subscribers
    if not subscribers:
        return None
    if len(subscribers) == 1:  # the usual case: the logs alone, or the metrics
        if not subscribers[0].wanted():
            return None
        wanted: tuple[Subscriber, ...] = subscribers
    else:
        wanted = tuple(s for s in subscribers if s.wanted())
        if not wanted:
            return None
    record = Record(wanted, peer, tls)
    for subscriber in wanted:
        subscriber.connection_made(record)
    return record


def limit_hit(name: str) -> None:
    """Tell the subscribers a limit refused a connection before it had a record."""
    for subscriber in _subscribers:
        subscriber.limit(None, name)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer) if peer else "unix"


def _tls_text(info: Any) -> str | None:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384`` from a session's ``ssl`` dict, or None."""
    if not info:
        return None
    cipher = info.get("cipher")
    if cipher:
        return f"{cipher[1]} {cipher[0]}"
    return "yes"


def redact(line: bytes) -> str:
    """A client's command line as the transcript shows it: AUTH payloads hidden."""
    text = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
    verb, _, rest = text.partition(" ")
    if verb.upper() != "AUTH":
        return text
    mechanism, _, payload = rest.strip().partition(" ")
    return f"{verb} {mechanism} {HIDDEN}" if payload else f"{verb} {mechanism}".rstrip()


def _limit_of(line: bytes) -> str | None:
    for text, name in _LIMITS:
        if text in line:
            return name
    return None


def _address(text: str) -> str:
    """The path of ``MAIL FROM:<a@b> SIZE=1`` / ``RCPT TO:<a@b>``: ``a@b``."""
    path = text.partition(":")[2].strip()
    if path.startswith("<"):
        return path[1:].partition(">")[0]
    return path.partition(" ")[0]


def _chunk(text: str) -> tuple[int, bool]:
    """The size and LAST flag of ``BDAT 100 LAST`` (0 when the size is not a number)."""
    words = text.split()
    size = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    return size, len(words) > 2 and words[2].upper() == "LAST"


class Record:
    """One followed connection: its id, what it has done, and who is told.

    The transaction is followed from the command lines and their replies
    alone: MAIL and RCPT accepted (2xx) name the sender and the recipients,
    the reply after ``354`` or to ``BDAT … LAST`` ends the message.
    """

    __slots__ = (
        "_arg",
        "_final",
        "_from",
        "_mail_at",
        "_pending",
        "_recipients",
        "_transcript",
        "_verb",
        "client",
        "login",
        "messages",
        "peer",
        "reason",
        "session_id",
        "size",
        "started",
        "subscribers",
        "tls",
        "transactions",
    )

    def __init__(self, subscribers: tuple[Subscriber, ...], peer: Any, tls: Any) -> None:
        self.subscribers = subscribers
        self.session_id = new_session_id()
        self.peer = _peer_text(peer)
        #: The client a PROXY header named, or None.
        self.client: str | None = None
        #: The TLS version and cipher, or None without TLS.
        self.tls = _tls_text(tls)
        self.login: str | None = None
        self.started = time.monotonic()
        #: Messages accepted, transactions ended (accepted or refused at the end).
        self.messages = 0
        self.transactions = 0
        #: The size of the message being received (set by the protocol, or by BDAT).
        self.size = 0
        self.reason = ""
        self._verb = ""
        self._arg = ""
        self._pending = False
        #: True when the next reply ends a message (after 354, or to BDAT LAST).
        self._final = False
        self._from: str | None = None
        self._recipients: list[str] = []
        self._mail_at = 0.0
        self._transcript = any(s.transcribes() for s in subscribers)

    @property
    def duration(self) -> float:
        """Seconds since the connection was made."""
        return time.monotonic() - self.started

    # -- call points -------------------------------------------------------

    def command_line(self, line: bytes) -> None:
        """The client sent a command line (not a DATA line, not an AUTH response)."""
        verb = _VERB_NAMES.get(line.partition(b" ")[0].rstrip(b"\r\n").upper(), "other")
        self._verb = verb
        self._arg = line.decode("utf-8", "replace") if verb in _WITH_ARGUMENT else ""
        self._pending = True
        if self._transcript:
            self._line("<", redact(line))

    def secret_line(self) -> None:
        """The client answered an AUTH challenge: only its existence is told."""
        if self._transcript:
            self._line("<", HIDDEN)

    def reply(self, line: bytes) -> None:
        """The server queued a reply (one or more lines, CRLF included)."""
        if self._transcript:
            for text in line.decode("utf-8", "backslashreplace").splitlines():
                self._line(">", text)
        code = line[:1]
        if self._pending:
            self._pending = False
            reply_class = chr(code[0]) + "xx" if code in (b"2", b"3", b"4", b"5") else "other"
            for subscriber in self.subscribers:
                subscriber.command(self, self._verb, reply_class)
            if self._verb == "BDAT":
                size, last = _chunk(self._arg)
                self.size += size
                self._final = last
        if self._final:
            self._end_of_message(line)
        elif code in (b"2", b"3"):
            self._on_success(line)
        else:
            self._on_refusal(line)

    def _on_success(self, line: bytes) -> None:
        verb = self._verb
        if verb == "MAIL":
            self._mail_at = time.monotonic()
            self._from = _address(self._arg)
            self._recipients = []
        elif verb == "RCPT":
            self._recipients.append(_address(self._arg))
        elif verb == "DATA" and line.startswith(b"354"):
            self._final = True
            self.size = 0
        elif verb in ("RSET", "HELO", "EHLO", "LHLO"):
            self._reset()

    def _on_refusal(self, line: bytes) -> None:
        text = _first_line(line)
        if line.startswith(b"421"):
            self.reason = text
        limit = _limit_of(line)
        if limit is not None:
            for subscriber in self.subscribers:
                subscriber.limit(self, limit)
        stage = _STAGES.get(self._verb)
        if stage is not None:
            self._transaction(Outcome(False, stage, text))

    def _end_of_message(self, line: bytes) -> None:
        self._final = False
        self.transactions += 1
        accepted = line[:1] == b"2"
        if accepted:
            self.messages += 1
        outcome = Outcome(
            accepted,
            "data",
            _first_line(line),
            f"{self.session_id}.{self.transactions}",
            self._from,
            tuple(self._recipients),
            self.size,
            time.monotonic() - self._mail_at if self._mail_at else 0.0,
        )
        self._reset()
        # LMTP's further replies (one per recipient) are not new outcomes.
        self._verb = ""
        self._transaction(outcome)
        limit = None if accepted else _limit_of(line)
        if limit is not None:
            for subscriber in self.subscribers:
                subscriber.limit(self, limit)

    def _reset(self) -> None:
        self._from = None
        self._recipients = []
        self._mail_at = 0.0
        self.size = 0

    def proxied(self, proxy_data: Any) -> None:
        """A PROXY header was accepted."""
        address = getattr(proxy_data, "src_addr", None)
        if address is None:
            return
        self.client = _peer_text((address, getattr(proxy_data, "src_port", None) or 0))
        for subscriber in self.subscribers:
            subscriber.proxied(self)

    def auth(self, mechanism: str, success: bool, login: Any) -> None:
        """An AUTH exchange ended."""
        if success and login is not None:
            self.login = (
                login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login)
            )
        for subscriber in self.subscribers:
            subscriber.auth(self, mechanism, success)

    def tls_done(self, info: Any, error: Exception | None) -> None:
        """A STARTTLS handshake succeeded (``info``: the session's ssl dict) or failed."""
        if error is None:
            self.tls = _tls_text(info)
        for subscriber in self.subscribers:
            subscriber.tls(self, None if error is None else str(error) or type(error).__name__)

    def lost(self, exc: Exception | None) -> None:
        """The connection ended; ``exc`` is the transport's error, if any."""
        if self._verb == "QUIT":
            self.reason = "quit"  # a TLS client may reset the connection after the 221
        elif exc is not None:
            self.reason = str(exc) or type(exc).__name__
        elif not self.reason:
            self.reason = "closed"
        for subscriber in self.subscribers:
            subscriber.connection_lost(self)

    # -- helpers -----------------------------------------------------------

    def _transaction(self, outcome: Outcome) -> None:
        for subscriber in self.subscribers:
            subscriber.transaction(self, outcome)

    def _line(self, direction: str, text: str) -> None:
        for subscriber in self.subscribers:
            subscriber.line(self, direction, text)


def _first_line(line: bytes) -> str:
    return line.decode("utf-8", "backslashreplace").splitlines()[0] if line else ""
