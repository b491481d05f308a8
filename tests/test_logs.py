"""The session log, the transcript and the JSON format, over real sockets and real clients."""

from __future__ import annotations

import base64
import json
import logging
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli.helpers import Command
from interop import HOST, RawClient, Recorder, certificates, serving, wait_for

from smtpkit._logs import FIELDS, JsonFormatter
from smtpkit.auth import MemoryAuthenticator
from smtpkit.smtp import SMTP, Envelope, Session

USER, PASSWORD = "anne", "s3cret-Horse-77"
PLAIN_PAYLOAD = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
LOGIN_USER = base64.b64encode(USER.encode()).decode()
LOGIN_PASSWORD = base64.b64encode(PASSWORD.encode()).decode()
#: Every form an AUTH secret can take on the wire or decoded.
SECRETS = (PASSWORD, PLAIN_PAYLOAD, LOGIN_PASSWORD)
MESSAGE = "From: anne@example.test\r\nSubject: hello\r\n\r\nbody-marker-4242\r\n"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture everything smtpkit logs, down to DEBUG (the transcript included)."""
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    yield caplog


def session_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "smtpkit.session"]


def event(records: list[logging.LogRecord], name: str) -> list[dict[str, Any]]:
    return [r.smtpkit for r in records if r.smtpkit["event"] == name]  # type: ignore[attr-defined]


def everything(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line, formatted as text and as JSON, tracebacks included."""
    text = logging.Formatter("%(name)s %(levelname)s %(message)s")
    as_json = JsonFormatter()
    return "\n".join(text.format(r) + "\n" + as_json.format(r) for r in caplog.records)


def wait_for_event(caplog: pytest.LogCaptureFixture, name: str, count: int = 1) -> None:
    wait_for(lambda: len(event(session_lines(caplog), name)) >= count, f"{count} {name} line(s)")


def test_full_session_with_starttls_and_auth(logs: pytest.LogCaptureFixture) -> None:
    certs = certificates()
    handler = Recorder()
    with serving(
        handler,
        tls_context=certs.server_context(),
        authenticator=MemoryAuthenticator({USER: PASSWORD}),
    ) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as client:
            client.starttls(context=certs.client_context())
            client.login(USER, PASSWORD)
            client.sendmail("anne@example.test", ["bob@example.test", "cy@example.test"], MESSAGE)
        wait_for_event(logs, "disconnect")
    records = session_lines(logs)
    sid = records[0].smtpkit["session"]  # type: ignore[attr-defined]
    assert re.fullmatch(r"[A-Z2-7]{8}", sid)
    assert all(r.smtpkit["session"] == sid for r in records)  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO and r.getMessage().startswith(sid) for r in records)
    assert [r.smtpkit["event"] for r in records] == [  # type: ignore[attr-defined]
        "connect",
        "tls",
        "auth",
        "accepted",
        "disconnect",
    ]
    connect, tls, auth, accepted, disconnect = (r.smtpkit for r in records)  # type: ignore[attr-defined]
    assert connect["peer"].startswith("127.0.0.1:") and connect["tls"] == "no"
    assert tls["result"] == "success" and tls["tls"].startswith("TLSv1.")
    assert auth == {**auth, "mechanism": "PLAIN", "login": USER, "result": "success"}
    assert accepted["id"] == f"{sid}.1"
    assert accepted["from"] == "anne@example.test"
    assert accepted["to"] == ["bob@example.test", "cy@example.test"]
    assert accepted["size"] == len(handler.messages[0][1].original_content)
    assert accepted["size"] > 0 and accepted["duration"] >= 0
    assert accepted["tls"] == tls["tls"] and accepted["login"] == USER
    assert disconnect["messages"] == 1 and disconnect["reason"] == "quit"
    text = records[3].getMessage()
    assert f"{sid} accepted id={sid}.1 from=anne@example.test" in text
    assert "to=<bob@example.test>,<cy@example.test>" in text and f"login={USER}" in text
    # The transcript: commands and replies, AUTH hidden, no body.
    transcript = [r.getMessage() for r in logs.records if r.name == "smtpkit.transcript"]
    assert all(r.levelno == logging.DEBUG for r in logs.records if r.name == "smtpkit.transcript")
    assert f"{sid} < STARTTLS" in transcript
    assert f"{sid} > 220 Ready to start TLS" in transcript
    assert f"{sid} < AUTH PLAIN ****" in transcript
    # smtplib writes "mail FROM:" before Python 3.13 and "mail from:" since.
    mail = f"{sid} < mail from:<anne@example.test> size={len(MESSAGE)}"
    assert mail in [line.replace(" FROM:", " from:") for line in transcript]
    assert any(t.startswith(f"{sid} > 250 ") and "OK" in t for t in transcript)
    assert "body-marker-4242" not in everything(logs)
    for secret in SECRETS:
        assert secret not in everything(logs)


