"""One serving process: ``anyio.run`` around a :class:`smtpkit.server.Engine`, with signals.

``smtpkit run`` and ``App.run()`` both serve through here, so both print the same
start-up lines, read the same signals and stop the same way.

The first SIGTERM or SIGINT stops accepting connections and lets the sessions in
flight finish (``workers.graceful_timeout``); the process then exits 0. A second
signal stops at once: ``smtpkit run`` exits with status 128 + the signal number,
``App.run()`` cuts the open sessions and returns. SIGHUP reloads: the configuration
is loaded again (the file, the environment), the TLS certificates and the password
files are read again, and new sessions use them while open ones keep theirs; a
configuration that fails to load is refused with a log line and the old one stays.
SIGUSR2 retires the process (what a rolling restart sends the worker it replaces): it
stops accepting and lets open sessions end by themselves, without a ``421``, for up to
``workers.graceful_timeout``. A worker also stops when its supervisor disappears (its
parent process changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._version import __version__
from ..config import ServerConfig
from ..server import Engine
from ..smtp import SMTP
from .banner import extensions, features, format_address, safety_warnings
from .options import UsageError

__all__ = ["ServePlan", "check_event_loop", "serve_in_process"]

log = logging.getLogger("smtpkit.cli")

#: Seconds between two checks that a worker's supervisor is still there.
PARENT_CHECK = 1.0
#: Seconds an exit at once still waits for queued output to be written.
EXIT_DRAIN = 1.0
_AUTH_WITHOUT_TLS = "auth_required=True with auth_require_tls=False"
#: The signals a serving process handles.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
#: Settings a reload cannot change: they need a restart.
_RESTART_ONLY = ("listen", "loop", "workers.count")


@dataclass
class ServePlan:
    """What one process serves, and how it introduces itself.

    Attributes:
        factory_for: the protocol factory for a config (called again on reload).
        config: the config it serves with (the reloaded one after SIGHUP).
        title: what is served, for the first log line.
        lifespan: returns the lifespan to enter around serving, or None.
        load_config: loads the config again for SIGHUP (None: the same settings,
            with the certificate files read again).
        refresh: reads the password files again on SIGHUP, or None.
        default_app: whether it is the embedded default (for the warnings).
        worker: the worker index under a supervisor, or None.
        sock: a listening socket inherited from the supervisor, or None.
        pid_file: a file to write this process's id to while it serves, or None.
        ready_fd: a pipe to write one byte to once listening (for the supervisor
            of a rolling restart), or None.
        exit_at_once: whether a second signal exits the process at once
            (``smtpkit run``) rather than cutting the sessions and returning.
        http: the capture UI's HTTP listener, started before SMTP listens
            (``await group.start(http, stop)``), or None.
    """

    factory_for: Callable[[ServerConfig], Callable[[], SMTP]]
    config: ServerConfig
    title: str
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    load_config: Callable[[], ServerConfig] | None = None
    refresh: Callable[[], None] | None = None
    default_app: bool = False
    worker: int | None = None
    sock: socket.socket | None = None
    pid_file: str | None = None
    ready_fd: int | None = None
    exit_at_once: bool = True
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
        try:
            engine = Engine(plan.factory_for(plan.config), plan.config, sock=plan.sock)
            if threading.current_thread() is threading.main_thread():
                await group.start(_watch_signals, stop, plan, engine)
            if plan.worker is not None:
                group.start_soon(_watch_parent, stop, os.getppid())
            # The HTTP listener outlives the drain, so /healthz can say it drains.
            http_stop = anyio.Event()
            if plan.http is not None:
                await group.start(plan.http, http_stop)
            lifespan = plan.lifespan() if plan.lifespan is not None else None
            with _pid_file(plan.pid_file):
                try:
                    await engine.serve(
                        lifespan=lifespan, ready=lambda a: _ready(plan, a), stop=stop
                    )
                finally:
                    http_stop.set()
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
    protocol = plan.factory_for(config)()
    log.info("extensions: %s", extensions(protocol, config))
    options = features(protocol, config)
    if options:
        log.info("options: %s", options)
    if plan.worker is None or plan.worker == 1:
        for warning in safety_warnings(protocol, config, default_app=plan.default_app):
            log.warning("unsafe setting: %s", warning)
    if plan.ready_fd is not None:
        fd, plan.ready_fd = plan.ready_fd, None
        with contextlib.suppress(OSError):
            os.write(fd, b"1")
        os.close(fd)


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """Write this process's id to ``path`` while serving; remove it after, if still ours."""
    if path is None:
        yield
        return
    write_pid_file(path)
    try:
        yield
    finally:
        remove_pid_file(path)


