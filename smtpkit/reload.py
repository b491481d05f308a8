"""``smtpkit run --reload``: restart the server when its source files change.

For development. A parent process runs the server as a child (the same command
without ``--reload``) and polls the modification times of the project's ``.py``
files (and of the config file); when one is added, removed or changed, it stops the
child gracefully and starts a new one. A child that exits with an error (a syntax
error in the module just saved, say) is not restarted until the next change.

Which files: the folder of the target's top-level package (or the file's package
root), found without importing the target, searched recursively for ``*.py``;
folders that start with a dot, ``__pycache__``, ``node_modules`` and virtual
environments are skipped. The parent imports nothing of the project, so it never
holds stale code. No third-party watcher is needed: a scan of a few hundred files
every half second costs little. SIGHUP is passed on to the child, which reloads its
configuration without restarting (see :mod:`smtpkit._cli.serving`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import Process

from ._cli.children import STOP_MARGIN, describe_status, kill, start, stop

__all__ = ["POLL_INTERVAL", "Reloader", "Snapshot", "run_with_reloader", "scan"]

log = logging.getLogger("smtpkit.reload")

#: Seconds between two scans of the watched files.
POLL_INTERVAL = 0.5
#: Seconds to let an editor finish writing before restarting.
SETTLE = 0.2
_SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages"})

Snapshot = dict[str, tuple[int, int]]
"""File path -> (modification time in ns, size)."""


def scan(roots: Iterable[Path], files: Iterable[Path] = ()) -> Snapshot:
    """Stat every ``.py`` file under ``roots`` (and each of ``files``).

    Args:
        roots: folders to search recursively, or single files.
        files: more single files (such as the config file).

    Returns:
        The snapshot; missing files are left out.
    """
    snapshot: Snapshot = {}
    for path in [*_python_files(roots), *files]:
        try:
            info = os.stat(path)
        except OSError:
            continue
        snapshot[str(path)] = (info.st_mtime_ns, info.st_size)
    return snapshot


def _python_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, folders, names in os.walk(root):
            folders[:] = [name for name in folders if _watched_folder(Path(folder, name))]
            yield from (Path(folder, name) for name in names if name.endswith(".py"))


def _watched_folder(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name in _SKIPPED_FOLDERS:
        return False
    return not (path / "pyvenv.cfg").exists()


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """The files added, removed or modified between two snapshots, sorted."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


@dataclass
class Reloader:
    """Runs a child command and restarts it when the watched files change.

    Attributes:
        command: the child's command line.
        roots: folders (or files) whose ``.py`` files are watched.
        files: more files to watch.
        grace: seconds the child gets to stop before it is killed.
    """

    command: Sequence[str]
    roots: Sequence[Path]
    files: Sequence[Path] = ()
    grace: float = 30.0 + STOP_MARGIN
    process: Process | None = field(default=None, init=False)

    async def run(self) -> int:
        """Run until a signal stops it.

        Returns:
            The last child's exit status.
        """
        # Made here, inside the event loop (older anyio versions need one).
        self.stop_requested = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_signals)
            status = await self._loop()
            group.cancel_scope.cancel()
        return status

    async def _loop(self) -> int:
        snapshot = await self._scan()
        log.info("watching %d file(s) for changes", len(snapshot))
        while True:
            self.process = process = await start(self.command)
            event, snapshot = await self._next_event(process, snapshot)
            if event == "stop":
                return await stop(process, self.grace)
            if event == "change":
                await stop(process, self.grace)
                continue
            status = await process.wait()
            if status == 0:
                return 0
            log.error("the server %s; waiting for a change to restart it", describe_status(status))
            event, snapshot = await self._next_event(None, snapshot)
            if event == "stop":
                return status

    async def _next_event(
        self, process: Process | None, snapshot: Snapshot
    ) -> tuple[str, Snapshot]:
        """Wait for the first of: a stop request, a change, the child's exit."""
        outcome: list[tuple[str, Snapshot]] = []
        async with anyio.create_task_group() as group:

            async def decide(event: str, new: Snapshot) -> None:
                outcome.append((event, new))
                group.cancel_scope.cancel()

            async def stopped() -> None:
                await self.stop_requested.wait()
                await decide("stop", snapshot)

            async def changed() -> None:
                await decide("change", await self._wait_for_change(snapshot))

            async def exited() -> None:
                assert process is not None
                await process.wait()
                await decide("exit", snapshot)

            group.start_soon(stopped)
            group.start_soon(changed)
            if process is not None:
                group.start_soon(exited)
        return outcome[0]

    async def _wait_for_change(self, snapshot: Snapshot) -> Snapshot:
        while True:
            await anyio.sleep(POLL_INTERVAL)
            current = await self._scan()
            changes = changed_files(snapshot, current)
            if changes:
                await anyio.sleep(SETTLE)
                shown = ", ".join(changes[:3]) + (", …" if len(changes) > 3 else "")
                log.info("change detected in %s: restarting", shown)
                return await self._scan()

    async def _scan(self) -> Snapshot:
        return await anyio.to_thread.run_sync(scan, self.roots, self.files)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._forward_reload()
                    continue
                if self.stop_requested.is_set():
                    log.warning("%s received again: stopping at once", signal.Signals(signum).name)
                    if self.process is not None:
                        kill(self.process)
                    _drain_output()
                    os._exit(128 + signum)
                self.stop_requested.set()

    def _forward_reload(self) -> None:
        """SIGHUP reloads the server's configuration: pass it on to the child."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGHUP)


def run_with_reloader(
    command: Sequence[str], roots: Sequence[Path], files: Sequence[Path] = (), *, grace: float
) -> int:
    """Run ``command`` as a child, restarting it when the watched files change.

    Args:
        command: the child's command line.
        roots: folders (or files) whose ``.py`` files are watched.
        files: more files to watch (the config file).
        grace: the child's graceful timeout; it is killed STOP_MARGIN s after it.

    Returns:
        The exit status (the last child's).
    """
    reloader = Reloader(command, roots, files, grace + STOP_MARGIN)
    return anyio.run(reloader.run, backend="asyncio")


def _drain_output() -> None:
    """Write the queued log lines before an exit at once (they go through a thread)."""
    from ._output import drain

    drain(1.0)
    sys.stderr.flush()
