"""Controllers: run an SMTP server in a background thread or on a loop you own.

A controller binds a listening socket (TCP or Unix), creates one protocol
instance per connection through :meth:`BaseController.factory`, and checks
that the server answers before ``start()`` (or ``begin()``) returns: it opens
a real connection to the bound address and, when the server speaks plain SMTP
from the first byte, reads the ``220`` greeting and says ``QUIT``. An
exception raised by ``factory()`` during that check is raised again, as the
very same object, to the caller of ``start()``.

Threaded controllers (:class:`Controller`, :class:`UnixSocketController`) run
their own event loop in a daemon thread. Unthreaded ones
(:class:`UnthreadedController`, :class:`UnixSocketUnthreadedController`) add
the server to an event loop you drive yourself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import threading
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, Literal

from smtpkit import server as _server
from smtpkit.config import ServerConfig
from smtpkit.smtp import SMTP

__all__ = [
    "DEFAULT_READY_TIMEOUT",
    "IP6_IS",
    "READY_TIMEOUT_ENV",
    "BaseController",
    "BaseThreadedController",
    "BaseUnthreadedController",
    "Controller",
    "InetMixin",
    "UnixSocketController",
    "UnixSocketMixin",
    "UnixSocketUnthreadedController",
    "UnthreadedController",
    "get_localhost",
]

log = logging.getLogger("smtpkit.controller")

DEFAULT_READY_TIMEOUT: float = 5.0
"""Seconds ``start()`` waits for the server to bind and answer."""

READY_TIMEOUT_ENV = "SMTPKIT_CONTROLLER_TIMEOUT"
"""Environment variable that, when set, overrides every ``ready_timeout``."""

# How long stopping waits for open connections to close before cutting them.
_CLOSE_GRACE = 2.0
# How long stopping waits for cancelled tasks to finish.
_CANCEL_GRACE = 5.0
# Extra time start() allows the server thread beyond ready_timeout, for the
# thread to report the timeout itself.
_THREAD_MARGIN = 5.0

_REFUSAL = b"421 4.3.0 Service not available, closing transmission channel\r\n"


class IP6_IS:
    """``errno`` values that tell whether binding ``::1`` failed for lack of IPv6.

    Attributes:
        NO: errors meaning the system has no usable IPv6.
        YES: errors meaning IPv6 works (the address is merely busy).
    """

    NO = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
    YES = {errno.EADDRINUSE}


def get_localhost() -> Literal["::1", "127.0.0.1"]:
    """Return the loopback address to use: ``::1`` when IPv6 works, else ``127.0.0.1``.

    Returns:
        ``"::1"`` or ``"127.0.0.1"``.

    Raises:
        OSError: binding ``::1`` failed for a reason unrelated to IPv6 support.
    """
    if not socket.has_ipv6:
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as error:
        if error.errno in IP6_IS.NO:
            return "127.0.0.1"
        if error.errno in IP6_IS.YES:
            return "::1"
        raise
    return "::1"


def _ready_timeout(value: float) -> float:
    """Return the effective ready timeout: the environment variable wins."""
    raw = os.environ.get(READY_TIMEOUT_ENV)
    if raw is None:
        return float(value)
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{READY_TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None


def _smtp_kwargs(
    server_kwargs: dict[str, Any] | None,
    server_hostname: str | None,
    smtp_parameters: dict[str, Any],
) -> dict[str, Any]:
    """Merge the keyword arguments meant for ``SMTP(...)``.

    Explicit keyword arguments override ``server_kwargs``; ``server_hostname``
    becomes ``hostname``; ``enable_SMTPUTF8`` defaults to ``True``.
    """
    kwargs: dict[str, Any] = {}
    if server_kwargs is not None:
        warnings.warn(
            "server_kwargs is deprecated: pass the SMTP keyword arguments "
            "directly to the controller",
            DeprecationWarning,
            stacklevel=5,
        )
        kwargs.update(server_kwargs)
    kwargs.update(smtp_parameters)
    if server_hostname:
        kwargs["hostname"] = server_hostname
    kwargs.setdefault("enable_SMTPUTF8", True)
    return kwargs


class _Refusal(asyncio.Protocol):
    """Stands in for the server on a connection where ``factory()`` failed.

    The client is told ``421`` (RFC 5321 §3.8) and the connection is closed.
    """

    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(_REFUSAL)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _cancel_other_tasks() -> None:
    """Cancel every task on the running loop except the caller's, and wait a while."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_CANCEL_GRACE)


