"""AUTH (RFC 4954): mechanisms, authenticators, policies, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from interop import (
    HOST,
    LOOP_KINDS,
    MESSAGE,
    RawClient,
    Recorder,
    ServerThread,
    certificates,
    serving,
)

from smtpkit.auth import (
    AuthResult,
    LoginPassword,
    MemoryAuthenticator,
    OAuthAuthenticator,
    OAuthToken,
    PasswordFileAuthenticator,
    hash_password,
)
from smtpkit.auth.mechanisms import OAuth2Mechanisms
from smtpkit.smtp import MISSING, SMTP, Envelope, Session, auth_mechanism

USER, PASSWORD = "anne", "correct horse"
USERS = {USER: PASSWORD}
INVALID = (535, "5.7.8 Authentication credentials invalid")
SUCCESS = (235, "2.7.0 Authentication successful")
ABORTED = (501, "5.7.0 Auth aborted")
BAD_BASE64 = (501, "5.5.2 Can't decode base64")
TOO_LONG = (500, "5.5.6 Authentication Exchange line is too long")


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def plain(user: str = USER, password: str = PASSWORD) -> str:
    return b64(f"\0{user}\0{password}")


def ehlo_keywords(text: str) -> dict[str, str]:
    """The extensions of an EHLO reply: keyword -> parameters."""
    found = {}
    for line in text.splitlines()[1:]:
        keyword, _, params = line.partition(" ")
        found[keyword.upper()] = params
    return found


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def server_tls() -> ssl.SSLContext:
    return certificates().server_context()


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    return certificates().client_context()


@pytest.fixture
def plain_server() -> Iterator[ServerThread]:
    """A server offering AUTH without TLS, for scripted dialogs."""
    with serving(
        Recorder(), authenticator=MemoryAuthenticator(USERS), auth_require_tls=False
    ) as server:
        yield server


def greeted(port: int) -> RawClient:
    client = RawClient(port)
    client.reply()
    code, _ = client.command("EHLO client.test")
    assert code == 250
    return client


# -- Real clients --------------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanism", "initial_response"),
    [("PLAIN", True), ("PLAIN", False), ("LOGIN", True), ("LOGIN", False)],
)
def test_smtplib_login_over_starttls(
    loop_kind: str,
    mechanism: str,
    initial_response: bool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    handler = Recorder()
    with (
        serving(
            handler,
            loop_kind,
            tls_context=server_tls,
            authenticator=MemoryAuthenticator(USERS),
            auth_required=True,
        ) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        client.user, client.password = USER, PASSWORD
        method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, text = client.auth(mechanism, method, initial_response_ok=initial_response)
        assert (code, text.decode()) == SUCCESS
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    session, _ = handler.messages[0]
    assert session.authenticated is True
    assert session.auth_data == LoginPassword(USER.encode(), PASSWORD.encode())


def test_smtplib_wrong_password(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with (
        serving(
            Recorder(), loop_kind, tls_context=server_tls, authenticator=MemoryAuthenticator(USERS)
        ) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        client.starttls(context=client_tls)
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(USER, "wrong")
        assert (caught.value.smtp_code, caught.value.smtp_error.decode()) == INVALID


async def _aiosmtplib_login(port: int, context: ssl.SSLContext, mechanism: str) -> int:
    client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=True, tls_context=context)
    await client.connect()
    await client.ehlo()  # aiosmtplib does not greet again after STARTTLS by itself
    assert client.server_auth_methods == ["login", "plain"]
    if mechanism == "PLAIN":
        response = await client.auth_plain(USER, PASSWORD)
    else:
        response = await client.auth_login(USER, PASSWORD)
    await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    await client.quit()
    return response.code


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_aiosmtplib_login(
    loop_kind: str, mechanism: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Recorder()
    with serving(
        handler,
        loop_kind,
        tls_context=server_tls,
        authenticator=MemoryAuthenticator(USERS),
        auth_required=True,
    ) as server:
        assert asyncio.run(_aiosmtplib_login(server.port, client_tls, mechanism)) == 235
    assert handler.messages[0][0].authenticated is True


# -- PLAIN and LOGIN dialogs ----------------------------------------------------


def test_plain_with_challenge(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command("AUTH PLAIN") == (334, "")
        assert client.command(plain()) == SUCCESS


def test_login_challenges(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command("AUTH LOGIN") == (334, b64("User Name\0"))
        assert client.command(b64(USER)) == (334, b64("Password\0"))
        assert client.command(b64(PASSWORD)) == SUCCESS


def test_login_with_initial_response(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command(f"AUTH LOGIN {b64(USER)}") == (334, b64("Password\0"))
        assert client.command(b64(PASSWORD)) == SUCCESS


def test_mechanism_names_are_case_insensitive(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command(f"auth plain {plain()}") == SUCCESS


@pytest.mark.parametrize(
    "dialog",
    [
        ["AUTH PLAIN", "*"],
        ["AUTH LOGIN", "*"],
        ["AUTH LOGIN", b64(USER), "*"],
        [f"AUTH LOGIN {b64(USER)}", "*"],
    ],
)
def test_abort_with_star(plain_server: ServerThread, dialog: list[str]) -> None:
    with greeted(plain_server.port) as client:
        for line in dialog[:-1]:
            assert client.command(line)[0] == 334
        assert client.command(dialog[-1]) == ABORTED
        assert client.command("NOOP") == (250, "OK")


@pytest.mark.parametrize(
    "dialog",
    [["AUTH PLAIN not!base64"], ["AUTH PLAIN", "not!base64"], ["AUTH LOGIN", "@@@"]],
)
def test_bad_base64(plain_server: ServerThread, dialog: list[str]) -> None:
    with greeted(plain_server.port) as client:
        for line in dialog[:-1]:
            assert client.command(line)[0] == 334
        assert client.command(dialog[-1]) == BAD_BASE64


def test_plain_that_does_not_split(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command(f"AUTH PLAIN {b64('anne:password')}") == (
            501,
            "5.5.2 Can't split auth value",
        )
        # RFC 4954 §4: "=" is an empty initial response (and PLAIN needs more).
        assert client.command("AUTH PLAIN =") == (501, "5.5.2 Can't split auth value")


def test_wrong_password(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command(f"AUTH PLAIN {plain(password='nope')}") == INVALID
        assert client.command(f"AUTH PLAIN {plain(user='bob')}") == INVALID
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS


@pytest.mark.parametrize(
    ("greeting", "command", "expected"),
    [
        (None, "AUTH PLAIN", (503, "Error: send EHLO first")),
        ("HELO client.test", "AUTH PLAIN", (500, "Error: command 'AUTH' not recognized")),
        ("EHLO client.test", "AUTH", (501, "Not enough value")),
        ("EHLO client.test", "AUTH PLAIN a b", (501, "Too many values")),
        ("EHLO client.test", "AUTH CRAM-MD5", (504, "5.5.4 Unrecognized authentication type")),
    ],
)
def test_auth_refusals(
    plain_server: ServerThread, greeting: str | None, command: str, expected: tuple[int, str]
) -> None:
    with RawClient(plain_server.port) as client:
        client.reply()
        if greeting:
            assert client.command(greeting)[0] == 250
        assert client.command(command) == expected


def test_already_authenticated(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS
        assert client.command(f"AUTH PLAIN {plain()}") == (503, "Already authenticated")


def test_auth_inside_a_mail_transaction(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        assert client.command("MAIL FROM:<a@example.com>") == (250, "OK")
        code, text = client.command(f"AUTH PLAIN {plain()}")
        assert (code, text[:5]) == (503, "5.5.1")
        assert client.command("RSET") == (250, "OK")
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS


# -- Policies -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:auth_required=True with auth_require_tls=False")
def test_auth_required() -> None:
    handler = Recorder()
    with (
        serving(
            handler,
            authenticator=MemoryAuthenticator(USERS),
            auth_required=True,
            auth_require_tls=False,
        ) as server,
        greeted(server.port) as client,
    ):
        required = (530, "5.7.0 Authentication required")
        for command in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
            assert client.command(command) == required, command
        assert client.command("VRFY <a@example.com>") == required
        assert client.command("HELP") == required
        assert client.command("NOOP") == (250, "OK")
        assert client.command("RSET") == (250, "OK")
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS
        assert client.command("MAIL FROM:<a@example.com>") == (250, "OK")
        assert client.command("RCPT TO:<b@example.com>") == (250, "OK")
        assert client.command("DATA")[0] == 354
        assert client.command(MESSAGE + ".") == (250, "OK")
        assert client.command("QUIT") == (221, "Bye")
    assert handler.messages[0][0].auth_data.login == USER.encode()


def test_auth_required_without_tls_warns() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.warns(UserWarning, match="clear text"):
            SMTP(Recorder(), auth_required=True, auth_require_tls=False, loop=loop)
    finally:
        loop.close()


def test_auth_require_tls(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with serving(
        Recorder(), loop_kind, tls_context=server_tls, authenticator=MemoryAuthenticator(USERS)
    ) as server:
        with greeted(server.port) as client:
            assert client.command(f"AUTH PLAIN {plain()}") == (
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            )
        with smtplib.SMTP(HOST, server.port) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("auth")
            smtp.starttls(context=client_tls)
            smtp.ehlo()
            assert smtp.has_extn("auth")
            assert smtp.login(USER, PASSWORD)[0] == 235


def test_auth_exclude_mechanism() -> None:
    with (
        serving(
            Recorder(),
            authenticator=MemoryAuthenticator(USERS),
            auth_require_tls=False,
            auth_exclude_mechanism=["login"],
        ) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        assert ehlo_keywords(client.command("EHLO client.test")[1])["AUTH"] == "PLAIN"
        assert client.command("AUTH LOGIN") == (504, "5.5.4 Unrecognized authentication type")
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS


def test_excluding_every_mechanism_hides_auth() -> None:
    with (
        serving(
            Recorder(), auth_require_tls=False, auth_exclude_mechanism=["PLAIN", "LOGIN"]
        ) as server,
        RawClient(server.port) as client,
    ):
        client.reply()
        assert "AUTH" not in ehlo_keywords(client.command("EHLO client.test")[1])


@pytest.mark.parametrize(("limit", "attempts"), [(None, 3), (1, 1), (5, 5)])
def test_too_many_failures_end_the_session(limit: int | None, attempts: int) -> None:
    extra = {} if limit is None else {"max_auth_failures": limit}
    with (
        serving(
            Recorder(), authenticator=MemoryAuthenticator(USERS), auth_require_tls=False, **extra
        ) as server,
        greeted(server.port) as client,
    ):
        for _ in range(attempts - 1):
            assert client.command(f"AUTH PLAIN {plain(password='guess')}") == INVALID
        assert client.command(f"AUTH PLAIN {plain(password='guess')}") == INVALID
        code, text = client.reply()
        assert (code, text[:5]) == (421, "4.7.0")
        assert client.wait_closed() == b""


# -- Over-long lines ------------------------------------------------------------


@pytest.mark.parametrize("size", [12_289, 12_300, 20_000, 300_000])
def test_overlong_auth_command(plain_server: ServerThread, size: int) -> None:
    with greeted(plain_server.port) as client:
        line = "AUTH PLAIN " + "A" * (size - len("AUTH PLAIN "))
        assert client.command(line) == TOO_LONG
        assert client.command("NOOP") == (250, "OK")


def test_auth_line_at_the_limit_is_read(plain_server: ServerThread) -> None:
    with greeted(plain_server.port) as client:
        line = "AUTH PLAIN " + "A" * (12_288 - len("AUTH PLAIN "))
        # Read whole and decoded: it is not base64 of a PLAIN response.
        assert client.command(line)[0] == 501


@pytest.mark.parametrize("size", [12_289, 50_000])
def test_overlong_response_to_a_challenge(plain_server: ServerThread, size: int) -> None:
    with greeted(plain_server.port) as client:
        assert client.command("AUTH LOGIN") == (334, b64("User Name\0"))
        assert client.command("A" * size) == TOO_LONG
        assert client.command("NOOP") == (250, "OK")


# -- Authenticators and results -------------------------------------------------


class Spy:
    """An authenticator that records its arguments.

    Args:
        answer: the result to return, or an authenticator to ask.
    """

    def __init__(self, answer: AuthResult | Callable[..., AuthResult]) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.calls.append((server, session, envelope, mechanism, auth_data))
        if isinstance(self.answer, AuthResult):
            return self.answer
        return self.answer(server, session, envelope, mechanism, auth_data)


def test_authenticator_arguments() -> None:
    spy = Spy(AuthResult(success=True, auth_data="the identity"))
    handler = Recorder()
    with (
        serving(handler, authenticator=spy, auth_require_tls=False) as server,
        greeted(server.port) as client,
    ):
        assert client.command(f"AUTH LOGIN {b64(USER)}")[0] == 334
        assert client.command(b64(PASSWORD)) == SUCCESS
        client.command("MAIL FROM:<a@example.com>")
        client.command("RCPT TO:<b@example.com>")
        client.command("DATA")
        assert client.command(MESSAGE + ".") == (250, "OK")
    [(smtp, session, envelope, mechanism, auth_data)] = spy.calls
    assert isinstance(smtp, SMTP)
    assert isinstance(session, Session)
    assert isinstance(envelope, Envelope)
    assert mechanism == "LOGIN"
    assert auth_data == LoginPassword(USER.encode(), PASSWORD.encode())
    delivered_session = handler.messages[0][0]
    assert delivered_session is session
    assert session.authenticated is True
    assert session.auth_data == "the identity"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (AuthResult(success=True, message="235 2.7.0 Welcome, Anne"), (235, "2.7.0 Welcome, Anne")),
        (AuthResult(success=False, handled=False), INVALID),
        (
            AuthResult(
                success=False, handled=False, message="454 4.7.0 Temporary authentication failure"
            ),
            (454, "4.7.0 Temporary authentication failure"),
        ),
        # handled=True (the default) promises a reply an authenticator cannot
        # send: the client still gets one.
        (AuthResult(success=False), INVALID),
    ],
)
@pytest.mark.parametrize("with_challenge", [False, True], ids=["initial", "challenge"])
def test_auth_result_semantics(
    result: AuthResult, expected: tuple[int, str], with_challenge: bool
) -> None:
    with (
        serving(Recorder(), authenticator=Spy(result), auth_require_tls=False) as server,
        greeted(server.port) as client,
    ):
        if with_challenge:
            assert client.command("AUTH PLAIN") == (334, "")
            assert client.command(plain()) == expected
        else:
            assert client.command(f"AUTH PLAIN {plain()}") == expected
        assert client.command("NOOP") == (250, "OK")


@pytest.mark.parametrize(("password", "expected"), [(PASSWORD, 235), ("wrong", 535)])
def test_async_authenticator_is_awaited(password: str, expected: int) -> None:
    async def authenticator(*args: Any) -> AuthResult:
        await asyncio.sleep(0.01)
        credentials = args[-1]
        return AuthResult(success=credentials.password == PASSWORD.encode(), handled=False)

    with (
        serving(Recorder(), authenticator=authenticator, auth_require_tls=False) as server,
        greeted(server.port) as client,
    ):
        code, _ = client.command(f"AUTH PLAIN {plain(password=password)}")
        assert code == expected
        assert client.command("NOOP") == (250, "OK")


def test_authenticator_returning_no_auth_result_gets_451(caplog: pytest.LogCaptureFixture) -> None:
    def authenticator(*args: Any) -> Any:
        return True

    with (
        serving(Recorder(), authenticator=authenticator, auth_require_tls=False) as server,
        greeted(server.port) as client,
    ):
        code, _ = client.command(f"AUTH PLAIN {plain()}")
        assert code == 451
        assert client.command("MAIL FROM:<a@example.com>") == (250, "OK")
    assert any("expected an AuthResult" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_login_password_hides_the_password() -> None:
    credentials = LoginPassword(b"anne", b"s3cret-pw")
    assert "s3cret-pw" not in repr(credentials)
    assert "s3cret-pw" not in str(credentials)
    assert "anne" in repr(credentials)
    assert credentials.password == b"s3cret-pw"
    assert "s3cret" not in repr(AuthResult(success=True, auth_data=credentials))


def test_auth_callback_is_deprecated() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.warns(DeprecationWarning, match="auth_callback"):
            SMTP(Recorder(), auth_callback=lambda m, login, pw: True, loop=loop)
    finally:
        loop.close()


@pytest.mark.filterwarnings("ignore:auth_callback is deprecated:DeprecationWarning")
def test_auth_callback_still_works() -> None:
    seen: list[tuple[str, bytes, bytes]] = []

    def callback(mechanism: str, login: bytes, password: bytes) -> bool:
        seen.append((mechanism, login, password))
        return password == PASSWORD.encode()

    handler = Recorder()
    with (
        serving(handler, auth_callback=callback, auth_require_tls=False) as server,
        greeted(server.port) as client,
    ):
        assert client.command(f"AUTH PLAIN {plain(password='x')}") == INVALID
        assert client.command(f"AUTH PLAIN {plain()}") == SUCCESS
    assert seen == [("PLAIN", b"anne", b"x"), ("PLAIN", b"anne", PASSWORD.encode())]


def test_without_authenticator_nobody_gets_in(plain_server: ServerThread) -> None:
    with serving(Recorder(), auth_require_tls=False) as server, greeted(server.port) as client:
        assert client.command(f"AUTH PLAIN {plain()}") == INVALID


def test_password_file_authenticator(
    tmp_path: Path, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    users = tmp_path / "users"
    users.write_text(f"{USER}:{hash_password(PASSWORD, n=2**10)}\n", encoding="utf-8")
    with (
        serving(
            Recorder(),
            tls_context=server_tls,
            require_starttls=True,
            auth_required=True,
            authenticator=PasswordFileAuthenticator(users),
        ) as server,
        smtplib.SMTP(HOST, server.port) as client,
    ):
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530
        client.starttls(context=client_tls)
        client.ehlo()
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(USER, "wrong")
        assert client.login(USER, PASSWORD)[0] == 235
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}


# -- Custom mechanisms, challenge_auth and handle_AUTH ---------------------------


class CustomSMTP(SMTP):
    @auth_mechanism("X-TOKEN")
    async def auth_token_mechanism(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2 and args[1] == "letmein":
            return AuthResult(success=True, auth_data="token user")
        return AuthResult(success=False, handled=False)

    async def auth_MECH__WITH__DASHES(self, server: SMTP, args: list[str]) -> Any:
        # The older return convention: anything truthy is the identity.
        return "dashes user"


class MechanismHandler(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Any] = []

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=True, auth_data="the handler's PLAIN")

    async def auth_ECHO(self, server: SMTP, args: list[str]) -> AuthResult:
        answer = await server.challenge_auth("Say something")
        self.answers.append(answer)
        if answer is MISSING:
            return AuthResult(success=False)  # challenge_auth has replied
        raw = await server.challenge_auth(b"raw-challenge", encode_to_b64=False)
        self.answers.append(raw)
        if raw is MISSING:
            return AuthResult(success=False)
        return AuthResult(success=answer == b"open sesame", handled=False)

    async def auth_SILENT(self, server: SMTP, args: list[str]) -> None:
        # Old style: None claims "I replied", but only a challenge went out.
        await server.challenge_auth("")
        return None


@pytest.fixture
def custom_server() -> Iterator[tuple[ServerThread, MechanismHandler]]:
    handler = MechanismHandler()
    with serving(
        handler,
        smtp_class=CustomSMTP,
        authenticator=MemoryAuthenticator(USERS),
        auth_require_tls=False,
    ) as server:
        yield server, handler


def test_custom_mechanisms_are_advertised(
    custom_server: tuple[ServerThread, MechanismHandler],
) -> None:
    server, _ = custom_server
    with RawClient(server.port) as client:
        client.reply()
        advertised = ehlo_keywords(client.command("EHLO client.test")[1])["AUTH"].split()
        assert advertised == ["ECHO", "LOGIN", "MECH-WITH-DASHES", "PLAIN", "SILENT", "X-TOKEN"]


@pytest.mark.parametrize(
    ("command", "identity"),
    [
        ("AUTH X-TOKEN letmein", "token user"),
        ("AUTH MECH-WITH-DASHES", None),
        (f"AUTH PLAIN {plain(password='anything')}", "the handler's PLAIN"),
    ],
)
def test_custom_mechanisms_run(
    custom_server: tuple[ServerThread, MechanismHandler], command: str, identity: str | None
) -> None:
    server, handler = custom_server
    with greeted(server.port) as client:
        assert client.command(command) == SUCCESS
        client.command("MAIL FROM:<a@example.com>")
        client.command("RCPT TO:<b@example.com>")
        client.command("DATA")
        assert client.command(MESSAGE + ".") == (250, "OK")
    session = handler.messages[0][0]
    assert session.authenticated is True
    assert session.auth_data == identity


def test_custom_mechanism_failure(custom_server: tuple[ServerThread, MechanismHandler]) -> None:
    server, _ = custom_server
    with greeted(server.port) as client:
        assert client.command("AUTH X-TOKEN guess") == INVALID


def test_challenge_auth(custom_server: tuple[ServerThread, MechanismHandler]) -> None:
    server, handler = custom_server
    with greeted(server.port) as client:
        assert client.command("AUTH ECHO") == (334, b64("Say something"))
        assert client.command(b64("open sesame")) == (334, "raw-challenge")
        assert client.command(b64("anything")) == SUCCESS
    assert handler.answers == [b"open sesame", b"anything"]


@pytest.mark.parametrize(("answer", "reply"), [("*", ABORTED), ("%%%", BAD_BASE64)])
def test_challenge_auth_missing(
    custom_server: tuple[ServerThread, MechanismHandler], answer: str, reply: tuple[int, str]
) -> None:
    server, handler = custom_server
    with greeted(server.port) as client:
        assert client.command("AUTH ECHO")[0] == 334
        assert client.command(answer) == reply
        assert client.command("NOOP") == (250, "OK")
    assert handler.answers == [MISSING]


def test_mechanism_that_forgets_to_reply(
    custom_server: tuple[ServerThread, MechanismHandler],
) -> None:
    server, _ = custom_server
    with greeted(server.port) as client:
        assert client.command("AUTH SILENT") == (334, "")
        assert client.command(b64("x")) == INVALID


@pytest.mark.filterwarnings("ignore:AUTH exchange logging")
def test_challenge_auth_can_log_the_response(caplog: pytest.LogCaptureFixture) -> None:
    class Logged(Recorder):
        async def auth_DEBUG(self, server: SMTP, args: list[str]) -> AuthResult:
            await server.challenge_auth("", log_client_response=True)
            return AuthResult(success=False, handled=False)

    caplog.set_level(logging.DEBUG, logger="smtpkit")
    with serving(Logged(), auth_require_tls=False) as server, greeted(server.port) as client:
        assert client.command("AUTH DEBUG")[0] == 334
        assert client.command(b64("visible-on-purpose")) == INVALID
    assert b64("visible-on-purpose") in caplog.text


class AuthHook(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.args: list[list[str]] = []

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> str:
        self.args.append(args)
        if args[-1] == "yes":
            session.authenticated = True
            session.auth_data = "hook user"
            return "235 2.7.0 Hook says yes"
        return "535 5.7.8 Hook says no"


def test_handle_auth_hook() -> None:
    handler = AuthHook()
    with serving(handler, auth_require_tls=False) as server, greeted(server.port) as client:
        assert client.command("AUTH PLAIN no") == (535, "5.7.8 Hook says no")
        assert client.command("AUTH LOGIN yes") == (235, "2.7.0 Hook says yes")
        assert client.command("AUTH PLAIN") == (503, "Already authenticated")
    assert handler.args == [["PLAIN", "no"], ["LOGIN", "yes"]]


# -- Credentials never reach the log ----------------------------------------------


def test_credentials_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "Tr0ub4dor&3-secret"
    caplog.set_level(logging.DEBUG)
    with serving(
        Recorder(), authenticator=MemoryAuthenticator({USER: secret}), auth_require_tls=False
    ) as server:
        dialogs = [
            [f"AUTH PLAIN {plain(password=secret + 'x')}"],
            ["AUTH PLAIN", plain(password=secret + "y")],
            ["AUTH LOGIN", b64(USER), b64(secret + "z")],
            [f"AUTH LOGIN {b64(USER)}", secret],  # not base64: sent in clear
            [f"AUTH PLAIN {secret}"],
            [f"AUTH LOGIN {b64(USER)}", b64(secret)],
        ]
        for dialog in dialogs:
            with greeted(server.port) as client:
                for line in dialog:
                    code, _ = client.command(line)
                assert code in (235, 501, 535)
    assert caplog.records, "the session logged nothing at all"
    forbidden = [secret, b64(secret), plain(password=secret + "x"), plain(password=secret + "y")]
    for record in caplog.records:
        text = record.getMessage() + (caplog.text if record.exc_info else "")
        for word in forbidden:
            assert word not in text, (word, text)


# -- OAuth 2.0: XOAUTH2 and OAUTHBEARER --------------------------------------------

GOOD_TOKEN = "ya29.good-token"


def xoauth2(user: str, token: str) -> str:
    return b64(f"user={user}\1auth=Bearer {token}\1\1")


def oauthbearer(user: str, token: str) -> str:
    return b64(f"n,a={user},\1host=mx.test\1port=587\1auth=Bearer {token}\1\1")


class OAuthHandler(OAuth2Mechanisms, Recorder):
    oauth_scope = "mail.send"


class OAuthSMTP(OAuth2Mechanisms, SMTP):
    pass


def check_token(token: OAuthToken) -> bool:
    return token.token == GOOD_TOKEN


@pytest.fixture(params=["handler", "smtp-subclass"])
def oauth_server(request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, Recorder, Spy]]:
    spy = Spy(OAuthAuthenticator(check_token))
    if request.param == "handler":
        handler: Recorder = OAuthHandler()
        smtp_class: type[SMTP] = SMTP
    else:
        handler, smtp_class = Recorder(), OAuthSMTP
    with serving(
        handler, smtp_class=smtp_class, authenticator=spy, auth_require_tls=False
    ) as server:
        yield server, handler, spy


def test_oauth_mechanisms_are_advertised(
    oauth_server: tuple[ServerThread, Recorder, Spy],
) -> None:
    server, _, _ = oauth_server
    with RawClient(server.port) as client:
        client.reply()
        advertised = ehlo_keywords(client.command("EHLO client.test")[1])["AUTH"].split()
        assert advertised == ["LOGIN", "OAUTHBEARER", "PLAIN", "XOAUTH2"]


def test_plain_smtp_does_not_offer_oauth(plain_server: ServerThread) -> None:
    with RawClient(plain_server.port) as client:
        client.reply()
        advertised = ehlo_keywords(client.command("EHLO client.test")[1])["AUTH"].split()
        assert advertised == ["LOGIN", "PLAIN"]
        unknown = (504, "5.5.4 Unrecognized authentication type")
        assert client.command(f"AUTH XOAUTH2 {xoauth2(USER, GOOD_TOKEN)}") == unknown
        assert client.command(f"AUTH OAUTHBEARER {oauthbearer(USER, GOOD_TOKEN)}") == unknown


@pytest.mark.parametrize(
    ("mechanism", "encode"), [("XOAUTH2", xoauth2), ("OAUTHBEARER", oauthbearer)]
)
@pytest.mark.parametrize("with_challenge", [False, True], ids=["initial", "challenge"])
def test_oauth_success(
    oauth_server: tuple[ServerThread, Recorder, Spy],
    mechanism: str,
    encode: Any,
    with_challenge: bool,
) -> None:
    server, handler, spy = oauth_server
    with greeted(server.port) as client:
        if with_challenge:
            assert client.command(f"AUTH {mechanism}") == (334, "")
            assert client.command(encode(USER, GOOD_TOKEN)) == SUCCESS
        else:
            assert client.command(f"AUTH {mechanism} {encode(USER, GOOD_TOKEN)}") == SUCCESS
        client.command("MAIL FROM:<a@example.com>")
        client.command("RCPT TO:<b@example.com>")
        client.command("DATA")
        assert client.command(MESSAGE + ".") == (250, "OK")
    [(*_, name, token)] = spy.calls
    assert name == mechanism
    assert isinstance(token, OAuthToken)
    assert (token.user, token.token, token.mechanism) == (USER, GOOD_TOKEN, mechanism)
    assert handler.messages[0][0].auth_data == token
    if mechanism == "OAUTHBEARER":
        assert (token.host, token.port) == ("mx.test", 587)


@pytest.mark.parametrize(
    ("mechanism", "encode", "dummy", "error"),
    [
        ("XOAUTH2", xoauth2, "", {"status": "401", "schemes": "bearer"}),
        ("OAUTHBEARER", oauthbearer, "AQ==", {"status": "invalid_token"}),
    ],
)
def test_oauth_refused_token_gets_the_error_challenge(
    oauth_server: tuple[ServerThread, Recorder, Spy],
    mechanism: str,
    encode: Any,
    dummy: str,
    error: dict[str, str],
) -> None:
    server, handler, _ = oauth_server
    with greeted(server.port) as client:
        code, challenge = client.command(f"AUTH {mechanism} {encode(USER, 'expired')}")
        assert code == 334
        document = json.loads(base64.b64decode(challenge))
        if isinstance(handler, OAuthHandler):
            error = {**error, "scope": "mail.send"}
        assert document == error
        assert client.command(dummy) == INVALID
        assert client.command("NOOP") == (250, "OK")
        # Aborting at the error challenge is an abort.
        assert client.command(f"AUTH {mechanism} {encode(USER, 'expired')}")[0] == 334
        assert client.command("*") == ABORTED


@pytest.mark.parametrize(
    ("mechanism", "blob"),
    [
        ("XOAUTH2", b64("user=anne\1auth=Basic abc\1\1")),
        ("XOAUTH2", b64("no separators at all")),
        ("OAUTHBEARER", b64("p=tls-unique,,\1auth=Bearer x\1\1")),
        ("OAUTHBEARER", "AQ=="),
    ],
)
def test_oauth_malformed_response(
    oauth_server: tuple[ServerThread, Recorder, Spy], mechanism: str, blob: str
) -> None:
    server, _, spy = oauth_server
    with greeted(server.port) as client:
        code, text = client.command(f"AUTH {mechanism} {blob}")
        assert (code, text[:5]) == (501, "5.5.2")
        assert mechanism in text
    assert spy.calls == []


async def _xoauth2_with_aiosmtplib(port: int, context: ssl.SSLContext, token: str) -> int:
    client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=True, tls_context=context)
    await client.connect()
    try:
        response = await client.auth_xoauth2(USER, token)
        await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        return response.code
    except aiosmtplib.SMTPAuthenticationError as error:
        return error.code
    finally:
        await client.quit()


def test_xoauth2_with_aiosmtplib(
    loop_kind: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = OAuthHandler()
    with serving(
        handler,
        loop_kind,
        tls_context=server_tls,
        auth_required=True,
        authenticator=OAuthAuthenticator(check_token),
    ) as server:
        assert asyncio.run(_xoauth2_with_aiosmtplib(server.port, client_tls, "bad")) == 535
        assert asyncio.run(_xoauth2_with_aiosmtplib(server.port, client_tls, GOOD_TOKEN)) == 235
    [(session, _)] = handler.messages
    assert session.auth_data.token == GOOD_TOKEN
    assert session.auth_data.mechanism == "XOAUTH2"


# -- The documentation's examples ----------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "auth.md"


def documented_block(marker: str) -> str:
    """The ```python block of docs/auth.md that contains ``marker``."""
    blocks = DOCS.read_text(encoding="utf-8").split("```python\n")[1:]
    [code] = [block.split("```")[0] for block in blocks if marker in block]
    return code


