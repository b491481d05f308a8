"""One serving process: ``anyio.run`` around :func:`smtpkit.server.serve`, with signals.

The first SIGTERM or SIGINT stops accepting connections and lets the sessions in
flight finish (``workers.graceful_timeout``); the process then exits 0. A second
signal exits at once, with status 128 + the signal number. A worker also stops when
its supervisor disappears (its parent process changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._version import __version__
from ..config import ServerConfig
from ..smtp import SMTP
from .banner import extensions, features, format_address, safety_warnings
from .options import UsageError

__all__ = ["ServePlan", "check_event_loop", "serve_in_process"]

log = logging.getLogger("smtpkit.cli")

Ready = Callable[[list[Any]], object]
#: ``serve(ready, stop)``: serves until ``stop`` is set.
ServeFunc = Callable[[Ready, anyio.Event], Awaitable[None]]
#: Seconds between two checks that a worker's supervisor is still there.
PARENT_CHECK = 1.0
#: Seconds an exit at once still waits for queued output to be written.
EXIT_DRAIN = 1.0
_AUTH_WITHOUT_TLS = "auth_required=True with auth_require_tls=False"


@dataclass
class ServePlan:
    """What one process serves, and how it introduces itself.

    Attributes:
        serve: runs the server until its ``stop`` event is set.
        probe: builds an unconnected protocol (to read its extensions).
        config: the config it serves with.
        title: what is served, for the first log line.
        default_app: whether it is the embedded default (for the warnings).
        worker: the worker index under a supervisor, or None.
        http: the capture UI's HTTP listener, started before SMTP listens
            (``await group.start(http, stop)``), or None.
    """

    serve: ServeFunc
    probe: Callable[[], SMTP]
    config: ServerConfig
    title: str
    default_app: bool = False
    worker: int | None = None
    http: Callable[..., Coroutine[Any, Any, Any]] | None = None
    error: BaseException | None = field(default=None, init=False)


def serve_in_process(plan: ServePlan) -> None:
    """Serve until stopped by a signal.

    Args:
        plan: what to serve.

    Raises:
        UsageError: uvloop is asked for but not installed, or the TLS files cannot be
            loaded.
        OSError: the address cannot be bound.
    """
    check_event_loop(plan.config)
    # The SMTP class warns about AUTH without TLS each time a process first builds a
    # connection; the start-up lines name the setting instead (see safety_warnings).
    warnings.filterwarnings("ignore", _AUTH_WITHOUT_TLS, UserWarning)
    use_uvloop = plan.config.loop == "uvloop"
    anyio.run(_main, plan, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
    if plan.error is not None:
        raise plan.error


def check_event_loop(config: ServerConfig) -> None:
    """Make sure the configured event loop can be used.

    Raises:
        UsageError: ``loop = 'uvloop'`` and uvloop cannot be imported (not installed,
            or broken); the message says what to do.
    """
    if config.loop != "uvloop":
        return
    try:
        importlib.import_module("uvloop")
    except ImportError as exc:
        raise UsageError(
            f"loop = 'uvloop': cannot import uvloop ({exc}); install smtpkit with its uvloop "
            "extra (in a checkout: python3 -m pip install '.[uvloop]') or use --loop asyncio"
        ) from None


async def _main(plan: ServePlan) -> None:
    stop = anyio.Event()
    who = f"worker {plan.worker}" if plan.worker is not None else f"smtpkit {__version__}"
    loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    log.info("%s (pid %d, %s): serving %s", who, os.getpid(), loop, plan.title)
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_signals, stop, plan.config)
        if plan.worker is not None:
            group.start_soon(_watch_parent, stop, os.getppid())
        try:
            if plan.http is not None:
                await group.start(plan.http, stop)
            await plan.serve(lambda addresses: _ready(plan, addresses), stop)
        except Exception as exc:
            plan.error = exc
        finally:
            group.cancel_scope.cancel()
    if plan.error is None:
        log.info("stopped")


def _ready(plan: ServePlan, addresses: list[Any]) -> None:
    config = plan.config
    tls = " (implicit TLS)" if config.tls.implicit else ""
    for address in addresses:
        log.info("listening on %s%s", format_address(address), tls)
    protocol = plan.probe()
    log.info("extensions: %s", extensions(protocol, config))
    options = features(protocol, config)
    if options:
        log.info("options: %s", options)
    if plan.worker is None or plan.worker == 1:
        for warning in safety_warnings(protocol, config, default_app=plan.default_app):
            log.warning("unsafe setting: %s", warning)


async def _watch_signals(stop: anyio.Event, config: ServerConfig) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.warning("%s received again: exiting at once", name)
                _flush()
                os._exit(128 + signum)
            log.info(
                "%s received: no new connections; idle sessions and sessions between "
                "commands get 421 and are closed now; a command in progress (a DATA "
                "transfer, a slow hook) gets up to %g s to finish (send %s again to exit "
                "at once)",
                name,
                config.workers.graceful_timeout,
                name,
            )
            stop.set()


async def _watch_parent(stop: anyio.Event, parent: int) -> None:
    while os.getppid() == parent:
        await anyio.sleep(PARENT_CHECK)
    log.warning("the supervisor (pid %d) is gone: stopping", parent)
    stop.set()


def _flush() -> None:
    from .._output import drain

    drain(EXIT_DRAIN)  # the queued log lines and message lines, then the streams
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
