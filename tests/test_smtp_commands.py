"""The commands of the SMTP class and the replies clients depend on.

Every table runs through both standard clients (smtplib and aiosmtplib) on
both event loops (asyncio and uvloop), against a real server on loopback.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import aiosmtplib
import pytest
import trustme
from conftest import HOST, LOOP_KINDS, Data, RawClient, Recorder, Step

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

Talk = Callable[[int, list[Step]], list[str]]

MESSAGE = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
SUPPORTED = "Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"


# -- The greeting and HELO/EHLO ----------------------------------------------


def test_greeting_names_hostname_and_ident(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(hostname="mx.example.test", ident="Test ident 1.0")
    client = raw(running.port, greeting=False)
    assert client.line() == "220 mx.example.test Test ident 1.0"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["HELO"], "501 Syntax: HELO hostname"),
        (["HELO client.test"], "250 smtp.example.test"),
        (["EHLO"], "501 Syntax: EHLO hostname"),
        (["NOOP"], "250 OK"),
        (["NOOP anything at all"], "250 OK"),
        (["EXPN list@example.com"], "502 EXPN not implemented"),
        (["FROB"], '500 Error: command "FROB" not recognized'),
        (["frob x"], '500 Error: command "FROB" not recognized'),
        (["VRFY"], "501 Syntax: VRFY <address>"),
        (
            ["VRFY anne@example.com"],
            "252 Cannot VRFY user, but will accept message and attempt delivery",
        ),
        (
            ["VRFY <anne@example.com>"],
            "252 Cannot VRFY user, but will accept message and attempt delivery",
        ),
        (["RSET"], "250 OK"),
        (["RSET now"], "501 Syntax: RSET"),
        (["HELP"], f"250 {SUPPORTED}"),
        (["HELP FROB"], f"501 {SUPPORTED}"),
        (["HELP MAIL"], "250 Syntax: MAIL FROM: <address>"),
        (
            ["EHLO client.test", "HELP MAIL"],
            "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        ),
        (["HELP RCPT"], "250 Syntax: RCPT TO: <address>"),
        (["HELP NOOP"], "250 Syntax: NOOP [ignored]"),
        (["HELP HELO"], "250 Syntax: HELO hostname"),
        (["HELP STARTTLS"], f"501 {SUPPORTED}"),
    ],
)
def test_simple_replies(server: Any, talk: Talk, lines: list[str], expected: str) -> None:
    running = server()
    assert talk(running.port, lines)[-1] == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # Nothing happens before the client greets.
        (["MAIL FROM:<a@example.com>"], "503 Error: send HELO first"),
        (["RCPT TO:<a@example.com>"], "503 Error: send HELO first"),
        (["DATA"], "503 Error: send HELO first"),
        # Then the transaction goes MAIL, RCPT, DATA.
        (["HELO c", "RCPT TO:<b@example.com>"], "503 Error: need MAIL command"),
        (["HELO c", "DATA"], "503 Error: need RCPT command"),
        (["HELO c", "MAIL FROM:<a@example.com>", "DATA"], "503 Error: need RCPT command"),
        (
            ["HELO c", "MAIL FROM:<a@example.com>", "MAIL FROM:<c@example.com>"],
            "503 Error: nested MAIL command",
        ),
        (
            ["HELO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"],
            "354 End data with <CR><LF>.<CR><LF>",
        ),
        # RSET ends the transaction.
        (
            ["HELO c", "MAIL FROM:<a@example.com>", "RSET", "RCPT TO:<b@example.com>"],
            "503 Error: need MAIL command",
        ),
        # A new HELO/EHLO ends it too.
        (
            ["HELO c", "MAIL FROM:<a@example.com>", "EHLO c", "RCPT TO:<b@example.com>"],
            "503 Error: need MAIL command",
        ),
        (["HELO c", "MAIL FROM:<a@example.com>", "DATA x"], "503 Error: need RCPT command"),
        (
            ["HELO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA x"],
            "501 Syntax: DATA",
        ),
    ],
)
def test_transaction_order(server: Any, talk: Talk, lines: list[str], expected: str) -> None:
    running = server()
    assert talk(running.port, lines)[-1] == expected


@pytest.mark.parametrize(
    ("greeting", "line", "expected"),
    [
        ("HELO c", "MAIL", "501 Syntax: MAIL FROM: <address>"),
        ("HELO c", "MAIL TO:<a@example.com>", "501 Syntax: MAIL FROM: <address>"),
        ("HELO c", "MAIL FROM:", "501 Syntax: MAIL FROM: <address>"),
        ("EHLO c", "MAIL", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"),
        ("EHLO c", "MAIL FROM:", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"),
        # Parameters need EHLO.
        ("HELO c", "MAIL FROM:<a@example.com> SIZE=10", "501 Syntax: MAIL FROM: <address>"),
        ("HELO c", "MAIL FROM:<a@example.com>", "250 OK"),
        ("HELO c", "MAIL from:<a@example.com>", "250 OK"),
        ("HELO c", "MAIL FROM: <a@example.com>", "250 OK"),
        ("HELO c", "MAIL FROM:a@example.com", "250 OK"),
        ("HELO c", "MAIL FROM:<>", "250 OK"),
        ("HELO c", "MAIL FROM:<a@example.com", "553 5.1.3 Error: malformed address"),
        ("HELO c", "MAIL FROM:<a b@example.com>", "553 5.1.3 Error: malformed address"),
        ("HELO c", "MAIL FROM:<@example.com>", "553 5.1.3 Error: malformed address"),
        ("EHLO c", "MAIL FROM:<a@example.com> BODY=7BIT", "250 OK"),
        ("EHLO c", "MAIL FROM:<a@example.com> BODY=8BITMIME", "250 OK"),
        ("EHLO c", "MAIL FROM:<a@example.com> body=8bitmime", "250 OK"),
        (
            "EHLO c",
            "MAIL FROM:<a@example.com> BODY=9BIT",
            "501 Error: BODY can only be one of 7BIT, 8BITMIME",
        ),
        ("EHLO c", "MAIL FROM:<a@example.com> SIZE=1000", "250 OK"),
        (
            "EHLO c",
            "MAIL FROM:<a@example.com> SIZE=33554433",
            "552 Error: message size exceeds fixed maximum message size",
        ),
        (
            "EHLO c",
            "MAIL FROM:<a@example.com> SIZE=big",
            "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        ),
        ("EHLO c", "MAIL FROM:<a@example.com> SMTPUTF8", "501 Error: SMTPUTF8 disabled"),
        (
            "EHLO c",
            "MAIL FROM:<a@example.com> FOO=BAR",
            "555 MAIL FROM parameters not recognized or not implemented",
        ),
        (
            "EHLO c",
            "MAIL FROM:<a@example.com> =BAR",
            "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        ),
    ],
)
def test_mail(server: Any, talk: Talk, greeting: str, line: str, expected: str) -> None:
    running = server()
    assert talk(running.port, [greeting, line])[-1] == expected


@pytest.mark.parametrize(
    ("greeting", "line", "expected"),
    [
        ("HELO c", "RCPT", "501 Syntax: RCPT TO: <address>"),
        ("HELO c", "RCPT FROM:<b@example.com>", "501 Syntax: RCPT TO: <address>"),
        ("EHLO c", "RCPT", "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]"),
        ("HELO c", "RCPT TO:<b@example.com>", "250 OK"),
        ("HELO c", "RCPT to: <b@example.com>", "250 OK"),
        ("HELO c", "RCPT TO:<>", "553 5.1.3 Error: malformed address"),
        ("HELO c", "RCPT TO:<b@example.com", "553 5.1.3 Error: malformed address"),
        (
            "EHLO c",
            "RCPT TO:<b@example.com> NOTIFY=NEVER",
            "555 RCPT TO parameters not recognized or not implemented",
        ),
        ("HELO c", "RCPT TO:<b@example.com> NOTIFY=NEVER", "501 Syntax: RCPT TO: <address>"),
    ],
)
def test_rcpt(server: Any, talk: Talk, greeting: str, line: str, expected: str) -> None:
    running = server()
    replies = talk(running.port, [greeting, "MAIL FROM:<a@example.com>", line])
    assert replies[1] == "250 OK"
    assert replies[2] == expected


def test_ehlo_advertises_extensions(server: Any, talk: Talk) -> None:
    running = server()
    reply = talk(running.port, ["EHLO client.test"])[0]
    assert reply.split("\n") == [
        "250 smtp.example.test",
        "SIZE 33554432",
        "8BITMIME",
        "PIPELINING",
        "HELP",
    ]


def test_ehlo_with_smtputf8_and_decode_data(server: Any, talk: Talk) -> None:
    running = server(enable_SMTPUTF8=True, decode_data=True, data_size_limit=1000)
    lines = talk(running.port, ["EHLO client.test"])[0].split("\n")
    assert lines == ["250 smtp.example.test", "SIZE 1000", "SMTPUTF8", "PIPELINING", "HELP"]


def test_ehlo_without_size_limit(server: Any, talk: Talk) -> None:
    running = server(data_size_limit=None)
    lines = talk(running.port, ["EHLO client.test"])[0].split("\n")
    assert not [line for line in lines if line.startswith("SIZE")]
    assert "8BITMIME" in lines


def test_mail_size_over_a_small_limit(server: Any, talk: Talk) -> None:
    running = server(data_size_limit=100)
    replies = talk(
        running.port,
        ["EHLO c", "MAIL FROM:<a@example.com> SIZE=101", "MAIL FROM:<a@example.com> SIZE=100"],
    )
    assert replies[1:] == [
        "552 Error: message size exceeds fixed maximum message size",
        "250 OK",
    ]


def test_smtputf8_when_enabled(server: Any, talk: Talk) -> None:
    running = server(enable_SMTPUTF8=True)
    replies = talk(running.port, ["EHLO c", "MAIL FROM:<a@example.com> SMTPUTF8"])
    assert replies[1] == "250 OK"


def test_help_lists_starttls_with_tls_context(server: Any, talk: Talk) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(context)
    running = server(tls_context=context)
    replies = talk(running.port, ["HELP", "HELP STARTTLS", "EHLO c"])
    assert replies[0] == (
        "250 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
    )
    assert replies[1] == "250 Syntax: STARTTLS"
    assert "STARTTLS" in replies[2].split("\n")


def test_help_lists_a_subclass_command(server: Any, talk: Talk) -> None:
    from smtpkit.smtp import SMTP, syntax

    class PingServer(SMTP):
        @syntax("PING [ignored]")
        async def smtp_PING(self, arg: str | None) -> None:
            await self.push("259 Pong")

    running = server(cls=PingServer)
    replies = talk(running.port, ["PING", "HELP", "HELP PING"])
    assert replies == [
        "259 Pong",
        "250 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP PING QUIT RCPT RSET VRFY",
        "250 Syntax: PING [ignored]",
    ]


# -- QUIT and closing --------------------------------------------------------


def test_quit_says_bye_and_closes(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    assert client.command("QUIT") == "221 Bye"
    assert client.closed()


def test_smtplib_quit(server: Any) -> None:
    running = server()
    client = smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5)
    assert client.quit() == (221, b"Bye")


def test_aiosmtplib_quit(server: Any) -> None:
    running = server()

    async def main() -> aiosmtplib.SMTPResponse:
        client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
        await client.connect()
        return await client.quit()

    response = asyncio.run(main())
    assert (response.code, response.message) == (221, "Bye")


def test_fifth_unknown_command_closes(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    for number in range(4):
        assert (
            client.command(f"BOGUS{number}") == f'500 Error: command "BOGUS{number}" not recognized'
        )
    assert client.command("NOOP") == "250 OK"
    assert client.command("BOGUS4") == "502 5.5.1 Too many unrecognized commands, goodbye."
    assert client.closed()


@pytest.mark.parametrize("client_kind", ["smtplib", "aiosmtplib"])
def test_fifth_unknown_command_with_clients(server: Any, client_kind: str) -> None:
    running = server()
    lines = [f"X{n}" for n in range(5)]
    if client_kind == "smtplib":
        with smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5) as client:
            replies = [client.docmd(line) for line in lines]
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.docmd("NOOP")
        assert replies[-1] == (502, b"5.5.1 Too many unrecognized commands, goodbye.")
        assert replies[0] == (500, b'Error: command "X0" not recognized')
    else:

        async def main() -> list[aiosmtplib.SMTPResponse]:
            client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
            await client.connect()
            replies = [await client.execute_command(line.encode()) for line in lines]
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await client.execute_command(b"NOOP")
            return replies

        replies = asyncio.run(main())
        assert (replies[-1].code, replies[-1].message) == (
            502,
            "5.5.1 Too many unrecognized commands, goodbye.",
        )


# -- Line limits -------------------------------------------------------------


def test_command_line_too_long(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    assert client.command("NOOP " + "x" * 600) == "500 Command line too long"
    assert client.command("NOOP " + "x" * 100_000) == "500 Command line too long"
    assert client.command("NOOP " + "x" * 500) == "250 OK"


def test_command_line_too_long_with_clients(server: Any, talk: Talk) -> None:
    running = server()
    replies = talk(running.port, ["NOOP " + "x" * 2000, "NOOP"])
    assert replies == ["500 Command line too long", "250 OK"]


def test_empty_line_is_bad_syntax(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    assert client.command("") == "500 Error: bad syntax"
    assert client.command("NOOP") == "250 OK"


def test_non_ascii_argument_in_strict_mode(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server()
    client = raw(running.port)
    client.send("HELO c\r\nMAIL FROM:<jörg@example.com>\r\n".encode())
    assert client.lines(2) == ["250 smtp.example.test", "500 Error: strict ASCII mode"]


def test_utf8_address_with_smtputf8(server: Any, talk: Talk, recorder: Recorder) -> None:
    running = server(recorder, enable_SMTPUTF8=True)
    replies = talk(
        running.port,
        [
            "EHLO c",
            "MAIL FROM:<jörg@exämple.com> SMTPUTF8",
            "RCPT TO:<zoë@example.com>",
        ],
    )
    assert replies[1:] == ["250 OK", "250 OK"]


# -- Whole messages ----------------------------------------------------------


def test_smtplib_sendmail(server: Any, recorder: Recorder) -> None:
    running = server(recorder)
    with smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5) as client:
        refused = client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
    assert refused == {}
    (envelope,) = recorder.envelopes
    assert envelope.mail_from == "a@example.com"
    assert envelope.rcpt_tos == ["b@example.com", "c@example.com"]
    assert envelope.content == MESSAGE.encode()


def test_aiosmtplib_sendmail(server: Any, recorder: Recorder) -> None:
    running = server(recorder)

    async def main() -> Any:
        client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
        async with client:
            return await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)

    errors, message = asyncio.run(main())
    assert errors == {}
    assert message == "OK"
    (envelope,) = recorder.envelopes
    assert envelope.content == MESSAGE.encode()
    assert envelope.mail_from == "a@example.com"


def test_null_reverse_path_is_kept(
    server: Any, raw: Callable[..., RawClient], recorder: Recorder
) -> None:
    running = server(recorder)
    client = raw(running.port)
    client.send("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert client.lines(4)[1:] == ["250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>"]
    assert client.command("bounce\r\n.") == "250 OK"
    assert recorder.envelopes[0].mail_from == "<>"


def test_too_much_mail_data(server: Any, talk: Talk, recorder: Recorder) -> None:
    running = server(recorder, data_size_limit=100)
    replies = talk(
        running.port,
        [
            "HELO c",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            Data(("x" * 60 + "\r\n") * 3),
            "NOOP",
        ],
    )
    assert replies[3:] == [
        "552 Error: Too much mail data",
        "250 OK",
    ]
    assert recorder.envelopes == []


def test_data_line_too_long(server: Any, talk: Talk, recorder: Recorder) -> None:
    running = server(recorder)
    replies = talk(
        running.port,
        [
            "HELO c",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            Data("short\r\n" + "y" * 1000 + "\r\nshort again\r\n"),
            "MAIL FROM:<a@example.com>",
        ],
    )
    assert replies[3:] == ["500 Line too long (see RFC5321 4.5.3.1.6)", "250 OK"]
    assert recorder.envelopes == []


def test_data_line_at_the_limit_is_accepted(server: Any, talk: Talk, recorder: Recorder) -> None:
    running = server(recorder)
    line = "y" * 999  # 999 octets + CRLF = 1001, the limit.
    replies = talk(
        running.port,
        ["HELO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", Data(line + "\r\n")],
    )
    assert replies[3] == "250 OK"
    assert recorder.envelopes[0].content == (line + "\r\n").encode()


# -- The idle timeout --------------------------------------------------------


def test_idle_session_times_out(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(timeout=0.5)
    client = raw(running.port)
    assert client.command("HELO c") == "250 smtp.example.test"
    # Wait (up to the client's read timeout) for the server to give up.
    assert client.line() == "421 4.4.2 smtp.example.test Error: timeout exceeded"
    assert client.closed()


def test_idle_session_times_out_before_greeting(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(timeout=0.5)
    client = raw(running.port)
    assert client.line() == "421 4.4.2 smtp.example.test Error: timeout exceeded"
    assert client.closed()


def test_timeout_with_smtplib(server: Any) -> None:
    running = server(timeout=0.5)
    client = smtplib.SMTP(HOST, running.port, local_hostname="c", timeout=5)
    try:
        assert client.noop()[0] == 250
        # The 421 arrives by itself; getreply() reads it without sending anything.
        assert client.getreply() == (421, b"4.4.2 smtp.example.test Error: timeout exceeded")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.getreply()
    finally:
        client.close()


def test_timeout_with_aiosmtplib(server: Any) -> None:
    running = server(timeout=0.5)

    async def main() -> None:
        client = aiosmtplib.SMTP(hostname=HOST, port=running.port, start_tls=False)
        await client.connect()
        assert (await client.noop()).code == 250
        await asyncio.sleep(1.0)
        with pytest.raises(aiosmtplib.SMTPException) as raised:
            await client.noop()
        error = raised.value
        assert isinstance(error, aiosmtplib.SMTPServerDisconnected) or (
            getattr(error, "code", None) == 421
        )

    asyncio.run(main())


def test_commands_keep_the_session_alive(server: Any, raw: Callable[..., RawClient]) -> None:
    # Five commands 0.3 s apart outlast the 1.2 s timeout; each one resets it.
    running = server(timeout=1.2)
    client = raw(running.port)
    for _ in range(5):
        assert client.silent(0.3)
        assert client.command("NOOP") == "250 OK"
    assert client.line().startswith("421 4.4.2 ")


# -- command_call_limit ------------------------------------------------------


def test_call_limit_for_every_command(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(command_call_limit=3)
    client = raw(running.port)
    for _ in range(3):
        assert client.command("NOOP") == "250 OK"
    assert client.command("HELO c") == "250 smtp.example.test"
    assert client.command("NOOP") == "421 4.7.0 NOOP sent too many times"
    assert client.closed()


def test_call_limit_per_command(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(command_call_limit={"NOOP": 2, "*": 4})
    client = raw(running.port)
    client.send("NOOP\r\nNOOP\r\nRSET\r\nRSET\r\nRSET\r\nRSET\r\nNOOP\r\n")
    assert client.lines(7) == [
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "421 4.7.0 NOOP sent too many times",
    ]
    assert client.closed()


def test_call_limit_default_for_commands_not_named(
    server: Any, raw: Callable[..., RawClient]
) -> None:
    running = server(command_call_limit={"NOOP": 1})
    client = raw(running.port)
    client.send("RSET\r\n" * 21)
    lines = client.lines(21)
    assert lines[:20] == ["250 OK"] * 20  # CALL_LIMIT_DEFAULT
    assert lines[20] == "421 4.7.0 RSET sent too many times"
    assert client.closed()


def test_call_limit_with_clients(server: Any, talk: Talk) -> None:
    running = server(command_call_limit={"VRFY": 1})
    with pytest.raises((smtplib.SMTPServerDisconnected, aiosmtplib.SMTPServerDisconnected)):
        talk(running.port, ["VRFY a@example.com", "VRFY b@example.com", "NOOP"])
    replies = talk(running.port, ["VRFY a@example.com", "VRFY b@example.com"])
    assert replies[1] == "421 4.7.0 VRFY sent too many times"


# -- Bytes the standard clients will not send ----------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NOOP \x00x", "501 5.5.2 Syntax error: NUL or bare CR in command"),
        (b"NO\rOP", "501 5.5.2 Syntax error: NUL or bare CR in command"),
        (b"\x80FAIL", "500 Error: bad syntax"),
        (b"\x80 FAIL", "500 Error: bad syntax"),
        (b"NOOP \xff", "500 Error: strict ASCII mode"),
        (b"   ", '500 Error: command "" not recognized'),
        (b"noop", "250 OK"),
        (b"NOOP", "250 OK"),  # ended by a bare LF
        (b"VRFY <a b>", "502 Could not VRFY <a b>"),
        (b"QUIT now", "501 Syntax: QUIT"),
        (b"STARTTLS", "454 TLS not available"),
    ],
)
def test_raw_command_lines(
    server: Any, raw: Callable[..., RawClient], line: bytes, expected: str
) -> None:
    running = server()
    client = raw(running.port)
    ending = b"\n" if line == b"NOOP" else b"\r\n"
    client.send(line + ending)
    assert client.line() == expected
    assert client.command("NOOP") == "250 OK"


def test_invalid_utf8_with_smtputf8(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(enable_SMTPUTF8=True)
    client = raw(running.port)
    client.send(b"NOOP \xff\xfe\r\n")
    assert client.line() == "500 5.5.2 Error: invalid UTF-8 in command"
