"""The ASGI app of the HTTP listener: :func:`create_app`.

More routes (``/metrics``, ``/healthz``, …) are mounted by passing them in ``routes``;
they get the same basic auth and headers as the capture UI.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from .._cli.banner import is_loopback
from .api import EXCEPTION_HANDLERS, api_routes
from .options import HttpOptions
from .page import page_routes
from .security import BasicAuth, LoopbackHost, SecurityHeaders
from .store import MaildirStore

__all__ = ["create_app"]


def create_app(
    maildir: str | os.PathLike[str],
    options: HttpOptions | None = None,
    *,
    routes: Sequence[BaseRoute] = (),
    stopping: threading.Event | None = None,
) -> Starlette:
    """Build the capture UI and API over ``maildir``.

    Args:
        maildir: the Maildir to show (it may not exist yet).
        options: the address (on loopback, only loopback ``Host`` names are answered),
            credentials and release targets (default: loopback, none of either).
        routes: more routes to serve beside the capture UI.
        stopping: set when the server stops; open event streams then end.

    Returns:
        The app; ``app.state`` holds ``store``, ``options`` and ``stopping``.
    """
    options = options or HttpOptions()
    middleware = [Middleware(SecurityHeaders)]
    if is_loopback(options.host):
        middleware.append(Middleware(LoopbackHost))
    if options.auth is not None:
        middleware.append(Middleware(BasicAuth, user=options.auth[0], password=options.auth[1]))
    app = Starlette(
        routes=[*page_routes(), *api_routes(), *routes],
        middleware=middleware,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.store = MaildirStore(maildir)
    app.state.options = options
    app.state.stopping = stopping or threading.Event()
    return app
