"""``@app.auth_mechanism`` and ``@app.authenticator``."""

from __future__ import annotations

import base64
import smtplib
import threading
from typing import Any

import pytest

from smtpkit import SMTP, App, AuthResult, Blueprint, Envelope, LoginPassword, Session
from smtpkit.auth import MemoryAuthenticator

from .helpers import MESSAGE, ServeApp

NO_TLS = {"auth.require_tls": False}

# These tests send passwords over plain TCP on loopback, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:auth_required=True with auth_require_tls=False")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_custom_mechanism_with_a_challenge(serve_app: ServeApp) -> None:
    app = App()

    @app.auth_mechanism("X-TOKEN")
    async def token(server: SMTP, args: list[str]) -> AuthResult:
        answer = await server.challenge_auth("token please")
        if answer == b"s3cret":
            return AuthResult(success=True, auth_data="token-user")
        return AuthResult(success=False, handled=False)

    @app.hook("MAIL")
    async def who(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        return f"250 hello {session.auth_data}"

    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        assert "X-TOKEN" in client.esmtp_features["auth"].split()
        assert client.docmd("AUTH", "X-TOKEN") == (334, base64.b64encode(b"token please"))
        assert client.docmd(b64("wrong"))[0] == 535
        client.docmd("AUTH", "X-TOKEN")
        assert client.docmd(b64("s3cret")) == (235, b"2.7.0 Authentication successful")
        assert client.mail("anne@example.com") == (250, b"2.0.0 hello token-user")


def test_mechanism_is_an_auth_method_of_the_class() -> None:
    app = App()

    async def token(server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False)

    assert app.add_auth_mechanism("x-token", token) is token
    method = app.smtp_class.auth_X__TOKEN  # type: ignore[attr-defined]
    assert method.__auth_mechanism_name__ == "X-TOKEN"


def test_plain_mechanism_runs_in_a_thread(serve_app: ServeApp) -> None:
    app = App()
    threads: list[str] = []

    @app.auth_mechanism("X-INITIAL")
    def initial(server: SMTP, args: list[str]) -> AuthResult:
        threads.append(threading.current_thread().name)
        return AuthResult(success=len(args) == 2 and args[1] == b64("ok"))

    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        assert client.docmd("AUTH", "X-INITIAL " + b64("no"))[0] == 535
        assert client.docmd("AUTH", "X-INITIAL " + b64("ok"))[0] == 235
    assert threads and all(name.startswith("AnyIO worker thread") for name in threads)


def test_invalid_mechanism_name() -> None:
    with pytest.raises(ValueError, match="Invalid AUTH mechanism name"):
        App().auth_mechanism("X TOKEN")


def test_plain_authenticator_runs_in_a_thread_and_auth_is_required(serve_app: ServeApp) -> None:
    app = App()
    calls: list[tuple[str, str, bytes]] = []

    @app.authenticator
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        calls.append((threading.current_thread().name, mechanism, auth_data.login))
        ok = auth_data == (b"anne", b"correct horse")
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login)

    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        # An app with an authenticator requires AUTH unless told otherwise.
        assert client.mail("anne@example.com")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("anne", "wrong")
        client.login("anne", "correct horse")
        assert client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE) == {}
    # smtplib tries PLAIN, then LOGIN, with the wrong password; then PLAIN succeeds.
    assert [call[1:] for call in calls] == [
        ("PLAIN", b"anne"),
        ("LOGIN", b"anne"),
        ("PLAIN", b"anne"),
    ]
    assert all(call[0].startswith("AnyIO worker thread") for call in calls)


def test_login_mechanism_with_async_authenticator(serve_app: ServeApp) -> None:
    app = App()
    seen: list[str] = []

    @app.authenticator(required=False)
    async def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        seen.append(mechanism)
        return AuthResult(success=auth_data == (b"anne", b"pw"), handled=False)

    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        # Not required: mail goes through without AUTH.
        assert client.mail("anne@example.com")[0] == 250
        client.rset()
        client.user, client.password = "anne", "pw"
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
    assert seen == ["LOGIN"]


def test_ready_made_authenticator_object(serve_app: ServeApp) -> None:
    app = App()
    app.set_authenticator(MemoryAuthenticator({"anne": "pw"}))
    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("anne", "nope")
        client.login("anne", "pw")
        assert client.mail("anne@example.com")[0] == 250


def test_authenticator_returning_something_else_fails_closed(serve_app: ServeApp) -> None:
    app = App()

    @app.authenticator
    def sloppy(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        return True  # type: ignore[return-value]

    with serve_app(app, **NO_TLS).client() as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.login("anne", "pw")
        assert error.value.smtp_code == 451
        assert client.mail("anne@example.com")[0] == 530


def test_two_authenticators_name_both_owners() -> None:
    app = App()
    bp = Blueprint("accounts")

    def first(server: SMTP, session: Session, envelope: Envelope, m: str, d: Any) -> AuthResult:
        return AuthResult(success=False)

    def second(server: SMTP, session: Session, envelope: Envelope, m: str, d: Any) -> AuthResult:
        return AuthResult(success=False)

    app.set_authenticator(first)
    bp.set_authenticator(second)
    with pytest.raises(ValueError) as error:
        app.register_blueprint(bp)
    message = str(error.value)
    assert "the authenticator is registered twice" in message
    assert "test_auth.test_two_authenticators_name_both_owners.<locals>.first (from the app)" in (
        message
    )
    assert ".<locals>.second (from blueprint 'accounts')" in message


def test_auth_needs_tls_by_default(serve_app: ServeApp) -> None:
    app = App()
    app.set_authenticator(MemoryAuthenticator({"anne": "pw"}))
    with serve_app(app).client() as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN " + b64("\0anne\0pw"))[0] == 538
