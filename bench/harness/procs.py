"""Child processes: start them pinned and with a raised file limit, read them, end them.

Every process runs in its own session (so its whole group can be signalled) and is
remembered until stopped; :func:`stop_all` ends whatever is left, which ``run.py`` calls in
a ``finally`` block.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

Popen = subprocess.Popen[bytes]

_LIVE: list[Popen] = []
#: Output read from a child's stdout beyond the last line returned, by process id.
_PENDING: dict[int, bytes] = {}


class ChildError(Exception):
    """A child process misbehaved: it exited, timed out or printed something unexpected."""


def child_setup(cpu: int | None) -> Callable[[], None]:
    """Return a ``preexec_fn`` that raises the file limit and pins the child to ``cpu``."""

    def setup() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


def spawn(
    argv: Sequence[str],
    *,
    cpu: int | None,
    log: IO[bytes],
    stdin: int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> Popen:
    """Start ``argv`` in a new session, stdout piped, stderr appended to ``log``.

    Args:
        argv: The command.
        cpu: The CPU to pin the process to, or None to leave it free.
        log: An open binary file for the child's stderr.
        stdin: ``subprocess.DEVNULL`` or ``subprocess.PIPE``.
        env: Extra environment variables.

    Returns:
        The running process.
    """
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=log,
        env=full_env,
        start_new_session=True,
        preexec_fn=child_setup(cpu),
    )
    _LIVE.append(proc)
    return proc


def read_line(proc: Popen, timeout: float, what: str) -> str:
    """Return the next stdout line of ``proc`` (stripped), waiting up to ``timeout`` seconds.

    Reads the pipe directly, keeping what follows the line for the next call, so that two
    lines arriving together are both seen.

    Raises:
        ChildError: If the process ends or stays silent for ``timeout`` seconds.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    pending = _PENDING.get(proc.pid, b"")
    while b"\n" not in pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChildError(f"{what}: no output within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise ChildError(f"{what}: exited with status {proc.wait()} before answering")
        pending += chunk
    line, _, rest = pending.partition(b"\n")
    _PENDING[proc.pid] = rest
    return line.decode(errors="replace").strip()


def read_json(proc: Popen, timeout: float, what: str) -> dict[str, Any]:
    """Return the next stdout line of ``proc`` parsed as a JSON object.

    Raises:
        ChildError: If there is no such line, or it reports {"error": ...}.
    """
    line = read_line(proc, timeout, what)
    try:
        result = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ChildError(f"{what}: expected a JSON line, got {line[:200]!r}") from exc
    if not isinstance(result, dict):
        raise ChildError(f"{what}: expected a JSON object, got {line[:200]!r}")
    if result.get("error") and len(result) == 1:
        raise ChildError(f"{what}: {result['error']}")
    return result


def _signal_group(proc: Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def stop(proc: Popen, grace: float = 15.0) -> None:
    """End ``proc`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(10)
    _signal_group(proc, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if proc in _LIVE:
        _LIVE.remove(proc)
    _PENDING.pop(proc.pid, None)


def stop_all() -> None:
    """Stop every process started by :func:`spawn` and not stopped yet."""
    for proc in reversed(list(_LIVE)):
        stop(proc, grace=5.0)


def status_kib(pid: int, field: str) -> int:
    """Return a ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status.

    Raises:
        ChildError: If the process is gone or has no such field.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise ChildError(f"pid {pid}: cannot read /proc status ({exc})") from exc
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ChildError(f"pid {pid}: no {field} in /proc/{pid}/status")


def wait_exit(proc: Popen, timeout: float, what: str) -> int:
    """Wait for ``proc`` to exit by itself and return its status.

    Raises:
        ChildError: If it is still running after ``timeout`` seconds (it is then stopped).
    """
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise ChildError(f"{what}: still running after {timeout:.0f} s") from None


def run_json(
    argv: Sequence[str], *, cpu: int | None, log: IO[bytes], timeout: float, what: str
) -> dict[str, Any]:
    """Run a client to completion and return the JSON object it printed.

    Raises:
        ChildError: If it fails, times out or prints no JSON object.
    """
    proc = spawn(argv, cpu=cpu, log=log)
    deadline = time.monotonic() + timeout
    try:
        result = read_json(proc, timeout, what)
        status = wait_exit(proc, max(1.0, deadline - time.monotonic()), what)
        if status != 0:
            raise ChildError(f"{what}: exited with status {status}")
        return result
    finally:
        stop(proc)
