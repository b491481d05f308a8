"""Rate limits per client address: connections (421), messages and recipients (450), windows.

Through real sockets: an App served with ``app.serve()`` in a background event loop, and
the bare SMTP class behind a threaded Controller with the documented handler wrapper.
"""

from __future__ import annotations

import queue
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from smtpkit import App, ServerConfig
from smtpkit.config import ConfigError
from smtpkit.controller import Controller
from smtpkit.ratelimit import MemoryRateStore, RateLimiter, with_rate_limits

HOST = "127.0.0.1"
TIMEOUT = 30.0


def rate_config(**settings: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "hostname": "mx.example.test",
        "listen.host": HOST,
        "listen.port": 0,
        "workers.graceful_timeout": 5.0,
    }
    return ServerConfig().replace(**base, **settings)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.fixture
def serve(portal: BlockingPortal) -> Iterator[Callable[[App, ServerConfig], int]]:
    """Serve an App with ``app.serve()``; returns its port; stops it at the end."""
    running: list[tuple[anyio.Event, Any]] = []

    def start(app: App, config: ServerConfig) -> int:
        stop = portal.call(anyio.Event)
        bound: queue.Queue[list[Any]] = queue.Queue()

        async def run() -> None:
            await app.serve(config=config, ready=bound.put, stop=stop)

        future = portal.start_task_soon(run)
        running.append((stop, future))
        return int(bound.get(timeout=TIMEOUT)[0][1])

    yield start
    for stop, future in running:
        portal.call(stop.set)
        future.result(TIMEOUT)


def recipient_app() -> App:
    app = App()

    @app.route("(user)@example.com")
    def inbox(message: Any) -> None:
        """Accept the message."""

    return app


