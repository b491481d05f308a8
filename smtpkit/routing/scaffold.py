"""The decorators shared by :class:`App` and :class:`Blueprint`.

Each decorator has a plain-call twin (``command`` / ``add_command``, …); both
check their arguments at once, build a spec and hand it to ``_add``, which an
App applies and a Blueprint records. Decorators return the function
unchanged, so it keeps its type and can still be called or tested directly.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, overload

from ..auth._command import auth_mechanism as _check_mechanism_name
from .patterns import RecipientPattern
from .registry import (
    AuthenticatorSpec,
    CommandSpec,
    ExceptionSpec,
    HookSpec,
    MechanismSpec,
    RouteSpec,
    Spec,
)
from .types import (
    HOOK_VERBS,
    AuthenticatorT,
    CommandT,
    ExceptionHandlerT,
    HookT,
    HookVerb,
    MechanismT,
    RouteT,
)

__all__ = ["Scaffold"]

# An SMTP verb: letters first, then letters, digits, '-' or '_'.
_VERB = re.compile(r"[A-Z][A-Z0-9_-]*")


class Scaffold(ABC):
    """Registration methods common to App and Blueprint."""

    @abstractmethod
    def _add(self, spec: Spec, *, once: bool) -> None:
        """Apply (App) or record (Blueprint) one registration.

        Args:
            spec: what to register.
            once: for a blueprint, apply it on its first registration only
                (everything but routes, which every registration adds again).
        """

    # -- commands ------------------------------------------------------------

    def command(
        self,
        name: str,
        *,
        syntax: str | None = None,
        extended: str | None = None,
        when: str | None = None,
        override: bool = False,
    ) -> Callable[[CommandT], CommandT]:
        """Register a new SMTP command: ``func(server, arg)``, like an ``smtp_<NAME>`` method.

        A coroutine function replies with ``await server.push(...)``; a plain
        function runs in a worker thread and returns its reply string (None
        sends nothing). A string returned by a coroutine function is pushed too.

        Args:
            name: the verb, such as ``"PING"`` (case-insensitive).
            syntax: the text ``HELP <name>`` shows (default: the name).
            extended: appended to ``syntax`` for clients that said EHLO.
            when: the name of a server attribute; while it is falsy the
                command is left out of HELP.
            override: allow replacing a command the server class already has.

        Returns:
            A decorator returning the function unchanged.

        Raises:
            ValueError: the name is not a valid verb.
        """
        _check_verb(name)

        def decorator(func: CommandT) -> CommandT:
            self.add_command(
                name, func, syntax=syntax, extended=extended, when=when, override=override
            )
            return func

        return decorator

    def add_command(
        self,
        name: str,
        func: CommandT,
        *,
        syntax: str | None = None,
        extended: str | None = None,
        when: str | None = None,
        override: bool = False,
    ) -> CommandT:
        """Register ``func`` as a command (the plain form of :meth:`command`).

        Returns:
            ``func``, unchanged.
        """
        verb = _check_verb(name)
        _check_callable(func, f"command {verb!r}")
        spec = CommandSpec(verb, func, syntax or verb, extended, when, override)
        self._add(spec, once=True)
        return func

    # -- hooks ---------------------------------------------------------------

    def hook(self, verb: HookVerb) -> Callable[[HookT], HookT]:
        """Add a function to the chain of the handler hook ``handle_<VERB>``.

        The function has the contract of that hook (``handle_RCPT(server,
        session, envelope, address, rcpt_options)``, …). Hooks of one verb run
        in registration order: None passes to the next, and the first other
        value decides (see ``docs/app.md`` for EHLO and the streaming hooks).

        Args:
            verb: one of :data:`~smtpkit.routing.types.HOOK_VERBS`.

        Returns:
            A decorator returning the function unchanged.

        Raises:
            ValueError: ``verb`` has no handler hook.
        """
        _check_hook_verb(verb)

        def decorator(func: HookT) -> HookT:
            self.add_hook(verb, func)
            return func

        return decorator

    def add_hook(self, verb: HookVerb, func: HookT) -> HookT:
        """Add ``func`` to a hook chain (the plain form of :meth:`hook`).

        Returns:
            ``func``, unchanged.
        """
        name = _check_hook_verb(verb)
        _check_callable(func, f"hook {name!r}")
        self._add(HookSpec(name, func), once=True)
        return func

    # -- AUTH ----------------------------------------------------------------

    def auth_mechanism(self, name: str) -> Callable[[MechanismT], MechanismT]:
        """Register an AUTH mechanism: ``func(server, args)``, like an ``auth_<NAME>`` method.

        It returns an :class:`~smtpkit.auth.AuthResult`; ``server.challenge_auth``
        runs the exchange. Prefer a coroutine function: a plain one runs in a
        worker thread, where it cannot await the exchange.

        Args:
            name: the mechanism name advertised in EHLO (``A-Z 0-9 _ -``).

        Returns:
            A decorator returning the function unchanged.

        Raises:
            ValueError: the name has other characters.
        """
        _check_mechanism_name(name)

        def decorator(func: MechanismT) -> MechanismT:
            self.add_auth_mechanism(name, func)
            return func

        return decorator

    def add_auth_mechanism(self, name: str, func: MechanismT) -> MechanismT:
        """Register ``func`` as a mechanism (the plain form of :meth:`auth_mechanism`).

        Returns:
            ``func``, unchanged.
        """
        _check_mechanism_name(name)
        _check_callable(func, f"AUTH mechanism {name!r}")
        self._add(MechanismSpec(name.upper(), func), once=True)
        return func

    @overload
    def authenticator(self, func: AuthenticatorT, /) -> AuthenticatorT: ...

    @overload
    def authenticator(
        self, *, required: bool = True
    ) -> Callable[[AuthenticatorT], AuthenticatorT]: ...

    def authenticator(self, func: Any = None, *, required: bool = True) -> Any:
        """Set the authenticator checking PLAIN and LOGIN credentials.

        Use as ``@app.authenticator`` or ``@app.authenticator(required=False)``.
        The function has the documented authenticator contract
        ``(server, session, envelope, mechanism, auth_data) -> AuthResult``;
        a plain function runs in a worker thread, a coroutine function is awaited.

        Args:
            func: the authenticator (when used without parentheses).
            required: require a successful AUTH before MAIL, RCPT and DATA.

        Returns:
            ``func`` unchanged, or a decorator returning it unchanged.
        """
        if func is not None:
            return self.set_authenticator(func, required=required)

        def decorator(func: AuthenticatorT) -> AuthenticatorT:
            return self.set_authenticator(func, required=required)

        return decorator

    def set_authenticator(self, func: AuthenticatorT, *, required: bool = True) -> AuthenticatorT:
        """Set the authenticator (the plain form of :meth:`authenticator`).

        Returns:
            ``func``, unchanged.
        """
        _check_callable(func, "the authenticator")
        self._add(AuthenticatorSpec(func, required), once=True)
        return func

    # -- exceptions ----------------------------------------------------------

    def exception_handler(
        self, exc_type: type[Exception]
    ) -> Callable[[ExceptionHandlerT], ExceptionHandlerT]:
        """Map an exception raised by a command, hook or route to an SMTP reply.

        The function receives the exception and returns the reply string;
        None (or anything that is not a string) gives ``451 4.3.0``. The most
        specific registered type along the exception's class hierarchy wins.

        Args:
            exc_type: the exception class handled.

        Returns:
            A decorator returning the function unchanged.
        """
        _check_exception_type(exc_type)

        def decorator(func: ExceptionHandlerT) -> ExceptionHandlerT:
            self.add_exception_handler(exc_type, func)
            return func

        return decorator

    def add_exception_handler(
        self, exc_type: type[Exception], func: ExceptionHandlerT
    ) -> ExceptionHandlerT:
        """Register an exception handler (the plain form of :meth:`exception_handler`).

        Returns:
            ``func``, unchanged.

        Raises:
            TypeError: ``exc_type`` is not an exception class.
        """
        _check_exception_type(exc_type)
        _check_callable(func, f"the exception handler for {exc_type.__qualname__}")
        self._add(ExceptionSpec(exc_type, func), once=True)
        return func

    # -- routes --------------------------------------------------------------

    def route(
        self,
        pattern: str,
        *,
        name: str | None = None,
        captures: Mapping[str, str] | None = None,
        **regexes: str,
    ) -> Callable[[RouteT], RouteT]:
        """Route the recipients matching ``pattern`` to a function.

        ``@app.route("(user)@example.com", user="[a-z.]+")``: recipients that
        match no route are refused at RCPT; after DATA each route gets the
        message once, as a :class:`~smtpkit.routing.RoutedMessage`.

        Args:
            pattern: literal text with named captures in parentheses.
            name: the route's name (default: the function's ``__name__``).
            captures: capture regexes by name (for captures called ``name``
                or ``captures``).
            **regexes: capture regexes by name.

        Returns:
            A decorator returning the function unchanged.

        Raises:
            ValueError: an invalid pattern or capture regex.
        """
        RecipientPattern.parse(pattern, {**(captures or {}), **regexes})

        def decorator(func: RouteT) -> RouteT:
            self.add_route(pattern, func, name=name, captures=captures, **regexes)
            return func

        return decorator

    def add_route(
        self,
        pattern: str,
        func: RouteT,
        *,
        name: str | None = None,
        captures: Mapping[str, str] | None = None,
        **regexes: str,
    ) -> RouteT:
        """Register a route (the plain form of :meth:`route`).

        Returns:
            ``func``, unchanged.
        """
        _check_callable(func, f"route {pattern!r}")
        spec = RouteSpec(pattern, func, name or _name_of(func), {**(captures or {}), **regexes})
        # Check the pattern now, so the error points at the decorator; a
        # domain-less pattern may get a blueprint's domain later.
        RecipientPattern.parse(spec.pattern, spec.captures)
        self._add(spec, once=False)
        return func


def _check_verb(name: str) -> str:
    verb = name.upper() if isinstance(name, str) else ""
    if not _VERB.fullmatch(verb):
        raise ValueError(
            f"command name {name!r}: expected a verb of letters, digits, '-' and '_', "
            "starting with a letter (such as 'PING')"
        )
    return verb


def _check_hook_verb(verb: str) -> str:
    name = verb.upper() if isinstance(verb, str) else ""
    if name not in HOOK_VERBS:
        raise ValueError(f"hook verb {verb!r}: expected one of {', '.join(HOOK_VERBS)}")
    return name


def _check_exception_type(exc_type: Any) -> None:
    if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
        raise TypeError(f"exception_handler({exc_type!r}): expected an Exception subclass")


def _check_callable(func: Any, what: str) -> None:
    if not callable(func):
        raise TypeError(f"{what}: expected a function, got {func!r}")


def _name_of(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__
