"""Blueprints: a reusable set of registrations, replayed on each App.

A :class:`Blueprint` has the decorators of an App, but records what they ask
for instead of doing it. ``app.register_blueprint(bp, **options)`` replays the
records against that app, through a :class:`BlueprintSetupState` carrying the
options. So one blueprint can serve several apps, or one app several times
with different options (another ``domain=``, say):

* routes are added on every registration, scoped by the options;
* commands, hooks, AUTH mechanisms, the authenticator and exception handlers
  are added on the first registration with an app only: they are app-wide,
  and adding them twice would run a hook twice or clash with itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .registry import Owner, Route, RouteSpec, Spec
from .scaffold import Scaffold

if TYPE_CHECKING:
    from .app import App

__all__ = ["Blueprint", "BlueprintSetupState"]

DeferredSetup = Callable[["BlueprintSetupState"], None]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class BlueprintSetupState:
    """One registration of a blueprint with an app: the options it was given.

    Attributes:
        app: the app the blueprint is registered with.
        blueprint: the blueprint.
        name: the name it is registered under (``name=``, default its own).
        name_prefix: prepended, with a dot, to the names of its routes.
        domain: the domain given to its domain-less route patterns, or None.
        first_registration: whether this is its first registration with ``app``.
    """

    def __init__(
        self,
        app: App,
        blueprint: Blueprint,
        *,
        name: str | None,
        name_prefix: str,
        domain: str | None,
        first_registration: bool,
    ) -> None:
        self.app = app
        self.blueprint = blueprint
        self.name = name or blueprint.name
        self.name_prefix = name_prefix
        self.domain = domain
        self.first_registration = first_registration

    def add(self, spec: Spec) -> None:
        """Add one recorded registration to the app, owned by this blueprint."""
        if isinstance(spec, RouteSpec):
            self.app._add_route(self.route(spec))
        else:
            self.app._add_owned(spec, Owner.of(spec.func, self.name))

    def route(self, spec: RouteSpec) -> Route:
        """Turn a recorded route into the app's route, with this registration's options.

        Raises:
            ValueError: the pattern already names a domain and ``domain`` was given.
        """
        name = ".".join(part for part in (self.name_prefix, self.name, spec.name) if part)
        try:
            pattern = spec.compile(self.domain)
        except ValueError as exc:
            raise ValueError(f"blueprint {self.name!r}, route {spec.name!r}: {exc}") from None
        return Route(name, pattern, spec.func, Owner.of(spec.func, self.name))


class Blueprint(Scaffold):
    """A named set of commands, hooks, mechanisms and routes to register on apps.

    Args:
        name: the blueprint's name; it prefixes its route names and appears
            in error messages. Letters, digits, ``_`` and ``-``.

    Raises:
        ValueError: an invalid name.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"Blueprint name {name!r}: expected letters, digits, '_' and '-' "
                "(no dots: they separate the parts of route names)"
            )
        self.name = name
        self.deferred: list[DeferredSetup] = []
        self._registered = False

    def __repr__(self) -> str:
        return f"Blueprint({self.name!r})"

    def record(self, func: DeferredSetup) -> None:
        """Record a function to call with the setup state on every registration.

        Raises:
            RuntimeError: the blueprint is already registered with an app.
        """
        if self._registered:
            raise RuntimeError(
                f"Blueprint {self.name!r} is already registered with an app, which has "
                "copied its registrations; add commands, hooks and routes to the "
                "blueprint before app.register_blueprint() (at import time, next to it)"
            )
        self.deferred.append(func)

    def record_once(self, func: DeferredSetup) -> None:
        """Like :meth:`record`, but only for the first registration with each app."""

        def once(state: BlueprintSetupState) -> None:
            if state.first_registration:
                func(state)

        self.record(once)

    def _add(self, spec: Spec, *, once: bool) -> None:
        def replay(state: BlueprintSetupState) -> None:
            state.add(spec)

        if once:
            self.record_once(replay)
        else:
            self.record(replay)

    def register(self, state: BlueprintSetupState) -> None:
        """Replay the records against ``state.app`` (called by ``App.register_blueprint``)."""
        self._registered = True
        for func in self.deferred:
            func(state)
