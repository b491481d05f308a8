"""The limits that keep a server alive when clients are careless or hostile.

Each test runs a real server on loopback and plays the client: sizes and
lengths at and just past each limit, bytes that must not be trusted, floods,
clients that never read and clients that send one byte at a time.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, RawClient, Recorder

from smtpkit._limits import TOO_MANY_CONNECTIONS
from smtpkit.config import LimitsConfig, ServerConfig
from smtpkit.smtp import SMTP, ConnectionLimiter, Envelope, Session

Raw = Callable[..., RawClient]

TOO_LONG = "500 Command line too long"
TOO_MANY_RECIPIENTS = "452 4.5.3 Error: too many recipients"
MESSAGE = "Subject: limits\r\n\r\nHello.\r\n"


def greet(client: RawClient, verb: str = "EHLO") -> None:
    client.send(f"{verb} client.test\r\n")
    assert client.reply()[-1].startswith("250")


def transaction(client: RawClient, recipients: int = 1) -> str:
    """A whole mail transaction, one command at a time; return the DATA reply."""
    assert client.command("MAIL FROM:<a@example.com>") == "250 OK"
    for number in range(recipients):
        assert client.command(f"RCPT TO:<r{number}@example.com>") == "250 OK"
    assert client.command("DATA").startswith("354")
    return client.command(MESSAGE + ".")


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes (or fail on timeout)."""
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        assert chunk, "the server closed the connection"
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.01)


# -- Recipients ---------------------------------------------------------------


@pytest.mark.parametrize(("limit", "sent"), [(100, 105), (1000, 1003)])
def test_recipients_past_the_maximum_get_452(server: Any, raw: Raw, limit: int, sent: int) -> None:
    handler = Recorder()
    running = server(handler) if limit == 1000 else server(handler, max_recipients=limit)
    client = raw(running.port)
    greet(client)
    rcpts = "".join(f"RCPT TO:<r{n}@example.com>\r\n" for n in range(sent))
    client.send("MAIL FROM:<a@example.com>\r\n" + rcpts)
    replies = client.lines(1 + sent)
    assert replies[: 1 + limit] == ["250 OK"] * (1 + limit)
    assert replies[1 + limit :] == [TOO_MANY_RECIPIENTS] * (sent - limit)
    # Those already accepted are kept: the message goes to exactly ``limit``.
    assert client.command("DATA").startswith("354")
    assert client.command(MESSAGE + ".") == "250 OK"
    assert handler.envelopes[0].rcpt_tos == [f"r{n}@example.com" for n in range(limit)]


def test_recipient_limit_is_per_transaction(server: Any, raw: Raw) -> None:
    handler = Recorder()
    running = server(handler, max_recipients=100)
    client = raw(running.port)
    greet(client)
    assert transaction(client, 100) == "250 OK"
    assert transaction(client, 100) == "250 OK"
    assert [len(envelope.rcpt_tos) for envelope in handler.envelopes] == [100, 100]


@pytest.mark.parametrize("limit", [0, 1, 99])
def test_fewer_than_100_recipients_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match=rf"max_recipients = {limit}: expected an integer >= 100"):
        SMTP(Recorder(), max_recipients=limit)


# -- Connections ----------------------------------------------------------------


def open_clients(port: int, count: int) -> list[RawClient]:
    return [RawClient(HOST, port) for _ in range(count)]


@pytest.mark.parametrize(
    ("max_connections", "max_per_ip"), [(3, None), (None, 3), (10, 3), (3, 10)]
)
def test_connections_past_a_maximum_get_421_and_others_go_on(
    server: Any, max_connections: int | None, max_per_ip: int | None
) -> None:
    limiter = ConnectionLimiter(max_connections, max_per_ip)
    handler = Recorder()
    running = server(handler, connection_limiter=limiter)
    clients = open_clients(running.port, 3)
    try:
        for client in clients:
            assert client.line().startswith("220 ")
        refused = RawClient(HOST, running.port)
        assert refused.line() == TOO_MANY_CONNECTIONS
        assert refused.closed()
        refused.close()
        # The sessions already open are not disturbed.
        for client in clients:
            greet(client, "HELO")
            assert transaction(client) == "250 OK"
        assert len(handler.envelopes) == 3
        assert limiter.total == 3
    finally:
        for client in clients:
            client.close()
    # Closed connections are forgotten, so new ones are served again.
    wait_for(lambda: limiter.total == 0, "the server to count the closed connections")
    again = RawClient(HOST, running.port)
    assert again.line().startswith("220 ")
    again.close()


