"""Fixtures for the command-line tests.

``start(*args, env=None, cwd=None)``
    Starts ``python -m smtpkit ARGS`` (see :class:`~.helpers.Command`) in the test's
    temporary folder; every command still running at the end is stopped.

``project``
    The temporary folder, holding ``mailapp.py``: an App with a ``PID`` command
    (replies with the worker's process id), a ``CRASH`` command (the process exits
    at once) and a route for ``(user)@example.com`` that prints what it got.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import Command, write

MAILAPP = textwrap.dedent(
    """
    import os

    from smtpkit import App, ServerConfig

    app = App(ServerConfig(hostname="app.example"))


    @app.command("PID", syntax="PID")
    def pid(server, arg):
        return f"250 {os.getpid()}"


    @app.command("CRASH")
    def crash(server, arg):
        os._exit(3)


    @app.route("(user)@example.com")
    def inbox(message):
        print("delivered", message.capture["user"], len(message.content), flush=True)
    """
)

Start = Callable[..., Command]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with ``mailapp.py`` in it."""
    write(tmp_path, "mailapp.py", MAILAPP)
    return tmp_path


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start ``python -m smtpkit`` commands; stop them at the end of the test."""
    running: list[Command] = []

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Command:
        command = Command(args, cwd or tmp_path, env)
        running.append(command)
        return command

    yield run
    for command in running:
        command.stop()
