"""``smtpkit.server.serve``: listening, TLS, limits, and stopping gracefully."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal

from smtpkit import SMTP, ServerConfig
from smtpkit.server import serve

from .helpers import HOST, MESSAGE, TIMEOUT, TLS, Serving, start_serving


class Handler:
    """Blocks DATA (in a worker thread) until released, when asked to."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if b"slow" in (envelope.content or b""):
            self.entered.set()
            await anyio.to_thread.run_sync(self.release.wait, TIMEOUT)
        return "250 2.0.0 done"


def config(**settings: Any) -> ServerConfig:
    base = {
        "hostname": "mx.example.test",
        "listen.host": HOST,
        "listen.port": 0,
        "workers.graceful_timeout": 5.0,
    }
    return ServerConfig().replace(**{**base, **settings})


def start(
    portal: BlockingPortal,
    cfg: ServerConfig,
    handler: Any = None,
    lifespan: Any = None,
) -> Serving:
    handler = handler or Handler()

    def factory() -> SMTP:
        return SMTP(handler, config=cfg)

    async def run(ready: Callable[[list[Any]], object], stop: anyio.Event) -> None:
        await serve(factory, cfg, lifespan=lifespan, ready=ready, stop=stop)

    return start_serving(portal, run)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    return False


def test_ready_gets_the_bound_addresses(portal: BlockingPortal) -> None:
    serving = start(portal, config())
    assert serving.addresses[0][0] == HOST
    assert serving.port > 0
    with serving.client() as client:
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    serving.stop()
    assert refused(serving.port)


def test_connection_limits_come_from_the_config(portal: BlockingPortal) -> None:
    serving = start(portal, config(**{"limits.max_connections": 2}))
    with serving.client() as first, serving.client() as second:
        assert first.noop()[0] == second.noop()[0] == 250
        with socket.create_connection((HOST, serving.port), timeout=TIMEOUT) as third:
            assert read_all(third).startswith(b"421 4.7.0 Too many connections")
    serving.stop()


def test_implicit_tls(portal: BlockingPortal, tls: TLS) -> None:
    serving = start(portal, config(**{"tls.context": tls.server, "tls.implicit": True}))
    with smtplib.SMTP_SSL(HOST, serving.port, context=tls.client, timeout=TIMEOUT) as client:
        assert client.ehlo()[0] == 250
        # Already encrypted: no STARTTLS on offer.
        assert not client.has_extn("starttls")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    serving.stop()


def test_unix_socket(portal: BlockingPortal, tmp_path: Path) -> None:
    path = str(tmp_path / "smtp.sock")
    serving = start(portal, config(**{"listen.unix_socket": path}))
    assert serving.addresses == [path]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        assert sock.recv(1024).startswith(b"220 mx.example.test")
    serving.stop()
    assert not Path(path).exists()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_busy_session_finishes_before_the_goodbye(portal: BlockingPortal) -> None:
    handler = Handler()
    serving = start(portal, config(), handler)
    replies: list[Any] = []
    with socket.create_connection((HOST, serving.port), timeout=TIMEOUT) as idle:
        assert idle.recv(1024).startswith(b"220 ")
        client = serving.client()
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        sending = threading.Thread(target=lambda: replies.append(client.data(MESSAGE + b"slow")))
        sending.start()
        assert handler.entered.wait(TIMEOUT)
        serving.portal.call(serving.stop_event.set)
        # The idle session is told at once (the busy one is asked at the same time).
        assert read_all(idle).startswith(b"421 4.3.2 mx.example.test Service shutting down")
        assert not serving.future.done()
        handler.release.set()
        sending.join(TIMEOUT)
        assert replies == [(250, b"2.0.0 done")]
        # Then the busy one is told too, and closed.
        assert client.getreply()[0] == 421
        client.close()
    serving.future.result(TIMEOUT)
    assert refused(serving.port)


def test_sessions_still_busy_at_the_graceful_timeout_are_aborted(portal: BlockingPortal) -> None:
    handler = Handler()
    serving = start(portal, config(**{"workers.graceful_timeout": 0.2}), handler)
    try:
        with serving.client() as client:
            client.ehlo()
            client.mail("a@example.com")
            client.rcpt("b@example.com")
            client.send(b"DATA\r\n")
            assert client.getreply()[0] == 354
            client.send(MESSAGE + b"slow\r\n.\r\n")
            assert handler.entered.wait(TIMEOUT)
            serving.stop()
            # Aborted: the connection ends without a reply to DATA.
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.getreply()
    finally:
        handler.release.set()


def test_cancelling_serve_drains_too(portal: BlockingPortal) -> None:
    cfg = config()
    events: list[str] = []

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        events.append("enter")
        try:
            yield
        finally:
            events.append("exit")

    bound: list[Any] = []
    listening = threading.Event()
    scope = portal.call(anyio.CancelScope)

    def ready(addresses: list[Any]) -> None:
        bound.extend(addresses)
        listening.set()

    async def run() -> None:
        with scope:
            await serve(lambda: SMTP(Handler(), config=cfg), cfg, lifespan=lifespan(), ready=ready)

    future = portal.start_task_soon(run)
    assert listening.wait(TIMEOUT)
    assert events == ["enter"]
    with socket.create_connection((HOST, bound[0][1]), timeout=TIMEOUT) as sock:
        assert sock.recv(1024).startswith(b"220 ")
        portal.call(scope.cancel)
        assert read_all(sock).startswith(b"421 4.3.2")
    future.result(TIMEOUT)
    assert events == ["enter", "exit"]


def test_address_in_use_names_the_setting(portal: BlockingPortal) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = config(**{"listen.port": port})
        with pytest.raises(OSError, match=rf"cannot listen on listen.host = '{HOST}', "):
            start(portal, cfg)
