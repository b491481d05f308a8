"""PIPELINING (RFC 2920): many commands in one write, every reply, in order."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest
from conftest import HOST, LOOP_KINDS, RawClient, Recorder

from smtpkit.smtp import SMTP, Envelope, Session

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)


class Echo(Recorder):
    """Replies name their command and argument, so order is visible."""

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
    ) -> str:
        return f"250 noop {arg}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        return f"250 mail {address}"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return f"250 rcpt {address}"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 rset"


def burst(count: int) -> tuple[bytes, list[str]]:
    """``count`` NOOP/MAIL/RCPT/RSET lines and the replies they must get."""
    lines, replies = [], []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            lines.append(f"NOOP {n}")
            replies.append(f"250 noop {n}")
        elif kind == 1:
            lines.append(f"MAIL FROM:<s{n}@example.com>")
            replies.append(f"250 mail s{n}@example.com")
        elif kind == 2:
            lines.append(f"RCPT TO:<r{n}@example.com>")
            replies.append(f"250 rcpt r{n}@example.com")
        else:
            lines.append("RSET")
            replies.append("250 rset")
    return ("".join(line + "\r\n" for line in lines)).encode(), replies


def test_ehlo_advertises_pipelining(server: Any) -> None:
    running = server()
    with smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5) as client:
        client.ehlo()
        assert client.has_extn("pipelining")


def test_two_thousand_commands_in_one_write(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(Echo())
    client = raw(running.port)
    data, expected = burst(2000)
    client.send(b"EHLO client.test\r\n" + data)
    ehlo = client.reply()
    assert ehlo[-1] == "250 HELP"
    assert client.lines(len(expected)) == expected
    assert client.silent(0.2)
    assert client.command("NOOP last") == "250 noop last"


def test_a_large_burst_while_reading(server: Any, raw: Callable[..., RawClient]) -> None:
    # Bigger than the socket buffers: the server must pause and resume
    # reading without losing or reordering anything. The client writes from
    # a thread and reads at the same time, as RFC 2920 asks of clients.
    running = server(Echo())
    client = raw(running.port, timeout=20)
    data, expected = burst(20_000)
    sender = threading.Thread(target=client.send, args=(b"HELO c\r\n" + data,))
    sender.start()
    assert client.line() == "250 smtp.example.test"
    assert client.lines(len(expected)) == expected
    sender.join(10)
    assert not sender.is_alive()


def test_whole_transactions_in_one_write(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder
) -> None:
    running = server(recorder)
    client = raw(running.port)
    transactions = b"".join(
        b"MAIL FROM:<a%d@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        b"Subject: %d\r\n\r\n..body %d\r\n.\r\n" % (n, n, n)
        for n in range(50)
    )
    client.send(b"EHLO c\r\n" + transactions + b"QUIT\r\n")
    client.reply()
    expected = ["250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>", "250 OK"] * 50
    assert client.lines(len(expected)) == expected
    assert client.line() == "221 Bye"
    assert client.closed()
    assert [envelope.mail_from for envelope in recorder.envelopes] == [
        f"a{n}@example.com" for n in range(50)
    ]
    assert [envelope.content for envelope in recorder.envelopes] == [
        b"Subject: %d\r\n\r\n.body %d\r\n" % (n, n) for n in range(50)
    ]


def test_errors_in_a_pipeline_do_not_stop_it(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    client.send(
        b"EHLO c\r\n"
        b"MAIL FROM:<a@example.com> BODY=WRONG\r\n"
        b"RCPT TO:<b@example.com>\r\n"
        b"MAIL FROM:<a@example.com>\r\n"
        b"RCPT TO:<b@example.com\r\n"
        b"RCPT TO:<b@example.com>\r\n"
        b"FROB\r\n"
        b"\r\n"
        b"NOOP " + b"x" * 2000 + b"\r\n"
        b"NOOP\r\n"
    )
    client.reply()
    assert client.lines(9) == [
        "501 Error: BODY can only be one of 7BIT, 8BITMIME",
        "503 Error: need MAIL command",
        "250 OK",
        "553 5.1.3 Error: malformed address",
        "250 OK",
        '500 Error: command "FROB" not recognized',
        "500 Error: bad syntax",
        "500 Command line too long",
        "250 OK",
    ]


def test_commands_split_across_writes(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(Echo())
    client = raw(running.port)
    data, expected = burst(40)
    data = b"HELO c\r\n" + data
    expected = ["250 smtp.example.test", *expected]
    for start in range(0, len(data), 7):
        client.send(data[start : start + 7])
    assert client.lines(len(expected)) == expected


def test_client_closing_after_a_burst_still_gets_every_reply(
    server: Any, raw: Callable[..., RawClient]
) -> None:
    running = server(Echo())
    client = raw(running.port)
    data, expected = burst(500)
    client.send(b"HELO c\r\n" + data)
    assert client.line() == "250 smtp.example.test"
    client.sock.shutdown(socket.SHUT_WR)
    assert client.lines(len(expected)) == expected
    assert client.closed()


def test_aiosmtplib_sendmail_many_recipients(server: Any, recorder: Recorder) -> None:
    running = server(recorder)
    recipients = [f"r{n}@example.com" for n in range(300)]

    async def main() -> Any:
        client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
        async with client:
            return await client.sendmail("a@example.com", recipients, "x\r\n")

    errors, _ = asyncio.run(main())
    assert errors == {}
    assert recorder.envelopes[0].rcpt_tos == recipients


def test_commands_wait_for_a_slow_hook(server: Any, raw: Callable[..., RawClient]) -> None:
    class Slow(Recorder):
        async def handle_NOOP(
            self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
        ) -> str:
            await asyncio.sleep(0.05)
            return f"250 slow {arg}"

    running = server(Slow())
    client = raw(running.port)
    client.send(b"NOOP 1\r\n")
    client.send(b"NOOP 2\r\nRSET\r\nNOOP 3\r\n")
    client.send(b"NOOP 4\r\nQUIT\r\n")
    assert client.lines(6) == [
        "250 slow 1",
        "250 slow 2",
        "250 OK",
        "250 slow 3",
        "250 slow 4",
        "221 Bye",
    ]
    assert client.closed()


def test_message_then_half_close(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder
) -> None:
    running = server(recorder)
    client = raw(running.port)
    client.send(
        b"HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n"
    )
    client.sock.shutdown(socket.SHUT_WR)
    assert client.lines(5)[-1] == "250 OK"
    assert client.closed()
    assert recorder.envelopes[0].content == b"hi\r\n"