def test_documented_one_time_mechanism() -> None:
    namespace: dict[str, Any] = {}
    exec(documented_block("def __init__(self, codes"), namespace)
    handler = namespace["Handler"]({b"123456": "anne", b"654321": "bart"})
    with serving(handler, auth_require_tls=False) as server, greeted(server.port) as client:
        assert client.command(f"AUTH X-ONE-TIME {b64('123456')}") == SUCCESS
        assert server.call(lambda: server.protocols[-1].session.auth_data) == "anne"
    with serving(handler, auth_require_tls=False) as server, greeted(server.port) as client:
        assert client.command("AUTH X-ONE-TIME") == (334, b64("Your one-time code"))
        assert client.command(b64("654321")) == SUCCESS
        assert client.command("RSET") == (250, "OK")
    with serving(handler, auth_require_tls=False) as server, greeted(server.port) as client:
        # Each code works once.
        assert client.command(f"AUTH X-ONE-TIME {b64('123456')}") == INVALID
        assert client.command("AUTH X-ONE-TIME ???") == BAD_BASE64
        assert client.command("AUTH X-ONE-TIME")[0] == 334
        assert client.command("*") == ABORTED


def test_tokens_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "ya29.secret-token-value"
    caplog.set_level(logging.DEBUG)
    accept = OAuthAuthenticator(lambda token: token.token == secret)
    with serving(OAuthHandler(), authenticator=accept, auth_require_tls=False) as server:
        dialogs = [
            [f"AUTH XOAUTH2 {xoauth2(USER, secret)}"],
            [f"AUTH OAUTHBEARER {oauthbearer(USER, secret + 'x')}", "AQ=="],
            ["AUTH XOAUTH2", xoauth2(USER, secret + "y"), ""],
            [f"AUTH XOAUTH2 {b64('auth=Bearer ' + secret)}"],  # malformed: no terminator
        ]
        for dialog in dialogs:
            with greeted(server.port) as client:
                for line in dialog:
                    code, _ = client.command(line)
                assert code in (235, 501, 535)
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert b64(secret)[:16] not in record.getMessage()
