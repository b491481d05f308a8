"""Blueprints: recorded registrations, replayed with options, once or per registration."""

from __future__ import annotations

import pytest

from smtpkit import SMTP, App, Blueprint, Envelope, Session
from smtpkit.routing import BlueprintSetupState, RoutedMessage

from .helpers import MESSAGE, ServeApp


def make_mailboxes() -> tuple[Blueprint, list[tuple[str, str, str]]]:
    """A blueprint with a route, a hook and a command; it logs its deliveries."""
    bp = Blueprint("mailboxes")
    log: list[tuple[str, str, str]] = []

    @bp.route("(user)", user="[a-z]+")
    async def inbox(message: RoutedMessage) -> str:
        address = message.recipients[0]
        log.append((message.route.name, message.capture["user"], address.split("@")[1]))
        return "250 2.0.0 delivered"

    @bp.hook("RCPT")
    async def count(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> None:
        session.state["rcpts"] = session.state.get("rcpts", 0) + 1

    @bp.command("RCPTS")
    async def rcpts(server: SMTP, arg: str | None) -> None:
        assert server.session is not None
        await server.push(f"250 {server.session.state.get('rcpts', 0)}")

    return bp, log


def test_blueprint_registered_twice_with_different_domains(serve_app: ServeApp) -> None:
    bp, log = make_mailboxes()
    app = App()
    app.register_blueprint(bp, domain="example.com")
    app.register_blueprint(bp, name="org-mailboxes", domain="example.org")
    assert [str(route) for route in app.routes] == [
        "mailboxes.inbox: (user)@example.com",
        "org-mailboxes.inbox: (user)@example.org",
    ]
    # The hook and the command are added once, on the first registration.
    assert len(app.hooks["RCPT"]) == 1
    assert app.hooks["RCPT"][0].owner.blueprint == "mailboxes"
    assert list(app.commands) == ["RCPTS"]
    with serve_app(app).client() as client:
        client.ehlo()
        for user, domain in [("anne", "example.com"), ("bart", "example.org")]:
            client.mail("x@example.net")
            assert client.rcpt(f"{user}@{domain}") == (250, b"2.0.0 OK")
            assert client.rcpt(f"{user}@example.net")[0] == 550
            assert client.data(MESSAGE) == (250, b"2.0.0 delivered")
        assert client.docmd("RCPTS") == (250, b"2.0.0 4")
    assert log == [
        ("mailboxes.inbox", "anne", "example.com"),
        ("org-mailboxes.inbox", "bart", "example.org"),
    ]


def test_one_blueprint_on_two_apps(serve_app: ServeApp) -> None:
    bp, log = make_mailboxes()
    first, second = App(name="first"), App(name="second")
    first.register_blueprint(bp, domain="one.example")
    second.register_blueprint(bp, domain="two.example", name_prefix="mx")
    assert [route.name for route in second.routes] == ["mx.mailboxes.inbox"]
    for app, domain in ((first, "one.example"), (second, "two.example")):
        with serve_app(app).client() as client:
            assert client.sendmail("x@example.net", [f"anne@{domain}"], MESSAGE) == {}
            assert client.docmd("RCPTS") == (250, b"2.0.0 1")
    assert [entry[2] for entry in log] == ["one.example", "two.example"]
    assert first.smtp_class is not second.smtp_class


def test_blueprint_without_domain_matches_any_domain() -> None:
    bp, _ = make_mailboxes()
    app = App()
    app.register_blueprint(bp)
    pattern = app.routes[0].pattern
    assert pattern.match("anne@anywhere.example") == {"user": "anne"}


def test_same_name_twice_is_refused() -> None:
    bp, _ = make_mailboxes()
    app = App()
    app.register_blueprint(bp, domain="example.com")
    with pytest.raises(ValueError, match=r"already registered under the name 'mailboxes'.*name="):
        app.register_blueprint(bp, domain="example.org")


def test_domain_for_a_pattern_with_a_domain() -> None:
    bp = Blueprint("fixed")

    @bp.route("abuse@example.com")
    async def abuse(message: RoutedMessage) -> None:
        return None

    with pytest.raises(ValueError, match=r"blueprint 'fixed', route 'abuse':.*already names a"):
        App().register_blueprint(bp, domain="example.org")


def test_two_owners_of_a_command_are_named() -> None:
    app = App()
    tools = Blueprint("tools")

    @app.command("PING")
    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 app")

    @tools.command("PING")
    async def tools_ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 tools")

    with pytest.raises(ValueError) as error:
        app.register_blueprint(tools)
    where = f"{ping.__module__}.test_two_owners_of_a_command_are_named.<locals>"
    assert str(error.value) == (
        f"command 'PING' is registered twice: by {where}.ping (from the app) and by "
        f"{where}.tools_ping (from blueprint 'tools'); an app can have only one, so remove "
        "or rename one of them"
    )


def test_two_blueprints_with_one_mechanism() -> None:
    a, b = Blueprint("a"), Blueprint("b")

    async def mech(server: SMTP, args: list[str]) -> None:
        return None

    a.add_auth_mechanism("X-ONE", mech)
    b.add_auth_mechanism("x-one", mech)
    app = App()
    app.register_blueprint(a)
    with pytest.raises(ValueError, match=r"AUTH mechanism 'X-ONE' is registered twice.*'a'.*'b'"):
        app.register_blueprint(b)


def test_blueprint_cannot_change_after_registration() -> None:
    bp, _ = make_mailboxes()
    App().register_blueprint(bp)
    with pytest.raises(RuntimeError, match=r"Blueprint 'mailboxes' is already registered"):

        @bp.route("late@example.com")
        async def late(message: RoutedMessage) -> None:
            return None


def test_record_and_record_once() -> None:
    bp = Blueprint("custom")
    every: list[tuple[str, str | None, bool]] = []
    once: list[str] = []

    def remember(state: BlueprintSetupState) -> None:
        every.append((state.name, state.domain, state.first_registration))

    bp.record(remember)
    bp.record_once(lambda state: once.append(state.name))
    app = App()
    app.register_blueprint(bp)
    app.register_blueprint(bp, name="again", domain="example.org")
    App().register_blueprint(bp)
    assert every == [
        ("custom", None, True),
        ("again", "example.org", False),
        ("custom", None, True),
    ]
    assert once == ["custom", "custom"]
    assert dict(app.blueprints) == {"custom": bp, "again": bp}


@pytest.mark.parametrize("name", ["", "a.b", "with space", "1abc"])
def test_invalid_blueprint_names(name: str) -> None:
    with pytest.raises(ValueError, match="Blueprint name"):
        Blueprint(name)


def test_blueprint_exception_handler_and_hooks(serve_app: ServeApp) -> None:
    bp = Blueprint("errors")

    class Greylisted(Exception):
        pass

    @bp.hook("MAIL")
    def greylist(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> None:
        if address.startswith("new"):
            raise Greylisted(address)

    @bp.exception_handler(Greylisted)
    async def later(error: Greylisted) -> str:
        return "451 4.7.1 greylisted, try again later"

    app = App()
    app.register_blueprint(bp)
    with serve_app(app).client() as client:
        client.ehlo()
        assert client.mail("new@example.com") == (451, b"4.7.1 greylisted, try again later")
        assert client.mail("old@example.com") == (250, b"2.0.0 OK")
