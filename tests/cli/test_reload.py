"""``--reload``: the server restarts when a source file of the project changes."""

from __future__ import annotations

import os
import signal
import smtplib
import textwrap
from pathlib import Path

import pytest

from .conftest import Start
from .helpers import HOST, READY

# Several processes start in each test: allow for a slow, loaded machine.
pytestmark = pytest.mark.timeout(180)

APP = textwrap.dedent(
    """
    from smtpkit import App

    from helpers.words import WORD

    app = App()


    @app.command("VERSION")
    def version(server, arg):
        return "250 " + WORD
    """
)


def write_word(project: Path, word: str) -> None:
    """Change the helper module, and make sure its modification time moves on."""
    path = project / "helpers" / "words.py"
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(f"WORD = {word!r}\n")
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def version(port: int) -> str:
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        code, reply = client.docmd("VERSION")
        assert code == 250
        return reply.decode().removeprefix("2.0.0 ")  # the enhanced status code


def test_reload_restarts_on_changes_and_waits_out_errors(start: Start, tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    write_word(tmp_path, "one")
    (tmp_path / "versionapp.py").write_text(APP)

    command = start("run", "versionapp:app", "--reload", "--port", "0")
    assert version(command.port()) == "one"
    first_child = int(command.wait_for(r"\(pid (\d+), asyncio\): serving App").group(1))

    mark = command.count()
    write_word(tmp_path, "two")
    command.wait_for(r"change detected in .*words\.py: restarting", start=mark)
    assert version(command.port(start=mark)) == "two"
    assert first_child != command.pid

    mark = command.count()
    (tmp_path / "helpers" / "words.py").write_text("WORD = (\n")
    command.wait_for(r"the server exited with status 1; waiting for a change", start=mark)
    command.wait_for(r"SyntaxError", start=mark)

    mark = command.count()
    write_word(tmp_path, "three")
    assert version(command.port(start=mark)) == "three"

    command.send_signal(signal.SIGTERM)
    assert command.wait() == 0
