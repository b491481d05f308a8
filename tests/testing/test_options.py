"""The server options, through the marker: TLS, AUTH, SMTPUTF8, size limit, LMTP."""

from __future__ import annotations

import sys

import pytest

from .conftest import RunInner


def test_starttls_with_a_certificate_made_on_the_fly(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, ssl, pytest
        from pathlib import Path

        pytestmark = pytest.mark.smtp_server(tls="starttls")

        def test_client_context(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert client.has_extn("starttls")
                client.starttls(context=smtp_server.client_tls_context)
                client.sendmail("a@x.org", ["b@x.org"], "Subject: tls\\r\\n\\r\\nx\\r\\n")
            [msg] = smtp_server.messages
            assert msg.tls is True
            assert msg.tls_version in ("TLSv1.2", "TLSv1.3")
            assert msg.tls_cipher

        def test_ca_path_for_clients_that_want_a_file(smtp_server):
            assert Path(smtp_server.ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
            context = ssl.create_default_context(cafile=str(smtp_server.ca_path))
            with smtplib.SMTP("localhost", smtp_server.port) as client:
                client.starttls(context=context)
                assert client.noop()[0] == 250

        def test_the_certificate_is_not_trusted_by_default(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                with pytest.raises(ssl.SSLCertVerificationError):
                    client.starttls(context=ssl.create_default_context())

        def test_plain_server_has_no_tls(smtp_server_factory):
            with smtp_server_factory() as plain:
                assert plain.client_tls_context is None and plain.ca_path is None
        """,
        passed=4,
    )


def test_implicit_tls_and_require_starttls(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, pytest

        @pytest.mark.smtp_server(tls="implicit")
        def test_implicit(smtp_server):
            context = smtp_server.client_tls_context
            with smtplib.SMTP_SSL(smtp_server.host, smtp_server.port, context=context) as client:
                client.ehlo()
                assert not client.has_extn("starttls")
                client.sendmail("a@x.org", ["b@x.org"], "Subject: smtps\\r\\n\\r\\nx\\r\\n")
            assert smtp_server.wait(1)[0].tls is True

        @pytest.mark.smtp_server(tls="starttls", require_starttls=True)
        def test_require_starttls(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert client.mail("a@example.org") == (530, b"Must issue a STARTTLS command first")
                client.starttls(context=smtp_server.client_tls_context)
                client.ehlo()
                assert client.mail("a@example.org")[0] == 250
        """,
        passed=2,
    )


def test_auth_with_given_users_or_any(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, pytest

        def login_and_send(server, user, password):
            with smtplib.SMTP(server.host, server.port) as client:
                if server.client_tls_context:
                    client.starttls(context=server.client_tls_context)
                client.login(user, password)
                client.sendmail("a@x.org", ["b@x.org"], "Subject: auth\\r\\n\\r\\nx\\r\\n")

        @pytest.mark.smtp_server(auth={"alice": "wonderland"})
        def test_users(smtp_server):
            login_and_send(smtp_server, "alice", "wonderland")
            assert smtp_server.messages[0].auth_login == "alice"
            with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
                login_and_send(smtp_server, "alice", "wrong")
            assert caught.value.smtp_code == 535

        @pytest.mark.smtp_server(auth="any")
        def test_any_login(smtp_server):
            login_and_send(smtp_server, "whoever", "whatever")
            assert smtp_server.messages[0].auth_login == "whoever"

        @pytest.mark.smtp_server(auth="any", tls="starttls")
        def test_auth_only_after_starttls_when_tls_is_on(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert not client.has_extn("auth")
                client.starttls(context=smtp_server.client_tls_context)
                client.ehlo()
                assert client.has_extn("auth")
            login_and_send(smtp_server, "carol", "pw")
            [msg] = smtp_server.messages
            assert (msg.auth_login, msg.tls) == ("carol", True)

        @pytest.mark.smtp_server(auth="any", tls="starttls", auth_require_tls=False)
        def test_auth_in_clear_on_a_tls_server(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert client.has_extn("auth") and client.has_extn("starttls")

        @pytest.mark.smtp_server(auth="any", auth_require_tls=True)
        def test_auth_only_over_tls_without_tls(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert not client.has_extn("auth")

        @pytest.mark.smtp_server(auth={"alice": "wonderland"}, auth_required=True)
        def test_auth_required(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                    client.sendmail("a@example.org", ["b@example.org"], "x")
            assert caught.value.smtp_code == 530
            login_and_send(smtp_server, "alice", "wonderland")
            assert len(smtp_server.messages) == 1
        """,
        "-W",
        "error",
        passed=6,
    )


def test_smtputf8_size_limit_and_smtp_keywords(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, pytest

        def test_smtputf8_on_by_default(smtp_server):
            message = "Subject: caf\\u00e9\\r\\n\\r\\nna\\u00efve\\r\\n".encode()
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert client.has_extn("smtputf8")
                client.sendmail("j\\u00f6rg@example.org", ["\\u00e5sa@example.org"], message,
                                mail_options=["SMTPUTF8"])
            [msg] = smtp_server.messages
            assert msg.smtp_utf8 is True and msg.mail_from == "j\\u00f6rg@example.org"
            assert msg["Subject"] == "caf\\u00e9"

        @pytest.mark.smtp_server(smtputf8=False)
        def test_smtputf8_off(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert not client.has_extn("smtputf8")

        @pytest.mark.smtp_server(size_limit=1000)
        def test_size_limit(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo()
                assert client.esmtp_features["size"] == "1000"
                with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                    client.sendmail("a@example.org", ["b@example.org"], "x" * 2000)
            assert caught.value.smtp_code == 552
            assert smtp_server.messages == []

        @pytest.mark.smtp_server(hostname="mx.test", smtp_kwargs={"ident": "TestMTA"})
        def test_hostname_and_smtp_keywords(smtp_server):
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                code, banner = client.docmd("NOOP")
                assert client.ehlo()[1].startswith(b"mx.test")
            import socket
            with socket.create_connection(smtp_server.address, timeout=10) as raw:
                assert raw.recv(100) == b"220 mx.test TestMTA\\r\\n"
        """,
        passed=4,
    )


def test_lmtp(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib, socket, pytest

        @pytest.mark.smtp_server(lmtp=True)
        def test_lmtp_with_smtplib(smtp_server):
            with smtplib.LMTP(smtp_server.host, smtp_server.port) as client:
                assert client.docmd("HELO", "x.example")[0] == 500
                assert client.ehlo("x.example")[0] == 250  # smtplib's LMTP says LHLO
                client.sendmail("a@example.org", ["b@example.org"], "Subject: lmtp\\r\\n\\r\\nx")
            [msg] = smtp_server.messages
            assert msg.rcpt_tos == ["b@example.org"]
            assert (msg.helo, msg["Subject"]) == ("x.example", "lmtp")

        @pytest.mark.smtp_server(lmtp=True)
        def test_one_reply_per_recipient(smtp_server):
            dialog = (b"LHLO x.example\\r\\nMAIL FROM:<a@example.org>\\r\\n"
                      b"RCPT TO:<b@example.org>\\r\\nRCPT TO:<c@example.org>\\r\\nDATA\\r\\n")
            with socket.create_connection(smtp_server.address, timeout=10) as raw:
                reader = raw.makefile("rb")
                assert reader.readline().startswith(b"220 ")
                raw.sendall(dialog)
                while not reader.readline().startswith(b"354"):
                    pass
                raw.sendall(b"Subject: two\\r\\n\\r\\nx\\r\\n.\\r\\n")
                assert [reader.readline()[:3] for _ in range(2)] == [b"250", b"250"]
            assert smtp_server.wait(1)[0].rcpt_tos == ["b@example.org", "c@example.org"]
        """,
        passed=2,
    )


def test_tls_without_trustme_says_what_to_install(
    run_inner: RunInner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes "import trustme" fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "trustme", None)
    result = run_inner(
        """
        import pytest

        @pytest.mark.smtp_server(tls="starttls")
        def test_tls(smtp_server):
            pass
        """,
        errors=1,
    )
    result.stdout.fnmatch_lines(["*RuntimeError: *trustme*not installed: pip install trustme"])
