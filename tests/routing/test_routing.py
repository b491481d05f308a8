"""Recipient routing: refused at RCPT, delivered once per route after DATA."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from smtpkit import SMTP, App, Envelope, Session
from smtpkit.lmtp import LMTP
from smtpkit.routing import RoutedMessage

from .helpers import MESSAGE, ServeApp


def send(
    served: Any, recipients: list[str], message: bytes = MESSAGE
) -> tuple[dict[str, tuple[int, bytes]], tuple[int, bytes] | None]:
    """One transaction: the refused recipients and the DATA reply (None if not sent)."""
    refused: dict[str, tuple[int, bytes]] = {}
    with served.client() as client:
        client.ehlo()
        client.mail("anne@example.com")
        for address in recipients:
            reply = client.rcpt(address)
            if reply[0] != 250:
                refused[address] = reply
        if len(refused) == len(recipients):
            return refused, None
        return refused, client.data(message)


def test_routes_accept_refuse_and_capture(serve_app: ServeApp) -> None:
    app = App()
    delivered: list[RoutedMessage] = []

    @app.route("(user)@example.com", user="[a-z.]+")
    async def inbox(message: RoutedMessage) -> str:
        delivered.append(message)
        return "250 2.0.0 stored"

    refused, reply = send(
        serve_app(app), ["anne@example.com", "Bad@example.com", "bart.p@EXAMPLE.COM", "x@other.org"]
    )
    assert refused == {
        "Bad@example.com": (
            550,
            b"5.1.1 <Bad@example.com>: Recipient address rejected: no route",
        ),
        "x@other.org": (550, b"5.1.1 <x@other.org>: Recipient address rejected: no route"),
    }
    assert reply == (250, b"2.0.0 stored")
    # One delivery for the route, with both of its recipients.
    assert len(delivered) == 1
    message = delivered[0]
    assert message.recipients == ("anne@example.com", "bart.p@EXAMPLE.COM")
    assert message.captures == {
        "anne@example.com": {"user": "anne"},
        "bart.p@EXAMPLE.COM": {"user": "bart.p"},
    }
    assert message.capture == {"user": "anne"}
    # The content as received, after this server's Received field.
    assert message.content.startswith(b"Received: from ") and message.content.endswith(MESSAGE)
    assert message.message["Subject"] == "A test"
    assert message.mail_from == "anne@example.com"
    assert message.envelope.rcpt_tos == ["anne@example.com", "bart.p@EXAMPLE.COM"]
    assert message.session.peer[0] == "127.0.0.1"
    assert message.route.name == "inbox"
    assert message.route.pattern.text == "(user)@example.com"


def test_no_routes_means_every_recipient_is_accepted(serve_app: ServeApp) -> None:
    refused, reply = send(serve_app(App()), ["anyone@anywhere.example"])
    assert refused == {}
    assert reply == (250, b"2.0.0 OK")


def test_first_matching_route_wins(serve_app: ServeApp) -> None:
    app = App()
    got: dict[str, tuple[str, ...]] = {}

    @app.route("postmaster@example.com")
    async def postmaster(message: RoutedMessage) -> None:
        got["postmaster"] = message.recipients

    @app.route("(user)@example.com")
    async def everyone(message: RoutedMessage) -> None:
        got["everyone"] = message.recipients

    _, reply = send(serve_app(app), ["postmaster@example.com", "anne@example.com"])
    # None means accepted.
    assert reply == (250, b"2.0.0 OK")
    assert got == {"postmaster": ("postmaster@example.com",), "everyone": ("anne@example.com",)}
    assert [route.name for route in app.routes] == ["postmaster", "everyone"]


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        (("250 a", "250 b"), (250, b"2.0.0 a")),
        (("250 a", "451 4.3.0 b"), (451, b"4.3.0 b")),
        (("452 4.2.2 a", "554 5.0.0 b"), (554, b"5.0.0 b")),
        (("554 5.0.0 a", "550 5.0.0 b"), (554, b"5.0.0 a")),
    ],
)
def test_worst_reply_wins(
    serve_app: ServeApp, replies: tuple[str, str], expected: tuple[int, bytes]
) -> None:
    app = App()
    calls: list[str] = []

    @app.route("a@example.com")
    async def first(message: RoutedMessage) -> str:
        calls.append("a")
        return replies[0]

    @app.route("b@example.com")
    async def second(message: RoutedMessage) -> str:
        calls.append("b")
        return replies[1]

    _, reply = send(serve_app(app), ["a@example.com", "b@example.com"])
    assert reply == expected
    # Every route gets the message, whatever the others answered.
    assert calls == ["a", "b"]


def test_plain_route_runs_in_a_thread(serve_app: ServeApp) -> None:
    app = App()
    threads: list[str] = []

    @app.route("(user)@example.com")
    def deliver(message: RoutedMessage) -> str:
        threads.append(threading.current_thread().name)
        return f"250 2.0.0 for {message.capture['user']}"

    _, reply = send(serve_app(app), ["anne@example.com"])
    assert reply == (250, b"2.0.0 for anne")
    assert threads[0].startswith("AnyIO worker thread")


def test_route_exception_goes_to_the_exception_handler(serve_app: ServeApp) -> None:
    app = App()

    class QuotaExceeded(Exception):
        pass

    @app.route("full@example.com")
    async def full(message: RoutedMessage) -> str:
        raise QuotaExceeded("mailbox full")

    @app.route("broken@example.com")
    async def broken(message: RoutedMessage) -> str:
        raise RuntimeError("disk on fire")

    @app.exception_handler(QuotaExceeded)
    def over_quota(error: QuotaExceeded) -> str:
        return "452 4.2.2 Mailbox full"

    served = serve_app(app)
    assert send(served, ["full@example.com"])[1] == (452, b"4.2.2 Mailbox full")
    code, text = send(served, ["broken@example.com"])[1] or (0, b"")
    assert code == 451 and b"fire" not in text


def test_route_returning_a_non_string_gets_451(serve_app: ServeApp) -> None:
    app = App()

    @app.route("anne@example.com")
    async def bad(message: RoutedMessage) -> Any:
        return 250

    assert send(serve_app(app), ["anne@example.com"])[1] == (
        451,
        b"4.3.0 Requested action aborted: local error in processing",
    )


def test_rcpt_hooks_run_before_routing(serve_app: ServeApp) -> None:
    app = App()
    seen: list[str] = []

    @app.hook("RCPT")
    async def policy(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str | None:
        seen.append(address)
        return "550 5.7.1 blocked" if address.startswith("blocked") else None

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        return None

    refused, reply = send(
        serve_app(app), ["blocked@example.com", "anne@example.com", "nobody@other.org"]
    )
    assert refused["blocked@example.com"] == (550, b"5.7.1 blocked")
    assert refused["nobody@other.org"][0] == 550
    assert reply == (250, b"2.0.0 OK")
    assert seen == ["blocked@example.com", "anne@example.com", "nobody@other.org"]


def test_recipient_a_hook_accepted_without_a_route_fails_data(serve_app: ServeApp) -> None:
    app = App()
    delivered: list[tuple[str, ...]] = []

    @app.hook("RCPT")
    async def take_all(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        delivered.append(message.recipients)

    # Nothing is silently dropped: the client hears that the message failed.
    _, reply = send(serve_app(app), ["anne@example.com", "stray@other.org"])
    assert reply == (550, b"5.1.1 <stray@other.org>: Recipient address rejected: no route")
    assert delivered == [("anne@example.com",)]


def test_data_hook_decides_before_the_routes(serve_app: ServeApp) -> None:
    app = App()
    delivered: list[str] = []

    @app.hook("DATA")
    async def filter_spam(server: SMTP, session: Session, envelope: Envelope) -> str | None:
        assert isinstance(envelope.content, bytes)
        return "554 5.7.1 spam" if b"viagra" in envelope.content else None

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        delivered.append(message.capture["user"])

    served = serve_app(app)
    assert send(served, ["anne@example.com"], MESSAGE + b"viagra\r\n")[1] == (554, b"5.7.1 spam")
    assert send(served, ["bart@example.com"])[1] == (250, b"2.0.0 OK")
    assert delivered == ["bart"]


def test_routes_get_the_content_when_chunks_are_streamed(
    serve_app: ServeApp, raw: Callable[..., Any]
) -> None:
    app = App()
    streamed = bytearray()
    contents: list[bytes] = []

    @app.hook("DATA_CHUNK")
    async def stream(server: SMTP, session: Session, envelope: Envelope, chunk: bytes) -> None:
        streamed.extend(chunk)

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        contents.append(message.content)

    body = MESSAGE + b"line\r\n" * 20_000
    served = serve_app(app)
    assert send(served, ["anne@example.com"], body)[1] == (250, b"2.0.0 OK")
    assert bytes(streamed) == body
    # An empty message streams no chunk at all.
    client = raw(served.port)
    for line in ("EHLO client.test", "MAIL FROM:<anne@example.com>", "RCPT TO:<bart@example.com>"):
        assert client.command(line).startswith("250")
    assert client.command("DATA").startswith("354")
    assert client.command(".") == "250 2.0.0 OK"
    # Each after this server's Received field, which ends with the date (in UTC).
    assert all(content.startswith(b"Received: from ") for content in contents)
    assert [content.partition(b" +0000\r\n")[2] for content in contents] == [body, b""]


def test_lmtp_routes_reply_per_recipient(serve_app: ServeApp, raw: Callable[..., Any]) -> None:
    app = App(server_class=LMTP)

    @app.route("ok@example.com")
    async def ok(message: RoutedMessage) -> str:
        return "250 2.1.5 delivered"

    @app.route("full@example.com")
    async def full(message: RoutedMessage) -> str:
        return "452 4.2.2 mailbox full"

    served = serve_app(app)
    client = raw(served.port)
    client.send(b"LHLO client.test\r\n")
    assert client.reply()[-1].startswith("250 ")
    for line in (
        "MAIL FROM:<anne@example.com>",
        "RCPT TO:<ok@example.com>",
        "RCPT TO:<full@example.com>",
        "RCPT TO:<ok@example.com>",
    ):
        assert client.command(line) == "250 2.0.0 OK"
    assert client.command("DATA").startswith("354")
    client.send(MESSAGE + b".\r\n")
    assert client.lines(3) == [
        "250 2.1.5 delivered",
        "452 4.2.2 mailbox full",
        "250 2.1.5 delivered",
    ]


def test_route_names_and_twin() -> None:
    app = App()

    async def inbox(message: RoutedMessage) -> None:
        return None

    assert app.add_route("(user)@example.com", inbox, name="mail", user="[a-z]+") is inbox
    assert app.route("abuse@example.com")(inbox) is inbox
    assert [str(route) for route in app.routes] == [
        "mail: (user)@example.com",
        "inbox: abuse@example.com",
    ]
    with pytest.raises(ValueError, match=r"route name 'mail' is registered twice"):
        app.add_route("other@example.com", inbox, name="mail")


def test_invalid_route_pattern_fails_at_the_decorator() -> None:
    app = App()
    with pytest.raises(ValueError, match="capture 'usr', which the pattern does not have"):
        app.route("(user)@example.com", usr="[a-z]+")


def test_captures_argument_for_reserved_names(serve_app: ServeApp) -> None:
    app = App()
    got: list[dict[str, str]] = []

    @app.route("(name)@example.com", captures={"name": "[a-z]+"})
    async def inbox(message: RoutedMessage) -> None:
        got.append(dict(message.capture))

    refused, reply = send(serve_app(app), ["anne@example.com", "A1@example.com"])
    assert list(refused) == ["A1@example.com"]
    assert reply == (250, b"2.0.0 OK")
    assert got == [{"name": "anne"}]


def test_refused_recipients_are_reported_by_smtplib(serve_app: ServeApp) -> None:
    app = App()

    @app.route("anne@example.com")
    async def inbox(message: RoutedMessage) -> None:
        return None

    with serve_app(app).client() as client:
        refused = client.sendmail("x@example.com", ["anne@example.com", "bob@example.com"], MESSAGE)
        assert refused == {
            "bob@example.com": (
                550,
                b"5.1.1 <bob@example.com>: Recipient address rejected: no route",
            )
        }
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("x@example.com", ["bob@example.com"], MESSAGE)


def test_a_route_with_the_pattern_of_an_earlier_one_is_reported_at_build(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    got: list[str] = []

    @app.route("(user)@Example.com")
    async def first(message: RoutedMessage) -> None:
        got.append("first")

    # The capture's name and the domain's letter case differ: the same addresses match.
    @app.route("(name)@example.COM")
    async def second(message: RoutedMessage) -> None:
        got.append("second")

    @app.route("(name)@example.com", captures={"name": "[a-z]+"})
    async def narrower(message: RoutedMessage) -> None:
        got.append("narrower")

    @app.route("(user)")
    async def anywhere(message: RoutedMessage) -> None:
        got.append("anywhere")

    with caplog.at_level("WARNING", logger="smtpkit.routing"):
        app.build()
    test = test_a_route_with_the_pattern_of_an_earlier_one_is_reported_at_build
    where = f"{__name__}.{test.__name__}"
    assert [record.getMessage() for record in caplog.records] == [
        f"route 'second' (pattern '(name)@example.COM', {where}.<locals>.second (from the "
        f"app)) can never match: route 'first' ({where}.<locals>.first (from the app)) has "
        "the same pattern and comes first"
    ]
    _, reply = send(serve_app(app), ["anne@example.com"])
    assert reply == (250, b"2.0.0 OK")
    assert got == ["first"]