def test_per_address_counts_are_separate() -> None:
    limiter = ConnectionLimiter(max_connections=3, max_per_ip=2)
    assert [limiter.acquire("192.0.2.1") for _ in range(3)] == [True, True, False]
    assert limiter.acquire("192.0.2.2")
    assert not limiter.acquire("192.0.2.3")  # the global maximum
    limiter.release("192.0.2.1")
    assert limiter.count("192.0.2.1") == 1
    assert limiter.acquire("192.0.2.3")
    assert (limiter.total, limiter.count("192.0.2.3")) == (3, 1)


def test_reassign_moves_a_connection_to_its_real_client() -> None:
    limiter = ConnectionLimiter(max_connections=5, max_per_ip=1)
    assert limiter.acquire(None) and limiter.acquire(None)  # two proxied connections
    assert limiter.reassign(None, "192.0.2.1")
    assert not limiter.reassign(None, "192.0.2.1")  # that client already has one
    assert limiter.reassign(None, "192.0.2.2")
    assert (limiter.total, limiter.count("192.0.2.1"), limiter.count("192.0.2.2")) == (2, 1, 1)
    limiter.release("192.0.2.1")
    assert (limiter.total, limiter.count("192.0.2.1")) == (1, 0)


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "10"])
def test_limiter_rejects_bad_maximums(value: Any) -> None:
    with pytest.raises(ValueError, match="max_connections must be a positive int or None"):
        ConnectionLimiter(max_connections=value)


# -- Lengths --------------------------------------------------------------------


def padded(prefix: str, length: int) -> str:
    """``prefix`` padded with ``x`` to ``length`` characters (CRLF not counted)."""
    assert len(prefix) <= length
    return prefix + "x" * (length - len(prefix))


@pytest.mark.parametrize(
    ("greeting", "settings", "mail_limit"),
    [
        ("HELO", {}, 512),  # no ESMTP: no allowance
        ("EHLO", {}, 512 + 26),  # SIZE (RFC 1870)
        ("EHLO", {"data_size_limit": None}, 512),  # no SIZE advertised
        ("EHLO", {"enable_SMTPUTF8": True}, 512 + 26 + 10),  # and SMTPUTF8 (RFC 6531)
    ],
)
def test_command_line_limits(
    server: Any, raw: Raw, greeting: str, settings: dict[str, Any], mail_limit: int
) -> None:
    running = server(**settings)
    client = raw(running.port)
    greet(client, greeting)
    assert client.command(padded("NOOP ", 512)) == "250 OK"
    assert client.command(padded("NOOP ", 513)) == TOO_LONG
    assert client.command(padded("MAIL FROM:<a@example.com> ", mail_limit)) != TOO_LONG
    assert client.command(padded("MAIL FROM:<a@example.com> ", mail_limit + 1)) == TOO_LONG
    assert client.command(padded("RCPT TO:<a@example.com> ", 513)) == TOO_LONG


def test_repeated_ehlo_never_raises_a_limit(server: Any, raw: Raw) -> None:
    running = server()
    client = raw(running.port)
    for _ in range(50):
        greet(client)
    assert client.command(padded("MAIL FROM:<a@example.com> ", 512 + 26 + 1)) == TOO_LONG
    assert client.command(padded("NOOP ", 513)) == TOO_LONG


def test_command_length_is_configurable(server: Any, raw: Raw) -> None:
    running = server(command_length_limit=1000)
    client = raw(running.port)
    assert client.command(padded("NOOP ", 1000)) == "250 OK"
    assert client.command(padded("NOOP ", 1001)) == TOO_LONG


