"""PROXY v1: one text line, ``PROXY TCP4|TCP6|UNKNOWN ...\\r\\n``."""

from __future__ import annotations

import ipaddress
import re

from ._data import ProxyData
from ._types import AF, MAX_V1_LENGTH, PROTO, V1_SIGNATURE, IPAddress, ProxyError, _check_signature

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
