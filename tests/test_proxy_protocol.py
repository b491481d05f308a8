"""Tests for smtpkit.proxy_protocol: tables, properties, and real HAProxy headers."""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit.proxy_protocol import (
    AF,
    MAX_V1_LENGTH,
    MAX_V2_DECLARED_LENGTH,
    PROTO,
    V2_CMD,
    V2_SIGNATURE,
    MalformedTLV,
    ProxyData,
    ProxyError,
    ProxyTLV,
    UnknownTypeTLV,
    crc32c,
    is_trusted,
    parse_header,
    parse_networks,
)

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
PROPERTY = settings(max_examples=200, deadline=None)

# region Test-side encoder (written from the spec, independent of the parser)


def tlv(tlv_type: int, value: bytes) -> bytes:
    return bytes([tlv_type]) + struct.pack("!H", len(value)) + value


def ssl_tlv(client: int, verify: int, subs: bytes) -> bytes:
    return tlv(0x20, bytes([client]) + struct.pack("!I", verify) + subs)


def v2(
    command: int = 1,
    famproto: int = 0x11,
    addresses: bytes = b"",
    tlvs: bytes = b"",
    *,
    crc: bool = False,
    length: int | None = None,
) -> bytes:
    """Build a v2 header; with ``crc`` a CRC32C TLV goes first and is filled in."""
    if crc:
        tlvs = tlv(0x03, b"\x00" * 4) + tlvs
    payload = addresses + tlvs
    declared = len(payload) if length is None else length
    header = V2_SIGNATURE + bytes([0x20 | command, famproto]) + struct.pack("!H", declared)
    header += payload
    if crc:
        at = len(header) - len(tlvs) + 3
        header = header[:at] + struct.pack("!I", crc32c(header)) + header[at + 4 :]
    return header


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return IPv4(src).packed + IPv4(dst).packed + struct.pack("!HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return IPv6(src).packed + IPv6(dst).packed + struct.pack("!HH", sport, dport)


def unix(src: bytes, dst: bytes) -> bytes:
    return src.ljust(108, b"\x00") + dst.ljust(108, b"\x00")


INET4_BLOCK = inet4("192.0.2.1", "198.51.100.7", 40000, 25)
SSL_SAMPLE = ssl_tlv(0x07, 0, tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example"))

# endregion
# region Tables


def fields(data: ProxyData) -> dict[str, Any]:
    return {
        "version": data.version,
        "command": data.command,
        "family": data.family,
        "protocol": data.protocol,
        "src_addr": data.src_addr,
        "dst_addr": data.dst_addr,
        "src_port": data.src_port,
        "dst_port": data.dst_port,
        "rest": data.rest,
    }


def expect(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(
        ("command", "src_addr", "dst_addr", "src_port", "dst_port"), None
    )
    base["rest"] = b""
    base.update(kw)
    return base


V1_TCP4 = {"version": 1, "family": AF.INET, "protocol": PROTO.STREAM}
V1_TCP6 = {"version": 1, "family": AF.INET6, "protocol": PROTO.STREAM}
V1_UNKNOWN = {"version": 1, "family": AF.UNSPEC, "protocol": PROTO.UNSPEC}
V2_PROXY = {"version": 2, "command": V2_CMD.PROXY}

VALID = [
    pytest.param(
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        expect(
            **V1_TCP4,
            src_addr=IPv4("192.168.0.1"),
            dst_addr=IPv4("192.168.0.11"),
            src_port=56324,
            dst_port=443,
        ),
        id="v1-tcp4",
    ),
    pytest.param(
        b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n",
        expect(
            **V1_TCP4,
            src_addr=IPv4("255.255.255.255"),
            dst_addr=IPv4("0.0.0.0"),
            src_port=65535,
            dst_port=0,
        ),
        id="v1-tcp4-extremes",
    ),
    pytest.param(
        b"PROXY TCP6 2001:db8::1 2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 42300 25\r\n",
        expect(
            **V1_TCP6,
            src_addr=IPv6("2001:db8::1"),
            dst_addr=IPv6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            src_port=42300,
            dst_port=25,
        ),
        id="v1-tcp6",
    ),
    pytest.param(
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        expect(
            **V1_TCP6,
            src_addr=IPv6("::ffff:192.0.2.1"),
            dst_addr=IPv6("::1"),
            src_port=1,
            dst_port=2,
        ),
        id="v1-tcp6-v4-mapped",
    ),
    pytest.param(b"PROXY UNKNOWN\r\n", expect(**V1_UNKNOWN), id="v1-unknown-short"),
    pytest.param(
        b"PROXY UNKNOWN whatever the proxy \x01 says\r\n",
        expect(**V1_UNKNOWN, rest=b" whatever the proxy \x01 says"),
        id="v1-unknown-rest-ignored",
    ),
    pytest.param(
        v2(1, 0x11, INET4_BLOCK),
        expect(
            **V2_PROXY,
            family=AF.INET,
            protocol=PROTO.STREAM,
            src_addr=IPv4("192.0.2.1"),
            dst_addr=IPv4("198.51.100.7"),
            src_port=40000,
            dst_port=25,
        ),
        id="v2-tcp4",
    ),
    pytest.param(
        v2(1, 0x22, inet6("2001:db8::2", "2001:db8::25", 5353, 53)),
        expect(
            **V2_PROXY,
            family=AF.INET6,
            protocol=PROTO.DGRAM,
            src_addr=IPv6("2001:db8::2"),
            dst_addr=IPv6("2001:db8::25"),
            src_port=5353,
            dst_port=53,
        ),
        id="v2-udp6",
    ),
    pytest.param(
        v2(1, 0x31, unix(b"/run/client.sock", b"/run/smtp.sock")),
        expect(
            **V2_PROXY,
            family=AF.UNIX,
            protocol=PROTO.STREAM,
            src_addr="/run/client.sock",
            dst_addr="/run/smtp.sock",
        ),
        id="v2-unix-stream",
    ),
    pytest.param(
        v2(1, 0x32, unix(b"\x00abstract", b"/run/smtp.sock")),
        expect(
            **V2_PROXY,
            family=AF.UNIX,
            protocol=PROTO.DGRAM,
            src_addr="\x00abstract",
            dst_addr="/run/smtp.sock",
        ),
        id="v2-unix-abstract",
    ),
    pytest.param(
        v2(1, 0x11, INET4_BLOCK, tlv(0x02, b"mx.example.org")),
        expect(
            **V2_PROXY,
            family=AF.INET,
            protocol=PROTO.STREAM,
            src_addr=IPv4("192.0.2.1"),
            dst_addr=IPv4("198.51.100.7"),
            src_port=40000,
            dst_port=25,
            rest=tlv(0x02, b"mx.example.org"),
        ),
        id="v2-tcp4-authority",
    ),
    pytest.param(
        v2(0, 0x00),
        expect(version=2, command=V2_CMD.LOCAL, family=AF.UNSPEC, protocol=PROTO.UNSPEC),
        id="v2-local-health-check",
    ),
    pytest.param(
        v2(0, 0x11, INET4_BLOCK),
        expect(version=2, command=V2_CMD.LOCAL, family=AF.INET, protocol=PROTO.STREAM),
        id="v2-local-addresses-ignored",
    ),
    pytest.param(
        v2(1, 0x00, b"opaque address info"),
        expect(**V2_PROXY, family=AF.UNSPEC, protocol=PROTO.UNSPEC, rest=b"opaque address info"),
        id="v2-unspec-payload-kept",
    ),
    pytest.param(
        v2(1, 0x10, INET4_BLOCK),
        expect(**V2_PROXY, family=AF.INET, protocol=PROTO.UNSPEC, rest=INET4_BLOCK),
        id="v2-inet-unspec-protocol",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_header(raw: bytes, expected: dict[str, Any]) -> None:
    result = parse_header(raw + b"EHLO client.example\r\n")
    assert result is not None
    data, consumed = result
    assert consumed == len(raw)
    assert fields(data) == expected
    assert data.whole_raw == raw
    assert data.valid
    assert data
    assert data.error == ""


V1_BAD = [
    (b"GET ", "starts with b'GET '"),
    (b"\x16\x03\x01", "starts with"),
    (b"PROXYTCP4", "v1 signature"),
    (b"proxy ", "starts with"),
    (b"PROXY TCP5", "protocol is b'TCP5'"),
    (b"PROXY tcp4 ", "protocol is b'tcp4'"),
    (b"PROXY UDP4 ", "protocol is b'UDP4'"),
    (b"PROXY UNKNOWNX", "protocol is b'UNKNOWNX'"),
    (b"PROXY  TCP4", "protocol is b''"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF"),
    (b"PROXY UNKNOWN\n", "bare LF"),
    (b"PROXY TCP4 1.2.3.4\r5.6.7.8", "CR not followed by LF"),
    (b"PROXY UNKNOWN \r \r\n", "CR not followed by LF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR not followed by LF"),
    (b"PROXY TCP4 ::1 ", "source address b'::1'"),
    (b"PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n", "destination address b'2001:db8::1'"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address b'1.2.3.4'"),
    (b"PROXY TCP4 01.2.3.4", "source address b'01.2.3.4'"),
    (b"PROXY TCP4 256.", "source address b'256.'"),
    (b"PROXY TCP4 1.2.3.4.5", "source address"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address b'1.2.3'"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "source address"),
    (b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "source address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01", "source port b'01'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536", "source port b'65536'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "destination port b'-2'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "destination port b'99999'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port b'\\+1'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", "5 fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "5 fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "3 fields"),
    (b"PROXY TCP4 1.2.3.4  ", "destination address b''"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "5 fields"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "5 fields"),
    (b"PROXY \r\n", "protocol is b''"),
]


@pytest.mark.parametrize(("raw", "message"), V1_BAD)
def test_invalid_v1_raises_at_once(raw: bytes, message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        parse_header(raw)


def test_v1_line_length_limit() -> None:
    longest = b"PROXY UNKNOWN " + b"f" * (MAX_V1_LENGTH - 16) + b"\r\n"
    assert len(longest) == MAX_V1_LENGTH
    result = parse_header(longest + b"QUIT\r\n")
    assert result is not None and result[1] == MAX_V1_LENGTH
    assert parse_header(longest[:-1]) is None  # 106 bytes ending in CR: still possible
    assert parse_header(longest[:-2]) is None
    too_long = b"PROXY UNKNOWN " + b"f" * (MAX_V1_LENGTH - 15) + b"\r\n"
    with pytest.raises(ProxyError, match="no CRLF within 107 bytes"):
        parse_header(too_long[:MAX_V1_LENGTH])
    with pytest.raises(ProxyError, match="no CRLF within 107 bytes"):
        parse_header(too_long)


V2_PREFIX_OK = V2_SIGNATURE + b"\x21\x11"

V2_BAD = [
    (V2_SIGNATURE[:5] + b"X", "v2 signature"),
    (V2_SIGNATURE[:-1] + b"\r", "v2 signature"),
    (V2_SIGNATURE + b"\x11", "version is 1"),
    (V2_SIGNATURE + b"\x31", "version is 3"),
    (V2_SIGNATURE + b"\x22", "command is 2"),
    (V2_SIGNATURE + b"\x2f", "command is 15"),
    (V2_SIGNATURE + b"\x21\x41", "address family is 4"),
    (V2_SIGNATURE + b"\x21\x13", "protocol is 3"),
    (V2_SIGNATURE + b"\x20\xf0", "address family is 15"),
    (V2_PREFIX_OK + b"\x00\x0b", "length is 11; expected at least 12 for the INET"),
    (V2_SIGNATURE + b"\x21\x21\x00\x0c", "length is 12; expected at least 36 for the INET6"),
    (V2_SIGNATURE + b"\x21\x31\x00\xd7", "length is 215; expected at least 216 for the UNIX"),
    (V2_PREFIX_OK + struct.pack("!H", MAX_V2_DECLARED_LENGTH + 1), "at most 4312"),
    (V2_SIGNATURE + b"\x20\x00\xff\xff", "length is 65535"),
    (v2(1, 0x11, INET4_BLOCK, b"\x02\x00"), "truncated: 2 byte"),
    (v2(1, 0x11, INET4_BLOCK, b"\x02\x00\x05abc"), r"0x02 \(AUTHORITY\) at offset 0 declares 5"),
    (
        v2(1, 0x11, INET4_BLOCK, tlv(0x04, b"") + ssl_tlv(1, 0, b"\x21\x00\x09TLSv1")),
        r"0x21 \(SSL_VERSION\) at offset 11 declares 9",
    ),
    (v2(1, 0x11, INET4_BLOCK, tlv(0x20, b"\x01\x00")), "SSL TLV value at offset 3 is 2 bytes"),
    (v2(1, 0x11, INET4_BLOCK, tlv(0x21, b"TLSv1.3")), "outside the SSL TLV"),
    (v2(1, 0x11, INET4_BLOCK, ssl_tlv(1, 0, tlv(0x02, b"x"))), "inside the SSL TLV"),
    (v2(1, 0x11, INET4_BLOCK, tlv(0x03, b"\x00\x00\x00")), "CRC32C TLV is 3 bytes"),
    (v2(1, 0x11, INET4_BLOCK, tlv(0x03, b"\x01\x02\x03\x04")), "CRC32C is 0x01020304"),
    (v2(1, 0x11, INET4_BLOCK, tlv(0x03, b"\0" * 4) + tlv(0x03, b"\0" * 4)), "repeated"),
    (v2(1, 0x00, tlv(0x03, b"\x01\x02\x03\x04")), "CRC32C is 0x01020304"),
]


@pytest.mark.parametrize(("raw", "message"), V2_BAD)
def test_invalid_v2_raises_at_once(raw: bytes, message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        parse_header(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"P",
        b"PRO",
        b"PROXY",
        b"PROXY ",
        b"PROXY T",
        b"PROXY UNK",
        b"PROXY UNKNOWN",
        b"PROXY UNKNOWN anything at all",
        b"PROXY UNKNOWN\r",
        b"PROXY TCP4",
        b"PROXY TCP4 ",
        b"PROXY TCP4 1",
        b"PROXY TCP4 192.168.0.",
        b"PROXY TCP4 192.168.0.1 ",
        b"PROXY TCP4 192.168.0.1 10.0.0.25",
        b"PROXY TCP4 192.168.0.1 10.0.0.25 0",
        b"PROXY TCP4 192.168.0.1 10.0.0.25 6553",
        b"PROXY TCP4 192.168.0.1 10.0.0.25 65535 2",
        b"PROXY TCP4 192.168.0.1 10.0.0.25 65535 25\r",
        b"PROXY TCP6 2001:db8:",
        V2_SIGNATURE[:1],
        V2_SIGNATURE[:11],
        V2_SIGNATURE,
        V2_PREFIX_OK,
        V2_PREFIX_OK + b"\x00",
        V2_PREFIX_OK + b"\x00\x0c",
        v2(1, 0x11, INET4_BLOCK)[:-1],
        v2(1, 0x31, unix(b"/a", b"/b"), length=216 + 4096)[:-1],
    ],
)
def test_incomplete_returns_none(raw: bytes) -> None:
    assert parse_header(raw) is None
    assert parse_header(bytearray(raw)) is None


def test_bytearray_input_and_consumed() -> None:
    raw = v2(1, 0x11, INET4_BLOCK, tlv(0x05, b"id-1"))
    result = parse_header(bytearray(raw + b"MAIL FROM:<>\r\n"))
    assert result is not None
    data, consumed = result
    assert consumed == len(raw)
    assert data.whole_raw == bytearray(raw)
    assert isinstance(data.whole_raw, bytearray)
    assert isinstance(data.rest, bytes)
    assert data.tlv_start == 16 + 12
    assert data.tlv == {"UNIQUE_ID": b"id-1"}


def test_v2_tlvs_ssl_and_crc() -> None:
    tlvs = tlv(0x02, b"mx.example.org") + SSL_SAMPLE + tlv(0x30, b"blue") + tlv(0xE1, b"mine")
    raw = v2(1, 0x11, INET4_BLOCK, tlvs, crc=True)
    result = parse_header(raw)
    assert result is not None
    data = result[0]
    assert data.tlv is not None
    assert data.tlv == {
        "CRC32C": raw[31:35],
        "AUTHORITY": b"mx.example.org",
        "SSL": True,
        "SSL_CLIENT": 7,
        "SSL_VERIFY": 0,
        "SSL_VERSION": b"TLSv1.3",
        "SSL_CN": b"client.example",
        "NETNS": b"blue",
        "xE1": b"mine",
    }
    assert data.tlv.tlv_loc["AUTHORITY"] == 7
    # Offsets are relative to the TLV block, sub-TLVs included.
    ssl_version_at = data.tlv.tlv_loc["SSL_VERSION"]
    assert data.rest[ssl_version_at : ssl_version_at + 10] == tlv(0x21, b"TLSv1.3")
    assert data.tlv.SSL_CN == b"client.example"
    assert data.tlv.ALPN is None


@pytest.mark.parametrize("index", [16, 20, 27, 31, 34, 40, -1])
def test_v2_crc_detects_corruption(index: int) -> None:
    raw = bytearray(v2(1, 0x11, INET4_BLOCK, tlv(0x02, b"mx.example.org"), crc=True))
    assert parse_header(raw) is not None
    raw[index] ^= 0x01
    with pytest.raises(ProxyError, match="CRC32C is 0x"):
        parse_header(raw)


def test_v2_unspec_payload_that_reads_as_tlvs_is_decoded() -> None:
    raw = v2(0, 0x00, tlv(0x05, b"hc-1"), crc=True)
    result = parse_header(raw)
    assert result is not None
    data = result[0]
    assert data.command is V2_CMD.LOCAL
    assert data.tlv is not None and data.tlv.UNIQUE_ID == b"hc-1"
    assert data.tlv_start == 16


def test_v2_local_keeps_tlvs_after_address_block() -> None:
    raw = v2(0, 0x21, inet6("::1", "::2", 1, 2), tlv(0x01, b"smtp"))
    result = parse_header(raw)
    assert result is not None
    data = result[0]
    assert data.src_addr is None and data.dst_addr is None and data.src_port is None
    assert data.rest == tlv(0x01, b"smtp")
    assert data.tlv is not None and data.tlv.ALPN == b"smtp"


# endregion
# region ProxyTLV and ProxyData API


TLV_BLOCK = tlv(0x02, b"mx.example.org") + tlv(0x05, b"id-7") + SSL_SAMPLE


def test_proxy_tlv_from_raw_and_attributes() -> None:
    parsed = ProxyTLV.from_raw(TLV_BLOCK)
    assert parsed is not None
    assert parsed.AUTHORITY == b"mx.example.org"
    assert parsed["UNIQUE_ID"] == b"id-7"
    assert "ALPN" not in parsed
    assert parsed.ALPN is None
    assert parsed.same_attribs(AUTHORITY=b"mx.example.org", SSL=True, SSL_VERSION=b"TLSv1.3")
    assert not parsed.same_attribs(SSL=False)
    assert not parsed.same_attribs(NETNS=b"x")
    with pytest.raises(ValueError, match=r"mismatch:AUTHORITY actual=b'mx.example.org'"):
        parsed.same_attribs(_raises=True, AUTHORITY=b"other")
    with pytest.raises(KeyError, match="notfound:NETNS"):
        parsed.same_attribs(_raises=True, NETNS=b"x")
    with pytest.raises(AttributeError):
        _ = parsed._private
    assert ProxyTLV.from_raw(b"") is None


def test_proxy_tlv_equality_ignores_order() -> None:
    one = ProxyTLV.from_raw(tlv(0x02, b"a") + tlv(0x01, b"b"))
    two = ProxyTLV.from_raw(tlv(0x01, b"b") + tlv(0x02, b"a"))
    assert one is not two
    assert one == two


def test_proxy_tlv_parse_partial_and_strict() -> None:
    truncated = tlv(0x02, b"mx") + b"\x05\x00\x09id"
    values, locations = ProxyTLV.parse(truncated)
    assert values == {"AUTHORITY": b"mx"}
    assert locations == {"AUTHORITY": 0}
    with pytest.raises(MalformedTLV, match="declares 9 bytes"):
        ProxyTLV.parse(truncated, partial_ok=False)
    with pytest.raises(MalformedTLV):
        ProxyTLV.from_raw(truncated)
    bad_ssl = ssl_tlv(1, 3, tlv(0x21, b"TLSv1.2") + b"\x22\x00\x09cn")
    values, _ = ProxyTLV.parse(bad_ssl)
    assert values["SSL"] is False
    assert values["SSL_VERIFY"] == 3
    assert values["SSL_VERSION"] == b"TLSv1.2"
    assert "SSL_CN" not in values
    assert ProxyTLV.parse(tlv(0xF0, b"yes"))[0] == {"xF0": b"yes"}
    with pytest.raises(UnknownTypeTLV):
        ProxyTLV.parse(tlv(0xF0, b"yes"), strict=True)


def test_malformed_tlv_is_a_proxy_error_and_runtime_error() -> None:
    assert issubclass(MalformedTLV, ProxyError)
    assert issubclass(MalformedTLV, RuntimeError)
    assert issubclass(ProxyError, ValueError)


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("ALPN", 0x01),
        ("AUTHORITY", 0x02),
        ("CRC32C", 0x03),
        ("NOOP", 0x04),
        ("UNIQUE_ID", 0x05),
        ("SSL", 0x20),
        ("SSL_VERSION", 0x21),
        ("SSL_CN", 0x22),
        ("SSL_CIPHER", 0x23),
        ("SSL_SIG_ALG", 0x24),
        ("SSL_KEY_ALG", 0x25),
        ("NETNS", 0x30),
        ("nonsense", None),
    ],
)
def test_tlv_name_to_num(name: str, number: int | None) -> None:
    assert ProxyTLV.name_to_num(name) == number
    if number is not None:
        assert ProxyTLV.PP2_TYPENAME[number] == name


def test_proxy_data_same_attribs_and_truthiness() -> None:
    data = ProxyData(version=1, family=AF.INET, protocol=PROTO.STREAM, src_port=25)
    assert data.valid and data
    assert data.same_attribs(version=1, protocol=PROTO.STREAM, src_port=25, src_addr=None)
    assert not data.same_attribs(src_port=26)
    assert not data.same_attribs(no_such_field=1)
    with pytest.raises(ValueError, match="mismatch:src_port actual=25 expect=26"):
        data.same_attribs(_raises=True, src_port=26)
    with pytest.raises(KeyError, match="notfound:no_such_field"):
        data.same_attribs(_raises=True, no_such_field=1)
    assert data.with_error("spoofed") is data
    assert not data.valid and not data
    assert not ProxyData(version=None, protocol=PROTO.STREAM)
    assert not ProxyData(version=2)


def test_proxy_data_tlv_is_lazy_and_tolerant() -> None:
    data = ProxyData(version=2)
    assert data.tlv is None
    data.rest = b"not tlvs"
    assert data.tlv is None
    data.rest = TLV_BLOCK
    assert data.tlv is not None and data.tlv.UNIQUE_ID == b"id-7"
    v1 = ProxyData(version=1, rest=TLV_BLOCK)
    assert v1.tlv is None


def test_enum_names() -> None:
    assert [member.name for member in AF] == ["UNSPEC", "INET", "INET6", "UNIX"]
    assert AF.IP4 is AF.INET and AF.IP6 is AF.INET6
    assert [(m.name, m.value) for m in PROTO] == [("UNSPEC", 0), ("STREAM", 1), ("DGRAM", 2)]
    assert [(m.name, m.value) for m in V2_CMD] == [("LOCAL", 0), ("PROXY", 1)]


# endregion
# region CRC32C and trusted networks


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_known_values(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert crc32c(data[10:], crc32c(data[:10])) == expected


@pytest.mark.parametrize(
    ("peer", "networks", "trusted"),
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("11.1.2.3", ["10.0.0.0/8"], False),
        ("127.0.0.1", ["10.0.0.0/8", "127.0.0.1"], True),
        ("::1", ["127.0.0.0/8"], False),
        ("::1", ["::1/128"], True),
        ("::ffff:10.0.0.9", ["10.0.0.0/24"], True),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("2001:db9::5", ["2001:db8::/32"], False),
        ("/run/smtp.sock", ["0.0.0.0/0"], False),
        ("", ["0.0.0.0/0"], False),
        ("10.1.2.3", [], False),
    ],
)
def test_is_trusted(peer: str, networks: list[str], trusted: bool) -> None:
    assert is_trusted(peer, networks) is trusted
    assert is_trusted(peer, parse_networks(networks)) is trusted


@pytest.mark.parametrize("network", ["10.0.0.1/8", "10.0.0.0/33", "localhost", ""])
def test_bad_trusted_network_names_the_value(network: str) -> None:
    with pytest.raises(ValueError, match=f"trusted network {network!r} is invalid"):
        is_trusted("10.0.0.1", [network])


# endregion
# region Properties


@dataclasses.dataclass
class Built:
    raw: bytes
    fields: dict[str, Any]
    tlv: dict[str, Any] | None


ports = st.integers(0, 65535)
values = st.binary(max_size=40)
TOP_LEVEL_TYPES = [0x01, 0x02, 0x04, 0x05, 0x30, *range(0xE0, 0xF0)]


def _v6_text(address: IPv6) -> st.SearchStrategy[str]:
    return st.sampled_from([str(address), address.exploded, str(address).upper()])


@st.composite
def v1_headers(draw: st.DrawFn) -> Built:
    kind = draw(st.sampled_from(["TCP4", "TCP6", "UNKNOWN"]))
    if kind == "UNKNOWN":
        tail = draw(st.binary(max_size=MAX_V1_LENGTH - 16).filter(lambda b: b"\r" not in b))
        tail = tail.replace(b"\n", b"")
        rest = b" " + tail if draw(st.booleans()) else b""
        return Built(b"PROXY UNKNOWN" + rest + b"\r\n", expect(**V1_UNKNOWN, rest=rest), None)
    version = 4 if kind == "TCP4" else 6
    src, dst = draw(st.ip_addresses(v=version)), draw(st.ip_addresses(v=version))
    texts = [str(src), str(dst)]
    if version == 6:
        texts = [draw(_v6_text(src)), draw(_v6_text(dst))]  # type: ignore[arg-type]
    sport, dport = draw(ports), draw(ports)
    line = f"PROXY {kind} {texts[0]} {texts[1]} {sport} {dport}\r\n".encode()
    base = V1_TCP4 if version == 4 else V1_TCP6
    expected = expect(**base, src_addr=src, dst_addr=dst, src_port=sport, dst_port=dport)
    return Built(line, expected, None)


@st.composite
def tlv_blocks(draw: st.DrawFn) -> tuple[list[bytes], dict[str, Any]]:
    """Well-formed TLVs (without CRC32C) and the ProxyTLV they must decode to."""
    chunks: list[bytes] = []
    expected: dict[str, Any] = {}
    for tlv_type in draw(st.lists(st.sampled_from(TOP_LEVEL_TYPES), unique=True, max_size=4)):
        value = draw(values)
        chunks.append(tlv(tlv_type, value))
        expected[ProxyTLV.PP2_TYPENAME.get(tlv_type, f"x{tlv_type:02X}")] = value
    if draw(st.booleans()):
        client, verify = draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1))
        subs = b""
        for sub in draw(st.lists(st.sampled_from(range(0x21, 0x26)), unique=True, max_size=5)):
            value = draw(values)
            subs += tlv(sub, value)
            expected[ProxyTLV.PP2_TYPENAME[sub]] = value
        chunks.append(ssl_tlv(client, verify, subs))
        expected.update(SSL=True, SSL_CLIENT=client, SSL_VERIFY=verify)
    return draw(st.permutations(chunks)), expected


def _with_crc(head: bytes, chunks: list[bytes], position: int) -> tuple[bytes, int]:
    """Insert a CRC32C TLV at ``position``; return the header and where its value is."""
    chunks = [*chunks[:position], tlv(0x03, b"\0" * 4), *chunks[position:]]
    tlvs = b"".join(chunks)
    zeroed = head[:14] + struct.pack("!H", len(head) - 16 + len(tlvs)) + head[16:] + tlvs
    at = len(head) + sum(len(chunk) for chunk in chunks[:position]) + 3
    return zeroed[:at] + struct.pack("!I", crc32c(zeroed)) + zeroed[at + 4 :], at


@st.composite
def v2_addresses(draw: st.DrawFn, family: AF) -> tuple[bytes, dict[str, Any]]:
    if family is AF.UNIX:
        paths = st.text(
            st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
            min_size=1,
            max_size=30,
        )
        src, dst = draw(paths), draw(paths)
        if draw(st.booleans()):
            src = "\x00" + src
        block = unix(src.encode(), dst.encode())
        return block, {"src_addr": src, "dst_addr": dst}
    src, dst = (
        draw(st.ip_addresses(v=4 if family is AF.INET else 6)),
        draw(st.ip_addresses(v=4 if family is AF.INET else 6)),
    )
    sport, dport = draw(ports), draw(ports)
    block = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    return block, {"src_addr": src, "dst_addr": dst, "src_port": sport, "dst_port": dport}


@st.composite
def v2_headers(draw: st.DrawFn) -> Built:
    command = draw(st.sampled_from(V2_CMD))
    family = draw(st.sampled_from(AF))
    protocol = draw(st.sampled_from(PROTO))
    specified = family is not AF.UNSPEC and protocol is not PROTO.UNSPEC
    block, addresses = draw(v2_addresses(family)) if specified else (b"", {})
    chunks, expected_tlv = draw(tlv_blocks())
    preamble = V2_SIGNATURE + bytes([0x20 | command, family << 4 | protocol])
    head = preamble + struct.pack("!H", len(block)) + block
    if draw(st.booleans()):
        raw, crc_at = _with_crc(head, chunks, draw(st.integers(0, len(chunks))))
        expected_tlv["CRC32C"] = raw[crc_at : crc_at + 4]
    else:
        tlvs = b"".join(chunks)
        raw = preamble + struct.pack("!H", len(block) + len(tlvs)) + block + tlvs
    rest = raw[len(head) :]
    if command is V2_CMD.LOCAL:
        addresses = {}
    expected = expect(
        version=2, command=command, family=family, protocol=protocol, rest=rest, **addresses
    )
    return Built(raw, expected, expected_tlv if rest else None)


valid_headers = st.one_of(v1_headers(), v2_headers())


@PROPERTY
@given(valid_headers)
def test_every_valid_header_round_trips(built: Built) -> None:
    result = parse_header(built.raw)
    assert result is not None
    data, consumed = result
    assert consumed == len(built.raw)
    assert fields(data) == built.fields
    assert data.tlv == built.tlv
    assert data.whole_raw == built.raw
    assert data.valid


@PROPERTY
@given(valid_headers)
def test_every_strict_prefix_needs_more(built: Built) -> None:
    for end in range(len(built.raw)):
        assert parse_header(built.raw[:end]) is None, built.raw[:end]


@PROPERTY
@given(valid_headers, st.binary(max_size=200))
def test_trailing_bytes_do_not_change_the_header(built: Built, trailing: bytes) -> None:
    result = parse_header(built.raw + trailing)
    assert result is not None
    data, consumed = result
    assert consumed == len(built.raw)
    assert fields(data) == built.fields


@st.composite
def damaged_headers(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(valid_headers).raw)
    for _ in range(draw(st.integers(1, 3))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=40))


any_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda b: b"PROXY " + b, st.binary(max_size=120)),
    st.builds(lambda b: V2_SIGNATURE + b, st.binary(max_size=300)),
    damaged_headers(),
)


@PROPERTY
@given(any_bytes)
def test_arbitrary_bytes_only_raise_proxy_error(buf: bytes) -> None:
    try:
        result = parse_header(buf)
    except ProxyError:
        return
    if result is not None:
        data, consumed = result
        assert 0 < consumed <= len(buf)
        assert data.valid
        assert data.whole_raw == buf[:consumed]


def _outcome(buf: bytes) -> str | int | None:
    try:
        result = parse_header(buf)
    except ProxyError:
        return "error"
    return None if result is None else result[1]


@PROPERTY
@given(any_bytes)
def test_outcome_never_changes_once_decided(buf: bytes) -> None:
    """Feeding bytes one at a time: None until an error or a header, then always that."""
    decided: str | int | None = None
    for end in range(len(buf) + 1):
        outcome = _outcome(buf[:end])
        if decided is None:
            decided = outcome
        else:
            assert outcome == decided, (buf[:end], decided, outcome)


# endregion
# region HAProxy interop


HAPROXY = shutil.which("haproxy")
SSL_OPTIONS = "crc32c,authority,unique-id,ssl,cert-cn,ssl-cipher,cert-sig,cert-key"


@contextmanager
def running_haproxy(tmp_path: Path, bind: str, server: str) -> Iterator[socket.socket]:
    """Run HAProxy on a listening socket we bound (port 0), relaying to ``server``."""
    assert HAPROXY is not None
    front = socket.create_server(("127.0.0.1", 0))
    front.set_inheritable(True)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n    maxconn 20\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n"
        "    timeout client 10s\n    timeout server 10s\n"
        f"frontend fe\n    bind fd@{front.fileno()} {bind}\n"
        "    unique-id-format conn-%rt\n    default_backend be\n"
        f"backend be\n    server s1 {server}\n"
    )
    process = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)],
        pass_fds=[front.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield front
    except BaseException:
        process.terminate()
        _, errors = process.communicate(timeout=10)
        print(errors.decode(errors="replace"))
        raise
    finally:
        front.close()
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=10)


