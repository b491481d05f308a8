"""The bytes a route gets, the reply of an accepted message, and a routed app's single hooks."""

from __future__ import annotations

import re
import smtplib
from typing import Any

from smtpkit import App
from smtpkit.routing import RoutedMessage

from .helpers import MESSAGE, ServeApp

#: The ``from`` name and the ``id`` of a Received field.
RECEIVED = re.compile(rb"^Received: from (\S+) .*?\bid ([0-9a-f]+)\b", re.DOTALL)


def deliver(client: smtplib.SMTP, recipients: list[str]) -> tuple[int, bytes]:
    """One transaction on an open, greeted connection; the DATA reply."""
    client.mail("anne@example.com")
    for address in recipients:
        assert client.rcpt(address)[0] == 250, address
    return client.data(MESSAGE)


def test_a_message_read_after_the_session_moved_on_has_the_field_of_its_transaction(
    serve_app: ServeApp,
) -> None:
    app = App()
    kept: list[RoutedMessage] = []

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        kept.append(message)  # read later, not now

    with serve_app(app).client() as client:
        client.ehlo("first.example")
        assert deliver(client, ["anne@example.com"]) == (250, b"2.0.0 OK")
        client.ehlo("second.example")
        assert deliver(client, ["bart@example.com"]) == (250, b"2.0.0 OK")
    names = []
    for message in kept:
        found = RECEIVED.match(message.content)
        assert found is not None, message.content
        assert message.content.endswith(MESSAGE)
        names.append(found.group(1))
    assert names == [b"first.example", b"second.example"]


def test_the_routes_of_one_message_get_the_same_bytes(serve_app: ServeApp) -> None:
    app = App()
    contents: dict[str, bytes] = {}

    @app.route("(user)@one.example")
    async def one(message: RoutedMessage) -> None:
        contents["one"] = message.content

    @app.route("(user)@two.example")
    def two(message: RoutedMessage) -> None:
        contents["two"] = message.content

    with serve_app(app).client() as client:
        client.ehlo("client.example")
        assert deliver(client, ["a@one.example", "b@two.example"]) == (250, b"2.0.0 OK")
        assert deliver(client, ["c@one.example", "d@two.example"]) == (250, b"2.0.0 OK")
    assert contents["one"] == contents["two"]
    found = RECEIVED.match(contents["one"])
    assert found is not None and found.group(1) == b"client.example"


def test_without_the_received_field_a_route_gets_the_bytes_as_sent(serve_app: ServeApp) -> None:
    app = App()
    contents: list[bytes] = []

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        contents.append(message.content)

    with serve_app(app, received_header=False).client() as client:
        client.ehlo("client.example")
        assert deliver(client, ["anne@example.com"]) == (250, b"2.0.0 OK")
    assert contents == [MESSAGE]


def test_the_accepted_reply_follows_the_enhanced_codes_setting(serve_app: ServeApp) -> None:
    app = App()
    unread: list[str] = []

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        unread.extend(message.recipients)  # the content is never read

    with serve_app(app, enhanced_status_codes=False).client() as client:
        client.ehlo("client.example")
        assert deliver(client, ["anne@example.com", "bart@example.com"]) == (250, b"OK")
    assert unread == ["anne@example.com", "bart@example.com"]


def test_one_rcpt_hook_and_one_data_hook_before_the_routes(serve_app: ServeApp) -> None:
    app = App()
    delivered: list[tuple[str, ...]] = []

    @app.hook("RCPT")
    async def screen(server: Any, session: Any, envelope: Any, address: str, options: Any) -> Any:
        return "550 5.7.1 Blocked" if address.startswith("blocked@") else None

    @app.hook("DATA")
    def spam(server: Any, session: Any, envelope: Any) -> str | None:
        return "554 5.7.1 Spam" if b"spam" in envelope.content else None

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        delivered.append(message.recipients)

    with serve_app(app).client() as client:
        client.ehlo("client.example")
        client.mail("anne@example.com")
        assert client.rcpt("blocked@example.com") == (550, b"5.7.1 Blocked")
        assert client.rcpt("anne@other.example")[0] == 550  # the hook passes; no route
        assert client.rcpt("anne@example.com") == (250, b"2.0.0 OK")
        assert client.data(b"Subject: spam\r\n\r\nspam\r\n") == (554, b"5.7.1 Spam")
        assert deliver(client, ["bart@example.com"]) == (250, b"2.0.0 OK")
    assert delivered == [("bart@example.com",)]
