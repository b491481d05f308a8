"""openssl s_client: STARTTLS (-starttls smtp) and implicit TLS handshakes."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from . import HOST, Certificates, Recorder, serving

pytestmark = pytest.mark.interop


def s_client(openssl: str, port: int, certs: Certificates, *options: str) -> tuple[int, str]:
    """Run ``openssl s_client`` with verification on, say EHLO and QUIT, return its output."""
    command = [
        openssl, "s_client",
        "-connect", f"{HOST}:{port}",
        "-CAfile", str(certs.ca_file),
        "-verify_return_error",
        "-verify_ip", HOST,
        "-crlf",
        "-ign_eof",
        *options,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        input="EHLO after.tls\nQUIT\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_openssl_starttls(
    openssl: str, loop_kind: str, certs: Certificates, server_tls: ssl.SSLContext
) -> None:
    with serving(Recorder(), loop_kind, tls_context=server_tls) as server:
        status, output = s_client(openssl, server.port, certs, "-starttls", "smtp")
    assert status == 0, output
    assert "Verify return code: 0 (ok)" in output
    # s_client keeps the replies it read before the handshake to itself; what
    # it prints are the replies over TLS: a fresh EHLO without STARTTLS.
    assert "250-mx.test" in output
    assert "250-STARTTLS" not in output
    assert "221 Bye" in output


def test_openssl_implicit_tls(
    openssl: str, loop_kind: str, certs: Certificates, server_tls: ssl.SSLContext
) -> None:
    with serving(Recorder(), loop_kind, implicit_tls=server_tls, tls_context=server_tls) as server:
        status, output = s_client(openssl, server.port, certs)
    assert status == 0, output
    assert "Verify return code: 0 (ok)" in output
    assert "220 mx.test" in output
    assert "250-mx.test" in output
    assert "250-STARTTLS" not in output
    assert "221 Bye" in output


def test_openssl_refuses_an_untrusted_server(
    openssl: str, loop_kind: str, server_tls: ssl.SSLContext
) -> None:
    # The counterpart of the tests above: verification is really on.
    other = Certificates()
    with serving(Recorder(), loop_kind, tls_context=server_tls) as server:
        status, output = s_client(openssl, server.port, other, "-starttls", "smtp")
    assert status != 0
    assert "250-mx.test" not in output
