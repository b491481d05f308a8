"""Open many SMTP sessions that say EHLO and then wait, and hold them until told to close.

Prints one JSON line once every session is open (or failed):
{"held": ..., "failed": ..., "seconds": ..., "first_error": ...}; then holds the sessions
until a line or end-of-file arrives on stdin (or --hold-seconds pass), closes them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import select
import sys

import _smtp


class Opener:
    """Opens ``count`` sessions with at most ``concurrency`` handshakes in flight."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
        self.clients: list[_smtp.Client] = []
        self.failed = 0
        self.first_error = ""
        self._next = 0

    async def _open(self, index: int) -> None:
        source = self.sources[index % len(self.sources)]
        client = await _smtp.Client.connect(self.args.host, self.args.port, source)
        try:
            await asyncio.wait_for(client.greet(), self.args.session_timeout)
        except BaseException:
            client.close()
            raise
        self.clients.append(client)

    async def _worker(self) -> None:
        while self._next < self.args.count:
            index = self._next
            self._next += 1
            try:
                await self._open(index)
            except (OSError, asyncio.TimeoutError, _smtp.SMTPReplyError) as exc:
                self.failed += 1
                self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"

    async def run(self) -> None:
        """Open the sessions, within --timeout seconds in all."""
        workers = [self._worker() for _ in range(min(self.args.concurrency, self.args.count))]
        await asyncio.wait_for(asyncio.gather(*workers), self.args.timeout)


def hold(seconds: float) -> None:
    """Block until stdin has a line or is closed, or ``seconds`` pass."""
    readable, _, _ = select.select([sys.stdin], [], [], seconds)
    if readable:
        sys.stdin.readline()


def main() -> None:
    """Parse the options, open and hold the sessions, report, then close them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sources", type=int, default=8, help="source addresses 127.0.0.2...")
    # Kept below the listen backlog of asyncio's create_server (100): more handshakes in
    # flight overflow the accept queue, and the lost sessions only measure the client.
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--session-timeout", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--hold-seconds", type=float, default=300.0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    opener = Opener(args)
    start = _smtp.now()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(opener.run())
    except asyncio.TimeoutError:
        opener.first_error = opener.first_error or f"not all open after {args.timeout} s"
    seconds = _smtp.now() - start
    _smtp.emit(
        {
            "held": len(opener.clients),
            "failed": opener.failed,
            "seconds": seconds,
            "first_error": opener.first_error,
        }
    )
    hold(args.hold_seconds)
    for client in opener.clients:
        client.close()
    loop.close()


if __name__ == "__main__":
    main()
