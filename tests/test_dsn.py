"""DSN (RFC 3461) parameters and xtext, and RFC 3464 reports parsed back with ``email``."""

from __future__ import annotations

import email
import email.policy
import logging
import smtplib
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage, Message
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from interop import HOST, Recorder, serving

from smtpkit._dsn import (
    MAX_ENVID,
    DSNError,
    MailDSN,
    RcptDSN,
    XtextError,
    parse_mail_dsn,
    parse_rcpt_dsn,
    xtext_decode,
    xtext_encode,
)
from smtpkit._grammar import parse_params
from smtpkit._replies import SMTPReplyError
from smtpkit.config import ConfigError, ServerConfig
from smtpkit.dsn import ENVELOPE_SENDER, RecipientReport, build_report
from smtpkit.handlers import Proxy
from smtpkit.smtp import SMTP, Envelope, Session

# -- xtext --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("", ""),
        ("anne@example.com", "anne@example.com"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("tab\there", "tab+09here"),
        ("~!", "~!"),
        ("\x7f", "+7F"),
        ("é", "+C3+A9"),
        ("+=", "+2B+3D"),
    ],
)
def test_xtext_table(text: str, encoded: str) -> None:
    assert xtext_encode(text) == encoded
    assert xtext_decode(encoded) == text


def test_xtext_decoding_takes_lower_case_hex() -> None:
    assert xtext_decode("a+2bb") == "a+b"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a+", "two hex digits"),
        ("a+2", "two hex digits"),
        ("a+G0", "two hex digits"),
        ("a+ 1", "two hex digits"),
        ("a=b", "not allowed"),
        ("a b", "not allowed"),
        ("a\x00", "not allowed"),
        ("é", "not allowed"),
        ("+FF", "not UTF-8"),
        ("+C3", "not UTF-8"),
    ],
)
def test_xtext_decode_refuses(value: str, why: str) -> None:
    with pytest.raises(XtextError, match=why):
        xtext_decode(value)


@given(st.text())
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    # Only xchars and +HH (upper-case) escapes come out.
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    for index, char in enumerate(encoded):
        if char == "+":
            assert encoded[index + 1 : index + 3].upper() == encoded[index + 1 : index + 3]
    assert xtext_decode(encoded) == text


@given(st.text())
def test_xtext_decode_of_anything_is_text_or_xtext_error(value: str) -> None:
    try:
        decoded = xtext_decode(value)
    except XtextError:
        return
    assert xtext_decode(xtext_encode(decoded)) == decoded


# -- MAIL: RET and ENVID --------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], MailDSN()),
        (["SIZE=100", "BODY=8BITMIME"], MailDSN()),
        (["RET=FULL"], MailDSN(ret="FULL")),
        (["RET=HDRS"], MailDSN(ret="HDRS")),
        (["ret=hdrs"], MailDSN(ret="HDRS")),
        (["ENVID=QQ314159"], MailDSN(envid="QQ314159")),
        (["ENVID=a+2Bb+20c"], MailDSN(envid="a+b c")),
        (["RET=FULL", "ENVID=x", "SMTPUTF8"], MailDSN(ret="FULL", envid="x")),
        ({"RET": "HDRS", "ENVID": "id+3D1"}, MailDSN(ret="HDRS", envid="id=1")),
        (["ENVID=" + "x" * MAX_ENVID], MailDSN(envid="x" * MAX_ENVID)),
    ],
)
def test_parse_mail_dsn(params: Any, expected: MailDSN) -> None:
    assert parse_mail_dsn(params) == expected


