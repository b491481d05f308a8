"""``@app.hook``: every handler hook, the chain rule, and plain functions in threads."""

from __future__ import annotations

import smtplib
import socket
import threading
from typing import Any

import pytest

from smtpkit import SMTP, App, Envelope, Session
from smtpkit.proxy_protocol import ProxyData
from smtpkit.routing import HOOK_VERBS

from .helpers import HOST, MESSAGE, TIMEOUT, TLS, ServeApp


def test_every_documented_hook_verb_is_accepted() -> None:
    assert set(HOOK_VERBS) == {
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "RSET",
        "QUIT",
        "NOOP",
        "VRFY",
        "AUTH",
        "STARTTLS",
        "PROXY",
        "DATA_CHUNK",
        "DATA_ABORT",
    }
    app = App()
    for verb in HOOK_VERBS:
        app.add_hook(verb, lambda *args: None)  # type: ignore[arg-type]
    handler = app.handler
    for verb in HOOK_VERBS:
        assert callable(getattr(handler, "handle_" + verb))
    assert not hasattr(handler, "handle_exception")


def test_unknown_hook_verb() -> None:
    with pytest.raises(ValueError, match=r"hook verb 'LHLO': expected one of HELO, EHLO"):
        App().hook("LHLO")  # type: ignore[arg-type]


