"""Fixtures of the capture API tests: one ``smtpkit run --http`` per module, emptied per test.

The tests run only when the ``http`` extra (starlette, uvicorn) and httpx are installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx

from capture.capture_server import Capture, running


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    """One server for the module."""
    with running(tmp_path_factory.mktemp("capture")) as capture:
        yield capture


@pytest.fixture
def capture(shared: Capture) -> Capture:
    """The module's server, with an empty Maildir."""
    for folder in ("new", "cur"):
        path = Path(shared.maildir, folder)
        if path.exists():
            shutil.rmtree(path)
            path.mkdir()
    assert shared.process.poll() is None, shared.output()
    return shared


@pytest.fixture
def client(capture: Capture) -> Iterator[httpx.Client]:
    """An httpx client on the capture UI."""
    with httpx.Client(base_url=capture.url, timeout=30) as http:
        yield http
