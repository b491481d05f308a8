"""Stall benchmark clients: big uploads, and a probe timing small messages meanwhile.

``stall.py upload``: N sessions each send messages of --size bytes back to back. Prints
{"started": N} once every session is sending, and {"messages": ..., "error": ...} after a
line or end-of-file on stdin (or --max-seconds), then exits.

``stall.py probe``: one session sends --messages small messages one after another and prints
{"latencies_ms": [...]}: for each, the time from MAIL to the 250 after end-of-data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys

import _smtp

UPLOAD_BLOCK = 256 * 1024


class Uploads:
    """Keeps ``connections`` sessions busy sending big messages."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.messages = 0
        self.error = ""
        self.sending = 0
        self.all_sending = asyncio.Event()

    async def _session(self) -> None:
        block = _smtp.body_block(UPLOAD_BLOCK)
        client = await _smtp.Client.connect(self.args.host, self.args.port)
        try:
            await client.greet()
            first = True
            while True:
                await client.begin_data()
                if first:
                    first = False
                    self.sending += 1
                    if self.sending == self.args.connections:
                        self.all_sending.set()
                await _smtp.send_message(client, self.args.size, block)
                await client.end_data()
                self.messages += 1
        finally:
            client.close()

    async def _guarded(self) -> None:
        try:
            await self._session()
        except (OSError, _smtp.SMTPReplyError) as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            self.all_sending.set()

    async def run(self) -> None:
        """Run the uploads until stdin has a line or closes, or --max-seconds pass."""
        tasks = [asyncio.ensure_future(self._guarded()) for _ in range(self.args.connections)]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), stop.set)
        try:
            await asyncio.wait_for(self.all_sending.wait(), self.args.max_seconds)
            _smtp.emit({"started": self.sending, "error": self.error})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.max_seconds)
        finally:
            loop.remove_reader(sys.stdin.fileno())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        _smtp.emit({"messages": self.messages, "error": self.error})


def no_delay(client: _smtp.Client) -> None:
    """Send each of the probe's writes at once (TCP_NODELAY).

    A probe message goes out as three writes (header, body, end of data) with no reply
    in between: with Nagle's algorithm the second and third wait for the ACK of the
    first, which the server's TCP delays by up to 40 ms. That wait is the client's, not
    the server's: it made a probe take over 40 ms on an idle server.
    """
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def probe(args: argparse.Namespace) -> list[float]:
    """Send --messages small messages on one session; return each one's latency in ms."""
    block = _smtp.body_block(args.size)
    latencies: list[float] = []
    client = await _smtp.Client.connect(args.host, args.port)
    no_delay(client)
    try:
        await client.greet()
        deadline = _smtp.now() + args.max_seconds
        while len(latencies) < args.messages and _smtp.now() < deadline:
            start = _smtp.now()
            await client.begin_data()
            await _smtp.send_message(client, args.size, block)
            await client.end_data()
            latencies.append((_smtp.now() - start) * 1000.0)
            await asyncio.sleep(args.gap_ms / 1000.0)
    finally:
        client.close()
    return latencies


def parse_args() -> argparse.Namespace:
    """Parse the command line of either mode."""
    parser = argparse.ArgumentParser(description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    upload = modes.add_parser("upload")
    upload.add_argument("--connections", type=int, default=10)
    upload.add_argument("--size", type=int, default=20 * 1024 * 1024)
    probe_mode = modes.add_parser("probe")
    probe_mode.add_argument("--messages", type=int, default=200)
    probe_mode.add_argument("--size", type=int, default=1024)
    probe_mode.add_argument("--gap-ms", type=float, default=5.0)
    for mode in (upload, probe_mode):
        mode.add_argument("--port", type=int, required=True)
        mode.add_argument("--host", default="127.0.0.1")
        mode.add_argument("--max-seconds", type=float, default=120.0)
    return parser.parse_args()


def main() -> None:
    """Run the mode named on the command line."""
    args = parse_args()
    try:
        if args.mode == "upload":
            asyncio.run(Uploads(args).run())
        else:
            _smtp.emit({"latencies_ms": asyncio.run(probe(args))})
    except (OSError, asyncio.TimeoutError, _smtp.SMTPReplyError) as exc:
        _smtp.fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
