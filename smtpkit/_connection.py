"""The I/O shell of the SMTP protocol: buffering, replies, timers, dispatch.

How a connection runs:

* ``data_received`` appends to one input buffer. When a line is complete and
  no command is being handled, it starts a short-lived task that handles
  every complete line in the buffer, in order, and ends when no complete line
  is left. An idle connection, or one sending a line that never ends,
  therefore holds no task.
* The built-in commands' replies are collected by :meth:`Connection._push`
  and written in one go whenever the server is about to wait for the client
  (RFC 2920 §3.2 lets a server batch the replies to pipelined commands); the
  public :meth:`Connection.push` writes at once.
* The connection is in one phase at a time (``_phase``: the PROXY header,
  commands, data, closing), which decides where its input goes. During
  DATA, and while the octets of a BDAT chunk arrive (CHUNKING, RFC 3030:
  the same phase, with a chunk decoder), ``data_received`` feeds the
  message's transfer (:mod:`smtpkit._transfer`) directly, so message bytes
  are never copied into the command buffer; between messages, and between
  chunks, there is no transfer.
* The task yields to the loop after every ``_LINES_PER_TURN`` lines, so a
  client that pipelines without end cannot keep the others waiting.
* No timer per connection: one sweep per event loop (:mod:`smtpkit._clock`)
  asks each connection whether its time is up, and activity only records a
  timestamp. See "Timeouts" below for what restarts each count.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import sys
import types
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, AnyStr

from . import _events
from . import _replies as replies
from ._clock import clock_for
from ._constants import AUTH_LINE_LIMIT, MISSING, Phase
from ._limits import TOO_MANY_CONNECTIONS, ConnectionLimiter
from ._logs import SESSION_LOG
from ._replies import Reply, SMTPReplyError, with_enhanced
from ._reply_check import ReplyError, enhanced_lines, reply_lines
from ._session import Envelope, Session

if TYPE_CHECKING:
    from ._settings import Settings
    from ._transfer import Transfer
    from .proxy_protocol import ProxyData

log = logging.getLogger("smtpkit.smtp")
_events.subscribe(SESSION_LOG)

# The phases, as names local to the module (looked up on every input).
_PROXY, _COMMANDS, _DATA, _CLOSING = Phase.PROXY, Phase.COMMANDS, Phase.DATA, Phase.CLOSING

# Input and output buffering: stop reading from a client whose unprocessed
# input, or unsent output, passes the high mark.
_INPUT_HIGH = 256 * 1024
_INPUT_LOW = 64 * 1024
_OUTPUT_FLUSH = 64 * 1024
_STREAM_HIGH = 1024 * 1024
# A DATA read makes the connection wait a turn of the loop per this many bytes.
_FAIR_SHARE = 64 * 1024
# The command loop yields to the loop after this many lines: a client that
# pipelines thousands of commands gets a turn like any other, not all of them.
_LINES_PER_TURN = 64

# The bare lines, for code that compares or returns them as strings.
INTERNAL_ERROR = replies.INTERNAL_ERROR.format()
LINE_TOO_LONG = replies.LINE_TOO_LONG.format()
AUTH_LINE_TOO_LONG = replies.AUTH_LINE_TOO_LONG.format()
ALLOWED_BEFORE_STARTTLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})
# Verb -> "smtp_<VERB>", one string object per verb: the type's attribute
# cache matches names by identity, so a name built anew for each command
# would miss it and walk the whole MRO. Only verbs some class implements are
# kept, so clients cannot make it grow.
_VERB_ATTRIBUTES: dict[str, str] = {}


_NOT_COUNTED = object()
# "handle_<NAME>" for the hooks the server calls: built once, not per call.
_HOOK_ATTRIBUTES = {
    name: "handle_" + name
    for name in [
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "DATA_CHUNK",
        "DATA_ABORT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "AUTH",
        "PROXY",
        "STARTTLS",
    ]
}
# What an ``async def`` returns: tested first, before inspect.isawaitable.
_Coroutine = types.CoroutineType


class _TooLong:
    """Marks a line that was longer than the limit and was thrown away."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


_TOO_LONG = _TooLong(replies.LINE_TOO_LONG)
# RFC 4954 §4 gives over-long AUTH lines their own reply.
_AUTH_TOO_LONG = _TooLong(replies.AUTH_LINE_TOO_LONG)


