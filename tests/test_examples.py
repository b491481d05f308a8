"""Each example in examples/ is imported, served on a free port and used with smtplib."""

from __future__ import annotations

import importlib.util
import mailbox
import smtplib
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
from anyio.from_thread import BlockingPortal, start_blocking_portal
from routing.helpers import HOST, MESSAGE, Served, served_config, start

from smtpkit import App
from smtpkit.auth.authenticators import hash_password

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh, as its own module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.fixture
def serve(portal: BlockingPortal) -> Iterator[Any]:
    """``serve(app, **settings)``: serve on 127.0.0.1, a free port; stopped at the end."""
    served: list[Served] = []

    def run(app: App, **settings: Any) -> Served:
        running = start(portal, app, served_config(app, settings))
        served.append(running)
        return running

    yield run
    for running in served:
        running.stop()


def test_ping_server(serve: Any) -> None:
    example = load("ping_server")
    with serve(example.app).client() as client:
        assert client.docmd("PING") == (259, b"Pong")
        assert client.docmd("HELP", "PING") == (250, b"Syntax: PING [ignored]")


def test_routing_maildir(serve: Any, tmp_path: Path) -> None:
    example = load("routing_maildir")
    app = example.create_app(tmp_path)
    with serve(app).client() as client:
        refused = client.sendmail(
            "sender@example.net",
            ["anne@example.com", "bart@example.com", "Nobody@example.com", "x@example.org"],
            MESSAGE,
        )
        assert set(refused) == {"Nobody@example.com", "x@example.org"}
        assert all(code == 550 for code, _ in refused.values())
        client.sendmail("sender@example.net", ["postmaster@example.com"], MESSAGE)
    for user in ("anne", "bart", "postmaster"):
        messages = list(mailbox.Maildir(tmp_path / user))
        assert len(messages) == 1, user
        assert messages[0]["Subject"] == "A test"
    assert not (tmp_path / "Nobody").exists()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """PEM files for 127.0.0.1 in ``SMTPKIT_TLS__…`` variables, and a client context."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    env = {"SMTPKIT_TLS__CERT_FILE": str(cert_file), "SMTPKIT_TLS__KEY_FILE": str(key_file)}
    return env, client


def test_submission_server(
    serve: Any, tmp_path: Path, certificate: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    env, client_tls = certificate
    passwords = tmp_path / "passwords"
    passwords.write_text(f"anne:{hash_password('correct horse')}\n")
    env |= {"SUBMISSION_PASSWORD_FILE": str(passwords), "SUBMISSION_OUTBOX": str(tmp_path / "out")}
    example = load("submission_server")
    served = serve(example.create_app(env))
    with served.client() as client:
        client.ehlo()
        # Nothing before STARTTLS, and no AUTH offered in clear text.
        assert not client.has_extn("auth")
        assert client.mail("anne@example.com")[0] == 530
        client.starttls(context=client_tls)
        client.ehlo()
        assert client.has_extn("auth")
        # AUTH is required.
        assert client.mail("anne@example.com")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("anne", "wrong")
        client.login("anne", "correct horse")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("bart@example.com", ["x@example.org"], MESSAGE)
        assert refused.value.smtp_code == 553
        assert client.sendmail("anne@example.com", ["x@example.org"], MESSAGE) == {}
    queued = list(mailbox.Maildir(tmp_path / "out"))
    assert [message["Subject"] for message in queued] == ["A test"]
    assert queued[0]["X-MailFrom"] == "anne@example.com"


def test_submission_server_needs_a_certificate() -> None:
    example = load("submission_server")
    with pytest.raises(SystemExit, match="SMTPKIT_TLS__CERT_FILE"):
        example.create_app({"SUBMISSION_USERS": "anne:pw"})


def rcpt_codes(client: smtplib.SMTP, recipients: list[str]) -> list[int]:
    client.ehlo_or_helo_if_needed()
    client.mail("x@example.net")
    codes = [client.rcpt(address)[0] for address in recipients]
    client.rset()
    return codes


def test_shared_blueprint(serve: Any) -> None:
    example = load("shared_blueprint")
    assert example.mx.smtp_class is not example.internal.smtp_class
    with serve(example.mx).client() as client:
        assert client.docmd("XROLES") == (250, b"postmaster abuse")
        assert rcpt_codes(client, ["ceo@example.com", "abuse@corp.example"]) == [550, 550]
        assert client.sendmail("x@example.net", ["abuse@example.com"], MESSAGE) == {}
    with serve(example.internal).client() as client:
        assert client.docmd("XROLES") == (250, b"postmaster abuse")
        assert rcpt_codes(client, ["abuse@example.com", "ceo@corp.example"]) == [550, 550]
        recipients = ["abuse@corp.example", "postmaster@lab.corp.example"]
        assert client.sendmail("x@example.net", recipients, MESSAGE) == {}
    assert example.REPORTS == [
        ("mx.example.com", "roles.role_mailbox", "abuse@example.com", "A test"),
        ("mail.corp.example", "roles.role_mailbox", "abuse@corp.example", "A test"),
        ("mail.corp.example", "lab-roles.role_mailbox", "postmaster@lab.corp.example", "A test"),
    ]
