"""smtpkit: a fast, safe SMTP server framework for asyncio.

The public names are imported on first use, so ``import smtpkit`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .auth import AuthResult, LoginPassword
    from .config import ServerConfig
    from .controller import Controller
    from .routing import App, Blueprint, RoutedMessage
    from .smtp import SMTP, Envelope, Session, auth_mechanism, syntax

__all__ = [
    "SMTP",
    "App",
    "AuthResult",
    "Blueprint",
    "Controller",
    "Envelope",
    "LoginPassword",
    "RoutedMessage",
    "ServerConfig",
    "Session",
    "__version__",
    "auth_mechanism",
    "syntax",
]

_MODULES = {
    "App": "smtpkit.routing",
    "Blueprint": "smtpkit.routing",
    "RoutedMessage": "smtpkit.routing",
    "ServerConfig": "smtpkit.config",
    "SMTP": "smtpkit.smtp",
    "Session": "smtpkit.smtp",
    "Envelope": "smtpkit.smtp",
    "syntax": "smtpkit.smtp",
    "auth_mechanism": "smtpkit.smtp",
    "AuthResult": "smtpkit.auth",
    "LoginPassword": "smtpkit.auth",
    "Controller": "smtpkit.controller",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
