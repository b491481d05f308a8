"""Serve the HTTP listener inside the running event loop, beside SMTP.

uvicorn's :class:`~uvicorn.Server` does the HTTP work; its own signal handling is
turned off, because the serving process already handles SIGTERM and SIGINT and says
when to stop (the ``stop`` event). The socket is bound here, so a taken port fails
with the same one-line message as the SMTP address, before SMTP starts listening.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import threading
from collections.abc import Generator, Sequence

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.routing import BaseRoute

from .._cli.banner import format_address
from .app import create_app
from .options import HttpOptions

__all__ = ["bind", "serve_http"]

log = logging.getLogger("smtpkit.http")

#: Seconds open HTTP connections get to finish when the server stops.
GRACEFUL_TIMEOUT = 2


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the serving process handles the signals


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        OSError: it cannot be bound; ``strerror`` is ``cannot listen on http://…: reason``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        where = format_address((host, port))
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(
            exc.errno or errno.EINVAL, f"cannot listen on http://{where}: {reason}"
        ) from None


async def serve_http(
    options: HttpOptions,
    maildir: str | os.PathLike[str],
    stop: anyio.Event,
    *,
    routes: Sequence[BaseRoute] = (),
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the capture UI until ``stop`` is set; report the URL through ``task_status``.

    Args:
        options: where to listen, the credentials and the release targets.
        maildir: the Maildir shown.
        stop: set it to stop.
        routes: more routes to serve (see :func:`smtpkit.http.app.create_app`).
        task_status: receives the URL, such as ``http://127.0.0.1:8026/``, once listening.
    """
    sock = bind(options.host, options.port)
    stopping = threading.Event()
    app = create_app(maildir, options, routes=routes, stopping=stopping)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
        server_header=False,
    )
    server = _Server(config)
    url = f"http://{format_address(sock.getsockname())}/"
    log.info("capture UI on %s", url)
    with sock:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            task_status.started(url)
            await stop.wait()
            stopping.set()
            server.should_exit = True
