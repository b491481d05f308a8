"""The documented ``SMTP`` protocol class (RFC 5321), its decorators and types.

The class is an :class:`asyncio.StreamReaderProtocol`, so ``lambda:
SMTP(handler)`` is a protocol factory for :meth:`asyncio.loop.create_server`.
Inside it keeps one input buffer and parses it with the I/O-free pieces in
:mod:`smtpkit._grammar` and :mod:`smtpkit._data`; no ``StreamReader`` is used.

How a connection runs:

* ``data_received`` appends to the buffer. When no command is being handled,
  it starts a short-lived task that handles every complete line in the
  buffer, in order, and ends when the buffer has no complete line left. An
  idle connection therefore holds no task.
* Replies are collected by :meth:`SMTP.push` and written in one go whenever
  the server is about to wait for the client (RFC 2920 §3.2 lets a server
  batch replies to pipelined commands).
* During DATA, ``data_received`` feeds the decoder directly, so message bytes
  are never copied into the command buffer.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, AnyStr, TypeVar

from ._data import DataDecoder
from ._grammar import GrammarError, parse_params, parse_path, strip_keyword
from ._session import Envelope, Session
from ._syntax import syntax
from ._version import __version__
from .auth._command import (
    MISSING,
    AuthCallbackType,
    AuthCommands,
    AuthenticatorType,
    _Missing,
    auth_mechanism,
    login_always_fail,
)
from .auth._types import AuthResult, LoginPassword

__all__ = [
    "ALLOWED_BEFORE_STARTTLS",
    "BOGUS_LIMIT",
    "CALL_LIMIT_DEFAULT",
    "DATA_SIZE_DEFAULT",
    "MISSING",
    "SMTP",
    "AuthCallbackType",
    "AuthResult",
    "AuthenticatorType",
    "Envelope",
    "LoginPassword",
    "Session",
    "TLSSetupException",
    "auth_mechanism",
    "login_always_fail",
    "syntax",
]

log = logging.getLogger("smtpkit.smtp")

__ident__ = f"smtpkit {__version__}"
DATA_SIZE_DEFAULT = 33_554_432
CALL_LIMIT_DEFAULT = 20
BOGUS_LIMIT = 5
ALLOWED_BEFORE_STARTTLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})
# RFC 4954 §4: AUTH command lines and responses may be up to 12288 octets.
AUTH_LINE_LIMIT = 12288

# Input and output buffering: stop reading from a client whose unprocessed
# input, or unsent output, passes the high mark.
_INPUT_HIGH = 256 * 1024
_INPUT_LOW = 64 * 1024
_OUTPUT_FLUSH = 64 * 1024
_STREAM_HIGH = 1024 * 1024

INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
LINE_TOO_LONG = "500 Command line too long"
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"

RT = TypeVar("RT")
_F = TypeVar("_F", bound=Callable[..., Any])


class TLSSetupException(Exception):
    """The TLS handshake after STARTTLS failed."""


class _TooLong:
    """Marks a line that was longer than the limit and was thrown away."""


_TOO_LONG = _TooLong()


@functools.lru_cache(maxsize=1)
def _fqdn() -> str:
    # socket.getfqdn() may consult DNS: do it once per process, not per connection.
    return socket.getfqdn()


_verb_tables: dict[Any, dict[str, Callable[..., Awaitable[None]]]] = {}


def _verb_table(cls: Any) -> dict[str, Callable[..., Awaitable[None]]]:
    """Map each verb to its ``smtp_<VERB>`` function, once per class."""
    table = _verb_tables.get(cls)
    if table is None:
        table = _verb_tables[cls] = {
            name[5:]: getattr(cls, name)
            for name in dir(cls)
            if name.startswith("smtp_") and callable(getattr(cls, name))
        }
    return table


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


def _current_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.new_event_loop()


class SMTP(AuthCommands, asyncio.StreamReaderProtocol):
    """An SMTP server protocol: one instance per client connection.

    See the documentation of the constructor arguments in ``docs/smtp.md``.
    """

    command_size_limit = 512
    line_length_limit = 1001
    local_part_limit = 0
    AuthLoginUsernameChallenge = "User Name\x00"
    AuthLoginPasswordChallenge = "Password\x00"
    #: Most recipients per transaction; more get ``452 4.5.3``.
    max_recipients = 1000
    #: Unknown commands allowed before the connection is closed.
    max_unknown_commands = BOGUS_LIMIT
    #: Failed AUTH attempts allowed before the connection is closed.
    max_auth_failures = 3
    #: Slowest acceptable DATA transfer, in bytes per second, judged over
    #: ``data_rate_window`` seconds.
    data_min_rate = 1024
    data_rate_window = 30.0
    #: Seconds a TLS handshake (STARTTLS) may take.
    tls_handshake_timeout = 30.0

    def __init__(
        self,
        handler: Any,
        *,
        data_size_limit: int | None = DATA_SIZE_DEFAULT,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
        hostname: str | None = None,
        ident: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        timeout: float = 300,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        auth_exclude_mechanism: Iterable[str] | None = None,
        auth_callback: AuthCallbackType | None = None,
        command_call_limit: int | dict[str, int] | None = None,
        authenticator: AuthenticatorType | None = None,
        proxy_protocol_timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        config: Any = None,
        **extras: Any,
    ) -> None:
        settings: dict[str, Any] = dict(
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=enable_SMTPUTF8,
            decode_data=decode_data,
            hostname=hostname,
            ident=ident,
            tls_context=tls_context,
            require_starttls=require_starttls,
            timeout=timeout,
            auth_required=auth_required,
            auth_require_tls=auth_require_tls,
            auth_exclude_mechanism=auth_exclude_mechanism,
            auth_callback=auth_callback,
            command_call_limit=command_call_limit,
            authenticator=authenticator,
            proxy_protocol_timeout=proxy_protocol_timeout,
            **extras,
        )
        if config is not None:
            settings = _merge_config(config, settings)
        self._setup(handler, loop, **settings)

    def _setup(
        self,
        handler: Any,
        loop: asyncio.AbstractEventLoop | None,
        *,
        data_size_limit: int | None,
        enable_SMTPUTF8: bool,
        decode_data: bool,
        hostname: str | None,
        ident: str | None,
        tls_context: ssl.SSLContext | None,
        require_starttls: bool,
        timeout: float,
        auth_required: bool,
        auth_require_tls: bool,
        auth_exclude_mechanism: Iterable[str] | None,
        auth_callback: AuthCallbackType | None,
        command_call_limit: int | dict[str, int] | None,
        authenticator: AuthenticatorType | None,
        proxy_protocol_timeout: float | None,
        **extras: Any,
    ) -> None:
        self.loop = loop if loop is not None else _current_loop()
        # No StreamReader: the protocol keeps its own buffer.
        super().__init__(None, loop=self.loop)  # type: ignore[arg-type]
        self.__ident__ = ident or __ident__
        self.event_handler = handler
        if data_size_limit is not None and not isinstance(data_size_limit, int):
            raise TypeError(f"data_size_limit must be an int or None, not {data_size_limit!r}")
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.hostname = hostname or _fqdn()
        self.tls_context = tls_context
        self.require_starttls = bool(tls_context and require_starttls)
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self._timeout_duration = timeout
        self._apply_extras(extras)
        self._proxy_timeout = self._check_proxy_timeout(proxy_protocol_timeout)
        self._init_auth(
            auth_required=auth_required,
            auth_require_tls=auth_require_tls,
            auth_exclude_mechanism=auth_exclude_mechanism,
            auth_callback=auth_callback,
            authenticator=authenticator,
        )
        self._call_limits = self._check_call_limit(command_call_limit)
        self._verbs = _verb_table(type(self))
        # Per connection.
        self.session: Session | None = None
        self.envelope: Envelope | None = None
        self.transport: asyncio.BaseTransport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._out_size = 0
        self._runner: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: DataDecoder | None = None
        self._streaming = False
        self._discarding = False
        self._closing = False
        self._eof = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._tls_active = False
        self._tls_handshake_okay = True
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._data_started = 0.0
        self._unknown_budget = self.max_unknown_commands
        self._call_budget: dict[str, int] | None = None
        self._replies_sent = 0

    # ------------------------------------------------------------------
    # Construction helpers

    _EXTRA_NAMES = frozenset(
        {
            "max_recipients",
            "max_unknown_commands",
            "max_auth_failures",
            "data_min_rate",
            "data_rate_window",
            "command_size_limit",
            "line_length_limit",
            "local_part_limit",
            "tls_handshake_timeout",
            "proxy_trusted_networks",
        }
    )

    def _apply_extras(self, extras: dict[str, Any]) -> None:
        # smtpkit's own keywords; "command_length_limit" is the config name.
        if "command_length_limit" in extras:
            extras["command_size_limit"] = extras.pop("command_length_limit")
        unknown = set(extras) - self._EXTRA_NAMES
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TypeError(f"SMTP() got unexpected keyword argument(s): {names}")
        for name, value in extras.items():
            if value is not None:
                setattr(self, name, value)
        if self.max_recipients < 100:
            raise ValueError(
                "max_recipients must be at least 100 (RFC 5321 4.5.3.1.8), "
                f"not {self.max_recipients}"
            )
        extra = (26 if self.data_size_limit else 0) + (10 if self.enable_SMTPUTF8 else 0)
        # RFC 1870 and RFC 6531 let MAIL grow by their parameters, once.
        self.command_size_limits = {
            "MAIL": self.command_size_limit + extra,
            "AUTH": AUTH_LINE_LIMIT,
        }
        self._read_limit = max(
            self.line_length_limit, AUTH_LINE_LIMIT + 2, *self.command_size_limits.values()
        )

    @staticmethod
    def _check_proxy_timeout(value: float | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"proxy_protocol_timeout must be a number > 0, not {value!r}")
        if value < 3.0:
            log.warning("proxy_protocol_timeout is %s s; under 3 s may cut off slow proxies", value)
        return float(value)

    @staticmethod
    def _check_call_limit(limit: Any) -> dict[str, int] | None:
        if limit is None:
            return None
        if isinstance(limit, int) and not isinstance(limit, bool):
            return {"*": limit}
        if isinstance(limit, dict):
            bad = {k: v for k, v in limit.items() if not isinstance(v, int) or isinstance(v, bool)}
            if bad:
                raise TypeError(f"command_call_limit values must be int; got {bad!r}")
            return {"*": CALL_LIMIT_DEFAULT, **{k.upper(): v for k, v in limit.items()}}
        raise TypeError(
            f"command_call_limit must be int or dict[str, int], not {type(limit).__name__}"
        )

    # ------------------------------------------------------------------
    # Documented overridables

    def _create_session(self) -> Session:
        return Session(self.loop)

    def _create_envelope(self) -> Envelope:
        return Envelope()

    def _set_post_data_state(self) -> None:
        """Start a new transaction (after DATA, RSET, HELO/EHLO)."""
        self.envelope = self._create_envelope()

    def _set_rset_state(self) -> None:
        self._set_post_data_state()

    @property
    def authenticated(self) -> bool:
        """Whether the client authenticated in this session."""
        return bool(self.session is not None and self.session.authenticated)

    @property
    def max_command_size_limit(self) -> int:
        return max(self.command_size_limit, *self.command_size_limits.values())

    # ------------------------------------------------------------------
    # asyncio protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = transport
        session = self.session = self._create_session()
        session.peer = transport.get_extra_info("peername")
        self._set_rset_state()
        info = _ssl_info(transport)
        if info is not None:
            # Implicit TLS: the listening socket already wrapped the connection.
            self._tls_active = True
            session.ssl = info
        self._last_activity = self.loop.time()
        if self._proxy_timeout is not None:
            self._timer = self.loop.call_later(self._proxy_timeout, self._on_timer)
            self._runner = self.loop.create_task(self._read_proxy_header())
        else:
            self._timer = self.loop.call_later(self._timeout_duration, self._on_timer)
            self._greet()

    def _greet(self) -> None:
        self._write_now(f"220 {self.hostname} {self.__ident__}")

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is not None:
            self._feed_decoder(decoder, data)
            return
        buf = self._buf
        buf += data
        if self._waiter is not None:
            self._wake()
        elif self._runner is None:
            self._runner = self.loop.create_task(self._run())
        if len(buf) > _INPUT_HIGH and not self._reading_paused:
            self._pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("client closed the connection"))
        # Keep the socket open for writing until the pipelined commands
        # already received are answered; _run closes it then.
        return self._runner is not None and not self._tls_active

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))
        if self._decoder is not None:
            self._decoder = None
        super().connection_lost(exc)
        self.transport = None

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

    def _next_line(self, limit: int) -> bytes | _TooLong | None:
        """Take the next complete line off the buffer (without its LF).

        Returns None when there is no complete line yet. A line longer than
        ``limit`` is thrown away as it arrives, never buffered whole, and
        reported as ``_TOO_LONG`` once its end is seen.
        """
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > limit:
                self._discarding = True
                buf.clear()
            return None
        if self._discarding or end > limit:
            del buf[: end + 1]
            self._discarding = False
            return _TOO_LONG
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

        Args:
            status: the reply; a str must be ASCII unless SMTPUTF8 is
                enabled, in which case it is encoded as UTF-8.
        """
        if isinstance(status, str):
            response = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            response = bytes(status)
        self._out.append(response + b"\r\n")
        self._out_size += len(response) + 2
        self._replies_sent += 1
        if self._out_size >= _OUTPUT_FLUSH:
            self._flush()
        if self._write_paused:
            await self._drain()

    def _write_now(self, status: str) -> None:
        self._out.append(status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n")
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
            self.transport.close()

    # ------------------------------------------------------------------
    # Timeouts

    def _on_timer(self) -> None:
        self._timer = None
        if self._closing or self.transport is None:
            return
        now = self.loop.time()
        if not self._proxy_done:
            log.info("%r PROXY header timeout", self.session.peer if self.session else None)
            self.transport.close()
            return
        if self._runner is not None and self._waiter is None:
            # A command is being handled (a slow hook): that is not idling.
            self._timer = self.loop.call_at(now + self._timeout_duration, self._on_timer)
            return
        if self._decoder is not None and self._data_too_slow(now):
            return
        expires = self._last_activity + self._timeout_duration
        if now >= expires:
            log.info("%r connection timeout", self.session.peer if self.session else None)
            self._write_now(f"421 4.4.2 {self.hostname} Error: timeout exceeded")
            self._close()
            return
        next_check = expires
        if self._decoder is not None:
            next_check = min(expires, now + self.data_rate_window)
        self._timer = self.loop.call_at(next_check, self._on_timer)

    def _data_too_slow(self, now: float) -> bool:
        decoder = self._decoder
        assert decoder is not None
        elapsed = now - self._data_started
        if elapsed < self.data_rate_window or not self.data_min_rate:
            return False
        if decoder.size / elapsed >= self.data_min_rate:
            return False
        log.info(
            "%r DATA slower than %s B/s",
            self.session.peer if self.session else None,
            self.data_min_rate,
        )
        self._write_now(f"421 4.4.2 {self.hostname} Error: data transfer too slow")
        self._close()
        return True

    _proxy_done = True

    # ------------------------------------------------------------------
    # The PROXY protocol header (before the greeting)

    async def _read_proxy_header(self) -> None:
        from . import proxy_protocol

        self._proxy_done = False
        assert self.session is not None
        try:
            while True:
                try:
                    parsed = proxy_protocol.parse_header(self._buf)
                except proxy_protocol.ProxyError as error:
                    log.warning("%r invalid PROXY header: %s", self.session.peer, error)
                    self._close()
                    return
                if parsed is not None:
                    break
                await self._wait_for_input()
            proxy_data, consumed = parsed
            del self._buf[:consumed]
            if not self._proxy_peer_trusted():
                log.warning("%r sent a PROXY header but is not a trusted proxy", self.session.peer)
                self._close()
                return
            self.session.proxy_data = proxy_data
            status = await self._call_handler_hook("PROXY", proxy_data)
            if (status is MISSING and not proxy_data.valid) or not status:
                self._close()
                return
        except ConnectionError:
            return
        finally:
            self._runner = None
        self._proxy_done = True
        self._last_activity = self.loop.time()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self._timeout_duration, self._on_timer)
        self._greet()
        if self._buf:
            self._runner = self.loop.create_task(self._run())

    proxy_trusted_networks: Iterable[str] = ()

    def _proxy_peer_trusted(self) -> bool:
        networks = tuple(self.proxy_trusted_networks or ())
        if not networks:
            return True
        from .proxy_protocol import is_trusted

        peer = self.session.peer if self.session is not None else None
        host = peer[0] if isinstance(peer, tuple) else None
        return host is not None and is_trusted(host, networks)

    # ------------------------------------------------------------------
    # The command loop

    async def _run(self) -> None:
        try:
            while not self._closing:
                line = self._next_line(self._read_limit)
                if line is None:
                    break
                await self._dispatch(line)
        except ConnectionError:
            pass
        finally:
            self._runner = None
            self._flush()
            if self._eof and not self._closing and self.transport is not None:
                self._close()

    async def _dispatch(self, line: bytes | _TooLong) -> None:
        if isinstance(line, _TooLong):
            await self.push(LINE_TOO_LONG)
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            await self.push("500 Error: bad syntax")
            return
        if b"\x00" in line or b"\r" in line:
            await self.push("501 5.5.2 Syntax error: NUL or bare CR in command")
            return
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.decode("ascii").upper()
        except UnicodeDecodeError:
            await self.push("500 Error: bad syntax")
            return
        arg = await self._decode_arg(arg_bytes.strip())
        if arg is MISSING:
            return
        assert self.session is not None
        limit = (
            self.command_size_limits.get(verb, self.command_size_limit)
            if self.session.extended_smtp
            else self.command_size_limit
        )
        if len(line) > limit:
            await self.push(AUTH_LINE_TOO_LONG if verb == "AUTH" else LINE_TOO_LONG)
            return
        if not await self._allowed(verb):
            return
        method = self._verbs.get(verb)
        if method is None:
            await self._unknown(verb)
            return
        self._last_activity = self.loop.time()
        try:
            await method(self, arg)
        except ConnectionError:
            raise
        except Exception as error:
            await self.push(await self.handle_exception(error))

    async def _decode_arg(self, arg_bytes: bytes) -> str | _Missing | None:
        if not arg_bytes:
            return None
        try:
            return arg_bytes.decode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        except UnicodeDecodeError:
            if self.enable_SMTPUTF8:
                await self.push("500 5.5.2 Error: invalid UTF-8 in command")
            else:
                await self.push("500 Error: strict ASCII mode")
            return MISSING

    async def _allowed(self, verb: str) -> bool:
        """Apply the TLS policy and call limits before running a command."""
        if not self._tls_handshake_okay and verb != "QUIT":
            await self.push("554 Command refused due to lack of security")
            return False
        if self.require_starttls and not self._tls_active and verb not in self._allowed_before_tls:
            await self.push("530 Must issue a STARTTLS command first")
            return False
        if self._call_limits is not None:
            budget = self._call_budget
            if budget is None:
                budget = self._call_budget = {}
            used = budget.get(verb, 0) + 1
            budget[verb] = used
            if used > self._call_limits.get(verb, self._call_limits["*"]):
                log.warning(
                    "%r sent %s too many times", self.session.peer if self.session else None, verb
                )
                await self.push(f"421 4.7.0 {verb} sent too many times")
                self._close()
                return False
        return True

    _allowed_before_tls = ALLOWED_BEFORE_STARTTLS

    async def _unknown(self, verb: str) -> None:
        self._unknown_budget -= 1
        if self._unknown_budget < 1:
            await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
            self._close()
            return
        await self.push(f'500 Error: command "{verb}" not recognized')

    async def handle_exception(self, error: Exception) -> str:
        """Turn an exception raised while handling a command into a reply.

        The handler's ``handle_exception(error)`` decides when it has one;
        otherwise the client gets ``451 4.3.0`` and the traceback goes to the
        log. Exception text never reaches the client unless the handler puts
        it there.
        """
        peer = self.session.peer if self.session is not None else None
        log.error("%r error while handling a command", peer, exc_info=error)
        hook = getattr(self.event_handler, "handle_exception", None)
        if hook is None:
            return INTERNAL_ERROR
        try:
            status = hook(error)
            if inspect.isawaitable(status):
                status = await status
        except Exception:
            log.exception("%r handle_exception() raised", peer)
            return INTERNAL_ERROR
        return status if isinstance(status, str) and status else INTERNAL_ERROR

    # ------------------------------------------------------------------
    # Handler hooks

    def _hook(self, name: str) -> Callable[..., Any] | None:
        hook: Callable[..., Any] | None = getattr(self.event_handler, "handle_" + name, None)
        return hook

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        hook = self._hook(command)
        if hook is None:
            return MISSING
        status = hook(self, self.session, self.envelope, *args)
        if inspect.isawaitable(status):
            status = await status
        return status

    async def check_helo_needed(self, helo: str = "HELO") -> bool:
        """Reply ``503`` and return True when the client has not greeted yet."""
        assert self.session is not None
        if not self.session.host_name:
            await self.push(f"503 Error: send {helo} first")
            return True
        return False

    async def check_auth_needed(self, caller_method: str) -> bool:
        """Reply ``530`` and return True when AUTH is required and missing."""
        assert self.session is not None
        if self._auth_required and not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return True
        return False

    # ------------------------------------------------------------------
    # Commands

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        if not hostname:
            await self.push("501 Syntax: HELO hostname")
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = False
        status = await self._call_handler_hook("HELO", hostname)
        if status is MISSING:
            self.session.host_name = hostname
            status = f"250 {self.hostname}"
        await self.push(status)

    def _ehlo_lines(self) -> list[str]:
        lines = [f"250-{self.hostname}"]
        if self.data_size_limit:
            lines.append(f"250-SIZE {self.data_size_limit}")
        if not self._decode_data:
            lines.append("250-8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("250-SMTPUTF8")
        lines.append("250-PIPELINING")
        if self.tls_context and not self._tls_active:
            lines.append("250-STARTTLS")
        mechanisms = self._advertised_mechanisms()
        if mechanisms:
            lines.append("250-AUTH " + " ".join(mechanisms))
        return lines

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = True
        responses = self._ehlo_lines()
        if hasattr(self, "ehlo_hook"):
            warnings.warn(
                "Use handler.handle_EHLO() instead of .ehlo_hook()",
                DeprecationWarning,
                stacklevel=2,
            )
            for line in responses:
                await self.push(line)
            responses = []
            await self.ehlo_hook()
        hook = self._hook("EHLO")
        if hook is None:
            self.session.host_name = hostname
            responses.append("250 HELP")
        elif _ehlo_hook_version(hook) == 4:
            # Deprecated form: replies so far go out, the hook sends the last.
            for line in responses:
                await self.push(line)
            responses = [await self._call_handler_hook("EHLO", hostname)]
        else:
            responses.append("250 HELP")
            responses = await self._call_handler_hook("EHLO", hostname, responses)
        for line in responses:
            await self.push(line)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str | None) -> None:
        status = await self._call_handler_hook("NOOP", arg)
        await self.push("250 OK" if status is MISSING else status)

    @syntax("QUIT")
    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            await self.push("501 Syntax: QUIT")
            return
        status = await self._call_handler_hook("QUIT")
        await self.push("221 Bye" if status is MISSING else status)
        self._close()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.push("501 Syntax: STARTTLS")
            return
        if not self.tls_context:
            await self.push("454 TLS not available")
            return
        if self._tls_active:
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await self._start_tls()

    async def _start_tls(self) -> None:
        assert self.tls_context is not None and self.session is not None
        self._write_now("220 Ready to start TLS")
        # RFC 3207 §4.2 and CVE-2011-0411: whatever the client pipelined
        # after STARTTLS in plaintext is thrown away, never executed.
        self._buf.clear()
        old = self.transport
        assert old is not None
        try:
            new = await self.loop.start_tls(
                old,
                self,
                self.tls_context,
                server_side=True,
                ssl_handshake_timeout=self.tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as error:
            log.info("%r TLS handshake failed: %s", self.session.peer, error)
            self._closing = True
            old.abort()  # type: ignore[attr-defined]
            raise ConnectionResetError("TLS handshake failed") from error
        if new is None or self._closing:
            raise ConnectionResetError("connection closed during the TLS handshake")
        self.transport = new
        self._transport = new
        self._buf.clear()
        # RFC 3207 §4.2: forget everything learnt before TLS.
        peer, proxy_data = self.session.peer, self.session.proxy_data
        session = self.session = self._create_session()
        session.peer, session.proxy_data = peer, proxy_data
        session.ssl = _ssl_info(new)
        self._set_rset_state()
        self._tls_active = True
        hook = self._hook("STARTTLS")
        if hook is not None:
            okay = hook(self, session, self.envelope)
            if inspect.isawaitable(okay):
                okay = await okay
            self._tls_handshake_okay = bool(okay)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str | None) -> None:
        if await self.check_auth_needed("HELP"):
            return
        code = 250
        if arg:
            method = self._verbs.get(arg.upper())
            if method is not None and self._syntax_available(method):
                assert self.session is not None
                text = method.__smtp_syntax__  # type: ignore[attr-defined]
                extended = method.__smtp_syntax_extended__  # type: ignore[attr-defined]
                if self.session.extended_smtp and extended:
                    text += extended
                await self.push(f"250 Syntax: {text}")
                return
            code = 501
        commands = sorted(
            name for name, method in self._verbs.items() if self._syntax_available(method)
        )
        await self.push(f"{code} Supported commands: {' '.join(commands)}")

    def _syntax_available(self, method: Callable[..., Any]) -> bool:
        if not hasattr(method, "__smtp_syntax__"):
            return False
        when = getattr(method, "__smtp_syntax_when__", None)
        return bool(getattr(self, when)) if when else True

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        if await self.check_auth_needed("VRFY"):
            return
        if not arg:
            await self.push("501 Syntax: VRFY <address>")
            return
        try:
            address, _ = parse_path(arg, local_part_limit=self.local_part_limit)
        except GrammarError:
            await self.push(f"502 Could not VRFY {arg}")
            return
        status = await self._call_handler_hook("VRFY", address)
        await self.push(
            "252 Cannot VRFY user, but will accept message and attempt delivery"
            if status is MISSING
            else status
        )

    def _path_and_params(
        self, keyword: str, arg: str | None, *, allow_null: bool
    ) -> tuple[str, list[str]] | str:
        """Parse ``FROM:<path> params`` / ``TO:<path> params``.

        Returns ``(address, options)`` or the reply to send.
        """
        assert self.session is not None
        syntax_error = f"501 Syntax: {'MAIL FROM' if keyword == 'FROM:' else 'RCPT TO'}: <address>"
        if self.session.extended_smtp:
            syntax_error += " [SP <mail-parameters>]"
        rest = strip_keyword(keyword, arg) if arg is not None else None
        if rest is None:
            return syntax_error
        try:
            address, params = parse_path(
                rest, local_part_limit=self.local_part_limit, allow_null=allow_null
            )
        except GrammarError as error:
            return error.reply
        if not address or (params and not self.session.extended_smtp):
            return syntax_error
        options = params.upper().split()
        if parse_params(options) is None:
            return syntax_error
        return address, options

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        assert self.envelope is not None
        parsed = self._path_and_params("FROM:", arg, allow_null=True)
        if isinstance(parsed, str):
            await self.push(parsed)
            return
        address, options = parsed
        if self.envelope.mail_from:
            await self.push("503 Error: nested MAIL command")
            return
        error = self._check_mail_params(options)
        if error:
            await self.push(error)
            return
        status = await self._call_handler_hook("MAIL", address, options)
        if status is MISSING:
            self.envelope.mail_from = address
            self.envelope.mail_options.extend(options)
            status = "250 OK"
        await self.push(status)

    def _check_mail_params(self, options: list[str]) -> str | None:
        """Validate MAIL's ESMTP parameters; return the error reply, if any."""
        assert self.session is not None and self.envelope is not None
        params = parse_params(options)
        assert params is not None
        syntax_error = "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
        if not self._decode_data:
            body = params.pop("BODY", "7BIT")
            if body not in ("7BIT", "8BITMIME"):
                return "501 Error: BODY can only be one of 7BIT, 8BITMIME"
        smtputf8 = params.pop("SMTPUTF8", False)
        if not isinstance(smtputf8, bool):
            return "501 Error: SMTPUTF8 takes no arguments"
        if smtputf8 and not self.enable_SMTPUTF8:
            return "501 Error: SMTPUTF8 disabled"
        self.envelope.smtp_utf8 = smtputf8
        size = params.pop("SIZE", None)
        if size is not None:
            if isinstance(size, bool) or not size.isdigit():
                return syntax_error
            if self.data_size_limit and int(size) > self.data_size_limit:
                return "552 Error: message size exceeds fixed maximum message size"
        if params:
            return "555 MAIL FROM parameters not recognized or not implemented"
        return None

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        assert self.envelope is not None
        if not self.envelope.mail_from:
            await self.push("503 Error: need MAIL command")
            return
        parsed = self._path_and_params("TO:", arg, allow_null=False)
        if isinstance(parsed, str):
            await self.push(parsed)
            return
        address, options = parsed
        if options:
            await self.push("555 RCPT TO parameters not recognized or not implemented")
            return
        if len(self.envelope.rcpt_tos) >= self.max_recipients:
            await self.push("452 4.5.3 Error: too many recipients")
            return
        status = await self._call_handler_hook("RCPT", address, options)
        if status is MISSING:
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(options)
            status = "250 OK"
        await self.push(status)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self.push("501 Syntax: RSET")
            return
        self._set_rset_state()
        if hasattr(self, "rset_hook"):
            warnings.warn(
                "Use handler.handle_RSET() instead of .rset_hook()",
                DeprecationWarning,
                stacklevel=2,
            )
            await self.rset_hook()
        status = await self._call_handler_hook("RSET")
        await self.push("250 OK" if status is MISSING else status)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            error = await self._receive_data()
            if error is not None:
                await self.push(error)
                return
            status = await self._deliver()
        finally:
            self._set_post_data_state()
        await self.push(status)

    async def _receive_data(self) -> str | None:
        """Read the message into the envelope; return an error reply or None."""
        assert self.envelope is not None
        decoder = DataDecoder(self.data_size_limit, self.line_length_limit)
        stream = self._hook("DATA_CHUNK")
        self._streaming = stream is not None
        failure: Exception | None = None
        try:
            if self._buf:
                end = decoder.feed(bytes(self._buf))
                if end < 0:
                    self._buf.clear()
                else:
                    del self._buf[:end]
            self._data_started = self._last_activity = self.loop.time()
            while True:
                if (
                    stream is not None
                    and decoder.chunks
                    and decoder.error is None
                    and failure is None
                ):
                    failure = await self._stream_chunk(stream, decoder.take())
                if decoder.done:
                    break
                self._decoder = decoder
                await self._wait_for_input()
        except ConnectionError:
            if stream is not None:
                await self._data_abort("connection lost")
            raise
        finally:
            self._decoder = None
            self._streaming = False
        if decoder.error is not None:
            if stream is not None:
                await self._data_abort(decoder.error)
            return decoder.error
        if failure is not None:
            await self._data_abort("the handler failed")
            return await self.handle_exception(failure)
        if stream is None:
            return self._set_content(decoder.take())
        return None

    async def _stream_chunk(self, stream: Callable[..., Any], chunk: bytes) -> Exception | None:
        try:
            result = stream(self, self.session, self.envelope, chunk)
            if inspect.isawaitable(result):
                await result
        except ConnectionError:
            raise
        except Exception as error:
            return error
        finally:
            self._resume_reading()
        return None

    async def _data_abort(self, reason: str) -> None:
        hook = self._hook("DATA_ABORT")
        if hook is None:
            return
        try:
            result = hook(self, self.session, self.envelope, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("handle_DATA_ABORT raised")

    def _feed_decoder(self, decoder: DataDecoder, data: bytes) -> None:
        self._last_activity = self.loop.time()
        end = decoder.feed(data)
        if end >= 0:
            self._decoder = None
            if end < len(data):
                self._buf += data[end:]
            self._wake()
        elif self._streaming and decoder.chunks:
            self._wake()
            if decoder.pending > _STREAM_HIGH:
                self._pause_reading()

    def _set_content(self, original: bytes) -> str | None:
        assert self.envelope is not None
        content: bytes | str = original
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original.decode("ascii")
                except UnicodeDecodeError:
                    return "500 Error: strict ASCII mode"
        self.envelope.content = content
        self.envelope.original_content = original
        return None

    async def _deliver(self) -> Any:
        """Give the received message to the handler; return the DATA reply."""
        if self._hook("DATA") is not None:
            status = await self._call_handler_hook("DATA")
            return "250 OK" if status is MISSING else status
        process = getattr(self.event_handler, "process_message", None)
        if process is None:
            return "250 OK"
        warnings.warn(
            "Use handler.handle_DATA() instead of .process_message()",
            DeprecationWarning,
            stacklevel=2,
        )
        assert self.session is not None and self.envelope is not None
        envelope = self.envelope
        status = process(self.session.peer, envelope.mail_from, envelope.rcpt_tos, envelope.content)
        if inspect.isawaitable(status):
            status = await status
        return "250 OK" if status is None else status

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self.push("502 EXPN not implemented")


@functools.lru_cache(maxsize=256)
def _ehlo_hook_version_of(func: Callable[..., Any], bound: bool) -> int:
    count = len(inspect.signature(func).parameters) - bound
    if count == 4:
        warnings.warn(
            "Use the 5-argument handle_EHLO(server, session, envelope, hostname, responses) hook; "
            "the 4-argument form is deprecated",
            DeprecationWarning,
            stacklevel=4,
        )
    elif count != 5:
        raise RuntimeError(f"Unsupported handle_EHLO signature: {count} parameters (expected 5)")
    return count


def _ehlo_hook_version(hook: Callable[..., Any]) -> int:
    func = getattr(hook, "__func__", None)
    if func is None:
        return _ehlo_hook_version_of(hook, False)
    return _ehlo_hook_version_of(func, True)


_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(SMTP.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("loop", "config")
}
_config_cache: dict[int, tuple[Any, dict[str, Any]]] = {}


def _merge_config(config: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Settings from a ServerConfig, overridden by keywords that differ from their default."""
    cached = _config_cache.get(id(config))
    if cached is None or cached[0] is not config:
        # Building the TLS context reads files: once per config, not per connection.
        if len(_config_cache) > 32:
            _config_cache.clear()
        cached = _config_cache[id(config)] = (config, config.to_smtp_kwargs())
    merged = dict(cached[1])
    for name, value in given.items():
        if name not in _DEFAULTS or (value is not _DEFAULTS[name] and value != _DEFAULTS[name]):
            merged[name] = value
    for name in ("authenticator", "auth_callback"):
        merged.setdefault(name, given.get(name))
    return merged