def test_hooks_of_one_verb_chain_in_order(serve_app: ServeApp) -> None:
    app = App()
    calls: list[str] = []

    @app.hook("RCPT")
    async def first(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str | None:
        calls.append("first " + address)
        return "550 5.7.1 first says no" if address.startswith("no1") else None

    @app.hook("RCPT")
    async def second(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str | None:
        calls.append("second " + address)
        return "550 5.7.1 second says no" if address.startswith("no2") else None

    with serve_app(app).client() as client:
        client.ehlo()
        client.mail("anne@example.com")
        assert client.rcpt("no1@example.com") == (550, b"5.7.1 first says no")
        assert client.rcpt("no2@example.com") == (550, b"5.7.1 second says no")
        # Both passed: the server accepts as if there were no hook.
        assert client.rcpt("yes@example.com") == (250, b"2.0.0 OK")
        assert client.data(MESSAGE)[0] == 250
    assert calls == [
        "first no1@example.com",
        "first no2@example.com",
        "second no2@example.com",
        "first yes@example.com",
        "second yes@example.com",
    ]


def test_helo_mail_rset_noop_vrfy_quit_hooks(serve_app: ServeApp) -> None:
    app = App()
    quits: list[str] = []

    @app.hook("HELO")
    async def helo(server: SMTP, session: Session, envelope: Envelope, hostname: str) -> None:
        return None

    @app.hook("MAIL")
    async def mail(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str | None:
        return "553 5.7.1 not you" if address == "spammer@example.com" else None

    @app.hook("RSET")
    async def rset(server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 forgotten"

    @app.hook("NOOP")
    async def noop(server: SMTP, session: Session, envelope: Envelope, arg: str | None) -> str:
        return f"250 noop {arg}"

    @app.hook("VRFY")
    async def vrfy(server: SMTP, session: Session, envelope: Envelope, address: str) -> str:
        return f"250 <{address}>"

    @app.hook("QUIT")
    async def quit_(server: SMTP, session: Session, envelope: Envelope) -> str:
        quits.append(session.host_name or "")
        return "221 2.0.0 see you"

    with serve_app(app).client() as client:
        # HELO passed: the default reply, and the name is remembered.
        assert client.helo("client.test")[0] == 250
        assert client.mail("spammer@example.com") == (553, b"5.7.1 not you")
        assert client.mail("anne@example.com") == (250, b"2.0.0 OK")
        assert client.rset() == (250, b"2.0.0 forgotten")
        assert client.docmd("NOOP", "x") == (250, b"2.0.0 noop x")
        assert client.verify("bart@example.com") == (250, b"2.0.0 <bart@example.com>")
        assert client.quit() == (221, b"2.0.0 see you")
    assert quits == ["client.test"]


def test_ehlo_hooks_thread_the_responses(serve_app: ServeApp) -> None:
    app = App()
    seen: list[list[str]] = []

    @app.hook("EHLO")
    async def add_feature(
        server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        return [*responses[:-1], "250-XCLIENT NAME", responses[-1]]

    @app.hook("EHLO")
    async def look(
        server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> None:
        seen.append(list(responses))

    @app.hook("EHLO")
    def drop_pipelining(
        server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        return [line for line in responses if "PIPELINING" not in line]

    with serve_app(app).client() as client:
        code, text = client.ehlo("client.test")
        assert code == 250
        assert client.has_extn("xclient")
        assert not client.has_extn("pipelining")
        assert text.splitlines()[-1] == b"HELP"
        # The host name was recorded: MAIL does not ask for EHLO first.
        assert client.mail("anne@example.com") == (250, b"2.0.0 OK")
    assert "250-XCLIENT NAME" in seen[0]
    assert any("PIPELINING" in line for line in seen[0])


def test_data_hook_decides_the_reply(serve_app: ServeApp) -> None:
    app = App()
    received: list[bytes] = []

    @app.hook("DATA")
    async def first(server: SMTP, session: Session, envelope: Envelope) -> None:
        return None

    @app.hook("DATA")
    async def store(server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        received.append(envelope.content)
        return "250 2.0.0 queued as 42"

    with serve_app(app).client() as client:
        client.ehlo()
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        assert client.data(MESSAGE) == (250, b"2.0.0 queued as 42")
    assert received == [MESSAGE]


def test_streaming_hooks_all_run(serve_app: ServeApp) -> None:
    app = App()
    chunks: dict[str, bytearray] = {"a": bytearray(), "b": bytearray()}
    aborts: list[str] = []

    @app.hook("DATA_CHUNK")
    async def chunk_a(server: SMTP, session: Session, envelope: Envelope, chunk: bytes) -> str:
        chunks["a"] += chunk
        return "ignored"

    @app.hook("DATA_CHUNK")
    def chunk_b(server: SMTP, session: Session, envelope: Envelope, chunk: bytes) -> None:
        chunks["b"] += chunk

    @app.hook("DATA_ABORT")
    async def abort(server: SMTP, session: Session, envelope: Envelope, reason: str) -> None:
        aborts.append(reason)

    with serve_app(app, **{"limits.data_size": 2000}).client() as client:
        client.ehlo()
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        assert client.data(MESSAGE) == (250, b"2.0.0 OK")
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        assert client.data((b"x" * 70 + b"\r\n") * 60)[0] == 552
    assert bytes(chunks["a"]) == bytes(chunks["b"])
    assert bytes(chunks["a"]).startswith(MESSAGE)
    assert len(aborts) == 1


def test_auth_hook(serve_app: ServeApp) -> None:
    app = App()

    @app.hook("AUTH")
    async def no_login(server: SMTP, session: Session, envelope: Envelope, args: list[str]) -> Any:
        return "504 5.5.4 use PLAIN" if args[0].upper() == "LOGIN" else None

    with serve_app(app, **{"auth.require_tls": False}).client() as client:
        client.ehlo()
        assert client.docmd("AUTH", "LOGIN") == (504, b"5.5.4 use PLAIN")
        # Passed: the mechanism runs (and nobody gets in without an authenticator).
        assert client.docmd("AUTH", "PLAIN AGFubmUAcHc=")[0] == 535


@pytest.mark.parametrize("verdict", [True, False])
def test_starttls_hook(serve_app: ServeApp, tls: TLS, verdict: bool) -> None:
    app = App()
    calls: list[str] = []

    @app.hook("STARTTLS")
    async def first(server: SMTP, session: Session, envelope: Envelope) -> None:
        calls.append("first")

    @app.hook("STARTTLS")
    def second(server: SMTP, session: Session, envelope: Envelope) -> bool:
        calls.append("second")
        return verdict

    with serve_app(app, **{"tls.context": tls.server}).client() as client:
        client.starttls(context=tls.client)
        client.ehlo()
        assert client.noop()[0] == (250 if verdict else 554)
    assert calls == ["first", "second"]


def test_starttls_hooks_that_pass_let_the_session_go_on(serve_app: ServeApp, tls: TLS) -> None:
    app = App()

    @app.hook("STARTTLS")
    async def look(server: SMTP, session: Session, envelope: Envelope) -> None:
        return None

    with serve_app(app, **{"tls.context": tls.server}).client() as client:
        client.starttls(context=tls.client)
        assert client.noop() == (250, b"2.0.0 OK")


def proxy_client(port: int, header: bytes) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.sendall(header)
    return sock


@pytest.mark.parametrize(("verdict", "greeted"), [(True, True), (False, False)])
def test_proxy_hook(serve_app: ServeApp, verdict: bool, greeted: bool) -> None:
    app = App()
    seen: list[ProxyData] = []

    @app.hook("PROXY")
    async def record(server: SMTP, session: Session, envelope: Envelope, data: ProxyData) -> None:
        seen.append(data)

    @app.hook("PROXY")
    async def decide(server: SMTP, session: Session, envelope: Envelope, data: ProxyData) -> bool:
        return verdict

    served = serve_app(app, **{"proxy_protocol.timeout": 5.0})
    header = b"PROXY TCP4 192.0.2.1 198.51.100.2 4321 25\r\n"
    with proxy_client(served.port, header) as sock:
        reply = sock.recv(1024)
    assert reply.startswith(b"220 ") is greeted
    assert not greeted or reply.endswith(b"\r\n")
    assert len(seen) == 1 and seen[0].src_addr is not None
    assert str(seen[0].src_addr) == "192.0.2.1"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_plain_hook_does_not_block_other_sessions(serve_app: ServeApp) -> None:
    app = App()
    entered = threading.Event()
    release = threading.Event()

    @app.hook("NOOP")
    def slow(server: SMTP, session: Session, envelope: Envelope, arg: str | None) -> str | None:
        if arg != "slow":
            return None
        entered.set()
        # Blocks this worker thread only, until the other session got through.
        assert release.wait(TIMEOUT)
        return "250 slow done"

    served = serve_app(app)
    results: list[tuple[int, bytes]] = []
    with served.client() as first, served.client() as second:
        waiting = threading.Thread(target=lambda: results.append(first.docmd("NOOP", "slow")))
        waiting.start()
        try:
            assert entered.wait(TIMEOUT)
            # The loop is free: another client is served while the hook blocks.
            assert second.noop() == (250, b"2.0.0 OK")
            assert second.helo("client.test")[0] == 250
            assert waiting.is_alive() and not results
        finally:
            release.set()
            waiting.join(TIMEOUT)
    assert results == [(250, b"2.0.0 slow done")]


def test_hook_exception_gets_451(serve_app: ServeApp) -> None:
    app = App()

    @app.hook("MAIL")
    def broken(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> None:
        raise KeyError("database password is hunter2")

    with serve_app(app).client() as client:
        client.ehlo()
        code, text = client.mail("anne@example.com")
        assert code == 451
        assert b"hunter2" not in text


def test_hook_returns_the_function_unchanged() -> None:
    app = App()

    def look(server: SMTP, session: Session, envelope: Envelope) -> None:
        return None

    assert app.hook("RSET")(look) is look
    assert app.add_hook("QUIT", look) is look
    assert [entry.spec.func for entry in app.hooks["RSET"]] == [look]
    assert app.hooks["QUIT"][0].owner.function.endswith("look")


def test_mail_after_refused_helo_hook(serve_app: ServeApp) -> None:
    app = App()

    @app.hook("HELO")
    async def refuse(server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        return "550 5.7.1 no HELO here"

    with serve_app(app).client() as client:
        assert client.helo("client.test") == (550, b"5.7.1 no HELO here")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("anne@example.com", ["bart@example.com"], MESSAGE)
        assert refused.value.smtp_code == 503