def test_parse_mail_dsn_takes_the_grammar_mapping() -> None:
    params = parse_params(["SIZE=10", "RET=FULL", "ENVID=abc+2Bdef"])
    assert params is not None
    assert parse_mail_dsn(params) == MailDSN(ret="FULL", envid="abc+def")


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (["RET=NONE"], 'Invalid RET parameter value "NONE" (expected FULL or HDRS)'),
        (["RET"], "RET parameter needs a value"),
        (["RET="], "RET parameter needs a value"),
        (["RET=FULL", "RET=HDRS"], "Duplicate RET parameter"),
        (["RET=FULL", "ret=FULL"], "Duplicate RET parameter"),
        (["ENVID=a", "ENVID=b"], "Duplicate ENVID parameter"),
        ({"RET": True}, "RET parameter needs a value"),
        (["ENVID=a+2"], "Invalid ENVID parameter value \"a+2\": '+' at offset 1"),
        (["ENVID=" + "x" * (MAX_ENVID + 1)], "at most 100 characters"),
        (["ENVID=a+0Ab"], "not printable"),
        (["ENVID=+C3+A9"], "not printable"),
    ],
)
def test_parse_mail_dsn_refuses(params: Any, text: str) -> None:
    with pytest.raises(DSNError) as caught:
        parse_mail_dsn(params)
    reply = caught.value.reply
    assert (reply.code, reply.enhanced) == (501, "5.5.4")
    assert text in reply.text
    # The bare line carries the enhanced code too.
    assert reply.format(False).startswith("501 5.5.4 ")
    assert isinstance(caught.value, SMTPReplyError)
    assert isinstance(caught.value, ValueError)


def test_refusal_shows_hostile_values_safely() -> None:
    with pytest.raises(DSNError) as caught:
        parse_mail_dsn(["RET=\r\nQUIT" + "x" * 200])
    text = caught.value.reply.text
    assert "\r" not in text and "\n" not in text
    assert len(text) < 150
    assert text.isascii()


def test_mail_dsn_as_params() -> None:
    dsn = MailDSN(ret="HDRS", envid="a+b c")
    assert dsn.as_params() == ["RET=HDRS", "ENVID=a+2Bb+20c"]
    assert parse_mail_dsn(dsn.as_params()) == dsn
    assert MailDSN().as_params() == []


# -- RCPT: NOTIFY and ORCPT -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], RcptDSN()),
        (["NOTIFY=NEVER"], RcptDSN(notify=frozenset({"NEVER"}))),
        (["NOTIFY=SUCCESS"], RcptDSN(notify=frozenset({"SUCCESS"}))),
        (["NOTIFY=failure,delay"], RcptDSN(notify=frozenset({"FAILURE", "DELAY"}))),
        (
            ["NOTIFY=DELAY,SUCCESS,FAILURE"],
            RcptDSN(notify=frozenset({"SUCCESS", "FAILURE", "DELAY"})),
        ),
        (["ORCPT=rfc822;anne@example.com"], RcptDSN(orcpt=("rfc822", "anne@example.com"))),
        (["ORCPT=rfc822;a+2Bb@example.com"], RcptDSN(orcpt=("rfc822", "a+b@example.com"))),
        (["ORCPT=RFC822;Anne@Example.COM"], RcptDSN(orcpt=("RFC822", "Anne@Example.COM"))),
        (["ORCPT=x400;/C+3Dus/"], RcptDSN(orcpt=("x400", "/C=us/"))),
        # RFC 6533: the utf-8 type takes \x{HHHH} escapes and raw UTF-8.
        (["ORCPT=utf-8;j\\x{F6}rg@example.com"], RcptDSN(orcpt=("utf-8", "jörg@example.com"))),
        (["ORCPT=utf-8;jörg@example.com"], RcptDSN(orcpt=("utf-8", "jörg@example.com"))),
        (
            ["NOTIFY=NEVER", "ORCPT=rfc822;b@example.com", "XFOO=1"],
            RcptDSN(notify=frozenset({"NEVER"}), orcpt=("rfc822", "b@example.com")),
        ),
    ],
)
def test_parse_rcpt_dsn(params: list[str], expected: RcptDSN) -> None:
    assert parse_rcpt_dsn(params) == expected


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (["NOTIFY=NEVER,SUCCESS"], 'Invalid NOTIFY parameter value "NEVER,SUCCESS"'),
        (["NOTIFY=SOMETIMES"], 'Invalid NOTIFY parameter value "SOMETIMES"'),
        (["NOTIFY=SUCCESS,"], "NOTIFY"),
        (["NOTIFY=,"], "NOTIFY"),
        (["NOTIFY=SUCCESS,SUCCESS"], "at most once"),
        (["NOTIFY"], "NOTIFY parameter needs a value"),
        (["NOTIFY=NEVER", "NOTIFY=NEVER"], "Duplicate NOTIFY parameter"),
        (["ORCPT=rfc822;a@b", "ORCPT=rfc822;a@b"], "Duplicate ORCPT parameter"),
        (["ORCPT=anne@example.com"], "expected addr-type;address"),
        (["ORCPT=rfc822;"], "expected addr-type;address"),
        (["ORCPT=;a@b"], "expected addr-type;address"),
        (["ORCPT=rfc(822);a@b"], "expected addr-type;address"),
        (["ORCPT=rfc822;a+4"], "two hex digits"),
        (["ORCPT=rfc822;a+0D+0A@b"], "not printable"),
        (["ORCPT=rfc822;jörg@b"], "not allowed"),
        (["ORCPT=utf-8;\\x{D800}@b"], "Unicode scalar"),
        (["ORCPT=rfc822;" + "a" * 500], "at most 500 characters"),
    ],
)
def test_parse_rcpt_dsn_refuses(params: list[str], text: str) -> None:
    with pytest.raises(DSNError) as caught:
        parse_rcpt_dsn(params)
    assert caught.value.reply.format(False).startswith("501 5.5.4 ")
    assert text in caught.value.reply.text


