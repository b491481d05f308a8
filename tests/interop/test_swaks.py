"""swaks, a widely used SMTP test client: STARTTLS and AUTH PLAIN/LOGIN."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from smtpkit import App
from smtpkit.auth import LoginPassword, MemoryAuthenticator
from smtpkit.routing import RoutedMessage

from . import HOST, Certificates, Recorder, serving

pytestmark = pytest.mark.interop

USER, PASSWORD = "anne", "correct horse"


def run_swaks(swaks: str, port: int, certs: Certificates, *options: str) -> tuple[int, str]:
    """Send one message with swaks over verified STARTTLS; return its exit code and transcript."""
    command = [
        swaks,
        "--server", HOST,
        "--port", str(port),
        "--helo", "client.test",
        "--from", "a@example.com",
        "--to", "b@example.com",
        "--tls",
        "--tls-verify",
        "--tls-ca-path", str(certs.ca_file),
        "--timeout", "10",
        *options,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_tls_and_auth(
    swaks: str, loop_kind: str, mechanism: str, certs: Certificates, server_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    with serving(
        handler,
        loop_kind,
        tls_context=server_tls,
        auth_required=True,
        authenticator=MemoryAuthenticator({USER: PASSWORD}),
    ) as server:
        status, transcript = run_swaks(
            swaks,
            server.port,
            certs,
            "--auth", mechanism,
            "--auth-user", USER,
            "--auth-password", PASSWORD,
        )  # fmt: skip
    assert status == 0, transcript
    assert "<-  220 Ready to start TLS" in transcript
    assert "=== TLS started" in transcript
    # AUTH is offered and used only over TLS ("~" marks encrypted lines).
    assert "<-  250-AUTH" not in transcript
    assert "<~  250-AUTH LOGIN PLAIN" in transcript
    assert f" ~> AUTH {mechanism}" in transcript
    assert "<~  235 2.7.0 Authentication successful" in transcript
    [(session, envelope)] = handler.messages
    assert session.ssl is not None
    assert session.authenticated is True
    assert session.auth_data == LoginPassword(USER.encode(), PASSWORD.encode())
    assert envelope.rcpt_tos == ["b@example.com"]


def test_swaks_wrong_password(
    swaks: str, loop_kind: str, certs: Certificates, server_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    with serving(
        handler,
        loop_kind,
        tls_context=server_tls,
        auth_required=True,
        authenticator=MemoryAuthenticator({USER: PASSWORD}),
    ) as server:
        status, transcript = run_swaks(
            swaks,
            server.port,
            certs,
            "--auth", "PLAIN",
            "--auth-user", USER,
            "--auth-password", "not the password",
        )  # fmt: skip
    assert status != 0
    assert "<~* 535 5.7.8 Authentication credentials invalid" in transcript
    assert handler.messages == []


def run_swaks_plain(swaks: str, port: int) -> tuple[int, str]:
    """Send one message with swaks without TLS; return its exit code and transcript."""
    command = [
        swaks,
        "--server", HOST,
        "--port", str(port),
        "--helo", "client.test",
        "--from", "a@example.com",
        "--to", "b@example.com",
        "--timeout", "10",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def test_swaks_sees_enhanced_status_codes_from_an_app(swaks: str, loop_kind: str) -> None:
    app = App()
    received: list[list[str]] = []

    @app.route("(user)@example.com")
    def deliver(message: RoutedMessage) -> None:
        received.append(list(message.recipients))

    with serving(app.handler, loop_kind, smtp_class=app.smtp_class) as server:
        status, transcript = run_swaks_plain(swaks, server.port)
    assert status == 0, transcript
    assert "<-  250-ENHANCEDSTATUSCODES" in transcript
    # MAIL, RCPT and the end of data each say 250 2.0.0; 354 has no code.
    assert transcript.count("<-  250 2.0.0 OK") == 3, transcript
    assert "<-  354 End data with <CR><LF>.<CR><LF>" in transcript
    assert "<-  221 2.0.0 Bye" in transcript
    assert received == [["b@example.com"]]


def test_swaks_sees_aiosmtpd_replies_from_the_bare_class(swaks: str, loop_kind: str) -> None:
    handler = Recorder()
    with serving(handler, loop_kind) as server:
        status, transcript = run_swaks_plain(swaks, server.port)
    assert status == 0, transcript
    assert "ENHANCEDSTATUSCODES" not in transcript
    assert transcript.count("<-  250 OK") == 3, transcript
    assert "<-  221 Bye" in transcript
    assert len(handler.messages) == 1