def _read_header(backend: socket.socket, after: bytes) -> tuple[ProxyData, bytes]:
    connection, _ = backend.accept()
    with connection:
        connection.settimeout(10)
        buf = b""
        result = None
        while result is None or not buf[result[1] :].startswith(after):
            chunk = connection.recv(4096)
            assert chunk, f"connection closed after {buf!r}"
            buf += chunk
            result = parse_header(buf)
        return result[0], buf[result[1] :]


@pytest.fixture
def backend() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        yield listener


@pytest.mark.interop
@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_haproxy_plain_headers(tmp_path: Path, backend: socket.socket, option: str) -> None:
    port = backend.getsockname()[1]
    with running_haproxy(tmp_path, "", f"127.0.0.1:{port} {option}") as front:
        client = socket.create_connection(front.getsockname(), timeout=10)
        with client:
            client.sendall(b"EHLO client.example\r\n")
            data, after = _read_header(backend, b"EHLO client.example\r\n")
            client_address = client.getsockname()
            proxy_address = front.getsockname()
    assert after == b"EHLO client.example\r\n"
    assert data.version == (1 if option == "send-proxy" else 2)
    assert data.family is AF.INET and data.protocol is PROTO.STREAM
    assert (str(data.src_addr), data.src_port) == client_address
    assert (str(data.dst_addr), data.dst_port) == proxy_address