def test_rcpt_dsn_as_params() -> None:
    dsn = RcptDSN(notify=frozenset({"DELAY", "FAILURE"}), orcpt=("rfc822", "a+b@example.com"))
    assert dsn.as_params() == ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a+2Bb@example.com"]
    assert parse_rcpt_dsn(dsn.as_params()) == dsn


# -- hypothesis: valid parameter sets parse, anything else raises DSNError ---------

_NOTIFY = st.one_of(
    st.just(frozenset({"NEVER"})),
    st.sets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1).map(frozenset),
)
_PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
_ADDR_TYPE = st.sampled_from(["rfc822", "RFC822", "x400", "unknown"])


@given(
    ret=st.none() | st.sampled_from(["FULL", "HDRS"]),
    envid=st.none() | _PRINTABLE.filter(lambda s: 0 < len(xtext_encode(s)) <= MAX_ENVID),
    other=st.lists(st.sampled_from(["SIZE=10", "BODY=8BITMIME", "SMTPUTF8"]), unique=True),
)
def test_any_valid_mail_set_parses(ret: Any, envid: str | None, other: list[str]) -> None:
    dsn = MailDSN(ret=ret, envid=envid)
    assert parse_mail_dsn(other + dsn.as_params()) == dsn


@given(
    notify=st.none() | _NOTIFY,
    orcpt=st.none() | st.tuples(_ADDR_TYPE, _PRINTABLE.filter(bool)),
)
def test_any_valid_rcpt_set_parses(
    notify: frozenset[str] | None, orcpt: tuple[str, str] | None
) -> None:
    dsn = RcptDSN(notify=notify, orcpt=orcpt)
    assert parse_rcpt_dsn(dsn.as_params()) == dsn


_KEYWORDS = st.sampled_from(["RET", "ENVID", "NOTIFY", "ORCPT", "ret", "Notify", "SIZE"])


@given(st.lists(st.tuples(_KEYWORDS, st.none() | st.text(max_size=40)), max_size=5))
def test_random_parameters_give_a_value_or_dsn_error(pairs: list[tuple[str, str | None]]) -> None:
    params = [name if value is None else f"{name}={value}" for name, value in pairs]
    for parse in (parse_mail_dsn, parse_rcpt_dsn):
        try:
            parse(params)
        except DSNError as error:
            assert error.reply.format(False).startswith("501 5.5.4 ")


