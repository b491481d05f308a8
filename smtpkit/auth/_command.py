"""The AUTH command (RFC 4954) and the built-in PLAIN and LOGIN mechanisms.

This is a mixin of :class:`smtpkit.smtp.SMTP`; it relies on the server's
``_push``, ``_readline``, ``session``, ``envelope`` and ``_close``.

A mechanism is a coroutine ``auth_<NAME>(server, args)`` found on the SMTP
class or on the handler (the handler's wins), named by the method name or by
:func:`auth_mechanism`. It returns an :class:`AuthResult` (or, in the older
style, ``None`` when it already replied, ``MISSING``/``False`` for bad
credentials and anything else for success).
"""

from __future__ import annotations

import binascii
import inspect
import logging
import re
import warnings
import weakref
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .. import _replies as replies

# MISSING and _Missing live in the bottom module; they stay importable from here.
from .._constants import MISSING as MISSING
from .._constants import _Missing as _Missing
from .._replies import Reply, SMTPReplyError
from .._syntax import syntax
from ._types import AuthResult, LoginPassword
from .sasl import SASLError, parse_plain

if TYPE_CHECKING:
    from .._events import Record
    from .._session import Envelope, Session
    from ..smtp import SMTP

log = logging.getLogger("smtpkit.smtp")

_F = TypeVar("_F", bound=Callable[..., Any])

# The bare lines, for code that compares them as strings.
AUTH_SUCCESS = replies.AUTH_SUCCESS.format()
AUTH_INVALID = replies.AUTH_INVALID.format()
AUTH_LINE_TOO_LONG = replies.AUTH_LINE_TOO_LONG.format()
# RFC 4954 §4: a client response may be up to 12288 octets long.
_RESPONSE_LIMIT = 12288
_VALID_NAME = re.compile(r"[A-Z0-9_-]+")


AuthenticatorType = Callable[["SMTP", "Session", "Envelope", str, Any], AuthResult]
AuthCallbackType = Callable[[str, bytes, bytes], bool]


def auth_mechanism(actual_name: str) -> Callable[[_F], _F]:
    """Name the AUTH mechanism an ``auth_*`` method implements.

    Raises:
        ValueError: the name has characters other than ``A-Z 0-9 _ -``.
    """
    name = actual_name.upper()
    if not _VALID_NAME.fullmatch(name):
        raise ValueError(
            f"Invalid AUTH mechanism name: {actual_name!r} (expected A-Z, 0-9, '_' and '-')"
        )

    def decorator(func: _F) -> _F:
        func.__auth_mechanism_name__ = name  # type: ignore[attr-defined]
        return func

    return decorator


def login_always_fail(mechanism: str, login: bytes, password: bytes) -> bool:
    """The default ``auth_callback``: nobody gets in."""
    return False


class _Mechanism(NamedTuple):
    attribute: str
    on_handler: bool


_OfferedKey = tuple[type, frozenset[str]]
# Keyed weakly on the server class: a class compiled by an App (and the
# handler classes it is paired with) can be collected once unused.
_offered_cache: weakref.WeakKeyDictionary[type, dict[_OfferedKey, dict[str, _Mechanism]]] = (
    weakref.WeakKeyDictionary()
)


def _mechanisms_of(server_cls: type, handler_cls: type) -> dict[str, _Mechanism]:
    """The AUTH mechanisms of a server class and a handler class."""
    found: dict[str, _Mechanism] = {}
    for cls, on_handler in ((server_cls, False), (handler_cls, True)):
        for attribute in dir(cls):
            if not attribute.startswith("auth_"):
                continue
            func = getattr(cls, attribute)
            if not callable(func):
                continue
            name = getattr(func, "__auth_mechanism_name__", attribute[5:].replace("__", "-"))
            found[name] = _Mechanism(attribute, on_handler)
    return found


def _offered(
    server_cls: type, handler_cls: type, excluded: frozenset[str]
) -> dict[str, _Mechanism]:
    """The mechanisms offered, without the excluded ones; one shared dict per setting.

    The first server built with a setting logs the mechanisms it offers.
    """
    per_class = _offered_cache.get(server_cls)
    if per_class is None:
        per_class = _offered_cache[server_cls] = {}
    offered = per_class.get((handler_cls, excluded))
    if offered is None:
        table = _mechanisms_of(server_cls, handler_cls)
        offered = {n: m for n, m in table.items() if n not in excluded}
        if len(per_class) > 64:
            per_class.clear()  # handler classes made on the fly must not pile up
        per_class[handler_cls, excluded] = offered
        log.info(
            "Available AUTH mechanisms: %s",
            " ".join(n if m.on_handler else n + "(builtin)" for n, m in sorted(offered.items())),
        )
    return offered


