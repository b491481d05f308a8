"""Shared helpers of the App tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import queue
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal

from smtpkit import App, ServerConfig

HOST = "127.0.0.1"
#: Seconds any wait in these tests may take before the test fails.
TIMEOUT = 10.0

MESSAGE = b"From: anne@example.com\r\nTo: bart@example.com\r\nSubject: A test\r\n\r\nHello.\r\n"


@dataclass
class Serving:
    """A ``serve()`` call running in a portal."""

    port: int
    addresses: list[Any]
    portal: BlockingPortal
    stop_event: anyio.Event
    future: Future[None]

    def client(self, **kwargs: Any) -> smtplib.SMTP:
        """A connected smtplib client."""
        return smtplib.SMTP(HOST, self.port, timeout=TIMEOUT, **kwargs)

    def stop(self) -> None:
        """Set the stop event and wait until ``serve()`` returned."""
        if not self.future.done():
            self.portal.call(self.stop_event.set)
        self.future.result(TIMEOUT)


@dataclass
class Served(Serving):
    """An app being served by the ``serve_app`` fixture."""

    app: App | None = None
    config: ServerConfig | None = None


ServeApp = Callable[..., Served]
#: ``run(ready, stop)``: a call to ``serve()`` with those two arguments.
ServeCall = Callable[[Callable[[list[Any]], object], anyio.Event], Awaitable[None]]


def start_serving(portal: BlockingPortal, run: ServeCall) -> Serving:
    """Start ``run(ready, stop)`` in ``portal``; return once it called ``ready``."""
    stop = portal.call(anyio.Event)
    bound: queue.Queue[list[Any]] = queue.Queue()

    async def serve() -> None:
        await run(bound.put, stop)

    future = portal.start_task_soon(serve)
    while True:
        try:
            addresses = bound.get(timeout=0.05)
            break
        except queue.Empty:
            if future.done():
                future.result()
                pytest.fail("serve() returned without calling ready()")
    port = addresses[0][1] if isinstance(addresses[0], tuple) else 0
    return Serving(port, addresses, portal, stop, future)


def start(portal: BlockingPortal, app: App, config: ServerConfig) -> Served:
    """Start ``app.serve()`` in ``portal``; return once it listens."""

    async def run(ready: Callable[[list[Any]], object], stop: anyio.Event) -> None:
        await app.serve(config=config, ready=ready, stop=stop)

    serving = start_serving(portal, run)
    return Served(**vars(serving), app=app, config=config)


def served_config(app: App, settings: dict[str, Any]) -> ServerConfig:
    """The app's config, bound to loopback port 0, with ``settings`` applied."""
    base = {"listen.host": HOST, "listen.port": 0, "workers.graceful_timeout": 5.0}
    if app.config.hostname is None:
        base["hostname"] = "mx.example.test"
    return app.config.replace(**{**base, **settings})


@dataclass
class TLS:
    """Server and client contexts trusting one test CA."""

    server: ssl.SSLContext
    client: ssl.SSLContext
