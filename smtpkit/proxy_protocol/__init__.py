"""PROXY protocol v1 and v2 headers (HAProxy), parsed without any I/O.

A TCP load balancer such as HAProxy can prepend one PROXY header to each
connection it relays, telling the server who the real client is. This module
turns the first bytes of such a connection into a `ProxyData`; the SMTP
protocol class owns the socket, the buffer and the timeout.

The format is HAProxy's ``doc/proxy-protocol.txt``:

* v1, one text line: ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n`` (or
  ``TCP6``, or ``UNKNOWN`` followed by anything), at most 107 bytes with CRLF.
* v2, binary: the 12-byte signature, a version/command byte, a
  family/protocol byte, a 16-bit length, the address block, then TLVs
  (type, 16-bit length, value).

Parsing is strict: the spec says any sequence that does not match exactly
must make the receiver abort the connection, as early as possible.
"""

from __future__ import annotations

from ._compat import AsyncReader, get_proxy
from ._data import ProxyData
from ._header import parse_header
from ._tlv import ProxyTLV, crc32c
from ._trust import is_trusted, parse_networks
from ._types import (
    AF,
    MAX_V1_LENGTH,
    MAX_V2_DECLARED_LENGTH,
    PROTO,
    V1_SIGNATURE,
    V2_CMD,
    V2_PREAMBLE_LENGTH,
    V2_SIGNATURE,
    EndpointAddress,
    MalformedTLV,
    ProxyError,
    UnknownTypeTLV,
)
from ._types import (
    IPAddress as IPAddress,
)
from ._types import (
    IPNetwork as IPNetwork,
)

__all__ = [
    "AF",
    "MAX_V1_LENGTH",
    "MAX_V2_DECLARED_LENGTH",
    "PROTO",
    "V1_SIGNATURE",
    "V2_CMD",
    "V2_PREAMBLE_LENGTH",
    "V2_SIGNATURE",
    "AsyncReader",
    "EndpointAddress",
    "MalformedTLV",
    "ProxyData",
    "ProxyError",
    "ProxyTLV",
    "UnknownTypeTLV",
    "crc32c",
    "get_proxy",
    "is_trusted",
    "parse_header",
    "parse_networks",
]
