"""A load client that sends its messages by BDAT (CHUNKING, RFC 3030), pipelined.

Throughput mode (the default): one process holds --connections sessions and sends
--messages messages of about --size bytes between them, connections reused. After EHLO
a session writes ``MAIL``, ``RCPT`` and ``BDAT <size> LAST`` with the whole message in one
write, then reads the three replies: one round trip per message, as the pipelined DATA
client. It prints {"ready": true} once connected, waits for a line on stdin, then prints
{"started": t0, "ended": t1, "done": n} (``time.monotonic()`` seconds).

Big mode (``--big``): one session sends one message of --size bytes as 1 MiB chunks
(``BDAT 1048576`` ..., the last with ``LAST``), writing every chunk without waiting for
the replies, then reads them all. It prints {"seconds": ..., "bytes": ...}, from the first
chunk byte to the final ``250``.

Every reply code is checked; an error prints {"error": ...} with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

import _smtp

CHUNK = 1024 * 1024


def message(size: int) -> bytes:
    """A header and body lines of about ``size`` bytes."""
    return _smtp.HEADER + _smtp.body_block(max(1, size - len(_smtp.HEADER)))


def bdat(size: int, *, last: bool) -> bytes:
    return b"BDAT %d%s\r\n" % (size, b" LAST" if last else b"")


async def _session(host: str, port: int, budget: list[int], payload: bytes) -> None:
    client = await _smtp.Client.connect(host, port)
    try:
        await client.greet()
        group = _smtp.MAIL + _smtp.RCPT + bdat(len(payload), last=True) + payload
        while budget[0] > 0:
            budget[0] -= 1
            await client.send(group)
            for step in ("MAIL", "RCPT", "BDAT"):
                await client.expect(step, 250)
            budget[1] += 1
        await client.command(_smtp.QUIT, 221)
    finally:
        client.close()


async def throughput(host: str, port: int, messages: int, connections: int, size: int) -> None:
    """Connect, say ready, wait for the go line, send, print the times."""
    payload = message(size)
    budget = [messages, 0]
    loop = asyncio.get_running_loop()
    _smtp.emit({"ready": True})
    await loop.run_in_executor(None, sys.stdin.readline)
    started = time.monotonic()
    await asyncio.gather(*(_session(host, port, budget, payload) for _ in range(connections)))
    _smtp.emit({"started": started, "ended": time.monotonic(), "done": budget[1]})


async def big(host: str, port: int, size: int) -> dict[str, float | int]:
    """Send one message of ``size`` bytes in 1 MiB chunks; seconds to the final 250."""
    block = memoryview(message(CHUNK)[:CHUNK])
    client = await _smtp.Client.connect(host, port)
    try:
        await client.greet()
        await client.send(_smtp.MAIL + _smtp.RCPT)
        await client.expect("MAIL", 250)
        await client.expect("RCPT", 250)
        start = _smtp.now()
        sent = chunks = 0
        while sent < size:
            part = block[: min(CHUNK, size - sent)]
            sent += len(part)
            await client.send(bdat(len(part), last=sent >= size))
            await client.send(part)
            chunks += 1
        for number in range(chunks):
            await client.expect(f"BDAT chunk {number + 1}", 250)
        seconds = _smtp.now() - start
        await client.command(_smtp.QUIT, 221)
    finally:
        client.close()
    return {"seconds": seconds, "bytes": sent}


def main() -> None:
    """Parse the options and run one mode."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--big", action="store_true", help="send one message in 1 MiB chunks")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        if args.big:
            _smtp.emit(asyncio.run(big(args.host, args.port, args.size)))
        else:
            work = throughput(args.host, args.port, args.messages, args.connections, args.size)
            asyncio.run(work)
    except (OSError, _smtp.SMTPReplyError) as exc:
        _smtp.fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
