"""PROXY v2: the binary header, its address block and the CRC32C check."""

from __future__ import annotations

import ipaddress

from ._data import ProxyData
from ._tlv import ProxyTLV, crc32c
from ._types import (
    AF,
    MAX_V2_DECLARED_LENGTH,
    PROTO,
    V2_CMD,
    V2_PREAMBLE_LENGTH,
    V2_SIGNATURE,
    MalformedTLV,
    ProxyError,
    _check_signature,
)

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
