"""The ``smtp_server_factory`` object: start servers, stop them all at the end."""

from __future__ import annotations

import threading
from typing import Any

from ._server import SMTPTestServer

__all__ = ["ServerFactory"]


class ServerFactory:
    """Starts test servers on demand; :meth:`stop_all` stops those still running.

    Calling it takes the same keywords as the ``smtp_server`` marker and
    returns a started :class:`SMTPTestServer`. A server can be stopped early
    with ``server.stop()`` or by using it in a ``with`` block.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: list[SMTPTestServer] = []

    def __call__(self, **options: Any) -> SMTPTestServer:
        """Start a server with ``options`` (see :class:`ServerOptions`) and return it."""
        server = SMTPTestServer(**options).start()
        with self._lock:
            self._servers.append(server)
        return server

    def stop_all(self) -> None:
        """Stop every server this factory started (stopped ones are skipped)."""
        with self._lock:
            servers, self._servers = self._servers, []
        errors: list[BaseException] = []
        for server in servers:
            try:
                server.stop()
            except Exception as error:  # stop the others, then report
                errors.append(error)
        if errors:
            raise errors[0]
