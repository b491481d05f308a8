"""LIMITS (RFC 9422) in the EHLO reply, and the per-session message limit (MAILMAX)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest
from conftest import HOST, RawClient, Recorder, ServerFactory

from smtpkit.config import LimitsConfig, ServerConfig
from smtpkit.lmtp import LMTP
from smtpkit.smtp import SMTP

MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


def _ehlo(client: RawClient) -> list[str]:
    client.send("EHLO client.example\r\n")
    return client.reply()


def _message(client: RawClient, command: str = "DATA") -> list[str]:
    """Send one message; return the lines after the reply to its end of data."""
    assert client.command("MAIL FROM:<a@example.com>").startswith("250")
    assert client.command("RCPT TO:<b@example.com>").startswith("250")
    if command == "BDAT":
        body = MESSAGE.encode()
        client.send(f"BDAT {len(body)} LAST\r\n".encode() + body)
        return client.reply()
    assert client.command("DATA").startswith("354")
    client.send(MESSAGE + ".\r\n")
    return client.reply()


def test_limits_line_with_rcptmax(server: ServerFactory, raw: Callable[..., RawClient]) -> None:
    running = server(Recorder(), limits_extension=True, max_recipients=150)
    assert "250-LIMITS RCPTMAX=150" in _ehlo(raw(running.port))


def test_limits_line_with_mailmax(server: ServerFactory, raw: Callable[..., RawClient]) -> None:
    running = server(Recorder(), limits_extension=True, max_messages_per_session=3)
    assert "250-LIMITS RCPTMAX=1000 MAILMAX=3" in _ehlo(raw(running.port))


def test_off_on_the_bare_class_on_in_server_config(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    bare = server(Recorder())
    assert not any("LIMITS" in line for line in _ehlo(raw(bare.port)))
    config = ServerConfig(limits=LimitsConfig(max_recipients=200, max_messages_per_session=5))
    configured = server(Recorder(), config=config)
    assert "250-LIMITS RCPTMAX=200 MAILMAX=5" in _ehlo(raw(configured.port))
    off = server(Recorder(), config=ServerConfig(limits_extension=False))
    assert not any("LIMITS" in line for line in _ehlo(raw(off.port)))


def test_smtplib_reads_the_keyword(server: ServerFactory) -> None:
    running = server(Recorder(), limits_extension=True, max_messages_per_session=2)
    with smtplib.SMTP(HOST, running.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.esmtp_features["limits"] == "RCPTMAX=1000 MAILMAX=2"


@pytest.mark.parametrize("command", ["DATA", "BDAT"])
def test_after_the_last_message_421_and_close(
    server: ServerFactory, raw: Callable[..., RawClient], command: str
) -> None:
    recorder = Recorder()
    running = server(
        recorder, max_messages_per_session=2, chunking=True, enhanced_status_codes=True
    )
    client = raw(running.port)
    _ehlo(client)
    assert _message(client, command) == ["250 2.0.0 OK"]
    assert client.command("RSET") == "250 2.0.0 OK"
    assert _message(client, command) == ["250 2.0.0 OK"]
    assert client.line() == "421 4.7.0 smtp.example.test Error: too many messages in one session"
    assert client.closed()
    assert len(recorder.envelopes) == 2


def test_refused_transactions_do_not_count(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    running = server(Recorder(), max_messages_per_session=1)
    client = raw(running.port)
    _ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>").startswith("250")
    assert client.command("DATA").startswith("503")  # no recipient: no message
    assert client.command("RSET").startswith("250")
    assert _message(client) == ["250 OK"]
    assert client.line().startswith("421 4.7.0 ")


def test_without_a_limit_sessions_go_on(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    client = raw(server(Recorder(), max_messages_per_session=0).port)
    _ehlo(client)
    for _ in range(5):
        assert _message(client) == ["250 OK"]
    assert client.command("NOOP") == "250 OK"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"max_messages_per_session = -1: expected an integer >= 0"
    ):
        SMTP(Recorder(), max_messages_per_session=-1)
    with pytest.raises(TypeError, match="max_messages_per_session = '3': expected an integer"):
        SMTP(Recorder(), max_messages_per_session="3")
    with pytest.raises(TypeError, match="limits_extension = 1: expected True or False"):
        SMTP(Recorder(), limits_extension=1)
    with pytest.raises(ValueError, match=r"limits\.max_messages_per_session = -2"):
        LimitsConfig(max_messages_per_session=-2)


def test_lmtp_counts_messages_too(server: ServerFactory, raw: Callable[..., RawClient]) -> None:
    recorder = Recorder()
    running = server(recorder, cls=LMTP, limits_extension=True, max_messages_per_session=2)
    client = raw(running.port)
    client.send("LHLO client.example\r\n")
    assert "250-LIMITS RCPTMAX=1000 MAILMAX=2" in client.reply()
    assert _message(client) == ["250 OK"]  # one reply per recipient: one recipient
    assert _message(client) == ["250 OK"]
    assert client.line() == "421 4.7.0 smtp.example.test Error: too many messages in one session"
    assert client.closed()
    assert len(recorder.envelopes) == 2
