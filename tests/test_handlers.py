"""End-to-end tests of the ready-made handlers, over real sockets with real clients."""

from __future__ import annotations

import argparse
import asyncio
import email
import email.message
import email.policy
import io
import logging
import mailbox
import os
import smtplib
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from cli.helpers import Command

from smtpkit import handlers
from smtpkit.controller import Controller, UnixSocketController
from smtpkit.handlers import AsyncMessage, Debugging, Mailbox, Message, Proxy, Sink
from smtpkit.handlers._mailbox import _MaildirCommitter

HOST = "127.0.0.1"

MESSAGE = (
    "From: Anne Person <anne@example.com>\r\n"
    "To: Bart Person <bart@example.com>\r\n"
    "Subject: A test\r\n"
    "Message-ID: <ant>\r\n"
    "\r\n"
    "Hi Bart, this is Anne.\r\n"
)


@contextmanager
def serving(handler: Any, **kwargs: Any) -> Iterator[Controller]:
    """Run ``handler`` on a loopback port picked by the system."""
    controller = Controller(handler, hostname=HOST, port=0, **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def wait_for(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Poll until ``condition()`` holds; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="smtpkit", exit_on_error=False)


# -- Sink -------------------------------------------------------------------


def test_sink_accepts_and_discards() -> None:
    with serving(Sink()) as controller, smtplib.SMTP(HOST, controller.port) as client:
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
        assert client.sendmail("c@example.com", ["d@example.com"], MESSAGE) == {}
        assert client.noop()[0] == 250


def test_sink_from_cli() -> None:
    assert isinstance(Sink.from_cli(parser()), Sink)
    with pytest.raises(SystemExit):
        Sink.from_cli(parser(), "extra")


# -- Debugging --------------------------------------------------------------


def test_debugging_prints_message_with_peer() -> None:
    stream = io.StringIO()
    with serving(Debugging(stream)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.helo("client.example")  # plain SMTP: no MAIL options to print
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        host, port = client.sock.getsockname()
    assert stream.getvalue().splitlines() == [
        "---------- MESSAGE FOLLOWS ----------",
        "From: Anne Person <anne@example.com>",
        "To: Bart Person <bart@example.com>",
        "Subject: A test",
        "Message-ID: <ant>",
        f"X-Peer: {host}:{port}",
        "",
        "Hi Bart, this is Anne.",
        "------------ END MESSAGE ------------",
    ]


def test_debugging_prints_mail_options() -> None:
    stream = io.StringIO()
    with serving(Debugging(stream)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE, mail_options=["BODY=8BITMIME"])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "---------- MESSAGE FOLLOWS ----------"
    assert lines[1].startswith("mail options: [")
    assert "BODY=8BITMIME" in lines[1].upper()
    assert lines[2] == ""
    assert lines[3] == "From: Anne Person <anne@example.com>"
    assert lines[-1] == "------------ END MESSAGE ------------"


def test_debugging_from_cli() -> None:
    import sys

    assert Debugging.from_cli(parser()).stream is sys.stdout
    assert Debugging.from_cli(parser(), "stdout").stream is sys.stdout
    assert Debugging.from_cli(parser(), "stderr").stream is sys.stderr
    with pytest.raises(SystemExit):
        Debugging.from_cli(parser(), "stdnull")
    with pytest.raises(SystemExit):
        Debugging.from_cli(parser(), "stdout", "stderr")


# -- Message and AsyncMessage -----------------------------------------------


class Collecting(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[EmailMessage] = []

    def handle_message(self, message: EmailMessage) -> None:
        self.messages.append(message)


class AsyncCollecting(AsyncMessage):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[EmailMessage] = []

    async def handle_message(self, message: EmailMessage) -> None:
        await asyncio.sleep(0)
        self.messages.append(message)


def check_received(message: EmailMessage, peer: tuple[Any, ...]) -> None:
    assert message["Subject"] == "A test"
    assert message["X-Peer"] == f"{peer[0]}:{peer[1]}"
    assert message["X-MailFrom"] == "anne@example.com"
    assert message["X-RcptTo"] == "bart@example.com, cate@example.com"
    assert message.get_payload() == "Hi Bart, this is Anne.\r\n"


@pytest.mark.parametrize("decode_data", [False, True])
def test_message_subclass_receives_message(decode_data: bool) -> None:
    handler = Collecting()
    with (
        serving(handler, decode_data=decode_data) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.sendmail("anne@example.com", ["bart@example.com", "cate@example.com"], MESSAGE)
        peer = client.sock.getsockname()
    assert len(handler.messages) == 1
    check_received(handler.messages[0], peer)


def test_message_class_is_used() -> None:
    class Tagged(EmailMessage):
        pass

    class Keeping(Message):
        def __init__(self) -> None:
            super().__init__(Tagged)
            self.messages: list[EmailMessage] = []

        def handle_message(self, message: EmailMessage) -> None:
            self.messages.append(message)

    handler = Keeping()
    with serving(handler) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    assert type(handler.messages[0]) is Tagged


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_message_subclass_receives_message() -> None:
    handler = AsyncCollecting()
    with serving(handler) as controller:
        client = aiosmtplib.SMTP(hostname=HOST, port=controller.port)
        async with client:
            errors, _ = await client.sendmail(
                "anne@example.com", ["bart@example.com", "cate@example.com"], MESSAGE
            )
            peer = client.transport.get_extra_info("sockname")
    assert errors == {}
    assert len(handler.messages) == 1
    check_received(handler.messages[0], peer)


# -- Mailbox ----------------------------------------------------------------


def maildir_files(root: Path, sub: str) -> list[Path]:
    return sorted((root / sub).iterdir())


def after_received(data: bytes) -> bytes:
    """``data`` after its leading ``Received:`` field (which must be there), folded lines too."""
    assert data.startswith(b"Received: from "), data[:80]
    lines = data.splitlines(keepends=True)
    rest = 1
    while rest < len(lines) and lines[rest][:1] in (b" ", b"\t"):
        rest += 1
    return b"".join(lines[rest:])


class ObservedMailbox(Mailbox):
    """A Mailbox that records, at each reply, what was on disk."""

    def __init__(self, mail_dir: Path) -> None:
        super().__init__(mail_dir)
        self.chunks = 0
        self.content_at_data: list[object] = []

    async def handle_DATA_CHUNK(
        self, server: Any, session: Any, envelope: Any, chunk: bytes
    ) -> None:
        self.chunks += 1
        await super().handle_DATA_CHUNK(server, session, envelope, chunk)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.content_at_data.append(envelope.content)
        return await super().handle_DATA(server, session, envelope)


def test_mailbox_message_is_in_new_when_client_gets_250(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with serving(Mailbox(root)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
        # The 250 has been read: the file must already be in new/.
        files = maildir_files(root, "new")
        assert len(files) == 1
        assert maildir_files(root, "tmp") == []
        host, port = client.sock.getsockname()
    data = files[0].read_bytes()
    assert b"\r" not in data
    envelope = f"X-Peer: {host}:{port}\nX-MailFrom: anne@example.com\nX-RcptTo: bart@example.com\n"
    assert after_received(data).startswith(envelope.encode())
    assert data.endswith(b"Subject: A test\nMessage-ID: <ant>\n\nHi Bart, this is Anne.\n")


def test_mailbox_messages_readable_with_maildir(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    people = [("anne", "bart", "<ant>"), ("cate", "dave", "<bee>"), ("elle", "fred", "<cat>")]
    with serving(Mailbox(root)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        for sender, recipient, message_id in people:
            text = MESSAGE.replace("<ant>", message_id).replace("Bart", recipient.title())
            client.sendmail(f"{sender}@example.com", [f"{recipient}@example.com"], text)
    stored = sorted(mailbox.Maildir(root), key=lambda m: str(m["Message-ID"]))
    assert [(m["Message-ID"], m["X-MailFrom"], m["X-RcptTo"]) for m in stored] == [
        ("<ant>", "anne@example.com", "bart@example.com"),
        ("<bee>", "cate@example.com", "dave@example.com"),
        ("<cat>", "elle@example.com", "fred@example.com"),
    ]


def test_mailbox_stores_an_empty_message(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with serving(Mailbox(root)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.ehlo()
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        assert client.data(b"")[0] == 250
        [stored] = maildir_files(root, "new")
    # smtplib sends one empty line before the final dot.
    lines = after_received(stored.read_bytes()).splitlines()
    assert [line.split(b":")[0] for line in lines] == [b"X-Peer", b"X-MailFrom", b"X-RcptTo", b""]


def test_mailbox_streams_a_big_message(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    handler = ObservedMailbox(root)
    line = b"0123456789" * 7 + b"\r\n"
    body = line * (5 * 1024 * 1024 // len(line))
    message = b"Subject: big\r\n\r\n" + body
    with serving(handler) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("anne@example.com", ["bart@example.com"], message)
        files = maildir_files(root, "new")
    assert len(files) == 1
    assert maildir_files(root, "tmp") == []
    stored = files[0].read_bytes()
    assert stored.endswith(b"\nSubject: big\n\n" + body.replace(b"\r\n", b"\n"))
    assert handler.chunks > 1
    assert handler.content_at_data == [None]


class PausingMailbox(Mailbox):
    """A Mailbox whose first chunk hook waits until the test lets it go on."""

    def __init__(self, mail_dir: Path) -> None:
        super().__init__(mail_dir)
        self.entered = threading.Event()
        self.release = threading.Event()

    async def handle_DATA_CHUNK(
        self, server: Any, session: Any, envelope: Any, chunk: bytes
    ) -> None:
        if not self.entered.is_set():
            self.entered.set()
            deadline = time.monotonic() + 10
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        await super().handle_DATA_CHUNK(server, session, envelope, chunk)


def test_mailbox_keeps_data_arriving_during_a_chunk_hook(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    handler = PausingMailbox(root)
    with serving(handler) as controller, socket.create_connection((HOST, controller.port)) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (b"HELO me", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>"):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(b"Subject: two parts\r\n\r\nfirst part\r\n")
        assert handler.entered.wait(10)
        sock.sendall(b"second part\r\n.\r\n")
        time.sleep(1)  # let the server read the rest while the hook is still waiting
        handler.release.set()
        assert reader.readline().startswith(b"250")
        reader.close()
    [stored] = maildir_files(root, "new")
    assert stored.read_bytes().endswith(b"Subject: two parts\n\nfirst part\nsecond part\n")


def test_mailbox_cut_transfer_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with serving(Mailbox(root)) as controller:
        with socket.create_connection((HOST, controller.port)) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            for command in (b"HELO me", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>"):
                sock.sendall(command + b"\r\n")
                assert reader.readline().startswith(b"250")
            sock.sendall(b"DATA\r\n")
            assert reader.readline().startswith(b"354")
            sock.sendall(
                b"Subject: cut\r\n\r\n" + b"x" * 998 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 600
            )
            wait_for(lambda: len(maildir_files(root, "tmp")) == 1, "the tmp file to appear")
            reader.close()
        wait_for(lambda: maildir_files(root, "tmp") == [], "the tmp file to be deleted")
    assert maildir_files(root, "new") == []


def test_mailbox_size_limit_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    message = b"Subject: too big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1000
    with serving(Mailbox(root), data_size_limit=100_000) as controller:
        with smtplib.SMTP(HOST, controller.port) as client:
            client.ehlo()
            # Send without the SIZE parameter so the limit trips during DATA.
            client.mail("anne@example.com")
            client.rcpt("bart@example.com")
            code, _ = client.data(message)
        assert code == 552
        wait_for(lambda: maildir_files(root, "tmp") == [], "the tmp file to be deleted")
    assert maildir_files(root, "new") == []


def test_mailbox_reset_and_handle_message(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    handler = Mailbox(root)
    message = EmailMessage()
    message["Subject"] = "direct"
    message.set_payload("body\n")
    handler.handle_message(message)
    assert [m["Subject"] for m in mailbox.Maildir(root)] == ["direct"]
    handler.reset()
    assert list(mailbox.Maildir(root)) == []


def test_mailbox_from_cli(tmp_path: Path) -> None:
    handler = Mailbox.from_cli(parser(), str(tmp_path / "md"))
    assert Path(handler.mail_dir) == tmp_path / "md"
    assert (tmp_path / "md" / "new").is_dir()
    with pytest.raises(SystemExit):
        Mailbox.from_cli(parser())
    with pytest.raises(SystemExit):
        Mailbox.from_cli(parser(), "a", "b")


# -- Proxy ------------------------------------------------------------------


class Upstream:
    """The relay's destination: refuses some recipients, keeps the rest."""

    def __init__(self, rcpt_reply: str = "550 5.1.1 no such user") -> None:
        self.rcpt_reply = rcpt_reply
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextmanager
def relay(upstream: Upstream) -> Iterator[Controller]:
    with serving(upstream) as far, serving(Proxy(HOST, far.port)) as near:
        yield near


@pytest.mark.parametrize("decode_data", [False, True])
def test_proxy_relays_with_x_peer(decode_data: bool) -> None:
    upstream = Upstream()
    with (
        serving(upstream) as far,
        serving(Proxy(HOST, far.port), decode_data=decode_data) as near,
        smtplib.SMTP(HOST, near.port) as client,
    ):
        assert client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE) == {}
        host, port = client.sock.getsockname()
    assert len(upstream.received) == 1
    mail_from, rcpt_tos, content = upstream.received[0]
    assert (mail_from, rcpt_tos) == ("anne@example.com", ["bart@example.com"])
    assert (
        after_received(content)
        == MESSAGE.replace(
            "Message-ID: <ant>\r\n", f"Message-ID: <ant>\r\nX-Peer: {host}:{port}\r\n"
        ).encode()
    )


def test_proxy_partly_refused_still_accepts() -> None:
    upstream = Upstream()
    with relay(upstream) as near, smtplib.SMTP(HOST, near.port) as client:
        refused = client.sendmail(
            "anne@example.com", ["bart@example.com", "nobody@refused.example"], MESSAGE
        )
    assert refused == {}
    assert [r[1] for r in upstream.received] == [["bart@example.com"]]


@pytest.mark.parametrize(
    ("rcpt_reply", "code"), [("550 5.1.1 no such user", 554), ("450 4.2.0 busy", 451)]
)
def test_proxy_all_refused(rcpt_reply: str, code: int) -> None:
    upstream = Upstream(rcpt_reply)
    with (
        relay(upstream) as near,
        smtplib.SMTP(HOST, near.port) as client,
        pytest.raises(smtplib.SMTPDataError) as raised,
    ):
        client.sendmail("anne@example.com", ["nobody@refused.example"], MESSAGE)
    assert raised.value.smtp_code == code
    assert upstream.received == []


def test_proxy_dead_upstream_gives_451_without_details() -> None:
    with serving(Proxy(HOST, free_port())) as near, smtplib.SMTP(HOST, near.port) as client:
        client.ehlo()
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        code, text = client.data(MESSAGE)
        assert client.noop()[0] == 250  # the session goes on
    assert code == 451
    assert text == b"4.4.0 The relay host is unavailable; try again later"


# -- X-Peer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "sockname", "expected"),
    [
        (("127.0.0.1", 32994), None, "127.0.0.1:32994"),
        (("::1", 32994, 0, 0), None, "[::1]:32994"),
        (("2001:db8::25", 25, 0, 3), None, "[2001:db8::25]:25"),
        ("", "/run/smtpkit.sock", "/run/smtpkit.sock"),
        ("", b"/run/bytes.sock", "/run/bytes.sock"),
        ("", "\0abstract", "@abstract"),
        (None, None, "unknown"),
        ("", "", "unknown"),
    ],
)
def test_peer_text_forms(peer: object, sockname: object, expected: str) -> None:
    assert handlers._peer_text(peer, sockname) == expected


@contextmanager
def unix_serving(handler: Any) -> Iterator[str]:
    """Serve ``handler`` on a Unix socket in a short temporary folder; yield its path."""
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="skh") as folder:
        path = os.path.join(folder, "smtp.sock")
        controller = UnixSocketController(handler, path)
        controller.start()
        try:
            yield path
        finally:
            controller.stop()


def send_over_unix_socket(path: str, message: bytes) -> None:
    """Send one message over the Unix socket at ``path``, checking each reply code."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command, code in (
            (b"HELO me", b"250"),
            (b"MAIL FROM:<anne@example.com>", b"250"),
            (b"RCPT TO:<bart@example.com>", b"250"),
            (b"DATA", b"354"),
            (message + b".", b"250"),
            (b"QUIT", b"221"),
        ):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(code), command
        reader.close()


def test_x_peer_names_the_unix_socket(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    stream = io.StringIO()
    collecting = Collecting()
    paths = []
    for handler in (Mailbox(root), Debugging(stream), collecting):
        with unix_serving(handler) as path:
            send_over_unix_socket(path, MESSAGE.encode())
            paths.append(path)
    [stored] = maildir_files(root, "new")
    assert after_received(stored.read_bytes()).startswith(f"X-Peer: {paths[0]}\n".encode())
    assert f"X-Peer: {paths[1]}" in stream.getvalue().splitlines()
    assert collecting.messages[0]["X-Peer"] == paths[2]


# -- SMTPUTF8 addresses in Mailbox's headers ---------------------------------


def read_maildir_decoded(root: Path) -> list[email.message.EmailMessage]:
    """The messages in ``root`` (read with ``mailbox.Maildir``), parsed with the modern policy."""
    box = mailbox.Maildir(root)
    parsed = [
        email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        for key in box.iterkeys()
    ]
    return [message for message in parsed if isinstance(message, email.message.EmailMessage)]


def test_mailbox_encodes_utf8_addresses_as_rfc2047(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    sender = "jörg@exämple.de"
    recipients = ["zoë@例え.jp", "bart@example.com", "ünïcödé" * 12 + "@example.com"]
    message = f"From: {sender}\r\nSubject: Grüße\r\n\r\nHallo.\r\n".encode()
    with (
        serving(Mailbox(root), enable_SMTPUTF8=True) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.ehlo()
        assert client.has_extn("smtputf8")
        assert client.sendmail(sender, recipients, message, mail_options=["SMTPUTF8"]) == {}
    [stored] = read_maildir_decoded(root)
    assert str(stored["X-MailFrom"]) == sender
    assert str(stored["X-RcptTo"]) == ", ".join(recipients)
    # The envelope headers themselves are plain ASCII on disk.
    [path] = maildir_files(root, "new")
    envelope_lines = after_received(path.read_bytes()).split(b"\n")[:3]
    assert all(line.isascii() for line in envelope_lines), envelope_lines
    assert envelope_lines[2].startswith(b"X-RcptTo: =?utf-8?")


# -- Message(message_class=EmailMessage) ------------------------------------

ENCODED_SUBJECT = MESSAGE.replace("Subject: A test", "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=")


def test_email_message_class_parses_with_the_modern_policy() -> None:
    modern = Keeping(email.message.EmailMessage)
    legacy = Keeping(None)
    for handler in (modern, legacy):
        with serving(handler) as controller, smtplib.SMTP(HOST, controller.port) as client:
            client.sendmail("anne@example.com", ["bart@example.com"], ENCODED_SUBJECT)
    [new], [old] = modern.messages, legacy.messages
    assert type(new) is email.message.EmailMessage
    assert new["Subject"] == "Grüße"
    assert new["X-MailFrom"] == "anne@example.com"
    assert type(old) is EmailMessage
    assert old["Subject"] == "=?utf-8?q?Gr=C3=BC=C3=9Fe?="


@pytest.mark.anyio
async def test_async_message_with_email_message_class_decodes_headers() -> None:
    class Modern(AsyncCollecting):
        def __init__(self) -> None:
            super().__init__()
            self.message_class = email.message.EmailMessage

    handler = Modern()
    with serving(handler) as controller:
        async with aiosmtplib.SMTP(hostname=HOST, port=controller.port) as client:
            await client.sendmail("anne@example.com", ["bart@example.com"], ENCODED_SUBJECT)
    [message] = handler.messages
    assert isinstance(message, email.message.EmailMessage)
    assert message["Subject"] == "Grüße"


class Keeping(Message):
    """A Message handler keeping what it gets, with a chosen message class."""

    def __init__(self, message_class: type[EmailMessage] | None) -> None:
        super().__init__(message_class)
        self.messages: list[EmailMessage] = []

    def handle_message(self, message: EmailMessage) -> None:
        self.messages.append(message)


# -- Storing a changed message ----------------------------------------------


class WholeMessageMailbox(Mailbox):
    """A subclass that turns streaming off and edits ``envelope.content``."""

    handle_DATA_CHUNK = None  # type: ignore[assignment]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if isinstance(envelope.content, str):
            envelope.content = envelope.content.replace("A test", "Edited as text")
        else:
            envelope.content = envelope.content.replace(b"A test", b"Edited as bytes")
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize(("decode_data", "subject"), [(False, "bytes"), (True, "text")])
def test_mailbox_stores_an_edited_content(tmp_path: Path, decode_data: bool, subject: str) -> None:
    root = tmp_path / "Maildir"
    handler = WholeMessageMailbox(root)
    with (
        serving(handler, decode_data=decode_data) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    [stored] = mailbox.Maildir(root)
    assert stored["Subject"] == f"Edited as {subject}"
    assert stored["X-MailFrom"] == "anne@example.com"
    assert maildir_files(root, "tmp") == []


class ReplacingMailbox(Mailbox):
    """A streaming subclass that sets a new ``envelope.content`` before storing."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        assert envelope.content is None  # streamed: nothing kept in memory
        envelope.content = b"Subject: replaced\r\n\r\nA new body.\r\n"
        return await super().handle_DATA(server, session, envelope)


def test_mailbox_stores_a_content_set_while_streaming(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with (
        serving(ReplacingMailbox(root)) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    [path] = maildir_files(root, "new")
    assert path.read_bytes().endswith(
        b"X-RcptTo: bart@example.com\nSubject: replaced\n\nA new body.\n"
    )
    assert maildir_files(root, "tmp") == []


class StampingMailbox(Mailbox):
    """The supported way: override message_bytes."""

    def __init__(self, mail_dir: Path, fail: bool = False) -> None:
        super().__init__(mail_dir)
        self.fail = fail

    def message_bytes(self, envelope: Any) -> bytes | None:
        if self.fail:
            raise RuntimeError("cannot build the message")
        return f"X-Stamp: {len(envelope.rcpt_tos)} recipients\r\n".encode() + MESSAGE.encode()


def test_mailbox_message_bytes_decides_what_is_stored(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with (
        serving(StampingMailbox(root)) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.sendmail(
            "anne@example.com", ["bart@example.com", "cate@example.com"], "Subject: x\r\n\r\n"
        )
    [stored] = mailbox.Maildir(root)
    assert stored["X-Stamp"] == "2 recipients"
    assert stored["Subject"] == "A test"
    assert stored["X-RcptTo"] == "bart@example.com, cate@example.com"
    assert maildir_files(root, "tmp") == []


def test_mailbox_message_bytes_failing_gives_451_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with (
        serving(StampingMailbox(root, fail=True)) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
        pytest.raises(smtplib.SMTPDataError) as raised,
    ):
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    assert raised.value.smtp_code == 451
    assert b"cannot build" not in raised.value.smtp_error
    assert maildir_files(root, "new") == []
    assert maildir_files(root, "tmp") == []


def test_mailbox_default_message_bytes_keeps_what_was_received(tmp_path: Path) -> None:
    class Unchanged(Mailbox):
        handle_DATA_CHUNK = None  # type: ignore[assignment]

    root = tmp_path / "Maildir"
    raw = MESSAGE.replace("Hi Bart", "Hi B\u00e4rt").encode()
    with (
        serving(Unchanged(root), decode_data=True, enable_SMTPUTF8=True) as controller,
        smtplib.SMTP(HOST, controller.port) as client,
    ):
        client.sendmail("anne@example.com", ["bart@example.com"], raw, mail_options=["SMTPUTF8"])
    [path] = maildir_files(root, "new")
    assert path.read_bytes().endswith(raw.replace(b"\r\n", b"\n"))


# -- Creating the folders, cleaning tmp/ -------------------------------------


def test_mailbox_creates_missing_parents(tmp_path: Path) -> None:
    root = tmp_path / "mail" / "users" / "anne"
    with serving(Mailbox(root)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    assert sorted(p.name for p in root.iterdir()) == ["cur", "new", "tmp"]
    assert [m["Subject"] for m in mailbox.Maildir(root)] == ["A test"]


def test_mailbox_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "mail").write_text("not a folder")
    target, blocking = tmp_path / "mail" / "anne", tmp_path / "mail"
    expected = f"Mailbox mail_dir '{target}': .* but '{blocking}' is a file"
    with pytest.raises(NotADirectoryError, match=expected):
        Mailbox(target)


HOUR = 3600.0


def make_tmp_files(root: Path, ages: dict[str, float]) -> None:
    """Create ``root/tmp/<name>`` files last modified ``age`` seconds ago."""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    now = time.time()
    for name, age in ages.items():
        path = root / "tmp" / name
        path.write_bytes(b"Subject: partial\n\nhalf a mess")
        os.utime(path, (now - age, now - age))


def tmp_names(root: Path) -> set[str]:
    return {path.name for path in (root / "tmp").iterdir()}


def test_mailbox_removes_stale_tmp_files_on_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "Maildir"
    make_tmp_files(root, {"crash.1": 37 * HOUR, "crash.2": 400 * HOUR, "young": 35 * HOUR})
    caplog.set_level(logging.INFO, logger="smtpkit.handlers")
    with serving(Mailbox(root)) as controller, smtplib.SMTP(HOST, controller.port) as client:
        assert tmp_names(root) == {"young"}
        client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    assert tmp_names(root) == {"young"}
    assert len(maildir_files(root, "new")) == 1
    [record] = [r for r in caplog.records if "removed" in r.getMessage()]
    assert record.getMessage().startswith("Mailbox: removed 2 file(s) older than 36 hours from ")


def test_mailbox_cleans_tmp_again_when_the_interval_has_passed(tmp_path: Path) -> None:
    class Sweeping(Mailbox):
        tmp_sweep_interval = 0.0

    hourly, eager = tmp_path / "hourly", tmp_path / "eager"
    boxes = [Mailbox(hourly), Sweeping(eager)]
    for root in (hourly, eager):
        # Left after the handler started: only a later clean-up finds them.
        make_tmp_files(root, {"crash": 40 * HOUR, "young": 60.0})
    for box in boxes:
        with serving(box) as controller, smtplib.SMTP(HOST, controller.port) as client:
            client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
    assert tmp_names(hourly) == {"crash", "young"}  # not an hour since the last clean-up
    assert tmp_names(eager) == {"young"}
    assert len(maildir_files(eager, "new")) == 1


def test_a_killed_server_leaves_only_tmp_files_which_a_restart_cleans(tmp_path: Path) -> None:
    # The embedded default of `smtpkit run` stores with a Mailbox.
    root = tmp_path / "Maildir"
    args = ["run", "--port", "0", "--maildir", str(root)]
    first = Command(args, tmp_path)
    try:
        with socket.create_connection((HOST, first.port()), timeout=30) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            for command in (b"HELO me", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>"):
                sock.sendall(command + b"\r\n")
                assert reader.readline().startswith(b"250")
            sock.sendall(b"DATA\r\n")
            assert reader.readline().startswith(b"354")
            # More than one flush of the tmp file, and no end of data.
            sock.sendall(b"Subject: cut by a crash\r\n\r\n" + (b"y" * 998 + b"\r\n") * 600)
            wait_for(lambda: len(maildir_files(root, "tmp")) == 1, "the tmp file", limit=60)
            first.process.kill()
            assert first.wait() != 0
            reader.close()
    finally:
        first.stop()
    [partial] = maildir_files(root, "tmp")
    assert maildir_files(root, "new") == []
    old = time.time() - 37 * HOUR
    os.utime(partial, (old, old))
    second = Command(args, tmp_path)
    try:
        second.wait_for(r"Mailbox: removed 1 file\(s\) older than 36 hours from .*tmp")
        assert maildir_files(root, "tmp") == []
        assert maildir_files(root, "new") == []
    finally:
        second.stop()


# -- Mailbox: group commit ------------------------------------------------------


def numbered_message(index: int) -> bytes:
    """A message whose every line says which one it is, so a mix-up shows."""
    lines = [f"Subject: message {index}", f"Message-ID: <m{index}@example.com>", ""]
    lines += [f"line {line} of message {index} " + "z" * (index % 50) for line in range(40)]
    return ("\r\n".join(lines) + "\r\n").encode()


async def send_concurrently(port: int, sessions: int, per_session: int) -> list[tuple[str, bytes]]:
    """Send from ``sessions`` clients at once; return (sender, message) for every 250."""
    accepted: list[tuple[str, bytes]] = []

    async def session(number: int) -> None:
        async with aiosmtplib.SMTP(hostname=HOST, port=port, timeout=120) as client:
            for one in range(per_session):
                index = number * per_session + one
                sender, message = f"s{index}@example.com", numbered_message(index)
                await client.sendmail(sender, ["rcpt@example.com"], message)
                accepted.append((sender, message))

    await asyncio.gather(*(session(number) for number in range(sessions)))
    return accepted


def test_mailbox_concurrent_deliveries_each_land_once_and_intact(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with serving(Mailbox(root)) as controller:
        accepted = asyncio.run(send_concurrently(controller.port, sessions=40, per_session=5))
    assert len(accepted) == 200
    stored: dict[str, bytes] = {}
    for path in maildir_files(root, "new"):
        header, _, body = path.read_bytes().partition(b"X-RcptTo: rcpt@example.com\n")
        sender = header.split(b"X-MailFrom: ")[1].strip().decode()
        assert sender not in stored, f"{sender}'s message is stored twice"
        stored[sender] = body
    assert maildir_files(root, "tmp") == []
    assert stored == {sender: message.replace(b"\r\n", b"\n") for sender, message in accepted}


class RecordingCommitter(_MaildirCommitter):
    """Records each disk step in order; can hold its first sync of new/ back.

    With ``hold_first_sync_for`` set, the first sync of ``new/`` waits until
    that many renames have happened (or 60 s), so the renames made meanwhile
    must be covered by a later sync.
    """

    def __init__(self, new_dir: Path, hold_first_sync_for: int = 0) -> None:
        super().__init__(new_dir)
        self.events: list[tuple[str, str]] = []
        self.renamed = threading.Condition()
        self.renames = 0
        self.hold_first_sync_for = hold_first_sync_for
        self.syncs = 0

    def record(self, event: str, name: str = "") -> None:
        with self.renamed:
            self.events.append((event, name))

    def sync_file(self, file: io.BufferedWriter, path: Path) -> None:
        super().sync_file(file, path)
        self.record("data synced", path.name)

    def rename(self, tmp_path: Path, new_path: Path) -> None:
        super().rename(tmp_path, new_path)
        with self.renamed:
            self.events.append(("renamed", new_path.name))
            self.renames += 1
            self.renamed.notify_all()

    def sync_directory(self, path: Path) -> None:
        assert path == self.new_dir
        with self.renamed:
            self.syncs += 1
            first = self.syncs == 1
            self.events.append(("dir sync started", ""))
            if first and self.hold_first_sync_for:
                want = self.hold_first_sync_for
                self.renamed.wait_for(lambda: self.renames >= want, timeout=60)
        super().sync_directory(path)
        self.record("dir sync done")


class RecordingMailbox(Mailbox):
    """A Mailbox whose committer records; the reply to each message is recorded too."""

    def __init__(self, mail_dir: Path, hold_first_sync_for: int = 0) -> None:
        self.hold_first_sync_for = hold_first_sync_for
        self.file_of: dict[str, str] = {}
        super().__init__(mail_dir)

    def _make_committer(self, new_dir: Path) -> RecordingCommitter:
        self.recorder = RecordingCommitter(new_dir, self.hold_first_sync_for)
        return self.recorder

    def _new_delivery(self, session: Any, envelope: Any) -> Any:
        delivery = super()._new_delivery(session, envelope)
        self.file_of[envelope.mail_from] = delivery._name
        return delivery

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        # What handle_DATA returns is what the client is sent, after this.
        self.recorder.record(f"returned {reply}", self.file_of[envelope.mail_from])
        return reply


def check_acknowledged_after_durable(events: list[tuple[str, str]], name: str) -> None:
    """The reply to ``name`` follows its data sync, its rename, and a whole later dir sync."""
    position = {event: index for index, event in enumerate(events)}
    synced = position[("data synced", name)]
    renamed = position[("renamed", name)]
    replied = position[("returned 250 OK", name)]
    assert synced < renamed < replied, events
    covering = [
        start
        for start, event in enumerate(events)
        if event[0] == "dir sync started"
        and renamed < start
        and ("dir sync done", "") in events[start + 1 : replied]
    ]
    assert covering, f"{name} got its 250 with no sync of new/ after its rename: {events}"


def send_from_threads(port: int, count: int) -> None:
    """Send one message from each of ``count`` smtplib clients at once."""
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            with smtplib.SMTP(HOST, port, timeout=120) as client:
                client.sendmail(f"s{index}@example.com", ["r@example.com"], MESSAGE)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == []


def test_mailbox_replies_250_only_after_rename_and_directory_sync(tmp_path: Path) -> None:
    handler = RecordingMailbox(tmp_path / "Maildir")
    with serving(handler) as controller:
        send_from_threads(controller.port, 8)
    events = handler.recorder.events
    assert len(handler.file_of) == 8
    for name in handler.file_of.values():
        check_acknowledged_after_durable(events, name)


def test_mailbox_shares_one_directory_sync_among_waiting_messages(tmp_path: Path) -> None:
    # Five messages at once (the worker threads can hold five): the first sync of new/
    # is held until all five are renamed, so the four others wait for one more sync,
    # which covers them all.
    handler = RecordingMailbox(tmp_path / "Maildir", hold_first_sync_for=5)
    with serving(handler) as controller:
        send_from_threads(controller.port, 5)
    events = handler.recorder.events
    assert handler.recorder.renames == 5
    assert handler.recorder.syncs <= 2, events
    for name in handler.file_of.values():
        check_acknowledged_after_durable(events, name)
    assert len(maildir_files(tmp_path / "Maildir", "new")) == 5
