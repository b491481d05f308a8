"""The App: registrations, compiled once into an SMTP class and a handler.

An App collects commands, hooks, AUTH mechanisms, an authenticator,
exception handlers and recipient routes (from its own decorators and from
blueprints). The first time it is needed (``build()``, ``handler``,
``smtp_class``, ``protocol_factory()``, ``serve()``), it compiles them; from
then on it refuses new registrations, because the compiled class could not
see them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from .. import server as _server
from ..config import ConfigError, ServerConfig
from ..ratelimit import with_rate_limits
from ..smtp import SMTP
from .blueprint import Blueprint, BlueprintSetupState
from .compiler import AppBinding, CompiledSMTP, binding_for, compile_smtp_class
from .delivery import ExceptionMapper, Router
from .handler import AppHandler, compile_handler
from .registry import CommandSpec, Entry, HookSpec, Owner, Registry, Route, RouteSpec, Spec
from .scaffold import Scaffold
from .types import Lifespan

if TYPE_CHECKING:
    from .._cli.serving import ServePlan

__all__ = ["App"]

_log = logging.getLogger("smtpkit.routing")

_CLASS_NAME = re.compile(r"[^A-Za-z0-9_]")


class App(Scaffold):
    """A declarative SMTP server.

    Args:
        config: the server settings (default: ``ServerConfig()``).
        lifespan: ``lifespan(app)`` returning an async context manager that
            is entered before the server listens and left after it stops;
            the mapping it yields is copied into every session's ``state``.
        name: the app's name, used for the compiled class (default ``"app"``).
        server_class: the class to compile from: :class:`~smtpkit.smtp.SMTP`,
            :class:`~smtpkit.lmtp.LMTP` (routes then reply per recipient), or
            a subclass of either.

    Raises:
        TypeError: ``config`` is not a ServerConfig, or ``server_class`` not a
            subclass of SMTP.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        lifespan: Lifespan | None = None,
        name: str = "app",
        server_class: type[SMTP] = SMTP,
    ) -> None:
        if config is not None and not isinstance(config, ServerConfig):
            raise TypeError(f"config={config!r}: expected a ServerConfig or None")
        if not (isinstance(server_class, type) and issubclass(server_class, SMTP)):
            raise TypeError(f"server_class={server_class!r}: expected SMTP or a subclass of it")
        self.config = config if config is not None else ServerConfig()
        self.lifespan = lifespan
        self.name = name
        self.server_class = server_class
        self._registry = Registry()
        self._blueprints: dict[str, Blueprint] = {}
        self._compiled: tuple[type[CompiledSMTP], AppHandler, AppBinding] | None = None
        self._frozen_by = ""

    def __repr__(self) -> str:
        return f"<App {self.name!r} routes={len(self._registry.routes)}>"

    # -- registration --------------------------------------------------------

    def _add(self, spec: Spec, *, once: bool) -> None:
        if isinstance(spec, RouteSpec):
            self._add_route(Route(spec.name, spec.compile(), spec.func, Owner.of(spec.func)))
        else:
            self._add_owned(spec, Owner.of(spec.func))

    def _add_owned(self, spec: Spec, owner: Owner) -> None:
        self._check_open(f"add {_describe(spec)}")
        if isinstance(spec, CommandSpec):
            self._check_builtin(spec, owner)
        self._registry.add(spec, owner)

    def _add_route(self, route: Route) -> None:
        self._check_open(f"add the route {route.name!r}")
        self._registry.add_route(route)

    def _check_builtin(self, spec: CommandSpec, owner: Owner) -> None:
        if not spec.override and hasattr(self.server_class, "smtp_" + spec.name):
            raise ValueError(
                f"command {spec.name!r} from {owner} would replace the built-in command of "
                f"{self.server_class.__name__}; pass override=True to replace it on purpose"
            )

    def _check_open(self, action: str) -> None:
        if self._compiled is not None:
            raise RuntimeError(
                f"cannot {action}: the app {self.name!r} was already compiled into its SMTP "
                f"class (by {self._frozen_by}), which cannot change any more; register "
                "everything before building, serving or taking app.handler / app.smtp_class"
            )

    def register_blueprint(
        self,
        blueprint: Blueprint,
        *,
        name: str | None = None,
        name_prefix: str = "",
        domain: str | None = None,
    ) -> None:
        """Add a blueprint's registrations to this app.

        Args:
            blueprint: the blueprint.
            name: the name to register it under (default: its own); needed
                to register one blueprint twice.
            name_prefix: prepended (with a dot) to the names of its routes.
            domain: the domain of its route patterns that have none.

        Raises:
            ValueError: the name is taken, or a registration conflicts.
            RuntimeError: the app is already compiled.
        """
        self._check_open(f"register the blueprint {blueprint.name!r}")
        registered = name or blueprint.name
        if registered in self._blueprints:
            raise ValueError(
                f"a blueprint is already registered under the name {registered!r} "
                f"({self._blueprints[registered]!r}); pass name='another-name' to register "
                f"{blueprint!r} again"
            )
        first = blueprint not in self._blueprints.values()
        self._blueprints[registered] = blueprint
        state = BlueprintSetupState(
            self,
            blueprint,
            name=registered,
            name_prefix=name_prefix,
            domain=domain,
            first_registration=first,
        )
        blueprint.register(state)

    # -- what was registered -------------------------------------------------

    @property
    def routes(self) -> tuple[Route, ...]:
        """The recipient routes, in matching order."""
        return tuple(self._registry.routes.values())

    @property
    def commands(self) -> Mapping[str, Entry[CommandSpec]]:
        """The registered commands by verb, with their owners."""
        return MappingProxyType(self._registry.commands)

    @property
    def hooks(self) -> Mapping[str, tuple[Entry[HookSpec], ...]]:
        """The registered hooks by verb, in chain order, with their owners."""
        return MappingProxyType({verb: tuple(e) for verb, e in self._registry.hooks.items()})

    @property
    def registry(self) -> Registry:
        """Everything registered, with owners (read it; register through the decorators)."""
        return self._registry

    @property
    def blueprints(self) -> Mapping[str, Blueprint]:
        """The registered blueprints by the name they were registered under."""
        return MappingProxyType(self._blueprints)

    # -- compiling -----------------------------------------------------------

    def build(self) -> tuple[type[CompiledSMTP], AppHandler]:
        """Compile the app (once) into its SMTP class and handler.

        Returns:
            ``(smtp_class, handler)``: ``smtp_class(handler)`` serves one
            connection; ``smtp_class()`` uses the app's handler and config.
        """
        return self._compile("build()")[:2]

    def _compile(self, by: str) -> tuple[type[CompiledSMTP], AppHandler, AppBinding]:
        if self._compiled is None:
            registry = self._registry
            errors = ExceptionMapper(registry.exception_handlers)
            handler = compile_handler(registry, Router(registry.routes.values(), errors), errors)
            binding = binding_for(registry, self.config, handler)
            name = _CLASS_NAME.sub("_", self.name).title().replace("_", "") + "SMTP"
            cls = compile_smtp_class(registry, base=self.server_class, binding=binding, name=name)
            self._compiled, self._frozen_by = (cls, handler, binding), by
        return self._compiled

    @property
    def smtp_class(self) -> type[CompiledSMTP]:
        """The compiled SMTP subclass (compiles the app)."""
        return self._compile("app.smtp_class")[0]

    @property
    def handler(self) -> AppHandler:
        """The compiled handler object (compiles the app)."""
        return self._compile("app.handler")[1]

    @property
    def state(self) -> Mapping[str, Any]:
        """The lifespan's mapping while the app serves; empty otherwise."""
        if self._compiled is None:
            return MappingProxyType({})
        return MappingProxyType(self._compiled[2].state)

    def protocol_factory(self, config: ServerConfig | None = None) -> Callable[[], SMTP]:
        """A protocol factory for ``loop.create_server`` (compiles the app).

        The connections it creates share one connection limiter, built from
        ``config.limits`` and ``config.rate_limits.connections``; with message or
        recipient rate limits, the handler is wrapped in a RateLimitedHandler.

        Args:
            config: settings to use instead of the app's.

        Returns:
            A callable taking no arguments and returning a new connection.
        """
        cls, handler, _ = self._compile("app.protocol_factory()")
        config = config if config is not None else self.config
        limiter = _server.connection_limiter(config)
        limited = with_rate_limits(handler, config)
        # The settings are built (and checked) once, here, for every connection.
        return cls.connection_factory(limited, config=config, connection_limiter=limiter)

    # -- serving -------------------------------------------------------------

    async def serve(
        self,
        *,
        config: ServerConfig | None = None,
        ready: Callable[[list[Any]], object] | None = None,
        stop: anyio.Event | None = None,
    ) -> None:
        """Serve until ``stop`` is set or the task is cancelled, then drain.

        Runs the lifespan around :func:`smtpkit.server.serve`.

        Args:
            config: settings to use instead of the app's (listen address,
                limits, …).
            ready: called with the list of bound addresses once listening.
            stop: set it to stop the server gracefully.
        """
        config = config if config is not None else self.config
        self._compile("app.serve()")
        factory = self.protocol_factory(config)
        await _server.serve(
            factory, config, lifespan=self._lifespan_context(), ready=ready, stop=stop
        )

    @contextlib.asynccontextmanager
    async def _lifespan_context(self) -> AsyncIterator[None]:
        binding = self._compile("app.serve()")[2]
        if self.lifespan is None:
            yield
            return
        async with self.lifespan(self) as state:
            if state is not None and not isinstance(state, Mapping):
                raise TypeError(
                    f"the lifespan of app {self.name!r} yielded {state!r}; "
                    "expected a mapping (copied into each session.state) or None"
                )
            binding.state = dict(state or {})
            try:
                yield
            finally:
                binding.state = {}

    def run(self, *, config: ServerConfig | None = None) -> None:
        """Serve in the foreground until SIGTERM or SIGINT (Ctrl-C), as ``smtpkit run`` does.

        The same serving engine and start-up lines as ``smtpkit run``: the settings are
        the app's config (or ``config``) overridden by the file named by
        ``SMTPKIT_CONFIG`` and then by ``SMTPKIT_…`` environment variables; logging goes
        to stderr at ``log_level`` unless the program configured logging itself. The
        first SIGTERM or SIGINT stops accepting and lets the sessions in flight finish
        (``workers.graceful_timeout``), a second one cuts them; then ``run()``
        returns. SIGHUP reloads the config, the TLS certificates and the password
        file; new sessions use them.

        Args:
            config: settings to use instead of the app's.

        Raises:
            SystemExit: the address cannot be bound (status 1), or a setting is
                invalid (status 2); the one-line reason is printed to stderr first.
        """
        from .._cli.options import UsageError
        from .._cli.serving import serve_in_process

        try:
            plan = self._serve_plan(_foreground_config(config or self.config))
            _configure_logging(plan.config.log_level, plan.config.log_format)
            plan.load_config = lambda: _foreground_config(config or self.config)
            plan.exit_at_once = False
            serve_in_process(plan)
        except (UsageError, ConfigError) as exc:
            _exit_with(str(exc), 2)
        except OSError as exc:
            reason = _server.listen_error(exc)
            if reason is None:
                raise
            _exit_with(reason, 1)

    def _serve_plan(self, config: ServerConfig, title: str | None = None) -> ServePlan:
        """What ``run()`` and ``smtpkit run`` serve for this app."""
        from .._cli.serving import ServePlan

        self._compile("app.run()")
        return ServePlan(
            self.protocol_factory,
            config,
            title or f"App {self.name!r}",
            lifespan=self._lifespan_context,
            refresh=self._refresh_password_file,
        )

    def _refresh_password_file(self) -> None:
        entry = self._registry.authenticator
        if entry is not None:
            refresh_password_file(entry.spec.func)


def refresh_password_file(authenticator: Any) -> None:
    """Read a password-file authenticator's file again; on failure keep its users, and log."""
    reload = getattr(authenticator, "reload", None)
    if not callable(reload) or not hasattr(authenticator, "path"):
        return
    try:
        reload()
    except (OSError, ValueError) as exc:
        _log.error("keeping the previous users of %s: %s", authenticator.path, exc)


def _foreground_config(base: ServerConfig) -> ServerConfig:
    """``base`` overridden by the SMTPKIT_CONFIG file and SMTPKIT_ variables."""
    from .._cli.settings import load_config

    return load_config(argparse.Namespace(), base)


def _configure_logging(level: str, log_format: str = "text") -> None:
    if not logging.getLogger().handlers:
        from ..cli import configure_logging

        configure_logging(level, log_format)


def _exit_with(message: str, status: int) -> NoReturn:
    from .._output import drain

    drain()  # the log lines still queued come first: the error is the last line
    print(f"smtpkit: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def _describe(spec: Spec) -> str:
    kind = type(spec).__name__.removesuffix("Spec").lower()
    label = getattr(spec, "name", None) or getattr(spec, "verb", None)
    return f"the {kind} {label!r}" if label else f"the {kind}"
