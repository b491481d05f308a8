"""Child processes of the worker supervisor and the reloader: start, stop, describe.

Children run in a session of their own, so a Ctrl-C in the terminal reaches only the
parent, which then stops them once, gracefully: a signal delivered both directly and
forwarded would count as the "second signal" that stops a server at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence

import anyio
from anyio.abc import Process

__all__ = ["STOP_MARGIN", "describe_status", "kill", "smtpkit_command", "start", "stop"]

log = logging.getLogger("smtpkit.cli")

#: Seconds a child gets, beyond its graceful timeout, to exit before it is killed.
STOP_MARGIN = 5.0


def smtpkit_command(arguments: Sequence[str]) -> list[str]:
    """The command running ``smtpkit`` with ``arguments`` under this Python."""
    return [sys.executable, "-m", "smtpkit", *arguments]


async def start(command: Sequence[str], *, pass_fds: Sequence[int] = ()) -> Process:
    """Start a child sharing this process's stdout and stderr, in its own session.

    Args:
        command: the program and its arguments.
        pass_fds: file descriptors the child inherits (a listening socket, a pipe).

    Returns:
        The running process.
    """
    return await anyio.open_process(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=None,
        stderr=None,
        start_new_session=True,
        pass_fds=pass_fds,
    )


async def stop(process: Process, grace: float) -> int:
    """Ask a child to stop (SIGTERM); kill it if it is still running after ``grace`` seconds.

    Args:
        process: the child.
        grace: seconds to wait before SIGKILL.

    Returns:
        Its exit status (negative: the signal that ended it).
    """
    if process.returncode is None:
        _signal(process, signal.SIGTERM)
    with anyio.move_on_after(grace):
        return await process.wait()
    log.warning("pid %d did not stop within %.0f s: killing it", process.pid, grace)
    kill(process)
    return await _reap(process)


async def _reap(process: Process) -> int:
    with anyio.CancelScope(shield=True):
        await process.wait()
    status = process.returncode
    assert status is not None
    return status


def kill(process: Process) -> None:
    """SIGKILL a child that is still running."""
    if process.returncode is None:
        _signal(process, signal.SIGKILL)


def _signal(process: Process, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def describe_status(status: int) -> str:
    """``"exited with status 1"`` or ``"was killed by SIGKILL"``."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"
