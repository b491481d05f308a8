"""The documented ``SMTP`` protocol class (RFC 5321), its decorators and types.

The class is an :class:`asyncio.StreamReaderProtocol`, so ``lambda:
SMTP(handler)`` is a protocol factory for :meth:`asyncio.loop.create_server`.
It is put together from three layers, each in its own module:

* :mod:`smtpkit._connection`: the I/O shell (buffer, replies, timers, the
  command loop), which feeds the I/O-free parsers in :mod:`smtpkit._grammar`
  and :mod:`smtpkit._data`;
* :mod:`smtpkit._commands`: the ``smtp_<VERB>`` commands of RFC 5321/3207;
* :mod:`smtpkit.auth._command`: AUTH (RFC 4954) and its mechanisms.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
import ssl
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._commands import Commands, TLSSetupException, check_ehlo_hook
from ._connection import ALLOWED_BEFORE_STARTTLS, AUTH_LINE_LIMIT
from ._limits import ConnectionLimiter
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
    "AuthMechanismType",
    "AuthResult",
    "AuthenticatorType",
    "ConnectionLimiter",
    "Envelope",
    "LoginPassword",
    "Session",
    "TLSSetupException",
    "_Missing",
    "auth_mechanism",
    "login_always_fail",
    "syntax",
]

log = logging.getLogger("smtpkit.smtp")

__ident__ = f"smtpkit {__version__}"
DATA_SIZE_DEFAULT = 33_554_432
CALL_LIMIT_DEFAULT = 20
BOGUS_LIMIT = 5
#: The type of an ``auth_<NAME>`` mechanism: called with the server and the
#: AUTH arguments, it returns an awaitable of the outcome.
AuthMechanismType = Callable[["SMTP", list[str]], Awaitable[Any]]


@functools.lru_cache(maxsize=1)
def _fqdn() -> str:
    # socket.getfqdn() may consult DNS: do it once per process, not per connection.
    return socket.getfqdn()


@functools.lru_cache(maxsize=64)
def _command_limits(mail_limit: int) -> dict[str, int]:
    # Shared by every connection with the same settings: an idle connection
    # should not carry its own copy.
    return {"MAIL": mail_limit, "AUTH": AUTH_LINE_LIMIT}


def _current_loop() -> asyncio.AbstractEventLoop:
    """The running loop; outside one, the thread's event loop, made once if there is none.

    Like aiosmtpd: an ``SMTP()`` built before the loop runs belongs to the
    loop that ``asyncio.get_event_loop()`` will return, and building many
    never creates more than one loop per thread.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    with warnings.catch_warnings():
        # Asking for the thread's loop when none is set is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop


# TLS contexts already warned about (the warnings are given once per context).
_warned_contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


def _warn_tls_context(context: ssl.SSLContext) -> None:
    """Warn, as aiosmtpd does, about a context that checks client certificates."""
    if context in _warned_contexts:
        return
    _warned_contexts.add(context)
    if context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
        log.warning(
            "tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
            "this might cause client connection problems"
        )
    elif context.check_hostname:
        log.warning(
            "tls_context.check_hostname == True; this might cause client connection problems"
        )


class SMTP(AuthCommands, Commands):
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
        # StreamReaderProtocol.__init__ is not called: its StreamReader,
        # close future and drain-waiter queue are never used here (the class
        # keeps its own buffer and flow control), and an idle connection
        # should cost little.
        self.__ident__ = ident or __ident__
        check_ehlo_hook(handler)
        self.event_handler = handler
        if data_size_limit is not None and not isinstance(data_size_limit, int):
            raise TypeError(f"data_size_limit must be an int or None, not {data_size_limit!r}")
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.hostname = hostname or _fqdn()
        self.tls_context = tls_context
        if tls_context is not None:
            _warn_tls_context(tls_context)
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
        self._init_state()

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
            "connection_limiter",
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
        self.command_size_limits = _command_limits(self.command_size_limit + extra)
        self._read_limit = max(
            self.line_length_limit, AUTH_LINE_LIMIT + 2, *self.command_size_limits.values()
        )
        self._check_proxy_networks(self.proxy_trusted_networks)

    @staticmethod
    def _check_proxy_networks(networks: Any) -> None:
        """Fail at construction, not at each connection, on a bad network."""
        if isinstance(networks, str):
            raise TypeError(
                "proxy_trusted_networks must be a list of CIDR networks, "
                f"not the string {networks!r}"
            )
        if networks:
            from .proxy_protocol import parse_networks

            parse_networks(networks)

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
    # Documented attributes

    @property
    def authenticated(self) -> bool:
        """Whether the client authenticated in this session."""
        return bool(self.session is not None and self.session.authenticated)

    @property
    def max_command_size_limit(self) -> int:
        return max(self.command_size_limit, *self.command_size_limits.values())

    # ------------------------------------------------------------------
    # Compatibility: attributes that code written for aiosmtpd reads.
    # (``_Missing``, in ``challenge_auth``'s documented return type, is
    # exported above beside ``MISSING``.)

    #: What a subclass set ``_tls_protocol`` to (a fixture that starts TLS itself).
    _tls_protocol_set: Any = None

    @property
    def _tls_protocol(self) -> Any:
        """The TLS protocol object while TLS is active, None before.

        aiosmtpd keeps its ``SSLProtocol`` here, and client test suites read
        it to know whether the session is encrypted.
        """
        if self._tls_protocol_set is not None:
            return self._tls_protocol_set
        transport = self.transport
        if not self._tls_active or transport is None:
            return None
        return getattr(transport, "_ssl_protocol", None) or transport

    @_tls_protocol.setter
    def _tls_protocol(self, value: Any) -> None:
        self._tls_protocol_set = value


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
