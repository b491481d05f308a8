"""The PROXY protocol's constants, enums, address types and errors."""

from __future__ import annotations

import ipaddress
from enum import IntEnum
from typing import TypeAlias

V1_SIGNATURE = b"PROXY "
"""What every v1 header starts with ("PROXY" and exactly one space)."""

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The constant 12 bytes every v2 header starts with."""

MAX_V1_LENGTH = 107
"""Longest v1 line, CRLF included (``PROXY UNKNOWN`` with two full IPv6 addresses)."""

V2_PREAMBLE_LENGTH = 16
"""Signature, version/command, family/protocol and the 16-bit length."""

MAX_V2_DECLARED_LENGTH = 216 + 4096
"""Largest v2 length field accepted: the UNIX address block plus 4 KiB of TLVs.

The field itself allows 65535; refusing more keeps a peer from making us
buffer 64 KiB before the first SMTP byte.
"""


class V2_CMD(IntEnum):
    """The v2 command (low nibble of the 13th byte)."""

    LOCAL = 0
    """Opened by the proxy itself (health check); the real peer is the proxy."""
    PROXY = 1
    """Relayed on behalf of the client described by the address block."""


class AF(IntEnum):
    """Address family (v2 high nibble of the 14th byte; v1 ``UNKNOWN`` is ``UNSPEC``)."""

    UNSPEC = 0
    INET = 1
    INET6 = 2
    UNIX = 3
    IP4 = 1
    """Alias of `INET`."""
    IP6 = 2
    """Alias of `INET6`."""


class PROTO(IntEnum):
    """Transport protocol (v2 low nibble of the 14th byte; v1 ``TCPx`` is ``STREAM``)."""

    UNSPEC = 0
    STREAM = 1
    DGRAM = 2


IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
EndpointAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address | str
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyError(ValueError):
    """The bytes cannot be (the start of) a valid PROXY header; the message says why."""


class MalformedTLV(ProxyError, RuntimeError):
    """A v2 TLV block is not well formed (truncated, overrunning, misplaced type)."""


class UnknownTypeTLV(KeyError):
    """A TLV type has no known name and strict parsing was asked for."""


def _check_signature(head: bytes, signature: bytes, version: str) -> None:
    got = head[: len(signature)]
    if not signature.startswith(got):
        raise ProxyError(f"PROXY {version} signature is {got!r}; expected {signature!r}")
