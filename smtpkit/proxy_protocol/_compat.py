"""Reading a header from a stream, as aiosmtpd's API does.

The SMTP class feeds its own buffer to `parse_header`; these two names are for
code written against aiosmtpd, which reads the header from a stream reader.
"""

from __future__ import annotations

from typing import Protocol

from ._data import ProxyData
from ._header import parse_header
from ._types import V1_SIGNATURE, V2_PREAMBLE_LENGTH, ProxyError


class AsyncReader(Protocol):
    """What `get_proxy` reads from: an :class:`asyncio.StreamReader` fits."""

    async def read(self, n: int = ...) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = ...) -> bytes: ...


async def get_proxy(reader_func: AsyncReader) -> ProxyData:
    """Read one PROXY header (v1 or v2) from ``reader_func`` and decode it.

    Reads no byte past the header, so the stream is left at the first byte
    of the protocol that follows.

    Args:
        reader_func: the stream to read from.

    Returns:
        The decoded header. When the bytes are not a valid header, or the
        stream ends first, a `ProxyData` whose ``error`` says why (it is then
        falsy, and its ``valid`` is False).
    """
    buf = bytearray()
    try:
        buf += await reader_func.readexactly(5)
        while True:
            parsed = parse_header(buf)
            if parsed is not None:
                return parsed[0]
            buf += await _read_more(reader_func, buf)
    except ProxyError as error:
        return ProxyData(version=None).with_error(str(error))
    except EOFError:  # asyncio.IncompleteReadError
        return ProxyData(version=None).with_error(
            f"PROXY header incomplete: the stream ended after {len(buf)} bytes"
        )
    except Exception as error:  # the reader's own failure, e.g. a line over its limit
        return ProxyData(version=None).with_error(f"PROXY exception: {error}")


async def _read_more(reader: AsyncReader, buf: bytearray) -> bytes:
    """The next bytes of a header that `parse_header` found incomplete, and no more."""
    if buf[:1] == V1_SIGNATURE[:1]:
        return await reader.readuntil(b"\n")
    if len(buf) < V2_PREAMBLE_LENGTH:
        return await reader.readexactly(V2_PREAMBLE_LENGTH - len(buf))
    declared = int.from_bytes(buf[14:16], "big")
    return await reader.readexactly(V2_PREAMBLE_LENGTH + declared - len(buf))
