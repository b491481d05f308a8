"""The command layer as dialogs: greeting, HELO/EHLO, a transaction, and every refusal.

Each case is a table of ``(bytes in, replies out)`` played against the bare
``SMTP`` class on a fake transport (see :mod:`dialog.harness`). The bare class
sends aiosmtpd's reply texts, so they are checked whole.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from conftest import Recorder

from dialog.harness import CLOSED, OPEN, Dialog, Step, code, prefix, run_dialog
from dialog.scripts import GREETING, HELO, HOSTNAME, IN_DATA, server

EHLO_SYNTAX = " [SP <mail-parameters>]"
MAIL_SYNTAX = "501 Syntax: MAIL FROM: <address>"
RCPT_SYNTAX = "501 Syntax: RCPT TO: <address>"
MALFORMED = "553 5.1.3 Error: malformed address"


def test_greeting_names_the_host() -> None:
    run_dialog(server(), [(b"", [GREETING]), OPEN])


def test_greeting_uses_the_ident() -> None:
    run_dialog(server(ident="Mail Service 1.0"), [(b"", [f"220 {HOSTNAME} Mail Service 1.0"])])


@pytest.mark.parametrize(
    ("line", "replies"),
    [
        (b"HELO client.test\r\n", [f"250 {HOSTNAME}"]),
        (b"helo client.test\r\n", [f"250 {HOSTNAME}"]),
        (b"HELO client.test\n", [f"250 {HOSTNAME}"]),
        (b"HELO\r\n", ["501 Syntax: HELO hostname"]),
        (b"HELO   \r\n", ["501 Syntax: HELO hostname"]),
        (b"EHLO\r\n", ["501 Syntax: EHLO hostname"]),
    ],
)
def test_helo(line: bytes, replies: list[str]) -> None:
    run_dialog(server(), [(b"", [GREETING]), (line, replies)])


def test_ehlo_lists_the_extensions() -> None:
    with Dialog(server()) as talk:
        talk.replies()
        lines = talk.send(b"EHLO client.test\r\n")
    assert lines[0] == f"250-{HOSTNAME}"
    assert lines[-1] == "250 HELP"
    assert all(line.startswith("250-") for line in lines[:-1])
    extensions = {line[4:] for line in lines[1:-1]}
    assert {"SIZE 33554432", "8BITMIME", "PIPELINING"} <= extensions
    assert "STARTTLS" not in extensions  # no tls_context
    assert "SMTPUTF8" not in extensions


def test_ehlo_follows_the_settings() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    factory = server(data_size_limit=None, enable_SMTPUTF8=True, tls_context=context)
    with Dialog(factory) as talk:
        talk.replies()
        extensions = {line[4:] for line in talk.send(b"EHLO client.test\r\n")}
    assert {"SMTPUTF8", "STARTTLS"} <= extensions
    assert not any(name.startswith("SIZE") for name in extensions)


def test_a_transaction_is_delivered() -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder),
        [
            (b"", [GREETING]),
            (b"EHLO client.test\r\n", [code(250)] * 4 + ["250 HELP"]),
            (b"MAIL FROM:<anne@example.com> SIZE=20 BODY=8BITMIME\r\n", ["250 OK"]),
            (b"RCPT TO:<bart@example.com>\r\n", ["250 OK"]),
            (b"RCPT TO:<cleo@example.com>\r\n", ["250 OK"]),
            (b"DATA\r\n", ["354 End data with <CR><LF>.<CR><LF>"]),
            (b"Subject: hi\r\n\r\nHello.\r\n.\r\n", ["250 OK"]),
            (b"QUIT\r\n", ["221 Bye"]),
            CLOSED,
        ],
    )
    (envelope,) = recorder.envelopes
    assert envelope.mail_from == "anne@example.com"
    assert envelope.mail_options == ["SIZE=20", "BODY=8BITMIME"]
    assert envelope.rcpt_tos == ["bart@example.com", "cleo@example.com"]
    assert envelope.content == b"Subject: hi\r\n\r\nHello.\r\n"
    assert recorder.sessions[0].host_name == "client.test"


def test_two_transactions_on_one_connection() -> None:
    recorder = Recorder()
    one = [
        (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"]),
        (b"RCPT TO:<bart@example.com>\r\n", ["250 OK"]),
        (b"DATA\r\n", ["354 End data with <CR><LF>.<CR><LF>"]),
    ]
    run_dialog(
        server(recorder),
        [*HELO, *one, (b"first\r\n.\r\n", ["250 OK"]), *one, (b"second\r\n.\r\n", ["250 OK"])],
    )
    assert [e.content for e in recorder.envelopes] == [b"first\r\n", b"second\r\n"]


PIPELINED = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<anne@example.com>\r\n"
    b"RCPT TO:<bart@example.com>\r\n"
    b"RCPT TO:<cleo@example.com>\r\n"
    b"DATA\r\n"
)


def test_a_pipelined_batch_is_answered_in_one_write() -> None:
    with Dialog(server()) as talk:
        talk.replies()
        before = len(talk.transport.writes)
        lines = talk.send(PIPELINED)
        assert lines[-4:] == ["250 OK", "250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>"]
        assert lines[-5] == "250 HELP"
        # RFC 2920: the replies to a batch may, and here do, leave together.
        assert len(talk.transport.writes) == before + 1
        assert talk.send(b"body\r\n.\r\nNOOP\r\nQUIT\r\n") == ["250 OK", "250 OK", "221 Bye"]
        assert talk.state() is CLOSED


def test_a_command_split_over_reads_is_answered_once_whole() -> None:
    run_dialog(
        server(),
        [
            (b"", [GREETING]),
            (b"HE", []),
            (b"LO client", []),
            (b".test\r", []),
            (b"\nNO", [f"250 {HOSTNAME}"]),
            (b"OP\r\n", ["250 OK"]),
        ],
    )


def test_pipelined_commands_before_eof_are_answered_then_closed() -> None:
    with Dialog(server()) as talk:
        talk.replies()
        talk.transport.feed(b"HELO client.test\r\nNOOP\r\nNOOP\r\n")
        talk.transport.feed_eof()
        talk.loop.run_until_idle()
        assert talk.replies() == [f"250 {HOSTNAME}", "250 OK", "250 OK"]
        assert talk.state() is CLOSED


# Refusals -------------------------------------------------------------

LONG_ARG = b"x" * 600
#: (what the client sends after HELO, the one reply it gets)
REFUSALS_AFTER_HELO: list[tuple[bytes, str]] = [
    (b"\r\n", "500 Error: bad syntax"),
    (b"XYZZY\r\n", '500 Error: command "XYZZY" not recognized'),
    (b"xyzzy plugh\r\n", '500 Error: command "XYZZY" not recognized'),
    (b"NOOP " + LONG_ARG + b"\r\n", "500 Command line too long"),
    (b"NOOP " + b"x" * 20_000 + b"\r\n", "500 Command line too long"),
    (b"AUTH PLAIN " + LONG_ARG + b"\r\n", "500 5.5.6 Authentication Exchange line is too long"),
    (b"NO\x00OP\r\n", "501 5.5.2 Syntax error: NUL or bare CR in command"),
    (b"NOOP \x00\r\n", "501 5.5.2 Syntax error: NUL or bare CR in command"),
    (b"NO\rOP\r\n", "501 5.5.2 Syntax error: NUL or bare CR in command"),
    (b"N\xc3\x89OP\r\n", "500 Error: bad syntax"),
    (b"NOOP caf\xc3\xa9\r\n", "500 Error: strict ASCII mode"),
    (b"MAIL\r\n", MAIL_SYNTAX),
    (b"MAIL TO:<anne@example.com>\r\n", MAIL_SYNTAX),
    (b"MAIL FROM:<anne@example.com> SIZE=10\r\n", MAIL_SYNTAX),
    (b"MAIL FROM:<anne@@example.com>\r\n", MALFORMED),
    (b"MAIL FROM:<" + b"a" * 250 + b"@example.com>\r\n", "501 5.1.3 Path too long"),
    (b"RCPT TO:<bart@example.com>\r\n", "503 Error: need MAIL command"),
    (b"DATA\r\n", "503 Error: need RCPT command"),
    (b"QUIT now\r\n", "501 Syntax: QUIT"),
    (b"RSET all\r\n", "501 Syntax: RSET"),
    (b"VRFY\r\n", "501 Syntax: VRFY <address>"),
    (b"VRFY <<>\r\n", "502 Could not VRFY <<>"),
    (b"EXPN staff\r\n", "502 EXPN not implemented"),
    (b"STARTTLS\r\n", "454 TLS not available"),
    (b"AUTH PLAIN\r\n", "500 Error: command 'AUTH' not recognized"),
    (b"NOOP " + b"x" * 508 + b"\r\n", "500 Command line too long"),  # 513 octets
]


@pytest.mark.parametrize(("line", "reply"), REFUSALS_AFTER_HELO, ids=lambda v: repr(v)[:40])
def test_refused_after_helo_and_the_session_goes_on(line: bytes, reply: str) -> None:
    run_dialog(server(), [*HELO, (line, [reply]), (b"NOOP\r\n", ["250 OK"]), OPEN])


#: (what the client sends after EHLO, the one reply it gets)
REFUSALS_AFTER_EHLO: list[tuple[bytes, str]] = [
    (b"MAIL\r\n", MAIL_SYNTAX + EHLO_SYNTAX),
    (b"MAIL FROM:<anne@example.com> SIZE=ten\r\n", MAIL_SYNTAX + EHLO_SYNTAX),
    (b"MAIL FROM:<anne@example.com> =1\r\n", MAIL_SYNTAX + EHLO_SYNTAX),
    (
        b"MAIL FROM:<anne@example.com> SIZE=99999999999\r\n",
        "552 Error: message size exceeds fixed maximum message size",
    ),
    (
        b"MAIL FROM:<anne@example.com> BODY=BINARYMIME\r\n",
        "501 Error: BODY can only be one of 7BIT, 8BITMIME",
    ),
    (b"MAIL FROM:<anne@example.com> SMTPUTF8\r\n", "501 Error: SMTPUTF8 disabled"),
    (b"MAIL FROM:<anne@example.com> SMTPUTF8=yes\r\n", "501 Error: SMTPUTF8 takes no arguments"),
    (
        b"MAIL FROM:<anne@example.com> RET=HDRS\r\n",
        "555 MAIL FROM parameters not recognized or not implemented",
    ),
    (b"RCPT TO:<bart@example.com>\r\n", "503 Error: need MAIL command"),
    (b"AUTH PLAIN\r\n", "538 5.7.11 Encryption required for requested authentication mechanism"),
    (b"MAIL FROM:<anne@example.com>" + b" " * 524 + b"\r\n", "500 Command line too long"),
]


@pytest.mark.parametrize(("line", "reply"), REFUSALS_AFTER_EHLO, ids=lambda v: repr(v)[:40])
def test_refused_after_ehlo(line: bytes, reply: str) -> None:
    with Dialog(server()) as talk:
        talk.replies()
        talk.send(b"EHLO client.test\r\n")
        assert talk.send(line) == [reply]
        assert talk.send(b"NOOP\r\n") == ["250 OK"]


IN_MAIL: list[Step] = [*HELO, (b"MAIL FROM:<anne@example.com>\r\n", ["250 OK"])]


@pytest.mark.parametrize(
    ("steps", "line", "reply"),
    [
        ([(b"", [GREETING])], b"MAIL FROM:<anne@example.com>\r\n", "503 Error: send HELO first"),
        ([(b"", [GREETING])], b"RCPT TO:<bart@example.com>\r\n", "503 Error: send HELO first"),
        ([(b"", [GREETING])], b"DATA\r\n", "503 Error: send HELO first"),
        (IN_MAIL, b"MAIL FROM:<cleo@example.com>\r\n", "503 Error: nested MAIL command"),
        (IN_MAIL, b"DATA\r\n", "503 Error: need RCPT command"),
        (IN_MAIL, b"RCPT TO:<>\r\n", MALFORMED),
        (IN_MAIL, b"RCPT FROM:<bart@example.com>\r\n", RCPT_SYNTAX),
        (IN_MAIL, b"RCPT TO:<bart@example.com> NOTIFY=NEVER\r\n", RCPT_SYNTAX),
        (
            [*IN_MAIL, (b"RCPT TO:<bart@example.com>\r\n", ["250 OK"])],
            b"DATA now\r\n",
            "501 Syntax: DATA",
        ),
        (
            [*IN_MAIL, (b"RSET\r\n", ["250 OK"])],
            b"RCPT TO:<bart@example.com>\r\n",
            "503 Error: need MAIL command",
        ),
        (
            [*IN_MAIL, (b"HELO again.test\r\n", [f"250 {HOSTNAME}"])],
            b"RCPT TO:<bart@example.com>\r\n",
            "503 Error: need MAIL command",
        ),
    ],
)
def test_out_of_sequence(steps: list[Step], line: bytes, reply: str) -> None:
    run_dialog(server(), [*steps, (line, [reply]), OPEN])


def test_the_longest_command_line() -> None:
    # 512 octets without the CRLF; MAIL may grow by 26 for SIZE after EHLO (RFC 1870).
    noop, mail = b"NOOP " + b"x" * 507, b"MAIL FROM:<anne@example.com>" + b" " * 510
    assert (len(noop), len(mail)) == (512, 538)
    run_dialog(server(), [*HELO, (noop + b"\r\n", ["250 OK"])])
    run_dialog(server(), [*HELO, (mail + b"\r\n", ["500 Command line too long"])])
    with Dialog(server()) as talk:
        talk.replies()
        talk.send(b"EHLO client.test\r\n")
        assert talk.send(mail + b"\r\n") == ["250 OK"]


@pytest.mark.parametrize(
    ("settings", "line", "reply"),
    [
        (
            {"enable_SMTPUTF8": True},
            b"NOOP caf\xff\r\n",
            "500 5.5.2 Error: invalid UTF-8 in command",
        ),
        ({"enable_SMTPUTF8": True}, b"NOOP caf\xc3\xa9\r\n", "250 OK"),
        ({"local_part_limit": 5}, b"MAIL FROM:<annette@example.com>\r\n", MALFORMED),
        ({"local_part_limit": 5}, b"MAIL FROM:<anne@example.com>\r\n", "250 OK"),
    ],
    ids=repr,
)
def test_settings_that_change_a_reply(settings: dict[str, Any], line: bytes, reply: str) -> None:
    run_dialog(server(**settings), [*HELO, (line, [reply])])


def test_decoded_data_must_be_ascii_without_smtputf8() -> None:
    recorder = Recorder()
    run_dialog(
        server(recorder, decode_data=True),
        [*IN_DATA, (b"caf\xc3\xa9\r\n.\r\n", ["500 Error: strict ASCII mode"]), OPEN],
    )
    assert recorder.envelopes == []


def test_rcpt_parameters_after_ehlo_are_refused() -> None:
    with Dialog(server()) as talk:
        talk.replies()
        talk.send(b"EHLO client.test\r\nMAIL FROM:<anne@example.com>\r\n")
        assert talk.send(b"RCPT TO:<bart@example.com> NOTIFY=NEVER\r\n") == [
            "555 RCPT TO parameters not recognized or not implemented"
        ]


def test_too_many_unknown_commands_close_the_connection() -> None:
    unknown = '500 Error: command "XYZZY" not recognized'
    run_dialog(
        server(),
        [
            (b"", [GREETING]),
            *[(b"XYZZY\r\n", [unknown])] * 4,
            (b"XYZZY\r\n", ["502 5.5.1 Too many unrecognized commands, goodbye."]),
            CLOSED,
        ],
    )


def test_the_unknown_budget_is_a_setting() -> None:
    run_dialog(
        server(max_unknown_commands=2),
        [
            (b"", [GREETING]),
            (b"A\r\n", ['500 Error: command "A" not recognized']),
            (b"B\r\nNOOP\r\n", ["502 5.5.1 Too many unrecognized commands, goodbye."]),
            CLOSED,
        ],
    )


def test_the_call_limit_closes_with_421() -> None:
    run_dialog(
        server(command_call_limit={"NOOP": 2}),
        [
            (b"", [GREETING]),
            (b"NOOP\r\nNOOP\r\n", ["250 OK", "250 OK"]),
            (b"NOOP\r\nNOOP\r\n", ["421 4.7.0 NOOP sent too many times"]),
            CLOSED,
        ],
    )


def test_too_many_recipients() -> None:
    recipients = b"".join(b"RCPT TO:<r%d@example.com>\r\n" % n for n in range(101))
    with Dialog(server(max_recipients=100)) as talk:
        talk.replies()
        talk.send(b"HELO client.test\r\nMAIL FROM:<anne@example.com>\r\n")
        lines = talk.send(recipients)
    assert lines == ["250 OK"] * 100 + ["452 4.5.3 Error: too many recipients"]


def test_require_starttls_refuses_all_but_a_few_commands() -> None:
    # The context is only held, never used: no handshake happens here.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    refused = "530 Must issue a STARTTLS command first"
    run_dialog(
        server(tls_context=context, require_starttls=True),
        [
            (b"", [GREETING]),
            (b"HELO client.test\r\n", [refused]),
            (b"MAIL FROM:<anne@example.com>\r\n", [refused]),
            (b"XYZZY\r\n", [refused]),
            (b"NOOP\r\n", ["250 OK"]),
            (b"STARTTLS now\r\n", ["501 Syntax: STARTTLS"]),
            (b"QUIT\r\n", ["221 Bye"]),
            CLOSED,
        ],
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"HELP\r\n", prefix("250 Supported commands: ")),
        (b"HELP MAIL\r\n", "250 Syntax: MAIL FROM: <address>"),
        (b"HELP noop\r\n", "250 Syntax: NOOP [ignored]"),
        (b"HELP XYZZY\r\n", prefix("501 Supported commands: ")),
        (b"VRFY <anne@example.com>\r\n", prefix("252 ")),
        (b"NOOP anything at all\r\n", "250 OK"),
        (b"RSET\r\n", "250 OK"),
    ],
)
def test_informational_commands(line: bytes, reply: str) -> None:
    run_dialog(server(), [*HELO, (line, [reply])])


def test_help_lists_the_commands() -> None:
    with Dialog(server()) as talk:
        talk.replies()
        (line,) = talk.send(b"HELP\r\n")
    commands = set(line.removeprefix("250 Supported commands: ").split())
    assert {"DATA", "EHLO", "HELO", "MAIL", "NOOP", "QUIT", "RCPT", "RSET", "VRFY"} <= commands
    assert "STARTTLS" not in commands  # offered only with a tls_context


def test_quit_closes() -> None:
    run_dialog(server(), [(b"", [GREETING]), (b"QUIT\r\n", ["221 Bye"]), CLOSED])
