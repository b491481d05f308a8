"""A live fuzz target: hypothesis-made sessions against one running ``smtpkit run``.

Each example opens a connection and sends a session built from pieces: random bytes,
valid commands mutated with NUL, bare CR or LF and invalid UTF-8, huge lines, a partial
TLS ClientHello (alone or after STARTTLS), PROXY v1/v2 headers the server does not
expect, AUTH with garbage, DATA and BDAT cut short. It then half-closes and reads what
the server says, for a bounded time. After every session a probe client must still get
its 250 for a whole message; the server must never log an internal error, and its
resident memory (``VmRSS``) must not grow beyond a generous bound. A second server,
started with ``--proxy-protocol``, gets PROXY v1/v2 headers made whole, cut short and
mangled, while its probe comes through a PROXY v1 header as from HAProxy; a third, with
a certificate, gets real ClientHellos cut short, changed or followed by garbage after
STARTTLS, while its probe uses STARTTLS.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cli.helpers import Command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpkit.config import ServerConfig

from .conftest import HOST, READY, make_message, rss_kib, stored_by_id

#: Seconds one fuzz session may take to be answered and closed.
SESSION_TIME = 5.0
#: Growth of the server's resident memory allowed over the whole run (KiB).
RSS_GROWTH = 64 * 1024
EXAMPLES = 160

VALID = [
    b"EHLO fuzz.example",
    b"HELO fuzz.example",
    b"MAIL FROM:<a@example.com>",
    b"MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME",
    b"RCPT TO:<b@example.com>",
    b"DATA",
    b"Subject: fuzz",
    b"",
    b"body line",
    b".",
    b"RSET",
    b"NOOP",
    b"VRFY b@example.com",
    b"HELP",
    b"STARTTLS",
    b"QUIT",
]
ENDINGS = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"", b"\r\r\n"])
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid command with one thing wrong with it."""
    line = draw(st.sampled_from(VALID))
    where = draw(st.integers(0, len(line)))
    noise = draw(
        st.sampled_from([b"\x00", b"\r", b"\n", b"\xff\xfe", b"\xc3(", b"\xed\xa0\x80", b"\x1b[0m"])
    )
    return line[:where] + noise + line[where:] + draw(ENDINGS)


def lines(*items: bytes) -> bytes:
    return b"".join(item + b"\r\n" for item in items)


