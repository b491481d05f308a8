"""Serving that cannot start: a taken port, a failing lifespan."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .helpers import HOST, run_once, write

LIFESPAN = """
import contextlib

from smtpkit import App


@contextlib.asynccontextmanager
async def lifespan(app):
    raise ConnectionRefusedError(111, "the database is unreachable")
    yield


app = App(lifespan=lifespan)
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_port_is_reported_in_one_line(tmp_path: Path, workers: str) -> None:
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        result = run_once("run", "--port", str(port), "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"smtpkit run: error: cannot listen on listen.host = '127.0.0.1', listen.port = {port}: "
    )
    assert "Traceback" not in result.stderr


def test_a_failing_lifespan_shows_its_traceback(tmp_path: Path) -> None:
    write(tmp_path, "lifespanapp.py", LIFESPAN)
    result = run_once("run", "lifespanapp", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "CRITICAL smtpkit.cli: serving failed\nTraceback" in result.stderr
    assert "ConnectionRefusedError: [Errno 111] the database is unreachable" in result.stderr
    assert "listening on" not in result.stderr
