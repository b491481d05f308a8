"""The serving engine: listen, hand each connection to a protocol, reload, drain on stop.

Everything that serves goes through here: ``App.serve()`` and ``App.run()``, ``smtpkit
run`` (:mod:`smtpkit._cli.serving` adds the banner, signals and the pid file around it)
and the Controllers (which bind and close through :func:`listen` and :func:`close`). It
works with any protocol factory: an App's, or ``lambda: SMTP(handler, config=config)``.

An :class:`Engine` serves one listening socket. :meth:`Engine.reload` swaps its protocol
factory and config: the connections already open keep the settings they started with,
new ones get the new settings; the socket stays open throughout.

Stopping, whether ``stop`` is set or the task is cancelled, goes:

1. stop accepting connections;
2. ask every open connection to finish (``SMTP.shutdown()``: an idle
   session gets ``421 4.3.2`` at once, a busy one after its current command);
3. wait up to ``config.workers.graceful_timeout`` seconds for them to close
   (:meth:`Engine.abort` cuts that short);
4. abort the connections still open, and leave the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import stat
import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from ._limits import ConnectionLimiter
from .config import ServerConfig

__all__ = ["Engine", "close", "connection_limiter", "listen", "listen_error", "serve"]

log = logging.getLogger("smtpkit.server")

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
#: How often the drain looks for connections that are still open.
_POLL = 0.05
#: The most time given to the listener to report itself closed.
_CLOSE_WAIT = 2.0
#: After a patient wait, the seconds the sessions still open get once asked to finish.
_CLOSE_GRACE = 5.0
#: The start of the message of an OSError from :func:`listen`.
LISTEN_ERROR = "cannot listen on"
#: The engines of this process that listen, and those that stopped listening and drain.
_LISTENING: weakref.WeakSet[Engine] = weakref.WeakSet()
_DRAINING: weakref.WeakSet[Engine] = weakref.WeakSet()


def serving_state() -> str:
    """``accepting``, ``draining`` or ``starting``: what this process's SMTP server does now."""
    if _DRAINING:
        return "draining"
    return "accepting" if _LISTENING else "starting"


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
    engine = Engine(protocol_factory, config)
    await engine.serve(lifespan=lifespan, ready=ready, stop=stop)


class Engine:
    """One server: a listening socket, the protocol factory behind it, its connections.

    Args:
        protocol_factory: returns a new protocol per connection.
        config: where to listen, the connection limits, the graceful timeout.
        sock: an already listening socket to serve on instead of binding
            ``config.listen`` (a worker's, inherited from its supervisor).
    """

    def __init__(
        self,
        protocol_factory: ProtocolFactory,
        config: ServerConfig,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        self.config = config
        self.sock = sock
        self.connections = _Connections(protocol_factory, connection_limiter(config))
        # A flag, not an anyio.Event: the engine may be built before the loop runs.
        self._abort = threading.Event()
        self._patient = False

    async def serve(
        self,
        *,
        lifespan: AbstractAsyncContextManager[Any] | None = None,
        ready: Callable[[list[Any]], object] | None = None,
        stop: anyio.Event | None = None,
    ) -> None:
        """Serve until ``stop`` is set or the task is cancelled; see :func:`serve`."""
        async with lifespan if lifespan is not None else contextlib.nullcontext():
            listener = await listen(self.connections.create, self.config, sock=self.sock)
            _LISTENING.add(self)
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
                    await self._stop(listener)

    def reload(self, protocol_factory: ProtocolFactory, config: ServerConfig) -> None:
        """Serve new connections with ``protocol_factory`` and ``config`` from now on.

        Open connections keep their protocol and settings. The listen address and
        the event loop cannot change without a restart: the values of ``config``
        for ``listen`` and ``loop`` are ignored here.

        Args:
            protocol_factory: the new factory.
            config: the new config (its limits and graceful timeout take effect).
        """
        self.config = config.replace(listen=self.config.listen, loop=self.config.loop)
        self.connections.reload(protocol_factory, connection_limiter(config))

    def retire(self) -> None:
        """Make the next stop patient: open sessions may end by themselves first.

        A worker replaced by a rolling restart stops this way: no ``421`` for a
        session that is between two commands; sessions still open after
        ``workers.graceful_timeout`` are then asked to finish as in a plain stop.
        """
        self._patient = True

    def abort(self) -> None:
        """Stop waiting for open connections: a drain in progress cuts them now."""
        self._abort.set()

    def open_connections(self) -> int:
        """How many connections are open now."""
        return len(self.connections.open())

    async def _stop(self, listener: asyncio.Server) -> None:
        _LISTENING.discard(self)
        _DRAINING.add(self)
        try:
            await close(
                listener,
                self.connections.open,
                self.config.workers.graceful_timeout,
                abort=self._abort,
                patient=self._patient,
            )
        finally:
            _DRAINING.discard(self)
        if self.config.listen.unix_socket and self.sock is None:
            _remove_socket(self.config.listen.unix_socket)


def connection_limiter(config: ServerConfig) -> ConnectionLimiter | None:
    """The limiter the connections of one server share, or None without limits."""
    from .ratelimit import RateLimiter

    limits = config.limits
    rates = RateLimiter.from_config(config.rate_limits) if config.rate_limits.connections else None
    if limits.max_connections is None and limits.max_connections_per_ip is None and rates is None:
        return None
    return ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip, rates=rates)


