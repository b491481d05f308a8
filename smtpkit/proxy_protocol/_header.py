"""The entry point: which version a header is, by its first byte."""

from __future__ import annotations

from ._data import ProxyData
from ._types import V1_SIGNATURE, V2_SIGNATURE, ProxyError
from ._v1 import _parse_v1
from ._v2 import _parse_v2


def parse_header(buf: bytes | bytearray) -> tuple[ProxyData, int] | None:
    """Parse a PROXY header at the start of ``buf``.

    Args:
        buf: The bytes received so far on the connection.

    Returns:
        ``(proxy_data, consumed_bytes)`` when a complete, valid header is
        there (the bytes after ``consumed_bytes`` belong to the next protocol);
        ``None`` when more bytes are needed (``buf`` is a valid prefix so far).

    Raises:
        ProxyError: As soon as ``buf`` cannot be the start of a valid header.
    """
    if not buf:
        return None
    if buf[0] == V1_SIGNATURE[0]:
        return _parse_v1(buf)
    if buf[0] == V2_SIGNATURE[0]:
        return _parse_v2(buf)
    raise ProxyError(
        f"PROXY header starts with {bytes(buf[:12])!r}; expected {V1_SIGNATURE!r} (v1)"
        f" or {V2_SIGNATURE!r} (v2)"
    )