@pytest.mark.parametrize(
    ("line_on_the_wire", "expected"),
    [
        ("x" * 998, "250 OK"),  # 1000 octets with CRLF (RFC 5321 4.5.3.1.6)
        ("." + "x" * 998, "250 OK"),  # plus a transparent dot: 1001 octets
        ("x" * 999, "250 OK"),  # 1001 octets: line_length_limit counts them all
        ("x" * 1000, "500 Line too long (see RFC5321 4.5.3.1.6)"),
        ("x" * 5000, "500 Line too long (see RFC5321 4.5.3.1.6)"),
    ],
)
def test_text_line_limit(server: Any, raw: Raw, line_on_the_wire: str, expected: str) -> None:
    running = server()
    client = raw(running.port)
    greet(client)
    client.command("MAIL FROM:<a@example.com>")
    client.command("RCPT TO:<b@example.com>")
    assert client.command("DATA").startswith("354")
    assert client.command(f"Subject: x\r\n\r\n{line_on_the_wire}\r\n.") == expected
    assert client.command("NOOP") == "250 OK"


@pytest.mark.parametrize(
    ("local_part_limit", "local", "expected"),
    [
        (64, "l" * 64, "250 OK"),
        (64, "l" * 65, "553 5.1.3 Error: malformed address"),
        (0, "l" * 200, "250 OK"),  # the SMTP class's documented default: no limit
    ],
)
def test_local_part_limit(
    server: Any, raw: Raw, local_part_limit: int, local: str, expected: str
) -> None:
    running = server(local_part_limit=local_part_limit)
    client = raw(running.port)
    greet(client)
    assert client.command(f"MAIL FROM:<{local}@example.com>") == expected
    client.command("RSET")
    client.command("MAIL FROM:<a@example.com>")
    assert client.command(f"RCPT TO:<{local}@example.com>") == expected


def address_of_path_length(length: int) -> str:
    """An address whose path, angle brackets included, is ``length`` octets."""
    domain_length = length - 2 - len("a@")
    labels = []
    while domain_length > 0:
        label = min(63, domain_length)
        if domain_length - label == 1:
            label -= 1  # never leave a lone dot
        labels.append("d" * label)
        domain_length -= label + 1
    address = "a@" + ".".join(labels)
    assert len(address) + 2 == length, (len(address), length)
    return address


@pytest.mark.parametrize(
    ("path_length", "expected"),
    [
        (256, "250 OK"),
        (257, "501 5.1.3 Path too long"),
        (2 + len("a@") + 256, "501 5.1.3 Path too long"),  # a 256-octet domain
    ],
)
def test_path_and_domain_limits(server: Any, raw: Raw, path_length: int, expected: str) -> None:
    # A 256-octet path (RFC 5321 4.5.3.1.3) holds at most a 252-octet domain,
    # so no domain over 255 octets (4.5.3.1.2) ever gets through.
    running = server()
    client = raw(running.port)
    greet(client)
    address = address_of_path_length(path_length)
    assert client.command(f"MAIL FROM:<{address}>") == expected
    client.command("RSET")
    client.command("MAIL FROM:<a@example.com>")
    assert client.command(f"RCPT TO:<{address}>") == expected


# -- Bytes ----------------------------------------------------------------------


def test_nul_in_a_command_is_refused(server: Any, raw: Raw) -> None:
    running = server()
    client = raw(running.port)
    greet(client)
    client.send(b"MAIL FROM:<a@example.com>\x00\r\n")
    assert client.line() == "501 5.5.2 Syntax error: NUL or bare CR in command"
    assert client.command("MAIL FROM:<a@example.com>") == "250 OK"


def test_a_bare_cr_never_separates_commands(server: Any, raw: Raw) -> None:
    running = server()
    client = raw(running.port)
    client.send(b"NOOP\rRSET\r\n")
    assert client.line() == "501 5.5.2 Syntax error: NUL or bare CR in command"
    assert client.silent(), "a bare CR made two commands out of one line"
    assert client.command("NOOP") == "250 OK"


def test_invalid_utf8_with_smtputf8(server: Any, raw: Raw) -> None:
    running = server(enable_SMTPUTF8=True)
    client = raw(running.port)
    greet(client)
    client.send(b"MAIL FROM:<\xff\xfe@example.com> SMTPUTF8\r\n")
    assert client.line() == "500 5.5.2 Error: invalid UTF-8 in command"
    assert client.command("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8") == "250 OK"