class AuthCommands:
    """The AUTH half of the SMTP class."""

    if TYPE_CHECKING:
        session: Session | None
        envelope: Envelope | None
        event_handler: Any
        _tls_active: bool
        _replies_sent: int
        _last_reply: bytes
        _observed: Record | None

        async def push(self, status: Any) -> None: ...
        async def _push(self, status: Reply | str | bytes, *, exempt: bool = ...) -> None: ...
        async def _push_hook_reply(
            self, status: object, source: str, *, exempt: bool = ...
        ) -> None: ...
        async def _readline(self, limit: int = ...) -> Any: ...
        def _close(self) -> None: ...
        async def _call_handler_hook(self, command: str, *args: Any) -> Any: ...
        async def check_helo_needed(self, helo: str = ...) -> bool: ...

    max_auth_failures: int
    AuthLoginUsernameChallenge: str
    AuthLoginPasswordChallenge: str

    def _init_auth(
        self,
        *,
        auth_required: bool,
        auth_require_tls: bool,
        auth_exclude_mechanism: Iterable[str] | None,
        auth_callback: AuthCallbackType | None,
        authenticator: AuthenticatorType | None,
    ) -> None:
        self._auth_required = auth_required
        self._auth_require_tls = auth_require_tls
        if auth_required and not auth_require_tls:
            warnings.warn(
                "auth_required=True with auth_require_tls=False lets clients send "
                "passwords in clear text",
                stacklevel=4,
            )
        if authenticator is not None:
            self._authenticator: AuthenticatorType | None = authenticator
            self._auth_callback: AuthCallbackType | None = None
        else:
            if auth_callback is not None:
                warnings.warn(
                    "auth_callback is deprecated; use authenticator",
                    DeprecationWarning,
                    stacklevel=4,
                )
            self._authenticator = None
            self._auth_callback = auth_callback or login_always_fail
        excluded = frozenset(name.upper() for name in auth_exclude_mechanism or ())
        self._auth_methods = _offered(type(self), type(self.event_handler), excluded)
        self._auth_failures = 0

    def _advertised_mechanisms(self) -> list[str]:
        if self._auth_require_tls and not self._tls_active:
            return []
        return sorted(self._auth_methods)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str | None) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None and self.envelope is not None
        self._check_auth_allowed(arg)
        assert arg is not None
        args = arg.split()
        name = args[0].upper()
        before = self._replies_sent
        status = await self._call_handler_hook("AUTH", args)
        source = "handle_AUTH"
        if status is MISSING:
            source = f"the AUTH {name} mechanism"
            mechanism = self._auth_methods[name]
            owner = self.event_handler if mechanism.on_handler else self
            result = await getattr(owner, mechanism.attribute)(self, args)
            status = self._auth_status(result)
            if status is None and not self._final_reply_sent(before):
                # The mechanism said it replied, but the client is still
                # waiting for the end of the exchange: never leave it hanging.
                status = replies.AUTH_INVALID
        if status is not None:
            await self._push_hook_reply(status, source)
        if self._observed is not None:
            self._observed.auth(name, bool(self.session.authenticated), self.session._login_data)
        if self.session.authenticated:
            log.info("%r authenticated with %s", self.session.peer, name)
        else:
            log.info("%r failed to authenticate with %s", self.session.peer, name)
            await self._count_auth_failure()

    def _final_reply_sent(self, before: int) -> bool:
        """Whether a reply other than a ``334`` challenge went out since ``before``."""
        return self._replies_sent > before and not self._last_reply.startswith(b"334")

    def _check_auth_allowed(self, arg: str | None) -> None:
        """Refuse this AUTH command before any exchange, when it may not run.

        Raises:
            SMTPReplyError: the reply refusing it.
        """
        assert self.session is not None and self.envelope is not None
        if not self.session.extended_smtp:
            raise SMTPReplyError(replies.AUTH_NOT_RECOGNIZED)
        if self._auth_require_tls and not self._tls_active:
            raise SMTPReplyError(replies.ENCRYPTION_REQUIRED)
        if self.session.authenticated:
            raise SMTPReplyError(replies.ALREADY_AUTHENTICATED)
        if self.envelope.mail_from:
            # RFC 4954 §4: not permitted during a mail transaction.
            raise SMTPReplyError(replies.AUTH_IN_TRANSACTION)
        if not arg:
            raise SMTPReplyError(replies.AUTH_NOT_ENOUGH_VALUES)
        args = arg.split()
        if len(args) > 2:
            raise SMTPReplyError(replies.AUTH_TOO_MANY_VALUES)
        if args[0].upper() not in self._auth_methods:
            raise SMTPReplyError(replies.AUTH_UNKNOWN_MECHANISM)

    def _auth_status(self, result: Any) -> Reply | str | None:
        """Record the outcome of a mechanism; return the reply to send, if any."""
        assert self.session is not None
        if isinstance(result, AuthResult):
            if result.success:
                self.session.authenticated = True
                self.session.auth_data = result.auth_data
                self.session._login_data = getattr(result.auth_data, "login", None)
                return result.message or replies.AUTH_SUCCESS
            if result.handled:
                return None
            return result.message or replies.AUTH_INVALID
        if result is None:
            return None
        if result is MISSING or result is False:
            return replies.AUTH_INVALID
        self.session.authenticated = True
        self.session._login_data = result
        return replies.AUTH_SUCCESS

    async def _count_auth_failure(self) -> None:
        self._auth_failures += 1
        if self.max_auth_failures and self._auth_failures >= self.max_auth_failures:
            await self._push(replies.TOO_MANY_AUTH_FAILURES)
            self._close()

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> _Missing | bytes:
        """Send a ``334`` challenge and return the client's decoded answer.

        Args:
            challenge: the challenge, without the ``334`` prefix.
            encode_to_b64: base64-encode ``challenge`` before sending it.
            log_client_response: log the raw answer at DEBUG. It may contain
                credentials: leave it off outside debugging.

        Returns:
            The base64-decoded answer, or ``MISSING`` when the client sent
            ``*`` (abort) or something that is not base64 (the error reply
            has then been sent).
        """
        raw = challenge.encode() if isinstance(challenge, str) else challenge
        await self._push(b"334 " + (b64encode(raw) if encode_to_b64 else raw))
        line = await self._readline(_RESPONSE_LIMIT)
        if self._observed is not None:
            self._observed.secret_line()
        if not isinstance(line, bytes) or len(line) > _RESPONSE_LIMIT:
            await self._push(replies.AUTH_LINE_TOO_LONG)
            return MISSING
        if log_client_response:
            warnings.warn("AUTH exchange logging is on: credentials may be logged", stacklevel=2)
            log.debug("%r AUTH response: %r", self.session.peer if self.session else None, line)
        blob = line.strip()
        if blob == b"*":
            await self._push(replies.AUTH_ABORTED)
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except binascii.Error:
            await self._push(replies.CANNOT_DECODE_BASE64)
            return MISSING

    async def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        """Ask the authenticator (or the deprecated ``auth_callback``) about ``auth_data``.

        The documented authenticator is a plain function; one that returns an
        awaitable (a coroutine function, or a plain function run in a worker
        thread by the App) is awaited, so slow checks need not block the loop.

        Raises:
            TypeError: the authenticator returned something other than an
                AuthResult (the client then gets ``451``).
        """
        assert self.session is not None and self.envelope is not None
        if self._authenticator is not None:
            server: Any = self
            result = self._authenticator(server, self.session, self.envelope, mechanism, auth_data)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, AuthResult):
                raise TypeError(f"the authenticator returned {result!r}; expected an AuthResult")
            return result
        assert self._auth_callback is not None
        if not isinstance(auth_data, LoginPassword):
            # auth_callback only knows login and password.
            return AuthResult(success=False, handled=False)
        if self._auth_callback(mechanism, *auth_data):
            return AuthResult(success=True, handled=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    async def _decode_initial(self, args: list[str]) -> bytes | None:
        """Decode the initial response of ``AUTH <mechanism> <response>``.

        RFC 4954 §4: a zero-length initial response is sent as ``=``.
        """
        if args[1] == "=":
            return b""
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self._push(replies.CANNOT_DECODE_BASE64)
            return None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            data = await self.challenge_auth("")
            if data is MISSING:
                return AuthResult(success=False)
        else:
            initial = await self._decode_initial(args)
            if initial is None:
                return AuthResult(success=False)
            data = initial
        assert isinstance(data, bytes)
        try:
            credentials = parse_plain(data)
        except SASLError as error:
            await self._push(error.reply)
            return AuthResult(success=False)
        return await self._authenticate("PLAIN", credentials)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False)
        else:
            initial = await self._decode_initial(args)
            if initial is None:
                return AuthResult(success=False)
            login = initial
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._authenticate("LOGIN", LoginPassword(login, password))