class BaseController(ABC):
    """What every controller shares: SMTP arguments, ``factory()``, start-up check.

    Args:
        handler: the handler object given to each ``SMTP`` instance.
        loop: the event loop to serve on; a new one when not given.
        ready_timeout: seconds to wait for the server to bind and answer;
            the ``SMTPKIT_CONTROLLER_TIMEOUT`` environment variable wins.
        ssl_context: when given, the listening socket speaks TLS from the
            first byte (implicit TLS, "SMTPS").
        server_hostname: passed to ``SMTP`` as ``hostname`` (the name in the
            greeting), not used for binding.
        server_kwargs: deprecated; a dict of ``SMTP`` keyword arguments.
        **SMTP_parameters: keyword arguments for ``SMTP(...)``.

    Attributes:
        handler: the handler object.
        ssl_context: the implicit-TLS context, or ``None``.
        ready_timeout: the effective ready timeout in seconds.
        SMTP_kwargs: the keyword arguments ``factory()`` passes to ``SMTP``.
        server: the listening ``asyncio.Server`` while running, else ``None``.
        server_coro: the awaitable that created :attr:`server`.
        smtpd: the protocol most recently created by ``factory()``.
    """

    smtpd: SMTP | None = None
    server: asyncio.Server | None = None
    server_coro: Awaitable[asyncio.Server] | None = None

    def __init__(
        self,
        handler: Any,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        server_kwargs: dict[str, Any] | None = None,
        **SMTP_parameters: Any,
    ) -> None:
        self.handler = handler
        self._loop = loop
        self.ssl_context = ssl_context
        self.ready_timeout = _ready_timeout(ready_timeout)
        self.SMTP_kwargs = _smtp_kwargs(server_kwargs, server_hostname, SMTP_parameters)
        self._factory_error: Exception | None = None
        self._factory_invoked: asyncio.Event | None = None
        self._serving = False
        self._protocols: weakref.WeakSet[asyncio.BaseProtocol] = weakref.WeakSet()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on (created on first use when not given)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    @loop.setter
    def loop(self, value: asyncio.AbstractEventLoop) -> None:
        self._loop = value

    def factory(self) -> SMTP:
        """Create the protocol instance for one connection.

        Override to serve a subclass of ``SMTP`` (or LMTP) or to build it
        differently.

        Returns:
            ``SMTP(self.handler, **self.SMTP_kwargs)``.
        """
        return SMTP(self.handler, **self.SMTP_kwargs)

    def cancel_tasks(self, stop_loop: bool = True) -> None:
        """Stop the loop (optionally) and cancel all its tasks.

        Call it on the loop's own thread, e.g. with ``loop.call_soon_threadsafe``.

        Args:
            stop_loop: whether to stop the loop as well.
        """
        if stop_loop:
            self.loop.stop()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()

    # -- pieces each endpoint kind provides ---------------------------------

    @abstractmethod
    def _create_server(self) -> Coroutine[Any, Any, asyncio.Server]:
        """Return the coroutine that binds the listener (not yet awaited)."""

    @abstractmethod
    async def _open_probe_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the bound listener for the readiness check."""

    @abstractmethod
    def _after_bind(self, server: asyncio.Server) -> None:
        """Record what binding decided (the real port, the socket file)."""

    @abstractmethod
    def _after_close(self) -> None:
        """Release what binding left behind."""

    # -- one connection ------------------------------------------------------

    def _factory_invoker(self) -> asyncio.BaseProtocol:
        """Protocol factory given to the loop: ``factory()``, guarded.

        A failure during the start-up check is kept for ``start()`` to raise;
        later ones are logged and the client gets ``421``.
        """
        protocol: asyncio.BaseProtocol
        try:
            smtpd = self.factory()
            if smtpd is None:
                raise RuntimeError("factory() returned None; expected an SMTP instance")
        except Exception as error:
            if self._serving:
                log.exception("factory() failed; refusing the connection")
            elif self._factory_error is None:
                self._factory_error = error
            protocol = _Refusal()
        else:
            self.smtpd = smtpd
            protocol = smtpd
        finally:
            if self._factory_invoked is not None:
                self._factory_invoked.set()
        self._protocols.add(protocol)
        return protocol

    # -- starting ------------------------------------------------------------

    async def _start_within_timeout(self) -> None:
        """Bind and check readiness, giving up after ``ready_timeout`` seconds.

        Raises:
            TimeoutError: the server did not answer in time.
            Exception: whatever binding, ``factory()`` or the check raised.
        """
        task = asyncio.ensure_future(self._start_serving())
        done, _ = await asyncio.wait({task}, timeout=self.ready_timeout)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise TimeoutError(
                f"the SMTP server was not ready within ready_timeout={self.ready_timeout}s; "
                "the machine may be busy: try a larger ready_timeout"
            )
        task.result()

    async def _start_serving(self) -> None:
        self._factory_error = None
        self._serving = False
        self._factory_invoked = asyncio.Event()
        self.server_coro = self._create_server()
        self.server = await self.server_coro
        try:
            self._after_bind(self.server)
            await self._probe()
        except BaseException:
            await self._close_server()
            raise
        self._serving = True

    async def _probe(self) -> None:
        """Connect to the listener and check that a working server answers."""
        assert self._factory_invoked is not None  # set by _start_serving()
        reader, writer = await self._open_probe_connection()
        try:
            await self._factory_invoked.wait()
            if self._factory_error is not None:
                raise self._factory_error
            if self._expects_greeting():
                await self._check_greeting(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _expects_greeting(self) -> bool:
        # With implicit TLS the greeting comes only after a handshake, and
        # with PROXY protocol only after a PROXY header: in both cases the
        # factory having run on the accepted connection is the check.
        return self.ssl_context is None and self.SMTP_kwargs.get("proxy_protocol_timeout") is None

    async def _check_greeting(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            line = await reader.readline()
            if not line.startswith(b"220"):
                raise RuntimeError(
                    f"readiness check: expected a 220 greeting from the server, got {line!r}"
                )
            if line[3:4] != b"-":
                break
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(OSError):
            await writer.drain()
            await reader.readline()

    # -- stopping ------------------------------------------------------------

    async def _close_server(self) -> None:
        """Close the listener, then every connection it accepted.

        Connections are asked to finish first (``SMTP.shutdown()``: an idle
        client gets ``421``, a running command completes); whatever is still
        open after a short grace period is cut. The serving engine's stop
        sequence (:func:`smtpkit.server.close`) does it.
        """
        server = self.server
        if server is None:
            return
        await _server.close(server, lambda: list(self._protocols), _CLOSE_GRACE)
        self._after_close()

    def _cleanup(self) -> None:
        """Forget the state of the last run."""
        self.server = None
        self.server_coro = None
        self.smtpd = None
        self._factory_error = None
        self._factory_invoked = None
        self._serving = False
        self._protocols = weakref.WeakSet()


class BaseThreadedController(BaseController):
    """A controller that runs its event loop in a daemon thread.

    ``start()`` returns once the server answers; ``stop()`` closes the
    listener and the open connections, cancels the loop's tasks, shuts down
    its default executor and closes the loop. Both are thread-safe.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._startup_error: BaseException | None = None
        self._failed_start = False

    def start(self) -> None:
        """Start the server thread and wait until the server answers.

        Raises:
            RuntimeError: the controller is already running, or the
                readiness check found no working server.
            TimeoutError: the server was not ready within ``ready_timeout``.
            Exception: the exception ``factory()`` raised, or the error from
                binding (e.g. ``OSError`` for an address in use).
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the SMTP server is already running; call stop() first")
            if self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
            ready = threading.Event()
            self._startup_error = None
            self._failed_start = False
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="smtpkit-controller", daemon=True
            )
            self._thread.start()
            if not ready.wait(self.ready_timeout + _THREAD_MARGIN):
                raise TimeoutError(
                    f"the SMTP server thread did not report within "
                    f"ready_timeout={self.ready_timeout}s"
                )
            if self._startup_error is not None:
                self._abandon_start()

    def _abandon_start(self) -> None:
        assert self._thread is not None and self._startup_error is not None
        error, self._startup_error = self._startup_error, None
        self._thread.join()
        self._thread = None
        self._failed_start = True
        self._cleanup()
        raise error

    def stop(self, no_assert: bool = False) -> None:
        """Stop the server, its tasks and its thread.

        Calling ``stop()`` after a failed ``start()`` does nothing: the
        failed start already cleaned up.

        Args:
            no_assert: do not complain when the server is not running.

        Raises:
            AssertionError: the server is not running and ``no_assert`` is false.
            RuntimeError: called from the server's own thread (it would wait
                for itself).
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                if not (no_assert or self._failed_start):
                    raise AssertionError("SMTP daemon not running")
                self._failed_start = False
                return
            if thread is threading.current_thread():
                raise RuntimeError(
                    "stop() was called from the server's own thread; call it from another thread"
                )
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join()
            self._thread = None
            self._cleanup()

    def _run(self, ready: threading.Event) -> None:
        """Body of the server thread: start, serve until stopped, clean up."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._start_within_timeout())
            except BaseException as error:  # handed to start(), which raises it
                self._startup_error = error
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            self._close_loop(loop)
            asyncio.set_event_loop(None)

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self._close_server())
            loop.run_until_complete(_cancel_other_tasks())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


class BaseUnthreadedController(BaseController):
    """A controller that adds the server to an event loop you run yourself.

    Attributes:
        ended: set once :meth:`finalize` has closed the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended = threading.Event()
        self._end_task: asyncio.Future[None] | None = None

    def begin(self) -> None:
        """Bind the server on :attr:`loop` and check that it answers.

        The loop must not be running; ``begin()`` runs it just long enough to
        bind and check, then returns. Run the loop afterwards to serve.

        Raises:
            TimeoutError: the server was not ready within ``ready_timeout``.
            Exception: the exception ``factory()`` raised, or the bind error.
        """
        self.loop.run_until_complete(self._start_within_timeout())

    async def finalize(self) -> None:
        """Close the listener and its connections, then set :attr:`ended`.

        Await it on the controller's loop.
        """
        self.ended.clear()
        await self._close_server()
        self._cleanup()
        self.ended.set()

    def end(self) -> None:
        """Run :meth:`finalize` from synchronous code.

        On a stopped loop it runs to completion here. On a running loop it is
        scheduled there (from any thread); wait on :attr:`ended` if needed.
        """
        self.ended.clear()
        loop = self.loop
        if not loop.is_running():
            loop.run_until_complete(self.finalize())
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._end_task = loop.create_task(self.finalize())
        else:
            self._end_task = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.finalize(), loop), loop=loop
            )