@given(st.binary(max_size=80))
def test_random_bytes_give_a_value_or_dsn_error(data: bytes) -> None:
    text = data.decode("latin-1")
    for params in ([f"ENVID={text}", f"RET={text}"], [f"ORCPT={text}", f"NOTIFY={text}"]):
        for parse in (parse_mail_dsn, parse_rcpt_dsn):
            try:
                parse(params)
            except DSNError as error:
                assert error.reply.code == 501


# -- the report ---------------------------------------------------------------------

ARRIVAL = datetime(2026, 12, 1, 22, 0, 5, tzinfo=timezone.utc)
ATTEMPT = datetime(2026, 12, 1, 22, 0, 9, tzinfo=timezone(timedelta(hours=1)))
ORIGINAL = (
    b"From: Anne <anne@example.org>\r\n"
    b"To: bob@example.net, carol@example.net\r\n"
    b"Subject: Quarterly figures\r\n"
    b"Message-ID: <q4@example.org>\r\n"
    b"\r\n"
    b"The figures are attached.\r\n"
)
BOB = RecipientReport(
    "bob@example.net",
    "failed",
    "5.1.1",
    original_recipient=("rfc822", "Bob@Example.NET"),
    diagnostic_code="550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown",
    remote_mta="mx.example.net",
    last_attempt_date=ATTEMPT,
)
CAROL = RecipientReport(
    "carol@example.net",
    "delayed",
    "4.4.1",
    diagnostic_code="421 4.4.1 Connection timed out",
    will_retry_until=ARRIVAL + timedelta(days=5),
)


def _parse(report: EmailMessage) -> EmailMessage:
    data = report.as_bytes()
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _fields(block: Message) -> dict[str, str]:
    # The white space that starts a folded field body is not part of it
    # (RFC 5322 §2.2.3); email keeps it when a fold comes right after the colon.
    return {name: str(value).strip() for name, value in block.items()}


def _blocks(parsed: EmailMessage) -> list[Message]:
    status = list(parsed.iter_parts())[1]
    assert status.get_content_type() == "message/delivery-status"
    payload = status.get_payload()
    assert isinstance(payload, list)
    blocks = [block for block in payload if isinstance(block, Message)]
    assert len(blocks) == len(payload)
    return blocks


@pytest.mark.parametrize("ret", ["FULL", "HDRS", None])
def test_report_with_one_recipient(ret: Any) -> None:
    report = build_report(
        ORIGINAL,
        [BOB],
        reporting_mta="mail.example.org",
        to="anne@example.org",
        ret=ret,
        envid="QQ314159",
        arrival_date=ARRIVAL,
        date=ATTEMPT,
    )
    parsed = _parse(report)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["From"] == "MAILER-DAEMON@mail.example.org"
    assert parsed["To"] == "anne@example.org"
    assert parsed["Subject"] == "Undelivered Mail Returned to Sender"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Date"].datetime == ATTEMPT
    assert parsed["Message-ID"].endswith("@mail.example.org>")
    human, _, returned = parsed.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert "bob@example.net" in human.get_content()
    per_message, bob = _blocks(parsed)
    assert _fields(per_message) == {
        "Reporting-MTA": "dns; mail.example.org",
        "Original-Envelope-Id": "QQ314159",
        "Arrival-Date": "Tue, 01 Dec 2026 22:00:05 +0000",
    }
    assert _fields(bob) == {
        "Original-Recipient": "rfc822; Bob@Example.NET",
        "Final-Recipient": "rfc822; bob@example.net",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx.example.net",
        "Diagnostic-Code": (
            "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"
        ),
        "Last-Attempt-Date": "Tue, 01 Dec 2026 22:00:09 +0100",
    }
    if ret == "FULL":
        assert returned.get_content_type() == "message/rfc822"
        inner = returned.get_content()
        assert inner["Subject"] == "Quarterly figures"
        assert inner["Message-ID"] == "<q4@example.org>"
        assert inner.get_content() == "The figures are attached.\n"
    else:
        assert returned.get_content_type() == "text/rfc822-headers"
        headers = returned.get_content()
        assert "Subject: Quarterly figures" in headers
        assert "Message-ID: <q4@example.org>" in headers
        assert "The figures are attached." not in headers


