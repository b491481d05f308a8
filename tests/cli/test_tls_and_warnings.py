"""The TLS flags, and the start-up warnings about unsafe settings."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from smtpkit._cli.banner import is_loopback, safety_warnings
from smtpkit.config import ServerConfig
from smtpkit.default_app import create_handler
from smtpkit.smtp import SMTP

from .conftest import Start
from .helpers import HOST, READY, maildir_messages, write


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    """Certificate and key files for 127.0.0.1."""
    leaf = ca.issue_cert(HOST)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


MESSAGE = "Subject: secret\r\n\r\nover TLS\r\n"


def test_starttls_and_require_starttls(
    start: Start, tmp_path: Path, pem: tuple[str, str], client_context: ssl.SSLContext
) -> None:
    cert, key = pem
    command = start(
        "run", "--port", "0", "--tls-cert", cert, "--tls-key", key, "--require-starttls"
    )
    port = command.port()
    assert "STARTTLS" in command.wait_for(r"extensions: (.*)").group(1).split(", ")
    assert command.wait_for(r"options: (.*)").group(1) == "STARTTLS required"
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.mail("a@example.com")[0] == 530
        client.starttls(context=client_context)
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    command.wait_for(r'subject="secret"', "stdout")
    assert len(maildir_messages(tmp_path / "smtpkit-mail")) == 1


def test_implicit_tls(start: Start, pem: tuple[str, str], client_context: ssl.SSLContext) -> None:
    cert, key = pem
    command = start("run", "--port", "0", "--tls-cert", cert, "--tls-key", key, "--implicit-tls")
    port = int(command.wait_for(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)").group(1))
    with smtplib.SMTP_SSL(HOST, port, timeout=READY, context=client_context) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    command.wait_for(r'subject="secret"', "stdout")


def test_unsafe_settings_are_announced(start: Start) -> None:
    env = {"SMTPKIT_AUTH__REQUIRE_TLS": "false", "SMTPKIT_TLS__REQUIRE_STARTTLS": "true"}
    command = start("run", "--port", "0", env=env)
    command.port()
    command.wait_for(
        r"WARNING smtpkit.cli: unsafe setting: auth.require_tls is off: AUTH is accepted "
        r"without TLS, so passwords cross the network in clear text"
    )
    command.wait_for(
        r"unsafe setting: tls.require_starttls is set but no certificate is \(--tls-cert\): "
        r"STARTTLS cannot be offered, so clients send mail without TLS"
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def warnings_for(loop: asyncio.AbstractEventLoop, tmp_path: Path, **settings: object) -> list[str]:
    config = ServerConfig().replace(**settings)
    protocol = SMTP(create_handler(tmp_path / "mail"), loop=loop, config=config)
    return safety_warnings(protocol, config, default_app=True)


def test_exposure_warnings_beyond_loopback(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    # Computed in-process: binding beyond loopback is not something a test does.
    assert warnings_for(loop, tmp_path) == []
    found = warnings_for(
        loop,
        tmp_path,
        **{
            "listen.host": "0.0.0.0",
            "limits.max_connections": 0,
            "limits.data_size": 0,
            "proxy_protocol.timeout": 5.0,
        },
    )
    assert found == [
        "listening on 0.0.0.0, beyond loopback, without a connection limit: set "
        "limits.max_connections and limits.max_connections_per_ip",
        "listening on 0.0.0.0, beyond loopback, with no message size limit",
        "the PROXY protocol is on for any peer: a client that reaches the port can claim any "
        "address; set proxy_protocol.trusted_networks to the load balancers",
        "the embedded default stores any message for anyone and listens on 0.0.0.0: it is "
        "meant for development; keep it on loopback or behind a firewall",
    ]
    trusted: dict[str, object] = {
        "listen.host": "::",
        "proxy_protocol.timeout": 5.0,
        "proxy_protocol.trusted_networks": ("10.0.0.0/8",),
    }
    # Only the embedded default's own warning is left.
    assert [w.split(":")[0] for w in warnings_for(loop, tmp_path, **trusted)] == [
        "the embedded default stores any message for anyone and listens on "
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("mx.example.com", False),
        ("10.1.2.3", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_proxy_protocol_without_a_proxy_hook_is_announced(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    config = ServerConfig().replace(**{"proxy_protocol.timeout": 5.0})

    class NoProxyHook:
        async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
            return "250 OK"

    protocol = SMTP(NoProxyHook(), loop=loop, config=config)
    assert safety_warnings(protocol, config, default_app=False) == [
        "the PROXY protocol is on but the handler has no handle_PROXY hook: every connection "
        "will be refused (add @app.hook('PROXY') returning True)"
    ]


AUTH_APP = """
from smtpkit import App, AuthResult

app = App()


@app.authenticator
def check(server, session, envelope, mechanism, data):
    return AuthResult(success=data.password == b"right")
"""


def test_auth_without_tls_is_announced_once(start: Start, tmp_path: Path) -> None:
    write(tmp_path, "authapp.py", AUTH_APP)
    command = start("run", "authapp", "--port", "0", env={"SMTPKIT_AUTH__REQUIRE_TLS": "false"})
    port = command.port()
    command.wait_for("options: AUTH required")
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.login("anne", "right")
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    command.stop()
    warned = [line for line in command.lines["stderr"] if "clear text" in line]
    assert len(warned) == 1, command.output()
    assert warned[0].endswith(
        "WARNING smtpkit.cli: unsafe setting: auth.require_tls is off: AUTH is accepted "
        "without TLS, so passwords cross the network in clear text"
    )
    assert not any("UserWarning" in line for line in command.lines["stderr"]), command.output()
