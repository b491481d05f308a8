"""What an App has registered, checked for conflicts as it is added.

Registration is data: each decorator builds a small frozen *spec*; an App adds
it to its :class:`Registry` at once, a Blueprint records it and the App adds
it when the blueprint is registered. The registry keeps, with each entry, its
:class:`Owner` (the function and the blueprint it came from), so that a
conflict can name both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .patterns import RecipientPattern

__all__ = [
    "AuthenticatorSpec",
    "CommandSpec",
    "Entry",
    "ExceptionSpec",
    "HookSpec",
    "MechanismSpec",
    "Owner",
    "Registry",
    "Route",
    "RouteSpec",
    "Spec",
    "unreachable_routes",
]

_S = TypeVar("_S")


@dataclass(frozen=True)
class Owner:
    """Who registered something: a function, from the app or a blueprint.

    Attributes:
        function: the function's qualified name (``module.qualname``).
        blueprint: the name the blueprint was registered under, or None for
            the app itself.
    """

    function: str
    blueprint: str | None = None

    @classmethod
    def of(cls, func: Callable[..., Any], blueprint: str | None = None) -> Owner:
        """The owner of ``func``, registered by the app or by ``blueprint``."""
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        return cls(f"{module}.{qualname}" if module else qualname, blueprint)

    def __str__(self) -> str:
        where = f"blueprint {self.blueprint!r}" if self.blueprint is not None else "the app"
        return f"{self.function} (from {where})"


@dataclass(frozen=True)
class CommandSpec:
    """``@command``: a new ``smtp_<NAME>`` method."""

    name: str
    func: Callable[..., Any]
    syntax: str
    extended: str | None = None
    when: str | None = None
    override: bool = False


@dataclass(frozen=True)
class HookSpec:
    """``@hook``: one more function in the chain of ``handle_<VERB>``."""

    verb: str
    func: Callable[..., Any]


@dataclass(frozen=True)
class MechanismSpec:
    """``@auth_mechanism``: a new ``auth_<NAME>`` method."""

    name: str
    func: Callable[..., Any]


@dataclass(frozen=True)
class AuthenticatorSpec:
    """``@authenticator``: the function checking PLAIN/LOGIN credentials."""

    func: Callable[..., Any]
    required: bool = True


@dataclass(frozen=True)
class ExceptionSpec:
    """``@exception_handler``: maps an exception type to a reply."""

    exc_type: type[Exception]
    func: Callable[..., Any]


@dataclass(frozen=True)
class RouteSpec:
    """``@route``, before a blueprint's options are applied."""

    pattern: str
    func: Callable[..., Any]
    name: str
    captures: Mapping[str, str] = field(default_factory=dict)

    def compile(self, domain: str | None = None) -> RecipientPattern:
        """Compile the pattern, with a blueprint's domain when given."""
        return RecipientPattern.parse(self.pattern, self.captures, domain=domain)


Spec = CommandSpec | HookSpec | MechanismSpec | AuthenticatorSpec | ExceptionSpec | RouteSpec


@dataclass(frozen=True)
class Entry(Generic[_S]):
    """A registered spec and its owner."""

    spec: _S
    owner: Owner


@dataclass(frozen=True, eq=False)
class Route:
    """A recipient route, as the App uses it.

    Attributes:
        name: unique in the app (``blueprint.function`` for blueprint routes).
        pattern: the compiled recipient pattern.
        func: the function receiving the messages.
        owner: who registered it.
    """

    name: str
    pattern: RecipientPattern
    func: Callable[..., Any]
    owner: Owner

    def __str__(self) -> str:
        return f"{self.name}: {self.pattern.text}"


class Registry:
    """Everything registered on one App, in registration order."""

    def __init__(self) -> None:
        self.commands: dict[str, Entry[CommandSpec]] = {}
        self.hooks: dict[str, list[Entry[HookSpec]]] = {}
        self.mechanisms: dict[str, Entry[MechanismSpec]] = {}
        self.authenticator: Entry[AuthenticatorSpec] | None = None
        self.exception_handlers: dict[type[Exception], Entry[ExceptionSpec]] = {}
        self.routes: dict[str, Route] = {}

    def add(self, spec: Spec, owner: Owner) -> None:
        """Add one spec (a RouteSpec must be turned into a Route first).

        Raises:
            ValueError: something with the same name (command, mechanism,
                exception type, authenticator) is already registered; the
                message names both owners.
        """
        if isinstance(spec, CommandSpec):
            _add_unique(self.commands, spec.name, Entry(spec, owner), f"command {spec.name!r}")
        elif isinstance(spec, HookSpec):
            self.hooks.setdefault(spec.verb, []).append(Entry(spec, owner))
        elif isinstance(spec, MechanismSpec):
            entry = Entry(spec, owner)
            _add_unique(self.mechanisms, spec.name, entry, f"AUTH mechanism {spec.name!r}")
        elif isinstance(spec, AuthenticatorSpec):
            self._set_authenticator(Entry(spec, owner))
        elif isinstance(spec, ExceptionSpec):
            what = f"exception handler for {spec.exc_type.__qualname__}"
            _add_unique(self.exception_handlers, spec.exc_type, Entry(spec, owner), what)
        else:
            raise TypeError(f"add a Route, not a {type(spec).__name__}")

    def add_route(self, route: Route) -> None:
        """Add a compiled route.

        Raises:
            ValueError: a route of the same name exists; the message names both owners.
        """
        known = self.routes.get(route.name)
        if known is not None:
            raise ValueError(_conflict(f"route name {route.name!r}", known.owner, route.owner))
        self.routes[route.name] = route

    def _set_authenticator(self, entry: Entry[AuthenticatorSpec]) -> None:
        if self.authenticator is not None:
            raise ValueError(_conflict("the authenticator", self.authenticator.owner, entry.owner))
        self.authenticator = entry


def unreachable_routes(routes: Iterable[Route]) -> dict[str, Route]:
    """The routes that can never match, because an earlier route has the same pattern.

    Args:
        routes: the routes, in matching order.

    Returns:
        The earlier route that takes their addresses, by the name of each route that
        never matches.
    """
    first: dict[str, Route] = {}
    found = {}
    for route in routes:
        earlier = first.setdefault(route.pattern.key, route)
        if earlier is not route:
            found[route.name] = earlier
    return found


_K = TypeVar("_K")


def _add_unique(table: dict[_K, Entry[Any]], key: _K, entry: Entry[Any], what: str) -> None:
    known = table.get(key)
    if known is not None:
        raise ValueError(_conflict(what, known.owner, entry.owner))
    table[key] = entry


def _conflict(what: str, first: Owner, second: Owner) -> str:
    return (
        f"{what} is registered twice: by {first} and by {second}; "
        "an app can have only one, so remove or rename one of them"
    )
