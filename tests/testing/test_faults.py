"""Fault injection, seen by real clients: replies, drops, delays, greylisting, chance."""

from __future__ import annotations

import pytest

from smtpkit.testing import STAGES, Faults

from .conftest import RunInner

# The inner modules' dialog: one step per stage, each returning the reply code.
DIALOG = '''
import base64, smtplib, ssl

def step(client, server, stage):
    if stage == "CONNECT":
        try:
            return client.connect(server.host, server.port)[0]
        except smtplib.SMTPConnectError as error:
            return error.smtp_code
    if stage in ("HELO", "EHLO"):
        return client.docmd(stage, "client.example")[0]
    if stage == "STARTTLS":
        code = client.docmd("STARTTLS")[0]
        if code == 220:
            client.sock = server.client_tls_context.wrap_socket(
                client.sock, server_hostname=server.host)
            client.file = None
            client.docmd("EHLO", "client.example")
        return code
    if stage == "AUTH":
        token = base64.b64encode(b"\\0user\\0pw").decode()
        return client.docmd("AUTH", "PLAIN " + token)[0]
    if stage == "MAIL":
        return client.docmd("MAIL", "FROM:<a@example.org>")[0]
    if stage == "RCPT":
        return client.docmd("RCPT", "TO:<b@example.org>")[0]
    if stage == "DATA_START":
        return client.docmd("DATA")[0]
    client.send(b"Subject: faults\\r\\n\\r\\nbody\\r\\n.\\r\\n")
    return client.getreply()[0]

def stages_for(stage):
    if stage == "HELO":
        return ["CONNECT", "HELO", "MAIL", "RCPT", "DATA_START", "DATA"]
    return ["CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA_START", "DATA"]

def run_dialog(server, until=None):
    """Walk through every stage; return {stage: reply code} up to ``until``."""
    codes = {}
    client = smtplib.SMTP(timeout=30)
    try:
        for stage in stages_for(until):
            codes[stage] = step(client, server, stage)
            if stage == until:
                break
    finally:
        client.close()
    return codes
'''

OPTIONS = 'pytestmark = pytest.mark.smtp_server(tls="starttls", auth="any")\n'


def _module(body: str) -> str:
    return "import pytest, smtplib, socket, time\n" + DIALOG + OPTIONS + body


def test_a_reply_at_every_stage(run_inner: RunInner) -> None:
    run_inner(
        _module(
            f"""
@pytest.mark.parametrize("stage", {list(STAGES)!r})
def test_reply(smtp_server, stage):
    smtp_server.faults.reply(stage, "554 5.7.1 Not today")
    codes = run_dialog(smtp_server, until=stage)
    assert codes[stage] == 554
    assert all(code < 400 for name, code in codes.items() if name != stage)
    assert smtp_server.messages == []

def test_no_fault_dialog_is_clean(smtp_server):
    codes = run_dialog(smtp_server)
    assert codes["DATA"] == 250 and len(smtp_server.messages) == 1
"""
        ),
        passed=len(STAGES) + 1,
    )


def test_a_drop_at_every_stage(run_inner: RunInner) -> None:
    run_inner(
        _module(
            f"""
@pytest.mark.parametrize("stage", {list(STAGES)!r})
def test_drop(smtp_server, stage):
    smtp_server.faults.drop(stage)
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        run_dialog(smtp_server, until=stage)
    assert smtp_server.messages == []
    smtp_server.faults.clear()
    assert run_dialog(smtp_server)["DATA"] == 250
"""
        ),
        passed=len(STAGES),
    )


