"""The compiled handler: ``handle_<VERB>`` methods that chain the registered hooks.

The chain rule, per kind of hook:

* Reply hooks (HELO MAIL RCPT DATA RSET QUIT NOOP VRFY AUTH PROXY STARTTLS):
  the hooks run in registration order; a hook returning None passes to the
  next; the first one returning anything else decides, and the rest do not
  run. When every hook passes, the server does what it does without a hook
  (STARTTLS: the session goes on).
* EHLO: every hook runs; each gets the responses list the previous one
  returned (None keeps it) and the last list is sent. ``session.host_name``
  is set before the first hook, as the server does without hooks.
* DATA_CHUNK and DATA_ABORT: every hook runs; return values are ignored.

With routes, RCPT runs its hooks first and then routing (no route: ``550``),
and DATA runs its hooks first and then delivers to the routes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..auth._command import MISSING
from ..smtp import SMTP, Envelope, Session
from ._calls import AsyncCall, to_async
from .delivery import ExceptionMapper, Router, content_of
from .registry import Entry, HookSpec, Registry

__all__ = ["AppHandler", "compile_handler"]

HandlerMethod = Callable[..., Any]


class AppHandler:
    """Base of compiled handlers; each app compiles its own subclass."""

    def __repr__(self) -> str:
        hooks = sorted(name[7:] for name in dir(self) if name.startswith("handle_"))
        return f"<{type(self).__qualname__} hooks={hooks}>"


def compile_handler(registry: Registry, router: Router, errors: ExceptionMapper) -> AppHandler:
    """Build the handler object of an app.

    Args:
        registry: the app's registrations.
        router: its routes (may be empty: routing off).
        errors: its exception handlers (may be empty).

    Returns:
        An instance of a new :class:`AppHandler` subclass with one
        ``handle_<VERB>`` method per verb that has hooks (or routing).
    """
    calls = {verb: _calls(entries) for verb, entries in registry.hooks.items()}
    namespace: dict[str, Any] = {}
    for verb, chain in calls.items():
        namespace["handle_" + verb] = _CHAINS.get(verb, _first_reply)(chain)
    if router:
        namespace.update(_routing_methods(calls, router))
    if errors:
        namespace["handle_exception"] = _exception_method(errors)
    for name, method in namespace.items():
        method.__name__ = method.__qualname__ = name
    cls = cast("type[AppHandler]", type("AppHandler", (AppHandler,), namespace))
    return cls()


def _calls(entries: Sequence[Entry[HookSpec]]) -> tuple[AsyncCall, ...]:
    return tuple(to_async(entry.spec.func) for entry in entries)


def _first_reply(calls: tuple[AsyncCall, ...], default: Any = MISSING) -> HandlerMethod:
    """A reply hook: ``default`` when every call passes, else the first other reply."""
    first = _first_of(calls)
    if first is None:

        async def nothing(self: AppHandler, server: SMTP, *args: Any) -> Any:
            return default

        return nothing

    async def chain(self: AppHandler, server: SMTP, *args: Any) -> Any:
        status = await first(server, *args)
        return default if status is None else status

    return chain


def _first_of(calls: tuple[AsyncCall, ...]) -> AsyncCall | None:
    """One call with the first-reply rule (None: every hook passed), or None for no hooks.

    The chain is specialised once, here: no hooks need no call at all, and a single
    hook is called as it is, with no loop around it.
    """
    if not calls:
        return None
    if len(calls) == 1:
        return calls[0]

    async def chain(server: SMTP, *args: Any) -> Any:
        for call in calls:
            status = await call(server, *args)
            if status is not None:
                return status
        return None

    return chain


def _starttls(calls: tuple[AsyncCall, ...]) -> HandlerMethod:
    return _first_reply(calls, default=True)


def _run_all(calls: tuple[AsyncCall, ...]) -> HandlerMethod:
    async def chain(self: AppHandler, server: SMTP, *args: Any) -> None:
        for call in calls:
            await call(server, *args)

    return chain


def _ehlo(calls: tuple[AsyncCall, ...]) -> HandlerMethod:
    # Five named parameters: the server recognises the current hook form by
    # its signature (the deprecated form has four).
    async def handle_EHLO(
        self: AppHandler,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        for call in calls:
            result = await call(server, session, envelope, hostname, responses)
            if result is not None:
                responses = result
        return responses

    return handle_EHLO


_CHAINS: dict[str, Callable[[tuple[AsyncCall, ...]], HandlerMethod]] = {
    "EHLO": _ehlo,
    "STARTTLS": _starttls,
    "DATA_CHUNK": _run_all,
    "DATA_ABORT": _run_all,
}


def _routing_methods(calls: dict[str, tuple[AsyncCall, ...]], router: Router) -> dict[str, Any]:
    """RCPT and DATA with routing; the streaming hooks also keep the content for routes."""
    methods = {
        "handle_RCPT": _routed_rcpt(calls.get("RCPT", ()), router),
        "handle_DATA": _routed_data(calls.get("DATA", ()), router, None),
    }
    if "DATA_CHUNK" in calls:
        # The server streams to DATA_CHUNK hooks and then leaves
        # envelope.content empty: keep a copy for the routes.
        kept: weakref.WeakKeyDictionary[Envelope, bytearray] = weakref.WeakKeyDictionary()
        methods["handle_DATA"] = _routed_data(calls.get("DATA", ()), router, kept)
        methods["handle_DATA_CHUNK"] = _keeping_chunks(calls["DATA_CHUNK"], kept)
        methods["handle_DATA_ABORT"] = _dropping_chunks(calls.get("DATA_ABORT", ()), kept)
    return methods


def _routed_rcpt(calls: tuple[AsyncCall, ...], router: Router) -> HandlerMethod:
    first = _first_of(calls)
    check = router.check

    async def handle_RCPT(
        self: AppHandler,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> Any:
        if first is not None:
            status = await first(server, session, envelope, address, rcpt_options)
            if status is not None:
                return status
        return check(address)

    return handle_RCPT


def _routed_data(
    calls: tuple[AsyncCall, ...],
    router: Router,
    kept: weakref.WeakKeyDictionary[Envelope, bytearray] | None,
) -> HandlerMethod:
    first = _first_of(calls)
    deliver = router.deliver

    async def handle_DATA(
        self: AppHandler, server: SMTP, session: Session, envelope: Envelope
    ) -> Any:
        streamed = kept.pop(envelope, None) if kept is not None else None
        if first is not None:
            status = await first(server, session, envelope)
            if status is not None:
                return status
        content = bytes(streamed or b"") if kept is not None else content_of(envelope)
        return await deliver(server, session, envelope, content)

    return handle_DATA


def _keeping_chunks(
    calls: tuple[AsyncCall, ...], kept: weakref.WeakKeyDictionary[Envelope, bytearray]
) -> HandlerMethod:
    hooks = _run_all(calls)

    async def handle_DATA_CHUNK(
        self: AppHandler, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        buffer = kept.get(envelope)
        if buffer is None:
            buffer = kept[envelope] = bytearray()
        buffer += chunk
        await hooks(self, server, session, envelope, chunk)

    return handle_DATA_CHUNK


def _dropping_chunks(
    calls: tuple[AsyncCall, ...], kept: weakref.WeakKeyDictionary[Envelope, bytearray]
) -> HandlerMethod:
    hooks = _run_all(calls)

    async def handle_DATA_ABORT(
        self: AppHandler, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        kept.pop(envelope, None)
        await hooks(self, server, session, envelope, reason)

    return handle_DATA_ABORT


def _exception_method(errors: ExceptionMapper) -> HandlerMethod:
    async def handle_exception(self: AppHandler, error: Exception) -> str:
        return await errors.reply(error)

    return handle_exception
