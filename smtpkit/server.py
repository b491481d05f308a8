"""The serving engine: listen, hand each connection to a protocol, drain on stop.

:func:`serve` is what ``App.serve()`` runs and what the command line builds
on (adding signals, worker processes and reloading around it). It works with
any protocol factory: an App's, or ``lambda: SMTP(handler, config=config)``.

Stopping, whether ``stop`` is set or the task is cancelled, goes:

1. stop accepting connections;
2. ask every open connection to finish (``SMTP.shutdown()``: an idle
   session gets ``421 4.3.2`` at once, a busy one after its current command);
3. wait up to ``config.workers.graceful_timeout`` seconds for them to close;
4. abort the connections still open, and leave the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import stat
import weakref
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from ._limits import ConnectionLimiter
from .config import ServerConfig

__all__ = ["connection_limiter", "serve"]

log = logging.getLogger("smtpkit.server")

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
#: How often the drain looks for connections that are still open.
_POLL = 0.05
#: The most time given to the listener to report itself closed.
_CLOSE_WAIT = 2.0


async def serve(
    protocol_factory: ProtocolFactory,
    config: ServerConfig,
    *,
    lifespan: AbstractAsyncContextManager[Any] | None = None,
    ready: Callable[[list[Any]], object] | None = None,
    stop: anyio.Event | None = None,
) -> None:
    """Serve connections until ``stop`` is set or the calling task is cancelled.

    Must run on an asyncio event loop (``anyio.run(..., backend="asyncio")``,
    with or without uvloop).

    Args:
        protocol_factory: returns a new protocol per connection.
        config: where to listen (``listen``), implicit TLS (``tls.implicit``),
            the connection limits (``limits``) and the graceful timeout
            (``workers.graceful_timeout``).
        lifespan: entered before listening, left after the connections are closed.
        ready: called once listening, with the list of bound addresses
            (``(host, port, …)`` tuples, or the socket path).
        stop: set it to stop gracefully.

    Raises:
        OSError: the address cannot be bound (the message names it).
        ConfigError: the TLS certificate cannot be loaded.
    """
    async with lifespan if lifespan is not None else contextlib.nullcontext():
        connections = _Connections(protocol_factory, connection_limiter(config))
        listener = await _listen(connections.create, config)
        try:
            addresses = [sock.getsockname() for sock in listener.sockets]
            log.info("listening on %s", ", ".join(map(str, addresses)))
            if ready is not None:
                result = ready(addresses)
                if inspect.isawaitable(result):
                    await result
            await (stop.wait() if stop is not None else anyio.sleep_forever())
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(listener, connections, config)


def connection_limiter(config: ServerConfig) -> ConnectionLimiter | None:
    """The limiter the connections of one server share, or None without limits."""
    limits = config.limits
    if limits.max_connections is None and limits.max_connections_per_ip is None:
        return None
    return ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip)


class _Connections:
    """Creates the protocols and remembers them, to close them on stop."""

    def __init__(self, factory: ProtocolFactory, limiter: ConnectionLimiter | None) -> None:
        self._factory = factory
        self._limiter = limiter
        self.protocols: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()

    def create(self) -> asyncio.BaseProtocol:
        protocol = self._factory()
        # A factory that brought its own limiter (an App's) keeps it.
        if self._limiter is not None and getattr(protocol, "connection_limiter", 0) is None:
            protocol.connection_limiter = self._limiter  # type: ignore[attr-defined]
        self.protocols.add(protocol)
        return protocol

    def open(self) -> list[asyncio.BaseProtocol]:
        """The protocols whose connection is up and not closing."""
        return [p for p in self.protocols if _transport(p) is not None]


def _transport(protocol: asyncio.BaseProtocol) -> asyncio.BaseTransport | None:
    # Duck-typed: uvloop's transports do not derive from asyncio's classes.
    transport: asyncio.BaseTransport | None = getattr(protocol, "transport", None)
    if transport is not None and not transport.is_closing():
        return transport
    return None


async def _listen(factory: ProtocolFactory, config: ServerConfig) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    context = config.tls.server_context() if config.tls.implicit else None
    options: dict[str, Any] = {"ssl": context, "backlog": config.listen.backlog}
    if context is not None:
        options["ssl_handshake_timeout"] = config.tls.handshake_timeout
    path = config.listen.unix_socket
    where = f"listen.unix_socket = {path!r}" if path else _host_port(config)
    try:
        if path:
            return await loop.create_unix_server(factory, path, **options)
        reuse = True if config.listen.reuse_port else None
        return await loop.create_server(
            factory, config.listen.host, config.listen.port, reuse_port=reuse, **options
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc


def _host_port(config: ServerConfig) -> str:
    return f"listen.host = {config.listen.host!r}, listen.port = {config.listen.port}"


async def _stop(listener: asyncio.Server, connections: _Connections, config: ServerConfig) -> None:
    listener.close()
    if not await _drain(connections, config.workers.graceful_timeout):
        left = connections.open()
        log.warning("aborting %d connection(s) still open after the graceful timeout", len(left))
        for protocol in left:
            transport = _transport(protocol)
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]
    with anyio.move_on_after(_CLOSE_WAIT):
        await listener.wait_closed()
    if config.listen.unix_socket:
        _remove_socket(config.listen.unix_socket)


async def _drain(connections: _Connections, timeout: float) -> bool:
    """Ask each open connection to finish; True when all did within ``timeout``."""
    asked: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()
    with anyio.move_on_after(timeout):
        while True:
            still_open = connections.open()
            if not still_open:
                return True
            # Looked for each round: a connection accepted just before the
            # listener closed may only now have started.
            for protocol in still_open:
                if protocol not in asked:
                    asked.add(protocol)
                    _ask_to_finish(protocol)
            await anyio.sleep(_POLL)
    return False


def _ask_to_finish(protocol: asyncio.BaseProtocol) -> None:
    shutdown = getattr(protocol, "shutdown", None)
    if callable(shutdown):
        shutdown()
        return
    transport = _transport(protocol)
    if transport is not None:
        transport.close()


def _remove_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