class Measured(SMTP):
    """Records the largest its input buffer ever was, right after each read."""

    peak_input = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(self._buf) > self.peak_input:
            self.peak_input = len(self._buf)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_an_over_long_line_is_never_buffered_whole(server: Any, raw: Raw) -> None:
    running = server(cls=Measured)
    client = raw(running.port)
    client.send(b"x" * 5_000_000 + b"\r\nNOOP\r\n")
    assert client.lines(2) == [TOO_LONG, "250 OK"]
    assert running.protocols[0].peak_input < 1_000_000


def test_an_over_long_line_after_a_slow_command(server: Any, raw: Raw) -> None:
    # While a hook runs the server stops reading; it must read on afterwards
    # even though all it had buffered was part of a line it threw away.
    class Slow(Recorder):
        async def handle_NOOP(self, *args: Any) -> str:
            await asyncio.sleep(0.3)
            return "250 slow"

    running = server(Slow(), cls=Measured)
    client = raw(running.port)
    client.send(b"NOOP\r\n" + b"x" * 5_000_000 + b"\r\nNOOP\r\n")
    assert client.lines(3) == ["250 slow", TOO_LONG, "250 slow"]
    assert running.protocols[0].peak_input < 1_000_000


# -- Unknown commands -------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 5, 10])
def test_unknown_commands_close_the_connection(server: Any, raw: Raw, limit: int) -> None:
    running = server() if limit == 5 else server(max_unknown_commands=limit)
    client = raw(running.port)
    for number in range(limit - 1):
        assert (
            client.command(f"BOGUS{number}") == f'500 Error: command "BOGUS{number}" not recognized'
        )
    assert client.command("NOOP") == "250 OK"  # known commands do not reset the count
    assert client.command("BOGUS") == "502 5.5.1 Too many unrecognized commands, goodbye."
    assert client.closed()


# -- Slow clients -----------------------------------------------------------------


def test_idle_client_gets_421_timeout(server: Any, raw: Raw) -> None:
    running = server(timeout=0.5)
    client = raw(running.port)
    greet(client)
    assert client.line() == "421 4.4.2 smtp.example.test Error: timeout exceeded"
    assert client.closed()


def test_each_command_restarts_the_idle_timeout(server: Any, raw: Raw) -> None:
    running = server(timeout=1.0)
    client = raw(running.port)
    for _ in range(6):  # 1.8 s in all, never 1 s idle
        time.sleep(0.3)
        assert client.command("NOOP") == "250 OK"


def test_a_slow_handler_is_not_an_idle_client(server: Any, raw: Raw) -> None:
    class Slow(Recorder):
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            await asyncio.sleep(1.5)
            return await super().handle_DATA(server, session, envelope)

    running = server(Slow(), timeout=0.5, data_min_rate=2000, data_rate_window=0.2)
    client = raw(running.port)
    greet(client)
    assert transaction(client) == "250 OK"


DATA_RATE = {"timeout": 20.0, "data_min_rate": 2000, "data_rate_window": 1.0}


def start_data(client: RawClient) -> None:
    greet(client)
    client.command("MAIL FROM:<a@example.com>")
    client.command("RCPT TO:<b@example.com>")
    assert client.command("DATA").startswith("354")


def test_an_honest_slow_upload_is_not_cut_off(server: Any, raw: Raw) -> None:
    # ~20 kB/s for 3 s: ten times the minimum rate, and far longer than the window.
    handler = Recorder()
    running = server(handler, **DATA_RATE)
    client = raw(running.port)
    start_data(client)
    line = b"y" * 98 + b"\r\n"
    for _ in range(30):
        client.send(line * 20)  # 2,000 bytes
        time.sleep(0.1)
    client.send(b".\r\n")
    assert client.line() == "250 OK"
    assert handler.envelopes[0].content == line * 600


def test_a_trickle_is_closed_as_too_slow(server: Any, raw: Raw) -> None:
    running = server(**DATA_RATE)
    client = raw(running.port)
    start_data(client)
    # One byte every 0.2 s: never idle, but 10,000 times too slow. The rate is
    # judged every second; the idle timeout (20 s) would take much longer.
    deadline = time.monotonic() + 10
    while client.silent(0.2):
        if time.monotonic() > deadline:
            pytest.fail("the server let a trickle go on for 10 s")
        try:
            client.send(b"z")
        except OSError:
            break
    assert client.line() == "421 4.4.2 smtp.example.test Error: data transfer too slow"
    assert client.closed()


