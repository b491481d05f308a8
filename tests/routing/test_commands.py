"""``@app.command``: new SMTP commands, compiled into ``smtp_<VERB>`` methods."""

from __future__ import annotations

import threading

import pytest

from smtpkit import SMTP, App

from .helpers import ServeApp


def test_async_command_replies_with_push(serve_app: ServeApp) -> None:
    app = App()

    @app.command("PING", syntax="PING [ignored]")
    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push(f"259 Pong {arg or ''}".strip())

    with serve_app(app).client() as client:
        assert client.docmd("PING") == (259, b"2.0.0 Pong")
        assert client.docmd("ping", "hello") == (259, b"2.0.0 Pong hello")


def test_command_is_a_real_method_with_its_syntax() -> None:
    app = App()

    @app.command("PING", syntax="PING [ignored]", extended=" [SP <x>]")
    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 Pong")

    cls = app.smtp_class
    method = cls.smtp_PING  # type: ignore[attr-defined]
    assert method.__smtp_syntax__ == "PING [ignored]"
    assert method.__smtp_syntax_extended__ == " [SP <x>]"
    assert issubclass(cls, SMTP)


def test_help_lists_commands(serve_app: ServeApp) -> None:
    app = App()

    @app.command("PING", syntax="PING [ignored]", extended=" [SP <more>]")
    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 Pong")

    @app.command("XSTATUS")
    async def status(server: SMTP, arg: str | None) -> None:
        await server.push("250 fine")

    with serve_app(app).client() as client:
        code, text = client.docmd("HELP")
        assert code == 250
        assert b" PING " in text
        assert b" XSTATUS" in text
        assert client.docmd("HELP", "ping") == (250, b"2.0.0 Syntax: PING [ignored]")
        assert client.docmd("HELP", "XSTATUS") == (250, b"2.0.0 Syntax: XSTATUS")
        client.ehlo()
        assert client.docmd("HELP", "PING") == (250, b"2.0.0 Syntax: PING [ignored] [SP <more>]")


def test_when_hides_the_command_from_help(serve_app: ServeApp) -> None:
    app = App()

    @app.command("SECRET", when="tls_context")
    async def secret(server: SMTP, arg: str | None) -> None:
        await server.push("250 psst")

    with serve_app(app).client() as client:
        assert b"SECRET" not in client.docmd("HELP")[1]
        # Hidden from HELP, still a command.
        assert client.docmd("SECRET") == (250, b"2.0.0 psst")


def test_plain_command_runs_in_a_thread_and_returns_its_reply(serve_app: ServeApp) -> None:
    app = App()
    threads: list[threading.Thread] = []

    @app.command("WHO")
    def who(server: SMTP, arg: str | None) -> str:
        threads.append(threading.current_thread())
        assert server.session is not None
        return f"250 you are {server.session.peer[0]}"

    @app.command("QUIET")
    def quiet(server: SMTP, arg: str | None) -> None:
        return None

    with serve_app(app).client() as client:
        assert client.docmd("WHO") == (250, b"2.0.0 you are 127.0.0.1")
        # No reply from the command: the next reply is the NOOP's.
        client.send(b"QUIET\r\nNOOP\r\n")
        assert client.getreply() == (250, b"2.0.0 OK")
    assert threads and threads[0] is not threading.main_thread()
    assert threads[0].name.startswith("AnyIO worker thread")


def test_async_command_may_return_its_reply(serve_app: ServeApp) -> None:
    app = App()

    @app.command("ECHO")
    async def echo(server: SMTP, arg: str | None) -> str:
        return f"250 {arg}"

    with serve_app(app).client() as client:
        assert client.docmd("ECHO", "hi there") == (250, b"2.0.0 hi there")


def test_add_command_is_the_plain_twin(serve_app: ServeApp) -> None:
    app = App()

    async def ping(server: SMTP, arg: str | None) -> None:
        await server.push("259 Pong")

    assert app.add_command("PING", ping) is ping
    with serve_app(app).client() as client:
        assert client.docmd("PING") == (259, b"2.0.0 Pong")


def test_decorator_returns_the_function_unchanged() -> None:
    app = App()

    async def ping(server: SMTP, arg: str | None) -> None:
        return None

    assert app.command("PING")(ping) is ping
    assert "PING" in app.commands
    assert app.commands["PING"].spec.func is ping


def test_builtin_commands_need_override(serve_app: ServeApp) -> None:
    app = App()

    async def noop(server: SMTP, arg: str | None) -> None:
        await server.push("250 my noop")

    with pytest.raises(ValueError, match=r"'NOOP'.*built-in command of SMTP; pass override=True"):
        app.add_command("NOOP", noop)
    app.add_command("NOOP", noop, syntax="NOOP", override=True)
    with serve_app(app).client() as client:
        assert client.noop() == (250, b"2.0.0 my noop")


@pytest.mark.parametrize("name", ["", "1X", "P NG", "PING!", "é"])
def test_invalid_command_names(name: str) -> None:
    app = App()
    with pytest.raises(ValueError, match=f"command name {name!r}: expected a verb"):
        app.command(name)


def test_command_that_raises_gets_451(serve_app: ServeApp) -> None:
    app = App()

    @app.command("BOOM")
    async def boom(server: SMTP, arg: str | None) -> None:
        raise RuntimeError("secret detail")

    with serve_app(app).client() as client:
        code, text = client.docmd("BOOM")
        assert code == 451
        assert b"secret" not in text
        assert client.noop()[0] == 250


def test_command_returning_a_non_string_gets_451(serve_app: ServeApp) -> None:
    app = App()

    @app.command("BAD")  # type: ignore[type-var]
    async def bad(server: SMTP, arg: str | None) -> int:
        return 42

    with serve_app(app).client() as client:
        assert client.docmd("BAD")[0] == 451