def test_nth_counts_across_connections(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib
        from helpers import send

        def test_second_recipient(smtp_server):
            smtp_server.faults.reply("RCPT", "452 4.2.2 Mailbox full", nth=2)
            refused = send(smtp_server, to=["b@x.org", "c@x.org", "d@x.org"])
            assert refused == {"c@x.org": (452, b"4.2.2 Mailbox full")}
            assert smtp_server.messages[0].rcpt_tos == ["b@x.org", "d@x.org"]

        def test_second_mail_over_two_connections(smtp_server):
            smtp_server.faults.reply("MAIL", "451 4.3.0 Try later", nth=2)
            send(smtp_server, "first")
            try:
                send(smtp_server, "second")
            except smtplib.SMTPSenderRefused as error:
                assert error.smtp_code == 451
            else:
                raise AssertionError("the second MAIL was accepted")
            send(smtp_server, "third")
            assert [m["Subject"] for m in smtp_server.messages] == ["first", "third"]

        def test_data_refusal_and_accepting_reply(smtp_server):
            smtp_server.faults.reply("DATA", "554 5.7.1 Looks like spam", nth=1)
            smtp_server.faults.reply("DATA", "250 2.0.0 Queued as ABC123", nth=2)
            try:
                send(smtp_server, "spam")
            except smtplib.SMTPDataError as error:
                assert (error.smtp_code, error.smtp_error) == (554, b"5.7.1 Looks like spam")
            else:
                raise AssertionError("the first message was accepted")
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                client.mail("a@x.org")
                client.rcpt("b@x.org")
                assert client.data(b"Subject: ham\\r\\n\\r\\nx") == (250, b"2.0.0 Queued as ABC123")
            assert [m["Subject"] for m in smtp_server.messages] == ["ham"]
        """,
        passed=3,
    )


def test_421_closes_the_connection(run_inner: RunInner) -> None:
    run_inner(
        """
        import socket

        def test_421_at_rcpt(smtp_server):
            smtp_server.faults.reply("RCPT", "421 4.3.2 Going down")
            with socket.create_connection(smtp_server.address, timeout=10) as raw:
                reader = raw.makefile("rb")
                reader.readline()
                raw.sendall(b"HELO x\\r\\nMAIL FROM:<a@x.org>\\r\\nRCPT TO:<b@x.org>\\r\\n")
                lines = [reader.readline() for _ in range(3)]
                assert lines[2] == b"421 4.3.2 Going down\\r\\n"
                assert reader.readline() == b""  # closed by the server
        """,
        passed=1,
    )


def test_delays_add_up_and_other_faults_still_apply(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, time

        def test_delay_then_reply(smtp_server):
            smtp_server.faults.delay("MAIL", 0.3).delay("MAIL", 0.3)
            smtp_server.faults.reply("MAIL", "452 4.3.1 Out of space", nth=1)
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                start = time.monotonic()
                assert client.mail("a@x.org")[0] == 452
                assert time.monotonic() - start >= 0.55
                assert client.mail("a@x.org")[0] == 250

        def test_own_banner_and_pipelining_before_it(smtp_server):
            import socket
            smtp_server.faults.reply("CONNECT", "220 mx.test ESMTP ready").delay("CONNECT", 0.3)
            with socket.create_connection(smtp_server.address, timeout=10) as raw:
                raw.sendall(b"NOOP\\r\\n")  # before the (late) banner
                reader = raw.makefile("rb")
                assert reader.readline() == b"220 mx.test ESMTP ready\\r\\n"
                assert reader.readline().startswith(b"250")

        def test_delayed_greeting(smtp_server):
            smtp_server.faults.delay("CONNECT", 0.4)
            start = time.monotonic()
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                assert time.monotonic() - start >= 0.35
                assert client.noop()[0] == 250

        def test_delay_only_the_nth(smtp_server):
            smtp_server.faults.delay("RCPT", 0.5, nth=2)
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                client.mail("a@x.org")
                client.rcpt("b@x.org")
                start = time.monotonic()
                assert client.rcpt("c@x.org")[0] == 250
                assert time.monotonic() - start >= 0.45
        """,
        passed=4,
    )


