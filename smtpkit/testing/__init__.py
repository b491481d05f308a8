"""Test tools: a real SMTP server that captures mail, with fault injection.

The pytest plugin (:mod:`smtpkit.testing.plugin`, loaded through the
``pytest11`` entry point ``smtpkit``) gives the ``smtp_server`` and
``smtp_server_factory`` fixtures. Outside pytest, use :class:`SMTPTestServer`
as a context manager.

The names are imported on first use, so loading the plugin costs nothing
until a test asks for a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import STAGES, Decision, Faults
    from ._inbox import MessageWaitTimeout
    from ._messages import CapturedMessage
    from ._options import ServerOptions
    from ._server import SMTPTestServer, accept_any_login

__all__ = [
    "STAGES",
    "CapturedMessage",
    "Decision",
    "Faults",
    "MessageWaitTimeout",
    "SMTPTestServer",
    "ServerOptions",
    "accept_any_login",
]

_MODULES = {
    "STAGES": "._faults",
    "Decision": "._faults",
    "Faults": "._faults",
    "MessageWaitTimeout": "._inbox",
    "CapturedMessage": "._messages",
    "ServerOptions": "._options",
    "SMTPTestServer": "._server",
    "accept_any_login": "._server",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'smtpkit.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