def _ssl_info(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return {
        "ssl_object": ssl_object,
        "peercert": transport.get_extra_info("peercert"),
        "cipher": transport.get_extra_info("cipher"),
        "compression": transport.get_extra_info("compression"),
    }


class Connection(asyncio.StreamReaderProtocol):
    """The transport-facing half of :class:`smtpkit.smtp.SMTP`."""

    # Slots rather than a __dict__ for what every connection has: an idle
    # connection should cost little. SMTP._use_settings copies the documented
    # and the often-read settings from the shared Settings object; the
    # per-connection state is set by _init_state. What lives only during a
    # message is in the Transfer (``_transfer``), None between messages.
    __slots__ = (
        "__ident__",
        "_auth_callback",
        "_auth_failures",
        "_auth_methods",
        "_auth_require_tls",
        "_auth_required",
        "_authenticator",
        "_buf",
        "_call_budget",
        "_counted_address",
        "_decode_data",
        "_discarding",
        "_discarding_auth",
        "_drain_waiter",
        "_eof",
        "_last_activity",
        "_last_reply",
        "_observed",
        "_out",
        "_out_size",
        "_phase",
        "_proxy_timeout",
        "_reading_paused",
        "_replies_sent",
        "_runner",
        "_running",
        "_settings",
        "_shutting_down",
        "_timeout_duration",
        "_tls_active",
        "_tls_handshake_okay",
        "_transfer",
        "_unknown_budget",
        "_waiter",
        "_write_paused",
        "command_size_limits",
        "data_size_limit",
        "enable_SMTPUTF8",
        "envelope",
        "event_handler",
        "hostname",
        "loop",
        "require_starttls",
        "session",
        "tls_context",
        "transport",
    )

    # Settings, filled in by SMTP._use_settings.
    _settings: Settings
    loop: asyncio.AbstractEventLoop
    event_handler: Any
    hostname: str
    enable_SMTPUTF8: bool
    #: RFC 2034: every reply but the greeting and HELO/EHLO's carries an
    #: RFC 3463 code (see :mod:`smtpkit._replies`). Off: aiosmtpd's lines.
    enhanced_status_codes: bool = False
    tls_context: ssl.SSLContext | None
    require_starttls: bool
    command_size_limit: int
    command_size_limits: dict[str, int]
    data_min_rate: int
    data_rate_window: float
    proxy_trusted_networks: Iterable[str] = ()
    _timeout_duration: float
    _proxy_timeout: float | None
    _auth_required: bool
    __ident__: str
    # Per-connection state, filled in by _init_state.
    #: What the connection is doing (see smtpkit._constants.Phase).
    _phase: Phase
    session: Session | None
    envelope: Envelope | None
    transport: asyncio.BaseTransport | None
    _buf: bytearray
    _out: list[bytes]
    _out_size: int
    _runner: asyncio.Task[None] | None
    #: True from the start of a command to its end (the server is busy).
    _running: bool
    _waiter: asyncio.Future[None] | None
    #: The message being received (DATA), None between messages.
    _transfer: Transfer | None
    _discarding: bool
    _eof: bool
    _reading_paused: bool
    _write_paused: bool
    _drain_waiter: asyncio.Future[None] | None
    _tls_active: bool
    _tls_handshake_okay: bool
    _last_activity: float
    _unknown_budget: int
    _call_budget: dict[str, int] | None
    _replies_sent: int
    #: The last reply pushed (AUTH checks that an exchange ended with one).
    _last_reply: bytes
    _discarding_auth: bool
    _shutting_down: bool
    _counted_address: Any
    #: What logs and metrics follow of this connection (None: nobody follows it).
    _observed: _events.Record | None
    max_unknown_commands: int
    #: Shared by the connections of one server to cap their number.
    connection_limiter: ConnectionLimiter | None = None

    def _init_state(self) -> None:
        """Set the per-connection state (called once, from ``__init__``)."""
        self.session = None
        self.envelope = None
        self.transport = None
        self._buf = bytearray()
        self._out = []
        self._out_size = 0
        self._runner = None
        self._running = False
        self._waiter = None
        self._phase = _COMMANDS
        self._transfer = None
        self._discarding = False
        self._discarding_auth = False
        self._eof = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter = None
        self._tls_active = False
        self._tls_handshake_okay = True
        self._last_activity = 0.0
        self._unknown_budget = self.max_unknown_commands
        self._call_budget = None
        self._replies_sent = 0
        self._last_reply = b""
        self._shutting_down = False
        self._counted_address = _NOT_COUNTED
        self._observed = None

    @property
    def _closing(self) -> bool:
        """Whether the connection is closed or being closed (its phase is CLOSING)."""
        return self._phase is _CLOSING

    @_closing.setter
    def _closing(self, value: bool) -> None:
        # Closing is the last phase: there is no way back.
        if value:
            self._phase = _CLOSING

    def __del__(self) -> None:
        # StreamReaderProtocol.__del__ reads the ``_closed`` future its
        # __init__ makes; that __init__ is not called here, so it would only
        # raise and catch an AttributeError for every connection that goes.
        pass

    def _create_session(self) -> Session:
        return Session(self.loop)

    def _create_envelope(self) -> Envelope:
        return Envelope()

    def _set_post_data_state(self) -> None:
        """Start a new transaction (after DATA, RSET, HELO/EHLO)."""
        self.envelope = self._create_envelope()

    def _set_rset_state(self) -> None:
        self._set_post_data_state()

    # ------------------------------------------------------------------
    # asyncio protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        session = self.session = self._create_session()
        session.peer = transport.get_extra_info("peername")
        self._set_rset_state()
        if self.connection_limiter is not None and not self._count_connection(session.peer):
            self._closing = True
            refusal = getattr(self.connection_limiter, "refusal", TOO_MANY_CONNECTIONS)
            transport.write(refusal.encode() + b"\r\n")  # type: ignore[attr-defined]
            transport.close()
            _events.limit_hit("connections")
            return
        info = _ssl_info(transport)
        if info is not None:
            # Implicit TLS: the listening socket already wrapped the connection.
            self._tls_active = True
            session.ssl = info
        self._observed = _events.observe(session.peer, info)
        self._last_activity = self.loop.time()
        if self._proxy_timeout is not None:
            clock_for(self.loop).add(self, min(self._proxy_timeout, self._tick))
            self._phase = _PROXY
            self._runner = self.loop.create_task(self._read_proxy_header())
        else:
            clock_for(self.loop).add(self, self._tick)
            self._greet()

    def _count_connection(self, peer: Any) -> bool:
        # Behind a PROXY load balancer the peer is the balancer: count the
        # connection as a whole now, and for its client once the header names it.
        proxied = self._proxy_timeout is not None
        address = peer[0] if isinstance(peer, tuple) and not proxied else None
        assert self.connection_limiter is not None
        if not self.connection_limiter.acquire(address):
            log.warning("%r refused: too many connections", peer)
            return False
        self._counted_address = address
        return True

    def shutdown(self) -> None:
        """Close this connection at the next point where no work is lost.

        An idle connection gets ``421 4.3.2`` and is closed at once; one that
        is handling a command (a DATA transfer, a slow hook) finishes it, sends
        its reply, and is closed after that.
        """
        self._shutting_down = True
        if self._runner is None or (self._waiter is not None and self._phase is not _DATA):
            self._say_goodbye()

    def _say_goodbye(self) -> None:
        if not self._closing and self.transport is not None:
            self._write_now(replies.SHUTTING_DOWN.fill(hostname=self.hostname))
            self._close()

    def _greet(self) -> None:
        # RFC 2034 §3: the greeting carries no enhanced code.
        settings = self._settings
        hostname, ident = self.hostname, self.__ident__
        if hostname is settings.hostname and ident is settings.ident:
            greeting = settings.greeting  # filled once for all the connections
        else:  # changed on this connection
            greeting = replies.GREETING.fill(hostname=hostname, ident=ident)
        self._write_now(greeting)

    def data_received(self, data: bytes) -> None:
        if self._phase is _DATA:
            assert self._transfer is not None
            self._feed_transfer(self._transfer, data)
            return
        buf = self._buf
        buf += data
        if self._waiter is not None:
            self._wake()
        elif self._runner is None and self._worth_a_run(data):
            self._runner = self.loop.create_task(self._run())
        if len(buf) > _INPUT_HIGH and not self._reading_paused:
            self._pause_reading()

    def _worth_a_run(self, data: bytes) -> bool:
        """Whether new bytes give the command loop something to do.

        Only a line end completes a command; a partial line waits in the
        buffer, costs no task, and restarts no timer. Past the read limit
        the loop is needed all the same, to throw the over-long line away.
        """
        return b"\n" in data or len(self._buf) > min(self._settings.read_limit, _INPUT_HIGH)

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("client closed the connection"))
        # Keep the socket open for writing until the pipelined commands
        # already received are answered; _run closes it then.
        return self._runner is not None and not self._tls_active

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # Already told (a failed TLS handshake reports it itself).
        self._closing = True
        clock_for(self.loop).discard(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
        self._transfer = None
        if self._counted_address is not _NOT_COUNTED:
            assert self.connection_limiter is not None
            self.connection_limiter.release(self._counted_address)
            self._counted_address = _NOT_COUNTED
        self.transport = None
        if self._observed is not None:
            self._observed.lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------
    # Input

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[attr-defined]

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[attr-defined]
            # The client was kept waiting: judge its DATA rate afresh.
            self._rate_window_start(self.loop.time())

    def _next_line(self, limit: int) -> bytes | _TooLong | None:
        """Take the next complete line off the buffer (without its LF).

        Returns None when there is no complete line yet. A line longer than
        ``limit`` is thrown away as it arrives, never buffered whole, and
        reported as ``_TOO_LONG`` (``_AUTH_TOO_LONG`` for an AUTH command)
        once its end is seen.
        """
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > limit:
                if not self._discarding:
                    self._discarding_auth = buf[:5].upper() == b"AUTH "
                self._discarding = True
                buf.clear()
            # Reading may have been paused while a command ran; the rest of
            # this line is needed (or must be thrown away) to go on.
            self._resume_reading()
            return None
        if self._discarding or end > limit:
            if not self._discarding:
                self._discarding_auth = buf[:5].upper() == b"AUTH "
            del buf[: end + 1]
            self._discarding = False
            line: bytes | _TooLong = _AUTH_TOO_LONG if self._discarding_auth else _TOO_LONG
        else:
            line = bytes(buf[:end])
            del buf[: end + 1]
        if self._reading_paused and len(buf) < _INPUT_LOW:
            self._resume_reading()
        return line

    async def _wait_for_input(self) -> None:
        """Send what is pending and wait until the client sends more."""
        self._flush()
        if self._closing or self._eof:
            raise ConnectionResetError("connection closed")
        self._resume_reading()
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _readline(self, limit: int = AUTH_LINE_LIMIT) -> bytes | _TooLong:
        """Read one line from inside a command (AUTH exchanges)."""
        while True:
            line = self._next_line(limit + 2)
            if line is not None:
                if isinstance(line, bytes) and line.endswith(b"\r"):
                    line = line[:-1]
                return line
            await self._wait_for_input()

    # ------------------------------------------------------------------
    # Output

    async def push(self, status: AnyStr) -> None:
        """Send a reply line to the client (CRLF is added).

        When ``push`` returns, the reply (and any reply queued before it) has
        been handed to the transport, so a subclass may close the transport
        or start TLS right after it. ``push`` waits only when the transport
        asked the server to pause writing (a client that does not read its
        replies).

        Args:
            status: the reply; a str must be ASCII unless SMTPUTF8 is
                enabled, in which case it is encoded as UTF-8.
        """
        self._reply(status)
        self._flush()
        if self._write_paused:
            await self._drain()

    async def _push(self, status: Reply | str | bytes, *, exempt: bool = False) -> None:
        """Queue a built-in reply; it is written with the next batch.

        RFC 2920 §3.2 lets a server batch the replies to pipelined commands:
        built-in commands reply through here, the public :meth:`push` flushes.
        ``exempt`` lines (HELO/EHLO replies, RFC 2034 §3) never get an
        enhanced status code.
        """
        if exempt and not isinstance(status, Reply):
            self._queue(self._raw(status))
        else:
            self._queue(self._wire(status))
        if self._write_paused:
            await self._drain()

    async def _push_hook_reply(self, status: object, source: str, *, exempt: bool = False) -> None:
        """Queue a reply that user code returned, once it is checked.

        A malformed reply (no code, a CR or LF inside a line, a broken
        multi-line reply, an enhanced code of another class than the reply
        code) is never written: the client gets ``451 4.3.0`` and the log
        names ``source`` (``"handle_MAIL"``) and what it returned. With
        ``enhanced_status_codes`` on, a line without an enhanced code gets
        the default one for its code, unless ``exempt`` (HELO/EHLO replies).
        """
        self._queue_hook_reply(status, source, exempt)
        if self._write_paused:
            await self._drain()

    def _queue_hook_reply(self, status: object, source: str, exempt: bool = False) -> None:
        """The queueing half of :meth:`_push_hook_reply` (the caller drains)."""
        if type(status) is Reply:
            self._queue(status.wire[self.enhanced_status_codes])
        else:
            for line in self._checked_lines(status, source, exempt):
                self._queue(self._raw(line))

    def _checked_lines(self, status: object, source: str, exempt: bool) -> list[str | bytes]:
        try:
            lines = reply_lines(status)
            if self.enhanced_status_codes and not exempt:
                lines = enhanced_lines(lines)
        except ReplyError as error:
            peer = self.session.peer if self.session is not None else None
            log.error("%r %s returned %r: %s", peer, source, status, error)
            return [replies.INTERNAL_ERROR.format(self.enhanced_status_codes)]
        return lines

    def _reply(self, status: Reply | str | bytes) -> None:
        """Queue a reply line without waiting (see :meth:`push`)."""
        self._queue(self._wire(status))

    def _wire(self, status: Reply | str | bytes) -> bytes:
        """The bytes of a reply line, CRLF included, with an enhanced code when on."""
        if isinstance(status, Reply):
            return status.wire[self.enhanced_status_codes]
        if self.enhanced_status_codes:
            status = with_enhanced(status)
        return self._raw(status)

    def _raw(self, status: str | bytes) -> bytes:
        if isinstance(status, str):
            return status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n"
        return bytes(status) + b"\r\n"

    def _queue(self, response: bytes) -> None:
        """Queue one encoded reply line (CRLF included)."""
        self._out.append(response)
        self._out_size += len(response)
        self._replies_sent += 1
        self._last_reply = response
        if self._observed is not None:
            self._observed.reply(response)
        if self._out_size >= _OUTPUT_FLUSH:
            self._flush()

    def _write_now(self, status: Reply | str) -> None:
        self._out.append(self._wire(status))
        if self._observed is not None:
            self._observed.reply(self._out[-1])
        self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        transport = self.transport
        if transport is not None and not self._closing:
            transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[attr-defined]
        out.clear()
        self._out_size = 0

    async def _drain(self) -> None:
        self._flush()
        while self._write_paused and not self._closing:
            waiter = self._drain_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None

    def _close(self) -> None:
        """Send what is pending, then close the connection."""
        self._flush()
        if self.transport is not None and not self._closing:
            self._closing = True
            # From now on the clock counts how long the last replies take to
            # leave (see _on_tick).
            self._last_activity = self.loop.time()
            self.transport.close()

    def _abort(self) -> None:
        """Drop the connection at once, with whatever it has not sent yet."""
        self._out.clear()
        self._out_size = 0
        if self.transport is not None:
            self._closing = True
            self.transport.abort()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------
    # Timeouts
    #
    # No timer per connection: the loop's clock (smtpkit._clock) calls
    # _on_tick every second or so, and activity only records a timestamp
    # (_last_activity). What restarts each count:
    #
    # * idle (``timeout``): a command that starts running (_execute), and
    #   each read during DATA. Bytes that complete no command, and lines
    #   refused before they run, restart nothing. While a command runs and
    #   waits for neither the client's input nor its reading (a slow hook),
    #   the client is not idle.
    # * DATA rate: judged per window of ``data_rate_window`` seconds; a new
    #   window starts when the server has made the client wait.
    # * PROXY header: counted from the connection's start; nothing restarts it.
    # * closing: counted from the close; the last replies get ``timeout``
    #   seconds to leave before the connection is aborted.
    #
    # A client that does not read its replies (writing paused) is timed out
    # like any other, and aborted: there is no flushing to a client that
    # does not read.

    def _on_tick(self, now: float) -> None:
        if self.transport is None:
            return
        if self._closing:
            self._check_closing(now)
            return
        if self._phase is _PROXY:
            assert self._proxy_timeout is not None
            if now - self._last_activity >= self._proxy_timeout:
                log.info("%r PROXY header timeout", self._peer)
                self._close()
            return
        if self._running and self._waiter is None and self._drain_waiter is None:
            # A command is being handled (a slow hook): that is not idling,
            # and the client may be waiting for us, so its rate is not judged.
            self._last_activity = now
            self._rate_window_start(now)
            return
        if self._transfer is not None and self._data_too_slow(now):
            return
        if now - self._last_activity >= self._timeout_duration:
            log.info("%r connection timeout", self._peer)
            self._cut(replies.TIMEOUT.fill(hostname=self.hostname))

    @property
    def _peer(self) -> Any:
        return self.session.peer if self.session is not None else None

    def _cut(self, reply: Reply) -> None:
        """Send ``reply`` and close; abort when the client does not read its replies."""
        if self._write_paused:
            log.info("%r does not read its replies: aborting the connection", self._peer)
            self._abort()
            return
        self._write_now(reply)
        self._close()

    def _check_closing(self, now: float) -> None:
        """Abort a closed connection whose last replies have not left in time."""
        if now - self._last_activity >= self._timeout_duration:
            log.info("%r does not read its last replies: aborting the connection", self._peer)
            self._abort()

    @property
    def _tick(self) -> float:
        """The longest time this connection may wait for a check."""
        if self.data_min_rate:
            return min(self._timeout_duration, self.data_rate_window)
        return self._timeout_duration

    def _rate_window_start(self, now: float) -> None:
        transfer = self._transfer
        if transfer is not None:
            transfer.restart_window(now)

    def _data_too_slow(self, now: float) -> bool:
        """Close the connection when the last window's DATA rate was too low."""
        transfer = self._transfer
        assert transfer is not None
        if not self.data_min_rate:
            return False
        ended = transfer.window_ended(now, self.data_rate_window)
        if ended is None:
            return False
        received, elapsed = ended
        if self._reading_paused or received >= self.data_min_rate * elapsed:
            # Paused: the server asked the client to wait (a slow DATA_CHUNK hook).
            return False
        log.info(
            "%r DATA slower than %s B/s: %d bytes in %.1f s",
            self.session.peer if self.session else None,
            self.data_min_rate,
            received,
            elapsed,
        )
        self._cut(replies.DATA_TOO_SLOW.fill(hostname=self.hostname))
        return True

    # ------------------------------------------------------------------
    # The PROXY protocol header (before the greeting)

    async def _read_proxy_header(self) -> None:
        try:
            accepted = await self._accept_proxy_header()
        except ConnectionError:
            return
        finally:
            self._runner = None
        if not accepted:
            self._close()
            return
        if not self._count_proxied_client():
            self._write_now(getattr(self.connection_limiter, "refusal", TOO_MANY_CONNECTIONS))
            self._close()
            return
        self._phase = _COMMANDS
        self._last_activity = self.loop.time()
        if self._observed is not None:
            self._observed.proxied(self.session.proxy_data if self.session else None)
        self._greet()
        if self._buf:
            self._runner = self.loop.create_task(self._run())

    async def _accept_proxy_header(self) -> bool:
        """Check the peer, read the header and ask ``handle_PROXY``; True to go on.

        As documented for the SMTP class, a handler without ``handle_PROXY``
        gets every connection refused: a header is a claim that only the
        application can decide to believe.
        """
        assert self.session is not None
        peer = self.session.peer
        if not self._proxy_peer_trusted():
            log.warning("%r may not send a PROXY header: not in proxy_trusted_networks", peer)
            return False
        proxy_data = await self._parse_proxy_header()
        if proxy_data is None:
            return False
        self.session.proxy_data = proxy_data
        try:
            status = await self._call_handler_hook("PROXY", proxy_data)
        except Exception:
            log.exception("%r handle_PROXY raised; closing the connection", peer)
            return False
        if status is MISSING:
            log.warning("%r refused: the handler has no handle_PROXY hook", peer)
            return False
        if not status:
            log.info("%r refused by handle_PROXY", peer)
            return False
        return True

    async def _parse_proxy_header(self) -> ProxyData | None:
        """Wait for a complete header; None when the bytes cannot be one."""
        from . import proxy_protocol

        while True:
            try:
                parsed = proxy_protocol.parse_header(self._buf)
            except proxy_protocol.ProxyError as error:
                peer = self.session.peer if self.session is not None else None
                log.warning("%r invalid PROXY header: %s", peer, error)
                return None
            if parsed is not None:
                proxy_data, consumed = parsed
                del self._buf[:consumed]
                return proxy_data
            await self._wait_for_input()

    def _count_proxied_client(self) -> bool:
        """Count the connection for the client the PROXY header names."""
        limiter = self.connection_limiter
        data = self.session.proxy_data if self.session is not None else None
        if limiter is None or self._counted_address is _NOT_COUNTED or data is None:
            return True
        if data.src_addr is None:
            return True  # LOCAL, UNKNOWN: no client address given
        address = str(data.src_addr)
        if not limiter.reassign(self._counted_address, address):
            peer = self.session.peer if self.session is not None else None
            log.warning("%r refused: too many connections from %s", peer, address)
            return False
        self._counted_address = address
        return True

    def _proxy_peer_trusted(self) -> bool:
        networks = self._settings.trusted_networks
        if not networks:
            return True
        from .proxy_protocol import is_trusted

        peer = self.session.peer if self.session is not None else None
        host = peer[0] if isinstance(peer, tuple) else None
        return host is not None and is_trusted(host, networks)

    # ------------------------------------------------------------------
    # The command loop

    async def _run(self) -> None:
        turn = _LINES_PER_TURN
        try:
            while self._phase is not _CLOSING:
                if self._write_paused:
                    await self._drain()
                line = self._next_line(self._settings.read_limit)
                if line is None:
                    break
                if self._observed is not None and isinstance(line, bytes):
                    self._observed.command_line(line)
                try:
                    command = self._parse(line)
                    if command is not None:
                        self._running = True
                        # The command runs here rather than in a coroutine of its
                        # own: one coroutine less for every command.
                        self._last_activity = self.loop.time()
                        method, arg = command
                        try:
                            await method(arg)
                        except SMTPReplyError:
                            raise  # a refusal: sent below
                        except Exception as error:
                            await self._command_failed(error)
                except SMTPReplyError as refusal:
                    self._refuse(refusal.reply)
                self._running = False
                if self._shutting_down:
                    self._say_goodbye()
                turn -= 1
                if not turn:
                    # Let the other connections have their turn (and the
                    # transport read more of this client's input).
                    turn = _LINES_PER_TURN
                    await asyncio.sleep(0)
        except ConnectionError:
            pass
        finally:
            self._runner = None
            self._running = False
            self._flush()
            if self._shutting_down:
                self._say_goodbye()
            elif self._eof and not self._closing and self.transport is not None:
                self._close()

    def _parse(
        self, line: bytes | _TooLong
    ) -> tuple[Callable[..., Awaitable[None]], str | None] | None:
        """Check a command line; return its method and argument, or None.

        Everything here is synchronous: a command that is refused costs no
        coroutine and no task.

        Raises:
            SMTPReplyError: the line is refused (too long, bad syntax, TLS
                policy, call limits).
        """
        if isinstance(line, _TooLong):
            raise SMTPReplyError(line.reply)
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            raise SMTPReplyError(replies.BAD_SYNTAX)
        if b"\x00" in line or b"\r" in line:
            raise SMTPReplyError(replies.NUL_OR_CR)
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.decode("ascii").upper()
            arg = arg_bytes.strip().decode("utf-8" if self.enable_SMTPUTF8 else "ascii") or None
        except UnicodeDecodeError:
            raise SMTPReplyError(self._undecodable(verb_bytes)) from None
        assert self.session is not None
        limit = (
            self.command_size_limits.get(verb, self.command_size_limit)
            if self.session.extended_smtp
            else self.command_size_limit
        )
        if len(line) > limit:
            raise SMTPReplyError(
                replies.AUTH_LINE_TOO_LONG if verb == "AUTH" else replies.LINE_TOO_LONG
            )
        self._check_policy(verb)
        method = self._command_method(verb)
        if method is None:
            self._unknown(verb)
            return None
        return method, arg

    def _undecodable(self, verb_bytes: bytes) -> Reply:
        if not verb_bytes.isascii():
            return replies.BAD_SYNTAX
        if self.enable_SMTPUTF8:
            return replies.INVALID_UTF8
        return replies.STRICT_ASCII

    def _refuse(self, reply: Reply) -> None:
        """Send the reply of a refused command: the one place SMTPReplyError becomes a reply."""
        self._reply(reply)
        if reply.code == 421:
            # RFC 5321 §3.8: a 421 reply means the server closes.
            self._close()

    async def _command_failed(self, error: Exception) -> None:
        """Answer a command that raised ``error`` (re-raised when the client is gone)."""
        if isinstance(error, ConnectionError) and self._connection_gone():
            raise error
        # A ConnectionError from a hook (its database refused, its socket
        # broke) says nothing about the client, which is still waiting.
        await self._push_hook_reply(await self.handle_exception(error), "handle_exception")

    def _connection_gone(self) -> bool:
        """Whether the client's connection is closed or closing (not just an error)."""
        transport = self.transport
        return transport is None or self._closing or self._eof or transport.is_closing()

    def _command_method(self, verb: str) -> Callable[..., Awaitable[None]] | None:
        """The ``smtp_<VERB>`` method for ``verb``, looked up on each command.

        Looking it up every time (rather than in a table built once per
        class) lets code patch ``smtp_<VERB>`` on the class or on one server
        at any time; the lookup goes through the type's attribute cache.
        """
        try:
            method = getattr(self, _VERB_ATTRIBUTES[verb])
        except (KeyError, AttributeError):
            name = "smtp_" + verb
            method = getattr(self, name, None)
            if callable(method):
                _VERB_ATTRIBUTES[verb] = sys.intern(name)
        return method if callable(method) else None

    def _check_policy(self, verb: str) -> None:
        """Apply the TLS policy and call limits.

        Raises:
            SMTPReplyError: ``verb`` may not run now.
        """
        if not self._tls_handshake_okay and verb != "QUIT":
            raise SMTPReplyError(replies.LACK_OF_SECURITY)
        if self.require_starttls and not self._tls_active and verb not in self._allowed_before_tls:
            raise SMTPReplyError(replies.STARTTLS_FIRST)
        limits = self._settings.call_limits
        if limits is not None:
            budget = self._call_budget
            if budget is None:
                budget = self._call_budget = {}
            used = budget[verb] = budget.get(verb, 0) + 1
            if used > limits.get(verb, limits["*"]):
                log.warning(
                    "%r sent %s too many times", self.session.peer if self.session else None, verb
                )
                raise SMTPReplyError(replies.TOO_MANY_CALLS.fill(verb=verb))

    _allowed_before_tls = ALLOWED_BEFORE_STARTTLS

    def _unknown(self, verb: str) -> None:
        self._unknown_budget -= 1
        if self._unknown_budget < 1:
            self._reply(replies.TOO_MANY_UNKNOWN)
            self._close()
            return
        self._reply(replies.UNKNOWN_COMMAND.fill(verb=verb))

    async def handle_exception(self, error: Exception) -> str:
        """Turn an exception raised while handling a command into a reply.

        The handler's ``handle_exception(error)`` decides when it has one;
        otherwise the client gets ``451 4.3.0`` and the traceback goes to the
        log. Exception text never reaches the client unless the handler puts
        it there.
        """
        peer = self.session.peer if self.session is not None else None
        status = await self._exception_reply(error)
        if status is None:
            log.error("%r error while handling a command", peer, exc_info=error)
            return INTERNAL_ERROR
        # The handler expected this one: its reply is the news, not a traceback.
        session = self._observed.session_id if self._observed is not None else None
        log.info(
            "%r handle_exception turned %s: %s into %r",
            peer,
            type(error).__name__,
            error,
            status,
            extra={"smtpkit": {"session": session, "event": "exception", "reply": status}},
        )
        return status

    async def _ask_exception_hook(self, error: Exception) -> str:
        """The reply the handler's ``handle_exception`` gives, or ``451 4.3.0``."""
        status = await self._exception_reply(error)
        return INTERNAL_ERROR if status is None else status

    async def _exception_reply(self, error: Exception) -> str | None:
        """The reply the handler's ``handle_exception`` gives, or None for none (or a bad one)."""
        peer = self.session.peer if self.session is not None else None
        hook = getattr(self.event_handler, "handle_exception", None)
        if hook is None:
            return None
        try:
            status = hook(error)
            if inspect.isawaitable(status):
                status = await status
        except Exception:
            log.exception("%r handle_exception() raised", peer)
            return None
        if not isinstance(status, str) or not status:
            return None
        try:
            reply_lines(status)
        except ReplyError as problem:
            log.error("%r handle_exception returned %r: %s", peer, status, problem)
            return None
        return status

    # ------------------------------------------------------------------
    # Handler hooks

    def _hook(self, name: str) -> Callable[..., Any] | None:
        attribute = _HOOK_ATTRIBUTES.get(name)
        if attribute is None:
            attribute = "handle_" + name
        hook: Callable[..., Any] | None = getattr(self.event_handler, attribute, None)
        return hook

    def _start_hook(self, command: str, *args: Any) -> Any:
        """Call ``handle_<command>``: its result (maybe an awaitable), or MISSING without one.

        Synchronous, so that a command whose hook is missing or a plain
        function costs no coroutine; the caller awaits what needs it.
        """
        hook = self._hook(command)
        if hook is None:
            return MISSING
        return hook(self, self.session, self.envelope, *args)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        status = self._start_hook(command, *args)
        if type(status) is _Coroutine or inspect.isawaitable(status):
            status = await status
        return status

    async def check_helo_needed(self, helo: str = "HELO") -> bool:
        """Reply ``503`` and return True when the client has not greeted yet."""
        assert self.session is not None
        if not self.session.host_name:
            await self._push(replies.SEND_HELO_FIRST.fill(verb=helo))
            return True
        return False

    async def check_auth_needed(self, caller_method: str) -> bool:
        """Reply ``530`` and return True when AUTH is required and missing."""
        assert self.session is not None
        if self._auth_required and not self.session.authenticated:
            await self._push(replies.AUTH_REQUIRED)
            return True
        return False

    def _may_go_on(self) -> bool:
        """Whether the built-in HELO and AUTH checks both pass, so neither need be awaited.

        True only when ``check_helo_needed`` and ``check_auth_needed`` are the
        ones above (not overridden, LMTP's, or patched) and would return
        False; otherwise the command awaits them, and they reply as ever.
        """
        session = self.session
        return (
            session is not None
            and bool(session.host_name)
            and (not self._auth_required or bool(session.authenticated))
            and getattr(self.check_helo_needed, "__func__", None) is _CHECK_HELO
            and getattr(self.check_auth_needed, "__func__", None) is _CHECK_AUTH
        )

    def _begin_transfer(self, transfer: Transfer) -> None:
        """Hand the client's next bytes to ``transfer`` until the end of the message."""
        if self._phase is _COMMANDS:
            self._transfer = transfer
            self._phase = _DATA

    def _end_transfer(self) -> None:
        """Back to commands: the message ended (or failed, or the client left)."""
        self._transfer = None
        if self._phase is _DATA:
            self._phase = _COMMANDS

    def _feed_transfer(self, transfer: Transfer, data: bytes) -> None:
        self._last_activity = self.loop.time()
        end = transfer.feed(data)
        if end >= 0:
            self._end_transfer()
            if end < len(data):
                self._buf += data[end:]
            self._wake()
            return
        if transfer.streaming and transfer.chunks:
            self._wake()
            if transfer.pending > _STREAM_HIGH:
                self._pause_reading()
                return
        if len(data) >= _FAIR_SHARE and not self._reading_paused:
            # A fast upload must not starve other connections: uvloop reads
            # a busy socket many times in one turn of the loop. Skip a turn
            # for every _FAIR_SHARE bytes of this read (a read may bring
            # 256 KiB), so that each busy upload gets about that much decoded
            # per turn and a short command on another connection waits for
            # little.
            self._pause_reading()
            turns = len(data) // _FAIR_SHARE
            loop = self.loop

            def skip() -> None:
                nonlocal turns
                turns -= 1
                if turns:
                    loop.call_soon(skip)
                elif not (transfer.streaming and transfer.pending > _STREAM_HIGH):
                    # Over the mark, the DATA_CHUNK hook resumes reading itself.
                    self._resume_reading()

            loop.call_soon(skip)


_CHECK_HELO = Connection.check_helo_needed
_CHECK_AUTH = Connection.check_auth_needed