class _Connections:
    """Creates the protocols and remembers them, to close them on stop."""

    def __init__(self, factory: ProtocolFactory, limiter: ConnectionLimiter | None) -> None:
        self._factory = factory
        self._limiter = limiter
        self.protocols: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()

    def reload(self, factory: ProtocolFactory, limiter: ConnectionLimiter | None) -> None:
        """Create the next connections with ``factory`` (open ones keep their limiter)."""
        self._factory = factory
        self._limiter = limiter

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


def _transport(protocol: asyncio.BaseProtocol) -> Any:
    # Duck-typed: uvloop's transports do not derive from asyncio's classes.
    transport = getattr(protocol, "transport", None) or getattr(protocol, "_transport", None)
    if transport is not None and not transport.is_closing():
        return transport
    return None


async def listen(
    factory: ProtocolFactory,
    config: ServerConfig,
    *,
    sock: socket.socket | None = None,
    ssl_context: Any = None,
) -> asyncio.Server:
    """Bind ``config.listen`` (or serve on ``sock``) on the running loop.

    Args:
        factory: the protocol factory.
        config: ``listen`` (host and port, or unix_socket; backlog; reuse_port) and
            ``tls`` (implicit TLS, handshake timeout).
        sock: an already listening socket to use instead of binding.
        ssl_context: the implicit-TLS context; default: built from ``config.tls``
            when ``tls.implicit``.

    Returns:
        The listening server.

    Raises:
        OSError: the address cannot be bound; the message starts with
            ``cannot listen on`` and names the setting.
    """
    loop = asyncio.get_running_loop()
    if ssl_context is None and config.tls.implicit:
        ssl_context = config.tls.server_context()
    options: dict[str, Any] = {"ssl": ssl_context, "backlog": config.listen.backlog}
    if ssl_context is not None:
        options["ssl_handshake_timeout"] = config.tls.handshake_timeout
    path = config.listen.unix_socket
    where = f"listen.unix_socket = {path!r}" if path else _host_port(config)
    try:
        if sock is not None and sock.family == socket.AF_UNIX:
            return await loop.create_unix_server(factory, sock=sock, **options)
        if sock is not None:
            return await loop.create_server(factory, sock=sock, **options)
        if path:
            return await loop.create_unix_server(factory, path, **options)
        reuse = True if config.listen.reuse_port else None
        return await loop.create_server(
            factory, config.listen.host, config.listen.port, reuse_port=reuse, **options
        )
    except OSError as exc:
        raise OSError(exc.errno, f"{LISTEN_ERROR} {where}: {exc.strerror or exc}") from exc


def listen_error(error: BaseException) -> str | None:
    """The one-line reason of a failure to bind, or None for any other error."""
    reason = error.strerror if isinstance(error, OSError) else None
    return reason if reason and reason.startswith(LISTEN_ERROR) else None


def _host_port(config: ServerConfig) -> str:
    return f"listen.host = {config.listen.host!r}, listen.port = {config.listen.port}"


async def close(
    listener: asyncio.Server,
    protocols: Callable[[], Iterable[asyncio.BaseProtocol]],
    timeout: float,
    *,
    abort: threading.Event | anyio.Event | None = None,
    patient: bool = False,
) -> None:
    """Close a listener, then drain its connections: the one stop sequence.

    Args:
        listener: the listening server.
        protocols: returns the protocols whose connection is still open.
        timeout: seconds the connections get to finish before they are aborted.
        abort: when set, stop waiting and abort the connections still open.
        patient: first wait up to ``timeout`` for the connections to end by
            themselves, then ask the rest to finish (``_CLOSE_GRACE`` seconds).
    """
    listener.close()
    if patient and await _ended_by_themselves(protocols, timeout, abort):
        timeout = 0.0
    elif patient:
        timeout = _CLOSE_GRACE
    if timeout and not await _drain(protocols, timeout, abort):
        left = [p for p in protocols() if _transport(p) is not None]
        if left:
            log.warning(
                "aborting %d connection(s) still open after the graceful timeout", len(left)
            )
        for protocol in left:
            transport = _transport(protocol)
            if transport is not None:
                transport.abort()
    with anyio.move_on_after(_CLOSE_WAIT):
        await listener.wait_closed()


async def _ended_by_themselves(
    protocols: Callable[[], Iterable[asyncio.BaseProtocol]],
    timeout: float,
    abort: threading.Event | anyio.Event | None,
) -> bool:
    """Wait up to ``timeout`` for every connection to close; True when they all did."""
    with anyio.move_on_after(timeout):
        while abort is None or not abort.is_set():
            if not any(_transport(p) is not None for p in protocols()):
                return True
            await anyio.sleep(_POLL)
    return False


async def _drain(
    protocols: Callable[[], Iterable[asyncio.BaseProtocol]],
    timeout: float,
    abort: threading.Event | anyio.Event | None,
) -> bool:
    """Ask each open connection to finish; True when all did within ``timeout``."""
    asked: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()
    with anyio.move_on_after(timeout):
        while abort is None or not abort.is_set():
            still_open = [p for p in protocols() if _transport(p) is not None]
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
