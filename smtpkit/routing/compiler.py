"""Compile an App's registrations into a subclass of the SMTP class.

The result is an ordinary subclass, as if written by hand:

* each command becomes an ``smtp_<NAME>`` coroutine method with its
  ``@syntax``, so the server's dispatch table and HELP find it;
* each AUTH mechanism becomes an ``auth_<NAME>`` method named with
  ``@auth_mechanism``;
* :class:`CompiledSMTP` adds what every app needs: the app's handler,
  config and authenticator as defaults (a plain-function authenticator
  runs in a worker thread, so a slow password hash never blocks the loop),
  and the lifespan state copied into each new session.

The handler object comes from :mod:`smtpkit.routing.handler`. Nothing at run
time goes through the App.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._settings import give_warnings
from ..auth._command import auth_mechanism
from ..config import ServerConfig
from ..smtp import SMTP, Session, syntax
from ._calls import AsyncCall, to_async
from .registry import (
    AuthenticatorSpec,
    CommandSpec,
    Entry,
    MechanismSpec,
    Registry,
    unreachable_routes,
)

__all__ = [
    "AppBinding",
    "CompiledSMTP",
    "binding_for",
    "compile_smtp_class",
    "mechanism_attribute",
]

log = logging.getLogger("smtpkit.routing")

if TYPE_CHECKING:
    _Base = SMTP
else:
    _Base = object


@dataclass
class AppBinding:
    """What a compiled class needs from its app, gathered in one object.

    Attributes:
        handler: the default handler (the compiled one).
        config: the default ``config=`` of the constructor.
        authenticator: the registered authenticator (or None).
        auth_required: whether the authenticator makes AUTH required.
        state: copied into ``session.state`` of every new session (the
            lifespan's mapping while the app serves).
    """

    handler: Any
    config: ServerConfig | None
    authenticator: Callable[..., Any] | None = None
    auth_required: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    auth_call: AsyncCall | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.authenticator is not None:
            self.auth_call = to_async(self.authenticator)


class CompiledSMTP(_Base):
    """The first base of every compiled class, before SMTP, LMTP or a subclass.

    ``cls(handler=None, **kwargs)``: the handler defaults to the app's, and
    ``config`` to the app's config; other keywords are those of SMTP.
    """

    _app: ClassVar[AppBinding]

    def __init__(self, handler: Any = None, **kwargs: Any) -> None:
        app = self._app
        super().__init__(app.handler if handler is None else handler, **self._app_keywords(kwargs))

    @classmethod
    def _app_keywords(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with the app's defaults (config, authenticator) filled in."""
        app = cls._app
        if app.config is not None:
            kwargs.setdefault("config", app.config)
        if app.auth_call is not None:
            kwargs.setdefault("authenticator", app.auth_call)
        if app.auth_required:
            kwargs.setdefault("auth_required", True)
        return kwargs

    @classmethod
    def connection_factory(cls, handler: Any, **kwargs: Any) -> Callable[[], SMTP]:
        """A protocol factory whose connections share settings built once, now.

        When no class between this one and SMTP has an ``__init__`` of its
        own, each connection skips the keyword handling of ``__init__`` and
        takes the settings built here; otherwise each one is built by
        calling the class, as usual.

        Raises:
            TypeError, ValueError: an invalid setting (at once, not at the
                first connection).
        """
        keywords = cls._app_keywords(dict(kwargs))
        settings = cls._settings_for(handler, **keywords)
        if not _plain_init(cls):
            return functools.partial(cls, handler, **kwargs)
        give_warnings(settings, stacklevel=2)
        return functools.partial(cls._with_settings, handler, settings)

    def _create_session(self) -> Session:
        session = super()._create_session()
        if self._app.state:
            session.state.update(self._app.state)
        return session


def _plain_init(cls: type) -> bool:
    """Whether building ``cls`` runs no ``__init__`` but CompiledSMTP's and SMTP's."""
    for klass in cls.__mro__:
        if klass is SMTP:
            return True
        if klass is not CompiledSMTP and "__init__" in vars(klass):
            return False
    return False


def compile_smtp_class(
    registry: Registry, *, base: type[SMTP], binding: AppBinding, name: str
) -> type[CompiledSMTP]:
    """Build the app's SMTP subclass.

    Args:
        registry: the app's registrations.
        base: the class to extend (SMTP, LMTP or a subclass).
        binding: the defaults and state the class takes from its app.
        name: the class name.

    Returns:
        A new subclass of ``base`` (and of :class:`CompiledSMTP`).
    """
    _warn_unreachable_routes(registry)
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"The SMTP class compiled from the app {name!r}.",
        "_app": binding,
    }
    for command in registry.commands.values():
        namespace["smtp_" + command.spec.name] = _command_method(command)
    for mechanism in registry.mechanisms.values():
        attribute = mechanism_attribute(mechanism.spec.name)
        namespace[attribute] = _mechanism_method(mechanism, attribute)
    cls = type(name, (CompiledSMTP, base), namespace)
    assert issubclass(cls, CompiledSMTP) and issubclass(cls, SMTP)
    return cls


def _warn_unreachable_routes(registry: Registry) -> None:
    """Log each route that can never match: an earlier route has the same pattern."""
    for name, earlier in unreachable_routes(registry.routes.values()).items():
        route = registry.routes[name]
        log.warning(
            "route %r (pattern %r, %s) can never match: route %r (%s) has the same "
            "pattern and comes first",
            name,
            route.pattern.text,
            route.owner,
            earlier.name,
            earlier.owner,
        )


def binding_for(registry: Registry, config: ServerConfig | None, handler: Any) -> AppBinding:
    """The :class:`AppBinding` of an app's registrations."""
    entry: Entry[AuthenticatorSpec] | None = registry.authenticator
    if entry is None:
        return AppBinding(handler, config)
    return AppBinding(handler, config, entry.spec.func, entry.spec.required)


def mechanism_attribute(name: str) -> str:
    """The ``auth_*`` attribute of a mechanism (``-`` is spelled ``__``)."""
    return "auth_" + name.replace("-", "__")


def _command_method(entry: Entry[CommandSpec]) -> Callable[..., Any]:
    spec = entry.spec
    call = to_async(spec.func)
    owner = entry.owner

    async def method(self: SMTP, arg: str | None) -> None:
        reply = await call(self, arg)
        if reply is None:
            return
        if not isinstance(reply, (str, bytes)):
            raise TypeError(f"command {spec.name} ({owner}) returned {reply!r}; expected a str")
        await self._push_hook_reply(reply, f"command {spec.name} ({owner})")

    method.__name__ = method.__qualname__ = "smtp_" + spec.name
    method.__doc__ = getattr(spec.func, "__doc__", None)
    return syntax(spec.syntax, spec.extended, spec.when)(method)


def _mechanism_method(entry: Entry[MechanismSpec], attribute: str) -> Callable[..., Any]:
    call = to_async(entry.spec.func)

    async def method(self: SMTP, server: SMTP, args: list[str]) -> Any:
        return await call(server, args)

    method.__name__ = method.__qualname__ = attribute
    method.__doc__ = getattr(entry.spec.func, "__doc__", None)
    return auth_mechanism(entry.spec.name)(method)
