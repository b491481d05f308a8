"""Time building one SMTP() and one connection accepted through an App's factory.

Runs inside the event loop chosen with --loop (as a server's factory does) and prints
one JSON line: {"smtp_us": ..., "factory_us": ..., "accept_us": ...}, each the median
over --repeats of the mean time of --count calls, in microseconds. The time is the
process's CPU time, so that other work on a loaded machine counts as little as it can.

* smtp: ``SMTP(Sink(), data_size_limit=200 MiB, hostname="bench.local")``, the bench
  servers' documented construction;
* factory: one call of ``App(config=...).protocol_factory()``'s factory;
* accept: that call, then ``connection_made`` and ``connection_lost`` on a transport
  that keeps what is written (no socket: the kernel's share is left out), with one
  other connection open so the timeout sweep is running, as on a busy server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from smtpkit import App, ServerConfig
from smtpkit.handlers import Sink
from smtpkit.smtp import SMTP

MIB = 1024 * 1024


class Transport(asyncio.Transport):
    """Just enough of a socket transport for connection_made and the greeting."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.written += len(data)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def _per_call(step: Callable[[], object], count: int, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(count):
            step()
        times.append((time.process_time() - start) / count * 1e6)
    return round(statistics.median(times), 2)


async def measure(count: int, repeats: int) -> dict[str, float]:
    """The three figures, in microseconds per call."""
    handler = Sink()
    app = App(config=ServerConfig(hostname="bench.local"))
    factory = app.protocol_factory()
    held = factory()
    held.connection_made(Transport())

    def accept() -> None:
        protocol = factory()
        protocol.connection_made(Transport())
        protocol.connection_lost(None)

    figures = {
        "smtp_us": _per_call(
            lambda: SMTP(handler, data_size_limit=200 * MIB, hostname="bench.local"),
            count,
            repeats,
        ),
        "factory_us": _per_call(factory, count, repeats),
        "accept_us": _per_call(accept, count, repeats),
    }
    held.connection_lost(None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    print(json.dumps(runner(measure(args.count, args.repeats))), flush=True)


if __name__ == "__main__":
    main()