@pytest.mark.interop
@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_health_check_sends_local(tmp_path: Path, backend: socket.socket) -> None:
    port = backend.getsockname()[1]
    server = (
        f"127.0.0.1:{port} send-proxy-v2 proxy-v2-options crc32c check check-send-proxy inter 100ms"
    )
    with running_haproxy(tmp_path, "", server):
        data, after = _read_header(backend, b"")
    assert after == b""
    assert data.command is V2_CMD.LOCAL
    assert data.family is AF.UNSPEC and data.src_addr is None
    assert data.tlv is not None and "CRC32C" in data.tlv  # checked by parse_header


@pytest.mark.interop
@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_v2_tls_tlvs_and_crc(tmp_path: Path, backend: socket.socket) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_pem = tmp_path / "server.pem"
    ca_pem = tmp_path / "ca.pem"
    ca.issue_cert("mail.example.test").private_key_and_cert_chain_pem.write_to_path(server_pem)
    ca.cert_pem.write_to_path(ca_pem)
    client_cert = ca.issue_cert("client.example.test", common_name="client.example.test")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client_cert.configure_cert(context)
    bind = f"ssl crt {server_pem} ca-file {ca_pem} verify optional"
    server = f"127.0.0.1:{backend.getsockname()[1]} send-proxy-v2 proxy-v2-options {SSL_OPTIONS}"
    with running_haproxy(tmp_path, bind, server) as front:
        raw_client = socket.create_connection(front.getsockname(), timeout=10)
        with raw_client:
            client = context.wrap_socket(raw_client, server_hostname="mail.example.test")
            client.sendall(b"QUIT\r\n")
            data, after = _read_header(backend, b"QUIT\r\n")
            client_address = client.getsockname()
            cipher = client.cipher()
            client.close()
    assert after == b"QUIT\r\n"
    assert (str(data.src_addr), data.src_port) == client_address
    assert data.tlv is not None
    assert "CRC32C" in data.tlv  # and it was checked, or parse_header would have raised
    assert data.tlv.same_attribs(
        _raises=True,
        AUTHORITY=b"mail.example.test",
        SSL=True,
        SSL_VERIFY=0,
        SSL_CN=b"client.example.test",
        SSL_VERSION=cipher[1].encode() if cipher else None,
        UNIQUE_ID=b"conn-0",
    )
    assert data.tlv.SSL_CLIENT & 0x01  # PP2_CLIENT_SSL


# endregion
