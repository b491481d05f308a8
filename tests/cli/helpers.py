"""Run ``python -m smtpkit`` as a subprocess and follow what it prints.

:class:`Command` starts the command with a clean environment (no inherited
``SMTPKIT_…`` variables, no ``PYTHONUNBUFFERED``: the command must flush by
itself), collects stdout and stderr line by line in background threads, and
waits for lines by regex, never by sleeping a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

HOST = "127.0.0.1"
#: Seconds to wait for a server to say it listens (a loaded 2-core machine is slow).
READY = 60.0
#: Seconds to wait for a process to exit after being asked to.
EXIT = 60.0
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without SMTPKIT_ variables and PYTHONUNBUFFERED, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SMTPKIT_") and name != "PYTHONUNBUFFERED"
    }
    env.update(extra or {})
    return env


def smtpkit(*args: str) -> list[str]:
    """The command line of ``python -m smtpkit ARGS`` under this interpreter."""
    return [sys.executable, "-m", "smtpkit", *args]


def run_once(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command that ends by itself (an error, ``routes``, ``check``, ``--help``)."""
    return subprocess.run(
        smtpkit(*args),
        cwd=cwd,
        env=clean_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=EXIT,
        check=False,
    )


class Command:
    """A running ``python -m smtpkit`` process.

    Args:
        args: the arguments after ``smtpkit``.
        cwd: its working directory.
        env: variables added to the clean environment.
    """

    def __init__(self, args: Iterable[str], cwd: Path, env: Mapping[str, str] | None = None):
        self.args = list(args)
        self.process = subprocess.Popen(
            smtpkit(*self.args),
            cwd=cwd,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def _read(self, name: str, stream: object) -> None:
        assert hasattr(stream, "readline")
        for raw in iter(stream.readline, b""):
            with self._changed:
                self.lines[name].append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        """Everything printed so far, for failure messages."""
        with self._changed:
            return (
                "--- stdout\n"
                + "\n".join(self.lines["stdout"])
                + "\n--- stderr\n"
                + "\n".join(self.lines["stderr"])
            )

    def wait_for(
        self,
        pattern: str | re.Pattern[str],
        stream: str = "stderr",
        *,
        start: int = 0,
        timeout: float = READY,
    ) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (``re.search``), from line ``start`` on.

        Raises:
            AssertionError: the timeout passed, or the process ended first; the
                message holds everything it printed.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[stream][start:]:
                    found = regex.search(line)
                    if found:
                        return found
                done = self.process.poll() is not None and not any(
                    r.is_alive() for r in self._readers
                )
                left = deadline - time.monotonic()
                if done or left <= 0:
                    why = "exited" if done else f"printed nothing like it in {timeout:.0f} s"
                    raise AssertionError(
                        f"no line matching {regex.pattern!r}; the command {why}\n{self.output()}"
                    )
                self._changed.wait(min(left, 0.5))

    def wait_for_all(
        self, pattern: str | re.Pattern[str], count: int, stream: str = "stderr"
    ) -> list[re.Match[str]]:
        """Wait for ``count`` lines matching ``pattern``; their matches, in order."""
        found: list[re.Match[str]] = []
        start = 0
        while len(found) < count:
            match = self.wait_for(pattern, stream, start=start)
            found.append(match)
            with self._changed:
                start = self.lines[stream].index(match.string, start) + 1
        return found

    def count(self, stream: str = "stderr") -> int:
        """How many lines ``stream`` has so far (a ``start`` for :meth:`wait_for`)."""
        with self._changed:
            return len(self.lines[stream])

    def port(self, *, start: int = 0) -> int:
        """The port of the first ``listening on 127.0.0.1:PORT`` line from ``start`` on."""
        return int(self.wait_for(LISTENING, start=start).group(1))

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal to the process."""
        self.process.send_signal(signum)

    def wait(self, timeout: float = EXIT) -> int:
        """Wait for the process to exit and for its output to be read; its status."""
        status = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status

    def stop(self) -> None:
        """End the process if it still runs: SIGTERM, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(EXIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(EXIT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def send(
    port: int,
    *,
    subject: str = "Hello",
    sender: str = "alice@example.com",
    recipients: tuple[str, ...] = ("bob@example.com",),
    body: str = "Hi Bob.",
) -> None:
    """Send one message with smtplib."""
    message = (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    )
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.sendmail(sender, list(recipients), message)


def maildir_messages(folder: Path) -> list[bytes]:
    """The messages in ``folder/new``, oldest name first."""
    new = folder / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())] if new.exists() else []


def write(folder: Path, name: str, text: str) -> Path:
    """Write a file (dedented by the caller) and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
