"""Plumbing shared by the benchmark servers: options, event loop, signals, readiness.

Every server script prints ``READY <port>`` on stdout once it listens, then serves until
SIGTERM or SIGINT. The scripts run under different virtualenvs (smtpkit's own, or the
peers' one with aiosmtpd), so this module imports nothing but the standard library and,
when asked for, uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence

#: Large enough for the 100 MiB message of the big-message benchmark.
DEFAULT_DATA_SIZE_LIMIT = 200 * 1024 * 1024
#: A fixed name, so that no server spends time resolving its own host name.
HOSTNAME = "bench.local"
LOOPS = ("asyncio", "uvloop")

StartServer = Callable[[asyncio.AbstractEventLoop], Awaitable[asyncio.Server]]


def parse_args(description: str, handlers: Sequence[str]) -> argparse.Namespace:
    """Parse the options every benchmark server takes.

    Args:
        description: What the script serves, for ``--help``.
        handlers: The handler names this server supports.

    Returns:
        The parsed options: port, loop, handler, data_size_limit, spool_dir, tls_cert,
        tls_key.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--handler", choices=tuple(handlers), default=handlers[0])
    parser.add_argument("--data-size-limit", type=int, default=DEFAULT_DATA_SIZE_LIMIT)
    parser.add_argument("--spool-dir", default=None, help="directory for the spool handler")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain: offer STARTTLS")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    return parser.parse_args()


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context for STARTTLS, or None when no certificate was given.

    Raises:
        SystemExit: If only one of --tls-cert and --tls-key is given.
    """
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise SystemExit("--tls-cert and --tls-key: expected both or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context


def maildir(spool_dir: str | None) -> str:
    """The Maildir of the mailbox handlers: ``maildir`` inside ``spool_dir``.

    Raises:
        SystemExit: If no spool directory was given (a Maildir is never put anywhere else).
    """
    if spool_dir is None:
        raise SystemExit("--handler mailbox: needs --spool-dir")
    return os.path.join(spool_dir, "maildir")


def raise_fd_limit() -> None:
    """Raise the soft limit on open files to the hard limit (idle sessions need many)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """Create the event loop called ``name`` ("asyncio" or "uvloop").

    Raises:
        ValueError: If ``name`` is not one of :data:`LOOPS`.
    """
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    raise ValueError(f"loop: got {name!r}, expected one of {LOOPS}")


async def _serve(start: StartServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await start(loop)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await stop.wait()
    # Close the listener only: waiting for open sessions would let a benchmark's
    # leftover clients hold the process up.
    server.close()


def run(loop_name: str, start: StartServer) -> None:
    """Serve with ``start`` on a new ``loop_name`` loop until SIGTERM or SIGINT.

    Args:
        loop_name: "asyncio" or "uvloop".
        start: Coroutine function that creates and returns the listening server.
    """
    raise_fd_limit()
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(start))
    finally:
        loop.close()
