"""Send one big message and report how long the server took to accept it.

Prints one JSON line: {"seconds": ..., "bytes": ...} (from the first body byte to the
final 250), or {"error": ...} with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio

import _smtp

#: Each send hands the kernel about one MiB of lines.
BLOCK_SIZE = 1024 * 1024


async def send_one(host: str, port: int, size: int) -> dict[str, float | int]:
    """Send a single message of about ``size`` bytes over a new session."""
    block = _smtp.body_block(BLOCK_SIZE)
    client = await _smtp.Client.connect(host, port)
    try:
        await client.greet()
        await client.begin_data()
        start = _smtp.now()
        sent = await _smtp.send_message(client, size, block)
        await client.end_data()
        seconds = _smtp.now() - start
        await client.command(_smtp.QUIT, 221)
    finally:
        client.close()
    return {"seconds": seconds, "bytes": sent}


def main() -> None:
    """Parse the options, send the message, print the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    args = parser.parse_args()
    try:
        _smtp.emit(asyncio.run(send_one(args.host, args.port, args.size)))
    except (OSError, _smtp.SMTPReplyError) as exc:
        _smtp.fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