def test_refuse_starttls(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, pytest

        @pytest.mark.smtp_server(tls="starttls")
        def test_refused(smtp_server):
            smtp_server.faults.refuse_starttls()
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                with pytest.raises(smtplib.SMTPResponseException) as caught:
                    client.starttls(context=smtp_server.client_tls_context)
                assert caught.value.smtp_code == 454
                assert caught.value.smtp_error.startswith(b"4.7.0")
                client.sendmail("a@x.org", ["b@x.org"], "Subject: plain\\r\\n\\r\\nx")
            assert smtp_server.messages[0].tls is False
        """,
        passed=1,
    )


def test_greylisting(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, time, pytest
        from helpers import send

        def test_first_attempt_refused_retry_accepted(smtp_server):
            smtp_server.faults.greylist()
            with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
                send(smtp_server, to=["b@x.org", "c@x.org"])
            assert caught.value.recipients["b@x.org"][0] == 451
            assert caught.value.recipients["c@x.org"][1].startswith(b"4.7.1")
            send(smtp_server, "retry", to=["b@x.org", "c@x.org"])
            assert [m["Subject"] for m in smtp_server.messages] == ["retry"]
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                send(smtp_server, sender="other@x.org", to=["b@x.org"])

        def test_retry_too_early(smtp_server):
            smtp_server.faults.greylist(retry_after=1.5)  # ample for two quick tries
            for _ in range(2):
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    send(smtp_server)
            time.sleep(1.6)
            send(smtp_server, "late enough")
            assert len(smtp_server.messages) == 1
        """,
        passed=2,
    )


def test_random_faults_are_reproducible(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib

        def pattern(server, seed, probability):
            server.faults.clear().random("MAIL", "451 4.3.0 Bad luck", probability, seed=seed)
            with smtplib.SMTP(server.host, server.port) as client:
                client.ehlo()
                codes = []
                for _ in range(30):
                    codes.append(client.mail("a@x.org")[0])
                    client.rset()
            return codes

        def test_same_seed_same_faults(smtp_server, smtp_server_factory):
            with smtp_server_factory() as other:
                first = pattern(smtp_server, 7, 0.5)
                assert pattern(other, 7, 0.5) == first
            assert set(first) == {250, 451}
            assert pattern(smtp_server, 8, 0.5) != first
            assert set(pattern(smtp_server, 1, 0.0)) == {250}
            assert set(pattern(smtp_server, 1, 1.0)) == {451}
        """,
        passed=1,
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.reply("BDAT", "250 OK"), "stage 'BDAT' is not known; expected one of CONNECT"),
        (lambda f: f.reply(7, "250 OK"), "stage must be a str"),
        (lambda f: f.reply("MAIL", "25 OK"), "reply '25 OK' is not an SMTP reply"),
        (lambda f: f.reply("MAIL", "250 a\r\nb"), "is not an SMTP reply"),
        (lambda f: f.reply("MAIL", "650 x"), "expected a code from 200 to 599"),
        (lambda f: f.drop("RCPT", nth=0), "nth must be a whole number from 1 up"),
        (lambda f: f.delay("RCPT", -1), "seconds must be a number of seconds, 0 or more"),
        (lambda f: f.greylist(retry_after="1"), "retry_after must be a number of seconds"),
        (lambda f: f.random("MAIL", "451 x", 1.5), "probability must be from 0 to 1"),
        (lambda f: f.random("MAIL", "451 x", "half"), "probability must be a number"),
    ],
)
def test_bad_fault_rules_are_named(call: object, message: str) -> None:
    faults = Faults()
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(")):
        call(faults)  # type: ignore[operator]
    assert len(faults) == 0


def test_rules_chain_and_lhlo_is_ehlo() -> None:
    faults = Faults().reply("lhlo", "554 No").drop("mail", nth=2)
    assert len(faults) == 2
    assert faults.decide("EHLO").reply == "554 No"
    assert faults.decide("MAIL").normal
    assert faults.decide("MAIL").drop
    assert faults.clear().decide("EHLO").normal