def test_login_mechanism_secrets_never_logged(logs: pytest.LogCaptureFixture) -> None:
    with serving(
        Recorder(), authenticator=MemoryAuthenticator({USER: PASSWORD}), auth_require_tls=False
    ) as server:
        with RawClient(server.port) as client:
            client.reply()
            client.command("EHLO client.test")
            assert client.command(f"AUTH LOGIN {LOGIN_USER}")[0] == 334
            assert client.command(LOGIN_PASSWORD)[0] == 235
            client.command("QUIT")
        with RawClient(server.port) as client:  # a failed AUTH PLAIN, wrong password
            client.reply()
            client.command("EHLO client.test")
            wrong = base64.b64encode(f"\0{USER}\0{PASSWORD}x".encode()).decode()
            assert client.command(f"AUTH PLAIN {wrong}")[0] == 535
            assert client.command("AUTH PLAIN")[0] == 334
            assert client.command(PLAIN_PAYLOAD)[0] == 235
            client.command("QUIT")
        wait_for_event(logs, "disconnect", 2)
    auths = event(session_lines(logs), "auth")
    assert [(a["mechanism"], a["result"]) for a in auths] == [
        ("LOGIN", "success"),
        ("PLAIN", "failure"),
        ("PLAIN", "success"),
    ]
    transcript = [
        r.getMessage().partition(" ")[2] for r in logs.records if r.name == "smtpkit.transcript"
    ]
    assert transcript.count("< AUTH LOGIN ****") == 1
    assert transcript.count("< AUTH PLAIN ****") == 1
    assert transcript.count("< AUTH PLAIN") == 1
    assert transcript.count("< ****") == 2  # the LOGIN password, the PLAIN response
    logged = everything(logs)
    for secret in (*SECRETS, LOGIN_USER, wrong, f"{PASSWORD}x"):
        assert secret not in logged


class RefusingHandler(Recorder):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.test>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def test_refused_rcpt(logs: pytest.LogCaptureFixture) -> None:
    with serving(RefusingHandler()) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as client:
            refused = client.sendmail(
                "anne@example.test", ["nobody@example.test", "bob@example.test"], MESSAGE
            )
        assert set(refused) == {"nobody@example.test"}
        wait_for_event(logs, "disconnect")
    records = session_lines(logs)
    refusals = event(records, "refused")
    assert refusals == [
        {**refusals[0], "stage": "rcpt", "reply": "550 5.1.1 <nobody@example.test>: no such user"}
    ]
    line = next(r.getMessage() for r in records if r.smtpkit["event"] == "refused")  # type: ignore[attr-defined]
    assert line.endswith('refused stage=rcpt reply="550 5.1.1 <nobody@example.test>: no such user"')
    accepted = event(records, "accepted")
    assert accepted[0]["to"] == ["bob@example.test"]


