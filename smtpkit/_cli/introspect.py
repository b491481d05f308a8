"""``smtpkit routes`` and ``smtpkit check``: what an app has registered, and where mail goes.

Both read the App's registrations (``app.commands``, ``app.hooks``, ``app.routes``,
``app.blueprints``, and ``app.registry`` for the AUTH mechanisms, the authenticator and
the exception handlers); nothing is served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..auth._command import _mechanisms_of
from ..config import ServerConfig
from ..routing import App, Route
from ..routing.delivery import no_route_reply
from ..routing.registry import Entry, Registry, unreachable_routes
from ..smtp import SMTP
from .banner import extensions
from .discovery import Target

__all__ = ["check_lines", "routes_lines"]

_INDENT = "  "


def routes_lines(target: Target) -> list[str]:
    """The report of ``smtpkit routes``, line by line.

    Args:
        target: the app or handler.

    Returns:
        The lines to print.
    """
    if target.kind == "handler":
        return _handler_lines(target)
    app: App = target.obj
    registry = _registry(app)
    lines = [
        target.describe(),
        f"SMTP class: {app.server_class.__name__}, compiled",
        _extensions_line(app.protocol_factory(ServerConfig())()),
    ]
    lines += _section("Commands", _command_rows(app))
    lines += _section("Hooks", _hook_rows(app))
    lines += _section("AUTH mechanisms", _mechanism_rows(app, registry))
    lines += _section("Authenticator", _authenticator_rows(registry))
    lines += _section("Exception handlers", _exception_rows(registry))
    lines += _section("Blueprints", [f"{name}  {bp!r}" for name, bp in app.blueprints.items()])
    lines += _section("Recipient routes (first match wins)", _route_rows(app.routes))
    if not app.routes:
        lines.append(_INDENT + "(none: every recipient is accepted, unless a RCPT hook refuses it)")
    return lines


def _extensions_line(protocol: SMTP) -> str:
    """The EHLO keywords a client sees with the default configuration."""
    return "Extensions (default configuration): " + extensions(protocol, ServerConfig())


def _registry(app: App) -> Registry:
    # The AUTH mechanisms, the authenticator and the exception handlers are read from
    # the registry; commands, hooks, routes and blueprints have properties of their own.
    return app.registry


def _section(title: str, rows: list[str]) -> list[str]:
    return ["", f"{title}:", *(_INDENT + row for row in rows)] if rows else ["", f"{title}: none"]


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(row[i].ljust(w) for i, w in enumerate(widths)), row[-1]]) for row in rows]


def _command_rows(app: App) -> list[str]:
    return _table(
        (verb, f"HELP: {entry.spec.syntax}", str(entry.owner))
        for verb, entry in app.commands.items()
    )


def _hook_rows(app: App) -> list[str]:
    rows = []
    for verb, entries in app.hooks.items():
        for position, entry in enumerate(entries, 1):
            rows.append((verb if position == 1 else "", f"{position}.", str(entry.owner)))
    return _table(rows)


def _mechanism_rows(app: App, registry: Registry) -> list[str]:
    registered = {name: str(entry.owner) for name, entry in registry.mechanisms.items()}
    names = _mechanisms_of(app.smtp_class, type(app.handler))
    return _table((name, registered.get(name, "built in")) for name in sorted(names))


def _authenticator_rows(registry: Registry) -> list[str]:
    entry = registry.authenticator
    if entry is None:
        return []
    required = "AUTH required" if entry.spec.required else "AUTH optional"
    return [f"{entry.owner}, {required}"]


def _exception_rows(registry: Registry) -> list[str]:
    return _table(
        (exc.__qualname__, str(entry.owner)) for exc, entry in registry.exception_handlers.items()
    )


def _route_rows(routes: Iterable[Route]) -> list[str]:
    routes = list(routes)
    unreachable = unreachable_routes(routes)
    return _table(
        (f"{n}.", route.name, route.pattern.text, str(route.owner) + _never(route, unreachable))
        for n, route in enumerate(routes, 1)
    )


def _never(route: Route, unreachable: Mapping[str, Route]) -> str:
    earlier = unreachable.get(route.name)
    if earlier is None:
        return ""
    return f"  (never matches: route {earlier.name!r} has the same pattern and comes first)"


def _handler_lines(target: Target) -> list[str]:
    handler = target.obj
    hooks = sorted(name for name in dir(handler) if name.startswith("handle_"))
    mechanisms = sorted(_mechanisms_of(SMTP, type(handler)))
    return [
        target.describe(),
        "",
        "Hooks: " + (", ".join(hooks) or "none"),
        "AUTH mechanisms: " + ", ".join(mechanisms),
        "Recipient routes: none (a handler decides in its own handle_RCPT, if it has one)",
        _extensions_line(SMTP(handler, config=ServerConfig())),
    ]


# -- smtpkit check ---------------------------------------------------------------------------


def check_lines(target: Target, address: str) -> tuple[bool, list[str]]:
    """Which route takes ``address``, or why none does.

    Args:
        target: the app or handler.
        address: the recipient, with or without angle brackets.

    Returns:
        ``(taken, lines)``: whether a route (or the default acceptance) takes it, and
        the explanation.
    """
    address = address.strip().removeprefix("<").removesuffix(">")
    if target.kind == "handler":
        return True, [_handler_check(target.obj, address)]
    app: App = target.obj
    notes = _rcpt_hook_note(app.hooks)
    if not app.routes:
        return True, [f"<{address}>: accepted: the app has no recipient routes", *notes]
    for route in app.routes:
        captures = route.pattern.match(address)
        if captures is not None:
            return True, [_taken(address, route, captures), *notes]
    return False, _refused(address, app.routes) + notes


def _taken(address: str, route: Route, captures: Mapping[str, str]) -> str:
    shown = ", ".join(f"{name}={value!r}" for name, value in captures.items())
    return f"<{address}>: route {route.name!r} (pattern {route.pattern.text!r}, {route.owner})" + (
        f"; captures: {shown}" if shown else ""
    )


def _refused(address: str, routes: Iterable[Route]) -> list[str]:
    lines = [f"<{address}>: no route matches; RCPT TO gets: {no_route_reply(address)}"]
    lines.append("tried, in order:")
    for route in routes:
        lines.append(f"{_INDENT}{route.name}: {route.pattern.text!r} - {_why_not(route, address)}")
    return lines


def _why_not(route: Route, address: str) -> str:
    if "@" not in address:
        return "the address has no domain"
    if re.fullmatch(route.pattern.regex.pattern, address, re.IGNORECASE):
        return "differs only in letter case: local parts are matched exactly as written"
    return "does not match"


def _rcpt_hook_note(hooks: Mapping[str, tuple[Entry[Any], ...]]) -> list[str]:
    entries = hooks.get("RCPT", ())
    if not entries:
        return []
    owners = ", ".join(str(entry.owner) for entry in entries)
    return [f"note: RCPT hooks run before the routes and may refuse it: {owners}"]


def _handler_check(handler: Any, address: str) -> str:
    if hasattr(handler, "handle_RCPT"):
        name = type(handler).__qualname__
        return f"<{address}>: decided at run time by {name}.handle_RCPT (no routes to check)"
    return f"<{address}>: accepted: the handler has no handle_RCPT hook"
