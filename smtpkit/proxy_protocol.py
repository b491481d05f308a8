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

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any, ClassVar, Protocol, TypeAlias

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


# region CRC32C (RFC 4960 appendix B: Castagnoli polynomial, reflected)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Compute the CRC32C (Castagnoli) checksum used by the v2 ``CRC32C`` TLV.

    Args:
        data: The bytes to checksum.
        crc: A previous result, to continue a checksum over several pieces.

    Returns:
        The checksum as an unsigned 32-bit integer.
    """
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# endregion
# region TLVs

_SSL_TYPE = 0x20
_CRC32C_TYPE = 0x03
# Sub-types that only make sense inside the SSL TLV, and types that only make
# sense outside it. Both share one flat namespace in ProxyTLV, so a misplaced
# one would silently overwrite a real value: we call it malformed instead.
_SSL_SUBTYPES = frozenset(range(0x21, 0x26))
_TOP_LEVEL_TYPES = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30})
_SSL_FIXED_LENGTH = 5  # uint8 client + uint32 verify, then sub-TLVs


class ProxyTLV(dict[str, Any]):
    """The TLVs of a v2 header, by name (``tlv["AUTHORITY"]`` or ``tlv.AUTHORITY``).

    Values are the raw ``bytes`` of each TLV. The ``SSL`` TLV is flattened: its
    sub-TLVs (``SSL_VERSION``, ``SSL_CN``, ``SSL_CIPHER``, ``SSL_SIG_ALG``,
    ``SSL_KEY_ALG``) sit next to the others, ``SSL_CLIENT`` and ``SSL_VERIFY``
    hold its two integer fields, and ``SSL`` itself is ``True`` (``False`` when
    its sub-TLVs were malformed and a partial parse was asked for). A type with
    no name in `PP2_TYPENAME` is stored as ``"xNN"`` (hex). Attribute access
    to a missing name gives ``None``.

    Attributes:
        tlv_loc: Offset of each TLV (its type byte), by name, from the start of
            the TLV block.
    """

    __slots__ = ("tlv_loc",)

    PP2_TYPENAME: ClassVar[dict[int, str]] = {
        0x01: "ALPN",
        0x02: "AUTHORITY",
        0x03: "CRC32C",
        0x04: "NOOP",
        0x05: "UNIQUE_ID",
        0x20: "SSL",
        0x21: "SSL_VERSION",
        0x22: "SSL_CN",
        0x23: "SSL_CIPHER",
        0x24: "SSL_SIG_ALG",
        0x25: "SSL_KEY_ALG",
        0x30: "NETNS",
    }
    """TLV type number to name (the spec's ``PP2_TYPE_``/``PP2_SUBTYPE_`` names, unprefixed)."""

    def __init__(self, *args: Any, _tlv_loc: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tlv_loc: dict[str, int] = {} if _tlv_loc is None else _tlv_loc

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def same_attribs(self, _raises: bool = False, **kwargs: Any) -> bool:
        """Tell whether every named TLV is present with the given value.

        Args:
            _raises: Raise instead of returning ``False``.
            **kwargs: TLV names and their expected values.

        Returns:
            ``True`` when all match.

        Raises:
            KeyError: ``_raises`` is set and a name is missing.
            ValueError: ``_raises`` is set and a value differs.
        """
        return _same_attribs(self.get, _raises, kwargs)

    @classmethod
    def parse(
        cls,
        data: bytes | bytearray | memoryview,
        partial_ok: bool = True,
        strict: bool = False,
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """Decode a block of TLVs.

        Args:
            data: The TLV block (what follows the v2 address block).
            partial_ok: On a malformed TLV, return what was decoded before it
                instead of raising.
            strict: Reject TLV types with no name in `PP2_TYPENAME`.

        Returns:
            The values by name, and the offset of each TLV by name.

        Raises:
            MalformedTLV: The block is malformed and ``partial_ok`` is false.
            UnknownTypeTLV: ``strict`` is set and a type is unknown.
        """
        values: dict[str, Any] = {}
        locations: dict[str, int] = {}
        try:
            _read_tlvs(bytes(data), 0, values, locations, strict=strict, in_ssl=False)
        except MalformedTLV:
            if not partial_ok:
                raise
        return values, locations

    @classmethod
    def from_raw(cls, raw: bytes | bytearray | memoryview, strict: bool = False) -> ProxyTLV | None:
        """Decode a whole TLV block into a `ProxyTLV`.

        Args:
            raw: The TLV block.
            strict: Reject TLV types with no name in `PP2_TYPENAME`.

        Returns:
            The TLVs, or ``None`` when ``raw`` is empty.

        Raises:
            MalformedTLV: The block is not well formed.
            UnknownTypeTLV: ``strict`` is set and a type is unknown.
        """
        if not raw:
            return None
        values, locations = cls.parse(raw, partial_ok=False, strict=strict)
        return cls(values, _tlv_loc=locations)

    @classmethod
    def name_to_num(cls, name: str) -> int | None:
        """Map a TLV name back to its type number.

        Args:
            name: A name from `PP2_TYPENAME`.

        Returns:
            The type number, or ``None`` for an unknown name.
        """
        return _TYPENUM.get(name)


_TYPENUM = {name: num for num, name in ProxyTLV.PP2_TYPENAME.items()}


def _type_label(tlv_type: int) -> str:
    name = ProxyTLV.PP2_TYPENAME.get(tlv_type)
    return f"0x{tlv_type:02X}" + (f" ({name})" if name else "")


def _read_tlvs(
    data: bytes,
    base: int,
    values: dict[str, Any],
    locations: dict[str, int],
    *,
    strict: bool,
    in_ssl: bool,
) -> None:
    """Decode ``data`` into ``values``; ``base`` is its offset in the whole block."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise MalformedTLV(
                f"TLV at offset {base + pos} is truncated: {len(data) - pos} byte(s) left,"
                " expected at least 3 (type and length)"
            )
        tlv_type = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        end = pos + 3 + length
        if end > len(data):
            raise MalformedTLV(
                f"TLV {_type_label(tlv_type)} at offset {base + pos} declares {length} bytes,"
                f" expected at most {len(data) - pos - 3} (what is left of the block)"
            )
        name = _tlv_name(tlv_type, strict=strict, in_ssl=in_ssl, offset=base + pos)
        if tlv_type == _CRC32C_TYPE and name in values:
            raise MalformedTLV(f"TLV 0x03 (CRC32C) repeated at offset {base + pos}")
        locations[name] = base + pos
        value = data[pos + 3 : end]
        if tlv_type == _SSL_TYPE:
            _read_ssl(value, base + pos + 3, values, locations, strict=strict)
        else:
            values[name] = value
        pos = end


def _tlv_name(tlv_type: int, *, strict: bool, in_ssl: bool, offset: int) -> str:
    if in_ssl and tlv_type in _TOP_LEVEL_TYPES:
        raise MalformedTLV(
            f"TLV {_type_label(tlv_type)} at offset {offset} is inside the SSL TLV;"
            " expected only SSL sub-types there"
        )
    if not in_ssl and tlv_type in _SSL_SUBTYPES:
        raise MalformedTLV(
            f"TLV {_type_label(tlv_type)} at offset {offset} is outside the SSL TLV;"
            " expected it only inside SSL"
        )
    name = ProxyTLV.PP2_TYPENAME.get(tlv_type)
    if name is not None:
        return name
    if strict:
        raise UnknownTypeTLV(f"x{tlv_type:02X}")
    return f"x{tlv_type:02X}"


def _read_ssl(
    value: bytes,
    base: int,
    values: dict[str, Any],
    locations: dict[str, int],
    *,
    strict: bool,
) -> None:
    """Decode the SSL TLV value: client flags, verify result, then sub-TLVs."""
    if len(value) < _SSL_FIXED_LENGTH:
        raise MalformedTLV(
            f"SSL TLV value at offset {base} is {len(value)} bytes,"
            f" expected at least {_SSL_FIXED_LENGTH} (client flags and verify)"
        )
    values["SSL_CLIENT"] = value[0]
    values["SSL_VERIFY"] = int.from_bytes(value[1:5], "big")
    try:
        _read_tlvs(
            value[_SSL_FIXED_LENGTH:],
            base + _SSL_FIXED_LENGTH,
            values,
            locations,
            strict=strict,
            in_ssl=True,
        )
    except MalformedTLV:
        values["SSL"] = False
        raise
    values["SSL"] = True


# endregion
# region ProxyData

_NOT_FOUND = object()


def _same_attribs(
    getter: Callable[[str, Any], Any], raises: bool, expected: dict[str, Any]
) -> bool:
    for key, want in expected.items():
        actual = getter(key, _NOT_FOUND)
        if actual is _NOT_FOUND:
            if raises:
                raise KeyError(f"notfound:{key}")
            return False
        if actual != want:
            if raises:
                raise ValueError(f"mismatch:{key} actual={actual!r} expect={want!r}")
            return False
    return True


@dataclasses.dataclass(slots=True, kw_only=True)
class ProxyData:
    """What a PROXY header said, already decoded.

    `parse_header` only returns valid instances; the ``error`` field exists
    for code that builds or checks instances itself. An instance is truthy
    exactly when it is `valid`.

    Attributes:
        version: 1 or 2; ``None`` when unknown.
        command: The v2 command; ``None`` for v1.
        family: The address family; v1 ``UNKNOWN`` is ``AF.UNSPEC``.
        protocol: The transport protocol; v1 ``TCP4``/``TCP6`` is ``PROTO.STREAM``.
        src_addr: The original client's address: ``IPv4Address``/``IPv6Address``,
            or ``str`` for ``AF.UNIX``. ``None`` for ``UNKNOWN``/``UNSPEC``/``LOCAL``.
        dst_addr: The address the client connected to on the proxy (same types).
        src_port: The original client's port (``AF.INET``/``AF.INET6`` only).
        dst_port: The proxy port the client connected to.
        rest: Header bytes not decoded above: v1, what follows ``UNKNOWN``
            (before CRLF); v2, the TLV block after the address block (the whole
            payload when the family or protocol is unspecified).
        whole_raw: The whole header exactly as received.
        tlv_start: Offset of the TLV block in ``whole_raw`` (v2 with TLVs only).
        error: Why the header is invalid; ``""`` when valid.
    """

    version: int | None = None
    command: V2_CMD | None = None
    family: AF | None = None
    protocol: PROTO | None = None
    src_addr: EndpointAddress | None = None
    dst_addr: EndpointAddress | None = None
    src_port: int | None = None
    dst_port: int | None = None
    rest: bytes = b""
    whole_raw: bytearray = dataclasses.field(default_factory=bytearray)
    tlv_start: int | None = None
    error: str = ""
    _tlv: ProxyTLV | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """``True`` when the header was recognised and no error was recorded."""
        return not self.error and self.version is not None and self.protocol is not None

    @property
    def tlv(self) -> ProxyTLV | None:
        """The v2 TLVs decoded from `rest`; ``None`` when there are none or they are malformed."""
        if self._tlv is None and self.rest and self.version != 1:
            try:
                self._tlv = ProxyTLV.from_raw(self.rest)
            except MalformedTLV:
                return None
        return self._tlv

    def with_error(self, error_msg: str) -> ProxyData:
        """Record an error, making the instance invalid.

        Args:
            error_msg: What is wrong.

        Returns:
            This instance.
        """
        self.error = error_msg
        return self

    def same_attribs(self, _raises: bool = False, **kwargs: Any) -> bool:
        """Tell whether every named attribute exists with the given value.

        Args:
            _raises: Raise instead of returning ``False``.
            **kwargs: Attribute names and their expected values.

        Returns:
            ``True`` when all match.

        Raises:
            KeyError: ``_raises`` is set and an attribute does not exist.
            ValueError: ``_raises`` is set and a value differs.
        """
        return _same_attribs(lambda key, default: getattr(self, key, default), _raises, kwargs)

    def __bool__(self) -> bool:
        return self.valid


# endregion
# region Entry point


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


def _check_signature(head: bytes, signature: bytes, version: str) -> None:
    got = head[: len(signature)]
    if not signature.startswith(got):
        raise ProxyError(f"PROXY {version} signature is {got!r}; expected {signature!r}")


# endregion
# region v1

_V1_PROTOCOLS = {b"TCP4": AF.INET, b"TCP6": AF.INET6, b"UNKNOWN": AF.UNSPEC}
_V1_FIELD_NAMES = ("source address", "destination address", "source port", "destination port")
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Dotted quads without leading zeros; every prefix of a valid one matches the first.
_IPV4_PREFIX = re.compile(rb"(?:%s\.){0,3}%s?" % (_OCTET, _OCTET))
_IPV4_FULL = re.compile(rb"(?:%s\.){3}%s" % (_OCTET, _OCTET))
# Hex groups and colons; dots for the IPv4-mapped form some proxies print.
# Anything else (a "%scope", spaces) is refused before ipaddress sees it.
_IPV6_CHARS = re.compile(rb"[0-9A-Fa-f:.]{0,45}")
_PORT_PREFIX = re.compile(rb"(?:0|[1-9][0-9]{0,4})?")


def _parse_v1(buf: bytes | bytearray) -> tuple[ProxyData, int] | None:
    head = bytes(buf[:MAX_V1_LENGTH])
    _check_signature(head, V1_SIGNATURE, "v1")
    end = head.find(b"\n")
    if end < 0:
        if len(head) >= MAX_V1_LENGTH:
            raise ProxyError(f"PROXY v1 line has no CRLF within {MAX_V1_LENGTH} bytes")
        body = head[len(V1_SIGNATURE) :]
        if body.endswith(b"\r"):
            _v1_from_line(body[:-1])  # only the LF is missing: the line must be complete
        else:
            _check_v1_partial(body)
        return None
    if head[end - 1] != 0x0D:
        raise ProxyError("PROXY v1 line ends with a bare LF; expected CRLF")
    line = head[len(V1_SIGNATURE) : end - 1]
    data = _v1_from_line(line)
    data.whole_raw = bytearray(head[: end + 1])
    return data, end + 1


def _check_v1_partial(body: bytes) -> None:
    """Raise if ``body`` (the line after ``PROXY``, still without CRLF) is already wrong."""
    _check_no_cr(body)
    fields = body.split(b" ")
    if len(fields) == 1:
        if not any(name.startswith(fields[0]) for name in _V1_PROTOCOLS):
            raise _bad_v1_protocol(fields[0])
        return
    family = _v1_family(fields[0])
    if family is AF.UNSPEC:
        return
    _check_field_count(fields, at_most=True)
    for index, field in enumerate(fields[1:]):
        complete = index < len(fields) - 2
        if index < 2:
            _check_address_prefix(field, family, _V1_FIELD_NAMES[index], complete)
        else:
            _check_port_prefix(field, _V1_FIELD_NAMES[index], complete)


def _v1_from_line(line: bytes) -> ProxyData:
    _check_no_cr(line)
    fields = line.split(b" ")
    family = _v1_family(fields[0])
    if family is AF.UNSPEC:
        # The spec: "the receiver must ignore anything presented before the CRLF".
        return ProxyData(
            version=1, family=AF.UNSPEC, protocol=PROTO.UNSPEC, rest=line[len(b"UNKNOWN") :]
        )
    _check_field_count(fields, at_most=False)
    return ProxyData(
        version=1,
        family=family,
        protocol=PROTO.STREAM,
        src_addr=_v1_address(fields[1], family, _V1_FIELD_NAMES[0]),
        dst_addr=_v1_address(fields[2], family, _V1_FIELD_NAMES[1]),
        src_port=_v1_port(fields[3], _V1_FIELD_NAMES[2]),
        dst_port=_v1_port(fields[4], _V1_FIELD_NAMES[3]),
    )


def _check_no_cr(body: bytes) -> None:
    if b"\r" in body:
        raise ProxyError("PROXY v1 line has a CR not followed by LF; expected CRLF only at the end")


def _bad_v1_protocol(value: bytes) -> ProxyError:
    return ProxyError(f"PROXY v1 protocol is {value!r}; expected b'TCP4', b'TCP6' or b'UNKNOWN'")


def _v1_family(value: bytes) -> AF:
    family = _V1_PROTOCOLS.get(value)
    if family is None:
        raise _bad_v1_protocol(value)
    return family


def _check_field_count(fields: list[bytes], *, at_most: bool) -> None:
    if len(fields) > 5 or (not at_most and len(fields) < 5):
        raise ProxyError(
            f"PROXY v1 {fields[0].decode('ascii')} line has {len(fields) - 1} fields after"
            " the protocol; expected 4 (addresses and ports separated by single spaces)"
        )


def _check_address_prefix(value: bytes, family: AF, name: str, complete: bool) -> None:
    if complete:
        _v1_address(value, family, name)
        return
    pattern = _IPV4_PREFIX if family is AF.INET else _IPV6_CHARS
    if pattern.fullmatch(value) is None:
        raise _bad_v1_address(value, family, name)


def _v1_address(value: bytes, family: AF, name: str) -> IPAddress:
    try:
        if family is AF.INET:
            if _IPV4_FULL.fullmatch(value) is None:
                raise ValueError(value)
            return ipaddress.IPv4Address(value.decode("ascii"))
        if _IPV6_CHARS.fullmatch(value) is None:
            raise ValueError(value)
        return ipaddress.IPv6Address(value.decode("ascii"))
    except ValueError:
        raise _bad_v1_address(value, family, name) from None


def _bad_v1_address(value: bytes, family: AF, name: str) -> ProxyError:
    expected = (
        "an IPv4 address in dotted decimal without leading zeros"
        if family is AF.INET
        else "an IPv6 address in hexadecimal groups"
    )
    return ProxyError(f"PROXY v1 {name} {value!r} is invalid; expected {expected}")


def _check_port_prefix(value: bytes, name: str, complete: bool) -> None:
    if complete:
        _v1_port(value, name)
    elif _PORT_PREFIX.fullmatch(value) is None or (value and int(value) > 65535):
        raise _bad_v1_port(value, name)


def _v1_port(value: bytes, name: str) -> int:
    if not value or _PORT_PREFIX.fullmatch(value) is None or int(value) > 65535:
        raise _bad_v1_port(value, name)
    return int(value)


def _bad_v1_port(value: bytes, name: str) -> ProxyError:
    return ProxyError(
        f"PROXY v1 {name} {value!r} is invalid; expected a decimal 0..65535 without leading zeros"
    )


# endregion
# region v2

_ADDRESS_BLOCK = {AF.INET: 12, AF.INET6: 36, AF.UNIX: 216}
_IP_LENGTH = {AF.INET: 4, AF.INET6: 16}


def _parse_v2(buf: bytes | bytearray) -> tuple[ProxyData, int] | None:
    head = bytes(buf[:V2_PREAMBLE_LENGTH])
    _check_signature(head, V2_SIGNATURE, "v2")
    if len(head) > 12:
        _v2_command(head[12])
    if len(head) > 13:
        family, protocol = _v2_family_protocol(head[13])
    if len(head) < V2_PREAMBLE_LENGTH:
        return None
    declared = int.from_bytes(head[14:16], "big")
    _check_v2_length(declared, family, protocol)
    total = V2_PREAMBLE_LENGTH + declared
    if len(buf) < total:
        return None
    return _v2_from_header(bytes(buf[:total])), total


def _v2_command(byte: int) -> V2_CMD:
    if byte >> 4 != 2:
        raise ProxyError(f"PROXY v2 version is {byte >> 4} (byte 0x{byte:02X}); expected 2")
    try:
        return V2_CMD(byte & 0x0F)
    except ValueError:
        raise ProxyError(
            f"PROXY v2 command is {byte & 0x0F} (byte 0x{byte:02X});"
            " expected 0 (LOCAL) or 1 (PROXY)"
        ) from None


def _v2_family_protocol(byte: int) -> tuple[AF, PROTO]:
    try:
        family = AF(byte >> 4)
    except ValueError:
        raise ProxyError(
            f"PROXY v2 address family is {byte >> 4} (byte 0x{byte:02X});"
            " expected 0 (UNSPEC), 1 (INET), 2 (INET6) or 3 (UNIX)"
        ) from None
    try:
        protocol = PROTO(byte & 0x0F)
    except ValueError:
        raise ProxyError(
            f"PROXY v2 protocol is {byte & 0x0F} (byte 0x{byte:02X});"
            " expected 0 (UNSPEC), 1 (STREAM) or 2 (DGRAM)"
        ) from None
    return family, protocol


def _address_block_length(family: AF, protocol: PROTO) -> int | None:
    """Size of the address block, or ``None`` when it is unspecified.

    With an UNSPEC family or protocol the spec says to ignore the address
    information, whose layout is then unknown.
    """
    if family is AF.UNSPEC or protocol is PROTO.UNSPEC:
        return None
    return _ADDRESS_BLOCK[family]


def _check_v2_length(declared: int, family: AF, protocol: PROTO) -> None:
    if declared > MAX_V2_DECLARED_LENGTH:
        raise ProxyError(
            f"PROXY v2 length is {declared}; expected at most {MAX_V2_DECLARED_LENGTH}"
        )
    block = _address_block_length(family, protocol)
    if block is not None and declared < block:
        raise ProxyError(
            f"PROXY v2 length is {declared}; expected at least {block}"
            f" for the {family.name} address block"
        )


def _v2_from_header(raw: bytes) -> ProxyData:
    command = _v2_command(raw[12])
    family, protocol = _v2_family_protocol(raw[13])
    data = ProxyData(
        version=2, command=command, family=family, protocol=protocol, whole_raw=bytearray(raw)
    )
    block = _address_block_length(family, protocol)
    if block is None:
        _v2_unspecified_tail(data, raw)
        return data
    tlv_start = V2_PREAMBLE_LENGTH + block
    if command is V2_CMD.PROXY:
        _v2_addresses(data, family, raw[V2_PREAMBLE_LENGTH:tlv_start])
    data.rest = raw[tlv_start:]
    if data.rest:
        data.tlv_start = tlv_start
        data._tlv = ProxyTLV.from_raw(data.rest)
        _check_crc32c(raw, tlv_start, data._tlv)
    return data


def _v2_unspecified_tail(data: ProxyData, raw: bytes) -> None:
    """Keep the payload of an UNSPEC header; check it only if it reads as TLVs.

    The spec lets a sender put address information of an unknown layout
    there and tells the receiver to ignore it, so it cannot be refused.
    """
    data.rest = raw[V2_PREAMBLE_LENGTH:]
    if not data.rest:
        return
    try:
        tlv = ProxyTLV.from_raw(data.rest)
    except MalformedTLV:
        return
    data.tlv_start = V2_PREAMBLE_LENGTH
    data._tlv = tlv
    _check_crc32c(raw, V2_PREAMBLE_LENGTH, tlv)


def _v2_addresses(data: ProxyData, family: AF, block: bytes) -> None:
    if family is AF.UNIX:
        data.src_addr = _unix_path(block[:108])
        data.dst_addr = _unix_path(block[108:216])
        return
    ip_type = ipaddress.IPv4Address if family is AF.INET else ipaddress.IPv6Address
    size = _IP_LENGTH[family]
    data.src_addr = ip_type(block[:size])
    data.dst_addr = ip_type(block[size : 2 * size])
    data.src_port = int.from_bytes(block[2 * size : 2 * size + 2], "big")
    data.dst_port = int.from_bytes(block[2 * size + 2 : 2 * size + 4], "big")


def _unix_path(raw: bytes) -> str:
    """Decode a 108-byte ``sun_path``: NUL-terminated, or abstract (leading NUL)."""
    if raw[:1] == b"\x00":
        name = raw[1:].rstrip(b"\x00")
        return "\x00" + name.decode("utf-8", "surrogateescape") if name else ""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _check_crc32c(raw: bytes, tlv_start: int, tlv: ProxyTLV | None) -> None:
    """Check the CRC32C TLV: the checksum of the header with its own value zeroed."""
    if tlv is None or "CRC32C" not in tlv.tlv_loc:
        return
    received = tlv["CRC32C"]
    if len(received) != 4:
        raise ProxyError(f"PROXY v2 CRC32C TLV is {len(received)} bytes long; expected 4")
    start = tlv_start + tlv.tlv_loc["CRC32C"] + 3
    computed = crc32c(raw[:start] + b"\x00\x00\x00\x00" + raw[start + 4 :])
    if computed != int.from_bytes(received, "big"):
        raise ProxyError(
            f"PROXY v2 CRC32C is 0x{int.from_bytes(received, 'big'):08X};"
            f" expected 0x{computed:08X} (computed over the header)"
        )


# endregion
# region Trusted proxies


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Turn CIDR strings into network objects, once, for `is_trusted`.

    Args:
        networks: CIDR strings (``"10.0.0.0/8"``, ``"::1/128"``, a bare
            address for one host) or network objects.

    Returns:
        The networks.

    Raises:
        ValueError: A string is not a network (host bits set count as an error,
            since ``10.0.0.1/8`` is most likely a typo).
    """
    parsed: list[IPNetwork] = []
    for network in networks:
        if not isinstance(network, str):
            parsed.append(network)
            continue
        try:
            parsed.append(ipaddress.ip_network(network))
        except ValueError as exc:
            raise ValueError(
                f"trusted network {network!r} is invalid ({exc});"
                " expected CIDR notation such as '10.0.0.0/8'"
            ) from None
    return tuple(parsed)


def is_trusted(peer_ip: str, networks: Iterable[str | IPNetwork]) -> bool:
    """Tell whether a directly connected peer may send a PROXY header.

    Args:
        peer_ip: The peer's address as the socket reports it. An IPv4-mapped
            IPv6 address (``::ffff:10.0.0.1``) also matches IPv4 networks.
        networks: Trusted networks in CIDR notation (or from `parse_networks`).

    Returns:
        ``True`` when the address is in one of the networks; ``False`` for an
        address that does not parse (a UNIX socket path, an empty string).

    Raises:
        ValueError: A network string is invalid.
    """
    nets = parse_networks(networks)
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in net
        for net in nets
        for candidate in candidates
        if candidate.version == net.version
    )


# endregion
# region Compatibility: reading a header from a stream, as aiosmtpd's API does
#
# The SMTP class feeds its own buffer to parse_header; these two names are for
# code written against aiosmtpd, which reads the header from a stream reader.


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


# endregion
