"""The ceiling server's STARTTLS mode, run as the TLS benchmark runs it.

The ceiling is started with a throw-away certificate and spoken to with smtplib and with
the pipelining client, in both of its TLS loads (STARTTLS sessions, and messages after one
STARTTLS per connection), on each loop.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator

import pytest

# The benchmark tools tests next to this file start the scripts the same way.
from test_bench_tools import _pipelined, _start, _stop

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(certificate chain, private key, CA) PEM files for ``bench.local``."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("bench.local")
    chain, key, ca_file = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(chain), str(key), str(ca_file)


@pytest.fixture(params=["asyncio", "uvloop"])
def tls_ceiling(request: pytest.FixtureRequest, certificate: tuple[str, str, str]) -> Iterator[int]:
    """The port of the ceiling server with a certificate, on each loop."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    chain, key, _ca = certificate
    args = (f"--loop={request.param}", f"--tls-cert={chain}", f"--tls-key={key}")
    proc, port = _start("ceiling_server.py", *args)
    yield port
    _stop(proc)


def test_ceiling_offers_and_starts_tls(tls_ceiling: int, certificate: tuple[str, str, str]) -> None:
    context = ssl.create_default_context(cafile=certificate[2])
    context.check_hostname = False  # connected to 127.0.0.1; the chain is still verified
    with smtplib.SMTP("127.0.0.1", tls_ceiling, timeout=30) as client:
        client.ehlo("client.example")
        assert client.has_extn("starttls")
        assert client.starttls(context=context)[0] == 220
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket) and sock.version() is not None
        assert client.ehlo("client.example")[0] == 250
        assert client.mail("a@example.com") == (250, b"OK")
        assert client.rcpt("b@example.com") == (250, b"OK")
        assert client.data(b"Subject: x\r\n\r\nbody\r\n")[0] == 250


def test_ceiling_without_a_certificate_offers_no_tls() -> None:
    proc, port = _start("ceiling_server.py", "--loop=asyncio")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            assert not client.has_extn("starttls")
    finally:
        _stop(proc)


def test_pipelined_client_counts_tls_sessions(
    tls_ceiling: int, certificate: tuple[str, str, str]
) -> None:
    report = _pipelined(tls_ceiling, 40, f"--starttls={certificate[2]}", "--handshakes")
    assert report["done"] == 40


def test_pipelined_client_sends_messages_over_tls(
    tls_ceiling: int, certificate: tuple[str, str, str]
) -> None:
    report = _pipelined(tls_ceiling, 120, f"--starttls={certificate[2]}")
    assert report["done"] == 120
