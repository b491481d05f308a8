"""The shapes of the functions an App or Blueprint registers.

Every decorator is typed with a TypeVar bound to one of these shapes, so the
decorated function keeps its own type and a function of the wrong shape is a
type error. Each shape allows a coroutine function or a plain function; plain
functions run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..auth._types import AuthResult
from ..smtp import SMTP, Envelope, Session
from .message import RoutedMessage

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "HOOK_VERBS",
    "AuthenticatorFunc",
    "AuthenticatorT",
    "CommandFunc",
    "CommandT",
    "ExceptionHandlerFunc",
    "ExceptionHandlerT",
    "HookT",
    "HookVerb",
    "Lifespan",
    "MechanismFunc",
    "MechanismT",
    "RouteFunc",
    "RouteT",
]

#: The verbs ``@app.hook`` accepts: one per documented ``handle_<VERB>`` hook.
HookVerb = Literal[
    "HELO",
    "EHLO",
    "MAIL",
    "RCPT",
    "DATA",
    "RSET",
    "QUIT",
    "NOOP",
    "VRFY",
    "AUTH",
    "STARTTLS",
    "PROXY",
    "DATA_CHUNK",
    "DATA_ABORT",
]
HOOK_VERBS: tuple[str, ...] = HookVerb.__args__  # type: ignore[attr-defined]

#: ``smtp_<VERB>``'s contract: ``(server, arg)``. A returned string is pushed
#: as the reply (the only way a plain ``def`` command can reply).
CommandFunc = (
    Callable[[SMTP, str | None], Awaitable[str | None]] | Callable[[SMTP, str | None], str | None]
)
#: ``auth_<NAME>``'s contract: ``(server, args)`` returning an AuthResult.
MechanismFunc = Callable[[SMTP, list[str]], Any]
#: The documented authenticator: ``(server, session, envelope, mechanism, auth_data)``.
AuthenticatorFunc = (
    Callable[[SMTP, Session, Envelope, str, Any], Awaitable[AuthResult]]
    | Callable[[SMTP, Session, Envelope, str, Any], AuthResult]
)
#: Maps an exception to a reply string; None falls back to ``451 4.3.0``.
ExceptionHandlerFunc = Callable[[Any], Awaitable[str | None]] | Callable[[Any], str | None]
#: Receives the message for the recipients a route matched; returns the reply
#: (None means ``250 OK``).
RouteFunc = Callable[[RoutedMessage], Awaitable[str | None]] | Callable[[RoutedMessage], str | None]
#: ``lifespan(app)``: an async context manager around serving; what it yields
#: is copied into every session's ``state``.
Lifespan = Callable[["App"], AbstractAsyncContextManager["Mapping[str, Any] | None"]]

CommandT = TypeVar("CommandT", bound=CommandFunc)
HookT = TypeVar("HookT", bound=Callable[..., Any])
MechanismT = TypeVar("MechanismT", bound=MechanismFunc)
AuthenticatorT = TypeVar("AuthenticatorT", bound=AuthenticatorFunc)
ExceptionHandlerT = TypeVar("ExceptionHandlerT", bound=ExceptionHandlerFunc)
RouteT = TypeVar("RouteT", bound=RouteFunc)
