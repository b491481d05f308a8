"""``smtpkit run --workers N``: N server processes sharing one port, supervised.

How the port is shared: every worker creates its own listening socket with
``SO_REUSEPORT`` (``listen.reuse_port``), and the kernel spreads new connections
across the workers' sockets. Before starting them, the supervisor binds (without
listening) a socket with ``SO_REUSEPORT`` on the same address: that turns port 0 into
a real port for all workers, fails early when the port is taken, and keeps the port
reserved while a worker restarts. A bound socket that does not listen receives no
connections.

Supervision: each worker slot is a loop that starts the worker (``smtpkit run …
--worker=I``, in a session of its own) and waits for it. A worker that exits while the
supervisor is not stopping is logged and restarted after a backoff that doubles with
each quick failure (0.5 s, 1 s, 2 s, … up to 30 s; a worker that ran for a minute
resets it). A worker that exits with status 2 had a configuration error: restarting
cannot help, so the supervisor stops.

Signals: the first SIGTERM or SIGINT is forwarded (as SIGTERM) to every worker, which
stops accepting and lets its sessions finish within ``workers.graceful_timeout``; the
supervisor waits, kills a worker still running 5 s after that, and exits 0 when every
worker exited 0. A second signal kills the workers and exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process

from ._cli.children import STOP_MARGIN, describe_status, kill, start
from .config import ServerConfig

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "WorkerPool", "reserve_port", "supervise"]

log = logging.getLogger("smtpkit.workers")

#: The first restart delay after a worker failed; it doubles with each quick failure.
BACKOFF_START = 0.5
#: The longest restart delay.
BACKOFF_MAX = 30.0
#: A worker that ran this long before failing restarts after BACKOFF_START again.
STABLE_AFTER = 60.0
#: The exit status of a worker that could not start because of its configuration.
EXIT_USAGE = 2


@dataclass(frozen=True)
class WorkerPool:
    """What to supervise.

    Attributes:
        command: the command line of worker ``index`` (1-based).
        count: how many workers.
        graceful_timeout: seconds a worker gets to finish its sessions after SIGTERM.
    """

    command: Callable[[int], Sequence[str]]
    count: int
    graceful_timeout: float


def reserve_port(config: ServerConfig) -> tuple[socket.socket, int]:
    """Bind, without listening, a ``SO_REUSEPORT`` socket on the listen address.

    Args:
        config: the config (``listen.host`` and ``listen.port``; port 0 picks one).

    Returns:
        The socket (keep it open while the workers run) and its port.

    Raises:
        OSError: SO_REUSEPORT is not available, or the address cannot be bound.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers above 1 needs SO_REUSEPORT, which this system does not have")
    host, port = config.listen.host, config.listen.port
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"listen.host = {host!r}, listen.port = {port}"
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc
    return sock, sock.getsockname()[1]


def supervise(pool: WorkerPool) -> int:
    """Run and supervise the workers until a signal stops them.

    Args:
        pool: the workers.

    Returns:
        The exit status: 0 when every worker stopped cleanly, 1 when one did not,
        2 when a worker could not start because of its configuration.
    """
    supervisor = _Supervisor(pool)
    return anyio.run(supervisor.run, backend="asyncio")


class _Supervisor:
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.processes: dict[int, Process] = {}
        self.statuses: list[int] = []
        self.fatal = False

    async def run(self) -> int:
        # Made here, inside the event loop (older anyio versions need one).
        self.stopping = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_signals)
            group.start_soon(self._enforce_deadline)
            async with anyio.create_task_group() as slots:
                for index in range(1, self.pool.count + 1):
                    slots.start_soon(self._keep_running, index)
            group.cancel_scope.cancel()
        if self.fatal:
            return EXIT_USAGE
        return 0 if all(status == 0 for status in self.statuses) else 1

    async def _keep_running(self, index: int) -> None:
        failures = 0
        while not self.stopping.is_set():
            started = anyio.current_time()
            process = await start(self.pool.command(index))
            self.processes[index] = process
            if self.stopping.is_set():
                _terminate(process)
            log.info("worker %d started (pid %d)", index, process.pid)
            status = await process.wait()
            del self.processes[index]
            if self.stopping.is_set():
                self._stopped(index, process, status)
                return
            uptime = anyio.current_time() - started
            failures = failures + 1 if uptime < STABLE_AFTER else 1
            if status == EXIT_USAGE:
                self._give_up(index, process)
                return
            await self._back_off(index, process, status, uptime, failures)

    async def _enforce_deadline(self) -> None:
        """Kill the workers still running STOP_MARGIN s after their graceful timeout."""
        await self.stopping.wait()
        await anyio.sleep(self.pool.graceful_timeout + STOP_MARGIN)
        for index, process in self.processes.items():
            log.warning("worker %d (pid %d) is still running: killing it", index, process.pid)
            kill(process)

    def _stopped(self, index: int, process: Process, status: int) -> None:
        # A worker still starting up dies of the SIGTERM it was sent: that is a clean stop.
        if status == -signal.SIGTERM:
            status = 0
        self.statuses.append(status)
        if status == 0:
            log.info("worker %d (pid %d) stopped", index, process.pid)
        else:
            log.warning("worker %d (pid %d) %s", index, process.pid, describe_status(status))

    def _give_up(self, index: int, process: Process) -> None:
        log.error(
            "worker %d (pid %d) could not start (status %d: a configuration error, "
            "see above); restarting cannot help, so all workers stop",
            index,
            process.pid,
            EXIT_USAGE,
        )
        self.fatal = True
        self._begin_stop()

    async def _back_off(
        self, index: int, process: Process, status: int, uptime: float, failures: int
    ) -> None:
        delay = min(BACKOFF_START * 2 ** (failures - 1), BACKOFF_MAX)
        log.warning(
            "worker %d (pid %d) %s after %.1f s; restarting it in %.1f s",
            index,
            process.pid,
            describe_status(status),
            uptime,
            delay,
        )
        with anyio.move_on_after(delay):
            await self.stopping.wait()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self.stopping.is_set():
                    self._exit_now(signum)
                log.info(
                    "%s received: stopping %d worker(s); each closes its idle sessions at "
                    "once and gives a command in progress up to %g s to finish (send it "
                    "again to stop at once)",
                    signal.Signals(signum).name,
                    len(self.processes),
                    self.pool.graceful_timeout,
                )
                self._begin_stop()

    def _begin_stop(self) -> None:
        self.stopping.set()
        for process in self.processes.values():
            _terminate(process)

    def _exit_now(self, signum: int) -> None:
        log.warning("%s received again: killing the workers", signal.Signals(signum).name)
        for process in self.processes.values():
            kill(process)
        sys.stderr.flush()
        os._exit(128 + signum)


def _terminate(process: Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