def test_report_with_several_recipients_without_envid_or_orcpt() -> None:
    delivered = RecipientReport("dave@example.net", "delivered", "2.0.0")
    report = build_report(
        ORIGINAL, [BOB, CAROL, delivered], reporting_mta="mail.example.org", to="anne@example.org"
    )
    parsed = _parse(report)
    per_message, bob, carol, dave = _blocks(parsed)
    assert _fields(per_message) == {"Reporting-MTA": "dns; mail.example.org"}
    assert bob["Action"] == "failed"
    assert _fields(carol) == {
        "Final-Recipient": "rfc822; carol@example.net",
        "Action": "delayed",
        "Status": "4.4.1",
        "Diagnostic-Code": "smtp; 421 4.4.1 Connection timed out",
        "Will-Retry-Until": "Sun, 06 Dec 2026 22:00:05 +0000",
    }
    assert _fields(dave) == {
        "Final-Recipient": "rfc822; dave@example.net",
        "Action": "delivered",
        "Status": "2.0.0",
    }
    # A failure wins the subject; the default text names every recipient.
    assert parsed["Subject"] == "Undelivered Mail Returned to Sender"
    human = next(iter(parsed.iter_parts())).get_content()
    for address in ("bob@example.net", "carol@example.net", "dave@example.net"):
        assert address in human
    # No RET: the headers only.
    assert list(parsed.iter_parts())[2].get_content_type() == "text/rfc822-headers"


@pytest.mark.parametrize(
    ("action", "status", "subject"),
    [
        ("delayed", "4.4.7", "Delayed Mail (still being retried)"),
        ("relayed", "2.0.0", "Successful Mail Delivery Report"),
        ("expanded", "2.1.5", "Successful Mail Delivery Report"),
    ],
)
def test_report_subjects(action: Any, status: str, subject: str) -> None:
    report = build_report(
        ORIGINAL,
        [RecipientReport("bob@example.net", action, status)],
        reporting_mta="mail.example.org",
        to="anne@example.org",
    )
    assert _parse(report)["Subject"] == subject


def test_report_takes_a_parsed_message_and_own_texts() -> None:
    original = email.message_from_bytes(ORIGINAL, policy=email.policy.default)
    report = build_report(
        original,
        [BOB],
        reporting_mta="mail.example.org",
        to="anne@example.org",
        ret="HDRS",
        sender="postmaster@example.org",
        subject="Delivery failure",
        text="Sorry.\n",
    )
    parsed = _parse(report)
    assert parsed["From"] == "postmaster@example.org"
    assert parsed["Subject"] == "Delivery failure"
    human, _, returned = parsed.iter_parts()
    assert human.get_content() == "Sorry.\n"
    assert "Subject: Quarterly figures" in returned.get_content()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "bounced"}, "action must be one of failed, delayed"),
        ({"status": "5.1"}, "status must be a 'class.subject.detail' code"),
        ({"status": "6.1.1"}, "status must be a 'class.subject.detail' code"),
        ({"status": "2.0.0"}, "does not fit action 'failed' (expected class 5)"),
        ({"action": "delayed", "status": "5.0.0"}, "expected class 4"),
        ({"action": "delivered", "status": "4.0.0"}, "expected class 2"),
        ({"diagnostic_code": "User unknown"}, "diagnostic_code must be an SMTP reply"),
        ({"diagnostic_code": "550 ok\r\nX: y"}, "diagnostic_code must be an SMTP reply"),
        ({"final_recipient": "a@b\r\nBcc: c@d"}, "final_recipient must be one line"),
        ({"remote_mta": "mx\n"}, "remote_mta must be one line"),
        ({"last_attempt_date": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_recipient_report_refuses(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"final_recipient": "b@example.net", "action": "failed"}
    values["status"] = "5.1.1"
    values.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RecipientReport(**values)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipients": []}, "at least one RecipientReport"),
        ({"ret": "ALL"}, "ret must be 'FULL', 'HDRS' or None"),
        ({"envid": "a\nb"}, "envid must be one line"),
        ({"to": "a@b\r\n"}, "to must be one line"),
        ({"arrival_date": datetime(2026, 1, 1)}, "arrival_date must be a timezone-aware"),
        ({"original": "text"}, "original must be bytes or an email Message"),
    ],
)
def test_build_report_refuses(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "original": ORIGINAL,
        "recipients": [BOB],
        "reporting_mta": "mail.example.org",
        "to": "anne@example.org",
    }
    values.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        build_report(**values)


