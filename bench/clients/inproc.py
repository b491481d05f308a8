"""Drive one protocol object in-process with N messages: the server's own work, no socket.

One connection is made on a transport that only counts the reply lines written, then fed
EHLO and ``--count`` transactions of 1 KiB messages in one of two shapes:

* ``source`` (smtp-source's): ``MAIL``, ``RCPT``, ``DATA``, the message and its end, each
  in its own ``data_received`` after the reply to the one before (four reads a message);
* ``pipelined`` (the pipelining clients'): ``MAIL``, ``RCPT`` and ``DATA`` in one read,
  then the message, its end and the next ``MAIL``, ``RCPT`` and ``DATA`` in one read (one
  read a message).

The server is ``SMTP(Sink(), ...)`` as ``bench/servers/smtpkit_server.py`` builds it;
``--enhanced`` turns on ENHANCEDSTATUSCODES on that class, ``--set keyword=value`` (JSON
values, repeatable) passes any other keyword to it (``--set dsn=true``); ``--app`` takes the App of
``bench/servers/app_server.py`` (one route, one RCPT hook, the App's default settings);
``--ceiling`` takes ``bench/servers/ceiling_server.py``'s canned-reply protocol, for the
cost of the driver and the loop themselves.

It prints one JSON line: the messages, and the CPU time per message in microseconds
(``time.process_time`` over the transactions only). For instruction counts, run it under
``valgrind --tool=callgrind`` with two counts and divide the difference of the totals by
the difference of the counts (the start-up cancels out); ``--profile`` prints cProfile's
table of the transactions instead, sorted by own time.

Usage: .venv/bin/python bench/clients/inproc.py --count 2000 --shape pipelined --app
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from typing import Any

import _smtp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "servers"))

MIB = 1024 * 1024
MESSAGE = _smtp.HEADER + _smtp.body_block(1024 - len(_smtp.HEADER))
ENVELOPE = _smtp.MAIL + _smtp.RCPT + _smtp.DATA


class Transport(asyncio.Transport):
    """Just enough of a socket transport: counts the reply lines the server writes."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        #: Reply lines written so far (every line ends with CRLF).
        self.lines = 0
        self.last = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.lines += data.count(b"\r\n")
        self.last = data

    def ended(self) -> bool:
        """Whether the last line written is the last of its reply (``NNN <text>``)."""
        end = self.last.rfind(b"\r\n", 0, len(self.last) - 2)
        start = 0 if end < 0 else end + 2
        return self.last[start + 3 : start + 4] == b" "

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def make_protocol(args: argparse.Namespace) -> asyncio.Protocol:
    """The protocol object under test, built the way its benchmark server builds it."""
    if args.ceiling:
        from ceiling_server import Ceiling

        return Ceiling()
    if args.app:
        from app_server import make_app

        return make_app(200 * MIB).protocol_factory()()  # type: ignore[no-any-return]
    from smtpkit.handlers import Sink
    from smtpkit.smtp import SMTP

    extras: dict[str, Any] = {"enhanced_status_codes": True} if args.enhanced else {}
    extras.update(args.set)
    return SMTP(Sink(), data_size_limit=200 * MIB, hostname="bench.local", chunking=True, **extras)


async def until(transport: Transport, lines: int) -> None:
    """Let the loop run until the server has written ``lines`` reply lines in all."""
    while transport.lines < lines:
        await asyncio.sleep(0)


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Connect, greet, run the transactions; return the figures."""
    protocol = make_protocol(args)
    transport = Transport()
    protocol.connection_made(transport)
    await until(transport, 1)
    protocol.data_received(_smtp.EHLO)
    while not transport.ended():  # the last line of EHLO's reply
        await asyncio.sleep(0)
    feed = protocol.data_received
    profile = cProfile.Profile() if args.profile else None
    expected = transport.lines
    start = time.process_time()
    if profile is not None:
        profile.enable()
    if args.shape == "source":
        for _ in range(args.count):
            for data in (_smtp.MAIL, _smtp.RCPT, _smtp.DATA, MESSAGE + _smtp.END_OF_DATA):
                feed(data)
                expected += 1
                await until(transport, expected)
    else:
        feed(ENVELOPE)
        expected += 3
        await until(transport, expected)
        for _ in range(args.count - 1):
            feed(MESSAGE + _smtp.END_OF_DATA + ENVELOPE)
            expected += 4
            await until(transport, expected)
        feed(MESSAGE + _smtp.END_OF_DATA)
        expected += 1
        await until(transport, expected)
    if profile is not None:
        profile.disable()
    elapsed = time.process_time() - start
    protocol.data_received(_smtp.QUIT)
    await until(transport, expected + 1)
    protocol.connection_lost(None)
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(args.profile)
    return {"messages": args.count, "shape": args.shape, "cpu_us": elapsed / args.count * 1e6}


def keyword_value(text: str) -> tuple[str, Any]:
    """``dsn=true`` as ``("dsn", True)``: a keyword of SMTP and its value in JSON."""
    keyword, eq, value = text.partition("=")
    if not eq or not keyword.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected keyword=value")
    try:
        return keyword, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="transactions")
    parser.add_argument("--shape", choices=("source", "pipelined"), default="source")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--app", action="store_true", help="the App of app_server.py")
    which.add_argument("--enhanced", action="store_true", help="SMTP + Sink, enhanced codes on")
    which.add_argument("--ceiling", action="store_true", help="the ceiling's protocol")
    parser.add_argument(
        "--set",
        type=keyword_value,
        action="append",
        default=[],
        metavar="KEYWORD=VALUE",
        help="another keyword of SMTP + Sink, its value in JSON (repeatable)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print cProfile's top N (stderr)"
    )
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count: at least 1")
    if args.set and (args.app or args.ceiling):
        parser.error("--set: only for SMTP + Sink")
    if args.loop == "uvloop":
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    print(json.dumps(runner(drive(args))), flush=True)


if __name__ == "__main__":
    main()
