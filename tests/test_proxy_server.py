"""The PROXY protocol in the SMTP server: before the greeting, and only when configured.

The parser itself is tested in ``test_proxy_protocol.py``; these tests talk to
a real server over loopback and check what a client (or a load balancer) sees.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, RawClient, Recorder

from smtpkit._limits import TOO_MANY_CONNECTIONS
from smtpkit.config import ProxyProtocolConfig, ServerConfig
from smtpkit.proxy_protocol import AF, V2_CMD, V2_SIGNATURE, ProxyData
from smtpkit.smtp import SMTP, ConnectionLimiter, Envelope, Session

Raw = Callable[..., RawClient]

#: Long enough that a closed connection can only mean the header was refused.
PATIENT = 30.0
V1 = b"PROXY TCP4 192.0.2.10 198.51.100.1 51234 25\r\n"


def v2_header(
    *,
    command: int = 0x21,
    family: int = 0x11,
    block: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """A v2 header: version/command byte, family/protocol byte, then the block."""
    if block is None:
        block = bytes([192, 0, 2, 10, 198, 51, 100, 1]) + struct.pack("!HH", 51234, 25)
    declared = len(block) if length is None else length
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", declared) + block


class ProxyHandler(Recorder):
    """Records each ``handle_PROXY`` call and answers with ``verdict``."""

    def __init__(self, verdict: Any = True) -> None:
        super().__init__()
        self.verdict = verdict
        self.proxied: list[tuple[Any, Session, Envelope, ProxyData]] = []
        self.called = threading.Event()

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy_data: ProxyData
    ) -> Any:
        self.proxied.append((server, session, envelope, proxy_data))
        self.called.set()
        return self.verdict


def refused(client: RawClient) -> bool:
    """The server closed the connection without sending a single byte."""
    return client.closed() and client._buf == b""


# -- Accepted headers ----------------------------------------------------------


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
@pytest.mark.parametrize("header", [V1, v2_header()], ids=["v1", "v2"])
def test_greeting_waits_for_a_complete_header(server: Any, raw: Raw, header: bytes) -> None:
    handler = ProxyHandler()
    running = server(handler, proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(header[:-3])
    assert client.silent(0.3), "the server spoke before the header was complete"
    client.send(header[-3:])
    assert client.line().startswith("220 smtp.example.test ")
    assert client.command("EHLO client.test") == "250 HELP"
    server_arg, session, envelope, data = handler.proxied[0]
    assert server_arg is running.protocols[0] and isinstance(envelope, Envelope)
    assert session.proxy_data is data
    assert data.src_addr == ipaddress.ip_address("192.0.2.10") and data.src_port == 51234
    assert data.dst_addr == ipaddress.ip_address("198.51.100.1") and data.dst_port == 25
    assert session.peer[0] == HOST  # still the directly connected peer


def test_commands_sent_with_the_header_are_answered_after_the_greeting(
    server: Any, raw: Raw
) -> None:
    running = server(ProxyHandler(), proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(V1 + b"NOOP\r\nHELO client.test\r\n")
    assert client.line().startswith("220 smtp.example.test ")
    assert client.lines(2) == ["250 OK", "250 smtp.example.test"]


def test_the_proxy_data_reaches_handle_data(server: Any) -> None:
    handler = ProxyHandler()
    running = server(handler, proxy_protocol_timeout=PATIENT)
    sock = socket.create_connection((HOST, running.port), timeout=5)
    sock.sendall(v2_header())
    with smtplib.SMTP(timeout=5) as client:
        client.sock = sock
        code, _ = client.getreply()
        assert code == 220
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    data = handler.sessions[0].proxy_data
    assert data is not None and data.version == 2 and data.command is V2_CMD.PROXY
    assert data.family is AF.INET and str(data.src_addr) == "192.0.2.10"


def test_a_second_proxy_line_is_an_unknown_command(server: Any, raw: Raw) -> None:
    running = server(ProxyHandler(), proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(V1)
    client.line()
    assert client.command(V1.decode().strip()) == '500 Error: command "PROXY" not recognized'


def test_the_idle_timeout_starts_after_the_header(server: Any, raw: Raw) -> None:
    # A short header timeout must not cut off the SMTP session that follows.
    running = server(ProxyHandler(), proxy_protocol_timeout=0.5, timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(V1)
    client.line()
    assert client.silent(1.0)
    assert client.command("NOOP") == "250 OK"


# -- Refused connections --------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"EHLO client.test\r\n", id="no header"),
        pytest.param(b"PROXY TCP4 192.0.2.10 198.51.100.1 51234 25\n", id="bare LF"),
        pytest.param(b"PROXY TCP4 192.0.2.10 198.51.100.1 051234 25\r\n", id="port leading zero"),
        pytest.param(b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", id="v1 over 107 bytes"),
        pytest.param(v2_header(length=4), id="v2 too short for INET"),
        pytest.param(v2_header(length=5000, block=b"\x00" * 5000), id="v2 oversized"),
        pytest.param(v2_header(command=0x11), id="v2 version 1"),
        pytest.param(v2_header(command=0x22), id="v2 command 2"),
        pytest.param(v2_header(family=0x41), id="v2 family 4"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="not a header"),
    ],
)
def test_an_invalid_header_closes_without_a_reply(server: Any, raw: Raw, data: bytes) -> None:
    handler = ProxyHandler()
    running = server(handler, proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(data)
    assert refused(client)
    assert handler.proxied == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"PROXY TCP4 192.0.2.10", id="v1 unfinished"),
        pytest.param(v2_header()[:20], id="v2 truncated"),
    ],
)
def test_an_incomplete_header_times_out(server: Any, raw: Raw, data: bytes) -> None:
    running = server(ProxyHandler(), proxy_protocol_timeout=0.5)
    client = raw(running.port, greeting=False)
    client.send(data)
    assert refused(client)


@pytest.mark.parametrize("verdict", [False, None, 0, ""])
def test_a_falsy_handle_proxy_closes(server: Any, raw: Raw, verdict: Any) -> None:
    handler = ProxyHandler(verdict)
    running = server(handler, proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(V1)
    assert refused(client)
    assert len(handler.proxied) == 1


def test_a_handler_without_handle_proxy_gets_every_connection_refused(
    server: Any, raw: Raw
) -> None:
    running = server(Recorder(), proxy_protocol_timeout=PATIENT)
    for header in (V1, v2_header()):
        client = raw(running.port, greeting=False)
        client.send(header)
        assert refused(client)


def test_handle_proxy_that_raises_closes(server: Any, raw: Raw) -> None:
    class Failing(ProxyHandler):
        async def handle_PROXY(self, *args: Any) -> Any:
            raise RuntimeError("no database")

    running = server(Failing(), proxy_protocol_timeout=PATIENT)
    client = raw(running.port, greeting=False)
    client.send(V1)
    assert refused(client)


# -- Trusted networks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("networks", "accepted"),
    [
        (["10.0.0.0/8"], False),
        (["10.0.0.0/8", "::1/128"], False),
        (["127.0.0.0/8"], True),
        (["10.0.0.0/8", "127.0.0.1/32"], True),
    ],
)
def test_trusted_networks(server: Any, raw: Raw, networks: list[str], accepted: bool) -> None:
    handler = ProxyHandler()
    running = server(handler, proxy_protocol_timeout=PATIENT, proxy_trusted_networks=networks)
    client = raw(running.port, greeting=False)
    client.send(V1)
    if accepted:
        assert client.line().startswith("220 ")
    else:
        assert refused(client)
        assert handler.proxied == []


def test_trusted_networks_from_server_config(server: Any, raw: Raw) -> None:
    outside = ServerConfig(
        proxy_protocol=ProxyProtocolConfig(timeout=PATIENT, trusted_networks=("192.0.2.0/24",))
    )
    inside = outside.replace(**{"proxy_protocol.trusted_networks": ("127.0.0.0/8",)})
    handler = ProxyHandler()
    refusing = server(handler, config=outside)
    accepting = server(handler, config=inside)
    client = raw(refusing.port, greeting=False)
    client.send(V1)
    assert refused(client)
    client = raw(accepting.port, greeting=False)
    client.send(V1)
    assert client.line().startswith("220 ")


# -- Not configured: PROXY is just an unknown command ---------------------------


def test_without_the_setting_proxy_is_an_unknown_command(server: Any, raw: Raw) -> None:
    handler = ProxyHandler()
    running = server(handler)
    client = raw(running.port)
    assert client.command(V1.decode().strip()) == '500 Error: command "PROXY" not recognized'
    for line in ("HELO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"):
        assert client.command(line).startswith("250")
    assert client.command("DATA").startswith("354")
    assert client.command("Subject: x\r\n\r\nhi\r\n.") == "250 OK"
    assert handler.sessions[0].proxy_data is None
    assert handler.proxied == []


def test_without_the_setting_a_v2_header_ends_with_its_quit(server: Any, raw: Raw) -> None:
    # The v2 signature holds "QUIT\n" so that a server not expecting it hangs up.
    handler = ProxyHandler()
    running = server(handler)
    client = raw(running.port)
    client.send(v2_header())
    assert client.closed()
    assert client._buf.decode().split("\r\n") == [
        "500 Error: bad syntax",
        "500 Error: bad syntax",
        "501 5.5.2 Syntax error: NUL or bare CR in command",
        "221 Bye",
        "",
    ]
    assert handler.proxied == []


@pytest.mark.parametrize(
    ("networks", "error"),
    [
        (["bogus"], "trusted network 'bogus' is invalid"),
        (["10.0.0.1/8"], "trusted network '10.0.0.1/8' is invalid"),
        ("10.0.0.0/8", "must be a list of CIDR networks, not the string '10.0.0.0/8'"),
    ],
)
def test_bad_trusted_networks_fail_at_construction(networks: Any, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        SMTP(ProxyHandler(), proxy_protocol_timeout=PATIENT, proxy_trusted_networks=networks)


# -- Connection limits count the proxied client -----------------------------------


def v1_from(address: str) -> bytes:
    return f"PROXY TCP4 {address} 198.51.100.1 51234 25\r\n".encode()


def test_per_address_limit_counts_the_client_named_by_the_header(server: Any, raw: Raw) -> None:
    limiter = ConnectionLimiter(max_connections=10, max_per_ip=1)
    running = server(ProxyHandler(), proxy_protocol_timeout=PATIENT, connection_limiter=limiter)
    first, second, third = (raw(running.port, greeting=False) for _ in range(3))
    first.send(v1_from("192.0.2.1"))
    assert first.line().startswith("220 ")
    # Every connection comes from the same proxy address, 127.0.0.1.
    second.send(v1_from("192.0.2.2"))
    assert second.line().startswith("220 ")
    third.send(v1_from("192.0.2.1"))
    assert third.line() == TOO_MANY_CONNECTIONS
    assert third.closed()
    assert first.command("NOOP") == "250 OK"
    assert (limiter.count("192.0.2.1"), limiter.count("192.0.2.2"), limiter.count(HOST)) == (
        1,
        1,
        0,
    )


def test_the_global_limit_applies_before_the_header(server: Any, raw: Raw) -> None:
    limiter = ConnectionLimiter(max_connections=1, max_per_ip=1)
    running = server(ProxyHandler(), proxy_protocol_timeout=PATIENT, connection_limiter=limiter)
    first = raw(running.port, greeting=False)
    first.send(v1_from("192.0.2.1"))
    assert first.line().startswith("220 ")
    second = raw(running.port, greeting=False)
    assert second.line() == TOO_MANY_CONNECTIONS
    assert second.closed()