def greeting_of(port: int, proxy: bytes = b"") -> bytes:
    """Connect, send ``proxy`` (a PROXY header), and read until the first reply line."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(proxy)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"421"):
            assert sock.recv(1024) == b"", "a refused connection must be closed"
        return data


def test_recipients_past_the_limit_get_450_naming_the_window(serve: Any) -> None:
    port = serve(recipient_app(), rate_config(**{"rate_limits.recipients": 3}))
    with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        assert client.mail("anne@example.com")[0] == 250
        for user in ("a", "b", "c"):
            assert client.rcpt(f"{user}@example.com")[0] == 250
        code, text = client.rcpt("d@example.com")
    assert code == 450
    assert text == b"4.7.1 Too many recipients from 127.0.0.1: at most 3 per 60 s"
    # The count is per address, not per session.
    with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("anne@example.com")
        assert client.rcpt("e@example.com")[0] == 450


def test_messages_are_counted_at_mail_with_the_bare_smtp_class() -> None:
    config = rate_config(**{"rate_limits.messages": 2, "rate_limits.window": 600})

    class Handler:
        async def handle_MAIL(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            envelope.mail_from = address
            return "250 2.1.0 sender fine"

    controller = Controller(with_rate_limits(Handler(), config), hostname=HOST, port=0)
    controller.start()
    try:
        with smtplib.SMTP(HOST, controller.port, timeout=TIMEOUT) as client:
            client.ehlo("client.example")
            for _ in range(2):
                assert client.mail("anne@example.com") == (250, b"2.1.0 sender fine")
                client.rset()
            code, text = client.mail("anne@example.com")
    finally:
        controller.stop()
    assert code == 450
    assert text == b"4.7.1 Too many messages from 127.0.0.1: at most 2 per 600 s"


def test_the_default_mail_reply_stays_without_a_handle_mail_hook() -> None:
    config = rate_config(**{"rate_limits.messages": 5})

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return f"250 got it from {envelope.mail_from}"

    controller = Controller(with_rate_limits(Handler(), config), hostname=HOST, port=0)
    controller.start()
    try:
        with smtplib.SMTP(HOST, controller.port, timeout=TIMEOUT) as client:
            refused = client.sendmail("anne@example.com", ["bart@example.com"], b"Hi.\r\n")
            assert refused == {}
            assert client.noop()[0] == 250
    finally:
        controller.stop()


def test_connections_past_the_limit_get_421_and_are_closed(serve: Any) -> None:
    port = serve(recipient_app(), rate_config(**{"rate_limits.connections": 2}))
    assert greeting_of(port).startswith(b"220 mx.example.test")
    assert greeting_of(port).startswith(b"220 mx.example.test")
    assert greeting_of(port) == (
        b"421 4.7.0 Too many connections from 127.0.0.1: at most 2 per 60 s\r\n"
    )


def test_the_window_expires(serve: Any) -> None:
    # A 3 s window: the two first RCPTs are milliseconds apart; after the sleep, the
    # first has left the window whatever the machine's load.
    window = 3.0
    config = rate_config(**{"rate_limits.recipients": 1, "rate_limits.window": window})
    port = serve(recipient_app(), config)
    with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("anne@example.com")
        assert client.rcpt("a@example.com")[0] == 250
        code, text = client.rcpt("b@example.com")
        assert (code, text) == (450, b"4.7.1 Too many recipients from 127.0.0.1: at most 1 per 3 s")
        time.sleep(window + 0.5)
        assert client.rcpt("c@example.com")[0] == 250


def test_a_refused_attempt_is_not_counted(serve: Any) -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    settings = {"rate_limits.recipients": 2, "rate_limits.window": 10, "rate_limits.store": store}
    port = serve(recipient_app(), rate_config(**settings))
    with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("anne@example.com")
        assert client.rcpt("a@example.com")[0] == 250
        clock.now += 6
        assert client.rcpt("b@example.com")[0] == 250
        for _ in range(5):
            assert client.rcpt("c@example.com")[0] == 450
        clock.now += 5  # the first RCPT left the window; the refused ones never counted
        assert client.rcpt("d@example.com")[0] == 250
        assert client.rcpt("e@example.com")[0] == 450


def test_behind_a_proxy_the_proxied_client_is_counted(serve: Any) -> None:
    app = recipient_app()

    @app.hook("PROXY")
    def trust(server: Any, session: Any, envelope: Any, proxy_data: Any) -> bool:
        return True

    settings = {"proxy_protocol.timeout": 10.0, "rate_limits.connections": 1}
    port = serve(app, rate_config(**settings))

    def header(client: str) -> bytes:
        return f"PROXY TCP4 {client} 127.0.0.1 40000 25\r\n".encode()

    assert greeting_of(port, header("192.0.2.7")).startswith(b"220")
    assert greeting_of(port, header("192.0.2.7")) == (
        b"421 4.7.0 Too many connections from 192.0.2.7: at most 1 per 60 s\r\n"
    )
    assert greeting_of(port, header("192.0.2.8")).startswith(b"220")


def test_a_shared_store_may_be_async(serve: Any) -> None:
    class SharedStore:
        """Stands for a store on another host: async, and it records the keys it is asked."""

        def __init__(self) -> None:
            self.keys: list[str] = []
            self.memory = MemoryRateStore()

        async def hit(self, key: str, window: float, limit: int) -> bool:
            self.keys.append(key)
            await anyio.sleep(0)
            return self.memory.hit(key, window, limit)

    store = SharedStore()
    settings = {"rate_limits.messages": 1, "rate_limits.store": store}
    port = serve(recipient_app(), rate_config(**settings))
    with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        assert client.mail("anne@example.com")[0] == 250
        client.rset()
        assert client.mail("anne@example.com")[0] == 450
    assert store.keys == ["messages:127.0.0.1", "messages:127.0.0.1"]


def test_an_async_store_cannot_count_connections() -> None:
    class AsyncStore:
        async def hit(self, key: str, window: float, limit: int) -> bool:
            return True

    limits = rate_config(
        **{"rate_limits.connections": 5, "rate_limits.store": AsyncStore()}
    ).rate_limits
    with pytest.raises(TypeError, match=r"rate_limits.connections = 5: .*async hit\(\)"):
        RateLimiter.from_config(limits)


def test_memory_store_slides_and_forgets() -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    assert [store.hit("k", 10, 2) for _ in range(3)] == [True, True, False]
    clock.now += 10
    assert store.hit("k", 10, 2) is True
    for n in range(1024):
        store.hit(f"old-{n}", 10, 1)
    clock.now += 100
    for n in range(1024):  # a sweep comes every 1024 hits: it forgets the silent keys
        store.hit(f"new-{n}", 10, 1)
    assert len(store) <= 1024


def test_settings_are_checked_and_come_from_the_environment() -> None:
    env = {"SMTPKIT_RATE_LIMITS__RECIPIENTS": "100", "SMTPKIT_RATE_LIMITS__WINDOW": "30"}
    limits = ServerConfig.load(env=env).rate_limits
    assert (limits.recipients, limits.window) == (100, 30.0)
    with pytest.raises(ConfigError, match=r"rate_limits.messages = -1: expected an integer"):
        ServerConfig().replace(**{"rate_limits.messages": -1})
    with pytest.raises(ConfigError, match="SMTPKIT_RATE_LIMITS__STORE"):
        ServerConfig.load(env={"SMTPKIT_RATE_LIMITS__STORE": "redis://x"})