def test_report_goes_over_smtp_with_the_null_sender() -> None:
    # The report as an app would send it: MAIL FROM:<>, through a real server.
    report = build_report(
        ORIGINAL,
        [BOB],
        reporting_mta="mail.example.org",
        to="anne@example.org",
        ret="FULL",
        envid="QQ314159",
    )
    handler = Recorder()
    with serving(handler) as server, smtplib.SMTP(HOST, server.port) as client:
        assert ENVELOPE_SENDER == "<>"
        client.sendmail("", ["anne@example.org"], report.as_bytes())
    (_, envelope), *_ = handler.messages
    assert envelope.mail_from == "<>"
    parsed = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert isinstance(parsed, EmailMessage)
    _, bob = _blocks(parsed)
    assert bob["Original-Recipient"] == "rfc822; Bob@Example.NET"
    assert list(parsed.iter_parts())[2].get_content()["Subject"] == "Quarterly figures"


# -- DSN on the envelope, through a real server -------------------------------

ANNE, BART = "anne@example.com", "bart@example.com"


def _send_dsn(
    mail_options: list[str], rcpts: list[tuple[str, list[str]]], **server_kwargs: Any
) -> Envelope:
    """Send one message with the given DSN parameters; return the envelope the server kept."""
    handler = Recorder()
    server_kwargs.setdefault("dsn", True)
    with serving(handler, **server_kwargs) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert client.has_extn("dsn")
        assert client.mail(ANNE, mail_options)[0] == 250
        for address, options in rcpts:
            assert client.rcpt(address, options)[0] == 250
        assert client.data(b"Subject: dsn\r\n\r\nHello.\r\n")[0] == 250
    [(_, envelope)] = handler.messages
    return envelope


def test_bare_class_neither_offers_nor_takes_dsn() -> None:
    with serving(Recorder()) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert not client.has_extn("dsn")
        code, text = client.mail(ANNE, ["RET=FULL"])
        # aiosmtpd's replies, as the bare class has no enhanced status codes either.
        assert (code, text) == (555, b"MAIL FROM parameters not recognized or not implemented")
        assert client.mail(ANNE)[0] == 250
        code, text = client.rcpt(BART, ["NOTIFY=NEVER"])
        assert (code, text) == (555, b"RCPT TO parameters not recognized or not implemented")


def test_server_config_offers_dsn() -> None:
    config = ServerConfig()
    assert config.dsn is True
    envelope = _send_dsn(["RET=FULL"], [(BART, ["NOTIFY=FAILURE"])], dsn=None, config=config)
    assert envelope.dsn == MailDSN(ret="FULL")
    assert envelope.rcpt_dsn == [RcptDSN(notify=frozenset({"FAILURE"}))]


def test_server_config_can_turn_dsn_off() -> None:
    config = ServerConfig(dsn=False)
    with serving(Recorder(), config=config) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert not client.has_extn("dsn")
        assert client.mail(ANNE, ["ENVID=x"])[0] == 555


