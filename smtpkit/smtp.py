"""The documented ``SMTP`` protocol class (RFC 5321), its decorators and types.

The class is an :class:`asyncio.StreamReaderProtocol`, so ``lambda:
SMTP(handler)`` is a protocol factory for :meth:`asyncio.loop.create_server`.
It is put together from three layers, each in its own module:

* :mod:`smtpkit._connection`: the I/O shell (buffer, replies, timers, the
  command loop), which feeds the I/O-free parsers in :mod:`smtpkit._grammar`
  and :mod:`smtpkit._data`;
* :mod:`smtpkit._commands`: the ``smtp_<VERB>`` commands of RFC 5321/3207;
* :mod:`smtpkit._xcommands`: XCLIENT, XFORWARD, LIMITS and REQUIRETLS;
* :mod:`smtpkit.auth._command`: AUTH (RFC 4954) and its mechanisms.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._commands import TLSSetupException
from ._connection import ALLOWED_BEFORE_STARTTLS
from ._limits import ConnectionLimiter
from ._session import Envelope, Session
from ._settings import (
    CALL_LIMIT_DEFAULT,
    KEYWORDS,
    Settings,
    give_warnings,
    set_defaults,
    settings_for,
)
from ._syntax import syntax
from ._version import __version__
from ._xcommands import XCommands
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
BOGUS_LIMIT = 5
#: The type of an ``auth_<NAME>`` mechanism: called with the server and the
#: AUTH arguments, it returns an awaitable of the outcome.
AuthMechanismType = Callable[["SMTP", list[str]], Awaitable[Any]]


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


class SMTP(AuthCommands, XCommands):
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
        values = (
            data_size_limit,
            enable_SMTPUTF8,
            decode_data,
            hostname,
            ident,
            tls_context,
            require_starttls,
            timeout,
            auth_required,
            auth_require_tls,
            auth_exclude_mechanism,
            auth_callback,
            command_call_limit,
            authenticator,
            proxy_protocol_timeout,
        )
        settings = settings_for(type(self), handler, values, extras, config)
        if settings.warnings:
            give_warnings(settings, stacklevel=2)
        self._use_settings(handler, loop, settings)

    # ------------------------------------------------------------------
    # Construction helpers

    @classmethod
    def _settings_for(cls, handler: Any, **keywords: Any) -> Settings:
        """The settings ``cls(handler, **keywords)`` would use (built once, then cached)."""
        config = keywords.pop("config", None)
        keywords.pop("loop", None)
        values = tuple(keywords.pop(name, _DEFAULTS[name]) for name in KEYWORDS)
        return settings_for(cls, handler, values, keywords, config)

    @classmethod
    def _with_settings(cls, handler: Any, settings: Settings) -> SMTP:
        """A new connection with settings built before, skipping ``__init__``.

        Only for a class whose ``__init__`` is SMTP's (an App's factory checks).
        """
        self = cls.__new__(cls)
        self._use_settings(handler, None, settings)
        return self

    def _use_settings(
        self, handler: Any, loop: asyncio.AbstractEventLoop | None, settings: Settings
    ) -> None:
        """Take the shared settings and set the per-connection state."""
        self.loop = loop if loop is not None else _current_loop()
        # StreamReaderProtocol.__init__ is not called: its StreamReader,
        # close future and drain-waiter queue are never used here (the class
        # keeps its own buffer and flow control), and an idle connection
        # should cost little.
        self._settings = settings
        self.event_handler = handler
        self.__ident__ = settings.ident
        self.hostname = settings.hostname
        self.data_size_limit = settings.data_size_limit
        self.enable_SMTPUTF8 = settings.enable_SMTPUTF8
        self._decode_data = settings.decode_data
        self.tls_context = settings.tls_context
        self.require_starttls = settings.require_starttls
        self._timeout_duration = settings.timeout
        self._proxy_timeout = settings.proxy_timeout
        self.command_size_limits = settings.command_size_limits
        self._auth_required = settings.auth_required
        self._auth_require_tls = settings.auth_require_tls
        self._authenticator = settings.authenticator
        self._auth_callback = settings.auth_callback
        self._auth_methods = settings.auth_methods
        self._auth_failures = 0
        for name, value in settings.instance_values:
            setattr(self, name, value)
        self._init_state()

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
set_defaults(_DEFAULTS)
