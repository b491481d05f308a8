"""``smtpkit run --workers N``: N server processes sharing one port, supervised.

How the port is shared: the supervisor opens one listening socket per worker slot, all
bound to the same address with ``SO_REUSEPORT`` (the kernel spreads new connections
across them), and each worker serves on the socket of its slot, inherited from the
supervisor. The supervisor keeps every socket open, so a worker that is replaced never
closes one: connections waiting in its queue are accepted by the next worker of the slot.

Supervision: each worker slot is a loop that starts the worker (``smtpkit run …
--worker=I``, in a session of its own) and waits for it. A worker that exits while the
supervisor is not stopping is logged and restarted after a backoff that doubles with
each quick failure (0.5 s, 1 s, 2 s, … up to 30 s; a worker that ran for a minute
resets it); its slot's socket is opened afresh, so connections do not wait for it. A
worker that exits with status 2 had a configuration error: restarting cannot help, so
the supervisor stops.

Signals: the first SIGTERM or SIGINT is forwarded (as SIGTERM) to every worker, which
stops accepting and lets its sessions finish within ``workers.graceful_timeout``; the
supervisor waits, kills a worker still running 5 s after that, and exits 0 when every
worker exited 0. A second signal kills the workers and exits at once. SIGHUP restarts
the workers one at a time (a rolling restart): a new worker starts on the slot's
socket, and only once it listens is the old one retired (SIGUSR2: it stops accepting and
lets its sessions end by themselves, without a ``421``); a new worker that
cannot start (a configuration that fails to load) ends the rolling restart, and the
running workers keep serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import Process

from ._cli.children import STOP_MARGIN, describe_status, kill, start
from .config import ServerConfig

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "WorkerPool", "open_listeners", "supervise"]

log = logging.getLogger("smtpkit.workers")

#: The first restart delay after a worker failed; it doubles with each quick failure.
BACKOFF_START = 0.5
#: The longest restart delay.
BACKOFF_MAX = 30.0
#: A worker that ran this long before failing restarts after BACKOFF_START again.
STABLE_AFTER = 60.0
#: The exit status of a worker that could not start because of its configuration.
EXIT_USAGE = 2
#: Seconds a new worker of a rolling restart gets to start listening.
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class WorkerPool:
    """What to supervise.

    Attributes:
        command: the command line of worker ``index`` (1-based) serving on the
            inherited socket ``listen_fd`` and writing a byte to ``ready_fd`` once
            it listens.
        count: how many workers.
        graceful_timeout: seconds a worker gets to finish its sessions after SIGTERM.
        config: where to listen (to open the slots' sockets afresh).
        sockets: one listening socket per slot.
    """

    command: Callable[[int, int, int], Sequence[str]]
    count: int
    graceful_timeout: float
    config: ServerConfig
    sockets: list[socket.socket]


def open_listeners(config: ServerConfig, count: int) -> list[socket.socket]:
    """Open ``count`` listening ``SO_REUSEPORT`` sockets on the listen address.

    Args:
        config: the config (``listen.host``, ``listen.port`` (0 picks one) and
            ``listen.backlog``).
        count: how many sockets (one per worker slot).

    Returns:
        The sockets, all on the same port; they are inheritable.

    Raises:
        OSError: SO_REUSEPORT is not available, or the address cannot be bound.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers above 1 needs SO_REUSEPORT, which this system does not have")
    sockets: list[socket.socket] = []
    try:
        port = config.listen.port
        for _ in range(count):
            sockets.append(_listener(config, port))
            port = sockets[0].getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listener(config: ServerConfig, port: int) -> socket.socket:
    host = config.listen.host
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
        sock.listen(config.listen.backlog)
    except OSError as exc:
        sock.close()
        where = f"listen.host = {host!r}, listen.port = {config.listen.port}"
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


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
        self.sockets = list(pool.sockets)
        self.processes: dict[int, Process] = {}
        #: A replaced worker's pid -> the worker that took over its slot.
        self.successors: dict[int, Process] = {}
        #: Workers stopping after a rolling restart replaced them.
        self.retiring: dict[int, Process] = {}
        self.statuses: list[int] = []
        self.fatal = False
        self.restarting = False

    async def run(self) -> int:
        # Made here, inside the event loop (older anyio versions need one).
        self.stopping = anyio.Event()
        async with anyio.create_task_group() as group:
            self.group = group
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
        process: Process | None = None
        while not self.stopping.is_set():
            started = anyio.current_time()
            if process is None:
                process = self.processes[index] = await self._start(index)
                if self.stopping.is_set():
                    _terminate(process)
                log.info("worker %d started (pid %d)", index, process.pid)
            status = await process.wait()
            successor = self.successors.pop(process.pid, None)
            if successor is not None:
                self.retiring.pop(process.pid, None)
                self._retired(index, process, status)
                process = successor
                continue
            self.processes.pop(index, None)
            if self.stopping.is_set():
                self._stopped(index, process, status)
                return
            uptime = anyio.current_time() - started
            failures = failures + 1 if uptime < STABLE_AFTER else 1
            if status == EXIT_USAGE:
                self._give_up(index, process)
                return
            await self._back_off(index, process, status, uptime, failures)
            self._reopen(index)
            process = None

    async def _start(self, index: int, ready_fd: int | None = None) -> Process:
        """Start a worker for slot ``index`` on the slot's socket."""
        listen_fd = self.sockets[index - 1].fileno()
        fds = [listen_fd] if ready_fd is None else [listen_fd, ready_fd]
        command = self.pool.command(index, listen_fd, -1 if ready_fd is None else ready_fd)
        return await start(command, pass_fds=fds)

    def _reopen(self, index: int) -> None:
        """Open a failed worker's socket afresh: its queue goes to the other workers meanwhile."""
        old = self.sockets[index - 1]
        try:
            self.sockets[index - 1] = _listener(self.pool.config, old.getsockname()[1])
        except OSError as exc:
            log.warning("worker %d: keeping its socket (%s)", index, exc)
            return
        old.close()

    async def _rolling_restart(self) -> None:
        """Replace the workers one at a time; stop at the first that cannot start."""
        try:
            for index in range(1, self.pool.count + 1):
                old = self.processes.get(index)
                if self.stopping.is_set() or old is None:
                    return
                if not await self._replace(index, old):
                    return
            log.info("SIGHUP: all %d workers restarted", self.pool.count)
        finally:
            self.restarting = False

    async def _replace(self, index: int, old: Process) -> bool:
        reader, writer = os.pipe()
        try:
            new = await self._start(index, ready_fd=writer)
            os.close(writer)
            writer = -1
            ready = await anyio.to_thread.run_sync(_wait_ready, reader, READY_TIMEOUT)
        finally:
            os.close(reader)
            if writer >= 0:
                os.close(writer)
        if not ready or self.stopping.is_set():
            if ready:
                _terminate(new)
            else:
                kill(new)
            status = await new.wait()
            if not ready:
                log.error(
                    "SIGHUP: the new worker %d (pid %d) %s before listening (see above); the "
                    "rolling restart stops and the running workers keep serving",
                    index,
                    new.pid,
                    describe_status(status),
                )
            return False
        self.processes[index] = new
        self.successors[old.pid] = new
        self.retiring[old.pid] = old
        log.info("worker %d restarted (pid %d, replacing pid %d)", index, new.pid, old.pid)
        _terminate(old, signal.SIGUSR2)
        return True

    def _retired(self, index: int, process: Process, status: int) -> None:
        if status in (0, -signal.SIGTERM, -signal.SIGUSR2):
            log.info("worker %d (pid %d) stopped after its successor took over", index, process.pid)
        else:
            log.warning("worker %d (pid %d) %s", index, process.pid, describe_status(status))

    async def _enforce_deadline(self) -> None:
        """Kill the workers still running STOP_MARGIN s after their graceful timeout."""
        await self.stopping.wait()
        await anyio.sleep(self.pool.graceful_timeout + STOP_MARGIN)
        for index, process in [*self.processes.items(), *self.retiring.items()]:
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
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._begin_rolling_restart()
                    continue
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

    def _begin_rolling_restart(self) -> None:
        if self.stopping.is_set():
            return
        if self.restarting:
            log.warning("SIGHUP received during a rolling restart: ignored")
            return
        log.info(
            "SIGHUP received: restarting the %d workers one at a time; each old worker "
            "stops once its successor listens, and finishes its sessions",
            self.pool.count,
        )
        self.restarting = True
        self.group.start_soon(self._rolling_restart)

    def _begin_stop(self) -> None:
        self.stopping.set()
        for process in self.processes.values():
            _terminate(process)

    def _exit_now(self, signum: int) -> None:
        log.warning("%s received again: killing the workers", signal.Signals(signum).name)
        for process in [*self.processes.values(), *self.retiring.values()]:
            kill(process)
        _drain_output()
        os._exit(128 + signum)


def _wait_ready(fd: int, timeout: float) -> bool:
    """Wait for a worker's byte on its ready pipe; False at end of file or timeout."""
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable) and os.read(fd, 1) != b""


def _terminate(process: Process, signum: signal.Signals = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _drain_output() -> None:
    """Write the queued log lines before an exit at once (they go through a thread)."""
    from ._output import drain

    drain(1.0)
    sys.stderr.flush()
