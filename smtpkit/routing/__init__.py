"""The declarative layer: App, Blueprint, recipient routes, and their compiler.

See ``docs/app.md`` for how an App becomes an SMTP subclass and a handler.
"""

from __future__ import annotations

from .app import App
from .blueprint import Blueprint, BlueprintSetupState
from .compiler import CompiledSMTP
from .handler import AppHandler
from .message import RoutedMessage
from .patterns import RecipientPattern
from .registry import Owner, Route
from .types import HOOK_VERBS, HookVerb

__all__ = [
    "HOOK_VERBS",
    "App",
    "AppHandler",
    "Blueprint",
    "BlueprintSetupState",
    "CompiledSMTP",
    "HookVerb",
    "Owner",
    "RecipientPattern",
    "Route",
    "RoutedMessage",
]
