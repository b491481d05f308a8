"""Each example in examples/ is run as a user would run it, and used with smtplib.

A user starts an example from a folder of their own, with nothing prepared in
it: ``python -m smtpkit run path/to/examples/X.py:app`` in a new, empty working
folder. Every relative path an example uses (``./mail``, ``./outbox``) is then
created by the example itself, and the test looks for the mail there.
"""

from __future__ import annotations

import importlib.util
import mailbox
import smtplib
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import trustme
from cli.helpers import Command, run_once
from routing.helpers import HOST, MESSAGE

from smtpkit.auth.authenticators import hash_password

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Seconds an smtplib client waits for the example (a loaded 2-core machine is slow).
CLIENT_TIMEOUT = 60.0

Run = Callable[..., int]


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new, empty working folder, as a user's own would be."""
    folder = tmp_path_factory.mktemp("workdir")
    assert list(folder.iterdir()) == []
    return folder


@pytest.fixture
def run_example(workdir: Path) -> Iterator[Run]:
    """``run_example("file.py:target", env=None)``: serve an example; return its port.

    The example runs as ``python -m smtpkit run <path>:<target> --port 0`` with
    ``workdir`` as its working folder; it is stopped at the end of the test.
    """
    running: list[Command] = []

    def run(target: str, env: dict[str, str] | None = None) -> int:
        command = Command(["run", f"{EXAMPLES / target}", "--port", "0"], workdir, env)
        running.append(command)
        return command.port()

    yield run
    for command in running:
        command.stop()


def client_for(port: int) -> smtplib.SMTP:
    return smtplib.SMTP(HOST, port, timeout=CLIENT_TIMEOUT)


def test_ping_server(run_example: Run) -> None:
    with client_for(run_example("ping_server.py:app")) as client:
        assert client.docmd("PING") == (259, b"2.0.0 Pong")
        assert client.docmd("HELP", "PING") == (250, b"2.0.0 Syntax: PING [ignored]")


def test_routing_maildir_creates_its_folders_on_the_first_message(
    run_example: Run, workdir: Path
) -> None:
    with client_for(run_example("routing_maildir.py:app")) as client:
        refused = client.sendmail(
            "sender@example.net",
            ["anne@example.com", "bart@example.com", "Nobody@example.com", "x@example.org"],
            MESSAGE,
        )
        assert set(refused) == {"Nobody@example.com", "x@example.org"}
        assert all(code == 550 for code, _ in refused.values())
        client.ehlo_or_helo_if_needed()
        client.mail("sender@example.net")
        client.rcpt("postmaster@example.com")
        assert client.data(MESSAGE) == (250, b"2.0.0 Delivered to postmaster")
    # Everything under the working folder was made by the example.
    root = workdir / "mail"
    assert sorted(path.name for path in root.iterdir()) == ["anne", "bart", "postmaster"]
    for user in ("anne", "bart", "postmaster"):
        messages = list(mailbox.Maildir(root / user))
        assert len(messages) == 1, user
        assert messages[0]["Subject"] == "A test"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """PEM files for 127.0.0.1 in ``SMTPKIT_TLS__…`` variables, and a client context.

    The files live outside the working folder, as an operator's would.
    """
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
    run_example: Run,
    workdir: Path,
    tmp_path: Path,
    certificate: tuple[dict[str, str], ssl.SSLContext],
) -> None:
    env, client_tls = certificate
    passwords = tmp_path / "passwords"
    passwords.write_text(f"anne:{hash_password('correct horse')}\n")
    env |= {"SUBMISSION_PASSWORD_FILE": str(passwords)}
    with client_for(run_example("submission_server.py:create_app()", env)) as client:
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
    # The default outbox, ./outbox, is created in the working folder.
    assert [path.name for path in workdir.iterdir()] == ["outbox"]
    queued = list(mailbox.Maildir(workdir / "outbox"))
    assert [message["Subject"] for message in queued] == ["A test"]
    assert queued[0]["X-MailFrom"] == "anne@example.com"


def test_submission_server_needs_a_certificate(workdir: Path) -> None:
    target = f"{EXAMPLES / 'submission_server.py'}:create_app()"
    done = run_once("run", target, "--port", "0", cwd=workdir, env={"SUBMISSION_USERS": "a:pw"})
    assert done.returncode != 0
    assert "set SMTPKIT_TLS__CERT_FILE (and SMTPKIT_TLS__KEY_FILE)" in done.stderr
    assert list(workdir.iterdir()) == []


def rcpt_codes(client: smtplib.SMTP, recipients: list[str]) -> list[int]:
    client.ehlo_or_helo_if_needed()
    client.mail("x@example.net")
    codes = [client.rcpt(address)[0] for address in recipients]
    client.rset()
    return codes


def send_to_role(client: smtplib.SMTP, address: str) -> tuple[int, bytes]:
    """Send MESSAGE to one role address; the reply to DATA (the route's reply)."""
    client.ehlo_or_helo_if_needed()
    client.mail("x@example.net")
    assert client.rcpt(address)[0] == 250, address
    return client.data(MESSAGE)


THANKS = (250, b"2.0.0 Thank you, a person will read this")


def test_shared_blueprint(run_example: Run) -> None:
    with client_for(run_example("shared_blueprint.py:mx")) as client:
        assert client.docmd("XROLES") == (250, b"2.0.0 postmaster abuse")
        assert rcpt_codes(client, ["ceo@example.com", "abuse@corp.example"]) == [550, 550]
        assert send_to_role(client, "abuse@example.com") == THANKS
    with client_for(run_example("shared_blueprint.py:internal")) as client:
        assert client.docmd("XROLES") == (250, b"2.0.0 postmaster abuse")
        assert rcpt_codes(client, ["abuse@example.com", "ceo@corp.example"]) == [550, 550]
        assert send_to_role(client, "abuse@corp.example") == THANKS
        assert send_to_role(client, "postmaster@lab.corp.example") == THANKS


def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` afresh, as its own module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shared_blueprint_registrations_keep_their_names() -> None:
    # Which registration handled a message is only visible inside the process.
    example = load("shared_blueprint")
    assert example.mx.smtp_class is not example.internal.smtp_class
    assert [route.name for route in example.mx.routes] == ["roles.role_mailbox"]
    assert [route.name for route in example.internal.routes] == [
        "roles.role_mailbox",
        "lab-roles.role_mailbox",
    ]