def test_dsn_values_arrive_decoded_and_typed() -> None:
    envelope = _send_dsn(
        ["RET=hdrs", "ENVID=Batch+2B7+3Dx"],
        [
            (ANNE, ["NOTIFY=success,DELAY", "ORCPT=rfc822;Anne+2BTag@Example.COM"]),
            (BART, []),
            ("cate@example.com", ["NOTIFY=NEVER"]),
        ],
    )
    assert envelope.dsn == MailDSN(ret="HDRS", envid="Batch+7=x")
    assert envelope.rcpt_tos == [ANNE, BART, "cate@example.com"]
    assert envelope.rcpt_dsn == [
        RcptDSN(notify=frozenset({"SUCCESS", "DELAY"}), orcpt=("rfc822", "Anne+Tag@Example.COM")),
        RcptDSN(),
        RcptDSN(notify=frozenset({"NEVER"})),
    ]
    # The documented upper-cased option lists are unchanged.
    assert envelope.mail_options == ["RET=HDRS", "ENVID=BATCH+2B7+3DX"]


def test_no_dsn_parameters_leave_none_and_empty_values() -> None:
    envelope = _send_dsn([], [(ANNE, []), (BART, [])])
    assert envelope.dsn is None
    assert envelope.rcpt_dsn == [RcptDSN(), RcptDSN()]


def test_long_orcpt_fits_the_longer_rcpt_line() -> None:
    # RFC 3461 §5: RCPT may grow by 500 octets; this line is 537 long.
    address = "x" * 60 + "@" + "d" * 60 + ".example"
    orcpt = "ORCPT=rfc822;" + "o" * 350 + "@example.com"
    envelope = _send_dsn(["ENVID=" + "e" * MAX_ENVID], [(address, ["NOTIFY=DELAY", orcpt])])
    assert envelope.dsn == MailDSN(envid="e" * MAX_ENVID)
    assert envelope.rcpt_dsn[0].orcpt == ("rfc822", "o" * 350 + "@example.com")