class InetMixin(BaseController):
    """Listening on a TCP address.

    Args:
        handler: the handler object.
        hostname: the address to bind; ``None`` means ``::1`` when IPv6
            works, else ``127.0.0.1``. ``0.0.0.0`` and ``::`` bind every
            IPv4 or IPv6 interface.
        port: the port to bind; ``0`` picks a free one, read back into
            :attr:`port` once started.
        loop: the event loop.
        **kwargs: the :class:`BaseController` keyword arguments.
    """

    def __init__(
        self,
        handler: Any,
        hostname: str | None = None,
        port: int = 8025,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, loop, **kwargs)
        self._localhost = get_localhost()
        self.hostname: str = self._localhost if hostname is None else hostname
        self.port = port
        self._requested_port = port

    def _create_server(self) -> Coroutine[Any, Any, asyncio.Server]:
        listen = {"listen.host": self.hostname, "listen.port": self._requested_port}
        config = ServerConfig().replace(**listen)
        return _server.listen(self._factory_invoker, config, ssl_context=self.ssl_context)

    def _after_bind(self, server: asyncio.Server) -> None:
        self.port = int(server.sockets[0].getsockname()[1])

    def _after_close(self) -> None:
        """Nothing to release: closing the socket unbinds the port."""

    async def _open_probe_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self.server is not None  # bound by _start_serving()
        host, port = self.server.sockets[0].getsockname()[:2]
        # A wildcard address is not a destination: use that family's loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": self._localhost}.get(host, host)
        return await asyncio.open_connection(host, port)