# -- Floods -------------------------------------------------------------------------


class Echo(Recorder):
    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        return f"250 {arg}"


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_a_burst_of_pipelined_commands_gets_every_reply_in_order(server: Any, raw: Raw) -> None:
    count = 20_000
    running = server(Echo())
    client = raw(running.port)
    burst = b"".join(b"NOOP %d\r\n" % number for number in range(count))
    sender = threading.Thread(target=client.sock.sendall, args=(burst,))
    sender.start()
    expected = b"".join(b"250 %d\r\n" % number for number in range(count))
    assert read_exactly(client.sock, len(expected)) == expected
    sender.join()
    assert client.silent()


class Throttled(Measured):
    """Measured, with a small kernel send buffer so that the server must queue."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        super().connection_made(transport)


def test_a_client_that_does_not_read_cannot_grow_the_server(server: Any, raw: Raw) -> None:
    count = 200_000
    handler = Recorder()
    running = server(handler, cls=Throttled)
    flooder = socket.socket()
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    flooder.settimeout(30)
    flooder.connect((HOST, running.port))
    assert flooder.recv(1024).startswith(b"220 ")
    sender = threading.Thread(target=flooder.sendall, args=(b"NOOP\r\n" * count,))
    sender.start()
    try:
        protocol = running.protocols[0]
        wait_for(lambda: protocol._reading_paused, "the server to stop reading")
        # Meanwhile, another client is served as usual.
        with smtplib.SMTP(HOST, running.port, local_hostname="other.test", timeout=5) as other:
            other.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert len(handler.envelopes) == 1
        assert protocol._reading_paused  # still waiting for the flooder to read
        # Now the flooder reads, and gets every reply.
        assert read_exactly(flooder, 8 * count) == b"250 OK\r\n" * count
    finally:
        sender.join(30)
        flooder.close()
    assert protocol.peak_input < 1_000_000
    assert protocol.transport is None or protocol.transport.get_write_buffer_size() < 1_000_000


# -- Configuration ------------------------------------------------------------------


def test_limits_from_server_config(server: Any, raw: Raw) -> None:
    config = ServerConfig(
        enhanced_status_codes=False,  # the bare texts, compared below
        limits=LimitsConfig(
            max_recipients=100,
            command_length=600,
            local_part=10,
            max_unknown_commands=2,
            timeout=30.0,
        ),
    )
    running = server(config=config)
    client = raw(running.port)
    greet(client, "HELO")
    assert client.command(padded("NOOP ", 600)) == "250 OK"
    assert client.command(padded("NOOP ", 601)) == TOO_LONG
    assert client.command("MAIL FROM:<elevenchars@example.com>") == (
        "553 5.1.3 Error: malformed address"
    )
    client.send("MAIL FROM:<a@example.com>\r\n" + "RCPT TO:<b@example.com>\r\n" * 101)
    assert client.lines(102)[-2:] == ["250 OK", TOO_MANY_RECIPIENTS]
    assert client.command("BOGUS") == '500 Error: command "BOGUS" not recognized'
    assert client.command("BOGUS") == "502 5.5.1 Too many unrecognized commands, goodbye."


def test_every_limit_is_a_config_setting() -> None:
    config = ServerConfig()
    kwargs = config.to_smtp_kwargs()
    for name in (
        "data_size_limit",
        "timeout",
        "command_call_limit",
        "max_recipients",
        "max_unknown_commands",
        "max_auth_failures",
        "data_min_rate",
        "data_rate_window",
        "command_length_limit",
        "line_length_limit",
        "local_part_limit",
        "tls_handshake_timeout",
        "proxy_protocol_timeout",
    ):
        assert name in kwargs, name
    limits = config.limits
    assert (limits.max_connections, limits.max_connections_per_ip) == (1000, 50)
    smtp = SMTP(Recorder(), config=config)
    assert (smtp.max_recipients, smtp.max_unknown_commands, smtp.local_part_limit) == (1000, 5, 0)
    assert (smtp.command_size_limit, smtp.line_length_limit) == (512, 1001)