@pytest.mark.parametrize(
    ("mail_options", "rcpt_options", "text"),
    [
        (["RET=ALL"], [], 'Invalid RET parameter value "ALL"'),
        (["RET"], [], "RET parameter needs a value"),
        (["RET=FULL", "RET=HDRS"], [], "Duplicate RET parameter"),
        (["ENVID=a", "envid=b"], [], "Duplicate ENVID parameter"),
        (["ENVID=a+zz"], [], "Invalid ENVID parameter value"),
        (["ENVID=" + "e" * (MAX_ENVID + 1)], [], "at most 100 characters"),
        ([], ["NOTIFY=NEVER,SUCCESS"], 'Invalid NOTIFY parameter value "NEVER,SUCCESS"'),
        ([], ["NOTIFY=SOMETIMES"], 'Invalid NOTIFY parameter value "SOMETIMES"'),
        ([], ["NOTIFY=DELAY,DELAY"], "at most once"),
        ([], ["NOTIFY=DELAY", "NOTIFY=FAILURE"], "Duplicate NOTIFY parameter"),
        ([], ["ORCPT=rfc822"], 'Invalid ORCPT parameter value "rfc822"'),
        ([], ["ORCPT=;a@b"], "Invalid ORCPT parameter value"),
        ([], ["ORCPT=rfc822;a+1@b"], "Invalid ORCPT parameter value"),
        ([], ["ORCPT=rfc822;a@b", "orcpt=rfc822;c@d"], "Duplicate ORCPT parameter"),
    ],
)
def test_bad_dsn_parameters_get_501_5_5_4(
    mail_options: list[str], rcpt_options: list[str], text: str
) -> None:
    handler = Recorder()
    with (
        serving(handler, dsn=True) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.ehlo("client.test")
        code, reply = client.mail(ANNE, mail_options)
        if rcpt_options:
            assert code == 250
            code, reply = client.rcpt(BART, rcpt_options)
        assert code == 501
        assert reply.startswith(b"5.5.4 ")
        assert text.encode() in reply
        # The session goes on: the refused command left nothing behind.
        if rcpt_options:
            assert client.rcpt(BART)[0] == 250
            assert client.data(b"Subject: x\r\n\r\nx\r\n")[0] == 250
            [(_, envelope)] = handler.messages
            assert (envelope.rcpt_tos, envelope.rcpt_dsn) == ([BART], [RcptDSN()])
        else:
            assert client.mail(ANNE)[0] == 250


def test_an_empty_value_is_a_syntax_error() -> None:
    # "RET=" fails the ESMTP parameter grammar before the DSN rules see it.
    with serving(Recorder(), dsn=True) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert client.mail(ANNE, ["RET="])[0] == 501
        assert client.mail(ANNE)[0] == 250


def test_other_rcpt_parameters_are_still_refused_with_dsn_on() -> None:
    with serving(Recorder(), dsn=True) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert client.mail(ANNE)[0] == 250
        assert client.rcpt(BART, ["NOTIFY=NEVER", "XFOO=1"])[0] == 555
        assert client.mail(ANNE)[0] == 503  # still in the transaction


class AcceptingItself(Recorder):
    """Accepts MAIL and RCPT in its hooks (as aiosmtpd handlers may), refusing one address."""

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("no"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_rcpt_dsn_stays_parallel_when_hooks_accept() -> None:
    handler = AcceptingItself()
    with serving(handler, dsn=True) as server, smtplib.SMTP(HOST, server.port) as client:
        client.ehlo("client.test")
        assert client.mail(ANNE, ["ENVID=e1"])[0] == 250
        assert client.rcpt("nobody@example.com", ["NOTIFY=NEVER"])[0] == 550
        assert client.rcpt(BART, ["NOTIFY=SUCCESS"])[0] == 250
        assert client.data(b"Subject: x\r\n\r\nx\r\n")[0] == 250
    [(_, envelope)] = handler.messages
    assert envelope.dsn == MailDSN(envid="e1")
    assert envelope.rcpt_tos == [BART]
    assert envelope.rcpt_dsn == [RcptDSN(notify=frozenset({"SUCCESS"}))]


# -- The Proxy handler passes DSN on ------------------------------------------


def _relay_dsn(upstream_dsn: bool) -> Envelope:
    upstream = Recorder()
    with (
        serving(upstream, dsn=upstream_dsn) as far,
        serving(Proxy(HOST, far.port, timeout=10), dsn=True) as near,
        smtplib.SMTP(HOST, near.port) as client,
    ):
        client.ehlo("client.test")
        assert client.mail(ANNE, ["RET=HDRS", "ENVID=Q+2B1"])[0] == 250
        assert client.rcpt(BART, ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;Bart+2B@X.test"])[0] == 250
        assert client.rcpt("cate@example.com")[0] == 250
        assert client.data(b"Subject: relayed\r\n\r\nHello.\r\n")[0] == 250
    [(_, envelope)] = upstream.messages
    assert envelope.rcpt_tos == [BART, "cate@example.com"]
    assert b"Subject: relayed" in (envelope.original_content or b"")
    return envelope


def test_proxy_passes_dsn_to_an_upstream_offering_it() -> None:
    envelope = _relay_dsn(upstream_dsn=True)
    assert envelope.dsn == MailDSN(ret="HDRS", envid="Q+1")
    assert envelope.rcpt_dsn == [
        RcptDSN(notify=frozenset({"FAILURE", "DELAY"}), orcpt=("rfc822", "Bart+@X.test")),
        RcptDSN(),
    ]


def test_proxy_drops_dsn_for_an_upstream_without_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="smtpkit.handlers"):
        envelope = _relay_dsn(upstream_dsn=False)
    assert envelope.dsn is None
    assert envelope.rcpt_dsn == [RcptDSN(), RcptDSN()]
    assert not any(option.startswith(("RET=", "ENVID=")) for option in envelope.mail_options)
    assert "does not offer DSN" in caplog.text


def test_dsn_setting_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="dsn = 'on': expected True or False"):
        SMTP(Recorder(), dsn="on")
    with pytest.raises(ConfigError, match="dsn"):
        ServerConfig(dsn="on")  # type: ignore[arg-type]