class UnixSocketMixin(BaseController):
    """Listening on a Unix socket file.

    Args:
        handler: the handler object.
        unix_socket: the socket file's path; a stale socket file there is
            replaced, and the file is removed when the server stops.
        loop: the event loop.
        **kwargs: the :class:`BaseController` keyword arguments.
    """

    def __init__(
        self,
        handler: Any,
        unix_socket: str | os.PathLike[str],
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, loop, **kwargs)
        self.unix_socket = str(unix_socket)
        self._socket_inode: int | None = None

    def _create_server(self) -> Coroutine[Any, Any, asyncio.Server]:
        config = ServerConfig().replace(**{"listen.unix_socket": self.unix_socket})
        return _server.listen(self._factory_invoker, config, ssl_context=self.ssl_context)

    def _after_bind(self, server: asyncio.Server) -> None:
        self._socket_inode = os.stat(self.unix_socket).st_ino

    def _after_close(self) -> None:
        # Remove the socket file only if it is still the one this server made.
        inode, self._socket_inode = self._socket_inode, None
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(self.unix_socket)
            if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
                Path(self.unix_socket).unlink()

    async def _open_probe_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.unix_socket)


class Controller(InetMixin, BaseThreadedController):
    """Serve SMTP on a TCP address from a background thread.

    ``Controller(handler, hostname=None, port=8025, loop=None, *,
    ready_timeout=5.0, ssl_context=None, server_hostname=None,
    server_kwargs=None, **SMTP_parameters)``; see :class:`InetMixin` and
    :class:`BaseController` for the arguments.
    """


class UnixSocketController(UnixSocketMixin, BaseThreadedController):
    """Serve SMTP on a Unix socket from a background thread.

    ``UnixSocketController(handler, unix_socket, loop=None, *,
    ready_timeout=5.0, ssl_context=None, server_hostname=None,
    **SMTP_parameters)``.
    """


class UnthreadedController(InetMixin, BaseUnthreadedController):
    """Serve SMTP on a TCP address, on an event loop you run (``begin``/``end``)."""


class UnixSocketUnthreadedController(UnixSocketMixin, BaseUnthreadedController):
    """Serve SMTP on a Unix socket, on an event loop you run (``begin``/``end``)."""
