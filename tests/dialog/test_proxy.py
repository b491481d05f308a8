"""The PROXY protocol header as dialogs: read before the greeting, or the connection ends.

A header is a claim about the client's address that only the application may
believe: without a ``handle_PROXY`` that says yes, from a peer in
``proxy_trusted_networks``, the connection is closed without a reply.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from dialog.harness import CLOSED, OPEN, run_dialog
from dialog.scripts import GREETING, HOSTNAME, server

V1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 25\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(source: str = "198.51.100.7") -> bytes:
    """A PROXY v2 header: PROXY command, TCP over IPv4, no TLVs."""
    addresses = bytes(map(int, source.split("."))) + bytes([192, 0, 2, 1])
    payload = addresses + struct.pack("!HH", 40000, 25)
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(payload)) + payload


class Proxied:
    """Believes (or not) every header, and keeps what it was told."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.seen: list[Any] = []

    async def handle_PROXY(self, server: Any, session: Any, envelope: Any, proxy: Any) -> bool:
        self.seen.append(proxy)
        return self.answer


@pytest.mark.parametrize("header", [V1, v2_header()], ids=["v1", "v2"])
def test_a_believed_header_gets_the_greeting(header: bytes) -> None:
    handler = Proxied()
    talk = run_dialog(
        server(handler, proxy_protocol_timeout=5),
        [(b"", []), (header, [GREETING]), (b"HELO client.test\r\n", [f"250 {HOSTNAME}"]), OPEN],
    )
    (proxy,) = handler.seen
    assert str(proxy.src_addr) == "198.51.100.7" and proxy.src_port == 40000
    assert talk.protocol.session.proxy_data is proxy


def test_commands_in_the_same_read_as_the_header_are_answered() -> None:
    run_dialog(
        server(Proxied(), proxy_protocol_timeout=5),
        [(b"", []), (V1 + b"NOOP\r\n", [GREETING, "250 OK"])],
    )


def test_a_header_in_pieces_is_joined() -> None:
    run_dialog(
        server(Proxied(), proxy_protocol_timeout=5),
        [(b"", []), (V1[:7], []), (V1[7:20], []), (V1[20:], [GREETING])],
    )


@pytest.mark.parametrize(
    ("handler", "settings", "data"),
    [
        (Proxied(False), {}, V1),  # handle_PROXY says no
        (object(), {}, V1),  # no handle_PROXY at all
        (Proxied(), {}, b"HELO client.test\r\n"),  # not a header
        (Proxied(), {}, b"PROXY TCP4 nonsense\r\n"),
        (Proxied(), {}, V2_SIGNATURE + b"\x21\x11\x00\x02\x00\x00"),  # truncated addresses
    ],
    ids=["refused", "no hook", "no header", "bad v1", "bad v2"],
)
def test_a_connection_without_a_believed_header_is_closed_silently(
    handler: Any, settings: dict[str, Any], data: bytes
) -> None:
    run_dialog(
        server(handler, proxy_protocol_timeout=5, **settings),
        [(b"", []), (data, []), CLOSED],
    )


def test_a_peer_outside_the_trusted_networks_is_closed_at_once() -> None:
    run_dialog(
        server(Proxied(), proxy_protocol_timeout=5, proxy_trusted_networks=["10.0.0.0/8"]),
        [(b"", []), CLOSED],
    )


def test_a_trusted_peer_may_send_a_header() -> None:
    run_dialog(
        server(Proxied(), proxy_protocol_timeout=5, proxy_trusted_networks=["192.0.2.0/24"]),
        [(b"", []), (V1, [GREETING])],
    )