class FailingHandler(Recorder):
    """Raises in handle_DATA; handle_exception turns LookupError into a reply."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        subject = "lookup" if b"lookup" in (envelope.original_content or b"") else "crash"
        raise (
            LookupError("mailbox table unavailable")
            if subject == "lookup"
            else RuntimeError("boom")
        )

    def handle_exception(self, error: Exception) -> str | None:
        if isinstance(error, LookupError):
            return "451 4.3.5 Mailbox table unavailable, try later"
        return None


def test_handled_exception_is_info_with_its_reply(logs: pytest.LogCaptureFixture) -> None:
    with serving(FailingHandler()) as server:
        with smtplib.SMTP(HOST, server.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as handled:
                client.sendmail(
                    "a@example.test", ["b@example.test"], "Subject: lookup\r\n\r\nx\r\n"
                )
            assert handled.value.smtp_code == 451
            with pytest.raises(smtplib.SMTPDataError) as unhandled:
                client.sendmail("a@example.test", ["b@example.test"], "Subject: other\r\n\r\nx\r\n")
            assert unhandled.value.smtp_code == 451
        wait_for_event(logs, "disconnect")
    smtp = [r for r in logs.records if r.name == "smtpkit.smtp"]
    info = [r for r in smtp if "handle_exception turned" in r.getMessage()]
    assert len(info) == 1 and info[0].levelno == logging.INFO and info[0].exc_info is None
    assert "LookupError: mailbox table unavailable" in info[0].getMessage()
    assert "451 4.3.5 Mailbox table unavailable, try later" in info[0].getMessage()
    errors = [r for r in smtp if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    data = json.loads(JsonFormatter().format(info[0]))
    assert data["event"] == "exception" and data["level"] == "info"
    assert data["reply"] == "451 4.3.5 Mailbox table unavailable, try later"
    assert data["session"] == session_lines(logs)[0].smtpkit["session"]  # type: ignore[attr-defined]
    refused = event(session_lines(logs), "refused")
    assert [r["stage"] for r in refused] == ["data", "data"]


def test_nothing_followed_when_the_loggers_are_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="smtpkit")
    with serving(Recorder()) as server, smtplib.SMTP(HOST, server.port, timeout=10) as client:
        client.sendmail("a@example.test", ["b@example.test"], MESSAGE)
        followed = server.call(lambda: [p._observed for p in server.protocols])
    assert followed == [None]
    assert not [r for r in caplog.records if r.name in ("smtpkit.session", "smtpkit.transcript")]


# -- smtpkit run: the text and JSON formats on stderr ---------------------------------


def _session_over_cli(tmp_path: Path, *flags: str) -> Command:
    command = Command(["run", "--port=0", f"--maildir={tmp_path / 'mail'}", *flags], cwd=tmp_path)
    port = int(command.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    with smtplib.SMTP(HOST, port, timeout=10) as client:
        client.sendmail("anne@example.test", ["bob@example.test"], MESSAGE)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("anne@example.test", ["bad address@"], MESSAGE)
    return command


def test_cli_text_format(tmp_path: Path) -> None:
    command = _session_over_cli(tmp_path)
    try:
        found = command.wait_for(r"smtpkit\.session: ([A-Z2-7]{8}) disconnect duration=")
        sid = found.group(1)
        command.wait_for(rf"INFO smtpkit\.session: {sid} connect peer=127\.0\.0\.1:\d+ tls=no$")
        command.wait_for(
            rf"INFO smtpkit\.session: {sid} accepted id={sid}\.1 from=anne@example\.test "
            r"to=<bob@example\.test> size=\d+ duration=\d+\.\d{3}s tls=no$"
        )
        command.wait_for(rf"INFO smtpkit\.session: {sid} refused stage=rcpt reply=\"5\d\d ")
        command.wait_for(rf"{sid} disconnect duration=\d+\.\d{{3}}s messages=1 reason=quit$")
    finally:
        command.stop()


def test_cli_json_format(tmp_path: Path) -> None:
    command = _session_over_cli(tmp_path, "--log-format=json")
    try:
        command.wait_for(r'"event": "disconnect"')
    finally:
        command.stop()
    objects = [json.loads(line) for line in command.lines["stderr"] if line.startswith("{")]
    assert objects and len(objects) == len([x for x in command.lines["stderr"] if x.strip()])
    for obj in objects:
        assert list(obj)[:4] == ["time", "level", "logger", "message"]
        assert set(obj) <= {*FIELDS, "exception"}, set(obj) - set(FIELDS)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", obj["time"])
    session = [o for o in objects if o["logger"] == "smtpkit.session"]
    assert [o["event"] for o in session] == ["connect", "accepted", "refused", "disconnect"]
    accepted = session[1]
    assert accepted["from"] == "anne@example.test" and accepted["to"] == ["bob@example.test"]
    assert accepted["level"] == "info" and accepted["message"].startswith(accepted["session"])
    assert session[2]["stage"] == "rcpt" and session[2]["reply"].startswith("5")
    assert session[3]["messages"] == 1


def test_bdat_message_is_one_transaction(logs: pytest.LogCaptureFixture) -> None:
    with serving(Recorder(), chunking=True) as server:
        with RawClient(server.port) as client:
            client.reply()
            client.command("EHLO client.test")
            assert client.command("MAIL FROM:<anne@example.test>")[0] == 250
            assert client.command("RCPT TO:<bob@example.test>")[0] == 250
            # command() ends each with CRLF: chunks of 13 and 9 octets.
            assert client.command("BDAT 13\r\nSubject: hi")[0] == 250
            assert client.command("BDAT 9 LAST\r\n\r\nhello")[0] == 250
            client.command("QUIT")
        wait_for_event(logs, "disconnect")
    records = session_lines(logs)
    assert [r.smtpkit["event"] for r in records] == ["connect", "accepted", "disconnect"]  # type: ignore[attr-defined]
    accepted = event(records, "accepted")[0]
    assert accepted["size"] == 22 and accepted["to"] == ["bob@example.test"]
    transcript = [
        r.getMessage().partition(" ")[2] for r in logs.records if r.name == "smtpkit.transcript"
    ]
    assert "< BDAT 9 LAST" in transcript and "hello" not in "".join(transcript)
