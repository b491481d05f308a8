"""Prometheus metrics and /healthz: in process, and on ``smtpkit run --http`` over httpx."""

from __future__ import annotations

import signal
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cli.helpers import EXIT, Command
from interop import HOST, RawClient, Recorder, certificates, serving
from prometheus_client.parser import text_string_to_metric_families

from smtpkit import _events
from smtpkit.auth import MemoryAuthenticator
from smtpkit.metrics import Metrics
from smtpkit.smtp import SMTP, Envelope, Session

MESSAGE = "From: anne@example.test\r\nSubject: counted\r\n\r\nHello.\r\n"
#: Seconds to wait for a value to show (a loaded 2-core machine is slow).
PATIENCE = 30.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(name, labels): value}`` of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def eventually(read: Callable[[], str], check: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + PATIENCE
    while True:
        text = read()
        if check(text):
            return text
        assert time.monotonic() < deadline, f"{what} never came:\n{text}"
        time.sleep(0.1)


# -- in process: every metric from one subscriber --------------------------------------


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    subscriber = Metrics()
    _events.subscribe(subscriber)
    yield subscriber
    _events.unsubscribe(subscriber)


def exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


class Refusing(Recorder):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("d@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_session_counts(metrics: Metrics) -> None:
    certs = certificates()
    with serving(
        Refusing(),
        tls_context=certs.server_context(),
        authenticator=MemoryAuthenticator({"anne": "pw-1"}),
        max_auth_failures=10,
        max_unknown_commands=2,
    ) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as client:
            client.starttls(context=certs.client_context())
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("anne", "wrong")
            client.login("anne", "pw-1")
            refused = client.sendmail("a@x.test", ["b@x.test", "c@x.test", "d@x.test"], MESSAGE)
            assert list(refused) == ["d@x.test"]
        with RawClient(server.port) as raw:  # the limit of unknown commands
            raw.reply()
            assert raw.command("FROB")[0] == 500
            assert raw.command("FROB")[0] == 502
            raw.wait_closed()
        with RawClient(server.port) as raw:  # a failed STARTTLS handshake
            raw.reply()
            raw.command("EHLO client.test")
            assert raw.command("STARTTLS")[0] == 220
            raw.send(b"this is not a TLS client hello\r\n" * 20)
            raw.wait_closed()
        text = eventually(
            lambda: exposition(metrics),
            lambda t: (
                value(t, "smtpkit_connections_open") == 0
                and value(t, "smtpkit_tls_failures_total") == 1
            ),
            "both connections closed",
        )
    assert value(text, "smtpkit_connections_total") == 3
    assert value(text, "smtpkit_tls_handshakes_total") == 1
    assert value(text, "smtpkit_auth_total", mechanism="PLAIN", result="failure") == 1
    assert value(text, "smtpkit_auth_total", mechanism="PLAIN", result="success") == 1
    assert value(text, "smtpkit_messages_accepted_total") == 1
    assert value(text, "smtpkit_messages_refused_total", stage="rcpt") == 1
    assert value(text, "smtpkit_limit_hits_total", limit="unknown_commands") == 1
    assert value(text, "smtpkit_commands_total", verb="other", reply="5xx") == 2
    assert value(text, "smtpkit_commands_total", verb="RCPT", reply="2xx") == 2
    assert value(text, "smtpkit_commands_total", verb="RCPT", reply="5xx") == 1
    assert value(text, "smtpkit_commands_total", verb="DATA", reply="3xx") == 1
    assert value(text, "smtpkit_commands_total", verb="STARTTLS", reply="2xx") == 2
    size = value(text, "smtpkit_message_size_bytes_sum")
    assert size == value(text, "smtpkit_received_bytes_total") and size >= len(MESSAGE)
    assert value(text, "smtpkit_message_size_bytes_count") == 1
    assert value(text, "smtpkit_transaction_duration_seconds_count") == 1


# -- smtpkit run --http: /metrics and /healthz -----------------------------------------


def start(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[Command, int, str]:
    command = Command(
        ["run", "--port=0", "--http=127.0.0.1:0", f"--maildir={tmp_path / 'mail'}", *flags],
        cwd=tmp_path,
        env=env,
    )
    url = command.wait_for(r"capture UI on (http://\S+/)").group(1)
    port = int(command.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    return command, port, url


def send(port: int, rcpt_tos: list[str]) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.sendmail("anne@example.test", rcpt_tos, MESSAGE)


def test_metrics_endpoint_counts_mail(tmp_path: Path) -> None:
    command, port, url = start(tmp_path)
    try:
        first = httpx.get(url + "metrics", timeout=30)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(first.text, "smtpkit_messages_accepted_total") == 0
        send(port, ["bob@example.test"])
        send(port, ["bob@example.test", "cy@example.test"])
        text = eventually(
            lambda: httpx.get(url + "metrics", timeout=30).text,
            lambda t: (
                value(t, "smtpkit_messages_accepted_total") == 2
                and value(t, "smtpkit_connections_open") == 0
            ),
            "two accepted messages",
        )
        assert value(text, "smtpkit_connections_total") == 2
        assert value(text, "smtpkit_commands_total", verb="RCPT", reply="2xx") == 3
        assert value(text, "smtpkit_received_bytes_total") >= 2 * len(MESSAGE)
    finally:
        command.stop()


def test_healthz_turns_503_while_draining(tmp_path: Path) -> None:
    command, port, url = start(tmp_path, "--graceful-timeout=60")
    try:
        health = httpx.get(url + "healthz", timeout=30)
        assert (health.status_code, health.text) == (200, "accepting\n")
        with RawClient(port, timeout=60) as client:
            client.reply()
            client.command("EHLO client.test")
            assert client.command("MAIL FROM:<anne@example.test>")[0] == 250
            assert client.command("RCPT TO:<bob@example.test>")[0] == 250
            assert client.command("DATA")[0] == 354
            client.send("Subject: in flight\r\n\r\nfirst half\r\n")
            command.process.send_signal(signal.SIGTERM)
            draining = eventually(
                lambda: str(httpx.get(url + "healthz", timeout=30).status_code),
                lambda status: status == "503",
                "503 from /healthz",
            )
            assert draining == "503"
            assert httpx.get(url + "healthz", timeout=30).text == "draining\n"
            client.send("second half\r\n.\r\n")
            assert client.reply()[0] == 250
        assert command.process.wait(EXIT) == 0
    finally:
        command.stop()
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1


def test_without_prometheus_client(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "prometheus_client.py").write_text("raise ImportError('not installed here')\n")
    command, port, url = start(tmp_path, env={"PYTHONPATH": str(blocker)})
    try:
        command.wait_for(r"no /metrics on the HTTP listener: prometheus-client is not installed")
        assert httpx.get(url + "metrics", timeout=30).status_code == 404
        assert httpx.get(url + "healthz", timeout=30).status_code == 200
        send(port, ["bob@example.test"])
        assert httpx.get(url + "api/v1/messages", timeout=30).status_code == 200
    finally:
        command.stop()


def test_workers_add_up(tmp_path: Path) -> None:
    command, _, url = start(tmp_path, "--workers=2")
    try:
        port = int(command.wait_for(r"on port (\d+) \(SO_REUSEPORT\)").group(1))
        for _ in range(2):
            command.wait_for(r"worker \d \(pid \d+")
        for _ in range(12):
            send(port, ["bob@example.test"])
        text = eventually(
            lambda: httpx.get(url + "metrics", timeout=30).text,
            lambda t: value(t, "smtpkit_messages_accepted_total") == 12,
            "12 accepted messages over both workers",
        )
        assert value(text, "smtpkit_connections_total") == 12
    finally:
        command.stop()
