"""Fixtures for App tests: serve an App for real, on loopback, with ``app.serve()``.

``serve_app(app, **settings)``
    Runs ``app.serve(config=..., ready=..., stop=...)`` on an asyncio loop
    in a background thread (an anyio blocking portal), bound to
    ``127.0.0.1`` on a port the system picks, and returns a
    :class:`~.helpers.Served` with the port. ``settings`` are dotted config
    paths (``**{"auth.require_tls": False}``). Every app still serving at
    the end of the test is stopped through its stop event, and must stop
    cleanly.

``portal``
    The event loop thread: asyncio's loop, or uvloop's in a test parametrized
    with ``loop_kind`` (the fixture of tests/conftest.py).

``tls``
    A trustme CA with a certificate for 127.0.0.1: ``tls.server`` and
    ``tls.client`` SSL contexts.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from anyio.from_thread import BlockingPortal, start_blocking_portal

from smtpkit import App

from .helpers import HOST, TLS, ServeApp, Served, served_config, start


@pytest.fixture
def portal(loop_kind: str) -> Iterator[BlockingPortal]:
    """An asyncio event loop in a background thread (uvloop's when ``loop_kind`` says so)."""
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    options = {"use_uvloop": loop_kind == "uvloop"}
    with start_blocking_portal("asyncio", backend_options=options) as running:
        yield running


@pytest.fixture
def serve_app(portal: BlockingPortal) -> Iterator[ServeApp]:
    """Serve apps with ``app.serve()``; see the module docstring."""
    served: list[Served] = []

    def serve(app: App, **settings: Any) -> Served:
        running = start(portal, app, served_config(app, settings))
        served.append(running)
        return running

    yield serve
    for running in served:
        running.stop()


@pytest.fixture(scope="session")
def tls() -> TLS:
    """A certificate for 127.0.0.1 and a client context that trusts it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return TLS(server, client)
