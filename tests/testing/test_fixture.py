"""The smtp_server fixture, the factory and what a captured message holds."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

import pytest

from smtpkit.testing import CapturedMessage, MessageWaitTimeout, SMTPTestServer

from .conftest import RunInner


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_every_attribute_of_a_captured_message(run_inner: RunInner) -> None:
    run_inner(
        """
        import datetime, smtplib
        from email.message import EmailMessage

        MESSAGE = (
            b"From: Ann <ann@example.org>\\r\\n"
            b"To: bob@example.net\\r\\n"
            b"Subject: =?utf-8?q?Caf=C3=A9_menu?=\\r\\n"
            b"\\r\\n"
            b"Soup of the day.\\r\\n"
            b".leading dot\\r\\n"
        )

        def test_message(smtp_server):
            assert smtp_server.host == "127.0.0.1"
            assert isinstance(smtp_server.port, int) and smtp_server.port > 0
            assert smtp_server.address == ("127.0.0.1", smtp_server.port)
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.ehlo("client.example")
                local_port = client.sock.getsockname()[1]
                client.sendmail("ann@example.org", ["bob@example.net", "cy@example.net"], MESSAGE)
            [msg] = smtp_server.messages
            assert isinstance(msg, EmailMessage)
            assert msg["Subject"] == "Café menu"
            assert msg["From"].addresses[0].display_name == "Ann"
            assert msg.get_body().get_content() == "Soup of the day.\\r\\n.leading dot\\r\\n"
            assert msg.raw == MESSAGE
            assert msg.mail_from == "ann@example.org"
            assert msg.rcpt_tos == ["bob@example.net", "cy@example.net"]
            assert msg.mail_options == [f"SIZE={len(MESSAGE)}"]
            assert msg.rcpt_options == []
            assert msg.smtp_utf8 is False
            assert msg.peer == ("127.0.0.1", local_port)
            assert msg.helo == "client.example"
            assert (msg.tls, msg.tls_version, msg.tls_cipher) == (False, None, None)
            assert msg.auth_login is None
            age = datetime.datetime.now(datetime.timezone.utc) - msg.received_at
            assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=5)
            assert msg.envelope["rcpt_tos"] == msg.rcpt_tos
            assert "ann@example.org" in repr(msg) and "Café menu" in repr(msg)
        """,
        passed=1,
    )


def test_multipart_parts_are_plain_email_messages(run_inner: RunInner) -> None:
    run_inner(
        """
        import smtplib
        from email.message import EmailMessage
        from smtpkit.testing import CapturedMessage

        def test_attachment(smtp_server):
            outgoing = EmailMessage()
            outgoing["Subject"] = "Report"
            outgoing.set_content("See attached.")
            outgoing.add_attachment(b"\\x00\\x01binary", maintype="application",
                                    subtype="octet-stream", filename="data.bin")
            with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
                client.send_message(outgoing, "<>", ["x@example.org"])
            [msg] = smtp_server.wait(1)
            assert msg.mail_from == "<>"
            [part] = msg.iter_attachments()
            assert part.get_filename() == "data.bin"
            assert part.get_content() == b"\\x00\\x01binary"
            assert type(part) is EmailMessage and isinstance(msg, CapturedMessage)
        """,
        passed=1,
    )


def test_clear_and_messages_is_a_copy(run_inner: RunInner) -> None:
    run_inner(
        """
        from helpers import send

        def test_clear(smtp_server):
            send(smtp_server, "0")
            send(smtp_server, "1")
            seen = smtp_server.messages
            assert [m["Subject"] for m in seen] == ["0", "1"]
            seen.clear()
            assert len(smtp_server.messages) == 2
            smtp_server.clear()
            assert smtp_server.messages == []
            send(smtp_server, "0")
            assert [m["Subject"] for m in smtp_server.messages] == ["0"]
        """,
        passed=1,
    )


def test_wait_returns_once_a_background_sender_delivers(run_inner: RunInner) -> None:
    run_inner(
        """
        import threading, time
        from helpers import send

        def send_later(server):
            time.sleep(0.3)
            send(server, "late")

        def test_wait(smtp_server):
            sender = threading.Thread(target=send_later, args=(smtp_server,))
            sender.start()
            try:
                [msg] = smtp_server.wait(1, timeout=30)
            finally:
                sender.join()
            assert msg["Subject"] == "late"
        """,
        passed=1,
    )


def test_wait_timeout_names_n_count_and_timeout(run_inner: RunInner) -> None:
    result = run_inner(
        """
        import pytest
        from helpers import send
        from smtpkit.testing import MessageWaitTimeout

        def test_timeout(smtp_server):
            send(smtp_server)
            with pytest.raises(MessageWaitTimeout) as caught:
                smtp_server.wait(2, timeout=0.2)
            assert isinstance(caught.value, TimeoutError)
            assert (caught.value.expected, caught.value.count, caught.value.timeout) == (2, 1, 0.2)
            print("MESSAGE:", caught.value)

        BAD = [(-1, 1, "n"), ("2", 1, "n"), (1, -3, "timeout")]

        @pytest.mark.parametrize("n, timeout, word", BAD)
        def test_bad_arguments(smtp_server, n, timeout, word):
            with pytest.raises(ValueError, match=f"^{word} must be"):
                smtp_server.wait(n, timeout)
        """,
        "-s",
        passed=4,
    )
    result.stdout.fnmatch_lines(["*MESSAGE: waited 0.2s for 2 message(s) but 1 arrived*"])


def test_each_test_gets_a_new_server_stopped_after_it(run_inner: RunInner, tmp_path: Path) -> None:
    ports = tmp_path / "ports.txt"
    run_inner(
        f"""
        import socket
        PORTS = {str(ports)!r}

        def test_first(smtp_server):
            with open(PORTS, "a") as f:
                f.write(f"{{smtp_server.port}}\\n")
            smtp_server.faults.reply("MAIL", "550 5.7.1 No")

        def test_second(smtp_server):
            with open(PORTS, "a") as f:
                f.write(f"{{smtp_server.port}}\\n")
            assert smtp_server.messages == [] and len(smtp_server.faults) == 0
        """,
        passed=2,
    )
    first, second = (int(line) for line in ports.read_text().split())
    assert first != second
    assert _refused(first) and _refused(second)


def test_marker_options_closest_wins_and_indirect_parameters(run_inner: RunInner) -> None:
    run_inner(
        """
        import pytest

        pytestmark = pytest.mark.smtp_server(size_limit=1000, hostname="module.test")

        def test_module_marker(smtp_server):
            assert smtp_server.options.size_limit == 1000
            assert smtp_server.options.hostname == "module.test"

        @pytest.mark.smtp_server(hostname="closest.test")
        def test_closest_marker_wins(smtp_server):
            assert smtp_server.options.hostname == "closest.test"
            assert smtp_server.options.size_limit == 1000

        @pytest.mark.parametrize("smtp_server", [{"lmtp": True}, {"lmtp": False}], indirect=True)
        def test_indirect(smtp_server):
            assert smtp_server.options.size_limit == 1000
            assert smtp_server.options.lmtp in (True, False)
        """,
        passed=4,
    )


def test_bad_marker_options_are_named(run_inner: RunInner) -> None:
    result = run_inner(
        """
        import pytest

        @pytest.mark.smtp_server(tsl="starttls")
        def test_typo(smtp_server):
            pass

        @pytest.mark.smtp_server("starttls")
        def test_positional(smtp_server):
            pass

        @pytest.mark.smtp_server(tls="ssl")
        def test_bad_value(smtp_server):
            pass

        @pytest.mark.smtp_server(auth_required=True)
        def test_auth_required_without_users(smtp_server):
            pass

        @pytest.mark.smtp_server(size_limit=-5)
        def test_negative_size(smtp_server):
            pass

        @pytest.mark.smtp_server(hostname="two words")
        def test_bad_hostname(smtp_server):
            pass

        @pytest.mark.smtp_server(auth={"ann": b"hunter2-secret"})
        def test_bad_password(smtp_server):
            pass

        @pytest.mark.smtp_server(smtp_kwargs={"max_recipent": 5})
        def test_unknown_smtp_keyword(smtp_server):
            pass
        """,
        errors=8,
    )
    result.stdout.fnmatch_lines_random(
        [
            "*TypeError: unknown smtp_server option(s) tsl; expected: tls, require_starttls*",
            "*TypeError: @pytest.mark.smtp_server takes keywords only*",
            "*ValueError: tls='ssl': expected 'starttls', 'implicit' or None*",
            "*ValueError: auth_required=True needs auth=*",
            "*ValueError: size_limit=-5: expected a number of octets*",
            "*ValueError: hostname='two words': expected a host name, without spaces",
            "*TypeError: auth: expected {'user': 'password', ...}, 'any' or None; got a dict*",
            "*TypeError: SMTP() got unexpected keyword argument(s): max_recipent",
        ]
    )
    assert "hunter2-secret" not in result.stdout.str()  # a password is never echoed


def test_factory_serves_several_servers_and_other_scopes(
    run_inner: RunInner, tmp_path: Path
) -> None:
    ports = tmp_path / "ports.txt"
    run_inner(
        f"""
        import pytest
        from helpers import send

        @pytest.fixture(scope="module")
        def shared(smtp_server_factory):
            return smtp_server_factory(hostname="shared.test")

        def test_first_use(shared):
            send(shared, "one")

        def test_module_scope_keeps_messages(shared):
            send(shared, "two")
            assert [m["Subject"] for m in shared.messages] == ["one", "two"]
            with open({str(ports)!r}, "a") as f:
                f.write(f"{{shared.port}}\\n")

        def test_two_at_once(smtp_server_factory):
            with smtp_server_factory() as a, smtp_server_factory(lmtp=True) as b:
                assert a.port != b.port
                send(a, "to a")
                assert [m["Subject"] for m in a.messages] == ["to a"] and b.messages == []
            assert not a.running and not b.running
        """,
        passed=3,
    )
    assert _refused(int(ports.read_text()))


def test_server_used_directly_outside_pytest() -> None:
    server = SMTPTestServer(size_limit=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    with server:
        with smtplib.SMTP(server.host, server.port) as client:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: direct\r\n\r\nx\r\n")
        [msg] = server.wait(1)
        assert isinstance(msg, CapturedMessage) and msg["Subject"] == "direct"
        assert "127.0.0.1" in repr(server)
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    assert not server.running
    server.stop()  # stopping twice is harmless
    with pytest.raises(TypeError, match="unknown smtp_server option"):
        SMTPTestServer(port=25)
    assert issubclass(MessageWaitTimeout, TimeoutError)