def write_pid_file(path: str) -> None:
    """Write this process's id to ``path`` (atomically: a reader never sees half of it)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def remove_pid_file(path: str) -> None:
    """Remove the pid file ``path`` if it still names this process."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="ascii") as file:
            if int(file.read().strip()) != os.getpid():
                return
        os.unlink(path)


async def _watch_signals(
    stop: anyio.Event,
    plan: ServePlan,
    engine: Engine,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with contextlib.ExitStack() as stack:
        try:
            signals = stack.enter_context(anyio.open_signal_receiver(*_SIGNALS))
        except (NotImplementedError, ValueError):
            task_status.started()  # this loop cannot handle signals: keep the defaults
            return
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                reload_plan(plan, engine)
            elif signum == signal.SIGUSR2 and not stop.is_set():
                log.info("SIGUSR2 received: no new connections; open sessions may finish")
                engine.retire()
                stop.set()
            elif stop.is_set():
                _stop_at_once(signum, plan, engine)
            else:
                _stop_gracefully(signum, plan.config)
                stop.set()


def _stop_gracefully(signum: int, config: ServerConfig) -> None:
    name = signal.Signals(signum).name
    log.info(
        "%s received: no new connections; idle sessions and sessions between "
        "commands get 421 and are closed now; a command in progress (a DATA "
        "transfer, a slow hook) gets up to %g s to finish (send %s again to exit "
        "at once)",
        name,
        config.workers.graceful_timeout,
        name,
    )


def _stop_at_once(signum: int, plan: ServePlan, engine: Engine) -> None:
    name = signal.Signals(signum).name
    if plan.exit_at_once:
        log.warning("%s received again: exiting at once", name)
        _flush()
        os._exit(128 + signum)
    log.warning(
        "%s received again: closing the %d open session(s) at once",
        name,
        engine.open_connections(),
    )
    engine.abort()


def reload_plan(plan: ServePlan, engine: Engine) -> bool:
    """Load the config again and serve new connections with it; False if refused.

    Args:
        plan: what is served (its ``config`` becomes the new one).
        engine: the running engine.
    """
    try:
        config = plan.load_config() if plan.load_config is not None else plan.config.replace()
        config.tls.server_context()  # the certificate files, read again
        factory = plan.factory_for(config)
        factory()  # one connection's settings: a bad value shows now, not per client
    except Exception as exc:
        log.error("SIGHUP: reload refused, the previous configuration stays: %s", exc)
        return False
    _warn_restart_only(plan.config, config)
    if plan.refresh is not None:
        plan.refresh()
    if config.log_level != plan.config.log_level:
        logging.getLogger().setLevel(config.log_level.upper())
    engine.reload(factory, config)
    plan.config = engine.config
    log.info(
        "SIGHUP: reloaded the configuration, certificates and password files; new sessions "
        "use them, the %d open session(s) keep theirs",
        engine.open_connections(),
    )
    return True


def _warn_restart_only(old: ServerConfig, new: ServerConfig) -> None:
    changed = [path for path in _RESTART_ONLY if _get(old, path) != _get(new, path)]
    if changed:
        log.warning(
            "SIGHUP: %s changed, which only a restart applies; keeping the running values",
            ", ".join(changed),
        )


def _get(config: ServerConfig, path: str) -> Any:
    value: Any = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


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