PIECES = st.one_of(
    st.sampled_from(VALID).map(lambda line: line + b"\r\n"),
    mutated(),
    st.binary(max_size=2048),
    st.integers(1000, 120_000).map(lambda size: b"EHLO " + b"x" * size + b"\r\n"),
    st.integers(1000, 120_000).map(lambda size: b"y" * size),  # a line that never ends
    st.binary(max_size=200).map(lambda tail: CLIENT_HELLO + tail),
    st.just(lines(b"EHLO fuzz.example", b"STARTTLS") + CLIENT_HELLO[:20]),
    st.sampled_from(
        [
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 25\r\n",
            b"PROXY TCP6 ::1 ::2 1 2\r\n",
            b"PROXY UNKNOWN\r\n",
            b"PROXY TCP4 999.0.0.1 x y z\r\n",
        ]
    ),
    st.binary(max_size=64).map(lambda tail: b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + tail),
    st.binary(max_size=300).map(lambda junk: b"AUTH PLAIN " + junk + b"\r\n"),
    st.binary(max_size=100).map(lambda junk: lines(b"AUTH LOGIN", junk, junk)),
    st.binary(max_size=50).map(lambda junk: b"AUTH " + junk + b"\r\n"),
    st.binary(max_size=500).map(
        lambda body: (
            lines(b"EHLO f", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>")
            + b"DATA\r\n"
            + body
        )
    ),
    st.integers(0, 10**12).map(lambda size: f"BDAT {size} LAST\r\n".encode() + b"z" * 100),
    st.binary(max_size=100).map(lambda junk: b"MAIL FROM:<" + junk + b"> SMTPUTF8\r\n"),
)
SESSIONS = st.lists(PIECES, min_size=1, max_size=10)


def run_session(port: int, pieces: list[bytes], wait: float = SESSION_TIME) -> bytes:
    """Send ``pieces``, half-close, and read the replies until the server closes.

    After ``wait`` seconds the client closes by itself.
    """
    received = bytearray()
    with socket.create_connection((HOST, port), timeout=SESSION_TIME) as sock:
        reader = threading.Thread(target=_read_all, args=(sock, received), daemon=True)
        reader.start()
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first (a limit, QUIT among the pieces)
        reader.join(wait)
    return bytes(received)


def _read_all(sock: socket.socket, into: bytearray) -> None:
    try:
        while chunk := sock.recv(65536):
            into += chunk
    except OSError:
        pass


PROXY_V1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 25\r\n"
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxiedSMTP(smtplib.SMTP):
    """smtplib's client, sending a PROXY v1 header before anything else (as HAProxy does)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        assert isinstance(sock, socket.socket)
        sock.sendall(PROXY_V1)
        return sock


class Probe:
    """A client that sends one whole message after each fuzz session.

    With ``tls``, the probe uses STARTTLS, trusting ``tls``.
    """

    def __init__(
        self,
        server: Command,
        port: int,
        maildir: Path,
        *,
        proxy: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.maildir = maildir
        self.count = 0
        self._client = ProxiedSMTP if proxy else smtplib.SMTP
        self._tls = tls

    def check(self) -> None:
        self.count += 1
        message = make_message(f"probe-{self.count}@test", 300)
        with self._client(HOST, self.port, timeout=READY) as client:
            if self._tls is not None:
                client.starttls(context=self._tls)
            code, _ = client.noop()
            assert code == 250
            refused = client.sendmail("a@example.com", ["b@example.com"], message.data)
        assert refused == {}


def start_target(folder: Path, *args: str, tls: ssl.SSLContext | None = None) -> Iterator[Probe]:
    command = Command(["run", "--port", "0", "--maildir", str(folder / "mail"), *args], folder)
    try:
        proxy = "--proxy-protocol" in args
        yield Probe(command, command.port(), folder / "mail", proxy=proxy, tls=tls)
    finally:
        command.stop()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    yield from start_target(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def tls_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """A server offering STARTTLS with a certificate of a test CA."""
    folder = tmp_path_factory.mktemp("fuzz-tls")
    authority = trustme.CA()
    authority.issue_cert("localhost", HOST).private_key_and_cert_chain_pem.write_to_path(
        folder / "server.pem"
    )
    client = ssl.create_default_context()
    authority.configure_trust(client)
    client.check_hostname = False  # smtplib names the peer by its address
    yield from start_target(folder, "--tls-cert", str(folder / "server.pem"), tls=client)


def client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello), made in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture(scope="module")
def proxy_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """A server that expects a PROXY header from every client."""
    yield from start_target(tmp_path_factory.mktemp("fuzz-proxy"), "--proxy-protocol")


def internal_errors(command: Command) -> list[str]:
    """The log lines about internal errors (a traceback, a 451 for a bug)."""
    logged = command.output().split("\n--- stderr\n", 1)[1].splitlines()
    return [line for line in logged if " ERROR " in line or " CRITICAL " in line]


@pytest.fixture(scope="module")
def rss_before(fuzz_target: Probe) -> int:
    # A few whole sessions first, so the start-up allocations are behind us.
    for _ in range(20):
        fuzz_target.check()
    return rss_kib(fuzz_target.server.pid)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pieces=SESSIONS)
def test_any_session_leaves_the_server_serving(
    fuzz_target: Probe, rss_before: int, pieces: list[bytes]
) -> None:
    run_session(fuzz_target.port, pieces)
    assert fuzz_target.server.process.poll() is None, fuzz_target.server.output()
    fuzz_target.check()
    assert internal_errors(fuzz_target.server) == []


PROXY_V2 = st.builds(
    lambda command, family, length, payload: (
        PROXY_V2_SIGNATURE + bytes([command, family]) + length.to_bytes(2, "big") + payload
    ),
    st.sampled_from([0x20, 0x21, 0x22, 0x11, 0xFF]),
    st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x31, 0x44]),
    st.one_of(st.just(12), st.just(36), st.integers(0, 0xFFFF)),
    st.binary(max_size=300),
)
PROXY_HEADERS = st.one_of(
    st.just(PROXY_V1),
    st.integers(1, len(PROXY_V1) - 1).map(lambda cut: PROXY_V1[:cut]),
    st.lists(
        st.sampled_from([b"TCP4", b"TCP6", b"UNKNOWN", b"192.0.2.1", b"::1", b"65536", b"-1"])
        | st.binary(max_size=20),
        max_size=7,
    ).map(lambda words: b"PROXY " + b" ".join(words) + b"\r\n"),
    PROXY_V2,
    st.binary(max_size=120).map(lambda tail: PROXY_V2_SIGNATURE[:-1] + tail),
    st.binary(max_size=200),
)


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(header=PROXY_HEADERS, pieces=st.lists(PIECES, max_size=4))
def test_any_proxy_header_leaves_the_server_serving(
    proxy_target: Probe, header: bytes, pieces: list[bytes]
) -> None:
    # A header cut short keeps its connection until the PROXY timeout (10 s), even after
    # the client's FIN: do not wait for that, close after a moment.
    run_session(proxy_target.port, [header, *pieces], wait=0.2)
    assert proxy_target.server.process.poll() is None, proxy_target.server.output()
    proxy_target.check()
    assert internal_errors(proxy_target.server) == []


@st.composite
def broken_hellos(draw: st.DrawFn, hello: bytes) -> bytes:
    """A real ClientHello cut short, with a byte changed, or followed by garbage."""
    cut = draw(st.integers(0, len(hello)))
    data = bytearray(hello[:cut])
    if data and draw(st.booleans()):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data) + draw(st.binary(max_size=200))


HELLO = client_hello()


@settings(
    max_examples=EXAMPLES // 2,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hello=broken_hellos(HELLO), before=st.sampled_from([b"", b"NOOP\r\n"]))
def test_any_broken_handshake_leaves_the_server_serving(
    tls_target: Probe, hello: bytes, before: bytes
) -> None:
    with socket.create_connection((HOST, tls_target.port), timeout=SESSION_TIME) as sock:
        replies = sock.makefile("rb")
        assert replies.readline().startswith(b"220 ")  # the greeting
        sock.sendall(b"EHLO fuzz.example\r\n" + before + b"STARTTLS\r\n")
        # Bytes sent with STARTTLS are discarded: wait for its 220, then shake hands.
        line = b"-"
        while line and not line.startswith(b"220 "):
            line = replies.readline()
        assert line, "the server closed before its reply to STARTTLS"
        sock.sendall(hello)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):  # the server closes (or times out: SESSION_TIME)
            while sock.recv(65536):
                pass
    assert tls_target.server.process.poll() is None, tls_target.server.output()
    tls_target.check()
    assert internal_errors(tls_target.server) == []


def test_ten_thousand_recipients(fuzz_target: Probe) -> None:
    rcpts = [f"RCPT TO:<r{number}@example.com>".encode() for number in range(10_000)]
    session = lines(b"EHLO many.example", b"MAIL FROM:<a@example.com>", *rcpts, b"DATA")
    replies = run_session(
        fuzz_target.port, [session + b"Message-ID: <many@test>\r\n\r\nx\r\n.\r\n"]
    )
    codes = [line[:3] for line in replies.split(b"\r\n") if line[3:4] == b" "]
    # Every recipient is answered: accepted up to the limit, 452 beyond (RFC 5321
    # 4.5.3.1.10); then the message goes to the accepted ones.
    limit = ServerConfig().limits.max_recipients
    assert codes == [b"220", b"250", b"250"] + [b"250"] * limit + [b"452"] * (10_000 - limit) + [
        b"354",
        b"250",
    ]
    assert "many@test" in stored_by_id(fuzz_target.maildir)
    fuzz_target.check()


def test_memory_stays_bounded(fuzz_target: Probe, rss_before: int) -> None:
    # Runs after the fuzz sessions (file order): whatever they left behind shows here.
    for _ in range(20):
        fuzz_target.check()
    grown = rss_kib(fuzz_target.server.pid) - rss_before
    assert grown < RSS_GROWTH, f"VmRSS grew by {grown} KiB over {fuzz_target.count} probes"
    stored = stored_by_id(fuzz_target.maildir)
    assert len([key for key in stored if key.startswith("probe-")]) == fuzz_target.count
    assert internal_errors(fuzz_target.server) == []
